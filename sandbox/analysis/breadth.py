"""Does dropout's effect on PPO keep its sign across tasks? The breadth study and the mechanism arms
(``sandbox bench breadth``, ``sandbox bench mechanisms``).

**The breadth study.** Every task of :data:`TASKS` at a budget where PPO with dropout off learns (its final return is
above its first update's: a paired test over the seeds), dropout off against the three dropout modes at two rates
(p = 0.1 and 0.3, in the policy and the value network), each group's seeds trained together as one population (one
sweep per task). The outcome of a run is its final return (the mean return of its last 20 episodes at the last
update). Its planned contrasts (:func:`contrasts`): each mode and rate against dropout off on its task, 30 over the
five tasks, one Holm family (:func:`sandbox.stats.compare_family`). The summary figure is a forest plot of the effect
sizes with the interval at the level of each verdict.

**The mechanism arms** ask what decides the sign, each hypothesis an arm of its own with a planned contrast against
dropout off and against the arm it would explain, naive dropout at p = 0.3 in both networks (:data:`MECHANISMS`):

- noise in the critic against noise in the policy: dropout in one network at a time (naive mode), the critic-only
  arm on every task;
- a smaller effective step: the noisy modes clip part of every batch before any step; dropout off with half the
  learning rate, or with half the clip range, takes smaller steps without any noise;
- exploration from acting with dropout: rollout-eval does not act with dropout, naive does;
- the critic's masks: consistent fits the critic through the masks the rollout drew, naive through fresh ones;
- the capacity a thinned network loses: dropout off with hidden layers narrowed by (1 - p) (64 -> 45 units).

The policy-only, step, exploration, mask and capacity arms run on the two tasks where the sign differs (Acrobot and
CartPole). Every contrast is written in the study's plan (``plan.md``) before any run starts.

**Replication** (``replicate``): the same groups on a second, disjoint set of seeds, decided with their own Holm over
the same family, and a table of which verdicts replicated (:func:`sandbox.stats.replication`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import stats
from ..config import PRESETS, Config, validate
from ..dropout_modes import MODE_NAMES, dropout_is_off
from .cluster import Backend
from .report import load_runs

MODES = tuple(m for m in MODE_NAMES if not dropout_is_off(m))
RATES = (0.1, 0.3)


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
        "the budget is short enough for a difference to show",
    ),
    "Acrobot-v1": Task(
        "Acrobot-v1",
        {},
        100_000,
        "the defaults (CleanRL's ppo.py), as the measurement that raised the question: dropout off climbs from "
        "-500 (the goal never reached in an episode) in 100k steps; how far, the learned check below says",
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
        "the defaults: PPO learns to stop paying for useless pushes but, without an exploration bonus, rarely "
        "reaches the flag; that local optimum is what it learns here (its rise: the learned check below)",
    ),
    "minatar:breakout": Task(
        "minatar:breakout",
        {"num_envs": 8, "learning_rate": 1e-3},
        50_000,
        "pixels and a convolutional policy (the MinAtar paper's network, dropout after the convolution and the hidden "
        "layer); the settings of sandbox bench minatar at an eighth of its 400k steps: early training, the budget a "
        "study of many seeds can afford",
    ),
}
"""The tasks, with the settings and budget of each (tuned or default, and why)."""


CUSTOM_STEPS = 100_000
"""The budget of a task of your own in the studies (``--tasks module:Env-v0``) when ``--max-steps`` does not say."""


def task_of(name: str, steps: int | None = None) -> Task:
    """The study's task ``name`` (:data:`TASKS`), or a task of your own: any Gymnasium id that builds here (gymnasium's
    ``module:Env-v0`` form for an env your module registers), with the defaults (CleanRL's ``ppo.py``) and ``steps``
    (:data:`CUSTOM_STEPS` when None). A study with a task of its own plans, and decides as one family, only the tasks
    it was given."""
    if name in TASKS:
        return TASKS[name]
    why = f"a task of your own: the defaults (CleanRL's ppo.py), {'--max-steps' if steps else 'the default'} budget"
    return Task(name, {}, steps or CUSTOM_STEPS, why)


def study_tasks(chosen: Sequence[str]) -> list[str]:
    """The tasks a study plans (its Holm family and its seeds for power): every task of :data:`TASKS` for a study of
    the built-in tasks (``--tasks`` runs some of them now, the plan covers all), the tasks given when one is your
    own."""
    return list(chosen) if any(t not in TASKS for t in chosen) else list(TASKS)


def arms(rates: tuple[float, ...] = RATES) -> dict[str, dict]:
    """The study's groups on one task, label -> fields: dropout off, then each mode at each rate (in the policy and
    the value network)."""
    out = {"off": {"dropout_mode": "off", "dropout": 0.0}}
    out |= {f"{m} p {p:g}": {"dropout_mode": m, "dropout": p, "dropout_value": True} for p in rates for m in MODES}
    return out


MECHANISM_TASKS = ("Acrobot-v1", "CartPole-v1")
"""The tasks of the mechanism arms beyond the critic-only one (which runs on every task)."""
MECHANISM_P = 0.3


def config_of(task: Task, **fields) -> Config:
    """The config of one of ``task``'s runs (checked, its defaults filled in): its preset, its settings, then
    ``fields``."""
    settings = dict(task.settings)
    start = PRESETS[settings.pop("preset")] if "preset" in settings else {}
    return validate(Config(**{**start, **settings, "env": task.env, "total_steps": task.total_steps, **fields}))


@dataclasses.dataclass(frozen=True)
class Contrast:
    """A planned comparison: ``arm`` against ``against`` (group labels of one task), and the sentence it tests."""

    arm: str
    against: str
    question: str


NAIVE = f"naive p {MECHANISM_P:g}"
CRITIC = f"{NAIVE}, critic only"
POLICY = f"{NAIVE}, policy only"
HALF_LR, HALF_CLIP = "off, half the learning rate", "off, half the clip range"
NARROW = f"off, hidden layers of {round(64 * (1 - MECHANISM_P))} = 64 x (1 - p)"


def mechanisms(task: Task) -> dict[str, dict]:
    """The mechanism arms on ``task``, label -> fields (dropout off first, the baseline): on every task the
    critic-only arm and naive dropout in both networks, the arm it would explain; on :data:`MECHANISM_TASKS` also
    the policy-only, smaller-step, narrower-network, rollout-eval and consistent arms. (The order keeps the group
    folders of studies run before: new arms come last.)"""
    base = config_of(task)
    lr, clip = base.learning_rate, base.clip_coef
    narrow = round(64 * (1 - MECHANISM_P))
    p = MECHANISM_P
    critic = {"dropout_mode": "naive", "dropout": p, "dropout_value": True, "dropout_policy": False}
    both = {"dropout_value": True, "dropout": p}
    if task.env not in MECHANISM_TASKS:
        return {
            "off": {"dropout_mode": "off", "dropout": 0.0},
            CRITIC: critic,
            NAIVE: {"dropout_mode": "naive", **both},
        }
    return {
        "off": {"dropout_mode": "off", "dropout": 0.0},
        HALF_LR: {"dropout_mode": "off", "learning_rate": lr / 2},
        HALF_CLIP: {"dropout_mode": "off", "clip_coef": clip / 2},
        NARROW: {"dropout_mode": "off", "hidden_sizes": [narrow, narrow]},
        POLICY: {"dropout_mode": "naive", "dropout": p},
        CRITIC: critic,
        NAIVE: {"dropout_mode": "naive", **both},
        f"rollout-eval p {p:g}": {"dropout_mode": "rollout-eval", **both},
        f"consistent p {p:g}": {"dropout_mode": "consistent", **both},
    }


MECHANISMS: dict[str, tuple[Contrast, ...]] = {
    "every task": (
        Contrast(NAIVE, "off", "the effect to explain: naive dropout in both networks against none"),
        Contrast(CRITIC, "off", "noise in the critic alone changes the final return"),
        Contrast(CRITIC, NAIVE, "the critic's dropout is what dropout in both networks does (not different; "
                 "equivalent if the seeds can show it)"),
    ),
    "mechanism tasks": (
        Contrast(POLICY, "off", "noise in the policy alone changes the final return"),
        Contrast(POLICY, NAIVE, "the policy's dropout is what dropout in both networks does"),
        Contrast(HALF_LR, "off", "a smaller step (half the learning rate) changes the final return"),
        Contrast(HALF_LR, NAIVE, "a smaller step explains dropout's effect (half the learning rate like naive)"),
        Contrast(HALF_CLIP, "off", "a smaller step (half the clip range) changes the final return"),
        Contrast(HALF_CLIP, NAIVE, "a smaller step explains dropout's effect (half the clip range like naive)"),
        Contrast(NARROW, "off", "a network narrowed by (1 - p) changes the final return"),
        Contrast(NARROW, NAIVE, "lost capacity explains dropout's effect (the narrow network like naive)"),
        Contrast(f"rollout-eval p {MECHANISM_P:g}", NAIVE, "acting with dropout (exploration) matters: rollout-eval, "
                 "which acts without it, differs from naive"),
        Contrast(f"consistent p {MECHANISM_P:g}", NAIVE, "the critic's masks matter: consistent (the rollout's masks "
                 "replayed) differs from naive (fresh masks)"),
    ),
}  # fmt: skip
"""The mechanism study's planned contrasts, per scope: on every task, and on :data:`MECHANISM_TASKS` only."""


