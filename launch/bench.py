r"""Training throughput of nfscale's engine, alone or against the PyTorch workloads.

  python -m launch.bench --workload=all                  # nfscale only, JSON lines
  python -m launch.bench --workload=image --nofast_sin   # XLA's own sin
  python -m launch.bench --suite                         # vs benchmarks/torch_workloads.py
  python -m launch.bench --workload=layer --layer_impls=plain,pallas --tiles=64x64x32,128x64x32/8/3
  python -m launch.bench --gpu_suite --out_dir=DIR       # on a GPU (benchmarks/gpu_suite.sh)
  nfscale-bench --workload=ensemble                      # after pip install

The workloads and their records are described in ``nfscale.bench``. ``--suite`` runs, for
``--rounds`` rounds, every nfscale configuration (fast sine on and off) and the PyTorch
modes as separate processes one after the other, and prints a summary with the ratios
(medians over all timed repeats of all rounds), so that the ratios come from one session
on one machine (``make bench``). ``--xla_defaults``, ``--small_fan_in`` and
``--ablate_engine_checks`` switch off the engine's CPU choices one at a time, for the
ablations in docs/benchmarks.md. ``--precision`` and ``--remat`` are the engine's settings
of the same names (``nfscale.train.PRECISIONS``, ``nfscale.train.REMAT``);
``--profile_dir`` traces the timed repeats with ``jax.profiler``.

``--gpu_suite`` runs, each in its own process and in this order, nfscale and PyTorch at
every ``--gpu_sizes`` image size and every ``--gpu_precisions`` precision (both sides
at the same setting; nfscale also with the fused Pallas sine layers), the ensemble,
profiled nfscale runs (default and fused), PyTorch's ``max-autotune`` per image cell
(the slowest mode to start, so it comes after every cell), nfscale with
``--remat=dots``, with ``--nofast_sin`` and with the plain-JAX fused layers, then one
hidden sine layer and the next layer's matmul alone (``--workload=layer``: plain, fused
``jax`` and the Pallas kernels at several ``--tiles``); it appends every JSON line to
``OUT_DIR/gpu_suite.jsonl`` as it comes, starts nothing after ``--budget_s`` seconds
(the same command again resumes: runs that ended well there are kept), and writes
``OUT_DIR/summary.md`` (the targets table, ratios and roofline fractions) and
``OUT_DIR/profile.md``. The PyTorch runs are left out when
``--torch_python`` cannot import torch.
"""

import json
import os
import platform
import subprocess
import sys

import jax
from absl import flags

from nfscale import bench, cli, fused, gpu_suite, train

# The PyTorch workloads ship with the repository (benchmarks/), not with the wheel.
_DEFAULT_TORCH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks", "torch_workloads.py"
)

