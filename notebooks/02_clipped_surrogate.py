# %% [markdown]
# # Lesson 02: the clipped surrogate. Ratio, clipping, KL
#
# **Learning goals.** After this lesson you can
#
# 1. draw PPO's clipped objective against the ratio r for a positive and a negative advantage, and say where its
#    gradient is zero;
# 2. read `clipfrac` (and know what it does *not* count);
# 3. explain the k3 estimator behind `approx_kl`, and why PPO uses it rather than the plain log-ratio;
# 4. say what `target_kl` does to an update, and measure what it did on CartPole;
# 5. explain asymmetric clipping (eps_low / eps_high, DAPO's "clip-higher") and where each bound acts.
#
# **Assumes.** Lesson 00 (a run and its metrics) and lesson 01 (advantages). The policy gradient idea: raise the
# probability of actions with positive advantage, lower it for negative ones.
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 3.0
# min (182 s) of wall time, 3.0 min (180 s) of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 9 s (a check
# that the notebook works: what it trains is tiny, and its numbers mean nothing). The committed outputs are those of
# that full run.
#
# **Reading the numbers.** Sentences with a run's numbers in them are printed by the cells, from your run; a
# sentence that must hold on any run is checked by the cell under it (`sandbox.analysis.course.claim`), which stops the
# lesson, naming the sentence, if your run contradicts it.
#
# **Read along:** first the reading edition, `sandbox/reading/ppo_dropout.py`, PPO in one file: its
# `clipped_surrogate`, and its update loop (epochs, minibatches, `approx_kl`, `clipfrac`, `target_kl`), both printed
# below from the file. Then the engine that runs this lesson: `ppo_loss` and `kl_k3` in `sandbox/maths.py`;
# `ppo_objective` in `sandbox/algos/ppo.py` (the loss of one minibatch); `Learner.optimise` in `sandbox/algos/learner.py` (the
# epochs, the minibatches, `target_kl`); `update_metrics` in `sandbox/algos/diagnostics.py` (how `clipfrac` and `approx_kl`
# are measured).
#
# Homework 2 (the clipped surrogate and the value loss): `notebooks/homework/hw2_clipped_losses.ipynb`.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import sandbox
from sandbox import maths, reading, stats
from sandbox.analysis import course
from sandbox.plots import OTHER_COLORS, use_style

use_style()
FAST = os.environ.get("SANDBOX_FAST") == "1"
CI = "difference [CI at the verdict's level]"  # sandbox.stats' tables: the interval the verdict used
STEPS = 4_096 if FAST else 60_000
SEEDS = course.seeds(1 if FAST else 5)  # [0, ..., 4]; SANDBOX_SEED_SET=2 shifts them to [1000, ..., 1004]
print(f"FAST={FAST}: {len(SEEDS)} seeds of {STEPS:,} steps per setting ({course.seed_names(SEEDS)})")

# %% [markdown]
# ## 1. The objective against the ratio
#
# The data were collected by the old policy; the update changes the policy and asks how the new one would have done
# on them. The ratio r_t = pi_theta(a_t | s_t) / pi_old(a_t | s_t) reweights each sample, and PPO's objective
# (Schulman et al. 2017), maximised, is
#
# $$L^{CLIP}(\theta) = \mathbb{E}_t\big[\min\big(r_t A_t,\ \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\,A_t\big)\big]$$
#
# `maths.ppo_loss(ratio, advantages, clip_coef, clip_coef_high=None)` returns minus this, per sample (a loss to
# minimise). Below: the objective (= -`ppo_loss`) and its gradient with respect to r, both from the package function,
# the gradient by autograd.

