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

from nfscale import sweep

SETTINGS = sweep._CACHE_SETTINGS  # pylint: disable=protected-access
# The process's own settings (JAX's defaults unless JAX_COMPILATION_CACHE_DIR... is set).
AT_START = tuple(getattr(jax.config, name) for name in SETTINGS)


def _apply(values) -> None:
  for name, value in zip(SETTINGS, values):
    jax.config.update(name, value)
  sweep._reset_jax_cache()  # pylint: disable=protected-access


def start() -> str | None:
  """Turns the cache on in a fresh directory; None where the user set one."""
  if jax.config.jax_compilation_cache_dir:
    return None
  worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  directory = tempfile.mkdtemp(prefix=f"nfscale-tests-xla-{worker}-")
  sweep.enable_compilation_cache(directory)  # as a sweep's: every program, however quick
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
