r"""Prints a markdown table of one or more runs' results, per scheme over seeds.

  python -m launch.results_table --workdirs=runs/sr,runs/sr_s12 --metrics=hr_psnr,hr_ssim
  python -m launch.results_table --workdirs=runs/occ --metrics=train_psnr,iou --paper=table1

Each metric shows its mean over the seeds found and, with several seeds, its [min, max].
``--paper=table1`` adds the paper's Table 1 (occupancy: train PSNR, IoU) beside ours.
"""

import os

from absl import app, flags

from nfscale import figures, io
from nfscale.tasks import occupancy

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Run directories (with results.json).")
_METRICS = flags.DEFINE_list("metrics", None, "Metric keys of the member rows.")
_PAPER = flags.DEFINE_enum("paper", "", ["", "table1"], "The paper's numbers to add.")
flags.mark_flags_as_required(["workdirs", "metrics"])


def main(argv):
  del argv
  rows = []
  for w in _WORKDIRS.value:
    path = os.path.join(w, "results.json")
    if not os.path.isfile(path):
      raise app.UsageError(f"{path!r} does not exist: is {w!r} a finished run?")
    rows += io.read_json(path)["members"]
  missing = [m for m in _METRICS.value if m not in rows[0]]
  if missing:
    raise app.UsageError(f"unknown metrics {missing}; the rows have: {', '.join(rows[0])}.")
  if _PAPER.value == "table1":
    print(
        figures.seed_table(
            rows, _METRICS.value, occupancy.PAPER_TABLE1, ["paper PSNR (dB)", "paper IoU"]
        )
    )
  else:
    print(figures.seed_table(rows, _METRICS.value))


if __name__ == "__main__":
  app.run(main)
