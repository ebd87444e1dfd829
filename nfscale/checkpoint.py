"""Checkpoints of an ensemble's training state in a workdir (orbax-checkpoint).

A checkpoint holds the whole :class:`nfscale.train.EnsembleState` (params,
optimizer state, per-member step counters and flags) of every member, and a
small JSON item: the global step (the engine's rng position is a function of
it) and the history logged so far. Orbax writes each step to a temporary
directory and renames it when complete, so a run killed at any moment leaves
only complete checkpoints; the last two are kept.

Example:
  >>> import tempfile
  >>> d = tempfile.mkdtemp()
  >>> save(d, 10, {"w": np.ones(3, np.float32)}, {"history": []})
  >>> latest_step(d)
  10
  >>> state, meta = restore(d, {"w": np.zeros(3, np.float32)})
  >>> state["w"].tolist(), meta["step"]
  ([1.0, 1.0, 1.0], 10)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator, Mapping

import jax
import numpy as np

#: Subdirectory of the workdir holding the checkpoints.
CHECKPOINT_DIR = "checkpoints"
_KEEP = 2


def _manager(workdir: str, create: bool):
  import orbax.checkpoint as ocp  # heavy import, only when checkpoints are used

  options = ocp.CheckpointManagerOptions(
      max_to_keep=_KEEP, create=create, enable_async_checkpointing=False
  )
  return ocp, ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options
  )


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
  """Holds a Ctrl-C (SIGINT) that arrives in the block until the block has ended.

  Orbax finishes a save in its own threads: a ``KeyboardInterrupt`` in the
  middle left the step unwritten and, in 5 of 16 interrupted saves, a background
  thread's traceback ("cannot schedule new futures after shutdown") after the
  resume hint. Held, the interrupt stops the run right after a complete
  checkpoint. A second Ctrl-C stops at once (a save stuck on a slow disk
  stays interruptible). Only the main thread can handle signals; elsewhere
  this does nothing.
  """
  previous = signal.getsignal(signal.SIGINT)
  if threading.current_thread() is not threading.main_thread() or previous in (
      signal.SIG_IGN,
      None,  # a handler Python did not install: leave it alone
  ):
    yield
    return
  received = []

  def hold(signum, frame):
    del signum, frame
    if received:
      raise KeyboardInterrupt
    received.append(True)

  signal.signal(signal.SIGINT, hold)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received:
    signal.raise_signal(signal.SIGINT)  # delivered now, to the handler restored above


def latest_step(workdir: str) -> int | None:
  """The step of the newest complete checkpoint in ``workdir`` (``None``: none)."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    return None
  _, mgr = _manager(workdir, create=False)
  step = mgr.latest_step()
  mgr.close()
  return step


def save(workdir: str, step: int, state: Any, meta: Mapping[str, Any]) -> None:
  """Writes ``state`` (a pytree of arrays) and ``meta`` (JSON-able) as checkpoint ``step``.

  Args:
    workdir: the run's directory (checkpoints go to ``workdir/checkpoints``).
    step: the global training step (the checkpoint's name).
    state: the pytree to save; leaves are converted to host numpy arrays.
    meta: extra JSON data; ``step`` is added.

  A Ctrl-C during the save takes effect once the checkpoint is complete (a
  second one at once).
  """
  ocp, mgr = _manager(workdir, create=True)
  host = jax.tree.map(np.asarray, jax.device_get(state))
  meta = dict(meta, step=int(step))
  with _sigint_deferred():  # a Ctrl-C here stops the run after this checkpoint
    mgr.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    mgr.wait_until_finished()
    mgr.close()


def restore(workdir: str, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
  """Reads checkpoint ``step`` (default: the newest) into the structure of ``template``.

  Args:
    workdir: the run's directory.
    template: a pytree with the saved structure, shapes and dtypes (e.g. a
      fresh state of the same run).
    step: which checkpoint; ``None`` for the newest.

  Returns:
    ``(state, meta)`` with host numpy leaves, in the template's dtypes.

  Raises:
    ValueError: no checkpoint (or not ``step``), or one whose structure or
      shapes differ from ``template``'s.
  """
  step = latest_step(workdir) if step is None else step
  if step is None:
    raise ValueError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)!r}.")
  ocp, mgr = _manager(workdir, create=False)
  host = jax.tree.map(np.asarray, jax.device_get(template))
  try:
    steps = sorted(mgr.all_steps())
    if step not in steps:
      raise ValueError(f"no checkpoint {step} in {workdir!r}; it holds steps {steps}.")
    try:
      out = mgr.restore(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardRestore(host), meta=ocp.args.JsonRestore()
          ),
      )
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(
          f"checkpoint {step} in {workdir!r} does not match this run's state (another "
          f"structure of arrays; orbax says: {e})"
      ) from e
  finally:
    mgr.close()
  # Orbax restores a saved array whatever the template's shape, and casts to the
  # template's dtype: a checkpoint of another run would load without a word.
  for (path, want), got in zip(
      jax.tree_util.tree_flatten_with_path(host)[0], jax.tree.leaves(out.state)
  ):
    got = np.asarray(got)
    if got.shape != want.shape:
      raise ValueError(
          f"checkpoint {step} in {workdir!r} does not match this run's state: "
          f"{jax.tree_util.keystr(path)} has shape {got.shape}, the run's {want.shape}."
      )
  return out.state, dict(out.meta)
