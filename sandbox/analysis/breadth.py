"""Does dropout's effect on PPO keep its sign across tasks? The breadth study and the mechanism arms
(``sandbox bench breadth``, ``sandbox bench mechanisms``).

**The breadth study.** Every task of :data:`TASKS` at a budget where PPO with dropout off learns (its final return is
above its first update's, tested over the seeds), dropout off against the three dropout modes at two rates (p = 0.1
and 0.3, in the policy and the value network), 16 seeds per group, each group's seeds trained together as one
population (one sweep per task). The outcome of a run is its final return (the mean return of its last 20 episodes
at the last update). Each mode and rate is compared with dropout off on its task (:func:`sandbox.stats.compare`:
permutation test, Hedges' g with its interval), Holm's correction over every comparison of the study, and the
verdicts of :func:`sandbox.stats.verdict`. The summary figure is a forest plot of the effect sizes.

**The mechanism arms** ask what decides the sign, each hypothesis with arms of its own, on the two tasks where the
sign differs (Acrobot and CartPole), at p = 0.3 (:data:`MECHANISMS`):

- a smaller effective step: the noisy modes clip part of every batch before any step; dropout off with half the
  learning rate, or with half the clip range, takes smaller steps without any noise;
- exploration from acting with dropout: naive and consistent act with dropout, rollout-eval does not (the breadth
  study's own groups answer it);
- noise in the critic against noise in the policy: dropout in one network at a time (naive mode);
- the capacity a thinned network loses: dropout off with hidden layers narrowed by (1 - p) (64 -> 45 units).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import PRESETS, Config, validate
from ..dropout_modes import MODE_NAMES, dropout_is_off
from ..stats import ALPHA, compare, holm, verdict
from .cluster import Backend
from .report import load_runs

MODES = tuple(m for m in MODE_NAMES if not dropout_is_off(m))
RATES = (0.1, 0.3)
SEEDS = 16


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of the study: its settings (a preset and fields), its budget, and why these."""

    env: str
    settings: dict
    total_steps: int
    why: str


TASKS: dict[str, Task] = {
    "CartPole-v1": Task(
        "CartPole-v1",
        {"preset": "cartpole"},
        30_000,
        "the course's preset (rl-baselines3-zoo's tuned settings) at the demo's 30k steps: dropout off learns, and "
        "the budget is short enough for a difference to show (at the preset's 100k every mode solves CartPole)",
    ),
    "Acrobot-v1": Task(
        "Acrobot-v1",
        {},
        100_000,
        "the defaults (CleanRL's ppo.py), as the measurement that raised the question: dropout off climbs from "
        "-500 towards -100 in 100k steps",
    ),
    "Pendulum-v1": Task(
        "Pendulum-v1",
        {
            "num_envs": 4,
            "num_steps": 1024,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "update_epochs": 10,
            "num_minibatches": 64,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
        },  # fmt: skip
        150_000,
        "rl-baselines3-zoo's PPO settings for Pendulum without gSDE (the sandbox has none): with the defaults PPO "
        "barely moves in this budget; with these it learns part of the swing-up",
    ),
    "MountainCarContinuous-v0": Task(
        "MountainCarContinuous-v0",
        {},
        100_000,
        "the defaults: PPO learns to stop paying for useless pushes (the return rises from about -50 towards 0) but, "
        "without an exploration bonus, rarely reaches the flag; that local optimum is what it learns here",
    ),
    "minatar:breakout": Task(
        "minatar:breakout",
        {"num_envs": 8, "learning_rate": 1e-3},
        50_000,
        "pixels and a convolutional policy (the MinAtar paper's network, dropout after the convolution and the hidden "
        "layer); the settings of sandbox bench minatar; the return rises from about 0.4 to about 3 in 50k steps, far "
        "below the paper's curves (about 7 at 500k frames), a budget the study can afford 112 times",
    ),
}
"""The tasks, with the settings and budget of each (tuned or default, and why)."""


def arms(rates: tuple[float, ...] = RATES) -> dict[str, dict]:
    """The study's groups on one task, label -> fields: dropout off, then each mode at each rate (in the policy and
    the value network)."""
    out = {"off": {"dropout_mode": "off", "dropout": 0.0}}
    out |= {f"{m} p {p:g}": {"dropout_mode": m, "dropout": p, "dropout_value": True} for p in rates for m in MODES}
    return out


MECHANISM_TASKS = ("Acrobot-v1", "CartPole-v1")
MECHANISM_P = 0.3


def config_of(task: Task, **fields) -> Config:
    """The config of one of ``task``'s runs (checked, its defaults filled in): its preset, its settings, then
    ``fields``."""
    settings = dict(task.settings)
    start = PRESETS[settings.pop("preset")] if "preset" in settings else {}
    return validate(Config(**{**start, **settings, "env": task.env, "total_steps": task.total_steps, **fields}))


