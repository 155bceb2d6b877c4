"""An instructor's own assignment, without editing the package: a folder with ``assignment.json`` (the functions'
names and signatures, and the cases as data) and ``reference.py`` (the instructor's reference), graded as
``sandbox grade path/to/folder SUBMISSION``. The reference is imported in the grader's process only: the submission's
process never sees the folder (keep it out of what students receive).

``assignment.json``::

    {"title": "a numerically stable softmax",
     "functions": {"softmax": {"signature": "softmax(x) -> probabilities along the last dim", "args": ["x"],
                               "rtol": 1e-5, "atol": 1e-6}},
     "cases": [{"name": "large logits do not overflow", "function": "softmax", "args": {"x": [[1000.0, 0.0]]},
                "points": 2, "hint": "subtract the row's maximum before exp"}]}

Each case is compared with ``reference.py``'s function of the same name on the case's arguments (or with its
``expected`` values), in the format of :mod:`sandbox.grade.cases`; tensors within the function's tolerance
(``rtol``, ``atol``; by default 1e-5 and 1e-6), other values exactly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .cases import case_tests, read_json
from .core import ArgumentError, Assignment, FunctionSpec

FIELD = "HW (an assignment folder)"


def load_assignment(where: str | Path) -> Assignment:
    """The assignment in folder ``where``; every problem is one line naming ``HW``."""
    folder = Path(where)
    if not (folder / "assignment.json").is_file():
        raise ArgumentError(FIELD, f"{where} is neither hw1 ... hw6 nor a folder holding assignment.json")
    spec = read_json(folder / "assignment.json", FIELD, {"functions": dict, "cases": list})
    reference = _module(folder / "reference.py")
    functions = {}
    for name, f in spec["functions"].items():
        fn = getattr(reference, name, None)
        if not callable(fn) or not isinstance(f, dict) or not isinstance(f.get("args"), list):
            raise ArgumentError(FIELD, f"function {name!r}: needs args (a list) and a function of that name in "
                                "reference.py")  # fmt: skip
        functions[name] = FunctionSpec(name, str(f.get("signature", name)), fn, tuple(f["args"]),
                                       float(f.get("rtol", 1e-5)), float(f.get("atol", 1e-6)))  # fmt: skip
    key, cases = folder.resolve().name, spec["cases"]
    case_tests(key, functions, cases, str(folder / "assignment.json"))  # every problem is said now, once
    offers = tuple(spec.get("offers", ("plots",)))
    return Assignment(key, str(spec.get("title", key)), str(spec.get("lesson", "")), functions,
                      lambda: case_tests(key, functions, cases, str(folder)), offers)  # fmt: skip


def _module(path: Path):
    if not path.is_file():
        raise ArgumentError(FIELD, f"{path} does not exist: the reference implementations go there")
    spec = importlib.util.spec_from_file_location(f"_sandbox_reference_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the instructor's file: say what broke, in one line
        raise ArgumentError(FIELD, f"{path} could not be imported ({type(err).__name__}: {err})") from None
    return module
