"""The NeRF task end to end at a test size (configs/nerf.py:tiny)."""

import os
import pathlib
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from nfscale import experiment, io, tasks

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import nerf as nerf_cfg  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("nerf")
  return workdir, experiment.run(nerf_cfg.get_config("tiny"), str(workdir))


def test_tiny_run_writes_metrics_and_artifacts(tiny_run):
  workdir, results = tiny_run
  assert results["task"] == "nerf"
  assert [m["name"] for m in results["metrics"]] == ["train_psnr", "test_psnr", "test_ssim"]
  assert [r["scheme"] for r in results["members"]] == ["kaiming_uniform", "init2"]
  for row in results["members"]:
    assert np.isfinite(row["test_psnr"]) and 0 < row["test_psnr"] < 60
    assert -1 <= row["test_ssim"] <= 1
    assert np.isfinite(row["final_psnr"]) and 0 < row["train_psnr"] < 60
  for name in (
      "psnr.png",
      "test_views.png",
      "test_per_view.png",
      "turntable.gif",
      "test_views.json",
      "metrics.jsonl",
      "results.json",
  ):
    assert (workdir / name).stat().st_size > 0, name
  per_view = io.read_json(workdir / "test_views.json")
  assert len(per_view["members"]) == 2 and len(per_view["members"][0]["psnr"]) == 2
  # The mean over views is the reported test PSNR.
  np.testing.assert_allclose(
      np.mean(per_view["members"][1]["psnr"]), results["members"][1]["test_psnr"], rtol=1e-6
  )
  # The turntable: one frame per test view, truth beside both members.
  frames = iio.imread(workdir / "turntable.gif", index=None)
  assert frames.shape[0] == 2 and frames.shape[2] == 3 * 8 + 2 * 2
  info = results["task_info"]
  assert info["num_train_rays"] == 3 * 8 * 8 and info["rays_per_step_per_member"] == 32
  # Aux (the fine-render MSE) is logged per member.
  rows = io.read_jsonl(workdir / "metrics.jsonl")
  assert {"mse", "psnr", "loss"} <= set(rows[-1])


def test_registered_with_a_sample_key():
  assert "nerf" in tasks.list_tasks()
  assert tasks.num_samples_key("nerf") == "data.num_train"


def test_bad_scene_path_touches_nothing(tmp_path):
  c = nerf_cfg.get_config("tiny,path=" + str(tmp_path / "no_scene"))
  with pytest.raises(ValueError, match="no_scene does not exist"):
    experiment.run(c, str(tmp_path / "work"))
  assert not os.path.exists(tmp_path / "work")
  c = nerf_cfg.get_config("tiny")
  with c.unlocked():
    c.data.name = "lego"
  # It read "Unknown NeRF scene 'lego'", naming no key.
  with pytest.raises(ValueError, match="config.data.name='lego'; valid: procedural"):
    tasks.build_task(c)


def test_hierarchical_loss_and_viewdirs_build():
  import jax

  c = nerf_cfg.get_config("tiny")
  with c.unlocked():
    c.render.num_importance = 4
    c.render.use_viewdirs = True
  task = tasks.build_task(c)
  assert task.example_input.shape == (1, 6)
  params = task.model.init(jax.random.key(0), task.example_input)
  batch = {k: v[:5] for k, v in task.train_data.items()}
  loss, aux = task.loss_fn(params, batch, jax.random.key(1))
  # loss = fine MSE + coarse MSE, both non-negative and finite.
  assert np.isfinite(float(loss)) and float(loss) >= float(aux["mse"]) > 0


def test_an_800x800_view_renders_in_chunks():
  import jax
  from nfscale.data import scenes
  from nfscale.tasks import base, nerf

  c = nerf_cfg.get_config("tiny")
  with c.unlocked():
    c.render.num_samples = 4
    c.render.chunk = 65536  # 10 calls for 640k rays, each a few MB
  model = base.model_from_config(c, out_dim=4)
  params = jax.tree.map(lambda a: a[None], model.init(jax.random.key(0), np.zeros((1, 3))))
  pose = np.eye(4, dtype=np.float32)
  pose[2, 3] = 4.0
  views = scenes.Views(np.zeros((1, 800, 800, 3), np.float32), pose[None], 1111.1)
  out = nerf.render_members(nerf.make_field_fn(model, c.render), params, views, c.render, 2.0, 6.0)
  assert out.shape == (1, 1, 800, 800, 3) and np.all(np.isfinite(out))
  psnr, ssim = nerf.image_metrics(out[:, :, :64, :64], views.images[:, :64, :64])
  np.testing.assert_allclose(
      psnr[0, 0], -10 * np.log10(np.mean(out[0, 0, :64, :64] ** 2)), rtol=1e-4
  )
  assert ssim.shape == (1, 1)


