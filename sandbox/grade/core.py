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
import time
from typing import Any, Callable

import torch
from torch import Tensor

from ..config import ConfigError
from .worker import Timeout, error_info
from .worker import alarm as time_limit


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
    """One function an assignment asks for: its contract, the reference it is compared with, and how two results are
    compared (by the cases, hidden ones included, and by the checks of every call in a training run)."""

    name: str
    signature: str
    reference: Callable
    args: tuple[str, ...]
    rtol: float = 1e-5
    atol: float = 1e-6
    exact: bool = False
    """Compared to the last bit (bool masks, a mask chosen rather than computed)."""
    parts: tuple[str, ...] = ()
    """The names of a tuple result's values (gae's ``advantages``, ``returns``), each compared on its own."""
    what: str = "the result"
    deterministic: bool = True
    """False for functions that draw random numbers: cases cannot compare their values."""
    check: Callable[[Any, list, str], None] | None = None
    """``check(got, args, what)``: compare with the reference on ``args`` where ``compare`` alone is too strict (a
    keep-mask may break a tie the other way); raises :class:`Fail`."""

    def compare(self, got: Any, want: Any, what: str = "", like: bool = False) -> None:
        """Raise :class:`Fail` unless ``got`` matches ``want`` (our result); ``like``: the type, shape, dtype and
        finiteness only, not the values."""
        rtol, atol = (math.inf, math.inf) if like else (self.rtol, self.atol)
        if not self.parts:
            return compare_value(got, want, what or self.what, rtol, atol, self.exact and not like)
        prefix = f"{what}: " if what else ""
        if not isinstance(got, (tuple, list)) or len(got) != len(self.parts):
            raise Fail(f"{prefix}expected {len(self.parts)} values ({', '.join(self.parts)}) of "
                       f"{describe(want[0])[2:]}s; got {describe(got)}")  # fmt: skip
        for part, g, w in zip(self.parts, got, want):
            compare_value(g, w, prefix + part, rtol, atol, self.exact and not like)

    def shaped(self, fns: dict[str, Callable], *args, what: str = "") -> Any:
        """The learner's function on a copy of ``args``, once its result has the type, shape, dtype and finiteness
        of ours on ``args`` (its values are the caller's to check)."""
        got = call(fns[self.name], self.name, *clone(args))
        self.compare(got, self.reference(*args), what, like=True)
        return got


