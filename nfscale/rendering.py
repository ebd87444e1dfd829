"""Volume rendering of radiance fields (NeRF, Mildenhall et al. 2020), pure JAX.

A radiance field maps points ``x`` (and optionally view directions ``d``) to a
colour ``c(x) in [0, 1]^3`` and a density ``sigma(x) >= 0``. A pixel's colour
is the expected colour along its camera ray ``r(t) = o + t d``,

  ``C = sum_i T_i alpha_i c_i + (1 - sum_i T_i alpha_i) * background``,
  ``alpha_i = 1 - exp(-sigma_i delta_i)``, ``T_i = prod_{j<i} (1 - alpha_j)``.

Conventions:

* Cameras follow the Blender / NeRF-synthetic convention: a camera-to-world
  matrix ``c2w`` (``4x4`` or ``3x4``) whose camera looks down its ``-z`` axis,
  with ``+x`` to the right of the image and ``+y`` up. Pixel ``(row, col)``
  is sampled through its centre ``(col + 0.5, row + 0.5)``.
* Ray directions are *not* normalised: ``d`` has unit ``-z`` component in the
  camera frame, so ``t`` is depth along the optical axis and ``near``/``far``
  bound depth (as the NeRF-synthetic data's ``near=2, far=6`` do).
* Each sample ``t_i`` owns the interval between the midpoints to its
  neighbours (clipped to ``[near, far]``); ``delta_i`` is that interval's
  length times ``|d|``. The intervals tile ``[near, far]`` exactly for any
  sorted samples, so a constant density ``sigma`` gives opacity
  ``1 - exp(-sigma |d| (far - near))`` exactly.

Example:
  >>> o, d = camera_rays(jnp.eye(4), height=2, width=2, focal=1.0)
  >>> o.shape, d.shape
  ((2, 2, 3), (2, 2, 3))
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
#: ``field_fn(points (..., 3), directions (..., 3)) -> (rgb (..., 3), sigma (...))``.
FieldFn = Callable[[Array, Array], tuple[Array, Array]]


def focal_from_fov(width: int, camera_angle_x: float) -> float:
  """Focal length in pixels from a horizontal field of view (radians).

  >>> round(focal_from_fov(800, 0.6911112070083618), 2)
  1111.11
  """
  if not 0 < camera_angle_x < np.pi:
    raise ValueError(f"camera_angle_x must be in (0, pi) radians, got {camera_angle_x}.")
  return 0.5 * width / float(np.tan(0.5 * camera_angle_x))


def camera_rays(c2w: Array, height: int, width: int, focal: float) -> tuple[Array, Array]:
  """Origins and directions of the rays through every pixel centre.

  Args:
    c2w: camera-to-world matrix, ``(4, 4)`` or ``(3, 4)``.
    height: image height in pixels.
    width: image width in pixels.
    focal: focal length in pixels (principal point at the image centre).

  Returns:
    ``(origins, directions)``, each ``(height, width, 3)``; directions have a
    unit component along the camera's viewing axis.

  Example:
    >>> _, d = camera_rays(jnp.eye(4), height=3, width=3, focal=1.0)
    >>> d[1, 1].tolist()  # the centre pixel looks down -z
    [0.0, 0.0, -1.0]
  """
  c2w = jnp.asarray(c2w, jnp.float32)
  cols, rows = jnp.meshgrid(
      jnp.arange(width, dtype=jnp.float32), jnp.arange(height, dtype=jnp.float32), indexing="xy"
  )
  cam = jnp.stack(
      [
          (cols + 0.5 - 0.5 * width) / focal,
          -(rows + 0.5 - 0.5 * height) / focal,
          -jnp.ones_like(cols),
      ],
      axis=-1,
  )
  directions = cam @ c2w[:3, :3].T
  origins = jnp.broadcast_to(c2w[:3, 3], directions.shape)
  return origins, directions


def project(
    c2w: np.ndarray, focal: float, height: int, width: int, points: np.ndarray
) -> np.ndarray:
  """Pixel coordinates ``(row, col)`` (continuous) of world points seen by a camera.

  The inverse of :func:`camera_rays`: the ray of pixel ``(i, j)`` passes
  through every point projected to ``(i + 0.5, j + 0.5)``.

  >>> project(np.eye(4), 1.0, 3, 3, np.array([[0.0, 0.0, -2.0]])).tolist()
  [[1.5, 1.5]]
  """
  c2w = np.asarray(c2w, np.float64)
  cam = (np.asarray(points, np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
  depth = -cam[..., 2]
  col = cam[..., 0] / depth * focal + 0.5 * width
  row = -cam[..., 1] / depth * focal + 0.5 * height
  return np.stack([row, col], axis=-1)


def sample_along_rays(
    rng: Array | None, num_rays_shape: tuple[int, ...], num_samples: int, near: float, far: float
) -> Array:
  """Sample depths ``t`` in ``[near, far]``: stratified with ``rng``, bin centres without.

  Args:
    rng: PRNG key; ``None`` for deterministic bin centres (evaluation).
    num_rays_shape: leading shape of the rays.
    num_samples: samples per ray (one per equal bin).
    near: near bound.
    far: far bound.

  Returns:
    Sorted depths ``(*num_rays_shape, num_samples)``.

  >>> sample_along_rays(None, (1,), 4, 2.0, 6.0).tolist()
  [[2.5, 3.5, 4.5, 5.5]]
  """
  if num_samples <= 0:
    raise ValueError(f"num_samples must be positive, got {num_samples}.")
  if not far > near:
    raise ValueError(f"far must exceed near, got near={near}, far={far}.")
  shape = (*num_rays_shape, num_samples)
  if rng is None:
    u = jnp.broadcast_to(jnp.full((num_samples,), 0.5), shape)
  else:
    u = jax.random.uniform(rng, shape)
  return near + (far - near) * (jnp.arange(num_samples) + u) / num_samples


def sample_pdf(rng: Array | None, bins: Array, weights: Array, num_samples: int) -> Array:
  """Importance samples from the piecewise-constant density given by ``weights`` on ``bins``.

  NeRF's hierarchical sampling: the fine pass draws depths where the coarse
  pass put its weight (inverse-transform sampling of the normalised weights).

  Args:
    rng: PRNG key; ``None`` for evenly spaced quantiles.
    bins: bin edges ``(..., B + 1)``, sorted.
    weights: ``(..., B)``, non-negative.
    num_samples: samples per ray.

  Returns:
    Sorted depths ``(..., num_samples)``.
  """
  weights = weights + 1e-5  # a ray with no weight samples uniformly
  pdf = weights / jnp.sum(weights, axis=-1, keepdims=True)
  cdf = jnp.concatenate([jnp.zeros_like(pdf[..., :1]), jnp.cumsum(pdf, axis=-1)], axis=-1)
  cdf = jnp.minimum(cdf, 1.0)
  shape = (*cdf.shape[:-1], num_samples)
  if rng is None:
    u = jnp.broadcast_to(jnp.linspace(0.0, 1.0, num_samples + 2)[1:-1], shape)
  else:
    u = jnp.sort(jax.random.uniform(rng, shape), axis=-1)

  def invert(c, b, uu):
    idx = jnp.clip(jnp.searchsorted(c, uu, side="right"), 1, c.shape[-1] - 1)
    c0, c1, b0, b1 = c[idx - 1], c[idx], b[idx - 1], b[idx]
    frac = jnp.where(c1 > c0, (uu - c0) / jnp.maximum(c1 - c0, 1e-12), 0.0)
    return b0 + frac * (b1 - b0)

  flat = lambda a: a.reshape(-1, a.shape[-1])
  out = jax.vmap(invert)(flat(cdf), flat(bins), flat(u))
  return jax.lax.stop_gradient(out.reshape(shape))


def sample_intervals(t: Array, near: float, far: float) -> Array:
  """Lengths (in ``t``) of the intervals owned by sorted samples ``t`` (see module doc).

  >>> sample_intervals(jnp.array([2.5, 3.5, 4.5, 5.5]), 2.0, 6.0).tolist()
  [1.0, 1.0, 1.0, 1.0]
  """
  mids = 0.5 * (t[..., 1:] + t[..., :-1])
  edges = jnp.concatenate(
      [jnp.full_like(t[..., :1], near), mids, jnp.full_like(t[..., :1], far)], axis=-1
  )
  return edges[..., 1:] - edges[..., :-1]


def composite(
    rgb: Array,
    sigma: Array,
    t: Array,
    directions: Array,
    near: float,
    far: float,
    background: float | Array | None = 1.0,
) -> dict[str, Array]:
  """Alpha-composites samples along rays.

  Args:
    rgb: colours ``(..., S, 3)``.
    sigma: densities ``(..., S)``.
    t: sorted sample depths ``(..., S)``.
    directions: ray directions ``(..., 3)`` (their norm converts ``t`` to length).
    near: near bound of the rays.
    far: far bound of the rays.
    background: colour behind the volume (1 = white, as the NeRF-synthetic
      scenes are composited); ``None`` for none (black).

  Returns:
    ``rgb`` ``(..., 3)``, ``opacity`` (accumulated alpha) ``(...)``, ``depth``
    (expected ``t``) ``(...)`` and ``weights`` ``(..., S)``.
  """
  delta = sample_intervals(t, near, far) * jnp.linalg.norm(directions, axis=-1, keepdims=True)
  tau = sigma * delta
  alpha = 1.0 - jnp.exp(-tau)
  # T_i = exp(-sum_{j<i} tau_j): an exclusive cumsum is exact and avoids a
  # product of many (1 - alpha) terms.
  trans = jnp.exp(
      -jnp.concatenate([jnp.zeros_like(tau[..., :1]), jnp.cumsum(tau[..., :-1], axis=-1)], axis=-1)
  )
  weights = trans * alpha
  opacity = jnp.sum(weights, axis=-1)
  color = jnp.sum(weights[..., None] * rgb, axis=-2)
  if background is not None:
    color = color + (1.0 - opacity[..., None]) * jnp.asarray(background, color.dtype)
  depth = jnp.sum(weights * t, axis=-1)
  return {"rgb": color, "opacity": opacity, "depth": depth, "weights": weights}


def render_rays(
    field_fn: FieldFn,
    origins: Array,
    directions: Array,
    *,
    near: float,
    far: float,
    num_samples: int,
    rng: Array | None = None,
    num_importance: int = 0,
    background: float | None = 1.0,
) -> dict[str, Array]:
  """Renders rays through a radiance field.

  Args:
    field_fn: ``(points (..., 3), directions (..., 3)) -> (rgb, sigma)``.
    origins: ray origins ``(..., 3)``.
    directions: ray directions ``(..., 3)``.
    near: near depth.
    far: far depth.
    num_samples: stratified (coarse) samples per ray.
    rng: PRNG key for stratified jitter; ``None`` renders deterministically.
    num_importance: extra hierarchical samples per ray drawn from the coarse
      weights and rendered, with the coarse ones, by the *same* field (one
      network, as in mip-NeRF); 0 disables hierarchical sampling.
    background: see :func:`composite`.

  Returns:
    :func:`composite`'s dict for the final pass; with hierarchical sampling
    also ``coarse_rgb``.

  Example:
    >>> fog = lambda x, d: (jnp.ones(x.shape), jnp.full(x.shape[:-1], 0.5))
    >>> out = render_rays(fog, jnp.zeros((1, 3)), jnp.array([[0.0, 0.0, -1.0]]),
    ...                   near=2.0, far=6.0, num_samples=8)
    >>> round(float(out["opacity"][0]), 4)  # 1 - exp(-0.5 * 4)
    0.8647
  """
  keys = (None, None) if rng is None else tuple(jax.random.split(rng))
  lead = origins.shape[:-1]
  t = sample_along_rays(keys[0], lead, num_samples, near, far)

  def shade(tt):
    pts = origins[..., None, :] + tt[..., :, None] * directions[..., None, :]
    dirs = jnp.broadcast_to(directions[..., None, :], pts.shape)
    rgb, sigma = field_fn(pts, dirs)
    return composite(rgb, sigma, tt, directions, near, far, background)

  out = shade(t)
  if num_importance:
    bins = jnp.concatenate(
        [
            jnp.full_like(t[..., :1], near),
            0.5 * (t[..., 1:] + t[..., :-1]),
            jnp.full_like(t[..., :1], far),
        ],
        axis=-1,
    )
    fine_t = sample_pdf(keys[1], bins, jax.lax.stop_gradient(out["weights"]), num_importance)
    coarse_rgb = out["rgb"]
    out = shade(jnp.sort(jnp.concatenate([t, fine_t], axis=-1), axis=-1))
    out["coarse_rgb"] = coarse_rgb
  return out


def raw_to_field(raw: Array, density_shift: float = -1.0) -> tuple[Array, Array]:
  """Maps a network's 4 raw outputs to ``(rgb, sigma)``.

  ``rgb = sigmoid(raw[:3])`` and ``sigma = softplus(raw[3] + density_shift)``
  (mip-NeRF's choice: unlike NeRF's ReLU it never has zero gradient, and the
  shift starts an untrained field mostly transparent).

  >>> rgb, sigma = raw_to_field(jnp.zeros((4,)))
  >>> rgb.tolist(), round(float(sigma), 4)
  ([0.5, 0.5, 0.5], 0.3133)
  """
  return jax.nn.sigmoid(raw[..., :3]), jax.nn.softplus(raw[..., 3] + density_shift)


def render_in_chunks(
    render_fn: Callable[[Array, Array], Mapping[str, Array]],
    origins: Array | np.ndarray,
    directions: Array | np.ndarray,
    *,
    chunk: int = 4096,
    keys: tuple[str, ...] = ("rgb",),
    ray_axis: int = 0,
) -> dict[str, np.ndarray]:
  """Renders many rays a chunk at a time, so an 800x800 view fits in memory.

  Args:
    render_fn: ``(origins (n, 3), directions (n, 3)) -> dict of arrays`` whose
      ``ray_axis`` has length ``n``; jit it once outside (every chunk has the
      same shape: the last one is padded).
    origins: ``(..., 3)``, flattened over the leading axes.
    directions: same shape.
    chunk: rays per call.
    keys: which outputs to gather (on the host).
    ray_axis: the axis of the outputs that indexes rays (1 when
      ``render_fn`` renders every ensemble member, ``(members, n, ...)``).

  Returns:
    Host arrays; the ray axis is reshaped back to ``origins.shape[:-1]``.

  Example:
    >>> fn = lambda o, d: {"rgb": o + d}
    >>> out = render_in_chunks(fn, np.zeros((5, 4, 3)), np.ones((5, 4, 3)), chunk=6)
    >>> out["rgb"].shape
    (5, 4, 3)
  """
  lead = np.shape(origins)[:-1]
  o = np.asarray(origins, np.float32).reshape(-1, 3)
  d = np.asarray(directions, np.float32).reshape(-1, 3)
  n = o.shape[0]
  chunk = max(1, min(chunk, n))
  pieces: dict[str, list[np.ndarray]] = {k: [] for k in keys}
  for start in range(0, n, chunk):
    oc, dc = o[start : start + chunk], d[start : start + chunk]
    m = oc.shape[0]
    if m < chunk:
      oc = np.concatenate([oc, np.repeat(oc[-1:], chunk - m, 0)])
      dc = np.concatenate([dc, np.repeat(dc[-1:], chunk - m, 0)])
    # Transfers: jnp.asarray of a NumPy array compiles an identity program per shape.
    out = render_fn(jax.device_put(oc), jax.device_put(dc))
    for k in keys:
      pieces[k].append(np.take(np.asarray(out[k]), np.arange(m), axis=ray_axis))
  result = {}
  for k in keys:
    arr = np.concatenate(pieces[k], axis=ray_axis)
    shape = arr.shape[:ray_axis] + lead + arr.shape[ray_axis + 1 :]
    result[k] = arr.reshape(shape)
  return result


def look_at(
    eye: np.ndarray, target: np.ndarray = np.zeros(3), up: np.ndarray = np.array([0.0, 0.0, 1.0])
) -> np.ndarray:
  """Camera-to-world matrix of a camera at ``eye`` looking at ``target`` (Blender ``-z``).

  Args:
    eye: camera position ``(3,)``.
    target: the point it looks at.
    up: world up (``+z``, as in the NeRF-synthetic scenes).

  Returns:
    ``(4, 4)`` float64 matrix.

  Raises:
    ValueError: ``eye == target`` or viewing along ``up``.

  >>> look_at(np.array([0.0, -4.0, 0.0]))[:3, 2].tolist()  # +z_cam points back at the eye
  [0.0, -1.0, 0.0]
  """
  eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
  back = eye - target
  if np.linalg.norm(back) < 1e-9:
    raise ValueError("look_at: eye and target coincide.")
  back = back / np.linalg.norm(back)
  right = np.cross(up, back)
  if np.linalg.norm(right) < 1e-9:
    raise ValueError("look_at: viewing direction is parallel to up.")
  right /= np.linalg.norm(right)
  cam_up = np.cross(back, right)
  m = np.eye(4)
  m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, cam_up, back, eye
  return m


def sphere_poses(
    num: int, radius: float, elevation_deg: float | None = None, seed: int | None = None
) -> np.ndarray:
  """Cameras on a sphere around the origin, looking at it.

  Args:
    num: number of cameras.
    radius: distance to the origin.
    elevation_deg: fixed elevation with evenly spaced azimuths (a turntable);
      ``None`` draws positions uniformly on the upper hemisphere from ``seed``.
    seed: seed of the random positions.

  Returns:
    ``(num, 4, 4)`` camera-to-world matrices.

  >>> sphere_poses(24, 4.0, elevation_deg=30.0).shape
  (24, 4, 4)
  """
  if elevation_deg is not None:
    az = 2 * np.pi * np.arange(num) / num
    el = np.full(num, np.deg2rad(elevation_deg))
  else:
    rs = np.random.default_rng(seed)
    az = rs.uniform(0, 2 * np.pi, num)
    # Uniform on the hemisphere, kept off the pole (look_at needs a horizon)
    # and a little above the equator so every view sees the scene's top.
    el = np.arcsin(rs.uniform(np.sin(np.deg2rad(5.0)), np.sin(np.deg2rad(80.0)), num))
  eyes = radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
  return np.stack([look_at(e) for e in eyes])


def field_from_apply(
    apply_fn: Callable[[Any, Array], Array],
    params: Any,
    *,
    use_viewdirs: bool = False,
    density_shift: float = -1.0,
) -> FieldFn:
  """Wraps a network ``apply_fn(params, inputs) -> (..., 4)`` as a :data:`FieldFn`.

  Args:
    apply_fn: e.g. ``NeuralField.apply``.
    params: its params.
    use_viewdirs: feed ``[x, d / |d|]`` (6 inputs) instead of ``x`` (3).
    density_shift: see :func:`raw_to_field`.

  Returns:
    The field function.
  """

  def field_fn(points, directions):
    inputs = points
    if use_viewdirs:
      unit = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
      inputs = jnp.concatenate([points, unit], axis=-1)
    return raw_to_field(apply_fn(params, inputs), density_shift)

  return field_fn
