"""Fused sine layers: the same values and gradients as the plain path (JAX and Pallas-interpret)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import activations, fused, gpu_suite, models, train

OMEGA = 30.0
# float32 with omega = 30: a pre-activation rounded differently by ~1e-7
# relative moves sin(30 z) by ~3e-6 for |z| <= 1; gradients carry another
# factor omega. The tolerances below are ~10x those roundings.
ATOL_VALUE = 3e-5
ATOL_GRAD = 1e-3


def _plain(x, w, b):
  return jnp.sin(OMEGA * (jnp.matmul(x, w, precision="highest") + b))


def _inputs(rows=100, k=3, n=70, seed=0):
  kx, kw, kb = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.uniform(kx, (rows, k), minval=-1, maxval=1)
  w = jax.random.normal(kw, (k, n)) / np.sqrt(k) / OMEGA * 2
  b = jax.random.uniform(kb, (n,), minval=-0.1, maxval=0.1)
  return x, w, b


@pytest.mark.parametrize("impl", ["jax", "pallas"])
@pytest.mark.parametrize("shape", [(100, 3, 70), (64, 32, 64), (7, 40, 5)])
def test_values_and_gradients_match_the_plain_layer(impl, shape):
  x, w, b = _inputs(*shape)
  y = fused.dense_sine(x, w, b, OMEGA, impl=impl, precision="highest")
  np.testing.assert_allclose(y, _plain(x, w, b), atol=ATOL_VALUE, rtol=0)
  g = jax.random.normal(jax.random.key(7), y.shape)

  def loss(f):
    return lambda x, w, b: jnp.sum(g * f(x, w, b))

  mine = jax.grad(
      loss(lambda x, w, b: fused.dense_sine(x, w, b, OMEGA, impl=impl, precision="highest")),
      argnums=(0, 1, 2),
  )(x, w, b)
  ref = jax.grad(loss(_plain), argnums=(0, 1, 2))(x, w, b)
  for a, r in zip(mine, ref):
    np.testing.assert_allclose(a, r, atol=ATOL_GRAD * float(jnp.abs(r).max()), rtol=0)


def test_pallas_kernel_under_vmap_and_leading_dims():
  # An ensemble: one weight set per member, vmapped, inputs with two leading dims.
  x, _, _ = _inputs(24, 3, 20)
  x = x.reshape(4, 6, 3)
  ws = jax.random.normal(jax.random.key(1), (3, 3, 20)) * 0.05
  bs = jnp.zeros((3, 20))
  f = lambda impl: jax.jit(  # noqa: E731
      jax.vmap(lambda w, b: fused.dense_sine(x, w, b, OMEGA, impl=impl, precision="highest"))
  )
  np.testing.assert_allclose(f("pallas")(ws, bs), f("jax")(ws, bs), atol=ATOL_VALUE, rtol=0)
  assert f("pallas")(ws, bs).shape == (3, 4, 6, 20)


def test_pallas_gradients_under_vmap_match_the_jax_path():
  # An ensemble's gradients: the backward kernel batched over members (its
  # partial bias sums too), against the plain-JAX backward pass.
  x, _, _ = _inputs(90, 3, 20)
  ws = jax.random.normal(jax.random.key(1), (3, 3, 20)) * 0.05
  bs = jax.random.uniform(jax.random.key(2), (3, 20), minval=-0.1, maxval=0.1)
  g = jax.random.normal(jax.random.key(3), (90, 20))

  def grads(impl):
    loss = lambda w, b: jnp.sum(  # noqa: E731
        g * fused.dense_sine(x, w, b, OMEGA, impl=impl, precision="highest")
    )
    return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(ws, bs)

  for a, r in zip(grads("pallas"), grads("jax")):
    np.testing.assert_allclose(a, r, atol=ATOL_GRAD * float(jnp.abs(r).max()), rtol=0)


def test_pallas_kernel_lowers_to_triton_for_cuda(monkeypatch):
  # No GPU here, but JAX can lower for one: exporting for CUDA runs the Pallas
  # GPU lowering of the kernel (Triton), forward and backward. This caught the
  # kernel lowering through Mosaic GPU, which has no dot_general for it.
  from jax import export

  monkeypatch.setattr(fused, "_interpret", lambda: False)
  x, w, b = _inputs(256, 64, 128)
  triton = export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
  # Every tiling the GPU suite compares lowers too (value and gradient).
  for tiles in gpu_suite.GPU_LAYER_TILES:
    loss = lambda x, w, b, t=tiles: jnp.sum(  # noqa: E731
        fused.dense_sine(x, w, b, OMEGA, impl="pallas", tiles=t) ** 2
    )
    exported = export.export(
        jax.jit(jax.grad(loss, argnums=(0, 1, 2))), platforms=["cuda"], disabled_checks=[triton]
    )(x, w, b)
    assert exported.mlir_module().count("__gpu$xla.gpu.triton") == 2, tiles
  # TF32 and full float32 dots by argument; bf16 inputs with float32
  # accumulation by the engine's scope.
  for precision, scope in ((None, "default"), ("highest", "default"), (None, "bf16")):
    f = lambda x, w, b, p=precision: fused.dense_sine(  # noqa: E731
        x, w, b, OMEGA, impl="pallas", precision=p
    )
    loss = lambda x, w, b, f=f: jnp.sum(f(x, w, b) ** 2)  # noqa: E731
    # The value: the forward kernel; the gradient: forward and backward kernels.
    for fn, kernels in ((f, 1), (jax.grad(loss, argnums=(0, 1, 2)), 2)):
      with train.precision_scope(scope):
        exported = export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=[triton])(x, w, b)
      assert exported.mlir_module().count("__gpu$xla.gpu.triton") == kernels


def _dot_precisions(jaxpr):
  """The precision of every dot_general in ``jaxpr``, kernels' bodies included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn.params["precision"])
    for value in eqn.params.values():
      inner = getattr(value, "jaxpr", value)
      if hasattr(inner, "eqns"):
        found += _dot_precisions(inner)
  return found


