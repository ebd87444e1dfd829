"""A task defined outside nfscale: the guide's "add a task" example, tested end to end.

Fit ``y = |x|`` on N points of [-1, 1] with an L1 loss. Its training score is
not a PSNR (minus the mean absolute error), it logs an aux value (the MSE) and
declares a lower-is-better metric, so it exercises every part of the contract.
Its config (``config.py`` here) names this module in ``task_module``.
"""

import os

import jax.numpy as jnp
import numpy as np

from nfscale import models, plots
from nfscale.tasks import Metric, Score, Task, base, register_task


@register_task("toy_abs", num_samples_key="data.num_points")
def build(config) -> Task:
  """The task from ``config.data.num_points``."""
  n = int(config.data.num_points)
  if n < 2:
    raise ValueError(f"data.num_points must be at least 2, got {n}.")
  x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]
  y = np.abs(x)
  model = base.model_from_config(config, out_dim=1)

  def loss_fn(params, batch, rng):
    del rng
    err = model.apply(params, batch["x"]) - batch["y"]
    return jnp.mean(jnp.abs(err)), {"mse": jnp.mean(err**2)}

  def evaluate(params):
    out = np.asarray(models.ensemble_apply(model, params, jnp.asarray(x)))
    return {"max_error": np.max(np.abs(out - y[None]), axis=(1, 2)), "outputs": out[..., 0]}

  def save_artifacts(workdir, labels, evaluation):
    return [
        plots.curves_1d(
            x[:, 0],
            y[:, 0],
            x[:, 0],
            y[:, 0],
            list(evaluation["outputs"]),
            labels,
            os.path.join(workdir, "toy_fits.png"),
        )
    ]

  return Task(
      name="toy_abs",
      model=model,
      train_data={"x": x, "y": y},
      loss_fn=loss_fn,
      score=Score("neg_mae", lambda loss, aux: -loss, "minus mean absolute error"),
      metrics=(Metric("max_error", higher_is_better=False, fmt=".4f"),),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info={"num_points": n},
  )
