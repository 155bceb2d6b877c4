"""report.md: how to read it (the test, Holm, the smallest p these seed counts allow, the methods), the tables of
final performance, of each group against its baseline and of the mechanism (the ratio before any update), and the
figures with their captions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import stats
from .runs import describe_fixed
from .tables import _fmt, _interval, _latex, _table


def _how_to_read(table: pd.DataFrame, baseline: str) -> list[str]:
    compared = _compared(table)
    m = _tested(table)
    first = stats.ALPHA / max(m, 1)
    lines = [
        "## How to read it",
        "",
        f"**The verdict.** Each group is compared with its baseline (the same config with `{baseline}`) by a "
        "two-sided permutation test of the difference of mean final scores: exact where the splits of the seeds "
        f"number at most {stats.MAX_EXACT:,}, else drawn ({stats.RESAMPLES:,} random splits, more, up to "
        f"{stats.MAX_RESAMPLES:,}, for a p near one of Holm's thresholds; *p* then shows the bounds of the exact p, "
        f"simultaneous at {stats.MC_CONFIDENCE} over the report). The report's {_count(m, 'comparison')} with at "
        f"least {stats.MIN_SEEDS} seeds on both sides form one family, adjusted with Holm's method (*p Holm*; "
        "comparisons with fewer seeds are not tested). The verdict says *better* or *worse* when the adjusted p is "
        f"below {stats.ALPHA} even at the top of its Monte Carlo bounds; *borderline* when those bounds straddle "
        f"{stats.ALPHA} (another resampling could say either); *equivalent* when, not different, a TOST shows the "
        f"standardised difference (in pooled standard deviations, what Hedges' g estimates) inside +-"
        f"{stats.EQUIVALENCE_G} after Holm over the same comparisons; *not significant* otherwise, which means the "
        "seeds cannot tell the groups apart, not that they are equal: *detectable |g|* is the smallest standardised "
        "difference these seeds detect 80% of the time at Holm's first level (0.05 over the comparisons); *too few "
        "seeds for a verdict* below "
        f"{stats.MIN_SEEDS} seeds.",
        "",
        "**The interval beside the verdict** (*difference [CI at its level]*) is the permutation test inverted at the "
        f"level that row was tested at (*level* = {stats.ALPHA} x p / p Holm: the p is below it exactly when p Holm "
        f"is below {stats.ALPHA}), so it excludes 0 exactly on the rows called better or worse. The other intervals "
        "(Hedges' g, P(improvement)) are 95% and unadjusted.",
    ]
    if len(compared):
        n_pairs = sorted({(int(min(a, b)), int(max(a, b))) for a, b in zip(compared.runs, _base_runs(table, compared))})
        smallest = {pair: stats.smallest_p_value(*pair, stats.MAX_RESAMPLES) for pair in n_pairs}
        text = "; ".join(f"{_fmt(p, '.2g')} with {a} seeds against {b}" for (a, b), p in smallest.items())
        detect = "; ".join(
            f"{_detectable(stats.detectable_effect(a, b, first))} with {a} against {b}" for a, b in n_pairs
        )
        needed = stats.seeds_needed(stats.POWER_G, comparisons=max(m, 1))
        lines += [
            "",
            f"**Power.** Holm's first level here is {stats.ALPHA} / {max(m, 1)} = {_fmt(first, '.2g')}. At that level "
            f"80% power needs |g| {detect}; for |g| {stats.POWER_G} it needs {needed:.0f} seeds per group. The "
            f"smallest p the test can reach: {text}.",
        ]
        eligible = [(a, b) for a, b in n_pairs if a >= stats.MIN_SEEDS]
        if eligible and all(smallest[pair] * m >= stats.ALPHA for pair in eligible):
            lines[-1] += (
                f" **With these seed counts no comparison of this report can be significant, however large the "
                f"effect** ({_fmt(min(smallest[p] for p in eligible), '.2g')} x {m} >= {stats.ALPHA}): more seeds "
                "per group or fewer comparisons per report would change that."
            )
    lines += ["", _nonfinite(table)]
    lines += [
        "",
        "**Methods.** *final* = mean return of the last 20 episodes (Gym) or mean reward of the last batch "
        "(language tasks). IQM = interquartile mean over seeds (the mean of the middle half), with its 95% "
        "Tukey-McLaughlin interval (the trimmed mean's t interval from the winsorized variance: about 0.94 coverage "
        "at 5 seeds, where the BCa bootstrap's was 0.89); mean with a 95% Student t interval; Hedges' g (the "
        "difference in pooled standard deviations, small-sample corrected) with its exact 95% noncentral-t interval; "
        "P(improvement) = P(X > Y) over pairs of seeds (0.5: no edge) with a 95% percentile-bootstrap interval; "
        "Welch's 95% interval of the difference in report.csv (unadjusted). Per-seed finals: finals.csv, from which "
        "`sandbox.analysis.report.compare_finals` recomputes every verdict. A *collapse* is a run whose 20-episode "
        "mean reached 90% of the threshold and later fell below 50% of it.",
        "",
    ]
    return lines


def _detectable(d: float) -> str:
    return f"{d:.2f}" if np.isfinite(d) else "none (below the permutation floor)"


def _nonfinite(table: pd.DataFrame) -> str:
    """The runs whose final score is not finite (a diverged run), named: every statistic leaves them out."""
    bad = table[table.nonfinite > 0]
    if not len(bad):
        return "**Runs that did not end finite**: none."
    named = "; ".join(f"{r.group}: {r.nonfinite} (seeds {r.nonfinite_seeds})" for r in bad.itertuples())
    return f"**Runs that did not end finite**, left out of every statistic: {named}."


def _compared(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of groups compared with a baseline."""
    return table[~table.baseline.isin(["", "(baseline)"])]


