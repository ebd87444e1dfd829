"""Image and volume metrics: PSNR, SSIM (via dm-pix) and IoU. All jit-able."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def mse_to_psnr(mse: Array, data_range: float = 1.0) -> Array:
  """PSNR in dB of a mean squared error: ``10 log10(data_range^2 / mse)``.

  Computed in float32 at least: in float16 ``data_range^2 / mse`` overflows above
  about 48 dB.

  Args:
    mse: the mean squared error (any shape: elementwise).
    data_range: ``max - min`` of the signal's possible values.

  Returns:
    The PSNR in dB (``inf`` for a zero error).
  """
  mse = jnp.asarray(mse)
  mse = mse.astype(jnp.promote_types(mse.dtype, jnp.float32))
  return 10.0 * jnp.log10(data_range**2 / mse)


def _as_float(pred: Array, target: Array) -> tuple[Array, Array]:
  """Both images in one float dtype of at least float32 precision.

  Integer images (``uint8``) would wrap around in ``pred - target``, and half
  precision would round the squared error coarsely.
  """
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  dtype = jnp.promote_types(jnp.result_type(pred, target), jnp.float32)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"expected real images, got dtypes {pred.dtype} and {target.dtype}.")
  return pred.astype(dtype), target.astype(dtype)


def psnr(pred: Array, target: Array, data_range: float = 1.0) -> Array:
  """Peak signal-to-noise ratio over all entries.

  Args:
    pred: prediction (any real dtype; computed in float32 at least).
    target: reference, same shape.
    data_range: ``max - min`` of the signal's possible values (1 for images
      in [0, 1], 255 for ``uint8`` ones).

  Returns:
    PSNR in dB (``inf`` for a perfect prediction).

  Example:
    >>> import numpy as np
    >>> a, b = np.array([0, 100], np.uint8), np.array([20, 80], np.uint8)
    >>> round(float(psnr(a, b, 255.0)), 2)  # no uint8 wrap-around in a - b
    22.11
  """
  pred, target = _as_float(pred, target)
  if pred.shape != target.shape:
    raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}.")
  return mse_to_psnr(jnp.mean(jnp.square(pred - target)), data_range)


def ssim(pred: Array, target: Array, data_range: float = 1.0) -> Array:
  """Structural similarity of two images, dm-pix's Gaussian-window SSIM.

  Uses an 11x11 Gaussian window with sigma 1.5, k1 = 0.01, k2 = 0.03 (Wang et
  al. 2004), which matches ``skimage.metrics.structural_similarity`` with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``. An image
  with a side under 11 pixels (which scikit-image refuses) uses the largest odd
  window that fits, the same Gaussian cut shorter: an 11-tap filter over fewer
  samples would be convolved the wrong way round (the image sliding over the
  filter) and give a number that is not an SSIM.

  Args:
    pred: ``(H, W)`` or ``(H, W, C)`` image (any real dtype; computed in
      float32 at least).
    target: same shape.
    data_range: ``max - min`` of the possible pixel values.

  Returns:
    Mean SSIM over pixels (and channels).
  """
  pred, target = _as_float(pred, target)
  if pred.shape != target.shape:
    raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}.")
  if pred.ndim == 2:
    pred, target = pred[..., None], target[..., None]
  if pred.ndim != 3:
    raise ValueError(f"ssim expects (H, W) or (H, W, C) images, got shape {pred.shape}.")
  # Imported on use: only SSIM needs dm-pix, and the benchmarks then run on GPU
  # images that have JAX, Flax and optax but not dm-pix.
  import dm_pix  # pylint: disable=import-outside-toplevel

  window = min(11, pred.shape[0], pred.shape[1])
  window -= 1 - window % 2  # odd, as the Gaussian window is centred on a pixel
  return dm_pix.ssim(pred, target, max_val=data_range, filter_size=window)


def iou(a: Array, b: Array, level: float | None = None) -> Array:
  """Intersection over union of two occupancy volumes.

  Args:
    a: a boolean (or 0/1 integer) mask; with ``level``, occupancy values.
    b: the same for the other volume, same shape.
    level: the threshold for occupancy values: ``a >= level`` and ``b >= level``
      are compared (as :func:`nfscale.surfaces.grid_iou` does). Float inputs
      need it: cast to bool they would count every nonzero value, e.g. a
      predicted probability of 0.1, as inside.

  Returns:
    The IoU; 1 when both volumes are empty.

  Raises:
    ValueError: for different shapes, or a float input without ``level``.

  Example:
    >>> gt = jnp.array([True, True, False, False])
    >>> float(iou(jnp.array([0.9, 0.2, 0.1, 0.0]), gt, level=0.5))
    0.5
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.shape != b.shape:
    raise ValueError(f"volume shapes differ: {a.shape} vs {b.shape}.")
  if level is None:
    for arg, v in (("a", a), ("b", b)):
      if not (v.dtype == jnp.bool_ or jnp.issubdtype(v.dtype, jnp.integer)):
        raise ValueError(
            f"iou got {arg} of dtype {v.dtype}: pass level= (e.g. level=0.5 for occupancy "
            "probabilities) or boolean masks; a cast to bool would count every nonzero value "
            "as inside."
        )
    a, b = a.astype(bool), b.astype(bool)
  else:
    a, b = a >= level, b >= level
  inter = jnp.sum(a & b)
  union = jnp.sum(a | b)
  return jnp.where(union == 0, 1.0, inter / jnp.maximum(union, 1))
