"""The dropout layer: three small functions (draw a mask, apply it, decide which mask a forward pass uses), and
:class:`MaskedDropout`, the one module every network of the sandbox drops out with.

Inverted dropout (what ``nn.Dropout`` does in train mode) multiplies activations by a mask whose entries are 0 with
probability p and ``1 / (1 - p)`` otherwise. Unlike ``nn.Dropout``, every dropout layer of the sandbox (after each
hidden activation of the MLPs, SB3's policy included, and GPT-2's embedding, attention and residual dropout in the
tiny transformer) can also be *handed* its mask: consistent dropout stores the masks drawn at rollout and replays
them in the update.

All three functions are reachable through the :class:`~sandbox.maths.Maths` seam (``dropout_mask``,
``apply_dropout``, ``layer_mask``), and :class:`MaskedDropout` calls them only through it, so a learner's version runs
inside the real networks, MLP and transformer alike:
``sandbox.train(cfg, maths=Maths(dropout_mask=my_mask, layer_mask=my_layer_mask))`` (homework 5).

Which forward passes drop out is decided by the dropout mode's flags (:mod:`sandbox.dropout_modes`): the trainers put
the networks in train mode or eval mode (``rollout_train``, ``update_train``) and hand the stored masks back
(``store_masks``); a :class:`MaskedDropout` only follows its train/eval mode, its p and the mask it is given.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor, nn


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


class DropoutSeam(Protocol):
    """The three fields of :class:`~sandbox.maths.Maths` a dropout layer calls (the seam, by its shape: ``maths.py``
    imports this module, so it cannot be imported here)."""

    dropout_mask: Callable[..., Tensor]
    apply_dropout: Callable[[Tensor, Tensor], Tensor]
    layer_mask: Callable[..., Tensor | None]


class MaskedDropout(nn.Module):
    """Inverted dropout that can be handed its mask: the dropout of every network of the sandbox (``DropoutMLP``, the
    tiny GPT, SB3's policy; a population's stacked networks apply theirs with :meth:`apply_mask`).

    Like ``nn.Dropout``: in train mode with p > 0 (:attr:`fresh`) a forward pass draws a fresh mask, in eval mode it
    uses none. Given a stored mask (``forward(x, stored)``, or while :attr:`stored` is set), it replays that one,
    in either mode: consistent dropout. Every mask is drawn, chosen and applied through ``maths``, the seam's
    ``dropout_mask``, ``layer_mask`` and ``apply_dropout``.

    The pieces, for networks whose masks do not come one per activation (one ``(batch, mask_width)`` tensor for every
    layer of an MLP, GPT-2's per-position masks): :meth:`draw` a mask of a shape, :meth:`choose` the mask of a
    forward pass (stored, fresh or none), :meth:`apply_mask` one. ``width`` (optional) is the number of units the
    layer drops out, for the networks that lay their layers' masks side by side.
    """

    def __init__(self, p: float, maths: DropoutSeam, width: int | None = None):
        super().__init__()
        self.p, self.maths, self.width = p, maths, width
        self.stored: Tensor | None = None
        """A mask that every forward pass replays while it is set (SB3's policy sets it around one forward pass)."""

    @property
    def fresh(self) -> bool:
        """Does a forward pass without a stored mask draw a fresh one (train mode and p > 0)?"""
        return self.training and self.p > 0

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """A fresh mask of ``shape`` with this layer's p: the seam's ``dropout_mask``, from ``generator`` when given
        (a population's member draws from its own), else from torch's global generator."""
        if generator is None:
            return self.maths.dropout_mask(shape, self.p)
        return self.maths.dropout_mask(shape, self.p, generator=generator)

    def choose(
        self, stored: Tensor | None, shape: tuple[int, ...], generator: torch.Generator | None = None
    ) -> Tensor | None:
        """The mask one forward pass uses, the seam's ``layer_mask``: ``stored`` if given, else a fresh one of
        ``shape`` (:attr:`fresh`; drawn by :meth:`draw`, from ``generator`` when given), else None (no dropout)."""
        if generator is None:
            draw = self.maths.dropout_mask
        else:

            def draw(shape: tuple[int, ...], p: float) -> Tensor:
                return self.maths.dropout_mask(shape, p, generator=generator)

        return self.maths.layer_mask(stored, self.fresh, shape, self.p, draw)

    def apply_mask(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` with ``mask`` applied (the seam's ``apply_dropout``), or ``x`` itself when ``mask`` is None."""
        return x if mask is None else self.maths.apply_dropout(x, mask)

    def forward(self, x: Tensor, stored: Tensor | None = None) -> Tensor:
        """``x (batch, ..., width)`` with dropout: the ``stored`` mask (else :attr:`stored`) replayed, a fresh one, or
        none. A stored mask must have the shape of ``x``."""
        stored = self.stored if stored is None else stored
        if stored is not None and stored.shape != x.shape:
            raise ValueError(f"dropout mask of shape {tuple(stored.shape)} for activations {tuple(x.shape)}")
        return self.apply_mask(x, self.choose(stored, tuple(x.shape)))

    def extra_repr(self) -> str:
        return f"p={self.p}" + ("" if self.width is None else f", width={self.width}")
