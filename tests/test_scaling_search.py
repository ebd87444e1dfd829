"""Tests for nfscale.scaling (minimal-width search, power-law fit) and nfscale.tables."""

from __future__ import annotations

import csv
import math
import os
import warnings

import numpy as np
import pytest

from nfscale import scaling
from nfscale.scaling import (
    PowerLawFit,
    SearchResult,
    fit_power_law,
    min_width_search,
    min_width_search_batched,
)
from nfscale.tables import markdown_table, write_csv

THRESHOLDS = [1, 3, 17, 100, 1000, 4097]
STARTS = [1, 5, 64]
MAX_WIDTH = 1 << 14


class CountingOracle:
  """Monotone synthetic oracle ``width >= threshold`` that records every call."""

  def __init__(self, threshold: int):
    self.threshold = threshold
    self.calls: list[int] = []
    self.batches: list[list[int]] = []

  def __call__(self, width: int) -> bool:
    self.calls.append(width)
    return width >= self.threshold

  def many(self, widths: list[int]) -> list[bool]:
    self.batches.append(list(widths))
    return [self(w) for w in widths]


def assert_guarantee(res: SearchResult, t: int, rel: float) -> None:
  """The documented precision guarantee for a monotone oracle with threshold t."""
  assert res.found
  assert t <= res.width, "must never report a width below the true threshold"
  assert res.width - t < max(1.0, rel * res.width)
  assert res.evaluations[res.width] is True
  assert res.lower_bound < t
  if res.lower_bound:
    assert res.evaluations[res.lower_bound] is False


def assert_no_repeats(oracle: CountingOracle, res: SearchResult) -> None:
  assert len(oracle.calls) == len(
      set(oracle.calls)
  ), f"oracle called twice on a width: {oracle.calls}"
  assert list(res.evaluations) == oracle.calls


# --------------------------------------------------------------------------- #
# Sequential search
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("t", THRESHOLDS)
@pytest.mark.parametrize("start", STARTS)
def test_exact_threshold_with_zero_precision(t, start):
  oracle = CountingOracle(t)
  res = min_width_search(oracle, start=start, max_width=MAX_WIDTH, rel_precision=0.0)
  assert res.found and res.width == t
  assert res.lower_bound == (t - 1 if t > 1 else 0)
  assert res.rounds == len(oracle.calls)
  assert_no_repeats(oracle, res)


@pytest.mark.parametrize("t", THRESHOLDS)
@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("rel", [0.05, 0.1, 0.3])
def test_threshold_within_relative_precision(t, start, rel):
  oracle = CountingOracle(t)
  res = min_width_search(oracle, start=start, max_width=MAX_WIDTH, rel_precision=rel)
  assert_guarantee(res, t, rel)
  assert_no_repeats(oracle, res)


def test_small_rel_precision_is_exact():
  # rel * width <= 1 makes the bracket one wide, i.e. exact.
  for t in THRESHOLDS:
    res = min_width_search(
        CountingOracle(t), start=2, max_width=MAX_WIDTH, rel_precision=0.5 / 8192
    )
    assert res.width == t


@pytest.mark.parametrize("growth", [1.3, 1.5, 3.0, 10.0])
def test_other_growth_factors(growth):
  for t in [1, 2, 7, 99, 1234]:
    oracle = CountingOracle(t)
    res = min_width_search(oracle, start=4, max_width=5000, rel_precision=0, growth=growth)
    assert res.width == t
    assert_no_repeats(oracle, res)


def test_docstring_example_sequence():
  res = min_width_search(lambda w: w >= 37, start=8, max_width=1024, rel_precision=0)
  assert (res.width, res.lower_bound) == (37, 36)
  assert list(res.evaluations) == [8, 16, 32, 64, 48, 40, 36, 38, 37]


@pytest.mark.parametrize("t", [1025, 5000, 10**9])
def test_not_found_beyond_max_width(t):
  oracle = CountingOracle(t)
  res = min_width_search(oracle, start=3, max_width=1024)
  assert not res.found and res.width is None
  assert res.lower_bound == 1024
  assert max(oracle.calls) == 1024, "max_width itself must be tried before giving up"
  assert all(ok is False for ok in res.evaluations.values())
  assert_no_repeats(oracle, res)


