"""Fast, accurate float32 sine and cosine for CPU training (opt-in).

Why this module exists:
    On the CPU backend XLA lowers ``jnp.sin``/``jnp.cos`` to a generic,
    poorly vectorised routine. On the 2-core AMD EPYC machines this project
    runs on, ``jnp.sin`` of a float32 ``(65536, 256)`` array takes 60-90 ms
    while ``numpy.sin`` takes about 15 ms. SIREN-style neural fields apply
    ``sin(w0 * x)`` to every hidden feature (and need ``cos`` of the same
    argument in the backward pass), so the step time is dominated by it.

What it does:
    :func:`fast_sin` and :func:`fast_cos` evaluate sine/cosine with a
    Cody-Waite range reduction followed by short polynomials on
    ``[-pi/4, pi/4]``. Everything is plain element-wise ``jnp`` arithmetic
    (no gathers, no table look-ups), so XLA fuses it into one vectorised loop
    that also absorbs the surrounding element-wise ops such as ``30 * x``.
    Both functions carry a ``jax.custom_jvp`` so that derivatives are the
    equally fast ``fast_cos``/``-fast_sin`` rather than the derivative of the
    polynomial (which would be both slower and less accurate), and higher
    derivatives work too.

Accuracy (float32 input, compared with float64 ``numpy.sin``/``numpy.cos``
of the float32 input value, i.e. the exact answer for that input):
    * Max abs error 1.2e-7 (sin 1.10e-7, cos 1.15e-7) for ``|x| < 65536``:
      every float32 in that range checked exhaustively under ``jit`` on the
      x86-64 target. For comparison ``jnp.sin`` is about 3e-8, and half an
      ulp of a float32 result near 1 is already 3e-8.
    * XLA's CPU backend contracts the reduction ``r - k * C`` into FMA
      instructions on FMA-capable x86 (checked in the generated code), which
      makes it accurate far beyond the exact-product range of the split:
      measured 1.3e-7 up to 2**20 (~1e6), 3.8e-7 up to 2**21, 3.1e-6 up to
      2**22. Without FMA (emulated in numpy float32) the error is 1.0e-7 up
      to 8192, 2.9e-7 up to 16384, <= 2e-6 up to 2**17 (131072) and then
      jumps to 1e-2..1e-1, so the 1e4 design range is safe either way.
      Called eagerly (op by op, outside ``jit``) nothing is contracted: that
      is the case without FMA (measured 9.6e-7 on ``[1e4, 65536]``, 9e-8 on
      ``[-100, 100]``), so eager and jitted results can differ by that much.
    * For tiny ``|x|`` the reduction is the identity (``k == 0``), so
      ``fast_sin`` keeps full relative accuracy (measured 2e-9 for
      ``1e-45 < |x| < 1e-4``, subnormals included); ``fast_sin(+-0.0) ==
      +-0.0`` and ``fast_cos(0) == 1`` exactly.

Non-finite and huge inputs:
    ``nan`` and ``+-inf`` give ``nan`` (as ``jnp.sin`` does). Finite inputs
    with ``|x| > MAX_ACCURATE_ARG`` (``2**22``) also give ``nan`` instead of
    an arbitrary finite number (the reduction would return garbage of any
    magnitude there), so a diverged activation is loud rather than silently
    wrong. This differs from ``jnp.sin``, which stays accurate there.

Speed:
    The kernel is memory-bound on the target CPU: ``jit(fast_sin)`` on a
    float32 ``(65536, 256)`` array runs at the speed of ``jit(lambda x:
    2 * x)`` (~20-25 ms vs ~60-110 ms for ``jnp.sin``), and forward+backward
    of ``sum(sin(30 * x))`` drops from ~90 ms to ~22-26 ms. A full SIREN
    step (2 -> 3x256 -> 3, 65536 points, value_and_grad) went from ~1.67 s
    to ~0.97 s (relu: ~0.92 s). ``nfscale.bench.sin_timings()`` measures it
    on your machine.

Dtypes:
    float32 uses the fast path. float16/bfloat16 are computed in float32 and
    cast back. float64 (only possible with ``jax_enable_x64``) and complex
    inputs call ``jnp.sin``/``jnp.cos``: the speed problem is float32-specific
    and a float64 polynomial would need a longer reduction for no benefit
    here. Integer and bool inputs are promoted exactly as ``jnp.sin`` does.

This module is opt-in: nothing in nfscale switches to it implicitly. Pass
``fast_sin`` wherever an activation function is accepted, e.g.
``lambda h: fast_sin(30.0 * h)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["fast_sin", "fast_cos", "MAX_ACCURATE_ARG"]

# --- Range reduction constants --------------------------------------------
#
# x = k * (pi/2) + r with k = round(x * 2/pi) and |r| <= ~pi/4.
#
# pi/2 is split Cody-Waite style into _PIO2_1 + _PIO2_2 + _PIO2_3 + _PIO2_4.
# The first three parts have at most 11 significant bits (trailing mantissa
# bits zero), so k * _PIO2_i is exact in float32 whenever |k| < 2**13; the first
# subtraction x - k*_PIO2_1 is then exact by Sterbenz' lemma and the next one
# is exact because the result has few enough bits. Only the last two steps
# round, and they operate on small numbers, so r is accurate to ~1 ulp of r
# instead of ~1 ulp of x (which is what a naive x - k*float32(pi/2) gives:
# ~1e-3 absolute error at |x| = 1e4). The sum of the four parts equals pi/2
# to ~5e-20 relative. Generated from a 100-digit pi with fractions.Fraction
# by repeatedly rounding the remainder to 11 significant bits; written as hex
# so they are exact float32 values.
_TWO_OVER_PI = np.float32(2.0 / np.pi)
_PIO2_1 = np.float32(float.fromhex("0x1.92p+0"))  # 1.5703125, 8 bits
_PIO2_2 = np.float32(float.fromhex("0x1.fb4p-12"))  # 4.8375130e-04, 11 bits
_PIO2_3 = np.float32(float.fromhex("0x1.444p-24"))  # 7.5495336e-08, 11 bits
_PIO2_4 = np.float32(float.fromhex("0x1.68c234p-39"))  # 2.5633441e-12, rest

# Above this magnitude the float32 spacing of x is >= 0.5, so x no longer
# carries a meaningful phase for a neural field, the reduction stops being
# accurate even with FMA (3e-6 just below it) and, further up, r and hence
# the polynomials blow up. We return nan there instead of a wrong finite
# number. 2**22 ~= 4.19e6.
MAX_ACCURATE_ARG: float = float(2**22)

# --- Polynomials on [-pi/4, pi/4] -----------------------------------------
# Minimax coefficients from Cephes' sinf/cosf (S. Moshier), fitted for
# float32 on exactly this interval. Measured total kernel error on
# |x| <= pi/4, float32 rounding included, is <= 8.5e-8 for both.
#   sin(r) ~= r + r^3 * (S1 + z*(S2 + z*S3)),            z = r^2
#   cos(r) ~= 1 - z/2 + z^2 * (C1 + z*(C2 + z*C3))
_S1 = np.float32(-1.6666654611e-1)
_S2 = np.float32(8.3321608736e-3)
_S3 = np.float32(-1.9515295891e-4)
_C1 = np.float32(4.166664568298827e-2)
_C2 = np.float32(-1.388731625493765e-3)
_C3 = np.float32(2.443315711809948e-5)


def _sincos_f32_impl(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Computes (sin(x), cos(x)) for a float32 array without custom rules.

  Args:
      x: float32 array.

  Returns:
      Tuple ``(sin(x), cos(x))`` of float32 arrays shaped like ``x``.
  """
  # Quadrant index. jnp.round rounds half to even; any rounding works as
  # long as |r| stays close to pi/4, the polynomials are accurate slightly
  # beyond it.
  k = jnp.round(x * _TWO_OVER_PI)
  r = x - k * _PIO2_1
  r = r - k * _PIO2_2
  r = r - k * _PIO2_3
  r = r - k * _PIO2_4

  z = r * r
  sin_r = r + (r * z) * (_S1 + z * (_S2 + z * _S3))
  cos_r = (np.float32(1.0) - np.float32(0.5) * z) + (z * z) * (_C1 + z * (_C2 + z * _C3))

  # Quadrant selection with selects (vectorises; a gather from a 4-entry
  # table would not). k is integral and |k| < 2**31 for every |x| we do not
  # map to nan, so the int32 conversion is exact there; two's-complement
  # `& 3` gives the non-negative residue mod 4 for negative k too.
  q = k.astype(jnp.int32)
  odd = (q & 1) != 0
  # sin(k*pi/2 + r) = [ sin r,  cos r, -sin r, -cos r][k mod 4]
  # cos(k*pi/2 + r) = [ cos r, -sin r, -cos r,  sin r][k mod 4]
  a = jnp.where(odd, cos_r, sin_r)
  b = jnp.where(odd, sin_r, cos_r)
  sin_x = jnp.where((q & 2) != 0, -a, a)
  cos_x = jnp.where(((q + 1) & 2) != 0, -b, b)

  # nan/inf already propagate to nan through r (inf - inf). Huge finite
  # values would give garbage of any magnitude, so map them to nan too.
  too_big = jnp.abs(x) > np.float32(MAX_ACCURATE_ARG)
  nan = np.float32(np.nan)
  sin_x = jnp.where(too_big, nan, sin_x)
  cos_x = jnp.where(too_big, nan, cos_x)
  # x - k*C with k == -0.0 turns x == -0.0 into +0.0; keep sin(-0) == -0 as
  # jnp.sin does. XLA's CPU code runs with denormals-are-zero, so this also
  # returns subnormal x unchanged (correct: sin(x) == x there) instead of a
  # flushed 0. Free in practice: the kernel is memory-bound.
  sin_x = jnp.where(x == 0, x, sin_x)
  return sin_x, cos_x


