# %% [markdown]
# # Lesson 04: is it significant? Seeds, intervals and tests
#
# **Learning goals.** After this lesson you can
#
# 1. say why one seed misleads, and see it on 16 seeds of the same experiment;
# 2. run a sweep from Python (`sandbox.analysis.sweep.run_sweep`) and read the report it writes (`report.md`, `report.csv`,
#    figures);
# 3. summarise seeds with the interquartile mean (IQM) and give it an interval that keeps its coverage at small n
#    (BCa bootstrap, and Student's t for the mean), and measure how badly a percentile bootstrap of 3 seeds covers;
# 4. read a comparison: a permutation test, Holm's correction, the effect size, the probability of improvement, and
#    why "no significant difference" is not "no difference";
# 5. say how many seeds an effect of a given size needs (`sandbox.stats.seeds_needed`).
#
# **Assumes.** Lessons 00 (a run and its files) and 03 (the dropout modes, `first_ratio_dev`). No statistics course:
# every method is named and its function is in `sandbox/stats.py`, which this lesson calls.
#
# **Running time**, measured on an idle 2-core AMD EPYC VM (a busy 2-core laptop
# takes about twice as long; `make notebooks`, 2026-11-29): full mode 77 s of wall time
# (the sweep runs on both cores: 2 worker processes), 140 s of CPU time; with `SANDBOX_FAST=1`, what `make test`
# runs, 12 s (tiny runs that only check the notebook works: their numbers mean nothing). The committed outputs are
# those of a full run.

# %%
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, Markdown, display

from sandbox import stats
from sandbox.analysis.demo import PPO_SPEC, to_toml
from sandbox.plots import MODE_COLORS, use_style
from sandbox.analysis.report import load_runs, write_report
from sandbox.analysis.sweep import run_sweep

use_style()
FAST = os.environ.get("SANDBOX_FAST") == "1"
SEEDS = list(range(2)) if FAST else list(range(16))
STEPS = 3_000 if FAST else 30_000
OUT = Path("runs") / ("lesson04-fast" if FAST else "lesson04")  # git ignores runs/
print(f"FAST={FAST}: 4 dropout modes x {len(SEEDS)} seeds of {STEPS:,} steps")

# %% [markdown]
# ## 1. The experiment: the demo's PPO half
#
# `make demo` asks whether dropout noise changes PPO's outcome on CartPole. Its PPO half is this spec (the same
# dictionary `sandbox/analysis/demo.py` uses): the tuned CartPole preset for 30k steps, dropout p = 0.3 in the policy *and*
# the value network, the four dropout modes, 16 seeds each. A spec is a `[base]` table and a `[grid]` whose product is
# the set of runs; `run_sweep` runs them, two at a time, and trains the 16 seeds of each mode together as one
# *population* (one process, batched networks: several times more seeds per CPU-second; user guide, ["Populations"](../docs/guide/populations.md)).
# From a terminal: `sandbox sweep spec.toml --out runs/lesson04`.

# %%
spec = {"base": {**PPO_SPEC["base"], "total_steps": STEPS}, "grid": {**PPO_SPEC["grid"], "seed": SEEDS}}
shutil.rmtree(OUT, ignore_errors=True)  # a fresh sweep each time the lesson runs
OUT.mkdir(parents=True)
(OUT / "spec.toml").write_text(to_toml(spec))
print(to_toml(spec))
counts = run_sweep(OUT / "spec.toml", OUT, workers=2, quiet=True)
runs = load_runs(OUT)
finals = pd.DataFrame(
    [{"mode": r.config["dropout_mode"], "seed": r.config["seed"], "final": r.final} for r in runs]
).pivot(index="seed", columns="mode", values="final")[list(MODE_COLORS)]
print(counts)
finals.round(1)

# %% [markdown]
# Each cell is one run's *final return*: the mean return of its last 20 training episodes (CartPole's best is 500).
# Look down a column: the same code, the same settings, only the seed differs.
#
# ## 2. One seed misleads
#
# Suppose you had run one seed of each mode and compared. How often would "naive dropout is worse than dropout off"
# have come out the other way? Take every pair (one seed of off, one seed of naive) and count.

