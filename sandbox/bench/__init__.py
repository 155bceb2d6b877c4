"""Benchmarks, run side by side with a peer in one command (never as timed tests), one module per family:

- ``sandbox bench cartpole``: our PPO against stable-baselines3's (:mod:`.cartpole_vs_sb3`);
- ``sandbox bench lang``: our GRPO against TRL's GRPOTrainer (:mod:`.lang_vs_trl`, TRL's side in :mod:`.trl_harness`);
- ``sandbox bench sweep`` and ``report``: the sweep and report machinery (:mod:`.sweep_report`);
- ``sandbox bench population``: a population of seeds against separate runs (:mod:`.population_speed`);
- ``sandbox bench grpo-lambda`` and ``flatness``: the two studies the README reports (:mod:`.study_runs`, the
  studies themselves in ``sandbox/analysis/studies.py``);
- ``sandbox bench grading``: a class of made-up homework graded (:mod:`.grading`);
- ``sandbox bench breadth`` and ``mechanisms``: the dropout study across tasks, and what decides the sign
  (:mod:`.breadth`, the study itself in ``sandbox/analysis/breadth.py``);
- ``sandbox bench minatar``: PPO on MinAtar's games in the dropout modes and with D-PPO's sample dropout, as
  populations, with the usual report (:mod:`.minatar_study`).

- the speed of our numpy vector envs against gymnasium's ``SyncVectorEnv`` (:mod:`.env_speed`;
  ``bench_env_speed()``, not yet a command).

:mod:`.common` holds what they share: the machine line, one run in a fresh process, medians.
"""

from __future__ import annotations

from .breadth import bench_breadth
from .cartpole_vs_sb3 import _ours_cartpole, _sb3_cartpole, bench_cartpole
from .common import machine
from .env_speed import bench_env_speed
from .grading import bench_grading
from .lang_vs_trl import _ours_reverse, bench_lang
from .minatar_study import STEPS as MINATAR_STEPS
from .minatar_study import bench_minatar
from .population_speed import bench_population
from .study_runs import bench_flatness, bench_grpo_lambda
from .sweep_report import bench_report, bench_sweep
from .trl_harness import _trl_reverse

WORKERS = {"ours": _ours_cartpole, "sb3": _sb3_cartpole, "ours-lang": _ours_reverse, "trl-lang": _trl_reverse}
"""The runs a benchmark starts in a fresh interpreter (:func:`sandbox.bench.common._run_one`), by name."""

__all__ = [
    "WORKERS",
    "bench_breadth",
    "bench_cartpole",
    "bench_env_speed",
    "bench_flatness",
    "bench_grading",
    "bench_grpo_lambda",
    "bench_lang",
    "bench_minatar",
    "bench_population",
    "bench_report",
    "bench_sweep",
    "machine",
    "MINATAR_STEPS",
]
