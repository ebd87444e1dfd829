r"""Training throughput of nfscale's engine, alone or against the PyTorch workloads.

  python -m launch.bench --workload=all                  # nfscale only, JSON lines
  python -m launch.bench --workload=image --nofast_sin   # XLA's own sin
  python -m launch.bench --suite                         # vs benchmarks/torch_workloads.py
  nfscale-bench --workload=ensemble                      # after pip install

The workloads and their records are described in ``nfscale.bench``. ``--suite`` runs, for
``--rounds`` rounds, every nfscale configuration (fast sine on and off) and the PyTorch
modes as separate processes one after the other, and prints a summary with the ratios
(medians over all timed repeats of all rounds), so that the ratios come from one session
on one machine (``make bench``). ``--xla_defaults``, ``--small_fan_in`` and
``--ablate_engine_checks`` switch off the engine's CPU choices one at a time, for the
ablations in docs/benchmarks.md.
"""

import json
import os
import platform
import sys

from absl import flags

from nfscale import bench, cli

# The PyTorch workloads ship with the repository (benchmarks/), not with the wheel.
_DEFAULT_TORCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                              "benchmarks", "torch_workloads.py")

_WORKLOAD = flags.DEFINE_enum("workload", "all", ["image", "ensemble", "all"],
                              "Which workload to run.")
_FAST_SIN = flags.DEFINE_bool("fast_sin", True, "Use the activations' fast=True sine/sinc "
                              "(nfscale.fastmath); --nofast_sin uses XLA's sin.")
_STEPS = flags.DEFINE_integer("steps", None, "Steps per timed repeat (default: image "
                              f"{bench.IMAGE_STEPS}, ensemble {bench.ENSEMBLE_STEPS}).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported).")
_CHUNK = flags.DEFINE_integer("chunk_steps", None, "Steps per jitted dispatch (lax.scan "
                              "length; default: steps, one dispatch per timed repeat).")
_SIZE = flags.DEFINE_integer("size", 256, "Image side (image workload).")
_MODELS = flags.DEFINE_integer("models", 64, "Ensemble members (ensemble workload).")
_SUITE = flags.DEFINE_bool("suite", False, "Run nfscale and the PyTorch workloads in rounds "
                           "and print the ratios.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Suite rounds.")
_TORCH_REF = flags.DEFINE_string("torch_reference", os.path.normpath(_DEFAULT_TORCH),
                                 "The PyTorch workloads script (suite).")
_TORCH_PY = flags.DEFINE_string("torch_python", sys.executable,
                                "Python interpreter with torch installed (suite).")
_TORCH_MODES = flags.DEFINE_list("torch_modes", ["image:eager", "image:compile",
                                                 "ensemble:vmap"],
                                 "PyTorch runs of the suite, workload:mode.")
_OUT = flags.DEFINE_string("out", "", "Suite: also write all JSON lines to this file.")
_XLA_DEFAULTS = flags.DEFINE_bool("xla_defaults", False, "Compile the chunk function with "
                                  "XLA's default options.")
_SMALL_FAN_IN = flags.DEFINE_integer("small_fan_in", None, "Override "
                                     "models.SMALL_FAN_IN (0: every layer is a matmul).")
_NO_CHECKS = flags.DEFINE_bool("ablate_engine_checks", False, "Measurement only: drop the "
                               "engine's per-step NaN/Inf checks and masked updates.")


def main(argv):
  del argv
  if _SUITE.value:
    if not os.path.isfile(_TORCH_REF.value):
      raise ValueError(f"--torch_reference={_TORCH_REF.value}: no such file (the PyTorch "
                       "workloads are benchmarks/torch_workloads.py in the repository).")
    me = [sys.executable, "-m", __spec__.name if __spec__ else "launch.bench"]
    commands = bench.suite_commands(me, _TORCH_PY.value, _TORCH_REF.value, _TORCH_MODES.value,
                                    _STEPS.value, _REPEATS.value)
    summary = bench.run_suite(_ROUNDS.value, commands, _OUT.value)
    print(json.dumps({"summary": summary, "machine": platform.processor() or platform.machine(),
                      "loadavg_end": bench.loadavg()}))
    print(bench.format_summary(summary))
    return
  ablations = {"compiler_options": {} if _XLA_DEFAULTS.value else bench.ENGINE_DEFAULT,
               "small_fan_in": _SMALL_FAN_IN.value,
               "engine_checks": not _NO_CHECKS.value}
  workloads = ["image", "ensemble"] if _WORKLOAD.value == "all" else [_WORKLOAD.value]
  for wl in workloads:
    if wl == "image":
      rec = bench.bench_image(_STEPS.value or bench.IMAGE_STEPS, _REPEATS.value,
                              _FAST_SIN.value, _SIZE.value, _CHUNK.value, **ablations)
    else:
      rec = bench.bench_ensemble(_STEPS.value or bench.ENSEMBLE_STEPS, _REPEATS.value,
                                 _FAST_SIN.value, _MODELS.value, chunk_steps=_CHUNK.value,
                                 **ablations)
    print(json.dumps(rec), flush=True)


def run():
  """Console-script entry point (``nfscale-bench``)."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__,
          configs=False)


if __name__ == "__main__":
  run()
