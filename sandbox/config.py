"""Typed run configuration, by topic. Each field's docstring is its ``--help`` text and its documentation.

A :class:`Config` is one flat dataclass (``cfg.clip_coef``, ``preset("cartpole", dropout=0.2)``, one flat
``config.json``) assembled from topic sections (:data:`SECTIONS`): what to run (:class:`RunConfig`), the update every
trainer shares (:class:`OptimConfig`), PPO's rollout on Gym (:class:`RolloutConfig`), PPO's advantages and critic
(:class:`PPOConfig`), the Gym MLPs (:class:`NetConfig`), batches of GRPO's groups (:class:`GroupsConfig`), GRPO's own
options (:class:`GRPOConfig`), KL, dropout, the dropout family's variants and the language tasks.

One declaration per option. A section says, where it is declared (:func:`section`), which kinds of run its fields
apply to (:data:`KINDS`: an algorithm on a kind of task); a field says, where it is declared (:func:`option`), what
differs from its section: the kinds it applies to, its default per kind, why SB3's PPO refuses it, whether a
population of seeds takes it, its role. Every table is derived from those declarations: :data:`APPLIES`,
:data:`FIELD_KINDS`, :data:`KIND_DEFAULTS`, :data:`SB3_UNSUPPORTED`, :data:`POPULATION_UNSUPPORTED`; so are
``sandbox train --help`` (per kind: ``sandbox train --algo grpo --help`` shows only what GRPO on Gym takes), the
refusals (a field set on a kind of run it does not apply to is refused in one line, never silently ignored) and the
reference page (docs/reference/config.md).

Each section validates its own fields (its ``_validate_<section>`` method); the checks that read fields of several
sections are in one place, :func:`_validate_across_sections`. Gym defaults follow CleanRL's ``ppo.py``;
``preset("cartpole")`` gives the rl-baselines3-zoo tuned values. A few fields default to None, meaning "the usual
value for this kind of run" (:data:`KIND_DEFAULTS`): :func:`resolve` fills them in, and ``config.json`` records the
values used. Field names follow the papers and CleanRL (``clip_coef``, ``gae_lambda``, ``beta``, ``group_size``).
Fields that do not define an experiment say so by their role (:data:`ROLES`; :func:`without`). What needs an
environment or a file (the env id, the language task, ``--ref``) is checked by ``sandbox.training.check``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from .dropout_modes import MODE_NAMES, MODES, DropoutModeName

ALGOS: tuple[str, ...] = ("ppo", "grpo", "sb3-ppo")
LANG_PREFIX = "lang:"
MINATAR_PREFIX = "minatar:"
MINATAR_GAMES: tuple[str, ...] = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
"""The MinAtar games (Young & Tian 2019) ``--env minatar:NAME`` names (``sandbox/envs/minatar.py``)."""
SPARSE_TASKS: tuple[str, ...] = ("lang:reverse", "lang:sort")


class ConfigError(ValueError):
    """A bad config value. ``str(err)`` is a one-line message that names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"--{field.replace('_', '-')}: {message}")


