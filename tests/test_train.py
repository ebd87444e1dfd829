"""The ensemble engine: training, masking, divergence, determinism, vmap == solo, optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import metrics, models, train

X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
Y = (np.sin(2 * np.pi * X) + 0.5 * np.sin(6 * np.pi * X)).astype(np.float32)
DATA = {"x": X, "y": Y}
FIELD = models.make_field((32,), 1, activation="sine", activation_params={"omega": 30.0},
                          scheme_params={"first_bias": "torch"})
SCHEMES = ("lecun_normal", "init1", "kaiming_uniform", "init2")




def PSNR(loss, aux):
  del aux
  return metrics.mse_to_psnr(loss)


def _mse(params, data=DATA):
  return train.jax.vmap(lambda p: models.mse_loss(FIELD)(p, data, None)[0])(params)


def _fit(members, steps=200, **kw):
  params = train.init_members(FIELD, members, X[:1], {"first_bias": "torch"})
  kw.setdefault("optimizer", "adam")
  kw.setdefault("chunk_steps", 50)
  kw.setdefault("score_fn", PSNR)
  return train.fit(models.mse_loss(FIELD), params, members, DATA, steps=steps, progress=False,
                   shard=False, **kw)


def test_ensemble_of_schemes_trains():
  members = [train.Member(s, 0, 1e-2) for s in SCHEMES]
  params = train.init_members(FIELD, members, X[:1], {"first_bias": "torch"})
  initial = np.asarray(_mse(params))
  r = _fit(members, steps=300, log_every=50)
  last = np.array(r.history[-1]["loss"])
  # Step 0 is logged too (the loss before any update).
  assert r.steps_run == 300 and [h["step"] for h in r.history] == [0, 50, 100, 150, 200, 250, 300]
  np.testing.assert_allclose(r.history[0]["loss"], initial, rtol=1e-5)
  assert np.all(last < 0.2 * initial), (initial, last)
  assert np.all(np.asarray(r.state.steps) == 300)
  # Members really differ (own scheme each): initial losses are distinct.
  assert len(set(np.round(initial, 6))) == len(SCHEMES)


def test_members_get_their_own_scheme():
  members = [train.Member("init1", 0, 1e-3), train.Member("lecun_normal", 0, 1e-3)]
  params = train.init_members(FIELD, members, X[:1])
  last = params["params"]["dense_1"]["kernel"]
  # Same seed, same normal draws: init1's last layer is lecun's times sqrt(2/sqrt(32)).
  np.testing.assert_allclose(last[0], last[1] * np.sqrt(2 / np.sqrt(32)), rtol=1e-5)


def test_masked_early_stop_freezes_exactly_the_reached_members():
  members = [train.Member(s, 0, lr) for s in SCHEMES[:2] for lr in (1e-2, 1e-5)]
  r = _fit(members, steps=400, target=20.0, chunk_steps=25)
  st = jax.device_get(r.state)
  # lr 1e-5 cannot move far in 400 steps; lr 1e-2 fits this curve well past 20 dB.
  assert list(st.done) == [True, False, True, False]
  for i in (0, 2):
    k = int(st.steps_to_target[i])
    assert 0 < k < 400 and int(st.steps[i]) == k  # frozen right at the target
  assert list(st.steps_to_target[[1, 3]]) == [-1, -1]
  assert list(st.steps[[1, 3]]) == [400, 400]
  # Frozen params give exactly the PSNR at which they stopped (>= target).
  psnr = -10 * np.log10(np.asarray(_mse(r.state.params)))
  assert np.all(psnr[[0, 2]] >= 20.0)
  assert np.all(psnr[[1, 3]] < 20.0)


def test_divergent_member_is_flagged_and_others_finish():
  members = [train.Member("lecun_normal", 0, 1e-2), train.Member("lecun_normal", 1, 1e6),
             train.Member("init2", 0, 1e-2)]
  r = _fit(members, steps=200, optimizer="sgd")
  st = jax.device_get(r.state)
  assert list(st.diverged) == [False, True, False]
  assert np.all(np.isfinite(jax.tree.leaves(st.params)[0][[0, 2]]))
  # The frozen member's params stay finite: the NaN update was never applied.
  assert all(np.all(np.isfinite(np.asarray(leaf[1]))) for leaf in jax.tree.leaves(st.params))
  assert list(st.steps[[0, 2]]) == [200, 200] and st.steps[1] < 200


def test_deterministic():
  members = [train.Member(s, 3, 1e-2) for s in SCHEMES]
  a = _fit(members, steps=100)
  b = _fit(members, steps=100)
  for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
    np.testing.assert_array_equal(x, y)
  assert a.history == b.history


@pytest.mark.parametrize("optimizer,lr", [("adam", 3e-3), ("sgd", 1e-3)])
def test_vmapped_equals_each_member_alone(optimizer, lr):
  members = [train.Member(s, i, lr * (1 + i)) for i, s in enumerate(SCHEMES)]
  together = _fit(members, steps=100, optimizer=optimizer)
  for i, m in enumerate(members):
    alone = _fit([m], steps=100, optimizer=optimizer)
    for x, y in zip(jax.tree.leaves(together.state.params), jax.tree.leaves(alone.state.params)):
      # Batched and unbatched matmuls may sum in different orders: float32 tolerance.
      np.testing.assert_allclose(x[i], y[0], rtol=2e-4, atol=2e-5)


def test_minibatch_option():
  members = [train.Member("lecun_normal", 0, 3e-3)]
  r = _fit(members, steps=300, batch_size=16)
  assert r.history[-1]["loss"][0] < 0.3 * r.history[0]["loss"][0]
  with pytest.raises(ValueError, match="batch_size"):
    _fit(members, steps=10, batch_size=0)


def test_bad_optimizer_and_members():
  with pytest.raises(ValueError, match="valid optimizers.*sgd, adam"):
    train.make_optimizer("adamm")
  with pytest.raises(ValueError, match="optimizer 'adam'"):
    train.make_optimizer("adam", {"lr": 3})
  with pytest.raises(ValueError, match="valid schedules: constant, cosine, exponential"):
    train.make_optimizer("adam", schedule="linear")
  with pytest.raises(ValueError, match="schedule 'exponential'"):
    train.make_optimizer("adam", schedule="exponential", schedule_params={"rate": 0.5})
  with pytest.raises(ValueError, match="members"):
    train.init_members(FIELD, [], X[:1])
  with pytest.raises(ValueError, match="valid schemes"):
    train.init_members(FIELD, [train.Member("nope", 0, 1.0)], X[:1])


def test_init_members_equals_each_members_own_init():
  from nfscale import initializers
  members = [train.Member(s, seed, lr) for s in ("init1", "siren") for seed in (0, 3)
             for lr in (1e-3, 1e-2)]
  stacked = train.init_members(FIELD, members, X[:1], {"omega": 30.0})
  for i, m in enumerate(members):
    own = FIELD.clone(scheme=initializers.get_scheme(m.scheme, **initializers.filter_hparams(
        m.scheme, {"omega": 30.0}))).init(jax.random.key(m.seed), X[:1])
    for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(own)):
      np.testing.assert_array_equal(a[i], b)
