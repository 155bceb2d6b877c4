"""``sandbox bench lang``: GRPO on lang:reverse from the same SFT reference, ours and TRL's GRPOTrainer
(:mod:`sandbox.bench.trl_harness`), dropout off, until the batch mean reward reaches 0.9; alternating, one run at a
time, each in a fresh process."""

from __future__ import annotations

import statistics
import sys
import time

from .common import _median, _run_one, machine

LANG_THRESHOLD = 0.9
LANG_SETTINGS = dict(prompts=16, group_size=8, learning_rate=1e-3, beta=0.0, max_grad_norm=0.5)


def _ours_reverse(seed: int, max_steps: int) -> dict:
    import sandbox

    s = LANG_SETTINGS
    cfg = sandbox.Config(
        algo="grpo",
        env="lang:reverse",
        seed=seed,
        dropout_mode="off",
        anneal_lr=False,
        prompts_per_update=s["prompts"],
        group_size=s["group_size"],
        learning_rate=s["learning_rate"],
        beta=s["beta"],
        max_grad_norm=s["max_grad_norm"],
        total_steps=max_steps,
        stop_at_threshold=True,
        quiet=True,
    )
    r = sandbox.train(cfg)
    steps_at = r.summary["solved_at_steps"]
    solved_s = r.summary["solved_at_s"]
    return {
        "solved_s": solved_s,
        "solved_updates": int((r.metrics.env_steps <= (steps_at or 0)).sum()) or None,
        "tokens": r.summary["env_steps"],
        "total_s": r.summary["total_s"],
        "tokens_per_s": r.summary["env_steps"] / r.summary["total_s"],
        "reference_reward": r.summary["reference_reward"],
    }


def trl_available() -> str | None:
    """None if TRL can run here, else why not."""
    try:
        import datasets  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as err:
        return f"TRL is not installed ({err.name}); pip install -c requirements.lock -e '.[bench]'"
    return None


def bench_lang(seeds: tuple[int, ...] = (0, 1, 2), max_steps: int = 300_000, quiet: bool = False) -> dict:
    """GRPO on lang:reverse (dense) from the SFT reference, dropout off, until the batch mean reward >= 0.9:
    ours and TRL's, alternating, one run at a time, each in a fresh process."""
    from tqdm import tqdm

    from ..envs.lang_tasks import make_task
    from ..runs.pretrain import load_reference

    t0 = time.perf_counter()
    _, ref = load_reference(make_task("reverse"), progress=not quiet)  # once, shared by every run
    pretrain_s = ref.get("seconds") if not ref["from_cache"] else None
    why_not = trl_available()
    systems = ["ours-lang"] + ([] if why_not else ["trl-lang"])
    runs: dict[str, list[dict]] = {k: [] for k in systems}
    jobs = [(system, seed) for seed in seeds for system in systems]
    bar = tqdm(jobs, desc="bench lang", unit="run", disable=quiet or not sys.stderr.isatty(), leave=False)
    for system, seed in bar:
        bar.set_postfix(run=f"{system} seed {seed}")
        runs[system].append({"seed": seed, **_run_one(system, seed, max_steps)})
    result = {
        "machine": machine(),
        "seeds": list(seeds),
        "runs": runs,
        "trl": why_not or "ran",
        "reference_reward": ref["reference_reward"],
        "pretrain_s": pretrain_s,
        "wall_s": time.perf_counter() - t0,
    }
    for system in systems:
        result[f"{system}_median_s"] = _median([r["solved_s"] for r in runs[system]])
        result[f"{system}_tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in runs[system])
    print(format_lang(result))
    return result


def format_lang(r: dict) -> str:
    def fmt(x, spec):
        return "unsolved" if x is None else format(x, spec)

    names = {"ours-lang": "sandbox GRPO", "trl-lang": "TRL GRPOTrainer"}
    lines = [
        f"GRPO on lang:reverse (dense reward) from the SFT reference (mean reward {r['reference_reward']:.3f}), "
        f"dropout off, 16 prompts x 8 completions, until the batch mean reward >= {LANG_THRESHOLD}; seeds "
        f"{', '.join(map(str, r['seeds']))}",
        f"machine: {r['machine']}",
        "",
        "| system | median time-to-0.9 (s) | sampled tokens/s | per seed: s / updates |",
        "|---|---|---|---|",
    ]
    for system, runs in r["runs"].items():
        per = ", ".join(f"{fmt(x['solved_s'], '.1f')} / {fmt(x['solved_updates'], 'd')}" for x in runs)
        lines.append(
            f"| {names[system]} | {fmt(r[system + '_median_s'], '.2f')} | {r[system + '_tokens_per_s']:,.0f} | {per} |"
        )
    if r["trl"] != "ran":
        lines.append(f"\nTRL not run: {r['trl']}")
    ours = r.get("ours-lang_median_s")
    lines.append(
        f"\ntarget: under 60 s: {'met' if ours is not None and ours < 60 else 'NOT met'} (ours {fmt(ours, '.1f')} s)"
    )
    return "\n".join(lines)
