r"""Re-evaluates and re-renders a trained run from its workdir alone, without training.

  python -m launch.render --workdir=runs/image_quick

Reads the workdir's config.json and its last checkpoint; rewrites results.json and the
figures (the same as ``launch.train`` with the run's config and ``--config.mode=eval``).
"""

from absl import app, flags

from nfscale import experiment

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by launch.train.",
                               required=True)


def main(argv):
  del argv
  try:
    results = experiment.rerender(_WORKDIR.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(experiment.format_table(results))
  print(f"\nresults: {_WORKDIR.value}/results.json   plots: "
        + ", ".join(f"{_WORKDIR.value}/{a}" for a in results["artifacts"]))


if __name__ == "__main__":
  app.run(main)
