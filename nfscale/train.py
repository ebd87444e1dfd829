"""The ensemble training engine: one jitted, vmapped step over many models.

An *ensemble* is a set of members that share one architecture but differ in
initialization scheme, seed and learning rate. Their params and optimizer
states are stacked on a leading axis and trained together by a single
``jax.jit(lax.scan(jax.vmap(step)))`` that donates its buffers; the leading
axis is sharded over all devices (:mod:`nfscale.sharding`).

The engine knows nothing about tasks. It gets a per-member loss
``loss_fn(params, batch, rng) -> (loss, aux)`` and a *score*
``score_fn(loss, aux) -> scalar`` (higher is better, e.g. a PSNR); per member it

* stops updating once the score reaches ``target`` (a masked update, so
  nothing recompiles) and records after how many updates that happened;
* freezes the member and flags it ``diverged`` when the loss, a gradient or
  the updated params become NaN/Inf, or when the loss exceeds
  ``diverge_factor`` times the member's first (step-0) loss (see
  :data:`DEFAULT_DIVERGE_FACTOR`), while the others go on;
* conjugates complex gradients before the optimizer (see
  :func:`descent_gradients`).

Every step gets ``fold_in(key(seed), step)`` as its rng (the same for all
members; it draws the minibatch and is passed to ``loss_fn``), so a run
resumed from a checkpoint replays exactly the steps it would have run.

Learning rates are per member: the optimizer is built with unit learning
rate (times the optional schedule) and its update is scaled by the member's
rate. This is exact for every optax optimizer whose update is linear in its
learning rate (those that scale by it as their last step), so one run can
sweep learning rates as just more members; the few aliases that use the rate
otherwise are left out (:data:`NONLINEAR_IN_LR`).

Example:
  >>> from nfscale import models
  >>> x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
  >>> data = {"x": x, "y": np.sin(3 * x)}
  >>> field = models.make_field(hidden=(32,), out_dim=1, activation="sine")
  >>> members = [Member("init1", 0, 1e-2), Member("lecun_normal", 0, 1e-2)]
  >>> params = init_members(field, members, x[:1])
  >>> psnr = lambda loss, aux: -10 * jnp.log10(loss)
  >>> result = fit(models.mse_loss(field), params, members, data, steps=300,
  ...              score_fn=psnr, target=30.0, progress=False, shard=False)
  >>> np.asarray(result.state.done).tolist()
  [True, True]
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nfscale import initializers
from nfscale import sharding

Array = jax.Array
PyTree = Any
LossFn = Callable[[PyTree, Mapping[str, Array], Array], tuple[Array, Mapping[str, Array]]]
ScoreFn = Callable[[Array, Mapping[str, Array]], Array]

#: A member whose loss exceeds this multiple of its first (step-0) loss is
#: flagged ``diverged`` and frozen. A fit that works never comes close: the
#: loss at initialization is that of an untrained field, and 1000x above it
#: (30 dB worse in PSNR terms) only happens when the step size blew the
#: weights up (e.g. Adam at lr 1e6, or GD at lr 3 on the image preset). The
#: rule applies only while the first loss is positive.
DEFAULT_DIVERGE_FACTOR = 1e3

#: Learning-rate schedules of :func:`make_optimizer`, as multipliers of each
#: member's learning rate.
SCHEDULES = ("constant", "cosine", "exponential")


class Member(NamedTuple):
  """One ensemble member: which scheme, which init seed, which learning rate."""

  scheme: str
  seed: int
  lr: float


class EnsembleState(NamedTuple):
  """Training state of all members, each leaf with a leading member axis."""

  params: PyTree
  opt_state: PyTree
  steps: Array  # int32: updates applied so far
  done: Array  # bool: reached the target (frozen)
  diverged: Array  # bool: non-finite, or loss beyond diverge_factor x initial (frozen)
  steps_to_target: Array  # int32: updates before reaching the target, -1 if not
  loss: Array  # float32: loss at the last evaluated step
  score: Array  # float32: score at the last evaluated step
  best_score: Array  # float32: best score seen (finite steps)
  initial_loss: Array  # float32: loss at the member's first step (NaN before it)


class ChunkLog(NamedTuple):
  """Per-step, per-member values of one chunk: each ``(chunk_steps, members)``."""

  loss: Array
  score: Array
  aux: dict[str, Array]


class FitResult(NamedTuple):
  """What :func:`fit` returns."""

  # On the devices, sharded as trained; host (NumPy) arrays where the member
  # count was padded to a multiple of the devices (padding dropped on the host).
  state: EnsembleState
  history: list[dict[str, Any]]  # per log step: step, loss[], score[], aux{name: []}
  seconds: float
  steps_run: int


def neg_loss(loss: Array, aux: Mapping[str, Array]) -> Array:
  """The default score: minus the loss (higher is better)."""
  del aux
  return -loss


#: optax aliases whose update is not ``learning_rate`` times a rate-free update,
#: so scaling a unit-rate update by each member's rate would train them wrongly:
#: ``fromage`` multiplies by ``1 / sqrt(1 + lr^2)`` and decays the weights by
#: that factor minus one; ``rprop`` clamps its step sizes to absolute bounds.
NONLINEAR_IN_LR = frozenset({"fromage", "rprop"})


@functools.lru_cache(maxsize=None)
def list_optimizers() -> tuple[str, ...]:
  """The optax optimizers :func:`make_optimizer` accepts.

  Every alias taking a ``learning_rate`` first, except those not linear in it
  (:data:`NONLINEAR_IN_LR`) and L-BFGS.
  """
  names = []
  for name in dir(optax):
    obj = getattr(optax, name)
    # scale_by_* are building blocks, and L-BFGS's update needs the loss
    # function itself (a line search), which the engine does not pass.
    skip = name == "lbfgs" or name in NONLINEAR_IN_LR
    if name.startswith(("_", "scale_by")) or skip or not inspect.isfunction(obj):
      continue
    try:
      params = list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
      continue
    if params[:1] == ["learning_rate"]:
      names.append(name)
  return tuple(sorted(names))


def make_schedule(
    name: str = "constant", params: Mapping[str, Any] | None = None, *, steps: int | None = None
) -> optax.Schedule | float:
  """A learning-rate multiplier: ``1`` at step 0, then as ``name`` says.

  Args:
    name: ``"constant"`` (no params), ``"cosine"`` (``decay_steps``, default
      ``steps``; ``alpha``, the final multiplier, default 0; ``exponent``) or
      ``"exponential"`` (``decay_rate`` and ``transition_steps`` required;
      ``staircase``, ``transition_begin``, ``end_value``), optax's schedules
      with ``init_value=1``.
    params: the schedule's parameters.
    steps: the run's length (the cosine's default ``decay_steps``).

  Returns:
    ``1.0`` for constant, else an optax schedule.

  Raises:
    ValueError: unknown schedule or parameters.
  """
  params = dict(params or {})
  makers = {"cosine": optax.cosine_decay_schedule, "exponential": optax.exponential_decay}
  if name == "constant":
    if params:
      raise ValueError(f"Schedule 'constant' takes no parameters, got {sorted(params)}.")
    return 1.0
  if name not in makers:
    raise ValueError(f"Unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}.")
  signature = inspect.signature(makers[name]).parameters
  accepted = [p for p in signature if p != "init_value"]
  unknown = sorted(set(params) - set(accepted))
  if unknown:
    raise ValueError(
        f"Invalid parameters {unknown} for schedule {name!r}; it takes {', '.join(accepted)}."
    )
  if name == "cosine":
    decay = params.setdefault("decay_steps", steps)
    if not decay or decay <= 0:
      raise ValueError(f"cosine schedule needs decay_steps > 0, got {decay}.")
  missing = [
      p for p in accepted if signature[p].default is inspect.Parameter.empty and p not in params
  ]
  if missing:
    raise ValueError(f"Schedule {name!r} needs {', '.join(missing)} (schedule_params).")
  try:
    fn = makers[name](1.0, **params)
    # optax computes with the parameters only when the schedule is read: a string where a
    # number belongs failed inside the first training chunk (after the workdir was
    # written), and a NaN trained every member to NaN.
    values = [fn(t) for t in sorted({0, 1, int(steps or 1)})]
  except (TypeError, ValueError, ArithmeticError) as e:
    raise ValueError(f"Invalid parameters {params} for schedule {name!r}: {e}") from e
  if not all(np.isfinite(np.asarray(v, np.float64)).all() for v in values):
    raise ValueError(
        f"Invalid parameters {params} for schedule {name!r}: its multiplier is not finite."
    )
  return fn


def make_optimizer(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    schedule: str = "constant",
    schedule_params: Mapping[str, Any] | None = None,
    steps: int | None = None,
    complex_as_real: bool = True,
) -> optax.GradientTransformation:
  """An optax optimizer with unit learning rate; the engine scales it per member.

  Args:
    name: any optax optimizer taking a ``learning_rate`` (see
      :func:`list_optimizers`), e.g. ``"adam"``, ``"sgd"``, ``"adamw"``.
    params: its other parameters (``b1``, ``momentum``, ``weight_decay``...).
    schedule: learning-rate multiplier over steps (:func:`make_schedule`).
    schedule_params: the schedule's parameters.
    steps: the run's length (default length of the cosine schedule).
    complex_as_real: the optimizer sees each complex parameter as the pair of its
      real and imaginary parts (:func:`complex_as_real`); ``False``: optax's own
      complex updates.

  Returns:
    The transformation: its update is ``-schedule(t) * u``; the engine adds
    ``lr * update`` to the params.

  Raises:
    ValueError: unknown name, schedule or parameter.

  Example:
    >>> tx = make_optimizer("sgd", {"momentum": 0.9}, schedule="cosine", steps=100)
    >>> state = tx.init({"w": jnp.ones(2)})
  """
  if not isinstance(name, str):
    # An optax transformation printed as "Unknown optimizer GradientTransformation(...)".
    raise ValueError(
        "optimizer must be an optax optimizer's name, e.g. 'adam', with its other "
        "parameters in optimizer_params (nfscale.train.list_optimizers()), got "
        f"{type(name).__name__}: the engine builds it with unit learning rate and scales its "
        "updates by each member's lr (Member.lr)."
    )
  if name in NONLINEAR_IN_LR:
    raise ValueError(
        f"Optimizer {name!r} is not supported: its update is not linear in the learning "
        "rate, which the engine scales per member (nfscale.train.NONLINEAR_IN_LR)."
    )
  if name not in list_optimizers():
    raise ValueError(
        f"Unknown optimizer {name!r}; valid optimizers: the optax optimizers whose update "
        f"is linear in their learning_rate, e.g. sgd, adam, adamw ({len(list_optimizers())} "
        "in all: nfscale.train.list_optimizers())."
    )
  lr = make_schedule(schedule, schedule_params, steps=steps)
  params = dict(params or {})
  try:
    tx = getattr(optax, name)(learning_rate=lr, **params)
    dummy = {"w": jnp.zeros(2)}
    # init and one update catch the parameter values the constructor accepts lazily: a
    # string where a number belongs (--config.optimizer_params.b1=nan is the string
    # 'nan') failed inside the first training chunk, after the workdir was written.
    update, _ = tx.update({"w": jnp.ones(2)}, tx.init(dummy), dummy)
  except (TypeError, ValueError, ArithmeticError) as e:
    raise ValueError(f"Invalid parameters {params} for optimizer {name!r}: {e}") from e
  if not all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(update)):
    # A NaN hyperparameter trained every member to NaN.
    raise ValueError(
        f"Invalid parameters {params} for optimizer {name!r}: its first update is not finite."
    )
  return complex_as_real_tx(tx) if complex_as_real else tx


def complex_as_real_tx(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """``inner`` applied to complex parameters as pairs of real ones.

  Optax's adaptive optimizers keep one second moment ``|g|^2`` per complex entry,
  so the real and imaginary parts of a Gabor/WIRE weight share one step size;
  PyTorch's optimizers (and WIRE, trained with them) see the two parts as separate
  numbers. ``optax.contrib.split_real_and_imaginary`` does that; it is used only
  when the params hold a complex leaf, so a real model's optimizer state (and its
  checkpoints) are those of ``inner`` itself. It expects descent gradients: pass
  ``jax.grad``'s through :func:`descent_gradients` first.

  Args:
    inner: any optax transformation.

  Returns:
    The transformation, acting on each complex entry's real and imaginary parts.

  Example:
    >>> tx = complex_as_real_tx(optax.adam(1.0))
    >>> g = jnp.array([3.0 + 4.0j])
    >>> u, _ = tx.update(g, tx.init(g))
    >>> bool(jnp.allclose(u, -1.0 - 1.0j, atol=1e-4))  # optax.adam alone: -0.6-0.8j
    True
  """
  split = optax.contrib.split_real_and_imaginary(inner)

  def init(params: PyTree) -> Any:
    if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(params)):
      return split.init(params)
    return inner.init(params)

  def update(updates: PyTree, state: Any, params: PyTree | None = None) -> Any:
    if isinstance(state, optax.contrib.SplitRealAndImaginaryState):
      return split.update(updates, state, params)
    return inner.update(updates, state, params)

  return optax.GradientTransformation(init, update)


def _has_params_only(module: Any) -> bool:
  """Whether ``module(x, params_only=True)`` creates its variables without computing."""
  return "params_only" in inspect.signature(type(module).__call__).parameters


def _init_per_scheme(
    model: Any,
    members: Sequence[Member],
    example_input: Array,
    scheme_params: Mapping[str, Any] | None,
) -> tuple[list[PyTree], list[tuple[int, int]]]:
  """Per scheme, its seeds' params stacked; per member, its (scheme, seed) row."""
  if not members:
    raise ValueError("members must not be empty.")
  # One vmapped init per scheme over its distinct seeds (members that differ
  # only in lr share an init): a trace per scheme instead of per member.
  per_scheme: dict[str, PyTree] = {}
  seed_rows: dict[tuple[str, int], int] = {}
  abstract_input = jax.ShapeDtypeStruct(jnp.shape(example_input), jnp.result_type(example_input))
  for scheme in dict.fromkeys(m.scheme for m in members):
    seeds = list(dict.fromkeys(m.seed for m in members if m.scheme == scheme))
    module = model.clone(
        scheme=initializers.get_scheme(
            scheme, **initializers.filter_hparams(scheme, dict(scheme_params or {}))
        )
    )
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    # lazy_init draws the same params op by op as init, but only traces the
    # forward pass on the example input instead of running it (run eagerly,
    # its primitives compile anew for every new width; a sweep evaluation of
    # 8 schemes on the CPU went from ~5.9 to ~5.5 s). A NeuralField skips even
    # the trace (params_only): lazy_init still runs the parts that depend on
    # the params alone, a dozen small programs per width for a sinc field.
    kwargs = {"params_only": True} if _has_params_only(module) else {}
    per_scheme[scheme] = jax.vmap(lambda k, m=module: m.lazy_init(k, abstract_input, **kwargs))(
        keys
    )
    seed_rows.update({(scheme, seed): j for j, seed in enumerate(seeds)})
  shapes = [jax.tree.map(lambda a: (a.shape[1:], a.dtype), t) for t in per_scheme.values()]
  if any(s != shapes[0] for s in shapes):
    raise ValueError("ensemble members must share one architecture.")
  order = list(per_scheme)
  rows = [(order.index(m.scheme), seed_rows[(m.scheme, m.seed)]) for m in members]
  return list(per_scheme.values()), rows


