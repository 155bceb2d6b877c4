"""The convolutional actor-critic of MinAtar's baselines, with dropout whose masks can be drawn fresh or handed in.

Young & Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible Reinforcement Learning
Experiments" (arXiv 1903.03176), train every agent with one network shape: one 3x3 convolution of 16 channels,
stride 1, no padding (a 10 x 10 grid becomes 8 x 8), ReLU, then a fully connected layer of 128 units, ReLU, then the
output. :class:`DropoutCNN` is that network with dropout after the convolution (one unit per channel and position:
16 x 8 x 8 = 1024) and after the hidden layer, through one :class:`~sandbox.dropout.MaskedDropout`, exactly as
:class:`~sandbox.models.mlp.DropoutMLP` does it: all masks of one network for one sample are one row of a
``(batch, mask_width)`` tensor, ``mask_width = 1024 + 128`` (with multi-sample dropout's K masks on the hidden layer,
``1024 + K * 128``). Consistent dropout stores and replays the convolution's masks with the hidden layer's, so the
first minibatch's ratio is exactly 1 here too.

:class:`CNNAgent` is :class:`~sandbox.models.mlp.Agent` with these networks: separate actor and critic, as the MLP
agent has them. Orthogonal init as the MLP's (``ortho_init``): gain sqrt(2) for the convolution and the hidden layer,
0.01 for the policy head, 1 for the value head.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dropout import MaskedDropout, apply_dropout
from ..maths import Maths
from .mlp import Agent, MaskedLayers, init_layer, mlp_forward

CONV_CHANNELS = 16
"""Channels of the convolution (the MinAtar paper's)."""
KERNEL = 3
"""Its kernel size; stride 1, no padding."""
HIDDEN = 128
"""Units of the fully connected hidden layer (the MinAtar paper's)."""
BATCHED_BELOW = 32
"""How K stacked networks (a population's members) run a batch, on a CPU with one thread. Below this many samples per
member (a rollout step acting for a few envs), as one network: one grouped convolution and batched matrix products,
one call each instead of K. From this many on (the update's minibatches, the critic over a whole rollout), member by
member: there the work is arithmetic, not per-call overhead, and a grouped convolution is several times slower than
K plain ones. Measured, K = 5, 4 input channels: the convolution alone at a batch of 8 took 127 us grouped against
271 us one by one, at 64 1516 against 647, at 256 7078 against 2200; the actor's whole forward and backward at 256,
18.2 ms member by member against 22.2 ms batched."""


class DropoutCNN(MaskedLayers):
    """``(C, H, W) -> conv 3x3, 16 channels (ReLU, dropout p) -> 128 (ReLU, dropout p) -> out_dim``.

    ``forward(x, mask)``: ``x (batch, C, H, W)``; ``mask`` is None (then train mode draws fresh masks and eval mode
    uses none) or a ``(batch, mask_width)`` tensor of per-unit multipliers, e.g. from :meth:`sample_mask`: the
    convolution's ``conv_units`` columns first (in the order of its flattened output: channel, row, column), then the
    hidden layer's. Multi-sample dropout (``samples``, ``average``) as in :class:`~sandbox.models.mlp.DropoutMLP`, on
    the hidden layer.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_dim: int,
        p: float = 0.0,
        out_gain: float = 1.0,
        ortho_init: bool = True,
        maths: Maths | None = None,
        samples: int = 1,
        average: str = "loss",
    ):
        super().__init__()
        c, h, w = in_shape
        self.conv = init_layer(nn.Conv2d(c, CONV_CHANNELS, KERNEL), math.sqrt(2), ortho_init)
        self.conv_units = CONV_CHANNELS * (h - KERNEL + 1) * (w - KERNEL + 1)
        self.hidden = nn.ModuleList([init_layer(nn.Linear(self.conv_units, HIDDEN), math.sqrt(2), ortho_init)])
        self.head = init_layer(nn.Linear(HIDDEN, out_dim), out_gain, ortho_init)
        self.hidden_sizes = (HIDDEN,)
        self.samples, self.average = samples, average
        self.mask_width = self.conv_units + samples * HIDDEN
        self.dropout = MaskedDropout(p, maths or Maths(), self.mask_width)

    def forward(self, x: Tensor, mask: Tensor | None = None, all_samples: bool = False) -> Tensor:
        """``x (batch, C, H, W) -> (batch, out_dim)`` (or ``(K, batch, out_dim)``: multi-sample dropout with
        ``all_samples``). ``mask``: the stored masks to replay, or None (fresh ones in train mode, none in eval)."""
        mask = self.dropout.choose(mask, (x.shape[0], self.mask_width))
        weights = [(self.hidden[0].weight, self.hidden[0].bias), (self.head.weight, self.head.bias)]
        return cnn_forward(
            x, (self.conv.weight, self.conv.bias), weights, mask, self.samples, self.average, all_samples,
            self.dropout.apply_mask,
        )  # fmt: skip


def cnn_forward(
    x: Tensor,
    conv: tuple[Tensor, Tensor],
    weights: list[tuple[Tensor, Tensor]],
    mask: Tensor | None,
    samples: int = 1,
    average: str = "loss",
    all_samples: bool = False,
    apply: Callable[[Tensor, Tensor], Tensor] = apply_dropout,
) -> Tensor:
    """The forward pass of :class:`DropoutCNN` as a function of its weights: the convolution ``conv = (W, b)``, ReLU,
    dropout with the first ``conv_units`` columns of ``mask``, then :func:`~sandbox.models.mlp.mlp_forward` with ReLU
    over ``weights`` (the hidden layer, then the head) and the rest of ``mask``.

    One network: ``W (16, C, 3, 3)``, ``x (batch, C, H, W)``. K stacked networks of one shape (a population of
    seeds): ``W (K, 16, C, 3, 3)``, ``x (K, batch, C, H, W)``, ``mask (K, batch, mask_width)``; from
    :data:`BATCHED_BELOW` samples on, each member by this function on its own, the outputs stacked (each member then
    computes exactly what its own network computes on the same batch).
    """
    if conv[0].dim() == 5 and x.shape[1] >= BATCHED_BELOW:  # K networks, a large batch: member by member
        members = zip(
            x.unbind(0),
            zip(*(t.unbind(0) for t in conv)),
            zip(*(zip(w.unbind(0), b.unbind(0)) for w, b in weights)),
            mask.unbind(0) if mask is not None else [None] * x.shape[0],
        )
        outs = [cnn_forward(*m, samples, average, all_samples, apply) for m in members]
        return torch.stack(outs, dim=-3)  # (K, batch, out), or (copies, K, batch, out)
    h = torch.relu(conv2d(x, *conv))  # (..., conv_units)
    rest = None
    if mask is not None:
        units = h.shape[-1]
        h = apply(h, mask[..., :units])
        rest = mask[..., units:]
    return mlp_forward(h, weights, rest, samples, average, all_samples, apply, activation=torch.relu)


def conv2d(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The convolution, its output flattened per sample: ``(batch, C, H, W) -> (batch, units)``, or for K stacked
    networks ``(K, batch, C, H, W) -> (K, batch, units)`` as one grouped convolution (for the small batches of
    :data:`BATCHED_BELOW`)."""
    if w.dim() == 4:
        return F.conv2d(x, w, b).flatten(1)
    K, B = x.shape[:2]
    grouped = F.conv2d(x.transpose(0, 1).flatten(1, 2), w.flatten(0, 1), b.flatten(), groups=K)  # (B, K * out, ...)
    return grouped.view(B, K, -1).transpose(0, 1)


class CNNAgent(Agent):
    """:class:`~sandbox.models.mlp.Agent` with :class:`DropoutCNN` networks: observations ``(C, H, W)``
    (``obs_dim`` is that shape), separate actor and critic, the same masks, sampling and log-probs."""

    def make_net(
        self,
        out_dim: int,
        p: float,
        out_gain: float,
        ortho_init: bool,
        maths: Maths | None,
        samples: int = 1,
        average: str = "loss",
    ) -> nn.Module:
        return DropoutCNN(self.obs_shape, out_dim, p, out_gain, ortho_init, maths, samples, average)
