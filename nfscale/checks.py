"""Checks of user-given values, shared by the modules that read configs and hyperparameters.

A bool is not a number here (``True`` as a width or a seed is a mistake), and NumPy
scalars count like Python ones.

Example:
  >>> is_int(3), is_int(3.0), is_int(True), is_positive_finite(float("inf"))
  (True, False, False, False)
  >>> config_int({"sweep": {"start": 0}}, "sweep.start")
  Traceback (most recent call last):
  ...
  ValueError: config.sweep.start must be an integer >= 1, got 0.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def is_int(v: Any) -> bool:
  """An integer (Python or NumPy), not a bool or a float such as 2.0."""
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
  """A real number (Python or NumPy), not a bool or a string."""
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def array_hint(v: Any) -> str:
  """A hint for a JAX or NumPy array given where a Python number is needed, else ''.

  Settings such as omega are static (hashed, compared, baked into the trace), so a
  0-d array is refused rather than converted; the message says how to pass it.

  >>> array_hint(np.array(30.0))
  ' (an array: pass a Python number, float(x))'
  >>> array_hint(30.0)
  ''
  """
  if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.generic):
    return " (an array: pass a Python number, float(x))"
  return ""


def is_positive_finite(v: Any) -> bool:
  """A real number above zero and below infinity (NaN is neither)."""
  return is_real(v) and 0 < v < math.inf


#: The range of a positive setting that the device squares or inverts in float32 (a
#: Gaussian's 1 / sigma^2, a PSNR's range^2): inside it the result is a finite, non-zero
#: float32. Outside, 1e300 (finite in float64) became inf or a Python OverflowError.
FLOAT32_SCALE = (1e-18, 1e18)


def is_float32_scale(v: Any) -> bool:
  """A real number in :data:`FLOAT32_SCALE`.

  >>> is_float32_scale(0.1), is_float32_scale(1e300), is_float32_scale(1e-300)
  (True, False, False)
  """
  return is_real(v) and FLOAT32_SCALE[0] <= v <= FLOAT32_SCALE[1]


def config_value(config: Any, key: str) -> Any:
  """``config[a][b][c]`` for the dotted ``key = "a.b.c"``."""
  for part in key.split("."):
    config = config[part]
  return config


#: The most steps (and steps per chunk) a run takes: the engine counts steps in int32.
MAX_STEPS = 2**30

#: The most entries of a size the device indexes in int32 (points, samples per ray).
MAX_INT32 = 2**31 - 1

#: Seeds are int64 (``jax.random.key``'s range).
SEED_RANGE = (-(2**63), 2**63 - 1)


def config_int(config: Any, key: str, minimum: int = 1, maximum: int | None = None) -> int:
  """The dotted ``key`` of ``config`` as an int in ``[minimum, maximum]``, or a ValueError
  naming it."""
  v = config_value(config, key)
  if not is_int(v) or v < minimum or (maximum is not None and v > maximum):
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise ValueError(f"config.{key} must be an integer {bound}, got {v!r}.")
  return int(v)


def config_bool(config: Any, key: str) -> bool:
  """The dotted ``key`` as a bool, or a ValueError naming it: a switch is read by truth
  value, so the string "false" would count as on."""
  v = config_value(config, key)
  if not isinstance(v, (bool, np.bool_)):
    raise ValueError(f"config.{key} must be True or False, got {v!r}.")
  return bool(v)


def config_sequence(config: Any, key: str) -> tuple[Any, ...]:
  """The dotted ``key`` as a tuple, or a ValueError naming it for a string, a mapping or a
  scalar (a string was read one character at a time, a number was a TypeError).

  >>> config_sequence({"schemes": ["init1"]}, "schemes")
  ('init1',)
  """
  v = config_value(config, key)
  if isinstance(v, (str, bytes)) or hasattr(v, "keys") or not hasattr(v, "__iter__"):
    raise ValueError(f"config.{key} must be a sequence (a tuple or a list), got {v!r}.")
  return tuple(v)


def config_widths(config: Any, key: str) -> tuple[int, ...]:
  """The dotted ``key`` as a sequence of layer widths in ``[1, MAX_INT32]``, or a
  ValueError naming it (a string or a scalar is no sequence of widths)."""
  v = config_value(config, key)
  if (
      isinstance(v, (str, bytes))
      or not hasattr(v, "__iter__")
      or not all(is_int(w) and 0 < w <= MAX_INT32 for w in v)
  ):
    raise ValueError(
        f"config.{key} must be a sequence of integer widths in [1, {MAX_INT32}], got {v!r}."
    )
  return tuple(int(w) for w in v)


def config_number(
    config: Any, key: str, low: float, *, strict: bool = True, high: float = math.inf
) -> float:
  """The dotted ``key`` as a finite number above ``low`` (``strict=False``: at least it)
  and at most ``high``."""
  v = config_value(config, key)
  if not (is_real(v) and math.isfinite(v)) or (v <= low if strict else v < low) or v > high:
    bound = f"{'>' if strict else '>='} {low}" + (f" and <= {high}" if high < math.inf else "")
    raise ValueError(f"config.{key} must be a finite number {bound}, got {v!r}.")
  return float(v)
