"""Occupancy fields: fit a 3-D shape's inside/outside indicator (paper Table 1, Fig. 6).

Ground truth (``config.data``): ``path`` to a mesh (``.obj``, ``.ply``, ``.stl``, ``.off``;
inside test by generalized winding numbers, so meshes with holes still work) or a voxel
grid (``.npy``, ``.mat``); or, without a path, the embedded procedural shape ``name``
(default ``"trophy"``: a ring on thin rods over a plate with a hole, and a thin tilted ring).
See :mod:`nfscale.data.shapes` and :mod:`nfscale.data.meshes`.

Training points: the ``grid_res^3`` grid on ``[-1, 1]^3`` plus ``num_surface`` points
within ``jitter`` voxels of the surface, labelled 0/1; MSE on the field's (real) output.

Per member: the PSNR over all training points, and the IoU of ``field >= 0.5`` with the
ground truth on the ``eval_res^3`` grid. The grid is evaluated in chunks of points into a
float16 array (a 256^3 grid of 8 members is 268 MB), and each member's surface is written
by marching cubes as ``mesh_<member>.ply``, with a shaded preview in ``occupancy.png`` and
the paper's Table 1 beside ours in ``table.md``.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from nfscale import checks, figures, models, surfaces, tables
from nfscale.data import meshes, shapes
from nfscale.tasks import base, register_task

#: The paper's Table 1 (Thai statue, complex Gabor network): train PSNR (dB), IoU.
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "init1": (22.7, 0.89),
    "lecun_normal": (20.3, 0.81),
    "xavier_normal": (21.2, 0.84),
    "kaiming_normal": (19.9, 0.80),
    "init2": (24.5, 0.91),
    "lecun_uniform": (21.2, 0.86),
    "xavier_uniform": (21.6, 0.87),
    "kaiming_uniform": (20.2, 0.82),
}


def load_solid(data: Any) -> shapes.Solid:
  """The ground truth named by ``config.data`` (``path`` wins over the procedural ``name``)."""
  if data.path:
    try:  # "mesh file 'x' does not exist ...": no config key named
      return meshes.file_solid(str(data.path), key=str(data.get("key", "") or ""))
    except ValueError as e:
      raise ValueError(f"config.data.path: {e}") from None
  try:  # "Unknown procedural shape 'x'; ...": no config key named
    return shapes.procedural_solid(str(data.name))
  except ValueError as e:
    raise ValueError(f"config.data.name: {e}") from None


def _default_chunk(params: Any) -> int:
  members = jax.tree.leaves(params)[0].shape[0]
  width = max([1] + [int(np.max(leaf.shape[1:])) for leaf in jax.tree.leaves(params)])
  # Keeps the widest activation of all members near 256 MB (complex: 8 bytes an entry).
  return int(np.clip(2**28 // (8 * members * width), 1024, 1 << 18))


def chunked_apply(
    model: Any, params: Any, points: Any, num_points: int, chunk: int = 0, dtype: Any = np.float32
) -> np.ndarray:
  """Every member's first output on ``num_points`` points, computed ``chunk`` at a time.

  Args:
    model: the field.
    params: stacked params (leading member axis).
    points: ``points(start, stop) -> (n, in_dim)`` float32, so that callers never hold
      all points (e.g. :func:`nfscale.data.shapes.grid_points` of a 256^3 grid).
    num_points: how many points.
    chunk: points per step; 0 picks one that bounds the activations to ~256 MB.
    dtype: of the result.

  Returns:
    ``(members, num_points)`` array.
  """
  members = jax.tree.leaves(params)[0].shape[0]
  chunk = chunk or _default_chunk(params)
  chunk = min(chunk, num_points)
  out = np.empty((members, num_points), dtype)
  apply = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))
  for start in range(0, num_points, chunk):
    pts = np.asarray(points(start, min(start + chunk, num_points)), np.float32)
    n = len(pts)
    if n < chunk:  # one shape for every call: one compilation
      pts = np.concatenate([pts, np.zeros((chunk - n, pts.shape[1]), np.float32)])
    # pts as it is: jnp.asarray would compile an identity program for the shape.
    out[:, start : start + n] = np.asarray(apply(params, pts))[:, :n, 0]
  return out


def grid_predictions(model: Any, params: Any, res: int, chunk: int = 0) -> np.ndarray:
  """Every member's output on the ``res^3`` grid, as ``(members, res, res, res)`` float16.

  float16 is enough to threshold at 0.5 and to mesh, and halves the memory (a 256^3 grid
  of 8 members is 268 MB).
  """
  out = chunked_apply(
      model, params, lambda a, b: shapes.grid_points(res, a, b), res**3, chunk, np.float16
  )
  return out.reshape(-1, res, res, res)


def _physical_memory() -> int | None:
  """This machine's memory in bytes, where the OS says (``None`` elsewhere)."""
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (AttributeError, ValueError, OSError):
    return None


def _check_eval_memory(config: Any, eval_res: int) -> None:
  """Refuses an ``eval_res`` whose grids cannot fit in this machine's memory.

  The evaluation grid is built only after training (it is slow for a mesh), so a grid
  too large for the machine used to fail there, after the whole run: its truth (1 byte
  a point) and every member's float16 prediction (2 bytes a point) are held at once.
  """
  members = len(config.schemes) * len(config.seeds) * len(config.lrs)
  need = eval_res**3 * (1 + 2 * members)
  have = _physical_memory()
  if have is not None and need > have:
    raise ValueError(
        f"config.data.eval_res={eval_res} needs {need / 2**30:.3g} GiB for the evaluation "
        f"grids of {members} members; this machine has {have / 2**30:.3g} GiB."
    )


