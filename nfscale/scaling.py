"""Scaling-law utilities: minimal-width search and power-law fits (tables: :mod:`nfscale.tables`).

This module holds the model-independent parts of the scaling experiments
("how wide must a network be to fit N samples to a target quality?"). The
training-based oracle is supplied by the caller, so everything here can be
tested with synthetic oracles:

* :func:`min_width_search` — sequential search with a ``oracle(width) -> bool``.
* :func:`min_width_search_batched` — the same search with an
  ``oracle_many(widths) -> list[bool]`` that trains several widths in parallel
  per round, trading extra trainings for fewer rounds (wall-clock time).
* :func:`fit_power_law` — log–log least squares ``y ≈ a·N^b`` with a bootstrap
  confidence interval for the exponent.

Both searches assume the oracle is *monotone* in width (if width ``w``
reaches the target, so does every larger width) and return the smallest
success found, ``width``, with the guarantee (for a monotone oracle with true
threshold ``t`` inside ``[min_width, max_width]``)::

    t <= width   and   width - t < max(1, rel_precision * width)

so ``width == t`` whenever ``rel_precision * width <= 1`` (e.g.
``rel_precision=0``), and otherwise ``width`` overestimates ``t`` by less than a
factor ``1 / (1 - rel_precision)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "MIN_CI_POINTS",
    "ci_meaningful",
    "extend_lr_grid",
    "min_width_search_joint",
    "SearchResult",
    "min_width_search",
    "min_width_search_batched",
    "PowerLawFit",
    "fit_power_law",
]


# --------------------------------------------------------------------------- #
# Minimal-width search
# --------------------------------------------------------------------------- #
class SearchResult(NamedTuple):
  """Outcome of a minimal-width search.

  Attributes:
    width: Smallest width observed to succeed, or ``None`` if no width up to
      ``max_width`` succeeded.
    found: Whether a succeeding width was found.
    lower_bound: Largest width observed to fail (0 if none failed). When
      ``found``, the true threshold lies in ``(max(lower_bound, min_width-1),
      width]``.
    evaluations: Every oracle result, ``{width: ok}``, in evaluation order.
      Each width appears once because oracle calls are cached.
    rounds: Number of oracle invocations: one per width for
      :func:`min_width_search`, one per batch for
      :func:`min_width_search_batched`.
  """

  width: int | None
  found: bool
  lower_bound: int
  evaluations: dict[int, bool]
  rounds: int


def _validate_search_args(
    start: int, max_width: int, rel_precision: float, growth: float, min_width: int
) -> None:
  for name, v in (("start", start), ("max_width", max_width), ("min_width", min_width)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
      raise TypeError(f"{name} must be an int, got {v!r}")
  if min_width < 1:
    raise ValueError(f"min_width must be >= 1, got {min_width}")
  if not min_width <= start <= max_width:
    raise ValueError(f"need min_width <= start <= max_width, got {min_width}, {start}, {max_width}")
  if not (rel_precision >= 0 and math.isfinite(rel_precision)):
    raise ValueError(f"rel_precision must be a finite number >= 0, got {rel_precision}")
  if not (growth > 1 and math.isfinite(growth)):
    raise ValueError(f"growth must be a finite number > 1, got {growth}")


def _ladder(start: int, max_width: int, growth: float) -> list[int]:
  """Geometric widths ``start, start*growth, ...``; the last one is ``max_width``.

  Capping at ``max_width`` (instead of stopping below it) means a threshold
  between the last geometric step and ``max_width`` is still found.
  """
  widths = [start]
  while widths[-1] < max_width:
    nxt = max(widths[-1] + 1, math.ceil(widths[-1] * growth))
    widths.append(min(nxt, max_width))
  return widths


def _converged(lo: int, hi: int, rel_precision: float) -> bool:
  return hi - lo <= max(1.0, rel_precision * hi)


def _bracket(evals: Mapping[int, bool], min_width: int) -> tuple[int, int | None]:
  """Returns ``(lo, hi)``: largest failure below the smallest success, and that success.

  ``lo`` defaults to ``min_width - 1``: widths below ``min_width`` are not
  allowed, so for the search they count as failures without being evaluated.
  """
  successes = [w for w, ok in evals.items() if ok]
  hi = min(successes) if successes else None
  fails = [w for w, ok in evals.items() if not ok and (hi is None or w < hi)]
  lo = max(fails, default=min_width - 1)
  if hi is not None and any(not ok and w > hi for w, ok in evals.items()):
    bad = sorted(w for w, ok in evals.items() if not ok and w > hi)
    warnings.warn(
        f"oracle is not monotone: width {hi} succeeded but larger width(s) {bad} failed; "
        f"using the smallest success {hi}",
        RuntimeWarning,
        stacklevel=3,
    )
  return max(lo, min_width - 1), hi


def _result(evals: dict[int, bool], min_width: int, rounds: int) -> SearchResult:
  _, hi = _bracket(evals, min_width)
  fails = [w for w, ok in evals.items() if not ok and (hi is None or w < hi)]
  return SearchResult(
      width=hi,
      found=hi is not None,
      lower_bound=max(fails, default=0),
      evaluations=dict(evals),
      rounds=rounds,
  )


def min_width_search(
    oracle: Callable[[int], bool],
    *,
    start: int,
    max_width: int,
    rel_precision: float = 0.1,
    growth: float = 2.0,
    min_width: int = 1,
) -> SearchResult:
  """Finds the smallest width for which ``oracle`` succeeds.

  Phase 1 (growth): evaluate ``start, ceil(start*growth), ...`` (the last
  step capped at ``max_width``) until the first success; if even
  ``max_width`` fails, return ``found=False``. Phase 2 (bisection): bisect
  between the last failure (``min_width - 1`` if ``start`` already
  succeeded) and the first success until ``hi - lo <= rel_precision * hi`` or
  ``hi - lo <= 1``. The oracle is called at most once per width.

  Cost: about ``log_growth(t / start) + 1`` growth calls plus
  ``log2(growth / rel_precision)`` bisection calls (``log2(start)`` if the
  threshold ``t`` is below ``start``). See the module docstring for the
  precision guarantee.

  Args:
    oracle: ``oracle(width) -> bool``; True if training at ``width`` reaches
      the target. Assumed monotone non-decreasing in ``width``.
    start: First width tried.
    max_width: Largest width ever tried.
    rel_precision: Relative width of the final bracket; 0 for the exact
      threshold.
    growth: Multiplicative step of phase 1 (> 1).
    min_width: Smallest admissible width.

  Returns:
    A :class:`SearchResult`; ``rounds == len(evaluations)``.

  Example:
    >>> r = min_width_search(lambda w: w >= 37, start=8, max_width=1024, rel_precision=0)
    >>> r.width, r.lower_bound, list(r.evaluations)
    (37, 36, [8, 16, 32, 64, 48, 40, 36, 38, 37])
  """
  _validate_search_args(start, max_width, rel_precision, growth, min_width)
  evals: dict[int, bool] = {}

  def call(w: int) -> bool:
    if w not in evals:  # Each call may be an hours-long training run.
      evals[w] = bool(oracle(int(w)))
    return evals[w]

  for w in _ladder(start, max_width, growth):
    if call(w):
      break
  else:
    return _result(evals, min_width, len(evals))

  lo, hi = _bracket(evals, min_width)
  assert hi is not None
  while not _converged(lo, hi, rel_precision):
    mid = (lo + hi) // 2  # lo < mid < hi because hi - lo >= 2 here.
    if call(mid):
      hi = mid
    else:
      lo = mid
  return _result(evals, min_width, len(evals))


def _ksection_points(lo: int, hi: int, k: int) -> list[int]:
  """Up to ``k`` distinct integers strictly inside ``(lo, hi)``, evenly spaced."""
  gap = hi - lo
  if gap - 1 <= k:
    return list(range(lo + 1, hi))  # Few enough: settle the bracket exactly.
  # Floor division: k=1 is then exactly the sequential bisection midpoint.
  # gap > k+1 makes the points strictly increasing and inside (lo, hi).
  return [lo + gap * i // (k + 1) for i in range(1, k + 1)]


def min_width_search_batched(
    oracle_many: Callable[[list[int]], Sequence[bool]],
    *,
    start: int,
    max_width: int,
    rel_precision: float = 0.1,
    growth: float = 2.0,
    min_width: int = 1,
    points_per_round: int = 3,
    ladder_per_round: int | None = None,
) -> SearchResult:
  """Batched :func:`min_width_search` for callers that train widths in parallel.

  Round structure:

  1. Growth rounds: the geometric ladder ``start, start*growth, ...,
     max_width`` is evaluated ``ladder_per_round`` widths per call (all of
     it in a single call by default) until a success appears.
  2. k-section rounds: each call evaluates ``points_per_round`` (= k) evenly
     spaced widths inside the current bracket ``(lo, hi]``, shrinking it by
     a factor ``k + 1`` per round (brackets with at most k interior widths
     are settled exactly in one round).

  Number of rounds (calls to ``oracle_many``), with ``ladder_per_round=None``:
  ``1 + ceil(log_{k+1}(G / max(1, rel_precision * t)))`` at most, where ``G``
  is the bracket left after the ladder (about ``t * (1 - 1/growth)``, or
  ``start`` when ``t < start``) — versus ``log_2`` of the same ratio plus the
  growth steps for the sequential search. E.g. exact search of ``t = 1000``
  from ``start=1``: 20 sequential calls, 6 batched rounds with k=3.
  The price is more trainings in total (the whole ladder, and k per round).
  The stopping rule and the precision guarantee are those of
  :func:`min_width_search`; with ``rel_precision=0`` both return the same
  (exact) width.

  Args:
    oracle_many: ``oracle_many(widths) -> list[bool]``, one result per
      width, in order. Never receives an already evaluated width or a
      duplicate.
    start: First width tried.
    max_width: Largest width ever tried.
    rel_precision: Relative width of the final bracket.
    growth: Ratio of the geometric ladder (> 1).
    min_width: Smallest admissible width.
    points_per_round: Widths evaluated per k-section round (k >= 1; k=1 is
      bisection).
    ladder_per_round: Ladder widths per growth round; None for the whole
      ladder at once (cheapest in rounds, but trains large widths that may
      prove unnecessary).

  Returns:
    A :class:`SearchResult`; ``rounds`` counts ``oracle_many`` calls.

  Example:
    >>> many = lambda ws: [w >= 37 for w in ws]
    >>> min_width_search_batched(many, start=8, max_width=1024, rel_precision=0).width
    37
  """
  _validate_search_args(start, max_width, rel_precision, growth, min_width)
  if points_per_round < 1:
    raise ValueError(f"points_per_round must be >= 1, got {points_per_round}")
  if ladder_per_round is not None and ladder_per_round < 1:
    raise ValueError(f"ladder_per_round must be >= 1 or None, got {ladder_per_round}")
  evals: dict[int, bool] = {}
  rounds = 0

  def call_many(widths: list[int]) -> None:
    nonlocal rounds
    todo = [int(w) for w in dict.fromkeys(widths) if w not in evals]
    if not todo:
      return
    results = list(oracle_many(todo))
    if len(results) != len(todo):
      raise ValueError(f"oracle_many returned {len(results)} results for {len(todo)} widths")
    rounds += 1
    for w, ok in zip(todo, results):
      evals[w] = bool(ok)

  ladder = _ladder(start, max_width, growth)
  step = len(ladder) if ladder_per_round is None else ladder_per_round
  for i in range(0, len(ladder), step):
    call_many(ladder[i : i + step])
    if any(evals[w] for w in ladder[i : i + step]):
      break
  else:
    return _result(evals, min_width, rounds)

  lo, hi = _bracket(evals, min_width)
  assert hi is not None
  while not _converged(lo, hi, rel_precision):
    call_many(_ksection_points(lo, hi, points_per_round))
    lo, hi = _bracket(evals, min_width)
    assert hi is not None
  return _result(evals, min_width, rounds)


# --------------------------------------------------------------------------- #
# Power-law fit
# --------------------------------------------------------------------------- #
def min_width_search_joint(
    oracle_joint: Callable[[int, list[Any]], Mapping[Any, bool]] | None,
    keys: Sequence[Any],
    *,
    start: int,
    max_width: int,
    rel_precision: float = 0.1,
    growth: float = 2.0,
    min_width: int = 1,
    oracle_round: Callable[[dict[int, list[Any]]], Mapping[int, Mapping[Any, bool]]] | None = None,
) -> dict[Any, SearchResult]:
  """Runs :func:`min_width_search` for several keys at once, sharing evaluations.

  Each key (e.g. an initialization scheme) follows exactly the sequential
  algorithm (geometric ladder, then bisection); the searches advance in
  lock-step rounds and, within a round, keys that request the same width
  are evaluated together by one call ``oracle_joint(width, keys_at_width)``.
  A caller that trains all those keys as one vmapped ensemble thus pays
  one training per distinct width per round. On the ladder every pending
  key asks for the same width, so the ladder costs what one search costs.

  Args:
    oracle_joint: ``(width, keys) -> {key: bool}`` for the keys given
      (None when ``oracle_round`` is given).
    keys: the searches to run (hashable, distinct).
    oracle_round: instead of ``oracle_joint``, ``({width: keys}) ->
      {width: {key: bool}}`` receives a whole round's requests at once
      (e.g. to train all its widths in one padded ensemble:
      :mod:`nfscale.widths`). The searches are the same either way.
    start: First width tried.
    max_width: Largest width ever tried.
    rel_precision: Relative width of the final bracket.
    growth: Ratio of the geometric ladder (> 1).
    min_width: Smallest admissible width.

  Returns:
    ``{key: SearchResult}``, each equal to what :func:`min_width_search`
    returns for that key's oracle (``rounds`` counts joint rounds).

  Example:
    >>> thresholds = {"a": 37, "b": 100}
    >>> res = min_width_search_joint(
    ...     lambda w, ks: {k: w >= thresholds[k] for k in ks}, ["a", "b"],
    ...     start=8, max_width=1024, rel_precision=0)
    >>> res["a"].width, res["b"].width
    (37, 100)
  """
  _validate_search_args(start, max_width, rel_precision, growth, min_width)
  if (oracle_joint is None) == (oracle_round is None):
    raise ValueError("give exactly one of oracle_joint and oracle_round")
  keys = list(dict.fromkeys(keys))
  ladder = _ladder(start, max_width, growth)
  evals: dict[Any, dict[int, bool]] = {k: {} for k in keys}

  def next_width(ev: dict[int, bool]) -> int | None:
    lo, hi = _bracket(ev, min_width)
    if hi is None:
      return next((w for w in ladder if w > lo and w not in ev), None)
    if _converged(lo, hi, rel_precision):
      return None
    return (lo + hi) // 2

  rounds = 0
  while True:
    requests: dict[int, list[Any]] = {}
    for k in keys:
      w = next_width(evals[k])
      if w is not None:
        requests.setdefault(w, []).append(k)
    if not requests:
      break
    rounds += 1
    if oracle_round is not None:
      outs = oracle_round({w: list(ks) for w, ks in sorted(requests.items())})
    else:
      outs = {w: oracle_joint(w, list(ks)) for w, ks in sorted(requests.items())}
    for w, ks in sorted(requests.items()):
      out = outs.get(w, {})
      missing = [k for k in ks if k not in out]
      if missing:
        raise ValueError(f"the oracle returned no result for {missing} at width {w}")
      for k in ks:
        evals[k][w] = bool(out[k])
  return {k: _result(evals[k], min_width, rounds) for k in keys}


class PowerLawFit(NamedTuple):
  """Result of :func:`fit_power_law`: ``params ≈ a · n ** b``.

  Attributes:
    a: Prefactor (``exp`` of the log-space intercept).
    b: Exponent (log–log slope).
    r2: Coefficient of determination of the log–log regression.
    b_ci: ``(low, high)`` bootstrap percentile interval for ``b``; NaNs if
      no bootstrap resample was usable (or ``n_boot=0``).
    n_points: Number of data points.
    n_boot_used: Bootstrap resamples used (degenerate ones are skipped).
    b_ci_t: ``(low, high)`` Student-t interval for ``b`` at the same level,
      from the least-squares slope's standard error (``m - 2`` degrees of
      freedom): on synthetic data it held the true exponent about as often as
      it claims, where the bootstrap interval fell short with 5 to 9 points.
  """

  a: float
  b: float
  r2: float
  b_ci: tuple[float, float]
  n_points: int
  n_boot_used: int
  b_ci_t: tuple[float, float] = (math.nan, math.nan)

  def predict(self, n: Any) -> np.ndarray:
    """Evaluates ``a * n ** b``."""
    return self.a * np.asarray(n, dtype=float) ** self.b


def _as_positive_1d(name: str, x: Any) -> np.ndarray:
  arr = np.asarray(x, dtype=float)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
  if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
    bad = arr[~(np.isfinite(arr) & (arr > 0))]
    raise ValueError(
        f"{name} must be finite and strictly positive for a log-log fit; got {bad.tolist()[:5]}"
    )
  return arr


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Least-squares slopes along the last axis (centered for accuracy)."""
  xc = x - x.mean(axis=-1, keepdims=True)
  yc = y - y.mean(axis=-1, keepdims=True)
  return (xc * yc).sum(axis=-1) / (xc * xc).sum(axis=-1)


