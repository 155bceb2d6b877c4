"""The report's tables: per group what its own seeds say (IQM with its Tukey-McLaughlin interval, mean with its t
interval, time-to-solve, collapses, the ratio's noise, runs that did not end finite), each group against its baseline
(:func:`sandbox.stats.compare_family`: Holm over the report, each verdict with its interval at the level it used),
the per-seed finals (``finals.csv``, from which :func:`compare_finals` recomputes every verdict), and the key table
``sandbox report`` prints."""

from __future__ import annotations

import json
import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from ... import stats
from ...dropout_modes import dropout_is_off
from .runs import INERT_WHEN_OFF, Group, runs_frame

# --- statistics (pure; tests/test_sweep.py and tests/test_stats.py check them on known answers) -------------------

iqm = stats.iqm


def iqm_ci(x, confidence: float = 0.95) -> tuple[float, float]:
    """The IQM's Tukey-McLaughlin interval (:func:`sandbox.stats.iqm_interval`: its coverage holds at 5 seeds, where
    the BCa bootstrap's did not); NaNs with < 2 values."""
    low, high, _ = stats.iqm_interval(x, confidence)
    return low, high


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


# --- baselines and the comparison table --------------------------------------------------------------------------


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


def _parse_baselines(spec: str, groups: Sequence[Group] = ()) -> list[tuple[str, object]]:
    """``"field=value[,field=value...]"`` -> its (field, value) pairs, each read by :func:`_parse_baseline`
    (``dropout_mode=off,sample_dropout=none``: the baseline of every group is the one with dropout off *and* no
    sample dropout). A comma starts a new pair only before ``name=``, so a JSON list value keeps its commas."""
    return [_parse_baseline(part, groups) for part in _baseline_parts(spec)]


def _baseline_parts(spec: str) -> list[str]:
    return re.split(r",\s*(?=[A-Za-z_]\w*\s*=)", spec)


def check_baseline(groups: list[Group], baseline: str) -> None:
    """A one-line error unless some group of the sweep has each of ``baseline``'s values (a typo would otherwise give
    a report with no comparison at all). A sweep without dropout-off runs may keep the default baseline."""
    from ...config import ConfigError

    if baseline == DEFAULT_BASELINE:
        return
    for part in _baseline_parts(baseline):
        field_, value = _parse_baseline(part, groups)
        if not field_ or "=" not in part:
            raise ConfigError("baseline", f"expected FIELD=VALUE (e.g. dropout_mode=off, beta=0.0), got {baseline!r}")
        if any(field_ in g.config and g.config[field_] == value for g in groups):
            continue
        if not any(field_ in g.config for g in groups):
            known = "a config field, e.g. dropout_mode, beta"
            raise ConfigError("baseline", f"the runs have no field {field_!r} ({known})")
        seen = sorted({json.dumps(g.config[field_]) for g in groups if field_ in g.config})
        raise ConfigError("baseline", f"no group has {field_} = {json.dumps(value)}; this sweep has {', '.join(seen)}")


def _baseline_of(g: Group, groups: list[Group], by_key: dict, pairs: list[tuple[str, object]]) -> Group | None:
    """The group with the same config but the baseline's values (``pairs``); when one of them is ``dropout_mode=off``,
    differences in fields that dropout-off makes inert (the rate, the schedule, ...) are allowed."""
    values = dict(pairs)
    exact = by_key.get(json.dumps({**g.config, **values}, sort_keys=True))
    if exact is not None or not ("dropout_mode" in values and dropout_is_off(values["dropout_mode"])):
        return exact
    want = {k: v for k, v in {**g.config, **values}.items() if k not in INERT_WHEN_OFF}
    for other in groups:
        if {k: v for k, v in other.config.items() if k not in INERT_WHEN_OFF} == want:
            return other
    return None


def baselines(groups: list[Group], baseline: str = DEFAULT_BASELINE) -> dict[str, Group | None]:
    """Group key -> its baseline group: None when the sweep has none, the group itself when it is one."""
    pairs = _parse_baselines(baseline, groups)
    by_key = {g.key: g for g in groups}
    return {g.key: _baseline_of(g, groups, by_key, pairs) for g in groups}


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
    "p_low",
    "p_high",
    "p_holm_low",
    "p_holm_high",
    "exact",
    "resamples",
    "level",
    "diff_level_low",
    "diff_level_high",
    "g_level_low",
    "g_level_high",
    "equivalence_p",
    "equivalence_holm",
    "detectable_g",
)
"""The columns of a compared group's row (report.csv); ``seeds_needed`` is prospective: seeds per group for 80% power
against |g| ``stats.POWER_G`` at the report's first Holm level (the same in every row)."""


