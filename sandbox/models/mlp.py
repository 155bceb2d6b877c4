"""Policy and value networks with dropout whose masks can be drawn fresh or handed in.

A :class:`DropoutMLP` applies inverted dropout after every hidden activation (its
:class:`~sandbox.dropout.MaskedDropout`, through the ``Maths`` seam). Like ``nn.Dropout`` it draws fresh masks in
``train()`` mode and none in ``eval()`` mode; unlike ``nn.Dropout`` it also accepts the masks to use, which is what
``consistent`` dropout needs (the masks drawn at rollout are stored and handed back in the update). All masks of one
network for one sample are one row of a ``(batch, mask_width)`` tensor.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dropout import MaskedDropout, apply_dropout
from ..maths import Maths

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def init_layer(layer: nn.Linear | nn.Conv2d, gain: float, ortho: bool) -> nn.Module:
    """Orthogonal weights with ``gain`` and zero biases when ``ortho`` (PPO's usual init), else PyTorch's default."""
    if ortho:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


class MaskedLayers(nn.Module):
    """What every network with dropout masks shares (the MLP here, the CNN in ``cnn.py``): ``self.dropout``, one
    :class:`MaskedDropout` whose masks for all the dropout places sit side by side in a ``(batch, mask_width)``
    tensor, the rate ``p`` read and set through it, and :meth:`sample_mask`. Subclasses set ``dropout`` and
    ``mask_width`` in ``__init__``."""

    dropout: MaskedDropout
    mask_width: int

    @property
    def p(self) -> float:
        """The dropout probability at every dropout place of the network."""
        return self.dropout.p

    @p.setter
    def p(self, p: float) -> None:
        self.dropout.p = p

    def sample_mask(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Masks for ``batch`` samples: ``(batch, mask_width)``, drawn with the seam's ``dropout_mask`` (from
        ``generator``, else torch's global generator)."""
        return self.dropout.draw((batch, self.mask_width), generator)


class DropoutMLP(MaskedLayers):
    """``in_dim -> hidden_sizes (tanh, dropout p) -> out_dim``.

    ``forward(x, mask)``: ``mask`` is None (then train mode draws fresh masks and eval mode uses none) or a
    ``(batch, mask_width)`` tensor of per-unit multipliers, e.g. from :meth:`sample_mask`.

    Multi-sample dropout (Inoue 2019), ``samples = K > 1``: the last hidden layer gets K masks and the head (shared
    weights) K outputs. ``average="logits"`` averages them into one output. ``average="loss"`` returns the first
    copy, or all K as ``(K, batch, out)`` with ``all_samples=True`` (the update then averages K losses, as the
    paper does). ``mask_width = sum(hidden_sizes[:-1]) + K * hidden_sizes[-1]``; K = 1 is ordinary dropout.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_sizes: Sequence[int],
        p: float = 0.0,
        out_gain: float = 1.0,
        ortho_init: bool = True,
        maths: Maths | None = None,
        samples: int = 1,
        average: str = "loss",
    ):
        super().__init__()
        sizes = [in_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(
            init_layer(nn.Linear(a, b), math.sqrt(2), ortho_init) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = init_layer(nn.Linear(sizes[-1], out_dim), out_gain, ortho_init)
        self.hidden_sizes = tuple(hidden_sizes)
        self.samples, self.average = samples, average
        self.mask_width = sum(hidden_sizes[:-1]) + samples * hidden_sizes[-1]
        # one dropout module for every hidden layer, whose masks sit side by side in one (batch, mask_width) tensor;
        # it draws, chooses and applies them through the seam (a learner's versions can stand in: homework 5)
        self.dropout = MaskedDropout(p, maths or Maths(), self.mask_width)

    def forward(self, x: Tensor, mask: Tensor | None = None, all_samples: bool = False) -> Tensor:
        """``x (batch, in_dim) -> (batch, out_dim)``, or ``(K, batch, out_dim)`` with multi-sample dropout and
        ``all_samples``. ``mask``: the stored masks to replay, or None (fresh ones in train mode, none in eval)."""
        mask = self.dropout.choose(mask, (x.shape[0], self.mask_width))
        weights = [(layer.weight, layer.bias) for layer in self.hidden] + [(self.head.weight, self.head.bias)]
        return mlp_forward(x, weights, mask, self.samples, self.average, all_samples, self.dropout.apply_mask)


def mlp_forward(
    x: Tensor,
    weights: list[tuple[Tensor, Tensor]],
    mask: Tensor | None,
    samples: int = 1,
    average: str = "loss",
    all_samples: bool = False,
    apply: Callable[[Tensor, Tensor], Tensor] = apply_dropout,
    activation: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The forward pass of :class:`DropoutMLP` as a function of its ``weights``: ``[(W, b), ...]``, the hidden layers
    then the head, each followed by tanh (or ``activation``: the convolutional network's fully connected part uses
    ReLU) and dropout with ``mask`` (``(..., mask_width)`` or None) except the head.
    Each hidden layer's columns of ``mask`` are applied with ``apply`` (the network's
    :meth:`~sandbox.dropout.MaskedDropout.apply_mask`: the seam's ``apply_dropout``).

    One network: ``W (out, in)``, ``x (batch, in)``. K stacked networks of one shape (a population of seeds):
    ``W (K, out, in)``, ``x (K, batch, in)``, ``mask (K, batch, mask_width)``: one batched matrix product per layer.
    Multi-sample dropout (``samples`` > 1) adds a copy dimension before the last: see :class:`DropoutMLP`.
    """
    h = x
    start = 0
    last = len(weights) - 2
    for i, (w, b) in enumerate(weights[:-1]):
        if activation is None and w.dim() == 3:  # K stacked networks: the large activations of a population
            h = _StackedTanhLayer.apply(h, w, b) if torch.is_grad_enabled() else _stacked_tanh(h, w, b)
        else:
            h = (activation or tanh)(linear(h, w, b))
        if mask is None:
            continue
        width = w.shape[-2]
        if i == last and samples > 1:  # `samples` masks on the last hidden layer: (..., samples, width)
            h = apply(h.unsqueeze(-2), mask[..., start : start + samples * width].unflatten(-1, (samples, width)))
        else:
            h = apply(h, mask[..., start : start + width])
            start += width
    out = linear(h, *weights[-1])
    if out.dim() > x.dim():  # (..., samples, out_dim)
        if average == "logits":
            return out.mean(dim=-2)
        return out.movedim(-2, 0) if all_samples else out[..., 0, :]
    return out


def tanh(x: Tensor) -> Tensor:
    """tanh, computed as ``2 * sigmoid(2x) - 1`` (within 2e-7 of ``torch.tanh``): the same function, several times
    cheaper on a CPU, where PyTorch's float32 tanh costs about 2.1 ns per element against a sigmoid's 0.2 (measured on
    the benchmark machine on a population's activations; README, "Populations"). Its gradient, ``1 - tanh^2``, comes
    through the sigmoid's."""
    return torch.sigmoid(x * 2.0) * 2.0 - 1.0


class _StackedLinear(torch.autograd.Function):
    """:func:`linear` for K stacked networks (``baddbmm``) with the product of the weight's gradient in the faster of
    its two orientations: ``g^T h`` when the layer narrows (``out <= in``), else ``(h^T g)^T``. A batched product
    whose result has few columns runs several times slower on a CPU (measured: a head of 2 outputs, 16 members of 256
    rows, 0.30 ms one way, 0.05 ms the other), and autograd always takes the second. The same sums, added in
    another order: a population's numbers move at float rounding, a single run (``F.linear``) is untouched."""

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        flat = h.reshape(h.shape[0], -1, h.shape[-1])
        ctx.save_for_backward(flat, w)
        ctx.shape = h.shape
        return torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2)).view(*h.shape[:-1], w.shape[-2])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        flat, w = ctx.saved_tensors
        return _linear_grads(ctx, grad.reshape(flat.shape[0], -1, w.shape[-2]), flat, w)


