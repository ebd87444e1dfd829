"""Scaling-law sweeps: the smallest network that reaches a target PSNR as N grows.

For every *arm* (an activation + encoding, e.g. sinc or ReLU + RFF) and every
dataset size ``N``, :func:`run_sweep` searches, for every scheme, the smallest
width of the last hidden layer at which gradient descent reaches the target
PSNR within the step budget (paper Fig. 3 and 4):

* all schemes x seeds x learning rates of one width train as ONE vmapped
  ensemble (:mod:`nfscale.train`); the schemes' searches share widths through
  :func:`nfscale.scaling.min_width_search_joint`;
* success rule at a width: for at least one learning rate of the grid, at
  least ``ceil(K/2)`` of the K seeds reach the target (the median seed does,
  for odd K);
* every trained width is appended to ``evals.jsonl`` and every finished point
  (arm, N) to ``points.jsonl``, atomically: a sweep killed at any moment and
  rerun with the same command loses at most the ensemble in flight and skips
  what is done; a different config in the same workdir is refused;
* with several hosts (``jax.distributed``), host ``i`` of ``H`` takes the
  points ``i, i+H, ...`` and writes ``points.<i>.jsonl``; the report merges.

The report (:func:`write_report`) fits ``params ~ a N^b`` per (arm, scheme)
with a bootstrap interval for ``b`` and writes ``table.csv``, ``table.md``,
``fits.json`` and the plots ``scaling.png`` / ``theory.png``.
"""

from __future__ import annotations

import copy
import glob
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from nfscale import experiment, initializers, io, plots, scaling, tasks, train
from nfscale.tasks import base

EVALS_FILE = "evals.jsonl"
POINTS_GLOB = "points*.jsonl"
# Keys that do not change results: a rerun may differ in them.
IGNORED_KEYS = ("progress",)


def sweep_points(config: Any) -> list[tuple[str, int]]:
  """All (arm, N) points of the sweep, in run order (N ascending within an arm)."""
  arms = list(config.sweep.arms)
  unknown = [a for a in arms if a not in config.arms]
  if unknown:
    raise ValueError(f"Unknown arms {unknown}; defined arms: {', '.join(config.arms.keys())}.")
  if not config.sweep.ns:
    raise ValueError("sweep.ns must not be empty.")
  return [(a, int(n)) for a in arms for n in sorted(config.sweep.ns)]


def set_dotted(config: Any, key: str, value: Any) -> None:
  """Sets ``config[a][b][c] = value`` for ``key = "a.b.c"``.

  Raises:
    ValueError: a key on the path does not exist in ``config``.
  """
  *parents, last = key.split(".")
  node = config
  for part in parents:
    if part not in node:
      raise ValueError(f"config has no key {key!r} (missing {part!r}).")
    node = node[part]
  if last not in node:
    raise ValueError(f"config has no key {key!r} (missing {last!r}).")
  node[last] = type(node[last])(value) if isinstance(node[last], (int, float)) else value


def point_config(config: Any, arm: str, n: int, width: int | None = None) -> Any:
  """The training config of one point: the arm's model, N samples, last width."""
  c = ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))
  a = config.arms[arm]
  c.model.activation = a.activation
  c.model.activation_params = ml_collections.ConfigDict(dict(a.activation_params))
  c.model.encoding = a.encoding
  c.model.encoding_params = ml_collections.ConfigDict(dict(a.encoding_params))
  if width is not None:
    c.model.hidden = tuple(config.sweep.hidden_prefix) + (int(width),)
  # The task says which key holds its sample count N (register_task).
  set_dotted(c, tasks.num_samples_key(config.task, config.get("task_module", "")), n)
  return c


def success(reached: np.ndarray, rule: str = "median") -> bool:
  """Whether one (scheme, lr) cell succeeds; ``reached`` holds one flag per seed."""
  k = reached.size
  if rule == "median":
    return int(reached.sum()) >= math.ceil(k / 2)
  if rule == "all":
    return bool(reached.all())
  if rule == "any":
    return bool(reached.any())
  raise ValueError(f"Unknown success rule {rule!r}; valid: median, all, any.")