def test_threshold_between_last_ladder_step_and_max_width():
  # Ladder 3, 6, ..., 768, then capped at 1000: a threshold of 1000 is found.
  res = min_width_search(CountingOracle(1000), start=3, max_width=1000, rel_precision=0)
  assert res.found and res.width == 1000


def test_min_width_floor():
  # Widths below min_width are inadmissible: the answer is min_width itself.
  oracle = CountingOracle(1)
  res = min_width_search(oracle, start=16, max_width=100, rel_precision=0, min_width=8)
  assert res.width == 8 and min(oracle.calls) == 8 and res.lower_bound == 0
  res = min_width_search(CountingOracle(11), start=16, max_width=100, rel_precision=0, min_width=8)
  assert res.width == 11 and res.lower_bound == 10


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(start=0, max_width=10),
        dict(start=20, max_width=10),
        dict(start=2, max_width=10, min_width=3),
        dict(start=2, max_width=10, growth=1.0),
        dict(start=2, max_width=10, rel_precision=-0.1),
        dict(start=2, max_width=10, rel_precision=math.nan),
    ],
)
def test_invalid_arguments(kwargs):
  with pytest.raises(ValueError):
    min_width_search(lambda w: True, **kwargs)
  with pytest.raises(ValueError):
    min_width_search_batched(lambda ws: [True] * len(ws), **kwargs)


# --------------------------------------------------------------------------- #
# Batched search
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("t", THRESHOLDS)
@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("k", [1, 3, 7])
def test_batched_agrees_with_sequential_and_uses_fewer_rounds(t, start, k):
  seq_oracle, bat_oracle = CountingOracle(t), CountingOracle(t)
  seq = min_width_search(seq_oracle, start=start, max_width=MAX_WIDTH, rel_precision=0)
  bat = min_width_search_batched(
      bat_oracle.many, start=start, max_width=MAX_WIDTH, rel_precision=0, points_per_round=k
  )
  assert bat.width == seq.width == t
  assert bat.lower_bound == seq.lower_bound
  assert bat.rounds == len(bat_oracle.batches)
  assert_no_repeats(bat_oracle, bat)  # no width repeated within or across batches
  assert bat.rounds <= seq.rounds
  # Strictly fewer whenever batching can help: the ladder has more than one
  # step to save (t > start) or k-section splits finer than bisection (k > 1),
  # and the sequential search needed more than a couple of calls.
  if t > start and k > 1 and seq.rounds >= 3:
    assert bat.rounds < seq.rounds


@pytest.mark.parametrize("t", THRESHOLDS)
@pytest.mark.parametrize("rel", [0.0, 0.1])
def test_batched_with_one_point_per_round_is_the_sequential_search(t, rel):
  # ladder_per_round=1, points_per_round=1 degenerates to min_width_search.
  seq = min_width_search(CountingOracle(t), start=3, max_width=MAX_WIDTH, rel_precision=rel)
  bat = min_width_search_batched(
      CountingOracle(t).many,
      start=3,
      max_width=MAX_WIDTH,
      rel_precision=rel,
      points_per_round=1,
      ladder_per_round=1,
  )
  assert bat == seq


@pytest.mark.parametrize("t", THRESHOLDS)
@pytest.mark.parametrize("rel", [0.05, 0.1, 0.3])
def test_batched_relative_precision(t, rel):
  oracle = CountingOracle(t)
  res = min_width_search_batched(oracle.many, start=4, max_width=MAX_WIDTH, rel_precision=rel)
  assert_guarantee(res, t, rel)
  assert_no_repeats(oracle, res)


def test_batched_round_count_example():
  # Documented example: exact search for t=1000 from start=1.
  seq = min_width_search(CountingOracle(1000), start=1, max_width=MAX_WIDTH, rel_precision=0)
  bat = min_width_search_batched(
      CountingOracle(1000).many, start=1, max_width=MAX_WIDTH, rel_precision=0
  )
  assert (seq.rounds, bat.rounds) == (20, 6)


