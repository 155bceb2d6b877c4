"""GRPO (Shao et al. 2024): group-relative advantages, no value function, KL to a frozen reference.

Read ``train_grpo`` from top to bottom: sample a batch of groups (G completions of the same prompt on the language
tasks, G episodes from the same reset seed on Gym), turn each group's rewards into advantages, run the clipped
per-token surrogate (plus beta times a KL estimate) for ``mu`` passes, adapt beta, log one row. The two sources of
groups differ only in how they sample and how they compute log-probs (``LanguageGroups``, ``EpisodeGroups``).

Dropout modes are those of PPO (see ``sandbox/ppo.py``): the sampling forward runs in eval mode for ``off`` and
``rollout-eval``, in train mode for ``naive`` and ``consistent`` (with stored masks, reused in the update).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import gymnasium as gym
import numpy as np
import torch

from . import checkpoint as ckpt
from .config import Config
from .diagnostics import Seen, gradient_noise, update_metrics
from .envs import apply_env_params, check_spaces, reward_threshold
from .maths import Maths, kl_k3
from .nets import Agent, FlatParams
from .ppo import NonFiniteLossError, _action_clipper
from .runlog import BatchRunState, Clock, RunLog, RunResult, progress_bar
from .surrogate import aggregate, policy_surrogate, valid_samples


def train_grpo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    source = LanguageGroups(cfg, maths) if cfg.is_lang else EpisodeGroups(cfg, maths)
    params = FlatParams(source.policy)
    optimizer = torch.optim.Adam([params.flat], lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
    G = cfg.group_size
    beta = cfg.beta
    kl_term = maths.kl(cfg.kl_estimator)

    clock = Clock()
    state = BatchRunState()
    if resume is not None:  # continue exactly where the checkpoint left off
        beta, clock = ckpt.restore_batch_run(resume, source, optimizer, state, rng)
    bar = progress_bar(cfg.total_steps, cfg.quiet, f"grpo {cfg.env}")
    bar.update(state.env_steps)
    status, message = "ok", "finished the step budget"
    try:
        while state.env_steps < cfg.total_steps:
            update = state.updates + 1
            frac = 1.0 - state.env_steps / cfg.total_steps
            lr = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
            clip_coef = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
            clip_high = (
                None
                if cfg.clip_coef_high is None
                else (cfg.clip_coef_high * frac if cfg.anneal_clip else cfg.clip_coef_high)
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            source.set_dropout(
                maths.dropout_schedule(cfg.effective_dropout, update, cfg.dropout_schedule, cfg.dropout_cutoff)
            )

            # 1. Sample prompts_per_update groups of G, in the dropout mode's rollout setting.
            batch = source.sample(rng)
            steps = int(batch.lengths.sum())
            state.env_steps += steps
            bar.update(steps)

            # 2. Rewards -> group advantages. With the KL in the reward, each sequence pays beta * its summed k1.
            log_ratio_ref = (batch.logp_old - batch.ref_logp) * batch.mask
            seq_kl = log_ratio_ref.sum(dim=1)  # the measured kl_ref and the adaptive rule: reference k1
            rewards = batch.rewards
            if cfg.kl_in == "reward":
                rewards = rewards - beta * (maths.kl_k1(log_ratio_ref) * batch.mask).sum(dim=1)
            advantages = maths.group_advantages(rewards.view(-1, G), cfg.scale_rewards).flatten()  # (B,)
            task_rewards = batch.rewards.view(-1, G)  # "no signal" is about the task's rewards, not the KL shaping
            all_equal = task_rewards.max(dim=1).values == task_rewards.min(dim=1).values
            token_mask = batch.mask.clone()
            if cfg.mask_truncated:
                token_mask &= ~batch.truncated[:, None]
            if cfg.drop_equal_groups:
                token_mask &= ~all_equal.repeat_interleave(G)[:, None]

            # 3. Update: mu passes of clipped per-token surrogate (+ beta * KL in the loss).
            source.policy.train(cfg.dropout_mode != "off")
            stats = _grpo_update(
                source,
                batch,
                advantages,
                token_mask,
                cfg,
                maths,
                params,
                optimizer,
                clip_coef,
                clip_high,
                beta if cfg.kl_in == "loss" else 0.0,
                kl_term,
                update,
            )

            # 4. Adaptive beta (Ziegler et al.): steer the per-sequence KL towards kl_target.
            beta_used = beta
            kl_ref = float(seq_kl.mean())
            if cfg.kl_target is not None:
                beta = maths.adaptive_beta(beta, kl_ref, cfg.kl_target, cfg.kl_horizon, len(rewards))

            # 5. Log: episodes (completions) and one row of metrics.
            wall = clock()
            state.updates = update
            state.record(log, batch.rewards.tolist(), batch.lengths.tolist(), wall)
            reward_mean = state.final_reward
            # language tasks: the batch's mean reward; Gym: the mean return of the last 20 episodes
            solved_by = reward_mean if cfg.is_lang else state.recent(20)
            log.update(
                {
                    "update": update,
                    "env_steps": state.env_steps,
                    "wall_s": wall,
                    "sps": state.env_steps / max(wall, 1e-9),
                    "ep_return_mean": solved_by,
                    "ep_len_mean": float(batch.lengths.float().mean()),
                    "episodes": len(state.returns),
                    **stats,
                    "lr": lr,
                    "clip_coef": clip_coef,
                    "dropout_p": source.dropout_p,
                    "reward_mean": reward_mean,
                    "reward_std": float(batch.rewards.std()),
                    "kl_ref": kl_ref,
                    "beta": beta_used,
                    "zero_std_frac": float(all_equal.float().mean()),
                    "completion_len": float(batch.lengths.float().mean()),
                }
            )
            bar.set_postfix(
                reward=f"{reward_mean:.3f}",
                kl=f"{kl_ref:.3f}",
                sps=f"{state.env_steps / max(wall, 1e-9):.0f}",
                refresh=False,
            )
            if (cfg.is_lang or len(state.returns) >= 20) and state.check_solved(solved_by, source.threshold, wall):
                if cfg.stop_at_threshold:
                    message = "reached the reward threshold (--stop-at-threshold)"
                    break
            if cfg.save_every and update % cfg.save_every == 0:
                log.save_checkpoint(
                    update,
                    ckpt.blob(
                        "checkpoint",
                        cfg,
                        source.network,
                        source.policy,
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
        source.close()
        if status != "interrupted":
            log.save_policy(ckpt.blob("policy", cfg, source.network, source.policy, state.updates, state.env_steps))
        result = log.finish(
            state.summary(status, message, source.threshold, clock(), **source.summary_extra),
            write_summary=status != "interrupted",
        )
    return result


def _grpo_update(
    source,
    b,
    advantages: torch.Tensor,
    token_mask: torch.Tensor,
    cfg: Config,
    maths: Maths,
    params: FlatParams,
    optimizer,
    clip_coef: float,
    clip_high: float | None,
    beta: float,
    kl_term,
    update: int,
) -> dict[str, float]:
    """``mu`` passes over the batch's sequences, ``num_minibatches`` gradient steps each."""
    B, n = b.mask.shape
    seen: list[Seen] = []
    num_minibatches = min(cfg.num_minibatches, B)
    nan = {"value_loss": math.nan}
    if not bool(token_mask.any()):  # every sequence was left out (equal groups, truncation): nothing to learn
        return update_metrics(seen, clip_coef, 0) | nan

    def policy_terms(idx: torch.Tensor):
        """The minibatch's per-token log-ratios (one row per dropout copy), surrogate loss and keep-mask."""
        m = token_mask[idx]
        logp, entropy = source.logp(b, idx, with_entropy_grad=cfg.ent_coef > 0)
        logratio = (logp - b.logp_old[idx]) * m
        adv = advantages[idx, None].expand(len(idx), n)
        pg_loss, keep = policy_surrogate(maths, cfg, logratio.exp(), adv, clip_coef, clip_high, m, n)
        return m, logp, entropy, logratio, adv, pg_loss, keep

    grad_noise = {}
    if cfg.grad_diag_every and update % cfg.grad_diag_every == 0:
        grad_noise = gradient_noise(
            lambda idx: policy_terms(idx)[5],
            B,
            max(num_minibatches, 4),
            [q for q in source.policy.parameters() if q.requires_grad],
        )
    passes_done = 0
    for mu_pass in range(cfg.mu):
        splits = [torch.arange(B)] if num_minibatches == 1 else torch.tensor_split(torch.randperm(B), num_minibatches)
        for idx in splits:
            m, logp, entropy, logratio, adv, pg_loss, keep = policy_terms(idx)
            if not bool(m.any()):
                continue
            loss = pg_loss
            if beta > 0:  # masked before the estimator: k3 of a padding position's log-ratio can overflow
                loss = loss + beta * aggregate(maths, cfg, kl_term((logp - b.ref_logp[idx]) * m), m, n)
            if cfg.ent_coef > 0:
                loss = loss - cfg.ent_coef * aggregate(maths, cfg, entropy, m, n)
            valid = m.bool()
            lr_valid = valid_samples(logratio.detach(), valid)
            adv_valid = valid_samples(adv.expand_as(logratio), valid)
            ent = valid_samples(entropy.detach(), valid).mean()
            seen.append(
                Seen(
                    lr_valid,
                    adv_valid,
                    (ent, pg_loss.detach(), torch.tensor(math.nan)),
                    keep=valid_samples(keep, valid),
                )
            )
            if cfg.target_kl is not None and kl_k3(-lr_valid).mean().item() > cfg.target_kl:
                return update_metrics(seen, clip_coef, passes_done, clip_high) | nan | grad_noise
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(
                    f"non-finite loss at update {update}, pass {mu_pass + 1}: policy_loss={pg_loss.item()}"
                )
            params.zero_grad()
            loss.backward()
            seen[-1].grad_norm = params.clip_grad_norm_(cfg.max_grad_norm)
            optimizer.step()
        passes_done += 1
    return update_metrics(seen, clip_coef, passes_done, clip_high) | nan | grad_noise


