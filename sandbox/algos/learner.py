"""The update every trainer shares, written once: the optimiser, the minibatch loop, early stopping on ``target_kl``,
the gradient clip, the non-finite guard and the update's diagnostics, for one network or for the K members of a
population of seeds alike (a single run is the population of one).

A trainer writes its objective as a function of one minibatch, ``objective(idx) -> MinibatchLoss``; then
``learner.optimise(objective, n, epochs, run)`` (a population's: :meth:`Learner.optimise_members`, with every member's
minibatch at once) runs ``epochs`` passes of shuffled minibatches over it, stops early on
``target_kl``, guards against a non-finite loss, clips the gradient, steps Adam, and returns what it measured: the
update's metrics (:mod:`sandbox.algos.diagnostics`) and, with ``--flatness-every``, the rows of ``flatness.csv``, for
the trainer to log. The objective stays in the trainer, where the reader is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence

import torch
from torch import Tensor

from ..config import Config
from ..models.mlp import FlatParams
from ..models.stacked import StackedAdam
from .diagnostics import FlatnessProbe, Seen, Taken, gradient_noise, members_update_metrics

Rows = Tensor | slice
"""The rows of a batch a minibatch takes: indices, or ``slice(None)`` for all of them, in order."""


class Batches(Protocol):
    """What the update loop needs of the batch it optimises over: each member's number of samples (None: the member
    takes no part), and the minibatch of given rows of every member, as the objective takes it."""

    sizes: Sequence[int | None]

    def minibatch(self, rows: list[Rows | None]): ...


@dataclass
class OneBatch:
    """A single run's batch of ``n`` samples (or sequences), as the update loop sees it: a minibatch is its rows."""

    n: int

    @property
    def sizes(self) -> list[int]:
        return [self.n]

    def minibatch(self, rows: list[Rows | None]) -> Rows:
        return rows[0]


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss stopped the run. The rows written so far are kept."""


@dataclass
class MinibatchLoss:
    """What an objective returns for one minibatch: for one run, or for each member of a population (``(K,)``)."""

    loss: Tensor
    """What the gradient step minimises: a scalar, or one per member ``(K,)`` (their sum is differentiated)."""
    policy_loss: Tensor
    """The policy term alone, with its gradient (what the gradient-noise diagnostics differentiate)."""
    approx_kl: Tensor
    """k3 of the minibatch's log-ratios, the mean per member: what ``target_kl`` reads, before the step."""
    seen: Seen
    """What the minibatch saw, what the update's metrics are computed from."""
    skip: bool = False
    """Nothing to learn from in this minibatch (every token left out): no step, no metrics."""


