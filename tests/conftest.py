"""Fixtures shared by several test modules."""

import jax
import pytest


@pytest.fixture
def x64():
  """Enables jax_enable_x64 for one test and restores the previous value."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)
