"""A grading pool's function that dies on its name, for ``tests/test_grade_class.py``: a module of its own that
imports nothing of the sandbox, so that the pool's processes start in a fraction of a second."""

import os
import types
from pathlib import Path


def dies_on_its_name(path: str, options) -> types.SimpleNamespace:
    """The process dies on a file named ``dies*``, as one the kernel's OOM killer ends; any other file gets a
    stand-in outcome at once (a score of 1, an empty review list)."""
    if Path(path).name.startswith("dies"):
        os._exit(9)
    return types.SimpleNamespace(report=types.SimpleNamespace(score=1, review=[]))
