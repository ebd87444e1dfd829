"""Statistical and API tests of every registered initialization scheme.

Tolerances: a kernel of shape (1024, 512) gives n = 524288 iid samples. The
sample variance has relative standard error sqrt((kurtosis - 1) / n), i.e.
sqrt(2/n) = 0.20% for a normal and sqrt(0.8/n) = 0.12% for a uniform; we allow
1% (5 standard errors for the normal). The sample mean has standard error
sigma/sqrt(n); we allow 5 of them. The share of |w| > 2 sigma is 4.55% for a
plain normal with standard error sqrt(p(1-p)/n) = 0.029%; we allow 0.15%
(5 s.e.), which a 2-sigma-truncated normal (share 0) fails by far.
"""

import math

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

# The formula of docs/schemes.md for each (scheme, position): (distribution, variance).
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
      "init1": ("normal", 1 / fan_in, 2 / fan_in ** 1.5),
      # U(±1/sqrt(fan_in)) and U(±1/fan_in^{3/4}): variance bound^2 / 3.
      "init2": ("uniform", 1 / (3 * fan_in), 1 / (3 * fan_in ** 1.5)),
      "powerlaw_normal": ("normal", 1 / fan_in, 2 / fan_in ** 1.5),
      "powerlaw_uniform": ("uniform", 1 / (3 * fan_in), 1 / (3 * fan_in ** 1.5)),
  }
  siren_hidden = 6 / fan_in / OMEGA ** 2 / 3
  siren_first = (1 / fan_in) ** 2 / 3
  if name == "siren":
    return "uniform", {"first": siren_first, "hidden": siren_hidden, "last": siren_hidden}[position]
  if name == "siren_init2":
    return "uniform", {"first": siren_first, "hidden": siren_hidden,
                       "last": 1 / (3 * fan_in ** 1.5)}[position]
  dist, hidden, last = table[name]
  return dist, (last if position == "last" else hidden)


CASES = [(s, p) for s in I.list_schemes() for p in I.POSITIONS]


def test_registry_covers_spec():
  assert set(I.PAPER_SCHEMES) <= set(I.list_schemes())
  assert {"siren", "siren_init2", "powerlaw_normal", "powerlaw_uniform"} <= set(I.list_schemes())
  assert {s for s, _ in CASES} == set(I.list_schemes())


@pytest.mark.parametrize("name,position", CASES)
def test_moments_and_bounds(name, position):
  init = I.get_scheme(name).kernel_init(position)
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
  assert s.last.variance((100, 3)) == pytest.approx(0.5 / 100 ** 2)


@pytest.mark.parametrize("name,position", CASES)
def test_same_seed_same_array(name, position):
  init = I.get_scheme(name).kernel_init(position)
  a = init(jax.random.key(7), (64, 32))
  b = init(jax.random.key(7), (64, 32))
  c = init(jax.random.key(8), (64, 32))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.parametrize("name,position", CASES)
def test_complex_splits_variance(name, position):
  init = I.get_scheme(name).kernel_init(position)
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


def test_jit_compatible():
  init = I.get_scheme("init1").last
  a = jax.jit(init, static_argnums=(1, 2))(jax.random.key(3), (16, 4), jnp.float32)
  # XLA may fuse the scaling differently under jit: equal to float32 rounding.
  np.testing.assert_allclose(a, init(jax.random.key(3), (16, 4), jnp.float32), rtol=1e-6)


@pytest.mark.parametrize("bias,first_bias", [("zeros", None), ("constant", None),
                                             ("torch", None), ("zeros", "torch")])
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


def test_linen_dense_plugs_in():
  for dtype in (jnp.float32, jnp.complex64):
    dense = nn.Dense(512, kernel_init=I.get_scheme("init1").last, param_dtype=dtype, dtype=dtype)
    params = dense.init(jax.random.key(0), jnp.ones((1, 1024), dtype))
    k = params["params"]["kernel"]
    assert k.shape == (1024, 512) and k.dtype == dtype
    assert abs(float(jnp.mean(jnp.abs(k) ** 2)) * 1024 ** 1.5 / 2 - 1) < 0.01


def test_nnx_linear_plugs_in():
  for dtype in (jnp.float32, jnp.complex64):
    lin = nnx.Linear(1024, 512, kernel_init=I.get_scheme("init2").last,
                     bias_init=I.get_scheme("init2", bias="torch").bias_init(1024),
                     param_dtype=dtype, dtype=dtype, rngs=nnx.Rngs(0))
    k = lin.kernel[...]
    assert k.shape == (1024, 512) and k.dtype == dtype
    assert abs(float(jnp.mean(jnp.abs(k) ** 2)) * 3 * 1024 ** 1.5 - 1) < 0.01
    assert lin(jnp.ones((2, 1024), dtype)).shape == (2, 512)


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
  with pytest.raises(ValueError, match="fan_in"):
    I.BiasRule("torch").init(0)
