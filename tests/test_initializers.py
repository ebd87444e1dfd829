"""Statistical and API tests of every registered initialization scheme.

Tolerances: a kernel of shape (1024, 512) gives n = 524288 iid samples. The
sample variance has relative standard error sqrt((kurtosis - 1) / n), i.e.
sqrt(2/n) = 0.20% for a normal and sqrt(0.8/n) = 0.12% for a uniform; we allow
1% (5 standard errors for the normal). The sample mean has standard error
sigma/sqrt(n); we allow 5 of them. The share of |w| > 2 sigma is 4.55% for a
plain normal with standard error sqrt(p(1-p)/n) = 0.029%; we allow 0.15%
(5 s.e.), which a 2-sigma-truncated normal (share 0) fails by far.
"""

import dataclasses
import math
import pickle
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nfscale import initializers as I

SHAPE = (1024, 512)
N = SHAPE[0] * SHAPE[1]
FAN_IN, FAN_OUT = SHAPE

# The formula of docs/initializers.md for each (scheme, position): (distribution, variance).
OMEGA = 30.0


def expected(name, position, fan_in=FAN_IN, fan_out=FAN_OUT):
  lecun, xavier, kaiming = 1 / fan_in, 2 / (fan_in + fan_out), 2 / fan_in
  table = {
      "lecun_normal": ("normal", lecun, lecun),
      "lecun_uniform": ("uniform", lecun, lecun),
      "xavier_normal": ("normal", xavier, xavier),
      "xavier_uniform": ("uniform", xavier, xavier),
      "kaiming_normal": ("normal", kaiming, kaiming),
      "kaiming_uniform": ("uniform", kaiming, kaiming),
      "init1": ("normal", 1 / fan_in, 2 / fan_in**1.5),
      # U(±1/sqrt(fan_in)) and U(±1/fan_in^{3/4}): variance bound^2 / 3.
      "init2": ("uniform", 1 / (3 * fan_in), 1 / (3 * fan_in**1.5)),
      "powerlaw_normal": ("normal", 1 / fan_in, 2 / fan_in**1.5),
      "powerlaw_uniform": ("uniform", 1 / (3 * fan_in), 1 / (3 * fan_in**1.5)),
  }
  siren_hidden = 6 / fan_in / OMEGA**2 / 3
  siren_first = (1 / fan_in) ** 2 / 3
  if name == "siren":
    return "uniform", {"first": siren_first, "hidden": siren_hidden, "last": siren_hidden}[position]
  if name == "siren_init2":
    return (
        "uniform",
        {"first": siren_first, "hidden": siren_hidden, "last": 1 / (3 * fan_in**1.5)}[position],
    )
  dist, hidden, last = table[name]
  return dist, (last if position == "last" else hidden)


CASES = [(s, p) for s in I.BUILTIN_SCHEMES for p in I.POSITIONS]


def scheme(name, **hparams):
  """The scheme, with omega = OMEGA for the schemes that take one (they have no default)."""
  if "omega" in I.scheme_parameters(name):
    hparams.setdefault("omega", OMEGA)
  return I.get_scheme(name, **hparams)


def test_registry_covers_spec():
  assert set(I.PAPER_SCHEMES) <= set(I.list_schemes())
  assert {"siren", "siren_init2", "powerlaw_normal", "powerlaw_uniform"} <= set(I.list_schemes())
  assert set(I.BUILTIN_SCHEMES) <= set(I.list_schemes())


@pytest.mark.parametrize("name,position", CASES)
def test_moments_and_bounds(name, position):
  init = scheme(name).kernel_init(position)
  w = np.asarray(init(jax.random.key(1), SHAPE, jnp.float32), np.float64)
  dist, var = expected(name, position)
  assert w.shape == SHAPE and w.dtype == np.float64
  assert abs(w.var() / var - 1) < 0.01, (w.var(), var)
  assert abs(w.mean()) < 5 * math.sqrt(var / N)
  share = np.mean(np.abs(w) > 2 * math.sqrt(var))
  if dist == "normal":
    assert abs(share - 0.0455) < 0.0015, share  # plain, not truncated
  else:
    bound = math.sqrt(3 * var)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    # The samples fill the interval: the extreme of 524288 draws lies within
    # bound * (1 - 1e-4) with probability 1 - exp(-52).
    assert np.abs(w).max() > bound * (1 - 1e-4)
    assert share == 0.0