def fit_power_law(
    n: Sequence[float] | np.ndarray,
    params: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> PowerLawFit:
  """Fits ``params ≈ a · n ** b`` by least squares on ``log params`` vs ``log n``.

  The confidence interval for ``b`` is a percentile bootstrap over data
  points: ``n_boot`` resamples of the points (with replacement) from
  ``np.random.default_rng(seed)``, each refitted; resamples whose ``n``
  values are all equal (slope undefined) are skipped. With few points the
  percentile interval is narrower than nominal — treat it as a rough
  uncertainty, not an exact ``ci`` coverage. Measured on 1000 synthetic
  sets each (``y = 3 N^1.5`` times log-normal noise of sd 0.1 or 0.3;
  ``benchmarks/search_statistics.py``): the "95%" interval held the true
  exponent 89–90% of the time from 5 points (N = 10 … 200 or 256 … 1024)
  and 92% from the paper's 9, where the Student-t interval of the same
  least-squares slope (``b_ci_t``) held it 94–96% of the time. It
  also leaves out the search's own precision (``rel_precision``) and the
  run-to-run spread of near-threshold widths.

  Args:
    n: Independent variable, e.g. signal size; > 0, at least 2 distinct values.
    params: Dependent variable, e.g. minimal parameter count; > 0.
    n_boot: Number of bootstrap resamples (0 disables the CI).
    seed: Seed of the bootstrap generator (results are deterministic).
    ci: Confidence level in (0, 1).

  Returns:
    A :class:`PowerLawFit`.

  Raises:
    ValueError: on fewer than 3 points, mismatched lengths, non-positive or
      non-finite values, all-equal ``n`` or an invalid ``ci``/``n_boot``;
      the message names the offending argument.

  Example:
    >>> fit = fit_power_law([10, 20, 40, 80], [3 * v**1.5 for v in (10, 20, 40, 80)])
    >>> round(fit.b, 6), round(fit.a, 6), fit.r2
    (1.5, 3.0, 1.0)
  """
  x_raw = _as_positive_1d("n", n)
  y_raw = _as_positive_1d("params", params)
  if x_raw.shape != y_raw.shape:
    raise ValueError(f"n and params must have the same length, got {x_raw.size} and {y_raw.size}")
  m = x_raw.size
  if m < 3:
    raise ValueError(
        f"need at least 3 points (n, params) for a power-law fit with a fit quality, got {m}"
    )
  if np.ptp(x_raw) == 0:
    raise ValueError(
        "n must contain at least two distinct values; the exponent is undefined otherwise"
    )
  if not 0 < ci < 1:
    raise ValueError(f"ci must be in (0, 1), got {ci}")
  if n_boot < 0:
    raise ValueError(f"n_boot must be >= 0, got {n_boot}")

  x, y = np.log(x_raw), np.log(y_raw)
  b = float(_slopes(x, y))
  log_a = float(y.mean() - b * x.mean())
  ss_res = float(np.sum((y - (log_a + b * x)) ** 2))
  ss_tot = float(np.sum((y - y.mean()) ** 2))
  # Constant params: the fit (b=0) is exact, call it a perfect fit.
  r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0

  lo_hi = (math.nan, math.nan)
  used = 0
  if n_boot > 0:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, size=(n_boot, m))
    xb, yb = x[idx], y[idx]
    # Exact test on the raw draw: all-equal rows have undefined slope.
    ok = np.ptp(xb, axis=1) > 0
    used = int(ok.sum())
    if used:
      slopes = _slopes(xb[ok], yb[ok])
      alpha = (1.0 - ci) / 2.0
      q = np.quantile(slopes, [alpha, 1.0 - alpha])
      lo_hi = (float(q[0]), float(q[1]))
  from scipy import stats  # a heavy import, needed by fits only

  # Student-t interval of the same slope: se^2 = (residual variance) / sum (x - mean)^2.
  half = float(stats.t.ppf(0.5 + ci / 2.0, m - 2)) * math.sqrt(
      ss_res / (m - 2) / float(np.sum((x - x.mean()) ** 2))
  )
  return PowerLawFit(
      a=math.exp(log_a),
      b=b,
      r2=r2,
      b_ci=lo_hi,
      n_points=m,
      n_boot_used=used,
      b_ci_t=(b - half, b + half),
  )


