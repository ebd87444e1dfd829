r"""1-D curve fitting f(x) = sin 2pi x + sin 6pi x + sin 10pi x, schemes compared in one run.

Run:
  python -m launch.train --config=configs/curve1d.py:quick --workdir=runs/curve_quick
  python -m launch.train --config=configs/curve1d.py --workdir=runs/curve

One hidden layer with the sinc activation (omega = 30), full-batch gradient descent, the
learning-rate grid {0.01, 0.03, 0.1} (docs/protocol.md) and random first-layer biases (zero biases
make a sinc network even in x, so it cannot fit the odd target). Target 35 dB,
PSNR = 10 log10(1 / MSE).

Presets: ``quick`` (width 128, N = 100, 3000 steps, ~1 minute on a 2-core CPU);
``relu_pe`` switches to ReLU + an 8-dimensional random Fourier embedding (sigma 5).
"""

from nfscale import config_lib


def get_config(arg=None):
  """The curve config; ``arg`` picks presets and overrides (e.g. ``quick,points=50``)."""
  # points and width: 0 takes the preset's value (200 and 256; quick: 100 and 128).
  a = config_lib.parse_arg(arg, quick=False, relu_pe=False, points=0, width=0, steps=0)
  c = config_lib.base_config()
  c.task = "curve1d"
  c.data.num_points = 200
  c.data.dense_points = 2000
  c.model.hidden = (256,)
  c.model.activation = "sinc"
  c.model.activation_params.omega = 30.0
  if a.relu_pe:
    c.model.activation = "relu"
    c.model.activation_params = config_lib.ml_collections.ConfigDict()
    c.model.encoding = "rff"
    c.model.encoding_params = config_lib.ml_collections.ConfigDict(config_lib.RFF_1D)
  config_lib.curve_protocol(c)
  c.chunk_steps = c.log_every = 250
  if a.quick:
    c.data.num_points = 100
    c.model.hidden = (128,)
    c.seeds = (0,)
    c.steps = 3000
  if a.points:
    c.data.num_points = a.points
  if a.width:
    c.model.hidden = (a.width,)
  if a.steps:
    c.steps = a.steps
  c.lock()
  return c
