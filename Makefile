# Two entry points: `make demo` (set up, then run the end-to-end demo on the bundled
# `digits` data) and `make test` (set up, then run the test suite).
# Setup makes a virtual environment in .venv, installs the CPU build of torch 2.13.0
# first when the environment has no torch, then this project with its [dev] extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dunno-installed
OUT ?= runs/demo

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/dunno demo --out $(OUT)

test: setup
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure" >&2; exit 1; fi; \
	exit $$rc

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
