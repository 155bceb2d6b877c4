"""PPO with dropout on Gymnasium tasks, in one file to read from top to bottom (the sandbox's reading edition).

    python sandbox/reading/ppo_dropout.py --env CartPole-v1 --dropout 0.1 --dropout-mode consistent --out runs/r
    python sandbox/reading/ppo_dropout.py --preset cartpole --dropout 0.2 --dropout-mode naive --out runs/n

PPO (Schulman et al. 2017) as CleanRL writes it. Each update collects num_envs * num_steps transitions with the
current policy pi_old, computes advantages by GAE, then for update_epochs passes over shuffled minibatches minimises::

    L       = -mean[ min(r_t A_t, clip(r_t, 1 - clip_coef, 1 + clip_coef) A_t) ] + vf_coef L_V - ent_coef H[pi_theta]
    r_t     = pi_theta(a_t | s_t) / pi_old(a_t | s_t)                                             (clipped_surrogate)
    A_t     = delta_t + gamma gae_lambda A_{t+1},  delta_t = reward_t + gamma V(s_{t+1}) - V(s_t)               (gae)
    L_V     = 0.5 mean[ max((V - R)^2, (V_old + clip(V - V_old, +-clip_coef) - R)^2) ],  R = A + V_old   (value_loss)

The file reads in that order: the arguments, the vector env, the actor-critic, then one loop per update with the
rollout, GAE and the clipped update in sight, and one row of ``metrics.csv`` per update under the engine's column
names (``sandbox/metrics.py``). Dropout follows every hidden activation of the policy (and, with ``--dropout-value``,
of the critic), handled in one of four modes (``MODES``). Before an update's first gradient step the policy has not
changed, so r should be exactly 1; ``first_ratio_dev``, the mean |r - 1| of the first minibatch, measures what
dropout makes of it.

It imports nothing from the sandbox, and draws the engine's random numbers in the engine's order: same settings and
seed, its first two updates agree with ``sandbox.train``'s (``tests/test_reading.py`` holds them to it, and says how
closely and why not to the last bit). Not here: the KL term to a reference, sample and multi-sample dropout, dropout
schedules, checkpoints.

Two traps it avoids:
- the log-probability stored for an action must come from the forward pass that chose it: with dropout at rollout,
  any other forward pass draws other masks and gives another probability;
- Gymnasium 1.x vector envs reset a finished env on the *next* ``step`` (its action ignored, its reward 0): that step
  is marked invalid and left out of the loss, and the observation stored at it is the *final* observation of the
  episode, so a *truncated* episode bootstraps from V(final observation). CleanRL's ``ppo.py`` bootstraps 0 there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions import Categorical, Normal


@dataclass
class Args:
    env: str = "CartPole-v1"
    """Gymnasium id: a flat Box observation, Discrete or Box actions"""
    seed: int = 0
    """seeds torch and the environments"""
    total_steps: int = 100_000
    """environment steps to train for, all envs together (rounded down to whole batches)"""
    dropout: float = 0.0
    """dropout probability p after every hidden activation of the policy"""
    dropout_mode: Literal["off", "rollout-eval", "naive", "consistent"] = "naive"
    """what the rollout and the update do with dropout (MODES)"""
    dropout_value: bool = False
    """dropout in the critic too (same p and mode)"""
    preset: Literal["cartpole"] | None = None
    """start from a preset's values (PRESETS); the other flags override them"""
    out: str | None = None
    """write DIR/metrics.csv, one row per update"""
    quiet: bool = False
    """print nothing while training"""
    num_envs: int = 4
    """parallel environments; a batch is num_envs * num_steps transitions"""
    num_steps: int = 128
    """steps per environment per rollout"""
    learning_rate: float = 2.5e-4
    """Adam's learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over total_steps"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE's lambda: 0 = one-step TD, 1 = Monte Carlo"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 4
    """passes over each batch"""
    norm_adv: bool = True
    """normalise the advantages within each minibatch"""
    clip_coef: float = 0.2
    """the ratio is clipped to [1 - clip_coef, 1 + clip_coef]"""
    anneal_clip: bool = False
    """decay clip_coef linearly to 0 over total_steps"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values (with clip_coef, never annealed)"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    target_kl: float | None = None
    """stop an update once a minibatch's approx_kl exceeds this, checked before its gradient step"""


