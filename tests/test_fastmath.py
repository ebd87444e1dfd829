"""Tests for nfscale.fastmath (fast float32 sin/cos).

References are float64 numpy values of the *float32* inputs, i.e. the exact
sine of the number the kernel actually receives. For large |x| the float32
input is itself far from the decimal value it was drawn as, so comparing
against sin(float64 draw) would blame the kernel for input rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale.fastmath import MAX_ACCURATE_ARG, fast_cos, fast_sin

# Tolerances (absolute). Measured worst cases, all float32 checked
# exhaustively up to |x| < 65536 under jit on x86-64: 1.10e-7 (sin) and
# 1.15e-7 (cos); ~9.3e-8 on |x| <= 100.
#  * 1.5e-7 for |x| <= 100: polynomial error (~6e-8) + half-ulp rounding of
#    r and of the result (~3e-8 each) + a little slack. A regression in the
#    range reduction or the coefficients shows up far above this.
#  * 4e-7 for |x| <= 1e4: without FMA contraction (eager mode, or a CPU
#    without FMA) the last reduction steps round, which was measured at up to
#    2.9e-7 in [8192, 16384). Still 5x inside the 2e-6 design budget.
ATOL_100 = 1.5e-7
ATOL_1E4 = 4e-7

_jit_sin = jax.jit(fast_sin)
_jit_cos = jax.jit(fast_cos)


def _ref(fn, x: np.ndarray) -> np.ndarray:
  """Exact-ish reference: numpy float64 of the float32 values."""
  return fn(np.asarray(x, np.float32).astype(np.float64))


def _max_err(got, want) -> float:
  return float(np.max(np.abs(np.asarray(got, np.float64) - want)))


@pytest.fixture(scope="module")
def dense_grid() -> np.ndarray:
  # ~1M points on [-100, 100]: spacing 2e-4, i.e. every quadrant boundary
  # (k*pi/2) of the range is straddled by thousands of points.
  return np.linspace(-100.0, 100.0, 2**20 + 1, dtype=np.float32)


@pytest.fixture(scope="module")
def wide_random() -> np.ndarray:
  rng = np.random.default_rng(1234)
  return rng.uniform(-1e4, 1e4, size=2**20).astype(np.float32)


@pytest.mark.parametrize("fn, ref", [(_jit_sin, np.sin), (_jit_cos, np.cos)])
def test_dense_grid_accuracy(fn, ref, dense_grid):
  y = fn(dense_grid)
  assert y.dtype == jnp.float32
  assert _max_err(y, _ref(ref, dense_grid)) <= ATOL_100


@pytest.mark.parametrize("fn, ref", [(_jit_sin, np.sin), (_jit_cos, np.cos)])
def test_wide_random_accuracy(fn, ref, wide_random):
  assert _max_err(fn(wide_random), _ref(ref, wide_random)) <= ATOL_1E4


def test_near_quadrant_boundaries():
  # Float32 neighbours of k*pi/2 are where the Cody-Waite reduction cancels
  # most and where the quadrant choice flips: the hardest inputs for it.
  k = np.arange(-6400, 6401, dtype=np.float64)
  base = (k * np.pi / 2).astype(np.float32)
  up, down = np.nextafter(base, np.inf), np.nextafter(base, -np.inf)
  x = np.concatenate([base, up, down, np.nextafter(up, np.inf)])
  assert _max_err(_jit_sin(x), _ref(np.sin, x)) <= ATOL_1E4
  assert _max_err(_jit_cos(x), _ref(np.cos, x)) <= ATOL_1E4


def test_small_arguments_keep_relative_accuracy():
  # For |x| << 1 the reduction must be the identity, so sin(x) ~= x to full
  # relative precision (an absolute tolerance would not catch e.g. a lost
  # factor or a flush to zero here). Includes float32 subnormals.
  rng = np.random.default_rng(7)
  x = (10.0 ** rng.uniform(-44, -4, size=4096)).astype(np.float32)
  x = np.concatenate([x, -x])
  x = x[x != 0]
  got = np.asarray(_jit_sin(x), np.float64)
  np.testing.assert_allclose(got, _ref(np.sin, x), rtol=1e-7, atol=0)
  assert np.all(np.asarray(_jit_cos(x)) == 1.0)


def test_exact_values_at_zero():
  for f in (fast_sin, _jit_sin):
    assert float(f(np.float32(0.0))) == 0.0
    neg = np.asarray(f(np.float32(-0.0)))
    assert neg == 0.0 and np.signbit(neg), "sin(-0.0) should be -0.0"
  for f in (fast_cos, _jit_cos):
    assert float(f(np.float32(0.0))) == 1.0
    assert float(f(np.float32(-0.0))) == 1.0


def test_odd_even_symmetry(wide_random):
  # The kernel is sign-symmetric by construction (round-half-even, odd/even
  # polynomials), so this holds bit-for-bit.
  x = wide_random[:4096]
  np.testing.assert_array_equal(np.asarray(_jit_sin(-x)), -np.asarray(_jit_sin(x)))
  np.testing.assert_array_equal(np.asarray(_jit_cos(-x)), np.asarray(_jit_cos(x)))


def test_gradients_match_analytic(dense_grid):
  x = dense_grid[::64]
  dsin = jax.jit(jax.vmap(jax.grad(fast_sin)))(x)
  dcos = jax.jit(jax.vmap(jax.grad(fast_cos)))(x)
  assert _max_err(dsin, _ref(np.cos, x)) <= ATOL_100
  assert _max_err(dcos, -_ref(np.sin, x)) <= ATOL_100
  # The custom JVP makes the derivative *be* the other kernel, bit for bit.
  np.testing.assert_array_equal(np.asarray(dsin), np.asarray(_jit_cos(x)))
  np.testing.assert_array_equal(np.asarray(dcos), -np.asarray(_jit_sin(x)))


def test_siren_style_gradient():
  # d/dx sum(sin(w0 * x)) = w0 * cos(w0 * x), the SIREN backward pass.
  w0 = 30.0
  x = np.linspace(-1.0, 1.0, 4097, dtype=np.float32)
  g = jax.jit(jax.grad(lambda v: jnp.sum(fast_sin(w0 * v))))(x)
  want = w0 * _ref(np.cos, np.float32(w0) * x)
  # Tolerance scales with w0 (the chain-rule factor).
  assert _max_err(g, want) <= w0 * ATOL_100


def test_second_and_third_derivatives():
  x = np.linspace(-20.0, 20.0, 1001, dtype=np.float32)
  d2 = jax.jit(jax.vmap(jax.grad(jax.grad(fast_sin))))(x)
  d3 = jax.jit(jax.vmap(jax.grad(jax.grad(jax.grad(fast_sin)))))(x)
  d2c = jax.jit(jax.vmap(jax.hessian(fast_cos)))(x)
  assert _max_err(d2, -_ref(np.sin, x)) <= ATOL_100
  assert _max_err(d3, -_ref(np.cos, x)) <= ATOL_100
  assert _max_err(d2c, -_ref(np.cos, x)) <= ATOL_100


def test_forward_mode_jvp():
  x = np.linspace(-5.0, 5.0, 101, dtype=np.float32)
  t = np.full_like(x, 2.0)
  y, dy = jax.jvp(fast_sin, (x,), (t,))
  np.testing.assert_array_equal(np.asarray(y), np.asarray(fast_sin(x)))
  assert _max_err(dy, 2.0 * _ref(np.cos, x)) <= 2 * ATOL_100


@pytest.mark.parametrize("f", [fast_sin, fast_cos])
def test_jit_and_vmap_agree_with_eager(f, wide_random):
  x = wide_random[:8192]
  eager = np.asarray(f(x))
  jitted = np.asarray(jax.jit(f)(x))
  # vmap runs the same element-wise ops on the batch: identical bits.
  np.testing.assert_array_equal(np.asarray(jax.vmap(f)(x)), eager)
  np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(f))(x)), jitted)
  # Under jit XLA fuses the reduction into FMAs, eager mode runs op by op,
  # so results may differ in the last bit; both are within tolerance.
  assert _max_err(jitted, eager) <= 2 * np.finfo(np.float32).eps
  # 2-D input and vmap over rows give the same as the flat computation.
  x2 = x.reshape(64, 128)
  np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(f))(x2)), jitted.reshape(64, 128))


@pytest.mark.parametrize("f", [fast_sin, fast_cos, _jit_sin, _jit_cos])
def test_non_finite_inputs_give_nan(f):
  x = np.array([np.nan, np.inf, -np.inf], np.float32)
  assert np.all(np.isnan(np.asarray(f(x))))


@pytest.mark.parametrize("f", [_jit_sin, _jit_cos])
def test_huge_inputs_give_nan_not_garbage(f):
  # Beyond MAX_ACCURATE_ARG the reduction is meaningless; documented
  # behaviour is nan rather than an arbitrary (possibly |y| >> 1) number.
  big = np.float32(MAX_ACCURATE_ARG)
  above = np.nextafter(big, np.float32(np.inf))
  x = np.array([above, -above, 1e7, -1e7, 3e38, -3e38], np.float32)
  assert np.all(np.isnan(np.asarray(f(x))))
  # At the threshold itself the result is still finite and a valid sine.
  below = np.array([big, -big, np.nextafter(big, np.float32(0))], np.float32)
  y = np.asarray(f(below))
  assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.0)


def test_gradient_of_non_finite_is_nan():
  g = jax.grad(fast_sin)(np.float32(np.inf))
  assert np.isnan(g)


def test_float64_path_defers_to_jnp(x64):
  x = np.linspace(-1e4, 1e4, 10001, dtype=np.float64)
  s, c = fast_sin(x), fast_cos(x)
  assert s.dtype == jnp.float64 and c.dtype == jnp.float64
  np.testing.assert_array_equal(np.asarray(s), np.asarray(jnp.sin(x)))
  np.testing.assert_array_equal(np.asarray(c), np.asarray(jnp.cos(x)))
  np.testing.assert_allclose(np.asarray(s), np.sin(x), rtol=0, atol=1e-12)
  g = jax.vmap(jax.grad(fast_sin))(x[:100])
  assert g.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(g), np.cos(x[:100]), atol=1e-12)
  # float32 still takes the fast path with x64 enabled.
  x32 = x.astype(np.float32)
  y32 = _jit_sin(x32)
  assert y32.dtype == jnp.float32
  assert _max_err(y32, _ref(np.sin, x32)) <= ATOL_1E4


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_dtypes_round_trip(dtype):
  x = jnp.linspace(-50.0, 50.0, 1001).astype(dtype)
  y = fast_sin(x)
  assert y.dtype == dtype
  # Computed in float32 and rounded once: within half an ulp of 1 of the
  # narrow type (plus the tiny float32 kernel error).
  want = _ref(np.sin, np.asarray(x, np.float32))
  assert _max_err(np.asarray(y, np.float32), want) <= float(jnp.finfo(dtype).eps)


def test_integer_inputs_promote_like_jnp():
  x = np.arange(-10, 11, dtype=np.int32)
  y = fast_sin(x)
  assert y.dtype == jnp.sin(x).dtype == jnp.float32
  assert _max_err(y, np.sin(x.astype(np.float64))) <= ATOL_100
