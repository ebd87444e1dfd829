"""Diagnostics at initialization that make the paper's theory measurable (paper sec. 4).

The convergence proofs of the paper (sec. 4.3) rest on one inequality at
initialization, eq. 4.6 for a 2-layer network. The factor of the hidden width
``n_1`` can be read two ways from the paper's text, so both are computed and
named by where ``sqrt(n_1)`` stands::

    "over_sqrt_n":   sigma_min(F_1)^2 >= 16 * sqrt(N) / sqrt(n_1) * sqrt(2 L(theta_0)) * ||W_2||_2
    "times_sqrt_n":  sigma_min(F_1)^2 >= 16 * sqrt(N) * sqrt(n_1) * sqrt(2 L(theta_0)) * ||W_2||_2

``Diagnostics.rhs`` / ``margin`` / ``holds`` are the first reading (the one
this project used from the start), ``rhs_times`` / ``margin_times`` /
``holds_times`` the second; :func:`condition_width` takes ``reading=``. The
second grows with the width, so it needs ``sigma_min^2`` (about linear in the
width) to outgrow ``sqrt(n_1)``: much larger widths, or none.

Both right sides are proportional to ``||W_L||_2``, and the left side does not
depend on ``W_L`` at all. init1 is LeCun normal except for the output layer,
whose weights it scales by ``sqrt(2 / sqrt(n))`` (``n`` the last hidden
width): the same seed gives the same ``F_{L-1}`` and ``sigma_min``, a
``||W_L||_2`` smaller by that factor, and a smaller expected
``L(theta_0) = 1/2 ||F_L - Y||^2`` (the output shrinks with ``W_L``). So init1
lowers the condition width BY CONSTRUCTION; a smaller eq. 4.6 width for init1
restates the scheme's definition, it is not independent evidence that init1
trains narrower networks.

where ``F_1`` is the ``N x n_1`` hidden feature matrix on the ``N`` training
points, ``W_2`` the output kernel and ``L(theta_0)`` the squared loss at
initialization. Its three ingredients are cheap to measure, so this module
reports them per network (:func:`init_diagnostics`, :func:`ensemble_diagnostics`)
and finds the smallest width at which the inequality holds for a scheme
(:func:`condition_width`). For deeper networks we apply the same inequality to
the *last* hidden layer (``F_{L-1}``, width ``n_{L-1}``, output kernel
``W_L``), as the paper's deep analysis (Thm 4.4 / 4.9) does: the earlier
layers only enter through the features they produce.

Conventions:

* ``L(theta) = 1/2 * ||F_L - Y||_F^2`` (the paper's squared loss is
  ``1/2 * sum``, not a mean), computed in float64 from the network output.
* ``sigma_min = sqrt(lambda_min(F F^H))`` with ``F = F_{L-1}`` (``N x n``). The
  proof needs the ``N x N`` Gram matrix ``F F^H`` to be positive definite; when
  ``n < N`` it has rank at most ``n < N``, so ``sigma_min = 0`` exactly and the
  condition cannot hold (the ``min(N, n)``-th singular value numpy would
  report is then positive but irrelevant to the proof).
* Singular values and the spectral norm are computed in float64 on the host
  (numpy): ``sigma_min`` of a near-singular matrix is ill-conditioned, and a
  float32 SVD loses it entirely. The features themselves come from the model's
  float32 forward pass, so by Weyl's inequality ``sigma_min`` is resolved only
  down to about ``1e-7 * sigma_max``. That is far below where the decision is
  made: at the threshold ``sigma_min^2 ~ rhs``, which is
  ``O(sigma_max^2 / n^{3/2})`` for the paper's schemes.
* Complex features (Gabor/WIRE): the output is ``Re(F W + b)``. We use the
  singular values of the complex ``F`` and the spectral norm of the complex
  ``W``. The equivalent real network has features ``G = [Re F, Im F]`` and
  kernel ``[Re W; -Im W]``; since ``G G^T = Re(F F^H)`` we have
  ``sigma_min(F) <= sigma_min(G)``, ``||W||_2 >= ||[Re W; -Im W]||_2`` and we
  count width ``n`` instead of ``2n``, so the complex check is conservative.

Example:
  >>> import jax, numpy as np
  >>> from nfscale import make_field, theory
  >>> x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
  >>> y = np.sin(2 * np.pi * x)
  >>> field = make_field((256,), 1, activation="sinc", scheme="init1",
  ...                    scheme_params={"first_bias": "torch"})
  >>> params = field.init(jax.random.key(0), x[:1])
  >>> d = theory.init_diagnostics(field, params, x, y)
  >>> d.N, d.width
  (20, 256)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import initializers, io, scaling

__all__ = [
    "Diagnostics",
    "init_diagnostics",
    "ensemble_diagnostics",
    "condition_width",
    "condition_widths",
    "RHS_CONSTANT",
    "READINGS",
    "CACHE_FILE",
    "cached_per_scheme",
]

#: File of :func:`cached_per_scheme` in a sweep's workdir.
CACHE_FILE = "theory.jsonl"

#: The two readings of eq. 4.6 (see the module docstring).
READINGS: tuple[str, ...] = ("over_sqrt_n", "times_sqrt_n")

#: The constant of eq. 4.6.
RHS_CONSTANT: float = 16.0

PyTree = Any


class Diagnostics(NamedTuple):
  """The ingredients of eq. 4.6 for one network at initialization.

  Attributes:
    N: number of data points.
    width: ``n_{L-1}``, the width of the last hidden layer.
    sigma_min: ``sqrt(lambda_min(F F^H))`` for the ``N x n_{L-1}`` last hidden
      feature matrix; exactly 0 when ``width < N`` (rank-deficient Gram);
      NaN if the features are not finite.
    w_last_norm: spectral norm ``||W_L||_2`` of the output kernel.
    init_loss: ``L(theta_0) = 1/2 ||F_L - Y||_F^2``.
    rhs: ``16 sqrt(N) / sqrt(n_{L-1}) * sqrt(2 L(theta_0)) * ||W_L||_2``
      (reading ``"over_sqrt_n"``).
    margin: ``sigma_min^2 - rhs``.
    holds: ``margin >= 0`` (False when anything is NaN).
    rhs_times: ``16 sqrt(N) * sqrt(n_{L-1}) * sqrt(2 L(theta_0)) * ||W_L||_2``
      (reading ``"times_sqrt_n"``).
    margin_times: ``sigma_min^2 - rhs_times``.
    holds_times: ``margin_times >= 0``.
  """

  N: int
  width: int
  sigma_min: float
  w_last_norm: float
  init_loss: float
  rhs: float
  margin: float
  holds: bool
  rhs_times: float = float("nan")
  margin_times: float = float("nan")
  holds_times: bool = False

  def margin_for(self, reading: str) -> float:
    """The margin of one reading of eq. 4.6 (``"over_sqrt_n"`` or ``"times_sqrt_n"``)."""
    return self.margin if _check_reading(reading) == "over_sqrt_n" else self.margin_times


def _check_reading(reading: str) -> str:
  if reading not in READINGS:
    raise ValueError(f"reading must be one of {', '.join(READINGS)}; got reading={reading!r}.")
  return reading


# ---------------------------------------------------------------------------
# Argument checks.


def _check_model(model: Any) -> int:
  """Returns the number of hidden layers; raises if there is none."""
  hidden = getattr(model, "hidden", None)
  if hidden is None:
    raise ValueError(f"model must be a NeuralField (with a `hidden` attribute), got {type(model)}.")
  if len(hidden) == 0:
    raise ValueError(
        "model must have at least one hidden layer: eq. 4.6 is a condition on the "
        "last hidden features, and a linear model has none (model.hidden=())."
    )
  return len(hidden)


def _check_data(x: Any, y: Any) -> tuple[jax.Array, np.ndarray]:
  x_arr = jnp.asarray(x)
  y_arr = np.asarray(y, dtype=np.float64)
  if x_arr.ndim != 2:
    raise ValueError(f"x must have shape (N, in_dim), got x.shape={tuple(x_arr.shape)}.")
  if x_arr.shape[0] < 1:
    raise ValueError("x must hold at least one point, got N=0.")
  if y_arr.ndim != 2:
    raise ValueError(
        f"y must have shape (N, out_dim), got y.shape={y_arr.shape}"
        " (use y[:, None] for a scalar field)."
    )
  if y_arr.shape[0] != x_arr.shape[0]:
    raise ValueError(
        f"x and y must hold the same number of points, got x: {x_arr.shape[0]}, "
        f"y: {y_arr.shape[0]}."
    )
  if not np.all(np.isfinite(y_arr)):
    raise ValueError("y must be finite.")
  return x_arr, y_arr


def _last_kernel(params: PyTree, num_hidden: int) -> Any:
  """The output kernel ``W_L`` (layer ``dense_{num_hidden}`` of a NeuralField)."""
  tree = params.get("params", params) if isinstance(params, Mapping) else None
  name = f"dense_{num_hidden}"
  if tree is None or name not in tree or "kernel" not in tree[name]:
    raise ValueError(
        f"params must be NeuralField variables holding params['params']['{name}']"
        "['kernel'] (the output layer of this model)."
    )
  return tree[name]["kernel"]


# ---------------------------------------------------------------------------
# The core computation, on host float64 arrays.


def _sigma_min(features: np.ndarray) -> float:
  """``sqrt(lambda_min(F F^H))`` of an ``N x n`` matrix, in float64."""
  n_points, width = features.shape
  if width < n_points:
    # rank(F F^H) <= n < N: the Gram matrix is singular, exactly.
    return 0.0
  if not np.all(np.isfinite(features)):
    return float("nan")
  # F^H = Q R with R (N x N) has the singular values of F. Householder QR
  # is backward stable, so this keeps the SVD's accuracy (eps * sigma_max,
  # versus sqrt(eps) * sigma_max for eigvalsh(F F^H)) at a fraction of the
  # cost of an SVD of the wide N x n matrix (about 4x faster at 200 x 16384).
  r = np.linalg.qr(features.conj().T, mode="r")
  return float(np.linalg.svd(r, compute_uv=False)[-1])


def _diagnostics(
    features: np.ndarray, output: np.ndarray, w_last: np.ndarray, y: np.ndarray
) -> Diagnostics:
  n_points, width = features.shape
  if output.shape != y.shape:
    raise ValueError(
        f"y must match the model output, got y.shape={y.shape} and output shape {output.shape}."
    )
  sigma_min = _sigma_min(features)
  w_norm = float(np.linalg.norm(w_last, 2)) if np.all(np.isfinite(w_last)) else float("nan")
  init_loss = 0.5 * float(np.sum((output - y) ** 2))
  common = RHS_CONSTANT * np.sqrt(n_points) * np.sqrt(2.0 * init_loss) * w_norm
  rhs = common / np.sqrt(width)  # reading "over_sqrt_n"
  rhs_times = common * np.sqrt(width)  # reading "times_sqrt_n"
  margin = sigma_min**2 - rhs
  margin_times = sigma_min**2 - rhs_times
  return Diagnostics(
      N=int(n_points),
      width=int(width),
      sigma_min=sigma_min,
      w_last_norm=w_norm,
      init_loss=init_loss,
      rhs=float(rhs),
      margin=float(margin),
      holds=bool(margin >= 0),  # NaN >= 0 is False.
      rhs_times=float(rhs_times),
      margin_times=float(margin_times),
      holds_times=bool(margin_times >= 0),
  )


# Op by op (not jitted): init_diagnostics and ensemble_diagnostics run once per
# network, and eager primitives compile per shape only.
def _apply(model: Any, params: PyTree, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  return model.apply(params, x, return_features=True)


def _apply_stacked(model: Any, params: PyTree, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  return jax.vmap(lambda p: model.apply(p, x, return_features=True))(params)


# condition_width draws each width's params op by op (lazy_init with params_only:
# no forward pass is traced) and compiles only the forward pass, once per width
# (shared by the schemes, see _forward_model). The initializers' samplers are
# compiled per rounded size and shared across shapes, so the draws cost a few
# small compilations per width, where a jitted init compiled the whole sampler
# again for every width. Measured on a 2-core CPU, the shallow quick sweep's
# theory step at N = 10 (4 schemes, both readings, 43 (scheme, width) pairs):
# 26-28 s with a jitted init per width and per-shape samplers, 12-13 s with
# shared samplers, 4.6-5.7 s with one forward program per width for all schemes,
# 3.0-3.7 s now that all draws up to 2^14 entries share one sampler.
def _init_and_apply_stacked(
    model: Any, keys: jax.Array, x: jax.Array
) -> tuple[PyTree, jax.Array, jax.Array]:
  """Every key's ``model.init`` (the same values) and the forward passes of all."""
  abstract = jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)
  params = jax.vmap(lambda k: model.lazy_init(k, abstract, params_only=True))(keys)
  out, feats = _apply_stacked_jit(_forward_model(model), params, x)
  return params, out, feats


