"""Initialization schemes for neural fields as pure PRNG-key functions.

Every initializer here follows JAX's ``Initializer`` protocol,
``init(key, shape, dtype=jnp.float32) -> Array``, so it drops into
``flax.linen.Dense(kernel_init=...)`` and ``flax.nnx.Linear(kernel_init=...)``
unchanged. Kernels use the Flax layout: ``fan_in = shape[-2]``,
``fan_out = shape[-1]``, and leading dimensions (convolution windows) multiply
both fans, as in ``jax.nn.initializers.variance_scaling``.

"Normal" always means a plain Gaussian. JAX's ``lecun_normal`` and Flax's
default Dense kernel are *truncated* normals rescaled to the same variance;
their tails differ, so the paper's schemes are not built on them.

A *scheme* depends on the layer position (first, hidden, last) and also owns
the bias rule, so it is a small immutable value, :class:`Scheme`, looked up by
name in a registry::

    scheme = get_scheme("init1")
    dense = nn.Dense(64, kernel_init=scheme.kernel_init("last"))

Complex dtypes (Gabor/WIRE layers) get the scheme's variance split equally
between the real and imaginary parts, so ``E|w|^2`` is the real scheme's
variance.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

Array = jax.Array
Shape = tuple[int, ...]
Position = Literal["first", "hidden", "last"]
POSITIONS: tuple[str, ...] = ("first", "hidden", "last")


class Initializer(Protocol):
  """JAX's initializer protocol (mirrors ``jax.nn.initializers.Initializer``)."""

  def __call__(self, key: Array, shape: Shape, dtype: DTypeLike = jnp.float32) -> Array:
    ...


# ---------------------------------------------------------------------------
# Argument checks shared by all initializers.


def _check_dtype(dtype: DTypeLike) -> np.dtype:
  dt = np.dtype(dtype)
  if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.complexfloating)):
    raise ValueError(f"dtype must be a float or complex dtype, got dtype={dt}.")
  return dt


def _check_shape(shape: Shape) -> Shape:
  shape = tuple(int(d) for d in shape)
  if len(shape) < 2:
    raise ValueError(
        f"shape must have at least 2 dims (fan_in, fan_out) for a kernel, got shape={shape}."
        " Biases use a Scheme's bias_init(fan_in) instead.")
  if any(d <= 0 for d in shape):
    raise ValueError(f"shape must have positive dims, got shape={shape}.")
  return shape


def compute_fans(shape: Shape) -> tuple[int, int]:
  """Fan-in and fan-out of a kernel in Flax layout.

  Args:
    shape: kernel shape ``(..., fan_in, fan_out)``; leading dims form the
      receptive field and multiply both fans.

  Returns:
    ``(fan_in, fan_out)``.

  Raises:
    ValueError: if ``shape`` has fewer than 2 dims or a non-positive dim.
  """
  shape = _check_shape(shape)
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


def _sample(key: Array, shape: Shape, dtype: np.dtype, variance: float,
            distribution: str) -> Array:
  """Zero-mean samples with the given variance (plain normal or uniform)."""
  if jnp.issubdtype(dtype, jnp.complexfloating):
    # Split the variance equally so that E|w|^2 == variance.
    real_dtype = jnp.finfo(dtype).dtype
    k_re, k_im = jax.random.split(key)
    re = _sample(k_re, shape, real_dtype, variance / 2, distribution)
    im = _sample(k_im, shape, real_dtype, variance / 2, distribution)
    return jax.lax.complex(re, im).astype(dtype)
  if distribution == "normal":
    return math.sqrt(variance) * jax.random.normal(key, shape, dtype)
  # U(-a, a) has variance a^2 / 3.
  bound = math.sqrt(3.0 * variance)
  return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)


# ---------------------------------------------------------------------------
# The one parametric family every scheme is built from.


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
  """Zero-mean init with variance ``scale / fan ** fan_power``.

  A frozen dataclass rather than a closure so that two equal schemes compare
  and hash equal (useful for configs and for ``jit`` static arguments).

  Attributes:
    scale: numerator of the variance.
    mode: which fan divides: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
    distribution: ``"normal"`` (plain, not truncated) or ``"uniform"``.
    fan_power: exponent ``p`` of the fan (1 for the classic schemes, 3/2 for
      the paper's last layers, 2 for SIREN's first layer).

  Example:
    >>> init = VarianceScaling(2.0, "fan_in", "normal", fan_power=1.5)  # init1 last
    >>> w = init(jax.random.key(0), (256, 1))
  """

  scale: float
  mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in"
  distribution: Literal["normal", "uniform"] = "normal"
  fan_power: float = 1.0

  def __post_init__(self):
    if self.mode not in ("fan_in", "fan_out", "fan_avg"):
      raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got mode={self.mode!r}.")
    if self.distribution not in ("normal", "uniform"):
      raise ValueError(
          f"distribution must be 'normal' or 'uniform', got distribution={self.distribution!r}.")
    if not self.scale > 0:
      raise ValueError(f"scale must be positive, got scale={self.scale}.")

  def variance(self, shape: Shape) -> float:
    """The variance this initializer samples with for a kernel of ``shape``."""
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
    return self.scale / fan ** self.fan_power

  def __call__(self, key: Array, shape: Shape, dtype: DTypeLike = jnp.float32) -> Array:
    dt = _check_dtype(dtype)
    shape = _check_shape(shape)
    return _sample(key, shape, dt, self.variance(shape), self.distribution)