@pytest.mark.parametrize("name", ["init1", "init2"])
def test_paper_last_layer_differs_from_hidden(name):
  s = I.get_scheme(name)
  hidden_var = s.hidden.variance(SHAPE)
  last_var = s.last.variance(SHAPE)
  # init1 2/fan_in^{3/2} vs 1/fan_in, ratio 2/sqrt(fan_in); init2
  # (1/(3 fan_in^{3/2})) / (1/(3 fan_in)) = 1/sqrt(fan_in).
  ratio = {"init1": 2 / math.sqrt(FAN_IN), "init2": 1 / math.sqrt(FAN_IN)}[name]
  assert last_var / hidden_var == pytest.approx(ratio, rel=1e-12)
  assert s.first == s.hidden and s.last.distribution == s.hidden.distribution
  w_hidden = np.asarray(s.hidden(jax.random.key(0), SHAPE))
  w_last = np.asarray(s.last(jax.random.key(0), SHAPE))
  assert w_last.var() / w_hidden.var() == pytest.approx(ratio, rel=0.02)


def test_powerlaw_family_contains_init1_and_init2():
  assert I.get_scheme("powerlaw_normal", c=2.0, p=1.5).last == I.get_scheme("init1").last
  assert I.get_scheme("powerlaw_uniform", c=1 / 3, p=1.5).last == I.get_scheme("init2").last
  s = I.get_scheme("powerlaw_normal", c=0.5, p=2.0)
  assert s.last.variance((100, 3)) == pytest.approx(0.5 / 100**2)
  # The standalone law is normal unless told (replace() hands it to schemes as is):
  # powerlaw(2, 3/2) is init1's last layer, eq. 4.11.
  assert I.powerlaw(2.0, 1.5) == I.init1_last()
  assert I.powerlaw(1 / 3, 1.5, "uniform") == I.init2_last()


@pytest.mark.parametrize("name,position", CASES)
def test_same_seed_same_array(name, position):
  init = scheme(name).kernel_init(position)
  a = init(jax.random.key(7), (64, 32))
  b = init(jax.random.key(7), (64, 32))
  c = init(jax.random.key(8), (64, 32))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.parametrize("name,position", CASES)
def test_complex_splits_variance(name, position):
  init = scheme(name).kernel_init(position)
  w = np.asarray(init(jax.random.key(2), SHAPE, jnp.complex64))
  _, var = expected(name, position)
  assert w.dtype == np.complex64
  assert abs(np.mean(np.abs(w) ** 2) / var - 1) < 0.01
  assert abs(w.real.var() / (var / 2) - 1) < 0.015
  assert abs(w.imag.var() / (var / 2) - 1) < 0.015
  assert abs(np.corrcoef(w.real.ravel(), w.imag.ravel())[0, 1]) < 5 / math.sqrt(N)


def test_receptive_field_fans():
  assert I.compute_fans((3, 3, 16, 32)) == (144, 288)
  w = I.lecun_normal()(jax.random.key(0), (3, 3, 64, 64))
  assert abs(float(w.var()) * 576 - 1) < 0.05


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_jit_and_vmap_draw_what_eager_draws(dtype):
  # Bit for bit, for every scheme and position (and the torch bias rule): the engine
  # draws members with a vmapped init and the width search with a jitted one, and
  # both must be the params model.init(key) gives. One program for all of them.
  inits = [scheme(name).kernel_init(position) for name, position in CASES]
  bias = I.get_scheme("init1", first_bias="torch").bias_init(16, "first")

  def draw(key):
    return [init(key, (16, 12), dtype) for init in inits] + [bias(key, (12,), jnp.float32)]

  eager = draw(jax.random.key(3))
  jitted = jax.jit(draw)(jax.random.key(3))
  vmapped = jax.jit(jax.vmap(draw))(jnp.stack([jax.random.key(3), jax.random.key(4)]))
  for case, e, j, v in zip(CASES + [("init1", "torch bias")], eager, jitted, vmapped):
    np.testing.assert_array_equal(j, e, err_msg=str(case))
    np.testing.assert_array_equal(v[0], e, err_msg=str(case))
    assert not np.array_equal(v[1], e), case


