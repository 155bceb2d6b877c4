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
# # Lesson 06: KL to a reference, and reward hacking
#
# RL fine-tuning optimises a reward that is only a proxy for what we want. Left alone, the policy finds what the
# proxy pays for and nothing else: *reward hacking*. The usual guard is a KL term that keeps the policy near the
# reference it started from. This lesson measures the pieces: how the KL is estimated from samples, what its
# coefficient beta buys and costs, where the term goes (loss or reward), and a rule that adapts beta.
#
# **Learning goals.** After this lesson you can
# - say what the k1, k2 and k3 estimators of KL are, which are unbiased, which have low variance, and when;
# - say which KL the gradient of each estimator *as a loss* follows (k1: none, k2: KL(pi || pi_ref), k3: KL(pi_ref || pi));
# - read a beta sweep on `lang:positive` as a reward-KL frontier, and recognise a hacked policy from its metrics;
# - explain why the same beta means different things with the KL in the loss and in the reward;
# - run Ziegler et al.'s adaptive beta and read its controller's behaviour.
#
# **Assumes** lesson 05 (GRPO on the language tasks, the reference, `kl_ref`).
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 3.8
# min (226 s) of wall time, 3.7 min (220 s) of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 12 s (a check
# that the notebook works: what it trains is tiny, and its numbers mean nothing). The committed outputs are those of
# that full run.
#
# The training runs go two at a time. The first run also pretrains the reference of `lang:positive` (5-15 s, once);
# FAST mode pretrains it for 100 steps instead of 600 (worse, and cached apart). The reference is the same on every
# seed set, as a downloaded model would be; `SANDBOX_SEED_SET` changes every other seed of the lesson.
#
# **Reading the numbers.** Sentences with a run's numbers in them are printed by the cells, from your run; a
# sentence that must hold on any run is checked by the cell under it (`sandbox.analysis.course.claim`), which stops the
# lesson, naming the sentence, if your run contradicts it.
#
# **The code you are reading about.** `maths.kl_k1`, `kl_k2`, `kl_k3` and `adaptive_beta` in `sandbox/maths.py`;
# the KL term's place in the objective in the docstring of `sandbox/algos/grpo.py` and in `sandbox/algos/objective.py`
# (`sequence_loss`, `Beta`); the task in `sandbox/envs/lang_tasks.py` (`PositiveTask`).
#
# Homework 3 (KL estimators): `notebooks/homework/hw3_kl_estimators.ipynb`.

# %%
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import sandbox
from sandbox import maths, stats
from sandbox.analysis import course
from sandbox.dropout_modes import MODES
from sandbox.runs.evaluate import evaluate
from sandbox.runs.pretrain import PretrainConfig, load_reference
from sandbox.algos.lang_rollout import sample_groups
from sandbox.envs.lang_tasks import completion_tokens, decode, make_task
from sandbox.plots import OTHER_COLORS, use_style

FAST = os.environ.get("SANDBOX_FAST") == "1"
SEEDS = course.seeds(2 if FAST else 5)  # [0, ..., 4]; SANDBOX_SEED_SET=2 shifts them to [1000, ..., 1004]
SFT_STEPS = 100 if FAST else 600  # FAST: a reference pretrained for 100 steps only (worse, and cached apart)
TOKENS = 2_000 if FAST else 40_000  # sampled tokens per training run
MC_SAMPLES = 20_000 if FAST else 400_000  # Monte Carlo samples per distribution pair
torch.set_num_threads(1)
use_style()
T0 = time.perf_counter()
OUT = Path(tempfile.mkdtemp(prefix="lesson06-"))  # run directories of the runs whose completions we read


def positive(**kw):
    """A GRPO config on lang:positive from its pretrained reference, dropout off, quiet."""
    return sandbox.Config(algo="grpo", env="lang:positive", dropout_mode="off", sft_steps=SFT_STEPS,
                          total_steps=TOKENS, quiet=True, **kw)


def band(ax, runs, column, color, label):
    """The mean over seeds of a metric against the update number, with its 95% t interval as a band."""
    n = min(len(r.metrics) for r in runs)
    values = np.stack([r.metrics[column].to_numpy()[:n] for r in runs])
    ci = np.array([stats.t_interval(values[:, j])[:2] for j in range(n)])
    x = np.arange(1, n + 1)
    ax.plot(x, values.mean(0), color=color, label=label)
    ax.fill_between(x, ci[:, 0], ci[:, 1], color=color, alpha=0.2, lw=0)


print(f"FAST={FAST}: {course.seed_names(SEEDS)}, {TOKENS:,} tokens per run, {MC_SAMPLES:,} Monte Carlo samples")

