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

.PHONY: help venv demo test test-all lint format bench gpu-suite clean gst-deps

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

# The GStreamer element srganfast (srgan_fast/gst): GStreamer's tools and base plugins, PyGObject
# with the Gst overrides, and gst-python's plugin loader, which embeds the system python3 (so the
# venv must use the same Python minor version, 3.11 on Debian 12). Nothing is installed when all
# are present; otherwise this needs root and apt-get (Debian 12), and says so.
GST_DEBS := python3-gst-1.0 gstreamer1.0-python3-plugin-loader gstreamer1.0-plugins-base gstreamer1.0-tools

gst-deps:  ## Debian 12, as root: install GStreamer + gst-python for srganfast (tests/io/test_gst.py)
	@if dpkg-query -W -f='$${Status}\n' $(GST_DEBS) 2>/dev/null | grep -vq '^install ok installed$$' \
	    || [ "$$(dpkg-query -W -f='$${Status}\n' $(GST_DEBS) 2>/dev/null | wc -l)" -ne $(words $(GST_DEBS)) ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "make gst-deps: needs apt-get (Debian 12) to install: $(GST_DEBS)" >&2; exit 1; fi; \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "make gst-deps: not root; run it as root, or: sudo apt-get install -y $(GST_DEBS)" >&2; exit 1; fi; \
	  echo "installing $(GST_DEBS)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(GST_DEBS) >/dev/null \
	    || { echo "make gst-deps: apt-get install $(GST_DEBS) failed" >&2; exit 1; }; \
	else echo "gst-deps: $(GST_DEBS) already installed"; fi

# VapourSynth (srgan_fast/vs.py, tests/io/test_vs.py) gets a venv of its own: vapoursynth==81 is on PyPI only
# as a cp312-abi3 wheel (core, vspipe and the std/resize plugins inside), so .venv-vs is Python 3.12 (pyenv's
# 3.12.1 on these machines). PyPI has no CPU-only torch for cp312 on x86_64 (every release from 2.2 to 2.15 is
# the CUDA build), so $(TORCH) comes as the CUDA 13 build with its nvidia wheels; it runs on the CPU. Measured
# 2026-12-06 on a 2-core dev machine: 2.7 GB of wheels (1.4 GB from PyPI, 1.3 GB of nvidia wheels taken from
# the machine's local package mirror, else downloaded too), a 4.8 GB venv, 1-2 min. .venv-vs ignores itself.
PY312       ?= $(firstword $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
VS_VENV     ?= .venv-vs
VAPOURSYNTH ?= vapoursynth==81

.PHONY: vs-deps

$(VS_VENV)/.installed: pyproject.toml setup.py
	@[ -n "$(PY312)" ] || { echo "make vs-deps: needs Python 3.12 (pyenv install 3.12, or make vs-deps PY312=/path/to/python3.12)" >&2; exit 1; }
	$(PY312) -m venv $(VS_VENV)
	echo '*' > $(VS_VENV)/.gitignore
	$(VS_VENV)/bin/pip install -q "$(VAPOURSYNTH)" "$(TORCH)" "pytest>=8"
	SRGAN_FAST_BUILD_EXT=0 $(VS_VENV)/bin/pip install -q -e .
	@# vspipe embeds Python through libvsscript, which finds it only through this file
	@# (~/.config/vapoursynth/vapoursynth.toml, an entry for this venv's vapoursynth)
	$(VS_VENV)/bin/vapoursynth config
	$(VS_VENV)/bin/python -c "import vapoursynth as vs, srgan_fast.vs; print('vs-deps: VapourSynth', vs.__version__)"
	touch $@

vs-deps: $(VS_VENV)/.installed  ## Python 3.12 venv .venv-vs: vapoursynth==81, torch, this package (tests/io/test_vs.py)
