"""Run directories: what a run writes, under which names, and how (atomically, never overwriting by surprise).

A run directory holds ``config.json``, ``metrics.csv`` (one row per update), ``episodes.csv``, ``summary.json``,
``policy.pt`` and, with ``--save-every N``, ``checkpoints/update-NNNNNN.pt`` (with ``--flatness-every N``,
``flatness.csv``). Rows are flushed after every update,
so a run stopped early keeps everything up to its last update. JSON and torch files are written atomically
(temporary file, then rename), and ``summary.json`` is written last: a run directory without it did not finish.
An existing directory is never overwritten unless asked to.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import Config, ConfigError
from ..metrics import EPISODE_COLUMNS, FLATNESS_COLUMNS, METRIC_COLUMNS


@dataclass
class RunResult:
    """What ``sandbox.train`` returns: the config, per-update metrics, finished episodes and the summary."""

    config: Config
    metrics: pd.DataFrame
    episodes: pd.DataFrame
    summary: dict[str, Any]
    run_dir: Path | None
    flatness: pd.DataFrame | None = None
    """``--flatness-every``: one row per measured direction (``flatness.csv``); None when the diagnostic was off."""


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=False, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o: Any):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _clean(v: Any) -> Any:
    """NaN and inf become null in JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --- names -------------------------------------------------------------------------------------------------------

POLICY_FILE = "policy.pt"
CHECKPOINT_DIR = "checkpoints"
FLATNESS_FILE = "flatness.csv"
RUN_FILES = frozenset(
    {"config.json", "metrics.csv", "episodes.csv", "summary.json", POLICY_FILE, CHECKPOINT_DIR, FLATNESS_FILE}
)


def checkpoint_path(run_dir: Path, update: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"update-{update:06d}.pt"


def checkpoint_update(path: Path) -> int:
    m = re.search(r"update-(\d+)\.pt$", path.name)
    return int(m.group(1)) if m else -1


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest update number in ``run_dir/checkpoints``, or None."""
    found = sorted((Path(run_dir) / CHECKPOINT_DIR).glob("update-*.pt"), key=checkpoint_update)
    return found[-1] if found else None


def find_policy_file(path: str | os.PathLike, field: str = "ref") -> Path:
    """A run directory means its ``policy.pt``; a file means itself. One-line error if neither exists."""
    p = Path(path)
    if p.is_dir():
        if (p / POLICY_FILE).is_file():
            return p / POLICY_FILE
        last = latest_checkpoint(p)
        hint = f"; its last checkpoint is {last}" if last is not None else ""
        raise ConfigError(field, f"{p} has no {POLICY_FILE} (the run did not finish){hint}")
    if p.is_file():
        return p
    raise ConfigError(field, f"{p}: no such run directory or policy file")


# --- atomic writes -----------------------------------------------------------------------------------------------


def save_torch_atomic(path: Path, obj: Any) -> None:
    """``torch.save`` to a temporary file, then a rename: a crash never leaves half a file under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def is_run_dir(path: Path) -> bool:
    """A directory written by a run: ``config.json`` and nothing but the run files (and their temporary files)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return "config.json" in names and all(n in RUN_FILES or n.endswith(".tmp") for n in names)


def prepare_run_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Create ``out``. An existing non-empty one is refused, unless ``overwrite`` and it is a run directory (then
    it is removed first): ``--overwrite`` never deletes anything a run did not write."""
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise ConfigError("out", f"{path} already exists; choose another --out or pass --overwrite")
        if not is_run_dir(path):
            raise ConfigError(
                "out",
                f"{path} exists and is not a run directory (it holds other files); "
                "--overwrite only replaces run directories",
            )
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("out", f"cannot create {path}: {err.strerror}") from None
    return path


def check_tensorboard(config: Config) -> None:
    """``--tensorboard`` needs the tensorboard package (the optional ``tensorboard`` extra): a one-line error
    before anything is written if it is missing."""
    if config.tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "tensorboard",
            "needs the tensorboard package, which is not installed: "
            "pip install -c requirements.lock -e '.[tensorboard]'",
        )


