"""PPO's experience on Gymnasium tasks: the vector environments, the actor-critic agent acting in them, its frozen
reference, and a rollout of ``num_steps`` steps in buffers allocated once (SB3's ``RolloutBuffer`` and
``collect_rollouts`` in one small class).

One :class:`Rollout` per seed; the seeds of a run (``sandbox/algos/population.py``, one or many) take their steps
together: one batched forward per step, every seed's buffers written at once (each seed's are views of one array
with a seed axis in front), and each seed's finished episodes reported to its run.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from ..config import Config
from ..envs.gym_tasks import EpisodeTracker, action_clipper, make_vec_env, reward_threshold
from ..maths import Maths
from ..models.spec import agent_class, gym_network, hidden_sizes
from ..runs.reference import gym_reference
from ..runs.snapshot import env_state, set_env_state


@dataclass
class Batch:
    """The valid transitions of one rollout, flattened to ``(B, ...)``; ``masks`` are consistent dropout's."""

    obs: Tensor
    actions: Tensor
    logp: Tensor
    ref_logp: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    masks: Tensor | None

    FIELDS = ("obs", "actions", "logp", "ref_logp", "values", "advantages", "returns", "masks")

    def __len__(self) -> int:
        return self.obs.shape[0]

    def gather(self, idx: Tensor) -> "Batch":
        """Rows ``idx (K, S)`` of a population's stacked batch ``(K, B, ...)``: ``(K, S, ...)``."""
        members = torch.arange(idx.shape[0])[:, None]
        return Batch(*(None if t is None else t[members, idx] for t in (getattr(self, f) for f in self.FIELDS)))

    def rows(self, idx: Tensor | slice) -> "Batch":
        """Rows ``idx`` of every member of a stacked batch ``(K, B, ...)``: ``(K, S, ...)`` (``slice(None)``: all of
        them, the batch itself)."""
        if isinstance(idx, slice) and idx == slice(None):
            return self
        return Batch(*(None if t is None else t[:, idx] for t in (getattr(self, f) for f in self.FIELDS)))

    def select(self, idx: Tensor | slice) -> "Batch":
        return Batch(
            self.obs[idx],
            self.actions[idx],
            self.logp[idx],
            self.ref_logp[idx],
            self.values[idx],
            self.advantages[idx],
            self.returns[idx],
            self.masks[idx] if self.masks is not None else None,
        )


