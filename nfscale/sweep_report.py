"""A sweep's records and its report: finished points, power-law fits, tables, figures.

The running half of a sweep (:mod:`nfscale.sweep`) appends every trained width
to ``evals*.jsonl`` and every finished (arm, N) point to ``points*.jsonl``
(one file per host). This module reads them back and writes the report:

* :func:`write_report` fits ``width ~ a N^b_width`` (the last hidden width,
  which the theorems bound) and ``params ~ a N^b`` per (arm, scheme) with
  bootstrap intervals (labelled not meaningful below
  :data:`nfscale.scaling.MIN_CI_POINTS` points) and writes ``table.csv``,
  ``table.md``, ``fits.json`` and the plots ``scaling.png``,
  ``figure_{width,params}.{png,pdf}`` and ``theory.png``. It is always
  written, however little finished: a fit that cannot be made says why
  (``note``), and points no width reached are marked as censored.
* :func:`format_report` prints the fits for a terminal.
* :func:`config_rules` is how a workdir's stored config is compared with a
  requested one, for the run and the report alike.

It knows nothing of training, so a report can be rebuilt anywhere from the
records alone (``launch.sweep --report_only``).

Example:
  >>> sorted(config_rules())
  ['defaults', 'keys_ignored', 'renamed']
"""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np

from nfscale import checks, config_lib, io, plots, roofline, scaling, tables

EVALS_GLOB = "evals*.jsonl"
POINTS_GLOB = "points*.jsonl"
# Fewest points (with at least two distinct N) a power-law fit needs.
MIN_FIT_POINTS = 3
# Keys that do not change results: a rerun may differ in them.
IGNORED_KEYS = ("progress", "overwrite", "mode", "checkpoint_every")


#: Sweep config keys renamed since workdirs were first written (old -> new): an old
#: workdir's config.json still matches a config that uses the new names.
RENAMED_KEYS = {"target_psnr": "target"}


def config_rules() -> dict[str, Any]:
  """How a workdir's stored config is compared with a requested one (``io``'s keywords).

  Settings that change no result are ignored; a workdir written before a key
  existed ran at the key's default, or at its ``config_lib.LEGACY_VALUES`` entry
  where adding the key changed the behaviour; renamed keys are read under their
  new names.
  """
  return {
      "keys_ignored": IGNORED_KEYS,
      "defaults": config_lib.stored_defaults(config_lib.sweep_config()),
      "renamed": RENAMED_KEYS,
  }


def as_run(config: Any, workdir: str) -> tuple[Any, dict[str, Any]]:
  """``config`` with the old behaviour of the keys that ``workdir``'s run predates.

  A key of ``config_lib.LEGACY_VALUES`` that the stored ``config.json`` lacks
  was added after the run and changed what runs do; the run went as the
  legacy value says. A report only reads the records, so rebuilding it with
  that value describes what ran, where today's default would be refused as
  another configuration (a training run still has to ask for the old value:
  it would train with it).

  Args:
    config: the sweep config of the command (not modified).
    workdir: a workdir holding ``config.json``.

  Returns:
    ``(config, adopted)``: a copy with the legacy values set, and the
    ``{dotted key: legacy value}`` it set (empty: ``config`` itself).
  """
  try:
    stored = io.flatten(io.read_stored_config(workdir))
  except FileNotFoundError:
    return config, {}  # write_report says there is nothing to read
  requested = io.flatten(config.to_dict())
  adopted = {
      key: value
      for key, value in config_lib.LEGACY_VALUES.items()
      if key in requested and key not in stored and requested[key] != value
  }
  if not adopted:
    return config, {}
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key, value in adopted.items():
      *parents, last = key.split(".")
      node = config
      for part in parents:
        node = node[part]
      node[last] = value
  return config, adopted