def import_user_module(name: str, field: str):
    """Import the module ``name`` that a config names (an env's registering module, a seam's function), or raise
    :class:`ConfigError` for ``field`` in one line. A module in the working directory is found even when Python was
    started without it on ``sys.path`` (the ``sandbox`` command's case: only ``python -m`` adds it), as uvicorn and
    gunicorn do for their ``module:app``; the working directory is appended, so it never shadows an installed
    package. An error raised inside the module itself is reported with its first line."""
    import importlib
    import os
    import sys

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        top = name.split(".")[0]
        if err.name != top or os.getcwd() in sys.path:
            raise ConfigError(field, f"cannot import {name}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed as it ran
        raise ConfigError(field, f"importing {name} failed: {type(err).__name__}: {_first_line(err)}") from None
    sys.path.append(os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise ConfigError(field, f"cannot import {name}: {err} (not in {os.getcwd()} nor on sys.path)") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed as it ran
        raise ConfigError(field, f"importing {name} failed: {type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return next(iter(str(err).splitlines()), "")


# --- declaring sections and options -----------------------------------------------------------------------------------

KINDS: dict[str, str] = {
    "ppo": "PPO on Gym tasks",
    "ppo-lang": "PPO on language tasks",
    "grpo": "GRPO on Gym tasks",
    "grpo-lang": "GRPO on language tasks",
    "sb3-ppo": "SB3's PPO on Gym tasks",
}
"""The kinds of run (:attr:`Config.kind`): an algorithm on a kind of task."""

SECTIONS: dict[str, type] = {}
"""The topic sections, in the order of ``--help`` and of ``config.json`` (each added by its :func:`section`)."""
TITLES: dict[str, str] = {}
"""Each section in a few words (its ``--help`` heading is its class docstring)."""
APPLIES: dict[str, tuple[str, ...]] = {}
"""The kinds of run each section's fields apply to, unless a field says otherwise (:data:`FIELD_KINDS`)."""
SECTION_OF: dict[str, str] = {}
"""Each field's section."""


def section(name: str, title: str, kinds: tuple[str, ...] = tuple(KINDS)):
    """Declare a topic section of :class:`Config`: a dataclass whose fields apply to ``kinds`` of run (each field
    may narrow them: :func:`option`). ``title``: the section in a few words."""

    def declare(cls: type) -> type:
        cls = dataclasses.dataclass(cls)
        SECTIONS[name], TITLES[name], APPLIES[name] = cls, title, tuple(kinds)
        SECTION_OF.update({f.name: name for f in dataclasses.fields(cls)})
        return cls

    return declare


def option(
    default=dataclasses.MISSING,
    *,
    factory=dataclasses.MISSING,
    kinds: tuple[str, ...] | None = None,
    per_kind: dict[str, object] | None = None,
    sb3: str | None = None,
    population: bool = True,
    role: str | None = None,
):
    """A field of :class:`Config`, declared once, with what differs from its section's: ``kinds``, the kinds of run
    it applies to (default: its section's; set on another kind, anything but its default is refused); ``per_kind``,
    its default for each kind of run when ``default`` is None (every kind of :data:`KINDS`: :func:`resolve` fills it
    in); ``sb3``, why SB3's PPO refuses it (``--algo sb3-ppo`` then takes only its default); ``population=False``: a
    population of several seeds takes only its default; ``role``, for a field that does not define the experiment
    (:data:`ROLES`). ``factory``: a mutable default's factory (``dict``)."""
    metadata = {"kinds": kinds, "per_kind": per_kind, "sb3": sb3, "role": role}
    metadata = {k: v for k, v in metadata.items() if v is not None} | ({} if population else {"population": False})
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


# --- the sections -----------------------------------------------------------------------------------------------------


@section("run", "what to run")
class RunConfig:
    """What to run, and where the run writes."""

    algo: Literal["ppo", "grpo", "sb3-ppo"] = "ppo"
    """Algorithm: ppo (clipped surrogate, value function, GAE), grpo (group-relative advantages, no value), or
    sb3-ppo (Stable-Baselines3's own PPO with a dropout policy and the four modes, sandbox.algos.sb3; Gym tasks
    only)."""
    env: str = "CartPole-v1"
    """A Gymnasium id (Box observations; Discrete or Box actions), a MinAtar game minatar:NAME with NAME one of
    asterix, breakout, freeway, seaquest, space_invaders (PPO with the MinAtar paper's convolutional network), or a
    language task lang:NAME with NAME one of digit, positive, reverse, sort, add, length (run by the tiny transformer
    from its pretrained reference)."""
    env_module: str | None = None
    """A module to import before the env is made, one that registers --env with gymnasium (gymnasium.register):
    --env-module corridor --env Corridor-v0 is --env corridor:Corridor-v0, gymnasium's own form, which config.json
    records (so sandbox eval and resume import it again). The module must be importable from where sandbox runs (a
    .py file there, an installed package, or PYTHONPATH). The guide: your own environment."""
    seed: int = option(0, role="seed")
    """Seeds torch, the environments and everything else random."""
    total_steps: int = 100_000
    """Environment steps to train for (all envs together; for language tasks, sampled tokens), rounded down to
    whole batches; also the horizon of the LR and clip annealing."""
    env_params: dict[str, float] = option(factory=dict)
    """Physical parameters of the Gym env, set on it after it is built: e.g. --env-params length 1.0 masspole 0.3
    (CartPole: a longer, heavier pole), --env-params g 15 (Pendulum: stronger gravity). Allowed names: see README
    "Env variants" (a wrong name is refused with the list)."""
    out: str | None = option(None, role="output")
    """Run directory. The CLI defaults to runs/<env>-<algo>-<mode>-p<p>-s<seed>-<time>; the Python API writes
    nothing when None."""
    overwrite: bool = option(False, role="output")
    """Replace an existing run directory (otherwise an existing --out is refused)."""
    stop_at_threshold: bool = option(False, population=False)
    """Stop as soon as the mean of the last 20 episodes reaches the env's reward_threshold."""
    save_every: int = option(
        0,
        role="execution",
        population=False,
        sb3="sb3-ppo writes no checkpoints to --resume from (SB3 saves its models with model.save)",
    )
    """Also save a checkpoint every N updates (RUN_DIR/checkpoints/update-NNNNNN.pt: the policy and what
    sandbox train --resume needs). 0: only the final policy.pt."""
    quiet: bool = option(False, role="output")
    """No progress bar (it is also off when stderr is not a terminal)."""
    tensorboard: str | None = option(None, role="output")
    """Also log every metrics row to TensorBoard under DIR/<run directory name> (x-axis: env_steps; needs the
    tensorboard extra). metrics.csv stays the record; this is a view of it."""
    torch_threads: int = option(1, role="execution")
    """Torch intra-op threads. 1 is fastest for these small nets; run seeds in parallel processes instead."""
    maths: dict[str, str] = option(factory=dict)
    """Functions of the seam (sandbox.Maths) replaced by your own: --maths gae mymod:my_gae (a field of Maths, then
    module:function; the module imported in every process that trains, so it must be importable from where sandbox
    runs). config.json records each as module:function#hash (the first 12 hex digits of the SHA-256 of its source),
    also when it came from Python (sandbox.train(cfg, maths=Maths(gae=my_gae))); a hash that no longer matches the
    source is refused. A replaced function the run would not call is refused (the guide: the seam)."""

    def _validate_run(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError("algo", f"unknown algorithm {self.algo!r}; one of: {', '.join(ALGOS)}")
        _positive_int(self, "total_steps", "torch_threads")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise ConfigError("seed", f"must be an integer in [0, 2**32), got {self.seed!r}")
        _int_at_least(self, "save_every", 0, "updates; 0 = only the final policy")
        if not isinstance(self.env_params, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in self.env_params.items()
        ):
            raise ConfigError("env_params", f"must map parameter names to finite numbers, got {self.env_params!r}")
        if not isinstance(self.maths, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.maths.items()
        ):
            raise ConfigError("maths", f"must map Maths fields to module:function names, got {self.maths!r}")
        if self.env_params and self.env.startswith(LANG_PREFIX):
            raise ConfigError("env_params", "only for Gym envs (the language tasks have no physical parameters)")
        if self.env.startswith(MINATAR_PREFIX):
            game = self.env[len(MINATAR_PREFIX) :]
            if game not in MINATAR_GAMES:
                games = ", ".join(MINATAR_PREFIX + g for g in MINATAR_GAMES)
                raise ConfigError("env", f"unknown MinAtar game {game!r}; one of: {games}")
            if self.algo != "ppo":
                raise ConfigError("algo", f"MinAtar games train with --algo ppo, not {self.algo}")
            if self.env_params:
                raise ConfigError("env_params", "only for the classic-control envs (MinAtar games have none)")


GYM_KINDS = ("ppo", "grpo", "sb3-ppo")
"""The kinds of run on Gym tasks (the others are on language tasks)."""


def on_gym_and_lang(gym, lang) -> dict[str, object]:
    """A per-kind default (:func:`option`) that is ``gym`` on Gym tasks and ``lang`` on language tasks."""
    return {kind: gym if kind in GYM_KINDS else lang for kind in KINDS}


@section("optim", "the update every trainer shares")
class OptimConfig:
    """The update every trainer shares: learning rate, passes and minibatches, the clipped ratio, entropy, gradient
    clip, early stop."""

    learning_rate: float | None = option(
        None, per_kind={"ppo": 2.5e-4, "sb3-ppo": 2.5e-4, "grpo": 3e-3, "ppo-lang": 1e-3, "grpo-lang": 1e-3}
    )
    """Adam learning rate (typical 1e-4 to 1e-3). None: the kind of run's own (--help with --algo and --env shows
    it), higher for GRPO on Gym (one step per minibatch of a large batch)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    adam_eps: float = 1e-5
    """Adam epsilon (PPO implementations use 1e-5, not PyTorch's 1e-8)."""
    update_epochs: int | None = option(
        None, per_kind={"ppo": 4, "sb3-ppo": 4, "ppo-lang": 4, "grpo": 1, "grpo-lang": 1}
    )
    """Passes over each batch (PPO's epochs; GRPO's mu in DeepSeekMath, num_iterations in TRL). More passes move the
    policy further from the one that collected the data. None: the kind of run's own (more for PPO than GRPO)."""
    num_minibatches: int | None = option(None, per_kind=on_gym_and_lang(4, 1))
    """Minibatches per pass; the batch is split into this many nearly equal parts. None: the kind of run's own (on
    language tasks, one gradient step per batch and pass)."""
    clip_coef: float = 0.2
    """PPO clip range eps: the ratio is clipped to [1 - eps, 1 + eps] (typical 0.1 to 0.3)."""
    clip_coef_high: float | None = option(
        None, sb3="SB3's PPO clips the ratio symmetrically (clip_range); there is no eps_high"
    )
    """Upper clip range eps_high: the ratio is clipped to [1 - clip_coef, 1 + clip_coef_high] (None = clip_coef,
    symmetric; DAPO uses 0.2 low and 0.28 high). Every trainer; annealed like clip_coef."""
    anneal_clip: bool = False
    """Decay clip_coef (and clip_coef_high) linearly to 0 over total_steps, as rl-zoo3's 'lin_0.2' does."""
    ent_coef: float | None = option(
        None, per_kind={"ppo": 0.01, "sb3-ppo": 0.01, "grpo": 0.0, "ppo-lang": 0.0, "grpo-lang": 0.0}
    )
    """Entropy bonus coefficient (0 to 0.01 typical). None: the kind of run's own (PPO on Gym: CleanRL's)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop an update's passes early once a minibatch's approx_kl exceeds this, checked before its gradient step
    (None = never). Noisy dropout modes make it fire for no real reason: watch first_approx_kl."""

    def _validate_optim(self) -> None:
        _positive_int(self, "num_minibatches", "update_epochs")
        _in_range(self, "learning_rate", 0.0, 1.0, lo_open=True)
        _in_range(self, "clip_coef", 0.0, 10.0, lo_open=True)
        if self.clip_coef_high is not None:
            _in_range(self, "clip_coef_high", 0.0, 10.0, lo_open=True)
        _in_range(self, "ent_coef", 0.0, 10.0)
        _in_range(self, "max_grad_norm", 0.0, math.inf, lo_open=True, hi_open=True)
        _in_range(self, "adam_eps", 0.0, 1.0, lo_open=True)
        if self.target_kl is not None:
            _in_range(self, "target_kl", 0.0, math.inf, lo_open=True, hi_open=True)


@section("rollout", "PPO's rollout on Gym", kinds=("ppo", "sb3-ppo"))
class RolloutConfig:
    """PPO's rollout on Gym tasks: parallel environments and steps per environment."""

    num_envs: int = 4
    """Parallel environments (gymnasium vector API; numpy-vectorised where gymnasium offers it)."""
    num_steps: int = 128
    """Steps per environment per rollout; a batch is num_envs * num_steps transitions."""

    def _validate_rollout(self) -> None:
        _positive_int(self, "num_envs", "num_steps")


@section("ppo", "PPO's advantages and critic", kinds=("ppo", "ppo-lang", "sb3-ppo"))
class PPOConfig:
    """PPO's advantages and critic (on Gym and on language tasks): discount, GAE, advantage normalisation, the value
    loss."""

    gamma: float | None = option(None, per_kind=on_gym_and_lang(0.99, 1.0))
    """Discount factor (typical 0.98 to 0.999). None: the kind of run's own (1 on language tasks: the reward comes at
    the end)."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 = one-step TD, 1 = Monte Carlo (typical 0.8 to 0.95)."""
    norm_adv: bool = True
    """Normalise advantages to mean 0, std 1: within each minibatch (PPO on Gym), over the batch's tokens (PPO on
    language tasks)."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values with clip_coef, never annealed (CleanRL; SB3 does not)."""
    vf_coef: float = 0.5
    """Value loss coefficient."""

    def _validate_ppo(self) -> None:
        _in_range(self, "gamma", 0.0, 1.0)
        _in_range(self, "gae_lambda", 0.0, 1.0)
        _in_range(self, "vf_coef", 0.0, 100.0)


NET_DEFAULT_HIDDEN = (64, 64)


@section("net", "the networks on Gym tasks", kinds=GYM_KINDS)
class NetConfig:
    """The policy and value networks on Gym tasks: MLPs, or for MinAtar games the MinAtar paper's convolutional
    network, chosen by the env (the language tasks' transformer is the pretrained reference's)."""

    hidden_sizes: tuple[int, ...] = NET_DEFAULT_HIDDEN
    """Hidden layer widths of both the policy and the value MLP (tanh, separate networks). Not for MinAtar games,
    whose policy and value networks are the MinAtar paper's: a 3x3 convolution of 16 channels, then 128 hidden units
    (ReLU; dropout after each)."""
    ortho_init: bool = True
    """Orthogonal init: hidden layers (and the convolution) gain sqrt(2), policy head 0.01, value head 1, biases 0."""

    def _validate_net(self) -> None:
        if not self.hidden_sizes or any(not isinstance(h, int) or h <= 0 for h in self.hidden_sizes):
            raise ConfigError("hidden_sizes", f"must be one or more positive integers, got {self.hidden_sizes!r}")


@section("groups", "batches of groups", kinds=("grpo", "grpo-lang", "ppo-lang"))
class GroupsConfig:
    """Batches of GRPO's groups (GRPO, and PPO on language tasks): G completions per prompt (episodes per reset seed
    on Gym), and how a loss over their tokens is aggregated."""

    group_size: int = 8
    """G: completions per prompt (episodes per reset seed on Gym) whose rewards are compared with each other."""
    prompts_per_update: int = 16
    """Prompts per batch (reset seeds per batch for GRPO on Gym); a batch holds prompts_per_update * group_size
    completions or episodes."""
    loss_agg: Literal["grpo", "bnpo", "dr_grpo"] = "grpo"
    """Token loss aggregation (language tasks; steps on Gym): grpo = mean per sequence then over sequences, bnpo =
    mean over all tokens of the batch, dr_grpo = sum / (sequences * the longest possible length: the task's
    max_new_tokens, the Gym env's episode limit)."""
    mask_truncated: bool = False
    """Leave out completions that hit the length limit without <eos>."""

    def _validate_groups(self) -> None:
        _choice(self, "loss_agg", ("grpo", "bnpo", "dr_grpo"))
        _positive_int(self, "prompts_per_update")
        if not (isinstance(self.group_size, int) and self.group_size >= 2):
            raise ConfigError(
                "group_size", f"must be an integer >= 2 (a group compares completions), got {self.group_size!r}"
            )


@section("grpo", "GRPO's own options", kinds=("grpo", "grpo-lang"))
class GRPOConfig:
    """GRPO (Shao et al. 2024): how advantages are scaled within groups, which groups count, GRPO-lambda."""

    scale_rewards: Literal["group", "batch", "none"] = "group"
    """GRPO advantage scaling: divide by the group's std, the batch's std, or not at all (none = Dr. GRPO)."""
    drop_equal_groups: bool = False
    """Leave out groups whose rewards are all equal (they have no signal; DAPO's dynamic sampling)."""
    grpo_lambda: float | None = None
    """GRPO-lambda (Dai et al. 2025, README): with --length-penalty, only some groups of each batch get the
    length-penalised reward, chosen by their correctness ratio (fraction of correct completions); the others get the
    plain 0/1 correctness. top rule: lambda = the fraction of the batch's groups, most correct first (the paper's
    top-lambda, e.g. 0.2); threshold rule: the groups whose ratio is >= lambda. None: every group is penalised."""
    grpo_lambda_rule: Literal["top", "threshold"] = "top"
    """How --grpo-lambda picks the penalised groups: top = the ceil(lambda * groups) most correct groups of the batch
    (the paper's batch-wise top-lambda), threshold = every group whose correctness ratio is >= lambda."""

    def _validate_grpo(self) -> None:
        _choice(self, "scale_rewards", ("group", "batch", "none"))
        _choice(self, "grpo_lambda_rule", ("top", "threshold"))
        if self.grpo_lambda is not None:
            _in_range(self, "grpo_lambda", 0.0, 1.0)


@section("kl", "KL to a reference")
class KLConfig:
    """KL to a frozen reference policy: how much, which estimator, where it enters, which reference."""

    beta: float = option(0.0, sb3="SB3's PPO has no KL term to a reference policy; use --algo ppo")
    """KL coefficient (DeepSeekMath 0.04; TRL's default 0). The reference is --ref if given, else the initial policy
    (Gym) or the task's pretrained model (language tasks); frozen, in eval mode."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Estimator of KL(pi_theta || pi_ref) in the loss: k1 = log ratio, k2 = log ratio^2 / 2, k3 = r - 1 - log r."""
    kl_in: Literal["loss", "reward"] = "loss"
    """Where the KL enters: the loss (GRPO style, differentiable) or the reward (-beta * k1 per token or step,
    detached, before the advantages; Ziegler et al. 2019)."""
    kl_target: float | None = option(None, sb3="SB3's PPO has no KL term to a reference policy; use --algo ppo")
    """Adaptive beta (Ziegler et al. 2019): steer the measured kl_ref towards this target (None = fixed beta). Same
    unit as kl_ref: nats per sequence (language tasks, GRPO on Gym: per episode), per step for PPO on Gym."""
    kl_horizon: int = 10_000
    """Horizon of the adaptive beta rule, in samples."""
    ref: str | None = option(
        None, sb3="SB3's PPO starts from its own initialisation and has no reference policy; use --algo ppo"
    )
    """The frozen reference policy: a run directory (its policy.pt) or a policy.pt / checkpoint file of a run on the
    same env (or language task). None: the initial policy (Gym) or the task's pretrained model (language tasks)."""
    init_from_ref: bool = option(False, sb3="SB3's PPO starts from its own initialisation; use --algo ppo")
    """Start the policy (and PPO's value network, when the reference has one) from --ref's weights. Needs --ref and
    the same network shape (--hidden-sizes)."""

    def _validate_kl(self) -> None:
        _choice(self, "kl_estimator", ("k1", "k2", "k3"))
        _choice(self, "kl_in", ("loss", "reward"))
        _in_range(self, "beta", 0.0, math.inf, hi_open=True)
        _positive_int(self, "kl_horizon")
        if self.kl_target is not None:
            _in_range(self, "kl_target", 0.0, math.inf, lo_open=True, hi_open=True)
            if self.beta == 0:
                raise ConfigError("kl_target", "adapts beta, so it needs --beta > 0 to start from")
        if self.init_from_ref and self.ref is None:
            raise ConfigError("init_from_ref", "needs --ref (the run directory or policy file to start from)")


@section("dropout", "dropout")
class DropoutConfig:
    """Dropout in the policy, and how rollouts and updates handle it (README: "Dropout: the four handling modes")."""

    dropout: float | None = option(None, per_kind=on_gym_and_lang(0.0, 0.1))
    """Dropout probability p in [0, 1): after every hidden activation of the policy MLP (MinAtar's network: after its
    convolution and its hidden layer), or GPT-2's embedding, attention and residual dropout in the transformer.
    None: the kind of run's own (on language tasks GPT-2's, 0.1)."""
    dropout_mode: DropoutModeName = "naive"
    """How rollouts and updates treat dropout. off: p = 0 everywhere; rollout-eval: no dropout at rollout, fresh
    masks in the update (what SB3 does); naive: fresh masks at rollout and again in the update (PyTorch's
    default train mode, what TRL does); consistent: the rollout's masks are stored and reused in the update."""
    dropout_value: bool = option(False, kinds=("ppo", "sb3-ppo"))
    """Put dropout in the value network too (same p and mode)."""
    dropout_policy: bool = option(True, kinds=("ppo",))
    """Put dropout in the policy MLP. --no-dropout-policy with --dropout-value: dropout in the value MLP only (noise in
    the critic but not in the policy: PPO on Gym)."""
    dropout_schedule: Literal["constant", "early", "early-linear", "late", "custom"] = "constant"
    """p over training (Liu et al. 2023): constant; early = p for the first --dropout-cutoff updates, then 0;
    early-linear = from p down to 0 over the cutoff; late = 0 for the first cutoff updates, then p; custom = your own
    function through the seam (--maths dropout_schedule module:function; it gets the update from 1, the total planned
    updates and the budget's progress)."""
    dropout_cutoff: int = 0
    """The schedule's cutoff, in updates (needed by early, early-linear and late; passed to a custom one)."""

    def _validate_dropout(self) -> None:
        _choice(self, "dropout_mode", MODE_NAMES)
        _in_range(self, "dropout", 0.0, 1.0, hi_open=True)
        _choice(self, "dropout_schedule", ("constant", "early", "early-linear", "late", "custom"))
        _int_at_least(self, "dropout_cutoff", 0, "updates")
        if self.dropout_schedule not in ("constant", "custom") and self.dropout_cutoff == 0:
            raise ConfigError(
                "dropout_cutoff", f"--dropout-schedule {self.dropout_schedule} needs a cutoff > 0, in updates"
            )
        if not self.dropout_policy and not self.dropout_value:
            raise ConfigError(
                "dropout_policy",
                "--no-dropout-policy needs --dropout-value (else no network has dropout: --dropout-mode off says that)",
            )


@section("variants", "the dropout family's variants")
class VariantsConfig:
    """The dropout family's variants: multi-sample dropout, sample dropout, gradient-noise diagnostics."""

    dropout_samples: int = option(
        1, sb3="multi-sample dropout is a sandbox variant (one mask per layer in the SB3 policy)"
    )
    """Multi-sample dropout (Inoue 2019): K masks on the last hidden layer, sharing the output head. K = 1 is
    ordinary dropout."""
    multi_sample_average: Literal["loss", "logits"] = "loss"
    """loss: each of the K masks gives its own log-prob and ratio against the same stored logp_old, and the K
    losses are averaged (the paper); logits: the K outputs are averaged into one policy (at rollout too)."""
    sample_dropout: Literal["none", "dppo", "sdpo", "outlier"] = option(
        "none", sb3="sample dropout is a sandbox variant; SB3's train() has no such step"
    )
    """Drop samples (transitions or tokens) from the clipped surrogate, recomputed every minibatch step: dppo =
    D-PPO's variance rule (a reconstruction, see README), sdpo = keep |r - 1| < delta (Lin et al. 2023), outlier =
    drop the largest |r*A - mean|."""
    sample_drop_rate: float = 0.1
    """rho: the fraction dropped by dppo and outlier, in [0, 1)."""
    sample_drop_delta: float = 0.25
    """delta: SDPO keeps a sample iff |r - 1| < delta."""
    sample_drop_by_sign: bool = False
    """Apply the drop rate within A > 0 and within A <= 0 separately (dppo, outlier)."""
    grad_diag_every: int = option(
        0, population=False, sb3="the gradient-noise diagnostics are the sandbox learner's; use --algo ppo"
    )
    """Every N updates, measure gradient noise (grad_gdv, grad_gde, grad_snr) on the batch's minibatches before
    the update, without changing training (0 = never)."""
    flatness_every: int = option(
        0, population=False, sb3="the variance-flatness diagnostic is the sandbox learner's; use --algo ppo"
    )
    """Every N updates, the variance-flatness diagnostic (Feng & Tu 2021), without changing training (0 = never):
    PCA of the policy's weights over the last --flatness-window updates; along each leading direction, the weights'
    variance, the loss's flatness (the width within which the policy loss on this update's batch, dropout off, rises
    by --flatness-rise times the clipped surrogate's headroom) and its curvature. Columns flat_slope, curv_slope; one
    row per direction in flatness.csv (RunResult.flatness)."""
    flatness_window: int = 20
    """Updates whose weights (after each update) make the trajectory the PCA is taken over (>= 4)."""
    flatness_directions: int = 8
    """Leading PCA directions measured (3 or more, for a slope; at most --flatness-window - 1, the most a window of W
    points has)."""
    flatness_rise: float = 0.1
    """The loss rise that bounds the flat region, as a fraction of the clipped surrogate's headroom clip_coef *
    mean|A| (how much it can fall before every sample is clipped). Feng & Tu's e-fold rise (e - 1 = 1.72) is out of
    reach: the clipped surrogate saturates first (README)."""

    def _validate_variants(self) -> None:
        _choice(self, "multi_sample_average", ("loss", "logits"))
        _choice(self, "sample_dropout", ("none", "dppo", "sdpo", "outlier"))
        _in_range(self, "sample_drop_rate", 0.0, 1.0, hi_open=True)
        _in_range(self, "sample_drop_delta", 0.0, math.inf, lo_open=True, hi_open=True)
        _int_at_least(self, "dropout_samples", 1, "K masks")
        _int_at_least(self, "grad_diag_every", 0, "0 = off")
        _int_at_least(self, "flatness_every", 0, "0 = off")
        _int_at_least(self, "flatness_window", 4, "updates")
        _int_at_least(self, "flatness_directions", 3, "directions: a slope needs 3 points")
        _in_range(self, "flatness_rise", 0.0, 100.0, lo_open=True)
        if self.flatness_directions > self.flatness_window - 1:
            raise ConfigError(
                "flatness_directions",
                f"at most --flatness-window - 1 = {self.flatness_window - 1} (a window of W weight vectors spans "
                f"W - 1 directions), got {self.flatness_directions}",
            )


@section("lang", "the language tasks", kinds=("ppo-lang", "grpo-lang"))
class LangConfig:
    """The language tasks: sampling temperature, reward options, the reference's pretraining."""

    temperature: float = 1.0
    """Sampling temperature for language tasks (log-probs are those of the tempered distribution)."""
    sparse: bool = False
    """lang:reverse and lang:sort: reward 1 for an exact match only (default: fraction of positions right)."""
    partial_credit: bool = False
    """lang:add: reward the fraction of digits right (default: exact match only)."""
    length_penalty: float = option(0.0, kinds=("grpo-lang",))
    """alpha: ask for shorter correct completions (GRPO, tasks with a 0/1 correctness: lang:reverse or lang:sort
    with --sparse, lang:add). Every group gets the length-penalised reward (--length-penalty-form), or with
    --grpo-lambda the groups its switch picks. 0 = off; the paper's efficiency reward is 1 - alpha * sigmoid(z)."""
    length_penalty_form: Literal["efficiency", "kimi"] = "efficiency"
    """efficiency (GRPO-lambda's, reconstructed: README): a correct completion earns 1 - alpha * sigmoid(z), z its
    length standardised over the group's correct completions, a wrong one 0; kimi (Kimi 1.5's): 1{correct} + alpha *
    lam, lam = 0.5 - (L - min L) / (max L - min L) over the whole group (wrong answers: min(0, lam))."""
    sft_steps: int = 600
    """Supervised steps for the language tasks' reference model (cached on disk: see sandbox pretrain)."""

    def _validate_lang(self) -> None:
        _in_range(self, "temperature", 0.0, 100.0, lo_open=True)
        _positive_int(self, "sft_steps")
        _choice(self, "length_penalty_form", ("efficiency", "kimi"))
        _in_range(self, "length_penalty", 0.0, math.inf, hi_open=True)


RENAMED: dict[str, str] = {"mu": "update_epochs"}
"""Fields renamed since they were introduced: old name -> new one (GRPO's ``mu`` and PPO's ``update_epochs`` were two
names for the passes over each batch). ``config.json`` files that carry an old name still load."""

ROLES = ("seed", "output", "execution")
"""What the fields that do not define an experiment are. ``seed``: the replicate, one run of a group. ``output``:
where and how loudly a run writes (a resumed run, or a population's member, may differ in them). ``execution``: how
a run is carried out, not what it computes (the torch threads, the checkpoints); a report groups runs across them.
Each such field says which in its metadata (``role``); every other field defines the experiment."""


@dataclasses.dataclass
class Config(*reversed(SECTIONS.values())):  # the sections' fields in SECTIONS' order: a dataclass's fields begin
    # with its last base's
    """Everything that defines a run: the fields of every section, flat. Same config and seed, same metrics."""

    @property
    def is_lang(self) -> bool:
        return self.env.startswith(LANG_PREFIX)

    @property
    def is_minatar(self) -> bool:
        return self.env.startswith(MINATAR_PREFIX)

    @property
    def network(self) -> str:
        """The networks of a Gym run: ``cnn`` (the MinAtar paper's) for a MinAtar game, else ``mlp``."""
        return "cnn" if self.is_minatar else "mlp"

    @property
    def task_name(self) -> str:
        return self.env[len(LANG_PREFIX) :]

    @property
    def binary_correctness(self) -> bool:
        """The task's reward is a 0/1 correctness (lang:reverse or lang:sort with --sparse, lang:add without
        --partial-credit): what --length-penalty and the correct_ratio column need."""
        return (self.env in SPARSE_TASKS and self.sparse) or (self.env == "lang:add" and not self.partial_credit)

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
    def kind(self) -> str:
        """The kind of run, one of :data:`KINDS`: ``ppo``, ``ppo-lang``, ``grpo``, ``grpo-lang``, ``sb3-ppo``."""
        return self.algo + ("-lang" if self.is_lang and self.algo != "sb3-ppo" else "")

    @property
    def mode(self):
        """The dropout mode's row of the table (:data:`sandbox.dropout_modes.MODES`)."""
        return MODES[self.dropout_mode]

    @property
    def effective_dropout(self) -> float:
        """The p the dropout layers actually use: 0 in mode ``off`` (call on a resolved config)."""
        return float(self.dropout) if self.mode.uses_dropout else 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """A config from its ``to_dict`` (a ``config.json``); a field renamed since (:data:`RENAMED`) is read under its
        new name (GRPO's ``mu`` becomes ``update_epochs``; PPO ignored ``mu``)."""
        d = dict(d)
        if "mu" in d:
            mu = d.pop("mu")
            if d.get("algo") == "grpo":
                d["update_epochs"] = mu
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(unknown[0], f"unknown config field; known fields: {', '.join(sorted(names))}")
        if "hidden_sizes" in d:
            d["hidden_sizes"] = tuple(d["hidden_sizes"])
        return cls(**d)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def sections(self) -> dict[str, object]:
        """The config as one object per topic section (what ``sandbox train``'s parser fills in)."""
        return {
            name: cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})
            for name, cls in SECTIONS.items()
        }

    @classmethod
    def from_sections(cls, sections: dict[str, object]) -> "Config":
        return cls(**{k: v for part in sections.values() for k, v in dataclasses.asdict(part).items()})


# --- the tables, derived from the declarations ------------------------------------------------------------------------


def _declared() -> dict[str, dataclasses.Field]:
    """Every field of :class:`Config` by name, its declaration checked: kinds that exist, a per-kind default for
    every kind when the default is None, a role of :data:`ROLES`."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name, f in fields.items():
        kinds, per_kind = f.metadata.get("kinds", ()), f.metadata.get("per_kind")
        if not set(kinds) <= set(APPLIES[SECTION_OF[name]]):
            raise TypeError(f"Config.{name}: kinds {kinds} outside its section's {APPLIES[SECTION_OF[name]]}")
        if per_kind is not None and (f.default is not None or set(per_kind) != set(KINDS)):
            raise TypeError(f"Config.{name}: a per-kind default needs the default None and a value for every kind")
        if f.metadata.get("role", ROLES[0]) not in ROLES:
            raise TypeError(f"Config.{name}: role {f.metadata['role']!r} is not one of {ROLES}")
    return fields


FIELDS = _declared()
FIELD_KINDS: dict[str, tuple[str, ...]] = {
    name: f.metadata.get("kinds", APPLIES[SECTION_OF[name]]) for name, f in FIELDS.items()
}
"""The kinds of run each field applies to (its own, else its section's). Set on another kind, anything but its
default (or the kind's default, :data:`KIND_DEFAULTS`, which a ``config.json`` holds) is refused in one line."""
KIND_DEFAULTS: dict[str, dict[str, object]] = {
    kind: {name: f.metadata["per_kind"][kind] for name, f in FIELDS.items() if "per_kind" in f.metadata}
    for kind in KINDS
}
"""kind -> the value of every field left at None (:func:`resolve`)."""
SB3_UNSUPPORTED: dict[str, tuple[object, str]] = {
    name: (f.default, f.metadata["sb3"]) for name, f in FIELDS.items() if "sb3" in f.metadata
}
"""field -> (the only value sb3-ppo accepts, why): what the SB3 arm refuses rather than ignores
(``sandbox.algos.sb3`` maps every other field of a Gym config to SB3's hyperparameters)."""
POPULATION_UNSUPPORTED: dict[str, object] = {
    name: f.default for name, f in FIELDS.items() if f.metadata.get("population") is False
}
"""field -> the only value a population of several seeds accepts (``sandbox.algos.population``)."""


def applies(kind: str, name: str | None = None) -> list[str]:
    """The sections (names of :data:`SECTIONS`) whose fields apply to ``kind``, in order; with ``name``, the fields
    of that section that do (and that SB3's PPO does not refuse, for ``sb3-ppo``)."""
    if name is None:
        return [s for s in SECTIONS if any(kind in FIELD_KINDS[f] for f in _names(SECTIONS[s]))]
    return [
        f for f in _names(SECTIONS[name]) if kind in FIELD_KINDS[f] and not (kind == "sb3-ppo" and f in SB3_UNSUPPORTED)
    ]


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def fields_with_role(*roles: str) -> tuple[str, ...]:
    """The names of the fields whose ``role`` (:data:`ROLES`) is one of ``roles``."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role {sorted(unknown)[0]!r}; one of: {', '.join(ROLES)}")
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("role") in roles)


def without(config: dict, *roles: str) -> dict:
    """``config`` (a ``to_dict``) without the fields of ``roles``: ``without(d, "output")`` is what a resumed run
    must share with its checkpoint, ``without(d, "seed", "output")`` what a population's members share, and
    ``without(d, *ROLES)`` what defines an experiment (a report's group, a sweep's grid point)."""
    drop = set(fields_with_role(*roles))
    return {k: v for k, v in config.items() if k not in drop}


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


def resolve(cfg: Config) -> Config:
    """Fill the fields left at None with their kind of run's defaults (:data:`KIND_DEFAULTS`), and fold
    ``env_module`` into ``env`` (gymnasium's ``module:Env-v0``)."""
    if cfg.algo not in ALGOS:
        raise ConfigError("algo", f"unknown algorithm {cfg.algo!r}; one of: {', '.join(ALGOS)}")
    if cfg.algo == "sb3-ppo" and cfg.is_lang:
        raise ConfigError(
            "env", f"sb3-ppo trains on Gymnasium ids, not the language task {cfg.env}; use --algo ppo or grpo"
        )
    cfg = cfg.replace(**{k: v for k, v in KIND_DEFAULTS[cfg.kind].items() if getattr(cfg, k) is None})
    return fold_env_module(cfg)


def fold_env_module(cfg: Config) -> Config:
    """``--env-module M --env ID`` as gymnasium's ``--env M:ID``, the one form ``config.json`` records (gymnasium
    imports ``M`` before it makes the env, in every process)."""
    module = cfg.env_module
    if module is None:
        return cfg
    if not (isinstance(module, str) and module and all(p.isidentifier() for p in module.split("."))):
        raise ConfigError("env_module", f"must be a module name such as corridor or mypackage.envs, got {module!r}")
    if ":" in cfg.env:
        raise ConfigError("env_module", f"--env {cfg.env} names its module already (or is not a Gymnasium id)")
    return cfg.replace(env=f"{module}:{cfg.env}", env_module=None)


def validate(cfg: Config) -> Config:
    """Resolve the None defaults, then check every field that can be checked without building the environment: what
    applies to the kind of run, what SB3's PPO refuses, each section's own fields, then what reads several sections;
    raise :class:`ConfigError` naming the first bad field. Returns the resolved config."""
    cfg = resolve(cfg)
    _validate_applies(cfg)
    _validate_sb3(cfg)
    for name in SECTIONS:
        getattr(cfg, f"_validate_{name}")()
    _validate_across_sections(cfg)
    return cfg


def _validate_applies(cfg: Config) -> None:
    """Refuse, in one line, a field set on a kind of run it does not apply to (it would be ignored). Its default,
    or the value :func:`resolve` gives the kind (a ``config.json`` holds those), is accepted."""
    for name, kinds in FIELD_KINDS.items():
        value, kind_defaults = getattr(cfg, name), KIND_DEFAULTS[cfg.kind]
        if (
            cfg.kind in kinds
            or value == FIELDS[name].default
            or (name in kind_defaults and value == kind_defaults[name])
        ):
            continue
        only = ", ".join(KINDS[k] for k in kinds)
        raise ConfigError(name, f"not for {KINDS[cfg.kind]}, which ignores it (only for {only}); leave it out")


def _validate_sb3(cfg: Config) -> None:
    if cfg.algo != "sb3-ppo":
        return
    for name, (allowed, why) in SB3_UNSUPPORTED.items():
        if getattr(cfg, name) != allowed:
            raise ConfigError(name, f"not with --algo sb3-ppo: {why}")


def _validate_across_sections(cfg: Config) -> None:
    """The checks that read fields of several sections (each section's ``_validate_<section>`` reads its own)."""
    if cfg.kind in ("ppo", "sb3-ppo") and isinstance(cfg.num_minibatches, int):  # the rollout against the budget
        if cfg.total_steps < cfg.batch_size:
            raise ConfigError(
                "total_steps",
                f"must be at least one batch, num_envs * num_steps = {cfg.batch_size}, got {cfg.total_steps}",
            )
        if cfg.num_minibatches > cfg.batch_size:
            raise ConfigError(
                "num_minibatches", f"must be at most num_envs * num_steps = {cfg.batch_size}, got {cfg.num_minibatches}"
            )
        if cfg.algo == "sb3-ppo" and cfg.batch_size % cfg.num_minibatches:
            raise ConfigError(
                "num_minibatches",
                f"with --algo sb3-ppo it must divide num_envs * num_steps = {cfg.batch_size} (SB3's minibatches have "
                f"one fixed size, batch_size = {cfg.batch_size} / num_minibatches), got {cfg.num_minibatches}",
            )
    if cfg.is_minatar and tuple(cfg.hidden_sizes) != NET_DEFAULT_HIDDEN:
        raise ConfigError(
            "hidden_sizes",
            "not for MinAtar games: their networks are the MinAtar paper's (a 3x3 convolution of 16 channels, then 128 "
            "hidden units); leave it out",
        )
    if cfg.sparse and cfg.env not in SPARSE_TASKS:
        raise ConfigError("sparse", f"only for lang:reverse and lang:sort, not {cfg.env}")
    if cfg.partial_credit and cfg.env != "lang:add":
        raise ConfigError("partial_credit", f"only for lang:add, not {cfg.env}")
    if cfg.length_penalty > 0 and not cfg.binary_correctness:
        raise ConfigError(
            "length_penalty",
            "only for a task with a 0/1 correctness: lang:reverse or lang:sort with --sparse, lang:add without "
            f"--partial-credit; not {cfg.env}" + (" without --sparse" if cfg.env in SPARSE_TASKS else ""),
        )
    if cfg.grpo_lambda is not None and not cfg.length_penalty > 0:
        raise ConfigError(
            "grpo_lambda", "switches between the 0/1 reward and --length-penalty's, so it needs --length-penalty > 0"
        )


# --- checks shared by the sections ------------------------------------------------------------------------------------


def _positive_int(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(name, f"must be a positive integer, got {value!r}")


def _int_at_least(cfg, name: str, low: int, unit: str) -> None:
    value = getattr(cfg, name)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ConfigError(name, f"must be an integer >= {low} ({unit}), got {value!r}")


def _in_range(cfg, name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        interval = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open else "]")
        raise ConfigError(name, f"must be in {interval}, got {value!r}")


def _choice(cfg, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; one of: {', '.join(allowed)}")
