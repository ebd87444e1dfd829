"""Training-throughput workloads of the engine, and the suite that compares them with PyTorch.

Two workloads, the same as in ``benchmarks/torch_workloads.py`` (the PyTorch side):

* ``image``: the 256x256 astronaut, coordinates in [-1, 1]^2, MLP 2 -> 256 -> 256 ->
  256 -> 3, sine omega = 30, SIREN init with ``torch.nn.Linear``-style biases
  U(+-1/sqrt(fan_in)), Adam lr 1e-4, full batch, float32, one member. Reports training
  steps per second.
* ``ensemble``: f(x) = sin 2pi x + sin 6pi x + sin 10pi x on 200 points of [-1, 1], one
  hidden layer of width 256, sinc omega = 10, LeCun-normal weights, zero biases,
  full-batch SGD lr 1e-2, 64 seeds trained as ONE vmapped ensemble. Reports
  model-steps per second (models x steps / seconds).

Both run through the engine that ``train.fit`` uses (``train.init_members`` +
``train.make_train_chunk``: ``jit(scan(vmap(step)))`` with its masking and
divergence checks). Each returns one JSON-able record: ``steps_per_s`` or
``model_steps_per_s`` (median of ``rates`` over ``repeats`` timed runs of ``steps``
steps, compilation excluded), ``first_step_s``, PSNRs, the JAX version, devices and the
options used.

The engine's CPU choices can be switched off one at a time for ablations:
``compiler_options={}`` (XLA's defaults), ``small_fan_in=0`` (every layer a matmul),
``engine_checks=False`` (no NaN/Inf checks or masked updates; measurement only). They
are applied for the duration of one call and restored afterwards.

>>> rec = bench_ensemble(steps=2, repeats=1, num_models=2, n=8, width=4)
>>> rec["workload"], len(rec["rates"]), rec["options"]["models"]
('ensemble', 1, 2)
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import models, train

IMAGE_STEPS, ENSEMBLE_STEPS = 10, 100
#: ``compiler_options`` value meaning "what the engine uses by default".
ENGINE_DEFAULT = "engine-default"


def environment() -> dict[str, Any]:
  """JAX version, devices, CPU count and XLA flags, for every record."""
  import jaxlib  # pylint: disable=import-outside-toplevel

  return {
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "cpus": len(os.sched_getaffinity(0)),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


@contextlib.contextmanager
def engine_settings(
    compiler_options: Any = ENGINE_DEFAULT,
    small_fan_in: int | None = None,
    engine_checks: bool = True,
) -> Iterator[dict[str, Any]]:
  """Applies the ablation settings to the engine for the ``with`` block; restores them.

  Yields:
    The effective settings (for the record's ``options``).
  """
  saved = (
      train.CPU_COMPILER_OPTIONS,
      models.SMALL_FAN_IN,
      train._all_finite,  # pylint: disable=protected-access
      train._select,
  )  # pylint: disable=protected-access
  try:
    if compiler_options != ENGINE_DEFAULT:
      train.CPU_COMPILER_OPTIONS = dict(compiler_options or {})
    if small_fan_in is not None:
      models.SMALL_FAN_IN = small_fan_in
    if not engine_checks:
      train._all_finite = lambda tree: jnp.bool_(True)  # pylint: disable=protected-access
      train._select = lambda pred, new, old: new  # pylint: disable=protected-access
    yield {
        "engine": "train.make_train_chunk (jit(scan(vmap(step))))",
        "compiler_options": train.chunk_compiler_options(),
        "small_fan_in": models.SMALL_FAN_IN,
        "engine_checks": engine_checks,
    }
  finally:
    (
        train.CPU_COMPILER_OPTIONS,
        models.SMALL_FAN_IN,
        train._all_finite,  # pylint: disable=protected-access
        train._select,
    ) = saved  # pylint: disable=protected-access


def image_data(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """The astronaut at ``size``: ``(coords (size^2, 2) in [-1, 1], rgb (size^2, 3))``.

  Pixels in row-major (y, x) order with x as the first coordinate, float32.
  """
  from skimage import data, transform  # pylint: disable=import-outside-toplevel

  img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
  ys, xs = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
  coords = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)
  return coords, img.reshape(-1, 3).astype(np.float32)


def curve_data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
  """The 1-D target on ``n`` points of [-1, 1]: ``(x (n, 1), y (n, 1))``, float32."""
  x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]
  y = np.sin(2 * np.pi * x) + np.sin(6 * np.pi * x) + np.sin(10 * np.pi * x)
  return x, y.astype(np.float32)


# --- the roofline: model FLOPs and bytes per step against a GPU's peaks ---------------

#: Layer sizes (input, hidden..., output) of the image workload's field.
IMAGE_LAYERS = (2, 256, 256, 256, 3)

#: Passes over each (points x hidden width) float32 array per training step in
#: :func:`step_bytes`, for a layer ``h = phi(omega (h_prev W + b))`` whose derivative is
#: recomputed from the stored matmul output (XLA's fusion does that). Forward 4: the
#: matmul writes ``z``; the activation reads ``z`` and writes ``h``; the next layer's
#: matmul reads ``h``. Backward 7: the next layer's input-gradient matmul writes the
#: cotangent ``g_h``; the activation's backward reads ``g_h`` and ``z`` and writes
#: ``g_z``; this layer's weight- and input-gradient matmuls read ``g_z`` (2); the next
#: layer's weight-gradient matmul reads ``h``. Bias gradients are taken as fused into the
#: pass that writes ``g_z``; arrays of the output layer (3 or 1 wide), the inputs,
#: params and optimizer state are left out (under 2% here).
ELEMENTWISE_PASSES = 11

#: Vendor peaks of common GPUs (dense, i.e. WITHOUT 2:4 sparsity), in FLOP/s and bytes/s:
#: ``fp32`` without tensor cores (what full-float32 matmuls get), ``tf32`` and ``bf16``
#: tensor cores (NVIDIA's datasheets give these with sparsity; the dense figure is half),
#: ``hbm`` memory bandwidth. Sources: NVIDIA H100 Tensor Core GPU datasheet (SXM5 and
#: PCIe columns), NVIDIA H200 Tensor Core GPU product page (SXM), NVIDIA A100 datasheet
#: (80GB SXM). Matched against the device name by :func:`gpu_peaks`.
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67e12, "tf32": 989e12 / 2, "bf16": 1979e12 / 2, "hbm": 4.8e12},
    "H100 SXM": {"fp32": 67e12, "tf32": 989e12 / 2, "bf16": 1979e12 / 2, "hbm": 3.35e12},
    "H100 PCIe": {"fp32": 51e12, "tf32": 756e12 / 2, "bf16": 1513e12 / 2, "hbm": 2.0e12},
    "A100 SXM": {"fp32": 19.5e12, "tf32": 312e12 / 2, "bf16": 624e12 / 2, "hbm": 2.039e12},
}

#: Which peak a precision setting's matmuls can reach: JAX's GPU default for float32
#: matmuls is TF32 (so is ``torch --precision tf32``); ``highest`` is plain float32.
PEAK_OF_PRECISION = {"default": "tf32", "highest": "fp32", "tf32": "tf32", "bf16": "bf16"}


def step_flops(layers: Sequence[int], points: int, members: int = 1) -> int:
  """Model matmul FLOPs of one training step of an MLP with ``layers`` sizes.

  Counts ``3 x 2 x points x sum(fan_in x fan_out)`` per member: every layer's forward
  product, its input gradient and its weight gradient, 2 FLOPs per multiply-add (the
  first layer's input gradient is counted though never computed, and its multiply-adds
  though they are not a matmul in nfscale: 0.4% of the image workload). Activations,
  the loss and the optimizer are not counted. The same formula as the PyTorch script's
  ``gflops``.

  >>> step_flops(IMAGE_LAYERS, 256 * 256) / 1e9
  52.042924032
  """
  return 6 * points * members * sum(a * b for a, b in zip(layers[:-1], layers[1:]))


def step_bytes(
    layers: Sequence[int],
    points: int,
    members: int = 1,
    passes: int = ELEMENTWISE_PASSES,
    bytes_per_element: int = 4,
) -> int:
  """Estimated bytes one training step moves through memory (see :data:`ELEMENTWISE_PASSES`).

  ``passes x bytes_per_element x points x members x sum(hidden widths)``: the traffic of
  the (points x width) activation arrays between kernels when each matmul and each
  fused elementwise pass reads and writes them once. A lower bound for an unfused
  program; a kernel that fuses the activation into its matmul saves some of it.

  >>> step_bytes(IMAGE_LAYERS, 256 * 256) / 1e9
  2.214592512
  """
  return passes * bytes_per_element * points * members * sum(layers[1:-1])


def gpu_peaks(device_kind: str) -> dict[str, Any] | None:
  """The :data:`GPU_PEAKS` entry for a device name (``jax.devices()[0].device_kind``).

  >>> gpu_peaks("NVIDIA H100 80GB HBM3")["name"], gpu_peaks("cpu")
  ('H100 SXM', None)
  """
  kind = device_kind.upper()
  if "H200" in kind:
    name = "H200"
  elif "H100" in kind:
    name = "H100 PCIe" if "PCIE" in kind else "H100 SXM"
  elif "A100" in kind:
    name = "A100 SXM"
  else:
    return None
  return {"name": name, **GPU_PEAKS[name]}


def roofline(
    steps_per_s: float,
    flops_per_step: float,
    bytes_per_step: float,
    peak_flops: float,
    peak_bytes_per_s: float,
) -> dict[str, Any]:
  """Achieved FLOP/s and bytes/s of a measured rate against the peaks (the roofline).

  The roofline bound is ``max(flops / peak_flops, bytes / peak_bytes_per_s)`` seconds per
  step; ``roofline_fraction`` is the measured rate over the rate at that bound.

  Returns:
    ``achieved_tflops``, ``achieved_tbytes_per_s``, ``flops_fraction``,
    ``bandwidth_fraction``, ``intensity`` (FLOP/byte), ``bound`` (``"compute"`` or
    ``"memory"``), ``roofline_steps_per_s`` and ``roofline_fraction``.

  >>> r = roofline(100.0, 1e12, 1e10, 5e14, 5e12)
  >>> r["bound"], r["roofline_steps_per_s"], r["roofline_fraction"]
  ('compute', 500.0, 0.2)
  """
  t_flops, t_bytes = flops_per_step / peak_flops, bytes_per_step / peak_bytes_per_s
  t_min = max(t_flops, t_bytes)
  return {
      "achieved_tflops": steps_per_s * flops_per_step / 1e12,
      "achieved_tbytes_per_s": steps_per_s * bytes_per_step / 1e12,
      "flops_fraction": steps_per_s * t_flops,
      "bandwidth_fraction": steps_per_s * t_bytes,
      "intensity": flops_per_step / bytes_per_step,
      "bound": "compute" if t_flops >= t_bytes else "memory",
      "roofline_steps_per_s": 1.0 / t_min,
      "roofline_fraction": steps_per_s * t_min,
  }


def workload_layers(workload: str, width: int = 256) -> tuple[int, ...]:
  """Layer sizes of a workload's field (the ensemble's per model)."""
  return IMAGE_LAYERS if workload == "image" else (1, width, 1)


def roofline_fields(
    workload: str,
    rate: float,
    precision: str,
    device_kind: str | None = None,
    size: int = 256,
    points: int = 200,
    width: int = 256,
) -> dict[str, Any]:
  """A record's ``flops_per_step``, ``bytes_per_step``, ``gflops`` and ``roofline``.

  For the ensemble a "step" is one model's step (``rate`` in model-steps/s).
  ``roofline`` is ``None`` off the GPUs of :data:`GPU_PEAKS`; ``device_kind`` defaults
  to JAX's first device.
  """
  n = size * size if workload == "image" else points
  layers = workload_layers(workload, width)
  flops, nbytes = step_flops(layers, n), step_bytes(layers, n)
  if device_kind is None:
    device_kind = jax.devices()[0].device_kind
  peaks = gpu_peaks(device_kind)
  roof = None
  if peaks is not None:
    key = PEAK_OF_PRECISION.get(precision, "tf32")
    roof = {
        "gpu": peaks["name"],
        "peak": key,
        **roofline(rate, flops, nbytes, peaks[key], peaks["hbm"]),
    }
  return {
      "flops_per_step": flops,
      "bytes_per_step": nbytes,
      "gflops": flops * rate / 1e9,
      "roofline": roof,
  }


def time_engine(
    field: Any,
    members: Sequence[train.Member],
    data: dict[str, np.ndarray],
    optimizer: str,
    scheme_params: dict[str, Any] | None,
    steps: int,
    repeats: int,
    chunk_steps: int,
    precision: str = "default",
    remat: str = "none",
    trace_dir: str = "",
) -> dict[str, Any]:
  """Times the engine's chunk function on ``data``.

  With ``trace_dir``, the timed repeats run under ``jax.profiler.trace`` (a perfetto
  trace and an xplane file under ``trace_dir/plugins/profile/<time>/``).

  Returns:
    ``rates`` (steps/s per repeat), ``cpu_s_per_step`` (median), ``compile_s``,
    ``first_chunk_s``, ``losses`` (per chunk log, first and after each repeat), the
    final ``state`` and ``xla_cost`` (XLA's own per-step ``flops`` and ``bytes
    accessed`` of the compiled chunk: its cost analysis counts the scan body once).

  Raises:
    ValueError: ``steps`` is not a multiple of ``chunk_steps``.
  """
  if steps % chunk_steps:
    raise ValueError(f"steps={steps} must be a multiple of chunk_steps={chunk_steps}.")
  x = data["x"]
  params = train.init_members(field, members, x[:1], scheme_params)
  tx = train.make_optimizer(optimizer)
  state = train.init_state(params, tx)
  lrs = jnp.asarray([m.lr for m in members], jnp.float32)
  data = jax.tree.map(jnp.asarray, data)
  key = jax.random.key(0)
  run_chunk = train.make_train_chunk(
      models.mse_loss(field), tx, chunk_steps=chunk_steps, precision=precision, remat=remat
  )
  # Steps are numbered on (each gets its own rng, as in ``train.fit``); none is past the end.
  total = chunk_steps * (1 + repeats * (steps // chunk_steps))
  start = 0

  t0 = time.perf_counter()
  compiled = run_chunk.lower(state, lrs, data, key, start, total).compile()
  compile_s = time.perf_counter() - t0
  xla_cost = _xla_cost(compiled)
  t0 = time.perf_counter()
  state, log = compiled(state, lrs, data, key, start, total)
  start += chunk_steps
  jax.block_until_ready(state)
  first_chunk_s = time.perf_counter() - t0
  losses = [jax.device_get(log.loss)]
  rates, cpu = [], []
  tracing = (
      jax.profiler.trace(trace_dir, create_perfetto_trace=True)
      if trace_dir
      else contextlib.nullcontext()
  )
  with tracing:
    for _ in range(repeats):
      c0, t0 = time.process_time(), time.perf_counter()
      for _ in range(steps // chunk_steps):
        state, log = compiled(state, lrs, data, key, start, total)
        start += chunk_steps
      jax.block_until_ready(state)
      rates.append(steps / (time.perf_counter() - t0))
      cpu.append((time.process_time() - c0) / steps)
      losses.append(jax.device_get(log.loss))
  # CPU seconds per step summed over this process's threads: less sensitive to other
  # processes on the machine than the wall-clock rate (not comparable across programs).
  return {
      "rates": rates,
      "cpu_s_per_step": statistics.median(cpu),
      "compile_s": compile_s,
      "first_chunk_s": first_chunk_s,
      "losses": losses,
      "state": state,
      "xla_cost": xla_cost,
  }


def _xla_cost(compiled: Any) -> dict[str, float] | None:
  """``flops`` and ``bytes accessed`` from XLA's cost analysis (``None`` if unavailable)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # Not every backend or jaxlib provides it; the record says so.
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost:
    return None
  return {k: float(cost[k]) for k in ("flops", "bytes accessed") if k in cost}


