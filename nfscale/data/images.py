"""Images for regression tasks: scikit-image's bundled images (offline) or a file by path.

Channels: a grey image has one channel, a colour image three. An alpha
channel (grey+alpha ``LA`` or ``RGBA``) is dropped by :func:`load_image` by
default, whatever the file's mode, so the colour is kept as stored and
transparency is ignored; ``alpha="white"`` composites on a white background
instead (:func:`composite_on_white`, what NeRF-style data with transparent
backgrounds needs).

Downscaling a large image (:func:`resize`) goes in two stages when it shrinks
by 8x or more: an integer-factor block mean, then an anti-aliased resize of
the much smaller result, with the final blur chosen so that the total matches
the one-step anti-aliased resize. A 9000 x 9000 image to 8 x 8 takes about a
second instead of minutes.
"""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np

_LOG = logging.getLogger(__name__)

#: scikit-image images shipped inside the wheel (no download needed).
BUNDLED_IMAGES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "chelsea",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)

#: What :func:`load_image` does with an alpha channel.
ALPHA_MODES: tuple[str, ...] = ("drop", "white")

# Stage the downscale from this factor on; below it the one-step resize is
# cheap (its Gaussian is only a few pixels wide) and is kept unchanged.
_STAGE_FROM_FACTOR = 8.0
# The block mean shrinks by about factor / _BLOCK_DIV, so the final resize
# still shrinks by about _BLOCK_DIV: its interpolation then adds little blur
# of its own, and the result stays close to the one-step resize.
_BLOCK_DIV = 8


def _to_float(img: np.ndarray) -> np.ndarray:
  from skimage import util

  return util.img_as_float32(img)