@pytest.mark.parametrize(
    "setting, expected",
    [
        ("highest", (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)),
        ("bf16", jax.lax.DotAlgorithmPreset.BF16_BF16_F32),
    ],
)
def test_the_engine_precision_setting_reaches_the_kernels(setting, expected):
  # The engine sets precision by scope (train.precision_scope), not by argument:
  # the kernels' dots must pick it up when traced, forward and backward alike
  # (the Triton lowering maps a dot without one to TF32).
  x, w, b = _inputs(64, 32, 64)
  loss = lambda w: jnp.sum(fused.dense_sine(x, w, b, OMEGA, impl="pallas") ** 2)  # noqa: E731
  with train.precision_scope(setting):
    jaxpr = jax.make_jaxpr(jax.grad(loss))(w)
  precisions = _dot_precisions(jaxpr.jaxpr)
  assert len(precisions) >= 4  # two kernels' dots and the two gradient matmuls
  assert all(p == expected for p in precisions), precisions


def test_backward_keeps_no_preactivation():
  # The saved residuals are the layer's inputs: nothing of shape (rows, width).
  x, w, b = _inputs(512, 3, 256)
  _, vjp = jax.vjp(lambda w: fused.dense_sine(x, w, b, OMEGA, impl="jax"), w)
  saved = [leaf.shape for leaf in jax.tree.leaves(vjp)]
  assert (512, 256) not in saved, saved


def test_fast_sine_option_of_the_jax_path():
  # fastmath's sine and cosine (max abs error ~1.2e-7) against XLA's: the same
  # layer within the tolerances above; the Pallas kernels ignore the option.
  x, w, b = _inputs(100, 3, 70)
  g = jax.random.normal(jax.random.key(7), (100, 70))

  def value_and_grads(**kw):
    f = lambda w, b: jnp.sum(g * fused.dense_sine(x, w, b, OMEGA, precision="highest", **kw))  # noqa: E731
    return jax.value_and_grad(f, argnums=(0, 1))(w, b)

  (v0, g0), (v1, g1) = value_and_grads(impl="jax"), value_and_grads(impl="jax", fast=True)
  np.testing.assert_allclose(v1, v0, atol=ATOL_VALUE * 100, rtol=0)  # a sum of 7000 values
  for a, r in zip(g1, g0):
    np.testing.assert_allclose(a, r, atol=ATOL_GRAD * float(jnp.abs(r).max()), rtol=0)
  np.testing.assert_array_equal(
      fused.dense_sine(x, w, b, OMEGA, impl="pallas", fast=True),
      fused.dense_sine(x, w, b, OMEGA, impl="pallas"),
  )