class Learner:
    """The parameters ``params`` (:class:`~sandbox.models.mlp.FlatParams`: the weights of one network, or of every
    member of a population, as rows of one tensor) and their optimiser: Adam (eps ``adam_eps``, one fused kernel for
    every member, :class:`~sandbox.models.stacked.StackedAdam`), the global gradient-norm clip per member, and the
    learning rate the trainer sets before each update from the run's schedule (:meth:`set_lr`). ``policy_params``:
    the parameters whose gradient noise ``--grad-diag-every`` and whose variance-flatness relation
    ``--flatness-every`` measure (default: all of them; one network only). ``generators``: member k shuffles its
    minibatches with ``generators[k]`` (default: torch's global generator, as a single run always has)."""

    def __init__(
        self,
        params: FlatParams,
        cfg: Config,
        policy_params: Iterable[Tensor] | None = None,
        generators: Sequence[torch.Generator | None] | None = None,
    ):
        self.cfg, self.params = cfg, params
        module = params.modules[0]
        self.policy_params = list(module.parameters() if policy_params is None else policy_params)
        self.optimizer = StackedAdam(params, cfg.learning_rate, cfg.adam_eps)
        self.generators = list(generators) if generators is not None else [None] * len(params.modules)
        self.flatness = FlatnessProbe(cfg, module, self.policy_params) if cfg.flatness_every else None

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next steps (the run's schedule anneals it with ``anneal_lr``)."""
        self.optimizer.lr = lr

    def optimise(
        self, objective: Callable[[Rows], MinibatchLoss], n: int, epochs: int, run, unit: str = "epoch"
    ) -> tuple[dict[str, float], list[dict]]:
        """The update of one run: :meth:`optimise_members` for a population of one, with ``objective(idx)`` the loss
        on the samples (or sequences) ``idx`` of the batch of ``n``. Returns the update's metrics and the
        variance-flatness diagnostic's rows."""
        stats, flatness, _ = self.optimise_members(objective, OneBatch(n), epochs, [run], unit)
        return stats[0], flatness[0]

    def optimise_members(
        self, objective: Callable, batch: Batches, epochs: int, runs: Sequence, unit: str = "epoch"
    ) -> tuple[dict[int, dict[str, float]], dict[int, list[dict]], dict[int, NonFiniteLossError]]:
        """``epochs`` passes over each member's batch, of ``batch.sizes[k]`` samples (None: member k left the
        population and takes no part), each split at random into ``num_minibatches`` nearly equal minibatches (one
        minibatch: the whole batch, ``slice(None)``, unshuffled, since a mean does not depend on the order);
        minibatch j of every member goes through the objective together, ``objective(batch.minibatch(rows))`` with
        ``rows[k]`` member k's rows (None: k has none in it). A minibatch whose loss says ``skip`` is passed over.

        Per member, as if it trained alone: ``target_kl`` stops its update once a minibatch's ``approx_kl`` exceeds
        it, checked before that minibatch's step; a non-finite loss stops it before any weight moves (one run: raises
        :class:`NonFiniteLossError`; a population: the member is reported in ``failed`` and the others go on); its
        gradient is clipped to its own norm. Every ``grad_diag_every`` updates the gradient noise of the policy loss
        is measured first, and every ``flatness_every`` updates the variance-flatness relation, both without
        changing training (one network only). ``runs[k]`` gives member k's update number and clip ranges (for the
        clip fractions); nothing is written into it.

        Returns, for every member that took part and did not fail: the update's metrics, ``epochs_done`` included (0
        when its batch was empty: nothing to learn), and the flatness rows (none unless measured in this update);
        and ``failed``, each failed member's error."""

        def loss(rows: list[Rows | None]) -> MinibatchLoss:
            return objective(batch.minibatch(rows))

        diagnostics, flatness_rows = {}, []
        if len(batch.sizes) == 1 and batch.sizes[0]:
            diagnostics, flatness_rows = self._diagnostics(loss, batch.sizes[0], runs[0])
        taken, epochs_done, failed = self._epochs(loss, batch.sizes, epochs, runs, unit)
        schedule = runs[next(k for k, n in enumerate(batch.sizes) if n is not None)].schedule  # every member's
        metrics = members_update_metrics(
            taken, epochs_done, clip_coef=schedule.clip_coef, clip_coef_high=schedule.clip_coef_high
        )
        stats = {k: m | diagnostics for k, m in metrics.items()}
        if self.flatness is not None:
            self.flatness.record()  # the weights after this update: the next windows' trajectory
        return stats, {k: flatness_rows for k in stats}, failed

    def _epochs(self, objective, sizes, epochs: int, runs, unit: str):
        """The minibatch loop: what each minibatch saw (:class:`~sandbox.algos.diagnostics.Taken`), each member's
        epochs done (None: not in this update), and the members that failed."""
        cfg, K = self.cfg, len(sizes)
        parts = {k: min(cfg.num_minibatches, n) for k, n in enumerate(sizes) if n}
        epochs_done = [None if n is None else epochs if k in parts else 0 for k, n in enumerate(sizes)]
        stepping, failed, taken = list(parts), {}, []
        for epoch in range(epochs):
            order = {
                k: [slice(None)]
                if parts[k] == 1
                else torch.randperm(sizes[k], generator=self.generators[k]).tensor_split(parts[k])
                for k in stepping
            }
            for j in range(max((len(o) for o in order.values()), default=0)):
                now = [k for k in stepping if j < len(order[k])]
                mb = objective([order[k][j] if k in now else None for k in range(K)])
                if mb.skip:
                    continue
                kl = mb.approx_kl.reshape(-1).tolist() if cfg.target_kl is not None else None
                loss = mb.loss.detach().reshape(-1).tolist()
                step = []
                for k in now:
                    if kl is not None and kl[k] > cfg.target_kl:
                        epochs_done[k] = epoch  # this minibatch: no step for k, and no more this update
                        stepping.remove(k)
                    elif not math.isfinite(loss[k]):
                        error = _non_finite(mb.seen, k, f"update {runs[k].update_index}, {unit} {epoch + 1}")
                        if K == 1:
                            raise error
                        failed[k], epochs_done[k] = error, None
                        stepping.remove(k)
                    else:
                        step.append(k)
                norms = None
                if step:
                    self.params.zero_grad()
                    (mb.loss if len(step) == K else mb.loss[step]).sum().backward()
                    norms = self.params.clip_grad_norm_(cfg.max_grad_norm)
                    self.optimizer.step(step)
                taken.append(Taken(mb.seen, _members(now, K), _members(step, K), norms))
        return taken, epochs_done, failed

    def _diagnostics(self, objective, n: int, run) -> tuple[dict[str, float], list[dict]]:
        """The measurements taken before the update's first step (``--grad-diag-every``, ``--flatness-every``): their
        columns of the metrics row, and the flatness diagnostic's rows."""
        cfg, out, rows = self.cfg, {}, []
        if cfg.grad_diag_every and run.update_index % cfg.grad_diag_every == 0:
            policy_loss = lambda idx: objective([idx]).policy_loss.sum()  # noqa: E731
            out |= gradient_noise(policy_loss, n, max(min(cfg.num_minibatches, n), 4), self.policy_params)
        if self.flatness is not None and self.flatness.due(run.update_index):
            # the whole batch, held; with several minibatches as an index of every sample, so that PPO normalises its
            # advantages as a minibatch step does (one minibatch: the trainer normalised the batch once already)
            whole = slice(None) if cfg.num_minibatches == 1 else torch.arange(n)
            columns, rows = self.flatness.measure(lambda: objective([whole]))
            out |= columns
        return out, rows

    def state_dict(self) -> dict:
        """Adam's state; with ``--flatness-every``, also the weights of the diagnostic's window."""
        state = {"optimizer": self.optimizer.state_dict()}
        return state if self.flatness is None else state | {"flatness": self.flatness.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.flatness is not None:
            self.flatness.load_state_dict(state["flatness"])
        self.optimizer.load_state_dict(state["optimizer"])


def _members(ks: list[int], K: int) -> Tensor:
    """``(K,)`` bool: True for the members ``ks``."""
    out = torch.zeros(K, dtype=torch.bool)
    out[ks] = True
    return out


def _non_finite(seen: Seen, k: int, where: str) -> NonFiniteLossError:
    """The error of member k's NaN or infinite loss at ``where``, naming the minibatch's loss terms."""
    terms = {"policy_loss": seen.policy_loss, "value_loss": seen.value_loss, "entropy": seen.entropy}
    shown = ", ".join(f"{name}={float(v.reshape(-1)[k])}" for name, v in terms.items() if v is not None)
    return NonFiniteLossError(f"non-finite loss at {where}: {shown}")
