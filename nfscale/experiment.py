"""One training experiment, end to end: config -> task -> ensemble fit -> workdir.

``run(config, workdir)`` is exactly what ``python -m launch.train`` does, so a
notebook can do the same thing in one call::

    from configs import image
    results = nfscale.experiment.run(image.get_config("quick"), "/tmp/run")

The workdir receives ``config.json``, ``metrics.jsonl`` (per member, per log
step), ``results.json`` (per member and a per-scheme summary), ``psnr.png``
(the schemes' PSNR curves, the paper's Fig. 1) and the task's artifacts.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np

from nfscale import initializers, io, models, plots, tasks, train
from nfscale.tasks import base


def members_from_config(config: Any) -> list[train.Member]:
  """Schemes x seeds x learning rates, in that nesting order.

  Raises:
    ValueError: unknown scheme, empty lists or non-positive learning rates.
  """
  if not config.schemes or not config.seeds or not config.lrs:
    raise ValueError("config.schemes, config.seeds and config.lrs must be non-empty.")
  for s in config.schemes:
    initializers.get_scheme(s, **initializers.filter_hparams(s, base.scheme_params(config)))
  if any(not lr > 0 for lr in config.lrs):
    raise ValueError(f"learning rates must be positive, got lrs={tuple(config.lrs)}.")
  return [train.Member(s, int(seed), float(lr))
          for s in config.schemes for seed in config.seeds for lr in config.lrs]


def member_label(m: train.Member, members: Sequence[train.Member]) -> str:
  """A short legend label: the scheme, plus seed/lr where they vary."""
  label = m.scheme
  if len({x.seed for x in members}) > 1:
    label += f" s{m.seed}"
  if len({x.lr for x in members}) > 1:
    label += f" lr{m.lr:g}"
  return label


def summarize(rows: list[dict[str, Any]], key: str = "final_psnr") -> list[dict[str, Any]]:
  """Per scheme: the best learning rate by median ``key`` over seeds, and its statistics."""
  out = []
  for scheme in dict.fromkeys(r["scheme"] for r in rows):
    best = None
    for lr in dict.fromkeys(r["lr"] for r in rows if r["scheme"] == scheme):
      vals = np.array([np.nan if r[key] is None else r[key] for r in rows
                       if r["scheme"] == scheme and r["lr"] == lr], float)
      vals = np.where(np.isnan(vals), -np.inf, vals)  # diverged members lose
      med = float(np.median(vals))
      if best is None or med > best[key + "_median"]:
        best = {"scheme": scheme, "best_lr": lr, key + "_median": med,
                key + "_min": float(vals.min()), key + "_max": float(vals.max()),
                "seeds": int(vals.size)}
    out.append(best)
  return out


def run(config: Any, workdir: str) -> dict[str, Any]:
  """Runs the experiment ``config`` and writes everything to ``workdir``.

  Bad input (unknown task/scheme, missing image...) raises ``ValueError``
  before anything in ``workdir`` is touched.

  Args:
    config: a ConfigDict from ``configs/*.py``.
    workdir: output directory (created).

  Returns:
    The content of ``results.json``.
  """
  task = tasks.build_task(config)
  members = members_from_config(config)
  target = config.target_psnr
  os.makedirs(workdir, exist_ok=True)
  io.atomic_write_json(os.path.join(workdir, "config.json"), config.to_dict())
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  io.atomic_write_text(metrics_path, "")  # a rerun starts a fresh log

  labels = [member_label(m, members) for m in members]
  x0 = np.asarray(task.train_data["x"][:1])
  params = train.init_members(task.model, members, x0, base.scheme_params(config))
  n_params = models.param_count(train.unstack(params, 0))

  def on_log(record):
    for i, m in enumerate(members):
      io.append_jsonl(metrics_path, {"step": record["step"], "member": i, "scheme": m.scheme,
                                     "seed": m.seed, "lr": m.lr, "loss": record["loss"][i],
                                     "psnr": record["psnr"][i]})

  fit = train.fit(task.loss_fn, params, members, task.train_data, steps=int(config.steps),
                  optimizer=config.optimizer, optimizer_params=dict(config.optimizer_params),
                  chunk_steps=int(config.chunk_steps), log_every=int(config.log_every),
                  target_psnr=target, data_range=task.data_range,
                  batch_size=int(config.batch_size) or None, seed=int(config.seed),
                  progress=bool(config.progress), desc=task.name, on_log=on_log)
  state = jax.device_get(fit.state)
  evaluation = task.evaluate(fit.state.params)

  rows = []
  last_psnr = fit.history[-1]["psnr"] if fit.history else [None] * len(members)
  for i, m in enumerate(members):
    row = {"member": i, "label": labels[i], "scheme": m.scheme, "seed": m.seed, "lr": m.lr,
           "param_count": n_params, "final_psnr": last_psnr[i],
           "best_psnr": float(state.best_psnr[i]), "final_loss": float(state.loss[i]),
           "steps_trained": int(state.steps[i]),
           "steps_to_target": int(state.steps_to_target[i]) if state.done[i] else None,
           "reached_target": bool(state.done[i]), "diverged": bool(state.diverged[i])}
    for k, v in evaluation.items():
      if k != "outputs":
        row[k] = float(v[i])
    rows.append(row)

  artifacts = [plots.psnr_curves(fit.history, labels, os.path.join(workdir, "psnr.png"),
                                 title=_title(config, task), target=target)]
  artifacts += task.save_artifacts(workdir, labels, evaluation)
  results = {
      "task": task.name, "task_info": task.info, "target_psnr": target,
      "steps": int(config.steps), "steps_run": fit.steps_run, "seconds": fit.seconds,
      "devices": [str(d) for d in jax.devices()], "members": rows,
      "summary": summarize(rows), "artifacts": [os.path.basename(a) for a in artifacts],
      "notes": _notes(rows, target)}
  # NaN/Inf (diverged members) become None, in the file and in what we return.
  results = io.to_jsonable(results)
  io.atomic_write_json(os.path.join(workdir, "results.json"), results)
  return results


def _title(config: Any, task: Any) -> str:
  m = config.model
  return (f"{task.name}: {m.activation} {tuple(m.hidden)}, {config.optimizer} "
          f"lr {tuple(config.lrs)}, {config.steps} steps")


def _notes(rows: list[dict[str, Any]], target: float | None) -> list[str]:
  notes = []
  diverged = [r["label"] for r in rows if r["diverged"]]
  if diverged:
    notes.append(f"diverged (NaN/Inf loss, frozen): {', '.join(diverged)}")
  if target is not None and not any(r["reached_target"] for r in rows):
    notes.append(f"no member reached the target PSNR {target:g} dB")
  return notes


def format_table(results: dict[str, Any]) -> str:
  """A plain-text table of the per-member results (for the terminal)."""
  extra = [k for k in ("full_psnr", "full_ssim", "dense_psnr") if k in results["members"][0]]
  cols = ["final_psnr", "best_psnr"] + extra
  head = f"{'member':<28}" + "".join(f"{k:>12}" for k in cols) + f"{'to target':>10}  status"
  lines = [head, "-" * len(head)]
  for r in results["members"]:
    cells = "".join(f"{'nan':>12}" if r[k] is None else f"{r[k]:>12.3f}" for k in cols)
    tt = "-" if r["steps_to_target"] is None else str(r["steps_to_target"])
    status = "diverged" if r["diverged"] else ("reached" if r["reached_target"] else "")
    lines.append(f"{r['label']:<28}{cells}{tt:>10}  {status}")
  lines += results["notes"]
  return "\n".join(lines)
