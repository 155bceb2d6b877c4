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
# # Lesson 05: GRPO on a toy language task
#
# GRPO (Shao et al. 2024, DeepSeekMath) is PPO without a value function: for every prompt it samples a *group* of G
# completions and scores each one against the others. This lesson runs it on the sandbox's tiny GPT-2 (2 layers,
# about 100k parameters), fine-tuned from a pretrained *reference* on word-level toy tasks.
#
# **Learning goals.** After this lesson you can
# - say what the pretrained reference is, and why RL starts from it;
# - compute GRPO's group advantages by hand, and say why a group whose rewards are all equal teaches nothing
#   (`zero_std_frac`);
# - say how each token aggregation (`grpo`, `bnpo`, `dr_grpo`) weighs a token, and recognise the length bias of
#   `grpo` on `lang:length`;
# - read the first update of a transformer with dropout: ratio noise (`first_ratio_dev`) and KL to the reference
#   (`kl_ref`) when the policy *is* the reference.
#
# **Assumes** lessons 02 and 03 (PPO's ratio and clipped surrogate; the four dropout modes) and a little PyTorch.
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 1.9
# min (114 s) of wall time, 1.8 min (111 s) of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 14 s (a check
# that the notebook works: what it trains is tiny, and its numbers mean nothing). The committed outputs are those of
# that full run.
#
# The first run also pretrains the references of `lang:reverse` and `lang:length` (5-15 s each, once; cached under
# `$SANDBOX_CACHE` or `~/.cache/dropout-rl-sandbox`); FAST mode pretrains them for 100 steps instead of 600 (worse,
# and cached apart from the full ones). A reference is the same on every seed set, as a downloaded model would be;
# `SANDBOX_SEED_SET` changes the seeds of the RL runs and of every draw the lesson makes.
#
# **Reading the numbers.** Sentences with a run's numbers in them are printed by the cells, from your run; a
# sentence that must hold on any run is checked by the cell under it (`sandbox.analysis.course.claim`), which stops the
# lesson, naming the sentence, if your run contradicts it.
#
# **The code you are reading about.** First the reading edition, `sandbox/reading/grpo_dropout.py`: GRPO on this
# lesson's `lang:reverse` in one file (the task, the tiny GPT-2 and its dropout masks, the groups, the update), with
# its pieces printed below from the file. The engine that runs this lesson writes the objective out in the docstring
# of `sandbox/algos/grpo.py` (`L_GRPO`); its pieces are `maths.group_advantages`, `maths.ppo_loss` and
# `maths.aggregate_loss` in `sandbox/maths.py`; the tasks and their rewards are in `sandbox/envs/lang_tasks.py`.
#
# Homework 4 (group advantages, token aggregation): `notebooks/homework/hw4_grpo_advantages.ipynb`.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

import sandbox
from sandbox import maths, reading, stats
from sandbox.analysis import course
from sandbox.dropout_modes import MODES
from sandbox.runs.pretrain import PretrainConfig, load_reference
from sandbox.algos.lang_rollout import sample_groups
from sandbox.envs.lang_tasks import completion_tokens, decode, make_task
from sandbox.plots import MODE_COLORS, OTHER_COLORS, use_style

FAST = os.environ.get("SANDBOX_FAST") == "1"
CI = "difference [CI at the verdict's level]"  # sandbox.stats' tables: the interval the verdict used
TO_OFF = "difference to off [CI at the verdict's level]"
SEEDS = course.seeds(2 if FAST else 5)  # [0, ..., 4]; SANDBOX_SEED_SET=2 shifts them to [1000, ..., 1004]
LEN_SEEDS = course.seeds(2 if FAST else 8)  # section 4's hypothesis test: 8 seeds per arm
SFT_STEPS = 100 if FAST else 600  # FAST: a reference pretrained for 100 steps only (worse, and cached apart)
TOKENS = 2_000 if FAST else 20_000  # sampled tokens per training run
torch.set_num_threads(1)  # the runs use one thread each (sandbox.train does the same); more only contend
use_style()
T0 = time.perf_counter()


def grpo(env, **kw):
    """One GRPO run from the task's pretrained reference (quiet, nothing written to disk)."""
    return sandbox.train(sandbox.Config(algo="grpo", env=env, sft_steps=SFT_STEPS, quiet=True, **kw))


def band(ax, runs, column, color, label):
    """The mean over seeds of a metric against the update number, with its 95% t interval as a band."""
    n = min(len(r.metrics) for r in runs)
    values = np.stack([r.metrics[column].to_numpy()[:n] for r in runs])  # (seeds, updates)
    ci = np.array([stats.t_interval(values[:, j])[:2] for j in range(n)])
    x = np.arange(1, n + 1)
    ax.plot(x, values.mean(0), color=color, label=label)
    ax.fill_between(x, ci[:, 0], ci[:, 1], color=color, alpha=0.2, lw=0)


print(f"FAST={FAST}: {course.seed_names(SEEDS)}, {TOKENS:,} tokens per run, reference pretrained for {SFT_STEPS} steps")

