"""The statistics behind every verdict: intervals that keep their coverage, the permutation test (exact against
scipy's, its Monte Carlo error, its inverted interval), Holm with that error, the verdict words, effect sizes with
exact intervals, equivalence, power. About 6 s in all; the slowest: the IQM coverage simulation (about 1.5 s)."""

import math

import numpy as np
import pytest
from scipy import integrate
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


def test_iqm_interval_covers_at_five_and_sixteen_seeds_where_bca_does_not():
    """Normal data, whose IQM is its mean (0): Tukey-McLaughlin covers near 0.95 at n = 5 and 16 (tools/iqm_coverage.py
    measures more distributions with 20,000 samples each); the BCa bootstrap the report used covers about 0.89 at 5."""
    rng = np.random.default_rng(0)
    for n in (5, 16):
        samples = rng.normal(0.0, 1.0, size=(2000, n))
        cover = np.mean([lo <= 0 <= hi for lo, hi, _ in map(stats.iqm_interval, samples)])
        assert 0.925 <= cover <= 0.97, (n, cover)
    bca = [stats.bootstrap_interval(s, n_resamples=400) for s in rng.normal(0.0, 1.0, size=(250, 5))]
    assert np.mean([lo <= 0 <= hi for lo, hi, _ in bca]) < 0.92
    x = np.array([3.0, 1.0, 2.0, 100.0, 4.0])  # the IQM keeps 2, 3, 4
    low, high, method = stats.iqm_interval(x)
    assert low < stats.iqm(x) < high and stats.iqm(x) == pytest.approx(3.0) and method == "Tukey-McLaughlin t"
    assert math.isnan(stats.iqm_interval([1.0])[0]) and stats.iqm_interval([2.0] * 5)[:2] == (2.0, 2.0)


