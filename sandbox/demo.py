"""``sandbox demo``: the four dropout modes side by side on CartPole, several seeds, run in parallel processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from .config import DROPOUT_MODES, Config, ConfigError, preset
from .runlog import is_run_dir

_COLUMNS = ("first_ratio_dev", "first_clipfrac", "first_approx_kl", "clipfrac")


def _run(cfg: Config) -> dict:
    """One run in a worker process; returns what the table needs (not the whole metrics frame)."""
    import torch

    torch.set_num_threads(1)
    from .train import train

    r = train(cfg)
    m = r.metrics
    return {"mode": cfg.dropout_mode, "seed": cfg.seed, **r.summary,
            **{c: float(m[c].mean()) for c in _COLUMNS}}


def demo_configs(dropout: float, seeds: int, total_steps: int, out: str) -> list[Config]:
    return [preset("cartpole", dropout=dropout, dropout_mode=mode, seed=seed, total_steps=total_steps,
                   quiet=True, out=os.path.join(out, f"{mode}-s{seed}"))
            for mode in DROPOUT_MODES for seed in range(seeds)]


def run_parallel(configs: list[Config], workers: int, quiet: bool, desc: str) -> list[dict]:
    """Run configs in ``workers`` processes (spawned: each starts clean, one torch thread), with a progress bar
    of runs done / total and an ETA. Results come back in the order of ``configs``."""
    from tqdm import tqdm

    results: list[dict | None] = [None] * len(configs)
    bar = tqdm(total=len(configs), desc=desc, unit="run", disable=quiet or not sys.stderr.isatty())
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(processes=workers)
    try:
        for i, res in pool.imap_unordered(_indexed_run, list(enumerate(configs))):
            results[i] = res
            bar.update(1)
        pool.close()  # close + join, not terminate: workers exit cleanly and release their semaphores
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        bar.close()
    return results  # type: ignore[return-value]


def _indexed_run(item: tuple[int, Config]) -> tuple[int, dict]:
    i, cfg = item
    return i, _run(cfg)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summarize(results: list[dict]) -> str:
    """A markdown table, one row per mode, means over seeds (time-to-solve: median over the seeds that solved)."""
    lines = ["| mode | first_ratio_dev | first_clipfrac | first_approx_kl | final return (mean ± sd) | "
             "solved | median time-to-solve |", "|---|---|---|---|---|---|---|"]
    for mode in DROPOUT_MODES:
        rs = [r for r in results if r["mode"] == mode]
        if not rs:
            continue
        finals = [r["final_return"] for r in rs if r["final_return"] is not None]
        solved = [r for r in rs if r["solved_at_steps"] is not None]
        sd = statistics.stdev(finals) if len(finals) > 1 else float("nan")
        tts = (f"{statistics.median(r['solved_at_s'] for r in solved):.1f} s / "
               f"{statistics.median(r['solved_at_steps'] for r in solved):,.0f} steps") if solved else "-"
        lines.append(
            f"| {mode} | {_fmt(statistics.mean(r['first_ratio_dev'] for r in rs), '.4f')} | "
            f"{_fmt(statistics.mean(r['first_clipfrac'] for r in rs), '.3f')} | "
            f"{_fmt(statistics.mean(r['first_approx_kl'] for r in rs), '.5f')} | "
            f"{_fmt(statistics.mean(finals) if finals else None, '.1f')} ± {_fmt(sd, '.1f')} | "
            f"{len(solved)}/{len(rs)} | {tts} |")
    return "\n".join(lines)


def run_demo(dropout: float, seeds: int, workers: int, total_steps: int, out: str | None, overwrite: bool,
             quiet: bool) -> list[dict]:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("dropout", f"must be in [0, 1), got {dropout}")
    for name, value in (("seeds", seeds), ("workers", workers), ("total_steps", total_steps)):
        if value <= 0:
            raise ConfigError(name, f"must be a positive integer, got {value}")
    out = out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise ConfigError("out", f"{path} already exists; choose another --out or pass --overwrite")
        if not path.is_dir() or not all(is_run_dir(p) for p in path.iterdir()):
            raise ConfigError("out", f"{path} holds files that are not run directories; --overwrite only "
                                     "replaces a directory of runs")
        shutil.rmtree(path)  # all of it: no run of an earlier, larger demo is left beside the new ones
    configs = [c.replace(overwrite=overwrite) for c in demo_configs(dropout, seeds, total_steps, out)]
    if not quiet:
        print(f"PPO on CartPole-v1 (preset cartpole), dropout p = {dropout}, modes {', '.join(DROPOUT_MODES)}, "
              f"{seeds} seeds each: {len(configs)} runs of {total_steps:,} steps, {workers} at a time -> {out}",
              flush=True)
    t0 = time.perf_counter()
    results = run_parallel(configs, workers, quiet, "demo")
    print(summarize(results))
    print(f"\n{len(results)} runs in {time.perf_counter() - t0:.0f} s. first_ratio_dev and first_clipfrac are "
          "means over updates of the first minibatch's |r - 1| and clip fraction, measured before any gradient "
          "step: they are 0 (below 1e-6: floating-point rounding) when the update sees the policy that collected "
          "the data (off, consistent), and dropout noise otherwise (rollout-eval, naive). Run directories: " + out)
    return results
