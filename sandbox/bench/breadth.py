"""``sandbox bench breadth`` and ``sandbox bench mechanisms``: does dropout's effect on PPO keep its sign across
tasks, and what decides it (:mod:`sandbox.analysis.breadth` holds the study; this module runs it and prints it)."""

from __future__ import annotations

from ..analysis.cluster import Backend
from .common import machine


def bench_breadth(
    kind: str,
    out: str,
    seeds: tuple[int, ...],
    tasks: tuple[str, ...] | None = None,
    workers: int = 2,
    fast: bool = False,
    quiet: bool = False,
    where: Backend | None = None,
) -> dict:
    """Run the breadth study (``kind="breadth"``) or the mechanism arms (``"mechanisms"``) into ``out`` and print
    its comparisons; returns the figures as plain data (runs, seconds, the comparisons as records). ``where``: local
    processes (default), or Ray (a cluster too: the runs come back to this machine)."""
    import pandas as pd

    from ..analysis import breadth

    result = breadth.run_study(out, kind, workers, seeds, tasks, fast, quiet, machine(), where)
    table = result["comparisons"]
    if not quiet and len(table):
        columns = ["task", "label", "seeds", "mean", "off", "g", "g low", "g high", "holm p", "verdict"]
        with pd.option_context("display.width", 250, "display.max_columns", 20, "display.precision", 3):
            print(result["learned"].to_string(), table[columns].to_string(index=False), sep="\n\n")
        minutes = result["seconds"] / 60
        print(f"\n{result['runs']} runs; {minutes:.1f} min on {result['machine']}; report in {out}/report.md")
    return {
        "runs": result["runs"],
        "seconds": result["seconds"],
        "out": result["out"],
        "comparisons": table.to_dict("records"),
    }
