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
# The demo (`make demo`) asks whether dropout changes PPO's outcome on one task, CartPole, and a learner could leave
# it with "dropout hurts PPO". This lesson reads a study that asks the question on five tasks at once (`sandbox bench
# breadth`), shows how to read an effect whose sign depends on the task, looks at what every noisy mode has in common
# (the noisy ratio of lesson 03) on both sides of the sign, and reads arms that each test one explanation of the sign
# (`sandbox bench mechanisms`), saying what they can and cannot show.
#
# **Learning goals.** After this lesson you can
# - read a forest plot of effect sizes (Hedges' g with its interval at the level of its verdict, one row per task,
#   mode and rate) and say which differences survive Holm's correction over every comparison of a study;
# - cite a comparison in the four words of lesson 04 (*better*, *worse*, *not significant* with what the seeds could
#   have detected, *equivalent* only when shown) and never read *not significant* as "no difference";
# - say why "dropout hurts PPO" and "dropout helps PPO" are both claims about *a task and a setting*, and scope a
#   sentence to what was measured;
# - show that the mechanism of lesson 03 (the noisy modes clip part of a batch before any step) is present on tasks
#   where dropout helps and on tasks where it hurts, so it cannot decide the sign alone;
# - design a control arm that tests one explanation (a smaller step, noise in one network, a narrower network), read
#   its verdict, and name the contrast a causal sentence would need.
#
# **Assumes** lesson 03 (the four modes, `first_ratio_dev`, `first_clipfrac`) and lesson 04 (Hedges' g, permutation
# tests, Holm's correction, the four words, why five seeds are the least for a verdict).
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 7 s
# of wall time, 8 s of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 7 s (a check that the notebook works:
# what it trains is tiny, and its numbers mean nothing). The committed outputs are those of that full run.
#
# The lesson trains nothing, so full mode and `SANDBOX_FAST=1` do the same: it reads the committed studies in
# `docs/studies/` (`finals.csv`: one row per run; `comparisons.csv`: one row per planned contrast, with its verdict)
# and computes every table and figure from them. **Reading the numbers.** Every sentence with a number or a verdict in
# it is printed by a cell from those files; a sentence in the prose that states a result is checked by a cell next to
# it (`sandbox.analysis.course.claim`), which stops the lesson, naming the sentence, when the committed tables
# contradict it. So when a study is re-run and its files replaced, the printed sentences follow, and a sentence that
# no longer holds stops the lesson instead of teaching something false.
#
# **The code you are reading about.** The study in `sandbox/analysis/breadth.py` (`TASKS`: each task's settings and
# budget and why; `arms`, `mechanisms`, `contrasts`, `learned`, `comparisons`, `forest`), run by `sandbox bench
# breadth` and `sandbox bench mechanisms` (`sandbox/bench/breadth.py`); the statistics in `sandbox/stats.py`
# (`compare_family`, `holm`, `verdict`, `detectable_effect`).

# %%
import json
import time
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import pandas as pd

from sandbox import stats
from sandbox.analysis import breadth, course
from sandbox.analysis.report import compare_finals
from sandbox.plots import use_style

course.trains_nothing()  # SANDBOX_FAST changes no number here, so every claim is checked in `make test` too
STUDIES = Path("../docs/studies")  # the committed studies: finals.csv, comparisons.csv, report.md
TELLS = ("better", "worse")  # the two verdicts that claim a difference
use_style()
pd.set_option("display.precision", 3)
T0 = time.perf_counter()


def row(table: pd.DataFrame, task: str, label: str, against: str = "off") -> pd.Series | None:
    """The contrast of the arm ``label`` against ``against`` on ``task`` (one row of a comparisons table), or None
    when the study has no such row."""
    hit = table[(table["task"] == task) & (table["label"] == label) & (table["against"] == against)]
    return hit.iloc[0] if len(hit) else None


def verdict_of(table: pd.DataFrame, task: str, label: str, against: str = "off") -> str:
    """The verdict of one contrast, or "not run" when the study has no such row (so a claim fails by naming it)."""
    r = row(table, task, label, against)
    return "not run" if r is None else r["verdict"]


def cite(r: pd.Series) -> str:
    """How this lesson cites a contrast: the verdict in lesson 04's words, Hedges' g with its interval *at the level
    the verdict used* (Holm's: it excludes 0 exactly on better and worse), Holm's p and the seeds; for *not
    significant*, also the smallest |g| these seeds detect 80% of the time, so it never reads as "no difference"."""
    text = (f"*{r['verdict']}* (g {r['g']:.2f}, [{r['g level low']:.2f}, {r['g level high']:.2f}] at its Holm level; "
            f"Holm p {r['holm p']:.2g}; {r['seeds']} seeds")  # fmt: skip
    if r["verdict"] == stats.NOT_SIGNIFICANT:
        text += f"; these seeds detect |g| {r['detectable g']:.2f}"
    return text + ")"


def view(table: pd.DataFrame) -> pd.DataFrame:
    """A comparisons table as the lesson shows it: one row per contrast, g with its interval at the verdict's level."""
    shown = table.assign(**{
        "arm": table["label"],
        "g [at its Holm level]": [f"{r['g']:.2f} [{r['g level low']:.2f}, {r['g level high']:.2f}]"
                                  for _, r in table.iterrows()],
        "detectable |g|": table["detectable g"],
    })  # fmt: skip
    columns = ["task", "arm", "against", "seeds", "mean", "against mean", "g [at its Holm level]", "holm p",
               "detectable |g|", "verdict"]  # fmt: skip
    return shown[columns].set_index(["task", "arm"])


# %% [markdown]
# ## 1. The study: five tasks, three modes, two rates
#
# `sandbox bench breadth` trains PPO on each task of `breadth.TASKS`, dropout off against the three modes at p = 0.1
# and p = 0.3 (in the policy *and* the value network, as in the demo), each group's seeds as one population. Each task
# runs at a budget where PPO with dropout off learns, with settings that say why (tuned where the defaults do not
# learn in a laptop's budget). The outcome of a run is its final return, the mean of its last 20 episodes. The
# committed results, their seeds, machine and time:

# %%
frame = pd.read_csv(STUDIES / "breadth" / "finals.csv")
table = pd.read_csv(STUDIES / "breadth" / "comparisons.csv")
run_line = (STUDIES / "breadth" / "report.md").read_text().split("\n\n")[1]  # the report's line: runs, machine, time
TASKS = [t for t in breadth.TASKS if t in set(frame["task"])]
SEEDS = int(frame.groupby(["task", "label"])["seed"].nunique().min())
FAMILY = int(table["family"].iloc[0])
course.say(
    f"""The committed study, as its report states it: {run_line}

Its {FAMILY} planned contrasts (each mode and rate against dropout off on its own task) are one Holm family, so the
strongest of them must pass {stats.ALPHA} / {FAMILY} = {stats.ALPHA / FAMILY:.2g}. At {SEEDS} seeds per group that level detects an
effect of |g| {table["detectable g"].min():.2f} 80% of the time; an effect of |g| {stats.POWER_G} would need
{breadth.seeds_per_group("breadth")} seeds per group (what `sandbox bench breadth` runs by default now)."""
)
same = frame.groupby(["task", "label"])["final"].agg(["size", "mean"])
arms_of = table.set_index(["task", "label"])
course.claim(
    "the comparisons table is the one of the committed runs: each arm's seeds and mean final return are finals.csv's",
    bool(((same.loc[arms_of.index, "size"] == arms_of["seeds"]) &
          ((same.loc[arms_of.index, "mean"] - arms_of["mean"]).abs() < 1e-6)).all()),  # fmt: skip
    f"{len(arms_of)} contrasts against {len(same)} groups in finals.csv",
    outcome=False,
)
pd.DataFrame(
    [{"task": n, "settings": ", ".join(f"{k}={v}" for k, v in t.settings.items()) or "defaults", "steps": t.total_steps}
     for n, t in breadth.TASKS.items() if n in TASKS]  # fmt: skip
).set_index("task")

# %% [markdown]
# First the check without which nothing else means anything: did dropout off learn on every task? Each seed's final
# return against its own first update's (the nearly random initial policy): a paired test (Wilcoxon's signed rank),
# Holm over the tasks.

# %%
learn = breadth.learned(frame)
learn

# %%
MCC = "MountainCarContinuous-v0"
mcc_off = frame[(frame["task"] == MCC) & (frame["group"] == "group00")]["final"]
course.say(
    "Dropout off, from its first update to its final return (means over the seeds):\n\n"
    + "\n".join(f"- {task}: {r['first update']:.1f} to {r['final']:.1f}, higher on "
                f"{round(r['seeds that rose'] * r['seeds'])} of {r['seeds']} seeds, Holm p {r['p Holm']:.2g}: "
                f"*{r['verdict']}*" for task, r in learn.iterrows())  # fmt: skip
    + f"""

On {MCC} every seed ended between {mcc_off.min():.1f} and {mcc_off.max():.1f}, where the task counts
{gym.spec(MCC).reward_threshold:g} as solved (gymnasium's `reward_threshold`)."""
)
course.claim(
    "dropout off learned on every task: its final return rose above its first update's",
    bool(learn["learned"].all()),
    ", ".join(f"{t}: {v}" for t, v in learn["verdict"].items()),
)
course.claim(
    "on MountainCarContinuous every seed of dropout off ended with a negative return",
    bool(mcc_off.max() < 0),
    f"highest {mcc_off.max():.1f}",
)

# %% [markdown]
# Dropout off learned on every task, but on MountainCarContinuous what it learned is small: every seed ended with a
# negative return. PPO without an exploration bonus learns there to stop paying for pushes that do not reach the flag
# (a local optimum), not to reach it. That task's rows below therefore say how much each mode's noise costs a policy
# that learned only that, not whether dropout helps or hurts *learning to reach the flag*; they are kept, and read
# that way.
#
# Then every group against dropout off on its own task, decided as one family (the table `sandbox bench breadth`
# wrote, `comparisons.csv`). *g [at its Holm level]*: Hedges' g and the interval at the level its verdict used, which
# excludes 0 exactly on the *better* and *worse* rows; *detectable |g|*: what these seeds detect 80% of the time at
# Holm's first level.

# %%
view(table)

# %% [markdown]
# ## 2. Reading an effect that changes sign
#
# One row per task, mode and rate: Hedges' g (the difference of means in units of the pooled standard deviation,
# corrected for small samples) with the interval at the level its verdict used. Right of the dotted line the group
# ended above dropout off. A filled marker: *better* or *worse* after Holm's correction over every comparison of the
# study.

# %% mystnb={"image": {"alt": "Forest plot of the breadth study: one row per task, dropout mode and rate, each a dot at Hedges' g against dropout off with the interval at the level of its verdict as a horizontal line, coloured by mode and filled where better or worse after Holm's correction; a dotted line at g = 0 (no effect), grey lines between the tasks, and the legend below."}}
fig = breadth.forest(table, f"Dropout against dropout off, {SEEDS} seeds per group")
plt.show()

# %%
def words(rows: pd.DataFrame) -> str:
    """A task's verdicts, word by word: '*better*: naive p 0.1 (g 1.55), ...; *not significant*: ...'."""
    parts = []
    for word in (*TELLS, stats.EQUIVALENT, stats.BORDERLINE, stats.NOT_SIGNIFICANT):
        hit = rows[rows["verdict"] == word]
        if len(hit):
            parts.append(f"*{word}*: " + ", ".join(f"{r['label']} (g {r['g']:.2f})" for _, r in hit.iterrows()))
    return "; ".join(parts)


flips = {label: (sorted(g[g["verdict"] == "better"]["task"]), sorted(g[g["verdict"] == "worse"]["task"]))
         for label, g in table.groupby("label", sort=False)}  # fmt: skip
flips = {label: tw for label, tw in flips.items() if tw[0] and tw[1]}
by_rate = {(task, mode): set(g["verdict"]) for (task, mode), g in table.groupby(["task", "mode"], sort=False)}
rate_flips = [f"{mode} on {task}" for (task, mode), seen in by_rate.items() if set(TELLS) <= seen]
consistent = table[table["mode"] == "consistent"]
cartpole = table[table["task"] == "CartPole-v1"]
course.say(
    f"Each task's verdicts against dropout off (Holm over all {FAMILY}):\n\n"
    + "\n".join(f"- **{task}**: {words(table[table['task'] == task])}" for task in TASKS)
    + "\n\nThe same mode and rate on both sides of dropout off: "
    + ("; ".join(f"{label} *better* on {', '.join(b)} and *worse* on {', '.join(w)}" for label, (b, w) in flips.items())
       or "none")  # fmt: skip
    + ". One mode better at one rate and worse at the other on the same task: "
    + (", ".join(rate_flips) or "none")
    + "."
)
course.claim(
    "the sign changes with the task: the same mode at the same rate is better than dropout off on one task and worse "
    "on another",
    bool(flips),
    "; ".join(f"{label}: better {b}, worse {w}" for label, (b, w) in flips.items()) or "no such mode and rate",
)
course.claim(
    "on one task the sign changes with the rate too",
    bool(rate_flips),
    ", ".join(rate_flips) or "none",
)
course.claim(
    "consistent, the mode whose ratio is exact, was better than dropout off on no task",
    not (consistent["verdict"] == "better").any(),
    ", ".join(f"{t}: {v}" for t, v in zip(consistent["task"] + " " + consistent["label"], consistent["verdict"])),
)
course.claim(
    "on CartPole, the demo's task at its settings and 30k steps, every mode at both rates was worse than dropout off",
    bool((cartpole["verdict"] == "worse").all()),
    ", ".join(f"{label}: {v}" for label, v in zip(cartpole["label"], cartpole["verdict"])),
)