@pytest.mark.parametrize("k", [3, 16])  # k-section points, and the whole bracket at once
def test_batched_min_width_floor(k):
  # As test_min_width_floor: widths below min_width are never evaluated, even when
  # the first ladder step succeeds and the bracket's lower end (min_width - 1) is
  # an implied failure rather than a measured one.
  oracle = CountingOracle(1)
  res = min_width_search_batched(
      oracle.many, start=16, max_width=100, rel_precision=0, min_width=8, points_per_round=k
  )
  assert res.width == 8 and min(oracle.calls) == 8 and res.lower_bound == 0
  assert_no_repeats(oracle, res)
  oracle = CountingOracle(11)
  res = min_width_search_batched(
      oracle.many, start=16, max_width=100, rel_precision=0, min_width=8, points_per_round=k
  )
  assert res.width == 11 and res.lower_bound == 10 and min(oracle.calls) >= 8


@pytest.mark.parametrize("ladder_per_round", [1, 2, 5])
def test_batched_partial_ladder(ladder_per_round):
  for t in THRESHOLDS:
    oracle = CountingOracle(t)
    res = min_width_search_batched(
        oracle.many,
        start=2,
        max_width=MAX_WIDTH,
        rel_precision=0,
        ladder_per_round=ladder_per_round,
    )
    assert res.width == t
    assert all(len(b) <= max(ladder_per_round, 3) for b in oracle.batches)
    assert_no_repeats(oracle, res)


def test_batched_not_found():
  oracle = CountingOracle(10**6)
  res = min_width_search_batched(oracle.many, start=1, max_width=1000)
  assert not res.found and res.width is None and res.lower_bound == 1000
  assert res.rounds == 1  # the whole ladder in one call


@pytest.mark.parametrize("kwargs", [dict(points_per_round=0), dict(ladder_per_round=0)])
def test_batched_rejects_empty_rounds(kwargs):
  # Zero widths per round would never shrink the bracket (or climb the ladder):
  # refused up front, even for a search that would need no k-section round.
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    min_width_search_batched(CountingOracle(1).many, start=1, max_width=1024, **kwargs)


def test_batched_rejects_wrong_result_count():
  with pytest.raises(ValueError, match="results"):
    min_width_search_batched(lambda ws: [True], start=1, max_width=64)


def test_batched_warns_on_non_monotone_oracle():
  # 8 succeeds, 16 "fails" (noisy training), everything else monotone at 6.
  def many(ws):
    return [w >= 6 and w != 16 for w in ws]

  with pytest.warns(RuntimeWarning, match="not monotone"):
    res = min_width_search_batched(many, start=1, max_width=64, rel_precision=0)
  assert res.width == 6


def test_sequential_monotone_search_emits_no_warning():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    min_width_search(CountingOracle(77), start=1, max_width=1000)
    min_width_search_batched(CountingOracle(77).many, start=1, max_width=1000)


# --------------------------------------------------------------------------- #
# Power-law fit
# --------------------------------------------------------------------------- #
N9 = np.geomspace(10, 200, 9)


def test_power_law_exact_data():
  fit = fit_power_law(N9, 3.0 * N9**1.5, n_boot=200)
  assert isinstance(fit, PowerLawFit)
  # "Exactly" up to float64 rounding of log(): 1e-12 is ~5000 ulps of slack.
  assert fit.b == pytest.approx(1.5, abs=1e-12)
  assert fit.a == pytest.approx(3.0, rel=1e-12)
  assert fit.r2 == pytest.approx(1.0, abs=1e-12)
  lo, hi = fit.b_ci
  assert lo == pytest.approx(1.5, abs=1e-12) and hi == pytest.approx(1.5, abs=1e-12)
  np.testing.assert_allclose(fit.predict(N9), 3.0 * N9**1.5, rtol=1e-12)


