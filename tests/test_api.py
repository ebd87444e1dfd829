"""The public API of `import nfscale`: signatures annotated, docstrings with Args and Returns."""

import inspect

import pytest

import nfscale

FUNCTIONS = [
    name
    for name in nfscale.__all__
    if name != "load" and inspect.isfunction(getattr(nfscale, name))
]


def test_the_exported_functions_are_found():
  assert {"get_scheme", "make_field", "param_count", "list_schemes"} <= set(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_exported_functions_are_annotated(name):
  # get_scheme(name, **hparams) and its siblings left their keyword parameters unannotated.
  sig = inspect.signature(getattr(nfscale, name))
  assert sig.return_annotation is not sig.empty, name
  assert [p.name for p in sig.parameters.values() if p.annotation is p.empty] == [], name


@pytest.mark.parametrize("name", FUNCTIONS)
def test_exported_functions_document_args_and_returns(name):
  fn = getattr(nfscale, name)
  doc = inspect.getdoc(fn) or ""
  if inspect.signature(fn).parameters:
    assert "Args:" in doc, name
  assert "Returns:" in doc, name
