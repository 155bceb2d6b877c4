"""Loading a sweep: every finished run directory in it read into a :class:`RunData` (its config, its summary, its
metrics as a frame), and the runs grouped by config into :class:`Group` objects (a group: every field equal but the
seed, where a run writes and how it is carried out: :func:`sandbox.config.without` with every role)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import ROLES, without
from ...dropout_modes import dropout_is_off

# fields without effect when dropout is off: a baseline "dropout_mode=off" group may differ in them
INERT_WHEN_OFF = (
    "dropout",
    "dropout_value",
    "dropout_policy",
    "dropout_schedule",
    "dropout_cutoff",
    "dropout_samples",
    "multi_sample_average",
)


@dataclass
class RunData:
    """One finished run: its directory, config.json, summary.json and metrics.csv."""

    path: Path
    config: dict
    summary: dict
    metrics: pd.DataFrame

    @property
    def is_lang(self) -> bool:
        return str(self.config.get("env", "")).startswith("lang:")

    @property
    def final(self) -> float:
        """Final return (Gym: last 20 episodes) or final reward (language tasks: the last batch)."""
        v = self.summary.get("final_reward") if self.is_lang else self.summary.get("final_return")
        return math.nan if v is None else float(v)


@dataclass
class Group:
    """The runs of one config (its seeds), keyed by the config's JSON, with the label the report gives it."""

    key: str
    config: dict
    runs: list[RunData] = field(default_factory=list)
    label: str = ""
    family: str = ""  # the task ("PPO CartPole-v1") when the sweep has several, else ""
    varying: list[str] = field(default_factory=list)  # the fields that tell this group from its family's others

    @property
    def task(self) -> str:
        """The algorithm and environment, e.g. "PPO CartPole-v1": every figure has one row of panels per task."""
        return f"{str(self.config.get('algo', '')).upper()} {self.config.get('env', '')}".strip()

    @property
    def mode(self) -> str:
        return str(self.config.get("dropout_mode", "off"))

    @property
    def finals(self) -> np.ndarray:
        return np.array([r.final for r in self.runs])

    def label_without(self, *fields: str) -> str:
        parts = ", ".join(f"{k}={self.config[k]}" for k in self.varying if k not in fields)
        return ": ".join(x for x in (self.family, parts) if x) or "all runs"


def load_runs(sweep_dir: str | os.PathLike) -> list[RunData]:
    """Every finished run (a summary.json) in or below ``sweep_dir``, in path order."""
    runs = []
    for summary in sorted(Path(sweep_dir).rglob("summary.json")):
        run = read_run(summary.parent)
        if run is not None:
            runs.append(run)
    return runs


def read_run(d: Path) -> RunData | None:
    """The finished run in directory ``d``, or None when it is not a complete run directory."""
    try:
        return RunData(
            d,
            json.loads((d / "config.json").read_text()),
            json.loads((d / "summary.json").read_text()),
            pd.read_csv(d / "metrics.csv"),
        )
    except (OSError, ValueError):
        return None


def group_runs(runs: list[RunData]) -> list[Group]:
    """Runs grouped by config (all fields but the seed). A group's label names its algorithm and env when the
    sweep has several, then the fields that vary between the groups of that algorithm and env."""
    groups: dict[str, Group] = {}
    for r in runs:
        cfg = without(r.config, *ROLES)
        key = json.dumps(cfg, sort_keys=True)
        groups.setdefault(key, Group(key, cfg)).runs.append(r)
    families: dict[tuple, list[Group]] = {}
    for g in groups.values():
        families.setdefault((g.config.get("algo"), g.config.get("env")), []).append(g)
    for (algo, env), members in families.items():
        varying = [
            k
            for k in members[0].config
            if len({json.dumps(m.config.get(k)) for m in members}) > 1 and k not in ("algo", "env")
        ]
        for g in members:
            g.family, g.varying = (g.task if len(families) > 1 else ""), varying
            g.label = g.label_without()
        # dropout off: its rate, schedule, ... have no effect, so its label leaves them out (unless that would
        # give two groups the same label)
        short = {
            id(g): g.label_without(*INERT_WHEN_OFF) if dropout_is_off(g.config.get("dropout_mode")) else g.label
            for g in members
        }
        if len(set(short.values())) == len(members):
            for g in members:
                g.label = short[id(g)]
    return sorted(groups.values(), key=lambda g: g.label)


