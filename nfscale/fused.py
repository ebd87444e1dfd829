"""A SIREN layer ``sin(omega (x W + b))`` that keeps no pre-activation for the backward pass.

Why: in a sine field's training step every hidden layer writes its ``(points,
width)`` pre-activation (or the sine and cosine of it) to memory in the forward
pass and reads it back in the backward pass. On a GPU those elementwise passes,
not the matmuls, are the likely bound of the step (see docs/benchmarks.md).
:func:`dense_sine` saves only the layer's input and weights and recomputes the
pre-activation in the backward pass (one extra matmul per layer, which a GPU
has to spare), so the forward pass writes one array per layer instead of two
or three.

Two implementations, one contract (same values up to float rounding):

* ``"jax"``: plain ``jax.numpy`` under a ``jax.custom_vjp``; XLA fuses the
  sine into the matmul's epilogue where it can. Runs everywhere.
* ``"pallas"``: two Pallas kernels, tiled matmuls whose epilogues work on the
  pre-activation while it is still on the chip. The forward kernel adds the
  bias and takes the sine. The backward kernel recomputes the pre-activation
  and writes the gradient at it, ``g * omega * cos(omega z)``, together with
  each row block's partial bias gradient; the two matmuls of the input and
  weight gradients are left to XLA. They compile for GPUs (Triton); on other
  backends they run in Pallas's interpret mode, which is slow and exists to
  test the kernels.

``"auto"`` is ``"pallas"`` on a GPU and ``"jax"`` elsewhere. The kernel's speed
on a GPU has not been measured yet; :class:`nfscale.models.NeuralField` uses
this module only when asked (``fused=...``).

Example:
  >>> x = jnp.linspace(-1, 1, 12, dtype=jnp.float32).reshape(4, 3)
  >>> w = jnp.full((3, 2), 0.1, jnp.float32)
  >>> b = jnp.zeros((2,), jnp.float32)
  >>> y = dense_sine(x, w, b, 30.0, impl="jax")
  >>> bool(jnp.allclose(y, jnp.sin(30.0 * (x @ w + b)), atol=1e-6))
  True
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nfscale import fastmath

Array = jax.Array

IMPLS = ("auto", "jax", "pallas")


class Tiles(NamedTuple):
  """How the Pallas kernels cut the work: one program per ``rows x cols`` output tile.

  ``k`` is the step along the contraction; ``num_warps`` and ``num_stages`` go
  to Triton (threads per program / software-pipelining depth). Sizes are powers
  of two of at least 16, as Triton's dot needs. Written ``"ROWSxCOLSxK/WARPS/STAGES"``
  (:func:`parse_tiles`).
  """

  rows: int = 64
  cols: int = 64
  k: int = 32
  num_warps: int = 4
  num_stages: int = 2

  def __str__(self) -> str:
    return f"{self.rows}x{self.cols}x{self.k}/{self.num_warps}/{self.num_stages}"


#: The kernels' tiles unless told otherwise: 64 x 64 float32 tiles keep a
#: program's operands well inside a GPU's shared memory (x: 64 x 32, W: 32 x 64,
#: accumulator 64 x 64). Not tuned on a GPU yet (``launch.bench --workload=layer``
#: compares others).
DEFAULT_TILES = Tiles()


def parse_tiles(text: str) -> Tiles:
  """A :class:`Tiles` from ``"ROWSxCOLSxK"`` with optional ``"/WARPS"`` and ``"/STAGES"``.

  >>> parse_tiles("128x64x32/8/3")
  Tiles(rows=128, cols=64, k=32, num_warps=8, num_stages=3)
  >>> str(parse_tiles("32x32x16"))
  '32x32x16/4/2'

  Raises:
    ValueError: another form, or a size that is not a power of two of at least 16.
  """
  m = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)(?:/(\d+))?(?:/(\d+))?\s*", text)
  if not m:
    raise ValueError(f"tiles {text!r}: expected ROWSxCOLSxK[/WARPS[/STAGES]], e.g. 64x64x32/4/2.")
  rows, cols, k = (int(v) for v in m.groups()[:3])
  warps = int(m.group(4)) if m.group(4) else DEFAULT_TILES.num_warps
  stages = int(m.group(5)) if m.group(5) else DEFAULT_TILES.num_stages
  return check_tiles(Tiles(rows, cols, k, warps, stages))


def as_tiles(tiles: Tiles | tuple[int, ...] | str | None) -> Tiles:
  """Checked :class:`Tiles` from a ``Tiles``, a tuple, its string form or ``None`` (the default).

  >>> as_tiles(None) == DEFAULT_TILES, as_tiles("32x32x16").rows
  (True, 32)
  """
  if tiles is None:
    return DEFAULT_TILES
  return parse_tiles(tiles) if isinstance(tiles, str) else check_tiles(Tiles(*tiles))


def check_tiles(tiles: Tiles) -> Tiles:
  """``tiles`` if Triton can take it, else a ``ValueError`` naming the bad size."""
  for name in ("rows", "cols", "k"):
    v = getattr(tiles, name)
    if v < 16 or v & (v - 1):
      raise ValueError(f"tiles {tiles}: {name}={v} must be a power of two of at least 16.")
  if tiles.num_warps < 1 or tiles.num_warps & (tiles.num_warps - 1):
    raise ValueError(f"tiles {tiles}: num_warps={tiles.num_warps} must be a power of two.")
  if tiles.num_stages < 1:
    raise ValueError(f"tiles {tiles}: num_stages={tiles.num_stages} must be at least 1.")
  return tiles


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """``"jax"`` or ``"pallas"`` for ``impl`` on ``backend`` (default: JAX's default backend)."""
  if impl not in IMPLS:
    raise ValueError(f"fused implementation must be one of {IMPLS}, got {impl!r}.")
  if impl != "auto":
    return impl
  return "pallas" if (backend or jax.default_backend()) == "gpu" else "jax"


def _preactivation(x: Array, w: Array, b: Array, precision) -> Array:
  return jnp.matmul(x, w, precision=precision) + b


def _round_up(v: int, m: int) -> int:
  return -(-v // m) * m


def _interpret() -> bool:
  """Whether the kernel runs in Pallas's interpret mode: everywhere but on a GPU."""
  return jax.default_backend() != "gpu"


def _pallas_tiles(
    x: Array,
    w: Array,
    b: Array,
    epilogue,
    precision,
    tiles: Tiles,
    extra=(),
    extra_out: bool = False,
) -> list[Array]:
  """A tiled Pallas matmul ``x w + b`` (2-D ``x``) whose result goes through ``epilogue``.

  ``epilogue(z, *extra_tiles)`` gets a ``(tiles.rows, tiles.cols)`` float32
  tile of the pre-activation and the same tile of each array in ``extra``
  (``(rows, width)`` each), and returns the output tile, or with
  ``extra_out=True`` the output tile and a ``(1, tiles.cols)`` row that is
  written per row block (a second output of shape ``(row blocks, width)``).
  Zero padding makes any shape a tile multiple: padded inputs add 0 to every
  dot product, padded extras are 0, and padding is cut off the outputs.
  """
  # Imported on use: only this path needs them.
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu

  rows, k = x.shape
  n = w.shape[1]
  bm, bn, bk = tiles.rows, tiles.cols, tiles.k
  rp, np_, kp = _round_up(rows, bm), _round_up(n, bn), _round_up(k, bk)
  xp = jnp.pad(x, ((0, rp - rows), (0, kp - k)))
  wp = jnp.pad(w, ((0, kp - k), (0, np_ - n)))
  bp = jnp.pad(b, (0, np_ - n)).reshape(1, np_)
  extras = [jnp.pad(e, ((0, rp - rows), (0, np_ - n))) for e in extra]

  def kernel(x_ref, w_ref, b_ref, *refs):
    def body(i, acc):
      xs = x_ref[:, pl.ds(i * bk, bk)]
      ws = w_ref[pl.ds(i * bk, bk), :]
      return acc + jnp.dot(xs, ws, precision=precision, preferred_element_type=jnp.float32)

    acc = lax.fori_loop(0, kp // bk, body, jnp.zeros((bm, bn), jnp.float32))
    ins, outs = refs[: len(extras)], refs[len(extras) :]
    result = epilogue(acc + b_ref[...], *(r[...] for r in ins))
    if extra_out:
      outs[0][...] = result[0].astype(outs[0].dtype)
      outs[1][...] = result[1].astype(outs[1].dtype)
    else:
      outs[0][...] = result.astype(outs[0].dtype)

  tile = pl.BlockSpec((bm, bn), lambda i, j: (i, j))
  out_shape = [jax.ShapeDtypeStruct((rp, np_), x.dtype)]
  out_specs = [tile]
  if extra_out:
    out_shape.append(jax.ShapeDtypeStruct((rp // bm, np_), jnp.float32))
    out_specs.append(pl.BlockSpec((1, bn), lambda i, j: (i, j)))
  outs = pl.pallas_call(
      kernel,
      out_shape=out_shape,
      grid=(rp // bm, np_ // bn),
      in_specs=[
          pl.BlockSpec((bm, kp), lambda i, j: (i, 0)),
          pl.BlockSpec((kp, bn), lambda i, j: (0, j)),
          pl.BlockSpec((1, bn), lambda i, j: (0, j)),
          *([tile] * len(extras)),
      ],
      out_specs=out_specs,
      interpret=_interpret(),
      # Triton's compiler parameters select the Triton lowering: JAX's default
      # GPU lowering (Mosaic GPU) has no dot_general for this kernel's layout
      # (seen by exporting it for CUDA, tests/test_fused.py).
      compiler_params=plgpu.CompilerParams(num_warps=tiles.num_warps, num_stages=tiles.num_stages),
  )(xp, wp, bp, *extras)
  # The padding off: the main output's rows and units, the per-block rows' units.
  return [outs[0][:rows, :n], *(o[:, :n] for o in outs[1:])]


def _pallas_forward(x: Array, w: Array, b: Array, omega: float, precision, tiles: Tiles) -> Array:
  """``sin(omega (x w + b))`` for 2-D ``x``."""
  return _pallas_tiles(x, w, b, lambda z: jnp.sin(omega * z), precision, tiles)[0]


def _pallas_backward(
    x: Array, w: Array, b: Array, g: Array, omega: float, precision, tiles: Tiles
) -> tuple[Array, Array]:
  """The gradient at the pre-activation, ``g omega cos(omega z)``, and the bias gradient."""

  def epilogue(z, g_tile):
    gz = g_tile * (omega * jnp.cos(omega * z))
    # Each row block's column sums: a (1, tiles.cols) row of the bias gradient.
    return gz, jnp.sum(gz, axis=0, keepdims=True)

  gz, partial_db = _pallas_tiles(x, w, b, epilogue, precision, tiles, extra=(g,), extra_out=True)
  return gz, partial_db.sum(axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7))
def _dense_sine(
    x: Array, w: Array, b: Array, omega: float, impl: str, precision, fast: bool, tiles: Tiles
) -> Array:
  if impl == "pallas":
    y = _pallas_forward(x.reshape(-1, x.shape[-1]), w, b, omega, precision, tiles)
    return y.reshape(*x.shape[:-1], w.shape[1])
  sin = fastmath.fast_sin if fast else jnp.sin
  return sin(omega * _preactivation(x, w, b, precision))


def _dense_sine_fwd(x, w, b, omega, impl, precision, fast, tiles):
  # The residuals are the layer's inputs only: no (points x width) array.
  return _dense_sine(x, w, b, omega, impl, precision, fast, tiles), (x, w, b)


def _dense_sine_bwd(omega, impl, precision, fast, tiles, residuals, g):
  x, w, b = residuals
  x2 = x.reshape(-1, x.shape[-1])
  g2 = g.reshape(-1, g.shape[-1])
  if impl == "pallas":
    gz2, db = _pallas_backward(x2, w, b, g2, omega, precision, tiles)
  else:
    z = _preactivation(x2, w, b, precision)  # recomputed, not stored
    cos = fastmath.fast_cos if fast else jnp.cos
    gz2 = g2 * (omega * cos(omega * z))
    db = gz2.sum(axis=0)
  dx = jnp.matmul(gz2, w.T, precision=precision).reshape(x.shape)
  dw = jnp.matmul(x2.T, gz2, precision=precision)
  return dx, dw.astype(w.dtype), db.astype(b.dtype)


_dense_sine.defvjp(_dense_sine_fwd, _dense_sine_bwd)


def dense_sine(
    x: Array,
    kernel: Array,
    bias: Array,
    omega: float,
    *,
    impl: str = "auto",
    precision: lax.Precision | str | None = None,
    fast: bool = False,
    tiles: Tiles | str | None = None,
) -> Array:
  """``sin(omega * (x @ kernel + bias))``, recomputing the pre-activation for gradients.

  Args:
    x: inputs ``(..., fan_in)``, real.
    kernel: ``(fan_in, width)``.
    bias: ``(width,)``.
    omega: the sine's frequency.
    impl: ``"auto"``, ``"jax"`` or ``"pallas"`` (see the module docstring).
    precision: the matmuls' precision (``None``: JAX's default, TF32 on
      recent NVIDIA GPUs; ``"highest"``: full float32).
    fast: the ``"jax"`` implementation takes the sine and cosine from
      :mod:`nfscale.fastmath` (the CPU's fast float32 sine, as ``Sine(fast=True)``);
      the Pallas kernels always use the device's own sine, which on a GPU is
      already fast.
    tiles: the Pallas kernels' :class:`Tiles` (or its string form; ``None``:
      :data:`DEFAULT_TILES`). Tiles change speed only, not values beyond
      float rounding.

  Returns:
    ``(..., width)``.

  Raises:
    ValueError: a complex input, mismatched shapes, an unknown ``impl`` or bad ``tiles``.
  """
  if any(jnp.iscomplexobj(a) for a in (x, kernel, bias)):
    raise ValueError("dense_sine is for real layers; complex fields (WIRE) use the plain path.")
  if kernel.ndim != 2 or x.shape[-1] != kernel.shape[0] or bias.shape != kernel.shape[1:]:
    raise ValueError(
        f"shapes do not chain: x {x.shape}, kernel {kernel.shape}, bias {bias.shape} "
        "(need x (..., k), kernel (k, n), bias (n,))."
    )
  if isinstance(precision, str):
    names = {"default": None, "high": lax.Precision.HIGH, "highest": lax.Precision.HIGHEST}
    if precision.lower() not in names:
      raise ValueError(f"precision must be one of {tuple(names)}, got {precision!r}.")
    precision = names[precision.lower()]
  tiles = as_tiles(tiles)
  return _dense_sine(
      x, kernel, bias, float(omega), resolve_impl(impl), precision, bool(fast), tiles
  )
