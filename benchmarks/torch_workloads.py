"""nfscale's two benchmark workloads written the way a PyTorch user would write them.

``make bench`` runs this script beside ``python -m launch.bench`` (same machine, same
session, interleaved) and reports the ratios; see docs/benchmarks.md. Needs
``torch`` and ``scikit-image`` (``pip install '.[bench]'``).

    python benchmarks/torch_workloads.py image --mode eager
    python benchmarks/torch_workloads.py image --mode compile
    python benchmarks/torch_workloads.py ensemble --mode vmap
    python benchmarks/torch_workloads.py image --mode compile --device cuda

Workloads (the same as ``nfscale.bench``):

* ``image``: the 256x256 scikit-image astronaut, coordinates in [-1, 1]^2, an MLP
  2 -> 256 -> 256 -> 256 -> 3 with sin(30 x) activations and SIREN initialisation
  (first layer U(+-1/fan_in), later layers U(+-sqrt(6/fan_in)/30), ``nn.Linear``'s own
  biases), Adam at 1e-4 on the full batch of 65536 pixels, float32. Modes: ``eager``,
  ``compile`` (``torch.compile``), and the compile modes ``reduce-overhead`` and
  ``max-autotune``. Reports training steps per second.
* ``ensemble``: f(x) = sin 2pi x + sin 6pi x + sin 10pi x on 200 points of [-1, 1]; 64
  independent one-hidden-layer networks of width 256 with sinc(10 x) activations,
  LeCun-normal weights and zero biases, full-batch SGD at 1e-2. Modes: ``vmap``
  (``torch.func.vmap`` of ``torch.func.grad`` over the stacked parameters),
  ``vmap-compile`` (the same under ``torch.compile``) and ``sequential`` (one model
  after another with autograd). Reports model-steps per second.

Each run prints one JSON line per mode (``--mode`` takes a comma-separated list; the
modes then run one after another in this process, compiled state reset in between):
``workload``, ``impl`` (``torch-<mode>``), the rate (``steps_per_s`` or
``model_steps_per_s``: the median of ``rates`` over ``--repeats`` timed runs of
``--steps`` steps, after warm-up), ``first_step_s`` (image; compilation included),
``precision``, the device's name and versions.

``--precision`` is the matmul precision, the same knob as nfscale's ``precision``
(``nfscale.train.PRECISIONS``); on a GPU compare both sides at the same value:

* ``highest`` (the default): full float32 matmuls (``allow_tf32 = False``,
  ``torch.set_float32_matmul_precision("highest")``).
* ``tf32``: TF32 tensor-core matmuls with float32 accumulation (``allow_tf32 = True``,
  ``"high"``). ``--tf32`` is the same.
* ``bf16``: ``torch.autocast(dtype=torch.bfloat16)`` around the forward pass and the
  loss: matmuls take bfloat16 inputs and accumulate in float32. Autocast also returns
  their outputs, and so the activations after them, in bfloat16 (nfscale keeps those in
  float32), which halves that part of PyTorch's memory traffic; params and the
  optimizer stay float32 on both sides.

On the CPU all three compute float32 matmuls except ``bf16`` (CPU autocast).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

IMAGE_MODES = ("eager", "compile", "reduce-overhead", "max-autotune")
PRECISIONS = ("highest", "tf32", "bf16")
ENSEMBLE_MODES = ("vmap", "vmap-compile", "sequential")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workload", choices=["image", "ensemble"])
  parser.add_argument(
      "--mode",
      default=None,
      help=(
          f"image: {'|'.join(IMAGE_MODES)} (default eager); "
          f"ensemble: {'|'.join(ENSEMBLE_MODES)} (default vmap); "
          "several, comma-separated, run one after another"
      ),
  )
  parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
  parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
  parser.add_argument("--device", default="cpu", help="cpu or cuda")
  parser.add_argument(
      "--precision",
      default="highest",
      choices=PRECISIONS,
      help="matmul precision: highest (float32), tf32, bf16 (autocast)",
  )
  parser.add_argument("--tf32", action="store_true", help="same as --precision tf32")
  parser.add_argument("--size", type=int, default=256, help="image side (image)")
  parser.add_argument("--models", type=int, default=64, help="ensemble members")
  parser.add_argument("--points", type=int, default=200, help="curve points (ensemble)")
  parser.add_argument("--width", type=int, default=256, help="hidden width (ensemble)")
  args = parser.parse_args(argv)
  modes = IMAGE_MODES if args.workload == "image" else ENSEMBLE_MODES
  args.modes = (args.mode or modes[0]).split(",")
  bad = [m for m in args.modes if m not in modes]
  if bad:
    parser.error(f"--mode={bad[0]} is not a {args.workload} mode; choose from {', '.join(modes)}")
  if args.tf32:
    if args.precision not in ("highest", "tf32"):
      parser.error(f"--tf32 contradicts --precision={args.precision}")
    args.precision = "tf32"
  if args.steps < 1 or args.repeats < 1:
    parser.error("--steps and --repeats must be positive")
  return args


def set_precision(torch, precision: str) -> None:
  """The float32 matmul settings of ``--precision`` (bf16 adds :func:`autocast`)."""
  tf32 = precision == "tf32"
  torch.backends.cuda.matmul.allow_tf32 = tf32
  torch.backends.cudnn.allow_tf32 = tf32
  torch.set_float32_matmul_precision("high" if tf32 else "highest")


def autocast(torch, args):
  """bfloat16 autocast for ``--precision bf16``, else a no-op context."""
  import contextlib  # pylint: disable=import-outside-toplevel

  if args.precision != "bf16":
    return contextlib.nullcontext()
  return torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16)


class Timer:
  """Wall-clock timing that waits for the device."""

  def __init__(self, torch, device: str):
    self._torch, self._cuda = torch, device.startswith("cuda")

  def now(self) -> float:
    if self._cuda:
      self._torch.cuda.synchronize()
    return time.perf_counter()


def image_workload(torch, args) -> dict:
  import numpy as np  # pylint: disable=import-outside-toplevel
  from skimage import data, transform  # pylint: disable=import-outside-toplevel

  size, omega, width = args.size, 30.0, 256
  picture = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
  axis = np.linspace(-1.0, 1.0, size)
  grid_y, grid_x = np.meshgrid(axis, axis, indexing="ij")
  inputs = torch.as_tensor(
      np.stack([grid_x.ravel(), grid_y.ravel()], axis=1), dtype=torch.float32, device=args.device
  )
  target = torch.as_tensor(picture.reshape(-1, 3), dtype=torch.float32, device=args.device)

  class SineLayer(torch.nn.Module):
    """sin(omega * (W x + b)); the last layer of the field is a plain Linear."""

    def __init__(self, fan_in, fan_out, first):
      super().__init__()
      self.linear = torch.nn.Linear(fan_in, fan_out)
      bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / omega
      torch.nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x):
      return torch.sin(omega * self.linear(x))

  head = torch.nn.Linear(width, 3)
  torch.nn.init.uniform_(
      head.weight, -math.sqrt(6.0 / width) / omega, math.sqrt(6.0 / width) / omega
  )
  field = torch.nn.Sequential(
      SineLayer(2, width, True),
      SineLayer(width, width, False),
      SineLayer(width, width, False),
      head,
  ).to(args.device)
  forward = field
  if args.mode != "eager":
    forward = torch.compile(field, mode=None if args.mode == "compile" else args.mode)
  optimizer = torch.optim.Adam(field.parameters(), lr=1e-4)

  def train_step():
    optimizer.zero_grad(set_to_none=True)
    with autocast(torch, args):
      loss = torch.nn.functional.mse_loss(forward(inputs).float(), target)
    loss.backward()
    optimizer.step()
    return loss

  timer = Timer(torch, args.device)
  start = timer.now()
  train_step()
  first_step_s = timer.now() - start
  for _ in range(3):  # warm-up past the first step (allocator, autotuning)
    train_step()
  rates = []
  for _ in range(args.repeats):
    start = timer.now()
    for _ in range(args.steps):
      loss = train_step()
    rates.append(args.steps / (timer.now() - start))
  rate = statistics.median(rates)
  flops_per_step = 3 * 2 * size * size * (2 * width + 2 * width * width + width * 3)
  return {
      "workload": "image",
      "steps_per_s": rate,
      "rates": rates,
      "first_step_s": first_step_s,
      "gflops": flops_per_step * rate / 1e9,
      "final_psnr": -10.0 * math.log10(loss.item()),
      "size": size,
  }


def ensemble_workload(torch, args) -> dict:
  models, width, omega, lr = args.models, args.width, 10.0, 1e-2
  device = args.device
  x = torch.linspace(-1.0, 1.0, args.points, device=device)[:, None]
  y = sum(torch.sin(k * math.pi * x) for k in (2, 6, 10))
  generator = torch.Generator(device=device).manual_seed(0)
  # Stacked parameters of all models; LeCun normal: std 1/sqrt(fan_in).
  params = (
      torch.randn(models, 1, width, generator=generator, device=device),
      torch.zeros(models, 1, width, device=device),
      torch.randn(models, width, 1, generator=generator, device=device) / math.sqrt(width),
      torch.zeros(models, 1, 1, device=device),
  )

  def sinc(z):
    z = omega * z
    safe = torch.where(z == 0, torch.ones_like(z), z)
    return torch.where(z == 0, torch.ones_like(z), torch.sin(safe) / safe)

  def loss_of(w1, b1, w2, b2):
    with autocast(torch, args):
      pred = sinc(x @ w1 + b1) @ w2 + b2
    return torch.mean((pred.float() - y) ** 2)

  if args.mode.startswith("vmap"):
    from torch import func  # pylint: disable=import-outside-toplevel

    all_grads = func.vmap(func.grad(loss_of, argnums=(0, 1, 2, 3)))
    if args.mode == "vmap-compile":
      all_grads = torch.compile(all_grads)

    def train(ps):
      for _ in range(args.steps):
        ps = tuple(p - lr * g for p, g in zip(ps, all_grads(*ps)))
      return ps

  else:

    def train(ps):
      trained = []
      for m in range(models):
        own = [p[m].clone().requires_grad_(True) for p in ps]
        for _ in range(args.steps):
          grads = torch.autograd.grad(loss_of(*own), own)
          with torch.no_grad():
            own = [(p - lr * g).requires_grad_(True) for p, g in zip(own, grads)]
        trained.append(own)
      return trained

  timer = Timer(torch, device)
  train(params)  # warm-up (and compilation)
  rates = []
  for _ in range(args.repeats):
    start = timer.now()
    train(params)
    rates.append(models * args.steps / (timer.now() - start))
  return {
      "workload": "ensemble",
      "model_steps_per_s": statistics.median(rates),
      "rates": rates,
      "models": models,
      "points": args.points,
      "width": width,
  }


def main(argv=None) -> None:
  args = parse_args(argv)
  import torch  # pylint: disable=import-outside-toplevel  (so --help works without torch)

  set_precision(torch, args.precision)
  run = image_workload if args.workload == "image" else ensemble_workload
  cuda = args.device.startswith("cuda")
  name = torch.cuda.get_device_name(args.device) if cuda else "cpu"
  for i, mode in enumerate(args.modes):
    if i:  # a fresh start for the next mode: no compiled graphs or cached kernels reused
      torch._dynamo.reset()  # pylint: disable=protected-access
    args.mode = mode
    record = run(torch, args)
    record.update(
        impl=f"torch-{mode}",
        torch=torch.__version__,
        device=args.device,
        device_kind=name,
        threads=torch.get_num_threads(),
        precision=args.precision,
        tf32=args.precision == "tf32",
        steps=args.steps,
        repeats=args.repeats,
    )
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
  main()
