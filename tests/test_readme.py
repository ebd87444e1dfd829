"""The Python examples of the README and the docs run exactly as written."""

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from nfscale import initializers

ROOT = pathlib.Path(__file__).parents[1]


def _blocks(doc):
  text = (ROOT / doc).read_text()
  # Each block is padded with the newlines before it, so a failure names its line in the doc.
  # A block inside a list item is indented with it: dedent it as markdown does.
  blocks = [
      "\n" * text.count("\n", 0, m.start(1)) + textwrap.dedent(m.group(1))
      for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)
  ]
  assert blocks, f"{doc} has no python example"
  return blocks


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
  # Examples may register schemes; keep them out of other tests.
  monkeypatch.setattr(initializers, "_REGISTRY", dict(initializers._REGISTRY))


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md"])
def test_python_blocks_run(doc, tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(ROOT))  # a checkout: the repository root on the path
  for block in _blocks(doc):
    block = block.replace('"/tmp/run"', repr(str(tmp_path / "run")))
    exec(compile(block, doc, "exec"), {})


@pytest.mark.parametrize("doc", ["docs/initializers.md"])
def test_session_blocks_run(doc):
  """Pages whose blocks build on each other run in order in one namespace."""
  namespace = {}
  for block in _blocks(doc):
    exec(compile(block, doc, "exec"), namespace)
  assert "nfscale" in namespace


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md", "docs/initializers.md"])
def test_python_blocks_import_configs_as_installed(doc):
  # `from configs import image` works only with a checkout's root on the path: an installed
  # nfscale (pip, Colab) ships the configs as nfscale.configs.
  for block in _blocks(doc):
    assert not re.search(r"^\s*(from configs\b|import configs\b)", block, flags=re.M), block


def test_readme_spelling_works_after_a_plain_import():
  # The README writes nfscale.configs.get(...) and nfscale.experiment.run(...): after
  # `import nfscale` alone they raised AttributeError (only `from nfscale import experiment`
  # worked). A fresh interpreter, so that no other test has imported the submodules.
  code = (
      "import sys, nfscale\n"
      "assert 'nfscale.experiment' not in sys.modules  # import nfscale stays light\n"
      "assert nfscale.configs.get('image', 'quick').task == 'image'\n"
      "assert callable(nfscale.experiment.run) and callable(nfscale.train.descent_gradients)\n"
      "assert not hasattr(nfscale, 'no_such_module')\n"
  )
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent, timeout=300)
