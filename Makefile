# nfscale developer entry points. Every target creates the virtual environment if missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test test-packaging test-all format api demo bench bench-gpu clean
RUNS   ?= runs

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The fast suite (tests/ and the docstring examples of nfscale/ and configs/), then the
# packaging checks that are slow-marked: the wheel installed in a fresh venv and the
# quickstart notebook executed top to bottom.
# --dist loadscope: a module's tests share a worker, so a module fixture that trains for
# tens of seconds (the tiny sweep, the tiny PINN and NeRF runs) is built once, not per worker.
test: $(STAMP)
	$(PY) -m pyink --check --quiet $(SOURCES)
	$(PY) -m pyflakes $(SOURCES)
	$(PY) -m pytest -n 2 --dist loadscope
	$(MAKE) test-packaging

test-packaging: $(STAMP)
	$(PY) -m pytest -p no:xdist -m slow tests/test_install.py tests/test_notebook.py

# One formatting for the whole tree (pyink: Google style, 2-space indents; pyproject.toml).
SOURCES := nfscale launch configs tests benchmarks setup.py docs/make_api.py
format: $(STAMP)
	$(PY) -m pyink --quiet $(SOURCES)

# docs/api.md, the API reference, from the code (tests/test_api_reference.py checks it).
api: $(STAMP)
	$(PY) docs/make_api.py

test-all: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadscope -m ''

# The main job: the paper's 8 schemes on the bundled astronaut image (Fig. 1 style).
demo: $(STAMP)
	$(PY) -m launch.train --config=configs/image.py:demo --workdir=$(RUNS)/demo

# Training throughput vs PyTorch (docs/benchmarks.md), all in one session: nfscale (fast
# sine on and off) and benchmarks/torch_workloads.py's eager / torch.compile / vmap, run
# alternately for BENCH_ROUNDS rounds; prints every JSON line, then the ratios. Installs the
# `bench` extra (torch) into the venv when TORCH_PY cannot import torch.
TORCH_PY     ?= $(PY)
TORCH_REF    ?= benchmarks/torch_workloads.py
BENCH_ROUNDS ?= 2
BENCH_ARGS   ?=
bench: $(STAMP)
	$(TORCH_PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m launch.bench --suite --rounds=$(BENCH_ROUNDS) --torch_python=$(TORCH_PY) \
	  --torch_reference=$(TORCH_REF) --out=$(RUNS)/bench.jsonl $(BENCH_ARGS)

# On a machine with one NVIDIA GPU: nfscale vs PyTorch at 256^2 and 512^2, TF32 and full
# float32, the ensemble workload and a profile, in under 10 minutes (docs/benchmarks.md).
bench-gpu:
	bash benchmarks/gpu_suite.sh $(RUNS)/gpu_suite

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
