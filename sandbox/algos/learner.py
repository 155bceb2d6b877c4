"""The mechanics of an update that every trainer shares: the optimiser, the minibatch loop, the gradient step.

A trainer writes its objective as a function of one minibatch, ``minibatch_loss(idx) -> MinibatchLoss``; then
``learner.optimise(minibatch_loss, ...)`` runs ``epochs`` passes of shuffled minibatches over it, stops early on
``target_kl``, guards against a non-finite loss, steps Adam, and returns what it measured: the update's metrics
(:mod:`sandbox.algos.diagnostics`) and, with ``--flatness-every``, the rows of ``flatness.csv``, for the trainer to
log. The objective stays in the trainer, where the reader is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from ..config import Config
from ..maths import kl_k3
from ..models.mlp import FlatParams
from .diagnostics import FlatnessProbe, Seen, gradient_noise, update_metrics


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss stopped the run. The rows written so far are kept."""


@dataclass
class MinibatchLoss:
    """What a trainer's objective returns for one minibatch."""

    loss: Tensor
    """The scalar the gradient step minimises."""
    policy_loss: Tensor
    """The policy term alone, with its gradient (what the gradient-noise diagnostics differentiate)."""
    seen: Seen
    """What the update's metrics are computed from."""
    skip: bool = False
    """Nothing to learn from in this minibatch (every token left out): no step, no metrics."""


class Learner:
    """The parameters of ``module`` and their optimiser: Adam (eps ``adam_eps``) over all weights held in one flat
    tensor (:class:`~sandbox.models.mlp.FlatParams`, one kernel per step), the global gradient-norm clip, and the
    learning rate the trainer sets before each update from the run's schedule (:meth:`set_lr`). ``policy_params``: the
    parameters whose gradient noise ``--grad-diag-every`` and whose variance-flatness relation ``--flatness-every``
    measure (default: all of them)."""

    def __init__(self, module: nn.Module, cfg: Config, policy_params: Iterable[Tensor] | None = None):
        self.cfg = cfg
        self.policy_params = list(module.parameters() if policy_params is None else policy_params)
        self.params = FlatParams(module)
        self.optimizer = torch.optim.Adam([self.params.flat], lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
        self.flatness = FlatnessProbe(cfg, module, self.policy_params) if cfg.flatness_every else None

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next steps (the run's schedule anneals it with ``anneal_lr``)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, loss: Tensor, where: str, seen: Seen) -> Tensor:
        """One gradient step on ``loss``; returns the gradient norm before clipping. A NaN or infinite loss raises
        :class:`NonFiniteLossError` instead (``where`` and ``seen``'s loss terms name it), before any weight moves."""
        if not math.isfinite(loss.item()):
            terms = {"policy_loss": seen.policy_loss, "value_loss": seen.value_loss, "entropy": seen.entropy}
            shown = ", ".join(f"{k}={float(v)}" for k, v in terms.items() if v is not None)
            raise NonFiniteLossError(f"non-finite loss at {where}: {shown}")
        self.params.zero_grad()
        loss.backward()
        grad_norm = self.params.clip_grad_norm_(self.cfg.max_grad_norm)
        self.optimizer.step()
        return grad_norm

    def optimise(
        self, minibatch_loss: Callable[[Tensor | slice], MinibatchLoss], n: int, epochs: int, run, unit: str = "epoch"
    ) -> tuple[dict[str, float], list[dict]]:
        """``epochs`` passes over ``n`` samples (transitions, or sequences), each split at random into
        ``num_minibatches`` nearly equal minibatches (one minibatch: the whole batch, ``slice(None)``, unshuffled,
        since a mean does not depend on the order). A minibatch whose loss says ``skip`` is passed over.

        ``target_kl``: stop the update once a minibatch's approx_kl (k3 of its log-ratios) exceeds it, checked
        before that minibatch's step. Every ``grad_diag_every`` updates, the gradient noise of the policy loss is
        measured first, and every ``flatness_every`` updates the variance-flatness relation, both without changing
        training. ``run`` gives the update number and the clip ranges (for the clip fractions); nothing is written
        into it. Returns the update's metrics, ``epochs_done`` included (0 when ``n`` is 0: nothing to learn), and the
        variance-flatness diagnostic's rows for ``flatness.csv`` (none unless it measured in this update).
        """
        diagnostics, flatness_rows = self._diagnostics(minibatch_loss, n, run) if n > 0 else ({}, [])
        stats = self._epochs(minibatch_loss, n, epochs, run, unit) | diagnostics
        if self.flatness is not None:
            self.flatness.record()  # the weights after this update: the next windows' trajectory
        return stats, flatness_rows

    def _epochs(
        self, minibatch_loss: Callable[[Tensor | slice], MinibatchLoss], n: int, epochs: int, run, unit: str
    ) -> dict[str, float]:
        cfg, clip = self.cfg, (run.schedule.clip_coef, run.schedule.clip_coef_high)
        seen: list[Seen] = []
        if n == 0:
            return update_metrics(seen, clip[0], 0, clip[1])
        num_minibatches = min(cfg.num_minibatches, n)
        for epoch in range(epochs):
            parts = [slice(None)] if num_minibatches == 1 else torch.tensor_split(torch.randperm(n), num_minibatches)
            for idx in parts:
                mb = minibatch_loss(idx)
                if mb.skip:
                    continue
                seen.append(mb.seen)
                if cfg.target_kl is not None and kl_k3(-mb.seen.logratio).mean().item() > cfg.target_kl:
                    return update_metrics(seen, clip[0], epoch, clip[1])  # this minibatch: no step
                mb.seen.grad_norm = self.step(mb.loss, f"update {run.update_index}, {unit} {epoch + 1}", mb.seen)
        return update_metrics(seen, clip[0], epochs, clip[1])

    def _diagnostics(
        self, minibatch_loss: Callable[[Tensor | slice], MinibatchLoss], n: int, run
    ) -> tuple[dict[str, float], list[dict]]:
        """The measurements taken before the update's first step (``--grad-diag-every``, ``--flatness-every``): their
        columns of the metrics row, and the flatness diagnostic's rows."""
        cfg, out, rows = self.cfg, {}, []
        if cfg.grad_diag_every and run.update_index % cfg.grad_diag_every == 0:
            policy_loss = lambda idx: minibatch_loss(idx).policy_loss  # noqa: E731
            out |= gradient_noise(policy_loss, n, max(min(cfg.num_minibatches, n), 4), self.policy_params)
        if self.flatness is not None and self.flatness.due(run.update_index):
            # the whole batch, held; with several minibatches as an index of every sample, so that PPO normalises its
            # advantages as a minibatch step does (one minibatch: the trainer normalised the batch once already)
            whole = slice(None) if cfg.num_minibatches == 1 else torch.arange(n)
            columns, rows = self.flatness.measure(lambda: minibatch_loss(whole))
            out |= columns
        return out, rows

    def state_dict(self) -> dict:
        """Adam's state; with ``--flatness-every``, also the weights of the diagnostic's window."""
        if self.flatness is None:
            return self.optimizer.state_dict()
        return {"optimizer": self.optimizer.state_dict(), "flatness": self.flatness.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.flatness is not None:
            self.flatness.load_state_dict(state["flatness"])
            state = state["optimizer"]
        self.optimizer.load_state_dict(state)
