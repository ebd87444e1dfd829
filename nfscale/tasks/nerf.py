"""NeRF: a radiance field trained from posed images by volume rendering (paper Fig. 7).

The field maps a 3-D point (scaled by ``render.scene_scale`` so the scene lies
in about ``[-1, 1]^3``; with ``render.use_viewdirs`` also the unit view
direction) to 4 raw outputs, read as colour ``sigmoid(raw[:3])`` and density
``softplus(raw[3] + density_shift)``. Each training step renders a minibatch
of ``config.batch_size`` rays drawn from all train pixels with stratified
samples (jittered by the step's rng), optionally plus hierarchical samples
from the same network, and minimises the colour MSE.

Data: the embedded procedural scene (:mod:`nfscale.data.scenes`; no download)
or a Blender / NeRF-synthetic scene directory given as ``data.path``.

Evaluation renders every held-out test view for every member in chunks of
``render.chunk`` rays (so an 800x800 view fits in memory) and reports the mean
test PSNR and SSIM; the artifacts are the per-view numbers, the test views
beside the ground truth, and a turntable GIF of the test views. For the
procedural scene, ``task_info.exact_field_test_psnr`` is the test PSNR of the
scene's own analytic field rendered with the members' samples per ray: what
the sampling alone leaves of the ground truth (:func:`exact_field_psnr`).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import io as nfio
from nfscale import checks, metrics, plots, rendering
from nfscale.data import scenes
from nfscale.tasks import base, register_task


def load_scene(d: Any) -> scenes.Scene:
  """The scene described by ``config.data``: procedural, or Blender from ``d.path``."""
  if d.path:
    try:  # "Blender scene: directory x does not exist.": no config key named
      return scenes.load_blender(
          d.path, downscale=int(d.downscale), max_train=int(d.num_train), max_test=int(d.num_test)
      )
    except ValueError as e:
      raise ValueError(f"config.data.path: {e}") from None
  if d.name != "procedural":
    raise ValueError(
        f"Unknown NeRF scene config.data.name={d.name!r}; valid: procedural (or data.path "
        "= a Blender scene directory)."
    )
  return scenes.procedural_scene(
      num_train=int(d.num_train),
      num_test=int(d.num_test),
      height=int(d.size),
      width=int(d.size),
      gt_samples=int(d.gt_samples),
      seed=int(d.seed),
  )


def all_rays(views: scenes.Views) -> tuple[np.ndarray, np.ndarray]:
  """Origins and directions of every pixel of every view, ``(N, H, W, 3)`` each."""
  h, w = views.images.shape[1:3]
  o, d = jax.vmap(lambda c: rendering.camera_rays(c, h, w, views.focal))(jnp.asarray(views.c2w))
  return np.asarray(o), np.asarray(d)


def make_field_fn(model: Any, r: Any):
  """``params -> FieldFn`` for the network ``model`` under render settings ``r``."""
  scale = float(r.scene_scale)

  def apply(params, inputs):
    # Positions are scaled into about [-1, 1]; unit view directions are not.
    pos = inputs[..., :3] / scale
    return model.apply(params, jnp.concatenate([pos, inputs[..., 3:]], -1))

  def field_fn(params):
    return rendering.field_from_apply(
        apply, params, use_viewdirs=bool(r.use_viewdirs), density_shift=float(r.density_shift)
    )

  return field_fn


def make_loss_fn(field_fn: Any, r: Any, near: float, far: float):
  """The per-member loss ``(params, batch, rng) -> (loss, aux)`` on a minibatch of rays.

  With hierarchical sampling the loss is the fine MSE plus the coarse MSE (the
  same network renders both, so both train it); ``aux["mse"]`` is the fine
  (final) render's MSE, the one the train PSNR is computed from.
  """

  def loss_fn(params, batch, rng):
    out = rendering.render_rays(
        field_fn(params),
        batch["origins"],
        batch["directions"],
        near=near,
        far=far,
        num_samples=int(r.num_samples),
        rng=rng,
        num_importance=int(r.num_importance),
        background=1.0,
    )
    mse = jnp.mean(jnp.square(out["rgb"] - batch["rgb"]))
    loss = mse
    if "coarse_rgb" in out:
      loss = loss + jnp.mean(jnp.square(out["coarse_rgb"] - batch["rgb"]))
    return loss, {"mse": mse}

  return loss_fn


def render_members(
    field_fn: Any, params: Any, views: scenes.Views, r: Any, near: float, far: float
) -> np.ndarray:
  """Renders every view for every member deterministically, in chunks of rays.

  Returns:
    ``(members, views, H, W, 3)`` float32 in ``[0, 1]``.
  """
  fn = _member_renderer(
      field_fn, float(near), float(far), int(r.num_samples), int(r.num_importance)
  )
  params = jax.device_put(params)  # sent once, not with every chunk of rays
  origins, directions = all_rays(views)
  out = rendering.render_in_chunks(
      functools.partial(fn, params), origins, directions, chunk=int(r.chunk), ray_axis=1
  )
  return np.clip(out["rgb"], 0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _member_renderer(field_fn: Any, near: float, far: float, num_samples: int, importance: int):
  """``(params, origins, directions) -> {"rgb": (members, n, 3)}``, jitted once per field.

  The params are an argument, not constants of the program: an evaluation's test and
  train views (and a re-evaluation) share one compilation of the whole renderer (each
  render_members call compiled it anew, with the params as constants).
  """

  def one(p, o, d):
    return rendering.render_rays(
        field_fn(p), o, d, near=near, far=far, num_samples=num_samples, num_importance=importance
    )["rgb"]

  return jax.jit(lambda p, o, d: {"rgb": jax.vmap(one, in_axes=(0, None, None))(p, o, d)})


def exact_field_psnr(views: scenes.Views, r: Any, near: float, far: float) -> float:
  """PSNR of the procedural scene's own analytic field, rendered as the members are.

  The ground truth is rendered with ``data.gt_samples`` samples per ray, the members
  with ``render.num_samples`` (+ ``num_importance``): thin or sharp parts that fall
  between samples cap what any field can score. This is that cap's order of size (a
  learned field may beat it by blurring its density).
  """
  # One "member" whose field ignores its params: the members' own rendering path.
  renders = render_members(lambda _: scenes.procedural_field, jnp.zeros(1), views, r, near, far)
  psnr, _ = image_metrics(renders, views.images)
  return float(psnr.mean())  # the mean over views, as the members' test_psnr


# Module level, so that it is compiled once per shape (a jit made in each call compiled anew).
_view_metrics = jax.jit(
    jax.vmap(lambda a, b: jnp.stack([metrics.psnr(a, b), metrics.ssim(a, b)]), in_axes=(0, None))
)


def image_metrics(renders: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """PSNR and SSIM of ``renders`` ``(M, V, H, W, 3)`` against ``truth`` ``(V, H, W, 3)``.

  Returns:
    ``(psnr, ssim)``, each ``(M, V)``.
  """
  # One view at a time (all members at once): SSIM's filtered copies of 24
  # views at 800x800 would otherwise all be live together.
  both = np.stack(
      [
          # Host arrays as they are: jnp.asarray would compile per shape.
          np.asarray(_view_metrics(renders[:, v], truth[v]))
          for v in range(truth.shape[0])
      ],
      axis=1,
  )
  return both[..., 0], both[..., 1]


def write_gif(path: str, frames: np.ndarray, fps: float = 8.0) -> str:
  """Writes ``(T, H, W, 3)`` frames in ``[0, 1]`` as a looping GIF (atomic write)."""
  import imageio.v3 as iio  # imported here: only the artifacts need it

  data = iio.imwrite(
      "<bytes>",
      np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8),
      extension=".gif",
      duration=1000.0 / fps,
      loop=0,
  )
  nfio.atomic_write_bytes(path, data)
  return path


def view_grid(
    truth: np.ndarray,
    renders: np.ndarray,
    labels: list[str],
    psnr: np.ndarray,
    view_ids: np.ndarray,
    path: str,
) -> str:
  """Ground truth (top row) above each member's renders of the same test views.

  Args:
    truth: ``(V, H, W, 3)``.
    renders: ``(M, V, H, W, 3)``.
    labels: one per member.
    psnr: ``(M, V)`` shown in the titles.
    view_ids: the views' indices in the test split.
    path: PNG path.

  Returns:
    ``path``.
  """
  nv, nm = truth.shape[0], renders.shape[0]
  fig, axes = plots.subplots(nm + 1, nv, figsize=(1.6 * nv, 1.7 * (nm + 1)), squeeze=False)
  for v in range(nv):
    axes[0, v].imshow(truth[v])
    axes[0, v].set_title(f"view {int(view_ids[v])}: truth", fontsize=7)
    for m in range(nm):
      axes[m + 1, v].imshow(renders[m, v])
      axes[m + 1, v].set_title(f"{labels[m]}\n{psnr[m, v]:.1f} dB", fontsize=7)
  for ax in axes.ravel():
    ax.set_axis_off()
  return plots.save_figure(fig, path)


def per_view_plot(psnr: np.ndarray, ssim: np.ndarray, labels: list[str], path: str) -> str:
  """Test PSNR and SSIM against the held-out view index, one line per member."""
  fig, axes = plots.subplots(1, 2, figsize=(10, 3.5))
  for i, label in enumerate(labels):
    for ax, vals in zip(axes, (psnr, ssim)):
      ax.plot(
          np.arange(vals.shape[1]),
          vals[i],
          "o-",
          ms=3,
          lw=1.2,
          label=f"{label} (mean {vals[i].mean():.3g})",
      )
  for ax, name in zip(axes, ("test PSNR (dB)", "test SSIM")):
    ax.set_xlabel("held-out view")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return plots.save_figure(fig, path)


def _label_strip(images: list[np.ndarray]) -> np.ndarray:
  """Side-by-side frames separated by a white gap of 2 pixels."""
  gap = np.ones((images[0].shape[0], 2, 3), np.float32)
  parts = []
  for img in images:
    parts += [img, gap]
  return np.concatenate(parts[:-1], axis=1)


def _fine_psnr(loss, aux):
  del loss  # with hierarchical sampling the loss also holds the coarse MSE
  return metrics.mse_to_psnr(aux["mse"])


def _check_render(config: Any) -> None:
  """The render settings, checked with the rest of the config (before any training).

  Checked here rather than where they are used (rendering after training, the
  figures) so that a mistake ends before the workdir is written.
  """
  least = {"num_samples": 1, "num_importance": 0, "chunk": 1, "views_shown": 1}
  least["train_eval_views"] = 0
  for key, low in least.items():
    # Capped at int32, as the device counts them: num_samples=10**12 ended in JAX's
    # OverflowError, a traceback naming no key.
    checks.config_int(config, f"render.{key}", low, checks.MAX_INT32)
  # The GIF stores a frame's duration in centiseconds as 16 bits: gif_fps=1e-300 (any
  # below 100/65535) raised OverflowError writing turntable.gif, after training.
  checks.config_number(config, "render.gif_fps", 0.01, strict=False)
  # An infinite far bound or a NaN shift passed and trained every member to NaN, and so
  # did far=1e300 (inf in float32).
  top = checks.FLOAT32_SCALE[1]
  checks.config_number(config, "render.scene_scale", 0.0, high=top)
  for key in ("near", "far"):  # 0: the scene's own
    checks.config_number(config, f"render.{key}", 0.0, strict=False, high=top)
  checks.config_number(config, "render.density_shift", -math.inf)
  checks.config_bool(config, "render.use_viewdirs")


def _check_data(config: Any) -> None:
  """The scene's sizes, checked by key before the scene is built.

  int() turned 2.5 into 2, True into 1 and None into a TypeError; a size of 0 was
  refused as "procedural scene: height must be positive" and gt_samples=10**12 ended
  in JAX's OverflowError, naming no key.
  """
  # (An unknown data.name is refused by load_scene, which names the valid scenes.)
  least = {"num_train": 1, "num_test": 1, "size": 1, "gt_samples": 1}
  if config.data.path:  # Blender: 0 keeps every view of a split
    least = {"num_train": 0, "num_test": 0, "downscale": 1}
  for key, low in least.items():
    checks.config_int(config, f"data.{key}", low, checks.MAX_INT32)


@register_task("nerf", num_samples_key="data.num_train")
def build(config: Any) -> base.Task:
  """Builds the NeRF task from ``config.data`` and ``config.render``."""
  d, r = config.data, config.render
  _check_render(config)
  _check_data(config)
  scene = load_scene(d)
  near = float(r.near) if r.near else scene.near
  far = float(r.far) if r.far else scene.far
  if not far > near > 0:
    raise ValueError(
        f"render.near/render.far must satisfy 0 < near < far, got near={near}, far={far}."
    )
  o, dirs = all_rays(scene.train)
  train_data = {
      "origins": o.reshape(-1, 3).astype(np.float32),
      "directions": dirs.reshape(-1, 3).astype(np.float32),
      "rgb": scene.train.images.reshape(-1, 3).astype(np.float32),
  }
  in_dim = 6 if r.use_viewdirs else 3
  model = base.model_from_config(config, out_dim=4)
  field_fn = make_field_fn(model, r)
  loss_fn = make_loss_fn(field_fn, r, near, far)
  truth = scene.test.images

  num_eval_train = int(r.train_eval_views) or scene.train.images.shape[0]
  eval_train = scenes.Views(
      scene.train.images[:num_eval_train], scene.train.c2w[:num_eval_train], scene.train.focal
  )

  def evaluate(params):
    renders = render_members(field_fn, params, scene.test, r, near, far)
    psnr, ssim = image_metrics(renders, truth)
    # Train PSNR over whole train views (deterministic samples), not the
    # noisy last minibatch the engine logs.
    train_renders = render_members(field_fn, params, eval_train, r, near, far)
    train_psnr = base.psnr_of(train_renders, eval_train.images)
    return {
        "train_psnr": train_psnr,
        "test_psnr": psnr.mean(1),
        "test_ssim": ssim.mean(1),
        "outputs": {"renders": renders, "psnr": psnr, "ssim": ssim},
    }

  def save_artifacts(workdir, labels, evaluation):
    out = evaluation["outputs"]
    renders, psnr, ssim = out["renders"], np.asarray(out["psnr"]), np.asarray(out["ssim"])
    paths = []
    per_view = {
        "views": list(range(truth.shape[0])),
        "members": [
            {"label": lab, "psnr": psnr[i].tolist(), "ssim": ssim[i].tolist()}
            for i, lab in enumerate(labels)
        ],
    }
    path = os.path.join(workdir, "test_views.json")
    nfio.atomic_write_json(path, per_view)
    paths.append(path)
    shown = np.linspace(0, truth.shape[0] - 1, min(int(r.views_shown), truth.shape[0]))
    shown = np.unique(np.round(shown).astype(int))
    paths.append(
        view_grid(
            truth[shown],
            renders[:, shown],
            labels,
            psnr[:, shown],
            shown,
            os.path.join(workdir, "test_views.png"),
        )
    )
    paths.append(per_view_plot(psnr, ssim, labels, os.path.join(workdir, "test_per_view.png")))
    frames = np.stack([
        _label_strip([truth[v]] + [renders[m, v] for m in range(len(labels))])
        for v in range(truth.shape[0])
    ])
    paths.append(write_gif(os.path.join(workdir, "turntable.gif"), frames, float(r.gif_fps)))
    return paths

  info = {
      "scene": scene.source,
      "num_train_views": int(scene.train.images.shape[0]),
      "num_test_views": int(truth.shape[0]),
      "height": int(truth.shape[1]),
      "width": int(truth.shape[2]),
      "focal": float(scene.train.focal),
      "near": near,
      "far": far,
      "num_train_rays": int(train_data["rgb"].shape[0]),
      "rays_per_step_per_member": int(config.batch_size or train_data["rgb"].shape[0]),
      "num_samples": int(r.num_samples),
      "num_importance": int(r.num_importance),
      "in_dim": in_dim,
      "num_train_views_evaluated": num_eval_train,
  }
  if not d.path:  # the procedural scene: its analytic field's score at these samples
    info["exact_field_test_psnr"] = exact_field_psnr(scene.test, r, near, far)
  return base.Task(
      name="nerf",
      model=model,
      train_data=train_data,
      loss_fn=loss_fn,
      score=base.Score("psnr", _fine_psnr, "train PSNR (dB), ray minibatch"),
      metrics=(
          base.Metric("train_psnr", label="train PSNR (dB), whole train views"),
          base.Metric("test_psnr", label="test PSNR (dB), mean over held-out views"),
          base.Metric("test_ssim", fmt=".4f", label="test SSIM, mean over views"),
      ),
      evaluate=evaluate,
      save_artifacts=save_artifacts,
      info=info,
      example_input=np.zeros((1, in_dim), np.float32),
  )