def _check_train_memory(config: Any, grid_res: int, num_surface: int) -> None:
  """Refuses a training set the device cannot index or this machine cannot hold.

  The training grid is built before training: grid_res=10**12 ended in numpy's "Maximum
  allowed dimension exceeded", naming no key. Its points are indexed in int32 on the
  device; each takes 16 bytes (float32 x, y) and a grid point 1 more (the inside test).
  """
  num = grid_res**3 + num_surface
  if num > checks.MAX_INT32:
    raise ValueError(
        f"config.data.grid_res={grid_res} and config.data.num_surface={num_surface} make "
        f"{num} training points; at most {checks.MAX_INT32} (int32 indices on the device)."
    )
  need = 17 * grid_res**3 + 16 * num_surface
  have = _physical_memory()
  if have is not None and need > have:
    raise ValueError(
        f"config.data.grid_res={grid_res} needs {need / 2**30:.3g} GiB for the training "
        f"points; this machine has {have / 2**30:.3g} GiB."
    )


@register_task("occupancy")
def build(config: Any) -> base.Task:
  """Builds the occupancy task from ``config.data`` (see the module docstring)."""
  d = config.data
  # Through checks: an infinite jitter crashed with numpy's OverflowError, and int()
  # turned 2.5 into 2 and None into a TypeError.
  grid_res = checks.config_int(config, "data.grid_res", 2)
  eval_res = checks.config_int(config, "data.eval_res", 2)
  num_surface = checks.config_int(config, "data.num_surface", 0)
  checks.config_number(config, "data.jitter", 0.0, strict=False)  # in voxels
  _check_train_memory(config, grid_res, num_surface)
  _check_eval_memory(config, eval_res)
  solid = load_solid(d)
  train_grid = shapes.occupancy_grid(solid, grid_res)
  if not train_grid.any():
    raise ValueError(
        f"shape {solid.name!r} has no inside point on the {grid_res}^3 training "
        "grid (no volume, or thinner than a grid cell)."
    )
  x, y = shapes.training_points(
      solid, grid_res, int(d.num_surface), float(d.jitter), int(d.seed), grid=train_grid
  )
  model = base.model_from_config(config, out_dim=1)
  cache: dict[str, np.ndarray] = {}

  def truth() -> np.ndarray:
    # The evaluation grid is built on first use: a mesh at 256^3 costs minutes.
    if "grid" not in cache:
      cache["grid"] = train_grid if eval_res == grid_res else shapes.occupancy_grid(solid, eval_res)
    return cache["grid"]

  def evaluate(params):
    pred = chunked_apply(model, params, lambda a, b: x[a:b], len(x))
    grids = grid_predictions(model, params, eval_res)
    gt = truth()
    return {
        "train_psnr": base.psnr_of(pred, y[:, 0]),
        "iou": np.array([surfaces.grid_iou(g, gt) for g in grids]),
        "outputs": grids,
    }

  def save_artifacts(workdir, labels, evaluation):
    gt = truth()
    paths = []
    v, f = surfaces.marching_cubes(gt.astype(np.float32))
    paths.append(surfaces.save_ply(os.path.join(workdir, "mesh_ground_truth.ply"), v, f))
    # One view for all panels (the ground truth's), so the members compare at a glance.
    frame = surfaces.preview_frame(gt)
    panels = [(surfaces.render_preview(gt, frame=frame), f"ground truth ({solid.name})")]
    for grid, lab, p, iou in zip(
        evaluation["outputs"], labels, evaluation["train_psnr"], evaluation["iou"]
    ):
      g = np.nan_to_num(grid.astype(np.float32), nan=0.0)
      v, f = surfaces.marching_cubes(g)
      paths.append(
          surfaces.save_ply(os.path.join(workdir, f"mesh_{figures.safe_name(lab)}.ply"), v, f)
      )
      panels.append((surfaces.render_preview(g, frame=frame), f"{lab}\n{p:.2f} dB / IoU {iou:.3f}"))
    paths.append(figures.panel_grid(panels, os.path.join(workdir, "occupancy.png"), ncols=3))
    table = os.path.join(workdir, "table.md")
    with open(table + ".tmp", "w") as fh:
      fh.write(results_table(labels, evaluation["train_psnr"], evaluation["iou"]) + "\n")
    os.replace(table + ".tmp", table)
    return paths + [table]

  info = {
      "shape": solid.name,
      "grid_res": grid_res,
      "eval_res": eval_res,
      "num_surface": int(d.num_surface),
      "num_train_points": int(len(x)),
      "occupied_fraction": float(y.mean()),
  }
  return base.Task(
      name="occupancy",
      model=model,
      train_data={"x": x, "y": y},
      loss_fn=models.mse_loss(model),
      score=base.psnr_score(1.0),
      metrics=(
          base.Metric("train_psnr", label="train PSNR, all points (dB)"),
          base.Metric("iou", fmt=".4f", label=f"IoU on the {eval_res}^3 grid"),
      ),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info=info,
  )


def results_table(labels: list[str], psnr: np.ndarray, iou: np.ndarray) -> str:
  """Table 1 as markdown: our train PSNR and IoU per member beside the paper's.

  >>> print(results_table(["init2"], np.array([25.0]), np.array([0.9])).splitlines()[2])
  | init2 | 25.00 | 0.900 | 24.5 | 0.91 |
  """
  rows = []
  for lab, p, i in zip(labels, psnr, iou):
    paper = PAPER_TABLE1.get(lab.split()[0])
    ref = [f"{paper[0]:.1f}", f"{paper[1]:.2f}"] if paper else ["-", "-"]
    rows.append([lab, f"{p:.2f}", f"{i:.3f}"] + ref)
  return tables.markdown_rows(
      ["member", "train PSNR (dB)", "IoU", "paper PSNR (dB)", "paper IoU"], rows
  )
