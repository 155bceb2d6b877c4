"""Homework 1: generalised advantage estimation, ``gae`` (pairs with lesson 01, PPO and dropout)."""

from __future__ import annotations

import torch

from ..config import preset
from ..maths import gae as reference_gae
from .cases import case_tests
from .core import Assignment, FunctionSpec, Test, clone, expect_tensor, generator, seed_of
from .integration import Scenario, integration_test, learns

ARGS = ("rewards", "values", "next_values", "terminated", "dones", "gamma", "gae_lambda")
SPEC = FunctionSpec("gae", "gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda) -> (advantages, "
                    "returns)", reference_gae, ARGS, rtol=1e-4, atol=1e-4, parts=("advantages", "returns"))  # fmt: skip
TOL = dict(rtol=1e-4, atol=1e-4)


def rollout(seed: int, T: int, N: int, p_term: float = 0.0, p_trunc: float = 0.0, gamma=0.99, lam=0.95) -> list:
    """A random rollout as the trainer builds it: ``next_values[t] = values[t + 1]`` inside an episode; at an episode
    end it is the value of the episode's last observation (a terminated episode's must be ignored)."""
    g = generator(seed)
    rewards = torch.randn(T, N, generator=g)
    values = 2 * torch.randn(T, N, generator=g)
    u = torch.rand(T, N, generator=g)
    terminated = (u < p_term).float()
    dones = (u < p_term + p_trunc).float()
    last_obs_value = 2 * torch.randn(T, N, generator=g)
    next_values = torch.cat([values[1:], 2 * torch.randn(1, N, generator=g)])
    next_values = torch.where(dones.bool(), last_obs_value, next_values)
    return [rewards, values, next_values, terminated, dones, gamma, lam]


def random_call(seed: int, T: int, N: int, **ends) -> dict:
    """One call of a case on a random rollout, described by its size, seed and episode ends."""
    args = rollout(seed, T, N, **ends)
    ends = f"{int(args[3].sum())} terminations, {int((args[4] - args[3]).sum())} truncations"
    case = f"a rollout of T={T} steps x N={N} environments (seed {seed_of(seed)}), {ends}, gamma {args[5]}, "
    return {"args": dict(zip(ARGS, args)), "case": case + f"gae_lambda {args[6]}"}


def column_case(name: str, points: int, hint: str, rewards, values, next_values, terminated, dones, gamma, lam) -> dict:
    """A hand case of one environment: each list is a (T, 1) column."""
    column = lambda xs: [[float(x)] for x in xs]  # noqa: E731
    args = dict(zip(ARGS, [*map(column, (rewards, values, next_values, terminated, dones)), gamma, lam]))
    return {"name": name, "function": "gae", "points": points, "hint": hint, "args": args}


HINT_TRUNCATION = (
    "a time limit is not the end of the world: a truncated episode still has a future worth V(s_{t+1}), so "
    "delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - V(s_t) bootstraps through a truncation; only a "
    "termination removes the future. Use `terminated` in delta, `dones` in the recursion."
)
HAND = [
    column_case("one step: A = r + gamma * V(s') - V(s)", 1, "with one step there is nothing to carry back: the "
                "advantage is the one-step TD error, delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - "
                "values_t", [1], [0.5], [2], [0], [0], 0.9, 0.95),
    # terminated at t=1: next_values[1] = 99 stands for whatever sits behind the end and must not count; the next
    # episode's advantage (1 at t=2) must not leak back into t=1
    column_case("termination: no bootstrap from the terminal state, and the recursion stops", 2, "at a termination "
                "nothing follows: delta_t = r_t - V(s_t) (next_values there is meaningless, here 99), and A_t must not "
                "add gamma * lambda * A_{t+1} from the next episode", [1, 1, 2], [1, 2, 3], [2, 99, 4], [0, 1, 0],
                [0, 1, 0], 0.5, 1.0),
    # truncated (time limit) at the last step: the episode goes on beyond the rollout's view, V(s_3) = 4 counts
    column_case("truncation at the last step bootstraps from V(s_{t+1})", 2, HINT_TRUNCATION,
                [1, 1, 1], [1, 2, 3], [2, 3, 4], [0, 0, 0], [0, 0, 1], 0.5, 1.0),
    # truncated at t=1, with V of that last observation 0 (so bootstrapping does not matter here): a new episode starts
    # at t=2, and its advantage (0.5) must not leak back into t=1 and t=0
    column_case("every episode end stops the recursion: dones, not only terminations", 2, "after a truncation the "
                "next step belongs to a new episode: A_t = delta_t + gamma * lambda * (1 - dones_t) * A_{t+1}. Cutting "
                "on `terminated` lets the next episode leak into this one", [1, 1, 1], [1, 2, 3], [2, 0, 5], [0, 0, 0],
                [0, 1, 0], 0.5, 1.0),
]  # fmt: skip