# %% [markdown]
# ## 1. The pretrained reference
#
# RL for language models does not start from random weights: it starts from a model that already writes in the
# right format (after pretraining and supervised fine-tuning), and keeps a frozen copy of it, the *reference*
# `pi_ref`. The sandbox does the same in miniature. `load_reference` trains the tiny GPT on a synthetic corpus
# that is well-formed but only partly right: for `lang:reverse` (`<bos> reverse: c a f >` should give `f a c`),
# half of the corpus answers are correct reversals and half are plausible mistakes (a copy, or two symbols
# swapped). The result is cached on disk, so this cell is instant after its first run.

# %%
task = make_task("reverse")
reference, ref_stats = load_reference(task, PretrainConfig(steps=SFT_STEPS))
print({k: ref_stats[k] for k in ("reference_reward", "reference_eos_rate", "steps")})

# %% [markdown]
# `reference_reward` is the mean reward of 512 sampled completions (the fraction of positions right), and
# `reference_eos_rate` the fraction that ended with `<eos>`: the reference is fluent in the format and partly
# right, which leaves RL something to improve.
#
# ## 2. A group, and its advantages
#
# GRPO samples G completions o_1..o_G of the same prompt q and compares their rewards R_i with each other:
#
# $$A_i = \frac{R_i - \mathrm{mean}(R_1..R_G)}{\mathrm{std}(R_1..R_G) + 10^{-4}}$$
#
# the same advantage for every token of o_i (`maths.group_advantages(rewards (n_groups, G), "group")`). No value
# network: the group's mean is the baseline. Two variants divide differently: `batch` by the standard deviation of
# the whole batch (TRL's `scale_rewards="batch"`), `none` not at all (Dr. GRPO, Liu et al. 2025, who argue that the
# division up-weights prompts that are too easy or too hard). The reading edition's version (printed from
# `sandbox/reading/grpo_dropout.py`):

# %%
reading.show("grpo_dropout", "group_advantages")

# %% [markdown]
# Here is one batch of the trainer's default size,
# 16 prompts x 8 completions, sampled from the reference with `sandbox.algos.lang_rollout.sample_groups`, the
# trainer's own sampler.

# %%
G = 8
torch.manual_seed(course.seed(0))
batch = sample_groups(reference, reference, task, np.random.default_rng(course.seed(0)), 16, G, 1.0, MODES["off"])
rewards = batch.rewards.view(-1, G)  # (16 prompts, G completions)
adv = {s: maths.group_advantages(rewards, s) for s in ("group", "batch", "none")}


def show_group(g):
    return (
        pd.DataFrame(
            {
                "completion": [decode(completion_tokens(c)) for c in batch.completions[g * G : (g + 1) * G]],
                "reward": rewards[g].numpy(),
                "A (group)": adv["group"][g].numpy(),
                "A (batch)": adv["batch"][g].numpy(),
                "A (none)": adv["none"][g].numpy(),
            }
        )
        .round(3)
        .rename_axis(f"prompt: {decode(batch.prompts[g * G])}")
    )


show_group(0)

# %%
all_equal = rewards.max(dim=1).values == rewards.min(dim=1).values
print(f"groups whose rewards are all equal: {int(all_equal.sum())} of {len(all_equal)}, "
      f"zero_std_frac = {all_equal.float().mean():.4f}")
print(f"largest |advantage| in those groups: {adv['group'][all_equal].abs().max().item() if all_equal.any() else None}")
print(f"largest |sum of a group's advantages|: {adv['group'].sum(dim=1).abs().max().item():.1e}")
show_group(int(all_equal.float().argmax())) if all_equal.any() else None

# %% [markdown]
# In each group the completions above the group's mean reward get A > 0 and those below A < 0, and the advantages
# of every group sum to 0 (up to float rounding): the group's mean is the baseline. `batch` scales the same
# differences by the whole batch's spread, `none` leaves them in reward units. A group whose completions all got
# the same reward (the second table, when this batch has one) has advantages of exactly 0.

# %%
first = adv["group"][0]
course.say(
    f"""In this batch, group 0's prompt is `{decode(batch.prompts[0])}`: its rewards
{", ".join(f"{r:.2f}" for r in sorted(set(rewards[0].tolist()), reverse=True))} get the advantages
{", ".join(f"{a:+.2f}" for a in sorted(set(first.round(decimals=2).tolist()), reverse=True))} with `group`
(with `batch`: {adv["batch"][0].max():+.2f} to {adv["batch"][0].min():+.2f}). {int(all_equal.sum())} of the 16
groups had all-equal rewards: `zero_std_frac` = {all_equal.float().mean():.4f}."""
)
course.claim(
    "the advantages of every group sum to 0 (up to float rounding)",
    adv["group"].sum(dim=1).abs().max().item() < 1e-4,
    f"largest |sum| {adv['group'].sum(dim=1).abs().max().item():.1e}",
    outcome=False,
)
course.claim(
    "a group whose completions all got the same reward has advantages of exactly 0",
    not all_equal.any() or adv["group"][all_equal].abs().max().item() == 0,
    f"{int(all_equal.sum())} such groups",
    outcome=False,
)

