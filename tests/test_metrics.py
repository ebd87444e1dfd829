"""PSNR/SSIM against scikit-image; IoU on hand-made volumes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import metrics as skm

from nfscale import metrics


def _skimage_ssim(a, b, data_range):
  """scikit-image's SSIM with the Gaussian window of Wang et al. (the one dm-pix uses)."""
  return skm.structural_similarity(
      a,
      b,
      data_range=data_range,
      gaussian_weights=True,
      sigma=1.5,
      use_sample_covariance=False,
      channel_axis=-1 if a.ndim == 3 else None,
  )


@pytest.mark.parametrize("shape", [(64, 48), (64, 48, 3)])
@pytest.mark.parametrize("noise", [0.02, 0.2])
def test_psnr_ssim_match_skimage(shape, noise):
  rng = np.random.default_rng(0)
  target = rng.uniform(0, 1, shape)
  pred = np.clip(target + noise * rng.normal(size=shape), 0, 1)
  p = float(jax.jit(metrics.psnr)(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)))
  assert p == pytest.approx(skm.peak_signal_noise_ratio(target, pred, data_range=1.0), abs=1e-3)
  s = float(jax.jit(metrics.ssim)(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)))
  ref = _skimage_ssim(target, pred, 1.0)
  assert s == pytest.approx(ref, abs=1e-3)


def _ssim_reference(a, b, window, sigma=1.5, k1=0.01, k2=0.03):
  """Wang et al.'s SSIM in float64: a normalized separable Gaussian of ``window`` taps,
  statistics over the positions where the window fits, mean over them and channels."""
  t = np.arange(window) - window // 2
  g = np.exp(-0.5 * (t / sigma) ** 2)
  g /= g.sum()

  def blur(z):  # 'valid' along both image axes, channels apart
    z = np.apply_along_axis(lambda v: np.correlate(v, g, "valid"), 0, z)
    return np.apply_along_axis(lambda v: np.correlate(v, g, "valid"), 1, z)

  a, b = (np.atleast_3d(np.asarray(x, np.float64)) for x in (a, b))
  ma, mb = blur(a), blur(b)
  va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
  c1, c2 = k1**2, k2**2
  s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
  return float(s.mean())


def test_ssim_reference_is_skimages_at_full_size():
  # The reference below is checked against scikit-image where both apply (11 taps).
  rng = np.random.default_rng(2)
  a = rng.uniform(0, 1, (20, 17, 3))
  b = np.clip(a + 0.1 * rng.normal(size=a.shape), 0, 1)
  ref = _skimage_ssim(a, b, 1.0)
  assert _ssim_reference(a, b, 11) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("shape,window", [((8, 9, 3), 7), ((6, 30), 5), ((3, 3), 3), ((1, 5), 1)])
def test_ssim_of_an_image_smaller_than_the_window(shape, window):
  # Under 11 pixels dm-pix's 11-tap 'valid' filter ran the image over the filter and
  # returned a number that was not an SSIM (scikit-image refuses such images). The
  # largest odd window that fits is used; float32 against a float64 reference: 1e-5.
  rng = np.random.default_rng(1)
  target = rng.uniform(0, 1, shape)
  pred = np.clip(target + 0.1 * rng.normal(size=shape), 0, 1)
  s = float(metrics.ssim(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)))
  assert s == pytest.approx(_ssim_reference(pred, target, window), abs=1e-5)


def test_psnr_data_range():
  a, b = jnp.zeros(10), jnp.full(10, 0.5)
  assert float(metrics.psnr(a, b, data_range=2.0)) == pytest.approx(10 * np.log10(4 / 0.25))


def test_mse_to_psnr_default_range_is_one():
  # The training scores (tasks, PINN, NeRF) call mse_to_psnr(loss) with the default
  # range: signals in [0, 1], so an MSE of 1e-2 is 20 dB and 1e-3 is 30 dB exactly.
  got = np.asarray(metrics.mse_to_psnr(jnp.asarray([1e-2, 1e-3])))
  np.testing.assert_allclose(got, [20.0, 30.0], rtol=1e-6)  # float32 log10
  assert float(metrics.mse_to_psnr(0.25, data_range=2.0)) == pytest.approx(10 * np.log10(16))


def test_iou():
  a = np.zeros((4, 4, 4), bool)
  b = np.zeros((4, 4, 4), bool)
  assert float(metrics.iou(a, b)) == 1.0
  a[:2] = True
  b[1:3] = True
  assert float(jax.jit(metrics.iou)(a, b)) == pytest.approx(16 / 48)


def test_iou_of_occupancy_values_needs_a_level():
  # A float volume (predicted probabilities) cast to bool counted every nonzero value as
  # inside: 0.2 everywhere outside the true half gave IoU 0.5 instead of 1.
  gt = np.zeros((10, 10), np.float32)
  gt[:5] = 1.0
  prob = np.where(gt > 0, 0.9, 0.2).astype(np.float32)
  with pytest.raises(ValueError, match="level"):
    metrics.iou(prob, gt)
  with pytest.raises(ValueError, match="level"):
    metrics.iou(gt > 0, prob)
  assert float(metrics.iou(prob, gt, level=0.5)) == 1.0
  assert float(jax.jit(metrics.iou, static_argnames="level")(prob, gt > 0, level=0.5)) == 1.0
  assert float(metrics.iou(prob, gt, level=0.1)) == 0.5
  # Integer 0/1 masks keep working without a level.
  assert float(metrics.iou(gt.astype(np.int32), (prob > 0.5).astype(np.uint8))) == 1.0


def test_array_likes():
  # Lists and scalars raised AttributeError ('list' object has no attribute 'shape').
  assert float(metrics.psnr([0.0, 0.5], [0.0, 0.0])) == pytest.approx(10 * np.log10(1 / 0.125))
  img = np.random.default_rng(0).uniform(0, 1, (16, 16))
  assert float(metrics.ssim(img.tolist(), img.tolist())) == pytest.approx(1.0, abs=1e-5)
  assert float(metrics.iou([True, False], [True, True])) == 0.5
  with pytest.raises(ValueError, match="shape"):
    metrics.psnr([0.0, 1.0], [0.0])


def test_shape_mismatch():
  with pytest.raises(ValueError, match="shape"):
    metrics.psnr(jnp.zeros(3), jnp.zeros(4))
  with pytest.raises(ValueError, match="shape"):
    metrics.iou(jnp.zeros((2, 2)), jnp.zeros((2, 3)))


def test_integer_images_do_not_wrap_around():
  # uint8 differences wrap modulo 256 and their squares overflow; the metrics cast
  # to float32 first, so they agree with scikit-image on uint8 images.
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
  ref = skm.peak_signal_noise_ratio(a, b, data_range=255)
  assert float(metrics.psnr(b, a, 255.0)) == pytest.approx(ref, abs=1e-3)
  s = _skimage_ssim(a, b, 255)
  assert float(metrics.ssim(b, a, 255.0)) == pytest.approx(s, abs=1e-3)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_psnr_of_half_precision_images_in_float32(dtype):
  # 0.002 of error is 54 dB: float16's data_range**2 / mse overflows (inf) past ~48 dB.
  t = jnp.linspace(0, 1, 100, dtype=dtype)
  p = t + jnp.asarray(0.002, dtype)
  ref = 10 * np.log10(1 / np.mean((np.asarray(p, np.float64) - np.asarray(t, np.float64)) ** 2))
  got = metrics.psnr(p, t)
  assert got.dtype == jnp.float32 and float(got) == pytest.approx(ref, abs=1e-3)
