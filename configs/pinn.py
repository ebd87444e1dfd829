r"""2-D Navier-Stokes PINN, Gaussian-activated, all 8 schemes in one vmapped run (Fig. 8).

Run:
  python -m launch.train --config=configs/pinn.py:quick --workdir=runs/pinn_quick
  python -m launch.train --config=configs/pinn.py:paper --workdir=runs/pinn_paper
  python -m launch.train --config=configs/pinn.py:paper,path=/data/cylinder_nektar_wake.mat \
      --workdir=runs/pinn_wake

Presets (combine with overrides, e.g. ``:quick,steps=500``):
  quick  decaying Taylor-Green vortex (exact solution, nu = 0.01) on [-1, 1]^2 x [0, 5],
         1000 observed points, 3 hidden layers of 64, full-batch Adam, 1000 steps
         (a few minutes on a 2-core CPU).
  paper  the paper's network (3 hidden layers of 128) and Raissi's protocol: 5000
         observed points (u, v only; p is never observed), full-batch Adam, 10k steps;
         Taylor-Green by default or Raissi's cylinder wake from ``path``.
  tiny   seconds-long end-to-end test size (8x8 grid, 64 points, 2 schemes, 20 steps).

The network outputs (u, v, p) directly; ``model.parameterization="psi_p"`` gives
Raissi's stream-function form (continuity exact, one more derivative order).
The score is the PSNR of the total loss (data range 1); the PDE-loss PSNR, the
relative L2 errors of u, v, p and field plots are written beside it.
"""

from nfscale import config_lib


def get_config(arg=None):
  """The PINN config; ``arg`` picks a preset and overrides (see the module docstring)."""
  a = config_lib.parse_arg(arg, exclusive=("quick", "paper", "tiny"), steps=0, points=0, path="")
  c = config_lib.base_config()
  c.task = "pinn"
  c.data.name = "taylor_green"
  c.data.path = ""  # Raissi's cylinder-wake .mat; wins over name
  c.data.nu = 0.01  # viscosity of the PDE (and of the Taylor-Green data)
  c.data.k = 3.141592653589793  # Taylor-Green wavenumber: one period over [-1, 1]
  c.data.grid = 64  # Taylor-Green: points per space axis
  c.data.num_times = 11  # Taylor-Green: time slices
  c.data.t_max = 5.0
  c.data.num_points = 5000  # observed (and collocation) points, drawn from data.seed
  c.data.seed = 0
  c.model.activation = "gaussian"
  c.model.activation_params.sigma = 0.2
  c.model.hidden = (128, 128, 128)
  c.model.parameterization = "uvp"
  # Random first-layer biases (PyTorch's U(+-1/sqrt(fan_in))): with zero biases a field
  # of an even activation is even in its input, f(-z) = f(z), and 91% of the velocity
  # of the Taylor-Green flow (in the normalised (x, y, t)) is odd: out of reach until
  # training has moved the biases (docs/protocol.md, section 1).
  c.scheme_params.first_bias = "torch"
  c.schemes = config_lib.initializers.PAPER_SCHEMES
  c.optimizer = "adam"
  c.lrs = (1e-3,)
  c.steps = 10000
  c.chunk_steps = c.log_every = 100
  c.checkpoint_every = 1000
  if a.quick or a.tiny:
    c.data.grid = 32
    c.data.num_points = 1000
    c.model.hidden = (64, 64, 64)
    c.steps = 1000
    c.chunk_steps = c.log_every = 50
    c.checkpoint_every = 250
  if a.tiny:  # the end-to-end test's size: seconds, not minutes
    c.data.grid = 8
    c.data.num_times = 3
    c.data.num_points = 64
    c.model.hidden = (16, 16)
    c.schemes = ("kaiming_uniform", "init2")
    c.steps = 20
    c.chunk_steps = c.log_every = 10
    c.checkpoint_every = 10
    c.progress = False
  if a.path:
    c.data.path = a.path
  if a.points:
    c.data.num_points = a.points
  if a.steps:
    c.steps = a.steps
  c.lock()
  return c
