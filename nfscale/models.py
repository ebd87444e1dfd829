"""The neural field: a coordinate MLP built from a scheme, an activation and an encoding.

``F_0 = encoding(X)``, ``F_k = phi(F_{k-1} W_k + b_k)`` for ``k < L`` and
``F_L = F_{L-1} W_L + b_L``. With the complex Gabor wavelet (WIRE), every
layer after the first is complex and the output is the real part; a training
loop of your own then conjugates those params' gradients before the optimizer
(:func:`nfscale.train.descent_gradients`; nfscale's engine does it itself).

Example:
  >>> field = make_field(hidden=(64, 64), out_dim=3, activation="gaussian",
  ...                    scheme="init1")
  >>> params = field.init(jax.random.key(0), jnp.zeros((1, 2)))
  >>> field.apply(params, jnp.zeros((5, 2))).shape
  (5, 3)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nfscale import activations as activations_lib
from nfscale import checks
from nfscale import encodings as encodings_lib
from nfscale import fused as fused_lib
from nfscale import initializers

Array = jax.Array


# Contractions over at most this many inputs (the coordinates entering the
# first layer) are written as broadcast multiply-adds instead of a matmul.
SMALL_FAN_IN = 4


def _dense_dot_general(
    lhs: Array, rhs: Array, dimension_numbers, precision=None, preferred_element_type=None
) -> Array:
  """``lax.dot_general`` for ``nn.Dense``, with a fast path for a tiny fan-in.

  A coordinate MLP's first layer contracts only the 1-3 coordinates. As a
  matmul, XLA's CPU backend computes its weight gradient ``x^T g`` by first
  transposing the ``(points, width)`` cotangent ``g`` (under the ensemble's
  vmap, with the whole activation derivative fused into that transpose), a
  large share of a small field's step. As ``sum_k x[..., k:k+1] * W[k]`` the
  layer fuses into the activation and its gradients become plain
  reductions over the points. Same result up to float rounding (at most 4
  products are summed, exactly as a matmul would).
  """
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  fan_in = lhs.shape[-1] if lhs.ndim else 0
  if (
      0 < fan_in <= SMALL_FAN_IN
      and rhs.ndim == 2
      and not lhs_batch
      and not rhs_batch
      and tuple(lhs_contract) == (lhs.ndim - 1,)
      and tuple(rhs_contract) == (0,)
      and preferred_element_type is None
  ):
    y = lhs[..., 0:1] * rhs[0]
    for i in range(1, fan_in):
      y = y + lhs[..., i : i + 1] * rhs[i]
    return y
  return jax.lax.dot_general(
      lhs,
      rhs,
      dimension_numbers,
      precision=precision,
      preferred_element_type=preferred_element_type,
  )


class NeuralField(nn.Module):
  """A coordinate MLP.

  Layer ``k`` of ``len(hidden) + 1`` weight layers gets the scheme's
  ``"first"`` law for ``k = 0``, ``"last"`` for the output layer and
  ``"hidden"`` otherwise.

  Attributes:
    hidden: widths of the hidden layers (``n_1 ... n_{L-1}``); may be empty
      (a linear model).
    out_dim: output width ``n_L``.
    activation: an activation instance or name (see
      :mod:`nfscale.activations`).
    scheme: the initialization scheme or its name (see
      :mod:`nfscale.initializers`). A scheme that depends on the activation
      frequency (``siren``, ``siren_init2``) gets the activation's ``omega``
      here; one built for another omega is refused (``ValueError``), and one
      with no omega next to an activation that has none (Gaussian, ReLU,
      Gabor) needs it given explicitly, ``get_scheme("siren", omega=...)``.
    encoding: the positional embedding applied to the input.
    fused: ``"off"`` (default), or for a sine activation the
      :func:`nfscale.fused.sine_mlp` implementation of its layers (sine layers
      and output layer as one unit), ``"auto"``, ``"jax"`` or ``"pallas"``: the
      same params and values up to float rounding, no pre-activation stored
      for the backward pass.
  """

  hidden: tuple[int, ...]
  out_dim: int
  activation: activations_lib.Activation | str = activations_lib.Sine()
  scheme: initializers.Scheme | str = initializers.get_scheme("lecun_normal")
  encoding: encodings_lib.Encoding = encodings_lib.Identity()
  fused: str = "off"

  def __post_init__(self):
    if isinstance(self.hidden, int):
      raise ValueError(f"hidden must be a sequence of widths, got hidden={self.hidden}.")
    sizes = (*self.hidden, self.out_dim)
    if not all(checks.is_int(w) and w > 0 for w in sizes):
      raise ValueError(
          "hidden widths and out_dim must be positive integers, got "
          f"hidden={self.hidden}, out_dim={self.out_dim}."
      )
    object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
    object.__setattr__(self, "out_dim", int(self.out_dim))
    activation = self.activation
    if isinstance(activation, str):
      # Only names are looked up: any activation callable (a user's own) stays accepted.
      activation = activations_lib.get_activation(activation)
      object.__setattr__(self, "activation", activation)
    # Resolved at construction (clone included, which is how the engine swaps
    # schemes per member), so a mismatched omega fails before any training.
    object.__setattr__(self, "scheme", scheme_for_activation(self.scheme, activation))
    if self.fused != "off":
      if self.fused not in fused_lib.IMPLS:  # the model's choices include "off"
        raise ValueError(
            f"fused must be one of {('off', *fused_lib.IMPLS)}, got fused={self.fused!r}."
        )
      if type(activation) is not activations_lib.Sine:
        raise ValueError(
            f"fused={self.fused!r} fuses sine layers (activation Sine); "
            f"got {activation!r}. Use fused='off'."
        )
    super().__post_init__()

  @nn.compact
  def __call__(
      self, x: Array, return_features: bool = False, params_only: bool = False
  ) -> Array | tuple[Array, Array] | None:
    """Evaluates the field.

    Args:
      x: coordinates of shape ``(..., in_dim)``.
      return_features: also return ``F_{L-1}``, the last hidden features
        (used by the theory diagnostics).
      params_only: only create the variables and return ``None``, for
        ``model.lazy_init(key, x, params_only=True)``: the same params as
        ``model.init(key, x)`` without tracing the layers' computation (whose
        parts that depend on the params alone lazy_init would run op by op).

    Returns:
      The output ``(..., out_dim)`` (real), and the features if asked.
    """
    h = self.encoding(x)
    widths = self.hidden + (self.out_dim,)
    num_layers = len(widths)
    if params_only:
      self._make_params(h.shape[-1], widths)
      return None
    if self.fused != "off" and self.hidden:
      return self._fused_call(h, widths, return_features)
    real_dtype = jnp.result_type(float)
    complex_dtype = jnp.result_type(real_dtype, 1j)
    for k, width in enumerate(widths):
      position = self.scheme.position(k, num_layers)
      # WIRE: the first layer sees real coordinates; after a complex activation
      # every later layer is complex.
      dtype = complex_dtype if (_is_complex(self.activation) and k > 0) else real_dtype
      h = nn.Dense(
          width,
          kernel_init=self.scheme.kernel_init(position),
          bias_init=self.scheme.bias_init(h.shape[-1], position),
          param_dtype=dtype,
          dtype=dtype,
          dot_general=_dense_dot_general,
          name=f"dense_{k}",
      )(h)
      if k < num_layers - 1:
        h = self.activation(h)
        features = h
    out = jnp.real(h) if jnp.iscomplexobj(h) else h
    if return_features:
      if not self.hidden:
        raise ValueError("return_features needs at least one hidden layer.")
      return out, features
    return out

  def _make_params(self, fan_in: int, widths: tuple[int, ...]) -> None:
    """Every layer's variables, as the layers of ``__call__`` create them."""
    real_dtype = jnp.result_type(float)
    complex_dtype = jnp.result_type(real_dtype, 1j)
    for k, width in enumerate(widths):
      position = self.scheme.position(k, len(widths))
      _DenseParams(
          width,
          kernel_init=self.scheme.kernel_init(position),
          bias_init=self.scheme.bias_init(fan_in, position),
          param_dtype=complex_dtype if (_is_complex(self.activation) and k > 0) else None,
          name=f"dense_{k}",
      )(fan_in)
      fan_in = width

  def _fused_call(
      self, h: Array, widths: tuple[int, ...], return_features: bool
  ) -> Array | tuple[Array, Array]:
    """The sine layers and the output layer as one :func:`nfscale.fused.sine_mlp`."""
    num_layers = len(widths)
    layers, fan_in = [], h.shape[-1]
    for k, width in enumerate(widths):
      position = self.scheme.position(k, num_layers)
      layers.append(
          _DenseParams(
              width,
              kernel_init=self.scheme.kernel_init(position),
              bias_init=self.scheme.bias_init(fan_in, position),
              name=f"dense_{k}",
          )(fan_in)
      )
      fan_in = width
    settings = dict(
        impl=self.fused, fast=self.activation.fast, small_fan_in=SMALL_FAN_IN
    )  # SMALL_FAN_IN read when traced, as the plain layers' dot does
    omega = self.activation.omega
    if not return_features:
      return fused_lib.sine_mlp(h, layers[:-1], layers[-1], omega, **settings)
    features = fused_lib.sine_mlp(h, layers[:-1], None, omega, **settings)
    kernel, bias = layers[-1]
    return features @ kernel + bias, features


