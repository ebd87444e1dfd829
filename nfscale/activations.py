"""Elementwise activations of neural fields, each with its frequency or scale.

Activations are frozen dataclasses (hashable, comparable, printable) with a
``__call__``; a registry maps names to them::

    act = get_activation("gaussian", sigma=0.1)
    y = act(x)

``is_complex`` tells the model that the activation maps real inputs to complex
outputs (WIRE's Gabor wavelet), so the layers after it must be complex.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import checks, fastmath

Array = jax.Array


def _switch(name: str, value: bool) -> None:
  # Read by truth value: fast="false" (a string in a params dict) took the fast path.
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False, got {name}={value!r}.")


def _positive(name: str, value: float) -> None:
  # Numbers only: a string such as "30" would pass float() and fail later in a trace.
  # Within checks.FLOAT32_SCALE: sigma=1e300 overflowed in 0.5 / sigma**2 (sigma=1e-300
  # divided by zero) when the first step was traced, and omega=1e300 (inf in float32)
  # trained every member to NaN.
  if not checks.is_float32_scale(value):
    low, high = checks.FLOAT32_SCALE
    raise ValueError(
        f"{name} must be positive and finite, in [{low}, {high}] (float32 on the device), "
        f"got {name}={value!r}{checks.array_hint(value)}."
    )


@dataclasses.dataclass(frozen=True)
class Sine:
  """``sin(omega * x)``; SIREN uses ``omega = 30``.

  ``fast=True`` uses :func:`nfscale.fastmath.fast_sin` (max abs error ~1e-7
  for float32 inputs below 65536 in magnitude under ``jit``, up to ~1e-6 op
  by op; XLA's CPU ``sin`` is several
  times slower). Off by default.
  """

  omega: float = 30.0
  fast: bool = False
  is_complex: ClassVar[bool] = False

  def __post_init__(self):
    _positive("omega", self.omega)
    _switch("fast", self.fast)

  def __call__(self, x: Array) -> Array:
    if self.fast:
      return _fast_sine(self.omega, x)
    return jnp.sin(self.omega * x)


# The fast activations carry their derivative with respect to the layer's
# pre-activation x, omega included: d/dx phi(omega x) = (omega phi'(omega x)).
# Differentiating phi(omega x) op by op instead multiplies the cotangent by the
# constant omega after the activation's own derivative; XLA's CPU backend then
# fuses that scalar multiply into the next matmul or reduction as a full-size
# broadcast array (one extra array written and read per layer). Higher
# derivatives go through the fast sine/cosine's own rules.


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _fast_sine(omega: float, x: Array) -> Array:
  return fastmath.fast_sin(omega * x)


@_fast_sine.defjvp
def _fast_sine_jvp(omega, primals, tangents):
  (x,), (t,) = primals, tangents
  z = omega * x
  return fastmath.fast_sin(z), (omega * fastmath.fast_cos(z)) * t


@dataclasses.dataclass(frozen=True)
class Sinc:
  """Normalised sinc ``sin(omega x) / (omega x)``, equal to 1 at ``x = 0``.

  The default path evaluates ``z = omega x`` as a Taylor series of
  ``sin(z)/z`` for small ``|z|`` and as the quotient elsewhere, so the value
  and every derivative are finite for every finite ``x`` (the gradient is
  exactly 0 at 0, the second derivative ``-omega^2/3``), and the gradient
  keeps float32's relative accuracy down to the smallest inputs (tested
  against float64 for ``|x|`` from 1e-30 up). ``fast=True`` uses
  :func:`nfscale.fastmath.fast_sin` with a shorter Taylor branch near 0
  (also finite, value 1 and gradient 0 at 0; absolute accuracy ~1e-5 omega).

  The paper prints ``sin(omega x)/x`` but also states ``sinc(0) = 1``; the
  normalised form satisfies both conventions' shape and keeps the output O(1).
  """

  omega: float = 30.0
  fast: bool = False
  is_complex: ClassVar[bool] = False

  def __post_init__(self):
    _positive("omega", self.omega)
    _switch("fast", self.fast)

  def __call__(self, x: Array) -> Array:
    if not self.fast:
      return _sinc(self.omega * x)
    return _fast_sinc(self.omega, x)


def _sinc_series_below(dtype: jnp.dtype) -> float:
  """Where the default sinc switches from the series to ``sin(z)/z``.

  Autodiff of ``sin(z)/z`` computes ``cos(z)/z - sin(z)/z^2``: two terms of
  size ``1/z`` whose difference is ``-z/3``, so its relative error is about
  ``3 eps / z^2`` (float32: 7e-7 at 0.5, but 2e-3 at 1e-2, and inf/NaN once
  ``z^2`` underflows, which is what ``jnp.sinc``'s derivative does below
  ``|z| ~ 1e-19``). The series through ``z^8`` is off by at most
  ``z^10/11! < 3e-11`` below 0.5: both sides are at float32 precision there.
  float64 needs the series only below 0.05 (error < 3e-21; the quotient's
  gradient error there is < 2e-13).
  """
  return 0.05 if jnp.finfo(dtype).bits > 32 else 0.5


def _sinc(z: Array) -> Array:
  """``sin(z)/z`` with the Taylor series near 0; plain autodiff gives its derivatives."""
  z = jnp.asarray(z)
  if not jnp.issubdtype(z.dtype, jnp.floating):
    z = z.astype(jnp.result_type(float))
  small = jnp.abs(z) < _sinc_series_below(z.dtype)
  # The untaken branch must stay finite for the gradient: divide by 1, not 0.
  safe = jnp.where(small, jnp.ones_like(z), z)
  z2 = z * z
  series = 1 + z2 * (-1 / 6 + z2 * (1 / 120 + z2 * (-1 / 5040 + z2 * (1 / 362880))))
  return jnp.where(small, series, jnp.sin(safe) / safe)


# Below this |omega x| the Taylor form 1 - z^2/6 is used; its error z^4/120 is
# < 1e-10 there, far below float32 resolution.
_SINC_TAYLOR_BELOW = 1e-2


def _sinc_and_slope(z: Array) -> tuple[Array, Array]:
  """``sin(z)/z`` and its derivative ``(cos z - sin(z)/z)/z`` (Taylor near 0)."""
  small = jnp.abs(z) < _SINC_TAYLOR_BELOW
  # The untaken branch must stay finite for the gradient: divide by 1, not 0.
  safe = jnp.where(small, jnp.ones_like(z), z)
  quotient = fastmath.fast_sin(safe) / safe
  value = jnp.where(small, 1 - z * z / 6, quotient)
  slope = jnp.where(small, -z / 3, (fastmath.fast_cos(safe) - quotient) / safe)
  return value, slope


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _fast_sinc(omega: float, x: Array) -> Array:
  return _sinc_and_slope(omega * x)[0]


@_fast_sinc.defjvp
def _fast_sinc_jvp(omega, primals, tangents):
  (x,), (t,) = primals, tangents
  value, slope = _sinc_and_slope(omega * x)
  return value, (omega * slope) * t


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """``exp(-x^2 / (2 sigma^2))``; the paper's super-resolution run uses ``sigma = 0.1``."""

  sigma: float = 0.1
  is_complex: ClassVar[bool] = False

  def __post_init__(self):
    _positive("sigma", self.sigma)

  def __call__(self, x: Array) -> Array:
    return jnp.exp(-(x * x) * (0.5 / self.sigma**2))