def lecun_normal() -> VarianceScaling:
  """N(0, 1/fan_in), plain (not truncated)."""
  return VarianceScaling(1.0, "fan_in", "normal")


def lecun_uniform() -> VarianceScaling:
  """U(±sqrt(3/fan_in))."""
  return VarianceScaling(1.0, "fan_in", "uniform")


def xavier_normal() -> VarianceScaling:
  """N(0, 2/(fan_in + fan_out)), plain (not truncated)."""
  return VarianceScaling(1.0, "fan_avg", "normal")


def xavier_uniform() -> VarianceScaling:
  """U(±sqrt(6/(fan_in + fan_out)))."""
  return VarianceScaling(1.0, "fan_avg", "uniform")


def kaiming_normal() -> VarianceScaling:
  """N(0, 2/fan_in), plain (not truncated)."""
  return VarianceScaling(2.0, "fan_in", "normal")


def kaiming_uniform() -> VarianceScaling:
  """U(±sqrt(6/fan_in))."""
  return VarianceScaling(2.0, "fan_in", "uniform")


def powerlaw(c: float, p: float, distribution: str = "normal") -> VarianceScaling:
  """The generalised last-layer law: variance ``c / fan_in**p``.

  Args:
    c: variance numerator (init1's last layer: 2; init2's: 1/3).
    p: fan-in exponent (init1/init2: 3/2; LeCun: 1).
    distribution: ``"normal"`` or ``"uniform"``.

  Returns:
    The initializer.
  """
  return VarianceScaling(float(c), "fan_in", distribution, float(p))


def init1_last() -> VarianceScaling:
  """Paper eq. 4.11: N(0, 2/fan_in^{3/2})."""
  return powerlaw(2.0, 1.5, "normal")


def init2_hidden() -> VarianceScaling:
  """Paper eq. 4.15: U(±1/sqrt(fan_in)), i.e. variance 1/(3 fan_in)."""
  return VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def init2_last() -> VarianceScaling:
  """Paper eq. 4.16: U(±1/fan_in^{3/4}), i.e. variance 1/(3 fan_in^{3/2})."""
  return powerlaw(1.0 / 3.0, 1.5, "uniform")


def siren_first() -> VarianceScaling:
  """SIREN's first layer: U(±1/fan_in), i.e. variance 1/(3 fan_in^2)."""
  return VarianceScaling(1.0 / 3.0, "fan_in", "uniform", 2.0)


def siren_hidden(omega: float = 30.0) -> VarianceScaling:
  """SIREN's later layers: U(±sqrt(6/fan_in)/omega), variance 2/(omega^2 fan_in)."""
  if not omega > 0:
    raise ValueError(f"omega must be positive, got omega={omega}.")
  return VarianceScaling(2.0 / omega ** 2, "fan_in", "uniform")


# ---------------------------------------------------------------------------
# Bias rules. A bias shape (n,) carries no fan-in, so a rule maps the layer's
# fan-in to an ordinary Initializer.


@dataclasses.dataclass(frozen=True)
class BiasRule:
  """How a layer's bias is initialized.

  Attributes:
    kind: ``"zeros"``, ``"constant"`` (``value`` everywhere) or ``"torch"``
      (PyTorch's default ``U(±1/sqrt(fan_in))``).
    value: the constant for ``kind="constant"``.
  """

  kind: Literal["zeros", "constant", "torch"] = "zeros"
  value: float = 0.01

  def __post_init__(self):
    if self.kind not in BIAS_KINDS:
      raise ValueError(f"bias must be one of {BIAS_KINDS}, got bias={self.kind!r}.")

  def init(self, fan_in: int) -> Initializer:
    """An initializer for a bias of a layer with ``fan_in`` inputs."""
    if fan_in <= 0:
      raise ValueError(f"fan_in must be positive, got fan_in={fan_in}.")
    kind, value = self.kind, self.value

    def init(key: Array, shape: Shape, dtype: DTypeLike = jnp.float32) -> Array:
      dt = _check_dtype(dtype)
      if kind == "zeros":
        return jnp.zeros(shape, dt)
      if kind == "constant":
        return jnp.full(shape, value, dt)
      return _sample(key, tuple(shape), dt, 1.0 / (3.0 * fan_in), "uniform")

    return init