# %% [markdown]
# How to read it:
#
# - **The sign changes with the task** (each at its own settings and budget). The same mode at the same rate ended
#   significantly above dropout off on one task and significantly below it on another, and on one task the sign changed
#   with the rate (checked above; which modes, the cell's output says). Averaged over tasks, such an effect would cancel
#   and describe none of them.
# - **The exact-ratio mode was never better.** `consistent`, whose ratio is exactly 1 before the first step (lesson
#   03), was better than dropout off on no task.
# - **On the demo's task every mode was worse**, at both rates, at the demo's settings and 30k steps: the demo's
#   picture is true of its task.

# %%
ACTS = ["Pendulum-v1", MCC, "minatar:breakout"]  # continuous actions, and the pixel game
acting = {t: [row(table, t, f"{m} p 0.3") for m in ("naive", "consistent", "rollout-eval")] for t in ACTS}
course.say(
    "At p = 0.3, the two modes that act with dropout (`naive`, `consistent`) and the one that acts without it "
    "(`rollout-eval`):\n\n"
    + "\n".join(f"- {t}: naive {cite(n)}; consistent {cite(c)}; rollout-eval {cite(r)}"
                for t, (n, c, r) in acting.items())  # fmt: skip
)
course.claim(
    "on Pendulum, MountainCarContinuous and Breakout, both modes that act with dropout are worse than dropout off at "
    "p = 0.3",
    all(n["verdict"] == c["verdict"] == "worse" for n, c, _ in acting.values()),
    "; ".join(f"{t}: {n['verdict']}, {c['verdict']}" for t, (n, c, _) in acting.items()),
)
course.claim(
    "there, rollout-eval's |g| is smaller than both of theirs",
    all(abs(r["g"]) < min(abs(n["g"]), abs(c["g"])) for n, c, r in acting.values()),
    "; ".join(f"{t}: {r['g']:.2f} against {n['g']:.2f}, {c['g']:.2f}" for t, (n, c, r) in acting.items()),
)

# %% [markdown]
# - **Acting with dropout, on the tasks with continuous actions and on the pixel game.** On Pendulum,
#   MountainCarContinuous and Breakout both modes that act with dropout are *worse* than dropout off at p = 0.3, and
#   `rollout-eval`, which acts without it, has a smaller |g| there. That is not "rollout-eval loses less": whether two
#   dropout groups differ is a comparison of its own, which the breadth study did not plan (its contrasts are each
#   group against dropout off), so its table cannot say it. The mechanism study plans `rollout-eval` against `naive`
#   (section 4).

# %%
unadjusted = table[~table["verdict"].isin(TELLS) & ((table["g low"] > 0) | (table["g high"] < 0))]
at_level = (table["g level low"] > 0) | (table["g level high"] < 0)
course.say(
    f"""Rows whose *unadjusted* 95% interval of g excludes 0, yet are not *better* or *worse* after Holm over
{FAMILY}: """
    + ("; ".join(f"{r['task']} {r['label']}, g {r['g']:.2f} [{r['g low']:.2f}, {r['g high']:.2f}] unadjusted, "
                 f"{cite(r)}" for _, r in unadjusted.iterrows()) or "none")  # fmt: skip
    + f""". Rows *equivalent* to dropout off (a TOST showing |g| below {stats.EQUIVALENCE_G}):
{(table["verdict"] == stats.EQUIVALENT).sum()}; *borderline* (the Monte Carlo bounds of Holm's p straddle 0.05):
{(table["verdict"] == stats.BORDERLINE).sum()}."""
)
course.claim(
    "the interval at the verdict's level excludes 0 exactly on the better and worse rows",
    bool((at_level == table["verdict"].isin(TELLS)).all()),
    f"{int(at_level.sum())} intervals exclude 0, {int(table['verdict'].isin(TELLS).sum())} rows better or worse",
    outcome=False,
)

# %% [markdown]
# - **Holm over the whole study is strict, and *not significant* is not "no difference".** A row whose unadjusted
#   interval excludes 0 (listed above, when there are any) is a difference one comparison alone would have called;
#   among all of the study's comparisons it is not a verdict. Nor is it evidence of no effect: the seeds detect only
#   effects of about the *detectable |g|* reliably, and showing that an arm is *equivalent* to dropout off takes an
#   equivalence test (TOST) that passes. In the forest plot such a row is an open marker whose bar crosses the dotted
#   line.
#
# So "dropout hurts PPO" is not a statement this study supports in general, and neither is "dropout helps PPO": the
# sign of a significant effect depended on the task, and on one task on the rate.
#
# ## 3. The mechanism alone does not decide the sign
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

# %%
groups = mechanism.reset_index()
groups["mode"] = groups["label"].str.split().str[0]
exact, noisy = groups[groups["mode"] == "consistent"], groups[groups["mode"] != "consistent"]
gained, lost = noisy[noisy["verdict"] == "better"], noisy[noisy["verdict"] == "worse"]
quiet_loss = lost[lost["first_clipfrac"] < 0.01]
pairs = [(b, w) for _, b in gained.iterrows() for _, w in lost.iterrows()]
top = gained.loc[gained["first_clipfrac"].idxmax()] if len(gained) else None
below_top = lost[lost["first_clipfrac"] < top["first_clipfrac"]] if top is not None else lost.iloc[:0]


def pct(x: float) -> str:
    return f"{100 * x:.2g}%"


course.say(
    f"""- `consistent` clips nothing (its `first_ratio_dev` is at most {exact["first_ratio_dev"].max():.0e}, its
  `first_clipfrac` {exact["first_clipfrac"].max():g}) and is *worse* than dropout off in
  {(exact["verdict"] == "worse").sum()} of its {len(exact)} groups: """
    + ", ".join(f"{r['task']} {r['label']}" for _, r in exact[exact["verdict"] == "worse"].iterrows())
    + ".\n- Noisy groups that clip under 1% of the first minibatch and are *worse*: "
    + (", ".join(f"{r['task']} {r['label']} ({pct(r['first_clipfrac'])}, g {r['g']:.2f})"
                 for _, r in quiet_loss.iterrows()) or "none")  # fmt: skip
    + ".\n- The better noisy group that clips the most: "
    + (f"{top['task']} {top['label']} clipped {pct(top['first_clipfrac'])} (g {top['g']:.2f}), more than "
       f"{len(below_top)} of the {len(lost)} worse noisy groups did" if top is not None else "none")  # fmt: skip
    + f""".\n- Of the {len(pairs)} pairs of a better and a worse noisy group, the worse one clipped more in
  {sum(w["first_clipfrac"] > b["first_clipfrac"] for b, w in pairs)}.
- The noisy ratio on both sides: `first_ratio_dev` {course.span(gained["first_ratio_dev"], "{:.3f}")} in the better
  groups, {course.span(lost["first_ratio_dev"], "{:.3f}")} in the worse noisy ones."""
)
course.claim(
    "consistent clips nothing: its ratio is exact",
    bool(exact["first_ratio_dev"].max() < 1e-6 and exact["first_clipfrac"].max() == 0),
    f"first_ratio_dev at most {exact['first_ratio_dev'].max():.1e}, first_clipfrac at most "
    f"{exact['first_clipfrac'].max():g}",
    outcome=False,
)
course.claim(
    "consistent is worse than dropout off on some task although it clips nothing",
    bool((exact["verdict"] == "worse").any()),
    f"{(exact['verdict'] == 'worse').sum()} worse groups",
)
course.claim(
    "on MountainCarContinuous a noisy group that clips under 1% of its first minibatch is worse than dropout off",
    bool((quiet_loss["task"] == MCC).any()),
    f"{len(quiet_loss)} such groups: {', '.join(quiet_loss['task'] + ' ' + quiet_loss['label'])}",
)
course.claim(
    "a noisy group that was better clipped more than some noisy group that was worse",
    bool(len(below_top)),
    f"{len(below_top)} worse groups clip less than the better group that clips the most",
)
course.claim(
    "in most pairs of a better and a worse noisy group, the worse one clipped more",
    sum(w["first_clipfrac"] > b["first_clipfrac"] for b, w in pairs) > len(pairs) / 2,
    f"{sum(w['first_clipfrac'] > b['first_clipfrac'] for b, w in pairs)} of {len(pairs)}",
)
course.claim(
    "the noisy ratio was there on both sides of the sign (first_ratio_dev above 0.01 in a better and in a worse group)",
    bool((gained["first_ratio_dev"] > 0.01).any() and (lost["first_ratio_dev"] > 0.01).any()),
    f"better: {course.span(gained['first_ratio_dev'], '{:.3f}')}; "
    f"worse: {course.span(lost['first_ratio_dev'], '{:.3f}')}",
)

