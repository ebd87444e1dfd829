"""Sweep protocol: theory cache on resume, lr-grid extension, width exponent, CI labels."""

import os
import pathlib
import sys

import jax
import numpy as np

import pytest

from nfscale import io, scaling, sweep, sweep_report, theory

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import scaling_shallow  # noqa: E402


def _tiny(**overrides):
  c = scaling_shallow.get_config("tiny")
  with c.unlocked():
    c.schemes = ("init1",)
    c.steps = 200
    c.chunk_steps = 100
    c.sweep.start = 8
    c.sweep.max_width = 64
    for k, v in overrides.items():
      node = c
      *path, last = k.split(".")
      for p in path:
        node = node[p]
      node[last] = v
  return c


def test_theory_is_cached_and_not_recomputed_on_resume(tmp_path, monkeypatch):
  # The eq. 4.6 search itself is tested in test_theory*.py; here a stand-in
  # (fast, counting its calls) checks the sweep's caching around it.
  calls = []

  def fake(make_model, scheme, x, y, *, readings, **kw):
    calls.append((scheme, len(x), tuple(readings)))
    result = lambda w: scaling.SearchResult(  # noqa: E731
        width=w, found=w is not None, lower_bound=0, evaluations={}, rounds=1
    )
    return {"over_sqrt_n": result(100), "times_sqrt_n": result(None)}

  monkeypatch.setattr(theory, "condition_widths", fake)
  c = _tiny(**{"sweep.ns": (6,)})
  sweep.run_sweep(c, str(tmp_path))
  assert calls == [("init1", 6, ("over_sqrt_n", "times_sqrt_n"))]
  (cached,) = io.read_jsonl(tmp_path / theory.CACHE_FILE)
  # Both readings, labelled.
  assert cached["theory"] == {
      "condition_width": 100,
      "found": True,
      "condition_width_times": None,
      "found_times": False,
  }
  # A crash after training and theory, before the point record: resume.
  os.remove(tmp_path / "points.jsonl")

  def boom(*a, **k):
    raise AssertionError("eq. 4.6 recomputed on resume")

  monkeypatch.setattr(theory, "condition_widths", boom)
  second = sweep.run_sweep(c, str(tmp_path))
  assert [r["condition_width"] for r in second["rows"]] == [100]


def test_lr_grid_extends_once_when_the_best_rate_is_an_end(tmp_path):
  c = _tiny(**{"theory.enabled": False, "sweep.ns": (6,), "sweep.lr_extensions": 1, "lrs": (0.1,)})
  sweep.run_sweep(c, str(tmp_path))
  (p,) = io.read_jsonl(tmp_path / "points.jsonl")
  assert p["schemes"]["init1"]["found"]
  # A one-rate grid: its rate is both ends -> extended both ways, once (bounded).
  assert p["lr_grids"] == [[0.1], [0.0333, 0.1, 0.3]] and p["lrs"] == [0.0333, 0.1, 0.3]
  grids = {tuple(e["lrs"]) for e in io.read_jsonl(tmp_path / "evals.jsonl")}
  assert grids == {(0.1,), (0.0333, 0.1, 0.3)}
  assert p["schemes"]["init1"]["best_lr"] in (0.0333, 0.1, 0.3)


def _extending(**overrides):
  # One rate, so the grid is extended (both ways, once); round buckets pad no members.
  extra = {"theory.enabled": False, "sweep.ns": (6,), "sweep.lr_extensions": 1, "lrs": (0.1,)}
  return _tiny(**{**extra, "sweep.buckets": "round", **overrides})


def _member_columns(cell, j):
  return [[row[j] for row in cell[k]] for k in ("reached", "steps_to_target", "best_psnr")]


