"""Whether a submission reaches the shipped answers, read from its source in the grader's process (where the
submission cannot change the verdict), and how close each function's code is to ours.

The package a student installs holds every answer: ``sandbox/maths.py``, ``sandbox/dropout.py``, the grader's own
modules, the reading editions, and in a checkout ``tests/homework_answers.py``. Three readings of the source:

- **flags** (the function's tests score 0, unless ``--allow-reference``): a graded function that is bound to
  something of the sandbox package (``from sandbox.maths import gae``, ``gae = m.gae``), or whose body (or a helper
  it calls, followed through the submission's own functions) uses a name bound to the package; and, for the whole
  submission, code that changes the package's modules (``sandbox.grade.core.expect_tensor = ...``, ``setattr``).
  The submission's process adds what it saw at run time (:mod:`sandbox.grade.worker`): the package's code running
  inside a graded call, a copy compiled from the package's source, the watch turned off.
- **review notes** (the instructor only): the answer-holding modules imported, files of the package read, dynamic
  imports (``importlib``, ``__import__``, ``sys.modules``), ``inspect``, ``exec``/``eval``/``compile``, ``open``
  of the package's files, threads or subprocesses, torch patched. None of them costs points by itself.
- **similarity** (the instructor only): per function, 0 to 1, the share of the normalised token sequence (names
  renamed in order of appearance, docstrings and comments dropped) that the student's definition shares with ours
  (difflib's ratio). A pasted copy scores near 1; a correct answer written independently usually well below (the
  shortest functions, a one-line formula, come close whoever writes them: read them with that in mind).
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import difflib
import inspect
import io
import keyword
import token
import tokenize
from typing import Callable, Iterable

ANSWER_MODULES = ("sandbox.maths", "sandbox.dropout", "sandbox.reading", "sandbox.grade.", "homework_answers")
"""Modules that hold answers: importing one is a review note (the package's ``check`` lives in ``sandbox.grade``,
imported by every homework notebook, and is not one of them)."""

DYNAMIC = {
    "importlib": "imports modules by name (importlib)",
    "__import__": "imports modules by name (__import__)",
    "exec": "runs code from a string (exec)",
    "eval": "evaluates a string (eval)",
    "compile": "compiles code from a string (compile)",
    "inspect": "inspects code (inspect)",
    "globals": "reads the module's globals()",
    "vars": "reads namespaces with vars()",
    "__builtins__": "reaches __builtins__",
    "builtins": "reaches the builtins module",
    "gc": "walks live objects (gc)",
    "ctypes": "uses ctypes",
    "subprocess": "starts processes (subprocess)",
    "multiprocessing": "starts processes (multiprocessing)",
    "threading": "starts threads (threading)",
    "concurrent": "starts threads or processes (concurrent.futures)",
    "marshal": "loads code objects (marshal)",
    "pickle": "unpickles data (pickle)",
    "linecache": "reads source lines (linecache)",
}
SUSPECT_STRINGS = (
    "maths.py",
    "dropout.py",
    "sandbox/",
    "homework_answers",
    "/proc",
    "site-packages",
    ".pth",
    "sitecustomize",
    "usercustomize",
)


@dataclasses.dataclass
class Reading:
    """What the source says: ``flags`` per graded function (``*``: the whole submission), ``review`` notes, and each
    graded function's definition as source (for the similarity)."""

    flags: dict[str, list[str]]
    review: list[str]
    definitions: dict[str, str]


def python_sources(kind: str, cells: list[str], labels: list[str]) -> list[tuple[str, str]]:
    """``(label, Python source)`` per cell; a notebook's magics and shell escapes become the Python IPython would
    run (``get_ipython().run_line_magic(...)``)."""
    if kind != "notebook":
        return list(zip(labels, cells))
    from IPython.core.inputtransformer2 import TransformerManager

    manager = TransformerManager()
    out = []
    for label, cell in zip(labels, cells):
        try:
            out.append((label, manager.transform_cell(cell)))
        except Exception:  # noqa: BLE001 - a cell IPython cannot transform is read as it is
            out.append((label, cell))
    return out


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


