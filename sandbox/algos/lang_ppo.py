"""PPO on the language tasks' token-level MDP: the tiny transformer with a value head, GAE with gamma = 1.

The RLHF recipe in miniature (Ziegler et al. 2019, Ouyang et al. 2022): a state is the prompt plus the tokens so far,
an action is the next token, the task's reward arrives with the last token, and the KL to the reference either
enters the loss or is paid per token in the reward (``--kl-in reward``: r_t = -beta * k1_t). Compare with GRPO on
the same task: GRPO needs no value function, PPO needs no groups.

Read ``train_lang_ppo`` from top to bottom: sample completions (as GRPO does), value every state in one forward,
per-token rewards, GAE, ``update_epochs`` epochs of the objective, log one row, adapt beta. The objective, per token
t of completion i (each term tagged with the ``maths`` function that computes it)::

    L(theta) = agg[ -min(r_it A_it, clip(r_it, 1 - clip_coef, 1 + clip_coef_high) A_it) ]       maths.ppo_loss
               + vf_coef * agg[ L_vf_it ] - ent_coef * agg[ H_it ] + beta * agg[ KL_it ]

    A_it  = GAE(gamma, gae_lambda) along the completion, normalised over the batch's tokens   maths.gae
    L_vf  = 0.5 * max((V - R)^2, (V_old + clip(V - V_old, +-clip_coef) - R)^2)              maths.value_loss
    KL_it = k(log pi_theta - log pi_ref) of the token                                     maths.kl_k1 / k2 / k3
    agg   = the token aggregation (--loss-agg, as in GRPO)                                 maths.aggregate_loss
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from ..config import Config
from ..maths import Maths, explained_variance
from ..models.mlp import FlatParams
from ..runs.rundir import RunLog, RunResult
from .groups import LanguageGroups
from .lang_rollout import LangBatch, sequence_logp
from .learner import Learner, MinibatchLoss
from .objective import Beta, keep_aggregate_average, sequence_loss
from .run import Run


def train_lang_ppo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    """PPO on the language task ``cfg.env``: the objective of the module docstring."""
    mode = cfg.mode
    source = LanguageGroups(cfg, maths, with_value_head=True)
    policy = source.policy
    policy_params = [q for k, q in policy.named_parameters() if not k.startswith("value_head")]
    learner, beta = Learner(FlatParams(policy), cfg, policy_params), Beta(cfg, maths)
    components = {"learner": learner, "beta": beta}  # what a checkpoint saves besides the run and the source
    with Run(cfg, log, maths, source, budget=cfg.total_steps, components=components, resume=resume) as run:
        for update in run.updates():
            learner.set_lr(run.schedule.lr)  # this update's learning rate (annealed with --anneal-lr)

            # 1. Sample completions (as GRPO does); value every state in one forward, in the rollout's dropout setting.
            b = source.sample()
            run.count_steps(int(b.lengths.sum()))
            with torch.no_grad():
                _, _, hidden = sequence_logp(policy, b.tokens, source.task.prompt_len, cfg.temperature, b.dropout_masks)
                values = policy.value(hidden) * b.token_mask  # (B, n)

            # 2. Per-token rewards: the task's reward on the last token, and -beta * k1 per token if in the reward.
            log_ratio_ref = (b.logp_old - b.ref_logp) * b.token_mask
            last = (b.lengths - 1).clamp(min=0)
            rewards, ends = torch.zeros_like(values), torch.zeros_like(values)
            rewards[torch.arange(len(last)), last] = b.rewards
            ends[torch.arange(len(last)), last] = 1.0  # the episode ends at the last token
            if beta.in_reward > 0:
                rewards = rewards - beta.in_reward * maths.kl_k1(log_ratio_ref) * b.token_mask

            # 3. GAE along each completion (maths.gae wants time first: (n, B)).
            next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
            adv_t, ret_t = maths.gae(rewards.T, values.T, next_values.T, ends.T, ends.T, cfg.gamma, cfg.gae_lambda)
            advantages, returns = adv_t.T, ret_t.T
            loss_mask = b.token_mask & ~b.truncated[:, None] if cfg.mask_truncated else b.token_mask  # what counts
            if cfg.norm_adv:
                valid = advantages[loss_mask]
                advantages = (advantages - valid.mean()) / (valid.std() + 1e-8)

            # 4. Update: update_epochs epochs over the batch's completions, in the mode's update setting.
            policy.train(mode.update_train)
            n = len(b.rewards) if bool(loss_mask.any()) else 0  # every completion left out: nothing to learn
            objective = partial(lang_ppo_objective, source, b, advantages, returns, values, loss_mask, run, beta)
            stats, flatness = learner.optimise(objective, n, cfg.update_epochs, run)

            # 5. Log one row (the KL of the sampling policy to the reference, as GRPO logs it); adapt beta.
            run.record_batch(b.rewards.tolist(), b.lengths.tolist())
            kl_ref = float(log_ratio_ref.sum(dim=1).mean())
            valid = b.token_mask.bool()
            length = float(b.lengths.float().mean())
            run.log(
                {
                    "ep_return_mean": run.final_reward,  # reward_mean again (the report's curves read it)
                    **stats,
                    "explained_var": explained_variance(values[valid], returns[valid]),
                    "reward_mean": run.final_reward,
                    "reward_std": float(b.rewards.std()),
                    "kl_ref": kl_ref,
                    "beta": beta.value,
                    "completion_len": length,
                },
                flatness,
            )
            beta.adapt(kl_ref, len(b.rewards))
            if run.solved(run.final_reward):
                break  # solved, with --stop-at-threshold
    return run.result


def lang_ppo_objective(
    source: LanguageGroups,
    b: LangBatch,
    advantages: Tensor,
    returns: Tensor,
    old_values: Tensor,
    loss_mask: Tensor,
    run: Run,
    beta: Beta,
    idx: Tensor | slice,
) -> MinibatchLoss:
    """The objective of the module docstring on the completions ``idx`` of batch ``b``. Per token ``(B, n)``: the
    ``advantages`` and value targets ``returns`` from GAE, the rollout's ``old_values`` (for the value clip), and
    ``loss_mask``, the tokens that count."""
    cfg, maths = run.cfg, run.maths
    m, max_len = loss_mask[idx], source.max_len
    logp, entropy, hidden = source.logp(b, idx, entropy_grad=cfg.ent_coef > 0)  # (B', n), or (K, B', n)
    logratio = (logp - b.logp_old[idx]) * m
    ratio = logratio.exp()
    adv = advantages[idx]

    per_token = maths.ppo_loss(ratio, adv, run.schedule.clip_coef, run.schedule.clip_coef_high)
    pg_loss, keep = keep_aggregate_average(maths, cfg, per_token, ratio, adv, m, max_len)  # sample dropout, agg
    clip_vloss = cfg.clip_coef if cfg.clip_vloss else None  # never annealed: a value clip of 0 stops the critic
    values = source.policy.value(hidden)
    per_token_vf = maths.value_loss(values, old_values[idx], returns[idx], clip_vloss)
    v_loss = maths.aggregate_loss(per_token_vf, m, cfg.loss_agg, max_len)
    log_ratio_ref = logp - b.ref_logp[idx]
    return sequence_loss(
        maths,
        cfg,
        beta,
        pg_loss,
        keep,
        logratio,
        adv,
        log_ratio_ref,
        entropy,
        m,
        max_len,
        v_loss,
        (values, old_values[idx]),
    )
