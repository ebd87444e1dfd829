"""Tasks, configs and the launcher end to end on tiny settings; bad input."""

import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from nfscale import configs, experiment, io
from nfscale.data import images
from nfscale.tasks import curve1d

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from configs import curve1d as curve_cfg  # noqa: E402
from configs import image as image_cfg  # noqa: E402

FILES = ("config.json", "metrics.jsonl", "results.json", "psnr.png")


def _tiny_image(**over):
  c = image_cfg.get_config("quick,size=16,steps=40")
  with c.unlocked():
    c.model.hidden = (16, 16)
    c.chunk_steps = c.log_every = 20
    c.progress = False
    for k, v in over.items():
      c[k] = v
  return c


def test_image_quick_writes_everything(tmp_path):
  c = _tiny_image()
  res = experiment.run(c, str(tmp_path))
  for f in FILES + ("reconstructions.png",):
    assert (tmp_path / f).stat().st_size > 0, f
  assert io.read_json(tmp_path / "config.json")["data"]["size"] == 16
  rows = io.read_jsonl(tmp_path / "metrics.jsonl")
  assert len(rows) == 3 * len(c.schemes)  # log steps 0, 20 and the last, 39, x members
  assert sorted({r["step"] for r in rows}) == [0, 20, 39]
  assert {r["scheme"] for r in rows} == set(c.schemes)
  assert [m["scheme"] for m in res["members"]] == list(c.schemes)
  for m in res["members"]:
    assert m["param_count"] == 2 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert 0 < m["full_ssim"] <= 1 and m["full_psnr"] > 5
    assert m["diverged"] is False and m["steps_trained"] == 40
  assert {s["scheme"] for s in res["summary"]} == set(c.schemes)
  assert json.loads((tmp_path / "results.json").read_text()) == res


def test_metrics_are_appended_once_per_log_step(tmp_path, monkeypatch):
  # Each append opens, locks and fsyncs the file: one per log step, not one per member.
  calls = []
  append = io.append_jsonl_lines
  monkeypatch.setattr(io, "append_jsonl_lines", lambda p, rows: calls.append(1) or append(p, rows))
  monkeypatch.setattr(io, "append_jsonl", lambda p, row: calls.append(1) or append(p, [row]))
  c = _tiny_image()
  experiment.run(c, str(tmp_path))
  rows = io.read_jsonl(tmp_path / "metrics.jsonl")
  assert len(calls) == 3 and len(rows) == 3 * len(c.schemes)  # steps 0, 20 and 39
  assert [r["member"] for r in rows] == list(range(len(c.schemes))) * 3


def test_curve_quick_reaches_target_and_stops(tmp_path):
  c = curve_cfg.get_config("quick,points=20,width=64,steps=1500")
  with c.unlocked():
    c.schemes = ("lecun_normal", "init1")
    c.lrs = (0.1,)
    c.target = 25.0
    c.progress = False
  res = experiment.run(c, str(tmp_path))
  assert (tmp_path / "fits.png").stat().st_size > 0
  lecun = res["members"][0]
  assert lecun["reached_target"] and 0 < lecun["steps_to_target"] <= 1500
  assert lecun["steps_trained"] == lecun["steps_to_target"]


def test_subset_of_pixels_and_planted_divergence(tmp_path):
  c = _tiny_image(lrs=(1e-3, 1e9), optimizer="sgd")
  with c.unlocked():
    c.data.num_samples = 100
    c.schemes = ("init1",)
  res = experiment.run(c, str(tmp_path))
  assert res["task_info"]["num_train_points"] == 100
  ok, bad = res["members"]
  assert not ok["diverged"] and bad["diverged"]
  # Frozen as soon as it blew up: it never trained the 40 steps.
  assert bad["steps_trained"] < 40 and ok["steps_trained"] == 40
  assert any("diverged" in n for n in res["notes"])


