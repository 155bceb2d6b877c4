"""The grader's machinery: a test, the failure that teaches, running the tests, and the report in three formats.

A :class:`Test` is a named check of one or more of the learner's functions, worth some points. Its ``run`` raises
:class:`Fail` with three parts: the *case* (what was tried, small enough to read), the *problem* (what was expected
and what came back: shape, dtype, the first entry that differs) and a *hint* (the idea the case is about). The
tensor checks go in a fixed order, so that a wrong answer cannot pass by accident: the type, then the shape (a
tensor of another shape could broadcast against ours and compare equal), then the dtype, then finiteness, then the
values against the reference function, computed at grading time on the same inputs (no stored answers).

Random inputs come from :func:`generator` and :func:`manual_seed`, offset by the grading seed (:func:`run_tests`'s
``seed``): ``sandbox grade`` draws a new one for every run (and prints it, so a run can be repeated), so the inputs
are not stored with the package either. The tests run in the grader's process; the functions they call may live in
the submission's process (:mod:`sandbox.grade.remote`), which changes nothing in how a test reads.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from ..config import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
TORCH_DIR = Path(torch.__file__).resolve().parent


class ArgumentError(ConfigError):
    """A bad positional argument of ``sandbox grade`` (``HW``, ``SUBMISSION``): one line that names it."""

    def __init__(self, name: str, message: str):
        ValueError.__init__(self, f"{name}: {message}")
        self.field = name


class Fail(Exception):
    """A failed check: ``problem`` (what went wrong), ``case`` (the inputs), ``hint`` (what the case teaches)."""

    def __init__(self, problem: str, case: str | None = None, hint: str | None = None):
        super().__init__(problem)
        self.problem, self.case, self.hint = problem, case, hint

    def text(self, case: str | None = None, hint: str | None = None) -> str:
        lines = []
        if self.case or case:
            lines.append(f"case: {self.case or case}")
        lines.append(self.problem)
        if self.hint or hint:
            lines.append(f"hint: {self.hint or hint}")
        return "\n".join(lines)


class Timeout(BaseException):
    """The grader's time limit for one test ran out (a BaseException, so that ``except Exception`` cannot hide it)."""


class Ended(BaseException):
    """The submission's process ended during a test (it crashed, exited, or ran out of time or restarts); the
    message says why. Raised by :mod:`sandbox.grade.remote`; a BaseException for the same reason as :class:`Timeout`."""


@dataclasses.dataclass(frozen=True)
class Test:
    """One graded check. ``run(functions)`` raises :class:`Fail`; ``functions`` maps names to the learner's
    functions (every name in ``functions`` is there). ``kind``: ``case`` (inputs compared with the reference),
    ``property`` (a limit, an invariance, a gradient), ``integration`` (a short training run through the seam) or
    ``hidden`` (an instructor's case)."""

    name: str
    functions: tuple[str, ...]
    run: Callable[[dict[str, Callable]], None]
    points: float = 1.0
    kind: str = "case"
    case: str = ""
    hint: str = ""
    timeout: float = 30.0
    visibility: str = "visible"
    prepare: Callable[[], None] | None = None
    """Run before the test's clock starts (our own training run, which the test compares with)."""


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """One function an assignment asks for: its contract, the reference it is compared with, and how two results
    are compared (used by the instructor's hidden cases and by the checks inside the training run)."""

    name: str
    signature: str
    reference: Callable
    args: tuple[str, ...]
    compare: Callable[[Any, Any, str], None]
    """``compare(got, want, what)`` raises :class:`Fail`."""
    deterministic: bool = True
    """False for functions that draw random numbers: hidden cases cannot compare their values."""
    check: Callable[[Any, list, str], None] | None = None
    """``check(got, args, what)``: compare with the reference on ``args`` where ``compare`` alone is too strict (a
    keep-mask may break a tie the other way); raises :class:`Fail`."""


@dataclasses.dataclass(frozen=True)
class Assignment:
    key: str
    title: str
    lesson: str
    """The lesson (notebook number) it pairs with."""
    functions: dict[str, FunctionSpec]
    build: Callable[[], list[Test]]
    offers: tuple[str, ...] = ("plots",)
    """The package's modules a submission may import while graded (single files that import nothing of the package;
    every other name of the package is a stand-in there, :mod:`sandbox.grade.shim`)."""


