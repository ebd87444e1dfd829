"""What the sweep's statistics mean, measured on synthetic data with a known answer.

Run: ``python benchmarks/search_statistics.py`` (about 10 seconds on a 2-core CPU).

1. Coverage of ``scaling.fit_power_law``'s bootstrap "95%" interval for the exponent:
   datasets ``y = 3 N^1.5`` times log-normal noise, at the quick presets' 5 values of N,
   the deep quick preset's 5 and the paper's 9; beside it, the Student-t interval of the
   same least-squares slope (``b_ci_t``).
2. What the width search returns when success is not monotone in the width: each width
   succeeds with a probability that rises smoothly (logistic in log width) through 50% at
   a threshold ``t``; ``scaling.min_width_search_joint`` (the sweep's search) then returns
   a width near ``t``, above the smallest width that happened to succeed.

docs/guide.md (section 4) and ``fit_power_law``'s docstring quote these numbers.
"""

import numpy as np

from nfscale import scaling

EXPONENT = 1.5
N_SETS = {
    "quick (5 points, N = 10-200)": [10, 20, 50, 100, 200],
    "deep quick (5 points, N = 256-1024)": [256, 384, 512, 768, 1024],
    "paper (9 points, N = 10-200)": [10, 20, 50, 75, 100, 125, 150, 175, 200],
}


def coverage(ns: list[int], sigma: float, reps: int, rng: np.random.Generator) -> tuple:
  """Fractions of datasets whose bootstrap and t intervals hold the true exponent."""
  n = np.asarray(ns, float)
  boot = t_hits = 0
  for _ in range(reps):
    y = 3 * n**EXPONENT * np.exp(rng.normal(0, sigma, n.size))
    fit = scaling.fit_power_law(n, y, n_boot=2000, seed=int(rng.integers(2**31)))
    boot += fit.b_ci[0] <= EXPONENT <= fit.b_ci[1]
    t_hits += fit.b_ci_t[0] <= EXPONENT <= fit.b_ci_t[1]
  return boot / reps, t_hits / reps


def crossing(seeds: int, spread: float, reps: int, rng: np.random.Generator) -> tuple:
  """Quantiles (5/50/95%) of found width / t and found width / smallest success."""
  to_t, to_smallest = [], []
  widths = np.arange(1, 1025)
  for _ in range(reps):
    t = float(np.exp(rng.uniform(np.log(20), np.log(400))))
    p = 1 / (1 + np.exp(-(np.log(widths) - np.log(t)) / spread))
    ok = (rng.random((seeds, widths.size)) < p).sum(0) >= int(np.ceil(seeds / 2))
    table = dict(zip(widths.tolist(), ok.tolist()))
    result = scaling.min_width_search_joint(
        lambda w, keys: {k: table[w] for k in keys},
        ["s"],
        start=8,
        max_width=1024,
        rel_precision=0.1,
    )["s"]
    if result.found:
      to_t.append(result.width / t)
      to_smallest.append(result.width / widths[ok][0])
  quantiles = lambda a: np.round(np.quantile(a, [0.05, 0.5, 0.95]), 2).tolist()  # noqa: E731
  return quantiles(to_t), quantiles(to_smallest)


def main() -> None:
  rng = np.random.default_rng(0)
  print("1. Coverage of the '95%' intervals of the exponent (1000 datasets each)")
  for name, ns in N_SETS.items():
    for sigma in (0.1, 0.3):
      boot, t = coverage(ns, sigma, 1000, rng)
      print(f"  {name}, noise sd {sigma}: bootstrap {boot:.0%}, Student-t {t:.0%}")
  print("2. Width search under non-monotone success (1000 thresholds each; rel_precision 0.1)")
  for seeds in (1, 3):
    for spread in (0.05, 0.15):
      to_t, to_smallest = crossing(seeds, spread, 1000, rng)
      print(
          f"  {seeds} seed(s), spread {spread}: found/t {to_t}, "
          f"found/smallest success {to_smallest} (5%, median, 95%)"
      )


if __name__ == "__main__":
  main()
