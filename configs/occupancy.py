r"""Occupancy field of a 3-D shape, every initialization scheme in one vmapped run (paper Table 1).

A complex Gabor-wavelet (WIRE) network fits the 0/1 occupancy of a shape; each member is
scored by its train PSNR and the IoU of its thresholded (0.5) occupancy on a dense grid,
and its surface is exported by marching cubes (``mesh_<member>.ply``, ``occupancy.png``).

Run:
  python -m launch.train --config=configs/occupancy.py:quick --workdir=runs/occupancy_quick
  python -m launch.train --config=configs/occupancy.py:paper --workdir=runs/occupancy_paper

Presets (combine with overrides, e.g. ``:quick,steps=300``; a mesh or voxel file with
``--config.data.path=statue.ply``):
  quick  the embedded "trophy" shape, a 32^3 grid plus 32k near-surface points, 2 hidden
         layers of 64, the paper's 8 schemes, Adam, minibatches of 8192, 600 steps, IoU on
         a 96^3 grid (a few minutes on a 2-core CPU).
  paper  a 128^3 grid plus 1M near-surface points, 3 hidden layers of 256, minibatches of
         2^16, 3000 steps, IoU on a 256^3 grid, 3 seeds. The paper's Thai statue is not
         shipped: give it (or any mesh) with ``data.path``.

Gabor omega0 = s0 = 10 (WIRE's later defaults). Biases: zero, except the first layer's,
which start as PyTorch's U(+-1/sqrt(fan_in)) (as in WIRE's code): with zero first-layer
biases every first-layer wavelet is centred on a plane through the origin.
"""

from nfscale import config_lib


def get_config(arg=None):
  """The occupancy config; ``arg`` picks a preset and overrides (see above)."""
  a = config_lib.parse_arg(
      arg,
      exclusive=("quick", "paper", "tiny"),
      steps=0,
      shape="trophy",
  )
  c = config_lib.base_config()
  c.task = "occupancy"
  c.data.name = a.shape  # an embedded procedural shape
  c.data.path = ""  # a mesh (.obj/.ply/.stl/.off) or voxel (.npy/.mat) file; wins
  c.data.key = ""  # the variable of a .mat voxel file ("" = its only 3-D array)
  c.data.grid_res = 64  # training grid points per axis
  c.data.num_surface = 200_000  # extra training points near the surface
  c.data.jitter = 1.0  # their distance from boundary voxels, in voxels per axis
  c.data.eval_res = 128  # IoU grid points per axis
  c.data.seed = 0
  c.model.activation = "gabor"
  c.model.activation_params.omega0 = 10.0
  c.model.activation_params.s0 = 10.0
  c.model.hidden = (256, 256)
  c.schemes = config_lib.initializers.PAPER_SCHEMES
  c.scheme_params.first_bias = "torch"
  c.optimizer = "adam"
  # WIRE's occupancy rate; at 100 quick steps it beat 1e-3 for all 8 schemes (+1 to +3 dB).
  c.lrs = (5e-3,)
  c.batch_size = 1 << 14
  c.steps = 2000
  c.chunk_steps = c.log_every = 100
  if a.quick:
    c.data.grid_res = 32
    c.data.num_surface = 32_768
    c.data.eval_res = 96
    c.model.hidden = (64, 64)
    c.batch_size = 8192
    c.steps = 600
    c.chunk_steps = c.log_every = 50
  elif a.tiny:  # the end-to-end test: seconds
    c.data.grid_res = 12
    c.data.num_surface = 512
    c.data.eval_res = 16
    c.model.hidden = (8, 8)
    c.schemes = ("init2", "lecun_normal")
    c.batch_size = 256
    c.steps = 10
    c.chunk_steps = c.log_every = 5
    c.progress = False
  elif a.paper:
    c.data.grid_res = 128
    c.data.num_surface = 1_000_000
    c.data.eval_res = 256
    c.model.hidden = (256, 256, 256)
    c.batch_size = 1 << 16
    c.seeds = (0, 1, 2)
    c.steps = 3000
  if a.steps:
    c.steps = a.steps
  c.lock()
  return c