def evaluate_width(config: Any, arm: str, n: int, width: int, schemes: Sequence[str],
                   progress: bool = False) -> dict[str, Any]:
  """Trains schemes x seeds x lrs at one width as one ensemble; per-scheme verdicts.

  Returns:
    A JSON-able record: arm, n, width, seconds, and per scheme ``success``,
    ``best_lr`` (the lr with most seeds reaching the target, ties broken by
    fewer median steps), per-lr ``reached`` flags, ``steps_to_target`` and
    ``best_psnr`` per member.
  """
  c = point_config(config, arm, n, width)
  c.schemes = tuple(schemes)
  task = tasks.build_task(c)
  members = [train.Member(s, int(seed), float(lr))
             for s in schemes for seed in config.seeds for lr in config.lrs]
  t0 = time.perf_counter()
  trained = experiment.train_members(c, task, members, progress=progress,
                                     desc=f"{arm} N={n} w={width}", log_every=10 ** 9)
  rows = trained.rows
  best_key = f"best_{task.score.name}"
  record: dict[str, Any] = {"arm": arm, "n": n, "width": int(width),
                            "param_count": trained.param_count,
                            "seconds": time.perf_counter() - t0, "schemes": {}}
  k, nl = len(config.seeds), len(config.lrs)
  for si, s in enumerate(schemes):
    idx = si * k * nl + np.arange(k * nl).reshape(k, nl)  # [seed, lr]
    col = lambda key: np.array([[rows[j][key] for j in r] for r in idx])  # noqa: E731
    reached = col("reached_target").astype(bool)
    to_target = np.array([[-1 if rows[j]["steps_to_target"] is None else rows[j]["steps_to_target"]
                           for j in r] for r in idx])
    steps = np.where(reached, to_target, np.iinfo(np.int32).max)
    per_lr = [success(reached[:, j], config.sweep.rule) for j in range(nl)]
    order = sorted(range(nl), key=lambda j: (-int(reached[:, j].sum()), np.median(steps[:, j])))
    record["schemes"][s] = {
        "success": any(per_lr), "best_lr": float(config.lrs[order[0]]),
        "reached": reached.tolist(), "steps_to_target": to_target.tolist(),
        best_key: col(best_key).tolist(), "diverged": col("diverged").tolist()}
  return io.to_jsonable(record)


