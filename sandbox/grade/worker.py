"""The submission's process: it runs the student's notebook or script, then answers the grader's requests (call this
function on these inputs, give the gradient of that call) and nothing else. Nothing here decides a score: the
grader draws the inputs, receives the outputs as data (:mod:`sandbox.grade.wire`) and compares them in its own
process, where the expected values live.

It never runs inside the sandbox package. The grader copies this file and ``wire.py`` into a folder of its own, the
*student's view* (:mod:`sandbox.grade.isolation`), next to the few modules a submission may import (the shim of
:mod:`sandbox.grade.shim` as ``sandbox``, and ``sandbox.plots``), and starts Python there with ``-I -S`` and a
``sys.path`` of that folder and the third-party packages: no reference implementation is on the disk it sees (with
bwrap) or in its memory.

:func:`main` first drops root to the unprivileged user the grader names, then sets the resource limits (memory,
processes, CPU time, file size), both before any student code runs; then it moves the channel (its stdin and
stdout) to private descriptors, so that what the student prints goes to stderr, which the grader reads and caps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

VIEW_DIR = Path(__file__).resolve().parents[1]


class Timeout(BaseException):
    """A time limit ran out: a request's here, a test's in the grader (:mod:`sandbox.grade.core` raises this one too).
    A BaseException, so that ``except Exception`` cannot hide it."""


@contextlib.contextmanager
def alarm(seconds: float | None):
    """Raise :class:`Timeout` after ``seconds`` (POSIX, main thread); elsewhere no limit here: the submission's
    process then has only the grader's deadline, which ends it."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _expired(signum, frame):
    raise Timeout()


# --- the student's code --------------------------------------------------------------------------------------------

MAGICS = {"matplotlib", "time", "timeit", "config", "load_ext", "autoreload", "precision", "who", "whos"}
"""Line magics that run while grading; the others (``%run``, ``%pip``, ``%%bash``, ``!cmd``...) print a note."""


def make_shell():
    """An IPython shell without a kernel, for notebooks (magics and ``display`` as in Jupyter), with shell escapes
    and most magics turned into a printed note."""
    from IPython.core.interactiveshell import InteractiveShell

    class GradingShell(InteractiveShell):
        def enable_gui(self, gui=None):
            return None

        def enable_matplotlib(self, gui=None):
            return None, None

        def system(self, cmd):
            print(f"(not run while grading: !{cmd})")

        def getoutput(self, cmd, split=True, depth=0):
            print(f"(not run while grading: !{cmd})")
            return []

        def run_line_magic(self, magic_name, line, _stack_depth=1):
            if magic_name not in MAGICS or magic_name == "matplotlib":
                print(f"(not run while grading: %{magic_name} {line})")
                return None
            return super().run_line_magic(magic_name, line, _stack_depth + 1)

        def run_cell_magic(self, magic_name, line, cell):
            if magic_name not in ("time", "timeit", "capture"):
                print(f"(not run while grading: %%{magic_name} {line})")
                return None
            return super().run_cell_magic(magic_name, line, cell)

    shell = GradingShell.instance(colors="nocolor")
    shell.history_manager.enabled = False
    return shell


def error_info(err: BaseException, filename: str | None = None) -> dict:
    """An exception as data: its type, message (capped) and the last line of the student's code it passed (a frame
    outside the package, the standard library and the third-party packages: the grader uses it too, on a learner's
    function called in its own process by ``check``)."""
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if not f.filename.startswith((str(VIEW_DIR), str(Path(traceback.__file__).parent)))
           and "site-packages" not in f.filename and "<frozen" not in f.filename]  # fmt: skip
    where = None
    if own:
        f = own[-1]
        label = "your code" if filename is None or f.filename != filename else filename
        where = {"line": f.lineno, "source": (f.line or "").strip()[:200], "label": label}
    message = str(err)
    if len(message) > 500:
        message = message[:500] + f" [... {len(message) - 500:,} more characters]"
    return {"type": type(err).__name__, "message": message, "where": where}


