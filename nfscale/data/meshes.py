"""Occupancy ground truth from files: triangle meshes and voxel grids.

Meshes (``.obj``, ``.ply``, ``.stl``, ``.off``, read by trimesh) are scaled into
``[-0.9, 0.9]^3`` (centred, aspect kept) and tested with *generalized winding numbers*
(Jacobson et al. 2013): a point's winding number is the solid angle the surface subtends at
it, over ``4 pi``; inside is ``w > 0.5``. For a closed mesh that is the exact inside test; on a
mesh with holes or cracks ``w`` varies smoothly across the holes, so the test still gives the
solid a person would expect instead of the all-or-nothing errors of ray parity.

The exact sum costs ``points x faces`` solid angles. :func:`mesh_inside` saves most of it:
a point whose distance to the surface is at least ``d`` shares its answer with every point
within ``d`` (no surface in between), so it is snapped to the coarsest lattice node within
that distance and only the distinct nodes and the points close to the surface are summed.
The distance bound comes from a k-d tree of vertices of the mesh subdivided until its edges
are shorter than ``gap`` (every surface point is then within ``gap`` of one of them).

Voxel grids (``.npy``, or ``.mat`` with one 3-D array) span ``[-1, 1]^3`` with the grid points
at ``np.linspace(-1, 1, n)``; values are occupancies in [0, 1] (bool, 0/1 integers, or
floats), interpolated trilinearly and thresholded at 0.5.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from nfscale.data import shapes

MESH_FORMATS: tuple[str, ...] = (".obj", ".ply", ".stl", ".off")
VOXEL_FORMATS: tuple[str, ...] = (".npy", ".mat")


@functools.partial(jax.jit, static_argnames=("face_chunk",))
def _winding_chunk(points: jax.Array, tris: jax.Array, face_chunk: int) -> jax.Array:
  tris = tris.reshape(-1, face_chunk, 3, 3)

  def body(acc, t):
    # Van Oosterom & Strackee: the solid angle of triangle (a, b, c) seen from the origin is
    # 2 atan2(a . (b x c), |a||b||c| + (a.b)|c| + (b.c)|a| + (c.a)|b|).
    a = t[None, :, 0] - points[:, None]
    b = t[None, :, 1] - points[:, None]
    c = t[None, :, 2] - points[:, None]
    la, lb, lc = (jnp.sqrt(jnp.sum(v * v, -1)) for v in (a, b, c))
    det = jnp.sum(a * jnp.cross(b, c), -1)
    den = la * lb * lc + jnp.sum(a * b, -1) * lc + jnp.sum(b * c, -1) * la + jnp.sum(c * a, -1) * lb
    return acc + jnp.sum(jnp.arctan2(det, den), -1), None

  acc, _ = jax.lax.scan(body, jnp.zeros(points.shape[0], points.dtype), tris)
  return acc / (2.0 * jnp.pi)


def winding_numbers(
    points: np.ndarray, triangles: np.ndarray, point_chunk: int = 2048, face_chunk: int = 512
) -> np.ndarray:
  """Generalized winding numbers of ``points`` w.r.t. a triangle soup, summed exactly.

  Memory is ``O(point_chunk x face_chunk)``; time ``O(points x faces)``.

  Args:
    points: ``(n, 3)`` query points.
    triangles: ``(f, 3, 3)`` triangle corners (consistently oriented, outward normals).
    point_chunk: points per jitted call.
    face_chunk: faces per scan step.

  Returns:
    ``(n,)`` float32 winding numbers: 1 inside a closed surface, 0 outside.

  >>> import trimesh
  >>> cube = trimesh.creation.box((1.0, 1.0, 1.0))
  >>> winding_numbers(np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), cube.triangles).round(4)
  array([1., 0.], dtype=float32)
  """
  points = np.asarray(points, np.float32).reshape(-1, 3)
  tris = np.asarray(triangles, np.float32).reshape(-1, 3, 3)
  # Zero-area padding triangles subtend no angle (atan2(0, x >= 0) = 0).
  tris = np.concatenate([tris, np.zeros(((-len(tris)) % face_chunk, 3, 3), np.float32)])
  out = np.empty(len(points), np.float32)
  tris_dev = jnp.asarray(tris)
  for start in range(0, len(points), point_chunk):
    block = points[start : start + point_chunk]
    # Pad the last block so every call has the same shape (one compilation).
    padded = np.concatenate([block, np.zeros((point_chunk - len(block), 3), np.float32)])
    out[start : start + len(block)] = np.asarray(
        _winding_chunk(jnp.asarray(padded), tris_dev, face_chunk)
    )[: len(block)]
  return out


class MeshInside:
  """The accelerated winding-number inside test of one mesh (see the module docstring).

  Args:
    vertices: ``(v, 3)`` mesh vertices.
    faces: ``(f, 3)`` vertex indices per triangle.
    gap: the surface-sample spacing; also the finest lattice is ``2 * gap``.
  """

  def __init__(self, vertices: np.ndarray, faces: np.ndarray, gap: float = 1.0 / 128):
    import trimesh
    from scipy import spatial

    self.triangles = np.asarray(vertices, np.float32)[np.asarray(faces)]
    sub_v, _ = trimesh.remesh.subdivide_to_size(
        np.asarray(vertices, np.float64), faces, max_edge=gap, max_iter=20
    )
    self.tree = spatial.cKDTree(sub_v)
    self.gap = gap
    self.max_distance = 0.25

  def __call__(self, points: np.ndarray) -> np.ndarray:
    """``(n, 3)`` points -> ``(n,)`` bool, ``winding number > 0.5``."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    # Every surface point is within `gap` of a sample (any point of a triangle is within its
    # longest edge of each corner), so this is a lower bound on the distance to the surface.
    # Far points only need to know that they are far: a bounded search is much faster.
    dist = self.tree.query(points, distance_upper_bound=self.max_distance)[0]
    clearance = np.minimum(dist, self.max_distance) - self.gap
    out = np.empty(len(points), bool)
    # A lattice of spacing h has a node within h*sqrt(3)/2 of every point; snapping is exact
    # when that is below the clearance. Use the coarsest lattice that qualifies.
    spacing = (
        2.0
        * self.gap
        * 2.0 ** np.floor(np.log2(np.maximum(clearance, 1e-12) / (np.sqrt(3) * self.gap)))
    )
    snap = clearance > np.sqrt(3) * self.gap  # the finest lattice (2 * gap) qualifies
    near = ~snap
    queries = [points[near]]
    nodes = np.round(points[snap] / spacing[snap, None]) * spacing[snap, None]
    uniq, inverse = np.unique(nodes.astype(np.float32), axis=0, return_inverse=True)
    queries.append(uniq)
    w = winding_numbers(np.concatenate(queries), self.triangles)
    out[near] = w[: near.sum()] > 0.5
    out[snap] = w[near.sum() :][inverse.reshape(-1)] > 0.5
    return out


