# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Linux machines whose pip index has no CPU build of torch: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: setup test lint demo bench notebooks clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH_INDEX_ARGS) torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

test: setup lint
	SANDBOX_FAST=1 $(BIN)/python -m pytest -q -n 2 --nbmake tests notebooks

# ruff (lint, format check) and the import layers (lint-imports), both configured in pyproject.toml
lint: setup
	$(BIN)/ruff check sandbox tests
	$(BIN)/ruff format --check sandbox tests
	$(BIN)/lint-imports

# Every lesson run in full mode, its outputs (figures included) written into the .ipynb; the paired .py (jupytext
# percent format) is the source a reviewer reads and edits. `make test` runs them in FAST mode without writing back.
# The homework notebooks are student copies: synced with their .py, never executed here (they keep no outputs).
notebooks: setup
	$(BIN)/jupytext --sync notebooks/homework/hw[0-9]_*.py
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py
	for nb in notebooks/[0-9][0-9]_*.ipynb; do \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 $$nb || exit 1; \
	done

demo: setup
	$(BIN)/sandbox demo

bench: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/sandbox bench cartpole
	$(BIN)/sandbox bench lang
	$(BIN)/sandbox bench sweep
	$(BIN)/sandbox bench report
	$(BIN)/sandbox bench population

clean:
	rm -rf $(VENV) .pytest_cache
