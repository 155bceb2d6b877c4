"""The thorough versions of two checks tests/test_stats.py makes cheaply (not part of make test; a few minutes):

1. the coverage of the IQM's interval (:func:`sandbox.stats.iqm_interval`, Tukey-McLaughlin) at n = 5, 8 and 16 on
   five distributions, 20,000 samples each, beside the BCa bootstrap it replaced (1,000 samples each);
2. the power of the permutation test of :func:`sandbox.stats.compare` at the effect
   :func:`sandbox.stats.detectable_effect` says 16 seeds per group detect with 80% power at 0.05 / 30 (the t test's
   figure), on normal data.

    .venv/bin/python tools/stats_check.py [--samples 20000] [--power-samples 400]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import integrate
from scipy import stats as sps

from sandbox import stats


def population_iqm(dist) -> float:
    """The mean of the distribution between its quartiles: what the IQM of n seeds estimates."""
    q1, q3 = dist.ppf(0.25), dist.ppf(0.75)
    return integrate.quad(lambda x: x * dist.pdf(x), q1, q3)[0] / 0.5


class Mixture:
    """80% N(0, 1), 20% N(-6, 1): a few collapsed seeds, as RL returns often have."""

    def rvs(self, size, random_state):
        x = random_state.normal(0.0, 1.0, size)
        return np.where(random_state.random(size) < 0.2, x - 6.0, x)

    def truth(self) -> float:
        sample = self.rvs(4_000_000, np.random.default_rng(0))
        return float(stats.iqm(sample))


def coverage(samples: int) -> None:
    rng = np.random.default_rng(0)
    dists = {"normal": sps.norm(), "t(3)": sps.t(3), "lognormal(0.75)": sps.lognorm(0.75), "uniform": sps.uniform()}
    print(f"IQM interval coverage, nominal 0.95 ({samples:,} samples; BCa: 1,000)")
    print(f"{'distribution':18s} {'n':>3s} {'Tukey-McLaughlin':>17s} {'BCa bootstrap':>14s}")
    for name, dist in [*dists.items(), ("mixture (20% collapsed)", Mixture())]:
        truth = dist.truth() if isinstance(dist, Mixture) else population_iqm(dist)
        for n in (5, 8, 16):
            xs = dist.rvs(size=(samples, n), random_state=rng)
            tm = np.mean([lo <= truth <= hi for lo, hi, _ in map(stats.iqm_interval, xs)])
            bca = np.mean([lo <= truth <= hi for lo, hi, _ in (stats.bootstrap_interval(x) for x in xs[:1000])])
            print(f"{name:18s} {n:3d} {tm:17.3f} {bca:14.3f}")


def power(samples: int) -> None:
    level = 0.05 / 30
    d = stats.detectable_effect(16, 16, level)
    rng = np.random.default_rng(1)
    rejected = 0
    for _ in range(samples):
        x, y = rng.normal(d, 1.0, 16), rng.normal(0.0, 1.0, 16)
        test = stats.PermutationTest(x, y, n_resamples=20_000, seed=rng.integers(1 << 30))
        rejected += test.p_value < level
    share = rejected / samples
    half = 1.96 * np.sqrt(share * (1 - share) / samples)
    print(f"\npermutation test, 16 against 16 seeds at 0.05 / 30, true delta {d:.2f} (the t test's 80% power):")
    print(f"rejected {share:.3f} +- {half:.3f} of {samples} simulated studies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--power-samples", type=int, default=400)
    args = parser.parse_args()
    t0 = time.perf_counter()
    coverage(args.samples)
    power(args.power_samples)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
