"""nfscale.theory: eq. 4.6 diagnostics checked against an independent float64 numpy computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import initializers, models, theory, train

N = 20
X = np.linspace(-1, 1, N, dtype=np.float32)[:, None]
Y = (np.sin(2 * np.pi * X) + np.sin(6 * np.pi * X) + np.sin(10 * np.pi * X)).astype(np.float32)

ACTIVATIONS = {
    "sinc": ({"omega": 30.0}, lambda z: np.sinc(30.0 * z / np.pi)),
    "gaussian": ({"sigma": 0.5}, lambda z: np.exp(-z * z / (2 * 0.5**2))),
    "gabor": (
        {"omega0": 10.0, "s0": 1.0},
        lambda z: np.exp(1j * 10.0 * z - np.real(z * np.conj(z))),
    ),
}


def _field(hidden, activation="sinc", scheme="lecun_normal", first_bias="torch", out_dim=1):
  return models.make_field(
      hidden,
      out_dim,
      activation=activation,
      activation_params=ACTIVATIONS[activation][0],
      scheme=scheme,
      scheme_params={"first_bias": first_bias},
  )


def _numpy_reference(params, hidden, activation, x, y):
  """Forward pass and eq. 4.6 in float64 numpy, from the params alone."""
  phi = ACTIVATIONS[activation][1]
  p = params["params"]
  h = np.asarray(x, np.float64)
  for k in range(len(hidden)):
    w, b = (
        np.asarray(p[f"dense_{k}"][n]).astype(
            np.complex128 if np.iscomplexobj(p[f"dense_{k}"][n]) else np.float64
        )
        for n in ("kernel", "bias")
    )
    h = phi(h @ w + b)
  last = p[f"dense_{len(hidden)}"]
  w_last = np.asarray(last["kernel"]).astype(h.dtype if np.iscomplexobj(h) else np.float64)
  out = np.real(h @ w_last + np.asarray(last["bias"]))
  n_pts, width = h.shape
  svals = np.linalg.svd(h, compute_uv=False)
  sigma_min = svals[-1] if width >= n_pts else 0.0
  loss = 0.5 * np.sum((out - np.asarray(y, np.float64)) ** 2)
  w_norm = np.linalg.norm(w_last, 2)
  rhs = 16 * math.sqrt(n_pts) / math.sqrt(width) * math.sqrt(2 * loss) * w_norm
  return dict(
      sigma_min=sigma_min,
      sigma_max=svals[0],
      w_last_norm=w_norm,
      init_loss=loss,
      rhs=rhs,
      margin=sigma_min**2 - rhs,
      features=h,
  )


@pytest.mark.parametrize(
    "hidden,activation,scheme",
    [
        ((64,), "sinc", "lecun_normal"),
        ((8,), "sinc", "init1"),
        ((64,), "gaussian", "kaiming_normal"),
        ((8,), "gaussian", "xavier_normal"),
        ((16, 32), "gaussian", "init1"),  # deep: eq. 4.6 on the last hidden layer
        ((16, 48), "gabor", "init1"),  # complex features and last kernel
    ],
)
def test_matches_numpy_float64(hidden, activation, scheme):
  field = _field(hidden, activation, scheme)
  params = field.init(jax.random.key(3), X[:1])
  d = theory.init_diagnostics(field, params, X, Y)
  ref = _numpy_reference(params, hidden, activation, X, Y)
  assert (d.N, d.width) == (N, hidden[-1])
  # Same float32 params widened exactly: the norm agrees to float64 rounding.
  np.testing.assert_allclose(d.w_last_norm, ref["w_last_norm"], rtol=1e-12)
  # The model's forward pass is float32: features and loss agree to ~1e-6.
  np.testing.assert_allclose(d.init_loss, ref["init_loss"], rtol=1e-5)
  np.testing.assert_allclose(d.sigma_min, ref["sigma_min"], rtol=1e-4, atol=1e-5 * ref["sigma_max"])
  np.testing.assert_allclose(d.rhs, ref["rhs"], rtol=1e-5)
  np.testing.assert_allclose(d.margin, ref["margin"], rtol=1e-4, atol=1e-4 * ref["sigma_max"] ** 2)
  assert d.holds == (d.margin >= 0)
  if hidden[-1] < N:
    assert d.sigma_min == 0.0 and not d.holds
  elif activation == "sinc":
    # Random first biases, oscillating features: well conditioned. (Smooth
    # Gaussian features give sigma_min / sigma_max ~ 1e-6 here, near the
    # float32 resolution of the features, hence the atol above.)
    assert d.sigma_min > 1e-3 * ref["sigma_max"]


def test_margin_formula():
  field = _field((64,), "sinc", "init1")
  d = theory.init_diagnostics(field, field.init(jax.random.key(0), X[:1]), X, Y)
  rhs = 16 * math.sqrt(d.N) / math.sqrt(d.width) * math.sqrt(2 * d.init_loss) * d.w_last_norm
  assert d.rhs == pytest.approx(rhs, rel=1e-14)
  assert d.margin == d.sigma_min**2 - d.rhs
  assert isinstance(d.holds, bool) and isinstance(d.N, int) and isinstance(d.width, int)


def test_sigma_min_zero_below_n_even_though_numpy_reports_a_positive_value():
  field = _field((8,), "sinc")
  params = field.init(jax.random.key(0), X[:1])
  d = theory.init_diagnostics(field, params, X, Y)
  feats = _numpy_reference(params, (8,), "sinc", X, Y)["features"]
  # The 8th singular value of the 20 x 8 matrix is not what the proof needs:
  # F F^T (20 x 20) has rank 8 and lambda_min = 0.
  assert np.linalg.svd(feats, compute_uv=False)[-1] > 0
  assert d.sigma_min == 0.0 and d.margin == -d.rhs and not d.holds


def test_sigma_min_at_width_equal_to_n_is_the_square_case_not_zero():
  # width == N: F F^T is N x N of full rank, so sigma_min is F's smallest singular
  # value (only width < N forces 0). Square, it is smaller than for a wide F
  # (here ~2.4e-4 sigma_max) but far above the ~1e-7 sigma_max that float32
  # features resolve (module docstring): 1e-5 sigma_max is a safe floor.
  field = _field((N,), "sinc")
  params = field.init(jax.random.key(3), X[:1])
  d = theory.init_diagnostics(field, params, X, Y)
  ref = _numpy_reference(params, (N,), "sinc", X, Y)
  assert d.width == d.N == N
  assert d.sigma_min > 1e-5 * ref["sigma_max"]
  np.testing.assert_allclose(d.sigma_min, ref["sigma_min"], rtol=1e-4, atol=1e-5 * ref["sigma_max"])


def test_even_symmetry_with_zero_biases_gives_singular_features():
  # Zero biases, 1-D symmetric points: sinc features satisfy F(x) = F(-x), so
  # rows repeat and sigma_min vanishes (to float64 accuracy) at any width.
  field = _field((64,), "sinc", first_bias="zeros")
  params = field.init(jax.random.key(0), X[:1])
  d = theory.init_diagnostics(field, params, X, Y)
  sigma_max = np.linalg.svd(
      _numpy_reference(params, (64,), "sinc", X, Y)["features"], compute_uv=False
  )[0]
  assert d.sigma_min < 1e-6 * sigma_max and not d.holds


def test_complex_features_are_conservative():
  # sigma_min of the complex F lower-bounds that of the real [Re F, Im F].
  field = _field((16, 48), "gabor", "init1")
  params = field.init(jax.random.key(1), X[:1])
  d = theory.init_diagnostics(field, params, X, Y)
  _, feats = field.apply(params, X, return_features=True)
  feats = np.asarray(feats).astype(np.complex128)
  assert np.iscomplexobj(feats)
  real_sigma = np.linalg.svd(np.concatenate([feats.real, feats.imag], 1), compute_uv=False)[-1]
  assert 0 < d.sigma_min <= real_sigma * (1 + 1e-9)


def test_stacked_equals_per_member():
  field = _field((32,), "sinc")
  members = [
      train.Member("lecun_normal", 0, 0.1),
      train.Member("init1", 1, 0.1),
      train.Member("kaiming_normal", 2, 0.1),
  ]
  stacked = train.init_members(field, members, jnp.asarray(X[:1]), {"first_bias": "torch"})
  got = theory.ensemble_diagnostics(field, stacked, X, Y)
  assert len(got) == len(members)
  for m, d in enumerate(got):
    single = jax.tree.map(lambda a: a[m], stacked)
    want = theory.init_diagnostics(field, single, X, Y)
    assert (d.N, d.width, d.holds) == (want.N, want.width, want.holds)
    np.testing.assert_allclose(d[2:7], want[2:7], rtol=1e-5, atol=1e-6)
  assert len({d.w_last_norm for d in got}) == 3  # the members really differ


def test_condition_search_draws_the_params_model_init_draws():
  # The search initialises all seeds in one jitted, vmapped program; it must draw
  # the very params that model.init(key(seed)) draws, or its widths would not be the
  # training's. Its forward pass may differ from the op-by-op one by float32 rounding
  # only: 1e-5 of the largest entry, about 100 ulps, since the sinc/Gabor phases
  # (omega * z) amplify a rounding of z (measured up to 4e-6 here).
  field = _field((16, 8), "gabor", scheme="init1")
  x = jnp.asarray(X)
  stacked, out, feats = theory._init_and_apply_stacked(
      field, jnp.stack([jax.random.key(s) for s in (0, 5)]), x
  )
  for j, seed in enumerate((0, 5)):
    one = field.init(jax.random.key(seed), x[:1])
    assert jax.tree.structure(one) == jax.tree.structure(stacked)
    for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(one)):
      np.testing.assert_array_equal(a[j], b)
    want_out, want_feats = field.apply(one, x, return_features=True)
    for got, want in ((out[j], want_out), (feats[j], want_feats)):
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.max(np.abs(want))))


def test_schemes_share_one_compiled_forward_pass_per_width():
  # Only model.init reads the scheme, so the search compiles a width's forward
  # pass once for every scheme, not once per (scheme, width). A width no other
  # test uses, so that the first scheme must add exactly one program.
  x = jnp.asarray(X)
  keys = jnp.stack([jax.random.key(s) for s in (0, 1)])
  before = theory._apply_stacked_jit._cache_size()
  for scheme in ("lecun_normal", "init1", "kaiming_uniform", "siren"):
    theory._init_and_apply_stacked(_field((23,), "sinc", scheme=scheme), keys, x)
  assert theory._apply_stacked_jit._cache_size() == before + 1


def test_condition_width_search_is_consistent():
  # A cheap case with a low threshold (y = 0 keeps L(theta_0) small), and a
  # search window chosen around it so that only 3 widths are compiled.
  n_pts = 8
  x = np.linspace(-1, 1, n_pts, dtype=np.float32)[:, None]
  y = np.zeros((n_pts, 1), np.float32)
  make = lambda w: _field((w,), "sinc")
  record = {}
  seeds = (0, 1, 2)
  kw = dict(
      seeds=seeds, start=32, max_width=64, rel_precision=0.25, scheme_params={"first_bias": "torch"}
  )
  r = theory.condition_width(make, "init1", x, y, record=record, **kw)
  assert r.found and r.evaluations[r.width]
  assert set(record) == set(r.evaluations)
  # Precision guarantee of min_width_search, with the bracket's lower end failing.
  assert r.lower_bound >= kw["start"] and not r.evaluations[r.lower_bound]
  assert r.width - r.lower_bound <= max(1, kw["rel_precision"] * r.width)
  # Re-evaluation from one plain model.init per seed (the search draws all
  # seeds in one vmapped init; the params must be the same).
  scheme = initializers.get_scheme("init1", first_bias="torch")
  for width, ok in ((r.width, True), (r.lower_bound, False)):
    model = make(width).clone(scheme=scheme)
    init = jax.jit(model.init)
    stacked = jax.tree.map(
        lambda *a: jnp.stack(a), *[init(jax.random.key(s), x[:1]) for s in seeds]
    )
    diags = theory.ensemble_diagnostics(model, stacked, x, y)
    np.testing.assert_allclose(
        [d.margin for d in diags], [d.margin for d in record[width]], rtol=1e-5, atol=1e-6
    )
    assert (np.median([d.margin for d in diags]) >= 0) == ok
    assert [d.holds for d in diags] == [d.holds for d in record[width]]
  # "all" is at least as strict as "median" at the same widths.
  strict = theory.condition_width(make, "init1", x, y, rule="all", **kw)
  for width, ok in strict.evaluations.items():
    assert ok == all(d.holds for d in record[width])


def test_condition_width_not_found():
  # Zero biases: even features on symmetric points, sigma_min = 0 at any width.
  make = lambda w: _field((w,), "sinc", first_bias="zeros")
  r = theory.condition_width(
      make,
      "lecun_normal",
      X,
      Y,
      seeds=(0,),
      start=64,
      max_width=64,
      scheme_params={"first_bias": "zeros"},
  )
  assert not r.found and r.width is None and r.evaluations == {64: False}


def test_bad_inputs_name_the_argument():
  field = _field((8,), "sinc")
  params = field.init(jax.random.key(0), X[:1])
  linear = models.make_field((), 1)
  with pytest.raises(ValueError, match="model"):
    theory.init_diagnostics(linear, linear.init(jax.random.key(0), X[:1]), X, Y)
  with pytest.raises(ValueError, match="model"):
    theory.ensemble_diagnostics(linear, None, X, Y)
  with pytest.raises(ValueError, match="same number of points"):
    theory.init_diagnostics(field, params, X, Y[:-1])
  with pytest.raises(ValueError, match="x must"):
    theory.init_diagnostics(field, params, X[:, 0], Y)
  with pytest.raises(ValueError, match="y must"):
    theory.init_diagnostics(field, params, X, Y[:, 0])
  with pytest.raises(ValueError, match="y must match"):
    theory.init_diagnostics(field, params, X, np.concatenate([Y, Y], 1))
  with pytest.raises(ValueError, match="at least one point"):
    theory.init_diagnostics(field, params, X[:0], Y[:0])
  with pytest.raises(ValueError, match="params"):
    theory.init_diagnostics(_field((8, 8), "sinc"), params, X, Y)
  with pytest.raises(ValueError, match="stacked_params"):
    theory.ensemble_diagnostics(field, params, X, Y)  # leaves disagree on axis 0
  make = lambda w: _field((w,), "sinc")
  with pytest.raises(ValueError, match="make_model"):
    theory.condition_width(lambda w: _field((w + 1,), "sinc"), "init1", X, Y, max_width=16)
  with pytest.raises(ValueError, match="make_model"):
    theory.condition_width(lambda w: linear, "init1", X, Y, max_width=16)
  with pytest.raises(ValueError, match="seeds"):
    theory.condition_width(make, "init1", X, Y, seeds=())
  with pytest.raises(ValueError, match="rule"):
    theory.condition_width(make, "init1", X, Y, rule="mean")
  with pytest.raises(ValueError, match="scheme"):
    theory.condition_width(make, "no_such_scheme", X, Y)
