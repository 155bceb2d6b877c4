"""The submission's process: it runs the student's notebook or script, then answers the grader's requests (call a
function on these inputs, give the gradient of that call, train this scenario with your functions), and nothing
else. Started by the grader as ``python -I -m sandbox.grade.worker`` (:mod:`sandbox.grade.remote`), never by hand.

Nothing here decides a score. The grader draws the inputs, receives the outputs as data (:mod:`sandbox.grade.wire`)
and compares them in its own process, so whatever the submission does to this process (patching the grader's
modules, torch's comparisons, ``sys.modules``) changes only what this process sends back.

What this process watches, and reports with each answer (the grader decides what it means):

- **code of the sandbox package run inside a graded call** (a profile hook, on only while the student's function
  runs): the function reached a reference implementation, by import, ``importlib``, ``sys.modules``, a copied code
  object, or any other route that ends in running the package's code;
- **a copy of the package's code compiled under another name** (the same bytecode, names and constants as one of the
  package's functions, docstring included; for a long function, or after the submission has read a file of the
  package, the same bytecode and names suffice);
- **files of the package (and of the repository's ``tests/``, which holds correct answers) opened by the
  submission** (an audit hook, which Python does not let code remove), and a profile or trace hook replaced while a
  graded function runs.

The channel is the process's original stdin and stdout, moved to private descriptors before any student code runs;
the student's prints go to stderr, which the grader reads and caps.
"""

from __future__ import annotations

import linecache
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_TESTS = PACKAGE_DIR.parent / "tests"


IMPORTING = {"_find_and_load", "_find_and_load_unlocked", "_load_unlocked", "exec_module", "_load"}
"""Frames of the import system that load a module (reading its files then is an import, not a read of its source)."""
LONG_CODE = 160
"""Bytes of bytecode from which a function with the same bytecode, names and local names as one of the package's
counts as a copy even with its docstring and constants edited (short formulas are left to the similarity)."""


class GradingTimeout(BaseException):
    """The time the grader allowed for this request ran out (a BaseException: ``except Exception`` cannot hide it)."""


# --- what counts as the package's code -----------------------------------------------------------------------------


def reference_files() -> set[str]:
    """Every ``.py`` file of the sandbox package, and of the repository's ``tests/`` when the package is installed
    from a checkout (``tests/homework_answers.py`` holds correct answers)."""
    files = {str(p) for p in PACKAGE_DIR.rglob("*.py")}
    if REPO_TESTS.is_dir():
        files |= {str(p) for p in REPO_TESTS.glob("*.py")}
    return files


def answer_files() -> set[str]:
    """The files whose functions are answers, or close to them (fingerprinted: a copy of one counts as a use)."""
    files = {str(PACKAGE_DIR / "maths.py"), str(PACKAGE_DIR / "dropout.py")}
    for folder in ("grade", "reading"):
        files |= {str(p) for p in (PACKAGE_DIR / folder).rglob("*.py")}
    if REPO_TESTS.is_dir():
        files |= {str(p) for p in REPO_TESTS.glob("*.py")}
    return files


def _codes(code) -> list:
    out = [code]
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            out += _codes(const)
    return out


def _canon(v: Any) -> str:
    """A constant as text that does not depend on the process (a frozenset's order does, with hash randomisation)."""
    if isinstance(v, (frozenset, set)):
        return "{" + ",".join(sorted(_canon(x) for x in v)) + "}"
    if isinstance(v, tuple):
        return "(" + ",".join(_canon(x) for x in v) + ")"
    if hasattr(v, "co_code"):
        return "<code>"
    return repr(v)


def instructions(code) -> tuple:
    """The code's instructions, independent of where it was compiled: CPython emits ``LOAD_METHOD`` or ``LOAD_ATTR``
    for ``torch.f(...)`` depending on whether the compiled unit imported ``torch`` itself, and jump offsets shift
    with that; so names and constants are kept, method loads and jump targets are not told apart."""
    import dis

    out = []
    for ins in dis.get_instructions(code):
        name = "LOAD_ATTR" if ins.opname == "LOAD_METHOD" else ins.opname
        jump = ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs
        out.append(name if jump else (name, _canon(ins.argval)))
    return tuple(out)