BIAS_KINDS: tuple[str, ...] = ("zeros", "constant", "torch")


# ---------------------------------------------------------------------------
# Schemes: one initializer per layer position plus the bias rules.


@dataclasses.dataclass(frozen=True)
class Scheme:
  """A layer-dependent initialization scheme.

  Attributes:
    name: registry name (for reports).
    first: kernel init of the first layer.
    hidden: kernel init of hidden layers (neither first nor last).
    last: kernel init of the output layer.
    bias: bias rule of every layer except the first.
    first_bias: bias rule of the first layer (random first-layer biases break
      the even symmetry of sinc/Gaussian fields on 1-D inputs; docs/protocol.md).

  Example:
    >>> s = get_scheme("init2", bias="torch")
    >>> s.kernel_init(layer=2, num_layers=3) is s.last
    True
  """

  name: str
  first: Initializer
  hidden: Initializer
  last: Initializer
  bias: BiasRule = BiasRule()
  first_bias: BiasRule = BiasRule()

  def position(self, layer: int, num_layers: int) -> Position:
    """Position of 0-based ``layer`` in a network of ``num_layers`` weight layers.

    The output layer is ``"last"`` even when it is also the first one.
    """
    if num_layers <= 0:
      raise ValueError(f"num_layers must be positive, got num_layers={num_layers}.")
    if not 0 <= layer < num_layers:
      raise ValueError(f"layer must be in [0, {num_layers}), got layer={layer}.")
    if layer == num_layers - 1:
      return "last"
    return "first" if layer == 0 else "hidden"

  def kernel_init(self, position: Position | None = None, *, layer: int | None = None,
                  num_layers: int | None = None) -> Initializer:
    """The kernel initializer for a position, given by name or by index."""
    if position is None:
      if layer is None or num_layers is None:
        raise ValueError("give either position or both layer and num_layers.")
      position = self.position(layer, num_layers)
    if position not in POSITIONS:
      raise ValueError(f"position must be one of {POSITIONS}, got position={position!r}.")
    return getattr(self, position)

  def bias_init(self, fan_in: int, position: Position = "hidden") -> Initializer:
    """The bias initializer of a layer with ``fan_in`` inputs at ``position``."""
    rule = self.first_bias if position == "first" else self.bias
    return rule.init(fan_in)


def _bias_rules(bias: str, bias_value: float, first_bias: str | None) -> dict[str, BiasRule]:
  rule = BiasRule(bias, bias_value)
  return {"bias": rule, "first_bias": rule if first_bias is None else BiasRule(first_bias,
                                                                               bias_value)}


def _uniform_scheme(name: str, kernel: VarianceScaling) -> Callable[..., Scheme]:
  def make(bias: str = "zeros", bias_value: float = 0.01,
           first_bias: str | None = None) -> Scheme:
    return Scheme(name, kernel, kernel, kernel, **_bias_rules(bias, bias_value, first_bias))
  make.__doc__ = f"The {name} scheme: the same kernel law in every layer."
  return make


def _init1(bias: str = "zeros", bias_value: float = 0.01,
           first_bias: str | None = None) -> Scheme:
  """Paper's Initialization 1: LeCun normal, last layer N(0, 2/fan_in^{3/2})."""
  return Scheme("init1", lecun_normal(), lecun_normal(), init1_last(),
                **_bias_rules(bias, bias_value, first_bias))


def _init2(bias: str = "zeros", bias_value: float = 0.01,
           first_bias: str | None = None) -> Scheme:
  """Paper's Initialization 2: U(±1/sqrt(fan_in)), last layer U(±1/fan_in^{3/4})."""
  return Scheme("init2", init2_hidden(), init2_hidden(), init2_last(),
                **_bias_rules(bias, bias_value, first_bias))


def _siren(omega: float = 30.0, bias: str = "zeros", bias_value: float = 0.01,
           first_bias: str | None = None) -> Scheme:
  """SIREN (Sitzmann et al. 2020): first U(±1/fan_in), others U(±sqrt(6/fan_in)/omega)."""
  return Scheme("siren", siren_first(), siren_hidden(omega), siren_hidden(omega),
                **_bias_rules(bias, bias_value, first_bias))