def test_unreached_target_is_reported(tmp_path):
  c = _tiny_image(target=90.0)
  res = experiment.run(c, str(tmp_path))
  assert all(not m["reached_target"] and m["steps_to_target"] is None for m in res["members"])
  assert any("no member reached" in n for n in res["notes"])


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("task", "nerf2", "valid tasks"),
        ("schemes", ("glorot",), "valid schemes"),
        ("lrs", (-1.0,), "learning rates"),
        ("optimizer", "bogus", "valid optimizers"),
        ("steps", -5, "config.steps"),
        ("steps", 0, "config.steps"),
        ("batch_size", -1, "config.batch_size"),
        ("schedule", "linear", "valid schedules"),
        ("mode", "render", "valid modes"),
        # Past int32/int64 these crashed in train.fit, after config.json was written.
        ("steps", 3_000_000_000, r"config.steps must be an integer in \[1, 1073741824\]"),
        ("seed", 2**70, "config.seed must be an integer in"),
        ("seeds", (2**64,), "config.seeds must hold integers in"),
        # An infinite range trained to NaN PSNRs and wrote a run of them.
        ("data_range", float("inf"), r"config.data_range must be a finite number >= 1e-18"),
        # Finite, but range**2 overflowed (OverflowError after config.json was written) or
        # was 0 in float32 (every PSNR NaN).
        ("data_range", 1e300, r"config.data_range must be a finite number >= 1e-18 and <= 1e"),
        ("data_range", 1e-300, r"config.data_range must be a finite number >= 1e-18 and <= 1e"),
    ],
)
def test_bad_config_fails_before_writing(tmp_path, field, value, match):
  (tmp_path / "keep.txt").write_text("precious")
  c = _tiny_image(**{field: value})
  with pytest.raises(ValueError, match=match):
    experiment.run(c, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


@pytest.mark.parametrize(
    "config,key,value",
    [
        # int() trained on 2 points for 2.5 and on 1 for True; None was a TypeError.
        ("curve1d", "num_points", 2.5),
        ("curve1d", "num_points", True),
        ("curve1d", "num_points", None),
        ("curve1d", "dense_points", 2.5),
        ("curve1d", "num_points", 10**12),  # beyond int32: NumPy's MemoryError
        ("image", "num_samples", 2.5),
        ("image", "size", 2.5),
        ("random_labels", "num_points", 2.5),
        ("random_labels", "dim", True),
    ],
)
def test_task_data_sizes_are_checked_by_key(config, key, value):
  if config == "image":
    c = _tiny_image()
  else:
    c = curve_cfg.get_config("quick")
    if config == "random_labels":
      c.task = "random_labels"
      c.data = ml_collections.ConfigDict({"num_points": 20, "dim": 3, "seed": 0})
  with c.unlocked(), c.data.ignore_type():
    c.data[key] = value
  with pytest.raises(ValueError, match=f"config.data.{key} must be an integer in"):
    experiment.validate(c)


@pytest.mark.parametrize(
    "key,value,message",
    [
        # The library's messages, which named no config key ("Invalid parameters ['x']
        # for activation 'sinc'"): the key at fault is now prepended.
        ("model.activation_params.x", 1.0, r"config.model.activation_params: Invalid param"),
        ("model.activation_params.omega", -1.0, "config.model.activation_params: omega must"),
        ("model.activation", "bogus", "config.model.activation: Unknown activation 'bogus'"),
        ("model.encoding_params.x", 1.0, "config.model.encoding_params: Invalid parameters"),
        ("optimizer_params.x", 1.0, "config.optimizer_params: Invalid parameters"),
        ("optimizer", "bogus", "config.optimizer: Unknown optimizer 'bogus'"),
        ("schedule_params.x", 1.0, "config.schedule_params: Schedule 'constant' takes no"),
        ("schedule", "bogus", "config.schedule: Unknown schedule 'bogus'"),
        ("scheme_params.bias", "bogus", "config.scheme_params: bias must be one of"),
        # These were TypeErrors (dict(None)) or "hidden widths and out_dim must be ...".
        ("model.activation_params", None, "config.model.activation_params must be a dict"),
        ("optimizer_params", None, "config.optimizer_params must be a dict"),
        ("model.activation_params", {1: 2.0}, "config.model.activation_params: keywords must"),
        ("model.hidden", (0,), "config.model.hidden must be a sequence of integer widths"),
        # Finite in float64 only (inf in float32): every member diverged at its first step.
        ("scheme_params.bias_value", 1e300, "config.scheme_params: bias_value must be a finite"),
        # These read "fused must be one of ...", "Unknown precision 'fp16'; ...".
        ("model.fused", "yes", r"config.model.fused: fused must be one of \('off'"),
        ("model.fused", "jax", r"config.model.fused: fused='jax' fuses sine layers"),
        ("precision", "fp16", "config.precision: Unknown precision 'fp16'; valid"),
        ("remat", "all", "config.remat: Unknown remat 'all'; valid"),
    ],
)
def test_model_and_optimizer_errors_name_the_config_key(key, value, message):
  c = curve_cfg.get_config("quick")
  *parents, last = key.split(".")
  node = c
  for part in parents:
    node = node[part]
  with c.unlocked(), node.ignore_type():
    node[last] = value
  with pytest.raises(ValueError, match=message):
    experiment.validate(c)


def test_non_finite_omega_without_a_siren_scheme_fails_before_writing(tmp_path):
  # No scheme of this config reads scheme_params.omega, so a NaN went unnoticed.
  c = _tiny_image()
  c.scheme_params.omega = float("nan")
  with pytest.raises(ValueError, match="config.scheme_params.omega must be a positive"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sigma", [1e300, 1e-300, 1e19])
def test_activation_parameter_beyond_float32_fails_before_writing(tmp_path, sigma):
  # Finite in float64 and checked as such: 0.5 / sigma**2 raised OverflowError (1e300) or
  # ZeroDivisionError (1e-300) in the first step's trace, after config.json was written;
  # omega=1e300 (inf in float32) trained every member to NaN.
  c = _tiny_image()
  c.model.activation_params.sigma = sigma
  with pytest.raises(ValueError, match=r"config.model.activation_params: sigma must be .* in \["):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "key,value,message",
    [
        # A config built from a dict (config.json, to_dict) holds what it was given:
        # "init1" was read one letter at a time ("Unknown scheme 'i'"), numbers were a
        # TypeError ("'float' object is not iterable"), "abc" a ValueError naming no key
        # (could not convert string to float) and "30" was taken as 30.0.
        ("schemes", "init1", "config.schemes must be a sequence"),
        ("lrs", 0.01, "config.lrs must be a sequence"),
        ("seeds", 0, "config.seeds must be a sequence"),
        ("target", "abc", "config.target must be a finite number or None"),
        ("target", "30", "config.target must be a finite number or None"),
        ("diverge_factor", "abc", r"config.diverge_factor must be > 1"),
        ("diverge_factor", (), r"config.diverge_factor must be > 1"),
    ],
)
def test_a_wrong_type_in_a_dict_built_config_is_named(tmp_path, key, value, message):
  d = _tiny_image().to_dict()
  d[key] = value
  with pytest.raises(ValueError, match=message):
    experiment.run(ml_collections.ConfigDict(d), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_bias_rules_a_scheme_cannot_take_fail_before_writing(tmp_path, monkeypatch):
  # A registered factory takes only the parameters it declares: the curve config's
  # first_bias="torch" was dropped for it, so it trained with zero first-layer biases while
  # config.json recorded torch.
  from nfscale import initializers

  monkeypatch.setattr(initializers, "_REGISTRY", dict(initializers._REGISTRY))

  @initializers.register_scheme("half_init1")
  def half_init1(c: float = 1.0):
    return initializers.get_scheme("powerlaw_normal", c=c)

  c = curve_cfg.get_config("quick,points=20,width=8,steps=10")
  c.schemes, c.progress = ("init1", "half_init1"), False
  assert c.scheme_params.first_bias == "torch"
  with pytest.raises(ValueError, match=r"scheme 'half_init1' takes \['c'\], so it would run"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  c.scheme_params.first_bias = "zeros"  # what it does: accepted
  assert len(experiment.validate(c)[1]) == 2 * len(c.seeds) * len(c.lrs)
  # A Scheme instance in config.schemes takes no parameters either.
  c.schemes = (initializers.get_scheme("init1"),)
  experiment.validate(c)
  c.scheme_params.bias = "torch"
  with pytest.raises(ValueError, match="takes no parameters, so it would run with biases"):
    experiment.validate(c)
  # Built-ins take every rule, also a constant without a bias_value (theirs: 0.01).
  c.schemes, c.scheme_params.bias = ("init1",), "constant"
  with c.unlocked():
    del c.scheme_params["bias_value"]
  experiment.validate(c)


def test_schemes_registered_by_the_task_module_are_found(tmp_path, monkeypatch):
  # config.task_module was imported only with the task, after the scheme names had been
  # checked: a scheme it registers was refused as unknown by launch.train and the sweep.
  from nfscale import initializers

  monkeypatch.setattr(initializers, "_REGISTRY", dict(initializers._REGISTRY))
  module = "nfscale_test_scheme_module"
  (tmp_path / f"{module}.py").write_text(
      "import nfscale\n"
      'nfscale.register_scheme("lecun_init1_last", '
      'nfscale.get_scheme("lecun_normal").replace(last="init1"))\n'
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  c = _tiny_image(task_module=module, schemes=("lecun_init1_last", "init1"))
  try:
    task, members = experiment.validate(c)
  finally:
    sys.modules.pop(module, None)
  assert [m.scheme for m in members] == ["lecun_init1_last", "init1"]


def test_negative_data_seed_is_named(tmp_path):
  # NumPy refused it in its own words ("expected non-negative integer"), naming no key.
  c = _tiny_image()
  c.data.num_samples, c.data.seed = 50, -1
  with pytest.raises(ValueError, match=r"config.data.seed must be an integer >= 0, got -1"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", ["overwrite", "progress", "complex_as_real"])
def test_non_bool_switch_is_refused(tmp_path, key):
  # Read by truth value: overwrite="false" deleted the different run in the workdir.
  c = _tiny_image().to_dict()
  c[key] = "false"
  with pytest.raises(ValueError, match=f"config.{key} must be True or False, got 'false'"):
    experiment.run(ml_collections.ConfigDict(c), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_bad_images(tmp_path):
  with pytest.raises(ValueError, match="valid names: astronaut"):
    images.load_image("lena")
  with pytest.raises(ValueError, match="does not exist"):
    images.load_image(path=str(tmp_path / "missing.png"))
  junk = tmp_path / "junk.png"
  junk.write_bytes(b"not an image")
  with pytest.raises(ValueError, match="could not read"):
    images.load_image(path=str(junk))


@pytest.mark.parametrize(
    "name,arg,key,value,message",
    [
        ("image", "quick", "name", "lena", "config.data.name: Unknown bundled image 'lena'; valid"),
        ("image", "quick", "path", "/nonexistent.png", "config.data.path: image path"),
        ("superres", "tiny", "name", "lena", "config.data.name: Unknown bundled image 'lena'"),
        ("superres", "tiny", "path", "/nonexistent.png", "config.data.path: image path"),
        ("occupancy", "tiny", "name", "cube", "config.data.name: Unknown procedural shape 'cube'"),
        ("occupancy", "tiny", "path", "/nonexistent.obj", "config.data.path: mesh file"),
        ("nerf", "tiny", "path", "/nonexistent", "config.data.path: Blender scene: directory"),
        ("pinn", "tiny", "path", "/nonexistent.mat", "config.data.path: flow data:"),
        ("pinn", "tiny", "num_points", 10**6, r"config.data.num_points must be in \[1, "),
    ],
)
def test_unknown_data_names_and_missing_files_name_the_key(name, arg, key, value, message):
  # They read "Unknown bundled image 'lena'; valid names: ...", "mesh file ... does not
  # exist" or "data.num_points must be in [1, 192]", naming no config key.
  c = configs.get(name, arg)
  c.data[key] = value
  with pytest.raises(ValueError, match=message):
    experiment.validate(c)


def test_image_from_path(tmp_path):
  from skimage import io as skio

  img = (np.random.default_rng(0).uniform(size=(20, 30, 3)) * 255).astype(np.uint8)
  skio.imsave(tmp_path / "x.png", img)
  loaded = images.load_image(path=str(tmp_path / "x.png"), size=None)
  np.testing.assert_allclose(loaded, img / 255.0, atol=1e-6)
  assert images.load_image("camera", size=24).shape == (24, 24, 1)


def test_locked_config_rejects_unknown_keys():
  c = image_cfg.get_config("quick")
  with pytest.raises(AttributeError):
    c.stepz = 3
  with pytest.raises(ValueError, match="valid"):
    image_cfg.get_config("quik")


def test_curve_target():
  x, y = curve1d.sample_points(5)
  np.testing.assert_allclose(
      y[:, 0],
      np.sin(2 * np.pi * x[:, 0]) + np.sin(6 * np.pi * x[:, 0]) + np.sin(10 * np.pi * x[:, 0]),
      atol=1e-5,
  )


def test_launcher_cli(tmp_path):
  cmd = [
      sys.executable,
      "-m",
      "launch.train",
      "--config=configs/image.py:quick,size=12,steps=10",
      "--config.model.hidden=(8,)",
      "--config.progress=False",
      f"--workdir={tmp_path}",
  ]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "init1" in out.stdout and "results.json" in out.stdout
  for f in FILES:
    assert (tmp_path / f).exists()
  bad = subprocess.run(
      cmd[:-1] + ["--config.data.name=lena", f"--workdir={tmp_path}/b"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert bad.returncode != 0 and "valid names" in bad.stderr
  # A misspelt key: test_cli.py's test_usage_errors_are_one_line.


def test_random_labels_task(tmp_path):
  from nfscale.tasks import random_labels

  x, y = random_labels.sample(50, 3, seed=1)
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
  assert np.abs(y).max() <= 1 and x.shape == (50, 3) and y.shape == (50, 1)
  x2, y2 = random_labels.sample(80, 3, seed=1)
  np.testing.assert_array_equal(x, x2[:50])  # nested: N points are a prefix of more
  np.testing.assert_array_equal(y, y2[:50])
  from configs import scaling_shallow

  from nfscale import sweep

  c = sweep.training_config(scaling_shallow.get_config("sphere,tiny"), "sinc", 20, 64)
  with c.unlocked():
    c.target = None
  res = experiment.run(c, str(tmp_path))
  assert res["task_info"] == {"num_points": 20, "dim": 3}
  assert (tmp_path / "fits.png").exists()
  assert all(m["best_psnr"] > 10 for m in res["members"])


def test_adam_blow_up_is_flagged_and_kept_off_the_plot_axes(tmp_path):
  # Issue: Adam at lr 1e6 ended at loss 6.8e9 and was reported as a normal member.
  c = _tiny_image(lrs=(1e-3, 1e6), steps=20)
  with c.unlocked():
    c.schemes = ("init1",)
  res = experiment.run(c, str(tmp_path))
  ok, bad = res["members"]
  assert not ok["diverged"] and bad["diverged"] and bad["final_loss"] > 1e3 * bad["initial_loss"]
  assert any("1000x initial" in n for n in res["notes"])
  rows = io.read_jsonl(tmp_path / "metrics.jsonl")
  assert sorted({r["step"] for r in rows}) == [0, 19]  # one chunk still gives a curve
  from nfscale import plots

  vals = np.array([[r["psnr"] for r in rows if r["step"] == s] for s in (0, 19)])
  lo, _ = plots.score_ylim(vals, np.array([False, True]))
  assert lo > min(bad["final_psnr"], bad["best_psnr"]) and lo <= min(vals[:, 0])