@pytest.mark.parametrize("dtype", [jnp.float32])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_draws_cut_from_a_rounded_sample_equal_direct_draws(dtype, distribution):
  # A draw is cut from a flat sample of a rounded-up size (one compiled sampler per
  # size); each entry must still be what jax.random gives for the shape itself.
  # Shapes cover the minimum size, powers of two, odd sizes and the region past the
  # power-of-two limit, where sizes round to eighths of a power of two. The normal
  # sampler scales inside its program: the product must round as the eager
  # product with a Python float does, for scales that round differently per dtype.
  key = jax.random.key(11)
  shapes = [(1, 1), (2, 64), (7, 13), (64, 64), (3, 100), (3, 10000), (1, 2**20 + 1)]
  for shape, variance in [(s, 0.5) for s in shapes] + [((7, 13), 1 / 3), ((64, 64), 2 / 30**3)]:
    got = I._sample(key, shape, np.dtype(dtype), variance, distribution)
    if distribution == "normal":
      want = math.sqrt(variance) * jax.random.normal(key, shape, dtype)
    else:
      bound = math.sqrt(3 * variance)
      want = jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=str(shape))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_low_precision_draws_are_float32_draws_rounded(dtype, distribution):
  # Sampled in bfloat16 itself, a normal was cut off near 2.9 sigma with mean -0.011
  # sigma and a uniform sat half a level (of 128) low; a wide layer fed positive inputs
  # then had pre-activations 0.7 std below zero. A float32 draw rounded once is plain.
  key = jax.random.key(3)
  shape = (1024, 1024)
  got = I._sample(key, shape, np.dtype(dtype), 1.0, distribution)
  want = I._sample(key, shape, np.dtype(np.float32), 1.0, distribution).astype(dtype)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
  w = np.asarray(got, np.float64).ravel()
  # 2^20 draws of unit variance: the mean's standard error is 1e-3; 5 of them.
  assert abs(w.mean()) < 5e-3, w.mean()
  if distribution == "normal":
    # P(|z| > 3) = 0.0027, i.e. ~2830 of 2^20 (sd ~53); truncation gave none.
    assert 2500 < np.sum(np.abs(w) > 3) < 3200


def test_draws_of_one_rounded_size_share_one_compiled_sampler():
  I._flat_normal.clear_cache()
  for shape in [(2, 40), (40, 2), (65, 1), (1, 128), (128, 128)]:  # 65 to 2^14 entries
    I._sample(jax.random.key(0), shape, np.dtype(np.float32), 1.0, "normal")
  assert I._flat_normal._cache_size() == 1


def _direct_draw(key, shape, distribution):
  """Unit-variance draw straight from jax.random: U(-sqrt 3, sqrt 3) has variance 1."""
  if distribution == "normal":
    return jax.random.normal(key, shape)
  return jax.random.uniform(key, shape, minval=-math.sqrt(3.0), maxval=math.sqrt(3.0))


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("case", ["unpartitioned threefry", "rbg key"])
def test_draws_fall_back_to_direct_sampling_where_entries_depend_on_the_shape(case, distribution):
  # Without partitionable threefry an entry depends on the whole shape, so a cut
  # from a larger sample would differ: those keys must be drawn directly.
  shape = (5, 7)
  if case == "rbg key":
    key = jax.random.key(2, impl="rbg")
    assert not I._indexed_by_position(key)
    got = I._sample(key, shape, np.dtype(np.float32), 1.0, distribution)
    want = _direct_draw(key, shape, distribution)
  else:
    key = jax.random.key(2)
    with jax.threefry_partitionable(False):
      assert not I._indexed_by_position(key)
      got = I._sample(key, shape, np.dtype(np.float32), 1.0, distribution)
      want = _direct_draw(key, shape, distribution)
      cut = _direct_draw(key, (64,), distribution)[:35].reshape(shape)
    assert not np.array_equal(np.asarray(cut), np.asarray(want))  # the cut would be wrong
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_direct_draws_have_the_asked_variance(distribution):
  # The direct (rbg key) path against the law itself, not against jax.random: 2^16
  # draws of variance 0.25; the sample variance's relative standard error is
  # sqrt(2/n) = 0.55% (normal), so 3% is > 5 of them; a uniform stays in +-sqrt(0.75).
  key = jax.random.key(3, impl="rbg")
  w = np.asarray(I._sample(key, (256, 256), np.dtype(np.float32), 0.25, distribution), np.float64)
  assert abs(w.mean()) < 5 * 0.5 / 256, w.mean()
  assert w.var() == pytest.approx(0.25, rel=0.03)
  if distribution == "uniform":
    assert np.abs(w).max() <= math.sqrt(0.75) and w.min() < 0 < w.max()


