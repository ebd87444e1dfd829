"""The ensemble training engine: one jitted, vmapped step over many models.

An *ensemble* is a set of members that share one architecture but differ in
initialization scheme, seed and learning rate. Their params and optimizer
states are stacked on a leading axis and trained together by a single
``jax.jit(lax.scan(jax.vmap(step)))`` that donates its buffers; the leading
axis is sharded over all devices (:mod:`nfscale.sharding`).

Per member, the engine

* stops updating once the train PSNR reaches ``target_psnr`` (a masked update,
  so nothing recompiles) and records after how many updates that happened;
* freezes the member and flags it ``diverged`` when the loss, a gradient or
  the updated params become NaN/Inf, while the others go on.

The learning rate is a per-member array: optimizers are built with unit step
size and the update is scaled by the member's rate, which is exact for SGD and
Adam (``-lr * u`` with ``u`` the unit-rate update) and lets one run sweep
learning rates as just more members.

Example (two schemes fitting a sine on 32 points, 20 Adam steps):
  >>> import numpy as np
  >>> from nfscale import make_field
  >>> from nfscale.train import Member, fit, init_members, mse_loss
  >>> x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
  >>> y = np.sin(np.pi * x)
  >>> field = make_field((16,), 1, activation="sine", scheme="init1")
  >>> members = [Member("init1", 0, 1e-2), Member("kaiming_normal", 0, 1e-2)]
  >>> params = init_members(field, members, x[:1])
  >>> result = fit(mse_loss(field), params, members, {"x": x, "y": y}, steps=20,
  ...              chunk_steps=10, progress=False)
  >>> result.steps_run, result.state.loss.shape
  (20, (2,))
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nfscale import initializers
from nfscale import metrics
from nfscale import sharding

Array = jax.Array
PyTree = Any
LossFn = Callable[[PyTree, Mapping[str, Array]], Array]


class Member(NamedTuple):
  """One ensemble member: which scheme, which init seed, which learning rate."""

  scheme: str
  seed: int
  lr: float


class EnsembleState(NamedTuple):
  """Training state of all members, each leaf with a leading member axis."""

  params: PyTree
  opt_state: PyTree
  steps: Array            # int32: updates applied so far
  done: Array             # bool: reached the target (frozen)
  diverged: Array         # bool: NaN/Inf loss or gradient (frozen)
  steps_to_target: Array  # int32: updates before reaching the target, -1 if not
  loss: Array             # float32: loss at the last evaluated step
  best_psnr: Array        # float32: best train PSNR seen


class ChunkLog(NamedTuple):
  """Per-step, per-member loss of one chunk: shape ``(chunk_steps, members)``."""

  loss: Array


class FitResult(NamedTuple):
  """What :func:`fit` returns."""

  state: EnsembleState
  history: list[dict[str, Any]]  # one record per log step: step, loss[], psnr[]
  seconds: float
  steps_run: int


def make_optimizer(name: str, **kwargs) -> optax.GradientTransformation:
  """A unit-step-size optax transformation; the engine multiplies by ``-lr``.

  Args:
    name: ``"sgd"`` (plain full-batch gradient descent, optional ``momentum``)
      or ``"adam"`` (``b1``, ``b2``, ``eps``).
    **kwargs: the optimizer's parameters.

  Returns:
    The transformation.

  Raises:
    ValueError: unknown name or parameter.
  """
  try:
    if name == "sgd":
      momentum = kwargs.pop("momentum", 0.0)
      if kwargs:
        raise TypeError
      return optax.trace(decay=momentum) if momentum else optax.identity()
    if name == "adam":
      return optax.scale_by_adam(**kwargs)
  except TypeError as e:
    raise ValueError(f"Invalid parameters {sorted(kwargs)} for optimizer {name!r}.") from e
  raise ValueError(f"Unknown optimizer {name!r}; valid optimizers: sgd, adam.")


def _stack(trees: Sequence[PyTree]) -> PyTree:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def init_members(model: Any, members: Sequence[Member], example_input: Array,
                 scheme_params: Mapping[str, Any] | None = None) -> PyTree:
  """Initializes every member under its own scheme and stacks the params.

  Args:
    model: a :class:`nfscale.models.NeuralField` (its own scheme is replaced).
    members: the members.
    example_input: a coordinate batch to trace the shapes, e.g. ``x[:1]``.
    scheme_params: extra parameters of every scheme (bias rules, ``omega``...).

  Returns:
    The params pytree with a leading member axis.

  Raises:
    ValueError: if members produce differently shaped params.
  """
  if not members:
    raise ValueError("members must not be empty.")
  # One vmapped init per scheme over its distinct seeds (members that differ
  # only in lr share an init): a trace per scheme instead of per member.
  inits: dict[tuple[str, int], PyTree] = {}
  for scheme in dict.fromkeys(m.scheme for m in members):
    seeds = list(dict.fromkeys(m.seed for m in members if m.scheme == scheme))
    module = model.clone(scheme=initializers.get_scheme(
        scheme, **initializers.filter_hparams(scheme, dict(scheme_params or {}))))
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    stacked = jax.vmap(module.init, in_axes=(0, None))(keys, example_input)
    for j, seed in enumerate(seeds):
      inits[(scheme, seed)] = jax.tree.map(lambda a, j=j: a[j], stacked)
  trees = [inits[(m.scheme, m.seed)] for m in members]
  shapes = [jax.tree.map(lambda a: (a.shape, a.dtype), t) for t in trees]
  if any(s != shapes[0] for s in shapes):
    raise ValueError("ensemble members must share one architecture.")
  return _stack(trees)


def mse_loss(model: Any, x_key: str = "x", y_key: str = "y") -> LossFn:
  """Mean squared error of ``model.apply(params, batch[x_key])`` against ``batch[y_key]``."""

  def loss_fn(params, batch):
    pred = model.apply(params, batch[x_key])
    return jnp.mean(jnp.square(pred - batch[y_key]))

  return loss_fn


def init_state(params: PyTree, tx: optax.GradientTransformation) -> EnsembleState:
  """A fresh :class:`EnsembleState` for stacked ``params``."""
  m = jax.tree.leaves(params)[0].shape[0]
  # The chunk function donates the state's buffers; copy so that the caller's
  # params stay valid after fit() (one copy per run, not per step).
  params = jax.tree.map(jnp.copy, params)
  return EnsembleState(
      params=params, opt_state=jax.vmap(tx.init)(params),
      steps=jnp.zeros(m, jnp.int32), done=jnp.zeros(m, bool), diverged=jnp.zeros(m, bool),
      steps_to_target=jnp.full(m, -1, jnp.int32), loss=jnp.full(m, jnp.nan, jnp.float32),
      best_psnr=jnp.full(m, -jnp.inf, jnp.float32))


def _all_finite(tree: PyTree) -> Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _select(pred: Array, a: PyTree, b: PyTree) -> PyTree:
  return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def make_member_step(loss_fn: LossFn, tx: optax.GradientTransformation, *,
                     target_psnr: float | None, data_range: float = 1.0
                     ) -> Callable[[EnsembleState, Array, Mapping[str, Array]],
                                   tuple[EnsembleState, Array]]:
  """One training step of ONE member (unbatched state); vmap it over members.

  The PSNR that decides the target is that of the loss at the current params
  (before the update), so ``steps_to_target`` counts the updates needed.
  """

  def step(state: EnsembleState, lr: Array, batch: Mapping[str, Array]):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    psnr = metrics.mse_to_psnr(loss, data_range)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p - (lr * u).astype(p.dtype), state.params, updates)
    # A huge step can overflow the params while loss and gradient are still
    # finite; checking the new params keeps a diverged member's last finite
    # params (and costs one reduction, small next to the matmuls).
    finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
    active = ~(state.done | state.diverged)
    reached = (psnr >= target_psnr) if target_psnr is not None else jnp.bool_(False)
    newly_done = active & jnp.isfinite(loss) & reached
    update = active & finite & ~reached
    new = EnsembleState(
        params=_select(update, params, state.params),
        opt_state=_select(update, opt_state, state.opt_state),
        steps=state.steps + update.astype(jnp.int32),
        done=state.done | newly_done,
        diverged=state.diverged | (active & ~finite & ~reached),
        steps_to_target=jnp.where(newly_done, state.steps, state.steps_to_target),
        loss=jnp.where(active, loss, state.loss).astype(jnp.float32),
        best_psnr=jnp.where(active & finite, jnp.maximum(state.best_psnr, psnr),
                            state.best_psnr).astype(jnp.float32))
    return new, jnp.where(active, loss, state.loss).astype(jnp.float32)

  return step


#: XLA options the chunk function is compiled with on the CPU backend.
#: By default XLA:CPU also hands reductions, and elementwise ops next to a
#: matmul, to YNNPACK, which then needs every broadcast operand (a scalar such
#: as a sine's omega, the first layer's inputs) written out as a full-size
#: array; for reductions over many points it is slower still. Keeping YNNPACK
#: for the matmuls only (XLA fuses the rest itself) took a 2->256x3->3 SIREN
#: step on 65536 points from ~1.46 to ~0.73 CPU-seconds and a 64-member sinc
#: ensemble from ~12.3 to ~9.5 CPU-ms per step (docs/benchmarks.md, with the
#: multiply-add first layer of nfscale.models). Set it to ``{}`` for XLA's
#: defaults; options this jaxlib does not know are dropped.
CPU_COMPILER_OPTIONS: dict[str, Any] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.lru_cache(maxsize=None)
def _supported_cpu_options(items: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
  """The options among ``items`` that this jaxlib's CPU compiler accepts."""
  ok = []
  for key, value in items:
    try:
      jax.jit(lambda v: v + 1, compiler_options={key: value}).lower(np.float32(0)).compile()
    except Exception:  # Unknown option or value in this jaxlib version: skip it.
      continue
    ok.append((key, value))
  return tuple(ok)


