"""Positional embeddings: formulas, shapes, reproducibility."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nfscale import encodings as E


def test_registry():
  assert E.list_encodings() == ["identity", "rff", "nerf"]


def test_rff_formula_and_reproducible():
  enc = E.get_encoding("rff", dim=8, sigma=2.0, seed=3)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (50, 2)), jnp.float32)
  y = np.asarray(enc(x))
  b = np.asarray(enc.matrix(2), np.float64)
  assert b.shape == (2, 4)
  proj = 2 * np.pi * np.asarray(x, np.float64) @ b
  np.testing.assert_allclose(y, np.concatenate([np.cos(proj), np.sin(proj)], -1), atol=1e-4)
  np.testing.assert_array_equal(y, np.asarray(E.get_encoding("rff", dim=8, sigma=2.0, seed=3)(x)))
  assert not np.allclose(y, np.asarray(E.get_encoding("rff", dim=8, sigma=2.0, seed=4)(x)))
  assert enc.out_dim(2) == 8


def test_rff_matrix_statistics():
  b = np.asarray(E.RandomFourierFeatures(dim=20000, sigma=3.0).matrix(1))
  # 10000 normal draws: s.e. of the std is 3/sqrt(2*10000) = 0.021; allow 5 s.e.
  assert abs(b.std() - 3.0) < 0.11


def test_nerf_formula():
  enc = E.get_encoding("nerf", num_frequencies=4, include_input=True)
  x = jnp.asarray([[0.25, -0.5]], jnp.float32)
  y = np.asarray(enc(x))[0]
  assert y.shape == (enc.out_dim(2),) == (18,)
  np.testing.assert_allclose(y[:2], [0.25, -0.5])
  k = 2.0 ** np.arange(4) * np.pi
  proj = (np.array([0.25, -0.5])[:, None] * k).ravel()
  np.testing.assert_allclose(y[2:10], np.sin(proj), atol=1e-6)
  np.testing.assert_allclose(y[10:], np.cos(proj), atol=1e-6)


@pytest.mark.parametrize("name", ["rff", "nerf"])
def test_integer_coordinates_are_encoded_as_floats(name):
  # Integer inputs cast the frequencies to the input's dtype: NeRF's pi became 3
  # (sin(3) = 0.14 where sin(pi) = 0) and RFF's B was truncated to integers.
  enc = E.get_encoding(name, **({"dim": 8, "sigma": 2.0} if name == "rff" else {}))
  xi = jnp.arange(-3, 4, dtype=jnp.int32)[:, None]
  got = enc(xi)
  assert jnp.issubdtype(got.dtype, jnp.floating)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(enc(xi.astype(jnp.float32))))


def test_identity_and_jit():
  x = jnp.ones((3, 2))
  np.testing.assert_array_equal(E.get_encoding("identity")(x), x)
  enc = E.get_encoding("rff", dim=16)
  # sigma=10 gives arguments |2 pi x B| up to ~200, where float32 spacing is
  # 1.5e-5; jit may fuse the product differently, so allow a few ulps of that.
  np.testing.assert_allclose(jax.jit(enc)(x), enc(x), atol=1e-4)


def test_bad_input():
  with pytest.raises(ValueError, match="identity, rff, nerf"):
    E.get_encoding("fourier")
  # Not an instance either: they came back unchanged and crashed the first forward pass.
  for bad in (None, 3, ("identity",)):
    with pytest.raises(ValueError, match="Unknown encoding"):
      E.get_encoding(bad)

  class Scaled:  # one's own encoding, not registered: a callable with out_dim

    def __call__(self, x):
      return 2 * x

    def out_dim(self, in_dim):
      return in_dim

  own = Scaled()
  assert E.get_encoding(own) is own
  with pytest.raises(ValueError, match="dim"):
    E.get_encoding("rff", dim=7)
  with pytest.raises(ValueError, match="bandwidth"):
    E.get_encoding("rff", bandwidth=3)
  # A float count used to give more features than out_dim promised (2.5 -> 14 vs 12).
  with pytest.raises(ValueError, match="num_frequencies must be a positive integer"):
    E.get_encoding("nerf", num_frequencies=2.5)
  with pytest.raises(ValueError, match="dim must be a positive even integer"):
    E.get_encoding("rff", dim=8.0)


def test_defaults_and_bounds():
  # NeRF's own embedding: K = 10 frequencies with the input, 3 * (2 * 10 + 1) = 63
  # features for a 3-D point (Mildenhall et al. 2020).
  assert E.get_encoding("nerf").out_dim(3) == 63
  assert E.get_encoding("nerf", include_input=False).out_dim(3) == 60
  assert E.get_encoding("identity").out_dim(3) == 3
  # The default B is seed 0's: stored fields and results are reproduced from it.
  np.testing.assert_array_equal(
      E.get_encoding("rff", dim=8).matrix(2), E.get_encoding("rff", dim=8, seed=0).matrix(2)
  )
  # The smallest valid values pass, the boundary ones do not.
  assert E.get_encoding("rff", dim=2, sigma=1e-3).out_dim(5) == 2
  assert E.get_encoding("nerf", num_frequencies=1).out_dim(1) == 3
  with pytest.raises(ValueError, match="dim must be a positive even integer"):
    E.get_encoding("rff", dim=0)
  with pytest.raises(ValueError, match="sigma must be positive"):
    E.get_encoding("rff", sigma=0.0)
  # These passed "> 0" and trained every member to NaN (inf in float32); True was 1.
  for sigma in (float("inf"), 1e300, True):
    with pytest.raises(ValueError, match=r"sigma must be positive, in \[1e-18, 1e\+18\]"):
      E.get_encoding("rff", sigma=sigma)
  with pytest.raises(ValueError, match="num_frequencies must be a positive integer"):
    E.get_encoding("nerf", num_frequencies=0)
  # A plain function is no encoding: it has no out_dim for the first layer's fan-in.
  with pytest.raises(ValueError, match="Unknown encoding"):
    E.get_encoding(lambda x: x)


def test_rff_matrix_does_not_depend_on_x64():
  # B is regenerated from its seed; a reload with jax_enable_x64 must give the same B.
  import subprocess
  import sys

  code = (
      "import sys, jax; jax.config.update('jax_enable_x64', sys.argv[1] == '1');"
      "from nfscale import encodings as E;"
      "print(E.RandomFourierFeatures(dim=4, sigma=1.0, seed=3).matrix(2).tolist())"
  )
  out = [
      subprocess.run([sys.executable, "-c", code, x64], check=True, capture_output=True, text=True)
      for x64 in ("0", "1")
  ]
  assert out[0].stdout == out[1].stdout
  here = E.RandomFourierFeatures(dim=4, sigma=1.0, seed=3).matrix(2).tolist()
  assert out[0].stdout.strip() == str(here)