# %%
def share_reversed(mode: str) -> float:
    """The fraction of (off seed, mode seed) pairs in which the mode's one run beats dropout off's one run."""
    return float(np.mean(finals[mode].to_numpy()[:, None] > finals["off"].to_numpy()[None, :]))


spread = finals.std().round(1)
pd.DataFrame(
    {
        "mean final": finals.mean().round(1),
        "seed-to-seed std": spread,
        "single-seed comparisons that beat off": [float("nan")] + [share_reversed(m) for m in list(MODE_COLORS)[1:]],
    }
)

# %% [markdown]
# Dropout off ends at 365 on average and every dropout mode 127 to 165 lower, yet within each mode the
# seed-to-seed standard deviation (68 to 105) is about as large as that gap. Had you run one seed of each, the
# dropout mode would have beaten dropout off in 9% (rollout-eval), 14% (naive) or 19% (consistent) of the possible
# pairings: roughly one single-seed study in seven would have told the opposite story.
#
# ## 3. One number per group, and how sure it is
#
# The **IQM** (interquartile mean: the mean of the middle half of the seeds; Agarwal et al. 2021) sits between the
# mean, which one collapsed seed drags down, and the median, which ignores half the data. An interval says how sure
# we are: `stats.bootstrap_interval` (BCa: the bootstrap corrected for bias and skew) for the IQM, and
# `stats.t_interval` (Student's t) for the mean.

# %%
rows = []
for mode in MODE_COLORS:
    x = finals[mode].to_numpy()
    iqm_ci, t_ci = stats.bootstrap_interval(x), stats.t_interval(x)
    rows.append({"mode": mode, "mean": x.mean(), "median": np.median(x), "IQM": stats.iqm(x),
                 "IQM 95% (" + iqm_ci.method + ")": f"[{iqm_ci.low:.0f}, {iqm_ci.high:.0f}]",
                 "mean 95% (t)": f"[{t_ci.low:.0f}, {t_ci.high:.0f}]"})
pd.DataFrame(rows).round(1)

# %% [markdown]
# **Why not the percentile bootstrap at 3 seeds?** A 95% interval should contain the true value in 95% of
# experiments. Take dropout off's 16 final returns as if they *were* the world (their mean is then the true mean),
# draw many small experiments of n seeds from them, and count how often each kind of interval contains that mean.

# %%
rng = np.random.default_rng(0)
world = finals["off"].to_numpy()
truth = world.mean()
trials = 40 if FAST else 300
coverage = []
for n in (3, 5, 10):
    samples = rng.choice(world, size=(trials, n))
    t_cover = np.mean([lo <= truth <= hi for lo, hi, _ in map(stats.t_interval, samples)])
    boot = [stats.bootstrap_interval(s, np.mean, method="percentile", n_resamples=500) for s in samples]
    p_cover = np.mean([lo <= truth <= hi for lo, hi, _ in boot])
    coverage.append({"seeds": n, "t interval covers": t_cover, "percentile bootstrap covers": p_cover})
pd.DataFrame(coverage)

# %% [markdown]
# The t interval covers the true mean 86% of the time with 3 seeds, 93% with 5 and 95% with 10 (less than 95% at
# 3 seeds because these returns are far from normal: capped at 500, with a few poor seeds); the percentile bootstrap
# covers 70%, 82% and 92%. With 3 seeds, a "95%" percentile-bootstrap interval misses the truth almost one time in
# three. That is why the report uses BCa and shows the t interval next to it, and gives no verdict below 5 seeds.
#
# ## 4. Comparing two groups
#
# `stats.compare(x, y)` answers every question a comparison raises, with the method named:
#
# - **the test**: a two-sided permutation test of the difference of means. Shuffle the seeds between the two groups
#   many times; p is the share of shuffles whose difference is at least as large as the observed one. No normality
#   assumption, and exact when the shuffles can all be listed;
# - **the difference** of means with Welch's 95% interval;
# - **the effect size** Hedges' g (the difference in pooled standard deviations) with its interval;
# - **P(improvement)**: the probability that a random seed of x beats a random seed of y, with its interval;
# - **seeds needed**: how many seeds per group a test would need to detect the observed effect 80% of the time.

