"""What every benchmark shares: the machine line each result names, one run in a fresh interpreter, the median of
runs that all solved, and writing a spec file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys


def in_fresh_process(module: str, call: str, what: str) -> dict:
    """``call`` (an expression on ``module`` imported as ``b``, returning something JSON can write) evaluated in a
    fresh interpreter with one thread, so no measurement inherits another's warm caches; its result. Raises
    ``RuntimeError`` naming ``what`` with the end of the child's stderr when it fails."""
    code = f"import json, {module} as b; print(json.dumps({call}))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_one(system: str, seed: int, max_steps: int) -> dict:
    """One run of ``sandbox.bench.WORKERS[system]`` in a fresh interpreter with one thread."""
    return in_fresh_process("sandbox.bench", f"b.WORKERS[{system!r}]({seed}, {max_steps})", f"{system} seed {seed}")


def _median(xs: list[float | None]) -> float | None:
    """The median of the runs' figures, None unless every run has one (an unsolved run has None)."""
    done = [x for x in xs if x is not None]
    return statistics.median(done) if len(done) == len(xs) and done else None


def machine() -> str:
    """The machine a result was measured on: CPU model, cores, Python and torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, 1 torch thread"
    )


def _write(path, text: str):
    """Write ``text`` to ``path``; returns the path."""
    path.write_text(text)
    return path
