r"""Prints a markdown table of one or more runs' results, per scheme over seeds.

  python -m launch.results_table --workdirs=runs/sr,runs/sr_s12 --metrics=hr_psnr,hr_ssim
  python -m launch.results_table --workdirs=runs/occ --metrics=train_psnr,iou --paper=table1

Each metric shows its mean over the seeds found and, with several seeds, its [min, max].
``--metrics`` are numeric keys of the ``results.json`` member rows (e.g. ``hr_psnr``,
``iou``, ``final_psnr``). ``--paper=table1`` adds the paper's Table 1 (occupancy: train PSNR,
IoU) beside ours; it is refused for runs of another task.

Several workdirs are pooled only when they hold the same experiment apart from their seeds:
the same task and the same ``config.json`` except ``seeds``, ``seed`` and the keys that do not
change results (``progress``, ``mode``, ``overwrite``, ``checkpoint_every``), and no
(scheme, learning rate, seed) member in two of them. Otherwise, as for any bad input, the
command ends with a one-line ``Error: ...`` naming the workdirs and the differing keys.
The logic lives in ``nfscale.pooled``; this file only parses flags.
"""

from __future__ import annotations

import sys

from absl import flags

from nfscale import cli, pooled

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Run directories (with results.json).")
_METRICS = flags.DEFINE_list("metrics", None, "Numeric keys of the member rows, e.g. hr_psnr.")
_PAPER = flags.DEFINE_enum(
    "paper", "", ["", "table1"], "The paper's numbers to add: table1 (occupancy runs only)."
)
flags.mark_flags_as_required(["workdirs", "metrics"])


def main(argv):
  del argv
  print(pooled.table(_WORKDIRS.value, _METRICS.value, _PAPER.value))


def run():
  """Entry point: :func:`nfscale.cli.run`'s one-line errors and ``--help``."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__, configs=False)


if __name__ == "__main__":
  run()
