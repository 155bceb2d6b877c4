"""``sandbox report SWEEP_DIR``: what a sweep shows, with the statistics that keep it honest, and its figures.

Runs are grouped by config (every field but the seed). Per group: the final score's interquartile mean (IQM, the
mean of the middle 50% of seeds; Agarwal et al. 2021) with its Tukey-McLaughlin interval, its mean with a Student t
interval, time-to-solve, seed-to-seed spread, collapses, the runs that did not end finite (named) and the stability
metrics. Each group is compared with its baseline (default: the same config with ``dropout_mode = off``), all the
report's comparisons as one family (:func:`sandbox.stats.compare_family`): a two-sided permutation test of the
difference of mean final scores (exact, or drawn until its Monte Carlo error cannot move a Holm decision), Holm's
adjustment, the verdict, the difference's interval at the level that verdict used, Hedges' g with its exact interval,
the probability of improvement, and the smallest effect the seeds could detect.

The verdict comes from the test, never from intervals that do not overlap: :func:`sandbox.stats.verdict` says
"better" or "worse" only when the adjusted p is below 0.05 over its whole Monte Carlo range and both groups have at
least ``stats.MIN_SEEDS`` seeds ("too few seeds for a verdict" otherwise), "borderline" within that range,
"equivalent" only after an equivalence test, else "not significant". The trap it avoids: with 3 seeds per group two
percentile-bootstrap intervals can fail to overlap while the exact test cannot go below p = 0.1. The per-seed finals
go to ``finals.csv``, from which :func:`compare_finals` recomputes every verdict.

Figures: one row of panels per task (algorithm and environment) with one shared y-axis per task, every dropout mode
in its colour from :data:`sandbox.plots.MODE_COLORS`, dropout p on the x-axis (or as the panel) where it varies and a
line style or marker for one other varying setting (beta, ...).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from .figures import _figures
from .markdown import _markdown
from .panels import _facets, _tasks
from .runs import RunData, group_runs, load_runs
from .tables import (
    _parse_baseline,
    _short_group,
    baselines,
    check_baseline,
    collapsed,
    compare_finals,
    finals_frame,
    group_table,
    iqm,
    iqm_ci,
    key_table,
)

# what the command, the lessons and the tests import from sandbox.analysis.report (the tests also reach a few of its
# parts)
__all__ = [
    "RunData",
    "baselines",
    "check_baseline",
    "collapsed",
    "compare_finals",
    "group_runs",
    "iqm",
    "iqm_ci",
    "key_table",
    "load_runs",
    "write_report",
    "_facets",
    "_parse_baseline",
    "_short_group",
    "_tasks",
]


def write_report(
    sweep_dir: str | os.PathLike, baseline: str = "dropout_mode=off", quiet: bool = False, figures: bool = True
) -> pd.DataFrame:
    """Write report.md, report.csv, finals.csv (one row per run) and the PNG figures into ``sweep_dir``; print the
    key table."""
    from ...config import ConfigError

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError("sweep_dir", f"{sweep_dir} is not a directory")
    runs = load_runs(sweep_dir)
    if not runs:
        raise ConfigError("sweep_dir", f"{sweep_dir} holds no finished run (no summary.json)")
    groups = group_runs(runs)
    check_baseline(groups, baseline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # degenerate resamples of tiny groups
        table = group_table(groups, baseline)
        table.to_csv(sweep_dir / "report.csv", index=False)
        finals_frame(groups, table).to_csv(sweep_dir / "finals.csv", index=False)
        pictures = _figures(groups, table, baselines(groups, baseline), sweep_dir) if figures else []
    (sweep_dir / "report.md").write_text(_markdown(sweep_dir, runs, groups, table, baseline, pictures))
    if not quiet:
        print(key_table(table))
        print(f"\nreport: {sweep_dir / 'report.md'}")
    return table