@dataclasses.dataclass
class Result:
    name: str
    kind: str
    functions: tuple[str, ...]
    max_score: float
    score: float
    output: str
    seconds: float
    visibility: str = "visible"

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclasses.dataclass
class Report:
    """The outcome of grading one submission of one assignment."""

    assignment: str
    title: str
    results: list[Result]
    submission: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    seed: int | None = None
    """The grading seed the random inputs were drawn from (``sandbox grade --seed`` repeats them)."""
    review: list[str] = dataclasses.field(default_factory=list)
    """For the instructor only: what a reviewer should look at (the closest submissions, how it ran)."""
    similarity: dict[str, float] = dataclasses.field(default_factory=dict)
    """For the instructor only: how much of its code is found in the reference's, and in the closest other
    submission's (0 to 1; :mod:`sandbox.grade.similarity`). A review list, never a score."""

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.results)

    @property
    def ok(self) -> bool:
        """Every test passed (and there was at least one)."""
        return bool(self.results) and self.failed == 0

    def __repr__(self) -> str:
        return f"<Report {self.assignment}: {self.summary_line()}>"

    def summary_line(self) -> str:
        return f"{self.passed} passed, {self.failed} failed (score {self.score:g}/{self.max_score:g})"

    def text(self, width: int = 100) -> str:
        head = f"{self.assignment}: {self.title}"
        if self.submission:
            head += f"   [{self.submission}]"
        lines = [head]
        lines += [f"note: {n}" for n in self.notes]
        for r in self.results:
            status = "PASS" if r.passed else "FAIL"
            points = f"{r.score:g}/{r.max_score:g}"
            lines.append(f"{status}  {r.name} {'.' * max(2, width - 12 - len(r.name) - len(points))} {points}")
            if not r.passed:
                lines += ["      " + line for out in r.output.splitlines() for line in _wrap(out, width - 6)]
        lines.append(self.summary_line())
        return "\n".join(lines)

    def instructor_text(self) -> str:
        """What only the instructor sees: the grading seed, the similarity (a review list), the review notes."""
        lines = [f"grading seed: {self.seed}"] if self.seed is not None else []
        if self.similarity:
            lines.append("similarity, for review and never a score (0 to 1): " + ", ".join(
                f"to the {name} {value:.2f}" for name, value in self.similarity.items()))  # fmt: skip
        lines += [f"review: {r}" for r in self.review]
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The plain JSON format (for any system that is not Gradescope)."""
        from importlib.metadata import version

        __version__ = version("dropout-rl-sandbox")
        return {
            "assignment": self.assignment,
            "title": self.title,
            "submission": self.submission,
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            "instructor": {"seed": self.seed, "similarity": self.similarity, "review": self.review},
            "tests": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "functions": list(r.functions),
                    "passed": r.passed,
                    "score": r.score,
                    "max_score": r.max_score,
                    "output": r.output,
                    "seconds": round(r.seconds, 3),
                    "visibility": r.visibility,
                }
                for r in self.results
            ],
            "versions": {"sandbox": __version__, "torch": torch.__version__},
        }

    def to_gradescope(self) -> dict:
        """Gradescope's autograder ``results.json``: a ``tests`` list of name, score, max_score, status, output and
        visibility (each test's own: the instructor's hidden cases stay hidden). What only the instructor should see
        is one more test of 0 points with visibility ``hidden``, which Gradescope never shows to students."""
        instructor = [{"name": "instructor only: review", "score": 0, "max_score": 0, "status": "passed",
                       "output": self.instructor_text() or "nothing to review", "visibility": "hidden"}]  # fmt: skip
        return {
            "score": self.score,
            "execution_time": round(self.seconds, 1),
            "output": "\n".join([f"{self.assignment}: {self.title}", *self.notes, self.summary_line()]),
            "stdout_visibility": "hidden",
            "tests": [
                {
                    "name": r.name,
                    "number": f"{i}",
                    "score": r.score,
                    "max_score": r.max_score,
                    "status": "passed" if r.passed else "failed",
                    "output": r.output if r.output else "passed",
                    "visibility": r.visibility,
                }
                for i, r in enumerate(self.results, start=1)
            ]
            + instructor,
        }


def _wrap(line: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False) or [""]


# --- running ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Timeout` after ``seconds`` (Unix, main thread; elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise Timeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


VISIBILITY = ("visible", "after_due_date", "after_published", "hidden")
"""Gradescope's visibilities, from the first shown to the last: hidden cases run in this order, so that nothing a
submission learns in a case (its inputs) can reach the output of a case shown earlier."""

MAX_OUTPUT = 4000
"""Characters of one test's output kept in the report (a message the student's code raised may be any size)."""

_SEED = contextvars.ContextVar("grading_seed", default=0)


def seed_of(k: int) -> int:
    """The seed of a test's ``k``-th random draw under the current grading seed."""
    return _SEED.get() + k


