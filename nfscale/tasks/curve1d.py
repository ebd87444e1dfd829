"""1-D curve fitting: f(x) = sin(2 pi x) + sin(6 pi x) + sin(10 pi x) on N points (paper Fig. 3)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nfscale import checks, models, plots
from nfscale.tasks import base, register_task


def target_fn(x: np.ndarray) -> np.ndarray:
  """The paper's 1-D target."""
  return np.sin(2 * np.pi * x) + np.sin(6 * np.pi * x) + np.sin(10 * np.pi * x)


def sample_points(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  """``num_points`` equispaced points on [-1, 1] and their targets, as ``(N, 1)`` float32."""
  if num_points < 2:
    raise ValueError(f"data.num_points must be at least 2, got {num_points}.")
  x = np.linspace(-1, 1, num_points, dtype=np.float64)[:, None]
  return x.astype(np.float32), target_fn(x).astype(np.float32)


@register_task("curve1d", num_samples_key="data.num_points")
def build(config: Any) -> base.Task:
  """Builds the curve task from ``config.data`` (num_points, dense_points)."""
  # Through checks: int() turned 2.5 into 2, True into 1 and None into a TypeError.
  num_points = checks.config_int(config, "data.num_points", 2, checks.MAX_INT32)
  dense_points = checks.config_int(config, "data.dense_points", 2, checks.MAX_INT32)
  x, y = sample_points(num_points)
  x_dense = np.linspace(-1, 1, dense_points, dtype=np.float32)[:, None]
  y_dense = target_fn(x_dense.astype(np.float64)).astype(np.float32)
  model = base.model_from_config(config, out_dim=1)
  data_range = float(config.data_range)

  def evaluate(params):
    # The host array itself: jnp.asarray would compile an identity program per shape.
    out = np.asarray(models.ensemble_apply(model, params, x_dense))
    return {"dense_psnr": base.psnr_of(out, y_dense, data_range), "outputs": out[..., 0]}

  def save_artifacts(workdir, labels, evaluation):
    path = plots.curves_1d(
        x_dense[:, 0],
        y_dense[:, 0],
        x[:, 0],
        y[:, 0],
        list(evaluation["outputs"]),
        labels,
        os.path.join(workdir, "fits.png"),
    )
    return [path]

  info = {"num_points": int(x.shape[0]), "dense_points": int(x_dense.shape[0])}
  return base.Task(
      name="curve1d",
      model=model,
      train_data={"x": x, "y": y},
      loss_fn=models.mse_loss(model),
      score=base.psnr_score(data_range),
      metrics=(base.Metric("dense_psnr", label="PSNR on the dense grid (dB)"),),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info=info,
  )
