"""Super resolution: the forward operator A, its sub-pixel layout, the bicubic baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import resampling
from nfscale.data import images


@pytest.mark.parametrize("factor", [2, 4])
def test_area_downsample_of_constant_is_constant(factor):
  img = np.full((16, 12, 3), 0.37, np.float32)
  low = resampling.area_downsample(img, factor)
  assert low.shape == (16 // factor, 12 // factor, 3)
  np.testing.assert_allclose(low, 0.37, atol=1e-7)


@pytest.mark.parametrize("factor", [1, 3, 4])
def test_area_downsample_inverts_nearest_upsample(factor):
  small = np.random.default_rng(0).uniform(size=(5, 7, 3)).astype(np.float32)
  up = resampling.nearest_upsample(small, factor)
  assert up.shape == (5 * factor, 7 * factor, 3)
  np.testing.assert_allclose(resampling.area_downsample(up, factor), small, atol=1e-6)
  # The same under jit on a JAX array.
  down = jax.jit(lambda x: resampling.area_downsample(x, factor))(jnp.asarray(up))
  np.testing.assert_allclose(np.asarray(down), small, atol=1e-6)


def test_subpixel_layout_applies_A():
  # Averaging the field over each low-res pixel's sub-pixels must equal A of the rendered image.
  img = np.random.default_rng(1).uniform(size=(8, 12, 3)).astype(np.float32)
  grouped = resampling.group_subpixels(img, 4)
  np.testing.assert_allclose(
      grouped.mean(1), resampling.area_downsample(img, 4).reshape(-1, 3), atol=1e-6
  )
  coords = resampling.subpixel_coords(8, 12, 4)
  full = images.pixel_coords(8, 12).reshape(8, 12, 2)
  np.testing.assert_array_equal(coords[0], full[:4, :4].reshape(16, 2))
  np.testing.assert_array_equal(coords[1], full[:4, 4:8].reshape(16, 2))


def test_image_smaller_than_factor_is_a_clear_error():
  with pytest.raises(ValueError, match=r"'small.png' is 3x8 pixels, smaller than .* factor 4"):
    resampling.check_factor(3, 8, 4, "small.png")
  with pytest.raises(ValueError, match="positive integer"):
    resampling.check_factor(8, 8, 0)
  with pytest.raises(ValueError, match="multiples of the factor"):
    resampling.area_downsample(np.zeros((6, 8)), 4)


def test_bicubic_baseline_beats_nearest_on_a_smooth_image():
  ys, xs = np.mgrid[0:64, 0:64] / 64.0
  img = (0.5 + 0.4 * np.sin(2 * np.pi * xs) * np.cos(2 * np.pi * ys)).astype(np.float32)
  low = resampling.area_downsample(img, 4)
  bic = resampling.bicubic_upsample(low, 4)
  near = resampling.nearest_upsample(low, 4)
  assert bic.shape == img.shape and bic.dtype == np.float32
  assert np.mean((bic - img) ** 2) < 0.5 * np.mean((near - img) ** 2)


# ---- the task end to end (the config's test-sized preset) ------------------------------


def _sr_config(arg="tiny"):
  import pathlib
  import sys

  sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
  from configs import superres as cfg

  return cfg.get_config(arg)


def test_superres_task_trains_through_A_only():
  from nfscale.tasks import build_task

  c = _sr_config()
  task = build_task(c)
  f2 = c.data.factor**2
  assert task.train_data["x"].shape == (16 * 16 // f2, f2, 2)
  assert task.train_data["y"].shape == (16 * 16 // f2, 3)
  # The observation is A of the high-res image; high-res pixels are never a target.
  hi, lo = __import__("nfscale.tasks.superres", fromlist=["x"]).load_problem(
      c.data.name, "", 16, c.data.factor
  )
  np.testing.assert_allclose(task.train_data["y"], lo.reshape(-1, 3))
  assert task.info["bicubic_psnr"] > 10


def test_superres_tiny_run_writes_every_artifact(tmp_path):
  import json
  from nfscale import experiment

  c = _sr_config()
  res = experiment.run(c, str(tmp_path))
  for name in (
      "config.json",
      "metrics.jsonl",
      "results.json",
      "psnr.png",
      "superres.png",
      "table.md",
  ):
    assert (tmp_path / name).stat().st_size > 0, name
  assert [m["scheme"] for m in res["members"]] == list(c.schemes)
  for m in res["members"]:
    assert np.isfinite(m["hr_psnr"]) and -1 <= m["hr_ssim"] <= 1
  assert "bicubic (baseline)" in (tmp_path / "table.md").read_text()
  assert json.loads((tmp_path / "results.json").read_text())["task_info"]["factor"] == 4


def test_superres_image_smaller_than_factor_fails_before_writing(tmp_path):
  from nfscale import experiment

  c = _sr_config("tiny,size=3")
  # It named no key ("image 'astronaut' is 3x3 pixels, smaller than ... factor 4").
  with pytest.raises(ValueError, match="config.data.size=3 is smaller than config.data.factor=4"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_superres_file_smaller_than_factor_names_the_key(tmp_path):
  from skimage import io as skio

  from nfscale import experiment

  path = tmp_path / "small.png"
  skio.imsave(path, np.zeros((3, 8), np.uint8), check_contrast=False)
  c = _sr_config()
  c.data.path, c.data.size = str(path), 0
  # The file's own size (size=0 keeps it) is only known once it is read; it named no key.
  with pytest.raises(ValueError, match=r"config.data.factor=4: image .*small.png' is 3x8 pixels"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "key,value",
    [
        ("factor", 2.5),  # int() made it 2
        ("factor", None),  # int()'s TypeError
        ("size", -1),  # "image 'astronaut' is -1x-1 pixels"
        ("size", 2.5),
    ],
)
def test_superres_data_sizes_are_checked_by_key(key, value):
  from nfscale import experiment

  c = _sr_config()
  with c.data.ignore_type():
    c.data[key] = value
  with pytest.raises(ValueError, match=f"config.data.{key} must be an integer"):
    experiment.validate(c)
