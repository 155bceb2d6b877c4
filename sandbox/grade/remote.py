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
  (:data:`OUTPUT_CAP`), so a submission printing or sending without end neither blocks nor fills anything;
- anything on the channel that is not the answer the grader waits for (a frame it did not ask for, a malformed or
  forged one) ends the process for good: honest code never writes there, so no fresh process is started for it.
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
    """What the submission's function raised, as data: ``info`` (its type, message, and where in its code, in the
    shape of :func:`sandbox.grade.worker.error_info`), made plain strings here whatever the submission sent."""

    def __init__(self, raised: dict):
        at = raised.get("where")
        at = {"line": str(at.get("line")), "source": str(at.get("source", ""))} if isinstance(at, dict) else None
        self.info = {"type": str(raised.get("type")), "message": str(raised.get("message")), "where": at}
        super().__init__(self.info["message"])


class WorkerDied(Ended):
    """The submission's process ended (it exited, crashed, or was ended for running over its time)."""


class Tampered(WorkerDied):
    """The submission's process wrote something on the channel that is not the answer the grader waits for."""


class Process:
    """One run of a submission's process: the channel, read by the waiting thread itself (``select`` with the
    deadline on POSIX: no thread between the submission's reply and the grader), and the capped output."""

    def __init__(self, isolation: Isolation, workdir: Path):
        self.proc = isolation.start(workdir)
        self.buffer, self.output = bytearray(), bytearray()
        self.received = self.output_total = 0
        self.reason: str | None = None
        self.chunks: queue.Queue | None = None
        if os.name == "posix":
            os.set_blocking(self.proc.stdout.fileno(), False)
        else:  # no select on a Windows pipe: a thread reads, at most QUEUED chunks ahead
            self.chunks = queue.Queue(maxsize=QUEUED)
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.chunks.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self._keep), daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := stream.read1(1 << 20):
                sink(chunk)
        sink(b"")

    def _keep(self, chunk: bytes) -> None:
        self.output_total += len(chunk)
        self.output += chunk[: max(OUTPUT_CAP - len(self.output), 0)]

    def _chunk(self, timeout: float) -> bytes | None:
        """What the submission sent next (``b""``: its end), or None when nothing came within ``timeout``."""
        if self.chunks is not None:
            with contextlib.suppress(queue.Empty):
                return self.chunks.get(timeout=timeout)
            return None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return None
        try:
            return os.read(self.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return None
        except (OSError, ValueError):
            return b""

    def send(self, op: str, body: Any, lent: wire.Callables, ok: bool = True) -> None:
        header, buffers = wire.encode(body, lent)
        try:
            wire.write_frame(self.proc.stdin, {"op": op, "ok": ok, "body": header}, buffers)
        except (OSError, ValueError) as err:
            raise WorkerDied(self.why_dead(f"it stopped reading ({err})")) from None

    def receive(self, deadline: float) -> tuple[str, Any, bool]:
        """The next message (op, body, ok), read as it comes; :class:`Timeout` at ``deadline``, :class:`WorkerDied`
        when the process ended, :class:`Tampered` when it sent something that is not a message (a frame too large,
        malformed, or past :data:`MAX_RECEIVED`)."""
        while True:
            try:
                frame = wire.take_frame(self.buffer)
                if frame is not None:
                    message, buffers = frame
                    return str(message.get("op")), wire.decode(message.get("body"), buffers), message.get("ok", True)
            except wire.WireError as err:
                raise self.tampered(f"its process sent something that is not a message of the grader ({err})") from None
            chunk = self._chunk(max(deadline - time.monotonic(), 0.0))
            if chunk is None:
                if time.monotonic() >= deadline:
                    raise Timeout()
                continue
            if not chunk:
                raise WorkerDied(self.why_dead("its process ended"))
            self.received += len(chunk)
            if self.received > MAX_RECEIVED:
                raise self.tampered(f"its process sent more than {MAX_RECEIVED >> 20:,} MB in all and was ended")
            self.buffer += chunk

    def tampered(self, reason: str) -> Tampered:
        """End the process for good: it wrote on the channel what the grader did not ask for."""
        self.kill(f"not run: {reason}")
        return Tampered(self.reason)

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
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)], capture_output=True)
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
    """What runs in the submission's process before its functions can be called (the ``load`` request's body)."""

    kind: str  # "notebook" or "script"
    cells: list[str]
    labels: list[str]
    filename: str
    functions: list[str]
    cell_timeout: float


