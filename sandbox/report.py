"""``sandbox report SWEEP_DIR``: statistics with confidence intervals, figures and a plain-words verdict.

Runs are grouped by config (every field but the seed). Per group: the interquartile mean (IQM, the mean of the
middle 50% of seeds; Agarwal et al. 2021) of the final return with a 95% percentile-bootstrap confidence interval,
time-to-solve, seed-to-seed spread, collapses, and the stability metrics. Each group is compared with its baseline
(default: the same config with ``dropout_mode = off``) by the probability of improvement, P(X > Y) over pairs of
seeds (from the Mann-Whitney U statistic). Where the two confidence intervals overlap the report says so: no
significant difference. Statistics come from scipy; nothing is hand-rolled.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .dropout_modes import dropout_is_off

IGNORED = ("seed", "out", "overwrite", "quiet", "torch_threads", "save_every")  # not part of what a group is
# fields without effect when dropout is off: a baseline "dropout_mode=off" group may differ in them
INERT_WHEN_OFF = (
    "dropout",
    "dropout_value",
    "dropout_schedule",
    "dropout_cutoff",
    "dropout_samples",
    "multi_sample_average",
)


# --- statistics (pure; tests/test_sweep.py checks them on known answers) --------------------------------------


def iqm(x, axis=0):
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean`` cutting 25% at each end)."""
    return stats.trim_mean(x, 0.25, axis=axis)


