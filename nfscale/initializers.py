"""Initialization schemes for neural fields as pure PRNG-key functions.

Every initializer here follows JAX's ``Initializer`` protocol,
``init(key, shape, dtype=None, out_sharding=None) -> Array`` (``dtype=None``:
the default float dtype, float32 unless ``jax_enable_x64`` is on), so it drops
into ``flax.linen.Dense(kernel_init=...)`` and ``flax.nnx.Linear(kernel_init=...)``
unchanged. Kernels use the Flax layout: ``fan_in = shape[-2]``,
``fan_out = shape[-1]``, and leading dimensions (convolution windows) multiply
both fans, as in ``jax.nn.initializers.variance_scaling``.

"Normal" always means a plain Gaussian. JAX's ``lecun_normal`` and Flax's
default Dense kernel are *truncated* normals rescaled to the same variance;
their tails differ, so the paper's schemes are not built on them.

A *scheme* depends on the layer position (first, hidden, last) and also owns
the bias rule, so it is a small immutable value, :class:`Scheme`, looked up by
name in a registry, composed with :meth:`Scheme.replace` and extended with
:func:`register_scheme`::

    scheme = get_scheme("init1")
    dense = nn.Dense(64, kernel_init=scheme.kernel_init("last"))
    mixed = get_scheme("siren").replace(last="init1")

The SIREN schemes assume the activation is applied as ``sin(omega * (W x + b))``
(omega outside the layer, as :class:`nfscale.activations.Sine` does), so their
later layers depend on omega. Such a scheme holds no default omega: a
:class:`nfscale.models.NeuralField` fills in its activation's, and standalone
code gives it (``get_scheme("siren", omega=30.0)`` or ``scheme.with_omega``).

Complex dtypes (Gabor/WIRE layers) get the scheme's variance split equally
between the real and imaginary parts, so ``E|w|^2`` is the real scheme's
variance.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from typing import Any, Callable, Literal, Mapping, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from nfscale import checks

Array = jax.Array
Shape = tuple[int, ...]
Position = Literal["first", "hidden", "last"]
POSITIONS: tuple[str, ...] = ("first", "hidden", "last")


class Initializer(Protocol):
  """JAX's initializer protocol (mirrors ``jax.nn.initializers.Initializer``)."""

  def __call__(
      self, key: Array, shape: Shape, dtype: DTypeLike | None = None, out_sharding: Any = None
  ) -> Array:
    ...


# ---------------------------------------------------------------------------
# Argument checks shared by all initializers.


def _check_dtype(dtype: DTypeLike | None) -> np.dtype:
  # None is JAX's default float dtype (np.dtype(None) would be float64 even without x64),
  # and Python's float and complex are JAX's default float and complex dtypes, as jnp reads them.
  if dtype is None or dtype is float or dtype is complex:
    dtype = jnp.result_type(float if dtype is None else dtype)
  dt = np.dtype(dtype)
  if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.complexfloating)):
    raise ValueError(f"dtype must be a float or complex dtype, got dtype={dt}.")
  return dt


def _check_shape(shape: Shape) -> Shape:
  shape = tuple(int(d) for d in shape)
  if len(shape) < 2:
    raise ValueError(
        f"shape must have at least 2 dims (fan_in, fan_out) for a kernel, got shape={shape}."
        " Biases use a Scheme's bias_init(fan_in) instead."
    )
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


# Each draw is taken from a flat sample of a rounded-up size and cut to shape.
# With JAX's partitionable threefry every entry of a sample is a function of its
# flat index alone, so the cut equals a direct draw bit for bit (tested), and
# one compiled sampler serves every shape of the same rounded size. Run op by op,
# a width sweep then compiles a few samplers instead of one per layer shape
# (each costs ~0.2 s on a CPU). Every draw up to _MIN_DRAW entries shares one
# sampler: on a 2-core CPU a sample of 2^14 normals takes ~0.3 ms against ~0.02 ms
# for 64, while each further compiled size costs ~0.2 s.
_POW2_DRAW_LIMIT = 1 << 20  # up to 4 MiB of float32, sizes round up to a power of two
_MIN_DRAW = 1 << 14


