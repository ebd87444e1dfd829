"""The test session's persistent XLA compilation cache (set up by conftest.py).

Most of the suite's CPU time is XLA compiling small programs, and many tests build the
same ones again (a fresh closure per run: an identical program that JAX's in-memory
caches do not recognise). JAX's persistent compilation cache, keyed on the program
itself, serves those from disk: the same executables, in about a fifth less time.

One directory per pytest process, set in-process only: subprocesses (launchers, killed
runs, two-process sweeps) never share it, so no entry is read while another process
writes it or is left cut by a kill. A cache the user set (JAX_COMPILATION_CACHE_DIR) is
used as it is.
"""

import contextlib
import os
import shutil
import tempfile

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)
# The process's own settings (JAX's defaults unless JAX_COMPILATION_CACHE_DIR... is set).
AT_START = tuple(getattr(jax.config, name) for name in SETTINGS)


def _apply(values) -> None:
  for name, value in zip(SETTINGS, values):
    jax.config.update(name, value)
  jax_cache.reset_cache()  # JAX opens its cache once and keeps it otherwise


def start() -> str | None:
  """Turns the cache on in a fresh directory; None where the user set one."""
  if jax.config.jax_compilation_cache_dir:
    return None
  worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  directory = tempfile.mkdtemp(prefix=f"nfscale-tests-xla-{worker}-")
  _apply((directory, 0.0, 0))  # the tests' programs compile in well under JAX's 1 s
  return directory


def stop(directory: str | None) -> None:
  if directory:
    _apply(AT_START)
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def off():
  """The block runs without the session's cache, with the process's own settings.

  For what the cache changes: a sweep uses its workdir's own cache only when the
  process has none.
  """
  previous = tuple(getattr(jax.config, name) for name in SETTINGS)
  _apply(AT_START)
  try:
    yield
  finally:
    _apply(previous)
