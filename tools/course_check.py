"""make course-check: every lesson executed in full on this machine, its claims checked, its time recorded.

For each lesson (``notebooks/NN_name.ipynb``, all of them unless named on the command line):

1. full mode on seed set 1: executed, the outputs written into the ``.ipynb`` (what ``make notebooks`` does), but
   only when no claim was contradicted and no cell failed, so a committed lesson never shows a contradiction;
2. full mode on seed set 2 (``SANDBOX_SEED_SET=2``: every seed shifted to a disjoint set), outputs not kept;
3. ``SANDBOX_FAST=1`` on seed set 1 (what ``make test`` runs), outputs not kept, for its time.

Claims run with ``SANDBOX_CLAIMS=report`` (a contradiction is printed and the lesson carries on, so one pass lists
every contradicted sentence) and are collected through ``SANDBOX_CLAIMS_LOG``. The times (wall, and CPU time of the
kernel and its worker processes) go to ``notebooks/timings.json``, with the machine, the date and the load average;
then each lesson's "Running time" paragraph and the course map (``notebooks/README.md``) are rewritten from it, so
the times a student reads are the ones measured. Exit code 1 if any claim was contradicted or any cell failed.

    python tools/course_check.py                  # every lesson, seed sets 1 and 2, FAST timing
    python tools/course_check.py 00 03 --seed-sets 2 --no-fast   # two lessons, set 2 only: nothing written
    python tools/course_check.py --jobs 2         # every lesson, on two cores: two checks, each on half the time
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: run one check at a time
    fcntl = None

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TIMINGS = NOTEBOOKS / "timings.json"
README = NOTEBOOKS / "README.md"
RUNNING_TIME = "**Running time** (`make course-check`"
"""How a generated "Running time" paragraph begins; a lesson without one keeps its own (course-check warns)."""
BEGIN, END = "<!-- course-check: begin -->", "<!-- course-check: end -->"


def lessons(names: list[str]) -> list[Path]:
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return every
    chosen = [p for p in every if any(p.stem == n or p.stem.startswith(f"{n}_") for n in names)]
    unknown = [n for n in names if not any(p.stem == n or p.stem.startswith(f"{n}_") for p in every)]
    if unknown:
        raise SystemExit(f"course-check: no lesson {', '.join(unknown)}; lessons: {', '.join(p.stem for p in every)}")
    return chosen


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute(path: Path, env: dict[str, str], timeout: int) -> tuple[nbformat.NotebookNode, dict]:
    """Run the notebook at ``path`` in a fresh kernel with ``env`` added to the environment. Returns the executed
    notebook and what happened: wall and CPU seconds, the claims (from the log), the error if a cell failed."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        log = Path(tmp) / "claims.jsonl"
        saved = dict(os.environ)
        os.environ.update({**env, "SANDBOX_CLAIMS": "report", "SANDBOX_CLAIMS_LOG": str(log)})
        wall, cpu, error = time.perf_counter(), children_cpu(), None
        try:
            NotebookClient(
                nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
            ).execute()
        except CellExecutionError as e:
            error = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        finally:
            os.environ.clear()
            os.environ.update(saved)
        wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
        claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return nb, {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "claims": claims, "error": error}


def code_hash(lesson: Path) -> str:
    """SHA-256 of the lesson's code cells (from its ``.py``), the part that decides its outputs and its claims: the
    committed outputs stand for the code that made them only while this hash is the one timings.json recorded (a
    prose edit changes no output and needs no new check; a changed code cell does)."""
    import hashlib

    cells = jupytext.read(lesson.with_suffix(".py")).cells
    return hashlib.sha256("\n\n".join(c.source for c in cells if c.cell_type == "code").encode()).hexdigest()


def tally(claims: list[dict]) -> dict[str, int]:
    return {s: sum(c["status"] == s for c in claims) for s in ("held", "contradicted", "skipped")}


def duration(seconds: float) -> str:
    """``"57 s"`` below 90 s, else ``"2.4 min (145 s)"``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def running_time(entry: dict) -> str:
    """The lesson's "Running time" paragraph, from its entry in timings.json (wrapped at 116 characters)."""
    text = (
        f"{RUNNING_TIME} on the machine and the date the [course map](README.md) states): full mode "
        f"{duration(entry['full_s'])} of wall time, {duration(entry['full_cpu_s'])} of CPU time; with "
        f"`SANDBOX_FAST=1`, what `make test` runs, {duration(entry['fast_s'])} (a check that the notebook works: "
        "what it trains is tiny, and its numbers mean nothing). The committed outputs are those of that full run."
    )
    return textwrap.fill(text, 116, break_long_words=False, break_on_hyphens=False)


