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

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import stats
from .dropout_modes import dropout_is_off
from .plots import MODE_COLORS, mode_color, use_style

IGNORED = ("seed", "out", "overwrite", "quiet", "torch_threads", "save_every", "tensorboard")  # not what a group is
# fields without effect when dropout is off: a baseline "dropout_mode=off" group may differ in them
INERT_WHEN_OFF = (
    "dropout",
    "dropout_value",
    "dropout_schedule",
    "dropout_cutoff",
    "dropout_samples",
    "multi_sample_average",
)


# --- statistics (pure; tests/test_sweep.py and tests/test_stats.py check them on known answers) -------------------

iqm = stats.iqm


def iqm_ci(x, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """BCa bootstrap confidence interval of the IQM (:func:`sandbox.stats.bootstrap_interval`; the percentile
    interval where BCa is undefined); NaNs with < 2 values."""
    low, high, _ = stats.bootstrap_interval(x, iqm, confidence, "BCa", n_resamples, seed)
    return low, high


def probability_of_improvement(x, y) -> tuple[float, float]:
    """P(X > Y) + P(X = Y) / 2 over all pairs (x_i, y_j), and the two-sided Mann-Whitney p-value. 0.5 = no edge.
    (The report's verdicts use :func:`sandbox.stats.compare`'s permutation test; this p-value is kept in report.csv
    as ``mw_pvalue`` for readers of older reports.)"""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan
    res = sps.mannwhitneyu(x, y, alternative="two-sided")
    return float(res.statistic / (len(x) * len(y))), float(res.pvalue)


def collapsed(curve, threshold: float | None) -> bool | None:
    """A collapse: the curve (20-episode mean return, or batch mean reward) reached 90% of the threshold and later
    fell below 50% of it. None when the rule does not apply (no threshold, or a threshold <= 0)."""
    if threshold is None or not threshold > 0:
        return None
    c = np.asarray(curve, dtype=float)
    reached = np.flatnonzero(c >= 0.9 * threshold)
    if len(reached) == 0:
        return False
    return bool(np.any(c[reached[0] :] < 0.5 * threshold))


# --- loading -----------------------------------------------------------------------------------------------------


@dataclass
class RunData:
    path: Path
    config: dict
    summary: dict
    metrics: pd.DataFrame

    @property
    def is_lang(self) -> bool:
        return str(self.config.get("env", "")).startswith("lang:")

    @property
    def final(self) -> float:
        """Final return (Gym: last 20 episodes) or final reward (language tasks: the last batch)."""
        v = self.summary.get("final_reward") if self.is_lang else self.summary.get("final_return")
        return math.nan if v is None else float(v)


@dataclass
class Group:
    key: str
    config: dict
    runs: list[RunData] = field(default_factory=list)
    label: str = ""
    family: str = ""  # the task ("PPO CartPole-v1") when the sweep has several, else ""
    varying: list[str] = field(default_factory=list)  # the fields that tell this group from its family's others

    @property
    def task(self) -> str:
        """The algorithm and environment, e.g. "PPO CartPole-v1": every figure has one row of panels per task."""
        return f"{str(self.config.get('algo', '')).upper()} {self.config.get('env', '')}".strip()

    @property
    def mode(self) -> str:
        return str(self.config.get("dropout_mode", "off"))

    @property
    def finals(self) -> np.ndarray:
        return np.array([r.final for r in self.runs])

    def label_without(self, *fields: str) -> str:
        parts = ", ".join(f"{k}={self.config[k]}" for k in self.varying if k not in fields)
        return ": ".join(x for x in (self.family, parts) if x) or "all runs"


def load_runs(sweep_dir: str | os.PathLike) -> list[RunData]:
    """Every finished run (a summary.json) in or below ``sweep_dir``, in path order."""
    runs = []
    for summary in sorted(Path(sweep_dir).rglob("summary.json")):
        d = summary.parent
        try:
            runs.append(
                RunData(
                    d,
                    json.loads((d / "config.json").read_text()),
                    json.loads(summary.read_text()),
                    pd.read_csv(d / "metrics.csv"),
                )
            )
        except (OSError, ValueError):
            continue  # not a complete run directory
    return runs


def group_runs(runs: list[RunData]) -> list[Group]:
    """Runs grouped by config (all fields but the seed). A group's label names its algorithm and env when the
    sweep has several, then the fields that vary between the groups of that algorithm and env."""
    groups: dict[str, Group] = {}
    for r in runs:
        cfg = {k: v for k, v in r.config.items() if k not in IGNORED}
        key = json.dumps(cfg, sort_keys=True)
        groups.setdefault(key, Group(key, cfg)).runs.append(r)
    families: dict[tuple, list[Group]] = {}
    for g in groups.values():
        families.setdefault((g.config.get("algo"), g.config.get("env")), []).append(g)
    for (algo, env), members in families.items():
        varying = [
            k
            for k in members[0].config
            if len({json.dumps(m.config.get(k)) for m in members}) > 1 and k not in ("algo", "env")
        ]
        for g in members:
            g.family, g.varying = (g.task if len(families) > 1 else ""), varying
            g.label = g.label_without()
        # dropout off: its rate, schedule, ... have no effect, so its label leaves them out (unless that would
        # give two groups the same label)
        short = {
            id(g): g.label_without(*INERT_WHEN_OFF) if dropout_is_off(g.config.get("dropout_mode")) else g.label
            for g in members
        }
        if len(set(short.values())) == len(members):
            for g in members:
                g.label = short[id(g)]
    return sorted(groups.values(), key=lambda g: g.label)


# --- the report --------------------------------------------------------------------------------------------------


DEFAULT_BASELINE = "dropout_mode=off"


def _parse_baseline(spec: str, groups: Sequence[Group] = ()) -> tuple[str, object]:
    """``"field=value"`` -> (field, value), the value read as JSON (``beta=0.0``, ``init_from_ref=false``), Python's
    ``True``/``False``/``None`` accepted too, else kept as a string (``dropout_mode=off``). With ``groups``: as the
    runs spell an equal value (``beta=0`` is their 0.0; groups are matched by their JSON, where 0 is not 0.0)."""
    name, _, raw = spec.partition("=")
    name, raw = name.strip(), raw.strip()
    python = {"True": True, "False": False, "None": None}
    if raw in python:
        value = python[raw]
    else:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    return name, next((g.config[name] for g in groups if name in g.config and g.config[name] == value), value)


def check_baseline(groups: list[Group], baseline: str) -> None:
    """A one-line error unless some group of the sweep has ``baseline``'s value (a typo would otherwise give a
    report with no comparison at all). A sweep without dropout-off runs may keep the default baseline."""
    from .config import ConfigError

    field_, value = _parse_baseline(baseline, groups)
    if not field_ or "=" not in baseline:
        raise ConfigError("baseline", f"expected FIELD=VALUE (e.g. dropout_mode=off, beta=0.0), got {baseline!r}")
    if any(field_ in g.config and g.config[field_] == value for g in groups) or baseline == DEFAULT_BASELINE:
        return
    if not any(field_ in g.config for g in groups):
        raise ConfigError("baseline", f"the runs have no field {field_!r} (a config field, e.g. dropout_mode, beta)")
    seen = sorted({json.dumps(g.config[field_]) for g in groups if field_ in g.config})
    raise ConfigError("baseline", f"no group has {field_} = {json.dumps(value)}; this sweep has {', '.join(seen)}")


def _baseline_of(g: Group, groups: list[Group], by_key: dict, field_: str, value) -> Group | None:
    """The group with the same config but ``field_ = value``; for ``dropout_mode=off``, differences in fields
    that dropout-off makes inert (the rate, the schedule, ...) are allowed."""
    exact = by_key.get(json.dumps({**g.config, field_: value}, sort_keys=True))
    if exact is not None or not (field_ == "dropout_mode" and dropout_is_off(value)):
        return exact
    want = {k: v for k, v in {**g.config, field_: value}.items() if k not in INERT_WHEN_OFF}
    for other in groups:
        if {k: v for k, v in other.config.items() if k not in INERT_WHEN_OFF} == want:
            return other
    return None


def baselines(groups: list[Group], baseline: str = DEFAULT_BASELINE) -> dict[str, Group | None]:
    """Group key -> its baseline group: None when the sweep has none, the group itself when it is one."""
    field_, value = _parse_baseline(baseline, groups)
    by_key = {g.key: g for g in groups}
    return {g.key: _baseline_of(g, groups, by_key, field_, value) for g in groups}


COMPARISON_COLUMNS = (
    "test",
    "p_value",
    "p_holm",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "hedges_g",
    "g_ci_low",
    "g_ci_high",
    "p_improvement",
    "poi_ci_low",
    "poi_ci_high",
    "seeds_needed",
    "mw_pvalue",
)


def _describe(g: Group) -> dict:
    """The per-group half of a report row: what the group's own seeds say."""
    finals = g.finals
    ok = finals[np.isfinite(finals)]
    low, high, method = stats.bootstrap_interval(ok, iqm)
    t_low, t_high, _ = stats.t_interval(ok)
    solved = [r for r in g.runs if r.summary.get("solved_at_steps") is not None]
    alone = [r for r in solved if r.summary.get("population", 1) == 1]
    threshold = g.runs[0].summary.get("reward_threshold")
    collapses = [collapsed(r.metrics["ep_return_mean"].to_numpy(), threshold) for r in g.runs]
    m = pd.concat([r.metrics for r in g.runs])
    return {
        "group": g.label,
        "task": g.task,
        "dropout_mode": g.mode,
        "dropout_p": float(g.config.get("dropout") or 0.0),
        "runs": len(g.runs),
        "final_iqm": float(iqm(ok)) if len(ok) else math.nan,
        "ci_low": low,
        "ci_high": high,
        "ci_method": method,
        "final_mean": float(ok.mean()) if len(ok) else math.nan,
        "mean_ci_low": t_low,
        "mean_ci_high": t_high,
        "final_std": float(np.std(ok, ddof=1)) if len(ok) > 1 else math.nan,
        "solved": len(solved),
        # seconds only for runs trained alone: a population member's clock is the whole population's
        "median_solve_s": float(np.median([r.summary["solved_at_s"] for r in alone])) if alone else math.nan,
        "median_solve_steps": float(np.median([r.summary["solved_at_steps"] for r in solved])) if solved else math.nan,
        "collapses": sum(bool(c) for c in collapses) if collapses and collapses[0] is not None else math.nan,
        "first_ratio_dev": float(m["first_ratio_dev"].mean()),
        "first_clipfrac": float(m["first_clipfrac"].mean()),
        "surrogate_var": float(m["surrogate_var"].mean()),
        "kl_ref_first": _mean_of(g, lambda m: m["kl_ref"].iloc[0]),
        "kl_ref_last": _mean_of(g, lambda m: m["kl_ref"].iloc[-1]),
    }


def group_table(groups: list[Group], baseline: str = "dropout_mode=off") -> pd.DataFrame:
    """One row per group: the statistics of the report (also written as report.csv).

    Every group with a baseline is compared with it (:func:`sandbox.stats.compare`); the p-values of all these
    comparisons that can get a verdict (``stats.MIN_SEEDS`` seeds or more on both sides) are adjusted together with
    Holm's method (``p_holm``), and ``verdict`` is :func:`sandbox.stats.verdict` of the adjusted p. Comparisons with
    too few seeds are not tested, so they do not weaken the others' correction (their ``p_holm`` is Holm's over
    them alone, for information)."""
    bases = baselines(groups, baseline)
    comparisons = {}
    for g in groups:
        base = bases[g.key]
        if base is not None and base is not g:
            comparisons[g.key] = (base, stats.compare(g.finals, base.finals))
    testable = {k: c for k, (_, c) in comparisons.items() if min(c.n_x, c.n_y) >= stats.MIN_SEEDS}
    untested = {k: c for k, (_, c) in comparisons.items() if k not in testable}
    adjusted = {}
    for family in (testable, untested):
        adjusted |= dict(zip(family, stats.holm([c.p_value for c in family.values()])))
    rows = []
    for g in groups:
        row = _describe(g)
        if g.key not in comparisons:
            base = bases[g.key]
            row.update(baseline="" if base is None else "(baseline)", **dict.fromkeys(COMPARISON_COLUMNS, math.nan))
            row.update(test="", verdict="")
        else:
            base, c = comparisons[g.key]
            x, y = g.finals, base.finals
            row.update(
                baseline=base.label,
                test=c.test,
                p_value=c.p_value,
                p_holm=adjusted[g.key],
                diff=c.diff,
                diff_ci_low=c.diff_interval.low,
                diff_ci_high=c.diff_interval.high,
                hedges_g=c.effect_size,
                g_ci_low=c.effect_interval.low,
                g_ci_high=c.effect_interval.high,
                p_improvement=c.prob_improvement,
                poi_ci_low=c.prob_interval.low,
                poi_ci_high=c.prob_interval.high,
                seeds_needed=c.seeds_needed,
                mw_pvalue=probability_of_improvement(x[np.isfinite(x)], y[np.isfinite(y)])[1],
                verdict=stats.verdict(c, adjusted[g.key]),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_of(g: Group, pick) -> float:
    """The mean over a group's runs of ``pick(metrics)``, NaN when no run has the column filled (older runs)."""
    values = [pick(r.metrics) for r in g.runs if "kl_ref" in r.metrics and len(r.metrics)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def _fmt(v, spec=".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return format(v, spec)


def _interval(mid, low, high, spec=".3g", mark: str = "") -> str:
    return f"{_fmt(mid, spec)} [{_fmt(low, spec)}, {_fmt(high, spec)}]{mark}" if np.isfinite(mid) else "-"


def _table(header: list[str], rows: list[list[str]], pad: bool = False) -> str:
    """A markdown table; ``pad`` aligns the columns for a terminal."""
    width = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if pad else [0] * len(header)

    def line(cells) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, width)) + " |"

    rule = "|" + "|".join("-" * (w + 2 if pad else 3) for w in width) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def _short_group(r) -> str:
    """The group's label for a terminal: without its task (the key table is printed task by task), the mode by its
    name and the dropout rate as p ("p=0.1, naive" for "PPO CartPole-v1: dropout=0.1, dropout_mode=naive")."""
    prefix = f"{r.task}: "
    label = r.group[len(prefix) :] if r.group.startswith(prefix) else r.group
    renamed = {"dropout_mode": "", "dropout": "p="}  # whole field names: "sample_dropout=dppo" stays as it is

    def short(part: str) -> str:
        name, eq, value = part.partition("=")
        return renamed[name] + value if eq and name in renamed else part

    return ", ".join(short(part) for part in label.split(", "))


def key_table(table: pd.DataFrame) -> str:
    """The table ``sandbox report`` prints: one line per group, task by task, narrow enough for a terminal."""
    header = ["group", "final IQM [95% CI]", "solved", "first_ratio_dev", "P(improvement)", "p Holm", "verdict"]
    out = []
    for task, rows in table.groupby("task", sort=False):
        body = [
            [
                _short_group(r),
                _interval(r.final_iqm, r.ci_low, r.ci_high),
                f"{r.solved}/{r.runs}",
                _fmt(r.first_ratio_dev, ".4f"),
                _fmt(r.p_improvement, ".2f"),
                _fmt(r.p_holm, ".2g"),
                r.verdict or r.baseline or "-",
            ]
            for r in rows.itertuples()
        ]
        out += [task, _table(header, body, pad=True), ""]
    return "\n".join(out).rstrip()


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


def write_report(
    sweep_dir: str | os.PathLike, baseline: str = "dropout_mode=off", quiet: bool = False, figures: bool = True
) -> pd.DataFrame:
    """Write report.md, report.csv and the PNG figures into ``sweep_dir``; print the key table."""
    from .config import ConfigError

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


# --- figures -----------------------------------------------------------------------------------------------------
#
# Every figure has one row of panels per task (one algorithm on one environment), whose panels share their axes;
# colour = dropout mode (MODE_COLORS), line style / marker = the one other setting that varies (beta, ...); dropout
# p is the x-axis (final score, first_ratio_dev) or the panel (curves, performance profiles) where it varies.

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
SHORT_NAMES = {"dropout": "p"}


def _curves(group: Group, column: str, points: int = 100) -> tuple[np.ndarray, np.ndarray] | None:
    """The runs' ``column`` against env_steps, on a common grid: ``(x (points,), y (runs, points))``."""
    series = []
    for r in group.runs:
        m = r.metrics[["env_steps", column]].dropna()
        if len(m) >= 2:
            series.append((m["env_steps"].to_numpy(float), m[column].to_numpy(float)))
    if not series:
        return None
    end = min(s[0][-1] for s in series)
    x = np.linspace(min(s[0][0] for s in series), end, points)
    return x, np.stack([np.interp(x, sx, sy) for sx, sy in series])


def _effective(g: Group) -> dict:
    """The group's config without the fields dropout-off makes inert (for a dropout-off group)."""
    return {k: v for k, v in g.config.items() if not (dropout_is_off(g.mode) and k in INERT_WHEN_OFF)}


@dataclass
class _Task:
    """A task's groups and how the figures lay them out."""

    name: str
    groups: list[Group]
    x_field: str | None  # dropout p if it varies, else the first numeric field that varies, else None
    style_fields: list[str]  # the other fields that vary besides the mode: line style and marker
    styles: list[tuple] = field(default_factory=list)  # the distinct complete styles, in order

    @property
    def is_lang(self) -> bool:
        return self.groups[0].runs[0].is_lang

    def x(self, g: Group):
        """The group's value on the x-axis, None where it is inert (a dropout-off group's p) or there is no x."""
        return None if self.x_field is None else _effective(g).get(self.x_field)

    def style(self, g: Group) -> tuple:
        e = _effective(g)
        return tuple((f, json.dumps(e[f])) for f in self.style_fields if f in e)

    def kind(self, g: Group) -> tuple:
        """What tells the groups of one mode apart when the x field is not on an axis: its value and the style."""
        x = () if self.x(g) is None else ((self.x_field, json.dumps(self.x(g))),)
        return x + self.style(g)

    def style_index(self, g: Group) -> int:
        s = self.style(g)
        return self.styles.index(s) if s in self.styles else 0

    def style_label(self, style: tuple) -> str:
        return ", ".join(f"{SHORT_NAMES.get(f, f)}={json.loads(v)}" for f, v in style)

    def x_label(self) -> str:
        return "dropout p" if self.x_field == "dropout" else str(self.x_field)

    def score_label(self) -> str:
        return "final reward (last batch)" if self.is_lang else "final return (last 20 episodes)"


def _place_legend(ax, handles: list, title: str) -> None:
    """A task's legend in the top left corner of ``ax``, titled with the task."""
    ax.legend(
        handles=handles,
        loc="upper left",
        fontsize=8,
        title=title,
        title_fontsize=8,
        alignment="left",
        borderaxespad=0.0,
    )


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tasks(groups: list[Group]) -> list[_Task]:
    by_task: dict[str, list[Group]] = {}
    for g in groups:
        by_task.setdefault(g.task, []).append(g)
    tasks = []
    for name, members in sorted(by_task.items()):
        eff = [_effective(g) for g in members]

        fields = [
            f
            for f in members[0].config
            if f not in ("algo", "env", "dropout_mode") and len({json.dumps(e[f]) for e in eff if f in e}) > 1
        ]
        numeric = [f for f in fields if all(_number(e[f]) for e in eff if f in e)]
        x_field = "dropout" if "dropout" in numeric else (numeric[0] if numeric else None)
        task = _Task(name, members, x_field, [f for f in fields if f != x_field])
        complete = {task.style(g) for g in members if len(task.style(g)) == len(task.style_fields)}
        task.styles = sorted(complete, key=lambda s: [_sort_value(json.loads(v)) for _, v in s])
        mode_order = list(MODE_COLORS)
        task.groups = sorted(
            members,
            key=lambda g: (mode_order.index(g.mode) if g.mode in mode_order else 99, task.style_index(g), g.label),
        )
        tasks.append(task)
    return tasks


def _sort_value(v):
    return (0, v, "") if _number(v) else (1, 0, json.dumps(v, sort_keys=True))


def _facets(task: _Task, bases: dict) -> list[tuple[str, list[Group]]]:
    """The panels of a task in the curve figures: one per value of its x field (dropout p), each holding the groups
    with that value and their baseline (a dropout-off group, whose p is inert, is shown in every panel it serves)."""
    fixed = [g for g in task.groups if task.x(g) is not None]
    floating = [g for g in task.groups if task.x(g) is None]
    if not fixed:
        return [("", task.groups)]
    out = []
    for v in sorted({task.x(g) for g in fixed}, key=_sort_value):
        members = [g for g in fixed if task.x(g) == v]
        extra = [f for f in floating if f.config.get(task.x_field) == v]
        if not extra:
            extra = [f for f in floating if any(bases.get(g.key) is f for g in members)] or floating
        ids = {id(g) for g in extra + members}
        out.append((f"{SHORT_NAMES.get(task.x_field, task.x_field)} = {v}", [g for g in task.groups if id(g) in ids]))
    return out


def _lines(task: _Task) -> dict[tuple, list[Group]]:
    """(mode, style) -> the groups of that line, ordered along the x-axis."""
    out: dict[tuple, list[Group]] = {}
    for g in task.groups:
        out.setdefault((g.mode, task.style(g)), []).append(g)
    for gs in out.values():
        gs.sort(key=lambda g: _sort_value(g.config.get(task.x_field)) if task.x_field else 0)
    return out


def _layout(plt, panels: list[int], title: str, max_cols: int = 4, width: float | None = None, height: float = 2.5):
    """A grid with one block of rows per task (at most ``max_cols`` panels a row) and a legend column on the right.
    Returns the figure and, per task, (its panel axes, its legend axes); a task's panels share their axes."""
    rows = [max(1, math.ceil(n / max_cols)) for n in panels]
    ncols = max(math.ceil(n / k) for n, k in zip(panels, rows))  # balanced: 5 panels as 3 + 2, not 4 + 1
    width = width or (4.6 if ncols == 1 else 3.2)
    fig, axes = plt.subplots(
        sum(rows),
        ncols + 1,
        figsize=(width * ncols + 2.1, height * sum(rows) + 0.5),
        squeeze=False,
        gridspec_kw={"width_ratios": [width] * ncols + [2.1]},
    )
    for ax in axes.flat:
        ax.axis("off")
    out, r = [], 0
    for n, k in zip(panels, rows):
        mine = [axes[r + i // ncols, i % ncols] for i in range(n)]
        for i, ax in enumerate(mine):
            ax.axis("on")
            if i:
                ax.sharex(mine[0])
                ax.sharey(mine[0])
            if i % ncols:
                ax.tick_params(labelleft=False)
        out.append((mine, axes[r, -1]))
        r += k
    fig.suptitle(title, fontsize=11)
    return fig, out


def _legend(ax, task: _Task, marker: bool = False, extra: list | None = None) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=mode_color(m), lw=2, marker="o" if marker else None, ms=5, label=m)
        for m in dict.fromkeys(g.mode for g in task.groups)
    ]
    if len(task.styles) > 1:
        handles += [
            Line2D(
                [],
                [],
                color="#666666",
                lw=1.4,
                ls=LINESTYLES[i % 4],
                marker=MARKERS[i] if marker else None,
                ms=5,
                label=task.style_label(s),
            )
            for i, s in enumerate(task.styles)
        ]
    handles += extra or []
    _place_legend(ax, handles, task.name)


def _style(task: _Task, g: Group) -> dict:
    i = task.style_index(g)
    return {"color": mode_color(g.mode), "ls": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)]}


