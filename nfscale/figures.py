"""Figures of the super-resolution and occupancy tasks: titled image panels, seed tables.

Written as PNG through :mod:`nfscale.plots` (no pyplot, no display, no GPU).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nfscale import plots, tables


def panel_grid(
    panels: Sequence[tuple[np.ndarray, str]], path: str, ncols: int = 4, panel_size: float = 2.8
) -> str:
  """Images in a grid, each with its title (gray for one channel, RGB for three).

  Args:
    panels: ``(image, title)`` pairs; images ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``
      with values in [0, 1].
    path: PNG path (written atomically by :func:`nfscale.plots.save_figure`).
    ncols: panels per row.
    panel_size: inches per panel.

  Returns:
    ``path``.

  >>> import os, tempfile
  >>> out = os.path.join(tempfile.mkdtemp(), "p.png")
  >>> panel_grid([(np.zeros((4, 4)), "a"), (np.ones((4, 4, 3)), "b")], out) == out
  True
  """
  ncols = max(1, min(ncols, len(panels)))
  nrows = -(-len(panels) // ncols)
  fig, axes = plots.subplots(
      nrows, ncols, figsize=(panel_size * ncols, (panel_size + 0.3) * nrows), squeeze=False
  )
  for ax in axes.ravel():
    ax.axis("off")
  for ax, (img, title) in zip(axes.ravel(), panels):
    img = np.clip(np.asarray(img, np.float32), 0, 1)
    if img.ndim == 3 and img.shape[-1] == 1:
      img = img[..., 0]
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
  return plots.save_figure(fig, path)


def safe_name(label: str) -> str:
  """A label as a file-name fragment (letters, digits, ``._-``).

  >>> safe_name("init1 s0 lr0.001")
  'init1_s0_lr0.001'
  """
  return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label)


def seed_table(
    rows: Sequence[dict],
    metrics: Sequence[str],
    reference: dict[str, Sequence[float]] | None = None,
    reference_names: Sequence[str] = (),
) -> str:
  """Per scheme (and learning rate): each metric's mean, and its min-max over seeds.

  Args:
    rows: ``results.json`` member rows (``scheme``, ``lr``, ``seed`` and the metrics), from
      one or more runs.
    metrics: the metric keys to show.
    reference: per scheme, numbers to print beside ours (e.g. the paper's).
    reference_names: their column headers.

  Returns:
    A markdown table, schemes in first-seen order.

  >>> rows = [{"scheme": "init1", "lr": 0.1, "seed": s, "iou": v}
  ...         for s, v in enumerate([0.8, 0.9, 0.85])]
  >>> print(seed_table(rows, ["iou"], {"init1": [0.89]}, ["paper IoU"]).splitlines()[2])
  | init1 | 3 | 0.850 [0.800, 0.900] | 0.89 |
  """
  reference = reference or {}
  groups: dict[tuple[str, float], list[dict]] = {}
  for r in rows:
    groups.setdefault((r["scheme"], r["lr"]), []).append(r)
  lrs = {lr for _, lr in groups}
  header = ["scheme"] + (["lr"] if len(lrs) > 1 else []) + ["seeds"] + list(metrics)
  header += list(reference_names)
  out = []
  for (scheme, lr), rs in groups.items():
    cells = [scheme] + ([f"{lr:g}"] if len(lrs) > 1 else []) + [str(len(rs))]
    for m in metrics:
      vals = np.array([np.nan if r.get(m) is None else r[m] for r in rs], float)
      if len(vals) > 1:
        cells.append(f"{np.mean(vals):.3f} [{np.min(vals):.3f}, {np.max(vals):.3f}]")
      else:
        cells.append(f"{vals[0]:.3f}")
    cells += [f"{v:g}" for v in reference.get(scheme, [])] or ["-"] * len(reference_names)
    out.append(cells)
  return tables.markdown_rows(header, out)
