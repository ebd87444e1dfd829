"""The paper-style scaling figure: both arms per panel, normal/uniform panels, PNG and PDF."""

import pytest

from nfscale import plots


def _points():
  pts = []
  for arm, k in (("sinc", 1.5), ("relu_pe", 2.0)):
    for n in (10, 20, 40, 80):
      schemes = {}
      for sc in ("lecun_normal", "init1", "lecun_uniform", "init2"):
        w = int(2 * n**k)
        censored = arm == "relu_pe" and n == 80
        schemes[sc] = {
            "found": not censored,
            "min_width": None if censored else w,
            "param_count": None if censored else 3 * w + 1,
            "lower_bound": 4096 if censored else w - 1,
            "lower_bound_params": 12289 if censored else None,
        }
      pts.append({"arm": arm, "n": n, "schemes": schemes})
  return pts


def test_writes_png_and_pdf(tmp_path):
  fits = [
      {"arm": a, "scheme": s, "a_width": 2.0, "b_width": k, "a": 6.0, "b": k}
      for a, k in (("sinc", 1.5), ("relu_pe", 2.0))
      for s in ("lecun_normal", "init1", "lecun_uniform", "init2")
  ]
  for quantity in ("min_width", "param_count"):
    paths = plots.scaling_figure(
        _points(),
        ["sinc", "relu_pe"],
        ["lecun_normal", "init1", "lecun_uniform", "init2"],
        fits,
        str(tmp_path / quantity),
        quantity=quantity,
    )
    assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "pdf"]
    assert open(paths[0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert open(paths[1], "rb").read(5) == b"%PDF-"


def test_empty_and_bad_quantity(tmp_path):
  # Nothing finished yet: still a figure, with a note.
  paths = plots.scaling_figure([], ["sinc"], ["init1"], [], str(tmp_path / "empty"))
  assert len(paths) == 2
  with pytest.raises(ValueError, match="quantity must be"):
    plots.scaling_figure([], ["sinc"], ["init1"], [], str(tmp_path / "x"), quantity="width")