# %% [markdown]
# Filled markers: *better* or *worse* after Holm. What the points say (checked above):
#
# - **A loss needs no clipping.** `consistent` clips nothing (its ratio is exact) and is still worse than dropout off
#   on some tasks, and on MountainCarContinuous a noisy group that clips under 1% of its first minibatch is worse
#   too.
# - **A gain does not need little clipping.** A noisy group that was better clipped more of its first minibatch than
#   some that were worse.
# - **Clipping may still be part of a loss.** In most pairs of a better and a worse noisy group, the worse one clipped
#   more (the count above): a correlation across tasks that differ in much else, not a test.
#
# The noisy ratio is real (lesson 03 measured it, and here it is at every update of every noisy run, on both sides of
# the sign), but it does not decide on its own whether dropout ends above or below dropout off: a loss came with no
# clipping, and a gain with clipping, though in most pairs the worse group clipped more. Two other channels are open:
# the noise in the *actions* of the modes that act with dropout (`naive`, `consistent`), and what dropout does to the
# *critic*, whose value estimates set every advantage. Section 4 tests them.
#
# ## 4. What decides the sign? Four explanations, each with arms of its own
#
# `sandbox bench mechanisms` runs, at p = 0.3, arms that each change one thing against dropout off
# (`breadth.mechanisms`):
#
# - **a smaller effective step.** The noisy modes clip part of the first minibatch before any step (almost none on
#   MountainCarContinuous), which may make each update move the policy less. If that is what helps on Acrobot,
#   dropout off with *half the learning rate* or *half the clip range* (smaller steps, no noise) should help too, and
#   hurt on CartPole;
# - **exploration from acting with dropout.** `naive` and `consistent` act with dropout, `rollout-eval` does not;
# - **noise in the critic against noise in the policy**: `naive` with dropout in the policy only, and in the critic
#   only (`--no-dropout-policy`);
# - **the capacity a thinned network loses** (what `consistent` trains is a network of about (1 - p) of its width at
#   every step): dropout off with hidden layers of 45 = 64 x (1 - 0.3) units.
#
# Each arm against dropout off says whether that one change moves the return. A sentence like "the critic's dropout
# *is* the effect" needs more: the arm against the effect it would explain (critic only against `naive` in both
# networks, half the learning rate against `naive`, ...), planned before the runs. The cell below says which of these
# the committed study has.

# %%
mech_frame = pd.read_csv(STUDIES / "mechanisms" / "finals.csv")
mech = pd.read_csv(STUDIES / "mechanisms" / "comparisons.csv")
MECH_TASKS = [t for t in breadth.TASKS if t in set(mech_frame["task"])]
not_run = breadth.missing(mech_frame, "mechanisms")
against_naive = mech[mech["against"] != "off"]
course.say(
    f"""The committed mechanism study: {len(mech_frame)} runs on {", ".join(MECH_TASKS)},
{int(mech_frame.groupby(["task", "label"])["seed"].nunique().min())} seeds per group, {len(mech)} contrasts decided
as one Holm family (these seeds detect |g| {mech["detectable g"].min():.2f} 80% of the time at its first level).
Contrasts against the effect to explain (`naive` p 0.3 in both networks) in it: """
    + (", ".join(f"{r['task']} {r['label']}" for _, r in against_naive.iterrows()) or "none")
    + f". Contrasts the code plans now (`breadth.MECHANISMS`) that the committed runs cannot give: {len(not_run)}"
    + (" (" + "; ".join(not_run) + ")" if not_run else "")
    + "."
)
view(mech)

# %% mystnb={"image": {"alt": "Forest plot of the mechanism arms on CartPole and Acrobot: one row per arm (dropout off with half the learning rate, half the clip range or hidden layers narrowed by 1 - p, and naive dropout in the policy only or the critic only), each a dot at Hedges' g against the arm it is compared with, with the interval at the level of its verdict, filled where better or worse after Holm's correction; a dotted line at g = 0."}}
fig = breadth.forest(mech, f"Mechanism arms, {mech_frame['seed'].nunique()} seeds per group")
plt.show()

# %%
NAIVE, CRITIC, POLICY = breadth.NAIVE, breadth.CRITIC, breadth.POLICY
STEPS = (breadth.HALF_LR, breadth.HALF_CLIP)


def effect(task: str) -> pd.Series:
    """What the arms explain: naive p 0.3 in both networks against dropout off (the mechanism study's row when it
    has one, else the breadth study's: the same task, settings and seeds)."""
    here = row(mech, task, NAIVE)
    return here if here is not None else row(table, task, NAIVE)


def arm_line(label: str, tasks=None) -> str:
    present = [(t, row(mech, t, label)) for t in tasks or MECH_TASKS]
    return "; ".join(f"{t} {cite(r)}" for t, r in present if r is not None) or "not in the committed study"