# --- what every group shares ---------------------------------------------------------------------------------------


def _defaults(algo: str, env: str) -> dict:
    """``sandbox train``'s defaults for a kind of run (every None filled in as a run fills it), or {} when the
    current Config cannot make one (an old config's algorithm)."""
    from ...config import Config, resolve

    try:
        return resolve(Config(algo=algo, env=env)).to_dict()
    except Exception:  # noqa: BLE001 - a report of old runs still reads
        return {}


def fixed_settings(groups: list[Group]) -> tuple[dict, dict]:
    """What every group of ``groups`` shares and ``sandbox train`` would not have chosen by itself: ``(fixed,
    with_dropout)``, field -> value. ``fixed``: the same value in every group and not the default for the group's
    algorithm and env (the group labels name only what varies, so this is what they leave unsaid: "critic only, p
    0.2"). ``with_dropout``: fields dropout off makes inert (the rate, the networks it is in, the schedule), the same
    in every group with dropout, when the groups include dropout off (whose values of them mean nothing). The
    algorithm and the env are the task, named already; seeds and output fields are never part of a group."""
    if not groups:
        return {}, {}
    any_off = any(dropout_is_off(g.mode) for g in groups)
    defaults = {key: _defaults(*key) for key in {(g.config.get("algo"), g.config.get("env")) for g in groups}}
    fixed, with_dropout = {}, {}
    for k in groups[0].config:
        if k in ("algo", "env"):
            continue
        inert = any_off and k in INERT_WHEN_OFF
        members = [g for g in groups if not (inert and dropout_is_off(g.mode))]
        if not members or any(k not in g.config for g in members):
            continue
        values = {json.dumps(g.config[k], sort_keys=True) for g in members}
        if len(values) != 1:
            continue
        value = members[0].config[k]
        if all(json.dumps(defaults[(g.config.get("algo"), g.config.get("env"))].get(k), sort_keys=True)
               == json.dumps(value, sort_keys=True) for g in members):  # fmt: skip
            continue
        (with_dropout if inert else fixed)[k] = value
    return fixed, with_dropout


def _setting(k: str, v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}.{name}={value}" for name, value in v.items()) or f"{k}={{}}"
    if isinstance(v, list):
        return f"{k}={tuple(v)}"
    return f"{k}={v}"


def describe_fixed(groups: list[Group], limit: int | None = None) -> str:
    """The fixed settings of ``groups`` (:func:`fixed_settings`) in words, dropout's first: ``"with dropout:
    dropout=0.2, dropout_value=True, dropout_policy=False; preset cartpole, total_steps=30000"`` (a preset whose
    values, its env and budget aside, every group shares is named instead of them); "" when there are none.
    ``limit``: at most that many characters (a figure's title), the rest as "..."."""
    from ...config import PRESETS, SECTIONS

    fixed, with_dropout = fixed_settings(groups)
    first = [f.name for name in ("dropout", "variants", "kl") for f in dataclasses.fields(SECTIONS[name])]
    order = sorted(fixed, key=lambda k: first.index(k) if k in first else len(first))
    shared = [
        (name, {k: v for k, v in values.items() if k not in ("env", "total_steps")}) for name, values in PRESETS.items()
    ]
    preset = next(
        (name for name, values in shared if all(g.config.get(k) == v for g in groups for k, v in values.items())), None
    )
    parts = []
    if with_dropout:
        parts.append("with dropout: " + ", ".join(_setting(k, v) for k, v in with_dropout.items()))
    rest = [_setting(k, fixed[k]) for k in order if not (preset and k in dict(shared)[preset])]
    parts.append(", ".join(([f"preset {preset}"] if preset else []) + rest))
    text = "; ".join(p for p in parts if p)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3].rsplit(",", 1)[0] + ", ..."
    return text