@pytest.mark.parametrize("buckets", ["round", "off", "on"])
def test_wider_grid_trains_only_the_new_rates(tmp_path, monkeypatch, buckets):
  # round and on train through evaluate_round, off through evaluate_width.
  trained = []
  real = sweep.train_batched

  def counting(config, task, members, *args, **kw):
    trained.extend((m.scheme, m.lr) for m in members)
    return real(config, task, members, *args, **kw)

  monkeypatch.setattr(sweep, "train_batched", counting)
  sweep.run_sweep(_extending(**{"seeds": (0, 1), "sweep.buckets": buckets}), str(tmp_path))
  evals = io.read_jsonl(tmp_path / "evals.jsonl")
  first = {e["width"]: e for e in evals if e["lrs"] == [0.1]}
  wider = [e for e in evals if e["lrs"] == [0.0333, 0.1, 0.3]]
  assert first and wider
  reused = [e for e in wider if e["width"] in first]
  assert reused, "the wider grid's search visited no width of the first"
  for e in wider:
    if e["width"] in first:
      # The rate 0.1 cell is the first grid's, seed by seed, not a retrained copy.
      assert e["reused"] == {"init1": [0.1]}
      old = first[e["width"]]["schemes"]["init1"]
      assert _member_columns(e["schemes"]["init1"], 1) == _member_columns(old, 0)
    else:
      assert "reused" not in e
  # Trained: every (scheme, rate, seed) of each record, less the reused cells.
  want = sum(2 * (len(e["lrs"]) - len(e.get("reused", {}).get("init1", []))) for e in evals)
  assert want < sum(2 * len(e["lrs"]) for e in evals)
  if buckets == "on":
    # A ladder bucket pads its ensemble to every scheme x seed x rate (copies of
    # its first member), so that its program repeats: the padding trains too.
    assert len(trained) >= want
  else:
    assert len(trained) == want
    # Rate 0.1 trains (2 seeds) at every width of the first grid and at every
    # width new to the wider grid, and nowhere else.
    fresh_01 = [e for e in evals if 0.1 not in e.get("reused", {}).get("init1", [])]
    assert len(fresh_01) > len(first)  # some width was new to the wider grid
    assert trained.count(("init1", 0.1)) == 2 * len(fresh_01)


def test_reuse_across_grids_resumes_to_the_same_records(tmp_path):
  ref = tmp_path / "ref"
  sweep.run_sweep(_extending(), str(ref))
  evals = io.read_jsonl(ref / "evals.jsonl")
  first_grid = sum(e["lrs"] == [0.1] for e in evals)
  assert first_grid < len(evals) - 1
  # A crash one width into the wider grid's search: the resumed run rebuilds
  # the reused cells from the first grid's records and trains the rest.
  killed = tmp_path / "killed"
  killed.mkdir()
  (killed / "config.json").write_text((ref / "config.json").read_text())
  for e in evals[: first_grid + 1]:
    io.append_jsonl(killed / "evals.jsonl", e)
  sweep.run_sweep(_extending(), str(killed))
  drop = ("seconds", "bucket_seconds", "member_batches", "trained_seconds")
  strip = lambda recs: [{k: v for k, v in r.items() if k not in drop} for r in recs]  # noqa
  assert strip(io.read_jsonl(killed / "evals.jsonl")) == strip(evals)
  got, want = (io.read_jsonl(d / "points.jsonl") for d in (killed, ref))
  assert strip(got) == strip(want)


def test_report_width_fit_and_censored(tmp_path):
  # Synthetic points: width = 2 N^1.5 (params = 3 width + 1), one censored N.
  c = _tiny(**{"theory.enabled": False, "sweep.ns": (4, 8, 16, 32, 64, 128)})
  io.check_or_write_config(str(tmp_path), c.to_dict())
  recs = []
  for n in (4, 8, 16, 32, 64):
    w = int(round(2 * n**1.5))
    recs.append({
        "arm": "sinc",
        "n": n,
        "schemes": {
            "init1": {
                "min_width": w,
                "found": True,
                "lower_bound": w - 1,
                "param_count": 3 * w + 1,
                "best_lr": 0.1,
                "evaluations": {},
            }
        },
    })
  recs.append({
      "arm": "sinc",
      "n": 128,
      "schemes": {
          "init1": {
              "min_width": None,
              "found": False,
              "lower_bound": 64,
              "param_count": None,
              "best_lr": None,
              "evaluations": {},
          }
      },
  })
  for r in recs:
    io.append_jsonl(tmp_path / "points.jsonl", r)
  rep = sweep_report.write_report(c, str(tmp_path))
  (f,) = rep["fits"]
  assert f["points"] == 5 and f["censored"] == 1 and f["ci_meaningful"]
  np.testing.assert_allclose(f["b_width"], 1.5, atol=0.01)
  assert "ci_note" not in f
  text = sweep_report.format_report(rep)
  assert "b_width" in text and "1.50" in text
  md = (tmp_path / "table.md").read_text()
  assert "last hidden width ~ N^b_width" in md