# Only model.init reads the scheme, so the forward pass runs a copy of the model
# with one fixed scheme: a width's compiled forward pass then serves every
# scheme (the jit cache is keyed on the static model), one compilation per
# width instead of one per (scheme, width).
_FORWARD_SCHEME = initializers.get_scheme("lecun_normal")


def _forward_model(model: Any) -> Any:
  return model.clone(scheme=_FORWARD_SCHEME)


_apply_stacked_jit = jax.jit(_apply_stacked, static_argnums=0)


def _to_host64(a: Any) -> np.ndarray:
  """Host copy in float64 / complex128 (the widening is exact)."""
  a = np.asarray(a)
  return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


# ---------------------------------------------------------------------------
# Public API.


def init_diagnostics(model: Any, params: PyTree, x: Any, y: Any) -> Diagnostics:
  """Measures eq. 4.6 for one network on a dataset.

  For a 2-layer net this is exactly the paper's eq. 4.6; for deeper nets it is
  applied to the last hidden layer (``F_{L-1}``, ``W_L``), as in the paper's
  deep analysis. See the module docstring for the conventions (loss ``1/2 sum``,
  ``sigma_min = 0`` when ``width < N``, float64 linear algebra, complex
  features).

  Args:
    model: a :class:`nfscale.models.NeuralField` with at least one hidden layer.
    params: its variables, as returned by ``model.init``.
    x: coordinates, shape ``(N, in_dim)``.
    y: targets, shape ``(N, out_dim)``.

  Returns:
    A :class:`Diagnostics`.

  Raises:
    ValueError: for a model without hidden layers (names ``model``), params
      that do not belong to a NeuralField (``params``), or badly shaped /
      mismatched ``x`` and ``y``.

  Example:
    >>> import jax, numpy as np
    >>> from nfscale import make_field
    >>> field = make_field((64,), 1, activation="sinc", scheme="lecun_normal",
    ...                    scheme_params={"first_bias": "torch"})
    >>> x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
    >>> d = init_diagnostics(field, field.init(jax.random.key(0), x[:1]), x, np.sin(3 * x))
    >>> d.margin == d.sigma_min ** 2 - d.rhs
    True
  """
  num_hidden = _check_model(model)
  x_arr, y_arr = _check_data(x, y)
  w_last = _last_kernel(params, num_hidden)
  out, feats = _apply(model, params, x_arr)
  return _diagnostics(_to_host64(feats), _to_host64(out), _to_host64(w_last), y_arr)


