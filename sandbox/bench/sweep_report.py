"""``sandbox bench sweep`` and ``sandbox bench report``: the experiment machinery itself (a sweep with 2 workers
against 1; the report of a 100-run sweep)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .common import _write, machine


def bench_sweep(runs: int = 10, steps: int = 20_000, rounds: int = 2, quiet: bool = False) -> dict:
    """The same sweep of ``runs`` short PPO runs with 1 worker and with 2, in the order 1, 2, 2, 1, ... (``rounds``
    of each), so that the machine's drift over minutes is shared. Target: 2 workers <= 0.6 x 1 worker, both timed
    from the command's start (worker start-up included) to the last run's summary."""
    from ..analysis.sweep import run_sweep

    spec = f'[base]\npreset = "cartpole"\ntotal_steps = {steps}\n\n[grid]\nseed = {list(range(runs))}\n'
    order = [w for r in range(rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "spec.toml", spec)
        for i, workers in enumerate(order):
            t0 = time.perf_counter()
            run_sweep(path, Path(tmp) / f"round{i}", workers=workers, quiet=True, population=0)
            times[workers].append(time.perf_counter() - t0)
            if not quiet:
                print(f"  {workers} worker(s): {times[workers][-1]:.1f} s", file=sys.stderr, flush=True)
    serial, parallel = sum(times[1]), sum(times[2])
    ratio = parallel / serial
    result = {
        "machine": machine(),
        "runs": runs,
        "steps": steps,
        "serial_s": times[1],
        "parallel_s": times[2],
        "ratio": ratio,
    }
    rows = "\n".join(
        f"| {w} | {', '.join(f'{t:.1f}' for t in times[w])} | {sum(times[w]) / len(times[w]):.1f} |" for w in (1, 2)
    )
    print(
        f"sweep of {runs} PPO runs (preset cartpole, {steps:,} steps each), order {order}\n"
        f"machine: {result['machine']}\n\n| workers | wall s per round | mean |\n|---|---|---|\n{rows}\n\n"
        f"ratio 2 workers / 1 worker: {ratio:.3f}   target <= 0.6: {'met' if ratio <= 0.6 else 'NOT met'}"
    )
    return result


def bench_report(quiet: bool = False) -> dict:
    """A real 100-run sweep (20 groups x 5 seeds of short PPO runs), then the time of ``sandbox report``."""
    from ..analysis.report import write_report
    from ..analysis.sweep import run_sweep

    spec = (
        '[base]\npreset = "cartpole"\ntotal_steps = 2048\n\n[grid]\n'
        'dropout_mode = ["off", "rollout-eval", "naive", "consistent"]\ndropout = [0.1, 0.2, 0.3, 0.4, 0.5]\n'
        "seed = [0, 1, 2, 3, 4]\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "spec.toml", spec)
        t0 = time.perf_counter()
        run_sweep(path, Path(tmp) / "out", workers=2, quiet=quiet)
        sweep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = write_report(Path(tmp) / "out", quiet=True)
        report_s = time.perf_counter() - t0
    result = {"machine": machine(), "runs": 100, "groups": len(table), "sweep_s": sweep_s, "report_s": report_s}
    print(
        f"report of a 100-run sweep ({len(table)} groups x 5 seeds), figures included\nmachine: {result['machine']}"
        f"\n\nreport: {report_s:.1f} s (the sweep itself took {sweep_s:.0f} s)   target < 15 s: "
        f"{'met' if report_s < 15 else 'NOT met'}"
    )
    return result