# %% [markdown]
# ## 3. `zero_std_frac`: the signal dries up as the policy improves
#
# A group whose G rewards are all equal has advantage 0 for every token: its completions add nothing to the
# gradient (only to the KL term, when there is one). `zero_std_frac` in the metrics is the fraction of such groups
# in each batch. With a 0/1 reward and a prompt the policy solves with probability p, a group of G is all-equal
# with probability p^G + (1 - p)^G: likely when p is near 0 or near 1. So the better the policy gets, the less of
# each batch teaches it anything.
#
# Below: GRPO on `lang:reverse` with dropout off (so that only GRPO's mechanics are at work; the dropout modes
# come in section 5), with the dense reward (fraction of positions right) and the sparse one (`sparse=True`: 1 for
# an exact match, else 0). Lines are the mean over seeds; bands their 95% t interval.

# %% mystnb={"image": {"alt": "Two panels against the update of GRPO on the reverse task with dropout off, the dense reward (fraction of positions right) against the sparse one (exact match), the mean over seeds with its 95% t band. Left: the batch mean reward. Right: zero_std_frac, the fraction of groups whose completions all got the same reward and so carry no learning signal."}}
runs_zsf = {}
for sparse in (False, True):
    runs_zsf[sparse] = [grpo("lang:reverse", dropout_mode="off", sparse=sparse, seed=s, total_steps=TOKENS)
                        for s in SEEDS]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
for sparse, color in zip((False, True), OTHER_COLORS):
    label = "sparse (exact match)" if sparse else "dense (fraction right)"
    band(axes[0], runs_zsf[sparse], "reward_mean", color, label)
    band(axes[1], runs_zsf[sparse], "zero_std_frac", color, label)
axes[0].set(xlabel="update", ylabel="batch mean reward", title="reward")
axes[1].set(xlabel="update", ylabel="zero_std_frac", title="groups with no signal")
axes[0].legend(loc="lower right")
plt.show()

rows = []
for sparse, runs in runs_zsf.items():
    rows.append({"reward": "sparse" if sparse else "dense",
                 "reward, first update": stats.mean_with_interval([r.metrics.reward_mean.iloc[0] for r in runs]),
                 "reward, last 5 updates": stats.mean_with_interval([r.metrics.reward_mean.iloc[-5:].mean() for r in runs]),
                 "zero_std_frac, first update": stats.mean_with_interval([r.metrics.zero_std_frac.iloc[0] for r in runs]),
                 "zero_std_frac, last 5 updates": stats.mean_with_interval([r.metrics.zero_std_frac.iloc[-5:].mean() for r in runs])})
print(f"updates per run: {sorted({len(r.metrics) for runs in runs_zsf.values() for r in runs})}")
pd.DataFrame(rows).set_index("reward")

# %% [markdown]
# With either reward, the reward rises and so does `zero_std_frac`: the better the policy, the more groups carry no
# signal (checked below on every run). The sparse reward starts lower: the reference gets only part of the answers
# exactly right. (A t interval that dips below 0 for a fraction is the t interval's symmetric shape at 5 seeds, not a
# negative fraction.) DAPO's "dynamic sampling" (`--drop-equal-groups` leaves such groups out of the loss) and larger
# groups are the usual answers; neither adds signal, they only stop the empty groups from diluting the loss.

# %%
def first_and_last(runs, column):
    return [r.metrics[column].iloc[0] for r in runs], [r.metrics[column].iloc[-5:].mean() for r in runs]


lines = []
for sparse, runs in runs_zsf.items():
    (r0, r1), (z0, z1) = first_and_last(runs, "reward_mean"), first_and_last(runs, "zero_std_frac")
    lines.append(
        f"- {'sparse' if sparse else 'dense'} reward: the batch mean reward went from {np.mean(r0):.3f} at the first "
        f"update to {np.mean(r1):.3f} over the last five, `zero_std_frac` from {np.mean(z0):.3f} to {np.mean(z1):.3f}"
    )
    course.claim(
        f"with the {'sparse' if sparse else 'dense'} reward, the reward rises and so does zero_std_frac",
        np.mean(r1) > np.mean(r0) and np.mean(z1) > np.mean(z0),
        f"reward {np.mean(r0):.3f} -> {np.mean(r1):.3f}, zero_std_frac {np.mean(z0):.3f} -> {np.mean(z1):.3f}",
    )
course.say(
    f"In this run ({len(SEEDS)} seeds, {len(runs_zsf[False][0].metrics)} updates per run), means over the seeds:\n\n"
    + ";\n".join(lines)
    + "."
)

# %% [markdown]
# ## 4. Token aggregation, and the length bias of `grpo`
#
# The clipped loss is per token; `maths.aggregate_loss(per_token (B, T), mask (B, T), mode, max_len)` turns it into
# one number. With L_it the loss of token t of completion i and |o_i| its length:
#
# | `--loss-agg` | loss | weight of one token of o_i |
# |---|---|---|
# | `grpo` (DeepSeekMath) | mean over sequences of (mean over o_i's tokens) | 1 / (B · \|o_i\|) |
# | `bnpo` | sum over all tokens / number of tokens in the batch | 1 / sum_j \|o_j\| |
# | `dr_grpo` (Dr. GRPO) | sum over all tokens / (B · max_len), max_len a constant | 1 / (B · max_len) |
#
# The reading edition writes the three in a few lines (for `lang:reverse`, whose longest completion `MAX_NEW` is 7):