def ensemble_diagnostics(model: Any, stacked_params: PyTree, x: Any, y: Any) -> list[Diagnostics]:
  """:func:`init_diagnostics` for params stacked on a leading member axis.

  The forward pass is vmapped over members (one device call); the linear
  algebra runs per member on the host in float64.

  Args:
    model: the shared :class:`nfscale.models.NeuralField`.
    stacked_params: variables with a leading member axis on every leaf, as
      produced by :func:`nfscale.train.init_members`.
    x: coordinates, shape ``(N, in_dim)``.
    y: targets, shape ``(N, out_dim)``.

  Returns:
    One :class:`Diagnostics` per member, in member order; equal to calling
    :func:`init_diagnostics` on each member's slice.

  Raises:
    ValueError: as :func:`init_diagnostics`, or if the leaves of
      ``stacked_params`` disagree on the member count.

  Example:
    >>> import numpy as np
    >>> from nfscale import make_field, train
    >>> x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
    >>> y = np.sin(3 * x)
    >>> field = make_field((32,), 1, activation="sinc", scheme="init1")
    >>> stacked = train.init_members(field, [train.Member("init1", 0, 0.1),
    ...                                      train.Member("init1", 1, 0.1)], x[:1])
    >>> len(ensemble_diagnostics(field, stacked, x, y))
    2
  """
  num_hidden = _check_model(model)
  x_arr, y_arr = _check_data(x, y)
  leaves = jax.tree_util.tree_leaves(stacked_params)
  if not leaves or any(np.ndim(a) == 0 for a in leaves):
    raise ValueError("stacked_params must have a leading member axis on every leaf.")
  members = {int(np.shape(a)[0]) for a in leaves}
  if len(members) != 1:
    raise ValueError(f"stacked_params leaves disagree on the member count: {sorted(members)}.")
  out, feats = _apply_stacked(model, stacked_params, x_arr)
  return _member_diagnostics(_last_kernel(stacked_params, num_hidden), out, feats, y_arr)