def _linear_grads(ctx, g: Tensor, flat: Tensor, w: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """The gradients of ``baddbmm(b, flat, w^T)`` given ``g``, the gradient of its result: of the input (if needed),
    of the weight (its product in the faster orientation, :class:`_StackedLinear`), of the bias."""
    grad_h = g.bmm(w).view(ctx.shape) if ctx.needs_input_grad[0] else None
    out, inp = w.shape[-2:]
    grad_w = g.transpose(1, 2).bmm(flat) if out <= inp else flat.transpose(1, 2).bmm(g).transpose(1, 2)
    return grad_h, grad_w, g.sum(1)


class _StackedTanhLayer(torch.autograd.Function):
    """``tanh(linear(h, w, b))`` (:func:`tanh`: ``2 sigmoid(2x) - 1``) for K stacked networks, in two passes over the
    activations each way instead of four and three, as one autograd node instead of five: a population's speed
    device (its activations are megabytes). Forward: the batched product computes ``2 (h w^T + b)`` itself (``alpha
    = beta = 2``: doubling is exact), then the sigmoid, then ``2 s - 1``. Backward: ``sigmoid_backward(g, s) * 4``,
    the exact value of autograd's ``sigmoid_backward(2 g, s) * 2``, then the products as :class:`_StackedLinear`
    computes them."""

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        flat = h.reshape(h.shape[0], -1, h.shape[-1])
        s = torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2), beta=2, alpha=2).sigmoid_()
        ctx.save_for_backward(flat, w, s)
        ctx.shape = h.shape
        return (s * 2.0).sub_(1.0).view(*h.shape[:-1], w.shape[-2])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        flat, w, s = ctx.saved_tensors
        g = torch.ops.aten.sigmoid_backward(grad.reshape(s.shape), s).mul_(4.0)  # d/dx of 2 sigmoid(2x) - 1
        return _linear_grads(ctx, g, flat, w)


