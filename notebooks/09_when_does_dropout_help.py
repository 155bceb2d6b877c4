# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 09: When does dropout help?
#
# The demo (`make demo`) showed one side: on CartPole (the course's preset at 30k steps, p = 0.3 in the policy and the
# value network, 16 seeds per mode) every dropout mode ended significantly below dropout off. A learner could leave
# with "dropout hurts PPO". One task away the sign flips. This lesson reads a study that asks the question on five
# tasks at once (`sandbox bench breadth`), shows how to read an effect that changes sign, measures live what every
# task has in common (the noisy ratio of lesson 03), and tests four explanations of what decides the sign, each with
# arms of its own (`sandbox bench mechanisms`).
#
# **Learning goals.** After this lesson you can
# - read a forest plot of effect sizes (Hedges' g with its interval, one row per task, mode and rate) and say which
#   differences survive Holm's correction over every comparison of a study;
# - say why "dropout hurts PPO" and "dropout helps PPO" are both claims about *a task and a setting*, and scope a
#   sentence to what was measured;
# - show that the mechanism of lesson 03 (the noisy modes clip part of a batch before any step) is present on a task
#   where dropout helps as much as on one where it hurts, so it cannot decide the sign alone;
# - design a control arm that tests one explanation (a smaller step, noise in one network, a narrower network) and
#   read its verdict, including "none of these".
#
# **Assumes** lesson 03 (the four modes, `first_ratio_dev`, `first_clipfrac`) and lesson 04 (Hedges' g, permutation
# tests, Holm's correction, why five seeds are the least for a verdict).
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 9 s
# of wall time, 8 s of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 10 s (a check that the notebook works:
# what it trains is tiny, and its numbers mean nothing). The committed outputs are those of that full run.
#
# The lesson trains nothing, so full mode and `SANDBOX_FAST=1` do the same: it reads the committed studies in
# `docs/studies/` (`finals.csv` of each: one row per run) and computes every table and figure from them. Re-running
# the studies themselves: `sandbox bench breadth` (52 min measured) and `sandbox bench mechanisms` (7 min).
#
# **The code you are reading about.** The study in `sandbox/analysis/breadth.py` (`TASKS`: each task's settings and
# budget and why; `arms`, `mechanisms`, `learned`, `comparisons`, `forest`), run by `sandbox bench breadth` and
# `sandbox bench mechanisms` (`sandbox/bench/breadth.py`); the statistics in `sandbox/stats.py` (`compare`, `holm`,
# `verdict`).

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from sandbox.analysis import breadth
from sandbox.plots import use_style

FAST = os.environ.get("SANDBOX_FAST") == "1"
STUDIES = Path("../docs/studies")  # the committed studies: their finals.csv, report.md and machine
use_style()
pd.set_option("display.precision", 3)
T0 = time.perf_counter()
print(f"FAST={FAST}: every section reads the committed studies in {STUDIES} (no training: the same in both modes)")

# %% [markdown]
# ## 1. The study: five tasks, three modes, two rates, 16 seeds each
#
# `sandbox bench breadth` trains PPO on each task of `breadth.TASKS`, dropout off against the three modes at p = 0.1
# and p = 0.3 (in the policy *and* the value network, as in the demo), 16 seeds per group, each group's seeds as one
# population. Each task runs at a budget where PPO with dropout off learns, with settings that say why (tuned where
# the defaults do not learn in a laptop's budget). The outcome of a run is its final return, the mean of its last 20
# episodes. The committed results were produced by the command below; their machine and time are in `report.md`.

# %%
frame = pd.read_csv(STUDIES / "breadth" / "finals.csv")
display(Markdown((STUDIES / "breadth" / "report.md").read_text().split("\n\n")[1]))  # the run's line: machine, time
pd.DataFrame(
    [{"task": n, "settings": ", ".join(f"{k}={v}" for k, v in t.settings.items()) or "defaults", "steps": t.total_steps}
     for n, t in breadth.TASKS.items() if n in set(frame["task"])]  # fmt: skip
).set_index("task")

# %% [markdown]
# First the check without which nothing else means anything: did dropout off learn on every task? Its final return
# against its first update's (the nearly random initial policy), over the 16 seeds:

# %%
breadth.learned(frame)

