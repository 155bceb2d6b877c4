"""Grading submissions: one ``.py`` file or notebook, or a folder of them, each in its own process.

For each submission the grader (this process) reads the file, starts the submission's process in the student's view
(:mod:`sandbox.grade.isolation`), runs the notebook's cells there in order, as "Run all" would (a cell that raises stops
the run; the functions defined up to that point are graded), and then runs every test here, calling the submission's
functions across the boundary (:mod:`sandbox.grade.remote`). The process is ended when its submission is done; nothing
it sends afterwards, or writes anywhere, is read.

A folder is graded by ``workers`` grading processes side by side (each one submission at a time); our own training runs,
which the integration tests compare with, are trained once per grading process. A grading process that dies takes no
submission with it: the ones it was grading are graded again, once, each alone (:func:`_in_pools`). Each submission's
files are written as soon as it is graded (atomically, by this process only), ``summary.csv`` after each one, and a
submission that breaks anything (an empty file, a notebook that is not JSON, a crash of its process, or of the grader on
it) still gets its ``results.json``, with what could be graded and why the rest could not. Once the folder is graded,
every submission is compared with the reference and with every other (:mod:`sandbox.grade.similarity`): ``summary.csv``
is ranked by it, for review.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .core import Report, Result
from .isolation import Limits

SUFFIXES = (".py", ".ipynb")


@dataclasses.dataclass(frozen=True)
class Options:
    """How to grade: ``key`` the assignment (``HW``), ``memory_mb`` is ``--memory``, ``integration=False`` leaves
    the training runs out, and every other field is the option of its name (``sandbox grade --help``)."""

    key: str
    hidden: str | None = None
    seed: int = 0
    timeout: float = 300.0
    cell_timeout: float = 60.0
    isolation: str = "auto"
    integration: bool = True
    test_timeout: float | None = None
    user: str | None = None
    memory_mb: int = Limits.memory_mb


@dataclasses.dataclass
class Graded:
    """One submission's outcome: the report, what it printed (capped), how isolated it ran, and its code."""

    report: Report
    output: str
    isolation: str
    code: str = ""


def grade_file(path: str | Path, options: Options) -> Graded:
    """Grade one submission. Never raises: whatever the submission does, or the grader fails on, a report comes back
    (every test 0 with the reason, when nothing could be graded)."""
    try:
        return _grade(Path(path), options)
    except BaseException as err:  # noqa: BLE001 - the grader's own failure still ends in a report
        if isinstance(err, KeyboardInterrupt):
            raise
        return _error(options, Path(path), f"the grader failed on it ({type(err).__name__}: {err})")


def _grade(path: Path, options: Options) -> Graded:
    from . import assignment
    from .cases import hidden_tests
    from .core import run_tests
    from .isolation import Isolation
    from .remote import RemoteFunctions, WorkerDied, make_load

    start = time.perf_counter()
    a = assignment(options.key)
    limits = Limits(memory_mb=options.memory_mb, cpu_s=options.timeout + 60)
    isolation, fallback = Isolation.choose(options.isolation, options.user, limits, a.offers)
    extra = hidden_tests(a, options.hidden) if options.hidden else []
    try:
        load = make_load(path, tuple(a.functions), options.cell_timeout)
    except (ValueError, OSError) as err:
        return Graded(failed(options, path, [str(err)], start), "", isolation.mode)
    code = "\n\n".join(load.cells)
    remote = RemoteFunctions(isolation, load, options.timeout)
    try:
        try:
            remote.start()
        except WorkerDied as err:
            return Graded(failed(options, path, [*remote.notes, str(err)], start), "\n".join(remote.outputs),
                          isolation.mode, code)  # fmt: skip
        functions = remote.mapping()
        notes = [*remote.notes, *(f"`{n}` is {what}, not a function" for n, what in remote.defined.items()
                                  if what not in ("function", "missing"))]  # fmt: skip
        report = run_tests(a, {n: functions.get(n) for n in a.functions}, extra=extra, submission=path.name,
                           notes=notes, seed=options.seed, clock=remote.test, integration=options.integration,
                           test_timeout=options.test_timeout)  # fmt: skip
    finally:
        remote.close()
        isolation.cleanup()
    if fallback:
        report.review.append(fallback)
    report.seconds = time.perf_counter() - start
    return Graded(report, "\n".join(remote.outputs), isolation.mode, code)