def _member_diagnostics(w_last: Any, out: Any, feats: Any, y: np.ndarray) -> list[Diagnostics]:
  w_last, out, feats = _to_host64(w_last), _to_host64(out), _to_host64(feats)
  return [_diagnostics(feats[m], out[m], w_last[m], y) for m in range(out.shape[0])]


def condition_width(
    make_model: Callable[[int], Any],
    scheme: str | initializers.Scheme,
    x: Any,
    y: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    start: int = 8,
    max_width: int = 2**14,
    rel_precision: float = 0.1,
    rule: Literal["median", "all"] = "median",
    scheme_params: Mapping[str, Any] | None = None,
    growth: float = 2.0,
    record: dict[int, list[Diagnostics]] | None = None,
    reading: str = "over_sqrt_n",
) -> scaling.SearchResult:
  """Smallest last-hidden width at which eq. 4.6 holds at initialization.

  For each width tried, the model ``make_model(width)`` is initialized under
  ``scheme`` with every seed in ``seeds`` and :func:`init_diagnostics` is
  evaluated; the width succeeds if the median seed's margin is ``>= 0``
  (``rule="median"``; for an even number of seeds, the mean of the two middle
  margins) or if every seed's is (``rule="all"``). The search is
  :func:`nfscale.scaling.min_width_search` (geometric growth, then bisection).

  Caveats:
    * The search assumes the condition is monotone in width. It is only
      approximately so: each width is a fresh random draw, so near the
      threshold the margin's sign can flip back and forth
      (``min_width_search`` warns when it sees that).
    * Eq. 4.6 is a *sufficient* condition from a worst-case proof (constant
      16, spectral norms), so the width it predicts can be orders of
      magnitude above what training actually needs. The point is to compare
      how the predicted width *grows with N* across schemes (the paper's
      ``N^{3/2}`` vs ``N`` for init1), not its absolute value.
    * ``width < N`` always fails (``sigma_min = 0``), so ``start`` below ``N``
      only costs a few cheap evaluations.
    * ``sigma_min^2 ~ width * lambda_min(K)`` for the infinite-width feature
      kernel ``K``, and ``lambda_min(K)`` can collapse with ``N`` for
      band-limited features. Measured: shallow sinc (omega=30), 1-D
      equispaced points, LeCun first layer with random biases:
      ``lambda_min(K)`` is 3e-2, 9e-3, 3e-5 and < 1e-16 for N = 10, 20, 50,
      100, so the condition holds at no practical width from N ~ 100 on.
    * Zero first-layer biases with an even activation on symmetric 1-D
      points give repeated feature rows, ``sigma_min = 0``, never found.

  Args:
    make_model: ``make_model(width)`` returns a NeuralField whose LAST hidden
      layer has ``width`` units (earlier layers fixed).
    scheme: a scheme name from the registry (or a ``Scheme``).
    x: coordinates, shape ``(N, in_dim)``.
    y: targets, shape ``(N, out_dim)``.
    seeds: PRNG seeds, one initialization each (``jax.random.key(seed)``).
    start: first width tried.
    max_width: largest width tried; ``found=False`` if it fails too.
    rel_precision: relative precision of the returned width (see
      :func:`nfscale.scaling.min_width_search`).
    rule: ``"median"`` or ``"all"``.
    scheme_params: parameters of the scheme, e.g. ``{"first_bias": "torch"}``.
    growth: growth factor of the search's first phase.
    record: if given, filled with ``{width: [Diagnostics per seed]}`` for every
      width evaluated.
    reading: which reading of eq. 4.6 decides (``"over_sqrt_n"``, the
      default, or ``"times_sqrt_n"``; see the module docstring).

  Returns:
    A :class:`nfscale.scaling.SearchResult`; ``width`` is the predicted width.

  Raises:
    ValueError: for an empty ``seeds``, an unknown ``rule``, ``reading`` or ``scheme``, a
      ``make_model`` whose last hidden width is not ``width``, or bad data.

  Example:
    >>> import numpy as np
    >>> from nfscale import make_field
    >>> x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
    >>> y = np.sin(2 * np.pi * x)
    >>> make = lambda w: make_field((w,), 1, activation="sinc",
    ...                             activation_params={"omega": 30.0})
    >>> r = condition_width(make, "init1", x, y, scheme_params={"first_bias": "torch"},
    ...                     start=128)
    >>> r.found, r.evaluations[r.width]
    (True, True)
  """
  return condition_widths(
      make_model,
      scheme,
      x,
      y,
      readings=(reading,),
      seeds=seeds,
      start=start,
      max_width=max_width,
      rel_precision=rel_precision,
      rule=rule,
      scheme_params=scheme_params,
      growth=growth,
      record=record,
  )[reading]


