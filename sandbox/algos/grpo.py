"""GRPO (Shao et al. 2024, DeepSeekMath): group-relative advantages, no value function, KL to a frozen reference.

Read ``train_grpo`` from top to bottom: sample a batch of groups (G completions of one prompt on the language tasks,
G episodes from one reset seed on Gym: ``sandbox/algos/groups.py``), turn each group's rewards into advantages, run the
clipped per-token surrogate for ``update_epochs`` passes (DeepSeekMath's mu), log one row, adapt beta. On
``lang:reverse`` the whole algorithm in one file is the reading edition ``sandbox/reading/grpo_dropout.py``, tested
against this trainer. The objective, for a batch of groups of G sequences o_1..o_G (each term tagged with the
``maths`` function that computes it)::

    L_GRPO(theta) = agg_{i,t}[ -min(r_it A_i, clip(r_it, 1 - clip_coef, 1 + clip_coef_high) A_i) ]   maths.ppo_loss
                    + beta * agg_{i,t}[ KL_it ]

    A_i   = (R_i - mean_G R) / (std_G R + 1e-4), the same for every token of o_i     maths.group_advantages
            (--scale-rewards batch: the batch's std; none: no division, Dr. GRPO)
    r_it  = pi_theta(o_it | q, o_i,<t) / pi_old(o_it | q, o_i,<t)
    KL_it = k(log pi_theta(o_it | ...) - log pi_ref(o_it | ...)), k = k3 by default    maths.kl_k1 / k2 / k3
    agg   = the token aggregation (--loss-agg)                                        maths.aggregate_loss
            grpo: mean over each sequence's tokens, then over sequences; bnpo: mean over all tokens of the batch;
            dr_grpo: sum / (sequences * the longest possible length)

On a task whose reward is a 0/1 correctness, ``--length-penalty`` asks for shorter correct completions: each group's
rewards R_i become the length-penalised ones (``maths.length_penalty_rewards``), in every group or, with
``--grpo-lambda`` (GRPO-lambda, Dai et al. 2025), only in the groups whose correctness ratio its switch picks
(``maths.grpo_lambda_switch``); the others keep the plain 0/1 reward.

With ``--kl-in reward`` the KL leaves the loss and each sequence's reward pays ``beta * sum_t k1_it`` before the
advantages; ``--kl-target`` adapts beta (``maths.adaptive_beta``). Sample dropout and multi-sample dropout act on the
clipped term (``sandbox/algos/objective.py``). The dropout modes are those of PPO (``sandbox/dropout_modes.py``).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from ..config import Config
from ..maths import Maths
from ..models.mlp import FlatParams
from ..runs.rundir import RunLog, RunResult
from .groups import EpisodeGroups, LanguageGroups
from .learner import Learner, MinibatchLoss
from .objective import Beta, keep_aggregate_average, sequence_loss
from .run import Run


def train_grpo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    """GRPO on ``cfg.env`` (a language task or a Gym env): the objective of the module docstring."""
    mode, G = cfg.mode, cfg.group_size
    source = LanguageGroups(cfg, maths) if cfg.is_lang else EpisodeGroups(cfg, maths)
    policy = source.policy
    policy_params = [q for q in policy.parameters() if q.requires_grad]
    learner, beta = Learner(FlatParams(policy), cfg, policy_params), Beta(cfg, maths)
    components = {"learner": learner, "beta": beta}  # what a checkpoint saves besides the run and the source
    with Run(cfg, log, maths, source, budget=cfg.total_steps, components=components, resume=resume) as run:
        for update in run.updates():
            learner.set_lr(run.schedule.lr)  # this update's learning rate (annealed with --anneal-lr)

            # 1. Sample prompts_per_update groups of G sequences, in the dropout mode's rollout setting.
            b = source.sample()
            run.count_steps(int(b.lengths.sum()))

            # 2. Rewards (length-penalised in the groups GRPO-lambda picks) -> group advantages. With the KL in the
            #    reward, each sequence first pays beta * its summed k1.
            log_ratio_ref = (b.logp_old - b.ref_logp) * b.token_mask  # (B, n)
            rewards, reward_columns = shaped_rewards(cfg, maths, b)
            # "no signal": a group whose rewards (length-penalised where they are, before the KL shaping) are equal
            all_equal = rewards.view(-1, G).max(dim=1).values == rewards.view(-1, G).min(dim=1).values
            if beta.in_reward > 0:
                rewards = rewards - beta.in_reward * (maths.kl_k1(log_ratio_ref) * b.token_mask).sum(dim=1)
            advantages = maths.group_advantages(rewards.view(-1, G), cfg.scale_rewards).flatten()  # (B,)
            loss_mask = b.token_mask.clone()  # the tokens the loss counts
            if cfg.mask_truncated:
                loss_mask &= ~b.truncated[:, None]
            if cfg.drop_equal_groups:
                loss_mask &= ~all_equal.repeat_interleave(G)[:, None]

            # 3. Update: update_epochs passes (mu) over the batch's sequences, in the mode's update setting.
            policy.train(mode.update_train)
            n = len(b.rewards) if bool(loss_mask.any()) else 0  # all left out (equal groups, truncation): no step
            objective = partial(grpo_objective, source, b, advantages, loss_mask, run, beta)
            stats, flatness = learner.optimise(objective, n, cfg.update_epochs, run, unit="pass")

            # 4. Log one row (the KL of the sampling policy to the reference: k1 summed per sequence); adapt beta.
            run.record_batch(b.rewards.tolist(), b.lengths.tolist())
            kl_ref = float(log_ratio_ref.sum(dim=1).mean())
            reward = run.final_reward if cfg.is_lang else run.recent_return(20)  # Gym: the last 20 episodes
            length = float(b.lengths.float().mean())
            run.log(
                {
                    "ep_return_mean": reward,  # language tasks: reward_mean again (the report's curves read it)
                    **({} if cfg.is_lang else {"ep_len_mean": length}),  # language tasks: completion_len only
                    **stats,
                    "reward_mean": run.final_reward,
                    "reward_std": float(b.rewards.std()),
                    "kl_ref": kl_ref,
                    "beta": beta.value,
                    "zero_std_frac": float(all_equal.float().mean()),
                    "completion_len": length,
                    **reward_columns,
                },
                flatness,
            )
            beta.adapt(kl_ref, len(b.rewards))
            if run.solved(reward if cfg.is_lang else None):
                break  # solved, with --stop-at-threshold
    return run.result


def shaped_rewards(cfg: Config, maths: Maths, b) -> tuple[Tensor, dict[str, float]]:
    """The rewards the advantages start from, ``(B,)``, and the row's reward columns. On a task whose reward is a 0/1
    correctness: the plain 0/1 reward, or ``--length-penalty``'s length-penalised one in every group (``--grpo-lambda``
    unset) or in the groups GRPO-lambda's switch picks from their correctness ratios. Elsewhere the task's reward."""
    if not (cfg.is_lang and cfg.binary_correctness):
        return b.rewards, {}
    correct, lengths = b.rewards.view(-1, cfg.group_size) > 0.5, b.lengths.view(-1, cfg.group_size)
    penalised = torch.full((len(correct),), cfg.length_penalty > 0)
    if cfg.length_penalty > 0 and cfg.grpo_lambda is not None:
        penalised = maths.grpo_lambda_switch(correct, cfg.grpo_lambda, cfg.grpo_lambda_rule)
    rewards = correct.float()
    if bool(penalised.any()):
        shaped = maths.length_penalty_rewards(correct, lengths, cfg.length_penalty, cfg.length_penalty_form)
        rewards = torch.where(penalised[:, None], shaped, rewards)
    frac = float(penalised.float().mean())
    columns = {"correct_ratio": float(correct.float().mean()), "length_penalty_frac": frac}
    return rewards.flatten(), columns | {"plain_reward_frac": 1.0 - frac}


def grpo_objective(
    source: LanguageGroups | EpisodeGroups,
    b,
    advantages: Tensor,
    loss_mask: Tensor,
    run: Run,
    beta: Beta,
    idx: Tensor | slice,
) -> MinibatchLoss:
    """L_GRPO of the module docstring on the sequences ``idx`` of batch ``b`` (``slice(None)``: all of them).

    ``advantages (B,)``: one per sequence, given to each of its tokens. ``loss_mask (B, n)``: the tokens that count
    (a sequence's own, minus those ``--mask-truncated`` and ``--drop-equal-groups`` leave out).
    """
    cfg, maths = run.cfg, run.maths
    m = loss_mask[idx]
    logp, entropy, _ = source.logp(b, idx, entropy_grad=cfg.ent_coef > 0)  # (B', n), or (K, B', n)
    logratio = (logp - b.logp_old[idx]) * m
    ratio = logratio.exp()
    adv = advantages[idx, None].expand(m.shape)  # every token of a sequence gets its sequence's advantage

    per_token = maths.ppo_loss(ratio, adv, run.schedule.clip_coef, run.schedule.clip_coef_high)
    pg_loss, keep = keep_aggregate_average(maths, cfg, per_token, ratio, adv, m, source.max_len)  # sample dropout, agg
    log_ratio_ref = logp - b.ref_logp[idx]
    return sequence_loss(maths, cfg, beta, pg_loss, keep, logratio, adv, log_ratio_ref, entropy, m, source.max_len)
