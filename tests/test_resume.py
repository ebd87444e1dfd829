"""Workdir rules: refusal of another run, overwrite, resume after SIGKILL, load, eval mode."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nfscale
from nfscale import checkpoint, experiment, io, sweep_report

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import image as image_cfg  # noqa: E402
from configs import scaling_shallow  # noqa: E402


def _tiny(**over):
  c = image_cfg.get_config("quick,size=12,steps=40")
  with c.unlocked():
    c.model.hidden = (16, 16)
    c.schemes = ("init1", "lecun_normal")
    c.chunk_steps = c.log_every = 10
    c.checkpoint_every = 20
    c.progress = False
    for k, v in over.items():
      c[k] = v
  return c


def _snapshot(d):
  """Every file's bytes, except the lock file (it only names its last holder)."""
  out = {}
  for root, _, files in os.walk(d):
    for f in files:
      if f == io.LOCK_FILENAME:
        continue
      p = os.path.join(root, f)
      out[os.path.relpath(p, d)] = pathlib.Path(p).read_bytes()
  return out


def test_different_run_is_refused_nothing_lost_and_overwrite_starts_over(tmp_path):
  experiment.run(_tiny(), str(tmp_path))
  before = _snapshot(tmp_path)
  with pytest.raises(ValueError, match=r"(?s)lrs: \[0.001\] -> \[0.01\].*overwrite=True"):
    experiment.run(_tiny(lrs=(1e-2,)), str(tmp_path))
  assert _snapshot(tmp_path) == before
  # Keys that do not change results may differ.
  experiment.run(_tiny(progress=True, checkpoint_every=0), str(tmp_path))
  res = experiment.run(_tiny(lrs=(1e-2,), overwrite=True), str(tmp_path))
  assert [m["lr"] for m in res["members"]] == [1e-2, 1e-2]
  rows = io.read_jsonl(tmp_path / "metrics.jsonl")
  assert {r["lr"] for r in rows} == {1e-2} and len(rows) == 2 * 5  # steps 0, 10, ..., 40


def test_overwrite_resumes_the_same_run_and_never_deletes_foreign_files(tmp_path):
  # Rerunning the command that crashed, --config.overwrite=True included, must resume:
  # overwrite used to delete every checkpoint and start over (a finished run retrained).
  done = experiment.run(_tiny(overwrite=True), str(tmp_path / "a"))
  before = _snapshot(tmp_path / "a")
  again = experiment.run(_tiny(overwrite=True), str(tmp_path / "a"))
  assert again["members"] == done["members"]
  after = _snapshot(tmp_path / "a")
  assert {k for k in after if k.startswith("checkpoints")} == {
      k for k in before if k.startswith("checkpoints")
  }
  assert after["metrics.jsonl"] == before["metrics.jsonl"]
  # Another program's config.json (and its checkpoints/) is not an nfscale run: no
  # advice to overwrite, and overwrite deletes nothing.
  other = tmp_path / "other"
  (other / "checkpoints" / "model").mkdir(parents=True)
  (other / "config.json").write_text('{"framework": "other"}')
  (other / "checkpoints" / "model" / "weights.bin").write_text("x")
  theirs = _snapshot(other)
  for overwrite in (False, True):
    with pytest.raises(ValueError, match="not an nfscale training run's") as e:
      experiment.run(_tiny(overwrite=overwrite), str(other))
    assert "overwrite=True" not in str(e.value)
    assert _snapshot(other) == theirs


def test_run_files_without_config_are_refused(tmp_path):
  # results.json and metrics.jsonl without config.json used to be replaced silently.
  experiment.run(_tiny(), str(tmp_path / "a"))
  orphan = tmp_path / "orphan"
  orphan.mkdir()
  for name in ("results.json", "metrics.jsonl"):
    shutil.copy(tmp_path / "a" / name, orphan / name)
  before = _snapshot(orphan)
  with pytest.raises(ValueError, match=r"holds metrics.jsonl, results.json but no config.json"):
    experiment.run(_tiny(lrs=(1e-2,)), str(orphan))
  assert _snapshot(orphan) == before
  res = experiment.run(_tiny(lrs=(1e-2,), overwrite=True), str(orphan))
  assert [m["lr"] for m in res["members"]] == [1e-2, 1e-2]