def generator(seed: int) -> torch.Generator:
    """A torch generator for a test's random inputs: ``seed`` offset by the grading seed."""
    return torch.Generator().manual_seed(seed_of(seed))


def manual_seed(seed: int) -> None:
    """``torch.manual_seed`` offset by the grading seed (tests of functions that draw from torch's generator)."""
    torch.manual_seed(seed_of(seed))


def run_tests(
    assignment: Assignment,
    functions: dict[str, Callable | None],
    *,
    extra: list[Test] = (),
    only_given: bool = False,
    only: tuple[str, ...] | None = None,
    integration: bool = True,
    submission: str | None = None,
    notes: list[str] = (),
    seed: int = 0,
    clock: Callable[[float], contextlib.AbstractContextManager] | None = None,
    test_timeout: float | None = None,
) -> Report:
    """Run the assignment's tests (then ``extra``, the hidden cases) on ``functions``.

    A function missing from ``functions`` fails its tests, or with ``only_given`` (``check`` in a notebook) leaves
    them out with a note. An integration test runs only when its functions passed every case and property test
    before it: a training run cannot say more than a failed case already does, and costs seconds. ``only``: run just
    the tests that involve one of these functions; ``integration=False``: leave the training runs out.

    ``seed``: the grading seed (random inputs are drawn from it). ``clock(seconds)``: the time limit of one test when
    the functions live in another process (:meth:`sandbox.grade.remote.RemoteFunctions.test`); by default an alarm
    in this process. ``test_timeout``: a cap on every test's own time limit.

    A failure shows its hint only when it is the first failure of its functions: a later test of a function that
    already failed may fail for that same mistake, and its own hint would describe another one.
    """
    start = time.perf_counter()
    token = _SEED.set(seed)
    try:
        results, left_out, tests = _run(assignment, functions, extra, only_given, only, integration, clock,
                                        test_timeout)  # fmt: skip
    finally:
        _SEED.reset(token)
    notes = list(notes)
    given = {name for name, fn in functions.items() if fn is not None}
    if left_out:
        notes.append(
            f"{len(left_out)} tests not run: they need functions not passed to check() "
            f"({', '.join(sorted({f for t in tests if t.name in left_out for f in t.functions} - given))})"
        )
    report = Report(assignment.key, assignment.title, results, submission, notes, time.perf_counter() - start,
                    seed=seed)  # fmt: skip
    return report


