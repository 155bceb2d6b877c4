"""The frozen KL reference policy: ``--ref``'s file (checked against the run), else the initial policy (Gym) or the
language task's pretrained model, in eval mode and without gradients; and its fingerprint, so that a resumed run
refuses a reference whose weights changed."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from ..config import Config, ConfigError
from ..envs.lang_tasks import make_task
from ..models.spec import build_agent, build_gpt, check_gym_policy
from .policy_file import load
from .pretrain import PretrainConfig, model_config
from .rundir import find_policy_file


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
        _load_ref(cfg, model_config=model_config(make_task(cfg.task_name), PretrainConfig(steps=cfg.sft_steps)))
    else:
        _load_ref(cfg, spaces[0].shape[0], spaces[1])


def gym_reference(cfg: Config, agent) -> tuple[Any, str | None]:
    """The frozen KL reference of a Gym run: ``--ref``'s policy, else a copy of ``agent`` as it starts. With
    ``--init-from-ref`` the agent's weights are first set from the reference (the critic's too, if it has one).
    Returns ``(reference in eval mode, its file or None)``. Call before the agent's parameters are flattened
    (:class:`~sandbox.models.mlp.FlatParams`)."""
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