def compare_value(got: Any, want: Any, what: str, rtol: float, atol: float, exact: bool = False) -> None:
    """Any result against ours: tensors by :func:`expect_tensor`, tuples and lists entry by entry, None by identity,
    floats within the tolerance, anything else by equality."""
    if want is None:
        if got is not None:
            raise Fail(f"{what}: expected None, got {describe(got)}")
    elif isinstance(want, Tensor):
        expect_tensor(got, want, what, rtol=rtol, atol=atol, exact=exact)
    elif isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise Fail(f"{what} should be {describe(want)}, got {describe(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            compare_value(g, w, f"{what}[{i}]", rtol, atol, exact)
    elif isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not (math.isinf(rtol) or math.isclose(got, want, rel_tol=rtol, abs_tol=atol)):
            raise Fail(f"{what}: expected {want:.6g}, got {got:.6g}")
    elif got != want:
        raise Fail(f"{what}: expected {want!r:.80}, got {got!r:.80}")


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

        tests = [{"name": r.name, "kind": r.kind, "functions": list(r.functions), "passed": r.passed, "score": r.score,
                  "max_score": r.max_score, "output": r.output, "seconds": round(r.seconds, 3),
                  "visibility": r.visibility} for r in self.results]  # fmt: skip
        return {"assignment": self.assignment, "title": self.title, "submission": self.submission, "score": self.score,
                "max_score": self.max_score, "passed": self.passed, "failed": self.failed,
                "seconds": round(self.seconds, 2), "notes": self.notes, "tests": tests,
                "instructor": {"seed": self.seed, "similarity": self.similarity, "review": self.review},
                "versions": {"sandbox": version("dropout-rl-sandbox"), "torch": torch.__version__}}  # fmt: skip

    def to_gradescope(self) -> dict:
        """Gradescope's autograder ``results.json``: a ``tests`` list of name, score, max_score, status, output and
        visibility (each test's own: the instructor's hidden cases stay hidden). What only the instructor should see
        is one more test of 0 points with visibility ``hidden``, which Gradescope never shows to students."""
        tests = [{"name": r.name, "number": f"{i}", "score": r.score, "max_score": r.max_score,
                  "status": "passed" if r.passed else "failed", "output": r.output or "passed",
                  "visibility": r.visibility} for i, r in enumerate(self.results, start=1)]  # fmt: skip
        tests.append({"name": "instructor only: review", "score": 0, "max_score": 0, "status": "passed",
                      "output": self.instructor_text() or "nothing to review", "visibility": "hidden"})  # fmt: skip
        return {"score": self.score, "execution_time": round(self.seconds, 1), "stdout_visibility": "hidden",
                "output": "\n".join([f"{self.assignment}: {self.title}", *self.notes, self.summary_line()]),
                "tests": tests}  # fmt: skip


def _wrap(line: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False) or [""]


# --- running ---------------------------------------------------------------------------------------------------


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
        tests = [*assignment.build(), *sorted(extra, key=lambda t: VISIBILITY.index(t.visibility))]
        tests = [t for t in tests if (only is None or set(t.functions) & set(only)) and
                 (integration or t.kind != "integration")]  # fmt: skip
        given = {name: fn for name, fn in functions.items() if fn is not None}
        left_out = [t for t in tests if only_given and not set(t.functions) <= set(given)]
        results = _run(assignment, [t for t in tests if t not in left_out], given, clock, test_timeout)
    finally:
        _SEED.reset(token)
    notes = list(notes)
    if left_out:
        notes.append(f"{len(left_out)} tests not run: they need functions not passed to check() "
                     f"({', '.join(sorted({f for t in left_out for f in t.functions} - set(given)))})")  # fmt: skip
    return Report(assignment.key, assignment.title, results, submission, notes, time.perf_counter() - start, seed=seed)


def _run(assignment: Assignment, tests: list[Test], given: dict, clock, cap: float | None) -> list[Result]:
    results: list[Result] = []
    failed_functions: dict[str, str] = {}  # function -> the first test it failed
    threads = torch.get_num_threads()
    ended: str | None = None
    for test in tests:
        missing = [f for f in test.functions if f not in given]
        t0 = time.perf_counter()
        output = ""
        if missing:
            spec = assignment.functions.get(missing[0])
            wanted = f" (define `{spec.signature}`)" if spec else ""
            output = f"no function named `{missing[0]}` in the submission{wanted}"
        elif test.kind == "integration" and (broken := [f for f in test.functions if f in failed_functions]):
            output = (f"not run: `{'`, `'.join(broken)}` failed a case or property above; a training run with it "
                      "would say less than that case does. Fix those first.")  # fmt: skip
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
                output = (f"took longer than {limit:g} s, the grader's limit for this test: a Python loop over every "
                          "entry, or a loop that never ends?")  # fmt: skip
            except Ended as end:
                output = f"the submission's process ended during this test: {end}"
                if str(end).startswith("not run"):
                    ended = output = str(end)
            except Exception as err:  # noqa: BLE001 - a result so odd that a check itself broke on it
                output = (f"the grader could not finish this check on what your function returned "
                          f"({type(err).__name__}: {err}): look at the types and shapes it returns")  # fmt: skip
            finally:
                torch.set_num_threads(threads)
        if output and test.kind != "integration":
            failed_functions.update({f: test.name for f in test.functions if f not in failed_functions})
        if len(output) > MAX_OUTPUT:
            output = output[:MAX_OUTPUT] + f"\n[... {len(output) - MAX_OUTPUT:,} more characters not shown]"
        results.append(Result(test.name, test.kind, test.functions, test.points, 0.0 if output else test.points,
                              output, time.perf_counter() - t0, test.visibility))  # fmt: skip
    return results


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


def raised(err: BaseException) -> str:
    """``TypeError: message (in your code, line N: `...`)``, for an exception of this process or of the submission's
    (:class:`sandbox.grade.remote.SubmissionError` carries :func:`~sandbox.grade.worker.error_info`'s data)."""
    info = getattr(err, "info", None) or error_info(err)
    at = info["where"]
    src = f" `{at['source']}`" if at and at.get("source") else ""
    return f"{info['type']}: {info['message']}" + (f" (in your code, line {at['line']}:{src})" if at else "")


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


def expect_tensor(got: Any, want: Tensor, what: str = "the result", *, rtol: float = 1e-4, atol: float = 1e-6,
                  exact: bool = False) -> None:  # fmt: skip
    """Check ``got`` against the reference ``want``: a tensor, the same shape, the same dtype, finite where ``want``
    is, then equal within ``|got - want| <= atol + rtol * |want|`` (or exactly, for bool and ``exact``; an infinite
    tolerance checks everything but the values)."""
    if not isinstance(got, Tensor):
        raise Fail(f"{what} should be {describe(want)}, got {describe(got)}")
    if got.shape != want.shape:
        extra = " (the two shapes broadcast against each other, which would hide the mistake: it is refused)"
        raise Fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}{extra * _broadcasts(got, want)}")
    if got.dtype != want.dtype:
        why = " (the dtype of the inputs: the trainer keeps float32 throughout)" if want.is_floating_point() else ""
        raise Fail(f"{what} has dtype {str(got.dtype)[6:]}, expected {str(want.dtype)[6:]}{why}")
    got = got.detach()
    nonfinite = torch.isfinite(want) & ~torch.isfinite(got) if got.is_floating_point() else torch.zeros(0, dtype=bool)
    if bool(nonfinite.any()):
        i = tuple(int(k) for k in nonfinite.nonzero()[0])
        raise Fail(f"{what} has {int(nonfinite.sum())} NaN or infinite entries, the first at index {i} (expected "
                   f"{float(want[i]):.6g})")  # fmt: skip
    if math.isinf(rtol) or math.isinf(atol):
        return
    exact = exact or got.dtype == torch.bool
    bad = got != want if exact else ~torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bool(bad.any()):
        i = tuple(int(k) for k in bad.nonzero()[0]) if want.dim() else ()
        g, w = got[i], want[i]
        values = (f"expected {bool(w)}, got {bool(g)}" if want.dtype == torch.bool else
                  f"expected {float(w):.6g}, got {float(g):.6g}")  # fmt: skip
        tol = "" if exact else f"; tolerance |got - expected| <= {atol:g} + {rtol:g} * |expected|"
        full = f"\n  expected {show(want)}\n  got      {show(got)}" if 1 < want.numel() <= 16 else ""
        at = f" at index {i}" if want.dim() else ""
        raise Fail(f"{what}{at}: {values} ({int(bad.sum())} of {want.numel()} entries differ{tol}){full}")


def _broadcasts(a: Tensor, b: Tensor) -> bool:
    try:
        torch.broadcast_shapes(a.shape, b.shape)
        return True
    except RuntimeError:
        return False


def clone(x: Any) -> Any:
    """A deep copy of tensors (detached) inside tuples and lists; other values as they are."""
    if isinstance(x, Tensor):
        return x.detach().clone()
    if isinstance(x, tuple):
        return tuple(clone(v) for v in x)
    if isinstance(x, list):
        return [clone(v) for v in x]
    return x
