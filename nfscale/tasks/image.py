"""Image regression: fit a field to pixels, reconstruct at full resolution (paper Fig. 1)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import checks, metrics, models, plots
from nfscale.data import images
from nfscale.tasks import base, register_task


@register_task("image", num_samples_key="data.num_samples")
def build(config: Any) -> base.Task:
  """Builds the image task from ``config.data`` (name/path, size, num_samples, seed)."""
  d = config.data
  # Through checks: int() and the resize turned 2.5 into 2 (or 3), True into 1 and
  # None (for num_samples) into a TypeError. A size of None keeps the image's own.
  size = None if d.size is None else checks.config_int(config, "data.size", 1, checks.MAX_INT32)
  num = checks.config_int(config, "data.num_samples", 0, checks.MAX_INT32)
  try:  # its messages ("Unknown bundled image 'x'; valid names: ...") name no config key
    img = images.load_image(d.name, d.path, size)
  except ValueError as e:
    raise ValueError(f"config.data.{'path' if d.path else 'name'}: {e}") from None
  h, w, c = img.shape
  coords = images.pixel_coords(h, w)
  pixels = img.reshape(-1, c)
  n_all = coords.shape[0]
  if num > n_all:
    raise ValueError(
        f"config.data.num_samples must be in [0, {n_all}] (0 = all pixels), got {num}."
    )
  if num:
    # The first num entries of one fixed permutation: nested across num (the
    # 1000-pixel set lies inside the 5000-pixel one), so a scaling sweep adds
    # pixels as N grows instead of drawing an unrelated set.
    idx = np.sort(sample_order(n_all, d.seed)[:num])
  else:
    idx = np.arange(n_all)
  model = base.model_from_config(config, out_dim=c)
  data_range = float(config.data_range)
  train_data = {"x": coords[idx], "y": pixels[idx]}

  def evaluate(params):
    # Host arrays straight into the jitted calls: jnp.asarray of a NumPy array
    # compiles an identity program per shape (jax.lax.stage), a passed one is a transfer.
    out = np.asarray(models.ensemble_apply(model, params, coords))
    recon = out.reshape(out.shape[0], h, w, c)
    target = img
    # Pixels live in [0, data_range]: clip the reconstruction to that range.
    psnr_fn = jax.jit(
        jax.vmap(lambda r: metrics.psnr(jnp.clip(r, 0, data_range), target, data_range))
    )
    ssim_fn = jax.jit(
        jax.vmap(lambda r: metrics.ssim(jnp.clip(r, 0, data_range), target, data_range))
    )
    return {
        "full_psnr": np.asarray(psnr_fn(recon)),
        "full_ssim": np.asarray(ssim_fn(recon)),
        "outputs": recon,
    }

  def save_artifacts(workdir, labels, evaluation):
    titles = [f"{lab}\n{p:.2f} dB" for lab, p in zip(labels, evaluation["full_psnr"])]
    path = plots.image_grid(
        img, list(evaluation["outputs"]), titles, os.path.join(workdir, "reconstructions.png")
    )
    return [path]

  info = {
      "image": d.path or d.name,
      "height": h,
      "width": w,
      "channels": c,
      "num_train_points": int(idx.size),
  }
  return base.Task(
      name="image",
      model=model,
      train_data=train_data,
      loss_fn=models.mse_loss(model),
      score=base.psnr_score(data_range),
      metrics=(
          base.Metric("full_psnr", label="PSNR, all pixels (dB)"),
          base.Metric("full_ssim", fmt=".4f", label="SSIM, all pixels"),
      ),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info=info,
  )


def sample_order(n_all: int, seed: int) -> np.ndarray:
  """The order in which pixels are sampled: the training set of N pixels is its first N.

  Example:
    >>> order = sample_order(100, 0)
    >>> set(order[:10]) <= set(order[:50]), sorted(order.tolist()) == list(range(100))
    (True, True)
  """
  return np.random.default_rng(seed).permutation(n_all)
