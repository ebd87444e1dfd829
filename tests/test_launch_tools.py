"""launch.results_table and launch.occupancy_grid: bundled configs, one-line usage errors,
and results_table's refusal to pool runs of different experiments."""

import pytest

from nfscale import cli, io

import launching  # tests/launching.py

_launch, _assert_one_line_error = launching.launch, launching.assert_one_line_error


# --------------------------------------------------------------------------- #
# launch.occupancy_grid
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "args, needles",
    [
        # ConfigArgError used to be lost ("__init__() missing ... 'defaults'").
        (["--config=configs/occupancy.py:quik"], ["quik", "presets: quick, paper, tiny"]),
        (["--config=occupancy:quik"], ["quik", "presets: quick, paper, tiny"]),
        (["--config=occupancy:tiny", "--config.stepz=1"], ["--config.stepz", "steps"]),
        (["--config=occupancy:tiny", "--config.steps=-1"], ["config.steps", "in [1,", "-1"]),
        (["--config=occupancy:tiny", "--res=0"], ["--res=0", ">= 2"]),
        (["--config=occupancy:tiny", "--res=-4"], ["--res=-4", ">= 2"]),
        (["--config=image:quick"], ["--config", "occupancy", "'image'"]),
        (["--config=superres:tiny"], ["--config", "occupancy", "'superres'"]),
        (["--config=occupancy:tiny", "--ress=8"], ["ress"]),
    ],
)
def test_occupancy_grid_usage_errors_are_one_line(args, needles):
  _assert_one_line_error(_launch("occupancy_grid", *args), *needles)


def test_occupancy_grid_takes_a_bundled_config_name():
  out = _launch("occupancy_grid", "--config=occupancy:tiny", "--res=4")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "2 members, hidden (8, 8), 4^3 grid" in out.stdout
  assert "IoU at init" in out.stdout


def test_occupancy_grid_help():
  out = _launch("occupancy_grid", "--help")
  assert out.returncode == 0, out.stderr
  assert "--res" in out.stdout and "occupancy:quick" in out.stdout


# --------------------------------------------------------------------------- #
# launch.results_table (fake workdirs: a run's config.json and results.json)
# --------------------------------------------------------------------------- #
def _fake_run(path, config="superres:tiny", seeds=(0,), **overrides):
  """A finished run's files: the config's config.json and a results.json with its members."""
  c = cli.load_config(config).to_dict()
  c["seeds"] = list(seeds)
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    d = c
    for p in parents:
      d = d[p]
    d[leaf] = value
  metrics = {"superres": ("hr_psnr", "hr_ssim"), "occupancy": ("train_psnr", "iou")}[c["task"]]
  rows = []
  for scheme in c["schemes"]:
    for seed in seeds:
      for lr in c["lrs"]:
        row = {"member": len(rows), "label": scheme, "scheme": scheme, "seed": seed, "lr": lr}
        row.update({"final_psnr": 10.0 + seed, "reached_target": False, "steps_to_target": None})
        row.update({m: 0.5 + 0.1 * seed for m in metrics})
        rows.append(row)
  path.mkdir(parents=True)
  io.atomic_write_json(path / "config.json", c)
  io.atomic_write_json(path / "results.json", {"task": c["task"], "members": rows})
  return str(path)


def test_results_table_pools_the_seeds_of_one_experiment(tmp_path):
  a = _fake_run(tmp_path / "a")
  b = _fake_run(tmp_path / "b", seeds=(1, 2), seed=1, progress=True, checkpoint_every=5)
  out = _launch("results_table", f"--workdirs={a},{b}", "--metrics=hr_psnr,final_psnr")
  assert out.returncode == 0, out.stderr
  assert "| init1 | 3 | 0.600 [0.500, 0.700] | 11.000 [10.000, 12.000] |" in out.stdout


def test_results_table_paper_table_of_occupancy(tmp_path):
  occ = _fake_run(tmp_path / "occ", config="occupancy:tiny")
  out = _launch("results_table", f"--workdirs={occ}", "--metrics=iou", "--paper=table1")
  assert out.returncode == 0, out.stderr
  assert "| init2 | 1 | 0.500 | 24.5 | 0.91 |" in out.stdout