def iqm_ci(x, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the IQM (``scipy.stats.bootstrap``); NaNs with < 2 values."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,),
        iqm,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(x, y) -> tuple[float, float]:
    """P(X > Y) + P(X = Y) / 2 over all pairs (x_i, y_j), and the two-sided Mann-Whitney p-value. 0.5 = no edge."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan
    res = stats.mannwhitneyu(x, y, alternative="two-sided")
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
    family: str = ""  # "algo env" when the sweep has several, else ""
    varying: list[str] = field(default_factory=list)  # the fields that tell this group from its family's others

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
            g.family, g.varying = (f"{algo} {env}" if len(families) > 1 else ""), varying
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


def _parse_baseline(spec: str) -> tuple[str, object]:
    name, _, raw = spec.partition("=")
    for cast in (json.loads,):
        try:
            return name.strip(), cast(raw)
        except ValueError:
            pass
    return name.strip(), raw


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


def group_table(groups: list[Group], baseline: str = "dropout_mode=off") -> pd.DataFrame:
    """One row per group: the statistics of the report (also written as report.csv)."""
    field_, value = _parse_baseline(baseline)
    by_key = {g.key: g for g in groups}
    rows = []
    for g in groups:
        finals = np.array([r.final for r in g.runs])
        low, high = iqm_ci(finals)
        solved = [r for r in g.runs if r.summary.get("solved_at_steps") is not None]
        threshold = g.runs[0].summary.get("reward_threshold")
        collapses = [collapsed(r.metrics["ep_return_mean"].to_numpy(), threshold) for r in g.runs]
        m = pd.concat([r.metrics for r in g.runs])
        row = {
            "group": g.label,
            "runs": len(g.runs),
            "final_iqm": iqm(finals[np.isfinite(finals)]) if np.isfinite(finals).any() else math.nan,
            "ci_low": low,
            "ci_high": high,
            "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else math.nan,
            "solved": len(solved),
            "median_solve_s": float(np.median([r.summary["solved_at_s"] for r in solved])) if solved else math.nan,
            "median_solve_steps": float(np.median([r.summary["solved_at_steps"] for r in solved]))
            if solved
            else math.nan,
            "collapses": sum(bool(c) for c in collapses) if collapses and collapses[0] is not None else math.nan,
            "first_ratio_dev": float(m["first_ratio_dev"].mean()),
            "first_clipfrac": float(m["first_clipfrac"].mean()),
            "surrogate_var": float(m["surrogate_var"].mean()),
            "kl_ref_first": _mean_of(g, lambda m: m["kl_ref"].iloc[0]),
            "kl_ref_last": _mean_of(g, lambda m: m["kl_ref"].iloc[-1]),
        }
        base = _baseline_of(g, groups, by_key, field_, value)
        if base is None or base is g:
            row.update(
                baseline="" if base is None else "(baseline)", p_improvement=math.nan, mw_pvalue=math.nan, verdict=""
            )
        else:
            base_finals = np.array([r.final for r in base.runs])
            poi, pvalue = probability_of_improvement(finals, base_finals)
            b_low, b_high = iqm_ci(base_finals)
            if any(math.isnan(v) for v in (low, high, b_low, b_high)):
                verdict = "too few seeds for a confidence interval"
            elif high < b_low:
                verdict = "worse than the baseline (95% CIs do not overlap)"
            elif low > b_high:
                verdict = "better than the baseline (95% CIs do not overlap)"
            else:
                verdict = "no significant difference (95% CIs overlap)"
            row.update(baseline=base.label, p_improvement=poi, mw_pvalue=pvalue, verdict=verdict)
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
    return format(v, spec)


def key_table(table: pd.DataFrame) -> str:
    lines = [
        "| group | runs | final IQM [95% CI] | solved | median time-to-solve | collapses | "
        "first_ratio_dev | first_clipfrac | P(improvement) vs baseline | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        solve = f"{_fmt(r.median_solve_s, '.1f')} s / {_fmt(r.median_solve_steps, ',.0f')}" if r.solved else "-"
        lines.append(
            f"| {r.group} | {r.runs} | {_fmt(r.final_iqm, '.3g')} [{_fmt(r.ci_low, '.3g')}, {_fmt(r.ci_high, '.3g')}] "
            f"| {r.solved}/{r.runs} | {solve} | {_fmt(r.collapses, '.0f')} | {_fmt(r.first_ratio_dev, '.4f')} | "
            f"{_fmt(r.first_clipfrac, '.3f')} | {_fmt(r.p_improvement, '.2f')} | {r.verdict or r.baseline} |"
        )
    return "\n".join(lines)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # degenerate bootstrap samples of tiny groups
        warnings.simplefilter("ignore", category=UserWarning)  # matplotlib's tight_layout on crowded grids
        table = group_table(groups, baseline)
        table.to_csv(sweep_dir / "report.csv", index=False)
        pictures = _figures(groups, sweep_dir) if figures else []
    with_kl = bool(np.isfinite(table.kl_ref_first).any())
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        f"{len(runs)} finished runs in {len(groups)} groups (a group = one config, all its seeds). "
        f"Baseline of each group: the same config with `{baseline}`.",
        "",
        "How to read it: *final* is the mean return of the last 20 episodes (Gym) or the mean reward of the "
        "last batch (language tasks). IQM = interquartile mean over seeds, with a 95% percentile-bootstrap "
        "confidence interval (scipy). A *collapse* is a run whose 20-episode mean reached 90% of the "
        "threshold and later fell below 50% of it. P(improvement) = P(X > Y) over pairs of seeds of the "
        "group and its baseline (Mann-Whitney U / (n m)); 0.5 means no edge. Where the confidence intervals "
        "overlap, the report says there is no significant difference; with 3-5 seeds, only large effects "
        "can show.",
        "",
        "## Final performance and stability",
        "",
        key_table(table),
        "",
    ]
    verdicts = table[table.verdict != ""]
    if len(verdicts):
        lines += ["## Against the baseline, in words", ""]
        for r in verdicts.itertuples():
            lines.append(
                f"- **{r.group}** vs {r.baseline}: {r.verdict}; P(improvement) = "
                f"{_fmt(r.p_improvement, '.2f')} (Mann-Whitney p = {_fmt(r.mw_pvalue, '.2g')})."
            )
        lines.append("")
    lines += [
        "## Mechanism: the ratio before any update",
        "",
        "| group | first_ratio_dev | first_clipfrac | surrogate_var | seed-to-seed std of final |"
        + (" kl_ref first update | kl_ref last update |" if with_kl else ""),
        "|---|---|---|---|---|" + ("---|---|" if with_kl else ""),
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.group} | {_fmt(r.first_ratio_dev, '.4f')} | {_fmt(r.first_clipfrac, '.3f')} | "
            f"{_fmt(r.surrogate_var, '.3g')} | {_fmt(r.final_std, '.3g')} |"
            + (f" {_fmt(r.kl_ref_first, '.3g')} | {_fmt(r.kl_ref_last, '.3g')} |" if with_kl else "")
        )
    lines += [
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
        lines += ["## Figures", ""] + [f"![{title}]({name})\n" for name, title in pictures]
    (sweep_dir / "report.md").write_text("\n".join(lines))
    if not quiet:
        print(key_table(table))
        print(f"\nreport: {sweep_dir / 'report.md'}")
    return table


# --- figures -----------------------------------------------------------------------------------------------------


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


def _band(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over runs at every point, and its 95% bootstrap band (vectorised over points)."""
    mid = iqm(y, axis=0)
    if len(y) < 2:
        return mid, mid, mid
    res = stats.bootstrap(
        (y,), iqm, axis=0, vectorized=True, n_resamples=500, method="percentile", random_state=np.random.default_rng(0)
    )
    low, high = res.confidence_interval
    return mid, np.where(np.isfinite(low), low, mid), np.where(np.isfinite(high), high, mid)


def _figures(groups: list[Group], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    n = len(groups)
    cols = min(4, n)
    rows = math.ceil(n / cols)

    def grid_of(column: str, ylabel: str, name: str, title: str, log: bool = False) -> None:
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False, sharex=False)
        for ax, g in zip(axes.flat, groups):
            c = _curves(g, column)
            if c is not None:
                x, y = c
                mid, low, high = _band(y)
                ax.plot(x, mid, lw=1.5)
                ax.fill_between(x, low, high, alpha=0.25)
            ax.set_title(g.label, fontsize=8)
            ax.tick_params(labelsize=7)
            if log:
                ax.set_yscale("symlog", linthresh=1e-3)
        for ax in axes.flat[n:]:
            ax.axis("off")
        fig.supxlabel("env steps (tokens for language tasks)", fontsize=9)
        fig.supylabel(ylabel, fontsize=9)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append((name, title))

    grid_of(
        "ep_return_mean",
        "return (20-episode mean) / reward",
        "learning_curves.png",
        "Learning curves: IQM over seeds, 95% bootstrap band",
    )
    grid_of("surrogate_var", "Var(r * A)", "surrogate_variance.png", "Surrogate variance over training", log=True)

    # first_ratio_dev against dropout p, one line per mode (and per other varying setting)
    fig, ax = plt.subplots(figsize=(9, 4))
    lines: dict[str, list[tuple[float, float]]] = {}
    for g in groups:
        p = 0.0 if dropout_is_off(g.config.get("dropout_mode")) else float(g.config.get("dropout") or 0.0)
        value = float(np.mean([r.metrics["first_ratio_dev"].mean() for r in g.runs]))
        lines.setdefault(g.label_without("dropout"), []).append((p, value))
    for label, pts in lines.items():
        pts.sort()
        ax.plot([p for p, _ in pts], [v for _, v in pts], "o-", label=label)
    ax.set_xlabel("dropout p")
    ax.set_ylabel("mean first_ratio_dev (|r - 1| before any step)")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("The ratio's noise before any update, by dropout p", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "first_ratio_dev.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    made.append(("first_ratio_dev.png", "first_ratio_dev against dropout p"))

    # final return per seed, a strip plot
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * n + 2), 4))
    rng = np.random.default_rng(0)
    for i, g in enumerate(groups):
        finals = [r.final for r in g.runs]
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(finals)), finals, s=18, alpha=0.8)
        ax.hlines(iqm(np.array(finals)), i - 0.3, i + 0.3, color="k", lw=1)
    ax.set_xticks(range(n), [g.label for g in groups], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("final return / reward (per seed; line = IQM)")
    ax.set_title("Final performance, seed by seed", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "final_per_seed.png", dpi=90)
    plt.close(fig)
    made.append(("final_per_seed.png", "final return per seed"))

    lang = [g for g in groups if g.runs[0].is_lang]
    if lang:
        fig, ax = plt.subplots(figsize=(6, 4))
        for g in lang:
            ax.scatter([r.metrics["kl_ref"].iloc[-1] for r in g.runs], [r.final for r in g.runs], label=g.label, s=22)
        ax.set_xlabel("final KL to the reference (nats per completion)")
        ax.set_ylabel("final reward")
        ax.legend(fontsize=7)
        ax.set_title("Reward-KL frontier (language tasks)", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "reward_kl.png", dpi=90)
        plt.close(fig)
        made.append(("reward_kl.png", "reward against KL to the reference"))
    return made