def _curve_figure(plt, tasks, bases, column: str, title: str, ylabel: str, out: Path, name: str, log_if_wide=False):
    """Learning-curve-like figures: per task, one panel per value of p, every group's mean over seeds with the 95% t
    interval of the mean (:func:`sandbox.stats.t_band`); a group of fewer than 3 seeds shows its seeds instead (the
    t interval of 2 values is 12.7 standard errors wide). ``log_if_wide``: log scale when the task's values span more
    than 30x (variances; returns stay linear)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter, ScalarFormatter

    panels = [_facets(t, bases) for t in tasks]
    fig, layout = _layout(plt, [len(p) for p in panels], title)
    for task, facets, (axes, legend_ax) in zip(tasks, panels, layout):
        seen: list[float] = []
        few = banded = False
        for ax, (suffix, members) in zip(axes, facets):
            for g in members:
                c = _curves(g, column)
                if c is None:
                    continue
                x, y = c
                mid, low, high = stats.t_band(y)
                st = _style(task, g)
                ax.plot(x, mid, color=st["color"], ls=st["ls"], lw=1.5)
                if len(y) >= 3:
                    banded = True
                    ax.fill_between(x, low, high, color=st["color"], alpha=0.12, lw=0)
                else:
                    few = True
                    for run in y:
                        ax.plot(x, run, color=st["color"], ls=st["ls"], lw=0.6, alpha=0.45)
                seen += [float(np.nanmin(y)), float(np.nanmax(y))]
            ax.set_title(", ".join(s for s in (task.name, suffix) if s), fontsize=9.5)
            ax.set_xlabel("tokens sampled" if task.is_lang else "env steps", fontsize=9)
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes[0].set_ylabel(ylabel.format(score="reward (batch mean)" if task.is_lang else "return (20-episode mean)"))
        if log_if_wide and seen and min(seen) > 0 and max(seen) > 30 * min(seen):
            axes[0].set_yscale("log")
            axes[0].yaxis.set_major_formatter(ScalarFormatter())
        elif seen:  # the runs' range: a band wider than the runs themselves leaves the panel
            lo, hi = min(seen), max(seen)
            pad = 0.05 * (hi - lo or abs(hi) or 1.0)
            axes[0].set_ylim(lo - pad, hi + pad)
        extra = [Patch(color="#999999", alpha=0.3, label="95% t interval\nof the mean")] if banded else []
        if few:
            extra.append(Line2D([], [], color="#999999", lw=0.6, label="one seed (groups\nof < 3 seeds)"))
        _legend(legend_ax, task, extra=extra)
    fig.savefig(out / name)
    plt.close(fig)


def _profile_figure(plt, tasks, bases, out: Path, name: str):
    """Performance profiles: per task and p, the fraction of a group's runs whose final score is above each value."""
    panels = [_facets(t, bases) for t in tasks]
    fig, layout = _layout(plt, [len(p) for p in panels], "Performance profiles: fraction of runs above each score")
    for task, facets, (axes, legend_ax) in zip(tasks, panels, layout):
        every = np.concatenate([g.finals for g in task.groups])
        every = every[np.isfinite(every)]
        if not len(every):
            continue
        lo, hi = float(every.min()), float(every.max())
        pad = 0.05 * (hi - lo or abs(hi) or 1.0)
        taus = np.linspace(lo - pad, hi + pad, 400)
        for ax, (suffix, members) in zip(axes, facets):
            for g in members:
                st = _style(task, g)
                ax.plot(taus, stats.performance_profile(g.finals, taus), color=st["color"], ls=st["ls"], lw=1.6)
            ax.set_title(", ".join(s for s in (task.name, suffix) if s), fontsize=9.5)
            ax.set_xlabel(task.score_label(), fontsize=9)
        axes[0].set_ylim(-0.03, 1.03)
        axes[0].set_ylabel("fraction of runs above")
        _legend(legend_ax, task)
    fig.savefig(out / name)
    plt.close(fig)


