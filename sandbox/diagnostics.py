"""The per-update diagnostics shared by every trainer, computed once per update from what each minibatch saw.

A trainer appends one :class:`Seen` per minibatch (detached tensors: no cost), then calls :func:`update_metrics`,
which computes every metric for all minibatches in a handful of batched operations, with the reference maths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .maths import kl_k3


@dataclass
class Seen:
    """What one minibatch saw: log-ratios, advantages as used in the loss, [entropy, policy loss, value loss],
    and the gradient norm (None if target_kl stopped the update before this minibatch's step)."""

    logratio: torch.Tensor
    adv: torch.Tensor
    scalars: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    grad_norm: torch.Tensor | None = None


@torch.no_grad()
def update_metrics(seen: list[Seen], clip_coef: float, epochs_done: int,
                   clip_coef_high: float | None = None) -> dict[str, float]:
    """The update's diagnostics with the reference maths: ``first_*`` from the first minibatch (before any
    gradient step), the rest as means over the minibatches that took a gradient step."""
    if not seen:
        nan = float("nan")
        return {k: nan for k in ("first_ratio_dev", "first_clipfrac", "first_approx_kl", "clipfrac", "approx_kl",
                                 "old_approx_kl", "surrogate_var", "entropy", "policy_loss", "value_loss",
                                 "grad_norm")} | {"epochs_done": epochs_done}
    sizes = torch.tensor([len(s.logratio) for s in seen])
    segment = torch.repeat_interleave(torch.arange(len(seen)), sizes)

    def per_minibatch_mean(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(seen)).index_add_(0, segment, x) / sizes

    high = clip_coef if clip_coef_high is None else clip_coef_high
    logratio = torch.cat([s.logratio for s in seen])
    ratio = logratio.exp()
    dev = (ratio - 1).abs()
    x = ratio * torch.cat([s.adv for s in seen])
    table = torch.stack([
        per_minibatch_mean(dev),                        # 0 mean |r - 1|
        per_minibatch_mean(((ratio > 1 + high) | (ratio < 1 - clip_coef)).float()),  # 1 clip fraction
        per_minibatch_mean(kl_k3(-logratio)),           # 2 approx_kl (k3)
        per_minibatch_mean(-logratio),                  # 3 old_approx_kl (k1)
        per_minibatch_mean(x.square()) - per_minibatch_mean(x).square(),  # 4 Var(r * A)
    ], dim=1)
    table = torch.cat([table, torch.tensor([[float(x) for x in s.scalars] for s in seen])], dim=1)  # 5 entropy, 6 pg, 7 value
    stepped = [s.grad_norm is not None for s in seen]
    first = table[0].tolist()
    if any(stepped):
        means = table[torch.tensor(stepped)].mean(0).tolist()
        grad_norm = torch.stack([s.grad_norm for s in seen if s.grad_norm is not None]).mean().item()
    else:
        means, grad_norm = [float("nan")] * table.shape[1], float("nan")
    return {
        "first_ratio_dev": first[0], "first_clipfrac": first[1], "first_approx_kl": first[2],
        "clipfrac": means[1], "approx_kl": means[2], "old_approx_kl": means[3], "surrogate_var": means[4],
        "entropy": means[5], "policy_loss": means[6], "value_loss": means[7], "grad_norm": grad_norm,
        "epochs_done": epochs_done,
    }