@pytest.mark.parametrize(
    "bias,first_bias", [("zeros", None), ("constant", None), ("torch", None), ("zeros", "torch")]
)
def test_bias_rules(bias, first_bias):
  s = I.get_scheme("init1", bias=bias, bias_value=0.01, first_bias=first_bias)
  b_first = np.asarray(s.bias_init(256, "first")(jax.random.key(0), (4096,)), np.float64)
  b_hidden = np.asarray(s.bias_init(256, "hidden")(jax.random.key(0), (4096,)), np.float64)
  for kind, b in [(first_bias or bias, b_first), (bias, b_hidden)]:
    if kind == "zeros":
      assert np.all(b == 0)
    elif kind == "constant":
      np.testing.assert_allclose(b, 0.01, rtol=1e-6)
    else:
      assert np.abs(b).max() <= 1 / 16 and np.abs(b).max() > 0.98 / 16
      assert abs(b.var() * 3 * 256 - 1) < 0.1  # n=4096: rel. s.e. 1.4%, allow 7 s.e.


def test_bias_initializers_compare_hash_and_pickle_like_kernel_ones():
  # bias_init returned a closure: two identical ones compared unequal and a Linen layer
  # holding one could not be pickled ("Can't pickle local object 'BiasRule.init...'"),
  # while the kernel laws (frozen dataclasses) did both.
  s = I.get_scheme("init1", bias="torch")
  assert s.bias_init(256) == s.bias_init(256) != s.bias_init(128)
  assert hash(s.bias_init(256, "last")) == hash(s.bias_init(256, "hidden"))
  dense = nn.Dense(8, kernel_init=s.last, bias_init=s.bias_init(256))
  again = pickle.loads(pickle.dumps(dense))
  assert again == dense
  x = jnp.ones((2, 256))
  a, b = dense.init(jax.random.key(0), x), again.init(jax.random.key(0), x)
  assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_linen_dense_plugs_in():
  for dtype in (jnp.float32, jnp.complex64):
    dense = nn.Dense(512, kernel_init=I.get_scheme("init1").last, param_dtype=dtype, dtype=dtype)
    params = dense.init(jax.random.key(0), jnp.ones((1, 1024), dtype))
    k = params["params"]["kernel"]
    assert k.shape == (1024, 512) and k.dtype == dtype
    assert abs(float(jnp.mean(jnp.abs(k) ** 2)) * 1024**1.5 / 2 - 1) < 0.01


def test_nnx_linear_plugs_in():
  for dtype in (jnp.float32, jnp.complex64):
    lin = nnx.Linear(
        1024,
        512,
        kernel_init=I.get_scheme("init2").last,
        bias_init=I.get_scheme("init2", bias="torch").bias_init(1024),
        param_dtype=dtype,
        dtype=dtype,
        rngs=nnx.Rngs(0),
    )
    k = lin.kernel[...]
    assert k.shape == (1024, 512) and k.dtype == dtype
    assert abs(float(jnp.mean(jnp.abs(k) ** 2)) * 3 * 1024**1.5 - 1) < 0.01
    assert lin(jnp.ones((2, 1024), dtype)).shape == (2, 512)


INITS = {
    "kernel": I.get_scheme("init1").last,
    "torch bias": I.get_scheme("init1", bias="torch").bias_init(64),
    "constant bias": I.get_scheme("init1", bias="constant").bias_init(64),
}


def _shape(kind):
  return (64, 32) if kind == "kernel" else (32,)


@pytest.mark.parametrize("kind", list(INITS))
def test_dtype_none_is_the_default_float_dtype_as_in_jax(kind):
  # JAX's Initializer protocol is init(key, shape, dtype=None, out_sharding=None). None
  # was read as np.dtype(None), float64: a "float64 is not available" warning and a
  # float32 array without x64.
  init, key = INITS[kind], jax.random.key(0)
  want = init(key, _shape(kind), jnp.float32)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    for got in (
        init(key, _shape(kind)),
        init(key, _shape(kind), None),
        init(key, _shape(kind), float),
    ):
      assert got.dtype == jnp.float32
      np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", list(INITS))
def test_default_dtype_follows_x64_as_in_jax(kind, x64):
  del x64
  init, key = INITS[kind], jax.random.key(0)
  jax_default = jax.nn.initializers.lecun_normal()(key, (4, 4)).dtype
  assert init(key, _shape(kind)).dtype == init(key, _shape(kind), float).dtype
  assert init(key, _shape(kind)).dtype == jax_default == jnp.float64
  assert init(key, _shape(kind), complex).dtype == jnp.complex128


