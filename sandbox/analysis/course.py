"""What a lesson needs so that every sentence it states is true of the run the student has just made.

A lesson states two kinds of things, and this module has one tool for each:

- **This run's numbers** (a mean return, an interval, how many seeds solved, this run's verdict): :func:`say`
  displays a Markdown paragraph, the numbers formatted into it by the code cell that computed them. It is the
  cell's output, so Jupyter, GitHub's notebook viewer and the course website (MyST-NB renders ``text/markdown``
  outputs) all show the student's own numbers. MyST-NB's ``glue`` was the other way: a ``{glue:text}`` role sits in a
  markdown cell, which only the site substitutes; Jupyter and GitHub would show the raw role.
- **What holds run after run** (the mechanism: ``first_ratio_dev`` is exactly 0 for dropout off and consistent;
  ``naive`` is noisier than ``rollout-eval``), and the verdicts a lesson has the seeds for: :func:`claim` checks the
  sentence against this run and raises :class:`ClaimError`, naming the sentence and what was measured, when the run
  contradicts it. A lesson whose run contradicts its prose fails instead of teaching something false.

Seed sets. ``SANDBOX_SEED_SET=k`` (default 1) shifts every seed a lesson draws to a disjoint set:
:func:`seeds` gives ``(k - 1) * SEED_STRIDE + i``. ``make course-check`` runs every lesson on set 1 (the committed
outputs) and again on set 2, so a claim that only held for the seeds it was written on fails there.

FAST mode (``SANDBOX_FAST=1``, what ``make test`` runs): tiny budgets whose numbers mean nothing. Claims about
outcomes (``outcome=True``, the default) are skipped, visibly; structural claims (``outcome=False``: the ratio is
exactly 1 in consistent mode, whatever the budget) are still checked. A lesson that trains nothing and reads
committed studies calls :func:`trains_nothing`: its numbers are the same in FAST mode, so every claim is checked.

Two variables for whoever runs many lessons (``tools/course_check.py``): ``SANDBOX_CLAIMS=report`` prints a
contradicted claim and carries on instead of raising, and ``SANDBOX_CLAIMS_LOG=path`` appends one JSON line per
claim (the sentence, ``held`` / ``contradicted`` / ``skipped``, what was measured).
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

SEED_STRIDE = 1000
"""Seed set k uses the seeds (k - 1) * SEED_STRIDE + i: no lesson draws 1000 seeds, so the sets never meet."""


class CourseError(ValueError):
    """A course variable with a value it cannot take (the message names the variable and what is allowed)."""


class ClaimError(AssertionError):
    """This run contradicts a sentence of the lesson; the message quotes the sentence and what was measured."""


def fast() -> bool:
    """``SANDBOX_FAST=1``: the lessons' tiny budgets (``make test``), whose numbers mean nothing."""
    return os.environ.get("SANDBOX_FAST") == "1"


