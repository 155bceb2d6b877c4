"""A CPU-first teaching sandbox: how dropout noise affects policy-gradient stability.

import sandbox
result = sandbox.train(sandbox.preset("cartpole", dropout=0.2, dropout_mode="consistent"))
result.metrics[["update", "ep_return_mean", "first_ratio_dev"]]

runs = sandbox.load("runs/my-sweep")    # a run, a sweep or a study: a row per run, config and summary as columns
sandbox.figure(runs, "final_per_seed")  # the report's figures, from the frame (or a filtered part of it)
"""

from .analysis.report import figure, load
from .analysis.sweep import train_many
from .config import Config, ConfigError, preset
from .maths import Maths
from .runs.rundir import RunResult
from .training import resume, train, train_population

__all__ = [
    "Config",
    "ConfigError",
    "Maths",
    "RunResult",
    "figure",
    "load",
    "preset",
    "resume",
    "train",
    "train_many",
    "train_population",
]
__version__ = "0.1.0"
