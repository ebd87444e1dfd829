"""nfscale.Dense (Linen) and nfscale.Linear (NNX) equal the hand-wired Flax layers bit for bit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nfscale
from nfscale import initializers as I

OMEGA = 12.0
FAN_IN, FEATURES = 24, 16


def scheme(name):
  # The "torch" bias rule depends on the fan-in, so the fan-in read from the input matters.
  s = I.get_scheme(name, bias="torch", first_bias="constant")
  return s.with_omega(OMEGA)


class HandWired(nn.Module):
  """A client's MLP built in setup(), with fan-ins it must know in advance."""

  name_: str
  dtype: jnp.dtype

  def setup(self):
    s = scheme(self.name_)
    fans = (FAN_IN, FEATURES, FEATURES)
    self.layers = [
        nn.Dense(
            FEATURES,
            kernel_init=s.kernel_init(p),
            bias_init=s.bias_init(f, p),
            param_dtype=self.dtype,
            dtype=self.dtype,
        )
        for p, f in zip(I.POSITIONS, fans)
    ]

  def __call__(self, x):
    for layer in self.layers:
      x = jnp.sin(layer(x))
    return x


class WithHelper(nn.Module):
  """The same network with the helper: no fan-in, the scheme by name, omega given once."""

  name_: str
  dtype: jnp.dtype

  def setup(self):
    s = I.get_scheme(self.name_, bias="torch", first_bias="constant")
    self.layers = [
        nfscale.Dense(FEATURES, s, p, omega=OMEGA, param_dtype=self.dtype, dtype=self.dtype)
        for p in I.POSITIONS
    ]

  def __call__(self, x):
    for layer in self.layers:
      x = jnp.sin(layer(x))
    return x


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
@pytest.mark.parametrize("name", I.BUILTIN_SCHEMES)
def test_linen_dense_bit_identical(name, dtype):
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (5, FAN_IN)), dtype)
  a = HandWired(name, dtype).init(jax.random.key(3), x)
  b = WithHelper(name, dtype).init(jax.random.key(3), x)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert u.dtype == v.dtype == dtype
    np.testing.assert_array_equal(u, v)
  np.testing.assert_array_equal(
      HandWired(name, dtype).apply(a, x), WithHelper(name, dtype).apply(b, x)
  )


@pytest.mark.parametrize("position", I.POSITIONS)
@pytest.mark.parametrize("name", I.BUILTIN_SCHEMES)
def test_nnx_linear_bit_identical(name, position):
  s = scheme(name)
  hand = nnx.Linear(
      FAN_IN,
      FEATURES,
      kernel_init=s.kernel_init(position),
      bias_init=s.bias_init(FAN_IN, position),
      rngs=nnx.Rngs(5),
  )
  ours = nfscale.Linear(
      FAN_IN,
      FEATURES,
      I.get_scheme(name, bias="torch", first_bias="constant"),
      position,
      omega=OMEGA,
      rngs=nnx.Rngs(5),
  )
  np.testing.assert_array_equal(hand.kernel[...], ours.kernel[...])
  np.testing.assert_array_equal(hand.bias[...], ours.bias[...])
  x = jnp.ones((3, FAN_IN))
  np.testing.assert_array_equal(hand(x), ours(x))


def test_dense_reads_fan_in_and_bias_rule():
  layer = nfscale.Dense(8, I.get_scheme("init1", bias="torch"), "hidden")
  for fan_in in (4, 400):
    bias = layer.init(jax.random.key(0), jnp.ones((1, fan_in)))["params"]["bias"]
    # U(±1/sqrt(fan_in)): max |b| of 8 draws is below the bound and (p > 1 - 1e-8) above 1/10 of it.
    assert 0.1 / np.sqrt(fan_in) < float(jnp.abs(bias).max()) <= 1 / np.sqrt(fan_in)
  no_bias = nfscale.Dense(8, "init1", "last", use_bias=False).init(
      jax.random.key(0), jnp.ones((1, 3))
  )
  assert set(no_bias["params"]) == {"kernel"}


def test_helper_errors():
  x = jnp.ones((1, 3))
  with pytest.raises(ValueError, match="position must be one of"):
    nfscale.Dense(4, "init1", "output").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="valid schemes"):
    nfscale.Dense(4, "glorot", "last").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"omega.*nfscale\.Dense\(\.\.\., omega=\.\.\.\)"):
    nfscale.Dense(4, "siren", "hidden").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="built for omega=30.0"):
    nfscale.Dense(4, I.get_scheme("siren", omega=30.0), "hidden", omega=8.0).init(
        jax.random.key(0), x
    )
  with pytest.raises(ValueError, match="set by the scheme"):
    nfscale.Linear(3, 4, "init1", "last", kernel_init=I.lecun_normal(), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="position must be one of"):
    nfscale.Linear(3, 4, "init1", "output", rngs=nnx.Rngs(0))
