"""PPO on the language tasks' token-level MDP: the tiny transformer with a value head, GAE with gamma = 1.

The RLHF recipe in miniature (Ziegler et al. 2019, Ouyang et al. 2022): a state is the prompt plus the tokens so far,
an action is the next token, the task's reward arrives with the last token, and the KL to the reference either
enters the loss or is paid per token in the reward (``--kl-in reward``: r_t = -beta * k1_t). Compare with GRPO on
the same task: GRPO needs no value function, PPO needs no groups.

Read ``train_lang_ppo`` from top to bottom: sample completions (as GRPO does), value every state in one forward,
per-token rewards, GAE, ``update_epochs`` of clipped surrogate + value loss, adapt beta, log one row.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import checkpoint as ckpt
from .config import Config
from .diagnostics import Seen, gradient_noise, update_metrics
from .grpo import LanguageGroups
from .maths import Maths, explained_variance, kl_k3
from .nets import FlatParams
from .ppo import NonFiniteLossError
from .runlog import BatchRunState, Clock, RunLog, RunResult, progress_bar
from .surrogate import aggregate, policy_surrogate, valid_samples


def train_lang_ppo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    from .lang.rollout import sequence_logp

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    source = LanguageGroups(cfg, maths, with_value_head=True)
    policy, P = source.policy, source.task.prompt_len
    params = FlatParams(policy)
    optimizer = torch.optim.Adam([params.flat], lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
    beta = cfg.beta
    kl_term = maths.kl(cfg.kl_estimator)

    clock = Clock()
    state = BatchRunState()
    if resume is not None:  # continue exactly where the checkpoint left off
        beta, clock = ckpt.restore_batch_run(resume, source, optimizer, state, rng)
    bar = progress_bar(cfg.total_steps, cfg.quiet, f"ppo {cfg.env}")
    bar.update(state.env_steps)
    status, message = "ok", "finished the step budget"
    try:
        while state.env_steps < cfg.total_steps:
            update = state.updates + 1
            frac = 1.0 - state.env_steps / cfg.total_steps
            lr = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
            clip_coef = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
            for group in optimizer.param_groups:
                group["lr"] = lr
            source.set_dropout(
                maths.dropout_schedule(cfg.effective_dropout, update, cfg.dropout_schedule, cfg.dropout_cutoff)
            )

            # 1. Sample completions; value every state in one forward, in the rollout's dropout setting.
            b = source.sample(rng)
            steps = int(b.lengths.sum())
            state.env_steps += steps
            bar.update(steps)
            with torch.no_grad():
                _, _, hidden = sequence_logp(policy, b.tokens, P, cfg.temperature, b.masks)
                values = policy.value(hidden) * b.mask

            # 2. Per-token rewards: the task's reward on the last token, and -beta * k1 per token if in the reward.
            log_ratio_ref = (b.logp_old - b.ref_logp) * b.mask
            last = (b.lengths - 1).clamp(min=0)
            rewards = torch.zeros_like(values)
            rewards[torch.arange(len(last)), last] = b.rewards
            if cfg.kl_in == "reward":
                rewards = rewards - beta * maths.kl_k1(log_ratio_ref) * b.mask
            ends = torch.zeros_like(values)
            ends[torch.arange(len(last)), last] = 1.0  # the episode ends at the last token (gamma = 1 by default)

            # 3. GAE along each completion: maths.gae wants (T, N), time first.
            next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
            adv_t, ret_t = maths.gae(rewards.T, values.T, next_values.T, ends.T, ends.T, cfg.gamma, cfg.gae_lambda)
            advantages, returns = adv_t.T, ret_t.T
            token_mask = b.mask & ~b.truncated[:, None] if cfg.mask_truncated else b.mask
            if cfg.norm_adv:
                valid = advantages[token_mask]
                advantages = (advantages - valid.mean()) / (valid.std() + 1e-8)

            # 4. Update: every mode but off runs the update forward in train mode.
            policy.train(cfg.dropout_mode != "off")
            stats = _update(
                source,
                b,
                advantages,
                returns,
                values,
                token_mask,
                cfg,
                maths,
                params,
                optimizer,
                clip_coef,
                beta if cfg.kl_in == "loss" else 0.0,
                kl_term,
                update,
            )

            # 5. Adaptive beta, then log.
            beta_used, kl_ref = beta, float(log_ratio_ref.sum(dim=1).mean())  # reference k1, as GRPO logs it
            if cfg.kl_target is not None:
                beta = maths.adaptive_beta(beta, kl_ref, cfg.kl_target, cfg.kl_horizon, len(b.rewards))
            wall = clock()
            state.updates = update
            state.record(log, b.rewards.tolist(), b.lengths.tolist(), wall)
            valid = b.mask.bool()
            log.update(
                {
                    "update": update,
                    "env_steps": state.env_steps,
                    "wall_s": wall,
                    "sps": state.env_steps / max(wall, 1e-9),
                    "ep_return_mean": state.final_reward,
                    "ep_len_mean": float(b.lengths.float().mean()),
                    "episodes": len(state.returns),
                    **stats,
                    "explained_var": explained_variance(values[valid], returns[valid]),
                    "lr": lr,
                    "clip_coef": clip_coef,
                    "dropout_p": source.dropout_p,
                    "reward_mean": state.final_reward,
                    "reward_std": float(b.rewards.std()),
                    "kl_ref": kl_ref,
                    "beta": beta_used,
                    "completion_len": float(b.lengths.float().mean()),
                }
            )
            bar.set_postfix(reward=f"{state.final_reward:.3f}", kl=f"{kl_ref:.3f}", refresh=False)
            if state.check_solved(state.final_reward, source.threshold, wall) and cfg.stop_at_threshold:
                message = "reached the reward threshold (--stop-at-threshold)"
                break
            if cfg.save_every and update % cfg.save_every == 0:
                log.save_checkpoint(
                    update,
                    ckpt.blob(
                        "checkpoint",
                        cfg,
                        source.network,
                        policy,
                        update,
                        state.env_steps,
                        ckpt.batch_run_state(optimizer, rng, state, source, beta, clock),
                    ),
                )
    except NonFiniteLossError as err:
        status, message = "non-finite-loss", str(err)
        raise
    except BaseException:
        status = "interrupted"  # no summary.json: the run did not finish
        raise
    finally:
        bar.close()
        if status != "interrupted":
            log.save_policy(ckpt.blob("policy", cfg, source.network, policy, state.updates, state.env_steps))
        result = log.finish(
            state.summary(status, message, source.threshold, clock(), **source.summary_extra),
            write_summary=status != "interrupted",
        )
    return result


def _update(
    source: LanguageGroups,
    b,
    advantages,
    returns,
    old_values,
    token_mask,
    cfg: Config,
    maths: Maths,
    params: FlatParams,
    optimizer,
    clip_coef: float,
    beta: float,
    kl_term,
    update: int,
) -> dict:
    """``update_epochs`` passes, ``num_minibatches`` gradient steps each, over the batch's sequences."""
    from .lang.rollout import sequence_logp

    policy, P, n = source.policy, source.task.prompt_len, b.mask.shape[1]
    B = len(b.rewards)
    seen: list[Seen] = []
    num_minibatches = min(cfg.num_minibatches, B)
    clip_vloss = cfg.clip_coef if cfg.clip_vloss else None

    def policy_terms(idx: torch.Tensor):
        m = token_mask[idx]
        masks = b.masks.index(idx) if b.masks is not None else None
        logp, entropy, hidden = sequence_logp(
            policy, b.tokens[idx], P, cfg.temperature, masks, entropy_grad=cfg.ent_coef > 0, all_samples=True
        )
        logratio = (logp - b.logp_old[idx]) * m
        adv = advantages[idx]
        pg_loss, keep = policy_surrogate(maths, cfg, logratio.exp(), adv, clip_coef, cfg.clip_coef_high, m, n)
        return m, logp, entropy, hidden, logratio, adv, pg_loss, keep

    grad_noise = {}
    if cfg.grad_diag_every and update % cfg.grad_diag_every == 0:
        params_policy = [q for name, q in policy.named_parameters() if not name.startswith("value_head")]
        grad_noise = gradient_noise(lambda idx: policy_terms(idx)[6], B, max(num_minibatches, 4), params_policy)
    epochs_done = 0
    for epoch in range(cfg.update_epochs):
        splits = [torch.arange(B)] if num_minibatches == 1 else torch.tensor_split(torch.randperm(B), num_minibatches)
        for idx in splits:
            m, logp, entropy, hidden, logratio, adv, pg_loss, keep = policy_terms(idx)
            if not bool(m.any()):
                continue
            v_loss = maths.aggregate_loss(
                maths.value_loss(policy.value(hidden), old_values[idx], returns[idx], clip_vloss), m, cfg.loss_agg, n
            )
            loss = pg_loss + cfg.vf_coef * v_loss
            if beta > 0:  # masked before the estimator: k3 of a padding position's log-ratio can overflow
                loss = loss + beta * aggregate(maths, cfg, kl_term((logp - b.ref_logp[idx]) * m), m, n)
            if cfg.ent_coef > 0:
                loss = loss - cfg.ent_coef * aggregate(maths, cfg, entropy, m, n)
            valid = m.bool()
            lr_valid = valid_samples(logratio.detach(), valid)
            seen.append(
                Seen(
                    lr_valid,
                    valid_samples(adv.expand_as(logratio), valid),
                    (valid_samples(entropy.detach(), valid).mean(), pg_loss.detach(), v_loss.detach()),
                    keep=valid_samples(keep, valid),
                )
            )
            if cfg.target_kl is not None and kl_k3(-lr_valid).mean().item() > cfg.target_kl:
                return update_metrics(seen, clip_coef, epochs_done, cfg.clip_coef_high) | grad_noise
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(
                    f"non-finite loss at update {update}, epoch {epoch + 1}: "
                    f"policy_loss={pg_loss.item()}, value_loss={v_loss.item()}"
                )
            params.zero_grad()
            loss.backward()
            seen[-1].grad_norm = params.clip_grad_norm_(cfg.max_grad_norm)
            optimizer.step()
        epochs_done += 1
    return update_metrics(seen, clip_coef, epochs_done, cfg.clip_coef_high) | grad_noise
