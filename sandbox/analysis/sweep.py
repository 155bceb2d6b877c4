"""``sandbox sweep SPEC.toml --out DIR``: a grid of runs, in parallel processes or on Ray, resumable.

The spec has a ``[base]`` table of config fields (``preset = "cartpole"`` starts from a preset) and a ``[grid]``
table mapping config fields, ``seed`` included, to lists of values; the runs are the grid's product::

    [base]
    preset = "cartpole"
    total_steps = 50000

    [grid]
    dropout_mode = ["off", "naive", "consistent"]
    dropout = [0.1, 0.3]
    seed = [0, 1, 2, 3, 4]

Each run writes its own run directory under DIR, named from its grid values (with ``backend="ray"``, on a Ray
instance or a cluster joined by address, each run's directory comes back to this process, which writes it:
``sandbox/analysis/cluster.py``). Running the same sweep again skips the
finished runs (a ``summary.json``, written last and atomically, and the same config) and redoes the unfinished ones
from scratch; a killed worker or Ctrl-C never touches a finished run. Every config is checked before any run starts.

Populations (``population``, default 16): the seeds of one grid point that are still to run train together, up to
that many at a time, as one population in one worker (``sandbox/algos/population.py``): several times more seeds per
CPU-second, each run still writing its own directory. Configs a population cannot take (GRPO, language tasks,
``save_every``, ``stop_at_threshold``, ``grad_diag_every``, ``flatness_every``) run one seed at a time, as with
``population = 0``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import re
import shutil
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..config import PRESETS, RENAMED, Config, ConfigError, validate, without
from ..runs.rundir import RUN_FILES, write_json_atomic
from .cluster import run_job, staging_dir

SET_BY_SWEEP = ("out", "overwrite", "quiet")  # the outputs a sweep sets for each run itself, not the spec


class SpecError(ConfigError):
    """A bad sweep spec. One line, naming the table and field."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.field = "spec"


@dataclasses.dataclass
class Run:
    name: str
    config: Config

    @property
    def dir(self) -> Path:
        return Path(self.config.out)


def load_spec(path: str | os.PathLike) -> tuple[dict, dict]:
    """Parse SPEC.toml into ``(base, grid)``; structural errors are :class:`SpecError`."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path.name}: not valid TOML: {err}") from None
    unknown = sorted(set(spec) - {"base", "grid"})
    if unknown:
        raise SpecError(f"{path.name}: unknown table [{unknown[0]}]; a spec has [base] and [grid]")
    base, grid = dict(spec.get("base", {})), dict(spec.get("grid", {}))
    if not grid:
        raise SpecError(f"{path.name}: [grid] is empty; list at least one field's values, e.g. seed = [0, 1, 2]")
    fields = {f.name for f in dataclasses.fields(Config)}
    for table, entries in (("base", base), ("grid", grid)):
        for key in entries:
            if key in RENAMED:
                raise SpecError(f"{path.name}: [{table}] {key}: renamed {RENAMED[key]}")
            if key in SET_BY_SWEEP:
                raise SpecError(f"{path.name}: [{table}] {key}: set by the sweep itself (--out, --quiet), not the spec")
            if key not in fields and not (table == "base" and key == "preset"):
                close = ", ".join(sorted(f for f in fields if key[:4] in f)[:3]) or "see sandbox train --help"
                raise SpecError(f"{path.name}: [{table}] {key}: unknown config field (close: {close})")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path.name}: [grid] {key}: must be a non-empty list of values, got {values!r}")
    if "preset" in base and base["preset"] not in PRESETS:
        raise SpecError(f"{path.name}: [base] preset: unknown preset {base['preset']!r}; one of: {', '.join(PRESETS)}")
    return base, grid


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(value))


def expand(base: dict, grid: dict, out: str | os.PathLike) -> list[Run]:
    """Every combination of the grid on top of the base, validated; raise :class:`SpecError` naming the first bad
    combination and field. Run names list the grid values in the spec's order, seed last."""
    base = dict(base)
    preset = base.pop("preset", None)
    keys = [k for k in grid if k != "seed"] + (["seed"] if "seed" in grid else [])
    runs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        combo = dict(zip(keys, values))
        name = "__".join(f"{k}={_slug(v)}" for k, v in combo.items())
        fields = {**base, **combo, "out": str(Path(out) / name), "quiet": True}
        if "hidden_sizes" in fields:
            fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
        try:
            cfg = Config(**{**(PRESETS[preset] if preset else {}), **fields})
            cfg = validate(cfg)
            from ..runs.seam import settle
            from ..training import check

            cfg, _ = settle(cfg)  # a seam of the spec (maths = {gae = "mymod:my_gae"}) imported here, and hashed
            check(cfg)
        except ConfigError as err:
            where = ", ".join(f"{k}={v}" for k, v in combo.items())
            raise SpecError(f"run {where}: {err}") from None
        except TypeError as err:  # e.g. a string where a number belongs
            raise SpecError(f"run {name}: {err}") from None
        runs.append(Run(name, cfg))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise SpecError("two runs would share a directory name: a grid lists the same value twice")
    return runs