def _draw_size(n: int) -> int:
  """The flat sample size a draw of ``n`` entries is cut from.

  Powers of two up to ``_POW2_DRAW_LIMIT``; beyond, multiples of an eighth of
  the enclosing power of two, so that the transient excess stays under 25%.

  Example:
    >>> [_draw_size(n) for n in (1, 1000, 2**14, 2**14 + 1, 40000)]
    [16384, 16384, 16384, 32768, 65536]
    >>> _draw_size(3 * 2**20)
    3145728
  """
  if n <= _POW2_DRAW_LIMIT:
    return max(_MIN_DRAW, 1 << (n - 1).bit_length())
  step = 1 << (n.bit_length() - 3)
  return -(-n // step) * step


def _indexed_by_position(key: Array) -> bool:
  """Whether ``key``'s sampler makes each entry a function of its flat index."""
  if not jax.config.jax_threefry_partitionable:
    return False
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    impl = str(jax.random.key_impl(key))
  else:  # a raw uint32 key uses the default implementation
    impl = str(jax.config.jax_default_prng_impl)
  return impl == "threefry2x32"


# The normal sampler scales its sample itself, behind a barrier: XLA would
# otherwise fold the scale into the sampler's own constants, which rounds
# differently. So a jitted init (vmapped or not) draws bit for bit what an eager
# one draws, and both equal model.init's; and run op by op, the scale costs no
# compilation of its own per shape (the scale is an argument, not a constant).
@functools.partial(jax.jit, static_argnames=("size", "dtype"))
def _flat_normal(key: Array, scale: Array, *, size: int, dtype: np.dtype) -> Array:
  return scale * jax.lax.optimization_barrier(jax.random.normal(key, (size,), dtype))


@functools.partial(jax.jit, static_argnames=("size", "dtype"))
def _flat_uniform(key: Array, minval: Array, maxval: Array, *, size: int, dtype: np.dtype) -> Array:
  return jax.random.uniform(key, (size,), dtype, minval=minval, maxval=maxval)


def _draw(key: Array, shape: Shape, dtype: np.dtype, variance: float, distribution: str) -> Array:
  """``sqrt(variance) * jax.random.normal`` or ``uniform`` with that variance, bit for bit."""
  n = math.prod(shape)
  if distribution == "normal":
    # The scale in the sample's dtype, as a Python float multiplying the sample
    # would be converted.
    scale = np.asarray(math.sqrt(variance), dtype)
    if n == 0 or not _indexed_by_position(key):
      sample = jax.random.normal(key, shape, dtype)
      return scale * jax.lax.optimization_barrier(sample)
    flat = _flat_normal(key, scale, size=_draw_size(n), dtype=dtype)
  else:
    bound = math.sqrt(3.0 * variance)  # U(-a, a) has variance a^2 / 3.
    if n == 0 or not _indexed_by_position(key):
      return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)
    flat = _flat_uniform(key, -bound, bound, size=_draw_size(n), dtype=dtype)
  return flat[:n].reshape(shape)


def _shard(x: Array, out_sharding: Any) -> Array:
  """``x`` with the sharding an initializer was asked for (``None``: as drawn)."""
  return x if out_sharding is None else jax.sharding.reshard(x, out_sharding)


def _sample(key: Array, shape: Shape, dtype: np.dtype, variance: float, distribution: str) -> Array:
  """Zero-mean samples with the given variance (plain normal or uniform)."""
  if jnp.issubdtype(dtype, jnp.complexfloating):
    # Split the variance equally so that E|w|^2 == variance.
    real_dtype = jnp.finfo(dtype).dtype
    k_re, k_im = jax.random.split(key)
    re = _sample(k_re, shape, real_dtype, variance / 2, distribution)
    im = _sample(k_im, shape, real_dtype, variance / 2, distribution)
    return jax.lax.complex(re, im).astype(dtype)
  if jnp.finfo(dtype).bits < 32:
    # jax.random samples float16/bfloat16 in their own precision: a bfloat16 normal
    # is cut off near 2.9 sigma with a mean of -0.01 sigma, a uniform has 128 levels
    # and sits half a level low. Drawn in float32 and rounded once, they stay plain.
    return _draw(key, shape, np.dtype(np.float32), variance, distribution).astype(dtype)
  return _draw(key, shape, dtype, variance, distribution)


