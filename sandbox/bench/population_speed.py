"""``sandbox bench population``: a 16-seed population against 16 runs one at a time (seeds per CPU-second, where a
population's time goes, and whether its final returns differ, or are shown equivalent), a 16-seed Acrobot population
against one run of Stable-Baselines3's PPO at the same settings (seeds per CPU-second), and how close the
population's update runs to the CPU's limit (its matrix products' GFLOP/s against plain ``torch.baddbmm`` and
``torch.matmul`` on the same machine), side by side in one run."""

from __future__ import annotations

import json
import math
import sys
import time

from .common import in_fresh_process, machine

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


ACROBOT = dict(env="Acrobot-v1", total_steps=100_000, dropout=0.1, dropout_mode="naive", dropout_value=True)
"""The peer comparison: Acrobot at the defaults (CleanRL's ppo.py: 4 envs x 128 steps, 4 epochs of 4 minibatches),
100k steps, naive dropout p 0.1 in the policy and the value network."""
ACROBOT_TARGET = 5.9
"""Seeds per CPU-second of a 16-seed population against one SB3 run: the goal (2.37x when it was set)."""


def _acrobot_worker(system: str, seeds: list[int]) -> dict:
    """In a fresh process, one torch thread: ``seeds`` of :data:`ACROBOT` as one population (``system="ours"``), or
    one run of SB3's PPO at the same settings (``"sb3"``: :func:`sandbox.algos.sb3.make_model`, SB3's ``learn()``,
    the same dropout policy; the first seed). CPU and wall seconds from building the envs and networks to the end
    (imports, and the import torch.optim's first use makes, before the clock starts)."""
    import torch

    import sandbox

    from ..algos.sb3 import make_model
    from ..config import validate
    from ..maths import Maths

    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch.optim's first use imports torch._dynamo (~1 s)
    cfgs = [sandbox.Config(**ACROBOT, seed=s, quiet=True) for s in seeds]
    cpu, wall = time.process_time(), time.perf_counter()
    if system == "ours":
        finals = [r.summary["final_return"] for r in sandbox.train_population(cfgs)]
    else:
        cfg = validate(cfgs[0])
        model = make_model(cfg, Maths())
        model.learn(cfg.num_updates * cfg.batch_size)
        last = [e["r"] for e in list(model.ep_info_buffer)[-20:]]  # the last 20 episodes, as a run's final_return
        finals = [float(sum(last) / len(last)) if last else None]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_s": cpu, "wall_s": wall, "seeds": len(cfgs), "final_returns": finals}


def bench_acrobot_vs_sb3(k: int = 16, quiet: bool = False) -> dict:
    """Seeds per CPU-second: a ``k``-seed population of :data:`ACROBOT` against one SB3 PPO run at the same
    settings, each in a fresh process with one torch thread."""
    got = {}
    for system, seeds in (("ours", list(range(k))), ("sb3", [0])):
        if not quiet:
            print(f"  Acrobot: {system} ...", file=sys.stderr, flush=True)
        got[system] = _fresh(f"b._acrobot_worker({system!r}, {seeds})")
    ours, sb3 = got["ours"], got["sb3"]
    ratio = (ours["seeds"] / ours["cpu_s"]) / (sb3["seeds"] / sb3["cpu_s"])
    return {**got, "k": k, "ratio": ratio, "target": ACROBOT_TARGET}


def _fresh(call: str) -> dict:
    """``call`` (a function of this module, as ``b.name(...)``) in a fresh interpreter with one thread; its result."""
    return in_fresh_process("sandbox.bench.population_speed", call, call)


GFLOPS_CASES = {
    "preset cartpole (MLP 64x64), K = 16": dict(preset="cartpole", total_steps=256 * 4),
    "Acrobot defaults, naive p 0.1 (MLP 64x64), K = 16": dict(ACROBOT, total_steps=512 * 3),
    "MinAtar Breakout (CNN), K = 16": dict(
        env="minatar:breakout", total_steps=1024 * 2, num_envs=8, num_steps=128, num_minibatches=4, update_epochs=4
    ),
}


