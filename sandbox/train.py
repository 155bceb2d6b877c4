"""``sandbox.train(config)`` and ``sandbox.resume(run_dir)``: the entry points for every algorithm, from Python and
from the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .config import Config, ConfigError, validate
from .envs import check_env
from .maths import Maths
from .runlog import RunLog, RunResult


def train(config: Config, maths: Maths | None = None) -> RunResult:
    """Train one run and return its metrics, episodes and summary (and write its run directory if
    ``config.out`` is set).

    ``maths`` replaces the pure functions the trainer uses (see :class:`sandbox.maths.Maths`); by default the
    sandbox's own. Raises :class:`sandbox.config.ConfigError` for a bad config and
    :class:`sandbox.ppo.NonFiniteLossError` when a loss turns NaN or infinite (after writing what it had).
    """
    config = validate(config)  # the resolved config: every None default filled in, as config.json records it
    check(config)  # before the run directory exists: a refused config leaves nothing behind
    return _run(config, maths, RunLog(config), None)


def check(config: Config) -> None:
    """The checks that need an env or a file: the env builds with its ``env_params``, and ``ref`` fits it."""
    from .checkpoint import check_ref

    spaces = None if config.is_lang else check_env(config.env, config.env_params)
    check_ref(config, spaces)


# fields that say where and how loudly a run writes, not what it computes: a resumed run may differ in them
_WHERE = ("out", "overwrite", "quiet")


def resume(run_dir: str | os.PathLike, maths: Maths | None = None, quiet: bool = False) -> RunResult:
    """Continue an interrupted run from its last checkpoint (``save_every`` > 0), in the same run directory.

    The rows written after that checkpoint are dropped and written again; with the same ``maths``, the finished
    run has the same metrics, episodes and policy as one that was never interrupted (timing columns aside).
    """
    from . import checkpoint as ckpt

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError("resume", f"{run_dir} is not a run directory (no config.json)")
    if (run_dir / "summary.json").exists():
        raise ConfigError("resume", f"{run_dir} has finished (summary.json); nothing to resume")
    written = json.loads((run_dir / "config.json").read_text())
    config = validate(Config.from_dict({**written, "out": str(run_dir), "overwrite": False, "quiet": quiet}))
    last = ckpt.latest_checkpoint(run_dir)
    if last is None:
        raise ConfigError(
            "resume",
            f"{run_dir} has no checkpoint: it was started without --save-every N, or "
            "stopped before its first one; start it again with --overwrite",
        )
    blob = ckpt.load(last, "resume")
    if blob.get("kind") != "checkpoint" or {k: v for k, v in blob["config"].items() if k not in _WHERE} != {
        k: v for k, v in written.items() if k not in _WHERE
    }:
        raise ConfigError("resume", f"{last} is not a checkpoint of the run in {run_dir}")
    log = RunLog(config, resume=(blob["update"], blob["resume"]["episodes_written"]))
    return _run(config, maths, log, blob)


def _run(config: Config, maths: Maths | None, log: RunLog, resume: dict | None) -> RunResult:
    torch.set_num_threads(config.torch_threads)
    maths = maths or Maths()
    if config.algo == "grpo":
        from .grpo import train_grpo

        return train_grpo(config, maths, log, resume)
    if config.is_lang:
        from .lang_ppo import train_lang_ppo

        return train_lang_ppo(config, maths, log, resume)
    from .ppo import train_ppo

    return train_ppo(config, maths, log, resume)