def test_results_table_help_exits_0():
  out = _launch("results_table", "--help")
  assert out.returncode == 0, out.stderr
  assert "--workdirs" in out.stdout and "--metrics" in out.stdout and "--paper" in out.stdout


@pytest.mark.parametrize(
    "case, needles",
    [
        ("missing", ["missing", "results.json", "finished run"]),
        ("unknown metric", ["metrics: foo", "hr_psnr"]),
        ("text metric", ["metrics: scheme", "hr_psnr"]),
        ("sizes differ", ["/A'", "/B'", "same experiment", "data.size: 16 vs 24"]),
        ("tasks differ", ["/A'", "/OCC'", "different tasks", "superres", "occupancy"]),
        ("steps differ", ["/A'", "/B3'", "data.size: 16 vs 24", "steps: 10 vs 3"]),
        ("seed twice", ["/A'", "/A0'", "seed 0 of init1"]),
        ("listed twice", ["listed twice"]),
        ("paper of another task", ["paper='table1'", "occupancy", "superres"]),
        ("interrupted", ["/I'", "interrupted run", "complete: false"]),
        ("no workdirs", ["--workdirs"]),
        ("no metrics flag", ["--metrics"]),
    ],
)
def test_results_table_usage_errors_are_one_line(case, needles, tmp_path):
  specs = {  # name: (config, seeds)
      "A": ("superres:tiny", (0,)),
      "A0": ("superres:tiny", (0, 1)),
      "B": ("superres:tiny,size=24", (0,)),
      "B3": ("superres:tiny,size=24,steps=3", (0,)),
      "OCC": ("occupancy:tiny", (0,)),
      "I": ("superres:tiny", (1,)),
  }

  def w(*names):
    return "--workdirs=" + ",".join(
        _fake_run(tmp_path / n, config=specs[n][0], seeds=specs[n][1]) for n in names
    )

  args = {
      "missing": lambda: [f"--workdirs={tmp_path / 'missing'}", "--metrics=hr_psnr"],
      "unknown metric": lambda: [w("A"), "--metrics=hr_psnr,foo"],
      "text metric": lambda: [w("A"), "--metrics=scheme"],
      "sizes differ": lambda: [w("A", "B"), "--metrics=hr_psnr"],
      "tasks differ": lambda: [w("A", "OCC"), "--metrics=final_psnr"],
      "steps differ": lambda: [w("A", "B3"), "--metrics=hr_psnr"],
      "seed twice": lambda: [w("A", "A0"), "--metrics=hr_psnr"],
      "listed twice": lambda: [w("A") + f",{tmp_path / 'A'}/", "--metrics=hr_psnr"],
      "paper of another task": lambda: [w("A"), "--metrics=hr_psnr", "--paper=table1"],
      "no workdirs": lambda: ["--metrics=hr_psnr"],
      "no metrics flag": lambda: [w("A")],
      "interrupted": lambda: [w("A", "I"), "--metrics=hr_psnr"],
  }[case]()
  if case == "interrupted":  # a re-evaluated run killed before its last step
    results = io.read_json(tmp_path / "I" / "results.json")
    io.atomic_write_json(tmp_path / "I" / "results.json", {**results, "complete": False})
  out = _launch("results_table", *args)
  _assert_one_line_error(out, *needles)
  assert not out.stdout.strip()


def test_config_differences_reads_a_missing_key_as_its_default():
  from nfscale import pooled

  c = cli.load_config("superres:tiny").to_dict()
  old = {k: v for k, v in c.items() if k != "remat"}  # written before remat existed
  assert not pooled.config_differences(old, c)
  assert pooled.config_differences(old, {**c, "remat": "full"}) == ['remat: "none" vs "full"']
  # diverge_factor was added later; a run without it flagged only NaN/Inf (LEGACY_VALUES).
  old = {k: v for k, v in c.items() if k != "diverge_factor"}
  assert pooled.config_differences(old, c) == ["diverge_factor: null vs 1000.0"]
  assert not pooled.config_differences(old, {**c, "diverge_factor": None})
  assert not pooled.config_differences(c, {**c, "seeds": [3], "seed": 3, "mode": "eval"})
  assert pooled.config_differences(c, {**c, "steps": 11}) == ["steps: 10 vs 11"]
