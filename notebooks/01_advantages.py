# %% [markdown]
# # Lesson 01: advantages. GAE, lambda, and the time-limit trap
#
# **Learning goals.** After this lesson you can
#
# 1. compute generalised advantage estimates (GAE) by hand on a five-step rollout, and check them against
#    `sandbox.maths.gae`, the function the trainer calls;
# 2. say what lambda trades (0: one-step TD, 1: Monte Carlo) and what it did to PPO on CartPole;
# 3. tell termination from truncation, and measure what goes wrong when a time limit is treated as the end of the
#    world;
# 4. read `explained_var`, and know when a high or a negative value means little.
#
# **Assumes.** Lesson 00 (a run, its `metrics.csv`); discounted returns and a value function V(s) = the expected
# discounted return from s.
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 2.4
# min (145 s) of wall time, 2.2 min (132 s) of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 8 s (a check
# that the notebook works: what it trains is tiny, and its numbers mean nothing). The committed outputs are those of
# that full run.
#
# **Reading the numbers.** Sentences with a run's numbers in them are printed by the cells, from your run; a
# sentence that must hold on any run is checked by the cell under it (`sandbox.analysis.course.claim`), which stops the
# lesson, naming the sentence, if your run contradicts it.
#
# **Read along:** `sandbox/algos/ppo.py`, step 2 of `train_ppo` ("Advantages"), and `gae` in `sandbox/maths.py`.
#
# Homework 1 (GAE): `notebooks/homework/hw1_gae.ipynb`.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import sandbox
from sandbox import maths, stats
from sandbox.analysis import course
from sandbox.plots import OTHER_COLORS, use_style

use_style()
FAST = os.environ.get("SANDBOX_FAST") == "1"
CI = "difference [CI at the verdict's level]"  # sandbox.stats' tables: the interval the verdict used
STEPS = 4_096 if FAST else 60_000
SEEDS = course.seeds(2 if FAST else 10)  # [0, ..., 9]; SANDBOX_SEED_SET=2 shifts them to [1000, ..., 1009]
print(f"FAST={FAST}: {len(SEEDS)} seeds of {STEPS:,} steps per setting ({course.seed_names(SEEDS)})")

# %% [markdown]
# ## 1. GAE by hand
#
# The policy gradient needs to know, for each action taken, whether it turned out better or worse than expected:
# the *advantage* A_t. GAE (Schulman et al. 2016) builds it from the critic's one-step errors:
#
# $$\delta_t = r_t + \gamma\,(1 - \text{terminated}_t)\,V(s_{t+1}) - V(s_t)$$
# $$A_t = \delta_t + \gamma\lambda\,(1 - \text{done}_t)\,A_{t+1}$$
# $$R_t = A_t + V(s_t)\quad\text{(the critic's target)}$$
#
# Two flags, on purpose: `terminated` says the MDP ended (no future reward: do not bootstrap), `done` says the
# episode ended for any reason (do not let the next episode leak into this one's advantage). That is the signature of
# `maths.gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda)`, all `(T, N)` tensors.
#
# A rollout of one environment, five steps, reward 1 per step as in CartPole. The first episode *terminates* after
# step 2 (the pole fell); a second episode runs from step 3 and is still going when the rollout ends after step 4, so
# its last advantage bootstraps from V(s_5). (The real trainer has one more step between the two episodes, the
# autoreset step, which it leaves out of the loss: see `sandbox/envs/gym_tasks.py`.)

# %%
gamma, lam = 0.9, 0.8
r = [1.0, 1.0, 1.0, 1.0, 1.0]
V = [2.0, 1.5, 0.8, 2.5, 2.4]  # V(s_t), from the critic during the rollout
V_next = [1.5, 0.8, 1.1, 2.4, 2.2]  # V(s_{t+1}); at step 2, the value of the terminal state (ignored)
terminated = [0, 0, 1, 0, 0]
done = [0, 0, 1, 0, 0]

