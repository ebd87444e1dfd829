"""launch.bench on tiny sizes: the JSON records' fields, and that training really ran."""

import json
import math
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
from launch import bench  # noqa: E402

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
  rec = bench.bench_ensemble(steps=4, repeats=2, fast_sin=False, models_=3, n=16, width=8,
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
  # Row-major (y, x) pixel grid with x first, as torch_reference.py builds it.
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
