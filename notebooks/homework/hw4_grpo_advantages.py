# %% [markdown]
# # Homework 4: GRPO's group advantages and token aggregation (`group_advantages`, `aggregate_loss`)
#
# **Pairs with** lesson 05 (GRPO on the language tasks). **You write** the two pieces that make GRPO what it is:
# `group_advantages`, which turns each group's rewards into advantages (three scalings), and `aggregate_loss`, which
# reduces a per-token loss over sequences of unequal lengths to one number (three modes). **You learn** how GRPO
# does without a critic, and how the choice of aggregation weighs a long sequence's tokens against a short one's.
#
# **How it is graded.** Run the *check* cell: PASS or FAIL per test, the case, what was expected, a hint, then
# `N passed, M failed`. `sandbox grade hw4 my-homework/hw4_grpo_advantages.ipynb` runs the same tests: values against
# `sandbox.maths.group_advantages` and `sandbox.maths.aggregate_loss` on hand and random cases (unequal lengths,
# empty sequences, bool and float masks), properties (centring, invariance, each token's weight), and GRPO runs on
# CartPole with your two functions.
#
# **Rules.** Keep the signatures; torch only; float32; the loss must keep its gradient; do not change the inputs.
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
# **Group advantages** (Shao et al. 2024). `rewards` is `(n_groups, G)`: G completions of the same prompt (on Gym: G
# episodes from the same reset seed). Each reward is compared with its own group:
#
# - `"group"`: $(R - \mathrm{mean}_{group}) / (\mathrm{std}_{group} + 10^{-4})$ (DeepSeekMath);
# - `"batch"`: $(R - \mathrm{mean}_{group}) / (\mathrm{std}_{batch} + 10^{-4})$ (TRL's `scale_rewards="batch"`);
# - `"none"`: $R - \mathrm{mean}_{group}$ (Dr. GRPO: the division favours easy and hopeless prompts).
#
# std is the **sample** standard deviation (n - 1, torch's default `tensor.std()`, as in TRL). A group whose rewards
# are all equal teaches nothing: its advantages are 0 (the 1e-4 keeps 0 / 0 away).
#
# **Token aggregation.** `per_token` and `mask` are `(B, T)`: B sequences padded to T, `mask` 1 (or True) on each
# sequence's own tokens. Over the masked tokens only:
#
# - `"grpo"`: the mean over each sequence's tokens, then the mean over the sequences that have tokens;
# - `"bnpo"`: the sum over all the batch's tokens / their number;
# - `"dr_grpo"`: the sum / (B * `max_len`), `max_len` defaulting to T: a constant, whatever the lengths.
#
# **The traps.** Population std; a mean that counts the padding; an all-masked sequence or batch turning into NaN.

# %% [markdown]
# ## Your functions

# %%
def group_advantages(rewards, scale_rewards="group", eps=1e-4):
    """GRPO advantages, shaped like rewards (n_groups, G)."""
    # YOUR CODE HERE
    raise NotImplementedError


def aggregate_loss(per_token, mask, mode="grpo", max_len=None):
    """The scalar loss over the tokens where mask is 1."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% [markdown]
# ## Try it by hand
#
# Two groups: rewards (1, 2, 3) have mean 2 and sample std 1; (0, 0, 0) are all equal. Two sequences of lengths 4
# and 2 (the 99s are padding): grpo = (2.5 + 15) / 2, bnpo = 40 / 6, dr_grpo = 40 / (2 * 4).

# %%
try:
    print("advantages:", group_advantages(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]), "group").tolist())
    per_token = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    print({mode: round(float(aggregate_loss(per_token, mask, mode)), 4) for mode in ("grpo", "bnpo", "dr_grpo")})
except NotImplementedError:
    print("not implemented yet")
print("expected: advantages [[-0.9999, 0.0, 0.9999], [0.0, 0.0, 0.0]], {'grpo': 8.75, 'bnpo': 6.6667, 'dr_grpo': 5.0}")

# %% [markdown]
# ## Check

# %%
report = check("hw4", group_advantages=group_advantages, aggregate_loss=aggregate_loss)

# %% [markdown]
# ## Each token's weight
#
# The gradient of the aggregated loss with respect to each token's loss is that token's weight in the update. Three
# sequences of 8, 4 and 2 tokens: `grpo` gives a short sequence's tokens more weight each, `bnpo` and `dr_grpo` weigh
# every token the same (dr_grpo by a constant that does not depend on the batch).

# %%
if report.ok:
    lengths = torch.tensor([8, 4, 2])
    mask = torch.arange(8)[None, :] < lengths[:, None]
    fig, ax = plt.subplots()
    for i, mode in enumerate(("grpo", "bnpo", "dr_grpo")):
        per_token = torch.zeros(3, 8, requires_grad=True)
        (weights,) = torch.autograd.grad(aggregate_loss(per_token, mask, mode, 8), per_token)
        ax.bar(torch.arange(3) + (i - 1) * 0.27, weights[:, 0], width=0.27, color=OTHER_COLORS[i], label=mode)
    ax.set_xticks(range(3), [f"{n} tokens" for n in lengths.tolist()])
    ax.set(ylabel="weight of each of its tokens", title="token weights by aggregation mode")
    ax.legend(loc="upper left")
    plt.show()
else:
    print("Plot the weights once every test above passes.")

# %% [markdown]
# ## Integration: GRPO with your functions
#
# GRPO on CartPole-v1: groups of 8 episodes from the same reset seed, 4 seeds per update, your two functions against
# ours. Episodes have unequal lengths, so the aggregation matters here too.

# %%
if report.ok:
    steps = 3_000 if FAST else 30_000
    cfg = sandbox.Config(algo="grpo", env="CartPole-v1", prompts_per_update=4, group_size=8, total_steps=steps, seed=0,
                         quiet=True)  # fmt: skip
    maths = sandbox.Maths(group_advantages=group_advantages, aggregate_loss=aggregate_loss)
    yours, ours = sandbox.train(cfg, maths=maths).metrics, sandbox.train(cfg).metrics
    print("first update, policy_loss: yours", yours.policy_loss.iloc[0], "ours", ours.policy_loss.iloc[0])
    fig, ax = plt.subplots()
    ax.plot(ours.env_steps, ours.ep_return_mean, color=OTHER_COLORS[3], label="ours")
    ax.plot(yours.env_steps, yours.ep_return_mean, color=OTHER_COLORS[0], ls="--", label="yours")
    ax.set(xlabel="environment steps", ylabel="mean return, last 20 episodes", title="GRPO on CartPole-v1, seed 0")
    ax.legend(loc="upper left")
    plt.show()
else:
    print("Train with your functions once every test above passes.")

# %% [markdown]
# ## Submit
#
# Work in a copy, from the repository's root: `mkdir -p my-homework; cp notebooks/homework/hw4_grpo_advantages.ipynb
# my-homework/`, then `source .venv/bin/activate` (or write `.venv/bin/sandbox`). Save the notebook and hand it in;
# `sandbox grade hw4 my-homework/hw4_grpo_advantages.ipynb` runs it from the top in its own process and grades the two
# functions it defines.
