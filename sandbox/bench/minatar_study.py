"""``sandbox bench minatar``: does dropout noise change PPO with a convolutional network? MinAtar's games, five arms.

Per game (default: Breakout and Space Invaders, the two where an actor-critic with the MinAtar paper's network
climbs from the first few hundred thousand frames, Young & Tian 2019; in Asterix, Freeway and Seaquest its curve is
flat for the first million), the MinAtar paper's network trained by PPO in five arms:

- ``off``: no dropout (the baseline);
- ``rollout-eval``, ``naive``, ``consistent``: dropout p = 0.1 after the convolution and the hidden layer of the
  policy *and* the value network, in each of the three modes that use it (README, "Dropout: the four handling modes");
- ``D-PPO``: no dropout, and D-PPO's sample dropout (``--sample-dropout dppo`` at its default rate, 0.1; README).

Each arm's seeds train together as populations (``sandbox/algos/population.py``), sized so that the jobs share the
workers evenly; each run writes its own run directory under ``OUT/<game>/``. Then the usual report over every game
(``report.md``, ``report.csv`` and its figures: learning curves per arm, final scores, ``first_ratio_dev``), each arm
compared with ``off`` on the same game (baseline ``dropout_mode=off,sample_dropout=none``; Holm over the report's 8
comparisons, no verdict below 5 seeds per arm), ``finals.csv`` (every run's final score, from which
``sandbox.analysis.report.compare_finals`` recomputes every verdict), and ``mechanism.png``: ``first_ratio_dev`` and
``first_clipfrac`` per arm over training, linked from ``report.md`` (which links every figure the study writes, and
only those). ``replicate``: the same arms on a second, disjoint set of seeds into
``OUT-replication/`` (beside ``OUT``: its report reads every run below it), its own report, and ``replication.md`` /
``replication.csv`` in ``OUT``: which verdicts replicated. The specs are written next to the runs (``spec.toml``), so
``sandbox sweep`` can rerun or vary them, and a bench stopped half-way continues where it stopped when started again
with the same ``--out``.

``fast`` (``--fast``, or ``SANDBOX_FAST=1``): a smoke test of the plumbing, two seeds and two short updates per run
(the numbers mean nothing).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .. import stats
from ..analysis.cluster import Backend
from ..config import MINATAR_GAMES, ConfigError
from .common import machine

GAMES = ("breakout", "space_invaders")
"""The games of the bench by default."""
DROPOUT = 0.1
"""The dropout rate of the three dropout arms, in the policy and the value network."""
MODES = ("off", "rollout-eval", "naive", "consistent")
SETTINGS = dict(num_envs=8, num_steps=128, num_minibatches=4, update_epochs=4, learning_rate=1e-3, anneal_lr=True)
"""PPO's settings: the sandbox's defaults (CleanRL's) with 8 environments (1024 steps per update) and a learning rate
of 1e-3, annealed. Measured at 150k steps, 2 seeds (2026-12-04): 1e-3 against the default 2.5e-4 ended Breakout at
5.0 and 6.1 against 3.3 and 3.9, Space Invaders at 18.8 and 18.6 against 12.0 and 10.6; Asterix did not move from
its random 0.5 to 0.9 at 1e-3 (the MinAtar paper's actor-critic needs about a million frames there too)."""
STEPS = 400_000
"""The steps budget per run by default: 5 arms x 5 seeds of one game in at most 25 minutes on 2 cores (README,
"MinAtar": a population of 5 trains 3,600 to 5,900 Breakout steps per second on one core, depending on the arm, Space
Invaders about 15% fewer; about 20 and 23 minutes per game, expected)."""
BASELINE = "dropout_mode=off,sample_dropout=none"
"""Every arm against dropout off without sample dropout, on the same game."""
ARM_COLUMNS = ("task", "group", "final_iqm", "ci_low", "ci_high", "first_ratio_dev", "first_clipfrac", "p_holm",
               "verdict")  # fmt: skip
"""What ``bench.json`` keeps of each arm's row of the report."""
FAST = dict(num_steps=32, total_steps=512, seeds=2)
"""``fast``: 8 environments x 32 steps, two updates per run, the first two seeds."""


def fast_requested(fast: bool) -> bool:
    """``fast``, or ``SANDBOX_FAST=1`` in the environment (what ``make test`` sets)."""
    return fast or os.environ.get("SANDBOX_FAST") == "1"


def specs(game: str, seeds: list[int], steps: int, fast: bool = False) -> dict[str, dict]:
    """The sweep specs of one game: ``modes`` (the four dropout modes) and ``dppo`` (D-PPO's sample dropout), each a
    ``{"base": ..., "grid": ...}`` of config fields."""
    base = {"env": f"minatar:{game}", **SETTINGS, "total_steps": steps, "dropout": DROPOUT, "dropout_value": True}
    if fast:
        base.update(num_steps=FAST["num_steps"], total_steps=FAST["total_steps"])
    return {
        "modes": {"base": base, "grid": {"dropout_mode": list(MODES), "seed": seeds}},
        "dppo": {"base": {**base, "dropout_mode": "off", "sample_dropout": "dppo"}, "grid": {"seed": seeds}},
    }


def population_size(seeds: int, jobs_per_split: int, workers: int) -> int:
    """The most seeds per population such that the jobs (``jobs_per_split`` arms, each split into populations of
    this size) come in a multiple of ``workers``: no worker idles while another still has a whole population to
    train. One population per arm when that already divides evenly."""
    for split in range(1, seeds + 1):
        size = math.ceil(seeds / split)
        if (jobs_per_split * math.ceil(seeds / size)) % workers == 0:
            return size
    return 1


def bench_minatar(
    games: tuple[str, ...] = GAMES,
    seeds: tuple[int, ...] = tuple(range(10)),
    steps: int = STEPS,
    workers: int = 2,
    out: str | None = None,
    quiet: bool = False,
    fast: bool = False,
    replicate: bool = False,
    where: Backend | None = None,
) -> dict:
    """Run the bench (module docstring) into ``out`` (default ``bench-minatar-<time>``); print the key table unless
    ``quiet``. Returns the machine, the settings, the wall time and each arm's final IQM and verdict per game (and,
    with ``replicate``, the replication table's rows). ``where``: local processes (default), or Ray (a cluster too:
    the runs come back to this machine)."""
    from ..analysis.breadth import replication_seeds

    unknown = [g for g in games if g not in MINATAR_GAMES]
    if unknown or not games:
        raise ConfigError("games", f"unknown MinAtar game {unknown[0] if unknown else ''!r}; one of: "
                          f"{', '.join(MINATAR_GAMES)}")  # fmt: skip
    fast = fast_requested(fast)
    seeds = list(seeds)[: FAST["seeds"]] if fast else list(seeds)
    out_dir = Path(out or f"bench-minatar-{time.strftime('%Y%m%d-%H%M%S')}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out", f"{out_dir} exists and is not a directory")
    arms = len(games) * (len(MODES) + 1)
    population = population_size(len(seeds), arms, workers)
    comparisons = len(games) * len(MODES)
    if not quiet:
        budget = FAST["total_steps"] if fast else steps
        detect = stats.detectable_effect(len(seeds), len(seeds), stats.ALPHA / comparisons)
        print(
            f"PPO on MinAtar ({', '.join(games)}): dropout off, rollout-eval, naive and consistent at p = {DROPOUT} "
            f"(policy and value), and D-PPO sample dropout; {len(seeds)} seeds each, {budget:,} steps per run"
            + (" (fast: a smoke test)" if fast else "")
            + f"; {comparisons} comparisons: 80% power at 0.05 / {comparisons} for |g| "
            + (f"{detect:.2f}" if math.isfinite(detect) else "none (below the permutation floor)")
            + (", and the same again on a second set of seeds" if replicate else ""),
            flush=True,
        )
    t0 = time.perf_counter()
    counts, table = _run_arms(out_dir, games, seeds, steps, fast, workers, population, quiet, where)
    train_s = time.perf_counter() - t0
    link_figure(out_dir, mechanism_figure(out_dir), MECHANISM_CAPTION)
    replicated = None
    if replicate:
        again = list(replication_seeds(seeds))
        beside = out_dir.parent / f"{out_dir.name}-replication"  # not inside: the report reads every run below OUT
        more, again_table = _run_arms(beside, games, again, steps, fast, workers, population, True, where)
        counts |= {k: counts[k] + more[k] for k in ("total", "failed")}
        replicated = replication(table, again_table, seeds, again, out_dir)
    wall = time.perf_counter() - t0
    where_ran = machine()
    if "cluster" in counts:  # the whole cluster trained: its CPUs are the workers
        c = counts["cluster"]
        workers, where_ran = c["cpus"], f"a Ray cluster of {c['nodes']} nodes (driver: {where_ran})"
    result = {
        "machine": where_ran,
        "games": list(games),
        "seeds": seeds,
        "steps": FAST["total_steps"] if fast else steps,
        "settings": {**SETTINGS, **({"num_steps": FAST["num_steps"]} if fast else {})},
        "dropout": DROPOUT,
        "workers": workers,
        "population": population,
        "fast": fast,
        "runs": counts["total"],
        "failed": counts["failed"],
        "train_s": train_s,
        "wall_s": wall,
        "out": str(out_dir),
        "arms": [{k: _plain(getattr(r, k)) for k in ARM_COLUMNS} for r in table.itertuples()],
        "replication": None if replicated is None else [{k: _plain(v) for k, v in row.items()}
                                                        for row in replicated.to_dict("records")],
    }  # fmt: skip
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2))
    if not quiet:
        where = f"report: {out_dir / 'report.md'}, mechanism: {out_dir / 'mechanism.png'}"
        print(f"\n{counts['total']} runs, {wall:.0f} s in all ({train_s:.0f} s training, {workers} workers) on "
              f"{result['machine']}; {where}")  # fmt: skip
    return result


