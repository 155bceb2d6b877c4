"""Networks as plain data: what a policy file's ``network`` entry says, and how to rebuild the network from it.

An MLP agent is described by its env, observation size, action space and hidden sizes; a tiny GPT by its
``ModelConfig``. :func:`build_agent` and :func:`build_gpt` rebuild a saved policy (in eval mode, its run's dropout
layers inert until ``train()``) without moving the caller's random stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from ..config import Config, ConfigError
from .gpt import ModelConfig, TinyGPT
from .mlp import Agent


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


def build_agent(b: dict, with_critic: bool = True):
    """The MLP agent of a policy file, in eval mode, with its run's dropout layers (inert until ``train()``).
    Does not move the caller's random stream."""
    net, cfg = b["network"], b["config"]
    with torch.random.fork_rng(devices=[]):
        agent = Agent(
            net["obs_dim"],
            space_from(net["action"]),
            tuple(net["hidden_sizes"]),
            b["dropout_p"],
            with_critic=with_critic and net["critic"],
            dropout_policy=cfg.get("dropout_policy", True),
            dropout_samples=cfg["dropout_samples"],
            multi_sample_average=cfg["multi_sample_average"],
        )
    state = {k: v for k, v in b["state_dict"].items() if with_critic or not k.startswith("critic.")}
    agent.load_state_dict(state)
    return agent.eval()


def build_gpt(b: dict):
    """The tiny GPT of a language-task policy file (without a value head), in eval mode."""
    cfg = b["config"]
    with torch.random.fork_rng(devices=[]):
        model = TinyGPT(
            ModelConfig(**b["network"]["model_config"]),
            samples=cfg["dropout_samples"],
            average=cfg["multi_sample_average"],
            dropout=b["dropout_p"],
        )
    model.load_state_dict({k: v for k, v in b["state_dict"].items() if not k.startswith("value_head.")})
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