course.say(
    "What each arm did against dropout off, task by task:\n\n"
    + f"- the effect to explain, `{NAIVE}` in both networks: "
    + "; ".join(f"{t} {cite(effect(t))}" for t in MECH_TASKS)
    + "\n"
    + "".join(f"- `{label}`: {arm_line(label)}\n" for label in (*STEPS, CRITIC, POLICY, breadth.NARROW))
    + "- acting without dropout, `rollout-eval p 0.3` (breadth study): "
    + "; ".join(f"{t} {cite(row(table, t, 'rollout-eval p 0.3'))}" for t in MECH_TASKS)
    + "\n- the rollout's masks replayed (policy and critic), `consistent p 0.3` (breadth study): "
    + "; ".join(f"{t} {cite(row(table, t, 'consistent p 0.3'))}" for t in MECH_TASKS)
    + ("\n- against naive p 0.3: " + "; ".join(f"{r['task']} `{r['label']}` {cite(r)}"
                                               for _, r in against_naive.iterrows()) if len(against_naive) else "")
)
critic_rows = [(t, row(mech, t, CRITIC), effect(t)) for t in MECH_TASKS if row(mech, t, CRITIC) is not None]
critic_vs_naive = {t: verdict_of(mech, t, CRITIC, NAIVE) for t, _, _ in critic_rows}
alike = [t for t, c, e in critic_rows if c["verdict"] == e["verdict"] and critic_vs_naive[t] == stats.NOT_SIGNIFICANT]
above = [t for t, _, _ in critic_rows if critic_vs_naive[t] == "better"]
course.claim(
    "on CartPole, Acrobot and MountainCarContinuous dropout in the critic alone got naive's verdict against dropout "
    "off and was not significant against naive in both networks",
    set(alike) == {"CartPole-v1", "Acrobot-v1", MCC},
    "; ".join(f"{t}: critic only {c['verdict']} (naive {e['verdict']}), against naive {critic_vs_naive[t]}"
              for t, c, e in critic_rows),  # fmt: skip
)
course.claim(
    "on Pendulum and Breakout dropout in the critic alone ended better than naive in both networks",
    set(above) == {"Pendulum-v1", "minatar:breakout"},
    f"better than naive on {above}",
)
policy_acro = (verdict_of(mech, "Acrobot-v1", POLICY), verdict_of(mech, "Acrobot-v1", POLICY, NAIVE))
course.claim(
    "on Acrobot dropout in the policy alone was worse than dropout off and worse than naive in both networks, while "
    "in the critic alone it was better than dropout off",
    policy_acro == ("worse", "worse") and verdict_of(mech, "Acrobot-v1", CRITIC) == "better",
    f"policy only {policy_acro}, critic only {verdict_of(mech, 'Acrobot-v1', CRITIC)}",
)
half_lr, half_clip = (verdict_of(mech, "CartPole-v1", s) for s in STEPS)
half_lr_naive = verdict_of(mech, "CartPole-v1", breadth.HALF_LR, NAIVE)
course.claim(
    "on CartPole half the learning rate was worse than dropout off, as naive was, and not significant against naive; "
    "half the clip range was better than dropout off",
    half_lr == effect("CartPole-v1")["verdict"] == "worse" and half_lr_naive == stats.NOT_SIGNIFICANT
    and half_clip == "better",  # fmt: skip
    f"half lr {half_lr} (against naive {half_lr_naive}), half clip {half_clip}, "
    f"naive {effect('CartPole-v1')['verdict']}",
)
acrobot_steps = {s: verdict_of(mech, "Acrobot-v1", s, NAIVE) for s in STEPS}
acrobot_clip = verdict_of(mech, "Acrobot-v1", breadth.HALF_CLIP)
course.claim(
    "on Acrobot, where naive gained, both smaller steps without dropout ended below naive, and half the clip range "
    "was better than dropout off",
    effect("Acrobot-v1")["verdict"] == "better" and set(acrobot_steps.values()) == {"worse"}
    and acrobot_clip == "better",  # fmt: skip
    ", ".join(f"{s} against naive: {v}" for s, v in acrobot_steps.items()) + f"; half clip against off {acrobot_clip}",
)
narrow_rows = [(t, row(mech, t, breadth.NARROW)) for t in MECH_TASKS if row(mech, t, breadth.NARROW) is not None]
course.claim(
    "the narrower network without dropout was worse than dropout off on both tasks it ran on",
    len(narrow_rows) == 2 and all(r["verdict"] == "worse" for _, r in narrow_rows),
    "; ".join(f"{t}: {r['verdict']}, g {r['g']:.2f}" for t, r in narrow_rows),
)
acts_without = (verdict_of(table, "Acrobot-v1", "rollout-eval p 0.3"),
                verdict_of(mech, "Acrobot-v1", "rollout-eval p 0.3", NAIVE))  # fmt: skip
course.claim(
    "on Acrobot rollout-eval, which never acts with dropout, was better than dropout off and better than naive",
    acts_without == ("better", "better"),
    f"rollout-eval against off {acts_without[0]}, against naive {acts_without[1]}",
)
replayed = {t: verdict_of(table, t, "consistent p 0.3") for t in MECH_TASKS}
course.claim(
    "consistent, which puts dropout in the critic too, did not get naive's verdict on Acrobot: it was worse where "
    "naive was better, and worse than naive",
    replayed["Acrobot-v1"] == "worse" and effect("Acrobot-v1")["verdict"] == "better"
    and verdict_of(mech, "Acrobot-v1", "consistent p 0.3", NAIVE) == "worse",  # fmt: skip
    "; ".join(f"{t}: consistent {v}, naive {effect(t)['verdict']}" for t, v in replayed.items()),
)

# %% [markdown]
# What the arms say, explanation by explanation (each sentence checked above; the numbers are in the cell's output):
#
# - **Dropout in the critic alone got `naive`'s verdict, and could not be told from `naive`, on three tasks of five.**
#   On CartPole, Acrobot and MountainCarContinuous it got `naive`'s verdict against dropout off and was *not
#   significant* against `naive` itself, which is not "the same" (no row is *equivalent*: read the intervals). On
#   Pendulum and Breakout it ended *better* than `naive`: there, adding dropout to the policy as well cost return.
# - **On Acrobot the gain needs the critic's dropout.** Dropout in the policy alone was *worse* than dropout off and
#   than `naive`; in the critic alone it was *better* than dropout off.
# - **A smaller step is not one thing.** On CartPole half the learning rate was *worse* than dropout off, as the noisy
#   modes were, and *not significant* against `naive`: a candidate for CartPole's loss, not shown to be it. Half the
#   clip range was *better* (on seeds 53-105, *not significant*: `docs/studies/mechanisms/replication.csv`). On Acrobot,
#   where the noisy modes gained, both smaller steps ended *below* `naive`, yet half the clip range was itself *better*
#   than dropout off: a smaller step of these sizes may explain part of the gain there, not all of it.
# - **Acting with dropout is not needed for the gain on Acrobot**: `rollout-eval`, which never acts with dropout, was
#   *better* than dropout off there, and *better* than `naive`.
# - **Lost capacity costs too.** The narrower network without dropout was *worse* than dropout off on both tasks it ran
#   on (on Acrobot, *not significant* on seeds 53-105); it does not tell the sign apart (dropout off's narrower network
#   lost on Acrobot, where `naive` gained).
#
# So dropout in the critic alone moved the return in the direction dropout in both networks did on three tasks, and on
# Acrobot the gain needs it. It does not follow that the critic *decides* the sign: on Pendulum and Breakout the critic
# alone ended above `naive`, and `consistent` also puts dropout in the critic, yet on Acrobot it was *worse* than
# dropout off, and than `naive`, where `naive` was *better*. A reading of the difference, which these arms do not test
# directly: in `rollout-eval` and `naive` the critic is fitted through fresh masks at every minibatch step (ordinary
# dropout regularisation of a regression), while in `consistent` each sample's critic mask is the one the rollout
# drew, replayed at every epoch.
#
# ## 5. Pixels and a convolutional policy: MinAtar
#
# The papers this course teaches from measured on Atari and MuJoCo. MinAtar (Young & Tian 2019) plays five Atari
# games on a 10 x 10 grid, built for CPUs; the sandbox trains it with the MinAtar paper's network (one 3 x 3
# convolution of 16 channels, 128 hidden units; dropout after both) in all four modes. `sandbox bench minatar` ran
# two games, dropout off against the three modes in both networks and D-PPO's sample dropout (dropout off,
# `--sample-dropout dppo`), 10 seeds per arm, at the settings the user guide's [MinAtar](../docs/guide/minatar.md)
# page gives. Its report uses lesson 04's statistics: each arm against dropout off on its game by an exact
# permutation test, Holm over the study's comparisons, the difference's interval at the level its row was tested at,
# and the smallest |g| the seeds detect. The study commits every run's final score (`finals.csv`), from which the
# verdicts are recomputed below.

