"""One training experiment, end to end: config -> task -> ensemble fit -> workdir.

``run(config, workdir)`` is exactly what ``python -m launch.train`` does, so a
notebook can do the same thing in one call::

    from nfscale import configs
    results = nfscale.experiment.run(configs.get("image", "quick"), "/tmp/run")
    trained = nfscale.load("/tmp/run")   # config, model, each member's params

The workdir receives ``config.json``, ``metrics.jsonl`` (per member, per log
step: loss, the task's score and aux values), ``checkpoints/`` (the ensemble
state, every ``checkpoint_every`` steps and at the end), ``results.json`` (per
member: every metric the task declares; per scheme the best learning rate),
``<score>.png`` (the score curves, e.g. ``psnr.png``, the paper's Fig. 1) and
the task's artifacts.

Workdir rules (what a repeated, interrupted or misdirected run does):

* the whole config is validated (task, schemes, optimizer, numbers) before
  anything in the workdir is touched;
* a workdir holding a different run is refused, listing the differing keys
  (the keys in :data:`IGNORED_KEYS` may differ); ``config.overwrite=True``
  deletes that run's files and starts over;
* the same command again resumes from the newest checkpoint (the ``metrics.jsonl``
  records after it are dropped) and ends with the results an uninterrupted run
  gives; after a finished run it only re-evaluates;
* ``config.mode="eval"`` re-evaluates and re-renders the last checkpoint
  without training.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np

from nfscale import checkpoint, checks, config_lib, initializers, io, models, plots, tasks, train
from nfscale.tasks import base

#: Config keys that do not change a run's results: a rerun may differ in them.
IGNORED_KEYS = ("progress", "mode", "overwrite", "checkpoint_every")
MODES = ("train", "eval")
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"


def members_from_config(config: Any) -> list[train.Member]:
  """Schemes x seeds x learning rates, in that nesting order.

  Raises:
    ValueError: unknown scheme, empty lists or non-positive learning rates.
  """
  # The task module may register schemes as well as tasks: import it before their names
  # are checked (it was imported only with the task, after this refused the names).
  tasks.import_task_module(str(config.get("task_module", "") or ""))
  for key in ("schemes", "seeds", "lrs"):
    checks.config_sequence(config, key)
  if not config.schemes or not config.seeds or not config.lrs:
    raise ValueError("config.schemes, config.seeds and config.lrs must be non-empty.")
  for key in ("schemes", "seeds", "lrs"):
    values = tuple(config[key])
    twice = [v for i, v in enumerate(values) if v in values[:i]]
    if twice:  # the same member twice would be counted twice in every median
      raise ValueError(f"config.{key} holds {twice[0]!r} more than once: {values}.")
  hparams = base.scheme_params(config)
  # Each scheme takes only its own parameters (omega: the SIREN schemes), so a key no
  # scheme takes is a typo that filter_hparams would drop without a word.
  known = set().union(*(initializers.scheme_parameters(n) for n in initializers.list_schemes()))
  unknown = sorted(set(hparams) - known)
  if unknown:
    raise ValueError(
        f"config.scheme_params: no scheme takes {unknown}; the schemes take "
        f"{', '.join(sorted(known))}."
    )
  omega = hparams.get("omega")
  if omega is not None and not checks.is_positive_finite(omega):
    # Only a SIREN scheme reads it (the others drop it): without one, a NaN went unnoticed.
    raise ValueError(
        "config.scheme_params.omega must be a positive finite number or None (the "
        f"activation's), got {omega!r}."
    )
  for s in config.schemes:
    if not isinstance(s, initializers.Scheme) and s not in initializers.list_schemes():
      raise ValueError(f"config.schemes: {initializers.unknown_scheme_error(s)}")
    try:  # its message names no config key
      built = initializers.get_scheme(s, **initializers.filter_hparams(s, hparams))
    except ValueError as e:
      raise ValueError(f"config.scheme_params: {e}") from e
    _check_bias_rules(s, built, hparams)
  low, high = checks.SEED_RANGE
  if not all(checks.is_int(v) and low <= v <= high for v in config.seeds):
    raise ValueError(
        f"config.seeds must hold integers in [{low}, {high}], got {tuple(config.seeds)}."
    )
  if not all(checks.is_positive_finite(v) for v in config.lrs):
    raise ValueError(
        f"config.lrs must hold positive finite learning rates, got {tuple(config.lrs)}."
    )
  return [
      train.Member(s, int(seed), float(lr))
      for s in config.schemes
      for seed in config.seeds
      for lr in config.lrs
  ]


def _check_bias_rules(name: Any, scheme: initializers.Scheme, hparams: dict[str, Any]) -> None:
  """Refuses a scheme that would not run with the bias rules the config names.

  A registered factory takes only the parameters it declares, and a ``Scheme`` instance
  none, so ``filter_hparams`` dropped the config's ``bias`` / ``first_bias`` for them
  without a word: a curve config's ``first_bias="torch"`` trained such a scheme with zero
  biases while ``config.json`` recorded torch.
  """
  if "bias" not in hparams:
    return
  value = hparams.get("bias_value", initializers.BiasRule().value)
  rule = lambda r: (r.kind, r.value if r.kind == "constant" else None)  # noqa: E731
  want = lambda kind: (kind, value if kind == "constant" else None)  # noqa: E731
  asked = (want(hparams["bias"]), want(hparams.get("first_bias") or hparams["bias"]))
  if (rule(scheme.bias), rule(scheme.first_bias)) != asked:
    label = name if isinstance(name, str) else scheme.name
    takes = initializers.scheme_parameters(name)
    raise ValueError(
        f"config.scheme_params: scheme {label!r} takes {takes or 'no parameters'}, so it "
        f"would run with biases {scheme.bias.kind!r} (first layer "
        f"{scheme.first_bias.kind!r}), not the config's bias={hparams['bias']!r}, "
        f"first_bias={hparams.get('first_bias') or hparams['bias']!r}: set those to its "
        "rules, or give its factory bias / first_bias parameters."
    )


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
      vals = np.array(
          [
              np.nan if r[key] is None else r[key]
              for r in rows
              if r["scheme"] == scheme and r["lr"] == lr
          ],
          float,
      )
      vals = np.where(np.isnan(vals), -np.inf, vals)  # diverged members lose
      med = float(np.median(vals))
      if best is None or med > best[key + "_median"]:
        best = {
            "scheme": scheme,
            "best_lr": lr,
            key + "_median": med,
            key + "_min": float(vals.min()),
            key + "_max": float(vals.max()),
            "seeds": int(vals.size),
        }
    out.append(best)
  return out


def validate(config: Any) -> tuple[base.Task, list[train.Member]]:
  """Checks the whole config and builds its task, touching no file.

  Args:
    config: an experiment config (``configs/*.py``).

  Returns:
    ``(task, members)``.

  Raises:
    ValueError: the first invalid setting, named with its valid values.
  """
  steps = checks.config_int(config, "steps", maximum=checks.MAX_STEPS)
  for key in ("chunk_steps", "log_every"):
    checks.config_int(config, key, maximum=checks.MAX_STEPS)
  checks.config_int(config, "checkpoint_every", minimum=0, maximum=checks.MAX_STEPS)
  # Minibatch indices are int32 on the device: a larger batch overflowed after the
  # workdir was written (or ran out of memory there).
  checks.config_int(config, "batch_size", minimum=0, maximum=checks.MAX_INT32)
  checks.config_int(config, "seed", *checks.SEED_RANGE)
  for key in ("overwrite", "progress", "complex_as_real"):
    # Read by truth value: overwrite="false" (a string, from a config built by hand or
    # from JSON) deleted the different run in the workdir.
    if key in config and not isinstance(config[key], (bool, np.bool_)):
      raise ValueError(f"config.{key} must be True or False, got {config[key]!r}.")
  if "seed" in config.get("data", {}):
    # The tasks seed NumPy with it, which refused a negative seed in its own words
    # ("expected non-negative integer"), naming no key.
    checks.config_int(config, "data.seed", 0)
  if "data_range" in config:
    # An infinite range passed the task's "> 0" check and made every PSNR NaN (inf - inf);
    # 1e300 raised OverflowError in range**2 after config.json was written, and 1e-300
    # (0 in float32) made every PSNR NaN.
    low, high = checks.FLOAT32_SCALE
    checks.config_number(config, "data_range", low, strict=False, high=high)
  if config.mode not in MODES:
    raise ValueError(f"Unknown config.mode {config.mode!r}; valid modes: {', '.join(MODES)}.")
  # is_real first: float() turned "30" into 30.0 and "abc" into a ValueError naming no key.
  target = config.target
  if target is not None and not (checks.is_real(target) and math.isfinite(target)):
    raise ValueError(f"config.target must be a finite number or None, got {config.target!r}.")
  factor = config.diverge_factor
  if factor is not None and not (checks.is_real(factor) and factor > 1):
    raise ValueError(
        f"config.diverge_factor must be > 1 (or None: NaN/Inf only), got {config.diverge_factor!r}."
    )
  for key, default in (("precision", "default"), ("remat", "none")):
    try:  # train's message ("Unknown remat 'x'") names no config key
      train.check_settings(**{key: str(config.get(key, default))})
    except ValueError as e:
      raise ValueError(f"config.{key}: {e}") from e
  members = members_from_config(config)
  _check_optimizer(config, steps)
  task = tasks.build_task(config)
  return task, members


def _check_optimizer(config: Any, steps: int) -> None:
  """The optimizer and its schedule, each error naming the config key at fault.

  train's own messages (``Invalid parameters {'x': 1.0} for optimizer 'sgd'``) name no
  config key.
  """
  for key in ("optimizer_params", "schedule_params"):
    if not hasattr(config[key], "keys"):  # a dict or a ConfigDict
      raise ValueError(f"config.{key} must be a dict of parameters, got {config[key]!r}.")
  known = isinstance(config.schedule, str) and config.schedule in train.SCHEDULES
  try:
    train.make_schedule(config.schedule, dict(config.schedule_params), steps=steps)
  except ValueError as e:
    raise ValueError(f"config.{'schedule_params' if known else 'schedule'}: {e}") from e
  name = config.optimizer
  known = isinstance(name, str) and name in train.list_optimizers()
  known = known and name not in train.NONLINEAR_IN_LR
  try:
    train.make_optimizer(
        config.optimizer,
        dict(config.optimizer_params),
        schedule=config.schedule,
        schedule_params=dict(config.schedule_params),
        steps=steps,
    )
  except ValueError as e:
    raise ValueError(f"config.{'optimizer_params' if known else 'optimizer'}: {e}") from e


class Trained(NamedTuple):
  """What :func:`train_members` returns."""

  members: list[train.Member]
  labels: list[str]
  param_count: int  # per member (they share one architecture)
  fit: train.FitResult
  rows: list[dict[str, Any]]  # per member: flags, steps, loss and score (no task metrics)


def init_params(config: Any, task: base.Task, members: Sequence[train.Member]) -> Any:
  """Every member's initial params, stacked (each under its own scheme and seed)."""
  return train.init_members(task.model, members, task.example_input, base.scheme_params(config))


def optimizer_args(config: Any) -> dict[str, Any]:
  """The optimizer keyword arguments of :func:`nfscale.train.fit` from a config."""
  return {
      "optimizer": config.optimizer,
      "optimizer_params": dict(config.optimizer_params),
      "schedule": config.schedule,
      "schedule_params": dict(config.schedule_params),
      "complex_as_real": bool(config.get("complex_as_real", True)),
  }


def chunk_settings(config: Any, task: base.Task) -> dict[str, Any]:
  """The config's keyword arguments of :func:`nfscale.train.make_train_chunk`."""
  return {
      "chunk_steps": int(config.chunk_steps),
      "score_fn": task.score.fn,
      "target": None if config.target is None else float(config.target),
      "batch_size": int(config.batch_size) or None,
      "diverge_factor": None if config.diverge_factor is None else float(config.diverge_factor),
      "precision": str(config.get("precision", "default")),
      "remat": str(config.get("remat", "none")),
  }


def make_tx(config: Any) -> Any:
  """The config's optax optimizer (unit rate: the engine scales it per member)."""
  return train.make_optimizer(
      config.optimizer,
      dict(config.optimizer_params),
      schedule=config.schedule,
      schedule_params=dict(config.schedule_params),
      steps=int(config.steps),
      complex_as_real=bool(config.get("complex_as_real", True)),
  )


def template_state(config: Any, params: Any) -> train.EnsembleState:
  """A fresh ensemble state of ``params``: the structure a checkpoint restores into."""
  return train.init_state(params, make_tx(config))


def train_members(
    config: Any,
    task: base.Task,
    members: Sequence[train.Member],
    *,
    params: Any = None,
    progress: bool | None = None,
    desc: str | None = None,
    **fit_kwargs: Any,
) -> Trained:
  """Initializes and trains ``members`` on ``task`` as one ensemble; per-member rows.

  The one path from a config to trained members, shared by :func:`run` and
  the sweeps (:func:`nfscale.sweep.evaluate_width`).

  Args:
    config: the experiment config (optimizer, steps, target, ...).
    task: the built task.
    members: the members.
    params: their initial params (default: :func:`init_params`).
    progress: progress bar (default ``config.progress``).
    desc: progress bar label (default: the task name).
    **fit_kwargs: passed on to :func:`nfscale.train.fit` (``on_log``,
      ``resume``, ``on_checkpoint``, ``checkpoint_every``), overriding what
      the config sets.

  Returns:
    A :class:`Trained`.
  """
  members = list(members)
  if params is None:
    params = init_params(config, task, members)
  n_params = models.param_count(train.member_shapes(params))
  kwargs = dict(
      steps=int(config.steps),
      log_every=int(config.log_every),
      seed=int(config.seed),
      progress=bool(config.progress) if progress is None else progress,
      desc=desc or task.name,
      **optimizer_args(config),
      **chunk_settings(config, task),
  )
  kwargs.update(fit_kwargs)
  fit = train.fit(task.loss_fn, params, members, task.train_data, **kwargs)
  labels = [member_label(m, members) for m in members]
  rows = member_rows(task.score.name, members, labels, n_params, fit.state)
  return Trained(members, labels, n_params, fit, rows)


def member_rows(
    score_name: str,
    members: Sequence[train.Member],
    labels: Sequence[str],
    param_count: int,
    state: train.EnsembleState,
) -> list[dict[str, Any]]:
  """Per member: flags, steps, loss and score of a trained ensemble state (JSON-able)."""
  st = jax.device_get(state)
  rows = []
  for i, m in enumerate(members):
    rows.append({
        "member": i,
        "label": labels[i],
        "scheme": m.scheme,
        "seed": m.seed,
        "lr": m.lr,
        "param_count": param_count,
        f"final_{score_name}": float(st.score[i]),
        f"best_{score_name}": float(st.best_score[i]),
        "final_loss": float(st.loss[i]),
        "initial_loss": float(st.initial_loss[i]),
        "steps_trained": int(st.steps[i]),
        "steps_to_target": int(st.steps_to_target[i]) if st.done[i] else None,
        "reached_target": bool(st.done[i]),
        "diverged": bool(st.diverged[i]),
    })
  return rows


def _metrics_rows(
    record: dict[str, Any], members: Sequence[train.Member], score_name: str
) -> list[dict[str, Any]]:
  rows = []
  for i, m in enumerate(members):
    row = {k: v[i] for k, v in record["aux"].items()}  # the fixed keys below win
    row.update({
        "step": record["step"],
        "member": i,
        "scheme": m.scheme,
        "seed": m.seed,
        "lr": m.lr,
        "loss": record["loss"][i],
        score_name: record["score"][i],
    })
    rows.append(row)
  return rows


def _clear_run(workdir: str) -> None:
  """Deletes the files a run writes (``config.overwrite``); other files stay."""
  old = os.path.join(workdir, RESULTS_FILE)
  names = [io.CONFIG_FILENAME, METRICS_FILE, RESULTS_FILE]
  if os.path.exists(old):
    try:
      names += list(io.read_json(old).get("artifacts", []))
    except (ValueError, OSError, AttributeError):
      pass
  for name in names:
    path = os.path.join(workdir, os.path.basename(name))
    if os.path.isfile(path):
      os.remove(path)
  shutil.rmtree(os.path.join(workdir, checkpoint.CHECKPOINT_DIR), ignore_errors=True)


def _check_eval_workdir(workdir: str) -> None:
  """``mode='eval'`` needs a trained run in ``workdir``."""
  path = os.path.join(workdir, io.CONFIG_FILENAME)
  if not os.path.exists(path) or checkpoint.latest_step(workdir) is None:
    raise ValueError(
        f"config.mode='eval' needs a trained run in {workdir!r} "
        "(config.json and checkpoints/); train it first."
    )


def _holds_sweep(workdir: str) -> bool:
  """Whether ``workdir``'s config.json is a scaling sweep's (it has a ``sweep`` group)."""
  try:
    stored = io.read_stored_config(workdir)
  except (OSError, ValueError):
    return False
  return isinstance(stored, dict) and "sweep" in stored


#: Top-level keys every training run's config.json holds: ``config.overwrite`` deletes
#: only a workdir whose config.json has them (not another program's files).
TRAINING_KEYS = ("task", "model", "schemes", "seeds", "lrs", "optimizer", "steps")


def _holds_training_run(workdir: str) -> bool:
  """Whether ``workdir``'s config.json is an nfscale training run's."""
  try:
    stored = io.read_stored_config(workdir)
  except (OSError, ValueError):
    return False
  return isinstance(stored, dict) and "sweep" not in stored and set(TRAINING_KEYS) <= set(stored)


def _run_files(workdir: str) -> list[str]:
  """The run files (checkpoints, metrics, results) found in ``workdir``."""
  found = [n for n in (METRICS_FILE, RESULTS_FILE) if os.path.exists(os.path.join(workdir, n))]
  if checkpoint.latest_step(workdir) is not None:
    found.append(checkpoint.CHECKPOINT_DIR + "/")
  return found


def _pin_config(config: Any, workdir: str) -> bool:
  # A workdir written before a key existed ran at that key's default.
  return io.check_or_write_config(
      workdir,
      config.to_dict(),
      keys_ignored=IGNORED_KEYS,
      defaults=config_lib.stored_defaults(config_lib.base_config()),
  )


def _pin_workdir(config: Any, workdir: str) -> bool:
  """Writes or checks ``config.json``; returns whether this run is new.

  ``config.overwrite`` replaces a *different* training run: the same config
  resumes (rerunning the command that crashed must not start over), and a
  config.json that is not an nfscale training run's is never deleted.
  """
  path = os.path.join(workdir, io.CONFIG_FILENAME)
  if config.mode == "eval":
    _check_eval_workdir(workdir)
  elif not os.path.exists(path) and _run_files(workdir):
    if not (config.overwrite and config.mode == "train"):
      raise ValueError(
          f"{workdir!r} holds {', '.join(_run_files(workdir))} but no config.json: refusing "
          "to mix runs (pass --config.overwrite=True to delete them and start over)."
      )
    _clear_run(workdir)
  try:
    return _pin_config(config, workdir)
  except ValueError as e:
    if _holds_sweep(workdir):
      if config.overwrite:
        # Overwrite deletes a training run's files; a sweep's records would stay
        # behind, beside a training run, with their config.json gone.
        raise ValueError(
            f"{workdir!r} holds a scaling sweep; config.overwrite only replaces a training "
            "run: pick a new workdir."
        ) from e
      raise  # a sweep's workdir is never replaced, so overwrite is not advised
    if not _holds_training_run(workdir):
      raise ValueError(
          f"{e}\nIts config.json is not an nfscale training run's: move it away or pick "
          "a new workdir."
      ) from e
    if not (config.overwrite and config.mode == "train"):
      raise ValueError(
          f"{e}\nOr pass --config.overwrite=True to delete that run's files and start over."
      ) from e
  _clear_run(workdir)
  return _pin_config(config, workdir)


def _restore(config: Any, workdir: str, params: Any):
  step = checkpoint.latest_step(workdir)
  if step is None:
    return None
  state, meta = checkpoint.restore(workdir, template_state(config, params), step)
  return int(meta["step"]), train.EnsembleState(*state), list(meta["history"]), meta


def run(config: Any, workdir: str) -> dict[str, Any]:
  """Runs (or resumes, or with ``config.mode="eval"`` re-evaluates) ``config`` in ``workdir``.

  Bad input (unknown task/scheme/optimizer, missing image, steps <= 0...)
  raises ``ValueError`` before anything in ``workdir`` is touched; so does a
  workdir holding a different run (unless ``config.overwrite``), and one that
  another run or sweep is using right now (:func:`nfscale.io.workdir_lock`).

  Args:
    config: a ConfigDict from ``configs/*.py``.
    workdir: output directory (created).

  Returns:
    The content of ``results.json``.
  """
  if "sweep" in config:
    raise ValueError(
        "this is a scaling-sweep config: run it with python -m launch.sweep (nfscale-sweep)."
    )
  io.check_workdir_path(workdir)
  task, members = validate(config)
  if config.mode == "eval":
    _check_eval_workdir(workdir)  # before the workdir (and its lock file) is created
  params = init_params(config, task, members)
  os.makedirs(workdir, exist_ok=True)
  # One process per workdir: a second run (or a sweep) started on it refuses
  # at once, naming the holder, instead of both writing the same files.
  with io.workdir_lock(workdir, what="training run"):
    return _run_locked(config, workdir, task, members, params)


def _run_locked(
    config: Any, workdir: str, task: base.Task, members: list[train.Member], params: Any
) -> dict[str, Any]:
  """:func:`run` once the config is valid and the workdir is locked."""
  _pin_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  resumed = _restore(config, workdir, params)
  seconds_before = 0.0
  device_counts: list[int] = []  # the device count of each training segment (resumes)
  will_train = config.mode == "train"
  if resumed is None:
    io.atomic_write_text(metrics_path, "")
    resume = None
  else:
    step, state, history, meta = resumed
    seconds_before = float(meta.get("seconds", 0.0))
    device_counts = [int(v) for v in meta.get("device_counts", [])]
    resume = (step, state, history)
    stopped = np.asarray(state.done) | np.asarray(state.diverged)
    will_train = will_train and step < config.steps and not stopped.all()
    if step < config.steps and not stopped.all():
      # Records logged after the checkpoint are replayed by the resumed run.
      # The record of the checkpoint's own step comes from the chunk after it.
      # (A finished run replays nothing and keeps its records as they are; an eval of an
      # interrupted one keeps those its checkpoint's state stands behind.)
      kept = [r for r in io.read_jsonl(metrics_path, missing_ok=True) if r["step"] < step]
      io.atomic_write_text(metrics_path, "".join(io.json_dumps(r) + "\n" for r in kept))

  labels = [member_label(m, members) for m in members]
  t0 = time.perf_counter()
  # results.json's seconds is the last checkpoint's: a finished run's rerun (no
  # checkpoint saved) then writes the same results.json, byte for byte.
  saved = {"seconds": seconds_before}
  if will_train and device_counts[-1:] != [jax.device_count()]:
    device_counts.append(jax.device_count())

  def on_log(record):
    # One durable append (open, lock, write, fsync) per log step for all members, not one
    # per member: the same lines, and a step's rows appear together.
    io.append_jsonl_lines(metrics_path, _metrics_rows(record, members, task.score.name))

  def on_checkpoint(step, state, history):
    saved["seconds"] = seconds_before + time.perf_counter() - t0
    checkpoint.save(
        workdir,
        step,
        state,
        {
            "history": io.to_jsonable(history),
            "labels": labels,
            "seconds": saved["seconds"],
            "device_counts": device_counts,
        },
    )

  if config.mode == "eval":
    step, state, history = resume
    n_params = models.param_count(train.member_shapes(params))
    fit = train.FitResult(state=state, history=history, seconds=0.0, steps_run=step)
    trained = Trained(
        members,
        labels,
        n_params,
        fit,
        member_rows(task.score.name, members, labels, n_params, state),
    )
  else:
    trained = train_members(
        config,
        task,
        members,
        params=params,
        on_log=on_log,
        resume=resume,
        checkpoint_every=int(config.checkpoint_every),
        on_checkpoint=on_checkpoint,
    )
  return _finish(config, task, trained, workdir, saved["seconds"], device_counts)


def _finish(
    config: Any,
    task: base.Task,
    trained: Trained,
    workdir: str,
    seconds: float,
    device_counts: Sequence[int] = (),
) -> dict[str, Any]:
  """Evaluation, figures and ``results.json`` of trained members."""
  fit = trained.fit
  state = jax.device_get(fit.state)
  evaluation = task.evaluate(state.params)
  rows = [dict(r) for r in trained.rows]
  for m in task.metrics:
    if m.name not in evaluation:
      raise ValueError(
          f"task {task.name!r} declares metric {m.name!r} but evaluate() did not return it."
      )
    for i, row in enumerate(rows):
      row[m.name] = float(np.asarray(evaluation[m.name])[i])
  score = task.score
  target = None if config.target is None else float(config.target)
  artifacts = [
      plots.psnr_curves(
          fit.history,
          trained.labels,
          os.path.join(workdir, f"{score.name}.png"),
          title=_title(config, task),
          target=target,
          ylabel=score.label,
          diverged=[r["diverged"] for r in rows],
      )
  ]
  artifacts += task.save_artifacts(workdir, trained.labels, evaluation)
  results = {
      "task": task.name,
      "task_info": dict(task.info),
      "score": {"name": score.name, "label": score.label},
      "metrics": [
          {
              "name": m.name,
              "higher_is_better": m.higher_is_better,
              "fmt": m.fmt,
              "label": m.label or m.name,
          }
          for m in task.metrics
      ],
      "target": target,
      "steps": int(config.steps),
      "steps_run": fit.steps_run,
      "seconds": seconds,
      "devices": [str(d) for d in jax.devices()],
      # Per training segment (a resume may run on other devices); [] before it was kept.
      "device_counts": list(device_counts),
      "members": rows,
      "summary": summarize(rows, f"final_{score.name}"),
      "artifacts": [os.path.basename(a) for a in artifacts],
      "notes": _notes(rows, target, score.name, config.diverge_factor),
  }
  if len(set(device_counts)) > 1:
    results["notes"].append(
        f"trained on {' then '.join(map(str, device_counts))} devices (resumed elsewhere): "
        "the member axis was sharded differently, so the results equal an uninterrupted "
        "run only up to float rounding"
    )
  stopped = all(r["reached_target"] or r["diverged"] for r in rows)
  results["complete"] = fit.steps_run >= int(config.steps) or stopped
  if not results["complete"]:
    # An interrupted run re-evaluated (launch.render, mode=eval) must not read as done.
    results["notes"].insert(
        0,
        f"INCOMPLETE: training stopped at step {fit.steps_run} of {int(config.steps)} "
        "(rerun the training command to finish it)",
    )
  # NaN/Inf become None, in the file and in what we return.
  results = io.to_jsonable(results)
  io.atomic_write_json(os.path.join(workdir, RESULTS_FILE), results)
  return results


def _title(config: Any, task: base.Task) -> str:
  m = config.model
  return (
      f"{task.name}: {m.activation} {tuple(m.hidden)}, {config.optimizer} "
      f"lr {', '.join(f'{lr:g}' for lr in config.lrs)}, {config.steps} steps"
  )


def _notes(
    rows: list[dict[str, Any]], target: float | None, score_name: str, diverge_factor: float | None
) -> list[str]:
  notes = []
  diverged = [r["label"] for r in rows if r["diverged"]]
  if diverged:
    rule = "NaN/Inf" + (f" or loss > {diverge_factor:g}x initial" if diverge_factor else "")
    notes.append(f"diverged ({rule}; frozen): {', '.join(diverged)}")
  if target is not None and not any(r["reached_target"] for r in rows):
    notes.append(f"no member reached the target {score_name} {target:g}")
  return notes


def format_table(results: dict[str, Any]) -> str:
  """A plain-text table of the per-member results: score and the task's metrics."""
  name = results["score"]["name"]
  cols = [(f"final_{name}", ".3f"), (f"best_{name}", ".3f")]
  cols += [(m["name"], m["fmt"]) for m in results.get("metrics", [])]
  width = max([12] + [len(k) + 2 for k, _ in cols])
  head = f"{'member':<28}" + "".join(f"{k:>{width}}" for k, _ in cols)
  head += f"{'to target':>10}  status"
  lines = [head, "-" * len(head)]
  for r in results["members"]:
    cells = "".join(
        f"{'nan':>{width}}" if r.get(k) is None else f"{r[k]:>{width}{fmt}}" for k, fmt in cols
    )
    tt = "-" if r["steps_to_target"] is None else str(r["steps_to_target"])
    status = "diverged" if r["diverged"] else ("reached" if r["reached_target"] else "")
    lines.append(f"{r['label']:<28}{cells}{tt:>10}  {status}")
  lines += results["notes"]
  return "\n".join(lines)


class Loaded(NamedTuple):
  """A trained run read back from its workdir (:func:`load`).

  Attributes:
    config: the run's config (from ``config.json``).
    task: the task, rebuilt from the config (data, evaluate, ...).
    model: the field; ``model.apply(params[i], x)`` renders member ``i`` at
      any coordinates ``x``.
    members: the members (scheme, seed, lr).
    labels: their legend labels.
    params: each member's params (a list of pytrees).
    stacked_params: the same with a leading member axis (for
      :func:`nfscale.models.ensemble_apply` or ``task.evaluate``).
    state: the whole restored ensemble state (optimizer state, flags...).
    step: the training step of the checkpoint.
  """

  config: ml_collections.ConfigDict
  task: base.Task
  model: models.NeuralField
  members: list[train.Member]
  labels: list[str]
  params: list[Any]
  stacked_params: Any
  state: train.EnsembleState
  step: int


def _stored_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of the training run in ``workdir`` (not a sweep's)."""
  path = os.path.join(workdir, io.CONFIG_FILENAME)
  if not os.path.exists(path):
    raise ValueError(f"{workdir!r} holds no run (no {io.CONFIG_FILENAME}).")
  if _holds_sweep(workdir):
    raise ValueError(
        f"{workdir!r} holds a scaling sweep, not a training run; its report is rebuilt by "
        "python -m launch.sweep --report_only."
    )
  return ml_collections.ConfigDict(io.read_json(path))


def load(workdir: str, step: int | None = None) -> Loaded:
  """Reads a trained run (config, model, every member's params) from ``workdir``.

  Args:
    workdir: a workdir written by :func:`run` (``python -m launch.train``).
    step: which checkpoint (default: the newest, i.e. the end of training).

  Returns:
    A :class:`Loaded`.

  Raises:
    ValueError: no ``config.json`` or no checkpoint in ``workdir``.
  """
  config = _stored_run_config(workdir)
  task = tasks.build_task(config)
  members = members_from_config(config)
  params = init_params(config, task, members)
  state, meta = checkpoint.restore(workdir, template_state(config, params), step)
  state = train.EnsembleState(*state)
  labels = [member_label(m, members) for m in members]
  per_member = [train.unstack(state.params, i) for i in range(len(members))]
  return Loaded(
      config, task, task.model, members, labels, per_member, state.params, state, int(meta["step"])
  )


def rerender(workdir: str) -> dict[str, Any]:
  """Re-evaluates the last checkpoint of ``workdir`` with its own config (no training).

  Args:
    workdir: a workdir written by :func:`run`.

  Returns:
    The rewritten ``results.json`` content.

  Raises:
    ValueError: no run or no checkpoint in ``workdir``.
  """
  config = _stored_run_config(workdir)
  config.mode = "eval"
  return run(config, workdir)
