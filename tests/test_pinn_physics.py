"""Navier-Stokes residuals and the flow loaders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from nfscale import navier_stokes as ns
from nfscale.data import flows


def _points(n=64, seed=0):
  rs = np.random.default_rng(seed)
  # float64 under the x64 fixture, float32 otherwise.
  return jnp.asarray(
      np.stack([rs.uniform(-1, 1, n), rs.uniform(-1, 1, n), rs.uniform(0, 5, n)], -1)
  )


def test_taylor_green_residual_vanishes_in_float64(x64):
  flow = ns.taylor_green_flow(nu=0.01)
  r = jax.vmap(lambda q: ns.residuals(flow, q, nu=0.01))(_points())
  assert r["momentum_x"].dtype == jnp.float64
  # Each residual is a sum of O(1)-O(10) terms that cancel analytically; float64
  # rounding leaves ~1e-15 of them.
  for name, value in r.items():
    assert np.abs(np.asarray(value)).max() < 1e-12, name


def test_wrong_viscosity_or_perturbed_field_has_a_residual(x64):
  pts = _points()
  flow = ns.taylor_green_flow(nu=0.01)
  # The decay rate belongs to nu = 0.01: with nu = 0.05 the viscous term is off
  # by 0.04 * 2 pi^2 |u|, O(0.1) where |u| ~ 0.5.
  assert float(ns.pde_loss(flow, pts, nu=0.05)) > 1e-3
  bump = lambda q: flow(q) + 0.01 * jnp.array([jnp.sin(3 * q[0]) * jnp.cos(2 * q[1]), 0.0, 0.0])
  r = jax.vmap(lambda q: ns.residuals(bump, q, nu=0.01))(pts)
  # The bump breaks continuity by 0.03 cos(3x) cos(2y), momentum by a similar amount.
  assert np.abs(np.asarray(r["continuity"])).max() > 1e-2
  assert np.abs(np.asarray(r["momentum_x"])).max() > 1e-3


def test_residuals_match_finite_differences(x64):
  # A flow that is not a solution; compare autodiff residuals with central
  # differences (step 1e-4: truncation ~1e-8, rounding ~1e-16/1e-8 = 1e-8).
  f = lambda q: jnp.stack(
      [jnp.sin(q[0] * q[1]) + q[2] ** 2, jnp.cos(q[0] - 2 * q[1]) * q[2], q[0] ** 3 * q[1]]
  )
  q = jnp.array([0.3, -0.7, 0.4])
  h = 1e-4
  e = np.eye(3) * h
  d = lambda i: (f(q + e[i]) - f(q - e[i])) / (2 * h)
  dd = lambda i: (f(q + e[i]) - 2 * f(q) + f(q - e[i])) / h**2
  u, v, _ = f(q)
  lap = dd(0) + dd(1)
  nu = 0.01
  expect_x = d(2)[0] + u * d(0)[0] + v * d(1)[0] + d(0)[2] - nu * lap[0]
  expect_c = d(0)[0] + d(1)[1]
  r = ns.residuals(f, q, nu)
  np.testing.assert_allclose(r["momentum_x"], expect_x, atol=1e-6)
  np.testing.assert_allclose(r["continuity"], expect_c, atol=1e-6)


def test_stream_function_parameterization_is_divergence_free():
  net = lambda z: jnp.stack([jnp.sin(z[0] * z[1] + z[2]), z[0] * z[2]])
  flow = ns.flow_from_network(net, "psi_p", center=[0, 0, 2.5], scale=[1, 1, 2.5])
  r = jax.jit(jax.vmap(lambda q: ns.residuals(flow, q)))(_points())
  assert np.abs(np.asarray(r["continuity"])).max() < 1e-5
  # u = psi_y in physical coordinates (chain rule through the normalisation).
  q = jnp.array([0.2, 0.3, 1.0])
  z = (q - jnp.array([0, 0, 2.5])) / jnp.array([1, 1, 2.5])
  np.testing.assert_allclose(flow(q)[0], z[0] * jnp.cos(z[0] * z[1] + z[2]), rtol=1e-5)
  with pytest.raises(ValueError, match="valid: uvp, psi_p"):
    ns.flow_from_network(net, "stream")


def test_taylor_green_data_is_exact():
  flow = flows.taylor_green_data(grid=5, num_times=3, t_max=2.0)
  assert flow.xyt.shape == (75, 3) and flow.grid_shape == (3, 5, 5)
  np.testing.assert_allclose(flow.uvp, ns.taylor_green(flow.xyt, xp=np))
  # Time-major order: the first grid**2 points are at t = 0.
  np.testing.assert_allclose(flow.xyt[:25, 2], 0.0)
  idx = flows.sample_points(flow, 10, seed=1)
  assert len(set(idx.tolist())) == 10
  with pytest.raises(ValueError, match="data.num_points must be in"):
    flows.sample_points(flow, 76)


def _write_mat(path, n=6, nt=4, **overrides):
  rs = np.random.default_rng(0)
  data = {
      "X_star": rs.normal(size=(n, 2)),
      "t": np.linspace(0, 1, nt)[:, None],
      "U_star": rs.normal(size=(n, 2, nt)),
      "p_star": rs.normal(size=(n, nt)),
  }
  data.update(overrides)
  data = {k: v for k, v in data.items() if v is not None}
  scipy.io.savemat(path, data)
  return data


def test_raissi_mat_loader(tmp_path):
  path = str(tmp_path / "wake.mat")
  data = _write_mat(path)
  flow = flows.load_raissi_mat(path)
  assert flow.xyt.shape == (24, 3) and flow.grid_shape == (4, 6)
  # Point j at time i -> row i * n + j.
  i, j = 2, 5
  np.testing.assert_allclose(flow.xyt[i * 6 + j], [*data["X_star"][j], data["t"][i, 0]])
  np.testing.assert_allclose(
      flow.uvp[i * 6 + j], [data["U_star"][j, 0, i], data["U_star"][j, 1, i], data["p_star"][j, i]]
  )


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"p_star": None}, r"missing key\(s\) \['p_star'\]"),
        ({"U_star": np.zeros((6, 3, 4))}, r"U_star must have shape \(N, 2, T\) = \(6, 2, 4\)"),
        ({"p_star": np.zeros((6, 5))}, r"p_star must have shape"),
        ({"X_star": np.zeros((6, 3))}, r"X_star must have shape \(N, 2\)"),
        ({"t": np.zeros((2, 2))}, r"t must have shape \(T, 1\)"),
    ],
)
def test_raissi_mat_bad_inputs(tmp_path, overrides, match):
  path = str(tmp_path / "bad.mat")
  _write_mat(path, **overrides)
  with pytest.raises(ValueError, match=match) as e:
    flows.load_raissi_mat(path)
  assert "bad.mat" in str(e.value)


def test_raissi_mat_unreadable(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    flows.load_raissi_mat(str(tmp_path / "none.mat"))
  (tmp_path / "junk.mat").write_text("not a mat file")
  with pytest.raises(ValueError, match="junk.mat: not a readable .mat file"):
    flows.load_raissi_mat(str(tmp_path / "junk.mat"))