def failed(options: Options, path: Path, notes: list[str], start: float) -> Report:
    """Every test (the hidden cases too) 0, with the reason (the last note) as each one's output."""
    from . import assignment
    from .cases import hidden_tests

    try:
        a = assignment(options.key)
        tests = [*a.build(), *(hidden_tests(a, options.hidden) if options.hidden else [])]
    except Exception:  # noqa: BLE001 - the assignment itself cannot be read: a report without tests still says why
        return Report(options.key, options.key, [], path.name, notes, time.perf_counter() - start, seed=options.seed)
    # a reason that already says "not run" (the process was ended for good, whether while loading or between tests)
    # reads the same here as on the tests a graded run could not reach
    reason = notes[-1] if notes[-1].startswith("not run") else "not graded: " + notes[-1]
    results = [Result(t.name, t.kind, t.functions, t.points, 0.0, reason, 0.0, t.visibility) for t in tests]
    return Report(a.key, a.title, results, path.name, notes, time.perf_counter() - start, seed=options.seed)


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


def output_names(folder: Path, files: list[Path]) -> dict[Path, str]:
    """A distinct output name per submission: its path in ``folder`` with ``/`` written ``__`` and no suffix, plus a
    short hash of the path where two would meet (``alice/hw1.py`` and ``alice__hw1.py``, or ``a.py`` and
    ``a.ipynb``)."""
    flat = {p: "__".join(p.relative_to(folder).with_suffix("").parts) for p in files}
    taken = [name for name in flat.values()]
    return {p: name if taken.count(name) == 1 else
            f"{name}-{hashlib.sha256(p.relative_to(folder).as_posix().encode()).hexdigest()[:8]}"
            for p, name in flat.items()}  # fmt: skip


# --- a folder ------------------------------------------------------------------------------------------------------


def _grade_in_pool(path: str, options: Options) -> Graded:
    """One submission in a grading process of the pool (our training runs are trained once per such process)."""
    import torch

    torch.set_num_threads(1)
    return grade_file(path, options)


