"""The instructor's hidden cases: ``--hidden DIR`` reads ``DIR/hwN.json``, kept out of the students' copy.

The format (``notebooks/homework/README.md`` has a full example)::

    {"cases": [
        {"name": "a truncation at the very first step",      # shown in the report as "hidden: <name>"
         "function": "gae",                                   # one of the assignment's functions
         "args": {"rewards": [[1.0], [0.5]], "values": [[0.2], [0.1]], "next_values": [[0.3], [0.0]],
                  "terminated": [[0.0], [0.0]], "dones": [[1.0], [0.0]], "gamma": 0.99, "gae_lambda": 0.95},
         "points": 2,                                         # optional, default 1
         "visibility": "after_due_date",                      # optional (Gradescope), default after_due_date
         "hint": "a truncation bootstraps",                   # optional: printed when the case fails
         "dtypes": {"terminated": "float32"},                 # optional: per argument, float32 / float64 / bool / int64
         "expected": [[[1.2], [0.4]], [[1.4], [0.5]]]}        # optional: default, our function on these args
    ]}

Lists become tensors (float32, or bool when every entry is true/false, unless ``dtypes`` says otherwise); numbers,
strings and null are passed as they are. Arguments with a default of None in our function (``clip_coef_high``,
``max_len``) may be left out. Without ``expected`` the case is compared with our function at grading time, with the
tolerance of the built-in cases; with it, with the given values (a tuple result is a list, e.g. gae's
``[advantages, returns]``). Functions that draw random numbers (``dropout_mask``) or take a function
(``layer_mask``) cannot have hidden cases.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from .core import Assignment, FunctionSpec, Test, call, clone

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bool": torch.bool, "int64": torch.int64}
VISIBILITY = ("visible", "hidden", "after_due_date", "after_published")


def hidden_tests(assignment: Assignment, directory: str | Path) -> list[Test]:
    """The cases of ``directory/<key>.json`` as tests; a bad file is a one-line :class:`ConfigError`."""
    path = Path(directory) / f"{assignment.key}.json"
    if not Path(directory).is_dir():
        raise ConfigError("hidden", f"{directory} is not a directory")
    if not path.is_file():
        raise ConfigError("hidden", f"no hidden cases for {assignment.key}: expected {path}")
    try:
        blob = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError("hidden", f"{path} is not valid JSON: {err}") from None
    cases = blob.get("cases") if isinstance(blob, dict) else None
    if not isinstance(cases, list) or not cases:
        raise ConfigError("hidden", f'{path}: expected {{"cases": [...]}} with at least one case')
    return [_test(assignment, path, i, case) for i, case in enumerate(cases, start=1)]


def _test(assignment: Assignment, path: Path, i: int, case: Any) -> Test:
    where = f"{path}, case {i}"
    if not isinstance(case, dict):
        raise ConfigError("hidden", f"{where}: a case is an object with name, function and args")
    unknown = sorted(set(case) - {"name", "function", "args", "points", "visibility", "hint", "dtypes", "expected"})
    if unknown:
        raise ConfigError("hidden", f"{where}: unknown field {unknown[0]!r}")
    name, fname = case.get("name"), case.get("function")
    if not isinstance(name, str) or not name:
        raise ConfigError("hidden", f"{where}: needs a name")
    if fname not in assignment.functions:
        raise ConfigError("hidden", f"{where}: unknown function {fname!r}; {assignment.key} has "
                          f"{', '.join(assignment.functions)}")  # fmt: skip
    spec = assignment.functions[fname]
    if not spec.deterministic or "draw" in spec.args:
        raise ConfigError("hidden", f"{where}: {fname} draws random numbers or takes a function: a hidden case "
                          "cannot compare its values")  # fmt: skip
    points = case.get("points", 1)
    if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
        raise ConfigError("hidden", f"{where}: points must be a positive number, got {points!r}")
    visibility = case.get("visibility", "after_due_date")
    if visibility not in VISIBILITY:
        raise ConfigError("hidden", f"{where}: visibility must be one of {', '.join(VISIBILITY)}")
    args = _args(spec, case.get("args"), case.get("dtypes") or {}, where)
    expected = case.get("expected")
    if expected is not None:
        expected = _expected(spec, expected, args, where)

    def run(fns):
        got = call(fns[fname], fname, *clone(args))
        if expected is not None:
            spec.compare(got, expected, "")
        elif spec.check is not None:
            spec.check(got, list(args), "the result")
        else:
            spec.compare(got, spec.reference(*args), "")

    return Test(f"hidden: {name}", (fname,), run, float(points), kind="hidden", hint=case.get("hint") or "",
                visibility=visibility)  # fmt: skip


def _args(spec: FunctionSpec, given: Any, dtypes: dict, where: str) -> list:
    if not isinstance(given, dict):
        raise ConfigError("hidden", f"{where}: args must map the argument names of {spec.signature}")
    unknown = sorted(set(given) - set(spec.args))
    if unknown:
        raise ConfigError("hidden", f"{where}: {spec.name} has no argument {unknown[0]!r} (it takes "
                          f"{', '.join(spec.args)})")  # fmt: skip
    defaults = {
        p.name: p.default
        for p in inspect.signature(spec.reference).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    out = []
    for name in spec.args:
        if name in given:
            out.append(_value(given[name], dtypes.get(name), f"{where}, argument {name}"))
        elif name in defaults and defaults[name] is None:
            out.append(None)
        else:
            raise ConfigError("hidden", f"{where}: argument {name!r} is missing")
    return out


def _value(v: Any, dtype: str | None, where: str) -> Any:
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError("hidden", f"{where}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(v, list):
        return v
    try:
        if dtype is None:
            dtype = "bool" if _all_bool(v) else "float32"
        return torch.tensor(v, dtype=DTYPES[dtype])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError("hidden", f"{where}: cannot make a tensor of it ({err})") from None


def _all_bool(v: Any) -> bool:
    return all(_all_bool(x) for x in v) if isinstance(v, list) else isinstance(v, bool)


def _expected(spec: FunctionSpec, expected: Any, args: list, where: str) -> Any:
    ours = spec.reference(*args)
    if isinstance(ours, tuple):
        if not isinstance(expected, list) or len(expected) != len(ours):
            raise ConfigError("hidden", f"{where}: expected must be a list of {len(ours)} values ({spec.signature})")
        return tuple(_like(e, o, where) for e, o in zip(expected, ours))
    return _like(expected, ours, where)


def _like(e: Any, ours: Any, where: str) -> Any:
    if not isinstance(ours, torch.Tensor):
        return e
    try:
        t = torch.tensor(e, dtype=ours.dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError("hidden", f"{where}: expected: cannot make a tensor of it ({err})") from None
    if t.shape != ours.shape:
        raise ConfigError("hidden", f"{where}: expected has shape {tuple(t.shape)}, the function returns "
                          f"{tuple(ours.shape)}")  # fmt: skip
    return t