def run_status(run: Run) -> str:
    """``done`` (summary.json and the same config), ``different`` (done, with another config), ``partial`` (started,
    never finished) or ``new``."""
    d = run.dir
    if not d.exists():
        return "new"
    if not (d / "summary.json").exists():
        return "partial"
    try:
        written = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "partial"
    try:  # a config.json written before a field was added lacks it: compare with the field's default filled in
        written = Config.from_dict(written).to_dict()
    except (ConfigError, TypeError):
        return "different"
    return "done" if written == run.config.to_dict() else "different"


def adopt(runs: list[Run], donors: str | os.PathLike) -> int:
    """Copy into place, for each run of ``runs`` not started yet, a finished run found under ``donors`` with the same
    config (its output fields aside: ``out``, ``quiet``, ...), its ``config.json`` rewritten for its new place; returns
    how many were copied. Same config and seed, same numbers (what the tests hold, a member of a population included),
    so a study that shares groups with another need not train them twice: the mechanism arms' dropout-off and
    ``naive`` groups are the breadth study's. The trap: a donor trained by code whose numbers have changed since.
    Copy between runs of one version, or train one of them again and compare."""
    found: dict[str, Path] = {}
    for summary in sorted(Path(donors).rglob("summary.json")):
        try:
            config = Config.from_dict(json.loads((summary.parent / "config.json").read_text())).to_dict()
        except (OSError, json.JSONDecodeError, ConfigError, TypeError):
            continue
        found.setdefault(json.dumps(without(config, "output"), sort_keys=True), summary.parent)
    copied = 0
    for run in runs:
        donor = found.get(json.dumps(without(run.config.to_dict(), "output"), sort_keys=True))
        if donor is None or run_status(run) != "new":
            continue
        # summary.json is copied last, as a run writes it last: an interrupted copy is a partial run, redone
        shutil.copytree(donor, run.dir, ignore=functools.partial(_not_copied, donor))
        write_json_atomic(run.dir / "config.json", run.config.to_dict())
        shutil.copyfile(donor / "summary.json", run.dir / ".summary.json.tmp")
        os.replace(run.dir / ".summary.json.tmp", run.dir / "summary.json")
        copied += 1
    return copied


def _not_copied(top: Path, folder: str, names: list[str]) -> list[str]:
    """What :func:`adopt` leaves out of its first copy of the run directory ``top``: whatever a run does not write,
    and summary.json (its checkpoints folder is copied whole)."""
    return [n for n in names if n not in RUN_FILES or n == "summary.json"] if Path(folder) == top else []


def _reset_partial(run: Run) -> None:
    """Remove an unfinished run directory, but only what a run writes."""
    d = run.dir
    names = {p.name for p in d.iterdir()}
    if not all(n in RUN_FILES or n.endswith(".tmp") for n in names):
        raise SpecError(f"{d} holds files a run does not write; move them away to resume this sweep")
    shutil.rmtree(d)