def contrasts(kind: str, task: str) -> list[Contrast]:
    """The planned contrasts of the ``kind`` study ("breadth" or "mechanisms") on ``task``: breadth, each mode and
    rate against dropout off; mechanisms, :data:`MECHANISMS`."""
    if kind == "breadth":
        return [Contrast(label, "off", f"{label} changes the final return against dropout off")
                for label in arms() if label != "off"]  # fmt: skip
    return list(MECHANISMS["every task"]) + (list(MECHANISMS["mechanism tasks"]) if task in MECHANISM_TASKS else [])


def planned_comparisons(kind: str, tasks: Sequence[str] | None = None) -> int:
    """The number of planned contrasts of a study over ``tasks`` (None: all of its tasks): its Holm family."""
    return sum(len(contrasts(kind, t)) for t in (tasks or TASKS))


def seeds_per_group(kind: str, tasks: Sequence[str] | None = None) -> int:
    """The seeds per group that give 80% power against |g| ``stats.POWER_G`` at the level each comparison of the
    study is tested at first (Holm's first step, 0.05 over :func:`planned_comparisons`), above the permutation floor
    (:func:`sandbox.stats.seeds_needed`): the benches' default."""
    return int(stats.seeds_needed(stats.POWER_G, comparisons=planned_comparisons(kind, tasks)))


