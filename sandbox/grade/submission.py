"""Grading submissions: one ``.py`` file or notebook, or a folder of them, each in its own process.

For each submission the grader (this process) reads the file, reads its source for uses of the shipped answers
(:mod:`sandbox.grade.reference_use`), starts the submission's process (:mod:`sandbox.grade.isolation`), runs the
notebook's cells there in order, as "Run all" would (a cell that raises stops the run; the functions defined up to
that point are graded), and then runs every test here, calling the submission's functions across the boundary
(:mod:`sandbox.grade.remote`). The process is ended when its submission is done.

A folder is graded by ``workers`` grading processes side by side (each one submission at a time). Our own training
runs, which the integration tests compare with, are trained once per grading process, when a first submission
reaches them. Every submission's
files are written as soon as it is graded, ``summary.csv`` after each one, and a submission that breaks anything
(an empty file, a notebook that is not JSON, a crash of its process, or of the grader on it) still gets its
``results.json``, with what could be graded and why the rest could not.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from .core import Report, Result

SUFFIXES = (".py", ".ipynb")


@dataclasses.dataclass(frozen=True)
class Options:
    """How to grade (the command line's options; see ``sandbox grade --help``)."""

    key: str
    hidden: str | None = None
    seed: int = 0
    timeout: float = 300.0
    cell_timeout: float = 60.0
    allow_reference: bool = False
    isolation: str = "auto"
    integration: bool = True
    hidden_paths: tuple[str, ...] = ()
    test_timeout: float | None = None
    """Paths the submission must not see (the submissions folder, the output folder, the hidden cases)."""


@dataclasses.dataclass
class Graded:
    """One submission's outcome: the report, what it printed (capped), and how isolated it ran."""

    report: Report
    output: str
    isolation: str
    definitions: dict[str, str]


def grade_file(path: str | Path, options: Options, isolation=None) -> Graded:
    """Grade one submission (never raises for anything the submission does: a report always comes back)."""
    from . import assignment
    from .hidden import hidden_tests
    from .isolation import Isolation
    from .reference_use import python_sources, read_source, reference_source, similarity
    from .remote import RemoteFunctions, WorkerDied, make_load

    path = Path(path)
    start = time.perf_counter()
    a = assignment(options.key)
    owned = isolation is None
    if owned:
        isolation, fallback = Isolation.choose(options.isolation, tuple(Path(p) for p in options.hidden_paths))
    notes: list[str] = []
    extra = hidden_tests(a, options.hidden) if options.hidden else []
    try:
        load = make_load(path, tuple(a.functions), options.cell_timeout)
    except (ValueError, OSError) as err:
        return Graded(failed(a, path, [str(err)], start, options.seed, extra), "", isolation.mode, {})
    reading = read_source(python_sources(load.kind, load.cells, load.labels), a.functions)
    remote = RemoteFunctions(isolation, load, options.timeout)
    try:
        try:
            remote.start()
        except WorkerDied as err:
            return Graded(failed(a, path, [*remote.notes, str(err)], start, options.seed, extra), _outputs(remote),
                          isolation.mode, reading.definitions)  # fmt: skip
        functions = remote.mapping()
        for name, what in remote.defined.items():
            if what not in ("function", "missing"):
                notes.append(f"`{name}` is {what}, not a function")
        from .core import run_tests

        report = run_tests(a, {n: functions.get(n) for n in a.functions}, extra=extra, submission=path.name,
                           notes=[*remote.notes, *notes], seed=options.seed, clock=remote.test,
                           integration=options.integration, test_timeout=options.test_timeout)  # fmt: skip
    finally:
        watch = remote.close()
        if owned:
            isolation.cleanup()
    flags = {name: list(why) for name, why in reading.flags.items()}
    for name, why in watch["uses"].items():
        flags.setdefault(name, []).extend(w for w in why if w not in flags.get(name, []))
    if watch["tampering"]:
        flags.setdefault("*", []).extend(watch["tampering"])
    review = list(reading.review) + [f"read {f}, a file of the sandbox package" for f in watch["reads"]]
    if options.allow_reference:
        review += [f"(allowed) {n if n != '*' else 'the submission'} {w}" for n, ws in flags.items() for w in ws]
    else:
        report.apply_flags(flags)
    report.review = review
    report.similarity = {
        name: round(similarity(reading.definitions[name], reference_source(spec.reference)), 3)
        for name, spec in a.functions.items()
        if name in reading.definitions
    }
    if owned and fallback:
        report.review.append(fallback)
    report.seconds = time.perf_counter() - start
    return Graded(report, _outputs(remote), isolation.mode, reading.definitions)


def _outputs(remote) -> str:
    return "\n".join(remote.outputs)


def failed(a, path: Path, notes: list[str], start: float, seed: int, extra: list = ()) -> Report:
    """Every test (the hidden cases ``extra`` too) 0, with the reason (the last note) as each one's output."""
    results = [
        Result(t.name, t.kind, t.functions, t.points, 0.0, "not graded: " + notes[-1], 0.0, t.visibility)
        for t in [*a.build(), *extra]
    ]
    return Report(a.key, a.title, results, path.name, notes, time.perf_counter() - start, seed=seed)


def submissions_in(folder: str | Path) -> list[Path]:
    """The ``.py`` and ``.ipynb`` files in ``folder`` and below, skipping hidden folders and checkpoints."""
    folder = Path(folder)
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts)
    ]
    return sorted(found)


# --- a folder ------------------------------------------------------------------------------------------------------


class _Here:
    """One submission graded in this process, when it is its turn (``workers=1``: no pool of grading processes)."""

    def __init__(self, path: Path, options: Options):
        self.path, self.options = path, options

    def result(self) -> Graded:
        return grade_file(self.path, self.options)


