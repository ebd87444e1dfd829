"""Random labels on the unit sphere: the data the scaling theorems assume.

The theorems (paper sec. 4) count N samples as N degrees of freedom:
i.i.d. inputs normalised to unit norm, labels with no structure. A dense 1-D
grid with a smooth target is not that (its needed width saturates once N
resolves the signal, docs/protocol.md), and random labels on a dense 1-D grid need
frequencies the first layer never reaches. Here ``x`` is uniform on the unit
sphere of ``R^dim`` (default dim 3) and ``y ~ U(-1, 1)``, both from ``seed``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nfscale import checks, models, plots
from nfscale.tasks import base, register_task


def sample(num_points: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """``num_points`` unit vectors in ``R^dim`` and U(-1, 1) labels, float32."""
  if num_points < 1:
    raise ValueError(f"data.num_points must be positive, got {num_points}.")
  if dim < 1:
    raise ValueError(f"data.dim must be positive, got {dim}.")
  # Separate streams for x and y, filled row by row: the points for N are the
  # first N of those for any larger N, so a sweep's datasets are nested and
  # a larger N never loses a hard (close, differently labelled) pair.
  rx, ry = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
  x = rx.normal(size=(num_points, dim))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  y = ry.uniform(-1, 1, size=(num_points, 1))
  return x.astype(np.float32), y.astype(np.float32)


@register_task("random_labels", num_samples_key="data.num_points")
def build(config: Any) -> base.Task:
  """Builds the task from ``config.data`` (num_points, dim, seed)."""
  # Through checks: int() turned 2.5 into 2, True into 1 and None into a TypeError.
  x, y = sample(
      checks.config_int(config, "data.num_points", 1, checks.MAX_INT32),
      checks.config_int(config, "data.dim", 1, checks.MAX_INT32),
      checks.config_int(config, "data.seed", 0),
  )
  model = base.model_from_config(config, out_dim=1)
  data_range = float(config.data_range)

  def evaluate(params):
    # The host array itself: jnp.asarray would compile an identity program per shape.
    out = np.asarray(models.ensemble_apply(model, params, x))
    return {"train_psnr": base.psnr_of(out, y, data_range), "outputs": out[..., 0]}

  def save_artifacts(workdir, labels, evaluation):
    return [
        plots.label_scatter(
            y[:, 0], list(evaluation["outputs"]), labels, os.path.join(workdir, "fits.png")
        )
    ]

  info = {"num_points": int(x.shape[0]), "dim": int(x.shape[1])}
  return base.Task(
      name="random_labels",
      model=model,
      train_data={"x": x, "y": y},
      loss_fn=models.mse_loss(model),
      score=base.psnr_score(data_range),
      metrics=(base.Metric("train_psnr", label="PSNR on the training points (dB)"),),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info=info,
  )
