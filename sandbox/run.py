"""A run's bookkeeping, kept out of the trainers: CleanRL's "TRY NOT TO MODIFY" part, SB3's callbacks.

Every trainer uses :class:`Run` the same way::

    with Run(cfg, log, maths, learner, source, budget=...) as run:
        for update in run.updates():   # annealed lr and clip range, scheduled dropout p, periodic checkpoints
            ...                        # the algorithm: rollout, advantages, update
            run.log({...})             # one row of metrics.csv
    return run.result                  # metrics, episodes and summary (summary.json written on every way out)

What it takes care of: the step budget; the linear annealing of the learning rate and of both clip ranges; the
dropout schedule; the progress bar and the clock; finished episodes (``episodes.csv``) and the solved check; the
bookkeeping columns of each metrics row; a checkpoint every ``save_every`` updates (the state of every component,
each by its own ``state_dict()``) and resuming from one; and, however the loop ends, ``policy.pt`` and
``summary.json`` (status ``ok`` or ``non-finite-loss``; an interrupted run writes no summary: it did not finish).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from .config import Config
from .learner import Learner, NonFiniteLossError
from .maths import Maths
from .policy_file import blob
from .progress import Clock, progress_bar
from .reference import check_same_reference, digest
from .rundir import RunLog, RunResult
from .snapshot import random_state, set_random_state


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Source(Protocol):
    """Where a trainer's experience comes from, as far as the run's bookkeeping is concerned."""

    policy: nn.Module
    network: dict
    reference: nn.Module
    threshold: float | None
    summary_extra: dict[str, Any]

    def close(self) -> None: ...


class Run:
    """The bookkeeping of one run.

    ``source`` is where the trainer's experience comes from (:class:`sandbox.ppo.Rollout`,
    :class:`sandbox.groups.LanguageGroups`, :class:`sandbox.groups.EpisodeGroups`); the run reads from it the
    ``policy`` (the module ``policy.pt`` holds, with ``dropout_p`` and ``set_dropout``), its ``network`` description,
    the frozen ``reference``, the reward ``threshold``, ``summary_extra`` for ``summary.json``, and calls its
    ``close()`` however the run ends; a source with a ``state_dict()`` is saved in checkpoints. ``budget`` is the
    steps to train for; ``components`` the trainer's other state by name (saved with their ``state_dict()``, with
    torch's random state); ``resume`` a checkpoint to continue from.
    """

    def __init__(
        self,
        cfg: Config,
        log: RunLog,
        maths: Maths,
        learner: Learner,
        source: Source,
        *,
        budget: int,
        components: dict[str, Stateful] | None = None,
        resume: dict | None = None,
    ):
        self.cfg, self.run_log, self.maths, self.learner, self.source = cfg, log, maths, learner, source
        self.policy, self.network, self.reference = source.policy, source.network, source.reference
        self.budget, self.threshold = budget, source.threshold
        self.components = ({"source": source} if hasattr(source, "state_dict") else {}) | (components or {})
        self.update = 0
        self.env_steps = 0
        self.returns: list[float] = []  # finished episodes (completions): returns and lengths
        self.lengths: list[int] = []
        self.final_reward: float | None = None
        self.solved_at_steps: int | None = None
        self.solved_at_s: float | None = None
        self.message = "finished the step budget"
        self.population = 1  # seeds trained together with this one (sandbox/population.py sets it)
        self.lr, self.clip_coef, self.clip_coef_high = cfg.learning_rate, cfg.clip_coef, cfg.clip_coef_high
        self.result: RunResult | None = None
        self.clock = Clock()
        if resume is not None:
            self._restore(resume)
        self.bar = progress_bar(budget, cfg.quiet, f"{cfg.algo} {cfg.env}")
        self.bar.update(self.env_steps)

    # --- the loop ------------------------------------------------------------------------------------------------

    def updates(self) -> Iterator[int]:
        """Update numbers (from 1) until ``budget`` steps are done. Before each update: the learning rate and the clip
        ranges annealed linearly by the fraction of the budget left (``anneal_lr``, ``anneal_clip``: both clip ranges
        alike), and the scheduled dropout p set on the policy (it holds for the rollout and the update). After each
        update the loop body finished (no ``break``): a checkpoint every ``save_every`` updates."""
        cfg = self.cfg
        while self.env_steps < self.budget:
            self.update += 1
            frac = 1.0 - self.env_steps / self.budget
            self.lr = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
            self.clip_coef = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
            high = cfg.clip_coef_high
            self.clip_coef_high = high * frac if cfg.anneal_clip and high is not None else high
            self.learner.set_lr(self.lr)
            p = self.maths.dropout_schedule(
                cfg.effective_dropout, self.update, cfg.dropout_schedule, cfg.dropout_cutoff
            )
            if p != self.policy.dropout_p:
                self.policy.set_dropout(p)
            yield self.update
            if cfg.save_every and self.update % cfg.save_every == 0:
                self._save_checkpoint()

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

    def record_batch(self, rewards: list[float], lengths: list[int]) -> None:
        """A batch of completions (episodes) sampled together: recorded, and their mean is ``final_reward``."""
        self.record_episodes(rewards, lengths)
        self.final_reward = float(sum(rewards) / len(rewards)) if rewards else None

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
        if self.solved_at_steps is not None or self.threshold is None or not value >= self.threshold:
            return False
        self.solved_at_steps, self.solved_at_s = self.env_steps, self.clock()
        if self.cfg.stop_at_threshold:
            self.message = "reached the reward threshold (--stop-at-threshold)"
            return True
        return False

    def log(self, row: dict[str, float]) -> None:
        """One row of ``metrics.csv``: the trainer's columns, plus the bookkeeping ones (update, steps, time, lr, clip
        range, dropout p, episodes)."""
        wall = self.clock()
        sps = self.env_steps / max(wall, 1e-9)
        self.run_log.update(
            {
                "update": self.update,
                "env_steps": self.env_steps,
                "wall_s": wall,
                "sps": sps,
                "episodes": len(self.returns),
                "lr": self.lr,
                "clip_coef": self.clip_coef,
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
            status, self.message = "non-finite-loss", str(exc)
        else:
            status = "interrupted"  # Ctrl-C or an error: no summary.json, the run did not finish
        self.bar.close()
        self.source.close()
        finished = status != "interrupted"
        updates = len(self.run_log.rows)
        if finished:
            self.run_log.save_policy(blob("policy", self.cfg, self.network, self.policy, updates, self.env_steps))
        summary = {
            "status": status,
            "final_return": self.recent_return(20) if self.returns else None,
            "final_reward": self.final_reward,
            "solved_at_steps": self.solved_at_steps,
            "solved_at_s": self.solved_at_s,
            "reward_threshold": self.threshold,
            "total_s": self.clock(),
            "env_steps": self.env_steps,
            "updates": updates,
            "episodes": len(self.returns),
            "message": self.message,
            "population": self.population,
            **self.source.summary_extra,
        }
        self.result = self.run_log.finish(summary, write_summary=finished)
        return False  # the exception, if any, goes on

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The run's own counters: steps, finished episodes, the solved time, the final reward, the clock."""
        return {
            "update": self.update,
            "env_steps": self.env_steps,
            "returns": torch.tensor(self.returns, dtype=torch.float64),
            "lengths": torch.tensor(self.lengths, dtype=torch.int64),
            "final_reward": self.final_reward,
            "solved_at_steps": self.solved_at_steps,
            "solved_at_s": self.solved_at_s,
            "wall_s": self.clock(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.update, self.env_steps, self.final_reward = state["update"], state["env_steps"], state["final_reward"]
        self.returns, self.lengths = state["returns"].tolist(), state["lengths"].tolist()
        self.solved_at_steps, self.solved_at_s = state["solved_at_steps"], state["solved_at_s"]
        self.clock = Clock(state["wall_s"])

    def _save_checkpoint(self) -> None:
        """``checkpoints/update-NNNNNN.pt``: the policy, and what :meth:`_restore` needs to continue bit for bit."""
        resume = {
            "run": self.state_dict(),
            "learner": self.learner.state_dict(),
            **{name: c.state_dict() for name, c in self.components.items()},
            "random": random_state(),
            "ref_digest": digest(self.reference),
            "episodes_written": len(self.returns),
        }
        b = blob("checkpoint", self.cfg, self.network, self.policy, self.update, self.env_steps, resume)
        self.run_log.save_checkpoint(self.update, b)

    def _restore(self, checkpoint: dict) -> None:
        """Put a checkpoint's state back, the random streams last."""
        r = checkpoint["resume"]
        check_same_reference(r, self.reference)
        self.policy.load_state_dict(checkpoint["state_dict"])
        self.policy.set_dropout(checkpoint["dropout_p"])
        self.learner.load_state_dict(r["learner"])
        for name, component in self.components.items():
            component.load_state_dict(r[name])
        self.load_state_dict(r["run"])
        set_random_state(r["random"])
