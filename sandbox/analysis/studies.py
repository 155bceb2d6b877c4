"""Two studies behind the README's measured results (``sandbox bench grpo-lambda``, ``sandbox bench flatness``), which
lesson 07 runs smaller: GRPO-lambda's length penalty and switch on the language tasks, and Feng & Tu's
variance-flatness relation with each dropout mode. Each study is: configs, ``sandbox.train_many``, one tidy frame,
a summary table with seeds and 95% t intervals, and a figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..algos.flatness import loglog_slope
from ..config import Config, preset
from ..plots import MODE_COLORS, OTHER_COLORS, mode_color, use_style
from ..stats import comparison_table, mean_with_interval, t_band
from .sweep import train_many

# --- GRPO-lambda -----------------------------------------------------------------------------------------------------

TASKS: dict[str, dict] = {
    "reverse": dict(env="lang:reverse", sparse=True),
    "sort": dict(env="lang:sort", sparse=True),
    "add": dict(env="lang:add"),
}
"""The language tasks whose reward is a 0/1 correctness (exact match)."""

KIMI = dict(length_penalty=2.5, length_penalty_form="kimi")
ARMS: dict[str, dict] = {
    "0/1 reward": {},
    "length penalty, efficiency form": dict(length_penalty=0.6),
    "length penalty, Kimi form": KIMI,
    "GRPO-lambda top 0.2, Kimi form": {**KIMI, "grpo_lambda": 0.2},
    "GRPO-lambda ratio >= 0.5, Kimi form": {**KIMI, "grpo_lambda": 0.5, "grpo_lambda_rule": "threshold"},
}
"""The arms: the plain reward; the length penalty in every group, in the paper's (efficiency) form and in Kimi 1.5's
with alpha = 2.5 (a short wrong answer outscores a long right one); GRPO-lambda's switch with the paper's top-0.2
rule and with a threshold on the correctness ratio."""

ARM_STYLES: dict[str, tuple[str, str]] = {
    "0/1 reward": (MODE_COLORS["off"], "-"),
    "length penalty, efficiency form": (OTHER_COLORS[1], "--"),
    "length penalty, Kimi form": (OTHER_COLORS[2], "-"),
    "GRPO-lambda top 0.2, Kimi form": (OTHER_COLORS[0], ":"),
    "GRPO-lambda ratio >= 0.5, Kimi form": (OTHER_COLORS[4], "-"),
}
"""Colour and line style of each arm: arms that draw the same curve (the first, second and fourth on reverse and
sort) stay visible on top of each other."""


def grpo_lambda_config(task: str, arm: str, mode: str = "off", seed: int = 0, total_steps: int = 40_000, **kw):
    """GRPO from the task's pretrained reference, the sandbox's defaults (16 prompts x 8 completions, beta 0),
    ``total_steps`` sampled tokens, dropout p = 0.1 in ``mode``."""
    fields = dict(algo="grpo", total_steps=total_steps, dropout=0.1, dropout_mode=mode, seed=seed, quiet=True)
    return Config(**{**fields, **TASKS[task], **ARMS[arm], **kw})


def grpo_lambda_runs(
    tasks=tuple(TASKS), arms=tuple(ARMS), modes=("off",), seeds=range(10), workers: int | None = None, **kw
) -> pd.DataFrame:
    """Every (task, arm, mode, seed), trained with :func:`sandbox.train_many`: one row per update of every run, with
    ``tokens`` (sampled so far), ``accuracy`` (the batch's ``correct_ratio``), ``length`` (``completion_len``, tokens
    with ``<eos>``) and ``penalised`` (``length_penalty_frac``)."""
    keys = [(t, a, m, s) for t in tasks for a in arms for m in modes for s in seeds]
    results = train_many([grpo_lambda_config(*k, **kw) for k in keys], workers)
    frames = []
    for (task, arm, mode, seed), r in zip(keys, results):
        m = r.metrics
        frames.append(
            pd.DataFrame(
                {
                    "task": task,
                    "arm": arm,
                    "mode": mode,
                    "seed": seed,
                    "update": m["update"].astype(int),
                    "tokens": m["env_steps"].astype(int),
                    "accuracy": m["correct_ratio"],
                    "length": m["completion_len"],
                    "penalised": m["length_penalty_frac"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def final_scores(curves: pd.DataFrame, last: int = 5) -> pd.DataFrame:
    """One row per run: the mean ``accuracy`` and ``length`` over its last ``last`` updates, the accuracy of its first
    update (the pretrained reference's, sampled), the mean ``penalised`` fraction, and ``collapsed``: the final
    accuracy fell below half the first update's."""

    def one(run: pd.DataFrame) -> pd.Series:
        tail = run.tail(last)
        start = float(run["accuracy"].iloc[0])
        final = float(tail["accuracy"].mean())
        return pd.Series(
            {
                "start": start,
                "accuracy": final,
                "length": float(tail["length"].mean()),
                "penalised": float(run["penalised"].mean()),
                "collapsed": final < 0.5 * start,
            }
        )

    return curves.groupby(["task", "arm", "mode", "seed"], sort=False).apply(one, include_groups=False).reset_index()


def grpo_lambda_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Per task, mode and arm: final accuracy and length (mean [95% t interval] over seeds), collapsed runs, the mean
    fraction of groups on the length-penalised reward."""
    rows = []
    for (task, mode, arm), g in finals.groupby(["task", "mode", "arm"], sort=False):
        rows.append(
            {
                "task": task,
                "mode": mode,
                "arm": arm,
                "seeds": len(g),
                "final accuracy": mean_with_interval(g["accuracy"]),
                "final length": mean_with_interval(g["length"], 2),
                "collapsed": f"{int(g['collapsed'].sum())}/{len(g)}",
                "groups penalised": round(float(g["penalised"].mean()), 3),
            }
        )
    return pd.DataFrame(rows).set_index(["task", "mode", "arm"])


def grpo_lambda_tests(finals: pd.DataFrame, baseline: str = "0/1 reward") -> pd.DataFrame:
    """Each arm's final accuracy against the baseline arm's, per task and mode (:func:`sandbox.stats.comparison_table`,
    Holm's correction over every comparison of one task and mode)."""
    tables = []
    for (task, mode), g in finals.groupby(["task", "mode"], sort=False):
        scores = {arm: list(a["accuracy"]) for arm, a in g.groupby("arm", sort=False)}
        t = comparison_table({"final accuracy": scores}, baseline, quality=["final accuracy"]).reset_index()
        tables.append(t.drop(columns="metric").assign(task=task, mode=mode))
    return pd.concat(tables).set_index(["task", "mode", "arm"])


def _on_grid(run: pd.DataFrame, grid: np.ndarray, column: str) -> np.ndarray:
    return np.interp(grid, run["tokens"].to_numpy(), run[column].to_numpy())


def plot_grpo_lambda(curves: pd.DataFrame, colour_by: str = "arm", points: int = 60):
    """Accuracy (top row) and completion length (bottom row) against sampled tokens, one column per task (one per
    arm when colouring by mode): the mean over seeds (each run interpolated onto a common token grid) with its 95% t
    band. ``colour_by``: ``arm`` (one line per arm) or ``mode`` (the dropout modes' colours)."""
    import matplotlib.pyplot as plt

    use_style()
    panels = list(dict.fromkeys(curves["task" if colour_by == "arm" else "arm"]))
    lines = list(dict.fromkeys(curves[colour_by]))
    styles = {k: (mode_color(k), "-") if colour_by == "mode" else ARM_STYLES.get(k, (OTHER_COLORS[i % 7], "-"))
              for i, k in enumerate(lines)}  # fmt: skip
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels) + 0.5, 5.4), sharex=True, squeeze=False)
    for j, panel in enumerate(panels):
        sub = curves[curves["task" if colour_by == "arm" else "arm"] == panel]
        grid = np.linspace(sub["tokens"].min(), sub["tokens"].max(), points)
        for line in lines:
            runs = [r for _, r in sub[sub[colour_by] == line].groupby(["task", "arm", "mode", "seed"])]
            if not runs:
                continue
            for i, column in enumerate(("accuracy", "length")):
                y = np.stack([_on_grid(r, grid, column) for r in runs])
                mean, low, high = t_band(y)
                ax, (colour, dash) = axes[i, j], styles[line]
                lw = 2.2 if dash == "-" else 1.8
                ax.plot(grid / 1000, mean, color=colour, ls=dash, lw=lw, label=f"{line} ({len(y)} seeds)")
                ax.fill_between(grid / 1000, low, high, color=colour, alpha=0.15, lw=0)
        axes[0, j].set_title(panel if colour_by == "arm" else panel.replace(", ", ",\n"))
        axes[1, j].set_xlabel("sampled tokens (thousands)")
    for i, label in enumerate(("accuracy (fraction correct)", "completion length (tokens)")):
        axes[i, 0].set_ylabel(label)
        for ax in axes[i]:
            ax.set_ylim(-0.03 if i == 0 else 0, 1.03 if i == 0 else 7.5)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(lines), max(1, len(panels) - 1)))
    return fig


