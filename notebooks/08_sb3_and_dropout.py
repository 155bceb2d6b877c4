# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 08: your SB3 agent has dropout
#
# Stable-Baselines3 (SB3) is what most courses and many papers train with. Put dropout in an SB3 policy and SB3 does
# something with it that no log shows you: it acts **without** dropout and updates **with** it. PPO's ratio then
# compares two different networks before the optimiser has moved anything. This lesson reads where SB3 does it,
# measures it on SB3's own PPO, fixes it with consistent dropout inside SB3, and puts the SB3 agent next to the
# sandbox's PPO in one report.
#
# **Learning goals.** After this lesson you can
#
# 1. point to the two lines of SB3's source that decide what dropout does in PPO, and predict the consequence;
# 2. measure it: `first_ratio_dev` (mean |r − 1| over the first minibatch of an update, before any gradient step)
#    of SB3's PPO in the four dropout modes;
# 3. switch your own SB3 script to consistent dropout (`sandbox.algos.sb3.DropoutPPO`) and say what it stores and replays;
# 4. check that an instrumented SB3 is still SB3 (same episodes as plain SB3 PPO without dropout);
# 5. read one report that holds SB3 arms and sandbox arms, with intervals and verdicts.
#
# **Assumptions.** Lessons 02 and 03 (PPO's ratio; the four dropout modes, `first_ratio_dev`). You have trained with
# `PPO("MlpPolicy", env).learn(n)` in SB3 once. No GPU.
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 5.6
# min (336 s) of wall time, 5.7 min (339 s) of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 28 s (a check
# that the notebook works: what it trains is tiny, and its numbers mean nothing). The committed outputs are those of
# that full run.
#
# **Reading the numbers.** Sentences with a run's numbers in them are printed by the cells, from your run; a
# sentence that must hold on any run is checked by the cell under it (`sandbox.analysis.course.claim`), which stops the
# lesson, naming the sentence, if your run contradicts it.

# %%
import inspect
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, display
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

import sandbox
from sandbox import stats
from sandbox.analysis import course
from sandbox.plots import MODE_COLORS, use_style
from sandbox.analysis.report import key_table, write_report
from sandbox.algos.sb3 import DropoutPPO
from sandbox.analysis.sweep import run_sweep

use_style()
torch.set_num_threads(1)  # these networks are tiny: one thread is fastest (sandbox.train does the same)
T0 = time.perf_counter()
FAST = os.environ.get("SANDBOX_FAST") == "1"
SEEDS = course.seeds(1 if FAST else 5)  # [0, ..., 4]; SANDBOX_SEED_SET=2 shifts them to [1000, ..., 1004]
STEPS = 1_024 if FAST else 30_000  # environment steps per run (8 envs x 32 steps = 256 per update)
P = 0.1  # dropout probability, in the policy and the value net
MODES = ["off", "rollout-eval", "naive", "consistent"]
print(f"FAST={FAST}: {course.seed_names(SEEDS)}, {STEPS:,} steps per run, p = {P}")

# %% [markdown]
# ## 1. What SB3 does with dropout: two lines of its source
#
# SB3's PPO alternates two phases. `collect_rollouts` (in `OnPolicyAlgorithm`) plays the environments and stores each
# action with its log-probability `logp_old`; `train` (in `PPO`) recomputes the log-probability of the same actions
# and forms the ratio `r = exp(logp - logp_old)`. Here is every line of the two methods that touches the
# network's train/eval mode, read from the installed SB3:

# %%
for method in (OnPolicyAlgorithm.collect_rollouts, PPO.train):
    for line in inspect.getsource(method).splitlines():
        if "set_training_mode" in line:
            print(f"{method.__qualname__:>34}:  {line.strip()}")

