"""Navier-Stokes PINN: a field fitted to velocity observations under the PDE (paper Fig. 8).

The network takes normalised ``(x, y, t)`` (each mapped to ``[-1, 1]`` by the
data's bounds; derivatives are taken w.r.t. the physical coordinates) and
outputs ``(u, v, p)`` directly (``model.parameterization = "uvp"``, default) or
a stream function and pressure as Raissi et al. (``"psi_p"``). As in Raissi's
cylinder-wake experiment, it observes ``u`` and ``v`` (never ``p``) at
``data.num_points`` random space-time points and penalises the residuals
there (:mod:`nfscale.navier_stokes`):

  ``loss = mean (u - u*)^2 + mean (v - v*)^2 + sum_terms mean f^2``

with terms ``f_u, f_v`` and, for ``uvp``, the continuity residual. Training
is full batch. The engine's score is the PSNR of the total loss (data range
1); the data and PDE losses and the PDE-loss PSNR are logged beside it (the
paper's Fig. 8 shows both PSNRs).

Evaluation predicts the flow on every point of the data set and reports the
relative L2 errors of ``u``, ``v`` and ``p`` (the pressure is only defined up
to a function of time without pressure observations, so each time slice's
mean offset is removed before its error is taken), plus the final data and
PDE losses on the training points.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import io as nfio
from nfscale import checks, metrics, plots
from nfscale import navier_stokes as ns
from nfscale.data import flows
from nfscale.tasks import base, register_task


def load_flow(d: Any) -> flows.Flow:
  """The flow described by ``config.data``: Taylor-Green, or Raissi's ``.mat`` at ``d.path``."""
  if d.path:
    try:  # "flow data: x does not exist.": no config key named
      return flows.load_raissi_mat(d.path)
    except ValueError as e:
      raise ValueError(f"config.data.path: {e}") from None
  if d.name != "taylor_green":
    raise ValueError(
        f"Unknown flow config.data.name={d.name!r}; valid: taylor_green (or data.path = "
        "Raissi's .mat file)."
    )
  return flows.taylor_green_data(
      grid=int(d.grid),
      num_times=int(d.num_times),
      t_max=float(d.t_max),
      nu=float(d.nu),
      k=float(d.k),
  )


def pde_terms(parameterization: str) -> tuple[str, ...]:
  """Residuals in the PDE loss: continuity only when it is not built in."""
  if parameterization == "psi_p":
    return ("momentum_x", "momentum_y")
  return ("momentum_x", "momentum_y", "continuity")


def make_flow_fn(model: Any, parameterization: str, bounds: np.ndarray):
  """``params -> FlowFn`` on physical coordinates for the network ``model``."""
  center = 0.5 * (bounds[:, 0] + bounds[:, 1])
  scale = 0.5 * (bounds[:, 1] - bounds[:, 0])

  def flow_fn(params):
    return ns.flow_from_network(
        lambda z: model.apply(params, z), parameterization, center=center, scale=scale
    )

  return flow_fn


def make_loss_fn(flow_fn: Any, nu: float, terms: tuple[str, ...]):
  """The per-member loss ``(params, batch, rng) -> (loss, aux)``; ``rng`` is unused."""

  def loss_fn(params, batch, rng):
    del rng  # full batch, no sampling
    flow = flow_fn(params)
    uvp, res = jax.vmap(lambda q: ns.values_and_residuals(flow, q, nu))(batch["xyt"])
    data_loss = jnp.sum(jnp.mean(jnp.square(uvp[:, :2] - batch["uv"]), axis=0))
    pde_loss = sum(jnp.mean(jnp.square(res[k])) for k in terms)
    loss = data_loss + pde_loss
    return loss, {
        "data_loss": data_loss,
        "pde_loss": pde_loss,
        "pde_psnr": metrics.mse_to_psnr(pde_loss),
    }

  return loss_fn


