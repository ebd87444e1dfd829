"""Rendering, cameras, the procedural scene and the Blender loader."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import rendering
from nfscale.data import scenes


def _slab(lo, hi, sigma, color=(0.2, 0.4, 0.6)):
  """A slab of constant density between depths ``lo`` and ``hi`` along -z."""

  def field(x, d):
    z = -x[..., 2]
    inside = (z >= lo) & (z <= hi)
    rgb = jnp.broadcast_to(jnp.asarray(color), x.shape)
    return rgb, jnp.where(inside, sigma, 0.0)

  return field


def test_constant_density_matches_closed_form_exactly():
  # The sample intervals tile [near, far] exactly, so a density that fills the
  # whole range gives 1 - exp(-sigma d) to float rounding, for any jitter.
  o, d = jnp.zeros((3, 3)), jnp.array([[0.0, 0.0, -1.0], [0.0, 0.6, -0.8], [3.0, 4.0, 0.0]])
  for rng in (None, jax.random.key(3)):
    out = rendering.render_rays(
        _slab(-1e9, 1e9, 0.7), o, d, near=2.0, far=6.0, num_samples=16, rng=rng, background=None
    )
    length = 4.0 * np.linalg.norm(np.asarray(d), axis=-1)
    np.testing.assert_allclose(out["opacity"], 1 - np.exp(-0.7 * length), rtol=1e-5)
    np.testing.assert_allclose(out["rgb"], np.outer(out["opacity"], [0.2, 0.4, 0.6]), rtol=1e-5)


def test_slab_matches_closed_form_with_white_background():
  # A slab from depth 3 to 4.5: error comes only from the two boundary bins,
  # at most sigma * bin = 2 * 4/2000 in optical depth, so 1e-2 is a safe bound.
  sigma, color = 2.0, np.array([0.2, 0.4, 0.6])
  out = rendering.render_rays(
      _slab(3.0, 4.5, sigma, color),
      jnp.zeros((1, 3)),
      jnp.array([[0.0, 0.0, -1.0]]),
      near=2.0,
      far=6.0,
      num_samples=2000,
      background=1.0,
  )
  alpha = 1 - np.exp(-sigma * 1.5)
  np.testing.assert_allclose(out["opacity"][0], alpha, atol=1e-2)
  np.testing.assert_allclose(out["rgb"][0], alpha * color + (1 - alpha), atol=1e-2)
  # Expected depth of a slab: 3 + mean of an exponential truncated at 1.5.
  mean_in = 1 / sigma - 1.5 * np.exp(-sigma * 1.5) / alpha
  np.testing.assert_allclose(out["depth"][0] / alpha, 3 + mean_in, atol=1e-2)


def test_empty_space_renders_background():
  out = rendering.render_rays(
      _slab(10.0, 11.0, 5.0),
      jnp.zeros((2, 3)),
      jnp.array([[0.0, 0.0, -1.0]] * 2),
      near=2.0,
      far=6.0,
      num_samples=8,
      background=1.0,
  )
  np.testing.assert_allclose(out["rgb"], 1.0)


def test_rays_of_a_known_camera_hit_known_pixels():
  c2w = rendering.look_at(np.array([1.0, -3.0, 2.0]), np.array([0.1, 0.2, -0.3]))
  h, w, focal = 20, 30, 25.0
  o, d = map(np.asarray, rendering.camera_rays(c2w, h, w, focal))
  np.testing.assert_allclose(o, np.broadcast_to([1.0, -3.0, 2.0], o.shape), atol=1e-6)
  # Points along the ray of pixel (row, col) project back to that pixel's centre.
  for row, col in [(0, 0), (7, 21), (19, 29)]:
    pts = o[row, col] + np.array([[2.0], [5.0]]) * d[row, col]
    np.testing.assert_allclose(
        rendering.project(c2w, focal, h, w, pts), [[row + 0.5, col + 0.5]] * 2, atol=1e-3
    )
  # The look-at target lies on the optical axis (the image centre, between
  # pixels for even sizes), and +y of the image is up in the world.
  np.testing.assert_allclose(
      rendering.project(c2w, focal, h, w, np.array([[0.1, 0.2, -0.3]])), [[h / 2, w / 2]], atol=1e-9
  )
  up_pt = np.array([[0.1, 0.2, 0.7]])
  assert rendering.project(c2w, focal, h, w, up_pt)[0, 0] < h / 2
  # Depth convention: the camera-frame z of every direction is -1.
  np.testing.assert_allclose(d @ c2w[:3, :3] @ [0, 0, 1], -1.0, atol=1e-6)


def test_stratified_samples_stay_in_their_bins():
  t = rendering.sample_along_rays(jax.random.key(0), (100,), 8, 2.0, 6.0)
  bins = np.floor((np.asarray(t) - 2.0) / 0.5)
  np.testing.assert_array_equal(bins, np.broadcast_to(np.arange(8), (100, 8)))
  assert np.asarray(t).std(axis=0).min() > 0.05  # jittered, not fixed


def test_hierarchical_samples_follow_the_weights():
  bins = jnp.broadcast_to(jnp.linspace(2.0, 6.0, 9), (1, 9))
  weights = jnp.zeros((1, 8)).at[0, 5].set(1.0)
  t = rendering.sample_pdf(jax.random.key(0), bins, weights, 64)
  # All of the mass is in [4.5, 5]; the 1e-5 floor leaves ~1e-4 elsewhere.
  assert np.mean((np.asarray(t) >= 4.5) & (np.asarray(t) <= 5.0)) > 0.95
  out = rendering.render_rays(
      _slab(3.0, 3.5, 20.0),
      jnp.zeros((1, 3)),
      jnp.array([[0.0, 0.0, -1.0]]),
      near=2.0,
      far=6.0,
      num_samples=16,
      num_importance=32,
      rng=jax.random.key(1),
  )
  assert set(out) >= {"rgb", "coarse_rgb", "weights"}
  assert out["weights"].shape == (1, 48)


def test_render_in_chunks_matches_one_call_across_members():
  fn = lambda o, d: {"rgb": jnp.stack([o + d, o - d])}  # (members=2, n, 3)
  o = np.random.default_rng(0).normal(size=(7, 5, 3))
  d = np.random.default_rng(1).normal(size=(7, 5, 3))
  out = rendering.render_in_chunks(fn, o, d, chunk=8, ray_axis=1)["rgb"]
  assert out.shape == (2, 7, 5, 3)
  np.testing.assert_allclose(out[1], o - d, rtol=1e-5, atol=1e-6)


def test_bad_render_arguments():
  with pytest.raises(ValueError, match="far must exceed near"):
    rendering.sample_along_rays(None, (1,), 4, 6.0, 2.0)
  with pytest.raises(ValueError, match="camera_angle_x"):
    rendering.focal_from_fov(10, 4.0)
  with pytest.raises(ValueError, match="parallel to up"):
    rendering.look_at(np.array([0.0, 0.0, 3.0]))


def test_procedural_scene_views():
  scene = scenes.procedural_scene(num_train=3, num_test=24, height=12, width=12, gt_samples=64)
  assert scene.test.images.shape == (24, 12, 12, 3)
  imgs = scene.train.images
  assert imgs.min() >= 0 and imgs.max() <= 1
  # White background at the corners (the scene does not fill the frame), an
  # object in the centre.
  np.testing.assert_allclose(imgs[:, 0, 0], 1.0, atol=1e-3)
  assert np.all(np.abs(imgs[:, 6, 6] - 1.0).max(-1) > 0.1)
  # Test cameras: a turntable at the same elevation and distance.
  eyes = scene.test.c2w[:, :3, 3]
  np.testing.assert_allclose(np.linalg.norm(eyes, axis=-1), scenes.RADIUS, rtol=1e-5)
  np.testing.assert_allclose(eyes[:, 2], eyes[0, 2], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_scene():
  return scenes.procedural_scene(num_train=3, num_test=2, height=8, width=8, gt_samples=64)


def test_blender_loader_reads_a_written_scene(tmp_path, tiny_scene):
  angle = 0.6911112070083618
  scenes.write_blender_scene(str(tmp_path), tiny_scene, angle)
  loaded = scenes.load_blender(str(tmp_path))
  # PNG stores 8 bits: within half a level.
  np.testing.assert_allclose(loaded.train.images, tiny_scene.train.images, atol=0.5 / 255 + 1e-6)
  np.testing.assert_allclose(loaded.test.c2w, tiny_scene.test.c2w, atol=1e-6)
  assert loaded.train.focal == pytest.approx(tiny_scene.train.focal)
  assert (loaded.near, loaded.far) == (2.0, 6.0)
  half = scenes.load_blender(str(tmp_path), downscale=2)
  assert half.train.images.shape == (3, 4, 4, 3)
  assert half.train.focal == pytest.approx(tiny_scene.train.focal / 2)
  np.testing.assert_allclose(
      half.train.images[0, 0, 0], loaded.train.images[0, :2, :2].mean((0, 1)), atol=1e-6
  )


def test_blender_alpha_is_composited_on_white(tmp_path):
  import imageio.v3 as iio

  os.makedirs(tmp_path / "train")
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., 0] = 255  # red ...
  rgba[:2, ..., 3] = 255  # ... opaque in the top half, clear below
  iio.imwrite(tmp_path / "train" / "a.png", rgba)
  meta = {
      "camera_angle_x": 0.7,
      "frames": [{"file_path": "train/a.png", "transform_matrix": np.eye(4).tolist()}],
  }
  (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
  views = scenes.load_blender_split(str(tmp_path), "train")
  np.testing.assert_allclose(views.images[0, 0, 0], [1, 0, 0])
  np.testing.assert_allclose(views.images[0, 3, 0], [1, 1, 1])


def _write(tmp_path, meta, name="transforms_train.json"):
  path = tmp_path / name
  path.write_text(meta if isinstance(meta, str) else json.dumps(meta))
  return str(tmp_path)


@pytest.mark.parametrize(
    "meta, match",
    [
        ("{not json", "malformed JSON"),
        ({"frames": []}, "missing field 'camera_angle_x'"),
        ({"camera_angle_x": 0.7}, "missing field 'frames'"),
        ({"camera_angle_x": "wide", "frames": [{}]}, "camera_angle_x must be a number"),
        ({"camera_angle_x": 0.7, "frames": []}, "frames must be a non-empty list"),
        (
            {"camera_angle_x": 0.7, "frames": [{"file_path": "a"}]},
            r"frames\[0\]: missing field 'transform_matrix'",
        ),
        (
            {"camera_angle_x": 0.7, "frames": [{"file_path": "a", "transform_matrix": [[1, 0]]}]},
            r"frames\[0\]: transform_matrix must be 4x4",
        ),
        (
            {
                "camera_angle_x": 0.7,
                "frames": [{
                    "file_path": "a",
                    "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]],
                }],
            },
            r"frames\[0\]: transform_matrix's rotation is degenerate",
        ),
        (
            {
                "camera_angle_x": 0.7,
                "frames": [{"file_path": "missing", "transform_matrix": np.eye(4).tolist()}],
            },
            r"frames\[0\]\.file_path: image file .*missing\.png does not exist",
        ),
    ],
)
def test_blender_bad_inputs_name_the_file_and_field(tmp_path, meta, match):
  root = _write(tmp_path, meta)
  with pytest.raises(ValueError, match=match) as e:
    scenes.load_blender_split(root, "train")
  assert "transforms_train.json" in str(e.value)


def test_blender_mis_sized_images_and_missing_split(tmp_path, tiny_scene):
  import imageio.v3 as iio

  scenes.write_blender_scene(str(tmp_path), tiny_scene, 0.7)
  iio.imwrite(tmp_path / "train" / "r_1.png", np.zeros((6, 8, 4), np.uint8))
  with pytest.raises(ValueError, match=r"frames\[1\]\.file_path: image ./train/r_1.png is 8x6"):
    scenes.load_blender(str(tmp_path))
  with pytest.raises(ValueError, match="not divisible by downscale=3"):
    scenes.load_blender_split(str(tmp_path), "test", downscale=3)
  with pytest.raises(ValueError, match="transforms_val.json"):
    scenes.load_blender_split(str(tmp_path), "val")
  with pytest.raises(ValueError, match="does not exist"):
    scenes.load_blender(str(tmp_path / "nope"))