def init_members(
    model: Any,
    members: Sequence[Member],
    example_input: Array,
    scheme_params: Mapping[str, Any] | None = None,
    *,
    on_host: bool = False,
) -> PyTree:
  """Initializes every member under its own scheme and stacks the params.

  Args:
    model: a :class:`nfscale.models.NeuralField` (its own scheme is replaced).
    members: the members.
    example_input: a coordinate batch to trace the shapes, e.g. ``x[:1]``.
    scheme_params: extra parameters of every scheme (bias rules, ``omega``...).
    on_host: return NumPy arrays, for callers that rearrange the members before
      training (the width buckets of :func:`nfscale.widths.init_masked`): NumPy
      slices, pads and stacks without compiling, where eager ``jnp`` compiles
      each op anew for every width. Ignored under a trace (``jit``,
      ``eval_shape``), which returns the trace's arrays.

  Returns:
    The params pytree with a leading member axis.

  Raises:
    ValueError: if members produce differently shaped params.

  Example:
    >>> from nfscale import models
    >>> field = models.make_field((8,), 1)
    >>> host = init_members(field, [Member("init1", 0, 0.1)], np.zeros((1, 1)), on_host=True)
    >>> kernel = host["params"]["dense_0"]["kernel"]
    >>> type(kernel).__name__, kernel.shape
    ('ndarray', (1, 1, 8))
  """
  per_scheme, rows = _init_per_scheme(model, members, example_input, scheme_params)
  traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(per_scheme))
  # Eagerly, gathered and stacked with NumPy: eager jnp indexing and stacking
  # would compile programs anew for every width (jnp.stack of 8 members: ~0.2 s
  # each on a CPU), and a width search visits many widths. Traced, with jnp
  # inside the caller's program.
  xp = jnp if traced else np
  trees = per_scheme if traced else [jax.tree.map(np.asarray, t) for t in per_scheme]
  stacked = jax.tree.map(lambda *leaves: xp.stack([leaves[i][j] for i, j in rows]), *trees)
  return stacked if traced or on_host else to_device(stacked)


