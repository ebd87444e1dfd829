r"""Re-evaluates and re-renders a trained run from its workdir alone, without training.

  python -m launch.render --workdir=runs/image_quick
  nfscale-render --workdir=runs/image_quick    # after pip install

Reads the workdir's config.json and its last checkpoint; rewrites results.json and the
figures (the same as ``launch.train`` with the run's config and ``--config.mode=eval``).
"""

import sys

from absl import flags

from nfscale import cli, experiment

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by launch.train.", required=True)


def main(argv):
  del argv
  results = experiment.rerender(_WORKDIR.value)
  print(experiment.format_table(results))
  print(
      f"\nresults: {_WORKDIR.value}/results.json   plots: "
      + ", ".join(f"{_WORKDIR.value}/{a}" for a in results["artifacts"])
  )


def run():
  """Console-script entry point (``nfscale-render``)."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__, configs=False)


if __name__ == "__main__":
  run()
