"""Writes docs/api.md, the API reference: public names, signatures and one-paragraph summaries.

Run from the repository root (a checkout: it documents the files next to it)::

  python docs/make_api.py           # rewrites docs/api.md
  python docs/make_api.py --check   # exit status 1 if docs/api.md is out of date

The page is built from the code alone, so it is the same on every machine: names in
source order, annotations and defaults as written in the source (never a ``repr`` with a
memory address), links to files relative to docs/ without line numbers (lines churn; the
page changes only when a signature, a docstring or the set of names does).
tests/test_api_reference.py fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import pathlib
import re
import sys
from typing import Any, ForwardRef

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
COMMAND = "python docs/make_api.py"


@dataclasses.dataclass(frozen=True)
class Section:
  """One module of the page.

  Attributes:
    module: the name a user imports (``nfscale.configs`` is ``configs/`` in a checkout).
    source: its file, relative to the repository root.
    names: the names to document, in this order; ``None``: every public name the module
      defines (or lists in ``__all__``), in source order.
    skip: public names left out (internals of the experiment stack).
  """

  module: str
  source: str
  names: tuple[str, ...] | None = None
  skip: tuple[str, ...] = ()


# (group title, sections). The modules a user of the library imports; the rest of the
# experiment stack is described by README.md's module table and its docstrings.
GROUPS: tuple[tuple[str, tuple[Section, ...]], ...] = (
    (
        "The library: initializers, layers, fields, metrics",
        (
            Section("nfscale.initializers", "nfscale/initializers.py"),
            Section("nfscale.activations", "nfscale/activations.py"),
            Section("nfscale.encodings", "nfscale/encodings.py"),
            Section("nfscale.layers", "nfscale/layers.py"),
            Section("nfscale.models", "nfscale/models.py"),
            Section("nfscale.metrics", "nfscale/metrics.py"),
            Section("nfscale.fastmath", "nfscale/fastmath.py"),
        ),
    ),
    (
        "Training and experiments",
        (
            Section(
                "nfscale.train",
                "nfscale/train.py",
                skip=(
                    "complex_as_real_tx",
                    "descent_gradients",
                    "remat_loss",
                    "CPU_COMPILER_OPTIONS",
                    "chunk_compiler_options",
                ),
            ),
            Section(
                "nfscale.experiment",
                "nfscale/experiment.py",
                names=(
                    "run",
                    "load",
                    "Loaded",
                    "rerender",
                    "format_table",
                    "validate",
                    "members_from_config",
                    "summarize",
                    "Trained",
                    "MODES",
                    "METRICS_FILE",
                    "RESULTS_FILE",
                ),
            ),
            Section("nfscale.checkpoint", "nfscale/checkpoint.py"),
            Section("nfscale.configs", "configs/__init__.py"),
        ),
    ),
    (
        "Scaling laws and theory",
        (
            Section("nfscale.scaling", "nfscale/scaling.py"),
            Section("nfscale.theory", "nfscale/theory.py"),
            Section(
                "nfscale.sweep",
                "nfscale/sweep.py",
                names=(
                    "run_sweep",
                    "validate_sweep",
                    "run_point",
                    "point_config",
                    "training_config",
                    "success",
                    "theory_widths",
                    "parse_host",
                    "EVALS_FILE",
                    "COMPILE_CACHE_DIR",
                ),
            ),
            Section(
                "nfscale.sweep_report",
                "nfscale/sweep_report.py",
                names=("write_report", "format_report", "read_points", "sweep_points"),
            ),
            Section("nfscale.tables", "nfscale/tables.py"),
        ),
    ),
)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LINEN_FIELDS = ("parent", "name")  # every flax.linen Module has them


def _import(section: Section) -> Any:
  """The section's module, as defined by this checkout's file."""
  # In a checkout nfscale.configs is the top-level configs/ package (setup.py maps it in a
  # wheel): import the checkout's file, whatever an installed nfscale would resolve.
  name = "configs" if section.module == "nfscale.configs" else section.module
  module = importlib.import_module(name)
  if pathlib.Path(module.__file__).resolve() != ROOT / section.source:
    raise RuntimeError(
        f"{section.module} was imported from {module.__file__}, not from this checkout's "
        f"{section.source}: run `{COMMAND}` from the checkout (PYTHONPATH=.)."
    )
  return module


def _text(s: str) -> str:
  """Docstring text as markdown: Sphinx roles become code spans."""
  return _ROLE.sub(r"`\1`", s)


def _first_paragraph(doc: str | None) -> str:
  if not doc:
    return ""
  para = inspect.cleandoc(doc).split("\n\n", 1)[0]
  return _text(" ".join(line.strip() for line in para.splitlines()))


def _first_line(doc: str | None) -> str:
  return _text(inspect.cleandoc(doc).splitlines()[0]) if doc else ""


def _first_sentence(text: str) -> str:
  m = re.match(r"(.+?[a-z)`]\.)(\s+[A-Z`(]|$)", text)
  return m.group(1) if m else text


def _sanitize(text: str) -> str:
  """A value's text without memory addresses or this machine's paths."""
  text = _ADDRESS.sub("", text)
  return text.replace(str(ROOT) + "/", "").replace(str(ROOT), ".")


def _squash(text: str) -> str:
  return re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")")


def _annotation(a: Any) -> str:
  if isinstance(a, str):
    return a
  if isinstance(a, ForwardRef):
    return a.__forward_arg__
  if isinstance(a, type):
    return a.__name__ if a.__module__ == "builtins" else f"{a.__module__}.{a.__qualname__}"
  return _sanitize(repr(a)).replace("typing.", "")


def _value(v: Any) -> str:
  """A runtime value's text: no addresses, no paths, sets in sorted order."""
  if inspect.isfunction(v) or inspect.isclass(v):
    return f"{v.__module__}.{v.__qualname__}"
  if isinstance(v, (set, frozenset)):
    items = ", ".join(sorted(_value(x) for x in v))
    return f"{type(v).__name__}({{{items}}})" if v else f"{type(v).__name__}()"
  return _sanitize(repr(v))


