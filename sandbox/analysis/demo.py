"""``sandbox demo`` (what ``make demo`` runs): the headline experiment, in under 2 minutes on 2 cores (README).

Two sweeps share one pool of workers, then one report covers both:

- PPO on CartPole-v1 (the rl-zoo3 tuned preset, 30k steps) with dropout p = 0.3 in the policy *and* the value
  network, in the four dropout modes, 16 seeds each: each mode's seeds train together as one population
  (``sandbox/algos/population.py``), which is what makes 16 seeds fit. With dropout in the policy only, or at the
  preset's 100k steps, every mode solves tuned CartPole and the outcome hides the mechanism; at 30k steps with a
  noisy critic too, outcomes spread (README: what it measured).
- GRPO on lang:reverse from its pretrained reference (12k tokens) in the four dropout modes at GPT-2's p = 0.1, with
  the KL term (beta 0.04), 10 seeds each.

Both sides spend the budget on seeds at one setting where the effect shows, rather than on a grid of settings with a
handful of seeds each: with 3 to 5 seeds per group most comparisons end "too few seeds for a verdict" or "not
significant". Whatever a particular run says, the report states it plainly. The specs are written next to the runs
(``spec.toml``), so ``sandbox sweep`` can rerun or vary them; the per-seed finals go to ``finals.csv`` beside
``report.md`` (commit them with the report: :func:`sandbox.analysis.report.compare_finals` recomputes every verdict
from them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import ConfigError

MODES = ["off", "rollout-eval", "naive", "consistent"]
PPO_SPEC = {
    "base": {"preset": "cartpole", "total_steps": 30_000, "dropout": 0.3, "dropout_value": True},
    "grid": {"dropout_mode": MODES, "seed": list(range(16))},
}
GRPO_SPEC = {
    "base": {"algo": "grpo", "env": "lang:reverse", "total_steps": 12_000, "dropout": 0.1, "beta": 0.04},
    "grid": {"dropout_mode": MODES, "seed": list(range(10))},
}


def to_toml(spec: dict) -> str:
    """The spec as TOML (its values are strings, numbers, booleans and lists of them)."""
    lines = []
    for table in ("base", "grid"):
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in spec[table].items()]
        lines.append("")
    return "\n".join(lines)


def quick(spec: dict) -> dict:
    """A smoke-test version: two seeds, a tenth of the steps (for checking the plumbing, not the numbers)."""
    base = {**spec["base"], "total_steps": spec["base"]["total_steps"] // 10}
    return {"base": base, "grid": {**spec["grid"], "seed": spec["grid"]["seed"][:2]}}


def run_demo(workers: int = 2, out: str | None = None, quiet: bool = False, fast: bool = False):
    from .report import write_report
    from .sweep import run_sweeps

    t0 = time.perf_counter()
    out_dir = Path(out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out", f"{out_dir} exists and is not a directory")
    specs = [("ppo-cartpole", PPO_SPEC), ("grpo-reverse", GRPO_SPEC)]
    items = []
    for name, spec in specs:
        d = out_dir / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "spec.toml").write_text(to_toml(quick(spec) if fast else spec))
        items.append((d / "spec.toml", d))

    def prepare_reference() -> None:  # pretrain lang:reverse's reference while the PPO runs use the workers
        import torch

        torch.set_num_threads(1)
        from ..envs.lang_tasks import make_task
        from ..runs.pretrain import load_reference

        load_reference(make_task("reverse"))

    if not quiet:
        print(
            "The headline experiment: does dropout noise change policy-gradient training?\n"
            "  PPO on CartPole-v1: 4 dropout modes, p = 0.3 in the policy and value nets, 16 seeds each (populations)\n"
            "  GRPO on lang:reverse: 4 dropout modes, p = 0.1, beta 0.04, 10 seeds each",
            flush=True,
        )
    run_sweeps(items, workers, quiet=quiet, before=prepare_reference)
    table = write_report(out_dir, quiet=quiet)
    if not quiet:
        print(
            f"\ndemo finished in {time.perf_counter() - t0:.0f} s; figures and the full report: {out_dir / 'report.md'}"
        )
    return table
