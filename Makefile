# One venv for everything; torch is pinned to the CPU build that lies on this machine's disk
# (an unpinned torch would pull a multi-GB CUDA build).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
# the Triton of the lent GPU machines (torch 2.11): the interpreter runs the same code, and
# benchmarks/kernel_check.py reads the binaries the card would run
TRITON  ?= triton==3.6.0
FIND    := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: help venv demo test test-all lint format bench gpu-suite clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: pyproject.toml setup.py $(wildcard csrc/*)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND) "$(TORCH)" "$(TRITON)"
	$(BIN)/pip install -q $(FIND) -e ".[test]" "$(TRITON)"
	touch $@

venv: $(BIN)/.installed  ## create .venv with torch (CPU) and the package + test extras

demo: venv  ## the main job: upscale the bundled photo with the bundled model, print PSNR
	$(BIN)/srgan-fast demo

test: venv  ## lint + the default test suite (CPU; what CI runs)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-all: venv  ## also the slow tests
	$(BIN)/python -m pytest -q -m "not bench"

lint: venv
	$(BIN)/ruff check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

gpu-suite:  ## on a GPU machine: build csrc, CUDA tests, GPU benchmarks
	bash benchmarks/gpu_suite.sh benchmarks/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo_out
