"""The policy surrogate every trainer minimises: clipped per-sample loss, sample dropout, multi-sample averaging.

``policy_surrogate`` takes the ratios of one minibatch, one row per dropout copy (multi-sample dropout; a single
row otherwise), and returns the scalar loss and the keep-mask of sample dropout:

1. per-sample loss ``maths.ppo_loss(r, A, eps_low, eps_high)``;
2. sample dropout (``maths.sample_dropout_mask``, detached, recomputed at every minibatch step) on the valid samples;
3. the mean over kept samples (Gym), or the token aggregation over kept tokens (sequences);
4. the mean over the copies (multi-sample dropout averages the K losses).
"""

from __future__ import annotations

import torch

from .config import Config
from .maths import Maths


def policy_surrogate(
    maths: Maths,
    cfg: Config,
    ratio: torch.Tensor,
    adv: torch.Tensor,
    clip_coef: float,
    clip_coef_high: float | None = None,
    token_mask: torch.Tensor | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ratio``: ``(B,)`` or ``(K, B)`` samples (Gym), or ``(B, n)`` / ``(K, B, n)`` with ``token_mask (B, n)``.
    ``adv`` broadcasts against one copy. Returns ``(loss, keep)``, ``keep`` shaped like ``ratio`` (True where the
    sample counts; for sequences only valid tokens can be True)."""
    sample_dims = 1 if token_mask is None else 2
    copies = ratio if ratio.dim() > sample_dims else ratio[None]
    valid = token_mask.bool() if token_mask is not None else None
    losses, keeps = [], []
    for r in copies:
        per = (
            maths.ppo_loss(r, adv, clip_coef)
            if clip_coef_high is None
            else maths.ppo_loss(r, adv, clip_coef, clip_coef_high)
        )
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
    loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
    keep = keeps[0] if ratio.dim() == sample_dims else torch.stack(keeps)
    return loss, keep


def _keep(maths: Maths, cfg: Config, r: torch.Tensor, a: torch.Tensor) -> torch.Tensor | None:
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


def aggregate(maths: Maths, cfg: Config, per_token: torch.Tensor, mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """``maths.aggregate_loss`` of a per-token term ``(B, n)``, or of each copy of ``(K, B, n)`` then their mean."""
    if per_token.dim() == 2:
        return maths.aggregate_loss(per_token, mask, cfg.loss_agg, max_len)
    return torch.stack([maths.aggregate_loss(t, mask, cfg.loss_agg, max_len) for t in per_token]).mean()


def valid_samples(t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The valid positions of ``(B, n)`` or of every copy of ``(K, B, n)``, flattened."""
    return t[valid] if t.dim() == valid.dim() else t[:, valid].reshape(-1)
