"""Statistics for comparing groups of seeds honestly, with scipy: a test behind every verdict that no resampling seed
can flip, intervals at the level the verdict used, effect sizes with exact intervals, and the seeds a study needs.

The traps these functions exist to avoid:

- with 3 seeds per group the smallest p a permutation test can reach is 0.1, and two percentile-bootstrap intervals
  that do not overlap say little. A verdict comes from a test, corrected for the number of comparisons (Holm), and
  below ``MIN_SEEDS`` seeds per group there is no verdict at all;
- a Monte Carlo permutation p carries an error: at p 0.004 with 10,000 draws about 0.0006, enough for another
  resampling seed to move a Holm-adjusted p across 0.05. :class:`PermutationTest` enumerates every split when there
  are at most ``MAX_EXACT`` of them, and otherwise draws until the p is clearly on one side of every threshold Holm
  can use (:func:`compare_family`); what stays within the error after ``MAX_RESAMPLES`` draws is *borderline*;
- "not significant" is not "no difference": it comes with the interval and the smallest effect the seeds could
  have detected, and *equivalent* needs a test of its own (TOST) against a stated smallest effect of interest;
- an interval printed beside a verdict must be at the level the verdict used, or it contradicts it: the difference's
  interval is the permutation test inverted (:meth:`PermutationTest.interval`), at the row's Holm level;
- power is prospective: the seeds a stated effect needs at the level a comparison is tested at
  (:func:`seeds_needed`), never the observed effect's.

The verdict words (:data:`VERDICTS`, :func:`verdict`):

- *better* / *worse* (or *higher* / *lower* for a metric without a good direction): the Holm-adjusted p is below
  ``ALPHA`` even at the top of its Monte Carlo error bound;
- *borderline*: the adjusted p's Monte Carlo bounds straddle ``ALPHA`` (another draw could say either);
- *equivalent*: not different, and the TOST of ``|delta| >= EQUIVALENCE_G`` (the standardised difference: the
  difference of means in pooled standard deviations) rejects after Holm over the same family;
- *not significant*: none of these; the report shows the interval and the smallest ``|g|`` the seeds could detect;
- *too few seeds for a verdict (n < 5)*.

The functions:

- :func:`iqm` and :func:`iqm_interval` (Tukey-McLaughlin: the trimmed mean's t interval); :func:`t_interval` (the
  mean) and :func:`bootstrap_interval` (any statistic; BCa by default).
- :class:`PermutationTest`: the test of a difference of means (two groups, or pairs by sign flips), exact or Monte
  Carlo with its error bounds, and the interval that inverts it.
- :func:`compare` (two groups, or pairs: the test, Welch's interval, Hedges' g with its exact interval, the TOST,
  P(improvement)) and :func:`compare_family` (a family of comparisons: Holm with the Monte Carlo error, the verdict
  words, each row's level and interval): what every report calls.
- :func:`effect_interval` (Hedges' g's exact noncentral-t interval), :func:`equivalence_p` (TOST),
  :func:`detectable_effect` and :func:`seeds_needed` (power), :func:`smallest_p_value` (the permutation floor).
- :func:`probability_of_improvement` (P(X > Y), ties one half) and :func:`mann_whitney_pvalue` (the rank test's p).
- :func:`holm` (step-down adjusted p-values), :func:`verdict` (the words), :func:`replication` (did a verdict
  replicate on a second set of seeds).
- :func:`t_band`, :func:`performance_profile`, :func:`comparison_table` and :func:`mean_with_interval`: what the
  lessons print.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import optimize, stats

MIN_SEEDS = 5
"""Below this many seeds in either group, :func:`verdict` says "too few seeds for a verdict"."""
ALPHA = 0.05
"""Significance level of every verdict, after Holm's correction (family-wise error rate of a report)."""
POWER = 0.8
"""The power a study is planned for (:func:`seeds_needed`, :func:`detectable_effect`)."""
POWER_G = 0.8
"""The standardised effect ``|g|`` a study is planned to detect: Cohen's "large" effect, P(a seed beats a seed) 0.71.
Smaller effects are not what a study of 16 to 50 seeds per group can find after Holm's correction over 30
comparisons (:func:`seeds_needed`)."""
EQUIVALENCE_G = 0.5
"""The smallest effect of interest for the verdict *equivalent*, in units of the standardised difference delta (the
difference of means over the pooled standard deviation, what Hedges' g estimates). Half a seed-to-seed standard
deviation, Cohen's "medium": a shift the spread between seeds hides (P(a seed beats a seed) between 0.36 and 0.64).
Tasks' returns have no common scale, so the bound is standardised; pass another bound where a metric has a natural
unit of interest."""
MAX_EXACT = 200_000
"""A permutation test enumerates every split when there are at most this many (10 against 10 seeds: 184,756; 16
pairs: 65,536 sign flips); beyond, it draws (Monte Carlo)."""
RESAMPLES = 20_000
"""A Monte Carlo permutation test's first draws."""
MAX_RESAMPLES = 5_120_000
"""The most draws :func:`compare_family` makes for one p before calling a verdict within its error *borderline*
(at p 0.0035, about 3e-5 of Monte Carlo standard error; about 3 s for 16 against 16 seeds on one core)."""
MC_CONFIDENCE = 0.999
"""Confidence of the Monte Carlo bounds of a family's p-values, simultaneous over the family (Bonferroni): a verdict
outside its bounds could be contradicted by another resampling seed with probability below 0.001."""
NOT_SIGNIFICANT = "not significant"
BORDERLINE = "borderline"
EQUIVALENT = "equivalent"
VERDICTS = ("better", "worse", "higher", "lower", EQUIVALENT, NOT_SIGNIFICANT, BORDERLINE)
"""Every verdict word (besides "too few seeds for a verdict (n < 5)")."""


class Interval(NamedTuple):
    low: float
    high: float
    method: str  # named in every report: "t", "permutation test inverted", "noncentral t", ...