# rl-baselines3-zoo's tuned CartPole values (SB3's value loss is vf_coef * MSE, ours 0.5 * vf_coef * MSE: vf_coef 1)
PRESETS = {
    "cartpole": dict(env="CartPole-v1", num_envs=8, num_steps=32, num_minibatches=1, update_epochs=20, gamma=0.98,
                     gae_lambda=0.8, ent_coef=0.0, learning_rate=1e-3, anneal_clip=True, clip_vloss=False, vf_coef=1.0),
}  # fmt: skip


class Mode(NamedTuple):
    uses_dropout: bool  # False: p = 0 everywhere
    rollout_train: bool  # the rollout's forward runs in train mode (dropout on)
    update_train: bool  # the update's forward runs in train mode (fresh masks, unless they are stored)
    store_masks: bool  # the rollout's masks are stored with each transition and replayed in the update


# The four ways of handling dropout, and what they do to the ratio r before the first gradient step.
MODES = {
    "off": Mode(False, False, False, False),  # p = 0 everywhere: r = 1 exactly
    "rollout-eval": Mode(True, False, True, False),  # no dropout acting, fresh masks updating (SB3): r != 1
    "naive": Mode(True, True, True, False),  # fresh masks in both (PyTorch's default, TRL): r != 1
    "consistent": Mode(True, True, True, True),  # the update replays the rollout's masks (Hausknecht 2022): r = 1
}