def _docstring(code) -> str | None:
    first = code.co_consts[0] if code.co_consts else None
    return first if isinstance(first, str) else None


def _digest(parts: tuple) -> str:
    import hashlib

    return hashlib.sha256(repr(parts).encode()).hexdigest()


def strict_print(code) -> str:
    """Instructions, local names and docstring: only a copy of the package's own source matches."""
    return _digest((instructions(code), code.co_varnames, _docstring(code)))


def loose_print(code) -> str:
    """Instructions and local names: also matches a copy whose docstring was dropped or edited."""
    return _digest((instructions(code), code.co_varnames))


def fingerprints() -> dict[str, dict[str, str]]:
    """The answer files' functions by fingerprint (``strict`` and ``loose``: digest -> ``file:qualname``). The grader
    computes them once and hands them to each submission's process with its load request."""
    strict: dict[str, str] = {}
    loose: dict[str, str] = {}
    for path in sorted(answer_files()):
        try:
            tree = compile(Path(path).read_text(), path, "exec", dont_inherit=True)
        except (SyntaxError, OSError, ValueError):
            continue
        rel = relative(path)
        for code in _codes(tree)[1:]:  # the functions and classes, not the module body
            if len(code.co_code) < 24:  # a one-line body: too common to call a copy
                continue
            strict.setdefault(strict_print(code), f"{rel}:{code.co_qualname}")
            loose.setdefault(loose_print(code), f"{rel}:{code.co_qualname}")
    return {"strict": strict, "loose": loose}


def relative(path: str) -> str:
    p = Path(path)
    for base, name in ((PACKAGE_DIR, "sandbox"), (REPO_TESTS, "tests")):
        if p.is_relative_to(base):
            return f"{name}/{p.relative_to(base).as_posix()}"
    return path


class ReferenceIndex:
    """What counts as the package's code: its files, and the answer files' functions by fingerprint."""

    def __init__(self, prints: dict[str, dict[str, str]] | None = None):
        self.files = reference_files()
        prints = prints or {"strict": {}, "loose": {}}
        self.strict: dict[str, str] = prints["strict"]
        self.loose: dict[str, str] = prints["loose"]
        self._seen: dict[int, tuple[Any, str | None, str | None]] = {}

    def relative(self, path: str) -> str:
        return relative(path)

    def classify(self, code, read_source: bool) -> str | None:
        """Why running ``code`` reaches the package, or None."""
        key = id(code)
        if key not in self._seen:
            if code.co_filename in self.files:
                why = f"runs the sandbox package's own code ({self.relative(code.co_filename)}:{code.co_qualname})"
            elif len(code.co_code) >= 24 and (found := self.strict.get(strict_print(code))):
                why = f"runs a copy of {found}, compiled from the package's source"
            else:
                why = None
            loose = self.loose.get(loose_print(code)) if why is None and len(code.co_code) >= 24 else None
            self._seen[key] = (code, why, loose)  # the code object is kept alive, so its id stays its own
        _, why, loose = self._seen[key]
        if why is None and loose and (read_source or len(code.co_code) >= LONG_CODE):
            why = f"runs a copy of {loose}, compiled from the package's source"
        return why


# --- the watch: audit hook, profile hook ---------------------------------------------------------------------------


