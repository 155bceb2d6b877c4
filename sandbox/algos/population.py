"""The seeds of a PPO run: K runs of one config that differ only in their seed, trained together in one process. A
single run is the population of one (K = 1): ``sandbox/algos/ppo.py``'s trainer is written once, for K seeds, and
what it calls here acts for every member at once.

Why: these networks are so small that a CPU spends most of a gradient step in per-operation overhead, not in
arithmetic. Stacking the K members' weights (``sandbox/models/stacked.py``) turns K forward and backward passes into
one of batched matrix products, and K rollouts into one batched forward per step; seeds per CPU-second go up several
times (README, "Populations").

What stays each member's own: its :class:`~sandbox.algos.rollout.Rollout` (environments, buffers, episodes), its own
:class:`~sandbox.algos.run.Run` (run directory, annealing, dropout schedule, summary), its own beta, and its own random
generator, which draws what the member would draw alone, in the same order (a single run: torch's global generator,
as it always has). What is batched: the networks' forward and backward passes (one network of a single run runs its
own forward), Adam (exact per member, with each member's own step count), and GAE (one call over every member's envs
side by side, exact: its columns do not mix). Gradient clipping, advantage normalisation, early stopping on
``target_kl`` and the non-finite guard act per member (``sandbox/algos/learner.py``): a member that stops or fails
does not hold the others back.

Numbers: a member's metrics equal its single run's up to float rounding (the batched products sum in another order,
as on another CPU model, and a member's minibatches are padded to a size fixed by the config), and are independent of
the other members: changing one seed changes nothing else. A population of one computes a single run's numbers bit
for bit. Not supported with more than one seed (``sandbox sweep`` runs such configs one seed at a time):
``save_every``, ``stop_at_threshold``, ``grad_diag_every``, ``flatness_every``; language tasks and GRPO.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import torch
from torch import Tensor

from ..config import POPULATION_UNSUPPORTED, Config, ConfigError, without
from ..dropout import dropout_mask, layer_mask
from ..envs.gym_tasks import StepTogether
from ..maths import Maths
from ..models.mlp import DropoutMLP, FlatParams
from ..models.stacked import StackedAgent
from .learner import NonFiniteLossError, Rows
from .rollout import Batch, Rollout
from .run import Run

SHARED = ("obs_buf", "actions", "logp", "ref_logp", "rewards_np", "terminated_np", "dones_np", "valid", "masks")
SHARED += ("obs", "prev_done")
"""The rollouts' buffers, and the observations and episode ends that carry over, held for every member at once."""