def bench_image(
    steps: int = IMAGE_STEPS,
    repeats: int = 5,
    fast_sin: bool = True,
    size: int = 256,
    chunk_steps: int | None = None,
    compiler_options: Any = ENGINE_DEFAULT,
    small_fan_in: int | None = None,
    engine_checks: bool = True,
    precision: str = "default",
    remat: str = "none",
    trace_dir: str = "",
    fused: str = "off",
) -> dict[str, Any]:
  """The image workload (see the module docstring).

  Args:
    steps: steps per timed repeat.
    repeats: timed repeats (the median rate is reported).
    fast_sin: the activations' ``fast=True`` sine (``nfscale.fastmath``).
    size: image side.
    chunk_steps: steps per jitted dispatch (default ``steps``).
    compiler_options, small_fan_in, engine_checks: ablations (see the module docstring).
    precision: matmul precision (``nfscale.train.PRECISIONS``).
    remat: rematerialisation (``nfscale.train.REMAT``).
    trace_dir: profile the timed repeats into this folder (``jax.profiler.trace``);
      the record's ``profile`` is then :func:`summarize_trace` of it.
    fused: the hidden layers as :func:`nfscale.fused.dense_sine` (``"off"``,
      ``"auto"``, ``"jax"``, ``"pallas"``); needs ``fast_sin=False``.

  Returns:
    The JSON-able record, with ``flops_per_step``, ``bytes_per_step`` (the model of
    :func:`step_flops` / :func:`step_bytes`), XLA's ``xla_cost`` and, on a GPU of
    :data:`GPU_PEAKS`, ``roofline`` (:func:`roofline`).
  """
  chunk_steps = chunk_steps or steps
  coords, rgb = image_data(size)
  scheme_params = {"omega": 30.0, "bias": "torch"}
  with engine_settings(compiler_options, small_fan_in, engine_checks) as engine:
    field = models.make_field(
        (256,) * 3,
        3,
        activation="sine",
        activation_params={"omega": 30.0, "fast": fast_sin},
        scheme="siren",
        scheme_params=scheme_params,
        fused=fused,
    )
    members = [train.Member("siren", 0, 1e-4)]
    r = time_engine(
        field,
        members,
        {"x": coords, "y": rgb},
        "adam",
        scheme_params,
        steps,
        repeats,
        chunk_steps,
        precision,
        remat,
        trace_dir,
    )
  med = float(np.median(r["rates"]))
  first_losses, last_losses = r["losses"][0][:, 0], r["losses"][-1][:, 0]
  return {
      "workload": "image",
      "impl": "nfscale",
      **environment(),
      "options": {
          "fast_sin": fast_sin,
          "steps": steps,
          "repeats": repeats,
          "chunk_steps": chunk_steps,
          "size": size,
          "members": 1,
          **engine,
          "precision": precision,
          "matmul_precision": train.matmul_precision(precision),
          "remat": remat,
          "fused": fused,
      },
      "precision": precision,
      "size": size,
      "steps_per_s": med,
      "rates": r["rates"],
      **roofline_fields("image", med, precision, size=size),
      "xla_cost": r["xla_cost"],
      # Compilation plus one step (the first chunk's time over its steps); the
      # PyTorch side's first_step_s is its first step, torch.compile's included.
      "first_step_s": r["compile_s"] + r["first_chunk_s"] / chunk_steps,
      "compile_s": r["compile_s"],
      "cpu_s_per_step": r["cpu_s_per_step"],
      "initial_psnr": float(-10 * np.log10(first_losses[0])),
      "final_psnr": float(-10 * np.log10(last_losses[-1])),
      "steps_run": chunk_steps + repeats * steps,
      **({"profile": summarize_trace(trace_dir, steps * repeats)} if trace_dir else {}),
  }