# %%
minatar = pd.read_csv(STUDIES / "minatar" / "report.csv")
minatar_finals = pd.read_csv(STUDIES / "minatar" / "finals.csv")
bench = json.loads((STUDIES / "minatar" / "bench.json").read_text())
minatar["arm"] = [("D-PPO" if "sample_dropout=dppo" in g else m) for g, m in zip(minatar.group, minatar.dropout_mode)]
minatar["game"] = minatar.task.str.removeprefix("PPO minatar:")
minatar["final IQM [95% CI]"] = [f"{r.final_iqm:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]" for r in minatar.itertuples()]
minatar["difference [at its level]"] = [
    "baseline" if pd.isna(r.p_value) else f"{r.diff:.2f} [{r.diff_level_low:.2f}, {r.diff_level_high:.2f}]"
    for r in minatar.itertuples()
]  # fmt: skip
minatar["g [95% CI]"] = [
    "" if pd.isna(r.p_value) else f"{r.hedges_g:.2f} [{r.g_ci_low:.2f}, {r.g_ci_high:.2f}]" for r in minatar.itertuples()
]  # fmt: skip
minatar["p Holm"] = [f"{p:.2g}" if pd.notna(p) else "" for p in minatar["p_holm"]]
minatar["detectable |g|"] = [f"{g:.2f}" if pd.notna(g) else "" for g in minatar["detectable_g"]]
minatar[["game", "arm", "runs", "final IQM [95% CI]", "first_ratio_dev", "first_clipfrac", "difference [at its level]",
         "g [95% CI]", "p Holm", "detectable |g|", "verdict"]].fillna({"verdict": ""}).set_index(["game", "arm"])  # fmt: skip

# %% [markdown]
# The learning curves (the line's colour is the dropout mode, its style the sample dropout: solid with D-PPO's, dashed
# without; D-PPO runs with dropout off, so it is the one solid black line, and dropout off alone the dashed black one),
# every seed's final score, and the mechanism over training, as the bench drew them:
#
# ![MinAtar learning curves per arm, Breakout and Space Invaders](../docs/studies/minatar/learning_curves.png)
#
# ![Every seed's final score per arm, Breakout and Space Invaders](../docs/studies/minatar/final_per_seed.png)
#
# ![first_ratio_dev and first_clipfrac per arm over training](../docs/studies/minatar/mechanism.png)
#
# A verdict of 10 seeds is one measurement. Below, each arm's g on each half of the seeds alone (0-4 and 5-9), beside
# the verdict of all ten: how far an effect moves between two small seed sets of the same study.

# %%
compared = minatar[minatar["p_value"].notna()].set_index(["game", "arm"])
recomputed = compare_finals(minatar_finals, seed=1).set_index("group")
same_verdicts = bool((recomputed.loc[compared["group"], "verdict"].to_numpy() == compared["verdict"].to_numpy()).all())
detect = float(compared["detectable_g"].max())
halves = {"seeds 0-4": range(0, 5), "seeds 5-9": range(5, 10)}


def half_g(group: str, baseline: str, seeds: range) -> float:
    """Hedges' g of ``group`` against ``baseline`` on ``seeds`` alone (from finals.csv)."""
    pick = minatar_finals[minatar_finals["seed"].isin(seeds)]
    x, y = (pick[pick["group"] == g]["final"].to_numpy() for g in (group, baseline))
    return stats.compare(x, y).effect_size


split = compared.assign(**{name: [half_g(r.group, r.baseline, s) for r in compared.itertuples()]
                           for name, s in halves.items()})  # fmt: skip
split = split.rename(columns={"hedges_g": "g, all ten"})[["seeds 0-4", "seeds 5-9", "g, all ten", "verdict"]]
split.round(2)