def relative_errors(pred: np.ndarray, exact: np.ndarray, num_times: int) -> dict[str, float]:
  """Relative L2 errors of ``u``, ``v`` and ``p`` (pressure offset removed per time slice).

  Args:
    pred: ``(P, 3)`` predictions, time-major as the flow's points.
    exact: ``(P, 3)`` reference.
    num_times: number of time slices (``P`` is a multiple of it).

  Returns:
    ``{"rel_l2_u", "rel_l2_v", "rel_l2_p"}``.

  >>> e = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 5.0]])
  >>> relative_errors(e + [0.0, 0.0, 7.0], e, 1)["rel_l2_p"]
  0.0
  """
  p_pred = pred[:, 2].reshape(num_times, -1)
  p_true = exact[:, 2].reshape(num_times, -1)
  offset = (p_pred - p_true).mean(axis=1, keepdims=True)
  return {
      "rel_l2_u": ns.relative_l2(pred[:, 0], exact[:, 0]),
      "rel_l2_v": ns.relative_l2(pred[:, 1], exact[:, 1]),
      "rel_l2_p": ns.relative_l2(p_pred - offset, p_true),
  }


def predict_members(flow_fn: Any, params: Any, xyt: np.ndarray, chunk: int = 16384) -> np.ndarray:
  """``(members, P, 3)`` predictions of every member at ``xyt`` ``(P, 3)``, chunked."""
  fn = jax.jit(jax.vmap(lambda p, x: jax.vmap(flow_fn(p))(x), in_axes=(0, None)))
  x = np.asarray(xyt, np.float32)
  outs = []
  for start in range(0, x.shape[0], chunk):
    part = x[start : start + chunk]
    pad = chunk - part.shape[0] if x.shape[0] > chunk else 0
    if pad:  # a fixed chunk shape compiles once
      part = np.concatenate([part, np.repeat(part[-1:], pad, 0)])
    # part as it is: jnp.asarray would compile an identity program for the shape.
    outs.append(np.asarray(fn(params, part))[:, : part.shape[0] - pad])
  return np.concatenate(outs, axis=1)


@register_task("pinn", num_samples_key="data.num_points")
def build(config: Any) -> base.Task:
  """Builds the PINN task from ``config.data`` and ``config.model.parameterization``."""
  d = config.data
  parameterization = str(config.model.parameterization)
  if parameterization not in ns.PARAMETERIZATIONS:
    raise ValueError(
        f"Unknown model.parameterization {parameterization!r}; valid: "
        f"{', '.join(ns.PARAMETERIZATIONS)}."
    )
  # A NaN or infinite constant of the flow or the PDE trained every member to NaN, and so
  # did one finite in float64 only (nu, t_max = 1e300: inf in float32); k = 1e300 raised
  # OverflowError in k**2, a traceback.
  top = checks.FLOAT32_SCALE[1]
  nu = checks.config_number(config, "data.nu", 0.0, strict=False, high=top)
  if not d.path:  # Taylor-Green's own constants
    checks.config_number(config, "data.k", -top, strict=False, high=top)
    checks.config_number(config, "data.t_max", 0.0, high=top)
    # Through checks: int() turned 2.5 into 2, True into 1 and None into a TypeError.
    checks.config_int(config, "data.grid", 2, checks.MAX_INT32)
    checks.config_int(config, "data.num_times", 1, checks.MAX_INT32)
  num_points = checks.config_int(config, "data.num_points", 1, checks.MAX_INT32)
  flow = load_flow(d)
  try:  # "data.num_points must be in [1, 192] ...": the key without its config. prefix
    idx = flows.sample_points(flow, num_points, int(d.seed))
  except ValueError as e:
    raise ValueError(f"config.{e}") from None
  train_data = {"xyt": flow.xyt[idx].astype(np.float32), "uv": flow.uvp[idx, :2].astype(np.float32)}
  model = base.model_from_config(config, out_dim=3 if parameterization == "uvp" else 2)
  flow_fn = make_flow_fn(model, parameterization, flow.bounds)
  terms = pde_terms(parameterization)
  loss_fn = make_loss_fn(flow_fn, nu, terms)
  num_times = flow.grid_shape[0]

  def evaluate(params):
    preds = predict_members(flow_fn, params, flow.xyt)
    rows = [relative_errors(p, flow.uvp, num_times) for p in preds]
    out = {k: np.array([row[k] for row in rows]) for k in rows[0]}
    batch = jax.tree.map(jax.device_put, train_data)  # jnp.asarray compiles per shape
    losses = jax.jit(jax.vmap(lambda p: loss_fn(p, batch, None)[1]))(params)
    out["data_psnr"] = np.asarray(metrics.mse_to_psnr(losses["data_loss"]))
    out["pde_psnr"] = np.asarray(losses["pde_psnr"])
    out["outputs"] = preds
    return out

  def save_artifacts(workdir, labels, evaluation):
    paths = [
        field_plot(
            flow, evaluation["outputs"], labels, evaluation, os.path.join(workdir, "fields.png")
        )
    ]
    history = pde_history(workdir, len(labels))
    if history:
      paths.append(
          plots.psnr_curves(
              history,
              labels,
              os.path.join(workdir, "pde_psnr.png"),
              key="pde_psnr",
              title="PDE loss (momentum" + (" + continuity" if len(terms) == 3 else "") + ")",
              ylabel="PDE loss PSNR (dB)",
          )
      )
    return paths

  info = {
      "flow": flow.source,
      "nu": nu,
      "num_train_points": int(idx.size),
      "num_eval_points": int(flow.xyt.shape[0]),
      "grid_shape": list(flow.grid_shape),
      "parameterization": parameterization,
      "pde_terms": list(terms),
  }
  return base.Task(
      name="pinn",
      model=model,
      train_data=train_data,
      loss_fn=loss_fn,
      score=base.Score("psnr", _total_psnr, "total loss PSNR (dB)"),
      metrics=(
          base.Metric("rel_l2_u", False, ".4f", "relative L2 error of u"),
          base.Metric("rel_l2_v", False, ".4f", "relative L2 error of v"),
          base.Metric("rel_l2_p", False, ".4f", "relative L2 error of p (offset removed)"),
          base.Metric("data_psnr", label="data loss PSNR (dB)"),
          base.Metric("pde_psnr", label="PDE loss PSNR (dB)"),
      ),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info=info,
      example_input=np.zeros((1, 3), np.float32),
  )