# %% [markdown]
# Eval mode switches dropout off; train mode switches it on with fresh random masks. So SB3 **acts without dropout
# and updates with dropout**: the network that computes `logp` in `train()` is a random thinned copy of the one that
# chose the action. Before the first gradient step the ratio should be exactly 1; with dropout it is not. This is the
# sandbox's mode `rollout-eval`. It is not a bug in SB3: it is what `model.eval()` / `model.train()` mean in PyTorch,
# applied to an algorithm whose loss compares two forward passes.
#
# ## 2. Your SB3 script, with dropout in the four modes
#
# `sandbox.algos.sb3.DropoutPPO` is SB3's `PPO` with a dropout policy and one extra argument, `dropout_mode`. Everything else
# is SB3's: its `learn()`, its rollout buffer, its `train()`. Three small pieces make the modes, each on one of SB3's
# extension points (read `sandbox/algos/sb3.py`):
#
# - the **policy** (`"MlpPolicy"` here, with `policy_kwargs=dict(dropout=p)`) is SB3's `ActorCriticPolicy` with a
#   dropout layer after each hidden activation, each of which can be handed its mask;
# - the **rollout buffer** also stores, in mode `consistent`, the masks that chose each action, and hands a
#   minibatch's masks back to the policy when SB3's `train()` evaluates that minibatch;
# - a **callback** turns dropout on while acting in modes `naive` and `consistent` (SB3 has just turned it off).
#
# After every update `model.last_update` holds the sandbox's update metrics, measured on the first minibatch before
# SB3's first gradient step (and SB3's logger records them under `dropout/`, for TensorBoard). A few updates each:

# %%
rows = []
for mode in MODES:
    model = DropoutPPO("MlpPolicy", "CartPole-v1", dropout_mode=mode, n_steps=256, batch_size=64, n_epochs=4,
                       policy_kwargs=dict(dropout=0.3), seed=SEEDS[0], device="cpu")
    model.learn(1_024)
    rows.append({"dropout_mode": mode, **{k: model.last_update[k] for k in
                 ("first_ratio_dev", "first_clipfrac", "first_approx_kl", "epochs_done")}})
last_update = pd.DataFrame(rows).set_index("dropout_mode")
dev = last_update.first_ratio_dev
course.claim(
    "the two exact modes read 0 up to float rounding, the two noisy ones clearly above it",
    max(dev["off"], dev["consistent"]) < 1e-6 and min(dev["rollout-eval"], dev["naive"]) > 1e-4,
    ", ".join(f"{m} {v:.1e}" for m, v in dev.items()),
    outcome=False,
)
last_update

# %% [markdown]
# In the last of these four updates (p = 0.3, one seed: a mechanism, not a statistic), the two exact modes read 0 up to
# float rounding and the two noisy ones clearly above it (checked above); section 4 measures it over whole runs and
# five seeds.
#
# ## 3. Is the instrumented SB3 still SB3?
#
# An instrumented algorithm is only worth measuring if the instruments change nothing. With dropout off, the SB3 arm
# (`sandbox.train` with `algo="sb3-ppo"`, the cartpole preset: rl-baselines3-zoo's tuned values, mapped to SB3's
# names by `sandbox.algos.sb3.sb3_hyperparameters`) must play the same episodes as a plain SB3 script with the same seed and
# hyperparameters, one for one. It can, because SB3's random stream is untouched: a dropout layer at p = 0 draws
# nothing and adds no parameters, and the sandbox's bookkeeping (episodes, metrics, the KL reference) draws no
# random numbers.

# %%
FAITHFUL_STEPS = 2_048 if FAST else 8_192
FAITHFUL_SEED = course.seed(7)


class Episodes(BaseCallback):
    def __init__(self):
        super().__init__()
        self.returns = []

    def _on_step(self):
        self.returns += [i["episode"]["r"] for i in self.locals["infos"] if "episode" in i]
        return True


ours = sandbox.train(sandbox.preset("cartpole", algo="sb3-ppo", dropout_mode="off", seed=FAITHFUL_SEED,
                                    total_steps=FAITHFUL_STEPS, quiet=True))
plain = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=FAITHFUL_SEED), n_steps=32, batch_size=256,
            gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=lambda f: f * 1e-3,
            clip_range=lambda f: f * 0.2, seed=FAITHFUL_SEED, device="cpu")
episodes = Episodes()
plain.learn(FAITHFUL_STEPS, callback=episodes)
same = ours.episodes["return"].tolist() == episodes.returns
print(f"{len(episodes.returns)} episodes of plain SB3; the SB3 arm's are identical, one for one: {same}")
course.claim("the SB3 arm plays the same episodes as a plain SB3 script, one for one", same, outcome=False)

# %% [markdown]
# ## 4. The study: SB3's PPO and the sandbox's PPO, four modes, one sweep, one report
#
# One sweep spec holds both algorithms: `algo = ["ppo", "sb3-ppo"]` is just another grid field. Both start from the
# cartpole preset (the sandbox maps it to SB3's hyperparameter names), with dropout p = 0.1 in the policy *and* the
# value network, 30,000 steps and five seeds per group (as in `make demo`, where dropout at p = 0.3 lowered
# CartPole's final return at this budget; on other tasks the sign changes: lesson 09,
# [When does dropout help?](09_when_does_dropout_help.ipynb)). The report groups runs by config, so each algorithm's
# arms are compared with the same algorithm's dropout-off group.

