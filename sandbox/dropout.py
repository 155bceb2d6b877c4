"""The dropout layer, in three small functions: draw a mask, apply it, and decide which mask a forward pass uses.

Inverted dropout (what ``nn.Dropout`` does in train mode) multiplies activations by a mask whose entries are 0 with
probability p and ``1 / (1 - p)`` otherwise. Unlike ``nn.Dropout``, every dropout layer of the sandbox (after each
hidden activation of the MLPs, and GPT-2's embedding, attention and residual dropout in the tiny transformer) can
also be *handed* its mask: consistent dropout stores the masks drawn at rollout and replays them in the update.

All three are reachable through the :class:`~sandbox.maths.Maths` seam (``dropout_mask``, ``apply_dropout``,
``layer_mask``), so a learner's version runs inside the real networks, MLP and transformer alike:
``sandbox.train(cfg, maths=Maths(dropout_mask=my_mask, layer_mask=my_layer_mask))`` (homework 5).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def dropout_mask(shape: tuple[int, ...], p: float, generator: torch.Generator | None = None) -> Tensor:
    """An inverted-dropout mask of ``shape``: each entry is 0 with probability ``p``, else ``1 / (1 - p)``.

    Multiplying activations by it keeps their expectation unchanged, so evaluation needs no rescaling.
    ``p`` must be in [0, 1); ``p = 0`` gives all ones. Draws from torch's global generator unless ``generator``
    is given: the sandbox's determinism relies on it (same seed, same masks).
    """
    if p == 0.0:
        return torch.ones(shape)
    keep = 1.0 - p
    return torch.empty(shape).bernoulli_(keep, generator=generator).div_(keep)


def apply_dropout(x: Tensor, mask: Tensor) -> Tensor:
    """Activations times their mask: ``x * mask``, with ``mask`` broadcastable to ``x`` (one entry per unit).

    The trap: a mask drawn here, inside the forward pass, would be a fresh one every call; consistent dropout
    needs the *given* mask to be used, so that the update sees the network that sampled the action.
    """
    return x * mask


def layer_mask(
    stored: Tensor | None, fresh: bool, shape: tuple[int, ...], p: float, draw: Callable[..., Tensor]
) -> Tensor | None:
    """The mask one dropout layer uses in one forward pass, or None for no dropout.

    - ``stored`` given: replay it (consistent dropout: the rollout's masks, in the rollout and in the update);
    - else ``fresh`` (train mode and p > 0): draw a new one with ``draw(shape, p)`` (naive dropout, and the update
      of rollout-eval);
    - else none (eval mode, or p = 0).
    """
    if stored is not None:
        return stored
    return draw(shape, p) if fresh else None