@jax.custom_jvp
def _sincos_f32(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Differentiable float32 (sin(x), cos(x)); see :func:`_sincos_f32_impl`."""
  return _sincos_f32_impl(x)


@_sincos_f32.defjvp
def _sincos_f32_jvp(
    primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
  # Use the analytic derivatives instead of differentiating the polynomial:
  # they are as accurate as the primal and reuse the values we already
  # computed (sin and cos share one reduction), so the backward pass of
  # sin(w0*x) needs no extra transcendental work. Calling _sincos_f32
  # (not the impl) here keeps higher-order derivatives on this rule.
  (x,), (t,) = primals, tangents
  s, c = _sincos_f32(x)
  return (s, c), (c * t, -s * t)


def _dispatch(
    x: jax.typing.ArrayLike, index: int, fallback: Callable[[jax.Array], jax.Array]
) -> jax.Array:
  """Routes ``x`` to the float32 kernel or to ``fallback`` by dtype.

  Args:
      x: Input array-like.
      index: 0 to return the sine, 1 for the cosine.
      fallback: ``jnp.sin`` or ``jnp.cos``, used for float64 and complex.

  Returns:
      The requested function of ``x``.
  """
  x = jnp.asarray(x)
  dtype = x.dtype
  if not jnp.issubdtype(dtype, jnp.inexact):
    # Promote integers/bools exactly as jnp.sin would (e.g. int32 ->
    # float32 even under x64); eval_shape only traces, it computes nothing.
    x = x.astype(jax.eval_shape(fallback, x).dtype)
    dtype = x.dtype
  if dtype == jnp.float32:
    return _sincos_f32(x)[index]
  if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
    # float16/bfloat16: float32 math is both faster on CPU and accurate
    # enough to round correctly (or nearly so) to the narrow type.
    return _sincos_f32(x.astype(jnp.float32))[index].astype(dtype)
  # float64 / complex: no speed problem worth a second implementation.
  return fallback(x)


def fast_sin(x: jax.typing.ArrayLike) -> jax.Array:
  """Element-wise sine, fast on CPU for float32.

  Drop-in for ``jnp.sin`` under ``jit``, ``vmap`` and ``grad``; the
  derivative is ``fast_cos(x)`` (via ``jax.custom_jvp``), so backward passes
  are fast too.

  Args:
      x: Array-like of any real or complex dtype. float32 (and
          float16/bfloat16, computed in float32) use the polynomial kernel;
          float64 and complex defer to ``jnp.sin``; integers and bools are
          promoted as ``jnp.sin`` promotes them.

  Returns:
      ``sin(x)`` with the dtype of ``x`` (after integer promotion). For
      float32 the max abs error vs. the exact sine of the float32 input is
      1.2e-7 for ``|x| < 65536`` and grows beyond that (see the module
      docstring). ``nan``/``inf`` inputs and finite inputs with
      ``|x| > MAX_ACCURATE_ARG`` give ``nan``.
  """
  return _dispatch(x, 0, jnp.sin)


def fast_cos(x: jax.typing.ArrayLike) -> jax.Array:
  """Element-wise cosine, fast on CPU for float32.

  Same kernel, accuracy and non-finite behaviour as :func:`fast_sin`; the
  derivative is ``-fast_sin(x)``.

  Args:
      x: Array-like of any real or complex dtype (see :func:`fast_sin`).

  Returns:
      ``cos(x)`` with the dtype of ``x`` (after integer promotion).
  """
  return _dispatch(x, 1, jnp.cos)