class Watch:
    """What the submission did that the grader should know, per graded function and for the whole submission."""

    def __init__(self, index: ReferenceIndex):
        self.index = index
        self.student = False  # True while student code may run: loading cells, graded calls, integration runs
        self.quiet = 0  # > 0 while this process formats a traceback (it reads source files itself)
        self.reads: list[str] = []
        self.tampering: list[str] = []
        self.uses: dict[str, list[str]] = {}
        self.stack: list[str] = []
        self.allowed: set = set()
        self.paused: list[tuple[Any, int]] = []
        self._ours = False
        self._prefixes = tuple(sorted({str(Path(f).parent) + os.sep for f in index.files}))

    # the audit hook: Python offers no way to remove it once added
    def audit(self, event: str, args: tuple) -> None:
        if not self.student or self.quiet:
            return
        if event == "open":
            path = args[0]
            if isinstance(path, str) and path.endswith((".py", ".pyc")):
                full = os.path.abspath(path)
                if full.startswith(self._prefixes) and not self._internal():
                    name = self.index.relative(full)
                    if name not in self.reads:
                        self.reads.append(name)
        elif event in ("sys.setprofile", "sys.settrace") and not self._ours:
            what = f"replaced Python's {event.split('.')[1][3:]} hook ({event}), which the grader uses to watch"
            if what not in self.tampering:
                self.tampering.append(what)
            if self.stack:
                self._use(self.stack[-1], "turned off the grader's watch while it ran")

    @staticmethod
    def _internal() -> bool:
        """True when the open comes from the import system (an ``import sandbox.plots`` reads its files: what it
        defines is then caught by its file name when it runs), or from a traceback or a warning being printed."""
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen importlib") and frame.f_code.co_name in IMPORTING:
                return True
            if name.endswith(("traceback.py", "warnings.py", "ultratb.py")):
                return True
            frame = frame.f_back
        return False

    def _use(self, name: str, why: str) -> None:
        found = self.uses.setdefault(name, [])
        if why not in found and len(found) < 5:
            found.append(why)

    def profile(self, frame, event: str, arg) -> None:
        """Python's profile hook while a graded function runs: classify every function it calls. The grader's own
        machinery (a callable the grader lent, a recorder, the alarm) runs unwatched until it returns, unless a
        graded function is entered again inside it."""
        if self.paused and event == "return" and frame is self.paused[-1][0]:
            self.paused.pop()
            return
        if self.paused and self.paused[-1][1] == len(self.stack):
            return
        if event != "call" or not self.stack:
            return
        code = frame.f_code
        if code in self.allowed:
            self.paused.append((frame, len(self.stack)))
            return
        why = self.index.classify(code, bool(self.reads))
        if why is not None:
            self._use(self.stack[-1], why)

    def enter(self, name: str, allowed: list[Callable] = ()) -> None:
        """Watch the graded function ``name`` (callables it was handed, such as ``draw``, may run freely)."""
        for fn in allowed:
            code = getattr(fn, "__code__", None)
            if code is not None:
                self.allowed.add(code)
        self.stack.append(name)
        self._set_profile(self.profile)

    def leave(self) -> None:
        name = self.stack.pop()
        if sys.getprofile() != self.profile:
            self._use(name, "turned off the grader's watch while it ran")
        self._set_profile(self.profile if self.stack else None)

    def _set_profile(self, fn) -> None:
        self._ours = True
        try:
            sys.setprofile(fn)
            threading.setprofile(fn)
        finally:
            self._ours = False

    def forget_sources(self) -> None:
        """Drop the package's files from linecache: reading them again then goes through ``open``, which is watched
        (some libraries read source files at import, so they are there before the submission runs)."""
        for name in list(linecache.cache):
            if name in self.index.files:
                del linecache.cache[name]

    def report(self) -> dict:
        return {"uses": self.uses, "reads": self.reads, "tampering": self.tampering}


# --- time limits ---------------------------------------------------------------------------------------------------