# %%
reading.show("grpo_dropout", "aggregate_loss")

# %% [markdown]
# The weights are the gradient of the aggregated loss with respect to each token's loss, so autograd reads them
# off exactly (no training here: the same numbers on every run). A batch of two completions, 2 and 10 tokens long,
# `max_len` 16 (lang:length's limit):

# %%
lengths = torch.tensor([2, 10])
n = make_task("length").max_new_tokens  # 16
mask = torch.arange(n)[None, :] < lengths[:, None]
rows = []
for mode in ("grpo", "bnpo", "dr_grpo"):
    per_token = torch.ones(2, n, requires_grad=True)
    (weights,) = torch.autograd.grad(maths.aggregate_loss(per_token, mask, mode, max_len=n), per_token)
    rows.append({"loss_agg": mode, "one token, short (2)": weights[0, 0].item(),
                 "one token, long (10)": weights[1, 0].item(),
                 "whole completion, short": weights[0].sum().item(), "whole completion, long": weights[1].sum().item()})
pd.DataFrame(rows).set_index("loss_agg").round(4)

# %% [markdown]
# With `grpo` every *completion* weighs the same (0.5 each), so a token of the long completion weighs five times
# less than a token of the short one. If both are wrong (A < 0), the long one is pushed down five times less per
# token: `grpo` punishes long wrong answers less than short wrong ones, a bias towards length (Liu et al. 2025,
# "Understanding R1-Zero-like training", who call it the length bias and propose `dr_grpo`). `bnpo` and `dr_grpo`
# give every token the same weight; they differ by a constant factor, which Adam's step mostly ignores.
#
# **Hypothesis** (Liu et al. 2025): with `grpo` aggregation, completions are longer than with `bnpo` or `dr_grpo`.
# We test it on `lang:length` (reward -|words - 8| / 8; the reference writes 1-15 words), dropout off, 8 seeds per
# aggregation.

# %% mystnb={"image": {"alt": "Two panels against the update of GRPO on the length task for three ways of averaging the loss over tokens (grpo, bnpo, dr_grpo), the mean over seeds with its 95% t band. Left: tokens per completion, with a dotted line at the target of 8 words plus the end token. Right: the batch mean reward (0 means exactly 8 words)."}}
AGGS = ("grpo", "bnpo", "dr_grpo")
runs_len = {agg: [grpo("lang:length", dropout_mode="off", loss_agg=agg, seed=s, total_steps=TOKENS) for s in LEN_SEEDS]
            for agg in AGGS}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
for agg, color in zip(AGGS, OTHER_COLORS):
    band(axes[0], runs_len[agg], "completion_len", color, agg)
    band(axes[1], runs_len[agg], "reward_mean", color, agg)
axes[0].axhline(9, color="grey", ls=":", lw=1)
axes[0].set(xlabel="update", ylabel="tokens per completion (<eos> included)", title="length (dotted: 8 words + <eos>)")
axes[1].set(xlabel="update", ylabel="batch mean reward", title="reward (0 = exactly 8 words)")
axes[0].legend()
plt.show()

EARLY = slice(1, 6)  # updates 2-6: the update after the first, and the four after it
early = {agg: [r.metrics.completion_len.iloc[EARLY].mean() for r in runs] for agg, runs in runs_len.items()}
late = {agg: [r.metrics.completion_len.iloc[-5:].mean() for r in runs] for agg, runs in runs_len.items()}
final = {agg: [r.metrics.reward_mean.iloc[-5:].mean() for r in runs] for agg, runs in runs_len.items()}
print(f"updates per run: {sorted({len(r.metrics) for runs in runs_len.values() for r in runs})}")
pd.DataFrame({"completion_len, updates 2-6": {a: stats.mean_with_interval(v, 2) for a, v in early.items()},
              "completion_len, last 5 updates": {a: stats.mean_with_interval(v, 2) for a, v in late.items()},
              "reward, last 5 updates": {a: stats.mean_with_interval(v) for a, v in final.items()}})

# %% [markdown]
# Each comparison below is a permutation test of the difference of the seed means, Holm's correction over the three
# comparisons of each metric, and the difference's interval at the level the verdict used (the test inverted at the
# row's Holm level: it excludes 0 exactly when the verdict is *higher* or *lower*), all from
# `sandbox.stats.compare_family` (lesson 04 explains the words; below 5 seeds per arm there is no verdict). Why one family per
# metric and not one for the whole table: with 5 seeds against 5, the smallest two-sided p a permutation test can
# give is 2 / 252 ≈ 0.008 (only the two most extreme of the 252 splits of 10 runs into 5 + 5), and Holm multiplies
# the smallest p by the number of comparisons, so a family of 9 could never reach 0.05 however large the effect.
# With 8 seeds against 8 the floor is 2 / 12,870 ≈ 0.00016.