# %% [markdown]
# On four of the five tasks dropout off learned: its final return is above its first update's with p = 0.0002
# (Acrobot from -498 to -232, CartPole from 17 to 361, Pendulum from -1224 to -899, Breakout from 0.3 to 3.4). On
# MountainCarContinuous it did not, significantly: from -44.7 to -34.9, p = 0.098. PPO without an exploration bonus
# learns there to stop paying for pushes that do not reach the flag, and not every seed does even that within 100k
# steps. Its rows below therefore say how much each mode's noise costs a policy that barely moved, not whether dropout
# helps or hurts *learning* that task; they are kept, and read that way.
#
# Then every group against dropout off on its own task, with Holm's correction over *all* the study's 30
# comparisons (the more comparisons, the stricter each one):

# %%
table = breadth.comparisons(frame)
table[["task", "label", "mean", "off", "g", "g low", "g high", "holm p", "verdict"]].set_index(["task", "label"])

# %% [markdown]
# ## 2. Reading an effect that changes sign
#
# One row per task, mode and rate: Hedges' g (the difference of means in units of the pooled standard deviation,
# corrected for small samples) with its 95% interval. Right of the dotted line the group ended above dropout off. A
# filled marker: the difference survives Holm's correction over every comparison of the study.

# %% mystnb={"image": {"alt": "Forest plot of the breadth study: one row per task, dropout mode and rate, each a dot at Hedges' g against dropout off with its 95% interval as a horizontal line, coloured by mode and filled where the difference is significant after Holm's correction; a dotted line at g = 0 (no effect), grey lines between the tasks, and the legend below."}}
fig = breadth.forest(table, f"Dropout against dropout off, {frame['seed'].nunique()} seeds per group")
plt.show()

# %% [markdown]
# How to read it, row by row and then as a whole:
#
# - **The sign changes with the task.** On Acrobot, `rollout-eval` and `naive` end *above* dropout off at both rates
#   (g 1.41 to 1.65, all four significant after Holm); on CartPole at p = 0.3 the same two modes end below it
#   (g -1.55 and -1.43); on Pendulum `rollout-eval` is better at p = 0.1 (g 1.31) and worse at p = 0.3 (g -1.35):
#   there the sign changes with the rate too.
# - **The exact-ratio mode was never better.** `consistent` is not significantly different from off on CartPole and
#   Acrobot, and worse on Pendulum, MountainCarContinuous and Breakout at p = 0.3 (and on the first two at p = 0.1).
# - **Acting with dropout costs most on the tasks with continuous actions and on the pixel game.** On Pendulum,
#   MountainCarContinuous and Breakout, the two modes that act with dropout (`naive`, `consistent`) end below off at
#   p = 0.3 with g from -2.0 to -4.6; `rollout-eval`, which acts without it, loses less or nothing there.
# - **Holm over 30 comparisons is strict.** CartPole's `naive` at p = 0.1 has an interval of g that excludes 0
#   ([-1.87, -0.38]) but a Holm-adjusted p of 0.0504: "no significant difference". An open marker whose interval
#   misses the dotted line is such a case; it is not a verdict.
#
# So the demo's one-sided picture was true of its setting, and "dropout hurts PPO" is not a statement this study
# supports in general: on one task of five two modes helped at both rates, and on another one mode helped at one
# rate.

# %% [markdown]
# ## 3. The mechanism does not follow the sign
#
# Lesson 03's mechanism: in `rollout-eval` and `naive` the ratio r of the first minibatch is not 1 before any step
# (`first_ratio_dev` > 0), so part of the batch is clipped before the policy has moved (`first_clipfrac`); in
# `consistent` the ratio is exact. If that mechanism decided the sign, the groups that gained and those that lost
# would differ in it. Every run of the study logged both numbers at every update; here they are averaged over each
# run's updates and over the seeds, next to each group's effect:

# %%
mechanism = frame[frame["mode"] != "off"].groupby(["task", "label"], sort=False)[["first_ratio_dev", "first_clipfrac"]]
mechanism = mechanism.mean().join(table.set_index(["task", "label"])[["g", "verdict"]])
mechanism

# %% mystnb={"image": {"alt": "Scatter of each group's effect on the return (Hedges' g against dropout off) against its first_clipfrac (the share of the first minibatch clipped before any step, the mean over the run): colour by dropout mode, marker shape by task, filled where better or worse after Holm's correction (grey where borderline, open otherwise), a dotted line at g = 0, and the legend below."}}
fig = breadth.clipping_scatter(mechanism)
plt.show()

