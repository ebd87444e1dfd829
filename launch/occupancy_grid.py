r"""Times the dense-grid evaluation of an occupancy ensemble and reports its peak memory.

  python -m launch.occupancy_grid --config=configs/occupancy.py:quick --res=256
  python -m launch.occupancy_grid --config=occupancy:tiny --res=32

Builds the config's task and members (freshly initialised: the cost does not depend on
training), then evaluates every member on the ``res^3`` grid in chunks, computes the IoU
against the ground truth, and meshes and renders one member. Prints seconds per stage and
the process's peak resident memory and CPU time.

``--config`` is an occupancy config: a file or the bundled name ``occupancy``, then ``:``
and a preset with overrides (``occupancy:quick,steps=300``; presets: quick, paper, tiny);
``--config.KEY=VALUE`` sets any key, as in ``launch.train``. A bad flag, preset, key or
value, or a config of another task, ends with a one-line ``Error: ...``.
"""

import resource
import sys
import time

import numpy as np
from absl import flags
from ml_collections import config_flags

from nfscale import cli, experiment, surfaces
from nfscale.data import shapes
from nfscale.tasks import occupancy

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Occupancy config: a file or the bundled name, e.g. occupancy:quick.",
    lock_config=True,
)
# shapes.grid_axis needs at least 2 points per axis.
_RES = flags.DEFINE_integer("res", 256, "Grid points per axis (>= 2).", lower_bound=2)
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  config = _CONFIG.value
  if config.task != "occupancy":
    raise cli.UsageError(
        f"--config: this tool times occupancy configs; config.task is {config.task!r} "
        "(use e.g. --config=occupancy:quick)."
    )
  task, members = experiment.validate(config)
  params = experiment.init_params(config, task, members)
  res = _RES.value
  times = {}
  t = time.perf_counter()
  grids = occupancy.grid_predictions(task.model, params, res)
  times["field on grid"] = time.perf_counter() - t
  t = time.perf_counter()
  truth = shapes.occupancy_grid(occupancy.load_solid(config.data), res)
  times["ground truth grid"] = time.perf_counter() - t
  t = time.perf_counter()
  ious = [surfaces.grid_iou(g, truth) for g in grids]
  times["IoU (all members)"] = time.perf_counter() - t
  t = time.perf_counter()
  surfaces.marching_cubes(np.nan_to_num(grids[0].astype(np.float32)))
  times["marching cubes (one member)"] = time.perf_counter() - t
  t = time.perf_counter()
  surfaces.render_preview(grids[0].astype(np.float32))
  times["preview (one member)"] = time.perf_counter() - t
  peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f"{len(members)} members, hidden {tuple(config.model.hidden)}, {res}^3 grid")
  for k, v in times.items():
    print(f"  {k:<30}{v:8.1f} s")
  print(f"  IoU at init: {np.round(ious, 3).tolist()}")
  print(f"  peak resident memory: {peak_gb:.2f} GB; CPU time {time.process_time():.0f} s")


def run():
  """Entry point: :func:`nfscale.cli.run`'s config resolution and one-line errors."""
  cli.run(main, __doc__, sys.argv[0] if __name__ == "__main__" else __name__, configs=False)


if __name__ == "__main__":
  run()
