"""Statistics for comparing groups of seeds honestly, with scipy: intervals that keep their coverage at small n, a
test behind every verdict, effect sizes, and how many seeds a difference would need.

The trap these functions exist to avoid: with 3 seeds per group, two percentile-bootstrap intervals that do not
overlap say little (a percentile bootstrap over 3 values covers far less than its nominal 95%), and the smallest p a
permutation test of 3 against 3 can reach is 0.1. A verdict therefore comes from a test, corrected for the number of
comparisons (Holm), and below ``MIN_SEEDS`` seeds per group there is no verdict at all.

- :func:`iqm`: the interquartile mean (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice").
- :func:`t_interval` (the mean) and :func:`bootstrap_interval` (any statistic; BCa by default).
- :func:`compare`: two groups of final scores: a permutation test of the difference of means, Welch's interval of
  that difference, Hedges' g with its interval, the probability of improvement with its interval, and the seeds per
  group that 80% power would need for the observed effect.
- :func:`probability_of_improvement` (P(X > Y), ties one half) and :func:`mann_whitney_pvalue` (the rank test's p).
- :func:`smallest_p_value`: the smallest p that test can reach with n_x against n_y seeds (0.1 with 3 against 3).
- :func:`holm` (step-down adjusted p-values) and :func:`verdict` (the words).
- :func:`t_band`: the mean of many curves at every point, with its t interval (learning-curve bands).
- :func:`performance_profile`: the fraction of runs scoring above each threshold.
- :func:`comparison_table` (every arm of a study against its baseline, Holm over the table, in words) and
  :func:`mean_with_interval` (``"mean [low, high]"``): what the lessons print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import stats

MIN_SEEDS = 5
"""Below this many seeds in either group, :func:`verdict` says "too few seeds for a verdict"."""
ALPHA = 0.05
"""Significance level of every verdict, after Holm's correction."""


class Interval(NamedTuple):
    low: float
    high: float
    method: str  # named in every report: "t", "BCa bootstrap", "percentile bootstrap", ...


def _finite(x: Sequence[float]) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def iqm(x, axis=0):
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean`` cutting 25% at each end). Robust
    to a collapsed seed, less noisy than the median."""
    return stats.trim_mean(x, 0.25, axis=axis)


def t_interval(x: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student's t interval of the mean: exact coverage for normal data at any n >= 2, and honest (wide) at small n."""
    x = _finite(x)
    if len(x) < 2:
        return Interval(math.nan, math.nan, "t")
    if np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]), "t")
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return Interval(float(lo), float(hi), "t")


