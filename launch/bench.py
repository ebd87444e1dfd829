r"""Training throughput of nfscale's engine on the PyTorch reference's two workloads.

  python -m launch.bench --workload=all                  # nfscale only, JSON lines
  python -m launch.bench --workload=image --nofast_sin   # XLA's own sin
  python -m launch.bench --suite --torch_reference=../shared/bench/torch_reference.py

The workloads are those of ``torch_reference.py`` (see its docstring), run with the
engine users run (``train.init_members`` + ``train.make_train_chunk``, i.e. the
``jit(scan(vmap(step)))`` that ``train.fit`` dispatches, with its masking and
divergence checks):

* ``image``: 256x256 astronaut, coordinates in [-1, 1]^2, MLP 2 -> 256 -> 256 -> 256
  -> 3, sine omega = 30, SIREN init (torch's default U(+-1/sqrt(fan_in)) biases, as
  ``torch.nn.Linear``), Adam lr 1e-4, full batch (65536 points), float32: one member.
  Reports training steps per second.
* ``ensemble``: f(x) = sin 2pi x + sin 6pi x + sin 10pi x on 200 points of [-1, 1],
  one hidden layer of width 256, sinc omega = 10, LeCun-normal weights, zero biases,
  full-batch SGD lr 1e-2, 64 seeds trained as ONE vmapped ensemble. Reports
  model-steps per second (models x steps / seconds).

Each measurement prints one JSON line in the reference's form (``workload``, ``impl``,
``steps_per_s`` or ``model_steps_per_s`` = median of ``rates`` over ``repeats`` timed
runs of ``steps`` steps, compilation excluded; ``first_step_s``, ``final_psnr``) plus
``jax``, ``devices`` and the ``options`` used.

``--suite`` runs, for ``--rounds`` rounds, every nfscale configuration (fast sine on
and off) and the reference's modes as separate processes one after the other, and
prints a summary with the ratios (medians over all timed repeats of all rounds), so
that the ratios come from one session on one machine (``make bench``).

``--xla_defaults``, ``--small_fan_in`` and ``--ablate_engine_checks`` switch off the
engine's CPU choices one at a time, for the ablations in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

from absl import app, flags

_WORKLOAD = flags.DEFINE_enum("workload", "all", ["image", "ensemble", "all"],
                              "Which workload to run.")
_FAST_SIN = flags.DEFINE_bool("fast_sin", True, "Use the activations' fast=True sine/sinc "
                              "(nfscale.fastmath); --nofast_sin uses XLA's sin.")
_STEPS = flags.DEFINE_integer("steps", None, "Steps per timed repeat (default: image 10, "
                              "ensemble 100).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported).")
_CHUNK = flags.DEFINE_integer("chunk_steps", None, "Steps per jitted dispatch (lax.scan "
                              "length; default: steps, one dispatch per timed repeat).")
_SIZE = flags.DEFINE_integer("size", 256, "Image side (image workload).")
_MODELS = flags.DEFINE_integer("models", 64, "Ensemble members (ensemble workload).")
_SUITE = flags.DEFINE_bool("suite", False, "Run nfscale and the torch reference in rounds "
                           "and print the ratios.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Suite rounds.")
_TORCH_REF = flags.DEFINE_string("torch_reference", "../shared/bench/torch_reference.py",
                                 "Path of torch_reference.py (suite).")
_TORCH_PY = flags.DEFINE_string("torch_python", sys.executable,
                                "Python interpreter with torch installed (suite).")
_TORCH_MODES = flags.DEFINE_list("torch_modes", ["image:eager", "image:compile",
                                                 "ensemble:vmap"],
                                 "Reference runs of the suite, workload:mode.")
_OUT = flags.DEFINE_string("out", "", "Suite: also write all JSON lines to this file.")
# Ablations of the engine's CPU choices (docs/benchmarks.md).
_XLA_DEFAULTS = flags.DEFINE_bool("xla_defaults", False, "Compile the chunk function with "
                                  "XLA's default options (train.CPU_COMPILER_OPTIONS = {}).")
_SMALL_FAN_IN = flags.DEFINE_integer("small_fan_in", None, "Override "
                                     "models.SMALL_FAN_IN (0: every layer is a matmul).")
_NO_CHECKS = flags.DEFINE_bool("ablate_engine_checks", False, "Measurement only: drop the "
                               "engine's per-step NaN/Inf checks and masked updates (patches "
                               "train._all_finite and train._select) to time what they cost.")

IMAGE_STEPS, ENSEMBLE_STEPS = 10, 100
_checks_ablated = False  # set by --ablate_engine_checks


def _env() -> dict[str, Any]:
  import jax
  import jaxlib
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "devices": [str(d) for d in jax.devices()], "cpus": len(os.sched_getaffinity(0)),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _engine_options() -> dict[str, Any]:
  from nfscale import models, train
  # getattr: the bench also runs against older nfscale checkouts (before/after numbers).
  options = getattr(train, "chunk_compiler_options", lambda: None)()
  return {"engine": "train.make_train_chunk (jit(scan(vmap(step))))",
          "compiler_options": options, "small_fan_in": getattr(models, "SMALL_FAN_IN", None),
          "engine_checks": not _checks_ablated}


def image_data(size: int = 256):
  """The reference's astronaut: ``(coords (size^2, 2), rgb (size^2, 3))``, float32."""
  import numpy as np
  from skimage import data, transform
  img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
  ys, xs = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
  coords = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)
  return coords, img.reshape(-1, 3).astype(np.float32)