# --- the runs as frames: sandbox.load ------------------------------------------------------------------------------

RUN_COLUMNS = ("path", "group", "task", "final")
"""The first columns of :func:`runs_frame`; then every config field, then every value of ``summary.json``."""


def _cell(v):
    """A config value as a frame holds it: a list as a tuple, a mapping (``env_params``, ``maths``) as its JSON text,
    so that every column can be grouped by."""
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def runs_frame(groups: list[Group]) -> pd.DataFrame:
    """One row per run of ``groups``, in the report's order: its directory (``path``), the report's label of its group
    (``group``) and task, its ``final`` score (what every statistic of the report is computed from), then its config's
    fields, then its ``summary.json``'s values (a summary key that is also a config field gets a ``summary_`` prefix).
    ``finals.csv`` is a slice of it."""
    rows = []
    for g in groups:
        for r in g.runs:
            row = {"path": str(r.path), "group": g.label, "task": g.task, "final": r.final}
            row |= {k: _cell(v) for k, v in r.config.items()}
            row |= {(f"summary_{k}" if k in row else k): _cell(v) for k, v in r.summary.items()}
            rows.append(row)
    return pd.DataFrame(rows)


def metrics_frame(groups: list[Group]) -> pd.DataFrame:
    """The per-update metrics of every run of ``groups`` in one long frame: a row per run and update, the run's
    ``path``, ``group``, ``task`` and config fields first, then ``metrics.csv``'s columns (``sandbox/metrics.py``)."""
    frames = []
    for g in groups:
        for r in g.runs:
            head = {"path": str(r.path), "group": g.label, "task": g.task}
            head |= {k: _cell(v) for k, v in r.config.items() if k not in r.metrics.columns}
            frames.append(r.metrics.assign(**{k: [v] * len(r.metrics) for k, v in head.items()})[[*head, *r.metrics]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RUN_COLUMNS[:3]))


def load(path: str | os.PathLike, metrics: bool = False) -> pd.DataFrame:
    """A run directory, a sweep or a study (every finished run in or below ``path``) read back as one tidy frame: a
    row per run (:func:`runs_frame`: config fields and summary values as columns, the report's group labels and final
    scores), or with ``metrics=True`` a row per run and update (:func:`metrics_frame`). The report's reader and
    grouping, so the numbers are the report's; :func:`sandbox.analysis.report.figure` draws the report's figures from
    either frame (or a filtered one). Runs without a ``summary.json`` (unfinished) are left out. Raises
    :class:`~sandbox.config.ConfigError` for a path that holds no finished run."""
    from ...config import ConfigError

    if not Path(path).exists():
        raise ConfigError("path", f"{path}: no such run, sweep or study directory")
    runs = load_runs(path)
    if not runs:
        raise ConfigError("path", f"{path} holds no finished run (no summary.json in it or below it)")
    groups = group_runs(runs)
    return metrics_frame(groups) if metrics else runs_frame(groups)


def runs_of(frame: pd.DataFrame) -> list[RunData]:
    """The runs a frame of :func:`load` (or a part of one) names in its ``path`` column, read again from disk."""
    if "path" not in frame.columns:
        raise ValueError("not a frame of sandbox.load: it has no 'path' column")
    runs = [read_run(Path(p)) for p in dict.fromkeys(frame["path"])]
    missing = [p for p, r in zip(dict.fromkeys(frame["path"]), runs) if r is None]
    if missing:
        raise ValueError(f"{missing[0]} is no longer a finished run directory")
    return runs
