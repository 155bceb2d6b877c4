"""The grader's side of a submission's process: start it, load the notebook in it, and call its functions as if they
were local, with every limit enforced from here.

:class:`RemoteFunctions` is the mapping the tests receive (``fns["gae"](...)``). A call sends the inputs (drawn here)
and torch's random state to the submission's process, and brings back the output, the random state after the call,
any input the function changed in place, and, when an output carries a gradient, a handle through which
``backward()`` here asks the submission's process for the gradient. A callable handed to the function (hw5's
``draw``) stays here: the submission calls it back through the channel. The training runs of the integration tests
happen here too, calling the submission's functions one call at a time. So the tests read exactly as they would with
local functions, and the expected values never leave this process.

Limits, all enforced here:

- each test has its own time limit: the submission's process stops a call that runs over (an alarm), and a call
  that still has not answered a few seconds later ends the process (and every process it started); the next test
  starts a fresh one (at most :data:`MAX_RESTARTS` times);
- the whole submission has a budget (``--timeout``), after which its remaining tests are not run;
- what it sends is capped: each message (:data:`sandbox.grade.wire.MAX_FRAME`), what is read ahead (a full pipe makes
  it wait) and all of it together (:data:`MAX_RECEIVED`); what it prints is read as it comes and capped
  (:data:`OUTPUT_CAP`), so a submission printing or sending without end neither blocks nor fills anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from . import wire
from .core import Ended, Timeout
from .isolation import Isolation

OUTPUT_CAP = 64 * 1024
"""Bytes of a submission's printed output that are kept (the rest is counted and dropped)."""
QUEUED = 4
"""Chunks read ahead of the grader on Windows (elsewhere none: a full pipe makes the submission wait)."""
MAX_RECEIVED = 4 << 30
"""Bytes a submission's process may send in all (a hw5 training run sends about 50 MB); past them it is ended."""
START_LIMIT = 120.0
"""Seconds a submission's process may take to start (import torch) on a busy machine."""
GRACE = 5.0
"""Seconds past a time limit before the grader ends a process that did not stop by itself."""
MAX_RESTARTS = 3


class SubmissionError(Exception):
    """What the submission's function raised, as data: ``type_name``, the message, and where in its code."""

    def __init__(self, type_name: str, message: str, where: dict | None):
        super().__init__(message)
        self.type_name, self.message, self.where_ = type_name, message, where

    def where(self) -> str:
        if not self.where_:
            return ""
        src = f" `{self.where_['source']}`" if self.where_.get("source") else ""
        return f" (in your code, line {self.where_['line']}:{src})"


class WorkerDied(Ended):
    """The submission's process ended (it exited, crashed, or was ended for running over its time)."""


class Process:
    """One run of a submission's process: the channel, read by the waiting thread itself (``select`` with the
    deadline on POSIX: no thread between the submission's reply and the grader), and the capped output."""

    def __init__(self, isolation: Isolation, workdir: Path):
        self.proc = isolation.start(workdir)
        self.buffer = bytearray()
        self.received = 0
        self.output = bytearray()
        self.output_total = 0
        self.reason: str | None = None
        self.chunks: queue.Queue | None = None
        if os.name == "posix":
            os.set_blocking(self.proc.stdout.fileno(), False)
        else:  # no select on a Windows pipe: a thread reads, at most QUEUED chunks ahead
            self.chunks = queue.Queue(maxsize=QUEUED)
            threading.Thread(target=self._read_chunks, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_chunks(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.proc.stdout.read1(1 << 20):
                self.chunks.put(chunk)
        self.chunks.put(b"")

    def _chunk(self, timeout: float) -> bytes | None:
        """What the submission sent next (``b""``: its end), or None when nothing came within ``timeout``."""
        if self.chunks is not None:
            try:
                return self.chunks.get(timeout=timeout)
            except queue.Empty:
                return None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return None
        try:
            return os.read(self.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return None
        except (OSError, ValueError):
            return b""

    def _drain(self) -> None:
        try:
            while chunk := self.proc.stderr.read1(1 << 16):
                self.output_total += len(chunk)
                if len(self.output) < OUTPUT_CAP:
                    self.output += chunk[: OUTPUT_CAP - len(self.output)]
        except (OSError, ValueError):
            pass

    def send(self, op: str, body: Any, lent: wire.Callables, ok: bool = True) -> None:
        header, buffers = wire.encode(body, lent)
        try:
            wire.write_frame(self.proc.stdin, {"op": op, "ok": ok, "body": header}, buffers)
        except (OSError, ValueError) as err:
            raise WorkerDied(self.why_dead(f"it stopped reading ({err})")) from None

    def receive(self, deadline: float) -> tuple[dict, list[bytes]]:
        """The next message, read as it comes; :class:`Timeout` at ``deadline``, :class:`WorkerDied` when the process
        ended or sent something that is not a message (a frame too large, malformed, or past :data:`MAX_RECEIVED`)."""
        while True:
            try:
                frame = wire.take_frame(self.buffer)
            except wire.WireError as err:
                self.kill(f"its process sent something that is not a message of the grader ({err})")
                raise WorkerDied(self.reason) from None
            if frame is not None:
                return frame
            chunk = self._chunk(max(deadline - time.monotonic(), 0.0))
            if chunk is None:
                if time.monotonic() >= deadline:
                    raise Timeout()
                continue
            if not chunk:
                raise WorkerDied(self.why_dead("its process ended"))
            self.received += len(chunk)
            if self.received > MAX_RECEIVED:
                self.kill(f"its process sent more than {MAX_RECEIVED >> 20:,} MB in all and was ended")
                raise WorkerDied(self.reason)
            self.buffer += chunk

    def why_dead(self, default: str) -> str:
        if self.reason:
            return self.reason
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return default
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return f"its process was ended by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        return f"its process exited with code {code}"

    def kill(self, reason: str | None = None) -> None:
        """End the process and everything it started (its process group; with bwrap, its PID namespace)."""
        self.reason = self.reason or reason
        if self.proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)], capture_output=True)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def text(self) -> str:
        text = self.output.decode(errors="replace")
        if self.output_total > len(self.output):
            text += f"\n[... {self.output_total - len(self.output):,} more bytes of output not kept]"
        return text


