"""2-D incompressible Navier-Stokes residuals of a field, by JAX autodiff.

The equations (Raissi et al. 2019, the paper's Fig. 8), with viscosity ``nu``
and unit density::

  f_u = u_t + u u_x + v u_y + p_x - nu (u_xx + u_yy) = 0
  f_v = v_t + u v_x + v v_y + p_y - nu (v_xx + v_yy) = 0
  f_c = u_x + v_y = 0

A *flow function* maps one point ``(x, y, t)`` (shape ``(3,)``) to
``(u, v, p)`` (shape ``(3,)``). Two parameterisations of a network turn it
into one (:func:`flow_from_network`):

* ``"uvp"``: the network outputs ``(u, v, p)`` directly; continuity is a
  third residual in the PDE loss.
* ``"psi_p"`` (Raissi's choice): the network outputs a stream function and the
  pressure, ``u = psi_y``, ``v = -psi_x``; continuity holds exactly, at the
  cost of one more derivative order.

Derivatives are forward mode: with 3 inputs, ``jacfwd`` pushes 3 tangents
through the network, cheaper than reverse mode's 3 output cotangents plus a
stored tape, and the second derivatives ``d2/dx2``, ``d2/dy2`` are nested
``jvp``s along one axis each (the 9-entry Hessian is never formed).

Example:
  >>> flow = taylor_green_flow(nu=0.01)
  >>> r = residuals(flow, jnp.array([0.3, -0.2, 0.5]), nu=0.01)
  >>> sorted(r), bool(jnp.max(jnp.abs(jnp.stack(list(r.values())))) < 1e-4)
  (['continuity', 'momentum_x', 'momentum_y'], True)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
#: ``flow(xyt (3,)) -> uvp (3,)`` for one point.
FlowFn = Callable[[Array], Array]

PARAMETERIZATIONS = ("uvp", "psi_p")


def taylor_green(
    xyt: Array | np.ndarray, nu: float = 0.01, k: float = np.pi, xp: Any = jnp
) -> Array:
  """The decaying Taylor-Green vortex, an exact solution (unit density).

  ``u = cos(kx) sin(ky) F``, ``v = -sin(kx) cos(ky) F``,
  ``p = -(cos 2kx + cos 2ky) F^2 / 4``, ``F = exp(-2 nu k^2 t)``.

  Args:
    xyt: points ``(..., 3)``.
    nu: viscosity.
    k: wavenumber (``pi``: one period over ``[-1, 1]``).
    xp: ``jnp`` (differentiable) or ``np`` (float64 host data).

  Returns:
    ``(..., 3)``: ``(u, v, p)``.

  >>> taylor_green(np.array([0.0, 0.5, 0.0]), xp=np).round(6).tolist()[:2]
  [1.0, -0.0]
  >>> float(taylor_green(np.zeros(3), xp=np)[2])
  -0.5
  """
  x, y, t = xyt[..., 0], xyt[..., 1], xyt[..., 2]
  f = xp.exp(-2.0 * nu * k**2 * t)
  u = xp.cos(k * x) * xp.sin(k * y) * f
  v = -xp.sin(k * x) * xp.cos(k * y) * f
  p = -0.25 * (xp.cos(2 * k * x) + xp.cos(2 * k * y)) * f**2
  return xp.stack([u, v, p], axis=-1)


def taylor_green_flow(nu: float = 0.01, k: float = np.pi) -> FlowFn:
  """:func:`taylor_green` as a single-point :data:`FlowFn`."""
  return lambda xyt: taylor_green(xyt, nu, k)


def flow_from_network(
    net: Callable[[Array], Array],
    parameterization: str = "uvp",
    center: Array | np.ndarray | None = None,
    scale: Array | np.ndarray | None = None,
) -> FlowFn:
  """Turns a network on normalised inputs into a :data:`FlowFn` on physical ``(x, y, t)``.

  Args:
    net: maps normalised ``(3,)`` inputs to 3 (``"uvp"``) or 2 (``"psi_p"``)
      outputs.
    parameterization: ``"uvp"`` or ``"psi_p"`` (see the module docstring).
    center: subtracted from ``(x, y, t)`` before the network (so inputs lie in
      ``[-1, 1]``); derivatives are still taken w.r.t. physical coordinates.
    scale: the inputs are divided by it after centring.

  Returns:
    The flow function.

  Raises:
    ValueError: unknown parameterisation.
  """
  if parameterization not in PARAMETERIZATIONS:
    raise ValueError(
        f"Unknown parameterization {parameterization!r}; valid: {', '.join(PARAMETERIZATIONS)}."
    )
  c = jnp.zeros(3) if center is None else jnp.asarray(center, jnp.float32)
  s = jnp.ones(3) if scale is None else jnp.asarray(scale, jnp.float32)

  def normalised(xyt):
    return net((xyt - c.astype(xyt.dtype)) / s.astype(xyt.dtype))

  if parameterization == "uvp":
    return normalised

  def flow(xyt):
    psi = lambda q: normalised(q)[0]
    grad = jax.jacfwd(psi)(xyt)
    return jnp.stack([grad[1], -grad[0], normalised(xyt)[1]])

  return flow


def _d(f: Callable[[Array], Array], axis: int) -> Callable[[Array], Array]:
  """``x -> df/dx_axis`` by one forward-mode tangent."""

  def df(x):
    return jax.jvp(f, (x,), (jnp.zeros_like(x).at[axis].set(1.0),))[1]

  return df


def residuals(flow: FlowFn, xyt: Array, nu: float = 0.01) -> dict[str, Array]:
  """Navier-Stokes residuals of ``flow`` at one point ``xyt`` ``(3,)``.

  Args:
    flow: a :data:`FlowFn`.
    xyt: the point.
    nu: viscosity.

  Returns:
    Scalars ``momentum_x`` (``f_u``), ``momentum_y`` (``f_v``) and
    ``continuity`` (``f_c``); vmap over points for many.
  """
  return values_and_residuals(flow, xyt, nu)[1]


def values_and_residuals(
    flow: FlowFn, xyt: Array, nu: float = 0.01
) -> tuple[Array, dict[str, Array]]:
  """``(u, v, p)`` at ``xyt`` and the :func:`residuals` there, sharing one forward pass."""
  # jacfwd with has_aux returns the primal alongside the Jacobian.
  d, uvp = jax.jacfwd(lambda q: (flow(q), flow(q)), has_aux=True)(xyt)  # d: (3 out, 3 in)
  u, v = uvp[0], uvp[1]
  lap = _d(_d(flow, 0), 0)(xyt) + _d(_d(flow, 1), 1)(xyt)
  u_x, u_y, u_t = d[0]
  v_x, v_y, v_t = d[1]
  p_x, p_y = d[2, 0], d[2, 1]
  return uvp, {
      "momentum_x": u_t + u * u_x + v * u_y + p_x - nu * lap[0],
      "momentum_y": v_t + u * v_x + v * v_y + p_y - nu * lap[1],
      "continuity": u_x + v_y,
  }


def pde_loss(
    flow: FlowFn,
    points: Array,
    nu: float = 0.01,
    terms: tuple[str, ...] = ("momentum_x", "momentum_y", "continuity"),
) -> Array:
  """Sum over ``terms`` of the mean squared residual over ``points`` ``(N, 3)``.

  >>> float(pde_loss(taylor_green_flow(), jnp.zeros((4, 3)))) < 1e-8
  True
  """
  r = jax.vmap(lambda q: residuals(flow, q, nu))(points)
  return sum(jnp.mean(jnp.square(r[k])) for k in terms)


def relative_l2(pred: Array | np.ndarray, exact: Array | np.ndarray) -> float:
  """``||pred - exact||_2 / ||exact||_2`` (flattened).

  >>> relative_l2(np.array([1.0, 1.0]), np.array([1.0, 0.0]))
  1.0
  """
  pred, exact = np.asarray(pred, np.float64).ravel(), np.asarray(exact, np.float64).ravel()
  return float(np.linalg.norm(pred - exact) / max(np.linalg.norm(exact), 1e-300))