_WORKLOAD = flags.DEFINE_enum(
    "workload",
    "all",
    ["image", "ensemble", "all", "layer"],
    "Which workload to run (all: image and ensemble; layer: one hidden sine layer and the "
    "next layer's matmul alone).",
)
_FAST_SIN = flags.DEFINE_bool(
    "fast_sin",
    True,
    "Use the activations' fast=True sine/sinc (nfscale.fastmath); --nofast_sin uses XLA's sin.",
)
_STEPS = flags.DEFINE_integer(
    "steps",
    None,
    "Steps per timed repeat (default: image "
    f"{bench.IMAGE_STEPS}, ensemble {bench.ENSEMBLE_STEPS}).",
    lower_bound=1,
)
_REPEATS = flags.DEFINE_integer(
    "repeats", 5, "Timed repeats (the median is reported).", lower_bound=1
)
_CHUNK = flags.DEFINE_integer(
    "chunk_steps",
    None,
    "Steps per jitted dispatch (lax.scan length; default: steps, one dispatch per timed repeat).",
    lower_bound=1,
)
_SIZE = flags.DEFINE_integer("size", 256, "Image side (image workload).", lower_bound=2)
_MODELS = flags.DEFINE_integer("models", 64, "Ensemble members (ensemble workload).", lower_bound=1)
_SUITE = flags.DEFINE_bool(
    "suite", False, "Run nfscale and the PyTorch workloads in rounds and print the ratios."
)
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Suite rounds.", lower_bound=1)
_TORCH_REF = flags.DEFINE_string(
    "torch_reference", os.path.normpath(_DEFAULT_TORCH), "The PyTorch workloads script (suite)."
)
_TORCH_PY = flags.DEFINE_string(
    "torch_python", sys.executable, "Python interpreter with torch installed (suite)."
)
_TORCH_MODES = flags.DEFINE_list(
    "torch_modes",
    ["image:eager", "image:compile", "ensemble:vmap"],
    "PyTorch runs of the suite, workload:mode.",
)
_OUT = flags.DEFINE_string("out", "", "Suite: also write all JSON lines to this file.")
_XLA_DEFAULTS = flags.DEFINE_bool(
    "xla_defaults", False, "Compile the chunk function with XLA's default options."
)
_SMALL_FAN_IN = flags.DEFINE_integer(
    "small_fan_in", None, "Override models.SMALL_FAN_IN (0: every layer is a matmul)."
)
_PRECISION = flags.DEFINE_enum(
    "precision",
    "default",
    list(train.PRECISIONS),
    "Matmul precision of the engine (nfscale.train.PRECISIONS).",
)
_REMAT = flags.DEFINE_enum(
    "remat", "none", list(train.REMAT), "Rematerialisation of the engine (nfscale.train.REMAT)."
)
_FUSED = flags.DEFINE_enum(
    "fused",
    "off",
    ["off", "auto", "jax", "pallas"],
    "Image workload: the sine layers and the output layer as one nfscale.fused.sine_mlp.",
)
_LAYER_IMPLS = flags.DEFINE_list(
    "layer_impls",
    list(bench.LAYER_IMPLS),
    "Layer workload: implementations (plain, jax, pallas; nfscale.bench.LAYER_IMPLS).",
)
_TILES = flags.DEFINE_list(
    "tiles",
    [str(fused.DEFAULT_TILES)],
    "Layer workload: the Pallas kernels' tiles, ROWSxCOLSxK/WARPS/STAGES, one run each.",
)
_LAYER_ROWS = flags.DEFINE_integer(
    "layer_rows", bench.LAYER_ROWS, "Layer workload: points.", lower_bound=1
)
_LAYER_WIDTH = flags.DEFINE_integer(
    "layer_width", bench.LAYER_WIDTH, "Layer workload: units (fan-in = fan-out).", lower_bound=1
)
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir", "", "Image workload: trace the timed repeats into this folder with jax.profiler."
)
_GPU_SUITE = flags.DEFINE_bool("gpu_suite", False, "Run the GPU suite (see above).")
_OUT_DIR = flags.DEFINE_string("out_dir", "runs/gpu_suite", "GPU suite: output folder.")
_BUDGET = flags.DEFINE_float("budget_s", 450.0, "GPU suite: start no run after this many seconds.")
_GPU_SIZES = flags.DEFINE_list(
    "gpu_sizes", [str(s) for s in gpu_suite.GPU_SIZES], "GPU suite: image sides."
)
_GPU_PRECISIONS = flags.DEFINE_list(
    "gpu_precisions", list(gpu_suite.GPU_PRECISIONS), "GPU suite: matmul precisions, both sides."
)
_GPU_TORCH_MODES = flags.DEFINE_list(
    "gpu_torch_modes", list(gpu_suite.GPU_TORCH_MODES), "GPU suite: PyTorch runs, workload:mode."
)
_ENSEMBLE_STEPS = flags.DEFINE_integer(
    "ensemble_steps",
    None,
    f"GPU suite: ensemble steps per timed repeat (default {gpu_suite.GPU_ENSEMBLE_STEPS}).",
    lower_bound=1,
)
_TORCH_DEVICE = flags.DEFINE_string(
    "torch_device",
    "",
    "GPU suite: --device of the PyTorch runs (default: cuda if torch sees a GPU, else cpu).",
)
_ALLOW_CPU = flags.DEFINE_bool(
    "allow_cpu",
    False,
    "GPU suite: run on a machine where JAX sees no GPU (a test of the suite itself; its "
    "'tf32' and 'highest' cells are then both plain float32).",
)
_NO_CHECKS = flags.DEFINE_bool(
    "ablate_engine_checks",
    False,
    "Measurement only: drop the engine's per-step NaN/Inf checks and masked updates.",
)