@pytest.mark.parametrize("kind", list(INITS))
def test_out_sharding_is_accepted_and_leaves_the_values(kind):
  # Raised "unexpected keyword argument 'out_sharding'".
  mesh = jax.make_mesh((1,), ("x",))
  spec = (
      jax.sharding.PartitionSpec(None, "x") if kind == "kernel" else jax.sharding.PartitionSpec("x")
  )
  sharding = jax.sharding.NamedSharding(mesh, spec)
  init, key = INITS[kind], jax.random.key(0)
  for draw in (init, jax.jit(init, static_argnums=(1, 2), static_argnames="out_sharding")):
    got = draw(key, _shape(kind), jnp.float32, out_sharding=sharding)
    assert got.sharding == sharding
    np.testing.assert_array_equal(got, init(key, _shape(kind), jnp.float32))


def test_unknown_scheme_lists_valid_names():
  with pytest.raises(ValueError, match="lecun_normal.*init2"):
    I.get_scheme("glorot")
  with pytest.raises(ValueError, match="omega"):
    I.get_scheme("init1", omega=3.0)


@pytest.mark.parametrize("shape", [(5,), (), (0, 3), (4, -1)])
def test_bad_shape(shape):
  with pytest.raises(ValueError, match="shape"):
    I.lecun_normal()(jax.random.key(0), shape)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.uint8])
def test_bad_dtype(dtype):
  with pytest.raises(ValueError, match="dtype"):
    I.kaiming_uniform()(jax.random.key(0), (4, 4), dtype)


def test_bad_hparams():
  with pytest.raises(ValueError, match="omega"):
    I.get_scheme("siren", omega=0.0)
  with pytest.raises(ValueError, match="bias"):
    I.get_scheme("init1", bias="random")
  with pytest.raises(ValueError, match="first_bias must be one of"):
    I.get_scheme("init1", first_bias="random")
  with pytest.raises(ValueError, match="fan_in"):
    I.BiasRule("torch").init(0)
  with pytest.raises(ValueError, match="layer must be an integer"):
    I.get_scheme("init1").position(1.5, 4)  # it answered "hidden"
  with pytest.raises(ValueError, match="omega must be positive"):
    I.get_scheme("init1").with_omega(-1.0)  # unused by init1, but still a mistake


@pytest.mark.parametrize(
    "name,params,key",
    [
        ("powerlaw_normal", {"p": float("nan")}, "fan_power"),
        ("powerlaw_normal", {"c": float("inf")}, "scale"),
        ("siren", {"omega": float("inf")}, "omega"),
        ("siren", {"omega": "30"}, "omega"),
        ("init1", {"bias": "constant", "bias_value": float("nan")}, "bias_value"),
        ("init1", {"first_bias": "constant", "bias_value": float("inf")}, "bias_value"),
        ("kaiming_normal", {"bias_value": "0.1"}, "bias_value"),
    ],
)
def test_non_finite_or_non_numeric_hparams_are_refused(name, params, key):
  # They used to build all-NaN, infinite or all-zero weights without a word.
  with pytest.raises(ValueError, match=f"{key} must be"):
    I.get_scheme(name, **params)


# ---------------------------------------------------------------------------
# Composition, registration, omega, misuse (issue: initializers in other Flax code).

OMEGA_SCHEMES = [n for n in I.BUILTIN_SCHEMES if "omega" in I.scheme_parameters(n)]


def test_omega_dependent_schemes_are_the_siren_ones():
  assert OMEGA_SCHEMES == ["siren", "siren_init2"]
  for name in I.BUILTIN_SCHEMES:
    assert I.get_scheme(name).omega_dependent == (name in OMEGA_SCHEMES)


@pytest.mark.parametrize("name", OMEGA_SCHEMES)
def test_no_silent_default_omega(name):
  s = I.get_scheme(name)
  assert s.omega is None
  with pytest.raises(ValueError, match=r"omega.*make_field.*get_scheme\(name, omega=\.\.\.\)"):
    s.hidden(jax.random.key(0), (64, 64))
  # Explicit omega for standalone use, two ways, both the same law.
  assert I.get_scheme(name, omega=8.0) == s.with_omega(8.0)
  assert s.with_omega(8.0).hidden.variance((64, 64)) == pytest.approx(2 / (64 * 64.0))
  # A scheme built for one omega refuses another.
  with pytest.raises(ValueError, match="omega=30.0.*omega=8"):
    I.get_scheme(name, omega=30.0).with_omega(8.0)
  assert I.get_scheme(name, omega=30.0).with_omega(30.0).omega == 30.0