def _siren_init2(omega: float = 30.0, bias: str = "zeros", bias_value: float = 0.01,
                 first_bias: str | None = None) -> Scheme:
  """Remark 4.11: SIREN's first and hidden layers with init2's last layer."""
  return Scheme("siren_init2", siren_first(), siren_hidden(omega), init2_last(),
                **_bias_rules(bias, bias_value, first_bias))


def _powerlaw_scheme(distribution: str) -> Callable[..., Scheme]:
  # Hidden layers are those of init1 (normal) / init2 (uniform), so that
  # init1 == powerlaw_normal(c=2, p=1.5) and init2 == powerlaw_uniform(c=1/3, p=1.5).
  hidden = lecun_normal() if distribution == "normal" else init2_hidden()
  default_c = 2.0 if distribution == "normal" else 1.0 / 3.0

  def make(c: float = default_c, p: float = 1.5, bias: str = "zeros", bias_value: float = 0.01,
           first_bias: str | None = None) -> Scheme:
    return Scheme(f"powerlaw_{distribution}", hidden, hidden, powerlaw(c, p, distribution),
                  **_bias_rules(bias, bias_value, first_bias))

  make.__doc__ = (f"Generalised last layer, {distribution}: variance c/fan_in**p in the last "
                  "layer, the paper's hidden layers elsewhere.")
  return make


_REGISTRY: dict[str, Callable[..., Scheme]] = {
    "lecun_normal": _uniform_scheme("lecun_normal", lecun_normal()),
    "lecun_uniform": _uniform_scheme("lecun_uniform", lecun_uniform()),
    "xavier_normal": _uniform_scheme("xavier_normal", xavier_normal()),
    "xavier_uniform": _uniform_scheme("xavier_uniform", xavier_uniform()),
    "kaiming_normal": _uniform_scheme("kaiming_normal", kaiming_normal()),
    "kaiming_uniform": _uniform_scheme("kaiming_uniform", kaiming_uniform()),
    "init1": _init1,
    "init2": _init2,
    "siren": _siren,
    "siren_init2": _siren_init2,
    "powerlaw_normal": _powerlaw_scheme("normal"),
    "powerlaw_uniform": _powerlaw_scheme("uniform"),
}

#: The eight schemes the paper compares (Fig. 4, 5, 8; Table 1).
PAPER_SCHEMES: tuple[str, ...] = (
    "lecun_normal", "xavier_normal", "kaiming_normal", "init1",
    "lecun_uniform", "xavier_uniform", "kaiming_uniform", "init2")


def list_schemes() -> list[str]:
  """Names accepted by :func:`get_scheme`."""
  return list(_REGISTRY)


def scheme_parameters(name: str) -> list[str]:
  """The hyperparameters that scheme ``name`` accepts."""
  if name not in _REGISTRY:
    raise ValueError(f"Unknown scheme {name!r}; valid schemes: {', '.join(_REGISTRY)}.")
  return list(inspect.signature(_REGISTRY[name]).parameters)


def filter_hparams(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
  """The subset of ``hparams`` that scheme ``name`` accepts.

  Lets one config carry, e.g., ``omega`` for SIREN next to schemes that do
  not take it.
  """
  accepted = set(scheme_parameters(name))
  return {k: v for k, v in hparams.items() if k in accepted}


def get_scheme(name: str | Scheme, **hparams) -> Scheme:
  """Looks a scheme up by name.

  Args:
    name: a registry name (see :func:`list_schemes`), or a ``Scheme``, which
      is returned unchanged (then ``hparams`` must be empty).
    **hparams: the factory's parameters: ``bias`` (``"zeros"``, ``"constant"``,
      ``"torch"``), ``bias_value``, ``first_bias``; ``omega`` for the SIREN
      schemes; ``c`` and ``p`` for the power-law family.

  Returns:
    The scheme.

  Raises:
    ValueError: for an unknown name (the message lists the valid ones) or a
      parameter the scheme does not take.

  Example:
    >>> get_scheme("siren", omega=30.0).hidden
    VarianceScaling(scale=0.0022..., mode='fan_in', distribution='uniform', fan_power=1.0)
  """
  if isinstance(name, Scheme):
    if hparams:
      raise ValueError(f"hparams {sorted(hparams)} given with a Scheme instance.")
    return name
  if name not in _REGISTRY:
    raise ValueError(f"Unknown scheme {name!r}; valid schemes: {', '.join(_REGISTRY)}.")
  factory = _REGISTRY[name]
  try:
    return factory(**hparams)
  except TypeError as e:
    raise ValueError(f"Invalid parameters {sorted(hparams)} for scheme {name!r}; "
                     f"it takes {scheme_parameters(name)}.") from e