def _host_to_device(a: Any) -> Array:
  if not isinstance(a, (np.ndarray, np.generic)):
    return jnp.asarray(a)  # Python scalars and lists: keep jnp's (weak) typing
  # A private host copy first: on a CPU the device array may share the memory it
  # is given (seen for 4096-entry float32 arrays, with may_alias=False too in
  # JAX 0.11), and the caller could still change or donate-overwrite it.
  return jax.device_put(np.array(a))


def _device_copy(a: Any) -> Array:
  """A device array that shares no memory with ``a`` (a JAX or host array)."""
  return jax.device_put(a, may_alias=False) if isinstance(a, jax.Array) else _host_to_device(a)


def to_device(tree: PyTree) -> PyTree:
  """``tree`` with its host leaves copied to the default device; JAX arrays kept as they are.

  What ``jax.tree.map(jnp.asarray, tree)`` gives, without compiling: run op by
  op, ``jnp.asarray`` of a NumPy array compiles an identity program per shape
  (``jax.lax.stage``), where ``device_put`` is a transfer. Host leaves are
  always copied, never shared with the device array.

  Example:
    >>> host = np.zeros(4096, np.float32)
    >>> dev = to_device({"x": host})
    >>> host[0] = 1.0
    >>> float(dev["x"][0]), to_device(dev)["x"] is dev["x"]
    (0.0, True)
  """
  return jax.tree.map(lambda a: a if isinstance(a, jax.Array) else _host_to_device(a), tree)


