"""What a submission sees of the sandbox package while it is graded: this file, copied by the grader into the
student's view as ``sandbox/__init__.py`` (:mod:`sandbox.grade.isolation`), never imported inside the package.

A homework notebook imports ``sandbox``, ``from sandbox.grade import check`` and ``sandbox.plots``, and uses
``sandbox.train`` or a network only in cells the grader does not need. So every name of the package can be imported
here, and the few a submission may use are the real thing (``check``, which prints one line and returns a report
that is not ``ok``, and the modules the assignment offers, ``sandbox.plots`` by default); every other name is a
stand-in that raises :class:`NotOffered` when called. A graded function bound to one (``from sandbox.maths import
gae``) is therefore graded as a stub, and a cell that calls one is skipped with a note (the run goes on). No
reference implementation is behind any of them: they are not on the disk or in the memory of the submission's
process.
"""

import importlib.abc
import importlib.machinery
import sys
import types


class NotOffered(NotImplementedError):
    """A piece of the sandbox package that grading does not offer to submissions was called."""


class StandIn:
    """Any name of the package that grading does not offer: its attributes are stand-ins too; calling raises."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return StandIn(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise NotOffered(
            f"{self._name}, which is not offered while grading (a graded function is your own code; the grader "
            "runs the checks and the training itself)"
        )

    def __repr__(self) -> str:
        return f"<{self._name}: not offered while grading>"


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return StandIn(f"sandbox.{name}")


class _Report:
    ok, passed, failed, score, max_score, results = False, 0, 0, 0.0, 0.0, []


def _check(key, *args, **functions):
    print(f"check({key!r}): skipped while `sandbox grade` grades this notebook (it runs the checks itself)")
    return _Report()


class _StandInModule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return StandIn(f"{self.__name__}.{attr}")


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds every ``sandbox.*`` module that is not in the view, as a module of stand-ins (after the real finders)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("sandbox."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


if (
    __name__ == "sandbox"
):  # in the student's view only (imported as sandbox.grade.shim, e.g. by Sphinx, it does nothing)
    sys.meta_path.append(_StandIns())