def bench_ensemble(
    steps: int = ENSEMBLE_STEPS,
    repeats: int = 5,
    fast_sin: bool = True,
    num_models: int = 64,
    n: int = 200,
    width: int = 256,
    chunk_steps: int | None = None,
    compiler_options: Any = ENGINE_DEFAULT,
    small_fan_in: int | None = None,
    engine_checks: bool = True,
    precision: str = "default",
    remat: str = "none",
) -> dict[str, Any]:
  """The ensemble workload (see the module docstring).

  Args:
    steps, repeats, fast_sin, chunk_steps, precision, remat: as in :func:`bench_image`.
    num_models: ensemble members (seeds).
    n: points of the 1-D curve.
    width: hidden width.
    compiler_options, small_fan_in, engine_checks: ablations (see the module docstring).

  Returns:
    The JSON-able record.
  """
  chunk_steps = chunk_steps or steps
  x, y = curve_data(n)
  with engine_settings(compiler_options, small_fan_in, engine_checks) as engine:
    field = models.make_field(
        (width,),
        1,
        activation="sinc",
        activation_params={"omega": 10.0, "fast": fast_sin},
        scheme="lecun_normal",
    )
    members = [train.Member("lecun_normal", seed, 1e-2) for seed in range(num_models)]
    r = time_engine(
        field, members, {"x": x, "y": y}, "sgd", None, steps, repeats, chunk_steps, precision, remat
    )
  rates = [num_models * v for v in r["rates"]]
  med = float(np.median(rates))
  first_psnr = -10 * np.log10(r["losses"][0][0])
  last_psnr = -10 * np.log10(r["losses"][-1][-1])
  return {
      "workload": "ensemble",
      "impl": "nfscale",
      **environment(),
      "options": {
          "fast_sin": fast_sin,
          "steps": steps,
          "repeats": repeats,
          "chunk_steps": chunk_steps,
          "models": num_models,
          "points": n,
          "width": width,
          **engine,
          "precision": precision,
          "matmul_precision": train.matmul_precision(precision),
          "remat": remat,
      },
      "precision": precision,
      "model_steps_per_s": med,
      "rates": rates,
      **roofline_fields("ensemble", med, precision, points=n, width=width),
      "xla_cost": r["xla_cost"],
      "first_call_s": r["compile_s"] + r["first_chunk_s"],
      "compile_s": r["compile_s"],
      "cpu_s_per_step": r["cpu_s_per_step"],
      "initial_psnr_mean": float(np.mean(first_psnr)),
      "final_psnr_mean": float(np.mean(last_psnr)),
      "final_psnr_min": float(np.min(last_psnr)),
      "diverged": int(np.sum(np.asarray(r["state"].diverged))),
      "steps_run": chunk_steps + repeats * steps,
  }


