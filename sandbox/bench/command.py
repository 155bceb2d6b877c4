"""``sandbox bench``: its arguments, their checks, and what it runs (the command line parses :class:`BenchArgs`,
then calls :func:`run`, which checks them first; :data:`COMMANDS`). Each target's own module does the work
(:mod:`sandbox.bench`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..analysis.cluster import Backend
from ..config import MINATAR_GAMES, ConfigError

STUDIES = ("breadth", "mechanisms")
"""The targets that plan their seeds for power, take tasks of their own (--tasks) and can rewrite their report."""


@dataclasses.dataclass
class BenchArgs:
    """Benchmarks, run side by side with a peer in one command."""

    target: Annotated[
        Literal[
            "cartpole",
            "lang",
            "sweep",
            "report",
            "population",
            "grpo-lambda",
            "flatness",
            "grading",
            "breadth",
            "mechanisms",
            "minatar",
        ],
        tyro.conf.Positional,
    ]
    """cartpole: our PPO (preset cartpole, dropout off) vs stable-baselines3 PPO, time-to-solve CartPole-v1.
    lang: our GRPO vs TRL's GRPOTrainer on lang:reverse from the same SFT reference, time to mean reward 0.9.
    sweep: a 10-run sweep with 2 workers vs 1. report: the report of a 100-run sweep. population: a 16-seed
    population vs 16 runs one at a time, seeds per CPU-second and final returns; a 16-seed Acrobot population vs
    one SB3 run; the update's GFLOP/s against plain torch.baddbmm and torch.matmul. grpo-lambda, flatness: the two
    studies of the README (GRPO-lambda's length penalty and switch; the variance-flatness relation), written to
    --out. grading: a class of made-up hw1 submissions (correct, wrong, broken, hostile) graded with --workers
    grading processes; the time, and whether every verdict is the one it must be. breadth: dropout off against the
    three modes at p 0.1 and 0.3 on five tasks (30 planned contrasts); mechanisms: the arms that test what decides the
    sign (the critic-only arm on every task; smaller steps, policy noise, a narrower network, rollout-eval and
    consistent on Acrobot and CartPole; 35 planned contrasts). minatar: PPO with the
    MinAtar paper's network on --games, dropout off, rollout-eval, naive and consistent (p = 0.1, policy and value)
    and D-PPO sample dropout, each seed of --seeds (populations, --workers at a time). The studies resume where an
    interrupted run stopped (same --out)."""
    seeds: tuple[int, ...] | None = None
    """Seeds; each system runs once per seed, alternating (the studies: each arm once per seed). None: 0-4;
    breadth and mechanisms: the seeds per group that give 80% power for |g| 0.8 at Holm's first level (printed);
    minatar: 0-9."""
    out: str | None = None
    """grpo-lambda, flatness, breadth, mechanisms, minatar: the directory for their tables and figures (breadth,
    mechanisms and minatar: also their runs; the same --out resumes). None: bench-<target>-<time>."""
    tasks: tuple[str, ...] | None = None
    """breadth, mechanisms: only these of the study's tasks (gymnasium ids, e.g. Acrobot-v1), or tasks of your own (any
    Gymnasium id, module:Env-v0 for an env your module registers; defaults, --max-steps steps, 100000 without; the
    study then plans only the tasks given). None: all of the study's."""
    fast: bool = False
    """breadth, mechanisms, minatar: a smoke test of the plumbing (breadth and mechanisms: two seeds and a twentieth
    of each budget; minatar: two seeds and two short updates per run, also with SANDBOX_FAST=1). Its numbers mean
    nothing."""
    max_steps: int | None = None
    """Step budget per run (env steps; tokens for lang); a run that does not solve counts as unsolved.
    None: 100000 for cartpole, 300000 for lang, 400000 for minatar. breadth, mechanisms: the budget of your own
    tasks (--tasks)."""
    games: tuple[str, ...] = ("breakout", "space_invaders")
    """minatar: the games (asterix, breakout, freeway, seaquest, space_invaders)."""
    json: str | None = None
    """Also write the figures to this JSON file."""
    submissions: int = 150
    """grading: how many made-up submissions."""
    workers: int = 2
    """grading: grading processes side by side. breadth, mechanisms, minatar: runs (populations) side by side."""
    replicate: bool = False
    """breadth, mechanisms, minatar: also run every group on a second, disjoint set of seeds (as many, after the
    largest) and report, cell by cell, which verdicts replicated."""
    reuse: str | None = None
    """breadth, mechanisms: another study's --out, whose finished runs of the same configs (same task, arm, seed and
    settings) are copied in rather than trained: the mechanism arms share their dropout-off and naive groups with the
    breadth study. Same config and seed, same numbers, but only under the same version of the sandbox."""
    report_only: bool = False
    """breadth, mechanisms: run nothing; rewrite the report from --out's finals.csv (a committed study re-read with
    the current statistics)."""
    resampling_seed: int = 0
    """breadth, mechanisms, with --report-only: the seed of the permutation tests that draw their splits. Another seed
    must change no verdict (a reviewer's check of a committed study); the report says a seed other than 0."""
    where: Annotated[Backend, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=Backend)
    """breadth, mechanisms, minatar: where the runs train, here or on a Ray cluster (docs/guide/cluster.md; on a
    cluster, --workers is its CPUs, which minatar sizes its populations for)."""
    quiet: bool = False
    """No progress bar."""