# %% mystnb={"image": {"alt": "Four panels of PPO's clipped objective at eps = 0.2 against the ratio r from 0 to 2, the band [0.8, 1.2] shaded. Top: the objective min(r A, clip(r) A) and the unclipped r A (dotted). For A = +1 it rises with r up to 1.2 and is flat beyond; for A = -1 it is flat below 0.8 and falls with r above. Bottom: its derivative in r: for A = +1, 1 below r = 1.2 and 0 above; for A = -1, 0 below r = 0.8 and -1 above."}}
eps = 0.2
r = torch.linspace(0.0, 2.0, 401, requires_grad=True)
fig, axes = plt.subplots(2, 2, figsize=(9, 5), sharex=True, sharey="row")
for col, A in enumerate([1.0, -1.0]):
    advantages = torch.full_like(r, A)
    objective = -maths.ppo_loss(r, advantages, eps)
    (grad,) = torch.autograd.grad(objective.sum(), r)
    ax = axes[0, col]
    ax.plot(r.detach(), (r * A).detach(), color="grey", ls=":", label="r A (unclipped)")
    ax.plot(r.detach(), objective.detach(), color=OTHER_COLORS[0], lw=2, label="min(r A, clip(r) A)")
    ax.set_title(f"A = {A:+g}")
    axes[1, col].plot(r.detach(), grad, color=OTHER_COLORS[1], lw=2)
    axes[1, col].set_xlabel("ratio r")
    for a in axes[:, col]:
        a.axvspan(1 - eps, 1 + eps, color="grey", alpha=0.12, lw=0)
axes[0, 0].set_ylabel("objective")
axes[1, 0].set_ylabel("d objective / d r")
axes[0, 0].legend(loc="upper left")
plt.show()

# %% [markdown]
# The shaded band is [1 - eps, 1 + eps]. Read the two columns:
#
# - **A > 0** (a better-than-expected action): raising r pays until r = 1 + eps, then the objective is flat and the
#   gradient exactly 0: no incentive to push the probability further in this update. Below 1 - eps nothing is
#   clipped: if the update made a good action *less* likely, the full gradient pulls it back.
# - **A < 0**: lowering r pays until 1 - eps, then flat. Above 1 + eps the objective keeps falling with slope A: a bad
#   action made more likely is always corrected.
#
# The `min` makes the objective a pessimistic bound: clipping only ever removes the part of the gain that would come
# from moving too far, never a penalty. (The trap named in `ppo_loss`'s docstring: the min of the two *objectives*
# is the max of the two *losses*.)
#
# The reading edition writes this loss as one function, the mean over the minibatch taken at once (printed from
# `sandbox/reading/ppo_dropout.py`; the engine's `maths.ppo_loss` is the same line, per sample, with an upper clip
# of its own for section 5):

# %%
reading.show("ppo_dropout", "clipped_surrogate")

# %% [markdown]
# ## 2. What happens inside one update, and what `clipfrac` counts
#
# The preset runs 20 epochs over each batch of 256 transitions, one minibatch per epoch: 20 gradient steps on the
# same data. A ratio starts at exactly 1 in the first epoch (the policy has not moved) and spreads as the epochs go.
# To watch it, record what `ppo_loss` receives through the `Maths` seam: a callable that calls `maths.ppo_loss`
# unchanged and keeps the ratios and advantages of every minibatch step.


# %%
class RecordingLoss:
    """maths.ppo_loss, unchanged, keeping what it was given at each minibatch step (detached copies)."""

    def __init__(self):
        self.calls = []

    def __call__(self, ratio, advantages, clip_coef, clip_coef_high=None):
        self.calls.append((ratio.detach().clone(), advantages.detach().clone(), clip_coef, clip_coef_high))
        return maths.ppo_loss(ratio, advantages, clip_coef, clip_coef_high)


base = sandbox.preset("cartpole", dropout_mode="off", total_steps=STEPS, quiet=True)
recorder = RecordingLoss()
run0 = sandbox.train(base.replace(seed=SEEDS[0]), maths=sandbox.Maths(ppo_loss=recorder))
E = base.update_epochs
print(f"{len(recorder.calls)} minibatch steps = {len(run0.metrics)} updates x {E} epochs")


# %% mystnb={"image": {"alt": "Two panels on one update of a CartPole run, epoch by epoch over its 20 epochs. Left: the ratios r, median with 25-75% and 5-95% bands, exactly 1 in epoch 1 and spreading after it, with dotted lines at the clip band. Right: per epoch, the fraction of samples outside the band (clipfrac) and the fraction whose clip is active (gradient 0), never above the first."}}
def clip_counts(ratio, adv, low, high):
    """Per minibatch step: the fraction outside [1 - low, 1 + high] (what clipfrac counts), and the fractions whose
    clip is active (gradient 0) at the top (A > 0, r > 1 + high) and at the bottom (A < 0, r < 1 - low)."""
    high = low if high is None else high
    outside = (ratio > 1 + high) | (ratio < 1 - low)
    top, bottom = (adv > 0) & (ratio > 1 + high), (adv < 0) & (ratio < 1 - low)
    return {
        "outside": outside.float().mean().item(),
        "active_top": top.float().mean().item(),
        "active_bottom": bottom.float().mean().item(),
    }