def sin_timings(shape: tuple[int, ...] = (65536, 256), repeats: int = 5) -> dict[str, float]:
  """Median seconds per call of jitted ``jnp.sin`` vs ``fastmath.fast_sin`` (and numpy).

  Also times the SIREN-like forward+backward ``grad(sum(sin(30 x)))``; inputs are
  uniform in [-1, 1]; compilation and a warm-up call are excluded.

  Returns:
    Keys ``numpy_sin``, ``jnp_sin``, ``fast_sin``, ``jnp_sin_fwd_bwd``,
    ``fast_sin_fwd_bwd``.
  """
  from nfscale import fastmath  # pylint: disable=import-outside-toplevel

  x_np = np.random.default_rng(0).uniform(-1.0, 1.0, size=shape).astype(np.float32)
  x = jax.device_put(x_np)

  def timed(fn: Callable[[], Any]) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - t0)
    return statistics.median(times)

  def fwd_bwd(sin: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    return jax.jit(jax.grad(lambda v: jnp.sum(sin(30.0 * v))))

  jnp_sin, f_sin = jax.jit(jnp.sin), jax.jit(fastmath.fast_sin)
  jnp_grad, f_grad = fwd_bwd(jnp.sin), fwd_bwd(fastmath.fast_sin)
  return {
      "numpy_sin": timed(lambda: np.sin(x_np)),
      "jnp_sin": timed(lambda: jnp_sin(x)),
      "fast_sin": timed(lambda: f_sin(x)),
      "jnp_sin_fwd_bwd": timed(lambda: jnp_grad(x)),
      "fast_sin_fwd_bwd": timed(lambda: f_grad(x)),
  }


# --- the suite: nfscale and PyTorch, interleaved, with ratios -------------------------


def _run_json(cmd: list[str]) -> list[dict[str, Any]]:
  sys.stderr.write("$ " + shlex.join(cmd) + "\n")
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if out.returncode:
    sys.stderr.write(out.stderr[-3000:])
    raise RuntimeError(f"command failed ({out.returncode}): {shlex.join(cmd)}")
  recs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  for rec in recs:
    print(json.dumps(rec), flush=True)  # the suite's output is these JSON lines
  return recs


def loadavg() -> str:
  """The 1/5/15-minute load averages as text (``"?"`` where unavailable)."""
  try:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
  except OSError:
    return "?"


def suite_commands(
    nfscale_cmd: Sequence[str],
    torch_python: str,
    torch_script: str,
    torch_modes: Sequence[str],
    steps: int | None,
    repeats: int,
) -> list[tuple[str, str, Any, list[str]]]:
  """One round's runs: ``(impl, workload, variant, argv)``, nfscale before PyTorch.

  Args:
    nfscale_cmd: the argv prefix that runs this package's bench launcher.
    torch_python: an interpreter with torch installed.
    torch_script: ``benchmarks/torch_workloads.py``.
    torch_modes: PyTorch runs as ``workload:mode`` (e.g. ``image:compile``).
    steps: steps per timed repeat (default per workload).
    repeats: timed repeats per run.
  """
  configs = []
  for wl in ("image", "ensemble"):
    st = steps or (IMAGE_STEPS if wl == "image" else ENSEMBLE_STEPS)
    for fast in (True, False):
      configs.append((
          "nfscale",
          wl,
          fast,
          [
              *nfscale_cmd,
              f"--repeats={repeats}",
              f"--workload={wl}",
              f"--steps={st}",
              "--fast_sin" if fast else "--nofast_sin",
          ],
      ))
    for tm in torch_modes:
      twl, _, mode = tm.partition(":")
      if twl == wl:
        configs.append((
            "torch",
            wl,
            mode,
            [
                torch_python,
                torch_script,
                wl,
                "--mode",
                mode,
                f"--steps={st}",
                f"--repeats={repeats}",
            ],
        ))
  return configs


def run_suite(
    rounds: int, commands: Sequence[tuple[str, str, Any, list[str]]], out: str = ""
) -> dict[str, Any]:
  """Runs ``commands`` (from :func:`suite_commands`) ``rounds`` times; returns the summary.

  Every run is its own process; each record gets its round and the load average before
  and after it. With ``out``, all records are also written there as JSON lines.
  """
  records: list[dict[str, Any]] = []
  for r in range(rounds):
    for _, _, _, cmd in commands:
      before = loadavg()
      recs = _run_json(cmd)
      for rec in recs:
        rec.update(round=r, loadavg_before=before, loadavg_after=loadavg())
      records.extend(recs)
  loads = [
      float(rec[k].split()[0])
      for rec in records
      for k in ("loadavg_before", "loadavg_after")
      if rec.get(k, "?") != "?"
  ]
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(rec) + "\n" for rec in records)
  summary = summarize(records)
  summary["loadavg_1min_range"] = [min(loads), max(loads)] if loads else None
  return summary


