"""``sandbox eval`` and ``sandbox pretrain``: their arguments (each field's docstring is its ``--help``), their
checks, and what they run. :data:`COMMANDS` is what the command line (:mod:`sandbox.cli`) reads.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import tyro

from ..config import Config, ConfigError, validate


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a saved policy: a run directory (its policy.pt) or a policy.pt / checkpoint file. Gym envs: the mean
    and std of the return, and an animated GIF of one episode with --gif. Language tasks: sample completions with
    their rewards."""

    run_dir: Annotated[str, tyro.conf.Positional]
    """The run directory, or a policy.pt / checkpoints/update-NNNNNN.pt file."""
    episodes: int = 20
    """Episodes to play (language tasks: prompts to complete)."""
    deterministic: bool = False
    """Take the most likely action (argmax; the Gaussian's mean; greedy decoding) instead of sampling."""
    dropout: Literal["eval", "as-run"] = "eval"
    """eval: no dropout, as a deployed policy runs. as-run: dropout as the run's rollouts had it (on in modes naive
    and consistent, at the p the policy was saved with)."""
    seed: int = 0
    """Seeds the first episode's reset (or the prompts) and the sampling."""
    gif: str | None = None
    """Write episode 1 as an animated GIF here (Gym envs with rgb_array rendering)."""
    gif_max_frames: int = 500
    """At most this many frames in the GIF (CartPole renders at 50 frames/s)."""
    show: int = 5
    """Language tasks: completions to print."""
    env_params: dict[str, float] | None = None
    """Evaluate on another variant of the env: --env-params masscart 10 (default: the run's own --env-params)."""
    quiet: bool = False
    """Print nothing."""


def evaluate(a: EvalArgs) -> int:
    if not (0 <= a.seed < 2**32):
        raise ConfigError("seed", f"must be an integer in [0, 2**32), got {a.seed}")
    from .evaluate import evaluate as play

    play(a.run_dir, episodes=a.episodes, deterministic=a.deterministic, dropout=a.dropout, seed=a.seed, gif=a.gif,
         gif_max_frames=a.gif_max_frames, show=a.show, quiet=a.quiet, env_params=a.env_params)  # fmt: skip
    return 0


@dataclasses.dataclass
class PretrainArgs:
    """Supervised pretraining of a language task's reference model on its synthetic corpus, cached on disk
    ($SANDBOX_CACHE, default ~/.cache/dropout-rl-sandbox). Training runs pretrain by themselves when needed."""

    env: str
    """The language task: lang:digit, lang:positive, lang:reverse, lang:sort, lang:add or lang:length."""
    sft_steps: int = 600
    """Supervised steps (batch 64)."""
    sparse: bool = False
    """lang:reverse and lang:sort with the exact-match reward (the reference itself is the same)."""
    partial_credit: bool = False
    """lang:add with partial credit."""
    force: bool = False
    """Pretrain again even if a cached model exists."""
    quiet: bool = False
    """No progress bar."""


def pretrain(a: PretrainArgs) -> int:
    cfg = Config(env=a.env, algo="grpo", sft_steps=a.sft_steps, sparse=a.sparse, partial_credit=a.partial_credit)
    if not cfg.is_lang:
        raise ConfigError("env", f"pretraining is for the language tasks (lang:NAME), not {a.env!r}")
    validate(cfg)
    from ..envs.lang_tasks import check_task, make_task

    check_task(cfg.task_name)
    import torch

    from .pretrain import show_reference

    torch.set_num_threads(1)
    task = make_task(cfg.task_name, sparse=a.sparse, partial_credit=a.partial_credit)
    show_reference(task, cfg.env, a.sft_steps, progress=not a.quiet, force=a.force)
    return 0


COMMANDS = {"eval": (EvalArgs, evaluate), "pretrain": (PretrainArgs, pretrain)}
"""command -> (the dataclass of its arguments, what it does with them: the exit code)."""
