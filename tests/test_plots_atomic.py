"""plots.save_figure writes figures with io's atomic, durable write; report plots never fail on empty data."""

import os
import pathlib
import subprocess
import sys

from matplotlib import figure as mpl_figure
import matplotlib.pyplot as plt
import pytest

from nfscale import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fig():
  fig, ax = plots.subplots(figsize=(3, 2))
  ax.plot([0, 1], [1, 2])
  return fig


def test_save_is_durable_and_leaves_no_temp(tmp_path, monkeypatch):
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
  path = tmp_path / "a.png"
  assert plots.save_figure(_fig(), str(path)) == str(path)
  assert path.read_bytes().startswith(PNG_MAGIC)
  assert synced, "the PNG must be fsynced before it is renamed into place"
  assert os.listdir(tmp_path) == ["a.png"]
  assert plt.get_fignums() == []


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
  path = tmp_path / "a.png"
  plots.save_figure(_fig(), str(path))
  old = path.read_bytes()

  def fail(*args):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    plots.save_figure(_fig(), str(path))
  assert path.read_bytes() == old
  assert os.listdir(tmp_path) == ["a.png"]
  assert plt.get_fignums() == []


def test_failed_render_writes_nothing(tmp_path, monkeypatch):
  fig = _fig()

  def fail(*args, **kwargs):
    raise RuntimeError("cannot render")

  monkeypatch.setattr(fig, "savefig", fail)
  with pytest.raises(RuntimeError, match="cannot render"):
    plots.save_figure(fig, str(tmp_path / "a.png"))
  assert os.listdir(tmp_path) == []
  assert plt.get_fignums() == []


def test_scaling_plots_draw_empty_and_censored_panels(tmp_path):
  censored = {
      "found": False,
      "param_count": None,
      "min_width": None,
      "lower_bound": 64,
      "lower_bound_params": 193,
  }
  points = [{"arm": "sinc", "n": n, "schemes": {"init1": dict(censored)}} for n in (6, 10)]
  fits = [{"arm": "sinc", "scheme": "init1", "note": "no fit: no N reached the target"}]
  for pts in (points, []):  # only lower bounds; nothing at all
    for f in (
        lambda p: plots.scaling_curves(pts, ["sinc", "relu"], ["init1"], fits, p),
        lambda p: plots.theory_widths(pts, ["sinc", "relu"], ["init1"], p),
    ):
      path = tmp_path / "p.png"
      f(str(path))  # "Data cannot be log-scaled" before the fix
      assert path.read_bytes().startswith(PNG_MAGIC)
      path.unlink()


def test_report_figures_are_the_same_file_when_redrawn(tmp_path, monkeypatch):
  # A finished sweep's rerun rewrote figure_*.pdf with new bytes (a creation date; SVG
  # ids are random too): the same records now give the same files.
  def draw():
    fig = mpl_figure.Figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    paths = plots._save_formats(fig, str(tmp_path / "f"), ["pdf", "svg", "png"])
    return [pathlib.Path(p).read_bytes() for p in paths]

  monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # matplotlib's clock for its dates
  first = draw()
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000000000")
  assert draw() == first


def test_figures_bypass_pyplot_and_keep_the_users_backend(tmp_path):
  # A notebook's inline backend must survive importing nfscale, and figures
  # must not pile up in pyplot's global registry.
  plots.psnr_curves(
      [{"step": 0, "score": [1.0]}, {"step": 1, "score": [2.0]}], ["a"], str(tmp_path / "c.png")
  )
  assert plt.get_fignums() == []
  code = (
      "import matplotlib; matplotlib.use('svg'); import nfscale.plots; "
      "print(matplotlib.get_backend())"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "svg"
