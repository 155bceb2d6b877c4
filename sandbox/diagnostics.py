"""The per-update diagnostics shared by every trainer.

The update appends one :class:`Seen` per minibatch (detached tensors: no cost), then calls :func:`update_metrics`,
which computes every metric for all minibatches in a handful of batched operations, with the reference maths.
:func:`gradient_noise` measures how noisy the minibatch gradients are, without changing training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .maths import kl_k3

UPDATE_METRICS = (
    "first_ratio_dev",
    "first_clipfrac",
    "first_approx_kl",
    "clipfrac",
    "approx_kl",
    "old_approx_kl",
    "surrogate_var",
    "surrogate_var_kept",
    "dropped_frac",
    "dropped_frac_pos",
    "dropped_frac_neg",
    "entropy",
    "policy_loss",
    "value_loss",
    "grad_norm",
)


@dataclass
class Seen:
    """What one minibatch saw: one entry per sample (per valid token; a sample per dropout copy with multi-sample
    dropout) for the log-ratios, the advantages as used in the loss and which samples sample dropout kept; then the
    minibatch's loss terms, and the gradient norm (None if target_kl stopped the update before this step)."""

    logratio: torch.Tensor
    adv: torch.Tensor
    entropy: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor | None = None  # None: the algorithm has no value function (GRPO)
    keep: torch.Tensor | None = None  # None: every sample kept
    grad_norm: torch.Tensor | None = None


@torch.no_grad()
def update_metrics(
    seen: list[Seen], clip_coef: float, epochs_done: int, clip_coef_high: float | None = None
) -> dict[str, float]:
    """The update's diagnostics with the reference maths: ``first_*`` from the first minibatch (before any
    gradient step), the rest as means over the minibatches that took a gradient step."""
    if not seen:
        return {k: math.nan for k in UPDATE_METRICS} | {"epochs_done": epochs_done}
    sizes = torch.tensor([len(s.logratio) for s in seen])
    segment = torch.repeat_interleave(torch.arange(len(seen)), sizes)

    def per_minibatch_sum(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(seen)).index_add_(0, segment, x.float())

    def per_minibatch_mean(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if weight is None:
            return per_minibatch_sum(x) / sizes
        return per_minibatch_sum(x * weight) / per_minibatch_sum(weight)  # NaN where the weight is all 0

    high = clip_coef if clip_coef_high is None else clip_coef_high
    logratio = torch.cat([s.logratio for s in seen])
    adv = torch.cat([s.adv for s in seen])
    keep = torch.cat(
        [s.keep if s.keep is not None else torch.ones_like(s.logratio, dtype=torch.bool) for s in seen]
    ).float()
    ratio = logratio.exp()
    dev = (ratio - 1).abs()
    x = ratio * adv
    dropped = 1.0 - keep
    nan = torch.tensor(math.nan)
    columns = {  # one value per minibatch each
        "ratio_dev": per_minibatch_mean(dev),  # mean |r - 1|
        "clipfrac": per_minibatch_mean(((ratio > 1 + high) | (ratio < 1 - clip_coef)).float()),
        "approx_kl": per_minibatch_mean(kl_k3(-logratio)),  # k3
        "old_approx_kl": per_minibatch_mean(-logratio),  # k1
        "surrogate_var": per_minibatch_mean(x.square()) - per_minibatch_mean(x).square(),  # Var(r * A)
        "surrogate_var_kept": per_minibatch_mean(x.square(), keep) - per_minibatch_mean(x, keep).square(),
        "dropped_frac": per_minibatch_mean(dropped),
        "dropped_frac_pos": per_minibatch_mean(dropped, (adv > 0).float()),
        "dropped_frac_neg": per_minibatch_mean(dropped, (adv < 0).float()),
        "entropy": torch.tensor([float(s.entropy) for s in seen]),
        "policy_loss": torch.tensor([float(s.policy_loss) for s in seen]),
        "value_loss": torch.tensor([float(s.value_loss if s.value_loss is not None else nan) for s in seen]),
    }
    table = torch.stack(list(columns.values()), dim=1)  # (minibatches, columns)
    first = dict(zip(columns, table[0].tolist()))
    stepped = torch.tensor([s.grad_norm is not None for s in seen])
    if bool(stepped.any()):
        means = dict(zip(columns, table[stepped].nanmean(0).tolist()))
        grad_norm = torch.stack([s.grad_norm for s in seen if s.grad_norm is not None]).mean().item()
    else:
        means, grad_norm = dict.fromkeys(columns, math.nan), math.nan
    return {
        "first_ratio_dev": first["ratio_dev"],
        "first_clipfrac": first["clipfrac"],
        "first_approx_kl": first["approx_kl"],
        **{k: means[k] for k in columns if k != "ratio_dev"},
        "grad_norm": grad_norm,
        "epochs_done": epochs_done,
    }


def gradient_noise(
    policy_loss: Callable[[torch.Tensor], torch.Tensor], n: int, num_minibatches: int, params: list[torch.Tensor]
) -> dict[str, float]:
    """How noisy are the minibatch gradients of the policy loss at the current parameters?

    ``policy_loss(idx)`` is the policy loss on the samples (or sequences) ``idx`` of the current batch of ``n``;
    the batch is split into ``num_minibatches`` random minibatches (at least 2). Returns
    ``grad_gdv`` (mean pairwise 1 - cosine between minibatch gradients), ``grad_gde`` (mean 1 - cosine between
    each minibatch gradient and the whole batch's) and ``grad_snr`` (|mean g|^2 / mean |g - mean g|^2).

    Training is untouched: gradients come from ``torch.autograd.grad`` (nothing lands in ``.grad``), and torch's
    random state (minibatch shuffling, fresh dropout masks) is restored afterwards, so the run with these metrics
    is the run without them.
    """
    state = torch.get_rng_state()
    try:

        def grad(idx: torch.Tensor) -> torch.Tensor:
            gs = torch.autograd.grad(policy_loss(idx), params, allow_unused=True)
            return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params)])

        parts = torch.tensor_split(torch.randperm(n), max(2, min(num_minibatches, n)))
        g = torch.stack([grad(idx) for idx in parts])
        full = grad(torch.arange(n))
    finally:
        torch.set_rng_state(state)
    unit = g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cos = unit @ unit.T
    m = len(parts)
    pairs = cos[torch.triu_indices(m, m, offset=1).unbind()]
    mean = g.mean(dim=0)
    noise = (g - mean).square().sum(dim=1).mean()
    return {
        "grad_gdv": float((1 - pairs).mean()),
        "grad_gde": float((1 - unit @ (full / full.norm().clamp(min=1e-12))).mean()),
        "grad_snr": float(mean.square().sum() / noise) if noise > 0 else math.inf,
    }