# ---------------------------------------------------------------------------
# The one parametric family every scheme is built from.


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
  """Zero-mean init with variance ``scale / (fan ** fan_power * omega ** omega_power)``.

  A frozen dataclass rather than a closure so that two equal schemes compare
  and hash equal (useful for configs and for ``jit`` static arguments).

  Attributes:
    scale: numerator of the variance.
    mode: which fan divides: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
    distribution: ``"normal"`` (plain, not truncated) or ``"uniform"``.
    fan_power: exponent ``p`` of the fan (1 for the classic schemes, 3/2 for
      the paper's last layers, 2 for SIREN's first layer).
    omega_power: exponent of the activation frequency ``omega`` in the
      denominator (2 for SIREN's later layers, 0 for everything else). A
      non-zero power makes the initializer *omega-dependent*.
    omega: the frequency of an omega-dependent initializer. ``None`` until it
      is known: :class:`nfscale.models.NeuralField` fills it from its
      activation; standalone code calls :meth:`with_omega`. Sampling without
      it raises ``ValueError`` (there is no default).

  Example:
    >>> init = VarianceScaling(2.0, "fan_in", "normal", fan_power=1.5)  # init1 last
    >>> w = init(jax.random.key(0), (256, 1))
    >>> siren = siren_hidden()                      # omega-dependent, omega unknown
    >>> siren.with_omega(30.0).variance((256, 256)) == 2 / (30.0 ** 2 * 256)
    True
  """

  scale: float
  mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in"
  distribution: Literal["normal", "uniform"] = "normal"
  fan_power: float = 1.0
  omega_power: float = 0.0
  omega: float | None = None

  def __post_init__(self):
    if self.mode not in ("fan_in", "fan_out", "fan_avg"):
      raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got mode={self.mode!r}.")
    if self.distribution not in ("normal", "uniform"):
      raise ValueError(
          f"distribution must be 'normal' or 'uniform', got distribution={self.distribution!r}."
      )
    if not checks.is_positive_finite(self.scale):
      raise ValueError(
          "scale must be positive and finite, got "
          f"scale={self.scale!r}{checks.array_hint(self.scale)}."
      )
    for name in ("fan_power", "omega_power"):
      if not math.isfinite(getattr(self, name)):
        raise ValueError(f"{name} must be finite, got {name}={getattr(self, name)}.")
    if self.omega is not None:
      if not self.omega_power:
        raise ValueError(
            f"omega={self.omega} given to an initializer with omega_power=0, "
            "which does not depend on omega."
        )
      if not checks.is_positive_finite(self.omega):
        raise ValueError(
            "omega must be positive and finite, got "
            f"omega={self.omega!r}{checks.array_hint(self.omega)}."
        )

  @property
  def omega_dependent(self) -> bool:
    """Whether the variance depends on the activation frequency ``omega``."""
    return bool(self.omega_power)

  def with_omega(self, omega: float) -> VarianceScaling:
    """This initializer with its ``omega`` filled in.

    Args:
      omega: the activation frequency (``sin(omega * (W x + b))``).

    Returns:
      ``self`` when it does not depend on omega, else a copy with ``omega``.

    Raises:
      ValueError: if ``omega`` is not positive, or the initializer already
        holds a different omega (a scheme built for one network used in
        another).
    """
    if not self.omega_dependent:
      return self
    if self.omega is not None and float(self.omega) != float(omega):
      raise ValueError(f"initializer built for omega={self.omega} asked to serve omega={omega}.")
    return dataclasses.replace(self, omega=float(omega))

  def variance(self, shape: Shape) -> float:
    """The variance this initializer samples with for a kernel of ``shape``."""
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
    if self.omega_dependent:
      if self.omega is None:
        raise ValueError(_MISSING_OMEGA)
      return self.scale / (fan**self.fan_power * float(self.omega) ** self.omega_power)
    return self.scale / fan**self.fan_power

  def __call__(
      self, key: Array, shape: Shape, dtype: DTypeLike | None = None, out_sharding: Any = None
  ) -> Array:
    """Draws a kernel.

    Args:
      key: a PRNG key (typed, ``jax.random.key``, or legacy ``PRNGKey``).
      shape: the kernel shape ``(..., fan_in, fan_out)``.
      dtype: a float or complex dtype; ``None``: the default float dtype
        (float32 unless ``jax_enable_x64`` is on), as JAX's initializers.
      out_sharding: the result's sharding (as in ``jax.nn.initializers``); the
        values do not depend on it.

    Returns:
      The kernel.
    """
    dt = _check_dtype(dtype)
    shape = _check_shape(shape)
    return _shard(_sample(key, shape, dt, self.variance(shape), self.distribution), out_sharding)


_MISSING_OMEGA = (
    "this initializer depends on the activation frequency omega (SIREN's "
    "U(+-sqrt(6/fan_in)/omega)) and has none: use the scheme through nfscale.make_field or "
    "NeuralField (they pass their activation's omega), or give it explicitly with "
    "get_scheme(name, omega=...), scheme.with_omega(...) or nfscale.Dense(..., omega=...)."
)


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


def siren_hidden(omega: float | None = None) -> VarianceScaling:
  """SIREN's later layers: U(±sqrt(6/fan_in)/omega), variance 2/(omega^2 fan_in).

  Args:
    omega: the activation frequency of ``sin(omega * (W x + b))``; ``None``
      leaves it to the model (see :meth:`VarianceScaling.with_omega`).

  Returns:
    The (omega-dependent) initializer.
  """
  return VarianceScaling(2.0, "fan_in", "uniform", 1.0, omega_power=2.0, omega=omega)


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
    # A NaN or infinite constant made every member diverge at its first step (a run of
    # NaN results); unused by "zeros" and "torch", but still a mistake there.
    # So did one finite in float64 only (1e300: inf in float32).
    top = checks.FLOAT32_SCALE[1]
    if not (checks.is_real(self.value) and abs(self.value) <= top):
      raise ValueError(
          f"bias_value must be a finite number in [-{top}, {top}], got bias_value={self.value!r}."
      )

  def init(self, fan_in: int) -> Initializer:
    """An initializer for a bias of a layer with ``fan_in`` inputs."""
    if fan_in <= 0:
      raise ValueError(f"fan_in must be positive, got fan_in={fan_in}.")
    return BiasInit(self, int(fan_in))


@dataclasses.dataclass(frozen=True)
class BiasInit:
  """A bias rule's initializer for a layer with ``fan_in`` inputs (:meth:`BiasRule.init`).

  A frozen dataclass, as :class:`VarianceScaling` is, rather than a closure: two
  equal ones compare and hash equal, and a Linen layer holding one pickles.

  Attributes:
    rule: the bias rule.
    fan_in: the layer's number of inputs.
  """

  rule: BiasRule
  fan_in: int

  def __call__(
      self, key: Array, shape: Shape, dtype: DTypeLike | None = None, out_sharding: Any = None
  ) -> Array:
    dt = _check_dtype(dtype)
    if len(tuple(shape)) != 1:
      # A bias rule handed to a kernel slot would silently give zeros.
      raise ValueError(
          f"a bias initializer got the kernel shape {tuple(shape)}; for a kernel "
          "write kernel_init=scheme.kernel_init('first' | 'hidden' | 'last')."
      )
    kind = self.rule.kind
    if kind == "zeros":
      return _shard(jnp.zeros(shape, dt), out_sharding)
    if kind == "constant":
      return _shard(jnp.full(shape, self.rule.value, dt), out_sharding)
    variance = 1.0 / (3.0 * self.fan_in)
    return _shard(_sample(key, tuple(shape), dt, variance, "uniform"), out_sharding)


