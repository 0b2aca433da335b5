# genlab: `make train` trains the default DDPM on the embedded digits data; `make test` runs the tests.
# Both create .venv and install everything on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help install train test test-slow docs bench bench-quick bench-quality bench-quality-quick bench-families clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install genlab with its dependencies

train: $(STAMP)  ## train the default DDPM on the embedded digits dataset (CPU, < 10 min)
	$(BIN)/genlab train experiment=ddpm_digits

test: $(STAMP)  ## run the default test suite (no GPU, no network)
	WANDB_MODE=offline $(BIN)/python -m pytest

docs: $(STAMP)  ## build the documentation site into site/ (MkDocs, --strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test-slow: $(STAMP)  ## run only the tests marked slow
	WANDB_MODE=offline $(BIN)/python -m pytest -m slow

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,docs,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## genlab vs diffusers and the speed levers; writes benchmarks/results/<host>-<date>.md (< 10 min)
	$(BIN)/python benchmarks/run.py

bench-quick: $(BENCH_STAMP)  ## the same pipeline at tiny sizes (< 1 min), to check it runs
	$(BIN)/python benchmarks/run.py --quick

MNIST_ROOT ?= ../shared/data

bench-quality: $(BENCH_STAMP)  ## 20 min of genlab's ddpm_mnist_20min vs 20 min of lucidrains' DDPM, FID of each (about 1 h; MNIST_ROOT=folder with MNIST/raw)
	$(BIN)/python benchmarks/time_to_quality.py --data-root $(MNIST_ROOT)

bench-quality-quick: $(BENCH_STAMP)  ## the same pipeline with 12-second budgets (about 5 min), to check it runs
	$(BIN)/python benchmarks/time_to_quality.py --data-root $(MNIST_ROOT) --quick --work runs/time_to_quality_quick

bench-families: $(BENCH_STAMP)  ## every 20-min MNIST recipe (ddpm, flow, edm, gan) and the flow peer torchcfm for the same budget, one after the other, FID over time and NFE (about 2.5 h; MNIST_ROOT)
	$(BIN)/python benchmarks/families.py --data-root $(MNIST_ROOT)

clean:  ## remove the venv and caches (runs/ is kept)
	rm -rf $(VENV) .pytest_cache site