@pytest.mark.parametrize("base", I.BUILTIN_SCHEMES)
@pytest.mark.parametrize("position", I.POSITIONS)
def test_replace_composes(base, position):
  donor = "init1" if base != "init1" else "siren"
  mixed = I.get_scheme(base).replace(**{position: donor})
  # By name or by Scheme: the donor's law at that position, nothing else changes.
  assert mixed == I.get_scheme(base).replace(**{position: I.get_scheme(donor)})
  assert mixed.kernel_init(position) == I.get_scheme(donor).kernel_init(position)
  for other in I.POSITIONS:
    if other != position:
      assert mixed.kernel_init(other) == I.get_scheme(base).kernel_init(other)
  assert mixed.name == f"{base}[{position}={donor}]"
  assert (mixed.bias, mixed.first_bias) == (I.BiasRule(), I.BiasRule())
  # A raw initializer works too; a custom name is kept.
  law = I.powerlaw(0.5, 2.0)
  assert I.get_scheme(base).replace(**{position: law}, name="mine").kernel_init(position) is law
  assert I.get_scheme(base).replace(**{position: law}, name="mine").name == "mine"


def test_replace_bias_rules_and_omega():
  s = I.get_scheme("siren").replace(last="init1", bias="torch")
  assert s.bias == s.first_bias == I.BiasRule("torch")
  s = s.replace(first_bias=I.BiasRule("constant", 0.5))
  assert s.bias.kind == "torch" and s.first_bias == I.BiasRule("constant", 0.5)
  assert s.omega_dependent and s.omega is None  # the SIREN hidden law still awaits omega
  assert s.with_omega(8.0).hidden.omega == 8.0
  # SIREN's hidden law moved into init1 makes init1 omega-dependent.
  assert I.get_scheme("init1").replace(hidden="siren").omega_dependent
  with pytest.raises(ValueError, match="different omegas"):
    I.get_scheme("siren", omega=30.0).replace(last=I.siren_hidden(8.0))
  # A scheme built for an omega lends it to the omega-free SIREN law it takes in (its
  # .omega said 30 while that layer could not draw).
  s = I.get_scheme("siren", omega=30.0).replace(hidden="siren")
  assert s.omega == s.hidden.omega == 30.0
  np.testing.assert_array_equal(
      s.hidden(jax.random.key(0), (64, 64)), I.siren_hidden(30.0)(jax.random.key(0), (64, 64))
  )
  with pytest.raises(ValueError, match="bias must be one of"):
    I.get_scheme("init1").replace(bias="random")
  with pytest.raises(ValueError, match="valid schemes"):
    I.get_scheme("init1").replace(last="glorot")


@pytest.fixture
def registry(monkeypatch):
  """A private copy of the registry, so registrations do not leak into other tests."""
  monkeypatch.setattr(I, "_REGISTRY", dict(I._REGISTRY))
  return I


@pytest.mark.parametrize("name", I.BUILTIN_SCHEMES)
def test_registered_scheme_behaves_like_builtin(registry, name):
  copy = f"my_{name}"
  registry.register_scheme(copy, registry._REGISTRY[name])
  assert copy in registry.list_schemes()
  assert registry.scheme_parameters(copy) == registry.scheme_parameters(name)
  hp = {"omega": 8.0, "bias": "torch", "c": 1.0, "unrelated": 3}
  assert registry.filter_hparams(copy, hp) == registry.filter_hparams(name, hp)
  built = registry.get_scheme(copy, **registry.filter_hparams(copy, hp))
  assert built.name == copy
  assert dataclasses.replace(built, name=name) == registry.get_scheme(
      name, **registry.filter_hparams(name, hp)
  )
  with pytest.raises(ValueError, match=f"Invalid parameters \\['zzz'\\] for scheme '{copy}'"):
    registry.get_scheme(copy, zzz=1)
  # And a whole field takes it by name, with the activation's omega.
  from nfscale import models

  field = models.make_field((8,), 1, activation_params={"omega": 8.0}, scheme=copy)
  assert field.scheme.name == copy
  assert field.scheme.omega == (8.0 if name in OMEGA_SCHEMES else None)


