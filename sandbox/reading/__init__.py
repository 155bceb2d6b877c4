"""The reading editions: PPO and GRPO with dropout, each one file to read from top to bottom, CleanRL's way.

- ``ppo_dropout.py``: PPO on Gymnasium tasks (CartPole, Pendulum, ...) with dropout in the four modes;
- ``grpo_dropout.py``: GRPO on the toy language task ``lang:reverse``, with a tiny GPT-2 and its dropout masks.

Each runs as a script (``python sandbox/reading/ppo_dropout.py --help``) and imports nothing from the rest of the
sandbox, and nor does this package (``lint-imports`` checks it): the engine, ``sandbox.train``, is the same algorithm
made fast, and ``tests/test_reading.py`` checks that the two agree. :func:`show` prints their lines in the lessons,
read from the files themselves, so that a lesson cannot show a copy that has drifted.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

EDITIONS = ("ppo_dropout", "grpo_dropout")
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Excerpt:
    """Lines ``first..last`` of a reading edition: plain text when printed, a Python code block under its file and
    line numbers in a notebook."""

    name: str
    first: int
    last: int
    text: str

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"sandbox/reading/{self.name}.py, lines {self.first}-{self.last}:\n{self.text}"

    def _repr_markdown_(self) -> str:
        return f"`sandbox/reading/{self.name}.py`, lines {self.first}-{self.last}:\n\n```python\n{self.text}\n```"


def source(name: str) -> str:
    """The text of the reading edition ``name`` (``"ppo_dropout"`` or ``"grpo_dropout"``)."""
    if name not in EDITIONS:
        raise ValueError(f"unknown reading edition {name!r}; one of: {', '.join(EDITIONS)}")
    return (HERE / f"{name}.py").read_text()


def show(name: str, start: str, end: str | None = None) -> Excerpt:
    """Lines of the reading edition ``name``, dedented:

    - ``show("ppo_dropout", "gae")``: the function or class ``gae`` (``"Agent.act"``: a method), whole;
    - ``show("ppo_dropout", "# ALGO LOGIC: the update", "# TRY NOT TO MODIFY: a row")``: from the first line that
      contains ``start`` up to, not including, the next line that contains ``end`` (without ``end``: up to the next
      blank line).

    Raises ``ValueError`` when the file has no such name or line, so a lesson fails loudly rather than show nothing.
    """
    lines = source(name).splitlines()
    if all(part.isidentifier() for part in start.split(".")):
        first, last = _definition(name, start)
    else:  # 0-based index of the first line, then of the line after the last
        begin = _find(lines, lambda line: start in line, 0, f"no line containing {start!r}", name)
        ends = (lambda line: end in line) if end else (lambda line: not line.strip())
        first, last = begin + 1, _find(lines, ends, begin + 1, f"no line containing {end!r} after {start!r}", name)
        while last > first and not lines[last - 1].strip():  # no blank lines at the end
            last -= 1
    text = textwrap.dedent("\n".join(lines[first - 1 : last])).rstrip()
    return Excerpt(name, first, last, text)


def _find(lines: list[str], match, begin: int, missing: str, name: str) -> int:
    """The index of the first line from ``begin`` that ``match``es (the end of the file for a blank line)."""
    for i in range(begin, len(lines)):
        if match(lines[i]):
            return i
    if match(""):
        return len(lines)
    raise ValueError(f"sandbox/reading/{name}.py has {missing}")


def _definition(name: str, dotted: str) -> tuple[int, int]:
    """The first and last line (1-based) of the definition ``dotted`` (``gae``, ``Agent.act``), decorators included."""
    body = ast.parse(source(name)).body
    node = None
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            raise ValueError(f"sandbox/reading/{name}.py has no definition {dotted!r}")
        body = node.body
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first, node.end_lineno
