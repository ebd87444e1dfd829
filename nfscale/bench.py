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

from nfscale import fused, models, train
from nfscale import io as nfio
from nfscale.fused import resolve_impl
from nfscale.profiles import summarize_trace
from nfscale.roofline import roofline_fields

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
      the record's ``profile`` is then :func:`nfscale.profiles.summarize_trace` of it.
    fused: the sine layers as one :func:`nfscale.fused.sine_mlp` (``"off"``,
      ``"auto"``, ``"jax"``, ``"pallas"``; the ``"jax"`` one takes ``fast_sin``).

  Returns:
    The JSON-able record, with ``flops_per_step``, ``bytes_per_step`` (the model of
    :func:`nfscale.roofline.step_flops` / :func:`nfscale.roofline.step_bytes`), XLA's ``xla_cost`` and, on a GPU of
    :data:`nfscale.roofline.GPU_PEAKS`, ``roofline`` (:func:`nfscale.roofline.roofline`).
  """
  chunk_steps = chunk_steps or steps
  fused_impl = "off" if fused == "off" else resolve_impl(fused)
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
          # What "auto" ran here: the byte model below follows it, not the setting.
          "fused_impl": fused_impl,
      },
      "precision": precision,
      "size": size,
      "steps_per_s": med,
      "rates": r["rates"],
      **roofline_fields("image", med, precision, size=size, fused=fused_impl),
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
    The JSON-able record; its rates, ``flops_per_step``, ``bytes_per_step`` and
    ``xla_cost`` count model steps (one member's step).
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
      # Per model step, like flops_per_step: the compiled step trains every member.
      "xla_cost": {k: v / num_models for k, v in r["xla_cost"].items()} if r["xla_cost"] else None,
      "first_call_s": r["compile_s"] + r["first_chunk_s"],
      "compile_s": r["compile_s"],
      "cpu_s_per_step": r["cpu_s_per_step"],
      "initial_psnr_mean": float(np.mean(first_psnr)),
      "final_psnr_mean": float(np.mean(last_psnr)),
      "final_psnr_min": float(np.min(last_psnr)),
      "diverged": int(np.sum(np.asarray(r["state"].diverged))),
      "steps_run": chunk_steps + repeats * steps,
  }


#: The layer workload: one hidden sine layer of the image field at 512^2.
LAYER_ROWS, LAYER_WIDTH, LAYER_STEPS = 512 * 512, 256, 20
#: ``plain``: ``jnp.sin`` of a matmul, differentiated by JAX (what the engine's
#: plain layers do); ``jax`` and ``pallas``: :func:`nfscale.fused.sine_mlp`.
LAYER_IMPLS = ("plain", "jax", "pallas")


def bench_layer(
    impl: str = "pallas",
    tiles: fused.Tiles | str | None = None,
    rows: int = LAYER_ROWS,
    width: int = LAYER_WIDTH,
    steps: int = LAYER_STEPS,
    repeats: int = 5,
    precision: str = "default",
    omega: float = 30.0,
) -> dict[str, Any]:
  """One hidden sine layer and the next layer's matmul, forward and backward, timed alone.

  The unit is ``y = sin(omega (x W + b)) V + c``: a hidden layer as a field
  has it, followed by its successor's matmul, because the fused layers'
  backward kernel computes the gradient at the sine's output (``g V^T``) itself
  (:func:`nfscale.fused.sine_mlp`). Each step takes ``sum(g * y)`` and its
  gradients with respect to ``x``, ``W``, ``b``, ``V`` and ``c`` (what a
  hidden layer of a training step computes), and moves the weights by a tiny
  step so that no step can be hoisted out of the loop; ``steps`` steps run in
  one jitted ``fori_loop`` per timed repeat. Before timing, the unit's output
  is compared with the plain one's (``max_abs_diff``), so a fast but wrong
  kernel shows.

  Args:
    impl: one of :data:`LAYER_IMPLS`.
    tiles: the Pallas kernels' tiles (:class:`nfscale.fused.Tiles` or its
      string form; ``None``: :data:`nfscale.fused.DEFAULT_TILES`).
    rows, width: the layer's points and units (fan-in = fan-out = width).
    steps, repeats: steps per timed repeat; timed repeats (median reported).
    precision: matmul precision (:data:`nfscale.train.PRECISIONS`).
    omega: the sine's frequency.

  Returns:
    The JSON-able record: ``workload`` ``"layer"``, ``options`` (``layer_impl``,
    ``tiles``, sizes, precision), ``steps_per_s``, ``rates``, ``gflops``
    (useful matmul work: 6 matmuls of ``2 rows width^2`` FLOPs per step, the
    forward product, input gradient and weight gradient of both layers; the
    fused layers' recomputation is not counted), ``max_abs_diff`` and
    ``compile_s``.

  Raises:
    ValueError: an unknown ``impl`` or bad ``tiles``.

  >>> rec = bench_layer("jax", rows=64, width=16, steps=2, repeats=1)
  >>> rec["workload"], rec["options"]["layer_impl"], rec["max_abs_diff"] < 1e-4
  ('layer', 'jax', True)
  """
  if impl not in LAYER_IMPLS:
    raise ValueError(f"layer impl must be one of {LAYER_IMPLS}, got {impl!r}.")
  tiles = fused.as_tiles(tiles)
  kx, kw, kb, kv, kg = jax.random.split(jax.random.key(0), 5)
  x = jax.random.uniform(kx, (rows, width), jnp.float32, -1.0, 1.0)
  bound = np.sqrt(6 / width) / omega
  w = jax.random.uniform(kw, (width, width), jnp.float32, -1.0, 1.0) * bound
  b = jax.random.uniform(kb, (width,), jnp.float32, -1.0, 1.0) / np.sqrt(width)
  v = jax.random.uniform(kv, (width, width), jnp.float32, -1.0, 1.0) * bound
  c = jnp.zeros((width,), jnp.float32)
  g = jax.random.normal(kg, (rows, width), jnp.float32)

  def plain(x, w, b, v, c):
    return jnp.sin(omega * (x @ w + b)) @ v + c

  def unit(x, w, b, v, c):
    if impl == "plain":
      return plain(x, w, b, v, c)
    return fused.sine_mlp(x, [(w, b)], (v, c), omega, impl=impl, tiles=tiles)

  def loss(x, params):
    return jnp.sum(g * unit(x, *params))

  def run(params):
    def step(_, carry):
      params, acc = carry
      value, (dx, grads) = jax.value_and_grad(loss, argnums=(0, 1))(x, params)
      params = jax.tree.map(lambda p, d: p - 1e-9 * d, params, grads)
      # dx is used so that it is computed, as a deeper layer's would be.
      return params, acc + value + 1e-9 * jnp.sum(dx)

    return jax.lax.fori_loop(0, steps, step, (params, jnp.zeros((), jnp.float32)))

  params = (w, b, v, c)
  with train.precision_scope(precision):
    diff = float(jnp.max(jnp.abs(jax.jit(unit)(x, *params) - jax.jit(plain)(x, *params))))
    run_jit = jax.jit(run)
    t0 = time.perf_counter()
    jax.block_until_ready(run_jit(params))
    compile_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(run_jit(params))
      rates.append(steps / (time.perf_counter() - t0))
  med = float(np.median(rates))
  flops = 6 * 2 * rows * width * width
  return {
      "workload": "layer",
      "impl": "nfscale",
      **environment(),
      "options": {
          "layer_impl": impl,
          "tiles": str(tiles) if impl == "pallas" else None,
          "rows": rows,
          "width": width,
          "omega": omega,
          "steps": steps,
          "repeats": repeats,
          "precision": precision,
          "matmul_precision": train.matmul_precision(precision),
      },
      "precision": precision,
      "steps_per_s": med,
      "rates": rates,
      "gflops": flops * med / 1e9,
      "max_abs_diff": diff,
      "compile_s": compile_s,
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
  and after it. With ``out``, every record is also appended there as a JSON line as soon
  as its run ends, so a suite that fails part-way keeps what it measured.
  """
  records: list[dict[str, Any]] = []
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    nfio.atomic_write_text(out, "")
  for r in range(rounds):
    for _, _, _, cmd in commands:
      before = loadavg()
      recs = _run_json(cmd)
      for rec in recs:
        rec.update(round=r, loadavg_before=before, loadavg_after=loadavg())
        if out:
          nfio.append_jsonl(out, rec)
      records.extend(recs)
  loads = [
      float(rec[k].split()[0])
      for rec in records
      for k in ("loadavg_before", "loadavg_after")
      if rec.get(k, "?") != "?"
  ]
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
  # A column per implementation compared with (none: no ratio columns at all).
  head = ["workload", "implementation", "median rate"] + [f"vs {r}" for r in refs]
  lines = ["| " + " | ".join(head) + " |"]
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
      lines.append("| " + " | ".join([wl, impl, f"{shown} {s['unit']}", *cells]) + " |")
  return "\n".join(lines)
