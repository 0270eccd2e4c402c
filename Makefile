# Two commands do all set-up: `make book` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PROFILE ?= quick
# cpu (default: tensorflow-cpu, lean) or gpu (the CUDA build `tensorflow[and-cuda]`, same version)
DEVICE ?= cpu
TF_VERSION := $(shell sed -n 's/^tensorflow[-_]cpu==//p' requirements.txt)
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2
# oneDNN kernels on, also on AVX2-only CPUs where TensorFlow leaves them off (4-10x faster)
export TF_ENABLE_ONEDNN_OPTS ?= 1

.PHONY: env book chapters site test test-fast lint bench clean

env: $(VENV)/.installed-$(DEVICE)

$(VENV)/.installed-$(DEVICE): requirements.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mri3dcnn needs Python 3.11, found " + sys.version'
	@case "$(DEVICE)" in cpu|gpu) ;; *) echo "DEVICE must be cpu or gpu, got '$(DEVICE)'"; exit 2;; esac
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(DEVICE),gpu)
	grep -v '^tensorflow[-_]cpu==' requirements.txt > $(VENV)/requirements-gpu.txt
	echo 'tensorflow[and-cuda]==$(TF_VERSION)' >> $(VENV)/requirements-gpu.txt
	$(BIN)/python -m pip uninstall --quiet --yes tensorflow-cpu || true
	$(BIN)/python -m pip install --quiet -r $(VENV)/requirements-gpu.txt
else
	$(BIN)/python -m pip uninstall --quiet --yes tensorflow || true
	$(BIN)/python -m pip install --quiet -r requirements.txt
endif
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

## Execute every chapter with papermill (profile $(PROFILE)), then build the site.
book: env
	$(BIN)/mri3dcnn plan --profile $(PROFILE) --brief
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

## Throughput of every family beside its target, then where each one's training time goes;
## rewrites both tables in benchmarks/README.md.
bench: env
	$(BIN)/python benchmarks/run.py --write benchmarks/README.md
	$(BIN)/python benchmarks/layers.py --write benchmarks/README.md

clean:
	rm -rf book/_build book/chapters book/_static/mathjax cache results data/synthetic-*
