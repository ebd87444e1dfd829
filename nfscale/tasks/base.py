"""What every task provides to the engine and the launcher."""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from nfscale import initializers, models


class Task(NamedTuple):
  """A built task: data, model and the task-specific evaluation.

  Attributes:
    name: task name.
    model: the field (its scheme is replaced per member by the engine).
    train_data: host arrays with a shared leading point axis (``x``, ``y``).
    loss_fn: per-member loss ``(params, batch) -> scalar`` (MSE for regression).
    data_range: converts losses to PSNR.
    evaluate: ``(params_stacked) -> {metric: array (members,)}`` plus
      ``"outputs"``: per-member renders for the artifacts.
    save_artifacts: ``(workdir, labels, evaluation) -> list of written paths``.
    info: facts to record in results (sizes, data source...).
  """

  name: str
  model: models.NeuralField
  train_data: Mapping[str, np.ndarray]
  loss_fn: Callable[..., Any]
  data_range: float
  evaluate: Callable[[Any], dict[str, Any]]
  save_artifacts: Callable[[str, list[str], dict[str, Any]], list[str]]
  info: dict[str, Any]


def model_from_config(config: Any, out_dim: int) -> models.NeuralField:
  """The :class:`NeuralField` described by ``config.model``."""
  m = config.model
  return models.make_field(
      hidden=tuple(m.hidden), out_dim=out_dim, activation=m.activation,
      activation_params=dict(m.activation_params), scheme=config.schemes[0],
      scheme_params=initializers.filter_hparams(config.schemes[0], scheme_params(config)),
      encoding=m.encoding, encoding_params=dict(m.encoding_params))


def scheme_params(config: Any) -> dict[str, Any]:
  """``config.scheme_params`` as keyword arguments (empty ``first_bias`` = same as bias)."""
  params = dict(config.scheme_params)
  if not params.get("first_bias"):
    params.pop("first_bias", None)
  return params