def grade_folder(
    folder: Path,
    options: Options,
    out_dir: Path,
    fmt: str,
    workers: int = 1,
    progress: Callable[[str, Report, int, int], None] | None = None,
) -> list[Graded]:
    """Grade every submission of ``folder`` into ``out_dir``; returns the outcomes in the folder's order. ``workers``
    above 1: in that many spawned grading processes, one submission at a time each (:func:`_in_pools`)."""
    files = submissions_in(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: dict[Path, Graded] = {}
    names = output_names(folder, files)

    def record(path: Path, graded: Graded) -> None:
        graded.report.submission = str(path.relative_to(folder))
        outcomes[path] = graded
        write_outcome(graded, out_dir, names[path], fmt)
        write_summary(out_dir, [outcomes[p] for p in files if p in outcomes])
        if progress:
            progress(str(path.relative_to(folder)), graded.report, len(outcomes), len(files))

    if workers > 1:
        _in_pools(files, options, workers, _grade_in_pool, record)
    for path in files if workers == 1 else ():
        record(path, grade_file(path, options))
    ordered = [outcomes[p] for p in files]
    add_similarity(options.key, ordered)
    for p, graded in zip(files, ordered):
        write_outcome(graded, out_dir, names[p], fmt)
    write_summary(out_dir, ordered)
    return ordered


def _in_pools(files: list[Path], options: Options, workers: int, grade: Callable, record: Callable) -> None:
    """``record(path, grade(str(path), options))`` for every file, ``grade`` (a top-level function) run in a pool of
    ``workers`` spawned processes, at most ``workers`` files at a time. A grading process that dies (the kernel's
    OOM killer, a signal: not the submission's process, which only fails its own tests) breaks its pool, and every
    submission being graded in it is graded once more, alone in a pool of its own, before the others go on in a
    fresh pool: the one that killed it then dies alone and is reported as an error; the others, graded again, are
    noted for review. None is lost."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    todo, suspects, retried = list(files), [], set()
    while todo or suspects:
        queue = [suspects.pop(0)] if suspects else todo
        broken, running = False, {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            while running or (queue and not broken):
                while queue and not broken and len(running) < workers:
                    path = queue.pop(0)
                    running[pool.submit(grade, str(path), options)] = path
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for job in done:
                    path = running.pop(job)
                    try:
                        graded = job.result()
                    except BrokenProcessPool:
                        broken = True
                        if path not in retried:
                            suspects.append(path)
                            retried.add(path)
                            continue
                        graded = _error(options, path, "its grading process died twice while grading it (the "
                                        "grader's own process: out of memory?)")  # fmt: skip
                    except Exception as err:  # noqa: BLE001 - a grading process itself broke on this one: say so
                        graded = _error(options, path, f"the grader failed on it ({type(err).__name__}: {err})")
                    if path in retried:
                        graded.report.review.append("graded a second time, alone: a grading process died while "
                                                    "grading it")  # fmt: skip
                    record(path, graded)


def _error(options: Options, path: Path, why: str) -> Graded:
    return Graded(failed(options, path, [why], time.perf_counter()), "", "unknown")


def add_similarity(key: str, outcomes: list[Graded]) -> None:
    """Each report's similarity to the reference and to its closest peer, for the instructor's review."""
    from . import assignment
    from .similarity import compare, reference_code, template

    a = assignment(key)
    try:
        found = compare({g.report.submission: g.code for g in outcomes if g.code}, reference_code(a.functions),
                        template(a.key))  # fmt: skip
    except Exception as err:  # noqa: BLE001 - a review aid: its failure must not cost a submission its results
        for g in outcomes:
            g.report.review.append(f"similarity not computed ({type(err).__name__}: {err})")
        return
    for g in outcomes:
        s = found.get(g.report.submission)
        if s is None:
            continue
        g.report.similarity = {"reference": s["reference"], "closest peer": s["peer_share"]}
        if s["peer"]:
            g.report.review = [r for r in g.report.review if not r.startswith("closest submission:")]
            g.report.review.append(f"closest submission: {s['peer']} ({s['peer_share']:.2f})")


def write_outcome(graded: Graded, out_dir: Path, name: str, fmt: str) -> None:
    """One submission's files: ``NAME.txt`` (report and the instructor's notes), ``NAME.output.txt`` (what it
    printed), and ``NAME/results.json`` (gradescope) or ``NAME.json`` (json)."""
    report = graded.report
    write_atomic(out_dir / f"{name}.txt", report.text() + "\n\n" + report.instructor_text() + "\n")
    if graded.output:
        write_atomic(out_dir / f"{name}.output.txt", graded.output)
    if fmt in ("gradescope", "json"):
        write_json(report, out_dir / name / "results.json" if fmt == "gradescope" else out_dir / f"{name}.json", fmt)


def write_summary(out_dir: Path, outcomes: list[Graded]) -> None:
    """``summary.csv``: one row per submission, ranked for review (the highest similarity to the reference or to
    another submission first): score, each test's score, the similarities, the closest submission, the review
    notes. Written again after every submission, so an interrupted run keeps what it graded."""
    tests: list[str] = []
    for g in outcomes:
        tests += [r.name for r in g.report.results if r.name not in tests]
    ranked = sorted(outcomes, key=lambda g: -max(g.report.similarity.values(), default=0.0))
    rows = []
    for rank, g in enumerate(ranked, start=1):
        r, by_name = g.report, {x.name: x.score for x in g.report.results}
        rows.append([rank, r.submission, f"{r.score:g}", f"{r.max_score:g}", r.passed, r.failed, round(r.seconds, 1),
                     g.isolation, r.similarity.get("reference", ""), r.similarity.get("closest peer", ""),
                     "; ".join(r.review), *[f"{by_name[t]:g}" if t in by_name else "" for t in tests]])  # fmt: skip
    head = ["review rank", "submission", "score", "max_score", "passed", "failed", "seconds", "isolation",
            "similarity to the reference", "similarity to the closest submission", "review", *tests]  # fmt: skip
    with _atomic(out_dir / "summary.csv", newline="") as f:
        csv.writer(f).writerows([head, *rows])


def dump(report: Report, fmt: str) -> dict[str, Any]:
    return report.to_gradescope() if fmt == "gradescope" else report.to_json()


def write_json(report: Report, path: Path, fmt: str) -> None:
    """The report in ``fmt`` at ``path``, written by this process only and atomically: whatever was there before
    (a file a submission left, say) is replaced, never read."""
    write_atomic(path, json.dumps(dump(report, fmt), indent=2))


def write_atomic(path: Path, text: str) -> None:
    with _atomic(path) as f:
        f.write(text)


@contextlib.contextmanager
def _atomic(path: Path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", **kwargs) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def clear_previous(out_dir: Path) -> None:
    """Remove a previous grading's folder (``--overwrite``), only if it is one (it holds ``summary.csv``)."""
    if out_dir.is_dir() and (out_dir / "summary.csv").is_file():
        shutil.rmtree(out_dir)
