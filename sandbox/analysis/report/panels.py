"""How the figures lay out a sweep: one :class:`_Task` per algorithm and environment (one row of panels, shared
axes), the x field (dropout p where it varies), the line styles and markers of the other varying settings, the
panels of the curve figures, and the grid, legends and styles every figure shares."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from ...dropout_modes import dropout_is_off
from ...plots import MODE_COLORS, mode_color
from .runs import INERT_WHEN_OFF, Group

# Every figure has one row of panels per task (one algorithm on one environment), whose panels share their axes;
# colour = dropout mode (MODE_COLORS), line style / marker = the one other setting that varies (beta, ...); dropout
# p is the x-axis (final score, first_ratio_dev) or the panel (curves, performance profiles) where it varies.

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
SHORT_NAMES = {"dropout": "p"}


def _curves(group: Group, column: str, points: int = 100) -> tuple[np.ndarray, np.ndarray] | None:
    """The runs' ``column`` against env_steps, on a common grid: ``(x (points,), y (runs, points))``."""
    series = []
    for r in group.runs:
        m = r.metrics[["env_steps", column]].dropna()
        if len(m) >= 2:
            series.append((m["env_steps"].to_numpy(float), m[column].to_numpy(float)))
    if not series:
        return None
    end = min(s[0][-1] for s in series)
    x = np.linspace(min(s[0][0] for s in series), end, points)
    return x, np.stack([np.interp(x, sx, sy) for sx, sy in series])


def _effective(g: Group) -> dict:
    """The group's config without the fields dropout-off makes inert (for a dropout-off group)."""
    return {k: v for k, v in g.config.items() if not (dropout_is_off(g.mode) and k in INERT_WHEN_OFF)}


@dataclass
class _Task:
    """A task's groups and how the figures lay them out."""

    name: str
    groups: list[Group]
    x_field: str | None  # dropout p if it varies, else the first numeric field that varies, else None
    style_fields: list[str]  # the other fields that vary besides the mode: line style and marker
    styles: list[tuple] = field(default_factory=list)  # the distinct complete styles, in order

    @property
    def is_lang(self) -> bool:
        return self.groups[0].runs[0].is_lang

    def x(self, g: Group):
        """The group's value on the x-axis, None where it is inert (a dropout-off group's p) or there is no x."""
        return None if self.x_field is None else _effective(g).get(self.x_field)

    def style(self, g: Group) -> tuple:
        e = _effective(g)
        return tuple((f, json.dumps(e[f])) for f in self.style_fields if f in e)

    def kind(self, g: Group) -> tuple:
        """What tells the groups of one mode apart when the x field is not on an axis: its value and the style."""
        x = () if self.x(g) is None else ((self.x_field, json.dumps(self.x(g))),)
        return x + self.style(g)

    def style_index(self, g: Group) -> int:
        s = self.style(g)
        return self.styles.index(s) if s in self.styles else 0

    def style_label(self, style: tuple) -> str:
        return ", ".join(f"{SHORT_NAMES.get(f, f)}={json.loads(v)}" for f, v in style)

    def x_label(self) -> str:
        return "dropout p" if self.x_field == "dropout" else str(self.x_field)

    def score_label(self) -> str:
        return "final reward (last batch)" if self.is_lang else "final return (last 20 episodes)"


def _place_legend(ax, handles: list, title: str) -> None:
    """A task's legend in the top left corner of ``ax``, titled with the task."""
    ax.legend(
        handles=handles,
        loc="upper left",
        fontsize=8,
        title=title,
        title_fontsize=8,
        alignment="left",
        borderaxespad=0.0,
    )


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tasks(groups: list[Group]) -> list[_Task]:
    by_task: dict[str, list[Group]] = {}
    for g in groups:
        by_task.setdefault(g.task, []).append(g)
    tasks = []
    for name, members in sorted(by_task.items()):
        eff = [_effective(g) for g in members]

        fields = [
            f
            for f in members[0].config
            if f not in ("algo", "env", "dropout_mode") and len({json.dumps(e[f]) for e in eff if f in e}) > 1
        ]
        numeric = [f for f in fields if all(_number(e[f]) for e in eff if f in e)]
        x_field = "dropout" if "dropout" in numeric else (numeric[0] if numeric else None)
        task = _Task(name, members, x_field, [f for f in fields if f != x_field])
        complete = {task.style(g) for g in members if len(task.style(g)) == len(task.style_fields)}
        task.styles = sorted(complete, key=lambda s: [_sort_value(json.loads(v)) for _, v in s])
        mode_order = list(MODE_COLORS)
        task.groups = sorted(
            members,
            key=lambda g: (mode_order.index(g.mode) if g.mode in mode_order else 99, task.style_index(g), g.label),
        )
        tasks.append(task)
    return tasks


