"""PPO (Schulman et al. 2017) with the usual implementation details, and four ways of handling dropout.

Read ``train_ppo`` from top to bottom: collect a rollout, compute advantages, run the clipped-surrogate update,
log one row of metrics (and save a checkpoint every ``save_every`` updates). The maths comes in through ``maths``
(see ``sandbox/maths.py``). A frozen reference policy (``--ref``, else the initial policy) is evaluated on the
rollout: ``kl_ref`` measures how far the policy has moved from it, and ``beta`` > 0 pulls it back, in the loss or in
the reward (``--kl-in``).

Dropout handling (``config.dropout_mode``), the point of the sandbox:

================  ==============================  =====================================  =====================
mode              rollout forward                 update forward                         first-minibatch ratio
================  ==============================  =====================================  =====================
``off``           p = 0 everywhere                p = 0                                  exactly 1
``rollout-eval``  eval mode: no dropout           train mode: fresh masks                != 1 (SB3's behaviour)
``naive``         train mode: fresh masks         train mode: new fresh masks            != 1 (TRL's default)
``consistent``    train mode, masks stored        the stored masks are reused            exactly 1
================  ==============================  =====================================  =====================
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from . import checkpoint as ckpt
from .config import Config
from .diagnostics import Seen, gradient_noise, update_metrics
from .envs import EpisodeTracker, make_vec_env, reward_threshold
from .maths import Maths, explained_variance, kl_k3
from .nets import Agent, FlatParams
from .runlog import Clock, RunLog, RunResult, progress_bar
from .surrogate import policy_surrogate


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss stopped the run. The rows written so far are kept."""


@dataclass
class Rollout:
    """One batch of experience, ``(T, N, ...)`` = (num_steps, num_envs, ...), preallocated once.

    The numpy arrays and the torch tensors share memory (``torch.from_numpy``), so the env writes into numpy and
    the update reads torch without copies. ``valid[t, i]`` is False for autoreset steps (see ``sandbox/envs.py``).
    ``masks`` holds the dropout masks of every step in ``consistent`` mode, else it is None.
    """

    obs: np.ndarray
    actions: torch.Tensor
    logp: torch.Tensor
    ref_logp: torch.Tensor
    values: torch.Tensor
    rewards: np.ndarray
    terminated: np.ndarray
    dones: np.ndarray
    valid: np.ndarray
    masks: torch.Tensor | None

    @classmethod
    def allocate(cls, T: int, N: int, obs_dim: int, action_space: gym.Space, mask_width: int) -> "Rollout":
        act_shape = () if isinstance(action_space, gym.spaces.Discrete) else action_space.shape
        act_dtype = torch.long if isinstance(action_space, gym.spaces.Discrete) else torch.float32
        return cls(
            obs=np.zeros((T, N, obs_dim), np.float32),
            actions=torch.zeros((T, N, *act_shape), dtype=act_dtype),
            logp=torch.zeros(T, N),
            ref_logp=torch.zeros(T, N),
            values=torch.zeros(T, N),
            rewards=np.zeros((T, N), np.float32),
            terminated=np.zeros((T, N), np.float32),
            dones=np.zeros((T, N), np.float32),
            valid=np.zeros((T, N), bool),
            masks=torch.zeros(T, N, mask_width) if mask_width else None,
        )


