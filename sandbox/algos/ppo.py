"""PPO (Schulman et al. 2017) on Gymnasium tasks, with the usual implementation details and four ways of handling
dropout (``sandbox/dropout_modes.py``).

Read ``train_ppo`` from top to bottom: collect a rollout, compute advantages, run the clipped-surrogate update, log
one row of metrics; the machinery is elsewhere (the rollout in ``rollout.py``, the minibatch loop and ``target_kl`` in
``learner.py``, annealing and the dropout schedule in ``run.py``). The whole algorithm in one file, without the speed
devices, is the reading edition ``sandbox/reading/ppo_dropout.py``, tested against this trainer. The objective,
minimised over minibatches of the rollout's valid transitions for ``update_epochs`` epochs (each term tagged with the
``maths`` function that computes it; :func:`objective_terms` computes it, for a population of seeds too)::

    L(theta) = mean_t[ L_clip_t ] + vf_coef * mean_t[ L_vf_t ] - ent_coef * mean_t[ H_t ] + beta * mean_t[ KL_t ]

    L_clip_t = -min(r_t A_t, clip(r_t, 1 - clip_coef, 1 + clip_coef_high) A_t)           maths.ppo_loss
    r_t      = pi_theta(a_t | s_t) / pi_old(a_t | s_t)
    A_t      = GAE(gamma, gae_lambda) of the rollout, normalised per minibatch            maths.gae
    L_vf_t   = 0.5 * max((V - R)^2, (V_old + clip(V - V_old, +-clip_coef) - R)^2)        maths.value_loss
    H_t      = entropy of pi_theta(. | s_t)
    KL_t     = k(log pi_theta(a_t | s_t) - log pi_ref(a_t | s_t)), k = k1, k2 or k3       maths.kl_k1 / k2 / k3

With ``--kl-in reward`` the KL term leaves the loss and every step's reward pays ``beta * k1`` instead (before GAE);
with ``--kl-target`` beta adapts after each update (``maths.adaptive_beta``). The variants act on ``L_clip``:
sample dropout keeps a subset of the samples (``maths.sample_dropout_mask``), multi-sample dropout averages the
loss of K dropout copies (``sandbox/algos/objective.py``). The reference ``pi_ref`` is ``--ref``'s policy, else the
initial policy, frozen: ``kl_ref`` measures how far the policy has moved from it.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from ..config import Config
from ..maths import Maths, explained_variance, normalize_advantages
from ..models.mlp import Agent
from ..runs.rundir import RunLog, RunResult
from .diagnostics import Seen
from .learner import Learner, MinibatchLoss
from .objective import Beta, keep_aggregate_average
from .rollout import Batch, Rollout
from .run import Run


def train_ppo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    """PPO on ``cfg.env``: the objective of the module docstring, through the ``maths`` seam."""
    mode = cfg.mode  # the dropout mode: what the rollout and the update do with the dropout layers
    rollout = Rollout(cfg, maths)  # the vector envs, the actor-critic agent and its frozen reference
    agent = rollout.policy
    learner, beta = Learner(agent, cfg, policy_params=agent.actor.parameters()), Beta(cfg, maths)
    budget = cfg.num_updates * cfg.batch_size
    components = {"learner": learner, "beta": beta}  # what a checkpoint saves besides the run and the rollout
    with Run(cfg, log, maths, rollout, budget=budget, components=components, resume=resume) as run:
        for update in run.updates():
            learner.set_lr(run.schedule.lr)  # this update's learning rate (annealed with --anneal-lr)

            # 1. Rollout: num_steps steps of every env, with the policy in the mode's rollout setting; the run counts
            #    the steps and the finished episodes as they come.
            agent.train(mode.rollout_train)
            if run.record_steps(rollout.collect()):
                break  # solved, with --stop-at-threshold

            # 2. Advantages (GAE), on the valid transitions of the rollout, flattened: (B, ...).
            batch, log_ratio_ref = ppo_batch(rollout, *rollout.values(), beta, maths)

            # 3. Update: update_epochs epochs of minibatch steps on the objective, in the mode's update setting.
            agent.train(mode.update_train)
            if cfg.norm_adv and min(cfg.num_minibatches, len(batch)) == 1:  # one minibatch: normalise once
                batch.advantages = normalize_advantages(batch.advantages)
            stats, flatness = learner.optimise(
                partial(ppo_objective, agent, batch, run, beta), len(batch), cfg.update_epochs, run
            )

            # 4. Log one row: the update's metrics, and the KL of the behaviour policy to the reference; adapt beta.
            log_update(run, beta, stats, batch, log_ratio_ref, flatness)
    return run.result


def ppo_batch(rollout: Rollout, values: Tensor, next_values: Tensor, beta: Beta, maths: Maths) -> tuple[Batch, Tensor]:
    """The rollout's valid transitions with their GAE advantages and returns, and ``log pi_old - log pi_ref`` of every
    step ``(T, N)``. ``values``, ``next_values``: V(s_t) and V(s_{t+1}) ``(T, N)``, from the critic in the rollout's
    dropout setting (:meth:`~sandbox.algos.rollout.Rollout.values`)."""
    cfg = rollout.cfg
    rewards, log_ratio_ref = step_rewards(rollout, beta, maths)
    advantages, returns = maths.gae(
        rewards, values, next_values, rollout.terminated, rollout.dones, cfg.gamma, cfg.gae_lambda
    )
    return rollout.batch(values, advantages, returns), log_ratio_ref


def step_rewards(rollout: Rollout, beta: Beta, maths: Maths) -> tuple[Tensor, Tensor]:
    """The rewards GAE sees, and ``log pi_old - log pi_ref``, both ``(T, N)``. With the KL in the reward, each step
    first pays ``beta * k1(log pi_old - log pi_ref)`` (Ziegler et al. 2019)."""
    log_ratio_ref = rollout.log_ratio_ref()
    rewards = rollout.rewards
    if beta.in_reward > 0:
        rewards = rewards - beta.in_reward * maths.kl_k1(log_ratio_ref)
    return rewards, log_ratio_ref


def ppo_objective(agent: Agent, batch: Batch, run: Run, beta: Beta, idx: Tensor | slice) -> MinibatchLoss:
    """The objective on the minibatch ``idx`` of ``batch`` (``slice(None)``: the whole batch, whose advantages the
    trainer normalised once): the agent's forward pass, then :func:`ppo_loss_terms`."""
    mb = batch.select(idx)
    logp, entropy, values = agent.evaluate(mb.obs, mb.actions, mb.masks, with_entropy=run.cfg.ent_coef > 0)
    return ppo_loss_terms(mb, logp, entropy, values, run, beta, normalised=isinstance(idx, slice))


