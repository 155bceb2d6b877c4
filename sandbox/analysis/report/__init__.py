"""``sandbox report SWEEP_DIR``: what a sweep shows, with the statistics that keep it honest, and its figures.

Runs are grouped by config (every field but the seed). Per group: the final score's interquartile mean (IQM, the
mean of the middle 50% of seeds; Agarwal et al. 2021) with a BCa bootstrap interval, its mean with a Student t
interval, time-to-solve, seed-to-seed spread, collapses and the stability metrics. Each group is compared with its
baseline (default: the same config with ``dropout_mode = off``) by :func:`sandbox.stats.compare`: a two-sided
permutation test of the difference of mean final scores, the difference with Welch's interval, Hedges' g and the
probability of improvement with their intervals, and the seeds per group that 80% power would need.

The verdict comes from the test, never from intervals that do not overlap: the p-values of all the report's
comparisons are adjusted with Holm's method, and :func:`sandbox.stats.verdict` says "better" or "worse" only when the
adjusted p is below 0.05 and both groups have at least ``stats.MIN_SEEDS`` seeds ("too few seeds for a verdict"
otherwise). The trap it avoids: with 3 seeds per group two percentile-bootstrap intervals can fail to overlap while
the exact test cannot go below p = 0.1.

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
    """Write report.md, report.csv and the PNG figures into ``sweep_dir``; print the key table."""
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
        pictures = _figures(groups, table, baselines(groups, baseline), sweep_dir) if figures else []
    (sweep_dir / "report.md").write_text(_markdown(sweep_dir, runs, groups, table, baseline, pictures))
    if not quiet:
        print(key_table(table))
        print(f"\nreport: {sweep_dir / 'report.md'}")
    return table