@dataclasses.dataclass
class Load:
    """What runs in the submission's process before its functions can be called."""

    kind: str  # "notebook" or "script"
    cells: list[str]
    labels: list[str]
    filename: str
    functions: tuple[str, ...]
    cell_timeout: float


class RemoteFunctions:
    """The submission's functions, seen from the grader: a mapping of names to callables (only the functions the
    submission defines), and a clock per test (:meth:`test`)."""

    def __init__(self, isolation: Isolation, load: Load, budget: float):
        self.isolation, self.load_request = isolation, load
        self.budget_end = time.monotonic() + budget
        self.budget = budget
        self.test_end: float | None = None
        self.process: Process | None = None
        self.workdir: Path | None = None
        self.starts = 0
        self.loaded = False
        self.notes: list[str] = []
        self.defined: dict[str, str] = {}
        self.outputs: list[str] = []
        self.lent = wire.Callables()
        self.until: int | None = None  # after a cell hung: run the cells before it only
        self.broken: str | None = None

    # -- life of the process ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process and load the submission (again, after a restart)."""
        if self.broken:
            raise WorkerDied(self.broken)
        if self.starts > MAX_RESTARTS:
            self.broken = "not run: the submission's process ended too many times"
            raise WorkerDied(self.broken)
        self._check_budget()
        self.starts += 1
        self.workdir = self.isolation.workdir()
        self.process = Process(self.isolation, self.workdir)
        load = self.load_request
        try:
            self._expect("ready", min(time.monotonic() + START_LIMIT, self.budget_end))
            body = {"kind": load.kind, "cells": load.cells, "labels": load.labels, "filename": load.filename,
                    "functions": list(load.functions), "cell_timeout": load.cell_timeout}  # fmt: skip
            if self.until is not None:
                body["until"] = self.until
                body["until_note"] = f"{load.labels[self.until]} and the cells after it were not run"
            self.process.send("load", body, self.lent)
            cell: list = [None]
            try:
                reply = self._reply(time.monotonic() + load.cell_timeout, progress=cell, per_step=load.cell_timeout)
            except Timeout:
                if cell[0] is None:
                    self.broken = "not run: the submission could not be loaded within its time"
                    raise WorkerDied(self.broken) from None
                self.until = cell[0]
                self.notes.append(
                    f"{load.labels[cell[0]]} did not stop at its time limit ({load.cell_timeout:g} s) "
                    "and was ended with its process; the functions defined before it are graded"
                )
                return self.start()
        except Timeout:
            self._end(None)
            self._check_budget()
            raise WorkerDied(f"its process did not start within {START_LIMIT:g} s") from None
        except WorkerDied as died:
            printed = self.process.text().strip().splitlines() if self.process else []
            self._end(None)
            if printed and not self.loaded:
                raise WorkerDied(f"{died} (its last words: {printed[-1][:300]})") from None
            raise
        if not self.loaded:
            self.notes += [n for n in reply["notes"] if n not in self.notes]
            self.defined = reply["defined"]
            self.loaded = True

    def _check_budget(self) -> None:
        """Past the submission's budget (``--timeout``): end its process, and every later test is not run."""
        if time.monotonic() >= self.budget_end:
            self.broken = self.broken or f"not run: the submission used all of its {self.budget:g} s (--timeout)"
            self._end(None)
            raise WorkerDied(self.broken)

    def _wait(self, deadline: float) -> Any:
        """:meth:`_reply`, where running into the budget (not the test's own limit) ends the submission."""
        try:
            return self._reply(deadline)
        except Timeout:
            self._check_budget()
            raise

    def _expect(self, op: str, deadline: float) -> dict:
        message, buffers = self.process.receive(deadline)
        if message.get("op") != op:
            raise WorkerDied(f"its process sent {message.get('op')!r} where the grader expected {op!r}")
        return wire.decode(message.get("body"), buffers)

    def ensure(self) -> Process:
        """The running process, started (or started again, after it ended) if need be."""
        if self.process is None or self.process.proc.poll() is not None:
            self._end(None)
            self.start()
        return self.process

    def _end(self, reason: str | None) -> None:
        if self.process is not None:
            self.process.kill(reason)
            out = self.process.text()
            if out:
                self.outputs.append(out)
            self.process = None
        if self.workdir is not None:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def close(self) -> None:
        """End the process (and everything it started) and remove its working directory. Nothing is asked of it: a
        submission's last words decide nothing."""
        self._end(None)

    # -- requests ----------------------------------------------------------------------------------------------

    def _reply(self, deadline: float, progress: list | None = None, per_step: float | None = None) -> Any:
        """Wait for the reply to the last request, serving callbacks meanwhile; raise :class:`Timeout` at
        ``deadline`` (after ending the process) and :class:`WorkerDied` if it ends. While a notebook loads, each
        cell that starts (``progress``) gets its own ``per_step`` seconds."""
        while True:
            try:
                message, buffers = self.process.receive(min(deadline + GRACE, self.budget_end + GRACE))
            except Timeout:
                self._end("it ran over its time limit and was ended")
                raise
            op = message.get("op")
            body = wire.decode(message.get("body"), buffers)
            if op == "reply":
                if not message.get("ok", True):
                    raise WorkerDied(f"its process refused the request: {body}")
                return body
            if op == "progress" and progress is not None:
                progress[0] = body["cell"]
                deadline = time.monotonic() + per_step
            elif op == "callback":
                self._callback(body)

    def _callback(self, body: dict) -> None:
        fn = self.lent.lent.get(body["fn"])
        torch.set_rng_state(body["rng"])
        try:
            value, ok = fn(*body["args"]), True
        except Exception as err:  # noqa: BLE001 - the grader's own stand-in raised: say so to the caller
            value, ok = f"{type(err).__name__}: {err}", False
        self.process.send("reply", {"value": value, "rng": torch.get_rng_state()} if ok else value, self.lent, ok=ok)

    def call(self, name: str, args: tuple) -> Any:
        process = self.ensure()
        self._check_budget()
        now = time.monotonic()
        end = min(self.test_end or self.budget_end, self.budget_end)
        if now >= end:
            raise Timeout()
        process.send("call", {"name": name, "args": list(args), "rng": torch.get_rng_state(),
                              "timeout": end - now}, self.lent)  # fmt: skip
        body = self._wait(end)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("rng"), torch.Tensor)
            or body["rng"].dtype != torch.uint8
        ):
            self._end("it answered a call with something that is not a reply of the grader's")
            raise WorkerDied("its process answered a call with something that is not a reply of the grader's")
        torch.set_rng_state(body["rng"])
        if body.get("timeout"):
            raise Timeout()
        if "raised" in body:
            r = body["raised"]
            if r["type"] == "NotImplementedError":
                raise NotImplementedError(r["message"])
            raise SubmissionError(r["type"], r["message"], r.get("where"))
        for index, value in body.get("mutated", {}).items():
            _write_back(args[int(index)], value)
        result = body["result"]
        if body.get("handle") is not None:
            result = _with_gradient(self, body["handle"], args, result)
        return result

    def grad(self, handle: int, grads: list) -> list:
        process = self.ensure()
        process.send("grad", {"handle": handle, "grads": grads}, self.lent)
        return self._wait(min(self.test_end or self.budget_end, self.budget_end))["result"]

    @contextlib.contextmanager
    def test(self, seconds: float) -> Iterator[None]:
        """The clock of one test: every call inside shares its ``seconds``."""
        self.test_end = time.monotonic() + seconds
        try:
            yield
        finally:
            self.test_end = None

    @property
    def _functions(self) -> dict[str, "RemoteFunction"]:
        return {name: RemoteFunction(self, name) for name, what in self.defined.items() if what == "function"}

    def mapping(self) -> dict[str, "RemoteFunction"]:
        funcs = self._functions
        self.lent.names = {id(f): f.name for f in funcs.values()}
        self._held = funcs  # keep them alive: the names map is by id
        return funcs