def _stacked_tanh(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """:class:`_StackedTanhLayer`'s forward without gradients (acting, values): in place, with no autograd node."""
    flat = h.reshape(h.shape[0], -1, h.shape[-1])
    s = torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2), beta=2, alpha=2).sigmoid_()
    return s.mul_(2.0).sub_(1.0).view(*h.shape[:-1], w.shape[-2])


def linear(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``h @ w.T + b``: ``F.linear`` for one network (it skips nn.Module call overhead), ``baddbmm`` for K stacked
    ones (``w (K, out, in)``, ``h (K, ..., in)``; with gradients, :class:`_StackedLinear`)."""
    if w.dim() == 2:
        return F.linear(h, w, b)
    if torch.is_grad_enabled():
        return _StackedLinear.apply(h, w, b)
    flat = h.reshape(h.shape[0], -1, h.shape[-1])
    return torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2)).view(*h.shape[:-1], w.shape[-2])


class Agent(nn.Module):
    """Separate actor and critic MLPs; a Categorical policy for Discrete actions, a diagonal Gaussian with a
    state-independent log-std for Box actions.

    Masks: ``mask_width = actor widths + critic widths (if the critic has dropout)``. ``act`` and ``evaluate``
    take one ``(batch, mask_width)`` tensor or None (then each net follows its train/eval mode).

    ``obs_dim``: the observation's size, or its shape (:attr:`obs_shape`). The networks come from :meth:`make_net` (a
    :class:`DropoutMLP`); a subclass with other networks of the same interface overrides it
    (:class:`~sandbox.models.cnn.CNNAgent`, MinAtar's convolutional networks, for ``(C, H, W)`` observations).
    """

    def __init__(
        self,
        obs_dim: int | Sequence[int],
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        dropout_value: bool = False,
        ortho_init: bool = True,
        maths: Maths | None = None,
        with_critic: bool = True,
        dropout_samples: int = 1,
        multi_sample_average: str = "loss",
        dropout_policy: bool = True,
    ):
        super().__init__()
        self.obs_shape = (int(obs_dim),) if isinstance(obs_dim, (int, np.integer)) else tuple(obs_dim)
        self.action_space = action_space
        self.hidden_sizes = tuple(hidden_sizes)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        act_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        actor_p = dropout if dropout_policy else 0.0
        self.actor = self.make_net(act_dim, actor_p, 0.01, ortho_init, maths, dropout_samples, multi_sample_average)
        self.critic = (
            self.make_net(1, dropout if dropout_value else 0.0, 1.0, ortho_init, maths) if with_critic else None
        )  # GRPO has no value function
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.actor_has_dropout = dropout_policy
        self.critic_has_dropout = dropout_value and dropout > 0
        self.mask_width = self.actor.mask_width + (self.critic.mask_width if self.critic_has_dropout else 0)

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
        """The actor's (``out_dim`` actions, ``out_gain`` 0.01) or the critic's (1, gain 1) network: a
        :class:`DropoutMLP` from the observation size over ``hidden_sizes``."""
        (obs_dim,) = self.obs_shape
        return DropoutMLP(obs_dim, out_dim, self.hidden_sizes, p, out_gain, ortho_init, maths, samples, average)

    @property
    def dropout_p(self) -> float:
        """The p of the agent's dropout layers (the critic's when only the critic has dropout)."""
        return self.actor.p if self.actor_has_dropout or self.critic is None else self.critic.p

    def set_dropout(self, p: float) -> None:
        """Set p on every dropout layer (a dropout schedule calls this before each update). With dropout in the
        critic only, the actor keeps p = 0: its slot of the masks is all ones, replayed like any other."""
        if self.actor_has_dropout:
            self.actor.p = p
        if self.critic is not None and self.critic_has_dropout:
            self.critic.p = p

    def sample_mask(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Fresh masks for ``batch`` samples for every dropout layer of the agent, as one tensor."""
        masks = [self.actor.sample_mask(batch, generator)]
        if self.critic_has_dropout:
            masks.append(self.critic.sample_mask(batch, generator))
        return torch.cat(masks, dim=1) if len(masks) > 1 else masks[0]

    def _split(self, mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        if mask is None:
            return None, None
        w = self.actor.mask_width
        return mask[..., :w], (mask[..., w:] if self.critic_has_dropout else None)

    @torch.no_grad()
    def act(self, obs: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sample actions for a batch of observations: ``(actions, logp)``.

        ``logp`` comes from the same forward pass that chose the action: with dropout at rollout, this is the
        only log-prob that is the true probability of the behaviour policy. (Values are computed for the whole
        rollout in one batch afterwards, see :meth:`value`: the critic does not choose anything.)
        """
        return sample_action(self.actor(obs, self._split(mask)[0]), self.log_std if not self.discrete else None)

    @torch.no_grad()
    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``log pi(actions | obs)`` without gradient, by the same operations as :meth:`act`: for the same weights
        and batch it gives the same bits, which is why the KL reference is evaluated step by step at rollout
        (``kl_ref`` is then exactly 0 while the policy equals its reference)."""
        return action_logp(self.actor(obs), self.log_std if not self.discrete else None, actions)

    @torch.no_grad()
    def best_action(self, obs: Tensor) -> Tensor:
        """The most likely action: the argmax (Discrete) or the mean (Box). For deterministic evaluation."""
        out = self.actor(obs)
        return out.argmax(-1) if self.discrete else out

    @torch.no_grad()
    def value(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.critic(obs, self._split(mask)[1]).squeeze(-1)

    def evaluate(
        self, obs: Tensor, actions: Tensor, mask: Tensor | None = None, with_entropy: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Log-prob of given actions, entropy and value, with gradients: ``(logp, entropy, values)``.

        With multi-sample dropout averaged over losses, ``logp`` and ``entropy`` are ``(K, batch)``: one row per
        mask of the last hidden layer. ``with_entropy=False`` computes the entropy without gradient (a metric only).
        """
        actor_mask, critic_mask = self._split(mask)
        out = self.actor(obs, actor_mask, all_samples=True)
        logp, entropy = action_logp_entropy(out, self.log_std if not self.discrete else None, actions, with_entropy)
        values = self.critic(obs, critic_mask).squeeze(-1) if self.critic is not None else None
        return logp, entropy, values


def sample_action(out: Tensor, log_std: Tensor | None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """An action per row of the actor's output, and its log-prob: ``(actions, logp)``.

    ``log_std`` None: ``out`` are the logits of a Categorical (``(..., n)`` -> actions ``(...)`` of int64, by the
    Gumbel-max trick); else ``out`` is the mean of a diagonal Gaussian with ``log_std`` (broadcast against it).
    ``noise``: the random numbers to use (Exp(1) for the Categorical, N(0, 1) for the Gaussian, shaped like ``out``),
    else drawn from torch's global generator.
    """
    if log_std is None:
        logp_all = F.log_softmax(out, dim=-1)
        actions = sample_categorical(logp_all, noise)
        return actions, logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    actions = out + log_std.exp() * (torch.randn_like(out) if noise is None else noise)
    return actions, gaussian_logp(out, log_std, actions)


def action_logp(out: Tensor, log_std: Tensor | None, actions: Tensor) -> Tensor:
    """``log pi(actions)`` under the actor's output ``out`` (logits, or a Gaussian's mean with ``log_std``)."""
    if log_std is None:
        return F.log_softmax(out, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return gaussian_logp(out, log_std, actions)


def action_logp_entropy(
    out: Tensor, log_std: Tensor | None, actions: Tensor, with_entropy: bool = True
) -> tuple[Tensor, Tensor]:
    """``(logp, entropy)`` of ``actions`` under ``out``; ``out`` may carry copies of multi-sample dropout in front
    (``actions`` broadcast). ``with_entropy=False``: the entropy without gradient (a metric only)."""
    if log_std is None:
        logp_all = F.log_softmax(out, dim=-1)
        index = actions.long().unsqueeze(-1).expand(*out.shape[:-1], 1)
        logp = logp_all.gather(-1, index).squeeze(-1)
        with torch.set_grad_enabled(with_entropy and torch.is_grad_enabled()):
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy
    logp = gaussian_logp(out, log_std, actions)  # first: the order of autograd's sums into log_std.grad is kept
    entropy = (0.5 + _LOG_SQRT_2PI + log_std).sum(-1).expand(out.shape[:-1])  # log_std (A,), or (K, 1, A)
    return logp, entropy


def sample_categorical(logits: Tensor, noise: Tensor | None = None) -> Tensor:
    """One action per row, drawn from ``softmax(logits)``: ``(..., n) -> (...)`` of int64.

    The Gumbel-max trick: ``argmax(logits + G)`` with G ~ Gumbel(0, 1) i.i.d. is an exact sample from the softmax
    (and ``-log E`` with E ~ Exp(1) is Gumbel). Same distribution as ``torch.multinomial(softmax(logits), 1)``, and
    several times cheaper on the small batches of a rollout, where per-call overhead dominates. ``noise``: the Exp(1)
    draws to use (shaped like ``logits``), else drawn from torch's global generator.
    """
    if noise is None:
        noise = torch.empty_like(logits).exponential_()
    return (logits - noise.log()).argmax(-1)


def gaussian_logp(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """Log-density of a diagonal Gaussian, summed over action dimensions: ``(batch, act_dim) -> (batch,)``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)


class FlatParams:
    """All parameters of K modules of one shape (K = 1: a single run's; a population's members otherwise) in one
    contiguous ``(K, P)`` tensor ``flat``, row k module k's, with their gradients in another.

    A speed trick, mathematically a no-op: Adam and the global gradient-norm clip then run as one kernel each (for
    every member at once) instead of one per weight tensor, which matters on a CPU where these nets spend most of
    their time in per-call overhead. The modules' parameters become views into their row of ``flat``; backward
    accumulates into views of ``flat.grad`` (a module's own forward) or into ``flat.grad`` itself (a forward of the
    stacked weights, :class:`~sandbox.models.stacked.StackedAgent`). Call :meth:`zero_grad` (not a module's, which
    would detach the gradient views) before each backward.
    """

    def __init__(self, modules: nn.Module | Sequence[nn.Module]):
        self.modules = [modules] if isinstance(modules, nn.Module) else list(modules)
        self.params = [list(m.parameters()) for m in self.modules]
        rows = [torch.cat([p.detach().reshape(-1) for p in params]) for params in self.params]
        self.flat = nn.Parameter(torch.stack(rows))
        self.flat.grad = torch.zeros_like(self.flat)
        self._views: list[tuple[Tensor, Tensor]] = []  # (data, gradient) of every parameter of every module
        for k, params in enumerate(self.params):
            offset = 0
            for p in params:
                n = p.numel()
                self._views.append(
                    (
                        self.flat.data[k, offset : offset + n].view_as(p),
                        self.flat.grad[k, offset : offset + n].view_as(p),
                    )
                )
                offset += n
        for p, (data, _) in zip(self._all(), self._views):
            p.data = data
        self.zero_grad()

    def _all(self):
        return (p for params in self.params for p in params)

    def zero_grad(self) -> None:
        self.flat.grad.zero_()
        for p, (_, grad) in zip(self._all(), self._views):
            if p.grad is not grad:
                p.grad = grad  # re-attach, if anything set p.grad to None

    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Scale each module's gradient to norm at most ``max_norm``; return the norms before clipping, ``(K,)`` (as
        torch's ``clip_grad_norm_`` computes them, module by module)."""
        norms = torch.linalg.vector_norm(self.flat.grad, dim=1)
        self.flat.grad.mul_(torch.clamp(max_norm / (norms + 1e-6), max=1.0).unsqueeze(1))
        return norms
