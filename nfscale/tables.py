"""Result tables as text: GitHub markdown and CSV.

Two markdown forms: :func:`markdown_table` renders rows of values (numbers
formatted, right-aligned, cells escaped; the sweep reports), and
:func:`markdown_rows` joins cells that are already text (the tasks' seed
tables). :func:`write_csv` writes rows of values so that floats round-trip.
"""

from __future__ import annotations

import csv
import io as _stdio
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np

from nfscale.io import atomic_write_text, to_jsonable


def markdown_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A GitHub markdown table of cells already written as text (no escaping).

  >>> print(markdown_rows(["a", "b"], [["1", "2"]]))
  | a | b |
  |---|---|
  | 1 | 2 |
  """
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def _cell_value(v: Any) -> Any:
  return to_jsonable(v) if isinstance(v, (np.generic, np.ndarray)) else v


def _is_number(v: Any) -> bool:
  return isinstance(v, Real) and not isinstance(v, bool)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, float_format: str = "{:.4g}"
) -> str:
  """Renders rows as a GitHub-flavoured Markdown table.

  Missing keys and None render as empty cells; floats use ``float_format``;
  ``|`` and newlines inside cells are escaped so the table stays intact.
  Columns whose present values are all numbers are right-aligned.

  Args:
    rows: One mapping per table row.
    columns: Keys to show, in order (also the header).
    float_format: ``str.format`` pattern for floats.

  Returns:
    The table, one line per row, with a trailing newline.

  Example:
    >>> print(markdown_table([{"N": 64, "b": 1.23456}], ["N", "b"]), end="")
    | N | b |
    | ---: | ---: |
    | 64 | 1.235 |
  """

  def fmt(v: Any) -> str:
    v = _cell_value(v)
    if v is None:
      return ""
    if isinstance(v, float):
      s = float_format.format(v)
    else:
      s = str(v)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")

  def align(col: str) -> str:
    vals = [_cell_value(r[col]) for r in rows if r.get(col) is not None]
    return "---:" if vals and all(_is_number(v) for v in vals) else "---"

  header = "| " + " | ".join(fmt(c) for c in columns) + " |"
  sep = "| " + " | ".join(align(c) for c in columns) + " |"
  body = ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join([header, sep, *body]) + "\n"


def write_csv(path: Any, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
  """Atomically writes rows as CSV (see :func:`nfscale.io.atomic_write_text`).

  Floats are written with full precision (``repr``) so values round-trip;
  missing keys and None become empty fields; keys not in ``columns`` are
  dropped; numpy scalars are unwrapped.

  Args:
    path: Destination ``.csv`` file.
    rows: One mapping per row.
    columns: Header and column order.
  """
  buf = _stdio.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  for r in rows:
    out = []
    for c in columns:
      v = _cell_value(r.get(c))
      out.append("" if v is None else repr(v) if isinstance(v, float) else v)
    writer.writerow(out)
  atomic_write_text(path, buf.getvalue())