class Rollout:
    """Where PPO's experience comes from: ``num_envs`` environments (gymnasium's vector API), the actor-critic agent
    acting in them (``policy``) and its frozen ``reference``; ``num_steps`` steps of them, ``(T, N, ...)``, in buffers
    allocated once, and the state that carries over from one rollout to the next (the current observations, episodes
    in flight, the next step's dropout masks).

    The numpy arrays and the torch tensors share memory (``torch.from_numpy``), so the env writes into numpy and
    the update reads torch without copies. ``valid[t, i]`` is False for autoreset steps (see
    ``sandbox/envs/gym_tasks.py``). With ``store_masks`` (consistent dropout) the masks of every step are kept for the
    update.
    """

    def __init__(self, cfg: Config, maths: Maths):
        self.envs, obs = make_vec_env(cfg.env, cfg.num_envs, cfg.seed, cfg.env_params)
        space, obs_shape = self.envs.single_action_space, obs.shape[1:]
        self.policy = agent_class(cfg.network)(  # an MLP agent; MinAtar's convolutional one for a MinAtar game
            obs_shape,
            space,
            hidden_sizes(cfg),
            cfg.effective_dropout,
            cfg.dropout_value,
            cfg.ortho_init,
            maths,
            dropout_samples=cfg.dropout_samples,
            multi_sample_average=cfg.multi_sample_average,
            dropout_policy=cfg.dropout_policy,
        )
        self.reference, ref_path = gym_reference(cfg, self.policy)  # --ref (maybe also the start), else a copy
        self.network_spec = gym_network(cfg, obs_shape, space, with_critic=True)
        self.threshold, self.summary_extra = reward_threshold(cfg.env), {"reference_path": ref_path}
        self.cfg, self.store_masks = cfg, cfg.mode.store_masks and cfg.effective_dropout > 0
        self.clip_action = action_clipper(space)
        T, N, discrete = cfg.num_steps, cfg.num_envs, isinstance(space, gym.spaces.Discrete)
        self.obs_buf = np.zeros((T, N, *obs_shape), np.float32)
        self.actions = torch.zeros((T, N, *(() if discrete else space.shape)), dtype=torch.long if discrete else None)
        self.logp, self.ref_logp = torch.zeros(T, N), torch.zeros(T, N)
        self.rewards_np, self.terminated_np = np.zeros((T, N), np.float32), np.zeros((T, N), np.float32)
        self.dones_np, self.valid = np.zeros((T, N), np.float32), np.zeros((T, N), bool)
        self.masks = torch.zeros(T, N, self.policy.mask_width) if self.store_masks else None
        # what carries over between rollouts
        self.obs, self.prev_done = obs.astype(np.float32, copy=False), np.zeros(N, bool)
        self.episodes = EpisodeTracker(N)
        self.next_mask = self.policy.sample_mask(N) if self.store_masks else None  # consistent: the next step's masks
        self.mask_p = self.policy.dropout_p  # the p next_mask was drawn with
        self.generator: torch.Generator | None = None  # None: torch's global one (a population gives each its own)

    @property
    def rewards(self) -> Tensor:
        return torch.from_numpy(self.rewards_np)

    @property
    def terminated(self) -> Tensor:
        return torch.from_numpy(self.terminated_np)

    @property
    def dones(self) -> Tensor:
        return torch.from_numpy(self.dones_np)

    def refresh_masks(self) -> None:
        """Consistent dropout draws each step's masks one step ahead; a dropout schedule that changed p since then
        means they are drawn again."""
        if self.store_masks and self.mask_p != self.policy.dropout_p:
            self.next_mask = self.policy.sample_mask(self.cfg.num_envs, self.generator)
            self.mask_p = self.policy.dropout_p

    @torch.no_grad()
    def log_ratio_ref(self) -> Tensor:
        """``log pi_old - log pi_ref`` of every step, 0 at autoreset steps (they chose nothing). When kl_ref is only
        measured (not ``ref_each_step``), the reference's log-probs are computed now in one batched forward: equal up
        to rounding, and cheaper than a forward per step."""
        if not self.cfg.ref_each_step:
            obs = torch.from_numpy(self.obs_buf).flatten(0, 1)
            self.ref_logp = self.reference.log_prob(obs, self.actions.flatten(0, 1)).view(self.logp.shape)
        return (self.logp - self.ref_logp) * torch.from_numpy(self.valid)

    def batch(self, values: Tensor, advantages: Tensor, returns: Tensor) -> Batch:
        """The valid transitions (autoreset steps dropped), flattened."""
        idx = torch.from_numpy(np.flatnonzero(self.valid.reshape(-1)))
        return Batch(
            obs=torch.from_numpy(self.obs_buf).flatten(0, 1)[idx],
            actions=self.actions.flatten(0, 1)[idx],
            logp=self.logp.flatten()[idx],
            ref_logp=self.ref_logp.flatten()[idx],
            values=values.flatten()[idx],
            advantages=advantages.flatten()[idx],
            returns=returns.flatten()[idx],
            masks=self.masks.flatten(0, 1)[idx] if self.store_masks else None,
        )

    def close(self) -> None:
        self.envs.close()

    def state_dict(self) -> dict:
        """The environments mid-episode and what carries over to the next rollout, as plain data and tensors."""
        return {
            "envs": env_state(self.envs),
            "obs": torch.from_numpy(self.obs.copy()),
            "prev_done": torch.from_numpy(self.prev_done.copy()),
            "next_mask": self.next_mask,
            "mask_p": self.mask_p,
            "episodes": self.episodes.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        set_env_state(self.envs, state["envs"])
        self.obs[...], self.prev_done[...] = state["obs"].numpy(), state["prev_done"].numpy()  # in place: views
        self.next_mask, self.mask_p = state["next_mask"], state["mask_p"]
        self.episodes.load_state_dict(state["episodes"])
