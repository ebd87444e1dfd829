"""Surfaces of occupancy grids: marching cubes, ``.ply`` export, IoU and a shaded preview.

Grids are ``(R, R, R)`` arrays over ``np.linspace(-1, 1, R)`` per axis in ``(x, y, z)`` index
order (as in :mod:`nfscale.data.shapes`). Everything here is numpy/scikit-image on the CPU;
the preview is a software render (no OpenGL).
"""

from __future__ import annotations

import os

import numpy as np


def grid_iou(
    pred: np.ndarray, target: np.ndarray, level: float = 0.5, chunk: int = 1 << 22
) -> float:
  """Intersection over union of ``pred >= level`` and ``target >= level``, counted in chunks.

  Args:
    pred: occupancy values (any shape).
    target: occupancy values or booleans of the same shape.
    level: the threshold.
    chunk: entries per step (bounds the temporary memory).

  Returns:
    The IoU; 1.0 when both are empty.

  >>> a = np.zeros((4, 4, 4)); a[:2] = 1
  >>> grid_iou(a, np.roll(a, 1, axis=0))
  0.3333333333333333
  """
  if pred.shape != target.shape:
    raise ValueError(f"grid shapes differ: {pred.shape} vs {target.shape}.")
  p, t = pred.reshape(-1), target.reshape(-1)
  inter = union = 0
  for s in range(0, p.size, chunk):
    a, b = p[s : s + chunk] >= level, t[s : s + chunk] >= level
    inter += int(np.count_nonzero(a & b))
    union += int(np.count_nonzero(a | b))
  return 1.0 if union == 0 else inter / union


def marching_cubes(values: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """The ``level`` iso-surface of a grid, in ``[-1, 1]^3`` coordinates.

  The grid is padded by one cell of "outside" so that shapes touching the border still
  give closed surfaces.

  Args:
    values: ``(R, R, R)`` occupancy values (higher is inside).
    level: the iso-value.

  Returns:
    ``vertices (v, 3)`` float32 and ``faces (f, 3)`` int32; both empty when the grid does
    not cross ``level``.

  >>> g = np.zeros((8, 8, 8)); g[2:6, 2:6, 2:6] = 1
  >>> v, f = marching_cubes(g)
  >>> bool(v.min() > -1 and v.max() < 1 and len(f) > 0)
  True
  """
  from skimage import measure

  res = values.shape[0]
  vals = np.asarray(values, np.float32)
  if not vals.max() > level:  # no voxel inside: no surface
    return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
  low = min(float(vals.min()), level) - 1.0
  padded = np.pad(vals, 1, constant_values=low)
  verts, faces, _, _ = measure.marching_cubes(padded, level)
  verts = (verts - 1.0) * (2.0 / (res - 1)) - 1.0
  return verts.astype(np.float32), faces.astype(np.int32)


def save_ply(path: str, vertices: np.ndarray, faces: np.ndarray) -> str:
  """Writes a triangle mesh as binary ``.ply`` (atomically: a temp file, then a rename).

  Returns:
    ``path``.
  """
  import trimesh

  mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    f.write(mesh.export(file_type="ply"))
  os.replace(tmp, path)
  return path


def _view_basis(elevation: float, azimuth: float) -> tuple[np.ndarray, ...]:
  el, az = np.radians(elevation), np.radians(azimuth)
  # Looking towards the origin from a point above the x-z plane ("y up").
  forward = -np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
  right = np.cross(forward, [0.0, 1.0, 0.0])
  right /= np.linalg.norm(right)
  up = np.cross(right, forward)
  return forward, right, up


def preview_frame(values: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, float]:
  """The centre and half-size of a view that frames the voxels at or above ``level``.

  The bounding sphere of those voxels (the whole cube when there are none), so that every
  view of the shape fits and small shapes still fill the picture.

  >>> g = np.zeros((5, 5, 5)); g[2, 2, 2] = 1
  >>> centre, extent = preview_frame(g)
  >>> centre.tolist(), round(extent, 2)
  ([0.0, 0.0, 0.0], 0.4)
  """
  res = values.shape[0]
  occupied = np.argwhere(np.asarray(values) >= level)
  if not len(occupied):
    return np.zeros(3), float(np.sqrt(3.0))
  pts = occupied * (2.0 / (res - 1)) - 1.0
  centre = (pts.min(0) + pts.max(0)) / 2
  radius = float(np.max(np.linalg.norm(pts - centre, axis=1)))
  return centre, min(float(np.sqrt(3.0)), 1.05 * radius + 2.0 / res)


def render_preview(
    values: np.ndarray,
    level: float = 0.5,
    size: int = 192,
    elevation: float = 25.0,
    azimuth: float = 35.0,
    depth_samples: int | None = None,
    frame: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
  """A shaded orthographic render of the ``level`` surface of a grid ("y" points up).

  Casts one ray per pixel through the trilinearly interpolated grid, takes the first
  sample at or above ``level`` as the surface, and shades it by the normal of the depth
  map (Lambertian light from the upper left plus ambient).

  Args:
    values: ``(R, R, R)`` occupancy values.
    level: the surface's iso-value.
    size: output image side in pixels.
    elevation: camera elevation in degrees.
    azimuth: camera azimuth in degrees.
    depth_samples: samples per ray (default: ``2 R``).
    frame: ``(centre, half-size)`` of the view (default: :func:`preview_frame` of
      ``values``); pass one frame to several renders to compare them.

  Returns:
    ``(size, size)`` float32 image in [0, 1]; the background is 1 (white).

  >>> g = np.zeros((16, 16, 16)); g[4:12, 4:12, 4:12] = 1
  >>> img = render_preview(g, size=32)
  >>> img.shape, bool(img[16, 16] < 1.0), bool(img[0, 0] == 1.0)
  ((32, 32), True, True)
  """
  from scipy import ndimage

  vals = np.asarray(values, np.float32)
  res = vals.shape[0]
  n_depth = depth_samples or 2 * res
  forward, right, up = _view_basis(elevation, azimuth)
  centre, extent = preview_frame(vals, level) if frame is None else frame
  uv = np.linspace(extent, -extent, size)
  ts = np.linspace(-extent, extent, n_depth)
  depth = np.full((size, size), np.inf)
  for row, v in enumerate(uv):
    # One image row at a time keeps the samples to size x n_depth points.
    pts = (
        centre
        + v * up[None, None]
        + uv[::-1, None, None] * right[None, None]
        + ts[None, :, None] * forward[None, None]
    )
    idx = (pts.reshape(-1, 3) + 1.0) * ((res - 1) / 2.0)
    s = ndimage.map_coordinates(vals, idx.T, order=1, mode="constant", cval=0.0)
    hit = s.reshape(size, n_depth) >= level
    first = np.argmax(hit, axis=1)
    depth[row] = np.where(hit.any(axis=1), ts[first], np.inf)
  fg = np.isfinite(depth)
  filled = np.where(fg, depth, np.nanmax(np.where(fg, depth, np.nan)) if fg.any() else 0.0)
  step = uv[0] - uv[1]
  dz_dv, dz_du = np.gradient(filled, step)
  # The surface normal in camera coordinates (u right, v up, towards the camera).
  normal = np.stack([dz_du, -dz_dv, np.ones_like(filled)], -1)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  light = np.array([-0.45, 0.55, 0.7])
  light /= np.linalg.norm(light)
  shade = 0.25 + 0.7 * np.clip(normal @ light, 0.0, 1.0)
  return np.where(fg, shade, 1.0).astype(np.float32)
