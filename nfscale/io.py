"""Crash-safe helpers for experiment work directories.

Everything an experiment writes into its workdir goes through this module so
that a run killed at any moment (preemption, ``SIGKILL``, OOM killer) leaves
files that the resumed run can trust:

* :func:`atomic_write_text` / :func:`atomic_write_json` replace a file in one
  step: readers see either the old or the new content, never a mixture.
* :func:`append_jsonl` appends one record per line to a log; a record is either
  fully present (newline-terminated) or absent. A half-written tail left by a
  killed writer is ignored by :func:`read_jsonl` and removed by the next
  :func:`append_jsonl`.
* :func:`check_or_write_config` pins a workdir to one configuration so results
  of different configurations are never mixed in one directory;
  :func:`check_config` checks a run against it without writing.
* :func:`workdir_lock` makes a run the only one working in a workdir, so two
  runs started on one directory never compute (or overwrite) the same work.
* :func:`read_json` and :func:`read_jsonl` name the file and say what to do
  when it is not valid JSON, instead of a bare decoder message.

JSON conventions (all writers here use :func:`to_jsonable`):

* numpy scalars become Python scalars and numpy arrays (or anything exposing
  ``__array__``, e.g. JAX arrays) become nested lists;
* tuples become lists (they read back as lists);
* non-finite floats (NaN, +Inf, -Inf) are written as ``null``. Python's
  non-standard ``NaN``/``Infinity`` tokens are never emitted, so every file is
  strict JSON that any parser (jq, pandas, JavaScript) accepts. The price is
  that NaN and Inf read back as ``None`` and are indistinguishable.

Only numpy and the standard library are used; this module must not import
other ``nfscale`` modules (it is loaded stand-alone by the crash tests).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "to_jsonable",
    "json_dumps",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "read_json",
    "append_jsonl",
    "read_jsonl",
    "check_config",
    "check_or_write_config",
    "workdir_lock",
    "WorkdirLockedError",
    "CONFIG_FILENAME",
    "LOCK_FILENAME",
]

PathLike = str | os.PathLike[str]

#: Name of the file :func:`check_or_write_config` keeps in a workdir.
CONFIG_FILENAME = "config.json"

#: Default name of the lock file :func:`workdir_lock` keeps in a workdir.
LOCK_FILENAME = ".lock"

_MISSING = object()  # marks a key absent on one side of a config diff


# --------------------------------------------------------------------------- #
# JSON conversion
# --------------------------------------------------------------------------- #
def to_jsonable(obj: Any) -> Any:
  """Converts ``obj`` into plain JSON-compatible Python data.

  Args:
    obj: Nested dicts/lists/tuples of str, int, float, bool, None, numpy
      scalars, numpy arrays (or array-likes with ``__array__``) and
      ``os.PathLike`` objects.

  Returns:
    An equivalent structure built only from dict, list, str, int, float
    (finite), bool and None. Non-finite floats become ``None``; tuples and
    arrays become lists; paths become strings; numpy dict keys become Python
    scalars.

  Raises:
    TypeError: for values with no faithful JSON form (sets, arbitrary
      objects). Failing loudly beats silently writing ``str(obj)``.

  Example:
    >>> to_jsonable({"x": np.float32(0.5), "y": np.array([1.0, np.inf])})
    {'x': 0.5, 'y': [1.0, None]}
  """
  # bool is checked before int/float because it subclasses int.
  if obj is None or isinstance(obj, (bool, str)):
    return obj
  if isinstance(obj, (int, float)) and not isinstance(obj, np.generic):
    if isinstance(obj, float):
      return float(obj) if math.isfinite(obj) else None
    return int(obj)
  if isinstance(obj, np.generic):
    # np.float64 subclasses float, so it must be unwrapped here, otherwise
    # json would write its NaN as the non-standard token.
    return to_jsonable(obj.item())
  if isinstance(obj, Mapping):
    out: dict[Any, Any] = {}
    for k, v in obj.items():
      if isinstance(k, np.generic):
        k = k.item()
      if not (k is None or isinstance(k, (str, int, float, bool))):
        raise TypeError(
            f"JSON object keys must be scalars, got key {k!r} of type {type(k).__name__}"
        )
      out[k] = to_jsonable(v)
    return out
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
    arr = np.asarray(obj)
    if arr.dtype == object:
      return to_jsonable(arr.tolist())
    # tolist() yields Python scalars; the recursion maps NaN/Inf to None.
    return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable: {obj!r:.200}")


def _json_default(obj: Any) -> Any:
  """``default=`` hook for :func:`json.dumps`; shares the rules of :func:`to_jsonable`."""
  return to_jsonable(obj)


def json_dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
  """Serializes ``obj`` to strict JSON text using the module's conventions.

  Args:
    obj: Anything accepted by :func:`to_jsonable`.
    indent: ``None`` for a single line (required for JSONL), else the indent.
    sort_keys: Whether to sort object keys.

  Returns:
    JSON text without a trailing newline. Newlines inside strings are escaped,
    so with ``indent=None`` the result is always a single line.
  """
  return json.dumps(
      to_jsonable(obj),
      indent=indent,
      sort_keys=sort_keys,
      ensure_ascii=False,
      allow_nan=False,  # to_jsonable already removed NaN/Inf; this is a guard.
      default=_json_default,
  )


# --------------------------------------------------------------------------- #
# Atomic whole-file writes
# --------------------------------------------------------------------------- #
def _fsync_dir(directory: PathLike) -> None:
  """fsyncs a directory so a rename/create inside it survives power loss."""
  try:
    fd = os.open(os.fspath(directory), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
  except OSError:
    return  # Some platforms/filesystems cannot open directories; best effort.
  try:
    os.fsync(fd)
  except OSError as e:
    # EINVAL/EBADF: the filesystem does not support directory fsync.
    if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
      raise
  finally:
    os.close(fd)


def _write_temp(path: Path, data: bytes) -> str:
  """Writes ``data`` to a durable temp file next to ``path``; returns its name."""
  # Same directory => same filesystem => os.replace/os.link are atomic.
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    # mkstemp creates 0600 files; keep an existing file's mode, otherwise use
    # the conventional 0644 so results stay readable by collaborators.
    try:
      mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
      mode = 0o644
    os.fchmod(fd, mode)
    view = memoryview(data)
    while view:
      n = os.write(fd, view)
      view = view[n:]
    os.fsync(fd)  # Content must be on disk before the rename makes it visible.
  except BaseException:
    os.close(fd)
    _unlink_quietly(tmp)
    raise
  os.close(fd)
  return tmp


def _unlink_quietly(path: PathLike) -> None:
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
  """Atomically replaces ``path`` with ``data``.

  The bytes go to a temporary file in the same directory, which is flushed,
  fsynced and then renamed over ``path`` with :func:`os.replace`; finally the
  directory is fsynced so the rename itself is durable. A crash at any point
  leaves either the old file or the new one, plus at most a stray
  ``.<name>.*.tmp`` file (the next run's :func:`workdir_lock` removes it:
  :func:`remove_stale_temps`); a failure that raises (full disk, failed rename)
  removes the temporary file. Parent directories are created if missing.

  Args:
    path: Destination file.
    data: Full new content.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _write_temp(path, bytes(data))
  try:
    os.replace(tmp, path)
  except BaseException:
    _unlink_quietly(tmp)
    raise
  _fsync_dir(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
  """Atomically replaces ``path`` with ``text`` (UTF-8); see :func:`atomic_write_bytes`.

  Args:
    path: Destination file.
    text: Full new content.
  """
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(
    path: PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
  """Atomically writes ``obj`` as strict JSON (see module docstring).

  Serialization happens before anything touches the disk, so an
  unserializable object raises ``TypeError`` and leaves ``path`` untouched.

  Args:
    path: Destination file.
    obj: Anything accepted by :func:`to_jsonable`.
    indent: JSON indent (``None`` for one line).
    sort_keys: Whether to sort object keys.

  Example::

    atomic_write_json(workdir / "summary.json", {"psnr": np.float32(31.2)})
  """
  atomic_write_text(path, json_dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def _invalid_json(path: PathLike, err: ValueError, where: str = "") -> ValueError:
  """The error for a file that is not valid JSON: names it and says what to do."""
  # JSONDecodeError's message is terse ("Expecting value: line 1 column 1");
  # UnicodeDecodeError's is long, so keep only its reason.
  reason = err.msg if isinstance(err, json.JSONDecodeError) else getattr(err, "reason", str(err))
  return ValueError(
      f"{os.fspath(path)}{where} is not valid JSON ({reason}); it was probably cut short by an "
      "interrupted copy or edited by hand: restore it from a copy, or move it away and rerun "
      "to start that file afresh."
  )


def read_json(path: PathLike) -> Any:
  """Reads a JSON file.

  Args:
    path: File to read.

  Returns:
    The decoded value (``null`` entries, including former NaN/Inf, are None).

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: if the file is not valid (UTF-8) JSON, e.g. truncated; the
      message names the file and what to do.
  """
  with open(path, "rb") as f:
    raw = f.read()
  try:
    return json.loads(raw.decode("utf-8"))
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are.
    raise _invalid_json(path, e) from e


# --------------------------------------------------------------------------- #
# Append-only JSON lines logs
# --------------------------------------------------------------------------- #
def _truncate_torn_tail(fd: int, size: int) -> int:
  """Cuts a trailing partial line (no final newline); returns the new size."""
  if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
    return size
  # Scan backwards for the last complete line's newline.
  chunk = 1 << 16
  end = size
  while end > 0:
    start = max(0, end - chunk)
    buf = os.pread(fd, end - start, start)
    i = buf.rfind(b"\n")
    if i >= 0:
      cut = start + i + 1
      break
    end = start
  else:
    cut = 0
  os.ftruncate(fd, cut)
  return cut


def append_jsonl(path: PathLike, record: Any) -> None:
  """Appends ``record`` as one JSON line: :func:`append_jsonl_lines` of ``[record]``."""
  append_jsonl_lines(path, [record])


def append_jsonl_lines(path: PathLike, records: Sequence[Any]) -> None:
  """Appends ``records`` as JSON lines in one write, durably and crash-safely.

  Guarantees, for a writer killed (even by ``SIGKILL``) at any instant:

  * a record is visible to :func:`read_jsonl` only once its whole line,
    including the terminating newline, is in the file; a killed write can
    leave only a partial *last* line, which readers ignore;
  * this function first truncates such a torn tail, so the file never
    accumulates garbage and later records are never glued to a torn one;
  * the lines are written with one ``os.write`` on an ``O_APPEND``
    descriptor (no buffered-IO splitting) and fsynced before returning, so
    records whose append returned survive a crash and are never written
    twice by this function; records appended together (a sweep round's
    widths) appear together.

  Concurrent appenders (threads or processes on one host) are serialized with
  an exclusive ``flock`` so one writer's tail repair can never cut another
  writer's line that is still being written.

  Args:
    path: The ``.jsonl`` file; created (with parent directories) if missing.
    records: Anything accepted by :func:`to_jsonable`, normally dicts.

  Example::

    append_jsonl(workdir / "results.jsonl", {"width": 64, "psnr": 30.1})
    done = {r["width"] for r in read_jsonl(workdir / "results.jsonl")}
  """
  # Serialize first: an unserializable record must not touch the file.
  line = "".join(json_dumps(r) + "\n" for r in records).encode("utf-8")
  if not line:
    return
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  created = not path.exists()
  fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)  # Released by os.close below.
    size = _truncate_torn_tail(fd, os.fstat(fd).st_size)
    try:
      view = memoryview(line)
      n = os.write(fd, view)
      # A regular-file write is only short on ENOSPC/EFBIG or a signal;
      # finish the line so it is not left torn.
      while n < len(view):
        view = view[n:]
        n = os.write(fd, view)
      os.fsync(fd)
    except BaseException:
      # Best effort: drop our partial line now rather than at the next append.
      try:
        os.ftruncate(fd, size)
      except OSError:
        pass
      raise
  finally:
    os.close(fd)
  if created:
    _fsync_dir(path.parent)  # Make the new directory entry durable too.


def read_jsonl(path: PathLike, *, missing_ok: bool = False) -> list[Any]:
  """Reads all complete records of a JSON-lines file.

  A trailing partial line (bytes after the last newline) is the signature of
  an interrupted :func:`append_jsonl` and is silently ignored. Blank lines are
  skipped. Any other undecodable line means real corruption and raises.

  Args:
    path: The ``.jsonl`` file.
    missing_ok: Return ``[]`` instead of raising if ``path`` does not exist.

  Returns:
    The decoded records, in file order.

  Raises:
    FileNotFoundError: if the file is missing and ``missing_ok`` is False.
    ValueError: if a complete (newline-terminated) line is not valid JSON;
      the message names the file and the line.
  """
  records: list[Any] = []
  try:
    f = open(path, "rb")
  except FileNotFoundError:
    if missing_ok:
      return records
    raise
  with f:
    for lineno, raw in enumerate(f, start=1):
      if not raw.endswith(b"\n"):
        break  # Torn tail from a killed writer: never a committed record.
      if not raw.strip():
        continue
      try:
        records.append(json.loads(raw.decode("utf-8")))
      except ValueError as e:
        # A complete line is never torn by append_jsonl: someone else
        # wrote or edited the file.
        raise _invalid_json(path, e, f":{lineno}") from e
  return records


# --------------------------------------------------------------------------- #
# Config pinning
# --------------------------------------------------------------------------- #
def _canonical_json(obj: Any) -> str:
  return json.dumps(
      to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
  )


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  """Flattens nested dicts into ``{"a.b.c": leaf}``; lists and empty groups are leaves.

  >>> flatten({"a": {"b": 1, "c": {}}, "d": [1, 2]})
  {'a.b': 1, 'a.c': {}, 'd': [1, 2]}
  """
  if not isinstance(d, dict) or (not d and prefix):
    return {prefix: d}
  out: dict[str, Any] = {}
  for k, v in d.items():
    key = f"{prefix}.{k}" if prefix else str(k)
    out.update(flatten(v, key))
  return out


def _is_ignored(key: str, keys_ignored: Iterable[str]) -> bool:
  return any(key == ig or key.startswith(ig + ".") for ig in keys_ignored)


def _renamed_key(key: str, renamed: Mapping[str, str]) -> str:
  for old, new in renamed.items():
    if key == old or key.startswith(old + "."):
      return new + key[len(old) :]
  return key


def _config_diff(
    old: Any,
    new: Any,
    keys_ignored: Iterable[str],
    defaults: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> list[tuple[str, Any, Any]]:
  old_flat, new_flat = flatten(old), flatten(new)
  if renamed:
    # A stored config written before a key was renamed holds it under its old name.
    old_flat = {_renamed_key(k, renamed): v for k, v in old_flat.items()}
  default_flat = flatten(json.loads(_canonical_json(defaults))) if defaults else {}
  diffs = []
  for key in sorted(old_flat.keys() | new_flat.keys()):
    if _is_ignored(key, keys_ignored):
      continue
    a, b = old_flat.get(key, _MISSING), new_flat.get(key, _MISSING)
    # A key added to the code after the workdir was written, requested at its
    # default value, is the behaviour the old run had.
    if (
        a is _MISSING
        and key in default_flat
        and _canonical_json(default_flat[key]) == _canonical_json(b)
    ):
      continue
    # Compare serialized leaves so bool-vs-int and int-vs-float count as
    # differences (1 vs 1.0 vs True).
    if a is _MISSING or b is _MISSING or _canonical_json(a) != _canonical_json(b):
      if a is _MISSING and key in default_flat:
        a = _RanAs(default_flat[key])  # the message can say how to go on as it ran
      diffs.append((key, a, b))
  return diffs


class _RanAs(NamedTuple):
  """A key a stored config predates, with the behaviour its run had."""

  value: Any


def _fmt_value(v: Any) -> str:
  if v is _MISSING:
    return "<missing>"
  if isinstance(v, _RanAs):
    return f"<absent: ran as {_fmt_value(v.value)}>"
  s = json.dumps(v, sort_keys=True)
  return s if len(s) <= 80 else s[:77] + "..."


def check_or_write_config(
    workdir: PathLike,
    config_dict: Mapping[str, Any],
    *,
    keys_ignored: Iterable[str] = (),
    max_diffs_shown: int = 10,
    defaults: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> bool:
  """Pins ``workdir`` to ``config_dict``.

  If ``workdir/config.json`` is absent it is created atomically (create-if-
  absent via a hard link, so two processes starting at once cannot both
  "win" with different configs). If it exists, its content must equal
  ``config_dict`` after JSON normalization, except for keys in
  ``keys_ignored``; the stored file is then left unchanged (it keeps the
  values of ignored keys from the first run).

  Args:
    workdir: Experiment directory (created if missing).
    config_dict: The configuration of the current run.
    keys_ignored: Dotted key paths that may differ between runs, e.g.
      ``("num_workers", "logging.every")``; naming a parent key ignores its
      whole subtree. Use for settings that do not affect results.
    max_diffs_shown: How many differences the error message lists.
    defaults: The code's default config. A key the stored config lacks (added
      to the code after the workdir was written) is not a difference when the
      requested value is its default, since that is what the old run did.
    renamed: ``{old dotted key: new dotted key}`` of keys the code renamed
      (a parent key renames its subtree): the stored config's old names are
      read as the new ones, so a workdir outlives a rename.

  Returns:
    True if ``config.json`` was written by this call, False if an existing
    compatible one was found.

  Raises:
    ValueError: if an existing ``config.json`` differs (the message names the
      workdir and lists differences as ``key: old -> new``) or is not valid
      JSON (the message names the file and what to do).

  Example::

    check_or_write_config("runs/exp1", {"lr": 1e-3, "workers": 4}, keys_ignored=("workers",))
    # A rerun with workers=8 passes; one with lr=1e-2 raises ValueError:
    #   lr: 0.001 -> 0.01
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / CONFIG_FILENAME
  # Round-trip through JSON so the comparison sees what a later run will read.
  new = json.loads(_canonical_json(config_dict))
  if not path.exists():
    text = json_dumps(new, indent=2, sort_keys=True) + "\n"
    tmp = _write_temp(path, text.encode("utf-8"))
    try:
      os.link(tmp, path)  # Fails with FileExistsError if someone beat us.
      _fsync_dir(workdir)
      return True
    except FileExistsError:
      pass  # Fall through and compare against the winner's config.
    except OSError:
      # Filesystem without hard links: accept the small race.
      os.replace(tmp, path)
      _fsync_dir(workdir)
      return True
    finally:
      _unlink_quietly(tmp)
  _raise_if_differs(
      workdir, read_stored_config(workdir), new, keys_ignored, max_diffs_shown, defaults, renamed
  )
  return False


def check_workdir_path(workdir: PathLike) -> None:
  """A workdir must be named and must not be a file (checked before anything is written).

  Raises:
    ValueError: an empty name, or a path that exists and is not a directory, or one
      inside a file (``file.txt/run``: its creation failed with NotADirectoryError, a
      traceback).
  """
  if not str(workdir).strip():
    raise ValueError("the workdir is empty: give --workdir=DIR.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"workdir {str(workdir)!r} exists and is not a directory.")
  parent = os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent) and os.path.dirname(parent) != parent:
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"workdir {str(workdir)!r} cannot be created: {parent!r} is not a directory.")


def read_stored_config(workdir: PathLike) -> Any:
  """Reads ``workdir/config.json``.

  Args:
    workdir: Experiment directory.

  Returns:
    The stored configuration.

  Raises:
    FileNotFoundError: if there is no ``config.json``.
    ValueError: if it is not valid JSON; the message names the file and
      what to do.
  """
  path = Path(workdir) / CONFIG_FILENAME
  try:
    return read_json(path)
  except FileNotFoundError:
    raise
  except ValueError as e:
    # Advice of our own: "move it away and rerun" would let a new config
    # be pinned over results of the old one.
    raise ValueError(
        f"{str(path)!r} is not valid JSON ({e.__cause__ or e}); it pins the configuration "
        "of the results in that workdir. Restore it from a copy, or, only if you are "
        "sure the results there come from the configuration you are running, delete it "
        "and rerun (the run then writes it again); otherwise pick a new workdir."
    ) from e


def _raise_if_differs(
    workdir: Path,
    old: Any,
    new: Any,
    keys_ignored: Iterable[str],
    max_diffs_shown: int,
    defaults: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> None:
  diffs = _config_diff(old, new, tuple(keys_ignored), defaults, renamed)
  if diffs:
    # No "delete config.json and rerun" advice: the results beside it would then be
    # taken for the new configuration's.
    shown = [f"  {k}: {_fmt_value(a)} -> {_fmt_value(b)}" for k, a, b in diffs[:max_diffs_shown]]
    if len(diffs) > max_diffs_shown:
      shown.append(f"  ... and {len(diffs) - max_diffs_shown} more")
    older = [(k, a.value) for k, a, _ in diffs if isinstance(a, _RanAs)]
    if older and len(older) == len(diffs):
      advice = (
          "\nThe run predates these keys: to go on as it ran, set "
          + ", ".join(f"{k}={v!r}" for k, v in older)
          + "; otherwise pick a new workdir."
      )
    else:
      advice = (
          "\nResults from different configurations must not be mixed in one workdir: "
          "pick a new workdir."
      )
    raise ValueError(
        f"Workdir {str(workdir)!r} was created with a different configuration "
        f"({len(diffs)} differing key(s), stored -> requested):\n"
        + "\n".join(shown)
        + advice
    )


def check_config(
    workdir: PathLike,
    config_dict: Mapping[str, Any],
    *,
    keys_ignored: Iterable[str] = (),
    max_diffs_shown: int = 10,
    defaults: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> None:
  """Checks that ``workdir`` holds results of ``config_dict``; writes nothing.

  For commands that only read a workdir (re-rendering a report): the same
  comparison as :func:`check_or_write_config`, but a workdir without
  ``config.json`` is an error instead of being claimed.

  Args:
    workdir: Experiment directory.
    config_dict: The configuration the caller will label the results with.
    keys_ignored: Dotted key paths that may differ (see
      :func:`check_or_write_config`).
    max_diffs_shown: How many differences the error message lists.
    defaults: See :func:`check_or_write_config`.
    renamed: See :func:`check_or_write_config`.

  Raises:
    ValueError: if ``workdir`` has no ``config.json`` (nothing was run
      there), if it is not valid JSON, or if it differs from
      ``config_dict``; the message names the workdir and, for a difference,
      lists ``key: stored -> requested``.
  """
  workdir = Path(workdir)
  new = json.loads(_canonical_json(config_dict))
  try:
    old = read_stored_config(workdir)
  except FileNotFoundError:
    raise ValueError(
        f"Workdir {str(workdir)!r} holds no {CONFIG_FILENAME}: no run was started there, so "
        "there is nothing to read. Check the path, or start the run first."
    ) from None
  _raise_if_differs(workdir, old, new, keys_ignored, max_diffs_shown, defaults, renamed)


# --------------------------------------------------------------------------- #
# One run per workdir
# --------------------------------------------------------------------------- #
class WorkdirLockedError(ValueError):
  """Another live process holds the workdir's lock (see :func:`workdir_lock`).

  A ``ValueError`` so that command-line tools report it as a one-line usage
  error, like a mismatched config.
  """


_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temps(workdir: PathLike) -> list[str]:
  """Deletes the temp files of this module's atomic writes left in ``workdir``.

  A write killed between creating its temp file and renaming it leaves
  ``.NAME.XXXXXXXX.tmp`` behind (``tempfile.mkstemp``'s random part). Only the
  holder of the workdir's exclusive lock calls this: no other writer is live.

  Returns:
    The names removed.
  """
  removed = []
  for entry in os.scandir(workdir):
    if entry.is_file(follow_symlinks=False) and _TEMP_NAME.match(entry.name):
      _unlink_quietly(entry.path)
      removed.append(entry.name)
  return removed


def _holder(lock_path: Path) -> tuple[str | None, str]:
  """What the holder of ``lock_path`` wrote about itself: ``(what it is, pid text)``."""
  try:
    info = json.loads(lock_path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    # The holder locks before it writes its line; in that instant the file
    # says nothing useful.
    return None, "pid not recorded"
  if not isinstance(info, dict):
    return None, "pid not recorded"
  what = info.get("what") if isinstance(info.get("what"), str) else None
  if info.get("shared"):
    return what, "shared by several processes"
  try:
    return what, f"pid {info['pid']} on host {info['host']}, since {info['since']}"
  except KeyError:
    return what, "pid not recorded"


@contextlib.contextmanager
def workdir_lock(
    workdir: PathLike,
    *,
    name: str = LOCK_FILENAME,
    shared: bool = False,
    what: str = "run",
    wait: bool = False,
) -> Iterator[None]:
  """Holds an advisory ``flock`` on ``workdir/name`` for the ``with`` block.

  Exclusive by default: a second process asking for the same lock, while
  the first holds it, gets :class:`WorkdirLockedError` at once (it does not
  wait) naming the workdir and the holder's pid and host. ``shared=True``
  takes a shared lock: any number of shared holders coexist, and they
  exclude an exclusive one (used by multi-host sweeps, whose hosts share
  the workdir while each holds its own exclusive share lock).

  The kernel drops the lock when its holder exits, however it dies
  (``SIGKILL`` included), so a killed run never leaves a stale lock: the
  file stays behind but means nothing without a live holder. Exclusive
  holders write their pid, host and start time into the file for the
  error message. ``flock`` works across processes of one machine and, on
  Linux, across the clients of an NFS mount; it is advisory, so only code
  that asks for the lock is kept out.

  Args:
    workdir: Experiment directory (created if missing).
    name: Lock file name inside ``workdir``; different names are
      independent locks.
    shared: Take a shared instead of an exclusive lock.
    what: What the holder is doing, for the error message ("sweep").
    wait: Block until the lock is free instead of raising; for short
      critical sections only (a run waiting on another run's lock would
      wait for the whole run).

  Yields:
    Nothing; the lock is held until the block exits.

  Raises:
    WorkdirLockedError: the lock is held by another process (or by another
      ``workdir_lock`` of this process).

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with workdir_lock(d, what="demo"):
    ...     try:
    ...         with workdir_lock(d, what="demo"):
    ...             pass
    ...     except WorkdirLockedError as e:
    ...         print("refused:", "in use by a demo (pid" in str(e))
    refused: True
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / name
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
      held, pid = _holder(path)  # the holder's own word (a sweep, a training run)
      by = f"a {held}" if held else f"another {what}"
      raise WorkdirLockedError(
          f"Workdir {str(workdir)!r} is in use by {by} ({pid}; lock file {str(path)!r}). "
          "Two runs in one workdir would write the same files: wait for it to finish, "
          "stop it, or use another workdir."
      ) from None
    # An exclusive holder says who it is; shared holders (several at once) say
    # only what they are, all the same line, so no stale pid is shown.
    os.ftruncate(fd, 0)
    if shared:
      info = {"what": what, "shared": True}
    else:
      info = {
          "what": what,
          "pid": os.getpid(),
          "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S"),
      }
      if name == LOCK_FILENAME:
        # The workdir's only writer now (a split sweep's hosts hold this lock shared
        # and their own share locks exclusively): killed writers' temps are garbage.
        remove_stale_temps(workdir)
    os.pwrite(fd, (json_dumps(info) + "\n").encode("utf-8"), 0)
    yield
  finally:
    os.close(fd)  # Releases the lock.
