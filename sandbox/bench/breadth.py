"""``sandbox bench breadth`` and ``sandbox bench mechanisms``: does dropout's effect on PPO keep its sign across
tasks, and what decides it (:mod:`sandbox.analysis.breadth` holds the study; this module runs it and prints it)."""

from __future__ import annotations

from ..analysis.cluster import Backend
from .common import machine


def bench_breadth(
    kind: str,
    out: str,
    seeds: tuple[int, ...] | None,
    tasks: tuple[str, ...] | None = None,
    workers: int = 2,
    fast: bool = False,
    quiet: bool = False,
    replicate: bool = False,
    report_only: bool = False,
    where: Backend | None = None,
    max_steps: int | None = None,
    reuse: str | None = None,
    resampling_seed: int = 0,
) -> dict:
    """Run the breadth study (``kind="breadth"``) or the mechanism arms (``"mechanisms"``) into ``out`` and print
    its planned contrasts; returns the figures as plain data (runs, seconds, the comparisons as records). ``seeds``
    None: the study's seeds per group for 80% power (:func:`sandbox.analysis.breadth.seeds_per_group`).
    ``replicate``: also a second, disjoint seed set and the replication table. ``report_only``: no run, the report
    rewritten from ``out/finals.csv`` (a committed study re-read with the current statistics; ``resampling_seed``:
    the seed of its drawn permutations). ``where``: local processes (default), or Ray (a cluster too: the runs come
    back to this machine). ``max_steps``: the budget of tasks of your own (``--tasks module:Env-v0``). ``reuse``:
    another study's ``--out``, whose finished runs of the same configs are copied in rather than trained."""
    import pandas as pd

    from ..analysis import breadth

    planned = breadth.study_tasks(tasks or list(breadth.TASKS))  # the study's family, whatever --tasks runs now
    m = breadth.planned_comparisons(kind, planned)
    powered = breadth.seeds_per_group(kind, planned)
    if report_only:
        result = {**breadth.write_report(out, kind, resampling_seed), "runs": len(pd.read_csv(f"{out}/finals.csv")),
                  "seconds": 0.0, "out": str(out)}  # fmt: skip
    else:
        if not quiet:
            n = powered if seeds is None else len(seeds)
            print(f"{kind} study: {m} planned contrasts (one Holm family); {2 if fast else n} seeds per group"
                  f"{' (fast)' if fast else ''}; 80% power for |g| 0.8 at 0.05 / {m} needs {powered}"
                  + (", and the same again on a second set of seeds" if replicate else ""), flush=True)  # fmt: skip
        result = breadth.run_study(
            out, kind, workers, seeds, tasks, fast, quiet, machine(), replicate, where, max_steps=max_steps, reuse=reuse
        )
    table = result["comparisons"]
    if not quiet and len(table):
        columns = ["task", "label", "against", "seeds", "mean", "against mean", "g", "diff low", "diff high", "holm p"]
        with pd.option_context("display.width", 250, "display.max_columns", 20, "display.precision", 3):
            print(result["learned"].to_string(), table[columns + ["verdict"]].to_string(index=False), sep="\n\n")
            if result.get("replication") is not None:
                print("\n" + result["replication"].to_string(index=False))
        print(f"\n{result['runs']} runs; {result['seconds'] / 60:.1f} min on {machine()}; report in {out}/report.md")
    return {
        "runs": result["runs"],
        "seconds": result["seconds"],
        "out": result["out"],
        "comparisons": table.to_dict("records"),
        "seeds_per_group_for_power": powered,
        "planned_comparisons": m,
    }