steps = pd.DataFrame([clip_counts(*c) for c in recorder.calls])
steps["update"] = np.arange(len(steps)) // E + 1
per_update = steps.groupby("update").mean()
print(
    "outside the band, mean over each update's steps, vs metrics.csv's clipfrac: max difference",
    f"{np.abs(per_update.outside.to_numpy() - run0.metrics.clipfrac.to_numpy()).max():.1e}",
)

U = min(40, len(run0.metrics))  # one update to look inside
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
epochs = np.arange(1, E + 1)
ratios = [recorder.calls[(U - 1) * E + e][0].numpy() for e in range(E)]
qs = np.array([np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95]) for x in ratios])
axes[0].fill_between(epochs, qs[:, 0], qs[:, 4], color=OTHER_COLORS[0], alpha=0.2, lw=0, label="5-95%")
axes[0].fill_between(epochs, qs[:, 1], qs[:, 3], color=OTHER_COLORS[0], alpha=0.4, lw=0, label="25-75%")
axes[0].plot(epochs, qs[:, 2], color=OTHER_COLORS[0], label="median")
clip_u = recorder.calls[(U - 1) * E][2]
for y in (1 - clip_u, 1 + clip_u):
    axes[0].axhline(y, color="grey", ls=":", lw=1)
axes[0].set(title=f"ratios in update {U}, epoch by epoch", xlabel="epoch", ylabel="r")
axes[0].legend(loc="upper left")
in_u = steps[steps["update"] == U].reset_index(drop=True)
axes[1].plot(epochs, in_u.outside, label="outside the band (clipfrac)", color=OTHER_COLORS[0])
axes[1].plot(epochs, in_u.active_top + in_u.active_bottom, label="clip active (gradient 0)", color=OTHER_COLORS[1])
axes[1].set(title=f"update {U}: fractions per epoch", xlabel="epoch")
axes[1].legend(loc="upper left")
plt.show()
peak = int(in_u.outside.idxmax())
active = in_u.active_top[peak] + in_u.active_bottom[peak]
print(
    f"update {U}: clip range {clip_u:.3f} (annealed from 0.2); "
    f"clipfrac in metrics.csv {run0.metrics.clipfrac.iloc[U - 1]:.3f}\n"
    f"epoch {peak + 1}: {in_u.outside[peak]:.1%} of the samples outside the band, {active:.1%} with the clip active: "
    f"{1 - active / in_u.outside[peak]:.0%} of those outside are on the unclipped side"
)

# %% [markdown]
# In the update drawn above every ratio starts at 1 (up to float rounding): in epoch 1 the policy has not moved.
# The spread grows over the epochs, and samples leave the band. The two curves on the right differ: `clipfrac` counts
# every sample outside the band, but only those on the clipped side (A > 0 above the band, A < 0 below it) lose
# their gradient. The others outside are on the unclipped side and keep their full gradient, which points back
# towards the band. The mean of the per-epoch fractions is `metrics.csv`'s `clipfrac` for the update (all three
# checked below).

# %%
outside_epochs = [e + 1 for e in range(E) if in_u.outside[e] > 0]
course.say(
    f"""In this run's update {U} (clip range {clip_u:.3f}): samples are outside the band from epoch
{outside_epochs[0] if outside_epochs else "none"} on; the most, {in_u.outside[peak]:.1%}, at epoch {peak + 1}, of which
{active:.1%} with the clip active and the other {1 - active / in_u.outside[peak] if in_u.outside[peak] else 0:.0%} on the
unclipped side; {in_u.outside[E - 1]:.1%} outside at epoch {E}. `clipfrac` in `metrics.csv`:
{run0.metrics.clipfrac.iloc[U - 1]:.3f}."""
)
course.claim(
    "every ratio starts at 1 in epoch 1 (up to float rounding)",
    max(float(np.abs(recorder.calls[u * E][0] - 1).max()) for u in range(len(run0.metrics))) < 1e-5,
    f"largest |r - 1| in an epoch 1: {max(float(np.abs(recorder.calls[u * E][0] - 1).max()) for u in range(len(run0.metrics))):.1e}",
    outcome=False,
)
course.claim(
    "only part of the samples outside the band lose their gradient",
    bool((steps.active_top + steps.active_bottom <= steps.outside + 1e-6).all()),
    "clip active <= outside at every minibatch step",
    outcome=False,
)
course.claim(
    "the mean of the per-epoch fractions is metrics.csv's clipfrac",
    np.abs(per_update.outside.to_numpy() - run0.metrics.clipfrac.to_numpy()).max() < 1e-6,
    f"largest difference {np.abs(per_update.outside.to_numpy() - run0.metrics.clipfrac.to_numpy()).max():.1e}",
    outcome=False,
)

