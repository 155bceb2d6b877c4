"""report.md: how to read it (the test, Holm, the smallest p these seed counts allow, the methods), the tables of
final performance, of each group against its baseline and of the mechanism (the ratio before any update), and the
figures with their captions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ... import stats
from .tables import _fmt, _interval, _table


def _how_to_read(table: pd.DataFrame, baseline: str) -> list[str]:
    compared = _compared(table)
    seeds = [min(a, b) for a, b in zip(compared.runs, _base_runs(table, compared))]
    m = sum(1 for n, p in zip(seeds, compared.p_value) if n >= stats.MIN_SEEDS and np.isfinite(p))
    lines = [
        "## How to read it",
        "",
        f"**The verdict.** Each group is compared with its baseline (the same config with `{baseline}`) by a "
        "two-sided permutation test of the difference of mean final scores, and the p-values of the report's "
        f"{_count(m, 'comparison')} with at least {stats.MIN_SEEDS} seeds on both sides are adjusted together with "
        "Holm's method (*p Holm*; comparisons with fewer seeds are not tested). The verdict says "
        f"*better* or *worse* only when the adjusted p is below {stats.ALPHA} and both groups have at least "
        f"{stats.MIN_SEEDS} seeds, *too few seeds for a verdict* below that, and *no significant difference* "
        "otherwise, which means the seeds cannot tell the groups apart, not that they are equal: *seeds needed* is "
        "how many seeds per group would detect the observed difference 80% of the time.",
    ]
    if len(compared):
        n_pairs = sorted({(int(min(a, b)), int(max(a, b))) for a, b in zip(compared.runs, _base_runs(table, compared))})
        smallest = {pair: stats.smallest_p_value(*pair) for pair in n_pairs}
        text = "; ".join(f"{_fmt(p, '.2g')} with {a} seeds against {b}" for (a, b), p in smallest.items())
        lines += [
            "",
            f"The smallest p the test can reach: {text}; Holm multiplies the smallest p by the number of "
            f"comparisons ({m}).",
        ]
        eligible = [(a, b) for a, b in n_pairs if a >= stats.MIN_SEEDS]
        if eligible and all(smallest[pair] * m >= stats.ALPHA for pair in eligible):
            lines[-1] += (
                f" **With these seed counts no comparison of this report can be significant, however large the "
                f"effect** ({_fmt(min(smallest[p] for p in eligible), '.2g')} x {m} >= {stats.ALPHA}): more seeds "
                "per group or fewer comparisons per report would change that."
            )
    lines += [
        "",
        "**Methods.** *final* = mean return of the last 20 episodes (Gym) or mean reward of the last batch "
        "(language tasks). IQM = interquartile mean over seeds (the mean of the middle half), with a 95% BCa "
        "bootstrap interval (scipy.stats.bootstrap, 2,000 resamples; † where BCa is undefined and the percentile "
        "interval is shown); mean with a 95% Student t interval; difference of means with Welch's 95% t interval; "
        "Hedges' g (the difference in pooled standard deviations, small-sample corrected) with a normal-approximation "
        "95% interval; P(improvement) = P(X > Y) over pairs of seeds (0.5: no edge) with a 95% percentile-bootstrap "
        "interval; seeds needed for a two-sided t test at 0.05 with 80% power if the true effect were the observed "
        "g (noncentral t). The intervals are not adjusted for the number of comparisons: a difference interval that "
        "excludes 0 is not a verdict. A *collapse* is a run whose 20-episode mean reached 90% of the threshold "
        "and later fell below 50% of it.",
        "",
    ]
    return lines


def _compared(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of groups compared with a baseline."""
    return table[~table.baseline.isin(["", "(baseline)"])]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _base_runs(table: pd.DataFrame, compared: pd.DataFrame) -> list[int]:
    runs = dict(zip(table.group, table.runs))
    return [runs.get(b, 0) for b in compared.baseline]


def _markdown(sweep_dir: Path, runs, groups, table: pd.DataFrame, baseline: str, pictures) -> str:
    with_kl = bool(np.isfinite(table.kl_ref_first).any())
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        f"{len(runs)} finished runs in {len(groups)} groups (a group = one config, all its seeds).",
        "",
        *_how_to_read(table, baseline),
        "## Final performance",
        "",
        _table(
            ["group", "runs", "final IQM [95% BCa CI]", "mean [95% t CI]", "seed std", "solved", "median time-to-solve"]
            + ["collapses"],
            [
                [
                    r.group,
                    str(r.runs),
                    _interval(r.final_iqm, r.ci_low, r.ci_high, mark="" if r.ci_method.startswith("BCa") else " †"),
                    _interval(r.final_mean, r.mean_ci_low, r.mean_ci_high),
                    _fmt(r.final_std),
                    f"{r.solved}/{r.runs}",
                    (f"{_fmt(r.median_solve_s, '.1f')} s / " if math.isfinite(r.median_solve_s) else "")
                    + f"{_fmt(r.median_solve_steps, ',.0f')} steps"
                    if r.solved
                    else "-",
                    _fmt(r.collapses, ".0f"),
                ]
                for r in table.itertuples()
            ],
        ),
        "",
    ]
    compared = _compared(table)
    if len(compared):
        lines += [
            "## Against the baseline",
            "",
            _table(
                ["group", "difference of means [95% Welch CI]", "Hedges' g [95% CI]", "P(improvement) [95% CI]", "p"]
                + ["p Holm", "seeds needed", "verdict"],
                [
                    [
                        r.group,
                        _interval(r.diff, r.diff_ci_low, r.diff_ci_high),
                        _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, ".2f"),
                        _interval(r.p_improvement, r.poi_ci_low, r.poi_ci_high, ".2f"),
                        _fmt(r.p_value, ".2g"),
                        _fmt(r.p_holm, ".2g"),
                        _fmt(r.seeds_needed, ".0f"),
                        f"**{r.verdict}**" if r.verdict in ("better", "worse") else r.verdict,
                    ]
                    for r in compared.itertuples()
                ],
            ),
            "",
            f"Test: {next((t for t in compared.test if t), 'permutation test, difference of means')} (two-sided, "
            "scipy.stats.permutation_test: exact when there are at most 10,000 splits of the seeds), Holm's "
            f"correction over the {_count(int(np.isfinite(compared.p_value).sum()), 'comparison')} above.",
            "",
        ]
    lines += [
        "## Mechanism: the ratio before any update",
        "",
        _table(
            ["group", "first_ratio_dev", "first_clipfrac", "surrogate_var"]
            + (["kl_ref first update", "kl_ref last update"] if with_kl else []),
            [
                [r.group, _fmt(r.first_ratio_dev, ".4f"), _fmt(r.first_clipfrac, ".3f"), _fmt(r.surrogate_var)]
                + ([_fmt(r.kl_ref_first), _fmt(r.kl_ref_last)] if with_kl else [])
                for r in table.itertuples()
            ],
        ),
        "",
        "first_ratio_dev = mean |r - 1| over the first minibatch of each update, before any gradient "
        "step: 0 when the update sees the network that acted (dropout off, consistent), dropout noise "
        "otherwise.",
    ]
    if with_kl:
        lines += [
            "kl_ref = KL of the sampling policy to the frozen reference (--ref, else the initial policy or "
            "the pretrained model), k1: nats per sequence or episode (language tasks, GRPO), per step "
            "(PPO on Gym)."
        ]
    lines.append("")
    if pictures:
        lines += ["## Figures", ""] + [f"![{Path(name).stem}]({name})\n\n{caption}\n" for name, caption in pictures]
    return "\n".join(lines)