def sweep_points(config: Any) -> list[tuple[str, int]]:
  """All (arm, N) points of the sweep, in run order (N ascending within an arm)."""
  arms = list(checks.config_sequence(config, "sweep.arms"))
  checks.config_sequence(config, "sweep.ns")
  unknown = [a for a in arms if a not in config.arms]
  if unknown:
    raise ValueError(
        f"config.sweep.arms: unknown arms {unknown}; defined arms (config.arms): "
        f"{', '.join(config.arms.keys())}."
    )
  if not arms:  # no point at all: config.json was written, then the empty report failed
    raise ValueError(
        "config.sweep.arms must name at least one arm; defined arms: "
        f"{', '.join(config.arms.keys())}."
    )
  if not config.sweep.ns:
    raise ValueError("config.sweep.ns must not be empty.")
  if not all(checks.is_int(n) and n >= 1 for n in config.sweep.ns):
    # Checked here, before sorted() and int(): ('abc',), (nan,) and (inf,) ended in a
    # TypeError, ValueError or OverflowError of their own, with a traceback.
    raise ValueError(f"config.sweep.ns must hold positive integers, got {tuple(config.sweep.ns)}.")
  return [(a, int(n)) for a in arms for n in sorted(config.sweep.ns)]


def read_points(workdir: str) -> list[dict[str, Any]]:
  """Every finished point of every host, deduplicated by (arm, N) (first wins)."""
  seen, out = set(), []
  for path in sorted(glob.glob(os.path.join(workdir, POINTS_GLOB))):
    for rec in io.read_jsonl(path):
      key = (rec["arm"], rec["n"])
      if key not in seen:
        seen.add(key)
        out.append(rec)
  return out


def _fit_rows(points: list[dict[str, Any]], arm: str, scheme: str, key: str) -> tuple:
  ns, vals = [], []
  for p in points:
    if p["arm"] == arm and p["schemes"].get(scheme, {}).get(key) is not None:
      ns.append(p["n"])
      vals.append(p["schemes"][scheme][key])
  return np.array(ns, float), np.array(vals, float)