def test_sweep_workdir_is_refused(tmp_path):
  c = scaling_shallow.get_config("tiny")
  io.check_or_write_config(tmp_path, c.to_dict(), keys_ignored=sweep_report.IGNORED_KEYS)
  before = _snapshot(tmp_path)
  with pytest.raises(ValueError, match="different configuration"):
    experiment.run(_tiny(), str(tmp_path))
  assert _snapshot(tmp_path) == before
  # Overwrite replaces a training run only: it used to delete the sweep's config.json
  # and leave its records beside the new run.
  with pytest.raises(ValueError, match="holds a scaling sweep"):
    experiment.run(_tiny(overwrite=True), str(tmp_path))
  assert _snapshot(tmp_path) == before


def test_workdir_in_use_is_refused(tmp_path):
  with io.workdir_lock(tmp_path, what="sweep"):
    # The holder is named as what it is (it read "another training run").
    with pytest.raises(io.WorkdirLockedError, match=f"in use by a sweep \\(pid {os.getpid()}"):
      experiment.run(_tiny(), str(tmp_path))
  assert not (tmp_path / "config.json").exists()


def test_finished_run_rerun_and_eval_mode_give_the_same_results(tmp_path):
  first = experiment.run(_tiny(), str(tmp_path))
  metrics = (tmp_path / "metrics.jsonl").read_bytes()
  results = (tmp_path / "results.json").read_bytes()
  again = experiment.run(_tiny(), str(tmp_path))  # resumes at the end: nothing to train
  assert again["members"] == first["members"]
  assert (tmp_path / "metrics.jsonl").read_bytes() == metrics
  # results.json too: its seconds is the final checkpoint's (it used to add the
  # rerun's own microseconds, and differ from the checkpoint's clock).
  assert (tmp_path / "results.json").read_bytes() == results
  # A finished run replays nothing, so it keeps every record; runs written before the
  # last record was labelled steps - 1 have it at step 40, the checkpoint's step.
  old_style = metrics.replace(b'"step": 39', b'"step": 40')
  assert old_style != metrics
  (tmp_path / "metrics.jsonl").write_bytes(old_style)
  experiment.run(_tiny(), str(tmp_path))
  assert (tmp_path / "metrics.jsonl").read_bytes() == old_style
  (tmp_path / "reconstructions.png").unlink()
  ev = experiment.run(_tiny(mode="eval"), str(tmp_path))
  assert ev["members"] == first["members"] and (tmp_path / "reconstructions.png").exists()
  assert checkpoint.latest_step(str(tmp_path)) == 40
  with pytest.raises(ValueError, match="mode='eval' needs a trained run"):
    experiment.run(_tiny(mode="eval"), str(tmp_path / "empty"))
  assert not (tmp_path / "empty").exists()  # refused before the workdir was made


def test_load_round_trips_params_bit_exactly(tmp_path):
  c = _tiny()
  with c.unlocked():
    c.model.activation = "gabor"  # complex params too
    c.model.activation_params = {"omega0": 5.0, "s0": 3.0}
  captured = {}
  orig = checkpoint.save

  def spy(workdir, step, state, meta):
    captured[step] = jax.device_get(state)
    orig(workdir, step, state, meta)

  checkpoint.save = spy
  try:
    res = experiment.run(c, str(tmp_path))
  finally:
    checkpoint.save = orig
  loaded = nfscale.load(str(tmp_path))
  assert loaded.step == 40 and loaded.labels == ["init1", "lecun_normal"]
  final = captured[40]
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(loaded.state)):
    assert np.asarray(a).dtype == np.asarray(b).dtype
    np.testing.assert_array_equal(a, b)
  assert any(np.iscomplexobj(x) for x in jax.tree.leaves(loaded.params[0]))
  for i in range(2):
    for a, b in zip(jax.tree.leaves(loaded.params[i]), jax.tree.leaves(final.params)):
      np.testing.assert_array_equal(a, np.asarray(b)[i])
  # The reloaded fields evaluate to the recorded metrics, and render at any resolution.
  ev = loaded.task.evaluate(loaded.stacked_params)
  assert [float(v) for v in ev["full_psnr"]] == [m["full_psnr"] for m in res["members"]]
  ys, xs = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 24), indexing="ij")
  hi = loaded.model.apply(
      loaded.params[0], jnp.asarray(np.stack([xs, ys], -1).reshape(-1, 2), jnp.float32)
  )
  assert hi.shape == (24 * 24, 3)
  # An older checkpoint is reachable too.
  assert nfscale.load(str(tmp_path), step=20).step == 20