# %%
rows = []
for metric, values in {"completion_len, updates 2-6": early, "completion_len, last 5 updates": late,
                       "reward, last 5 updates": final}.items():
    pairs = [("grpo", "bnpo"), ("grpo", "dr_grpo"), ("bnpo", "dr_grpo")]
    decided = stats.compare_family([(values[a], values[b]) for a, b in pairs], higher_is_better=None)
    for (a, b), v in zip(pairs, decided):
        rows.append({"metric": metric, "comparison": f"{a} - {b}",
                     CI: f"{v.comparison.diff:.3f} [{v.interval.low:.3f}, {v.interval.high:.3f}]",
                     "p (Holm)": float(f"{v.p_holm:.2g}"), "verdict": v.word, "detectable |g|": round(v.detectable, 2)})
agg_tests = pd.DataFrame(rows).set_index(["metric", "comparison"])
agg_tests

# %% [markdown]
# What the runs show:
#
# - **The hypothesis holds in the early phase** (checked below on every run): over updates 2-6, `grpo`'s completions
#   are longer than `bnpo`'s and `dr_grpo`'s, significantly after Holm's correction. The reference writes 1-15 words,
#   so a group holds completions that are too short and too long, both with A < 0; the too-long ones have more
#   tokens, and `grpo` pushes each of them down less. Its length falls slowly, while `bnpo` and `dr_grpo` cut the
#   long tail at once and overshoot below the target before coming back.
# - **Later the lengths nearly meet**, and what is left of the difference, and of the reward `grpo`'s slow start
#   costs it at this budget, is small against the spread of the seeds: this run's verdicts are printed below.
# - `bnpo` and `dr_grpo` are nearly the same run: they differ by a constant factor in the loss, which Adam's
#   normalised step all but removes (checked below: neither higher nor lower than the other on any measure).

# %%
def cell(metric, pair):
    row = agg_tests.loc[(metric, pair)]
    return f"{row[CI]}, Holm p {row['p (Holm)']:g}: *{row['verdict']}*"


course.say(
    f"""In this run ({len(LEN_SEEDS)} seeds per aggregation, {len(runs_len["grpo"][0].metrics)} updates per run), `grpo`
minus `bnpo` and `grpo` minus `dr_grpo`, in tokens and reward:

- completion length over updates 2-6: {np.mean(early["grpo"]):.2f} against {np.mean(early["bnpo"]):.2f} and
  {np.mean(early["dr_grpo"]):.2f} tokens; {cell("completion_len, updates 2-6", "grpo - bnpo")} and
  {cell("completion_len, updates 2-6", "grpo - dr_grpo")};
- over the last 5 updates: {np.mean(late["grpo"]):.2f} against {np.mean(late["bnpo"]):.2f} and
  {np.mean(late["dr_grpo"]):.2f}; {cell("completion_len, last 5 updates", "grpo - bnpo")} and
  {cell("completion_len, last 5 updates", "grpo - dr_grpo")};
- reward over the last 5 updates: {np.mean(final["grpo"]):.3f} against {np.mean(final["bnpo"]):.3f} and
  {np.mean(final["dr_grpo"]):.3f}; {cell("reward, last 5 updates", "grpo - bnpo")} and
  {cell("reward, last 5 updates", "grpo - dr_grpo")}."""
)
early_verdicts = [agg_tests.loc[("completion_len, updates 2-6", pair), "verdict"] for pair in ("grpo - bnpo", "grpo - dr_grpo")]
course.claim(
    "over updates 2-6, grpo's completions are longer than bnpo's and dr_grpo's, significantly after Holm's correction",
    early_verdicts == ["higher", "higher"],
    f"verdicts {early_verdicts}",
)
same = agg_tests.xs("bnpo - dr_grpo", level="comparison").verdict
course.claim(
    "bnpo and dr_grpo: neither higher nor lower than the other on any measure",
    all(not v in ("higher", "lower") for v in same),
    f"verdicts {same.tolist()}",
)

# %% [markdown]
# ## 5. Dropout in a transformer, at the first update
#
# The tiny GPT has GPT-2's three dropouts (on the embeddings, on the attention probabilities, on the residual
# branches), p = 0.1 by default, and the same four dropout modes as the MLP of lesson 03. At the first update the
# policy *is* the reference: nothing has been learnt yet, so an honest measurement must read
#
# - ratio r_it = pi_theta(o_it | ...) / pi_old(o_it | ...) = 1 for every token: `first_ratio_dev` = mean |r - 1|
#   = 0 and `first_clipfrac` = 0 (before the first gradient step);
# - `kl_ref` = mean over completions of sum_t (log pi_old(o_it) - log pi_ref(o_it)) = 0 (k1 summed per completion;
#   the reference is always evaluated in eval mode, without dropout).
#
# Where each dropout mask comes from, in the reading edition: one forward pass's dropout uses the stored masks of the
# positions it computes, else fresh ones (train mode), else none; consistent dropout draws the masks of every
# position of every sequence before sampling; and `logp_old` is the sampler's own log-probability only where its
# masks are gone (`naive`), else one forward over the whole sequences, the very numbers the update starts from:

