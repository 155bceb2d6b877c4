"""Typed run configuration. Each field's docstring is its ``--help`` text and its documentation.

Defaults follow CleanRL's ``ppo.py``; ``preset("cartpole")`` gives the rl-baselines3-zoo tuned values. Field
names follow the papers and CleanRL (``clip_coef``, ``gae_lambda``, ``update_epochs``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Literal

DropoutMode = Literal["off", "rollout-eval", "naive", "consistent"]
DROPOUT_MODES: tuple[str, ...] = ("off", "rollout-eval", "naive", "consistent")
ALGOS: tuple[str, ...] = ("ppo",)


class ConfigError(ValueError):
    """A bad config value. ``str(err)`` is a one-line message that names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"--{field.replace('_', '-')}: {message}")


@dataclasses.dataclass
class Config:
    """Everything that defines a run. Same config and seed, same metrics."""

    # --- what to run -------------------------------------------------------------------------------------------
    algo: Literal["ppo"] = "ppo"
    """Algorithm."""
    env: str = "CartPole-v1"
    """Gymnasium id with a Box observation space and a Discrete or Box action space."""
    seed: int = 0
    """Seeds torch, the environments and everything else random."""
    total_steps: int = 100_000
    """Environment steps to train for (all envs together), rounded down to whole batches; also the horizon of the
    LR and clip annealing."""

    # --- PPO ----------------------------------------------------------------------------------------------------
    num_envs: int = 4
    """Parallel environments (gymnasium vector API; numpy-vectorised where gymnasium offers it)."""
    num_steps: int = 128
    """Steps per environment per rollout; a batch is num_envs * num_steps transitions."""
    learning_rate: float = 2.5e-4
    """Adam learning rate (typical 1e-4 to 1e-3)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    adam_eps: float = 1e-5
    """Adam epsilon (PPO implementations use 1e-5, not PyTorch's 1e-8)."""
    gamma: float = 0.99
    """Discount factor (typical 0.98 to 0.999)."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 = one-step TD, 1 = Monte Carlo (typical 0.8 to 0.95)."""
    num_minibatches: int = 4
    """Minibatches per epoch; the batch is split into this many nearly equal parts."""
    update_epochs: int = 4
    """Passes over each batch. More epochs move the policy further from the one that collected the data."""
    norm_adv: bool = True
    """Normalise advantages to mean 0, std 1 within each minibatch."""
    clip_coef: float = 0.2
    """PPO clip range eps: the ratio is clipped to [1 - eps, 1 + eps] (typical 0.1 to 0.3)."""
    anneal_clip: bool = False
    """Decay clip_coef linearly to 0 over total_steps, as rl-zoo3's 'lin_0.2' does."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values with clip_coef, never annealed (CleanRL; SB3 does not)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient (0 to 0.01 typical)."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop an update's epochs early once a minibatch's approx_kl exceeds this, checked before its gradient step
    (None = never). Noisy dropout modes make this fire for no real reason: watch first_approx_kl."""

    # --- networks -----------------------------------------------------------------------------------------------
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of both the policy and the value MLP (tanh, separate networks)."""
    ortho_init: bool = True
    """Orthogonal init: hidden layers gain sqrt(2), policy head 0.01, value head 1, biases 0."""

    # --- dropout ------------------------------------------------------------------------------------------------
    dropout: float = 0.0
    """Dropout probability p after every hidden activation of the policy MLP, in [0, 1)."""
    dropout_mode: DropoutMode = "naive"
    """How rollouts and updates treat dropout. off: p = 0 everywhere; rollout-eval: no dropout at rollout, fresh
    masks in the update (what SB3 does); naive: fresh masks at rollout and again in the update (PyTorch's
    default train mode, what TRL does); consistent: the rollout's masks are stored and reused in the update."""
    dropout_value: bool = False
    """Put dropout in the value MLP too (same p and mode)."""

    # --- run ----------------------------------------------------------------------------------------------------
    out: str | None = None
    """Run directory. The CLI defaults to runs/<env>-<algo>-<mode>-p<p>-s<seed>-<time>; the Python API writes
    nothing when None."""
    overwrite: bool = False
    """Replace an existing run directory (otherwise an existing --out is refused)."""
    stop_at_threshold: bool = False
    """Stop as soon as the mean of the last 20 episodes reaches the env's reward_threshold."""
    quiet: bool = False
    """No progress bar (it is also off when stderr is not a terminal)."""
    torch_threads: int = 1
    """Torch intra-op threads. 1 is fastest for these small nets; run seeds in parallel processes instead."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    @property
    def effective_dropout(self) -> float:
        """The p the dropout layers actually use: 0 in mode ``off``."""
        return 0.0 if self.dropout_mode == "off" else self.dropout

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(unknown[0], f"unknown config field; known fields: {', '.join(sorted(names))}")
        d = dict(d)
        if "hidden_sizes" in d:
            d["hidden_sizes"] = tuple(d["hidden_sizes"])
        return cls(**d)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 (SB3 PPO): n_envs 8, n_steps 32, batch_size 256,
    # gae_lambda 0.8, gamma 0.98, n_epochs 20, ent_coef 0, lr lin_1e-3, clip_range lin_0.2, n_timesteps 1e5.
    # SB3's remaining defaults: no value clipping, max_grad_norm 0.5, per-minibatch advantage normalisation, and a
    # value loss vf_coef * MSE with vf_coef 0.5; ours is vf_coef * 0.5 * MSE (CleanRL), hence vf_coef 1.0 here.
    "cartpole": dict(
        env="CartPole-v1",
        total_steps=100_000,
        num_envs=8,
        num_steps=32,
        num_minibatches=1,
        update_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        ent_coef=0.0,
        learning_rate=1e-3,
        anneal_lr=True,
        clip_coef=0.2,
        anneal_clip=True,
        clip_vloss=False,
        vf_coef=1.0,
    ),
}


def preset(name: str, **overrides) -> Config:
    """A :class:`Config` with a named preset's values, then ``overrides`` on top.

    ``preset("cartpole", dropout=0.2, dropout_mode="consistent")``. Presets: see ``PRESETS``.
    """
    if name not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r}; one of: {', '.join(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides})


def _check_positive(cfg: Config, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(name, f"must be a positive integer, got {value!r}")


def _check_finite(cfg: Config, name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        interval = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open else "]")
        raise ConfigError(name, f"must be in {interval}, got {value!r}")


def validate(cfg: Config) -> Config:
    """Check every field that can be checked without building the environment; raise :class:`ConfigError`."""
    if cfg.algo not in ALGOS:
        raise ConfigError("algo", f"unknown algorithm {cfg.algo!r}; one of: {', '.join(ALGOS)}")
    if cfg.dropout_mode not in DROPOUT_MODES:
        raise ConfigError("dropout_mode", f"unknown mode {cfg.dropout_mode!r}; one of: {', '.join(DROPOUT_MODES)}")
    _check_finite(cfg, "dropout", 0.0, 1.0, hi_open=True)
    _check_positive(cfg, "total_steps", "num_envs", "num_steps", "num_minibatches", "update_epochs",
                    "torch_threads")
    if cfg.total_steps < cfg.batch_size:
        raise ConfigError("total_steps", f"must be at least one batch, num_envs * num_steps = {cfg.batch_size}, "
                                         f"got {cfg.total_steps}")
    if not (isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**32):
        raise ConfigError("seed", f"must be an integer in [0, 2**32), got {cfg.seed!r}")
    if cfg.num_minibatches > cfg.batch_size:
        raise ConfigError("num_minibatches", f"must be at most num_envs * num_steps = {cfg.batch_size}, "
                                             f"got {cfg.num_minibatches}")
    _check_finite(cfg, "learning_rate", 0.0, 1.0, lo_open=True)
    _check_finite(cfg, "gamma", 0.0, 1.0)
    _check_finite(cfg, "gae_lambda", 0.0, 1.0)
    _check_finite(cfg, "clip_coef", 0.0, 10.0, lo_open=True)
    _check_finite(cfg, "ent_coef", 0.0, 10.0)
    _check_finite(cfg, "vf_coef", 0.0, 100.0)
    _check_finite(cfg, "max_grad_norm", 0.0, math.inf, lo_open=True, hi_open=True)
    _check_finite(cfg, "adam_eps", 0.0, 1.0, lo_open=True)
    if cfg.target_kl is not None:
        _check_finite(cfg, "target_kl", 0.0, math.inf, lo_open=True, hi_open=True)
    if not cfg.hidden_sizes or any(not isinstance(h, int) or h <= 0 for h in cfg.hidden_sizes):
        raise ConfigError("hidden_sizes", f"must be one or more positive integers, got {cfg.hidden_sizes!r}")
    return cfg


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` for an id gymnasium does not know, suggesting the closest ones."""
    import gymnasium as gym

    if env_id in gym.envs.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see gymnasium.envs.registry for the ids"
    raise ConfigError("env", f"unknown environment id {env_id!r}{hint}")
