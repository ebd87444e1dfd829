"""The engine's opt-in matmul precision and rematerialisation (config keys precision, remat).

On the CPU the knob cannot change results much: XLA:CPU has no TF32 (``tf32`` means
float32 there) and this jaxlib computes the ``BF16_BF16_F32`` dot algorithm at float32,
so the tests check (1) that the setting reaches every matmul the step traces, forward
and backward, (2) that results stay within a stated tolerance of the plain path, and
(3) for remat, what the backward pass stores and the compiled program's temp memory.
"""

import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from nfscale import config_lib, models, train

POINTS, WIDTH = 256, 32


def _problem(activation="sine", params=None, hidden=(WIDTH, WIDTH), points=POINTS):
  x = np.random.default_rng(0).uniform(-1, 1, (points, 2)).astype(np.float32)
  y = (np.sin(3 * x[:, :1]) * np.cos(2 * x[:, 1:])).astype(np.float32)
  field = models.make_field(
      hidden,
      1,
      activation=activation,
      activation_params=params or {"omega": 30.0},
      scheme="siren" if activation == "sine" else "lecun_normal",
  )
  return field, {"x": x, "y": y}


def _fit(precision="default", remat="none", steps=20):
  field, data = _problem()
  members = [train.Member("siren", s, 1e-3) for s in range(2)]
  params = train.init_members(field, members, data["x"][:1])
  return train.fit(
      models.mse_loss(field),
      params,
      members,
      data,
      steps=steps,
      chunk_steps=10,
      progress=False,
      shard=False,
      precision=precision,
      remat=remat,
  )


def _lowered_chunk_text(precision, remat="none"):
  field, data = _problem()
  members = [train.Member("siren", 0, 1e-3), train.Member("siren", 1, 1e-3)]
  params = train.init_members(field, members, data["x"][:1])
  tx = train.make_optimizer("adam")
  chunk = train.make_train_chunk(
      models.mse_loss(field), tx, chunk_steps=2, precision=precision, remat=remat
  )
  args = (
      train.init_state(params, tx),
      jnp.full(2, 1e-3),
      jax.tree.map(jnp.asarray, data),
      jax.random.key(0),
      0,
      2,
  )
  return chunk.lower(*args).as_text()


def _dot_lines(text):
  return [line for line in text.splitlines() if "stablehlo.dot_general" in line]


@pytest.mark.parametrize(
    "precision,marker",
    [
        ("highest", "precision = [HIGHEST, HIGHEST]"),
        ("bf16", "lhs_precision_type = bf16, rhs_precision_type = bf16, accumulation_type = f32"),
        # tf32 on the CPU: float32 (XLA:CPU refuses the TF32 algorithm).
        ("tf32", "precision = [HIGHEST, HIGHEST]"),
    ],
)
def test_precision_reaches_every_matmul_of_the_step(precision, marker):
  dots = _dot_lines(_lowered_chunk_text(precision))
  # 2 hidden->hidden/out matmuls forward, their input and weight gradients backward.
  assert len(dots) >= 6
  assert all(marker in line for line in dots), [d for d in dots if marker not in d][:1]


def test_default_precision_leaves_the_matmuls_alone():
  dots = _dot_lines(_lowered_chunk_text("default"))
  assert dots and not any("algorithm" in d or "HIGHEST" in d for d in dots)


def test_precision_values_for_jax():
  assert train.matmul_precision("default") is None
  assert train.matmul_precision("highest", "gpu") == "highest"
  assert train.matmul_precision("tf32", "cuda") == "TF32_TF32_F32"
  assert train.matmul_precision("tf32", "cpu") == "highest"
  assert train.matmul_precision("bf16", "gpu") == "BF16_BF16_F32"


@pytest.mark.parametrize("precision", ["highest", "tf32", "bf16"])
def test_precision_results_match_the_plain_path(precision):
  # Tolerance: float32 rounding (1e-5 relative) for highest/tf32, which are float32 on
  # the CPU. bf16 is float32 on this CPU too; 3e-2 would still hold if a CPU backend
  # rounded the dots' inputs to bfloat16 (8-bit mantissa: ~0.4% per product, averaged
  # over 32-term sums, 20 Adam steps at lr 1e-3 on an initial loss of ~0.1).
  plain, other = _fit(), _fit(precision)
  rtol = 3e-2 if precision == "bf16" else 1e-5
  np.testing.assert_allclose(np.asarray(other.state.loss), np.asarray(plain.state.loss), rtol=rtol)
  assert np.all(np.asarray(other.state.steps) == 20)


