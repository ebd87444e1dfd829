"""Tasks: one module each, turning a config into data, a model, a loss and an evaluation."""

from __future__ import annotations

import importlib
from typing import Any

from nfscale.tasks.base import Task

TASKS: tuple[str, ...] = ("curve1d", "image", "random_labels")


def build_task(config: Any) -> Task:
  """Builds ``config.task``.

  Raises:
    ValueError: unknown task name (the message lists the valid ones).
  """
  if config.task not in TASKS:
    raise ValueError(f"Unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}.")
  return importlib.import_module(f"nfscale.tasks.{config.task}").build(config)