# %% [markdown]
# ## 1. Three estimators of KL, by Monte Carlo
#
# The KL of the policy p to the reference q, KL(p || q) = E_{x ~ p}[log p(x) - log q(x)], is an expectation over
# the policy's own samples, so the trainers estimate it from the tokens they sampled. With the log-ratio
# l = log p(x) - log q(x) of one sample x ~ p and ρ = q(x) / p(x) = exp(-l) (Schulman 2020, "Approximating KL
# divergence"):
#
# | estimator | per sample | `sandbox/maths.py` | property |
# |---|---|---|---|
# | k1 | l | `kl_k1` | unbiased; negative for many samples, high variance |
# | k2 | l² / 2 | `kl_k2` | biased (it estimates a different divergence); ≥ 0, low variance when p ≈ q |
# | k3 | (ρ - 1) - log ρ | `kl_k3` | unbiased (E_p[ρ - 1] = 0); ≥ 0 for every sample |
#
# Two distributions whose KL we know exactly: p = N(0, 1), q = N(mu, 1), KL(p || q) = mu² / 2. For these the
# moments are known too: l = -mu x + mu² / 2 ~ N(mu²/2, mu²), so E[k2] = mu²/2 + mu⁴/8 (k2's bias is mu⁴ / 8), and
# the standard deviations of one sample, relative to the KL, are 2 / mu (k1), sqrt(2 + mu²) (k2) and
# sqrt(exp(mu²) - 1 - mu²) / (mu² / 2) (k3; ρ is lognormal). The cell samples x ~ p, fresh samples for each mu,
# applies the sandbox's own estimators, and puts the exact values next to the measured ones.
#
# **Claims to test** (Schulman 2020, with p and q swapped, which changes nothing for two Gaussians of equal
# variance): at KL = 0.005 (mu = 0.1) the relative standard deviations std / KL are 20, 1.42 and 1.42 for k1, k2,
# k3, and k2's relative bias is 0.002; at KL = 0.5 (mu = 1) they are 2, 1.73 and 1.7, with k2's relative bias 0.25.

# %%
p = torch.distributions.Normal(0.0, 1.0)
ESTIMATORS = {"k1": maths.kl_k1, "k2": maths.kl_k2, "k3": maths.kl_k3}
CHUNKS = 40  # the samples in 40 chunks: a t interval over the chunks' values gives each number an interval


def log_ratios(mu, n=MC_SAMPLES, *, seed):
    """n samples x ~ p and their log-ratios log p(x) - log q(x), q = N(mu, 1): fresh samples for every mu."""
    torch.manual_seed(seed)
    x = p.sample((n,))
    return p.log_prob(x) - torch.distributions.Normal(mu, 1.0).log_prob(x)


def moments(mu, seed):
    """Per estimator: (relative bias, relative std) of one sample, each as (value, 95% interval over chunks)."""
    log_ratio = log_ratios(mu, seed=seed)
    kl = mu**2 / 2
    out = {}
    for name, f in ESTIMATORS.items():
        k = f(log_ratio).double()
        chunks = k.view(CHUNKS, -1)
        bias = ((chunks.mean(1) - kl) / kl).numpy()
        var = (chunks.var(1) / kl**2).numpy()  # relative variance per chunk: its mean is unbiased, then sqrt
        lo, hi, method = stats.t_interval(var)
        std_ci = stats.Interval(np.sqrt(max(lo, 0.0)), np.sqrt(hi), f"sqrt of a {method} interval")
        out[name] = ((float(k.mean() - kl) / kl, stats.t_interval(bias)), (float(np.sqrt(var.mean())), std_ci))
    return out


EXACT_STD = {  # std / KL of one sample, from l ~ N(mu^2 / 2, mu^2) and rho = exp(-l) lognormal
    "k1": lambda mu: 2 / mu,
    "k2": lambda mu: np.sqrt(2 + mu**2),
    "k3": lambda mu: np.sqrt(np.expm1(mu**2) - mu**2) / (mu**2 / 2),
}
rows = []
for i, mu in enumerate((0.1, 0.5, 1.0, 2.0)):
    for name, ((bias, bias_ci), (std, std_ci)) in moments(mu, seed=course.seed(i)).items():
        rows.append({"mu": mu, "KL": mu**2 / 2, "estimator": name,
                     "relative bias [95% CI]": f"{bias:.4f} [{bias_ci.low:.4f}, {bias_ci.high:.4f}]",
                     "exact relative bias": mu**2 / 4 if name == "k2" else 0.0,
                     "relative std [95% CI]": f"{std:.3f} [{std_ci.low:.3f}, {std_ci.high:.3f}]",
                     "exact relative std": EXACT_STD[name](mu)})
moment_table = pd.DataFrame(rows).set_index(["mu", "KL", "estimator"])
moment_table

# %% [markdown]
# Both claims reproduce (checked below, to 5%): the relative standard deviations are Schulman's at both distances,
# and so is k2's relative bias at KL 0.5. k2's bias grows as mu² / 4: at KL 2 it is as large as the KL itself. And
# k3's low variance is a property of *nearby* distributions: at KL 2 its relative std (exact 3.5) is above k1's
# (exact 1.0).
#
# Not every interval of the table contains the exact value, and none should be expected to: a 95% interval is wrong
# one time in twenty, and a table of 24 shows it. Eight intervals of unbiased estimators at 95% miss at least once
# with probability 1 - 0.95^8 ≈ 0.34. (A miss of k1's bias at small mu is a miss of the sample mean of x itself:
# there k1 - KL = -mu · x.)

# %%
def measured(mu, name, column):  # the number before the interval, in the table's text
    return float(moment_table.loc[(mu, mu**2 / 2, name), column].split()[0])


def contains(text, exact):
    low, high = (float(v) for v in text.split("[")[1].rstrip("]").split(","))
    return low <= exact <= high


hits = [contains(row[col], row[f"exact {col.split(' [')[0]}"]) for _, row in moment_table.iterrows()
        for col in ("relative bias [95% CI]", "relative std [95% CI]")]
misses = [f"{name} {col.split(' [')[0].removeprefix('relative ')} at mu = {mu:g}"
          for (mu, _, name), row in moment_table.iterrows()
          for col in ("relative bias [95% CI]", "relative std [95% CI]")
          if not contains(row[col], row[f"exact {col.split(' [')[0]}"])]