def jobs(todo: list[Run], population: int) -> list[list[Run]]:
    """The runs to do, as jobs: the seeds of one config (every field but the seed equal) in populations of at most
    ``population`` runs where the config allows one, else one run per job. Largest jobs first."""
    from ..algos.population import check_population

    groups: dict[str, list[Run]] = {}
    for r in todo:
        key = without(r.config.to_dict(), "seed", "output")
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(r)
    out: list[list[Run]] = []
    for members in groups.values():
        try:
            check_population([m.config for m in members])
            size = max(1, population)
        except ConfigError:
            size = 1
        out += [members[i : i + size] for i in range(0, len(members), size)]
    return sorted(out, key=len, reverse=True)


def train_many(configs: list[Config], workers: int | None = None, population: int = 16, maths=None) -> list:
    """``sandbox.train`` on every config, ``workers`` processes at a time (default: the number of cores), the seeds
    of one config as populations where they can be (see :func:`jobs`); the results in the order of ``configs``. For
    notebooks and scripts that want a study's results in memory rather than a sweep directory.

    ``maths`` (a :class:`sandbox.Maths`) is the seam every run trains with, recorded in each config's ``maths`` as
    :func:`sandbox.train` records it. With ``workers`` > 1 the worker processes import its functions by that name, so
    they must live in a module (a .py file), not in a notebook: a one-line error says so (``workers=1`` runs them
    here)."""
    import multiprocessing as mp

    from ..runs.seam import load, settle
    from ..training import train_population

    settled = [settle(validate(c), maths) for c in configs]
    seams = {str(i): m for i, (_, m) in enumerate(settled)}  # a job's runs share their config, so their seam
    runs = [Run(str(i), c) for i, (c, _) in enumerate(settled)]
    work = jobs(runs, population)
    workers = workers or os.cpu_count() or 1
    results: dict[str, object] = {}
    if workers == 1:
        for job in work:
            seam, first = seams[job[0].name], job[0].config
            got = train_population([r.config for r in job], seam) if len(job) > 1 else [_train_one(first, seam)]
            results.update({r.name: res for r, res in zip(job, got)})
    else:
        for field, name in sorted({kv for c, _ in settled for kv in c.maths.items()}):
            try:
                load(field, name)  # what each worker will do: a function of __main__ cannot be found there
            except ConfigError as err:
                raise ConfigError(
                    "maths", f"{str(err).removeprefix('--maths: ')} (or train_many(..., workers=1))"
                ) from None
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_train_job, [r.config for r in job]): job for job in work}
            for future in as_completed(futures):
                results.update({r.name: res for r, res in zip(futures[future], future.result())})
    return [results[str(i)] for i in range(len(configs))]


def _train_one(config: Config, maths=None):
    from ..training import train

    return train(config, maths)


def _train_job(configs: list[Config]) -> list:
    """A job of :func:`train_many` in a worker: one torch thread, its results returned in memory."""
    import torch

    torch.set_num_threads(1)
    from ..training import train_population

    return train_population(configs) if len(configs) > 1 else [_train_one(configs[0])]


def run_sweep(
    spec: str | os.PathLike,
    out: str | os.PathLike,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    quiet: bool = False,
    population: int = 16,
    token_file: str | None = None,
) -> dict:
    """Run the sweep; returns counts ``{"total", "skipped", "ran", "failed"}``."""
    return run_sweeps([(spec, out)], workers, backend, address, quiet, population=population, token_file=token_file)