def _check_file(path: str, formats: tuple[str, ...], what: str) -> str:
  ext = os.path.splitext(path)[1].lower()
  if not os.path.isfile(path):
    raise ValueError(f"{what} file {path!r} does not exist or is not a file.")
  if ext not in formats:
    raise ValueError(
        f"{what} file {path!r} has unsupported format {ext or '(none)'!r}; "
        f"supported: {', '.join(formats)}."
    )
  return ext


def load_mesh(path: str, normalize: bool = True):
  """Reads a triangle mesh (all its parts merged), optionally scaled into ``[-0.9, 0.9]^3``.

  Args:
    path: a ``.obj``, ``.ply``, ``.stl`` or ``.off`` file.
    normalize: centre the bounding box and scale its longest side to 1.8.

  Returns:
    A ``trimesh.Trimesh``.

  Raises:
    ValueError: missing or unreadable file, unsupported format, no triangles, or a flat
      mesh (zero extent along an axis: it encloses no volume).
  """
  import trimesh

  _check_file(path, MESH_FORMATS, "mesh")
  try:
    mesh = trimesh.load(path, force="mesh", process=False)
  except Exception as e:  # trimesh raises many types for bad files.
    raise ValueError(f"could not read mesh {path!r}: {e}") from e
  if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
    raise ValueError(f"mesh {path!r} has no triangles.")
  lo, hi = mesh.bounds
  extent = hi - lo
  if not np.all(np.isfinite(extent)) or extent.min() <= 1e-6 * max(extent.max(), 1e-30):
    raise ValueError(
        f"mesh {path!r} has no volume: its bounding box is flat "
        f"(extent {np.round(extent, 6).tolist()})."
    )
  if normalize:
    mesh = mesh.copy()
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.8 / extent.max())
  return mesh


