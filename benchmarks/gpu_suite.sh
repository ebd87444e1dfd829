#!/usr/bin/env bash
# The GPU comparison of nfscale and PyTorch in one command (docs/benchmarks.md, "GPU: how
# to measure"). Run from anywhere on a machine with one NVIDIA GPU and a Python that has
# jax (CUDA), torch (CUDA), flax, optax, absl-py and scikit-image:
#
#   bash benchmarks/gpu_suite.sh OUT_DIR [extra launch.bench flags]
#
# e.g. `bash benchmarks/gpu_suite.sh "$OUT"`; `QUICK=1 bash benchmarks/gpu_suite.sh DIR`
# is a ~1-minute smoke test at a tiny size. PY picks the interpreter (default python3; it
# runs both sides). Writes OUT_DIR/env.txt, OUT_DIR/gpu_suite.jsonl (every JSON line, as
# it comes), OUT_DIR/summary.md and summary.json (ratios, roofline fractions),
# OUT_DIR/profile.md and the jax.profiler trace under OUT_DIR/trace/. No run starts after
# --budget_s (default 450 s), so the whole command ends within about 9 minutes. The same
# command again with the same OUT_DIR resumes: runs that ended well are kept, the others
# run (env.txt and stderr.txt are appended to).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR=${1:-runs/gpu_suite}
shift || true
PY=${PY:-python3}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
# A fresh inductor cache: torch.compile's first_step_s includes compilation, as
# nfscale's includes XLA's (neither side reuses a cache from an earlier run).
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d)}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
    --format=csv 2>/dev/null || echo "nvidia-smi: not available"
  "$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())' 2>&1 || true
  "$PY" -c 'import torch; print("torch", torch.__version__, torch.version.cuda,
    torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")' 2>&1 || true
} | tee -a "$OUT_DIR/env.txt"

ARGS=()
if [[ "${QUICK:-0}" == 1 ]]; then
  ARGS=(--gpu_sizes=64 --steps=5 --repeats=2 --ensemble_steps=20 --budget_s=120
        --gpu_torch_modes=image:eager,image:compile,ensemble:vmap)
fi

"$PY" -m launch.bench --gpu_suite --out_dir="$OUT_DIR" --torch_python="$PY" \
  --torch_reference=benchmarks/torch_workloads.py ${ARGS[@]+"${ARGS[@]}"} "$@" \
  2> >(tee -a "$OUT_DIR/stderr.txt" >&2)