# by hand: the one-step errors, then the advantages from the last step backwards
delta = [
    r[0] + gamma * V_next[0] - V[0],
    r[1] + gamma * V_next[1] - V[1],
    r[2] + gamma * 0.0 - V[2],  # terminated: no future, no bootstrap
    r[3] + gamma * V_next[3] - V[3],
    r[4] + gamma * V_next[4] - V[4],  # the rollout ends, the episode does not: bootstrap from V(s_5)
]
A4 = delta[4]  # nothing after the rollout
A3 = delta[3] + gamma * lam * A4
A2 = delta[2]  # done: step 3 belongs to another episode
A1 = delta[1] + gamma * lam * A2
A0 = delta[0] + gamma * lam * A1
by_hand = [A0, A1, A2, A3, A4]


def column(x):  # a list -> a (T, N=1) tensor, the shape the trainer uses
    return torch.tensor(x, dtype=torch.float32)[:, None]


adv, ret = maths.gae(column(r), column(V), column(V_next), column(terminated), column(done), gamma, lam)
table = pd.DataFrame(
    {
        "r": r,
        "V(s)": V,
        "V(s')": V_next,
        "terminated": terminated,
        "done": done,
        "delta": delta,
        "A by hand": by_hand,
        "A maths.gae": adv[:, 0].numpy(),
        "R = A + V": ret[:, 0].numpy(),
    }
).rename_axis("t")
assert np.allclose(table["A by hand"], table["A maths.gae"], atol=1e-6)
table.round(4)

# %% [markdown]
# `maths.gae` runs the same recursion over all environments at once, from t = T-1 down to 0. Note step 2: its
# `V(s')` (1.1) has no effect, and its advantage does not look at step 3.
#
# ## 2. Lambda: from one-step TD to Monte Carlo
#
# Unrolling the recursion, A_t is a discounted sum of the future one-step errors, weighted by (gamma lambda)^k:
#
# - **lambda = 0**: A_t = delta_t, the one-step TD error. The target R_t = r_t + gamma V(s_{t+1}) leans on the
#   critic: low variance, but as wrong as the critic is (bias).
# - **lambda = 1**: the deltas telescope and A_t = (discounted rewards to the episode's end, or to the rollout's
#   end plus gamma^k V there) - V(s_t): Monte Carlo. No bias from the critic inside an episode, but every future
#   random reward adds variance.
# - In between, lambda 0.8-0.95 is the usual compromise; the CartPole preset uses 0.8.

# %%
lambdas = [0.0, 0.8, 1.0]
by_lambda = pd.DataFrame(
    {
        f"A, lambda={lmb:g}": maths.gae(
            column(r), column(V), column(V_next), column(terminated), column(done), gamma, lmb
        )[0][:, 0].numpy()
        for lmb in lambdas
    }
).rename_axis("t")
R1 = maths.gae(column(r), column(V), column(V_next), column(terminated), column(done), gamma, 1.0)[1][:, 0]
monte_carlo = [1 + gamma + gamma**2, 1 + gamma, 1.0, 1 + gamma + gamma**2 * V_next[4], 1 + gamma * V_next[4]]
assert np.allclose(R1.numpy(), monte_carlo)  # lambda = 1: the targets are the discounted reward sums
by_lambda["R, lambda=1"] = R1.numpy()
by_lambda.round(4)

# %% [markdown]
# With lambda = 1 the first episode's targets are exactly 1 + 0.9 + 0.81, 1 + 0.9 and 1 (the `assert` above checks
# it): the critic's values play no part in them. The second episode has not ended, so even Monte Carlo bootstraps
# from V(s_5) at the rollout's end.
#
# ### Lambda in training
#
# PPO on CartPole (the preset, no dropout) with lambda 0, 0.8 and 1, each on the same ten seeds. The ten seeds of a
# setting train together as one *population* (`sandbox.train_population`: one process, the seeds' networks batched;
# each seed computes what `sandbox.train` would, up to float rounding; user guide,
# [Populations](../docs/guide/populations.md)). To measure more than the metrics show, the runs get a *recording* GAE
# through the `Maths` seam: it calls `maths.gae` unchanged and notes what it saw (the critic's mean value, and the
# advantages at time-limit truncations, for section 3). Passing a function through the seam is how you run the real
# trainer on your own maths: `sandbox.train(cfg, maths=sandbox.Maths(gae=...))`. A population calls GAE once for all
# its seeds, their environments side by side (a `(T, seeds x N)` tensor), so the recorder splits the columns back
# into seeds.


