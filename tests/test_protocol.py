"""Sweep protocol pieces: learning-rate grid extension, CI labelling, nested image subsets."""

import pathlib
import sys

import pytest

from nfscale import scaling, sweep, tasks
from nfscale.tasks import image

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
from configs import scaling_deep  # noqa: E402

GRID = (0.01, 0.03, 0.1)


@pytest.mark.parametrize(
    "outcomes,expected",
    [
        # Best rate inside the grid: the grid brackets it, no extension.
        ([(0.03, False)], None),
        ([(0.03, False), (0.03, True)], None),
        # Best at the top and did not diverge: extend upward (only).
        ([(0.1, False)], (0.01, 0.03, 0.1, 0.3)),
        ([(0.03, False), (0.1, False)], (0.01, 0.03, 0.1, 0.3)),
        # Best at the top but diverged there (for some seed): the top is already
        # too large, going further cannot help.
        ([(0.1, True)], None),
        # Best at the bottom, no divergence: extend downward.
        ([(0.01, False)], (0.00333, 0.01, 0.03, 0.1)),
        # Both ends best for different schemes: both ways.
        ([(0.01, False), (0.1, False)], (0.00333, 0.01, 0.03, 0.1, 0.3)),
        # No scheme reached the target: nothing to go by.
        ([], None),
    ],
)
def test_extension_triggers_exactly_at_an_undiverged_end(outcomes, expected):
  assert scaling.extend_lr_grid(GRID, outcomes) == expected


def test_single_rate_grid_extends_both_ways_and_rounds():
  assert scaling.extend_lr_grid([0.1], [(0.1, False)], factor=3) == (0.0333, 0.1, 0.3)
  assert scaling.extend_lr_grid([3e-3], [(3e-3, False)], factor=10) == (3e-4, 3e-3, 3e-2)


def test_extension_errors():
  with pytest.raises(ValueError, match="positive rates"):
    scaling.extend_lr_grid([], [])
  with pytest.raises(ValueError, match="factor must be > 1"):
    scaling.extend_lr_grid(GRID, [], factor=1.0)


def test_ci_meaningful_threshold():
  assert [scaling.ci_meaningful(k) for k in (3, 4, 5, 9)] == [False, False, True, True]


def test_image_subsets_are_nested_across_n():
  order = image.sample_order(64 * 64, 0)
  assert set(order[:1000]) <= set(order[:2000]) and len(set(order[:2000])) == 2000
  # Through the sweep's own data: every training pixel of N=1000 is in N=2000
  # (before this, the two draws shared a few pixels by chance).
  c = scaling_deep.get_config("quick")
  pixels = [
      {
          tuple(r)
          for r in tasks.build_task(sweep.point_config(c, "sinc", n, 16)).train_data["x"].tolist()
      }
      for n in (1000, 2000)
  ]
  assert len(pixels[0]) == 1000 and len(pixels[1]) == 2000 and pixels[0] <= pixels[1]