def init_state(params: PyTree, tx: optax.GradientTransformation) -> EnsembleState:
  """A fresh :class:`EnsembleState` for stacked ``params``."""
  m = jax.tree.leaves(params)[0].shape[0]
  # The chunk function donates the state's buffers; copy so that the caller's
  # params stay valid after fit() (one copy per run, not per step). Copies and
  # per-member fields are transfers (device_put), not eager jnp ops: those
  # compile a program per shape, and a width search meets new shapes at every
  # round (about 0.02 s each on a CPU).
  params = jax.tree.map(_device_copy, params)
  full = lambda value, dtype: to_device(np.full(m, value, dtype))  # noqa: E731
  return EnsembleState(
      params=params,
      opt_state=jax.vmap(tx.init)(params),
      steps=full(0, np.int32),
      done=full(False, bool),
      diverged=full(False, bool),
      steps_to_target=full(-1, np.int32),
      loss=full(np.nan, np.float32),
      score=full(np.nan, np.float32),
      best_score=full(-np.inf, np.float32),
      initial_loss=full(np.nan, np.float32),
  )


def descent_gradients(grads: PyTree) -> PyTree:
  """Gradients as optimizers expect them: complex leaves conjugated.

  For a real loss of a complex parameter ``z = a + ib``, ``jax.grad``
  returns ``dL/da - i dL/db``, the conjugate of the steepest-ascent
  direction ``dL/da + i dL/db``. Optax steps against the gradient it is
  given, so without the conjugate every imaginary part moves uphill
  (Gabor/WIRE fields); :func:`complex_as_real_tx` then hands the optimizer
  the pair ``(dL/da, dL/db)``. The engine calls it on every step; a training
  loop of your own calls it between ``jax.grad`` and the optimizer.

  Args:
    grads: the gradients ``jax.grad`` returns (any pytree).

  Returns:
    The same pytree, complex leaves conjugated (real leaves unchanged).

  Example:
    >>> loss = lambda z: jnp.abs(z - 1j) ** 2     # minimum at z = i
    >>> g = jax.grad(loss)(jnp.array(0j))
    >>> complex(g), complex(descent_gradients(g))   # z - lr * (-2j) moves towards +i
    (2j, -2j)
  """
  return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grads)