def ppo_loss_terms(
    mb: Batch, logp: Tensor, entropy: Tensor, values: Tensor, run: Run, beta: Beta, normalised: bool
) -> MinibatchLoss:
    """The objective of the module docstring on minibatch ``mb``, given the forward pass's ``logp``, ``entropy``
    (``(B,)``, or ``(K, B)`` with multi-sample dropout's copies) and ``values`` ``(B,)``: :func:`objective_terms` with
    plain means, and what the update's metrics see of it."""
    cfg, maths = run.cfg, run.maths
    adv = mb.advantages if normalised or not cfg.norm_adv else normalize_advantages(mb.advantages)
    surrogate = partial(keep_aggregate_average, maths, cfg)  # L_clip: sample dropout, mean, multi-sample average
    t = objective_terms(mb, logp, entropy, values, adv, run, beta.in_loss, beta.estimator, Tensor.mean, surrogate)
    seen = Seen(
        t.logratio.detach().reshape(-1),
        adv.expand_as(t.logratio).reshape(-1),
        t.entropy.detach(),
        t.pg_loss.detach(),
        t.v_loss.detach(),
        keep=t.keep.reshape(-1),
    )
    return MinibatchLoss(t.loss, t.pg_loss, seen)


class Terms(NamedTuple):
    """The objective on one minibatch and its terms: scalars, or one value per member of a population ``(K,)``."""

    loss: Tensor
    pg_loss: Tensor
    v_loss: Tensor
    entropy: Tensor
    logratio: Tensor
    """``logp - logp_old`` per sample (and per dropout copy), as the ratio was taken from it."""
    keep: Tensor | None
    """The samples the clipped term kept (sample dropout), as ``surrogate`` returned them."""


def objective_terms(
    mb: Batch,
    logp: Tensor,
    entropy: Tensor,
    values: Tensor,
    adv: Tensor,
    run: Run,
    beta: float | Tensor,
    estimator: Callable[[Tensor], Tensor],
    mean: Callable[[Tensor], Tensor],
    surrogate: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor | None]],
) -> Terms:
    """The objective of the module docstring, the one both PPO trainers minimise: the single-seed trainer's
    (:func:`ppo_loss_terms`) and a population's (``sandbox/algos/population.py``, all members at once). Given the
    forward pass's ``logp``, ``entropy`` and ``values``, the advantages ``adv`` as the loss uses them (normalised or
    not), the KL coefficient in the loss ``beta`` (a float, or one per member) and its ``estimator``; and the
    reductions over the samples: ``mean(x)`` (one seed: ``x.mean()``; a population: each member's mean over its own
    rows), and ``surrogate(per_sample, ratio, adv) -> (pg_loss, keep)`` for the clipped term (with sample and
    multi-sample dropout's steps). Terms enter the loss only when their coefficient is above 0."""
    cfg, maths = run.cfg, run.maths
    logratio = logp - mb.logp  # (B,), or (K, B): one row per dropout copy with multi-sample dropout
    ratio = logratio.exp()
    low, high = run.schedule.clip_coef, run.schedule.clip_coef_high  # this update's clip range
    per_sample = maths.ppo_loss(ratio, adv, low, high)  # L_clip, per sample and copy
    pg_loss, keep = surrogate(per_sample, ratio, adv)
    v_loss = mean(maths.value_loss(values, mb.values, mb.returns, cfg.clip_coef if cfg.clip_vloss else None))
    ent = mean(entropy)
    loss = pg_loss + cfg.vf_coef * v_loss
    if bool(torch.as_tensor(beta).gt(0).any()):  # KL to the reference in the loss, per sample (and dropout copy)
        loss = loss + beta * mean(estimator(logp - mb.ref_logp))
    if cfg.ent_coef > 0:
        loss = loss - cfg.ent_coef * ent
    return Terms(loss, pg_loss, v_loss, ent, logratio, keep)


def log_update(
    run: Run, beta: Beta, stats: dict[str, float], batch: Batch, log_ratio_ref: Tensor, flatness: list[dict] = ()
) -> None:
    """One row of metrics: the update's, the critic's explained variance, and ``kl_ref``, the KL of the behaviour
    policy to the reference (k1, mean per valid step), with the update's ``flatness`` rows (``--flatness-every``);
    then beta adapts to it (``--kl-target``)."""
    kl_ref = float(log_ratio_ref.sum() / len(batch)) if len(batch) else math.nan
    row = {"ep_return_mean": run.recent_return(20), "ep_len_mean": run.recent_length(20), **stats}
    row |= {"explained_var": explained_variance(batch.values, batch.returns), "kl_ref": kl_ref, "beta": beta.value}
    run.log(row, flatness)
    beta.adapt(kl_ref, len(batch))
