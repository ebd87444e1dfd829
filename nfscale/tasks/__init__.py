"""Task registry: a task is one module that registers a ``build(config) -> Task``.

Built-in tasks live in ``nfscale/tasks/<name>.py`` and are imported only when
needed. A task of your own lives in your own package and registers the same
way; the config names that module in ``config.task_module`` so that every
command (training, resuming, ``nfscale.load``, eval mode) imports it before
the lookup::

    # mypkg/mytask.py
    from nfscale.tasks import base, register_task

    @register_task("mytask", num_samples_key="data.num_points")
    def build(config) -> base.Task:
      ...

    # its config: c.task = "mytask"; c.task_module = "mypkg.mytask"

``num_samples_key`` is the dotted config key that sets the number of
training samples N; sweeps rebuild the task at other N through it.

Example:
  >>> "image" in list_tasks()
  True
  >>> num_samples_key("curve1d")
  'data.num_points'
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, NamedTuple

from nfscale.tasks.base import Metric, Score, Task, psnr_score

__all__ = [
    "Metric",
    "Score",
    "Task",
    "psnr_score",
    "register_task",
    "build_task",
    "list_tasks",
    "num_samples_key",
    "import_task_module",
]

BuildFn = Callable[[Any], Task]

# Modules of this package that are not tasks.
_NOT_TASKS = frozenset({"base"})


class _Entry(NamedTuple):
  build: BuildFn
  num_samples_key: str | None
  module: str


_REGISTRY: dict[str, _Entry] = {}


def register_task(name: str, *, num_samples_key: str | None = None) -> Callable[[BuildFn], BuildFn]:
  """Decorator registering ``build(config) -> Task`` under ``name``.

  Args:
    name: the task name (``config.task``).
    num_samples_key: dotted config key setting the number of training
      samples N (e.g. ``"data.num_points"``); ``None`` if N is fixed (such a
      task cannot be swept over N).

  Returns:
    The decorator; it returns ``build`` unchanged.

  Raises:
    ValueError: ``name`` is already taken by a build function of another
      module (re-importing the same module is fine).
  """
  if not name or not isinstance(name, str):
    raise ValueError(f"task name must be a non-empty string, got {name!r}.")

  def decorator(build: BuildFn) -> BuildFn:
    old = _REGISTRY.get(name)
    module = getattr(build, "__module__", "?")
    if old is not None and old.module != module:
      raise ValueError(f"task {name!r} is already registered by module {old.module!r}.")
    _REGISTRY[name] = _Entry(build, num_samples_key, module)
    return build

  return decorator


def _builtin_modules() -> list[str]:
  return sorted(
      m.name
      for m in pkgutil.iter_modules(__path__)
      if not m.name.startswith("_") and m.name not in _NOT_TASKS
  )


def import_task_module(module: str) -> None:
  """Imports a user's task module (``config.task_module``) so its tasks register.

  Raises:
    ValueError: the module cannot be imported (the message names it).
  """
  if not module:
    return
  try:
    importlib.import_module(module)
  except ImportError as e:
    raise ValueError(
        f"config.task_module={module!r} cannot be imported ({e}); it must be "
        "an importable module (on sys.path / PYTHONPATH)."
    ) from e


def _entry(name: str, task_module: str = "") -> _Entry:
  import_task_module(task_module)
  if name not in _REGISTRY and name in _builtin_modules():
    importlib.import_module(f"{__name__}.{name}")
  if name not in _REGISTRY:
    raise ValueError(
        f"Unknown task {name!r}; valid tasks: {', '.join(list_tasks())} "
        "(a task of your own: set config.task_module to the module that "
        "registers it)."
    )
  return _REGISTRY[name]


def list_tasks() -> list[str]:
  """Names of all built-in tasks and of every task registered so far."""
  for m in _builtin_modules():
    importlib.import_module(f"{__name__}.{m}")
  return sorted(_REGISTRY)


def num_samples_key(name: str, task_module: str = "") -> str:
  """The dotted config key that sets task ``name``'s sample count N.

  Raises:
    ValueError: unknown task, or a task registered without one.
  """
  key = _entry(name, task_module).num_samples_key
  if key is None:
    raise ValueError(
        f"task {name!r} has no num_samples_key: it cannot be rebuilt at another "
        "sample count (register it with register_task(..., num_samples_key=...))."
    )
  return key


def build_task(config: Any) -> Task:
  """Builds the task ``config.task`` (after importing ``config.task_module``).

  Raises:
    ValueError: unknown task name (the message lists the valid ones), or
      invalid task settings.
  """
  entry = _entry(str(config.task), str(config.get("task_module", "") or ""))
  task = entry.build(config)
  if not isinstance(task, Task):
    raise ValueError(
        f"task {config.task!r}: build() returned {type(task).__name__}, not nfscale.tasks.Task."
    )
  return task