def dropout_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Inverted dropout's mask: each entry 0 with probability p, else 1 / (1 - p), so the expectation is unchanged."""
    return torch.empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def layer_init(layer: nn.Linear, gain: float) -> nn.Linear:
    """CleanRL's initialisation: orthogonal weights with this gain, zero biases."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class DropoutMLP(nn.Module):
    """``in -> hidden (tanh, then dropout p) -> out``. Unlike ``nn.Dropout``, its dropout can be handed its mask:
    ``forward(x, mask)`` replays ``mask (B, mask_width)`` (every hidden unit's multiplier, all layers side by side);
    with ``mask=None`` it draws a fresh one in train mode and uses none in eval mode, as ``nn.Dropout`` does."""

    def __init__(self, sizes: list[int], p: float, out_gain: float):
        super().__init__()
        self.hidden = nn.ModuleList(layer_init(nn.Linear(a, b), np.sqrt(2)) for a, b in zip(sizes[:-2], sizes[1:-1]))
        self.head = layer_init(nn.Linear(sizes[-2], sizes[-1]), out_gain)
        self.p, self.mask_width = p, sum(sizes[1:-1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None and self.training and self.p > 0:
            mask = dropout_mask((x.shape[0], self.mask_width), self.p)  # fresh masks: a new network every call
        start = 0
        for layer in self.hidden:
            x = torch.tanh(layer(x))  # (B, width)
            if mask is not None:
                x = x * mask[:, start : start + layer.out_features]
                start += layer.out_features
        return self.head(x)


class Agent(nn.Module):
    """Actor and critic MLPs (64, 64); a Categorical policy (Discrete actions) or a Gaussian with a learnt log-std."""

    def __init__(self, obs_dim: int, action_space: gym.Space, p: float, dropout_value: bool):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        act_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.actor = DropoutMLP([obs_dim, 64, 64, act_dim], p, out_gain=0.01)
        self.critic = DropoutMLP([obs_dim, 64, 64, 1], p if dropout_value else 0.0, out_gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(act_dim))

    def sample_masks(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Masks for ``batch`` transitions: the actor's, and the critic's if it has dropout."""
        actor = dropout_mask((batch, self.actor.mask_width), self.actor.p)
        return actor, dropout_mask((batch, self.critic.mask_width), self.critic.p) if self.critic.p > 0 else None

    def distribution(self, obs: torch.Tensor, mask: torch.Tensor | None) -> Categorical | Normal:
        out = self.actor(obs, mask)
        return Categorical(logits=out) if self.discrete else Normal(out, self.log_std.exp())

    def act(self, obs: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample actions and their log-probabilities, both from *one* forward pass (the trap: another forward with
        dropout draws other masks and gives another probability)."""
        dist = self.distribution(obs, mask)
        if not self.discrete:
            action = dist.sample()  # (B, act_dim)
            return action, dist.log_prob(action).sum(-1)
        # Gumbel-max: argmax(log pi + Gumbel noise), with Gumbel = -log Exp(1), is a sample of pi, the same
        # distribution as dist.sample(); drawn this way, it uses the random numbers the engine uses.
        action = (dist.logits - torch.empty_like(dist.logits).exponential_().log()).argmax(-1)  # (B,)
        return action, dist.log_prob(action)

    def evaluate(self, obs, action, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi(action | obs), entropy)`` with gradients, for the update."""
        dist = self.distribution(obs, mask)
        if self.discrete:
            return dist.log_prob(action), dist.entropy()
        return dist.log_prob(action).sum(-1), dist.entropy().sum(-1)


def gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """Generalised advantage estimation (Schulman et al. 2016), all inputs ``(T, N)``: returns (advantages, returns).

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    ``next_values[t]`` is V of the state step t led to, even when the episode ended there: a truncated episode
    bootstraps from it (only termination means no future), and every episode end stops the recursion."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        last = delta + gamma * gae_lambda * (1.0 - dones[t]) * last
        advantages[t] = last
    return advantages, advantages + values


def clipped_surrogate(ratio, advantages, clip_coef: float) -> torch.Tensor:
    """PPO's clipped surrogate as a loss: ``mean(-min(r A, clip(r, 1 - eps, 1 + eps) A))``. The min of the two
    objectives is the max of the two losses: taking the min of the losses would drop PPO's pessimism."""
    return -torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages).mean()


def value_loss(new_values, old_values, returns, clip_coef: float | None) -> torch.Tensor:
    """``0.5 * (V - R)^2``; with ``clip_coef``, ``0.5 * max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2)``."""
    unclipped = (new_values - returns).square()
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    clipped = (old_values + (new_values - old_values).clamp(-clip_coef, clip_coef) - returns).square()
    return 0.5 * torch.maximum(unclipped, clipped).mean()


def minibatches(n: int, num_minibatches: int, epochs: int):
    """``(epoch, indices)`` of every minibatch step: each epoch splits the n transitions at random (one minibatch: in
    order, since a mean does not depend on it)."""
    for epoch in range(epochs):
        order = torch.randperm(n) if num_minibatches > 1 else torch.arange(n)
        for indices in order.tensor_split(num_minibatches):
            yield epoch, indices


def train(args: Args) -> list[dict]:
    """PPO on ``args.env``; returns the metrics rows (one dict per update), also written to ``args.out``."""
    # TRY NOT TO MODIFY: seeding, the environments, the agent, the optimiser, the buffers
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # small networks: one thread is fastest
    mode = MODES[args.dropout_mode]
    p = args.dropout if mode.uses_dropout else 0.0
    envs = gym.make_vec(args.env, num_envs=args.num_envs)  # numpy-vectorised where Gymnasium has it (CartPole)
    next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32)  # (N, obs_dim)
    space = envs.single_action_space
    agent = Agent(next_obs.shape[1], space, p, args.dropout_value)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    T, N, store = args.num_steps, args.num_envs, mode.store_masks and p > 0
    num_updates = max(1, args.total_steps // (T * N))
    obs = torch.zeros((T, N, next_obs.shape[1]))
    actions = torch.zeros((T, N), dtype=torch.long) if agent.discrete else torch.zeros((T, N, *space.shape))
    logprobs, rewards, terminated, dones = (torch.zeros((T, N)) for _ in range(4))
    valid = torch.zeros((T, N), dtype=torch.bool)
    step_masks = [(None, None)] * T  # consistent: the (actor, critic) masks each step acted with
    # consistent dropout draws each step's masks one step ahead: V(s_T), the bootstrap at the end of a rollout, is
    # then computed by the network that acts at s_T when the next rollout begins
    next_masks = agent.sample_masks(N) if store else (None, None)
    prev_done, episode_return, episode_length = torch.zeros(N, dtype=torch.bool), np.zeros(N), np.zeros(N, dtype=int)
    returns_seen, lengths_seen, rows = [], [], []  # every finished episode's return and length; the metrics rows
    global_step, solved_at, start_time = 0, None, time.perf_counter()
    threshold = gym.spec(args.env).reward_threshold  # 475 for CartPole-v1; None: never solved
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        out_file = open(os.path.join(args.out, "metrics.csv"), "w", newline="")

    for update in range(1, num_updates + 1):
        frac = 1.0 - (update - 1) / num_updates  # annealing: 1 at the first update, down to 1 / num_updates
        lr = args.learning_rate * frac if args.anneal_lr else args.learning_rate
        clip_coef = args.clip_coef * frac if args.anneal_clip else args.clip_coef
        optimizer.param_groups[0]["lr"] = lr

        # ALGO LOGIC: the rollout, num_steps steps of every env, in the mode's rollout setting
        agent.train(mode.rollout_train)
        for step in range(T):
            obs[step] = next_obs
            valid[step] = ~prev_done  # False: an autoreset step, which only resets a finished env
            with torch.no_grad():
                action, logprob = agent.act(next_obs, next_masks[0])
            actions[step], logprobs[step] = action, logprob  # logprob: from the forward that chose the action
            if store:  # consistent: keep the masks this step acted with, draw the next step's
                step_masks[step], next_masks = next_masks, agent.sample_masks(N)
            env_action = action.numpy() if agent.discrete else np.clip(action.numpy(), space.low, space.high)
            o, r, term, trunc, _ = envs.step(env_action)  # Box actions: the env gets them clipped, we keep them raw
            global_step += N
            next_obs, prev_done = torch.as_tensor(o, dtype=torch.float32), torch.as_tensor(term | trunc)
            rewards[step], terminated[step], dones[step] = torch.as_tensor(r), torch.as_tensor(term), prev_done

            # TRY NOT TO MODIFY: episode bookkeeping, and the solved check (mean of the last 20 episodes)
            episode_return += r * valid[step].numpy()
            episode_length += valid[step].numpy()
            for i in np.flatnonzero(term | trunc):
                returns_seen.append(float(episode_return[i]))
                lengths_seen.append(int(episode_length[i]))
                episode_return[i], episode_length[i] = 0.0, 0
            if solved_at is None and threshold is not None and len(returns_seen) >= 20:
                if np.mean(returns_seen[-20:]) >= threshold:
                    solved_at = (global_step, time.perf_counter() - start_time)

        # ALGO LOGIC: advantages (GAE), with V of every stored state in one forward, in the rollout's setting
        with torch.no_grad():
            critic_masks = torch.cat([m[1] for m in step_masks]) if store and agent.critic.p > 0 else None
            values = agent.critic(obs.flatten(0, 1), critic_masks).view(T, N)  # V(s_t), each with its step's masks
            bootstrap = agent.critic(next_obs, next_masks[1]).view(1, N)  # V(s_T)
        # V(s_{t+1}): at an episode's last step t, obs[t + 1] holds its final observation (next-step autoreset)
        next_values = torch.cat([values[1:], bootstrap])
        advantages, returns = gae(rewards, values, next_values, terminated, dones, args.gamma, args.gae_lambda)

        # the batch: the valid transitions, flattened to (B, ...); autoreset steps chose nothing and are left out
        keep = valid.flatten().nonzero().squeeze(1)
        b_obs, b_actions = obs.flatten(0, 1)[keep], actions.flatten(0, 1)[keep]
        b_logprobs, b_values = logprobs.flatten()[keep], values.flatten()[keep]
        b_advantages, b_returns = advantages.flatten()[keep], returns.flatten()[keep]
        b_actor_masks = torch.cat([m[0] for m in step_masks])[keep] if store else None
        b_critic_masks = critic_masks[keep] if critic_masks is not None else None

        # ALGO LOGIC: the update, update_epochs epochs of minibatch steps, in the mode's update setting
        agent.train(mode.update_train)
        seen, epochs_done = [], args.update_epochs  # seen: what each minibatch measured, before its step
        for epoch, mb in minibatches(len(keep), min(args.num_minibatches, len(keep)), args.update_epochs):
            mb_actor_mask = b_actor_masks[mb] if store else None  # consistent: the stored masks; else None
            mb_critic_mask = b_critic_masks[mb] if b_critic_masks is not None else None
            new_logprob, entropy = agent.evaluate(b_obs[mb], b_actions[mb], mb_actor_mask)
            new_value = agent.critic(b_obs[mb], mb_critic_mask).view(-1)
            logratio = new_logprob - b_logprobs[mb]
            ratio = logratio.exp()  # (B,): exactly 1 before the first step, unless dropout drew other masks
            mb_advantages = b_advantages[mb]
            if args.norm_adv and len(mb) > 1:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

            pg_loss = clipped_surrogate(ratio, mb_advantages, clip_coef)
            v_loss = value_loss(new_value, b_values[mb], b_returns[mb], args.clip_coef if args.clip_vloss else None)
            loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * entropy.mean()

            with torch.no_grad():  # what this minibatch saw, for the metrics
                approx_kl = (torch.expm1(logratio) - logratio).mean()  # k3 = (r - 1) - log r, without cancellation
                clipped = (ratio < 1.0 - clip_coef) | (ratio > 1.0 + clip_coef)
                seen.append(dict(ratio_dev=(ratio - 1).abs().mean().item(), clipfrac=clipped.float().mean().item(),
                                 approx_kl=approx_kl.item(), old_approx_kl=(-logratio).mean().item(),
                                 entropy=entropy.mean().item(), policy_loss=pg_loss.item(),
                                 value_loss=v_loss.item()))  # fmt: skip
            if args.target_kl is not None and approx_kl > args.target_kl:
                epochs_done = epoch  # checked before the step: noise in r alone can stop an update here
                break
            optimizer.zero_grad()
            loss.backward()
            seen[-1]["grad_norm"] = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm).item()
            optimizer.step()

        # TRY NOT TO MODIFY: a row of metrics (sandbox/metrics.py): first_* before any step, the rest step means
        stepped = [s for s in seen if "grad_norm" in s]
        row = dict(update=update, env_steps=global_step, wall_s=time.perf_counter() - start_time, lr=lr, dropout_p=p,
                   clip_coef=clip_coef, epochs_done=epochs_done, episodes=len(returns_seen),
                   ep_return_mean=np.mean(returns_seen[-20:]) if returns_seen else np.nan,
                   ep_len_mean=np.mean(lengths_seen[-20:]) if lengths_seen else np.nan,
                   explained_var=float(1 - (b_returns - b_values).var() / b_returns.var()))  # fmt: skip
        row |= {f"first_{k}": seen[0][k] for k in ("ratio_dev", "clipfrac", "approx_kl")}
        for k in ("clipfrac", "approx_kl", "old_approx_kl", "entropy", "policy_loss", "value_loss", "grad_norm"):
            row[k] = float(np.mean([s[k] for s in stepped])) if stepped else np.nan
        rows.append(row)
        if args.out:
            if update == 1:
                print(*row, sep=",", file=out_file)  # the header: the column names
            print(*row.values(), sep=",", file=out_file, flush=True)
        if not args.quiet and (update % 10 == 0 or update == num_updates):
            sps = global_step / row["wall_s"]
            print(f"update {update}, steps {global_step}, return {row['ep_return_mean']:.1f}, {sps:.0f} steps/s")

    envs.close()
    if args.out:
        out_file.close()
    if not args.quiet and solved_at is not None:
        print(f"solved (mean of the last 20 episodes >= {threshold}) at {solved_at[0]} steps, {solved_at[1]:.1f} s")
    return rows


def parse_args(argv: list[str] | None = None) -> Args:
    """The flags (``--help``: the field docstrings above). With ``--preset``, parsed again on the preset's values, so
    that the other flags override them."""
    args = tyro.cli(Args, args=argv)
    if args.preset is not None:
        args = tyro.cli(Args, args=argv, default=Args(preset=args.preset, **PRESETS[args.preset]))
    return args


if __name__ == "__main__":
    train(parse_args())