BIAS_KINDS: tuple[str, ...] = ("zeros", "constant", "torch")


def _as_bias_rule(value: str | BiasRule, arg: str) -> BiasRule:
  if isinstance(value, BiasRule):
    return value
  if isinstance(value, str):
    return BiasRule(value)
  raise ValueError(f"{arg} must be one of {BIAS_KINDS} or a BiasRule, got {arg}={value!r}.")


# ---------------------------------------------------------------------------
# Schemes: one initializer per layer position plus the bias rules.


class SchemeUsageError(TypeError, ValueError):
  """A scheme, or one of its methods, used where Flax expects an initializer.

  Both a ``TypeError`` (what Python raises for a wrong call) and a
  ``ValueError`` (what nfscale raises for bad input).
  """


_USE_KERNEL = (
    "kernel_init=scheme.kernel_init('hidden') (or 'first' / 'last'; the same as scheme.hidden)"
)
_USE_BIAS = "bias_init=scheme.bias_init(fan_in, 'hidden')"
_USE_LAYER = "nfscale.Dense(features, scheme, 'hidden') (Linen) or nfscale.Linear (NNX)"


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray))


def _omega_of(inits: tuple[Any, ...]) -> float | None:
  """The one omega the omega-dependent inits hold (``None`` if none holds one)."""
  omegas = {
      float(i.omega) for i in inits if getattr(i, "omega_dependent", False) and i.omega is not None
  }
  if len(omegas) > 1:
    raise ValueError(f"the layers of one scheme hold different omegas {sorted(omegas)}.")
  return omegas.pop() if omegas else None


