"""Member batches: an ensemble too big for the device trains in several parts.

Members of an ensemble never interact, so an ensemble may train as several
smaller ones with the same results (each member's trajectory depends only on
its own params, rate and the shared per-step rng). The sweeps use this when
every scheme x seed x rate of one width does not fit in the accelerator's
memory (at N = 200k and width 8192 one member's last hidden features alone take
6.5 GB in float32).

How a batch size is chosen (:func:`plan`):

1. the device's free memory (``memory_stats``: ``bytes_limit - bytes_in_use``;
   unknown on a CPU, where one batch is used unless a size is given);
2. a per-member estimate from shapes (:func:`member_bytes`): the sizes of every
   value the traced loss-and-gradient computes for one member (an upper bound:
   XLA reuses buffers) plus params, gradients and optimizer state;
3. the largest batch whose estimate fits in ``headroom`` of the free memory.

Where the estimate says a batch uses more than half the free memory, the
planned batch's compiled step is checked with XLA's own ``memory_analysis``
(:func:`compiled_bytes`) and halved until it fits. And whatever the plan, an
out-of-memory error never ends the run: :func:`run_batched` halves the batch
and retries (down to one member, where it gives up with a plain message).

Example:
  >>> plan(10, member_bytes=100, free_bytes=450, headroom=1.0)
  4
  >>> plan(10, member_bytes=100, free_bytes=None)  # unknown free memory: one batch
  10
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, TypeVar

import jax
import numpy as np
import optax

from nfscale import train

PyTree = Any
T = TypeVar("T")

#: Fraction of the free memory a planned batch may use (the rest is for XLA's
#: workspace, fragmentation and the estimate's error).
HEADROOM = 0.7


class MemberBatchError(RuntimeError):
  """One member alone does not fit in the device's memory."""


def free_bytes(device: jax.Device | None = None) -> int | None:
  """The device's free memory in bytes, or ``None`` where the backend does not say (CPU)."""
  device = device or jax.local_devices()[0]
  try:
    stats = device.memory_stats()
  except (NotImplementedError, RuntimeError, AttributeError):
    return None
  if not stats or "bytes_limit" not in stats:
    return None
  return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def nbytes(tree: PyTree) -> int:
  """Total bytes of a pytree's arrays (or ``ShapeDtypeStruct`` leaves)."""
  return int(
      sum(
          math.prod(a.shape) * np.dtype(a.dtype).itemsize
          for a in jax.tree.leaves(tree)
          if hasattr(a, "shape")
      )
  )