def _all_finite(tree: PyTree) -> Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _select(pred: Array, a: PyTree, b: PyTree) -> PyTree:
  return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


# --- matmul precision and rematerialisation (opt-in; config keys precision, remat) ---

#: Matmul precisions of :func:`make_train_chunk` (config key ``precision``):
#: ``default`` leaves JAX's backend default (on NVIDIA GPUs float32 matmuls may
#: use TF32; on CPU they are float32); ``highest`` full float32; ``tf32``
#: TF32 inputs with float32 accumulation (backends without TF32, e.g. CPU:
#: float32); ``bf16`` bfloat16 inputs with float32 accumulation and float32
#: outputs (XLA's CPU backend runs this algorithm in float32 too). Only matmuls
#: change: params, activations and the optimizer stay float32, and a first layer
#: of at most ``models.SMALL_FAN_IN`` inputs (a multiply-add, not a matmul)
#: stays exact.
PRECISIONS = ("default", "highest", "tf32", "bf16")

#: Rematerialisation of :func:`make_member_step` (config key ``remat``):
#: ``none`` stores what the backward pass needs; ``dots`` stores only the
#: matmul outputs and recomputes the activations and their derivatives from
#: them in the backward pass; ``full`` stores nothing of the forward pass and
#: recomputes it (one more forward pass per step).
REMAT = ("none", "dots", "full")


def matmul_precision(precision: str, backend: str | None = None) -> str | None:
  """The ``jax.default_matmul_precision`` value of a :data:`PRECISIONS` setting.

  Args:
    precision: one of :data:`PRECISIONS`.
    backend: the JAX backend (default: ``jax.default_backend()``).

  Returns:
    ``None`` for ``default`` (no scope), else a value for
    ``jax.default_matmul_precision``.

  Raises:
    ValueError: an unknown setting.

  Example:
    >>> matmul_precision("bf16"), matmul_precision("tf32", "gpu"), matmul_precision("tf32", "cpu")
    ('BF16_BF16_F32', 'TF32_TF32_F32', 'highest')
  """
  if precision not in PRECISIONS:
    raise ValueError(f"Unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}.")
  backend = backend or jax.default_backend()
  # XLA's CPU dot refuses the TF32 algorithm; there TF32 means float32.
  tf32 = "TF32_TF32_F32" if backend in ("gpu", "cuda", "rocm") else "highest"
  return {"default": None, "highest": "highest", "tf32": tf32, "bf16": "BF16_BF16_F32"}[precision]


def precision_scope(precision: str) -> contextlib.AbstractContextManager:
  """A context in which traced matmuls use ``precision`` (:data:`PRECISIONS`)."""
  value = matmul_precision(precision)
  return contextlib.nullcontext() if value is None else jax.default_matmul_precision(value)


def check_settings(precision: str = "default", remat: str = "none") -> None:
  """Raises a one-line ``ValueError`` for a ``precision`` or ``remat`` not in the lists."""
  matmul_precision(precision, "cpu")
  if remat not in REMAT:
    raise ValueError(f"Unknown remat {remat!r}; valid remat settings: {', '.join(REMAT)}.")


def remat_loss(loss_fn: LossFn, remat: str) -> LossFn:
  """``loss_fn`` under ``jax.checkpoint`` with the :data:`REMAT` policy ``remat``.

  Raises:
    ValueError: an unknown setting.
  """
  check_settings(remat=remat)
  if remat == "none":
    return loss_fn
  policy = (
      jax.checkpoint_policies.dots_saveable
      if remat == "dots"
      else jax.checkpoint_policies.nothing_saveable
  )
  return jax.checkpoint(loss_fn, policy=policy)


