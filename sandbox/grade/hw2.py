"""Homework 2: PPO's clipped surrogate and the clipped value loss, ``ppo_loss`` and ``value_loss``, asymmetric clip
included (pairs with lesson 02)."""

from __future__ import annotations

import torch

from ..config import Config, preset
from ..maths import ppo_loss as reference_ppo_loss
from ..maths import value_loss as reference_value_loss
from .cases import case_tests
from .core import (
    Assignment,
    Fail,
    FunctionSpec,
    Test,
    call,
    clone,
    expect_inputs_unchanged,
    expect_like,
    expect_tensor,
    generator,
    seed_of,
)
from .integration import Scenario, integration_test, learns

TOL = dict(rtol=1e-5, atol=1e-6)


def _compare(got, want, what: str = "") -> None:
    expect_tensor(got, want, what or "the per-sample loss", **TOL)


PPO = FunctionSpec(
    "ppo_loss",
    "ppo_loss(ratio, advantages, clip_coef, clip_coef_high=None) -> per-sample loss",
    reference_ppo_loss,
    ("ratio", "advantages", "clip_coef", "clip_coef_high"),
    _compare,
)
VALUE = FunctionSpec(
    "value_loss",
    "value_loss(values, old_values, returns, clip_coef) -> per-sample loss (clip_coef None: no clipping)",
    reference_value_loss,
    ("values", "old_values", "returns", "clip_coef"),
    _compare,
)


