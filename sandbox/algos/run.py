"""A run's bookkeeping, kept out of the trainers: CleanRL's "TRY NOT TO MODIFY" part, SB3's callbacks.

Every trainer uses :class:`Run` the same way::

    with Run(cfg, log, maths, source, budget=..., components={"learner": learner}) as run:
        for update in run.updates():            # the scheduled dropout p set on the policy; periodic checkpoints
            learner.set_lr(run.schedule.lr)     # the annealed learning rate (and run.schedule.clip_coef for the loss)
            ...                                 # the algorithm: rollout, advantages, update
            run.log({...})                      # one row of metrics.csv
    return run.result                           # metrics, episodes and summary (summary.json on every way out)

What :class:`Run` does itself: the step budget and the update index; the progress bar and the clock; the finished
episodes (``episodes.csv``) and the solved check; the bookkeeping columns of each metrics row. What it holds, each a
small class below: the :class:`Schedule` (the learning rate and both clip ranges, annealed linearly, and the dropout
schedule's p), the :class:`Checkpoints` (one every ``save_every`` updates, with the state of every component, each by
its own ``state_dict()``; resuming from one) and the :class:`Summary` (what ``summary.json`` reports, gathered as the
run goes). However the loop ends, ``policy.pt`` and ``summary.json`` are written (status ``ok`` or
``non-finite-loss``; an interrupted run writes no summary: it did not finish).

The rollout and the learner never call the run: the rollout reports each step it took and the episodes that ended
there, which the trainer hands to :meth:`Run.record_step`; the learner returns what it measured, which the trainer
logs (:meth:`Run.log`).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..maths import Maths
from ..runs.policy_file import blob
from ..runs.progress import Clock, progress_bar
from ..runs.reference import check_same_reference, digest
from ..runs.rundir import RunLog, RunResult
from ..runs.snapshot import random_state, set_random_state
from .learner import NonFiniteLossError


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Source(Protocol):
    """Where a trainer's experience comes from, as far as the run's bookkeeping is concerned."""

    policy: nn.Module
    network_spec: dict
    """The networks as plain data (:mod:`sandbox.models.spec`), what a policy file records under ``network``."""
    reference: nn.Module
    threshold: float | None
    summary_extra: dict[str, Any]

    def close(self) -> None: ...


class Schedule:
    """What changes from update to update by plan: the learning rate ``lr`` and both clip ranges (``clip_coef``,
    ``clip_coef_high``), annealed linearly by the fraction of the budget left (``anneal_lr``, ``anneal_clip``: both clip
    ranges alike), and the dropout probability ``dropout_p`` (``maths.dropout_schedule``), for one update at a time.
    Who applies them: the run sets ``dropout_p`` on the policy (it holds for the rollout and the update), the trainer
    gives ``lr`` to its optimiser (SB3 anneals its own), the objective reads the clip ranges."""

    def __init__(self, cfg: Config, maths: Maths):
        self.cfg, self.maths = cfg, maths
        self.lr, self.clip_coef, self.clip_coef_high = cfg.learning_rate, cfg.clip_coef, cfg.clip_coef_high
        self.dropout_p = cfg.effective_dropout
        # the updates the run plans where its budget fixes them (a batch of num_envs * num_steps steps per update);
        # GRPO's and the language tasks' batches vary in length
        self.total_updates = cfg.num_updates if cfg.kind in ("ppo", "sb3-ppo") else None

    def start(self, update_index: int, budget_left: float) -> None:
        """The values of update ``update_index`` (from 1), with ``budget_left`` the fraction of the step budget not yet
        taken (1 at the first update)."""
        cfg = self.cfg
        self.lr = cfg.learning_rate * budget_left if cfg.anneal_lr else cfg.learning_rate
        self.clip_coef = cfg.clip_coef * budget_left if cfg.anneal_clip else cfg.clip_coef
        high = cfg.clip_coef_high
        self.clip_coef_high = high * budget_left if cfg.anneal_clip and high is not None else high
        self.dropout_p = self.maths.dropout_schedule(
            cfg.effective_dropout,
            update_index,
            cfg.dropout_schedule,
            cfg.dropout_cutoff,
            total_updates=self.total_updates,
            progress=1.0 - budget_left,
        )


class Checkpoints:
    """``checkpoints/update-NNNNNN.pt`` every ``save_every`` updates: the policy, and what :meth:`restore` needs to
    continue bit for bit: the state of every component by its own ``state_dict()`` (the run's counters, the source,
    the learner, beta, ...), torch's random state and the reference's digest."""

    def __init__(self, cfg: Config, log: RunLog, source: Source, components: dict[str, Stateful]):
        self.cfg, self.run_log, self.source, self.components = cfg, log, source, components

    def due(self, update_index: int) -> bool:
        """Is a checkpoint due after update ``update_index``?"""
        return bool(self.cfg.save_every) and update_index % self.cfg.save_every == 0

    def save(self, update_index: int, env_steps: int, episodes_written: int) -> None:
        resume = {
            **{name: c.state_dict() for name, c in self.components.items()},
            "random": random_state(),
            "ref_digest": digest(self.source.reference),
            "episodes_written": episodes_written,
        }
        policy, network_spec = self.source.policy, self.source.network_spec
        b = blob("checkpoint", self.cfg, network_spec, policy, update_index, env_steps, resume)
        self.run_log.save_checkpoint(update_index, b)

    def restore(self, checkpoint: dict) -> None:
        """Put a checkpoint's state back: the policy (and its dropout p), every component, the random streams last."""
        r = checkpoint["resume"]
        check_same_reference(r, self.source.reference)
        self.source.policy.load_state_dict(checkpoint["state_dict"])
        self.source.policy.set_dropout(checkpoint["dropout_p"])
        for name, component in self.components.items():
            component.load_state_dict(r[name])
        set_random_state(r["random"])