# %%
work = Path(tempfile.mkdtemp(prefix="lesson08-"))
spec = work / "spec.toml"
spec.write_text(f"""
[base]
preset = "cartpole"
total_steps = {STEPS}
dropout = {P}
dropout_value = true

[grid]
algo = ["ppo", "sb3-ppo"]
dropout_mode = {MODES}
seed = {SEEDS}
""")
t_sweep = time.perf_counter()
counts = run_sweep(spec, work / "sweep", workers=2, quiet=True)
print(f"{counts['ran']} runs in {time.perf_counter() - t_sweep:.0f} s (2 worker processes), {counts['failed']} failed")

# %% [markdown]
# ### The mechanism, measured on SB3 and on the sandbox
#
# `first_ratio_dev` over training: the mean over seeds at every update (line) with its 95% t interval (band), SB3's
# PPO left, the sandbox's right, on one y-axis.

# %% mystnb={"image": {"alt": "Two panels, SB3's PPO and the sandbox's PPO, of first_ratio_dev (the mean |r - 1| before any step) against env steps, one line per dropout mode, the mean over seeds with its 95% band: off (dashed) and consistent lie at 0, rollout-eval and naive above 0 in both."}}
runs = {}
for d in sorted((work / "sweep").iterdir()):
    if (d / "summary.json").exists():
        fields = dict(part.split("=") for part in d.name.split("__"))
        runs[fields["algo"], fields["dropout_mode"], int(fields["seed"])] = pd.read_csv(d / "metrics.csv")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
for ax, algo, title in zip(axes, ["sb3-ppo", "ppo"], ["SB3's PPO (sb3-ppo)", "the sandbox's PPO (ppo)"]):
    for mode in ["consistent", "naive", "rollout-eval", "off"]:  # off last, dashed: it lies on consistent's 0
        curves = np.stack([runs[algo, mode, s].first_ratio_dev.to_numpy() for s in SEEDS])
        steps = runs[algo, mode, SEEDS[0]].env_steps.to_numpy()
        mean, low, high = stats.t_band(curves)
        ax.plot(steps, mean, color=MODE_COLORS[mode], ls="--" if mode == "off" else "-", label=mode)
        ax.fill_between(steps, low, high, color=MODE_COLORS[mode], alpha=0.2, lw=0)
    ax.set_title(title)
    ax.set_xlabel("env steps")
axes[0].set_ylabel("first_ratio_dev = mean |r - 1|")
handles, labels = axes[0].get_legend_handles_labels()
order = [labels.index(m) for m in MODES]
fig.legend([handles[i] for i in order], MODES, title="dropout_mode", loc="outside right center")
plt.show()

# %% [markdown]
# The same numbers per run: the mean of `first_ratio_dev` and `first_clipfrac` over a run's updates, then the mean
# over seeds with its 95% t interval (`sandbox.stats.t_interval`).

# %%
rows = []
for algo in ["sb3-ppo", "ppo"]:
    for mode in MODES:
        per_seed = [runs[algo, mode, s] for s in SEEDS]
        row = {"algo": algo, "dropout_mode": mode}
        for col in ("first_ratio_dev", "first_clipfrac"):
            x = [m[col].mean() for m in per_seed]
            lo, hi, _ = stats.t_interval(x)
            row[col] = f"{np.mean(x):.4f} [{lo:.4f}, {hi:.4f}]" if len(x) > 1 else f"{np.mean(x):.4f}"
        rows.append(row)
mechanism = pd.DataFrame(rows).set_index(["algo", "dropout_mode"])
mechanism

# %%
def mean_of(algo, mode, col="first_ratio_dev"):
    return float(np.mean([runs[algo, mode, s][col].mean() for s in SEEDS]))


exact = max(mean_of(a, m) for a in ("sb3-ppo", "ppo") for m in ("off", "consistent"))
print(f"largest mean first_ratio_dev of an exact mode (off, consistent), either algorithm: {exact:.1e}")
print(f"SB3's own behaviour (rollout-eval): {mean_of('sb3-ppo', 'rollout-eval'):.4f}, "
      f"{100 * mean_of('sb3-ppo', 'rollout-eval', 'first_clipfrac'):.1f}% of the first minibatch clipped")