def _grade_in_pool(path: str, options: Options) -> Graded:
    """One submission in a grading process of the pool (our training runs are trained once per such process, the
    first time a submission reaches them)."""
    import torch

    torch.set_num_threads(1)
    return grade_file(path, options)


def grade_folder(
    folder: Path,
    options: Options,
    out_dir: Path,
    write: Callable[[Report, Path], None],
    fmt: str,
    workers: int = 1,
    progress: Callable[[str, Report, int, int], None] | None = None,
) -> list[Graded]:
    """Grade every submission of ``folder`` into ``out_dir``; returns the outcomes in the folder's order."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from .isolation import Isolation

    files = submissions_in(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, fallback = Isolation.choose(options.isolation, ())
    outcomes: dict[Path, Graded] = {}
    names = {p: "__".join(p.relative_to(folder).with_suffix("").parts) for p in files}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) if workers > 1 else None
    with pool or contextlib.nullcontext():
        jobs = {(pool.submit(_grade_in_pool, str(p), options) if pool else _Here(p, options)): p for p in files}
        for done, job in enumerate(as_completed(jobs) if pool else jobs, start=1):
            path = jobs[job]
            try:
                graded = job.result()
            except Exception as err:  # noqa: BLE001 - the grader itself broke on this one: say so, go on
                from . import assignment
                from .hidden import hidden_tests

                why = f"the grader failed on it ({type(err).__name__}: {err})"
                a = assignment(options.key)
                extra = hidden_tests(a, options.hidden) if options.hidden else []
                report = failed(a, path, [why], time.perf_counter(), options.seed, extra)
                graded = Graded(report, "", "unknown", {})
            graded.report.submission = str(path.relative_to(folder))
            if fallback and fallback not in graded.report.review:
                graded.report.review.append(fallback)
            outcomes[path] = graded
            _write_one(graded, out_dir, names[path], write, fmt)
            write_summary(out_dir, [outcomes[p] for p in files if p in outcomes])
            if progress:
                progress(str(path.relative_to(folder)), graded.report, done, len(files))
    ordered = [outcomes[p] for p in files]
    peers(ordered)
    for p, graded in zip(files, ordered):
        _write_one(graded, out_dir, names[p], write, fmt)
    write_summary(out_dir, ordered)
    return ordered


def _write_one(graded: Graded, out_dir: Path, name: str, write: Callable[[Report, Path], None], fmt: str) -> None:
    report = graded.report
    (out_dir / f"{name}.txt").write_text(report.text() + "\n\n" + report.instructor_text() + "\n")
    if graded.output:
        (out_dir / f"{name}.output.txt").write_text(graded.output)
    if fmt == "gradescope":
        write(report, out_dir / name / "results.json")
    elif fmt == "json":
        write(report, out_dir / f"{name}.json")


def peers(outcomes: list[Graded]) -> None:
    """For each function, the submission whose definition is closest to this one's (a copy between students stands
    out as a pair near 1), added to each report's review notes and similarity."""
    import difflib

    from .reference_use import normalised_tokens

    functions = sorted({name for g in outcomes for name in g.definitions})
    for name in functions:
        tokens = [(g, normalised_tokens(g.definitions[name])) for g in outcomes if name in g.definitions]
        for i, (g, ta) in enumerate(tokens):
            best, who = 0.0, None
            for j, (h, tb) in enumerate(tokens):
                if i == j or not ta or not tb:
                    continue
                m = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
                if m.real_quick_ratio() <= best or m.quick_ratio() <= best:
                    continue
                ratio = m.ratio()
                if ratio > best:
                    best, who = ratio, h.report.submission
            if who is not None:
                g.report.similarity[f"{name} closest peer"] = round(best, 3)
                note = f"`{name}` is closest to {who}'s ({best:.2f})"
                g.report.review = [r for r in g.report.review if not r.startswith(f"`{name}` is closest to")]
                g.report.review.append(note)


def write_summary(out_dir: Path, outcomes: list[Graded]) -> None:
    """``summary.csv``: one row per submission: its score, each test's score, the flags, the similarity, the review
    notes (written again after every submission, so an interrupted run keeps what it graded)."""
    tests: list[str] = []
    for g in outcomes:
        tests += [r.name for r in g.report.results if r.name not in tests]
    sims = sorted({k for g in outcomes for k in g.report.similarity})
    tmp = out_dir / "summary.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max_score", "passed", "failed", "seconds", "isolation", "flags",
                    *[f"similarity: {k}" for k in sims], "review", *tests])  # fmt: skip
        for g in outcomes:
            r = g.report
            by_name = {x.name: x.score for x in r.results}
            flags = "; ".join(r.flag_lines())
            w.writerow([r.submission, f"{r.score:g}", f"{r.max_score:g}", r.passed, r.failed, round(r.seconds, 1),
                        g.isolation, flags, *[r.similarity.get(k, "") for k in sims], "; ".join(r.review),
                        *[f"{by_name[t]:g}" if t in by_name else "" for t in tests]])  # fmt: skip
    tmp.replace(out_dir / "summary.csv")


def dump(report: Report, fmt: str) -> dict[str, Any]:
    return report.to_gradescope() if fmt == "gradescope" else report.to_json()


def write_json(report: Report, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dump(report, fmt), indent=2))
    tmp.replace(path)


def clear_previous(out_dir: Path) -> None:
    """Remove a previous grading's folder (``--overwrite``), only if it is one (it holds ``summary.csv``)."""
    if out_dir.is_dir() and (out_dir / "summary.csv").is_file():
        shutil.rmtree(out_dir)