@functools.lru_cache(maxsize=None)
def _lines(source: str) -> list[str]:
  return source.splitlines(keepends=True)


def _segment(source: str, node: ast.AST) -> str:
  """The source text of ``node`` (``ast.get_source_segment`` splits the file every call)."""
  lines = _lines(source)
  first, last = node.lineno - 1, node.end_lineno - 1
  if first == last:  # column offsets count UTF-8 bytes
    return lines[first].encode()[node.col_offset : node.end_col_offset].decode()
  return (
      lines[first].encode()[node.col_offset :].decode()
      + "".join(lines[first + 1 : last])
      + lines[last].encode()[: node.end_col_offset].decode()
  )


def _source_defaults(node: ast.AST | None, source: str) -> dict[str, str]:
  """Parameter name -> its default as written in the source."""
  out: dict[str, str] = {}
  text = lambda n: _segment(source, n)
  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
    a = node.args
    positional = a.posonlyargs + a.args
    for arg, d in zip(positional[len(positional) - len(a.defaults) :], a.defaults):
      out[arg.arg] = text(d)
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
      if d is not None:
        out[arg.arg] = text(d)
  elif isinstance(node, ast.ClassDef):
    for stmt in node.body:
      if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
        out[stmt.target.id] = text(stmt.value)
  return out


