"""Radiance-field scenes: a procedural default and a Blender (NeRF-synthetic) loader.

The procedural scene is an analytic radiance field: a few coloured primitives
(an opaque sphere with painted bands, a translucent box, a translucent torus,
an opaque ground disc with a checker pattern), each a smooth density bump
around its signed distance function. Its views are rendered by
:mod:`nfscale.rendering` itself at a high sample count, so the ground truth and
the trained field go through the same image formation. Cameras sit on a
sphere of radius 4 and look at the origin with ``near=2, far=6``, the layout
of the NeRF-synthetic scenes, so the same configs serve both.

A Blender scene is a directory with ``transforms_{split}.json`` holding
``camera_angle_x`` (horizontal field of view, radians) and ``frames``, each
with ``file_path`` (relative, ``.png`` implied when absent) and a 4x4
``transform_matrix`` (camera-to-world, camera looking down ``-z``). Images are
RGBA and are composited on a white background.

Example:
  >>> scene = procedural_scene(num_train=2, num_test=2, height=8, width=8,
  ...                          gt_samples=32)
  >>> scene.train.images.shape, scene.test.c2w.shape
  ((2, 8, 8, 3), (2, 4, 4))
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import rendering

Array = jax.Array

NEAR, FAR, RADIUS = 2.0, 6.0, 4.0


class Views(NamedTuple):
  """Posed images of one split.

  Attributes:
    images: ``(N, H, W, 3)`` float32 in ``[0, 1]`` (composited on white).
    c2w: ``(N, 4, 4)`` float32 camera-to-world matrices.
    focal: focal length in pixels.
  """

  images: np.ndarray
  c2w: np.ndarray
  focal: float


class Scene(NamedTuple):
  """A scene's train and test views and its depth bounds."""

  train: Views
  test: Views
  near: float
  far: float
  source: str


# --- The procedural scene -------------------------------------------------------


def _smooth_inside(sdf: Array, width: float) -> Array:
  """~1 inside (``sdf < 0``), ~0 outside, a smooth step of ``width`` across the surface."""
  return jax.nn.sigmoid(-sdf / width)


def procedural_field(points: Array, directions: Array | None = None) -> tuple[Array, Array]:
  """The embedded scene's analytic colour and density (view-independent).

  Args:
    points: ``(..., 3)`` world points (the scene fits in ``[-1.2, 1.2]^3``).
    directions: ignored (the scene has no view-dependent effects).

  Returns:
    ``(rgb (..., 3), sigma (...))``.

  >>> rgb, sigma = procedural_field(jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))
  >>> bool(sigma[0] > 10.0), bool(sigma[1] < 1e-3)
  (True, True)
  """
  del directions
  x, y, z = points[..., 0], points[..., 1], points[..., 2]
  # Opaque sphere at the centre, painted with bands that vary with height.
  sphere = jnp.sqrt(x**2 + y**2 + (z - 0.1) ** 2) - 0.45
  band = 0.5 + 0.5 * jnp.sin(12.0 * z + 3.0 * jnp.arctan2(y, x))
  sphere_rgb = jnp.stack([0.9 * band + 0.1, 0.25 + 0.0 * band, 0.2 + 0.5 * (1 - band)], -1)
  # Translucent blue box, off to one side.
  q = jnp.abs(points - jnp.array([0.65, -0.55, 0.0])) - jnp.array([0.22, 0.22, 0.35])
  box = jnp.linalg.norm(jnp.maximum(q, 0.0), axis=-1) + jnp.minimum(jnp.max(q, axis=-1), 0.0)
  box_rgb = jnp.broadcast_to(jnp.array([0.15, 0.35, 0.95]), points.shape)
  # Translucent green torus, tilted around the x axis.
  c, s = np.cos(0.6), np.sin(0.6)
  px, py, pz = x + 0.55, c * (y - 0.5) - s * (z - 0.1), s * (y - 0.5) + c * (z - 0.1)
  torus = jnp.sqrt((jnp.sqrt(px**2 + py**2) - 0.32) ** 2 + pz**2) - 0.1
  torus_rgb = jnp.broadcast_to(jnp.array([0.2, 0.85, 0.3]), points.shape)
  # Opaque ground disc with a checker pattern (fine detail to fit).
  disc = jnp.maximum(jnp.sqrt(x**2 + y**2) - 1.15, jnp.abs(z + 0.45) - 0.05)
  checker = (jnp.floor(4 * x) + jnp.floor(4 * y)) % 2
  disc_rgb = jnp.stack([0.85 - 0.5 * checker, 0.8 - 0.5 * checker, 0.6 - 0.4 * checker], -1)

  dens = jnp.stack(
      [
          200.0 * _smooth_inside(sphere, 0.01),
          6.0 * _smooth_inside(box, 0.01),
          15.0 * _smooth_inside(torus, 0.01),
          200.0 * _smooth_inside(disc, 0.01),
      ],
      -1,
  )
  rgbs = jnp.stack([sphere_rgb, box_rgb, torus_rgb, disc_rgb], -2)
  sigma = jnp.sum(dens, -1)
  # Where primitives overlap the colour is their density-weighted mean.
  rgb = jnp.sum(dens[..., None] * rgbs, -2) / jnp.maximum(sigma, 1e-8)[..., None]
  return rgb, sigma


