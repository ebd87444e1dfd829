"""Scaling-law sweeps: the smallest network that reaches a target PSNR as N grows.

For every *arm* (an activation + encoding, e.g. sinc or ReLU + RFF) and every
dataset size ``N``, :func:`run_sweep` searches, for every scheme, the smallest
width of the last hidden layer at which gradient descent reaches the target
PSNR within the step budget (paper Fig. 3 and 4):

* all schemes x seeds x learning rates of one width train as ONE vmapped
  ensemble (:mod:`nfscale.train`); the schemes' searches share widths through
  :func:`nfscale.scaling.min_width_search_joint`;
* with ``sweep.buckets`` a search round's widths train together, padded to
  the next rung of the search's ladder with masked units
  (:mod:`nfscale.widths`), one compiled program per bucket; JAX's persistent
  compilation cache (``<workdir>/.jax_cache``) reuses it across rounds;
* success rule at a width: for at least one learning rate of the grid, at
  least ``ceil(K/2)`` of the K seeds reach the target (the median seed does,
  for odd K);
* a point whose best rate (for some scheme) is an end of the grid and did
  not diverge there is searched again on a grid extended at that end
  (``sweep.lr_extensions`` times at most); the grids are recorded. The
  search on the wider grid trains only the new rates at a width the point
  has already trained: the (scheme, rate) cells trained there before are
  taken from their records (``reused`` in ``evals.jsonl``);
* every trained width is appended to ``evals.jsonl`` and every finished point
  (arm, N) to ``points.jsonl``, atomically: a sweep killed at any moment and
  rerun with the same command loses at most the ensemble in flight
  (``sweep.buckets=off``) or the search round in flight (the other modes,
  whose widths train in shared programs) and skips what is done; a different config in the same workdir is refused;
* with several hosts (``jax.distributed``, :mod:`nfscale.sharding`), host
  ``i`` of ``H`` takes the points ``i, i+H, ...``, trains them on its own
  devices and writes ``points.<i>.jsonl``; process 0 writes the merged
  report after a barrier;
* one run per workdir (per host share): a sweep holds a lock on its workdir
  while it runs, and a second sweep started on the same workdir (same host
  share) refuses at once, naming the workdir and the running sweep's pid,
  so no point is ever trained twice (see :func:`run_sweep`).

The report (:func:`write_report`, from :mod:`nfscale.sweep_report`, which
reads the records back and knows nothing of training) fits the power laws
and writes the tables and figures.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import glob
import math
import os
import re
import time
import zlib
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from nfscale import checks, experiment, initializers, io, membatch, models, scaling, sharding, tasks, train
from nfscale.sweep_report import EVALS_GLOB, POINTS_GLOB, config_rules, read_points
from nfscale.sweep_report import sweep_points, write_report
from nfscale.tasks import base

EVALS_FILE = "evals.jsonl"
# JAX's persistent compilation cache of a sweep (compilation_cache, for its duration).
COMPILE_CACHE_DIR = ".jax_cache"


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


# The model keys a sweep's arm sets (point_config), as a point's errors name them.
_ARM_KEY = re.compile(r"config\.model\.(activation_params|activation|encoding_params|encoding)\b")


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


def training_config(config: Any, arm: str, n: int, width: int) -> Any:
  """One point of a sweep as a plain training config, for ``experiment.run``.

  The sweep-only groups (``sweep``, ``arms``, ``theory``) are dropped, so that
  the result trains like any experiment config (``launch.train`` refuses a sweep
  config, whose own model is not what the sweep trains).

  Example:
    >>> from nfscale import configs
    >>> c = training_config(configs.get("scaling_shallow", "tiny"), "sinc", 10, 16)
    >>> c.model.hidden, c.data.num_points, "sweep" in c
    ((16,), 10, False)
  """
  c = point_config(config, arm, n, width)
  for group in ("sweep", "arms", "theory"):
    if group in c:
      del c[group]
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


def evaluate_width(
    config: Any,
    arm: str,
    n: int,
    width: int,
    schemes: Sequence[str],
    progress: bool = False,
    known: Cells | None = None,
) -> dict[str, Any]:
  """Trains schemes x seeds x lrs at one width as one ensemble; per-scheme verdicts.

  Args:
    config: the sweep config (its ``lrs`` is the grid).
    arm: arm name.
    n: dataset size.
    width: the last hidden width.
    schemes: the schemes to evaluate.
    progress: a progress bar.
    known: cells of this width trained before (:func:`record_cells`); they
      are reused instead of trained (:func:`reusable`).

  Returns:
    A JSON-able record: arm, n, width, seconds, and per scheme ``success``,
    ``best_lr`` (the lr with most seeds reaching the target, ties broken by
    fewer median steps), per-lr ``reached`` flags, ``steps_to_target`` and
    ``best_psnr`` per member; ``reused`` lists the reused cells' rates per
    scheme, if any.
  """
  c = point_config(config, arm, n, width)
  c.schemes = tuple(schemes)
  task = tasks.build_task(c)
  known = reusable(config, schemes, known)
  members = _members(config, schemes, known)
  t0 = time.perf_counter()
  params = experiment.init_params(c, task, members)
  rows, batches = train_batched(c, task, members, params, progress, f"{arm} N={n} w={width}")
  record = _width_record(
      config,
      arm,
      n,
      width,
      schemes,
      rows,
      models.param_count(train.member_shapes(params)),
      time.perf_counter() - t0,
      task.score.name,
      known,
  )
  record["member_batches"] = batches
  return record


def member_batch_size(config: Any, task: base.Task, params: Any) -> int:
  """How many members one compiled ensemble trains (``sweep.member_batch``).

  A positive ``sweep.member_batch`` is used as given. 0 sizes the batch from the
  device's free memory (:mod:`nfscale.membatch`): every member at once where
  the backend reports no limit (a CPU), else the largest batch whose estimate
  from shapes fits, checked with XLA's memory analysis when it is close. The
  plan holds the whole batch against the first device's memory; with several
  local devices the engine spreads the members over them, so it is
  conservative by their number.
  """
  num = jax.tree.leaves(params)[0].shape[0]
  fixed = int(config.sweep.get("member_batch", 0))
  if fixed > 0:
    return min(fixed, num)
  free = membatch.free_bytes()
  if free is None:
    return num
  tx = experiment.make_tx(config)
  one = train.member_shapes(params)
  per_member = membatch.member_bytes(task.loss_fn, one, task.train_data, tx)
  data_bytes = membatch.nbytes(task.train_data)
  batch = membatch.plan(num, per_member, free, fixed_bytes=data_bytes)
  if batch == num and per_member * num <= 0.5 * free:
    return batch

  def need(b: int) -> int | None:
    prefix = jax.eval_shape(lambda p: jax.tree.map(lambda a: a[:b], p), params)
    return membatch.compiled_bytes(
        task.loss_fn, prefix, task.train_data, tx, **experiment.chunk_settings(config, task)
    )

  # Close to the limit: ask XLA what the planned batch's chunk needs. The shape
  # estimate counts every traced value (XLA reuses buffers), so re-plan from
  # the compiled size per member, then halve until XLA's number fits.
  measured = need(batch)
  if measured is None:
    return batch
  batch = membatch.plan(num, -(-measured // batch), free)
  while batch > 1:
    measured = need(batch)
    if measured is None or measured <= membatch.HEADROOM * free:
      break
    batch //= 2
  return batch


def train_batched(
    config: Any,
    task: base.Task,
    members: Sequence[train.Member],
    params: Any,
    progress: bool,
    desc: str,
) -> tuple[list[dict[str, Any]], list[int]]:
  """Trains ``members`` in member batches; returns their rows and the batch sizes.

  Members never interact, so the rows equal one ensemble's (up to float
  rounding of differently sized programs). An out-of-memory error halves the
  batch and retries instead of ending the sweep (:func:`membatch.run_batched`).
  """
  members = list(members)

  def train_part(start: int, stop: int) -> list[dict[str, Any]]:
    part = jax.tree.map(lambda a: a[start:stop], params)
    trained = experiment.train_members(
        config,
        task,
        members[start:stop],
        params=part,
        progress=progress,
        desc=desc if (start, stop) == (0, len(members)) else f"{desc} [{start}:{stop}]",
        log_every=10**9,
    )
    for j, row in enumerate(trained.rows):
      row["member"] = start + j
    return trained.rows

  def on_fallback(size: int, err: BaseException) -> None:
    logging.warning(
        "%s: out of memory (%s); retrying with %d members per batch.",
        desc,
        str(err).splitlines()[0][:200],
        size,
    )

  batch = member_batch_size(config, task, params)
  return membatch.run_batched(train_part, len(members), batch, on_fallback)


#: One width's trained cells: ``{(scheme, lr): {record field: one value per seed}}``.
Cells = Mapping[tuple[str, float], Mapping[str, list]]


def _members(config: Any, schemes: Sequence[str], skip: Cells | None = None) -> list[train.Member]:
  """Every scheme x seed x lr of the config's grid whose (scheme, lr) is not in ``skip``."""
  return [
      train.Member(s, int(seed), float(lr))
      for s in schemes
      for seed in config.seeds
      for lr in config.lrs
      if (s, float(lr)) not in (skip or {})
  ]


