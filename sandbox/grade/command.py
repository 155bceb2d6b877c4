"""``sandbox grade``: its arguments, their checks, and what it does (the command line parses :class:`GradeArgs`,
or :class:`BundleArgs` for ``sandbox grade bundle HW``, then calls :func:`grade` or :func:`bundle`, which writes the
Gradescope autograder with :mod:`sandbox.grade.bundle`; :data:`COMMANDS`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..config import ConfigError
from .core import ArgumentError

HW_HELP = (
    "hw1 gae, hw2 ppo_loss and value_loss, hw3 kl_k1/k2/k3, hw4 group_advantages and aggregate_loss, hw5 "
    "dropout_mask, apply_dropout and layer_mask, hw6 dppo_scores and sample_dropout_mask; or the folder of an "
    "assignment of your own (assignment.json and reference.py: notebooks/homework/README.md)."
)


@dataclasses.dataclass
class GradeArgs:
    """Grade homework submissions (notebooks/homework): PASS / FAIL per test with a hint, "N passed, M failed", exit
    code 1 on any failure. Each submission runs in a process of its own that holds none of the package's answers (on
    Linux in its own namespaces, through bwrap), with limits on memory, processes, CPU time and file size; every
    score is computed in the grader's process. `sandbox grade bundle HW` writes a Gradescope autograder instead."""

    assignment: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="HW", help=HW_HELP)]
    submission: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="SUBMISSION")]
    """A .py file, a notebook (.ipynb, executed cell by cell), or a folder of them (graded one by one)."""
    format: Literal["text", "json", "gradescope"] = "text"
    """text: the report only. json: also a plain JSON file. gradescope: also Gradescope's results.json."""
    out: str | None = None
    """Where the JSON goes: a file for one submission (default results.json for gradescope, grade.json for json), a
    directory for a folder (default grade-results/: one report per submission, and summary.csv). An existing one is
    refused unless --overwrite."""
    hidden: str | None = None
    """The instructor's hidden cases: a directory holding HW.json (format: notebooks/homework/README.md). Read by
    the grader only; never visible to a submission's process."""
    upload: bool = False
    """SUBMISSION is one student's upload (a folder, as Gradescope's /autograder/submission): grade the one notebook
    or .py file in it (HW's own notebook name first); with nothing to grade, a report that says so."""
    workers: int = 1
    """Submissions graded side by side (each in its own process); at most the machine's cores is useful."""
    timeout: float = 300.0
    """Seconds one submission may take in all (its cells and every test); then its process and everything it started
    is ended and its remaining tests score 0."""
    cell_timeout: float = 60.0
    """Seconds a notebook cell (or a .py file) may run before it is stopped; the functions defined before it are
    graded. Each test has its own limit too (30 s, 60 s for a training run, 120 s for hw5's)."""
    test_timeout: float | None = None
    """A cap on every test's own time limit in seconds (default: each test's own, 30 s, 60 s for a training run)."""
    seed: int | None = None
    """The grading seed the random test cases are drawn from (default: a new one, printed in the instructor's
    notes; give it again to draw the same cases)."""
    isolation: Literal["auto", "bwrap", "process"] = "auto"
    """auto: Linux namespaces through bwrap when they work here, else plain processes (with a note). bwrap: refuse to
    grade without them. process: plain processes (they read what their user can read: see --user)."""
    user: str | None = None
    """When the grader runs as root: the unprivileged user the submissions run as (default: a uid of their own that no
    account has). With --isolation process, make one that cannot read the package's source (the bundle does)."""
    memory: int = 3072
    """Megabytes of memory one submission's process may use (RLIMIT_DATA)."""
    overwrite: bool = False
    """Replace an existing --out (a results file, or a previous grading folder)."""
    quiet: bool = False
    """Print only the closing line of each report (and no progress bar)."""


@dataclasses.dataclass
class BundleArgs:
    """Write a Gradescope autograder for HW: a zip with setup.sh (the environment, an unprivileged user), run_autograder
    (grades the student's upload into /autograder/results/results.json) and your hidden cases."""

    assignment: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="HW", help=HW_HELP)]
    out: str | None = None
    """The zip to write (default HW-autograder.zip)."""
    hidden: str | None = None
    """A directory holding HW.json, your hidden cases, put into the zip (kept from the submission by the user)."""
    user: str = "sandbox-student"
    """The unprivileged user setup.sh makes and the submissions run as."""
    overwrite: bool = False
    """Replace an existing --out."""


def check_hidden(hidden: str | None, a) -> Path | None:
    """``--hidden`` resolved (never relative later), once its cases are read: a bad file is one line before any
    submission runs."""
    from .cases import hidden_tests

    if hidden is None:
        return None
    hidden_tests(a, hidden)
    return Path(hidden).resolve()


def bundle(a: BundleArgs) -> int:
    from . import assignment as find
    from .bundle import write_bundle

    hw = find(a.assignment)
    hidden = check_hidden(a.hidden, hw)
    out = Path(a.out or f"{hw.key}-autograder.zip")
    if out.exists() and not a.overwrite:
        raise ConfigError("out", f"{out} already exists; choose another --out or pass --overwrite")
    write_bundle(hw, a.assignment, out, hidden, a.user)
    print(f"wrote {out}: upload it as the autograder of {hw.key} (Gradescope, Ubuntu 22.04 base image)")
    return 0