def make_member_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    score_fn: ScoreFn = neg_loss,
    target: float | None = None,
    diverge_factor: float | None = DEFAULT_DIVERGE_FACTOR,
    remat: str = "none",
) -> Callable[..., tuple[EnsembleState, tuple[Array, Array, dict]]]:
  """One training step of ONE member (unbatched state); vmap it over members.

  The returned ``step(state, lr, batch, rng, in_range)`` evaluates the loss
  and score at the current params (before the update), so
  ``steps_to_target`` counts the updates needed; ``in_range=False`` makes
  the step a no-op (the tail of the last chunk). ``remat``: see :data:`REMAT`.
  """
  loss_fn = remat_loss(loss_fn, remat)

  def step(
      state: EnsembleState, lr: Array, batch: Mapping[str, Array], rng: Array, in_range: Array
  ):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    grads = descent_gradients(grads)
    score = jnp.asarray(score_fn(loss, aux), jnp.float32)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p + (lr * u).astype(p.dtype), state.params, updates)
    active = in_range & ~(state.done | state.diverged)
    initial = jnp.where(active & jnp.isnan(state.initial_loss), loss, state.initial_loss)
    # A huge step can overflow the params while loss and gradient are still
    # finite; checking the new params keeps a diverged member's last finite
    # params (and costs one reduction, small next to the matmuls).
    finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
    blown = jnp.bool_(False)
    if diverge_factor is not None:
      blown = (initial > 0) & (loss > diverge_factor * initial)
    reached = (score >= target) if target is not None else jnp.bool_(False)
    reached = reached & jnp.isfinite(loss) & ~blown
    newly_done = active & reached
    update = active & finite & ~blown & ~reached
    new = EnsembleState(
        params=_select(update, params, state.params),
        opt_state=_select(update, opt_state, state.opt_state),
        steps=state.steps + update.astype(jnp.int32),
        done=state.done | newly_done,
        diverged=state.diverged | (active & ~reached & (~finite | blown)),
        steps_to_target=jnp.where(newly_done, state.steps, state.steps_to_target),
        loss=jnp.where(active, loss, state.loss).astype(jnp.float32),
        score=jnp.where(active, score, state.score),
        best_score=jnp.where(
            active & finite & ~blown, jnp.maximum(state.best_score, score), state.best_score
        ),
        initial_loss=initial.astype(jnp.float32),
    )
    aux = {k: jnp.asarray(v, jnp.float32) for k, v in dict(aux).items()}
    return new, (new.loss, new.score, aux)

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
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
}


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


def make_train_chunk(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    chunk_steps: int,
    score_fn: ScoreFn = neg_loss,
    target: float | None = None,
    batch_size: int | None = None,
    diverge_factor: float | None = DEFAULT_DIVERGE_FACTOR,
    precision: str = "default",
    remat: str = "none",
) -> Callable[..., tuple[EnsembleState, ChunkLog]]:
  """Builds the jitted ``chunk(state, lrs, data, key, start, total) -> (state, log)``.

  It runs the steps ``start .. start + chunk_steps - 1`` (those ``>= total``
  are no-ops) as vmapped steps under ``lax.scan`` and donates the state's
  buffers. Step ``t`` uses ``fold_in(key, t)``: it picks the minibatch (with
  ``batch_size``: ``batch_size`` samples drawn uniformly with replacement,
  the same for all members;
  every leaf of ``data`` shares the leading sample axis) and is passed on to
  ``loss_fn``.

  Args:
    loss_fn: ``loss_fn(params, batch, rng) -> (scalar, aux)`` for one member.
    tx: unit-rate optimizer from :func:`make_optimizer`.
    chunk_steps: steps per dispatch.
    score_fn: ``score_fn(loss, aux) -> scalar``, higher is better.
    target: freeze members whose score reaches it (``None``: never).
    batch_size: minibatch size, or ``None`` for full batch.
    diverge_factor: see :data:`DEFAULT_DIVERGE_FACTOR` (``None``: NaN/Inf only).
    precision: matmul precision of the step (:data:`PRECISIONS`).
    remat: rematerialisation of the loss's forward pass (:data:`REMAT`).

  Returns:
    The jitted function.

  Raises:
    ValueError: bad ``chunk_steps``, ``precision`` or ``remat``.
  """
  if chunk_steps <= 0:
    raise ValueError(f"chunk_steps must be positive, got chunk_steps={chunk_steps}.")
  matmul_precision(precision)  # fail on a bad setting now, not at the first call
  member_step = make_member_step(
      loss_fn, tx, score_fn=score_fn, target=target, diverge_factor=diverge_factor, remat=remat
  )
  ensemble_step = jax.vmap(member_step, in_axes=(0, 0, None, None, None))

  def chunk(state, lrs, data, key, start, total):
    def body(state, t):
      batch_key, loss_key = jax.random.split(jax.random.fold_in(key, t))
      batch = data
      if batch_size is not None:
        n = jax.tree.leaves(data)[0].shape[0]
        idx = jax.random.randint(batch_key, (batch_size,), 0, n)
        batch = jax.tree.map(lambda a: a[idx], data)
      return ensemble_step(state, lrs, batch, loss_key, t < total)

    ts = jnp.asarray(start, jnp.int32) + jnp.arange(chunk_steps, dtype=jnp.int32)
    with precision_scope(precision):  # applies while jit traces the step's matmuls
      state, (loss, score, aux) = jax.lax.scan(body, state, ts)
    return state, ChunkLog(loss=loss, score=score, aux=aux)

  return jax.jit(chunk, donate_argnums=(0,), compiler_options=chunk_compiler_options())


