"""The roofline of a field's training step: model FLOPs and bytes against a GPU's peaks.

A small module of its own because both the benchmarks (:mod:`nfscale.bench`,
:mod:`nfscale.gpu_suite`) and the sweeps (:func:`nfscale.sweep_report.achieved_flops`) hold
their measured rates against the same peaks.

Example:
  >>> r = roofline_fields("image", 305.0, "tf32", "NVIDIA H200", size=512)
  >>> r["roofline"]["gpu"], r["roofline"]["bound"]
  ('H200', 'memory')
"""

from __future__ import annotations

from typing import Any, Sequence

import jax

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

#: The same count for the fused Pallas sine layers (``fused="pallas"``,
#: :func:`nfscale.fused.sine_mlp`), which keep ``z`` and the cotangent ``g_h`` on the
#: chip. Forward 2: the layer's kernel writes ``h``; the next layer's kernel reads it.
#: Backward 5: the next layer's backward kernel reads ``h`` (to recompute its own
#: ``z``) and its weight-gradient matmul reads ``h``; this layer's backward kernel
#: computes ``g_h = g_z_next W_next^T`` tile by tile next to the recomputed ``z`` and
#: writes only ``g_z``; this layer's weight-gradient matmul and the backward kernel of
#: the layer below (its ``g_h``) read ``g_z``.
ELEMENTWISE_PASSES_FUSED = 7


#: Of :data:`ELEMENTWISE_PASSES`, those made by kernels that do no matmul: the
#: activation reads ``z`` and writes ``h`` (2); its backward reads ``g_h`` and ``z`` and
#: writes ``g_z`` (3). The other 6 are a matmul's operands or results. With the fused
#: Pallas layers every pass belongs to a kernel that also multiplies (0). XLA runs the
#: kernels of a step one after another, so these passes add to the matmuls' time
#: rather than overlapping it (:func:`image_bounds`' ``serial_steps_per_s``).
ELEMENTWISE_KERNEL_PASSES = {"off": 5, "pallas": 0}


def elementwise_passes(fused: str = "off") -> int:
  """:data:`ELEMENTWISE_PASSES` of a run's ``fused`` setting (``"auto"`` counts as on a GPU).

  >>> elementwise_passes("off"), elementwise_passes("pallas"), elementwise_passes("jax")
  (11, 7, 11)
  """
  return ELEMENTWISE_PASSES_FUSED if fused in ("pallas", "auto") else ELEMENTWISE_PASSES


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


def recompute_flops(layers: Sequence[int], points: int, members: int = 1) -> int:
  """FLOPs the fused sine layers add to a step: every sine layer's forward product again.

  :func:`nfscale.fused.sine_mlp` recomputes each pre-activation in the backward pass
  (all layers but the linear output layer). Not useful work, so not in :func:`step_flops`
  or the achieved FLOP/s; it is in the compute term of a fused run's roofline bound.

  >>> round(recompute_flops(IMAGE_LAYERS, 256 * 256) / step_flops(IMAGE_LAYERS, 256 * 256), 3)
  0.331
  """
  return 2 * points * members * sum(a * b for a, b in zip(layers[:-2], layers[1:-1]))


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
    extra_flops_per_step: float = 0.0,
) -> dict[str, Any]:
  """Achieved FLOP/s and bytes/s of a measured rate against the peaks (the roofline).

  The roofline bound is ``max((flops + extra) / peak_flops, bytes / peak_bytes_per_s)``
  seconds per step, ``extra`` being work the program does beyond the useful ``flops``
  (the fused layers' recomputation, :func:`recompute_flops`); ``roofline_fraction`` is
  the measured rate over the rate at that bound. Achieved FLOP/s count useful work only.

  Returns:
    ``achieved_tflops``, ``achieved_tbytes_per_s``, ``flops_fraction``,
    ``bandwidth_fraction``, ``intensity`` (FLOP/byte), ``bound`` (``"compute"`` or
    ``"memory"``), ``roofline_steps_per_s`` and ``roofline_fraction``.

  >>> r = roofline(100.0, 1e12, 1e10, 5e14, 5e12)
  >>> r["bound"], r["roofline_steps_per_s"], r["roofline_fraction"]
  ('compute', 500.0, 0.2)
  """
  t_flops = (flops_per_step + extra_flops_per_step) / peak_flops
  t_bytes = bytes_per_step / peak_bytes_per_s
  t_min = max(t_flops, t_bytes)
  return {
      "achieved_tflops": steps_per_s * flops_per_step / 1e12,
      "achieved_tbytes_per_s": steps_per_s * bytes_per_step / 1e12,
      "flops_fraction": steps_per_s * flops_per_step / peak_flops,
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
    fused: str = "off",
) -> dict[str, Any]:
  """A record's ``flops_per_step``, ``bytes_per_step``, ``gflops`` and ``roofline``.

  For the ensemble a "step" is one model's step (``rate`` in model-steps/s).
  ``roofline`` is ``None`` off the GPUs of :data:`GPU_PEAKS`; ``device_kind`` defaults
  to JAX's first device. ``fused`` picks the byte model (:func:`elementwise_passes`) and,
  when on, adds the recomputation to the compute term (:func:`recompute_flops`).
  """
  n = size * size if workload == "image" else points
  layers = workload_layers(workload, width)
  flops = step_flops(layers, n)
  extra = recompute_flops(layers, n) if fused != "off" else 0
  nbytes = step_bytes(layers, n, passes=elementwise_passes(fused))
  if device_kind is None:
    device_kind = jax.devices()[0].device_kind
  peaks = gpu_peaks(device_kind)
  roof = None
  if peaks is not None:
    key = PEAK_OF_PRECISION.get(precision, "tf32")
    roof = {
        "gpu": peaks["name"],
        "peak": key,
        **roofline(rate, flops, nbytes, peaks[key], peaks["hbm"], extra),
    }
  return {
      "flops_per_step": flops,
      "bytes_per_step": nbytes,
      "gflops": flops * rate / 1e9,
      "roofline": roof,
  }


