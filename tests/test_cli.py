"""The launchers' command line: configs by name, --help catalog, one-line usage errors."""

import copy
import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from nfscale import cli, config_lib, experiment

import launching  # tests/launching.py

ROOT = pathlib.Path(__file__).parents[1]
LAUNCHERS = {"train": "image:quick", "sweep": "scaling_shallow:tiny"}


_launch, _assert_one_line_error = launching.launch, launching.assert_one_line_error


def test_launchers_start_without_matplotlib():
  # matplotlib was a quarter of a launcher's start (--help, a config error): it now
  # loads with the first figure.
  code = "import sys, launch.train, nfscale.sweep; print('matplotlib' in sys.modules)"
  out = subprocess.run(
      [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == "False", out.stdout


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_help_lists_configs_presets_and_main_keys(launcher):
  out = _launch(launcher, "--help")
  assert out.returncode == 0, out.stderr
  for name in ("curve1d", "image", "scaling_deep", "scaling_shallow"):
    assert f"  {name}: " in out.stdout
  assert "presets: quick, demo, paper" in out.stdout  # image
  assert "presets: quick, tiny, sphere" in out.stdout  # scaling_shallow
  assert "model.activation=" in out.stdout and "steps=" in out.stdout
  assert "--workdir" in out.stdout


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
@pytest.mark.parametrize("case", ["key", "preset", "value", "name"])
def test_usage_errors_are_one_line(launcher, case, tmp_path):
  name, preset = LAUNCHERS[launcher].split(":")
  args = {
      "key": ([f"--config={name}:{preset}", "--config.stepz=5"], ["stepz", "steps"]),
      "preset": ([f"--config=configs/{name}.py:quik"], ["quik", "presets: quick"]),
      "value": ([f"--config={name}:{preset}", "--config.steps=abc"], ["steps", "int"]),
      "name": (["--config=imag:quick"], ["imag", "curve1d, image"]),
  }[case]
  out = _launch(launcher, *args[0], f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(out, *args[1])
  assert not (tmp_path / "w").exists()  # nothing written


def test_missing_workdir_is_one_line(tmp_path):
  out = _launch("train", "--config=image:quick")
  _assert_one_line_error(out, "workdir")


def test_render_of_a_missing_run_is_one_line(tmp_path):
  out = _launch("render", f"--workdir={tmp_path / 'nothing'}")
  _assert_one_line_error(out, "nothing")
  assert "--workdir" in _launch("render", "--help").stdout


def test_invalid_value_from_the_library_is_one_line(tmp_path):
  out = _launch(
      "train",
      "--config=image:quick,size=8,steps=2",
      "--config.optimizer=bogus",
      f"--workdir={tmp_path / 'w'}",
  )
  _assert_one_line_error(out, "bogus", "adam")


def test_train_by_name_from_another_directory_logs_progress(tmp_path):
  out = _launch(
      "train",
      "--config=image:quick,size=8,steps=4",
      "--config.schemes=('init1',)",
      "--config.chunk_steps=2",
      "--config.log_every=2",
      f"--workdir={tmp_path / 'w'}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "w" / "results.json").is_file()
  assert "init1" in out.stdout and "results.json" in out.stdout  # the final report
  # Status lines go through absl logging and progress through a tqdm bar (stderr).
  assert "] Training image into" in out.stderr
  assert "4/4 [" in out.stderr  # tqdm's "n/total [elapsed<remaining" at the end


def test_params_groups_and_none_from_the_command_line(tmp_path):
  # ml_collections' flags can neither add a key to an empty group nor set None, so the
  # exponential schedule, an optimizer's options, another activation's parameters and
  # clearing the target were out of reach of the command line.
  out = _launch(
      "train",
      "--config=curve1d:quick,steps=6",
      "--config.optimizer=sgd",
      "--config.optimizer_params.momentum=0.9",
      "--config.schedule=exponential",
      "--config.schedule_params.decay_rate=0.5",
      "--config.schedule_params.transition_steps",  # the spaced form too
      "3",
      "--config.model.activation=sine",
      "--config.model.activation_params={'omega': 20.0}",
      "--config.target=None",
      f"--workdir={tmp_path / 'w'}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  stored = json.loads((tmp_path / "w" / "config.json").read_text())
  assert stored["optimizer_params"] == {"momentum": 0.9}
  assert stored["schedule_params"] == {"decay_rate": 0.5, "transition_steps": 3}
  assert stored["model"]["activation_params"] == {"omega": 20.0}
  assert stored["target"] is None
  config = cli.load_config("curve1d:quick")
  with pytest.raises(cli.UsageError, match="a group takes a dict"):
    cli.split_deferred(config, ["--config.model.activation_params=3"])
  # Only placeholders take None, and only *_params groups take new keys.
  argv = ["--config.steps=None", "--config.model.depth=3"]
  assert cli.split_deferred(config, argv) == (argv, [])


@pytest.mark.parametrize(
    "arg,message",
    [
        ("--config.optimizer_params.b1=nan", "config.optimizer_params: .* not finite"),
        ("--config.optimizer_params.b1=-inf", "config.optimizer_params: .* not finite"),
        ("--config.model.activation_params={'omega': inf}", "omega must be positive and finite"),
    ],
)
def test_nan_and_inf_in_params_groups_are_floats(arg, message):
  # They reached the config as the strings 'nan' and "{'omega': inf}" (then "a group
  # takes a dict"), not as the numbers the numeric checks refuse.
  config = cli.load_config("curve1d:quick")
  with config.unlocked():
    config.optimizer = "adam"
  rest, deferred = cli.split_deferred(config, [arg])
  assert rest == [] and isinstance(next(iter(_leaf_values(deferred[0][1]))), float)
  cli.apply_deferred(config, deferred)
  with pytest.raises(ValueError, match=message):
    experiment.validate(config)
  # Words stay strings: a scheme's bias mode, a list of names.
  assert cli._literal("torch") == "torch" and cli._literal("init1,init2") == "init1,init2"


def _leaf_values(value):
  return value.values() if isinstance(value, dict) else [value]


def test_comma_list_of_names_splits():
  # ml_collections reads `--config.schemes=init1,init2` as the one name 'init1,init2'
  # (then an unknown scheme), while `--config.lrs=0.01,0.02` parses as a tuple: the
  # same list syntax now works for names too.
  config = cli.load_config("curve1d:quick")
  argv = [
      "--config.schemes=init1, init2",
      "--config.lrs=0.01,0.02",
      "--config.schemes=('siren',)",
      "--config.task=image,x",
  ]
  rest, deferred = cli.split_deferred(config, argv)
  assert deferred == [("schemes", ("init1", "init2"))]
  assert rest == argv[1:]  # literals, numbers and plain strings stay with ml_collections
  cli.apply_deferred(config, deferred)
  assert config.schemes == ("init1", "init2")


def test_resolve_and_check_in_process(tmp_path, monkeypatch):
  assert cli.resolve_config("image:quick").endswith("image.py:quick")
  assert cli.resolve_config("configs/image.py:quick") == "configs/image.py:quick"
  # A workdir named like a config (`--workdir=image`, run from its parent) used to hide
  # the bundled config, so the same command failed when run again.
  monkeypatch.chdir(tmp_path)
  (tmp_path / "image").mkdir()
  assert cli.resolve_config("image:quick").endswith("configs/image.py:quick")
  (tmp_path / "notes.md").write_text("# not a config")
  with pytest.raises(cli.UsageError, match=r"not a Python config file"):
    cli.load_config("notes.md:quick")
  monkeypatch.undo()
  config = cli.load_config("image:quick,steps=7")
  assert config.steps == 7
  cli.check_overrides(config, ["--config.model.hidden=(8,)", "--config.steps", "9"])
  with pytest.raises(cli.UsageError, match="Valid keys under model: model.activation"):
    cli.check_overrides(config, ["--config.model.widths=(8,)"])
  with pytest.raises(cli.UsageError, match="expected true or false"):
    cli.check_overrides(config, ["--config.progress=maybe"])
  with pytest.raises(cli.UsageError, match="is a group; set one of its keys"):
    cli.check_overrides(config, ["--config.model=3"])


def test_parse_arg_error_lists_presets_and_overrides():
  with pytest.raises(config_lib.ConfigArgError) as e:
    config_lib.parse_arg("fast", quick=False, size=0)
  assert e.value.presets == ["quick"] and e.value.overrides == {"size": 0}
  assert "'fast'" in str(e.value) and "presets: quick; overrides: size=<int>" in str(e.value)
  with pytest.raises(ValueError, match="size='x' is not of type int"):
    config_lib.parse_arg("size=x", quick=False, size=0)
  # A bare override word used to become True (size=True), quick=maybe quietly False.
  with pytest.raises(ValueError, match="'size' needs a value"):
    config_lib.parse_arg("size", quick=False, size=0)
  with pytest.raises(ValueError, match="quick='maybe' is not true or false"):
    config_lib.parse_arg("quick=maybe", quick=False, size=0)
  # The configs apply one of these presets: the other was dropped without a word.
  with pytest.raises(ValueError, match="presets quick and paper cannot be combined"):
    cli.load_config("image:quick,paper")
  # AbslFlags copies the exception; a copy used to fail and hide the message.
  copied = copy.copy(e.value)
  assert str(copied) == str(e.value) and copied.presets == ["quick"]


def test_curve_overrides_win_over_the_preset():
  # quick ignored width= and an explicit points=200 (it took 200 for "not given").
  c = cli.load_config("curve1d:quick,width=64,points=200")
  assert c.model.hidden == (64,) and c.data.num_points == 200
  c = cli.load_config("curve1d:quick")
  assert c.model.hidden == (128,) and c.data.num_points == 100


def test_orbax_info_lines_are_dropped_but_warnings_pass():
  import logging
  import os

  def record(path, level):
    return logging.LogRecord("absl", level, path, 1, "msg", None, None)

  orbax_file = os.path.join("site-packages", "orbax", "checkpoint", "checkpoint_manager.py")
  assert not cli.quiet_dependencies(record(orbax_file, logging.INFO))
  assert cli.quiet_dependencies(record(orbax_file, logging.WARNING))
  assert cli.quiet_dependencies(record(os.path.join("nfscale", "experiment.py"), logging.INFO))


def test_workdir_that_is_a_file_or_empty_is_one_line(tmp_path):
  (tmp_path / "f").write_text("")
  out = _launch("train", "--config=image:quick", f"--workdir={tmp_path / 'f'}")
  _assert_one_line_error(out, "exists and is not a directory")  # it was FileExistsError
  from nfscale import sweep  # the sweep's check is the same function, in-process here

  with pytest.raises(ValueError, match="exists and is not a directory"):
    sweep.run_sweep(cli.load_config("scaling_shallow:tiny"), str(tmp_path / "f"))
  with pytest.raises(ValueError, match="workdir is empty"):
    sweep.run_sweep(cli.load_config("scaling_shallow:tiny"), "")


@pytest.mark.usefixtures("ctrl_c")  # the child inherits an ignored SIGINT, not a handler
def test_ctrl_c_says_how_to_go_on_without_a_traceback(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, "-m", "launch.train", "--config=image:quick,steps=100000",
       "--config.progress=False", f"--workdir={tmp_path / 'w'}"],
      cwd=ROOT, stderr=subprocess.PIPE, text=True,
  )  # fmt: skip
  deadline = time.time() + 120
  while not (tmp_path / "w" / "metrics.jsonl").exists() and time.time() < deadline:
    time.sleep(0.2)  # training has started
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  assert "Traceback" not in err and "Interrupted. Run the same command again" in err


def test_a_size_beyond_memory_is_one_line(tmp_path):
  # NumPy's MemoryError (7 TiB for the curve's points) came out as a traceback. (The
  # curve's num_points=10**12 is now refused by its int32 bound: a 10^6 x 10^6 image.)
  out = _launch(
      "train",
      "--config=image:quick",
      "--config.data.size=1000000",
      f"--workdir={tmp_path / 'w'}",
  )
  _assert_one_line_error(out, "out of memory", "too large")
  assert not (tmp_path / "w").exists()


def test_device_out_of_memory_is_one_line():
  # XLA's RESOURCE_EXHAUSTED (a width too large for the device) came out as a traceback.
  code = (
      "from nfscale import cli\n"
      "def main(argv):\n"
      "  raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
      "8.00TiB.\\nmore lines')\n"
      "cli.run(main, 'doc', 'm', configs=False)\n"
  )
  out = subprocess.run(
      [sys.executable, "-c", code], cwd=launching.ROOT, capture_output=True, text=True
  )
  _assert_one_line_error(out, "out of device memory: RESOURCE_EXHAUSTED", "8.00TiB")
  code = code.replace("RESOURCE_EXHAUSTED", "INTERNAL")
  out = subprocess.run(
      [sys.executable, "-c", code], cwd=launching.ROOT, capture_output=True, text=True
  )
  assert "Traceback" in out.stderr  # other runtime errors keep theirs


def test_a_batch_beyond_int32_is_refused_before_the_workdir(tmp_path):
  out = _launch(
      "train",
      "--config=curve1d:quick",
      "--config.batch_size=1000000000000",
      f"--workdir={tmp_path / 'w'}",
  )
  _assert_one_line_error(out, "config.batch_size")
  assert not (tmp_path / "w").exists()


def test_a_group_the_config_lacks_is_named():
  # It read "Valid keys under render: ." for an image config, which has no render group.
  with pytest.raises(cli.UsageError, match="this config has no group 'render'"):
    cli.check_overrides(cli.load_config("image:quick"), ["--config.render.num_samples=4"])


def test_sweep_of_a_training_config_is_one_line(tmp_path):
  out = _launch("sweep", "--config=image:quick", f"--workdir={tmp_path / 'w'}", "--report_only")
  _assert_one_line_error(out, "not a sweep config", "launch.train")
  assert not (tmp_path / "w").exists()