def tensorboard_writer(config: Config, run_dir: Path | None, purge_step: int | None = None):
    """A TensorBoard ``SummaryWriter`` for ``config.tensorboard``/<the run directory's name> (without a run
    directory: <env>-<algo>-<mode>-s<seed>-<time>), so that ``tensorboard --logdir DIR`` shows one run per
    subdirectory. ``purge_step``: a resumed run hides the events from that step on (they are written again)."""
    check_tensorboard(config)
    from torch.utils.tensorboard import SummaryWriter

    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = config.env.replace(":", "_").replace("/", "_")
    name = run_dir.name if run_dir is not None else f"{env}-{config.algo}-{config.dropout_mode}-s{config.seed}-{stamp}"
    try:
        return SummaryWriter(log_dir=str(Path(config.tensorboard) / name), purge_step=purge_step)
    except OSError as err:
        raise ConfigError("tensorboard", f"cannot write to {config.tensorboard}: {err.strerror}") from None


class RunLog:
    """Collects a run's rows in memory and, when ``out`` is given, writes them to the run directory.

    ``resume=(update, episodes)`` reopens an existing run directory to continue it from a checkpoint: the rows of
    updates after ``update`` and the episodes after the first ``episodes`` (written after that checkpoint) are
    dropped, so that the continued run writes each row exactly once.
    """

    def __init__(self, config: Config, resume: tuple[int, int] | None = None):
        self.config = config
        self.rows: list[dict[str, Any]] = []
        self.episode_rows: list[tuple] = []
        self.flatness_rows: list[dict[str, Any]] | None = [] if config.flatness_every else None
        self.dir: Path | None = None
        self._files: list = []
        self._tb = None  # --tensorboard: a view of the rows, written as they come
        if config.out is not None:
            if resume is None:
                self.dir = prepare_run_dir(config.out, config.overwrite)
                write_json_atomic(self.dir / "config.json", config.to_dict())
            else:
                self.dir = Path(config.out)
                self._keep_rows_until(*resume)
            self._mf = open(self.dir / "metrics.csv", "a", newline="")
            self._ef = open(self.dir / "episodes.csv", "a", newline="")
            self._files = [self._mf, self._ef]
            self._mw = csv.DictWriter(self._mf, fieldnames=METRIC_COLUMNS, restval="")
            self._ew = csv.writer(self._ef)
            if resume is None:
                self._mw.writeheader()
                self._ew.writerow(EPISODE_COLUMNS)
        self._pending_episodes = 0
        if config.tensorboard is not None:
            purge = int(self.rows[-1]["env_steps"]) + 1 if self.rows else None  # resume: hide the dropped rows
            self._tb = tensorboard_writer(config, self.dir, purge)

    def _keep_rows_until(self, update: int, episodes: int) -> None:
        """Read back the rows up to a checkpoint and rewrite both files with only those (atomically)."""
        with open(self.dir / "metrics.csv", newline="") as f:
            kept = list(csv.DictReader(f))[:update]  # by position: a line torn by a kill can only come later
        with open(self.dir / "episodes.csv", newline="") as f:
            kept_episodes = list(csv.reader(f))[1 : episodes + 1]
        if len(kept) != update or len(kept_episodes) != episodes or int(kept[-1]["update"]) != update:
            raise ConfigError(
                "resume",
                f"{self.dir}: metrics.csv or episodes.csv has fewer rows than the checkpoint "
                f"of update {update}; the run directory was changed by hand",
            )
        for name, header, rows in (
            ("metrics.csv", METRIC_COLUMNS, [[r[c] for c in METRIC_COLUMNS] for r in kept]),
            ("episodes.csv", EPISODE_COLUMNS, kept_episodes),
        ):
            tmp = self.dir / f".{name}.tmp"
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
            os.replace(tmp, self.dir / name)
        self.rows = [{c: float(r[c]) if r[c] != "" else math.nan for c in METRIC_COLUMNS} for r in kept]
        if (self.dir / FLATNESS_FILE).exists():  # --flatness-every: its rows up to the checkpoint, likewise
            flat = pd.read_csv(self.dir / FLATNESS_FILE)
            self.flatness_rows = flat[flat["update"] <= update].to_dict("records")
            self._write_flatness(self.flatness_rows, "w")
        self.episode_rows = [(int(e[0]), float(e[1]), float(e[2]), int(e[3])) for e in kept_episodes]

    def save_policy(self, blob: dict) -> None:
        """``policy.pt`` (see :mod:`sandbox.runs.policy_file`); nothing without a run directory."""
        if self.dir is not None:
            save_torch_atomic(self.dir / POLICY_FILE, blob)

    def save_checkpoint(self, update: int, blob: dict) -> None:
        """``checkpoints/update-NNNNNN.pt``, after the rows of that update are on disk."""
        if self.dir is not None:
            self.flush()
            save_torch_atomic(checkpoint_path(self.dir, update), blob)

    def episode(self, env_steps: int, wall_s: float, ret: float, length: int) -> None:
        self.episode_rows.append((env_steps, wall_s, ret, length))
        self._pending_episodes += 1

    def update(self, row: dict[str, Any]) -> None:
        """Record one update's metrics (unknown keys are an error: the schema is fixed) and flush both files."""
        extra = set(row) - set(METRIC_COLUMNS)
        if extra:
            raise KeyError(f"metrics not in the schema (sandbox/metrics.py): {sorted(extra)}")
        self.rows.append(row)
        if self.dir is not None:
            self._mw.writerow({k: _fmt(v) for k, v in row.items()})
        if self._tb is not None:
            step = int(row["env_steps"])
            for name, value in row.items():
                if name != "env_steps" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"metrics/{name}", value, step)
        self.flush()

    def flatness(self, update: int, rows: list[dict[str, Any]]) -> None:
        """The variance-flatness diagnostic's rows of one update (``flatness.csv``, written at once)."""
        rows = [{"update": update, **r} for r in rows]
        self.flatness_rows.extend(rows)
        self._write_flatness(rows, "a")

    def _write_flatness(self, rows: list[dict[str, Any]], how: str) -> None:
        if self.dir is None:
            return
        path = self.dir / FLATNESS_FILE
        header = how == "w" or not path.exists()
        with open(path, how, newline="") as f:
            w = csv.DictWriter(f, fieldnames=FLATNESS_COLUMNS)
            if header:
                w.writeheader()
            w.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()
        if self.dir is None:
            return
        if self._pending_episodes:
            self._ew.writerows(self.episode_rows[-self._pending_episodes :])
            self._pending_episodes = 0
        for f in self._files:
            f.flush()

    def finish(self, summary: dict[str, Any], write_summary: bool = True) -> RunResult:
        summary = {k: _clean(v) for k, v in summary.items()}
        self.flush()
        for f in self._files:
            f.close()
        if self._tb is not None:
            self._tb.close()
        if self.dir is not None and write_summary:
            write_json_atomic(self.dir / "summary.json", summary)
        metrics = pd.DataFrame(self.rows, columns=list(METRIC_COLUMNS)).astype(float)
        for col in ("update", "env_steps", "episodes", "epochs_done"):
            metrics[col] = metrics[col].astype("Int64")
        episodes = pd.DataFrame(self.episode_rows, columns=list(EPISODE_COLUMNS))
        flatness = None
        if self.flatness_rows is not None:
            flatness = pd.DataFrame(self.flatness_rows, columns=list(FLATNESS_COLUMNS))
        return RunResult(self.config, metrics, episodes, summary, self.dir, flatness)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v
