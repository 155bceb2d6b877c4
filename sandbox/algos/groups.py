"""Where batches of whole sequences come from, for GRPO and for PPO on the language tasks.

A *group* is G samples that start from the same place and are compared with each other: G completions of one prompt
(:class:`LanguageGroups`, the tiny transformer from its pretrained reference) or G episodes from the same reset seed
(:class:`EpisodeGroups`, the MLP policy on a Gymnasium task). Both sample ``prompts_per_update`` groups per batch in
the dropout mode's rollout setting, evaluate the frozen reference on them, and give the update the log-probs of any
subset of the batch's sequences (:meth:`logp`), with the stored dropout masks in consistent mode.

Both batches are ``(B, n)`` per step or token, zero-padded after each sequence's end, with ``token_mask`` marking the
sequence's own positions and ``n`` at most :attr:`max_len` (the constant Dr. GRPO's aggregation divides by).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from ..config import Config
from ..envs.gym_tasks import action_clipper, apply_env_params, check_spaces, episode_limit, reward_threshold
from ..envs.lang_tasks import make_task
from ..maths import Maths
from ..models.gpt import TinyGPT
from ..models.mlp import Agent
from ..models.spec import gpt_network, gym_network
from ..runs.pretrain import PretrainConfig, evaluate_reference, load_reference
from ..runs.reference import gym_reference, lang_reference
from .lang_rollout import LangBatch, sample_groups, sequence_logp


class _Groups:
    """What both sources share: the random stream that draws prompts (reset seeds), saved with checkpoints."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class LanguageGroups(_Groups):
    """G completions per prompt from the tiny transformer, which starts from the task's pretrained reference (or
    ``--ref``'s weights with ``--init-from-ref``). PPO on the language tasks gives the policy a value head (starting
    at zero)."""

    def __init__(self, cfg: Config, maths: Maths, with_value_head: bool = False):
        super().__init__(cfg)
        self.task = make_task(cfg.task_name, sparse=cfg.sparse, partial_credit=cfg.partial_credit)
        pretrained, ref_stats = load_reference(self.task, PretrainConfig(steps=cfg.sft_steps), progress=not cfg.quiet)
        self.reference, ref_path = pretrained, ref_stats["cached"]
        if cfg.ref is not None:  # another run's policy as the reference (and, with init_from_ref, the start)
            self.reference, ref_path = lang_reference(cfg, pretrained.cfg)
            with torch.random.fork_rng(devices=[]):
                ref_stats = evaluate_reference(self.reference, self.task)
        self.reference.requires_grad_(False)
        start = self.reference if cfg.init_from_ref else pretrained
        self.policy = TinyGPT(  # the start's weights; the dropout layers draw and apply masks through the seam
            start.cfg,
            with_value_head,
            maths,
            cfg.dropout_samples,
            cfg.multi_sample_average,
            start_from=start,
            dropout=cfg.effective_dropout,
        )
        self.threshold = self.task.threshold
        self.max_len = self.task.max_new_tokens
        self.network_spec = gpt_network(cfg, self.policy)
        self.summary_extra = {"reference_reward": ref_stats["reference_reward"], "reference_path": ref_path}

    def sample(self) -> LangBatch:
        """``prompts_per_update`` prompts, ``group_size`` completions each, scored, with the reference's log-probs."""
        cfg = self.cfg
        return sample_groups(
            self.policy,
            self.reference,
            self.task,
            self.rng,
            cfg.prompts_per_update,
            cfg.group_size,
            cfg.temperature,
            cfg.mode,
        )

    def logp(self, b: LangBatch, idx: Tensor | slice, entropy_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``(logp, entropy, hidden)`` of the completions ``idx``: ``(len(idx), n)`` (``(K, len(idx), n)`` with
        multi-sample dropout), and the final hidden states ``(len(idx), n, d)`` for a value head."""
        masks = b.dropout_masks.index(idx) if b.dropout_masks is not None else None
        return sequence_logp(
            self.policy,
            b.tokens[idx],
            self.task.prompt_len,
            self.cfg.temperature,
            masks,
            entropy_grad,
            all_samples=True,
        )

    def close(self) -> None:
        pass


@dataclasses.dataclass
class EpisodeBatch:
    """``B`` episodes of up to ``n`` steps, ``(B, n, ...)``, zero-padded after each episode's end."""

    obs: Tensor
    actions: Tensor
    logp_old: Tensor
    ref_logp: Tensor
    token_mask: Tensor
    """(B, n) bool: the steps of each episode (a step is GRPO's token here)."""
    truncated: Tensor
    rewards: Tensor
    lengths: Tensor
    dropout_masks: Tensor | None


class EpisodeGroups(_Groups):
    """G episodes from the same reset seed, for every one of ``prompts_per_update`` seeds: the Gym version of "G
    completions of one prompt". The policy is the MLP actor; the reference is ``--ref``, else a frozen copy of its
    initial state."""

    def __init__(self, cfg: Config, maths: Maths):
        super().__init__(cfg)
        E = cfg.prompts_per_update * cfg.group_size
        self.envs = gym.make_vec(cfg.env, num_envs=E, vectorization_mode="sync")  # sync: one seed per env
        space = self.envs.single_action_space
        check_spaces(cfg.env, self.envs.single_observation_space, space)
        apply_env_params(self.envs, cfg.env, cfg.env_params)
        obs_dim = self.envs.single_observation_space.shape[0]
        self.policy = Agent(
            obs_dim,
            space,
            cfg.hidden_sizes,
            cfg.effective_dropout,
            False,
            cfg.ortho_init,
            maths,
            with_critic=False,
            dropout_samples=cfg.dropout_samples,
            multi_sample_average=cfg.multi_sample_average,
        )
        self.reference, ref_path = gym_reference(cfg, self.policy)  # --ref, else the initial policy
        self.network_spec = gym_network(cfg, obs_dim, space, with_critic=False)
        self.clip_action = action_clipper(space)
        self.store_masks = cfg.mode.store_masks and cfg.effective_dropout > 0
        self.threshold = reward_threshold(cfg.env)
        self.max_len = episode_limit(cfg.env)
        self.summary_extra = {"reference_path": ref_path}

    @torch.no_grad()
    def sample(self) -> EpisodeBatch:
        """``group_size`` episodes from each of ``prompts_per_update`` reset seeds, with the reference's log-probs."""
        cfg, E = self.cfg, self.envs.num_envs
        seeds = [int(s) for s in self.rng.integers(0, 2**31 - 1, cfg.prompts_per_update) for _ in range(cfg.group_size)]
        obs, _ = self.envs.reset(seed=seeds)
        self.policy.train(cfg.mode.rollout_train)
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
            token_mask=mask,
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

    def logp(self, b: EpisodeBatch, idx: Tensor | slice, entropy_grad: bool) -> tuple[Tensor, Tensor, None]:
        """Log-probs and entropies of the steps of episodes ``idx``, ``(len(idx), n)``, zero after each end."""
        valid = b.token_mask[idx].bool()
        masks = b.dropout_masks[idx][valid] if b.dropout_masks is not None else None
        lp, ent, _ = self.policy.evaluate(b.obs[idx][valid], b.actions[idx][valid], masks, entropy_grad)
        shape = (*lp.shape[:-1], *valid.shape)  # (len(idx), n), or (K, len(idx), n) with multi-sample dropout
        where = valid.expand(shape)
        return torch.zeros(shape).masked_scatter(where, lp), torch.zeros(shape).masked_scatter(where, ent), None

    def close(self) -> None:
        self.envs.close()