def test_report_labels_an_interval_from_three_points(tmp_path):
  c = _tiny(**{"theory.enabled": False, "sweep.ns": (4, 8, 16)})
  io.check_or_write_config(str(tmp_path), c.to_dict())
  for n in (4, 8, 16):
    w = 3 * n
    io.append_jsonl(
        tmp_path / "points.jsonl",
        {
            "arm": "sinc",
            "n": n,
            "schemes": {
                "init1": {
                    "min_width": w,
                    "found": True,
                    "lower_bound": w - 1,
                    "param_count": 3 * w + 1,
                    "best_lr": 0.1,
                    "evaluations": {},
                }
            },
        },
    )
  (f,) = sweep_report.write_report(c, str(tmp_path))["fits"]
  assert f["points"] == 3 and not f["ci_meaningful"]
  assert "not a meaningful 95% interval" in f["ci_note"]
  assert "not a meaningful" in (tmp_path / "table.md").read_text()
  np.testing.assert_allclose(f["b_width"], 1.0, atol=1e-9)


@pytest.mark.slow  # three exact searches (~15 compilations each): 90-150 s on the shared CPU
def test_bucketed_sweep_finds_the_same_widths(tmp_path):
  # Two schemes whose bisections ask for different widths in one round: the
  # bucketed runs train them in one padded ensemble per bucket (ladder mode)
  # or per round (round mode). Few steps: gradient descent at lr 0.1 on this
  # curve is chaotic (the loss bounces), so float rounding (the padded sum)
  # grows to O(1) differences after ~20 steps; after 10 the runs agree to
  # ~1e-5 (measured), so the same widths must be found.
  base = {
      "theory.enabled": False,
      "sweep.ns": (6,),
      "schemes": ("lecun_normal", "init1"),
      "sweep.start": 2,
      "sweep.max_width": 32,
      "sweep.rel_precision": 0.0,
      "steps": 10,
      "chunk_steps": 10,
      "target": 3.0,
  }
  plain = sweep.run_sweep(_tiny(**base, **{"sweep.buckets": "off"}), str(tmp_path / "plain"))
  key = lambda rows: [
      (r["n"], r["scheme"], r["min_width"], r["param_count"], r["found"]) for r in rows  # noqa
  ]
  for mode in ("on", "round"):
    bucketed = sweep.run_sweep(_tiny(**base, **{"sweep.buckets": mode}), str(tmp_path / mode))
    assert key(bucketed["rows"]) == key(plain["rows"]), mode
    evals = io.read_jsonl(tmp_path / mode / "evals.jsonl")
    assert all(e["bucket"] >= e["width"] for e in evals)
    # Fewer ensembles than widths: some round trained two widths in one bucket.
    ensembles = {(e["n"], e["bucket"], e["bucket_seconds"]) for e in evals}
    assert len(ensembles) < len(evals), mode
    # Same parameter count as an unpadded net of that width (3 w + 1 here).
    assert all(e["param_count"] == 3 * e["width"] + 1 for e in evals)


def test_bucket_modes():
  def mode(value, **extra):
    return sweep.bucket_mode(_tiny(**{"sweep.buckets": value, **extra}))

  assert [mode(v) for v in ("on", "off", "round")] == ["ladder", "off", "round"]
  assert mode("auto") == ("round" if jax.default_backend() == "cpu" else "ladder")
  with pytest.raises(ValueError, match="'on', 'off', 'round' or 'auto'"):
    mode("sometimes")
  # Round mode: the small widths of a round in one program, large ones alone.
  assert sweep._round_groups([300, 16, 40, 1024], merge_max=256) == {
      40: [1, 2],
      300: [0],
      1024: [3],
  }