@dataclasses.dataclass(frozen=True)
class Gabor:
  """WIRE's complex Gabor wavelet ``exp(i omega0 x) * exp(-|s0 x|^2)``.

  Real inputs give complex outputs; complex inputs are allowed (the hidden
  layers of a WIRE network are complex). WIRE's later defaults are
  ``omega0 = s0 = 10``; large ``omega0 / s0`` ratios produce NaNs.

  A field with this activation has complex params: in a training loop of
  your own, pass ``jax.grad``'s gradients through
  :func:`nfscale.train.descent_gradients` before optax (``jax.grad`` of a
  real loss gives the conjugate of the descent direction for a complex
  parameter); nfscale's engine does it itself.
  """

  omega0: float = 10.0
  s0: float = 10.0
  is_complex: ClassVar[bool] = True

  def __post_init__(self):
    _positive("omega0", self.omega0)
    _positive("s0", self.s0)

  def __call__(self, x: Array) -> Array:
    scaled = self.s0 * x
    # |s0 x|^2 of a complex number is re^2 + im^2; jnp.abs would add a sqrt.
    mag2 = jnp.real(scaled * jnp.conj(scaled))
    return jnp.exp(1j * self.omega0 * x - mag2)


@dataclasses.dataclass(frozen=True)
class RealGabor:
  """Real Gabor wavelet ``cos(omega0 x) * exp(-(s0 x)^2)`` (``fast``: fast cosine)."""

  omega0: float = 10.0
  s0: float = 10.0
  fast: bool = False
  is_complex: ClassVar[bool] = False

  def __post_init__(self):
    _positive("omega0", self.omega0)
    _positive("s0", self.s0)
    _switch("fast", self.fast)

  def __call__(self, x: Array) -> Array:
    z = self.omega0 * x
    cos = fastmath.fast_cos(z) if self.fast else jnp.cos(z)
    return cos * jnp.exp(-jnp.square(self.s0 * x))