def _tested(table: pd.DataFrame) -> int:
    """The comparisons of the Holm family (at least ``stats.MIN_SEEDS`` seeds on both sides)."""
    return int((~_compared(table).verdict.str.startswith("too few seeds")).sum())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _base_runs(table: pd.DataFrame, compared: pd.DataFrame) -> list[int]:
    runs = dict(zip(table.group, table.runs))
    return [runs.get(b, 0) for b in compared.baseline]


def _final_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The final-performance table: header and rows (as text), for report.md and report.tex alike."""
    header = ["group", "runs", "final IQM [95% CI]", "mean [95% t CI]", "seed std", "solved", "median time-to-solve"]
    rows = [
        [
            r.group,
            str(r.runs),
            _interval(r.final_iqm, r.ci_low, r.ci_high),
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
    ]
    return header + ["collapses"], rows


def _against_rows(compared: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The against-the-baseline table: header and rows (the verdicts better and worse in bold: ``**word**``)."""
    header = ["group", "difference [CI at its level]", "Hedges' g [95% CI]", "P(improvement) [95% CI]", "p"]
    rows = [
        [
            r.group,
            _interval(r.diff, r.diff_level_low, r.diff_level_high),
            _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, ".2f"),
            _interval(r.p_improvement, r.poi_ci_low, r.poi_ci_high, ".2f"),
            _fmt(r.p_value, ".2g") if r.exact else _interval(r.p_value, r.p_low, r.p_high, ".2g"),
            _fmt(r.p_holm, ".2g")
            if r.exact or not np.isfinite(r.p_holm_low)
            else _interval(r.p_holm, r.p_holm_low, r.p_holm_high, ".2g"),
            _fmt(r.level, ".2g"),
            _detectable(r.detectable_g),
            f"**{r.verdict}**" if r.verdict in ("better", "worse") else r.verdict,
        ]
        for r in compared.itertuples()
    ]
    return header + ["p Holm", "level", "detectable |g|", "verdict"], rows


SPREAD_FOLD = 3.0
"""A group's seed standard deviation this many times its baseline's (or a third of it) is remarked on."""


def _spreads(table: pd.DataFrame) -> str:
    """A note for every compared group whose seeds spread several-fold more or less than its baseline's."""
    std = dict(zip(table.group, table.final_std))
    notes = []
    for r in _compared(table).itertuples():
        mine, theirs = r.final_std, std.get(r.baseline, math.nan)
        if not (np.isfinite(mine) and np.isfinite(theirs)) or (mine == 0 and theirs == 0):
            continue
        ratio = mine / theirs if theirs > 0 else math.inf
        if ratio >= SPREAD_FOLD or ratio <= 1 / SPREAD_FOLD:
            if theirs == 0:
                how = f"the seeds of {r.baseline} all ended equal"
            elif mine == 0:
                how = "its seeds all ended equal"
            else:
                how = f"{max(ratio, 1 / ratio):.1f}x " + ("wider" if ratio > 1 else "narrower")
            notes.append(f"{r.group}: {_fmt(mine)} against {_fmt(theirs)} for {r.baseline} ({how})")
    if not notes:
        return ""
    return (
        "**Spreads differ several-fold** (the seeds' standard deviation of the final score, group against its "
        f"baseline; {SPREAD_FOLD:g}x or more): " + "; ".join(notes) + ". The test compares means, under a null in "
        "which the seeds of the two groups could be exchanged; with spreads this different a verdict can reflect the "
        "spread as much as the means, and the spread is a result of its own (a mode that makes the seeds agree, or "
        "one that lets some of them fail): read it in final_per_seed.png."
    )


