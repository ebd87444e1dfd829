"""Several last-hidden widths in one compiled program: width buckets and unit masks.

A scaling sweep trains the same architecture at many widths of the last hidden
layer. Each distinct width is a new array shape and therefore a new XLA
compilation (seconds on a GPU, where the training itself may take less). This
module trains members of different widths side by side in one vmapped
ensemble: every member is allocated at a common *bucket* width ``B`` and the
units beyond its own width ``w <= B`` are masked out.

How a member of width ``w`` is held at bucket width ``B``:

* its weights are drawn by the ordinary initializer AT WIDTH ``w`` (so every
  scheme's fan-in / fan-out formula, e.g. init1's ``1/sqrt(w)`` output law,
  sees the true width) and then zero-padded to ``B`` (:func:`embed`);
* a 0/1 unit mask of length ``B`` travels with the params (:func:`init_masked`
  puts it under ``"mask"``, beside the network's variables under ``"net"``);
* the loss multiplies the last hidden layer's kernel columns and bias, and
  the output kernel's rows, by the mask before the forward pass
  (:func:`masked_loss`). A masked unit therefore has pre-activation exactly
  0 and contributes exactly 0 to the output, whatever its activation gives at
  0 (``sinc(0) = 1``), and the chain rule through the product gives its
  weights a gradient of exactly 0. The mask itself sits behind
  ``stop_gradient``, so it, too, has gradient 0.

Zero gradients leave a parameter exactly where it is under plain gradient
descent (``p - lr * 0``), momentum and Adam (both moments stay 0 and the update
is ``0 / (0 + eps) = 0``), so the padding stays 0 and the mask stays 0/1 for
the whole run. The real units see exactly the values and gradients of the
unpadded network except for floating-point reassociation in the output
layer's sum over units (it also adds the padded units' exact zeros), so a
masked member trains like the unmasked network of its width up to float
rounding; ``tests/test_widths.py`` checks this for gradient descent and Adam.

On an accelerator the padded units cost compute that would otherwise idle;
on a CPU they cost time in proportion, so buckets should be a few widths
apart (:func:`bucket_widths` uses the search's geometric ladder).

Example:
  >>> import jax, numpy as np
  >>> from nfscale import models, train, widths
  >>> field = models.make_field((32,), 1, activation="sinc")
  >>> x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
  >>> members = [train.Member("init1", 0, 0.1), train.Member("init1", 0, 0.1)]
  >>> params = widths.init_masked(field, members, [5, 32], x[:1])
  >>> params["net"]["params"]["dense_1"]["kernel"].shape, params["mask"].sum(axis=1).tolist()
  ((2, 32, 1), [5.0, 32.0])
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import scaling, train

__all__ = [
    "bucket_widths",
    "bucket_for",
    "group_by_bucket",
    "embed",
    "extract",
    "unit_mask",
    "apply_mask",
    "masked_loss",
    "init_masked",
    "extract_member",
    "with_last_width",
]

PyTree = Any
LossFn = Callable[[PyTree, Mapping[str, jax.Array]], jax.Array]

#: Keys of a masked member's params.
NET, MASK = "net", "mask"


def bucket_widths(start: int, max_width: int, growth: float = 2.0) -> list[int]:
  """The bucket widths of a search: its geometric ladder ``start, start*growth, ..., max_width``.

  Every width the search can try lies in ``[1, max_width]``, so the smallest
  bucket at or above it (:func:`bucket_for`) exists, and a width between two
  rungs wastes less than a factor ``growth`` of compute.

  Args:
    start: the search's first width.
    max_width: its largest width (always the last bucket).
    growth: the ladder's ratio (> 1).

  Returns:
    Increasing bucket widths.

  Example:
    >>> bucket_widths(16, 100)
    [16, 32, 64, 100]
  """
  if not 1 <= start <= max_width:
    raise ValueError(f"need 1 <= start <= max_width, got start={start}, max_width={max_width}.")
  if not growth > 1:
    raise ValueError(f"growth must be > 1, got growth={growth}.")
  return scaling._ladder(int(start), int(max_width), float(growth))  # pylint: disable=protected-access


def bucket_for(width: int, buckets: Sequence[int]) -> int:
  """The smallest bucket that holds ``width``.

  Raises:
    ValueError: if ``width`` exceeds the largest bucket or is not positive.

  Example:
    >>> bucket_for(17, [16, 32, 64])
    32
  """
  buckets = sorted(int(b) for b in buckets)
  if width < 1 or not buckets or width > buckets[-1]:
    raise ValueError(f"width {width} fits no bucket of {buckets}.")
  return buckets[bisect.bisect_left(buckets, int(width))]


def group_by_bucket(width_list: Sequence[int], buckets: Sequence[int]) -> dict[int, list[int]]:
  """Indices of ``width_list`` grouped by their bucket, buckets ascending.

  Example:
    >>> group_by_bucket([20, 16, 40, 30], [16, 32, 64])
    {16: [1], 32: [0, 3], 64: [2]}
  """
  out: dict[int, list[int]] = {}
  for i, w in enumerate(width_list):
    out.setdefault(bucket_for(int(w), buckets), []).append(i)
  return dict(sorted(out.items()))


def _layer_names(num_hidden: int) -> tuple[str, str]:
  if num_hidden < 1:
    raise ValueError(f"masking needs at least one hidden layer, got num_hidden={num_hidden}.")
  return f"dense_{num_hidden - 1}", f"dense_{num_hidden}"


def _layers(params: PyTree, num_hidden: int) -> tuple[Mapping, Mapping]:
  hid, out = _layer_names(num_hidden)
  tree = params.get("params") if isinstance(params, Mapping) else None
  if tree is None or hid not in tree or out not in tree:
    raise ValueError(
        f"params must be NeuralField variables holding params['params']['{hid}'] "
        f"and ['{out}'] (a field with {num_hidden} hidden layers)."
    )
  return tree[hid], tree[out]


def _replace_layers(
    params: PyTree, num_hidden: int, hid_layer: Mapping, out_layer: Mapping
) -> PyTree:
  hid, out = _layer_names(num_hidden)
  tree = dict(params["params"])
  tree[hid] = hid_layer
  tree[out] = out_layer
  new = dict(params)
  new["params"] = tree
  return new


def _xp(a: Any) -> Any:
  """NumPy for NumPy arrays (no compilation), ``jnp`` for JAX arrays and tracers."""
  return np if isinstance(a, np.ndarray) else jnp


def embed(params: PyTree, bucket: int, num_hidden: int) -> PyTree:
  """Zero-pads params from their true last-hidden width to ``bucket``.

  Args:
    params: NeuralField variables whose last hidden layer has width
      ``w <= bucket``: one member's, or members stacked on leading axes.
      NumPy leaves are padded with NumPy (no compilation), others with
      ``jnp``.
    bucket: the padded width.
    num_hidden: number of hidden layers of the field.

  Returns:
    Variables of the same field at last-hidden width ``bucket``: the last
    hidden kernel's columns and bias, and the output kernel's rows, beyond
    ``w`` are 0; every other leaf is unchanged.

  Raises:
    ValueError: if ``w > bucket`` or the params are not a NeuralField's.

  Example:
    >>> from nfscale import models
    >>> field = models.make_field((3,), 1)
    >>> p = embed(field.init(jax.random.key(0), np.zeros((1, 1))), 5, 1)
    >>> np.asarray(p["params"]["dense_1"]["kernel"][3:]).tolist()
    [[0.0], [0.0]]
  """
  hid_layer, out_layer = _layers(params, num_hidden)
  width = int(hid_layer["kernel"].shape[-1])
  if width > bucket:
    raise ValueError(f"cannot embed width {width} into a smaller bucket {bucket}.")

  def pad(a: Any, axis: int) -> Any:
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, bucket - width)
    return _xp(a).pad(a, widths)

  new_hid = dict(hid_layer)
  new_hid["kernel"] = pad(hid_layer["kernel"], -1)
  if "bias" in hid_layer:
    new_hid["bias"] = pad(hid_layer["bias"], -1)
  new_out = dict(out_layer)
  new_out["kernel"] = pad(out_layer["kernel"], -2)
  return _replace_layers(params, num_hidden, new_hid, new_out)


def extract(params: PyTree, width: int, num_hidden: int) -> PyTree:
  """The inverse of :func:`embed`: one member's params cut back to ``width`` units.

  Example:
    >>> from nfscale import models
    >>> field = models.make_field((3,), 1)
    >>> p = field.init(jax.random.key(0), np.zeros((1, 1)))
    >>> back = extract(embed(p, 8, 1), 3, 1)
    >>> all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(back)))
    True
  """
  hid_layer, out_layer = _layers(params, num_hidden)
  if width > hid_layer["kernel"].shape[-1]:
    raise ValueError(f"width {width} exceeds the padded width {hid_layer['kernel'].shape[-1]}.")
  new_hid = dict(hid_layer)
  new_hid["kernel"] = hid_layer["kernel"][:, :width]
  if "bias" in hid_layer:
    new_hid["bias"] = hid_layer["bias"][:width]
  new_out = dict(out_layer)
  new_out["kernel"] = out_layer["kernel"][:width]
  return _replace_layers(params, num_hidden, new_hid, new_out)


def unit_mask(width_list: Sequence[int], bucket: int) -> np.ndarray:
  """``(len(width_list), bucket)`` float32 masks: 1 on each member's first ``w`` units.

  Example:
    >>> unit_mask([1, 3], 4).tolist()
    [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
  """
  w = np.asarray(width_list, dtype=np.int64)
  if np.any(w < 1) or np.any(w > bucket):
    raise ValueError(f"widths must lie in [1, {bucket}], got {list(width_list)}.")
  return (np.arange(bucket)[None, :] < w[:, None]).astype(np.float32)


def apply_mask(params: PyTree, mask: jax.Array, num_hidden: int) -> PyTree:
  """One member's bucket-width params with the masked units' weights set to 0.

  Multiplies the last hidden kernel's columns and bias, and the output
  kernel's rows, by ``mask``; differentiable (the masked entries get
  gradient 0).
  """
  hid_layer, out_layer = _layers(params, num_hidden)
  mask = mask.astype(jnp.real(hid_layer["kernel"]).dtype)
  new_hid = dict(hid_layer)
  new_hid["kernel"] = hid_layer["kernel"] * mask[None, :]
  if "bias" in hid_layer:
    new_hid["bias"] = hid_layer["bias"] * mask
  new_out = dict(out_layer)
  new_out["kernel"] = out_layer["kernel"] * mask[:, None]
  return _replace_layers(params, num_hidden, new_hid, new_out)


def masked_loss(loss_fn: LossFn, num_hidden: int) -> LossFn:
  """Wraps a bucket-width field's loss to take masked params ``{"net", "mask"}``.

  Args:
    loss_fn: ``(variables, batch, *rest) -> loss`` of the field at bucket
      width (e.g. a task's ``loss_fn`` built for the bucket-width model);
      extra arguments (the engine's rng) and its return value (a scalar, or
      ``(loss, aux)``) pass through unchanged.
    num_hidden: number of hidden layers of the field.

  Returns:
    ``(masked_params, batch, *rest) -> loss`` for :func:`nfscale.train.fit`.
  """

  def loss(params: PyTree, batch: Mapping[str, jax.Array], *args: Any) -> Any:
    # stop_gradient: the mask is data riding along in the params tree; its
    # zero gradient keeps it fixed under SGD, momentum and Adam.
    mask = jax.lax.stop_gradient(params[MASK])
    return loss_fn(apply_mask(params[NET], mask, num_hidden), batch, *args)

  return loss


def with_last_width(model: Any, width: int) -> Any:
  """``model`` with its last hidden layer set to ``width`` (earlier layers kept)."""
  hidden = tuple(model.hidden)
  if not hidden:
    raise ValueError("the model has no hidden layer to resize (hidden=()).")
  return model.clone(hidden=hidden[:-1] + (int(width),))


def init_masked(
    model: Any,
    members: Sequence[train.Member],
    width_list: Sequence[int],
    example_input: Any,
    scheme_params: Mapping[str, Any] | None = None,
    bucket: int | None = None,
) -> PyTree:
  """Stacked masked params: member ``i`` drawn at width ``width_list[i]``, padded to ``bucket``.

  Each member's weights are exactly those :func:`nfscale.train.init_members`
  draws for it at its own width (same scheme, seed and fan-in), zero-padded.

  Args:
    model: a NeuralField; only its last hidden width is replaced.
    members: the ensemble members.
    width_list: one true last-hidden width per member.
    example_input: a coordinate batch to trace shapes, e.g. ``x[:1]``.
    scheme_params: as for :func:`nfscale.train.init_members`.
    bucket: the padded width (default: the largest of ``width_list``).

  Returns:
    ``{"net": variables stacked over members at width bucket, "mask": (M, bucket)}``.

  Raises:
    ValueError: on mismatched lengths or a width outside ``[1, bucket]``.
  """
  if len(members) != len(width_list):
    raise ValueError(
        f"need one width per member, got {len(width_list)} widths for {len(members)} members."
    )
  if not members:
    raise ValueError("members must not be empty.")
  bucket = int(max(width_list) if bucket is None else bucket)
  mask = unit_mask(width_list, bucket)
  num_hidden = len(model.hidden)
  # Drawn per width and padded on the host: eager per-member slicing, padding
  # and stacking would compile programs anew for every width of a search.
  rows, groups = [], []
  for w in dict.fromkeys(int(v) for v in width_list):
    idx = [i for i, v in enumerate(width_list) if int(v) == w]
    host = train.init_members(
        with_last_width(model, w),
        [members[i] for i in idx],
        example_input,
        scheme_params,
        on_host=True,
    )
    rows += idx
    groups.append(embed(host, bucket, num_hidden))
  order = np.argsort(rows)
  # NumPy leaves unless traced (jit, eval_shape): then the trace's arrays.
  net = jax.tree.map(lambda *xs: _xp(xs[0]).concatenate(xs)[order], *groups)
  # A transfer, not jnp.asarray, which compiles an identity program per shape.
  return train.to_device({NET: net, MASK: mask})


def extract_member(params: PyTree, i: int, width: int, num_hidden: int) -> PyTree:
  """Member ``i``'s true-width variables from stacked masked params."""
  return extract(train.unstack(params[NET], i), int(width), num_hidden)