def check_population(cfgs: list[Config]) -> None:
    """One-line errors unless ``cfgs`` can train as one population: PPO on a Gym env, the same config but for the
    seed and where each run writes (:func:`sandbox.config.without`), none of the fields declared ``population=False``
    (:data:`sandbox.config.POPULATION_UNSUPPORTED`) set."""
    first = cfgs[0]
    if first.algo != "ppo" or first.is_lang:
        raise ConfigError("algo", "populations train PPO on Gym envs; run GRPO and language tasks one seed at a time")
    for name, allowed in POPULATION_UNSUPPORTED.items():
        if getattr(first, name) != allowed:
            raise ConfigError(name, f"is not supported in a population (only {allowed!r}); train one seed at a time")
    shared = without(first.to_dict(), "seed", "output")
    for c in cfgs[1:]:
        if without(c.to_dict(), "seed", "output") != shared:
            raise ConfigError("seed", "a population's runs must share every setting but the seed and where they write")


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory instead of returning it to the system. A population's tensors are
    large (a layer's activations for 16 members are a megabyte), and glibc serves such blocks with ``mmap``: every
    allocation then page-faults its memory in anew, which made the batched elementwise operations about a quarter
    slower (measured; README, "Populations"). A no-op where glibc is not the allocator (macOS, Windows)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD: blocks below 256 MB come from the heap
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD: keep up to 512 MB of freed heap
    except (OSError, AttributeError):
        pass


class Population:
    """Where the K members' experience comes from, and their networks: each member's
    :class:`~sandbox.algos.rollout.Rollout` (built after ``torch.manual_seed(seed)``, as a single run builds it) and
    random generator (K = 1: None, torch's global one), their environments stepped together
    (:class:`~sandbox.envs.gym_tasks.StepTogether`), their agents' weights as the rows of ``params`` (what the learner
    optimises) and as one :class:`~sandbox.models.stacked.StackedAgent` (``agents``), and their frozen references
    (``references``)."""

    def __init__(self, cfgs: list[Config], maths: Maths):
        self.cfg, self.maths = cfgs[0], maths
        self.rollouts: list[Rollout] = []
        self.generators: list[torch.Generator | None] = []
        for c in cfgs:  # each member starts exactly as its single run does, then draws from its own generator
            torch.manual_seed(c.seed)
            self.rollouts.append(Rollout(c, maths))
            if len(cfgs) > 1:
                generator = torch.Generator().manual_seed(0)
                generator.set_state(torch.get_rng_state())
                self.rollouts[-1].generator = generator
            self.generators.append(self.rollouts[-1].generator)
        for name in SHARED:  # every member's buffers as views of one array each: a step writes all members at once
            parts = [getattr(r, name) for r in self.rollouts]
            if parts[0] is not None:
                stacked = np.stack(parts) if isinstance(parts[0], np.ndarray) else torch.stack(parts)
                setattr(self, name, stacked)
                for r, own in zip(self.rollouts, stacked):
                    setattr(r, name, own)
        self.envs = StepTogether([r.envs for r in self.rollouts], self.cfg.env, self.cfg.env_params)
        self.policies = [r.policy for r in self.rollouts]
        self.params = FlatParams(self.policies)
        self.agents = StackedAgent(self.policies, self.params)
        self.references = StackedAgent([r.reference for r in self.rollouts])

    def __len__(self) -> int:
        return len(self.rollouts)

    def train(self, mode: bool) -> None:
        """Every member's networks in train mode (True) or eval mode (False): what their dropout layers do."""
        for policy in self.policies:
            policy.train(mode)

    def close(self) -> None:
        self.envs.close()

    # --- 1. the rollout --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def collect(self, runs: Members) -> bool:
        """``num_steps`` steps of every active member: masks and noise drawn per member, one batched forward, every
        member's buffers written at once (the observation, the action and its log-prob, whether the step is valid:
        False at an autoreset step), the envs stepped together, each member's answers kept and its finished episodes
        recorded by its run. The log-prob stored for each action comes from the forward pass that chose it; with
        ``ref_each_step``, the reference's too, from the same batch shape, so that equal networks give equal bits.
        With consistent dropout each step's masks are kept, and the next step's drawn. True, and no further step
        taken, as soon as a run should stop (solved, with ``stop_at_threshold``: a single run only)."""
        rollouts, template, gens = self.rollouts, self.agents.template, self.generators
        N, K, store = self.cfg.num_envs, len(rollouts), rollouts[0].store_masks
        for r in rollouts:
            r.refresh_masks()
        actors, width = [r.policy.actor for r in rollouts], template.actor.mask_width
        noise = torch.empty(K, N, template.actor.head.out_features)  # the noise that picks each action, per member
        obs = torch.from_numpy(self.obs)  # (K, N, *obs_shape): every member's current observations, kept in place
        for t in range(self.cfg.num_steps):
            stored = torch.stack([r.next_mask[:, :width] for r in rollouts]) if store else None
            actor_masks = _masks(actors, stored, [N] * K, N, width, gens)
            for member, g in zip(noise, gens):  # Exp(1) for the Gumbel-max trick, N(0, 1) for a Gaussian policy
                _ = member.exponential_(generator=g) if template.discrete else member.normal_(generator=g)
            actions, logp = self.agents.act(obs, actor_masks, noise)
            self.obs_buf[:, t], self.actions[:, t], self.logp[:, t] = self.obs, actions, logp
            if self.cfg.ref_each_step:
                self.ref_logp[:, t] = self.references.log_prob(obs, actions)
            if store:
                for r in rollouts:
                    r.masks[t] = r.next_mask  # the masks this step acted with
                    r.next_mask = r.policy.sample_mask(N, r.generator)  # the bootstrap's, if last
            self.valid[:, t] = ~self.prev_done
            answers = self.envs.step(list(rollouts[0].clip_action(actions.numpy())), runs.active)
            for k in runs.active:  # a member that failed keeps its row in the batch, but takes no step of its own
                self.obs[k], rewards, terminated, truncated = answers[k]
                dones = terminated | truncated
                self.rewards_np[k, t], self.terminated_np[k, t], self.dones_np[k, t] = rewards, terminated, dones
                self.prev_done[k] = dones
                returns, lengths = rollouts[k].episodes.step(rewards, dones, self.valid[k, t])
                if runs[k].record_step(N, returns.tolist(), lengths.tolist()):
                    return True
        return False

    # --- 2. advantages ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def values(self) -> tuple[Tensor, Tensor]:
        """``(V(s_t), V(s_{t+1}))`` of every member, ``(K, T, N)``: every state of the rollout in one forward, with
        the stored masks (consistent dropout); the bootstrap state with the next step's masks."""
        rollouts, template, gens = self.rollouts, self.agents.template, self.generators
        T, N, K = self.cfg.num_steps, self.cfg.num_envs, len(rollouts)
        obs = torch.from_numpy(np.stack([r.obs_buf for r in rollouts])).flatten(1, 2)  # (K, T * N, *obs_shape)
        last = torch.from_numpy(np.stack([r.obs for r in rollouts]))
        critics = [r.policy.critic for r in rollouts]
        replay = rollouts[0].store_masks and template.critic_has_dropout  # consistent dropout: the rollout's masks
        w, cw = template.actor.mask_width, template.critic.mask_width
        stored = torch.stack([r.masks.flatten(0, 1)[:, w:] for r in rollouts]) if replay else None
        masks = _masks(critics, stored, [T * N] * K, T * N, cw, gens)
        stored = torch.stack([r.next_mask[:, w:] for r in rollouts]) if replay else None
        boot_masks = _masks(critics, stored, [N] * K, N, cw, gens)
        values = self.agents.value(obs, masks).view(K, T, N)
        bootstrap = self.agents.value(last, boot_masks)
        return values, torch.cat([values[:, 1:], bootstrap[:, None]], dim=1)

    def batches(
        self, active: list[int], values: Tensor, next_values: Tensor, rewards: list[Tensor]
    ) -> dict[int, Batch]:
        """Each active member's valid transitions with their GAE advantages and returns, from its step ``rewards[i]``
        ``(T, N)`` (the i-th active member's) and its critic's ``values``, ``next_values`` ``(K, T, N)``: one call of
        ``maths.gae`` on every member's envs side by side, ``(T, K * N)``. GAE's columns do not mix, so each member's
        advantages are the ones its own call would give, to the last bit, and the loop over T runs once instead of K
        times."""
        cfg, N, rollouts = self.cfg, self.cfg.num_envs, self.rollouts

        def side_by_side(tensors) -> Tensor:
            return torch.cat(list(tensors), dim=1)

        advantages, returns = self.maths.gae(
            side_by_side(rewards),
            side_by_side(values[k] for k in active),
            side_by_side(next_values[k] for k in active),
            side_by_side(rollouts[k].terminated for k in active),
            side_by_side(rollouts[k].dones for k in active),
            cfg.gamma,
            cfg.gae_lambda,
        )
        own = [slice(i * N, (i + 1) * N) for i in range(len(active))]
        return {
            k: rollouts[k].batch(values[k], advantages[:, own[i]], returns[:, own[i]]) for i, k in enumerate(active)
        }

    # --- 3. the update's forward -----------------------------------------------------------------------------------

    def evaluate(self, mb: Minibatch, with_entropy: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``(logp, entropy, values)`` of every member's rows of ``mb``, with gradients: ``(K, S)``, or
        ``(copies, K, S)`` for ``logp`` and ``entropy`` with multi-sample dropout. The dropout masks are chosen member
        by member, actor then critic, as a network's own forward chooses them (:func:`_masks`): consistent dropout's
        stored ones, gathered with the minibatch, fresh ones for the member's rows (zeros after them), or none."""
        template, w = self.agents.template, self.agents.template.actor.mask_width
        stored = mb.masks
        actors = [policy.actor for policy in self.policies]
        actor_masks = _masks(
            actors, None if stored is None else stored[..., :w], mb.counts, mb.width, w, self.generators
        )
        critic_masks = None
        if template.critic_has_dropout:
            critics, cw = [policy.critic for policy in self.policies], template.critic.mask_width
            critic_stored = None if stored is None else stored[..., w:]
            critic_masks = _masks(critics, critic_stored, mb.counts, mb.width, cw, self.generators)
        return self.agents.evaluate(mb.obs, mb.actions, actor_masks, critic_masks, with_entropy)


class Minibatch(Batch):
    """Minibatch rows of every member, ``(K, S, ...)``: a :class:`~sandbox.algos.rollout.Batch` with a member axis
    in front, ``valid (K, S)`` the rows that are each member's own (its first ``counts[k]``; None: every row, one
    member), ``width`` = S, and ``whole``: every member's rows are its whole batch (normalised once already)."""

    valid: Tensor | None
    counts: list[int]
    width: int
    whole: bool


class MembersBatch:
    """Every member's batch side by side, ``(K, B, ...)``, each member's rows first, zeros after, where B is the
    config's batch size (so that no member's shapes depend on another's; a single run: its own rows, nothing padded);
    :meth:`minibatch` cuts minibatch rows of every member out of it, padded to a size fixed by the config."""

    def __init__(self, batches: dict[int, Batch], K: int, cfg: Config):
        self.sizes = [len(batches[k]) if k in batches else None for k in range(K)]
        B = cfg.batch_size if K > 1 else len(batches[0])
        empty = next(iter(batches.values())).select(slice(0, 0))
        fields = [getattr(empty, f) for f in Batch.FIELDS]
        self.stacked = Batch(
            *(
                None if t is None else _stack([getattr(batches.get(k, empty), f) for k in range(K)], B)
                for f, t in zip(Batch.FIELDS, fields)
            )
        )
        self.K, self.B = K, B
        self.width = math.ceil(B / min(cfg.num_minibatches, B)) if K > 1 else None  # rows per padded minibatch
        self.whole = all(min(cfg.num_minibatches, n) == 1 for n in self.sizes if n)  # one minibatch per member
        self._cache: dict[tuple, Minibatch] = {}  # whole-batch minibatches are the same every epoch: made once

    @property
    def advantages(self) -> Tensor:
        return self.stacked.advantages

    @advantages.setter
    def advantages(self, value: Tensor) -> None:
        self.stacked.advantages = value

    @property
    def valid(self) -> Tensor | None:
        """``(K, B)``: each member's rows, or None (a single run: every row)."""
        if self.K == 1:
            return None
        return torch.arange(self.B)[None] < torch.tensor([n or 0 for n in self.sizes])[:, None]

    def minibatch(self, rows: list[Rows | None]) -> Minibatch:
        """The rows ``rows[k]`` of every member ``k`` (None: k takes no part; its rows are all padding)."""
        counts = [0 if r is None else (self.sizes[k] if isinstance(r, slice) else len(r)) for k, r in enumerate(rows)]
        if self.K == 1:  # a single run: its rows as they are
            return _minibatch(self.stacked.rows(rows[0]), None, counts, self.whole)
        if all(r is None or isinstance(r, slice) for r in rows):  # the whole batch of every member that takes part
            key = tuple(r is not None for r in rows)
            if key not in self._cache:
                valid = torch.arange(self.B)[None] < torch.tensor(counts)[:, None]
                self._cache[key] = _minibatch(self.stacked, valid, counts, self.whole)
            return self._cache[key]
        idx = torch.zeros(self.K, self.width, dtype=torch.long)  # padding rows point at row 0
        for k, r in enumerate(rows):
            if r is not None:
                idx[k, : counts[k]] = torch.arange(counts[k]) if isinstance(r, slice) else r
        valid = torch.arange(self.width)[None] < torch.tensor(counts)[:, None]
        return _minibatch(self.stacked.gather(idx), valid, counts, self.whole)


def _minibatch(batch: Batch, valid: Tensor | None, counts: list[int], whole: bool) -> Minibatch:
    mb = Minibatch(*(getattr(batch, f) for f in Batch.FIELDS))
    mb.valid, mb.counts, mb.width, mb.whole = valid, counts, batch.obs.shape[1], whole
    return mb


class Members:
    """The members' :class:`Run` objects, entered together and advanced in lockstep (``members[k]``: member k's
    run). A member that fails (a non-finite loss) leaves early with its own summary; a single run's failure is raised
    (:class:`~sandbox.algos.learner.NonFiniteLossError`), as it always was."""

    def __init__(self, runs: list[Run]):
        self.runs = runs
        self.active = list(range(len(runs)))

    def __getitem__(self, k: int) -> Run:
        return self.runs[k]

    def __enter__(self) -> Members:
        return self

    @property
    def schedule(self):
        """This update's schedule (the learning rate, the clip ranges): the same in every member's."""
        return self.runs[self.active[0]].schedule

    def updates(self):
        """Update numbers, every member's :meth:`Run.updates` advanced together, until every one has finished."""
        steps = [run.updates() for run in self.runs]
        while True:
            got = [next(steps[k], None) for k in self.active]
            if not self.active or any(u is None for u in got):
                return
            yield got[0]

    def fail(self, k: int, error: NonFiniteLossError) -> None:
        self.active.remove(k)
        self.runs[k].__exit__(NonFiniteLossError, error, None)

    def __exit__(self, exc_type, exc, tb) -> bool:
        for k in list(self.active):
            self.runs[k].__exit__(exc_type, exc, tb)
        return False


def _masks(
    nets: list[DropoutMLP], stored: Tensor | None, counts: list[int], rows: int, width: int, gens: list
) -> Tensor | None:
    """The dropout masks of one forward of every member's network ``nets[k]``, ``(K, rows, width)`` (zeros after
    member k's ``counts[k]`` rows), or None (no dropout), each chosen by the member's own network as its single
    run's forward chooses it (its :class:`~sandbox.dropout.MaskedDropout`, the seam's ``layer_mask``): its stored
    masks ``stored[k]`` (consistent dropout), else fresh ones for its rows (train mode, p > 0), drawn from its own
    generator, else none. A member without rows draws nothing, as it would draw nothing alone. The members share one
    mode and one p: all masks, or none.

    With the sandbox's own ``layer_mask`` and ``dropout_mask`` in the seam (a speed device, the same numbers): the
    stored masks as they are, or each member's fresh draws made in place into one tensor."""
    dropout = nets[0].dropout
    if dropout.maths.layer_mask is layer_mask and dropout.maths.dropout_mask is dropout_mask:
        if stored is not None or not dropout.fresh:
            return stored
        keep = 1.0 - dropout.p  # dropout_mask's draws: Bernoulli(keep), divided by keep
        out = torch.empty(len(nets), rows, width) if min(counts) == rows else torch.zeros(len(nets), rows, width)
        for member, n, g in zip(out, counts, gens):
            if n:
                member[:n].bernoulli_(keep, generator=g)
        return out.div_(keep)
    given = [None] * len(nets) if stored is None else list(stored)
    chosen = [
        net.dropout.choose(s, (rows if s is not None else n, width), g)
        if n or s is not None
        else (torch.zeros(0, width) if net.dropout.fresh else None)
        for net, s, n, g in zip(nets, given, counts, gens)
    ]
    if chosen[0] is None:
        return None
    if stored is not None and all(m is s for m, s in zip(chosen, given)):
        return stored  # every network replays its stored masks, used as they are (no copy)
    return _stack(chosen, rows)


def _stack(rows: list[Tensor], size: int) -> Tensor:
    """Member rows ``(n_k, ...)`` into ``(K, size, ...)``, each member's rows first, zeros after."""
    if len(rows) == 1 and len(rows[0]) == size:
        return rows[0][None]
    out = rows[0].new_zeros((len(rows), size, *rows[0].shape[1:]))
    for k, row in enumerate(rows):
        out[k, : len(row)] = row
    return out
