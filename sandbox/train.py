"""``sandbox.train(config)``: the one entry point for every algorithm, from Python and from the CLI."""

from __future__ import annotations

import torch

from .config import Config, validate
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
    if not config.is_lang:
        check_env(config.env)  # before the run directory exists: a refused config leaves nothing behind
    torch.set_num_threads(config.torch_threads)
    maths = maths or Maths()
    log = RunLog(config)
    if config.algo == "grpo":
        from .grpo import train_grpo

        return train_grpo(config, maths, log)
    if config.is_lang:
        from .lang_ppo import train_lang_ppo

        return train_lang_ppo(config, maths, log)
    from .ppo import train_ppo

    return train_ppo(config, maths, log)
