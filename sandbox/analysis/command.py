"""``sandbox sweep``, ``sandbox report`` and ``sandbox demo``: their arguments (each field's docstring is its
``--help``), their checks, and what they run. :data:`COMMANDS` is what the command line (:mod:`sandbox.cli`) reads.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import tyro

from ..config import ConfigError
from .cluster import Backend


@dataclasses.dataclass
class SweepArgs:
    """Run a grid of configs: SPEC.toml has a [base] table of config fields and a [grid] table mapping fields to
    lists of values. Finished runs are skipped when the same sweep runs again; unfinished ones are redone."""

    spec: Annotated[str, tyro.conf.Positional]
    """The sweep spec (TOML)."""
    out: str
    """Directory for the run directories (one per grid combination)."""
    workers: int | None = None
    """Runs at a time, one process and one torch thread each (default: the number of CPU cores)."""
    where: Annotated[Backend, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=Backend)
    """Where the runs train: here, or on a Ray cluster (docs/guide/cluster.md)."""
    report: bool = True
    """Write the report (sandbox report) when the sweep has finished."""
    population: str = "16"
    """Train the seeds of one config together, up to this many per population (several times more seeds per
    CPU-second; README, "Populations"), or off: every run on its own."""
    quiet: bool = False
    """No progress bar."""


def population_size(text: str) -> int:
    """``--population``: a positive integer, or off (0)."""
    if text == "off":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise ConfigError("population", f"must be a positive integer or off, got {text!r}")
    return int(text)


def positive_workers(workers: int | None) -> None:
    """``--workers``: None (the default) or a positive integer."""
    if workers is not None and workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {workers}")


def sweep(a: SweepArgs) -> int:
    """Run the sweep, then (unless ``--no-report``) its report; exit code 1 if a run failed."""
    positive_workers(a.workers)
    population = population_size(a.population)
    from .report import write_report
    from .sweep import run_sweep

    w = a.where
    counts = run_sweep(a.spec, a.out, a.workers, w.backend, w.address, a.quiet, population, w.ray_token_file)
    if a.report:
        write_report(a.out, quiet=a.quiet)
    return 0 if counts["failed"] == 0 else 1


@dataclasses.dataclass
class ReportArgs:
    """Statistics and figures of a sweep directory: report.md, report.csv, finals.csv, report.tex (its tables for a
    paper) and PNG figures, written into it (another baseline: into a folder of its own, see --out)."""

    sweep_dir: Annotated[str, tyro.conf.Positional]
    """The sweep's directory (runs are found in it and below it)."""
    baseline: str = "dropout_mode=off"
    """FIELD=VALUE: each group is compared with the group that has the same config but this value (a permutation
    test of the final means, Holm-corrected over the report; no verdict below 5 seeds per group). Several, comma
    separated, all apply: dropout_mode=off,sample_dropout=none compares sample dropout with plain PPO too."""
    out: str | None = None
    """The report's folder. None: the sweep's directory for the default baseline, SWEEP_DIR/report-FIELD_VALUE for any
    other (a report against another baseline never overwrites this one); a folder holding a report against another
    baseline is refused."""
    quiet: bool = False
    """Do not print the key table (where the report went is still printed)."""
    resampling_seed: int = 0
    """The seed of the permutation tests that draw their splits (those too many to enumerate). Another seed must change
    no verdict, only a drawn p's last digits within its bounds: a reviewer's check of a committed report."""


def report(a: ReportArgs) -> int:
    if "=" not in a.baseline:
        raise ConfigError("baseline", f"must be FIELD=VALUE, e.g. dropout_mode=off, got {a.baseline!r}")
    if a.resampling_seed < 0:
        raise ConfigError("resampling_seed", f"must be a non-negative integer, got {a.resampling_seed}")
    from .report import write_report

    write_report(a.sweep_dir, a.baseline, quiet=a.quiet, out=a.out, seed=a.resampling_seed)
    return 0


@dataclasses.dataclass
class DemoArgs:
    """The headline experiment in about 3 minutes on 2 cores: PPO on CartPole in the four dropout modes (p = 0.3,
    16 seeds each, trained as populations), GRPO on lang:reverse in the four modes (p = 0.1, beta 0.04, 10 seeds
    each), then the report (report.md with its figures) and its key table."""

    workers: int = 2
    """Jobs at a time (a run or a population; one process and one torch thread each)."""
    out: str | None = None
    """Directory for the demo (default runs/demo-<time>: a new one each time, nothing is overwritten)."""
    fast: bool = False
    """A smoke test of the plumbing: two seeds and a tenth of the steps (the numbers mean little)."""
    quiet: bool = False
    """No progress bar, no table."""


def demo(a: DemoArgs) -> int:
    positive_workers(a.workers)
    from .demo import run_demo

    run_demo(a.workers, a.out, a.quiet, a.fast)
    return 0


COMMANDS = {"sweep": (SweepArgs, sweep), "report": (ReportArgs, report), "demo": (DemoArgs, demo)}
"""command -> (the dataclass of its arguments, what it does with them: the exit code)."""
