# genlab: `make train` trains the default DDPM on the embedded digits data; `make test` runs the tests.
# Both create .venv and install everything on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install train test test-slow clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install genlab with its dependencies

train: $(STAMP)  ## train the default DDPM on the embedded digits dataset (CPU, < 10 min)
	$(BIN)/genlab train experiment=ddpm_digits

test: $(STAMP)  ## run the default test suite (no GPU, no network)
	WANDB_MODE=offline $(BIN)/python -m pytest

test-slow: $(STAMP)  ## run only the tests marked slow
	WANDB_MODE=offline $(BIN)/python -m pytest -m slow

clean:  ## remove the venv and caches (runs/ is kept)
	rm -rf $(VENV) .pytest_cache