def _member_fields(cell: Mapping[str, Any]) -> list[str]:
  """The fields of a record's scheme entry that hold one value per member."""
  per_member = ("reached", "steps_to_target", "diverged")
  return [k for k in cell if k in per_member or (k.startswith("best_") and k != "best_lr")]


def record_cells(rec: Mapping[str, Any], lrs: Sequence[float]) -> dict[tuple[str, float], dict]:
  """The (scheme, lr) cells of a width record trained on the grid ``lrs``.

  Example:
    >>> rec = {"schemes": {"init1": {"success": True, "best_lr": 0.1,
    ...     "reached": [[False, True]], "steps_to_target": [[-1, 40]],
    ...     "best_psnr": [[20.0, 35.1]], "diverged": [[False, False]]}}}
    >>> record_cells(rec, [0.03, 0.1])[("init1", 0.1)]
    {'reached': [True], 'steps_to_target': [40], 'best_psnr': [35.1], 'diverged': [False]}
  """
  out = {}
  for s, cell in rec["schemes"].items():
    for j, lr in enumerate(lrs):
      out[(s, float(lr))] = {k: [row[j] for row in cell[k]] for k in _member_fields(cell)}
  return out


def reusable(config: Any, schemes: Sequence[str], known: Cells | None) -> dict:
  """The cells of ``known`` that a width evaluation of ``schemes`` reuses.

  Those of the config's schemes and grid, unless they are all of it: a
  repeated request trains afresh rather than recording nothing trained.
  Members never interact (:func:`train_batched`), so a reused cell holds what
  training it again would give, up to the float rounding of a differently
  sized ensemble.
  """
  wanted = {(s, float(lr)) for s in schemes for lr in config.lrs}
  out = {k: v for k, v in (known or {}).items() if k in wanted}
  return out if len(out) < len(wanted) else {}