course.say(
    f"""In this run: at KL 0.005 the relative standard deviations are {measured(0.1, "k1", "relative std [95% CI]"):.2f},
{measured(0.1, "k2", "relative std [95% CI]"):.3f} and {measured(0.1, "k3", "relative std [95% CI]"):.3f} (Schulman:
20, 1.42, 1.42) and k2's relative bias is {measured(0.1, "k2", "relative bias [95% CI]"):.4f} (exact 0.0025; Schulman:
0.002); at KL 0.5 they are {measured(1.0, "k1", "relative std [95% CI]"):.2f},
{measured(1.0, "k2", "relative std [95% CI]"):.2f} and {measured(1.0, "k3", "relative std [95% CI]"):.2f} (Schulman:
2, 1.73, 1.7) and k2's relative bias is {measured(1.0, "k2", "relative bias [95% CI]"):.3f} (exact: 0.25). At KL 2, k3's
relative std is {measured(2.0, "k3", "relative std [95% CI]"):.1f} and k1's {measured(2.0, "k1", "relative std [95% CI]"):.1f}.
{sum(hits)} of the {len(hits)} intervals contain the exact value{"" if not misses else "; the misses: " + ", ".join(misses)}."""
)
schulman = {(0.1, "k1"): 20, (0.1, "k2"): 1.42, (0.1, "k3"): 1.42, (1.0, "k1"): 2, (1.0, "k2"): 1.73, (1.0, "k3"): 1.7}
off_by = {k: measured(*k, "relative std [95% CI]") / v - 1 for k, v in schulman.items()}
course.claim(
    "both of Schulman's claims reproduce: his relative standard deviations at KL 0.005 and 0.5, to 5%",
    all(abs(d) < 0.05 for d in off_by.values()),
    "relative errors " + ", ".join(f"{n} at mu {mu:g}: {d:+.1%}" for (mu, n), d in off_by.items()),
)
course.claim(
    "k2's relative bias at KL 0.5 is Schulman's 0.25 (to 0.02), and at KL 2 k3's relative std is above k1's",
    abs(measured(1.0, "k2", "relative bias [95% CI]") - 0.25) < 0.02
    and measured(2.0, "k3", "relative std [95% CI]") > measured(2.0, "k1", "relative std [95% CI]"),
    f"k2's bias {measured(1.0, 'k2', 'relative bias [95% CI]'):.3f}; at KL 2, k3 "
    f"{measured(2.0, 'k3', 'relative std [95% CI]'):.2f} and k1 {measured(2.0, 'k1', 'relative std [95% CI]'):.2f}",
)

# %% [markdown]
# The same measurement over a range of distances, and what one GRPO batch would see: the estimate of KL from the
# mean of 128 samples (16 prompts x 8 completions), repeated 2,000 times at mu = 0.1 (KL 0.005, the order of a
# per-token KL early in fine-tuning).

# %% mystnb={"image": {"alt": "Three panels on the KL estimators k1, k2 and k3 between two distributions at known KL. Left: the relative bias against the true KL (log scale): k2's grows with the KL, k1's and k3's stay at 0. Middle: the relative standard deviation of one sample (log-log): k1's falls as the KL grows, k3's stays near 1.4 and then rises, and the two cross near a KL of 0.6. Right: box plots of one batch's estimate from 128 samples at KL = 0.005 (dotted line): k1's box is wide and reaches below 0, k2's and k3's are narrow."}}
MUS = np.geomspace(0.05, 3.0, 13)
curves = {mu: moments(mu, seed=course.seed(10 + i)) for i, mu in enumerate(MUS)}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
for (name, f), color in zip(ESTIMATORS.items(), OTHER_COLORS):
    kls = MUS**2 / 2
    axes[0].plot(kls, [curves[mu][name][0][0] for mu in MUS], marker="o", ms=3, color=color, label=name)
    axes[1].plot(kls, [curves[mu][name][1][0] for mu in MUS], marker="o", ms=3, color=color, label=name)
