"""The homework grader: six assignments, each a few functions a learner writes and the trainers call through the
``Maths`` seam, checked against ours.

In a notebook::

    from sandbox.grade import check
    report = check("hw1", gae=gae)       # prints PASS / FAIL per test and "N passed, M failed"

From the command line (``sandbox grade --help``)::

    sandbox grade hw1 my_gae.py                                  # a .py file or a notebook (.ipynb, executed)
    sandbox grade hw1 submissions/ --format gradescope           # a folder of submissions: results.json each

Every test compares with the reference functions of :mod:`sandbox.maths` and :mod:`sandbox.dropout` at grading time,
on inputs drawn from a grading seed (a new one per ``sandbox grade`` run, printed so it can be repeated), or with a
hand case's data. ``sandbox grade`` runs each submission in a process of its own that holds none of the package's
answers, and computes every score in its own (:mod:`sandbox.grade.submission`). ``notebooks/homework/README.md`` has
the instructor's notes (points, hidden cases, an assignment of your own, Gradescope, what the isolation stops).
"""

from __future__ import annotations

from typing import Callable

from . import hw1, hw2, hw3, hw4, hw5, hw6
from .core import Assignment, Report, run_tests

ASSIGNMENTS: dict[str, Assignment] = {
    a.key: a for a in (hw1.ASSIGNMENT, hw2.ASSIGNMENT, hw3.ASSIGNMENT, hw4.ASSIGNMENT, hw5.ASSIGNMENT, hw6.ASSIGNMENT)
}

__all__ = ["ASSIGNMENTS", "Report", "assignment", "check", "grade_functions"]


def assignment(key: str) -> Assignment:
    """A built-in assignment by key (``hw1`` ... ``hw6``), or an instructor's own from its folder
    (:mod:`sandbox.grade.custom`). Raises :class:`~sandbox.grade.core.ArgumentError` naming ``HW``."""
    if key in ASSIGNMENTS:
        return ASSIGNMENTS[key]
    from .custom import load_assignment

    return load_assignment(key)


def check(key: str, *, quiet: bool = False, seed: int | None = None, **functions: Callable) -> Report:
    """Check your functions for assignment ``key`` ("hw1" ... "hw6") and print the report; returns it.

    Pass the functions by name: ``check("hw2", ppo_loss=ppo_loss, value_loss=value_loss)``. Tests of functions you
    do not pass are left out (with a note). A failure prints its case, what was expected and a hint; nothing raises,
    so a notebook runs on. The random cases are drawn from a new seed each time (the report's note gives it;
    ``seed=N`` draws the same cases again), as the grader does. While ``sandbox grade`` executes your notebook, the
    ``check`` it finds prints one line and returns an empty report (``report.ok`` is False): the grader runs the tests
    itself, in its own process.
    """
    a = assignment(key)
    unknown = sorted(set(functions) - set(a.functions))
    if unknown:
        raise ValueError(f"{key} asks for {', '.join(a.functions)}; there is no {', '.join(unknown)} in it")
    seed = new_seed() if seed is None else seed
    report = run_tests(a, functions, only_given=True, seed=seed)
    report.notes.append(f"random cases drawn with seed {seed} (check(..., seed={seed}) draws them again)")
    if not quiet:
        print(report.text())
    return report


def grade_functions(
    key: str,
    functions: dict[str, Callable | None],
    *,
    hidden: str | None = None,
    submission: str | None = None,
    notes: list[str] = (),
    only: tuple[str, ...] | None = None,
    integration: bool = True,
    seed: int = 0,
) -> Report:
    """Grade ``functions`` in this process (every function of the assignment; a missing one fails its tests), with
    the instructor's hidden cases from the directory ``hidden`` if given; ``only``: just the tests involving these
    functions; ``integration=False``: without the training runs; ``seed``: the grading seed of the random cases.
    For submissions, ``sandbox grade`` (each in its own process) is the way: this trusts the functions it is given."""
    from .cases import hidden_tests

    a = assignment(key)
    extra = hidden_tests(a, hidden) if hidden else []
    return run_tests(a, {name: functions.get(name) for name in a.functions}, extra=extra, submission=submission,
                     notes=list(notes), only=only, integration=integration, seed=seed)  # fmt: skip


def new_seed() -> int:
    """A fresh grading seed (from the operating system's randomness), below one million so a person can type it."""
    import secrets

    return secrets.randbelow(1_000_000)