def _width_record(
    config: Any,
    arm: str,
    n: int,
    width: int,
    schemes: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    param_count: int,
    seconds: float,
    score_name: str,
    known: Cells | None = None,
) -> dict[str, Any]:
  """The evals.jsonl record of one width from its members' rows and reused cells.

  ``rows`` belong to ``_members(config, schemes, known)``, in that order; the
  cells of ``known`` fill in the rest of the grid. ``seconds`` and
  ``model_flops`` count the trained members only.
  """
  best_key = f"best_{score_name}"
  known = dict(known or {})
  trained = _members(config, schemes, known)
  if len(rows) != len(trained):
    raise ValueError(f"{len(rows)} rows for {len(trained)} trained members at width {width}.")
  points_per_step = int(config.get("batch_size", 0) or 0) or int(n)
  record: dict[str, Any] = {
      "arm": arm,
      "n": n,
      "width": int(width),
      "param_count": int(param_count),
      "seconds": seconds,
      # Useful work of the evaluation, the dense-MLP estimate: 6 FLOPs per
      # parameter and point per step (forward, input and weight gradients).
      "model_flops": float(
          sum(6.0 * points_per_step * param_count * int(r["steps_trained"]) for r in rows)
      ),
      "device": jax.devices()[0].device_kind,
      "schemes": {},
  }
  by_member = {(m.scheme, m.seed, m.lr): r for m, r in zip(trained, rows)}
  cells = dict(known)
  for s, lr in dict.fromkeys((m.scheme, m.lr) for m in trained):
    seeds = [by_member[(s, int(seed), lr)] for seed in config.seeds]
    cells[(s, lr)] = {
        "reached": [bool(r["reached_target"]) for r in seeds],
        "steps_to_target": [
            -1 if r["steps_to_target"] is None else r["steps_to_target"] for r in seeds
        ],
        best_key: [r[best_key] for r in seeds],
        "diverged": [r["diverged"] for r in seeds],
    }
  lrs = [float(v) for v in config.lrs]
  nl = len(lrs)
  for s in schemes:
    # [seed, lr] matrices of every field.
    col = lambda key: np.array([cells[(s, lr)][key] for lr in lrs]).T  # noqa: E731
    reached = col("reached").astype(bool)
    to_target = col("steps_to_target")
    steps = np.where(reached, to_target, np.iinfo(np.int32).max)
    per_lr = [success(reached[:, j], config.sweep.rule) for j in range(nl)]
    order = sorted(range(nl), key=lambda j: (-int(reached[:, j].sum()), np.median(steps[:, j])))
    record["schemes"][s] = {
        "success": any(per_lr),
        "best_lr": lrs[order[0]],
        "reached": reached.tolist(),
        "steps_to_target": to_target.tolist(),
        best_key: col(best_key).tolist(),
        "diverged": col("diverged").tolist(),
    }
  reused = {s: [lr for lr in lrs if (s, lr) in known] for s in schemes}
  if any(reused.values()):
    record["reused"] = {s: v for s, v in reused.items() if v}
  return io.to_jsonable(record)


def bucket_mode(config: Any) -> str:
  """How a search round's widths are grouped into compiled programs (``sweep.buckets``).

  Returns:
    ``"off"`` (one program per width), ``"ladder"`` (``on``: widths padded to
    the next rung of the search's ladder, member count padded so that a
    bucket's program repeats across rounds) or ``"round"`` (the widths of a
    round up to ``sweep.round_merge_max`` padded to the largest of them, in
    one program per round, larger widths each alone and unpadded). ``auto``
    is ``ladder`` on accelerators, where padded units fill idle lanes, and
    ``round`` on a CPU, where compilation (about a second per program) costs
    more than the padded units of small widths.
  """
  value = config.sweep.get("buckets", "off")
  if value == "auto":
    return "ladder" if jax.default_backend() != "cpu" else "round"
  modes = {"on": "ladder", "off": "off", "round": "round"}
  if value not in modes:
    raise ValueError(f"sweep.buckets must be 'on', 'off', 'round' or 'auto', got {value!r}.")
  return modes[value]


def use_buckets(config: Any) -> bool:
  """Whether the sweep trains a round's widths in padded programs (see :func:`bucket_mode`)."""
  return bucket_mode(config) != "off"


def _round_groups(widths: Sequence[int], merge_max: int) -> dict[int, list[int]]:
  """``{padded width: indices}`` for ``round`` mode: small widths together, large ones alone.

  Example:
    >>> _round_groups([20, 512, 64, 8], merge_max=256)
    {64: [0, 2, 3], 512: [1]}
  """
  out: dict[int, list[int]] = {}
  small = [i for i, w in enumerate(widths) if w <= merge_max]
  if small:
    out[max(int(widths[i]) for i in small)] = small
  for i, w in enumerate(widths):
    if w > merge_max:
      out.setdefault(int(w), []).append(i)
  return dict(sorted(out.items()))


_CACHE_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def enable_compilation_cache(directory: str) -> bool:
  """Turns on JAX's persistent compilation cache in ``directory`` unless one is set.

  XLA programs with identical shapes (a width bucket's ensembles, a resumed
  point's widths) are then compiled once and loaded afterwards (measured on
  the CPU: a repeated ~4 s compilation becomes ~0.3 s). A cache directory the
  user chose (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is kept. The
  setting is process-wide and stays: :func:`compilation_cache` undoes it.

  Returns:
    Whether this call set the directory.
  """
  if jax.config.jax_compilation_cache_dir:
    return False
  jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
  # Sweep programs compile in about a second each: cache them all.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  _reset_jax_cache()
  return True


def _reset_jax_cache() -> None:
  """Makes JAX open its persistent cache anew from the current settings."""
  from jax.experimental.compilation_cache import compilation_cache as jax_cache

  jax_cache.reset_cache()  # JAX opens its cache once and keeps it otherwise