def replication_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """A second set of seeds, as many, disjoint from ``seeds``: the next ones after the largest."""
    start = max(seeds) + 1
    return tuple(range(start, start + len(seeds)))


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


def _family(pairs: list, **kwargs) -> list[stats.Verdict]:
    """:func:`sandbox.stats.compare_family`, quiet about identical samples (every seed at a task's floor, say: the
    p-value of 1 says so already)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.compare_family(pairs, **kwargs)


def learned(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: did dropout off learn? Each seed's final return against its own first update's (the first update
    with a finished episode: the nearly random initial policy's episodes): Wilcoxon's signed-rank test of the pairs
    (:class:`sandbox.stats.SignedRankTest`: a seed whose first episodes were lucky does not hide 15 that rose), Holm
    over the tasks, the rise (Hodges-Lehmann: the median of the pairwise mean rises) with its interval at the level
    its verdict used. ``verdict``: "rose", "fell" or "not significant"; ``learned``: it rose."""
    rows, tests = [], []
    for task, g in frame[frame["mode"].map(dropout_is_off)].groupby("task"):
        g = g[(g["group"] == "group00") & np.isfinite(g["final"].astype(float)) & np.isfinite(g["first"].astype(float))]
        tests.append(stats.SignedRankTest(g["final"].to_numpy(float), g["first"].to_numpy(float)))
        rows.append((task, g))
    adjusted = stats.holm([t.p_value for t in tests])
    out = []
    for (task, g), t, p_holm in zip(rows, tests, adjusted):
        level = stats.ALPHA * t.p_value / p_holm if p_holm > 0 else stats.ALPHA
        ci = t.interval(level)
        word = stats.NOT_SIGNIFICANT if not p_holm < stats.ALPHA else ("rose" if t.estimate > 0 else "fell")
        means = {"first update": float(g["first"].mean()), "final": float(g["final"].mean())}
        out.append({"task": task, "seeds": t.n, **means,
                    "rise": t.estimate, "rise [CI at its level]": f"[{ci.low:.1f}, {ci.high:.1f}]",
                    "seeds that rose": float(np.mean(g["final"] > g["first"])), "p": t.p_value, "p Holm": p_holm,
                    "verdict": word, "learned": word == "rose"})  # fmt: skip
    columns = ["task", "seeds", "first update", "final", "rise", "rise [CI at its level]", "seeds that rose", "p",
               "p Holm", "verdict", "learned"]  # fmt: skip
    return pd.DataFrame(out, columns=columns).set_index("task")


def _task_contrasts(frame: pd.DataFrame, task: str) -> list[Contrast]:
    """Every group of ``task`` against its first (dropout off): the default when no plan is given."""
    labels = list(dict.fromkeys(frame[frame["task"] == task].sort_values("group")["label"]))
    return [Contrast(label, labels[0], f"{label} against {labels[0]}") for label in labels[1:]]