def _signature(
    name: str,
    obj: Any,
    node: ast.AST | None,
    source: str,
    drop: tuple[str, ...] = (),
    method: bool = False,
    wrap: bool = True,
    returns: bool = True,
) -> str:
  """``name(params) -> ret``, annotations and defaults as written; long ones one per line.

  Args:
    name: the name to show.
    obj: the function or class.
    node: its definition in the source (for the defaults as written), or None.
    source: the text of the module that defines it.
    drop: parameters left out (a Linen module's ``parent`` and ``name``).
    method: ``obj`` is a function defined in a class: its first parameter (``self``) is
      left out.
    wrap: a signature over 88 characters is written one parameter per line.
    returns: show the return annotation (a constructor's ``-> None`` is left out).

  Returns:
    The signature's text; empty where Python knows none (a builtin's ``__init__``).
  """
  try:
    sig = inspect.signature(obj)
  except (TypeError, ValueError):
    return ""
  written = _source_defaults(node, source)
  parts: list[str] = []
  star = False
  params = list(sig.parameters.values())[1 if method else 0 :]
  params = [p for p in params if p.name not in drop]
  for i, p in enumerate(params):
    if p.kind is p.KEYWORD_ONLY and not star:
      parts.append("*")
      star = True
    prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
    star = star or p.kind is p.VAR_POSITIONAL
    text = prefix + p.name
    if p.annotation is not p.empty:
      text += f": {_squash(_annotation(p.annotation))}"
    if p.default is not p.empty:
      default = _squash(written[p.name]) if p.name in written else _value(p.default)
      text += f" = {default}" if p.annotation is not p.empty else f"={default}"
    parts.append(text)
    if p.kind is p.POSITIONAL_ONLY and (
        i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY
    ):
      parts.append("/")
  ret = ""
  if returns and sig.return_annotation is not sig.empty:
    ret = f" -> {_squash(_annotation(sig.return_annotation))}"
  one = f"{name}({', '.join(parts)}){ret}"
  if len(one) <= 88 or not wrap:
    return one
  return f"{name}(\n" + "".join(f"    {p},\n" for p in parts) + f"){ret}"


def _attribute_doc(lines: list[str], stmt: ast.stmt, nxt: ast.stmt | None) -> str:
  """A constant's note: a string after it, or the comment block just above it."""
  if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
    if isinstance(nxt.value.value, str):
      return _first_paragraph(nxt.value.value)
  comment: list[str] = []
  i = stmt.lineno - 2
  while i >= 0 and lines[i].lstrip().startswith("#"):
    comment.insert(0, lines[i].strip().lstrip("#:").strip())
    i -= 1
  return _first_sentence(_text(" ".join(comment))) if comment else ""


@dataclasses.dataclass
class _Entry:
  name: str
  kind: str  # "function", "class" or "constant"
  node: ast.stmt | None
  note: str = ""  # a constant's comment


def _entries(module: Any, source: str, section: Section) -> list[_Entry]:
  """The documented names of one module, in source order (or the section's order)."""
  lines = source.splitlines()
  tree = ast.parse(source)
  exported = set(getattr(module, "__all__", ()))
  found: dict[str, _Entry] = {}
  body = tree.body
  for i, stmt in enumerate(body):
    nxt = body[i + 1] if i + 1 < len(body) else None
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
      found.setdefault(stmt.name, _Entry(stmt.name, "function", stmt))
    elif isinstance(stmt, ast.ClassDef):
      found.setdefault(stmt.name, _Entry(stmt.name, "class", stmt))
    elif isinstance(stmt, ast.Assign) or (isinstance(stmt, ast.AnnAssign) and stmt.value):
      targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
      for t in targets:
        if not isinstance(t, ast.Name):
          continue
        value = getattr(module, t.id, None)
        if inspect.isclass(value) or callable(value):
          continue  # a type alias or an imported callable under another name
        if t.id.isupper() or t.id in exported:
          found.setdefault(t.id, _Entry(t.id, "constant", stmt, _attribute_doc(lines, stmt, nxt)))
  if section.names is not None:
    missing = [n for n in section.names if n not in found]
    if missing:
      raise ValueError(f"{section.module} does not define {missing}")
    return [found[n] for n in section.names]
  return [
      e
      for e in found.values()
      if not e.name.startswith("_")
      and e.name not in section.skip
      and (not exported or e.name in exported)
  ]