# --- the variance-flatness relation --------------------------------------------------------------------------------


def flatness_config(env: str, mode: str, seed: int = 0, **kw) -> Config:
    """CartPole: PPO, preset cartpole, 50k steps, dropout p = 0.1 in the policy, measured every 25 updates over a
    window of 20. A language task: GRPO from the pretrained reference, 40k tokens, every 10 updates over 20."""
    diag = dict(flatness_window=20, flatness_directions=8, quiet=True, seed=seed, dropout=0.1, dropout_mode=mode)
    if env == "CartPole-v1":
        return preset("cartpole", **{"total_steps": 50_000, "flatness_every": 25, **diag, **kw})
    return Config(**{"algo": "grpo", "env": env, "total_steps": 40_000, "flatness_every": 10, **diag, **kw})


def flatness_runs(
    envs=("CartPole-v1", "lang:reverse"),
    modes=("off", "rollout-eval", "naive", "consistent"),
    seeds=range(10),
    workers: int | None = None,
    **kw,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (env, mode, seed) with the diagnostic on. Returns ``(directions, measurements)``: one row per measured
    direction (``flatness.csv``'s columns), and one per measurement with its ``flat_slope``, ``curv_slope`` and the
    run's return (reward) at that update."""
    keys = [(e, m, s) for e in envs for m in modes for s in seeds]
    results = train_many([flatness_config(*k, **kw) for k in keys], workers)
    return flatness_frames(dict(zip(keys, results)))


def flatness_frames(results: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``{(env, mode, seed): RunResult}`` of runs with ``--flatness-every`` -> ``(directions, measurements)``, the
    frames of :func:`flatness_runs`."""
    directions, measurements = [], []
    for (env, mode, seed), r in results.items():
        tag = {"env": env, "mode": mode, "seed": seed}
        directions.append(r.flatness.assign(**tag))
        m = r.metrics.dropna(subset=["flat_slope"])
        measurements.append(m[["update", "ep_return_mean", "flat_slope", "curv_slope"]].assign(**tag))
    return pd.concat(directions, ignore_index=True), pd.concat(measurements, ignore_index=True)


def flatness_tests(measurements: pd.DataFrame, baseline: str = "off") -> pd.DataFrame:
    """Each mode's slope of log variance on log flatness (each seed's mean over its measurements) against dropout off,
    per env (:func:`sandbox.stats.comparison_table`, Holm over the modes of one env)."""
    tables = []
    for env, g in measurements.groupby("env", sort=False):
        per_seed = g.groupby(["mode", "seed"], sort=False)["flat_slope"].mean().reset_index()
        scores = {mode: list(x["flat_slope"]) for mode, x in per_seed.groupby("mode", sort=False)}
        t = comparison_table({"slope: variance vs flatness": scores}, baseline).reset_index()
        tables.append(t.drop(columns="metric").rename(columns={"arm": "mode"}).assign(env=env))
    return pd.concat(tables).set_index(["env", "mode"])


def _interval(x, digits: int) -> str:
    """:func:`sandbox.stats.mean_with_interval`, or "n/a" when no value is finite (no positive curvature, say)."""
    return mean_with_interval(x, digits) if np.isfinite(np.asarray(x, dtype=float)).any() else "n/a"


def flatness_table(directions: pd.DataFrame, measurements: pd.DataFrame) -> pd.DataFrame:
    """Per env and mode: the slope of log variance on log flatness (and on log curvature), each seed's mean over its
    measurements, then the mean over seeds with its 95% t interval; the same slope without direction 1 (the
    trajectory's largest, often the drift of learning itself, along which the loss is lopsided); the pooled fit of
    every direction of every measurement with its interval (points are not independent: a guide, not a test); and
    how many directions were censored or had negative curvature."""
    rows = []
    for (env, mode), g in measurements.groupby(["env", "mode"], sort=False):
        d = directions[(directions["env"] == env) & (directions["mode"] == mode)]
        ok = ~d["censored"].astype(bool)
        pooled = loglog_slope(d.loc[ok, "flatness"], d.loc[ok, "variance"])
        per_seed = g.groupby("seed")[["flat_slope", "curv_slope"]].mean()
        rest = d[ok & (d["direction"] > 1)].groupby(["seed", "update"])  # without direction 1, the drift
        slopes = {key: loglog_slope(x["flatness"], x["variance"])[0] for key, x in rest}  # {(seed, update): slope}
        without_first = pd.Series(list(slopes.values()), index=[seed for seed, _ in slopes], dtype=float)
        rows.append(
            {
                "env": env,
                "mode": mode,
                "seeds": len(per_seed),
                "measurements": len(g),
                "slope: variance vs flatness": _interval(per_seed["flat_slope"], 2),
                "without direction 1": _interval(without_first.groupby(level=0).mean(), 2),
                "pooled slope": f"{pooled[0]:.2f} [{pooled[1]:.2f}, {pooled[2]:.2f}]",
                "slope: variance vs curvature": _interval(per_seed["curv_slope"], 2),
                "censored": f"{int((~ok).sum())}/{len(d)}",
                "curvature < 0": f"{int((d['curvature'] < 0).sum())}/{len(d)}",
            }
        )
    return pd.DataFrame(rows).set_index(["env", "mode"])


def plot_flatness(directions: pd.DataFrame):
    """Variance against flatness, log-log, one panel per env and mode (rows: envs): every uncensored direction of
    every measurement and seed, coloured by its rank (direction 1 = the largest variance), with the pooled fit
    (:func:`sandbox.algos.flatness.loglog_slope`'s points: a width of 0, measured when the held batch's advantages are
    all 0, has no logarithm and is left out of both)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    use_style()
    envs, modes = list(dict.fromkeys(directions["env"])), list(dict.fromkeys(directions["mode"]))
    fig, axes = plt.subplots(len(envs), len(modes), figsize=(2.9 * len(modes) + 0.6, 2.7 * len(envs) + 0.4),
                             squeeze=False, sharey="row", sharex="row")  # fmt: skip
    for i, env in enumerate(envs):
        for j, mode in enumerate(modes):
            ax = axes[i, j]
            d = directions[
                (directions["env"] == env) & (directions["mode"] == mode) & ~directions["censored"].astype(bool)
            ]
            d = d[(d["flatness"] > 0) & (d["variance"] > 0)]
            points = ax.scatter(d["flatness"], d["variance"], c=d["direction"], cmap="viridis", s=7, alpha=0.6)
            slope, low, high = loglog_slope(d["flatness"], d["variance"])
            if np.isfinite(slope):
                x = np.geomspace(d["flatness"].min(), d["flatness"].max(), 20)
                fit = np.polyfit(np.log(d["flatness"]), np.log(d["variance"]), 1)
                ax.plot(x, np.exp(np.polyval(fit, np.log(x))), color=mode_color(mode), lw=2)
            ax.set(xscale="log", yscale="log", title=f"{env}, {mode}\npooled slope {slope:.2f} [{low:.2f}, {high:.2f}]")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.title.set_color(mode_color(mode))
            if i == len(envs) - 1:
                ax.set_xlabel("flatness F (width)")
        axes[i, 0].set_ylabel("variance of the weights")
    fig.colorbar(points, ax=axes, label="direction (1 = largest variance)", shrink=0.6)
    return fig
