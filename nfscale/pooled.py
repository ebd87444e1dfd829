"""The seeds of one experiment, pooled from several runs into one table.

A table (``python -m launch.results_table``) shows per scheme each metric's mean over
the seeds found and, with several seeds, its [min, max]. Several workdirs are pooled only
when they hold the same experiment apart from their seeds: the same task and the same
``config.json`` except ``seeds``, ``seed`` and the keys that do not change results
(``progress``, ``mode``, ``overwrite``, ``checkpoint_every``), no (scheme, learning rate,
seed) member in two of them, and no interrupted run. ``paper="table1"`` adds the paper's
Table 1 (occupancy: train PSNR, IoU) beside ours, for occupancy runs only.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence

from nfscale import config_lib, experiment, figures, io
from nfscale.tasks import occupancy

#: ``--paper`` choices: the task they belong to, per scheme the numbers, their headers.
PAPERS: dict[str, tuple[str, dict[str, Sequence[float]], list[str]]] = {
    "table1": ("occupancy", occupancy.PAPER_TABLE1, ["paper PSNR (dB)", "paper IoU"]),
}
#: Config keys in which pooled runs may differ: their seeds and what does not change results.
MAY_DIFFER = ("seeds", "seed") + tuple(experiment.IGNORED_KEYS)
#: Member-row keys that name a member rather than measure it.
_IDENTITY = ("member", "label", "scheme", "seed", "lr")
_SHOWN_DIFFS = 6
_MISSING = object()


class Run(NamedTuple):
  """One workdir's ``results.json`` task and member rows, and its ``config.json``."""

  workdir: str
  task: str
  rows: list[dict[str, Any]]
  config: dict[str, Any] | None  # None: the workdir has no config.json


def read_run(workdir: str) -> Run:
  """Reads a finished run; a missing or empty ``results.json`` is a usage error."""
  path = os.path.join(workdir, experiment.RESULTS_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"workdirs: {path!r} does not exist: is {workdir!r} a finished run?")
  results = io.read_json(path)
  rows = results.get("members") if isinstance(results, dict) else None
  if not rows:
    raise ValueError(f"workdirs: {path!r} holds no member rows.")
  if results.get("complete") is False:
    raise ValueError(
        f"workdirs: {workdir!r} is an interrupted run (results.json says complete: false); "
        "finish its training first."
    )
  config_path = os.path.join(workdir, io.CONFIG_FILENAME)
  config = io.read_json(config_path) if os.path.isfile(config_path) else None
  task = results.get("task") or (config or {}).get("task", "")
  return Run(workdir, str(task), rows, config)


def _json(value: Any) -> str:
  # Serialized, so that 1, 1.0 and True differ (as in nfscale.io's workdir check).
  return "<missing>" if value is _MISSING else json.dumps(value, sort_keys=True)


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
  """``key: a vs b`` for each config key (outside :data:`MAY_DIFFER`) in which runs differ.

  A key one config lacks (written before the key existed) counts as the value such a run
  had: its default or its ``config_lib.LEGACY_VALUES`` entry (as when a run resumes).
  """
  flat_a, flat_b = io.flatten(a), io.flatten(b)
  stored = config_lib.stored_defaults(config_lib.base_config())
  defaults = io.flatten(json.loads(io.json_dumps(stored)))
  diffs = []
  for key in sorted(flat_a.keys() | flat_b.keys()):
    if any(key == k or key.startswith(k + ".") for k in MAY_DIFFER):
      continue
    va = flat_a.get(key, defaults.get(key, _MISSING))
    vb = flat_b.get(key, defaults.get(key, _MISSING))
    if va is _MISSING or vb is _MISSING or _json(va) != _json(vb):
      diffs.append(f"{key}: {_json(va)} vs {_json(vb)}")
  return diffs


def check_same_experiment(runs: Sequence[Run]) -> None:
  """Refuses runs that are not one experiment apart from their seeds (see the module doc)."""
  first = runs[0]
  seen: dict[str, str] = {}
  for run_ in runs:
    real = os.path.realpath(run_.workdir)
    if real in seen:
      raise ValueError(f"workdirs: {run_.workdir!r} is listed twice.")
    seen[real] = run_.workdir
  for run_ in runs[1:]:
    pair = f"{first.workdir!r} and {run_.workdir!r}"
    if run_.task != first.task:
      raise ValueError(
          f"workdirs: {pair} are runs of different tasks ({first.task} and {run_.task}); "
          "a table pools the seeds of one experiment."
      )
    for r in (first, run_):
      if r.config is None:
        raise ValueError(
            f"workdirs: {r.workdir!r} has no {io.CONFIG_FILENAME}, so it cannot be checked "
            "to be the same experiment as the other runs; give it alone."
        )
    diffs = config_differences(first.config, run_.config)
    if diffs:
      more = len(diffs) - _SHOWN_DIFFS
      raise ValueError(
          f"workdirs: {pair} are not the same experiment apart from their seeds; config "
          f"keys that differ: {'; '.join(diffs[:_SHOWN_DIFFS])}"
          + (f"; and {more} more" if more > 0 else "")
          + "."
      )
  where: dict[tuple[Any, Any, Any], str] = {}
  for run_ in runs:
    for row in run_.rows:
      key = (row.get("scheme"), row.get("lr"), row.get("seed"))
      if key in where:
        raise ValueError(
            f"workdirs: {where[key]!r} and {run_.workdir!r} both hold seed {key[2]} of "
            f"{key[0]} (lr {key[1]}); give runs with different seeds."
        )
      where[key] = run_.workdir


def numeric_metrics(rows: Sequence[dict[str, Any]]) -> list[str]:
  """The keys every row has with a number (or None) as value, identity keys excluded."""

  def numeric(row: dict[str, Any], key: str) -> bool:
    return key in row and (row[key] is None or isinstance(row[key], (int, float)))

  return [k for k in rows[0] if k not in _IDENTITY and all(numeric(r, k) for r in rows)]


def table(workdirs: Sequence[str], metrics: Sequence[str], paper: str = "") -> str:
  """The markdown table of ``workdirs`` (see the module doc).

  Raises:
    nfscale.ValueError: a missing run, runs of different experiments, an unknown or
      non-numeric metric, or a paper table of another task.
  """
  if not workdirs:
    raise ValueError("workdirs: give at least one run directory.")
  if not metrics:
    raise ValueError("metrics: give at least one metric.")
  runs = [read_run(w) for w in workdirs]
  check_same_experiment(runs)
  rows = [row for r in runs for row in r.rows]
  valid = numeric_metrics(rows)
  bad = [m for m in metrics if m not in valid]
  if bad:
    raise ValueError(
        f"metrics: {', '.join(bad)}: not a numeric metric of these {runs[0].task} runs; "
        f"their metrics: {', '.join(valid)}."
    )
  if not paper:
    return figures.seed_table(rows, metrics)
  paper_task, numbers, names = PAPERS[paper]
  if runs[0].task != paper_task:
    raise ValueError(
        f"paper={paper!r} is the paper's table of the {paper_task} task; these runs are "
        f"{runs[0].task} runs, to which it does not apply."
    )
  return figures.seed_table(rows, metrics, numbers, names)
