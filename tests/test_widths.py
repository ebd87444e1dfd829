"""Width buckets: a masked member trains exactly like the unmasked network of its width."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import models, train, widths

X = np.linspace(-1, 1, 48, dtype=np.float32)[:, None]
Y = (np.sin(2 * np.pi * X) + 0.5 * np.sin(6 * np.pi * X)).astype(np.float32)
DATA = {"x": X, "y": Y}
SP = {"first_bias": "torch"}
BUCKET = 24
# Widths below, inside and at the bucket; schemes whose last-layer law depends
# on the fan-in (init1: 1/sqrt(w)) and ones that do not.
MEMBERS = [
    train.Member("init1", 0, 0.05),
    train.Member("lecun_normal", 1, 0.05),
    train.Member("kaiming_uniform", 2, 0.02),
]
WIDTHS = [5, 13, 24]


def _field(activation, width, **act):
  # Two hidden layers: the masked layer is not the first, as in the deep sweep.
  return models.make_field(
      (6, width), 1, activation=activation, activation_params=act, scheme_params=SP
  )


def _solo(field_w, member, optimizer, steps):
  p = train.init_members(field_w, [member], X[:1], SP)
  r = train.fit(
      models.mse_loss(field_w),
      p,
      [member],
      DATA,
      steps=steps,
      optimizer=optimizer,
      chunk_steps=25,
      log_every=25,
      progress=False,
      shard=False,
  )
  return p, r


@pytest.mark.parametrize("activation,act", [("sinc", {"omega": 10.0}), ("relu", {})])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masked_member_trains_like_its_true_width(activation, act, optimizer):
  steps = 60
  bucket_field = _field(activation, BUCKET, **act)
  params = widths.init_masked(bucket_field, MEMBERS, WIDTHS, X[:1], SP, bucket=BUCKET)
  loss = widths.masked_loss(models.mse_loss(bucket_field), 2)
  r = train.fit(
      loss,
      params,
      MEMBERS,
      DATA,
      steps=steps,
      optimizer=optimizer,
      chunk_steps=25,
      log_every=25,
      progress=False,
      shard=False,
  )
  for i, (m, w) in enumerate(zip(MEMBERS, WIDTHS)):
    p0, solo = _solo(_field(activation, w, **act), m, optimizer, steps)
    # Same init, bit for bit: drawn at the true width (fan-in laws), then padded.
    init_i = widths.extract_member(params, i, w, 2)
    for a, b in zip(jax.tree.leaves(init_i), jax.tree.leaves(train.unstack(p0, 0))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Same trajectory. Tolerance: float32 reassociation of the output sum over
    # units (the bucket adds exact zeros), grown over the run. For gradient
    # descent 1e-4 relative (~1000 ulps). Adam divides by sqrt(v): for a weight
    # whose gradient is near 0 the rounding difference is amplified up to a
    # whole step (~lr), so there the bound is 1% of one step, lr / 100. Both are
    # far below a real difference (a wrong fan-in or an unmasked unit moves
    # the params by many steps).
    atol = 1e-5 if optimizer == "sgd" else m.lr / 100
    got = widths.extract_member(r.state.params, i, w, 2)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(train.unstack(solo.state.params, 0))):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=atol)
    np.testing.assert_allclose(
        [h["loss"][i] for h in r.history],
        [h["loss"][0] for h in solo.history],
        rtol=1e-4 if optimizer == "sgd" else 1e-3,
    )
    # Training moved the params far beyond the tolerance (else equality
    # would be trivial).
    moved = max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(init_i))
    )
    assert moved > 100 * atol, moved
    # The padding is still exactly zero and the mask unchanged.
    net = train.unstack(r.state.params["net"], i)["params"]
    assert not np.any(np.asarray(net["dense_1"]["kernel"])[:, w:])
    assert not np.any(np.asarray(net["dense_1"]["bias"])[w:])
    assert not np.any(np.asarray(net["dense_2"]["kernel"])[w:])
  np.testing.assert_array_equal(
      np.asarray(r.state.params["mask"]), widths.unit_mask(WIDTHS, BUCKET)
  )


def test_without_the_mask_padded_sinc_units_would_learn():
  # Why the mask is needed: sinc(0) = 1, so a zero-padded unit has a nonzero
  # feature and its output weight a nonzero gradient. With the mask it is 0.
  field = _field("sinc", BUCKET, omega=10.0)
  params = widths.init_masked(field, MEMBERS[:1], [5], X[:1], SP, bucket=BUCKET)
  one = jax.tree.map(lambda a: a[0], params)
  key = jax.random.key(0)
  g_plain = jax.grad(lambda p: models.mse_loss(field)(p, DATA, key)[0])(one["net"])
  g_masked = jax.grad(lambda p: widths.masked_loss(models.mse_loss(field), 2)(p, DATA, key)[0])(one)
  assert np.abs(np.asarray(g_plain["params"]["dense_2"]["kernel"])[5:]).max() > 1e-3
  assert not np.any(np.asarray(g_masked["net"]["params"]["dense_2"]["kernel"])[5:])
  assert not np.any(np.asarray(g_masked["mask"]))


def test_embed_extract_roundtrip_and_errors():
  field = _field("relu", 7)
  p = field.init(jax.random.key(0), X[:1])
  back = widths.extract(widths.embed(p, 16, 2), 7, 2)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p, back))
  with pytest.raises(ValueError, match="smaller bucket"):
    widths.embed(p, 4, 2)
  with pytest.raises(ValueError, match="dense_3"):
    widths.embed(p, 16, 3)  # wrong layer count: names the layer it looked for
  with pytest.raises(ValueError, match="one width per member"):
    widths.init_masked(field, MEMBERS, [3], X[:1])
  with pytest.raises(ValueError, match=r"\[1, 8\]"):
    widths.unit_mask([9], 8)


def test_init_masked_gives_the_same_params_eagerly_and_under_jit():
  # Eagerly the members are padded and stacked with NumPy, under a trace with jnp
  # (eval_shape sizes memory without drawing): both paths must agree.
  field = _field("relu", BUCKET)
  eager = widths.init_masked(field, MEMBERS, WIDTHS, X[:1], SP, bucket=BUCKET)
  jitted = jax.jit(lambda: widths.init_masked(field, MEMBERS, WIDTHS, X[:1], SP, bucket=BUCKET))()
  shapes = jax.eval_shape(
      lambda: widths.init_masked(field, MEMBERS, WIDTHS, X[:1], SP, bucket=BUCKET)
  )
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape, eager)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_array_equal(a, b)
  host = widths.embed(jax.tree.map(np.asarray, eager["net"]), BUCKET + 3, 2)
  assert isinstance(host["params"]["dense_1"]["kernel"], np.ndarray)
  assert host["params"]["dense_1"]["kernel"].shape == (len(MEMBERS), 6, BUCKET + 3)


def test_buckets():
  b = widths.bucket_widths(16, 1024)
  assert b == [16, 32, 64, 128, 256, 512, 1024]
  assert [widths.bucket_for(w, b) for w in (1, 16, 17, 600, 1024)] == [16, 16, 32, 1024, 1024]
  with pytest.raises(ValueError, match="fits no bucket"):
    widths.bucket_for(1025, b)
  assert widths.group_by_bucket([40, 20, 33, 64], b) == {32: [1], 64: [0, 2, 3]}
  # The bounds: start 1 and a one-rung ladder are valid; start 0, start past
  # max_width, growth 1 (an endless ladder), width 0 are not.
  assert widths.bucket_widths(1, 8) == [1, 2, 4, 8] and widths.bucket_widths(5, 5) == [5]
  for bad in (dict(start=0, max_width=8), dict(start=9, max_width=8)):
    with pytest.raises(ValueError, match="1 <= start <= max_width"):
      widths.bucket_widths(**bad)
  with pytest.raises(ValueError, match="growth"):
    widths.bucket_widths(2, 8, growth=1.0)
  with pytest.raises(ValueError, match="fits no bucket"):
    widths.bucket_for(0, b)
  with pytest.raises(ValueError, match=r"\[1, 8\]"):
    widths.unit_mask([0, 3], 8)


def test_apply_mask_zeroes_exactly_the_masked_units():
  # On all-ones params, against the documented contract: the last hidden layer's
  # kernel columns and bias and the output kernel's rows beyond w are 0, the rest
  # (the first layer, the output bias) untouched. No training: the padded bias
  # would get zero gradient anyway, so only this test sees it.
  field = _field("relu", 8)
  ones = jax.tree.map(jnp.ones_like, field.init(jax.random.key(0), X[:1]))
  got = widths.apply_mask(ones, jnp.asarray(widths.unit_mask([3], 8)[0]), 2)["params"]
  keep = np.arange(8) < 3
  np.testing.assert_array_equal(got["dense_1"]["kernel"], np.broadcast_to(keep, (6, 8)))
  np.testing.assert_array_equal(got["dense_1"]["bias"], keep)
  np.testing.assert_array_equal(got["dense_2"]["kernel"], keep[:, None])
  np.testing.assert_array_equal(got["dense_2"]["bias"], np.ones(1))
  for leaf in jax.tree.leaves(got["dense_0"]):
    np.testing.assert_array_equal(leaf, np.ones_like(leaf))