# %%
def recording(gae_fn, logs):
    """``gae_fn`` unchanged, plus one record per update for each seed of the population (``logs``: one list per seed):
    the critic's mean value over the rollout, the spread of the targets and of the advantages, and the mean advantage
    at time-limit truncations (done, not terminated). The seeds' environments arrive side by side, N columns each."""

    def gae_and_record(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
        advantages, returns = gae_fn(rewards, values, next_values, terminated, dones, gamma, gae_lambda)
        n = rewards.shape[1] // len(logs)  # each seed's N environments
        for k, log in enumerate(logs):
            own = slice(k * n, (k + 1) * n)
            cut = (dones[:, own] > 0) & (terminated[:, own] == 0)
            log.append(
                {
                    "value_mean": values[:, own].mean().item(),
                    "returns_std": returns[:, own].std().item(),
                    "adv_std": advantages[:, own].std().item(),
                    "adv_at_truncation": advantages[:, own][cut].mean().item() if cut.any() else np.nan,
                    "truncations": int(cut.sum()),
                }
            )
        return advantages, returns

    return gae_and_record


def train_seeds(variant, lmb, gae_fn):
    """Every seed of SEEDS with this lambda and GAE, as one population; into ``runs`` and ``records``."""
    logs = [[] for _ in SEEDS]
    configs = [base.replace(gae_lambda=lmb, seed=seed) for seed in SEEDS]
    for seed, log, run in zip(SEEDS, logs, sandbox.train_population(configs, maths=sandbox.Maths(gae=recording(gae_fn, logs)))):
        runs[variant, lmb, seed], records[variant, lmb, seed] = run, log


base = sandbox.preset("cartpole", dropout_mode="off", total_steps=STEPS, quiet=True)
runs, records = {}, {}
for lmb in lambdas:
    train_seeds("right", lmb, maths.gae)
print(f"{len(runs)} runs")

# %% mystnb={"image": {"alt": "Three panels of PPO on CartPole, one per gae_lambda (0, 0.8 and 1): the return (mean of the last 20 episodes) against env steps, one line per seed, with a dotted line at the solved threshold 475."}}
LAMBDA_COLORS = dict(zip(lambdas, OTHER_COLORS))
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=True)
for ax, lmb in zip(axes, lambdas):
    for seed in SEEDS:
        m = runs["right", lmb, seed].metrics
        ax.plot(m.env_steps, m.ep_return_mean, color=LAMBDA_COLORS[lmb], lw=1, alpha=0.8)
    ax.axhline(475, color="grey", ls=":", lw=1)
    ax.set(title=f"gae_lambda = {lmb:g}", xlabel="env steps")
axes[0].set_ylabel("return (last 20 episodes)")
fig.suptitle(f"PPO on CartPole, one line per seed ({len(SEEDS)} seeds)", fontsize=10)
plt.show()


# %% [markdown]
# One number per run, to compare settings: the *mean return over training* (the mean of `ep_return_mean` over all
# updates, the area under the learning curve divided by its length), which rewards learning early and staying
# solved. Each setting against the preset's lambda = 0.8, with `sandbox.stats`: a permutation test, Holm's correction
# for the number of comparisons in the table, Welch's interval of the difference, the probability that a seed of the
# setting beats a seed of the baseline, a verdict in words (`stats.verdict`: none below five seeds per group) and the
# seeds per group a t test would need to detect the observed difference with 80% power (`stats.comparison_table`).


# %%
def mean_return(run):
    return float(run.metrics.ep_return_mean.mean())


auc = {lmb: [mean_return(runs["right", lmb, s]) for s in SEEDS] for lmb in lambdas}
final = {lmb: [runs["right", lmb, s].summary["final_return"] for s in SEEDS] for lmb in lambdas}
print("mean return over training, per seed:", {k: np.round(v).tolist() for k, v in auc.items()})
print("final return, per seed:            ", {k: np.round(v).tolist() for k, v in final.items()})
QUALITY = ("mean return over training", "final return")  # higher is better; other metrics only describe
lambda_table = stats.comparison_table({"mean return over training": auc}, baseline=0.8, quality=QUALITY)
lambda_table

