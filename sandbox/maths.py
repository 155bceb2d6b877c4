"""The maths of the sandbox: small pure functions, and the seam through which the trainers call them.

Every trainer reaches these functions through a :class:`Maths` object, never by importing them directly.
To try your own version of one of them, pass it in; the trainer does not change::

    import sandbox
    from sandbox.maths import Maths

    def my_gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
        ...  # your code

    result = sandbox.train(sandbox.preset("cartpole"), maths=Maths(gae=my_gae))

Each function states its contract (shapes, ranges, the trap to avoid) and has hand-computed tests in
``tests/test_maths.py``. Diagnostics that are *measured* (``approx_kl``, ``explained_var``, ...) always use the
reference functions below, so a bug in a replaced function shows up in the metrics instead of hiding there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import Tensor

from .dropout import apply_dropout, dropout_mask, layer_mask

__all__ = [
    "Maths",
    "adaptive_beta",
    "aggregate_loss",
    "group_advantages",
    "grpo_lambda_switch",
    "length_penalty_rewards",
    "kl_k1",
    "kl_k2",
    "dppo_scores",
    "dropout_schedule",
    "sample_dropout_mask",
    "dropout_mask",
    "apply_dropout",
    "layer_mask",
    "explained_variance",
    "normalize_advantages",
    "gae",
    "kl_k3",
    "ppo_loss",
    "value_loss",
]


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    dones: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), truncation-aware.

    All inputs have shape ``(T, N)``: T time steps of N parallel environments, float tensors.

    - ``rewards[t]``: reward received after the action at step t.
    - ``values[t]``: V(s_t) from the rollout.
    - ``next_values[t]``: V(s_{t+1}) of the state the action led to, *even when the episode ended there*
      (for a truncated episode this is the value of its last observation).
    - ``terminated[t]``: 1 if s_{t+1} is terminal (the MDP ended: no future reward, do not bootstrap).
    - ``dones[t]``: 1 if the episode ended at t for any reason (terminated or truncated): the advantage of
      step t must not look into the next episode.

    Returns ``(advantages, returns)``, both ``(T, N)``, with ``returns = advantages + values`` (the value target).

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    The trap: treating a time-limit truncation as termination (bootstrapping with 0) teaches the critic that
    the world ends after 500 steps. Truncation stops the recursion but still bootstraps from V(s_{t+1}).
    Typical values: gamma 0.98-0.999, gae_lambda 0.8-0.95.
    """
    not_terminated = 1.0 - terminated
    not_done = 1.0 - dones
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * gae_lambda * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values


def ppo_loss(ratio: Tensor, advantages: Tensor, clip_coef: float, clip_coef_high: float | None = None) -> Tensor:
    """Per-sample clipped surrogate loss of PPO (Schulman et al. 2017), to be minimised.

    ``ratio = pi_theta(a|s) / pi_old(a|s)`` and ``advantages`` have the same shape (one entry per sample or per
    token). Returns a tensor of that shape::

        loss_i = -min(r_i * A_i, clip(r_i, 1 - clip_coef, 1 + clip_coef_high) * A_i)

    ``clip_coef_high`` defaults to ``clip_coef`` (symmetric clipping); DAPO uses 0.2 / 0.28. The caller
    aggregates (a mean for PPO, a masked mean for sample dropout, a token aggregation for GRPO).
    Typical clip_coef: 0.1-0.3. The trap: taking ``max`` of the two *losses* is the same as ``min`` of the two
    objectives; taking ``min`` of the losses removes the pessimism that makes PPO stable.
    """
    high = clip_coef if clip_coef_high is None else clip_coef_high
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + high) * advantages
    return -torch.minimum(unclipped, clipped)


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip_coef: float | None) -> Tensor:
    """Per-sample value loss ``0.5 * (V - R)^2``, optionally clipped around the rollout's values.

    With ``clip_coef`` set (CleanRL's ``clip_vloss``), the loss is
    ``0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)``. SB3 does not clip by default.
    """
    unclipped = (values - returns).square()
    if clip_coef is None:
        return 0.5 * unclipped
    clipped = (old_values + torch.clamp(values - old_values, -clip_coef, clip_coef) - returns).square()
    return 0.5 * torch.maximum(unclipped, clipped)