class Summary:
    """What ``summary.json`` says about a run beyond its counters, gathered as it goes: when the reward threshold was
    first reached, the last batch's mean reward (language tasks, GRPO), what stopped the run; and the fields its
    source adds (``summary_extra``). ``population``: the seeds trained together with this one."""

    def __init__(self, cfg: Config, source: Source, population: int = 1):
        self.stop_at_threshold, self.threshold = cfg.stop_at_threshold, source.threshold
        self.extra, self.population = source.summary_extra, population
        self.final_reward: float | None = None
        self.solved_at_steps: int | None = None
        self.solved_at_s: float | None = None
        self.message = "finished the step budget"

    def reached(self, value: float, env_steps: int, wall_s: float) -> bool:
        """Record the first time ``value`` reaches the threshold. True when the run should stop now: it just got there
        and ``stop_at_threshold`` is set."""
        if self.solved_at_steps is not None or self.threshold is None or not value >= self.threshold:
            return False
        self.solved_at_steps, self.solved_at_s = env_steps, wall_s
        if self.stop_at_threshold:
            self.message = "reached the reward threshold (--stop-at-threshold)"
            return True
        return False

    def report(
        self, status: str, final_return: float | None, total_s: float, env_steps: int, updates: int, episodes: int
    ) -> dict[str, Any]:
        """``summary.json``'s fields (``sandbox/metrics.py``'s ``SUMMARY``), in their order, with the run's counters."""
        return {
            "status": status,
            "final_return": final_return,
            "final_reward": self.final_reward,
            "solved_at_steps": self.solved_at_steps,
            "solved_at_s": self.solved_at_s,
            "reward_threshold": self.threshold,
            "total_s": total_s,
            "env_steps": env_steps,
            "updates": updates,
            "episodes": episodes,
            "message": self.message,
            "population": self.population,
            **self.extra,
        }

    def state_dict(self) -> dict:
        return {
            "final_reward": self.final_reward,
            "solved_at_steps": self.solved_at_steps,
            "solved_at_s": self.solved_at_s,
        }

    def load_state_dict(self, state: dict) -> None:
        self.final_reward = state["final_reward"]
        self.solved_at_steps, self.solved_at_s = state["solved_at_steps"], state["solved_at_s"]


