r"""Shallow scaling law (paper Fig. 3 left): smallest 1-hidden-layer net reaching 35 dB vs N.

Run:
  python -m launch.sweep --config=configs/scaling_shallow.py:quick --workdir=runs/shallow_quick
  python -m launch.sweep --config=configs/scaling_shallow.py --workdir=runs/shallow

f(x) = sin 2pi x + sin 6pi x + sin 10pi x on N equispaced points of [-1, 1]; one hidden
layer; sinc (omega = 30) vs ReLU + 8-dim random Fourier features; LeCun / Xavier / Kaiming
normal and init1; full-batch gradient descent, best of the learning-rate grid; random
first-layer biases U(+-1/sqrt(fan_in)) (zero biases make a sinc field even in x: docs/protocol.md).
PSNR = 10 log10(1/MSE) on the training points, i.e. data range 1 (``data_range``), while the
target curve spans +-2.23 (peak-to-peak CURVE_RANGE = 4.46): 35 dB here is 48.0 dB in the
range-normalised definition 10 log10(range^2/MSE). ``range_psnr`` switches to that definition
(``data_range = CURVE_RANGE``), keeping the 35 dB number, i.e. a 19.9x larger MSE.

``sphere`` replaces the curve by the data the theorems assume (docs/protocol.md): N i.i.d. points on
the unit sphere of R^3 with labels U(-1, 1), so N samples carry N degrees of freedom
(nested: the points for N are the first N of any larger set); target 30 dB (data range 1;
the labels span 2, so it is 36.0 dB range-normalised).

Presets: ``quick`` (fewer N, one seed, shorter budget; <= 10 minutes on a 2-core CPU);
``range_psnr`` (see above; combines with the others);
``tiny`` (seconds; a smoke test of the machinery, not a measurement).
On this target the needed width saturates once N resolves the signal; the
measured exponent depends on omega, the step budget and the lr grid, all recorded in
the workdir's config.json.
"""

from nfscale import config_lib

#: Peak-to-peak range of sin 2pi x + sin 6pi x + sin 10pi x on [-1, 1] (max 2.2308).
CURVE_RANGE = 4.4617


def get_config(arg=None):
  """The shallow sweep config (see the module docstring)."""
  a = config_lib.parse_arg(arg, exclusive=("quick", "tiny"), sphere=False, range_psnr=False)
  c = config_lib.sweep_config()
  c.task = "curve1d"
  c.data.num_points = 0  # set per point
  c.data.dense_points = 2000
  c.model.hidden = ()
  c.arms.sinc = config_lib.arm("sinc", omega=30.0)
  c.arms.relu_pe = config_lib.arm("relu", "rff", encoding_params=config_lib.RFF_1D)
  c.sweep.arms = ("sinc", "relu_pe")
  c.sweep.ns = (10, 20, 50, 75, 100, 125, 150, 175, 200)
  config_lib.curve_protocol(c)
  c.chunk_steps = 500
  c.sweep.start = 8
  c.sweep.max_width = 4096
  c.theory.max_width = 2**14
  if a.sphere:  # the theorems' data: unit-norm i.i.d. inputs in R^3, U(-1, 1) labels
    c.task = "random_labels"
    c.data = config_lib.ml_collections.ConfigDict({"num_points": 0, "dim": 3, "seed": 0})
    c.arms.relu_pe.encoding_params.sigma = 1.0
    c.target = 30.0
  if a.range_psnr:  # labels U(-1, 1) span 2 on the sphere
    c.data_range = 2.0 if a.sphere else CURVE_RANGE
  if a.quick:
    c.sweep.ns = (10, 20, 50, 100, 200)
    c.seeds = (0,)
    c.lrs = (0.03, 0.1)
    c.steps = 3000
    c.sweep.max_width = 1024
    c.sweep.rel_precision = 0.25
    # Beyond N ~ 50 eq. 4.6 holds at no width up to 2^16 on this target
    # (sigma_min of the sinc features collapses), so quick skips those points.
    c.theory.max_n = 50
    c.theory.max_width = 2**12
    c.theory.rel_precision = 0.25
  if a.tiny:  # a seconds-long smoke run (the tests use it)
    c.sweep.arms = ("sinc",)
    c.sweep.ns = (6, 10, 14)
    c.schemes = ("lecun_normal", "init1")
    c.seeds = (0,)
    c.lrs = (0.1,)
    c.target = 20.0
    c.steps = 400
    c.chunk_steps = 200
    c.sweep.start = 2
    c.sweep.max_width = 64
    c.sweep.rel_precision = 0.25
    c.sweep.lr_extensions = 0  # a smoke run: one fixed rate
    c.theory.max_width = 256
    c.progress = False
  c.lock()
  return c