class Submission:
    """The student's namespace, and the grader's requests served on it."""

    def __init__(self):
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.handles: dict[int, tuple[list, list]] = {}
        self.next_handle = 0

    def load(self, msg: dict, channel: "Channel") -> dict:
        """Run the cells in order, as "Run all" would: the first cell that raises stops the run (a cell stopped only
        by a piece of the package that grading does not offer is noted and the run goes on)."""
        notes, stopped = [], None
        cells, labels = msg["cells"], msg["labels"]
        notebook = msg["kind"] == "notebook"
        if notebook:
            self.namespace = (shell := make_shell()).user_ns
        for i, (source, label) in enumerate(zip(cells, labels)):
            if msg.get("until") is not None and i >= msg["until"]:
                notes.append(f"{label} and the cells after it were not run")
                stopped = i
                break
            channel.send("progress", {"cell": i})
            started = time.perf_counter()
            try:
                with alarm(msg["cell_timeout"]):
                    if notebook:
                        result = shell.run_cell(source, store_history=False, silent=False)
                        err = result.error_in_exec or result.error_before_exec
                    else:
                        err = None
                        exec(compile(source, msg["filename"], "exec", dont_inherit=True), self.namespace)
            except BaseException as other:  # noqa: BLE001 - the script's own exception ends it, as "Run all" would
                err = other
            if type(err).__name__ == "NotOffered":
                notes.append(f"{label} stopped at {err}; the cells after it ran")
            elif err is not None:
                notes.append(self._stopped(label, err, time.perf_counter() - started, msg))
                stopped = i
                break
        defined = {}
        for name in msg["functions"]:
            fn = self.namespace.get(name)
            defined[name] = "missing" if fn is None else ("function" if callable(fn) else f"a {type(fn).__name__}")
        return {"defined": defined, "notes": notes, "stopped": stopped}

    @staticmethod
    def _stopped(label: str, err: BaseException, seconds: float, msg: dict) -> str:
        if isinstance(err, Timeout):
            return (f"{label} ran longer than {msg['cell_timeout']:g} s and was stopped; the functions defined up to "
                    "that point are graded")  # fmt: skip
        if isinstance(err, SyntaxError):
            where = f" at line {err.lineno}" if err.lineno else ""
            return (f"the submission stopped in {label}{where} with SyntaxError: {err.msg}; the functions defined up "
                    "to that point are graded")  # fmt: skip
        info = error_info(err, msg.get("filename"))
        line = f" at line {info['where']['line']}" if info["where"] and msg["kind"] == "script" else ""
        return (f"the submission stopped in {label}{line} with {info['type']}: {info['message'][:300]}; the functions "
                "defined up to that point are graded")  # fmt: skip

    def function(self, name: str) -> Callable:
        fn = self.namespace.get(name)
        if not callable(fn):
            raise KeyError(name)
        return fn

    def call(self, fn: Callable, args: list) -> dict:
        """``fn(*args)``: the result, a handle for its gradient, and the arguments it changed in place."""
        import torch

        from .wire import tensors_in

        before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in args]
        out = fn(*args)
        mutated = {str(i): a.detach().clone() for i, (a, b) in enumerate(zip(args, before)) if b is not None and (
            a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a.detach(), b))}  # fmt: skip
        handle = None
        outs = [t for t in tensors_in(out) if t.requires_grad]
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if outs and leaves:
            handle = self.next_handle = self.next_handle + 1
            self.handles[handle] = (leaves, outs)
            self.handles.pop(handle - 16, None)
        return {"result": out, "handle": handle, "mutated": mutated}

    def grad(self, leaves: list, outs: list, grads: list) -> dict:
        import torch

        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        if not pairs:
            return {"result": [None] * len(leaves)}
        return {"result": list(torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs],
                                                   retain_graph=True, allow_unused=True))}  # fmt: skip


# --- the channel ---------------------------------------------------------------------------------------------------