# %% [markdown]
# Filled markers: significant after Holm. The sign does not follow the clipping:
#
# - `consistent` clips nothing (its ratio is exact, `first_ratio_dev` below 1e-7) and is worse than dropout off on
#   Pendulum, MountainCarContinuous and Breakout (g -1.8 to -4.6, the green markers at 0);
# - on MountainCarContinuous `naive` clips almost nothing (0.02% and 0.14% of the first minibatch at p = 0.1 and 0.3:
#   the policy hardly changes between updates) and is among the worst groups of the study (g -2.8 and -3.6);
# - within Acrobot and CartPole more clipping goes with the worse sign (Acrobot's gains with 1% to 6% clipped,
#   CartPole's losses with 21% to 32%), but across tasks it does not sort them: `rollout-eval` at p = 0.1 clipped 10%
#   on Pendulum and gained (g 1.31), at p = 0.3 it clipped 14% on Breakout and lost (g -1.08).
#
# The noisy ratio is real (lesson 03 measured it, and here it is at every update of every noisy run), but it is not
# what decides whether dropout ends above or below dropout off. Two other channels are open: the noise in the
# *actions* of the modes that act with dropout (`naive`, `consistent`), and what dropout does to the *critic*, whose
# value estimates set every advantage. Section 4 tests them.
#
# ## 4. What decides the sign? Four explanations, each with arms of its own
#
# `sandbox bench mechanisms` runs, on Acrobot and CartPole at p = 0.3, 16 seeds each, arms that each change one thing
# against dropout off (`breadth.mechanisms`):
#
# - **a smaller effective step.** The noisy modes clip part of every batch before any step, so each update moves the
#   policy less. If that is what helps on Acrobot, dropout off with *half the learning rate* or *half the clip range*
#   (smaller steps, no noise) should help too, and hurt on CartPole;
# - **exploration from acting with dropout.** `naive` and `consistent` act with dropout, `rollout-eval` does not: the
#   breadth study's own groups answer this one;
# - **noise in the critic against noise in the policy**: `naive` with dropout in the policy only, and in the critic
#   only (`--no-dropout-policy`);
# - **the capacity a thinned network loses** (what `consistent` trains is a network of about (1 - p) of its width at
#   every step): dropout off with hidden layers of 45 = 64 x (1 - 0.3) units.

# %%
mech_frame = pd.read_csv(STUDIES / "mechanisms" / "finals.csv")
mech = breadth.comparisons(mech_frame)
mech[["task", "label", "mean", "off", "g", "g low", "g high", "holm p", "verdict"]].set_index(["task", "label"])

# %% mystnb={"image": {"alt": "Forest plot of the mechanism arms on CartPole and Acrobot: one row per arm (dropout off with half the learning rate, half the clip range or hidden layers narrowed by 1 - p, and naive dropout in the policy only or the critic only), each a dot at Hedges' g against dropout off with its 95% interval, filled where significant after Holm's correction; a dotted line at g = 0."}}
fig = breadth.forest(mech, f"Mechanism arms against dropout off, {mech_frame['seed'].nunique()} seeds per group")
plt.show()

# %% [markdown]
# What the 16 seeds say, explanation by explanation (Holm over the study's 10 comparisons):
#
# - **A smaller step does not explain it.** On Acrobot, dropout off with half the learning rate (g 0.12) or half the
#   clip range (g 0.58) is not significantly different from dropout off, while the noisy modes gained g 1.4 to 1.65.
#   On CartPole the two smaller steps point in *opposite* directions: half the learning rate is worse (g -1.65), half
#   the clip range is *better* (g 1.24, 468 against 361), where the noisy modes were worse.
# - **Exploration from acting with dropout does not explain it.** On Acrobot the mode that never acts with dropout,
#   `rollout-eval`, gained as much as `naive` (section 1: g 1.65 and 1.42 against 1.55 and 1.41), and `consistent`,
#   which acts with dropout exactly as `naive` does, gained nothing.
# - **Noise in the critic does.** Naive dropout in the critic only reproduces the sign on both tasks: better on
#   Acrobot (-118 against -232, g 1.46) and worse on CartPole (215 against 361, g -1.51), each about as large as the
#   effect of dropout in both networks. Dropout in the policy only is not significantly different from dropout off on
#   either task (g -0.72 and -0.16).
# - **Lost capacity does not explain it**: the network narrowed to 45 units is not significantly different from
#   dropout off on either task (g -0.61 and -0.67), though both point down.
#
# So, on these two tasks, *what dropout does to the value network* decides the sign. A reading of why, which these
# arms do not test: in `rollout-eval` and `naive` the critic is fitted through fresh masks at every minibatch step
# (ordinary dropout regularisation of a regression), while in `consistent` each sample's critic mask is the one the
# rollout drew, replayed at every epoch. On Acrobot, where the value has to be learned from long episodes of -1
# rewards, the regularised critic helped; on CartPole at 30k steps, with the preset's short GAE horizon (lambda 0.8,
# gamma 0.98), it cost. A next experiment would vary the critic's dropout alone across more tasks.
#
# ## 5. Pixels and a convolutional policy: MinAtar
#
# The papers this course teaches from measured on Atari and MuJoCo. MinAtar (Young & Tian 2019) plays five Atari
# games on a 10 x 10 grid, built for CPUs; the sandbox trains it with the MinAtar paper's network (one 3 x 3
# convolution of 16 channels, 128 hidden units; dropout after both) in all four modes. `sandbox bench minatar` ran
# two games, dropout off against the three modes at p = 0.1 in both networks and D-PPO's sample dropout (dropout off,
# `--sample-dropout dppo`), 5 seeds each at 400k steps (the user guide's [MinAtar](../docs/guide/minatar.md) page has
# its settings, its time and the paper's curves). Its report, as the bench wrote it:

