# Thin targets: the logic lives in the cnnlab package.
#   make lab    set up .venv, build the custom op, start JupyterLab on notebooks/
#   make mark   JupyterLab on the course folder, opened on the marking page of GRADES (default grades/)
#   make test   the same set-up plus NVIDIA's nvcc wheels, then everything CI runs
#   make cuda   only NVIDIA's nvcc wheels (requirements-cuda.txt), for the GPU build of the op
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the pins or the package metadata change.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
CUDA_STAMP := $(VENV)/.cuda-$(shell cat requirements-cuda.txt | cksum | cut -d' ' -f1)
LAB_ARGS ?=
PYTEST_ARGS ?=
# One pytest worker more than cores: much of the suite waits (kernels starting, sandbox timeouts,
# the browser); on 2 cores, 2 workers left 27% of the CPU unused. 4 workers gained 70 s and made
# load-sensitive tests (the corpus's fork bomb, the browser's kernel state) fail.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
LESSONS := $(wildcard notebooks/*.ipynb)
SOLUTIONS := $(wildcard solutions/*.ipynb)
# nbval runs the lessons. The assignment sources are executed by the tests instead, twice already:
# as the grader's reference (tests/test_assignments.py, which fails on a source that fails its own
# tests) and by real nbgrader (tests/grading/test_nbgrader_compat.py); exercises/ are checked by
# `assign --check`.
NOTEBOOK_DIRS := $(if $(LESSONS),notebooks)

.PHONY: lab mark test setup ops cuda bench exercises grade sandbox browser gpu-check website

ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
MARKING := --ServerApp.jpserver_extensions='{"cnnlab.marking": True}'
GRADES ?= grades

lab: setup
	$(BIN)/jupyter lab --notebook-dir=. $(MARKING) $(ROOT_FLAG) $(LAB_ARGS)

# The instructor's JupyterLab on the course folder, opened on the marking page of $(GRADES) (cnnlab grade --out).
mark: setup
	$(BIN)/jupyter lab --notebook-dir=. $(MARKING) --LabApp.default_url='/cnnlab/marking?folder=$(GRADES)' \
	  $(ROOT_FLAG) $(LAB_ARGS)

test: cuda setup sandbox browser
	@echo "== lint"
	$(BIN)/ruff check cnnlab kernel_rigs tests benchmarks book
ifneq ($(SOLUTIONS),)
	@echo "== exercises/ in sync with solutions/"
	$(BIN)/cnnlab assign --check solutions exercises
endif
	@echo "== the cached networks assignments 05 and 06 start from (the grader's sandbox cannot write them)"
	$(BIN)/cnnlab pretrain
	@echo "== tests$(if $(NOTEBOOK_DIRS), and notebooks in $(NOTEBOOK_DIRS))"
	$(BIN)/python -m pytest -m "" -v -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests \
	  $(if $(NOTEBOOK_DIRS),$(NOTEBOOK_DIRS) --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg)

setup: $(STAMP) ops

$(STAMP): requirements.txt pyproject.toml cnnlab/labconfig.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/cnnlab configure-lab
	@rm -f $(VENV)/.installed-*
	@touch $@

# NVIDIA's pinned nvcc wheels: the GPU build of the op with no system CUDA (Linux only).
cuda: $(CUDA_STAMP)

$(CUDA_STAMP): requirements-cuda.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-cuda.txt
	@rm -f $(VENV)/.cuda-*
	@touch $@

ops: $(STAMP)
	$(BIN)/cnnlab build-ops

# $(call system_package,COMMAND,PACKAGE,WHAT IT IS FOR,OTHER DISTRIBUTIONS): install PACKAGE with apt-get
# when running as root on Debian or Ubuntu and COMMAND is missing; otherwise say how, and stop.
define system_package
@command -v $(1) >/dev/null || { \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "== installing $(2) ($(3))"; \
    apt-get update -qq && apt-get install -y -qq $(2) >/dev/null; \
  else \
    echo "make test needs $(2) for $(3): sudo apt-get install $(2)$(4)" >&2; exit 1; \
  fi; }
endef

# The grader refuses to grade without bubblewrap, and so do its tests.
sandbox:
	$(call system_package,bwrap,bubblewrap,the grader's sandbox, (Fedora: sudo dnf install bubblewrap))

# The browser tests drive Debian's chromium with Playwright (Playwright's own browser download is unreachable).
browser:
	$(call system_package,chromium,chromium,the browser tests,)

exercises: setup
	$(BIN)/cnnlab assign solutions exercises

# The course website in _site/ (open _site/index.html; no network needed): lessons and exercises as stored.
website: setup
	$(BIN)/python book/build.py --out _site

# make grade SUBMISSIONS=submitted/  (nbgrader layout or a folder of notebooks)
grade: setup
	$(BIN)/cnnlab grade $(SUBMISSIONS) --source solutions --out grades

bench: setup sandbox
	$(BIN)/python benchmarks/bench_conv.py
	$(BIN)/python benchmarks/bench_grading.py

# On a machine with an NVIDIA GPU (PyTorch or CuPy, nvcc; no TensorFlow needed): builds the standalone
# kernels, runs tests/gpu and the cuDNN benchmark, prints ptxas -v; one results file, under 8 minutes.
gpu-check:
	python3 benchmarks/gpu_check.py