def condition_widths(
    make_model: Callable[[int], Any],
    scheme: str | initializers.Scheme,
    x: Any,
    y: Any,
    *,
    readings: Sequence[str] = READINGS,
    seeds: Sequence[int] = (0, 1, 2),
    start: int = 8,
    max_width: int = 2**14,
    rel_precision: float = 0.1,
    rule: Literal["median", "all"] = "median",
    scheme_params: Mapping[str, Any] | None = None,
    growth: float = 2.0,
    record: dict[int, list[Diagnostics]] | None = None,
) -> dict[str, scaling.SearchResult]:
  """:func:`condition_width` for several readings, each width measured once.

  Every width's networks are drawn and measured once for all the searches (one
  :class:`Diagnostics` holds both readings' margins); the searches then run one
  after another, in ``readings`` order, and a width one search has visited costs the
  next nothing. Each result equals :func:`condition_width`'s for its reading.

  Args:
    make_model, scheme, x, y, seeds, start, max_width, rel_precision, rule,
      scheme_params, growth, record: as in :func:`condition_width`.
    readings: the readings to search for (each one of :data:`READINGS`).

  Returns:
    ``{reading: SearchResult}``, one per reading.

  Raises:
    ValueError: as :func:`condition_width`, or for an empty ``readings``.

  Example:
    >>> import numpy as np
    >>> from nfscale import make_field
    >>> x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
    >>> y = np.sin(2 * np.pi * x)
    >>> make = lambda w: make_field((w,), 1, activation="sinc",
    ...                             activation_params={"omega": 30.0})
    >>> record = {}
    >>> r = condition_widths(make, "init1", x, y, scheme_params={"first_bias": "torch"},
    ...                      start=128, max_width=512, record=record)
    >>> over, times = r["over_sqrt_n"], r["times_sqrt_n"]
    >>> over.found, times.found
    (True, False)
    >>> set(record) == set(over.evaluations) | set(times.evaluations)  # each width once
    True
  """
  readings = tuple(_check_reading(r) for r in readings)
  if not readings:
    raise ValueError(f"readings must name at least one of {', '.join(READINGS)}.")
  seeds = tuple(int(s) for s in seeds)
  if not seeds:
    raise ValueError("seeds must not be empty.")
  if rule not in ("median", "all"):
    raise ValueError(f"rule must be 'median' or 'all', got rule={rule!r}.")
  scheme_obj = initializers.get_scheme(scheme, **dict(scheme_params or {}))
  x_arr, y_arr = _check_data(x, y)
  measured: dict[int, list[Diagnostics]] = {}

  def diagnose(width: int) -> list[Diagnostics]:
    if width in measured:
      return measured[width]
    model = make_model(width)
    hidden = tuple(getattr(model, "hidden", ()) or ())
    if not hidden or hidden[-1] != width:
      raise ValueError(
          f"make_model({width}) must return a NeuralField whose last hidden layer "
          f"has width {width}, got hidden={hidden}."
      )
    model = model.clone(scheme=scheme_obj)
    num_hidden = _check_model(model)
    # All seeds in one vmapped init: the same params as model.init(key(s), ...)
    # per seed, but one compilation per width instead of one per seed.
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    params, out, feats = _init_and_apply_stacked(model, keys, x_arr)
    measured[width] = _member_diagnostics(_last_kernel(params, num_hidden), out, feats, y_arr)
    if record is not None:
      record[width] = measured[width]
    return measured[width]

  def oracle_for(reading: str) -> Callable[[int], bool]:
    def oracle(width: int) -> bool:
      margins = np.array([d.margin_for(reading) for d in diagnose(width)])
      if np.any(np.isnan(margins)):
        return False  # A NaN forward pass never satisfies the condition.
      return bool(np.median(margins) >= 0) if rule == "median" else bool(np.all(margins >= 0))

    return oracle

  return {
      reading: scaling.min_width_search(
          oracle_for(reading),
          start=start,
          max_width=max_width,
          rel_precision=rel_precision,
          growth=growth,
      )
      for reading in readings
  }