def _run_arms(out_dir: Path, games, seeds: list[int], steps: int, fast: bool, workers: int, population: int,
              quiet: bool, where: Backend | None = None):  # fmt: skip
    """Write every game's specs for ``seeds`` under ``out_dir``, run them (resumable; here or on a Ray cluster,
    ``where``) and write the report; returns the run counts and the report's table."""
    from ..analysis.demo import to_toml
    from ..analysis.report import write_report
    from ..analysis.sweep import run_sweeps

    items = []
    for game in games:
        for name, spec in specs(game, seeds, steps, fast).items():
            d = out_dir / game / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "spec.toml").write_text(to_toml(spec))
            items.append((d / "spec.toml", d))
    where = where or Backend()
    counts = run_sweeps(items, workers, where.backend, where.address, quiet, population=population,
                        token_file=where.ray_token_file)  # fmt: skip
    return counts, write_report(out_dir, BASELINE, quiet=quiet, out=out_dir)  # the study's report in OUT itself


def replication(first, again, seeds, again_seeds, out_dir: Path):
    """Each arm's verdict on the first seeds and on the second (:func:`sandbox.analysis.breadth.replication_table`),
    written to ``replication.csv`` and ``replication.md``; returns the table."""
    from ..analysis.breadth import replication_markdown, replication_table

    def cells(t):
        t = t[~t.baseline.isin(["", "(baseline)"])]
        return t.rename(columns={"group": "label", "baseline": "against", "hedges_g": "g"})

    table = replication_table(cells(first), cells(again))
    table.to_csv(out_dir / "replication.csv", index=False)
    (out_dir / "replication.md").write_text(replication_markdown(table, seeds, again_seeds))
    return table


