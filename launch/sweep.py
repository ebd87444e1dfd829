r"""Runs (or resumes) a scaling-law sweep and writes its table, fits and plots.

  python -m launch.sweep --config=configs/scaling_shallow.py:quick --workdir=runs/shallow_quick

Rerunning the same command resumes; ``--report_only`` re-renders from finished points
(e.g. after several hosts each ran their share) and, like a run, refuses a config that
differs from the workdir's. A second sweep started on a running sweep's workdir refuses
at once, naming the running one's pid. Multi-host: set NFSCALE_DISTRIBUTED=1
(calls ``jax.distributed.initialize()``); host i takes points i, i+H, ...
"""

from absl import app, flags
from ml_collections import config_flags

from nfscale import sharding, sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the report.")
_HOST = flags.DEFINE_string("host", "", "'index/count' to split points by hand "
                            "(default: jax.process_index()/jax.process_count()).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  sharding.maybe_initialize_distributed()
  try:
    host = sweep.parse_host(_HOST.value) if _HOST.value else None
    if _REPORT_ONLY.value:
      # write_report refuses a config other than the workdir's, like a run.
      report = sweep.write_report(_CONFIG.value, _WORKDIR.value)
    else:
      report = sweep.run_sweep(_CONFIG.value, _WORKDIR.value, host=host)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(sweep.format_report(report))
  print(f"\nworkdir: {_WORKDIR.value}  (table.md, table.csv, fits.json, "
        + ", ".join(report["artifacts"]) + ")")


if __name__ == "__main__":
  app.run(main)
