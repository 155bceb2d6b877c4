"""The statistics behind every verdict: intervals that keep their coverage, tests, Holm, power."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from sandbox import stats


def test_t_interval_keeps_its_coverage_at_three_seeds_where_the_percentile_bootstrap_does_not():
    rng = np.random.default_rng(0)
    samples = rng.normal(0.0, 1.0, size=(600, 3))
    t_cover = np.mean([(lo <= 0 <= hi) for lo, hi, _ in map(stats.t_interval, samples)])
    boot = [stats.bootstrap_interval(s, np.mean, method="percentile", n_resamples=400) for s in samples[:300]]
    boot_cover = np.mean([(lo <= 0 <= hi) for lo, hi, _ in boot])
    assert 0.92 <= t_cover <= 0.98
    assert boot_cover < 0.85  # why the report no longer reads non-overlapping bootstrap intervals as a verdict


def test_permutation_test_of_three_against_three_cannot_go_below_one_tenth():
    c = stats.compare([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    assert c.p_value == pytest.approx(0.1)  # 2 of the 20 splits are as extreme: the exact test
    assert c.test.startswith("permutation") and c.diff == pytest.approx(9.0)
    assert stats.verdict(c, c.p_value) == "too few seeds for a verdict (n < 5)"


def test_compare_on_clearly_different_groups():
    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 1.0, 20), rng.normal(0.0, 1.0, 20)
    c = stats.compare(x, y)
    welch = sps.ttest_ind(x, y, equal_var=False).confidence_interval()
    assert (c.diff_interval.low, c.diff_interval.high) == pytest.approx((welch.low, welch.high))
    assert c.p_value < 0.05 and c.effect_interval.low < c.effect_size < c.effect_interval.high
    assert 0.5 < c.prob_improvement <= 1 and c.prob_interval.low <= c.prob_improvement <= c.prob_interval.high
    assert stats.verdict(c, c.p_value) == "better" and stats.verdict(c, 0.2) == "no significant difference"
    assert stats.verdict(c, c.p_value, higher_is_better=False) == "worse"


def test_probability_of_improvement_counts_ties_as_one_half_as_the_mann_whitney_statistic_does():
    assert stats.probability_of_improvement([5, 6, 7], [1, 2, 3]) == 1.0
    assert stats.probability_of_improvement([1, 2, 3], [5, 6, 7]) == 0.0
    assert stats.probability_of_improvement([1, 2, 3], [1, 2, 3]) == 0.5
    assert stats.probability_of_improvement([1, 1], [1, 2]) == 0.25  # two ties among four pairs, no win
    assert math.isnan(stats.probability_of_improvement([], [1.0])) and math.isnan(stats.mann_whitney_pvalue([1.0], []))
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 4, size=(50, 7)), rng.integers(0, 4, size=(50, 5))  # many ties
    batched = stats.probability_of_improvement(x, y)
    for xi, yi, pi in zip(x, y, batched):
        u = sps.mannwhitneyu(xi, yi, alternative="two-sided")
        assert stats.probability_of_improvement(xi, yi) == pi == pytest.approx(u.statistic / (7 * 5))
        assert stats.mann_whitney_pvalue([*xi, math.nan], [math.inf, *yi]) == u.pvalue  # non-finite values dropped


def test_hedges_g_by_hand():
    c = stats.compare([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert c.effect_size == pytest.approx(-0.8)  # pooled sd 1, d = -1, correction 1 - 3 / 15


@pytest.mark.parametrize("d, n", [(0.5, 64), (1.0, 17), (2.0, 6)])
def test_seeds_needed_matches_the_classic_power_tables(d, n):
    assert stats.seeds_needed(d) == n
    assert stats.seeds_needed(0.0) == math.inf


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.2, math.nan])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1])


def test_iqm_and_performance_profile():
    assert stats.iqm([0, 1, 2, 3, 100, 4, 5, 6]) == pytest.approx(3.5)
    assert stats.performance_profile([1, 2, 3, 4], [0, 2.5, 10]).tolist() == [1.0, 0.5, 0.0]


def test_equal_groups_and_tiny_groups_do_not_crash():
    c = stats.compare([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert c.diff == 0 and c.p_value == 1.0 and math.isinf(c.seeds_needed)
    c = stats.compare([1.0], [2.0, 3.0])
    assert math.isnan(c.p_value)


@pytest.mark.parametrize("n_x, n_y", [(3, 3), (5, 5), (4, 6), (12, 12)])
def test_smallest_p_value_is_what_compare_returns_for_perfectly_separated_groups(n_x, n_y):
    x, y = np.arange(n_x) + 100.0, np.arange(n_y, dtype=float)
    assert stats.compare(x, y).p_value == pytest.approx(stats.smallest_p_value(n_x, n_y))
    assert stats.smallest_p_value(3, 3) == pytest.approx(0.1) and stats.smallest_p_value(5, 5) == pytest.approx(2 / 252)


def test_t_band_is_the_t_interval_at_every_point():
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 1.0, size=(4, 6))
    mean, low, high = stats.t_band(y)
    for j in range(6):
        lo, hi, _ = stats.t_interval(y[:, j])
        assert (low[j], high[j]) == pytest.approx((lo, hi)) and mean[j] == pytest.approx(y[:, j].mean())
    one = stats.t_band(y[:1])
    assert np.array_equal(one[1], y[0]) and np.array_equal(one[2], y[0])


def test_comparison_table_holm_over_every_row_and_whole_seeds_needed():
    table = {"return": {"off": [1, 2, 3, 4, 5], "same": [1, 2, 3, 4, 5], "higher": [11, 12, 13, 14, 15]}}
    t = stats.comparison_table(table, baseline="off", quality=["return"])
    assert list(t.index) == [("return", "same"), ("return", "higher")]
    assert t.loc[("return", "higher"), "verdict"] == "better"
    assert t.loc[("return", "same"), "verdict"] == "no significant difference"
    assert t.loc[("return", "same"), "seeds needed"] == "more than 100000"  # no effect: no number of seeds finds it
    higher = stats.compare([11, 12, 13, 14, 15], [1, 2, 3, 4, 5])
    assert t.loc[("return", "higher"), "seeds needed"] == f"{higher.seeds_needed:.0f}"
    raw = [stats.compare([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]).p_value, higher.p_value]
    assert list(t["p (Holm)"]) == [float(f"{p:.2g}") for p in stats.holm(raw)]
