r"""Config of the toy task (tests/toytask), trained by the ordinary launcher.

PYTHONPATH=tests python -m launch.train --config=tests/toytask/config.py --workdir=/tmp/toy
"""

from nfscale import config_lib


def get_config(arg=None):
  """A few seconds of training; ``arg`` may set ``points`` and ``steps``."""
  a = config_lib.parse_arg(arg, points=16, steps=60)
  c = config_lib.base_config()
  c.task = "toy_abs"
  c.task_module = "toytask"  # imported before the task lookup (also on resume / load)
  c.data.num_points = a.points
  c.model.hidden = (16,)
  c.model.activation = "relu"
  c.schemes = ("lecun_normal", "init1")
  c.lrs = (1e-2,)
  c.steps = a.steps
  c.chunk_steps = c.log_every = 20
  c.target = -0.02  # score units: stop at a mean absolute error of 0.02
  c.progress = False
  c.lock()
  return c