def _key(rec: dict[str, Any]) -> str:
  if rec["impl"] == "nfscale":
    return f"nfscale fast_sin={'on' if rec['options']['fast_sin'] else 'off'}"
  return rec["impl"]


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Median rate per (workload, implementation) over all timed repeats, and ratios.

  >>> s = summarize([
  ...     {"workload": "image", "impl": "nfscale", "options": {"fast_sin": True},
  ...      "rates": [2, 4, 3]},
  ...     {"workload": "image", "impl": "torch-compile", "rates": [1.5]}])
  >>> s["image"]["ratios"]
  {'nfscale fast_sin=on / torch-compile': 2.0}
  """
  pooled: dict[str, dict[str, list[float]]] = {}
  for rec in records:
    pooled.setdefault(rec["workload"], {}).setdefault(_key(rec), []).extend(rec["rates"])
  summary: dict[str, Any] = {}
  for wl, impls in pooled.items():
    med = {k: statistics.median(v) for k, v in impls.items()}
    refs = {k: v for k, v in med.items() if not k.startswith("nfscale")}
    summary[wl] = {
        "unit": "steps/s" if wl == "image" else "model-steps/s",
        "median": med,
        "repeats": {k: len(v) for k, v in impls.items()},
        "ratios": {
            f"{k} / {ref}": med[k] / rv
            for k in med
            if k.startswith("nfscale")
            for ref, rv in refs.items()
        },
    }
  return summary


def format_summary(summary: dict[str, Any]) -> str:
  """A markdown table of :func:`summarize`'s medians and ratios."""
  refs = sorted({
      r.split(" / ")[1]
      for s in summary.values()
      if isinstance(s, dict)
      for r in s.get("ratios", {})
  })
  lines = ["| workload | implementation | median rate | vs " + " | vs ".join(refs) + " |"]
  lines.append("|" + "---|" * (3 + len(refs)))
  for wl, s in summary.items():
    if not isinstance(s, dict) or "median" not in s:
      continue
    for impl, rate in sorted(s["median"].items()):
      cells = [
          f"{s['ratios'][f'{impl} / {ref}']:.2f}x" if f"{impl} / {ref}" in s["ratios"] else ""
          for ref in refs
      ]
      shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.2f}"
      lines.append(f"| {wl} | {impl} | {shown} {s['unit']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


# --- profiles -------------------------------------------------------------------------

#: Kernel-name fragments that mark a matmul (cuBLAS/CUTLASS/XLA GEMM fusions, YNNPACK on
#: CPU); :func:`summarize_trace` puts every other kernel under "elementwise/reduction".
MATMUL_MARKERS = ("gemm", "dot", "cublas", "cutlass", "xmma", "matmul", "ynn")


def _category(name: str) -> str:
  low = name.lower()
  if any(m in low for m in MATMUL_MARKERS):
    return "matmul"
  if "memcpy" in low or "memset" in low or "copy" in low:
    return "copy"
  return "elementwise/reduction"


def summarize_trace(trace_dir: str, steps: int = 1, top: int = 15) -> dict[str, Any]:
  """Where the device time of a ``jax.profiler.trace`` went: per kernel and per category.

  Reads the newest ``perfetto_trace.json.gz`` under ``trace_dir``. On a GPU it sums the
  kernel events of the device's stream lanes (``/device:GPU:...`` processes, threads
  named ``Stream...``); on the CPU, XLA's op events on its worker threads (``tf_XLA...``).

  Args:
    trace_dir: the folder given to ``jax.profiler.trace``.
    steps: training steps in the trace (for per-step times).
    top: kernels listed.

  Returns:
    ``source`` (``"gpu"`` or ``"cpu"``), ``file``, ``lanes`` (busy microseconds per
    lane, all lanes, to check the choice), ``busy_us_per_step``, ``by_category`` (share
    of the busy time) and ``top`` (``[name, us_per_step, share]``).

  Raises:
    ValueError: no perfetto trace under ``trace_dir``.
  """
  import glob  # pylint: disable=import-outside-toplevel
  import gzip  # pylint: disable=import-outside-toplevel

  files = sorted(
      glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True),
      key=os.path.getmtime,
  )
  if not files:
    raise ValueError(f"trace_dir={trace_dir!r}: no perfetto_trace.json.gz under it.")
  with gzip.open(files[-1], "rt", encoding="utf-8") as f:
    doc = json.load(f)
  events = doc["traceEvents"] if isinstance(doc, dict) else doc
  procs = {
      e["pid"]: e.get("args", {}).get("name", "")
      for e in events
      if e.get("ph") == "M" and e.get("name") == "process_name"
  }
  threads = {
      (e["pid"], e.get("tid")): e.get("args", {}).get("name", "")
      for e in events
      if e.get("ph") == "M" and e.get("name") == "thread_name"
  }
  spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
  lanes: dict[str, float] = {}
  for e in spans:
    lane = f"{procs.get(e['pid'], e['pid'])} | {threads.get((e['pid'], e.get('tid')), '')}"
    lanes[lane] = lanes.get(lane, 0.0) + float(e["dur"])
  gpu = [e for e in spans if "GPU" in procs.get(e["pid"], "").upper()]
  if gpu:
    source = "gpu"
    # Kernel lanes only: the "XLA Ops"/"XLA Modules" lanes repeat the same time per op.
    chosen = [e for e in gpu if "stream" in threads.get((e["pid"], e.get("tid")), "").lower()]
    chosen = chosen or gpu
  else:
    source = "cpu"
    chosen = [e for e in spans if threads.get((e["pid"], e.get("tid")), "").startswith("tf_XLA")]
  # Executor spans on the CPU contain the op spans: counting them would count twice.
  chosen = [e for e in chosen if not e["name"].startswith("ThunkExecutor")]
  per_name: dict[str, float] = {}
  for e in chosen:
    per_name[e["name"]] = per_name.get(e["name"], 0.0) + float(e["dur"])
  busy = sum(per_name.values()) or 1.0
  cats: dict[str, float] = {}
  for name, us in per_name.items():
    cats[_category(name)] = cats.get(_category(name), 0.0) + us / busy
  ranked = sorted(per_name.items(), key=lambda kv: -kv[1])[:top]
  return {
      "source": source,
      "file": os.path.relpath(files[-1], trace_dir),
      "lanes": dict(sorted(lanes.items(), key=lambda kv: -kv[1])[:12]),
      "busy_us_per_step": sum(per_name.values()) / steps,
      "by_category": dict(sorted(cats.items(), key=lambda kv: -kv[1])),
      "top": [[name, us / steps, us / busy] for name, us in ranked],
  }