def _by_x_figure(plt, tasks, out: Path, name: str, title: str, value, center, ylabel):
    """Per task one panel: ``value(run)`` of every seed (dots) and ``center(group, values)`` = (mid, low, high)
    (marker and error bar), one line per (mode, style) against the x field (p); categories where nothing varies."""
    from matplotlib.lines import Line2D

    fig, layout = _layout(plt, [1] * len(tasks), title, height=2.9)
    rng = np.random.default_rng(0)
    for task, (axes, legend_ax) in zip(tasks, layout):
        ax = axes[0]
        lines = _lines(task)
        xs = sorted({task.x(g) for g in task.groups if task.x(g) is not None}, key=_sort_value)
        numeric = bool(xs)
        span = (max(xs) - min(xs)) if len(xs) > 1 else 1.0
        moving = [k for k, gs in lines.items() if not (numeric and all(task.x(g) is None for g in gs) and len(gs) == 1)]
        step = 0.045 * span if numeric else 0.0
        for k, gs in lines.items():
            st = _style(task, gs[0])
            vals = [np.array([value(r) for r in g.runs], dtype=float) for g in gs]
            mids = [center(g, v) for g, v in zip(gs, vals)]
            if k not in moving:  # a dropout-off group: its p is inert, so it is a level across the panel
                mid, low, high = mids[0]
                ax.axhline(mid, color=st["color"], ls=st["ls"], lw=1.3)
                if np.isfinite(low) and high > low:
                    ax.axhspan(low, high, color=st["color"], alpha=0.08, lw=0)
                continue
            i = moving.index(k)
            offset = (i - (len(moving) - 1) / 2) * step
            pos = [
                (task.x(g) if task.x(g) is not None else g.config.get(task.x_field)) + offset if numeric else i
                for g in gs
            ]
            for p, v in zip(pos, vals):
                jitter = rng.uniform(-0.25, 0.25, len(v)) * (step or 0.5)
                ax.scatter(p + jitter, v, s=14, color=st["color"], alpha=0.5, lw=0, zorder=3)
            mid = np.array([m[0] for m in mids])
            err = np.array([[m[0] - m[1], m[2] - m[0]] for m in mids]).T
            err = np.where(np.isfinite(err), err, 0.0)
            ax.errorbar(
                pos, mid, yerr=err, color=st["color"], ls=st["ls"], marker=st["marker"], ms=5, lw=1.4, capsize=2.5
            )
        if numeric:
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.set_xlim(min(xs) - 0.25 * span, max(xs) + 0.25 * span)
            ax.set_xlabel(task.x_label(), fontsize=9)
        else:
            labels = [" ".join([m, task.style_label(s)]).strip() for m, s in moving]
            long = max(map(len, labels)) > 12
            ax.set_xticks(
                range(len(moving)), labels, fontsize=8, rotation=20 if long else 0, ha="right" if long else "center"
            )
            ax.set_xlim(-0.6, len(moving) - 0.4)
        ax.set_title(task.name, fontsize=9.5)
        ax.set_ylabel(ylabel(task), fontsize=9)
        extra = [Line2D([], [], color="#666666", marker="o", ls="", ms=3.5, alpha=0.6, label="one seed")]
        _legend(legend_ax, task, marker=True, extra=extra)
    fig.savefig(out / name)
    plt.close(fig)