def _fixed(groups) -> list[str]:
    text = describe_fixed(groups)
    if not text:
        return []
    return [
        f"**Fixed settings** (the same in every group, and not what `sandbox train` chooses by default; the group "
        f"labels name only what varies): {text}.",
        "",
    ]


def _markdown(title: str, runs, groups, table: pd.DataFrame, baseline: str, pictures) -> str:
    with_kl = bool(np.isfinite(table.kl_ref_first).any())
    with_critic = bool(np.isfinite(table.first_value_dev).any())  # some group has a critic (PPO, not GRPO)
    final_header, final_rows = _final_rows(table)
    lines = [
        f"# {title}",
        "",
        f"{len(runs)} finished runs in {len(groups)} groups (a group = one config, all its seeds), each compared with "
        f"its baseline `{baseline}`.",
        "",
        *_fixed(groups),
        *_how_to_read(table, baseline),
        "## Final performance",
        "",
        _table(final_header, final_rows),
        "",
    ]
    compared = _compared(table)
    if len(compared):
        against_header, against_rows = _against_rows(compared)
        lines += [
            "## Against the baseline",
            "",
            _table(against_header, against_rows),
            "",
            f"Test: {next((t for t in compared.test if t), 'permutation test, difference of means')} (two-sided), "
            f"Holm's correction over the {_count(_tested(table), 'comparison')} with at least {stats.MIN_SEEDS} seeds "
            "per side.",
            "",
        ]
        spreads = _spreads(table)
        if spreads:
            lines += [spreads, ""]
    lines += [
        "## Mechanism: the ratio before any update",
        "",
        _table(
            ["group", "first_ratio_dev"]
            + (["first_value_dev"] if with_critic else [])
            + ["first_clipfrac", "surrogate_var"]
            + (["kl_ref first update", "kl_ref last update"] if with_kl else []),
            [
                [r.group, _fmt(r.first_ratio_dev, ".4f")]
                + ([_fmt(r.first_value_dev, ".4f")] if with_critic else [])
                + [_fmt(r.first_clipfrac, ".3f"), _fmt(r.surrogate_var)]
                + ([_fmt(r.kl_ref_first), _fmt(r.kl_ref_last)] if with_kl else [])
                for r in table.itertuples()
            ],
        ),
        "",
        "first_ratio_dev = mean |r - 1| over the first minibatch of each update, before any gradient "
        "step: 0 when the update sees the network that acted (dropout off, consistent), dropout noise "
        "otherwise.",
    ]
    if with_critic:
        lines += [
            "first_value_dev = mean |V - V_old| of the critic over the same minibatch, before any gradient step: "
            "the critic's first_ratio_dev, 0 when the update sees the critic that valued the states (dropout off, "
            "consistent, dropout in the policy only), dropout noise in the critic otherwise (- : no critic)."
        ]
    if with_kl:
        lines += [
            "kl_ref = KL of the sampling policy to the frozen reference (--ref, else the initial policy or "
            "the pretrained model), k1: nats per sequence or episode (language tasks, GRPO), per step "
            "(PPO on Gym)."
        ]
    lines.append("")
    if pictures:
        # alt text: what the figure shows (the caption's head), not its file name; the caption below says the rest
        lines += ["## Figures", ""] + [
            f"![{caption.split(':')[0].rstrip('.')}, for every group of this report]({name})\n\n{caption}\n"
            for name, caption in pictures
        ]
    return "\n".join(lines)


def _tex(title: str, groups, table: pd.DataFrame, baseline: str) -> str:
    """report.tex: the report's two tables as LaTeX (booktabs), for a paper; the same cells as report.md's."""
    fixed = describe_fixed(groups)
    parts = [
        f"% {title} (sandbox report): its tables for a paper. Needs \\usepackage{{booktabs}}.",
        _latex(*_final_rows(table), f"Final performance{'. Fixed: ' + fixed if fixed else ''}.", "tab:final"),
    ]
    compared = _compared(table)
    if len(compared):
        caption = f"Each group against its baseline ({baseline}); Holm over {_count(_tested(table), 'comparison')}."
        parts.append(_latex(*_against_rows(compared), caption, "tab:against"))
    return "\n".join(parts)