# %%
minatar = pd.read_csv(STUDIES / "minatar" / "report.csv")
minatar["arm"] = [("D-PPO" if "sample_dropout=dppo" in g else m) for g, m in zip(minatar.group, minatar.dropout_mode)]
minatar["game"] = minatar.task.str.removeprefix("PPO minatar:")
minatar[["game", "arm", "runs", "final_iqm", "ci_low", "ci_high", "first_ratio_dev", "first_clipfrac", "hedges_g",
         "p_holm", "verdict"]].set_index(["game", "arm"])  # fmt: skip

# %% [markdown]
# The learning curves (the line's colour is the dropout mode, its style the sample dropout: solid with D-PPO's, dashed
# without; D-PPO runs with dropout off, so it is the one solid black line, and dropout off alone the dashed black one)
# and the mechanism over training, as the bench drew them:
#
# ![MinAtar learning curves per arm, Breakout and Space Invaders](../docs/studies/minatar/learning_curves.png)
#
# ![first_ratio_dev and first_clipfrac per arm over training](../docs/studies/minatar/mechanism.png)
#
# What the 50 runs say (43.9 minutes for both games on the project's 2-core Intel Xeon, 2026-12-04):
#
# - **The mechanism carries over to pixels.** With the convolutional network, `naive` and `rollout-eval` start every
#   update with a noisy ratio (`first_ratio_dev` 0.077 and 0.053 on Breakout, 0.112 and 0.062 on Space Invaders) and
#   clip 7% to 17% of the first minibatch before any step; `consistent` (its convolution's masks replayed too), `off`
#   and D-PPO have an exact ratio (below 1e-7).
# - **No verdict is possible at 5 seeds here, and the report says so.** A permutation test of 5 seeds against 5 cannot
#   go below p = 0.0079, and Holm multiplies the smallest p by the 8 comparisons: 0.063 at best. Read the effects, not
#   the verdicts: on Breakout every arm is within noise of dropout off (g from -1.1 to 0.03). On Space Invaders D-PPO's
#   sample dropout ended at 21.7 against dropout off's 41.9, every one of its seeds below every seed of dropout off
#   (g -4.3 [-6.5, -2.0], raw p 0.008, the smallest the test can give), and `consistent` at 30.8 (g -1.7 [-3.1, -0.2]).
#   The sandbox's D-PPO rule is a reconstruction (lesson 07), not the paper's code.
# - **Against the published curve.** Dropout off reached an IQM of 6.2 on Breakout and 41.9 on Space Invaders at 400k
#   steps. The MinAtar paper's actor-critic with this network reads about 7 and about 30 at 500k frames on its curves
#   (read off the figure; mean of 30 runs, a different algorithm), and climbs to about 18 and 185 by 5M frames: this
#   study sees the first 8% of the paper's budget, where dropout's effect on the end of training cannot show.
#
# Ten seeds per arm would make verdicts possible (the smallest p becomes 1e-5) and, at the measured pace, take about
# 45 minutes per game, within the hour a game may take: `sandbox bench minatar --seeds 0 1 2 3 4 5 6 7 8 9`.
#
# ## 6. What to say, and what not to
#
# Stated as measured (16 seeds per group, Holm over every comparison, the settings of `breadth.TASKS`):
#
# - The effect of dropout on PPO's final return changed sign between tasks: better than dropout off on Acrobot
#   (`rollout-eval`, `naive`, both rates), worse on CartPole at p = 0.3 (the same two modes), mixed on Pendulum, worse
#   for the modes that act with dropout on MountainCarContinuous (where dropout off itself did not learn) and, at
#   p = 0.3, on Breakout.
# - The mechanism of lesson 03 was present on both sides of the sign (section 3), so on its own it does not decide
#   the sign.
# - On Acrobot and CartPole, dropout in the critic alone reproduced the sign in both directions; dropout in the policy
#   alone, half the learning rate, half the clip range and a narrower network did not.
#
# What this does *not* show: that dropout helps on "tasks like Acrobot" (one task), that the critic is the reason on
# the other three tasks (its arms ran on two), or anything about other budgets, network sizes or PPO settings. A
# sentence that claims more than the rows of a table is a hypothesis, and the way to test it is another arm.

