# Two entry points on a fresh machine: `make demo` and `make test`.
# Each creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# the main job on the CPU default: compile LeNet-5's training step (report + artefacts),
# time its compile cold and warm, and train LeNet-5 on the digits
demo: $(VENV)/.installed
	$(VENV)/bin/symfuse compile lenet --train -o build/lenet
	$(VENV)/bin/symfuse time lenet --train --repeat 3
	$(VENV)/bin/symfuse train lenet --epochs 15 --no-progress
	@echo "symfuse is installed in $(VENV): run '. $(VENV)/bin/activate' to use symfuse and its python from your shell"

# two workers (pytest-xdist): the machines this runs on have two cores. The run compiles
# into its own temporary cache (tests/conftest.py); SYMFUSE_CACHE_DIR=dir keeps one between runs
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2

bench: $(VENV)/.installed
	$(PY) bench/bench_passes.py

# symfuse/_build: the C runtime library that `pip install -e` builds into the source tree
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info symfuse/_build