def _run(assignment, functions, extra, only_given, only, integration, clock, cap) -> tuple[list, list, list]:
    tests = [*assignment.build(), *sorted(extra, key=lambda t: VISIBILITY.index(t.visibility))]
    if only is not None:
        tests = [t for t in tests if set(t.functions) & set(only)]
    if not integration:
        tests = [t for t in tests if t.kind != "integration"]
    given = {name: fn for name, fn in functions.items() if fn is not None}
    results: list[Result] = []
    left_out: list[str] = []
    failed_functions: dict[str, str] = {}  # function -> the first test it failed
    threads = torch.get_num_threads()
    ended: str | None = None
    for test in tests:
        missing = [f for f in test.functions if f not in given]
        if missing and only_given:
            left_out.append(test.name)
            continue
        t0 = time.perf_counter()
        output = ""
        if missing:
            spec = assignment.functions.get(missing[0])
            wanted = f" (define `{spec.signature}`)" if spec else ""
            output = f"no function named `{missing[0]}` in the submission{wanted}"
        elif test.kind == "integration" and (broken := [f for f in test.functions if f in failed_functions]):
            output = (
                f"not run: `{'`, `'.join(broken)}` failed a case or property above; a training run with it would "
                "say less than that case does. Fix those first."
            )
        elif ended is not None:
            output = ended
        else:
            limit = min(test.timeout, cap) if cap else test.timeout
            if test.prepare is not None:
                test.prepare()
            try:
                with torch.random.fork_rng(devices=[]), (clock or time_limit)(limit):
                    test.run(given)
            except Fail as failure:
                earlier = [f for f in test.functions if f in failed_functions]
                output = failure.text(test.case or None, None if earlier else test.hint or None)
                if earlier and test.hint:
                    output += (f"\n(no hint here: `{earlier[0]}` failed \"{failed_functions[earlier[0]]}\" above; "
                               "fix that first, this test may fail for the same reason)")  # fmt: skip
            except Timeout:
                output = (
                    f"took longer than {limit:g} s, the grader's limit for this test: a Python loop over every entry, "
                    "or a loop that never ends?"
                )
            except Ended as end:
                output = f"the submission's process ended during this test: {end}"
                if str(end).startswith("not run"):
                    ended = output = str(end)
            except Exception as err:  # noqa: BLE001 - a result so odd that a check itself broke on it
                output = (
                    f"the grader could not finish this check on what your function returned ({type(err).__name__}: "
                    f"{err}): look at the types and shapes it returns"
                )
            finally:
                torch.set_num_threads(threads)
        if output and test.kind != "integration":
            failed_functions.update({f: test.name for f in test.functions if f not in failed_functions})
        if len(output) > MAX_OUTPUT:
            output = output[:MAX_OUTPUT] + f"\n[... {len(output) - MAX_OUTPUT:,} more characters not shown]"
        results.append(
            Result(
                test.name,
                test.kind,
                test.functions,
                test.points,
                0.0 if output else test.points,
                output,
                time.perf_counter() - t0,
                test.visibility,
            )
        )
    return results, left_out, tests


# --- calling the learner's function ------------------------------------------------------------------------------


def call(fn: Callable, name: str, *args) -> Any:
    """``fn(*args)``, with any exception turned into a :class:`Fail` that says where in the learner's code."""
    try:
        return fn(*args)
    except NotImplementedError as err:
        said = f" ({str(err)[:300]})" if str(err) else ""
        raise Fail(
            f"`{name}` is not implemented yet: it raises NotImplementedError{said}. Write its body, then check again."
        ) from None
    except Fail:
        raise
    except Exception as err:  # noqa: BLE001 - the learner's code may raise anything; the message says what
        raise Fail(f"`{name}` raised {raised(err)}") from None


def raised(err: Exception) -> str:
    """``TypeError: message (in your code, line N: ...)``, for an exception of this process or of the
    submission's (:class:`sandbox.grade.remote.SubmissionError` carries its type, message and line as data)."""
    type_name = getattr(err, "type_name", type(err).__name__)
    message = getattr(err, "message", str(err))
    found = err.where() if callable(getattr(err, "where", None)) else where(err)
    return f"{type_name}: {message}{found}"


def where(err: BaseException) -> str:
    """`` (your code, line N: ...)``: the last frame of the traceback outside torch and the sandbox package."""
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if not any(Path(f.filename).resolve().is_relative_to(d) for d in (PACKAGE_DIR, TORCH_DIR))]
    if not own:
        return ""
    f = own[-1]
    src = f" `{f.line.strip()}`" if f.line else ""
    return f" (in your code, line {f.lineno}:{src})"


# --- describing and comparing values -----------------------------------------------------------------------------


def describe(x: Any) -> str:
    """``a float32 tensor of shape (4, 1)``, ``a float (2.5)``, ``None``, ``a tuple of 2``..."""
    if isinstance(x, Tensor):
        return f"a {str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}"
    if x is None:
        return "None"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    if isinstance(x, (bool, int, float)):
        return f"a {type(x).__name__} ({x!r})"
    return f"a {type(x).__name__}"