def kl_k3(log_ratio: Tensor) -> Tensor:
    """Per-sample k3 estimator of KL(p || q) (Schulman 2020), for samples drawn from p.

    ``log_ratio = log p(x) - log q(x)``. Returns ``exp(-log_ratio) - 1 + log_ratio``, which is >= 0 for every
    sample and unbiased for KL(p || q) when x ~ p. PPO's ``approx_kl`` is ``mean(kl_k3(logp_old - logp_new))``
    = ``mean((r - 1) - log r)``, because the batch was sampled from pi_old.
    """
    return torch.expm1(-log_ratio) + log_ratio


def kl_k1(log_ratio: Tensor) -> Tensor:
    """Per-sample k1 estimator of KL(p || q) for x ~ p: ``log_ratio = log p(x) - log q(x)`` itself.

    Unbiased but often negative per sample. As a *loss* its expected gradient is zero: it measures, it does not pull.
    """
    return log_ratio


def kl_k2(log_ratio: Tensor) -> Tensor:
    """Per-sample k2 estimator ``0.5 * log_ratio^2``: biased, low variance, always >= 0. As a loss its gradient is
    the gradient of the reverse KL, KL(pi_theta || pi_ref)."""
    return 0.5 * log_ratio.square()


def group_advantages(rewards: Tensor, scale_rewards: str = "group", eps: float = 1e-4) -> Tensor:
    """GRPO advantages (Shao et al. 2024): each reward minus its group's mean, scaled.

    ``rewards (n_groups, G)``: G completions (or episodes) per prompt. Returns the same shape:

    - ``group``: ``(R - mean_group) / (std_group + eps)`` (DeepSeekMath);
    - ``batch``: ``(R - mean_group) / (std_batch + eps)`` (TRL's ``scale_rewards="batch"``);
    - ``none``:  ``R - mean_group`` (Dr. GRPO: the division by std favours easy and hopeless prompts).

    std is the sample standard deviation (n - 1), as in TRL. A group whose rewards are all equal gets advantage 0
    everywhere: it teaches nothing (``zero_std_frac`` in the metrics counts them).
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)
    if scale_rewards == "batch":
        return centred / (rewards.std() + eps)
    if scale_rewards == "none":
        return centred
    raise ValueError(f"scale_rewards must be group, batch or none, got {scale_rewards!r}")


def length_penalty_rewards(correct: Tensor, lengths: Tensor, alpha: float, form: str = "efficiency") -> Tensor:
    """Rewards that ask for shorter correct completions, for a task whose reward is a 0/1 correctness.

    ``correct (n_groups, G)``: bool (or 0/1), which completions are right; ``lengths (n_groups, G)``: their lengths in
    tokens. Returns float rewards of that shape. ``alpha`` >= 0 is the penalty's strength.

    - ``efficiency`` (GRPO-lambda's efficiency reward, Dai et al. 2025, reconstructed: README; the form of Arora &
      Zanette 2025): a correct completion earns ``1 - alpha * sigmoid(z)``, ``z = (L - mean_c) / std_c`` over the
      group's *correct* completions (population std); a wrong one earns 0. A lone correct completion, or correct
      completions all of one length, get z = 0, so ``1 - alpha / 2``. Range [1 - alpha, 1].
    - ``kimi`` (Kimi 1.5's length reward, as open-r1 implements it, added to the correctness with weight ``alpha``):
      ``lam = 0.5 - (L - min L) / (max L - min L)`` over *all* G completions (0 when they all have one length);
      ``R = 1{correct} + alpha * (lam if correct else min(0, lam))``. Range [-alpha/2, 1 + alpha/2].

    The trap: ``efficiency`` compares correct completions only with each other. When every correct answer to a prompt
    has the same length (the toy tasks: one right answer), z = 0 for all of them and the penalty only rescales the
    rewards, which the group's std normalisation undoes: it cannot shorten anything. ``kimi`` compares right with
    wrong: a short wrong answer can outscore a long right one once alpha > 2.
    """
    c = correct.to(torch.float32)
    length = lengths.to(torch.float32)
    if form == "efficiency":
        n = c.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (c * length).sum(dim=1, keepdim=True) / n
        std = ((c * (length - mean).square()).sum(dim=1, keepdim=True) / n).sqrt()
        z = torch.where(std > 0, (length - mean) / std.clamp(min=1e-12), torch.zeros_like(length))
        return c * (1.0 - alpha * torch.sigmoid(z))
    if form == "kimi":
        low, high = length.min(dim=1, keepdim=True).values, length.max(dim=1, keepdim=True).values
        span = high - low
        lam = torch.where(span > 0, 0.5 - (length - low) / span.clamp(min=1e-12), torch.zeros_like(length))
        return c + alpha * torch.where(c > 0, lam, lam.clamp(max=0.0))
    raise ValueError(f"length penalty form must be efficiency or kimi, got {form!r}")


def grpo_lambda_switch(correct: Tensor, lam: float, rule: str = "top") -> Tensor:
    """GRPO-lambda's switch (Dai et al. 2025, reconstructed: README): which groups get the length-penalised reward.

    ``correct (n_groups, G)``: bool (or 0/1). Each group's *correctness ratio* is its fraction of correct completions.
    Returns a bool ``(n_groups,)``, True = the length-penalised reward, False = the plain 0/1 correctness.

    - ``top`` (the paper's batch-wise top-lambda selection): the ``ceil(lam * n_groups)`` groups with the highest
      correctness ratio; ties go to the earlier group (a stable sort). ``lam`` in [0, 1]: 0 = no group, 1 = every one.
    - ``threshold``: every group whose correctness ratio is at least ``lam``.

    Groups the policy mostly gets wrong keep the plain reward, which asks only for correctness: the length penalty
    is for prompts it can already solve. The trap: ``top`` ranks groups *within the batch*, so a batch the policy
    gets all wrong still sends its top groups to the penalty (harmless here: a wrong completion earns 0 either way).
    """
    ratio = correct.to(torch.float32).mean(dim=1)
    if rule == "top":
        k = math.ceil(round(lam * ratio.numel(), 9))
        chosen = torch.zeros_like(ratio, dtype=torch.bool)
        chosen[torch.argsort(ratio, descending=True, stable=True)[:k]] = True
        return chosen
    if rule == "threshold":
        return ratio >= lam
    raise ValueError(f"GRPO-lambda rule must be top or threshold, got {rule!r}")


def aggregate_loss(per_token: Tensor, mask: Tensor, mode: str = "grpo", max_len: int | None = None) -> Tensor:
    """Reduce a per-token loss ``(B, T)`` to a scalar over the tokens where ``mask (B, T)`` is 1.

    - ``grpo``: mean over each sequence's tokens, then mean over sequences (a long sequence's tokens weigh less);
    - ``bnpo``: sum over all tokens / number of tokens in the batch (every token weighs the same);
    - ``dr_grpo``: sum over all tokens / (B * max_len), a constant (Dr. GRPO: no length normalisation at all).
      ``max_len`` must be the longest *possible* length (TRL: ``max_completion_length``; the trainers pass the task's
      ``max_new_tokens`` or the env's episode limit), not the longest of this batch, which changes from batch to batch.

    ``max_len`` defaults to T. Sequences with no token count for nothing: they are left out of ``grpo``'s mean (TRL's
    ``grpo`` loss counts them as zeros, which shrinks the loss by their fraction of the batch).
    The trap: ``grpo`` makes every sequence weigh the same, so a wrong long answer is punished less per token than a
    wrong short one, which biases length (the ``length`` task shows it).
    """
    mask = mask.to(per_token.dtype)
    masked = per_token * mask
    if mode == "grpo":
        n = mask.sum(dim=1)
        has = n > 0
        return (masked.sum(dim=1)[has] / n[has]).mean() if bool(has.any()) else masked.sum() * 0.0
    if mode == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if mode == "dr_grpo":
        return masked.sum() / (per_token.shape[0] * (max_len or per_token.shape[1]))
    raise ValueError(f"loss aggregation must be grpo, bnpo or dr_grpo, got {mode!r}")


def adaptive_beta(beta: float, kl: float, kl_target: float, horizon: int, n_steps: int) -> float:
    """Ziegler et al. (2019)'s adaptive KL coefficient, once per update.

    ``e = clip(kl / kl_target - 1, -0.2, 0.2)``; ``beta * (1 + e * n_steps / horizon)``. ``kl`` is the batch mean
    of the per-sequence summed k1; ``n_steps`` the number of samples in the batch. Beta grows when the policy is
    further from the reference than the target, shrinks when it is closer, by at most 20% of n_steps / horizon.
    """
    error = min(max(kl / kl_target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_steps / horizon)


def dppo_scores(surrogate: Tensor) -> Tensor:
    """D-PPO's per-sample score (reconstruction): ``score_i = x_i * (S - x_i)`` with S = sum x, sample i's share of
    the cross terms sum_{i != j} x_i x_j. With L = mean(x), V = mean(x^2) - L^2 and C = sum(score) = S^2 - sum x^2,
    the identity ``V = (N - 1) * L^2 - C / N`` holds: low-score samples are those that push the variance up."""
    return surrogate * (surrogate.sum() - surrogate)


def sample_dropout_mask(
    surrogate: Tensor,
    ratio: Tensor,
    advantages: Tensor,
    mode: str = "none",
    rate: float = 0.1,
    delta: float = 0.25,
    by_sign: bool = False,
) -> Tensor:
    """Which samples (transitions, or tokens) to keep in the surrogate: a bool mask, True = keep. Detached.

    ``surrogate`` is x_i = r_i * A_i; all inputs are 1-D over the minibatch's samples (only the valid ones).

    - ``none``: keep everything.
    - ``dppo`` (D-PPO, Xie et al. 2023; a *reconstruction*, the paper's rule could not be read): with S = sum x,
      score_i = x_i * (S - x_i), sample i's share of the cross terms sum_{i != j} x_i x_j that drive the variance of
      the surrogate; drop the ``rate`` fraction with the lowest score.
    - ``sdpo`` (Lin et al. 2023, rule from their code): keep a sample iff ``|r - 1| < delta``.
    - ``outlier``: drop the ``rate`` fraction with the largest ``|x_i - mean(x)|`` (the greedy variance minimiser).

    ``by_sign`` applies the ``rate`` within A > 0 and within A <= 0 separately (a rule that mostly drops A < 0 samples
    biases the update). If the mask would keep nothing, everything is kept. ``rate`` in [0, 1): the number dropped
    is floor(rate * n) (per sign group with ``by_sign``).
    """
    x = surrogate.detach()
    n = x.numel()
    if mode == "none" or n == 0:
        return torch.ones_like(x, dtype=torch.bool)
    if mode == "sdpo":
        keep = (ratio.detach() - 1.0).abs() < delta
    elif mode in ("dppo", "outlier"):
        if mode == "dppo":
            badness = -dppo_scores(x)  # low score = bad
        else:
            badness = (x - x.mean()).abs()
        keep = torch.ones_like(x, dtype=torch.bool)
        groups = [advantages.detach() > 0, advantages.detach() <= 0] if by_sign else [torch.ones_like(keep)]
        for group in groups:
            idx = group.nonzero().squeeze(1)
            k = int(rate * idx.numel())
            if k > 0:
                worst = torch.topk(badness[idx], k).indices  # ties: topk's order, deterministic on CPU
                keep[idx[worst]] = False
    else:
        raise ValueError(f"sample dropout must be none, dppo, sdpo or outlier, got {mode!r}")
    return keep if bool(keep.any()) else torch.ones_like(keep)


def dropout_schedule(
    p: float,
    update: int,
    schedule: str = "constant",
    cutoff: int = 0,
    total_updates: int | None = None,
    progress: float = 0.0,
) -> float:
    """The dropout probability for ``update`` under a schedule (Liu et al. 2023, "Dropout Reduces Underfitting";
    shapes from their code):

    - ``constant``: p throughout;
    - ``early``: p for the first ``cutoff`` updates, then 0;
    - ``early-linear``: from p at update 1 down linearly to 0 at update ``cutoff + 1``, then 0;
    - ``late``: 0 for the first ``cutoff`` updates, then p.

    What the trainers pass: ``update`` counts from 1 (the first update is 1, as ``metrics.csv``'s ``update`` column;
    a resumed run goes on counting from its checkpoint); ``total_updates`` is the number of updates the run plans
    (PPO on Gym and SB3's PPO: ``total_steps // (num_envs * num_steps)``), None where the budget does not fix it
    (GRPO and the language tasks, whose batches vary in length); ``progress`` is the fraction of the step budget
    used before this update (0 at the first, below 1 at the last), known for every trainer. The built-in shapes
    count in updates and use neither; a schedule of your own over the whole run (``--dropout-schedule custom``
    with ``--maths dropout_schedule module:function``) can. ``p`` is 0 in mode off.

    The trainers set it on every dropout layer before each update's rollout, so rollout and update see the same p.
    """
    if schedule == "constant":
        return p
    if schedule == "early":
        return p if update <= cutoff else 0.0
    if schedule == "early-linear":
        return p * max(0.0, 1.0 - (update - 1) / cutoff) if cutoff > 0 else 0.0
    if schedule == "late":
        return 0.0 if update <= cutoff else p
    raise ValueError(f"dropout schedule must be constant, early, early-linear or late, got {schedule!r}")


def normalize_advantages(adv: Tensor) -> Tensor:
    """Advantages to mean 0, std 1 over the given samples (PPO normalises each minibatch). A single sample is left
    as it is (its std is undefined). The 1e-8 keeps a batch of equal advantages finite."""
    if len(adv) < 2:
        return adv
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """``1 - Var(target - predicted) / Var(target)``: 1 is a perfect critic, 0 no better than a constant,
    negative worse than a constant. NaN when the target has no variance."""
    var = target.var(unbiased=False)
    if var.item() == 0.0:
        return float("nan")
    return float(1.0 - (target - predicted).var(unbiased=False) / var)


@dataclasses.dataclass(frozen=True)
class Maths:
    """The seam between the trainers and the maths: every trainer calls these fields, never the functions
    directly. Replace a field with your own function of the same signature to run the real trainer on it.

    Example: ``sandbox.train(config, maths=Maths(ppo_loss=my_ppo_loss))``.
    """

    gae: Callable[..., tuple[Tensor, Tensor]] = gae
    """``gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda) -> (advantages, returns)``."""
    ppo_loss: Callable[..., Tensor] = ppo_loss
    """``ppo_loss(ratio, advantages, clip_coef, clip_coef_high=None) -> per-sample loss``."""
    value_loss: Callable[..., Tensor] = value_loss
    """``value_loss(values, old_values, returns, clip_coef_or_None) -> per-sample loss``."""
    kl_k1: Callable[[Tensor], Tensor] = kl_k1
    """``kl_k1(log_ratio) -> per-sample k1``."""
    kl_k2: Callable[[Tensor], Tensor] = kl_k2
    """``kl_k2(log_ratio) -> per-sample k2``."""
    kl_k3: Callable[[Tensor], Tensor] = kl_k3
    """``kl_k3(log_ratio) -> per-sample k3``. The trainers take k1/k2/k3 from here where KL enters a loss or a
    reward; the measured ``kl_ref`` and ``approx_kl`` use the reference functions."""
    group_advantages: Callable[..., Tensor] = group_advantages
    """``group_advantages(rewards (n_groups, G), scale_rewards) -> advantages (n_groups, G)``."""
    length_penalty_rewards: Callable[..., Tensor] = length_penalty_rewards
    """``length_penalty_rewards(correct (n_groups, G), lengths (n_groups, G), alpha, form) -> rewards``
    (``--length-penalty``)."""
    grpo_lambda_switch: Callable[..., Tensor] = grpo_lambda_switch
    """``grpo_lambda_switch(correct (n_groups, G), lam, rule) -> bool (n_groups,)``: True = length-penalised reward
    (``--grpo-lambda``)."""
    aggregate_loss: Callable[..., Tensor] = aggregate_loss
    """``aggregate_loss(per_token (B, T), mask (B, T), mode, max_len=None) -> scalar``."""
    adaptive_beta: Callable[..., float] = adaptive_beta
    """``adaptive_beta(beta, kl, kl_target, horizon, n_steps) -> new beta``."""
    dropout_mask: Callable[..., Tensor] = dropout_mask
    """``dropout_mask(shape, p) -> mask`` of zeros and ``1/(1-p)``; every dropout layer draws from it
    (:mod:`sandbox.dropout`)."""
    apply_dropout: Callable[[Tensor, Tensor], Tensor] = apply_dropout
    """``apply_dropout(x, mask) -> x * mask``; every dropout layer applies its mask (fresh or replayed) with it."""
    layer_mask: Callable[..., Tensor | None] = layer_mask
    """``layer_mask(stored, fresh, shape, p, draw) -> mask or None``: which mask one dropout layer uses in one forward
    pass (replay the stored one, draw a fresh one with ``draw(shape, p)``, or none). Consistent dropout's replay."""
    sample_dropout_mask: Callable[..., Tensor] = sample_dropout_mask
    """``sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, by_sign) -> bool keep-mask``."""
    dropout_schedule: Callable[..., float] = dropout_schedule
    """``dropout_schedule(p, update, schedule, cutoff, total_updates, progress) -> p for this update`` (``update``
    from 1; ``total_updates`` None where the budget does not fix it). A schedule of your own runs with
    ``--dropout-schedule custom``."""

    def replaced(self) -> dict[str, Callable]:
        """The fields that hold a function other than the sandbox's own, by name: what a run records in
        ``config.json`` (``maths``; :mod:`sandbox.runs.seam`)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not f.default
        }

    def kl(self, estimator: str) -> Callable[[Tensor], Tensor]:
        """The KL estimator named ``k1``, ``k2`` or ``k3`` (``--kl-estimator``), as this seam holds it."""
        return {"k1": self.kl_k1, "k2": self.kl_k2, "k3": self.kl_k3}[estimator]
