"""The deep sweep's quick preset: its first point, test-sized, end to end."""

import pathlib
import sys

import pytest

from nfscale import io, sweep

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import scaling_deep  # noqa: E402


def test_presets_compose_and_refuse_nonsense():
  quick = scaling_deep.get_config("quick")
  assert quick.optimizer == "adam" and tuple(quick.sweep.hidden_prefix) == (16, 16, 16)
  assert len(quick.sweep.ns) >= 5  # enough points for a meaningful interval
  assert quick.arms.sinc.activation_params.fast
  wide_gd = scaling_deep.get_config("quick,wide,gd")
  assert wide_gd.optimizer == "sgd" and tuple(wide_gd.sweep.hidden_prefix) == (64, 64, 64)
  paper = scaling_deep.get_config()
  assert paper.optimizer == "sgd" and tuple(paper.sweep.hidden_prefix) == (64, 64, 64)
  assert not paper.arms.sinc.activation_params.get("fast", False)
  with pytest.raises(ValueError, match="modify 'quick'"):
    scaling_deep.get_config("wide")
  # Each pair picks one setting two ways: quick applied one, so quick,adam,gd ran gradient
  # descent and quick,narrow,wide the wide prefix, without a word.
  for arg, pair in (
      ("quick,adam,gd", "'adam' and 'gd'"),
      ("quick,narrow,wide", "'narrow' and 'wide'"),
  ):
    with pytest.raises(ValueError, match=f"presets {pair} cannot be combined"):
      scaling_deep.get_config(arg)


def test_first_point_of_the_quick_preset(tmp_path):
  c = scaling_deep.get_config("quick")
  with c.unlocked():
    # Test-sized: the first N of the preset, two schemes, a short budget.
    c.sweep.arms = ("sinc",)
    c.sweep.ns = c.sweep.ns[:1]
    c.schemes = ("init2", "lecun_normal")
    c.steps = 300
    c.sweep.max_width = 64
    c.theory.max_width = 32  # the condition search dominated the time: 512 took 60 s more
  report = sweep.run_sweep(c, str(tmp_path))
  assert report["points"] == report["expected_points"] == 1
  (point,) = io.read_jsonl(tmp_path / "points.jsonl")
  assert point["n"] == 256
  for scheme, r in point["schemes"].items():
    if r["found"]:
      w = r["min_width"]
      # (2 -> 16 -> 16 -> 16 -> w -> 3): 595 fixed parameters, 20 per last unit.
      assert r["param_count"] == 595 + 20 * w, scheme
      assert r["lower_bound"] is None or r["lower_bound"] < w
    else:
      assert r["lower_bound"] == 64
    assert "theory" in r  # eq. 4.6 at N = 256, both readings
  assert any(r["found"] for r in point["schemes"].values())
  evals = io.read_jsonl(tmp_path / "evals.jsonl")
  assert all(e["member_batches"] for e in evals)
  assert "figure_width.png" in report["artifacts"]
  assert report["model_flops"]["flops_per_s"] > 0
  assert "model FLOP/s" in (tmp_path / "table.md").read_text()
