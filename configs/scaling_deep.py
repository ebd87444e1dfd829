r"""Deep scaling law (paper Fig. 3 right, Fig. 4): only the last hidden width grows.

Run:
  python -m launch.sweep --config=configs/scaling_deep.py:quick --workdir=runs/deep_quick
  python -m launch.sweep --config=configs/scaling_deep.py --workdir=runs/deep

Image regression on N randomly sampled pixels of the 512x512 astronaut (the paper's Lion
image is not available offline; ``--config.data.path=...`` takes any image), 4 hidden
layers (64, 64, 64, w) with only w searched; sinc vs ReLU + 16-dim random Fourier features;
the four normal schemes and the four uniform ones; target 25 dB train PSNR; Adam with a
learning-rate grid (full-batch gradient descent on images needs far more steps than a CPU
sweep affords: SPEC §6).

Presets: ``quick`` (a 64x64 image, N up to 2048, one seed).
"""

from nfscale import config_lib, initializers


def get_config(arg=None):
  """The deep sweep config (see the module docstring)."""
  a = config_lib.parse_arg(arg, quick=False)
  c = config_lib.sweep_config()
  c.task = "image"
  c.data.name = "astronaut"
  c.data.path = ""
  c.data.size = 512
  c.data.num_samples = 0     # set per point
  c.data.seed = 0
  c.model.hidden = ()
  c.arms.sinc = config_lib.arm("sinc", omega=30.0)
  c.arms.relu_pe = config_lib.arm("relu", "rff", encoding_params={"dim": 16, "sigma": 10.0,
                                                                  "seed": 0})
  c.sweep.arms = ("sinc", "relu_pe")
  c.sweep.ns = (1000, 5000, 10000, 25000, 50000, 100000, 150000, 200000)
  c.sweep.hidden_prefix = (64, 64, 64)
  c.schemes = tuple(initializers.PAPER_SCHEMES)
  c.scheme_params.first_bias = "torch"
  c.seeds = (0, 1, 2)
  c.optimizer = "adam"
  c.lrs = (1e-3, 3e-3)
  c.target = 25.0
  c.steps = 3000
  c.chunk_steps = 100
  c.sweep.start = 16
  c.sweep.max_width = 8192
  c.theory.max_n = 2000
  if a.quick:
    c.data.size = 64
    c.sweep.ns = (256, 512, 1024, 2048)
    c.seeds = (0,)
    c.lrs = (3e-3,)
    c.steps = 1000
    c.sweep.max_width = 1024
    c.sweep.rel_precision = 0.25
  c.lock()
  return c
