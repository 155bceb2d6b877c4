"""Grading a submission: a ``.py`` file or a notebook, executed in a fresh Jupyter kernel (nbclient), graded where its
functions live; or a folder of them.

Each submission runs in its own kernel, started with this interpreter and ``SANDBOX_FAST=1`` (the homework notebooks'
training cells are short) and ``SANDBOX_GRADING=1`` (their ``check(...)`` cells print one line instead of running the
tests: the grader runs them once, after the last cell). A notebook's cells run in order, as "Run all" would; a
``.py`` file runs as one script. If a cell (or the script) raises, the report names it and the functions defined
up to that point are graded. Then one more cell grades the functions the namespace holds and hands the report back
as JSON.
Our training runs that the integration checks compare with are shared through a cache file, so a folder of
submissions trains them once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .core import Report, Result

MARK = "<<sandbox-grade-report>>"
CELL_TIMEOUT = 600
SUFFIXES = (".py", ".ipynb")


def grade_in_namespace(
    key: str, namespace: dict, hidden: str | None, cache: str | None, submission: str, notes: list[str]
) -> str:
    """Run inside the submission's kernel: grade the functions ``namespace`` defines; the report as JSON."""
    from . import assignment, grade_functions
    from .integration import load_references, save_references

    if cache and Path(cache).is_file():
        load_references(cache)
    a = assignment(key)
    functions = {name: namespace.get(name) if callable(namespace.get(name)) else None for name in a.functions}
    report = grade_functions(key, functions, hidden=hidden, submission=submission, notes=notes)
    if cache:
        save_references(cache)
    return json.dumps(report.to_json())


def report_from_json(blob: dict) -> Report:
    results = [
        Result(
            t["name"],
            t["kind"],
            tuple(t["functions"]),
            t["max_score"],
            t["score"],
            t["output"],
            t["seconds"],
            t.get("visibility", "visible"),
        )  # fmt: skip
        for t in blob["tests"]
    ]
    return Report(blob["assignment"], blob["title"], results, blob["submission"], blob["notes"], blob["seconds"])


def grade_file(key: str, path: str | Path, hidden: str | None = None, cache: str | None = None,
               timeout: float = CELL_TIMEOUT) -> Report:  # fmt: skip
    """Grade one ``.py`` or ``.ipynb`` submission in a fresh kernel."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    from . import assignment

    path = Path(path).resolve()
    start = time.perf_counter()
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code"]
    else:
        nb = nbformat.v4.new_notebook()
        source = f"exec(compile(open({str(path)!r}).read(), {str(path)!r}, 'exec'))"
        nb.cells = [nbformat.v4.new_code_cell(source)]
        cells = list(nb.cells)
    for cell in cells:
        cell.outputs = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp) / "kernels" / "sandbox-grade"
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "sandbox grade", "language": "python"}  # fmt: skip
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
        km = KernelManager(kernel_name="sandbox-grade", kernel_spec_manager=specs)
        client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=False,
                                resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
        env = {**os.environ, "SANDBOX_FAST": "1", "SANDBOX_GRADING": "1", "MPLBACKEND": "Agg"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(path.parent), env.get("PYTHONPATH")) if p)
        try:
            with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):
                for cell in cells:
                    index = nb.cells.index(cell)
                    try:
                        client.execute_cell(cell, index)
                    except CellExecutionError as err:
                        notes.append(_stopped(path, nb, cell, err))
                        break
                    except TimeoutError:
                        notes.append(f"{_where(path, nb, cell)} ran longer than {timeout:g} s and was stopped; the "
                                     "functions defined up to that point are graded")  # fmt: skip
                        km.interrupt_kernel()
                        break
                code = (
                    "from sandbox.grade.submission import grade_in_namespace as _sandbox_grade\n"
                    f"print({MARK!r} + _sandbox_grade({key!r}, globals(), {hidden!r}, {cache!r}, "
                    f"{path.name!r}, {notes!r}))"
                )
                grading = nbformat.v4.new_code_cell(code)
                nb.cells.append(grading)
                client.execute_cell(grading, len(nb.cells) - 1)
        except DeadKernelError as err:
            return _failed(assignment(key), path, notes + [f"the kernel died ({err}): nothing could be graded"], start)
        except CellExecutionError as err:
            return _failed(assignment(key), path, notes + [f"the grader could not run: {err.ename}: {err.evalue}"],
                           start)  # fmt: skip
    text = "".join(o.get("text", "") for o in grading.outputs if o.get("output_type") == "stream")
    line = next((x for x in text.splitlines() if x.startswith(MARK)), None)
    if line is None:
        return _failed(assignment(key), path, notes + ["the grading cell printed no report"], start)
    report = report_from_json(json.loads(line[len(MARK) :]))
    report.seconds = time.perf_counter() - start
    return report


def _where(path: Path, nb: Any, cell: Any) -> str:
    if path.suffix != ".ipynb":
        return path.name
    index = nb.cells.index(cell)
    code_index = [c for c in nb.cells if c.cell_type == "code"].index(cell) + 1
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index + 1} (code cell {code_index}, `{first[:50]}`)"


def _stopped(path: Path, nb: Any, cell: Any, err: Any) -> str:
    where = _where(path, nb, cell)
    line = ""
    if path.suffix != ".ipynb":  # the script's line, from the traceback (ANSI colours removed)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(err, "traceback", "")) + "\n" + str(err))
        found = re.findall(re.escape(path.name) + r"(?::|\"?, line )(\d+)", plain)
        line = f" at line {found[-1]}" if found else ""
    return (
        f"the submission stopped in {where}{line} with {err.ename}: {err.evalue}; the functions defined up to that "
        "point are graded"
    )


def _failed(a, path: Path, notes: list[str], start: float) -> Report:
    tests = a.build()
    results = [Result(t.name, t.kind, t.functions, t.points, 0.0, "not graded: " + notes[-1], 0.0) for t in tests]
    return Report(a.key, a.title, results, path.name, notes, time.perf_counter() - start)


def submissions_in(folder: str | Path) -> list[Path]:
    """The ``.py`` and ``.ipynb`` files in ``folder`` and below, skipping hidden folders and checkpoints."""
    folder = Path(folder)
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts)
    ]
    return sorted(found)