@dataclasses.dataclass(frozen=True)
class Scheme:
  """A layer-dependent initialization scheme.

  Layers are named by position: ``"first"`` (the layer that reads the
  coordinates or their encoding), ``"hidden"`` (every other layer followed
  by the activation) and ``"last"`` (the linear output layer; also when it is
  the only layer).

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
    >>> s.kernel_init("last") is s.last
    True
    >>> mixed = get_scheme("siren").replace(last="init1")   # SIREN body, init1 output
    >>> mixed.name, mixed.last == get_scheme("init1").last
    ('siren[last=init1]', True)
  """

  name: str
  first: Initializer
  hidden: Initializer
  last: Initializer
  bias: BiasRule = BiasRule()
  first_bias: BiasRule = BiasRule()

  def __post_init__(self):
    for position in POSITIONS:
      _check_kernel_init(getattr(self, position), position)
    _omega_of(self._kernels())

  def __call__(self, *args, **kwargs):
    # Only reached when a Scheme is passed where Flax wants an initializer.
    shape = args[1] if len(args) > 1 else kwargs.get("shape")
    if shape is not None and len(tuple(shape)) == 1:
      raise SchemeUsageError(
          f"a Scheme is not an initializer; for a bias write {_USE_BIAS}, or use {_USE_LAYER}."
      )
    raise SchemeUsageError(
        f"a Scheme is not an initializer; write {_USE_KERNEL}, or use {_USE_LAYER}."
    )

  def _kernels(self) -> tuple[Any, ...]:
    return (self.first, self.hidden, self.last)

  @property
  def omega_dependent(self) -> bool:
    """Whether some layer's kernel law depends on the activation frequency omega."""
    return any(getattr(i, "omega_dependent", False) for i in self._kernels())

  @property
  def omega(self) -> float | None:
    """The omega the scheme was built for (``None``: not given, or not needed)."""
    return _omega_of(self._kernels())

  def with_omega(self, omega: float) -> Scheme:
    """This scheme with the activation frequency filled into every layer that needs it.

    :class:`nfscale.models.NeuralField` calls this with its activation's
    omega; call it yourself when you use an omega-dependent scheme (``siren``,
    ``siren_init2``) outside one.

    Args:
      omega: the frequency of the network's ``sin(omega * (W x + b))``.

    Returns:
      The scheme (``self`` if no layer depends on omega).

    Raises:
      ValueError: if the scheme was already built for a different omega.

    Example:
      >>> get_scheme("siren").with_omega(8.0).hidden.variance((64, 64)) == 2 / (64 * 8.0 ** 2)
      True
    """
    if not checks.is_positive_finite(omega):  # checked even where unused: a typo is a typo
      raise ValueError(
          f"omega must be positive and finite, got omega={omega!r}{checks.array_hint(omega)}."
      )
    if not self.omega_dependent:
      return self
    held = self.omega
    if held is not None and held != float(omega):
      raise ValueError(
          f"scheme {self.name!r} was built for omega={held} but the network uses "
          f"omega={omega}; build it without omega (the network passes its own) or "
          "with the same value."
      )
    kernels = {
        p: i.with_omega(omega) if getattr(i, "omega_dependent", False) else i
        for p, i in zip(POSITIONS, self._kernels())
    }
    return dataclasses.replace(self, **kernels)

  def replace(
      self,
      *,
      first: Any = None,
      hidden: Any = None,
      last: Any = None,
      bias: str | BiasRule | None = None,
      first_bias: str | BiasRule | None = None,
      name: str | None = None,
  ) -> Scheme:
    """A new scheme with some layers' kernel laws or bias rules swapped.

    Args:
      first: the first layer's kernel law: an initializer
        (``init(key, shape, dtype)``), another ``Scheme`` or a registered
        scheme name (then that scheme's law at the same position).
      hidden: the hidden layers' kernel law, as ``first``.
      last: the output layer's kernel law, as ``first``.
      bias: bias rule (a kind in ``BIAS_KINDS`` or a ``BiasRule``) of every
        layer; also of the first layer unless ``first_bias`` is given (as
        :func:`get_scheme` does).
      first_bias: bias rule of the first layer only.
      name: the new name; by default the old one with the swapped kernel
        laws appended, e.g. ``"siren[last=init1]"``.

    Returns:
      The new scheme (``self`` is unchanged).

    Raises:
      ValueError: for an unknown scheme name or bias kind, or a value that is
        not an initializer (``SchemeUsageError`` for a scheme method passed
        uncalled, such as ``last=scheme.kernel_init``).
    """
    changes: dict[str, Any] = {}
    labels = []
    for position, value in (("first", first), ("hidden", hidden), ("last", last)):
      if value is None:
        continue
      if isinstance(value, str):
        changes[position] = get_scheme(value).kernel_init(position)
        labels.append(f"{position}={value}")
      elif isinstance(value, Scheme):
        changes[position] = value.kernel_init(position)
        labels.append(f"{position}={value.name}")
      else:
        _check_kernel_init(value, position)
        changes[position] = value
        labels.append(f"{position}={getattr(value, '__name__', type(value).__name__)}")
    if bias is not None:
      changes["bias"] = changes["first_bias"] = _as_bias_rule(bias, "bias")
    if first_bias is not None:
      changes["first_bias"] = _as_bias_rule(first_bias, "first_bias")
    if name is None:
      name = f"{self.name}[{', '.join(labels)}]" if labels else self.name
    out = dataclasses.replace(self, name=name, **changes)
    held = self.omega
    if held is not None and any(
        getattr(i, "omega_dependent", False) and getattr(i, "omega", None) is None
        for i in out._kernels()
    ):
      # A scheme built for an omega fills it into the omega-dependent laws it takes
      # in, so that its omega is every layer's (a law without one cannot draw).
      out = out.with_omega(held)
    return out

  def position(
      self, layer: int, num_layers: int | None = None, *, num_hidden: int | None = None
  ) -> Position:
    """Position of 0-based weight layer ``layer``.

    Give the network's size one of two ways: ``num_layers``, the number of
    weight layers *including* the output layer (``len(hidden) + 1``), or
    ``num_hidden``, the number of hidden layers (the output layer is then
    index ``num_hidden``). The output layer is ``"last"`` even when it is also
    the first one.

    Raises:
      ValueError: for neither or both counts, or ``layer`` out of range.

    Example:
      >>> s = get_scheme("init1")
      >>> [s.position(k, num_hidden=2) for k in range(3)]
      ['first', 'hidden', 'last']
    """
    if (num_layers is None) == (num_hidden is None):
      raise ValueError(
          "give exactly one of num_layers (weight layers, output layer included) "
          "and num_hidden (hidden layers only)."
      )
    for arg, v in (("layer", layer), ("num_layers", num_layers), ("num_hidden", num_hidden)):
      if v is not None and not checks.is_int(v):
        raise ValueError(f"{arg} must be an integer, got {arg}={v!r}.")
    if num_hidden is not None:
      if num_hidden < 0:
        raise ValueError(f"num_hidden must be >= 0, got num_hidden={num_hidden}.")
      num_layers = num_hidden + 1
    if num_layers <= 0:
      raise ValueError(f"num_layers must be positive, got num_layers={num_layers}.")
    if not 0 <= layer < num_layers:
      raise ValueError(
          f"layer must be in [0, {num_layers}), got layer={layer}; num_layers counts the weight "
          "layers including the output layer (len(hidden) + 1); to count hidden layers only, "
          "pass num_hidden=."
      )
    if layer == num_layers - 1:
      return "last"
    return "first" if layer == 0 else "hidden"

  def kernel_init(
      self,
      position: Position | None = None,
      *args,
      layer: int | None = None,
      num_layers: int | None = None,
      num_hidden: int | None = None,
  ) -> Initializer:
    """The kernel initializer of a layer position.

    Args:
      position: ``"first"``, ``"hidden"`` or ``"last"``; or leave it out and
        give ``layer`` with ``num_layers`` or ``num_hidden`` (see
        :meth:`position`).
      *args: never valid; present to catch ``kernel_init=scheme.kernel_init``
        passed uncalled (Flax then calls it with ``key, shape, dtype``).
      layer: 0-based weight-layer index.
      num_layers: weight layers including the output layer.
      num_hidden: hidden layers only.

    Returns:
      An initializer ``init(key, shape, dtype)``.

    Raises:
      SchemeUsageError: when called as an initializer itself.
      ValueError: for an unknown position or inconsistent counts.
    """
    if not args and checks.is_int(position):
      # kernel_init(0, num_layers=4), as position(0, 4) is called, is not Flax calling it.
      raise ValueError(
          f"kernel_init got the layer index {position} as its position; write "
          f"kernel_init(layer={position}, num_layers=...) (weight layers, output layer "
          "included) or kernel_init(layer=..., num_hidden=...), or a position name "
          "('first', 'hidden', 'last')."
      )
    if args or (position is not None and not isinstance(position, str)):
      raise SchemeUsageError(
          "scheme.kernel_init is not an initializer but picks one for a layer position: "
          f"write {_USE_KERNEL}, or use {_USE_LAYER}."
      )
    if position is not None and (layer, num_layers, num_hidden) != (None, None, None):
      raise ValueError("give either a position or layer= with a count, not both.")
    if position is None:
      if layer is None:
        raise ValueError(
            "give a position ('first', 'hidden' or 'last') or layer= with "
            "num_layers= or num_hidden=."
        )
      position = self.position(layer, num_layers, num_hidden=num_hidden)
    if position not in POSITIONS:
      raise ValueError(f"position must be one of {POSITIONS}, got position={position!r}.")
    return getattr(self, position)

  def bias_init(self, fan_in: int, position: Position = "hidden", *args) -> Initializer:
    """The bias initializer of a layer with ``fan_in`` inputs at ``position``.

    Args:
      fan_in: the layer's number of inputs (the ``"torch"`` rule scales with
        it). :class:`nfscale.layers.Dense` reads it from its input for you.
      position: ``"first"``, ``"hidden"`` or ``"last"``.
      *args: never valid; catches ``bias_init=scheme.bias_init`` uncalled.

    Returns:
      An initializer for a bias of shape ``(features,)``.

    Raises:
      SchemeUsageError: when called as an initializer itself.
      ValueError: for a non-positive ``fan_in`` or an unknown position.
    """
    if not args and checks.is_int(position) and not _is_array(fan_in):
      raise ValueError(
          "bias_init's position must be 'first', 'hidden' or 'last', got the layer index "
          f"{position}; scheme.position({position}, num_layers=...) names it."
      )
    if args or _is_array(fan_in) or not isinstance(position, str):
      raise SchemeUsageError(
          "scheme.bias_init is not an initializer: it needs the layer's fan-in; write "
          f"{_USE_BIAS}, or use nfscale.Dense(features, scheme, 'hidden'), which reads the "
          "fan-in from its input (NNX: nfscale.Linear(in_features, ...))."
      )
    if isinstance(fan_in, bool) or not isinstance(fan_in, (int, np.integer)):
      raise ValueError(f"fan_in must be a positive int, got fan_in={fan_in!r}.")
    if position not in POSITIONS:
      raise ValueError(f"position must be one of {POSITIONS}, got position={position!r}.")
    rule = self.first_bias if position == "first" else self.bias
    return rule.init(int(fan_in))


