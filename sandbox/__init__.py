"""A CPU-first teaching sandbox: how dropout noise affects policy-gradient stability.

import sandbox
result = sandbox.train(sandbox.preset("cartpole", dropout=0.2, dropout_mode="consistent"))
result.metrics[["update", "ep_return_mean", "first_ratio_dev"]]
"""

from .analysis.sweep import train_many
from .config import Config, ConfigError, preset
from .maths import Maths
from .runs.rundir import RunResult
from .training import resume, train, train_population

__all__ = ["Config", "ConfigError", "Maths", "RunResult", "preset", "resume", "train", "train_many", "train_population"]
__version__ = "0.1.0"