@contextlib.contextmanager
def compilation_cache(directory: str):
  """JAX's persistent compilation cache in ``directory`` for the ``with`` block only.

  As :func:`enable_compilation_cache`, then the previous settings come back:
  a sweep run from a notebook left its workdir as the process's cache, and
  every program the user compiled afterwards was written into it.

  Yields:
    Whether the block uses ``directory`` (``False``: the user's own cache is kept).
  """
  previous = {key: getattr(jax.config, key) for key in _CACHE_SETTINGS}
  enabled = enable_compilation_cache(directory)
  try:
    yield enabled
  finally:
    if enabled:
      for key, value in previous.items():
        jax.config.update(key, value)
      _reset_jax_cache()


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _decompresses(data: bytes) -> bool | None:
  """Whether a cache entry decompresses as JAX reads it (``None``: cannot tell)."""
  if data.startswith(_ZSTD_MAGIC):
    try:
      from compression import zstd  # Python 3.14+, JAX's first choice

      decompress = zstd.decompress
    except ImportError:
      try:
        import zstandard
      except ImportError:
        return None  # this Python cannot read it; neither can its JAX
      decompress = zstandard.ZstdDecompressor().decompress
  else:
    decompress = zlib.decompress
  try:
    decompress(data)
  except Exception:  # each codec raises its own error type
    return False
  return True


def remove_broken_cache_entries(directory: str) -> list[str]:
  """Deletes the entries of JAX's compilation cache in ``directory`` that do not decompress.

  JAX writes a cache entry in place, not through a temporary file and a
  rename, so a sweep killed during that write leaves the entry truncated.
  Every later run then warns and compiles that program again, and the entry
  is never rewritten (JAX keeps an entry that exists). Call this only while no
  process can be writing to ``directory``; :func:`run_sweep` does so when it
  is the workdir's only writer.

  Args:
    directory: a persistent compilation cache directory (may not exist).

  Returns:
    The names of the deleted entries.

  Example:
    >>> import os, tempfile, zlib
    >>> d = tempfile.mkdtemp()
    >>> good = zlib.compress(b"executable" * 100)
    >>> for name, data in {"a-cache": good, "b-cache": good[:20]}.items():
    ...   with open(os.path.join(d, name), "wb") as f:
    ...     _ = f.write(data)
    >>> remove_broken_cache_entries(d)
    ['b-cache']
  """
  removed = []
  for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*-cache"))):
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError:
      continue
    if _decompresses(data) is False:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
      removed.append(os.path.basename(path))
  if removed:
    logging.warning(
        "Removed %d truncated compilation-cache entries (left by a killed run) from %s.",
        len(removed),
        directory,
    )
  return removed


def evaluate_round(
    config: Any,
    arm: str,
    n: int,
    requests: Mapping[int, Sequence[str]],
    progress: bool = False,
    known: Mapping[int, Cells] | None = None,
) -> dict[int, dict[str, Any]]:
  """Trains a search round's widths in width buckets: one ensemble per bucket.

  Each requested width trains the schemes asked of it x seeds x lrs, drawn at
  its true width and padded to its bucket with the extra units masked
  (:mod:`nfscale.widths`): the same training as :func:`evaluate_width` up to
  float rounding, in one compiled program per bucket instead of one per
  width. A bucket is the smallest rung of the search's ladder at or above the
  width (``ladder`` mode) or the largest small width of the round (``round``
  mode, see :func:`bucket_mode`). ``known`` holds per width the cells trained
  before (as for :func:`evaluate_width`).

  Returns:
    ``{width: record}``, each record as :func:`evaluate_width`'s, plus
    ``bucket`` (the padded width it trained at) and ``bucket_seconds`` (the
    time of the whole ensemble; ``seconds`` is this width's share of it).
  """
  from nfscale import widths as widths_lib

  s = config.sweep
  mode = bucket_mode(config)
  order = list(requests)
  reuse = {w: reusable(config, requests[w], (known or {}).get(int(w))) for w in order}
  if mode == "round":
    groups = _round_groups(order, int(s.get("round_merge_max", 256)))
  else:
    buckets = widths_lib.bucket_widths(int(s.start), int(s.max_width), float(s.growth))
    groups = widths_lib.group_by_bucket(order, buckets)
  out: dict[int, dict[str, Any]] = {}
  for bucket, idx in groups.items():
    ws = [int(order[i]) for i in idx]
    c = point_config(config, arm, n, bucket)
    c.schemes = tuple(dict.fromkeys(sc for w in ws for sc in requests[w]))
    task = tasks.build_task(c)
    num_hidden = len(task.model.hidden)
    members, member_widths, spans = [], [], {}
    for w in ws:
      first = len(members)
      members += _members(config, requests[w], reuse[w])
      member_widths += [w] * (len(members) - first)
      spans[w] = (first, len(members))
    # A round asks each scheme for one width, so a bucket never holds more
    # than every scheme x seed x lr. Padding to that many members (copies of
    # the first, results dropped) gives every ensemble of a bucket the same
    # shapes: with the compilation cache (enable_compilation_cache) the
    # bucket's program is compiled once per point, not once per round.
    used = len(members)
    if mode == "ladder":
      capacity = len(config.schemes) * len(config.seeds) * len(config.lrs)
      members += [members[0]] * max(0, capacity - used)
      member_widths += [member_widths[0]] * max(0, capacity - used)
    params = widths_lib.init_masked(
        task.model, members, member_widths, task.example_input, base.scheme_params(c), bucket=bucket
    )
    masked = dataclasses.replace(task, loss_fn=widths_lib.masked_loss(task.loss_fn, num_hidden))
    t0 = time.perf_counter()
    rows, batches = train_batched(
        c, masked, members, params, progress, f"{arm} N={n} bucket={bucket}"
    )
    seconds = time.perf_counter() - t0
    for w in ws:
      first, last = spans[w]
      # Abstractly: an eager slice would compile for every new width.
      true_width = jax.eval_shape(
          lambda p, first=first, w=w: widths_lib.extract_member(p, first, w, num_hidden), params
      )
      count = models.param_count(true_width)
      # The bucket's time is shared among its widths by member count.
      rec = _width_record(
          config,
          arm,
          n,
          w,
          requests[w],
          rows[first:last],
          count,
          seconds * (last - first) / used,
          task.score.name,
          reuse[w],
      )
      rec["bucket"] = int(bucket)
      rec["bucket_seconds"] = seconds  # the whole ensemble's time (shared with its widths)
      rec["member_batches"] = batches  # of the whole bucket
      out[w] = rec
  return out