axes[0].set(xscale="log", xlabel="true KL(p || q)", ylabel="(E[k] - KL) / KL", title="relative bias")
axes[1].set(xscale="log", yscale="log", xlabel="true KL(p || q)", ylabel="std(k) / KL", title="relative std, one sample")
axes[0].legend()
reps = min(2000, MC_SAMPLES // 128)
batch_log_ratio = log_ratios(0.1, reps * 128, seed=course.seed(99)).view(reps, 128)  # reps batches of 128 samples
spread = {name: f(batch_log_ratio).mean(1) for name, f in ESTIMATORS.items()}  # one estimate per batch
boxes = axes[2].boxplot([v.numpy() for v in spread.values()], whis=(2.5, 97.5), showfliers=False)
for i, color in enumerate(OTHER_COLORS[:3]):  # each box in its estimator's colour
    for part in ("boxes", "medians"):
        boxes[part][i].set_color(color)
    for part in ("whiskers", "caps"):
        for line in boxes[part][2 * i : 2 * i + 2]:
            line.set_color(color)
axes[2].set_xticks([1, 2, 3], list(spread))
axes[2].axhline(0.005, color="grey", ls=":")
axes[2].set(ylabel="estimate from 128 samples", title="one batch's estimate (dotted: KL = 0.005)")
plt.show()
print(f"{reps} batches of 128 samples at KL = 0.005 (box: quartiles; whiskers: 2.5% and 97.5%):")
pd.DataFrame({name: {"mean": float(v.mean()), "std": float(v.std()), "fraction below 0": float((v < 0).float().mean())}
              for name, v in spread.items()}).T.round(4)

# %% [markdown]
# Left: k2's bias grows with the KL; k1 and k3 stay at 0 (k1's points wobble at small KL, where its relative std
# is largest). Middle: k1's relative std falls as 2 / mu, k3's stays near 1.42 up to KL ≈ 0.1 and then grows
# faster; they cross at KL ≈ 0.63 (exact), so for distributions further apart than that, k1 is the less noisy
# one. Right: what one batch sees at KL 0.005. The k1 estimate from 128 samples scatters around 0.005 by more than
# the KL itself and is negative in about a quarter of the batches (its batch mean is close to normal, with standard
# deviation 0.1 / sqrt(128) ≈ 0.0088: P(below 0) ≈ 0.28); k2 and k3 are never negative, and scatter far less. That
# low variance near p = q is the usual argument for k3 in GRPO's loss; and `kl_ref`, which uses k1 because it is
# unbiased, is summed over whole completions and averaged over the batch before it is read.

# %%
below = {name: float((v < 0).float().mean()) for name, v in spread.items()}
course.say(
    f"""In this run: the k1 estimate from 128 samples had a standard deviation of {spread["k1"].std():.4f} and was
negative in {below["k1"]:.1%} of the {reps:,} batches; k2 and k3 had standard deviations of {spread["k2"].std():.4f}
and {spread["k3"].std():.4f}."""
)
course.claim(
    "k2 and k3 are never negative", below["k2"] == 0 and below["k3"] == 0, f"{below['k2']}, {below['k3']}", outcome=False
)
course.claim(
    "the k1 estimate is negative in about a quarter of the batches (P ≈ 0.28)",
    0.22 < below["k1"] < 0.34,
    f"{below['k1']:.3f} of {reps} batches",
)

# %% [markdown]
# ## 2. As a loss: which KL does each estimator's gradient follow?
#
# GRPO puts beta · k(log pi_theta - log pi_ref) in the loss, on tokens sampled from pi_old, and differentiates
# through pi_theta only (the samples are fixed). At the first step pi_theta = pi_old = p, so the expected gradient
# is E_{x~p}[∇ k(log p_theta(x) - log q(x))], with the expectation's weights not differentiated. On a small
# categorical distribution we can compute this exactly (a sum over the outcomes instead of samples) and compare it
# with the gradients of the two KLs:

# %%
torch.manual_seed(course.seed(1))
logits = torch.randn(6, requires_grad=True)  # p_theta = softmax(logits): the policy at one position
log_q = torch.log_softmax(torch.randn(6), 0)  # the reference
log_p = torch.log_softmax(logits, 0)
weights = log_p.exp().detach()  # how often each outcome is sampled: not differentiated


def grad(loss):
    return torch.autograd.grad(loss, logits, retain_graph=True)[0]


targets = {"KL(p || q), reverse": grad((log_p.exp() * (log_p - log_q)).sum()),
           "KL(q || p), forward": grad((log_q.exp() * (log_q - log_p)).sum())}
rows = []
for name, f in ESTIMATORS.items():
    g = grad((weights * f(log_p - log_q)).sum())
    rows.append({"estimator in the loss": name, "|gradient|": g.norm().item(),
                 **{f"max |difference| to ∇{t}": (g - tg).abs().max().item() for t, tg in targets.items()}})
gradients = pd.DataFrame(rows).set_index("estimator in the loss")
gradients

# %%
reverse, forward = (f"max |difference| to ∇{t}" for t in targets)
course.claim(
    "k1's expected gradient is 0, k2's is the gradient of the reverse KL, k3's of the forward KL (to float rounding)",
    gradients.loc["k1", "|gradient|"] < 1e-6
    and gradients.loc["k2", reverse] < 1e-6
    and gradients.loc["k3", forward] < 1e-6,
    f"{gradients.loc['k1', '|gradient|']:.1e}, {gradients.loc['k2', reverse]:.1e}, {gradients.loc['k3', forward]:.1e}",
    outcome=False,
)

# %% [markdown]
# To float rounding: k1's expected gradient is 0, k2's is the gradient of the reverse KL(p || q), and k3's
# is the gradient of the *forward* KL(q || p), not of the KL it estimates so well. The algebra:
# ∇k3 = (1 - q/p) ∇log p, and E_p[(1 - q/p) ∇log p] = -Σ_x q(x) ∇log p(x) = ∇KL(q || p). So GRPO's default KL
# term (k3), at the first step of each update, pulls like the forward KL: it penalises the policy for giving low
# probability to what the reference likes (mass-covering) rather than for putting probability where the reference
# puts little (mode-seeking, the reverse KL). Both are 0 only at p = q, so both hold the policy near the
# reference; they differ in what they forgive. k2 in the loss is the one whose gradient is the reverse KL's.
#
# ## 3. Reward hacking on `lang:positive`, and the beta sweep
#
# `lang:positive`: the prompt is `<bos> review:`, the completion up to 9 words, the reward the fraction of positive
# words. The reference learnt from reviews that mix positive and negative words in a sentence frame ("the movie was
# very good and the plot is dull ..."). The proxy pays for positive words and nothing else, so "good good good" or
# a single "great" scores 1: a hack. Here is the reference:

# %%
task = make_task("positive")
reference, ref_stats = load_reference(task, PretrainConfig(steps=SFT_STEPS))
torch.manual_seed(course.seed(0))
b = sample_groups(reference, reference, task, np.random.default_rng(course.seed(0)), 1, 6, 1.0, MODES["off"])
print(f"reference: mean reward {ref_stats['reference_reward']:.3f} over 512 samples")
for c, r in zip(b.completions, b.rewards):
    print(f"  {decode(completion_tokens(c)):<55} reward {r:.2f}")

# %% [markdown]
# GRPO with the KL in the loss (k3, the default) and five values of beta, 5 seeds each, 40k sampled tokens per run,
# dropout off (so that `kl_ref` measures learning only: lesson 05 showed dropout alone gives a KL above 0).

# %% mystnb={"image": {"alt": "Three panels against the update of GRPO with the KL penalty in the loss, one line per beta (0, 0.03, 0.1, 0.3 and 1), the mean over seeds with its 95% t band: the reward (fraction of positive words), kl_ref (the KL to the reference, in nats per completion) and the completion length in tokens."}}
BETAS = [0.0, 0.03, 0.1, 0.3, 1.0]
REWARD_BETAS = [0.01, 0.03, 0.1]  # section 4
BETA_COLORS = dict(zip(sorted(set(BETAS + REWARD_BETAS)), OTHER_COLORS))  # one colour per value of beta
configs = {(beta, s): positive(beta=beta, seed=s, out=str(OUT / f"beta{beta}-s{s}") if s == SEEDS[0] else None)
           for beta in BETAS for s in SEEDS}
runs_beta = dict(zip(configs, sandbox.train_many(list(configs.values()), workers=1 if FAST else 2)))
print(f"{len(runs_beta)} runs, {sum(r.summary['total_s'] for r in runs_beta.values()):.0f} s of training in all")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), sharex=True)
for beta in BETAS:
    runs, color = [runs_beta[beta, s] for s in SEEDS], BETA_COLORS[beta]
    for ax, col in zip(axes, ("reward_mean", "kl_ref", "completion_len")):
        band(ax, runs, col, color, f"beta {beta:g}")