def test_permutation_test_of_three_against_three_cannot_go_below_one_tenth():
    c = stats.compare([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    assert c.p_value == pytest.approx(0.1) and c.exact  # 2 of the 20 splits are as extreme: the exact test
    assert c.test.startswith("permutation") and c.diff == pytest.approx(9.0)
    assert stats.verdict(c, c.p_value) == "too few seeds for a verdict (n < 5)"


def _scipy_p(x, y, paired=False):
    """scipy's exact permutation test of |difference of means| (every split enumerated), an independent reference."""
    exact = dict(vectorized=True, alternative="greater", n_resamples=np.inf)
    if paired:
        d = np.subtract(x, y)
        return sps.permutation_test(
            (d,), lambda d, axis: np.abs(d.mean(axis)), permutation_type="samples", **exact
        ).pvalue
    return sps.permutation_test((x, y), lambda a, b, axis: np.abs(a.mean(axis) - b.mean(axis)), **exact).pvalue


@pytest.mark.parametrize("n_x, n_y", [(5, 5), (4, 6), (7, 3)])
def test_exact_p_is_scipys_and_the_interval_inverts_the_test(n_x, n_y):
    """The exact p equals scipy.stats.permutation_test's; at the interval's ends scipy's p on the shifted data is at
    least the level just inside and below it just outside; 0 is inside exactly when p >= level."""
    rng = np.random.default_rng(n_x)
    x, y = rng.normal(1.0, 1.0, n_x), rng.normal(0.0, 1.0, n_y)
    test = stats.PermutationTest(x, y)
    assert test.exact and test.p_value == pytest.approx(_scipy_p(x, y), abs=1e-12)
    paired = stats.PermutationTest(x[:3], y[:3], paired=True)
    assert paired.p_value == pytest.approx(_scipy_p(x[:3], y[:3], paired=True), abs=1e-12)
    for level in (0.05, 0.2):
        low, high, method = test.interval(level)
        assert low < test.statistic < high and method == "permutation test inverted"
        for end, outward in ((high, 1), (low, -1)):
            inside, outside = end - outward * 1e-6, end + outward * 1e-6
            assert _scipy_p(x - inside, y) >= level > _scipy_p(x - outside, y)
    for level in np.linspace(0.01, 0.6, 40).tolist() + [test.p_value, test.p_value * (1 + 1e-9)]:
        low, high, _ = test.interval(level)
        assert (low <= 0 <= high) == (test.p_value >= level), level


def test_paired_test_and_its_interval():
    """MountainCar's shape: the same seeds' first and final returns, most rising a little. Exact sign flips (2^12),
    scipy's p; the paired interval inverts the same test."""
    rng = np.random.default_rng(4)
    before = rng.normal(-50, 8, 12)
    after = before + rng.normal(6, 6, 12)
    c = stats.compare(after, before, paired=True)
    assert c.paired and c.exact and c.resamples == 2**12
    assert c.p_value == pytest.approx(_scipy_p(after, before, paired=True), abs=1e-12)
    low, high, _ = c.permutation.interval(0.05)
    assert low < c.diff < high and (low > 0) == (c.p_value < 0.05)
    assert c.diff_interval.method == "paired t" and c.prob_improvement == pytest.approx(np.mean(after > before))


def test_signed_rank_test_is_scipys_wilcoxon_and_its_hodges_lehmann_interval_inverts_it():
    rng = np.random.default_rng(11)
    x, y = rng.normal(0.6, 1.0, 12), rng.normal(0.0, 1.0, 12)
    test = stats.SignedRankTest(x, y)
    assert test.exact and test.p_value == pytest.approx(sps.wilcoxon(x, y, method="exact").pvalue, abs=1e-12)
    walsh = ((x - y)[:, None] + (x - y)[None, :]) / 2
    assert test.estimate == pytest.approx(np.median(walsh[np.triu_indices(12)]))
    for level in np.linspace(0.002, 0.9, 60).tolist() + [test.p_value]:
        low, high, method = test.interval(level)
        assert (low <= 0 <= high) == (test.p_value >= level) and method == "Hodges-Lehmann"
        for end, outward in ((high, 1), (low, -1)):
            if np.isfinite(end):
                inside = sps.wilcoxon(x - (end - outward * 1e-9), y, method="exact").pvalue
                outside = sps.wilcoxon(x - (end + outward * 1e-9), y, method="exact").pvalue
                assert inside >= level > outside
    d = np.round(rng.normal(0.5, 1.0, 10), 1)  # ties: the midranks' sign flips, scipy's permutation p
    tied = stats.SignedRankTest(d, np.zeros(10))
    reference = sps.wilcoxon(d, method=sps.PermutationMethod(n_resamples=np.inf)).pvalue
    assert not tied.exact and tied.p_value == pytest.approx(reference, abs=1e-12)


def test_monte_carlo_p_is_within_its_bounds_of_the_exact_one():
    rng = np.random.default_rng(5)
    x, y = rng.normal(0.8, 1.0, 9), rng.normal(0.0, 1.0, 9)  # 48,620 splits: enumerable, and drawn when told
    exact = stats.PermutationTest(x, y).p_value
    for seed in range(3):
        drawn = stats.PermutationTest(x, y, max_exact=0, n_resamples=20_000, seed=seed)
        low, high = drawn.p_bounds(0.999)
        assert not drawn.exact and low <= exact <= high and drawn.resamples == 20_000
        drawn.draw(20_000)
        assert drawn.resamples == 40_000 and drawn.p_bounds(0.999)[1] - drawn.p_bounds(0.999)[0] < high - low
    assert "random splits" in drawn.method and "exact" in stats.PermutationTest(x, y).method


@pytest.mark.parametrize("ratio, word", [(1.0, "borderline"), (2.0, "better"), (0.5, "not significant")])
def test_a_verdict_within_the_monte_carlo_error_of_its_level_is_borderline_for_every_resampling_seed(ratio, word):
    """A p drawn (not enumerated) whose exact value is the level itself can only be called borderline; at twice the
    level or half of it, every resampling seed gives the same word."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(1.0, 1.0, 8), rng.normal(0.0, 1.0, 8)
    exact = stats.PermutationTest(x, y).p_value
    words = {
        stats.compare_family([(x, y)], alpha=exact * ratio, max_exact=0, max_resamples=80_000, seed=s)[0].word
        for s in range(3)
    }
    assert words == {word}, (exact, words)


def test_holm_bounds_and_the_open_step():
    rng = np.random.default_rng(7)
    for _ in range(50):
        p = rng.uniform(0, 0.02, 8)
        low, high = p * rng.uniform(0.8, 1.0, 8), p * rng.uniform(1.0, 1.2, 8)
        assert np.all(np.array(stats.holm(low)) <= np.array(stats.holm(p)) + 1e-15)
        assert np.all(np.array(stats.holm(p)) <= np.array(stats.holm(high)) + 1e-15)
    # three p-values, thresholds 0.05/3, 0.05/2, 0.05: the second straddles 0.025
    assert stats._undecided(np.array([0.001, 0.02, 0.3]), np.array([0.002, 0.03, 0.4]), 0.05) == pytest.approx(0.025)
    assert stats._undecided(np.array([0.001, 0.02, 0.3]), np.array([0.002, 0.024, 0.4]), 0.05) is None
    assert stats._undecided(np.array([0.02, 0.3]), np.array([0.024, 0.4]), 0.05) is None  # stops at step 1


def test_compare_on_clearly_different_groups():
    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 1.0, 20), rng.normal(0.0, 1.0, 20)
    c = stats.compare(x, y)
    welch = sps.ttest_ind(x, y, equal_var=False).confidence_interval()
    assert (c.diff_interval.low, c.diff_interval.high) == pytest.approx((welch.low, welch.high))
    assert c.p_value < 0.05 and c.effect_interval.low < c.effect_size < c.effect_interval.high
    assert c.p_low <= c.p_value <= c.p_high and not c.exact
    assert 0.5 < c.prob_improvement <= 1 and c.prob_interval.low <= c.prob_improvement <= c.prob_interval.high
    assert stats.verdict(c, c.p_value) == "better" and stats.verdict(c, 0.2) == "not significant"
    assert stats.verdict(c, c.p_value, higher_is_better=False) == "worse"
    assert stats.verdict(c, c.p_value, higher_is_better=None) == "higher"
    assert stats.verdict(c, 0.04, adjusted_range=(0.03, 0.06)) == "borderline"
    assert stats.verdict(c, 0.3, equivalence_p=0.01) == "equivalent"


def test_compare_family_words_levels_and_intervals_agree():
    """Every row: the interval at the row's level excludes 0 exactly when the verdict is better or worse, and the
    forest's interval (in units of g) too; the level is ALPHA * p / p_holm."""
    rng = np.random.default_rng(8)
    base = rng.normal(0, 1, 12)
    groups = [base + shift + rng.normal(0, 1, 12) for shift in (0.0, 0.6, 1.2, 3.0, -3.0)]
    decided = stats.compare_family([(g, base) for g in groups] + [([1.0, 2.0], base)])
    assert [v.family for v in decided] == [5] * 6 and not decided[-1].in_family
    assert decided[-1].word.startswith("too few seeds")
    for v in decided[:-1]:
        c = v.comparison
        assert v.level == pytest.approx(stats.ALPHA * c.p_value / v.p_holm)
        significant = v.word in ("better", "worse")
        assert (not v.interval.low <= 0 <= v.interval.high) == significant, v
        forest = v.effect_at_level
        assert (not forest.low <= 0 <= forest.high) == significant and forest.low <= c.effect_size <= forest.high
        assert v.p_holm_low <= v.p_holm <= v.p_holm_high
        assert v.detectable == pytest.approx(stats.detectable_effect(12, 12, 0.05 / 5))
        assert c.seeds_needed == stats.seeds_needed(stats.POWER_G, comparisons=5)
    assert decided[3].word == "better" and decided[4].word == "worse"


def test_equivalent_needs_the_tost_and_many_seeds():
    rng = np.random.default_rng(9)
    x, y = rng.normal(0.0, 1.0, 120), rng.normal(0.0, 1.0, 120)
    v = stats.compare_family([(x, y)])[0]
    assert v.word == "equivalent" and -0.5 < v.equivalence_interval.low < v.equivalence_interval.high < 0.5
    few = stats.compare_family([(x[:16], y[:16])])[0]  # 16 seeds: the same population, far too few to show it
    assert few.word == "not significant" and few.equivalence_holm > 0.05


def test_tost_agrees_with_the_exact_interval():
    """TOST p below a exactly when the 1 - 2a interval of delta lies inside the bounds."""
    for d, n in [(0.1, 40), (0.3, 60), (-0.2, 100), (0.05, 25), (0.45, 200)]:
        p = stats.equivalence_p(d, n, n, 0.5)
        for a in (0.01, 0.05, 0.1):
            low, high, _ = stats.effect_interval(d, n, n, 1 - 2 * a)
            assert (p < a) == (-0.5 < low and high < 0.5), (d, n, a, p, low, high)


def _nct_cdf_by_integration(t, df, nc):
    """P(T <= t) for T = (Z + nc) / sqrt(V / df), V ~ chi2(df): an integral over V (scipy.integrate.quad), without
    scipy.stats.nct."""
    f = lambda v: sps.norm.cdf(t * math.sqrt(v / df) - nc) * sps.chi2.pdf(v, df)  # noqa: E731
    return integrate.quad(f, 0, np.inf, limit=200)[0]


def test_hedges_g_exact_interval_on_the_minatar_case():
    """MinAtar Space Invaders, D-PPO against off, 5 seeds each: g -4.27 (d -4.73). The exact interval is [-7.29,
    -2.11] (the normal approximation said [-6.51, -2.03]); its ends put the observed t at the 2.5% tails of the
    noncentral t, checked by integrating the noncentral t's density independently of scipy.stats.nct."""
    d = -4.27496 / (1 - 3 / (4 * 8 - 1))
    low, high, method = stats.effect_interval(d, 5, 5)
    assert (low, high) == pytest.approx((-7.29, -2.11), abs=0.01) and method == "noncentral t"
    scale, t = math.sqrt(2.5), d * math.sqrt(2.5)
    assert _nct_cdf_by_integration(t, 8, low * scale) == pytest.approx(0.975, abs=1e-6)
    assert _nct_cdf_by_integration(t, 8, high * scale) == pytest.approx(0.025, abs=1e-6)


def test_hedges_g_by_hand():
    c = stats.compare([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert c.effect_size == pytest.approx(-0.8) and c.cohens_d == pytest.approx(-1.0)  # correction 1 - 3 / 15


@pytest.mark.parametrize("d, n", [(0.5, 64), (1.0, 17), (2.0, 6)])
def test_seeds_needed_matches_the_classic_power_tables(d, n):
    assert stats.seeds_needed(d) == n
    assert stats.seeds_needed(0.0) == math.inf


def test_seeds_needed_at_the_holm_level_and_above_the_permutation_floor():
    n = stats.seeds_needed(0.8, comparisons=30)
    assert stats._power(0.8, n, n, 0.05 / 30) >= 0.8 > stats._power(0.8, n - 1, n - 1, 0.05 / 30)
    # a huge effect: power comes at 3 seeds, but 2 / C(2n, n) < 0.05 / 30 needs 7 (6: 2 / 924 = 0.0022)
    assert stats.seeds_needed(10.0, comparisons=30) == 7
    assert stats.detectable_effect(5, 5, 0.05 / 8) == math.inf  # MinAtar's 5 seeds, 8 comparisons: the floor 0.0079
    # 16 seeds per group at Holm's first level over 30 comparisons: |g| 1.54 (the normal approximation says 1.41);
    # 80% of t tests on simulated normal data reject there
    d = stats.detectable_effect(16, 16, 0.05 / 30)
    assert d == pytest.approx(1.54, abs=0.01) and stats._power(d, 16, 16, 0.05 / 30) == pytest.approx(0.8)
    rng = np.random.default_rng(10)
    p = sps.ttest_ind(rng.normal(d, 1, (4000, 16)), rng.normal(0, 1, (4000, 16)), axis=1).pvalue
    assert np.mean(p < 0.05 / 30) == pytest.approx(0.8, abs=0.02)
    assert stats.detectable_effect(53, 53, 0.05 / 30) < 0.8 < stats.detectable_effect(52, 52, 0.05 / 30)
    assert stats.detectable_effect(16, None, 0.05) < stats.detectable_effect(16, 16, 0.05)  # pairs: one spread


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.2, math.nan])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1])


