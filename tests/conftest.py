"""Fixtures shared by several test modules, and the session's compilation cache."""

import signal

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
def ctrl_c():
  """SIGINT raises KeyboardInterrupt during the test, as in an interactive session.

  A suite started as a background job by a shell without job control (``make test &``
  in a script) inherits SIGINT ignored, and a process that ignores Ctrl-C is rightly
  left alone by nfscale. A subprocess started in the test starts with SIGINT at its
  default (exec resets a handler, but keeps an ignored signal ignored).
  """
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def x64():
  """Enables jax_enable_x64 for one test and restores the previous value."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)