def _finite(x: Sequence[float]) -> np.ndarray:
    """``x`` without its non-finite values (the callers that compare groups count them: :func:`compare`)."""
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def iqm(x, axis=0):
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean`` cutting 25% at each end). Robust
    to a collapsed seed, less noisy than the median."""
    return stats.trim_mean(x, 0.25, axis=axis)


def iqm_interval(x: Sequence[float], confidence: float = 0.95) -> Interval:
    """The IQM's Tukey-McLaughlin interval: IQM +- t(h - 1) x SE, the standard error from the winsorized variance
    (Yuen 1974: SE^2 = (n - 1) s_w^2 / (h (h - 1)), h the values the IQM keeps; s_w^2 the variance of the values
    with the g lowest raised to the next one and the g highest lowered alike).

    Why not a bootstrap: with 5 seeds a BCa interval of the IQM covers the truth about 88-90% of the time for a
    nominal 95% (the resamples of 5 values have few distinct IQMs). Measured coverage of this interval (nominal 0.95;
    tools/stats_check.py, 20,000 samples each, n = 5, 8, 16): normal 0.94; t(3) 0.95; 20% collapsed seeds 0.95;
    lognormal 0.92-0.93; uniform 0.92-0.93 (BCa at n = 5: 0.87-0.91). Not exact: a light-tailed or skewed
    population at 5 seeds still covers a little less than it says.
    Non-finite values are dropped; NaNs below 2 values."""
    x = np.sort(_finite(x))
    n = len(x)
    g = int(0.25 * n)
    h = n - 2 * g
    if h < 2:
        return Interval(math.nan, math.nan, "Tukey-McLaughlin t")
    if x[0] == x[-1]:
        return Interval(float(x[0]), float(x[0]), "Tukey-McLaughlin t")
    winsorized = np.clip(x, x[g], x[n - g - 1])  # the g lowest raised to the (g+1)-th, the g highest lowered
    se = math.sqrt((n - 1) * winsorized.var(ddof=1) / (h * (h - 1)))
    half = stats.t.ppf(0.5 + confidence / 2, h - 1) * se
    mid = float(x[g : n - g].mean())
    return Interval(mid - half, mid + half, "Tukey-McLaughlin t")


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
    and skew; where BCa is undefined (too few distinct values) the percentile interval is returned and named so.
    The trap: at 5 values neither covers as it claims (BCa of the IQM: about 0.89 for 0.95); the reports use
    :func:`iqm_interval`."""
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


# --- the permutation test ----------------------------------------------------------------------------------------


