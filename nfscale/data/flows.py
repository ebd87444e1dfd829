"""Flow data for the Navier-Stokes PINN: an exact Taylor-Green vortex or Raissi's cylinder wake.

Both give a :class:`Flow`: every point ``(x, y, t)`` of a space-time set with
its velocity ``(u, v)`` and pressure ``p``. The PINN observes ``u, v`` at a
random subset of points (the pressure is never observed, as in Raissi et al.
2019) and evaluates the PDE residual there; errors are measured on all points.

Raissi's ``cylinder_nektar_wake.mat`` holds ``X_star`` ``(N, 2)``, ``t``
``(T, 1)``, ``U_star`` ``(N, 2, T)`` and ``p_star`` ``(N, T)``.

Example:
  >>> flow = taylor_green_data(grid=8, num_times=3)
  >>> flow.xyt.shape, flow.uvp.shape, flow.grid_shape
  ((192, 3), (192, 3), (3, 8, 8))
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from nfscale import navier_stokes

MAT_KEYS = ("X_star", "t", "U_star", "p_star")


class Flow(NamedTuple):
  """A flow sampled on a space-time set.

  Attributes:
    xyt: ``(P, 3)`` float64 points, time-major (all of ``t_0``'s points first).
    uvp: ``(P, 3)`` float64 ``(u, v, p)``.
    grid_shape: ``(T, ny, nx)`` when the points form a regular grid (for field
      plots), else ``(T, N)``.
    bounds: ``(3, 2)`` min/max of ``x, y, t`` (normalises network inputs).
    source: where the data came from.
  """

  xyt: np.ndarray
  uvp: np.ndarray
  grid_shape: tuple[int, ...]
  bounds: np.ndarray
  source: str


def taylor_green_data(
    grid: int = 64, num_times: int = 11, t_max: float = 5.0, nu: float = 0.01, k: float = np.pi
) -> Flow:
  """The decaying Taylor-Green vortex on ``[-1, 1]^2 x [0, t_max]``.

  Args:
    grid: points per space axis.
    num_times: time slices (evenly spaced, ends included).
    t_max: last time.
    nu: viscosity.
    k: wavenumber.

  Returns:
    The :class:`Flow` (exact values, float64).
  """
  if grid < 2 or num_times < 1 or not t_max > 0:
    raise ValueError(
        "taylor_green_data needs grid >= 2, num_times >= 1, t_max > 0; got "
        f"grid={grid}, num_times={num_times}, t_max={t_max}."
    )
  s = np.linspace(-1.0, 1.0, grid)
  ts = np.linspace(0.0, t_max, num_times) if num_times > 1 else np.zeros(1)
  tt, yy, xx = np.meshgrid(ts, s, s, indexing="ij")
  xyt = np.stack([xx, yy, tt], -1).reshape(-1, 3)
  uvp = navier_stokes.taylor_green(xyt, nu, k, xp=np)
  bounds = np.array([[-1.0, 1.0], [-1.0, 1.0], [0.0, max(t_max, 1e-9)]])
  return Flow(xyt, uvp, (num_times, grid, grid), bounds, f"taylor_green(nu={nu}, k={k:.4g})")


def load_raissi_mat(path: str) -> Flow:
  """Reads Raissi's cylinder-wake ``.mat`` (keys ``X_star``, ``t``, ``U_star``, ``p_star``).

  Args:
    path: the ``.mat`` file.

  Returns:
    The :class:`Flow` (``grid_shape = (T, N)``: scattered points).

  Raises:
    ValueError: missing file, unreadable file, missing keys or inconsistent
      shapes (the message names the file and the key).
  """
  import scipy.io  # a dependency of scikit-image; only this loader needs it

  if not os.path.isfile(path):
    raise ValueError(f"flow data: {path} does not exist.")
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for a bad file
    raise ValueError(f"{path}: not a readable .mat file ({e}).") from None
  missing = [k for k in MAT_KEYS if k not in mat]
  if missing:
    have = sorted(k for k in mat if not k.startswith("__"))
    raise ValueError(f"{path}: missing key(s) {missing}; expected {list(MAT_KEYS)}, found {have}.")
  x_star = np.asarray(mat["X_star"], np.float64)
  t = np.asarray(mat["t"], np.float64).reshape(-1) if np.size(mat["t"]) else np.zeros(0)
  u_star = np.asarray(mat["U_star"], np.float64)
  p_star = np.asarray(mat["p_star"], np.float64)
  if x_star.ndim != 2 or x_star.shape[1] != 2 or not x_star.shape[0]:
    raise ValueError(f"{path}: X_star must have shape (N, 2), got {x_star.shape}.")
  n, nt = x_star.shape[0], t.size
  if not nt or np.asarray(mat["t"]).ndim > 2 or 1 not in np.asarray(mat["t"]).shape:
    raise ValueError(f"{path}: t must have shape (T, 1), got {np.asarray(mat['t']).shape}.")
  if u_star.shape != (n, 2, nt):
    raise ValueError(
        f"{path}: U_star must have shape (N, 2, T) = ({n}, 2, {nt}), got {u_star.shape}."
    )
  if p_star.shape != (n, nt):
    raise ValueError(f"{path}: p_star must have shape (N, T) = ({n}, {nt}), got {p_star.shape}.")
  for key, arr in (("X_star", x_star), ("t", t), ("U_star", u_star), ("p_star", p_star)):
    if not np.all(np.isfinite(arr)):
      raise ValueError(f"{path}: {key} has non-finite entries.")
  xy = np.broadcast_to(x_star[None], (nt, n, 2))
  tt = np.broadcast_to(t[:, None, None], (nt, n, 1))
  xyt = np.concatenate([xy, tt], -1).reshape(-1, 3)
  uvp = np.stack([u_star[:, 0].T, u_star[:, 1].T, p_star.T], -1).reshape(-1, 3)
  bounds = np.stack([xyt.min(0), xyt.max(0)], -1)
  bounds[:, 1] = np.maximum(bounds[:, 1], bounds[:, 0] + 1e-9)
  return Flow(xyt, uvp, (nt, n), bounds, path)


def sample_points(flow: Flow, num: int, seed: int = 0) -> np.ndarray:
  """Indices of ``num`` distinct random points of ``flow`` (sorted, from ``seed``).

  >>> sample_points(taylor_green_data(grid=4, num_times=2), 5).shape
  (5,)
  """
  total = flow.xyt.shape[0]
  if not 0 < num <= total:
    raise ValueError(f"data.num_points must be in [1, {total}] for {flow.source}, got {num}.")
  return np.sort(np.random.default_rng(seed).choice(total, num, replace=False))