def _reward_kl_figure(plt, tasks, out: Path, name: str):
    from matplotlib.lines import Line2D

    title = "Reward against KL to the reference, seed by seed"
    fig, layout = _layout(plt, [1] * len(tasks), title, height=2.9)
    for task, (axes, legend_ax) in zip(tasks, layout):
        ax = axes[0]
        kind = task.kind
        kinds = sorted(
            {kind(g) for g in task.groups if kind(g)}, key=lambda k: [_sort_value(json.loads(v)) for _, v in k]
        )
        for g in task.groups:
            marker = MARKERS[kinds.index(kind(g)) % len(MARKERS)] if kind(g) in kinds else "o"
            kl = [r.metrics["kl_ref"].iloc[-1] if len(r.metrics) else math.nan for r in g.runs]
            ax.scatter(kl, [r.final for r in g.runs], color=mode_color(g.mode), marker=marker, s=26, alpha=0.8)
        ax.set_title(task.name, fontsize=9.5)
        ax.set_xlabel("final KL to the reference (nats per completion)", fontsize=9)
        ax.set_ylabel(task.score_label(), fontsize=9)
        handles = [
            Line2D([], [], color=mode_color(m), marker="o", ls="", label=m)
            for m in dict.fromkeys(g.mode for g in task.groups)
        ]
        if len(kinds) > 1:
            handles += [
                Line2D([], [], color="#666666", marker=MARKERS[i % len(MARKERS)], ls="", label=task.style_label(k))
                for i, k in enumerate(kinds)
            ]
        _place_legend(legend_ax, handles, task.name)
    fig.savefig(out / name)
    plt.close(fig)