# %% [markdown]
# In `metrics.csv`, `clipfrac` is one number per update, the mean over its 20 steps (left, with the fraction whose
# clip is active, both smoothed over 10 updates). Right: `approx_kl` (section 3), how far each update moved the
# policy. `approx_kl` falls towards 0 in the second half of the run as the learning rate decays (checked below),
# while the clip range shrinks with it, so ever smaller moves count as outside the band and `clipfrac` does not
# fall with it.

# %% mystnb={"image": {"alt": "Two panels against env steps for seed 0, each a mean of 10 updates. Left: clipfrac (the fraction of samples outside the clip band) and the fraction with the clip active (gradient 0), never above it. Right: approx_kl, how far each update moved the policy."}}
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3))
m = run0.metrics
active = per_update.active_top + per_update.active_bottom
axes[0].plot(m.env_steps, m.clipfrac.rolling(10).mean(), color=OTHER_COLORS[0], label="clipfrac (outside the band)")
axes[0].plot(m.env_steps, active.rolling(10).mean().to_numpy(), color=OTHER_COLORS[1], label="clip active (gradient 0)")
smoothed_top = m.clipfrac.rolling(10).mean().max()
# headroom above the highest point, for the legend
axes[0].set(xlabel="env steps", title="seed 0: mean of 10 updates", ylim=(0, 1.35 * smoothed_top))
axes[0].legend(loc="upper right")
axes[1].plot(m.env_steps, m.approx_kl.rolling(10).mean(), color=OTHER_COLORS[2])
axes[1].set(xlabel="env steps", title="approx_kl: mean of 10 updates")
plt.show()
half, last_tenth = len(m) // 2, max(len(m) // 10, 1)
course.say(
    f"""In this run, `clipfrac` (mean of 10 updates) stayed between {m.clipfrac.rolling(10).mean().min():.1%} and
{m.clipfrac.rolling(10).mean().max():.1%}; `approx_kl` averaged {m.approx_kl.iloc[:half].mean():.4f} over the first half
of the run and {m.approx_kl.iloc[-last_tenth:].mean():.4f} over its last tenth."""
)
course.claim(
    "approx_kl falls towards 0 in the second half of the run as the learning rate decays",
    m.approx_kl.iloc[-last_tenth:].mean() < 0.5 * m.approx_kl.iloc[:half].mean(),
    f"{m.approx_kl.iloc[:half].mean():.4f} over the first half, {m.approx_kl.iloc[-last_tenth:].mean():.4f} over the last tenth",
)

# %% [markdown]
# ## 3. `approx_kl`: Schulman's k3 estimator
#
# How far did the update move the policy? The KL divergence KL(pi_old || pi_theta) = E_{a ~ pi_old}[log pi_old(a) -
# log pi_theta(a)] is an expectation over the old policy, and the batch *is* a sample from it. With log_ratio =
# log pi_old - log pi_theta = -log r, two unbiased per-sample estimators (Schulman 2020, "Approximating KL
# divergence"; `maths.kl_k1`, `maths.kl_k3`):
#
# - k1 = log_ratio = -log r: unbiased, but negative for every sample whose probability went up, so a batch mean is
#   noisy and can be below 0;
# - k3 = (r - 1) - log r: adds r - 1, whose expectation under pi_old is 0 (sum over a of pi_theta(a) - 1), so still
#   unbiased, and now >= 0 for every sample, with much less variance when the policies are close.
#
# PPO's `approx_kl` is `mean(kl_k3(-logratio))` (k3); `old_approx_kl` is k1. A check on two known distributions
# (three actions), 256 samples per batch like one CartPole update, 2,000 batches:

