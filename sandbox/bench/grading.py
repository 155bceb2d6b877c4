"""``sandbox bench grading``: a class of made-up hw1 submissions, graded as a course would."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import machine


def bench_grading(n: int = 150, workers: int = 2, quiet: bool = False) -> dict:
    """Grade ``n`` made-up hw1 submissions (:mod:`sandbox.grade.classroom`: correct, the usual mistakes, stubs,
    broken and hostile files, the reference sought three ways) with ``workers`` grading processes, as
    ``sandbox grade hw1 FOLDER --workers N`` does (training runs included, default limits); the wall time, and
    whether every verdict is the one that submission must get."""
    from ..grade.classroom import make_class, verdict
    from ..grade.submission import Options, grade_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "submissions", Path(tmp) / "grades"
        expected = make_class(folder, n)
        options = Options("hw1", seed=0)
        done = [0]

        def progress(name, report, i, total):
            done[0] = i
            if not quiet:
                print(f"  {i}/{total} {name}: {report.summary_line()}", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        graded = grade_folder(folder, options, out, "gradescope", workers, progress)
        wall = time.perf_counter() - t0
        isolation = graded[0].isolation if graded else "none"
    wrong = [g.report.submission for g in graded if not verdict(g.report, expected[g.report.submission])]
    by_kind: dict[str, list[float]] = {}
    for g in graded:
        by_kind.setdefault(expected[g.report.submission].kind, []).append(g.report.seconds)
    result = {
        "machine": machine(),
        "submissions": n,
        "workers": workers,
        "isolation": isolation,
        "wall_s": wall,
        "per_kind_median_s": {k: statistics.median(v) for k, v in sorted(by_kind.items())},
        "per_kind_count": {k: len(v) for k, v in sorted(by_kind.items())},
        "verdicts_as_expected": n - len(wrong),
        "unexpected": wrong,
    }
    rows = "\n".join(
        f"| {k} | {result['per_kind_count'][k]} | {m:.1f} |" for k, m in result["per_kind_median_s"].items()
    )
    print(
        f"grading {n} made-up hw1 submissions with {workers} grading processes ({isolation} isolation)\n"
        f"machine: {result['machine']}\n\n| kind | submissions | median s each |\n|---|---|---|\n{rows}\n\n"
        f"wall: {wall:.0f} s ({wall / 60:.1f} min), {wall / n:.1f} s per submission\n"
        f"verdicts as expected: {n - len(wrong)} of {n}" + (f" (not: {', '.join(wrong)})" if wrong else "")
    )
    return result