class _DenseParams(nn.Module):
  """The params of ``nn.Dense(features)``: same names, order, shapes, dtype and init."""

  features: int
  kernel_init: Any
  bias_init: Any
  param_dtype: Any = None  # None: real, float32 unless x64 is on, as the plain layers

  @nn.compact
  def __call__(self, fan_in: int) -> tuple[Array, Array]:
    dtype = jnp.result_type(float) if self.param_dtype is None else self.param_dtype
    kernel = self.param("kernel", self.kernel_init, (fan_in, self.features), dtype)
    bias = self.param("bias", self.bias_init, (self.features,), dtype)
    return kernel, bias


def _is_complex(activation: Any) -> bool:
  """Whether an activation outputs complex values (a user's callable: assumed not)."""
  return bool(getattr(activation, "is_complex", False))


def scheme_for_activation(
    scheme: str | initializers.Scheme, activation: activations_lib.Activation
) -> initializers.Scheme:
  """The scheme with its omega-dependent layers set to the activation's frequency.

  Args:
    scheme: a scheme or its registered name.
    activation: the network's activation; its ``omega`` attribute (sine,
      sinc, or a user's activation that has one) is the ``omega`` of
      ``sin(omega * (W x + b))`` that the SIREN laws divide by.

  Returns:
    The scheme, unchanged when no layer depends on omega.

  Raises:
    ValueError: if the scheme was built for another omega, or needs an omega
      that neither it nor the activation has.

  Example:
    >>> s = scheme_for_activation("siren", activations_lib.Sine(omega=8.0))
    >>> s.omega
    8.0
  """
  scheme = initializers.get_scheme(scheme)
  if not scheme.omega_dependent:
    return scheme
  try:
    name = activations_lib.activation_name(activation)
  except ValueError:  # A user's own activation.
    name = type(activation).__name__
  omega = getattr(activation, "omega", None)
  if omega is None:
    if scheme.omega is None:
      raise ValueError(
          f"scheme {scheme.name!r} depends on the activation frequency omega, but the {name} "
          f"activation has none; give it explicitly: get_scheme({scheme.name!r}, omega=...) "
          "(in a config: scheme_params.omega)."
      )
    return scheme
  if scheme.omega is not None and scheme.omega != float(omega):
    raise ValueError(
        f"scheme {scheme.name!r} was built for omega={scheme.omega} but the {name} activation "
        f"has omega={omega}; leave the scheme's omega out (the field passes its own) or make "
        "them equal."
    )
  return scheme.with_omega(omega)


