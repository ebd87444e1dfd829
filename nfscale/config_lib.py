"""Shared pieces of the ml_collections experiment configs.

Configs live in ``configs/<experiment>.py`` as ``get_config(arg=None)``; they
start from :func:`base_config` so every experiment has the same keys, and
return a *locked* ConfigDict so a misspelt override fails loudly.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from nfscale import initializers

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def parse_arg(
    arg: str | None, exclusive: tuple[str, ...] = (), **defaults: Any
) -> ml_collections.ConfigDict:
  """Parses a config argument like ``"quick"`` or ``"quick,steps=200"`` (big_vision style).

  Bare words set boolean presets to ``True``; ``key=value`` pairs are converted
  to the type of the default.

  Args:
    arg: the text after ``:`` in ``--config=file.py:arg``.
    exclusive: presets (``False`` by default) of which at most one may be given
      (the config applies one of them: ``quick,paper`` would silently drop one).
    **defaults: the accepted keys and their defaults.

  Returns:
    A ConfigDict of the parsed values.

  Raises:
    ConfigArgError: (a ``ValueError``) for a key not in ``defaults``, a value of
      the wrong type, a bare word that is not a preset, or two exclusive
      presets; the message lists the presets and overrides.

  Example:
    >>> parse_arg("quick,steps=200", quick=False, steps=0).steps
    200
  """
  defaults = {**{k: False for k in exclusive}, **defaults}
  out = ml_collections.ConfigDict(defaults)
  for token in filter(None, (arg or "").split(",")):
    key, eq, value = token.partition("=")
    if key not in defaults:
      raise ConfigArgError(f"unknown preset or argument {key!r}", defaults)
    default = defaults[key]
    if not eq:
      if not isinstance(default, bool):
        raise ConfigArgError(f"{key!r} needs a value ({key}=<{type(default).__name__}>)", defaults)
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in _TRUE + _FALSE:
        raise ConfigArgError(f"argument {key}={value!r} is not true or false", defaults)
      out[key] = value.lower() in _TRUE
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ConfigArgError(
            f"argument {key}={value!r} is not of type {type(default).__name__}", defaults
        ) from None
  chosen = [k for k in exclusive if out[k]]
  if len(chosen) > 1:
    raise ConfigArgError(f"presets {' and '.join(chosen)} cannot be combined", defaults)
  return out


class ConfigArgError(ValueError):
  """A bad ``--config=file.py:arg``; lists the config's presets and overrides.

  Attributes:
    presets: the boolean arguments (``quick``, ...), set by a bare word.
    overrides: the other arguments and their defaults, set by ``key=value``.
  """

  def __init__(self, problem: str, defaults: dict[str, Any] | None = None):
    # defaults=None: ml_collections' config loader re-raises the error as
    # type(e)(its own message), with one argument.
    self.problem, self.defaults = problem, defaults
    defaults = defaults or {}
    self.presets = [k for k, v in defaults.items() if isinstance(v, bool)]
    self.overrides = {k: v for k, v in defaults.items() if not isinstance(v, bool)}
    if self.defaults is None:
      super().__init__(problem)
      return
    over = ", ".join(f"{k}=<{type(v).__name__}>" for k, v in self.overrides.items())
    super().__init__(
        f"{problem}; valid presets: {', '.join(self.presets) or '(none)'}"
        + (f"; overrides: {over}" if over else "")
        + "."
    )

  def __reduce__(self):
    # Exceptions are rebuilt from self.args (the message alone) when copied or
    # pickled; absl's flag parser copies them.
    return type(self), (self.problem, self.defaults)


def base_config() -> ml_collections.ConfigDict:
  """Keys common to every training experiment (unlocked; the caller fills and locks)."""
  c = ml_collections.ConfigDict()
  c.task = ""
  # A task of your own: the module that registers it (imported before the
  # lookup, so resuming and nfscale.load find it too). Built-in tasks: "".
  c.task_module = ""
  c.data = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({
      "hidden": (256, 256, 256, 256),
      "activation": "gaussian",
      "activation_params": ml_collections.ConfigDict(),
      "encoding": "identity",
      "encoding_params": ml_collections.ConfigDict(),
      # Sine fields only: "off", or "auto" / "jax" / "pallas" to compute the sine
      # layers and the output layer as one nfscale.fused.sine_mlp (no stored
      # pre-activation; with pallas, no written gradient at a hidden output).
      "fused": "off",
  })
  c.schemes = tuple(initializers.PAPER_SCHEMES)
  # Biases: "zeros" | "constant" | "torch"; first_bias "" = same as bias. omega (SIREN
  # schemes) unset = the activation's; set it only for an activation without one.
  c.scheme_params = ml_collections.ConfigDict({
      "bias": "zeros",
      "bias_value": 0.01,
      "first_bias": "",
      "omega": ml_collections.config_dict.placeholder(float),
  })
  c.seeds = (0,)
  # Every (scheme, seed) is trained once per learning rate in the grid; the
  # results name each scheme's best rate (docs/protocol.md: per-scheme rates).
  c.lrs = (1e-3,)
  # Any optax optimizer taking a learning_rate (its other parameters in
  # optimizer_params), times a schedule: constant, cosine or exponential.
  c.optimizer = "adam"
  c.optimizer_params = ml_collections.ConfigDict()
  # Complex parameters (Gabor/WIRE fields): True: the optimizer sees each entry as two
  # real numbers (PyTorch's convention, which WIRE trained with: Adam keeps a second
  # moment for each part); False: optax's own complex handling (one |g|^2 per entry).
  c.complex_as_real = True
  c.schedule = "constant"
  c.schedule_params = ml_collections.ConfigDict()
  c.steps = 1000
  c.chunk_steps = 50
  c.log_every = 50
  # Members stop when the task's training score (PSNR for the regression
  # tasks) reaches it; None: train every member for all steps.
  c.target = ml_collections.config_dict.placeholder(float)
  # Loss above this multiple of a member's first loss: diverged, frozen.
  c.diverge_factor = ml_collections.config_dict.placeholder(float)
  c.diverge_factor = 1e3
  c.batch_size = 0  # 0: full batch
  c.data_range = 1.0
  c.seed = 0  # per-step rng: minibatch sampling, the loss's rng
  # Matmul precision of the training step: "default" (JAX's backend default: TF32 on
  # recent NVIDIA GPUs, float32 on CPU) | "highest" (float32) | "tf32" | "bf16" (bfloat16
  # inputs, float32 accumulation). See nfscale.train.PRECISIONS.
  c.precision = "default"
  # Recompute the forward pass in the backward pass instead of storing it: "none" |
  # "dots" (store only matmul outputs) | "full". Same results; see nfscale.train.REMAT.
  c.remat = "none"
  c.checkpoint_every = 500  # steps between checkpoints (0: only at the end)
  c.mode = "train"  # "eval": re-evaluate the workdir's last checkpoint, no training
  c.overwrite = False  # True: delete a different run found in the workdir
  c.progress = True
  return c


def arm(activation: str, encoding: str = "identity", **params: Any) -> ml_collections.ConfigDict:
  """One sweep arm: an activation (its params) and an encoding (``encoding_params``)."""
  enc = params.pop("encoding_params", {})
  return ml_collections.ConfigDict({
      "activation": activation,
      "activation_params": ml_collections.ConfigDict(params),
      "encoding": encoding,
      "encoding_params": ml_collections.ConfigDict(enc),
  })


#: Keys added to the configs after workdirs were first written whose addition changed
#: what a run does. A stored config that lacks one ran as given here, not at today's
#: default: divergence was flagged on NaN/Inf only, a sweep never extended its
#: learning-rate grid (nor for censored schemes, once it did), and complex
#: parameters met optax's own complex updates.
LEGACY_VALUES: dict[str, Any] = {
    "diverge_factor": None,
    "sweep.lr_extensions": 0,
    "sweep.lr_censored": False,
    "complex_as_real": False,
}


def stored_defaults(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a workdir written before a key existed ran at: the key's default, or its
  :data:`LEGACY_VALUES` entry (``io.check_or_write_config``'s ``defaults``).

  Example:
    >>> d = stored_defaults(sweep_config())
    >>> d["sweep"]["lr_extensions"], d["diverge_factor"], d["sweep"]["growth"]
    (0, None, 2.0)
  """
  out = config.to_dict()
  for key, value in LEGACY_VALUES.items():
    *parents, last = key.split(".")
    node = out
    for part in parents:
      node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
      node[last] = value
  return out