class _Bindings:
    """Module-level names bound to the sandbox package (``name -> sandbox.maths.gae``), in source order."""

    def __init__(self):
        self.package: dict[str, str] = {}
        self.values: dict[str, ast.AST] = {}
        self.defs: dict[str, ast.AST] = {}
        self.sources: dict[str, str] = {}

    def resolve(self, node: ast.AST) -> str | None:
        """The package path an expression reaches through a bound name (``m.gae`` -> ``sandbox.maths.gae``)."""
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Name, ast.Attribute)):
                dotted = _dotted(sub)
                if dotted and dotted[0] in self.package:
                    return ".".join([self.package[dotted[0]], *dotted[1:]])
        return None


def read_source(sources: list[tuple[str, str]], functions: Iterable[str]) -> Reading:
    """Read the submission's cells (``(label, source)``, in order) for the graded ``functions``."""
    functions = tuple(functions)
    b = _Bindings()
    flags: dict[str, list[str]] = {}
    review: list[str] = []

    def flag(name: str, why: str) -> None:
        found = flags.setdefault(name, [])
        if why not in found:
            found.append(why)

    def note(why: str) -> None:
        if why not in review:
            review.append(why)

    for label, source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for stmt in _module_level(tree):
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                _imports(stmt, b, label, note)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                b.defs[stmt.name] = stmt
                b.package.pop(stmt.name, None)
                segment = ast.get_source_segment(source, stmt)
                if segment:
                    b.sources[stmt.name] = segment
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                value = stmt.value
                for target in targets:
                    for name in _names(target):
                        b.defs.pop(name, None)
                        b.values[name] = value
                        reached = b.resolve(value) if value is not None else None
                        if reached:
                            b.package[name] = reached
                        else:
                            b.package.pop(name, None)
                        if name in functions and reached:
                            flag(name, f"is bound to {reached} ({label})")
                        if name in functions and value is not None:
                            segment = ast.get_source_segment(source, stmt)
                            if segment:
                                b.sources[name] = segment
        for node in ast.walk(tree):
            _tampering(node, b, label, flag, note)
            _dynamic(node, label, note)
    for name in functions:
        if name in b.package and name not in flags:
            flag(name, f"is bound to {b.package[name]}")
        for why in _reaches(name, b, set()):
            flag(name, why)
    return Reading(flags, review, {n: b.sources[n] for n in functions if n in b.sources})


def _module_level(tree: ast.Module) -> Iterable[ast.stmt]:
    """Statements that run at module level, in order (inside if / try / with / for too, not inside functions)."""

    def walk(stmts: list[ast.stmt]) -> Iterable[ast.stmt]:
        for stmt in stmts:
            yield stmt
            if isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    yield from walk(getattr(stmt, field, []) or [])
                for handler in getattr(stmt, "handlers", []) or []:
                    yield from walk(handler.body)

    return walk(tree.body)


def _names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for t in target.elts for n in _names(t)]
    return []


def _imports(stmt: ast.stmt, b: _Bindings, label: str, note: Callable[[str], None]) -> None:
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            if alias.name == "sandbox" or alias.name.startswith("sandbox.") or alias.name == "homework_answers":
                bound = alias.asname or alias.name.split(".")[0]
                b.package[bound] = alias.name if alias.asname else alias.name.split(".")[0]
                _answer_module(alias.name, label, note)
        return
    module = stmt.module or ""
    if stmt.level or not (module == "sandbox" or module.startswith("sandbox.") or module == "homework_answers"):
        return
    for alias in stmt.names:
        full = f"{module}.{alias.name}"
        b.package[alias.asname or alias.name] = full
        b.defs.pop(alias.asname or alias.name, None)
        _answer_module(full if module in ("sandbox", "sandbox.grade") else module, label, note)


def _answer_module(name: str, label: str, note: Callable[[str], None]) -> None:
    if name == "sandbox.grade.check":
        return
    if any(name == m or name.startswith(m if m.endswith(".") else m + ".") or name == m.rstrip(".")
           for m in ANSWER_MODULES):  # fmt: skip
        if name != "sandbox.grade":
            note(f"imports {name}, which holds reference implementations ({label})")


def _free_names(fn: ast.AST) -> set[str]:
    """Names a function reads that it does not bind itself (parameters, assignments, imports inside it)."""
    loaded, bound = set(), set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
    return loaded - bound


def _inner_imports(fn: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in ("sandbox", "homework_answers")]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.split(".")[0] in ("sandbox", "homework_answers"):
                found += [f"{node.module}.{a.name}" for a in node.names]
    return found


