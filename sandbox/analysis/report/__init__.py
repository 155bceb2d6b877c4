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

import json
import os
import re
import warnings
from pathlib import Path

import pandas as pd

from .figures import FIGURES, _figures, figure
from .markdown import _markdown, _tex
from .panels import _facets, _tasks
from .runs import RunData, group_runs, load, load_runs, metrics_frame, runs_frame
from .tables import (
    DEFAULT_BASELINE,
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
    to_latex,
    to_markdown,
)

# what the command, the lessons and the tests import from sandbox.analysis.report (the tests also reach a few of its
# parts)
__all__ = [
    "FIGURES",
    "RunData",
    "baselines",
    "check_baseline",
    "collapsed",
    "compare_finals",
    "group_runs",
    "iqm",
    "iqm_ci",
    "key_table",
    "figure",
    "load",
    "load_runs",
    "metrics_frame",
    "report_dir",
    "runs_frame",
    "to_latex",
    "to_markdown",
    "write_report",
    "_facets",
    "_parse_baseline",
    "_short_group",
    "_tasks",
]


def report_dir(sweep_dir: str | os.PathLike, baseline: str = DEFAULT_BASELINE) -> Path:
    """Where ``sandbox report`` writes without ``--out``: the sweep's directory for the default baseline, else a
    folder of the sweep's named after the baseline (``report-beta_0.0``): two baselines, two reports, neither
    overwritten."""
    sweep_dir = Path(sweep_dir)
    if baseline == DEFAULT_BASELINE:
        return sweep_dir
    return sweep_dir / ("report-" + re.sub(r"[^A-Za-z0-9.+-]+", "_", baseline).strip("_"))


def _claim(out: Path, sweep_dir: Path, baseline: str) -> None:
    """Refuse, in one line, to write a report into ``out`` over a report against another baseline (or of another
    sweep), or into a non-empty folder that holds no report."""
    from ...config import ConfigError

    marker = out / "report.json"
    if marker.is_file():
        was = json.loads(marker.read_text())
        if was.get("baseline") != baseline or Path(was.get("sweep", sweep_dir)).resolve() != sweep_dir.resolve():
            raise ConfigError(
                "out",
                f"{out} holds the report of {was.get('sweep')} against {was.get('baseline')}; choose another --out "
                f"for the report against {baseline} (or remove it)",
            )
    elif out.is_dir() and out.resolve() != sweep_dir.resolve() and any(out.iterdir()):
        if not (out / "report.md").is_file():
            raise ConfigError("out", f"{out} is not empty and holds no report; choose another --out")


def write_report(
    sweep_dir: str | os.PathLike,
    baseline: str = DEFAULT_BASELINE,
    quiet: bool = False,
    figures: bool = True,
    out: str | os.PathLike | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Write report.md, report.csv, finals.csv (one row per run), report.tex (its two tables for a paper, booktabs)
    and the PNG figures into ``out`` (default :func:`report_dir`: the sweep's directory for the default baseline, a
    folder of its own for any other), with report.json saying which runs and baseline it is of; print the key table
    (``quiet``: only where the report went). A folder holding a report against another baseline is refused in one
    line: a report is never overwritten by another one. ``seed``: the resampling seed of the permutation tests that
    draw their splits (a reviewer's check: another seed changes no verdict; the title says a seed other than 0)."""
    from ...config import ConfigError

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError("sweep_dir", f"{sweep_dir} is not a directory")
    out = Path(out) if out is not None else report_dir(sweep_dir, baseline)
    runs = load_runs(sweep_dir)
    if not runs:
        raise ConfigError("sweep_dir", f"{sweep_dir} holds no finished run (no summary.json)")
    groups = group_runs(runs)
    check_baseline(groups, baseline)
    _claim(out, sweep_dir, baseline)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # degenerate resamples of tiny groups
        table = group_table(groups, baseline, seed)
        table.to_csv(out / "report.csv", index=False)
        finals_frame(groups, table).to_csv(out / "finals.csv", index=False)
        pictures = _figures(groups, baselines(groups, baseline), out) if figures else []
    title = f"Sweep report: {sweep_dir.name}" + ("" if baseline == DEFAULT_BASELINE else f", against {baseline}")
    title += f", resampling seed {seed}" if seed else ""
    (out / "report.md").write_text(_markdown(title, runs, groups, table, baseline, pictures))
    (out / "report.tex").write_text(_tex(title, groups, table, baseline))
    (out / "report.json").write_text(
        json.dumps(
            {
                "sweep": str(sweep_dir),
                "baseline": baseline,
                "runs": len(runs),
                "groups": len(groups),
                "resampling_seed": seed,
            },
            indent=1,
        )
        + "\n"
    )
    if not quiet:
        print(key_table(table) + "\n")
    print(f"report: {out / 'report.md'}")  # even quiet: where it went
    return table