def test_checkpoint_without_config_is_refused(tmp_path):
  experiment.run(_tiny(), str(tmp_path))
  (tmp_path / "config.json").unlink()
  with pytest.raises(ValueError, match="checkpoints/ but no config.json"):
    experiment.run(_tiny(), str(tmp_path))


CMD = [
    sys.executable,
    "-m",
    "launch.train",
    "--config=configs/image.py:quick,size=12,steps=300",
    "--config.model.hidden=(16,16)",
    "--config.schemes=('init1','lecun_normal')",
    "--config.chunk_steps=10",
    "--config.log_every=10",
    "--config.checkpoint_every=10",
    "--config.progress=False",
]


def _steps_on_disk(workdir):
  d = workdir / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  killed, ref = tmp_path / "killed", tmp_path / "ref"
  proc = subprocess.Popen(
      CMD + [f"--workdir={killed}"],
      cwd=ROOT,
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
  )
  deadline = time.time() + 240
  while time.time() < deadline and not any(s >= 20 for s in _steps_on_disk(killed)):
    if proc.poll() is not None:
      pytest.fail(f"run ended before it could be killed: {proc.stderr.read()[-2000:]}")
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "results.json").exists()  # really killed mid-way
  steps_at_kill = max(_steps_on_disk(killed))
  assert 20 <= steps_at_kill < 300
  for workdir in (killed, ref):
    out = subprocess.run(
        CMD + [f"--workdir={workdir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
  a = json.loads((killed / "results.json").read_text())
  b = json.loads((ref / "results.json").read_text())
  assert a["members"] == b["members"] and a["steps_run"] == b["steps_run"] == 300
  # The log too: records after the checkpoint were dropped and replayed.
  assert io.read_jsonl(killed / "metrics.jsonl") == io.read_jsonl(ref / "metrics.jsonl")
  la, lb = nfscale.load(str(killed)), nfscale.load(str(ref))
  for x, y in zip(jax.tree.leaves(la.state), jax.tree.leaves(lb.state)):
    np.testing.assert_array_equal(x, y)


def test_restore_refuses_a_missing_step_and_a_mismatched_state(tmp_path):
  checkpoint.save(str(tmp_path), 3, {"w": np.ones(3, np.float32)}, {"history": []})
  state, meta = checkpoint.restore(str(tmp_path), {"w": np.zeros(3, np.float32)}, 3)
  assert state["w"].tolist() == [1.0, 1.0, 1.0] and meta["step"] == 3
  with pytest.raises(ValueError, match=r"no checkpoint 7 .*holds steps \[3\]"):
    checkpoint.restore(str(tmp_path), {"w": np.zeros(3, np.float32)}, 7)
  # Orbax alone would hand back the saved (3,) array for a (4,) template.
  with pytest.raises(ValueError, match=r"\['w'\] has shape \(3,\), the run's \(4,\)"):
    checkpoint.restore(str(tmp_path), {"w": np.zeros(4, np.float32)})
  with pytest.raises(ValueError, match="does not match this run's state"):
    checkpoint.restore(str(tmp_path), {"v": np.zeros(3, np.float32)})


def test_rerender_of_an_interrupted_run_says_it_is_incomplete(tmp_path):
  experiment.run(_tiny(), str(tmp_path))
  assert experiment.rerender(str(tmp_path))["complete"]
  # As if killed between the checkpoints at steps 20 and 40.
  shutil.rmtree(tmp_path / "checkpoints" / "40")
  res = experiment.rerender(str(tmp_path))
  assert not res["complete"] and res["steps_run"] == 20
  assert res["notes"][0].startswith("INCOMPLETE: training stopped at step 20 of 40")
  assert "INCOMPLETE" in experiment.format_table(res)


def test_sweep_configs_and_workdirs_are_not_training_runs(tmp_path):
  with pytest.raises(ValueError, match="scaling-sweep config: run it with python -m launch.sweep"):
    experiment.run(scaling_shallow.get_config("tiny"), str(tmp_path / "a"))
  assert not (tmp_path / "a").exists()
  c = scaling_shallow.get_config("tiny")
  io.check_or_write_config(tmp_path, c.to_dict(), keys_ignored=sweep_report.IGNORED_KEYS)
  for fn in (experiment.rerender, nfscale.load):
    with pytest.raises(ValueError, match="holds a scaling sweep, not a training run"):
      fn(str(tmp_path))


def test_a_scheme_parameter_no_scheme_takes_is_refused(tmp_path):
  # Each scheme is given only its own parameters, so `firstbias` trained with zero biases.
  c = _tiny()
  with c.unlocked():
    c.scheme_params.firstbias = "torch"
  with pytest.raises(ValueError, match=r"scheme_params: no scheme takes \['firstbias'\]"):
    experiment.run(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_sweep_workdir_refusal_does_not_advise_overwrite(tmp_path):
  c = scaling_shallow.get_config("tiny")
  io.check_or_write_config(tmp_path, c.to_dict(), keys_ignored=sweep_report.IGNORED_KEYS)
  with pytest.raises(ValueError) as e:
    experiment.run(_tiny(), str(tmp_path))
  assert "different configuration" in str(e.value) and "overwrite" not in str(e.value)


def test_a_resume_on_another_device_count_is_recorded(tmp_path, monkeypatch):
  # Resuming under another device count worked but left no trace: the member axis is
  # sharded differently, so the results match an uninterrupted run only up to rounding.
  first = experiment.run(_tiny(), str(tmp_path))
  assert first["device_counts"] == [jax.device_count()]
  assert not any("devices (resumed" in n for n in first["notes"])
  shutil.rmtree(tmp_path / "checkpoints" / "40")  # as if killed after step 20's save
  monkeypatch.setattr(jax, "device_count", lambda *a: 2 * len(jax.devices()))
  res = experiment.run(_tiny(), str(tmp_path))
  n = len(jax.devices())
  assert res["device_counts"] == [n, 2 * n]
  assert any(f"trained on {n} then {2 * n} devices" in note for note in res["notes"])
  again = experiment.run(_tiny(), str(tmp_path))  # finished: nothing trains, same record
  assert again["device_counts"] == [n, 2 * n]


@pytest.mark.usefixtures("ctrl_c")
def test_ctrl_c_during_a_checkpoint_save_stops_after_it(tmp_path, monkeypatch):
  # A KeyboardInterrupt inside orbax's save left the step unwritten and sometimes a
  # background thread's traceback; the interrupt is now held until the save is done.
  real = checkpoint._manager

  def interrupted_manager(workdir, create):
    ocp, mgr = real(workdir, create)
    save = mgr.save

    def save_after_ctrl_c(*args, **kwargs):
      signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came as the save starts
      return save(*args, **kwargs)

    mgr.save = save_after_ctrl_c
    return ocp, mgr

  monkeypatch.setattr(checkpoint, "_manager", interrupted_manager)
  state = {"w": np.arange(4, dtype=np.float32)}
  with pytest.raises(KeyboardInterrupt):
    checkpoint.save(str(tmp_path), 7, state, {"history": []})
  monkeypatch.setattr(checkpoint, "_manager", real)
  assert checkpoint.latest_step(str(tmp_path)) == 7
  restored, meta = checkpoint.restore(str(tmp_path), {"w": np.zeros(4, np.float32)})
  assert restored["w"].tolist() == [0, 1, 2, 3] and meta["step"] == 7
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.usefixtures("ctrl_c")
def test_a_second_ctrl_c_interrupts_a_held_save():
  with pytest.raises(KeyboardInterrupt):
    with checkpoint._sigint_deferred():
      signal.raise_signal(signal.SIGINT)  # held
      signal.raise_signal(signal.SIGINT)  # a second one stops at once
      pytest.fail("the second Ctrl-C was held too")
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