def render_views(
    field_fn: rendering.FieldFn,
    c2w: np.ndarray,
    height: int,
    width: int,
    focal: float,
    *,
    near: float = NEAR,
    far: float = FAR,
    num_samples: int = 512,
    chunk: int = 4096,
) -> np.ndarray:
  """Renders a field from each pose deterministically (bin-centre samples).

  Args:
    field_fn: a :data:`nfscale.rendering.FieldFn`.
    c2w: ``(N, 4, 4)`` poses.
    height: image height.
    width: image width.
    focal: focal length in pixels.
    near: near depth.
    far: far depth.
    num_samples: samples per ray (high for ground truth).
    chunk: rays per jitted call.

  Returns:
    ``(N, H, W, 3)`` float32 images on a white background.
  """
  fn = _view_renderer(field_fn, float(near), float(far), int(num_samples))
  out = []
  for pose in np.asarray(c2w):
    o, d = rendering.camera_rays(pose, height, width, focal)
    out.append(rendering.render_in_chunks(fn, o, d, chunk=chunk)["rgb"])
  return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _view_renderer(field_fn: rendering.FieldFn, near: float, far: float, num_samples: int):
  """The jitted ``(origins, directions) -> outputs`` of :func:`render_views`, one per field.

  Cached so that the train and test splits of a scene (rendered by two calls) share one
  compilation (each call compiled the whole renderer anew).
  """
  return jax.jit(
      lambda o, d: rendering.render_rays(
          field_fn, o, d, near=near, far=far, num_samples=num_samples
      )
  )


def procedural_scene(
    num_train: int = 50,
    num_test: int = 24,
    height: int = 64,
    width: int = 64,
    camera_angle_x: float = 0.6911112070083618,
    test_elevation_deg: float = 30.0,
    gt_samples: int = 512,
    seed: int = 0,
) -> Scene:
  """The embedded scene's train and held-out test views.

  Train cameras are drawn uniformly on the upper hemisphere (from ``seed``);
  test cameras circle the scene at ``test_elevation_deg`` with evenly spaced
  azimuths, so the test views played in order form a turntable.

  Args:
    num_train: number of train views.
    num_test: number of held-out test views (the paper evaluates 24).
    height: image height.
    width: image width.
    camera_angle_x: horizontal field of view in radians (the NeRF-synthetic
      scenes' value by default).
    test_elevation_deg: elevation of the test cameras.
    gt_samples: samples per ray of the ground-truth renders.
    seed: seed of the train cameras.

  Returns:
    A :class:`Scene`.
  """
  for name, value in (
      ("num_train", num_train),
      ("num_test", num_test),
      ("height", height),
      ("width", width),
      ("gt_samples", gt_samples),
  ):
    if int(value) <= 0:
      raise ValueError(f"procedural scene: {name} must be positive, got {value}.")
  focal = rendering.focal_from_fov(width, camera_angle_x)
  train_c2w = rendering.sphere_poses(num_train, RADIUS, seed=seed)
  test_c2w = rendering.sphere_poses(num_test, RADIUS, elevation_deg=test_elevation_deg)
  views = []
  for c2w in (train_c2w, test_c2w):
    imgs = render_views(procedural_field, c2w, height, width, focal, num_samples=gt_samples)
    views.append(Views(imgs, c2w.astype(np.float32), focal))
  return Scene(views[0], views[1], NEAR, FAR, "procedural")