def grade(a: GradeArgs) -> int:
    from . import assignment as find
    from . import new_seed
    from .core import Report
    from .isolation import Isolation, Limits
    from .submission import Graded, Options, add_similarity, clear_previous, grade_file, grade_folder, write_json

    hw = find(a.assignment)
    target = Path(a.submission)
    if not target.exists():
        raise ArgumentError("SUBMISSION", f"{a.submission} does not exist (the file or folder to grade, after HW)")
    if target.is_file() and target.suffix not in (".py", ".ipynb"):
        raise ArgumentError("SUBMISSION", f"must be a .py file, a .ipynb notebook or a folder, got {a.submission}")
    if a.upload and not target.is_dir():
        raise ConfigError("upload", f"SUBMISSION must be the folder of one student's upload, got {a.submission}")
    hidden = check_hidden(a.hidden, hw)
    for name in ("timeout", "cell_timeout", "test_timeout"):
        value = getattr(a, name)
        if value is not None and not value > 0:
            raise ConfigError(name, f"must be a positive number of seconds, got {value}")
    if a.workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {a.workers}")
    if a.seed is not None and a.seed < 0:
        raise ConfigError("seed", f"must be 0 or more, got {a.seed}")
    if a.memory < 256:
        raise ConfigError("memory", f"must be at least 256 (MB), got {a.memory}")
    try:
        Isolation.choose(a.isolation, a.user, Limits())
    except ValueError as err:
        raise ConfigError("user" if a.user or "user" in str(err) else "isolation", str(err)) from None
    one = target.is_file() or a.upload
    if one:
        out = Path(a.out or ("results.json" if a.format == "gradescope" else "grade.json"))
        if a.format != "text" and out.exists() and not a.overwrite:
            raise ConfigError("out", f"{out} already exists; choose another --out or pass --overwrite")
    else:
        submissions_in_or_fail(target, a.submission)
        out = Path(a.out or "grade-results")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not a.overwrite:
                raise ConfigError("out", f"{out} already exists; choose another --out or pass --overwrite")
            if not (out / "summary.csv").is_file():
                raise ConfigError("out", f"{out} is not a previous grading (no summary.csv); --overwrite only "
                                  "replaces those")  # fmt: skip
            clear_previous(out)
    seed = new_seed() if a.seed is None else a.seed
    options = Options(key=a.assignment, hidden=str(hidden) if hidden else None, seed=seed, timeout=a.timeout,
                      cell_timeout=a.cell_timeout, isolation=a.isolation, integration=True,
                      test_timeout=a.test_timeout, user=a.user, memory_mb=a.memory)  # fmt: skip
    if one:
        path = pick_upload(target, hw.key) if a.upload else target
        if path is None:
            from .submission import failed

            why = f"no .ipynb or .py file in the upload ({target}): upload your notebook"
            graded = Graded(failed(options, target, [why], time.perf_counter()), "", "none")
        else:
            graded = grade_file(path, options)
            add_similarity(a.assignment, [graded])
        report: Report = graded.report
        print(report.summary_line() if a.quiet else report.text())
        if a.format != "text":
            write_json(report, out, a.format)
            print(f"wrote {out}")
        return 0 if report.ok else 1

    from tqdm import tqdm

    files = submissions_in_or_fail(target, a.submission)
    bar = tqdm(total=len(files), desc="grade", unit="submission", disable=a.quiet or not sys.stderr.isatty(),
               dynamic_ncols=True)  # fmt: skip

    def progress(name: str, report, done: int, total: int) -> None:
        bar.update(1)
        if not a.quiet:
            bar.write(f"{name}: {report.summary_line()}")

    with bar:
        outcomes = grade_folder(target, options, out, a.format, a.workers, progress)
    passed = sum(g.report.ok for g in outcomes)
    print(f"{len(outcomes)} submissions graded, {passed} with every test passed; {out}/ (grading seed {seed}; "
          "summary.csv ranks them by similarity, for review)")  # fmt: skip
    return 0 if passed == len(outcomes) else 1


def submissions_in_or_fail(folder: Path, given: str) -> list[Path]:
    from .submission import submissions_in

    files = submissions_in(folder)
    if not files:
        raise ArgumentError("SUBMISSION", f"{given} holds no .py or .ipynb file")
    return files


def pick_upload(folder: Path, key: str) -> Path | None:
    """The file to grade in one student's upload: a notebook named like the assignment's (``hw1_*.ipynb``), else any
    notebook, else a ``.py`` file named like it, else any ``.py`` file (the first in name order)."""
    from .submission import submissions_in

    files = submissions_in(folder)
    for wanted in (f"{key}_*.ipynb", "*.ipynb", f"{key}_*.py", "*.py"):
        found = [p for p in files if p.match(wanted)]
        if found:
            return found[0]
    return None


COMMANDS = {"grade": (GradeArgs, grade), "grade bundle": (BundleArgs, bundle)}
"""command -> (the dataclass of its arguments, what it does with them: the exit code)."""