# %%
worse = compared[compared["verdict"] == "worse"]
quiet = compared[compared["verdict"] == stats.NOT_SIGNIFICANT]
noisy_arms = minatar[minatar["arm"].isin(["naive", "rollout-eval"])]
exact_arms = minatar[minatar["arm"].isin(["off", "consistent", "D-PPO"])]
dppo, reval = compared.loc[("space_invaders", "D-PPO")], compared.loc[("space_invaders", "rollout-eval")]
dppo_halves, reval_halves = split.loc[("space_invaders", "D-PPO")], split.loc[("space_invaders", "rollout-eval")]
told = table[table["verdict"].isin(TELLS)]  # the breadth study's better and worse rows
smaller = int((told["g"].abs() < detect).sum())
course.say(
    f"""The study: {bench["runs"]} runs, {len(bench["seeds"])} seeds per arm, dropout p = {bench["dropout"]:g},
{bench["steps"]:,} steps each, in {bench["wall_s"] / 60:.1f} minutes on {bench["machine"]} ({bench["workers"]}
workers). Its {len(compared)} comparisons form one Holm family; at Holm's first level, 0.05 / {len(compared)}, these
seeds detect |g| {detect:.2f} 80% of the time, and the exact test's smallest p is
{stats.smallest_p_value(10, 10):.1g}.

- The noisy ratio with a convolutional network: `first_ratio_dev` """
    + ", ".join(f"{r.arm} {r.first_ratio_dev:.3f} on {r.game}" for r in noisy_arms.itertuples())
    + f"; first_clipfrac {course.span(noisy_arms['first_clipfrac'], '{:.0%}')}. Off, consistent and D-PPO: "
    f"`first_ratio_dev` at most {exact_arms['first_ratio_dev'].max():.0e}.\n"
    + "- *worse*: "
    + "; ".join(f"{game} {arm} (g {r.hedges_g:.2f} [{r.g_ci_low:.2f}, {r.g_ci_high:.2f}], difference "
                f"{r['diff']:.1f} [{r.diff_level_low:.1f}, {r.diff_level_high:.1f}] at its level, Holm p {r.p_holm:.2g}, "
                f"P(improvement) {r.p_improvement:.2f})" for (game, arm), r in worse.iterrows())  # fmt: skip
    + ".\n- *not significant*: "
    + "; ".join(f"{game} {arm} (g {r.hedges_g:.2f}, p {r.p_value:.2g}, Holm p {r.p_holm:.2g})"
                for (game, arm), r in quiet.iterrows())  # fmt: skip
    + f"; these seeds miss an effect of |g| {detect:.2f} one time in five, and smaller ones more often. "
    f"{smaller} of the breadth study's {len(told)} better or worse verdicts (section 1) had a smaller |g|.\n"
    + "- Recomputed from `finals.csv` with another resampling seed: "
    + ("the same verdict on every row." if same_verdicts else "**other verdicts**.")
)
course.claim(
    "the mechanism carries over to pixels: naive and rollout-eval start every update with a noisy ratio and clip part "
    "of the first minibatch, off, consistent and D-PPO have an exact ratio",
    bool(noisy_arms["first_ratio_dev"].min() > 0.01 and noisy_arms["first_clipfrac"].min() > 0
         and exact_arms["first_ratio_dev"].max() < 1e-6),  # fmt: skip
    f"noisy at least {noisy_arms['first_ratio_dev'].min():.3f}, "
    f"exact at most {exact_arms['first_ratio_dev'].max():.0e}",
)
course.claim(
    "the verdicts recomputed from finals.csv with another resampling seed are the report's",
    same_verdicts,
    f"{list(recomputed.loc[compared['group'], 'verdict'])}",
)
course.claim(
    "on Space Invaders D-PPO's sample dropout was worse than dropout off: every D-PPO seed ended below every "
    "dropout-off seed, and each half of the seeds alone gave g below -2",
    bool(dppo["verdict"] == "worse" and dppo["p_improvement"] == 0
         and dppo_halves[list(halves)].max() < -2),  # fmt: skip
    f"{dppo['verdict']}, P(improvement) {dppo['p_improvement']:.2f}, halves "
    + ", ".join(f"{dppo_halves[h]:.2f}" for h in halves),
)
course.claim(
    "rollout-eval on Space Invaders was worse, with a g smaller than these seeds detect 80% of the time, and on seeds "
    "5-9 alone less than half its size on seeds 0-4",
    bool(reval["verdict"] == "worse" and abs(reval["hedges_g"]) < reval["detectable_g"]
         and abs(reval_halves["seeds 5-9"]) < abs(reval_halves["seeds 0-4"]) / 2),  # fmt: skip
    f"{reval['verdict']}, g {reval['hedges_g']:.2f} (detectable {reval['detectable_g']:.2f}), halves "
    + ", ".join(f"{reval_halves[h]:.2f}" for h in halves),
)
course.claim(
    "most of the breadth study's verdicts had a smaller |g| than ten seeds detect 80% of the time",
    smaller > len(told) / 2,
    f"{smaller} of {len(told)} below |g| {detect:.2f}",
)
course.claim(
    "every other row is not significant: every arm on Breakout, naive and consistent on Space Invaders",
    set(worse.index) == {("space_invaders", "D-PPO"), ("space_invaders", "rollout-eval")}
    and len(quiet) == len(compared) - 2,
    f"worse: {sorted(worse.index)}; not significant: {sorted(quiet.index)}",
)

# %% [markdown]
# What the MinAtar runs say, and what they cannot:
#
# - **The mechanism carries over to pixels.** With the convolutional network, `naive` and `rollout-eval` start every
#   update with a noisy ratio and clip part of the first minibatch before any step; `consistent` (its convolution's
#   masks replayed too), `off` and D-PPO have an exact ratio.
# - **On Space Invaders, D-PPO's sample dropout was *worse* than dropout off**, the study's clearest result: every
#   D-PPO seed ended below every dropout-off seed, and each half of the seeds alone gave a g below -2. It is a result
#   about the sandbox's reconstruction of D-PPO's rule (lesson 07, not the paper's code), on one game, at 400,000
#   steps, early in training: not a test of the D-PPO paper's Atari results (other games, budget, statistic and code).
# - **`rollout-eval` on Space Invaders was *worse* too, and is the study's most fragile verdict.** Its g is smaller
#   than the effect these seeds detect 80% of the time, and it came mostly from the first five seeds: on seeds 5-9
#   alone it was less than half its size on seeds 0-4. The test is exact, so no resampling seed changes it; whether
#   it replicates is a question for new seeds (`sandbox bench minatar --replicate`, seeds 10-19, as long again), which
#   this study did not run.
# - **Everything else is *not significant***: every arm on Breakout, `naive` and `consistent` on Space Invaders. Ten
#   seeds detect about |g| 1.8 80% of the time at the level of the study's first test, and smaller effects less
#   often; most of the breadth study's verdicts (section 1, at 53 seeds) had a smaller |g|. These rows say the study
#   could not tell the arms apart, not that dropout does nothing on these games.
# - **No comparison with the MinAtar paper's curves** is made: another algorithm, another statistic, and this study
#   sees only the start of the paper's budget, where dropout's effect on the end of training may not show.
#
# ## 6. What to say, and what not to

# %%
replication = STUDIES / "breadth" / "replication.csv"
rep = pd.read_csv(replication) if replication.exists() else None
course.say(
    f"Stated as measured ({SEEDS} seeds per group, Holm over the study's {FAMILY} contrasts, the settings of "
    "`breadth.TASKS`), the breadth study's *better* and *worse* verdicts per task:\n\n"
    + "\n".join(f"- {task}: *better*: {', '.join(g[g['verdict'] == 'better']['label']) or 'none'}; *worse*: "
                f"{', '.join(g[g['verdict'] == 'worse']['label']) or 'none'}"
                for task, g in table.groupby("task", sort=False))  # fmt: skip
    + "\n\nOn "
    + " and ".join(t for t, _, _ in critic_rows)
    + ", dropout in the critic alone: "
    + "; ".join(f"{t} *{c['verdict']}* (both networks: *{e['verdict']}*)" for t, c, e in critic_rows)
    + ".\n\n"
    + (f"Replication on a second set of seeds: of {(rep['replicated'] != 'no claim').sum()} claims, "
       f"{(rep['replicated'] == 'yes').sum()} replicated, {(rep['replicated'] == 'no').sum()} did not, "
       f"{(rep['replicated'] == 'contradicted').sum()} were contradicted (`replication.csv`). Not replicated: "
       + (", ".join(f"{r['task']} {r['label']} (*{r['verdict first']}*, g {r['g first']:.2f}, then "
                    f"*{r['verdict again']}*, g {r['g again']:.2f})"
                    for _, r in rep[rep["replicated"].isin(["no", "contradicted"])].iterrows()) or "none")
       + "."
       if rep is not None else
       "The committed study has no replication on a second set of seeds (`sandbox bench breadth --replicate`): "
       "each verdict above is of one seed set.")  # fmt: skip
)