# --- Blender / NeRF-synthetic format -------------------------------------------


def check_pose(matrix: Any, where: str) -> np.ndarray:
  """Validates a camera-to-world matrix; returns it as ``(4, 4)`` float64.

  Args:
    matrix: nested lists or an array.
    where: names the file and field in error messages.

  Returns:
    The matrix.

  Raises:
    ValueError: wrong shape, non-finite entries, a last row other than
      ``[0, 0, 0, 1]``, or a rotation block that is not orthonormal with
      determinant +1 (a degenerate or mirrored camera).
  """
  try:
    m = np.asarray(matrix, np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"{where}: transform_matrix is not a numeric 4x4 matrix.") from None
  if m.shape != (4, 4):
    raise ValueError(f"{where}: transform_matrix must be 4x4, got shape {m.shape}.")
  if not np.all(np.isfinite(m)):
    raise ValueError(f"{where}: transform_matrix has non-finite entries.")
  if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
    raise ValueError(
        f"{where}: transform_matrix's last row must be [0, 0, 0, 1], got {m[3].tolist()}."
    )
  rot = m[:3, :3]
  err = np.abs(rot.T @ rot - np.eye(3)).max()
  det = np.linalg.det(rot)
  if err > 1e-3 or det < 0:
    raise ValueError(
        f"{where}: transform_matrix's rotation is degenerate (not orthonormal "
        f"with det +1: max |R^T R - I| = {err:.3g}, det = {det:.3g})."
    )
  return m


def _read_rgba(path: str, where: str) -> np.ndarray:
  import imageio.v3 as iio  # imported here: only the Blender loader reads images

  if not os.path.isfile(path):
    raise ValueError(f"{where}: image file {path} does not exist.")
  try:
    img = np.asarray(iio.imread(path))
  except Exception as e:  # imageio raises many types for a bad file
    raise ValueError(f"{where}: cannot read image {path}: {e}") from None
  if img.dtype == np.uint8:
    img = img.astype(np.float32) / 255.0
  elif img.dtype == np.uint16:
    img = img.astype(np.float32) / 65535.0
  else:
    img = img.astype(np.float32)
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, -1)
  if img.ndim != 3 or img.shape[-1] not in (3, 4):
    raise ValueError(f"{where}: image {path} must be RGB or RGBA, got shape {img.shape}.")
  return img


def _composite_white(img: np.ndarray) -> np.ndarray:
  if img.shape[-1] == 4:
    return img[..., :3] * img[..., 3:] + (1.0 - img[..., 3:])
  return img


