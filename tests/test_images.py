"""Image loading: alpha channels, unreadable files, fast staged downscaling of huge images."""

import logging
import time

import numpy as np
import pytest
from PIL import Image
from skimage import data, transform, util

from nfscale.data import images


def _write(tmp_path, name, array, mode):
  path = tmp_path / name
  Image.fromarray(array, mode).save(path)
  return str(path)


@pytest.fixture
def alpha_images(tmp_path):
  """A grey+alpha and an RGBA PNG whose top half is opaque, bottom half transparent."""
  alpha = np.zeros((6, 5), np.uint8)
  alpha[:3] = 255
  grey = np.full((6, 5), 200, np.uint8)
  rgba = np.zeros((6, 5, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 255, alpha
  return {
      "LA": _write(tmp_path, "la.png", np.stack([grey, alpha], -1), "LA"),
      "RGBA": _write(tmp_path, "rgba.png", rgba, "RGBA"),
  }


def test_alpha_is_dropped_whatever_the_mode(alpha_images):
  la = images.load_image(path=alpha_images["LA"], size=None)
  assert la.shape == (6, 5, 1)  # before: 2 channels, alpha trained as colour
  np.testing.assert_allclose(la, 200 / 255, atol=1e-6)
  rgba = images.load_image(path=alpha_images["RGBA"], size=None)
  assert rgba.shape == (6, 5, 3)
  np.testing.assert_allclose(rgba, np.broadcast_to([1.0, 0.0, 0.0], (6, 5, 3)), atol=1e-6)
  # Resizing keeps the channel count.
  assert images.load_image(path=alpha_images["LA"], size=4).shape == (4, 4, 1)


def test_alpha_composited_on_white(alpha_images):
  la = images.load_image(path=alpha_images["LA"], size=None, alpha="white")
  np.testing.assert_allclose(la[:3], 200 / 255, atol=1e-6)
  np.testing.assert_allclose(la[3:], 1.0, atol=1e-6)
  rgba = images.load_image(path=alpha_images["RGBA"], size=None, alpha="white")
  np.testing.assert_allclose(rgba[:3], np.broadcast_to([1.0, 0.0, 0.0], (3, 5, 3)), atol=1e-6)
  np.testing.assert_allclose(rgba[3:], 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="valid: drop, white"):
    images.load_image(path=alpha_images["LA"], alpha="black")


def test_composite_on_white():
  half = np.array([[[0.2, 0.4, 0.6, 0.5]]], np.float32)
  np.testing.assert_allclose(images.composite_on_white(half), [[[0.6, 0.7, 0.8]]], atol=1e-6)
  ints = np.array([[[0, 255], [0, 0]]], np.uint8)  # grey+alpha: opaque black, transparent
  np.testing.assert_allclose(images.composite_on_white(ints), [[[0.0], [1.0]]], atol=1e-6)
  with pytest.raises(ValueError, match=r"\(H, W, 4\) RGBA"):
    images.composite_on_white(np.zeros((2, 2, 3)))


def test_garbage_file_is_not_a_readable_image(tmp_path):
  junk = tmp_path / "junk.png"
  junk.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing an image decoder understands")
  with pytest.raises(ValueError) as e:
    images.load_image(path=str(junk))
  msg = str(e.value)
  assert str(junk) in msg and "not a readable image" in msg
  assert "pip install" not in msg and "plugin" not in msg  # imageio's misleading hint


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
@pytest.mark.parametrize("size", [8, 16, 24, 48, 100])
def test_staged_resize_matches_one_step(name, size):
  img = getattr(data, name)()
  img = img[..., None] if img.ndim == 2 else img
  one_step = transform.resize(util.img_as_float32(img), (size, size), anti_aliasing=True)
  staged = images.resize(img, size)
  assert staged.shape == one_step.shape and staged.dtype == np.float32
  diff = np.abs(staged - one_step)
  # Measured: mean <= 2.1e-3, max <= 0.025 over these images and sizes; the
  # bounds leave room, and are far below the 2-4% a naive block mean gives.
  assert diff.mean() < 4e-3 and diff.max() < 0.05
  if max(img.shape[:2]) / size < 8:
    np.testing.assert_array_equal(staged, one_step.astype(np.float32))  # not staged


def test_huge_image_is_downscaled_fast_with_logging(tmp_path, monkeypatch, caplog):
  # A 6000^2 RGB image (the decoder is stubbed: PNG decoding is not under test).
  # The one-step anti-aliased resize took minutes here (a Gaussian ~3000 px wide).
  ramp = np.linspace(0, 255, 6000).astype(np.uint8)
  huge = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], ramp[:, None]), -1)
  path = tmp_path / "huge.png"
  path.write_bytes(b"stub")
  monkeypatch.setattr("skimage.io.imread", lambda p: huge)
  caplog.set_level(logging.INFO, logger="nfscale.data.images")
  t0 = time.perf_counter()
  out = images.load_image(path=str(path), size=8)
  seconds = time.perf_counter() - t0
  # ~0.1 s on a shared 2-core machine; 10 s leaves room for a busy one.
  assert seconds < 10, seconds
  assert out.shape == (8, 8, 3)
  # Away from the borders (where the blur mirrors the image, as the one-step
  # resize does) a linear ramp stays the ramp at the output pixel centres;
  # 3e-3 covers the uint8 rounding of the ramp.
  centres = ((np.arange(8) + 0.5) * 750 - 0.5) / 5999
  np.testing.assert_allclose(out[1:-1, 0, 0], centres[1:-1], atol=3e-3)
  np.testing.assert_allclose(out[0, 1:-1, 1], centres[1:-1], atol=3e-3)
  assert np.all(np.diff(out[:, 0, 0]) > 0)
  assert "downscaling" in caplog.text and "6000x6000 to 8x8" in caplog.text


def test_non_square_image_is_cropped_not_stretched(tmp_path):
  # A 30x90 image: red outer thirds, a blue centre square. Resized to 30x30 it used to
  # be squashed 3x horizontally (red edges); the centred square is all blue.
  rgb = np.zeros((30, 90, 3), np.uint8)
  rgb[:, :30, 0] = rgb[:, 60:, 0] = 255
  rgb[:, 30:60, 2] = 255
  img = images.load_image(path=_write(tmp_path, "wide.png", rgb, "RGB"), size=15)
  assert img.shape == (15, 15, 3)
  np.testing.assert_allclose(img, np.broadcast_to([0.0, 0.0, 1.0], img.shape), atol=1e-6)
  tall = images.load_image(path=_write(tmp_path, "tall.png", rgb.transpose(1, 0, 2), "RGB"))
  assert tall.shape == (256, 256, 3)  # the default size, from the centre square too
  np.testing.assert_allclose(tall, np.broadcast_to([0.0, 0.0, 1.0], tall.shape), atol=1e-6)
