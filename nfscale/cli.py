"""Command-line plumbing shared by the launchers (``launch/*.py``).

What a user of ``nfscale-train`` / ``python -m launch.train`` meets before any training:

* ``--config`` takes a file (``configs/image.py:quick``) or a bundled config's name
  (``image:quick``), so the same command works from a checkout and from a pip install.
* ``--help`` lists every bundled config with its presets, overrides and main keys.
* A bad flag, an unknown preset (``:quik``), an unknown key (``--config.stepz=5``), a value
  of the wrong type, or a ``ValueError`` raised by the run ends with a one-line
  ``Error: ...`` naming the key and the valid choices, then a pointer to ``--help``:
  no traceback and no page of flag help.

The config modules live in ``nfscale.configs`` when installed and in the top-level
``configs`` package of a checkout; :func:`config_package` finds whichever is importable.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import logging as std_logging
import os
import sys
from types import ModuleType
from typing import Any, Callable, NoReturn, Sequence

from absl import app, flags
from absl import logging as absl_logging

#: Keys shown per config in ``--help`` (where the config has them).
MAIN_KEYS = (
    "task",
    "data.name",
    "data.size",
    "model.hidden",
    "model.activation",
    "schemes",
    "seeds",
    "optimizer",
    "lrs",
    "steps",
    "target",
    "sweep.arms",
    "sweep.ns",
)
#: The last line of every usage error (FLAGS_HINT: of a launcher that takes no config).
HELP_HINT = "Run with --help for the configs, their presets and keys, and the flags."
FLAGS_HINT = "Run with --help for the flags."


class UsageError(ValueError):
  """A bad command line; printed as one line, without a traceback."""


def config_package() -> ModuleType:
  """The package holding the bundled configs: ``nfscale.configs`` or a checkout's ``configs``."""
  for name in ("nfscale.configs", "configs"):
    try:
      module = importlib.import_module(name)
    except ImportError:
      continue
    if hasattr(module, "names"):
      return module
  raise ImportError("No config package found (neither nfscale.configs nor configs).")


def resolve_config(spec: str) -> str:
  """Maps ``--config``'s value to a file spec: ``image:quick`` -> ``/.../image.py:quick``.

  A value whose file part ends in ``.py`` or is an existing file is left as it
  is; a directory of a bundled config's name (a workdir called ``image``) does
  not hide that config.

  Raises:
    UsageError: neither a file nor a bundled config name.
  """
  file_part, sep, arg = spec.partition(":")
  if file_part.endswith(".py") or os.path.isfile(file_part):
    return spec
  package = config_package()
  if file_part not in package.names():
    raise UsageError(
        f"--config={spec}: no config file or bundled config {file_part!r}; "
        f"bundled configs: {', '.join(package.names())}."
    )
  return package.path(file_part) + sep + arg