print(f"naive on SB3: {mean_of('sb3-ppo', 'naive'):.4f}; consistent on SB3: {mean_of('sb3-ppo', 'consistent'):.1e}")
ordered = {}
for algo in ("sb3-ppo", "ppo"):
    ordered[algo] = mean_of(algo, "naive") > mean_of(algo, "rollout-eval") > 1e3 * max(exact, 1e-12)
    print(f"{algo}: naive > rollout-eval > 1000 x the exact modes: {ordered[algo]}")

# %% [markdown]
# What the figure, the table and the printed lines show (p = 0.1; each point checked below):
#
# - **SB3's own behaviour is noisy.** In `rollout-eval`, SB3's PPO starts its updates with a mean |r − 1| above 0
#   and part of the first minibatch already outside the clip range: part of PPO's trust region is spent on noise
#   before the optimiser has moved. `naive` (dropout on while acting too, PyTorch's default if you never call
#   `eval()`) is noisier still.
# - **Consistent dropout fixes it inside SB3.** With the masks stored in SB3's rollout buffer and replayed in SB3's
#   `train()`, the first-minibatch ratio is 1 again (up to float rounding, at every update of every seed), as with
#   dropout off, while the policy keeps its dropout.
# - **The sandbox's PPO and SB3's PPO show the same mechanism at the same level**: the exact modes at 0, and each
#   noisy mode within a fifth of the other implementation's level.

# %%
def interval(algo, mode, col="first_ratio_dev"):
    return stats.mean_with_interval([runs[algo, mode, s][col].mean() for s in SEEDS], 3)


largest_exact = max(float(runs[a, m, s].first_ratio_dev.max()) for a in ("sb3-ppo", "ppo")
                    for m in ("off", "consistent") for s in SEEDS)
course.say(
    f"""In this run ({course.seed_names(SEEDS)}): in `rollout-eval`, SB3's PPO started its updates with a mean |r − 1| of
{interval("sb3-ppo", "rollout-eval")} (mean over the seeds, 95% interval) and
{100 * mean_of("sb3-ppo", "rollout-eval", "first_clipfrac"):.0f}% of the first minibatch clipped; `naive`
{interval("sb3-ppo", "naive")}, {100 * mean_of("sb3-ppo", "naive", "first_clipfrac"):.0f}% clipped. The sandbox's PPO:
{interval("ppo", "rollout-eval")} and {interval("ppo", "naive")}. The largest `first_ratio_dev` of any update of an
exact mode, either algorithm: {largest_exact:.1e}."""
)
course.claim(
    "naive is noisier than rollout-eval, and both far above the exact modes, on SB3 and on the sandbox",
    all(ordered.values()),
    str(ordered),
)
course.claim(
    "consistent dropout: the first-minibatch ratio is 1 again (up to float rounding), at every update of every seed",
    largest_exact < 1e-6,
    f"largest first_ratio_dev {largest_exact:.1e}",
    outcome=False,
)
level = {m: mean_of("sb3-ppo", m) / mean_of("ppo", m) for m in ("rollout-eval", "naive")}
course.claim(
    "the sandbox's PPO and SB3's PPO show the same mechanism at the same level (each noisy mode within a fifth)",
    all(0.8 < v < 1.25 for v in level.values()),
    ", ".join(f"{m}: SB3 / sandbox = {v:.2f}" for m, v in level.items()),
)

# %% [markdown]
# ### Outcomes: the report
#
# `write_report` writes `report.md`, `report.csv` and the figures into the sweep directory; here is its key table, task
# by task (a task is one algorithm on one environment). Each group is compared with its own algorithm's dropout-off
# group: a permutation test of the final returns, Holm-adjusted over the report's comparisons, a verdict only with
# five seeds or more on both sides.

# %%
table = write_report(work / "sweep", quiet=True)
print(key_table(table))

# %% mystnb={"image": {"alt": "Learning curves of the SB3 sweep on CartPole, one panel for the sandbox's PPO and one for SB3's: the return (20-episode mean) against env steps, one line per dropout mode, the mean over seeds with its 95% t band; the legends are on the right."}}
display(Image(str(work / "sweep" / "learning_curves.png")))

# %%
outcomes = table[["group", "final_mean", "mean_ci_low", "mean_ci_high", "p_holm", "verdict"]].copy()
outcomes.loc[table.baseline == "(baseline)", "verdict"] = "(baseline)"  # each algorithm's dropout-off group
outcomes.round(3)