# %% mystnb={"image": {"alt": "Histograms of 2,000 batch estimates (256 samples each) of a known KL divergence by two estimators, with a black vertical line at the true KL: k1 = -log r spreads widely on both sides of it, below 0 too; k3 = (r - 1) - log r is packed tightly around it."}}
gen = torch.Generator().manual_seed(course.seed(0))
p_old = torch.tensor([0.5, 0.3, 0.2])
p_new = torch.tensor([0.4, 0.35, 0.25])
true_kl = float((p_old * (p_old / p_new).log()).sum())
a = torch.multinomial(p_old, 2_000 * 256, replacement=True, generator=gen).view(2_000, 256)
log_ratio = p_old.log()[a] - p_new.log()[a]  # log pi_old - log pi_new, for actions drawn from pi_old
k1, k3 = maths.kl_k1(log_ratio).mean(1), maths.kl_k3(log_ratio).mean(1)
fig, ax = plt.subplots(figsize=(7, 3))
bins = np.linspace(min(k1.min(), k3.min()).item(), max(k1.max(), k3.max()).item(), 60)
ax.hist(k1.numpy(), bins=bins, alpha=0.6, color=OTHER_COLORS[2], label="k1 = -log r")
ax.hist(k3.numpy(), bins=bins, alpha=0.6, color=OTHER_COLORS[0], label="k3 = (r - 1) - log r")
ax.axvline(true_kl, color="black", lw=1.5, label="true KL")
ax.set(xlabel="batch estimate of KL(pi_old || pi_new)", ylabel="batches", title="2,000 batches of 256 samples")
ax.legend()
plt.show()
print(f"true KL {true_kl:.4f}; mean of the batch estimates: k1 {k1.mean():.4f}, k3 {k3.mean():.4f}")
print(f"std of the batch estimates: k1 {k1.std():.4f}, k3 {k3.std():.4f} ({k1.std() / k3.std():.1f}x smaller)")
print(
    f"per sample: k1 < 0 for {(maths.kl_k1(log_ratio) < 0).float().mean():.0%}, k3 < 0 for "
    f"{(maths.kl_k3(log_ratio) < 0).float().mean():.0%}; batches with k1 < 0: {(k1 < 0).float().mean():.1%}"
)

# %% [markdown]
# Both estimators centre on the true KL; k3's batches scatter less around it and never go below 0 (checked below).
# In a run, `approx_kl` is the mean over an update's minibatch steps, each measured *before* that step's gradient
# step (the first one reads 0 without dropout: the policy has not moved yet).

# %%
course.claim(
    "both estimators centre on the true KL (within 5% of it); k3's batches scatter less and never go below 0",
    abs(k1.mean() / true_kl - 1) < 0.05 and abs(k3.mean() / true_kl - 1) < 0.05 and k3.std() < k1.std() and k3.min() >= 0,
    f"means {k1.mean():.4f} and {k3.mean():.4f} against {true_kl:.4f}; std {k1.std():.4f} and {k3.std():.4f}",
)

# %% [markdown]
# ## 4. `target_kl`: stop the update when the policy has moved far enough
#
# Clipping removes the incentive to move a sample's ratio past the band, but 20 epochs of steps can still carry the
# policy far (the flat parts have gradient 0 only for the samples already outside). `target_kl` adds a hard stop:
# in `Learner.optimise`, before each minibatch's gradient step, if that minibatch's `approx_kl` exceeds `target_kl`,
# the update ends there; `epochs_done` records how many epochs ran. The reading edition's update loop shows all of it
# in one place: the minibatches of each epoch, the ratio and the clipped loss, what each minibatch measures
# (`approx_kl` as k3, `clipfrac`) before its step, and the check against `target_kl`, *before* the step:

# %%
reading.show("ppo_dropout", "# ALGO LOGIC: the update", "# TRY NOT TO MODIFY: a row")

# %% [markdown]
# Same seeds, four settings: the preset as it is ("default": no `target_kl`, clip range 0.2 on both sides), two values
# of `target_kl`, and section 5's asymmetric clip.