def _downscale(img: np.ndarray, factor: int) -> np.ndarray:
  h, w, c = img.shape
  return img.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def load_blender_split(root: str, split: str, downscale: int = 1, max_frames: int = 0) -> Views:
  """Reads one split of a Blender (NeRF-synthetic) scene.

  Args:
    root: the scene directory.
    split: ``"train"``, ``"val"`` or ``"test"`` (reads ``transforms_{split}.json``).
    downscale: integer factor; images are area-averaged after compositing on
      white and the focal length divided by it.
    max_frames: keep only the first frames (0: all).

  Returns:
    The split's :class:`Views`.

  Raises:
    ValueError: missing or malformed JSON, a missing field, a degenerate
      pose, a missing or unreadable image, images of different sizes, or a
      ``downscale`` that does not divide them; the message names the file and
      the field.
  """
  path = os.path.join(root, f"transforms_{split}.json")
  if not os.path.isfile(path):
    raise ValueError(
        f"Blender scene: {path} does not exist (expected transforms_{split}.json in {root})."
    )
  if int(downscale) < 1:
    raise ValueError(f"Blender scene: downscale must be a positive integer, got {downscale}.")
  try:
    with open(path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: malformed JSON ({e}).") from None
  if not isinstance(meta, dict):
    raise ValueError(f"{path}: expected a JSON object with camera_angle_x and frames.")
  for field in ("camera_angle_x", "frames"):
    if field not in meta:
      raise ValueError(f"{path}: missing field {field!r}.")
  try:
    angle = float(meta["camera_angle_x"])
  except (TypeError, ValueError):
    raise ValueError(
        f"{path}: camera_angle_x must be a number, got {meta['camera_angle_x']!r}."
    ) from None
  if not 0 < angle < np.pi:
    raise ValueError(f"{path}: camera_angle_x must be in (0, pi) radians, got {angle}.")
  frames = meta["frames"]
  if not isinstance(frames, list) or not frames:
    raise ValueError(f"{path}: frames must be a non-empty list.")
  if max_frames:
    frames = frames[:max_frames]
  images, poses, shape = [], [], None
  for i, frame in enumerate(frames):
    where = f"{path}: frames[{i}]"
    if not isinstance(frame, dict):
      raise ValueError(f"{where}: expected an object with file_path and transform_matrix.")
    for field in ("file_path", "transform_matrix"):
      if field not in frame:
        raise ValueError(f"{where}: missing field {field!r}.")
    poses.append(check_pose(frame["transform_matrix"], where))
    rel = str(frame["file_path"])
    if not os.path.splitext(rel)[1]:
      rel += ".png"
    img = _read_rgba(os.path.normpath(os.path.join(root, rel)), f"{where}.file_path")
    if shape is None:
      shape = img.shape[:2]
    elif img.shape[:2] != shape:
      raise ValueError(
          f"{where}.file_path: image {rel} is {img.shape[1]}x{img.shape[0]}, "
          f"the split's first image is {shape[1]}x{shape[0]}."
      )
    if shape[0] % downscale or shape[1] % downscale:
      raise ValueError(
          f"{where}.file_path: image size {shape[1]}x{shape[0]} is not divisible "
          f"by downscale={downscale}."
      )
    img = _composite_white(img)
    images.append(_downscale(img, downscale) if downscale > 1 else img)
  width = shape[1] // downscale
  focal = rendering.focal_from_fov(width, angle)
  return Views(
      np.clip(np.stack(images), 0, 1).astype(np.float32), np.stack(poses).astype(np.float32), focal
  )


def load_blender(
    root: str,
    downscale: int = 1,
    max_train: int = 0,
    max_test: int = 0,
    near: float = NEAR,
    far: float = FAR,
) -> Scene:
  """Reads a Blender scene's train and test splits (``near=2, far=6`` by default).

  Raises:
    ValueError: see :func:`load_blender_split`; also train and test views of
      different sizes.
  """
  if not os.path.isdir(root):
    raise ValueError(f"Blender scene: directory {root} does not exist.")
  train = load_blender_split(root, "train", downscale, max_train)
  test = load_blender_split(root, "test", downscale, max_test)
  if train.images.shape[1:] != test.images.shape[1:]:
    raise ValueError(
        f"Blender scene {root}: train views are {train.images.shape[1:3]} but test "
        f"views are {test.images.shape[1:3]}."
    )
  return Scene(train, test, float(near), float(far), root)


def write_blender_scene(root: str, scene: Scene, camera_angle_x: float) -> None:
  """Writes a :class:`Scene` in Blender format (RGBA PNGs, alpha 1); used by tests.

  Args:
    root: output directory (created).
    scene: the views.
    camera_angle_x: the field of view to record (must match the scene's focal).
  """
  import imageio.v3 as iio

  for split, views in (("train", scene.train), ("test", scene.test)):
    os.makedirs(os.path.join(root, split), exist_ok=True)
    frames = []
    for i, (img, c2w) in enumerate(zip(views.images, views.c2w)):
      rgba = np.concatenate([img, np.ones_like(img[..., :1])], -1)
      iio.imwrite(
          os.path.join(root, split, f"r_{i}.png"),
          np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8),
      )
      frames.append(
          {"file_path": f"./{split}/r_{i}", "transform_matrix": np.asarray(c2w, float).tolist()}
      )
    with open(os.path.join(root, f"transforms_{split}.json"), "w") as f:
      json.dump({"camera_angle_x": camera_angle_x, "frames": frames}, f, indent=1)