def _members(cls: type, node: ast.ClassDef, source: str) -> list[str]:
  """A class's public methods and properties, one line each, in source order."""
  out = []
  for stmt in node.body:
    if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    name = stmt.name
    if name.startswith("_") and name != "__call__":
      continue
    if name == "__call__" and stmt.returns is None and ast.get_docstring(stmt) is None:
      continue  # a guard (Scheme refuses to be called), not an API
    raw = inspect.getattr_static(cls, name, None)
    if isinstance(raw, property):
      kind, sig = "property", name
    else:
      kind = {staticmethod: "staticmethod", classmethod: "classmethod"}.get(type(raw), "method")
      bound = kind != "method"
      sig = _signature(name, getattr(cls, name), stmt, source, method=not bound, wrap=False)
    summary = _first_line(ast.get_docstring(stmt))
    out.append(f"- {kind} `{sig}`" + (f": {summary}" if summary else ""))
  return out


class _Slugs:
  """GitHub's heading anchors: lower case, punctuation dropped, repeats numbered."""

  def __init__(self):
    self.seen: dict[str, int] = {}

  def __call__(self, heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
    n = self.seen.get(slug, 0)
    self.seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


def _render_entry(module: Any, source: str, section: Section, e: _Entry) -> list[str]:
  """One name's heading, kind, signature, summary (and a class's methods)."""
  obj = getattr(module, e.name)
  where = f"[{section.source}](../{section.source})"
  out = [f"#### `{e.name}`", ""]
  if e.kind == "constant":
    value = _squash(_segment(source, e.node.value))
    if re.search(r"(?<![\w.])_[A-Za-z]", value):  # computed from private names: the value
      value = _value(obj)
    if len(value) > 240:  # a long table: its start
      value = value[:236] + " ..."
    ann = f": {ast.unparse(e.node.annotation)}" if isinstance(e.node, ast.AnnAssign) else ""
    out += [f"*constant* in {where}", "", "```text", f"{e.name}{ann} = {value}", "```", ""]
    return out + ([e.note, ""] if e.note else [])
  if e.kind == "class":
    bases = ", ".join(f"`{ast.unparse(b)}`" for b in e.node.bases)
    kind = f"*class* ({bases})" if bases else "*class*"
    drop = _LINEN_FIELDS if _is_linen(obj) else ()
    init = next(
        (s for s in e.node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"),
        None,
    )
    if init is not None:
      sig = _signature(e.name, obj.__init__, init, source, drop=drop, method=True, returns=False)
    elif any(isinstance(s, ast.AnnAssign) for s in e.node.body):  # a dataclass, a NamedTuple
      sig = _signature(e.name, obj, e.node, source, drop=drop, returns=False)
    else:
      sig = f"class {e.name}"
  else:
    kind = "*function*"
    sig = _signature(e.name, obj, e.node, source)
  out += [f"{kind} in {where}", "", "```text", sig, "```", ""]
  summary = _first_paragraph(ast.get_docstring(e.node))
  if summary:
    out += [summary, ""]
  if e.kind == "class":
    members = _members(obj, e.node, source)
    if members:
      out += members + [""]
  return out


def _is_linen(obj: Any) -> bool:
  try:
    import flax.linen as nn  # pylint: disable=g-import-not-at-top

    return inspect.isclass(obj) and issubclass(obj, nn.Module)
  except ImportError:
    return False


def render() -> str:
  """The page's markdown, built from the checkout's sources (deterministic).

  Returns:
    The text of docs/api.md.
  """
  added = str(ROOT) not in sys.path
  if added:  # the checkout's nfscale and configs/ (nfscale.configs in a wheel)
    sys.path.insert(0, str(ROOT))
  try:
    return _render()
  finally:
    if added:
      sys.path.remove(str(ROOT))


def _render() -> str:
  import nfscale  # pylint: disable=g-import-not-at-top

  slug = _Slugs()
  slug("nfscale API reference")
  slug("nfscale")
  toc: list[str] = []
  anchors: dict[str, str] = {}  # "module.name" -> anchor, "module" -> anchor
  notes: dict[str, str] = {}  # "module.CONSTANT" -> its comment

  # Pass 1: sections (the top-level exports link into them).
  rendered: list[list[str]] = []
  for title, sections in GROUPS:
    group_lines = [f"## {title}", ""]
    toc.append(f"- [{title}](#{slug(title)})")
    for section in sections:
      module = _import(section)
      source = (ROOT / section.source).read_text()
      entries = _entries(module, source, section)
      anchor = slug(section.module)
      anchors[section.module] = anchor
      toc.append(f"  - [`{section.module}`](#{anchor})")
      group_lines += [
          f"### {section.module}",
          "",
          f"{_first_line(module.__doc__)} Source: [{section.source}](../{section.source}).",
          "",
      ]
      index = []
      for e in entries:
        a = slug(e.name)
        anchors[f"{section.module}.{e.name}"] = a
        notes[f"{section.module}.{e.name}"] = e.note
        index.append(f"[`{e.name}`](#{a})")
      group_lines += [" · ".join(index), ""]
      for e in entries:
        group_lines += _render_entry(module, source, section, e)
    rendered.append(group_lines)

  top = [
      "## nfscale",
      "",
      (
          f"{_first_line(nfscale.__doc__)} `import nfscale` exports these names; each is "
          "documented in its module below. Every submodule (`nfscale.train`, "
          "`nfscale.configs`, ...) is also reachable as an attribute after `import nfscale`."
      ),
      "",
  ]
  modules = []
  for name in nfscale.__all__:
    obj = getattr(nfscale, name)
    if inspect.ismodule(obj):
      modules.append(f"[`{obj.__name__}`](#{anchors[obj.__name__]})")
      continue
    target = f"{getattr(obj, '__module__', '')}.{name}"
    if target not in anchors:  # a constant: the module that documents it
      target = next((k for k in anchors if k.endswith(f".{name}")), target)
    if target not in anchors:
      raise ValueError(f"nfscale.{name} is not documented in any section")
    summary = _first_line(inspect.getdoc(obj)) if callable(obj) else notes[target]
    top.append(
        f"- [`{name}`](#{anchors[target]}) (`{target}`)" + (f": {summary}" if summary else "")
    )
  top += ["", "Modules imported with `nfscale`: " + ", ".join(modules) + "."]
  top.append("")

  header = [
      "# nfscale API reference",
      "",
      (
          f"Generated by `{COMMAND}` from the docstrings and signatures; do not edit by "
          "hand (`python docs/make_api.py --check` and tests/test_api_reference.py say when "
          "it is out of date). It lists the modules a user of the library imports: each "
          "public name with its signature as written in the source and the first paragraph "
          "of its docstring; the docstrings hold the rest. The experiment stack's other "
          "modules (tasks, data, plots, sharding...) are in [README.md](../README.md)'s "
          "module table."
      ),
      "",
      "Contents:",
      "",
      "- [`nfscale` (top-level exports)](#nfscale)",
      *toc,
      "",
  ]
  lines = header + top + [line for group in rendered for line in group]
  text = "\n".join(lines).rstrip("\n") + "\n"
  return re.sub(r"\n{3,}", "\n\n", text)


def main(argv: list[str]) -> int:
  """Writes docs/api.md, or with ``--check`` says whether it is current.

  Args:
    argv: the command line arguments after the program name.

  Returns:
    The exit status.
  """
  text = render()
  if "--check" in argv:
    if OUTPUT.read_text() != text:
      print(f"docs/api.md is out of date; regenerate it with `{COMMAND}`.")
      return 1
    return 0
  OUTPUT.write_text(text)
  print(f"wrote docs/api.md ({text.count(chr(10))} lines)")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