def curve_data(n: int = 200):
  """The reference's 1-D target on ``n`` points of [-1, 1]: ``(x (n, 1), y (n, 1))``."""
  import numpy as np
  x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]
  y = np.sin(2 * np.pi * x) + np.sin(6 * np.pi * x) + np.sin(10 * np.pi * x)
  return x, y.astype(np.float32)


def _time_engine(field, members, data, optimizer, scheme_params, steps, repeats, chunk_steps):
  """Runs the engine's chunk function; returns (rates in steps/s, times, losses, state)."""
  import jax
  import jax.numpy as jnp
  from nfscale import models, train

  if steps % chunk_steps:
    raise ValueError(f"steps={steps} must be a multiple of chunk_steps={chunk_steps}.")
  x = data["x"]
  params = train.init_members(field, members, x[:1], scheme_params)
  tx = train.make_optimizer(optimizer)
  state = train.init_state(params, tx)
  lrs = jnp.asarray([m.lr for m in members], jnp.float32)
  data = jax.tree.map(jnp.asarray, data)
  key = jax.random.key(0)
  run_chunk = train.make_train_chunk(models.mse_loss(field), tx, chunk_steps=chunk_steps)

  t0 = time.perf_counter()
  compiled = run_chunk.lower(state, lrs, data, key, 0, steps).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, log = compiled(state, lrs, data, key, 0, steps)
  jax.block_until_ready(state)
  first_chunk_s = time.perf_counter() - t0
  losses = [jax.device_get(log.loss)]
  rates, cpu = [], []
  for _ in range(repeats):
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps // chunk_steps):
      state, log = compiled(state, lrs, data, key, 0, steps)
    jax.block_until_ready(state)
    rates.append(steps / (time.perf_counter() - t0))
    cpu.append((time.process_time() - c0) / steps)
    losses.append(jax.device_get(log.loss))
  # CPU seconds per step summed over this process's threads: less sensitive to other
  # processes on the machine than the wall-clock rate (not comparable across programs).
  return {"rates": rates, "cpu_s_per_step": statistics.median(cpu), "compile_s": compile_s,
          "first_chunk_s": first_chunk_s, "losses": losses, "state": state}


