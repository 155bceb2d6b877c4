"""What a checkpoint needs beyond the weights, as plain data: the random streams and the environments' state.

:func:`env_state` writes down everything mutable in a gymnasium env (single or vector, with its wrappers), so that a
run resumed from a checkpoint continues mid-episode exactly; anything it cannot write down is refused rather than
silently lost.
"""

from __future__ import annotations

import enum
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..config import ConfigError


def random_state(rng: np.random.Generator | None = None) -> dict:
    """torch's global random state and, if given, a numpy Generator's."""
    return {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state if rng is not None else None}


def set_random_state(state: dict, rng: np.random.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if rng is not None:
        rng.bit_generator.state = state["numpy"]


_SKIP = object()
_PLAIN = (bool, int, float, str, type(None))


def _inert(v: Any) -> bool:
    """Attributes an env rebuilds identically (spaces, spec, constructor kwargs, metadata, enums, functions,
    sub-envs): leaving them out of a checkpoint loses nothing."""
    kinds = (gym.Space, gym.envs.registration.EnvSpec, dict, enum.Enum, gym.Env, gym.vector.VectorEnv)
    return isinstance(v, kinds) or callable(v)


def _encode(v: Any) -> Any:
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, np.ndarray) and v.dtype != object:
        return {"ndarray": torch.from_numpy(np.ascontiguousarray(v).copy()), "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return {"scalar": v.item(), "dtype": str(v.dtype)}
    if isinstance(v, np.random.Generator):
        return {"generator": v.bit_generator.state}
    if isinstance(v, np.random.RandomState):  # MinAtar's games draw from the legacy generator
        name, keys, pos, has_gauss, cached = v.get_state()
        return {"randomstate": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if isinstance(v, (list, tuple)):
        items = [_encode(x) for x in v]
        return _SKIP if any(x is _SKIP for x in items) else {"list": items}
    return _SKIP


def _decode(enc: Any, current: Any) -> Any:
    if not isinstance(enc, dict):
        return enc
    if "ndarray" in enc:
        value = enc["ndarray"].numpy().astype(enc["dtype"], copy=True)
        if isinstance(current, np.ndarray) and current.shape == value.shape and current.dtype == value.dtype:
            np.copyto(current, value)  # in place: other objects may hold the same array
            return current
        return value
    if "scalar" in enc:
        return np.dtype(enc["dtype"]).type(enc["scalar"])
    if "generator" in enc:
        gen = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        gen.bit_generator.state = enc["generator"]
        return gen
    if "randomstate" in enc:  # in place: a MinAtar game and its wrapper share one
        name, keys, pos, has_gauss, cached = enc["randomstate"]
        rs = current if isinstance(current, np.random.RandomState) else np.random.RandomState()
        rs.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        return rs
    items = enc["list"]
    old = list(current) if isinstance(current, (list, tuple)) and len(current) == len(items) else [None] * len(items)
    return [_decode(x, c) for x, c in zip(items, old)]


def _holders(obj) -> dict[str, Any]:
    """The attributes of ``obj`` that are plain Python objects of a game package holding the game's state, by name:
    a MinAtar env's ``game`` (``minatar.Environment``: sticky actions, the random stream) and that one's ``env`` (the
    game itself: positions, timers, maps). Their attributes are written down like an env's."""
    found = {}
    for name in ("game", "env"):
        value = getattr(obj, name, None)
        if value is not None and type(value).__module__.split(".")[0] == "minatar":
            found[name] = value
    return found


def _env_objects(env, path: str = ""):
    """The env, its wrappers and (vector envs) its sub-envs with theirs, by path: ``""``, ``"env"``, ``"envs.0"``;
    and the objects that hold a game's state (:func:`_holders`): ``"envs.0.env.env.game"``."""
    yield path, env
    inner = getattr(env, "env", None)
    if isinstance(inner, (gym.Env, gym.vector.VectorEnv)):
        yield from _env_objects(inner, f"{path}.env".lstrip("."))
    for i, sub in enumerate(getattr(env, "envs", None) or []):
        if isinstance(sub, gym.Env):
            yield from _env_objects(sub, f"{path}.envs.{i}".lstrip("."))
    for name, holder in _holders(env).items():
        yield from _env_objects(holder, f"{path}.{name}".lstrip("."))


def env_state(env) -> dict[str, dict]:
    """Everything mutable in a gymnasium env (single or vector, with its wrappers): the attributes of every layer
    that hold numbers, arrays or random generators (physics state, step counters, autoreset flags, np_random), and of
    the objects a MinAtar game keeps its state in. Spaces, specs and functions are rebuilt with the env and left
    out. Anything else (an object this function cannot write down) raises :class:`ConfigError`: a checkpoint that
    could not resume exactly is refused."""
    out = {}
    for path, obj in _env_objects(env):
        fields = {}
        held = _holders(obj)
        for name, value in vars(obj).items():
            if name in held:
                continue  # written down as an object of its own
            enc = _encode(value)
            if enc is not _SKIP:
                fields[name] = enc
            elif not (_inert(value) or name in _NOT_STATE):
                raise ConfigError(
                    "save_every",
                    f"cannot checkpoint {type(obj).__name__}: its attribute {name} "
                    f"({type(value).__name__}) is not plain data, so --resume could not "
                    "continue it exactly",
                )
        out[path] = fields
    return out


_NOT_STATE = frozenset({"_previous_data", "envs", "env_fns"})  # the env checker's memo of the last output; sub-envs


def set_env_state(env, state: dict[str, dict]) -> None:
    """Put :func:`env_state`'s data back into an env built the same way."""
    objects = dict(_env_objects(env))
    if set(objects) != set(state):
        raise ConfigError("resume", "the checkpoint's environments do not match this env's layout")
    for path, fields in state.items():
        obj = objects[path]
        for name, enc in fields.items():
            setattr(obj, name, _decode(enc, getattr(obj, name, None)))
