"""Environment steps per second of our numpy vector envs (``sandbox/envs/classic.py``) against gymnasium's
``SyncVectorEnv`` of the same env, with random actions, at several numbers of sub-environments: 4 (the default
``num_envs``), 8, and 64 (a 16-seed population's envs stepped together)."""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np

from ..envs import classic
from .common import machine

SIZES = (4, 8, 64)


def _rate(env: gym.vector.VectorEnv, seconds: float) -> float:
    """Sub-environment steps per second of ``env`` under uniformly random actions (drawn beforehand, so the figure
    is the env's alone), over at least ``seconds``."""
    rng = np.random.default_rng(0)
    space, n = env.single_action_space, env.num_envs
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(0, space.n, (64, n))
    else:
        actions = rng.uniform(space.low, space.high, (64, n, *space.shape)).astype(space.dtype)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions:
            env.step(a)
        steps += len(actions)
    return steps * n / (time.perf_counter() - start)


def bench_env_speed(sizes: tuple[int, ...] = SIZES, seconds: float = 1.0, repeats: int = 3) -> dict:
    """Steps per second, ours and gymnasium's, for every env of :data:`sandbox.envs.classic.CLASSES` at each size:
    the best of ``repeats`` measurements of ``seconds`` each, the two alternating. Records the machine and its load
    (a figure measured while other work runs is not a quiet one)."""
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for env_id, cls in classic.CLASSES.items():
        for n in sizes:
            ours, theirs = cls(n), gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
            best = {"ours": 0.0, "sync": 0.0}
            for _ in range(repeats):
                best["ours"] = max(best["ours"], _rate(ours, seconds))
                best["sync"] = max(best["sync"], _rate(theirs, seconds))
            rows.append({"env": env_id, "num_envs": n, **best, "ratio": best["ours"] / best["sync"]})
    after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"machine": machine(), "load": [load, after], "rows": rows}


def format_env_speed(r: dict) -> str:
    load = ", ".join("?" if x is None else f"{x:.1f}" for x in r["load"])
    lines = [
        f"machine: {r['machine']}; load average before, after: {load}",
        "",
        "| env | sub-envs | ours, steps/s | SyncVectorEnv, steps/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['env']} | {row['num_envs']} | {row['ours']:,.0f} | {row['sync']:,.0f} | {row['ratio']:.1f}x |"
        )
    return "\n".join(lines)
