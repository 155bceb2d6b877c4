"""Rules every lesson (``notebooks/NN_name.ipynb``) keeps; `make test` also executes each one with SANDBOX_FAST=1.

- the paired ``NN_name.py`` (jupytext percent format, the source a reviewer reads and edits) exists and has the same
  cells as the ``.ipynb``, so neither was edited without the other (``jupytext --sync notebooks/NN_name.py``);
- the committed ``.ipynb`` carries the outputs of a full run, figures included (at least one PNG), so the lesson
  reads without installing anything, and stays small (under 600 KB);
- its first markdown cell states the learning goals and the measured running time, and a generated "Running time"
  paragraph is the one ``make course-check`` wrote from ``notebooks/timings.json`` (so the time a student reads is
  the time measured);
- every lesson that draws seeds takes them from ``sandbox.analysis.course`` (``SANDBOX_SEED_SET`` moves them all),
  never a literal;
- the committed outputs come from one machine and one date, which the course map states (``notebooks/README.md``,
  written by ``make course-check``);
- every figure a lesson or a committed study report (``docs/studies/*/report.md``) links is committed.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 600 * 1024
TIMINGS = NOTEBOOKS / "timings.json"
READS_COMMITTED_STUDIES = {"09_when_does_dropout_help"}  # trains nothing: no seed to move


def _course_check():
    spec = importlib.util.spec_from_file_location("course_check", ROOT / "tools" / "course_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_running_time_is_the_one_course_check_measured(lesson):
    check = _course_check()
    first = next(c for c in jupytext.read(lesson.with_suffix(".py")).cells if c.cell_type == "markdown").source
    if check.RUNNING_TIME not in first:
        pytest.skip(f"{lesson.stem} keeps its own running-time sentence")
    entry = json.loads(TIMINGS.read_text())["lessons"].get(lesson.stem) if TIMINGS.exists() else None
    assert entry and {"full_s", "full_cpu_s", "fast_s"} <= entry.keys(), (
        f"{lesson.stem} has no measured time in {TIMINGS.name}: run make course-check"
    )
    assert check.running_time(entry) in first, (
        f"{lesson.name}: its 'Running time' paragraph is not the one {TIMINGS.name} gives: run make course-check"
    )


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_committed_outputs_come_from_the_code_as_it_is(lesson):
    """Every commit that changes a lesson's code runs its course-check (the outputs, the claims on two seed sets, the
    times): a lesson whose code cells differ from those course-check ran fails here, naming the command."""
    entry = json.loads(TIMINGS.read_text())["lessons"].get(lesson.stem, {}) if TIMINGS.exists() else {}
    assert entry.get("code_sha256") == _course_check().code_hash(lesson), (
        f"{lesson.stem}'s code changed since its course-check: run .venv/bin/python tools/course_check.py "
        f"{lesson.stem[:2]} (or make course-check) and commit what it writes"
    )


IMAGE_LINK = re.compile(r"!\[[^]]*\]\(([^)\s]+)\)")


def test_every_figure_a_lesson_or_a_committed_study_links_exists():
    """A lesson's markdown and the study reports lesson 09 reads (``docs/studies/*/report.md``, committed copies of
    what a bench wrote) link only images that are committed: a student reading them sees every figure."""
    pages = [(p, "\n".join(c.source for c in jupytext.read(p).cells if c.cell_type == "markdown"))
             for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))]  # fmt: skip
    pages += [(p, p.read_text()) for p in sorted((ROOT / "docs" / "studies").glob("*/report.md"))]
    missing = [f"{p.relative_to(ROOT)}: {link}" for p, text in pages for link in IMAGE_LINK.findall(text)
               if "://" not in link and not (p.parent / link).is_file()]  # fmt: skip
    assert not missing, f"figures linked but not committed: {missing}"


LITERAL_SEED = re.compile(r"\b(seed\s*=\s*\d|manual_seed\(\s*\d|default_rng\(\s*\d)|SEEDS\s*=\s*(\[|list\(range)")


def test_every_seed_comes_from_the_seed_set(lesson):
    if lesson.stem in READS_COMMITTED_STUDIES:
        pytest.skip(f"{lesson.stem} trains nothing")
    source = lesson.with_suffix(".py").read_text()
    assert "course.seed" in source, f"{lesson.name} draws no seed from sandbox.analysis.course (course.seeds, .seed)"
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    literal = LITERAL_SEED.search(code)
    assert not literal, (
        f"{lesson.name}: {literal.group(0)!r} is a literal seed; take it from course.seeds / course.seed, so that "
        "SANDBOX_SEED_SET moves it"
    )


def test_outputs_from_one_machine_and_one_date_stated_in_the_course_map():
    timings = json.loads(TIMINGS.read_text())
    course = timings.get("course")
    assert course, (
        f"{TIMINGS.name} has no course-wide entry: some lesson lacks a pass of make course-check, or the lessons were "
        "checked on different machines or dates; run make course-check"
    )
    stems = {p.stem for p in LESSONS}
    assert set(timings["lessons"]) == stems, f"{TIMINGS.name} times {sorted(timings['lessons'])}, not {sorted(stems)}"
    for stem, entry in timings["lessons"].items():
        assert (entry["machine"], entry["date"]) == (course["machine"], course["date"]), (
            f"{stem} was executed on {entry['machine']}, {entry['date']}; the course on {course['machine']}, "
            f"{course['date']}: run make course-check"
        )
    readme = " ".join((NOTEBOOKS / "README.md").read_text().split())  # wrapped: a line break is a space
    assert course["date"] in readme and course["machine"] in readme, (
        "the course map does not state the machine and date"
    )