axes[0].set(xlabel="update", ylabel="batch mean reward", title="reward (fraction of positive words)")
axes[1].set(xlabel="update", ylabel="kl_ref (nats per completion)", title="KL to the reference")
axes[2].set(xlabel="update", ylabel="tokens (<eos> included)", title="completion length")
axes[0].legend()
plt.show()


def last(run, column, k=5):
    return float(run.metrics[column].iloc[-k:].mean())


table = pd.DataFrame([{"beta": beta,
                       "reward (last 5 updates)": stats.mean_with_interval([last(runs_beta[beta, s], "reward_mean") for s in SEEDS]),
                       "kl_ref": stats.mean_with_interval([last(runs_beta[beta, s], "kl_ref") for s in SEEDS], 2),
                       "completion length": stats.mean_with_interval([last(runs_beta[beta, s], "completion_len") for s in SEEDS], 2),
                       "reward per seed": " ".join(f"{last(runs_beta[beta, s], 'reward_mean'):.2f}" for s in SEEDS),
                       "updates (min-max)": "-".join(str(f([len(runs_beta[beta, s].metrics) for s in SEEDS]))
                                                     for f in (min, max))}
                      for beta in BETAS]).set_index("beta")
table

# %% [markdown]
# What each policy writes (the first seed, 4 prompts sampled from its saved `policy.pt` with
# `sandbox.runs.evaluate.evaluate`):

# %%
for beta in BETAS:
    result = evaluate(OUT / f"beta{beta}-s{SEEDS[0]}", episodes=200, show=4, seed=SEEDS[0], quiet=True)
    print(f"beta {beta:g}: mean reward {result['mean']:.3f} over 200 completions")
    for _, completion, reward in result["samples"]:
        print(f"    {completion:<55} reward {reward:.2f}")
shutil.rmtree(OUT)  # the run directories were only needed for their policy.pt

# %% [markdown]
# What the sweep shows (each point checked below on every run):
#
# - **beta 0: the hack.** With nothing holding it to the reference, the policy learns to answer with positive words
#   only, a single one ("great": reward 1) or a string of them, far from the reference in KL: the highest reward and
#   the largest KL of the sweep.
# - **beta 0.03 and 0.1: a cheaper hack.** Runs can settle at a reward of about 0.5 with two-word answers such as
#   "very great": "very" is a word the reference writes often (its sentences go "the movie was very ..."), so this
#   hack costs less KL than a bare positive word. Some go on to the full hack within the budget.
# - **beta 0.3**: a mix of such answers and fragments of sentences.
# - **beta 1**: sentences like the reference's, a little more positive, at a KL of a nat or so.
#
# Reward and KL fall together as beta grows: there is no free lunch, only a choice of point on the frontier.
# Completion length is a cheap tell when the hack is one or two words (2-3 tokens with `<eos>`, where the reference
# writes about 7.5: the length panel's first update); a hack can also be a long string of positive words, which only
# the KL gives away.

# %%
final_of = {beta: {col: [last(runs_beta[beta, s], col) for s in SEEDS] for col in ("reward_mean", "kl_ref", "completion_len")}
            for beta in BETAS}
mean_of = {beta: {col: float(np.mean(v)) for col, v in cols.items()} for beta, cols in final_of.items()}
start_len = np.mean([runs_beta[beta, s].metrics.completion_len.iloc[0] for beta in BETAS for s in SEEDS])
hacked = [(beta, length) for beta in BETAS for r, length in zip(final_of[beta]["reward_mean"], final_of[beta]["completion_len"])
          if r > 0.9]
