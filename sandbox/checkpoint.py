"""Saved policies and checkpoints, and the frozen reference policy built from them.

Every finished run writes ``policy.pt``; with ``--save-every N`` a run also writes ``checkpoints/update-NNNNNN.pt``
every N updates, which holds the policy *and* what ``sandbox train --resume`` needs to continue exactly (optimizer,
random states, the environments' state, the trainer's counters). Both are one dict of plain data and tensors::

    {"format": "dropout-rl-sandbox", "version": 1, "kind": "policy" | "checkpoint",
     "config": {...},                  # the run's config.json
     "network": {...},                 # what to rebuild: an MLP agent (env id, spaces, hidden sizes) or a tiny GPT
     "state_dict": {...},              # the weights
     "obs_norm": None,                 # observation-normalisation statistics: the agents see raw observations
     "dropout_p": float,               # the p the dropout layers had when saved (a schedule changes it)
     "update": int, "env_steps": int,
     "resume": {...}}                  # checkpoints only

Files are read with ``torch.load(..., weights_only=True)``: loading never runs code stored in a file, so a policy
from someone else is safe to open. Anything else (a file from another program, a policy for another env or network
shape) is refused with a one-line :class:`~sandbox.config.ConfigError`.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .config import Config, ConfigError

FORMAT = "dropout-rl-sandbox"
VERSION = 1
POLICY_FILE = "policy.pt"
CHECKPOINT_DIR = "checkpoints"


# --- files -------------------------------------------------------------------------------------------------------


def find_policy_file(path: str | os.PathLike, field: str = "ref") -> Path:
    """A run directory means its ``policy.pt``; a file means itself. One-line error if neither exists."""
    p = Path(path)
    if p.is_dir():
        if (p / POLICY_FILE).is_file():
            return p / POLICY_FILE
        last = latest_checkpoint(p)
        hint = f"; its last checkpoint is {last}" if last is not None else ""
        raise ConfigError(field, f"{p} has no {POLICY_FILE} (the run did not finish){hint}")
    if p.is_file():
        return p
    raise ConfigError(field, f"{p}: no such run directory or policy file")


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest update number in ``run_dir/checkpoints``, or None."""
    found = sorted((Path(run_dir) / CHECKPOINT_DIR).glob("update-*.pt"), key=checkpoint_update)
    return found[-1] if found else None