def _check_kernel_init(init: Any, position: str) -> None:
  """Refuses values that cannot serve as a kernel initializer, naming the fix."""
  if isinstance(init, Scheme):
    raise SchemeUsageError(
        f"{position}= got a whole Scheme; pass scheme.kernel_init("
        f"{position!r}), or the scheme's name to Scheme.replace."
    )
  owner = getattr(init, "__self__", None)
  if isinstance(owner, Scheme):
    raise SchemeUsageError(
        f"{position}= got the uncalled method scheme.{init.__name__}; write "
        f"{position}=scheme.kernel_init({position!r})."
    )
  if not callable(init):
    raise ValueError(
        f"{position} must be an initializer init(key, shape, dtype), a Scheme or "
        f"a scheme name, got {init!r}."
    )


def _bias_rules(bias: str, bias_value: float, first_bias: str | None) -> dict[str, BiasRule]:
  rule = BiasRule(bias, bias_value)
  if first_bias is None:
    return {"bias": rule, "first_bias": rule}
  if first_bias not in BIAS_KINDS:  # BiasRule's own message would name "bias"
    raise ValueError(f"first_bias must be one of {BIAS_KINDS}, got first_bias={first_bias!r}.")
  return {"bias": rule, "first_bias": BiasRule(first_bias, bias_value)}


def _uniform_scheme(name: str, kernel: VarianceScaling) -> Callable[..., Scheme]:
  def make(bias: str = "zeros", bias_value: float = 0.01, first_bias: str | None = None) -> Scheme:
    return Scheme(name, kernel, kernel, kernel, **_bias_rules(bias, bias_value, first_bias))

  make.__doc__ = f"The {name} scheme: the same kernel law in every layer."
  return make


def _init1(bias: str = "zeros", bias_value: float = 0.01, first_bias: str | None = None) -> Scheme:
  """Paper's Initialization 1: LeCun normal, last layer N(0, 2/fan_in^{3/2})."""
  return Scheme(
      "init1",
      lecun_normal(),
      lecun_normal(),
      init1_last(),
      **_bias_rules(bias, bias_value, first_bias),
  )


def _init2(bias: str = "zeros", bias_value: float = 0.01, first_bias: str | None = None) -> Scheme:
  """Paper's Initialization 2: U(±1/sqrt(fan_in)), last layer U(±1/fan_in^{3/4})."""
  return Scheme(
      "init2",
      init2_hidden(),
      init2_hidden(),
      init2_last(),
      **_bias_rules(bias, bias_value, first_bias),
  )


def _siren(
    omega: float | None = None,
    bias: str = "zeros",
    bias_value: float = 0.01,
    first_bias: str | None = None,
) -> Scheme:
  """SIREN (Sitzmann et al. 2020): first U(±1/fan_in), others U(±sqrt(6/fan_in)/omega)."""
  return Scheme(
      "siren",
      siren_first(),
      siren_hidden(omega),
      siren_hidden(omega),
      **_bias_rules(bias, bias_value, first_bias),
  )


