"""The report's figures: learning curves, performance profiles, the final score and first_ratio_dev against
dropout p, the surrogate variance over training, and reward against KL for the language tasks (the layout is
:mod:`sandbox.analysis.report.panels`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ... import stats
from ...plots import mode_color, use_style
from .panels import (
    MARKERS,
    _curves,
    _facets,
    _layout,
    _legend,
    _lines,
    _place_legend,
    _sort_value,
    _style,
    _Task,
    _tasks,
)
from .runs import Group, describe_fixed


def _curve_figure(plt, tasks, bases, column: str, title: str, ylabel: str, log_if_wide=False):
    """Learning-curve-like figures: per task, one panel per value of p, every group's mean over seeds with the 95% t
    interval of the mean (:func:`sandbox.stats.t_band`); a group of fewer than 3 seeds shows its seeds instead (the
    t interval of 2 values is 12.7 standard errors wide). ``log_if_wide``: log scale when the task's values span more
    than 30x (variances; returns stay linear)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter, ScalarFormatter

    panels = [_facets(t, bases) for t in tasks]
    fig, layout = _layout(plt, [len(p) for p in panels], title)
    for task, facets, (axes, legend_ax) in zip(tasks, panels, layout):
        seen: list[float] = []
        few = banded = False
        for ax, (suffix, members) in zip(axes, facets):
            for g in members:
                c = _curves(g, column)
                if c is None:
                    continue
                x, y = c
                mid, low, high = stats.t_band(y)
                st = _style(task, g)
                ax.plot(x, mid, color=st["color"], ls=st["ls"], lw=1.5)
                if len(y) >= 3:
                    banded = True
                    ax.fill_between(x, low, high, color=st["color"], alpha=0.12, lw=0)
                else:
                    few = True
                    for run in y:
                        ax.plot(x, run, color=st["color"], ls=st["ls"], lw=0.6, alpha=0.45)
                seen += [float(np.nanmin(y)), float(np.nanmax(y))]
            ax.set_title(", ".join(s for s in (task.name, suffix) if s), fontsize=9.5)
            ax.set_xlabel("tokens sampled" if task.is_lang else "env steps", fontsize=9)
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes[0].set_ylabel(ylabel.format(score="reward (batch mean)" if task.is_lang else "return (20-episode mean)"))
        if log_if_wide and seen and min(seen) > 0 and max(seen) > 30 * min(seen):
            axes[0].set_yscale("log")
            axes[0].yaxis.set_major_formatter(ScalarFormatter())
        elif seen:  # the runs' range: a band wider than the runs themselves leaves the panel
            lo, hi = min(seen), max(seen)
            pad = 0.05 * (hi - lo or abs(hi) or 1.0)
            axes[0].set_ylim(lo - pad, hi + pad)
        extra = [Patch(color="#999999", alpha=0.3, label="95% t interval\nof the mean")] if banded else []
        if few:
            extra.append(Line2D([], [], color="#999999", lw=0.6, label="one seed (groups\nof < 3 seeds)"))
        _legend(legend_ax, task, extra=extra)
    return fig


def _profile_figure(plt, tasks, bases, title: str):
    """Performance profiles: per task and p, the fraction of a group's runs whose final score is above each value."""
    panels = [_facets(t, bases) for t in tasks]
    fig, layout = _layout(plt, [len(p) for p in panels], title)
    for task, facets, (axes, legend_ax) in zip(tasks, panels, layout):
        every = np.concatenate([g.finals for g in task.groups])
        every = every[np.isfinite(every)]
        if not len(every):
            continue
        lo, hi = float(every.min()), float(every.max())
        pad = 0.05 * (hi - lo or abs(hi) or 1.0)
        taus = np.linspace(lo - pad, hi + pad, 400)
        for ax, (suffix, members) in zip(axes, facets):
            for g in members:
                st = _style(task, g)
                ax.plot(taus, stats.performance_profile(g.finals, taus), color=st["color"], ls=st["ls"], lw=1.6)
            ax.set_title(", ".join(s for s in (task.name, suffix) if s), fontsize=9.5)
            ax.set_xlabel(task.score_label(), fontsize=9)
        axes[0].set_ylim(-0.03, 1.03)
        axes[0].set_ylabel("fraction of runs above")
        _legend(legend_ax, task)
    return fig