class Alarm:
    """Raise :class:`GradingTimeout` in the main thread after ``seconds`` (POSIX); elsewhere the grader's own deadline,
    which ends the whole process, is the only limit."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds

    def __enter__(self):
        if self.seconds and hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, _expired)
            signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 0.01))
        return self

    def __exit__(self, *exc):
        if self.seconds and hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        return False


def _expired(signum, frame):
    raise GradingTimeout()


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
            if magic_name not in MAGICS:
                print(f"(not run while grading: %{magic_name} {line})")
                return None
            if magic_name == "matplotlib":
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
    """An exception as data: its type, message (capped) and the last line of the student's code it passed."""
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if not f.filename.startswith((str(PACKAGE_DIR), str(Path(traceback.__file__).parent)))
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

    def __init__(self, watch: Watch):
        self.watch = watch
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.shell = None
        self.handles: dict[int, tuple[list, list]] = {}
        self.next_handle = 0

    # loading
    def load(self, msg: dict, channel: "Channel") -> dict:
        prints = msg.get("fingerprints") or {}
        self.watch.index.strict = dict(prints.get("strict", {}))
        self.watch.index.loose = dict(prints.get("loose", {}))
        notes, stopped = [], None
        cells, labels = msg["cells"], msg["labels"]
        notebook = msg["kind"] == "notebook"
        if notebook:
            self.shell = make_shell()
            self.namespace = self.shell.user_ns
        limit = msg.get("until", len(cells))
        self.watch.student = True
        for i, (source, label) in enumerate(zip(cells, labels)):
            if i >= limit:
                notes.append(msg.get("until_note") or f"{label} was not run")
                stopped = i
                break
            channel.send("progress", {"cell": i})
            self.watch.forget_sources()
            started = time.perf_counter()
            try:
                with Alarm(msg["cell_timeout"]):
                    if notebook:
                        result = self.shell.run_cell(source, store_history=False, silent=False)
                        err = result.error_in_exec or result.error_before_exec
                    else:
                        err = None
                        code = compile(source, msg["filename"], "exec", dont_inherit=True)
                        exec(code, self.namespace)
            except GradingTimeout as timeout:
                err = timeout
            except SyntaxError as syntax:
                err = syntax
            except BaseException as other:  # noqa: BLE001 - the script's own exception ends it, as "Run all" would
                err = other
            if err is not None:
                self.watch.quiet += 1
                try:
                    notes.append(self._stopped(label, err, time.perf_counter() - started, msg))
                finally:
                    self.watch.quiet -= 1
                stopped = i
                break
        self.watch.student = False
        defined = {}
        for name in msg["functions"]:
            fn = self.namespace.get(name)
            defined[name] = "missing" if fn is None else ("function" if callable(fn) else f"a {type(fn).__name__}")
        return {"defined": defined, "notes": notes, "stopped": stopped}

    @staticmethod
    def _stopped(label: str, err: BaseException, seconds: float, msg: dict) -> str:
        if isinstance(err, GradingTimeout):
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

    # calling
    def call(self, name: str, args: list, timeout: float | None) -> tuple[Any, int | None, dict]:
        """``fn(*args)`` under the watch and the time limit: (result, handle for a gradient, mutated arguments)."""
        import torch

        from .wire import tensors_in

        fn = self.function(name)
        before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in args]
        handed = [a for a in args if callable(a)]
        self.watch.forget_sources()
        self.watch.student = True
        with Alarm(timeout):
            self.watch.enter(name, handed)
            try:
                out = fn(*args)
            finally:
                self.watch.leave()
                self.watch.student = False
        mutated = {}
        for i, (a, b) in enumerate(zip(args, before)):
            if b is not None and (a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a.detach(), b)):
                mutated[str(i)] = a.detach().clone()
        handle = None
        outs = [t for t in tensors_in(out) if t.requires_grad]
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if outs and leaves:
            handle = self.next_handle
            self.next_handle += 1
            self.handles[handle] = (leaves, outs)
            for old in [h for h in self.handles if h < handle - 16]:
                del self.handles[old]
        return out, handle, mutated

    def grad(self, handle: int, grads: list) -> list:
        import torch

        leaves, outs = self.handles[handle]
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        if not pairs:
            return [None] * len(leaves)
        got = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], retain_graph=True,
                                  allow_unused=True)  # fmt: skip
        return list(got)

    # training
    def train(self, msg: dict) -> dict:
        """A scenario trained with the submission's functions in the given ``Maths`` fields; metrics and the first
        ``keep`` calls of each function come back as data."""
        from ..algos.learner import NonFiniteLossError
        from ..config import Config
        from ..maths import Maths
        from ..training import train

        keep = int(msg["keep"])
        recorders = {name: Recorder(self.function(name), name, keep, self.watch) for name in msg["fields"]}
        error = None
        metrics = None
        try:
            with Alarm(msg.get("timeout")):
                metrics = train(Config.from_dict(msg["config"]), maths=Maths(**recorders)).metrics
        except NonFiniteLossError as err:
            error = {"type": "NonFiniteLossError", "message": str(err)[:1000], "where": None}
        except GradingTimeout:
            raise
        except BaseException as err:  # noqa: BLE001 - the submission's function, called by the trainer
            error = error_info(err)
        return {
            "metrics": None if metrics is None else {c: metrics[c].tolist() for c in metrics.columns},
            "calls": {name: r.calls for name, r in recorders.items()},
            "counts": {name: r.count for name, r in recorders.items()},
            "error": error,
        }