def bootstrap_interval(
    x: Sequence[float],
    statistic: Callable = iqm,
    confidence: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval of ``statistic`` (``scipy.stats.bootstrap``). BCa corrects the percentile interval's bias
    and skew; where BCa is undefined (too few distinct values) the percentile interval is returned and named so."""
    x = _finite(x)
    if len(x) < 2:
        return Interval(math.nan, math.nan, f"{method} bootstrap")
    if np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]), f"{method} bootstrap")
    for m in dict.fromkeys([method, "percentile"]):
        with np.errstate(all="ignore"):
            res = stats.bootstrap(
                (x,),
                statistic,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=m.lower(),
                random_state=np.random.default_rng(seed),
            )
        lo, hi = res.confidence_interval
        if np.isfinite(lo) and np.isfinite(hi):
            return Interval(float(lo), float(hi), f"{m} bootstrap")
    return Interval(math.nan, math.nan, f"{method} bootstrap")


@dataclass
class Comparison:
    """Group ``x`` against its baseline ``y`` (final scores, one per seed). Positive differences favour ``x``."""

    n_x: int
    n_y: int
    mean_x: float
    mean_y: float
    diff: float
    """mean(x) - mean(y)."""
    diff_interval: Interval
    """Welch's t interval of the difference (unequal variances)."""
    p_value: float
    """Two-sided permutation test of the difference of means (exact when there are few enough permutations)."""
    test: str
    effect_size: float
    """Hedges' g: the difference in pooled standard deviations, corrected for small samples."""
    effect_interval: Interval
    prob_improvement: float
    """P(X > Y) + P(X = Y) / 2 over all pairs of seeds (the Mann-Whitney U statistic over n_x * n_y): 0.5 = no edge."""
    prob_interval: Interval
    seeds_needed: float
    """Seeds per group for 80% power (two-sided t test at ``ALPHA``) to detect the observed effect; inf if none."""


def compare(x: Sequence[float], y: Sequence[float], n_resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Compare two groups of scores: the test, the intervals and the power analysis of :class:`Comparison`."""
    x, y = _finite(x), _finite(y)
    nan_interval = Interval(math.nan, math.nan, "")
    if len(x) < 2 or len(y) < 2:
        mx, my = (float(v.mean()) if len(v) else math.nan for v in (x, y))
        return Comparison(
            len(x),
            len(y),
            mx,
            my,
            mx - my,
            nan_interval,
            math.nan,
            "",
            math.nan,
            nan_interval,
            math.nan,
            nan_interval,
            math.nan,
        )
    diff = float(x.mean() - y.mean())
    if np.all(np.concatenate([x, y]) == x[0]):  # every score equal: no difference, and nothing to test
        zero = Interval(0.0, 0.0, "")
        return Comparison(
            len(x),
            len(y),
            diff + float(y.mean()),
            float(y.mean()),
            0.0,
            zero,
            1.0,
            "",
            0.0,
            zero,
            0.5,
            Interval(0.5, 0.5, ""),
            math.inf,
        )
    welch = stats.ttest_ind(x, y, equal_var=False)
    ci = welch.confidence_interval(0.95)
    perm = stats.permutation_test(
        (x, y),
        lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        permutation_type="independent",
        alternative="two-sided",
        n_resamples=n_resamples,
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    g, g_interval = _hedges_g(x, y)
    pi = probability_of_improvement(x, y)
    pi_interval = two_sample_interval(x, y, probability_of_improvement, seed=seed)
    return Comparison(
        n_x=len(x),
        n_y=len(y),
        mean_x=float(x.mean()),
        mean_y=float(y.mean()),
        diff=diff,
        diff_interval=Interval(float(ci.low), float(ci.high), "Welch t"),
        p_value=float(perm.pvalue),
        test="permutation test, difference of means",
        effect_size=g,
        effect_interval=g_interval,
        prob_improvement=pi,
        prob_interval=pi_interval,
        seeds_needed=seeds_needed(g),
    )


def probability_of_improvement(x, y, axis=-1) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs (x_i, y_j): the Mann-Whitney U statistic of ``x`` over n_x * n_y, a tie
    counting one half. 0.5 = no edge, 1 = every x above every y; NaN when a group is empty. Vectorised over leading
    axes, the pairs taken along the last one (``axis`` = -1, as :func:`two_sample_interval`'s bootstrap passes it).
    Non-finite values are compared as they are (:func:`compare` drops them first)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[-1] == 0 or y.shape[-1] == 0:
        return math.nan
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def mann_whitney_pvalue(x: Sequence[float], y: Sequence[float]) -> float:
    """The two-sided Mann-Whitney U test's p-value of ``x`` against ``y`` (``scipy.stats.mannwhitneyu``), non-finite
    values dropped; NaN when a group is then empty. The report keeps it as ``mw_pvalue`` for readers of older
    reports; its verdicts come from :func:`compare`'s permutation test."""
    x, y = _finite(x), _finite(y)
    if len(x) == 0 or len(y) == 0:
        return math.nan
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def two_sample_interval(x, y, statistic: Callable, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """Percentile bootstrap interval of a two-sample ``statistic(x, y)``, each sample resampled on its own."""
    res = stats.bootstrap(
        (x, y),
        statistic,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return Interval(float(res.confidence_interval.low), float(res.confidence_interval.high), "percentile bootstrap")


def _hedges_g(x: np.ndarray, y: np.ndarray) -> tuple[float, Interval]:
    """Hedges' g and its approximate 95% interval (normal approximation of its standard error)."""
    nx, ny = len(x), len(y)
    pooled = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    if pooled == 0:
        d = math.copysign(math.inf, x.mean() - y.mean()) if x.mean() != y.mean() else 0.0
        return d, Interval(d, d, "normal approximation")
    correction = 1 - 3 / (4 * (nx + ny) - 9)
    g = correction * (x.mean() - y.mean()) / pooled
    se = math.sqrt((nx + ny) / (nx * ny) + g * g / (2 * (nx + ny)))
    z = stats.norm.ppf(0.975)
    return float(g), Interval(float(g - z * se), float(g + z * se), "normal approximation")


def seeds_needed(effect_size: float, power: float = 0.8, alpha: float = ALPHA, max_n: int = 100_000) -> float:
    """Seeds per group for a two-sided two-sample t test to reach ``power`` at ``alpha`` when the true standardised
    difference is ``effect_size`` (noncentral t). Typical answers: d = 0.5 needs 64, d = 1 needs 17, d = 2 needs 6."""
    d = abs(effect_size)
    if not np.isfinite(d):
        return 2.0 if d == math.inf else math.nan
    if d == 0:
        return math.inf

    def achieved(n: int) -> float:
        df = 2 * n - 2
        t_crit = stats.t.ppf(1 - alpha / 2, df)
        nc = d * math.sqrt(n / 2)
        return float(stats.nct.sf(t_crit, df, nc) + stats.nct.cdf(-t_crit, df, nc))

    lo, hi = 2, 4
    while achieved(hi) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            return math.inf
    while lo < hi:  # the smallest n with enough power
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if achieved(mid) < power else (lo, mid)
    return float(lo)


def smallest_p_value(n_x: int, n_y: int, n_resamples: int = 10_000) -> float:
    """The smallest two-sided p the permutation test of :func:`compare` can return with ``n_x`` against ``n_y`` seeds.

    Exact test (``C(n_x + n_y, n_x) <= n_resamples`` splits, enumerated): 2 / C, because only the observed split and
    its mirror are as extreme. Randomised test: 2 / (n_resamples + 1). Typical values: 3 against 3, 0.1; 5 against 5,
    0.0079; 6 against 6, 0.0022. The trap: Holm multiplies the smallest p by the number of comparisons, so with 5
    seeds per group a report of 7 or more comparisons cannot call anything significant however large the effect."""
    if min(n_x, n_y) < 1:
        return math.nan
    splits = math.comb(n_x + n_y, n_x)
    return min(1.0, 2 / splits) if splits <= n_resamples else 2 / (n_resamples + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): controls the family-wise error over all the comparisons of a
    report. NaNs stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), math.nan)
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(c: Comparison, adjusted_p: float, higher_is_better: bool = True, min_seeds: int = MIN_SEEDS) -> str:
    """The words for a comparison: "too few seeds for a verdict" (below ``min_seeds`` in either group), "better" or
    "worse" (Holm-adjusted p below ``ALPHA``), else "no significant difference"."""
    if min(c.n_x, c.n_y) < min_seeds:
        return f"too few seeds for a verdict (n < {min_seeds})"
    if not (adjusted_p < ALPHA):
        return "no significant difference"
    return "better" if (c.diff > 0) == higher_is_better else "worse"


def t_band(y, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise mean of curves ``y`` (runs, points) and its Student t interval: ``(mean, low, high)``, each
    (points,). What :func:`t_interval` gives for each column, vectorised; with one run the band is the curve itself.
    With 2 or 3 runs the band is wide (t = 12.7 and 4.3): that is the honest width, not a plotting error."""
    y = np.asarray(y, dtype=float)
    mean = y.mean(axis=0)
    if len(y) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + confidence / 2, len(y) - 1) * y.std(axis=0, ddof=1) / math.sqrt(len(y))
    return mean, mean - half, mean + half


def performance_profile(scores: Sequence[float], thresholds: Sequence[float]) -> np.ndarray:
    """The fraction of runs whose score is above each threshold (Dolan & More 2002; as in rliable): a curve per
    group that shows the whole distribution of outcomes, not one number."""
    s = _finite(scores)
    t = np.asarray(thresholds, dtype=float)
    return (s[None, :] > t[:, None]).mean(axis=1) if len(s) else np.full(len(t), math.nan)


def mean_with_interval(x: Sequence[float], digits: int = 3) -> str:
    """``"mean [low, high]"``: the mean over seeds and its 95% t interval (:func:`t_interval`)."""
    low, high, _ = t_interval(x)
    return f"{np.mean(_finite(x)):.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _whole_seeds(n: float) -> str:
    """:func:`seeds_needed` as a table shows it: a whole number, "more than 100000" past the search, "-" if unknown."""
    if math.isnan(n):
        return "-"
    return f"{n:.0f}" if math.isfinite(n) else "more than 100000"


def comparison_table(
    table: dict[str, dict[str, Sequence[float]]], baseline: str, quality: Sequence[str] = ()
) -> "pd.DataFrame":  # noqa: F821
    """Every arm of a study against its baseline, for each metric: ``table = {metric: {arm: per-seed scores}}``.

    One row per (metric, arm): the means, the difference with Welch's 95% interval, P(a seed of the arm beats a
    seed of the baseline), the permutation test's p adjusted with :func:`holm` over *every* comparison of the table,
    :func:`verdict`'s words, and the seeds per group 80% power would need. For the metrics named in ``quality`` higher
    is better ("better" / "worse"); the others are only "higher" / "lower".
    """
    import warnings

    import pandas as pd

    pairs = [(metric, arm) for metric, arms in table.items() for arm in arms if arm != baseline]
    with warnings.catch_warnings():  # scipy warns when every seed of a group scored the same (say 500): harmless
        warnings.simplefilter("ignore", RuntimeWarning)
        comparisons = [compare(table[metric][arm], table[metric][baseline]) for metric, arm in pairs]
    rows = []
    for (metric, arm), c, p in zip(pairs, comparisons, holm([c.p_value for c in comparisons])):
        words = verdict(c, p)
        if metric not in quality:
            words = words.replace("better", "higher").replace("worse", "lower")
        rows.append(
            {
                "metric": metric,
                "arm": arm,
                "mean": float(f"{c.mean_x:.4g}"),
                f"baseline: {baseline}": float(f"{c.mean_y:.4g}"),
                "difference [95% CI]": f"{c.diff:+.3g} [{c.diff_interval.low:+.3g}, {c.diff_interval.high:+.3g}]",
                "P(beats baseline)": round(c.prob_improvement, 2),
                "p (Holm)": float(f"{p:.2g}"),
                "verdict": words,
                "seeds needed": _whole_seeds(c.seeds_needed),
            }
        )
    return pd.DataFrame(rows).set_index(["metric", "arm"])