# %%
display(reading.show("grpo_dropout", "dropout_at"))
reading.show("grpo_dropout", "# ALGO LOGIC: sample", "# ALGO LOGIC: group advantages")

# %% [markdown]
# `total_steps=1` stops each run after its first update (the budget is counted in sampled tokens).

# %%
rows = []
for mode in MODES:
    for s in SEEDS:
        m = grpo("lang:reverse", dropout=0.1, dropout_mode=mode, seed=s, total_steps=1).metrics.iloc[0]
        rows.append({"mode": mode, "seed": s, **m[["first_ratio_dev", "first_clipfrac", "kl_ref"]].to_dict()})
first = pd.DataFrame(rows)
print(f"seed {SEEDS[0]}:")
first[first.seed == SEEDS[0]].set_index("mode").drop(columns="seed").round(3)

# %%
summary = first.groupby("mode", sort=False)[["first_ratio_dev", "first_clipfrac", "kl_ref"]]
print(f"mean over seeds {SEEDS} [95% t interval]:")
summary.agg(lambda x: stats.mean_with_interval(x.to_numpy()))

# %%
print("min - max over the seeds:")
summary.agg(lambda x: f"{x.min():.3f} - {x.max():.3f}")

# %% [markdown]
# The user guide's [Language tasks](../docs/guide/language-tasks.md) page has the same table for one seed. What
# holds at every seed (checked below):
#
# - `off` and `consistent` have r = 1 for every token (up to float rounding); `rollout-eval` and `naive` do not, and
#   `naive`, whose two forward passes are both random, is the noisier. Part of the batch is clipped *before any
#   gradient step*: its gradient is cut by noise alone.
# - `kl_ref` is 0 in `off` and `rollout-eval` (the sampler has no dropout, like the reference) but above 0 in `naive`
#   and `consistent`: with beta > 0 the KL term pulls towards the reference a policy that has not moved from it.
# - `consistent` fixes the ratio, not the KL: its sampler still has dropout, the reference does not.

# %%
by_mode = first.groupby("mode", sort=False)
mean, low, high = by_mode.mean(), by_mode.min(), by_mode.max()
course.say(
    f"""In this run (p = 0.1, {course.seed_names(SEEDS)}): `first_ratio_dev` {mean.first_ratio_dev["rollout-eval"]:.3f}
in `rollout-eval` and {mean.first_ratio_dev["naive"]:.3f} in `naive`, with {mean.first_clipfrac["rollout-eval"]:.3f}
and {mean.first_clipfrac["naive"]:.3f} of the tokens clipped before any step; `kl_ref`
{mean.kl_ref["naive"]:.3f} nats per completion in `naive` and {mean.kl_ref["consistent"]:.3f} in `consistent`
(from {min(low.kl_ref["naive"], low.kl_ref["consistent"]):.2f} to {max(high.kl_ref["naive"], high.kl_ref["consistent"]):.2f}
across seeds)."""
)
exact = first[first["mode"].isin(["off", "consistent"])]
course.claim(
    "off and consistent have r = 1 for every token (up to float rounding), and first_clipfrac 0",
    exact.first_ratio_dev.max() < 1e-6 and exact.first_clipfrac.max() == 0,
    f"largest first_ratio_dev {exact.first_ratio_dev.max():.1e}",
    outcome=False,
)
course.claim(
    "rollout-eval and naive do not have r = 1, and naive is the noisier",
    mean.first_ratio_dev["naive"] > mean.first_ratio_dev["rollout-eval"] > 0.01,
    f"{mean.first_ratio_dev['rollout-eval']:.3f} and {mean.first_ratio_dev['naive']:.3f}",
)
course.claim(
    "kl_ref is 0 in off and rollout-eval but above 0 in naive and consistent",
    high.kl_ref["off"] == 0 and high.kl_ref["rollout-eval"] == 0 and min(low.kl_ref["naive"], low.kl_ref["consistent"]) > 0,
    f"kl_ref per mode, min-max: " + ", ".join(f"{m} {low.kl_ref[m]:.3f}-{high.kl_ref[m]:.3f}" for m in MODES),
    outcome=False,
)

# %% [markdown]
# How does this grow with p? The same first update at p = 0.05 to 0.3 (mode `off` is 0 at every p and is left out):

# %% mystnb={"image": {"alt": "Two panels against the dropout p (0.05 to 0.3) of GRPO on a language task before any update step, one line per dropout mode, the mean over seeds with 95% interval bars. Left: first_ratio_dev, at 0 for consistent and growing with p for rollout-eval and naive. Right: kl_ref, the KL of the sampling policy to the reference, at 0 for rollout-eval (it samples without dropout) and growing with p for naive and consistent."}}
PS = [0.1, 0.3] if FAST else [0.05, 0.1, 0.2, 0.3]
rows = []
for mode in ("rollout-eval", "naive", "consistent"):
    for p in PS:
        for s in SEEDS:
            m = grpo("lang:reverse", dropout=p, dropout_mode=mode, seed=s, total_steps=1).metrics.iloc[0]
            rows.append({"mode": mode, "p": p, "seed": s, **m[["first_ratio_dev", "first_clipfrac", "kl_ref"]].to_dict()})