@pytest.mark.parametrize("remat", ["dots", "full"])
def test_remat_results_match_the_plain_path(remat):
  # Recomputation evaluates the same float32 ops again: equal up to float rounding of
  # a different fusion (1e-5 relative on the loss, 1e-4 absolute on params of scale ~0.1).
  plain, other = _fit(), _fit(remat=remat)
  np.testing.assert_allclose(np.asarray(other.state.loss), np.asarray(plain.state.loss), rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
      other.state.params,
      plain.state.params,
  )


def _big_residuals(remat, activation="sine", params=None, hidden=(WIDTH, WIDTH)):
  field, data = _problem(activation, params, hidden)
  p = field.init(jax.random.key(0), data["x"][:1])
  loss = train.remat_loss(models.mse_loss(field), remat)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):  # jax's public listing of the residuals
    print_saved_residuals(lambda q: loss(q, data, None)[0], p)
  return [line for line in out.getvalue().splitlines() if line.startswith(f"f32[{POINTS},{WIDTH}]")]


def test_remat_stores_fewer_point_by_width_arrays():
  # Plain: per hidden layer the activation and its derivative; dots: only the matmul
  # outputs (the first layer is a multiply-add, recomputed); full: nothing.
  none, dots, full = (len(_big_residuals(r)) for r in ("none", "dots", "full"))
  assert none == 4 and dots == 1 and full == 0


def test_remat_dots_lowers_compiled_temp_memory():
  # jnp.sinc's derivative keeps several (points, width) arrays per layer that XLA cannot
  # fuse away; storing only the matmul outputs cuts the compiled step's temp memory
  # (measured 18 -> 12 MiB at 4096 points, 6 layers of 64). The sine field does not
  # drop on XLA:CPU (its fusion already keeps about one array per layer).
  field, data = _problem("sinc", {"omega": 10.0}, (64,) * 6, points=4096)
  p = field.init(jax.random.key(0), data["x"][:1])

  def temp_bytes(remat):
    loss = train.remat_loss(models.mse_loss(field), remat)
    step = jax.jit(jax.value_and_grad(lambda q: loss(q, data, None)[0]))
    return step.lower(p).compile().memory_analysis().temp_size_in_bytes

  none, dots = temp_bytes("none"), temp_bytes("dots")
  assert dots < 0.8 * none, (dots, none)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"precision": "fp8"}, "valid precisions"), ({"remat": "some"}, "valid remat settings")],
)
def test_bad_setting_is_a_one_line_error(kwargs, match):
  with pytest.raises(ValueError, match=match) as info:
    _fit(steps=1, **kwargs)
  assert "\n" not in str(info.value)
  with pytest.raises(ValueError, match=match):
    train.make_train_chunk(
        lambda p, b, r: (0.0, {}), train.make_optimizer("sgd"), chunk_steps=1, **kwargs
    )


def test_config_keys_default_to_todays_behaviour():
  c = config_lib.base_config()
  assert c.precision == "default" and c.remat == "none"
  assert c.precision in train.PRECISIONS and c.remat in train.REMAT


def test_defaults_trace_the_same_program_as_before():
  # No scope and no checkpoint by default: the CPU program (and speed) is unchanged.
  loss = models.mse_loss(_problem()[0])
  assert train.remat_loss(loss, "none") is loss
  assert "optimization_barrier" not in _lowered_chunk_text("default")


@pytest.mark.parametrize(
    "key,value,match",
    [("precision", "fp8", "valid precisions"), ("remat", "some", "valid remat settings")],
)
def test_experiment_validation_names_the_choices(key, value, match):
  from configs import curve1d  # pylint: disable=import-outside-toplevel
  from nfscale import experiment  # pylint: disable=import-outside-toplevel

  config = curve1d.get_config("quick")
  config.unlock()
  config[key] = value
  with pytest.raises(ValueError, match=match) as info:
    experiment.validate(config)
  assert "\n" not in str(info.value)
