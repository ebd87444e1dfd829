"""Images for regression tasks: scikit-image's bundled images (offline) or a file by path."""

from __future__ import annotations

import os

import numpy as np

#: scikit-image images shipped inside the wheel (no download needed).
BUNDLED_IMAGES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "cell", "chelsea", "coffee", "coins", "colorwheel",
    "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "text")


def load_image(name: str = "astronaut", path: str = "", size: int | None = 256) -> np.ndarray:
  """Loads an image as float32 in [0, 1] with shape ``(H, W, C)``.

  Args:
    name: a bundled scikit-image image (see :data:`BUNDLED_IMAGES`); used
      when ``path`` is empty.
    path: an image file (any format scikit-image reads); wins over ``name``.
    size: resize (with anti-aliasing) to ``size x size``; ``None`` keeps it.

  Returns:
    The image; gray images get one channel, alpha channels are dropped.

  Raises:
    ValueError: unknown bundled name, missing or unreadable file, bad size.
  """
  from skimage import data as skdata
  from skimage import io as skio
  from skimage import transform, util

  if size is not None and size <= 0:
    raise ValueError(f"size must be positive, got size={size}.")
  if path:
    if not os.path.isfile(path):
      raise ValueError(f"image path {path!r} does not exist or is not a file.")
    try:
      img = skio.imread(path)
    except Exception as e:  # skimage raises many types for bad files.
      raise ValueError(f"could not read image {path!r}: {e}") from e
  else:
    if name not in BUNDLED_IMAGES:
      raise ValueError(f"Unknown bundled image {name!r}; valid names: {', '.join(BUNDLED_IMAGES)}"
                       " (or give a file with data.path).")
    img = getattr(skdata, name)()
  img = util.img_as_float32(img)
  if img.ndim == 2:
    img = img[..., None]
  if img.ndim != 3:
    raise ValueError(f"expected an (H, W[, C]) image, got shape {img.shape}.")
  img = img[..., :3]
  if size is not None and img.shape[:2] != (size, size):
    img = transform.resize(img, (size, size), anti_aliasing=True).astype(np.float32)
  return np.clip(img, 0.0, 1.0)


def pixel_coords(height: int, width: int) -> np.ndarray:
  """Pixel centres on ``[-1, 1]^2`` as ``(H*W, 2)`` rows of ``(x, y)``, row-major."""
  ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
  return np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)