# %% mystnb={"image": {"alt": "Two panels against env steps for three settings of PPO on CartPole (default, target_kl 0.01, target_kl 0.001), a mean of 10 updates: the median over seeds as a line, the lowest to the highest seed as a band. Left: epochs_done, how many of the 20 epochs each update ran before target_kl stopped it (the default, without a target, always runs 20). Right: the return (mean of the last 20 episodes), with a dotted line at the solved threshold. The legend is below the panels."}}
settings = {
    "default": dict(),  # the preset: target_kl None, clip_coef 0.2, clip_coef_high None (= clip_coef)
    "target_kl 0.01": dict(target_kl=0.01),
    "target_kl 0.001": dict(target_kl=0.001),
    "eps_high 0.28": dict(clip_coef_high=0.28),  # section 5
}
runs = {(name, seed): sandbox.train(base.replace(seed=seed, **kw)) for name, kw in settings.items() for seed in SEEDS}
SETTING_COLORS = dict(zip(settings, [OTHER_COLORS[0], OTHER_COLORS[1], OTHER_COLORS[2], OTHER_COLORS[6]]))


def median_band(ax, name, column, smooth=1):
    """The median over seeds of a metrics column (a rolling mean of ``smooth`` updates first), and a band from the
    lowest to the highest seed."""
    curves = pd.concat([runs[name, s].metrics[column].rolling(smooth).mean() for s in SEEDS], axis=1)
    steps = runs[name, SEEDS[0]].metrics.env_steps
    ax.fill_between(steps, curves.min(axis=1), curves.max(axis=1), color=SETTING_COLORS[name], alpha=0.2, lw=0)
    ax.plot(steps, curves.median(axis=1), color=SETTING_COLORS[name], lw=1.5, label=name)


fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
for name in list(settings)[:3]:
    median_band(axes[0], name, "epochs_done", smooth=10)
    median_band(axes[1], name, "ep_return_mean", smooth=10)
axes[0].set(xlabel="env steps", title="epochs_done", ylim=(0, 21))
axes[1].axhline(475, color="grey", ls=":", lw=1)
axes[1].set(xlabel="env steps", title="return (last 20 episodes)")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3)
fig.suptitle(f"mean of 10 updates; median of {len(SEEDS)} seeds, band: lowest to highest seed", fontsize=10)
plt.show()


# %%
def per_seed(name, value):
    return [value(runs[name, s]) for s in SEEDS]


kl_settings = list(settings)[:3]
epochs_run = {n: per_seed(n, lambda r: r.metrics.epochs_done.mean()) for n in kl_settings}
mean_return = {n: per_seed(n, lambda r: r.metrics.ep_return_mean.mean()) for n in kl_settings}
print("mean epochs per update:", {k: round(float(np.mean(v)), 1) for k, v in epochs_run.items()})
kl_table = stats.comparison_table({"mean return over training": mean_return}, baseline="default", quality=["mean return over training"])
kl_table

# %% [markdown]
# The smaller the target, the earlier the updates stop: 0.001 stops most of them well before their 20 epochs, 0.01
# cuts a few epochs. With both, `epochs_done` climbs back towards 20 as the run goes on: the learning rate decays
# towards 0, and the steps no longer carry the policy past the target. With 0.001 the policy learns *worse* (every
# seed of it far below every seed without a target: a verdict five seeds can carry). All checked below; 0.01's
# verdict, a smaller effect, is this run's (lesson 04 measures how often a 5-seed verdict comes out otherwise).
#
# Two things to remember for lesson 03. The check reads the minibatch's `approx_kl` *before* its step, so an update
# whose very first minibatch is already above the target stops having done nothing (`epochs_done` 0). Without
# dropout that cannot happen: the first minibatch has r = 1 (up to float rounding) and `first_approx_kl` = 0 (checked
# below). With dropout noise in the ratio it can.

# %%
def back_to_full(name):  # the first env step after which every update ran its 20 epochs (smoothed over 10 updates)
    values = [r.metrics.epochs_done.rolling(10).mean() for r in (runs[name, s] for s in SEEDS)]
    full = pd.concat(values, axis=1).median(axis=1) >= E - 0.5
    after = full[::-1].cummin()[::-1]  # True from the point on which it stays True
    return int(runs[name, SEEDS[0]].metrics.env_steps[after].iloc[0]) if after.any() else None