def image_bounds(
    gpu: str = "H200",
    sizes: Sequence[int] = (256, 512),
    precisions: Sequence[str] = ("tf32", "highest"),
) -> list[dict[str, Any]]:
  """The image workload's roofline rates (steps/s) on ``gpu``, plain and fused Pallas layers.

  What the model says each configuration could reach at best, per size and precision,
  and which term binds: the upper limit any measured rate is a fraction of
  (``bound_steps_per_s``). ``serial_steps_per_s`` is the same model for kernels that run
  one after another: the matmul kernels at the larger of their FLOP and byte times, then
  the kernels that only apply the activation (:data:`ELEMENTWISE_KERNEL_PASSES`) at
  their byte time. The plain layers' elementwise kernels cannot hide behind the matmuls;
  the fused layers have none.

  >>> rows = image_bounds("H200", sizes=[512], precisions=["tf32", "highest"])
  >>> [(r["layers"], round(r["bound_steps_per_s"]), r["bound"], round(r["serial_steps_per_s"]))
  ...  for r in rows]  # doctest: +NORMALIZE_WHITESPACE
  [('plain', 542, 'memory', 542), ('fused=pallas', 851, 'memory', 851),
   ('plain', 322, 'compute', 253), ('fused=pallas', 242, 'compute', 242)]
  """
  peaks = GPU_PEAKS[gpu]
  rows = []
  for precision in precisions:
    for size in sizes:
      for fused in ("off", "pallas"):
        n = size * size
        flops = step_flops(IMAGE_LAYERS, n)
        extra = recompute_flops(IMAGE_LAYERS, n) if fused != "off" else 0
        nbytes = step_bytes(IMAGE_LAYERS, n, passes=elementwise_passes(fused))
        peak = peaks[PEAK_OF_PRECISION[precision]]
        r = roofline(1.0, flops, nbytes, peak, peaks["hbm"], extra)
        t_compute, t_memory = (flops + extra) / peak, nbytes / peaks["hbm"]
        t_alone = t_memory * ELEMENTWISE_KERNEL_PASSES[fused] / elementwise_passes(fused)
        t_serial = max(t_compute, t_memory - t_alone) + t_alone
        rows.append({
            "size": size,
            "precision": precision,
            "layers": "plain" if fused == "off" else f"fused={fused}",
            "compute_ms": t_compute * 1e3,
            "memory_ms": t_memory * 1e3,
            "bound": r["bound"],
            "bound_steps_per_s": r["roofline_steps_per_s"],
            "serial_steps_per_s": 1.0 / t_serial,
        })
  return rows
