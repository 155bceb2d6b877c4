"""The pieces of the objective that every trainer shares, next to the clipped loss it computes with ``maths.ppo_loss``:

- :func:`keep_aggregate_average`, the clipped term's three steps, as its name says: *keep* (sample dropout,
  ``maths.sample_dropout_mask``, detached, recomputed at every minibatch step, chooses which samples count),
  *aggregate* (the mean over the kept samples on Gym, the token aggregation ``maths.aggregate_loss`` over the kept
  tokens of sequences), *average* (the mean over multi-sample dropout's K copies: the paper averages the K losses);
- :func:`aggregate` for the other per-token terms (KL, entropy), copy by copy, and :func:`sequence_loss`, which adds
  them to a per-token objective's clipped term (GRPO, PPO on the language tasks);
- :class:`Beta`, the KL coefficient: fixed, or adapted once per update (Ziegler et al. 2019).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from ..config import Config
from ..maths import Maths, kl_k3
from .diagnostics import Seen
from .learner import MinibatchLoss


class Surrogate(NamedTuple):
    loss: Tensor
    """The scalar policy loss."""
    keep: Tensor
    """Bool, shaped like the per-sample loss: True where a sample counted (for sequences only valid tokens can)."""


def keep_aggregate_average(
    maths: Maths,
    cfg: Config,
    per_sample: Tensor,
    ratio: Tensor,
    adv: Tensor,
    loss_mask: Tensor | None = None,
    max_len: int | None = None,
) -> Surrogate:
    """Reduce the per-sample clipped loss of one minibatch to the scalar policy loss: keep the samples sample dropout
    keeps (all of them with ``--sample-dropout none``), aggregate over them (the mean, or ``cfg.loss_agg``'s token
    aggregation), average over multi-sample dropout's copies. Returns the loss and the keep-mask.

    ``per_sample`` and ``ratio``: ``(B,)`` or ``(K, B)`` samples (Gym), or ``(B, n)`` / ``(K, B, n)`` tokens with
    ``loss_mask (B, n)``, the tokens that count; the leading K is multi-sample dropout's copies. ``adv`` broadcasts
    against one copy. ``max_len``: the constant length of ``dr_grpo``'s normaliser (sequences only).
    """
    sample_dims = 1 if loss_mask is None else 2
    copies = per_sample.dim() > sample_dims
    valid = loss_mask.bool() if loss_mask is not None else None
    losses, keeps = [], []
    for per, r in zip(per_sample if copies else per_sample[None], ratio if copies else ratio[None]):
        a = adv.expand_as(r)
        if valid is None:
            keep = _keep(maths, cfg, r, a)
            loss = per.mean() if keep is None else per[keep].mean()
            keep = torch.ones_like(r, dtype=torch.bool) if keep is None else keep
        else:
            keep = torch.zeros_like(valid)
            kept = _keep(maths, cfg, r[valid], a[valid])
            keep[valid] = True if kept is None else kept
            loss = maths.aggregate_loss(per, keep, cfg.loss_agg, max_len)
        losses.append(loss)
        keeps.append(keep)
    if not copies:
        return Surrogate(losses[0], keeps[0])
    return Surrogate(torch.stack(losses).mean(), torch.stack(keeps))


def _keep(maths: Maths, cfg: Config, r: Tensor, a: Tensor) -> Tensor | None:
    """The keep-mask of sample dropout over 1-D samples, or None when every sample is kept (the plain mean)."""
    if cfg.sample_dropout == "none":
        return None
    keep = maths.sample_dropout_mask(
        (r * a).detach(),
        r.detach(),
        a.detach(),
        cfg.sample_dropout,
        cfg.sample_drop_rate,
        cfg.sample_drop_delta,
        cfg.sample_drop_by_sign,
    )
    return None if bool(keep.all()) else keep


def member_surrogate(
    maths: Maths, cfg: Config, per_sample: Tensor, ratio: Tensor, adv: Tensor, valid: Tensor | None
) -> Surrogate:
    """:func:`keep_aggregate_average` for each member of a population at once (Gym samples): ``per_sample`` and
    ``ratio`` ``(K, S)`` or ``(copies, K, S)``, ``adv (K, S)``, ``valid (K, S)`` the rows that are each member's own
    (its first ones; None: every row). Returns the loss per member ``(K,)`` and the keep-mask (None: every sample
    kept). Without sample dropout one mean per member and copy; with it, each member's step on its own rows (which
    samples a member keeps is its own business)."""
    if cfg.sample_dropout == "none":
        if per_sample.dim() == 2:
            return Surrogate(member_mean(per_sample, valid), None)
        return Surrogate(torch.stack([member_mean(copy, valid) for copy in per_sample]).mean(0), None)
    K, S = adv.shape
    sizes = [S] * K if valid is None else valid.sum(dim=1).tolist()
    losses, keep = [], torch.zeros_like(per_sample, dtype=torch.bool)
    for k, n in enumerate(sizes):
        if n == 0:  # not in this minibatch (a population's padding only)
            losses.append(per_sample[..., k, :0].sum())
            continue
        member = keep_aggregate_average(maths, cfg, per_sample[..., k, :n], ratio[..., k, :n], adv[k, :n])
        losses.append(member.loss)
        keep[..., k, :n] = member.keep
    return Surrogate(torch.stack(losses), keep)


def member_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    """The mean over each member's rows, and over multi-sample dropout's copies in front: ``x (..., K, S)`` ->
    ``(K,)``. ``valid (K, S)``: the rows that are a member's own (a population pads its minibatches); None: all."""
    K = x.shape[-2]
    if valid is None:
        return x.mean(-1) if x.dim() == 2 else x.movedim(-2, 0).reshape(K, -1).mean(-1)
    v = valid.to(x.dtype)
    copies = x.numel() // v.numel()
    return (x * v).reshape(copies, *v.shape).sum(dim=(0, 2)) / (v.sum(dim=1) * copies).clamp(min=1)