class RemoteFunctions:
    """The submission's functions, seen from the grader: a mapping of names to callables (only the functions the
    submission defines, :meth:`mapping`), and a clock per test (:meth:`test`)."""

    def __init__(self, isolation: Isolation, load: Load, budget: float):
        self.isolation, self.load, self.budget = isolation, load, budget
        self.budget_end = time.monotonic() + budget
        self.test_end: float | None = None
        self.process: Process | None = None
        self.workdir: Path | None = None
        self.starts = 0
        self.notes: list[str] = []
        self.defined: dict[str, str] | None = None
        self.outputs: list[str] = []
        self.lent = wire.Callables()
        self.until: int | None = None  # after a cell hung: run the cells before it only
        self.broken: str | None = None

    # -- life of the process ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process and load the submission (again, after a restart)."""
        if self.broken is None and self.starts > MAX_RESTARTS:
            self.broken = "not run: the submission's process ended too many times"
        if self.broken:
            raise WorkerDied(self.broken)
        self._check_budget()
        self.starts += 1
        self.workdir = self.isolation.workdir()
        self.process = Process(self.isolation, self.workdir)
        load, cell = self.load, [None]
        try:
            try:
                if (op := self.process.receive(min(time.monotonic() + START_LIMIT, self.budget_end))[0]) != "ready":
                    raise self._tampered(f"its process sent {op!r} where the grader expected 'ready'")
            except Timeout:
                self.close()
                self._check_budget()
                raise WorkerDied(f"its process did not start within {START_LIMIT:g} s") from None
            self.process.send("load", {**dataclasses.asdict(load), "until": self.until}, self.lent)
            try:
                reply = self._reply(time.monotonic() + load.cell_timeout, cell, load.cell_timeout)
            except Timeout:
                if cell[0] is None:
                    self.broken = "not run: the submission could not be loaded within its time"
                    raise WorkerDied(self.broken) from None
                self.until, limit = cell[0], f"{load.cell_timeout:g} s"
                self.notes.append(f"{load.labels[cell[0]]} did not stop at its time limit ({limit}) and was ended "
                                  "with its process; the functions defined before it are graded")  # fmt: skip
                return self.start()
        except WorkerDied as died:
            printed = self.process.text().strip().splitlines() if self.process else []
            self.close()
            if printed and self.defined is None and not isinstance(died, Tampered):
                raise WorkerDied(f"{died} (its last words: {printed[-1][:300]})") from None
            raise
        if not isinstance(reply, dict) or not isinstance(reply.get("defined"), dict):
            raise self._tampered("its process answered the load with something that is not a reply of the grader's")
        if self.defined is None:
            self.notes += [str(n) for n in reply.get("notes", []) if n not in self.notes]
            self.defined = reply["defined"]

    def _check_budget(self) -> None:
        """Past the submission's budget (``--timeout``): end its process, and every later test is not run."""
        if time.monotonic() >= self.budget_end:
            self.broken = self.broken or f"not run: the submission used all of its {self.budget:g} s (--timeout)"
            self.close()
            raise WorkerDied(self.broken)

    def _tampered(self, reason: str) -> Tampered:
        self.broken = str(self.process.tampered(reason))
        return Tampered(self.broken)

    def close(self, reason: str | None = None) -> None:
        """End the process (and everything it started) and remove its working directory. Nothing is asked of it: a
        submission's last words decide nothing."""
        if self.process is not None:
            self.process.kill(reason)
            if out := self.process.text():
                self.outputs.append(out)
            self.process = None
        if self.workdir is not None:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- requests ----------------------------------------------------------------------------------------------

    def _reply(self, deadline: float, progress: list | None = None, per_step: float = 0.0) -> Any:
        """Wait for the reply to the last request, serving callbacks meanwhile; raise :class:`Timeout` at
        ``deadline`` (after ending the process) and :class:`WorkerDied` if it ends. While a notebook loads, each
        cell that starts (``progress``) gets its own ``per_step`` seconds."""
        while True:
            try:
                op, body, ok = self.process.receive(min(deadline + GRACE, self.budget_end + GRACE))
            except Timeout:
                self.close("it ran over its time limit and was ended")
                raise
            except Tampered as tampered:
                self.broken = str(tampered)
                raise
            if op == "reply":
                if not ok:
                    raise WorkerDied(f"its process refused the request: {str(body)[:200]}")
                return body
            if op == "progress" and progress is not None and isinstance(body, dict):
                progress[0], deadline = body.get("cell"), time.monotonic() + per_step
            elif op == "callback" and isinstance(body, dict) and body.get("fn") in self.lent.lent:
                torch.set_rng_state(body["rng"])
                try:
                    value, ok = self.lent.lent[body["fn"]](*body["args"]), True
                except Exception as err:  # noqa: BLE001 - the grader's own stand-in raised: say so to the caller
                    value, ok = f"{type(err).__name__}: {err}", False
                reply = {"value": value, "rng": torch.get_rng_state()} if ok else value
                self.process.send("reply", reply, self.lent, ok=ok)
            else:
                raise self._tampered(f"its process sent {op!r}, which the grader did not ask for")

    def _request(self, op: str, body: dict) -> Any:
        if self.process is None or self.process.proc.poll() is not None:
            self.close()
            self.start()
        self._check_budget()
        end = min(self.test_end or self.budget_end, self.budget_end)
        if time.monotonic() >= end:
            raise Timeout()
        self.process.send(op, {**body, "timeout": end - time.monotonic(), "rng": torch.get_rng_state()}, self.lent)
        try:
            reply = self._reply(end)
        except Timeout:
            self._check_budget()  # the budget, not the test's own limit, ran out: the submission ends
            raise
        if not isinstance(reply, dict) or not isinstance(reply.get("rng"), torch.Tensor):
            raise self._tampered("its process answered with something that is not a reply of the grader's")
        torch.set_rng_state(reply["rng"])
        if reply.get("timeout"):
            raise Timeout()
        if isinstance(raised := reply.get("raised"), dict):
            if raised.get("type") == "NotImplementedError":
                raise NotImplementedError(raised.get("message"))
            raise SubmissionError(raised)
        return reply

    def call(self, name: str, args: tuple) -> Any:
        reply = self._request("call", {"name": name, "args": list(args)})
        for index, value in reply.get("mutated", {}).items():
            _write_back(args[int(index)], value)
        result = reply["result"]
        return _with_gradient(self, reply["handle"], args, result) if reply.get("handle") is not None else result

    def grad(self, handle: int, grads: list) -> list:
        return self._request("grad", {"handle": handle, "grads": grads})["result"]

    @contextlib.contextmanager
    def test(self, seconds: float) -> Iterator[None]:
        """The clock of one test: every call inside shares its ``seconds``."""
        self.test_end = time.monotonic() + seconds
        try:
            yield
        finally:
            self.test_end = None

    def mapping(self) -> dict[str, "RemoteFunction"]:
        self._held = {name: RemoteFunction(self, name) for name, what in self.defined.items() if what == "function"}
        self.lent.names = {id(f): f.name for f in self._held.values()}  # by id: _held keeps them alive
        return self._held


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
            elif value.is_floating_point() == arg.is_floating_point():
                arg.data = value.to(arg.dtype)


