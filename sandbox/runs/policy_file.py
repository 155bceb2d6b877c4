"""The policy file format: ``policy.pt`` and checkpoints, one dict of plain data and tensors.

Every finished run writes ``policy.pt``; with ``--save-every N`` a run also writes ``checkpoints/update-NNNNNN.pt``
every N updates, which holds the policy *and* what ``sandbox train --resume`` needs to continue exactly (optimizer,
random states, the environments' state, the trainer's counters). Both are one dict of plain data and tensors::

    {"format": "dropout-rl-sandbox", "version": 1, "kind": "policy" | "checkpoint",
     "config": {...},                  # the run's config.json
     "network": {...},                 # what to rebuild: an MLP agent (env id, spaces, hidden sizes), MinAtar's
                                       # convolutional agent (env id, observation shape, actions) or a tiny GPT
     "state_dict": {...},              # the weights
     "obs_norm": None,                 # observation-normalisation statistics: the agents see raw observations
     "dropout_p": float,               # the p the dropout layers had when saved (a schedule changes it)
     "update": int, "env_steps": int,
     "resume": {...}}                  # checkpoints only

Files are read with ``torch.load(..., weights_only=True)``: loading never runs code stored in a file, so a policy
from someone else is safe to open. Anything else (a file from another program, a policy for another env or network
shape) is refused with a one-line :class:`~sandbox.config.ConfigError`. What ``network`` holds and how a network
is rebuilt from it: :mod:`sandbox.models.spec`; the file names: :mod:`sandbox.runs.rundir`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import Config, ConfigError

FORMAT = "dropout-rl-sandbox"
VERSION = 3  # 2: checkpoints hold each component's state_dict (sandbox.algos.run); 3: the learner's Adam state is
READS = (1, 2, 3)  # per member (sandbox.models.stacked.StackedAdam). Policies are read from version 1 on.


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
    if blob.get("version") not in READS:
        raise ConfigError(
            field, f"{path} has format version {blob.get('version')}; this sandbox reads {' or '.join(map(str, READS))}"
        )
    missing = [k for k in _REQUIRED if k not in blob]
    network = blob.get("network")
    if not missing and isinstance(network, dict) and network.get("type") == "sb3":  # sandbox.algos.sb3, other spaces
        raise ConfigError(
            field,
            f"{path} holds a Stable-Baselines3 policy for {network.get('env')} (observations "
            f"{network.get('observation')}, actions {network.get('action')}); the sandbox's agents read 1-D Box "
            "observations and Discrete or 1-D Box actions",
        )
    if missing or not isinstance(network, dict) or network.get("type") not in ("mlp", "cnn", "gpt"):
        raise ConfigError(
            field, f"{path} is a damaged sandbox file (missing or bad: {', '.join(missing) or 'network'})"
        )
    return blob


_REQUIRED = ("kind", "config", "network", "state_dict", "dropout_p", "update", "env_steps")