def run_point(config: Any, arm: str, n: int, cache: Mapping[tuple, dict[str, Any]],
              on_eval: Callable[[dict[str, Any]], None], progress: bool = False,
              theory_fn: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
  """The joint min-width search of every scheme at one (arm, N).

  Args:
    config: the sweep config.
    arm: arm name.
    n: dataset size.
    cache: earlier width evaluations ``{(arm, n, width, schemes): record}``
      (resume); reused only for the same scheme set, so a resumed point
      trains exactly the ensembles the uninterrupted run trained.
    on_eval: called with every new width record (appends ``evals.jsonl``).
    progress: progress bars per ensemble.
    theory_fn: optional ``(config, arm, n) -> {scheme: {...}}`` diagnostics.

  Returns:
    The point record written to ``points.jsonl``.
  """
  s = config.sweep
  t0 = time.perf_counter()
  trained: list[dict[str, Any]] = []

  def oracle(width, schemes):
    key = (arm, n, int(width), tuple(schemes))
    rec = cache.get(key)
    if rec is None:
      rec = evaluate_width(config, arm, n, width, schemes, progress)
      on_eval(rec)
    trained.append(rec)
    return {sc: rec["schemes"][sc]["success"] for sc in schemes}

  results = scaling.min_width_search_joint(
      oracle, list(config.schemes), start=int(s.start), max_width=int(s.max_width),
      rel_precision=float(s.rel_precision), growth=float(s.growth), min_width=int(s.min_width))
  per_scheme = {}
  for sc, r in results.items():
    # The found width was trained (it is the smallest success), so its record
    # holds the real parameter count and the lr that got there.
    at_width = [rec for rec in trained if rec["width"] == r.width and sc in rec["schemes"]]
    per_scheme[sc] = {
        "min_width": r.width, "found": r.found, "lower_bound": r.lower_bound,
        "param_count": at_width[-1]["param_count"] if at_width else None,
        "best_lr": at_width[-1]["schemes"][sc]["best_lr"] if at_width else None,
        "evaluations": {str(w): ok for w, ok in r.evaluations.items()}}
  record = {"arm": arm, "n": n, "schemes": per_scheme, "rounds": len(trained),
            "seconds": time.perf_counter() - t0,
            "trained_seconds": sum(rec["seconds"] for rec in trained)}
  if theory_fn is not None:
    for sc, diag in theory_fn(config, arm, n).items():
      per_scheme[sc]["theory"] = diag
  return io.to_jsonable(record)


def theory_widths(config: Any, arm: str, n: int) -> dict[str, dict[str, Any]]:
  """Per scheme: the smallest width at which the paper's eq. 4.6 holds at init."""
  from nfscale import theory
  c = point_config(config, arm, n)
  task = tasks.build_task(c)
  x = np.asarray(task.train_data["x"])
  y = np.asarray(task.train_data["y"])
  t = config.theory

  def make_model(width):
    return task.model.clone(hidden=tuple(config.sweep.hidden_prefix) + (int(width),))

  out = {}
  for sc in config.schemes:
    r = theory.condition_width(make_model, sc, x, y, seeds=tuple(config.seeds),
                               start=int(t.start), max_width=int(t.max_width),
                               rel_precision=float(t.rel_precision),
                               scheme_params=initializers.filter_hparams(
                                   sc, base.scheme_params(c)))
    out[sc] = {"condition_width": r.width, "found": r.found}
  return out


def _host() -> tuple[int, int]:
  return jax.process_index(), jax.process_count()


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


def run_sweep(config: Any, workdir: str, *, host: tuple[int, int] | None = None,
              progress: bool | None = None, report: bool = True) -> dict[str, Any]:
  """Runs (or resumes) the sweep ``config`` in ``workdir``.

  Args:
    config: a sweep config (``configs/scaling_*.py``).
    workdir: output directory; must be empty or hold the same config.
    host: ``(index, count)`` of this host; default from ``jax.process_*``.
    progress: progress bars (default: ``config.progress``).
    report: write the table, fits and plots at the end.

  Returns:
    The report dict (see :func:`write_report`), or the points if ``report``
    is false.

  Raises:
    ValueError: a different config already in ``workdir``, unknown arms...
  """
  points = sweep_points(config)
  for sc in config.schemes:  # fail before touching the workdir
    initializers.get_scheme(sc, **initializers.filter_hparams(sc, base.scheme_params(config)))
  if config.target is None:
    raise ValueError("a sweep needs config.target.")
  io.check_or_write_config(workdir, config.to_dict(), keys_ignored=IGNORED_KEYS)
  index, count = host or _host()
  progress = bool(config.progress) if progress is None else progress
  points_path = os.path.join(workdir, "points.jsonl" if count == 1 else f"points.{index}.jsonl")
  evals_path = os.path.join(workdir, EVALS_FILE if count == 1 else f"evals.{index}.jsonl")
  done = {(r["arm"], r["n"]) for r in read_points(workdir)}
  cache = {(r["arm"], r["n"], r["width"], tuple(r["schemes"])): r
           for r in io.read_jsonl(evals_path, missing_ok=True)}
  mine = [p for i, p in enumerate(points) if i % count == index]
  todo = [p for p in mine if p not in done]
  theory_fn = theory_widths if config.theory.enabled else None
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="sweep points", unit="pt")
  for arm, n in todo:
    tfn = theory_fn if (theory_fn and n <= int(config.theory.max_n)) else None
    rec = run_point(config, arm, n, cache, lambda r: io.append_jsonl(evals_path, r),
                    progress=progress, theory_fn=tfn)
    io.append_jsonl(points_path, rec)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(arm=arm, n=n)
  if bar is not None:
    bar.close()
  if not report:
    return {"points": read_points(workdir)}
  return write_report(config, workdir)


