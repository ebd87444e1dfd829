"""The Python examples of the README and the guide run exactly as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md"])
def test_python_blocks_run(doc, tmp_path, monkeypatch):
  text = (ROOT / doc).read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks, f"{doc} has no python example"
  monkeypatch.syspath_prepend(str(ROOT))  # `from configs import ...` as in a notebook
  for block in blocks:
    block = block.replace('"/tmp/run"', repr(str(tmp_path / "run")))
    exec(compile(block, doc, "exec"), {})
