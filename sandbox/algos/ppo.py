"""PPO (Schulman et al. 2017) on Gymnasium tasks, with the usual implementation details and four ways of handling
dropout (``sandbox/dropout_modes.py``).

Read ``train_ppo`` from top to bottom: collect a rollout, compute advantages, run the clipped-surrogate update, log
one row of metrics. It trains one seed or K seeds of one config together, written once: a single run is the
population of one, and every tensor of the update has a seed axis in front (``(K, S)``), every mean is taken over
one seed's own rows. The machinery is elsewhere (the seeds' rollouts and batched networks in ``population.py`` and
``rollout.py``, the minibatch loop, ``target_kl``, the gradient clip and the non-finite guard in ``learner.py``,
annealing and the dropout schedule in ``run.py``). The whole algorithm in one file, for one seed and without the speed
devices, is the reading edition ``sandbox/reading/ppo_dropout.py``, tested against this trainer. The objective,
minimised over minibatches of the rollout's valid transitions for ``update_epochs`` epochs (each term tagged with the
``maths`` function that computes it; :func:`ppo_objective` computes it)::

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

import contextlib
import math

import torch
from torch import Tensor

from ..config import Config
from ..maths import Maths, explained_variance, kl_k3
from ..runs.rundir import RunLog, RunResult
from .learner import Learner, MinibatchLoss
from .objective import Beta, member_mean, member_normalize, member_surrogate, members_seen
from .population import Members, MembersBatch, Minibatch, Population, keep_freed_memory
from .rollout import Batch, Rollout
from .run import Run


def train_ppo(cfgs: list[Config], maths: Maths, logs: list[RunLog], resume: dict | None = None) -> list[RunResult]:
    """PPO on ``cfg.env`` for every config of ``cfgs``: one run, or a population of seeds of one config trained
    together (``sandbox/algos/population.py``), each writing its own run directory. The objective of the module
    docstring, through the ``maths`` seam. ``resume``: a single run's checkpoint to continue from."""
    cfg, mode = cfgs[0], cfgs[0].mode  # the dropout mode: what the rollout and the update do with the dropout layers
    if len(cfgs) > 1:
        keep_freed_memory()
    seeds = Population(cfgs, maths)  # per seed: the vector envs, the actor-critic agent and its frozen reference
    learner = Learner(seeds.params, cfg, seeds.policies[0].actor.parameters(), seeds.generators)
    betas = [Beta(c, maths) for c in cfgs]
    budget = cfg.num_updates * cfg.batch_size
    saved = [{"learner": learner, "beta": b} for b in betas]  # what a checkpoint saves besides the run and the rollout
    runs = [
        Run(c, log, maths, r, budget=budget, components=s, resume=resume, population=len(cfgs))
        for c, log, r, s in zip(cfgs, logs, seeds.rollouts, saved)
    ]
    with Members(runs) as members, contextlib.closing(seeds):
        for update in members.updates():
            learner.set_lr(members.schedule.lr)  # this update's learning rate (annealed with --anneal-lr)

            # 1. Rollout: num_steps steps of every env, with the policy in the mode's rollout setting; each run counts
            #    its steps and finished episodes as they come.
            seeds.train(mode.rollout_train)
            if seeds.collect(members):
                break  # solved, with --stop-at-threshold

            # 2. Advantages (GAE), on the valid transitions of each seed's rollout, flattened: (B, ...).
            active = list(members.active)
            rewards, log_ratio_ref = zip(*(step_rewards(seeds.rollouts[k], betas[k], maths) for k in active))
            batches = seeds.batches(active, *seeds.values(), list(rewards))
            batch = MembersBatch(batches, len(seeds), cfg)  # every seed's batch side by side: (K, B, ...)

            # 3. Update: update_epochs epochs of minibatch steps on the objective, in the mode's update setting.
            seeds.train(mode.update_train)
            if cfg.norm_adv and batch.whole:  # one minibatch: normalise once
                batch.advantages = member_normalize(batch.advantages, batch.valid)
            stats, flatness, failed = learner.optimise_members(
                lambda mb: ppo_objective(seeds, mb, members, betas), batch, cfg.update_epochs, members
            )
            for k, error in failed.items():  # a seed whose loss is not finite leaves alone (its run ends here)
                members.fail(k, error)

            # 4. Log one row per seed: the update's metrics, and the KL of the behaviour policy to the reference; adapt
            #    beta.
            for k, ratio_ref in zip(active, log_ratio_ref):
                if k in stats:
                    log_update(members[k], betas[k], stats[k], batches[k], ratio_ref, flatness[k])
    return [run.result for run in runs]


def step_rewards(rollout: Rollout, beta: Beta, maths: Maths) -> tuple[Tensor, Tensor]:
    """The rewards GAE sees, and ``log pi_old - log pi_ref``, both ``(T, N)``. With the KL in the reward, each step
    first pays ``beta * k1(log pi_old - log pi_ref)`` (Ziegler et al. 2019)."""
    log_ratio_ref = rollout.log_ratio_ref()
    rewards = rollout.rewards
    if beta.in_reward > 0:
        rewards = rewards - beta.in_reward * maths.kl_k1(log_ratio_ref)
    return rewards, log_ratio_ref


def ppo_objective(seeds: Population, mb: Minibatch, runs: Members, betas: list[Beta]) -> MinibatchLoss:
    """The objective of the module docstring on the minibatch ``mb`` of every seed, ``(K, S, ...)``: the agents'
    forward pass, then each term as a mean over each seed's own rows (:func:`~sandbox.algos.objective.member_mean`),
    one value per seed ``(K,)``. ``mb.whole``: the rows are the whole batch, whose advantages the trainer normalised
    once."""
    run = runs[runs.active[0]]
    cfg, maths = run.cfg, run.maths
    logp, entropy, values = seeds.evaluate(mb, with_entropy=cfg.ent_coef > 0)  # (K, S), or (copies, K, S)
    adv = mb.advantages if mb.whole or not cfg.norm_adv else member_normalize(mb.advantages, mb.valid)
    logratio = logp - mb.logp
    ratio = logratio.exp()
    low, high = run.schedule.clip_coef, run.schedule.clip_coef_high  # this update's clip range
    per_sample = maths.ppo_loss(ratio, adv, low, high)  # L_clip, per sample (and dropout copy)
    pg_loss, keep = member_surrogate(maths, cfg, per_sample, ratio, adv, mb.valid)  # sample dropout, mean, average
    clip_vloss = cfg.clip_coef if cfg.clip_vloss else None  # never annealed: a value clip of 0 stops the critic
    v_loss = member_mean(maths.value_loss(values, mb.values, mb.returns, clip_vloss), mb.valid)
    ent = member_mean(entropy, mb.valid)
    loss = pg_loss + cfg.vf_coef * v_loss
    beta = torch.tensor([b.in_loss for b in betas])  # one per seed (each adapts its own with --kl-target)
    if bool(beta.gt(0).any()):  # KL to the reference in the loss, per sample (and dropout copy)
        loss = loss + beta * member_mean(betas[0].estimator(logp - mb.ref_logp), mb.valid)
    if cfg.ent_coef > 0:
        loss = loss - cfg.ent_coef * ent
    logratio = logratio.detach()
    value_dev = member_mean((values.detach() - mb.values).abs(), mb.valid)  # 0 when the critic is the rollout's
    seen = members_seen(logratio, adv, ent.detach(), pg_loss.detach(), v_loss.detach(), keep, mb.valid, value_dev)
    return MinibatchLoss(loss, pg_loss, member_mean(kl_k3(-logratio), mb.valid), seen)


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
