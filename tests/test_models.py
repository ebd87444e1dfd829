"""NeuralField shapes, dtypes, parameter counts and the scheme wiring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import activations, encodings, initializers, models

ENCODINGS = {"identity": {}, "rff": {"dim": 16, "sigma": 3.0}, "nerf": {"num_frequencies": 3}}


@pytest.mark.parametrize("activation", activations.list_activations())
@pytest.mark.parametrize("encoding", encodings.list_encodings())
def test_shapes_dtypes_counts(activation, encoding):
  field = models.make_field((16, 8), 3, activation=activation, scheme="init2",
                            encoding=encoding, encoding_params=ENCODINGS[encoding])
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (7, 2)), jnp.float32)
  params = field.init(jax.random.key(0), x)
  y = field.apply(params, x)
  assert y.shape == (7, 3) and y.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(y)))
  d = field.encoding.out_dim(2)
  cplx = 2 if activation == "gabor" else 1
  expected = (d * 16 + 16) + cplx * (16 * 8 + 8) + cplx * (8 * 3 + 3)
  assert models.param_count(params) == expected
  assert models.field_param_count(2, (16, 8), 3, field.encoding, activation == "gabor") == expected
  kinds = [params["params"][f"dense_{k}"]["kernel"].dtype for k in range(3)]
  if activation == "gabor":
    assert kinds == [jnp.float32, jnp.complex64, jnp.complex64]
  else:
    assert kinds == [jnp.float32] * 3


def test_layers_use_scheme_positions():
  field = models.make_field((512, 512), 1, activation="sinc", scheme="siren_init2")
  params = field.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]
  scheme = initializers.get_scheme("siren_init2")
  for k, position in enumerate(["first", "hidden", "last"]):
    kernel = params[f"dense_{k}"]["kernel"]
    var = scheme.kernel_init(position).variance(kernel.shape)
    assert abs(float(kernel.var()) / var - 1) < 0.2, (position, float(kernel.var()), var)


def test_bias_rule_reaches_layers():
  field = models.make_field((64,), 1, activation="sinc",
                            scheme_params={"bias": "zeros", "first_bias": "torch"})
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