def _sort_value(v):
    return (0, v, "") if _number(v) else (1, 0, json.dumps(v, sort_keys=True))


def _facets(task: _Task, bases: dict) -> list[tuple[str, list[Group]]]:
    """The panels of a task in the curve figures: one per value of its x field (dropout p), each holding the groups
    with that value and their baseline (a dropout-off group, whose p is inert, is shown in every panel it serves)."""
    fixed = [g for g in task.groups if task.x(g) is not None]
    floating = [g for g in task.groups if task.x(g) is None]
    if not fixed:
        return [("", task.groups)]
    out = []
    for v in sorted({task.x(g) for g in fixed}, key=_sort_value):
        members = [g for g in fixed if task.x(g) == v]
        extra = [f for f in floating if f.config.get(task.x_field) == v]
        if not extra:
            extra = [f for f in floating if any(bases.get(g.key) is f for g in members)] or floating
        ids = {id(g) for g in extra + members}
        out.append((f"{SHORT_NAMES.get(task.x_field, task.x_field)} = {v}", [g for g in task.groups if id(g) in ids]))
    return out


def _lines(task: _Task) -> dict[tuple, list[Group]]:
    """(mode, style) -> the groups of that line, ordered along the x-axis."""
    out: dict[tuple, list[Group]] = {}
    for g in task.groups:
        out.setdefault((g.mode, task.style(g)), []).append(g)
    for gs in out.values():
        gs.sort(key=lambda g: _sort_value(g.config.get(task.x_field)) if task.x_field else 0)
    return out


def _layout(plt, panels: list[int], title: str, max_cols: int = 4, width: float | None = None, height: float = 2.5):
    """A grid with one block of rows per task (at most ``max_cols`` panels a row) and a legend column on the right.
    Returns the figure and, per task, (its panel axes, its legend axes); a task's panels share their axes."""
    rows = [max(1, math.ceil(n / max_cols)) for n in panels]
    ncols = max(math.ceil(n / k) for n, k in zip(panels, rows))  # balanced: 5 panels as 3 + 2, not 4 + 1
    width = width or (4.6 if ncols == 1 else 3.2)
    fig, axes = plt.subplots(
        sum(rows),
        ncols + 1,
        figsize=(width * ncols + 2.1, height * sum(rows) + 0.5),
        squeeze=False,
        gridspec_kw={"width_ratios": [width] * ncols + [2.1]},
    )
    for ax in axes.flat:
        ax.axis("off")
    out, r = [], 0
    for n, k in zip(panels, rows):
        mine = [axes[r + i // ncols, i % ncols] for i in range(n)]
        for i, ax in enumerate(mine):
            ax.axis("on")
            if i:
                ax.sharex(mine[0])
                ax.sharey(mine[0])
            if i % ncols:
                ax.tick_params(labelleft=False)
        out.append((mine, axes[r, -1]))
        r += k
    fig.suptitle(title, fontsize=11, wrap=True)
    return fig, out


def _legend(ax, task: _Task, marker: bool = False, extra: list | None = None) -> None:
    """A task's legend: one entry per dropout mode (its colour), then one per other setting that varies (its line
    style or marker, in grey). Where such settings vary, a mode's entry is a colour swatch, not a line: a solid
    line would say "solid" too, while the mode's groups are drawn in every style (MinAtar's dropout off: solid with
    D-PPO's sample dropout, dashed without)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    modes = dict.fromkeys(g.mode for g in task.groups)
    if len(task.styles) > 1:
        handles = [Patch(color=mode_color(m), label=m) for m in modes]
    else:
        handles = [
            Line2D([], [], color=mode_color(m), lw=2, marker="o" if marker else None, ms=5, label=m) for m in modes
        ]
    if len(task.styles) > 1:
        handles += [
            Line2D(
                [],
                [],
                color="#666666",
                lw=1.4,
                ls=LINESTYLES[i % 4],
                marker=MARKERS[i] if marker else None,
                ms=5,
                label=task.style_label(s),
            )
            for i, s in enumerate(task.styles)
        ]
    handles += extra or []
    _place_legend(ax, handles, task.name)


def _style(task: _Task, g: Group) -> dict:
    i = task.style_index(g)
    return {"color": mode_color(g.mode), "ls": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)]}
