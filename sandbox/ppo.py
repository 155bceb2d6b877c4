"""PPO (Schulman et al. 2017) on Gymnasium tasks, with the usual implementation details and four ways of handling
dropout (``sandbox/dropout_modes.py``).

Read ``train_ppo`` from top to bottom: collect a rollout, compute advantages, run the clipped-surrogate update, log
one row of metrics. The objective, minimised over minibatches of the rollout's valid transitions for
``update_epochs`` epochs (each term tagged with the ``maths`` function that computes it)::

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
loss of K dropout copies (``sandbox/objective.py``). The reference ``pi_ref`` is ``--ref``'s policy, else the
initial policy, frozen: ``kl_ref`` measures how far the policy has moved from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from .config import Config
from .diagnostics import Seen
from .envs import EpisodeTracker, action_clipper, make_vec_env, reward_threshold
from .learner import Learner, MinibatchLoss
from .maths import Maths, explained_variance, normalize_advantages
from .nets import Agent
from .network_spec import mlp_network
from .objective import Beta, sample_dropout_mean
from .reference import gym_reference
from .run import Run
from .rundir import RunLog, RunResult
from .snapshot import env_state, set_env_state


def train_ppo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    """PPO on ``cfg.env``: the objective of the module docstring, through the ``maths`` seam."""
    mode = cfg.mode  # the dropout mode: what the rollout and the update do with the dropout layers
    rollout = Rollout(cfg, maths)  # the vector envs, the actor-critic agent and its frozen reference
    agent = rollout.policy
    learner, beta = Learner(agent, cfg, policy_params=agent.actor.parameters()), Beta(cfg, maths)
    budget = cfg.num_updates * cfg.batch_size
    with Run(cfg, log, maths, learner, rollout, budget=budget, components={"beta": beta}, resume=resume) as run:
        for update in run.updates():
            # 1. Rollout: num_steps steps of every env, with the policy in the mode's rollout setting.
            agent.train(mode.rollout_train)
            if rollout.collect(run):
                break  # solved, with --stop-at-threshold

            # 2. Advantages. The critic values every visited state in one forward (the rollout's dropout setting, its
            #    stored masks); with the KL in the reward, each step first pays beta * k1(log pi_old - log pi_ref).
            values, next_values = rollout.values()
            log_ratio_ref = rollout.log_ratio_ref()  # (T, N)
            rewards = rollout.rewards
            if beta.in_reward > 0:
                rewards = rewards - beta.in_reward * maths.kl_k1(log_ratio_ref)
            advantages, returns = maths.gae(
                rewards, values, next_values, rollout.terminated, rollout.dones, cfg.gamma, cfg.gae_lambda
            )
            batch = rollout.batch(values, advantages, returns)  # the valid transitions, flattened: (B, ...)

            # 3. Update: update_epochs epochs of minibatch steps on the objective, in the mode's update setting.
            agent.train(mode.update_train)
            if cfg.norm_adv and min(cfg.num_minibatches, len(batch)) == 1:  # one minibatch: normalise once
                batch.advantages = normalize_advantages(batch.advantages)
            stats = learner.optimise(
                partial(ppo_objective, agent, batch, run, beta), len(batch), cfg.update_epochs, run
            )

            # 4. Log one row: the update's metrics, and the KL of the behaviour policy to the reference (k1 per step).
            kl_ref = float(log_ratio_ref.sum() / len(batch)) if len(batch) else math.nan
            run.log(
                {
                    "ep_return_mean": run.recent_return(20),
                    "ep_len_mean": run.recent_length(20),
                    **stats,
                    "explained_var": explained_variance(batch.values, batch.returns),
                    "kl_ref": kl_ref,
                    "beta": beta.value,
                }
            )
            beta.adapt(kl_ref, len(batch))
    return run.result


def ppo_objective(agent: Agent, batch: "Batch", run: Run, beta: Beta, idx: Tensor | slice) -> MinibatchLoss:
    """The objective on the minibatch ``idx`` of ``batch`` (``slice(None)``: the whole batch, whose advantages the
    trainer normalised once)."""
    cfg, maths = run.cfg, run.maths
    mb = batch.select(idx)
    logp, entropy, values = agent.evaluate(mb.obs, mb.actions, mb.masks, with_entropy=cfg.ent_coef > 0)
    logratio = logp - mb.logp  # (B,), or (K, B): one row per dropout copy with multi-sample dropout
    ratio = logratio.exp()
    adv = normalize_advantages(mb.advantages) if cfg.norm_adv and not isinstance(idx, slice) else mb.advantages

    per_sample = maths.ppo_loss(ratio, adv, run.clip_coef, run.clip_coef_high)  # L_clip, per sample and copy
    pg_loss, keep = sample_dropout_mean(maths, cfg, per_sample, ratio, adv)  # variants: sample / multi-sample
    v_loss = maths.value_loss(values, mb.values, mb.returns, cfg.clip_coef if cfg.clip_vloss else None).mean()
    ent = entropy.mean()
    loss = pg_loss + cfg.vf_coef * v_loss
    if beta.in_loss > 0:  # KL to the reference in the loss, per sample (and per dropout copy), averaged
        loss = loss + beta.in_loss * beta.estimator(logp - mb.ref_logp).mean()
    if cfg.ent_coef > 0:
        loss = loss - cfg.ent_coef * ent
    seen = Seen(
        logratio.detach().reshape(-1),
        adv.expand_as(logratio).reshape(-1),
        ent.detach(),
        pg_loss.detach(),
        v_loss.detach(),
        keep=keep.reshape(-1),
    )
    return MinibatchLoss(loss, pg_loss, seen)


# --- the rollout -------------------------------------------------------------------------------------------------


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

    def __len__(self) -> int:
        return self.obs.shape[0]

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
    the update reads torch without copies. ``valid[t, i]`` is False for autoreset steps (see ``sandbox/envs.py``).
    With ``store_masks`` (consistent dropout) the masks of every step are kept for the update.
    """

    def __init__(self, cfg: Config, maths: Maths):
        self.envs, obs = make_vec_env(cfg.env, cfg.num_envs, cfg.seed, cfg.env_params)
        space = self.envs.single_action_space
        self.policy = Agent(
            obs.shape[1],
            space,
            cfg.hidden_sizes,
            cfg.effective_dropout,
            cfg.dropout_value,
            cfg.ortho_init,
            maths,
            dropout_samples=cfg.dropout_samples,
            multi_sample_average=cfg.multi_sample_average,
        )
        self.reference, ref_path = gym_reference(cfg, self.policy)  # --ref (maybe also the start), else a copy
        self.network = mlp_network(cfg, obs.shape[1], space, with_critic=True)
        self.threshold, self.summary_extra = reward_threshold(cfg.env), {"reference_path": ref_path}
        self.cfg, self.store_masks = cfg, cfg.mode.store_masks and cfg.effective_dropout > 0
        self.clip_action = action_clipper(space)
        T, N, discrete = cfg.num_steps, cfg.num_envs, isinstance(space, gym.spaces.Discrete)
        self.obs_buf = np.zeros((T, N, obs.shape[1]), np.float32)
        self.actions = torch.zeros((T, N, *(() if discrete else space.shape)), dtype=torch.long if discrete else None)
        self.logp, self.ref_logp = torch.zeros(T, N), torch.zeros(T, N)
        self.rewards_np, self.terminated_np = np.zeros((T, N), np.float32), np.zeros((T, N), np.float32)
        self.dones_np, self.valid = np.zeros((T, N), np.float32), np.zeros((T, N), bool)
        self.masks = torch.zeros(T, N, self.policy.mask_width) if self.store_masks else None
        # what carries over between rollouts
        self.obs, self.prev_done = obs, np.zeros(N, bool)
        self.episodes = EpisodeTracker(N)
        self.next_mask = self.policy.sample_mask(N) if self.store_masks else None  # consistent: the next step's masks
        self.mask_p = self.policy.dropout_p  # the p next_mask was drawn with

    @property
    def rewards(self) -> Tensor:
        return torch.from_numpy(self.rewards_np)

    @property
    def terminated(self) -> Tensor:
        return torch.from_numpy(self.terminated_np)

    @property
    def dones(self) -> Tensor:
        return torch.from_numpy(self.dones_np)

    @torch.no_grad()
    def collect(self, run: Run) -> bool:
        """Fill the buffers with ``num_steps`` vector steps; True when the run should stop (solved, with
        ``stop_at_threshold``). The log-prob stored for each action comes from the forward pass that chose it; with
        ``ref_each_step``, the reference's too, from the same batch shape, so that equal networks give equal bits."""
        agent, reference, N = self.policy, self.reference, self.cfg.num_envs
        if self.store_masks and self.mask_p != agent.dropout_p:  # a dropout schedule changed p: redraw
            self.next_mask, self.mask_p = agent.sample_mask(N), agent.dropout_p
        for t in range(self.cfg.num_steps):
            obs_t = torch.from_numpy(self.obs)
            mask = self.next_mask
            actions, logp = agent.act(obs_t, mask)
            self.obs_buf[t], self.actions[t], self.logp[t] = self.obs, actions, logp
            if self.cfg.ref_each_step:
                self.ref_logp[t] = reference.log_prob(obs_t, actions)
            if self.store_masks:
                self.masks[t] = mask
                self.next_mask = agent.sample_mask(N)  # also the bootstrap value's masks if the rollout ends here
            valid = ~self.prev_done
            self.valid[t] = valid

            self.obs, rewards, terminated, truncated, _ = self.envs.step(self.clip_action(actions.numpy()))
            if self.obs.dtype != np.float32:
                self.obs = self.obs.astype(np.float32)
            dones = terminated | truncated
            self.rewards_np[t], self.terminated_np[t], self.dones_np[t] = rewards, terminated, dones
            self.prev_done = dones
            run.count_steps(N)

            ended_returns, ended_lengths = self.episodes.step(rewards, dones, valid)
            if len(ended_returns):
                run.record_episodes(ended_returns.tolist(), ended_lengths.tolist())
                if run.solved():
                    return True
        return False

    @torch.no_grad()
    def values(self) -> tuple[Tensor, Tensor]:
        """``(V(s_t), V(s_{t+1}))``, both ``(T, N)``: every state of the rollout in one forward, with the stored
        masks; the bootstrap state with the next step's masks."""
        T, N = self.cfg.num_steps, self.cfg.num_envs
        masks = self.masks.flatten(0, 1) if self.store_masks else None
        values = self.policy.value(torch.from_numpy(self.obs_buf).flatten(0, 1), masks).view(T, N)
        bootstrap = self.policy.value(torch.from_numpy(self.obs), self.next_mask)
        return values, torch.cat([values[1:], bootstrap[None]])

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
        self.obs, self.prev_done = state["obs"].numpy(), state["prev_done"].numpy()
        self.next_mask, self.mask_p = state["next_mask"], state["mask_p"]
        self.episodes.load_state_dict(state["episodes"])