def member_normalize(adv: Tensor, valid: Tensor | None) -> Tensor:
    """``maths.normalize_advantages`` over each member's rows of ``adv (K, S)`` (a member with fewer than 2 is left
    alone); ``valid`` as in :func:`member_mean`."""
    if valid is None:
        if adv.shape[-1] < 2:
            return adv
        return (adv - adv.mean(-1, keepdim=True)) / (adv.std(-1, keepdim=True) + 1e-8)
    v = valid.to(adv.dtype)
    n = v.sum(dim=1, keepdim=True)
    mean = (adv * v).sum(dim=1, keepdim=True) / n.clamp(min=1)
    std = (((adv - mean) * v).square().sum(dim=1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()
    return torch.where(n >= 2, (adv - mean) / (std + 1e-8), adv)


def members_seen(
    logratio, adv, entropy, policy_loss, value_loss, keep, valid: Tensor | None, value_dev: Tensor | None = None
) -> Seen:
    """What one minibatch saw for every member: the per-sample tensors ``(copies, K, S)`` or ``(K, S)`` as ``(K,
    samples)``, each member's samples its copies' side by side; ``valid (K, S)`` likewise. The per-member terms
    (``entropy``, the losses, ``value_dev``) are ``(K,)``, passed as they are."""
    K, copies = logratio.shape[-2], logratio.numel() // (logratio.shape[-2] * logratio.shape[-1])

    def per_member(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.expand_as(logratio).movedim(-2, 0).reshape(K, -1)

    if valid is not None and copies > 1:
        valid = valid.repeat(1, copies)
    return Seen(
        per_member(logratio),
        per_member(adv),
        entropy,
        policy_loss,
        value_loss,
        per_member(keep),
        valid=valid,
        value_dev=value_dev,
    )


def aggregate(maths: Maths, cfg: Config, per_token: Tensor, mask: Tensor, max_len: int) -> Tensor:
    """``maths.aggregate_loss`` of a per-token term ``(B, n)``, or of each copy of ``(K, B, n)`` then their mean."""
    if per_token.dim() == 2:
        return maths.aggregate_loss(per_token, mask, cfg.loss_agg, max_len)
    return torch.stack([maths.aggregate_loss(t, mask, cfg.loss_agg, max_len) for t in per_token]).mean()


def sequence_loss(
    maths: Maths,
    cfg: Config,
    beta: "Beta",
    pg_loss: Tensor,
    keep: Tensor,
    logratio: Tensor,
    adv: Tensor,
    log_ratio_ref: Tensor,
    entropy: Tensor,
    mask: Tensor,
    max_len: int | None,
    value_loss: Tensor | None = None,
    values: tuple[Tensor, Tensor] | None = None,
) -> MinibatchLoss:
    """The minibatch loss of a per-token objective, from its clipped term ``pg_loss`` on:
    ``pg_loss [+ vf_coef * value_loss] + beta * agg(k(log_ratio_ref)) - ent_coef * agg(entropy)``, with
    ``agg = maths.aggregate_loss`` over the tokens of ``mask (B, n)``, and what the update's metrics see of it.
    ``logratio``, ``log_ratio_ref``, ``entropy``: ``(B, n)`` or ``(K, B, n)``; ``adv`` broadcasts to them.
    ``values``: the critic's ``(V, V_old)`` per token, for ``value_dev`` (None: no critic)."""
    loss = pg_loss if value_loss is None else pg_loss + cfg.vf_coef * value_loss
    if beta.in_loss > 0:  # masked before the estimator: k3 of a padding position's log-ratio can overflow
        loss = loss + beta.in_loss * aggregate(maths, cfg, beta.estimator(log_ratio_ref * mask), mask, max_len)
    if cfg.ent_coef > 0:
        loss = loss - cfg.ent_coef * aggregate(maths, cfg, entropy, mask, max_len)
    valid = mask.bool()
    seen = Seen(
        valid_samples(logratio.detach(), valid),
        valid_samples(adv.expand_as(logratio), valid),
        valid_samples(entropy.detach(), valid).mean(),
        pg_loss.detach(),
        None if value_loss is None else value_loss.detach(),
        keep=valid_samples(keep, valid),
        value_dev=None if values is None else valid_samples((values[0] - values[1]).detach().abs(), valid).mean(),
    )
    return MinibatchLoss(loss, pg_loss, kl_k3(-seen.logratio).mean(), seen, skip=not bool(valid.any()))


def valid_samples(t: Tensor, valid: Tensor) -> Tensor:
    """The valid positions of ``(B, n)`` or of every copy of ``(K, B, n)``, flattened."""
    return t[valid] if t.dim() == valid.dim() else t[:, valid].reshape(-1)


class Beta:
    """beta, the coefficient of the KL to the reference: fixed (``--beta``), or adapted once per update towards
    ``--kl-target`` with ``maths.adaptive_beta`` (Ziegler et al. 2019). ``in_loss`` is what the loss uses: beta
    when the KL is a loss term (``--kl-in loss``), else 0 (the reward pays it instead)."""

    def __init__(self, cfg: Config, maths: Maths):
        self.value = cfg.beta
        self.cfg, self.maths = cfg, maths
        self.estimator: Callable[[Tensor], Tensor] = maths.kl(cfg.kl_estimator)  # k1, k2 or k3, per sample

    @property
    def in_loss(self) -> float:
        return self.value if self.cfg.kl_in == "loss" else 0.0

    @property
    def in_reward(self) -> float:
        return self.value if self.cfg.kl_in == "reward" else 0.0

    def adapt(self, kl: float, n_samples: int) -> None:
        """After an update: steer the measured KL (``kl_ref``) towards ``kl_target``, if one is set (and the batch
        had samples to measure it on)."""
        if self.cfg.kl_target is not None and n_samples > 0:
            self.value = self.maths.adaptive_beta(self.value, kl, self.cfg.kl_target, self.cfg.kl_horizon, n_samples)

    def state_dict(self) -> dict:
        return {"beta": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["beta"]
