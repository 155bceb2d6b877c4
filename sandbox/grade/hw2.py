"""Homework 2: PPO's clipped surrogate and the clipped value loss, ``ppo_loss`` and ``value_loss``, asymmetric clip
included (pairs with lesson 02)."""

from __future__ import annotations

import torch

from ..config import Config, preset
from ..maths import ppo_loss as reference_ppo_loss
from ..maths import value_loss as reference_value_loss
from .cases import case_tests
from .core import Assignment, Fail, FunctionSpec, Test, generator, seed_of
from .integration import Scenario, integration_test, learns

PPO = FunctionSpec("ppo_loss", "ppo_loss(ratio, advantages, clip_coef, clip_coef_high=None) -> per-sample loss",
                   reference_ppo_loss, ("ratio", "advantages", "clip_coef", "clip_coef_high"),
                   what="the loss")  # fmt: skip
VALUE = FunctionSpec("value_loss", "value_loss(values, old_values, returns, clip_coef) -> per-sample loss (clip_coef "
                     "None: no clipping)", reference_value_loss, ("values", "old_values", "returns", "clip_coef"),
                     what="the loss")  # fmt: skip
SPECS = {"ppo_loss": PPO, "value_loss": VALUE}


def surrogate(seed: int, shape: tuple[int, ...], clip: float = 0.2, high: float | None = None, spread=0.4) -> dict:
    """The arguments of ``ppo_loss``: ratios around 1 (log-normal, ``spread`` wide: many beyond a 0.2 clip) and
    advantages of both signs."""
    g = generator(seed)
    ratio, adv = (spread * torch.randn(shape, generator=g)).exp(), torch.randn(shape, generator=g)
    return {"ratio": ratio, "advantages": adv, "clip_coef": clip, "clip_coef_high": high}


def values(seed: int, n: int, clip: float | None = 0.2) -> dict:
    g = generator(seed)
    old = torch.randn(n, generator=g)
    new = old + 0.5 * torch.randn(n, generator=g)  # some move further than a 0.2 clip, some less
    return {"values": new, "old_values": old, "returns": old + torch.randn(n, generator=g), "clip_coef": clip}


def test_ppo_pessimism(fns):
    args = surrogate(10, (500,), spread=0.6)
    ratio, adv = args["ratio"], args["advantages"]
    got = PPO.shaped(fns, *args.values())
    clipped = -torch.clamp(ratio, 0.8, 1.2) * adv
    lower = torch.maximum(-ratio * adv, clipped)
    below = got.detach() < lower - 1e-6
    if bool(below.any()):
        i = int(below.nonzero()[0])
        raise Fail(
            f"at sample {i} (ratio {ratio[i]:.4g}, advantage {adv[i]:.4g}) the loss is {got[i]:.4g}, below one of the "
            f"two terms -r*A = {-ratio[i] * adv[i]:.4g} and -clip(r)*A = {clipped[i]:.4g}"
            f" ({int(below.sum())} of 500 samples)"
        )


def test_value_pessimism(fns):
    args = list(values(25, 300).values())
    got = VALUE.shaped(fns, *args)
    floor = 0.5 * (args[0] - args[2]).square()
    below = got.detach() < floor - 1e-6
    if bool(below.any()):
        i = int(below.nonzero()[0])
        raise Fail(
            f"at sample {i} the loss is {got[i]:.4g}, below the unclipped 0.5 * (V - R)^2 = {floor[i]:.4g} "
            f"({int(below.sum())} of 300 samples)"
        )


# --- integration ---------------------------------------------------------------------------------------------------