def composite_on_white(image: np.ndarray) -> np.ndarray:
  """Composites an image with an alpha channel on a white background.

  ``out = colour * alpha + (1 - alpha)``: transparent pixels become white,
  opaque ones keep their colour. The colour is taken as stored (straight,
  not premultiplied, alpha, as PNG stores it).

  Args:
    image: ``(H, W, 2)`` grey+alpha or ``(H, W, 4)`` RGBA, floats in
      ``[0, 1]`` or unsigned integers (scaled by their maximum).

  Returns:
    float32 ``(H, W, 1)`` or ``(H, W, 3)`` in ``[0, 1]``.

  Raises:
    ValueError: ``image`` is not ``(H, W, 2)`` or ``(H, W, 4)``.

  Example:
    >>> rgba = np.array([[[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]])
    >>> composite_on_white(rgba)[0].tolist()
    [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] not in (2, 4):
    raise ValueError(
        "composite_on_white needs an (H, W, 2) grey+alpha or (H, W, 4) RGBA "
        f"image, got shape {image.shape}."
    )
  image = _to_float(image)
  colour, alpha = image[..., :-1], image[..., -1:]
  return np.clip(colour * alpha + (1.0 - alpha), 0.0, 1.0).astype(np.float32)


def _block_mean(img: np.ndarray, fy: int, fx: int) -> tuple[np.ndarray, int, int]:
  """Means over ``fy x fx`` blocks of a centred crop; returns it and the crop offsets.

  Integers are summed exactly in (u)int32/64 and floats in float64, one
  strided add per row (then column) of a block: one pass over the image,
  several times faster than numpy's reduction over a short reshaped axis.
  """
  h, w = img.shape[:2]
  oy, ox = (h % fy) // 2, (w % fx) // 2
  crop = img[oy : oy + h - h % fy, ox : ox + w - w % fx]
  if np.issubdtype(img.dtype, np.unsignedinteger):
    top = int(np.iinfo(img.dtype).max)
    # The narrowest exact accumulators: less memory traffic on huge images.
    row_dtype = np.uint16 if top * fy < 2**16 else np.uint32 if top * fy < 2**32 else np.uint64
    acc_dtype = np.uint32 if top * fy * fx < 2**32 else np.uint64
  else:
    row_dtype = acc_dtype = np.float64
  rows = crop[0::fy].astype(row_dtype)
  for k in range(1, fy):
    rows += crop[k::fy]
  sums = rows[:, 0::fx].astype(acc_dtype)
  for k in range(1, fx):
    sums += rows[:, k::fx]
  return sums / float(fy * fx), oy, ox


def resize(image: np.ndarray, size: int, name: str = "image") -> np.ndarray:
  """Resizes to ``size x size`` like ``skimage.transform.resize(..., anti_aliasing=True)``.

  Upscaling and shrinking by less than 8x are exactly that call. Shrinking by
  more goes in two stages, which is orders of magnitude faster (the one-step
  Gaussian is as wide as the shrink factor, thousands of pixels for a huge
  image): a block mean by an integer factor ``f`` of about an eighth of the
  shrink factor, then a Gaussian blur whose variance is what the one-step
  blur's variance leaves after the block mean and the interpolation, and
  linear interpolation at the same sample points as the one-step resize. The
  two agree to about 1e-3 on average, a few 1e-2 at worst (tests); each stage
  is logged at INFO level.

  Args:
    image: ``(H, W, C)``; unsigned integers are scaled by their maximum,
      floats kept.
    size: output height and width.
    name: what to call the image in log messages.

  Returns:
    float32 ``(size, size, C)``.
  """
  from scipy import ndimage
  from skimage import transform

  h, w, c = image.shape
  sy, sx = h / size, w / size
  if min(sy, sx) < _STAGE_FROM_FACTOR:
    return transform.resize(_to_float(image), (size, size), anti_aliasing=True).astype(np.float32)
  t0 = time.perf_counter()
  fy, fx = max(2, int(sy // _BLOCK_DIV)), max(2, int(sx // _BLOCK_DIV))
  # Said for images large enough to take a while (a sweep builds its small
  # image once per evaluation; that would repeat the line hundreds of times).
  log = _LOG.info if h * w >= 2**22 else _LOG.debug
  log(
      "downscaling %s from %dx%d to %dx%d: block mean by %dx%d first",
      name,
      h,
      w,
      size,
      size,
      fy,
      fx,
  )
  if np.issubdtype(image.dtype, np.unsignedinteger):
    # Average the integers, then scale: never holds a float copy of the full image.
    small, oy, ox = _block_mean(image, fy, fx)
    small /= np.iinfo(image.dtype).max
  else:
    small, oy, ox = _block_mean(_to_float(image), fy, fx)
  # The one-step resize blurs with a Gaussian of sigma (s - 1)/2 source
  # pixels. The block mean contributes variance (f^2 - 1)/12 and the final
  # linear interpolation t(1 - t) f^2 at offset t, f^2/6 on average; blur
  # by what is left (in block units), so the total blur matches.
  sigma = [
      math.sqrt(max(0.0, ((s - 1) / 2) ** 2 - (f * f - 1) / 12 - f * f / 6)) / f
      for s, f in ((sy, fy), (sx, fx))
  ]
  small = ndimage.gaussian_filter(small, sigma=(*sigma, 0), mode="mirror")
  # Output pixel i samples source row (i + 0.5) s - 0.5, as skimage's resize;
  # block j's centre is source row o + j f + (f - 1)/2.
  out_y = ((np.arange(size) + 0.5) * sy - 0.5 - oy - (fy - 1) / 2) / fy
  out_x = ((np.arange(size) + 0.5) * sx - 0.5 - ox - (fx - 1) / 2) / fx
  yy, xx = np.meshgrid(out_y, out_x, indexing="ij")
  out = np.stack(
      [ndimage.map_coordinates(small[..., k], [yy, xx], order=1, mode="nearest") for k in range(c)],
      axis=-1,
  )
  log("downscaled %s to %dx%d in %.2f s", name, size, size, time.perf_counter() - t0)
  return out.astype(np.float32)


def _read(path: str) -> np.ndarray:
  from skimage import io as skio

  if not os.path.isfile(path):
    raise ValueError(f"image path {path!r} does not exist or is not a file.")
  try:
    return np.asarray(skio.imread(path))
  except Exception as e:  # imageio/PIL raise many types for bad files.
    # Their messages suggest installing video plugins for any unknown
    # bytes: misleading for a broken image, so only the reason's type is kept.
    raise ValueError(
        f"could not read image {path!r}: the file is not a readable image (no "
        f"image format decodes its content; {type(e).__name__}); check that it is a "
        "complete PNG, JPEG, TIFF... file."
    ) from e


def load_image(
    name: str = "astronaut", path: str = "", size: int | None = 256, alpha: str = "drop"
) -> np.ndarray:
  """Loads an image as float32 in [0, 1] with shape ``(H, W, C)``, ``C`` 1 or 3.

  Args:
    name: a bundled scikit-image image (see :data:`BUNDLED_IMAGES`); used
      when ``path`` is empty.
    path: an image file (any format scikit-image reads); wins over ``name``.
    size: resize (with anti-aliasing, :func:`resize`) to ``size x size``;
      a non-square image is first cropped to its centred square, so that it is
      not stretched; ``None`` keeps it as it is.
    alpha: what to do with an alpha channel (grey+alpha or RGBA): ``"drop"``
      keeps the colour as stored, ``"white"`` composites on white.

  Returns:
    The image; grey images get one channel, colour images three.

  Raises:
    ValueError: unknown bundled name or alpha mode, missing or unreadable
      file, unsupported channel count, bad size.
  """
  from skimage import data as skdata

  if size is not None and size <= 0:
    raise ValueError(f"data.size must be positive, got size={size}.")
  if alpha not in ALPHA_MODES:
    raise ValueError(f"Unknown alpha mode {alpha!r}; valid: {', '.join(ALPHA_MODES)}.")
  if path:
    img = _read(path)
  else:
    if name not in BUNDLED_IMAGES:
      raise ValueError(
          f"Unknown bundled image {name!r}; valid names: {', '.join(BUNDLED_IMAGES)}"
          " (or give a file with data.path)."
      )
    img = getattr(skdata, name)()
  label = path or name
  if img.ndim == 2:
    img = img[..., None]
  if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4):
    raise ValueError(
        f"{label!r}: expected an (H, W) or (H, W, C) image with C in 1-4 (grey, "
        f"grey+alpha, RGB, RGBA), got shape {img.shape}."
    )
  if img.shape[-1] in (2, 4):
    img = composite_on_white(img) if alpha == "white" else img[..., :-1]
  if size is not None and img.shape[:2] != (size, size):
    img = resize(center_square(img), size, name=label)
  return np.clip(_to_float(img), 0.0, 1.0).astype(np.float32)


def center_square(img: np.ndarray) -> np.ndarray:
  """The largest centred square of ``img`` (``(H, W, ...)``).

  Example:
    >>> center_square(np.zeros((300, 451, 3))).shape
    (300, 300, 3)
  """
  h, w = img.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  return img[top : top + side, left : left + side]


def pixel_coords(height: int, width: int) -> np.ndarray:
  """Pixel centres on ``[-1, 1]^2`` as ``(H*W, 2)`` rows of ``(x, y)``, row-major."""
  ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
  return np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)