def show(t: Tensor, digits: int = 4, limit: int = 16) -> str:
    """A small tensor as text (rounded), or its shape when it is large."""
    if not isinstance(t, Tensor):
        return repr(t)
    if t.numel() > limit:
        return f"<{describe(t)}>"
    if t.dtype == torch.bool:
        return str(t.int().tolist()).replace("1", "T").replace("0", "F")
    values = t.detach().double().tolist()
    return str(_round(values, digits))


def _round(v, digits):
    if isinstance(v, list):
        return [_round(x, digits) for x in v]
    return float(f"{v:.{digits}g}") if math.isfinite(v) else v


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    idx = []
    for size in reversed(shape):
        idx.append(flat % size)
        flat //= size
    return tuple(reversed(idx))


def expect_tensor(
    got: Any,
    want: Tensor,
    what: str = "the result",
    *,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    exact: bool = False,
) -> None:
    """Check ``got`` against the reference ``want``: a tensor, the same shape, the same dtype, finite where ``want``
    is, then equal within ``|got - want| <= atol + rtol * |want|`` (or exactly, for bool and ``exact``)."""
    if not isinstance(got, Tensor):
        raise Fail(f"{what} should be {describe(want)}, got {describe(got)}")
    if got.shape != want.shape:
        extra = ""
        try:
            torch.broadcast_shapes(got.shape, want.shape)
            extra = " (the two shapes broadcast against each other, which would hide the mistake: it is refused)"
        except RuntimeError:
            pass
        raise Fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}{extra}")
    if got.dtype != want.dtype:
        raise Fail(
            f"{what} has dtype {str(got.dtype).removeprefix('torch.')}, expected "
            f"{str(want.dtype).removeprefix('torch.')} (the dtype of the inputs: the trainer keeps float32 throughout)"
        )
    got = got.detach()
    if got.is_floating_point():
        nonfinite = torch.isfinite(want) & ~torch.isfinite(got)
        if bool(nonfinite.any()):
            i = _index(int(nonfinite.flatten().nonzero()[0]), tuple(want.shape))
            raise Fail(
                f"{what} has {int(nonfinite.sum())} NaN or infinite entries, the first at index {i} "
                f"(expected {float(want[i]):.6g})"
            )
    if math.isinf(rtol) or math.isinf(atol):
        return  # expect_like: everything but the values
    if got.dtype == torch.bool or exact:
        bad = got != want
    else:
        bad = ~torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bool(bad.any()):
        flat = int(bad.flatten().nonzero()[0])
        i = _index(flat, tuple(want.shape)) if want.dim() else ()
        where_ = f" at index {i}" if want.dim() else ""
        g, w = got[i], want[i]
        values = (
            f"expected {bool(w)}, got {bool(g)}"
            if want.dtype == torch.bool
            else f"expected {float(w):.6g}, got {float(g):.6g}"
        )
        tol = (
            ""
            if want.dtype == torch.bool or exact
            else f"; tolerance |got - expected| <= {atol:g} + {rtol:g} * |expected|"
        )
        full = f"\n  expected {show(want)}\n  got      {show(got)}" if 1 < want.numel() <= 16 else ""
        raise Fail(f"{what}{where_}: {values} ({int(bad.sum())} of {want.numel()} entries differ{tol}){full}")


def expect_like(got: Any, want: Tensor, what: str = "the result") -> None:
    """Type, shape, dtype and finiteness of ``got`` against ``want``, not the values (before a property test)."""
    expect_tensor(got, want, what, rtol=math.inf, atol=math.inf)


def expect_inputs_unchanged(before: list, after: list, names: list[str], fn: str) -> None:
    for b, a, n in zip(before, after, names):
        if isinstance(b, Tensor) and not torch.equal(b, a):
            raise Fail(
                f"`{fn}` changed its input `{n}` in place: the trainer reuses its tensors after the call",
                hint="work on new tensors (x = x * 2, torch.zeros_like(x)) rather than in place (x *= 2, x[t] = ...)",
            )


def clone(x: Any) -> Any:
    """A deep copy of tensors (detached) inside tuples and lists; other values as they are."""
    if isinstance(x, Tensor):
        return x.detach().clone()
    if isinstance(x, tuple):
        return tuple(clone(v) for v in x)
    if isinstance(x, list):
        return [clone(v) for v in x]
    return x
