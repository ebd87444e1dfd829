"""Scaling sweeps: resumable after SIGKILL, config pinning, host split, forced devices,
one run per workdir, a report however little finished."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from nfscale import io, sweep, sweep_report

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
import configs  # noqa: E402
import xla_cache  # noqa: E402  (tests/xla_cache.py)
from configs import scaling_shallow  # noqa: E402

# The paper-style figures every report writes besides scaling.png.
FIGURES = ["figure_width.png", "figure_width.pdf", "figure_params.png", "figure_params.pdf"]
CMD = [
    sys.executable,
    "-m",
    "launch.sweep",
    "--config=configs/scaling_shallow.py:tiny",
    "--config.theory.enabled=False",
]


def _tiny(**theory):
  c = scaling_shallow.get_config("tiny")
  with c.unlocked():
    c.theory.enabled = bool(theory.get("enabled", False))
  return c


def _comparable(points):
  """Point records without wall-clock fields, keyed by (arm, n)."""
  out = {}
  for p in points:
    out[(p["arm"], p["n"])] = {k: v for k, v in p.items() if "seconds" not in k}
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ref")
  with xla_cache.off():  # as in a user's process: the sweep caches into its workdir
    report = sweep.run_sweep(_tiny(), str(workdir))
    # What the sweep left behind, for test_the_sweep_cache_serves_the_sweep_only.
    cache = workdir / sweep.COMPILE_CACHE_DIR
    _AFTER_SWEEP["written"] = set(os.listdir(cache)) if cache.is_dir() else set()
    _AFTER_SWEEP["settings"] = [getattr(jax.config, name) for name in xla_cache.SETTINGS]
    jax.jit(lambda x: jnp.sin(x) * 3.25 + 0.5)(jnp.ones(13)).block_until_ready()
    _AFTER_SWEEP["then"] = set(os.listdir(cache)) if cache.is_dir() else set()
  return workdir, report


_AFTER_SWEEP = {}


def test_tiny_sweep_writes_report(reference):
  workdir, report = reference
  for f in (
      "config.json",
      "points.jsonl",
      "evals.jsonl",
      "table.csv",
      "table.md",
      "fits.json",
      "scaling.png",
  ):
    assert (workdir / f).stat().st_size > 0, f
  assert report["points"] == report["expected_points"] == 3
  rows = report["rows"]
  assert {(r["n"], r["scheme"]) for r in rows} == {
      (n, s) for n in (6, 10, 14) for s in ("lecun_normal", "init1")
  }
  for r in rows:
    if r["found"]:
      # The found width trained to the target; the lower bound did not.
      assert r["lower_bound"] < r["min_width"] <= 64
      assert r["param_count"] == 3 * r["min_width"] + 1
  evals = io.read_jsonl(workdir / "evals.jsonl")
  for e in evals:
    for s, v in e["schemes"].items():
      assert v["success"] == (sum(v["reached"][0]) >= 1)  # one seed, one lr
  fitted = [f for f in report["fits"] if f.get("b") is not None]
  for f in fitted:  # both intervals around their exponents
    assert f["b_t_low"] <= f["b"] <= f["b_t_high"]
    assert f["b_width_t_low"] <= f["b_width"] <= f["b_width_t_high"]
  assert fitted and "b_width_t_low" in (workdir / "table.md").read_text()


@pytest.mark.slow  # ~90 s on 2 cores; tests/test_resume.py kills and resumes a run by default
def test_resume_after_sigkill_reproduces_uninterrupted(reference, tmp_path):
  ref_dir, _ = reference
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(
      CMD + [f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  evals = workdir / "evals.jsonl"
  deadline = time.time() + 240
  # Kill after the first few trained widths, i.e. mid-point.
  while time.time() < deadline and proc.poll() is None:
    if evals.exists() and len(io.read_jsonl(evals)) >= 3:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished_before = len(io.read_jsonl(workdir / "points.jsonl", missing_ok=True))
  assert finished_before < 3, "the sweep finished before it could be killed"
  out = subprocess.run(
      CMD + [f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "points finished: 3 / 3" in out.stdout
  got = io.read_jsonl(workdir / "points.jsonl")
  want = io.read_jsonl(ref_dir / "points.jsonl")
  assert len(got) == 3  # no duplicate point
  assert _comparable(got) == _comparable(want)
  # No width was trained twice: the resumed run reused evals.jsonl.
  keys = [
      (e["arm"], e["n"], e["width"], tuple(e["schemes"]))
      for e in io.read_jsonl(workdir / "evals.jsonl")
  ]
  assert len(keys) == len(set(keys))


def test_changed_config_is_refused(reference):
  workdir, _ = reference
  c = _tiny()
  with c.unlocked():
    c.steps = 401
  with pytest.raises(ValueError, match="steps: 400 -> 401"):
    sweep.run_sweep(c, str(workdir))
  # progress is not part of the result: a rerun that only differs there resumes.
  c = _tiny()
  with c.unlocked():
    c.progress = True
  assert sweep.run_sweep(c, str(workdir), progress=False)["points"] == 3


def test_host_split_merges_to_the_same_result(reference, tmp_path):
  ref_dir, _ = reference
  for index in (0, 1):
    sweep.run_sweep(_tiny(), str(tmp_path), host=(index, 2), report=False)
  # The compilation cache is there too unless the process has a cache of its own.
  assert sorted(set(os.listdir(tmp_path)) - {sweep.COMPILE_CACHE_DIR}) == sorted([
      "config.json",
      "points.0.jsonl",
      "points.1.jsonl",
      "evals.0.jsonl",
      "evals.1.jsonl",
      ".lock",
      ".lock.host0",
      ".lock.host1",
      ".lock.split",
      ".lock.count2",
  ])
  assert len(io.read_jsonl(tmp_path / "points.0.jsonl")) == 2  # points 0 and 2
  report = sweep_report.write_report(_tiny(), str(tmp_path))
  assert report["points"] == 3
  assert _comparable(sweep_report.read_points(str(tmp_path))) == _comparable(
      sweep_report.read_points(str(ref_dir))
  )


def test_resume_on_another_host_count_reuses_every_shares_evaluations(tmp_path, monkeypatch):
  seen = {}

  def killed_mid_search(config, arm, n, cache, on_eval, **kwargs):
    on_eval([{"arm": arm, "n": n, "width": 8, "schemes": {}, "lrs": [0.1]}])
    raise KeyboardInterrupt  # the share dies before the point is recorded

  def resumed(config, arm, n, cache, on_eval, **kwargs):
    seen[n] = sorted(k[2] for k in cache if k[:2] == (arm, n))
    return {"arm": arm, "n": n, "schemes": {}}

  monkeypatch.setattr(sweep, "run_point", killed_mid_search)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(_tiny(), str(tmp_path), host=(1, 2), report=False)  # the 2nd point
  monkeypatch.setattr(sweep, "run_point", resumed)
  sweep.run_sweep(_tiny(), str(tmp_path), report=False)  # one process now: evals.jsonl
  n = sweep_report.sweep_points(_tiny())[1][1]
  assert seen[n] == [8]


def test_a_share_split_by_hand_writes_no_report(tmp_path, monkeypatch):
  # Each --host share wrote a report of the points done so far into the same files:
  # two shares finishing together could leave table.md of one and fits.json of the other.
  monkeypatch.setattr(sweep, "run_point", lambda c, arm, n, *a, **k: {"arm": arm, "n": n})
  monkeypatch.setattr(sweep, "write_report", lambda *a: pytest.fail("a share wrote a report"))
  out = sweep.run_sweep(_tiny(), str(tmp_path), host=(0, 2))
  assert out["report_written_by"] == "report_only" and len(out["points"]) == 2


def test_resume_on_another_host_count_reuses_every_shares_theory(tmp_path, monkeypatch):
  # The eq. 4.6 cache was per share too: a point that moved to another share computed
  # its condition widths again (SVDs, seconds to minutes per scheme).
  computed = []

  def fake_point(config, arm, n, cache, on_eval, theory_fn=None, **kwargs):
    theory_fn(config, arm, n)
    return {"arm": arm, "n": n, "schemes": {}}

  def compute(scheme):
    computed.append(scheme)
    return {"condition_width": 64}

  def fake_theory(config, arm, n, cache_path=None, also_read=()):
    from nfscale import theory

    return theory.cached_per_scheme(cache_path, arm, n, ["init1"], compute, also_read=also_read)

  c = _tiny(enabled=True)
  with c.unlocked():
    c.theory.max_n = 10**6
  monkeypatch.setattr(sweep, "run_point", fake_point)
  monkeypatch.setattr(sweep, "theory_widths", fake_theory)
  sweep.run_sweep(c, str(tmp_path), host=(1, 2), report=False)  # the odd points' theory
  assert computed and (tmp_path / "theory.1.jsonl").exists()
  first = len(computed)
  for name in ("points.1.jsonl", "points.jsonl"):  # as if share 1's points were cut off
    (tmp_path / name).unlink(missing_ok=True)
  sweep.run_sweep(c, str(tmp_path), report=False)  # one process now: theory.jsonl
  assert len(computed) == len(sweep_report.sweep_points(c)) and first < len(computed)


@pytest.mark.parametrize("process", [0, 1])
def test_every_process_waits_for_the_merged_report(tmp_path, monkeypatch, process):
  events = []
  monkeypatch.setattr(sweep.jax, "process_count", lambda: 2)
  monkeypatch.setattr(sweep.jax, "process_index", lambda: process)
  monkeypatch.setattr(sweep.sharding, "barrier", events.append)
  monkeypatch.setattr(sweep, "run_point", lambda c, arm, n, *a, **k: {"arm": arm, "n": n})
  monkeypatch.setattr(sweep, "write_report", lambda *a: events.append("report") or {})
  sweep.run_sweep(_tiny(), str(tmp_path), host=(process, 2))
  # A process that left early entered JAX's shutdown barrier, which after 5 minutes
  # ended every process, process 0 in the middle of its report included.
  report = ["report"] if process == 0 else []
  assert events == ["nfscale_sweep_points_done", *report, "nfscale_sweep_report_written"]


@pytest.mark.slow  # a whole sweep in a subprocess; test_sharding covers the engine itself
def test_forced_devices_give_the_same_widths(reference, tmp_path):
  ref_dir, _ = reference
  script = (
      "import jax; jax.config.update('jax_num_cpu_devices', 4)\n"
      "import sys; sys.path.insert(0, '.')\n"
      "from configs import scaling_shallow; from nfscale import sweep\n"
      "assert len(jax.devices()) == 4\n"
      "c = scaling_shallow.get_config('tiny')\n"
      "with c.unlocked(): c.theory.enabled = False\n"
      f"sweep.run_sweep(c, {str(tmp_path)!r})\n"
  )
  out = subprocess.run(
      [sys.executable, "-c", script],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  assert out.returncode == 0, out.stderr[-2000:]
  got = {
      k: {s: r["min_width"] for s, r in v["schemes"].items()}
      for k, v in _comparable(sweep_report.read_points(str(tmp_path))).items()
  }
  want = {
      k: {s: r["min_width"] for s, r in v["schemes"].items()}
      for k, v in _comparable(sweep_report.read_points(str(ref_dir))).items()
  }
  assert got == want


def test_bad_sweep_configs(tmp_path):
  c = _tiny()
  with c.unlocked():
    c.sweep.arms = ("gauss",)
  # It read "Unknown arms ['gauss']; ...", naming no config key.
  with pytest.raises(ValueError, match=r"config.sweep.arms: unknown arms \['gauss'\]; defined"):
    sweep.run_sweep(c, str(tmp_path))
  c = _tiny()
  with c.unlocked():
    c.sweep.ns = ()
  with pytest.raises(ValueError, match="config.sweep.ns must not be empty"):
    sweep.run_sweep(c, str(tmp_path))
  c = _tiny()
  with c.unlocked():
    c.target = None
  with pytest.raises(ValueError, match="target"):
    sweep.run_sweep(c, str(tmp_path))
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match="median, all, any"):
    sweep.success(np.array([True]), "most")


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("sweep.buckets", "nonsense", "sweep.buckets must be"),
        ("sweep.arms", (), "sweep.arms must name at least one arm"),
        ("sweep.rule", "most", "sweep.rule: Unknown success rule"),
        ("sweep.ns", (6, 6, 10), "sweep.ns holds 6 more than once"),
        ("sweep.ns", (0, 6), "sweep.ns must hold positive integers"),
        # These ended in sorted()'s or int()'s own error, with a traceback.
        ("sweep.ns", (6, "abc"), "sweep.ns must hold positive integers"),
        ("sweep.ns", (float("inf"),), "sweep.ns must hold positive integers"),
        ("sweep.start", 0, "sweep.start must be an integer >= 1"),
        ("sweep.max_width", 1, "sweep.max_width must be an integer >= 2"),
        ("sweep.growth", 1.0, "sweep.growth must be a finite number > 1"),
        ("sweep.rel_precision", -1.0, "sweep.rel_precision must be a finite number >= 0"),
        ("sweep.member_batch", -3, "sweep.member_batch must be an integer >= 0"),
        ("sweep.lr_extensions", -1, "sweep.lr_extensions must be an integer >= 0"),
        ("theory.max_width", -1, "theory.max_width must be an integer"),
        ("steps", 0, "arm 'sinc' at N=14: config.steps must be"),
        ("optimizer", "sgdd", "Unknown optimizer 'sgdd'"),
        ("seeds", (), "must be non-empty"),
        ("seeds", (0.5,), "config.seeds must hold integers"),
        ("lrs", (float("nan"),), "config.lrs must hold positive finite"),
        ("target", float("inf"), "config.target must be a finite number"),
        ("data.dense_points", 0, r"config.data.dense_points must be an integer in \[2, "),
        # Only the largest N was checked: N=1 wrote config.json, then failed.
        (
            "sweep.ns",
            (1, 14),
            r"arm 'sinc' at N=1: config.data.num_points must be an integer in \[2, ",
        ),
        # The point's errors named config.model.*, a key the user never wrote.
        ("arms.sinc.activation", "foo", "config.arms.sinc.activation: Unknown activation 'foo'"),
        ("arms.sinc.activation_params.omega", -3.0, "config.arms.sinc.activation_params: omega"),
        # Each point's model.hidden starts with it: "hidden widths ... must be positive".
        ("sweep.hidden_prefix", (0,), "config.sweep.hidden_prefix must be a sequence"),
    ],
)
def test_every_bad_setting_is_refused_before_the_workdir_is_touched(tmp_path, key, value, message):
  # Each of these used to write config.json first (and some trained a whole point), so
  # the corrected command was then refused as a different configuration.
  c = _tiny(enabled=True)
  *parents, last = key.split(".")
  node = c
  for part in parents:
    node = node[part]
  with c.unlocked():
    node[last] = value
  with pytest.raises(ValueError, match=message):
    sweep.run_sweep(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "key,value",
    [
        ("arms", "sinc"),
        ("ns", 14),
        ("ns", "14"),
        ("arms", {"sinc": 1}),
        # Read by truth value: "false" counted as on.
        ("lr_censored", "false"),
    ],
)
def test_a_scalar_or_string_for_a_sweep_list_is_named(tmp_path, key, value):
  # A config built from a dict (config.json, to_dict) holds what it was given: "sinc" was
  # read one letter at a time ("unknown arms ['s', 'i', 'n', 'c']"), 14 was a TypeError.
  d = _tiny().to_dict()
  d["sweep"][key] = value
  with pytest.raises(ValueError, match=f"config.sweep.{key} must be (a sequence|True or False)"):
    sweep.run_sweep(ml_collections.ConfigDict(d), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_records_without_config_json_are_refused(reference, tmp_path):
  # "Delete config.json to start over" would have reported the old records under the
  # new config without training anything.
  workdir, _ = reference
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  (copy / "config.json").unlink()
  before = sorted(os.listdir(copy))
  with pytest.raises(ValueError, match=r"holds sweep records \(evals.jsonl, points.jsonl\)"):
    sweep.run_sweep(_tiny(), str(copy))
  assert sorted(os.listdir(copy)) == before


def test_report_of_a_run_that_predates_a_key_is_built_as_it_ran(reference, tmp_path):
  # The documented --report_only rebuilds of docs/results failed once complex_as_real
  # existed: the runs predate it, and today's default read as another configuration.
  workdir, _ = reference
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  stored = io.read_json(copy / "config.json")
  del stored["complex_as_real"], stored["sweep"]["lr_censored"]
  io.atomic_write_text(copy / "config.json", json.dumps(stored))
  with pytest.raises(ValueError, match="complex_as_real: <absent: ran as false> -> true"):
    sweep_report.write_report(_tiny(), str(copy))
  config, adopted = sweep_report.as_run(_tiny(), str(copy))
  assert adopted == {"sweep.lr_censored": False, "complex_as_real": False}
  assert config.complex_as_real is False and _tiny().complex_as_real is True
  assert sweep_report.write_report(config, str(copy))["points"]
  # Any other difference is still refused.
  other = _tiny()
  other.steps += 1
  with pytest.raises(ValueError, match="steps: "):
    sweep_report.write_report(sweep_report.as_run(other, str(copy))[0], str(copy))
  assert sweep_report.as_run(_tiny(), str(workdir))[1] == {}  # nothing to adopt


# The commands of docs/results.md that wrote the stored sweeps (their configs; the
# progress bar setting is ignored by the comparison).
STORED_SWEEPS = {
    "shallow_paper_h200": ("scaling_shallow", None, {"scheme_params.omega": 30.0}),
    "shallow_quick_cpu": ("scaling_shallow", "quick", {}),
    "sphere_quick_cpu": ("scaling_shallow", "quick,sphere", {}),
    "deep_quick_cpu": ("scaling_deep", "quick", {}),
    "deep_quick_wide_cpu": ("scaling_deep", "quick,wide", {}),
}


@pytest.mark.parametrize("run", sorted(STORED_SWEEPS))
def test_stored_sweeps_rebuild_with_their_commands(run):
  # results.md says its --report_only commands rebuild these reports; a key added
  # later must not break them (it did once: complex_as_real).
  name, preset, overrides = STORED_SWEEPS[run]
  config = configs.get(name, preset)
  with config.unlocked():
    for key, value in overrides.items():
      group, last = key.rsplit(".", 1)
      config[group][last] = value
  workdir = ROOT / "docs" / "results" / run
  io.check_config(
      workdir, sweep_report.as_run(config, str(workdir))[0].to_dict(), **sweep_report.config_rules()
  )
  assert sorted(STORED_SWEEPS) == sorted(
      p.parent.name for p in (ROOT / "docs" / "results").glob("*/points.jsonl")
  )


def test_rerun_removes_truncated_compilation_cache_entries(reference, tmp_path):
  # JAX writes cache entries in place: a run killed mid-write left a truncated entry
  # that every later run warned about and compiled again (JAX never rewrites it).
  workdir, _ = reference
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  cache = copy / sweep.COMPILE_CACHE_DIR
  cache.mkdir(exist_ok=True)
  entry = zlib.compress(os.urandom(4096))
  (cache / "jit_good-0-cache").write_bytes(entry)
  (cache / "jit_cut-1-cache").write_bytes(entry[: len(entry) // 2])
  sweep.run_sweep(_tiny(), str(copy), report=False)
  assert (cache / "jit_good-0-cache").read_bytes() == entry
  assert not (cache / "jit_cut-1-cache").exists()


def test_the_sweep_cache_serves_the_sweep_only(reference):
  # run_sweep left <workdir>/.jax_cache as the process's persistent compilation cache (with
  # every size and compile time cached): in a notebook each program compiled afterwards,
  # and a later sweep's, was written into the first sweep's workdir.
  if xla_cache.AT_START[0]:
    pytest.skip("the process has a compilation cache of its own, which sweeps keep")
  del reference  # ran the sweep, then compiled a program, and recorded the cache
  assert _AFTER_SWEEP["written"]  # the sweep's programs were cached while it ran
  # JAX's defaults are back: no cache directory, the 1 s minimum compile time.
  assert _AFTER_SWEEP["settings"] == list(xla_cache.AT_START)
  assert _AFTER_SWEEP["then"] == _AFTER_SWEEP["written"]


# --------------------------------------------------------------------------- #
# --report_only is checked like a run
# --------------------------------------------------------------------------- #
def test_report_with_another_config_is_refused(reference, tmp_path):
  workdir, _ = reference
  before = (workdir / "table.md").read_bytes()
  c = _tiny()
  with c.unlocked():
    c.target = 40.0
    c.steps = 5000
  with pytest.raises(ValueError, match=r"steps: 400 -> 5000") as e:
    sweep_report.write_report(c, str(workdir))
  assert "target: 20.0 -> 40.0" in str(e.value)
  assert (workdir / "table.md").read_bytes() == before  # nothing relabelled
  with pytest.raises(ValueError, match="holds no config.json"):
    sweep_report.write_report(_tiny(), str(tmp_path / "never_ran"))
  # The same config (up to keys that do not change results) re-renders.
  c = _tiny()
  with c.unlocked():
    c.progress = True
  assert sweep_report.write_report(c, str(workdir))["points"] == 3


# --------------------------------------------------------------------------- #
# --host
# --------------------------------------------------------------------------- #
def test_parse_host():
  assert sweep.parse_host("0/1") == (0, 1)
  assert sweep.parse_host(" 3 / 4 ") == (3, 4)
  for bad in ("0/0", "5/2", "2/2", "-1/2", "x", "1", "1/2/3", "a/b", "1.0/2", ""):
    with pytest.raises(ValueError, match="0 <= index < count") as e:
      sweep.parse_host(bad)
    assert repr(bad) in str(e.value) and "\n" not in str(e.value)


def test_bad_host_fails_before_touching_the_workdir(tmp_path):
  for host in ((0, 0), (5, 2), (-1, 2)):
    with pytest.raises(ValueError, match="0 <= index < count"):
      sweep.run_sweep(_tiny(), str(tmp_path / "w"), host=host)
  assert not (tmp_path / "w").exists()


def test_cli_bad_host_is_a_one_line_error(tmp_path):
  out = subprocess.run(
      CMD + [f"--workdir={tmp_path}", "--host=0/0"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert out.returncode != 0
  assert "host '0/0' is not a valid 'index/count'" in out.stderr
  assert "ZeroDivisionError" not in out.stderr and "Traceback" not in out.stderr
  assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- #
# One sweep per workdir
# --------------------------------------------------------------------------- #
def test_second_sweep_on_a_running_workdir_refuses(tmp_path):
  workdir = tmp_path / "busy"
  proc = subprocess.Popen(
      CMD + [f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  try:
    deadline = time.time() + 240
    lock = workdir / ".lock"
    while time.time() < deadline and proc.poll() is None:
      if lock.exists() and str(proc.pid) in lock.read_text():
        break
      time.sleep(0.05)
    assert proc.poll() is None, "the first sweep ended before the test could race it"
    with pytest.raises(io.WorkdirLockedError) as e:
      sweep.run_sweep(_tiny(), str(workdir))
    msg = str(e.value)
    assert str(workdir) in msg and f"pid {proc.pid}" in msg and "in use by a sweep" in msg
  finally:
    proc.kill()
    proc.wait()
  # The kernel dropped the killed holder's lock: a rerun may take it.
  with sweep._locks(str(workdir), 0, 1):
    assert str(os.getpid()) in (workdir / ".lock").read_text()


def test_host_shares_lock_independently(tmp_path):
  with sweep._locks(str(tmp_path), 0, 2):
    with sweep._locks(str(tmp_path), 1, 2):  # the other share runs alongside
      pass
    with pytest.raises(io.WorkdirLockedError, match="host share 0/2"):
      with sweep._locks(str(tmp_path), 0, 2):
        pass
    with pytest.raises(io.WorkdirLockedError, match=r"in use by a sweep \(shared"):
      with sweep._locks(str(tmp_path), 0, 1):  # a whole-sweep run
        pass
    with pytest.raises(io.WorkdirLockedError, match="split into 2 host shares"):
      with sweep._locks(str(tmp_path), 2, 3):  # would overlap share 1/2 at point 5
        pass
  with sweep._locks(str(tmp_path), 2, 3):  # the 2-way split has ended
    pass
  with sweep._locks(str(tmp_path), 0, 1):
    with pytest.raises(io.WorkdirLockedError):
      with sweep._locks(str(tmp_path), 1, 2):
        pass


# --------------------------------------------------------------------------- #
# A report however little finished
# --------------------------------------------------------------------------- #
def test_unreachable_target_still_writes_the_report(tmp_path):
  c = _tiny()
  with c.unlocked():
    c.target = 200.0  # no float32 fit reaches it
    c.sweep.max_width = 4
    c.steps = 20
    c.chunk_steps = 20
  report = sweep.run_sweep(c, str(tmp_path))
  for f in ("table.csv", "table.md", "fits.json", "scaling.png"):
    assert (tmp_path / f).stat().st_size > 0, f
  assert all(not r["found"] and r["lower_bound"] == 4 for r in report["rows"])
  # The lower bound's parameter count comes from the trained width (1-hidden, 1-D: 3w+1).
  assert all(r["lower_bound_params"] == 13 for r in report["rows"])
  for f in io.read_json(tmp_path / "fits.json"):
    assert f["note"] == "no fit: no N reached the target" and f["censored"] == 3
    assert "b" not in f
  assert "no fit: no N reached the target" in sweep_report.format_report(report)
  assert "censored" in (tmp_path / "table.md").read_text()
  # Rerunning (the resume path) and re-rendering both work again.
  assert sweep.run_sweep(c, str(tmp_path))["points"] == 3
  assert sweep_report.write_report(c, str(tmp_path))["artifacts"] == ["scaling.png", *FIGURES]


def _point(arm, n, found, width=None, lower=0, params=None, theory=None):
  r = {
      "min_width": width if found else None,
      "found": found,
      "lower_bound": lower,
      "param_count": params if found else None,
      "best_lr": 0.1 if found else None,
      "evaluations": {},
  }
  if theory is not None:
    r["theory"] = {"condition_width": theory, "found": bool(theory)}
  return {
      "arm": arm,
      "n": n,
      "schemes": {"lecun_normal": r, "init1": dict(r)},
      "rounds": 1,
      "seconds": 0.0,
      "trained_seconds": 0.0,
  }


@pytest.mark.parametrize(
    "found_ns, note",
    [
        ((), "no fit: no N reached the target"),
        ((6,), "no fit: 1 N reached the target, a fit needs 3"),
        ((6, 10), "no fit: 2 N reached the target, a fit needs 3"),
        ((6, 10, 14), None),
    ],
)
def test_report_from_partial_points(tmp_path, found_ns, note):
  c = _tiny()
  io.check_or_write_config(tmp_path, c.to_dict())
  for n in (6, 10, 14):
    w = n // 2
    io.append_jsonl(
        tmp_path / "points.jsonl",
        _point(
            "sinc",
            n,
            n in found_ns,
            w,
            lower=w - 1 if n in found_ns else 64,
            params=3 * w + 1,
            theory=0,
        ),
    )
  report = sweep_report.write_report(c, str(tmp_path))
  fits = report["fits"]
  assert len(fits) == 2
  for f in fits:
    assert f["points"] == len(found_ns) and f["censored"] == 3 - len(found_ns)
    if note is None:
      assert f["b"] == pytest.approx(1.0, abs=0.2) and "note" not in f
    else:
      assert f["note"] == note and f.get("b") is None
  assert (tmp_path / "scaling.png").stat().st_size > 0
  # theory.png too: every condition width is missing, so the panel says so.
  assert report["artifacts"] == ["scaling.png", *FIGURES, "theory.png"]
  text = sweep_report.format_report(report)
  assert (note or "[") in text


def test_report_of_an_empty_workdir(tmp_path):
  io.check_or_write_config(tmp_path, _tiny().to_dict())
  report = sweep_report.write_report(_tiny(), str(tmp_path))
  assert report["points"] == 0 and report["rows"] == []
  assert {f["note"] for f in report["fits"]} == {"no fit: no finished point"}
  assert (tmp_path / "scaling.png").stat().st_size > 0
  # Not "from before batching existed": there is nothing at all yet.
  table = (tmp_path / "table.md").read_text()
  assert "member batches: no evaluation trained yet" in table and "from before" not in table


def test_truncated_config_names_the_file(tmp_path):
  io.check_or_write_config(tmp_path, _tiny().to_dict())
  path = tmp_path / "config.json"
  path.write_text(path.read_text()[:40])
  for call in (
      lambda: sweep.run_sweep(_tiny(), str(tmp_path)),
      lambda: sweep_report.write_report(_tiny(), str(tmp_path)),
  ):
    with pytest.raises(ValueError, match="is not valid JSON") as e:
      call()
    assert str(path) in str(e.value)
  assert sorted(os.listdir(tmp_path)) == ["config.json"]  # nothing else written


def test_a_key_added_later_is_read_as_the_behaviour_before_it(reference, tmp_path):
  # A workdir written before diverge_factor and lr_extensions existed flagged NaN/Inf
  # only and never extended its grid: today's defaults (1000, 2) would relabel it.
  workdir, _ = reference
  stored = io.read_json(workdir / "config.json")
  del stored["diverge_factor"], stored["sweep"]["lr_extensions"]
  io.atomic_write_text(tmp_path / "config.json", json.dumps(stored))
  c = _tiny()
  with c.unlocked():
    c.sweep.lr_extensions = 2
  with pytest.raises(
      ValueError, match=r"(?s)diverge_factor: <absent: ran as null> -> 1000.*lr_extensions"
  ):
    io.check_config(tmp_path, c.to_dict(), **sweep_report.config_rules())
  with c.unlocked():
    c.sweep.lr_extensions = 0
    c.diverge_factor = None
  io.check_config(tmp_path, c.to_dict(), **sweep_report.config_rules())


@pytest.mark.parametrize("buckets", ["round", "off"])
def test_a_round_is_recorded_in_one_append(buckets, monkeypatch):
  # A bucketed round's widths train as one program; their records were appended one by
  # one, so a kill between appends left part of a round recorded and the rerun trained
  # the rest as a smaller program (other member_batches, other rounding).
  c = _tiny()
  with c.unlocked():
    c.sweep.buckets = buckets
  schemes = list(c.schemes)

  def fake_record(width):
    return {"width": width, "schemes": {sc: {"success": width > 8} for sc in schemes}}

  monkeypatch.setattr(
      sweep, "evaluate_round", lambda cfg, arm, n, todo, *a: {w: fake_record(w) for w in todo}
  )
  monkeypatch.setattr(sweep, "evaluate_width", lambda cfg, arm, n, w, *a: fake_record(w))

  def one_round(_, schemes, oracle_round, **kw):
    oracle_round({8: schemes, 16: schemes, 32: schemes})
    return {}

  monkeypatch.setattr(sweep.scaling, "min_width_search_joint", one_round)
  calls = []
  grid = tuple(c.lrs)
  sweep._search(c, c.sweep.arms[0], min(c.sweep.ns), grid, {}, calls.append, False)
  widths = [[r["width"] for r in recs] for recs in calls]
  assert widths == ([[8], [16], [32]] if buckets == "off" else [[8, 16, 32]])


def test_append_jsonl_lines_is_one_write(tmp_path, monkeypatch):
  writes = []
  real = os.write
  monkeypatch.setattr(io.os, "write", lambda fd, b: writes.append(bytes(b)) or real(fd, b))
  io.append_jsonl_lines(tmp_path / "e.jsonl", [{"w": 1}, {"w": 2}, {"w": 3}])
  assert len(writes) == 1 and writes[0].count(b"\n") == 3
  io.append_jsonl_lines(tmp_path / "e.jsonl", [])  # nothing to write: no write at all
  assert len(writes) == 1
  assert [r["w"] for r in io.read_jsonl(tmp_path / "e.jsonl")] == [1, 2, 3]
