r"""Trains every member of an experiment config as one vmapped ensemble.

  python -m launch.train --config=configs/image.py:quick --workdir=runs/image_quick
  nfscale-train --config=image:quick --workdir=runs/image_quick    # after pip install

``--config`` is a config file or a bundled config's name, then ``:`` and a preset with
overrides (``image:quick,size=48``); ``--config.KEY=VALUE`` sets any key
(``--config.steps=100``). Rerunning the same command resumes from the workdir's last
checkpoint; a workdir holding a different run is refused unless
``--config.overwrite=True``; ``--config.mode=eval`` re-evaluates the last checkpoint
without training (``launch.render`` needs only the workdir). The logic lives in
``nfscale.experiment.run``; this file only parses flags.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

from nfscale import cli, experiment, sharding

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config: a file or a bundled name, e.g. image:quick.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  # One process: the ensemble shards over this machine's devices only. As
  # several processes (it used to start jax.distributed from the environment)
  # all but one were refused by the workdir lock, and the one left then hung in
  # its first checkpoint, which waits for every process, and failed.
  if sharding.distributed_settings() is not None:
    raise ValueError(
        "launch.train runs as a single process on this machine's devices; unset "
        f"{sharding.ENV_NUM_PROCESSES} and {sharding.ENV_OPT_IN} (several processes split "
        "a sweep: launch.sweep)."
    )
  logging.info("Training %s into %s", _CONFIG.value.task, _WORKDIR.value)
  results = experiment.run(_CONFIG.value, _WORKDIR.value)
  print(experiment.format_table(results))
  print(
      f"\nresults: {_WORKDIR.value}/results.json   plots: "
      + ", ".join(f"{_WORKDIR.value}/{a}" for a in results["artifacts"])
  )


def run():
  """Console-script entry point (``nfscale-train``)."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__)


if __name__ == "__main__":
  run()