def check(a: BenchArgs) -> BenchArgs:
    """``a`` with its seeds filled in, or a one-line :class:`~sandbox.config.ConfigError` for an option its target
    would ignore or a value it cannot take; run before any benchmark starts."""
    if a.fast and a.target not in (*STUDIES, "minatar"):
        raise ConfigError("fast", f"only for bench breadth, mechanisms and minatar, not {a.target}")
    if a.seeds is None and a.target not in STUDIES:  # breadth, mechanisms: their seeds for 80% power
        a.seeds = tuple(range(10)) if a.target == "minatar" else (0, 1, 2, 3, 4)
    if a.seeds is not None and not a.seeds:
        raise ConfigError("seeds", "needs at least one seed")
    if a.tasks is not None and a.target not in STUDIES:
        raise ConfigError("tasks", f"only for bench breadth and mechanisms, not {a.target}")
    custom = []
    if a.tasks is not None:
        from ..analysis.breadth import TASKS
        from ..envs.gym_tasks import check_env

        custom = [t for t in a.tasks if t not in TASKS]
        for task in custom:  # a task of your own: any Gymnasium id that builds here (module:Env-v0 for yours)
            try:
                check_env(task)
            except ConfigError as err:
                raise ConfigError(
                    "tasks",
                    f"{task!r} is not a task of the {a.target} study ({', '.join(TASKS)}) nor an env that "
                    f"builds here ({str(err).removeprefix('--env: ')})",
                ) from None
    if a.max_steps is not None and a.max_steps <= 0:
        raise ConfigError("max_steps", f"must be a positive integer, got {a.max_steps}")
    if a.max_steps is not None and a.target not in ("cartpole", "lang", "minatar") and not custom:
        raise ConfigError(
            "max_steps", f"only for bench cartpole, lang and minatar, and a study's tasks of your own, not {a.target}"
        )
    if a.replicate and a.target not in (*STUDIES, "minatar"):
        raise ConfigError("replicate", f"only for bench breadth, mechanisms and minatar, not {a.target}")
    if a.report_only and (a.target not in STUDIES or a.out is None):
        raise ConfigError("report_only", "only for bench breadth and mechanisms, with the --out holding finals.csv")
    if a.report_only and not (Path(a.out) / "finals.csv").is_file():
        raise ConfigError("report_only", f"{a.out} holds no finals.csv")
    if a.resampling_seed and not a.report_only:
        raise ConfigError("resampling_seed", "only with --report-only (bench breadth and mechanisms)")
    if a.resampling_seed < 0:
        raise ConfigError("resampling_seed", f"must be a non-negative integer, got {a.resampling_seed}")
    if a.reuse is not None and a.target not in STUDIES:
        raise ConfigError("reuse", f"only for bench breadth and mechanisms, not {a.target}")
    if a.reuse is not None and a.report_only:
        raise ConfigError("reuse", "--report-only runs nothing, so there is nothing to copy")
    if a.reuse is not None and not (Path(a.reuse) / "runs").is_dir():
        raise ConfigError("reuse", f"{a.reuse} holds no study (no runs folder)")
    if a.workers < 1:
        raise ConfigError("workers", "must be at least 1")
    if a.target == "grading" and a.submissions < 1:
        raise ConfigError("submissions", "must be at least 1")
    if a.out is not None and a.target not in ("grpo-lambda", "flatness", "minatar", *STUDIES):
        raise ConfigError(
            "out", f"only for the studies (grpo-lambda, flatness, breadth, mechanisms, minatar), not {a.target}"
        )
    if a.games != BenchArgs.games and a.target != "minatar":
        raise ConfigError("games", f"only for bench minatar, not {a.target}")
    if a.target == "minatar":
        unknown = [g for g in a.games if g not in MINATAR_GAMES]
        if unknown or not a.games:
            raise ConfigError(
                "games", f"unknown MinAtar game {unknown[0] if unknown else ''!r}; one of: {', '.join(MINATAR_GAMES)}"
            )
    a.where.check()
    if a.where != Backend() and a.target not in (*STUDIES, "minatar"):
        raise ConfigError("backend", f"only for bench breadth, mechanisms and minatar, not {a.target}")
    if a.json:
        parent = Path(a.json).resolve().parent
        if not parent.is_dir():
            raise ConfigError("json", f"directory {parent} does not exist")
    return a