def _plain(v):
    """A table cell as JSON can hold it (NaN as None)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v.item() if hasattr(v, "item") else v


def arm_of(config: dict) -> str:
    """The arm a run belongs to: its dropout mode, or ``D-PPO`` for sample dropout."""
    return "D-PPO" if config.get("sample_dropout") == "dppo" else str(config.get("dropout_mode"))


MECHANISM_CAPTION = (
    "The ratio's noise before any update, per arm: first_ratio_dev (mean |r - 1| over the first minibatch of each "
    "update) and first_clipfrac (the fraction of it already clipped) over training, mean over seeds, one row of "
    "panels per game; at 0 (to float precision) for the arms whose ratio is exact: off, consistent and D-PPO."
)
"""The caption under ``mechanism.png`` in the study's report.md."""


def link_figure(out_dir: Path, path: Path, caption: str) -> None:
    """Add the figure at ``path`` (a file the study wrote in ``out_dir``) to the figures of ``out_dir/report.md``,
    the report's last section, with ``caption`` and alt text as the report gives its own: the report then links
    every figure the study writes, and only those (each a file beside it). Once: a resumed study links it once."""
    report = out_dir / "report.md"
    text = report.read_text().rstrip("\n")
    if f"]({path.name})" in text:
        return
    if "\n## Figures\n" not in text:
        text += "\n\n## Figures"
    alt = caption.split(":")[0].rstrip(".")
    report.write_text(f"{text}\n\n![{alt}, for every game of this study]({path.name})\n\n{caption}\n")