def test_achieved_model_flops_against_the_peak(tmp_path):
  # Two evaluations on an H200: 3e12 FLOPs in 2 s at TF32 (JAX's GPU default).
  for flops, seconds in ((1e12, 0.5), (2e12, 1.5)):
    io.append_jsonl(
        tmp_path / "evals.jsonl",
        {"model_flops": flops, "seconds": seconds, "device": "NVIDIA H200"},
    )
  io.append_jsonl(tmp_path / "evals.jsonl", {"seconds": 9.0})  # older record: not counted
  speed = sweep_report.achieved_flops(str(tmp_path))
  assert speed["flops_per_s"] == pytest.approx(1.5e12)
  assert speed["peak_flops_per_s"] == pytest.approx(989e12 / 2)  # dense TF32
  assert sweep_report.achieved_flops(str(tmp_path), "highest")["peak_flops_per_s"] == pytest.approx(
      67e12
  )
  assert sweep_report.achieved_flops(str(tmp_path / "none")) is None


def test_width_record_counts_useful_flops():
  c = _tiny()
  rows = [
      {
          "reached_target": True,
          "steps_to_target": 50,
          "best_psnr": 30.0,
          "diverged": False,
          "steps_trained": 50,
      },
  ]
  rec = sweep._width_record(c, "sinc", 10, 8, ("init1",), rows, 25, 1.0, "psnr")
  assert rec["model_flops"] == 6 * 10 * 25 * 50  # points x params x steps, 6 FLOPs each
  assert rec["device"] == jax.devices()[0].device_kind


def test_width_record_merges_reused_cells_in_grid_order():
  c = _tiny(**{"lrs": (0.01, 0.03, 0.1), "seeds": (0, 1), "schemes": ("init1", "lecun_normal")})
  row = lambda reached, steps, psnr: {  # noqa: E731
      "reached_target": reached,
      "steps_to_target": steps if reached else None,
      "best_psnr": psnr,
      "diverged": False,
      "steps_trained": steps,
  }
  # init1 at 0.03 was trained on an earlier grid: only its 0.01 and 0.1 train now.
  known = {
      ("init1", 0.03): {
          "reached": [True, True],
          "steps_to_target": [20, 30],
          "best_psnr": [31.0, 32.0],
          "diverged": [False, False],
      }
  }
  assert sweep.reusable(c, ("init1", "lecun_normal"), known) == known
  trained = sweep._members(c, ("init1", "lecun_normal"), known)
  assert [(m.scheme, m.seed, m.lr) for m in trained[:4]] == [
      ("init1", 0, 0.01),
      ("init1", 0, 0.1),
      ("init1", 1, 0.01),
      ("init1", 1, 0.1),
  ]
  assert len(trained) == 4 + 6
  rows = [row(False, 100, 10.0)] * 4 + [row(m.lr == 0.1, 80, 35.0) for m in trained[4:]]
  rec = sweep._width_record(
      c, "sinc", 10, 8, ("init1", "lecun_normal"), rows, 25, 1.0, "psnr", known
  )
  init1, lecun = rec["schemes"]["init1"], rec["schemes"]["lecun_normal"]
  # [seed, lr] over the whole grid, the reused column in its place.
  assert init1["reached"] == [[False, True, False], [False, True, False]]
  assert init1["steps_to_target"] == [[-1, 20, -1], [-1, 30, -1]]
  assert init1["best_psnr"] == [[10.0, 31.0, 10.0], [10.0, 32.0, 10.0]]
  assert init1["success"] and init1["best_lr"] == 0.03
  assert lecun["reached"] == [[False, False, True]] * 2 and lecun["best_lr"] == 0.1
  assert rec["reused"] == {"init1": [0.03]}
  assert rec["model_flops"] == 6 * 10 * 25 * (4 * 100 + 6 * 80)  # trained members only
  with pytest.raises(ValueError, match="rows for 10 trained members"):
    sweep._width_record(
        c, "sinc", 10, 8, ("init1", "lecun_normal"), rows[:3], 25, 1.0, "psnr", known
    )
  # A request whose every cell is known trains afresh instead of recording nothing trained.
  assert sweep.reusable(_tiny(**{"lrs": (0.03,)}), ("init1",), known) == {}