# --- the GPU suite: nfscale vs PyTorch per size and precision, with roofline fractions ---

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
#: Steps per timed repeat on a GPU (a 512^2 image step is ~3 ms there; an ensemble step
#: of 64 models ~40 us): enough for each repeat to last tens of milliseconds.
GPU_IMAGE_STEPS, GPU_ENSEMBLE_STEPS = 50, 1000


def gpu_suite_plan(
    nfscale_cmd: Sequence[str],
    torch_cmd: Sequence[str] | None,
    out_dir: str,
    *,
    sizes: Sequence[int] = GPU_SIZES,
    precisions: Sequence[str] = GPU_PRECISIONS,
    torch_modes: Sequence[str] = GPU_TORCH_MODES,
    image_steps: int = GPU_IMAGE_STEPS,
    ensemble_steps: int = GPU_ENSEMBLE_STEPS,
    repeats: int = 5,
    models: int = 64,
    torch_device: str = "cuda",
    variants: Sequence[str] = (
        "--remat=dots",
        "--nofast_sin",
        "--nofast_sin --fused=jax",
        "--nofast_sin --fused=pallas",
    ),
    profile: bool = True,
) -> list[dict[str, Any]]:
  """The runs of the GPU suite, most important first, each its own process.

  Per precision (in the given order): per image size, nfscale then PyTorch (all image
  modes in one process), then the ensemble likewise; after the first precision's image
  runs, one profiled nfscale run at the largest size; last, nfscale with each of
  ``variants`` (extra launcher flags) at the largest size and first precision.

  Args:
    nfscale_cmd: argv prefix of this package's bench launcher.
    torch_cmd: argv prefix of ``benchmarks/torch_workloads.py`` (``None``: no PyTorch).
    out_dir: where the profile goes (``out_dir/trace``).
    sizes, precisions, torch_modes: what to compare (``workload:mode``).
    image_steps, ensemble_steps, repeats: timing of every run, both sides alike.
    models: ensemble members.
    torch_device: ``--device`` of the PyTorch runs.
    variants: extra nfscale image runs, one per entry of space-separated flags (e.g.
      ``--remat=dots``; ``--nofast_sin``: XLA's own sine instead of the activations'
      fast one; ``--nofast_sin --fused=pallas``: the fused sine layers).
    profile: include the profiled run.

  Returns:
    ``{"label", "impl", "argv", "timeout_s"}`` per run.

  >>> plan = gpu_suite_plan(["nf"], ["tp"], "out", sizes=[8], precisions=["tf32"],
  ...                       torch_modes=["image:eager"], variants=[], profile=False)
  >>> [p["label"] for p in plan]
  ['image 8 tf32 nfscale', 'image 8 tf32 torch', 'ensemble tf32 nfscale']
  >>> " ".join(plan[1]["argv"])
  'tp image --mode eager --precision tf32 --size 8 --device cuda --steps 50 --repeats 5'
  """
  for p in precisions:
    train.matmul_precision(p)  # a bad precision fails before anything runs
  modes = {
      wl: [tm.partition(":")[2] for tm in torch_modes if tm.startswith(wl + ":")]
      for wl in ("image", "ensemble")
  }
  timing = ["--repeats", str(repeats)]
  plan: list[dict[str, Any]] = []

  def add(label, impl, argv, timeout_s):
    plan.append({"label": label, "impl": impl, "argv": list(argv), "timeout_s": timeout_s})

  for i, prec in enumerate(precisions):
    for size in sizes:
      add(
          f"image {size} {prec} nfscale",
          "nfscale",
          [
              *nfscale_cmd,
              "--workload=image",
              f"--size={size}",
              f"--precision={prec}",
              f"--steps={image_steps}",
              f"--repeats={repeats}",
          ],
          180,
      )
      if torch_cmd and modes["image"]:
        add(
            f"image {size} {prec} torch",
            "torch",
            [
                *torch_cmd,
                "image",
                "--mode",
                ",".join(modes["image"]),
                "--precision",
                prec,
                "--size",
                str(size),
                "--device",
                torch_device,
                "--steps",
                str(image_steps),
                *timing,
            ],
            420,
        )
    if i == 0 and profile:
      add(
          f"profile image {max(sizes)} {prec}",
          "profile",
          [
              *nfscale_cmd,
              "--workload=image",
              f"--size={max(sizes)}",
              f"--precision={prec}",
              "--steps=5",
              "--repeats=2",
              f"--profile_dir={os.path.join(out_dir, 'trace')}",
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
  for flag in variants:
    flags = flag.split()  # a variant may set several flags ("--nofast_sin --fused=jax")
    add(
        f"image {max(sizes)} {precisions[0]} nfscale " + " ".join(f.lstrip("-") for f in flags),
        "nfscale",
        [
            *nfscale_cmd,
            "--workload=image",
            f"--size={max(sizes)}",
            f"--precision={precisions[0]}",
            *flags,
            f"--steps={image_steps}",
            f"--repeats={repeats}",
        ],
        180,
    )
  return plan


def run_plan(
    plan: Sequence[dict[str, Any]], out: str, budget_s: float = 480.0, grace_s: float = 60.0
) -> list[dict[str, Any]]:
  """Runs :func:`gpu_suite_plan`'s runs in order; appends every JSON line to ``out`` at once.

  No run starts after ``budget_s`` seconds, and none runs past ``budget_s + grace_s``
  (a run stopped there keeps the lines it printed). Each record gets ``label``; a
  skipped, failed or stopped run adds a record ``{"label", "status", ...}``.

  Returns:
    All records, in order.
  """
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  t_start, records = time.perf_counter(), []
  with open(out, "a", encoding="utf-8") as f:
    for run in plan:
      elapsed = time.perf_counter() - t_start
      recs: list[dict[str, Any]]
      if elapsed > budget_s:
        recs = [{"label": run["label"], "status": "skipped (time budget)"}]
      else:
        timeout = max(1.0, min(run["timeout_s"], budget_s + grace_s - elapsed))
        sys.stderr.write(f"[{elapsed:6.0f} s] {run['label']}: $ {shlex.join(run['argv'])}\n")
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
            dict(json.loads(line), label=run["label"])
            for line in stdout.splitlines()
            if line.startswith("{")
        ]
        if status != "ok":
          sys.stderr.write(stderr[-2000:])
          recs.append({"label": run["label"], "status": status, "stderr": stderr[-1500:]})
        for rec in recs:
          rec.setdefault("wall_s", time.perf_counter() - t0)
      for rec in recs:
        f.write(json.dumps(rec) + "\n")
        f.flush()
      records.extend(recs)
  return records


def _median_rate(rec: dict[str, Any]) -> float:
  return float(statistics.median(rec["rates"]))


def gpu_summary(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per (workload, size, precision, nfscale variant): rates, ratio, roofline.

  The variant is ``default`` (the bench defaults: fast sine, no remat), else what
  differs (``remat=dots``, ``XLA sin``).

  ``ratio`` is nfscale's median rate over the best PyTorch mode's; ``*_roofline`` the
  fraction of the roofline rate (:func:`roofline`) each side reached, against the peaks
  of the records' GPU (``None`` off the GPUs of :data:`GPU_PEAKS`).

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
    if "rates" not in rec or rec.get("profile"):
      continue
    wl = rec["workload"]
    size = rec.get("size", rec.get("options", {}).get("size")) if wl == "image" else None
    prec = rec.get("precision", "default")
    g = groups.setdefault((wl, size, prec), {"nfscale": {}, "torch": {}, "records": []})
    if rec["impl"] == "nfscale":
      opts = rec.get("options", {})
      parts = [f"remat={opts['remat']}"] if opts.get("remat", "none") != "none" else []
      parts += ["XLA sin"] if opts.get("fast_sin") is False else []
      parts += [f"fused={opts['fused']}"] if opts.get("fused", "off") != "off" else []
      variant = ", ".join(parts) or "default"
      g["nfscale"].setdefault(variant, []).extend(rec["rates"])
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

    def roof(rate, wl=wl, size=size, prec=prec, kind=kind, points=points):
      fields = roofline_fields(wl, rate, prec, kind, size=size or 256, points=points or 200)
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
      r_nf = roof(nf) if nf else None
      r_t = roof(torch_med[best]) if best else None
      row["nfscale_roofline"] = r_nf and r_nf["roofline_fraction"]
      row["torch_roofline"] = r_t and r_t["roofline_fraction"]
      row["bound"] = (r_nf or r_t or {}).get("bound")
      rows.append(row)
  return rows


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


def format_profile(summary: dict[str, Any]) -> str:
  """A markdown view of :func:`summarize_trace`'s summary."""
  cats = ", ".join(f"{k} {100 * v:.0f}%" for k, v in summary["by_category"].items())
  lines = [
      (
          f"Profile ({summary['source']}, {summary['file']}): "
          f"{summary['busy_us_per_step']:.0f} us of kernels per step; {cats}."
      ),
      "",
      "| kernel | us/step | share |",
      "|---|---|---|",
  ]
  lines += [
      f"| `{name[:90]}` | {us:.1f} | {100 * share:.1f}% |" for name, us, share in summary["top"]
  ]
  return "\n".join(lines)