def checkpoint_path(run_dir: Path, update: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"update-{update:06d}.pt"


def save(path: Path, blob: dict) -> None:
    """Write atomically (a temporary file, then a rename): a crash never leaves half a file under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load(path: str | os.PathLike, field: str = "ref") -> dict:
    """Read a policy or checkpoint with ``weights_only=True``; refuse anything the sandbox did not write."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ConfigError(
            field,
            f"{path} is not a sandbox policy or checkpoint (torch.load with weights_only=True "
            f"refused it: {type(err).__name__})",
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ConfigError(
            field, f"{path} is not a sandbox policy or checkpoint (a torch file without the '{FORMAT}' header)"
        )
    if blob.get("version") != VERSION:
        raise ConfigError(field, f"{path} has format version {blob.get('version')}; this sandbox reads {VERSION}")
    missing = [k for k in _REQUIRED if k not in blob]
    network = blob.get("network")
    if missing or not isinstance(network, dict) or network.get("type") not in ("mlp", "gpt"):
        raise ConfigError(
            field, f"{path} is a damaged sandbox file (missing or bad: {', '.join(missing) or 'network'})"
        )
    return blob


_REQUIRED = ("kind", "config", "network", "state_dict", "dropout_p", "update", "env_steps")


# --- what a policy file holds ------------------------------------------------------------------------------------


def describe_space(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    return {"type": "box", "shape": list(space.shape), "low": space.low.tolist(), "high": space.high.tolist()}


def space_from(desc: dict) -> gym.Space:
    if desc["type"] == "discrete":
        return gym.spaces.Discrete(desc["n"])
    return gym.spaces.Box(
        np.array(desc["low"], np.float32), np.array(desc["high"], np.float32), tuple(desc["shape"]), np.float32
    )


def _space_text(desc: dict) -> str:
    return f"Discrete({desc['n']})" if desc["type"] == "discrete" else f"Box{tuple(desc['shape'])}"


def mlp_network(cfg: Config, obs_dim: int, action_space: gym.Space, with_critic: bool) -> dict:
    return {
        "type": "mlp",
        "env": cfg.env,
        "env_params": dict(cfg.env_params),
        "obs_dim": int(obs_dim),
        "action": describe_space(action_space),
        "hidden_sizes": list(cfg.hidden_sizes),
        "critic": with_critic,
    }


def gpt_network(cfg: Config, model) -> dict:
    return {
        "type": "gpt",
        "env": cfg.env,
        "model_config": dataclasses.asdict(model.cfg),
        "value_head": hasattr(model, "value_head"),
    }


def blob(
    kind: str,
    cfg: Config,
    network: dict,
    module: torch.nn.Module,
    update: int,
    env_steps: int,
    resume: dict | None = None,
) -> dict:
    """A policy (``kind="policy"``) or checkpoint (``"checkpoint"``, with ``resume``) as plain data and tensors."""
    p = module.dropout_p if hasattr(module, "dropout_p") else getattr(module, "p", 0.0)  # MLP agent / tiny GPT
    out = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": cfg.to_dict(),
        "network": network,
        "state_dict": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "obs_norm": None,
        "dropout_p": float(p),
        "update": update,
        "env_steps": env_steps,
    }
    if resume is not None:
        out["resume"] = resume
    return out


def build_agent(b: dict, with_critic: bool = True):
    """The MLP agent of a policy file, in eval mode, with its run's dropout layers (inert until ``train()``).
    Does not move the caller's random stream."""
    from .nets import Agent

    net, cfg = b["network"], b["config"]
    with torch.random.fork_rng(devices=[]):
        agent = Agent(
            net["obs_dim"],
            space_from(net["action"]),
            tuple(net["hidden_sizes"]),
            b["dropout_p"],
            with_critic=with_critic and net["critic"],
            dropout_samples=cfg["dropout_samples"],
            multi_sample_average=cfg["multi_sample_average"],
        )
    state = {k: v for k, v in b["state_dict"].items() if with_critic or not k.startswith("critic.")}
    agent.load_state_dict(state)
    return agent.eval()


def build_gpt(b: dict):
    """The tiny GPT of a language-task policy file (without a value head), in eval mode."""
    from .lang.model import ModelConfig, TinyGPT

    with torch.random.fork_rng(devices=[]):
        model = TinyGPT(ModelConfig(**b["network"]["model_config"]))
    model.load_state_dict({k: v for k, v in b["state_dict"].items() if not k.startswith("value_head.")})
    model.set_dropout(b["dropout_p"])
    model.samples, model.average = b["config"]["dropout_samples"], b["config"]["multi_sample_average"]
    return model.eval()


def check_gym_policy(b: dict, path: Path, field: str, env_id: str, obs_dim: int, action_space: gym.Space) -> None:
    """The policy must act in this env: same observation size and action space (the env id may differ: that is
    what transfer is)."""
    net = b["network"]
    if net["type"] != "mlp":
        raise ConfigError(field, f"{path} is a policy for the language task {net['env']}, not for {env_id}")
    want = describe_space(action_space)
    if net["obs_dim"] != obs_dim or net["action"] != want:
        raise ConfigError(
            field,
            f"{path} was made for {net['env']} (observations of size {net['obs_dim']}, "
            f"actions {_space_text(net['action'])}); {env_id} has {obs_dim} and "
            f"{_space_text(want)}",
        )


def _load_ref(
    cfg: Config, obs_dim: int | None = None, action_space: gym.Space | None = None, model_config=None
) -> tuple[dict, Path]:
    """``--ref``'s file, checked against this run: a Gym policy for the same observation size and action space
    (with ``--init-from-ref``, the same hidden sizes too), or a tiny GPT of the task's shape."""
    path = find_policy_file(cfg.ref, "ref")
    b = load(path, "ref")
    net = b["network"]
    if model_config is None:
        check_gym_policy(b, path, "ref", cfg.env, obs_dim, action_space)
        if cfg.init_from_ref and tuple(net["hidden_sizes"]) != tuple(cfg.hidden_sizes):
            raise ConfigError(
                "init_from_ref",
                f"the reference {path} has --hidden-sizes "
                f"{' '.join(map(str, net['hidden_sizes']))}; this run has "
                f"{' '.join(map(str, cfg.hidden_sizes))}: make them equal",
            )
    elif net["type"] != "gpt":
        raise ConfigError("ref", f"{path} is a policy for the Gym env {net['env']}, not for {cfg.env}")
    elif net["model_config"] != dataclasses.asdict(model_config):
        raise ConfigError(
            "ref",
            f"{path} was made for {net['env']} with a model of another shape "
            f"({net['model_config']}); {cfg.env} uses {dataclasses.asdict(model_config)}",
        )
    return b, path


def check_ref(cfg: Config, spaces: tuple[gym.Space, gym.Space] | None = None) -> None:
    """Check ``--ref`` against the run's env (its ``(observation_space, action_space)``) or language task before
    anything is written (one-line errors)."""
    if cfg.ref is None:
        return
    ref, out = find_policy_file(cfg.ref, "ref").resolve(), Path(cfg.out).resolve() if cfg.out else None
    if out is not None and (out == ref or out in ref.parents):
        raise ConfigError(
            "ref",
            f"{cfg.ref} is inside this run's --out {cfg.out}, which the run would replace; "
            "write the new run somewhere else",
        )
    if cfg.is_lang:
        from .lang.pretrain import PretrainConfig, model_config
        from .lang.tasks import make_task

        _load_ref(cfg, model_config=model_config(make_task(cfg.task_name), PretrainConfig(steps=cfg.sft_steps)))
    else:
        _load_ref(cfg, spaces[0].shape[0], spaces[1])


def gym_reference(cfg: Config, agent) -> tuple[Any, str | None]:
    """The frozen KL reference of a Gym run: ``--ref``'s policy, else a copy of ``agent`` as it starts. With
    ``--init-from-ref`` the agent's weights are first set from the reference (the critic's too, if it has one).
    Returns ``(reference in eval mode, its file or None)``. Call before the agent's parameters are flattened
    (:class:`~sandbox.nets.FlatParams`)."""
    if cfg.ref is None:
        return copy.deepcopy(agent).eval().requires_grad_(False), None
    b, path = _load_ref(cfg, agent.obs_dim, agent.action_space)
    if cfg.init_from_ref:
        own = agent.state_dict()
        agent.load_state_dict({k: v for k, v in b["state_dict"].items() if k in own}, strict=False)
    return build_agent(b, with_critic=False).requires_grad_(False), str(path)


def lang_reference(cfg: Config, model_config) -> tuple[Any, str]:
    """``--ref``'s tiny GPT for a language task (checked against the task's model shape), in eval mode."""
    b, path = _load_ref(cfg, model_config=model_config)
    return build_gpt(b).requires_grad_(False), str(path)


# --- what a checkpoint adds: random states and environment state, as plain data ----------------------------------


def digest(module: torch.nn.Module) -> str:
    """A fingerprint of a module's weights (SHA-256 of every tensor's bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_reference(resume: dict, reference: torch.nn.Module) -> None:
    """Refuse to resume against a reference whose weights changed since the checkpoint (a retrained --ref run, a
    re-pretrained language model): the continued run would not be the run that was interrupted."""
    if resume["ref_digest"] != digest(reference):
        raise ConfigError(
            "resume",
            "the reference policy is not the one this run started with (its weights "
            "changed since the checkpoint); resume is refused rather than mixed",
        )


def batch_run_state(optimizer, rng: np.random.Generator, state, source, beta: float, clock) -> dict:
    """What a checkpoint of GRPO (or PPO on a language task) needs beyond the weights: the optimizer, both random
    streams, the counters, beta, the scheduled dropout p and which reference it used. (Its batches start from
    fresh prompts or reset seeds: no environment is mid-episode.)"""
    return {
        "optimizer": optimizer.state_dict(),
        "random": random_state(rng),
        "episodes_written": len(state.returns),
        "wall_s": clock(),
        "ref_digest": digest(source.reference),
        "trainer": {"state": state.state_dict(), "beta": beta, "dropout_p": source.dropout_p},
    }


def restore_batch_run(blob: dict, source, optimizer, state, rng: np.random.Generator):
    """The inverse of :func:`batch_run_state`; returns ``(beta, clock)``."""
    from .runlog import Clock

    r, t = blob["resume"], blob["resume"]["trainer"]
    check_same_reference(r, source.reference)
    source.policy.load_state_dict(blob["state_dict"])
    optimizer.load_state_dict(r["optimizer"])
    state.load_state_dict(t["state"])
    source.set_dropout(t["dropout_p"])
    set_random_state(r["random"], rng)
    return t["beta"], Clock(r["wall_s"])


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
    items = enc["list"]
    old = list(current) if isinstance(current, (list, tuple)) and len(current) == len(items) else [None] * len(items)
    return [_decode(x, c) for x, c in zip(items, old)]


def _env_objects(env, path: str = ""):
    """The env, its wrappers and (vector envs) its sub-envs with theirs, by path: ``""``, ``"env"``, ``"envs.0"``."""
    yield path, env
    inner = getattr(env, "env", None)
    if isinstance(inner, (gym.Env, gym.vector.VectorEnv)):
        yield from _env_objects(inner, f"{path}.env".lstrip("."))
    for i, sub in enumerate(getattr(env, "envs", None) or []):
        if isinstance(sub, gym.Env):
            yield from _env_objects(sub, f"{path}.envs.{i}".lstrip("."))


def env_state(env) -> dict[str, dict]:
    """Everything mutable in a gymnasium env (single or vector, with its wrappers): the attributes of every layer
    that hold numbers, arrays or random generators (physics state, step counters, autoreset flags, np_random).
    Spaces, specs and functions are rebuilt with the env and left out. Anything else (an object this function
    cannot write down) raises :class:`ConfigError`: a checkpoint that could not resume exactly is refused."""
    out = {}
    for path, obj in _env_objects(env):
        fields = {}
        for name, value in vars(obj).items():
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


def checkpoint_update(path: Path) -> int:
    m = re.search(r"update-(\d+)\.pt$", path.name)
    return int(m.group(1)) if m else -1