def comparisons(frame: pd.DataFrame, kind: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Every planned contrast of the ``kind`` study (:func:`contrasts`; None: every group against dropout off on its
    task) on the tasks of ``frame``, decided as one family (:func:`sandbox.stats.compare_family`): Hedges' g with its
    exact 95% interval, the permutation test's p with its Monte Carlo bounds, Holm's p and its bounds, the level the
    verdict used and the difference's interval at it (``diff low``, ``diff high``; in units of g for the forest plot:
    ``g level low``, ``g level high``), the TOST, the smallest |g| detectable at that level, the verdict. A contrast
    whose arm was not run is left out (:func:`missing` names it). ``seed``: the resampling seed."""
    rows, pairs = [], []
    for task in [t for t in TASKS if t in set(frame["task"])] + sorted(set(frame["task"]) - set(TASKS)):
        runs = frame[frame["task"] == task]
        by_label = {label: g for label, g in runs.groupby("label", sort=False)}
        off = runs[runs["mode"].map(dropout_is_off) & (runs["group"] == "group00")]["final"].to_numpy(float)
        for con in contrasts(kind, task) if kind else _task_contrasts(frame, task):
            if con.arm not in by_label or con.against not in by_label:
                continue
            g, base = by_label[con.arm], by_label[con.against]
            dropped = int((~np.isfinite(g["final"])).sum() + (~np.isfinite(base["final"])).sum())
            pairs.append((g["final"].to_numpy(float), base["final"].to_numpy(float)))
            rows.append({"task": task, "group": g["group"].iloc[0], "label": con.arm, "against": con.against,
                         "mode": g["mode"].iloc[0], "p": g["p"].iloc[0], "question": con.question,
                         "off": float(np.nanmean(off)) if len(off) else math.nan,
                         "nonfinite": dropped})  # fmt: skip
    decided = _family(pairs, seed=seed)
    for row, v in zip(rows, decided):
        c = v.comparison
        row.update({"seeds": c.n_x, "mean": c.mean_x, "against mean": c.mean_y, "diff": c.diff,
                    "g": c.effect_size, "g low": c.effect_interval.low, "g high": c.effect_interval.high,
                    "p_value": c.p_value, "p low": c.p_low, "p high": c.p_high, "exact": c.exact,
                    "resamples": c.resamples, "holm p": v.p_holm, "holm low": v.p_holm_low,
                    "holm high": v.p_holm_high, "level": v.level, "diff low": v.interval.low,
                    "diff high": v.interval.high, "g level low": v.effect_at_level.low,
                    "g level high": v.effect_at_level.high, "tost holm": v.equivalence_holm,
                    "detectable g": v.detectable, "verdict": v.word, "family": v.family})  # fmt: skip
    return pd.DataFrame(rows)


def missing(frame: pd.DataFrame, kind: str) -> list[str]:
    """The planned contrasts of the ``kind`` study on ``frame``'s tasks whose arms were not run, as "task: arm
    against against"."""
    out = []
    for task in [t for t in TASKS if t in set(frame["task"])]:
        labels = set(frame[frame["task"] == task]["label"])
        out += [f"{task}: {c.arm} against {c.against}" for c in contrasts(kind, task)
                if c.arm not in labels or c.against not in labels]  # fmt: skip
    return out


