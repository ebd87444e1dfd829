"""SIREN layers ``sin(omega (x W + b))`` that keep no pre-activation for the backward pass.

Why: in a sine field's training step every hidden layer writes its ``(points,
width)`` pre-activation (or the sine and cosine of it) to memory in the forward
pass and reads it back in the backward pass, and the backward pass writes and
reads the gradient at every layer's output. On a GPU those elementwise passes,
not the matmuls, are the likely bound of the step (see docs/benchmarks.md).
:func:`sine_mlp` takes a field's sine layers and its output layer as one unit:
it saves only each layer's input and the weights, recomputes the
pre-activation in the backward pass (one extra matmul per layer, which a GPU
has to spare), and with the Pallas kernels computes the gradient at a hidden
layer's output inside the kernel that uses it. :func:`dense_sine` is one layer.

Two implementations, one contract (same values up to float rounding):

* ``"jax"``: plain ``jax.numpy`` under a ``jax.custom_vjp``. Runs everywhere.
* ``"pallas"``: two Pallas kernels, tiled matmuls whose epilogues work on the
  pre-activation while it is still on the chip. The forward kernel adds the
  bias and takes the sine. The backward kernel of layer ``l`` recomputes the
  pre-activation ``z`` from the layer's input, computes the gradient at the
  layer's output ``g = g_z_next W_next^T`` as a second product in the same
  tile, and writes only ``g * omega * cos(omega z)``, with each row block's
  partial bias gradient; the weight-gradient matmuls are left to XLA.
  Contractions over fewer than :data:`MIN_DOT_K` inputs (the coordinates, a
  3-wide output) are multiply-adds, exact in float32. They compile for GPUs
  (Triton); on other backends they run in Pallas's interpret mode, which is
  slow and exists to test the kernels.

``"auto"`` is ``"pallas"`` on a GPU (while JAX keeps Pallas's Triton backend, which
it has deprecated) and ``"jax"`` elsewhere. The kernels' speed
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

import contextlib
import contextvars
import functools
import re
from collections.abc import Sequence
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


def _triton():
  """Pallas's Triton backend module, or ``None`` in a JAX that no longer has it.

  JAX 0.11 deprecates it in favour of Mosaic GPU and says it will be removed.
  """
  try:
    from jax.experimental.pallas import triton  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return triton


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """``"jax"`` or ``"pallas"`` for ``impl`` on ``backend`` (default: JAX's default backend).

  ``"auto"`` is ``"pallas"`` on a GPU while this JAX has Pallas's Triton backend,
  else ``"jax"``.
  """
  if impl not in IMPLS:
    raise ValueError(f"fused implementation must be one of {IMPLS}, got {impl!r}.")
  if impl != "auto":
    return impl
  on_gpu = (backend or jax.default_backend()) == "gpu"
  return "pallas" if on_gpu and _triton() is not None else "jax"


def _round_up(v: int, m: int) -> int:
  return -(-v // m) * m


#: Contractions over fewer inputs than this are multiply-adds in the kernels,
#: not dots: Triton's dot needs 16, and padding a 2-input first layer or a
#: 3-wide output layer to 16 costs registers (spills, seen in Triton's
#: compile for sm_90) for zeros.
MIN_DOT_K = 16


def _k_step(k: int, bk: int) -> int:
  """The contraction step for ``k`` inputs: ``bk``, or for fewer inputs all of
  them, padded to a power of two (block shapes must be powers of two)."""
  return bk if k >= bk else 1 << (k - 1).bit_length()


#: Set by :func:`lowering_for_gpu`: the kernels lower for a GPU on any backend.
_LOWER_FOR_GPU = contextvars.ContextVar("nfscale_fused_lower_for_gpu", default=False)


def _interpret() -> bool:
  """Whether the kernel runs in Pallas's interpret mode: everywhere but on a GPU."""
  return not _LOWER_FOR_GPU.get() and jax.default_backend() != "gpu"


@contextlib.contextmanager
def lowering_for_gpu(device_kind: str = "NVIDIA H100", num_cores: int = 132):
  """Within it, the kernels lower for an NVIDIA GPU even on a machine without one.

  For ``jax.export(..., platforms=["cuda"])`` on a CPU: the kernels skip
  interpret mode, and an abstract mesh tells Pallas the target GPU (recent JAX
  reads the compute capability from it; JAX 0.10 falls back to sm_90). Inside,
  JAX computes nothing eagerly, so make the arguments before entering.

  Args:
    device_kind: the GPU's ``device_kind`` (default: an H100, compute capability 9.0).
    num_cores: its streaming multiprocessors.
  """
  from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

  device = AbstractDevice(device_kind=device_kind, num_cores=num_cores, platform="cuda")
  token = _LOWER_FOR_GPU.set(True)
  try:
    with use_abstract_mesh(AbstractMesh((1,), ("gpu",), abstract_device=device)):
      yield
  finally:
    _LOWER_FOR_GPU.reset(token)


def _tile_matmul(a_ref, m_ref, steps: int, bk: int, precision, shape) -> Array:
  """``a @ m`` of a kernel's ``(rows, K)`` and ``(K, cols)`` blocks, ``bk`` at a time.

  Under :data:`MIN_DOT_K` inputs (one step), the product is written as
  multiply-adds of a column of ``a`` and a row of ``m``: exact in float32, as
  the plain layers' small fan-in path is.
  """
  from jax.experimental import pallas as pl  # imported on use: only kernels need it

  if bk < MIN_DOT_K:
    acc = jnp.zeros(shape, jnp.float32)
    for i in range(bk):
      acc = acc + a_ref[:, i : i + 1] * m_ref[i : i + 1, :]
    return acc

  def body(i, acc):
    a = a_ref[:, pl.ds(i * bk, bk)]
    m = m_ref[pl.ds(i * bk, bk), :]
    return acc + jnp.dot(a, m, precision=precision, preferred_element_type=jnp.float32)

  return lax.fori_loop(0, steps, body, jnp.zeros(shape, jnp.float32))


def _pallas_tiles(
    x: Array,
    w: Array,
    b: Array,
    epilogue,
    precision,
    tiles: Tiles,
    operand=None,
    block_sums: bool = False,
    name: str = "fused_sine_forward",
) -> list[Array]:
  """A tiled Pallas matmul ``x w + b`` (2-D ``x``) whose result goes through ``epilogue``.

  ``epilogue(z)`` gets a ``(tiles.rows, tiles.cols)`` float32 tile of the
  pre-activation ``z`` and returns the output tile. With ``operand``, it is
  ``epilogue(z, g)`` with the same tile of a second ``(rows, width)`` array
  ``g``: ``operand`` is that array, read tile by tile, or a triple ``(a, m,
  precision)`` whose product ``g = a @ m`` the kernel computes tile by tile
  next to ``z`` (it is never written to memory). With ``block_sums=True`` the
  epilogue returns the output tile and a ``(1, tiles.cols)`` row, written per
  row block (a second output of shape ``(row blocks, width)``). ``name`` names the
  kernel in profiles (``nfscale.profiles`` counts ``fused_sine`` kernels apart).
  Zero padding makes any shape a tile multiple: padded inputs add 0 to every
  dot product, padded operands are 0, and padding is cut off the outputs.
  """
  # Imported on use: only this path needs them.
  from jax.experimental import pallas as pl

  plgpu = _triton()
  if plgpu is None:
    raise RuntimeError(
        f"fused='pallas' needs Pallas's Triton backend, which JAX {jax.__version__} no "
        "longer has; use fused='jax' (or 'auto', which falls back to it)."
    )

  rows, k = x.shape
  n = w.shape[1]
  bm, bn = tiles.rows, tiles.cols
  bk = _k_step(k, tiles.k)
  rp, np_, kp = _round_up(rows, bm), _round_up(n, bn), _round_up(k, bk)
  tile = pl.BlockSpec((bm, bn), lambda i, j: (i, j))
  args = [
      jnp.pad(x, ((0, rp - rows), (0, kp - k))),
      jnp.pad(w, ((0, kp - k), (0, np_ - n))),
      jnp.pad(b, (0, np_ - n)).reshape(1, np_),
  ]
  in_specs = [
      pl.BlockSpec((bm, kp), lambda i, j: (i, 0)),
      pl.BlockSpec((kp, bn), lambda i, j: (0, j)),
      pl.BlockSpec((1, bn), lambda i, j: (0, j)),
  ]
  product = isinstance(operand, tuple)
  if product:
    a, m, operand_precision = operand
    k2 = a.shape[1]
    bk2 = _k_step(k2, tiles.k)
    kp2 = _round_up(k2, bk2)
    args += [jnp.pad(a, ((0, rp - rows), (0, kp2 - k2))), jnp.pad(m, ((0, kp2 - k2), (0, np_ - n)))]
    in_specs += [
        pl.BlockSpec((bm, kp2), lambda i, j: (i, 0)),
        pl.BlockSpec((kp2, bn), lambda i, j: (0, j)),
    ]
  elif operand is not None:
    args.append(jnp.pad(operand, ((0, rp - rows), (0, np_ - n))))
    in_specs.append(tile)

  def kernel(x_ref, w_ref, b_ref, *refs):
    z = _tile_matmul(x_ref, w_ref, kp // bk, bk, precision, (bm, bn)) + b_ref[...]
    if product:
      g = _tile_matmul(refs[0], refs[1], kp2 // bk2, bk2, operand_precision, (bm, bn))
      outs, result = refs[2:], epilogue(z, g)
    elif operand is not None:
      outs, result = refs[1:], epilogue(z, refs[0][...])
    else:
      outs, result = refs, epilogue(z)
    for out, value in zip(outs, result if block_sums else (result,)):
      out[...] = value.astype(out.dtype)

  out_shape = [jax.ShapeDtypeStruct((rp, np_), x.dtype)]
  out_specs = [tile]
  # What the kernel does, for XLA's cost model and the records' xla_cost: its
  # products, one sine or cosine per output, and each operand and output once.
  flops = 2 * rp * np_ * (kp + (kp2 if product else 0))
  nbytes = sum(a.size * a.dtype.itemsize for a in args) + rp * np_ * x.dtype.itemsize
  if block_sums:
    out_shape.append(jax.ShapeDtypeStruct((rp // bm, np_), jnp.float32))
    out_specs.append(pl.BlockSpec((1, bn), lambda i, j: (i, j)))
  outs = pl.pallas_call(
      kernel,
      out_shape=out_shape,
      grid=(rp // bm, np_ // bn),
      in_specs=in_specs,
      out_specs=out_specs,
      interpret=_interpret(),
      name=name,
      cost_estimate=pl.CostEstimate(flops=flops, transcendentals=rp * np_, bytes_accessed=nbytes),
      # Triton's compiler parameters select the Triton lowering: JAX's default
      # GPU lowering (Mosaic GPU) has no dot_general for this kernel's layout
      # (seen by exporting it for CUDA, tests/test_fused.py).
      compiler_params=plgpu.CompilerParams(num_warps=tiles.num_warps, num_stages=tiles.num_stages),
  )(*args)
  # The padding off: the main output's rows and units, the per-block rows' units.
  return [outs[0][:rows, :n], *(o[:, :n] for o in outs[1:])]


class _Setup(NamedTuple):
  """What :func:`sine_mlp` is traced with besides the arrays (static under ``jit``)."""

  omega: float
  impl: str
  precision: lax.Precision | None
  fast: bool
  tiles: Tiles
  small_fan_in: int

  def precision_of(self, w: Array) -> lax.Precision | None:
    """A layer's matmul precision: full float32 for a small fan-in (the coordinates)."""
    return lax.Precision.HIGHEST if w.shape[0] <= self.small_fan_in else self.precision


def _matmul(a: Array, m: Array, precision) -> Array:
  return jnp.matmul(a, m, precision=precision)


def _weight_grad(h: Array, gz: Array, precision) -> Array:
  """``h^T gz``, contracting the points of both: no transposed copy of ``h`` (XLA:CPU
  materialises ``h.T`` of a ``matmul(h.T, gz)``, one more pass over the array)."""
  return lax.dot_general(h, gz, (((0,), (0,)), ((), ())), precision=precision)


def _sine_layer(h: Array, w: Array, b: Array, s: _Setup) -> Array:
  """``sin(omega (h w + b))`` for 2-D ``h``, by ``s.impl``."""
  if s.impl == "pallas":
    return _pallas_tiles(h, w, b, lambda z: jnp.sin(s.omega * z), s.precision_of(w), s.tiles)[0]
  sin = fastmath.fast_sin if s.fast else jnp.sin
  return sin(s.omega * (_matmul(h, w, s.precision_of(w)) + b))


def _grad_preactivation(h: Array, w: Array, b: Array, g, s: _Setup) -> tuple[Array, Array]:
  """A sine layer's gradient at its pre-activation ``z = h w + b``, and its bias gradient.

  ``g`` is the gradient at the layer's output: an array, or ``(a, m,
  precision)`` for ``a @ m`` (the next layer's input gradient, which the
  Pallas kernel computes tile by tile instead of reading it). ``z`` is
  recomputed from ``h``, never stored.
  """
  if s.impl == "pallas":

    def epilogue(z, g_tile):
      gz = g_tile * (s.omega * jnp.cos(s.omega * z))
      # Each row block's column sums: a (1, tiles.cols) row of the bias gradient.
      return gz, jnp.sum(gz, axis=0, keepdims=True)

    gz, partial_db = _pallas_tiles(
        h,
        w,
        b,
        epilogue,
        s.precision_of(w),
        s.tiles,
        operand=g,
        block_sums=True,
        name="fused_sine_backward",
    )
    return gz, partial_db.sum(axis=0)
  if isinstance(g, tuple):
    g = _matmul(*g)
  cos = fastmath.fast_cos if s.fast else jnp.cos
  gz = g * (s.omega * cos(s.omega * (_matmul(h, w, s.precision_of(w)) + b)))
  return gz, gz.sum(axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _sine_mlp(x: Array, hidden, out, s: _Setup) -> Array:
  return _sine_mlp_fwd(x, hidden, out, s)[0]


def _sine_mlp_fwd(x, hidden, out, s):
  inputs, h = [], x
  for w, b in hidden:
    inputs.append(h)
    h = _sine_layer(h, w, b, s)
  if out is None:
    return h, (inputs, None, hidden, None)
  w_out, b_out = out
  # The residuals: every layer's input (which the plain layers keep too), the
  # top features when an output layer follows, and the params; no
  # pre-activation and no (points x width) array beyond those.
  return _matmul(h, w_out, s.precision_of(w_out)) + b_out, (inputs, h, hidden, out)


def _sine_mlp_bwd(s, residuals, g):
  inputs, top, hidden, out = residuals
  if out is None:
    d_out, g_src = None, g
  else:
    w_out, b_out = out
    p = s.precision_of(w_out)
    d_out = (_weight_grad(top, g, p).astype(w_out.dtype), g.sum(axis=0).astype(b_out.dtype))
    # The gradient at the top features, g w_out^T, is left as a product: the
    # top layer's backward kernel computes it tile by tile.
    g_src = (g, w_out.T, p)
  d_hidden = []
  for (w, b), h in zip(hidden[::-1], inputs[::-1]):
    gz, db = _grad_preactivation(h, w, b, g_src, s)
    p = s.precision_of(w)
    d_hidden.append((_weight_grad(h, gz, p).astype(w.dtype), db.astype(b.dtype)))
    g_src = (gz, w.T, p)  # the gradient at h, for the layer below
  dx = _matmul(*g_src)  # dead code unless the input's gradient is used
  return dx.astype(inputs[0].dtype), tuple(d_hidden[::-1]), d_out


_sine_mlp.defvjp(_sine_mlp_fwd, _sine_mlp_bwd)


def _as_precision(precision: lax.Precision | str | None) -> lax.Precision | None:
  if isinstance(precision, str):
    names = {"default": None, "high": lax.Precision.HIGH, "highest": lax.Precision.HIGHEST}
    if precision.lower() not in names:
      raise ValueError(f"precision must be one of {tuple(names)}, got {precision!r}.")
    return names[precision.lower()]
  return precision


def sine_mlp(
    x: Array,
    hidden: Sequence[tuple[Array, Array]],
    out: tuple[Array, Array] | None,
    omega: float,
    *,
    impl: str = "auto",
    precision: lax.Precision | str | None = None,
    fast: bool = False,
    tiles: Tiles | str | None = None,
    small_fan_in: int = 4,
) -> Array:
  """Sine layers ``h <- sin(omega (h W + b))``, then a linear output layer, as one unit.

  The forward pass keeps each layer's input (as the plain layers do) but no
  pre-activation. The backward pass recomputes each pre-activation from the
  layer's input, and with the Pallas kernels it also never writes the gradient
  at a hidden layer's output: the kernel that takes a layer's backward step
  computes ``(gradient at the next layer's pre-activation) @ W_next^T`` tile by
  tile, next to the recomputed pre-activation, and writes only the gradient
  at its own pre-activation. Per hidden ``(points, width)`` array a training
  step then moves 7 passes of memory instead of 11 (docs/benchmarks.md).

  Args:
    x: inputs ``(..., fan_in)``, real.
    hidden: ``(kernel, bias)`` of each sine layer, ``(fan_in, width)`` and
      ``(width,)``; at least one.
    out: ``(kernel, bias)`` of the linear output layer, or ``None`` to return
      the last sine layer's output.
    omega: the sines' frequency.
    impl: ``"auto"``, ``"jax"`` or ``"pallas"`` (see the module docstring).
    precision: the matmuls' precision (``None``: JAX's default or the
      enclosing ``jax.default_matmul_precision`` scope, TF32 on recent NVIDIA
      GPUs; ``"highest"``: full float32).
    fast: the ``"jax"`` implementation takes the sine and cosine from
      :mod:`nfscale.fastmath` (the CPU's fast float32 sine, as
      ``Sine(fast=True)``); the Pallas kernels always use the device's own
      sine, which on a GPU is already fast.
    tiles: the Pallas kernels' :class:`Tiles` (or its string form; ``None``:
      :data:`DEFAULT_TILES`). Tiles change speed only, not values beyond
      float rounding.
    small_fan_in: layers with at most this many inputs (a field's coordinates)
      compute in full float32 whatever ``precision`` says, as the plain
      layers' multiply-adds do (``nfscale.models.SMALL_FAN_IN``).

  Returns:
    ``(..., out width)``, or ``(..., last hidden width)`` if ``out`` is ``None``.

  Raises:
    ValueError: a complex input, no sine layer, shapes that do not chain, an
      unknown ``impl`` or ``precision``, or bad ``tiles``.

  Example:
    >>> x = jnp.linspace(-1, 1, 8, dtype=jnp.float32).reshape(4, 2)
    >>> w1, w2 = jnp.full((2, 3), 0.05), jnp.full((3, 1), 0.5)
    >>> b1, b2 = jnp.zeros(3), jnp.zeros(1)
    >>> y = sine_mlp(x, [(w1, b1)], (w2, b2), 30.0, impl="jax")
    >>> bool(jnp.allclose(y, jnp.sin(30 * (x @ w1 + b1)) @ w2 + b2, atol=1e-6))
    True
  """
  layers = list(hidden) + ([] if out is None else [out])
  if not hidden:
    raise ValueError("sine_mlp needs at least one sine layer (hidden is empty).")
  if any(jnp.iscomplexobj(a) for layer in layers for a in (*layer, x)):
    raise ValueError(
        "fused sine layers are for real layers; complex fields (WIRE) use the plain path."
    )
  fan_in = x.shape[-1]
  for kernel, bias in layers:
    if kernel.ndim != 2 or kernel.shape[0] != fan_in or bias.shape != kernel.shape[1:]:
      raise ValueError(
          f"shapes do not chain: input width {fan_in}, kernel {kernel.shape}, bias {bias.shape} "
          "(need kernel (fan_in, n), bias (n,), each fan_in the previous n)."
      )
    fan_in = kernel.shape[1]
  setup = _Setup(
      float(omega),
      resolve_impl(impl),
      _as_precision(precision),
      bool(fast),
      as_tiles(tiles),
      int(small_fan_in),
  )
  hidden = tuple((kernel, bias) for kernel, bias in hidden)
  out = None if out is None else tuple(out)
  y = _sine_mlp(x.reshape(-1, x.shape[-1]), hidden, out, setup)
  return y.reshape(*x.shape[:-1], fan_in)


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
    small_fan_in: int = 4,
) -> Array:
  """One sine layer, ``sin(omega * (x @ kernel + bias))``: :func:`sine_mlp` of it alone.

  Its gradient recomputes the pre-activation instead of storing it; the
  gradient at its output is an array here (a :func:`sine_mlp` of several
  layers also saves writing that). Arguments as in :func:`sine_mlp`.

  Returns:
    ``(..., width)``.

  Raises:
    ValueError: a complex input, mismatched shapes, an unknown ``impl`` or bad ``tiles``.
  """
  return sine_mlp(
      x,
      [(kernel, bias)],
      None,
      omega,
      impl=impl,
      precision=precision,
      fast=fast,
      tiles=tiles,
      small_fan_in=small_fan_in,
  )