def _describe(g: Group) -> dict:
    """The per-group half of a report row: what the group's own seeds say."""
    finals = g.finals
    ok = finals[np.isfinite(finals)]
    low, high, method = stats.iqm_interval(ok)
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
        "nonfinite": int((~np.isfinite(finals)).sum()),
        "nonfinite_seeds": " ".join(str(r.config.get("seed")) for r in g.runs if not np.isfinite(r.final)),
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
        # added later, so last: NaN without a critic (GRPO) and for runs written before the column existed
        "first_value_dev": float(m["first_value_dev"].mean()) if "first_value_dev" in m else math.nan,
    }


def _decide(
    finals: dict[str, np.ndarray], base_of: dict[str, str | None], seed: int = 0
) -> dict[str, tuple[str, stats.Verdict]]:
    """Every group with a baseline (``base_of[key]``: the baseline's key, None without one, itself when it is one)
    against it, decided as one family (:func:`sandbox.stats.compare_family`: groups with fewer than
    ``stats.MIN_SEEDS`` seeds on a side are not tested and do not weaken the others' correction)."""
    keys = [k for k, b in base_of.items() if b is not None and b != k]
    decided = stats.compare_family([(finals[k], finals[base_of[k]]) for k in keys], seed=seed)
    return {k: (base_of[k], v) for k, v in zip(keys, decided)}


def _comparison_row(v: stats.Verdict, mw_pvalue: float) -> dict:
    """The :data:`COMPARISON_COLUMNS` of one decided comparison (and its test and verdict)."""
    c = v.comparison
    return dict(
        test=c.test,
        p_value=c.p_value,
        p_holm=v.p_holm,
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
        mw_pvalue=mw_pvalue,
        p_low=c.p_low,
        p_high=c.p_high,
        p_holm_low=v.p_holm_low,
        p_holm_high=v.p_holm_high,
        exact=c.exact,
        resamples=c.resamples,
        level=v.level,
        diff_level_low=v.interval.low,
        diff_level_high=v.interval.high,
        g_level_low=v.effect_at_level.low,
        g_level_high=v.effect_at_level.high,
        equivalence_p=c.equivalence_p,
        equivalence_holm=v.equivalence_holm,
        detectable_g=v.detectable,
        verdict=v.word,
    )


def group_table(groups: list[Group], baseline: str = "dropout_mode=off", seed: int = 0) -> pd.DataFrame:
    """One row per group: the statistics of the report (also written as report.csv).

    Every group with a baseline is compared with it, and the comparisons that can get a verdict (``stats.MIN_SEEDS``
    seeds or more on both sides) form one family (:func:`sandbox.stats.compare_family`): Holm's adjustment with the
    Monte Carlo error of each p (``p_holm`` and its bounds), the verdict, the level it was tested at (``level``) and
    the difference's interval at that level (``diff_level_low``, ``diff_level_high``). Comparisons with too few seeds
    are not tested, so they do not weaken the others' correction (their ``p_holm`` is Holm's over them alone, for
    information). ``seed``: the resampling seed of the drawn permutations (no verdict may change with it; only a p's
    last digits, within its bounds)."""
    bases = baselines(groups, baseline)
    by_key = {g.key: g for g in groups}
    compared = _decide({g.key: g.finals for g in groups}, {k: (b.key if b else None) for k, b in bases.items()}, seed)
    rows = []
    for g in groups:
        row = _describe(g)
        if g.key not in compared:
            base = bases[g.key]
            row.update(baseline="" if base is None else "(baseline)", **dict.fromkeys(COMPARISON_COLUMNS, math.nan))
            row.update(test="", verdict="")
        else:
            base_key, v = compared[g.key]
            base = by_key[base_key]
            row.update(baseline=base.label, **_comparison_row(v, stats.mann_whitney_pvalue(g.finals, base.finals)))
        rows.append(row)
    return pd.DataFrame(rows)


FINALS_COLUMNS = ("group", "baseline", "task", "dropout_mode", "dropout_p", "seed", "final")
"""finals.csv: one row per run, its group and that group's baseline ("(baseline)" for a baseline itself, "" for a
group without one), and its final score (NaN for a run that did not end finite)."""