def train_ppo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    torch.manual_seed(cfg.seed)
    envs, obs = make_vec_env(cfg.env, cfg.num_envs, cfg.seed, cfg.env_params)
    act_space = envs.single_action_space
    p = cfg.effective_dropout
    agent = Agent(
        obs.shape[1],
        act_space,
        cfg.hidden_sizes,
        p,
        cfg.dropout_value,
        cfg.ortho_init,
        maths.dropout_mask,
        dropout_samples=cfg.dropout_samples,
        multi_sample_average=cfg.multi_sample_average,
    )
    reference, ref_path = ckpt.gym_reference(cfg, agent)  # --ref (maybe also the start), else the initial agent
    params = FlatParams(agent)  # one tensor for all weights: Adam and the grad clip run as one kernel each
    optimizer = torch.optim.Adam([params.flat], lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
    network = ckpt.mlp_network(cfg, obs.shape[1], act_space, with_critic=True)
    beta = cfg.beta
    kl_term = maths.kl(cfg.kl_estimator)
    store_masks = cfg.dropout_mode == "consistent" and p > 0
    T, N = cfg.num_steps, cfg.num_envs
    buf = Rollout.allocate(T, N, obs.shape[1], act_space, agent.mask_width if store_masks else 0)
    clip_action = _action_clipper(act_space)

    threshold = reward_threshold(cfg.env)
    episodes = EpisodeTracker(N)
    state = _RunState(obs=obs, prev_done=np.zeros(N, bool), next_mask=agent.sample_mask(N) if store_masks else None)
    clock = Clock()
    first = 1
    if resume is not None:  # continue exactly where the checkpoint left off
        beta, clock = _restore(resume, agent, reference, optimizer, envs, state, episodes)
        first = resume["update"] + 1
    bar = progress_bar(cfg.num_updates * cfg.batch_size, cfg.quiet, f"ppo {cfg.env}")
    bar.update(state.env_steps)
    status, message = "ok", "finished the step budget"
    try:
        for update in range(first, cfg.num_updates + 1):
            frac = 1.0 - (update - 1) / cfg.num_updates
            lr = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
            clip_coef = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
            for group in optimizer.param_groups:
                group["lr"] = lr
            scheduled_p = maths.dropout_schedule(p, update, cfg.dropout_schedule, cfg.dropout_cutoff)
            if scheduled_p != agent.dropout_p:
                agent.set_dropout(scheduled_p)  # for the rollout and the update alike
                if store_masks:  # the next step's masks were drawn with the old p
                    state.next_mask = agent.sample_mask(N)

            # 1. Rollout. Modes naive/consistent sample with dropout on; rollout-eval and off sample without it.
            agent.train(cfg.dropout_mode in ("naive", "consistent"))
            stop = _collect_rollout(
                envs,
                agent,
                reference if cfg.ref_each_step else None,
                buf,
                state,
                store_masks,
                clip_action,
                episodes,
                threshold,
                cfg,
                log,
                clock,
            )
            bar.update(T * N)
            if stop:
                message = "reached the reward threshold (--stop-at-threshold)"
                break

            # 2. Values of every visited state in one batched forward, in the rollout's dropout mode (with the
            #    stored masks in consistent mode), then GAE; autoreset steps are dropped afterwards. With the KL
            #    in the reward, every step pays beta * k1 = beta * (log pi_old - log pi_ref) first.
            obs_flat = torch.from_numpy(buf.obs).flatten(0, 1)
            if not cfg.ref_each_step:  # kl_ref only measured: one batched forward, equal up to rounding
                buf.ref_logp = reference.log_prob(obs_flat, buf.actions.flatten(0, 1)).view(T, N)
            buf.values = agent.value(obs_flat, buf.masks.flatten(0, 1) if store_masks else None).view(T, N)
            bootstrap = agent.value(torch.from_numpy(state.obs), state.next_mask)  # next step's masks if stored
            next_values = torch.cat([buf.values[1:], bootstrap[None]])
            valid = torch.from_numpy(buf.valid)
            log_ratio_ref = (buf.logp - buf.ref_logp) * valid  # (T, N); autoreset steps chose nothing
            rewards = torch.from_numpy(buf.rewards)
            if cfg.kl_in == "reward" and beta > 0:
                rewards = rewards - beta * maths.kl_k1(log_ratio_ref)
            advantages, returns = maths.gae(
                rewards,
                buf.values,
                next_values,
                torch.from_numpy(buf.terminated),
                torch.from_numpy(buf.dones),
                cfg.gamma,
                cfg.gae_lambda,
            )
            idx = torch.from_numpy(np.flatnonzero(buf.valid.reshape(-1)))
            batch = _Batch(
                obs=obs_flat[idx],
                actions=buf.actions.flatten(0, 1)[idx],
                logp=buf.logp.flatten()[idx],
                ref_logp=buf.ref_logp.flatten()[idx],
                values=buf.values.flatten()[idx],
                advantages=advantages.flatten()[idx],
                returns=returns.flatten()[idx],
                masks=buf.masks.flatten(0, 1)[idx] if store_masks else None,
            )

            # 3. Update: every mode but off runs the update forward in train mode.
            agent.train(cfg.dropout_mode != "off")
            stats = _ppo_update(
                agent,
                params,
                optimizer,
                batch,
                cfg,
                clip_coef,
                maths,
                update,
                beta if cfg.kl_in == "loss" else 0.0,
                kl_term,
            )

            # 4. KL to the reference (k1 per step, the behaviour policy's own log-probs); adaptive beta.
            kl_ref = float(log_ratio_ref.sum() / len(idx)) if len(idx) else math.nan
            beta_used = beta
            if cfg.kl_target is not None and len(idx):
                beta = maths.adaptive_beta(beta, kl_ref, cfg.kl_target, cfg.kl_horizon, len(idx))

            # 5. Log one row; a checkpoint every save_every updates.
            wall = clock()
            env_steps = state.env_steps
            log.update(
                {
                    "update": update,
                    "env_steps": env_steps,
                    "wall_s": wall,
                    "sps": env_steps / max(wall, 1e-9),
                    "ep_return_mean": episodes.recent(20),
                    "ep_len_mean": episodes.recent_length(20),
                    "episodes": len(episodes.returns),
                    **stats,
                    "explained_var": explained_variance(batch.values, batch.returns),
                    "lr": lr,
                    "clip_coef": clip_coef,
                    "dropout_p": agent.dropout_p,
                    "kl_ref": kl_ref,
                    "beta": beta_used,
                }
            )
            bar.set_postfix(ret=f"{episodes.recent(20):.1f}", sps=f"{env_steps / max(wall, 1e-9):.0f}", refresh=False)
            if cfg.save_every and update % cfg.save_every == 0:
                log.save_checkpoint(
                    update,
                    ckpt.blob(
                        "checkpoint",
                        cfg,
                        network,
                        agent,
                        update,
                        state.env_steps,
                        _resume_state(optimizer, envs, state, episodes, agent, reference, beta, clock),
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
        envs.close()
        if status != "interrupted":
            log.save_policy(ckpt.blob("policy", cfg, network, agent, len(log.rows), state.env_steps))
        summary = {
            "status": status,
            "final_return": episodes.recent(20) if episodes.returns else None,
            "final_reward": None,
            "solved_at_steps": state.solved_at_steps,
            "solved_at_s": state.solved_at_s,
            "reward_threshold": threshold,
            "total_s": clock(),
            "env_steps": state.env_steps,
            "updates": len(log.rows),
            "episodes": len(episodes.returns),
            "message": message,
            "reference_path": ref_path,
        }
        result = log.finish(summary, write_summary=status != "interrupted")
    return result


@dataclass
class _RunState:
    obs: np.ndarray
    prev_done: np.ndarray
    next_mask: torch.Tensor | None = None  # consistent mode: the masks of the next step, drawn in advance
    env_steps: int = 0
    solved_at_steps: int | None = None
    solved_at_s: float | None = None


def _resume_state(
    optimizer,
    envs,
    state: _RunState,
    episodes: EpisodeTracker,
    agent: Agent,
    reference: Agent,
    beta: float,
    clock: Clock,
) -> dict:
    """What a checkpoint needs beyond the weights to continue bit for bit: the optimizer, the random streams,
    the environments mid-episode, the trainer's counters (and which reference it used). Plain data and tensors."""
    return {
        "optimizer": optimizer.state_dict(),
        "random": ckpt.random_state(),
        "envs": ckpt.env_state(envs),
        "episodes_written": len(episodes.returns),
        "wall_s": clock(),
        "ref_digest": ckpt.digest(reference),
        "trainer": {
            "obs": torch.from_numpy(state.obs.copy()),
            "prev_done": torch.from_numpy(state.prev_done),
            "next_mask": state.next_mask,
            "env_steps": state.env_steps,
            "solved_at_steps": state.solved_at_steps,
            "solved_at_s": state.solved_at_s,
            "episodes": episodes.state_dict(),
            "beta": beta,
            "dropout_p": agent.dropout_p,
        },
    }


def _restore(
    blob: dict, agent: Agent, reference: Agent, optimizer, envs, state: _RunState, episodes: EpisodeTracker
) -> tuple[float, Clock]:
    """Put a checkpoint's state back (the inverse of :func:`_resume_state`); returns ``(beta, clock)``."""
    r, t = blob["resume"], blob["resume"]["trainer"]
    ckpt.check_same_reference(r, reference)
    agent.load_state_dict(blob["state_dict"])
    optimizer.load_state_dict(r["optimizer"])
    ckpt.set_env_state(envs, r["envs"])
    state.obs, state.prev_done, state.next_mask = t["obs"].numpy(), t["prev_done"].numpy(), t["next_mask"]
    state.env_steps, state.solved_at_steps, state.solved_at_s = t["env_steps"], t["solved_at_steps"], t["solved_at_s"]
    episodes.load_state_dict(t["episodes"])
    agent.set_dropout(t["dropout_p"])
    ckpt.set_random_state(r["random"])
    return t["beta"], Clock(r["wall_s"])


@dataclass
class _Batch:
    """The valid transitions of one rollout, flattened to ``(B, ...)``."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    ref_logp: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    masks: torch.Tensor | None

    def select(self, idx: torch.Tensor) -> "_Batch":
        return _Batch(
            self.obs[idx],
            self.actions[idx],
            self.logp[idx],
            self.ref_logp[idx],
            self.values[idx],
            self.advantages[idx],
            self.returns[idx],
            self.masks[idx] if self.masks is not None else None,
        )


def _collect_rollout(
    envs,
    agent: Agent,
    reference: Agent | None,
    buf: Rollout,
    state: _RunState,
    store_masks: bool,
    clip_action,
    episodes: EpisodeTracker,
    threshold: float | None,
    cfg: Config,
    log: RunLog,
    clock: Clock,
) -> bool:
    """Fill ``buf`` with ``num_steps`` vector steps. Returns True when the run should stop (solved, and
    ``stop_at_threshold``). The log-prob stored for each action comes from the forward pass that chose it; the
    reference's (if ``reference`` is given) from the same batch shape, so that equal networks give equal bits."""
    N = cfg.num_envs
    for t in range(cfg.num_steps):
        obs_t = torch.from_numpy(state.obs)
        mask = state.next_mask
        actions, logp = agent.act(obs_t, mask)
        buf.obs[t] = state.obs
        buf.actions[t] = actions
        buf.logp[t] = logp
        if reference is not None:
            buf.ref_logp[t] = reference.log_prob(obs_t, actions)
        if store_masks:
            buf.masks[t] = mask
            state.next_mask = agent.sample_mask(N)  # also the bootstrap value's masks if the rollout ends here
        valid = ~state.prev_done
        buf.valid[t] = valid

        state.obs, rewards, terminated, truncated, _ = envs.step(clip_action(actions.numpy()))
        if state.obs.dtype != np.float32:
            state.obs = state.obs.astype(np.float32)
        dones = terminated | truncated
        buf.rewards[t] = rewards
        buf.terminated[t] = terminated
        buf.dones[t] = dones
        state.prev_done = dones
        state.env_steps += N

        ended_returns, ended_lengths = episodes.step(rewards, dones, valid)
        if len(ended_returns):
            wall = clock()
            for ret, length in zip(ended_returns.tolist(), ended_lengths.tolist()):
                log.episode(state.env_steps, wall, ret, length)
            if (
                state.solved_at_steps is None
                and threshold is not None
                and len(episodes.returns) >= 20
                and episodes.recent(20) >= threshold
            ):
                state.solved_at_steps, state.solved_at_s = state.env_steps, wall
                if cfg.stop_at_threshold:
                    return True
    return False


def _ppo_update(
    agent: Agent,
    params: FlatParams,
    optimizer: torch.optim.Optimizer,
    b: _Batch,
    cfg: Config,
    clip_coef: float,
    maths: Maths,
    update: int,
    beta: float,
    kl_term,
) -> dict[str, float]:
    """``update_epochs`` passes of minibatch gradient steps on the clipped surrogate (plus ``beta`` times the KL
    estimate ``kl_term`` to the reference); returns the metrics."""
    n = b.obs.shape[0]
    clip_vloss = cfg.clip_coef if cfg.clip_vloss else None  # never annealed: a value clip of 0 stops the critic
    seen: list[Seen] = []  # what each minibatch saw; the metrics are computed from it at the end, in one go
    epochs_done = 0
    if n == 0:  # every step of the rollout was an autoreset step: nothing to learn from
        return update_metrics(seen, clip_coef, epochs_done)
    num_minibatches = min(cfg.num_minibatches, n)
    single = num_minibatches == 1
    if single and cfg.norm_adv:  # one minibatch = the whole batch, every epoch: normalise once
        b = dataclasses.replace(b, advantages=_normalize(b.advantages))
    grad_noise = {}
    if cfg.grad_diag_every and update % cfg.grad_diag_every == 0:
        grad_noise = _gradient_noise(agent, b, cfg, clip_coef, maths, max(num_minibatches, 4))
    for epoch in range(cfg.update_epochs):
        # One minibatch is the whole batch: the loss is a mean, so shuffling would change nothing.
        minibatches = [b] if single else [b.select(mb) for mb in torch.tensor_split(torch.randperm(n), num_minibatches)]
        for mb in minibatches:
            logp, entropy, values = agent.evaluate(mb.obs, mb.actions, mb.masks, with_entropy=cfg.ent_coef > 0)
            logratio = logp - mb.logp  # (B,), or (K, B) with multi-sample dropout averaged over losses
            ratio = logratio.exp()
            adv = mb.advantages if single or not cfg.norm_adv else _normalize(mb.advantages)

            pg_loss, keep = policy_surrogate(maths, cfg, ratio, adv, clip_coef)
            v_loss = maths.value_loss(values, mb.values, mb.returns, clip_vloss).mean()
            ent = entropy.mean()
            loss = pg_loss + cfg.vf_coef * v_loss
            if beta > 0:  # KL to the reference in the loss, per sample (and per dropout copy), averaged
                loss = loss + beta * kl_term(logp - mb.ref_logp).mean()
            if cfg.ent_coef > 0:
                loss = loss - cfg.ent_coef * ent
            seen.append(
                Seen(
                    logratio.detach().reshape(-1),
                    adv.expand_as(logratio).reshape(-1),
                    (ent.detach(), pg_loss.detach(), v_loss.detach()),
                    keep=keep.reshape(-1),
                )
            )

            if cfg.target_kl is not None and kl_k3(-logratio.detach()).mean().item() > cfg.target_kl:
                return update_metrics(seen, clip_coef, epochs_done) | grad_noise  # this minibatch: no step
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(
                    f"non-finite loss at update {update}, epoch {epoch + 1}: policy_loss={pg_loss.item()}, "
                    f"value_loss={v_loss.item()}, entropy={ent.item()}"
                )

            params.zero_grad()
            loss.backward()
            seen[-1].grad_norm = params.clip_grad_norm_(cfg.max_grad_norm)
            optimizer.step()
        epochs_done += 1
    return update_metrics(seen, clip_coef, epochs_done) | grad_noise


def _gradient_noise(
    agent: Agent, b: _Batch, cfg: Config, clip_coef: float, maths: Maths, num_minibatches: int
) -> dict[str, float]:
    """grad_gdv, grad_gde, grad_snr of the policy loss on this batch's minibatches, before the update."""

    def policy_loss(idx: torch.Tensor) -> torch.Tensor:
        mb = b.select(idx)
        logp, _, _ = agent.evaluate(mb.obs, mb.actions, mb.masks, with_entropy=False)
        adv = _normalize(mb.advantages) if cfg.norm_adv else mb.advantages
        return policy_surrogate(maths, cfg, (logp - mb.logp).exp(), adv, clip_coef)[0]

    return gradient_noise(policy_loss, b.obs.shape[0], num_minibatches, list(agent.actor.parameters()))


def _normalize(adv: torch.Tensor) -> torch.Tensor:
    """Advantages to mean 0, std 1 (a single sample is left as it is)."""
    if len(adv) < 2:
        return adv
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def _action_clipper(space: gym.Space):
    """Box actions are sampled from an unbounded Gaussian and clipped to the bounds only for the env (the stored
    action, and its log-prob, are the unclipped sample). Discrete actions pass through."""
    if isinstance(space, gym.spaces.Box):
        low, high = space.low, space.high
        return lambda a: np.clip(a, low, high)
    return lambda a: a