def load_config(spec: str) -> Any:
  """Loads ``file.py[:arg]`` (after :func:`resolve_config`) by calling its ``get_config``.

  Raises:
    UsageError: missing file, no ``get_config``, or a bad preset/argument.
  """
  path, _, arg = resolve_config(spec).partition(":")
  if not os.path.isfile(path):
    raise UsageError(f"--config={spec}: config file {path!r} does not exist.")
  if not path.endswith(".py"):
    raise UsageError(f"--config={spec}: {path!r} is not a Python config file (*.py).")
  module_spec = importlib.util.spec_from_file_location("_nfscale_cli_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise UsageError(f"--config={spec}: {path} defines no get_config(arg).")
  try:
    return module.get_config(arg or None)
  except ValueError as e:
    raise UsageError(f"--config={spec}: {e}") from None


def _leaves(config: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      out.update(_leaves(value, prefix + key + "."))
    out[prefix + key] = value
  return out


def _overrides(argv: Sequence[str]) -> list[tuple[str, str | None]]:
  """``(key, value or None)`` of every ``--config.key[=value]`` in ``argv``."""
  out = []
  for i, token in enumerate(argv):
    if token.startswith("--config."):
      key, eq, value = token[len("--config.") :].partition("=")
      if not eq:
        value = argv[i + 1] if i + 1 < len(argv) else None
      out.append((key, value))
  return out


#: Config groups named ``*_params`` (``optimizer_params``, ``model.activation_params``...)
#: hold the keyword arguments of an optimizer, schedule, scheme, activation or encoding:
#: their keys depend on that choice, so the command line may add keys to them or
#: replace a whole group with a dict literal.
OPEN_GROUP_SUFFIX = "_params"


def _node(config: Any, key: str) -> tuple[Any, str]:
  """``(parent group, last part)`` of a dotted key, or ``(None, last)`` off the config."""
  *parents, last = key.split(".")
  node = config
  for part in parents:
    if not hasattr(node, "items") or part not in node:
      return None, last
    node = node[part]
  return (node if hasattr(node, "items") else None), last


def _nullable(config: Any, key: str) -> bool:
  """Whether ``key`` may be ``None``: a placeholder field (``target``, ``diverge_factor``)."""
  import ml_collections  # pylint: disable=import-outside-toplevel

  parent, last = _node(config, key)
  fields = getattr(parent, "_fields", {})
  return last in fields and isinstance(fields[last], ml_collections.FieldReference)


class _FloatWords(ast.NodeTransformer):
  """Reads the bare words ``nan``, ``inf`` and ``infinity`` (any case) as floats."""

  def visit_Name(self, node: ast.Name) -> ast.AST:  # pylint: disable=invalid-name
    if node.id.lower() in ("nan", "inf", "infinity"):
      return ast.copy_location(ast.Constant(float(node.id)), node)
    return node


def _literal(text: str) -> Any:
  """A Python literal (``0.9``, ``True``, ``(1, 2)``, ``{'omega': 30.0}``), else the text.

  ``nan``, ``inf`` and ``-inf`` are floats, alone or inside a literal, as ml_collections
  reads them for a float key: ``--config.optimizer_params.b1=nan`` was the string 'nan',
  which the numeric checks could not see as a number.
  """
  try:
    return ast.literal_eval(text)
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    pass
  try:
    tree = _FloatWords().visit(ast.parse(text.strip(), mode="eval"))
    return ast.literal_eval(tree)
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    return text  # a word such as a scheme name: a string


def _is_word_list(current: Any, value: str) -> bool:
  """Whether ``value`` is ``a,b`` (not a literal) for a tuple-of-strings ``current``."""
  return (
      isinstance(current, tuple)
      and bool(current)
      and all(isinstance(v, str) for v in current)
      and "," in value
      and isinstance(_literal(value), str)
  )


def split_deferred(config: Any, argv: Sequence[str]) -> tuple[list[str], list[tuple[str, Any]]]:
  """Takes out of ``argv`` the overrides that ml_collections' flags cannot apply.

  They are: ``--config.KEY=None`` for a placeholder key (clears a target or a
  divergence factor), a comma-separated list of words for a tuple of strings
  (``--config.schemes=init1,init2``, which ml_collections would read as the single
  name ``'init1,init2'``), a new key in a ``*_params`` group
  (``--config.optimizer_params.momentum=0.9``), and a whole ``*_params`` group
  given as a dict literal (``--config.model.activation_params="{'omega': 30.0}"``).
  :func:`apply_deferred` applies them to the parsed config.

  Returns:
    ``(argv without them, [(key, value), ...])`` in command-line order.

  Raises:
    UsageError: a group given something other than a dict.
  """
  argv = list(argv)
  deferred, drop = [], set()
  for i, token in enumerate(argv):
    if not token.startswith("--config."):
      continue
    key, eq, value = token[len("--config.") :].partition("=")
    spaced = not eq and i + 1 < len(argv)
    if spaced:
      value = argv[i + 1]
    elif not eq:
      continue
    parent, last = _node(config, key)
    current = parent.get(last) if parent is not None else None
    group_name = key.rpartition(".")[0].rpartition(".")[2]
    if value == "None" and _nullable(config, key):
      deferred.append((key, None))
    elif _is_word_list(current, value):
      deferred.append((key, tuple(word.strip() for word in value.split(","))))
    elif hasattr(current, "items") and last.endswith(OPEN_GROUP_SUFFIX):
      parsed = _literal(value)
      if not isinstance(parsed, dict):
        raise UsageError(f"--config.{key}={value}: a group takes a dict, e.g. \"{{'k': 1.0}}\".")
      deferred.append((key, parsed))
    elif parent is not None and last not in parent and group_name.endswith(OPEN_GROUP_SUFFIX):
      deferred.append((key, _literal(value)))
    else:
      continue
    drop.update((i, i + 1) if spaced else (i,))
  return [a for i, a in enumerate(argv) if i not in drop], deferred


def apply_deferred(config: Any, deferred: Sequence[tuple[str, Any]]) -> None:
  """Applies :func:`split_deferred`'s overrides to the parsed ``config`` (in place)."""
  import ml_collections  # pylint: disable=import-outside-toplevel

  for key, value in deferred:
    parent, last = _node(config, key)
    with config.unlocked():
      parent[last] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value


def check_overrides(config: Any, argv: Sequence[str]) -> None:
  """Checks every ``--config.key=value`` against ``config``'s keys and scalar types.

  Raises:
    UsageError: an unknown key (with close matches and the valid keys at that level) or
      a value that does not parse as the key's type.
  """
  leaves = _leaves(config)
  for key, value in _overrides(argv):
    if key not in leaves:
      parent, _, _ = key.rpartition(".")
      if parent and parent not in leaves:
        groups = sorted(k for k, v in leaves.items() if hasattr(v, "items") and "." not in k)
        raise UsageError(
            f"--config.{key}: unknown config key; this config has no group {parent!r} "
            f"(its groups: {', '.join(groups)})."
        )
      level = sorted(k for k in leaves if k.rpartition(".")[0] == parent)
      close = difflib.get_close_matches(key, list(leaves), n=3)
      hint = f" Did you mean {' or '.join(close)}?" if close else ""
      raise UsageError(
          f"--config.{key}: unknown config key.{hint} Valid keys"
          f"{' under ' + parent if parent else ''}: {', '.join(level)}."
      )
    current = leaves[key]
    if value is None or current is None or isinstance(current, (tuple, list, dict)):
      continue
    if hasattr(current, "items"):
      raise UsageError(
          f"--config.{key}: is a group; set one of its keys: {', '.join(sorted(current))}."
      )
    if isinstance(current, bool):
      if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise UsageError(f"--config.{key}={value}: expected true or false.")
    elif isinstance(current, (int, float)):
      try:
        type(current)(float(value) if isinstance(current, float) else int(value))
      except ValueError:
        raise UsageError(
            f"--config.{key}={value}: expected a number of type "
            f"{type(current).__name__} (default {current!r})."
        ) from None


def _preset_help(module: ModuleType) -> str:
  """``presets: a, b; overrides: k=v`` for one config, read from its argument check."""
  try:
    module.get_config("?")
  except ValueError as e:
    presets = getattr(e, "presets", None)
    overrides = getattr(e, "overrides", None)
    if presets is not None:
      text = f"presets: {', '.join(presets) or '(none)'}"
      if overrides:
        text += "; overrides: " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
      return text
  return "presets: see the config file"


def catalog() -> str:
  """A ``--help`` section: each bundled config, its presets and its main keys."""
  package = config_package()
  lines = ["Configs (--config=NAME[:PRESET[,KEY=VALUE...]] or --config=path/to/file.py[:...]):"]
  for name in package.names():
    module = importlib.import_module(f"{package.__name__}.{name}")
    doc = (module.__doc__ or "").strip().splitlines()
    lines.append(f"  {name}: {doc[0] if doc else ''}")
    lines.append(f"    {_preset_help(module)}")
    try:
      leaves = _leaves(module.get_config(None))
    except ValueError:
      continue
    # A sweep's arms set each point's model: its own model.activation is unused.
    shown = [k for k in MAIN_KEYS if not ("sweep" in leaves and k == "model.activation")]
    keys = [f"{k}={leaves[k]!r}" for k in shown if k in leaves]
    lines.append("    main keys (--config.KEY=VALUE): " + ", ".join(keys))
  return "\n".join(lines)


def fail(message: str, code: int = 2, hint: str = HELP_HINT) -> NoReturn:
  """Prints ``Error: message`` (one line) and the ``--help`` hint to stderr; exits."""
  sys.stderr.write(f"Error: {' '.join(str(message).split())}\n{hint}\n")
  sys.exit(code)


def _print_help(doc: str, module_name: str, configs: bool) -> NoReturn:
  sys.stdout.write(doc.rstrip() + "\n\n" + (catalog() + "\n\n" if configs else "") + "Flags:\n")
  sys.stdout.write(flags.FLAGS.module_help(module_name) + "\n")
  sys.exit(0)


def make_flags_parser(
    doc: str, module_name: str, configs: bool = True
) -> Callable[[list[str]], list[str]]:
  """An ``app.run(flags_parser=...)`` that resolves, checks and reports as described above.

  ``configs``: the launcher takes ``--config`` (``--help`` then lists the configs)."""

  hint = HELP_HINT if configs else FLAGS_HINT

  def parse(argv: list[str]) -> list[str]:
    deferred: list[tuple[str, Any]] = []
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
      _print_help(doc, module_name, configs)
    argv = list(argv)
    for i, token in enumerate(argv):
      if token.startswith("--config="):
        spec = token[len("--config=") :]
      elif token == "--config" and i + 1 < len(argv):
        spec = argv[i + 1]
        argv[i : i + 2] = [f"--config={spec}", ""]
      else:
        continue
      try:
        argv[i] = "--config=" + resolve_config(spec)
        config = load_config(spec)
        argv, deferred = split_deferred(config, argv)
        check_overrides(config, argv)
      except UsageError as e:
        fail(str(e), hint=hint)
      break
    argv = [a for a in argv if a != ""]
    if deferred:
      # ml_collections' config flag reads its overrides from sys.argv itself.
      sys.argv[:] = argv
    try:
      rest = flags.FLAGS(argv)
    except flags.Error as e:
      fail(str(e), hint=hint)
    if deferred:
      apply_deferred(flags.FLAGS["config"].value, deferred)
    return rest

  return parse


def quiet_dependencies(record: std_logging.LogRecord) -> bool:
  """Log filter: drops the INFO lines of orbax, which logs dozens per checkpoint.

  Warnings and errors of every library pass, and so do nfscale's own INFO lines.
  """
  return record.levelno >= std_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def run(main: Callable[[list[str]], Any], doc: str, module_name: str, configs: bool = True) -> None:
  """``app.run(main)`` with this module's flag parsing; a ``ValueError`` from ``main`` is a
  one-line error too (the library's bad-input errors name the key and valid choices)."""

  def wrapped(argv: list[str]) -> Any:
    absl_logging.get_absl_handler().addFilter(quiet_dependencies)
    try:
      return main(argv)
    except (ValueError, app.UsageError) as e:
      fail(str(e), code=1, hint=HELP_HINT if configs else FLAGS_HINT)
    except MemoryError as e:
      # A size too large for this machine (data.num_points=10**12 asks NumPy for 7 TiB
      # while the task is built, before the workdir): no check can know the memory, so
      # it reads like any bad value instead of a traceback.
      fail(
          f"out of memory: {e} (is a size in the config too large?)",
          code=1,
          hint=HELP_HINT if configs else FLAGS_HINT,
      )
    except RuntimeError as e:
      # XLA's out-of-memory (a JaxRuntimeError): a width or batch too large for the
      # device. Any other runtime error keeps its traceback.
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      first = str(e).strip().splitlines()[0][:300]
      fail(
          f"out of device memory: {first} (is a size in the config too large for this "
          "device? A training run resumes from its last checkpoint.)",
          code=1,
          hint=HELP_HINT if configs else FLAGS_HINT,
      )
    except KeyboardInterrupt:
      # Checkpoints are whole or absent, so Ctrl-C needs no traceback, only the way on.
      sys.stderr.write("Interrupted. Run the same command again to resume.\n")
      sys.exit(130)

  app.run(wrapped, flags_parser=make_flags_parser(doc, module_name, configs))
