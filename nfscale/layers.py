"""Dense layers that take an initialization scheme and a layer position.

A client that builds its layers in ``setup()`` does not know a layer's fan-in
yet, but a bias rule such as ``"torch"`` (``U(±1/sqrt(fan_in))``) needs it.
:class:`Dense` (Linen) reads the fan-in from its input when it creates its
parameters; :class:`Linear` (NNX) gets it as ``in_features``, as
``nnx.Linear`` does. Both apply the scheme's kernel law and bias rule for the
position and are otherwise ``nn.Dense`` / ``nnx.Linear``: the same parameter
names, shapes, random streams and arithmetic, so swapping one in changes no
bit of a network that was wired by hand.

Example:
  >>> layer = Dense(64, "init1", "last")
  >>> params = layer.init(jax.random.key(0), jnp.ones((4, 256)))
  >>> jax.tree.map(jnp.shape, params)
  {'params': {'bias': (64,), 'kernel': (256, 64)}}
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from nfscale import initializers

Array = jax.Array


def _resolve(
    scheme: str | initializers.Scheme, position: str, omega: float | None
) -> initializers.Scheme:
  """The scheme object, with ``omega`` filled in; checks the position."""
  if position not in initializers.POSITIONS:
    raise ValueError(
        f"position must be one of {initializers.POSITIONS}, got position={position!r}."
    )
  scheme = initializers.get_scheme(scheme)
  if omega is not None:
    scheme = scheme.with_omega(omega)
  return scheme


class Dense(nn.Module):
  """``nn.Dense`` initialized by a scheme at a layer position (Linen).

  Attributes:
    features: output width.
    scheme: a :class:`nfscale.initializers.Scheme` or a registered name.
    position: ``"first"`` (reads the coordinates or their encoding),
      ``"hidden"`` or ``"last"`` (the output layer).
    omega: the activation frequency, for a scheme that depends on it
      (``siren``, ``siren_init2``) and was built without it; ``None`` else.
    use_bias: whether to add a bias.
    dtype: computation dtype (``None``: inferred, as in ``nn.Dense``).
    param_dtype: parameter dtype (complex for WIRE layers).
    precision: ``jax.lax`` precision of the matmul.
    dot_general: a replacement for ``jax.lax.dot_general``.
  """

  features: int
  scheme: initializers.Scheme | str = "lecun_normal"
  position: str = "hidden"
  omega: float | None = None
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  dot_general: Any = None

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """Applies ``inputs @ kernel + bias`` over the last axis.

    Args:
      inputs: ``(..., fan_in)``.

    Returns:
      ``(..., features)``.

    Raises:
      ValueError: for an unknown scheme or position, or an omega-dependent
        scheme without omega.
    """
    scheme = _resolve(self.scheme, self.position, self.omega)
    fan_in = jnp.shape(inputs)[-1]
    # Same parameter order, names, shapes and arithmetic as nn.Dense, so the
    # params and outputs equal a hand-wired nn.Dense bit for bit.
    kernel = self.param(
        "kernel", scheme.kernel_init(self.position), (fan_in, self.features), self.param_dtype
    )
    bias = None
    if self.use_bias:
      bias = self.param(
          "bias", scheme.bias_init(fan_in, self.position), (self.features,), self.param_dtype
      )
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    dot_general = self.dot_general or jax.lax.dot_general
    y = dot_general(
        inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())), precision=self.precision
    )
    if bias is not None:
      y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return y


class Linear(nnx.Linear):
  """``nnx.Linear`` initialized by a scheme at a layer position (NNX).

  Example:
    >>> layer = Linear(2, 64, "siren", "first", omega=30.0, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((5, 2))).shape
    (5, 64)
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      scheme: initializers.Scheme | str = "lecun_normal",
      position: str = "hidden",
      *,
      omega: float | None = None,
      rngs: nnx.Rngs,
      **kwargs: Any,
  ):
    """Creates the parameters.

    Args:
      in_features: the fan-in.
      out_features: output width.
      scheme: a :class:`nfscale.initializers.Scheme` or a registered name.
      position: ``"first"``, ``"hidden"`` or ``"last"``.
      omega: the activation frequency, for an omega-dependent scheme built
        without it.
      rngs: NNX random streams (``params`` draws the kernel, then the bias).
      **kwargs: any other ``nnx.Linear`` argument except the initializers.

    Raises:
      ValueError: for ``kernel_init``/``bias_init`` in ``kwargs`` (the scheme
        owns them), an unknown scheme or position, or a missing omega.
    """
    clash = sorted({"kernel_init", "bias_init"} & set(kwargs))
    if clash:
      raise ValueError(f"{clash} are set by the scheme; use nnx.Linear for your own.")
    resolved = _resolve(scheme, position, omega)
    super().__init__(
        in_features,
        out_features,
        kernel_init=resolved.kernel_init(position),
        bias_init=resolved.bias_init(in_features, position),
        rngs=rngs,
        **kwargs,
    )
    self.position = position
