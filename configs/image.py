r"""Image regression, every initialization scheme in one vmapped run (paper Fig. 1).

Run:
  python -m launch.train --config=configs/image.py:quick --workdir=runs/image_quick
  python -m launch.train --config=configs/image.py:demo --workdir=runs/demo
  python -m launch.train --config=configs/image.py:paper --workdir=runs/image_paper

Without a preset: the 256x256 astronaut, Gaussian activation, 4 hidden layers of 256,
the 4 normal schemes, Adam at lr 1e-3, 2000 steps (Fig. 1's image and network, trained
with Adam instead of the paper's full-batch gradient descent: one rate for every
scheme; ``paper`` is the paper's protocol).

Presets (combine with overrides, e.g. ``:quick,size=48``):
  quick  32x32 astronaut, 4 hidden layers of 64, 4 normal schemes, Adam, 300 steps
         (about a minute on a 2-core CPU).
  demo   64x64 astronaut, 4 hidden layers of 128, the paper's 8 schemes, Adam, 500 steps
         (``make demo``; about a minute on a 2-core CPU).
  paper  the paper's Fig. 1 protocol: Gaussian activation, 4 hidden layers of 256,
         full-batch gradient descent, init1 vs LeCun/Xavier/Kaiming normal; each scheme
         at every rate of a grid (full-batch GD needs a per-scheme rate:
         docs/protocol.md).
"""

from nfscale import config_lib

NORMAL_SCHEMES = ("init1", "lecun_normal", "xavier_normal", "kaiming_normal")


def get_config(arg=None):
  """The image config; ``arg`` picks a preset and overrides (see the module docstring)."""
  a = config_lib.parse_arg(
      arg,
      exclusive=("quick", "demo", "paper"),
      size=0,
      steps=0,
      image="astronaut",
  )
  c = config_lib.base_config()
  c.task = "image"
  c.data.name = a.image
  c.data.path = ""  # an image file; wins over data.name
  c.data.size = 256
  c.data.num_samples = 0  # 0: all pixels; else a random subset (scaling sweeps)
  c.data.seed = 0
  c.model.activation = "gaussian"
  c.model.activation_params.sigma = 0.1
  c.model.hidden = (256, 256, 256, 256)
  c.schemes = NORMAL_SCHEMES
  c.optimizer = "adam"
  c.lrs = (1e-3,)
  c.steps = 2000
  if a.quick:
    c.data.size = 32
    c.model.hidden = (64, 64, 64, 64)
    c.steps = 300
    c.chunk_steps = c.log_every = 25
  elif a.demo:
    c.data.size = 64
    c.model.hidden = (128, 128, 128, 128)
    c.schemes = config_lib.initializers.PAPER_SCHEMES
    c.steps = 500
    c.chunk_steps = c.log_every = 25
  elif a.paper:
    c.data.size = 256
    c.optimizer = "sgd"
    c.lrs = (0.3, 1.0, 3.0)
    c.steps = 5000
    c.chunk_steps = c.log_every = 100
  if a.size:
    c.data.size = a.size
  if a.steps:
    c.steps = a.steps
  c.lock()
  return c
