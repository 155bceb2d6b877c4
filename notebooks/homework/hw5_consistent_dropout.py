# %% [markdown]
# # Homework 5: consistent dropout, through the dropout layer (`dropout_mask`, `apply_dropout`, `layer_mask`)
#
# **Pairs with** lesson 03 (dropout and the ratio). **You write** the sandbox's dropout layer, in three small
# functions that every dropout layer of the MLP and of the tiny GPT calls through the `Maths` seam: drawing a mask,
# applying it, and deciding which mask a forward pass uses (replay a stored one, draw a fresh one, or none). **You
# learn** inverted dropout, and why PPO's ratio is exactly 1 before the first step only if the update *replays* the
# masks the rollout used (consistent dropout, Hausknecht & Wagener 2022), and is noisy if it draws new ones (naive
# dropout: PyTorch's train mode, TRL's default).
#
# **How it is graded.** Run the *check* cell: PASS or FAIL per test, the case, what was expected, a hint, then `N
# passed, M failed`. `sandbox grade hw5 my-homework/hw5_consistent_dropout.ipynb` runs the same tests: the masks'
# values, rate, mean, independence and reproducibility; the application; the replay decision; the real MLP and the
# tiny GPT with your three functions; and two PPO runs, consistent and naive, whose first-minibatch ratios must be
# exact and noisy.
#
# **Rules.** Keep the signatures; torch's random generator only (the runs must be reproducible from the seed); float32.
# Write your own code: the grader runs your notebook where the sandbox's reference implementations are not (there,
# `sandbox.maths`, `sandbox.dropout` and the rest are stand-ins), so a function that calls them is graded as a stub.

# %%
import os

import matplotlib.pyplot as plt
import torch

import sandbox
from sandbox.grade import check
from sandbox.models.mlp import DropoutMLP
from sandbox.plots import MODE_COLORS, use_style

use_style()
FAST = os.environ.get("SANDBOX_FAST") == "1"

# %% [markdown]
# ## The maths, and where the masks live
#
# **Drawing** (`dropout_mask(shape, p)`). Inverted dropout multiplies activations by a mask whose entries are 0 with
# probability p and 1 / (1 - p) otherwise: the expectation of each activation is unchanged, so evaluation (no
# dropout) needs no rescaling. At p = 0 the mask is all ones.
#
# **Applying** (`apply_dropout(x, mask)`): `x * mask`, broadcasting (multi-sample dropout multiplies a `(B, 1, W)`
# activation by `(B, K, W)` masks). It must draw nothing itself: the mask it is given may be a replayed one.
#
# **Choosing** (`layer_mask(stored, fresh, shape, p, draw)`), once per dropout layer and forward pass:
#
# - a `stored` mask is given: replay it, in train mode too, and draw nothing;
# - else, `fresh` (train mode and p > 0): return `draw(shape, p)`;
# - else (eval mode, or p = 0): return `None`, no dropout.
#
# **Storing** is the trainer's job, and worth reading: in consistent mode `Population.collect` in
# `sandbox/algos/population.py` draws each step's masks with `agent.sample_mask` (your `dropout_mask`), acts with them
# and keeps them in the rollout's `masks[t]`; the update hands the minibatch's stored masks to the networks
# (`Population.evaluate`), and your `layer_mask` replays them. The tiny GPT does the same with one `SeqMasks` per
# sequence (`sandbox/models/gpt.py`): the KV-cached sampler and the whole-sequence update index the same tensors.
#
# **The trap.** "Train mode means fresh masks" is what `nn.Dropout` does, and it is exactly naive dropout: the update
# then evaluates a different random network from the one that chose the action, and the ratio is noise before any
# learning.

# %% [markdown]
# ## Your functions

# %%
def dropout_mask(shape, p):
    """An inverted-dropout mask of `shape`: 0 with probability p, else 1 / (1 - p). float32."""
    # YOUR CODE HERE
    raise NotImplementedError


def apply_dropout(x, mask):
    """The activations x with the given mask applied."""
    # YOUR CODE HERE
    raise NotImplementedError


def layer_mask(stored, fresh, shape, p, draw):
    """The mask one dropout layer uses in one forward pass: the stored one, a fresh draw(shape, p), or None."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% [markdown]
# ## Try it: one network, two forward passes
#
# A policy MLP with dropout p = 0.3 and your three functions (`DropoutMLP`, the network the trainers use). The
# "rollout" forward and the "update" forward of the same inputs, in train mode: with the rollout's masks stored and
# replayed, and with fresh masks each time.

# %%
torch.manual_seed(0)
try:
    net = DropoutMLP(4, 2, (64, 64), p=0.3, maths=sandbox.Maths(dropout_mask=dropout_mask, apply_dropout=apply_dropout,
                                                                layer_mask=layer_mask))  # fmt: skip
    obs = torch.randn(256, 4)
    with torch.no_grad():
        masks = net.sample_mask(256)
        logp_rollout = net(obs, masks).log_softmax(-1)[:, 0]
        replayed = net(obs, masks).log_softmax(-1)[:, 0]
        fresh = net(obs).log_softmax(-1)[:, 0]
    print("mean |r - 1|, stored masks replayed:", float((replayed - logp_rollout).exp().sub(1).abs().mean()))
    print("mean |r - 1|, fresh masks:          ", float((fresh - logp_rollout).exp().sub(1).abs().mean()))
except NotImplementedError:
    print("not implemented yet")

# %% [markdown]
# ## Check

# %%
report = check("hw5", dropout_mask=dropout_mask, apply_dropout=apply_dropout, layer_mask=layer_mask)

# %% [markdown]
# ## Integration: PPO with your dropout layer, consistent and naive
#
# PPO on CartPole with dropout p = 0.2 in the policy and the value network, every mask drawn, applied and chosen by
# your functions. `first_ratio_dev` is the mean |r - 1| over the first minibatch of each update, before any gradient
# step: exactly 0 when the update replays the rollout's masks, noise when it draws new ones.

# %%
if report.ok:
    steps = 2_048 if FAST else 30_000
    maths = sandbox.Maths(dropout_mask=dropout_mask, apply_dropout=apply_dropout, layer_mask=layer_mask)
    fig, ax = plt.subplots()
    for mode in ("naive", "consistent"):
        cfg = sandbox.preset("cartpole", total_steps=steps, dropout=0.2, dropout_mode=mode, dropout_value=True, seed=0,
                             quiet=True)  # fmt: skip
        m = sandbox.train(cfg, maths=maths).metrics
        print(f"{mode}: first_ratio_dev from {m.first_ratio_dev.min():.3g} to {m.first_ratio_dev.max():.3g}, final "
              f"return {m.ep_return_mean.iloc[-1]:.1f}")  # fmt: skip
        ax.plot(m.env_steps, m.first_ratio_dev, color=MODE_COLORS[mode], label=f"{mode} (your dropout layer)")
    ax.set(xlabel="environment steps", ylabel="first_ratio_dev = mean |r - 1|", title="the ratio before any step")
    ax.legend(loc="upper right")
    plt.show()
else:
    print("Train with your dropout layer once every test above passes.")

# %% [markdown]
# ## Submit
#
# Work in a copy, from the repository's root: `mkdir -p my-homework; cp
# notebooks/homework/hw5_consistent_dropout.ipynb my-homework/`, then `source .venv/bin/activate` (or write
# `.venv/bin/sandbox`). Save the notebook and hand it in; `sandbox grade hw5 my-homework/hw5_consistent_dropout.ipynb`
# runs it from the top in its own process and grades the three functions it defines.