def _siren_init2(
    omega: float | None = None,
    bias: str = "zeros",
    bias_value: float = 0.01,
    first_bias: str | None = None,
) -> Scheme:
  """Remark 4.11: SIREN's first and hidden layers with init2's last layer."""
  return Scheme(
      "siren_init2",
      siren_first(),
      siren_hidden(omega),
      init2_last(),
      **_bias_rules(bias, bias_value, first_bias),
  )


def _powerlaw_scheme(distribution: str) -> Callable[..., Scheme]:
  # Hidden layers are those of init1 (normal) / init2 (uniform), so that
  # init1 == powerlaw_normal(c=2, p=1.5) and init2 == powerlaw_uniform(c=1/3, p=1.5).
  hidden = lecun_normal() if distribution == "normal" else init2_hidden()
  default_c = 2.0 if distribution == "normal" else 1.0 / 3.0

  def make(
      c: float = default_c,
      p: float = 1.5,
      bias: str = "zeros",
      bias_value: float = 0.01,
      first_bias: str | None = None,
  ) -> Scheme:
    return Scheme(
        f"powerlaw_{distribution}",
        hidden,
        hidden,
        powerlaw(c, p, distribution),
        **_bias_rules(bias, bias_value, first_bias),
    )

  make.__doc__ = (
      f"Generalised last layer, {distribution}: variance c/fan_in**p in the last "
      "layer, the paper's hidden layers elsewhere."
  )
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

#: The built-in names; :func:`register_scheme` cannot replace them.
BUILTIN_SCHEMES: tuple[str, ...] = tuple(_REGISTRY)

#: The eight schemes the paper compares (Fig. 4, 5, 8; Table 1).
PAPER_SCHEMES: tuple[str, ...] = (
    "lecun_normal",
    "xavier_normal",
    "kaiming_normal",
    "init1",
    "lecun_uniform",
    "xavier_uniform",
    "kaiming_uniform",
    "init2",
)

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")


def list_schemes() -> list[str]:
  """Names accepted by :func:`get_scheme`.

  Returns:
    The built-in names, then the registered ones in registration order.
  """
  return list(_REGISTRY)


def unknown_scheme_error(name: Any) -> ValueError:
  """The error for a scheme name that is not registered, listing the valid ones."""
  return ValueError(f"Unknown scheme {name!r}; valid schemes: {', '.join(_REGISTRY)}.")


def scheme_parameters(name: str | Scheme) -> list[str]:
  """The hyperparameters that scheme ``name`` accepts (none for a ``Scheme`` instance)."""
  if isinstance(name, Scheme):
    return []
  if not isinstance(name, str) or name not in _REGISTRY:
    raise unknown_scheme_error(name)
  return list(inspect.signature(_REGISTRY[name]).parameters)


def filter_hparams(name: str | Scheme, hparams: Mapping[str, Any]) -> dict[str, Any]:
  """The subset of ``hparams`` that scheme ``name`` accepts.

  Lets one config carry, e.g., ``omega`` for SIREN next to schemes that do
  not take it. A ``Scheme`` instance is complete and takes nothing, so
  ``get_scheme(name, **filter_hparams(name, hparams))`` works for both.

  Args:
    name: a registered name or a ``Scheme``.
    hparams: candidate parameters (e.g. a config's ``scheme_params``).

  Returns:
    The accepted subset.

  Raises:
    ValueError: for an unknown name.

  Example:
    >>> filter_hparams("init1", {"omega": 30.0, "bias": "torch"})
    {'bias': 'torch'}
    >>> filter_hparams(get_scheme("init1"), {"omega": 30.0})
    {}
  """
  accepted = set(scheme_parameters(name))
  return {k: v for k, v in hparams.items() if k in accepted}


def get_scheme(name: str | Scheme, **hparams: Any) -> Scheme:
  """Looks a scheme up by name.

  Args:
    name: a registry name (see :func:`list_schemes`), or a ``Scheme``, which
      is returned unchanged (then ``hparams`` must be empty).
    **hparams: the factory's parameters: ``bias`` (``"zeros"``, ``"constant"``,
      ``"torch"``), ``bias_value``, ``first_bias``; ``omega`` for the SIREN
      schemes (leave it out inside a ``NeuralField``, which passes its
      activation's); ``c`` and ``p`` for the power-law family.

  Returns:
    The scheme.

  Raises:
    ValueError: for an unknown name (the message lists the valid ones) or a
      parameter the scheme does not take.

  Example:
    >>> get_scheme("siren", omega=30.0).hidden.variance((256, 256)) == 2 / (30.0 ** 2 * 256)
    True
  """
  if isinstance(name, Scheme):
    if hparams:
      raise ValueError(
          f"hparams {sorted(hparams)} given with a Scheme instance; a Scheme is "
          "complete (use scheme.replace(...) or scheme.with_omega(...))."
      )
    return name
  if not isinstance(name, str) or name not in _REGISTRY:
    raise unknown_scheme_error(name)
  accepted = scheme_parameters(name)
  unknown = sorted(set(hparams) - set(accepted))
  if unknown:
    raise ValueError(f"Invalid parameters {unknown} for scheme {name!r}; it takes {accepted}.")
  scheme = _REGISTRY[name](**hparams)
  if not isinstance(scheme, Scheme):
    raise ValueError(
        f"the factory of scheme {name!r} returned {type(scheme).__name__}, not a Scheme."
    )
  return scheme