sweep = pd.DataFrame(rows)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
for mode, d in sweep.groupby("mode", sort=False):
    for ax, col in zip(axes, ("first_ratio_dev", "kl_ref")):
        g = d.groupby("p")[col]
        ci = np.array([stats.t_interval(v.to_numpy())[:2] for _, v in g])
        ax.errorbar(PS, g.mean(), yerr=[g.mean() - ci[:, 0], ci[:, 1] - g.mean()], color=MODE_COLORS[mode],
                    marker="o", capsize=3, label=mode)
axes[0].set(xlabel="dropout p", ylabel="first_ratio_dev = mean |r - 1|", title="ratio noise before any step")
axes[1].set(xlabel="dropout p", ylabel="kl_ref (nats per completion)", title="KL to the reference before any step")
axes[0].legend()
plt.show()
sweep.groupby(["mode", "p"], sort=False)[["first_ratio_dev", "first_clipfrac", "kl_ref"]].mean().unstack("p").round(3)

# %% [markdown]
# The ratio noise grows with p, about linearly, and `rollout-eval`'s stays below `naive`'s, whose two forward passes
# are both random. `kl_ref` grows faster than linearly, and `naive` and `consistent` read about the same KL at every p
# (their intervals overlap): that KL is the distance between a sampler with dropout and one without, whatever the
# mode does in the update. All three are checked below.

# %%
m = sweep.groupby(["mode", "p"])[["first_ratio_dev", "kl_ref"]].mean()
ratio = {mode: m.first_ratio_dev[mode].to_numpy() for mode in ("rollout-eval", "naive")}
kl = {mode: m.kl_ref[mode].to_numpy() for mode in ("naive", "consistent")}
course.say(
    f"""In this run: `first_ratio_dev` went from {ratio["naive"][0]:.3f} at p = {PS[0]:g} to {ratio["naive"][-1]:.3f}
at p = {PS[-1]:g} in `naive`, and from {ratio["rollout-eval"][0]:.3f} to {ratio["rollout-eval"][-1]:.3f} in
`rollout-eval`; `kl_ref` from {min(k[0] for k in kl.values()):.2f}-{max(k[0] for k in kl.values()):.2f} nats per
completion at p = {PS[0]:g} to {min(k[-1] for k in kl.values()):.2f}-{max(k[-1] for k in kl.values()):.2f} at
p = {PS[-1]:g} (`naive` and `consistent`)."""
)
course.claim(
    "the ratio noise grows with p, and rollout-eval's stays below naive's",
    all(np.all(np.diff(r) > 0) for r in ratio.values()) and np.all(ratio["rollout-eval"] < ratio["naive"]),
    f"naive {np.round(ratio['naive'], 3).tolist()}, rollout-eval {np.round(ratio['rollout-eval'], 3).tolist()}",
)
course.claim(
    "kl_ref grows faster than linearly in p",
    all(k[-1] / k[0] > PS[-1] / PS[0] for k in kl.values()),
    ", ".join(f"{mode}: x{k[-1] / k[0]:.1f} for p x{PS[-1] / PS[0]:g}" for mode, k in kl.items()),
)
overlap = []
for p_ in PS:
    (lo_n, hi_n, _), (lo_c, hi_c, _) = (
        stats.t_interval(sweep[(sweep["mode"] == mode) & (sweep.p == p_)].kl_ref) for mode in ("naive", "consistent")
    )
    overlap.append(bool(lo_n <= hi_c and lo_c <= hi_n))
course.claim(
    "naive and consistent read about the same KL at every p (their intervals overlap)",
    all(overlap),
    f"the two 95% t intervals overlap at {sum(overlap)} of {len(PS)} values of p",
)

# %% [markdown]
# ## 6. And over training?
#
# The first update shows the mechanism. Whether it changes the outcome takes training and seeds: GRPO on
# `lang:reverse`, p = 0.1, beta 0, 12k tokens, every mode (the GRPO half of `make demo`, at beta 0 and with 5 seeds
# per mode instead of 10). Five seeds per mode are enough for the direction of the largest effect, not for every
# verdict: lesson 04 measures how often a 5-seed verdict comes out the other way on other seeds.

# %% mystnb={"image": {"alt": "The batch mean reward of GRPO on the reverse task at p = 0.1 against the update, one line per dropout mode, the mean over seeds with its 95% t band, and a dotted line at the threshold 0.9."}}
DEMO_TOKENS = 1_500 if FAST else 12_000
runs_mode = {mode: [grpo("lang:reverse", dropout=0.1, dropout_mode=mode, seed=s, total_steps=DEMO_TOKENS) for s in SEEDS]
             for mode in MODES}
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for mode, runs in runs_mode.items():
    band(ax, runs, "reward_mean", MODE_COLORS[mode], mode)
ax.axhline(task.threshold, color="grey", ls=":", lw=1)
ax.set(xlabel="update", ylabel="batch mean reward", title="GRPO on lang:reverse, p = 0.1 (dotted: threshold 0.9)")
ax.legend(loc="lower right")
plt.show()

