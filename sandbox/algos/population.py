"""A population of seeds: K runs of one PPO config that differ only in their seed, trained together in one process.

Why: these networks are so small that a CPU spends most of a gradient step in per-operation overhead, not in
arithmetic. Stacking the K members' weights (``sandbox/models/stacked.py``) turns K forward and backward passes into
one of batched matrix products, and K rollouts into one batched forward per step; seeds per CPU-second go up several
times (README, "Populations").

What stays the single-seed trainer's (``sandbox/algos/ppo.py``): every member has its own
:class:`~sandbox.algos.rollout.Rollout` (environments, buffers, episodes), its own :class:`~sandbox.algos.run.Run` (run
directory, annealing, dropout schedule, summary), its own beta, and its own random generator, which draws what the
single-seed trainer draws, in the same order; the step rewards (``step_rewards``) and the logged row
(``log_update``) are ppo.py's own functions, called member by member, and the objective is ppo.py's
``objective_terms``, called once for all members with each mean taken over a member's own rows. What is batched: the
networks' forward and backward passes, Adam (exact per member, with each member's own step count), and GAE (one call
over every member's envs side by side, exact: its columns do not mix). Gradient clipping,
advantage normalisation, early stopping on ``target_kl`` and the non-finite guard act per member: a member that
stops or fails does not hold the others back.

Numbers: a member's metrics equal its single-seed run's up to float rounding (the batched products sum in another
order, as on another CPU model), and are independent of the other members: changing one seed changes nothing else.
Not supported in a population (``sandbox sweep`` runs such configs one seed at a time): ``save_every``,
``stop_at_threshold``, ``grad_diag_every``, ``flatness_every``; language tasks and GRPO.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from functools import partial

import numpy as np
import torch
from torch import Tensor

from ..config import Config, ConfigError, without
from ..envs.gym_tasks import StepTogether
from ..maths import Maths, kl_k3
from ..models.mlp import DropoutMLP
from ..models.stacked import StackedAdam, StackedAgent
from ..runs.rundir import RunLog, RunResult
from .diagnostics import Seen, update_metrics
from .learner import NonFiniteLossError
from .objective import Beta, keep_aggregate_average
from .ppo import log_update, objective_terms, step_rewards
from .rollout import Batch, Rollout
from .run import Run

UNSUPPORTED = {"save_every": 0, "stop_at_threshold": False, "grad_diag_every": 0, "flatness_every": 0}
"""Fields a population cannot take, with the only value it accepts."""


def check_population(cfgs: list[Config]) -> None:
    """One-line errors unless ``cfgs`` can train as one population: PPO on a Gym env, the same config but for the
    seed and where each run writes (:func:`sandbox.config.without`), none of :data:`UNSUPPORTED`."""
    first = cfgs[0]
    if first.algo != "ppo" or first.is_lang:
        raise ConfigError("algo", "populations train PPO on Gym envs; run GRPO and language tasks one seed at a time")
    for name, allowed in UNSUPPORTED.items():
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


def train_ppo_population(cfgs: list[Config], maths: Maths, logs: list[RunLog]) -> list[RunResult]:
    """PPO for every config of ``cfgs`` (one per seed), as one population; each writes its own run directory."""
    keep_freed_memory()
    cfg, mode = cfgs[0], cfgs[0].mode
    rollouts, generators = [], []
    for c in cfgs:  # each member starts exactly as its single-seed run does, then draws from its own generator
        torch.manual_seed(c.seed)
        rollouts.append(Rollout(c, maths))
        generators.append(torch.Generator().manual_seed(0))
        generators[-1].set_state(torch.get_rng_state())
        rollouts[-1].generator = generators[-1]
    envs = StepTogether([r.envs for r in rollouts], cfg.env, cfg.env_params)
    agents = StackedAgent([r.policy for r in rollouts])
    references = StackedAgent([r.reference for r in rollouts])
    adam = StackedAdam(agents.flat, cfg.learning_rate, cfg.adam_eps, cfg.max_grad_norm)
    betas = [Beta(c, maths) for c in cfgs]
    budget = cfg.num_updates * cfg.batch_size
    runs = [
        Run(c, log, maths, r, budget=budget, components={"beta": b}, population=len(cfgs))
        for c, log, r, b in zip(cfgs, logs, rollouts, betas)
    ]
    population = _Population(runs, agents)
    with population, contextlib.closing(envs):
        for _ in population.updates():
            adam.lr = runs[population.active[0]].schedule.lr  # this update's, the same in every member's schedule

            # 1. Rollout: every member acts in one batched forward per step, in the mode's rollout setting.
            for r in rollouts:
                r.policy.train(mode.rollout_train)
            _collect(population, rollouts, agents, references, generators, envs)

            # 2. Advantages (ppo.py's ppo_batch, GAE over every member's envs at once), from one forward of the critics.
            values, next_values = _values(rollouts, agents, generators)
            made = _batches(population.active, rollouts, values, next_values, betas, maths)

            # 3. Update: update_epochs epochs of minibatch steps, all members in one batched forward and backward.
            for r in rollouts:
                r.policy.train(mode.update_train)
            batches = {k: batch for k, (batch, _) in made.items()}
            stats = _optimise(population, agents, adam, batches, betas, generators)

            # 4. Log one row per member (ppo.py's log_update); adapt each member's beta.
            for k in population.active:
                log_update(runs[k], betas[k], stats[k], batches[k], made[k][1])
    return [run.result for run in runs]


class _Population:
    """The members' :class:`Run` objects, entered together and advanced in lockstep; a member that fails (a
    non-finite loss) leaves early with its own summary, and everyone's weights are written back before any run
    saves its ``policy.pt``."""

    def __init__(self, runs: list[Run], agents: StackedAgent):
        self.runs, self.agents = runs, agents
        self.active = list(range(len(runs)))

    def __enter__(self) -> "_Population":
        return self

    def updates(self):
        steps = [run.updates() for run in self.runs]
        while True:
            got = [next(steps[k], None) for k in self.active]
            if not self.active or any(u is None for u in got):
                return
            yield got[0]

    def fail(self, k: int, error: NonFiniteLossError) -> None:
        self.agents.write_back(k)
        self.active.remove(k)
        self.runs[k].__exit__(NonFiniteLossError, error, None)

    def __exit__(self, exc_type, exc, tb) -> bool:
        for k in list(self.active):
            self.agents.write_back(k)
            self.runs[k].__exit__(exc_type, exc, tb)
        return False


def _chosen(nets: list[DropoutMLP], stored: list[Tensor | None], shapes: list[tuple[int, int]], gens: list):
    """The dropout masks of one forward of every member, each chosen by the member's own network as its single-seed
    forward chooses it (its :class:`~sandbox.dropout.MaskedDropout`, the seam's ``layer_mask``): its ``stored`` mask,
    else a fresh one of its shape (train mode, p > 0), drawn from the member's own generator, else none. A list, one
    per member: all masks, or all None (the members share one mode and one p)."""
    return [net.dropout.choose(s, shape, g) for net, s, shape, g in zip(nets, stored, shapes, gens)]


def _stack(rows: list[Tensor], size: int) -> Tensor:
    """Member rows ``(n_k, ...)`` into ``(K, size, ...)``, each member's rows first, zeros after."""
    out = rows[0].new_zeros((len(rows), size, *rows[0].shape[1:]))
    for k, row in enumerate(rows):
        out[k, : len(row)] = row
    return out


@torch.no_grad()
def _collect(
    pop: _Population, rollouts: list[Rollout], agents: StackedAgent, refs: StackedAgent, gens: list, envs: StepTogether
) -> None:
    """``num_steps`` steps of every member: masks and noise drawn per member, one batched forward, each member's
    :meth:`~sandbox.algos.rollout.Rollout.store`, the envs stepped together, each member's
    :meth:`~sandbox.algos.rollout.Rollout.observe`, whose step its run records."""
    first, template = rollouts[0], agents.template
    N = first.cfg.num_envs
    for r in rollouts:
        r.refresh_masks()
    actor_width = template.actor.mask_width
    for t in range(first.cfg.num_steps):
        obs = torch.from_numpy(np.stack([r.obs for r in rollouts]))  # (K, N, *obs_shape)
        stored = [r.next_mask[:, :actor_width] if first.store_masks else None for r in rollouts]
        chosen = _chosen([r.policy.actor for r in rollouts], stored, [(N, actor_width)] * len(rollouts), gens)
        actor_masks = None if chosen[0] is None else torch.stack(chosen)
        shape = (N, template.actor.head.out_features)
        draw = (
            torch.randn
            if not template.discrete
            else lambda *s, generator: torch.empty(s).exponential_(generator=generator)
        )
        noise = torch.stack([draw(*shape, generator=g) for g in gens])
        actions, logp = agents.act(obs, actor_masks, noise)
        ref_logp = refs.log_prob(obs, actions) if first.cfg.ref_each_step else None
        env_actions = [
            r.store(t, actions[k], logp[k], None if ref_logp is None else ref_logp[k]) for k, r in enumerate(rollouts)
        ]
        answers = envs.step(env_actions, pop.active)
        for k in pop.active:  # a member that failed keeps its row in the batch, but takes no step of its own
            pop.runs[k].record_step(*rollouts[k].observe(t, *answers[k]))


def _batches(
    active: list[int], rollouts: list[Rollout], values: Tensor, next_values: Tensor, betas: list[Beta], maths: Maths
) -> dict[int, tuple[Batch, Tensor]]:
    """What :func:`~sandbox.algos.ppo.ppo_batch` gives each active member, with one call of ``maths.gae`` on every
    member's envs side by side, ``(T, K * N)``: GAE's columns do not mix, so each member's advantages are the ones its
    own call would give, to the last bit, and the loop over T runs once instead of K times."""
    cfg, N = rollouts[0].cfg, rollouts[0].cfg.num_envs
    rewards, log_ratio_ref = zip(*(step_rewards(rollouts[k], betas[k], maths) for k in active))

    def side_by_side(tensors) -> Tensor:
        return torch.cat(list(tensors), dim=1)

    advantages, returns = maths.gae(
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
        k: (rollouts[k].batch(values[k], advantages[:, own[i]], returns[:, own[i]]), log_ratio_ref[i])
        for i, k in enumerate(active)
    }


@torch.no_grad()
def _values(rollouts: list[Rollout], agents: StackedAgent, gens: list) -> tuple[Tensor, Tensor]:
    """``(V(s_t), V(s_{t+1}))`` of every member, ``(K, T, N)``: :meth:`~sandbox.algos.rollout.Rollout.values`
    batched."""
    first, template = rollouts[0], agents.template
    T, N = first.cfg.num_steps, first.cfg.num_envs
    obs = torch.from_numpy(np.stack([r.obs_buf for r in rollouts])).flatten(1, 2)  # (K, T * N, *obs_shape)
    last = torch.from_numpy(np.stack([r.obs for r in rollouts]))
    critics, K = [r.policy.critic for r in rollouts], len(rollouts)
    replay = first.store_masks and template.critic_has_dropout  # consistent dropout: the rollout's critic masks
    w, cw = template.actor.mask_width, template.critic.mask_width
    stored = [r.masks.flatten(0, 1)[:, w:] if replay else None for r in rollouts]
    chosen = _chosen(critics, stored, [(T * N, cw)] * K, gens)
    boot = _chosen(critics, [r.next_mask[:, w:] if replay else None for r in rollouts], [(N, cw)] * K, gens)
    masks, boot_masks = (None, None) if chosen[0] is None else (torch.stack(chosen), torch.stack(boot))
    values = agents.value(obs, masks).view(len(rollouts), T, N)
    bootstrap = agents.value(last, boot_masks)
    return values, torch.cat([values[:, 1:], bootstrap[:, None]], dim=1)


def _optimise(
    pop: _Population, agents: StackedAgent, adam: StackedAdam, batches: dict[int, Batch], betas: list[Beta], gens: list
) -> dict[int, dict[str, float]]:
    """``update_epochs`` epochs for every active member, all members' minibatch j through the networks together.

    Each member's minibatches come from its own permutation of its own valid transitions (``torch.randperm`` from
    its generator, as the single-seed trainer draws it); minibatch j of every member is padded to the same number
    of rows, which depends on the config only, so members never change each other's shapes. The objective is that of
    ``sandbox/algos/ppo.py`` with every mean taken over a member's own rows (:func:`_member_means`). A member whose
    approx_kl passes ``target_kl`` stops its epochs there, alone; one whose loss is not finite leaves the population
    (its run ends with status ``non-finite-loss``). Returns each member's metrics (:func:`update_metrics`)."""
    runs, maths = pop.runs, pop.runs[0].maths
    cfg, K, B = runs[pop.active[0]].cfg, len(runs), runs[pop.active[0]].cfg.batch_size
    empty = next(iter(batches.values())).select(slice(0, 0))
    stacked = Batch(
        *(
            None if getattr(empty, f) is None else _stack([getattr(batches.get(k, empty), f) for k in range(K)], B)
            for f in Batch.FIELDS
        )
    )
    sizes = torch.tensor([len(batches[k]) if k in batches else 0 for k in range(K)])
    parts = {k: min(cfg.num_minibatches, int(sizes[k])) for k in pop.active if sizes[k] > 0}
    whole = torch.arange(B)[None] < sizes[:, None]  # (K, B): each member's valid transitions
    if cfg.norm_adv and parts and max(parts.values()) == 1:  # one minibatch: the whole batch, normalised once
        stacked.advantages = _member_normalize(stacked.advantages, whole)
    width = math.ceil(B / min(cfg.num_minibatches, B))  # rows per padded minibatch
    log: list[tuple] = []  # per minibatch: what the metrics need, for every member at once
    epochs_done = {k: cfg.update_epochs if k in parts else 0 for k in pop.active}
    stepping = list(parts)
    single = {k: [torch.arange(int(sizes[k]))] for k in parts if parts[k] == 1}  # the whole batch, every epoch
    normalised = not cfg.norm_adv or max(parts.values(), default=1) == 1
    padded: dict[tuple, tuple] = {}  # whole-batch minibatches are the same every epoch: gathered once
    for epoch in range(cfg.update_epochs):
        order = {
            k: single.get(k) or torch.randperm(int(sizes[k]), generator=gens[k]).tensor_split(parts[k])
            for k in stepping
        }
        for j in range(max((len(o) for o in order.values()), default=0)):
            now = [k for k in stepping if j < len(order[k])]
            rows = [order[k][j] if k in now else torch.zeros(0, dtype=torch.long) for k in range(K)]
            key = tuple(now) if all(k in single for k in now) else None
            if key is None or key not in padded:
                idx, valid = _pad_rows(rows, width)
                padded[key] = (valid, stacked.gather(idx))
            valid, mb = padded[key]
            actor_masks, critic_masks = _update_masks(agents, mb, rows, runs, gens, width)
            logp, entropy, values = agents.evaluate(mb.obs, mb.actions, actor_masks, critic_masks, cfg.ent_coef > 0)
            terms = _member_loss(mb, logp, entropy, values, valid, normalised, runs, betas, maths)
            loss, kl = terms["loss"].detach().tolist(), terms["approx_kl"].tolist()
            stop = [k for k in now if cfg.target_kl is not None and kl[k] > cfg.target_kl]
            for k in stop:  # this minibatch: no step for this member, and no more this update
                epochs_done[k] = epoch
                stepping.remove(k)
            step = [k for k in now if k not in stop]
            for k in [k for k in step if not math.isfinite(loss[k])]:
                step.remove(k)
                stepping.remove(k)
                pop.fail(k, NonFiniteLossError(_non_finite_message(runs[k].update_index, epoch, terms, k)))
            norms = None
            if step:
                agents.flat.grad.zero_()
                terms["loss"][step].sum().backward()
                norms = adam.clip_grad_norm_()
                adam.step(step)
            log.append((now, step, valid, terms, norms))
    clip = {k: (runs[k].schedule.clip_coef, runs[k].schedule.clip_coef_high) for k in pop.active}
    return {k: update_metrics(_seen(log, k), clip[k][0], epochs_done[k], clip[k][1]) for k in pop.active}


def _pad_rows(rows: list[Tensor], width: int) -> tuple[Tensor, Tensor]:
    """Member row indices (ragged) into ``(K, width)`` indices (padding points at row 0) and the valid mask."""
    idx = torch.zeros(len(rows), width, dtype=torch.long)
    for k, r in enumerate(rows):
        idx[k, : len(r)] = r
    lengths = torch.tensor([len(r) for r in rows])
    return idx, torch.arange(width)[None] < lengths[:, None]


def _update_masks(agents: StackedAgent, mb: Batch, rows: list[Tensor], runs: list[Run], gens: list, width: int):
    """The update forward's dropout masks of the actor and of the critic, ``(K, width, ...)`` or None, chosen member by
    member (:func:`_chosen`; actor then critic, as :meth:`sandbox.models.mlp.Agent.evaluate` draws them): consistent
    dropout's stored ones, gathered with the minibatch (its padding rows included), fresh ones for each member's rows
    (zeros after them), or none."""
    template, w = agents.template, agents.template.actor.mask_width
    actor: list[Tensor | None] = []
    critic: list[Tensor | None] = []
    stored_actor: list[Tensor | None] = []  # the stored masks handed to the members' networks
    stored_critic: list[Tensor | None] = []
    for k, r in enumerate(rows):
        agent, stored = runs[k].policy, None if mb.masks is None else mb.masks[k]
        n = width if stored is not None else len(r)
        stored_actor.append(None if stored is None else stored[:, :w])
        stored_critic.append(None if stored is None else stored[:, w:])
        actor += _chosen([agent.actor], stored_actor[-1:], [(n, w)], [gens[k]])
        if template.critic_has_dropout:
            cw = template.critic.mask_width
            critic += _chosen([agent.critic], stored_critic[-1:], [(n, cw)], [gens[k]])
    if mb.masks is not None and all(m is s for m, s in zip(actor + critic, stored_actor + stored_critic)):
        # consistent dropout: every network replays its stored masks, the minibatch's own, used as they are (no copy)
        return mb.masks[..., :w], (mb.masks[..., w:] if template.critic_has_dropout else None)
    actor_masks = None if actor[0] is None else _stack(actor, width)  # None: no dropout (e.g. in the critic only)
    critic_masks = _stack(critic, width) if critic and critic[0] is not None else None
    return actor_masks, critic_masks


def _member_means(x: Tensor, valid: Tensor) -> Tensor:
    """The mean over each member's valid rows: ``x (..., K, S)``, ``valid (K, S)`` -> ``(K,)`` (copies of
    multi-sample dropout, in front, are averaged too)."""
    v = valid.to(x.dtype)
    copies = x.numel() // v.numel()
    return (x * v).reshape(copies, *v.shape).sum(dim=(0, 2)) / (v.sum(dim=1) * copies).clamp(min=1)


def _member_normalize(adv: Tensor, valid: Tensor) -> Tensor:
    """``maths.normalize_advantages`` over each member's valid rows (a member with fewer than 2 is left alone)."""
    v = valid.to(adv.dtype)
    n = v.sum(dim=1, keepdim=True)
    mean = (adv * v).sum(dim=1, keepdim=True) / n.clamp(min=1)
    std = (((adv - mean) * v).square().sum(dim=1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()
    return torch.where(n >= 2, (adv - mean) / (std + 1e-8), adv)


def _member_loss(mb, logp, entropy, values, valid, normalised, runs, betas, maths) -> dict[str, Tensor]:
    """PPO's objective for every member of the padded minibatch ``mb``: :func:`sandbox.algos.ppo.objective_terms`, the
    single-seed trainer's, with each mean taken over the member's own rows (``valid``). Returns the per-member
    ``loss`` (K,) with its terms, and what the metrics need."""
    adv = mb.advantages if normalised else _member_normalize(mb.advantages, valid)
    beta = torch.tensor([b.in_loss for b in betas])  # one per member (each adapts its own with --kl-target)
    mean = partial(_member_means, valid=valid)
    surrogate = partial(_member_surrogate, runs[0].cfg, maths, valid)
    t = objective_terms(mb, logp, entropy, values, adv, runs[0], beta, betas[0].estimator, mean, surrogate)
    logratio = t.logratio.detach()
    return {
        "loss": t.loss,
        "policy_loss": t.pg_loss.detach(),
        "value_loss": t.v_loss.detach(),
        "entropy": t.entropy.detach(),
        "approx_kl": _member_means(kl_k3(-logratio), valid),
        "logratio": logratio,
        "adv": adv.expand_as(logratio).detach(),
        "keep": t.keep,
    }


def _member_surrogate(
    cfg, maths, valid, per_sample: Tensor, ratio: Tensor, adv: Tensor
) -> tuple[Tensor, Tensor | None]:
    """The clipped term's reduction per member, ``(K,)``: the mean over each member's rows, or with sample dropout
    objective.py's step member by member (each member's keep-mask is its own business)."""
    if cfg.sample_dropout == "none":
        return _member_means(per_sample, valid), None  # every sample kept
    pg, keep = [], torch.zeros_like(per_sample, dtype=torch.bool)
    for k in range(valid.shape[0]):
        n = int(valid[k].sum())
        if n == 0:
            pg.append(per_sample[..., k, :0].sum())
            continue
        member = keep_aggregate_average(maths, cfg, per_sample[..., k, :n], ratio[..., k, :n], adv[k, :n])
        pg.append(member.loss)
        keep[..., k, :n] = member.keep
    return torch.stack(pg), keep


def _seen(log: list[tuple], k: int) -> list[Seen]:
    """Member k's :class:`Seen` of every minibatch it took part in, from the update's log."""
    out = []
    for now, step, valid, terms, norms in log:
        if k not in now:
            continue
        n = int(valid[k].sum())
        keep = terms["keep"]
        out.append(
            Seen(
                terms["logratio"][..., k, :n].reshape(-1),
                terms["adv"][..., k, :n].reshape(-1),
                terms["entropy"][k],
                terms["policy_loss"][k],
                terms["value_loss"][k],
                keep=None if keep is None else keep[..., k, :n].reshape(-1),
                grad_norm=norms[k] if k in step else None,
            )
        )
    return out


def _non_finite_message(update: int, epoch: int, terms: dict[str, Tensor], k: int) -> str:
    return (
        f"non-finite loss at update {update}, epoch {epoch + 1}: policy_loss={float(terms['policy_loss'][k])}, "
        f"value_loss={float(terms['value_loss'][k])}, entropy={float(terms['entropy'][k])}"
    )
