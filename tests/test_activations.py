"""Each registered activation against its formula in float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import activations as A
from nfscale import initializers as I

X = np.random.default_rng(0).uniform(-2, 2, size=4096).astype(np.float32)


def reference(name, x, p):
  x = x.astype(np.float64)
  if name == "sine":
    return np.sin(p["omega"] * x)
  if name == "sinc":
    return np.sinc(p["omega"] * x / np.pi)  # np.sinc is sin(pi t)/(pi t)
  if name == "gaussian":
    return np.exp(-(x**2) / (2 * p["sigma"] ** 2))
  if name == "gabor":
    return np.exp(1j * p["omega0"] * x) * np.exp(-np.abs(p["s0"] * x) ** 2)
  if name == "real_gabor":
    return np.cos(p["omega0"] * x) * np.exp(-((p["s0"] * x) ** 2))
  if name == "relu":
    return np.maximum(x, 0)
  raise AssertionError(name)


PARAMS = {
    "sine": {"omega": 30.0},
    "sinc": {"omega": 10.0},
    "gaussian": {"sigma": 0.3},
    "gabor": {"omega0": 10.0, "s0": 2.0},
    "real_gabor": {"omega0": 10.0, "s0": 2.0},
    "relu": {},
}


def test_registry_is_covered():
  assert set(PARAMS) == set(A.list_activations())


@pytest.mark.parametrize("name", A.list_activations())
def test_matches_formula(name):
  act = A.get_activation(name, **PARAMS[name])
  y = np.asarray(jax.jit(act)(jnp.asarray(X)))
  # float32 evaluation of arguments up to |omega x| = 60: allow 1e-5 absolute.
  np.testing.assert_allclose(y, reference(name, X, PARAMS[name]), atol=1e-5, rtol=1e-5)
  assert A.activation_name(act) == name


def test_sinc_at_zero():
  act = A.get_activation("sinc", omega=30.0)
  assert float(act(jnp.float32(0.0))) == 1.0
  g = jax.grad(act)(0.0)
  assert np.isfinite(g) and g == 0.0
  g2 = jax.grad(jax.grad(act))(0.0)
  assert np.isfinite(g2)
  # Second derivative of sin(wx)/(wx) at 0 is -w^2/3.
  assert float(g2) == pytest.approx(-(30.0**2) / 3, rel=1e-4)


def test_gabor_is_complex():
  act = A.get_activation("gabor")
  assert act.is_complex
  y = act(jnp.asarray(X))
  assert jnp.iscomplexobj(y)
  z = jnp.asarray(X) + 0.1j * jnp.asarray(X[::-1])
  expected = np.exp(1j * 10 * np.asarray(z, np.complex128) - np.abs(10 * np.asarray(z)) ** 2)
  np.testing.assert_allclose(np.asarray(act(z)), expected, atol=1e-5)
  assert not any(A.get_activation(n).is_complex for n in A.list_activations() if n != "gabor")


@pytest.mark.parametrize("name", [n for n in A.list_activations() if n != "gabor"])
def test_gradients_match_finite_differences(name):
  act = A.get_activation(name, **PARAMS[name])
  x = np.linspace(-1.3, 1.7, 37)  # avoids relu's kink at 0
  g = np.asarray(jax.vmap(jax.grad(act))(jnp.asarray(x, jnp.float32)))
  h = 1e-5
  fd = (reference(name, x + h, PARAMS[name]) - reference(name, x - h, PARAMS[name])) / (2 * h)
  scale = max(1.0, np.abs(fd).max())
  np.testing.assert_allclose(g, fd, atol=2e-4 * scale)


def test_bad_input():
  with pytest.raises(ValueError, match="sine.*relu"):
    A.get_activation("tanh")
  with pytest.raises(ValueError, match="sigma"):
    A.get_activation("gaussian", sigma=-1.0)
  with pytest.raises(ValueError, match="omega"):
    A.get_activation("gaussian", omega=3.0)
  for omega in (float("inf"), float("nan"), "30", True):
    with pytest.raises(ValueError, match="omega must be positive and finite"):
      A.get_activation("sine", omega=omega)
  # A JAX scalar read as "must be positive and finite, got omega=Array(30.)", which it is.
  for omega in (jnp.float32(30.0), np.array(30.0)):
    with pytest.raises(ValueError, match=r"an array: pass a Python number, float\(x\)"):
      A.get_activation("sine", omega=omega)
    with pytest.raises(ValueError, match=r"an array: pass a Python number"):
      I.get_scheme("siren").with_omega(omega)
  assert A.get_activation("sine", omega=np.float32(30.0)).omega == 30.0  # NumPy scalars count
  # Read by truth value: fast="false" (a string in a params dict) took the fast path.
  for name in ("sine", "sinc", "real_gabor"):
    with pytest.raises(ValueError, match="fast must be True or False, got fast='false'"):
      A.get_activation(name, fast="false")
  # A config's model.activation=None with its params read "params given with an instance".
  with pytest.raises(ValueError, match="None is not a registered activation"):
    A.get_activation(None, sigma=0.1)


FAST = [
    ("sine", {"omega": 30.0}),
    ("sinc", {"omega": 30.0}),
    ("sinc", {"omega": 10.0}),
    ("real_gabor", {"omega0": 10.0, "s0": 2.0}),
]


@pytest.mark.parametrize("name,params", FAST)
def test_fast_variants_match_reference(name, params):
  """The fast kernels over the whole range a field's pre-activations see.

  Pre-activations of trained fields stay well inside |x| < 50, i.e.
  |omega x| < 1500; we check a dense grid there, values and gradients, at the
  float32 rounding of the arguments (1e-5 absolute, relative to O(1) outputs
  and to gradients of size ~omega).
  """
  x = np.concatenate([np.linspace(-50, 50, 200001), np.linspace(-1e-3, 1e-3, 2001), [0.0]])
  x = x.astype(np.float32)
  slow = A.get_activation(name, **params)
  fast = A.get_activation(name, fast=True, **params)
  assert fast != slow and fast.fast
  np.testing.assert_allclose(np.asarray(jax.jit(fast)(x)), np.asarray(jax.jit(slow)(x)), atol=1e-5)
  g_fast = np.asarray(jax.jit(jax.vmap(jax.grad(fast)))(x))
  # float64 reference derivative (jnp.sinc's own float32 gradient loses ~3e-4
  # to cancellation near 0, so it is no reference there).
  g_ref = reference_grad(name, x, params)
  scale = max(params.get("omega", params.get("omega0", 1.0)), 1.0)
  err = np.abs(g_fast - g_ref) / scale
  assert err.max() < 2e-5, (err.max(), x[err.argmax()])
  assert np.all(np.isfinite(g_fast))


def reference_grad(name, x, p):
  # Arguments omega*x are rounded to float32 first, as the activations do:
  # at |omega x| ~ 1500 that rounding alone moves cos by ~6e-5.
  w = np.float32(p.get("omega", p.get("omega0", 1.0)))
  z = (w * x).astype(np.float64)
  x = x.astype(np.float64)
  if name == "sine":
    return p["omega"] * np.cos(z)
  if name == "sinc":
    safe = np.where(z == 0, 1.0, z)
    return p["omega"] * np.where(z == 0, 0.0, (safe * np.cos(safe) - np.sin(safe)) / safe**2)
  if name == "real_gabor":
    s = p["s0"]
    return np.exp(-((s * x) ** 2)) * (-w * np.sin(z) - 2 * s * s * x * np.cos(z))
  raise AssertionError(name)


def test_fast_sinc_at_zero():
  act = A.get_activation("sinc", omega=30.0, fast=True)
  assert float(act(jnp.float32(0.0))) == 1.0
  assert float(jax.grad(act)(0.0)) == 0.0


def test_fast_sinc_taylor_branch_is_at_float32_precision():
  # Below |omega x| = 1e-2 the fast sinc is 1 - z^2/6, whose error z^4/120 < 1e-10
  # is far below float32's half-ulp near 1 (3e-8); we allow 2e-7 (~3 ulps) for
  # the rounding of z and z^2. The shared 1e-5 of test_fast_variants_match_reference
  # (the quotient branch's fast_sin error / z) would let a wrong Taylor coefficient
  # through: 1 - z^2/7 is off by 2.4e-6 at the branch edge.
  omega = 30.0
  z = np.linspace(-9.99e-3, 9.99e-3, 2001)
  x = (z / omega).astype(np.float32)
  act = A.get_activation("sinc", omega=omega, fast=True)
  y = np.asarray(jax.jit(act)(x), np.float64)
  want = np.sinc(np.float32(omega) * x.astype(np.float64) / np.pi)
  np.testing.assert_allclose(y, want, rtol=0, atol=2e-7)


def _sinc_grad_f64(omega, x):
  """d/dx sin(omega x)/(omega x) in float64, from the series near 0 (no cancellation)."""
  z = omega * x.astype(np.float64)
  small = np.abs(z) < 1e-2
  safe = np.where(small, 1.0, z)
  quotient = (safe * np.cos(safe) - np.sin(safe)) / safe**2
  series = -z / 3 + z**3 / 30 - z**5 / 840
  return omega * np.where(small, series, quotient)


@pytest.mark.parametrize("omega", [30.0, 1.0, 0.01])
def test_sinc_gradient_near_zero_matches_float64(omega):
  # Log-spaced |x| from 1e-30 to 3, both signs: jnp.sinc's derivative was
  # +-inf/NaN below |omega x| ~ 1e-19 and off by up to 8e12 up to 1e-8.
  mag = np.logspace(-30, np.log10(3.0), 3001)
  x = np.concatenate([mag, -mag, [0.0]]).astype(np.float32)
  act = A.get_activation("sinc", omega=omega)
  g = np.asarray(jax.jit(jax.vmap(jax.grad(act)))(x))
  assert np.all(np.isfinite(g))
  want = _sinc_grad_f64(omega, x)  # at the float32 inputs, as the activation sees them
  # float32 relative accuracy (4e-6 ~ 30 eps), plus an absolute floor of 1e-6
  # omega for the zeros of the derivative (tan z = z), where relative error
  # is meaningless; near 0 the derivative is ~omega z/3, so the relative
  # bound is what is tested there.
  np.testing.assert_allclose(g, want, rtol=4e-6, atol=1e-6 * omega)
  assert g[-1] == 0.0
  # Values too: 1 - z^2/6 near 0, the quotient elsewhere.
  y = np.asarray(jax.jit(act)(x))
  np.testing.assert_allclose(y, np.sinc(omega * x.astype(np.float64) / np.pi), rtol=1e-6, atol=1e-7)


def test_sinc_second_derivative_is_finite_everywhere():
  act = A.get_activation("sinc", omega=30.0)
  x = np.concatenate([np.logspace(-30, 0, 61), [0.0]]).astype(np.float32)
  g2 = np.asarray(jax.vmap(jax.grad(jax.grad(act)))(x))
  assert np.all(np.isfinite(g2))
  # Near 0 it is -omega^2/3 (1 - 3 z^2/10 ...).
  np.testing.assert_allclose(g2[x < 1e-6], -(30.0**2) / 3, rtol=1e-5)


def test_fast_sinc_gradient_is_finite_near_zero():
  mag = np.logspace(-30, 0, 301)
  x = np.concatenate([mag, -mag, [0.0]]).astype(np.float32)
  act = A.get_activation("sinc", omega=30.0, fast=True)
  g = np.asarray(jax.jit(jax.vmap(jax.grad(act)))(x))
  assert np.all(np.isfinite(g))
  # The fast path's slope (cos z - sin(z)/z)/z cancels near its series
  # switch (|z| = 1e-2): absolute, not relative, accuracy ~1e-5 omega.
  np.testing.assert_allclose(g, _sinc_grad_f64(30.0, x), atol=1e-5 * 30.0)