def chunk_compiler_options() -> dict[str, Any] | None:
  """The compiler options of :func:`make_train_chunk` (``None`` off CPU)."""
  if jax.default_backend() != "cpu" or not CPU_COMPILER_OPTIONS:
    return None
  return dict(_supported_cpu_options(tuple(sorted(CPU_COMPILER_OPTIONS.items())))) or None


def make_train_chunk(loss_fn: LossFn, tx: optax.GradientTransformation, *, chunk_steps: int,
                     target_psnr: float | None = None, data_range: float = 1.0,
                     batch_size: int | None = None
                     ) -> Callable[[EnsembleState, Array, Mapping[str, Array], Array],
                                   tuple[EnsembleState, ChunkLog]]:
  """Builds the jitted chunk function ``(state, lrs, data, key) -> (state, log)``.

  It runs ``chunk_steps`` vmapped steps under ``lax.scan`` and donates the
  state's buffers. With ``batch_size``, every step trains on a random subset
  of the points (the same subset for all members; every leaf of ``data``
  must share the leading point axis); otherwise full batch.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` for one member.
    tx: unit-rate optimizer from :func:`make_optimizer`.
    chunk_steps: steps per dispatch.
    target_psnr: freeze members reaching it (``None``: never).
    data_range: converts the loss to PSNR (``10 log10(range^2 / loss)``).
    batch_size: minibatch size, or ``None`` for full batch.

  Returns:
    The jitted function.
  """
  if chunk_steps <= 0:
    raise ValueError(f"chunk_steps must be positive, got chunk_steps={chunk_steps}.")
  member_step = make_member_step(loss_fn, tx, target_psnr=target_psnr, data_range=data_range)
  ensemble_step = jax.vmap(member_step, in_axes=(0, 0, None))

  def chunk(state, lrs, data, key):
    def body(state, k):
      batch = data
      if batch_size is not None:
        n = jax.tree.leaves(data)[0].shape[0]
        idx = jax.random.randint(k, (batch_size,), 0, n)
        batch = jax.tree.map(lambda a: a[idx], data)
      state, loss = ensemble_step(state, lrs, batch)
      return state, loss

    keys = jax.random.split(key, chunk_steps)
    state, losses = jax.lax.scan(body, state, keys)
    return state, ChunkLog(loss=losses)

  return jax.jit(chunk, donate_argnums=(0,), compiler_options=chunk_compiler_options())


