"""nfscale from a wheel: built, installed into a fresh venv, run from a directory that is
not the repository (console script, `python -m`, and a config by name from Python).

Slow (a wheel build and three short runs, ~1 minute on 2 cores); `make test` runs it in its
`test-packaging` step. To stay offline and fast the fresh venv gets the dependencies by a
`.pth` line pointing at this interpreter's site-packages: a plain path line does not run
the `.pth` files there, so the checkout's editable install stays invisible and every
`nfscale` import must come from the wheel (asserted below).
"""

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).parents[1]
TINY = "image:quick,size=8,steps=4"
TINY_FLAGS = [
    "--config.schemes=('init1', 'lecun_normal')",
    "--config.chunk_steps=2",
    "--config.log_every=2",
]

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=300):
  out = subprocess.run(
      cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
  )
  assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
  return out


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("wheel")
  # Build from a copy: setuptools builds in the source tree (build/, *.egg-info), and a
  # stale build/lib of the checkout would leak deleted files into the wheel.
  src = tmp / "src"
  shutil.copytree(
      ROOT,
      src,
      ignore=shutil.ignore_patterns(
          ".venv", ".git", "build", "runs", "workdirs", "*.egg-info", "__pycache__", ".pytest_cache"
      ),
  )
  _run(
      [
          sys.executable,
          "-m",
          "pip",
          "wheel",
          "--no-deps",
          "--no-build-isolation",
          "--wheel-dir",
          str(tmp / "dist"),
          str(src),
      ],
      cwd=tmp,
  )
  (wheel,) = (tmp / "dist").glob("nfscale-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  # configs/ and launch/ ship inside nfscale; no generic top-level packages.
  assert "nfscale/configs/image.py" in names and "nfscale/launch/train.py" in names
  assert not any(n.startswith(("configs/", "launch/", "tests/")) for n in names)
  # Every package of the checkout is in the wheel.
  for init in (ROOT / "nfscale").rglob("__init__.py"):
    assert str(init.relative_to(ROOT)) in names, init

  venv = tmp / "venv"
  _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
  python = venv / "bin" / "python"
  _run(
      [
          sys.executable,
          "-m",
          "pip",
          "--python",
          str(python),
          "install",
          "--no-deps",
          "--no-index",
          str(wheel),
      ],
      cwd=tmp,
  )
  purelib = _run(
      [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp
  ).stdout.strip()
  deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
  pathlib.Path(purelib, "_nfscale_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
  work = tmp / "elsewhere"
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  return venv, work, env


def test_wheel_imports_from_site_packages(fresh_venv):
  venv, work, env = fresh_venv
  out = _run(
      [
          str(venv / "bin" / "python"),
          "-c",
          (
              "import nfscale, nfscale.configs, nfscale.launch.train as t; "
              "print(nfscale.__file__); print(t.__file__); print(nfscale.configs.names())"
          ),
      ],
      cwd=work,
      env=env,
  )
  lines = out.stdout.splitlines()
  assert all(str(venv) in line for line in lines[:2]), lines
  assert "image" in lines[2] and "scaling_shallow" in lines[2]


def test_console_script_runs_the_image_preset(fresh_venv):
  venv, work, env = fresh_venv
  for script in ("nfscale-train", "nfscale-sweep", "nfscale-bench", "nfscale-render"):
    assert (venv / "bin" / script).is_file(), script
  out = _run(
      [
          str(venv / "bin" / "nfscale-train"),
          f"--config={TINY}",
          *TINY_FLAGS,
          "--workdir=run_script",
      ],
      cwd=work,
      env=env,
  )
  results = json.loads((work / "run_script" / "results.json").read_text())
  assert {r["scheme"] for r in results["members"]} == {"init1", "lecun_normal"}
  assert "init1" in out.stdout
  help_out = _run([str(venv / "bin" / "nfscale-sweep"), "--help"], cwd=work, env=env)
  assert (
      "scaling_shallow: " in help_out.stdout and "presets: quick, tiny, sphere" in help_out.stdout
  )


def test_python_dash_m_and_config_by_name(fresh_venv):
  venv, work, env = fresh_venv
  python = str(venv / "bin" / "python")
  _run(
      [
          python,
          "-m",
          "nfscale.launch.train",
          f"--config={TINY}",
          *TINY_FLAGS,
          "--workdir=run_module",
      ],
      cwd=work,
      env=env,
  )
  assert (work / "run_module" / "results.json").is_file()
  code = (
      "import nfscale.configs, nfscale.experiment as e\n"
      "c = nfscale.configs.get('image', 'quick,size=8,steps=2')\n"
      "c.unlock(); c.schemes = ('init1',); c.chunk_steps = c.log_every = 2\n"
      "r = e.run(c, 'run_python')\n"
      "print(len(r['members']))\n"
  )
  out = _run([python, "-c", code], cwd=work, env=env)
  assert out.stdout.strip().splitlines()[-1] == "1"
  # A usage error from the installed script is one line too.
  bad = subprocess.run(
      [str(venv / "bin" / "nfscale-train"), "--config=image:quik", "--workdir=x"],
      cwd=work,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert bad.returncode != 0 and bad.stderr.startswith("Error: --config=image:quik")