class RemoteFunction:
    """One of the submission's functions; calling it calls it in the submission's process."""

    def __init__(self, owner: RemoteFunctions, name: str):
        self.owner, self.name = owner, name
        self.__name__ = name

    def __call__(self, *args):
        return self.owner.call(self.name, args)

    def __deepcopy__(self, memo):
        return self  # a network copied during training still calls the submission's function

    def __repr__(self) -> str:
        return f"<the submission's {self.name}>"


def _write_back(arg: Any, value: Any) -> None:
    """An input the submission's function changed in place is changed here too (so "inputs unchanged" tests see it)."""
    if isinstance(arg, torch.Tensor) and isinstance(value, torch.Tensor):
        with torch.no_grad():
            if arg.shape == value.shape and arg.dtype == value.dtype:
                arg.copy_(value)
            else:
                arg.data = value.to(arg.dtype) if value.is_floating_point() == arg.is_floating_point() else arg.data


def _rebuild(value: Any, tensors: Iterator[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return next(tensors)
    if isinstance(value, tuple):
        return tuple(_rebuild(v, tensors) for v in value)
    if isinstance(value, list):
        return [_rebuild(v, tensors) for v in value]
    return value


class _RemoteGradient(torch.autograd.Function):
    """Outputs computed in the submission's process, joined to the grader's graph: their gradient is asked from the
    submission's process (``torch.autograd.grad`` on its side) when ``backward()`` reaches them."""

    @staticmethod
    def forward(ctx, owner, handle, required, n_inputs, *tensors):
        ctx.owner, ctx.handle, ctx.required, ctx.n_inputs = owner, handle, required, n_inputs
        outs = [t.clone() for t in tensors[n_inputs:]]
        ctx.mark_non_differentiable(*[o for o, r in zip(outs, required) if not r])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        wanted = [g.contiguous() if g is not None else None for g, r in zip(grads, ctx.required) if r]
        got = ctx.owner.grad(ctx.handle, wanted)
        got = [g if isinstance(g, torch.Tensor) else None for g in got]
        return (None, None, None, None, *got, *[None] * len(ctx.required))


def _with_gradient(owner: RemoteFunctions, handle: int, args: tuple, result: Any) -> Any:
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    outs = wire.tensors_in(result)
    required = tuple(bool(t.requires_grad) for t in outs)
    if not inputs or not any(required):
        return result
    joined = _RemoteGradient.apply(owner, handle, required, len(inputs), *inputs, *[t.detach() for t in outs])
    return _rebuild(result, iter(joined))


def make_load(path: Path, functions: tuple[str, ...], cell_timeout: float) -> Load:
    """Read a ``.py`` or ``.ipynb`` submission here (in the grader) into what its process runs. Raises ValueError with
    a one-line reason when the file cannot be read as a notebook or as text."""
    if path.suffix == ".ipynb":
        import nbformat

        try:
            nb = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
        except Exception as err:  # noqa: BLE001 - empty, not JSON, not a notebook: all one message
            size = path.stat().st_size
            what = "an empty file" if size == 0 else f"not a notebook ({type(err).__name__}: {str(err)[:200]})"
            raise ValueError(f"{path.name} could not be read: {what}") from None
        cells, labels, code_index = [], [], 0
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code":
                continue
            code_index += 1
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            first = next((line for line in source.splitlines() if line.strip()), "")
            cells.append(source)
            labels.append(f"cell {index + 1} (code cell {code_index}, `{first[:50]}`)")
        return Load("notebook", cells, labels, path.name, functions, cell_timeout)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} could not be read: not UTF-8 text") from None
    return Load("script", [text], [path.name], path.name, functions, cell_timeout)
