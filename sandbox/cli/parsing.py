"""A command line read by tyro (its public API only: ``tyro.cli``, ``tyro.conf``, ``tyro.constructors``), and bad
input said in one line that names the argument and what it allows: :func:`parse`, which every ``sandbox`` command
reads its arguments with (``sandbox bench`` and ``sandbox grade`` are handed it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import types
import typing
from typing import Annotated, Literal, Sequence

import tyro


class UsageError(Exception):
    """Bad command-line input; the message is one line."""


# tyro parses every command, through its public API only (tyro.cli, tyro.conf, tyro.constructors). It is asked never
# to refuse a value: each value is read by tyro's own constructor for its field's type, wrapped by a rule of our
# ConstructorRegistry (_read_or_keep) so that a value it cannot read, or a choice outside the choices, comes back as
# an _Unread holding the text, and a flag that takes one value takes zero or one (none given: an _Unread without
# text). The arguments nothing takes come back as tyro's unknown arguments (return_unknown_args). The one line is then
# read from the parsed result (parse): the arguments nothing takes, else the first value not read, in the fields'
# order. What tyro still refuses is a required argument missing: a second parse, of the dataclass with its required
# fields made optional (_missing), names them; or a flag where a positional argument's value belongs (tyro gives every
# token it does not know to the next positional), which names the positionals. Where a dataclass has none of those,
# tyro's own message is kept, with its exit code 2.


@dataclasses.dataclass(frozen=True)
class _Unread:
    """A value tyro could not read as its field's type: the text given (empty: the flag came without its value)."""

    text: tuple[str, ...]


_REGISTRY = tyro.constructors.ConstructorRegistry()
_inside_rule = False  # while _read_or_keep asks tyro for its own constructor (a union asks again for its members)


@_REGISTRY.primitive_rule
def _read_or_keep(info: tyro.constructors.PrimitiveTypeInfo):
    """tyro's own constructor for the field's type, but a value it cannot read becomes an :class:`_Unread`, and a flag
    that takes one value takes zero or one (bools stay tyro's flags)."""
    global _inside_rule
    if _inside_rule or info.type is bool:
        return None
    _inside_rule = True
    try:
        spec = tyro.constructors.ConstructorRegistry.get_primitive_spec(info)
    finally:
        _inside_rule = False
    if not isinstance(spec, tyro.constructors.PrimitiveConstructorSpec):
        return spec
    one = spec.nargs == 1

    def read(text: list[str]):
        if one and len(text) != 1:
            return _Unread(tuple(text))
        try:
            return spec.instance_from_str(text)
        except ValueError:
            return _Unread(tuple(text))

    flag = one and tyro.conf.Positional not in info.markers
    return dataclasses.replace(spec, instance_from_str=read, choices=None, nargs=(0, 1) if flag else spec.nargs)


def _what(tp) -> str:
    """A type as the one-line errors name it: ``int``, ``float or None``, ``[int [int ...]]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join([_what(a) for a in args if a is not type(None)] + ["None"] * (type(None) in args))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple and args[-1:] == (Ellipsis,):
        return f"[{_what(args[0])} [{_what(args[0])} ...]]"
    if origin is dict:
        pair = " ".join(map(_what, args))
        return f"[{pair} [{pair} ...]]"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _positional(cls, name: str) -> bool:
    return tyro.conf.Positional in getattr(typing.get_type_hints(cls, include_extras=True)[name], "__metadata__", ())


def _argument(cls, name: str) -> str:
    """How messages name field ``name`` of ``cls``: ``--dropout-mode``, or ``run-dir`` for a positional."""
    return ("" if _positional(cls, name) else "--") + name.replace("_", "-")


def _first_unread(parsed) -> str | None:
    """The one line for the first value of ``parsed`` (a dataclass; its nested dataclasses' flags are unprefixed,
    tyro.conf.OmitArgPrefixes) that was not read, in the order of the fields; None if every value was."""
    hints = typing.get_type_hints(type(parsed))
    for f in dataclasses.fields(parsed):
        value = getattr(parsed, f.name)
        if isinstance(value, _Unread):
            name, tp = _argument(type(parsed), f.name), hints[f.name]
            if not value.text:
                return f"{name}: missing or unexpected value"
            if typing.get_origin(tp) is Literal and len(value.text) == 1:
                return f"{name}: invalid choice {value.text[0]!r}; one of: {', '.join(map(str, typing.get_args(tp)))}"
            return f"{name}: cannot read {', '.join(map(repr, value.text))} as {_what(tp)}"
        if dataclasses.is_dataclass(value) and (problem := _first_unread(value)) is not None:
            return problem
    return None


def _missing(cls, args: list[str]) -> list[str]:
    """The required arguments of ``cls`` that ``args`` lacks: a parse of ``cls`` with each of them optional (None)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields, required = [], []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
            meta = getattr(tp, "__metadata__", ())
            tp = Annotated[(typing.get_args(tp)[0] | None, *meta)] if meta else tp | None
            fields.append((f.name, tp, dataclasses.field(default=None)))
        else:
            fields.append((f.name, tp, dataclasses.field(default=f.default, default_factory=f.default_factory)))
    try:
        relaxed = tyro.cli(dataclasses.make_dataclass(cls.__name__, fields), args=args, registry=_REGISTRY,
                           return_unknown_args=True, console_outputs=False)[0]  # fmt: skip
    except SystemExit:
        return []
    return [_argument(cls, name) for name in required if getattr(relaxed, name) is None]


def parse(cls, args: Sequence[str], prog: str, default=None, description: str | None = None):
    """``tyro.cli(cls)`` on ``args``; bad input raises a one-line :class:`UsageError` (see the comment above).
    ``--help`` prints the help and exits with 0, as tyro does."""
    options = dict(args=list(args), prog=prog, description=description, registry=_REGISTRY, return_unknown_args=True)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            parsed, unknown = tyro.cli(cls, **options, **({} if default is None else {"default": default}))
    except SystemExit as exit_:
        if exit_.code not in (0, None) and default is None:
            if missing := _missing(cls, list(args)):
                raise UsageError(f"missing required arguments: {', '.join(missing)}") from None
            if positional := [_argument(cls, f.name) for f in dataclasses.fields(cls) if _positional(cls, f.name)]:
                raise UsageError(
                    f"{', '.join(positional)}: missing or unexpected value"
                ) from None  # a flag in its place
        sys.stderr.write(captured.getvalue())
        raise
    sys.stderr.write(captured.getvalue())
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see --help)")
    if (problem := _first_unread(parsed)) is not None:
        raise UsageError(problem)
    return parsed
