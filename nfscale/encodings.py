"""Positional embeddings applied to coordinates before the first layer.

Encodings are frozen dataclasses: pure functions of the input with no trained
state. The random Fourier feature matrix ``B`` is regenerated from its seed
inside ``__call__``; under ``jit`` it is a constant, so nothing is trained or
stored in the params and the same seed always gives the same ``B``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import checks

Array = jax.Array


def _as_float(x: Array) -> Array:
  """``x`` itself if it is floating point, else cast to the default float dtype.

  Integer coordinates (pixel indices) would otherwise cast the frequencies to
  integers: NeRF's ``2^k pi`` became ``3 * 2^k``, RFF's ``B`` was truncated.
  """
  if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
    return x  # unchanged, numpy arrays included
  return jnp.asarray(x, jnp.result_type(float))


@dataclasses.dataclass(frozen=True)
class Identity:
  """No embedding."""

  def out_dim(self, in_dim: int) -> int:
    """Output width for inputs of width ``in_dim``."""
    return in_dim

  def __call__(self, x: Array) -> Array:
    return x


@dataclasses.dataclass(frozen=True)
class RandomFourierFeatures:
  """``[cos(2 pi x B), sin(2 pi x B)]`` with fixed ``B ~ N(0, sigma^2)`` (Tancik et al. 2020).

  Attributes:
    dim: output dimension (even); ``B`` has ``dim // 2`` columns. The paper's
      "8-dimensional RFF embedding" is ``dim=8``.
    sigma: standard deviation of ``B``'s entries (the bandwidth).
    seed: seed of ``B``.
  """

  dim: int = 16
  sigma: float = 10.0
  seed: int = 0

  def __post_init__(self):
    if not checks.is_int(self.dim) or self.dim <= 0 or self.dim % 2:
      raise ValueError(f"dim must be a positive even integer, got dim={self.dim!r}.")
    if not checks.is_int(self.seed):
      raise ValueError(f"seed must be an integer, got seed={self.seed!r}.")
    # Within checks.FLOAT32_SCALE: sigma=inf or 1e300 (inf in float32) passed "> 0" and
    # trained every member to NaN.
    if not checks.is_float32_scale(self.sigma):
      low, high = checks.FLOAT32_SCALE
      raise ValueError(
          f"sigma must be positive, in [{low}, {high}] (float32 on the device), "
          f"got sigma={self.sigma!r}."
      )

  def out_dim(self, in_dim: int) -> int:
    """Output width (independent of ``in_dim``)."""
    return self.dim

  def matrix(self, in_dim: int) -> Array:
    """The fixed frequency matrix ``B`` of shape ``(in_dim, dim // 2)``."""
    # Drawn in float32 whatever jax_enable_x64 says: a float64 draw gives other
    # numbers, and a field trained without x64 would change when reloaded with it.
    b = jax.random.normal(jax.random.key(self.seed), (in_dim, self.dim // 2), jnp.float32)
    return self.sigma * b

  def __call__(self, x: Array) -> Array:
    x = _as_float(x)
    proj = 2 * np.pi * (x @ self.matrix(x.shape[-1]).astype(x.dtype))
    return jnp.concatenate([jnp.cos(proj), jnp.sin(proj)], axis=-1)


@dataclasses.dataclass(frozen=True)
class NerfPositional:
  """NeRF's ``[sin(2^k pi x), cos(2^k pi x)]`` for ``k < num_frequencies``.

  Attributes:
    num_frequencies: ``K``.
    include_input: also pass ``x`` through (as NeRF does).
  """

  num_frequencies: int = 10
  include_input: bool = True

  def __post_init__(self):
    if not checks.is_int(self.num_frequencies) or self.num_frequencies <= 0:
      raise ValueError(f"num_frequencies must be a positive integer, got {self.num_frequencies!r}.")

  def out_dim(self, in_dim: int) -> int:
    """Output width for inputs of width ``in_dim``."""
    return in_dim * (2 * self.num_frequencies + int(self.include_input))

  def __call__(self, x: Array) -> Array:
    x = _as_float(x)
    freqs = (2.0 ** np.arange(self.num_frequencies)) * np.pi
    proj = (x[..., :, None] * freqs.astype(x.dtype)).reshape(*x.shape[:-1], -1)
    parts = [x] if self.include_input else []
    return jnp.concatenate(parts + [jnp.sin(proj), jnp.cos(proj)], axis=-1)


Encoding = Identity | RandomFourierFeatures | NerfPositional

_REGISTRY: dict[str, type] = {
    "identity": Identity,
    "rff": RandomFourierFeatures,
    "nerf": NerfPositional,
}


def list_encodings() -> list[str]:
  """Names accepted by :func:`get_encoding`.

  Returns:
    The registered names: ``["identity", "rff", "nerf"]``.
  """
  return list(_REGISTRY)


def get_encoding(name: str | Encoding, **params: Any) -> Encoding:
  """Looks an encoding up by name.

  Args:
    name: ``"identity"``, ``"rff"`` or ``"nerf"``, or an encoding instance.
    **params: the encoding's parameters (e.g. ``dim``, ``sigma``, ``seed``).

  Returns:
    The encoding, a callable with an ``out_dim(in_dim)`` method.

  Raises:
    ValueError: unknown name (listing the valid ones) or parameter.

  Example:
    >>> get_encoding("rff", dim=8, sigma=1.0)(jnp.zeros((5, 1))).shape
    (5, 8)
  """
  if not isinstance(name, str):
    if not (callable(name) and callable(getattr(name, "out_dim", None))):
      # None or a number (a config's model.encoding) used to come back unchanged and
      # crash the first forward pass, after validation. An unregistered instance of
      # one's own (a callable with out_dim) is still welcome.
      raise ValueError(
          f"Unknown encoding {name!r}; valid encodings: {', '.join(_REGISTRY)} (or an "
          "instance: a callable with an out_dim(in_dim) method)."
      )
    if params:
      raise ValueError(f"params {sorted(params)} given with an encoding instance.")
    return name
  if name not in _REGISTRY:
    raise ValueError(f"Unknown encoding {name!r}; valid encodings: {', '.join(_REGISTRY)}.")
  cls = _REGISTRY[name]
  valid = list(inspect.signature(cls).parameters)
  unknown = sorted(set(params) - set(valid))
  if unknown:
    raise ValueError(f"Invalid parameters {unknown} for encoding {name!r}; it takes {valid}.")
  return cls(**params)