# --- where groups come from ------------------------------------------------------------------------------------


class LanguageGroups:
    """G completions per prompt from the tiny transformer, which starts from the task's pretrained reference.
    (PPO on the language tasks samples the same way, with a value head on the policy.)"""

    def __init__(self, cfg: Config, maths: Maths, with_value_head: bool = False):
        from .lang.pretrain import PretrainConfig, evaluate_reference, load_reference
        from .lang.tasks import make_task

        self.cfg = cfg
        self.task = make_task(cfg.task_name, sparse=cfg.sparse, partial_credit=cfg.partial_credit)
        pretrained, ref_stats = load_reference(self.task, PretrainConfig(steps=cfg.sft_steps), progress=not cfg.quiet)
        self.reference, ref_path = pretrained, ref_stats["cached"]
        if cfg.ref is not None:  # another run's policy as the reference (and, with init_from_ref, the start)
            self.reference, ref_path = ckpt.lang_reference(cfg, pretrained.cfg)
            with torch.random.fork_rng(devices=[]):
                ref_stats = evaluate_reference(self.reference, self.task)
        self.reference.requires_grad_(False)
        self.policy = copy.deepcopy(self.reference if cfg.init_from_ref else pretrained)
        self.policy.requires_grad_(True)
        if with_value_head:
            self.policy.value_head = torch.nn.Linear(self.policy.cfg.d_model, 1)
            torch.nn.init.zeros_(self.policy.value_head.weight)
            torch.nn.init.zeros_(self.policy.value_head.bias)
        self.policy.set_dropout(cfg.effective_dropout)
        self.policy.mask_fn = maths.dropout_mask
        self.policy.samples, self.policy.average = cfg.dropout_samples, cfg.multi_sample_average
        self.dropout_p = cfg.effective_dropout
        self.threshold = self.task.threshold
        self.network = ckpt.gpt_network(cfg, self.policy)
        self.summary_extra = {"reference_reward": ref_stats["reference_reward"], "reference_path": ref_path}

    def set_dropout(self, p: float) -> None:
        self.policy.set_dropout(p)
        self.dropout_p = p

    def sample(self, rng: np.random.Generator):
        from .lang.rollout import sample_groups

        return sample_groups(
            self.policy,
            self.reference,
            self.task,
            rng,
            self.cfg.prompts_per_update,
            self.cfg.group_size,
            self.cfg.temperature,
            self.cfg.dropout_mode,
        )

    def logp(self, b, idx: torch.Tensor, with_entropy_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from .lang.rollout import sequence_logp

        masks = b.masks.index(idx) if b.masks is not None else None
        logp, entropy, _ = sequence_logp(
            self.policy,
            b.tokens[idx],
            self.task.prompt_len,
            self.cfg.temperature,
            masks,
            with_entropy_grad,
            all_samples=True,
        )
        return logp, entropy

    def close(self) -> None:
        pass


@dataclasses.dataclass
class EpisodeBatch:
    """``B`` episodes of up to ``n`` steps, ``(B, n, ...)``, zero-padded after each episode's end."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    ref_logp: torch.Tensor
    mask: torch.Tensor
    truncated: torch.Tensor
    rewards: torch.Tensor
    lengths: torch.Tensor
    dropout_masks: torch.Tensor | None


class EpisodeGroups:
    """G episodes from the same reset seed, for every one of ``prompts_per_update`` seeds: the Gym version of "G
    completions of one prompt". The policy is the MLP actor; the reference is a frozen copy of its initial state."""

    def __init__(self, cfg: Config, maths: Maths):
        self.cfg = cfg
        E = cfg.prompts_per_update * cfg.group_size
        self.envs = gym.make_vec(cfg.env, num_envs=E, vectorization_mode="sync")  # sync: one seed per env
        check_spaces(cfg.env, self.envs.single_observation_space, self.envs.single_action_space)
        apply_env_params(self.envs, cfg.env, cfg.env_params)
        obs_dim = self.envs.single_observation_space.shape[0]
        self.policy = Agent(
            obs_dim,
            self.envs.single_action_space,
            cfg.hidden_sizes,
            cfg.effective_dropout,
            False,
            cfg.ortho_init,
            maths.dropout_mask,
            with_critic=False,
            dropout_samples=cfg.dropout_samples,
            multi_sample_average=cfg.multi_sample_average,
        )
        self.reference, ref_path = ckpt.gym_reference(cfg, self.policy)  # --ref, else the initial policy
        self.network = ckpt.mlp_network(cfg, obs_dim, self.envs.single_action_space, with_critic=False)
        self.clip_action = _action_clipper(self.envs.single_action_space)
        self.store_masks = cfg.dropout_mode == "consistent" and cfg.effective_dropout > 0
        self.dropout_p = cfg.effective_dropout
        self.threshold = reward_threshold(cfg.env)
        self.summary_extra = {"reference_path": ref_path}

    def set_dropout(self, p: float) -> None:
        self.policy.set_dropout(p)
        self.dropout_p = p

    @torch.no_grad()
    def sample(self, rng: np.random.Generator) -> EpisodeBatch:
        cfg, E = self.cfg, self.envs.num_envs
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, cfg.prompts_per_update) for _ in range(cfg.group_size)]
        obs, _ = self.envs.reset(seed=seeds)
        self.policy.train(cfg.dropout_mode in ("naive", "consistent"))
        alive = np.ones(E, dtype=bool)
        truncated = np.zeros(E, dtype=bool)
        rewards = np.zeros(E)
        trace: list[tuple] = []
        while alive.any():
            o = torch.as_tensor(obs, dtype=torch.float32)
            m = self.policy.sample_mask(E) if self.store_masks else None
            actions, logp = self.policy.act(o, m)
            ref_logp = self.reference.log_prob(o, actions) if cfg.ref_each_step else None  # see Config
            trace.append((o, actions, logp, ref_logp, m, torch.from_numpy(alive.copy())))
            obs, r, term, trunc, _ = self.envs.step(self.clip_action(actions.numpy()))
            rewards += r * alive
            truncated |= alive & trunc & ~term
            alive &= ~(term | trunc)
        obs_t, act_t, logp_t, ref_t, masks_t, alive_t = zip(*trace)
        mask = torch.stack(alive_t, dim=1)  # (E, n): the steps of each first episode
        batch = EpisodeBatch(
            obs=torch.stack(obs_t, dim=1),
            actions=torch.stack(act_t, dim=1),
            logp_old=torch.stack(logp_t, dim=1) * mask,
            mask=mask,
            ref_logp=torch.stack(ref_t, dim=1) * mask if cfg.ref_each_step else torch.zeros(mask.shape),
            truncated=torch.from_numpy(truncated),
            rewards=torch.from_numpy(rewards).float(),
            lengths=mask.sum(dim=1),
            dropout_masks=torch.stack(masks_t, dim=1) if self.store_masks else None,
        )
        if not cfg.ref_each_step:  # kl_ref only measured: one batched forward
            valid = mask.bool()
            batch.ref_logp[valid] = self.reference.log_prob(batch.obs[valid], batch.actions[valid])
        return batch

    def logp(self, b: EpisodeBatch, idx: torch.Tensor, with_entropy_grad: bool):
        """Log-probs and entropies of the steps of episodes ``idx``, ``(len(idx), n)``, zero after each end."""
        valid = b.mask[idx].bool()
        masks = b.dropout_masks[idx][valid] if b.dropout_masks is not None else None
        lp, ent, _ = self.policy.evaluate(b.obs[idx][valid], b.actions[idx][valid], masks, with_entropy_grad)
        shape = (*lp.shape[:-1], *valid.shape)  # (len(idx), n), or (K, len(idx), n) with multi-sample dropout
        where = valid.expand(shape)
        return torch.zeros(shape).masked_scatter(where, lp), torch.zeros(shape).masked_scatter(where, ent)

    def close(self) -> None:
        self.envs.close()
