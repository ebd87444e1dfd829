# nfscale developer entry points. Every target creates the virtual environment if missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test test-all demo bench clean
RUNS   ?= runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2

test-all: $(STAMP)
	$(PY) -m pytest -n 2 -m ''

# The main job: the paper's 8 schemes on the bundled astronaut image (Fig. 1 style).
demo: $(STAMP)
	$(PY) -m launch.train --config=configs/image.py:demo --workdir=$(RUNS)/demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