def rewrite_running_time(lesson: Path, entry: dict) -> bool:
    """Replace the lesson's generated "Running time" paragraph (in the .py and the .ipynb's first cell). False if
    the lesson has none (it keeps its own sentence)."""
    source = lesson.with_suffix(".py")
    pattern = re.compile(re.escape(RUNNING_TIME) + r".*?(?=\n\n|\Z)", re.DOTALL)
    py = jupytext.read(source)
    first = next(c for c in py.cells if c.cell_type == "markdown")
    if not pattern.search(first.source):
        return False
    new = pattern.sub(lambda _: running_time(entry), first.source, count=1)
    if new != first.source:
        first.source = new
        jupytext.write(py, source, fmt="py:percent")
        nb = nbformat.read(lesson, as_version=4)
        next(c for c in nb.cells if c.cell_type == "markdown").source = new
        nbformat.write(nb, lesson)
    return True


PASSES = (
    "full_s",
    "full_cpu_s",
    "seed_set_2_s",
    "seed_set_2_cpu_s",
    "fast_s",
    "load",
    "machine",
    "date",
    "code_sha256",
)
"""What a lesson's entry in timings.json holds once every pass of it succeeded."""


def course_wide(timings: dict) -> dict | None:
    """The course's one machine and date, its load and its times, summed over the lessons' passes: None unless every
    lesson has every pass, all on the same machine and date."""
    entries = timings["lessons"]
    stems = [p.stem for p in lessons([])]
    if set(entries) != set(stems) or not all(set(PASSES) <= entries[s].keys() for s in stems):
        return None
    if len({(e["machine"], e["date"]) for e in entries.values()}) != 1:
        return None
    first = entries[stems[0]]
    full = sum(e["full_s"] for e in entries.values())
    again = sum(e["seed_set_2_s"] for e in entries.values())
    fast = sum(e["fast_s"] for e in entries.values())
    loads = [e["load"] for e in entries.values()]
    return {
        "machine": first["machine"],
        "date": first["date"],
        "load_range": [min(loads), max(loads)],
        "jobs": max(e.get("jobs", 1) for e in entries.values()),
        "full_s": round(full, 1),
        "seed_set_2_s": round(again, 1),
        "fast_s": round(fast, 1),
        "total_s": round(full + again + fast, 1),
    }


def rewrite_course_map(course: dict, timings: dict) -> None:
    """The course map's "full mode" column and its statement of the machine and date, from timings.json."""
    text = README.read_text()
    for stem, entry in timings["lessons"].items():
        row = re.compile(r"^(\| \[[^]]*\]\(" + re.escape(stem) + r"\.ipynb\) \|[^|]*\| )([^|]*)( \|)", re.MULTILINE)
        text = row.sub(lambda m, e=entry: m.group(1) + duration(e["full_s"]) + m.group(3), text)
    low, high = course["load_range"]
    jobs = course.get("jobs", 1)
    own = "no more than the check's own processes make"  # a lesson runs at most two processes at a time
    busy = "a busy machine, so the times are long" if high > 2 * jobs + 0.5 else own
    at_once = f"{jobs} checks at once, " if jobs > 1 else ""
    block = textwrap.fill(
        f"Every lesson's committed outputs, and the times above, come from `make course-check` on {course['date']}, "
        f"on {course['machine']} ({at_once}load average {low:.1f} to {high:.1f} when the lessons started: {busy}). "
        "Full mode "
        f"took {duration(course['full_s'])} for the {len(timings['lessons'])} lessons, the second seed set "
        f"(`SANDBOX_SEED_SET=2`, claims checked, outputs not kept) {duration(course['seed_set_2_s'])}, and "
        f"`SANDBOX_FAST=1` {duration(course['fast_s'])}: the whole check {duration(course['total_s'])}.",
        116,
        break_long_words=False,
        break_on_hyphens=False,
    )
    if BEGIN in text:
        text = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{block}\n{END}", text, flags=re.DOTALL
        )
    README.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: every lesson)")
    parser.add_argument("--seed-sets", nargs="+", type=int, default=[1, 2], help="full-mode seed sets (1 writes)")
    parser.add_argument("--no-fast", action="store_true", help="skip timing SANDBOX_FAST=1")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a cell may take")
    parser.add_argument("--jobs", type=int, default=1, help="checks at once, each on its share of the lessons")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    if args.jobs > 1:
        return in_parallel(lessons(args.lessons), args)
    from sandbox.bench.common import machine

    start = time.perf_counter()
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {"lessons": {}}
    failed, checked, ran = [], 0, {}
    for lesson in lessons(args.lessons):
        entry = dict(timings["lessons"].get(lesson.stem, {}))
        passes = [(f"seed set {k}", {"SANDBOX_FAST": "0", "SANDBOX_SEED_SET": str(k)}) for k in args.seed_sets]
        passes += [] if args.no_fast else [("FAST", {"SANDBOX_FAST": "1", "SANDBOX_SEED_SET": "1"})]
        for name, env in passes:
            print(f"{lesson.stem}, {name}: running ...", flush=True)
            load = os.getloadavg()[0]
            nb, run = execute(lesson, env, args.timeout)
            counts = tally(run["claims"])
            checked += counts["held"] + counts["contradicted"]
            print(f"{lesson.stem}, {name}: {run['wall_s']:.0f} s wall, {run['cpu_s']:.0f} s CPU; claims {counts}")
            for c in run["claims"]:
                if c["status"] == "contradicted":
                    print(f"    CONTRADICTED: {c['sentence']!r} (this run: {c['measured']})")
            if run["error"]:
                print(f"    FAILED: {run['error']}")
            fields = {
                "seed set 1": ("full_s", "full_cpu_s", "claims", "load", "machine", "date"),
                "seed set 2": ("seed_set_2_s", "seed_set_2_cpu_s", "seed_set_2_claims"),
                "FAST": ("fast_s",),
            }
            if run["error"] or counts["contradicted"]:
                failed.append(f"{lesson.stem} ({name})")
                for key in fields.get(name, ()):  # no stale figure stands for a pass that failed
                    entry.pop(key, None)
                continue
            if name == "seed set 1":
                nbformat.write(nb, lesson)  # the committed outputs: only from a run that contradicted nothing
                entry.update(full_s=run["wall_s"], full_cpu_s=run["cpu_s"], claims=counts, load=round(load, 1))
                entry.update(code_sha256=code_hash(lesson), jobs=int(os.environ.get("COURSE_CHECK_JOBS", "1")))
                entry.update(machine=machine(), date=dt.date.today().isoformat())
            elif name == "seed set 2":
                entry.update(seed_set_2_s=run["wall_s"], seed_set_2_cpu_s=run["cpu_s"], seed_set_2_claims=counts)
            elif name == "FAST":
                entry.update(fast_s=run["wall_s"])
        ran[lesson.stem] = entry
        if {"full_s", "fast_s"} <= entry.keys() and not rewrite_running_time(lesson, entry):
            print(f"    note: {lesson.stem} has no generated 'Running time' paragraph; its own was left as it is")
    with open(Path(tempfile.gettempdir()) / "sandbox-course-check.lock", "a") as lock:  # two checks may end together
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        write_timings(ran)
    print(
        f"course-check: {duration(time.perf_counter() - start)}; "
        + (f"FAILED: {', '.join(failed)}" if failed else f"every claim held ({checked} checked)")
    )
    return 1 if failed else 0