row = {n: kl_table.loc[("mean return over training", n)] for n in kl_settings[1:]}
course.say(
    "In this run: "
    + "; ".join(
        f"`{n}` ran {np.mean(epochs_run[n]):.1f} of {E} epochs per update on average, mean return over training "
        f"{row[n]['mean']:.0f} against {row[n]['baseline: default']:.0f} without a target, difference "
        f"{row[n][CI]}, Holm p {row[n]['p (Holm)']:g}: *{row[n]['verdict']}*; its median seed ran "
        f"every epoch again from {back_to_full(n) if back_to_full(n) is not None else 'no point of the run'} steps on"
        for n in kl_settings[1:]
    )
    + "."
)
first_kl = max(float(runs["default", s].metrics.first_approx_kl.abs().max()) for s in SEEDS)
course.claim(
    "without dropout the first minibatch has first_approx_kl = 0 (and no update stops before its first step)",
    first_kl < 1e-6 and all((runs[n, s].metrics.epochs_done > 0).all() for n in kl_settings for s in SEEDS),
    f"largest |first_approx_kl| {first_kl:.1e}",
    outcome=False,
)
course.claim(
    "with target_kl 0.001 the policy learns worse",
    row["target_kl 0.001"]["verdict"] == "worse",
    f"{row['target_kl 0.001']['verdict']}, Holm p {row['target_kl 0.001']['p (Holm)']:g}",
)
course.claim(
    "the smaller the target, the earlier the updates stop",
    np.mean(epochs_run["target_kl 0.001"]) < np.mean(epochs_run["target_kl 0.01"]) < np.mean(epochs_run["default"]),
    ", ".join(f"{n} {np.mean(v):.1f}" for n, v in epochs_run.items()),
)
course.claim(
    "epochs_done climbs back towards 20 as the run goes on",
    all(np.mean([runs[n, s].metrics.epochs_done.iloc[-10:].mean() for s in SEEDS])
        > np.mean([runs[n, s].metrics.epochs_done.iloc[:len(runs[n, s].metrics) // 2].mean() for s in SEEDS])
        for n in kl_settings[1:]),
    ", ".join(f"{n}: last 10 updates {np.mean([runs[n, s].metrics.epochs_done.iloc[-10:].mean() for s in SEEDS]):.1f}"
              for n in kl_settings[1:]),
)
#
# ## 5. Asymmetric clipping: eps_low and eps_high
#
# DAPO (Yu et al. 2025) clips the ratio to [1 - eps_low, 1 + eps_high] with eps_high > eps_low (0.2 and 0.28):
# "clip-higher". `--clip-coef` is eps_low, `--clip-coef-high` eps_high (`maths.ppo_loss`'s `clip_coef_high`, in every
# trainer, annealed with the other by `--anneal-clip`). Section 1 showed that the upper bound only bites for A > 0
# and the lower one only for A < 0, so the two are separate dials:

# %% mystnb={"image": {"alt": "PPO's objective against the ratio r for A = +1 and A = -1, with the symmetric clip eps 0.2 and the asymmetric eps_low 0.2, eps_high 0.28 (dashed): for A = +1 the asymmetric objective keeps rising up to r = 1.28 instead of 1.2; for A = -1 the two lines coincide."}}
r_plot = torch.linspace(0.0, 2.0, 401)
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, A in zip(axes, [1.0, -1.0]):
    adv = torch.full_like(r_plot, A)
    ax.plot(r_plot, -maths.ppo_loss(r_plot, adv, 0.2), color=OTHER_COLORS[0], lw=2, label="eps 0.2 / 0.2")
    ax.plot(
        r_plot,
        -maths.ppo_loss(r_plot, adv, 0.2, 0.28),
        color=OTHER_COLORS[3],
        lw=2,
        ls="--",
        label="eps_low 0.2, eps_high 0.28",
    )
    ax.set(title=f"A = {A:+g}", xlabel="ratio r")
axes[0].set_ylabel("objective")
axes[0].legend(loc="upper left")
plt.show()

# %% [markdown]
# With A > 0 the objective now rises until r = 1.28: a good action's probability may grow by up to 28% in one
# update instead of 20%. That matters most for *unlikely* actions: going from 0.01 to 0.0128 is a small absolute move,
# and a symmetric clip keeps the policy from ever raising rare actions fast, which DAPO found to collapse the entropy
# of language-model policies. The A < 0 side is unchanged. Measured on CartPole, against the symmetric default:

# %% mystnb={"image": {"alt": "Two panels against env steps comparing the default clip with eps_high 0.28 on CartPole, a mean of 10 updates: the median over seeds as a line, the lowest to the highest seed as a band. Left: the policy's entropy in nats. Right: the return (mean of the last 20 episodes), with a dotted line at the solved threshold."}}
ratio_settings = ["default", "eps_high 0.28"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name in ratio_settings:
    median_band(axes[0], name, "entropy", smooth=10)
    median_band(axes[1], name, "ep_return_mean", smooth=10)
axes[0].set(xlabel="env steps", title="policy entropy (nats)")
axes[1].axhline(475, color="grey", ls=":", lw=1)
axes[1].set(xlabel="env steps", title="return (last 20 episodes)")
axes[0].legend(loc="upper right")
fig.suptitle(f"mean of 10 updates; median of {len(SEEDS)} seeds, band: lowest to highest seed", fontsize=10)
plt.show()
asym = {
    "entropy, mean over training": {n: per_seed(n, lambda r: r.metrics.entropy.mean()) for n in ratio_settings},
    "approx_kl, mean over training": {n: per_seed(n, lambda r: r.metrics.approx_kl.mean()) for n in ratio_settings},
    "mean return over training": {n: per_seed(n, lambda r: r.metrics.ep_return_mean.mean()) for n in ratio_settings},
}
asym_table = stats.comparison_table(asym, baseline="default", quality=["mean return over training"])
asym_table

# %%
course.say(
    "In this run, eps_high = 0.28 against the symmetric default (Holm's correction over the three comparisons): "
    + "; ".join(
        f"{metric}: {asym_table.loc[(metric, 'eps_high 0.28'), 'mean']:.4g} against "
        f"{asym_table.loc[(metric, 'eps_high 0.28'), 'baseline: default']:.4g}, Holm p "
        f"{asym_table.loc[(metric, 'eps_high 0.28'), 'p (Holm)']:g}: *{asym_table.loc[(metric, 'eps_high 0.28'), 'verdict']}*"
        for metric in asym
    )
    + "."
)

# %% [markdown]
# With five seeds these verdicts are this run's: a re-run on other seeds can read otherwise (lesson 04 measures how
# often). CartPole has two actions, while DAPO's problem was the rare tokens of a large vocabulary;
# `--clip-coef-high` works the same way in the GRPO trainer on the language tasks, where that question can be asked.
#
# ## Check yourself
#
# 1. A sample has A = +2 and, after a few epochs, r = 1.35 with eps = 0.2. What is its contribution to the objective,
#    and to the gradient? Same question with A = -2.
# 2. A sample has A = +1 and r = 0.7. Is it counted in `clipfrac`? Is its gradient zero?
# 3. Why is k3 never negative, and why is it still unbiased?
# 4. `target_kl` is set and an update reports `epochs_done` = 0. What happened, and what would have to be true of the
#    ratio at the first minibatch?
# 5. You raise eps_high from 0.2 to 0.28. Which samples' gradients change: those with A > 0 or A < 0, and with r in
#    which range?
#
# <details><summary>Answers</summary>
#
# 1. A = +2: min(1.35 x 2, 1.2 x 2) = 2.4, and the gradient with respect to r is 0 (the clipped term is the
#    minimum). A = -2: min(-2.7, -2.4) = -2.7, the unclipped term: the gradient is -2, pushing r back down.
# 2. Yes, it is outside [0.8, 1.2], so `clipfrac` counts it. No: with A > 0 and r < 1 - eps the unclipped term
#    r A is the minimum, so the full gradient acts. `clipfrac` counts samples outside the band, not samples whose
#    gradient was removed (section 2 measured both).
# 3. k3 = (r - 1) - log r, and log r <= r - 1 for every r > 0 (the log lies below its tangent at 1), so k3 >= 0
#    sample by sample. Its extra term r - 1 has expectation sum_a pi_old(a) (pi_theta(a) / pi_old(a)) - 1 = 0
#    under pi_old, so adding it changes the variance, not the mean.
# 4. The first minibatch's `approx_kl`, measured before any step, was already above `target_kl`, so the learner
#    stopped before the first gradient step: the update did nothing. That needs r != 1 before the policy has
#    changed: the behaviour policy and the policy evaluated in the update differ, which is what dropout noise does
#    (lesson 03).
# 5. Only samples with A > 0 and r between 1.2 and 1.28: before, their gradient was 0 (clipped), now they still
#    push r up. Samples with A < 0 depend only on eps_low.
#
# </details>
#
# Next: lesson 03, dropout and the ratio (`notebooks/03_dropout_and_the_ratio.ipynb`).