def run(a: BenchArgs) -> int:
    """Check ``a`` (:func:`check`), run the benchmark it asks for, and write its figures to ``--json`` if given."""
    a = check(a)
    import sandbox.bench as bench

    if a.target == "cartpole":
        result = bench.bench_cartpole(a.seeds, a.max_steps or 100_000, quiet=a.quiet)
    elif a.target == "lang":
        result = bench.bench_lang(a.seeds, a.max_steps or 300_000, quiet=a.quiet)
    elif a.target == "sweep":
        result = bench.bench_sweep(quiet=a.quiet)
    elif a.target == "report":
        result = bench.bench_report(quiet=a.quiet)
    elif a.target == "population":
        result = bench.bench_population(quiet=a.quiet)
    elif a.target == "grading":
        result = bench.bench_grading(a.submissions, workers=a.workers, quiet=a.quiet)
    elif a.target == "minatar":
        steps = a.max_steps or bench.MINATAR_STEPS
        result = bench.bench_minatar(
            a.games,
            a.seeds,
            steps,
            workers=a.workers,
            out=a.out,
            quiet=a.quiet,
            fast=a.fast,
            replicate=a.replicate,
            where=a.where,
        )
    elif a.target in STUDIES:
        out = a.out or f"bench-{a.target}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = bench.bench_breadth(
            a.target,
            out,
            a.seeds,
            tasks=a.tasks,
            workers=a.workers,
            fast=a.fast,
            quiet=a.quiet,
            replicate=a.replicate,
            report_only=a.report_only,
            resampling_seed=a.resampling_seed,
            reuse=a.reuse,
            where=a.where,
            max_steps=a.max_steps,
        )
    else:
        out = a.out or f"bench-{a.target}-{time.strftime('%Y%m%d-%H%M%S')}"
        study = bench.bench_grpo_lambda if a.target == "grpo-lambda" else bench.bench_flatness
        result = study(a.seeds, out, quiet=a.quiet)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


COMMANDS = {"bench": (BenchArgs, run)}
"""command -> (the dataclass of its arguments, what it does with them: the exit code)."""