def seed_set() -> int:
    """The seed set ``SANDBOX_SEED_SET`` names: 1 (the default: the committed outputs) or any larger whole number."""
    raw = os.environ.get("SANDBOX_SEED_SET", "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise CourseError(f"SANDBOX_SEED_SET: {raw!r} is not a seed set; allowed: a whole number >= 1 (default 1)")
    return int(raw)


FAST = fast()
SEED_SET = seed_set()


def trains_nothing() -> None:
    """Declare, at the top of a lesson that trains nothing and reads committed studies (lesson 09), that
    ``SANDBOX_FAST`` changes none of its numbers: from here on :func:`say` adds no FAST-mode note and :func:`claim`
    checks outcome claims in FAST mode too. So ``make test`` (FAST mode) fails on a sentence that a newly committed
    study table contradicts, instead of skipping it. The trap: call it only in such a lesson; in one that trains, it
    would hold FAST mode's tiny runs to the full runs' sentences."""
    global FAST
    FAST = False


def seed(i: int) -> int:
    """The lesson's seed ``i`` in this seed set: ``i`` in set 1, ``1000 + i`` in set 2, and so on. Every random
    draw of a lesson (training seeds, a Monte Carlo sample, a generator) takes its seed from here."""
    if not 0 <= i < SEED_STRIDE:
        raise CourseError(f"seed: {i} is outside a seed set; allowed: 0 to {SEED_STRIDE - 1}")
    return (SEED_SET - 1) * SEED_STRIDE + i


def seeds(n: int, start: int = 0) -> list[int]:
    """``n`` consecutive seeds of this seed set, from the lesson's seed ``start``: ``seeds(5)`` is [0, ..., 4] in
    set 1 and [1000, ..., 1004] in set 2."""
    return [seed(start + i) for i in range(n)]


def seed_names(values: list[int]) -> str:
    """How a sentence names seeds: ``"seeds 0-4"``, ``"seed 1000"``, ``"seeds 1000, 1002"`` (a range when they
    are consecutive)."""
    values = sorted(values)
    if len(values) == 1:
        return f"seed {values[0]}"
    if values == list(range(values[0], values[-1] + 1)):
        return f"seeds {values[0]}-{values[-1]}"
    return "seeds " + ", ".join(map(str, values))


def span(values, fmt: str = "{:.0f}") -> str:
    """How a sentence gives a range: ``"29 to 142"``, or ``"500"`` when every value prints the same."""
    low, high = (fmt.format(v) for v in (min(values), max(values)))
    return low if low == high else f"{low} to {high}"


def say(markdown: str) -> None:
    """Display ``markdown`` (dedented) as the cell's output: a paragraph of the lesson whose numbers come from this
    run. In FAST mode it is marked as such. Outside a notebook it is printed. Keep it to what CommonMark renders
    (paragraphs, lists, emphasis, code, links): the site renders these outputs as CommonMark, not MyST."""
    text = textwrap.dedent(markdown).strip()
    if FAST:
        text = "*(FAST mode: tiny runs, so the numbers below mean nothing.)*\n\n" + text
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # the package without its dev extra: no IPython
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


@dataclass
class Claim:
    sentence: str
    status: str  # "held", "contradicted" or "skipped" (an outcome in FAST mode)
    measured: str
    outcome: bool
    seed_set: int
    fast: bool


CLAIMS: list[Claim] = []
"""Every claim checked since the kernel started, in order."""


def claim(sentence: str, holds: bool, measured: str = "", *, outcome: bool = True) -> bool:
    """Check a sentence of the lesson against this run: print that it held, or raise :class:`ClaimError` quoting it.

    ``sentence``: the lesson's words, as the student read them in the markdown above (quote them, so a failure
    points at the sentence to fix). ``holds``: whether this run agrees. ``measured``: what the run gave, for the
    message. ``outcome``: a claim about learning outcomes (a return, a verdict), skipped in FAST mode, whose tiny
    runs mean nothing; ``outcome=False`` for what must hold at any budget (an exact ratio, a count that the code
    fixes). Returns ``holds`` (True unless ``SANDBOX_CLAIMS=report`` let a contradiction through)."""
    skip = outcome and FAST
    status = "skipped" if skip else "held" if holds else "contradicted"
    record = Claim(sentence, status, measured, outcome, SEED_SET, FAST)
    CLAIMS.append(record)
    log = os.environ.get("SANDBOX_CLAIMS_LOG")
    if log:
        with Path(log).open("a") as f:
            f.write(json.dumps(asdict(record)) + "\n")
    detail = f" (this run: {measured})" if measured else ""
    if skip:
        print(f"- not checked in FAST mode (tiny runs): {sentence}")
        return True
    if holds:
        print(f"✓ holds in this run: {sentence}{detail}")
        return True
    message = f"this run contradicts the lesson: {sentence!r}{detail}; seed set {SEED_SET}"
    if os.environ.get("SANDBOX_CLAIMS") == "report":
        print(f"✘ CONTRADICTED: {message}")
        return False
    raise ClaimError(message)