def test_register_instance_and_decorator(registry):
  mixed = registry.get_scheme("siren").replace(last="lecun_normal", bias="torch")
  registry.register_scheme("siren_lecun", mixed)
  assert registry.get_scheme("siren_lecun") == dataclasses.replace(mixed, name="siren_lecun")
  assert registry.scheme_parameters("siren_lecun") == ["bias", "bias_value", "first_bias", "omega"]
  s = registry.get_scheme("siren_lecun", bias="zeros", first_bias="constant", omega=4.0)
  assert (s.bias.kind, s.first_bias.kind, s.omega) == ("zeros", "constant", 4.0)
  # An instance that does not depend on omega does not take one.
  registry.register_scheme("init1_torch", registry.get_scheme("init1", bias="torch"))
  assert registry.scheme_parameters("init1_torch") == ["bias", "bias_value", "first_bias"]
  assert registry.get_scheme("init1_torch").bias.kind == "torch"  # its own rule is kept
  # Left out, a parameter keeps the instance's own: a first layer with a rule of its own
  # keeps it when only bias is given, and bias_value alone sets the value of both rules
  # (it used to be ignored, and the torch first-layer rule dropped).
  own = registry.get_scheme("init1", bias="constant", bias_value=0.01, first_bias="torch")
  registry.register_scheme("own_first", own)
  s = registry.get_scheme("own_first", bias_value=0.5)
  assert s.bias == I.BiasRule("constant", 0.5) and s.first_bias.kind == "torch"
  assert registry.get_scheme("own_first", bias="zeros").first_bias.kind == "torch"
  # An instance whose first layer follows the others goes on following, as get_scheme's.
  s = registry.get_scheme("init1_torch", bias="constant", bias_value=0.2)
  assert s.first_bias == s.bias == I.BiasRule("constant", 0.2)

  @registry.register_scheme("half_lecun")
  def half_lecun(bias: str = "zeros") -> I.Scheme:
    law = I.VarianceScaling(0.5)
    return I.Scheme("whatever", law, law, law, I.BiasRule(bias))

  assert registry.get_scheme("half_lecun").name == "half_lecun"
  assert registry.filter_hparams("half_lecun", {"bias": "torch", "omega": 1.0}) == {"bias": "torch"}


def test_register_validation(registry):
  good = registry._REGISTRY["init1"]
  with pytest.raises(ValueError, match="built-in"):
    registry.register_scheme("init1", good)
  registry.register_scheme("mine", good)
  with pytest.raises(ValueError, match="overwrite=True"):
    registry.register_scheme("mine", good)
  registry.register_scheme("mine", registry._REGISTRY["init2"], overwrite=True)
  # The README's register_scheme(name, get_scheme("siren").replace(last="init1")) run a
  # second time (a notebook cell run again) raised "already registered": an equal
  # instance is a no-op, a different one is still refused.
  mixed = lambda: registry.get_scheme("siren").replace(last="init1")  # noqa: E731
  registry.register_scheme("again", mixed())
  assert registry.register_scheme("again", mixed()) == mixed()
  assert registry.get_scheme("again", omega=3.0).last == mixed().last
  with pytest.raises(ValueError, match="overwrite=True"):
    registry.register_scheme("again", registry.get_scheme("siren").replace(last="init2"))
  assert registry.get_scheme("mine").last == registry.get_scheme("init2").last
  for bad in ["", "1x", "a b", "a/b", 3]:
    with pytest.raises(ValueError, match="scheme name"):
      registry.register_scheme(bad, good)
  with pytest.raises(ValueError, match=r"\*args"):
    registry.register_scheme("v", lambda *args: registry.get_scheme("init1"))
  with pytest.raises(ValueError, match=r"\*\*kw"):
    registry.register_scheme("v", lambda **kw: registry.get_scheme("init1", **kw))
  with pytest.raises(ValueError, match="needs a default"):
    registry.register_scheme("v", lambda c: registry.get_scheme("init1"))
  with pytest.raises(ValueError, match="not a Scheme"):
    registry.register_scheme("v", lambda: I.lecun_normal())
  with pytest.raises(ValueError, match="fails with its defaults"):
    registry.register_scheme("v", lambda: 1 / 0)
  with pytest.raises(ValueError, match="a function returning a Scheme"):
    registry.register_scheme("v", 3)
  assert "v" not in registry.list_schemes()