@dataclasses.dataclass(frozen=True)
class ReLU:
  """``max(0, x)``; used with a positional embedding (ReLU-PE)."""

  is_complex: ClassVar[bool] = False

  def __call__(self, x: Array) -> Array:
    return jax.nn.relu(x)


Activation = Sine | Sinc | Gaussian | Gabor | RealGabor | ReLU

_REGISTRY: dict[str, type] = {
    "sine": Sine,
    "sinc": Sinc,
    "gaussian": Gaussian,
    "gabor": Gabor,
    "real_gabor": RealGabor,
    "relu": ReLU,
}


def list_activations() -> list[str]:
  """Names accepted by :func:`get_activation`.

  Returns:
    The registered names, e.g. ``["sine", "sinc", ...]``.
  """
  return list(_REGISTRY)


def activation_name(act: Activation) -> str:
  """The registry name of an activation instance."""
  for name, cls in _REGISTRY.items():
    if type(act) is cls:
      return name
  raise ValueError(f"{act!r} is not a registered activation.")


def get_activation(name: str | Activation, **params: Any) -> Activation:
  """Looks an activation up by name.

  Args:
    name: a registry name (see :func:`list_activations`) or an activation
      instance (returned unchanged; ``params`` must then be empty).
    **params: its parameters (``omega`` for sine/sinc, ``sigma`` for gaussian,
      ``omega0``/``s0`` for the Gabor wavelets).

  Returns:
    The activation, a callable ``x -> phi(x)``.

  Raises:
    ValueError: unknown name (the message lists the valid ones), unknown or
      non-positive parameter.

  Example:
    >>> get_activation("sinc", omega=10.0)(jnp.zeros(3))
    Array([1., 1., 1.], dtype=float32)
  """
  if not isinstance(name, str):
    activation_name(name)  # first: None is no instance, whatever the params
    if params:
      raise ValueError(f"params {sorted(params)} given with an activation instance.")
    return name
  if name not in _REGISTRY:
    raise ValueError(f"Unknown activation {name!r}; valid activations: {', '.join(_REGISTRY)}.")
  cls = _REGISTRY[name]
  valid = [p for p in inspect.signature(cls).parameters]
  unknown = sorted(set(params) - set(valid))
  if unknown:
    raise ValueError(f"Invalid parameters {unknown} for activation {name!r}; it takes {valid}.")
  return cls(**params)