def _trained_param_counts(workdir: str) -> dict[tuple[str, int, int], int]:
  """``{(arm, n, width): param_count}`` of every trained width (all hosts)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(workdir, EVALS_GLOB))):
    for rec in io.read_jsonl(path):
      out[(rec["arm"], rec["n"], rec["width"])] = rec.get("param_count")
  return out


def achieved_flops(workdir: str, precision: str = "default") -> dict[str, Any] | None:
  """The sweep's useful model FLOP/s over its evaluations' wall time (all hosts).

  Compilation and everything else an evaluation waits for are in its time, so
  this is what the sweep got out of the device, not a kernel's speed. On a GPU
  of :data:`nfscale.roofline.GPU_PEAKS` the peak of the run's matmul precision is
  given beside it (TF32 for ``default`` and ``tf32``, float32 for ``highest``).

  Returns:
    ``None`` without records that hold ``model_flops``; else ``flops``,
    ``seconds``, ``flops_per_s``, ``device`` and ``peak_flops_per_s`` (``None``
    off the known GPUs).
  """
  flops = seconds = 0.0
  devices = set()
  for path in sorted(glob.glob(os.path.join(workdir, EVALS_GLOB))):
    for rec in io.read_jsonl(path):
      if "model_flops" not in rec:
        continue
      flops += rec["model_flops"]
      # A bucket's records share its time; each holds its share in "seconds".
      seconds += rec["seconds"]
      devices.add(rec.get("device", "?"))
  if not seconds:
    return None
  device = ", ".join(sorted(devices))
  peaks = roofline.gpu_peaks(device) if len(devices) == 1 else None
  key = roofline.PEAK_OF_PRECISION.get(precision, "tf32")
  return {
      "flops": flops,
      "seconds": seconds,
      "flops_per_s": flops / seconds,
      "device": device,
      "peak_flops_per_s": None if peaks is None else peaks[key],
  }


def member_batching(workdir: str) -> dict[str, Any]:
  """How the trained evaluations were split into member batches (all hosts).

  Returns:
    ``evaluations`` (records with batching recorded), ``split`` (those trained
    in more than one batch) and ``smallest_batch`` (``None`` when none split).
  """
  recorded, split, smallest = 0, 0, None
  for path in sorted(glob.glob(os.path.join(workdir, EVALS_GLOB))):
    for rec in io.read_jsonl(path):
      sizes = rec.get("member_batches")
      if not sizes:
        continue
      recorded += 1
      if len(sizes) > 1:
        split += 1
        smallest = min(sizes) if smallest is None else min(smallest, min(sizes))
  return {"evaluations": recorded, "split": split, "smallest_batch": smallest}


def lr_edges(workdir: str, points: list[dict[str, Any]], lrs: Any) -> dict[tuple, bool | None]:
  """``{(arm, n, scheme): edge}`` for the found rows: whether the final grid fails to bracket.

  ``edge`` is true when the row's best rate is an end of its point's final
  grid (``lrs`` for records from before grids were recorded) and no seed
  diverged at that rate at the found width: the optimum may lie beyond the
  grid, so the width may be an overestimate. It happens when
  ``sweep.lr_extensions`` ran out (or is 0, or the grid has one rate). None
  when the width's record is missing.
  """
  evals = {}
  for path in sorted(glob.glob(os.path.join(workdir, EVALS_GLOB))):
    for rec in io.read_jsonl(path):
      grid = tuple(float(v) for v in rec.get("lrs", lrs))
      for sc in rec["schemes"]:
        evals[(rec["arm"], rec["n"], rec["width"], sc, grid)] = rec
  out = {}
  for p in points:
    grid = tuple(float(v) for v in p.get("lrs", lrs))
    for sc, r in p["schemes"].items():
      if not r["found"] or r.get("best_lr") is None:
        continue
      best = float(r["best_lr"])
      rec = evals.get((p["arm"], p["n"], r["min_width"], sc, grid))
      if best not in (grid[0], grid[-1]):
        out[(p["arm"], p["n"], sc)] = False
      elif rec is None or best not in grid:
        out[(p["arm"], p["n"], sc)] = None
      else:
        j = grid.index(best)
        out[(p["arm"], p["n"], sc)] = not any(row[j] for row in rec["schemes"][sc]["diverged"])
  return out


def _fit_fields(fit: scaling.PowerLawFit, suffix: str) -> dict[str, float]:
  """A fit's fits.json fields: ``a``, ``b``, both intervals of ``b``, ``r2``, keys + ``suffix``.

  The bootstrap interval falls short of 95% with 5 to 9 points; the t interval of
  the same slope holds about as often as it claims (``fit_power_law``).
  """
  b = f"b{suffix}"
  return {
      f"a{suffix}": fit.a,
      b: fit.b,
      f"{b}_ci_low": fit.b_ci[0],
      f"{b}_ci_high": fit.b_ci[1],
      f"{b}_t_low": fit.b_ci_t[0],
      f"{b}_t_high": fit.b_ci_t[1],
      f"r2{suffix}": fit.r2,
  }


def _fit(points: list[dict[str, Any]], arm: str, scheme: str) -> dict[str, Any]:
  """One fits.json entry: the fit, or ``note`` saying why there is none."""
  mine = [p for p in points if p["arm"] == arm and scheme in p["schemes"]]
  ns, counts = _fit_rows(points, arm, scheme, "param_count")
  entry: dict[str, Any] = {
      "arm": arm,
      "scheme": scheme,
      "points": int(ns.size),
      "censored": sum(not p["schemes"][scheme]["found"] for p in mine),
  }
  if not mine:
    entry["note"] = "no fit: no finished point"
  elif ns.size == 0:
    entry["note"] = "no fit: no N reached the target"
  elif ns.size < MIN_FIT_POINTS:
    entry["note"] = f"no fit: {ns.size} N reached the target, a fit needs {MIN_FIT_POINTS}"
  elif np.unique(ns).size < 2:
    entry["note"] = "no fit: all points have the same N"
  else:
    try:
      f = scaling.fit_power_law(ns, counts, n_boot=2000, seed=0)
    except ValueError as e:  # e.g. a non-positive count in a hand-edited file
      entry["note"] = f"no fit: {e}"
    else:
      entry.update(_fit_fields(f, ""))
      # The theorems bound the grown (last hidden) width; the parameter count
      # adds a fixed prefix (deep nets) that flattens its exponent.
      nw, ws = _fit_rows(points, arm, scheme, "min_width")
      entry.update(_fit_fields(scaling.fit_power_law(nw, ws, n_boot=2000, seed=0), "_width"))
      entry["ci_meaningful"] = scaling.ci_meaningful(f.n_points)
      if not entry["ci_meaningful"]:
        entry["ci_note"] = (
            f"interval from {f.n_points} points: not a meaningful 95% "
            f"interval (needs >= {scaling.MIN_CI_POINTS})"
        )
      if entry["censored"]:
        # The fit leaves the censored N out, which biases b low: say so.
        entry["note"] = f"fit over reached N only; {entry['censored']} N censored"
  return entry


def target_label(config: Any) -> str:
  """The target as the report states it, with the data range its PSNR is taken over.

  ``10 log10(range^2 / MSE)`` depends on the range: the shallow curve's 35 dB at
  range 1 is 48.0 dB over the curve's own peak-to-peak range (its ``range_psnr``
  preset), so a label without the range is ambiguous between the two.

  Example:
    >>> import ml_collections
    >>> target_label(ml_collections.ConfigDict({"target": 35.0, "data_range": 4.4617}))
    'target 35 dB (PSNR over data range 4.462)'
  """
  label = f"target {config.target:g} dB"
  if config.get("data_range") is not None:
    label += f" (PSNR over data range {float(config.data_range):.4g})"
  return label


def write_report(config: Any, workdir: str) -> dict[str, Any]:
  """Table (CSV + markdown), power-law fits and plots from the finished points.

  The report is always written, however little finished: a (arm, scheme)
  without enough reached points gets a fit entry with ``note`` saying why
  there is no fit ("no fit: ..."), and a point no width up to the search
  limit reached is censored: ``found`` is false, ``min_width`` is empty and
  ``lower_bound`` (with its parameter count ``lower_bound_params``) is the
  largest width that failed, a lower bound on the true minimum. The plot
  draws censored points as hollow triangles at that lower bound.

  Args:
    config: the sweep config; must be the one ``workdir`` holds (as for
      :func:`run_sweep`, apart from keys that do not change results), so a
      report is never labelled with another run's settings.
    workdir: the sweep's directory.

  Returns:
    ``rows`` (one per point and scheme), ``fits``, ``points`` (finished),
    ``expected_points`` and the names of the plot files (``artifacts``).

  Raises:
    ValueError: ``workdir`` holds no sweep, or one of a different config
      (the message lists the differing keys).
  """
  io.check_config(workdir, config.to_dict(), **config_rules())
  points = sorted(
      read_points(workdir),
      key=lambda p: (
          list(config.sweep.arms).index(p["arm"]) if p["arm"] in config.sweep.arms else 99,
          p["n"],
      ),
  )
  trained = _trained_param_counts(workdir)
  edges = lr_edges(workdir, points, config.lrs)
  rows = []
  for p in points:
    for sc, r in p["schemes"].items():
      if not r["found"] and r.get("lower_bound"):
        # Kept in the point record for the plot; points.jsonl is not rewritten.
        r["lower_bound_params"] = trained.get((p["arm"], p["n"], r["lower_bound"]))
      rows.append({
          "arm": p["arm"],
          "n": p["n"],
          "scheme": sc,
          "min_width": r["min_width"],
          "param_count": r["param_count"],
          "found": r["found"],
          "lower_bound": r["lower_bound"],
          "best_lr": r["best_lr"],
          "lr_edge": edges.get((p["arm"], p["n"], sc)),
          "condition_width": (r.get("theory") or {}).get("condition_width"),
          "lower_bound_params": r.get("lower_bound_params"),
      })
  cols = [
      "arm",
      "n",
      "scheme",
      "min_width",
      "param_count",
      "found",
      "lower_bound",
      "best_lr",
      "lr_edge",
      "condition_width",
      "lower_bound_params",
  ]
  tables.write_csv(os.path.join(workdir, "table.csv"), rows, cols)
  fits = [_fit(points, arm, sc) for arm in config.sweep.arms for sc in config.schemes]
  fit_cols = [
      "arm",
      "scheme",
      "points",
      "censored",
      "b_width",
      "b_width_ci_low",
      "b_width_ci_high",
      "b_width_t_low",
      "b_width_t_high",
      "b",
      "b_ci_low",
      "b_ci_high",
      "b_t_low",
      "b_t_high",
      "r2",
      "ci_note",
      "note",
  ]
  censored = sum(not r["found"] for r in rows)
  batching = member_batching(workdir)
  any_evals = any(io.read_jsonl(p) for p in glob.glob(os.path.join(workdir, EVALS_GLOB)))
  if not any_evals:
    batch_line = "member batches: no evaluation trained yet"
  elif not batching["evaluations"]:
    batch_line = "member batches: not recorded (evaluations from before batching existed)"
  elif batching["split"]:
    fixed = int(config.sweep.get("member_batch", 0))
    why = f"sweep.member_batch={fixed}" if fixed > 0 else "to fit the device's memory"
    batch_line = (
        f"member batches: {batching['split']} of {batching['evaluations']} evaluations were "
        f"split ({why}; smallest batch {batching['smallest_batch']} members)"
    )
  else:
    batch_line = f"member batches: each of {batching['evaluations']} evaluations trained at once"
  speed = achieved_flops(workdir, str(config.get("precision", "default")))
  if speed is None and not any_evals:
    speed_line = "model FLOP/s: no evaluation trained yet"
  elif speed is None:
    speed_line = "model FLOP/s: not recorded (evaluations from before it was)"
  else:
    speed_line = (
        f"model FLOP/s: {speed['flops_per_s'] / 1e9:.3g} GFLOP/s over {speed['seconds']:.0f} s "
        f"of evaluations on {speed['device']} (6 FLOPs per parameter, point and step; "
        "compilation included)"
    )
    if speed["peak_flops_per_s"]:
      speed_line += (
          f", {speed['flops_per_s'] / speed['peak_flops_per_s']:.2%} of the "
          f"{speed['peak_flops_per_s'] / 1e12:.0f} TFLOP/s peak"
      )
  md = [
      "# Scaling sweep",
      "",
      (
          f"{target_label(config)}, {config.steps} steps, "
          f"{config.optimizer} lrs {tuple(config.lrs)}, seeds {tuple(config.seeds)}, "
          f"rule {config.sweep.rule}"
      ),
      "",
      f"points finished: {len(points)} / {len(sweep_points(config))}",
      "",
      batch_line,
      "",
      speed_line,
      "",
      "## Minimum width per point",
      "",
      tables.markdown_table(rows, cols),
  ]
  if censored:
    md += [
        (
            f"{censored} row(s) censored (`found` False): no width up to "
            f"{int(config.sweep.max_width)} reached the target, so the minimum width is above "
            "`lower_bound` (`lower_bound_params` parameters); they are left out of the fits."
        ),
        "",
    ]
  at_edge = sum(bool(r["lr_edge"]) for r in rows)
  if at_edge:
    md += [
        (
            f"{at_edge} row(s) with `lr_edge` True: the best rate is an end of the point's final "
            "grid and did not diverge there, so the grid does not bracket it and the width may "
            "be an overestimate (more `sweep.lr_extensions` would search past it)."
        ),
        "",
    ]
  md += [
      "## Power-law fits",
      "",
      (
          "`b_width`: last hidden width ~ N^b_width (the quantity the theorems bound); "
          "`b`: parameter count ~ N^b (includes the fixed layers). Intervals: 95% bootstrap "
          f"over points, not meaningful from fewer than {scaling.MIN_CI_POINTS} points "
          "(`ci_note`). Censored N (no width reached the target) are left out of the fits "
          "(`censored` counts them)."
      ),
      "",
      tables.markdown_table(fits, fit_cols),
  ]
  io.atomic_write_text(os.path.join(workdir, "table.md"), "\n".join(md) + "\n")
  io.atomic_write_json(os.path.join(workdir, "fits.json"), fits)
  artifacts = [
      plots.scaling_curves(
          points,
          list(config.sweep.arms),
          list(config.schemes),
          fits,
          os.path.join(workdir, "scaling.png"),
          title=target_label(config),
      )
  ]
  # The paper's layout (Fig. 3/4): both arms on one axis, normal and uniform
  # schemes in separate panels, reference slopes; widths, then parameters.
  for quantity, stem in (("min_width", "figure_width"), ("param_count", "figure_params")):
    artifacts += plots.scaling_figure(
        points,
        list(config.sweep.arms),
        list(config.schemes),
        fits,
        os.path.join(workdir, stem),
        quantity=quantity,
        title=target_label(config),
    )
  if any("theory" in r for p in points for r in p["schemes"].values()):
    artifacts.append(
        plots.theory_widths(
            points,
            list(config.sweep.arms),
            list(config.schemes),
            os.path.join(workdir, "theory.png"),
        )
    )
  return io.to_jsonable({
      "rows": rows,
      "fits": fits,
      "points": len(points),
      "expected_points": len(sweep_points(config)),
      "member_batching": batching,
      "model_flops": speed,
      "artifacts": [os.path.basename(a) for a in artifacts],
  })


def format_report(report: dict[str, Any]) -> str:
  """The fits (and how complete the sweep is) as terminal text.

  Args:
    report: what :func:`write_report` returns.

  Returns:
    One line per (arm, scheme): reached points, the exponent with its 95%
    interval, or why there is no fit.
  """
  lines = [
      f"points finished: {report['points']} / {report['expected_points']}",
      (
          "b_width: last hidden width ~ N^b; b_params: parameters ~ N^b; [95% CI] "
          f"(* = fewer than {scaling.MIN_CI_POINTS} points: not meaningful)"
      ),
      f"{'arm':<10}{'scheme':<18}{'pts':>4}{'b_width':>9}  {'CI':<16}{'b_params':>9}  CI",
  ]
  for f in report["fits"]:
    if f.get("b") is None:
      lines.append(
          f"{f['arm']:<10}{f['scheme']:<18}{f['points']:>4}{'-':>9}  {f.get('note', 'no fit')}"
      )
    else:
      star = "" if f.get("ci_meaningful", True) else "*"
      ci_w = (
          f"[{f['b_width_ci_low']:.2f}, {f['b_width_ci_high']:.2f}]{star}"
          if f.get("b_width") is not None
          else ""
      )
      line = (
          f"{f['arm']:<10}{f['scheme']:<18}{f['points']:>4}"
          f"{f.get('b_width', float('nan')):>9.2f}  {ci_w:<16}{f['b']:>9.2f}  "
          f"[{f['b_ci_low']:.2f}, {f['b_ci_high']:.2f}]{star}"
      )
      lines.append(line + (f"  ({f['note']})" if f.get("note") else ""))
  return "\n".join(lines)