def run_point(
    config: Any,
    arm: str,
    n: int,
    cache: Mapping[tuple, dict[str, Any]],
    on_eval: Callable[[list[dict[str, Any]]], None],
    progress: bool = False,
    theory_fn: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
  """The joint min-width search of every scheme at one (arm, N).

  Args:
    config: the sweep config.
    arm: arm name.
    n: dataset size.
    cache: earlier width evaluations ``{evals_cache_key(record): record}``
      (resume); reused only for the same scheme set and learning-rate grid,
      so a resumed point trains exactly the ensembles the uninterrupted run
      trained.
    on_eval: called with the new width records of each trained program (one
      width, or a bucketed round's widths), which it appends to
      ``evals.jsonl`` in one write, so a round is recorded whole or not at all.
    progress: progress bars per ensemble.
    theory_fn: optional ``(config, arm, n) -> {scheme: {...}}`` diagnostics.

  Returns:
    The point record written to ``points.jsonl``.
  """
  s = config.sweep
  t0 = time.perf_counter()
  trained: list[dict[str, Any]] = []
  grid = tuple(float(v) for v in config.lrs)
  grids = [grid]
  known: dict[int, dict] = {}  # width -> the cells trained there on earlier grids
  while True:
    results, at_grid = _search(config, arm, n, grid, cache, on_eval, progress, known)
    trained += at_grid
    for rec in at_grid:
      known.setdefault(int(rec["width"]), {}).update(record_cells(rec, grid))
    if len(grids) > int(s.get("lr_extensions", 0)):
      break
    outcomes = _lr_outcomes(results, at_grid, grid, censored=bool(s.get("lr_censored", False)))
    new = scaling.extend_lr_grid(grid, outcomes, factor=float(s.get("lr_factor", 3.0)))
    if new is None:
      break
    # A best rate at an end of the grid that did not diverge: the optimum may
    # lie beyond it, so the whole point is searched again on the wider grid
    # (a width trained before trains the new rates only).
    grid = new
    grids.append(grid)
  per_scheme = {}
  for sc, r in results.items():
    # The found width was trained (it is the smallest success), so its record
    # holds the real parameter count and the lr that got there.
    at_width = [rec for rec in at_grid if rec["width"] == r.width and sc in rec["schemes"]]
    per_scheme[sc] = {
        "min_width": r.width,
        "found": r.found,
        "lower_bound": r.lower_bound,
        "param_count": at_width[-1]["param_count"] if at_width else None,
        "best_lr": at_width[-1]["schemes"][sc]["best_lr"] if at_width else None,
        "evaluations": {str(w): ok for w, ok in r.evaluations.items()},
    }
  record = {
      "arm": arm,
      "n": n,
      "schemes": per_scheme,
      "rounds": len(trained),
      "lrs": list(grid),
      "lr_grids": [list(g) for g in grids],
      "seconds": time.perf_counter() - t0,
      "trained_seconds": sum(rec["seconds"] for rec in trained),
  }
  if theory_fn is not None:
    for sc, diag in theory_fn(config, arm, n).items():
      per_scheme[sc]["theory"] = diag
  return io.to_jsonable(record)


def with_lrs(config: Any, lrs: Sequence[float]) -> Any:
  """A copy of ``config`` with the learning-rate grid ``lrs``."""
  c = ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))
  c.lrs = tuple(float(v) for v in lrs)
  return c


def _search(
    config: Any,
    arm: str,
    n: int,
    grid: tuple[float, ...],
    cache: Mapping[tuple, dict[str, Any]],
    on_eval: Callable[[list[dict[str, Any]]], None],
    progress: bool,
    known: Mapping[int, Cells] | None = None,
) -> tuple[dict[str, scaling.SearchResult], list[dict[str, Any]]]:
  """One joint min-width search of a point on the learning-rate grid ``grid``.

  ``known`` holds per width the cells the point trained on earlier grids.
  """
  s = config.sweep
  cfg = config if grid == tuple(float(v) for v in config.lrs) else with_lrs(config, grid)
  trained: list[dict[str, Any]] = []

  def oracle_round(requests):
    todo = {}
    for width, schemes in requests.items():
      if (arm, n, int(width), tuple(schemes), grid) not in cache:
        todo[int(width)] = list(schemes)
    fresh = {}

    def record(recs):
      for width, rec in recs.items():
        rec["lrs"] = list(grid)
        fresh[width] = rec
      on_eval(list(recs.values()))

    if todo and use_buckets(config):
      together = evaluate_round(cfg, arm, n, todo, progress, known)
      # In request order, recorded whole: a resume never splits a round's program.
      record({width: together[width] for width in todo})
    else:
      for width, schemes in todo.items():  # each recorded once trained: a kill loses one
        record(
            {width: evaluate_width(cfg, arm, n, width, schemes, progress, (known or {}).get(width))}
        )
    out = {}
    for width, schemes in requests.items():
      rec = cache.get((arm, n, int(width), tuple(schemes), grid))
      if rec is None:
        rec = fresh[int(width)]
      trained.append(rec)
      out[width] = {sc: rec["schemes"][sc]["success"] for sc in schemes}
    return out

  results = scaling.min_width_search_joint(
      None,
      list(config.schemes),
      start=int(s.start),
      max_width=int(s.max_width),
      rel_precision=float(s.rel_precision),
      growth=float(s.growth),
      min_width=int(s.min_width),
      oracle_round=oracle_round,
  )
  return results, trained