# %% [markdown]
# What these runs show: **lambda = 0 learned slowest**, its critic-made targets holding it back (checked below on
# every run, with ten seeds per setting: enough for this verdict to come out the same on another CPU and another set
# of seeds). Between lambda = 1 and lambda = 0.8 the difference is small against the seed-to-seed spread; whether
# your run's ten seeds can tell them apart is printed below.

# %%
row0, row1 = (lambda_table.loc[("mean return over training", lmb)] for lmb in (0.0, 1.0))
solved_end = {lmb: sum(f >= 475 for f in final[lmb]) for lmb in lambdas}
course.say(
    f"""In this run ({len(SEEDS)} seeds per setting, {STEPS:,} steps each):

- lambda = 0: mean return over training {np.mean(auc[0.0]):.0f} against {np.mean(auc[0.8]):.0f} for lambda = 0.8,
  difference {row0[CI]} (95% CI); P(a lambda = 0 seed beats a lambda = 0.8 seed)
  {row0["P(beats baseline)"]:.2f}; the permutation test corrected for the two comparisons (Holm) gives
  p = {row0["p (Holm)"]:g}: *{row0["verdict"]}*. {solved_end[0.0]} of its {len(SEEDS)} seeds ended at 475 or more
  (final returns {min(final[0.0]):.0f} to {max(final[0.0]):.0f}).
- lambda = 1: {np.mean(auc[1.0]):.0f} against {np.mean(auc[0.8]):.0f}, difference {row1[CI]},
  p = {row1["p (Holm)"]:g}: *{row1["verdict"]}* (these seeds detect a difference of |g| {row1["detectable |g|"]} or
  more with 80% power). At the end, {solved_end[0.8]} of the lambda = 0.8 seeds and
  {solved_end[1.0]} of the lambda = 1 seeds were at 475 or more: the seeds of one setting spread, as lesson 00
  showed."""
)
course.claim(
    "lambda = 0 learned slowest: verdict worse against lambda = 0.8",
    row0["verdict"] == "worse" and np.mean(auc[0.0]) < np.mean(auc[1.0]),
    f"{row0['verdict']}, Holm p {row0['p (Holm)']:g}; means {np.mean(auc[0.0]):.0f}, {np.mean(auc[0.8]):.0f}, "
    f"{np.mean(auc[1.0]):.0f} for lambda 0, 0.8, 1",
)

# %% [markdown]
# ## 3. Termination or truncation?
#
# CartPole-v1 ends an episode in two ways. The pole falls or the cart leaves the track: *terminated*, the MDP is
# over and the future is worth 0. The episode reaches 500 steps: *truncated* by a time limit that is not part of the
# state. The pole is still up, and had the episode gone on, rewards would have kept coming: the right target
# bootstraps from V of the last observation. The recursion still stops there (`done`), because the next step belongs
# to a new episode.
#
# The trap is to treat both as terminal, `terminated = done`. In the small rollout, let the second episode end after
# step 4 by a time limit instead of by the rollout's end:

# %%
done_cut = [0, 0, 1, 0, 1]  # step 4: the episode is truncated (time limit); step 2 still terminated
right_adv = maths.gae(column(r), column(V), column(V_next), column(terminated), column(done_cut), gamma, lam)[0]
wrong_adv = maths.gae(column(r), column(V), column(V_next), column(done_cut), column(done_cut), gamma, lam)[0]
pd.DataFrame(
    {
        "done": done_cut,
        "terminated": terminated,
        "A (right: bootstrap)": right_adv[:, 0].numpy(),
        "A (wrong: truncation = termination)": wrong_adv[:, 0].numpy(),
    }
).rename_axis("t").round(4)

# %% [markdown]
# The wrong version tells the critic that the state at step 4, which looked worth 2.4, led nowhere: its advantage
# drops from +0.58 to 1 - 2.4 = -1.4, and step 3's with it. On CartPole the critic cannot see the time (the state is
# the cart and pole, not the step count), so to it these episode ends look like random punishments of good states.
#
# ### Measured: the same trainer with the wrong GAE
#
# The bug is one line, passed through the seam; everything else is the real trainer. Same seeds, lambda 0.8 (the
# right runs are those of section 2).


