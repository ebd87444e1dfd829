"""docs/notebooks/quickstart.ipynb runs top to bottom and shows its figures.

Slow (the notebook trains for real, kept tiny: under 3 minutes on an idle 2-core CPU);
`make test` runs it in its `test-packaging` step.
"""

import pathlib
import time

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = pathlib.Path(__file__).parents[1] / "docs" / "notebooks" / "quickstart.ipynb"


def _pngs(cell):
  return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # The committed notebook carries no stale outputs.
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
  client = nbclient.NotebookClient(
      nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  )
  start = time.perf_counter()
  client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
  seconds = time.perf_counter() - start
  code = [c for c in nb.cells if c.cell_type == "code"]
  errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
  assert not errors
  by_source = lambda text: next(c for c in code if text in c.source)  # noqa: E731
  assert _pngs(by_source('results["artifacts"]')) >= 2  # PSNR curves + reconstructions
  assert _pngs(by_source("nfscale.load(")) == 1  # the 2x rendering
  assert _pngs(by_source("run_sweep(")) == 1  # the scaling plot
  assert "init1:" in "".join(o.get("text", "") for o in by_source("MyField(").outputs)
  print(f"notebook executed in {seconds:.0f} s")