def _fit_rows(points: list[dict[str, Any]], arm: str, scheme: str, key: str) -> tuple:
  ns, vals = [], []
  for p in points:
    if p["arm"] == arm and p["schemes"].get(scheme, {}).get(key) is not None:
      ns.append(p["n"])
      vals.append(p["schemes"][scheme][key])
  return np.array(ns, float), np.array(vals, float)


def write_report(config: Any, workdir: str) -> dict[str, Any]:
  """Table (CSV + markdown), power-law fits and plots from the finished points."""
  points = sorted(read_points(workdir), key=lambda p: (list(config.sweep.arms).index(p["arm"])
                                                       if p["arm"] in config.sweep.arms else 99,
                                                       p["n"]))
  rows = []
  for p in points:
    for sc, r in p["schemes"].items():
      rows.append({"arm": p["arm"], "n": p["n"], "scheme": sc, "min_width": r["min_width"],
                   "param_count": r["param_count"], "found": r["found"],
                   "lower_bound": r["lower_bound"], "best_lr": r["best_lr"],
                   "condition_width": (r.get("theory") or {}).get("condition_width")})
  cols = ["arm", "n", "scheme", "min_width", "param_count", "found", "lower_bound", "best_lr",
          "condition_width"]
  scaling.write_csv(os.path.join(workdir, "table.csv"), rows, cols)
  fits = []
  for arm in config.sweep.arms:
    for sc in config.schemes:
      ns, counts = _fit_rows(points, arm, sc, "param_count")
      entry = {"arm": arm, "scheme": sc, "points": int(ns.size)}
      if ns.size >= 3 and np.unique(ns).size >= 2:
        f = scaling.fit_power_law(ns, counts, n_boot=2000, seed=0)
        entry.update({"a": f.a, "b": f.b, "b_ci_low": f.b_ci[0], "b_ci_high": f.b_ci[1],
                      "r2": f.r2})
      fits.append(entry)
  fit_cols = ["arm", "scheme", "points", "b", "b_ci_low", "b_ci_high", "a", "r2"]
  md = ["# Scaling sweep", "", f"target {config.target:g} dB, {config.steps} steps, "
        f"{config.optimizer} lrs {tuple(config.lrs)}, seeds {tuple(config.seeds)}, "
        f"rule {config.sweep.rule}", "", "## Minimum width per point", "",
        scaling.markdown_table(rows, cols), "", "## Power-law fits: params ~ a N^b", "",
        scaling.markdown_table(fits, fit_cols)]
  io.atomic_write_text(os.path.join(workdir, "table.md"), "\n".join(md) + "\n")
  io.atomic_write_json(os.path.join(workdir, "fits.json"), fits)
  artifacts = [plots.scaling_curves(points, list(config.sweep.arms), list(config.schemes),
                                    fits, os.path.join(workdir, "scaling.png"),
                                    title=f"target {config.target:g} dB")]
  if any("theory" in r for p in points for r in p["schemes"].values()):
    artifacts.append(plots.theory_widths(points, list(config.sweep.arms), list(config.schemes),
                                         os.path.join(workdir, "theory.png")))
  return io.to_jsonable({"rows": rows, "fits": fits, "points": len(points),
                         "expected_points": len(sweep_points(config)),
                         "artifacts": [os.path.basename(a) for a in artifacts]})


def format_report(report: dict[str, Any]) -> str:
  """The fits (and how complete the sweep is) as terminal text."""
  lines = [f"points finished: {report['points']} / {report['expected_points']}",
           f"{'arm':<10}{'scheme':<18}{'pts':>4}{'b':>8}  95% CI"]
  for f in report["fits"]:
    if f.get("b") is None:
      lines.append(f"{f['arm']:<10}{f['scheme']:<18}{f['points']:>4}{'-':>8}")
    else:
      lines.append(f"{f['arm']:<10}{f['scheme']:<18}{f['points']:>4}{f['b']:>8.2f}  "
                   f"[{f['b_ci_low']:.2f}, {f['b_ci_high']:.2f}]")
  return "\n".join(lines)
