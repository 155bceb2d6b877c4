# %% [markdown]
# # Homework 3: the KL estimators (`kl_k1`, `kl_k2`, `kl_k3`)
#
# **Pairs with** lesson 06 (KL to a reference, and reward hacking). **You write** Schulman's three per-sample
# estimators of KL(p || q), which the trainers use when `--beta` pulls the policy towards its reference. **You learn**
# which are unbiased, which can be negative, and what each does as a loss.
#
# **How it is graded.** Run the *check* cell: PASS or FAIL per test, the case, what was expected, a hint, then
# `N passed, M failed`. `sandbox grade hw3 my-homework/hw3_kl_estimators.ipynb` runs the same tests: values against
# `sandbox.maths.kl_k1/k2/k3`, signs, the value at p = q, the bias measured by Monte Carlo on two fixed distributions,
# gradients, and PPO runs with each of your estimators in the loss or in the reward.
#
# **Rules.** Keep the signatures; elementwise torch operations only; float32 in, float32 out, with gradients.
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
# Samples x are drawn from p; each estimator sees only `log_ratio = log p(x) - log q(x)` (Schulman 2020,
# "Approximating KL divergence"). With r = q(x) / p(x) = exp(-log_ratio):
#
# | estimator | per sample | expectation under p | sign |
# |---|---|---|---|
# | k1 | `log_ratio` = -log r | KL(p \|\| q): unbiased | negative whenever q(x) > p(x) |
# | k2 | `0.5 * log_ratio**2` | not KL: biased (close to it when p and q are close) | never negative |
# | k3 | `(r - 1) - log r` | KL(p \|\| q): unbiased, since E_p[r] = 1 | never negative |
#
# **The trap.** r is q/p, not p/q: `exp(log_ratio) - 1 - log_ratio` looks the same and estimates something else.
# Near 0, `torch.expm1(-x) + x` is the accurate way to write k3.

# %% [markdown]
# ## Your functions

# %%
def kl_k1(log_ratio):
    """Per-sample k1 estimate of KL(p || q), shaped like log_ratio."""
    # YOUR CODE HERE
    raise NotImplementedError


def kl_k2(log_ratio):
    """Per-sample k2 estimate: 0.5 * log_ratio ** 2."""
    # YOUR CODE HERE
    raise NotImplementedError


def kl_k3(log_ratio):
    """Per-sample k3 estimate: (r - 1) - log r with r = exp(-log_ratio)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% [markdown]
# ## Bias and spread by Monte Carlo
#
# Two distributions over six outcomes (the ones the grader uses). For each estimator: the mean over 200,000 samples
# of p against the true KL, and the standard deviation of a single sample's estimate.

# %%
p = torch.tensor([0.30, 0.25, 0.20, 0.12, 0.08, 0.05], dtype=torch.float64)
q = torch.tensor([0.10, 0.15, 0.20, 0.20, 0.15, 0.20], dtype=torch.float64)
true_kl = float((p * (p / q).log()).sum())
x = torch.multinomial(p.float(), 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
log_ratio = (p.log() - q.log()).float()[x]
print(f"KL(p || q) = {true_kl:.4f}")
for name, fn in (("k1", kl_k1), ("k2", kl_k2), ("k3", kl_k3)):
    try:
        values = fn(log_ratio).double()
        print(f"{name}: mean {values.mean():.4f} (bias {values.mean() - true_kl:+.4f}), std per sample {values.std():.3f}, "
              f"negative for {(values < 0).double().mean():.0%} of samples")  # fmt: skip
    except NotImplementedError:
        print(f"{name}: not implemented yet")

# %% [markdown]
# ## Check

# %%
report = check("hw3", kl_k1=kl_k1, kl_k2=kl_k2, kl_k3=kl_k3)

# %% [markdown]
# ## The three estimators as functions of the log-ratio
#
# k1 is a line (it goes negative), k2 a parabola, k3 is asymmetric: it grows exponentially when q(x) >> p(x) (a
# negative log-ratio), only linearly in the other direction.

# %%
if report.ok:
    z = torch.linspace(-3, 3, 301)
    fig, ax = plt.subplots()
    for i, (name, fn) in enumerate((("k1", kl_k1), ("k2", kl_k2), ("k3", kl_k3))):
        ax.plot(z, fn(z), color=OTHER_COLORS[i], label=name)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="log_ratio = log p(x) - log q(x)", ylabel="estimate", ylim=(-3, 6), title="per-sample estimators")
    ax.legend(loc="upper center")
    plt.show()
else:
    print("Plot your estimators once every test above passes.")

# %% [markdown]
# ## Integration: PPO with a KL term
#
# PPO on CartPole pulled towards its initial policy with beta = 0.1 and your k3 in the loss, against ours. `kl_ref`
# (measured by the sandbox's own estimator) is the distance from that initial policy, nats per step.

# %%
if report.ok:
    steps = 4_096 if FAST else 30_000
    cfg = sandbox.preset("cartpole", total_steps=steps, seed=0, beta=0.1, kl_estimator="k3", quiet=True)
    yours = sandbox.train(cfg, maths=sandbox.Maths(kl_k1=kl_k1, kl_k2=kl_k2, kl_k3=kl_k3)).metrics
    ours = sandbox.train(cfg).metrics
    print("first update, policy_loss: yours", yours.policy_loss.iloc[0], "ours", ours.policy_loss.iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for m, label, color, ls in ((ours, "ours", OTHER_COLORS[3], "-"), (yours, "yours", OTHER_COLORS[0], "--")):
        axes[0].plot(m.env_steps, m.ep_return_mean, color=color, ls=ls, label=label)
        axes[1].plot(m.env_steps, m.kl_ref, color=color, ls=ls, label=label)
    axes[0].set(xlabel="environment steps", ylabel="mean return, last 20 episodes")
    axes[1].set(xlabel="environment steps", ylabel="kl_ref (nats per step)")
    axes[0].legend(loc="upper left")
    plt.show()
else:
    print("Train with your estimators once every test above passes.")

# %% [markdown]
# ## Submit
#
# Work in a copy, from the repository's root: `mkdir -p my-homework; cp notebooks/homework/hw3_kl_estimators.ipynb
# my-homework/`, then `source .venv/bin/activate` (or write `.venv/bin/sandbox`). Save the notebook and hand it in;
# `sandbox grade hw3 my-homework/hw3_kl_estimators.ipynb` runs it from the top in its own process and grades the three
# functions it defines.
