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

from nfscale import bench, cli, gpu_suite, io, models, profiles, roofline, train

import launching  # tests/launching.py

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
  rec = bench.bench_ensemble(
      steps=4, repeats=2, fast_sin=False, num_models=3, n=16, width=8, chunk_steps=2
  )
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
  np.testing.assert_allclose(
      y[100], np.sum(np.sin(np.array([2, 6, 10]) * np.pi * x[100])), rtol=1e-5
  )


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
  rec = bench.bench_ensemble(
      steps=2,
      repeats=1,
      num_models=2,
      n=8,
      width=4,
      compiler_options={},
      small_fan_in=0,
      engine_checks=False,
  )
  opts = rec["options"]
  assert opts["compiler_options"] is None and opts["small_fan_in"] == 0
  assert opts["engine_checks"] is False
  assert (train.CPU_COMPILER_OPTIONS, models.SMALL_FAN_IN, train._all_finite) == saved


def test_suite_commands_use_the_given_launcher_and_torch_script():
  cmds = bench.suite_commands(
      ["py", "-m", "nfscale.launch.bench"],
      "tpy",
      "w.py",
      ["image:compile", "ensemble:vmap"],
      None,
      3,
  )
  assert [c[:3] for c in cmds] == [
      ("nfscale", "image", True),
      ("nfscale", "image", False),
      ("torch", "image", "compile"),
      ("nfscale", "ensemble", True),
      ("nfscale", "ensemble", False),
      ("torch", "ensemble", "vmap"),
  ]
  assert cmds[2][3] == ["tpy", "w.py", "image", "--mode", "compile", "--steps=10", "--repeats=3"]
  assert cmds[3][3][:3] == ["py", "-m", "nfscale.launch.bench"] and "--steps=100" in cmds[3][3]