def _pad_members(tree: PyTree, pad: int) -> PyTree:
  """``tree`` on the host, with ``pad`` copies of member 0 appended.

  NumPy, not eager ``jnp``: that compiles a slice, a repeat and a concatenate
  per leaf for every new shape, i.e. at every width of a sweep on several
  devices. The caller places the result on the mesh (a transfer).
  """
  return jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[:1], pad, 0)]), jax.device_get(tree))


def _crossed(before: int, after: int, every: int) -> bool:
  """Whether a multiple of ``every`` lies in ``(before, after]``."""
  return every > 0 and after // every > before // every


def fit(
    loss_fn: LossFn,
    params: PyTree,
    members: Sequence[Member],
    data: Mapping[str, Array],
    *,
    steps: int,
    optimizer: str = "adam",
    optimizer_params: Mapping[str, Any] | None = None,
    schedule: str = "constant",
    schedule_params: Mapping[str, Any] | None = None,
    score_fn: ScoreFn = neg_loss,
    target: float | None = None,
    diverge_factor: float | None = DEFAULT_DIVERGE_FACTOR,
    chunk_steps: int = 100,
    log_every: int = 100,
    batch_size: int | None = None,
    seed: int = 0,
    shard: bool = True,
    progress: bool = True,
    desc: str = "train",
    on_log: Callable[[dict[str, Any]], None] | None = None,
    resume: tuple[int, EnsembleState, list[dict[str, Any]]] | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int, EnsembleState, list[dict[str, Any]]], None] | None = None,
    precision: str = "default",
    remat: str = "none",
    complex_as_real: bool = True,
) -> FitResult:
  """Trains stacked ``params`` for ``steps`` steps; the whole ensemble at once.

  Args:
    loss_fn: per-member loss ``(params, batch, rng) -> (scalar, {name: scalar})``.
    params: stacked params from :func:`init_members`.
    members: the members (their ``lr`` is used).
    data: dict of device or host arrays (the training set).
    steps: total steps (> 0).
    optimizer: an optax optimizer name (:func:`make_optimizer`).
    optimizer_params: its parameters.
    schedule: learning-rate multiplier (``constant``, ``cosine``, ``exponential``).
    schedule_params: its parameters.
    score_fn: ``(loss, aux) -> scalar``, higher is better; watched for the
      target, logged and shown. Default: minus the loss.
    target: members stop when their score reaches it (``None``: never).
    diverge_factor: a member whose loss exceeds this multiple of its first
      loss is flagged diverged and frozen (``None``: only NaN/Inf).
    chunk_steps: steps per jitted dispatch (``lax.scan`` length).
    log_every: history/``on_log`` interval in steps (rounded up to chunks);
      step 0 (the initial loss) and the last step are always logged. The
      record of step ``s`` holds the loss and score computed at that step, on
      the params after ``s`` updates, so the last record is step
      ``steps_run - 1``: the returned params have had one update more.
    batch_size: minibatch size (samples drawn with replacement, so it may
      exceed the data), ``None`` for full batch.
    seed: seed of the per-step rng (minibatches, the loss's rng).
    shard: shard the member axis over all devices.
    progress: show a tqdm bar.
    desc: progress bar label.
    on_log: called with each history record (e.g. to append metrics.jsonl).
    resume: ``(step, state, history)`` of a checkpoint taken by
      ``on_checkpoint`` of a run with the same arguments; training goes on
      from there and ends as the uninterrupted run would.
    checkpoint_every: call ``on_checkpoint`` after the chunk that passes
      each multiple of this many steps (0: only at the end).
    on_checkpoint: ``(step, state, history)`` with the host state of the
      ``len(members)`` members; always called once at the end.
    precision: matmul precision (:data:`PRECISIONS`; ``default``: JAX's).
    remat: rematerialisation (:data:`REMAT`; ``none``: store activations).
    complex_as_real: complex params as pairs of reals for the optimizer
      (:func:`make_optimizer`).

  Returns:
    A :class:`FitResult`; the state has exactly ``len(members)`` members (host
    arrays where padding members were dropped, see :class:`FitResult`).

  Raises:
    ValueError: bad steps, batch size, optimizer, member count, precision or remat.
  """
  check_settings(precision, remat)  # bad settings fail before any work
  if steps <= 0:
    raise ValueError(f"steps must be positive, got steps={steps}.")
  if batch_size is not None and batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got batch_size={batch_size}.")
  if log_every <= 0:
    raise ValueError(f"log_every must be positive, got log_every={log_every}.")
  if chunk_steps <= 0:
    raise ValueError(f"chunk_steps must be positive, got chunk_steps={chunk_steps}.")
  num = len(members)
  if jax.tree.leaves(params)[0].shape[0] != num:
    raise ValueError("params must have one leading entry per member.")
  tx = make_optimizer(
      optimizer,
      optimizer_params,
      schedule=schedule,
      schedule_params=schedule_params,
      steps=steps,
      complex_as_real=complex_as_real,
  )
  lrs = to_device(np.asarray([m.lr for m in members], np.float32))
  if resume is None:
    done_steps, state, history = 0, init_state(params, tx), []
  else:
    done_steps, state, history = resume
    state = to_device(jax.device_get(state))  # fresh device buffers (they get donated)
    history = list(history)

  pad = 0
  mesh = sharding.ensemble_mesh() if shard else None
  if mesh is not None and mesh.size > 1:
    pad = (-num) % mesh.size
    state = _pad_members(state, pad)
    lrs = _pad_members(lrs, pad)
    # Padding members are copies of member 0 marked done: frozen, discarded.
    state.done[num:] = True
    state = sharding.shard_members(state, mesh)
    lrs = sharding.shard_members(lrs, mesh)
    data = sharding.replicate(data, mesh)
  else:
    data = to_device(data)

  chunk_steps = max(1, min(chunk_steps, steps))
  run_chunk = make_train_chunk(
      loss_fn,
      tx,
      chunk_steps=chunk_steps,
      score_fn=score_fn,
      target=target,
      batch_size=batch_size,
      diverge_factor=diverge_factor,
      precision=precision,
      remat=remat,
  )
  key = jax.random.key(seed)

  def host_state(st):
    # Fetched shard by shard, then cut on the host: a device-side a[:num] of
    # padded, sharded arrays (length not a multiple of the devices) comes out
    # replicated, i.e. every device gathers the whole ensemble's state.
    return jax.tree.map(lambda a: a[:num], jax.device_get(st))

  def stopped(st):  # on the host: an eager `|` compiles per member count
    return np.asarray(st.done)[:num] | np.asarray(st.diverged)[:num]

  def frozen(st):
    return bool(np.all(stopped(st)))

  bar = _progress(steps, desc, done_steps) if progress else None
  t0 = time.perf_counter()
  while done_steps < steps and not frozen(state):
    start = done_steps
    state, log = run_chunk(state, lrs, data, key, start, steps)
    done_steps = min(start + chunk_steps, steps)
    loss = np.asarray(log.loss)[:, :num]
    score = np.asarray(log.score)[:, :num]
    aux = {k: np.asarray(v)[:, :num] for k, v in log.aux.items()}
    # Row j of a chunk is the loss at step start + j: on the params after that many
    # updates, before that step's own. A log step's loss is therefore the first row
    # of the chunk after it, and the last loss computed is that of step done_steps - 1
    # (the returned params have had one more update).
    last = done_steps - start - 1
    rows = []
    if start == 0 or _crossed(start - chunk_steps, start, log_every):
      rows.append((start, 0))  # step 0 included: a run of one chunk still has a curve
    finished = done_steps >= steps or frozen(state)
    if finished and rows[-1:] != [(done_steps - 1, last)]:
      rows.append((done_steps - 1, last))
    for step, j in rows:
      record = {
          "step": step,
          "loss": loss[j].tolist(),
          "score": score[j].tolist(),
          "aux": {k: v[j].tolist() for k, v in aux.items()},
      }
      history.append(record)
      if on_log is not None:
        on_log(record)
    if on_checkpoint is not None and (_crossed(start, done_steps, checkpoint_every) or finished):
      on_checkpoint(done_steps, host_state(state), list(history))
    if bar is not None:
      s = score[last]
      finite = s[np.isfinite(s)]
      bar.update(done_steps - start)
      n_frozen = int(stopped(state).sum())
      if finite.size:
        bar.set_postfix(
            best=f"{finite.max():.3g}", worst=f"{finite.min():.3g}", frozen=f"{n_frozen}/{num}"
        )
  jax.block_until_ready(state)
  seconds = time.perf_counter() - t0
  if bar is not None:
    bar.close()
  if pad:
    state = host_state(state)  # not state[:num] on the devices: see host_state
  return FitResult(state=state, history=history, seconds=seconds, steps_run=done_steps)


def _progress(total: int, desc: str, initial: int = 0):
  from tqdm.auto import tqdm

  return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def unstack(tree: PyTree, i: int) -> PyTree:
  """Member ``i`` of a stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


def member_shapes(tree: PyTree) -> PyTree:
  """One member's shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) of a stacked pytree.

  For counting and sizing: unlike ``unstack(tree, 0)`` it slices nothing, so it
  compiles nothing (an eager slice compiles per new shape, every width of a sweep).

  Example:
    >>> member_shapes({"w": np.zeros((4, 3, 2), np.float32)})
    {'w': ShapeDtypeStruct(shape=(3, 2), dtype=float32)}
  """
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)