PPO_CARTPOLE = Scenario(
    "PPO, preset cartpole with clip_vloss and clip_coef_high 0.28, 16,384 steps, seed 0",
    preset("cartpole", total_steps=16_384, seed=0, clip_vloss=True, clip_coef_high=0.28, quiet=True),
    ("ppo_loss", "value_loss"),
    first_update=("policy_loss", "value_loss", "approx_kl", "entropy", "grad_norm", "explained_var"),
    meaning=learns(60, "every seed 0-9 of ours reaches at least 128 at 16,384 steps; a random policy scores about 22"),
)
GRPO_CARTPOLE = Scenario(
    "GRPO on CartPole-v1 (per-step losses of whole episodes, (B, n)), 12,000 steps, seed 0",
    Config(algo="grpo", env="CartPole-v1", prompts_per_update=4, group_size=8, total_steps=12_000, seed=0,
           clip_coef_high=0.28, quiet=True),
    ("ppo_loss",), first_update=("policy_loss", "approx_kl", "entropy", "grad_norm"),
)  # fmt: skip

HINT_PPO = (
    "PPO is pessimistic: of the unclipped objective r * A and the clipped one clip(r, 1 - clip_coef, 1 + "
    "clip_coef_high) * A it keeps the smaller, sample by sample. The minimum of the two *objectives* is the maximum "
    "of the two *losses*: the minimum of the losses throws the pessimism away"
)
HINT_ASYMMETRIC = "the ratio is clipped to [1 - clip_coef, 1 + clip_coef_high]"
HINT_VALUE = "0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2): clip around the *old values*, take the max"
HAND = {"ratio": [0.5, 1.0, 1.5, 1.5, 0.5], "advantages": [1.0, 1.0, 1.0, -1.0, -1.0]}