cheaper = sum(0.4 <= r <= 0.6 for beta in (0.03, 0.1) for r in final_of[beta]["reward_mean"])
course.say(
    f"""In this run ({len(SEEDS)} seeds of {TOKENS:,} tokens; the reference's reward: {ref_stats["reference_reward"]:.3f}),
means over the seeds of the last 5 updates: """
    + "; ".join(f"beta {beta:g}: reward {m['reward_mean']:.3f}, `kl_ref` {m['kl_ref']:.2f} nats, {m['completion_len']:.1f} tokens"
                for beta, m in mean_of.items())
    + f""". {sum(r > 0.9 for r in final_of[0.0]["reward_mean"])} of the {len(SEEDS)} seeds of beta 0 ended above 0.9;
{cheaper} of the {2 * len(SEEDS)} runs of beta 0.03 and 0.1 ended between 0.4 and 0.6. Of the {len(hacked)} runs that
ended above 0.9, {sum(l < 4 for _, l in hacked)} wrote fewer than 4 tokens per completion (against {start_len:.1f} at
the first update) and {sum(l >= 4 for _, l in hacked)} a longer string of positive words."""
)
trend = [mean_of[b] for b in (0.0, 0.3, 1.0)]
course.claim(
    "reward and KL fall together as beta grows (beta 0, 0.3, 1)",
    trend[0]["reward_mean"] > trend[1]["reward_mean"] > trend[2]["reward_mean"]
    and trend[0]["kl_ref"] > trend[1]["kl_ref"] > trend[2]["kl_ref"],
    ", ".join(f"beta {b:g}: {m['reward_mean']:.3f} / {m['kl_ref']:.2f}" for b, m in zip((0, 0.3, 1), trend)),
)
course.claim(
    "beta 0: the hack, the highest reward and the largest KL of the sweep",
    mean_of[0.0]["reward_mean"] == max(m["reward_mean"] for m in mean_of.values())
    and mean_of[0.0]["kl_ref"] == max(m["kl_ref"] for m in mean_of.values()),
    f"beta 0's reward {mean_of[0.0]['reward_mean']:.3f}, KL {mean_of[0.0]['kl_ref']:.2f}",
)
course.claim(
    "beta 0.03 and 0.1: runs can settle at a reward of about 0.5 (a cheaper hack)",
    cheaper >= 2,
    f"{cheaper} of {2 * len(SEEDS)} runs between 0.4 and 0.6",
)
course.claim(
    "beta 1: sentences like the reference's, at a KL of a nat or so",
    mean_of[1.0]["kl_ref"] < 2 and mean_of[1.0]["completion_len"] > 0.8 * start_len,
    f"kl_ref {mean_of[1.0]['kl_ref']:.2f}, {mean_of[1.0]['completion_len']:.1f} tokens",
)

# %% [markdown]
# Each beta against beta 0 (`sandbox.stats.compare_family`: permutation tests, Holm over the four comparisons of
# each metric, the difference's interval at the level each verdict used). With 5 seeds and beta 0's seeds spread between a full hack and none, these verdicts are this run's:
# lesson 04 measures how often a 5-seed verdict comes out the other way on other seeds.

# %%
rows = []
for column in ("reward_mean", "kl_ref"):
    base = [last(runs_beta[0.0, s], column) for s in SEEDS]
    decided = stats.compare_family([([last(runs_beta[beta, s], column) for s in SEEDS], base) for beta in BETAS[1:]],
                                   higher_is_better=None)
    for beta, v in zip(BETAS[1:], decided):
        rows.append({"metric": column, "beta": beta,
                     "difference to beta 0 [CI at the verdict's level]":
                         f"{v.comparison.diff:.3f} [{v.interval.low:.3f}, {v.interval.high:.3f}]",
                     "p (Holm)": float(f"{v.p_holm:.2g}"), "verdict": v.word, "detectable |g|": round(v.detectable, 2)})
against_0 = pd.DataFrame(rows).set_index(["metric", "beta"])
against_0

# %%
course.say(
    "In this run, against beta 0: "
    + "; ".join(
        f"{'the reward' if col == 'reward_mean' else 'the KL'}: "
        + ", ".join(f"beta {b:g} *{against_0.loc[(col, b), 'verdict']}*" for b in BETAS[1:])
        for col in ("reward_mean", "kl_ref")
    )
    + "."
)

# %% [markdown]
# ## 4. KL in the loss, or in the reward?
#
# Two places for the same idea (`--kl-in`):
#
# - **loss** (GRPO, DeepSeekMath): L = L_clip + beta · agg_t[k3_t], a per-token term next to a clipped term whose
#   advantages are normalised (std 1 within each group);
# - **reward** (Ziegler et al. 2019, InstructGPT): each completion's reward pays beta · sum_t k1_t *before* the
#   group advantages, R'_i = R_i - beta · sum_t k1_it (`sandbox/algos/grpo.py`, step 2).
#
# The same beta does not mean the same thing in both. In the loss, beta multiplies a per-token *average* of the
# KL, against advantages of order 1. In the reward, beta multiplies the KL *summed* over the completion (several
# nats here), against rewards between 0 and 1, and then the group's standardisation decides how much it
# weighs. So we compare the two placements along their frontiers, not at one beta: the KL in the reward at
# beta = 0.01, 0.03 and 0.1, 3 seeds each (too few seeds for a verdict: this section describes, it does not test).

