r"""Runs (or resumes) a scaling-law sweep and writes its table, fits and plots.

  python -m launch.sweep --config=configs/scaling_shallow.py:quick --workdir=runs/shallow_quick
  nfscale-sweep --config=scaling_shallow:quick --workdir=runs/shallow_quick  # pip install

Rerunning the same command resumes; ``--report_only`` re-renders from finished points
(e.g. after several hosts each ran their share) and, like a run, refuses a config that
differs from the workdir's. A second sweep started on a running sweep's workdir refuses
at once, naming the running one's pid.

Several hosts split the points (host i of H takes points i, i+H, ...) and each trains
on its own devices; process 0 writes the merged report once all have finished. The
same command runs on a cluster and as N local processes:

  python -m launch.sweep --config=... --workdir=shared/dir \
      --coordinator_address=10.0.0.1:12345 --num_processes=2 --process_id=0   # and =1

(or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID; NFSCALE_DISTRIBUTED=1 alone lets JAX detect a SLURM/TPU cluster).
The workdir must be on a file system every host sees.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

from nfscale import cli, sharding, sweep, sweep_report
from nfscale import io as nfio

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Sweep config: a file or a bundled name, e.g. scaling_shallow:quick.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the report.")
_HOST = flags.DEFINE_string(
    "host",
    "",
    "'index/count' to split points by hand (default: jax.process_index()/jax.process_count()).",
)
_COORD = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 for a multi-process run (or JAX_COORDINATOR_ADDRESS).",
)
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (or JAX_NUM_PROCESSES).")
_PID = flags.DEFINE_integer("process_id", None, "This process's id (or JAX_PROCESS_ID).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  sharding.initialize_distributed(_COORD.value, _NPROC.value, _PID.value)
  host = sweep.parse_host(_HOST.value) if _HOST.value else None
  if "sweep" not in _CONFIG.value:
    raise ValueError(
        "this is not a sweep config (it has no sweep group): train it with python -m "
        "launch.train (nfscale-train)."
    )
  if _REPORT_ONLY.value and host is not None:
    raise ValueError("--host splits the training; --report_only merges every host's points.")
  nfio.check_workdir_path(_WORKDIR.value)
  logging.info("Sweep %s into %s", ", ".join(_CONFIG.value.sweep.arms), _WORKDIR.value)
  if _REPORT_ONLY.value:
    # Keys the run predates are read as it ran; write_report refuses any other
    # difference from the workdir's config, like a run.
    config, adopted = sweep_report.as_run(_CONFIG.value, _WORKDIR.value)
    if adopted:
      print(
          "The run predates "
          + ", ".join(f"{k} (it ran as {v!r})" for k, v in adopted.items())
          + "; the report is built with those values."
      )
    report = sweep_report.write_report(config, _WORKDIR.value)
  else:
    report = sweep.run_sweep(_CONFIG.value, _WORKDIR.value, host=host)
  if report.get("report_written_by") == "report_only":  # one share of a split by hand
    print(
        f"points finished: {len(report['points'])} (all shares); this share is done. When "
        "every share is, run the same command with --report_only instead of --host to "
        "write the merged report."
    )
    return
  if "fits" not in report:  # another process of a multi-process run writes the report
    print(f"points finished: {len(report['points'])}; the report is written by process 0.")
    return
  print(sweep_report.format_report(report))
  print(
      f"\nworkdir: {_WORKDIR.value}  (table.md, table.csv, fits.json, "
      + ", ".join(report["artifacts"])
      + ")"
  )


def run():
  """Console-script entry point (``nfscale-sweep``)."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__)


if __name__ == "__main__":
  run()
