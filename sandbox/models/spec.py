"""Networks as plain data: what a policy file's ``network`` entry says, and how to rebuild the network from it.

An MLP agent is described by its env, observation size, action space and hidden sizes; a convolutional agent
(MinAtar's, :mod:`sandbox.models.cnn`) by its env, observation shape and action space; a tiny GPT by its
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
from .cnn import HIDDEN, CNNAgent
from .gpt import ModelConfig, TinyGPT
from .mlp import Agent

GYM_NETWORKS = ("mlp", "cnn")
"""The ``type`` of a Gym policy's network: an MLP agent, or the convolutional agent of the MinAtar games."""


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


def agent_class(network: str) -> type[Agent]:
    """The agent of a Gym run's ``network`` (``Config.network``): :class:`~sandbox.models.mlp.Agent` for ``mlp``,
    :class:`~sandbox.models.cnn.CNNAgent` for ``cnn``."""
    return CNNAgent if network == "cnn" else Agent


def hidden_sizes(cfg: Config) -> tuple[int, ...]:
    """The hidden widths of a Gym run's networks: ``--hidden-sizes`` (MLP), the paper's 128 (MinAtar's CNN)."""
    return (HIDDEN,) if cfg.network == "cnn" else tuple(cfg.hidden_sizes)


def gym_network(cfg: Config, obs_shape: int | tuple[int, ...], action_space: gym.Space, with_critic: bool) -> dict:
    """The ``network`` entry of a Gym policy: an MLP's (``obs_dim``), or MinAtar's CNN's (``obs_shape``)."""
    shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(int(n) for n in obs_shape)
    size = {"obs_dim": int(shape[0])} if cfg.network == "mlp" else {"obs_shape": list(shape)}
    return {
        "type": cfg.network,
        "env": cfg.env,
        "env_params": dict(cfg.env_params),
        **size,
        "action": describe_space(action_space),
        "hidden_sizes": list(hidden_sizes(cfg)),
        "critic": with_critic,
    }


def obs_shape_of(net: dict) -> tuple[int, ...]:
    """The observation shape a Gym policy's ``network`` entry was made for: ``(obs_dim,)`` for an MLP."""
    return tuple(net["obs_shape"]) if "obs_shape" in net else (int(net["obs_dim"]),)


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
    shape = obs_shape_of(net)
    with torch.random.fork_rng(devices=[]):
        agent = agent_class(net["type"])(
            shape,
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


def check_gym_policy(
    b: dict, path: Path, field: str, env_id: str, obs_shape: tuple[int, ...], action_space: gym.Space
) -> None:
    """The policy must act in this env: same observation shape and action space (the env id may differ: that is
    what transfer is)."""
    net = b["network"]
    if net["type"] not in GYM_NETWORKS:
        raise ConfigError(field, f"{path} is a policy for the language task {net['env']}, not for {env_id}")
    want, made_for = describe_space(action_space), obs_shape_of(net)
    if made_for != tuple(obs_shape) or net["action"] != want:
        raise ConfigError(
            field,
            f"{path} was made for {net['env']} (observations of shape {made_for}, "
            f"actions {_space_text(net['action'])}); {env_id} has {tuple(obs_shape)} and "
            f"{_space_text(want)}",
        )