# %% mystnb={"image": {"alt": "Scatter of the reward against kl_ref over the last 5 updates, one point per run: circles for the KL penalty in the loss (beta 0 to 1), triangles for the KL in the reward (beta 0.01 to 0.1), one colour per beta; the x-axis is linear below 1 and logarithmic above, a dotted line marks the reference policy's reward, and the legend is outside on the right."}}
REWARD_SEEDS = SEEDS[:3]
configs = {(beta, s): positive(beta=beta, kl_in="reward", seed=s) for beta in REWARD_BETAS for s in REWARD_SEEDS}
runs_reward = dict(zip(configs, sandbox.train_many(list(configs.values()), workers=1 if FAST else 2)))
print(f"{len(runs_reward)} runs, {sum(r.summary['total_s'] for r in runs_reward.values()):.0f} s of training in all")

fig, ax = plt.subplots(figsize=(8.0, 3.8))
for beta in BETAS:
    pts = np.array([(last(runs_beta[beta, s], "kl_ref"), last(runs_beta[beta, s], "reward_mean")) for s in SEEDS])
    ax.scatter(pts[:, 0], pts[:, 1], color=BETA_COLORS[beta], alpha=0.7, label=f"loss, beta {beta:g}")
for beta in REWARD_BETAS:
    pts = np.array([(last(runs_reward[beta, s], "kl_ref"), last(runs_reward[beta, s], "reward_mean"))
                    for s in REWARD_SEEDS])
    ax.scatter(pts[:, 0], pts[:, 1], color=BETA_COLORS[beta], marker="^", alpha=0.7, label=f"reward, beta {beta:g}")
ax.axhline(ref_stats["reference_reward"], color="grey", ls=":", lw=1)
ax.set_xscale("symlog", linthresh=1.0)
ax.set_xlim(left=-0.3)
ax.set(xlabel="kl_ref, last 5 updates (nats per completion)", ylabel="reward, last 5 updates",
       title="reward-KL frontier: one point per run (dotted: the reference)")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
plt.show()
pd.DataFrame([{"beta (KL in the reward)": beta,
               "reward": stats.mean_with_interval([last(runs_reward[beta, s], "reward_mean") for s in REWARD_SEEDS]),
               "kl_ref": stats.mean_with_interval([last(runs_reward[beta, s], "kl_ref") for s in REWARD_SEEDS], 2),
               "completion length": stats.mean_with_interval([last(runs_reward[beta, s], "completion_len") for s in REWARD_SEEDS], 2)}
              for beta in REWARD_BETAS]).set_index("beta (KL in the reward)")

# %% [markdown]
# The points of both placements fall along one curve: more KL buys more reward, however the KL is paid. Measured
# in beta, the reward placement is the much stronger one: a beta of 0.1 in the reward holds the policy closer to
# the reference than a beta of 0.3 in the loss (checked below). With 3 seeds per reward point the rest is a
# description, not a test.

# %%
reward_of = {beta: {col: float(np.mean([last(runs_reward[beta, s], col) for s in REWARD_SEEDS]))
                    for col in ("reward_mean", "kl_ref", "completion_len")} for beta in REWARD_BETAS}
course.say(
    "In this run, with the KL in the reward: "
    + "; ".join(f"beta {b:g}: reward {m['reward_mean']:.3f}, KL {m['kl_ref']:.2f}, {m['completion_len']:.1f} tokens"
                for b, m in reward_of.items())
    + f" (in the loss, beta 1: reward {mean_of[1.0]['reward_mean']:.3f}, KL {mean_of[1.0]['kl_ref']:.2f}; "
    f"beta 0.3: {mean_of[0.3]['reward_mean']:.3f}, KL {mean_of[0.3]['kl_ref']:.2f})."
)
course.claim(
    "a beta of 0.1 in the reward holds the policy closer to the reference than a beta of 0.3 in the loss",
    reward_of[0.1]["kl_ref"] < mean_of[0.3]["kl_ref"],
    f"KL {reward_of[0.1]['kl_ref']:.2f} against {mean_of[0.3]['kl_ref']:.2f}",
)

# %% [markdown]
# ## 5. Adaptive beta
#
# Ziegler et al. (2019) pick a target KL instead of a beta, and adjust beta after every update
# (`maths.adaptive_beta`, `--kl-target`, `--kl-horizon`):
#
# $$e = \mathrm{clip}\left(\frac{\mathrm{KL}}{\mathrm{KL_{target}}} - 1, -0.2, 0.2\right), \qquad
#   \beta \leftarrow \beta \left(1 + e \cdot \frac{n}{H}\right)$$
#
# with n the samples of the batch (128 completions here) and H the horizon: at most a 0.2 · n / H relative change
# per update. With H = 300, up to 8.5% per update. Target 4 nats per completion, starting from beta = 0.1.
#
# **Claim to test** (Ziegler et al. 2019): the controller holds the KL near its target. We measure the mean
# `kl_ref` over the last 10 updates of each seed.

# %% mystnb={"image": {"alt": "Two panels against the update for the adaptive KL controller with a target of 4 nats, one line per seed. Left: kl_ref, with a dotted line at the target. Right: beta, as the controller adapts it after every update."}}
TARGET, HORIZON = 4.0, 300
runs_adapt = sandbox.train_many([positive(beta=0.1, kl_target=TARGET, kl_horizon=HORIZON, seed=s) for s in SEEDS], workers=1 if FAST else 2)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3), sharex=True)
for run, color in zip(runs_adapt, OTHER_COLORS):
    axes[0].plot(run.metrics["update"], run.metrics.kl_ref, color=color, lw=1, label=f"seed {run.config.seed}")
    axes[1].plot(run.metrics["update"], run.metrics.beta, color=color, lw=1)
