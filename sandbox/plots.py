"""The look shared by every figure the sandbox draws (the report's and the lessons'): one colour per dropout mode,
the same in every figure, and a compact default style that stays readable when a notebook is read on the web."""

from __future__ import annotations

MODE_COLORS: dict[str, str] = {
    "off": "#333333",  # black: the baseline
    "rollout-eval": "#1f77b4",  # blue: SB3's behaviour
    "naive": "#d62728",  # red: PyTorch's default, TRL's with dropout
    "consistent": "#2ca02c",  # green: the stored masks replayed
}
"""Dropout mode -> colour. Use it for every line, band and point that stands for a mode."""

OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e")
"""For series that are not dropout modes (an SB3 arm, a variant, a second task), in this order."""


def mode_color(mode: str) -> str:
    """The colour of a dropout mode (grey for anything else)."""
    return MODE_COLORS.get(mode, "#7f7f7f")


def use_style(dpi: int = 90) -> None:
    """Matplotlib defaults for the sandbox's figures: small enough files, labels that fit, no top/right spines."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.figsize": (7.0, 3.6),
            "figure.constrained_layout.use": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
        }
    )


def legend_below(fig, handles: list | None = None, ncol: int | None = None, **kw):
    """The figure's legend in a row below its axes, where it cannot cover a line or a point (a legend inside the axes
    sits over data as soon as a run lands where it was put). Needs the constrained layout of :func:`use_style`,
    which makes room for it under the x labels. ``handles``: the entries (artists with labels), by default every
    labelled artist of the figure's axes, once per label; ``ncol``: entries per row (default: all in one row, at most
    four). Returns the legend."""
    if handles is None:
        seen: dict[str, object] = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, handle)
        handles = list(seen.values())
    ncol = ncol or max(1, min(len(handles), 4))
    return fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False, **kw)
