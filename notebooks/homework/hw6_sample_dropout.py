# %% [markdown]
# # Homework 6: sample dropout (`dppo_scores`, `sample_dropout_mask`)
#
# **Pairs with** lesson 07 (sample dropout). **You write** the rules that drop whole *samples* (transitions, or
# tokens) from PPO's clipped surrogate, recomputed at every minibatch step: D-PPO's variance rule, SDPO's ratio rule,
# the greedy outlier rule, each optionally applied within the positive and the non-positive advantages separately.
# **You learn** where the variance of the importance-sampled surrogate comes from, and how a rule that looks only at
# variance can bias the update.
#
# **Read this first: the D-PPO rule here is this sandbox's reconstruction.** The D-PPO paper (Xie, Yu, Qiao 2023,
# arXiv 2310.20380) could not be read when the sandbox was written: what is known is its abstract (an upper bound on
# the surrogate's variance that grows quadratically with the surrogate, and samples dropped to keep it down) and a
# third-party summary ("drop samples with small values of a between-sample correlation term"). No public code was
# found. The score below is the sandbox's reading of that, not the paper's verified rule. SDPO's rule (Lin et al.
# 2023, arXiv 2302.02299) was read from their public code.
#
# **How it is graded.** Run the *check* cell: PASS or FAIL per test, the case, what was expected, a hint, then
# `N passed, M failed`. `sandbox grade hw6 my-homework/hw6_sample_dropout.ipynb` runs the same tests: the scores against
# `sandbox.maths.dppo_scores`, the variance identity with your scores, the keep-masks of every rule against
# `sandbox.maths.sample_dropout_mask` (ties may break either way), the edge cases, and PPO runs with your rule.
#
# **Rules.** Keep the signatures; torch only; the mask is bool (True = keep), computed from detached values.
# Write your own code: the grader runs your notebook where the sandbox's reference implementations are not (there,
# `sandbox.maths`, `sandbox.dropout` and the rest are stand-ins), so a function that calls them is graded as a stub.

# %%
import os

import matplotlib.pyplot as plt
import torch

import sandbox
from sandbox.grade import check
from sandbox.plots import OTHER_COLORS, use_style

use_style()
FAST = os.environ.get("SANDBOX_FAST") == "1"

# %% [markdown]
# ## The maths
#
# In a minibatch of N samples, x_i = r_i * A_i is sample i's surrogate. With S = sum x, L = mean(x) and the
# variance V = mean(x^2) - L^2:
#
# **The D-PPO score (the reconstruction).** score_i = x_i (S - x_i), sample i's share of the cross terms
# sum_{i != j} x_i x_j. With C = sum_i score_i = S^2 - sum x^2, an exact identity links them to the variance:
#
# $$V = (N - 1)\,L^2 - C / N$$
#
# so, at a given mean, the samples with the *lowest* scores are those that push the variance up. `dppo` drops the
# fraction `rate` of samples with the lowest score.
#
# **The rules** (`sample_dropout_mask`; all inputs 1-D over the minibatch's samples; returns bool, True = keep):
#
# - `"none"`: keep everything;
# - `"dppo"`: drop the floor(rate * n) samples with the lowest score;
# - `"sdpo"`: keep a sample iff |r - 1| < delta (strictly; `rate` is not used);
# - `"outlier"`: drop the floor(rate * n) samples with the largest |x_i - mean(x)|;
# - `by_sign=True` (dppo, outlier): apply the rate within A > 0 and within A <= 0 separately, each group ranked on
#   its own, floor(rate * n_group) each;
# - if the mask would keep nothing, keep everything (an empty mean is NaN).
#
# **The trap.** A variance rule looks at the size of the products x_i, not at what they mean: on CartPole plain
# `dppo` drops mostly samples with A < 0 (the last figure), a bias towards positive updates. `by_sign` is the cure
# to try.

# %% [markdown]
# ## Your functions

# %%
def dppo_scores(surrogate):
    """score_i = x_i * (S - x_i), S = sum(x): one score per sample."""
    # YOUR CODE HERE
    raise NotImplementedError


def sample_dropout_mask(surrogate, ratio, advantages, mode="none", rate=0.1, delta=0.25, by_sign=False):
    """Which samples to keep in the surrogate: a bool tensor shaped like surrogate, True = keep."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% [markdown]
# ## The variance identity, by hand
#
# Check V = (N - 1) L^2 - C / N on four surrogates with your scores.

# %%
x = torch.tensor([1.0, 2.0, -1.0, 0.5])
try:
    s = dppo_scores(x)
    N, L = len(x), float(x.mean())
    print(f"V = {float((x**2).mean()) - L**2:.4f}, (N - 1) L^2 - C / N = {(N - 1) * L**2 - float(s.sum()) / N:.4f}")
    print("your scores:", s.tolist(), "expected: [1.5, 1.0, -3.5, 1.0]")
except NotImplementedError:
    print("not implemented yet")

# %% [markdown]
# ## Check

# %%
report = check("hw6", dppo_scores=dppo_scores, sample_dropout_mask=sample_dropout_mask)

# %% [markdown]
# ## Integration: which samples does each rule drop?
#
# PPO on CartPole with your rule. `dropped_frac_pos` and `dropped_frac_neg` are the fractions of the samples with
# A > 0 and A < 0 that the rule left out, per update: plain `dppo` drops far more of the negative ones, `by_sign`
# evens them out.

# %%
if report.ok:
    steps = 2_048 if FAST else 30_000
    maths = sandbox.Maths(sample_dropout_mask=sample_dropout_mask)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, by_sign in zip(axes, (False, True)):
        cfg = sandbox.preset("cartpole", total_steps=steps, seed=0, sample_dropout="dppo", sample_drop_by_sign=by_sign,
                             quiet=True)  # fmt: skip
        m = sandbox.train(cfg, maths=maths).metrics
        ax.plot(m.env_steps, m.dropped_frac_neg, color=OTHER_COLORS[1], label="A < 0")
        ax.plot(m.env_steps, m.dropped_frac_pos, color=OTHER_COLORS[0], label="A > 0")
        ax.set(xlabel="environment steps", title=f"dppo, rate 0.1{', by sign' if by_sign else ''}")
        print(f"dppo{' by sign' if by_sign else ''}: final return {m.ep_return_mean.iloc[-1]:.1f}")
    axes[0].set_ylabel("fraction dropped")
    axes[1].legend(loc="upper right")
    plt.show()
else:
    print("Train with your rule once every test above passes.")

# %% [markdown]
# ## Submit
#
# Work in a copy, from the repository's root: `mkdir -p my-homework; cp notebooks/homework/hw6_sample_dropout.ipynb
# my-homework/`, then `source .venv/bin/activate` (or write `.venv/bin/sandbox`). Save the notebook and hand it in;
# `sandbox grade hw6 my-homework/hw6_sample_dropout.ipynb` runs it from the top in its own process and grades the two
# functions it defines.
