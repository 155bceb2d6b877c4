r"""Cases as data: a function's name, its arguments, points and a hint; the submission's process evaluates the call,
the grader compares the result with the reference on those arguments (or with the values the case gives). The
built-in cases of every assignment, an instructor's hidden cases (``--hidden DIR`` reads ``DIR/hwN.json``, kept out
of the students' copy) and the cases of an instructor's own assignment (:mod:`sandbox.grade.custom`) all have this
shape and become :class:`~sandbox.grade.core.Test`\ s here: adding one touches neither the tests' code nor the
process boundary (the submission's process only ever evaluates a call on the arguments it is sent).

The format (``notebooks/homework/README.md`` has a full example)::

    {"cases": [
        {"name": "a truncation at the very first step",      # shown in the report (hidden ones as "hidden: <name>")
         "function": "gae",                                   # one of the assignment's functions
         "args": {"rewards": [[1.0], [0.5]], "values": [[0.2], [0.1]], "next_values": [[0.3], [0.0]],
                  "terminated": [[0.0], [0.0]], "dones": [[1.0], [0.0]], "gamma": 0.99, "gae_lambda": 0.95},
         "points": 2,                                         # optional, default 1
         "visibility": "after_due_date",                      # optional (Gradescope); hidden cases' default
         "hint": "a truncation bootstraps",                   # optional: printed when the case fails
         "dtypes": {"terminated": "float32"},                 # optional: per argument, float32 / float64 / bool / int64
         "expected": [[[1.2], [0.4]], [[1.4], [0.5]]]}        # optional: default, the reference on these args
    ]}

Lists become tensors (float32, or bool when every entry is true/false, unless ``dtypes`` says otherwise); numbers,
strings and null are passed as they are. Arguments with a default of None in the reference (``clip_coef_high``,
``max_len``) may be left out. Without ``expected`` the case is compared with the reference at grading time, with the
function's tolerance; with it, with the given values (a tuple result is a list, e.g. gae's ``[advantages,
returns]``). Functions that draw random numbers (``dropout_mask``) or take a function (``layer_mask``) cannot have
cases as data.

Optional too: ``calls`` instead of ``args``, several calls that must all match (a list of ``{"args": ..., "expected":
..., "case": ...}``); ``check``: ``values`` (the default), ``like`` (the type, shape, dtype and finiteness of the
result, not its values), ``unchanged`` (a well-formed result, and every tensor argument as it was before the call) or
``gradient`` (the gradient of ``sum(weights * result)`` with respect to the argument ``wrt``, against ours;
``weights`` default to ones); ``case``, the text a failure shows instead of the arguments; ``kind``, ``case`` or
``property`` (for the report). The built-in cases draw their random arguments from the grading seed when the tests
are built.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from .core import VISIBILITY, ArgumentError, Assignment, Fail, FunctionSpec, Test, call, clone, compare_value, show

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bool": torch.bool, "int64": torch.int64}
FIELDS = {"name", "function", "args", "calls", "points", "visibility", "hint", "dtypes", "expected", "check", "case",
          "kind", "wrt", "weights"}  # fmt: skip
CHECKS = ("values", "like", "unchanged", "gradient")


def hidden_tests(assignment: Assignment, directory: str | Path) -> list[Test]:
    """The cases of ``directory/<key>.json`` as tests (named ``hidden: <name>``, visibility ``after_due_date`` unless
    a case says otherwise); a bad file is a one-line :class:`ConfigError` naming ``--hidden``."""
    path = Path(directory) / f"{assignment.key}.json"
    if not Path(directory).is_dir():
        raise ConfigError("hidden", f"{directory} is not a directory")
    if not path.is_file():
        raise ConfigError("hidden", f"no hidden cases for {assignment.key}: expected {path}")
    return case_tests(assignment.key, assignment.functions, read_json(path, "hidden")["cases"], str(path), "hidden")


def read_json(path: Path, field: str, keys: dict[str, type] = {"cases": list}) -> dict:  # noqa: B006 - read only
    """The JSON object of a file, with a non-empty value of each type ``keys`` names (the hidden cases' ``cases``
    list; an own assignment's ``functions`` too); a one-line error naming ``field`` when it is not one."""
    try:
        blob = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _error(field, f"{path} is not valid JSON: {err}") from None
    for key, kind in keys.items():
        if not isinstance(blob, dict) or not isinstance(blob.get(key), kind) or not blob[key]:
            shape = "[...]" if kind is list else "{...}"
            raise _error(field, f'{path}: expected {{"{key}": {shape}}} with at least one {key.removesuffix("s")}')
    return blob


def case_tests(key: str, functions: dict[str, FunctionSpec], cases: list, where: str, kind: str = "case") -> list[Test]:
    """``cases`` of assignment ``key`` as tests; a case that is already a :class:`Test` (a property written as code)
    is kept as it is, in its place. ``kind``: ``case`` (built in: visible, named as given) or ``hidden`` (``hidden:
    <name>``, ``after_due_date`` by default). A bad case is a :class:`ConfigError` naming ``--hidden`` for hidden
    ones, ``HW`` (the assignment) otherwise."""
    return [c if isinstance(c, Test) else _test(key, functions, f"{where}, case {i}", c, kind)
            for i, c in enumerate(cases, start=1)]  # fmt: skip


def _test(key: str, functions: dict[str, FunctionSpec], where: str, case: Any, kind: str) -> Test:
    field = "hidden" if kind == "hidden" else "HW"
    if not isinstance(case, dict):
        raise _error(field, f"{where}: a case is an object with name, function and args")
    unknown = sorted(set(case) - FIELDS)
    if unknown:
        raise _error(field, f"{where}: unknown field {unknown[0]!r}")
    name, fname, check = case.get("name"), case.get("function"), case.get("check", "values")
    if not isinstance(name, str) or not name:
        raise _error(field, f"{where}: needs a name")
    if fname not in functions:
        raise _error(field, f"{where}: unknown function {fname!r}; {key} has {', '.join(functions)}")
    spec = functions[fname]
    if not spec.deterministic or "draw" in spec.args:
        raise _error(field, f"{where}: {fname} draws random numbers or takes a function: a case cannot "
                          "compare its values")  # fmt: skip
    points = case.get("points", 1)
    if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
        raise _error(field, f"{where}: points must be a positive number, got {points!r}")
    visibility = case.get("visibility", "after_due_date" if kind == "hidden" else "visible")
    if visibility not in VISIBILITY:
        raise _error(field, f"{where}: visibility must be one of {', '.join(VISIBILITY)}")
    if check not in CHECKS:
        raise _error(field, f"{where}: check must be one of {', '.join(CHECKS)}")
    given = case["calls"] if "calls" in case else [{k: case[k] for k in ("args", "expected", "case") if k in case}]
    if not isinstance(given, list) or not given or not all(isinstance(c, dict) for c in given):
        raise _error(field, f"{where}: calls must be a list of objects with args")
    if check == "gradient" and case.get("wrt") not in spec.args:
        raise _error(field, f"{where}: wrt must name one of the arguments of {spec.name} ({', '.join(spec.args)})")
    calls, wrt, weights = [], case.get("wrt"), case.get("weights")
    weights = _value(weights, None, f"{where}, weights", field) if weights is not None else None
    for c in given:
        args = _args(spec, c.get("args"), case.get("dtypes") or {}, where, field)
        expected = c.get("expected")
        calls.append((args, None if expected is None else _expected(spec, expected, args, where, field), c.get("case")))

    def run(fns):
        for args, expected, about in calls:
            try:
                evaluate(spec, fns[fname], args, expected, check, wrt, weights)
            except Fail as f:
                raise Fail(f.problem, None if kind == "hidden" else about or f.case, f.hint) from None

    shown = case.get("case") or (", ".join(f"{n} {show(a)}" for n, a in zip(spec.args, calls[0][0]) if a is not None)
                                 if len(calls) == 1 else "")  # fmt: skip
    return Test(f"hidden: {name}" if kind == "hidden" else name, (fname,), run, float(points),
                kind=kind if kind == "hidden" else case.get("kind", "case"), case="" if kind == "hidden" else shown,
                hint=case.get("hint") or "", visibility=visibility)  # fmt: skip


def evaluate(spec: FunctionSpec, fn, args: list, expected: Any = None, check: str = "values", wrt: str | None = None,
             weights: torch.Tensor | None = None) -> None:  # fmt: skip
    """Call ``fn`` (the submission's) on a copy of ``args`` and compare its result (see the module's ``check``)."""
    if check == "gradient":
        i = spec.args.index(wrt)
        got, want = (_gradient(f, spec.name, args, i, wrt, weights) for f in (fn, spec.reference))
        return compare_value(got, want, f"d {spec.what.removeprefix('the ')} / d {wrt}", spec.rtol, spec.atol)
    if check == "unchanged":
        before = clone(args)
        got = call(fn, spec.name, *args)
        spec.compare(got, spec.reference(*before), like=True)
        for b, a, n in zip(before, args, spec.args):
            if isinstance(b, torch.Tensor) and not torch.equal(b, a):
                raise Fail(f"`{spec.name}` changed its input `{n}` in place: the trainer reuses its tensors after the "
                           "call", hint="work on new tensors (x = x * 2, torch.zeros_like(x)) rather than in place "
                           "(x *= 2, x[t] = ...)")  # fmt: skip
        return
    got = call(fn, spec.name, *clone(args))
    if expected is not None:
        spec.compare(got, expected)
    elif check == "like":
        spec.compare(got, spec.reference(*args), like=True)
    elif spec.check is not None:
        spec.check(got, list(args), "")
    else:
        spec.compare(got, spec.reference(*args))


def _gradient(fn, name: str, args: list, i: int, wrt: str, weights: torch.Tensor | None) -> torch.Tensor:
    """The gradient of ``sum(weights * fn(*args))`` with respect to ``args[i]`` (zeros where it does not reach)."""
    args = clone(args)
    args[i] = args[i].requires_grad_()
    out = call(fn, name, *args)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise Fail(f"the result carries no gradient back to `{wrt}`: the trainer differentiates it",
                   hint="stay in torch: no .item(), .numpy(), .detach() or Python floats on the way")  # fmt: skip
    weights = torch.ones_like(out.detach()) if weights is None else weights
    if out.shape != weights.shape:
        raise Fail(f"the result has shape {tuple(out.shape)}, expected {tuple(weights.shape)}")
    (out * weights).sum().backward()
    return args[i].grad if args[i].grad is not None else torch.zeros_like(args[i])


def _error(field: str, message: str) -> ConfigError:
    """``--hidden: ...`` for a hidden case, ``HW: ...`` (the assignment, a positional argument) for the others."""
    return ConfigError(field, message) if field == "hidden" else ArgumentError(field, message)


def _args(spec: FunctionSpec, given: Any, dtypes: dict, where: str, field: str) -> list:
    if not isinstance(given, dict):
        raise _error(field, f"{where}: args must map the argument names of {spec.signature}")
    unknown = sorted(set(given) - set(spec.args))
    if unknown:
        raise _error(field, f"{where}: {spec.name} has no argument {unknown[0]!r} (it takes "
                          f"{', '.join(spec.args)})")  # fmt: skip
    defaults = {p.name: p.default for p in inspect.signature(spec.reference).parameters.values()}
    out = []
    for name in spec.args:
        if name in given:
            out.append(_value(given[name], dtypes.get(name), f"{where}, argument {name}", field))
        elif defaults.get(name, inspect.Parameter.empty) is None:
            out.append(None)
        else:
            raise _error(field, f"{where}: argument {name!r} is missing")
    return out


def _value(v: Any, dtype: str | None, where: str, field: str) -> Any:
    if dtype is not None and dtype not in DTYPES:
        raise _error(field, f"{where}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(v, list):
        return v
    try:
        return torch.tensor(v, dtype=DTYPES[dtype or ("bool" if _all_bool(v) else "float32")])
    except (TypeError, ValueError, RuntimeError) as err:
        raise _error(field, f"{where}: cannot make a tensor of it ({err})") from None


def _all_bool(v: Any) -> bool:
    return all(_all_bool(x) for x in v) if isinstance(v, list) else isinstance(v, bool)


def _expected(spec: FunctionSpec, expected: Any, args: list, where: str, field: str) -> Any:
    ours = spec.reference(*args)
    if isinstance(ours, tuple):
        if not isinstance(expected, list) or len(expected) != len(ours):
            raise _error(field, f"{where}: expected must be a list of {len(ours)} values ({spec.signature})")
        return tuple(_like(e, o, where, field) for e, o in zip(expected, ours))
    return _like(expected, ours, where, field)


def _like(e: Any, ours: Any, where: str, field: str) -> Any:
    if not isinstance(ours, torch.Tensor):
        return e
    try:
        t = torch.tensor(e, dtype=ours.dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise _error(field, f"{where}: expected: cannot make a tensor of it ({err})") from None
    if t.shape != ours.shape:
        raise _error(field, f"{where}: expected has shape {tuple(t.shape)}, the function returns "
                          f"{tuple(ours.shape)}")  # fmt: skip
    return t
