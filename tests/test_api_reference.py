"""docs/api.md is what docs/make_api.py writes from the code: regenerate it after an API change."""

import importlib.util
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
PAGE = ROOT / "docs" / "api.md"


@pytest.fixture(scope="module")
def make_api():
  spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def page(make_api):
  return make_api.render()


def test_committed_page_is_current(page, make_api):
  assert page == PAGE.read_text(), (
      f"docs/api.md is out of date with the code; regenerate it with `{make_api.COMMAND}` "
      "and commit the result."
  )


def test_page_documents_the_main_entry_points(page):
  assert "get_scheme(name: str | Scheme, **hparams: Any) -> Scheme" in page
  field = page.split("#### `NeuralField`", 1)[1].split("#### ", 1)[0]
  assert "NeuralField(\n    hidden: tuple[int, ...],\n    out_dim: int," in field
  assert "parent" not in field  # Linen's own fields are left out
  assert "- method `__call__(x: Array" in field
  for name in (
      "fit",
      "init_members",
      "Member",
      "run",
      "load",
      "min_width_search",
      "fit_power_law",
      "condition_width",
      "run_sweep",
      "psnr",
      "get",
  ):
    assert f"\n#### `{name}`\n" in page, name
  assert "[`nfscale.configs`](#nfscaleconfigs)" in page
  assert "[nfscale/models.py](../nfscale/models.py)" in page


def test_page_is_machine_independent_and_public_only(page):
  assert not re.search(r"0x[0-9a-fA-F]{6,}", page)  # no memory addresses
  assert str(ROOT) not in page
  assert not re.search(r"(^|[\s(\[`'\"])/[A-Za-z]", page)  # no absolute path
  headings = re.findall(r"^#### `(\w+)`$", page, flags=re.M)
  assert len(headings) > 100
  assert [h for h in headings if h.startswith("_")] == []
  # No private name in a signature, value or summary (``__call__`` is a public method).
  assert re.findall(r"(?<![\w.])_[A-Za-z]\w*", page.replace("__call__", "")) == []
  assert "```python" not in page  # tests/test_readme.py would execute it