def mechanisms(task: Task) -> dict[str, dict]:
    """The mechanism arms on ``task``, label -> fields (dropout off first, the baseline)."""
    base = config_of(task)
    lr, clip = base.learning_rate, base.clip_coef
    narrow = round(64 * (1 - MECHANISM_P))
    p = MECHANISM_P
    return {
        "off": {"dropout_mode": "off", "dropout": 0.0},
        "off, half the learning rate": {"dropout_mode": "off", "learning_rate": lr / 2},
        "off, half the clip range": {"dropout_mode": "off", "clip_coef": clip / 2},
        f"off, hidden layers of {narrow} = 64 x (1 - p)": {"dropout_mode": "off", "hidden_sizes": [narrow, narrow]},
        f"naive p {p:g}, policy only": {"dropout_mode": "naive", "dropout": p},
        f"naive p {p:g}, critic only": {
            "dropout_mode": "naive",
            "dropout": p,
            "dropout_value": True,
            "dropout_policy": False,
        },  # fmt: skip
    }


# --- running ---------------------------------------------------------------------------------------------------


def folder_of(task: str) -> str:
    """The folder of a task's runs: its id, with ``:`` (not allowed in Windows paths) as ``-``."""
    return task.replace(":", "-")


def _spec(task: Task, grid: dict, seeds: tuple[int, ...], steps: int) -> str:
    base = {k: v for k, v in task.settings.items()}
    base.update(env=task.env, total_steps=steps)
    lines = ["[base]"] + [f"{k} = {json.dumps(v)}" for k, v in base.items()] + ["", "[grid]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in {**grid, "seed": list(seeds)}.items()]
    return "\n".join(lines) + "\n"


def sweeps(
    out: Path, tasks: dict[str, Task], groups, seeds: tuple[int, ...], scale: float = 1.0
) -> list[tuple[Path, Path]]:
    """Write one sweep spec per (task, group) under ``out/runs/FOLDER/GROUP`` (:func:`folder_of`; ``groups(task)``
    gives label -> fields, the baseline first) and ``out/groups.json`` (each group's label, by folder; the entries of
    tasks run before are kept); returns ``[(spec, sweep_dir), ...]``. ``scale`` shrinks every budget (a smoke
    test)."""
    items = []
    path = out / "groups.json"
    labels = json.loads(path.read_text()) if path.exists() else {}  # other tasks' groups, run before, are kept
    for name, task in tasks.items():
        folder = folder_of(name)
        for i, (label, fields) in enumerate(groups(task).items()):
            d = out / "runs" / folder / f"group{i:02d}"
            d.mkdir(parents=True, exist_ok=True)
            steps = max(int(task.total_steps * scale), 2048)
            (d / "spec.toml").write_text(_spec(task, {k: [v] for k, v in fields.items()}, seeds, steps))
            items.append((d / "spec.toml", d))
            labels.setdefault(folder, {})[d.name] = label
    path.write_text(json.dumps(labels, indent=1))
    return items


def _first(returns: pd.Series) -> float:
    """The first update's mean return that has one (Acrobot's first episodes end after several updates)."""
    known = returns.dropna()
    return float(known.iloc[0]) if len(known) else math.nan


def finals(out: Path) -> pd.DataFrame:
    """One row per finished run under ``out/runs``: task, group (its directory and label), mode, p, seed, the first
    update's return and the final one (the mean of the last 20 episodes at the last update), and the mechanism over
    the whole run: ``first_ratio_dev`` and ``first_clipfrac`` averaged over its updates."""
    labels = json.loads((out / "groups.json").read_text())
    rows = []
    for r in load_runs(out / "runs"):
        folder, group = r.path.relative_to(out / "runs").parts[:2]
        rows.append({
            "task": r.config["env"],
            "group": group,
            "label": labels[folder][group],
            "mode": r.config["dropout_mode"],
            "p": 0.0 if dropout_is_off(r.config["dropout_mode"]) else float(r.config["dropout"]),
            "seed": r.config["seed"],
            "first": _first(r.metrics.ep_return_mean),
            "final": float(r.final),
            "first_ratio_dev": float(r.metrics.first_ratio_dev.mean()),
            "first_clipfrac": float(r.metrics.first_clipfrac.mean()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _compare(x: np.ndarray, y: np.ndarray):
    """:func:`sandbox.stats.compare`, quiet about identical samples (every seed at a task's floor, say: the p-value
    of 1 says so already)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return compare(x, y)


def learned(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: did dropout off learn? Its final returns against its first update's (the first update with a
    finished episode: the nearly random initial policy's episodes), over the seeds: the means, the difference's
    interval and the permutation test's p-value."""
    rows = []
    for task, g in frame[frame["mode"].map(dropout_is_off)].groupby("task"):
        g = g[g["group"] == "group00"]
        c = _compare(g["final"].to_numpy(), g["first"].to_numpy())
        rows.append({"task": task, "seeds": len(g), "first update": c.mean_y, "final": c.mean_x,
                     "rise": c.diff, "rise 95% CI": f"[{c.diff_interval.low:.1f}, {c.diff_interval.high:.1f}]",
                     "p": c.p_value, "learned": bool(c.diff > 0 and c.p_value < ALPHA)})  # fmt: skip
    return pd.DataFrame(rows).set_index("task")


def comparisons(frame: pd.DataFrame, baseline_group: str = "group00") -> pd.DataFrame:
    """Every group against dropout off on its task (Hedges' g, its interval, the permutation test), with Holm's
    correction over all of them and the verdicts."""
    rows, comps = [], []
    for (task, group), g in frame.groupby(["task", "group"]):
        if group == baseline_group:
            continue
        base = frame[(frame["task"] == task) & (frame["group"] == baseline_group)]["final"].to_numpy()
        c = _compare(g["final"].to_numpy(), base)
        comps.append(c)
        rows.append({"task": task, "group": group, "label": g["label"].iloc[0], "mode": g["mode"].iloc[0],
                     "p": g["p"].iloc[0], "seeds": c.n_x, "mean": c.mean_x, "off": c.mean_y,
                     "diff": c.diff, "g": c.effect_size, "g low": c.effect_interval.low,
                     "g high": c.effect_interval.high, "p_value": c.p_value})  # fmt: skip
    table = pd.DataFrame(rows)
    if len(table):
        table["holm p"] = holm(table["p_value"].tolist())
        table["verdict"] = [verdict(c, p) for c, p in zip(comps, table["holm p"])]
    return table


def forest(table: pd.DataFrame, title: str):
    """The forest plot: each mode and rate's effect size against dropout off (Hedges' g and its 95% interval), per
    task; a filled marker where Holm's correction leaves the difference significant."""
    import matplotlib.pyplot as plt

    from ..plots import MODE_COLORS, use_style

    use_style()
    tasks = [t for t in TASKS if t in set(table["task"])] + sorted(set(table["task"]) - set(TASKS))
    order = {m: i for i, m in enumerate(MODES)}
    rows = table.assign(_t=table["task"].map(tasks.index), _m=table["mode"].map(order)).sort_values(["_t", "p", "_m"])
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows()):
        colour = MODE_COLORS.get(r["mode"], "grey")
        significant = r["verdict"] in ("better", "worse")
        ax.plot([r["g low"], r["g high"]], [yi, yi], color=colour, lw=1.6)
        ax.plot(r["g"], yi, "o", color=colour, mfc=colour if significant else "white", ms=6)
    ax.axvline(0, color="grey", lw=1, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['task'].split('-')[0]}: {r['label']}" for _, r in rows.iterrows()], fontsize=8)
    for i in range(1, len(tasks)):  # a line between tasks
        ax.axhline(y[rows["task"].map(tasks.index).to_numpy() == i][0] + 0.5, color="lightgrey", lw=0.8)
    ax.set_xlabel("effect on the final return, Hedges' g (95% CI); > 0: better than dropout off")
    ax.plot([], [], "o", color="grey", label="significant after Holm")
    ax.plot([], [], "o", color="grey", mfc="white", label="not significant")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.9 / fig.get_figheight()), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return fig


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(learn: pd.DataFrame, table: pd.DataFrame, tasks: dict[str, Task], header: str) -> str:
    """The study's report.md: the tasks and why, whether dropout off learned, the comparisons with verdicts."""
    lines = [header, "", "| task | settings | steps | why |", "|---|---|---|---|"]
    for name, t in tasks.items():
        settings = ", ".join(f"{k} {v}" for k, v in t.settings.items()) or "defaults"
        lines.append(f"| {name} | {settings} | {t.total_steps:,} | {t.why} |")
    lines += [
        "",
        "Dropout off learned (its final return against its first update's, over the seeds):",
        "",
        "| task | seeds | first update | final | rise [95% CI] | p | learned |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in learn.iterrows():
        lines.append(
            f"| {task} | {r['seeds']} | {_fmt(r['first update'])} | {_fmt(r['final'])} | "
            f"{_fmt(r['rise'])} {r['rise 95% CI']} | {r['p']:.4f} | {'yes' if r['learned'] else 'no'} |"
        )
    lines += ["", "Each group against dropout off on its task (final return; Holm over every comparison):", "",
              "| task | group | seeds | mean | off | Hedges' g [95% CI] | p (Holm) | verdict |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in table.iterrows():
        lines.append(
            f"| {r['task']} | {r['label']} | {r['seeds']} | {_fmt(r['mean'])} | {_fmt(r['off'])} | "
            f"{r['g']:.2f} [{r['g low']:.2f}, {r['g high']:.2f}] | {r['holm p']:.4f} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def _record_time(out: Path, tasks: list[str], runs: int, seconds: float, workers: int, machine: str) -> list[dict]:
    """Add this invocation's time to ``out/timings.json`` (a study resumed or run task by task is timed in parts) and
    return every part."""
    path = out / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else []
    when, where = time.strftime("%Y-%m-%d %H:%M"), machine or "this machine"
    timings.append({"date": when, "tasks": tasks, "runs": runs, "minutes": round(seconds / 60, 1),
                    "workers": workers, "machine": where})  # fmt: skip
    path.write_text(json.dumps(timings, indent=1))
    return timings


def run_study(
    out: str | Path,
    kind: str = "breadth",
    workers: int = 2,
    seeds: tuple[int, ...] = tuple(range(SEEDS)),
    tasks: tuple[str, ...] | None = None,
    fast: bool = False,
    quiet: bool = False,
    machine: str = "",
    where: Backend | None = None,
) -> dict:
    """Run the breadth study (``kind="breadth"``) or the mechanism arms (``"mechanisms"``) into ``out``: its sweeps
    (resumable: finished runs are kept, so an interrupted study goes on where it stopped), then ``finals.csv``,
    ``comparisons.csv``, ``report.md`` and the forest plot ``forest.png``. ``tasks``: a subset of the study's tasks
    (None: all of them); the report covers every task whose runs are in ``out``. ``fast``: the first two seeds and a
    twentieth of each budget, for checking the plumbing (its numbers mean nothing). ``where``: local processes
    (default), or Ray, on a cluster too (:mod:`sandbox.analysis.cluster`: the runs come back to this machine)."""
    from .sweep import run_sweeps

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds, scale = (tuple(seeds[:2]), 0.05) if fast else (tuple(seeds), 1.0)
    every = TASKS if kind == "breadth" else {n: TASKS[n] for n in MECHANISM_TASKS}
    chosen = {n: every[n] for n in (tasks or every)}
    groups = (lambda task: arms()) if kind == "breadth" else mechanisms
    t0 = time.perf_counter()
    items = sweeps(out, chosen, groups, seeds, scale)
    where = where or Backend()
    counts = run_sweeps([(str(s), str(d)) for s, d in items], workers, where.backend, where.address, quiet,
                        population=len(seeds), token_file=where.ray_token_file)  # fmt: skip
    seconds = time.perf_counter() - t0
    if "cluster" in counts:  # the whole cluster trained: its CPUs are the workers
        c = counts["cluster"]
        workers, machine = c["cpus"], f"a Ray cluster of {c['nodes']} nodes (driver: {machine or 'this machine'})"
    timings = _record_time(out, list(chosen), counts.get("ran", 0), seconds, workers, machine)
    frame = finals(out)
    frame.to_csv(out / "finals.csv", index=False)
    learn, table = learned(frame), comparisons(frame)
    table.to_csv(out / "comparisons.csv", index=False)
    what = "Breadth study" if kind == "breadth" else "Mechanism arms"
    spent = [t for t in timings if t["runs"] > 0]
    lines = "; ".join(f"{t['date']}: {t['runs']} runs of {', '.join(t['tasks'])} in {t['minutes']:.1f} min with "
                      f"{t['workers']} workers on {t['machine']}" for t in spent)  # fmt: skip
    header = (
        f"# {what}: each group against dropout off\n\n{len(frame)} runs, {len(seeds)} seeds per group "
        f"({'FAST mode: a twentieth of each budget, numbers meaningless' if fast else 'full budgets'}). Time: "
        f"{sum(t['minutes'] for t in spent):.1f} minutes in all ({lines or 'no runs were needed'})."
    )
    reported = {n: t for n, t in TASKS.items() if n in set(frame["task"])}
    (out / "report.md").write_text(markdown(learn, table, reported, header))
    if len(table):
        fig = forest(table, f"{what}: each group against dropout off, {len(seeds)} seeds")
        fig.savefig(out / "forest.png", dpi=120, bbox_inches="tight")
    return {"runs": len(frame), "seconds": seconds, "out": str(out), "comparisons": table, "learned": learn,
            "machine": timings[-1]["machine"]}  # fmt: skip