def _figures(groups: list[Group], table: pd.DataFrame, bases: dict, out: Path) -> list[tuple[str, str]]:
    """Draw the report's figures into ``out``; returns (file name, caption) pairs."""
    import matplotlib

    if "inline" not in matplotlib.get_backend():  # a notebook keeps its inline plots (each figure here is closed)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _tasks(groups)
    lang = [t for t in tasks if t.is_lang]
    intervals = {r.group: (r.final_iqm, r.ci_low, r.ci_high) for r in table.itertuples()}
    score = "{score}"
    figures = [
        (
            "learning_curves.png",
            "Learning curves: mean over seeds with the 95% t interval of the mean; one row of panels per task, one "
            "panel per dropout p (or other varying setting), dropout off in every panel it is the baseline of.",
            lambda name: _curve_figure(plt, tasks, bases, "ep_return_mean", "Learning curves", score, out, name),
        ),
        (
            "performance_profile.png",
            "Performance profiles: the fraction of a group's runs whose final score is above each value (further "
            "right and higher is better; the whole distribution of the seeds, not one number).",
            lambda name: _profile_figure(plt, tasks, bases, out, name),
        ),
        (
            "final_per_seed.png",
            "Final score against dropout p: every seed (dots) and each group's IQM with its 95% BCa bootstrap "
            "interval; dropout off, whose p is inert, as a level with its interval.",
            lambda name: _by_x_figure(
                plt,
                tasks,
                out,
                name,
                "Final score: every seed, and the IQM with its 95% BCa interval",
                value=lambda r: r.final,
                center=lambda g, v: intervals[g.label],
                ylabel=_Task.score_label,
            ),
        ),
        (
            "first_ratio_dev.png",
            "first_ratio_dev against dropout p: the ratio's deviation from 1 before any gradient step (mean |r - 1| "
            "over the first minibatch of each update), every seed (dots) and the mean over seeds (line).",
            lambda name: _by_x_figure(
                plt,
                tasks,
                out,
                name,
                "The ratio's noise before any update: first_ratio_dev",
                value=lambda r: float(r.metrics["first_ratio_dev"].mean()),
                center=lambda g, v: (float(np.nanmean(v)), math.nan, math.nan),
                ylabel=lambda t: "mean |r - 1| before any step",
            ),
        ),
        (
            "surrogate_variance.png",
            "Surrogate variance Var(r A) over training: mean over seeds with the 95% t interval of the mean.",
            lambda name: _curve_figure(
                plt, tasks, bases, "surrogate_var", "Surrogate variance over training", "Var(r A)", out, name, True
            ),
        ),
    ]
    if lang:
        figures.append(
            (
                "reward_kl.png",
                "Reward against KL to the reference at the end of training, seed by seed (language tasks).",
                lambda name: _reward_kl_figure(plt, lang, out, name),
            )
        )
    with matplotlib.rc_context():
        use_style()
        for name, _, draw in figures:
            draw(name)
    return [(name, caption) for name, caption, _ in figures]