class PermutationTest:
    """The two-sided permutation test of a difference of means, and the confidence interval that inverts it.

    Two groups (``paired=False``): under the null hypothesis the seeds' labels are exchangeable; each split of the
    pooled scores into groups of n_x and n_y gives a difference of means T, and p = P(``|T|`` >= ``|t|``), t the
    observed difference. Pairs (``paired=True``, x[i] and y[i] from the same seed): each sign flip of the
    differences x - y gives a mean T. With at most ``max_exact`` splits (or 2^n flips) every one is enumerated and p
    is exact; beyond, the test draws them (Monte Carlo, p = (b + 1) / (B + 1) with b of B draws as extreme: a valid
    p at any B) and :meth:`p_bounds` gives the Clopper-Pearson bounds of the exact p, which :meth:`draw` narrows.

    :meth:`interval` inverts the test under the shift model (x - delta against y): the deltas the test does not
    reject at ``level``. Every split's statistic is linear in delta, T_s(delta) = T_s(0) - c_s delta with ``|c_s|``
    <= 1, so the set is an interval whose ends are order statistics of the splits' crossing points: exact, and
    consistent with the p by construction (0 is inside exactly when p >= level). The trap it removes: a Welch
    interval beside a permutation verdict can exclude 0 on a row the test calls not significant."""

    def __init__(
        self,
        x: Sequence[float],
        y: Sequence[float],
        paired: bool = False,
        max_exact: int = MAX_EXACT,
        n_resamples: int = RESAMPLES,
        seed=0,
    ):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.paired = paired
        if paired:
            if len(x) != len(y):
                raise ValueError(f"paired samples need equal lengths, got {len(x)} and {len(y)}")
            self._d = x - y
            self.statistic = float(self._d.mean())
            self.splits = 2 ** len(x)
            scale = float(np.abs(self._d).max()) if len(x) else 0.0
        else:
            self._z = np.concatenate([x, y])
            self._nx, self._ny = len(x), len(y)
            self.statistic = float(x.mean() - y.mean())
            self.splits = math.comb(len(x) + len(y), len(x))
            scale = float(np.abs(self._z).max()) if len(self._z) else 0.0
        self._tol = 1e-11 * (scale + abs(self.statistic)) * max(len(x), 1)
        self.exact = self.splits <= max_exact
        self._rng = np.random.default_rng(seed)
        self._a = np.empty(0)
        self._c = np.empty(0)
        if self.exact:
            self._a, self._c = self._enumerate()
        else:
            self.draw(n_resamples)

    @property
    def resamples(self) -> int:
        """The splits enumerated (exact) or drawn (Monte Carlo)."""
        return len(self._a)

    @property
    def method(self) -> str:
        what = "sign flips of the paired differences" if self.paired else "splits of the seeds"
        if self.exact:
            return f"permutation test, difference of means: exact (all {self.splits:,} {what})"
        return f"permutation test, difference of means: {self.resamples:,} random {what}"

    def _null(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The statistic at delta = 0 and its slope in delta, for each split (a boolean row: the seeds of group x,
        or the pairs whose sign stays)."""
        if self.paired:
            signs = np.where(chosen, 1.0, -1.0)
            return signs @ self._d / len(self._d), signs.mean(axis=1)
        nx, ny = self._nx, self._ny
        sums = chosen @ self._z
        k = chosen[:, :nx].sum(axis=1)
        return sums / nx - (self._z.sum() - sums) / ny, k / nx - (nx - k) / ny

    def _enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        if self.paired:
            n = len(self._d)
            chosen = (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1
            return self._null(chosen)
        n, nx = len(self._z), self._nx
        index = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), nx)), dtype=np.int64)
        chosen = np.zeros((self.splits, n), dtype=bool)
        chosen[np.repeat(np.arange(self.splits), nx), index] = True
        return self._null(chosen)

    def draw(self, n: int, batch: int = 100_000) -> None:
        """Draw ``n`` more random splits (sign flips): the Monte Carlo error shrinks as 1 / sqrt(draws)."""
        if self.exact:
            return
        parts_a, parts_c = [self._a], [self._c]
        for start in range(0, n, batch):
            size = min(batch, n - start)
            if self.paired:
                chosen = self._rng.integers(0, 2, size=(size, len(self._d))) == 1
            else:
                chosen = self._subsets(size)
            a, c = self._null(chosen)
            parts_a.append(a)
            parts_c.append(c)
        self._a, self._c = np.concatenate(parts_a), np.concatenate(parts_c)

    def _subsets(self, size: int) -> np.ndarray:
        """``size`` uniformly random subsets of n_x of the pooled seeds, as boolean rows: the n_x smallest of random
        32-bit keys (5 times faster than sorting floats); a row whose keys tie at the cut is drawn again."""
        n, nx = len(self._z), self._nx
        chosen = np.empty((size, n), dtype=bool)
        todo = np.arange(size)
        while len(todo):
            keys = self._rng.integers(0, 2**32, size=(len(todo), n), dtype=np.uint32)
            rows = keys <= np.partition(keys, nx - 1, axis=1)[:, nx - 1 : nx]
            chosen[todo] = rows
            todo = todo[rows.sum(axis=1) != nx]
        return chosen

    @property
    def _denominator(self) -> int:
        return self.resamples if self.exact else self.resamples + 1

    def _count(self, delta: float = 0.0) -> int:
        """Splits at least as extreme as the observed one at shift ``delta`` (the observed counted once when drawn)."""
        observed = abs(self.statistic - delta)
        extreme = np.abs(self._a - self._c * delta) >= observed - self._tol
        return int(np.count_nonzero(extreme)) + (0 if self.exact else 1)

    @property
    def p_value(self) -> float:
        return self._count() / self._denominator

    def p_bounds(self, confidence: float = MC_CONFIDENCE) -> tuple[float, float]:
        """Bounds of the exact permutation p (the p every split would give): Clopper-Pearson at ``confidence`` on
        the draws as extreme as the observed; (p, p) when exact."""
        p = self.p_value
        if self.exact:
            return p, p
        b, n, tail = self._count() - 1, self.resamples, (1 - confidence) / 2
        low = stats.beta.ppf(tail, b, n - b + 1) if b > 0 else 0.0  # Clopper-Pearson (scipy's binomtest's, closed form)
        high = stats.beta.ppf(1 - tail, b + 1, n - b) if b < n else 1.0
        return float(low), float(max(high, p))

    def interval(self, level: float = ALPHA) -> Interval:
        """The interval of the difference of means (x - y, or the mean paired difference) at confidence 1 - level:
        the shifts delta at which this test's p is at least ``level``. Infinite where the test cannot reach
        ``level`` at all (fewer splits than 1 / level)."""
        k = max(1, math.ceil(level * self._denominator - 1e-9))
        high = self._limit(self._a, self.statistic, k)
        low = -self._limit(-self._a, -self.statistic, k)
        return Interval(low, high, "permutation test inverted")

    def _limit(self, a: np.ndarray, t: float, k: int) -> float:
        """The upper end: the k-th largest of the splits' last shifts delta >= t at which each is still as extreme
        as the observed, ``|a - c delta|`` >= ``|t - delta|`` - tol (two linear pieces, each a bound on delta)."""
        c, tol = self._c, self._tol
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = np.where(1 + c > 1e-12, (a + t + tol) / (1 + c), np.where(a + t + tol >= 0, np.inf, -np.inf))
            r2 = np.where(1 - c > 1e-12, (t - a + tol) / (1 - c), np.where(t - a + tol >= 0, np.inf, -np.inf))
        last = np.maximum(r1, r2)
        if not self.exact:
            last = np.append(last, np.inf)  # the observed split
        if k > len(last):
            return math.nan
        return float(-np.partition(-last, k - 1)[k - 1])


class SignedRankTest:
    """Wilcoxon's signed-rank test of paired scores (x[i] and y[i] of one seed: its final return and its first, say)
    and the Hodges-Lehmann interval that inverts it: robust where a mean is not (one seed whose first episodes were a
    lucky 56 instead of -51 moves a mean rise of 16 to 10 and its sign-flip p from 1e-4 to 0.15; the ranks barely
    notice it).

    Without ties or zero differences: the exact null distribution of T+ (the ranks' sum of the positive differences),
    p = min(1, 2 min(P(T+ <= t), P(T+ >= t))) as ``scipy.stats.wilcoxon``'s exact p, and :meth:`interval` the Walsh
    averages' order statistics that invert it exactly (0 inside exactly when p >= level). With ties or zeros (zeros
    dropped, Wilcoxon's convention): the p of the signed midranks' sign flips (:class:`PermutationTest`, exact up to
    17 pairs) and the same interval, then approximate."""

    def __init__(self, x: Sequence[float], y: Sequence[float]):
        d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
        self.n = len(d)
        walsh = (d[:, None] + d[None, :]) / 2
        self._walsh = np.sort(walsh[np.triu_indices(self.n)])
        self.estimate = float(np.median(self._walsh)) if self.n else math.nan
        nonzero = d[d != 0]
        self.exact = len(np.unique(np.abs(nonzero))) == len(nonzero) == self.n
        self._cdf = self._null_cdf(self.n)
        if self.n == 0:
            self.p_value = math.nan
        elif self.exact:
            ranks = stats.rankdata(np.abs(d))
            t = int(round(ranks[d > 0].sum()))
            self.p_value = float(min(1.0, 2 * min(self._cdf[t], 1 - (self._cdf[t - 1] if t > 0 else 0.0))))
        elif len(nonzero):  # the signed midranks' sign flips: the rank test's own permutation distribution
            signed = np.sign(nonzero) * stats.rankdata(np.abs(nonzero))
            self.p_value = PermutationTest(signed, np.zeros(len(signed)), paired=True, n_resamples=100_000).p_value
        else:
            self.p_value = 1.0
        self.method = "Wilcoxon signed-rank test" + (
            " (exact)" if self.exact else " (ties or zeros: sign flips of the midranks)"
        )

    @staticmethod
    def _null_cdf(n: int) -> np.ndarray:
        """P(T+ <= t) for t = 0 .. n(n+1)/2 under the null: the subsets of the ranks 1..n by their sum, counted."""
        counts = np.zeros(n * (n + 1) // 2 + 1)
        counts[0] = 1.0
        for r in range(1, n + 1):
            counts[r:] = counts[r:] + counts[:-r].copy()
        return np.cumsum(counts) / 2.0**n

    def interval(self, level: float = ALPHA) -> Interval:
        """The Hodges-Lehmann interval of the paired shift at confidence 1 - ``level``: the Walsh averages ranked c and
        M - c + 1 (M = n(n + 1) / 2), c the smallest rank sum whose two-sided p reaches ``level``; infinite where the
        test cannot reach it (2 / 2^n >= level)."""
        m = len(self._walsh)
        reach = np.flatnonzero(2 * self._cdf >= level - 1e-12)
        c = int(reach[0]) if len(reach) else m
        if c == 0:
            return Interval(-math.inf, math.inf, "Hodges-Lehmann")
        return Interval(float(self._walsh[c - 1]), float(self._walsh[m - c]), "Hodges-Lehmann")


def smallest_p_value(n_x: int, n_y: int, n_resamples: int = RESAMPLES, max_exact: int = MAX_EXACT) -> float:
    """The smallest two-sided p the permutation test of :func:`compare` can return with ``n_x`` against ``n_y`` seeds.

    Exact test (``C(n_x + n_y, n_x) <= max_exact`` splits, enumerated): 2 / C for equal groups, where only the
    observed split and its mirror are as extreme, 1 / C otherwise. Drawn test: 1 / (n_resamples + 1), which more
    draws lower (:func:`compare_family` draws up to ``MAX_RESAMPLES``). Typical values: 3 against 3, 0.1; 5 against
    5, 0.0079; 6 against 6, 0.0022. The trap: Holm multiplies the smallest p by the number of comparisons, so with 5
    seeds per group a report of 7 or more comparisons cannot call anything significant however large the effect."""
    if min(n_x, n_y) < 1:
        return math.nan
    splits = math.comb(n_x + n_y, n_x)
    if splits <= max_exact:
        return min(1.0, (2 if n_x == n_y else 1) / splits)
    return 1 / (n_resamples + 1)


# --- effect sizes, equivalence and power -------------------------------------------------------------------------


def _nct_cdf(t: float, df: float, nc: float) -> float:
    """``scipy.stats.nct.cdf``, where it returns NaN (far in the lower tail of a large noncentrality: scipy 1.17
    gives NaN for nct.cdf(-4, 14, 20)) one minus its survival function, else the normal approximation of the
    noncentral t (Johnson, Kotz & Balakrishnan 1995, 31.26)."""
    value = float(stats.nct.cdf(t, df, nc))
    if math.isnan(value):
        value = 1 - float(stats.nct.sf(t, df, nc))
    if math.isnan(value):
        value = float(stats.norm.cdf((t * (1 - 1 / (4 * df)) - nc) / math.sqrt(1 + t * t / (2 * df))))
    return value


def _nct_bounds(t: float, df: float, confidence: float) -> tuple[float, float]:
    """The noncentrality parameters whose noncentral t puts the observed ``t`` at the (1 + confidence) / 2 and
    (1 - confidence) / 2 quantiles (``scipy.stats.nct``, brentq): the exact interval of the noncentrality."""
    tail = (1 - confidence) / 2

    def solve(f, start: float) -> float:
        lo, hi = start - 1.0, start + 1.0
        while f(lo) > 0:
            lo -= 2 * (hi - lo)
        while f(hi) < 0:
            hi += 2 * (hi - lo)
        return optimize.brentq(f, lo, hi, xtol=1e-10)

    low = solve(lambda nc: (1 - _nct_cdf(t, df, nc)) - tail, t)
    high = solve(lambda nc: tail - _nct_cdf(t, df, nc), t)
    return low, high


def _design(n_x: int, n_y: int | None) -> tuple[float, int]:
    """(scale, df) of the t statistic of a standardised difference: t = delta * scale, two groups (n_y given) or
    ``n_x`` pairs (n_y None)."""
    if n_y is None:
        return math.sqrt(n_x), n_x - 1
    return math.sqrt(n_x * n_y / (n_x + n_y)), n_x + n_y - 2


def effect_interval(d: float, n_x: int, n_y: int | None = None, confidence: float = 0.95) -> Interval:
    """The exact interval of the standardised difference delta from Cohen's d (the difference of means over the
    pooled standard deviation; for pairs, ``n_y`` None, the mean difference over its standard deviation): invert the
    noncentral t of t = d sqrt(n_x n_y / (n_x + n_y)) (Steiger & Fouladi 1997; MBESS's ``ci.smd``).

    The normal approximation it replaces was too narrow at small n: 5 against 5 seeds, d -4.73 (g -4.27): exact
    [-7.29, -2.11], normal [-6.51, -2.03]. Infinite d (zero spread) gives the point itself."""
    scale, df = _design(n_x, n_y)
    if not math.isfinite(d) or df < 1:
        return Interval(d, d, "noncentral t")
    low, high = _nct_bounds(d * scale, df, confidence)
    return Interval(low / scale, high / scale, "noncentral t")


def _standardised(x: np.ndarray, y: np.ndarray | None) -> float:
    """Cohen's d: the difference of means over the pooled standard deviation (pairs: the mean difference over its
    standard deviation); +-inf with zero spread, 0 when nothing differs."""
    if y is None:
        diff, spread = float(x.mean()), float(x.std(ddof=1))
    else:
        nx, ny = len(x), len(y)
        diff = float(x.mean() - y.mean())
        spread = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    if spread == 0:
        return math.copysign(math.inf, diff) if diff != 0 else 0.0
    return diff / spread


def _small_sample(n_x: int, n_y: int | None) -> float:
    """Hedges' correction J = 1 - 3 / (4 df - 1) (g = J d)."""
    return 1 - 3 / (4 * _design(n_x, n_y)[1] - 1)


def equivalence_p(d: float, n_x: int, n_y: int | None = None, bound: float = EQUIVALENCE_G) -> float:
    """The TOST p (two one-sided tests, Schuirmann 1987) of "``|delta|`` >= ``bound``" from Cohen's d: the larger of
    the two one-sided noncentral-t p-values. Below a level a it says delta is inside (-bound, bound) at that level,
    exactly when the 1 - 2a interval of :func:`effect_interval` lies inside it. NaN when nothing varies."""
    scale, df = _design(n_x, n_y)
    if df < 1 or (d == 0 and not math.isfinite(scale)):
        return math.nan
    if not math.isfinite(d):
        return 1.0
    t = d * scale
    below_upper = _nct_cdf(t, df, bound * scale)  # H0: delta >= bound
    above_lower = 1 - _nct_cdf(t, df, -bound * scale)  # H0: delta <= -bound
    return float(max(below_upper, above_lower))


def _power(d: float, n_x: int, n_y: int | None, alpha: float) -> float:
    """Power of the two-sided t test at ``alpha`` for a true standardised difference ``d`` (noncentral t)."""
    scale, df = _design(n_x, n_y)
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    return (1 - _nct_cdf(t_crit, df, d * scale)) + _nct_cdf(-t_crit, df, d * scale)


def _paired_floor(n: int) -> float:
    """The smallest p of the paired (sign-flip) test of n pairs: 2 / 2^n when enumerated (every sign kept and every
    sign flipped are as extreme), else the drawn test's 1 / (``MAX_RESAMPLES`` + 1)."""
    return 2 / 2**n if 2**n <= MAX_EXACT else 1 / (MAX_RESAMPLES + 1)


def detectable_effect(n_x: int, n_y: int | None = None, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest ``|delta|`` (the standardised difference, what Hedges' g estimates) that ``n_x`` against ``n_y``
    seeds (pairs: ``n_y`` None) detect with ``power`` at the two-sided level ``alpha``: the t test's power, which the
    permutation test of a difference of means shares for normal data; inf when the permutation test cannot reach
    ``alpha`` at all (:func:`smallest_p_value`). 16 against 16 at 0.05 / 30: ``|g|`` 1.54; 48 against 48: 0.84 (the
    normal approximation says 1.41 and 0.81)."""
    floor = smallest_p_value(n_x, n_y, MAX_RESAMPLES) if n_y is not None else _paired_floor(n_x)
    if _design(n_x, n_y)[1] < 1 or not floor < alpha:
        return math.inf
    hi = 1.0
    while _power(hi, n_x, n_y, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda d: _power(d, n_x, n_y, alpha) - power, 0.0, hi, xtol=1e-6))


def seeds_needed(
    effect_size: float = POWER_G,
    power: float = POWER,
    alpha: float = ALPHA,
    comparisons: int = 1,
    max_n: int = 100_000,
) -> float:
    """Seeds per group for ``power`` to detect a true standardised difference ``effect_size``, each comparison
    tested at Holm's first level ``alpha / comparisons`` (the level the strongest comparison of a family must pass),
    and above the permutation floor: the smallest n whose two-sided t test reaches ``power`` (noncentral t) and
    whose permutation test can return a p below that level at all (:func:`smallest_p_value`).

    Prospective: the effect is stated before the runs (``POWER_G``), never the observed one (post-hoc power says
    nothing the p did not). Typical answers at 0.05: d = 0.5 needs 64, d = 1 needs 17, d = 2 needs 6; ``|g|`` 0.8 over
    30 comparisons, 51. inf if none up to ``max_n``."""
    d = abs(effect_size)
    if not np.isfinite(d):
        return 2.0 if d == math.inf else math.nan
    if d == 0:
        return math.inf
    level = alpha / comparisons

    def enough(n: int) -> bool:
        return _power(d, n, n, level) >= power and smallest_p_value(n, n, MAX_RESAMPLES) < level

    lo, hi = 2, 4
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > max_n:
            return math.inf
    while lo < hi:  # the smallest n with enough power
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if not enough(mid) else (lo, mid)
    return float(lo)


# --- one comparison ----------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Group ``x`` against its baseline ``y`` (final scores, one per seed; or pairs, ``paired``). Positive
    differences favour ``x``. Unadjusted: :func:`compare_family` adds Holm, the level and the verdict."""

    n_x: int
    n_y: int
    mean_x: float
    mean_y: float
    diff: float
    """mean(x) - mean(y) (pairs: the mean of x - y)."""
    diff_interval: Interval
    """Welch's 95% t interval of the difference (pairs: the paired t interval); unadjusted, for reference."""
    p_value: float
    """Two-sided permutation test of the difference of means (:class:`PermutationTest`)."""
    test: str
    effect_size: float
    """Hedges' g: the difference in pooled standard deviations, corrected for small samples (pairs: g_z, the mean
    difference over its standard deviation)."""
    effect_interval: Interval
    """The exact 95% interval of the standardised difference (:func:`effect_interval`), unadjusted."""
    prob_improvement: float
    """P(X > Y) + P(X = Y) / 2 over all pairs of seeds (the Mann-Whitney U statistic over n_x * n_y): 0.5 = no edge.
    Pairs: the share of pairs where x > y (ties one half)."""
    prob_interval: Interval
    seeds_needed: float
    """Prospective: seeds per group for 80% power at ``ALPHA`` against ``|g|`` ``POWER_G`` (:func:`seeds_needed`; a
    family's figure is :func:`compare_family`'s, at its Holm level). Not the observed effect's."""
    p_low: float = math.nan
    """The exact p's lower Monte Carlo bound (``p_value`` when exact; :meth:`PermutationTest.p_bounds`)."""
    p_high: float = math.nan
    exact: bool = False
    """Every split enumerated: ``p_value`` has no Monte Carlo error."""
    resamples: int = 0
    equivalence_p: float = math.nan
    """The TOST p of ``|delta|`` >= ``EQUIVALENCE_G`` (:func:`equivalence_p`), unadjusted."""
    cohens_d: float = math.nan
    nonfinite_x: int = 0
    """Non-finite scores of x (a diverged run), left out of every statistic above and named by the reports."""
    nonfinite_y: int = 0
    paired: bool = False
    permutation: PermutationTest | None = field(default=None, repr=False)


def compare(
    x: Sequence[float],
    y: Sequence[float],
    n_resamples: int = RESAMPLES,
    seed=0,
    paired: bool = False,
    equivalence_g: float = EQUIVALENCE_G,
    max_exact: int = MAX_EXACT,
) -> Comparison:
    """Compare two groups of scores (or ``paired`` scores, x[i] and y[i] of one seed): the test, the intervals, the
    equivalence test and the probability of improvement of :class:`Comparison`. Non-finite scores are counted and
    left out (pairs: the pair). One comparison alone; a report's family goes through :func:`compare_family`."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if paired:
        ok = np.isfinite(x) & np.isfinite(y)
        dropped_x, dropped_y = int((~np.isfinite(x)).sum()), int((~np.isfinite(y)).sum())
        x, y = x[ok], y[ok]
    else:
        dropped_x, dropped_y = int((~np.isfinite(x)).sum()), int((~np.isfinite(y)).sum())
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    nan_interval = Interval(math.nan, math.nan, "")
    counts = dict(nonfinite_x=dropped_x, nonfinite_y=dropped_y, paired=paired)
    if len(x) < 2 or len(y) < 2:
        mx, my = (float(v.mean()) if len(v) else math.nan for v in (x, y))
        return Comparison(len(x), len(y), mx, my, mx - my, nan_interval, math.nan, "", math.nan, nan_interval,
                          math.nan, nan_interval, math.nan, **counts)  # fmt: skip
    n_y = None if paired else len(y)
    perm = PermutationTest(x, y, paired, max_exact, n_resamples, seed)
    low, high = perm.p_bounds()
    if np.all(np.concatenate([x, y]) == x[0]):  # every score equal: no difference, and nothing to standardise
        zero = Interval(0.0, 0.0, "")
        return Comparison(len(x), len(y), float(x[0]), float(x[0]), 0.0, zero, 1.0, perm.method, 0.0, zero, 0.5,
                          Interval(0.5, 0.5, ""), seeds_needed(), 1.0, 1.0, perm.exact, perm.resamples, math.nan, 0.0,
                          permutation=perm, **counts)  # fmt: skip
    if paired:
        ci = stats.ttest_1samp(x - y, 0.0).confidence_interval(0.95)
        d = _standardised(x - y, None)
        pi = float(np.mean(x > y) + 0.5 * np.mean(x == y))
        pi_interval = bootstrap_interval(
            (x > y) + 0.5 * (x == y), np.mean, method="percentile", seed=seed if isinstance(seed, int) else 0
        )
    else:
        ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
        d = _standardised(x, y)
        pi = probability_of_improvement(x, y)
        pi_interval = two_sample_interval(x, y, probability_of_improvement, seed=seed if isinstance(seed, int) else 0)
    g = _small_sample(len(x), n_y) * d
    return Comparison(
        n_x=len(x),
        n_y=len(y),
        mean_x=float(x.mean()),
        mean_y=float(y.mean()),
        diff=float(x.mean() - y.mean()),
        diff_interval=Interval(float(ci.low), float(ci.high), "paired t" if paired else "Welch t"),
        p_value=perm.p_value,
        test=perm.method,
        effect_size=float(g),
        effect_interval=effect_interval(d, len(x), n_y),
        prob_improvement=float(pi),
        prob_interval=pi_interval,
        seeds_needed=seeds_needed(),
        p_low=low,
        p_high=high,
        exact=perm.exact,
        resamples=perm.resamples,
        equivalence_p=equivalence_p(d, len(x), n_y, equivalence_g),
        cohens_d=float(d),
        permutation=perm,
        **counts,
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


# --- a family of comparisons: Holm, the Monte Carlo error, the words ---------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): controls the family-wise error over all the comparisons of a
    report. NaNs stay NaN and are not counted. Each adjusted p is a non-decreasing function of every raw p (Holm is
    a closed test of Bonferroni tests), so Holm applied to the lower and to the upper Monte Carlo bounds of the raw
    p-values bounds the adjusted p: :func:`compare_family` calls a verdict *borderline* when those bounds straddle
    the level."""
    p = np.asarray(p_values, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), math.nan)
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(
    c: Comparison,
    adjusted_p: float,
    higher_is_better: bool | None = True,
    min_seeds: int = MIN_SEEDS,
    adjusted_range: tuple[float, float] | None = None,
    equivalence_p: float = math.nan,
    alpha: float = ALPHA,
) -> str:
    """The words for a comparison (module docstring): "too few seeds for a verdict" (below ``min_seeds`` in either
    group); "better" / "worse" when the Holm-adjusted p is below ``alpha`` over its whole Monte Carlo range
    ``adjusted_range`` (default: the point ``adjusted_p`` alone); "borderline" when that range straddles ``alpha``;
    "equivalent" when the Holm-adjusted TOST p ``equivalence_p`` is below ``alpha``; else "not significant".
    ``higher_is_better`` None: "higher" / "lower" (a metric without a good direction)."""
    if min(c.n_x, c.n_y) < min_seeds:
        return f"too few seeds for a verdict (n < {min_seeds})"
    low, high = adjusted_range if adjusted_range is not None else (adjusted_p, adjusted_p)
    if high < alpha:
        if higher_is_better is None:
            return "higher" if c.diff > 0 else "lower"
        return "better" if (c.diff > 0) == higher_is_better else "worse"
    if low < alpha:
        return BORDERLINE
    if equivalence_p < alpha:
        return EQUIVALENT
    return NOT_SIGNIFICANT


@dataclass
class Verdict:
    """One comparison of a family, decided: :func:`compare_family`'s answer."""

    comparison: Comparison
    word: str
    """The verdict (:func:`verdict`)."""
    p_holm: float
    """Holm over the family (NaN outside it: too few seeds)."""
    p_holm_low: float
    """Holm over the lower Monte Carlo bounds of the family's p-values: the adjusted p's lower bound."""
    p_holm_high: float
    level: float
    """The two-sided level this comparison's test was held to: ``ALPHA * p / p_holm`` (p below it exactly when
    p_holm is below ``ALPHA``); ``ALPHA`` outside the family."""
    interval: Interval
    """The difference's interval at confidence 1 - ``level`` (:meth:`PermutationTest.interval`): it excludes 0
    exactly when the verdict is better / worse (borderline: either)."""
    equivalence_holm: float
    """The TOST p (:func:`equivalence_p`) adjusted by Holm over the family's TOST p-values."""
    equivalence_interval: Interval
    """The standardised difference's interval at 1 - 2 x the TOST's level: inside +-``bound`` exactly when the verdict
    is equivalent."""
    detectable: float
    """The smallest ``|delta|`` these seeds detect with 80% power at Holm's first level, ``alpha`` over the family (the
    level at which any comparison of the family is sure to be judged; :func:`detectable_effect`). Not at ``level``,
    which follows the observed p."""
    family: int
    """The number of comparisons Holm adjusted over."""
    in_family: bool

    @property
    def effect_at_level(self) -> Interval:
        """``interval`` in the units of Hedges' g (times J / pooled sd): what a forest plot draws beside g, an
        interval that excludes 0 exactly when the verdict is better / worse."""
        c = self.comparison
        if not (np.isfinite(c.cohens_d) and c.diff != 0 and np.isfinite(c.effect_size)):
            return Interval(math.nan, math.nan, self.interval.method)
        per_unit = c.effect_size / c.diff
        ends = sorted((self.interval.low * per_unit, self.interval.high * per_unit))
        return Interval(ends[0], ends[1], f"{self.interval.method}, in pooled standard deviations")


def _undecided(low: np.ndarray, high: np.ndarray, alpha: float) -> float | None:
    """The threshold of the first step of Holm's procedure that the Monte Carlo bounds leave open, or None when every
    decision is settled. Step k (k = 1..m) compares the k-th smallest p with alpha / (m - k + 1): settled rejected when
    even the k-th smallest upper bound is below it, settled stopped when the k-th smallest lower bound is not; then
    the set of rejected hypotheses is the same for every p inside the bounds."""
    m = len(low)
    for k, (lo, hi) in enumerate(zip(np.sort(low), np.sort(high))):
        threshold = alpha / (m - k)
        if hi < threshold:
            continue
        return None if lo >= threshold else threshold
    return None


def _refine(tests: list[PermutationTest], alpha: float, confidence: float, max_resamples: int) -> None:
    """Draw more splits for the Monte Carlo p-values whose bounds straddle the open step of Holm's procedure
    (:func:`_undecided`), at least doubling their draws (or straight to the draws the gap needs), until every step is
    settled or ``max_resamples`` is reached."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    while True:
        bounds = np.array([t.p_bounds(confidence) for t in tests]).reshape(-1, 2)
        threshold = _undecided(bounds[:, 0], bounds[:, 1], alpha)
        if threshold is None:
            return
        todo = [t for t, (lo, hi) in zip(tests, bounds) if lo < threshold <= hi]
        todo = [t for t in todo if not t.exact and t.resamples < max_resamples]
        if not todo:
            return
        for t in todo:
            p, gap = t.p_value, abs(t.p_value - threshold)
            needed = 1.2 * z * z * p * (1 - p) / gap**2 if gap > 0 else math.inf
            more = max(t.resamples, min(needed, max_resamples) - t.resamples)
            t.draw(int(min(more, max_resamples - t.resamples)))


def compare_family(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    higher_is_better: bool | None | Sequence[bool | None] = True,
    alpha: float = ALPHA,
    equivalence_g: float = EQUIVALENCE_G,
    min_seeds: int = MIN_SEEDS,
    seed: int = 0,
    paired: bool = False,
    max_resamples: int = MAX_RESAMPLES,
    confidence: float = MC_CONFIDENCE,
    max_exact: int = MAX_EXACT,
) -> list[Verdict]:
    """Compare each ``(x, y)`` of ``pairs`` (:func:`compare`), adjust the family with Holm and say each verdict.

    The family is the comparisons with at least ``min_seeds`` seeds on both sides (the others are told "too few seeds"
    and adjusted among themselves, for information). Monte Carlo p-values are drawn further until each is clearly on
    one side of every Holm threshold alpha / k, up to ``max_resamples`` (:func:`_refine`); Holm over the lower and
    the upper Monte Carlo bounds (simultaneous at ``confidence`` over the family) bounds each adjusted p, and a
    verdict whose bounds straddle ``alpha`` is *borderline*. Every verdict else is what every resampling seed gives
    (with probability ``confidence``). The TOST p-values form a second family, Holm-adjusted at ``alpha`` too.
    ``seed``: the resampling seed (comparison i draws from ``(seed, i)``); ``max_exact``: as :class:`PermutationTest`'s
    (0 draws every p, as tests do to check the Monte Carlo machinery against an exact p)."""
    better = list(higher_is_better) if isinstance(higher_is_better, (list, tuple)) else [higher_is_better] * len(pairs)
    comps = [
        compare(x, y, seed=[seed, i], paired=paired, equivalence_g=equivalence_g, max_exact=max_exact)
        for i, (x, y) in enumerate(pairs)
    ]
    member = [min(c.n_x, c.n_y) >= min_seeds and np.isfinite(c.p_value) for c in comps]
    family = [i for i, ok in enumerate(member) if ok]
    others = [i for i, c in enumerate(comps) if not member[i] and np.isfinite(c.p_value)]
    per_p = 1 - (1 - confidence) / max(len(family), 1)  # simultaneous bounds over the family (Bonferroni)
    _refine([comps[i].permutation for i in family], alpha, per_p, max_resamples)
    adjusted = {}
    for group in (family, others):
        for i in group:  # the p-values the refinement drew further, and their bounds
            c, perm = comps[i], comps[i].permutation
            c.p_value, c.resamples, c.test = perm.p_value, perm.resamples, perm.method
            c.p_low, c.p_high = perm.p_bounds(per_p)
        point = holm([comps[i].p_value for i in group])
        low, high = holm([comps[i].p_low for i in group]), holm([comps[i].p_high for i in group])
        tost = holm([comps[i].equivalence_p for i in group])
        adjusted |= {i: (point[k], low[k], high[k], tost[k]) for k, i in enumerate(group)}
    needed = seeds_needed(POWER_G, alpha=alpha, comparisons=max(len(family), 1))
    out = []
    for i, c in enumerate(comps):
        p_holm, low, high, tost = adjusted.get(i, (math.nan,) * 4)
        inside = member[i]
        n_y = None if paired else c.n_y
        level = alpha * c.p_value / p_holm if inside and p_holm > 0 else alpha
        e_level = alpha * c.equivalence_p / tost if inside and tost > 0 else alpha
        nan = Interval(math.nan, math.nan, "")
        interval = c.permutation.interval(level) if c.permutation is not None else nan
        eq = effect_interval(c.cohens_d, c.n_x, n_y, 1 - 2 * e_level) if np.isfinite(c.cohens_d) else nan
        word = verdict(c, p_holm, better[i], min_seeds, (low, high), tost if inside else math.nan, alpha)
        first = alpha / max(len(family), 1) if inside else alpha
        detect = detectable_effect(c.n_x, n_y, first) if min(c.n_x, c.n_y) >= 2 else math.nan
        c.seeds_needed = needed
        out.append(Verdict(c, word, p_holm, low, high, level, interval, tost, eq, detect, len(family), inside))
    return out


def replication(original: str, again: str) -> str:
    """Did a verdict replicate on a second, disjoint set of seeds (its own Holm over the same family)? "yes": the same
    word (better, worse, higher, lower or equivalent: the same sign and significance); "contradicted": the opposite
    direction (better against worse, equivalent against either); "no": a claim the second set does not support (not
    significant, borderline, too few seeds); "no claim": the first set claimed nothing (not significant, borderline,
    too few seeds), whatever the second says."""
    claims = {"better": "worse", "worse": "better", "higher": "lower", "lower": "higher", EQUIVALENT: None}
    if original not in claims:
        return "no claim"
    if again == original:
        return "yes"
    opposite = {claims[original]} if claims[original] else {"better", "worse", "higher", "lower"}
    if original in ("better", "worse", "higher", "lower"):
        opposite.add(EQUIVALENT)
    return "contradicted" if again in opposite else "no"


# --- curves and tables the lessons print -------------------------------------------------------------------------


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


def _detectable(d: float) -> str:
    return f"{d:.2f}" if math.isfinite(d) else "none (permutation floor)"


def comparison_table(
    table: dict[str, dict[str, Sequence[float]]], baseline: str, quality: Sequence[str] = ()
) -> "pd.DataFrame":  # noqa: F821
    """Every arm of a study against its baseline, for each metric: ``table = {metric: {arm: per-seed scores}}``.

    One row per (metric, arm): the means, P(a seed of the arm beats a seed of the baseline), the permutation test's p
    and its Holm adjustment over *every* comparison of the table (:func:`compare_family`), the difference's interval
    at the level each verdict used, the verdict, and the smallest ``|g|`` these seeds detect at Holm's first level. For
    the metrics named in ``quality`` higher is better ("better" / "worse"); the others are only "higher" /
    "lower". The seeds per group 80% power needs against ``|g|`` ``POWER_G`` at Holm's first level are in
    ``attrs["seeds needed"]``."""
    import warnings

    import pandas as pd

    pairs = [(metric, arm) for metric, arms in table.items() for arm in arms if arm != baseline]
    with warnings.catch_warnings():  # scipy warns when every seed of a group scored the same (say 500): harmless
        warnings.simplefilter("ignore", RuntimeWarning)
        decided = compare_family(
            [(table[metric][arm], table[metric][baseline]) for metric, arm in pairs],
            higher_is_better=[True if metric in quality else None for metric, _ in pairs],
        )
    rows = []
    for (metric, arm), v in zip(pairs, decided):
        c, ci = v.comparison, v.interval
        rows.append(
            {
                "metric": metric,
                "arm": arm,
                "mean": float(f"{c.mean_x:.4g}"),
                f"baseline: {baseline}": float(f"{c.mean_y:.4g}"),
                "difference [CI at the verdict's level]": f"{c.diff:+.3g} [{ci.low:+.3g}, {ci.high:+.3g}]",
                "P(beats baseline)": round(c.prob_improvement, 2),
                "p (Holm)": float(f"{v.p_holm:.2g}"),
                "verdict": v.word,
                "detectable |g|": _detectable(v.detectable),
            }
        )
    out = pd.DataFrame(rows).set_index(["metric", "arm"])
    out.attrs["seeds needed"] = _whole_seeds(seeds_needed(comparisons=max(1, sum(v.in_family for v in decided))))
    return out
