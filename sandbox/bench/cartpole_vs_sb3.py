"""``sandbox bench cartpole``: our PPO (cartpole preset, dropout off) against stable-baselines3's PPO with the same
rl-zoo3 hyperparameters, alternating, one run at a time, each in a fresh process with one torch thread.
Time-to-solve = wall seconds and env steps from the start of learning until the mean of the last 20 finished
training episodes reaches 475 (CartPole-v1's reward_threshold)."""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time

from .common import _median, _run_one, machine

SOLVE_WINDOW = 20


def _ours_cartpole(seed: int, max_steps: int) -> dict:
    import sandbox

    with tempfile.TemporaryDirectory() as tmp:  # the run directory is written, as for any user run
        cfg = sandbox.preset(
            "cartpole",
            seed=seed,
            total_steps=max_steps,
            stop_at_threshold=True,
            quiet=True,
            out=os.path.join(tmp, "run"),
        )
        s = sandbox.train(cfg).summary
    return {"solved_s": s["solved_at_s"], "solved_steps": s["solved_at_steps"], "total_s": s["total_s"]}


def _sb3_cartpole(seed: int, max_steps: int) -> dict:
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)

    class SolveClock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns = collections.deque(maxlen=SOLVE_WINDOW)
            self.solved_s = self.solved_steps = None

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
                    if len(self.returns) == SOLVE_WINDOW and np.mean(self.returns) >= 475:
                        self.solved_s = time.perf_counter() - self.t0
                        self.solved_steps = self.num_timesteps
                        return False
            return True

    def lin(v):
        return lambda progress_remaining: progress_remaining * v

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1; SB3 defaults otherwise (64x64 tanh, separate nets).
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lin(1e-3),
        clip_range=lin(0.2),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    clock = SolveClock()
    t0 = time.perf_counter()
    model.learn(total_timesteps=max_steps, callback=clock)
    return {"solved_s": clock.solved_s, "solved_steps": clock.solved_steps, "total_s": time.perf_counter() - t0}


def bench_cartpole(seeds: tuple[int, ...] = (0, 1, 2, 3, 4), max_steps: int = 100_000, quiet: bool = False) -> dict:
    """Alternate ours and SB3 on each seed; print and return per-run figures and medians."""
    from tqdm import tqdm

    runs: dict[str, list[dict]] = {"ours": [], "sb3": []}
    jobs = [(system, seed) for seed in seeds for system in ("ours", "sb3")]
    bar = tqdm(jobs, desc="bench cartpole", unit="run", disable=quiet or not sys.stderr.isatty(), leave=False)
    for system, seed in bar:
        bar.set_postfix(run=f"{system} seed {seed}")
        runs[system].append({"seed": seed, **_run_one(system, seed, max_steps)})
    result = {"machine": machine(), "seeds": list(seeds), "runs": runs}
    for system in runs:
        result[f"{system}_median_s"] = _median([r["solved_s"] for r in runs[system]])
        result[f"{system}_median_steps"] = _median([r["solved_steps"] for r in runs[system]])
    ours_s, sb3_s = result["ours_median_s"], result["sb3_median_s"]
    result["ratio_s"] = ours_s / sb3_s if ours_s and sb3_s else None
    print(format_cartpole(result))
    return result


def format_cartpole(r: dict) -> str:
    def fmt(x, spec):
        return "unsolved" if x is None else format(x, spec)

    lines = [
        f"CartPole-v1 time-to-solve (mean of last {SOLVE_WINDOW} episodes >= 475), seeds "
        f"{', '.join(map(str, r['seeds']))}",
        f"machine: {r['machine']}",
        "",
        "| system | median wall s | median env steps | per seed: wall s / env steps |",
        "|---|---|---|---|",
    ]
    names = {"ours": "sandbox PPO (preset cartpole, dropout off)", "sb3": "SB3 PPO (rl-zoo3 tuned)"}
    for system, runs in r["runs"].items():
        per = ", ".join(f"{fmt(x['solved_s'], '.1f')} / {fmt(x['solved_steps'], ',')}" for x in runs)
        lines.append(
            f"| {names[system]} | {fmt(r[system + '_median_s'], '.2f')} | "
            f"{fmt(r[system + '_median_steps'], ',.0f')} | {per} |"
        )
    ratio = r["ratio_s"]
    target = "met" if ratio is not None and ratio <= 0.33 and (r["ours_median_steps"] or 1e9) <= 40_000 else "NOT met"
    lines += [
        "",
        f"ratio ours/SB3 (median wall s): {fmt(ratio, '.2f')}   target: ratio <= 0.33 and our median "
        f"env steps <= 40k: {target}",
    ]
    return "\n".join(lines)