def test_strings_and_schemes_interchangeable():
  s = I.get_scheme("init1", bias="torch")
  assert I.get_scheme(s) is s
  assert I.filter_hparams(s, {"bias": "zeros", "omega": 1.0}) == {}
  assert I.get_scheme(s, **I.filter_hparams(s, {"bias": "zeros"})) is s
  assert I.scheme_parameters(s) == []
  with pytest.raises(ValueError, match="Scheme is complete"):
    I.get_scheme(s, bias="zeros")
  for bad in ["glorot", 3, None]:
    with pytest.raises(ValueError, match="valid schemes"):
      I.filter_hparams(bad, {})
  import nfscale

  assert nfscale.filter_hparams is I.filter_hparams and nfscale.register_scheme is I.register_scheme


@pytest.mark.parametrize("name", I.BUILTIN_SCHEMES)
def test_positions_by_name_or_count(name):
  s = I.get_scheme(name)
  # 3 hidden layers: 4 weight layers; both ways of counting give one answer.
  by_layers = [s.position(k, 4) for k in range(4)]
  by_hidden = [s.position(k, num_hidden=3) for k in range(4)]
  assert by_layers == by_hidden == ["first", "hidden", "hidden", "last"]
  assert [s.kernel_init(layer=k, num_hidden=3) for k in range(4)] == [
      s.first,
      s.hidden,
      s.hidden,
      s.last,
  ]
  assert s.position(0, num_hidden=0) == "last"  # a linear model's only layer is the output
  # Counting hidden layers but calling it num_layers: the output index is out of range.
  with pytest.raises(ValueError, match="num_layers counts the weight layers.*num_hidden="):
    s.position(3, 3)
  with pytest.raises(ValueError, match="exactly one"):
    s.position(0, 3, num_hidden=2)
  with pytest.raises(ValueError, match="exactly one"):
    s.kernel_init(layer=0)
  with pytest.raises(ValueError, match="not both"):
    s.kernel_init("last", layer=0, num_hidden=2)
  with pytest.raises(ValueError, match="position must be one of"):
    s.kernel_init("output")
  with pytest.raises(ValueError, match="position must be one of"):
    s.bias_init(4, "output")
  # A layer index given positionally, as position(0, 4) takes it, was answered with
  # "scheme.kernel_init is not an initializer" (the message for Flax calling it uncalled).
  for call in (lambda: s.kernel_init(0, num_layers=4), lambda: s.kernel_init(2)):
    with pytest.raises(ValueError, match=r"layer index.*kernel_init\(layer=") as e:
      call()
    assert not isinstance(e.value, I.SchemeUsageError)
  with pytest.raises(ValueError, match=r"layer index 2; scheme.position\(2, num_layers") as e:
    s.bias_init(64, 2)
  assert not isinstance(e.value, I.SchemeUsageError)


def _linen(**kw):
  return nn.Dense(8, **kw).init(jax.random.key(0), jnp.ones((2, 4)))


def _nnx(**kw):
  return nnx.Linear(4, 8, rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize("build", [_linen, _nnx])
@pytest.mark.parametrize("name", I.BUILTIN_SCHEMES)
def test_misuse_names_the_right_call(build, name):
  s = I.get_scheme(name)
  cases = [
      ({"kernel_init": s.kernel_init}, r"kernel_init=scheme\.kernel_init\('hidden'\)"),
      ({"bias_init": s.bias_init}, r"bias_init=scheme\.bias_init\(fan_in, 'hidden'\)"),
      ({"kernel_init": s}, r"kernel_init=scheme\.kernel_init\('hidden'\)"),
      ({"bias_init": s}, r"bias_init=scheme\.bias_init\(fan_in, 'hidden'\)"),
      ({"kernel_init": s.bias_init(4)}, r"kernel_init=scheme\.kernel_init\("),
  ]
  for kw, message in cases:
    # SchemeUsageError is both a TypeError (Python's own) and a ValueError (ours).
    with pytest.raises((TypeError, ValueError), match=message):
      build(**kw)
    with pytest.raises(ValueError, match="nfscale.Dense|kernel_init"):
      build(**kw)


def test_misuse_in_replace():
  s = I.get_scheme("init1")
  with pytest.raises(I.SchemeUsageError, match=r"last=scheme\.kernel_init\('last'\)"):
    s.replace(last=s.kernel_init)
  with pytest.raises(ValueError, match="must be an initializer"):
    s.replace(last=3)
  with pytest.raises(ValueError, match="fan_in must be a positive int"):
    s.bias_init(2.5)
