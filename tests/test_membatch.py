"""Member batches: planning from memory, OOM fallback, and rows equal to one ensemble."""

import pathlib
import sys

import jax
import numpy as np
import pytest

from nfscale import experiment, io, membatch, sweep

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import scaling_shallow  # noqa: E402

OOM = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 6.5GiB."


def _config(**sweep_keys):
  c = scaling_shallow.get_config("tiny")
  with c.unlocked():
    c.theory.enabled = False
    c.seeds = (0, 1)
    c.lrs = (0.03, 0.1)  # 2 schemes x 2 seeds x 2 rates = 8 members
    for k, v in sweep_keys.items():
      c.sweep[k] = v
  return c


def test_plan_fits_the_budget_and_never_drops_below_one():
  assert membatch.plan(10, member_bytes=100, free_bytes=1000, headroom=0.7) == 7
  assert membatch.plan(10, member_bytes=100, free_bytes=1000, headroom=0.7, fixed_bytes=300) == 4
  assert membatch.plan(3, member_bytes=100, free_bytes=10**9) == 3
  assert membatch.plan(5, member_bytes=10**12, free_bytes=10**9) == 1  # the fallback decides
  with pytest.raises(ValueError, match="positive"):
    membatch.plan(0, member_bytes=1, free_bytes=1)


def test_oom_halves_the_batch_and_keeps_member_order():
  calls, fallbacks = [], []

  def train_batch(start, stop):
    calls.append((start, stop))
    if stop - start > 3:
      raise RuntimeError(OOM)
    return [f"m{i}" for i in range(start, stop)]

  out, sizes = membatch.run_batched(
      train_batch, 10, 10, on_fallback=lambda b, e: fallbacks.append(b)
  )
  assert out == [f"m{i}" for i in range(10)]
  assert sum(sizes) == 10 and max(sizes) <= 3
  assert fallbacks[:2] == [5, 2]  # 10 -> 5 -> 2 (5 still too big)
  assert calls[:2] == [(0, 10), (0, 5)]


def test_oom_of_one_member_and_other_errors_are_raised():
  def oom(start, stop):
    raise RuntimeError(OOM)

  with pytest.raises(membatch.MemberBatchError, match="alone does not fit"):
    membatch.run_batched(oom, 4, 4)

  def broken(start, stop):
    raise ValueError("a bug, not memory")

  with pytest.raises(ValueError, match="a bug"):
    membatch.run_batched(broken, 4, 4)
  assert membatch.is_out_of_memory(RuntimeError(OOM))
  assert not membatch.is_out_of_memory(ValueError("shape mismatch"))


def _task_and_params(config, n=10, width=16):
  c = sweep.point_config(config, "sinc", n, width)
  from nfscale import tasks

  task = tasks.build_task(c)
  members = sweep._members(config, tuple(config.schemes))
  return c, task, members, experiment.init_params(c, task, members)


def test_estimates_grow_with_members_and_data():
  config = _config()
  c, task, _, params = _task_and_params(config)
  tx = experiment.make_tx(c)
  one = jax.eval_shape(lambda p: jax.tree.map(lambda a: a[0], p), params)
  small = membatch.member_bytes(task.loss_fn, one, task.train_data, tx)
  _, big_task, _, _ = _task_and_params(config, n=200)
  big = membatch.member_bytes(big_task.loss_fn, one, big_task.train_data, tx)
  assert membatch.nbytes(one) < small < big
  sizes = []
  for b in (1, 4, 8):
    prefix = jax.eval_shape(lambda p, b=b: jax.tree.map(lambda a: a[:b], p), params)
    sizes.append(
        membatch.compiled_bytes(
            task.loss_fn, prefix, task.train_data, tx, **experiment.chunk_settings(c, task)
        )
    )
  if sizes[0] is not None:  # XLA's CPU backend reports an analysis
    assert sizes[0] < sizes[1] < sizes[2]


