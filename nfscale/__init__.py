"""nfscale: initialization, activation and scaling laws for neural fields in JAX/Flax.

``import nfscale`` loads the library part (initializers, layers, activations,
encodings, models, metrics); the experiment stack is imported on first use, so
``nfscale.train``, ``nfscale.experiment``, ``nfscale.configs`` and every other
submodule work after a plain ``import nfscale``.
"""

from importlib import import_module as _import_module
from importlib import util as _import_util

from nfscale import activations, encodings, initializers, layers, metrics, models
from nfscale.activations import get_activation, list_activations
from nfscale.encodings import get_encoding, list_encodings
from nfscale.initializers import (
    PAPER_SCHEMES,
    Scheme,
    SchemeUsageError,
    filter_hparams,
    get_scheme,
    list_schemes,
    register_scheme,
)
from nfscale.layers import Dense, Linear
from nfscale.models import NeuralField, make_field, param_count

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "Linear",
    "NeuralField",
    "PAPER_SCHEMES",
    "Scheme",
    "SchemeUsageError",
    "activations",
    "encodings",
    "filter_hparams",
    "get_activation",
    "get_encoding",
    "get_scheme",
    "initializers",
    "layers",
    "list_activations",
    "list_encodings",
    "list_schemes",
    "load",
    "make_field",
    "metrics",
    "models",
    "param_count",
    "register_scheme",
]


def __getattr__(name):
  # nfscale.load and the submodules (nfscale.experiment, nfscale.train, nfscale.configs...)
  # pull in the experiment stack (tasks, plots, orbax): imported on first use, so
  # `import nfscale` stays light. Without this, `nfscale.experiment.run(...)` after a plain
  # `import nfscale` raised AttributeError.
  if name == "load":
    from nfscale.experiment import load

    return load
  if not name.startswith("_") and _import_util.find_spec(f"{__name__}.{name}") is not None:
    return _import_module(f"{__name__}.{name}")
  raise AttributeError(f"module 'nfscale' has no attribute {name!r}")