class Channel:
    """Requests in, replies out, each ``{"op": ..., "body": <a value of sandbox.grade.wire>}``. While this side waits
    for the grader (a callable the grader lent, called by the student's code), it serves the grader's requests."""

    def __init__(self, reader, writer, submission: Submission):
        from . import wire

        self.wire = wire
        self.reader, self.writer = reader, writer
        self.submission = submission
        self.lent = wire.Callables()

    def send(self, op: str, body: Any = None, ok: bool = True) -> None:
        header, buffers = self.wire.encode(body, self.lent)
        self.wire.write_frame(self.writer, {"op": op, "ok": ok, "body": header}, buffers)

    def receive(self) -> tuple[str, Any, bool]:
        message, buffers = self.wire.read_frame(self.reader)
        body = self.wire.decode(message.get("body"), buffers, call=self._lent, named=self.submission.function)
        return str(message.get("op")), body, bool(message.get("ok", True))

    def _lent(self, key: int) -> Callable:
        channel = self

        def lent_by_the_grader(*args):
            import torch

            channel.send("callback", {"fn": key, "args": list(args), "rng": torch.get_rng_state()})
            body, ok = channel.serve(until_reply=True)
            if not ok:
                raise RuntimeError(str(body))
            torch.set_rng_state(body["rng"])
            return body["value"]

        return lent_by_the_grader

    def serve(self, until_reply: bool = False):
        while True:
            op, body, ok = self.receive()
            if op == "reply" and until_reply:
                return body, ok
            self.handle(op, body)

    def handle(self, op: str, body: Any) -> None:
        import torch

        try:
            if op == "load":
                return self.send("reply", self.submission.load(body, self))
            if op not in ("call", "grad"):
                return self.send("reply", f"unknown request {op!r}", ok=False)
            torch.set_rng_state(body["rng"])
            if op == "call":
                fn, args = self.submission.function(body["name"]), body["args"]
                work = lambda: self.submission.call(fn, args)  # noqa: E731
            else:
                leaves, outs = self.submission.handles[body["handle"]]
                work = lambda: self.submission.grad(leaves, outs, body["grads"])  # noqa: E731
            try:
                with alarm(body.get("timeout")):
                    reply = work()
            except Timeout:
                reply = {"timeout": True}
            except BaseException as err:  # noqa: BLE001 - anything the student's function raises is data
                if isinstance(err, (SystemExit, KeyboardInterrupt)):
                    err = RuntimeError(f"{type(err).__name__}({err})")
                reply = {"raised": error_info(err)}
            try:
                self.send("reply", {**reply, "rng": torch.get_rng_state()})
            except Exception as err:  # noqa: BLE001 - a result that cannot even be encoded: say so, as data
                self.send("reply", {"raised": error_info(err), "rng": torch.get_rng_state()})
        except KeyError as err:
            self.send("reply", f"no function, gradient or field {err.args[0]!r}", ok=False)


# --- start-up: the user, the limits, the channel -------------------------------------------------------------------


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become ``uid``:``gid`` (no supplementary groups) when started as root; nothing otherwise."""
    if uid is None or os.name != "posix" or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def set_limits(limits: dict) -> None:
    """The resource limits, soft and hard (a process cannot raise a hard limit again): ``data`` bytes of memory,
    ``cpu`` seconds, ``fsize`` bytes per file written, and ``nproc`` processes and threads more than this user
    already runs (the kernel counts them per user)."""
    if os.name != "posix":
        return  # Windows has no rlimits: the grader's time limits are all there is
    import resource

    running = 0  # processes and threads of this user now (a thread counts against RLIMIT_NPROC too)
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(line for line in f if line.startswith("Uid:")).split()[1]
            if uid == str(os.getuid()):
                running += len(os.listdir(f"/proc/{pid}/task"))
        except (OSError, StopIteration, IndexError):
            continue
    wanted = [(resource.RLIMIT_DATA, limits.get("data")), (resource.RLIMIT_CPU, limits.get("cpu")),
              (resource.RLIMIT_FSIZE, limits.get("fsize"))]  # fmt: skip
    if hasattr(resource, "RLIMIT_NPROC") and limits.get("nproc"):
        wanted.append((resource.RLIMIT_NPROC, running + limits["nproc"]))
    for which, value in wanted:
        if not value:
            continue
        hard = resource.getrlimit(which)[1]
        top = float("inf") if hard == resource.RLIM_INFINITY else hard
        soft = int(min(value, top))  # past the soft CPU limit SIGXCPU ends the process; 5 s later SIGKILL does
        try:
            resource.setrlimit(which, (soft, int(min(soft + 5, top)) if which == resource.RLIMIT_CPU else soft))
        except (ValueError, OSError):  # a limit this system does not take (macOS and RLIMIT_DATA): left as it is
            continue


def private_channel():
    """Move the grader's channel (stdin, stdout) to fresh descriptors; stdin becomes /dev/null and stdout joins
    stderr, so the student's prints never mix with the channel."""
    reader = os.fdopen(os.dup(0), "rb", buffering=0)
    writer = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - for the life of the process
    sys.stdout = os.fdopen(1, "w", buffering=1, errors="replace")
    return reader, writer


def main(config: dict | None = None) -> None:
    """Start the submission's process: ``config`` (JSON in ``sys.argv[1]`` when not given) holds ``uid``, ``gid``
    and ``limits``."""
    config = json.loads(sys.argv[1]) if config is None else config
    drop_privileges(config.get("uid"), config.get("gid"))
    set_limits(config.get("limits") or {})
    reader, writer = private_channel()
    import torch

    torch.set_num_threads(1)
    channel = Channel(reader, writer, Submission())
    channel.send("ready", {"pid": os.getpid(), "python": sys.version.split()[0]})
    try:
        channel.serve()
    except (EOFError, BrokenPipeError):
        pass
