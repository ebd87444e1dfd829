"""Tests for nfscale.io: atomic writes, crash-safe JSONL logs, config pinning."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nfscale import io as nio
from nfscale.io import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    check_config,
    check_or_write_config,
    read_json,
    read_jsonl,
    to_jsonable,
)

IO_SOURCE = Path(nio.__file__).resolve()


# --------------------------------------------------------------------------- #
# JSON conversion and atomic writes
# --------------------------------------------------------------------------- #
def test_to_jsonable_numpy_and_non_finite():
  obj = {
      "f32": np.float32(0.5),
      "i64": np.int64(7),
      "b": np.bool_(True),
      "arr": np.array([[1.0, np.nan], [np.inf, -np.inf]]),
      "nan": math.nan,
      "np_nan": np.float64("nan"),  # subclasses float: must still become null
      "tuple": (1, 2.5),
      np.int64(3): "numpy key",
      "path": Path("/a/b"),
      "zero_d": np.array(2.0),
  }
  got = to_jsonable(obj)
  assert got == {
      "f32": 0.5,
      "i64": 7,
      "b": True,
      "arr": [[1.0, None], [None, None]],
      "nan": None,
      "np_nan": None,
      "tuple": [1, 2.5],
      3: "numpy key",
      "path": "/a/b",
      "zero_d": 2.0,
  }
  assert type(got["i64"]) is int and type(got["b"]) is bool
  text = nio.json_dumps(obj)
  assert "NaN" not in text and "Infinity" not in text
  json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard token {c}"))


def test_to_jsonable_rejects_unknown_types():
  with pytest.raises(TypeError):
    to_jsonable({"s": {1, 2}})
  with pytest.raises(TypeError):
    to_jsonable({"o": object()})


def test_atomic_write_json_roundtrip(tmp_path):
  path = tmp_path / "deep" / "dir" / "summary.json"
  atomic_write_json(path, {"psnr": np.float32(31.5), "curve": np.arange(3), "bad": np.nan})
  assert read_json(path) == {"psnr": 31.5, "curve": [0, 1, 2], "bad": None}
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  atomic_write_json(path, {"v": 2})
  assert read_json(path) == {"v": 2}
  assert os.listdir(path.parent) == ["summary.json"], "temp files must not be left behind"


def test_atomic_write_keeps_mode_and_old_content_on_failure(tmp_path):
  path = tmp_path / "f.json"
  atomic_write_text(path, "old\n")
  os.chmod(path, 0o600)
  atomic_write_text(path, "new\n")
  assert path.read_text() == "new\n"
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
  with pytest.raises(TypeError):
    atomic_write_json(path, {"x": object()})
  assert path.read_text() == "new\n"
  assert os.listdir(tmp_path) == ["f.json"]


# --------------------------------------------------------------------------- #
# JSON lines
# --------------------------------------------------------------------------- #
def test_append_and_read_jsonl(tmp_path):
  path = tmp_path / "logs" / "results.jsonl"
  records = [
      {"i": 0, "text": "multi\nline \u00e9"},
      {"i": 1, "x": np.float32(1.5), "y": np.inf},
      [1, 2],
  ]
  for r in records:
    append_jsonl(path, r)
  raw = path.read_bytes()
  assert raw.count(b"\n") == 3 and raw.endswith(b"\n"), "one record per line"
  assert read_jsonl(path) == [
      {"i": 0, "text": "multi\nline \u00e9"},
      {"i": 1, "x": 1.5, "y": None},
      [1, 2],
  ]


def test_read_jsonl_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    read_jsonl(tmp_path / "nope.jsonl")
  assert read_jsonl(tmp_path / "nope.jsonl", missing_ok=True) == []


def test_unserializable_record_leaves_file_untouched(tmp_path):
  path = tmp_path / "r.jsonl"
  append_jsonl(path, {"i": 0})
  before = path.read_bytes()
  with pytest.raises(TypeError):
    append_jsonl(path, {"i": 1, "bad": object()})
  assert path.read_bytes() == before


@pytest.mark.parametrize("tail_len", [1, 20, 200_000])
def test_torn_tail_is_ignored_then_repaired(tmp_path, tail_len):
  path = tmp_path / "r.jsonl"
  append_jsonl(path, {"i": 0})
  append_jsonl(path, {"i": 1})
  # A killed writer leaves a prefix of a line; 200 kB exercises the backwards
  # scan across several read chunks.
  torn = ('{"i": 2, "pad": "' + "x" * tail_len)[:tail_len].encode()
  with open(path, "ab") as f:
    f.write(torn)
  assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
  append_jsonl(path, {"i": 2})
  assert read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
  assert path.read_bytes() == b'{"i": 0}\n{"i": 1}\n{"i": 2}\n'


def test_torn_only_line_is_repaired(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_bytes(b'{"i": 0, "pa')
  assert read_jsonl(path) == []
  append_jsonl(path, {"i": 0})
  assert path.read_bytes() == b'{"i": 0}\n'


def test_corrupt_complete_line_raises(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_bytes(b'{"i": 0}\n{"i": 1\n{"i": 2}\n')
  with pytest.raises(ValueError, match=r"r\.jsonl:2"):
    read_jsonl(path)


def test_concurrent_appenders_do_not_interleave(tmp_path):
  path = tmp_path / "r.jsonl"
  n_threads, per_thread = 8, 40

  def work(tid: int) -> None:
    for j in range(per_thread):
      append_jsonl(path, {"t": tid, "j": j, "pad": "y" * (j * 997 % 5000)})

  threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  recs = read_jsonl(path)
  assert len(recs) == n_threads * per_thread
  for tid in range(n_threads):
    assert [r["j"] for r in recs if r["t"] == tid] == list(range(per_thread))


# A writer that resumes an append-only log the way an experiment would: count
# the committed records, then append the sequence 0, 1, 2, ... from there.
# nfscale/io.py is loaded by file path so the test does not depend on whatever
# the package __init__ imports.
_CHILD = r"""
import importlib.util, random, sys
spec = importlib.util.spec_from_file_location("nfscale_io_under_test", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
path, rng = sys.argv[2], random.Random(int(sys.argv[3]))
i = len(mod.read_jsonl(path, missing_ok=True))
while True:
    # Mixed sizes: megabyte lines make a kill inside write() likely.
    pad = rng.choice([0, 10, 5_000, 1_000_000])
    mod.append_jsonl(path, {"i": i, "pad": "x" * pad})
    i += 1
"""


def _check_prefix(path: Path) -> list:
  recs = read_jsonl(path, missing_ok=True)
  assert [r["i"] for r in recs] == list(
      range(len(recs))
  ), "records must be the prefix 0..k-1, no dup/gap"
  assert all(set(r["pad"]) <= {"x"} for r in recs)
  return recs


def test_append_jsonl_survives_sigkill(tmp_path):
  path = tmp_path / "log.jsonl"
  rng = random.Random(1234)
  torn_seen = 0
  for trial in range(8):
    before = path.stat().st_size if path.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(IO_SOURCE), str(path), str(trial)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
      # Wait until the child is really appending, then kill it at a random moment.
      deadline = time.monotonic() + 60
      while (not path.exists() or path.stat().st_size <= before) and proc.poll() is None:
        assert time.monotonic() < deadline, "child never appended"
        time.sleep(0.002)
      assert proc.poll() is None, proc.stderr.read().decode()
      time.sleep(rng.uniform(0.0, 0.05))
    finally:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    torn_seen += not path.read_bytes().endswith(b"\n")
    _check_prefix(path)
  n = len(_check_prefix(path))
  assert n > 0
  # A further append repairs any torn tail and continues the sequence.
  append_jsonl(path, {"i": n, "pad": ""})
  assert path.read_bytes().endswith(b"\n")
  assert len(_check_prefix(path)) == n + 1
  print(f"{n + 1} records after 8 kills; torn tail observed after {torn_seen} kill(s)")


# --------------------------------------------------------------------------- #
# Config pinning
# --------------------------------------------------------------------------- #
CFG = {"lr": 1e-3, "model": {"width": 256, "depth": 4, "act": "sine"}, "seed": 0, "num_workers": 4}


def test_config_comparison_is_by_json_value(tmp_path):
  # Key order, numpy scalars and tuple-vs-list do not matter; 1 vs 1.0 does.
  check_or_write_config(tmp_path, {**CFG, "a": (1, 2)})
  reordered = {
      "a": [1, 2],
      "num_workers": 4,
      "seed": np.int64(0),
      "model": {"act": "sine", "depth": 4, "width": 256},
      "lr": 1e-3,
  }
  assert check_or_write_config(tmp_path, reordered) is False
  with pytest.raises(ValueError, match="lr: 0.001 -> 1"):
    check_or_write_config(tmp_path, {**reordered, "lr": 1})


def test_check_or_write_config_same_config_passes(tmp_path):
  wd = tmp_path / "run"
  assert check_or_write_config(wd, CFG) is True
  assert read_json(wd / "config.json") == CFG
  assert check_or_write_config(wd, dict(CFG)) is False
  assert check_or_write_config(wd, {**CFG, "lr": np.float64(1e-3)}) is False
  assert sorted(os.listdir(wd)) == ["config.json"]


def test_check_or_write_config_difference_raises(tmp_path):
  wd = tmp_path / "run"
  check_or_write_config(wd, CFG)
  new = {**CFG, "model": {**CFG["model"], "width": 512}}
  with pytest.raises(ValueError) as e:
    check_or_write_config(wd, new)
  msg = str(e.value)
  assert str(wd) in msg
  assert "model.width: 256 -> 512" in msg
  assert "new workdir" in msg
  assert "depth" not in msg  # only differing keys are listed


def test_check_or_write_config_added_removed_and_many_keys(tmp_path):
  wd = tmp_path / "run"
  check_or_write_config(wd, {"a": 1, **{f"k{i:02d}": i for i in range(15)}})
  new = {"b": 2, **{f"k{i:02d}": -i for i in range(15)}}
  with pytest.raises(ValueError) as e:
    check_or_write_config(wd, new)
  msg = str(e.value)
  assert "a: 1 -> <missing>" in msg and "b: <missing> -> 2" in msg
  assert "k01: 1 -> -1" in msg
  assert "16 differing key(s)" in msg and "... and 6 more" in msg


def test_check_or_write_config_ignored_keys(tmp_path):
  wd = tmp_path / "run"
  check_or_write_config(wd, CFG, keys_ignored=("num_workers",))
  changed = {**CFG, "num_workers": 16, "model": {**CFG["model"], "act": "relu"}}
  # A nested dotted key and a whole-subtree parent key may both be ignored.
  assert check_or_write_config(wd, changed, keys_ignored=("num_workers", "model.act")) is False
  assert check_or_write_config(wd, changed, keys_ignored=("num_workers", "model")) is False
  with pytest.raises(ValueError, match="model.act"):
    check_or_write_config(wd, changed, keys_ignored=("num_workers",))
  with pytest.raises(ValueError, match="num_workers: 4 -> 16"):
    check_or_write_config(wd, changed, keys_ignored=("model",))
  # The stored config keeps the first run's values.
  assert read_json(wd / "config.json") == CFG


def test_keys_added_to_the_code_later_pass_at_their_default(tmp_path):
  wd = tmp_path / "run"
  check_or_write_config(wd, {"lr": 1, "sweep": {"ns": [1, 2]}})  # written by older code
  defaults = {"lr": 0, "sweep": {"ns": [], "member_batch": 0}, "precision": "default"}
  newer = {"lr": 1, "sweep": {"ns": [1, 2], "member_batch": 0}, "precision": "default"}
  assert check_or_write_config(wd, newer, defaults=defaults) is False
  check_config(wd, newer, defaults=defaults)
  # At another value the new key would change results: refused, as before.
  other = {**newer, "sweep": {"ns": [1, 2], "member_batch": 3}}
  with pytest.raises(ValueError, match="sweep.member_batch: <absent: ran as 0> -> 3") as e:
    check_or_write_config(wd, other, defaults=defaults)
  # The only differences are keys the run predates: say how to go on as it ran.
  assert "set sweep.member_batch=0; otherwise pick a new workdir" in str(e.value)
  with pytest.raises(ValueError, match="(?s)lr: 1 -> 2.*must not be mixed") as e:
    check_or_write_config(wd, {**other, "lr": 2}, defaults=defaults)
  assert "to go on as it ran" not in str(e.value)  # another difference: no such advice
  with pytest.raises(ValueError, match="precision: <missing>"):
    check_config(wd, newer)  # without defaults every missing key differs
  # A key the stored config has is compared as always, default or not.
  with pytest.raises(ValueError, match="lr: 1 -> 0"):
    check_config(wd, {**newer, "lr": 0}, defaults=defaults)


def test_renamed_keys_are_read_under_their_new_names(tmp_path):
  wd = tmp_path / "run"
  # Written by code that called the keys target_psnr and opt.{name, lr}.
  check_or_write_config(wd, {"target_psnr": 35.0, "opt": {"name": "sgd", "lr": 0.1}})
  renamed = {"target_psnr": "target", "opt": "optimizer"}
  newer = {"target": 35.0, "optimizer": {"name": "sgd", "lr": 0.1}}
  assert check_or_write_config(wd, newer, renamed=renamed) is False
  check_config(wd, newer, renamed=renamed)
  # The values are still compared under the new names; a parent renames its subtree.
  with pytest.raises(ValueError, match="optimizer.lr: 0.1 -> 0.3"):
    check_config(wd, {**newer, "optimizer": {"name": "sgd", "lr": 0.3}}, renamed=renamed)
  with pytest.raises(ValueError, match="target_psnr: 35.0 -> <missing>"):
    check_config(wd, newer)  # without the map, a rename is a difference
  assert read_json(wd / "config.json")["target_psnr"] == 35.0  # the record is left as it was


def test_check_or_write_config_type_changes_count(tmp_path):
  wd = tmp_path / "run"
  check_or_write_config(wd, {"flag": True, "lr": 1})
  with pytest.raises(ValueError, match="flag: true -> 1"):
    check_or_write_config(wd, {"flag": 1, "lr": 1})


# --------------------------------------------------------------------------- #
# Invalid JSON names the file
# --------------------------------------------------------------------------- #
def test_truncated_config_names_the_file(tmp_path):
  check_or_write_config(tmp_path, CFG)
  path = tmp_path / "config.json"
  path.write_text(path.read_text()[:25])  # e.g. a copy cut short
  for call in (lambda: check_or_write_config(tmp_path, CFG), lambda: check_config(tmp_path, CFG)):
    with pytest.raises(ValueError) as e:
      call()
    msg = str(e.value)
    assert str(path) in msg and "not valid JSON" in msg
    assert "pick a new workdir" in msg  # says what to do
    assert "\n" not in msg


@pytest.mark.parametrize("content", [b'{"a": [1, 2', b"", b'{"a": "\xff\xfe"}'])
def test_read_json_invalid_names_the_file(tmp_path, content):
  path = tmp_path / "results.json"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=r"results\.json is not valid JSON .*restore it"):
    read_json(path)


def test_read_jsonl_invalid_line_names_file_and_line(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_bytes(b'{"i": 0}\n\xff\n')
  with pytest.raises(ValueError, match=r"r\.jsonl:2 is not valid JSON"):
    read_jsonl(path)


# --------------------------------------------------------------------------- #
# check_config (read-only check) and atomic bytes
# --------------------------------------------------------------------------- #
def test_check_config_writes_nothing(tmp_path):
  with pytest.raises(ValueError, match="holds no config.json"):
    check_config(tmp_path / "empty", CFG)
  assert not (tmp_path / "empty").exists()
  check_or_write_config(tmp_path, CFG)
  before = (tmp_path / "config.json").read_bytes()
  check_config(tmp_path, dict(CFG))
  with pytest.raises(ValueError, match="seed: 0 -> 1"):
    check_config(tmp_path, {**CFG, "seed": 1})
  check_config(tmp_path, {**CFG, "num_workers": 8}, keys_ignored=("num_workers",))
  assert (tmp_path / "config.json").read_bytes() == before
  assert os.listdir(tmp_path) == ["config.json"]


def test_atomic_write_bytes_failed_rename_leaves_nothing(tmp_path, monkeypatch):
  path = tmp_path / "a.png"
  nio.atomic_write_bytes(path, b"old")

  def fail(*args):
    raise OSError("disk gone")

  monkeypatch.setattr(nio.os, "replace", fail)
  with pytest.raises(OSError, match="disk gone"):
    nio.atomic_write_bytes(path, b"new")
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["a.png"]


# --------------------------------------------------------------------------- #
# Workdir lock
# --------------------------------------------------------------------------- #
_HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from nfscale import io
with io.workdir_lock({wd!r}, name={name!r}, shared={shared}, what="sweep"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold(wd, name=".lock", shared=False):
  """A child process holding the lock; returns once it holds it."""
  code = _HOLD.format(root=str(IO_SOURCE.parents[1]), wd=str(wd), name=name, shared=shared)
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_a_workdir_inside_a_file_is_refused_before_anything(tmp_path):
  # Its creation (after the whole config was checked) failed with NotADirectoryError,
  # a traceback from launch.train and launch.sweep.
  (tmp_path / "notes.txt").write_text("x")
  for workdir in (tmp_path / "notes.txt" / "run", tmp_path / "notes.txt" / "a" / "b"):
    with pytest.raises(ValueError, match=r"cannot be created: .*notes.txt' is not a directory"):
      nio.check_workdir_path(str(workdir))
  nio.check_workdir_path(str(tmp_path / "new" / "run"))  # missing parents are created


def test_workdir_lock_refuses_a_second_holder_naming_pid(tmp_path):
  proc = _hold(tmp_path)
  try:
    with pytest.raises(nio.WorkdirLockedError) as e:
      with nio.workdir_lock(tmp_path, what="sweep"):
        pytest.fail("entered a lock another process holds")
    msg = str(e.value)
    assert str(tmp_path) in msg and f"pid {proc.pid}" in msg and "in use by a sweep" in msg
    assert isinstance(e.value, ValueError)  # reported as a usage error
    # Another lock name is an independent lock.
    with nio.workdir_lock(tmp_path, name=".lock.other"):
      pass
  finally:
    proc.kill()  # SIGKILL: the kernel must release the lock.
    proc.wait()
  with nio.workdir_lock(tmp_path):
    assert f'"pid": {os.getpid()}' in (tmp_path / ".lock").read_text()


def test_workdir_lock_shared_holders_coexist_and_exclude_exclusive(tmp_path):
  with nio.workdir_lock(tmp_path):  # leaves our pid in the file
    pass
  proc = _hold(tmp_path, shared=True)
  try:
    with nio.workdir_lock(tmp_path, shared=True, what="sweep"):
      pass
    with pytest.raises(nio.WorkdirLockedError) as e:
      with nio.workdir_lock(tmp_path, what="training run"):
        pass
    # The earlier exclusive holder's pid is stale and must not be named; the shared
    # holders say what they are (it read "another training run" before).
    msg = str(e.value)
    assert "in use by a sweep (shared by several processes" in msg, msg
    assert str(os.getpid()) not in msg
  finally:
    proc.kill()
    proc.wait()
  with nio.workdir_lock(tmp_path):
    with pytest.raises(nio.WorkdirLockedError):
      with nio.workdir_lock(tmp_path, shared=True):
        pass


def test_exclusive_holder_removes_temps_that_killed_writers_left(tmp_path):
  # A write killed between mkstemp and the rename leaves .NAME.XXXXXXXX.tmp behind;
  # no rerun removed them. The workdir lock's exclusive holder is the only writer.
  stale = [".config.json.ab12_xYz.tmp", ".theory.png.0a1b2c3d.tmp"]
  keep = ["notes.tmp", ".hidden", ".x.tmp", "results.json"]
  for name in stale + keep:
    (tmp_path / name).write_text("x")
  proc = _hold(tmp_path, shared=True)
  try:
    with nio.workdir_lock(tmp_path, name=".lock.share0"):  # a share lock: others write
      pass
    assert all((tmp_path / n).exists() for n in stale)
  finally:
    proc.kill()
    proc.wait()
  with nio.workdir_lock(tmp_path):
    pass
  assert sorted(os.listdir(tmp_path)) == sorted(keep + [".lock", ".lock.share0"])