def finals_frame(groups: list[Group], table: pd.DataFrame) -> pd.DataFrame:
    """The per-seed finals of a report (``finals.csv``): what a reader needs to recompute every verdict
    (:func:`compare_finals`) without the runs."""
    frame = runs_frame(groups)  # what sandbox.load returns: finals.csv is a slice of it
    base = dict(zip(table.group, table.baseline))
    if not len(frame):
        return pd.DataFrame(columns=list(FINALS_COLUMNS))
    return frame.assign(
        baseline=frame.group.map(base),
        dropout_mode=frame.get("dropout_mode", pd.Series("off", index=frame.index)).fillna("off"),
        dropout_p=frame.get("dropout", pd.Series(0.0, index=frame.index)).fillna(0.0).astype(float),
    )[list(FINALS_COLUMNS)]


def compare_finals(finals: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every verdict of a report recomputed from its ``finals.csv`` alone (:func:`finals_frame`): one row per compared
    group, its baseline, the :data:`COMPARISON_COLUMNS` and the verdict; ``seed``: the resampling seed (a verdict
    that changes with it is a bug: only *borderline* may)."""
    scores = {g: f["final"].to_numpy(float) for g, f in finals.groupby("group", sort=False)}
    named = finals.drop_duplicates("group").set_index("group")["baseline"].fillna("")
    decided = _decide(scores, {g: (b if b in scores else None) for g, b in named.items()}, seed)
    rows = [
        {"group": k, "baseline": b, **_comparison_row(v, stats.mann_whitney_pvalue(scores[k], scores[b]))}
        for k, (b, v) in decided.items()
    ]
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

    def line(cells) -> str:  # a pipe inside a cell ("detectable |g|") escaped, or markdown splits the cell there
        return (
            "| "
            + " | ".join((str(c) if pad else str(c).replace("|", "\\|")).ljust(w) for c, w in zip(cells, width))
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2 if pad else 3) for w in width) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "∞": r"$\infty$",
    "±": r"$\pm$",
}


def _tex(cell) -> str:
    """A cell as LaTeX: its special characters escaped, markdown's ``**bold**`` as ``\\textbf``."""
    text = str(cell)
    bold = text.startswith("**") and text.endswith("**") and len(text) > 4
    text = "".join(_LATEX.get(ch, ch) for ch in (text[2:-2] if bold else text))
    return rf"\textbf{{{text}}}" if bold else text


def _latex(header: list[str], rows: list[list[str]], caption: str | None = None, label: str | None = None) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): the first column left-aligned, the others right-aligned."""
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{_tex(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_tex(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(_tex(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _cells(frame: pd.DataFrame, floatfmt: str) -> tuple[list[str], list[list[str]]]:
    rows = [[_fmt(v, floatfmt) if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(False)]
    return [str(c) for c in frame.columns], rows


def to_markdown(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A frame (``sandbox.load``'s, report.csv's, any) as a markdown table, floats to ``floatfmt``, NaN as "-": what
    ``DataFrame.to_markdown`` does without its ``tabulate`` dependency."""
    return _table(*_cells(frame, floatfmt))


def to_latex(frame: pd.DataFrame, caption: str | None = None, label: str | None = None, floatfmt: str = ".3g") -> str:
    """A frame as a LaTeX booktabs table (``\\usepackage{booktabs}``), floats to ``floatfmt``, NaN as "-", special
    characters escaped."""
    return _latex(*_cells(frame, floatfmt), caption, label)


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
    header = ["group", "final IQM [95% CI]", "solved", "first_ratio_dev", "difference [CI at its level]", "p Holm"]
    header += ["verdict"]
    out = []
    for task, rows in table.groupby("task", sort=False):
        body = [
            [
                _short_group(r),
                _interval(r.final_iqm, r.ci_low, r.ci_high),
                f"{r.solved}/{r.runs}",
                _fmt(r.first_ratio_dev, ".4f"),
                _interval(r.diff, r.diff_level_low, r.diff_level_high),
                _fmt(r.p_holm, ".2g"),
                r.verdict or r.baseline or "-",
            ]
            for r in rows.itertuples()
        ]
        out += [task, _table(header, body, pad=True), ""]
    return "\n".join(out).rstrip()
