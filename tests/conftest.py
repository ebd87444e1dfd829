"""Fixtures shared by several test modules, and the session's compilation cache."""

import jax
import pytest

import xla_cache  # tests/xla_cache.py

_cache_dir = None


def pytest_configure(config):
  del config
  global _cache_dir
  _cache_dir = xla_cache.start()


def pytest_unconfigure(config):
  del config
  xla_cache.stop(_cache_dir)


@pytest.fixture
def x64():
  """Enables jax_enable_x64 for one test and restores the previous value."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)