def forest(table: pd.DataFrame, title: str):
    """The forest plot: each contrast's Hedges' g (the point) and the difference's interval at the level its verdict
    used, in pooled standard deviations (the bar: it crosses 0 exactly when the verdict is not better or worse), per
    task. A filled marker: better or worse after Holm; open: not significant; grey: borderline; a diamond:
    equivalent."""
    import matplotlib.pyplot as plt

    from ..plots import MODE_COLORS, legend_below, use_style

    use_style()
    tasks = [t for t in TASKS if t in set(table["task"])] + sorted(set(table["task"]) - set(TASKS))
    order = {m: i for i, m in enumerate(MODES)}
    rows = table.assign(_t=table["task"].map(tasks.index), _m=table["mode"].map(order).fillna(-1))
    rows = rows.sort_values(["_t", "p", "_m"], kind="stable")
    low, high = ("g level low", "g level high") if "g level low" in rows else ("g low", "g high")
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.8))
    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows()):
        colour = MODE_COLORS.get(r["mode"], "grey")
        word = r["verdict"]
        ax.plot([max(r[low], -50), min(r[high], 50)], [yi, yi], color=colour, lw=1.6)
        face = colour if word in ("better", "worse") else ("lightgrey" if word == stats.BORDERLINE else "white")
        ax.plot(r["g"], yi, "D" if word == stats.EQUIVALENT else "o", color=colour, mfc=face, ms=6)
    ax.axvline(0, color="grey", lw=1, ls=":")
    ax.set_yticks(y)
    against = rows.get("against", pd.Series("off", index=rows.index))
    names = [f"{r['task'].split('-')[0]}: {r['label']}" + ("" if a == "off" else f" vs {a}")
             for (_, r), a in zip(rows.iterrows(), against)]  # fmt: skip
    ax.set_yticklabels(names, fontsize=8)
    for i in range(1, len(tasks)):  # a line between tasks
        ax.axhline(y[rows["task"].map(tasks.index).to_numpy() == i][0] + 0.5, color="lightgrey", lw=0.8)
    ax.set_xlabel("effect on the final return, Hedges' g, and the interval at the level of its verdict (Holm);\n"
                  "> 0: above the arm it is compared with (dropout off unless named)")  # fmt: skip
    ax.plot([], [], "o", color="grey", label="better or worse after Holm")
    ax.plot([], [], "o", color="grey", mfc="white", label=stats.NOT_SIGNIFICANT)
    ax.plot([], [], "o", color="grey", mfc="lightgrey", label=stats.BORDERLINE)
    ax.plot([], [], "D", color="grey", mfc="white", label=stats.EQUIVALENT)
    legend_below(fig, fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def clipping_scatter(mechanism: pd.DataFrame):
    """Lesson 09's scatter: does the sign follow the clipping? Each group's effect on the final return (Hedges' g
    against dropout off, column ``g``) against its ``first_clipfrac`` (the share of the first minibatch clipped
    before any step, averaged over the run), one point per (task, label) of the index: colour by dropout mode (the
    label's first word), marker by task, and the verdict as in :func:`forest`: filled where better or worse after
    Holm, grey where borderline, open otherwise. The legend sits below the axes, so that it covers no point (inside,
    it hid two of the points the lesson reads)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..plots import MODE_COLORS, legend_below, use_style

    use_style()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    present = list(dict.fromkeys(t for t, _ in mechanism.index))
    markers = dict(zip([t for t in TASKS if t in present] + [t for t in present if t not in TASKS], "osD^vP<>*X"))
    for (task, label), row in mechanism.iterrows():
        colour = MODE_COLORS.get(label.split()[0], "grey")
        word = row["verdict"]
        face = colour if word in ("better", "worse") else ("lightgrey" if word == stats.BORDERLINE else "white")
        ax.scatter(row["first_clipfrac"], row["g"], color=colour, marker=markers[task], s=40, facecolors=face)
    ax.axhline(0, color="grey", lw=1, ls=":")
    ax.set_xlabel("first_clipfrac: share of the first minibatch clipped before any step (mean over the run)")
    ax.set_ylabel("Hedges' g against dropout off")
    ax.set_title("Clipped before any step, against the effect on the return")
    handles = [Line2D([], [], color="grey", marker=m, ls="", label=t.split("-")[0]) for t, m in markers.items()]
    handles += [Line2D([], [], color=MODE_COLORS[m], marker="o", ls="", label=m) for m in MODES]
    handles += [Line2D([], [], color="grey", marker="o", ls="", label="better or worse after Holm")]
    handles += [Line2D([], [], color="grey", marker="o", mfc="lightgrey", ls="", label=stats.BORDERLINE)]
    handles += [Line2D([], [], color="grey", marker="o", mfc="white", ls="", label="neither (open)")]
    legend_below(fig, handles, ncol=4, fontsize=8, numpoints=1)
    return fig


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(r: pd.Series, point: str, low: str, high: str) -> str:
    """A p-value as the report prints it: exact, or with its Monte Carlo bounds."""
    if r["exact"] or not np.isfinite(r[low]):
        return f"{r[point]:.2g}"
    return f"{r[point]:.2g} [{r[low]:.2g}, {r[high]:.2g}]"


def plan(kind: str, tasks: Sequence[str], seeds: int, replication: Sequence[int] = ()) -> str:
    """The study's plan, written before any run (``plan.md``): the planned contrasts with the sentence each tests,
    the Holm family, the level, the power, the smallest effect of interest for *equivalent*."""
    m = planned_comparisons(kind, tasks)
    first = stats.ALPHA / max(m, 1)
    detect = stats.detectable_effect(seeds, seeds, first)
    lines = [
        f"## Plan ({kind} study), written before the runs",
        "",
        f"**{m} planned contrasts**, one Holm family at {stats.ALPHA} (family-wise): Holm's first level "
        f"{stats.ALPHA} / {m} = {first:.2g}. {seeds} seeds per group: 80% power at that level for |g| "
        f"{_fmt(detect, 2) if math.isfinite(detect) else 'none (below the permutation floor)'}; |g| "
        f"{stats.POWER_G} needs {seeds_per_group(kind, tasks)} seeds per group. *Equivalent* needs a TOST showing the "
        f"standardised difference inside +-{stats.EQUIVALENCE_G} (pooled standard deviations), Holm over the same "
        f"{m} contrasts."
        + (f" Replication: the same groups on seeds {replication[0]}-{replication[-1]}." if len(replication) else ""),
        "",
        "| task | arm | against | the sentence it tests |",
        "|---|---|---|---|",
    ]
    for task in tasks:
        lines += [f"| {task} | {c.arm} | {c.against} | {c.question} |" for c in contrasts(kind, task)]
    return "\n".join(lines) + "\n"


def _nonfinite(frame: pd.DataFrame) -> str:
    bad = frame[~np.isfinite(frame["final"].astype(float))]
    if not len(bad):
        return "Runs that did not end finite: none."
    named = "; ".join(f"{t} {label}: seed {', '.join(str(s) for s in g['seed'])}"
                      for (t, label), g in bad.groupby(["task", "label"]))  # fmt: skip
    return f"Runs that did not end finite, left out of every statistic: {len(bad)} ({named})."


def markdown(learn: pd.DataFrame, table: pd.DataFrame, tasks: dict[str, Task], header: str, frame=None) -> str:
    """The study's report.md: the tasks and why, whether dropout off learned, the contrasts with their verdicts."""
    lines = [header, "", "| task | settings | steps | why |", "|---|---|---|---|"]
    for name, t in tasks.items():
        settings = ", ".join(f"{k} {v}" for k, v in t.settings.items()) or "defaults"
        lines.append(f"| {name} | {settings} | {t.total_steps:,} | {t.why} |")
    lines += [
        "",
        "Dropout off learned: each seed's final return against its own first update's (Wilcoxon's signed-rank test "
        "of the pairs, exact; Holm over the tasks; *rise*: the Hodges-Lehmann shift, the median of the pairwise mean "
        "rises, with its interval at the level its verdict used; *first update*, *final*: means):",
        "",
        "| task | seeds | first update | final | rise [CI at its level] | seeds that rose | p | p Holm | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, r in learn.iterrows():
        lines.append(
            f"| {task} | {r['seeds']} | {_fmt(r['first update'])} | {_fmt(r['final'])} | "
            f"{_fmt(r['rise'])} {r['rise [CI at its level]']} | {r['seeds that rose']:.2f} | {r['p']:.2g} | "
            f"{r['p Holm']:.2g} | {r['verdict']} |"
        )
    m = int(table["family"].iloc[0]) if len(table) else 0
    lines += [
        "",
        f"Each planned contrast (final return; Holm over the {m} contrasts with at least {stats.MIN_SEEDS} seeds per "
        "side). *difference [CI at its level]*: the permutation test inverted at the level the verdict used (0.05 x p "
        "/ p Holm), so it excludes 0 exactly on better / worse rows; Hedges' g with its exact 95% interval "
        "(unadjusted); p with its Monte Carlo bounds where drawn; *detectable |g|*: what these seeds detect 80% of "
        "the time at Holm's first level (0.05 over the contrasts). Verdicts: better / worse, "
        f"{stats.BORDERLINE} (the Monte Carlo bounds of p Holm "
        f"straddle {stats.ALPHA}), {stats.EQUIVALENT} (TOST inside +-{stats.EQUIVALENCE_G} pooled standard deviations "
        f"after Holm), {stats.NOT_SIGNIFICANT}.",
        "",
        "| task | arm | against | seeds | mean | against mean | difference [CI at its level] | Hedges' g [95% CI] "
        "| p | p Holm | detectable abs g | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        verdict = f"**{r['verdict']}**" if r["verdict"] in ("better", "worse") else r["verdict"]
        detect = _fmt(r["detectable g"], 2) if math.isfinite(r["detectable g"]) else "none"
        lines.append(
            f"| {r['task']} | {r['label']} | {r['against']} | {r['seeds']} | {_fmt(r['mean'])} | "
            f"{_fmt(r['against mean'])} | {_fmt(r['diff'], 2)} [{r['diff low']:.3g}, {r['diff high']:.3g}] | "
            f"{r['g']:.2f} [{r['g low']:.2f}, {r['g high']:.2f}] | {_p(r, 'p_value', 'p low', 'p high')} | "
            f"{_p(r, 'holm p', 'holm low', 'holm high')} | {detect} | {verdict} |"
        )
    if frame is not None:
        lines += ["", _nonfinite(frame)]
    return "\n".join(lines) + "\n"


def replication_table(first: pd.DataFrame, again: pd.DataFrame) -> pd.DataFrame:
    """Cell by cell (task, arm, against): the verdict on the first seeds and on the second, the sign of g on each,
    and whether the verdict replicated (:func:`sandbox.stats.replication`: "yes" the same word, better / worse /
    equivalent; "no" a claim the second seeds do not support; "contradicted" the opposite; "no claim" nothing to
    replicate)."""
    keys = ["task", "label", "against"]
    both = first[keys + ["g", "verdict"]].merge(again[keys + ["g", "verdict"]], on=keys, suffixes=(" first", " again"))
    both["same sign"] = np.sign(both["g first"]) == np.sign(both["g again"])
    both["replicated"] = [stats.replication(a, b) for a, b in zip(both["verdict first"], both["verdict again"])]
    return both


def replication_markdown(table: pd.DataFrame, seeds: Sequence[int], again: Sequence[int], time_line: str = "") -> str:
    """The replication section of report.md; ``time_line``: what the second seeds took (:func:`_time_line`)."""
    counts = table["replicated"].value_counts()
    claims = int(len(table) - counts.get("no claim", 0))
    lines = [
        "## Replication on a second set of seeds",
        "",
        f"The same groups on seeds {again[0]}-{again[-1]} (the first set: {seeds[0]}-{seeds[-1]}), decided with their "
        "own Holm over the same contrasts. A verdict *replicated* when the second seeds give the same word (better, "
        "worse or equivalent: the same sign and significance); *no*: a claim the second seeds do not support; "
        "*contradicted*: the opposite word; *no claim*: the first seeds claimed nothing (not significant, borderline). "
        f"Of {claims} claims, {counts.get('yes', 0)} replicated, {counts.get('no', 0)} did not, "
        f"{counts.get('contradicted', 0)} were contradicted." + (f" {time_line}" if time_line else ""),
        "",
        "| task | arm | against | g first | verdict first | g again | verdict again | same sign | replicated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['task']} | {r['label']} | {r['against']} | {r['g first']:.2f} | {r['verdict first']} | "
            f"{r['g again']:.2f} | {r['verdict again']} | {'yes' if r['same sign'] else 'no'} | {r['replicated']} |"
        )
    return "\n".join(lines) + "\n"


def _time_line(out: Path) -> str:
    """The report's sentence "Time: N minutes in all (...)": the parts of ``out/timings.json`` that ran or copied
    runs, each with its date, runs, tasks, workers and machine, and its ``note`` if it has one (how a time the study
    could not record was read afterwards); a study resumed or run task by task is timed in parts."""
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else []
    spent = [t for t in timings if t["runs"] > 0 or t.get("copied")]
    times = "; ".join(f"{t['date']}: {t['runs']} runs of {', '.join(t['tasks'])} in {t['minutes']:.1f} min with "
                      f"{t['workers']} worker{'s' * (t['workers'] != 1)} on {t['machine']}"
                      + (f", and {t['copied']} runs of the same configs copied from {_relative(t['from'], out)}, "
                         "where they had finished" if t.get("copied") else "")
                      + (f" ({t['note']})" if t.get("note") else "") for t in spent)  # fmt: skip
    return f"Time: {sum(t['minutes'] for t in spent):.1f} minutes in all ({times or 'no runs were needed'})."


def _relative(source: str, out: Path) -> str:
    """``source`` as seen from the study's folder ``out`` (``../breadth``), which stays true when both studies are
    copied side by side (docs/studies/), where an absolute path names only the machine they ran on."""
    try:
        return os.path.relpath(source, out)
    except ValueError:  # another drive (Windows)
        return str(source)


def _record_time(out: Path, tasks: list[str], runs: int, seconds: float, workers: int, machine: str, copied: int = 0,
                 source: str | Path | None = None) -> list[dict]:  # fmt: skip
    """Add this invocation's time to ``out/timings.json`` (a study resumed or run task by task is timed in parts) and
    return every part; ``copied`` runs were copied from ``source`` (:func:`sweep.adopt`), not trained."""
    path = out / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else []
    when, where = time.strftime("%Y-%m-%d %H:%M"), machine or "this machine"
    copies = {"copied": copied, "from": str(source)} if copied else {}
    timings.append({"date": when, "tasks": tasks, "runs": runs, "minutes": round(seconds / 60, 1),
                    "workers": workers, "machine": where, **copies})  # fmt: skip
    path.write_text(json.dumps(timings, indent=1))
    return timings


def _run(out: Path, kind: str, chosen: dict, seeds: tuple[int, ...], scale: float, workers: int, quiet: bool,
         machine: str, where: Backend | None = None, reuse: str | Path | None = None) -> float:  # fmt: skip
    """Write the sweeps of ``chosen`` tasks into ``out`` and run them (resumable), here or on a Ray cluster
    (``where``: :mod:`sandbox.analysis.cluster`; the runs come back to this machine); returns the seconds. ``reuse``:
    a folder whose finished runs of the same configs are copied in instead of trained (:func:`sweep.adopt`)."""
    from .sweep import adopt, expand, load_spec, run_sweeps

    groups = (lambda task: arms()) if kind == "breadth" else mechanisms
    t0 = time.perf_counter()
    items = sweeps(out, chosen, groups, seeds, scale)
    copied = 0
    if reuse is not None:
        copied = adopt([r for spec, d in items for r in expand(*load_spec(spec), d)], reuse)
        if not quiet:
            print(f"{copied} runs copied from {reuse} (the same configs, finished there)", flush=True)
    where = where or Backend()
    counts = run_sweeps([(str(s), str(d)) for s, d in items], workers, where.backend, where.address, quiet,
                        population=len(seeds), token_file=where.ray_token_file)  # fmt: skip
    seconds = time.perf_counter() - t0
    if "cluster" in counts:  # the whole cluster trained: its CPUs are the workers
        c = counts["cluster"]
        workers, machine = c["cpus"], f"a Ray cluster of {c['nodes']} nodes (driver: {machine or 'this machine'})"
    _record_time(out, list(chosen), counts.get("ran", 0), seconds, workers, machine, copied, reuse)
    frame = finals(out)
    frame.to_csv(out / "finals.csv", index=False)
    return seconds


def write_report(out: str | Path, kind: str = "breadth", seed: int = 0) -> dict:
    """The study's report from ``out/finals.csv`` alone (no run needed, so a committed study can be re-read with new
    statistics or another resampling ``seed``): ``comparisons.csv``, ``report.md`` (the plan, the tasks, the learned
    check, the contrasts, the non-finite runs, the replication when ``out/replication/finals.csv`` exists) and the
    forest plot ``forest.png``. Returns the tables."""
    out = Path(out)
    frame = pd.read_csv(out / "finals.csv")
    meta = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    known = {**TASKS, **{n: task_of(n, steps) for n, steps in meta.get("custom", {}).items()}}
    learn, table = learned(frame), comparisons(frame, kind, seed)
    table.to_csv(out / "comparisons.csv", index=False)
    what = "Breadth study" if kind == "breadth" else "Mechanism arms"
    seeds = int(frame["seed"].nunique())
    fast = meta.get("fast", False)
    header = (
        f"# {what}: planned contrasts\n\n{len(frame)} runs, {seeds} seeds per group "
        f"({'FAST mode: a twentieth of each budget, numbers meaningless' if fast else 'full budgets'}). "
        f"{_time_line(out)}" + (f" Resampling seed {seed} (the default is 0)." if seed else "")
    )
    tasks = [t for t in known if t in set(frame["task"])]
    if (out / "plan.md").exists():
        plan_text = (out / "plan.md").read_text()
    else:  # a study run before plans were written: the plan as the code states it now, said so
        plan_text = plan(kind, study_tasks(list(known)), seeds).replace(
            "written before the runs", "as the code defines it now (this study ran before its plan was written)"
        )
    not_run = missing(frame, kind)
    text = markdown(learn, table, {n: known[n] for n in tasks}, header, frame) + "\n" + plan_text
    if not_run:
        text += f"\nPlanned but not run (their arms are not in finals.csv): {'; '.join(not_run)}.\n"
    result = {"learned": learn, "comparisons": table, "replication": None}
    again_path = out / "replication" / "finals.csv"
    if again_path.exists():
        again_frame = pd.read_csv(again_path)
        again = comparisons(again_frame, kind, seed)
        rep = replication_table(table, again)
        rep.to_csv(out / "replication.csv", index=False)
        text += "\n" + replication_markdown(rep, sorted(frame["seed"].unique()), sorted(again_frame["seed"].unique()),
                                           _time_line(out / "replication"))  # fmt: skip
        result["replication"] = rep
    (out / "report.md").write_text(text)
    if len(table):
        fig = forest(table, f"{what}: planned contrasts, {seeds} seeds per group")
        fig.savefig(out / "forest.png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
    return result


def run_study(
    out: str | Path,
    kind: str = "breadth",
    workers: int = 2,
    seeds: tuple[int, ...] | None = None,
    tasks: tuple[str, ...] | None = None,
    fast: bool = False,
    quiet: bool = False,
    machine: str = "",
    replicate: bool = False,
    where: Backend | None = None,
    max_steps: int | None = None,
    reuse: str | Path | None = None,
) -> dict:
    """Run the breadth study (``kind="breadth"``) or the mechanism arms (``"mechanisms"``) into ``out``: first its
    plan (``plan.md``: the planned contrasts, before any run), then its sweeps (resumable: finished runs are kept, so
    an interrupted study goes on where it stopped), then ``finals.csv`` and :func:`write_report`. ``seeds``: None, the
    study's :func:`seeds_per_group` (0, 1, ...). ``tasks``: a subset of the study's tasks (None: all of them), or
    tasks of your own (:func:`task_of`: any Gymnasium id, ``max_steps`` steps each); the report covers every task
    whose runs are in ``out``. ``replicate``: also the same groups on a second, disjoint
    set of seeds (:func:`replication_seeds`) in ``out/replication``, and the replication table. ``fast``: the first
    two seeds (and two more for the replication) and a twentieth of each budget, for checking the plumbing (its
    numbers mean nothing). ``where``: local processes (default), or Ray, on a cluster too
    (:mod:`sandbox.analysis.cluster`: the runs come back to this machine). ``reuse``: another study's folder, whose
    finished runs of the same configs are copied in instead of trained (:func:`sandbox.analysis.sweep.adopt`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = {n: task_of(n, max_steps) for n in (tasks or TASKS)}
    planned = study_tasks(list(chosen))
    seeds = tuple(range(seeds_per_group(kind, planned))) if seeds is None else tuple(seeds)  # powered for the study
    seeds, scale = (tuple(seeds[:2]), 0.05) if fast else (seeds, 1.0)
    again = replication_seeds(seeds) if replicate else ()
    before = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    custom = {**before.get("custom", {}), **{n: t.total_steps for n, t in chosen.items() if n not in TASKS}}
    (out / "study.json").write_text(json.dumps({"kind": kind, "seeds": list(seeds), "replication": list(again),
                                                "fast": fast, "custom": custom}, indent=1))  # fmt: skip
    if not (out / "plan.md").exists():  # written once, before the first run, for the whole study (not --tasks)
        (out / "plan.md").write_text(plan(kind, planned, len(seeds), again))
    seconds = _run(out, kind, chosen, seeds, scale, workers, quiet, machine, where, reuse)
    if replicate:
        (out / "replication").mkdir(exist_ok=True)
        seconds += _run(out / "replication", kind, chosen, again, scale, workers, quiet, machine, where,
                        Path(reuse) / "replication" if reuse is not None else None)  # fmt: skip
    result = write_report(out, kind)
    runs = len(pd.read_csv(out / "finals.csv")) + (
        len(pd.read_csv(out / "replication" / "finals.csv")) if replicate else 0
    )
    return {"runs": runs, "seconds": seconds, "out": str(out), **result}
