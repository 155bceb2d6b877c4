# %% [markdown]
# # Homework 2: the clipped surrogate and the clipped value loss (`ppo_loss`, `value_loss`)
#
# **Pairs with** lesson 02 (the clipped surrogate). **You write** the two losses PPO minimises: `ppo_loss`, the
# clipped surrogate, with DAPO's asymmetric clip range, and `value_loss`, the critic's loss, optionally clipped
# around the rollout's values. **You learn** why PPO takes the *pessimistic* of two terms, where the clip removes the
# gradient and where it does not, and what value clipping does.
#
# **How it is graded.** Run the *check* cell: PASS or FAIL per test, the case that failed, what was expected, a hint,
# then `N passed, M failed`. `sandbox grade hw2 my-homework/hw2_clipped_losses.ipynb` runs the same tests (plus your
# instructor's hidden cases, if any): values against `sandbox.maths.ppo_loss` and `sandbox.maths.value_loss` on
# random and hand cases, properties (pessimism, the gradient where the clip is active), and training runs with your
# functions inside PPO and GRPO.
#
# **Rules.** Keep the signatures. Return one loss *per sample* (the trainer averages or aggregates), in float32,
# with gradients (no `.item()`, `.numpy()`, `.detach()`), without changing the inputs.
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
# With the ratio $r = \pi_\theta(a|s) / \pi_{old}(a|s)$ and the advantage $A$, per sample:
#
# $$L^{clip} = -\min\big(r A,\ \mathrm{clip}(r, 1 - \epsilon_{low}, 1 + \epsilon_{high})\, A\big)$$
#
# `clip_coef` is $\epsilon_{low}$; `clip_coef_high` is $\epsilon_{high}$ and defaults to `clip_coef` (symmetric,
# as in the PPO paper; DAPO uses 0.2 / 0.28). The minimum of the two *objectives* is the **maximum** of the two
# *losses*. Where the clip is active (A > 0 and r > 1 + eps_high; A < 0 and r < 1 - eps_low) the gradient with
# respect to r is 0: the update has no incentive to move r further. On the other side it is not clipped: a bad move
# is always penalised.
#
# The value loss, with `clip_coef` = c (CleanRL's `clip_vloss`; `None` = no clipping):
#
# $$L^{V} = \tfrac12 \max\big((V - R)^2,\ (V_{old} + \mathrm{clip}(V - V_{old}, -c, c) - R)^2\big)$$
#
# **The trap.** `torch.minimum` of the two losses looks natural and removes the pessimism that keeps PPO stable.

# %% [markdown]
# ## Your functions

# %%
def ppo_loss(ratio, advantages, clip_coef, clip_coef_high=None):
    """Per-sample clipped surrogate loss (to minimise), shaped like ratio."""
    # YOUR CODE HERE
    raise NotImplementedError


def value_loss(values, old_values, returns, clip_coef):
    """Per-sample value loss 0.5 * (V - R)^2, clipped around old_values when clip_coef is not None."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% [markdown]
# ## Try it by hand
#
# Five samples, clip 0.2. Work out each loss first: for (r, A) = (1.5, 1) the gain is capped at 1.2; for (1.5, -1)
# the loss of the unclipped term (1.5) is kept, because it is the larger of the two losses.

# %%
ratio = torch.tensor([0.5, 1.0, 1.5, 1.5, 0.5])
adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0])
try:
    print("yours:   ", [round(v, 4) for v in ppo_loss(ratio, adv, 0.2).tolist()])
except NotImplementedError:
    print("yours:    not implemented yet")
print("expected: [-0.5, -1.0, -1.2, 1.5, 0.8]")

# %% [markdown]
# ## Check

# %%
report = check("hw2", ppo_loss=ppo_loss, value_loss=value_loss)

# %% [markdown]
# ## See the gradient
#
# The loss and its gradient with respect to r, for A = +1 and A = -1, with the asymmetric clip 0.2 / 0.28: flat
# (zero gradient) exactly where the clip is active.

# %%
if report.ok:
    r = torch.linspace(0.4, 1.6, 241, requires_grad=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, a in zip(axes, (1.0, -1.0)):
        loss = ppo_loss(r, torch.full_like(r, a), 0.2, 0.28)
        (grad,) = torch.autograd.grad(loss.sum(), r)
        ax.plot(r.detach(), loss.detach(), color=OTHER_COLORS[0], label="loss")
        ax.plot(r.detach(), grad, color=OTHER_COLORS[1], ls="--", label="d loss / d r")
        ax.axvspan(0.8, 1.28, color="0.9", zorder=0)
        ax.set(xlabel="ratio r", title=f"A = {a:+g} (shaded: inside the clip range)")
    axes[0].set_ylabel("value")
    axes[0].legend(loc="upper right")
    plt.show()
else:
    print("Plot your loss once every test above passes.")

# %% [markdown]
# ## Integration: PPO with your losses
#
# The same PPO run (preset cartpole, asymmetric clip 0.2 / 0.28, value clipping on) with your two functions and
# with ours. The first update agrees to many digits; later the runs part (float rounding, amplified by training);
# both should learn.

# %%
if report.ok:
    steps = 4_096 if FAST else 40_000
    cfg = sandbox.preset("cartpole", total_steps=steps, seed=0, clip_vloss=True, clip_coef_high=0.28, quiet=True)
    yours = sandbox.train(cfg, maths=sandbox.Maths(ppo_loss=ppo_loss, value_loss=value_loss)).metrics
    ours = sandbox.train(cfg).metrics
    print("first update, policy_loss: yours", yours.policy_loss.iloc[0], "ours", ours.policy_loss.iloc[0])
    fig, ax = plt.subplots()
    ax.plot(ours.env_steps, ours.ep_return_mean, color=OTHER_COLORS[3], label="ours")
    ax.plot(yours.env_steps, yours.ep_return_mean, color=OTHER_COLORS[0], ls="--", label="yours")
    ax.set(xlabel="environment steps", ylabel="mean return, last 20 episodes", title="PPO on CartPole-v1, seed 0")
    ax.legend(loc="upper left")
    plt.show()
else:
    print("Train with your losses once every test above passes.")

# %% [markdown]
# ## Submit
#
# Work in a copy, from the repository's root: `mkdir -p my-homework; cp notebooks/homework/hw2_clipped_losses.ipynb
# my-homework/`, then `source .venv/bin/activate` (or write `.venv/bin/sandbox`). Save the notebook and hand it in;
# `sandbox grade hw2 my-homework/hw2_clipped_losses.ipynb` runs it from the top in its own process and grades the
# `ppo_loss` and `value_loss` it defines.