def bench_image(steps: int = IMAGE_STEPS, repeats: int = 5, fast_sin: bool = True,
                size: int = 256, chunk_steps: int | None = None) -> dict[str, Any]:
  """The image workload; returns the JSON record (see the module docstring)."""
  import numpy as np
  from nfscale import models, train

  chunk_steps = chunk_steps or steps
  coords, rgb = image_data(size)
  scheme_params = {"omega": 30.0, "bias": "torch"}
  field = models.make_field((256,) * 3, 3, activation="sine",
                            activation_params={"omega": 30.0, "fast": fast_sin},
                            scheme="siren", scheme_params=scheme_params)
  members = [train.Member("siren", 0, 1e-4)]
  r = _time_engine(field, members, {"x": coords, "y": rgb}, "adam", scheme_params, steps,
                   repeats, chunk_steps)
  med = float(np.median(r["rates"]))
  points = size * size
  flops = 3 * 2 * points * (2 * 256 + 2 * 256 * 256 + 256 * 3)
  first_losses, last_losses = r["losses"][0][:, 0], r["losses"][-1][:, 0]
  return {
      "workload": "image", "impl": "nfscale", **_env(),
      "options": {"fast_sin": fast_sin, "steps": steps, "repeats": repeats,
                  "chunk_steps": chunk_steps, "size": size, "members": 1, **_engine_options()},
      "steps_per_s": med, "rates": r["rates"],
      # Compilation plus one step (the first chunk's time over its steps); the
      # reference's first_step_s is its first step, torch.compile's included.
      "first_step_s": r["compile_s"] + r["first_chunk_s"] / chunk_steps,
      "compile_s": r["compile_s"], "cpu_s_per_step": r["cpu_s_per_step"],
      "gflops": flops * med / 1e9,
      "initial_psnr": float(-10 * np.log10(first_losses[0])),
      "final_psnr": float(-10 * np.log10(last_losses[-1])),
      "steps_run": chunk_steps + repeats * steps,
  }


def bench_ensemble(steps: int = ENSEMBLE_STEPS, repeats: int = 5, fast_sin: bool = True,
                   models_: int = 64, n: int = 200, width: int = 256,
                   chunk_steps: int | None = None) -> dict[str, Any]:
  """The ensemble workload; returns the JSON record (see the module docstring)."""
  import numpy as np
  from nfscale import models, train

  chunk_steps = chunk_steps or steps
  x, y = curve_data(n)
  field = models.make_field((width,), 1, activation="sinc",
                            activation_params={"omega": 10.0, "fast": fast_sin},
                            scheme="lecun_normal")
  members = [train.Member("lecun_normal", seed, 1e-2) for seed in range(models_)]
  r = _time_engine(field, members, {"x": x, "y": y}, "sgd", None, steps, repeats, chunk_steps)
  rates = [models_ * v for v in r["rates"]]
  first_psnr = -10 * np.log10(r["losses"][0][0])
  last_psnr = -10 * np.log10(r["losses"][-1][-1])
  return {
      "workload": "ensemble", "impl": "nfscale", **_env(),
      "options": {"fast_sin": fast_sin, "steps": steps, "repeats": repeats,
                  "chunk_steps": chunk_steps, "models": models_, "points": n, "width": width,
                  **_engine_options()},
      "model_steps_per_s": float(np.median(rates)), "rates": rates,
      "first_call_s": r["compile_s"] + r["first_chunk_s"], "compile_s": r["compile_s"],
      "cpu_s_per_step": r["cpu_s_per_step"],
      "initial_psnr_mean": float(np.mean(first_psnr)),
      "final_psnr_mean": float(np.mean(last_psnr)), "final_psnr_min": float(np.min(last_psnr)),
      "diverged": int(np.sum(np.asarray(r["state"].diverged))),
      "steps_run": chunk_steps + repeats * steps,
  }


# --- suite: nfscale and the torch reference, interleaved, with ratios -------------------

def _run_json(cmd: list[str]) -> list[dict[str, Any]]:
  print("$ " + shlex.join(cmd), file=sys.stderr, flush=True)
  out = subprocess.run(cmd, capture_output=True, text=True)
  if out.returncode:
    sys.stderr.write(out.stderr[-3000:])
    raise RuntimeError(f"command failed ({out.returncode}): {shlex.join(cmd)}")
  recs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  for rec in recs:
    print(json.dumps(rec), flush=True)
  return recs


def _load() -> str:
  try:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
  except OSError:
    return "?"


