"""Run directories: ``config.json``, ``metrics.csv``, ``episodes.csv``, ``summary.json``.

Rows are flushed after every update, so a run stopped early keeps everything up to its last update. JSON files are
written atomically (temporary file, then rename), and ``summary.json`` is written last: a run directory without it
did not finish. An existing directory is never overwritten unless asked to.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from .config import Config, ConfigError
from .metrics import EPISODE_COLUMNS, METRIC_COLUMNS


@dataclass
class RunResult:
    """What ``sandbox.train`` returns: the config, per-update metrics, finished episodes and the summary."""

    config: Config
    metrics: pd.DataFrame
    episodes: pd.DataFrame
    summary: dict[str, Any]
    run_dir: Path | None


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


RUN_FILES = frozenset({"config.json", "metrics.csv", "episodes.csv", "summary.json", "policy.pt", "checkpoints"})


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
        self.dir: Path | None = None
        self._files: list = []
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
        self.episode_rows = [(int(e[0]), float(e[1]), float(e[2]), int(e[3])) for e in kept_episodes]

    def save_policy(self, blob: dict) -> None:
        """``policy.pt`` (see :mod:`sandbox.checkpoint`); nothing without a run directory."""
        if self.dir is not None:
            from .checkpoint import POLICY_FILE, save

            save(self.dir / POLICY_FILE, blob)

    def save_checkpoint(self, update: int, blob: dict) -> None:
        """``checkpoints/update-NNNNNN.pt``, after the rows of that update are on disk."""
        if self.dir is not None:
            from .checkpoint import checkpoint_path, save

            self.flush()
            save(checkpoint_path(self.dir, update), blob)

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
            self.flush()

    def flush(self) -> None:
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
        if self.dir is not None and write_summary:
            write_json_atomic(self.dir / "summary.json", summary)
        metrics = pd.DataFrame(self.rows, columns=list(METRIC_COLUMNS)).astype(float)
        for col in ("update", "env_steps", "episodes", "epochs_done"):
            metrics[col] = metrics[col].astype("Int64")
        episodes = pd.DataFrame(self.episode_rows, columns=list(EPISODE_COLUMNS))
        return RunResult(self.config, metrics, episodes, summary, self.dir)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def progress_bar(total: int, quiet: bool, desc: str) -> tqdm:
    """A tqdm bar on stderr, off with ``quiet`` or when stderr is not a terminal."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="step", disable=disable, dynamic_ncols=True, leave=False, mininterval=0.25)


class Clock:
    """Seconds since ``start()``, the start of learning (plus ``offset``: the seconds a resumed run had done)."""

    def __init__(self, offset: float = 0.0):
        self.t0 = time.perf_counter() - offset

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


@dataclass
class BatchRunState:
    """Bookkeeping of trainers that sample whole episodes or completions per update (GRPO, PPO on language tasks):
    steps, finished episodes, the time the threshold was first reached, and the summary."""

    env_steps: int = 0
    updates: int = 0
    returns: list = field(default_factory=list)
    final_reward: float | None = None
    solved_at_steps: int | None = None
    solved_at_s: float | None = None

    def record(self, log: "RunLog", rewards: list[float], lengths: list[int], wall: float) -> None:
        """One batch of finished episodes (completions): count them and write them to episodes.csv."""
        for ret, length in zip(rewards, lengths):
            log.episode(self.env_steps, wall, ret, int(length))
        self.returns.extend(rewards)
        self.final_reward = float(sum(rewards) / len(rewards)) if rewards else None

    def recent(self, k: int = 20) -> float:
        return float(sum(self.returns[-k:]) / len(self.returns[-k:])) if self.returns else float("nan")

    def state_dict(self) -> dict:
        """For checkpoints: plain numbers, the returns as a float64 tensor."""
        import torch

        return {
            **{k: getattr(self, k) for k in ("env_steps", "updates", "final_reward", "solved_at_steps", "solved_at_s")},
            "returns": torch.tensor(self.returns, dtype=torch.float64),
        }

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v.tolist() if k == "returns" else v)

    def check_solved(self, value: float, threshold: float | None, wall: float) -> bool:
        """Record the first time ``value`` reaches ``threshold``; True if it just did."""
        if self.solved_at_steps is None and threshold is not None and value >= threshold:
            self.solved_at_steps, self.solved_at_s = self.env_steps, wall
            return True
        return False

    def summary(self, status: str, message: str, threshold: float | None, total_s: float, **extra) -> dict:
        return {
            "status": status,
            "final_return": self.recent(20) if self.returns else None,
            "final_reward": self.final_reward,
            "solved_at_steps": self.solved_at_steps,
            "solved_at_s": self.solved_at_s,
            "reward_threshold": threshold,
            "total_s": total_s,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "episodes": len(self.returns),
            "message": message,
            **extra,
        }