def make_field(
    hidden: Sequence[int],
    out_dim: int,
    activation: str = "sine",
    activation_params: Mapping[str, Any] | None = None,
    scheme: str | initializers.Scheme = "lecun_normal",
    scheme_params: Mapping[str, Any] | None = None,
    encoding: str = "identity",
    encoding_params: Mapping[str, Any] | None = None,
    fused: str = "off",
) -> NeuralField:
  """Builds a :class:`NeuralField` from registry names.

  Args:
    hidden: hidden widths.
    out_dim: output width.
    activation: activation name; ``activation_params`` its parameters.
    scheme: scheme name or instance; ``scheme_params`` its parameters. An
      omega-dependent scheme (``siren``, ``siren_init2``) takes the
      activation's ``omega``; do not repeat it in ``scheme_params`` (a
      different value is refused).
    encoding: encoding name; ``encoding_params`` its parameters.
    activation_params: see ``activation``.
    scheme_params: see ``scheme``.
    encoding_params: see ``encoding``.
    fused: see :class:`NeuralField`.

  Returns:
    The (unbound) module.

  Raises:
    ValueError: for an unknown name or parameter, or an omega mismatch.

  Example:
    >>> make_field((32,), 1, activation_params={"omega": 8.0}, scheme="siren").scheme.omega
    8.0
  """
  return NeuralField(
      hidden=hidden if isinstance(hidden, int) else tuple(hidden),
      out_dim=out_dim,
      activation=activations_lib.get_activation(activation, **dict(activation_params or {})),
      scheme=initializers.get_scheme(scheme, **dict(scheme_params or {})),
      encoding=encodings_lib.get_encoding(encoding, **dict(encoding_params or {})),
      fused=fused,
  )


