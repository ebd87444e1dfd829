"""NeuralField shapes, dtypes, parameter counts and the scheme wiring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import activations, encodings, initializers, models

ENCODINGS = {"identity": {}, "rff": {"dim": 16, "sigma": 3.0}, "nerf": {"num_frequencies": 3}}


def _field_16_8_3(activation, encoding, **kwargs):
  return models.make_field(
      (16, 8),
      3,
      activation=activation,
      encoding=encoding,
      encoding_params=ENCODINGS[encoding],
      **kwargs,
  )


@pytest.mark.parametrize("activation", activations.list_activations())
@pytest.mark.parametrize("encoding", encodings.list_encodings())
def test_shapes_dtypes_counts(activation, encoding):
  field = _field_16_8_3(activation, encoding, scheme="init2")
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (7, 2)), jnp.float32)
  params = field.init(jax.random.key(0), x)
  y = field.apply(params, x)
  assert y.shape == (7, 3) and y.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(y)))
  d = field.encoding.out_dim(2)
  cplx = 2 if activation == "gabor" else 1
  expected = (d * 16 + 16) + cplx * (16 * 8 + 8) + cplx * (8 * 3 + 3)
  assert models.param_count(params) == expected
  kinds = [params["params"][f"dense_{k}"]["kernel"].dtype for k in range(3)]
  if activation == "gabor":
    assert kinds == [jnp.float32, jnp.complex64, jnp.complex64]
  else:
    assert kinds == [jnp.float32] * 3


@pytest.mark.parametrize("activation", activations.list_activations())
@pytest.mark.parametrize("encoding", encodings.list_encodings())
def test_params_only_creates_exactly_the_params_of_init(activation, encoding):
  # The engine and the eq. 4.6 search draw members with lazy_init(params_only=True);
  # the variables must be model.init's bit for bit: names, dtypes (complex after a
  # Gabor layer), and the values, which depend on each parameter's rng path.
  field = _field_16_8_3(activation, encoding, scheme="init1", scheme_params={"first_bias": "torch"})
  x = jnp.zeros((1, 2), jnp.float32)
  want = field.init(jax.random.key(5), x)
  abstract = jax.ShapeDtypeStruct(x.shape, x.dtype)
  got = field.lazy_init(jax.random.key(5), abstract, params_only=True)
  assert field.apply(want, x, params_only=True) is None
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["fused", "linear"])
def test_params_only_of_fused_and_linear_fields_equals_init(kind):
  if kind == "fused":
    field = models.make_field((16, 16), 1, activation="sine").clone(fused="jax")
  else:
    field = models.make_field((), 2, activation="sine")
  x = jnp.zeros((1, 2), jnp.float32)
  want = field.init(jax.random.key(1), x)
  got = field.init(jax.random.key(1), x, params_only=True)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)


def test_layers_use_scheme_positions():
  field = models.make_field((512, 512), 1, activation="sinc", scheme="siren_init2")
  params = field.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]
  scheme = initializers.get_scheme("siren_init2", omega=30.0)
  assert field.scheme == scheme  # the sinc's omega (30) reached the scheme
  for k, position in enumerate(["first", "hidden", "last"]):
    kernel = params[f"dense_{k}"]["kernel"]
    var = scheme.kernel_init(position).variance(kernel.shape)
    assert abs(float(kernel.var()) / var - 1) < 0.2, (position, float(kernel.var()), var)


def test_bias_rule_reaches_layers():
  field = models.make_field(
      (64,), 1, activation="sinc", scheme_params={"bias": "zeros", "first_bias": "torch"}
  )
  params = field.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
  b0 = np.asarray(params["dense_0"]["bias"])
  assert np.abs(b0).max() > 0 and np.abs(b0).max() <= 1.0  # fan_in 1: U(±1)
  assert np.all(np.asarray(params["dense_1"]["bias"]) == 0)


def test_return_features():
  field = models.make_field((10, 6), 2, activation="gaussian")
  params = field.init(jax.random.key(0), jnp.zeros((1, 2)))
  out, feats = field.apply(params, jnp.zeros((4, 2)), return_features=True)
  assert out.shape == (4, 2) and feats.shape == (4, 6)
  w = params["params"]["dense_2"]
  np.testing.assert_allclose(out, feats @ w["kernel"] + w["bias"], atol=1e-6)


def test_linear_model_and_bad_widths():
  field = models.make_field((), 1, activation="relu")
  assert models.param_count(field.init(jax.random.key(0), jnp.zeros((1, 3)))) == 4
  with pytest.raises(ValueError, match="hidden"):
    models.make_field((16, 0), 1)
  with pytest.raises(ValueError, match="hidden"):
    models.make_field((16, -3), 1)
  with pytest.raises(ValueError, match="out_dim"):
    models.make_field((16,), 0)
  with pytest.raises(ValueError, match="valid schemes"):
    models.make_field((16,), 1, scheme="nope")
  # Not silently truncated (8.7 -> 8) nor failing later inside Flax with a TypeError.
  for hidden, out_dim in [(8, 1), ((8.7,), 1), ((8,), 2.5), ((True,), 1)]:
    with pytest.raises(ValueError, match="hidden"):
      models.make_field(hidden, out_dim)
  assert models.make_field((np.int64(8),), np.int32(2)).out_dim == 2


def test_a_plain_function_as_activation():
  # Any callable works as the activation (not only registered Activation objects).
  field = models.NeuralField((8,), 2, activation=jnp.tanh)
  params = field.init(jax.random.key(0), jnp.zeros((1, 3)))
  h = jnp.tanh(jnp.ones((4, 3)) @ params["params"]["dense_0"]["kernel"])
  out = h @ params["params"]["dense_1"]["kernel"]  # biases are zeros by default
  np.testing.assert_allclose(field.apply(params, jnp.ones((4, 3))), out, rtol=1e-6)


# ---------------------------------------------------------------------------
# The omega of omega-dependent schemes comes from the field's activation.

OMEGA_SCHEMES = [
    n for n in initializers.BUILTIN_SCHEMES if "omega" in initializers.scheme_parameters(n)
]


@pytest.mark.parametrize("activation", ["sine", "sinc"])
@pytest.mark.parametrize("name", initializers.BUILTIN_SCHEMES)
def test_field_passes_activation_omega(name, activation):
  field = models.make_field(
      (256, 256), 1, activation=activation, activation_params={"omega": 8.0}, scheme=name
  )
  dependent = name in OMEGA_SCHEMES
  assert field.scheme.omega == (8.0 if dependent else None)
  assert field.scheme == initializers.get_scheme(name).with_omega(8.0)
  # A scheme built for another omega is refused, the same one accepted.
  if dependent:
    with pytest.raises(ValueError, match="built for omega=30.0 but the .* has omega=8.0"):
      models.make_field(
          (8,),
          1,
          activation=activation,
          activation_params={"omega": 8.0},
          scheme=name,
          scheme_params={"omega": 30.0},
      )
    same = models.make_field(
        (8,),
        1,
        activation=activation,
        activation_params={"omega": 8.0},
        scheme=name,
        scheme_params={"omega": 8.0},
    )
    assert same.scheme.omega == 8.0


def test_siren_hidden_kernel_uses_field_omega():
  # Variance 2/(omega^2 fan_in): omega 8 vs the old silent 30 is a factor 14; 65536 draws
  # estimate a variance to 0.6% (uniform), so 3% tells the two apart with room to spare.
  field = models.make_field((256, 256), 1, activation_params={"omega": 8.0}, scheme="siren")
  kernel = field.init(jax.random.key(0), jnp.zeros((1, 2)))["params"]["dense_1"]["kernel"]
  assert abs(float(kernel.var()) * 8.0**2 * 256 / 2 - 1) < 0.03


def test_omega_through_clone_engine_and_no_omega_activations():
  from nfscale import train

  field = models.make_field((32,), 1, activation_params={"omega": 8.0})
  # The engine's path: clone with a scheme built from config scheme_params (omega unset).
  params = {"bias": "zeros", "omega": None}
  clone = field.clone(
      scheme=initializers.get_scheme("siren", **initializers.filter_hparams("siren", params))
  )
  assert clone.scheme.omega == 8.0
  x = jnp.zeros((1, 2))
  stacked = train.init_members(field, [train.Member("siren", 3, 1e-3)], x, params)
  own = field.clone(scheme=initializers.get_scheme("siren", omega=8.0)).init(jax.random.key(3), x)
  for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(own)):
    np.testing.assert_array_equal(a[0], b)
  with pytest.raises(ValueError, match="built for omega=30.0"):
    train.init_members(field, [train.Member("siren", 0, 1e-3)], x, {"omega": 30.0})
  # Strings work for the module's own fields too.
  assert models.NeuralField((4,), 1, "sine", "siren").scheme.omega == 30.0
  # Activations without omega: explicit omega is required, and then used.
  with pytest.raises(
      ValueError, match=r"gaussian activation has none.*get_scheme\('siren', " r"omega=\.\.\.\)"
  ):
    models.make_field((8,), 1, activation="gaussian", scheme="siren")

  class MySine:  # A user's own activation with an omega, not in the registry.
    omega = 6.0
    is_complex = False

    def __call__(self, x):
      return jnp.sin(self.omega * x)

  own = models.NeuralField((8,), 1, activation=MySine(), scheme="siren")
  assert own.scheme.omega == 6.0
  assert own.init(jax.random.key(0), jnp.zeros((1, 2)))["params"]["dense_1"]["kernel"].shape == (
      8,
      1,
  )
  explicit = models.make_field(
      (8,), 1, activation="relu", scheme="siren", scheme_params={"omega": 5.0}
  )
  assert explicit.scheme.omega == 5.0