final_mode = {mode: [r.summary["final_reward"] for r in runs] for mode, runs in runs_mode.items()}
others = [mode for mode in MODES if mode != "off"]
decided = dict(zip(others, stats.compare_family([(final_mode[mode], final_mode["off"]) for mode in others])))
mode_table = pd.DataFrame([{"mode": mode, "final reward [95% CI]": stats.mean_with_interval(final_mode[mode]),
               "seeds that reached 0.9": sum(r.summary["solved_at_s"] is not None for r in runs_mode[mode]),
               TO_OFF: "-" if mode == "off" else
               f"{decided[mode].comparison.diff:.3f} [{decided[mode].interval.low:.3f}, {decided[mode].interval.high:.3f}]",
               "verdict vs off": "baseline" if mode == "off" else decided[mode].word}
              for mode in MODES]).set_index("mode")
mode_table

# %% [markdown]
# `naive` ends below dropout off (checked below, as a direction: the mean of its seeds below the mean of off's). The
# other modes' verdicts are this run's, printed below; `make demo` runs the same comparison with 10 seeds per mode
# (with the KL term at beta 0.04). Where `consistent`, whose ratio is exact, also ends below `off`, the noisy ratio is
# not the only price of dropout here: the sampler itself is noisier (section 5's KL), and every update sees a thinned
# network.

# %%
course.say(
    "In this run: "
    + "; ".join(
        f"`{mode}` ended at {mode_table.loc[mode, 'final reward [95% CI]']}, {mode_table.loc[mode, 'seeds that reached 0.9']} "
        f"of {len(SEEDS)} seeds reached 0.9"
        + ("" if mode == "off" else f", difference to `off` {mode_table.loc[mode, TO_OFF]}: "
           f"*{mode_table.loc[mode, 'verdict vs off']}*")
        for mode in MODES
    )
    + "."
)
course.claim(
    "naive ends below dropout off",
    np.mean(final_mode["naive"]) < np.mean(final_mode["off"]),
    f"mean final reward {np.mean(final_mode['naive']):.3f} against {np.mean(final_mode['off']):.3f}",
)

# %% [markdown]
# ## Check yourself
#
# 1. A group's rewards are (1, 1, 1, 0, 1, 1, 1, 1). Which completion gets the largest |advantage| with
#    `scale_rewards="group"`, and roughly how large is it? What changes with `none`?
# 2. Why does a group of 8 equal rewards contribute nothing to the clipped term of the loss, and what could still
#    move its completions' probabilities?
# 3. Your policy solves 95% of the prompts of a sparse-reward task. What fraction of groups of 8 has no signal?
# 4. Two wrong completions, 3 and 12 tokens long, same advantage. Under `grpo` aggregation, how much more is each
#    token of the short one pushed down than each token of the long one? Under `bnpo`?
# 5. In mode `consistent` the first update's ratio is exactly 1, yet `kl_ref` is above 0. Why? And why is
#    `kl_ref` 0 in `rollout-eval`, whose ratio is noisy?
# 6. Section 6 compares modes with 5 seeds each. What would you need before claiming that `consistent` and `off`
#    end at different rewards, if their intervals overlapped?

# %% [markdown]
# <details>
# <summary>Answers</summary>
#
# 1. The 0: its advantage is (0 - 0.875) / (std + 1e-4), with the sample std of the group
#    sqrt(8 · 0.875 · 0.125 / 7) ≈ 0.354, so about -2.47; each of the seven 1s gets 0.125 / 0.354 ≈ 0.35. With
#    `none` there is no division: -0.875 and +0.125. Check it with
#    `maths.group_advantages(torch.tensor([[1., 1, 1, 0, 1, 1, 1, 1]]), "group")`.
# 2. Every advantage is R - mean(R) = 0, so every token's clipped term is -min(r · 0, clip(r) · 0) = 0 and has no
#    gradient. Only the other terms of the loss move them: the KL to the reference (beta > 0) and an entropy bonus.
# 3. 0.95^8 + 0.05^8 ≈ 0.66: two groups in three teach nothing.
# 4. Under `grpo` each token of o_i weighs 1 / (B · |o_i|), so the short one's tokens are pushed 12 / 3 = 4 times
#    harder. Under `bnpo` every token weighs the same (1 / number of tokens), so 1 time: the long completion gets
#    4 times more total push, spread over 4 times more tokens.
# 5. The sampler has dropout (its masks are stored and replayed, so the update sees the same network: r = 1), but
#    the reference is evaluated without dropout: the sampling policy with masks is a different distribution from
#    the reference, and k1 measures that. In `rollout-eval` the sampler runs in eval mode, exactly like the
#    reference, so the two agree; the noise only enters in the update's forward pass, with fresh masks.
# 6. A test, not a look at the intervals: `stats.compare` (permutation test, Welch's interval of the difference),
#    Holm's correction over all the comparisons you make, and enough seeds: `stats.seeds_needed(effect_size)`
#    says how many per arm would give 80% power for the effect you observed.
#
# </details>

# %%
print(f"notebook ran in {time.perf_counter() - T0:.0f} s")