def run_sweeps(
    items: list[tuple[str | os.PathLike, str | os.PathLike]],
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    quiet: bool = False,
    before=None,
    population: int = 16,
    token_file: str | None = None,
) -> dict:
    """Several sweeps ``[(spec, out), ...]`` sharing one pool of workers, in order; returns the counts
    ``{"total", "skipped", "ran", "failed"}`` (and ``"cluster"``, ``{"address", "nodes", "cpus"}``, when a cluster
    trained the runs). ``before()``, if given, runs in a
    background thread of this process while the pool works (the demo prepares a reference model there).
    ``population``: the most seeds of one config trained together (0 or 1: every run on its own). ``backend="ray"``:
    Ray tasks, on a Ray instance started here or on the cluster at ``address`` (``token_file``: its token), each
    returning its run directories to this process, which writes them (:mod:`sandbox.analysis.cluster`)."""
    from .cluster import Backend

    Backend(backend, address, token_file).check()
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {workers}")
    runs: list[Run] = []
    for spec, out in items:  # every config of every spec checked before anything starts or is written
        runs += expand(*load_spec(spec), out)
    statuses = {r.dir: run_status(r) for r in runs}
    different = [d for d, st in statuses.items() if st == "different"]
    if different:
        raise SpecError(
            f"{different[0]} was finished with a different config; use another --out for a changed "
            "sweep (finished runs are never overwritten)"
        )
    todo = [r for r in runs if statuses[r.dir] != "done"]
    with contextlib.ExitStack() as joined:
        ray = cluster = None
        if backend == "ray" and todo:  # joined before anything is written: a wrong address or token leaves no trace
            from .cluster import session

            ray, cluster = joined.enter_context(session(address, token_file, workers, quiet))
        for spec, out in items:
            Path(out).mkdir(parents=True, exist_ok=True)
            if Path(spec).resolve() != (Path(out) / "spec.toml").resolve():
                shutil.copyfile(spec, Path(out) / "spec.toml")  # what was asked, kept with the results
        for r in runs:
            if statuses[r.dir] == "partial":
                _reset_partial(r)
            if staging_dir(r.dir).exists():  # a run directory a driver was writing when it stopped (cluster.land)
                shutil.rmtree(staging_dir(r.dir))
        counts = {"total": len(runs), "skipped": len(runs) - len(todo), "ran": 0, "failed": 0}
        if cluster is not None:
            counts["cluster"] = cluster
        work = jobs(todo, population)
        if not quiet:
            names = ", ".join(Path(spec).name for spec, _ in items) if len(items) <= 3 else f"of {len(items)} specs"
            where = ", ".join(str(out) for _, out in items) if len(items) <= 3 else f"{len(items)} folders"
            batched = sum(len(j) for j in work if len(j) > 1)
            how = f"; {batched} of them in {sum(len(j) > 1 for j in work)} populations" if batched else ""
            print(
                f"sweep {names}: {len(runs)} runs, {counts['skipped']} already finished, {len(todo)} to run{how}, "
                f"{f'{workers} jobs at a time ({backend})' if address is None else 'on the Ray cluster'} -> {where}",
                flush=True,
            )
        helper = None
        if before is not None:
            import threading

            helper = threading.Thread(target=before, daemon=True)
            helper.start()
        if not todo:
            return counts
        from tqdm import tqdm

        bar = tqdm(
            total=len(todo), desc="sweep", unit="run", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True
        )
        failures: list[str] = []

        def done(job: list[Run], error: str | None) -> None:
            bar.update(len(job))
            if error is None:
                counts["ran"] += len(job)
            else:
                counts["failed"] += len(job)
                failures.append(f"{', '.join(r.name for r in job)}: {error}")

        t0 = time.perf_counter()
        try:
            if ray is not None:
                from .cluster import run_jobs

                run_jobs(ray, work, done)
            else:
                _run_local(work, workers, done)
        finally:
            bar.close()
            if helper is not None:
                helper.join()
        if not quiet:
            again = "; run the same command again to redo them (finished runs are kept)"
            print(
                f"{counts['ran']} runs finished in {time.perf_counter() - t0:.0f} s"
                + (f"; {counts['failed']} failed:\n  " + "\n  ".join(failures) + f"\n{again}" if failures else ""),
                flush=True,
            )
        return counts


def _run_local(work: list[list[Run]], workers: int, done) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # each worker starts clean: no torch state inherited
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        futures = {pool.submit(run_job, [r.config.to_dict() for r in job]): job for job in work}
        for future in as_completed(futures):
            job = futures[future]
            try:
                future.result()
                done(job, None)
            except BrokenProcessPool:
                raise SpecError(
                    "a worker process died (killed?); finished runs are kept: run the same sweep again to redo the rest"
                ) from None
            except Exception as err:  # noqa: BLE001 - one run's bug must not stop the others
                done(job, f"{type(err).__name__}: {err}")
    except BaseException:  # Ctrl-C, a dead worker: stop the others now; their unfinished runs are redone next time
        workers_alive = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown clears it
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers_alive:
            proc.terminate()
        raise
    pool.shutdown(wait=True)