def shares(chosen: list[Path], jobs: int) -> list[list[Path]]:
    """The lessons split into ``jobs`` shares of about equal time: the longest first, each to the share with the
    least so far, by the full-mode times in timings.json (a lesson never timed counts as the longest)."""
    timed = json.loads(TIMINGS.read_text())["lessons"] if TIMINGS.exists() else {}
    cost = {p: timed.get(p.stem, {}).get("full_s", 1e9) + timed.get(p.stem, {}).get("seed_set_2_s", 0) for p in chosen}
    parts: list[list[Path]] = [[] for _ in range(min(jobs, len(chosen)))]
    totals = [0.0] * len(parts)
    for lesson in sorted(chosen, key=cost.get, reverse=True):
        i = totals.index(min(totals))
        parts[i].append(lesson)
        totals[i] += cost[lesson]
    return [sorted(part) for part in parts]


def in_parallel(chosen: list[Path], args: argparse.Namespace) -> int:
    """Run one check per share of the lessons, each in a process of its own (one lesson at a time each: a lesson's
    own runs mostly use one core), their output interleaved line by line; 1 if any of them failed."""
    import subprocess

    options = ["--seed-sets", *map(str, args.seed_sets), "--timeout", str(args.timeout)] + ["--no-fast"] * args.no_fast
    children = [
        subprocess.Popen(
            [sys.executable, __file__, *[p.stem for p in part], *options],
            env={**os.environ, "COURSE_CHECK_JOBS": str(args.jobs)},
        )
        for part in shares(chosen, args.jobs)
    ]
    return max(child.wait() for child in children)


def write_timings(ran: dict[str, dict]) -> None:
    """Merge the entries of the lessons this check ran into timings.json as it is now (another check, of other
    lessons, may have written it since this one started), then restate the course map if every lesson is in."""
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {"lessons": {}}
    timings["lessons"].update(ran)
    timings["lessons"] = dict(sorted(timings["lessons"].items()))
    course = course_wide(timings)
    if course is not None:  # every lesson checked on one machine and date: the course map says which
        timings["course"] = course
        rewrite_course_map(course, timings)
    else:
        timings.pop("course", None)
    TIMINGS.write_text(json.dumps(timings, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