# %% [markdown]
# The sentences this lesson stands behind (each checked in the sections above):
#
# - The effect of dropout on PPO's final return changed sign between tasks: the same mode at the same rate was better
#   than dropout off on one task and worse on another, and on one task the sign changed with the rate.
# - The mechanism of lesson 03 was present on both sides of the sign (section 3), and a loss needed no clipping, so on
#   its own it does not decide the sign.
# - On CartPole, Acrobot and MountainCarContinuous, dropout in the critic alone got the verdict of dropout in both
#   networks and could not be told from it; on Pendulum and Breakout it ended above it. On Acrobot the gain needed the
#   critic's dropout (in the policy alone: *worse*), and the two smaller steps went opposite ways on CartPole.
#
# What this does *not* show: that dropout helps on "tasks like Acrobot" (one task), that the critic *decides* the
# sign (`consistent` has dropout in the critic too, and on Pendulum and Breakout the critic alone did better than
# `naive`), that a row *not significant* against `naive` means "the same" (no row is *equivalent*), that dropout has
# no effect wherever a row reads *not significant*, or anything about
# other budgets, network sizes or PPO settings. A sentence that claims more than the rows of a table is a hypothesis,
# and the way to test it is a planned contrast.

# %%
print(f"lesson 09: {time.perf_counter() - T0:.0f} s of wall time")

# %% [markdown]
# ## Check yourself
#
# The facts the questions use, checked against the committed tables:

# %%
acro_naive, cart_naive = row(table, "Acrobot-v1", NAIVE), row(table, "CartPole-v1", NAIVE)
course.say(f"`{NAIVE}`: Acrobot {cite(acro_naive)}; CartPole {cite(cart_naive)}.")
course.claim(
    "naive at p = 0.3 is better than dropout off on Acrobot and worse on CartPole",
    acro_naive["verdict"] == "better" and cart_naive["verdict"] == "worse",
    f"Acrobot {acro_naive['verdict']}, CartPole {cart_naive['verdict']}",
)
course.claim(
    "every task of the study has six contrasts (three modes at two rates), all in one Holm family",
    bool((table.groupby("task").size() == 6).all() and (table["family"] == len(table)).all()),
    f"{table.groupby('task').size().to_dict()}, family {FAMILY}",
    outcome=False,
)
course.claim(
    "3 seeds against 3 cannot reach p 0.05 with a permutation test",
    stats.smallest_p_value(3, 3) >= 0.05,
    f"smallest p {stats.smallest_p_value(3, 3):.2g}",
    outcome=False,
)

# %% [markdown]
# 1. On Acrobot, `naive` at p = 0.3 is *better* than dropout off; on CartPole, *worse* (checked above). A colleague
#    averages the two tasks' g and reports that naive dropout does nothing on average. What is wrong with that?
# 2. Why does the study correct over every comparison of all its tasks (section 1 gives the number), and not over
#    each task's six on their own?
# 3. On MountainCarContinuous dropout off rose above its first update's return, yet every seed ended with a negative
#    return. What can, and what can't, that task's rows tell you?
# 4. `consistent` has an exact ratio and no clipping before the first step. Why doesn't that make it the best mode on
#    Acrobot? And why isn't "dropout in the critic" the whole answer either?
# 5. On CartPole half the clip range made dropout off *better* and half the learning rate *worse* (section 4). What
#    does that say about "the noisy modes hurt CartPole because they take smaller steps"?
# 6. A row reads *not significant*. A colleague writes "no difference". What would you ask them to write instead?
# 7. A paper reports that dropout improves PPO on one Atari game with 3 seeds. Using this lesson, list what you would
#    ask before believing it says anything about your task.
#
# <details><summary>Answers</summary>
#
# 1. An effect that changes sign is not a small effect: averaged over tasks it cancels, and the average describes
#    neither task. Report it per task (a forest plot), and say what the sign depends on, if you know.
# 2. The question was asked of all five tasks at once; a reader who picks the one task where the interval excludes 0
#    after looking at all of them has made every comparison, not six. Holm over all of them keeps the chance of *any*
#    false *better* or *worse* in the study at 5%.
# 3. Dropout off learned something there, but only a local optimum: stop paying for pushes that do not reach the
#    flag. The rows say how much each mode's noise costs a policy that learned only that. They say nothing about
#    whether dropout helps or hurts learning to reach the flag, which dropout off did not learn in this budget. The
#    study's own check (dropout off learned, and how much) is what tells you to read them that way.
# 4. Because the ratio does not decide the sign on its own (section 3: a loss needed no clipping, and a gain came with
#    clipping). Nor does dropout in the critic settle it: `consistent` has dropout in the critic too and was *worse* on
#    Acrobot, where `naive` was *better*. One reading, which these arms do not test: `consistent` replays the rollout's
#    critic masks at every epoch, so its critic is not regularised the way `rollout-eval`'s and `naive`'s are by fresh
#    masks. The planned contrast `consistent` against `naive` was *worse* on Acrobot: the two modes differ there, which
#    that reading predicts but does not prove.
# 5. "A smaller step" is not one thing. If smaller steps were what hurt, a smaller clip range should hurt too; it
#    helped. Half the learning rate hurt, as the noisy modes did, so it stays a candidate. Its contrast against
#    `naive` was *not significant*: the data cannot tell them apart, which is not "the same" (that needs an
#    equivalence test that passes), and on Acrobot half the learning rate ended below `naive`.
# 6. *Not significant*, with the interval at its level and what the seeds could detect (the *detectable |g|*):
#    the data could not tell the groups apart, which includes effects up to about that size. "No difference" (or
#    "=") would need an equivalence test that passes: the word for that is *equivalent*.
# 7. How many seeds and which test (3 against 3 cannot reach p 0.05 with a permutation test, lesson 04); how many
#    comparisons were made and whether they were corrected; which settings and budget, and whether dropout off was
#    tuned; whether dropout was in the policy, the critic, or both, and in which mode (the ratio); whether the claim
#    was tested on other tasks. Here the sign depended on the task.
#
# </details>
#
# ## Try it yourself
#
# 1. Run one task of the study yourself, with fewer seeds, and compare with the committed table:
#    `sandbox bench breadth --tasks Acrobot-v1 --seeds 0 1 2 3 4 5 --out runs/breadth-acrobot` (36 runs; the study's
#    report gives the pace of its runs). Which verdicts does it keep with 6 seeds, and what |g| can 6 seeds detect?
# 2. Add a mechanism arm of your own: dropout off with `ent_coef` doubled on Acrobot (more exploration without any
#    dropout). A sweep spec with `[base] env = "Acrobot-v1"` and `[grid] ent_coef = [0.01, 0.02]`, sixteen seeds,
#    `sandbox sweep spec.toml --out runs/entropy`, then `sandbox report runs/entropy`.
# 3. The forest plot of section 2 uses Holm over every comparison of the study. Redo section 1's table with Holm over
#    one task's comparisons only (`sandbox.stats.holm` on its `p_value` column): which verdicts change, and why is
#    that the wrong analysis if you looked at all five tasks before choosing one?
