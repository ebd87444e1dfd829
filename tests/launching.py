"""Helpers of the launcher tests: run a launcher in a subprocess, check a one-line error."""

import pathlib
import subprocess
import sys

from nfscale import cli

ROOT = pathlib.Path(__file__).parents[1]


def launch(launcher, *args, cwd=ROOT):
  """``python -m launch.<launcher> *args`` from the checkout; the finished process."""
  return subprocess.run(
      [sys.executable, "-m", f"launch.{launcher}", *args],
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )


def assert_one_line_error(out, *needles):
  """Exit != 0; stderr is `Error: ...` plus the --help hint: no traceback, no flag help."""
  assert out.returncode != 0
  lines = [l for l in out.stderr.splitlines() if l.strip() and not l.startswith(("I", "W"))]
  assert len(lines) == 2, out.stderr
  assert lines[0].startswith("Error: ") and lines[1] in (cli.HELP_HINT, cli.FLAGS_HINT), out.stderr
  assert "Traceback" not in out.stderr and "FATAL" not in out.stderr
  help_page = ("--workdir: Output directory", "(a comma separated list)")
  assert not any(h in out.stderr + out.stdout for h in help_page)
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