def _by_x_figure(plt, tasks, title: str, value, center, ylabel):
    """Per task one panel: ``value(run)`` of every seed (dots) and ``center(group, values)`` = (mid, low, high)
    (marker and error bar), one line per (mode, style) against the x field (p); categories where nothing varies."""
    from matplotlib.lines import Line2D

    fig, layout = _layout(plt, [1] * len(tasks), title, height=2.9)
    rng = np.random.default_rng(0)
    for task, (axes, legend_ax) in zip(tasks, layout):
        ax = axes[0]
        lines = _lines(task)
        xs = sorted({task.x(g) for g in task.groups if task.x(g) is not None}, key=_sort_value)
        numeric = bool(xs)
        span = (max(xs) - min(xs)) if len(xs) > 1 else 1.0
        moving = [k for k, gs in lines.items() if not (numeric and all(task.x(g) is None for g in gs) and len(gs) == 1)]
        step = 0.045 * span if numeric else 0.0
        for k, gs in lines.items():
            st = _style(task, gs[0])
            vals = [np.array([value(r) for r in g.runs], dtype=float) for g in gs]
            mids = [center(g, v) for g, v in zip(gs, vals)]
            if k not in moving:  # a dropout-off group: its p is inert, so it is a level across the panel
                mid, low, high = mids[0]
                ax.axhline(mid, color=st["color"], ls=st["ls"], lw=1.3)
                if np.isfinite(low) and high > low:
                    ax.axhspan(low, high, color=st["color"], alpha=0.08, lw=0)
                continue
            i = moving.index(k)
            offset = (i - (len(moving) - 1) / 2) * step
            pos = [
                (task.x(g) if task.x(g) is not None else g.config.get(task.x_field)) + offset if numeric else i
                for g in gs
            ]
            for p, v in zip(pos, vals):
                jitter = rng.uniform(-0.25, 0.25, len(v)) * (step or 0.5)
                ax.scatter(p + jitter, v, s=14, color=st["color"], alpha=0.5, lw=0, zorder=3)
            mid = np.array([m[0] for m in mids])
            err = np.array([[m[0] - m[1], m[2] - m[0]] for m in mids]).T
            err = np.where(np.isfinite(err), err, 0.0)
            ax.errorbar(
                pos, mid, yerr=err, color=st["color"], ls=st["ls"], marker=st["marker"], ms=5, lw=1.4, capsize=2.5
            )
        if numeric:
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.set_xlim(min(xs) - 0.25 * span, max(xs) + 0.25 * span)
            ax.set_xlabel(task.x_label(), fontsize=9)
        else:
            labels = [" ".join([m, task.style_label(s)]).strip() for m, s in moving]
            long = max(map(len, labels)) > 12
            ax.set_xticks(
                range(len(moving)), labels, fontsize=8, rotation=20 if long else 0, ha="right" if long else "center"
            )
            ax.set_xlim(-0.6, len(moving) - 0.4)
        ax.set_title(task.name, fontsize=9.5)
        ax.set_ylabel(ylabel(task), fontsize=9)
        extra = [Line2D([], [], color="#666666", marker="o", ls="", ms=3.5, alpha=0.6, label="one seed")]
        _legend(legend_ax, task, marker=True, extra=extra)
    return fig


def _reward_kl_figure(plt, tasks, title: str):
    from matplotlib.lines import Line2D

    fig, layout = _layout(plt, [1] * len(tasks), title, height=2.9)
    for task, (axes, legend_ax) in zip(tasks, layout):
        ax = axes[0]
        kind = task.kind
        kinds = sorted(
            {kind(g) for g in task.groups if kind(g)}, key=lambda k: [_sort_value(json.loads(v)) for _, v in k]
        )
        for g in task.groups:
            marker = MARKERS[kinds.index(kind(g)) % len(MARKERS)] if kind(g) in kinds else "o"
            kl = [r.metrics["kl_ref"].iloc[-1] if len(r.metrics) else math.nan for r in g.runs]
            ax.scatter(kl, [r.final for r in g.runs], color=mode_color(g.mode), marker=marker, s=26, alpha=0.8)
        ax.set_title(task.name, fontsize=9.5)
        ax.set_xlabel("final KL to the reference (nats per completion)", fontsize=9)
        ax.set_ylabel(task.score_label(), fontsize=9)
        handles = [
            Line2D([], [], color=mode_color(m), marker="o", ls="", label=m)
            for m in dict.fromkeys(g.mode for g in task.groups)
        ]
        if len(kinds) > 1:
            handles += [
                Line2D([], [], color="#666666", marker=MARKERS[i % len(MARKERS)], ls="", label=task.style_label(k))
                for i, k in enumerate(kinds)
            ]
        _place_legend(legend_ax, handles, task.name)
    return fig


FIGURES = (
    "learning_curves",
    "performance_profile",
    "final_per_seed",
    "first_ratio_dev",
    "surrogate_variance",
    "reward_kl",
)
"""The report's figures by name (``reward_kl`` only for language tasks), each drawn by :func:`figure` too."""