def advantages(fns, args: list) -> torch.Tensor:
    """The learner's advantages on ``args``, after the result's type, shape, dtype and finiteness (not values)."""
    return SPEC.shaped(fns, *args)[0].detach()


def double(args: list) -> list:
    return [a.double() if torch.is_tensor(a) else a for a in args]


def test_lambda_zero(fns):
    args = rollout(7, 12, 3, p_term=0.15, p_trunc=0.1, lam=0.0)
    rewards, values, next_values, terminated, _, gamma, _ = double(args)
    expect_tensor(advantages(fns, args), (rewards + gamma * (1 - terminated) * next_values - values).float(),
                  "advantages", **TOL)  # fmt: skip


def test_lambda_one(fns):
    args = rollout(8, 12, 3, p_term=0.15, p_trunc=0.1, lam=1.0)
    rewards, values, next_values, terminated, dones, gamma, _ = double(args)
    T = rewards.shape[0]
    discounted = torch.zeros_like(rewards)  # the discounted return to the episode's end (or the rollout's)
    future = next_values[T - 1] * (1 - terminated[T - 1])
    for step in reversed(range(T)):
        if step < T - 1:
            future = torch.where(dones[step].bool(), next_values[step] * (1 - terminated[step]), discounted[step + 1])
        discounted[step] = rewards[step] + gamma * future
    expect_tensor(advantages(fns, args), (discounted - values).float(), "advantages", **TOL)


def test_returns_are_advantages_plus_values(fns):
    args = rollout(9, 10, 3, p_term=0.1, p_trunc=0.1)
    got = SPEC.shaped(fns, *args)
    expect_tensor(got[1], got[0].detach() + args[1], "returns (compared with your advantages + values)", rtol=1e-5,
                  atol=1e-5)  # fmt: skip


def test_environments_independent(fns):
    args = rollout(10, 9, 5, p_term=0.1, p_trunc=0.1)
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = [a[:, perm] if torch.is_tensor(a) else a for a in args]
    expect_tensor(advantages(fns, shuffled), advantages(fns, args)[:, perm],
                  "advantages of the permuted environments", **TOL)  # fmt: skip


def test_terminal_next_value_ignored(fns):
    args = rollout(11, 9, 4, p_term=0.25)
    changed = clone(args)
    changed[2] = torch.where(args[3].bool(), torch.full_like(args[2], 1000.0), args[2])
    expect_tensor(advantages(fns, changed), advantages(fns, args),
                  "advantages with next_values = 1000 behind every termination", **TOL)  # fmt: skip


# --- integration ---------------------------------------------------------------------------------------------------

FIRST = ("explained_var", "value_loss", "policy_loss", "approx_kl", "entropy", "grad_norm")
CARTPOLE = Scenario(
    "PPO, preset cartpole, CartPole-v1, 16,384 steps, seed 0",
    preset("cartpole", total_steps=16_384, seed=0, quiet=True), ("gae",), first_update=FIRST,
    meaning=learns(60, "every seed 0-9 of ours reaches at least 155 at 16,384 steps; a random policy scores about 22"),
)  # fmt: skip
PENDULUM = Scenario(
    "PPO, Pendulum-v1 (every episode truncated at 200 steps), 4,096 steps, seed 0",
    preset("cartpole", env="Pendulum-v1", num_envs=4, num_steps=256, total_steps=4096, seed=0, quiet=True), ("gae",),
    first_update=FIRST,
)  # fmt: skip