def sweep_config() -> ml_collections.ConfigDict:
  """:func:`base_config` plus the keys of a scaling sweep (unlocked)."""
  c = base_config()
  c.arms = ml_collections.ConfigDict()
  c.sweep = ml_collections.ConfigDict({
      "arms": (),  # which of c.arms to run, in order
      "ns": (),  # dataset sizes N
      "hidden_prefix": (),  # fixed hidden widths before the searched last one
      "start": 8,  # first width of the geometric ladder
      "growth": 2.0,
      "max_width": 4096,
      "min_width": 1,
      "rel_precision": 0.1,  # stop when (hi - lo) <= rel * hi
      "rule": "median",  # per lr: >= ceil(K/2) of K seeds reach the target
      # A point whose best rate is an end of the lr grid (and did not diverge
      # there) is searched again with the grid extended by lr_factor at that
      # end, at most lr_extensions times (0: never).
      "lr_extensions": 2,
      "lr_factor": 3.0,
      # Censored schemes (no width reached the target) extend the grid too:
      # by their best score's rate at the widest width, or downward where
      # every rate diverged there (sweep._lr_outcomes).
      "lr_censored": True,
      # Train the widths of a round in padded, masked programs (nfscale.widths):
      # "on" (ladder rungs), "round" (a round's widths up to round_merge_max in
      # one program), "off" (one program per width), or "auto" ("on" on
      # accelerators, "round" on a CPU; see sweep.bucket_mode).
      "buckets": "auto",
      "round_merge_max": 256,
      # Members per compiled ensemble: 0 sizes batches from the device's free
      # memory (nfscale.membatch; one batch where the backend reports none,
      # e.g. a CPU); an out-of-memory error halves the batch and retries.
      "member_batch": 0,
  })
  c.theory = ml_collections.ConfigDict({
      "enabled": True,  # eq. 4.6 width at init, per scheme and point
      "max_n": 1000,  # skip points with more samples (N x width SVDs)
      "start": 8,
      "max_width": 2**14,
      "rel_precision": 0.1,
  })
  return c


#: ReLU-PE's embedding on 1-D inputs: the paper's 8-dimensional RFF.
RFF_1D: dict[str, Any] = {"dim": 8, "sigma": 5.0, "seed": 0}


def curve_protocol(c: ml_collections.ConfigDict) -> None:
  """The 1-D curve protocol shared by the curve and shallow-sweep configs (docs/protocol.md).

  LeCun / Xavier / Kaiming normal and init1; random first-layer biases (zero
  biases make a sinc field even in x); full-batch gradient descent at every
  rate of {0.01, 0.03, 0.1}; 3 seeds; target 35 dB; 5000 steps.
  """
  c.schemes = ("lecun_normal", "xavier_normal", "kaiming_normal", "init1")
  c.scheme_params.first_bias = "torch"
  c.seeds = (0, 1, 2)
  c.optimizer = "sgd"
  c.lrs = (0.01, 0.03, 0.1)
  c.target = 35.0
  c.steps = 5000