def _torch_device(python: str) -> str | None:
  """``cuda``/``cpu`` where ``python`` imports torch, else ``None``."""
  try:
    out = subprocess.run(
        [python, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
  except (OSError, subprocess.TimeoutExpired):
    return None
  if out.returncode:
    return None
  return "cuda" if out.stdout.strip().endswith("True") else "cpu"


def run_gpu_suite(me: list[str]) -> None:
  """The ``--gpu_suite`` mode (see the module docstring)."""
  out_dir = _OUT_DIR.value
  try:
    sizes = [int(v) for v in _GPU_SIZES.value]
  except ValueError:
    sizes = []
  if not sizes or min(sizes) < 2:
    raise ValueError(
        f"--gpu_sizes={','.join(_GPU_SIZES.value)}: image sides must be integers >= 2."
    )
  if jax.default_backend() != "gpu" and not _ALLOW_CPU.value:
    raise ValueError(
        f"--gpu_suite measures a GPU, and JAX sees {jax.default_backend()}; pass --allow_cpu "
        "to run it anyway (a test of the suite, not a measurement)."
    )
  os.makedirs(out_dir, exist_ok=True)
  device = _torch_device(_TORCH_PY.value)
  torch_cmd = None
  if device is None:
    sys.stderr.write(f"torch is not importable by {_TORCH_PY.value}: PyTorch runs left out.\n")
  else:
    if not os.path.isfile(_TORCH_REF.value):
      raise ValueError(f"--torch_reference={_TORCH_REF.value}: no such file.")
    torch_cmd = [_TORCH_PY.value, _TORCH_REF.value]
  plan = gpu_suite.gpu_suite_plan(
      me,
      torch_cmd,
      out_dir,
      sizes=sizes,
      precisions=_GPU_PRECISIONS.value,
      torch_modes=_GPU_TORCH_MODES.value,
      image_steps=_STEPS.value or gpu_suite.GPU_IMAGE_STEPS,
      ensemble_steps=_ENSEMBLE_STEPS.value or gpu_suite.GPU_ENSEMBLE_STEPS,
      repeats=_REPEATS.value,
      models=_MODELS.value,
      torch_device=_TORCH_DEVICE.value or device or "cpu",
  )
  records = gpu_suite.run_plan(
      plan,
      os.path.join(out_dir, "gpu_suite.jsonl"),
      _BUDGET.value,
      machine=gpu_suite.machine_kind(),
  )
  left_out = f"left out: {_TORCH_PY.value} cannot import torch"
  problems = [] if torch_cmd else [{"label": "PyTorch", "status": left_out}]
  print(gpu_suite.write_reports(out_dir, records, problems))


def layer_runs(impls: list[str], tiles: list[str]) -> list[tuple[str, str | None]]:
  """``(impl, tiles)`` of each layer run: every Pallas tiling, one run of each other impl.

  Everything is checked before the first run (a typo fails at once, not minutes in).
  """
  bad = [i for i in impls if i not in bench.LAYER_IMPLS]
  if bad:
    raise ValueError(f"--layer_impls: unknown {bad}; choose from {', '.join(bench.LAYER_IMPLS)}.")
  parsed = [str(fused.parse_tiles(t)) for t in tiles]
  return [(i, t) for i in impls for t in (parsed if i == "pallas" else [None])]


def main(argv):
  del argv
  me = [sys.executable, "-m", __spec__.name if __spec__ else "launch.bench"]
  if _GPU_SUITE.value:
    run_gpu_suite(me)
    return
  if _SUITE.value:
    if not os.path.isfile(_TORCH_REF.value):
      raise ValueError(
          f"--torch_reference={_TORCH_REF.value}: no such file (the PyTorch "
          "workloads are benchmarks/torch_workloads.py in the repository)."
      )
    # The suite runs its fixed workloads (docs/benchmarks.md) and passes on only
    # --steps and --repeats; the single-run flags would be dropped without a word.
    single = ("workload", "size", "models", "chunk_steps", "precision", "remat", "fused")
    single += ("fast_sin", "xla_defaults", "small_fan_in", "ablate_engine_checks")
    given = [f"--{name}" for name in single if flags.FLAGS[name].present]
    if given:
      raise ValueError(
          "--suite runs its fixed workloads and takes only --steps, --repeats, --rounds and "
          f"the torch flags; {', '.join(given)} apply to a single run (leave out --suite)."
      )
    if _TORCH_MODES.value and _torch_device(_TORCH_PY.value) is None:
      # Found before the nfscale runs, not after them (their records were lost).
      raise ValueError(
          f"--suite compares with PyTorch, and {_TORCH_PY.value} cannot import torch: install "
          "it (make bench does), name another interpreter with --torch_python, or pass "
          "--torch_modes= for nfscale alone."
      )
    commands = bench.suite_commands(
        me, _TORCH_PY.value, _TORCH_REF.value, _TORCH_MODES.value, _STEPS.value, _REPEATS.value
    )
    summary = bench.run_suite(_ROUNDS.value, commands, _OUT.value)
    print(
        json.dumps({
            "summary": summary,
            "machine": platform.processor() or platform.machine(),
            "loadavg_end": bench.loadavg(),
        })
    )
    print(bench.format_summary(summary))
    return
  ablations = {
      "compiler_options": {} if _XLA_DEFAULTS.value else bench.ENGINE_DEFAULT,
      "small_fan_in": _SMALL_FAN_IN.value,
      "engine_checks": not _NO_CHECKS.value,
      "precision": _PRECISION.value,
      "remat": _REMAT.value,
  }
  if _WORKLOAD.value == "layer":
    for impl, tiles in layer_runs(_LAYER_IMPLS.value, _TILES.value):
      rec = bench.bench_layer(
          impl,
          tiles,
          rows=_LAYER_ROWS.value,
          width=_LAYER_WIDTH.value,
          steps=_STEPS.value or bench.LAYER_STEPS,
          repeats=_REPEATS.value,
          precision=_PRECISION.value,
      )
      print(json.dumps(rec), flush=True)
    return
  workloads = ["image", "ensemble"] if _WORKLOAD.value == "all" else [_WORKLOAD.value]
  for wl in workloads:
    if wl == "image":
      rec = bench.bench_image(
          _STEPS.value or bench.IMAGE_STEPS,
          _REPEATS.value,
          _FAST_SIN.value,
          _SIZE.value,
          _CHUNK.value,
          trace_dir=_PROFILE_DIR.value,
          fused=_FUSED.value,
          **ablations,
      )
    else:
      rec = bench.bench_ensemble(
          _STEPS.value or bench.ENSEMBLE_STEPS,
          _REPEATS.value,
          _FAST_SIN.value,
          _MODELS.value,
          chunk_steps=_CHUNK.value,
          **ablations,
      )
    print(json.dumps(rec), flush=True)


def run():
  """Console-script entry point (``nfscale-bench``)."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__, configs=False)


if __name__ == "__main__":
  run()
