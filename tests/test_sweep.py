"""Scaling sweeps: resumable after SIGKILL, config pinning, host split, forced devices."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from nfscale import io, sweep

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import scaling_shallow  # noqa: E402

CMD = [sys.executable, "-m", "launch.sweep", "--config=configs/scaling_shallow.py:tiny",
       "--config.theory.enabled=False"]


def _tiny(**theory):
  c = scaling_shallow.get_config("tiny")
  with c.unlocked():
    c.theory.enabled = bool(theory.get("enabled", False))
  return c


def _comparable(points):
  """Point records without wall-clock fields, keyed by (arm, n)."""
  out = {}
  for p in points:
    out[(p["arm"], p["n"])] = {k: v for k, v in p.items() if "seconds" not in k}
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ref")
  report = sweep.run_sweep(_tiny(), str(workdir))
  return workdir, report


def test_tiny_sweep_writes_report(reference):
  workdir, report = reference
  for f in ("config.json", "points.jsonl", "evals.jsonl", "table.csv", "table.md", "fits.json",
            "scaling.png"):
    assert (workdir / f).stat().st_size > 0, f
  assert report["points"] == report["expected_points"] == 3
  rows = report["rows"]
  assert {(r["n"], r["scheme"]) for r in rows} == {(n, s) for n in (6, 10, 14)
                                                     for s in ("lecun_normal", "init1")}
  for r in rows:
    if r["found"]:
      # The found width trained to the target; the lower bound did not.
      assert r["lower_bound"] < r["min_width"] <= 64
      assert r["param_count"] == 3 * r["min_width"] + 1
  evals = io.read_jsonl(workdir / "evals.jsonl")
  for e in evals:
    for s, v in e["schemes"].items():
      assert v["success"] == (sum(v["reached"][0]) >= 1)  # one seed, one lr


def test_resume_after_sigkill_reproduces_uninterrupted(reference, tmp_path):
  ref_dir, _ = reference
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(CMD + [f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  evals = workdir / "evals.jsonl"
  deadline = time.time() + 240
  # Kill after the first few trained widths, i.e. mid-point.
  while time.time() < deadline and proc.poll() is None:
    if evals.exists() and len(io.read_jsonl(evals)) >= 3:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished_before = len(io.read_jsonl(workdir / "points.jsonl", missing_ok=True))
  assert finished_before < 3, "the sweep finished before it could be killed"
  out = subprocess.run(CMD + [f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "points finished: 3 / 3" in out.stdout
  got = io.read_jsonl(workdir / "points.jsonl")
  want = io.read_jsonl(ref_dir / "points.jsonl")
  assert len(got) == 3  # no duplicate point
  assert _comparable(got) == _comparable(want)
  # No width was trained twice: the resumed run reused evals.jsonl.
  keys = [(e["arm"], e["n"], e["width"], tuple(e["schemes"]))
          for e in io.read_jsonl(workdir / "evals.jsonl")]
  assert len(keys) == len(set(keys))


def test_changed_config_is_refused(reference):
  workdir, _ = reference
  c = _tiny()
  with c.unlocked():
    c.steps = 401
  with pytest.raises(ValueError, match="steps: 400 -> 401"):
    sweep.run_sweep(c, str(workdir))
  # progress is not part of the result: a rerun that only differs there resumes.
  c = _tiny()
  with c.unlocked():
    c.progress = True
  assert sweep.run_sweep(c, str(workdir), progress=False)["points"] == 3


def test_host_split_merges_to_the_same_result(reference, tmp_path):
  ref_dir, _ = reference
  for index in (0, 1):
    sweep.run_sweep(_tiny(), str(tmp_path), host=(index, 2), report=False)
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["config.json", "points.0.jsonl", "points.1.jsonl", "evals.0.jsonl", "evals.1.jsonl"])
  assert len(io.read_jsonl(tmp_path / "points.0.jsonl")) == 2  # points 0 and 2
  report = sweep.write_report(_tiny(), str(tmp_path))
  assert report["points"] == 3
  assert _comparable(sweep.read_points(str(tmp_path))) == _comparable(
      sweep.read_points(str(ref_dir)))


@pytest.mark.slow  # a whole sweep in a subprocess; test_sharding covers the engine itself
def test_forced_devices_give_the_same_widths(reference, tmp_path):
  ref_dir, _ = reference
  script = (
      "import jax; jax.config.update('jax_num_cpu_devices', 4)\n"
      "import sys; sys.path.insert(0, '.')\n"
      "from configs import scaling_shallow; from nfscale import sweep\n"
      "assert len(jax.devices()) == 4\n"
      "c = scaling_shallow.get_config('tiny')\n"
      "with c.unlocked(): c.theory.enabled = False\n"
      f"sweep.run_sweep(c, {str(tmp_path)!r})\n")
  out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-2000:]
  got = {k: {s: r["min_width"] for s, r in v["schemes"].items()}
         for k, v in _comparable(sweep.read_points(str(tmp_path))).items()}
  want = {k: {s: r["min_width"] for s, r in v["schemes"].items()}
          for k, v in _comparable(sweep.read_points(str(ref_dir))).items()}
  assert got == want


def test_bad_sweep_configs(tmp_path):
  c = _tiny()
  with c.unlocked():
    c.sweep.arms = ("gauss",)
  with pytest.raises(ValueError, match="Unknown arms"):
    sweep.run_sweep(c, str(tmp_path))
  c = _tiny()
  with c.unlocked():
    c.target = None
  with pytest.raises(ValueError, match="target"):
    sweep.run_sweep(c, str(tmp_path))
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match="median, all, any"):
    import numpy as np
    sweep.success(np.array([True]), "most")
