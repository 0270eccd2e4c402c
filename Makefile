# Two commands do all set-up: `make book` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PROFILE ?= quick
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2
# oneDNN kernels on, also on AVX2-only CPUs where TensorFlow leaves them off (4-10x faster)
export TF_ENABLE_ONEDNN_OPTS ?= 1

.PHONY: env book chapters site test test-fast lint bench clean

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mri3dcnn needs Python 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## Execute every chapter with papermill (profile $(PROFILE)), then build the site.
book: env
	$(BIN)/mri3dcnn book --profile $(PROFILE)

## Execute the chapters only.
chapters: env
	$(BIN)/mri3dcnn run --profile $(PROFILE)

## Render the site from the executed chapters.
site: env
	$(BIN)/jupyter-book build -W book/

## The whole suite, end-to-end book build on the tiny profile included.
test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

lint: env
	$(BIN)/ruff check src tests notebooks benchmarks

bench: env
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf book/_build book/chapters book/_static/mathjax cache results data/synthetic-*
