"""Rules every lesson (``notebooks/NN_name.ipynb``) keeps; `make test` also executes each one with SANDBOX_FAST=1.

- the paired ``NN_name.py`` (jupytext percent format, the source a reviewer reads and edits) exists and has the same
  cells as the ``.ipynb``, so neither was edited without the other (``jupytext --sync notebooks/NN_name.py``);
- the committed ``.ipynb`` carries the outputs of a full run, figures included (at least one PNG), so the lesson
  reads without installing anything, and stays small (under 600 KB);
- its first markdown cell states the learning goals and the measured running time.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 600 * 1024


def test_there_are_lessons():
    assert LESSONS, f"no lesson notebooks/NN_name.ipynb in {NOTEBOOKS}"


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]


@pytest.fixture(params=LESSONS, ids=[p.stem for p in LESSONS])
def lesson(request) -> Path:
    return request.param


def test_paired_source_has_the_same_cells(lesson):
    source = lesson.with_suffix(".py")
    assert source.is_file(), f"{lesson.name} has no paired {source.name}: jupytext --sync notebooks/{lesson.name}"
    notebook_cells, source_cells = _cells(lesson), _cells(source)
    assert len(notebook_cells) == len(source_cells), (
        f"{lesson.name} has {len(notebook_cells)} cells, {source.name} {len(source_cells)}: "
        f"run jupytext --sync notebooks/{source.name}"
    )
    for i, (nb_cell, py_cell) in enumerate(zip(notebook_cells, source_cells)):
        assert nb_cell == py_cell, f"cell {i} of {lesson.name} differs from {source.name}: run jupytext --sync"


def test_committed_with_figures_and_small(lesson):
    size = lesson.stat().st_size
    assert size < MAX_BYTES, f"{lesson.name} is {size / 1024:.0f} KB (limit {MAX_BYTES // 1024} KB): smaller figures"
    outputs = [o for c in jupytext.read(lesson).cells if c.cell_type == "code" for o in c.get("outputs", [])]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, f"{lesson.name} has no figure in its outputs: commit it executed (make notebooks)"
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{lesson.name} was committed with an error output: {errors[0].get('ename')}"


def test_opens_with_goals_and_running_time(lesson):
    first = next(c for c in jupytext.read(lesson).cells if c.cell_type == "markdown").source
    assert re.search(r"goals?\b", first, re.IGNORECASE), f"{lesson.name}: the first cell must state the learning goals"
    time = r"\d+(\.\d+)?\s*(s|sec|seconds?|min|minutes?)\b"
    assert re.search(r"running time", first, re.IGNORECASE) and re.search(time, first), (
        f"{lesson.name}: the first cell must state the measured running time (full mode and SANDBOX_FAST=1)"
    )
    assert "SANDBOX_FAST" in first, f"{lesson.name}: the first cell must give the running time with SANDBOX_FAST=1"