class _RemoteGradient(torch.autograd.Function):
    """Outputs computed in the submission's process, joined to the grader's graph: their gradient is asked from the
    submission's process (``torch.autograd.grad`` on its side) when ``backward()`` reaches them."""

    @staticmethod
    def forward(ctx, owner, handle, required, n_inputs, *tensors):
        ctx.owner, ctx.handle, ctx.required = owner, handle, required
        outs = [t.clone() for t in tensors[n_inputs:]]
        ctx.mark_non_differentiable(*[o for o, r in zip(outs, required) if not r])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        wanted = [g.contiguous() if g is not None else None for g, r in zip(grads, ctx.required) if r]
        got = [g if isinstance(g, torch.Tensor) else None for g in ctx.owner.grad(ctx.handle, wanted)]
        return (None, None, None, None, *got, *[None] * len(ctx.required))


def _with_gradient(owner: RemoteFunctions, handle: int, args: tuple, result: Any) -> Any:
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    outs = wire.tensors_in(result)
    required = tuple(bool(t.requires_grad) for t in outs)
    if not inputs or not any(required):
        return result
    joined = iter(_RemoteGradient.apply(owner, handle, required, len(inputs), *inputs, *[t.detach() for t in outs]))

    def rebuild(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return next(joined)
        return type(value)(map(rebuild, value)) if isinstance(value, (tuple, list)) else value

    return rebuild(result)


def make_load(path: Path, functions: tuple[str, ...], cell_timeout: float) -> Load:
    """Read a ``.py`` or ``.ipynb`` submission here (in the grader) into what its process runs. Raises ValueError with
    a one-line reason when the file cannot be read as a notebook or as text."""
    if path.suffix != ".ipynb":
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path.name} could not be read: not UTF-8 text") from None
        return Load("script", [text], [path.name], path.name, list(functions), cell_timeout)
    import nbformat

    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
    except Exception as err:  # noqa: BLE001 - empty, not JSON, not a notebook: all one message
        what = f"not a notebook ({type(err).__name__}: {str(err)[:200]})" if path.stat().st_size else "an empty file"
        raise ValueError(f"{path.name} could not be read: {what}") from None
    code = [(i, "".join(c.get("source", "")) if isinstance(c.get("source"), list) else str(c.get("source", "")))
            for i, c in enumerate(nb.cells, start=1) if c.get("cell_type") == "code"]  # fmt: skip
    labels = [f"cell {i} (code cell {n}, `{next((x for x in src.splitlines() if x.strip()), '')[:50]}`)"
              for n, (i, src) in enumerate(code, start=1)]  # fmt: skip
    return Load("notebook", [src for _, src in code], labels, path.name, list(functions), cell_timeout)