def _catalogue(plt, groups: list[Group], bases: dict) -> list[tuple[str, str, object]]:
    """``(name, caption, draw)`` of each of the report's figures for ``groups``; ``draw()`` returns the figure."""
    tasks = _tasks(groups)
    lang = [t for t in tasks if t.is_lang]
    intervals = {g.label: _iqm_interval(g) for g in groups}
    score = "{score}"
    fixed = describe_fixed(groups, limit=120)  # what the legends' labels leave unsaid, under every title

    def titled(title: str) -> str:
        return f"{title}\n{fixed}" if fixed else title

    figures = [
        (
            "learning_curves",
            "Learning curves: mean over seeds with the 95% t interval of the mean; one row of panels per task, one "
            "panel per dropout p (or other varying setting), dropout off in every panel it is the baseline of.",
            lambda: _curve_figure(plt, tasks, bases, "ep_return_mean", titled("Learning curves"), score),
        ),
        (
            "performance_profile",
            "Performance profiles: the fraction of a group's runs whose final score is above each value (further "
            "right and higher is better; the whole distribution of the seeds, not one number).",
            lambda: _profile_figure(
                plt, tasks, bases, titled("Performance profiles: fraction of runs above each score")
            ),
        ),
        (
            "final_per_seed",
            "Final score against dropout p: every seed (dots) and each group's IQM with its 95% Tukey-McLaughlin "
            "interval; dropout off, whose p is inert, as a level with its interval.",
            lambda: _by_x_figure(
                plt,
                tasks,
                titled("Final score: every seed, and the IQM with its 95% interval"),
                value=lambda r: r.final,
                center=lambda g, v: intervals[g.label],
                ylabel=_Task.score_label,
            ),
        ),
        (
            "first_ratio_dev",
            "first_ratio_dev against dropout p: the ratio's deviation from 1 before any gradient step (mean |r - 1| "
            "over the first minibatch of each update), every seed (dots) and the mean over seeds (line).",
            lambda: _by_x_figure(
                plt,
                tasks,
                titled("The ratio's noise before any update: first_ratio_dev"),
                value=lambda r: float(r.metrics["first_ratio_dev"].mean()),
                center=lambda g, v: (float(np.nanmean(v)), math.nan, math.nan),
                ylabel=lambda t: "mean |r - 1| before any step",
            ),
        ),
        (
            "surrogate_variance",
            "Surrogate variance Var(r A) over training: mean over seeds with the 95% t interval of the mean.",
            lambda: _curve_figure(
                plt, tasks, bases, "surrogate_var", titled("Surrogate variance over training"), "Var(r A)", True
            ),
        ),
    ]
    if lang:
        figures.append(
            (
                "reward_kl",
                "Reward against KL to the reference at the end of training, seed by seed (language tasks).",
                lambda: _reward_kl_figure(plt, lang, titled("Reward against KL to the reference, seed by seed")),
            )
        )
    return figures


def _iqm_interval(g: Group) -> tuple[float, float, float]:
    """The group's IQM and its 95% Tukey-McLaughlin interval over its finite finals (the report's numbers)."""
    ok = g.finals[np.isfinite(g.finals)]
    low, high, _ = stats.iqm_interval(ok)
    return (float(stats.iqm(ok)) if len(ok) else math.nan), low, high


def _pyplot(headless: bool):
    import matplotlib

    if headless and "inline" not in matplotlib.get_backend():  # a notebook keeps its inline plots
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figures(groups: list[Group], bases: dict, out: Path) -> list[tuple[str, str]]:
    """Draw the report's figures into ``out`` as PNG files; returns (file name, caption) pairs."""
    import matplotlib

    plt = _pyplot(headless=True)
    drawn = []
    with matplotlib.rc_context():
        use_style()
        for name, caption, draw in _catalogue(plt, groups, bases):
            fig = draw()
            fig.savefig(out / f"{name}.png")
            plt.close(fig)  # each figure closed: a notebook's inline backend does not show it twice
            drawn.append((f"{name}.png", caption))
    return drawn


def figure(frame: pd.DataFrame, name: str = "learning_curves", baseline: str = "dropout_mode=off"):
    """One of the report's figures (:data:`FIGURES`) drawn from a frame of :func:`sandbox.load` (one row per run, or
    per update with ``metrics=True``), or any part of one: ``figure(runs[runs.dropout_mode != "rollout-eval"])``.
    The runs it names are read again and grouped as the report groups them (labels by what varies among them), each
    compared with its ``baseline`` group. Returns the matplotlib figure (shown inline in a notebook)."""
    import matplotlib

    from ...config import ConfigError
    from .runs import group_runs, runs_of
    from .tables import baselines, check_baseline

    if name not in FIGURES:
        raise ConfigError("figure", f"unknown figure {name!r}; one of: {', '.join(FIGURES)}")
    groups = group_runs(runs_of(frame))
    if not groups:
        raise ConfigError("figure", "the frame holds no run")
    check_baseline(groups, baseline)
    plt = _pyplot(headless=False)
    with matplotlib.rc_context():
        use_style()
        drawers = {n: draw for n, _, draw in _catalogue(plt, groups, baselines(groups, baseline))}
        if name not in drawers:
            raise ConfigError("figure", f"{name} is for language tasks; these runs have none")
        return drawers[name]()
