"""Where the device time of a profiled run went: kernels and categories of a trace.

:func:`summarize_trace` reads the perfetto trace that ``jax.profiler.trace`` writes
(``launch.bench --profile_dir``) and sums kernel time per name and per category
(matmul, fused matmul+sine, elementwise/reduction, copy); :func:`format_profile` renders it
as markdown.

Example:
  >>> _category("cutlass_80_tensorop_s1688gemm"), _category("loop_sine_fusion")
  ('matmul', 'elementwise/reduction')
  >>> _category("nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNN"), _category("splitKreduce_kernel")
  ('matmul', 'matmul')
  >>> _category("fused_sine_backward")
  'fused matmul+sine'
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from typing import Any

#: Kernel-name fragments that mark a matmul (cuBLAS/CUTLASS/XLA GEMM fusions, YNNPACK on
#: CPU); :func:`summarize_trace` puts every other kernel under "elementwise/reduction".
#: Recent cuBLAS names its Hopper GEMMs ``nvjet_...`` (no "gemm" in the name), and its
#: split-K GEMMs end in a ``splitKreduce_kernel``: without these two, an H100/H200 profile
#: would count most matmul time as elementwise, the very split the profile is there to show.
MATMUL_MARKERS = (
    "gemm",
    "dot",
    "cublas",
    "cutlass",
    "xmma",
    "matmul",
    "ynn",
    "nvjet",
    "splitkreduce",
)
#: The fused sine layers' Pallas kernels (:mod:`nfscale.fused`): a matmul and its
#: activation in one kernel, counted apart from both.
FUSED_MARKER = "fused_sine"


def _category(name: str) -> str:
  low = name.lower()
  if FUSED_MARKER in low:
    return "fused matmul+sine"
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
