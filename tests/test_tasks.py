"""The task registry and contract: built-in and external tasks, N through the task."""

import json
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import jax

from nfscale import experiment, sweep, tasks
from nfscale.tasks import base

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import configs  # noqa: E402
from configs import image as image_cfg  # noqa: E402
from configs import scaling_shallow  # noqa: E402
from toytask import config as toy_cfg  # noqa: E402


def test_builtin_tasks_are_listed_and_unknown_names_explained():
  assert {"curve1d", "image", "random_labels"} <= set(tasks.list_tasks())
  c = image_cfg.get_config("quick")
  with c.unlocked():
    c.task = "imgae"
  with pytest.raises(ValueError, match="Unknown task 'imgae'; valid tasks: .*curve1d.*image"):
    tasks.build_task(c)


def test_builtin_tasks_declare_metrics_and_score():
  c = image_cfg.get_config("quick,size=8")
  with c.unlocked():
    c.data_range = 2.0
  task = tasks.build_task(c)
  assert [m.name for m in task.metrics] == ["full_psnr", "full_ssim"]
  assert task.score.name == "psnr"
  # The score uses the task's data range: 10 log10(2^2 / 0.04) = 20 dB.
  assert float(task.score.fn(np.float32(0.04), {})) == pytest.approx(20.0, abs=1e-4)
  assert task.example_input.shape == (1, 2)


def test_num_samples_key_sets_n_through_the_task():
  assert tasks.num_samples_key("image") == "data.num_samples"
  c = scaling_shallow.get_config("tiny")
  assert sweep.point_config(c, "sinc", 37).data.num_points == 37
  c = scaling_shallow.get_config("tiny,sphere")
  assert sweep.point_config(c, "sinc", 11).data.num_points == 11


def test_register_rejects_a_name_taken_by_another_module():
  def build(config):
    raise AssertionError("never called")

  build.__module__ = "someone_else"
  with pytest.raises(ValueError, match="already registered"):
    tasks.register_task("image")(build)
  with pytest.raises(ValueError, match="task_module='no_such_module_xyz'"):
    tasks.num_samples_key("toy", "no_such_module_xyz")


def test_task_without_num_samples_key_cannot_be_swept():
  @tasks.register_task("fixed_n_task_for_test")
  def build(config):
    raise AssertionError("never called")

  with pytest.raises(ValueError, match="no num_samples_key"):
    tasks.num_samples_key("fixed_n_task_for_test")


def test_external_task_runs_in_process(tmp_path):
  c = toy_cfg.get_config()
  res = experiment.run(c, str(tmp_path))
  assert res["score"]["name"] == "neg_mae"
  assert res["metrics"][0] == {
      "name": "max_error",
      "higher_is_better": False,
      "fmt": ".4f",
      "label": "max_error",
  }
  for m in res["members"]:
    assert m["final_neg_mae"] > m["final_loss"] * -1 - 1e-6  # score = -loss
    assert 0 <= m["max_error"] < 1
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {"neg_mae", "mse", "loss"} <= set(rows[0])  # score and aux logged
  assert (tmp_path / "neg_mae.png").exists() and (tmp_path / "toy_fits.png").exists()
  assert "max_error" in experiment.format_table(res)
  # It can be swept over N through its own num_samples_key.
  assert tasks.num_samples_key("toy_abs") == "data.num_points"


def test_external_task_end_to_end_through_the_launcher(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), JAX_PLATFORMS="cpu")
  cmd = [
      sys.executable,
      "-m",
      "launch.train",
      "--config=tests/toytask/config.py",
      f"--workdir={tmp_path}",
  ]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "max_error" in out.stdout and "toy_fits.png" in out.stdout
  res = json.loads((tmp_path / "results.json").read_text())
  assert res["task"] == "toy_abs" and len(res["members"]) == 2
  # Eval mode, from the saved config alone: the task module is imported again.
  (tmp_path / "toy_fits.png").unlink()
  ev = subprocess.run(
      [sys.executable, "-m", "launch.render", f"--workdir={tmp_path}"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      env=env,
  )
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert (tmp_path / "toy_fits.png").exists()
  again = json.loads((tmp_path / "results.json").read_text())
  assert again["members"] == res["members"]


def test_task_contract_checks():
  with pytest.raises(ValueError, match="duplicate metric"):
    base.Task(
        name="t",
        model=None,
        train_data={"x": np.zeros((2, 1))},
        loss_fn=None,
        metrics=(base.Metric("a"), base.Metric("a")),
    )
  with pytest.raises(ValueError, match="example_input"):
    base.Task(name="t", model=None, train_data={"u": np.zeros((2, 1))}, loss_fn=None)


def _compiled_names(fn):
  """The names of the XLA programs compiled while ``fn()`` runs."""
  names = []

  class Names(logging.Handler):

    def emit(self, record):
      msg = record.getMessage()
      if msg.startswith("Compiling "):
        names.append(msg.split(" ")[1])

  handler, logger = Names(), logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      fn()
  finally:
    logger.removeHandler(handler)
  return names


@pytest.mark.parametrize(
    "name,arg,data",
    [
        # Sizes no other test uses: a shape already staged would hide the compile.
        ("image", "quick,size=11", {}),
        ("superres", "tiny,size=22", {}),
        ("curve1d", "quick,points=13", {"dense_points": 1013}),
    ],
)
def test_build_and_evaluate_compile_no_transfer_programs(name, arg, data):
  # jnp.asarray of a NumPy array compiles an identity program (jit(stage)) for each
  # new shape, ~0.05 s of CPU each; host arrays go into the jitted calls as they are.
  c = configs.get(name, arg)
  with c.unlocked():
    c.data.update(data)
  box = {}
  compiled = _compiled_names(lambda: box.update(task=tasks.build_task(c)))
  task = box["task"]
  params = experiment.init_params(c, task, experiment.members_from_config(c)[:2])
  params = jax.device_get(params)  # host arrays, as run() evaluates them
  compiled += _compiled_names(lambda: box.update(evaluation=task.evaluate(params)))
  assert "jit(stage)" not in compiled, compiled
  assert all(np.isfinite(np.asarray(box["evaluation"][m.name])).all() for m in task.metrics)
