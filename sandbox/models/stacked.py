"""K agents of one shape as one batched network, and Adam over their stacked weights: what a population of seeds
(``sandbox/algos/population.py``) trains with.

The weights of member k are row k of one ``(K, P)`` tensor, the members' :class:`~sandbox.models.mlp.FlatParams`
(each member's own parameters are views into its row). Each layer is then one batched matrix product over the K
members (``torch.baddbmm``), which is where a population saves time on a CPU: the per-operation overhead that
dominates these small networks is paid once for all members instead of once per member. A population of one (a
single run) runs its own network instead.

Nothing random happens inside these networks: masks and sampling noise are drawn outside, member by member, from
each member's own generator, in the order the single-seed trainer draws them. Members are therefore independent:
changing one member's seed changes nothing in the others.

Dropout is why these networks cannot run a :class:`~sandbox.dropout.MaskedDropout` forward of their own: the masks of
one forward are one per member, ``(K, batch, width)``, and a fresh one would come from torch's global generator, which
no single-seed run draws from in that order. So each member's own network chooses (and, fresh, draws from that member's
generator) its masks with its ``MaskedDropout`` (``sandbox/algos/population.py``: the seam's ``layer_mask`` and
``dropout_mask``, member by member), and the stacked forward applies them with the template's (the seam's
``apply_dropout``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cnn import DropoutCNN, cnn_forward
from .mlp import Agent, DropoutMLP, FlatParams, action_logp, action_logp_entropy, mlp_forward, sample_action


class StackedAgent:
    """The agents ``agents`` (one shape, different weights) as one network with a population axis in front.

    ``params``: the agents' :class:`~sandbox.models.mlp.FlatParams` (their weights as rows of one ``(K, P)`` leaf,
    with gradient: what the learner optimises); None for frozen agents (the KL references: a copy of their weights,
    no gradient). Observations are ``(K, batch, *obs_shape)`` (``obs_dim``, or MinAtar's ``(C, 10, 10)``: their
    convolutions as :func:`~sandbox.models.cnn.conv2d` batches them), the actor's and the critic's masks
    ``(K, batch, width)`` or None (no dropout), noise ``(K, batch, action_dim)``.

    One agent (K = 1, a single run) runs its own network (``F.linear``, no batched products): the numbers of a
    single run, bit for bit, and the parameters its diagnostics differentiate (``--grad-diag-every``,
    ``--flatness-every``). The masks it is handed are the ones its own forward would have drawn.
    """

    def __init__(self, agents: list[Agent], params: FlatParams | None = None):
        self.agents, self.template = agents, agents[0]
        named = list(self.template.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        if params is None:
            self.flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in a.parameters()]) for a in agents])
        else:
            self.flat = params.flat
        self.one = len(agents) == 1

    @property
    def size(self) -> int:
        return len(self.agents)

    def weights(self) -> dict[str, Tensor]:
        """Every parameter as a ``(K, *shape)`` view of ``flat`` (one split: its backward is one concatenation)."""
        chunks = self.flat.split(self.sizes, dim=1)
        return {n: c.view(self.size, *shape) for n, c, shape in zip(self.names, chunks, self.shapes)}

    def _forward(self, w: dict[str, Tensor], name: str, x: Tensor, mask: Tensor | None, all_samples: bool) -> Tensor:
        net: DropoutMLP | DropoutCNN = getattr(self.template, name)
        layers = [f"{name}.hidden.{i}" for i in range(len(net.hidden))] + [f"{name}.head"]
        weights = [(w[f"{k}.weight"], w[f"{k}.bias"]) for k in layers]
        if isinstance(net, DropoutCNN):  # MinAtar's: the K members' convolutions first (models/cnn.py's conv2d)
            conv = (w[f"{name}.conv.weight"], w[f"{name}.conv.bias"])
            return cnn_forward(x, conv, weights, mask, net.samples, net.average, all_samples, net.dropout.apply_mask)
        return mlp_forward(x, weights, mask, net.samples, net.average, all_samples, net.dropout.apply_mask)

    def _log_std(self, w: dict[str, Tensor]) -> Tensor | None:
        return None if self.template.discrete else w["log_std"].unsqueeze(1)  # (K, 1, A): broadcasts per member

    @torch.no_grad()
    def act(self, obs: Tensor, actor_mask: Tensor | None, noise: Tensor) -> tuple[Tensor, Tensor]:
        """``(actions, logp)``, each ``(K, batch)``: :meth:`sandbox.models.mlp.Agent.act` for every member at once."""
        if self.one:
            agent = self.template
            out = agent.actor(obs[0], _first(actor_mask))
            actions, logp = sample_action(out, None if agent.discrete else agent.log_std, noise[0])
            return actions[None], logp[None]
        w = self.weights()
        return sample_action(self._forward(w, "actor", obs, actor_mask, all_samples=False), self._log_std(w), noise)

    @torch.no_grad()
    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``log pi(actions | obs)`` of every member, without dropout: the frozen references' forward."""
        if self.one:
            return self.template.log_prob(obs[0], actions[0])[None]
        w = self.weights()
        return action_logp(self._forward(w, "actor", obs, None, all_samples=False), self._log_std(w), actions)

    @torch.no_grad()
    def value(self, obs: Tensor, critic_mask: Tensor | None) -> Tensor:
        if self.one:
            return self.template.critic(obs[0], _first(critic_mask)).squeeze(-1)[None]
        return self._forward(self.weights(), "critic", obs, critic_mask, False).squeeze(-1)

    def evaluate(
        self, obs: Tensor, actions: Tensor, actor_mask: Tensor | None, critic_mask: Tensor | None, with_entropy: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(logp, entropy, values)`` with gradients: :meth:`sandbox.models.mlp.Agent.evaluate` for every member;
        ``logp`` and ``entropy`` are ``(K, batch)``, or ``(copies, K, batch)`` with multi-sample dropout."""
        if self.one:
            agent = self.template
            out = agent.actor(obs[0], _first(actor_mask), all_samples=True)
            logp, entropy = action_logp_entropy(
                out, None if agent.discrete else agent.log_std, actions[0], with_entropy
            )
            values = agent.critic(obs[0], _first(critic_mask)).squeeze(-1)
            return logp.unsqueeze(-2), entropy.unsqueeze(-2), values[None]
        w = self.weights()
        out = self._forward(w, "actor", obs, actor_mask, all_samples=True)
        logp, entropy = action_logp_entropy(out, self._log_std(w), actions, with_entropy)
        return logp, entropy, self._forward(w, "critic", obs, critic_mask, False).squeeze(-1)


def _first(mask: Tensor | None) -> Tensor | None:
    return None if mask is None else mask[0]


class StackedAdam:
    """Adam (PyTorch's fused kernel, eps ``adam_eps``) on every member's row of a
    :class:`~sandbox.models.mlp.FlatParams`, each row with its own step count: member k is updated exactly as
    ``torch.optim.Adam(fused=True)`` would update it alone (tested). Members that stopped early (``target_kl``) or
    failed are left out of a step: their weights and Adam state do not move."""

    def __init__(self, params: FlatParams, lr: float, eps: float):
        self.flat, self.lr, self.eps = params.flat, lr, eps
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.steps = [torch.tensor(0.0) for _ in range(self.flat.shape[0])]
        self._rows: list[list[Tensor]] | None = None

    @torch.no_grad()
    def step(self, members: list[int]) -> None:
        """One Adam step of the rows ``members``: what ``torch.optim.Adam(fused=True).step()`` runs (its step counts
        incremented, then its fused kernel, ``torch._fused_adam_``), without its per-call Python."""
        if self._rows is None or self._rows[1][0]._base is not self.flat.grad:  # the rows' views, made once
            self._rows = [
                list(t.unbind(0)) for t in (self.flat.detach(), self.flat.grad, self.exp_avg, self.exp_avg_sq)
            ]
        rows = [[t[k] for k in members] for t in self._rows] if len(members) < len(self.steps) else self._rows
        steps = [self.steps[k] for k in members]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            *rows, [], steps, amsgrad=False, lr=self.lr, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=self.eps,
            maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip

    def state_dict(self) -> dict:
        return {
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
            "steps": torch.stack(self.steps),
        }

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        for step, saved in zip(self.steps, state["steps"]):
            step.copy_(saved)
