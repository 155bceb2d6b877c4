"""Your SB3 agent has dropout: Stable-Baselines3's own PPO with a dropout policy, in the four dropout modes, measured
exactly like the sandbox's PPO (``sandbox train --algo sb3-ppo``).

What SB3 does with a dropout policy, read from its source: ``OnPolicyAlgorithm.collect_rollouts`` calls
``policy.set_training_mode(False)`` (eval mode: no dropout while acting) and ``PPO.train`` calls
``policy.set_training_mode(True)`` (fresh masks in every update forward). That is the sandbox's ``rollout-eval``
(``sandbox/dropout_modes.py``): the first minibatch's ratio is not 1 before any gradient step.

Three small pieces, each on one of SB3's extension points, realise the four modes on SB3's algorithm:

- :class:`DropoutActorCriticPolicy` (the policy class, or ``"MlpPolicy"`` of :class:`DropoutPPO`; keyword
  arguments through ``policy_kwargs``): SB3's ``ActorCriticPolicy`` with a dropout layer after each hidden
  activation of the policy net (and of the value net with ``dropout_value=True``), each of which can be handed its
  mask. With p = 0 it is SB3's ``MlpPolicy``, parameter for parameter and random number for random number.
- :class:`DropoutRolloutBuffer` (``rollout_buffer_class``): SB3's ``RolloutBuffer`` that also keeps each
  transition's masks (consistent dropout) and hands a minibatch's masks to the policy that evaluates it.
- :class:`DropoutPPO`: SB3's ``PPO`` plus a callback that puts the dropout layers in train mode for the rollout
  (``naive``, ``consistent``), and a wrapper around ``train()`` that records what each minibatch saw and computes
  the sandbox's per-update metrics (``sandbox.algos.diagnostics.update_metrics``): ``first_ratio_dev`` and
  ``first_clipfrac`` come from the first minibatch, before SB3's first gradient step of the update.

``train_sb3_ppo`` is the sandbox trainer around them: the sandbox config mapped to SB3's hyperparameters
(:func:`sb3_hyperparameters`), SB3's ``learn()`` unchanged, and the run directory written by the sandbox's own
:class:`~sandbox.algos.run.Run` (config.json, metrics.csv, episodes.csv, summary.json, policy.pt).

Use it in your own SB3 script::

    from sandbox.algos.sb3 import DropoutPPO
    model = DropoutPPO("MlpPolicy", "CartPole-v1", dropout_mode="consistent", policy_kwargs=dict(dropout=0.1))
    model.learn(50_000)
    model.last_update["first_ratio_dev"]      # also logged by SB3's logger as dropout/first_ratio_dev
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, ConvertCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from torch import Tensor, nn

from ..config import Config, ConfigError
from ..dropout import MaskedDropout
from ..dropout_modes import MODES, DropoutModeName
from ..envs.gym_tasks import apply_env_params, check_env_id, reward_threshold
from ..maths import Maths, explained_variance, normalize_advantages
from ..models.spec import gym_network
from ..runs.rundir import RunLog, RunResult
from .diagnostics import Seen, update_metrics
from .run import Run

# --- the policy ------------------------------------------------------------------------------------------------


def _with_dropout(net: nn.Sequential, p: float, maths: Maths) -> nn.Sequential:
    """SB3's ``[Linear, activation, Linear, activation, ...]`` with a :class:`~sandbox.dropout.MaskedDropout` (the
    sandbox's dropout layer, ``(batch, width) -> (batch, width)``) after each activation. The same Linear modules, so
    the same parameters in the same order (Adam and the initialisation see no change)."""
    layers: list[nn.Module] = []
    width = 0
    for module in net:
        layers.append(module)
        if isinstance(module, nn.Linear):
            width = module.out_features
        else:  # the activation that follows each Linear in SB3's MlpExtractor
            layers.append(MaskedDropout(p, maths, width))
    return nn.Sequential(*layers)


class DropoutMlpExtractor(MlpExtractor):
    """SB3's ``MlpExtractor`` (separate policy and value MLPs) with dropout after every hidden activation of the policy
    net, and of the value net with ``dropout_value``."""

    def __init__(
        self,
        feature_dim: int,
        net_arch: list[int] | dict[str, list[int]],
        activation_fn: type[nn.Module],
        device: torch.device | str = "auto",
        dropout: float = 0.0,
        dropout_value: bool = False,
        maths: Maths | None = None,
    ):
        super().__init__(feature_dim, net_arch, activation_fn, device)
        maths = maths or Maths()
        self.policy_net = _with_dropout(self.policy_net, dropout, maths)  # same slot in _modules: same init order
        if dropout_value:
            self.value_net = _with_dropout(self.value_net, dropout, maths)


class DropoutActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (what ``"MlpPolicy"`` means for PPO) with dropout p after every hidden activation
    of the policy net, and of the value net with ``dropout_value``. Keyword arguments: SB3's, plus ``dropout``,
    ``dropout_value`` and ``maths`` (pass them in ``policy_kwargs``).

    All masks of one forward are one ``(batch, mask_width)`` tensor, the policy net's layers first: see
    :meth:`sample_masks` and :meth:`using_masks`. Three attributes connect it to :class:`DropoutPPO` (all off for a
    policy used on its own): ``keep_masks`` (consistent dropout: the acting forward draws its masks explicitly and
    keeps them in ``last_masks`` for the rollout buffer), ``replay_masks`` (the masks the next
    :meth:`evaluate_actions` replays, set by the buffer) and ``evaluations`` (a list that records what each update
    forward computed, for the update's metrics).
    """

    def __init__(self, *args, dropout: float = 0.0, dropout_value: bool = False, maths: Maths | None = None, **kwargs):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout, self.dropout_value, self.maths = float(dropout), dropout_value, maths or Maths()
        super().__init__(*args, **kwargs)  # calls _build_mlp_extractor, below
        self.dropout_layers = [m for m in self.mlp_extractor.modules() if isinstance(m, MaskedDropout)]
        self.mask_width = sum(layer.width for layer in self.dropout_layers)
        self.keep_masks = False
        self.last_masks: Tensor | None = None
        self.replay_masks: Tensor | None = None
        self.evaluations: list[tuple[Tensor, Tensor, Tensor | None]] | None = None

    def _build_mlp_extractor(self) -> None:
        # Override: SB3 builds its MlpExtractor here; ours is the same network with the dropout layers added.
        self.mlp_extractor = DropoutMlpExtractor(
            self.features_dim,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            device=self.device,
            dropout=self.dropout,
            dropout_value=self.dropout_value,
            maths=self.maths,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Override: SB3 rebuilds a saved policy (model.save / PPO.load) from these; the dropout is part of the network.
        return {**super()._get_constructor_parameters(), "dropout": self.dropout, "dropout_value": self.dropout_value}

    # --- dropout p and masks

    @property
    def dropout_p(self) -> float:
        """The p of every dropout layer (a dropout schedule changes it between updates)."""
        return self.dropout

    def set_dropout(self, p: float) -> None:
        """Set p on every dropout layer."""
        self.dropout = float(p)
        for layer in self.dropout_layers:
            layer.p = self.dropout

    @property
    def dropout_active(self) -> bool:
        """Do the dropout layers draw masks now (train mode and p > 0)?"""
        return self.dropout > 0 and any(layer.training for layer in self.dropout_layers)

    def sample_masks(self, batch: int) -> Tensor:
        """Fresh masks for every dropout layer and ``batch`` samples: ``(batch, mask_width)`` (all ones when p = 0)."""
        return self.maths.dropout_mask((batch, self.mask_width), self.dropout)

    @contextlib.contextmanager
    def using_masks(self, masks: Tensor | None) -> Iterator[None]:
        """Within the block, every dropout layer uses its columns of ``masks`` (``(batch, mask_width)``) instead of
        drawing; None changes nothing."""
        if masks is None:
            yield
            return
        start = 0
        try:
            for layer in self.dropout_layers:
                layer.stored = masks[:, start : start + layer.width]
                start += layer.width
            yield
        finally:
            for layer in self.dropout_layers:
                layer.stored = None

    # --- the two forwards SB3's PPO makes

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        # Override: in SB3's on-policy algorithms forward() is the rollout's acting pass (collect_rollouts calls it
        # once per step). Consistent dropout must keep the masks that chose each action, so it draws them here,
        # explicitly, and keeps them for the rollout buffer; every other mode runs SB3's forward unchanged.
        if not (self.keep_masks and self.dropout_active):
            return super().forward(obs, deterministic)
        self.last_masks = self.sample_masks(len(obs))
        with self.using_masks(self.last_masks):
            return super().forward(obs, deterministic)

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        # Override: SB3's train() calls this once per minibatch, right after the rollout buffer handed the minibatch
        # out. Consistent dropout replays that minibatch's stored masks (replay_masks, set by the buffer); and
        # DropoutPPO records what the update saw (evaluations) to measure the update as the sandbox does.
        masks, self.replay_masks = self.replay_masks, None
        with self.using_masks(masks):
            values, log_prob, entropy = super().evaluate_actions(obs, actions)
        if self.evaluations is not None:
            self.evaluations.append(
                (values.detach().flatten(), log_prob.detach(), None if entropy is None else entropy.detach())
            )
        return values, log_prob, entropy


# --- the rollout buffer ----------------------------------------------------------------------------------------


class DropoutRolloutBuffer(RolloutBuffer):
    """SB3's ``RolloutBuffer`` plus each transition's dropout masks (consistent dropout: ``masks``, ``(T, N, width)``,
    then flattened like SB3's arrays), and a record of the minibatches it hands out (``handed_out``, for the update's
    metrics). ``policy`` is set by :class:`DropoutPPO`: the masks come from it, and go back to it."""

    policy: DropoutActorCriticPolicy | None = None
    handed_out: list[RolloutBufferSamples] | None = None

    def reset(self) -> None:
        super().reset()
        self.masks: np.ndarray | None = None

    def add(self, *args, **kwargs) -> None:
        # Override: SB3's collect_rollouts gives add() what it knows; the masks that chose these actions are the
        # policy's (kept by its forward a moment ago), stored at the same position.
        pos = self.pos
        super().add(*args, **kwargs)
        if self.policy is not None and self.policy.keep_masks and self.policy.last_masks is not None:
            masks = self.policy.last_masks.cpu().numpy()
            if self.masks is None:
                self.masks = np.zeros((self.buffer_size, self.n_envs, masks.shape[1]), np.float32)
            self.masks[pos] = masks
            self.policy.last_masks = None

    def get(self, batch_size: int | None = None):
        # Override: SB3 flattens its (T, N, ...) arrays to (T * N, ...) on the first get(); the masks alike.
        if not self.generator_ready and self.masks is not None:
            self.masks = self.swap_and_flatten(self.masks)
        yield from super().get(batch_size)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> RolloutBufferSamples:
        # Override: SB3's train() evaluates each minibatch right after receiving it, so its masks go to the policy
        # now; and the minibatch is recorded for the update's metrics.
        samples = super()._get_samples(batch_inds, env)
        if self.masks is not None and self.policy is not None:
            self.policy.replay_masks = self.to_torch(self.masks[batch_inds])
        if self.handed_out is not None:
            self.handed_out.append(samples)
        return samples


# --- the algorithm ---------------------------------------------------------------------------------------------


class _RolloutDropout(BaseCallback):
    """Dropout on while acting (modes naive and consistent). SB3's collect_rollouts has just put the policy in eval
    mode; ``on_rollout_start`` comes right after that, before the first step."""

    def _on_rollout_start(self) -> None:
        for layer in self.model.policy.dropout_layers:
            layer.train(True)

    def _on_step(self) -> bool:
        return True


class DropoutPPO(PPO):
    """SB3's PPO whose policy has dropout, in one of the four dropout modes (``sandbox/dropout_modes.py``):

    - ``off``: p is set to 0 on every dropout layer (the policy is then SB3's MlpPolicy);
    - ``rollout-eval``: SB3's own behaviour, unchanged (no dropout while acting, fresh masks in the update);
    - ``naive``: fresh masks while acting too (a callback turns the dropout layers on for the rollout);
    - ``consistent``: the masks that chose each action are stored in the rollout buffer and replayed in the update.

    ``"MlpPolicy"`` means :class:`DropoutActorCriticPolicy` here (with ``policy_kwargs=dict(dropout=p)``). After each
    update, ``last_update`` holds the sandbox's per-update metrics (``first_ratio_dev``, ``first_clipfrac``,
    ``clipfrac``, ``approx_kl``, ..., see ``sandbox/metrics.py``), also recorded in SB3's logger under ``dropout/``.
    """

    policy: DropoutActorCriticPolicy
    rollout_buffer: DropoutRolloutBuffer
    policy_aliases = {**PPO.policy_aliases, "MlpPolicy": DropoutActorCriticPolicy}

    def __init__(self, policy, env, dropout_mode: DropoutModeName = "rollout-eval", **kwargs):
        if dropout_mode not in MODES:
            raise ValueError(f"unknown dropout_mode {dropout_mode!r}; one of: {', '.join(MODES)}")
        self.dropout_mode = MODES[dropout_mode]
        self.last_update: dict[str, float] = {}
        self._grad_sq: list[Tensor] = []
        self._grad_norms: list[Tensor] | None = None
        kwargs.setdefault("rollout_buffer_class", DropoutRolloutBuffer)
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        # Override (extends): after SB3 has built the buffer and the policy, connect them and apply the mode.
        super()._setup_model()
        if not isinstance(self.policy, DropoutActorCriticPolicy) or not isinstance(
            self.rollout_buffer, DropoutRolloutBuffer
        ):
            raise TypeError("DropoutPPO needs a DropoutActorCriticPolicy and a DropoutRolloutBuffer")
        if not self.dropout_mode.uses_dropout:
            self.policy.set_dropout(0.0)
        self.policy.keep_masks = self.dropout_mode.store_masks and self.policy.dropout > 0
        self.rollout_buffer.policy = self.policy
        # The gradient norm before SB3 clips it (its train() discards the value clip_grad_norm_ returns): each
        # parameter's squared norm as backward finishes it, summed when the optimizer steps.
        for param in self.policy.parameters():
            param.register_post_accumulate_grad_hook(self._on_grad)
        self.policy.optimizer.register_step_pre_hook(self._on_optimizer_step)

    def _on_grad(self, param: Tensor) -> None:
        if self._grad_norms is not None:
            self._grad_sq.append(param.grad.detach().square().sum())

    def _on_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._grad_norms is not None and self._grad_sq:
            self._grad_norms.append(torch.stack(self._grad_sq).sum().sqrt())
        self._grad_sq = []

    def _init_callback(self, callback, progress_bar: bool = False) -> BaseCallback:
        # Override (extends): SB3 turns learn()'s callback argument into one callback here. In modes whose rollout
        # runs in train mode, ours goes first, so that dropout is on before any other callback sees a step.
        if self.dropout_mode.rollout_train:
            given = callback if isinstance(callback, list) else [] if callback is None else [callback]
            callback = [_RolloutDropout(), *(c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in given)]
        return super()._init_callback(callback, progress_bar)

    def train(self) -> None:
        # Override (wraps SB3's train() unchanged): record what each minibatch saw, then compute the update's
        # metrics from it, as the sandbox's learner does. Nothing recorded changes SB3's computation or random stream.
        clip = float(self.clip_range(self._current_progress_remaining))
        clip_vf = None if self.clip_range_vf is None else float(self.clip_range_vf(self._current_progress_remaining))
        self.rollout_buffer.handed_out, self.policy.evaluations, self._grad_norms = [], [], []
        try:
            super().train()
            samples, evaluations, norms = self.rollout_buffer.handed_out, self.policy.evaluations, self._grad_norms
        finally:
            self.rollout_buffer.handed_out, self.policy.evaluations, self._grad_norms = None, None, None
        seen = [
            minibatch_seen(s, e, clip, clip_vf, self.normalize_advantage, norms[i] if i < len(norms) else None)
            for i, (s, e) in enumerate(zip(samples, evaluations))
        ]
        per_epoch = math.ceil(self.rollout_buffer.buffer_size * self.rollout_buffer.n_envs / self.batch_size)
        epochs_done = self.n_epochs if len(norms) == len(seen) else (len(seen) - 1) // per_epoch
        values = torch.as_tensor(self.rollout_buffer.values).flatten()
        returns = torch.as_tensor(self.rollout_buffer.returns).flatten()
        self.last_update = {
            **update_metrics(seen, clip_coef=clip, epochs_done=epochs_done),
            "explained_var": explained_variance(values, returns),
            "lr": float(self.policy.optimizer.param_groups[0]["lr"]),
            "clip_coef": clip,
        }
        for name in ("first_ratio_dev", "first_clipfrac", "first_approx_kl"):
            self.logger.record(f"dropout/{name}", self.last_update[name])


@torch.no_grad()
def minibatch_seen(
    samples: RolloutBufferSamples,
    evaluated: tuple[Tensor, Tensor, Tensor | None],
    clip_range: float,
    clip_range_vf: float | None,
    normalize_advantage: bool,
    grad_norm: Tensor | None,
) -> Seen:
    """What one minibatch of SB3's update saw, as the sandbox's :class:`~sandbox.algos.diagnostics.Seen`: the log-ratios
    and the advantages as SB3's loss used them (normalised per minibatch), and the loss terms recomputed from them
    with SB3's formulas. ``value_loss`` is the sandbox's ``0.5 * (V - R)^2`` (SB3 logs ``(V - R)^2``)."""
    values, log_prob, entropy = evaluated
    logratio = log_prob - samples.old_log_prob
    adv = normalize_advantages(samples.advantages) if normalize_advantage else samples.advantages  # as SB3's
    ratio = logratio.exp()
    policy_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()
    predicted = values
    if clip_range_vf is not None:
        predicted = samples.old_values + (values - samples.old_values).clamp(-clip_range_vf, clip_range_vf)
    value_loss = 0.5 * F.mse_loss(predicted, samples.returns)
    ent = entropy.mean() if entropy is not None else -log_prob.mean()
    value_dev = (values - samples.old_values).abs().mean()  # first_value_dev: 0 when the critic is the rollout's
    return Seen(logratio, adv, ent, policy_loss, value_loss, grad_norm=grad_norm, value_dev=value_dev)


# --- the sandbox config in SB3's names --------------------------------------------------------------------------


class Linear:
    """SB3 schedule: ``value * progress_remaining`` (1 at the start, 0 at the end), rl-baselines3-zoo's ``lin_``.

    SB3 evaluates it after each rollout (``progress_remaining = 1 - steps done / total``); the sandbox's PPO anneals
    by the steps done before the rollout, so the two schedules are one rollout apart."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.value

    def __repr__(self) -> str:
        return f"Linear({self.value})"


def sb3_hyperparameters(cfg: Config) -> dict[str, Any]:
    """The resolved sandbox config as keyword arguments of SB3's ``PPO`` (and of its policy, ``policy_kwargs``).

    ``batch_size`` is SB3's minibatch size, ``num_envs * num_steps / num_minibatches``; ``vf_coef`` is halved (SB3's
    value loss is ``(V - R)^2``, the sandbox's ``0.5 * (V - R)^2``); ``target_kl`` is divided by 1.5 (SB3 stops at
    ``1.5 * target_kl``, the sandbox at ``target_kl``); ``clip_vloss`` becomes ``clip_range_vf = clip_coef`` (SB3's
    value clipping, the clipped prediction's error, where CleanRL takes the larger of the clipped and unclipped one);
    ``anneal_lr`` and ``anneal_clip`` become :class:`Linear` schedules. The policy: separate tanh MLPs of
    ``hidden_sizes``, as the sandbox's.
    """
    n = cfg.num_envs * cfg.num_steps
    return dict(
        learning_rate=Linear(cfg.learning_rate) if cfg.anneal_lr else cfg.learning_rate,
        n_steps=cfg.num_steps,
        batch_size=n // cfg.num_minibatches,
        n_epochs=cfg.update_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=Linear(cfg.clip_coef) if cfg.anneal_clip else cfg.clip_coef,
        clip_range_vf=cfg.clip_coef if cfg.clip_vloss else None,
        normalize_advantage=cfg.norm_adv,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef / 2,
        max_grad_norm=cfg.max_grad_norm,
        target_kl=None if cfg.target_kl is None else cfg.target_kl / 1.5,
        seed=cfg.seed,
        device="cpu",
        policy_kwargs=dict(
            net_arch=dict(pi=list(cfg.hidden_sizes), vf=list(cfg.hidden_sizes)),
            activation_fn=nn.Tanh,
            ortho_init=cfg.ortho_init,
            optimizer_kwargs=dict(eps=cfg.adam_eps),
            dropout=cfg.effective_dropout,
            dropout_value=cfg.dropout_value,
        ),
    )


def check_sb3_env(env_id: str, env_params: dict[str, float] | None = None) -> tuple[gym.Space, gym.Space]:
    """Raise :class:`ConfigError` unless ``env_id`` builds, takes ``env_params`` and has spaces SB3's PPO with
    ``MlpPolicy`` handles (any observation space but Dict and Tuple; Box, Discrete, MultiDiscrete or MultiBinary
    actions). Returns ``(observation_space, action_space)``."""
    check_env_id(env_id)
    try:
        env = gym.make(env_id)
    except gym.error.Error as err:
        raise ConfigError("env", f"{env_id} cannot be built here: {str(err).splitlines()[0]}") from None
    try:
        obs, act = env.observation_space, env.action_space
        if isinstance(obs, (gym.spaces.Dict, gym.spaces.Tuple)) or not isinstance(
            obs, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
        ):
            raise ConfigError("env", f"{env_id} has observation space {obs}; SB3's MlpPolicy needs a flat one")
        if not isinstance(act, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
            raise ConfigError("env", f"{env_id} has action space {act}; SB3's PPO takes Box, Discrete or Multi*")
        apply_env_params(env, env_id, env_params or {})
        return obs, act
    finally:
        env.close()


def make_model(cfg: Config, maths: Maths | None = None) -> DropoutPPO:
    """The :class:`DropoutPPO` a resolved config describes, on SB3's own vector env (``make_vec_env``: DummyVecEnv of
    Monitor-wrapped envs, env i reset with seed + i), with ``env_params`` applied to every copy."""
    env = make_vec_env(cfg.env, n_envs=cfg.num_envs, seed=cfg.seed)
    for sub in env.envs:
        apply_env_params(sub, cfg.env, cfg.env_params)
    kwargs = sb3_hyperparameters(cfg)
    kwargs["policy_kwargs"]["maths"] = maths or Maths()
    return DropoutPPO("MlpPolicy", env, dropout_mode=cfg.dropout_mode, verbose=0, **kwargs)


# --- the sandbox trainer ---------------------------------------------------------------------------------------


def as_sandbox_state_dict(policy: ActorCriticPolicy) -> dict[str, Tensor] | None:
    """The weights of an SB3 MLP policy (separate tanh MLPs, 1-D Box observations, Discrete or 1-D Box actions) under
    the names of the sandbox's :class:`~sandbox.models.mlp.Agent`, which computes the same function; None for any other
    policy. With them, ``sandbox eval`` and ``--ref`` read an SB3 run's ``policy.pt``."""
    obs, act = policy.observation_space, policy.action_space
    if not (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1 and policy.activation_fn is nn.Tanh):
        return None
    if not (isinstance(act, gym.spaces.Discrete) or (isinstance(act, gym.spaces.Box) and len(act.shape) == 1)):
        return None
    out: dict[str, Tensor] = {}
    for net, trunk, head in (
        ("actor", policy.mlp_extractor.policy_net, policy.action_net),
        ("critic", policy.mlp_extractor.value_net, policy.value_net),
    ):
        linears = [m for m in trunk if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            out[f"{net}.hidden.{i}.weight"], out[f"{net}.hidden.{i}.bias"] = layer.weight, layer.bias
        out[f"{net}.head.weight"], out[f"{net}.head.bias"] = head.weight, head.bias
    if isinstance(act, gym.spaces.Box):
        out["log_std"] = policy.log_std
    return {k: v.detach().clone() for k, v in out.items()}


class SandboxView:
    """The SB3 policy as the sandbox's run bookkeeping sees it (:class:`~sandbox.algos.run.Run`): its dropout p, and its
    weights for ``policy.pt``: in the sandbox's Agent layout when the network is one (``sandbox eval`` reads it),
    else SB3's own names (``network_spec`` then says ``"sb3"``)."""

    def __init__(self, policy: DropoutActorCriticPolicy):
        self.sb3_policy = policy

    @property
    def dropout_p(self) -> float:
        return self.sb3_policy.dropout_p

    def set_dropout(self, p: float) -> None:
        self.sb3_policy.set_dropout(p)

    def state_dict(self) -> dict[str, Tensor]:
        converted = as_sandbox_state_dict(self.sb3_policy)
        return converted if converted is not None else self.sb3_policy.state_dict()


class _Source:
    """What :class:`~sandbox.algos.run.Run` reads from a trainer's source of experience, for the SB3 model."""

    def __init__(self, cfg: Config, model: DropoutPPO):
        self.model = model
        policy = model.policy
        self.policy = SandboxView(policy)
        if as_sandbox_state_dict(policy) is not None:
            self.network_spec = gym_network(
                cfg, policy.observation_space.shape[0], policy.action_space, with_critic=True
            )
        else:
            self.network_spec = {"type": "sb3", "env": cfg.env, "observation": str(policy.observation_space)}
            self.network_spec["action"] = str(policy.action_space)
        self.reference = frozen_copy(policy)  # kl_ref: the initial policy, as for the sandbox's PPO on Gym
        self.threshold = reward_threshold(cfg.env)
        self.summary_extra = {"reference_path": None}

    def close(self) -> None:
        self.model.env.close()


def frozen_copy(policy: DropoutActorCriticPolicy) -> DropoutActorCriticPolicy:
    """A copy of ``policy`` in eval mode without gradients, built without moving torch's random stream."""
    with torch.random.fork_rng(devices=[]):
        copy = type(policy)(**policy._get_constructor_parameters())
    copy.load_state_dict(policy.state_dict())
    copy.set_training_mode(False)
    return copy.requires_grad_(False)


class _RunCallback(BaseCallback):
    """SB3's ``learn()`` reporting to the sandbox's :class:`~sandbox.algos.run.Run`: each rollout starts the run's next
    update (its number and scheduled dropout p; SB3 anneals its own learning rate and clip range, ``train()`` calls
    ``_update_learning_rate``); each step counts the steps and the finished episodes (Monitor's ``info["episode"]``)
    and stops when solved with ``stop_at_threshold``; each rollout's end measures ``kl_ref``; the metrics row of an
    update is written when its ``train()`` is done (at the next rollout's start, or the end)."""

    def __init__(self, run: Run, reference: DropoutActorCriticPolicy):
        super().__init__()
        self.run, self.updates, self.reference = run, run.updates(), reference
        self.kl_ref = math.nan

    def _on_rollout_start(self) -> None:
        self._write_row()
        next(self.updates)

    def _on_step(self) -> bool:
        ended = [info["episode"] for info in self.locals["infos"] if "episode" in info]
        returns, lengths = [float(e["r"]) for e in ended], [int(e["l"]) for e in ended]
        return not self.run.record_step(self.training_env.num_envs, returns, lengths)  # False: stop, solved

    @torch.no_grad()
    def _on_rollout_end(self) -> None:
        """``kl_ref``: k1 = log pi_old - log pi_ref per step, mean over the rollout, the reference (the initial policy,
        eval mode) evaluated in one batched forward on the rollout's own actions."""
        buf = self.model.rollout_buffer
        obs = torch.as_tensor(buf.observations.reshape(-1, *buf.obs_shape))
        actions = torch.as_tensor(buf.actions.reshape(-1, buf.action_dim))
        if isinstance(self.reference.action_space, gym.spaces.Discrete):
            actions = actions.long().flatten()
        ref_logp = self.reference.get_distribution(obs).log_prob(actions)
        self.kl_ref = float((torch.as_tensor(buf.log_probs).flatten() - ref_logp).mean())

    def _on_training_end(self) -> None:
        self._write_row()

    def _write_row(self) -> None:
        metrics, self.model.last_update = self.model.last_update, {}
        if not metrics:
            return
        run = self.run
        run.log(
            {
                "ep_return_mean": run.recent_return(20),
                "ep_len_mean": run.recent_length(20),
                **metrics,
                "kl_ref": self.kl_ref,
                "beta": 0.0,
            }
        )


def train_sb3_ppo(cfg: Config, maths: Maths, log: RunLog, resume: dict | None = None) -> RunResult:
    """SB3's PPO on ``cfg.env`` with the config mapped by :func:`sb3_hyperparameters`, in ``cfg.dropout_mode``; SB3's
    ``learn()`` runs unchanged, the sandbox's :class:`~sandbox.algos.run.Run` keeps the books. No resume (the config
    refuses ``save_every`` for sb3-ppo)."""
    if resume is not None:
        raise ConfigError("resume", "sb3-ppo runs have no checkpoints to resume from")
    model = make_model(cfg, maths)
    source = _Source(cfg, model)
    budget = cfg.num_updates * cfg.batch_size
    with Run(cfg, log, maths, source, budget=budget) as run:
        model.learn(budget, callback=_RunCallback(run, source.reference))
    return run.result


__all__ = [
    "DropoutActorCriticPolicy",
    "DropoutMlpExtractor",
    "DropoutPPO",
    "DropoutRolloutBuffer",
    "Linear",
    "MaskedDropout",
    "as_sandbox_state_dict",
    "check_sb3_env",
    "make_model",
    "sb3_hyperparameters",
    "train_sb3_ppo",
]