def _pad_members(tree: PyTree, pad: int) -> PyTree:
  if not pad:
    return tree
  return jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[:1], pad, 0)]), tree)


def fit(loss_fn: LossFn, params: PyTree, members: Sequence[Member], data: Mapping[str, Array],
        *, steps: int, optimizer: str = "adam", optimizer_params: Mapping[str, Any] | None = None,
        chunk_steps: int = 100, log_every: int = 100, target_psnr: float | None = None,
        data_range: float = 1.0, batch_size: int | None = None, seed: int = 0,
        shard: bool = True, progress: bool = True, desc: str = "train",
        on_log: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
  """Trains stacked ``params`` for ``steps`` steps; the whole ensemble at once.

  Args:
    loss_fn: per-member loss ``(params, batch) -> scalar``.
    params: stacked params from :func:`init_members`.
    members: the members (their ``lr`` is used).
    data: dict of device or host arrays (the training batch).
    steps: total steps.
    optimizer: ``"sgd"`` or ``"adam"``; ``optimizer_params`` its parameters.
    chunk_steps: steps per jitted dispatch (``lax.scan`` length).
    log_every: history/``on_log`` interval in steps (rounded up to chunks).
    target_psnr: members stop when their train PSNR reaches it.
    data_range: for PSNR.
    batch_size: minibatch size, ``None`` for full batch.
    seed: seed of the minibatch sampling.
    shard: shard the member axis over all devices.
    progress: show a tqdm bar.
    desc: progress bar label.
    on_log: called with each history record (e.g. to append metrics.jsonl).
    optimizer_params: see ``optimizer``.

  Returns:
    A :class:`FitResult`; the state has exactly ``len(members)`` members.
  """
  if steps < 0:
    raise ValueError(f"steps must be non-negative, got steps={steps}.")
  if batch_size is not None and batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got batch_size={batch_size}.")
  num = len(members)
  if jax.tree.leaves(params)[0].shape[0] != num:
    raise ValueError("params must have one leading entry per member.")
  tx = make_optimizer(optimizer, **dict(optimizer_params or {}))
  lrs = jnp.asarray([m.lr for m in members], jnp.float32)
  state = init_state(params, tx)

  pad = 0
  mesh = sharding.ensemble_mesh() if shard else None
  if mesh is not None and mesh.size > 1:
    pad = (-num) % mesh.size
    state = _pad_members(state, pad)
    lrs = _pad_members(lrs, pad)
    # Padding members are copies of member 0 marked done: frozen, discarded.
    state = state._replace(done=state.done.at[num:].set(True))
    state = sharding.shard_members(state, mesh)
    lrs = sharding.shard_members(lrs, mesh)
    data = sharding.replicate(data, mesh)
  else:
    data = jax.tree.map(jnp.asarray, data)

  chunk_steps = max(1, min(chunk_steps, steps)) if steps else 1
  run_chunk = make_train_chunk(loss_fn, tx, chunk_steps=chunk_steps, target_psnr=target_psnr,
                               data_range=data_range, batch_size=batch_size)
  history: list[dict[str, Any]] = []
  key = jax.random.key(seed)
  done_steps, next_log = 0, 0
  bar = _progress(steps, desc) if progress else None
  t0 = time.perf_counter()
  while done_steps < steps:
    key, sub = jax.random.split(key)
    state, log = run_chunk(state, lrs, data, sub)
    done_steps += chunk_steps
    losses = np.asarray(log.loss)[:, :num]
    last = losses[-1]
    psnr = _psnr_np(last, data_range)
    if done_steps >= next_log or done_steps >= steps:
      record = {"step": done_steps, "loss": last.tolist(), "psnr": psnr.tolist()}
      history.append(record)
      if on_log is not None:
        on_log(record)
      next_log = done_steps + log_every
    frozen = np.asarray(state.done | state.diverged)[:num]
    if bar is not None:
      finite = psnr[np.isfinite(psnr)]
      bar.update(chunk_steps)
      if finite.size:
        bar.set_postfix(best=f"{finite.max():.2f}dB", worst=f"{finite.min():.2f}dB",
                        frozen=f"{int(frozen.sum())}/{num}")
    if frozen.all():
      break
  jax.block_until_ready(state)
  seconds = time.perf_counter() - t0
  if bar is not None:
    bar.close()
  state = jax.tree.map(lambda a: a[:num], state)
  return FitResult(state=state, history=history, seconds=seconds, steps_run=done_steps)


def _psnr_np(loss: np.ndarray, data_range: float) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return 10.0 * np.log10(data_range ** 2 / loss)


def _progress(total: int, desc: str):
  from tqdm.auto import tqdm
  return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def unstack(tree: PyTree, i: int) -> PyTree:
  """Member ``i`` of a stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


def ensemble_apply(model: Any, params: PyTree, x: Array, *, batch: int = 65536) -> Array:
  """Evaluates every member on ``x`` (chunked over points to bound memory).

  Returns:
    Array ``(members, len(x), out_dim)``.
  """
  apply = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))
  outs = [apply(params, x[i:i + batch]) for i in range(0, x.shape[0], batch)]
  return jnp.concatenate(outs, axis=1)
