"""The GPU comparison of nfscale and PyTorch: the plan of runs, running it, the summary.

Each run is its own process (``launch.bench`` for nfscale,
``benchmarks/torch_workloads.py`` for PyTorch), so one side's compilation caches and
memory never help or hurt the other; :func:`run_plan` keeps every JSON line as it
comes and stops starting runs at a time budget, and :func:`gpu_summary` pairs the
sides per size and precision with their fractions of the roofline
(:mod:`nfscale.roofline`). ``benchmarks/gpu_suite.sh`` is the one command.

Example:
  >>> [p["label"] for p in gpu_suite_plan(["nf"], None, "out", sizes=[8], precisions=["tf32"],
  ...                                     cell_variants=[], variants=[], profile=False)]
  ['image 8 tf32 nfscale', 'ensemble tf32 nfscale', 'layer 8 tf32']
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

from nfscale import io, profiles, train
from nfscale.roofline import roofline_fields

GPU_SIZES = (256, 512)
GPU_PRECISIONS = ("tf32", "highest")
GPU_TORCH_MODES = (
    "image:eager",
    "image:compile",
    "image:reduce-overhead",
    "image:max-autotune",
    "ensemble:vmap",
    "ensemble:vmap-compile",
)
#: PyTorch modes that run after every (size, precision) cell and ensemble has run once:
#: ``max-autotune`` benchmarks GEMM templates while it compiles, the slowest start of
#: all, and a suite cut short by its time budget should lose it before it loses a cell.
GPU_TORCH_LATE_MODES = ("image:max-autotune",)
#: Steps per timed repeat on a GPU (a 512^2 image step is ~3 ms there; an ensemble step
#: of 64 models ~40 us): enough for each repeat to last tens of milliseconds.
GPU_IMAGE_STEPS, GPU_ENSEMBLE_STEPS = 50, 1000
#: Tiles of the fused Pallas kernels that the layer run compares (``launch.bench
#: --workload=layer``): the default first, then a deeper pipeline, then 128-row and
#: 128-unit tiles with 8 warps. Compiled for sm_90 without a GPU
#: (``benchmarks/triton_compile.py``), none of these spills registers; 128-row or
#: 128-unit tiles with 4 warps, and 128 x 128 tiles, do, in the backward kernels.
GPU_LAYER_TILES = ("64x64x32/4/2", "64x64x32/4/3", "128x64x32/8/3", "64x128x32/8/3")


def gpu_suite_plan(
    nfscale_cmd: Sequence[str],
    torch_cmd: Sequence[str] | None,
    out_dir: str,
    *,
    sizes: Sequence[int] = GPU_SIZES,
    precisions: Sequence[str] = GPU_PRECISIONS,
    torch_modes: Sequence[str] = GPU_TORCH_MODES,
    late_torch_modes: Sequence[str] = GPU_TORCH_LATE_MODES,
    image_steps: int = GPU_IMAGE_STEPS,
    ensemble_steps: int = GPU_ENSEMBLE_STEPS,
    repeats: int = 5,
    models: int = 64,
    torch_device: str = "cuda",
    cell_variants: Sequence[str] = ("--fused=pallas",),
    variants: Sequence[str] = ("--remat=dots", "--nofast_sin", "--nofast_sin --fused=jax"),
    profile: bool = True,
    layer_tiles: Sequence[str] = GPU_LAYER_TILES,
) -> list[dict[str, Any]]:
  """The runs of the GPU suite, most important first, each its own process.

  Per precision (in the given order): per image size, nfscale, nfscale with each of
  ``cell_variants``, then PyTorch (its image modes in one process); then the ensemble
  likewise; after the first precision's image runs, profiled nfscale runs at the
  largest size (default and each of ``cell_variants``). Then each of
  ``late_torch_modes`` that ``torch_modes`` holds, per cell in the same order; then
  nfscale with each of ``variants`` at the largest size and first precision; last, the
  layer run.

  Args:
    nfscale_cmd: argv prefix of this package's bench launcher.
    torch_cmd: argv prefix of ``benchmarks/torch_workloads.py`` (``None``: no PyTorch).
    out_dir: where the profile goes (``out_dir/trace``).
    sizes, precisions, torch_modes: what to compare (``workload:mode``).
    late_torch_modes: those of ``torch_modes`` that run in processes of their own
      after every cell (default: ``max-autotune``, see :data:`GPU_TORCH_LATE_MODES`).
    image_steps, ensemble_steps, repeats: timing of every run, both sides alike.
    models: ensemble members.
    torch_device: ``--device`` of the PyTorch runs.
    cell_variants: nfscale image runs in every (size, precision) cell, one per entry
      of space-separated launcher flags (default: the fused Pallas sine layers, the
      configuration the byte model says can reach the targets).
    variants: nfscale image runs at the largest size and first precision only (e.g.
      ``--remat=dots``; ``--nofast_sin``: XLA's own sine instead of the activations'
      fast one).
    profile: include the profiled run.
    layer_tiles: after the variants, one hidden sine layer and its successor's
      matmul alone (``bench.bench_layer``) at the largest size and first
      precision: plain, the fused ``jax`` layers and the Pallas kernels with
      each of these tiles (empty: no layer run).

  Returns:
    ``{"label", "impl", "argv", "timeout_s"}`` per run.

  >>> plan = gpu_suite_plan(["nf"], ["tp"], "out", sizes=[8], precisions=["tf32"],
  ...                       torch_modes=["image:eager", "image:max-autotune"],
  ...                       variants=[], profile=False)
  >>> [p["label"] for p in plan]  # doctest: +NORMALIZE_WHITESPACE
  ['image 8 tf32 nfscale', 'image 8 tf32 nfscale fused=pallas', 'image 8 tf32 torch',
   'ensemble tf32 nfscale', 'image 8 tf32 torch max-autotune', 'layer 8 tf32']
  >>> " ".join(plan[2]["argv"])
  'tp image --mode eager --precision tf32 --size 8 --device cuda --steps 50 --repeats 5'
  """
  for p in precisions:
    train.matmul_precision(p)  # a bad precision fails before anything runs
  if any(not tm.startswith("image:") for tm in late_torch_modes):
    raise ValueError(f"late_torch_modes={list(late_torch_modes)}: only image modes can run late.")
  late = [tm for tm in torch_modes if tm in late_torch_modes]
  modes = {
      wl: [tm.partition(":")[2] for tm in torch_modes if tm.startswith(wl + ":") and tm not in late]
      for wl in ("image", "ensemble")
  }
  timing = ["--repeats", str(repeats)]
  plan: list[dict[str, Any]] = []

  def add(label, impl, argv, timeout_s):
    plan.append({"label": label, "impl": impl, "argv": list(argv), "timeout_s": timeout_s})

  def add_image(size, prec, variant=""):
    flags = variant.split()  # a variant may set several flags ("--nofast_sin --fused=jax")
    add(
        " ".join([f"image {size} {prec} nfscale", *(f.lstrip("-") for f in flags)]),
        "nfscale",
        [
            *nfscale_cmd,
            "--workload=image",
            f"--size={size}",
            f"--precision={prec}",
            *flags,
            f"--steps={image_steps}",
            f"--repeats={repeats}",
        ],
        180,
    )

  def add_torch_image(size, prec, image_modes, label):
    argv = [*torch_cmd, "image", "--mode", ",".join(image_modes), "--precision", prec]
    argv += ["--size", str(size), "--device", torch_device, "--steps", str(image_steps)]
    add(label, "torch", [*argv, *timing], 420)

  for i, prec in enumerate(precisions):
    for size in sizes:
      for variant in ("", *cell_variants):
        add_image(size, prec, variant)
      if torch_cmd and modes["image"]:
        add_torch_image(size, prec, modes["image"], f"image {size} {prec} torch")
    for variant in ("", *cell_variants) if i == 0 and profile else ():
      words = [f.lstrip("-") for f in variant.split()]
      trace = "_".join(["trace", *(w.replace("=", "_") for w in words)])
      add(
          " ".join([f"profile image {max(sizes)} {prec}", *words]),
          "profile",
          [
              *nfscale_cmd,
              "--workload=image",
              f"--size={max(sizes)}",
              f"--precision={prec}",
              *variant.split(),
              "--steps=5",
              "--repeats=2",
              f"--profile_dir={os.path.join(out_dir, trace)}",
          ],
          180,
      )
    add(
        f"ensemble {prec} nfscale",
        "nfscale",
        [
            *nfscale_cmd,
            "--workload=ensemble",
            f"--models={models}",
            f"--precision={prec}",
            f"--steps={ensemble_steps}",
            f"--repeats={repeats}",
        ],
        180,
    )
    if torch_cmd and modes["ensemble"]:
      add(
          f"ensemble {prec} torch",
          "torch",
          [
              *torch_cmd,
              "ensemble",
              "--mode",
              ",".join(modes["ensemble"]),
              "--precision",
              prec,
              "--models",
              str(models),
              "--device",
              torch_device,
              "--steps",
              str(ensemble_steps),
              *timing,
          ],
          300,
      )
  for mode in [tm.partition(":")[2] for tm in late] if torch_cmd else []:
    for prec in precisions:
      for size in sizes:
        add_torch_image(size, prec, [mode], f"image {size} {prec} torch {mode}")
  for variant in variants:
    add_image(max(sizes), precisions[0], variant)
  if layer_tiles:
    add(
        f"layer {max(sizes)} {precisions[0]}",
        "nfscale",
        [
            *nfscale_cmd,
            "--workload=layer",
            f"--layer_rows={max(sizes) ** 2}",
            "--layer_impls=plain,jax,pallas",
            f"--tiles={','.join(layer_tiles)}",
            f"--precision={precisions[0]}",
            f"--repeats={repeats}",
        ],
        240,
    )
  return plan


def _earlier_runs(path: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
  """The lines of an earlier suite in ``path``: per label, per attempt, in file order."""
  runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
  for rec in io.read_jsonl(path, missing_ok=True):
    if isinstance(rec, dict) and "label" in rec:
      runs.setdefault(rec["label"], {}).setdefault(rec.get("attempt", ""), []).append(rec)
  return runs


def _last_that_ran(attempts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
  ran = [
      recs
      for recs in attempts.values()
      if not all(str(r.get("status", "")).startswith("skipped") for r in recs)
  ]
  return ran[-1] if ran else []


def machine_kind() -> str:
  """What the suite's numbers depend on: the GPU's name, else the CPU's (no JAX needed).

  Asked of ``nvidia-smi`` so that the launcher never opens the GPU itself (JAX would
  take most of its memory away from the runs).

  >>> isinstance(machine_kind(), str)
  True
  """
  try:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    names = out.stdout.split("\n") if out.returncode == 0 else []
  except (OSError, subprocess.TimeoutExpired):
    names = []
  return names[0].strip() if names and names[0].strip() else f"cpu {platform.machine()}"


def run_plan(
    plan: Sequence[dict[str, Any]],
    out: str,
    budget_s: float = 480.0,
    grace_s: float = 60.0,
    machine: str = "",
) -> list[dict[str, Any]]:
  """Runs :func:`gpu_suite_plan`'s runs in order; appends every JSON line to ``out`` at once.

  No run starts after ``budget_s`` seconds, and none runs past ``budget_s + grace_s``
  (a run stopped there keeps the lines it printed). Each line gets the run's ``label``,
  its ``argv`` (one string), ``attempt`` (when this call started) and ``machine``; a
  skipped, failed or stopped run adds a line ``{"label", "status", ...}``.

  Calling it again with the same ``out`` resumes: a run whose last attempt there had the
  same command, ran on the same ``machine`` (e.g. :func:`machine_kind`: another GPU
  model's numbers are not mixed in) and ended well is not run again, and its lines are
  returned as they are. So a suite cut short by its budget (or killed) is finished by
  the same command, on a machine lent in short slots. ``out`` is only ever appended to.

  Returns:
    Per run of ``plan``, in order, the lines of its last attempt that ran (with this
    call's line if it was skipped again).
  """
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  earlier = _earlier_runs(out)
  attempt = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
  t_start, records = time.perf_counter(), []
  for run in plan:
    label, argv = run["label"], shlex.join(run["argv"])
    before = _last_that_ran(earlier.get(label, {}))
    elapsed = time.perf_counter() - t_start
    same = before and (before[0].get("argv"), before[0].get("machine")) == (argv, machine)
    if same and not any("status" in r for r in before):
      sys.stderr.write(
          f"[{elapsed:6.0f} s] {label}: done in an earlier call ({before[0]['attempt']})\n"
      )
      records.extend(before)
      continue
    recs: list[dict[str, Any]]
    if elapsed > budget_s:
      recs = [{"label": label, "status": "skipped (time budget)"}]
    else:
      timeout = max(1.0, min(run["timeout_s"], budget_s + grace_s - elapsed))
      sys.stderr.write(f"[{elapsed:6.0f} s] {label}: $ {argv}\n")
      t0 = time.perf_counter()
      status, stdout, stderr = "ok", "", ""
      try:
        done = subprocess.run(
            run["argv"], capture_output=True, text=True, check=False, timeout=timeout
        )
        stdout, stderr = done.stdout, done.stderr
        if done.returncode:
          status = f"failed (exit {done.returncode})"
      except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        status = f"stopped after {timeout:.0f} s"
      recs = [
          dict(json.loads(line), label=label)
          for line in stdout.splitlines()
          if line.startswith("{")
      ]
      if status != "ok":
        sys.stderr.write(stderr[-2000:])
        recs.append({"label": label, "status": status, "stderr": stderr[-1500:]})
      for rec in recs:
        rec.setdefault("wall_s", time.perf_counter() - t0)
      before = []  # this attempt ran: its lines replace the earlier ones
    for rec in recs:
      rec.update(argv=argv, attempt=attempt, machine=machine)
      io.append_jsonl(out, rec)
    records.extend([*before, *recs])
  return records


def _median_rate(rec: dict[str, Any]) -> float:
  return float(statistics.median(rec["rates"]))


def gpu_summary(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per (workload, size, precision, nfscale variant): rates, ratio, roofline.

  The variant is ``default`` (the bench defaults: fast sine, no remat), else what
  differs (``remat=dots``, ``XLA sin``).

  ``ratio`` is nfscale's median rate over the best PyTorch mode's; ``*_roofline`` the
  fraction of the roofline rate (:func:`nfscale.roofline.roofline`) each side reached, against the peaks
  of the records' GPU (``None`` off the GPUs of :data:`nfscale.roofline.GPU_PEAKS`).

  >>> rows = gpu_summary([
  ...     {"workload": "image", "impl": "nfscale", "size": 8, "precision": "tf32",
  ...      "options": {"remat": "none"}, "rates": [3.0], "device_kind": "cpu"},
  ...     {"workload": "image", "impl": "torch-eager", "size": 8, "precision": "tf32",
  ...      "rates": [1.0, 2.0], "device_kind": "cpu"}])
  >>> rows[0]["best_torch"], rows[0]["ratio"]
  ('torch-eager', 2.0)
  """
  groups: dict[tuple, dict[str, Any]] = {}
  for rec in records:
    if "rates" not in rec or rec.get("profile") or rec.get("workload") == "layer":
      continue
    wl = rec["workload"]
    size = rec.get("size", rec.get("options", {}).get("size")) if wl == "image" else None
    prec = rec.get("precision", "default")
    g = groups.setdefault(
        (wl, size, prec), {"nfscale": {}, "fused": {}, "torch": {}, "records": []}
    )
    if rec["impl"] == "nfscale":
      opts = rec.get("options", {})
      parts = [f"remat={opts['remat']}"] if opts.get("remat", "none") != "none" else []
      parts += ["XLA sin"] if opts.get("fast_sin") is False else []
      parts += [f"fused={opts['fused']}"] if opts.get("fused", "off") != "off" else []
      variant = ", ".join(parts) or "default"
      g["nfscale"].setdefault(variant, []).extend(rec["rates"])
      # The byte model of what ran ("auto" is "jax" where Pallas is unavailable).
      g["fused"][variant] = opts.get("fused_impl", opts.get("fused", "off"))
    else:
      g["torch"].setdefault(rec["impl"], []).extend(rec["rates"])
    g["records"].append(rec)
  rows = []
  for (wl, size, prec), g in groups.items():
    torch_med = {k: statistics.median(v) for k, v in g["torch"].items()}
    best = max(torch_med, key=torch_med.get) if torch_med else None
    kind = next((r.get("device_kind") for r in g["records"] if r.get("device_kind")), "")
    points = next(
        (
            r.get("points", r.get("options", {}).get("points"))
            for r in g["records"]
            if wl == "ensemble"
        ),
        200,
    )

    def roof(rate, fused="off", wl=wl, size=size, prec=prec, kind=kind, points=points):
      fields = roofline_fields(
          wl, rate, prec, kind, size=size or 256, points=points or 200, fused=fused
      )
      return fields["roofline"]

    for variant, rates in (g["nfscale"] or {"(none)": []}).items():
      nf = statistics.median(rates) if rates else None
      row = {
          "workload": wl,
          "size": size,
          "precision": prec,
          "nfscale_variant": variant,
          "nfscale": nf,
          "torch": torch_med,
          "best_torch": best,
          "ratio": nf / torch_med[best] if nf and best else None,
          "gpu": kind,
      }
      # Each side against the bytes its own program moves (the fused layers move fewer).
      r_nf = roof(nf, g["fused"].get(variant, "off")) if nf else None
      r_t = roof(torch_med[best]) if best else None
      row["nfscale_roofline"] = r_nf and r_nf["roofline_fraction"]
      row["torch_roofline"] = r_t and r_t["roofline_fraction"]
      row["bound"] = (r_nf or r_t or {}).get("bound")
      rows.append(row)
  return rows


def format_layer_summary(records: Sequence[dict[str, Any]]) -> str:
  """A markdown table of the layer run's records: one hidden sine layer, per implementation.

  Rates are steps/s of the layer unit's forward and backward pass (a sine layer and
  the next layer's matmul, ``bench.bench_layer``); ``vs plain`` is over the plain
  unit's rate at the same size and precision; ``max |diff|`` is the largest
  difference of the unit's output from the plain one's. Empty without layer records.

  >>> print(format_layer_summary([
  ...     {"workload": "layer", "steps_per_s": 100.0, "gflops": 1.0, "max_abs_diff": 0.0,
  ...      "precision": "tf32", "options": {"layer_impl": "plain", "rows": 64, "width": 8}},
  ...     {"workload": "layer", "steps_per_s": 150.0, "gflops": 1.5, "max_abs_diff": 1e-6,
  ...      "precision": "tf32", "options": {"layer_impl": "pallas", "tiles": "64x64x32/4/2",
  ...                                       "rows": 64, "width": 8}}]))
  | layer (rows x width) | precision | implementation | tiles | steps/s | vs plain | TFLOP/s | max \\|diff\\| |
  |---|---|---|---|---|---|---|---|
  | 64 x 8 | tf32 | plain |  | 100 | 1.00x | 0.001 | 0 |
  | 64 x 8 | tf32 | pallas | 64x64x32/4/2 | 150 | 1.50x | 0.0015 | 1e-06 |
  """
  recs = [r for r in records if r.get("workload") == "layer" and "steps_per_s" in r]
  if not recs:
    return ""
  plain = {
      (r["options"]["rows"], r["options"]["width"], r["precision"]): r["steps_per_s"]
      for r in recs
      if r["options"]["layer_impl"] == "plain"
  }
  lines = [
      (
          "| layer (rows x width) | precision | implementation | tiles | steps/s | vs plain "
          "| TFLOP/s | max \\|diff\\| |"
      ),
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in recs:
    o = r["options"]
    base = plain.get((o["rows"], o["width"], r["precision"]))
    ratio = f"{r['steps_per_s'] / base:.2f}x" if base else ""
    lines.append(
        f"| {o['rows']} x {o['width']} | {r['precision']} | {o['layer_impl']} | "
        f"{o.get('tiles') or ''} | {r['steps_per_s']:,.0f} | {ratio} | "
        f"{r['gflops'] / 1e3:.3g} | {r['max_abs_diff']:.2g} |"
    )
  return "\n".join(lines)


#: The issue's target: nfscale at least this many times the best PyTorch mode's rate.
TARGET_RATIO = 1.5


def format_targets(rows: Sequence[dict[str, Any]], target: float = TARGET_RATIO) -> str:
  """Per workload, size and precision: nfscale's best configuration against PyTorch's.

  From :func:`gpu_summary`'s rows, the nfscale variant with the highest rate per cell,
  its ratio to the best PyTorch mode, whether that ratio reaches ``target``, and both
  sides' fraction of the roofline: the table the GPU targets are judged by. A side with
  no rate in a cell (not run, failed, skipped) says "not run".

  >>> rows = [
  ...     {"workload": "image", "size": 512, "precision": "tf32", "nfscale_variant": v,
  ...      "nfscale": r, "torch": {"torch-compile": 338.0}, "best_torch": "torch-compile",
  ...      "ratio": r / 338.0, "nfscale_roofline": f, "torch_roofline": 0.62,
  ...      "bound": "memory"}
  ...     for v, r, f in [("default", 305.0, 0.56), ("fused=pallas", 520.0, 0.61)]]
  >>> print(format_targets(rows))
  | workload | size | precision | best nfscale configuration | nfscale | best PyTorch (mode) | ratio | >= 1.5x | roofline (nfscale / PyTorch) |
  |---|---|---|---|---|---|---|---|---|
  | image | 512 | tf32 | fused=pallas | 520 | 338 (compile) | 1.54x | yes | 61% / 62% |
  """
  best: dict[tuple, dict[str, Any]] = {}
  for r in rows:
    key = (r["workload"], r["size"], r["precision"])
    if key not in best or (r["nfscale"] or 0.0) > (best[key]["nfscale"] or 0.0):
      best[key] = r
  lines = [
      (
          "| workload | size | precision | best nfscale configuration | nfscale | best PyTorch "
          f"(mode) | ratio | >= {target:g}x | roofline (nfscale / PyTorch) |"
      ),
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in best.values():
    torch_rate = r["torch"].get(r["best_torch"]) if r["best_torch"] else None
    pytorch = (
        f"{torch_rate:,.0f} ({r['best_torch'].removeprefix('torch-')})" if torch_rate else "not run"
    )
    ours = f"{r['nfscale']:,.0f}" if r["nfscale"] else "not run"
    ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
    met = ("yes" if r["ratio"] >= target else "no") if r["ratio"] else ""
    roof = " / ".join(
        f"{100 * v:.0f}%" if v is not None else "-"
        for v in (r["nfscale_roofline"], r["torch_roofline"])
    )
    lines.append(
        f"| {r['workload']} | {r['size'] or ''} | {r['precision']} | {r['nfscale_variant']} | "
        f"{ours} | {pytorch} | {ratio} | {met} | {roof} |"
    )
  return "\n".join(lines)


def format_gpu_summary(rows: Sequence[dict[str, Any]]) -> str:
  """A markdown table of :func:`gpu_summary`'s rows."""

  def num(v):
    return "" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.3g}")

  def pct(v):
    return "" if v is None else f"{100 * v:.0f}%"

  lines = [
      (
          "| workload | size | precision | nfscale variant | nfscale rate | best PyTorch "
          "(mode) | ratio | nfscale / torch of roofline | bound | all PyTorch modes |"
      ),
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    best = f"{num(r['torch'][r['best_torch']])} ({r['best_torch']})" if r["best_torch"] else ""
    modes = ", ".join(f"{k.removeprefix('torch-')} {num(v)}" for k, v in r["torch"].items())
    ratio = f"**{r['ratio']:.2f}x**" if r["ratio"] else ""
    lines.append(
        f"| {r['workload']} | {r['size'] or ''} | {r['precision']} | "
        f"{r['nfscale_variant']} | {num(r['nfscale'])} | {best} | {ratio} | "
        f"{pct(r['nfscale_roofline'])} / {pct(r['torch_roofline'])} | "
        f"{r['bound'] or ''} | {modes} |"
    )
  return "\n".join(lines)


def write_reports(
    out_dir: str, records: Sequence[dict[str, Any]], problems: Sequence[dict[str, Any]] = ()
) -> str:
  """Writes ``summary.md``, ``summary.json`` and (if a run was profiled) ``profile.md``.

  Each file is written atomically: a suite stopped while writing leaves the previous
  version, never half of one.

  Args:
    out_dir: the suite's folder.
    records: :func:`run_plan`'s records.
    problems: more ``{"label", "status"}`` lines for the summary (e.g. PyTorch left
      out); the records' own failed, stopped and skipped runs are added.

  Returns:
    The profiles, the summary table and the problems, as text to print.
  """
  problems = [r for r in records if "status" in r] + list(problems)
  rows = gpu_summary(records)
  table = (
      "Targets: nfscale's best configuration per cell against the best PyTorch mode.\n\n"
      + format_targets(rows)
      + "\n\nEvery nfscale configuration:\n\n"
      + format_gpu_summary(rows)
  )
  layer_table = format_layer_summary(records)
  if layer_table:
    table += (
        "\n\nOne hidden sine layer alone, with the next layer's matmul (forward and backward):\n\n"
        + layer_table
    )
  listed = "".join(f"\n- {r['label']}: {r['status']}" for r in problems)
  io.atomic_write_text(
      os.path.join(out_dir, "summary.md"), table + "\n" + (listed + "\n" if listed else "")
  )
  io.atomic_write_json(
      os.path.join(out_dir, "summary.json"),
      {"rows": rows, "problems": problems, "machine": platform.node()},
  )
  traced = "\n\n".join(
      f"## {r['label']}\n\n" + profiles.format_profile(r["profile"])
      for r in records
      if r.get("profile")
  )
  if traced:
    io.atomic_write_text(os.path.join(out_dir, "profile.md"), traced + "\n")
  return "\n".join(filter(None, [traced, table, listed.lstrip("\n")]))