class Recorder:
    """Calls the submission's function under the watch and keeps copies of the inputs and output of its first
    ``keep`` calls (what the grader compares with our function on the same inputs)."""

    def __init__(self, fn: Callable, name: str, keep: int, watch: Watch):
        self.fn, self.name, self.keep, self.watch = fn, name, keep, watch
        self.calls: list[tuple[tuple, Any]] = []
        self.count = 0

    def __deepcopy__(self, memo):
        return self  # a copied network keeps calling the same function (and its watch holds live frames)

    def __call__(self, *args):
        self.watch.student = True
        self.watch.enter(self.name, [a for a in args if callable(a)])
        try:
            out = self.fn(*args)
        finally:
            self.watch.leave()
            self.watch.student = bool(self.watch.stack)
        self.count += 1
        if len(self.calls) < self.keep:
            self.calls.append((_copy(args), _copy(out)))
        return out


def _copy(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, tuple):
        return tuple(_copy(v) for v in x)
    if isinstance(x, list):
        return [_copy(v) for v in x]
    if callable(x):
        return None
    return x


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

        self.submission.watch.allowed.add(lent_by_the_grader.__code__)
        return lent_by_the_grader

    def serve(self, until_reply: bool = False):
        while True:
            op, body, ok = self.receive()
            if op == "reply" and until_reply:
                return body, ok
            if op == "exit":
                raise SystemExit(0)
            self.handle(op, body)

    def handle(self, op: str, body: Any) -> None:
        import torch

        try:
            if op == "load":
                self.send("reply", self.submission.load(body, self))
            elif op == "call":
                torch.set_rng_state(body["rng"])
                try:
                    out, handle, mutated = self.submission.call(body["name"], body["args"], body.get("timeout"))
                    reply = {"result": out, "handle": handle, "mutated": mutated}
                except GradingTimeout:
                    reply = {"timeout": True}
                except NotImplementedError as err:
                    reply = {"raised": {"type": "NotImplementedError", "message": str(err)[:500], "where": None}}
                except BaseException as err:  # noqa: BLE001 - anything the student's function raises is data
                    if isinstance(err, (SystemExit, KeyboardInterrupt)):
                        err = RuntimeError(f"{type(err).__name__}({err})")
                    reply = {"raised": error_info(err)}
                self.send("reply", {**reply, "rng": torch.get_rng_state()})
            elif op == "grad":
                self.send("reply", {"result": self.submission.grad(body["handle"], body["grads"])})
            elif op == "train":
                try:
                    self.send("reply", self.submission.train(body))
                except GradingTimeout:
                    self.send("reply", {"timeout": True})
            elif op == "watch":
                self.send("reply", self.submission.watch.report())
            elif op == "ping":
                self.send("reply", {"pid": os.getpid()})
            else:
                self.send("reply", f"unknown request {op!r}", ok=False)
        except KeyError as err:
            self.send("reply", f"no function named {err.args[0]!r}", ok=False)


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


def main() -> None:
    reader, writer = private_channel()
    import torch

    torch.set_num_threads(1)

    index = ReferenceIndex()
    watch = Watch(index)
    sys.addaudithook(watch.audit)
    submission = Submission(watch)
    for fn in (Recorder.__call__, Watch.enter, Watch.leave, Watch._set_profile, _expired):
        watch.allowed.add(fn.__code__)
    channel = Channel(reader, writer, submission)
    channel.send("ready", {"pid": os.getpid(), "python": sys.version.split()[0]})
    try:
        channel.serve()
    except (EOFError, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