# %%
table = []
for mode in list(MODE_COLORS)[1:]:
    c = stats.compare(finals[mode], finals["off"])
    table.append({"mode vs off": mode, "diff": c.diff, "diff 95%": f"[{c.diff_interval.low:.0f}, "
                  f"{c.diff_interval.high:.0f}]", "p": float(f"{c.p_value:.2g}"), "g": c.effect_size,
                  "P(improvement)": c.prob_improvement, "P(imp) 95%": f"[{c.prob_interval.low:.2f}, "
                  f"{c.prob_interval.high:.2f}]", "seeds needed": c.seeds_needed, "_c": c})
comparisons = pd.DataFrame(table)
comparisons["p Holm"] = [float(f"{p:.2g}") for p in stats.holm([c.p_value for c in comparisons._c])]
comparisons["verdict"] = [stats.verdict(c, p) for c, p in zip(comparisons._c, comparisons["p Holm"])]
comparisons.drop(columns="_c").round({"diff": 1, "g": 2, "P(improvement)": 2})

# %% [markdown]
# **Holm's correction.** Three comparisons at 0.05 each would call at least one "significant" far more often than 5%
# of the time when nothing differs. Holm's method (`stats.holm`) multiplies the smallest p by 3, the next by 2, the
# last by 1 (keeping them in order), which keeps the chance of any false "significant" in the report below 5%.
#
# **Too few seeds.** A permutation test of 3 seeds against 3 has only 20 ways to split the 6 runs, so its p can never
# go below 0.1, whatever the data: `stats.smallest_p_value` computes this floor. That is why the report gives no
# verdict below 5 seeds per group. (From 10 seeds on, the splits are too many to list and `compare` draws 10,000 of
# them at random: the floor is then the resolution of those draws, about 2e-4.)

# %%
pd.DataFrame([{"seeds per group": n, "smallest possible p": stats.smallest_p_value(n, n)} for n in (3, 5, 10, 16)])

# %% [markdown]
# In this experiment (CartPole, the preset at 30k steps, p = 0.3 in both networks), with 16 seeds per mode, all
# three dropout modes end significantly below dropout off (Holm-adjusted p about 0.001):
# rollout-eval by 165 [99, 230] (Welch's 95% interval of the difference), naive by 135 [71, 200] and consistent by
# 127 [59, 194]. The effects are large (|g| 1.3 to 1.8), and P(improvement) is 0.09 to 0.19: a random seed of a
# dropout mode beats a random seed of dropout off less than one time in five. Consistent dropout, whose ratio is
# exact (lesson 03), is hurt about as much as the noisy modes here (the three intervals overlap): with p = 0.3 in
# both networks and this budget, the damage is not only the noisy ratio. That is a result about this task and
# setting, not about dropout in PPO: on other tasks the sign changes (on Acrobot-v1, rollout-eval and naive dropout
# ended significantly above dropout off; see lesson 09, [When does dropout help?](09_when_does_dropout_help.ipynb)).
#
# ## 5. How many seeds does an effect need?
#
# The effect size g decides it. `stats.seeds_needed(g)` solves the power equation of a two-sided t test at 0.05:
# the number of seeds per group that detects a true standardised difference g with probability 0.8.

# %% mystnb={"image": {"alt": "The seeds per group a t test needs for 80% power against the effect size |g|, on a log scale: from 176 seeds at g = 0.3 down to 4 at g = 3, with a dotted vertical line at each dropout mode's observed |g| against dropout off."}}
needed = pd.DataFrame([{"effect size g": g, "seeds per group": stats.seeds_needed(g)}
                       for g in (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0)])
fig, ax = plt.subplots(figsize=(5.5, 3.0))
ax.plot(needed["effect size g"], needed["seeds per group"], marker="o", color="#333333")
for mode, g in zip(comparisons["mode vs off"], comparisons.g):
    if np.isfinite(g) and abs(g) > 0.2:
        ax.axvline(abs(g), color=MODE_COLORS[mode], ls=":", label=f"{mode} vs off: |g| = {abs(g):.1f}")
ax.set(xlabel="effect size |g|", ylabel="seeds per group (80% power)", yscale="log")
ax.legend()
needed