class Run:
    """The bookkeeping of one run.

    ``source`` is where the trainer's experience comes from (:class:`sandbox.algos.rollout.Rollout`,
    :class:`sandbox.algos.groups.LanguageGroups`, :class:`sandbox.algos.groups.EpisodeGroups`); the run reads from it
    the ``policy`` (the module ``policy.pt`` holds, with ``dropout_p`` and ``set_dropout``), its ``network_spec``
    (the networks as plain data), the frozen ``reference``, the reward ``threshold``, ``summary_extra`` for
    ``summary.json``, and calls its ``close()`` however the run ends; a source with a ``state_dict()`` is saved in
    checkpoints. ``budget`` is the steps to train for; ``components`` the trainer's other state by name (its learner,
    beta: saved with their ``state_dict()``, with torch's random state); ``resume`` a checkpoint to continue from;
    ``population`` the seeds trained together with this one (``sandbox/algos/population.py``).
    """

    def __init__(
        self,
        cfg: Config,
        log: RunLog,
        maths: Maths,
        source: Source,
        *,
        budget: int,
        components: dict[str, Stateful] | None = None,
        resume: dict | None = None,
        population: int = 1,
    ):
        self.cfg, self.run_log, self.maths, self.source = cfg, log, maths, source
        self.policy, self.budget = source.policy, budget
        self.update_index = 0
        self.env_steps = 0
        self.returns: list[float] = []  # finished episodes (completions): returns and lengths
        self.lengths: list[int] = []
        self.clock = Clock()
        self.schedule = Schedule(cfg, maths)
        self.summary = Summary(cfg, source, population)
        saved = {"run": self} | ({"source": source} if hasattr(source, "state_dict") else {}) | (components or {})
        self.checkpoints = Checkpoints(cfg, log, source, saved)
        self.result: RunResult | None = None
        if resume is not None:
            self.checkpoints.restore(resume)
        self.bar = progress_bar(budget, cfg.quiet, f"{cfg.algo} {cfg.env}")
        self.bar.update(self.env_steps)

    # --- the loop ------------------------------------------------------------------------------------------------

    def updates(self) -> Iterator[int]:
        """Update numbers (from 1) until ``budget`` steps are done. Before each update: the schedule's values for it
        (:class:`Schedule`), its dropout p set on the policy. After each update the loop body finished (no ``break``):
        a checkpoint every ``save_every`` updates."""
        while self.env_steps < self.budget:
            self.update_index += 1
            self.schedule.start(self.update_index, 1.0 - self.env_steps / self.budget)
            if self.schedule.dropout_p != self.policy.dropout_p:
                self.policy.set_dropout(self.schedule.dropout_p)
            yield self.update_index
            if self.checkpoints.due(self.update_index):
                self.checkpoints.save(self.update_index, self.env_steps, len(self.returns))

    def count_steps(self, n: int) -> None:
        """``n`` more environment steps (sampled tokens) done."""
        self.env_steps += n

    def record_episodes(self, returns: list[float], lengths: list[int]) -> None:
        """Episodes (completions) that just finished, at the current step count: ``episodes.csv``."""
        wall = self.clock()
        for ret, length in zip(returns, lengths):
            self.run_log.episode(self.env_steps, wall, ret, int(length))
        self.returns.extend(returns)
        self.lengths.extend(int(n) for n in lengths)

    def record_step(self, env_steps: int, returns: list[float], lengths: list[int]) -> bool:
        """One step of the environments: ``env_steps`` steps taken, and the returns and lengths of the episodes that
        ended at it. True when the run should stop now (just solved, with ``stop_at_threshold``)."""
        self.count_steps(env_steps)
        if not returns:
            return False
        self.record_episodes(returns, lengths)
        return self.solved()

    def record_batch(self, rewards: list[float], lengths: list[int]) -> None:
        """A batch of completions (episodes) sampled together: recorded, and their mean is ``final_reward``."""
        self.record_episodes(rewards, lengths)
        self.summary.final_reward = float(sum(rewards) / len(rewards)) if rewards else None

    @property
    def final_reward(self) -> float | None:
        """The mean reward of the last batch (language tasks, GRPO); None before the first."""
        return self.summary.final_reward

    def recent_return(self, k: int = 20) -> float:
        """Mean return of the last ``k`` finished episodes (NaN before the first one)."""
        return float(np.mean(self.returns[-k:])) if self.returns else math.nan

    def recent_length(self, k: int = 20) -> float:
        return float(np.mean(self.lengths[-k:])) if self.lengths else math.nan

    def solved(self, value: float | None = None) -> bool:
        """Record the first time ``value`` reaches the reward threshold; by default ``value`` is the mean return of the
        last 20 finished episodes, once there are 20. True when the run should stop now: it just got there and
        ``stop_at_threshold`` is set."""
        if value is None:
            if len(self.returns) < 20:
                return False
            value = self.recent_return(20)
        return self.summary.reached(value, self.env_steps, self.clock())

    def log(self, row: dict[str, float], flatness: list[dict] | None = None) -> None:
        """One row of ``metrics.csv``: the trainer's columns, plus the bookkeeping ones (update, steps, time, lr, clip
        range, dropout p, episodes); and ``flatness``, the update's rows of ``flatness.csv`` (``--flatness-every``)."""
        wall = self.clock()
        sps = self.env_steps / max(wall, 1e-9)
        if flatness:
            self.run_log.flatness(self.update_index, flatness)
        self.run_log.update(
            {
                "update": self.update_index,
                "env_steps": self.env_steps,
                "wall_s": wall,
                "sps": sps,
                "episodes": len(self.returns),
                "lr": self.schedule.lr,
                "clip_coef": self.schedule.clip_coef,
                "dropout_p": self.policy.dropout_p,
                **row,
            }
        )
        self.bar.update(self.env_steps - self.bar.n)
        shown = {"return": f"{row['ep_return_mean']:.3f}", "sps": f"{sps:.0f}"}
        if "kl_ref" in row:
            shown["kl"] = f"{row['kl_ref']:.3f}"
        self.bar.set_postfix(shown, refresh=False)

    # --- every way out -------------------------------------------------------------------------------------------

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            status = "ok"
        elif issubclass(exc_type, NonFiniteLossError):
            status, self.summary.message = "non-finite-loss", str(exc)
        else:
            status = "interrupted"  # Ctrl-C or an error: no summary.json, the run did not finish
        self.bar.close()
        self.source.close()
        finished = status != "interrupted"
        updates = len(self.run_log.rows)
        if finished:
            self.run_log.save_policy(
                blob("policy", self.cfg, self.source.network_spec, self.policy, updates, self.env_steps)
            )
        summary = self.summary.report(
            status,
            final_return=self.recent_return(20) if self.returns else None,
            total_s=self.clock(),
            env_steps=self.env_steps,
            updates=updates,
            episodes=len(self.returns),
        )
        self.result = self.run_log.finish(summary, write_summary=finished)
        return False  # the exception, if any, goes on

    # --- its own state in a checkpoint ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The run's own counters: steps, finished episodes, the solved time, the final reward, the clock."""
        return {
            "update": self.update_index,
            "env_steps": self.env_steps,
            "returns": torch.tensor(self.returns, dtype=torch.float64),
            "lengths": torch.tensor(self.lengths, dtype=torch.int64),
            **self.summary.state_dict(),
            "wall_s": self.clock(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.update_index, self.env_steps = state["update"], state["env_steps"]
        self.returns, self.lengths = state["returns"].tolist(), state["lengths"].tolist()
        self.summary.load_state_dict(state)
        self.clock = Clock(state["wall_s"])