def run_suite(rounds: int, torch_python: str, torch_reference: str, torch_modes: list[str],
              steps: int | None, repeats: int, out: str = "") -> dict[str, Any]:
  """Alternates nfscale and reference runs for ``rounds`` rounds; returns the summary."""
  me = [sys.executable, "-m", "launch.bench", f"--repeats={repeats}"]
  configs = []
  for wl in ("image", "ensemble"):
    st = steps or (IMAGE_STEPS if wl == "image" else ENSEMBLE_STEPS)
    for fast in (True, False):
      configs.append(("nfscale", wl, fast, me + [f"--workload={wl}", f"--steps={st}",
                                                 "--fast_sin" if fast else "--nofast_sin"]))
    for tm in torch_modes:
      twl, _, mode = tm.partition(":")
      if twl == wl:
        configs.append(("torch", wl, mode, [torch_python, torch_reference, wl, "--mode", mode,
                                            f"--steps={st}", f"--repeats={repeats}"]))
  records: list[dict[str, Any]] = []
  for r in range(rounds):
    for kind, wl, variant, cmd in configs:
      load = _load()
      recs = _run_json(cmd)
      for rec in recs:
        rec.update(round=r, loadavg_before=load, loadavg_after=_load())
      records.extend(recs)
  loads = [float(rec[k].split()[0]) for rec in records
           for k in ("loadavg_before", "loadavg_after") if rec.get(k, "?") != "?"]
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
      f.writelines(json.dumps(rec) + "\n" for rec in records)
  summary = summarize(records)
  summary["loadavg_1min_range"] = [min(loads), max(loads)] if loads else None
  return summary


def _key(rec: dict[str, Any]) -> str:
  if rec["impl"] == "nfscale":
    return f"nfscale fast_sin={'on' if rec['options']['fast_sin'] else 'off'}"
  return rec["impl"]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  """Median rate per (workload, implementation) over all timed repeats, and ratios."""
  pooled: dict[str, dict[str, list[float]]] = {}
  for rec in records:
    pooled.setdefault(rec["workload"], {}).setdefault(_key(rec), []).extend(rec["rates"])
  summary: dict[str, Any] = {}
  for wl, impls in pooled.items():
    med = {k: statistics.median(v) for k, v in impls.items()}
    refs = {k: v for k, v in med.items() if not k.startswith("nfscale")}
    summary[wl] = {
        "unit": "steps/s" if wl == "image" else "model-steps/s",
        "median": med, "repeats": {k: len(v) for k, v in impls.items()},
        "ratios": {f"{k} / {ref}": med[k] / rv for k in med if k.startswith("nfscale")
                   for ref, rv in refs.items()}}
  return summary


def format_summary(summary: dict[str, Any]) -> str:
  refs = sorted({r.split(" / ")[1] for s in summary.values() if isinstance(s, dict)
                 for r in s.get("ratios", {})})
  lines = ["| workload | implementation | median rate | vs " + " | vs ".join(refs) + " |"]
  lines.append("|" + "---|" * (3 + len(refs)))
  for wl, s in summary.items():
    if not isinstance(s, dict) or "median" not in s:
      continue
    for impl, rate in sorted(s["median"].items()):
      cells = [f"{s['ratios'][f'{impl} / {ref}']:.2f}x" if f"{impl} / {ref}" in s["ratios"]
               else "" for ref in refs]
      shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.2f}"
      lines.append(f"| {wl} | {impl} | {shown} {s['unit']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  global _checks_ablated
  if _SUITE.value:
    if not os.path.isfile(_TORCH_REF.value):
      raise app.UsageError(f"--torch_reference {_TORCH_REF.value!r} is not a file.")
    summary = run_suite(_ROUNDS.value, _TORCH_PY.value, _TORCH_REF.value, _TORCH_MODES.value,
                        _STEPS.value, _REPEATS.value, _OUT.value)
    print(json.dumps({"summary": summary, "machine": platform.processor() or platform.machine(),
                      "loadavg_end": _load()}))
    print(format_summary(summary))
    return
  from nfscale import models, train
  if _XLA_DEFAULTS.value:
    train.CPU_COMPILER_OPTIONS = {}
  if _SMALL_FAN_IN.value is not None:
    models.SMALL_FAN_IN = _SMALL_FAN_IN.value
  if _NO_CHECKS.value:
    import jax.numpy as jnp
    _checks_ablated = True
    train._all_finite = lambda tree: jnp.bool_(True)  # pylint: disable=protected-access
    train._select = lambda pred, new, old: new  # pylint: disable=protected-access
  workloads = ["image", "ensemble"] if _WORKLOAD.value == "all" else [_WORKLOAD.value]
  for wl in workloads:
    if wl == "image":
      rec = bench_image(_STEPS.value or IMAGE_STEPS, _REPEATS.value, _FAST_SIN.value,
                        _SIZE.value, _CHUNK.value)
    else:
      rec = bench_ensemble(_STEPS.value or ENSEMBLE_STEPS, _REPEATS.value, _FAST_SIN.value,
                           _MODELS.value, chunk_steps=_CHUNK.value)
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
  app.run(main)
