r"""4x single-image super resolution, every initialization scheme in one vmapped run (paper Fig. 5).

The field is trained only through the forward operator y = A x (A: 4x area downsampling)
and scored against the high-resolution image (PSNR, SSIM), next to bicubic upsampling.

Run:
  python -m launch.train --config=configs/superres.py:quick --workdir=runs/superres_quick
  python -m launch.train --config=configs/superres.py:paper --workdir=runs/superres_paper

Presets (combine with overrides, e.g. ``:quick,image=camera,factor=2``):
  quick  128x128 astronaut (observed at 32x32), 2 hidden layers of 128, the paper's 8
         schemes, Adam, 500 steps (a few minutes on a 2-core CPU).
  paper  the paper's protocol on a 512x512 image (observed at 128x128): Gaussian sigma 0.1,
         2 hidden layers of 256, the 8 schemes, Adam, 3000 steps, 3 seeds. DIV2K is not
         bundled; give a DIV2K PNG with ``data.path`` (``--config.data.path=...``) for the
         paper's data. A non-square image is cropped to its centred square before it is
         resized (``:paper,size=0`` keeps the whole image at its own size).

Biases: zero, except the first layer's, which start as PyTorch's U(+-1/sqrt(fan_in)) (as in
WIRE's code, whose super-resolution setup the paper follows): with zero first-layer biases
every first-layer Gaussian ridge passes through the image centre. Measured on the quick
preset at 100 steps (2-core CPU): high-res PSNR +1.2 to +2.7 dB for six of the eight schemes,
-0.4 and -0.6 dB for Xavier normal and uniform.
"""

from nfscale import config_lib


def get_config(arg=None):
  """The super-resolution config; ``arg`` picks a preset and overrides (see above)."""
  a = config_lib.parse_arg(
      arg,
      exclusive=("quick", "paper", "tiny"),
      size=0,
      steps=0,
      factor=4,
      image="astronaut",
  )
  c = config_lib.base_config()
  c.task = "superres"
  c.data.name = a.image
  c.data.path = ""  # an image file; wins over data.name
  c.data.size = 256  # high-resolution side (0: keep the file's size)
  c.data.factor = a.factor
  c.model.activation = "gaussian"
  c.model.activation_params.sigma = 0.1
  c.model.hidden = (256, 256)
  c.schemes = config_lib.initializers.PAPER_SCHEMES
  c.scheme_params.first_bias = "torch"
  c.optimizer = "adam"
  c.lrs = (1e-3,)
  c.steps = 2000
  c.chunk_steps = c.log_every = 100
  if a.quick:
    c.data.size = 128
    c.model.hidden = (128, 128)
    c.steps = 500
    c.chunk_steps = c.log_every = 50
  elif a.tiny:  # the end-to-end test: seconds
    c.data.size = 16
    c.model.hidden = (16, 16)
    c.schemes = ("init1", "kaiming_uniform")
    c.steps = 10
    c.chunk_steps = c.log_every = 5
    c.progress = False
  elif a.paper:
    c.data.size = 512
    c.seeds = (0, 1, 2)
    c.steps = 3000
  if a.size:
    c.data.size = a.size
  if a.steps:
    c.steps = a.steps
  c.lock()
  return c