# %% [markdown]
# The effects observed here (|g| 1.3 to 1.8) need 7 to 11 seeds per group for 80% power, which is why the demo now
# spends its budget on 16 seeds at one setting rather than 5 seeds at many. An effect of g = 0.5 would need 64 seeds
# per group; g = 0.3, 176.
#
# ## 6. The report, line by line
#
# `write_report` (what `sandbox report runs/lesson04` does) writes `report.md`, `report.csv` and the figures.
# `report.md` has a table per question; here are three of them.

# %%
table = write_report(OUT, quiet=True)
report = (OUT / "report.md").read_text()


def section(title: str) -> str:
    """The table under the heading ``## title`` of report.md."""
    start = report.index("| group", report.index(f"## {title}"))
    return report[start : report.index("\n\n", start)]


for title in ("Final performance", "Against the baseline", "Mechanism"):
    display(Markdown(f"**{title}**\n\n" + section(title)))

# %% [markdown]
# Reading them, left to right:
#
# - **Final performance**: per group (the settings that differ between groups: here the dropout mode), section 3's
#   IQM with its BCa interval and the mean with its t interval, the seed-to-seed standard deviation, how many seeds
#   reached 475 and after how many steps (seconds too, for runs trained on their own: a population member's clock is
#   the whole population's), and collapses (a run that reached 90% of the threshold, then fell below half of it).
# - **Against the baseline**: each group against dropout off (`--baseline dropout_mode=off`, the default) with
#   section 4's numbers: the difference with Welch's interval, Hedges' g, P(improvement), the permutation test's p,
#   Holm's p over every comparison of the report, the seeds needed, and the verdict.
# - **Mechanism**: lesson 03's measurements, averaged over updates and seeds: exactly 0 for off and consistent.
#
# `report.md` also names every method in sentences; `report.csv` has every column, one row per group, for your own
# plots. Two of its figures:

# %% mystnb={"image": {"alt": ["Final return (mean of the last 20 episodes) of every seed of the lesson's sweep of PPO on CartPole, one column per dropout mode: a dot per seed, and each mode's IQM with its 95% bootstrap interval.", "Performance profiles of the same sweep: for each final return on the x-axis, the fraction of a mode's runs that scored above it, one line per dropout mode."]}}
display(Image(filename=str(OUT / "final_per_seed.png")))
display(Image(filename=str(OUT / "performance_profile.png")))

# %% [markdown]
# The first shows every seed's final return, with each group's IQM and interval. The second is a **performance
# profile**: for each score on the x-axis, the fraction of a group's runs above it. A curve that lies above another
# everywhere dominates it; crossing curves say "better on some seeds, worse on others", which one number hides.
#
# ## Check yourself
#
# 1. Two modes have intervals that overlap a little. Can one still be significantly better? Can two non-overlapping
#    intervals fail to be significant?
# 2. Why does the report refuse a verdict at 3 seeds per group, even when every seed of one group beats every seed of
#    the other?
# 3. A comparison reads "no significant difference" with *seeds needed* 800. What does that tell you about the
#    effect?
# 4. Your study compares 10 settings with dropout off. What does Holm do to the bar each comparison must pass?
#
# <details><summary>Answers</summary>
#
# 1. Yes and yes. Overlap of two separate 95% intervals is a crude test: the interval of the *difference* (Welch,
#    section 4) is what decides, and it can exclude 0 while the two group intervals overlap. Conversely with very few
#    seeds, intervals can miss each other by luck while the permutation test, which knows how few shuffles there are,
#    cannot reach 0.05.
# 2. With 3 against 3 there are only 20 ways to split the six runs, so even the most extreme outcome has p = 2/20 =
#    0.1 (two-sided): the data cannot reach 0.05, whatever they are.
# 3. That the observed effect is tiny compared with the seed-to-seed spread (|g| about 0.1): to detect it reliably you
#    would need some 800 seeds per group. Not "no effect", but an effect this experiment cannot see, and probably
#    one too small to matter.
# 4. The smallest p is compared with 0.05 / 10 = 0.005, the next with 0.05 / 9, and so on: each comparison added to a
#    report makes the others harder to call significant. Design studies with few, planned comparisons and many seeds.
#
# </details>