def member_bytes(
    loss_fn: Callable[..., Any],
    params_one: PyTree,
    data: PyTree,
    tx: optax.GradientTransformation,
) -> int:
  """An upper estimate of one member's device memory during training, from shapes.

  Traces (does not compile or run) the loss and its gradient for one member and
  adds up the sizes of all values the trace computes, plus the params, their
  gradients and the optimizer state. XLA reuses and fuses buffers, so the real
  footprint is smaller; the estimate only sizes batches conservatively.

  Args:
    loss_fn: ``loss_fn(params, batch, rng) -> (loss, aux)`` for one member.
    params_one: one member's params (arrays or ``jax.ShapeDtypeStruct``).
    data: the training data the loss sees (the full batch).
    tx: the optimizer (its state is counted per member).

  Returns:
    Bytes.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  jaxpr = jax.make_jaxpr(grad_fn)(params_one, data, jax.random.key(0))
  traced = 0
  for eqn in jaxpr.jaxpr.eqns:
    for var in eqn.outvars:
      aval = var.aval
      if hasattr(aval, "shape") and hasattr(aval, "dtype"):
        try:
          itemsize = np.dtype(aval.dtype).itemsize
        except TypeError:  # PRNG key types
          itemsize = 8
        traced += math.prod(aval.shape) * itemsize
  opt_state = jax.eval_shape(tx.init, params_one)
  # params in and out (donated, but both live at the boundary), gradients, updates.
  return traced + 4 * nbytes(params_one) + nbytes(opt_state)


def compiled_bytes(
    loss_fn: Callable[..., Any],
    params: PyTree,
    data: PyTree,
    tx: optax.GradientTransformation,
    **chunk_kwargs: Any,
) -> int | None:
  """Device bytes XLA reports for one training chunk of the ensemble ``params``.

  Compiles (does not run) :func:`nfscale.train.make_train_chunk` for these
  shapes and reads ``memory_analysis()``: arguments + outputs + temporaries,
  less the donated buffers that outputs reuse. ``None`` where the backend gives
  no analysis.

  Args:
    loss_fn: the per-member loss.
    params: stacked params with the leading member axis (arrays or
      ``jax.ShapeDtypeStruct``).
    data: the training data.
    tx: the optimizer.
    **chunk_kwargs: :func:`nfscale.train.make_train_chunk`'s keyword arguments
      (``chunk_steps``, ``score_fn``, ``target``, ...).
  """
  chunk = train.make_train_chunk(loss_fn, tx, **chunk_kwargs)
  state = jax.eval_shape(lambda p: train.init_state(p, tx), params)
  num = jax.tree.leaves(params)[0].shape[0]
  lrs = jax.ShapeDtypeStruct((num,), np.float32)
  analysis = chunk.lower(state, lrs, data, jax.random.key(0), 0, 1).compile().memory_analysis()
  if analysis is None:
    return None
  return int(
      analysis.argument_size_in_bytes
      + analysis.output_size_in_bytes
      + analysis.temp_size_in_bytes
      - analysis.alias_size_in_bytes
  )


def plan(
    num_members: int,
    member_bytes: int,
    free_bytes: int | None,
    headroom: float = HEADROOM,
    fixed_bytes: int = 0,
) -> int:
  """The largest batch size (members) whose estimate fits in ``headroom`` of free memory.

  Args:
    num_members: members to train.
    member_bytes: estimated bytes per member (:func:`member_bytes`).
    free_bytes: the device's free memory, or ``None`` (unknown: one batch).
    headroom: usable fraction of ``free_bytes``.
    fixed_bytes: bytes every batch needs whatever its size (the data).

  Returns:
    A size in ``[1, num_members]``.
  """
  if num_members <= 0:
    raise ValueError(f"num_members must be positive, got {num_members}.")
  if free_bytes is None:
    return num_members
  budget = headroom * free_bytes - fixed_bytes
  fits = int(budget // max(1, member_bytes)) if budget > 0 else 0
  return max(1, min(num_members, fits))


def is_out_of_memory(error: BaseException) -> bool:
  """Whether ``error`` is an accelerator's out-of-memory error (XLA's RESOURCE_EXHAUSTED)."""
  text = str(error)
  return isinstance(error, MemoryError) or (
      "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text
  )


def run_batched(
    train_batch: Callable[[int, int], Sequence[T]],
    num_members: int,
    batch: int,
    on_fallback: Callable[[int, BaseException], None] | None = None,
) -> tuple[list[T], list[int]]:
  """Trains ``num_members`` in batches of at most ``batch``, halving the size on OOM.

  Args:
    train_batch: ``train_batch(start, stop)`` trains members ``[start, stop)``
      and returns one result per member.
    num_members: how many members.
    batch: the first batch size tried.
    on_fallback: called with the new size and the error when a batch ran out
      of memory (for logging).

  Returns:
    ``(results, sizes)``: one result per member in order, and the sizes of the
    batches that completed.

  Raises:
    MemberBatchError: a single member ran out of memory.
  """
  results: list[T] = []
  sizes: list[int] = []
  start = 0
  while start < num_members:
    stop = min(start + batch, num_members)
    try:
      out = list(train_batch(start, stop))
    except Exception as err:  # pylint: disable=broad-except
      if not is_out_of_memory(err):
        raise
      if stop - start == 1:
        raise MemberBatchError(
            "One ensemble member alone does not fit in the device's memory; use fewer samples "
            "per step (batch_size), a smaller width or remat."
        ) from err
      batch = max(1, (stop - start) // 2)
      if on_fallback is not None:
        on_fallback(batch, err)
      continue
    if len(out) != stop - start:
      raise ValueError(f"train_batch returned {len(out)} results for {stop - start} members.")
    results += out
    sizes.append(stop - start)
    start = stop
  return results, sizes