#: Fewest points from which :func:`fit_power_law`'s bootstrap interval is
#: reported as an interval. With 3 or 4 points a percentile bootstrap draws
#: from at most 10 or 35 distinct resamples, many of them repeating one point,
#: so its "95%" has no coverage meaning; reports label such intervals instead.
MIN_CI_POINTS: int = 5


def ci_meaningful(n_points: int) -> bool:
  """Whether a bootstrap interval over ``n_points`` points is worth reporting as one.

  Example:
    >>> ci_meaningful(3), ci_meaningful(5)
    (False, True)
  """
  return int(n_points) >= MIN_CI_POINTS


# --------------------------------------------------------------------------- #
# Learning-rate grid
# --------------------------------------------------------------------------- #
def _round_lr(lr: float) -> float:
  # 3 significant digits: 0.1 * 3 is 0.3 in the records, not 0.30000000000000004.
  return float(f"{lr:.3g}")


def extend_lr_grid(
    lrs: Sequence[float], outcomes: Sequence[tuple[float, bool]], *, factor: float = 3.0
) -> tuple[float, ...] | None:
  """The grid extended outward where a best rate sits at its end, or None.

  A sweep picks, per scheme, the best rate of a grid. If that rate is the
  grid's largest (or smallest) and training at it did not diverge, the true
  optimum may lie beyond the grid and the measured width is biased upward.
  The caller then retrains with the returned grid (bounded by its own count
  of extensions).

  Args:
    lrs: the current grid (any order).
    outcomes: per scheme that reached the target, ``(best_lr, diverged)``:
      its best rate at the width it was found at, and whether any member
      diverged at that rate there.
    factor: ratio of the new end rate to the old one (> 1).

  Returns:
    The sorted grid with ``max * factor`` added if some scheme's best rate is
    the maximum and did not diverge, and ``min / factor`` added if some
    scheme's best rate is the minimum and did not diverge; None if neither
    (the grid brackets every best rate).

  Raises:
    ValueError: an empty grid, a rate that is not positive, or ``factor <= 1``.

  Example:
    >>> extend_lr_grid([0.01, 0.03, 0.1], [(0.1, False), (0.03, False)])
    (0.01, 0.03, 0.1, 0.3)
    >>> extend_lr_grid([0.01, 0.03, 0.1], [(0.1, True)]) is None
    True
  """
  grid = sorted({float(v) for v in lrs})
  if not grid or grid[0] <= 0:
    raise ValueError(f"lrs must be a non-empty grid of positive rates, got {list(lrs)}.")
  if not factor > 1:
    raise ValueError(f"factor must be > 1, got factor={factor}.")
  lo, hi = grid[0], grid[-1]
  ok_best = {float(lr) for lr, diverged in outcomes if not diverged}
  new = list(grid)
  if hi in ok_best:
    new.append(_round_lr(hi * factor))
  if lo in ok_best:
    new.insert(0, _round_lr(lo / factor))
  return tuple(new) if len(new) > len(grid) else None
