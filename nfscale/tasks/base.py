"""The task plug-in contract: what a task gives the engine and the launcher.

A task turns a config into data, a model, a loss, a training score and an
evaluation. The engine (:mod:`nfscale.train`) sees only ``loss_fn`` and
``score``; :func:`nfscale.experiment.run` uses the rest (metrics for
``results.json`` and the tables, ``save_artifacts`` for the figures).

Example:
  >>> import jax.numpy as jnp
  >>> score = psnr_score(data_range=2.0)
  >>> float(score.fn(jnp.float32(0.04), {}))  # 10 log10(4 / 0.04)
  20.0
  >>> Metric("full_psnr", label="PSNR (dB)").higher_is_better
  True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import jax
import numpy as np

from nfscale import activations, checks, encodings, initializers, metrics, models

Array = jax.Array
PyTree = Any


@dataclasses.dataclass(frozen=True)
class Metric:
  """One evaluation metric a task reports per member.

  Attributes:
    name: key in ``evaluate()``'s dict and in the ``results.json`` rows.
    higher_is_better: whether larger values are better (ranks members).
    fmt: format spec for tables, e.g. ``".3f"``.
    label: human-readable label, e.g. ``"PSNR (dB)"`` (default: ``name``).
  """

  name: str
  higher_is_better: bool = True
  fmt: str = ".3f"
  label: str = ""


def _psnr_of_loss(loss: Array, aux: Mapping[str, Array]) -> Array:
  del aux
  return metrics.mse_to_psnr(loss, 1.0)


@dataclasses.dataclass(frozen=True)
class Score:
  """The training score the engine watches (early stop, logs, progress bar).

  Attributes:
    name: its key in ``metrics.jsonl`` and the history, e.g. ``"psnr"``.
    fn: ``fn(loss, aux) -> scalar`` for one member, higher is better,
      jit-able. Default: the PSNR of an MSE loss with data range 1.
    label: axis label of the score curve.
  """

  name: str = "psnr"
  fn: Callable[[Array, Mapping[str, Array]], Array] = _psnr_of_loss
  label: str = "train PSNR (dB)"


def psnr_score(data_range: float = 1.0) -> Score:
  """The PSNR of an MSE loss, ``10 log10(data_range^2 / loss)``, as a :class:`Score`.

  Args:
    data_range: ``max - min`` of the target signal.

  Returns:
    The score named ``"psnr"``.
  """
  data_range = float(data_range)
  if not 0 < data_range < math.inf:
    raise ValueError(f"data_range must be positive and finite, got data_range={data_range}.")

  def fn(loss, aux):
    del aux
    return metrics.mse_to_psnr(loss, data_range)

  return Score("psnr", fn, "train PSNR (dB)")


@dataclasses.dataclass(frozen=True)
class Task:
  """A built task.

  Attributes:
    name: the task's registered name.
    model: the field; the engine replaces its scheme per member.
    train_data: host arrays sharing a leading sample axis (minibatches of
      ``config.batch_size`` index it).
    loss_fn: ``loss_fn(params, batch, rng) -> (scalar loss, {name: scalar})``
      for ONE member; the aux scalars are logged to ``metrics.jsonl``.
    score: what the engine watches (:class:`Score`).
    metrics: what ``evaluate`` returns per member (:class:`Metric` each).
    evaluate: ``evaluate(stacked_params) -> {metric: array (members,)}``,
      optionally plus ``"outputs"`` (per-member renders for the artifacts).
    save_artifacts: ``save_artifacts(workdir, labels, evaluation) -> paths``.
    info: facts recorded in ``results.json`` (sizes, data source...).
    example_input: what ``model.init`` traces; ``None`` means the first
      sample of ``train_data["x"]``.
  """

  name: str
  model: models.NeuralField
  train_data: Mapping[str, np.ndarray]
  loss_fn: Callable[[PyTree, Mapping[str, Array], Array], tuple[Array, dict[str, Array]]]
  score: Score = Score()
  metrics: tuple[Metric, ...] = ()
  evaluate: Callable[[PyTree], dict[str, Any]] = lambda params: {}
  save_artifacts: Callable[[str, list[str], dict[str, Any]], list[str]] = (
      lambda workdir, labels, evaluation: []
  )
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  example_input: np.ndarray | None = None

  def __post_init__(self):
    if self.example_input is None:
      if "x" not in self.train_data:
        raise ValueError(f"task {self.name!r}: give example_input (train_data has no 'x').")
      object.__setattr__(self, "example_input", np.asarray(self.train_data["x"][:1]))
    names = [m.name for m in self.metrics]
    if len(set(names)) != len(names):
      raise ValueError(f"task {self.name!r}: duplicate metric names {names}.")


def _from_config(config: Any, key: str, get: Callable[..., Any], names: list[str]) -> Any:
  """``get(config.<key>, **config.<key>_params)``, its ValueError naming the key at fault.

  The library's own messages (``Invalid parameters ['x'] for activation 'sinc'``) name
  no config key, so a mistake in a config is reported with the key prepended.
  """
  name = checks.config_value(config, key)
  group = checks.config_value(config, key + "_params")
  if not hasattr(group, "keys"):  # a dict or a ConfigDict
    raise ValueError(f"config.{key}_params must be a dict of parameters, got {group!r}.")
  at_fault = key + "_params"
  if isinstance(name, str) and name not in names:
    at_fault = key  # an unknown name: the name's mistake, whatever the params
  elif not isinstance(name, str):
    try:  # an instance of one's own, or None: refused alone, the name's mistake
      get(name)
    except ValueError as e:
      raise ValueError(f"config.{key}: {e}") from e
  try:
    return get(name, **dict(group))
  except (ValueError, TypeError) as e:  # TypeError: a key that is not a string
    raise ValueError(f"config.{at_fault}: {e}") from e


def model_from_config(config: Any, out_dim: int) -> models.NeuralField:
  """The :class:`NeuralField` described by ``config.model`` (first scheme as template).

  Raises:
    ValueError: an invalid model setting, named by its key.
  """
  m = config.model
  hidden = checks.config_widths(config, "model.hidden")
  activation = _from_config(
      config, "model.activation", activations.get_activation, activations.list_activations()
  )
  encoding = _from_config(
      config, "model.encoding", encodings.get_encoding, encodings.list_encodings()
  )
  field = models.make_field(
      hidden=hidden,
      out_dim=out_dim,
      activation=activation,
      scheme=config.schemes[0],
      scheme_params=initializers.filter_hparams(config.schemes[0], scheme_params(config)),
      encoding=encoding,
  )
  fused = str(m.get("fused", "off"))
  try:  # the model's message ("fused must be one of ...") names no config key
    return field if fused == "off" else field.clone(fused=fused)
  except ValueError as e:
    raise ValueError(f"config.model.fused: {e}") from e


def scheme_params(config: Any) -> dict[str, Any]:
  """``config.scheme_params`` as keyword arguments (empty ``first_bias`` = same as bias)."""
  params = dict(config.scheme_params)
  if not params.get("first_bias"):
    params.pop("first_bias", None)
  return params


def psnr_of(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float = 1.0,
    axis: tuple[int, ...] | None = None,
) -> np.ndarray:
  """Host-side PSNR per member of ``pred`` (members, ...) against ``target``.

  Args:
    pred: predictions with a leading member axis.
    target: the reference, broadcastable to one member's prediction.
    data_range: ``max - min`` of the signal.
    axis: axes averaged (default: all but the member axis).

  Returns:
    ``(members,)`` PSNR in dB (``inf`` for an exact fit, ``nan`` for NaN).
  """
  pred = np.asarray(pred, np.float64)
  axis = tuple(range(1, pred.ndim)) if axis is None else axis
  mse = np.mean((pred - np.asarray(target, np.float64)[None]) ** 2, axis=axis)
  with np.errstate(divide="ignore", invalid="ignore"):
    return 10 * np.log10(data_range**2 / mse)
