# %% [markdown]
# # Homework 1: generalised advantage estimation (`gae`)
#
# **Pairs with** lesson 01 (advantages, GAE and the time-limit trap). **You write** one function, `gae`, the one
# PPO's trainer calls after every rollout. **You learn** the GAE recursion, why a *termination* and a *truncation*
# are not the same thing, and what lambda = 0 and lambda = 1 mean.
#
# **How it is graded.** Run the *check* cell: it prints PASS or FAIL for each test, with the case that failed, what
# was expected and a hint, then `N passed, M failed`. The same tests grade your submission: `sandbox grade hw1
# my-homework/hw1_gae.ipynb` (your instructor may add hidden cases). Every test compares your function with the
# sandbox's own `sandbox.maths.gae` on random inputs drawn fresh at each check (the report gives the seed), plus
# properties (the lambda limits, independence of the environments), plus a short training run with your function
# inside the real trainer.
#
# **Rules.** Keep the signature. Use torch only (no numpy round trips), keep the inputs' dtype (float32), and do not
# change the input tensors in place: the trainer reuses them.
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
FAST = os.environ.get("SANDBOX_FAST") == "1"  # set by `make test` and by the grader: short runs only

# %% [markdown]
# ## The maths
#
# A rollout is `T` steps of `N` environments, every tensor `(T, N)`. The critic's one-step error and the GAE
# recursion (Schulman et al. 2016), run backwards in time from `A_T = 0`:
#
# $$\delta_t = r_t + \gamma\,(1 - \text{terminated}_t)\,V(s_{t+1}) - V(s_t)$$
# $$A_t = \delta_t + \gamma\lambda\,(1 - \text{done}_t)\,A_{t+1}$$
# $$R_t = A_t + V(s_t)\quad\text{(the returns: the critic's target)}$$
#
# - `next_values[t]` is V of the state the action at `t` led to, *even when the episode ended there*: for a
#   truncated episode (a time limit) it is the value of its last observation.
# - `terminated[t]` is 1 when the MDP ended at `t` (the pole fell): nothing follows, do not bootstrap.
# - `dones[t]` is 1 when the episode ended at `t` for any reason (terminated **or** truncated): the next step
#   belongs to another episode, so the recursion must stop there.
#
# **The trap.** A time limit is not the end of the world. Bootstrapping from 0 at a truncation teaches the critic
# that CartPole's world ends after 500 steps; cutting the recursion only at terminations lets the next episode leak
# into this one. Use `terminated` in delta and `dones` in the recursion.

# %% [markdown]
# ## Your function
#
# Replace `raise NotImplementedError` with your code. Return `(advantages, returns)`, both `(T, N)` float32.

# %%
def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    """GAE over a (T, N) rollout: returns (advantages, returns), both (T, N)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% [markdown]
# ## Try it by hand
#
# One environment, three steps, gamma = 0.5 and lambda = 1. The episode is *truncated* after step 1: a time limit,
# so its last observation still has a value (4 here), and a new episode starts at step 2. Work out the three
# advantages on paper first: delta = (1, 1, 0.5), and the recursion stops after step 1. Then compare. Two classic
# mistakes give other lines: treating the time limit as a termination (no bootstrap) gives [0.5, -1.0, 0.5], and
# cutting the recursion only at terminations gives [1.625, 1.25, 0.5].

# %%
col = lambda *xs: torch.tensor(xs)[:, None]  # noqa: E731 - a (T, 1) column
hand = dict(rewards=col(1.0, 1.0, 1.0), values=col(1.0, 2.0, 3.0), next_values=col(2.0, 4.0, 5.0),
            terminated=col(0.0, 0.0, 0.0), dones=col(0.0, 1.0, 0.0), gamma=0.5, gae_lambda=1.0)  # fmt: skip
try:
    print("yours:", gae(**hand)[0].flatten().tolist())
except NotImplementedError:
    print("yours: not implemented yet")
print("expected: [1.5, 1.0, 0.5]")

# %% [markdown]
# ## Check
#
# Every test, with what failed and why. Nothing here raises: fix the first FAIL, run the cell again.

# %%
report = check("hw1", gae=gae)

# %% [markdown]
# ## Integration: PPO with your `gae`
#
# The grader already trained PPO through the `Maths` seam with your function (the `integration` lines above). Here
# you can watch it: the same run with your `gae` and with ours, same seed. The first updates agree to many digits;
# later the two runs part, because a correct function computed in another order differs from ours in the last bits
# and training amplifies that. What matters is that both learn.

# %%
if report.ok:
    steps = 4_096 if FAST else 40_000
    cfg = sandbox.preset("cartpole", total_steps=steps, seed=0, quiet=True)
    yours = sandbox.train(cfg, maths=sandbox.Maths(gae=gae)).metrics
    ours = sandbox.train(cfg).metrics
    print("first update, explained_var: yours", yours.explained_var.iloc[0], "ours", ours.explained_var.iloc[0])
    fig, ax = plt.subplots()
    ax.plot(ours.env_steps, ours.ep_return_mean, color=OTHER_COLORS[3], label="ours (sandbox.maths.gae)")
    ax.plot(yours.env_steps, yours.ep_return_mean, color=OTHER_COLORS[0], ls="--", label="yours")
    ax.set(xlabel="environment steps", ylabel="mean return, last 20 episodes", title="PPO on CartPole-v1, seed 0")
    ax.legend(loc="upper left")
    plt.show()
else:
    print("Train with your gae once every test above passes.")

# %% [markdown]
# ## Submit
#
# Work in a copy, from the repository's root: `mkdir -p my-homework; cp notebooks/homework/hw1_gae.ipynb
# my-homework/`, then `source .venv/bin/activate` (or write `.venv/bin/sandbox`). Save the notebook and hand it in;
# `sandbox grade hw1 my-homework/hw1_gae.ipynb` runs it from the top in its own process (with `SANDBOX_FAST=1`), then
# grades the `gae` it defines. A cell that raises stops the run there: the report names it, and only what was defined
# up to that point is graded.
