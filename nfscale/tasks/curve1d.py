"""1-D curve fitting: f(x) = sin(2 pi x) + sin(6 pi x) + sin(10 pi x) on N points (paper Fig. 3)."""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from nfscale import plots, train
from nfscale.tasks import base


def target_fn(x: np.ndarray) -> np.ndarray:
  """The paper's 1-D target."""
  return np.sin(2 * np.pi * x) + np.sin(6 * np.pi * x) + np.sin(10 * np.pi * x)


def sample_points(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  """``num_points`` equispaced points on [-1, 1] and their targets, as ``(N, 1)`` float32."""
  if num_points < 2:
    raise ValueError(f"data.num_points must be at least 2, got {num_points}.")
  x = np.linspace(-1, 1, num_points, dtype=np.float64)[:, None]
  return x.astype(np.float32), target_fn(x).astype(np.float32)


def build(config: Any) -> base.Task:
  """Builds the curve task from ``config.data`` (num_points, dense_points)."""
  d = config.data
  x, y = sample_points(int(d.num_points))
  if d.dense_points < 2:
    raise ValueError(f"data.dense_points must be at least 2, got {d.dense_points}.")
  x_dense = np.linspace(-1, 1, int(d.dense_points), dtype=np.float32)[:, None]
  y_dense = target_fn(x_dense.astype(np.float64)).astype(np.float32)
  model = base.model_from_config(config, out_dim=1)
  data_range = float(config.data_range)

  def evaluate(params):
    out = np.asarray(train.ensemble_apply(model, params, jnp.asarray(x_dense)))
    mse = np.mean((out - y_dense[None]) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
      dense_psnr = 10 * np.log10(data_range ** 2 / mse)
    return {"dense_psnr": dense_psnr, "outputs": out[..., 0]}

  def save_artifacts(workdir, labels, evaluation):
    path = plots.curves_1d(x_dense[:, 0], y_dense[:, 0], x[:, 0], y[:, 0],
                           list(evaluation["outputs"]), labels, os.path.join(workdir, "fits.png"))
    return [path]

  info = {"num_points": int(x.shape[0]), "dense_points": int(x_dense.shape[0])}
  return base.Task("curve1d", model, {"x": x, "y": y}, train.mse_loss(model), data_range,
                   evaluate, save_artifacts, info)