def build() -> list[Test]:
    p, v, both = ("ppo_loss",), ("value_loss",), ("ppo_loss", "value_loss")
    ppo, vl = {"function": "ppo_loss"}, {"function": "value_loss"}
    moved = values(21, 100, None)
    moved["old_values"] = moved["old_values"] + 5.0
    return case_tests("hw2", SPECS, [
        {**ppo, "name": "ppo_loss returns one float32 loss per sample (not a mean)", "check": "like",
         "args": surrogate(0, (256,)), "case": "256 samples", "hint": "the trainer aggregates (a mean, a masked mean, "
         "a token aggregation): return a tensor shaped like ratio"},
        {**ppo, "name": "ppo_loss works elementwise on any shape (tokens (B, n), dropout copies (K, B))",
         "calls": [{"args": surrogate(1, shape), "case": f"ratio and advantages of shape {shape}"}
                   for shape in ((4, 6), (3, 2, 5))],
         "hint": "use elementwise operations only; no indexing by position, no reductions"},
        {**ppo, "name": "ppo_loss at ratio = 1 is -A", "case": "ratio 1 everywhere, 7 advantages",
         "args": {"ratio": torch.ones(7), "advantages": torch.randn(7, generator=generator(2)), "clip_coef": 0.2},
         "hint": "before any update the policy has not changed: r = 1, clipping does nothing, the loss is -A"},
        {**ppo, "name": "ppo_loss on a hand case, clip_coef 0.2", "points": 2, "hint": HINT_PPO,
         "args": {**HAND, "clip_coef": 0.2}},
        {**ppo, "name": "ppo_loss on random samples, against ours", "points": 2, "hint": HINT_PPO,
         "calls": [{"args": surrogate(seed, (300,), clip), "case": f"300 random samples (seed {seed_of(seed)}), "
                    f"clip_coef {clip}"} for seed, clip in ((3, 0.2), (4, 0.1), (5, 0.3))]},
        {**ppo, "name": "asymmetric clip (clip_coef_high, DAPO): a hand case, 0.2 / 0.28", "points": 2,
         "hint": HINT_ASYMMETRIC, "args": {**HAND, "clip_coef": 0.2, "clip_coef_high": 0.28}},
        {**ppo, "name": "asymmetric clip on random samples, against ours", "hint": HINT_ASYMMETRIC,
         "calls": [{"args": surrogate(seed, (300,), low, high), "case": f"300 random samples (seed {seed_of(seed)}), "
                    f"clip_coef {low}, clip_coef_high {high}"}
                   for seed, (low, high) in ((6, (0.2, 0.28)), (7, (0.1, 0.5)), (8, (0.3, 0.05)))]},
        {**ppo, "name": "clip_coef_high = None means symmetric", "args": surrogate(9, (200,)),
         "case": "200 samples, clip_coef 0.2",
         "hint": "without an upper clip of its own the clip is symmetric: the upper bound uses clip_coef too"},
        Test("pessimism: the loss is max(-r*A, -clip(r)*A), never below either", p, test_ppo_pessimism, 1,
             kind="property", case="500 random samples, clip_coef 0.2", hint=HINT_PPO),
        {**ppo, "name": "gradient: zero where the clip is active, -A elsewhere", "points": 2, "kind": "property",
         "check": "gradient", "wrt": "ratio", "weights": torch.rand(400, generator=generator(12)) + 0.5,
         "calls": [{"args": surrogate(11, (400,), 0.2, high, spread=0.5), "case": "400 random samples, clip_coef 0.2, "
                    f"clip_coef_high {high}"} for high in (None, 0.28)],
         "case": "400 random samples; d(sum of w * loss)/d ratio, with and without clip_coef_high",
         "hint": "the clip removes the incentive to move r further (A > 0 and r > 1 + eps_high, A < 0 and "
         "r < 1 - eps: zero gradient) but never the penalty on the other side (A > 0 and r < 1 - eps keeps -A)"},
        {**ppo, "name": "ppo_loss leaves its inputs unchanged", "kind": "property", "check": "unchanged",
         "args": surrogate(13, (50,), 0.2, 0.28)},
        {**vl, "name": "value_loss returns one float32 loss per sample", "check": "like", "args": values(20, 64),
         "case": "64 samples", "hint": "return a tensor shaped like values"},
        {**vl, "name": "value_loss without clipping is 0.5 * (V - R)^2 and ignores old_values",
         "calls": [{"args": values(21, 100, None)}, {"args": moved, "case": "100 samples, old_values moved by 5"}],
         "case": "100 samples, clip_coef None", "hint": "with clip_coef None: 0.5 * (values - returns)^2"},
        {**vl, "name": "clipped value loss on a hand case, clip 0.5", "points": 2, "hint": HINT_VALUE,
         "args": {"values": [3.0, 0.0, 2.0, 1.0], "old_values": [1.0, 1.0, 1.0, 3.0], "returns": [0.0, 2.0, 0.0, 0.0],
                  "clip_coef": 0.5}},
        {**vl, "name": "clipped value loss on random samples, against ours", "points": 2,
         "hint": "0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)",
         "calls": [{"args": values(seed, 200, clip), "case": f"200 random samples (seed {seed_of(seed)}), clip_coef "
                    f"{clip}"} for seed, clip in ((22, 0.2), (23, 0.5), (24, 10.0))]},
        Test("value clipping only ever adds loss: never below 0.5 * (V - R)^2", v, test_value_pessimism, 1,
             kind="property", case="300 samples, clip 0.2", hint="max of the two squared errors, not min"),
        {**vl, "name": "value_loss gradient, against ours", "kind": "property", "check": "gradient", "wrt": "values",
         "args": values(26, 300), "weights": torch.rand(300, generator=generator(27)) + 0.5,
         "case": "300 samples, clip 0.2; d(sum of w * loss)/d values",
         "hint": "where the clipped term is larger and V left the band, the gradient is 0"},
        {**vl, "name": "value_loss leaves its inputs unchanged", "kind": "property", "check": "unchanged",
         "args": values(28, 40)},
        integration_test(f"integration: {PPO_CARTPOLE.description}, against ours", both, PPO_CARTPOLE, SPECS, 4),
        integration_test(f"integration: {GRPO_CARTPOLE.description}, against ours", p, GRPO_CARTPOLE, SPECS, 2),
    ], "hw2")  # fmt: skip


ASSIGNMENT = Assignment("hw2", "the clipped surrogate and the clipped value loss (ppo_loss, value_loss)", "02", SPECS,
                        build)  # fmt: skip
