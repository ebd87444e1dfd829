"""Matplotlib figures of results, written as PNG.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: that needs no display, and importing nfscale leaves the user's
backend alone (a notebook keeps showing its inline plots).
"""

from __future__ import annotations

import io as _stdio
from typing import Any, Sequence

import numpy as np

from nfscale import io


def subplots(*args: Any, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
  """Like ``pyplot.subplots`` but without pyplot's global state (see the module doc)."""
  # matplotlib loads with the first figure, not with nfscale: it is a quarter of a
  # launcher's start (--help, a config error, a run before its first plot).
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top

  fig = mpl_figure.Figure(figsize=figsize)
  return fig, fig.subplots(*args, **kwargs)


def get_cmap(name: str) -> Any:
  """A registered matplotlib colormap by name."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (see subplots)

  return matplotlib.colormaps[name]


def save_figure(fig: Any, path: str) -> str:
  """Renders ``fig`` as PNG and writes it with :func:`nfscale.io.atomic_write_bytes`.

  Rendering goes to memory first, so a figure that fails to render leaves no
  file at all; the write itself is atomic and durable (temp file in the same
  directory, fsync, rename), so a reader never sees half a PNG and a failed
  write leaves the old file and no temp file behind.
  """
  buf = _stdio.BytesIO()
  fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
  io.atomic_write_bytes(path, buf.getvalue())
  return path


def score_ylim(
    values: np.ndarray, diverged: np.ndarray, target: float | None = None
) -> tuple[float, float] | None:
  """The y range of a score plot: the non-diverged members' values and the target.

  Args:
    values: ``(log steps, members)`` scores (NaN allowed).
    diverged: ``(members,)`` flags; those members do not widen the range.
    target: included when given.

  Returns:
    ``(low, high)`` with a small margin, or ``None`` if nothing finite is left.

  Example:
    >>> v = np.array([[5.0, 4.0], [20.0, -90.0]])
    >>> score_ylim(v, np.array([False, True]))
    (4.25, 20.75)
  """
  good = np.asarray(values, float)[:, ~np.asarray(diverged, bool)]
  good = good[np.isfinite(good)].tolist() + ([] if target is None else [float(target)])
  if not good:
    return None
  lo, hi = min(good), max(good)
  pad = max(0.05 * (hi - lo), 0.5)
  return lo - pad, hi + pad


def psnr_curves(
    history: Sequence[dict[str, Any]],
    labels: Sequence[str],
    path: str,
    title: str = "",
    target: float | None = None,
    ylabel: str = "train PSNR (dB)",
    diverged: Sequence[bool] | None = None,
    key: str = "score",
) -> str:
  """The training score (e.g. PSNR) against step, one line per member (the paper's Fig. 1).

  Diverged members are drawn thin and grey, and the y range is set by the
  other members (plus the target), so a blown-up loss does not squash the
  curves that matter; their values beyond the range are clipped.

  Args:
    history: records with ``step`` and per-member lists under ``key``
      (``"score"``; older histories used ``"psnr"``, accepted too).
    labels: one legend label per member.
    path: PNG path.
    title: figure title.
    target: draws the target as a dashed line.
    ylabel: y axis label.
    diverged: per member, whether it diverged.
    key: the history entry plotted.

  Returns:
    ``path``.
  """
  if history and key not in history[0] and "psnr" in history[0]:
    key = "psnr"
  steps = np.array([r["step"] for r in history], float)
  vals = np.array([[np.nan if v is None else v for v in r[key]] for r in history], float).reshape(
      len(history), len(labels)
  )
  bad = np.zeros(len(labels), bool) if diverged is None else np.asarray(diverged, bool)
  fig, ax = subplots(figsize=(7, 4.5))
  cmap = get_cmap("tab10" if len(labels) <= 10 else "tab20")
  for i, label in enumerate(labels):
    if bad[i]:
      ax.plot(steps, vals[:, i], ":", color="0.6", lw=1, label=f"{label} (diverged)")
      continue
    style = "--" if "uniform" in label or "init2" in label else "-"
    # A single logged point is still visible as a marker.
    ax.plot(
        steps,
        vals[:, i],
        style,
        color=cmap(i % cmap.N),
        label=label,
        lw=1.6,
        marker="o" if len(steps) == 1 else None,
    )
  if target is not None:
    ax.axhline(target, color="k", ls=":", lw=1, label=f"target {target:g}")
  ylim = score_ylim(vals, bad, target)
  if ylim is not None:
    ax.set_ylim(*ylim)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, ncol=2)
  return save_figure(fig, path)


def image_grid(
    target: np.ndarray,
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str,
    ncols: int = 5,
) -> str:
  """The target and each member's reconstruction, titled with their PSNR."""
  panels = [(target, "target")] + list(zip(images, titles))
  ncols = min(ncols, len(panels))
  nrows = -(-len(panels) // ncols)
  fig, axes = subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for ax, (img, title) in zip(axes.ravel(), panels):
    img = np.clip(np.asarray(img), 0, 1)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
  return save_figure(fig, path)


def curves_1d(
    x_dense: np.ndarray,
    y_dense: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    preds: Sequence[np.ndarray],
    labels: Sequence[str],
    path: str,
) -> str:
  """A 1-D target with every member's fit."""
  fig, ax = subplots(figsize=(8, 4.5))
  ax.plot(x_dense, y_dense, "k-", lw=2.5, alpha=0.35, label="target")
  ax.plot(x_train, y_train, "k.", ms=4, label="train points")
  cmap = get_cmap("tab10" if len(labels) <= 10 else "tab20")
  for i, (pred, label) in enumerate(zip(preds, labels)):
    ax.plot(x_dense, pred, color=cmap(i % cmap.N), lw=1, label=label)
  ax.set_xlabel("x")
  ax.legend(fontsize=7, ncol=2)
  ax.grid(alpha=0.3)
  return save_figure(fig, path)


def _scheme_style(i: int, scheme: str) -> dict[str, Any]:
  cmap = get_cmap("tab10")
  return {
      "color": cmap(i % 10),
      "ls": "--" if ("uniform" in scheme or scheme == "init2") else "-",
      "marker": "o",
      "ms": 4,
  }


def _log_axes_or_note(ax: Any, has_data: bool, note: str) -> None:
  """Log-log axes when something positive was drawn, else a note in the panel.

  An empty log-scaled axis cannot be drawn (matplotlib raises "Data cannot be
  log-scaled"), so an empty panel stays linear, hides its ticks and says why.
  """
  if has_data:
    ax.set_xscale("log")
    ax.set_yscale("log")
  else:
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def scaling_curves(
    points: Sequence[dict[str, Any]],
    arms: Sequence[str],
    schemes: Sequence[str],
    fits: Sequence[dict[str, Any]],
    path: str,
    title: str = "",
) -> str:
  """Parameters needed vs N, one panel per arm, one line per scheme (paper Fig. 3/4).

  Log-log axes, so a power law is a straight line; the legend gives the fitted
  exponent ``b`` with its bootstrap interval, or why there is no fit (the
  fit entry's ``note``). A point where no width up to the search limit
  reached the target is censored: its minimum lies above the largest width
  tried. When the point record carries ``lower_bound_params`` (the parameter
  count of that width), it is drawn as a hollow upward triangle there (a
  lower bound, not a measurement); the legend counts censored points either
  way. A panel with nothing to draw says so instead of failing.

  Args:
    points: point records (``points.jsonl``): ``arm``, ``n`` and per scheme
      ``found``, ``param_count`` and optionally ``lower_bound_params``.
    arms: one panel per arm, in this order.
    schemes: one line per scheme.
    fits: fit entries (``fits.json``) with ``arm``, ``scheme`` and either
      ``b``/``b_ci_low``/``b_ci_high`` or a ``note``.
    path: PNG path.
    title: appended to each panel's title.

  Returns:
    ``path``.
  """
  fig, axes = subplots(1, len(arms), figsize=(5.5 * len(arms), 4.2), squeeze=False)
  fit_of = {(f["arm"], f["scheme"]): f for f in fits}
  for ax, arm in zip(axes[0], arms):
    drawn = False
    n_points = 0
    for i, sc in enumerate(schemes):
      pts = sorted(
          ((p["n"], p["schemes"][sc]) for p in points if p["arm"] == arm and sc in p["schemes"]),
          key=lambda t: t[0],
      )
      n_points = max(n_points, len(pts))
      found = [
          (n, r["param_count"])
          for n, r in pts
          if r.get("found") and (r.get("param_count") or 0) > 0
      ]
      censored = [(n, r.get("lower_bound_params")) for n, r in pts if not r.get("found")]
      style = _scheme_style(i, sc)
      f = fit_of.get((arm, sc), {})
      label = sc
      if f.get("b") is not None:
        label += f"  b={f['b']:.2f} [{f['b_ci_low']:.2f}, {f['b_ci_high']:.2f}]"
      elif pts:
        label += "  (no fit)"
      if censored:
        label += f" ({len(censored)} N not reached)"
      if found:
        ax.plot(*zip(*found), label=label, **style)
        drawn = True
      else:
        ax.plot([], [], label=label, **style)
      bounds = [(n, b) for n, b in censored if (b or 0) > 0]
      if bounds:
        ax.plot(
            *zip(*bounds),
            ls="none",
            marker="^",
            ms=7,
            mfc="none",
            color=style["color"],
            label=f"{sc}: lower bound (not reached)",
        )
        drawn = True
    note = (
        "no finished points yet"
        if not n_points
        else "no N reached the target\nup to the largest width tried"
    )
    _log_axes_or_note(ax, drawn, note)
    ax.set_xlabel("N (samples)")
    ax.set_ylabel("parameters to reach target")
    ax.set_title(f"{arm}  {title}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
  return save_figure(fig, path)


def theory_widths(
    points: Sequence[dict[str, Any]], arms: Sequence[str], schemes: Sequence[str], path: str
) -> str:
  """Empirical minimum width (solid) vs the width at which eq. 4.6 holds (dotted).

  A panel with no width to draw (nothing reached the target, and eq. 4.6
  held at no width tried) says so instead of failing.

  Args:
    points: point records (``points.jsonl``) with per scheme ``found``,
      ``min_width`` and optionally ``theory.condition_width``.
    arms: one panel per arm, in this order.
    schemes: one line per scheme.
    path: PNG path.

  Returns:
    ``path``.
  """
  fig, axes = subplots(1, len(arms), figsize=(5.5 * len(arms), 4.2), squeeze=False)
  for ax, arm in zip(axes[0], arms):
    drawn = False
    for i, sc in enumerate(schemes):
      style = _scheme_style(i, sc)
      pts = sorted(
          ((p["n"], p["schemes"][sc]) for p in points if p["arm"] == arm and sc in p["schemes"]),
          key=lambda t: t[0],
      )
      emp = [(n, r["min_width"]) for n, r in pts if r.get("found") and r.get("min_width")]
      th = [
          (n, r["theory"]["condition_width"])
          for n, r in pts
          if (r.get("theory") or {}).get("condition_width")
      ]
      if emp:
        ax.plot(*zip(*emp), label=f"{sc} trained", **style)
      if th:
        ax.plot(*zip(*th), label=f"{sc} eq. 4.6", color=style["color"], ls=":", marker="x", ms=4)
      drawn = drawn or bool(emp or th)
    _log_axes_or_note(ax, drawn, "no width reached the target\nand eq. 4.6 held at none tried")
    ax.set_xlabel("N (samples)")
    ax.set_ylabel("last hidden width")
    ax.set_title(f"{arm}: trained vs eq. 4.6 at init")
    ax.grid(alpha=0.3, which="both")
    if drawn:
      ax.legend(fontsize=7)
  return save_figure(fig, path)


def label_scatter(
    labels: np.ndarray, preds: Sequence[np.ndarray], names: Sequence[str], path: str
) -> str:
  """Predicted vs true label per member (a perfect fit lies on the diagonal)."""
  fig, ax = subplots(figsize=(5, 5))
  for i, (pred, name) in enumerate(zip(preds, names)):
    ax.plot(labels, pred, ".", ms=3, alpha=0.6, label=name, color=get_cmap("tab10")(i % 10))
  lim = float(np.max(np.abs(labels))) * 1.1
  ax.plot([-lim, lim], [-lim, lim], "k:", lw=1)
  ax.set_xlabel("label")
  ax.set_ylabel("prediction")
  ax.legend(fontsize=7)
  return save_figure(fig, path)


def _save_formats(fig: Any, path_stem: str, formats: Sequence[str]) -> list[str]:
  """Renders ``fig`` once per format (``png``, ``pdf``, ``svg``) and writes each atomically."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (see subplots)

  paths = []
  for fmt in formats:
    buf = _stdio.BytesIO()
    # No creation date and fixed SVG ids: a report rebuilt from the same records is
    # the same file.
    metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
    with matplotlib.rc_context({"svg.hashsalt": "nfscale"}):
      fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
    path = f"{path_stem}.{fmt}"
    io.atomic_write_bytes(path, buf.getvalue())
    paths.append(path)
  return paths


#: Reference slopes drawn in :func:`scaling_figure` (the paper's rates).
REFERENCE_SLOPES: tuple[tuple[float, str], ...] = ((1.0, "N¹"), (1.5, "N^1.5"), (2.0, "N²"))


def _is_uniform(scheme: str) -> bool:
  return "uniform" in scheme or scheme == "init2"


def scaling_figure(
    points: Sequence[dict[str, Any]],
    arms: Sequence[str],
    schemes: Sequence[str],
    fits: Sequence[dict[str, Any]],
    path_stem: str,
    *,
    quantity: str = "min_width",
    title: str = "",
    formats: Sequence[str] = ("png", "pdf"),
) -> list[str]:
  """The paper's Fig. 3/4 layout: every arm on one axis, normal and uniform schemes apart.

  One panel for the normal schemes (LeCun/Xavier/Kaiming normal, init1) and
  one for the uniform ones (their uniform versions, init2), each only if
  present. In a panel every (arm, scheme) is a line of measured points, the
  arms told apart by marker and line style (the paper's claim compares arms:
  sinc vs ReLU-PE) and the schemes by colour; its fitted power law is a thin
  line over the fitted range; grey dotted lines show the reference slopes
  N¹, N^1.5 and N² through the panel's smallest point. A censored point (no
  width up to the search limit reached the target) is a hollow upward
  triangle at its lower bound and is not part of any fit.

  Args:
    points: point records (``points.jsonl``), with ``lower_bound`` (and
      ``lower_bound_params``) for censored schemes.
    arms: the arms, in legend order.
    schemes: the schemes; split into normal and uniform panels.
    fits: fit entries (``fits.json``): ``a``/``b`` for parameter counts and
      ``a_width``/``b_width`` for widths.
    path_stem: output path without extension.
    quantity: ``"min_width"`` (the last hidden width, what the theorems
      bound) or ``"param_count"``.
    title: figure title.
    formats: file formats to write.

  Returns:
    The written paths, one per format.

  Raises:
    ValueError: an unknown ``quantity``.
  """
  if quantity not in ("min_width", "param_count"):
    raise ValueError(f"quantity must be 'min_width' or 'param_count', got {quantity!r}.")
  a_key, b_key = ("a_width", "b_width") if quantity == "min_width" else ("a", "b")
  bound_key = "lower_bound" if quantity == "min_width" else "lower_bound_params"
  groups = [
      (name, [s for s in schemes if (_is_uniform(s) == uni)])
      for name, uni in (("normal schemes", False), ("uniform schemes", True))
  ]
  groups = [g for g in groups if g[1]] or [("schemes", list(schemes))]
  fig, axes = subplots(1, len(groups), figsize=(6.2 * len(groups), 4.8), squeeze=False)
  fit_of = {(f["arm"], f["scheme"]): f for f in fits}
  arm_style = [
      {"marker": m, "ls": ls} for m, ls in (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"))
  ]
  cmap = get_cmap("tab10")
  for ax, (name, group) in zip(axes[0], groups):
    drawn: list[tuple[float, float]] = []
    for ai, arm in enumerate(arms):
      st = arm_style[ai % len(arm_style)]
      for si, sc in enumerate(group):
        color = cmap(si % 10)
        pts = sorted(
            ((p["n"], p["schemes"][sc]) for p in points if p["arm"] == arm and sc in p["schemes"]),
            key=lambda t: t[0],
        )
        found = [(n, r[quantity]) for n, r in pts if r.get("found") and (r.get(quantity) or 0) > 0]
        bounds = [
            (n, r.get(bound_key))
            for n, r in pts
            if not r.get("found") and (r.get(bound_key) or 0) > 0
        ]
        f = fit_of.get((arm, sc), {})
        label = f"{arm} · {sc}"
        if f.get(b_key) is not None:
          label += f"  b={f[b_key]:.2f}"
        if bounds:
          label += f"  ({len(bounds)} censored)"
        if found:
          ax.plot(*zip(*found), color=color, marker=st["marker"], ls="none", ms=5, label=label)
          drawn += found
          if f.get(b_key) is not None and f.get(a_key):
            ns = np.array([n for n, _ in found], float)
            grid = np.geomspace(ns.min(), ns.max(), 20)
            ax.plot(grid, f[a_key] * grid ** f[b_key], color=color, ls=st["ls"], lw=1.2)
        elif pts:
          ax.plot([], [], color=color, marker=st["marker"], ls="none", label=label)
        if bounds:
          ax.plot(*zip(*bounds), ls="none", marker="^", ms=8, mfc="none", color=color)
          drawn += bounds
    if drawn:
      n0, y0 = min(drawn)
      n_max = max(n for n, _ in drawn)
      grid = np.geomspace(n0, n_max, 20)
      for slope, text in REFERENCE_SLOPES:
        ax.plot(grid, y0 * (grid / n0) ** slope, color="0.6", ls=":", lw=1)
        ax.annotate(
            text,
            (grid[-1], y0 * (grid[-1] / n0) ** slope),
            fontsize=8,
            color="0.4",
            xytext=(2, 0),
            textcoords="offset points",
            va="center",
        )
      ax.plot(
          [],
          [],
          ls="none",
          marker="^",
          mfc="none",
          color="0.3",
          label="censored: lower bound (not reached)",
      )
    _log_axes_or_note(ax, bool(drawn), "no finished points yet")
    ax.set_xlabel("N (training samples)")
    ax.set_ylabel("last hidden width" if quantity == "min_width" else "parameters")
    ax.set_title(f"{name}" + (f" — {title}" if title else ""))
    ax.grid(True, which="both", alpha=0.3)
    if drawn or points:
      ax.legend(fontsize=7, loc="upper left")
  return _save_formats(fig, path_stem, formats)
