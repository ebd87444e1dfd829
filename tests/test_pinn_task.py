"""The Navier-Stokes PINN task end to end at a test size, and resume after SIGKILL."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io

from nfscale import checkpoint, experiment, io, tasks

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import pinn as pinn_cfg  # noqa: E402

# 200 steps, a checkpoint every 10: a kill right after the first checkpoint
# lands mid-run (the test asserts it did).
RESUME_ARG = "tiny,steps=200"
CMD = [sys.executable, "-m", "launch.train", f"--config=configs/pinn.py:{RESUME_ARG}"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pinn")
  return workdir, experiment.run(pinn_cfg.get_config(RESUME_ARG), str(workdir))


def test_tiny_run_writes_metrics_and_artifacts(tiny_run):
  workdir, results = tiny_run
  assert results["task"] == "pinn"
  names = [m["name"] for m in results["metrics"]]
  assert names == ["rel_l2_u", "rel_l2_v", "rel_l2_p", "data_psnr", "pde_psnr"]
  assert not results["metrics"][0]["higher_is_better"]
  for row in results["members"]:
    for k in names:
      assert np.isfinite(row[k]), (row["label"], k)
    # The score is the total loss's PSNR: data + PDE loss.
    total = 10 ** (-row["data_psnr"] / 10) + 10 ** (-row["pde_psnr"] / 10)
    np.testing.assert_allclose(row["final_psnr"], -10 * np.log10(total), atol=0.05)
  for name in ("psnr.png", "pde_psnr.png", "fields.png", "metrics.jsonl"):
    assert (workdir / name).stat().st_size > 0, name
  rows = io.read_jsonl(workdir / "metrics.jsonl")
  assert {"data_loss", "pde_loss", "pde_psnr", "psnr"} <= set(rows[-1])
  assert results["task_info"]["pde_terms"] == ["momentum_x", "momentum_y", "continuity"]


@pytest.mark.slow  # two subprocess runs (~50 s on a shared 2-core CPU)
def test_resume_after_sigkill_matches_uninterrupted(tiny_run, tmp_path):
  ref_dir, ref = tiny_run
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(
      CMD + [f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if checkpoint.latest_step(str(workdir)) is not None:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "results.json").exists(), "the run finished before it was killed"
  out = subprocess.run(
      CMD + [f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-2000:]
  got = io.read_json(workdir / "results.json")
  for a, b in zip(got["members"], ref["members"]):
    # Full batch, no rng: the resumed run retraces the same steps (float32
    # reductions may reorder across processes, hence a tolerance).
    np.testing.assert_allclose(a["final_loss"], b["final_loss"], rtol=1e-3)
    np.testing.assert_allclose(a["rel_l2_u"], b["rel_l2_u"], rtol=1e-3)
  steps = [r["step"] for r in io.read_jsonl(workdir / "metrics.jsonl") if r["member"] == 0]
  assert steps == sorted(set(steps))  # no step logged twice


def test_stream_function_drops_continuity_from_the_loss(tmp_path):
  import jax

  c = pinn_cfg.get_config("tiny")
  with c.unlocked():
    c.model.parameterization = "psi_p"
  task = tasks.build_task(c)
  assert task.info["pde_terms"] == ["momentum_x", "momentum_y"]
  assert task.model.out_dim == 2
  params = task.model.init(jax.random.key(0), task.example_input)
  loss, aux = jax.jit(task.loss_fn)(params, task.train_data, jax.random.key(0))
  np.testing.assert_allclose(loss, aux["data_loss"] + aux["pde_loss"], rtol=1e-5)
  with c.unlocked():
    c.model.parameterization = "stream"
  with pytest.raises(ValueError, match="valid: uvp, psi_p"):
    tasks.build_task(c)


def test_mat_file_by_path_and_bad_keys(tmp_path):
  rs = np.random.default_rng(0)
  good = tmp_path / "wake.mat"
  scipy.io.savemat(
      good,
      {
          "X_star": rs.uniform(1, 8, (30, 2)),
          "t": np.linspace(0, 2, 3)[:, None],
          "U_star": rs.normal(size=(30, 2, 3)),
          "p_star": rs.normal(size=(30, 3)),
      },
  )
  task = tasks.build_task(pinn_cfg.get_config(f"tiny,path={good}"))
  assert task.info["num_eval_points"] == 90 and task.info["grid_shape"] == [3, 30]
  bad = tmp_path / "bad.mat"
  scipy.io.savemat(bad, {"X": np.zeros((3, 2))})
  with pytest.raises(ValueError, match=r"bad.mat: missing key"):
    experiment.run(pinn_cfg.get_config(f"tiny,path={bad}"), str(tmp_path / "work"))
  assert not os.path.exists(tmp_path / "work")


@pytest.mark.parametrize(
    "key,value",
    [
        ("nu", float("nan")),
        ("nu", -0.01),
        ("k", float("nan")),
        ("t_max", float("inf")),
        # Finite in float64 only: nu and t_max trained every member to NaN (inf in
        # float32), k raised OverflowError in k**2 (a traceback).
        ("nu", 1e300),
        ("t_max", 1e300),
        ("k", 1e300),
        ("k", -1e300),
    ],
)
def test_bad_flow_constant_fails_before_the_workdir(tmp_path, key, value):
  # They passed and trained every member to NaN.
  c = pinn_cfg.get_config("tiny")
  c.data[key] = value
  with pytest.raises(ValueError, match=f"config.data.{key} must be a finite number"):
    experiment.run(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "key,value", [("grid", 2.5), ("num_times", None), ("num_points", True), ("num_points", 2.5)]
)
def test_flow_sizes_are_checked_by_key(key, value):
  # int() turned 2.5 into 2 and True into 1 (a run on one point); None was a TypeError.
  c = pinn_cfg.get_config("tiny")
  with c.data.ignore_type():
    c.data[key] = value
  with pytest.raises(ValueError, match=f"config.data.{key} must be an integer"):
    experiment.validate(c)


def test_unknown_flow_names_its_key():
  c = pinn_cfg.get_config("tiny")
  c.data.name = "kolmogorov"  # it read "Unknown flow 'kolmogorov'", naming no key
  with pytest.raises(ValueError, match="config.data.name='kolmogorov'; valid: taylor_green"):
    experiment.validate(c)