def test_iqm_and_performance_profile():
    assert stats.iqm([0, 1, 2, 3, 100, 4, 5, 6]) == pytest.approx(3.5)
    assert stats.performance_profile([1, 2, 3, 4], [0, 2.5, 10]).tolist() == [1.0, 0.5, 0.0]


def test_equal_groups_tiny_groups_and_non_finite_runs():
    c = stats.compare([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert c.diff == 0 and c.p_value == 1.0
    c = stats.compare([1.0], [2.0, 3.0])
    assert math.isnan(c.p_value)
    c = stats.compare([1.0, math.nan, 3.0, math.inf, 2.0], [2.0, 3.0, -math.inf, 4.0])
    assert (c.n_x, c.n_y, c.nonfinite_x, c.nonfinite_y) == (3, 3, 2, 1)
    c = stats.compare([1.0, math.nan, 3.0, 4.0], [2.0, 3.0, 5.0, math.nan], paired=True)  # a pair goes with either
    assert (c.n_x, c.nonfinite_x, c.nonfinite_y) == (2, 1, 1)


@pytest.mark.parametrize("n_x, n_y", [(3, 3), (5, 5), (4, 6), (12, 12)])
def test_smallest_p_value_is_what_compare_returns_for_perfectly_separated_groups(n_x, n_y):
    x, y = np.arange(n_x) + 100.0, np.arange(n_y, dtype=float)
    assert stats.compare(x, y).p_value == pytest.approx(stats.smallest_p_value(n_x, n_y))
    assert stats.smallest_p_value(3, 3) == pytest.approx(0.1) and stats.smallest_p_value(5, 5) == pytest.approx(2 / 252)
    assert stats.smallest_p_value(4, 6) == pytest.approx(1 / 210)  # unequal groups: no mirror split


def test_replication_words():
    assert stats.replication("better", "better") == "yes" and stats.replication("worse", "better") == "contradicted"
    assert stats.replication("worse", "not significant") == "no" and stats.replication("worse", "borderline") == "no"
    assert stats.replication("equivalent", "worse") == "contradicted" and stats.replication("better", "equivalent") == (
        "contradicted"
    )
    assert stats.replication("not significant", "better") == "no claim"
    assert stats.replication("borderline", "borderline") == "no claim"


def test_t_band_is_the_t_interval_at_every_point():
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 1.0, size=(4, 6))
    mean, low, high = stats.t_band(y)
    for j in range(6):
        lo, hi, _ = stats.t_interval(y[:, j])
        assert (low[j], high[j]) == pytest.approx((lo, hi)) and mean[j] == pytest.approx(y[:, j].mean())
    one = stats.t_band(y[:1])
    assert np.array_equal(one[1], y[0]) and np.array_equal(one[2], y[0])


def test_comparison_table_holm_over_every_row_and_the_detectable_effect():
    table = {"return": {"off": [1, 2, 3, 4, 5], "same": [1, 2, 3, 4, 5], "higher": [11, 12, 13, 14, 15]}}
    t = stats.comparison_table(table, baseline="off", quality=["return"])
    assert list(t.index) == [("return", "same"), ("return", "higher")]
    assert t.loc[("return", "higher"), "verdict"] == "better"
    assert t.loc[("return", "same"), "verdict"] == "not significant"
    assert t.loc[("return", "same"), "detectable |g|"] == f"{stats.detectable_effect(5, 5, 0.05 / 2):.2f}"
    raw = [stats.compare(table["return"][arm], table["return"]["off"]).p_value for arm in ("same", "higher")]
    assert list(t["p (Holm)"]) == [float(f"{p:.2g}") for p in stats.holm(raw)]
    assert t.attrs["seeds needed"] == f"{stats.seeds_needed(comparisons=2):.0f}"
    other = stats.comparison_table({"entropy": table["return"]}, baseline="off")
    assert other.loc[("entropy", "higher"), "verdict"] == "higher"