def _noisy(seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return 2.0 * N9**1.5 * np.exp(0.05 * rng.standard_normal(N9.size))  # 5% log-normal noise


def test_power_law_recovers_exponent_with_noise():
  # Standard error of the slope = sigma / sqrt(sum((log N - mean)^2))
  # = 0.05 / sqrt(8.4) ~= 0.017 for 9 log-spaced points over a factor 20.
  # A tolerance of 0.07 is ~4 standard errors: fails for <1e-4 of noise draws.
  fit = fit_power_law(N9, _noisy(0), seed=0)
  assert abs(fit.b - 1.5) < 0.07
  assert fit.a == pytest.approx(2.0, rel=0.3)
  assert 0.99 < fit.r2 <= 1.0
  lo, hi = fit.b_ci
  assert lo < fit.b < hi
  assert lo <= 1.5 <= hi
  assert fit.n_points == 9 and fit.n_boot_used == 2000


def test_power_law_ci_coverage():
  # The percentile bootstrap under-covers with only 9 points (~90% measured
  # for nominal 95%), so require a loose 80% over 100 fixed noise draws.
  hits = 0
  for s in range(100):
    lo, hi = fit_power_law(N9, _noisy(1000 + s), n_boot=500, seed=s).b_ci
    hits += lo <= 1.5 <= hi
  assert hits >= 80


def test_power_law_t_interval_matches_scipy_and_covers():
  # The t interval of the least-squares slope, checked against scipy's own slope and
  # standard error; its coverage over 200 noise draws should be near the nominal 95%:
  # binomial sd = sqrt(.95 * .05 / 200) ~= 1.5%, so >= 88% is ~4.6 sd below.
  from scipy import stats

  y = _noisy(5)
  line = stats.linregress(np.log(N9), np.log(y))
  half = stats.t.ppf(0.975, N9.size - 2) * line.stderr
  lo, hi = fit_power_law(N9, y, n_boot=0).b_ci_t
  assert lo == pytest.approx(line.slope - half, rel=1e-9)
  assert hi == pytest.approx(line.slope + half, rel=1e-9)
  hits = sum(
      lo <= 1.5 <= hi
      for lo, hi in (fit_power_law(N9, _noisy(2000 + s), n_boot=0).b_ci_t for s in range(200))
  )
  assert hits >= 176


def test_power_law_of_constant_params_is_a_perfect_flat_fit():
  # params independent of n: slope 0, prefactor the constant, and r2 = 1 by the
  # documented convention (ss_tot = 0 would otherwise be 0 / 0).
  fit = fit_power_law(N9, np.full(N9.size, 7.0), n_boot=0)
  assert fit.b == pytest.approx(0.0, abs=1e-12)
  assert fit.a == pytest.approx(7.0, rel=1e-12)
  assert fit.r2 == 1.0


@pytest.mark.parametrize("n_boot", [0, 1, 50])
def test_power_law_counts_its_bootstrap_resamples(n_boot):
  # 9 distinct n: a resample is degenerate (one distinct n) with probability
  # 9 / 9**9 < 3e-7, so every resample is used; none at all for n_boot=0.
  fit = fit_power_law(N9, _noisy(4), n_boot=n_boot)
  assert fit.n_boot_used == n_boot
  lo, hi = fit.b_ci
  if n_boot == 0:
    assert math.isnan(lo) and math.isnan(hi)
  else:  # one resample gives a zero-width interval at its own slope
    assert math.isfinite(lo) and lo <= hi and (n_boot > 1 or lo == hi)


def test_power_law_bootstrap_is_deterministic():
  y = _noisy(3)
  assert fit_power_law(N9, y, seed=7) == fit_power_law(N9, y, seed=7)
  assert fit_power_law(N9, y, seed=7).b_ci != fit_power_law(N9, y, seed=8).b_ci


def test_power_law_skips_degenerate_resamples():
  # With 3 points and 2 equal N values, ~1/3 of resamples have a single
  # distinct N (slope undefined) and must be skipped, not produce NaN.
  fit = fit_power_law([4, 4, 16], [8.0, 8.5, 64.0], n_boot=1000)
  assert 0 < fit.n_boot_used < 1000
  assert all(math.isfinite(v) for v in fit.b_ci)
  assert (
      fit_power_law([4, 8, 16], [1, 2, 4], n_boot=0).b_ci
      != fit_power_law([4, 8, 16], [1, 2, 4]).b_ci
  )


@pytest.mark.parametrize(
    "n, params, match",
    [
        ([10, 20], [1, 2], "at least 3"),
        ([10, 0, 30], [1, 2, 3], r"^n must"),
        ([10, -5, 30], [1, 2, 3], r"^n must"),
        ([10, 20, 30], [1, -2, 3], r"^params must"),
        ([10, 20, 30], [1, math.nan, 3], r"^params must"),
        ([10, 20, 30], [1, 2], "same length"),
        ([10, 10, 10], [1, 2, 3], "distinct"),
    ],
)
def test_power_law_input_validation(n, params, match):
  with pytest.raises(ValueError, match=match):
    fit_power_law(n, params)


def test_power_law_input_error_lists_the_offending_values():
  # Only the non-positive or non-finite entries, in order.
  with pytest.raises(ValueError, match=r"got \[-5\.0, 0\.0, inf\]$"):
    fit_power_law([10, -5, 20, 0, math.inf, 30], [1, 2, 3, 4, 5, 6])


# --------------------------------------------------------------------------- #
# Tables
# --------------------------------------------------------------------------- #
ROWS = [
    {"name": "siren", "N": np.int64(64), "psnr": 31.234567, "note": "a|b"},
    {"name": "relu", "N": 128, "psnr": np.float32(0.5), "extra": 1},
    {"name": "multi\nline", "N": 256, "psnr": None},
]


def test_markdown_table():
  md = markdown_table(ROWS, ["name", "N", "psnr", "note"])
  lines = md.splitlines()
  assert md.endswith("\n") and len(lines) == 5
  assert lines[0] == "| name | N | psnr | note |"
  assert lines[1] == "| --- | ---: | ---: | --- |"
  assert lines[2] == "| siren | 64 | 31.23 | a\\|b |"
  assert lines[3] == "| relu | 128 | 0.5 |  |"
  assert lines[4] == "| multi line | 256 |  |  |"


def test_write_csv_roundtrip(tmp_path):
  path = tmp_path / "sub" / "table.csv"
  write_csv(path, ROWS, ["name", "N", "psnr", "note"])
  with open(path, newline="") as f:
    got = list(csv.DictReader(f))
  assert [r["name"] for r in got] == ["siren", "relu", "multi\nline"]
  assert float(got[0]["psnr"]) == 31.234567  # full precision round-trips
  assert got[1]["note"] == "" and got[2]["psnr"] == ""
  assert "extra" not in got[1]
  assert os.listdir(path.parent) == ["table.csv"]  # no temp files left


@pytest.mark.parametrize("start", [1, 8, 64])
@pytest.mark.parametrize("rel", [0.0, 0.1])
def test_joint_search_equals_separate_searches(start, rel):
  thresholds = {"a": 3, "b": 37, "c": 100, "d": 1000, "e": 5000}
  calls: list[tuple[int, tuple]] = []

  def joint(w, ks):
    calls.append((w, tuple(ks)))
    return {k: w >= thresholds[k] for k in ks}

  res = scaling.min_width_search_joint(
      joint, list(thresholds), start=start, max_width=4096, rel_precision=rel
  )
  sequential_calls = 0
  for k, t in thresholds.items():
    seq = scaling.min_width_search(
        lambda w, t=t: w >= t, start=start, max_width=4096, rel_precision=rel
    )
    sequential_calls += len(seq.evaluations)
    assert (res[k].width, res[k].found, res[k].lower_bound) == (
        seq.width,
        seq.found,
        seq.lower_bound,
    )
    assert res[k].evaluations == seq.evaluations
  # No (width, key) pair is evaluated twice, and shared ladder widths are merged.
  pairs = [(w, k) for w, ks in calls for k in ks]
  assert len(pairs) == len(set(pairs)) == sequential_calls
  assert len(calls) < sequential_calls