def _reaches(name: str, b: _Bindings, seen: set[str], helper: str | None = None) -> list[str]:
    """Why the graded function ``name`` reaches the package: a name it uses that is bound to the package, or an
    import of the package inside it; followed through the submission's own functions it calls (``helper``)."""
    if name in seen:
        return []
    seen.add(name)
    node = b.defs.get(name) or b.values.get(name)
    if node is None:
        return []
    where = f" in its helper {name}" if helper else ""
    why = [f"imports {m}{where}" for m in _inner_imports(node)]
    for free in sorted(_free_names(node)):
        if free in b.package:
            why.append(f"uses {_first_use(node, free, b)}{where}")
        elif free in b.defs or free in b.values:
            why += _reaches(free, b, seen, helper=free)
    return why


def _first_use(node: ast.AST, name: str, b: _Bindings) -> str:
    """``sandbox.maths.gae`` for ``m.gae`` inside ``node``, with ``m`` bound to ``sandbox.maths``."""
    longest = [name]
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            dotted = _dotted(sub)
            if dotted and dotted[0] == name and len(dotted) > len(longest):
                longest = dotted
    return ".".join([b.package[name], *longest[1:]])


def _tampering(node: ast.AST, b: _Bindings, label: str, flag, note) -> None:
    targets = []
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    elif isinstance(node, ast.Delete):
        targets = node.targets
    for target in targets:
        if isinstance(target, ast.Attribute):
            dotted = _dotted(target)
            if dotted and dotted[0] in b.package:
                flag("*", f"changes the sandbox package ({'.'.join([b.package[dotted[0]], *dotted[1:]])}, {label})")
            elif dotted and dotted[0] == "torch":
                note(f"changes torch ({'.'.join(dotted)}, {label})")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
        if node.args:
            reached = b.resolve(node.args[0])
            if reached:
                flag("*", f"changes the sandbox package ({node.func.id} on {reached}, {label})")
            elif (_dotted(node.args[0]) or [""])[0] == "torch":
                note(f"changes torch ({node.func.id}, {label})")


def _dynamic(node: ast.AST, label: str, note) -> None:
    if isinstance(node, ast.Name) and node.id in DYNAMIC:
        note(f"{DYNAMIC[node.id]} ({label})")
    elif isinstance(node, ast.Attribute):
        dotted = _dotted(node)
        if dotted and ".".join(dotted[:2]) in ("sys.modules", "sys.setprofile", "sys.settrace", "os.system",
                                               "os.popen", "sys.path", "sys.meta_path"):  # fmt: skip
            note(f"uses {'.'.join(dotted[:2])} ({label})")
        elif node.attr == "__code__":
            note(f"reaches a function's code object (__code__, {label})")
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for n in names:
            if n.split(".")[0] in DYNAMIC:
                note(f"{DYNAMIC[n.split('.')[0]]} ({label})")
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
        if len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
            note(f"looks attributes up by computed name (getattr, {label})")
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
        note(f"opens files (open, {label})")
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        hits = [s for s in SUSPECT_STRINGS if s in text]
        if hits:
            note(f"mentions {hits[0]!r} in a string ({label})")


# --- similarity ------------------------------------------------------------------------------------------------

_KEEP = set(keyword.kwlist) | set(dir(builtins)) | {"torch", "math", "np", "numpy", "F"}


def normalised_tokens(source: str) -> list[str]:
    """The function's tokens with its docstring and comments dropped, each local name replaced by ``v<i>`` (in order
    of first appearance), attribute names and library names kept, every string one token."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source.split()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                                             ast.Constant):  # fmt: skip
            if isinstance(body[0].value.value, str):
                body[0] = ast.Pass()
    text = ast.unparse(tree)
    names: dict[str, str] = {}
    out, previous = [], None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (token.COMMENT, token.NL, token.NEWLINE, token.INDENT, token.DEDENT, token.ENDMARKER):
            continue
        if tok.type == token.NAME and tok.string not in _KEEP and previous != ".":
            out.append(names.setdefault(tok.string, f"v{len(names)}"))
        elif tok.type == token.STRING:
            out.append("STR")
        else:
            out.append(tok.string)
        previous = tok.string
    return out


def similarity(a: str, b: str) -> float:
    """0 to 1: how much of the two normalised token sequences match (difflib's ratio)."""
    ta, tb = normalised_tokens(a), normalised_tokens(b)
    if not ta or not tb:
        return 0.0
    return difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


def reference_source(fn: Callable) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