def build() -> list[Test]:
    g, gae = ("gae",), {"function": "gae"}
    return case_tests("hw1", {"gae": SPEC}, [
        {**gae, "name": "gae returns (advantages, returns): two float32 tensors shaped like rewards", "check": "like",
         "args": dict(zip(ARGS, rollout(0, 5, 3))), "case": "a (5, 3) rollout without episode ends",
         "hint": "return a tuple of two tensors of shape (T, N); keep the inputs' dtype (float32)"},
        HAND[0],
        {**gae, "name": "rollouts without episode ends, against ours", "points": 2,
         "calls": [random_call(seed, T, N) for seed, (T, N) in zip((1, 2, 3), ((8, 4), (1, 1), (33, 2)))],
         "hint": "GAE runs backwards in time: each advantage is its own TD error plus gamma * lambda times the next "
         "step's advantage, A_t = delta_t + gamma * lambda * A_{t+1}, starting from A_T = 0 after the last step"},
        *HAND[1:],
        {**gae, "name": "random rollouts with terminations and truncations, against ours", "points": 3,
         "calls": [random_call(seed, T, N, p_term=0.1, p_trunc=0.1)
                   for seed, (T, N) in zip((4, 5, 6), ((16, 4), (33, 2), (7, 8)))],
         "hint": "the hand cases above pass, so look at what this case adds: several environments side by side "
         "(dim 1) and several episode ends of both kinds in one rollout"},
        Test("limit gae_lambda = 0: the one-step TD error", g, test_lambda_zero, 1, kind="property",
             case="a (12, 3) rollout with episode ends, gae_lambda 0",
             hint="with lambda = 0 nothing is carried back: A_t = delta_t"),
        Test("limit gae_lambda = 1: the discounted return minus V (Monte Carlo)", g, test_lambda_one, 1,
             kind="property", case="a (12, 3) rollout with episode ends, gae_lambda 1",
             hint="with lambda = 1 the TD errors telescope into sum_k gamma^k r_{t+k} + gamma^K V(end) - V(s_t)"),
        Test("returns = advantages + values (the critic's target)", g, test_returns_are_advantages_plus_values, 1,
             kind="property", case="a (10, 3) rollout with episode ends",
             hint="the value target is A_t + V(s_t), not the discounted sum of rewards"),
        Test("parallel environments are independent (permuting them permutes the result)", g,
             test_environments_independent, 1, kind="property", case="a (9, 5) rollout, environments permuted",
             hint="the recursion runs along time (dim 0), never across environments (dim 1)"),
        Test("what follows a termination is ignored (next_values there does not count)", g,
             test_terminal_next_value_ignored, 1, kind="property",
             case="a (9, 4) rollout with terminations; next_values set to 1000 wherever terminated = 1",
             hint="after a termination there is no next state: whatever next_values holds there must not enter the TD "
             "error"),
        {**gae, "name": "the inputs are left unchanged", "kind": "property", "check": "unchanged",
         "args": dict(zip(ARGS, rollout(12, 6, 3, p_term=0.1, p_trunc=0.1))),
         "case": "a (6, 3) rollout with episode ends"},
        integration_test(f"integration: {CARTPOLE.description}, through the seam, against ours", g, CARTPOLE,
                         {"gae": SPEC}, 4),
        integration_test(f"integration: {PENDULUM.description}, against ours", g, PENDULUM, {"gae": SPEC}, 2),
    ], "hw1")  # fmt: skip


ASSIGNMENT = Assignment("hw1", "generalised advantage estimation (gae)", "01", {"gae": SPEC}, build)
