"""Typed run configuration. Each field's docstring is its ``--help`` text and its documentation.

Gym defaults follow CleanRL's ``ppo.py``; ``preset("cartpole")`` gives the rl-baselines3-zoo tuned values. A few
fields default to None, meaning "the usual value for this algorithm and kind of task" (``FAMILY_DEFAULTS``):
:func:`resolve` fills them in, and ``config.json`` records the values used. Field names follow the papers and
CleanRL (``clip_coef``, ``gae_lambda``, ``beta``, ``group_size``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Literal

DropoutMode = Literal["off", "rollout-eval", "naive", "consistent"]
DROPOUT_MODES: tuple[str, ...] = ("off", "rollout-eval", "naive", "consistent")
ALGOS: tuple[str, ...] = ("ppo", "grpo")
LANG_PREFIX = "lang:"


class ConfigError(ValueError):
    """A bad config value. ``str(err)`` is a one-line message that names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"--{field.replace('_', '-')}: {message}")


@dataclasses.dataclass
class Config:
    """Everything that defines a run. Same config and seed, same metrics."""

    # --- what to run -------------------------------------------------------------------------------------------
    algo: Literal["ppo", "grpo"] = "ppo"
    """Algorithm: ppo (clipped surrogate, value function, GAE) or grpo (group-relative advantages, no value)."""
    env: str = "CartPole-v1"
    """A Gymnasium id (Box observations; Discrete or Box actions), or a language task lang:NAME with NAME one of
    digit, positive, reverse, sort, add, length (run by the tiny transformer from its pretrained reference)."""
    seed: int = 0
    """Seeds torch, the environments and everything else random."""
    total_steps: int = 100_000
    """Environment steps to train for (all envs together; for language tasks, sampled tokens), rounded down to
    whole batches; also the horizon of the LR and clip annealing."""

    # --- PPO ----------------------------------------------------------------------------------------------------
    num_envs: int = 4
    """Parallel environments (gymnasium vector API; numpy-vectorised where gymnasium offers it)."""
    num_steps: int = 128
    """Steps per environment per rollout; a batch is num_envs * num_steps transitions."""
    learning_rate: float | None = None
    """Adam learning rate (typical 1e-4 to 1e-3). None: 2.5e-4 for PPO on Gym, 3e-3 for GRPO on Gym (one step per
    minibatch of a large batch), 1e-3 on language tasks."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    adam_eps: float = 1e-5
    """Adam epsilon (PPO implementations use 1e-5, not PyTorch's 1e-8)."""
    gamma: float | None = None
    """Discount factor (typical 0.98 to 0.999). None: 0.99 on Gym, 1 on language tasks (reward at the end)."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 = one-step TD, 1 = Monte Carlo (typical 0.8 to 0.95)."""
    num_minibatches: int | None = None
    """Minibatches per epoch (per pass for GRPO); the batch is split into this many nearly equal parts.
    None: 4 on Gym, 1 on language tasks (one gradient step per batch and pass)."""
    update_epochs: int = 4
    """Passes over each batch. More epochs move the policy further from the one that collected the data."""
    norm_adv: bool = True
    """Normalise advantages to mean 0, std 1: within each minibatch (PPO on Gym), over the batch's tokens (PPO on
    language tasks). GRPO's advantages are normalised per group instead (scale_rewards)."""
    clip_coef: float = 0.2
    """PPO clip range eps: the ratio is clipped to [1 - eps, 1 + eps] (typical 0.1 to 0.3)."""
    anneal_clip: bool = False
    """Decay clip_coef linearly to 0 over total_steps, as rl-zoo3's 'lin_0.2' does."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values with clip_coef, never annealed (CleanRL; SB3 does not)."""
    ent_coef: float | None = None
    """Entropy bonus coefficient (0 to 0.01 typical). None: 0.01 for PPO on Gym (CleanRL), 0 otherwise."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop an update's epochs (GRPO: passes) early once a minibatch's approx_kl exceeds this, checked before its
    gradient step (None = never). Noisy dropout modes make it fire for no real reason: watch first_approx_kl."""

    # --- GRPO (Shao et al. 2024) and the language tasks -----------------------------------------------------------
    group_size: int = 8
    """G: completions per prompt (episodes per reset seed on Gym) whose rewards are compared with each other."""
    prompts_per_update: int = 16
    """Prompts per batch (reset seeds per batch for GRPO on Gym); a batch holds prompts_per_update * group_size
    completions or episodes."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """GRPO advantage scaling: divide by the group's std, the batch's std, or not at all (none = Dr. GRPO)."""
    clip_coef_high: float | None = None
    """Upper clip range eps_high (None = clip_coef; DAPO uses 0.2 low and 0.28 high)."""
    mu: int = 1
    """GRPO optimisation passes over each batch (mu in DeepSeekMath, num_iterations in TRL)."""
    loss_agg: Literal["grpo", "bnpo", "dr_grpo"] = "grpo"
    """Token loss aggregation (language tasks; steps on Gym): grpo = mean per sequence then over sequences, bnpo =
    mean over all tokens of the batch, dr_grpo = sum / (sequences * max length)."""
    drop_equal_groups: bool = False
    """Leave out groups whose rewards are all equal (they have no signal; DAPO's dynamic sampling)."""
    mask_truncated: bool = False
    """Leave out completions that hit the length limit without <eos>."""
    temperature: float = 1.0
    """Sampling temperature for language tasks (log-probs are those of the tempered distribution)."""
    sparse: bool = False
    """lang:reverse and lang:sort: reward 1 for an exact match only (default: fraction of positions right)."""
    partial_credit: bool = False
    """lang:add: reward the fraction of digits right (default: exact match only)."""
    sft_steps: int = 600
    """Supervised steps for the language tasks' reference model (cached on disk: see sandbox pretrain)."""

    # --- KL to a frozen reference policy -----------------------------------------------------------------------------
    beta: float = 0.0
    """KL coefficient (DeepSeekMath 0.04; TRL's default 0). The reference is --ref if given, else the initial policy
    (Gym) or the task's pretrained model (language tasks); frozen, in eval mode."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Estimator of KL(pi_theta || pi_ref) in the loss: k1 = log ratio, k2 = log ratio^2 / 2, k3 = r - 1 - log r."""
    kl_in: Literal["loss", "reward"] = "loss"
    """Where the KL enters: the loss (GRPO style, differentiable) or the reward (-beta * k1 per token or step,
    detached, before the advantages; Ziegler et al. 2019)."""
    kl_target: float | None = None
    """Adaptive beta (Ziegler et al. 2019): steer the measured kl_ref towards this target (None = fixed beta). Same
    unit as kl_ref: nats per sequence (language tasks, GRPO on Gym: per episode), per step for PPO on Gym."""
    kl_horizon: int = 10_000
    """Horizon of the adaptive beta rule, in samples."""
    ref: str | None = None
    """The frozen reference policy: a run directory (its policy.pt) or a policy.pt / checkpoint file of a run on the
    same env (or language task). None: the initial policy (Gym) or the task's pretrained model (language tasks)."""
    init_from_ref: bool = False
    """Start the policy (and PPO's value network, when the reference has one) from --ref's weights. Needs --ref and
    the same network shape (--hidden-sizes)."""

    # --- networks -----------------------------------------------------------------------------------------------
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of both the policy and the value MLP (tanh, separate networks)."""
    ortho_init: bool = True
    """Orthogonal init: hidden layers gain sqrt(2), policy head 0.01, value head 1, biases 0."""

    # --- dropout ------------------------------------------------------------------------------------------------
    dropout: float | None = None
    """Dropout probability p in [0, 1): after every hidden activation of the policy MLP, or GPT-2's embedding,
    attention and residual dropout in the transformer. None: 0 on Gym, 0.1 (GPT-2's) on language tasks."""
    dropout_mode: DropoutMode = "naive"
    """How rollouts and updates treat dropout. off: p = 0 everywhere; rollout-eval: no dropout at rollout, fresh
    masks in the update (what SB3 does); naive: fresh masks at rollout and again in the update (PyTorch's
    default train mode, what TRL does); consistent: the rollout's masks are stored and reused in the update."""
    dropout_value: bool = False
    """Put dropout in the value MLP too (same p and mode)."""
    dropout_schedule: Literal["constant", "early", "early-linear", "late"] = "constant"
    """p over training (Liu et al. 2023): constant; early = p for the first --dropout-cutoff updates, then 0;
    early-linear = from p down to 0 over the cutoff; late = 0 for the first cutoff updates, then p."""
    dropout_cutoff: int = 0
    """The schedule's cutoff, in updates (needed by every schedule but constant)."""
    dropout_samples: int = 1
    """Multi-sample dropout (Inoue 2019): K masks on the last hidden layer, sharing the output head. K = 1 is
    ordinary dropout."""
    multi_sample_average: Literal["loss", "logits"] = "loss"
    """loss: each of the K masks gives its own log-prob and ratio against the same stored logp_old, and the K
    losses are averaged (the paper); logits: the K outputs are averaged into one policy (at rollout too)."""

    # --- sample dropout (drop training samples from the surrogate) -------------------------------------------------
    sample_dropout: Literal["none", "dppo", "sdpo", "outlier"] = "none"
    """Drop samples (transitions or tokens) from the clipped surrogate, recomputed every minibatch step: dppo =
    D-PPO's variance rule (a reconstruction, see README), sdpo = keep |r - 1| < delta (Lin et al. 2023), outlier =
    drop the largest |r*A - mean|."""
    sample_drop_rate: float = 0.1
    """rho: the fraction dropped by dppo and outlier, in [0, 1)."""
    sample_drop_delta: float = 0.25
    """delta: SDPO keeps a sample iff |r - 1| < delta."""
    sample_drop_by_sign: bool = False
    """Apply the drop rate within A > 0 and within A <= 0 separately (dppo, outlier)."""
    grad_diag_every: int = 0
    """Every N updates, measure gradient noise (grad_gdv, grad_gde, grad_snr) on the batch's minibatches before
    the update, without changing training (0 = never)."""

    # --- environment variants ----------------------------------------------------------------------------------
    env_params: dict[str, float] = dataclasses.field(default_factory=dict)
    """Physical parameters of the Gym env, set on it after it is built: e.g. --env-params length 1.0 masspole 0.3
    (CartPole: a longer, heavier pole), --env-params g 15 (Pendulum: stronger gravity). Allowed names: see README
    "Env variants" (a wrong name is refused with the list)."""

    # --- run ----------------------------------------------------------------------------------------------------
    out: str | None = None
    """Run directory. The CLI defaults to runs/<env>-<algo>-<mode>-p<p>-s<seed>-<time>; the Python API writes
    nothing when None."""
    overwrite: bool = False
    """Replace an existing run directory (otherwise an existing --out is refused)."""
    stop_at_threshold: bool = False
    """Stop as soon as the mean of the last 20 episodes reaches the env's reward_threshold."""
    save_every: int = 0
    """Also save a checkpoint every N updates (RUN_DIR/checkpoints/update-NNNNNN.pt: the policy and what
    sandbox train --resume needs). 0: only the final policy.pt."""
    quiet: bool = False
    """No progress bar (it is also off when stderr is not a terminal)."""
    torch_threads: int = 1
    """Torch intra-op threads. 1 is fastest for these small nets; run seeds in parallel processes instead."""

    @property
    def is_lang(self) -> bool:
        return self.env.startswith(LANG_PREFIX)

    @property
    def task_name(self) -> str:
        return self.env[len(LANG_PREFIX) :]

    @property
    def batch_size(self) -> int:
        """Environment steps per update for PPO on Gym (other trainers count their own)."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    @property
    def ref_each_step(self) -> bool:
        """With --ref or a KL term, the reference's log-probs are computed step by step on the acting batch shape
        (equal networks give equal bits: kl_ref exactly 0); when kl_ref is only measured, in one batched forward."""
        return self.ref is not None or self.beta > 0

    @property
    def effective_dropout(self) -> float:
        """The p the dropout layers actually use: 0 in mode ``off`` (call on a resolved config)."""
        return 0.0 if self.dropout_mode == "off" else float(self.dropout)

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


FAMILY_DEFAULTS: dict[tuple[str, str], dict] = {
    # (algo, "gym" or "lang") -> the value of every field left at None
    ("ppo", "gym"): dict(learning_rate=2.5e-4, gamma=0.99, num_minibatches=4, ent_coef=0.01, dropout=0.0),
    ("grpo", "gym"): dict(learning_rate=3e-3, gamma=0.99, num_minibatches=4, ent_coef=0.0, dropout=0.0),
    ("ppo", "lang"): dict(learning_rate=1e-3, gamma=1.0, num_minibatches=1, ent_coef=0.0, dropout=0.1),
    ("grpo", "lang"): dict(learning_rate=1e-3, gamma=1.0, num_minibatches=1, ent_coef=0.0, dropout=0.1),
}


def resolve(cfg: Config) -> Config:
    """Fill the fields left at None with their algorithm and task family's defaults (``FAMILY_DEFAULTS``)."""
    if cfg.algo not in ALGOS:
        raise ConfigError("algo", f"unknown algorithm {cfg.algo!r}; one of: {', '.join(ALGOS)}")
    defaults = FAMILY_DEFAULTS[(cfg.algo, "lang" if cfg.is_lang else "gym")]
    return cfg.replace(**{k: v for k, v in defaults.items() if getattr(cfg, k) is None})


def _check_choice(cfg: Config, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; one of: {', '.join(allowed)}")


def validate(cfg: Config) -> Config:
    """Resolve the None defaults, then check every field that can be checked without building the environment;
    raise :class:`ConfigError` naming the first bad field. Returns the resolved config."""
    cfg = resolve(cfg)
    _check_choice(cfg, "dropout_mode", DROPOUT_MODES)
    _check_choice(cfg, "scale_rewards", ("group", "batch", "none"))
    _check_choice(cfg, "loss_agg", ("grpo", "bnpo", "dr_grpo"))
    _check_choice(cfg, "kl_estimator", ("k1", "k2", "k3"))
    _check_choice(cfg, "kl_in", ("loss", "reward"))
    _check_finite(cfg, "dropout", 0.0, 1.0, hi_open=True)
    _check_choice(cfg, "dropout_schedule", ("constant", "early", "early-linear", "late"))
    _check_choice(cfg, "multi_sample_average", ("loss", "logits"))
    _check_choice(cfg, "sample_dropout", ("none", "dppo", "sdpo", "outlier"))
    _check_finite(cfg, "sample_drop_rate", 0.0, 1.0, hi_open=True)
    _check_finite(cfg, "sample_drop_delta", 0.0, math.inf, lo_open=True, hi_open=True)
    if not (isinstance(cfg.dropout_samples, int) and cfg.dropout_samples >= 1):
        raise ConfigError("dropout_samples", f"must be an integer >= 1 (K masks), got {cfg.dropout_samples!r}")
    if not (isinstance(cfg.grad_diag_every, int) and cfg.grad_diag_every >= 0):
        raise ConfigError("grad_diag_every", f"must be an integer >= 0 (0 = off), got {cfg.grad_diag_every!r}")
    if not (isinstance(cfg.dropout_cutoff, int) and cfg.dropout_cutoff >= 0):
        raise ConfigError("dropout_cutoff", f"must be an integer >= 0 (updates), got {cfg.dropout_cutoff!r}")
    if cfg.dropout_schedule != "constant" and cfg.dropout_cutoff == 0:
        raise ConfigError("dropout_cutoff", f"--dropout-schedule {cfg.dropout_schedule} needs a cutoff > 0, in updates")
    _check_positive(
        cfg,
        "total_steps",
        "num_envs",
        "num_steps",
        "num_minibatches",
        "update_epochs",
        "torch_threads",
        "prompts_per_update",
        "mu",
        "kl_horizon",
        "sft_steps",
    )
    if not (isinstance(cfg.group_size, int) and cfg.group_size >= 2):
        raise ConfigError(
            "group_size", f"must be an integer >= 2 (a group compares completions), got {cfg.group_size!r}"
        )
    if not (isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**32):
        raise ConfigError("seed", f"must be an integer in [0, 2**32), got {cfg.seed!r}")
    if cfg.algo == "ppo" and not cfg.is_lang:
        if cfg.total_steps < cfg.batch_size:
            raise ConfigError(
                "total_steps",
                f"must be at least one batch, num_envs * num_steps = {cfg.batch_size}, got {cfg.total_steps}",
            )
        if cfg.num_minibatches > cfg.batch_size:
            raise ConfigError(
                "num_minibatches", f"must be at most num_envs * num_steps = {cfg.batch_size}, got {cfg.num_minibatches}"
            )
    elif cfg.dropout_value:
        raise ConfigError("dropout_value", "only for PPO on Gym (elsewhere there is no separate value network)")
    _check_finite(cfg, "learning_rate", 0.0, 1.0, lo_open=True)
    _check_finite(cfg, "gamma", 0.0, 1.0)
    _check_finite(cfg, "gae_lambda", 0.0, 1.0)
    _check_finite(cfg, "clip_coef", 0.0, 10.0, lo_open=True)
    if cfg.clip_coef_high is not None:
        _check_finite(cfg, "clip_coef_high", 0.0, 10.0, lo_open=True)
    _check_finite(cfg, "ent_coef", 0.0, 10.0)
    _check_finite(cfg, "vf_coef", 0.0, 100.0)
    _check_finite(cfg, "max_grad_norm", 0.0, math.inf, lo_open=True, hi_open=True)
    _check_finite(cfg, "adam_eps", 0.0, 1.0, lo_open=True)
    _check_finite(cfg, "beta", 0.0, math.inf, hi_open=True)
    _check_finite(cfg, "temperature", 0.0, 100.0, lo_open=True)
    for name in ("target_kl", "kl_target"):
        if getattr(cfg, name) is not None:
            _check_finite(cfg, name, 0.0, math.inf, lo_open=True, hi_open=True)
    if not (isinstance(cfg.save_every, int) and cfg.save_every >= 0):
        raise ConfigError(
            "save_every", f"must be an integer >= 0 (updates; 0 = only the final policy), got {cfg.save_every!r}"
        )
    if cfg.init_from_ref and cfg.ref is None:
        raise ConfigError("init_from_ref", "needs --ref (the run directory or policy file to start from)")
    if cfg.ref is not None:
        from .checkpoint import find_policy_file

        find_policy_file(cfg.ref, "ref")
    if not isinstance(cfg.env_params, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for k, v in cfg.env_params.items()
    ):
        raise ConfigError("env_params", f"must map parameter names to finite numbers, got {cfg.env_params!r}")
    if cfg.env_params and cfg.is_lang:
        raise ConfigError("env_params", "only for Gym envs (the language tasks have no physical parameters)")
    if cfg.kl_target is not None and cfg.beta == 0:
        raise ConfigError("kl_target", "adapts beta, so it needs --beta > 0 to start from")
    if not cfg.hidden_sizes or any(not isinstance(h, int) or h <= 0 for h in cfg.hidden_sizes):
        raise ConfigError("hidden_sizes", f"must be one or more positive integers, got {cfg.hidden_sizes!r}")
    if cfg.is_lang:
        from .lang.tasks import TASK_NAMES

        if cfg.task_name not in TASK_NAMES:
            raise ConfigError(
                "env",
                f"unknown language task {cfg.task_name!r}; one of: {', '.join(LANG_PREFIX + t for t in TASK_NAMES)}",
            )
    if cfg.sparse and cfg.env not in ("lang:reverse", "lang:sort"):
        raise ConfigError("sparse", f"only for lang:reverse and lang:sort, not {cfg.env}")
    if cfg.partial_credit and cfg.env != "lang:add":
        raise ConfigError("partial_credit", f"only for lang:add, not {cfg.env}")
    return cfg


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` for an id gymnasium does not know, suggesting the closest ones."""
    import gymnasium as gym

    if env_id in gym.envs.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see gymnasium.envs.registry for the ids"
    raise ConfigError("env", f"unknown environment id {env_id!r}{hint}")