def _instance_factory(scheme: Scheme) -> Callable[..., Scheme]:
  """A factory for a registered ``Scheme`` instance, taking the built-ins' bias parameters.

  ``None`` keeps the instance's own rule, so a config's default ``bias``
  does not override a bias the instance was built with. ``bias`` also sets the
  first layer's rule when the instance's first layer followed its others (as
  :func:`get_scheme`'s does); a first-layer rule of its own stays unless
  ``first_bias`` is given. ``bias_value`` sets the value of both rules.
  """

  def make(
      bias: str | None = None,
      bias_value: float | None = None,
      first_bias: str | None = None,
      **omega,
  ) -> Scheme:
    out = scheme
    follows = out.first_bias == out.bias
    rule, first = out.bias, out.first_bias
    if bias is not None or bias_value is not None:
      rule = BiasRule(bias or rule.kind, rule.value if bias_value is None else bias_value)
    if first_bias is not None:
      first = BiasRule(first_bias, first.value if bias_value is None else bias_value)
    elif follows:
      first = rule
    elif bias_value is not None:
      first = BiasRule(first.kind, bias_value)
    out = out.replace(bias=rule, first_bias=first)
    if omega.get("omega") is not None:
      out = out.with_omega(omega["omega"])
    return out

  params = [
      p
      for p in inspect.signature(make).parameters.values()
      if p.kind is not inspect.Parameter.VAR_KEYWORD
  ]
  if scheme.omega_dependent:
    params.append(inspect.Parameter("omega", inspect.Parameter.KEYWORD_ONLY, default=None))
  make.__signature__ = inspect.Signature(params)
  make.__doc__ = f"The registered scheme {scheme.name!r}."
  return make


def register_scheme(
    name: str, factory: Callable[..., Scheme] | Scheme | None = None, *, overwrite: bool = False
) -> Any:
  """Adds a scheme to the registry, next to the built-ins.

  A registered name works everywhere a built-in one does: :func:`get_scheme`,
  :func:`list_schemes`, :func:`filter_hparams`, ``make_field(scheme=...)``
  and the configs' ``schemes``.

  Args:
    name: the new name (a letter, then letters, digits, ``_``, ``.``, ``-``).
    factory: a function of keyword parameters, each with a default, that
      returns a :class:`Scheme` (as the built-ins are; give an
      omega-dependent one ``omega: float | None = None`` so that the network
      can supply it), or a ``Scheme`` instance (it then takes ``bias``,
      ``bias_value``, ``first_bias``, plus ``omega`` if it needs one; left
      out, they keep the instance's own). Leave it out to use
      ``register_scheme(name)`` as a decorator.
    overwrite: replace an earlier registration of ``name`` (built-ins can
      never be replaced). Registering an equal ``Scheme`` instance again
      needs none: it is a no-op, so a notebook cell can run twice.

  Returns:
    ``factory`` (or the decorator).

  Raises:
    ValueError: for a bad or taken name, or a factory that takes ``*args`` /
      ``**kwargs``, lacks defaults, or does not build a Scheme from them.

  Example:
    >>> _ = register_scheme("siren_lecun_last", get_scheme("siren").replace(last="lecun_normal"))
    >>> get_scheme("siren_lecun_last", bias="torch", omega=30.0).bias.kind
    'torch'
  """
  if factory is None:
    return lambda f: register_scheme(name, f, overwrite=overwrite)
  if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
    raise ValueError(
        "scheme name must start with a letter and hold only letters, digits, "
        f"'_', '.' or '-', got name={name!r}."
    )
  if name in BUILTIN_SCHEMES:
    raise ValueError(f"{name!r} is a built-in scheme and cannot be replaced; pick another name.")
  if name in _REGISTRY and not overwrite:
    if isinstance(factory, Scheme) and getattr(_REGISTRY[name], "scheme", None) == factory:
      # The same scheme again: a notebook cell run twice, not a clash.
      return factory
    raise ValueError(f"scheme {name!r} is already registered; pass overwrite=True to replace it.")
  make = _instance_factory(factory) if isinstance(factory, Scheme) else factory
  if not callable(make):
    raise ValueError(f"factory must be a function returning a Scheme or a Scheme, got {factory!r}.")
  for p in inspect.signature(make).parameters.values():
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
      raise ValueError(
          f"the factory of scheme {name!r} must name its parameters, not take "
          f"*{p.name} / **{p.name} (filter_hparams lists them)."
      )
    if p.default is p.empty:
      raise ValueError(
          f"parameter {p.name!r} of the factory of scheme {name!r} needs a "
          "default, as every built-in's has."
      )
  try:
    built = make()
  except Exception as e:  # Report any failure of the user's code as bad input.
    raise ValueError(f"the factory of scheme {name!r} fails with its defaults: {e}") from e
  if not isinstance(built, Scheme):
    raise ValueError(
        f"the factory of scheme {name!r} returned {type(built).__name__}, not a Scheme."
    )

  @functools.wraps(make)
  def named(**hparams) -> Scheme:
    # Reports and results use the registry name.
    return dataclasses.replace(make(**hparams), name=name)

  named.__signature__ = inspect.signature(make)
  named.scheme = factory if isinstance(factory, Scheme) else None
  _REGISTRY[name] = named
  return factory