# %%
print(f"lesson 09: {time.perf_counter() - T0:.0f} s of wall time")

# %% [markdown]
# ## Check yourself
#
# 1. On Acrobot, `naive` at p = 0.3 has Hedges' g 1.41 [0.63, 2.18] against dropout off; on CartPole, -1.43
#    [-2.20, -0.65]. A colleague averages the two and reports "no effect of naive dropout". What is wrong with that?
# 2. Why does the study correct for every comparison of all five tasks (Holm over 30), and not for each task's six
#    on their own?
# 3. On MountainCarContinuous every noisy group is compared with a dropout-off arm that did not learn significantly.
#    What can, and what can't, those rows tell you?
# 4. `consistent` has an exact ratio and no clipping before the first step. Why doesn't that make it the best mode on
#    Acrobot?
# 5. Half the clip range made dropout off *better* on CartPole. Why does that count against "the noisy modes hurt
#    CartPole because they take smaller steps"?
# 6. A paper reports that dropout improves PPO on one Atari game with 3 seeds. Using this lesson, list what you
#    would ask before believing it says anything about your task.
#
# <details><summary>Answers</summary>
#
# 1. An effect that changes sign is not a small effect: averaged over tasks it cancels, and the average describes
#    neither task. Report it per task (a forest plot), and say what the sign depends on, if you know.
# 2. The question was asked of all five tasks at once; a reader who picks the one task where the interval excludes 0
#    after looking at all of them has made 30 comparisons, not 6. Holm over 30 keeps the chance of *any* false
#    verdict in the study at 5%.
# 3. They say how much each mode's noise costs a policy that barely moved (its return went from -45 to -35, p 0.10),
#    not whether dropout helps or hurts *learning* the task. The study's own check says so, which is why it is there.
# 4. Because the ratio is not what decided the sign: the mechanism arms point to the critic. `consistent` replays the
#    rollout's critic masks, so its critic is not regularised the way `rollout-eval`'s and `naive`'s are (a reading
#    the arms support on two tasks, not a proof).
# 5. If smaller steps were what hurt, a smaller clip range (smaller steps, no noise) should hurt too. It helped (468
#    against 361), while half the learning rate hurt: "a smaller step" is not one thing, and neither explains the
#    noisy modes' loss.
# 6. How many seeds and which test (3 seeds cannot give a verdict); which settings and budget, and whether dropout off
#    was tuned; whether dropout was in the policy, the critic, or both, and in which mode (the ratio); whether the
#    claim was tested on other tasks. Here the sign depended on the task and on the critic's dropout.
#
# </details>
#
# ## Try it yourself
#
# 1. Run one task of the study yourself, with fewer seeds, and compare with the committed table:
#    `sandbox bench breadth --tasks Acrobot-v1 --seeds 0 1 2 3 4 5 --out runs/breadth-acrobot` (about ten minutes on
#    two cores). Which verdicts does it keep with 6 seeds?
# 2. Add a mechanism arm of your own: dropout off with `ent_coef` doubled on Acrobot (more exploration without any
#    dropout). A sweep spec with `[base] env = "Acrobot-v1"` and `[grid] ent_coef = [0.01, 0.02]`, sixteen seeds,
#    `sandbox sweep spec.toml --out runs/entropy`, then `sandbox report runs/entropy`.
# 3. The forest plot of section 2 uses Holm over every comparison of the study. Redo section 1's table with Holm over
#    one task's comparisons only (`sandbox.stats.holm` on its p-values): which verdicts change, and why is that the
#    wrong analysis if you looked at all five tasks before choosing one?
