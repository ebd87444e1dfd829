"""Compiles the fused sine kernels for an NVIDIA GPU on a machine without one.

``nfscale.fused``'s Pallas kernels are lowered by JAX to Triton IR, and on a GPU
XLA compiles that IR with its own copy of Triton. Without a GPU, JAX can still
lower them (``jax.export`` for CUDA); this script takes the Triton IR of every
kernel of the image field's training step (2 -> 256 -> 256 -> 256 -> 3, the
sine layers and output layer as one ``fused.sine_mlp``) and compiles it with the
``triton`` package for a chosen GPU architecture (default sm_90: H100 and H200),
to check that it compiles and to read what each kernel costs the chip: shared
memory, registers per thread, and local memory ("stack": spilled registers
beyond the ~32 bytes that the sine's slow path keeps there).

    pip install triton      # any machine; no GPU needed
    python benchmarks/triton_compile.py OUT_DIR [--arch 90] [--tiles 64x64x32/4/2,...]

Writes ``OUT_DIR/kernels.jsonl`` (one line per kernel) and ``OUT_DIR/kernels.md`` (a
table), and keeps each kernel's IR as ``OUT_DIR/ir/*.ttir``. The Triton of the
``triton`` package is not the one inside jaxlib, so its register counts are an
estimate of what the GPU will run; a failure or a spill here is still a warning
worth heeding. The capture of the IR uses a private JAX function
(``jax._src.pallas.triton.lowering.lower_jaxpr_to_triton_module``); the script
says so and stops if JAX has moved it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings

IMAGE_LAYERS = (2, 256, 256, 256, 3)
#: The kernels of one training step of the image field, in the order JAX lowers them:
#: the forward kernels from the first layer up, then the backward kernels from the top.
KERNEL_ROLES = (
    "forward, layer 1 (2 -> 256)",
    "forward, layer 2 (256 -> 256)",
    "forward, layer 3 (256 -> 256)",
    "backward, layer 3 (g from the 3-wide output)",
    "backward, layer 2 (g from layer 3)",
    "backward, layer 1 (g from layer 2)",
)
PRECISIONS = ("default", "highest")  # default: TF32 dots on the GPU
# Each kernel compiles in its own process, with --triton_python's interpreter (the
# triton package need not live beside jax), and a crash stays one kernel's failure.
_COMPILE_ONE = "compile-one"


class CaptureUnavailable(RuntimeError):
  """This JAX has moved the private function :func:`capture_ir` relies on."""


def capture_ir(
    tiles: str,
    precision: str,
    layers=IMAGE_LAYERS,
    rows: int = 4096,
    device_kind: str = "NVIDIA H100",
) -> list[str]:
  """The Triton IR (text) of each kernel of one training step of a field, in lowering order.

  Args:
    tiles: the kernels' tiles (``fused.Tiles`` string form).
    precision: the engine's precision setting (``nfscale.train.PRECISIONS``) whose scope
      the step is traced in; ``default`` gives TF32 dots on the GPU.
    layers: the field's widths, input to output.
    rows: points per step (the IR does not depend on it beyond the grid).
    device_kind: the GPU to lower for (``fused.lowering_for_gpu``).

  Raises:
    CaptureUnavailable: JAX no longer has the private function this relies on.
  """
  import jax
  import jax.numpy as jnp
  from jax import export

  from nfscale import fused, train

  try:
    from jax._src.pallas.triton import pallas_call_registration as registration
  except ImportError as e:  # pragma: no cover - depends on the JAX version
    raise CaptureUnavailable(f"this JAX has no Pallas Triton lowering where expected: {e}") from e
  lowering = getattr(registration, "lowering", None)
  original = getattr(lowering, "lower_jaxpr_to_triton_module", None)
  if original is None:  # pragma: no cover - depends on the JAX version
    raise CaptureUnavailable("this JAX moved lower_jaxpr_to_triton_module; update capture_ir.")

  captured = []

  def spy(*args, **kwargs):
    result = original(*args, **kwargs)
    captured.append(result.module.operation.get_asm(enable_debug_info=False))
    return result

  params = [
      (jnp.full((k, n), 0.01, jnp.float32), jnp.zeros((n,), jnp.float32))
      for k, n in zip(layers[:-1], layers[1:])
  ]
  x = jnp.ones((rows, layers[0]), jnp.float32)

  def loss(p):
    return jnp.sum(fused.sine_mlp(x, p[:-1], p[-1], 30.0, impl="pallas", tiles=tiles) ** 2)

  triton_call = export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
  lowering.lower_jaxpr_to_triton_module = spy
  try:
    with train.precision_scope(precision), fused.lowering_for_gpu(device_kind):
      export.export(jax.jit(jax.grad(loss)), platforms=["cuda"], disabled_checks=[triton_call])(
          params
      )
  finally:
    lowering.lower_jaxpr_to_triton_module = original
  return captured


def compile_ir(path: str, arch: int, num_warps: int, num_stages: int) -> dict:
  """Compiles one Triton IR file with the ``triton`` package; its resource use."""
  warnings.filterwarnings("ignore")
  os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, stated
  import triton
  from triton.backends.compiler import GPUTarget

  kernel = triton.compile(
      path,
      target=GPUTarget("cuda", arch, 32),
      options={"num_warps": num_warps, "num_stages": num_stages},
  )
  tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
  with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
    f.write(kernel.asm["cubin"])
    f.flush()
    usage = subprocess.run(
        [os.path.join(tools, "cuobjdump"), "--dump-resource-usage", f.name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
  field = lambda name: int(re.search(rf"{name}:(\d+)", usage).group(1))  # noqa: E731
  ptx = kernel.asm["ptx"]
  return {
      "triton": triton.__version__,
      "shared_bytes": int(kernel.metadata.shared),
      "registers": field("REG"),
      "stack_bytes": field("STACK"),
      "tensor_core_ops": ptx.count("wgmma.mma_async") + ptx.count("mma.sync"),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("out_dir")
  parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 or 80")
  parser.add_argument("--tiles", default="", help="comma-separated; default: the GPU suite's")
  parser.add_argument("--triton_python", default=sys.executable, help="a Python with triton")
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == [_COMPILE_ONE]:  # the child process of one compilation
    path, arch, warps, stages = argv[1:]
    print(json.dumps(compile_ir(path, int(arch), int(warps), int(stages))))
    return 0
  args = parser.parse_args(argv)

  import jax

  from nfscale import fused, gpu_suite

  tilings = [t for t in args.tiles.split(",") if t] or list(gpu_suite.GPU_LAYER_TILES)
  ir_dir = os.path.join(args.out_dir, "ir")
  os.makedirs(ir_dir, exist_ok=True)
  records = []
  for tiles in tilings:
    t = fused.as_tiles(tiles)
    for precision in PRECISIONS:
      kernels = capture_ir(str(t), precision)
      if len(kernels) != len(KERNEL_ROLES):
        raise RuntimeError(f"expected {len(KERNEL_ROLES)} kernels, JAX lowered {len(kernels)}")
      for i, (role, ir) in enumerate(zip(KERNEL_ROLES, kernels)):
        path = os.path.join(ir_dir, f"{str(t).replace('/', '_')}_{precision}_{i}.ttir")
        with open(path, "w", encoding="utf-8") as f:
          f.write(ir)
        rec = {
            "jax": jax.__version__,
            "tiles": str(t),
            "precision": precision,
            "kernel": role,
            "dots": ir.count("tt.dot "),
            "arch": f"sm_{args.arch}",
        }
        done = subprocess.run(
            [args.triton_python, os.path.abspath(__file__), _COMPILE_ONE, path]
            + [str(args.arch), str(t.num_warps), str(t.num_stages)],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
          rec.update(json.loads(done.stdout.strip().splitlines()[-1]))
        else:
          rec["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
        records.append(rec)
        print(json.dumps(rec), flush=True)
  with open(os.path.join(args.out_dir, "kernels.jsonl"), "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  with open(os.path.join(args.out_dir, "kernels.md"), "w", encoding="utf-8") as f:
    versions = {(r["jax"], r.get("triton", "?")) for r in records}
    f.write(
        f"Triton IR of JAX {', '.join(sorted(v[0] for v in versions))}, compiled for "
        f"sm_{args.arch} by triton {', '.join(sorted(v[1] for v in versions))} "
        "(`python benchmarks/triton_compile.py`). Precision `default` is TF32 on the GPU.\n\n"
        + format_table(records)
        + "\n"
    )
  return 1 if any("error" in r for r in records) else 0


def format_table(records) -> str:
  """A markdown table of :func:`main`'s records."""
  lines = [
      (
          "| tiles | precision | kernel | dots | shared memory | registers | stack bytes "
          "| tensor-core instructions |"
      ),
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in records:
    if "error" in r:
      cells = ["failed: " + r["error"], "", "", ""]
    else:
      cells = [
          f"{r['shared_bytes'] // 1024} KiB",
          str(r["registers"]),
          str(r["stack_bytes"]),
          str(r["tensor_core_ops"]),
      ]
    lines.append(
        f"| {r['tiles']} | {r['precision']} | {r['kernel']} | {r['dots']} | "
        + " | ".join(cells)
        + " |"
    )
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
