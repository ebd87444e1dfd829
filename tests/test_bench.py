"""nfscale.bench on tiny sizes: the JSON records' fields, and that training really ran;
the PyTorch workloads script ships in the repository and `make bench` points at it."""

import importlib.util
import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from nfscale import bench, models, train

ROOT = pathlib.Path(__file__).parents[1]
TORCH_SCRIPT = ROOT / "benchmarks" / "torch_workloads.py"

ENV_FIELDS = {"jax", "jaxlib", "devices", "cpus", "options"}


def _check_common(rec):
  assert ENV_FIELDS <= set(rec)
  assert rec["impl"] == "nfscale" and rec["devices"]
  assert all(r > 0 and math.isfinite(r) for r in rec["rates"])
  assert rec["compile_s"] > 0 and rec["cpu_s_per_step"] > 0
  json.dumps(rec)  # one JSON line


def test_image_workload_tiny():
  rec = bench.bench_image(steps=3, repeats=2, fast_sin=True, size=8)
  _check_common(rec)
  assert rec["workload"] == "image" and len(rec["rates"]) == 2
  assert rec["steps_per_s"] == float(np.median(rec["rates"]))
  assert rec["options"]["fast_sin"] is True and rec["options"]["size"] == 8
  assert rec["options"]["chunk_steps"] == 3 and rec["steps_run"] == 9
  assert rec["first_step_s"] >= rec["compile_s"] and rec["gflops"] > 0
  # Adam at lr 1e-4 on the 8x8 image: the fit improves over 9 steps.
  assert math.isfinite(rec["final_psnr"]) and rec["final_psnr"] > rec["initial_psnr"]


def test_ensemble_workload_tiny_without_fast_sin():
  rec = bench.bench_ensemble(steps=4, repeats=2, fast_sin=False, num_models=3, n=16, width=8,
                             chunk_steps=2)
  _check_common(rec)
  assert rec["workload"] == "ensemble" and len(rec["rates"]) == 2
  assert rec["model_steps_per_s"] == float(np.median(rec["rates"]))
  assert rec["options"]["models"] == 3 and rec["options"]["fast_sin"] is False
  assert rec["diverged"] == 0 and rec["steps_run"] == 10
  assert math.isfinite(rec["final_psnr_min"])
  assert rec["final_psnr_mean"] > rec["initial_psnr_mean"]


def test_data_matches_the_reference_construction():
  coords, rgb = bench.image_data(4)
  assert coords.shape == (16, 2) and rgb.shape == (16, 3) and coords.dtype == np.float32
  # Row-major (y, x) pixel grid with x first, as benchmarks/torch_workloads.py builds it.
  np.testing.assert_array_equal(coords[:4, 0], np.linspace(-1, 1, 4, dtype=np.float32))
  np.testing.assert_array_equal(coords[::4, 1], np.linspace(-1, 1, 4, dtype=np.float32))
  assert 0 <= rgb.min() and rgb.max() <= 1
  x, y = bench.curve_data(200)
  assert x.shape == y.shape == (200, 1)
  np.testing.assert_allclose(y[100], np.sum(np.sin(np.array([2, 6, 10]) * np.pi * x[100])),
                             rtol=1e-5)


def test_summary_ratios():
  recs = [
      {"workload": "image", "impl": "nfscale", "options": {"fast_sin": True}, "rates": [2, 4, 3]},
      {"workload": "image", "impl": "nfscale", "options": {"fast_sin": False}, "rates": [1]},
      {"workload": "image", "impl": "torch-compile", "rates": [1.5, 1.5]},
      {"workload": "ensemble", "impl": "nfscale", "options": {"fast_sin": True}, "rates": [60]},
      {"workload": "ensemble", "impl": "torch-vmap", "rates": [20]},
  ]
  s = bench.summarize(recs)
  assert s["image"]["median"]["nfscale fast_sin=on"] == 3
  assert s["image"]["ratios"]["nfscale fast_sin=on / torch-compile"] == 2
  assert s["ensemble"]["ratios"]["nfscale fast_sin=on / torch-vmap"] == 3
  table = bench.format_summary(s)
  assert "2.00x" in table and "3.00x" in table


def test_ablations_are_explicit_and_restored():
  saved = (dict(train.CPU_COMPILER_OPTIONS), models.SMALL_FAN_IN, train._all_finite)
  rec = bench.bench_ensemble(steps=2, repeats=1, num_models=2, n=8, width=4,
                             compiler_options={}, small_fan_in=0, engine_checks=False)
  opts = rec["options"]
  assert opts["compiler_options"] is None and opts["small_fan_in"] == 0
  assert opts["engine_checks"] is False
  assert (train.CPU_COMPILER_OPTIONS, models.SMALL_FAN_IN, train._all_finite) == saved


def test_suite_commands_use_the_given_launcher_and_torch_script():
  cmds = bench.suite_commands(["py", "-m", "nfscale.launch.bench"], "tpy", "w.py",
                              ["image:compile", "ensemble:vmap"], None, 3)
  assert [c[:3] for c in cmds] == [("nfscale", "image", True), ("nfscale", "image", False),
                                   ("torch", "image", "compile"), ("nfscale", "ensemble", True),
                                   ("nfscale", "ensemble", False), ("torch", "ensemble", "vmap")]
  assert cmds[2][3] == ["tpy", "w.py", "image", "--mode", "compile", "--steps=10",
                        "--repeats=3"]
  assert cmds[3][3][:3] == ["py", "-m", "nfscale.launch.bench"] and "--steps=100" in cmds[3][3]


def test_make_bench_uses_the_script_in_the_repository():
  assert TORCH_SCRIPT.is_file()
  make = (ROOT / "Makefile").read_text()
  assert re.search(r"^TORCH_REF\s*\?=\s*benchmarks/torch_workloads.py$", make, re.M)
  # The launcher's default finds it too (a fresh clone, no flags).
  out = subprocess.run([sys.executable, "-m", "launch.bench", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode == 0, out.stderr
  assert f"(default: '{TORCH_SCRIPT.resolve()}')" in out.stdout


def test_torch_script_help_without_torch():
  # --help is parsed before torch is imported, so it works on any machine.
  out = subprocess.run([sys.executable, str(TORCH_SCRIPT), "--help"], capture_output=True,
                       text=True, timeout=60, check=False)
  assert out.returncode == 0, out.stderr
  assert "image" in out.stdout and "ensemble" in out.stdout and "--mode" in out.stdout
  bad = subprocess.run([sys.executable, str(TORCH_SCRIPT), "image", "--mode", "vmap"],
                       capture_output=True, text=True, timeout=60, check=False)
  assert bad.returncode == 2 and "eager" in bad.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
@pytest.mark.parametrize("argv", [["image", "--mode", "eager", "--size", "8"],
                                  ["ensemble", "--mode", "vmap", "--models", "2",
                                   "--points", "8", "--width", "4"]])
def test_torch_script_tiny_run(argv):
  out = subprocess.run([sys.executable, str(TORCH_SCRIPT), *argv, "--steps", "2",
                        "--repeats", "1"], capture_output=True, text=True, timeout=300,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  rec = json.loads(out.stdout.strip().splitlines()[-1])
  assert rec["workload"] == argv[0] and rec["impl"] == f"torch-{argv[2]}"
  assert len(rec["rates"]) == 1 and all(r > 0 for r in rec["rates"])
