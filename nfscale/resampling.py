"""Image resampling for super resolution: the area-downsampling forward operator and baselines.

The super-resolution task observes ``y = A x``, where ``x`` is the high-resolution image and
``A`` averages each ``factor x factor`` block of pixels (area / average-pool downsampling;
no aliasing, because every high-resolution pixel counts once with the same weight).

A neural field never sees a high-resolution pixel: it is rendered on the sub-pixel
coordinates of every low-resolution pixel (:func:`subpixel_coords`) and the mean over those
sub-pixels is compared with the observation, which is ``A`` applied pixel by pixel.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

Array = Any  # a numpy or JAX array


class FactorError(ValueError):
  """An image too small for its super-resolution factor (a caller can name its key)."""


def check_factor(height: int, width: int, factor: int, source: str = "image") -> None:
  """Raises a clear error when an image cannot be downsampled by ``factor``.

  Args:
    height: image height in pixels.
    width: image width in pixels.
    factor: the integer scale factor.
    source: what the image is (a name or a file), for the message.

  Raises:
    ValueError: ``factor`` is not a positive integer.
    FactorError: the image is smaller than ``factor`` (a ``ValueError``).

  >>> check_factor(8, 8, 4)
  >>> check_factor(3, 8, 4, "tiny.png")  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  nfscale.resampling.FactorError: image 'tiny.png' is 3x8 pixels, smaller than the super-resolution factor 4 ...
  """
  if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
    raise ValueError(f"the super-resolution factor must be a positive integer, got {factor!r}.")
  if height < factor or width < factor:
    raise FactorError(
        f"image {source!r} is {height}x{width} pixels, smaller than the super-resolution "
        f"factor {factor} (each low-resolution pixel needs {factor}x{factor} "
        "high-resolution pixels)."
    )


def crop_to_multiple(img: np.ndarray, factor: int) -> np.ndarray:
  """Centre-crops an ``(H, W, ...)`` image so both sides are multiples of ``factor``.

  >>> crop_to_multiple(np.zeros((10, 9, 3)), 4).shape
  (8, 8, 3)
  """
  check_factor(img.shape[0], img.shape[1], factor)
  h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
  top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
  return img[top : top + h, left : left + w]


def area_downsample(img: Array, factor: int) -> Array:
  """The forward operator ``A``: the mean of every ``factor x factor`` block.

  Works on numpy and JAX arrays and under ``jit``/``vmap``.

  Args:
    img: ``(H, W)`` or ``(H, W, C)`` image; ``H`` and ``W`` multiples of ``factor``.
    factor: the integer scale factor.

  Returns:
    The ``(H / factor, W / factor[, C])`` low-resolution image.

  Raises:
    ValueError: a side is not a multiple of ``factor``.

  >>> area_downsample(np.arange(16.0).reshape(4, 4), 2)
  array([[ 2.5,  4.5],
         [10.5, 12.5]])
  """
  h, w = img.shape[:2]
  if h % factor or w % factor:
    raise ValueError(
        f"image sides {h}x{w} must be multiples of the factor {factor}; "
        "crop first (crop_to_multiple)."
    )
  blocks = img.reshape((h // factor, factor, w // factor, factor) + tuple(img.shape[2:]))
  return blocks.mean(axis=(1, 3))


def nearest_upsample(img: Array, factor: int) -> Array:
  """Repeats every pixel into a ``factor x factor`` block (a right inverse of ``A``).

  >>> nearest_upsample(np.array([[1, 2]]), 2)
  array([[1, 1, 2, 2],
         [1, 1, 2, 2]])
  """
  xp = jnp if isinstance(img, jnp.ndarray) else np
  return xp.repeat(xp.repeat(img, factor, axis=0), factor, axis=1)


def bicubic_upsample(img: np.ndarray, factor: int) -> np.ndarray:
  """The classical baseline: scikit-image's order-3 (bicubic spline) resize, clipped to [0, 1].

  Args:
    img: ``(h, w[, C])`` low-resolution image in [0, 1].
    factor: the integer scale factor.

  Returns:
    The ``(h * factor, w * factor[, C])`` float32 image.

  >>> bicubic_upsample(np.full((4, 4), 0.5), 2).shape
  (8, 8)
  """
  from skimage import transform

  out_shape = (img.shape[0] * factor, img.shape[1] * factor) + tuple(img.shape[2:])
  up = transform.resize(
      np.asarray(img, np.float64), out_shape, order=3, mode="edge", anti_aliasing=False
  )
  return np.clip(up, 0.0, 1.0).astype(np.float32)


def subpixel_coords(height: int, width: int, factor: int) -> np.ndarray:
  """The high-resolution pixel centres grouped by the low-resolution pixel they fall in.

  Coordinates are those of ``nfscale.data.images.pixel_coords(height, width)`` (``(x, y)``
  on ``[-1, 1]^2``); row ``i`` of the result holds the ``factor**2`` sub-pixels of
  low-resolution pixel ``i`` (row-major), so averaging a field over axis 1 applies ``A``.

  Args:
    height: high-resolution height (a multiple of ``factor``).
    width: high-resolution width (a multiple of ``factor``).
    factor: the integer scale factor.

  Returns:
    ``(height * width / factor**2, factor**2, 2)`` float32 coordinates.

  >>> subpixel_coords(4, 4, 2).shape
  (4, 4, 2)
  """
  from nfscale.data import images

  coords = images.pixel_coords(height, width).reshape(height, width, 2)
  return group_subpixels(coords, factor)


def group_subpixels(img: np.ndarray, factor: int) -> np.ndarray:
  """Reorders an ``(H, W, C)`` array into ``(H*W/factor**2, factor**2, C)`` blocks.

  >>> group_subpixels(np.arange(16).reshape(4, 4, 1), 2)[0, :, 0]
  array([0, 1, 4, 5])
  """
  h, w, c = img.shape
  if h % factor or w % factor:
    raise ValueError(f"image sides {h}x{w} must be multiples of the factor {factor}.")
  blocks = img.reshape(h // factor, factor, w // factor, factor, c).transpose(0, 2, 1, 3, 4)
  return blocks.reshape(-1, factor * factor, c)
