# Quick start: `make demo` (replay the bundled bag through the demo model) and `make test`.
# Both create .venv on first use and install what they need into it.
#
# torch is needed by the tests (not by the demo). `pip install torch==2.13.0` takes PyPI's
# build; on a machine without a GPU set TORCH_INDEX to fetch the smaller CPU build, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: demo test test-fast lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-deps: setup.py | $(BIN)/python
	$(PIP) install -e ".[cpu,opencv]"
	touch $@

$(VENV)/.test-deps: setup.py $(VENV)/.demo-deps
	$(PIP) install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PIP) install -e ".[cpu,opencv,train,dev]"
	touch $@

demo: $(VENV)/.demo-deps
	$(BIN)/panoptic-ros demo

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest

test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.test-deps
	$(BIN)/ruff check panoptic_ros test launch
	$(BIN)/ruff format --check panoptic_ros test launch

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy panoptic_ros

bench: $(VENV)/.demo-deps
	$(BIN)/panoptic-ros bench --input-size 1024x2048

clean:
	rm -rf $(VENV) build *.egg-info panoptic_demo_output