def surrogate_inputs(seed: int, shape: tuple[int, ...], spread: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """Ratios around 1 (log-normal, ``spread`` wide: many beyond a 0.2 clip) and advantages of both signs."""
    g = generator(seed)
    return (spread * torch.randn(shape, generator=g)).exp(), torch.randn(shape, generator=g)


def value_inputs(seed: int, n: int) -> list[torch.Tensor]:
    g = generator(seed)
    old = torch.randn(n, generator=g)
    values = old + 0.5 * torch.randn(n, generator=g)  # some move further than a 0.2 clip, some less
    returns = old + torch.randn(n, generator=g)
    return [values, old, returns]


HAND = {"ratio": [0.5, 1.0, 1.5, 1.5, 0.5], "advantages": [1.0, 1.0, 1.0, -1.0, -1.0]}


def ppo(fns, *args):
    return call(fns["ppo_loss"], "ppo_loss", *clone(args))


def vloss(fns, *args):
    return call(fns["value_loss"], "value_loss", *clone(args))


# --- ppo_loss ------------------------------------------------------------------------------------------------------


def test_ppo_shape(fns):
    ratio, adv = surrogate_inputs(0, (256,))
    expect_like(ppo(fns, ratio, adv, 0.2), reference_ppo_loss(ratio, adv, 0.2), "the loss")


def test_ppo_any_shape(fns):
    for shape in ((4, 6), (3, 2, 5)):
        ratio, adv = surrogate_inputs(1, shape)
        try:
            _compare(ppo(fns, ratio, adv, 0.2), reference_ppo_loss(ratio, adv, 0.2))
        except Fail as f:
            raise Fail(f.problem, case=f"ratio and advantages of shape {shape}") from None


def test_ppo_ratio_one(fns):
    adv = torch.randn(7, generator=generator(2))
    expect_tensor(ppo(fns, torch.ones(7), adv, 0.2), -adv, "the loss", **TOL)


def test_ppo_random(fns):
    for seed, clip in ((3, 0.2), (4, 0.1), (5, 0.3)):
        ratio, adv = surrogate_inputs(seed, (300,))
        try:
            _compare(ppo(fns, ratio, adv, clip), reference_ppo_loss(ratio, adv, clip))
        except Fail as f:
            raise Fail(f.problem, case=f"300 random samples (seed {seed_of(seed)}), clip_coef {clip}") from None


def test_ppo_asymmetric_random(fns):
    for seed, (low, high) in ((6, (0.2, 0.28)), (7, (0.1, 0.5)), (8, (0.3, 0.05))):
        ratio, adv = surrogate_inputs(seed, (300,))
        try:
            _compare(ppo(fns, ratio, adv, low, high), reference_ppo_loss(ratio, adv, low, high))
        except Fail as f:
            raise Fail(
                f.problem, case=f"300 random samples (seed {seed_of(seed)}), clip_coef {low}, clip_coef_high {high}"
            ) from None


def test_ppo_high_none(fns):
    ratio, adv = surrogate_inputs(9, (200,))
    expect_tensor(ppo(fns, ratio, adv, 0.2, None), reference_ppo_loss(ratio, adv, 0.2), "the loss", **TOL)


def test_ppo_pessimism(fns):
    ratio, adv = surrogate_inputs(10, (500,), spread=0.6)
    got = ppo(fns, ratio, adv, 0.2)
    expect_like(got, reference_ppo_loss(ratio, adv, 0.2), "the loss")
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


def grad_wrt(fn, name, args: list, wrt: int, weights: torch.Tensor) -> torch.Tensor:
    args = clone(args)
    args[wrt] = args[wrt].clone().requires_grad_()
    out = call(fn, name, *args)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise Fail(
            f"the result carries no gradient back to `{('ratio', 'values')[wrt and 1]}`: the trainer "
            "differentiates this loss",
            hint="stay in torch: no .item(), .numpy(), .detach() or Python floats on the way",
        )
    if out.shape != weights.shape:
        raise Fail(f"the result has shape {tuple(out.shape)}, expected {tuple(weights.shape)}")
    (out * weights).sum().backward()
    return args[wrt].grad if args[wrt].grad is not None else torch.zeros_like(args[wrt])


def test_ppo_gradient(fns):
    ratio, adv = surrogate_inputs(11, (400,), spread=0.5)
    w = torch.rand(400, generator=generator(12)) + 0.5
    for high in (None, 0.28):
        args = [ratio, adv, 0.2, high]
        got = grad_wrt(fns["ppo_loss"], "ppo_loss", args, 0, w)
        want = grad_wrt(reference_ppo_loss, "ppo_loss", args, 0, w)
        expect_tensor(got, want, f"d loss / d ratio (clip_coef 0.2, clip_coef_high {high})", **TOL)


def test_ppo_inputs_unchanged(fns):
    ratio, adv = surrogate_inputs(13, (50,))
    args = [ratio, adv, 0.2, 0.28]
    before = clone(args)
    call(fns["ppo_loss"], "ppo_loss", *args)
    expect_inputs_unchanged(before, args, ["ratio", "advantages"], "ppo_loss")


# --- value_loss ----------------------------------------------------------------------------------------------------


def test_value_shape(fns):
    args = value_inputs(20, 64)
    expect_like(vloss(fns, *args, 0.2), reference_value_loss(*args, 0.2), "the loss")


def test_value_unclipped(fns):
    args = value_inputs(21, 100)
    _compare(vloss(fns, *args, None), reference_value_loss(*args, None))
    moved = [args[0], args[1] + 5.0, args[2]]
    _compare(vloss(fns, *moved, None), reference_value_loss(*args, None), "the loss with old_values moved by 5")


def test_value_clipped_random(fns):
    for seed, clip in ((22, 0.2), (23, 0.5), (24, 10.0)):
        args = value_inputs(seed, 200)
        try:
            _compare(vloss(fns, *args, clip), reference_value_loss(*args, clip))
        except Fail as f:
            raise Fail(f.problem, case=f"200 random samples (seed {seed_of(seed)}), clip_coef {clip}") from None


def test_value_pessimism(fns):
    args = value_inputs(25, 300)
    got = vloss(fns, *args, 0.2)
    expect_like(got, reference_value_loss(*args, 0.2), "the loss")
    floor = 0.5 * (args[0] - args[2]).square()
    below = got.detach() < floor - 1e-6
    if bool(below.any()):
        i = int(below.nonzero()[0])
        raise Fail(
            f"at sample {i} the loss is {got[i]:.4g}, below the unclipped 0.5 * (V - R)^2 = {floor[i]:.4g} "
            f"({int(below.sum())} of 300 samples)"
        )


def test_value_gradient(fns):
    args = value_inputs(26, 300)
    w = torch.rand(300, generator=generator(27)) + 0.5
    got = grad_wrt(fns["value_loss"], "value_loss", [*args, 0.2], 0, w)
    want = grad_wrt(reference_value_loss, "value_loss", [*args, 0.2], 0, w)
    expect_tensor(got, want, "d loss / d values (clip_coef 0.2)", **TOL)


def test_value_inputs_unchanged(fns):
    args = [*value_inputs(28, 40), 0.2]
    before = clone(args)
    call(fns["value_loss"], "value_loss", *args)
    expect_inputs_unchanged(before, args, ["values", "old_values", "returns"], "value_loss")


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
    Config(
        algo="grpo",
        env="CartPole-v1",
        prompts_per_update=4,
        group_size=8,
        total_steps=12_000,
        seed=0,
        clip_coef_high=0.28,
        quiet=True,
    ),  # fmt: skip
    ("ppo_loss",),
    first_update=("policy_loss", "approx_kl", "entropy", "grad_norm"),
)

HINT_PPO = (
    "PPO is pessimistic: of the unclipped objective r * A and the clipped one clip(r, 1 - clip_coef, 1 + "
    "clip_coef_high) * A it keeps the smaller, sample by sample. The minimum of the two *objectives* is the maximum "
    "of the two *losses*: the minimum of the losses throws the pessimism away"
)