@pytest.mark.parametrize(
    "key,value",
    [
        ("num_samples", 0),
        ("num_importance", -1),
        ("num_samples", 10**12),  # JAX's OverflowError, naming no key
        ("gif_fps", 0.0),
        ("views_shown", 0),
        # These passed and trained every member to NaN.
        ("far", float("inf")),
        ("density_shift", float("nan")),
        ("far", 1e300),  # inf in float32: NaN too
        ("gif_fps", 1e-300),  # OverflowError writing the GIF, after training
        ("use_viewdirs", "false"),  # read by truth value: 6 inputs
    ],
)
def test_bad_render_settings_fail_before_the_workdir(tmp_path, key, value):
  # They were used only after training (the gif, the view grid), so a whole run ended
  # in a traceback and its workdir then refused the corrected command.
  c = nerf_cfg.get_config("tiny")
  with c.unlocked(), c.render.ignore_type():
    c.render[key] = value
  with pytest.raises(ValueError, match=f"render.{key} must be"):
    experiment.run(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "key,value",
    [
        ("num_train", 2.5),  # int() made it 2
        ("num_test", None),  # int()'s TypeError
        ("size", 0),  # "procedural scene: height must be positive"
        ("gt_samples", 10**12),  # JAX's OverflowError
    ],
)
def test_bad_scene_sizes_are_refused_by_key(key, value):
  c = nerf_cfg.get_config("tiny")
  with c.data.ignore_type():
    c.data[key] = value
  with pytest.raises(ValueError, match=f"config.data.{key} must be an integer"):
    experiment.validate(c)


def test_exact_field_reference_uses_the_members_sampling(tiny_run):
  # The procedural scene's analytic field rendered with the members' samples per ray:
  # with as many samples as the ground truth it is the ground truth (same renderer);
  # with fewer, thin parts fall between samples and the score drops.
  _, results = tiny_run
  assert results["task_info"]["exact_field_test_psnr"] < 30  # 8 samples against 32
  scores = {}
  for n in (8, 32):
    c = nerf_cfg.get_config("tiny")
    c.render.num_samples = n  # tiny's ground truth: 32 samples per ray
    scores[n] = tasks.build_task(c).info["exact_field_test_psnr"]
  assert scores[8] == pytest.approx(results["task_info"]["exact_field_test_psnr"], abs=1e-4)
  assert scores[32] > 100, scores  # float32 rounding only


def test_evaluation_compiles_the_renderer_once():
  # The test and train views (same ray chunk) share one jitted renderer whose params are an
  # argument: each render_members call used to compile the whole renderer anew.
  import logging

  import jax

  c = nerf_cfg.get_config("tiny")
  with c.unlocked():
    c.render.chunk = 61  # both splits then render in chunks of 61 rays; no other test's shape
  task = tasks.build_task(c)
  members = experiment.members_from_config(c)
  params = jax.device_get(experiment.init_params(c, task, members))
  compiled = []

  class Names(logging.Handler):

    def emit(self, record):
      if record.getMessage().startswith("Compiling "):
        compiled.append(record.getMessage().split(" ")[1])

  handler, logger = Names(), logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      evaluation = task.evaluate(params)
      n_first = len(compiled)
      again = task.evaluate(params)  # a re-evaluation compiles nothing
  finally:
    logger.removeHandler(handler)
  # At most one renderer and one metrics program (image_metrics; an earlier test may have
  # compiled it for these shapes), and nothing for the second evaluation.
  assert n_first <= 2 and len(compiled) == n_first, compiled
  np.testing.assert_array_equal(evaluation["test_psnr"], again["test_psnr"])


def test_procedural_scene_compiles_its_renderer_once():
  # The train and test splits share one jitted ground-truth renderer.
  import logging

  import jax

  from nfscale.data import scenes

  compiled = []

  class Names(logging.Handler):

    def emit(self, record):
      if record.getMessage().startswith("Compiling jit(<lambda>)"):
        compiled.append(record.getMessage())

  handler, logger = Names(), logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      # A size no other test uses, and a sample count of its own.
      scene = scenes.procedural_scene(2, 1, height=5, width=5, gt_samples=7)
  finally:
    logger.removeHandler(handler)
  assert len(compiled) == 1, compiled
  assert scene.train.images.shape == (2, 5, 5, 3) and scene.test.images.shape == (1, 5, 5, 3)
