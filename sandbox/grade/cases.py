r"""Cases as data: a function's name, its arguments, points and a hint, compared here with the reference on those
arguments (or with the values the case gives). The built-in hand cases of each assignment, an instructor's hidden
cases (``--hidden DIR`` reads ``DIR/hwN.json``, kept out of the students' copy) and the cases of an instructor's own
assignment (:mod:`sandbox.grade.custom`) all have this shape, and all become :class:`~sandbox.grade.core.Test`\ s
here: adding one touches neither the tests' code nor the process boundary (the submission's process only ever
evaluates a call on the arguments it is sent).

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
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from .core import VISIBILITY, ArgumentError, Assignment, FunctionSpec, Test, call, clone, show

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bool": torch.bool, "int64": torch.int64}
FIELDS = {"name", "function", "args", "points", "visibility", "hint", "dtypes", "expected"}


def hidden_tests(assignment: Assignment, directory: str | Path) -> list[Test]:
    """The cases of ``directory/<key>.json`` as tests (named ``hidden: <name>``, visibility ``after_due_date`` unless
    a case says otherwise); a bad file is a one-line :class:`ConfigError` naming ``--hidden``."""
    path = Path(directory) / f"{assignment.key}.json"
    if not Path(directory).is_dir():
        raise ConfigError("hidden", f"{directory} is not a directory")
    if not path.is_file():
        raise ConfigError("hidden", f"no hidden cases for {assignment.key}: expected {path}")
    return case_tests(assignment.key, assignment.functions, read_cases(path, "hidden"), str(path), "hidden")


def read_cases(path: Path, field: str) -> list:
    """The ``cases`` list of a JSON file; a one-line :class:`ConfigError` naming ``field`` when it is not one."""
    try:
        blob = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _error(field, f"{path} is not valid JSON: {err}") from None
    cases = blob.get("cases") if isinstance(blob, dict) else None
    if not isinstance(cases, list) or not cases:
        raise _error(field, f'{path}: expected {{"cases": [...]}} with at least one case')
    return cases


def case_tests(key: str, functions: dict[str, FunctionSpec], cases: list, where: str, kind: str = "case") -> list[Test]:
    """``cases`` (dicts of the format above) of assignment ``key`` as tests of ``kind``: ``case`` (built in: visible,
    named as given) or ``hidden`` (``hidden: <name>``, ``after_due_date`` by default). A bad case is a
    :class:`ConfigError` naming ``--hidden`` for hidden ones, ``HW`` (the assignment) otherwise."""
    return [_test(key, functions, f"{where}, case {i}", case, kind) for i, case in enumerate(cases, start=1)]


def _test(key: str, functions: dict[str, FunctionSpec], where: str, case: Any, kind: str) -> Test:
    field = "hidden" if kind == "hidden" else "HW"
    if not isinstance(case, dict):
        raise _error(field, f"{where}: a case is an object with name, function and args")
    unknown = sorted(set(case) - FIELDS)
    if unknown:
        raise _error(field, f"{where}: unknown field {unknown[0]!r}")
    name, fname = case.get("name"), case.get("function")
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
    args = _args(spec, case.get("args"), case.get("dtypes") or {}, where, field)
    expected = case.get("expected")
    if expected is not None:
        expected = _expected(spec, expected, args, where, field)

    def run(fns):
        got = call(fns[fname], fname, *clone(args))
        if expected is not None:
            spec.compare(got, expected, "")
        elif spec.check is not None:
            spec.check(got, list(args), "the result")
        else:
            spec.compare(got, spec.reference(*args), "")

    shown = "" if kind == "hidden" else ", ".join(f"{n} {show(a)}" for n, a in zip(spec.args, args) if a is not None)
    return Test(f"hidden: {name}" if kind == "hidden" else name, (fname,), run, float(points), kind=kind, case=shown,
                hint=case.get("hint") or "", visibility=visibility)  # fmt: skip


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
    defaults = {
        p.name: p.default
        for p in inspect.signature(spec.reference).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    out = []
    for name in spec.args:
        if name in given:
            out.append(_value(given[name], dtypes.get(name), f"{where}, argument {name}", field))
        elif name in defaults and defaults[name] is None:
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