def test_make_bench_uses_the_script_in_the_repository():
  assert TORCH_SCRIPT.is_file()
  make = (ROOT / "Makefile").read_text()
  assert re.search(r"^TORCH_REF\s*\?=\s*benchmarks/torch_workloads.py$", make, re.M)
  # The launcher's default finds it too (a fresh clone, no flags).
  out = subprocess.run(
      [sys.executable, "-m", "launch.bench", "--help"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert out.returncode == 0, out.stderr
  assert f"(default: '{TORCH_SCRIPT.resolve()}')" in out.stdout


def test_torch_script_help_without_torch():
  # --help is parsed before torch is imported, so it works on any machine.
  out = subprocess.run(
      [sys.executable, str(TORCH_SCRIPT), "--help"],
      capture_output=True,
      text=True,
      timeout=60,
      check=False,
  )
  assert out.returncode == 0, out.stderr
  assert "image" in out.stdout and "ensemble" in out.stdout and "--mode" in out.stdout
  bad = subprocess.run(
      [sys.executable, str(TORCH_SCRIPT), "image", "--mode", "vmap"],
      capture_output=True,
      text=True,
      timeout=60,
      check=False,
  )
  assert bad.returncode == 2 and "eager" in bad.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
@pytest.mark.parametrize(
    "argv",
    [
        ["image", "--mode", "eager", "--size", "8"],
        ["ensemble", "--mode", "vmap", "--models", "2", "--points", "8", "--width", "4"],
    ],
)
def test_torch_script_tiny_run(argv):
  out = subprocess.run(
      [sys.executable, str(TORCH_SCRIPT), *argv, "--steps", "2", "--repeats", "1"],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  rec = json.loads(out.stdout.strip().splitlines()[-1])
  assert rec["workload"] == argv[0] and rec["impl"] == f"torch-{argv[2]}"
  assert len(rec["rates"]) == 1 and all(r > 0 for r in rec["rates"])


# --- precision, remat, roofline, profile and the GPU suite (issue: GPU speed vs PyTorch) ---


def test_records_carry_precision_remat_and_the_roofline_model():
  rec = bench.bench_image(steps=2, repeats=1, size=8, precision="bf16", remat="dots")
  assert rec["precision"] == "bf16" and rec["options"]["remat"] == "dots"
  assert rec["options"]["matmul_precision"] == "BF16_BF16_F32"
  assert rec["flops_per_step"] == roofline.step_flops(roofline.IMAGE_LAYERS, 64)
  assert rec["bytes_per_step"] == roofline.step_bytes(roofline.IMAGE_LAYERS, 64)
  assert rec["roofline"] is None  # the CPU has no entry in GPU_PEAKS
  assert rec["device_kind"] and rec["xla_cost"]["flops"] > 0
  assert math.isfinite(rec["final_psnr"])
  ens = bench.bench_ensemble(steps=2, repeats=1, num_models=2, n=8, width=4, precision="highest")
  assert ens["precision"] == "highest" and ens["flops_per_step"] == 6 * 8 * (4 + 4)
  # xla_cost counts one model's step too: twice the members, about the same per model.
  ens4 = bench.bench_ensemble(steps=2, repeats=1, num_models=4, n=8, width=4, precision="highest")
  assert ens4["xla_cost"]["flops"] == pytest.approx(ens["xla_cost"]["flops"], rel=0.05)
  # On the CPU "auto" runs the jax layers, so the record holds that byte model.
  auto = bench.bench_image(steps=2, repeats=1, size=8, fused="auto")
  assert auto["options"]["fused_impl"] == "jax"
  assert auto["bytes_per_step"] == roofline.step_bytes(roofline.IMAGE_LAYERS, 64)


def test_flops_model_is_the_pytorch_scripts_formula():
  size, width = 512, 256
  torch_formula = 3 * 2 * size * size * (2 * width + 2 * width * width + width * 3)
  assert roofline.step_flops(roofline.IMAGE_LAYERS, size * size) == torch_formula
  # 11 passes over the three (points x 256) float32 arrays.
  assert roofline.step_bytes(roofline.IMAGE_LAYERS, 100) == 11 * 4 * 100 * 768


def test_roofline_arithmetic_and_peaks():
  peaks = roofline.gpu_peaks("NVIDIA H200")
  assert peaks["name"] == "H200" and peaks["hbm"] == 4.8e12
  # Dense = half the with-sparsity figures of the datasheets (989 and 1979 TFLOP/s).
  assert peaks["tf32"] == pytest.approx(494.5e12)
  assert peaks["bf16"] == pytest.approx(2 * peaks["tf32"], rel=1e-3)
  assert roofline.gpu_peaks("NVIDIA H100 PCIe")["name"] == "H100 PCIe"
  assert roofline.gpu_peaks("NVIDIA H100 80GB HBM3")["hbm"] == 3.35e12
  assert roofline.gpu_peaks("TFRT_CPU_0") is None
  # The image workload at 512^2 on an H200 in TF32 is memory-bound by this model:
  # 2.08e11 FLOP / 494.5e12 = 0.42 ms < 8.86e9 bytes / 4.8e12 = 1.85 ms.
  f = roofline.roofline_fields("image", 305.0, "tf32", "NVIDIA H200", size=512)
  r = f["roofline"]
  assert r["bound"] == "memory" and r["peak"] == "tf32"
  assert r["roofline_steps_per_s"] == pytest.approx(4.8e12 / f["bytes_per_step"])
  assert r["roofline_fraction"] == pytest.approx(305.0 * f["bytes_per_step"] / 4.8e12)
  assert r["achieved_tflops"] == pytest.approx(63.5, abs=0.1)  # the issue's ~63 TFLOP/s
  # Full float32 runs against the 67 TFLOP/s non-tensor-core peak: compute-bound.
  assert (
      roofline.roofline_fields("image", 100.0, "highest", "NVIDIA H200", size=512)["roofline"][
          "bound"
      ]
      == "compute"
  )
  # The fused layers' recomputation (a third more matmul work) is in their compute
  # term: in float32 it makes their bound the lower one, in TF32 their bytes win.
  fused = roofline.roofline_fields("image", 100.0, "highest", "NVIDIA H200", 512, fused="pallas")
  extra = roofline.recompute_flops(roofline.IMAGE_LAYERS, 512 * 512)
  assert fused["flops_per_step"] == roofline.step_flops(roofline.IMAGE_LAYERS, 512 * 512)
  assert fused["roofline"]["roofline_steps_per_s"] == pytest.approx(
      67e12 / (fused["flops_per_step"] + extra)
  )
  bounds = {
      (r["precision"], r["layers"]): r["bound_steps_per_s"]
      for r in roofline.image_bounds("H200", sizes=[512])
  }
  assert bounds["highest", "fused=pallas"] < bounds["highest", "plain"]
  assert bounds["tf32", "fused=pallas"] > 1.5 * bounds["tf32", "plain"]


@pytest.mark.parametrize(
    "impl, tiles", [("plain", None), ("jax", None), ("pallas", "16x32x16/2/1")]
)
def test_layer_workload_tiny(impl, tiles):
  rec = bench.bench_layer(impl, tiles, rows=40, width=24, steps=2, repeats=2)
  assert rec["workload"] == "layer" and rec["options"]["layer_impl"] == impl
  assert rec["options"]["tiles"] == tiles and len(rec["rates"]) == 2
  # The unit's output against the plain one's (Pallas in interpret mode here): float
  # rounding only, at omega = 30 (see tests/test_fused.py for the tolerance).
  assert rec["max_abs_diff"] < 3e-5
  assert rec["gflops"] == pytest.approx(12 * 40 * 24 * 24 * rec["steps_per_s"] / 1e9)


def test_layer_workload_refuses_bad_settings():
  with pytest.raises(ValueError, match="layer impl"):
    bench.bench_layer("triton", rows=8, width=8)
  with pytest.raises(ValueError, match="power of two"):
    bench.bench_layer("pallas", "48x64x32", rows=8, width=8)


def test_benchmarks_run_without_the_packages_gpu_images_lack():
  # The lent GPU machines' image has jax, flax, optax, absl-py, scikit-image and
  # torch but not dm-pix, ml_collections, orbax or trimesh: the GPU suite's nfscale
  # side must import and run without them, or a short GPU slot is spent on wheels.
  code = (
      "import sys\n"
      "for m in ('dm_pix', 'ml_collections', 'orbax', 'orbax.checkpoint', 'trimesh'):\n"
      "  sys.modules[m] = None\n"
      "import launch.bench\n"
      "from nfscale import bench\n"
      "print(bench.bench_image(steps=1, repeats=1, size=8)['steps_per_s'] > 0)\n"
      "print(bench.bench_layer('jax', rows=32, width=16, steps=1, repeats=1)['steps_per_s'] > 0)\n"
  )
  out = subprocess.run(
      _py(code), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["True", "True"]


def test_gpu_suite_plan_pairs_both_sides_at_one_precision():
  plan = gpu_suite.gpu_suite_plan(
      ["nf"], ["tp", "w.py"], "out", sizes=[256, 512], precisions=["tf32", "highest"]
  )
  labels = [p["label"] for p in plan]
  # Every image cell: nfscale, nfscale with the fused Pallas layers, PyTorch.
  assert labels[:8] == [
      "image 256 tf32 nfscale",
      "image 256 tf32 nfscale fused=pallas",
      "image 256 tf32 torch",
      "image 512 tf32 nfscale",
      "image 512 tf32 nfscale fused=pallas",
      "image 512 tf32 torch",
      "profile image 512 tf32",
      "profile image 512 tf32 fused=pallas",
  ]
  assert "image 512 highest nfscale fused=pallas" in labels
  # max-autotune, the slowest mode to start, runs per cell after all cells and ensembles.
  assert labels[-8:-4] == [
      f"image {s} {p} torch max-autotune" for p in ("tf32", "highest") for s in (256, 512)
  ]
  assert labels.index("ensemble highest torch") < labels.index("image 256 tf32 torch max-autotune")
  assert labels[-4:] == [
      "image 512 tf32 nfscale remat=dots",
      "image 512 tf32 nfscale nofast_sin",
      "image 512 tf32 nfscale nofast_sin fused=jax",
      "layer 512 tf32",
  ]
  # A variant of several flags passes each as its own argument.
  assert plan[-2]["argv"][-4:-2] == ["--nofast_sin", "--fused=jax"]
  # The layer run: the 512^2 image's rows, every tiling of the list in one process.
  layer = plan[-1]["argv"]
  assert "--workload=layer" in layer and f"--layer_rows={512 * 512}" in layer
  assert f"--tiles={','.join(gpu_suite.GPU_LAYER_TILES)}" in layer
  for p in plan:
    words = p["label"].split()
    prec = words[2] if words[0] in ("image", "layer") else words[1]
    if p["label"].startswith("profile"):
      prec = p["label"].split()[3]
    argv = " ".join(p["argv"])
    assert f"--precision={prec}" in argv or f"--precision {prec}" in argv, p
  torch_img = plan[2]["argv"]
  assert torch_img[torch_img.index("--mode") + 1] == "eager,compile,reduce-overhead"
  late = plan[labels.index("image 512 highest torch max-autotune")]["argv"]
  assert late[late.index("--mode") + 1] == "max-autotune" and "512" in late and "highest" in late
  ens = [p for p in plan if p["label"] == "ensemble tf32 torch"][0]["argv"]
  assert ens[ens.index("--mode") + 1] == "vmap,vmap-compile"
  assert any(a.startswith("--profile_dir=out") for a in plan[6]["argv"])
  no_torch = gpu_suite.gpu_suite_plan(["nf"], None, "out", sizes=[8], precisions=["tf32"])
  assert all(p["impl"] != "torch" for p in no_torch)
  with pytest.raises(ValueError, match="valid precisions"):
    gpu_suite.gpu_suite_plan(["nf"], None, "out", precisions=["fp8"])
  with pytest.raises(ValueError, match="only image modes"):
    gpu_suite.gpu_suite_plan(["nf"], None, "out", late_torch_modes=["ensemble:vmap"])


def _py(code):
  return [sys.executable, "-c", code]


def test_run_plan_appends_lines_keeps_partial_output_and_honours_the_budget(tmp_path):
  out = tmp_path / "s.jsonl"
  line = 'import json; print(json.dumps({"workload": "image", "impl": "x", "rates": [1.0]}))'
  plan = [
      {"label": "a", "impl": "x", "argv": _py(line), "timeout_s": 60},
      {"label": "b", "impl": "x", "argv": _py(line + "; import sys; sys.exit(3)"), "timeout_s": 60},
      # Prints a line, then hangs: stopped at its timeout with the line kept.
      {
          "label": "c",
          "impl": "x",
          "argv": _py(line + "; import sys, time; sys.stdout.flush(); time.sleep(60)"),
          "timeout_s": 3,
      },
  ]
  recs = gpu_suite.run_plan(plan, str(out), budget_s=100)
  assert [r["label"] for r in recs] == ["a", "b", "b", "c", "c"]
  assert recs[2]["status"] == "failed (exit 3)" and recs[1]["rates"] == [1.0]
  assert recs[4]["status"].startswith("stopped after") and recs[3]["rates"] == [1.0]
  assert len(out.read_text().splitlines()) == 5
  other = tmp_path / "other.jsonl"
  other.write_text(out.read_text())
  skipped = gpu_suite.run_plan(plan[1:2], str(other), budget_s=-1)
  # Skipped this time: b's earlier attempt (its line and its failure) is still what b has.
  assert [r.get("status") for r in skipped] == [None, "failed (exit 3)", "skipped (time budget)"]
  assert len(other.read_text().splitlines()) == 6  # appended, not overwritten


def test_run_plan_resumes_and_keeps_only_runs_that_ended_well(tmp_path):
  out, log = tmp_path / "s.jsonl", tmp_path / "ran.txt"

  def run(label, code):
    # Each run notes that it ran, then prints its line.
    note = f"open({str(log)!r}, 'a').write({label!r}); "
    line = 'import json; print(json.dumps({"workload": "image", "impl": "x", "rates": [1.0]}))'
    return {"label": label, "impl": "x", "argv": _py(note + line + code), "timeout_s": 60}

  plan = [run("a", ""), run("b", "; import sys; sys.exit(3)"), run("c", "")]
  first = gpu_suite.run_plan(plan[:2], str(out), budget_s=100)
  with open(out, "ab") as f:
    f.write(b'{"label": "c", "torn')  # a call killed mid-line
  plan[1] = run("b", "")  # fixed
  second = gpu_suite.run_plan(plan, str(out), budget_s=100)
  # a ended well and is kept, b failed and runs again, c never finished and runs.
  assert log.read_text() == "ab" + "bc"
  assert [r["label"] for r in second] == ["a", "b", "c"]
  assert second[0] == first[0] and "status" not in second[1]
  assert len({r["attempt"] for r in second}) == 2
  # A changed command is a different run: it runs again.
  plan[0] = run("a", "; print()")
  gpu_suite.run_plan(plan, str(out), budget_s=100)
  assert log.read_text() == "abbc" + "a"
  assert len(io.read_jsonl(out)) == 3 + 2 + 1  # every attempt's lines kept
  # Another machine (a different GPU model) runs everything again.
  other = gpu_suite.run_plan(plan, str(out), budget_s=100, machine="NVIDIA H100 80GB HBM3")
  assert log.read_text() == "abbca" + "abc" and {r["machine"] for r in other} == {
      "NVIDIA H100 80GB HBM3"
  }


def test_gpu_summary_ratios_and_roofline_fractions():
  kind = "NVIDIA H200"
  recs = [
      {
          "workload": "image",
          "impl": "nfscale",
          "size": 512,
          "precision": "tf32",
          "options": {"remat": "none"},
          "rates": [300.0, 310.0, 305.0],
          "device_kind": kind,
      },
      {
          "workload": "image",
          "impl": "nfscale",
          "size": 512,
          "precision": "tf32",
          "options": {"remat": "dots"},
          "rates": [320.0],
          "device_kind": kind,
      },
      {
          "workload": "image",
          "impl": "torch-compile",
          "size": 512,
          "precision": "tf32",
          "rates": [338.0],
          "device_kind": kind,
      },
      {
          "workload": "image",
          "impl": "torch-eager",
          "size": 512,
          "precision": "tf32",
          "rates": [200.0],
          "device_kind": kind,
      },
      {
          "workload": "image",
          "impl": "nfscale",
          "size": 512,
          "precision": "tf32",
          "options": {"remat": "none"},
          "rates": [1.0],
          "profile": {"top": []},
      },  # not timed
      {
          "workload": "image",
          "impl": "nfscale",
          "size": 512,
          "precision": "tf32",
          "options": {"remat": "none", "fast_sin": False},
          "rates": [250.0],
          "device_kind": kind,
      },
      {
          "workload": "image",
          "impl": "nfscale",
          "size": 512,
          "precision": "tf32",
          "options": {"remat": "none", "fast_sin": False, "fused": "pallas"},
          "rates": [400.0],
          "device_kind": kind,
      },
      {"label": "x", "status": "skipped (time budget)"},
  ]
  rows = gpu_suite.gpu_summary(recs)
  assert [r["nfscale_variant"] for r in rows] == [
      "default",
      "remat=dots",
      "XLA sin",
      "XLA sin, fused=pallas",
  ]
  # The fused layers are held to the bytes they move: 7 passes, not 11.
  fused_bytes = roofline.step_bytes(roofline.IMAGE_LAYERS, 512 * 512, passes=7)
  assert rows[3]["nfscale_roofline"] == pytest.approx(400 * fused_bytes / 4.8e12)
  row = rows[0]
  assert row["best_torch"] == "torch-compile" and row["ratio"] == pytest.approx(305 / 338)
  nbytes = roofline.step_bytes(roofline.IMAGE_LAYERS, 512 * 512)
  assert row["nfscale_roofline"] == pytest.approx(305 * nbytes / 4.8e12)
  assert row["torch_roofline"] == pytest.approx(338 * nbytes / 4.8e12)
  assert row["bound"] == "memory"
  table = gpu_suite.format_gpu_summary(rows)
  assert "**0.90x**" in table and "compile 338" in table
  # The targets table: per cell, nfscale's best configuration (XLA sin + fused, 400)
  # against the best PyTorch mode; a cell where PyTorch never ran says so.
  torch_only = {"workload": "image", "impl": "torch-eager", "size": 256, "precision": "tf32"}
  nf_only = {"workload": "image", "impl": "nfscale", "size": 256, "precision": "highest"}
  rows += gpu_suite.gpu_summary([{**torch_only, "rates": [9.0]}, {**nf_only, "rates": [5.0]}])
  lines = gpu_suite.format_targets(rows).splitlines()[2:]
  assert lines[0].startswith("| image | 512 | tf32 | XLA sin, fused=pallas | 400 | 338 (compile) ")
  assert "| 1.18x | no |" in lines[0]
  assert lines[1].startswith("| image | 256 | tf32 | (none) | not run | 9 (eager) |  |  | - / - |")
  assert lines[2].startswith("| image | 256 | highest | default | 5 | not run |  |  |")
  assert "yes" in gpu_suite.format_targets(rows, target=1.1).splitlines()[2]


def test_profile_summary_of_a_cpu_trace(tmp_path):
  rec = bench.bench_image(steps=2, repeats=1, size=8, trace_dir=str(tmp_path))
  prof = rec["profile"]
  assert prof["source"] == "cpu" and prof["top"] and prof["busy_us_per_step"] > 0
  assert sum(prof["by_category"].values()) == pytest.approx(1.0)
  assert not any(name.startswith("ThunkExecutor") for name, _, _ in prof["top"])
  assert "us of kernels per step" in profiles.format_profile(prof)


def test_profile_summary_picks_the_gpu_stream_lanes(tmp_path):
  # A perfetto trace shaped like a GPU one: kernels on a stream lane, the same time
  # again on an "XLA Ops" lane (must not be counted twice), host events elsewhere.
  events = [
      {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "name": "thread_name", "pid": 1, "tid": 7, "args": {"name": "Stream #13"}},
      {"ph": "M", "name": "thread_name", "pid": 1, "tid": 8, "args": {"name": "XLA Ops"}},
      {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
      {"ph": "X", "pid": 1, "tid": 7, "name": "sm90_xmma_gemm_f32f32", "dur": 30.0},
      {"ph": "X", "pid": 1, "tid": 7, "name": "loop_sine_fusion", "dur": 60.0},
      {"ph": "X", "pid": 1, "tid": 7, "name": "loop_sine_fusion", "dur": 10.0},
      {"ph": "X", "pid": 1, "tid": 8, "name": "fusion.3", "dur": 100.0},
      {"ph": "X", "pid": 2, "tid": 1, "name": "PjitFunction", "dur": 500.0},
  ]
  d = tmp_path / "plugins" / "profile" / "t"
  d.mkdir(parents=True)
  import gzip

  with gzip.open(d / "perfetto_trace.json.gz", "wt") as f:
    json.dump({"traceEvents": events}, f)
  prof = profiles.summarize_trace(str(tmp_path), steps=2)
  assert prof["source"] == "gpu" and prof["busy_us_per_step"] == 50.0
  assert prof["by_category"] == {"elementwise/reduction": 0.7, "matmul": 0.3}
  assert prof["top"][0] == ["loop_sine_fusion", 35.0, 0.7]
  with pytest.raises(ValueError, match="no perfetto_trace"):
    profiles.summarize_trace(str(tmp_path / "plugins" / "profile" / "none"))


def test_torch_script_precision_flag_without_torch():
  bad = subprocess.run(
      [sys.executable, str(TORCH_SCRIPT), "image", "--precision", "fp8"],
      capture_output=True,
      text=True,
      timeout=60,
      check=False,
  )
  assert bad.returncode == 2 and "highest" in bad.stderr and "bf16" in bad.stderr
  both = subprocess.run(
      [sys.executable, str(TORCH_SCRIPT), "image", "--tf32", "--precision", "bf16"],
      capture_output=True,
      text=True,
      timeout=60,
      check=False,
  )
  assert both.returncode == 2 and "contradicts" in both.stderr
  spec = importlib.util.spec_from_file_location("torch_workloads", TORCH_SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  args = mod.parse_args(["image", "--mode", "eager,max-autotune", "--tf32"])
  assert args.modes == ["eager", "max-autotune"] and args.precision == "tf32"
  assert mod.PRECISIONS == ("highest", "tf32", "bf16")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_script_modes_and_bf16_tiny_run():
  out = subprocess.run(
      [
          sys.executable,
          str(TORCH_SCRIPT),
          "image",
          "--mode",
          "eager,eager",
          "--size",
          "8",
          "--precision",
          "bf16",
          "--steps",
          "2",
          "--repeats",
          "1",
      ],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  recs = [json.loads(s) for s in out.stdout.splitlines() if s.startswith("{")]
  assert len(recs) == 2 and all(r["precision"] == "bf16" for r in recs)


def _gpu_suite_cli(out_dir, *flags):
  """``launch.bench --gpu_suite`` at one tiny size and precision, into ``out_dir``."""
  argv = [sys.executable, "-m", "launch.bench", "--gpu_suite", f"--out_dir={out_dir}"]
  argv += ["--gpu_sizes=8", "--gpu_precisions=tf32", f"--torch_python={sys.executable}"]
  argv += ["--allow_cpu", *flags]
  out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]


def test_gpu_suite_cli_with_no_time_left_skips_every_run(tmp_path):
  # The launcher's own code (plan, budget, summary files) in a few seconds: with a
  # budget already spent every run is skipped and reported. The end-to-end run
  # below is slow-marked; this keeps the launcher itself in the default suite.
  _gpu_suite_cli(tmp_path, "--budget_s=-1")
  recs = [json.loads(s) for s in (tmp_path / "gpu_suite.jsonl").read_text().splitlines()]
  torch_cmd = ["torch"] if importlib.util.find_spec("torch") else None  # as the launcher finds
  plan = gpu_suite.gpu_suite_plan(["nf"], torch_cmd, "out", sizes=[8], precisions=["tf32"])
  assert [r["label"] for r in recs] == [p["label"] for p in plan]
  assert all(r["status"] == "skipped (time budget)" for r in recs)
  summary = (tmp_path / "summary.md").read_text()
  assert "- layer 8 tf32: skipped (time budget)" in summary


@pytest.mark.slow
def test_gpu_suite_cli_end_to_end_without_torch(tmp_path):
  # The suite's launcher on the CPU at a tiny size (about a minute): torch is absent here, so
  # only the nfscale runs, the profile and the summary files are checked.
  _gpu_suite_cli(tmp_path, "--models=2", "--steps=2", "--repeats=1", "--ensemble_steps=2")
  recs = [json.loads(s) for s in (tmp_path / "gpu_suite.jsonl").read_text().splitlines()]
  labels = [r["label"] for r in recs]
  layer_runs = 2 + len(gpu_suite.GPU_LAYER_TILES)  # plain, jax, then pallas per tiling
  assert labels == [
      "image 8 tf32 nfscale",
      "image 8 tf32 nfscale fused=pallas",
      "profile image 8 tf32",
      "profile image 8 tf32 fused=pallas",
      "ensemble tf32 nfscale",
      "image 8 tf32 nfscale remat=dots",
      "image 8 tf32 nfscale nofast_sin",
      "image 8 tf32 nfscale nofast_sin fused=jax",
      *["layer 8 tf32"] * layer_runs,
  ]
  assert all("status" not in r for r in recs), [r for r in recs if "status" in r]
  assert recs[2]["profile"]["top"] and recs[3]["profile"]["top"]
  # Both profiles, each under its run's label; the fused kernels counted apart.
  profile_md = (tmp_path / "profile.md").read_text()
  assert "## profile image 8 tf32\n" in profile_md
  assert "## profile image 8 tf32 fused=pallas\n" in profile_md
  summary = (tmp_path / "summary.md").read_text()
  assert "| image | 8 | tf32 | default |" in summary and "| remat=dots |" in summary
  assert "| XLA sin |" in summary and "| fused=pallas |" in summary
  # The layer table: every Pallas tiling, its rate against the plain unit's.
  assert "One hidden sine layer alone" in summary
  for tiles in gpu_suite.GPU_LAYER_TILES:
    assert f"| pallas | {tiles} |" in summary
  if importlib.util.find_spec("torch") is None:
    assert "cannot import torch" in summary


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--workload=ensemble", "--steps=-5"], "--steps=-5"),  # it timed -5 steps
        (["--workload=layer", "--repeats=0"], "--repeats=0"),  # a NaN median
        (["--workload=image", "--size=0"], "--size=0"),  # a skimage traceback
        (["--workload=layer", "--layer_width=0"], "--layer_width=0"),  # ZeroDivisionError
        (["--gpu_suite", "--out_dir=OUT"], "JAX sees cpu"),  # ran a meaningless table
        (["--gpu_suite", "--allow_cpu", "--gpu_sizes=0", "--out_dir=OUT"], "--gpu_sizes=0"),
        (["--suite", "--size=8", "--precision=highest"], "--size, --precision"),  # ignored
    ],
)
def test_bench_bad_input_is_one_line_before_any_run(args, needle, tmp_path):
  argv = [a.replace("OUT", str(tmp_path / "gs")) for a in args]
  out = launching.launch("bench", *argv)
  launching.assert_one_line_error(out, needle)
  assert out.stderr.splitlines()[-1] == cli.FLAGS_HINT  # bench takes no config
  assert not (tmp_path / "gs").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is here")
def test_suite_without_torch_stops_before_the_nfscale_runs(tmp_path):
  # It ran the nfscale side, then failed on the first PyTorch run and lost every record.
  out = launching.launch("bench", "--suite", f"--out={tmp_path / 's.jsonl'}")
  launching.assert_one_line_error(out, "cannot import torch", "--torch_modes=")
  assert not (tmp_path / "s.jsonl").exists()


def test_summary_table_without_ratios_is_well_formed():
  s = bench.summarize(
      [{"workload": "image", "impl": "nfscale", "options": {"fast_sin": True}, "rates": [2.0]}]
  )
  head, rule, row = bench.format_summary(s).splitlines()
  assert head.count("|") == rule.count("|") == row.count("|") == 4  # 3 columns, no "vs"
