"""Experiment configs, by name: ``get("image", "quick")``.

Each module here is one experiment with ``get_config(arg=None)``; ``arg`` picks a
preset and overrides, e.g. ``"quick"`` or ``"quick,steps=50"``. In a checkout this
package is the top-level ``configs`` (``--config=configs/image.py:quick``); an installed
wheel ships the same files as ``nfscale.configs`` (``--config=image:quick`` works in
both).

>>> from nfscale import configs
>>> "image" in configs.names()
True
>>> c = configs.get("image", "quick,steps=20")
>>> c.task, c.steps
('image', 20)
"""

from __future__ import annotations

import importlib
import os
from typing import Any


def names() -> list[str]:
  """Names of the bundled experiment configs (the modules of this package)."""
  here = os.path.dirname(os.path.abspath(__file__))
  return sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))


def path(name: str) -> str:
  """The file of config ``name``.

  Raises:
    ValueError: ``name`` is not a bundled config (the message lists the valid ones).
  """
  if name not in names():
    raise ValueError(
        f"Unknown config {name!r}; valid configs: {', '.join(names())} "
        "(or a path to a config file)."
    )
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")


def get(name: str, arg: str | None = None) -> Any:
  """Builds config ``name`` with preset/overrides ``arg``.

  Args:
    name: a bundled config (see :func:`names`); ``"image:quick"`` also works.
    arg: the preset and overrides, e.g. ``"quick"`` or ``"quick,size=48"``.

  Returns:
    The locked ``ml_collections.ConfigDict``.

  Raises:
    ValueError: unknown config name, preset or override (the message lists the valid
      ones).
  """
  if arg is None and ":" in name:
    name, arg = name.split(":", 1)
  path(name)  # validates the name
  module = importlib.import_module(f"{__name__}.{name}")
  return module.get_config(arg)