def _lr_outcomes(
    results: Mapping[str, scaling.SearchResult],
    trained: list[dict[str, Any]],
    grid: tuple[float, ...],
    censored: bool = False,
) -> list[tuple[float, bool]]:
  """Per scheme, the rate that decides whether the grid brackets it, and whether it diverged.

  A scheme that reached the target gives its best rate at its width. With
  ``censored``, a scheme that reached it at no width gives the rate of its
  best median score at the widest width it trained, among the rates where no
  seed diverged there; if every rate diverged there, the rates are too large
  for that width (gradient descent's stable rate falls as the width grows),
  so it gives the smallest rate as not diverged, asking for a lower one.
  Without that, a failure caused by the grid reads as "wider than
  ``max_width``" and the point is censored and left out of the fits.
  """
  out = []
  for sc, r in results.items():
    if r.found:
      recs = [rec for rec in trained if rec["width"] == r.width and sc in rec["schemes"]]
      if not recs:
        continue
      cell = recs[-1]["schemes"][sc]
      j = grid.index(float(cell["best_lr"]))
      out.append((float(cell["best_lr"]), bool(np.any(np.asarray(cell["diverged"])[:, j]))))
      continue
    widest = max(r.evaluations, default=None)
    recs = [rec for rec in trained if rec["width"] == widest and sc in rec["schemes"]]
    if not censored or not recs:
      continue
    cell = recs[-1]["schemes"][sc]
    diverged = np.asarray(cell["diverged"]).any(axis=0)
    if diverged.all():
      out.append((grid[0], False))
      continue
    (key,) = [k for k in _member_fields(cell) if k.startswith("best_")]  # the score's
    score = np.median(np.asarray(cell[key], dtype=float), axis=0)
    score = np.where(diverged | np.isnan(score), -np.inf, score)
    out.append((grid[int(np.argmax(score))], False))
  return out


def evals_cache_key(rec: Mapping[str, Any], config: Any) -> tuple:
  """The key of a width record in the resume cache (records from before grids: config.lrs)."""
  return (
      rec["arm"],
      rec["n"],
      rec["width"],
      tuple(rec["schemes"]),
      tuple(float(v) for v in rec.get("lrs", config.lrs)),
  )


