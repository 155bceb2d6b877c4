"""``sandbox bench grpo-lambda`` and ``sandbox bench flatness``: the two studies of the README
(:mod:`sandbox.analysis.studies`) run, their tables and figures written into a directory."""

from __future__ import annotations

import time
from pathlib import Path

from .common import machine

DROPOUT_ARMS = ("0/1 reward", "length penalty, Kimi form", "GRPO-lambda top 0.2, Kimi form")


def bench_grpo_lambda(seeds: tuple[int, ...], out: str, quiet: bool = False) -> dict:
    """GRPO-lambda: every task and arm of :mod:`sandbox.analysis.studies` with dropout off, then lang:sort's three
    main arms in the other dropout modes (p = 0.1). Writes ``curves.csv``, ``finals.csv``, ``table.csv``,
    ``tests.csv`` and the figures ``grpo_lambda.png``, ``grpo_lambda_dropout.png`` into ``out``; prints the tables."""
    import pandas as pd

    from ..analysis import studies

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    curves = studies.grpo_lambda_runs(seeds=seeds)
    others = studies.grpo_lambda_runs(["sort"], DROPOUT_ARMS, ("rollout-eval", "naive", "consistent"), seeds)
    curves = pd.concat([curves, others], ignore_index=True)
    finals = studies.final_scores(curves)
    table, tests = studies.grpo_lambda_table(finals), studies.grpo_lambda_tests(finals)
    curves.to_csv(out_dir / "curves.csv", index=False)
    finals.to_csv(out_dir / "finals.csv", index=False)
    table.to_csv(out_dir / "table.csv")
    tests.to_csv(out_dir / "tests.csv")
    studies.plot_grpo_lambda(curves[curves["mode"] == "off"]).savefig(out_dir / "grpo_lambda.png")
    sort = curves[(curves["task"] == "sort") & curves["arm"].isin(DROPOUT_ARMS)]
    studies.plot_grpo_lambda(sort, colour_by="mode").savefig(out_dir / "grpo_lambda_dropout.png")
    seconds = time.perf_counter() - t0
    if not quiet:
        with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
            print(table.to_string(), tests.to_string(), sep="\n\n")
        print(f"\n{len(finals)} runs in {seconds:.0f} s on {machine()}; tables and figures in {out_dir}")
    return {"runs": len(finals), "seconds": seconds, "out": str(out_dir)}


def bench_flatness(seeds: tuple[int, ...], out: str, quiet: bool = False) -> dict:
    """The variance-flatness relation on CartPole (PPO) and lang:reverse (GRPO), dropout off and each mode at p =
    0.1. Writes ``directions.csv``, ``measurements.csv``, ``table.csv`` and ``flatness.png`` into ``out``."""
    import pandas as pd

    from ..analysis import studies

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    directions, measurements = studies.flatness_runs(seeds=seeds)
    table = studies.flatness_table(directions, measurements)
    directions.to_csv(out_dir / "directions.csv", index=False)
    measurements.to_csv(out_dir / "measurements.csv", index=False)
    table.to_csv(out_dir / "table.csv")
    studies.plot_flatness(directions).savefig(out_dir / "flatness.png")
    seconds = time.perf_counter() - t0
    if not quiet:
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(table.to_string())
        print(
            f"\n{measurements[['env', 'mode', 'seed']].drop_duplicates().shape[0]} runs in {seconds:.0f} s on "
            f"{machine()}; tables and figure in {out_dir}"
        )
    return {"seconds": seconds, "out": str(out_dir)}
