r"""Trains every member of an experiment config as one vmapped ensemble.

  python -m launch.train --config=configs/image.py:quick --workdir=runs/image_quick

Rerunning the same command resumes from the workdir's last checkpoint; a workdir holding a
different run is refused unless ``--config.overwrite=True``; ``--config.mode=eval``
re-evaluates the last checkpoint without training (``launch.render`` needs only the
workdir). The logic lives in ``nfscale.experiment.run``; this file only parses flags.
"""

from absl import app, flags
from ml_collections import config_flags

from nfscale import experiment, sharding

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  sharding.maybe_initialize_distributed()
  try:
    results = experiment.run(_CONFIG.value, _WORKDIR.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(experiment.format_table(results))
  print(f"\nresults: {_WORKDIR.value}/results.json   plots: "
        + ", ".join(f"{_WORKDIR.value}/{a}" for a in results["artifacts"]))


if __name__ == "__main__":
  app.run(main)
