"""A run's seam on the record: which functions of :class:`sandbox.maths.Maths` it replaced, written so that
``config.json`` cannot say one thing while the run did another.

A replaced function is named in the config's ``maths`` field, ``{"gae": "mymod:my_gae#3f2a9c1b0d4e"}``: where to import
it from (``module:qualname``) and the first 12 hex digits of the SHA-256 of its source (``inspect.getsource``; a
function whose source Python cannot find, typed at a bare interpreter prompt, is hashed by its compiled code). The
hash covers the function's own source, not what it calls.

Both ways in end in the same record (:func:`settle`): ``--maths gae mymod:my_gae`` (a sweep spec's ``maths = {gae =
"mymod:my_gae"}``) imports the function in the process that trains and adds the hash; ``sandbox.train(cfg,
maths=Maths(gae=my_gae))`` names and hashes the function it was given. A hash given in the config must match the
source as it is now (a resumed run, a sweep run again: a function changed since is refused), and a config that names
a function while the ``Maths`` passed holds another is refused.

The rule for replacements, so that a replacement is never silently ignored and the record never lies: a function the
config names must be one the run calls as configured (:data:`CALLED`: not ``kl_k2`` while ``--kl-estimator k3``, not
``gae`` on GRPO or on SB3's PPO, which computes its own, not the dropout layer's masks in mode off), else it is
refused; a ``Maths`` object may hold more than the run calls (the homework passes all three KL estimators), and
``config.json`` names only those the run calls. A replaced ``dropout_schedule`` needs ``--dropout-schedule custom``
(:func:`check_schedule`): with a built-in name, ``config.json`` would say "constant" while the function decides p.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from typing import Callable

from ..config import KINDS, Config, ConfigError, import_user_module
from ..maths import Maths

HASH_DIGITS = 12


def source_hash(fn: Callable) -> str:
    """The first :data:`HASH_DIGITS` hex digits of the SHA-256 of ``fn``'s source: its compiled code's bytes,
    constants and names where Python has no source for it, its name where it has neither."""
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = (
            code.co_code + repr((code.co_consts, code.co_names, code.co_varnames)).encode()
            if code is not None
            else _qualified(fn).encode()
        )
    return hashlib.sha256(text).hexdigest()[:HASH_DIGITS]


def _innermost(fn: Callable) -> Callable:
    """What a wrapper stands for, as :mod:`inspect` reads it: a ``functools.wraps`` wrapper (``__wrapped__``: a spy,
    a recorder that only watches) is the function it wraps; a partial's ``func`` and a callable object's ``fn`` (the
    grader's recorders) are followed too. A plain function is itself."""
    for _ in range(10):
        if inspect.isfunction(fn) and not hasattr(fn, "__wrapped__"):
            return fn
        inner = next((getattr(fn, a) for a in ("__wrapped__", "func", "fn") if callable(getattr(fn, a, None))), None)
        if inner is None:
            return fn
        fn = inner
    return fn


def _qualified(fn: Callable) -> str:
    owner = fn if inspect.isfunction(fn) or inspect.isclass(fn) else type(fn)
    return f"{owner.__module__}:{owner.__qualname__}"


def describe(fn: Callable) -> str:
    """``module:qualname#hash`` of a function given to the seam; for a wrapper (a partial, a recorder, a
    ``functools.wraps`` decorator), of the function it wraps."""
    inner = _innermost(fn)
    return f"{_qualified(inner)}#{source_hash(inner)}"


def load(field: str, name: str) -> Callable:
    """The function ``name`` (``module:qualname``, optionally ``#hash``) names, imported; a one-line error naming
    ``--maths`` when it cannot be imported or its source no longer has that hash."""
    where, _, want = name.partition("#")
    module, colon, qualname = where.partition(":")
    if not colon or not module or not qualname:
        raise ConfigError("maths", f"{field}: expected module:function, e.g. mymod:my_{field}, got {name!r}")
    if module == "__main__" or "<locals>" in qualname:
        raise ConfigError(
            "maths",
            f"{field}: {where} was defined in a notebook, a script or another function and cannot be imported by "
            "name in another process; put it in a module (a .py file importable from where sandbox runs)",
        )
    obj = import_user_module(module, "maths")
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ConfigError("maths", f"{field}: module {module} has no {qualname}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError("maths", f"{field}: {where} is not a function")
    if want and source_hash(obj) != want:
        raise ConfigError(
            "maths",
            f"{field}: the source of {where} has changed since this config was written (hash {source_hash(obj)}, "
            f"the config says {want}); start a new run (another --out) for the new function",
        )
    return obj


def settle(cfg: Config, maths: Maths | None = None) -> tuple[Config, Maths]:
    """The config with its ``maths`` field naming, with hashes, every replaced function the run calls, and the seam
    the run trains with. ``cfg.maths`` names functions (imported here), ``maths`` holds them (named here), or both
    (they must agree). A function the config names must be one the run calls (:data:`CALLED`); one a ``Maths``
    object holds and the run does not call is left out of the record (it does not change the run: the homework
    passes all three KL estimators where one is used). Raises :class:`~sandbox.config.ConfigError` in one line for a
    name that does not import, a hash that does not match, a disagreement, a named function the run never calls, or
    a schedule against the rule (:func:`check_schedule`)."""
    for field in cfg.maths:
        _field(field)
        why = CALLED[field](cfg)
        if why is not None:
            raise ConfigError(
                "maths",
                f"{field} is replaced ({cfg.maths[field]}) but this run never calls it: {why}; refused rather than "
                "ignored",
            )
    defaults = Maths()
    if maths is None:  # the functions the config names, imported (and their sources checked against the hashes)
        named = {
            k: fn for k, fn in ((f, load(f, name)) for f, name in cfg.maths.items()) if fn is not getattr(defaults, k)
        }
        maths = dataclasses.replace(defaults, **named) if named else defaults
    held = {k: fn for k, fn in maths.replaced().items() if _innermost(fn) is not getattr(defaults, k)}
    calls = {field: describe(fn) for field, fn in sorted(held.items()) if CALLED[field](cfg) is None}
    for field, name in cfg.maths.items():  # a config that names functions and a Maths passed with it must agree
        have = calls.get(field, "ours")
        if name.split("#")[0] == "sandbox.maths:" + field and have == "ours":
            continue
        if have == "ours" or (have != name if "#" in name else have.split("#")[0] != name):
            raise ConfigError("maths", f"{field}: the config names {name} but the Maths passed holds {have}")
    cfg = cfg.replace(maths=calls)
    check_schedule(cfg)
    return cfg, maths


def _field(name: str) -> bool:
    fields = [f.name for f in dataclasses.fields(Maths)]
    if name not in fields:
        raise ConfigError("maths", f"unknown seam field {name!r}; one of: {', '.join(fields)}")
    return True


def _kinds(*kinds: str, why: str = "") -> Callable[[Config], str | None]:
    def called(cfg: Config) -> str | None:
        return None if cfg.kind in kinds else f"{KINDS[cfg.kind]} does not use it{why if cfg.kind == 'sb3-ppo' else ''}"

    return called


def _kl(estimator: str) -> Callable[[Config], str | None]:
    def called(cfg: Config) -> str | None:
        if cfg.beta == 0:
            return "there is no KL term (--beta 0)"
        in_loss = cfg.kl_in == "loss" and cfg.kl_estimator == estimator
        in_reward = estimator == "k1" and cfg.kl_in == "reward"
        return (
            None if in_loss or in_reward else f"--kl-estimator {cfg.kl_estimator} with --kl-in {cfg.kl_in} uses another"
        )

    return called


def _dropout_layer(cfg: Config) -> str | None:
    if not cfg.mode.uses_dropout or (cfg.dropout == 0 and cfg.dropout_schedule != "custom"):
        return "it has no dropout (mode off or p = 0)"
    return None


_SB3 = " (SB3's PPO computes its own advantages and losses)"
CALLED: dict[str, Callable[[Config], str | None]] = {
    "gae": _kinds("ppo", "ppo-lang", why=_SB3),
    "ppo_loss": _kinds("ppo", "ppo-lang", "grpo", "grpo-lang", why=_SB3),
    "value_loss": _kinds("ppo", "ppo-lang", why=_SB3),
    "kl_k1": _kl("k1"),
    "kl_k2": _kl("k2"),
    "kl_k3": _kl("k3"),
    "group_advantages": _kinds("grpo", "grpo-lang"),
    "length_penalty_rewards": lambda c: None if c.length_penalty > 0 else "it has no --length-penalty",
    "grpo_lambda_switch": lambda c: None if c.grpo_lambda is not None else "it has no --grpo-lambda",
    "aggregate_loss": _kinds("ppo-lang", "grpo", "grpo-lang", why=_SB3),
    "adaptive_beta": lambda c: None if c.kl_target is not None else "it has no --kl-target",
    "dropout_mask": _dropout_layer,
    "apply_dropout": _dropout_layer,
    "layer_mask": lambda c: None,  # every forward pass of a dropout layer asks it for its mask, in every mode
    "sample_dropout_mask": lambda c: None if c.sample_dropout != "none" else "its --sample-dropout is none",
    "dropout_schedule": lambda c: None,  # every run calls it once per update (the rule for it: check_schedule)
}
"""Seam field -> ``called(cfg)``: None when a run with that config calls the field's function, else why it does
not (tests/test_provenance.py checks every entry against the calls of real runs)."""


def check_schedule(cfg: Config) -> None:
    """A replaced dropout schedule goes with ``--dropout-schedule custom``, and ``custom`` with a replaced schedule:
    the schedule is the one function of the seam that *is* a config choice (the others get the choice as an argument,
    ``--kl-estimator``, ``--loss-agg``, and honour it under the same contract)."""
    replaced = "dropout_schedule" in cfg.maths
    if replaced and cfg.dropout_schedule != "custom":
        raise ConfigError(
            "dropout_schedule",
            f"is {cfg.dropout_schedule!r} but the seam replaces the schedule ({cfg.maths['dropout_schedule']}); set "
            "--dropout-schedule custom so that config.json says the function decides p",
        )
    if cfg.dropout_schedule == "custom" and not replaced:
        raise ConfigError(
            "dropout_schedule",
            "custom needs your schedule: --maths dropout_schedule module:function, or "
            "sandbox.train(cfg, maths=Maths(dropout_schedule=...))",
        )
    if replaced and not cfg.mode.uses_dropout:
        raise ConfigError("dropout_schedule", "custom: mode off has no dropout to schedule")