def test_tiles_change_no_values_and_are_validated():
  # Tiles smaller and larger than the layer, and not dividing it: padding keeps
  # every tiling's result the plain layer's (values and gradients).
  x, w, b = _inputs(100, 40, 70)
  ref = fused.dense_sine(x, w, b, OMEGA, impl="pallas", precision="highest")
  for tiles in ("16x16x16/1/1", "128x128x64/8/3", fused.Tiles(32, 64, 16, 2, 2)):
    y = fused.dense_sine(x, w, b, OMEGA, impl="pallas", precision="highest", tiles=tiles)
    np.testing.assert_allclose(y, ref, atol=ATOL_VALUE, rtol=0)
  assert str(fused.DEFAULT_TILES) == "64x64x32/4/2"
  for bad, match in (
      ("64x64", "expected ROWSxCOLSxK"),
      ("64x48x32", "cols=48 must be a power of two"),
      ("8x64x32", "rows=8 must be a power of two of at least 16"),
      ("64x64x32/3", "num_warps=3"),
      ("64x64x32/4/0", "num_stages=0"),
  ):
    with pytest.raises(ValueError, match=match):
      fused.dense_sine(x, w, b, OMEGA, impl="pallas", tiles=bad)


def test_bad_arguments():
  x, w, b = _inputs(4, 3, 5)
  with pytest.raises(ValueError, match="must be one of"):
    fused.dense_sine(x, w, b, OMEGA, impl="cuda")
  with pytest.raises(ValueError, match="do not chain"):
    fused.dense_sine(x, w.T, b, OMEGA, impl="jax")
  with pytest.raises(ValueError, match="real layers"):
    fused.dense_sine(x.astype(jnp.complex64), w, b, OMEGA, impl="jax")
  assert fused.resolve_impl("auto", "gpu") == "pallas"
  assert fused.resolve_impl("auto", "cpu") == "jax"


def _field(fused_impl="off", activation="sine"):
  return models.make_field((32, 32), 3, activation=activation, scheme="siren", fused=fused_impl)


@pytest.mark.parametrize("impl, fast_sine", [("jax", False), ("jax", True), ("pallas", False)])
def test_field_with_fused_layers_has_the_same_params_and_trains_alike(impl, fast_sine):
  # With fast_sine the fused layers take fastmath's sine and cosine, like the
  # plain layers' Sine(fast=True). The Pallas kernels train in interpret mode.
  x = jax.random.uniform(jax.random.key(3), (200, 2), minval=-1, maxval=1)
  y = jnp.sin(3 * x[:, :1]) * jnp.ones((1, 3))
  activation = activations.Sine(OMEGA, fast=fast_sine)
  plain, fast = _field(activation=activation), _field(impl, activation=activation)
  p0 = plain.init(jax.random.key(0), x[:1])
  p1 = fast.init(jax.random.key(0), x[:1])
  # Same names, shapes and values: checkpoints move between the two.
  jax.tree.map(np.testing.assert_array_equal, p0, p1)
  np.testing.assert_allclose(fast.apply(p0, x), plain.apply(p0, x), atol=1e-4, rtol=0)
  members = [train.Member("siren", 0, 1e-4)]
  runs = []
  for field in (plain, fast):
    params = train.init_members(field, members, x[:1])
    fit = train.fit(
        models.mse_loss(field), params, members, {"x": x, "y": y}, steps=20, chunk_steps=10
    )
    runs.append(np.asarray(fit.state.loss))
  # 20 Adam steps from the same start: the losses agree to float rounding.
  np.testing.assert_allclose(runs[1], runs[0], rtol=1e-3)


def test_field_refuses_fusing_other_activations():
  with pytest.raises(ValueError, match="fuses sine layers"):
    _field("jax", activation="sinc")
  with pytest.raises(ValueError, match="must be one of"):
    _field("triton")


def test_engine_step_with_pallas_layers_lowers_for_cuda(monkeypatch):
  # The whole training chunk of a 2-member ensemble (vmap over members, scan
  # over steps) with fused Pallas layers: per hidden layer, one Triton call in
  # the forward pass and one in the backward pass.
  from jax import export

  monkeypatch.setattr(fused, "_interpret", lambda: False)
  field = models.make_field((64, 64), 3, activation="sine", scheme="siren", fused="pallas")
  x, y = jnp.ones((512, 2)), jnp.ones((512, 3))
  members = [train.Member("siren", s, 1e-4) for s in (0, 1)]
  tx = train.make_optimizer("adam")
  state = train.init_state(train.init_members(field, members, x[:1]), tx)
  chunk = train.make_train_chunk(models.mse_loss(field), tx, chunk_steps=5)
  triton = export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
  exported = export.export(chunk, platforms=["cuda"], disabled_checks=[triton])(
      state, jnp.ones(2), {"x": x, "y": y}, jax.random.key(0), 0, 5
  )
  assert exported.mlir_module().count("__gpu$xla.gpu.triton") == 4