def _censored_point(psnr, diverged, grid=(0.03, 0.1)):
  """A scheme that failed at widths 8 and 16 (max_width), and its width records."""
  result = scaling.SearchResult(
      width=None, found=False, lower_bound=16, evaluations={8: False, 16: False}, rounds=2
  )
  recs = [
      {
          "width": w,
          "schemes": {
              "s": {
                  "success": False,
                  "best_lr": grid[0],
                  "reached": [[False] * len(grid)],
                  "best_psnr": [list(psnr)],
                  "diverged": [list(diverged)],
              }
          },
      }
      for w in (8, 16)
  ]
  return {"s": result}, recs


@pytest.mark.parametrize(
    "psnr, diverged, want",
    [
        # Every rate diverged at the widest width: ask for a lower rate.
        ((3.0, 2.0), (True, True), (0.01, 0.03, 0.1)),
        # The best score at the top rate, not diverged: ask for a higher one.
        ((5.0, 27.5), (False, False), (0.03, 0.1, 0.3)),
        # The top rate diverged, the best is the lower end: ask below it.
        ((20.0, 4.0), (False, True), (0.01, 0.03, 0.1)),
    ],
)
def test_a_censored_scheme_extends_the_grid(psnr, diverged, want):
  # Measured in docs/results/shallow_quick_cpu: Xavier sinc at N = 20 failed at
  # every width up to 1024 with its best score at the top rate 0.1 and, being
  # censored, never extended the grid; with the extension it reaches 35 dB at
  # width 1024, rate 0.3.
  grid = (0.03, 0.1)
  results, recs = _censored_point(psnr, diverged, grid)
  assert sweep._lr_outcomes(results, recs, grid) == []  # the former rule, kept for old workdirs
  outcomes = sweep._lr_outcomes(results, recs, grid, censored=True)
  assert scaling.extend_lr_grid(grid, outcomes) == want


def test_a_censored_scheme_with_an_interior_best_keeps_the_grid():
  grid = (0.03, 0.1, 0.3)
  results, recs = _censored_point((10.0, 20.0, 5.0), (False, False, True), grid)
  outcomes = sweep._lr_outcomes(results, recs, grid, censored=True)
  assert scaling.extend_lr_grid(grid, outcomes) is None


def test_censored_extension_is_legacy_off():
  # A workdir written before lr_censored existed ran without it.
  assert sweep_report.config_rules()["defaults"]["sweep"]["lr_censored"] is False
  assert scaling_shallow.get_config().sweep.lr_censored is True


def test_quick_and_tiny_cannot_be_combined():
  # Both were applied: a mixture (tiny's widths and steps, quick's theory.max_n = 50 and
  # rel_precision 0.25), without a word.
  with pytest.raises(ValueError, match="presets quick and tiny cannot be combined"):
    scaling_shallow.get_config("quick,tiny")
  assert scaling_shallow.get_config("tiny,sphere,range_psnr").data_range == 2.0


def test_report_flags_a_best_rate_the_final_grid_does_not_bracket(tmp_path):
  # One rate and no extension: the best rate is both ends of the final grid.
  c = _tiny(**{"theory.enabled": False, "sweep.ns": (6,), "sweep.lr_extensions": 0})
  report = sweep.run_sweep(c, str(tmp_path))
  (row,) = report["rows"]
  assert row["found"] and row["lr_edge"] is True
  assert "1 row(s) with `lr_edge` True" in (tmp_path / "table.md").read_text()
  # An interior best rate is bracketed.
  (p,) = io.read_jsonl(tmp_path / "points.jsonl")
  p["lrs"] = [0.03, 0.1, 0.3]
  assert sweep_report.lr_edges(str(tmp_path), [p], c.lrs) == {("sinc", 6, "init1"): False}


def test_report_states_the_data_range_of_its_psnr(tmp_path):
  # 35 dB over range 1 and 35 dB over the curve's range 4.46 differ 19.9x in MSE.
  c = _tiny(**{"theory.enabled": False, "sweep.ns": (6,), "data_range": 2.0})
  sweep.run_sweep(c, str(tmp_path))
  assert "target 20 dB (PSNR over data range 2)" in (tmp_path / "table.md").read_text()