def mesh_solid(path: str, normalize: bool = True, gap: float = 1.0 / 128) -> shapes.Solid:
  """A mesh file as a :class:`~nfscale.data.shapes.Solid` (winding-number inside test).

  Raises:
    ValueError: see :func:`load_mesh`.
  """
  mesh = load_mesh(path, normalize)
  return shapes.Solid(path, MeshInside(mesh.vertices, mesh.faces, gap))


def load_voxels(path: str, key: str = "") -> np.ndarray:
  """Reads an occupancy grid: ``(D, H, W)`` in [0, 1], returned as float32.

  Args:
    path: a ``.npy`` file, or a ``.mat`` file with one 3-D array (or name it with ``key``).
    key: the variable of a ``.mat`` file.

  Raises:
    ValueError: missing or unreadable file, unsupported format, not 3-D, a side shorter
      than 2, a non-numeric dtype, values outside [0, 1], or no occupied voxel.
  """
  ext = _check_file(path, VOXEL_FORMATS, "voxel")
  try:
    if ext == ".npy":
      vox = np.load(path, allow_pickle=False)
    else:
      from scipy import io as sio

      arrays = {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}
      if key:
        if key not in arrays:
          raise ValueError(
              f"voxel file {path!r} has no variable {key!r}; "
              f"variables: {', '.join(arrays) or '(none)'}."
          )
        vox = arrays[key]
      else:
        cubes = [k for k, v in arrays.items() if np.ndim(v) == 3]
        if len(cubes) != 1:
          raise ValueError(
              f"voxel file {path!r} must hold exactly one 3-D array (or name it "
              f"with data.key); 3-D variables: {', '.join(cubes) or '(none)'}."
          )
        vox = arrays[cubes[0]]
  except ValueError as e:
    if str(path) in str(e):
      raise
    raise ValueError(f"could not read voxel file {path!r}: {e}") from e
  except Exception as e:  # numpy/scipy raise many types for bad files.
    raise ValueError(f"could not read voxel file {path!r}: {e}") from e
  vox = np.asarray(vox)
  if vox.ndim != 3 or min(vox.shape) < 2:
    raise ValueError(
        f"voxel file {path!r} must hold a 3-D array with every side >= 2, got shape {vox.shape}."
    )
  if not (
      vox.dtype == bool
      or np.issubdtype(vox.dtype, np.integer)
      or np.issubdtype(vox.dtype, np.floating)
  ):
    raise ValueError(
        f"voxel file {path!r} has dtype {vox.dtype}; expected bool, integer "
        "(0/1) or float occupancies in [0, 1]."
    )
  vox = vox.astype(np.float32)
  if not np.all(np.isfinite(vox)) or vox.min() < 0 or vox.max() > 1:
    raise ValueError(
        f"voxel file {path!r} has values outside [0, 1] "
        f"(min {np.nanmin(vox):g}, max {np.nanmax(vox):g})."
    )
  if not np.any(vox >= 0.5):
    raise ValueError(f"voxel file {path!r} has no occupied voxel (no value >= 0.5).")
  return vox


def voxel_solid(path: str, key: str = "") -> shapes.Solid:
  """A voxel file as a :class:`~nfscale.data.shapes.Solid` (trilinear, threshold 0.5).

  Raises:
    ValueError: see :func:`load_voxels`.
  """
  from scipy import ndimage

  vox = load_voxels(path, key)
  scale = (np.array(vox.shape, np.float64) - 1) / 2.0

  def inside(points: np.ndarray) -> np.ndarray:
    idx = (np.asarray(points, np.float64).reshape(-1, 3) + 1.0) * scale
    return ndimage.map_coordinates(vox, idx.T, order=1, mode="nearest") >= 0.5

  return shapes.Solid(path, inside)


def file_solid(path: str, key: str = "", gap: float = 1.0 / 128) -> shapes.Solid:
  """A mesh or voxel file by its extension.

  Raises:
    ValueError: unsupported extension (the message lists both kinds) or a bad file.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext in VOXEL_FORMATS:
    return voxel_solid(path, key)
  if ext in MESH_FORMATS or not os.path.isfile(path):
    return mesh_solid(path, gap=gap)
  raise ValueError(
      f"shape file {path!r} has unsupported format {ext or '(none)'!r}; "
      f"supported: meshes {', '.join(MESH_FORMATS)}, voxel grids "
      f"{', '.join(VOXEL_FORMATS)}."
  )
