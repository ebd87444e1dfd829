"""The ensemble engine: training, masking, divergence, determinism, vmap == solo, optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nfscale import metrics, models, train

X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
Y = (np.sin(2 * np.pi * X) + 0.5 * np.sin(6 * np.pi * X)).astype(np.float32)
DATA = {"x": X, "y": Y}
FIELD = models.make_field(
    (32,),
    1,
    activation="sine",
    activation_params={"omega": 30.0},
    scheme_params={"first_bias": "torch"},
)
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
  return train.fit(
      models.mse_loss(FIELD), params, members, DATA, steps=steps, progress=False, shard=False, **kw
  )


def test_ensemble_of_schemes_trains():
  members = [train.Member(s, 0, 1e-2) for s in SCHEMES]
  params = train.init_members(FIELD, members, X[:1], {"first_bias": "torch"})
  initial = np.asarray(_mse(params))
  r = _fit(members, steps=300, log_every=50)
  last = np.array(r.history[-1]["loss"])
  # Step 0 is logged too (the loss before any update); the last loss computed is step
  # 299's (before the 300th update).
  assert r.steps_run == 300 and [h["step"] for h in r.history] == [0, 50, 100, 150, 200, 250, 299]
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
  members = [
      train.Member("lecun_normal", 0, 1e-2),
      train.Member("lecun_normal", 1, 1e6),
      train.Member("init2", 0, 1e-2),
  ]
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
  with pytest.raises(ValueError, match=r"\['rate'\] for schedule 'exponential'; it takes"):
    train.make_optimizer("adam", schedule="exponential", schedule_params={"rate": 0.5})
  # A missing parameter is named as missing (it used to read "Invalid parameters").
  with pytest.raises(ValueError, match="'exponential' needs transition_steps"):
    train.make_optimizer("adam", schedule="exponential", schedule_params={"decay_rate": 0.5})
  # optax reads these only when it computes: they failed (or went NaN) inside training.
  with pytest.raises(ValueError, match="optimizer 'adam'"):
    train.make_optimizer("adam", {"b1": "nan"})  # what --config.optimizer_params.b1=nan gives
  with pytest.raises(ValueError, match="optimizer 'adam': its first update is not finite"):
    train.make_optimizer("adam", {"b1": float("nan")})
  with pytest.raises(ValueError, match="schedule 'cosine'"):
    train.make_optimizer("adam", schedule="cosine", schedule_params={"alpha": "nan"}, steps=9)
  with pytest.raises(ValueError, match="schedule 'exponential': its multiplier is not finite"):
    train.make_schedule(
        "exponential", {"decay_rate": float("nan"), "transition_steps": 5}, steps=10
    )
  with pytest.raises(ValueError, match="members"):
    train.init_members(FIELD, [], X[:1])
  with pytest.raises(ValueError, match="valid schemes"):
    train.init_members(FIELD, [train.Member("nope", 0, 1.0)], X[:1])


def test_init_members_equals_each_members_own_init():
  from nfscale import initializers

  members = [
      train.Member(s, seed, lr)
      for s in ("init1", "siren")
      for seed in (0, 3)
      for lr in (1e-3, 1e-2)
  ]
  members = [members[i] for i in (5, 0, 7, 2, 1, 6, 3, 4)]  # schemes interleaved
  stacked = train.init_members(FIELD, members, X[:1], {"omega": 30.0})
  for i, m in enumerate(members):
    own = FIELD.clone(
        scheme=initializers.get_scheme(
            m.scheme, **initializers.filter_hparams(m.scheme, {"omega": 30.0})
        )
    ).init(jax.random.key(m.seed), X[:1])
    for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(own)):
      np.testing.assert_array_equal(a[i], b)


def test_init_members_traces_under_eval_shape_and_jit():
  # The eager path gathers members with NumPy; traced callers (eval_shape to size
  # memory, jit) must get the same shapes, and jit the same values.
  members = [train.Member("init1", 0, 0.1), train.Member("siren", 3, 0.1)]
  sp = {"omega": 30.0}
  eager = train.init_members(FIELD, members, X[:1], sp)
  shapes = jax.eval_shape(lambda: train.init_members(FIELD, members, X[:1], sp))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), shapes) == jax.tree.map(
      lambda a: (a.shape, a.dtype), eager
  )
  jitted = jax.jit(lambda: train.init_members(FIELD, members, X[:1], sp))()
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_array_equal(a, b)


def _count_compilations():
  """A list that collects one entry per XLA program compiled (or loaded) from now on."""
  seen = []

  def compiled(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      seen.append(event)

  def loaded(event, **kwargs):  # from the test session's persistent cache (conftest.py)
    del kwargs
    if event == "/jax/compilation_cache/cache_hits":
      seen.append(event)

  jax.monitoring.register_event_duration_secs_listener(compiled)
  jax.monitoring.register_event_listener(loaded)

  def stop():
    jax.monitoring.unregister_event_duration_listener(compiled)
    jax.monitoring.unregister_event_listener(loaded)

  return seen, stop


def test_fit_keeps_the_callers_params_and_sets_up_without_compiling():
  # The state is set up by transfers (a copy of the params, host-built fields):
  # eager jnp ops would compile a program per new shape, and a width search meets
  # new shapes in every round. The copy matters: the chunk function donates the
  # state's buffers, and the caller's params must stay valid.
  members = [train.Member("init1", 0, 1e-3), train.Member("init1", 1, 1e-3)]
  field = FIELD.clone(hidden=(27,))  # a width no other test compiles
  params = train.init_members(field, members, X[:1], {"first_bias": "torch"})
  before = jax.tree.map(np.array, params)
  tx = train.make_optimizer("sgd", None)
  tx.init(params)  # optax's own first eager call, outside the count
  seen, stop = _count_compilations()
  try:
    state = train.init_state(params, tx)
  finally:
    stop()
  # SGD keeps no per-parameter state; Adam's zeros come from optax's own init.
  assert not seen, f"{len(seen)} programs compiled"
  assert state.params is not params
  fit = train.fit(
      models.mse_loss(field), params, members, DATA, steps=20, chunk_steps=10, progress=False
  )
  assert fit.steps_run == 20
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)):
    assert not a.is_deleted()
    np.testing.assert_array_equal(a, b)
  # Host params too: on a CPU a device array may share a NumPy array's memory, and
  # training must not write into the caller's arrays through the donated state.
  host = train.init_members(field, members, X[:1], {"first_bias": "torch"}, on_host=True)
  train.fit(models.mse_loss(field), host, members, DATA, steps=20, chunk_steps=10, progress=False)
  for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)


# --- complex parameters (issue: WIRE fields trained with the conjugate gradient) ---

GABOR = models.make_field(
    (16, 16), 1, activation="gabor", activation_params={"omega0": 5.0, "s0": 3.0}
)


def _as_pairs(tree):
  """Complex leaves as {"re", "im"} real pairs: the real twin of a complex field."""
  return jax.tree.map(
      lambda a: {"re": jnp.real(a), "im": jnp.imag(a)} if jnp.iscomplexobj(a) else a, tree
  )


def _from_pairs(tree):
  return jax.tree.map(
      lambda d: jax.lax.complex(d["re"], d["im"]) if isinstance(d, dict) else d,
      tree,
      is_leaf=lambda d: isinstance(d, dict) and set(d) == {"re", "im"},
  )


@pytest.mark.parametrize("optimizer,lr", [("sgd", 3e-2), ("adam", 1e-2)])
def test_complex_field_descends_like_its_real_twin(optimizer, lr):
  # Adam too: optax's own complex Adam keeps one second moment |g|^2 per entry, so a
  # weight's real and imaginary parts shared a step size; PyTorch (and WIRE) treat them
  # as two numbers, as complex_as_real_tx now does.
  members = [train.Member("lecun_normal", 0, lr)]
  params = train.init_members(GABOR, members, X[:1])
  assert any(jnp.iscomplexobj(leaf) for leaf in jax.tree.leaves(params))
  mse = models.mse_loss(GABOR)

  def twin_loss(pairs, batch, rng):
    return mse(_from_pairs(pairs), batch, rng)

  kw = dict(
      steps=60, optimizer=optimizer, chunk_steps=20, log_every=20, progress=False, shard=False
  )
  complex_fit = train.fit(mse, params, members, DATA, **kw)
  twin_fit = train.fit(twin_loss, _as_pairs(params), members, DATA, **kw)
  # Gradient descent on (re, im) as real numbers is THE descent of a real loss of
  # complex params; with the conjugate fixed both runs take the same steps (float32
  # rounding only). Without it the imaginary parts climb and the losses part at once.
  c_loss = [h["loss"][0] for h in complex_fit.history]
  t_loss = [h["loss"][0] for h in twin_fit.history]
  np.testing.assert_allclose(c_loss, t_loss, rtol=1e-3)
  assert c_loss[-1] < 0.5 * c_loss[0], c_loss
  got = _as_pairs(complex_fit.state.params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(twin_fit.state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_complex_as_real_off_is_optax_own_and_real_models_keep_their_state():
  g = {"w": jnp.array([3.0 + 4.0j]), "b": jnp.array([2.0])}
  native = train.make_optimizer("adam", complex_as_real=False)
  u, _ = native.update(g, native.init(g))
  np.testing.assert_allclose(u["w"], [-0.6 - 0.8j], atol=1e-4)  # one |g| for both parts
  split = train.make_optimizer("adam")
  u, _ = split.update(g, split.init(g))
  np.testing.assert_allclose(u["w"], [-1.0 - 1.0j], atol=1e-4)
  np.testing.assert_allclose(u["b"], [-1.0], atol=1e-4)
  # A real model's state is the optimizer's own: checkpoints of runs from before the
  # wrapper restore unchanged.
  real = {"b": jnp.ones(3)}
  assert jax.tree.structure(split.init(real)) == jax.tree.structure(native.init(real))


def test_complex_field_trains_with_adam():
  # The case in small: measured 1.4 -> 27.8 dB in 200 Adam steps with
  # the conjugate, 1.4 -> 13.3 dB with jax.grad's raw complex gradient.
  members = [train.Member("lecun_normal", 0, 1e-2)]
  params = train.init_members(GABOR, members, X[:1])
  r = train.fit(
      models.mse_loss(GABOR),
      params,
      members,
      DATA,
      steps=200,
      chunk_steps=50,
      score_fn=PSNR,
      progress=False,
      shard=False,
  )
  first, last = r.history[0]["score"][0], r.history[-1]["score"][0]
  assert last > first + 20, (first, last)


def test_complex_kernels_keep_their_stated_variance():
  # LeCun normal: E|w|^2 = 1 / fan_in, split equally between re and im. 4
  # members x 64 x 64 = 16384 draws: the sample mean of |w|^2 (exponential
  # with mean 1/64) has relative std 1/sqrt(16384) < 1%; allow 5%.
  field = models.make_field((64, 64), 1, activation="gabor")
  members = [train.Member("lecun_normal", s, 1e-3) for s in range(4)]
  k = np.asarray(train.init_members(field, members, X[:1])["params"]["dense_1"]["kernel"])
  assert k.dtype == np.complex64
  np.testing.assert_allclose(np.mean(np.abs(k) ** 2), 1 / 64, rtol=0.05)
  np.testing.assert_allclose(np.mean(k.real**2), np.mean(k.imag**2), rtol=0.05)


# --- divergence beyond NaN/Inf ---


def test_blown_up_loss_is_flagged_diverged():
  # Adam at lr 1e6 keeps finite but huge losses (the issue saw 6.8e9); the
  # rule loss > 1000 x initial loss flags and freezes it.
  members = [train.Member("lecun_normal", 0, 1e-2), train.Member("lecun_normal", 0, 1e6)]
  r = _fit(members, steps=100, chunk_steps=25)
  st = jax.device_get(r.state)
  assert list(st.diverged) == [False, True]
  assert st.loss[1] > 1e3 * st.initial_loss[1]
  assert int(st.steps[1]) < 100 and int(st.steps[0]) == 100
  # Without the rule it is not flagged (only NaN/Inf would be).
  r2 = _fit(members, steps=100, chunk_steps=25, diverge_factor=None)
  loss = np.asarray(r2.state.loss)
  assert np.isfinite(loss[1]) == (not bool(r2.state.diverged[1]))


# --- optimizers: any optax name, schedules, per-member learning rates ---


def _plain_optax(member, tx, steps):
  """One member trained alone by a textbook optax loop (no engine)."""
  params = train.unstack(train.init_members(FIELD, [member], X[:1], {"first_bias": "torch"}), 0)
  loss = lambda p: models.mse_loss(FIELD)(p, DATA, None)[0]  # noqa: E731
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(steps):
    params, state = step(params, state)
  return params


@pytest.mark.parametrize(
    "name,params,schedule,sparams",
    [
        ("adam", {}, "constant", {}),
        ("sgd", {"momentum": 0.9}, "cosine", {}),
        (
            "adamw",
            {"weight_decay": 1e-2},
            "exponential",
            {"transition_steps": 10, "decay_rate": 0.5},
        ),
    ],
)
def test_per_member_lr_equals_plain_optax_alone(name, params, schedule, sparams):
  steps = 40
  members = [
      train.Member("lecun_normal", 0, 1e-3),
      train.Member("init1", 1, 3e-3),
      train.Member("lecun_normal", 0, 1e-2),
  ]
  together = _fit(
      members,
      steps=steps,
      chunk_steps=20,
      optimizer=name,
      optimizer_params=params,
      schedule=schedule,
      schedule_params=sparams,
  )
  for i, m in enumerate(members):
    sched = train.make_schedule(schedule, sparams, steps=steps)
    lr = (lambda t, s=sched, lr=m.lr: lr * s(t)) if callable(sched) else m.lr
    alone = _plain_optax(m, getattr(optax, name)(learning_rate=lr, **params), steps)
    for x, y in zip(
        jax.tree.leaves(train.unstack(together.state.params, i)), jax.tree.leaves(alone)
    ):
      # Same math, batched vs unbatched matmuls and lr * (1 * u) vs (lr * u):
      # float32 rounding only.
      np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", train.list_optimizers())
def test_every_listed_optimizer_is_linear_in_its_learning_rate(name):
  # The engine builds each optimizer at rate 1 and scales its update by the member's
  # rate; that is the optimizer at that rate only if the update is linear in it.
  # 20 steps on a curved loss (the gradient depends on the params), two rates.
  # Tolerance: 1e-4 relative, float32 rounding amplified over 20 steps (adafactor's
  # factored second moments reach ~1e-5; fromage, a nonlinear one, is off by 0.4).
  def loss(p):
    w = p["w"]
    return jnp.sum(jnp.array([1.0, 3.0, 0.5, 2.0]) * (w - jnp.arange(4.0)) ** 2 + jnp.sin(w))

  p0 = {"w": jnp.array([0.5, -1.0, 2.0, 0.1])}
  unit = train.make_optimizer(name)

  @jax.jit  # one program per rate: eager optax steps dispatch op by op (slow)
  def both(lr):
    tx = getattr(optax, name)(learning_rate=lr)

    def body(_, c):
      p, s, q, su = c
      u, s = tx.update(jax.grad(loss)(p), s, p)
      uq, su = unit.update(jax.grad(loss)(q), su, q)
      return optax.apply_updates(p, u), s, jax.tree.map(lambda a, b: a + lr * b, q, uq), su

    p, _, q, _ = jax.lax.fori_loop(0, 20, body, (p0, tx.init(p0), p0, unit.init(p0)))
    return p, q

  for lr in (0.03, 0.3):
    p, q = both(jnp.float32(lr))
    np.testing.assert_allclose(q["w"], p["w"], rtol=1e-4, atol=1e-4, err_msg=f"lr={lr}")


def test_an_optax_transformation_in_place_of_a_name_is_explained():
  # fit(optimizer=optax.adam(1e-3)) said "Unknown optimizer GradientTransformationExtraArgs(
  # init=<function ...>, ...)"; the message now says what to pass and why.
  with pytest.raises(ValueError, match=r"optimizer's name, e.g. 'adam'.*Member\.lr"):
    train.make_optimizer(optax.adam(1e-3))


def test_optimizers_nonlinear_in_the_rate_are_refused():
  assert not train.NONLINEAR_IN_LR & set(train.list_optimizers())
  with pytest.raises(ValueError, match="not linear in the learning rate"):
    train.make_optimizer("fromage")


def test_cosine_schedule_reaches_alpha():
  sched = train.make_schedule("cosine", {"alpha": 0.1}, steps=100)
  assert float(sched(0)) == 1.0 and float(sched(100)) == pytest.approx(0.1)
  assert "rmsprop" in train.list_optimizers() and "lbfgs" not in train.list_optimizers()


@pytest.mark.parametrize("chunk_steps,log_every", [(10, 20), (1, 3), (7, 10)])
def test_each_record_is_the_loss_of_the_params_after_that_many_updates(chunk_steps, log_every):
  # A record labelled step s must hold the loss of the params after s updates: the
  # engine computes each step's loss before its update, so the labels follow that.
  # Reference: a textbook optax SGD loop per member, its loss after each update;
  # tolerance: float32 rounding of batched vs single-member matmuls over 24 steps.
  members = [train.Member("init1", 0, 1e-2), train.Member("lecun_normal", 1, 1e-2)]
  r = _fit(members, steps=25, optimizer="sgd", chunk_steps=chunk_steps, log_every=log_every)
  steps = [h["step"] for h in r.history]
  assert steps[0] == 0 and steps[-1] == 24 and steps == sorted(set(steps))
  assert len(steps) > 2
  loss = jax.jit(lambda p: models.mse_loss(FIELD)(p, DATA, None)[0])
  for i, m in enumerate(members):
    tx = optax.sgd(m.lr)
    p = train.unstack(train.init_members(FIELD, [m], X[:1], {"first_bias": "torch"}), 0)
    st, ref = tx.init(p), []
    for _ in range(25):
      ref.append(float(loss(p)))
      u, st = tx.update(jax.grad(loss)(p), st, p)
      p = optax.apply_updates(p, u)
    got = [h["loss"][i] for h in r.history]
    np.testing.assert_allclose(got, [ref[s] for s in steps], rtol=1e-4)
    assert got[-1] != pytest.approx(float(loss(p)), rel=1e-3)  # the 25th update is not in it


def test_chunk_steps_must_be_positive():
  with pytest.raises(ValueError, match="chunk_steps must be positive"):
    _fit([train.Member("init1", 0, 1e-2)], steps=5, chunk_steps=0)


def test_one_chunk_run_logs_two_points_and_stops_at_steps():
  members = [train.Member("lecun_normal", 0, 1e-2)]
  r = _fit(members, steps=30, chunk_steps=50, log_every=1000)
  # Step 0 and the last step are always logged; 30 steps run although a chunk is 50.
  assert [h["step"] for h in r.history] == [0, 29]
  assert r.steps_run == 30 and int(r.state.steps[0]) == 30


def test_rng_reaches_the_loss_and_is_shared_by_members():
  seen = []

  def loss_fn(params, batch, rng):
    noise = jax.random.normal(rng, ())
    base, _ = models.mse_loss(FIELD)(params, batch, rng)
    return base, {"noise": noise}

  members = [train.Member("lecun_normal", 0, 1e-3), train.Member("init1", 0, 1e-3)]
  params = train.init_members(FIELD, members, X[:1])
  r = train.fit(
      loss_fn,
      params,
      members,
      DATA,
      steps=4,
      chunk_steps=2,
      log_every=1,
      progress=False,
      shard=False,
      on_log=seen.append,
  )
  noise = [h["aux"]["noise"] for h in r.history]
  assert all(a == b for a, b in noise)  # same rng for all members
  assert len({a for a, _ in noise}) == len(noise)  # a fresh rng per step
  assert seen == r.history