HINT_ASYMMETRIC = "the ratio is clipped to [1 - clip_coef, 1 + clip_coef_high]"
HINT_VALUE = "0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2): clip around the *old values*, take the max"
CASES = [  # the hand cases, as data
    {"name": "ppo_loss on a hand case, clip_coef 0.2", "function": "ppo_loss", "points": 2, "hint": HINT_PPO,
     "args": {**HAND, "clip_coef": 0.2}},
    {"name": "asymmetric clip (clip_coef_high, DAPO): a hand case, 0.2 / 0.28", "function": "ppo_loss", "points": 2,
     "hint": HINT_ASYMMETRIC, "args": {**HAND, "clip_coef": 0.2, "clip_coef_high": 0.28}},
    {"name": "clipped value loss on a hand case, clip 0.5", "function": "value_loss", "points": 2, "hint": HINT_VALUE,
     "args": {"values": [3.0, 0.0, 2.0, 1.0], "old_values": [1.0, 1.0, 1.0, 3.0], "returns": [0.0, 2.0, 0.0, 0.0],
              "clip_coef": 0.5}},
]  # fmt: skip


def build() -> list[Test]:
    p, v, both = ("ppo_loss",), ("value_loss",), ("ppo_loss", "value_loss")
    hand = case_tests("hw2", {"ppo_loss": PPO, "value_loss": VALUE}, CASES, "hw2")
    return [
        Test("ppo_loss returns one float32 loss per sample (not a mean)", p, test_ppo_shape, 1,
             case="256 samples", hint="the trainer aggregates (a mean, a masked mean, a token aggregation): return "
             "a tensor shaped like ratio"),
        Test("ppo_loss works elementwise on any shape (tokens (B, n), dropout copies (K, B))", p, test_ppo_any_shape,
             1, hint="use elementwise operations only; no indexing by position, no reductions"),
        Test("ppo_loss at ratio = 1 is -A", p, test_ppo_ratio_one, 1, case="ratio 1 everywhere, 7 advantages",
             hint="before any update the policy has not changed: r = 1, clipping does nothing, the loss is -A"),
        hand[0],
        Test("ppo_loss on random samples, against ours", p, test_ppo_random, 2, hint=HINT_PPO),
        hand[1],
        Test("asymmetric clip on random samples, against ours", p, test_ppo_asymmetric_random, 1,
             hint=HINT_ASYMMETRIC),
        Test("clip_coef_high = None means symmetric", p, test_ppo_high_none, 1, case="200 samples, clip_coef 0.2",
             hint="without an upper clip of its own the clip is symmetric: the upper bound uses clip_coef too"),
        Test("pessimism: the loss is max(-r*A, -clip(r)*A), never below either", p, test_ppo_pessimism, 1,
             kind="property", case="500 random samples, clip_coef 0.2", hint=HINT_PPO),
        Test("gradient: zero where the clip is active, -A elsewhere", p, test_ppo_gradient, 2, kind="property",
             case="400 random samples; d(sum of w * loss)/d ratio, with and without clip_coef_high",
             hint="the clip removes the incentive to move r further (A > 0 and r > 1 + eps_high, A < 0 and "
             "r < 1 - eps: zero gradient) but never the penalty on the other side (A > 0 and r < 1 - eps keeps -A)"),
        Test("ppo_loss leaves its inputs unchanged", p, test_ppo_inputs_unchanged, 1, kind="property"),
        Test("value_loss returns one float32 loss per sample", v, test_value_shape, 1, case="64 samples",
             hint="return a tensor shaped like values"),
        Test("value_loss without clipping is 0.5 * (V - R)^2 and ignores old_values", v, test_value_unclipped, 1,
             case="100 samples, clip_coef None", hint="with clip_coef None: 0.5 * (values - returns)^2"),
        hand[2],
        Test("clipped value loss on random samples, against ours", v, test_value_clipped_random, 2,
             hint="0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)"),
        Test("value clipping only ever adds loss: never below 0.5 * (V - R)^2", v, test_value_pessimism, 1,
             kind="property", case="300 samples, clip 0.2", hint="max of the two squared errors, not min"),
        Test("value_loss gradient, against ours", v, test_value_gradient, 1, kind="property",
             case="300 samples, clip 0.2; d(sum of w * loss)/d values",
             hint="where the clipped term is larger and V left the band, the gradient is 0"),
        Test("value_loss leaves its inputs unchanged", v, test_value_inputs_unchanged, 1, kind="property"),
        integration_test(f"integration: {PPO_CARTPOLE.description}, against ours", both, PPO_CARTPOLE,
                         {"ppo_loss": PPO, "value_loss": VALUE}, 4),
        integration_test(f"integration: {GRPO_CARTPOLE.description}, against ours", p, GRPO_CARTPOLE,
                         {"ppo_loss": PPO}, 2),
    ]  # fmt: skip


ASSIGNMENT = Assignment(
    "hw2", "the clipped surrogate and the clipped value loss (ppo_loss, value_loss)", "02",
    {"ppo_loss": PPO, "value_loss": VALUE}, build,
)  # fmt: skip
