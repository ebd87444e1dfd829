"""Shared pieces of the ml_collections experiment configs.

Configs live in ``configs/<experiment>.py`` as ``get_config(arg=None)``; they
start from :func:`base_config` so every experiment has the same keys, and
return a *locked* ConfigDict so a misspelt override fails loudly.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from nfscale import initializers


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config argument like ``"quick"`` or ``"quick,steps=200"`` (big_vision style).

  Bare words become ``True`` flags; ``key=value`` pairs are converted to the
  type of the default.

  Args:
    arg: the text after ``:`` in ``--config=file.py:arg``.
    **defaults: the accepted keys and their defaults.

  Returns:
    A ConfigDict of the parsed values.

  Raises:
    ValueError: for a key not in ``defaults``.
  """
  out = ml_collections.ConfigDict(defaults)
  for token in filter(None, (arg or "").split(",")):
    key, _, value = token.partition("=")
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r}; valid: {', '.join(defaults)}.")
    default = defaults[key]
    if not _:
      out[key] = True
    elif isinstance(default, bool):
      out[key] = value.lower() in ("1", "true", "yes")
    else:
      out[key] = type(default)(value)
  return out


def base_config() -> ml_collections.ConfigDict:
  """Keys common to every training experiment (unlocked; the caller fills and locks)."""
  c = ml_collections.ConfigDict()
  c.task = ""
  c.data = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({
      "hidden": (256, 256, 256, 256),
      "activation": "gaussian",
      "activation_params": ml_collections.ConfigDict(),
      "encoding": "identity",
      "encoding_params": ml_collections.ConfigDict(),
  })
  c.schemes = tuple(initializers.PAPER_SCHEMES)
  # Biases: "zeros" | "constant" | "torch"; first_bias "" = same as bias. omega (SIREN
  # schemes) unset = the activation's; set it only for an activation without one.
  c.scheme_params = ml_collections.ConfigDict(
      {"bias": "zeros", "bias_value": 0.01, "first_bias": "",
       "omega": ml_collections.config_dict.placeholder(float)})
  c.seeds = (0,)
  # Every (scheme, seed) is trained once per learning rate in the grid; the
  # results name each scheme's best rate (SPEC §6: per-scheme rates).
  c.lrs = (1e-3,)
  c.optimizer = "adam"
  c.optimizer_params = ml_collections.ConfigDict()
  c.steps = 1000
  c.chunk_steps = 50
  c.log_every = 50
  c.target_psnr = ml_collections.config_dict.placeholder(float)
  c.batch_size = 0  # 0: full batch
  c.data_range = 1.0
  c.seed = 0  # minibatch sampling
  c.progress = True
  return c


def arm(activation: str, encoding: str = "identity", **params: Any) -> ml_collections.ConfigDict:
  """One sweep arm: an activation (its params) and an encoding (``encoding_params``)."""
  enc = params.pop("encoding_params", {})
  return ml_collections.ConfigDict({
      "activation": activation, "activation_params": ml_collections.ConfigDict(params),
      "encoding": encoding, "encoding_params": ml_collections.ConfigDict(enc)})


def sweep_config() -> ml_collections.ConfigDict:
  """:func:`base_config` plus the keys of a scaling sweep (unlocked)."""
  c = base_config()
  c.arms = ml_collections.ConfigDict()
  c.sweep = ml_collections.ConfigDict({
      "arms": (),               # which of c.arms to run, in order
      "ns": (),                 # dataset sizes N
      "hidden_prefix": (),      # fixed hidden widths before the searched last one
      "start": 8,               # first width of the geometric ladder
      "growth": 2.0,
      "max_width": 4096,
      "min_width": 1,
      "rel_precision": 0.1,     # stop when (hi - lo) <= rel * hi
      "rule": "median",         # per lr: >= ceil(K/2) of K seeds reach the target
      # A point whose best rate is an end of the lr grid (and did not diverge
      # there) is searched again with the grid extended by lr_factor at that
      # end, at most lr_extensions times (0: never).
      "lr_extensions": 2,
      "lr_factor": 3.0,
      # Train the widths of a round in width buckets (nfscale.widths: padded
      # and masked, one compiled program per bucket): "auto" = on accelerators
      # only (on a CPU the padded units cost time in proportion).
      "buckets": "auto",
  })
  c.theory = ml_collections.ConfigDict({
      "enabled": True,          # eq. 4.6 width at init, per scheme and point
      "max_n": 1000,            # skip points with more samples (N x width SVDs)
      "start": 8,
      "max_width": 2 ** 14,
      "rel_precision": 0.1,
  })
  return c


#: ReLU-PE's embedding on 1-D inputs: the paper's 8-dimensional RFF.
RFF_1D: dict[str, Any] = {"dim": 8, "sigma": 5.0, "seed": 0}


def curve_protocol(c: ml_collections.ConfigDict) -> None:
  """The 1-D curve protocol shared by the curve and shallow-sweep configs (SPEC §4, §6).

  LeCun / Xavier / Kaiming normal and init1; random first-layer biases (zero
  biases make a sinc field even in x); full-batch gradient descent at every
  rate of {0.01, 0.03, 0.1}; 3 seeds; target 35 dB; 5000 steps.
  """
  c.schemes = ("lecun_normal", "xavier_normal", "kaiming_normal", "init1")
  c.scheme_params.first_bias = "torch"
  c.seeds = (0, 1, 2)
  c.optimizer = "sgd"
  c.lrs = (0.01, 0.03, 0.1)
  c.target_psnr = 35.0
  c.steps = 5000