def update_gflops(case: str, k: int = 16) -> dict:
    """How close a population's update runs to the CPU's limit, in this process (one torch thread): the update's
    matrix products (forward and backward, counted from the networks' shapes and the minibatches it ran) divided by
    the update's CPU time, against the same products run alone as plain ``torch.baddbmm`` calls (K members, the same
    shapes, the update's order) and against one large ``torch.matmul`` (2048 x 2048, the CPU's practical limit).

    The products of one member's minibatch of S rows through a layer ``in -> out``: forward ``2 S in out``, backward
    the weight's gradient ``2 S in out`` and the input's ``2 S in out`` (none for the first layer: the observations
    need no gradient); a convolution as the matrix product it is (``im2col``). Returns the figures and the shapes."""
    import torch

    import sandbox

    from ..algos.learner import Learner
    from ..models.cnn import DropoutCNN

    torch.set_num_threads(1)
    fields = dict(GFLOPS_CASES[case])
    preset = fields.pop("preset", None)

    def make(seed: int):
        return sandbox.preset(preset, **fields, seed=seed) if preset else sandbox.Config(**fields, seed=seed)

    cfgs = [sandbox.config.validate(make(s).replace(quiet=True)) for s in range(k)]  # every default filled in
    timing = {"cpu_s": 0.0, "steps": 0, "updates": 0}
    original = Learner.optimise_members

    def timed(self, *args, **kw):
        cpu = time.process_time()
        out = original(self, *args, **kw)
        if timing["updates"] > 0:  # the first update warms the caches up
            timing["cpu_s"] += time.process_time() - cpu
            timing["steps"] += cfgs[0].update_epochs * min(cfgs[0].num_minibatches, cfgs[0].batch_size)
        timing["updates"] += 1
        return out

    Learner.optimise_members = timed
    try:
        results = sandbox.train_population(cfgs)
    finally:
        Learner.optimise_members = original
    del results
    agent = sandbox.algos.rollout.Rollout(cfgs[0], sandbox.Maths()).policy
    rows = math.ceil(cfgs[0].batch_size / cfgs[0].num_minibatches)  # a member's rows per minibatch (padded)
    shapes = []  # (in, out, first, spatial): one linear map per layer of both networks; spatial: positions (conv)
    for net in (agent.actor, agent.critic):
        first = True
        if isinstance(net, DropoutCNN):
            w = net.conv.weight
            shapes.append((w[0].numel(), w.shape[0], True, net.conv_units // w.shape[0]))
            first = False
        for layer in [*net.hidden, net.head]:
            shapes.append((layer.in_features, layer.out_features, first, 1))
            first = False
    flops_step = sum(2 * k * rows * sp * i * o * (2 if first else 3) for i, o, first, sp in shapes)
    achieved = flops_step * timing["steps"] / timing["cpu_s"] / 1e9

    def plain() -> None:  # the same products as one gradient step, K members at a time, nothing else
        for (i, o, first, sp), (x, w, g) in zip(shapes, operands):
            y = torch.baddbmm(g[:, :1, :o], x, w.transpose(1, 2))  # forward: (K, S sp, in) @ (K, in, out)
            torch.bmm(y.transpose(1, 2), x)  # the weight's gradient: (K, out, S sp) @ (K, S sp, in)
            if not first:
                torch.bmm(y, w)  # the input's gradient: (K, S sp, out) @ (K, out, in)

    operands = [
        (torch.randn(k, rows * sp, i), torch.randn(k, o, i), torch.randn(k, rows * sp, o)) for i, o, first, sp in shapes
    ]
    plain_s = _best_of(plain, repeat=20)
    big = torch.randn(2048, 2048)
    matmul_s = _best_of(lambda: torch.matmul(big, big), repeat=3)
    return {
        "case": case,
        "k": k,
        "rows": rows,
        "layers": [dict(zip(("in", "out", "first", "positions"), s)) for s in shapes],
        "gflop_per_step": flops_step / 1e9,
        "update_ms_per_step": 1e3 * timing["cpu_s"] / timing["steps"],
        "update_gflops": achieved,
        "plain_baddbmm_gflops": flops_step / plain_s / 1e9,
        "matmul_gflops": 2 * 2048**3 / matmul_s / 1e9,
    }


def _best_of(f, repeat: int) -> float:
    """The least CPU time of ``repeat`` calls of ``f`` (after one warm-up call), in seconds."""
    f()
    best = math.inf
    for _ in range(repeat):
        cpu = time.process_time()
        f()
        best = min(best, time.process_time() - cpu)
    return best


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

    total = cumulative("train_ppo", "ppo.py")
    phases = [
        ("collect", "population.py", "rollouts (batched acting, env steps per member)"),
        ("values", "population.py", "critic values"),
        ("batches", "population.py", "advantages (GAE, all members at once)"),
        ("optimise_members", "learner.py", "update"),
        ("evaluate", "stacked.py", "  of which forward passes"),
        ("run_backward", "~", "  of which backward passes"),
        ("_fused_adam", "~", "  of which Adam"),
        ("update_metrics", "diagnostics.py", "  of which metrics"),
    ]
    return {label: cumulative(function, file) / total for function, file, label in phases}


def bench_population(k: int = 16, quiet: bool = False) -> dict:
    """Side by side: seeds per CPU-second of a ``k``-seed population against ``k`` separate runs, on preset cartpole
    (30k steps) and the default settings (50k steps), alternating (population, separate; then separate, population),
    each in a fresh process, and whether the population's final returns differ from the separate runs' (one family of
    two comparisons, :func:`sandbox.stats.compare_family`: *equivalent* only if the TOST shows it, else *not
    significant* is no claim of sameness); a ``k``-seed Acrobot population against one SB3 run
    (:func:`bench_acrobot_vs_sb3`); the update's GFLOP/s (:func:`update_gflops`); where a population's time goes
    (cProfile)."""
    from ..stats import compare_family, iqm

    seeds = list(range(k))
    result: dict = {"machine": machine(), "k": k, "settings": {}}
    for i, settings in enumerate(POPULATION_SETTINGS):
        order = ("population", "separate") if i % 2 == 0 else ("separate", "population")
        got = {}
        for how in order:
            if not quiet:
                print(f"  {settings}: {how} ...", file=sys.stderr, flush=True)
            got[how] = _fresh(f"b._population_worker({settings!r}, {how!r}, {seeds})")
            if not quiet:
                print(f"    {json.dumps(got[how])}", file=sys.stderr, flush=True)
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
    result["acrobot"] = bench_acrobot_vs_sb3(k, quiet)
    if not quiet:
        print(f"  Acrobot: {json.dumps(result['acrobot'])}", file=sys.stderr, flush=True)
        print("  GFLOP/s of the update ...", file=sys.stderr, flush=True)
    result["gflops"] = [_fresh(f"b.update_gflops({case!r}, {k})") for case in GFLOPS_CASES]
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
    targets = {"preset cartpole, 30k steps": 3.0, "default settings, 50k steps": 3.0}
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
    a = r["acrobot"]
    ours, sb3 = a["ours"], a["sb3"]
    lines += [
        "",
        *verdicts,
        "",
        f"Acrobot-v1, 100k steps, naive dropout p 0.1 in both networks: a {a['k']}-seed population against one SB3 PPO "
        "run at the same settings (one process and one torch thread each)",
        "",
        "| system | seeds | CPU s | wall s | seeds per CPU-s | final return (mean of the seeds') |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in (("sandbox population", ours), ("SB3 PPO (its learn(), the same dropout policy)", sb3)):
        known = [x for x in g["final_returns"] if x is not None]
        final = f"{sum(known) / len(known):.1f}" if known else "n/a"
        per_cpu_s = g["seeds"] / g["cpu_s"]
        lines.append(f"| {name} | {g['seeds']} | {g['cpu_s']:.1f} | {g['wall_s']:.1f} | {per_cpu_s:.3f} | {final} |")
    verdict = "met" if a["ratio"] >= a["target"] else "NOT met"
    lines += ["", f"seeds per CPU-second, population / SB3: {a['ratio']:.2f} (target >= {a['target']:g}): {verdict}"]
    lines += [
        "",
        "How close the population's update runs to the CPU's limit: its matrix products (forward and backward) per CPU "
        "second of the whole update, against the same products alone as plain torch.baddbmm / bmm calls, and one "
        "2048 x 2048 torch.matmul",
        "",
        "| case | rows per member | GFLOP per step | update ms per step | update GFLOP/s | plain baddbmm GFLOP/s, same "
        "shapes | matmul 2048 GFLOP/s | update / plain | update / matmul |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in r["gflops"]:
        lines.append(
            f"| {g['case']} | {g['rows']} | {g['gflop_per_step']:.3f} | {g['update_ms_per_step']:.2f} | "
            f"{g['update_gflops']:.1f} | {g['plain_baddbmm_gflops']:.1f} | {g['matmul_gflops']:.1f} | "
            f"{g['update_gflops'] / g['plain_baddbmm_gflops']:.0%} | {g['update_gflops'] / g['matmul_gflops']:.0%} |"
        )
    lines += ["", "where a population's time goes (preset cartpole, cProfile):"]
    lines += [f"  {label}: {share:.0%}" for label, share in r["profile"].items()]
    return "\n".join(lines)
