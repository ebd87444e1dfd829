"""Eq. 4.6's two readings, init1's by-construction effect, and the per-point theory cache."""

import inspect
import math

import jax
import numpy as np
import pytest

from nfscale import io, models, theory

N = 20
X = np.linspace(-1, 1, N, dtype=np.float32)[:, None]
Y = (np.sin(2 * np.pi * X) + np.sin(6 * np.pi * X)).astype(np.float32)
SP = {"first_bias": "torch"}


def _field(width, scheme="lecun_normal"):
  return models.make_field(
      (width,),
      1,
      activation="sinc",
      activation_params={"omega": 30.0},
      scheme=scheme,
      scheme_params=SP,
  )


def test_both_readings_follow_their_formulas():
  field = _field(64)
  d = theory.init_diagnostics(field, field.init(jax.random.key(0), X[:1]), X, Y)
  common = 16 * math.sqrt(N) * math.sqrt(2 * d.init_loss) * d.w_last_norm
  assert d.rhs == pytest.approx(common / math.sqrt(64), rel=1e-13)  # over_sqrt_n
  assert d.rhs_times == pytest.approx(common * math.sqrt(64), rel=1e-13)  # times_sqrt_n
  assert d.rhs_times == pytest.approx(64 * d.rhs, rel=1e-13)
  assert d.margin_times == d.sigma_min**2 - d.rhs_times
  assert d.holds_times == (d.margin_times >= 0)
  assert d.margin_for("over_sqrt_n") == d.margin
  assert d.margin_for("times_sqrt_n") == d.margin_times
  with pytest.raises(ValueError, match="over_sqrt_n, times_sqrt_n"):
    d.margin_for("sqrt_n")


def test_condition_widths_defaults_are_condition_widths():
  # condition_widths documents its search settings "as in condition_width", and
  # condition_width documents seeds (0, 1, 2), start 8, max_width 2**14, ...: one
  # search must not run with other settings than the other when left at defaults.
  one = inspect.signature(theory.condition_width).parameters
  many = inspect.signature(theory.condition_widths).parameters
  shared = set(one) & set(many) - {"make_model", "scheme", "x", "y"}
  assert shared >= {"seeds", "start", "max_width", "rel_precision", "rule", "growth"}
  for name in sorted(shared):
    assert many[name].default == one[name].default, name
  assert one["seeds"].default == (0, 1, 2) and one["max_width"].default == 2**14


def test_times_reading_needs_at_least_the_width_of_the_over_reading():
  make = lambda w: _field(w)  # noqa: E731
  kw = dict(scheme_params=SP, seeds=(0,), max_width=2**12, rel_precision=0.25)
  record = {}
  both = theory.condition_widths(make, "init1", X, Y, record=record, **kw)
  over, times = both["over_sqrt_n"], both["times_sqrt_n"]
  assert over.found
  # rhs_times = width * rhs >= rhs for every width >= 1: whatever holds under
  # the times reading holds under the over reading.
  assert (not times.found) or times.width >= over.width
  # Each width was measured once for both searches, and every verdict is its own
  # reading's margin of that shared measurement.
  assert set(record) == set(over.evaluations) | set(times.evaluations)
  for w, ok in over.evaluations.items():
    assert ok == (record[w][0].margin >= 0)
  for w, ok in times.evaluations.items():
    assert ok == (record[w][0].margin_times >= 0)
  with pytest.raises(ValueError, match="reading must be one of"):
    theory.condition_width(make, "init1", X, Y, reading="x")
  with pytest.raises(ValueError, match="readings must name"):
    theory.condition_widths(make, "init1", X, Y, readings=())


def test_init1_changes_only_the_output_side_of_eq_4_6():
  # The by-construction argument of the module docstring: same seed, LeCun vs
  # init1 -> identical sigma_min, W_L scaled by sqrt(2/sqrt(n)).
  w = 256
  d = {}
  for sc in ("lecun_normal", "init1"):
    f = _field(w, sc)
    d[sc] = theory.init_diagnostics(f, f.init(jax.random.key(1), X[:1]), X, Y)
  assert d["init1"].sigma_min == d["lecun_normal"].sigma_min
  assert d["init1"].w_last_norm == pytest.approx(
      d["lecun_normal"].w_last_norm * math.sqrt(2 / math.sqrt(w)), rel=1e-5
  )
  assert d["init1"].rhs < d["lecun_normal"].rhs


def test_cache_computes_each_scheme_once_and_survives_a_restart(tmp_path):
  path = str(tmp_path / theory.CACHE_FILE)
  calls = []

  def compute(sc):
    calls.append(sc)
    return {"condition_width": len(sc), "found": True, "w": np.int64(3)}

  a = theory.cached_per_scheme(path, "sinc", 10, ["init1", "lecun_normal"], compute)
  assert calls == ["init1", "lecun_normal"]
  # A resume (fresh process: only the file is shared) adds a scheme and a point.
  b = theory.cached_per_scheme(
      path, "sinc", 10, ["lecun_normal", "init1", "kaiming_normal"], compute
  )
  c = theory.cached_per_scheme(path, "sinc", 20, ["init1"], compute)
  assert calls == ["init1", "lecun_normal", "kaiming_normal", "init1"]
  assert b["init1"] == a["init1"] == {"condition_width": 5, "found": True, "w": 3}
  assert c["init1"]["condition_width"] == 5
  assert len(io.read_jsonl(path)) == 4
  # Same arm and N but another arm: not a cache hit.
  theory.cached_per_scheme(path, "relu_pe", 10, ["init1"], compute)
  assert calls[-1] == "init1" and len(calls) == 5
