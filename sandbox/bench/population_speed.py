"""``sandbox bench population``: a 16-seed population against 16 runs one at a time: seeds per CPU-second, where a
population's time goes, and whether its final returns differ (or are shown equivalent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .common import machine

POPULATION_SETTINGS = {
    "preset cartpole, 30k steps": dict(preset="cartpole", total_steps=30_000),
    "default settings, 50k steps": dict(total_steps=50_000),
}


def _population_worker(settings: str, how: str, seeds: list[int]) -> dict:
    """In a fresh process: train ``seeds`` of ``settings`` as one population (``how="population"``) or one after
    the other (``"separate"``, as a sweep worker would); CPU seconds and wall seconds of the training alone."""
    import torch

    import sandbox

    torch.set_num_threads(1)
    fields = dict(POPULATION_SETTINGS[settings])
    preset = fields.pop("preset", None)
    make = (
        (lambda s: sandbox.preset(preset, **fields, seed=s, quiet=True))
        if preset
        else (lambda s: sandbox.Config(**fields, seed=s, quiet=True))
    )
    cfgs = [make(s) for s in seeds]
    cpu, wall = time.process_time(), time.perf_counter()
    results = sandbox.train_population(cfgs) if how == "population" else [sandbox.train(c) for c in cfgs]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finals = [r.summary["final_return"] for r in results]
    solved = [r.summary["solved_at_steps"] is not None for r in results]
    return {"cpu_s": cpu, "wall_s": wall, "final_returns": finals, "solved": solved}


def _population_profile(settings: str, seeds: list[int]) -> dict[str, float]:
    """Where a population's time goes: each phase's share of the training (cProfile over one run)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    _population_worker(settings, "population", seeds)
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, calls, own s, cumulative s, callers)}

    def cumulative(function: str, file: str) -> float:
        return sum(v[3] for (f, _, name), v in stats.items() if function in name and file in f)

    total = cumulative("train_ppo_population", "population.py")
    phases = [
        ("_collect", "population.py", "rollouts (batched acting, env steps per member)"),
        ("_values", "population.py", "critic values"),
        ("_batches", "population.py", "advantages (GAE, all members at once)"),
        ("_optimise", "population.py", "update"),
        ("evaluate", "stacked.py", "  of which forward passes"),
        ("run_backward", "~", "  of which backward passes"),
        ("_fused_adam", "~", "  of which Adam"),
        ("update_metrics", "diagnostics.py", "  of which metrics"),
    ]
    return {label: cumulative(function, file) / total for function, file, label in phases}


def bench_population(k: int = 16, quiet: bool = False) -> dict:
    """Seeds per CPU-second of a ``k``-seed population against ``k`` separate runs, on preset cartpole (30k steps)
    and the default settings (50k steps), alternating (population, separate; then separate, population), each in a
    fresh process; and whether the population's final returns differ from the separate runs' (one family of two
    comparisons, :func:`sandbox.stats.compare_family`: *equivalent* only if the TOST shows it, else *not
    significant* is no claim of sameness)."""
    from ..stats import compare_family, iqm

    seeds = list(range(k))
    result: dict = {"machine": machine(), "k": k, "settings": {}}
    for i, settings in enumerate(POPULATION_SETTINGS):
        order = ("population", "separate") if i % 2 == 0 else ("separate", "population")
        got = {}
        for how in order:
            if not quiet:
                print(f"  {settings}: {how} ...", file=sys.stderr, flush=True)
            code = (
                f"import json, sandbox.bench.population_speed as b; "
                f"print(json.dumps(b._population_worker({settings!r}, {how!r}, {seeds})))"
            )
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise RuntimeError(f"{settings} {how} failed:\n{out.stderr[-2000:]}")
            got[how] = json.loads(out.stdout.strip().splitlines()[-1])
        pop, sep = got["population"], got["separate"]
        result["settings"][settings] = {
            **got,
            "speedup_cpu": sep["cpu_s"] / pop["cpu_s"],
            "speedup_wall": sep["wall_s"] / pop["wall_s"],
            "iqm": {h: float(iqm(got[h]["final_returns"])) for h in got},
        }
    pairs = [(s["population"]["final_returns"], s["separate"]["final_returns"]) for s in result["settings"].values()]
    for s, v in zip(result["settings"].values(), compare_family(pairs, higher_is_better=None)):
        s.update(p_value=v.comparison.p_value, p_holm=v.p_holm, test=v.comparison.test, verdict=v.word,
                 equivalence_holm=v.equivalence_holm)  # fmt: skip
    result["profile"] = _population_profile("preset cartpole, 30k steps", seeds)
    print(format_population(result))
    return result


def format_population(r: dict) -> str:
    lines = [
        f"K = {r['k']} seeds as one population against {r['k']} runs one after the other (seeds 0-{r['k'] - 1})",
        f"machine: {r['machine']}",
        "",
        "| settings | population CPU s | separate CPU s | seeds per CPU-s, ratio | wall ratio | final return IQM "
        "(population / separate) | solved | p Holm (permutation test) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    targets = {"preset cartpole, 30k steps": 2.0, "default settings, 50k steps": 3.0}
    verdicts = []
    for name, s in r["settings"].items():
        pop, sep = s["population"], s["separate"]
        lines.append(
            f"| {name} | {pop['cpu_s']:.1f} | {sep['cpu_s']:.1f} | {s['speedup_cpu']:.2f} | {s['speedup_wall']:.2f} | "
            f"{s['iqm']['population']:.1f} / {s['iqm']['separate']:.1f} | {sum(pop['solved'])} / {sum(sep['solved'])} "
            f"| {s.get('p_holm', s['p_value']):.2f} |"
        )
        met = s["speedup_cpu"] >= targets[name]
        word = s.get("verdict", "")
        same = {"equivalent": "equivalent (TOST)", "not significant": "not significant (no claim of sameness)"}
        verdicts.append(
            f"{name}: speed-up {s['speedup_cpu']:.2f} (target >= {targets[name]:g}): "
            f"{'met' if met else 'NOT met'}; final returns against the separate runs: {same.get(word, word)}"
        )
    lines += ["", *verdicts, "", "where a population's time goes (preset cartpole, cProfile):"]
    lines += [f"  {label}: {share:.0%}" for label, share in r["profile"].items()]
    return "\n".join(lines)