def cached_per_scheme(
    path: str,
    arm: str,
    n: int,
    schemes: Sequence[str],
    compute: Callable[[str], Mapping[str, Any]],
    also_read: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
  """Per-scheme diagnostics of one sweep point, computed once and kept in ``path``.

  A resumed sweep calls this again for a point whose training was cut off;
  the eq. 4.6 searches (SVDs of ``N x width`` matrices, seconds to minutes)
  are then read back instead of redone. Each finished scheme is appended to
  the JSON-lines file at once (:func:`nfscale.io.append_jsonl`), so a crash
  in the middle of a point keeps the schemes already done. The key is
  ``(arm, n, scheme)``; the sweep refuses a workdir holding another config,
  so the theory settings behind a cached entry are those of the run.

  Args:
    path: the cache file (``<workdir>/theory.jsonl``).
    arm: the sweep arm.
    n: the dataset size.
    schemes: the schemes wanted.
    compute: ``compute(scheme) -> JSON-able dict``, called only for schemes
      not in the cache.
    also_read: other cache files to take entries from (a split sweep's other
      host shares: resumed with another host count, a point can move to
      another share); new entries go to ``path`` only.

  Returns:
    ``{scheme: dict}`` for every scheme in ``schemes``.

  Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), CACHE_FILE)
    >>> calls = []
    >>> f = lambda sc: calls.append(sc) or {"condition_width": 64}
    >>> cached_per_scheme(path, "sinc", 10, ["init1"], f)
    {'init1': {'condition_width': 64}}
    >>> cached_per_scheme(path, "sinc", 10, ["init1"], f) and calls
    ['init1']
  """
  have = {
      (r["arm"], int(r["n"]), r["scheme"]): r["theory"]
      for source in [*also_read, path]
      for r in io.read_jsonl(source, missing_ok=True)
  }
  out = {}
  for sc in schemes:
    key = (arm, int(n), sc)
    if key not in have:
      have[key] = io.to_jsonable(dict(compute(sc)))
      io.append_jsonl(path, {"arm": arm, "n": int(n), "scheme": sc, "theory": have[key]})
    out[sc] = have[key]
  return out
