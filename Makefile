# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv when it is missing. A student needs
# only `make setup` (then Jupyter on notebooks/); `make docs` builds the course website.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the docs extra's stamp (make docs, make test), and where the site is built; defined before any rule names them
DOCS_STAMP := $(VENV)/.docs-installed
SITE   := build/site
# PyTorch's CPU index: on Linux the lock pins torch's CPU build (torch==2.13.0+cpu), which only that index serves
# (PyPI's Linux torch is a CUDA build of several GB). make setup asks it for torch alone, and only when pip finds no
# local wheel of that build first (its find-links: a classroom's wheel folder, CI).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

# requirements.lock: every package of the dependency tree at one exact version, one lock for Linux (x86_64, aarch64),
# macOS and Windows and CPython 3.11 to 3.13, with environment markers where they differ; made by uv's universal
# resolution from pyproject.toml and constraints.txt (`make lock`). Every install uses it: here, environment.yml, CI.
LOCK   := requirements.lock

.PHONY: setup test check durations test-slow lint demo bench notebooks course-check docs docs-check lock lock-check clean

setup: $(STAMP)

# pip and setuptools first, then torch alone (--no-deps), then the project and its dev extra, every version from the
# lock. Without make (Windows): the same three pip commands, README "Install".
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip setuptools
	$(BIN)/python -m pip install --quiet --no-deps --no-index -c $(LOCK) torch 2>/dev/null || \
		$(BIN)/python -m pip install --quiet --no-deps -c $(LOCK) --extra-index-url $(TORCH_INDEX) torch
	$(BIN)/python -m pip install --quiet --no-build-isolation -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

# Re-resolve the lock after a change to pyproject.toml or constraints.txt, keeping every version it can (uv reads the
# old lock as its preferences); `make lock LOCK_ARGS=--upgrade` moves everything to the newest versions allowed (then
# re-measure the README's figures), `LOCK_ARGS="-P numpy"` one package. One resolution for every platform and Python
# of [tool.uv] environments and requires-python (pyproject.toml). torch's CPU build is read from TORCH_LINKS, the CPU
# index's page of torch files; where that index is out of reach, a folder holding the same wheel serves as well
# (`make lock TORCH_LINKS=/opt/wheels`): uv needs one wheel of the build for its metadata, and the lock records no
# address.
TORCH_LINKS ?= $(TORCH_INDEX)/torch/
LOCK_ARGS ?=
lock: setup
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --all-extras --annotation-style line \
		--custom-compile-command "make lock" -c constraints.txt --find-links $(TORCH_LINKS) $(LOCK_ARGS) \
		-o $(LOCK) pyproject.toml

# Asks the package indexes (network) whether the lock installs on each student platform and Python: every pin has a
# wheel there (markers judged for the target by uv). Not part of make test. See tools/lock_check.py.
lock-check: setup
	$(BIN)/python tools/lock_check.py --uv $(BIN)/uv --torch-index $(TORCH_INDEX) $(LOCK)

# make test also builds the course website (tests/test_docs.py, warnings as errors), so it installs the docs extra.
# It leaves out the tests marked slow, which make test-slow runs (CI runs both: .ci/run). It ends with its 15 longest
# tests and notebooks (--durations), so every run, CI's too, says where its minutes went.
test: setup lint $(DOCS_STAMP)
	SANDBOX_FAST=1 $(BIN)/python -m pytest -q -n 2 -m "not slow" --durations=15 --nbmake tests notebooks

# The fast tier, for every change: lint, then the tests of tests/ that are neither slow nor long (each measured under a
# second in tests/durations.json; tests/conftest.py marks the others long). Under a minute on 2 cores; no notebooks,
# no site. make test runs everything it leaves out.
check: setup lint
	SANDBOX_FAST=1 $(BIN)/python -m pytest -q -n 2 -m "not slow and not long" tests

# Measure every test of make test's tests/ again into tests/durations.json, which decides what make check leaves out
# (as long as make test itself; re-run it when tests were added or became slower).
durations: setup $(DOCS_STAMP)
	SANDBOX_FAST=1 SANDBOX_DURATIONS=tests/durations.json $(BIN)/python -m pytest -q -n 2 -m "not slow" tests

# The tests marked slow: a Ray cluster of two nodes started on this machine (tests/test_cluster.py), a sweep on a
# local Ray instance (tests/test_sweep.py) and the committed studies re-read with another resampling seed
# (tests/test_claims.py), under three minutes on a quiet machine; the cluster needs ports 27000-27999 free; neither
# Ray test leaves a Ray process behind
test-slow: setup
	SANDBOX_FAST=1 $(BIN)/python -m pytest -q -n 0 -m slow tests

# ruff (lint, format check) and the import layers (lint-imports), both configured in pyproject.toml
lint: setup
	$(BIN)/ruff check sandbox tests tools docs
	$(BIN)/ruff format --check sandbox tests tools docs
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

# Every lesson in full mode on this machine, its claims checked (sandbox/analysis/course.py): seed set 1 writes the outputs into
# the .ipynb (only from a run that contradicted no sentence), seed set 2 (SANDBOX_SEED_SET=2, disjoint seeds) is
# checked and thrown away, SANDBOX_FAST=1 is timed; the times go to notebooks/timings.json, each lesson's "Running
# time" paragraph and the course map (notebooks/README.md). Run it before any commit that changes a lesson's outputs.
# See tools/course_check.py (it takes lesson numbers: `.venv/bin/python tools/course_check.py 03 --seed-sets 2`).
# COURSE_JOBS checks run at once, each on its share of the lessons (a lesson mostly uses one core): 1 on a busy machine.
COURSE_JOBS ?= 2
course-check: setup
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py
	$(BIN)/python tools/course_check.py --jobs $(COURSE_JOBS)

# The course website (Sphinx, MyST-NB, sphinx-book-theme; docs/conf.py), offline: the lessons with their committed
# outputs (never executed here), the homework, the user guide (docs/guide), reference pages generated from the code
# (docs/reference), search. Warnings are errors: a broken link, a missing image or a bad docstring fails the build.
# The docs extra is not in make setup: a student does not build the site.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-build-isolation -c $(LOCK) -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf $(SITE) build/doctrees
	$(BIN)/python -m sphinx -W --keep-going -q -E -b html -d build/doctrees -c docs . $(SITE)
	@echo "the site: open $(SITE)/index.html, or serve it: $(BIN)/python -m http.server -d $(SITE) -b 127.0.0.1 8000"

# The built site in a real browser: served on 127.0.0.1, opened in headless Chromium (Debian's package, installed
# when missing) over the DevTools protocol; screenshots in build/docs-check. See tools/docs_check.py.
docs-check: docs
	$(BIN)/python tools/docs_check.py $(SITE) --screenshots build/docs-check

demo: setup
	$(BIN)/sandbox demo

bench: setup
	$(BIN)/python -m pip install --quiet --no-build-isolation -c $(LOCK) -e ".[bench]"
	$(BIN)/sandbox bench cartpole
	$(BIN)/sandbox bench lang
	$(BIN)/sandbox bench sweep
	$(BIN)/sandbox bench report
	$(BIN)/sandbox bench population

clean:
	rm -rf $(VENV) .pytest_cache build