def test_batch_size_from_free_memory(monkeypatch):
  config = _config()
  c, task, members, params = _task_and_params(config)
  assert sweep.member_batch_size(c, task, params) == len(members)  # CPU: no limit reported
  tx = experiment.make_tx(c)
  one = jax.eval_shape(lambda p: jax.tree.map(lambda a: a[0], p), params)
  per = membatch.member_bytes(task.loss_fn, one, task.train_data, tx)

  def compiled(b):
    prefix = jax.eval_shape(lambda p: jax.tree.map(lambda a: a[:b], p), params)
    return membatch.compiled_bytes(
        task.loss_fn, prefix, task.train_data, tx, **experiment.chunk_settings(c, task)
    )

  if compiled(1) is None:
    pytest.skip("this backend gives no memory analysis")
  calls = []
  real = membatch.compiled_bytes
  monkeypatch.setattr(membatch, "compiled_bytes", lambda *a, **k: calls.append(1) or real(*a, **k))
  # Room for about three members by the shape estimate, which counts every
  # traced value: XLA's analysis is asked and (it reuses buffers) lets more in.
  monkeypatch.setattr(membatch, "free_bytes", lambda device=None: int(3.5 * per / 0.7))
  by_xla = sweep.member_batch_size(c, task, params)
  assert calls and 3 <= by_xla <= len(members)
  assert compiled(by_xla) <= membatch.HEADROOM * membatch.free_bytes()
  # Room for half the ensemble by XLA's own figure: the batch is split to fit it.
  free = int(compiled(len(members)) * 0.6 / membatch.HEADROOM)
  monkeypatch.setattr(membatch, "free_bytes", lambda device=None: free)
  batch = sweep.member_batch_size(c, task, params)
  assert 1 <= batch < len(members)
  assert compiled(batch) <= membatch.HEADROOM * free
  with c.unlocked():
    c.sweep.member_batch = 3
  assert sweep.member_batch_size(c, task, params) == 3


def _comparable(rec):
  return {s: {k: v for k, v in r.items()} for s, r in rec["schemes"].items()}


def test_batched_and_oom_fallback_rows_equal_one_ensemble(monkeypatch):
  whole = sweep.evaluate_width(_config(), "sinc", 10, 8, ("lecun_normal", "init1"))
  assert whole["member_batches"] == [8]
  batched = sweep.evaluate_width(_config(member_batch=3), "sinc", 10, 8, ("lecun_normal", "init1"))
  assert batched["member_batches"] == [3, 3, 2]

  real = experiment.train_members

  def small_device(config, task, members, **kwargs):
    if len(members) > 2:
      raise RuntimeError(OOM)
    return real(config, task, members, **kwargs)

  monkeypatch.setattr(experiment, "train_members", small_device)
  fallback = sweep.evaluate_width(_config(), "sinc", 10, 8, ("lecun_normal", "init1"))
  assert fallback["member_batches"] == [2, 2, 2, 2]
  for rec in (batched, fallback):
    a, b = _comparable(whole), _comparable(rec)
    for s in a:
      for key in ("success", "best_lr", "reached", "steps_to_target", "diverged"):
        assert a[s][key] == b[s][key], (s, key)
      # Differently sized vmapped programs may round differently (float32).
      np.testing.assert_allclose(a[s]["best_psnr"], b[s]["best_psnr"], rtol=0, atol=1e-3)


def test_report_states_the_batching(tmp_path):
  config = _config(member_batch=4)
  with config.unlocked():
    config.sweep.ns = (6,)
  report = sweep.run_sweep(config, str(tmp_path))
  assert report["member_batching"]["split"] == report["member_batching"]["evaluations"] > 0
  assert report["member_batching"]["smallest_batch"] == 4
  # The user fixed the split: the report says so, not that memory forced it.
  assert "split (sweep.member_batch=4;" in (tmp_path / "table.md").read_text()
  assert all(e["member_batches"] == [4, 4] for e in io.read_jsonl(tmp_path / "evals.jsonl"))