def _total_psnr(loss, aux):
  del aux
  return metrics.mse_to_psnr(loss)


def pde_history(workdir: str, num_members: int) -> list[dict[str, Any]]:
  """Per log step, every member's PDE-loss PSNR, read back from ``metrics.jsonl``."""
  path = os.path.join(workdir, "metrics.jsonl")
  by_step: dict[int, list[Any]] = {}
  for row in nfio.read_jsonl(path, missing_ok=True):
    if "pde_psnr" in row:
      by_step.setdefault(int(row["step"]), [None] * num_members)[int(row["member"])] = row[
          "pde_psnr"
      ]
  return [{"step": s, "pde_psnr": v} for s, v in sorted(by_step.items())]


def field_plot(
    flow: flows.Flow, preds: np.ndarray, labels: list[str], evaluation: dict[str, Any], path: str
) -> str:
  """Exact and predicted ``u, v, p`` at the middle time slice (rows: exact, then members).

  Grid flows are drawn as images; scattered ones (the cylinder wake) as
  coloured points.
  """
  nt = flow.grid_shape[0]
  per = flow.xyt.shape[0] // nt
  ti = nt // 2
  sl = slice(ti * per, (ti + 1) * per)
  xy = flow.xyt[sl, :2]
  rows = [("exact", flow.uvp[sl])] + [(f"{lab}", preds[i, sl]) for i, lab in enumerate(labels)]
  fig, axes = plots.subplots(len(rows), 3, figsize=(8, 2.3 * len(rows)), squeeze=False)
  for j, comp in enumerate("uvp"):
    exact = flow.uvp[sl, j]
    lo, hi = float(exact.min()), float(exact.max())
    for i, (name, vals) in enumerate(rows):
      v = vals[:, j]
      if comp == "p" and i:  # pressure up to a constant: show it at the exact mean
        v = v - v.mean() + exact.mean()
      ax = axes[i, j]
      if len(flow.grid_shape) == 3:
        ny, nx = flow.grid_shape[1:]
        im = ax.imshow(
            v.reshape(ny, nx),
            origin="lower",
            vmin=lo,
            vmax=hi,
            cmap="RdBu_r",
            extent=(xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max()),
        )
      else:
        im = ax.scatter(xy[:, 0], xy[:, 1], c=v, s=2, vmin=lo, vmax=hi, cmap="RdBu_r")
      title = f"{name}: {comp}"
      if not i:
        title += f" at t = {flow.xyt[sl][0, 2]:.3g}"
      else:
        title += f" (rel L2 {evaluation[f'rel_l2_{comp}'][i - 1]:.3f})"
      ax.set_title(title, fontsize=7)
      ax.set_xticks([])
      ax.set_yticks([])
      fig.colorbar(im, ax=ax, fraction=0.046)
  return plots.save_figure(fig, path)