def mechanism_figure(out_dir: Path, name: str = "mechanism.png") -> Path:
    """Per game, ``first_ratio_dev`` (mean |r - 1| before any gradient step) and ``first_clipfrac`` (the fraction of
    the first minibatch already clipped) over training, mean over each arm's seeds: exactly 0 in modes off and
    consistent (and D-PPO, which has no dropout), above 0 in rollout-eval and naive."""
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    from ..analysis.report import load_runs
    from ..plots import OTHER_COLORS, legend_below, mode_color, use_style

    runs = load_runs(out_dir)
    games = sorted({r.config["env"] for r in runs})
    with matplotlib.rc_context():
        use_style()
        fig, axes = plt.subplots(len(games), 2, figsize=(9.0, 2.6 * len(games)), squeeze=False)
        for row, game in zip(axes, games):
            arms: dict[str, list] = {}
            for r in runs:
                if r.config["env"] == game:
                    arms.setdefault(arm_of(r.config), []).append(r.metrics)
            for ax, column in zip(row, ("first_ratio_dev", "first_clipfrac")):
                for arm in [*MODES, "D-PPO"]:
                    if arm not in arms:
                        continue
                    steps = arms[arm][0]["env_steps"].to_numpy(float)
                    n = min(len(m) for m in arms[arm])
                    y = np.mean([m[column].to_numpy(float)[:n] for m in arms[arm]], axis=0)
                    colour = OTHER_COLORS[0] if arm == "D-PPO" else mode_color(arm)
                    ax.plot(steps[:n], y, color=colour, lw=1.4, ls="--" if arm == "D-PPO" else "-", label=arm)
                ax.set_title(f"{game}: {column}", fontsize=9.5)
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
                ax.set_xlabel("env steps", fontsize=9)
            row[0].set_ylabel("mean |r - 1| before any step", fontsize=9)
            row[1].set_ylabel("fraction clipped before any step", fontsize=9)
        legend_below(fig, ncol=5, fontsize=8)  # below the panels: inside, it covered the lines of the noisy arms
        fig.suptitle("The ratio's noise before any update, per arm (mean over seeds)", fontsize=10.5)
        path = out_dir / name
        fig.savefig(path)
        plt.close(fig)
    return path
