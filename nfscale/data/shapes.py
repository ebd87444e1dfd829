"""Solids for occupancy fields: an inside test on ``[-1, 1]^3``, grids and training points.

A :class:`Solid` is anything with a vectorised inside test. Three sources make one: the
embedded procedural shapes below (signed distance functions, no file needed), a mesh file
(:mod:`nfscale.data.meshes`, generalized winding numbers) and a voxel grid file (same module).

Grids use ``np.linspace(-1, 1, res)`` on every axis and ``(x, y, z)`` index order:
``grid[i, j, k]`` is the point ``(x_i, y_j, z_k)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Solid:
  """A 3-D solid inside the cube ``[-1, 1]^3``.

  Attributes:
    name: where it came from (a procedural name or a file), for results and messages.
    inside: ``(n, 3) float -> (n,) bool``, vectorised over points.
  """

  name: str
  inside: Callable[[np.ndarray], np.ndarray]


def _length(v: np.ndarray) -> np.ndarray:
  return np.sqrt(np.sum(v * v, axis=-1))


def sdf_sphere(p: np.ndarray, center=(0.0, 0.0, 0.0), radius: float = 0.5) -> np.ndarray:
  """Signed distance to a sphere (negative inside)."""
  return _length(p - np.asarray(center)) - radius


def sdf_torus(
    p: np.ndarray, major: float = 0.5, minor: float = 0.2, center=(0.0, 0.0, 0.0), axis: str = "z"
) -> np.ndarray:
  """Signed distance to a torus around ``axis`` (``"x"``, ``"y"`` or ``"z"``) through ``center``."""
  q = p - np.asarray(center)
  a = "xyz".index(axis)
  plane = [i for i in range(3) if i != a]
  ring = np.sqrt(q[..., plane[0]] ** 2 + q[..., plane[1]] ** 2) - major
  return np.sqrt(ring**2 + q[..., a] ** 2) - minor


def sdf_capsule(p: np.ndarray, a, b, radius: float) -> np.ndarray:
  """Signed distance to a rod of ``radius`` around the segment from ``a`` to ``b``."""
  a, b = np.asarray(a, float), np.asarray(b, float)
  ab = b - a
  t = np.clip(np.sum((p - a) * ab, -1) / np.dot(ab, ab), 0.0, 1.0)
  return _length(p - a - t[..., None] * ab) - radius


def sdf_box(p: np.ndarray, half, center=(0.0, 0.0, 0.0)) -> np.ndarray:
  """Signed distance to an axis-aligned box with half extents ``half``."""
  q = np.abs(p - np.asarray(center)) - np.asarray(half)
  outside = _length(np.maximum(q, 0.0))
  return outside + np.minimum(np.max(q, -1), 0.0)


def _rotate_x(p: np.ndarray, degrees: float) -> np.ndarray:
  c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
  return np.stack([p[..., 0], c * p[..., 1] + s * p[..., 2], -s * p[..., 1] + c * p[..., 2]], -1)


def sdf_trophy(p: np.ndarray) -> np.ndarray:
  """The default shape: thin parts and holes, so occupancy is not trivially easy.

  A ring (torus) on three thin rods over a thin plate with a round hole, and a thin tilted
  ring floating between them. At a 64^3 grid (voxel 0.032) the rods are about 2.5 voxels
  across, the plate 3 voxels thick and the floating ring 2 voxels thick.
  """
  parts = [
      sdf_torus(p, 0.42, 0.1, center=(0, 0.4, 0), axis="y"),
      # A plate with a hole through it: the box minus a vertical cylinder.
      np.maximum(
          sdf_box(p, (0.62, 0.05, 0.62), center=(0, -0.62, 0)),
          -(np.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2) - 0.22),
      ),
      _sdf_tilted_ring(p),
  ]
  for theta in np.radians([90.0, 210.0, 330.0]):
    top = (0.42 * np.cos(theta), 0.4, 0.42 * np.sin(theta))
    bottom = (0.5 * np.cos(theta), -0.6, 0.5 * np.sin(theta))
    parts.append(sdf_capsule(p, top, bottom, 0.04))
  return np.min(np.stack(parts), axis=0)


def _sdf_tilted_ring(p: np.ndarray) -> np.ndarray:
  # Tilted by 60 degrees so that its thin tube is not aligned with the grid axes.
  return sdf_torus(_rotate_x(p - np.array([0.0, -0.1, 0.0]), 60.0), 0.28, 0.035, axis="y")


#: Embedded shapes by name: signed distance functions on ``[-1, 1]^3``.
PROCEDURAL_SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "trophy": sdf_trophy,
    "sphere": lambda p: sdf_sphere(p, radius=0.6),
    "torus": lambda p: sdf_torus(p, 0.5, 0.2),
}


def procedural_solid(name: str = "trophy") -> Solid:
  """An embedded shape of :data:`PROCEDURAL_SHAPES` (inside: signed distance <= 0).

  Raises:
    ValueError: unknown name (the message lists the valid ones).

  >>> s = procedural_solid("sphere")
  >>> s.inside(np.array([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0]])).tolist()
  [True, False]
  """
  if name not in PROCEDURAL_SHAPES:
    raise ValueError(
        f"Unknown procedural shape {name!r}; valid names: "
        f"{', '.join(PROCEDURAL_SHAPES)} (or a mesh or voxel file: data.path)."
    )
  sdf = PROCEDURAL_SHAPES[name]
  return Solid(name, lambda pts: sdf(np.asarray(pts, np.float64)) <= 0.0)


def grid_axis(res: int) -> np.ndarray:
  """The coordinates of one grid axis: ``res`` points from -1 to 1."""
  if res < 2:
    raise ValueError(f"a grid needs at least 2 points per axis, got res={res}.")
  return np.linspace(-1.0, 1.0, res, dtype=np.float32)


def grid_points(res: int, start: int = 0, stop: int | None = None) -> np.ndarray:
  """Rows ``start:stop`` of the flattened ``res^3`` grid, as ``(n, 3)`` float32 points.

  Computing a slice directly lets callers walk a 256^3 grid in chunks without holding
  all 16.7M points.

  >>> grid_points(2)[[0, 1, 7]].tolist()
  [[-1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]
  """
  stop = res**3 if stop is None else min(stop, res**3)
  idx = np.arange(start, stop)
  axis = grid_axis(res)
  return np.stack([axis[idx // (res * res)], axis[(idx // res) % res], axis[idx % res]], -1)


def occupancy_grid(solid: Solid, res: int, chunk: int = 1 << 18) -> np.ndarray:
  """The solid's inside test on the ``res^3`` grid, evaluated in chunks.

  Returns:
    ``(res, res, res)`` bool.

  >>> occupancy_grid(procedural_solid("sphere"), 5)[2, 2].tolist()
  [False, True, True, True, False]
  """
  out = np.empty(res**3, bool)
  for start in range(0, res**3, chunk):
    out[start : start + chunk] = solid.inside(grid_points(res, start, start + chunk))
  return out.reshape(res, res, res)


def boundary_voxels(grid: np.ndarray) -> np.ndarray:
  """Indices ``(m, 3)`` of grid points with a 6-neighbour on the other side of the surface."""
  g = grid.astype(bool)
  edge = np.zeros_like(g)
  for axis in range(3):
    diff = np.diff(g, axis=axis)
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    edge[tuple(lo)] |= diff
    edge[tuple(hi)] |= diff
  return np.argwhere(edge)


def training_points(
    solid: Solid,
    grid_res: int,
    num_surface: int,
    jitter: float = 1.0,
    seed: int = 0,
    grid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Occupancy training data: a dense grid plus points near the surface.

  The near-surface points are boundary voxels of the ``grid_res`` grid, moved by a uniform
  offset of up to ``jitter`` voxels per axis, and labelled by the solid's exact inside test
  (so they carry detail finer than the grid).

  Args:
    solid: the ground truth.
    grid_res: points per axis of the dense grid (``grid_res^3`` points).
    num_surface: how many near-surface points to add.
    jitter: the offset range in voxels.
    seed: seeds the choice of voxels and offsets.
    grid: the solid's occupancy grid at ``grid_res`` when the caller already has it.

  Returns:
    ``x`` of shape ``(n, 3)`` (float32) and occupancy ``y`` of shape ``(n, 1)`` (float32,
    0 or 1), ``n = grid_res^3 + num_surface``.

  Raises:
    ValueError: the solid has no surface on this grid (all inside or all outside).
  """
  if grid is None:
    grid = occupancy_grid(solid, grid_res)
  edge = boundary_voxels(grid)
  if not len(edge) and num_surface:
    raise ValueError(
        f"shape {solid.name!r} has no surface on a {grid_res}^3 grid "
        "(every point is inside or every point is outside)."
    )
  x = [grid_points(grid_res)]
  y = [grid.reshape(-1)]
  if num_surface:
    rng = np.random.default_rng(seed)
    voxel = 2.0 / (grid_res - 1)
    pick = edge[rng.integers(0, len(edge), num_surface)]
    pts = grid_axis(grid_res)[pick] + rng.uniform(-jitter, jitter, (num_surface, 3)) * voxel
    pts = np.clip(pts, -1.0, 1.0).astype(np.float32)
    x.append(pts)
    y.append(solid.inside(pts))
  return np.concatenate(x), np.concatenate(y).astype(np.float32)[:, None]