# %% mystnb={"image": {"alt": "Two panels comparing GAE done right (a time limit bootstrapped through) and wrong (a truncation treated as a termination). Left: histogram, one count per update, of the mean raw advantage at the steps where an episode hit the 500-step limit: the right variant's sit at about 0, the wrong one's far below 0. Right: the critic's mean value over each rollout against env steps, one line per seed, with dotted lines at 50 (the value of a balanced state when the time limit is bootstrapped through) and at about 45 (its average over an episode with the bug)."}}
def gae_truncation_as_termination(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    """The bug: every episode end is treated as terminal, time limits included (no bootstrap at truncation)."""
    return maths.gae(rewards, values, next_values, dones, dones, gamma, gae_lambda)


train_seeds("wrong", 0.8, gae_truncation_as_termination)

VARIANT_COLORS = {"right": OTHER_COLORS[5], "wrong": OTHER_COLORS[6]}
# the critic's value of a balanced state if every episode ran 500 steps: 1 / (1 - gamma) when the time limit is
# bootstrapped through; with the bug, the average over the episode's steps t of (1 - gamma^(500 - t)) / (1 - gamma)
g = base.gamma
v_right = 1 / (1 - g)
v_wrong = v_right * (1 - (1 - g**500) / (500 * (1 - g)))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
for variant in ("right", "wrong"):
    at_cut = pd.concat([pd.DataFrame(records[variant, 0.8, s]) for s in SEEDS]).adv_at_truncation.dropna()
    axes[0].hist(at_cut, bins=np.arange(-60, 5, 1.0), color=VARIANT_COLORS[variant], label=variant)
    for seed in SEEDS:
        rec = pd.DataFrame(records[variant, 0.8, seed])
        steps = runs[variant, 0.8, seed].metrics.env_steps
        label = variant if seed == SEEDS[0] else None
        axes[1].plot(steps, rec.value_mean.rolling(10).mean(), color=VARIANT_COLORS[variant], lw=1, label=label)
axes[0].set(
    title="advantage at a time-limit truncation", xlabel="raw advantage (before normalisation)", ylabel="updates"
)
axes[0].legend(loc="upper left")
for v, name in [(v_right, "right"), (v_wrong, "wrong")]:
    axes[1].axhline(v, color=VARIANT_COLORS[name], ls=":", lw=1.2)
axes[1].set(title="critic's mean value V(s) over each rollout", xlabel="env steps", ylim=(0, 55))
axes[1].legend(loc="lower right")
plt.show()
print(f"balanced for 500 steps: V = {v_right:.1f} (right), {v_wrong:.1f} on average over an episode (wrong)")

# %% [markdown]
# Left: one count per update that had truncations: the mean raw advantage (before PPO normalises it) at the steps
# where an episode hit the 500-step limit, all seeds. Right: the critic's mean value over each rollout (mean of 10
# updates). For a policy that balances every episode to the limit, the value of a state is 1 / (1 - gamma) = 50 when
# the time limit is bootstrapped through (upper dotted line). With the bug it depends on the step count, from 50 early
# in an episode down to 1 at its last step; a critic that could not tell early from late states at all would learn
# their average, about 45 (lower dotted line).


# %%
def mean_at_truncations(record):  # over the updates that had a truncation (NaN if none: FAST mode)
    at = pd.DataFrame(record).adv_at_truncation.dropna()
    return float(at.mean()) if len(at) else np.nan


def value_when_cut(record):  # the critic's mean value over the updates whose rollout had a time-limit truncation
    rec = pd.DataFrame(record)
    return float(rec.value_mean[rec.truncations > 0].mean()) if (rec.truncations > 0).any() else np.nan


def second_half(run):
    return run.metrics[run.metrics.env_steps > STEPS / 2]


both = ("right", "wrong")
truncation_adv = {v: [mean_at_truncations(records[v, 0.8, s]) for s in SEEDS] for v in both}
adv_spread = {v: [pd.DataFrame(records[v, 0.8, s]).adv_std.mean() for s in SEEDS] for v in both}
print("mean advantage at truncations, per seed:", {k: np.round(v, 1).tolist() for k, v in truncation_adv.items()})
print("std of the batch's advantages, mean over updates:", {k: np.round(v, 1).tolist() for k, v in adv_spread.items()})
scores = {
    "critic's value, rollouts with a truncation": {
        v: [value_when_cut(records[v, 0.8, s]) for s in SEEDS] for v in both
    },
    "explained_var, second half": {v: [second_half(runs[v, 0.8, s]).explained_var.mean() for s in SEEDS] for v in both},
    "mean return over training": {v: [mean_return(runs[v, 0.8, s]) for s in SEEDS] for v in both},
    "final return": {v: [runs[v, 0.8, s].summary["final_return"] for s in SEEDS] for v in both},
}
bug_table = stats.comparison_table(scores, baseline="right", quality=QUALITY)
bug_table

# %% [markdown]
# What the bug did, the same seeds with and without it (the two runs of a seed are identical until its first episode
# reaches 500 steps):
#
# - **The advantages**: at every truncation the bug gives the last step a raw advantage of about -45, where
#   bootstrapping through the time limit gives about 0, while the batch's advantages otherwise spread by a few units.
#   Once PPO normalises them, each of these steps is a large outlier that pushes down the probability of whatever the
#   policy did last, in a state where it was doing well.
# - **The critic** learns lower values on the rollouts that had a truncation: *lower*, after Holm's correction over
#   the table's four comparisons.
# - **`explained_var`** and **the return**: the bug can only act once a policy balances for 500 steps, late in these
#   runs; whether its effect on them shows with ten seeds is the table's last three rows, in words below.

# %%
verdicts = {metric: bug_table.loc[(metric, "wrong")] for metric in scores}
critic = verdicts["critic's value, rollouts with a truncation"]
right_at, wrong_at = (np.array(truncation_adv[v]) for v in both)
course.say(
    f"""In this run ({len(SEEDS)} seeds): the mean raw advantage at a truncation was {np.nanmin(wrong_at):.1f} to
{np.nanmax(wrong_at):.1f} per seed with the bug and {np.nanmin(right_at):+.1f} to {np.nanmax(right_at):+.1f}
without; the batch's advantages spread by {np.min(adv_spread["right"]):.1f} to {np.max(adv_spread["wrong"]):.1f}
(standard deviation, mean over updates, per seed). The critic's mean value on the rollouts with a truncation was
{critic["mean"]:.1f} with the bug against {critic["baseline: right"]:.1f}, difference {critic[CI]},
P(beats baseline) {critic["P(beats baseline)"]:.2f}, Holm p = {critic["p (Holm)"]:g}: *{critic["verdict"]}*.
`explained_var` over the second half: {verdicts["explained_var, second half"]["mean"]:.2f} against
{verdicts["explained_var, second half"]["baseline: right"]:.2f}, *{verdicts["explained_var, second half"]["verdict"]}*;
mean return over training {verdicts["mean return over training"]["mean"]:.0f} against
{verdicts["mean return over training"]["baseline: right"]:.0f}, *{verdicts["mean return over training"]["verdict"]}*;
final return {verdicts["final return"]["mean"]:.0f} against {verdicts["final return"]["baseline: right"]:.0f},
*{verdicts["final return"]["verdict"]}*."""
)
course.claim(
    "at every truncation the bug gives the last step a raw advantage of about -45, where bootstrapping gives about 0",
    np.all((wrong_at > -55) & (wrong_at < -35)) and np.all(np.abs(right_at) < 3),
    f"per-seed means {np.round(wrong_at, 1).tolist()} with the bug, {np.round(right_at, 1).tolist()} without",
)
course.claim(
    "the critic learns lower values on the rollouts that had a truncation: lower, after Holm's correction",
    critic["verdict"] == "lower",
    f"{critic[CI]}, Holm p {critic['p (Holm)']:g}",
)


def first_truncation(record):  # the first update whose rollout had a time-limit truncation (None if none did)
    cut = pd.DataFrame(record).truncations.to_numpy().nonzero()[0]
    return int(cut[0]) if len(cut) else None


same_until_cut = []
for seed in SEEDS:
    cut = first_truncation(records["right", 0.8, seed])
    right_m, wrong_m = (runs[v, 0.8, seed].metrics.ep_return_mean.iloc[:cut] for v in both)
    same_until_cut.append(right_m.equals(wrong_m))
course.claim(
    "the two runs of a seed are identical until its first episode reaches 500 steps",
    all(same_until_cut),
    f"identical up to the first truncation for {sum(same_until_cut)} of {len(SEEDS)} seeds",
    outcome=False,
)

# %% [markdown]
# The fix, if the time limit mattered to the task, would be to put the time in the observation (Pardo et al. 2018,
# "Time Limits in Reinforcement Learning"); when it is only a training convenience, as here, bootstrap through it.
#
# ## 4. `explained_var`: how well did the critic predict its targets?
#
# `maths.explained_variance(predicted, target)` = 1 - Var(R - V) / Var(R), computed once per update on the batch,
# with V the values the rollout used and R the GAE targets (`sandbox/algos/ppo.py`, step 4). 1 is a perfect critic, 0 is
# no better than predicting the mean, negative is worse than that:

# %%
R = torch.tensor([1.0, 2.0, 3.0, 4.0])
for name, pred in [
    ("perfect", R),
    ("the mean", torch.full((4,), 2.5)),
    ("half-way", (R + 2.5) / 2),
    ("reversed", R.flip(0)),
]:
    print(f"{name:>9}: explained_var = {maths.explained_variance(pred, R):+.2f}")

# %% mystnb={"image": {"alt": "The critic's explained variance (mean of 10 updates) against env steps for gae_lambda 0, 0.8 and 1: the median over seeds as a line and the range from the lowest to the highest seed as a band, the y-axis cut at -3."}}
fig, ax = plt.subplots(figsize=(7, 3.2))
for lmb in lambdas:
    ev = pd.concat([runs["right", lmb, s].metrics.explained_var.rolling(10).mean() for s in SEEDS], axis=1)
    steps = runs["right", lmb, SEEDS[0]].metrics.env_steps
    ax.fill_between(steps, ev.min(axis=1), ev.max(axis=1), color=LAMBDA_COLORS[lmb], alpha=0.25, lw=0)
    ax.plot(steps, ev.median(axis=1), color=LAMBDA_COLORS[lmb], lw=1.5, label=f"lambda = {lmb:g}")
ax.set(
    xlabel="env steps",
    ylabel="explained_var (mean of 10 updates)",
    ylim=(-3, 1.05),
    title=f"median over {len(SEEDS)} seeds; band: lowest to highest seed",
)
ax.legend(loc="lower left")
plt.show()
spread = {
    lmb: [pd.DataFrame(records["right", lmb, s]).returns_std.iloc[-50:].mean() for s in SEEDS] for lmb in lambdas
}
late_ev = {lmb: [runs["right", lmb, s].metrics.explained_var.iloc[-50:].mean() for s in SEEDS] for lmb in lambdas}
print("over the last 50 updates, per seed (the order of SEEDS):")
print("  std of the targets R:", {k: np.round(v, 2).tolist() for k, v in spread.items()})
print("  mean explained_var:  ", {k: np.round(v, 2).tolist() for k, v in late_ev.items()})

# %% [markdown]
# - **lambda = 0 reads the highest**, yet it learned slowest (section 2). Its target r + gamma V(s') is mostly the
#   critic's own prediction, so the critic predicts it easily: a high `explained_var` says the critic is consistent
#   with itself, not that it is right.
# - **lambda = 1 falls to 0 and below** once its seeds are solved. Their targets are then all about 50, so Var(R) in
#   the denominator is tiny and small errors of the critic give large negative values.
# - **lambda = 0.8** sits in between, and its band is wide: its seeds differ in when and whether they stay solved.
#   The same effect shows within it, in the seeds whose targets had settled.

# %%
SETTLED = 0.1  # a seed's targets have settled when their standard deviation over the last 50 updates is below this


def settled(lmb, yes=True):
    return [ev for ev, sd in zip(late_ev[lmb], spread[lmb]) if (sd < SETTLED) == yes]


def span(values, digits=2):
    return f"{min(values):+.{digits}f} to {max(values):+.{digits}f}" if values else "none"


lowest = min(runs["right", 1.0, s].metrics.explained_var.rolling(10).mean().min() for s in SEEDS)
course.say(
    f"""In this run, over the last 50 updates: lambda = 0's seeds read {span(late_ev[0.0])}. The lambda = 1 seeds
whose targets had settled (standard deviation below {SETTLED}: {len(settled(1.0))} of {len(SEEDS)}) read
{span(settled(1.0))}, the others {span(settled(1.0, False))}; the lowest mean over 10 updates of a lambda = 1 seed
was {lowest:.2f}{" (the band leaves the plot)" if lowest < -3 else ""}. In lambda = 0.8, the seeds whose targets had
settled ({len(settled(0.8))}) read {span(settled(0.8))}, the others {span(settled(0.8, False))}."""
)
means = {lmb: np.mean(late_ev[lmb]) for lmb in lambdas}
course.claim(
    "lambda = 0 reads the highest explained_var; lambda = 0.8 sits in between",
    means[0.0] > means[0.8] > means[1.0],
    "mean over seeds, last 50 updates: " + ", ".join(f"lambda {k:g}: {v:.2f}" for k, v in means.items()),
)
course.claim(
    "lambda = 1 falls to 0 and below once its seeds are solved",
    len(settled(1.0)) > 0 and np.mean(settled(1.0)) < 0.3,
    f"the settled seeds' mean {np.mean(settled(1.0)) if settled(1.0) else float('nan'):.2f}",
)

# %% [markdown]
# So read `explained_var` as a diagnostic of the critic *relative to its own targets*, with the targets in mind:
# a value near 1 with lambda near 0 is easy to reach, a negative value on a solved task may only mean the targets
# hardly vary, and with the trap of section 3 part of the targets depends on something the critic cannot see (the
# step count), which no critic can explain.
#
# ## Check yourself
#
# 1. In the small rollout, why does step 2's advantage not depend on anything after step 2, and why does V(s') = 1.1
#    at step 2 not matter?
# 2. With lambda = 0, which quantity does the advantage depend on that Monte Carlo does not? With lambda = 1, which
#    source of noise do you accept in exchange?
# 3. A run's episodes all end by the 500-step time limit. In `maths.gae`'s arguments, what are `terminated` and
#    `dones` at those steps?
# 4. Why does the truncation bug lower the critic's mean value, and why can the critic not learn to predict the
#    wrong targets?
# 5. `explained_var` is 0.99 in one run and -2 in another. Which critic is better?
#
# <details><summary>Answers</summary>
#
# 1. Step 2 is `done`: the factor (1 - done_2) cuts the recursion, so nothing of the next episode leaks in. It is
#    also `terminated`, so delta_2 = r_2 - V(s_2): the terminal state's value is multiplied by 0.
# 2. lambda = 0 uses V(s_{t+1}) in every target, so it inherits the critic's errors (bias). lambda = 1 sums every
#    future reward of the episode, each a random outcome of later actions and states (variance). In section 2,
#    lambda = 0 learned significantly more slowly than lambda = 0.8 (with ten seeds, on every run the lesson checks);
#    lambda = 1 and 0.8 were close, against the spread of the seeds.
# 3. `terminated = 0` (the pole was still up), `dones = 1` (the episode ended). The advantage bootstraps from V of
#    the final observation but does not look into the next episode.
# 4. The last state before the cut gets the target r = 1 instead of r + gamma V(s') (about 50), and the states
#    before it lower targets than they should too, so the average target falls. Those states look like any other
#    balanced state (the step count is not observed), so a similar state gets a high target early in an episode and
#    a low one near step 500: the critic can only predict something like the average, and the rest is unexplained
#    variance.
# 5. Neither answer follows from the number alone. Near 1 can come from easy targets (lambda = 0: the targets are
#    mostly the critic's own prediction). Strongly negative can come from targets that barely vary (a solved task
#    with lambda = 1): Var(R) in the denominator is tiny. Look at what the targets are first.
#
# </details>
#
# Next: lesson 02, the clipped surrogate (`notebooks/02_clipped_surrogate.ipynb`).