def theory_widths(
    config: Any,
    arm: str,
    n: int,
    cache_path: str | None = None,
    also_read: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
  """Per scheme: the smallest widths at which the paper's eq. 4.6 holds at init.

  Both readings of eq. 4.6 (:mod:`nfscale.theory`): ``condition_width`` for
  ``16 sqrt(N)/sqrt(n) ...`` and ``condition_width_times`` for
  ``16 sqrt(N) sqrt(n) ...``. With ``cache_path`` (the sweep's
  ``theory.jsonl``) each scheme is computed once per (arm, N), also across
  resumes; entries of ``also_read`` (the other host shares' caches) count too.
  """
  from nfscale import theory

  c = point_config(config, arm, n)
  t = config.theory
  built: dict[str, Any] = {}

  def data():
    if not built:  # only when something is not cached
      task = tasks.build_task(c)
      built.update(
          task=task, x=np.asarray(task.train_data["x"]), y=np.asarray(task.train_data["y"])
      )
    return built

  def make_model(width):
    return data()["task"].model.clone(hidden=tuple(config.sweep.hidden_prefix) + (int(width),))

  def compute(sc):
    d = data()
    # Both readings in one pass: each width's networks are drawn and measured once.
    r = theory.condition_widths(
        make_model,
        sc,
        d["x"],
        d["y"],
        readings=("over_sqrt_n", "times_sqrt_n"),
        seeds=tuple(config.seeds),
        start=int(t.start),
        max_width=int(t.max_width),
        rel_precision=float(t.rel_precision),
        scheme_params=initializers.filter_hparams(sc, base.scheme_params(c)),
    )
    over, times = r["over_sqrt_n"], r["times_sqrt_n"]
    return {
        "condition_width": over.width,
        "found": over.found,
        "condition_width_times": times.width,
        "found_times": times.found,
    }

  if cache_path is None:
    return {sc: compute(sc) for sc in config.schemes}
  return theory.cached_per_scheme(
      cache_path, arm, n, list(config.schemes), compute, also_read=also_read
  )


def _host() -> tuple[int, int]:
  return jax.process_index(), jax.process_count()


def _check_host(index: Any, count: Any, text: str) -> tuple[int, int]:
  ok = (
      isinstance(index, (int, np.integer))
      and isinstance(count, (int, np.integer))
      and not isinstance(index, bool)
      and not isinstance(count, bool)
      and 0 <= index < count
  )
  if not ok:
    raise ValueError(
        f"host {text} is not a valid 'index/count': both must be integers with "
        "0 <= index < count (e.g. 0/2 and 1/2 for two hosts)."
    )
  return int(index), int(count)


def parse_host(text: str) -> tuple[int, int]:
  """Parses a host share ``'index/count'`` (host ``index`` of ``count``).

  Args:
    text: e.g. ``"1/4"``; spaces around the numbers are allowed.

  Returns:
    ``(index, count)`` with ``0 <= index < count``.

  Raises:
    ValueError: not two integers separated by ``/``, ``count < 1`` or
      ``index`` outside ``[0, count)``; a one-line message saying so.

  Example:
    >>> parse_host("1/4")
    (1, 4)
    >>> parse_host("2/2")
    Traceback (most recent call last):
    ...
    ValueError: host '2/2' is not a valid 'index/count': both must be integers with 0 <= index < count (e.g. 0/2 and 1/2 for two hosts).
  """
  m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", str(text))
  if m is None:
    return _check_host(None, None, repr(text))
  return _check_host(int(m.group(1)), int(m.group(2)), repr(text))


def _held(workdir: str, name: str) -> bool:
  """Whether some process holds the lock file ``name`` in ``workdir``."""
  try:
    with io.workdir_lock(workdir, name=name):
      return False
  except io.WorkdirLockedError:
    return True


def _locks(workdir: str, index: int, count: int) -> contextlib.ExitStack:
  """The workdir locks of one run: see :func:`run_sweep`."""
  stack = contextlib.ExitStack()
  try:
    if count == 1:
      stack.enter_context(io.workdir_lock(workdir, what="sweep"))
      return stack
    # Hosts of one split share the workdir (a whole-sweep run is kept out).
    stack.enter_context(io.workdir_lock(workdir, shared=True, what="sweep"))
    # Shares of different counts overlap (1/2 and 2/3 both take point 5):
    # a split of another count must not be running. Checked and claimed under
    # a short mutex so that two hosts starting at once cannot both pass.
    with io.workdir_lock(workdir, name=f"{io.LOCK_FILENAME}.split", wait=True):
      for path in glob.glob(os.path.join(workdir, f"{io.LOCK_FILENAME}.count*")):
        other = os.path.basename(path)
        if other != f"{io.LOCK_FILENAME}.count{count}" and _held(workdir, other):
          raise io.WorkdirLockedError(
              f"Workdir {workdir!r} is in use by a sweep split into "
              f"{other.rsplit('count', 1)[1]} host shares; a split into {count} would train "
              "some of its points again: use the same count on every host, or another workdir."
          )
      stack.enter_context(
          io.workdir_lock(workdir, name=f"{io.LOCK_FILENAME}.count{count}", shared=True)
      )
    # Each share runs at most once.
    stack.enter_context(
        io.workdir_lock(
            workdir,
            name=f"{io.LOCK_FILENAME}.host{index}",
            what=f"sweep for host share {index}/{count}",
        )
    )
  except BaseException:
    stack.close()
    raise
  return stack


def _refuse_orphan_records(workdir: str) -> None:
  """Refuses sweep records without the config.json that says what produced them."""
  if os.path.exists(os.path.join(workdir, io.CONFIG_FILENAME)):
    return
  found = [
      os.path.basename(p)
      for pattern in (POINTS_GLOB, EVALS_GLOB)
      for p in glob.glob(os.path.join(workdir, pattern))
  ]
  if found:
    # Taken for this config's, they would be reported under its settings unchecked.
    raise ValueError(
        f"{workdir!r} holds sweep records ({', '.join(sorted(found))}) but no config.json, "
        "so nothing says which configuration produced them: pick a new workdir."
    )


def validate_sweep(config: Any) -> list[tuple[str, int]]:
  """Checks every setting of a sweep config, touching no file; returns its points.

  The search settings, the learning-rate grid and its extensions, the bucket
  mode and success rule, the theory settings, and each arm's training config
  at every N of the sweep (:func:`nfscale.experiment.validate`: steps,
  optimizer, schemes, seeds, activation, the task's data limits), so that a
  mistake ends before ``config.json`` is written rather than after a point
  has trained.

  Raises:
    ValueError: the first invalid setting, named by its key.
  """
  points = sweep_points(config)
  s = config.sweep
  for key in ("arms", "ns"):
    seen = [v for i, v in enumerate(s[key]) if v in tuple(s[key])[:i]]
    if seen:
      raise ValueError(f"config.sweep.{key} holds {seen[0]!r} more than once.")
  bad = [n for n in s.ns if not checks.is_int(n) or n < 1]
  if bad:
    raise ValueError(f"config.sweep.ns must hold positive integers, got {tuple(s.ns)}.")
  if config.target is None:
    raise ValueError("a sweep needs config.target (the score every point must reach).")
  # Checked here: each point's model.hidden starts with it, and the model refused it as
  # "hidden widths and out_dim must be positive integers", naming no key.
  checks.config_widths(config, "sweep.hidden_prefix")
  min_width = checks.config_int(config, "sweep.min_width", 1)
  start = checks.config_int(config, "sweep.start", min_width)
  max_width = checks.config_int(config, "sweep.max_width", start)
  checks.config_number(config, "sweep.growth", 1.0)
  checks.config_number(config, "sweep.rel_precision", 0.0, strict=False)
  extensions = checks.config_int(config, "sweep.lr_extensions", 0)
  if extensions:
    checks.config_number(config, "sweep.lr_factor", 1.0)
  checks.config_int(config, "sweep.member_batch", 0)
  checks.config_int(config, "sweep.round_merge_max", 1)
  try:
    success(np.ones(1, bool), str(s.rule))
  except ValueError as e:
    raise ValueError(f"config.sweep.rule: {e}") from None
  checks.config_bool(config, "sweep.lr_censored")
  bucket_mode(config)
  if checks.config_bool(config, "theory.enabled"):
    t_start = checks.config_int(config, "theory.start", 1)
    checks.config_int(config, "theory.max_width", t_start)
    checks.config_int(config, "theory.max_n", 1)
    checks.config_number(config, "theory.rel_precision", 0.0, strict=False)
  # Every N: a task's data limits bound N from below (enough points) and above (the
  # data it has), so checking the largest N alone let a bad small N through.
  for arm in s.arms:
    for n in sorted(set(s.ns), reverse=True):
      try:
        experiment.validate(point_config(config, arm, n, max_width))
      except ValueError as e:
        # The point's model keys come from the arm: name the key the user wrote.
        message = _ARM_KEY.sub(rf"config.arms.{arm}.\1", str(e))
        raise ValueError(f"arm {arm!r} at N={n}: {message}") from None
  return points


def run_sweep(
    config: Any,
    workdir: str,
    *,
    host: tuple[int, int] | None = None,
    progress: bool | None = None,
    report: bool = True,
) -> dict[str, Any]:
  """Runs (or resumes) the sweep ``config`` in ``workdir``.

  Args:
    config: a sweep config (``configs/scaling_*.py``).
    workdir: output directory; must be empty or hold the same config.
    host: ``(index, count)`` of this host; default from ``jax.process_*``.
    progress: progress bars (default: ``config.progress``).
    report: write the table, fits and plots at the end.

  One run per workdir: the run holds a lock on ``workdir`` (``.lock``, an
  ``flock`` the kernel drops when the process dies, even by ``SIGKILL``) for
  its whole duration. A second run on the same workdir does not wait: it
  raises :class:`nfscale.io.WorkdirLockedError` naming the workdir and the
  running sweep's pid, before training anything. With a host split
  (``count > 1``) the hosts share the workdir (a shared lock, which keeps a
  whole-sweep run out) and each share ``index/count`` takes its own
  exclusive lock (``.lock.host<index>``); a split into another ``count``
  (whose shares would overlap) is refused while one runs.

  Returns:
    The report dict (see :func:`write_report`), or the points if ``report``
    is false.

  Raises:
    ValueError: a different config already in ``workdir``, unknown arms, a
      bad ``host``...
    nfscale.io.WorkdirLockedError: another sweep is running in ``workdir``
      (a ``ValueError`` too).
  """
  io.check_workdir_path(workdir)
  points = validate_sweep(config)  # every setting, before the workdir is touched
  _refuse_orphan_records(workdir)
  index, count = _check_host(*host, f"{host[0]!r}/{host[1]!r}") if host else _host()
  io.check_or_write_config(workdir, config.to_dict(), **config_rules())
  with _locks(workdir, index, count):
    cache = os.path.join(workdir, COMPILE_CACHE_DIR)
    if count == 1:  # the workdir's only writer: no cache entry is being written now
      remove_broken_cache_entries(cache)
    with compilation_cache(cache):
      return _run_locked(config, workdir, points, index, count, progress, report)


def _run_locked(
    config: Any,
    workdir: str,
    points: list[tuple[str, int]],
    index: int,
    count: int,
    progress: bool | None,
    report: bool,
) -> dict[str, Any]:
  """:func:`run_sweep` once the workdir is checked and locked."""
  progress = bool(config.progress) if progress is None else progress
  points_path = os.path.join(workdir, "points.jsonl" if count == 1 else f"points.{index}.jsonl")
  evals_path = os.path.join(workdir, EVALS_FILE if count == 1 else f"evals.{index}.jsonl")
  done = {(r["arm"], r["n"]) for r in read_points(workdir)}
  # Every share's records, this one's last (it wins): a resume split into
  # another host count gives a point to another share than the one that began
  # its search, and reading only this share's file would train its widths again.
  others = [p for p in sorted(glob.glob(os.path.join(workdir, EVALS_GLOB))) if p != evals_path]
  cache = {
      evals_cache_key(r, config): r
      for path in [*others, evals_path]
      for r in io.read_jsonl(path, missing_ok=True)
  }
  mine = [p for i, p in enumerate(points) if i % count == index]
  if not mine:
    logging.warning(
        "Host share %d/%d has no point to train: the sweep has %d points.",
        index,
        count,
        len(points),
    )
  todo = [p for p in mine if p not in done]
  theory_path = os.path.join(workdir, "theory.jsonl" if count == 1 else f"theory.{index}.jsonl")
  # Every share's eq. 4.6 results too, for the same reason as the evaluations'.
  theory_others = [
      p for p in sorted(glob.glob(os.path.join(workdir, "theory*.jsonl"))) if p != theory_path
  ]
  theory_fn = (
      functools.partial(theory_widths, cache_path=theory_path, also_read=theory_others)
      if config.theory.enabled
      else None
  )
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="sweep points", unit="pt")
  for arm, n in todo:
    tfn = theory_fn if (theory_fn and n <= int(config.theory.max_n)) else None
    rec = run_point(
        config,
        arm,
        n,
        cache,
        lambda recs: io.append_jsonl_lines(evals_path, recs),
        progress=progress,
        theory_fn=tfn,
    )
    io.append_jsonl(points_path, rec)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(arm=arm, n=n)
  if bar is not None:
    bar.close()
  if jax.process_count() == 1:
    if count > 1 and report:
      # A share of a split by hand (--host): the other shares may still be training or
      # writing a report of their own, so no share writes one (files of two partial
      # reports could mix); --report_only merges them once all are done.
      return {"points": read_points(workdir), "report_written_by": "report_only"}
    return write_report(config, workdir) if report else {"points": read_points(workdir)}
  # Several JAX processes (sharding.initialize_distributed): every host's
  # points must be on disk before the merged report; process 0 writes it.
  sharding.barrier("nfscale_sweep_points_done")
  try:
    if jax.process_index() != 0:
      return {"points": read_points(workdir), "report_written_by": 0}
    return write_report(config, workdir) if report else {"points": read_points(workdir)}
  finally:
    # The others wait for the report: a process that exits enters JAX's
    # shutdown barrier, which gives up after 5 minutes and then ends every
    # process, process 0 in the middle of a long report included.
    sharding.barrier("nfscale_sweep_report_written")