# %% [markdown]
# Read the verdict column rather than the eye: with five seeds per group and six comparisons in the report, only a
# large effect can cross Holm's bar, and "not significant" says the seeds cannot tell the groups apart, not
# that they are equal (the report gives the smallest effect these seeds could detect, and the seeds a large one needs). These verdicts are this run's
# (below, in words); lesson 04 measures how often a 5-seed verdict comes out the other way on other seeds. What the
# mechanism section showed holds at every seed: the noisy modes spend part of the trust region on noise, the exact
# modes do not.

# %%
def outcome_line(task):
    rows_ = table[table.task == task].set_index("dropout_mode")
    off = rows_.loc["off"]
    return f"{task}: dropout off {off.final_mean:.0f} (mean final return; IQM {off.final_iqm:.0f}, {off.solved} of {off.runs} solved), " + ", ".join(
        f"{mode} {row.final_mean:.0f} (IQM {row.final_iqm:.0f}, P(improvement) {row.p_improvement:.2f}, Holm p "
        f"{row.p_holm:.2g}: *{row.verdict}*)"
        for mode, row in rows_.iterrows() if mode != "off"
    )


course.say("In this run:\n\n" + "\n".join(f"- {outcome_line(task)}" for task in dict.fromkeys(table.task)))

# %% [markdown]
# ## 5. In your own project
#
# - Replace `PPO` by `DropoutPPO` and pass `dropout_mode="consistent"` and `policy_kwargs=dict(dropout=p)` (add
#   `dropout_value=True` for the value net). Watch `dropout/first_ratio_dev` in SB3's logger: 0 means the ratio is
#   honest.
# - From the command line: `sandbox train --algo sb3-ppo --preset cartpole --dropout 0.1 --dropout-mode consistent`
#   writes the same run directory as the sandbox's PPO (`metrics.csv`, `episodes.csv`, `summary.json`, and a
#   `policy.pt` that `sandbox eval` reads), and `--tensorboard DIR` shows the rows in TensorBoard.
# - In a sweep spec, `algo = ["ppo", "sb3-ppo"]` puts both in one report, as above.
#
# ## Check yourself
#
# 1. SB3's PPO with a dropout policy and no change of yours: which of the four modes is it, and what would
#    `first_ratio_dev` read at the first update of a run?
# 2. Why is `first_ratio_dev` exactly 0 (up to rounding) in mode `consistent`, although the policy has dropout while
#    it acts and while it learns?
# 3. In `consistent` mode, where do the masks live between the rollout and the update, and who hands them back?
# 4. The SB3 arm with dropout off plays exactly the same episodes as plain SB3. Why does that matter for everything
#    else this lesson measured?
# 5. The report says "not significant" for a group. Does that mean dropout did nothing to it?
#
# <details>
# <summary>Answers</summary>
#
# 1. `rollout-eval`: `collect_rollouts` sets eval mode (no dropout while acting) and `train` sets train mode (fresh
#    masks in every update forward). `first_ratio_dev` is above 0 from the first update: the update's network is a
#    randomly thinned copy of the acting one. (It starts small, because a fresh policy is nearly uniform, and grows
#    as the policy sharpens.)
# 2. The update evaluates each transition with the very masks that chose its action, so it computes the same
#    function on the same input: the same log-probability, ratio 1. Only the matrix shapes differ (8 states at a
#    time while acting, a minibatch in the update), which can change the last bits of a float.
# 3. The policy's acting forward draws them and keeps them (`last_masks`); SB3's `collect_rollouts` then calls the
#    rollout buffer's `add`, which stores them next to the transition. In `train()`, the buffer hands each
#    minibatch's masks to the policy as it hands out the minibatch, and the policy's `evaluate_actions` replays them.
# 4. It shows that the instruments (the dropout layers at p = 0, the buffer and the callbacks, the metrics) change
#    nothing SB3 computes, so what the other modes measure is dropout's doing, not the instrumentation's.
# 5. No. It says the five seeds per group cannot tell the two apart at this budget once the test is corrected for the
#    number of comparisons; the effect may be smaller than what these seeds could detect (the report's detectable
#    |g|). Only *equivalent*, a test of its own (lesson 04), says the difference is small. The mechanism (the noisy
#    ratio) is certain.
#
# </details>

# %%
shutil.rmtree(work)  # the runs and the report were written to a temporary directory
print(f"this notebook ran in {time.perf_counter() - T0:.0f} s (FAST={FAST})")
