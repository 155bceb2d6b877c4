"""``sandbox.train(config)`` and ``sandbox.resume(run_dir)``: the entry points for every algorithm, from Python and
from the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .algos.grpo import train_grpo
from .algos.lang_ppo import train_lang_ppo
from .algos.population import check_population
from .algos.ppo import train_ppo
from .config import Config, ConfigError, validate, without
from .envs.gym_tasks import check_env, episode_limit
from .envs.lang_tasks import check_task
from .maths import Maths
from .runs.policy_file import VERSION, load
from .runs.reference import check_ref
from .runs.rundir import RunLog, RunResult, check_tensorboard, latest_checkpoint
from .runs.seam import settle


def train(config: Config, maths: Maths | None = None) -> RunResult:
    """Train one run and return its metrics, episodes and summary (and write its run directory if
    ``config.out`` is set).

    ``maths`` replaces the pure functions the trainer uses (see :class:`sandbox.maths.Maths`); by default the
    sandbox's own, or those ``config.maths`` names. ``config.json`` names every replaced function with a hash of its
    source (:mod:`sandbox.runs.seam`). Raises :class:`sandbox.config.ConfigError` for a bad config and
    :class:`sandbox.algos.learner.NonFiniteLossError` when a loss turns NaN or infinite (after writing what it had).
    """
    config = validate(config)  # the resolved config: every None default filled in, as config.json records it
    config, maths = settle(config, maths)  # the seam's replacements named and hashed in config.json
    check(config)  # before the run directory exists: a refused config leaves nothing behind
    return _run(config, maths, RunLog(config), None)


def check(config: Config) -> None:
    """The checks that need an environment or a file (after :func:`sandbox.config.validate`): the Gym env builds
    with its ``env_params`` (or the language task exists), Dr. GRPO's constant length exists, and ``--ref`` fits."""
    spaces = None
    if config.algo == "sb3-ppo":  # SB3's MlpPolicy takes more spaces than the sandbox's agents (sandbox.algos.sb3)
        from .algos.sb3 import check_sb3_env

        spaces = check_sb3_env(config.env, config.env_params)
    elif config.is_lang:
        check_task(config.task_name)
    else:
        spaces = check_env(config.env, config.env_params)
        if config.algo == "grpo" and config.loss_agg == "dr_grpo" and episode_limit(config.env) is None:
            raise ConfigError(
                "loss_agg",
                f"dr_grpo divides by the longest possible episode, and {config.env} has "
                "no time limit (max_episode_steps); use grpo or bnpo",
            )
    check_ref(config, spaces)
    check_tensorboard(config)


def train_population(configs: list[Config], maths: Maths | None = None) -> list[RunResult]:
    """Train the runs ``configs`` (one config, several seeds) as one population: one process, batched networks
    (``sandbox/algos/population.py``), each run writing its own run directory. Returns one result per config, in order.

    A member's numbers equal its single-seed run's (:func:`train`) up to float rounding. Raises
    :class:`~sandbox.config.ConfigError` for configs that cannot share a population (see
    :func:`sandbox.algos.population.check_population`).
    """
    if not configs:
        raise ConfigError("seed", "a population needs at least one run")
    settled = [settle(validate(c), maths) for c in configs]
    configs, maths = [c for c, _ in settled], settled[0][1]
    check_population(configs)
    for c in configs:
        check(c)
    torch.set_num_threads(configs[0].torch_threads)
    logs = [RunLog(c) for c in configs]
    return train_ppo(configs, maths, logs)


def resume(run_dir: str | os.PathLike, maths: Maths | None = None, quiet: bool = False) -> RunResult:
    """Continue an interrupted run from its last checkpoint (``save_every`` > 0), in the same run directory.

    The rows written after that checkpoint are dropped and written again; with the same ``maths``, the finished
    run has the same metrics, episodes and policy as one that was never interrupted (timing columns aside).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError("resume", f"{run_dir} is not a run directory (no config.json)")
    if (run_dir / "summary.json").exists():
        raise ConfigError("resume", f"{run_dir} has finished (summary.json); nothing to resume")
    written = json.loads((run_dir / "config.json").read_text())
    config = validate(Config.from_dict({**written, "out": str(run_dir), "overwrite": False, "quiet": quiet}))
    config, maths = settle(config, maths)  # the functions config.json names, their sources unchanged since
    last = latest_checkpoint(run_dir)
    if last is None:
        raise ConfigError(
            "resume",
            f"{run_dir} has no checkpoint: it was started without --save-every N, or "
            "stopped before its first one; start it again with --overwrite",
        )
    blob = load(last, "resume")
    if blob.get("kind") != "checkpoint" or without(blob["config"], "output") != without(written, "output"):
        raise ConfigError("resume", f"{last} is not a checkpoint of the run in {run_dir}")
    if blob["version"] != VERSION:
        raise ConfigError(
            "resume",
            f"{last} was written by an older sandbox (format version {blob['version']}); "
            "its resume state cannot be read: start the run again with --overwrite",
        )
    log = RunLog(config, resume=(blob["update"], blob["resume"]["episodes_written"]))
    return _run(config, maths, log, blob)


def _train_ppo(config: Config, maths: Maths, log: RunLog, resume: dict | None) -> RunResult:
    return train_ppo([config], maths, [log], resume)[0]  # a population of one


def _train_sb3_ppo(config: Config, maths: Maths, log: RunLog, resume: dict | None) -> RunResult:
    from .algos.sb3 import train_sb3_ppo

    return train_sb3_ppo(config, maths, log, resume)


TRAINERS = {
    ("ppo", False): _train_ppo,
    ("ppo", True): train_lang_ppo,
    ("grpo", False): train_grpo,
    ("grpo", True): train_grpo,
    ("sb3-ppo", False): _train_sb3_ppo,
}
"""(algo, is a language task) -> the trainer."""


def _run(config: Config, maths: Maths, log: RunLog, resume: dict | None) -> RunResult:
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)  # every trainer starts from here: same config and seed, same numbers
    return TRAINERS[config.algo, config.is_lang](config, maths, log, resume)