axes[0].axhline(TARGET, color="grey", ls=":")
axes[0].set(xlabel="update", ylabel="kl_ref (nats per completion)", title=f"KL (dotted: target {TARGET:g})")
axes[1].set(xlabel="update", ylabel="beta", title="beta, adapted after every update")
axes[0].legend(fontsize=8)
plt.show()
kl_end = [last(r, "kl_ref", 10) for r in runs_adapt]
lo, hi, _ = stats.t_interval(kl_end)
print(f"kl_ref over the last 10 updates: {stats.mean_with_interval(kl_end, 2)} (target {TARGET:g}; per seed {np.round(kl_end, 2).tolist()})")
peaks = [r.metrics.kl_ref.max() for r in runs_adapt]
print(f"peak kl_ref: {stats.mean_with_interval(peaks, 2)} (per seed {np.round(peaks, 1).tolist()}); "
      f"reward over the last 5 updates: {stats.mean_with_interval([last(r, 'reward_mean') for r in runs_adapt])}")
print(f"beta: lowest {[round(float(r.metrics.beta.min()), 3) for r in runs_adapt]} "
      f"at update {[int(r.metrics['update'][r.metrics.beta.idxmin()]) for r in runs_adapt]}, "
      f"highest {[round(float(r.metrics.beta.max()), 2) for r in runs_adapt]}")

# %% [markdown]
# **The claim does not reproduce in this setting** (checked below). The controller does not hold the KL near its
# target during training. First beta *falls* below its starting 0.1, because the KL is below the target while the
# policy has not yet found the hack; then the hack comes, and the KL shoots up far above the target, while beta can
# grow by at most 8.5% per update. A proportional controller with a horizon reacts slowly by design (Ziegler et al.
# used it over much longer runs); against a hack that appears within a few updates it arrives late, and its early
# *lowering* of beta opened the door.

# %%
lowest = [float(r.metrics.beta.min()) for r in runs_adapt]
growth = max(float((r.metrics.beta.iloc[1:].to_numpy() / r.metrics.beta.iloc[:-1].to_numpy()).max()) for r in runs_adapt)
course.say(
    f"""In this run: beta fell to {min(lowest):.3f}-{max(lowest):.3f}, then the KL peaked at {min(peaks):.1f} to
{max(peaks):.1f} nats per completion (target {TARGET:g}), and beta rose to {min(r.metrics.beta.max() for r in runs_adapt):.2f}-{max(r.metrics.beta.max() for r in runs_adapt):.2f}
at its highest (its largest step: x{growth:.3f}). Over the last 10 updates the KL was {stats.mean_with_interval(kl_end, 2)}
(per seed {", ".join(f"{k:.1f}" for k in kl_end)})."""
)
course.claim(
    "first beta falls below its starting 0.1", max(lowest) < 0.1, f"lowest beta per seed {np.round(lowest, 3).tolist()}"
)
course.claim(
    "beta can grow by at most 8.5% per update",
    growth <= 1 + 0.2 * 128 / HORIZON + 1e-6,
    f"largest step x{growth:.4f}",
    outcome=False,
)
course.claim(
    "the KL shoots up far above the target (the controller does not hold it near 4 during training)",
    np.mean(peaks) > 2 * TARGET,
    f"peaks {np.round(peaks, 1).tolist()}",
)

# %% [markdown]
# ## Check yourself
#
# 1. A batch's k1 estimate of KL is negative. Is the code broken? What about a negative k3 estimate?
# 2. From the table of section 1: at KL 0.005, how many samples does k1 need to reach the relative standard error
#    that k3 reaches with 100 samples?
# 3. You put k1 in the loss, with beta = 1. What does the KL term do to the policy, on average?
# 4. On `lang:positive`, a run has reward 0.99, completion length 2 and `kl_ref` 17. What has happened, and which
#    two numbers give it away without reading a completion?
# 5. Why does the same beta hold the policy much closer to the reference with the KL in the reward than with the
#    KL in the loss?
# 6. The adaptive controller's KL overshoots its target before coming back. Which constant would you change to
#    react faster, and what would you risk?

# %% [markdown]
# <details>
# <summary>Answers</summary>
#
# 1. No: k1 = log p(x) - log q(x) is negative for every sample where the reference gives the token more
#    probability than the policy, and a batch's mean can be negative when the two are close (section 1: at
#    KL 0.005, about a quarter of the 128-sample estimates were below 0). k3 is ≥ 0 for every sample, so a negative k3
#    *is* a bug (or float rounding at 1e-7).
# 2. The standard error of a mean of n samples is std / sqrt(n). k1's relative std was about 20 and k3's about
#    1.42, so k1 needs (20 / 1.42)² ≈ 200 times as many samples: about 20,000.
# 3. Nothing on average: at the first step E_p[∇ log p] = 0 (section 2: its exact expected gradient is 0). It still
#    adds noise, through the sampled tokens.
# 4. The policy writes one positive word and stops: the proxy reward is maxed out (hacked) with a completion that
#    the reference would almost never write. The short `completion_len` and the large `kl_ref` give it away.
# 5. They weigh different quantities: in the reward, beta multiplies the KL summed over the completion and competes
#    with rewards in [0, 1] before the group's standardisation (a difference of a few nats between two completions
#    of a group is large against reward differences of 0.1-0.3); in the loss, beta multiplies a per-token average
#    next to advantages of standard deviation 1. The same number is a stronger pull in the reward.
# 6. The horizon H (smaller: larger steps of beta per update; `kl_target` sets where, not how fast). Faster
#    reaction risks oscillation: beta overshoots in turn, and the KL swings below and above the target.
#
# </details>

# %%
print(f"notebook ran in {time.perf_counter() - T0:.0f} s")
