"""The per-update diagnostics shared by every trainer.

The update appends one :class:`Seen` per minibatch (detached tensors: no cost), then calls :func:`update_metrics`,
which computes every metric for all minibatches in a handful of batched operations, with the reference maths.
:func:`gradient_noise` measures how noisy the minibatch gradients are, and :class:`FlatnessProbe` how the weights
fluctuate against the loss landscape (Feng & Tu's variance-flatness relation), both without changing training.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from ..dropout import MaskedDropout
from ..maths import kl_k3
from ..metrics import FLATNESS_COLUMNS
from .flatness import loglog_slope, variance_flatness

UPDATE_METRICS = (
    "first_ratio_dev",
    "first_clipfrac",
    "first_approx_kl",
    "first_value_dev",
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
    """What one minibatch saw, for each of K members of a population (one run: K = 1). Per sample ``(K, S)`` (a sample
    per valid token; a sample per dropout copy with multi-sample dropout; one run may give ``(S,)``): the log-ratios,
    the advantages as used in the loss, which samples sample dropout kept (None: all), and ``valid``, which samples are
    each member's own (None: all; a population pads its minibatches). Per member ``(K,)`` (one run: scalars): the
    minibatch's loss terms, ``value_dev``, the mean |V_theta(s) - V_old(s)| of the critic over the member's samples
    (None: no critic), and the gradient norm (one run's, for :func:`update_metrics`: None if ``target_kl`` stopped the
    update before this step)."""

    logratio: torch.Tensor
    adv: torch.Tensor
    entropy: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor | None = None  # None: the algorithm has no value function (GRPO)
    keep: torch.Tensor | None = None  # None: every sample kept
    grad_norm: torch.Tensor | None = None
    valid: torch.Tensor | None = None  # None: every sample is a member's own
    value_dev: torch.Tensor | None = None  # None: the algorithm has no value function (GRPO)


class Taken(NamedTuple):
    """One minibatch of an update, as the update loop saw it: what it ``seen``, which members took part in it (the
    rest have no rows in it), which of them took a gradient step after it, and their gradient norms before clipping
    (None: no step)."""

    seen: Seen
    took_part: torch.Tensor
    stepped: torch.Tensor
    grad_norm: torch.Tensor | None


@torch.no_grad()
def update_metrics(
    seen: list[Seen], *, clip_coef: float, epochs_done: int, clip_coef_high: float | None = None
) -> dict[str, float]:
    """The update's diagnostics for one run, from what each of its minibatches saw (its ``grad_norm`` None where no
    step followed): :func:`members_update_metrics` for a population of one."""
    one, yes = torch.tensor([True]), torch.tensor([True])
    taken = [
        Taken(s, one, yes if s.grad_norm is not None else ~yes, None if s.grad_norm is None else s.grad_norm.reshape(1))
        for s in seen
    ]
    return members_update_metrics(taken, [epochs_done], clip_coef=clip_coef, clip_coef_high=clip_coef_high)[0]


@torch.no_grad()
def members_update_metrics(
    taken: list[Taken], epochs_done: Sequence[int | None], *, clip_coef: float, clip_coef_high: float | None = None
) -> dict[int, dict[str, float]]:
    """The update's diagnostics for every member k with ``epochs_done[k]`` (None: not in this update), with the
    reference maths, for all members at once: ``first_*`` from the member's first minibatch (before any gradient
    step), the rest as means over the minibatches after which it took a gradient step."""
    members = [k for k, e in enumerate(epochs_done) if e is not None]
    empty = {k: math.nan for k in UPDATE_METRICS}
    if not taken:
        return {k: empty | {"epochs_done": epochs_done[k]} for k in members}
    K = len(epochs_done)

    def samples(x: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:  # (K, S) -> (S, K), as float
        x = torch.ones_like(like, dtype=torch.bool) if x is None else x
        return x.reshape(K, -1).T.float()

    per_sample = [(t.seen, t.seen.logratio.reshape(K, -1)) for t in taken]
    logratio = torch.cat([lr.T for _, lr in per_sample])  # (samples of every minibatch, K)
    adv = torch.cat([samples(s.adv.expand_as(s.logratio), lr) for s, lr in per_sample])
    keep = torch.cat([samples(s.keep, lr) for s, lr in per_sample])
    took = torch.stack([t.took_part for t in taken])  # (minibatches, K)
    weight = torch.cat([samples(s.valid, lr) * took[j] for j, (s, lr) in enumerate(per_sample)])  # a member's own
    segment = torch.repeat_interleave(torch.arange(len(taken)), torch.tensor([lr.shape[1] for _, lr in per_sample]))

    def per_minibatch_sum(x: torch.Tensor) -> torch.Tensor:  # (minibatches, K)
        return torch.zeros(len(taken), K).index_add_(0, segment, x * weight)

    sizes = per_minibatch_sum(torch.ones(()))

    def per_minibatch_mean(x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if w is None:
            return per_minibatch_sum(x) / sizes
        return per_minibatch_sum(x * w) / per_minibatch_sum(w)  # NaN where the weight is all 0

    def per_member(x: list[torch.Tensor | None]) -> torch.Tensor:  # one value per member and minibatch
        return torch.stack([torch.full((K,), math.nan) if v is None else v.reshape(K).float() for v in x])

    high = clip_coef if clip_coef_high is None else clip_coef_high
    ratio = logratio.exp()
    dev = (ratio - 1).abs()
    x = ratio * adv
    dropped = 1.0 - keep
    columns = {  # one value per minibatch and member each
        "ratio_dev": per_minibatch_mean(dev),  # mean |r - 1|
        "clipfrac": per_minibatch_mean(((ratio > 1 + high) | (ratio < 1 - clip_coef)).float()),
        "approx_kl": per_minibatch_mean(kl_k3(-logratio)),  # k3
        "old_approx_kl": per_minibatch_mean(-logratio),  # k1
        "surrogate_var": per_minibatch_mean(x.square()) - per_minibatch_mean(x).square(),  # Var(r * A)
        "surrogate_var_kept": per_minibatch_mean(x.square(), keep) - per_minibatch_mean(x, keep).square(),
        "dropped_frac": per_minibatch_mean(dropped),
        "dropped_frac_pos": per_minibatch_mean(dropped, (adv > 0).float()),
        "dropped_frac_neg": per_minibatch_mean(dropped, (adv < 0).float()),
        "entropy": per_member([t.seen.entropy for t in taken]),
        "policy_loss": per_member([t.seen.policy_loss for t in taken]),
        "value_loss": per_member([t.seen.value_loss for t in taken]),
        "value_dev": per_member([t.seen.value_dev for t in taken]),  # mean |V - V_old|, logged for the first only
    }
    table = torch.stack(list(columns.values()), dim=1)  # (minibatches, columns, K)
    stepped = torch.stack([t.stepped for t in taken])  # (minibatches, K)
    means = torch.where(stepped[:, None, :], table, math.nan).nanmean(0).T.tolist()  # (K, columns)
    first = table[took.float().argmax(0), :, torch.arange(K)].tolist()  # each member's first minibatch: (K, columns)
    out = {}
    for k in members:
        if not bool(took[:, k].any()):
            out[k] = empty | {"epochs_done": epochs_done[k]}
            continue
        norms = [t.grad_norm[k] for t in taken if t.grad_norm is not None and bool(t.stepped[k])]
        mean = dict(zip(columns, means[k])) if norms else dict.fromkeys(columns, math.nan)
        f = dict(zip(columns, first[k]))
        out[k] = {
            "first_ratio_dev": f["ratio_dev"],
            "first_clipfrac": f["clipfrac"],
            "first_approx_kl": f["approx_kl"],
            "first_value_dev": f["value_dev"],
            **{c: mean[c] for c in columns if c not in ("ratio_dev", "value_dev")},
            "grad_norm": torch.stack(norms).mean().item() if norms else math.nan,
            "epochs_done": epochs_done[k],
        }
    return out


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


class FlatnessProbe:
    """Feng & Tu's variance-flatness diagnostic inside a run (``--flatness-every N``), without changing training.

    After every update it keeps the policy's weights (the last ``--flatness-window`` W of them). Every N updates, once
    it has W, before the update's first step: :func:`sandbox.algos.flatness.variance_flatness` along the
    ``--flatness-directions`` leading principal directions of those W weight vectors, on this loss:

    - RL has no fixed dataset, so the loss is the trainer's policy loss (PPO's clipped surrogate, GRPO's clipped
      objective, with its token aggregation) on *one held batch*: the batch the update is about to learn from,
      collected by the policy at the end of the window and not yet used for a step, with its advantages and
      ``logp_old`` fixed. With ``--norm-adv`` PPO's advantages are normalised over the whole held batch (a step
      normalises over its minibatch: the same with one minibatch, close with several);
    - with dropout switched off (every dropout layer's ``layer_mask`` returns no mask, the seam's switch), so that the
      loss is a function of the weights alone, the same network in every arm;
    - the surrogate is not at a minimum and can be 0 at the centre, so Feng & Tu's "rises to e times its value"
      has no meaning for it. The rise is set from the clipped surrogate's *headroom* at ratio 1, ``clip_coef *
      mean|A|`` (how much it can fall before every sample is clipped; exactly that for a plain mean over samples):
      ``--flatness-rise`` times it (default 0.1), with the configured ``clip_coef``: under ``--anneal-clip`` the
      clip range shrinks and the same rise is more headrooms. A rise of e - 1 = 1.72 headrooms, Feng & Tu's factor
      with the surrogate measured from its floor, is mostly never reached within a whole weight norm (the clipped
      surrogate saturates first: measured, README). The rise is one number for every direction of a measurement, so
      for a quadratic loss the fitted slopes would not depend on it; for the surrogate they do, somewhat.

    torch's random state is restored afterwards and the weights are put back bit for bit: the run with the diagnostic
    is the run without it, apart from its columns and the timing ones (tested).
    """

    def __init__(self, cfg, module: nn.Module, params: Sequence[torch.Tensor]):
        self.every, self.k, self.rise = cfg.flatness_every, cfg.flatness_directions, cfg.flatness_rise * cfg.clip_coef
        self.module, self.params = module, list(params)
        self.trajectory: collections.deque[torch.Tensor] = collections.deque(maxlen=cfg.flatness_window)

    def record(self) -> None:
        """Keep the policy's weights as they are after an update."""
        self.trajectory.append(torch.cat([p.detach().reshape(-1) for p in self.params]).clone())

    def due(self, update: int) -> bool:
        return update % self.every == 0 and len(self.trajectory) == self.trajectory.maxlen

    def measure(self, held_loss: Callable[[], "MinibatchLoss"]) -> tuple[dict, list[dict]]:  # noqa: F821
        """``held_loss()``: the trainer's objective on the held batch at the current weights, for the one network
        (its ``policy_loss``, and ``seen.adv``, the advantages as the loss uses them). Returns the row's columns
        (``flat_slope``, ``curv_slope``) and one row per direction for ``flatness.csv``; nothing when the batch has
        nothing to learn from (every token left out, or every advantage 0)."""
        state = torch.get_rng_state()
        try:
            with dropout_off(self.module):
                held = held_loss()
                if held.skip:
                    return {}, []
                rise = self.rise * float(held.seen.adv.abs().mean())
                if rise == 0:  # every advantage 0: the loss is flat in every direction, nothing to measure
                    return {}, []
                trajectory = torch.stack(list(self.trajectory))
                d = variance_flatness(trajectory, lambda: held_loss().policy_loss.sum(), self.params, self.k, rise)
        finally:
            torch.set_rng_state(state)
        uncensored = [not c for c in d["censored"]]
        keep = lambda xs: [x for x, u in zip(xs, uncensored) if u]  # noqa: E731
        columns = {
            "flat_slope": loglog_slope(keep(d["flatness"]), keep(d["variance"]))[0],
            "curv_slope": loglog_slope(d["curvature"], d["variance"])[0],
        }
        rows = [
            {"direction": i + 1, **{name: d[name][i] for name in FLATNESS_COLUMNS[2:]}}
            for i in range(len(d["variance"]))
        ]
        return columns, rows

    def state_dict(self) -> dict:
        return {"trajectory": list(self.trajectory)}

    def load_state_dict(self, state: dict) -> None:
        self.trajectory.clear()
        self.trajectory.extend(state["trajectory"])


def _no_mask(stored, fresh, shape, p, draw) -> None:
    return None


@contextlib.contextmanager
def dropout_off(module: nn.Module) -> Iterator[None]:
    """Every dropout layer of ``module`` (each :class:`~sandbox.dropout.MaskedDropout`) uses no mask, neither a stored
    one nor a fresh one, inside the block: its seam's ``layer_mask`` is swapped for one that answers "none", and put
    back afterwards."""
    layers = [m for m in module.modules() if isinstance(m, MaskedDropout)]
    seams = [layer.maths for layer in layers]
    for layer, maths in zip(layers, seams):
        layer.maths = dataclasses.replace(maths, layer_mask=_no_mask)
    try:
        yield
    finally:
        for layer, maths in zip(layers, seams):
            layer.maths = maths