def param_count(params: Any) -> int:
  """Number of real trainable scalars in a params pytree.

  Args:
    params: any pytree of arrays (``model.init``'s variables, or their params).

  Returns:
    The count; a complex entry counts 2 (its real and imaginary parts).

  Example:
    >>> field = make_field((8,), 1, activation="gabor", scheme="init2")
    >>> param_count(field.init(jax.random.key(0), jnp.zeros((1, 2))))  # 2*8+8 real, 8+1 complex
    42
  """
  total = 0
  for leaf in jax.tree_util.tree_leaves(params):
    total += int(np.prod(leaf.shape)) * (2 if jnp.iscomplexobj(leaf) else 1)
  return total


def mse_loss(model: nn.Module, x_key: str = "x", y_key: str = "y"):
  """The mean squared error of a field on a batch, as an engine loss function.

  Args:
    model: the field; ``model.apply(params, batch[x_key])`` is its prediction.
    x_key: batch key of the inputs.
    y_key: batch key of the targets.

  Returns:
    ``loss_fn(params, batch, rng) -> (mse, {})`` for ONE member (the rng is
    unused: the loss is deterministic).

  Example:
    >>> field = make_field(hidden=(8,), out_dim=1)
    >>> params = field.init(jax.random.key(0), jnp.zeros((1, 1)))
    >>> batch = {"x": jnp.zeros((4, 1)), "y": jnp.zeros((4, 1))}
    >>> loss, aux = mse_loss(field)(params, batch, jax.random.key(1))
    >>> loss.shape, aux
    ((), {})
  """

  def loss_fn(params, batch, rng):
    del rng
    pred = model.apply(params, batch[x_key])
    return jnp.mean(jnp.square(pred - batch[y_key])), {}

  return loss_fn


def ensemble_apply(model: nn.Module, params: Any, x: Array, *, batch: int = 65536) -> Array:
  """Evaluates every member of stacked ``params`` on ``x``, in chunks of points.

  Args:
    model: the field (the scheme does not matter once params exist).
    params: params with a leading member axis.
    x: inputs ``(points, in_dim)``, shared by all members.
    batch: points per evaluation (bounds the memory of wide ensembles).

  Returns:
    Array ``(members, points, out_dim)``.

  Example:
    >>> field = make_field(hidden=(8,), out_dim=2)
    >>> one = field.init(jax.random.key(0), jnp.zeros((1, 1)))
    >>> stacked = jax.tree.map(lambda a: jnp.stack([a, a, a]), one)
    >>> ensemble_apply(field, stacked, jnp.zeros((5, 1))).shape
    (3, 5, 2)
  """
  apply = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))
  outs = [apply(params, x[i : i + batch]) for i in range(0, x.shape[0], batch)]
  return jnp.concatenate(outs, axis=1)
