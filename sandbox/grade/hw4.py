"""Homework 4: GRPO's group advantages and token aggregation, ``group_advantages`` and ``aggregate_loss``: every
scaling and mode, sequences of unequal lengths (pairs with lesson 05)."""

from __future__ import annotations

import torch

from ..config import Config
from ..maths import aggregate_loss as reference_aggregate
from ..maths import group_advantages as reference_advantages
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
    show,
)
from .integration import Scenario, integration_test, learns

TOL_ADV = dict(rtol=1e-5, atol=1e-5)
TOL_AGG = dict(rtol=1e-5, atol=1e-6)


def _compare_adv(got, want, what: str = "") -> None:
    expect_tensor(got, want, what or "the advantages", **TOL_ADV)


def _compare_agg(got, want, what: str = "") -> None:
    expect_tensor(got, want, what or "the aggregated loss", **TOL_AGG)


ADV = FunctionSpec(
    "group_advantages",
    "group_advantages(rewards (n_groups, G), scale_rewards) -> advantages (n_groups, G)",
    reference_advantages,
    ("rewards", "scale_rewards"),
    _compare_adv,
)
AGG = FunctionSpec(
    "aggregate_loss",
    "aggregate_loss(per_token (B, T), mask (B, T), mode, max_len=None) -> scalar",
    reference_aggregate,
    ("per_token", "mask", "mode", "max_len"),
    _compare_agg,
)
MODES = ("group", "batch", "none")
AGGS = ("grpo", "bnpo", "dr_grpo")


def rewards(seed: int, n_groups: int, G: int, equal_groups: int = 0, binary: bool = False) -> torch.Tensor:
    g = generator(seed)
    r = (torch.rand(n_groups, G, generator=g) < 0.4).float() if binary else torch.randn(n_groups, G, generator=g)
    if equal_groups:
        r[:equal_groups] = r[:equal_groups, :1]  # groups whose completions all scored the same
    return r


def tokens(seed: int, B: int, T: int, empty: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-token loss and a mask of unequal lengths (each row: its first ``length`` tokens), padding after."""
    g = generator(seed)
    per_token = torch.randn(B, T, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[:empty] = 0
    mask = torch.arange(T)[None, :] < lengths[:, None]
    per_token = torch.where(mask, per_token, 50.0 + torch.rand(B, T, generator=g))  # padding: large garbage
    return per_token, mask


def adv(fns, r, mode):
    return call(fns["group_advantages"], "group_advantages", r.clone(), mode)


def agg(fns, per_token, mask, mode, max_len=None):
    return call(fns["aggregate_loss"], "aggregate_loss", per_token.clone(), mask.clone(), mode, max_len)


# --- group_advantages -----------------------------------------------------------------------------------------------

HAND_R = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
TWO = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
NEAR_EQUAL = torch.tensor([[0.5, 0.5001, 0.5, 0.5]])


def test_adv_shape(fns):
    r = rewards(0, 5, 4)
    expect_like(adv(fns, r, "group"), reference_advantages(r, "group"), "the advantages")


def test_adv_hand(fns):
    for mode in MODES:
        _compare_adv(adv(fns, HAND_R, mode), reference_advantages(HAND_R, mode), f"scale_rewards={mode!r}")


def test_adv_sample_std(fns):
    _compare_adv(adv(fns, TWO, "group"), reference_advantages(TWO, "group"), "scale_rewards='group'")
    _compare_adv(adv(fns, TWO, "batch"), reference_advantages(TWO, "batch"), "scale_rewards='batch'")


def test_adv_mode(mode: str):
    def run(fns):
        for seed, (n, G) in zip((1, 2, 3), ((6, 4), (3, 8), (10, 2))):
            r = rewards(seed, n, G, equal_groups=1, binary=seed == 2)
            try:
                _compare_adv(adv(fns, r, mode), reference_advantages(r, mode))
            except Fail as f:
                kind = "0/1 rewards" if seed == 2 else "N(0, 1) rewards"
                raise Fail(
                    f.problem, case=f"{n} groups of G={G}, {kind}, the first group all equal (seed {seed_of(seed)})"
                ) from None

    return run


def test_adv_near_equal(fns):
    _compare_adv(adv(fns, NEAR_EQUAL, "group"), reference_advantages(NEAR_EQUAL, "group"), "scale_rewards='group'")


def test_adv_equal_groups_zero(fns):
    r = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3]])
    for mode in MODES:
        expect_tensor(adv(fns, r, mode), torch.zeros(3, 4), f"scale_rewards={mode!r}: the advantages", rtol=0.0,
                      atol=1e-6)  # fmt: skip


def test_adv_centred(fns):
    r = rewards(4, 8, 6)
    for mode in MODES:
        a = adv(fns, r, mode)
        expect_like(a, reference_advantages(r, mode), "the advantages")
        expect_tensor(a.detach().sum(dim=1), torch.zeros(8), f"scale_rewards={mode!r}: each group's sum",
                      rtol=0.0, atol=1e-5)  # fmt: skip


def test_adv_shift_invariant(fns):
    r = rewards(5, 6, 4)
    shift = torch.arange(6.0)[:, None] * 3.0  # a different constant per group
    for mode in ("group", "none"):
        a = adv(fns, r, mode)
        expect_tensor(adv(fns, r + shift, mode), a.detach(), f"scale_rewards={mode!r}: advantages of shifted rewards",
                      rtol=1e-4, atol=1e-4)  # fmt: skip


def test_adv_inputs_unchanged(fns):
    r = rewards(6, 4, 4)
    before = [r.clone()]
    call(fns["group_advantages"], "group_advantages", r, "group")
    expect_inputs_unchanged(before, [r], ["rewards"], "group_advantages")


# --- aggregate_loss ------------------------------------------------------------------------------------------------

HAND_L = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 99.0, 99.0]])
HAND_M = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)


def test_agg_scalar(fns):
    per_token, mask = tokens(10, 4, 6)
    x = per_token.clone().requires_grad_()
    got = call(fns["aggregate_loss"], "aggregate_loss", x, mask.clone(), "grpo", None)
    expect_like(got, reference_aggregate(per_token, mask, "grpo"), "the loss")
    if not got.requires_grad:
        raise Fail("the loss carries no gradient back to per_token: the trainer differentiates it",
                   hint="stay in torch: no .item(), .numpy() or Python loops that build floats")  # fmt: skip


def test_agg_hand(mode: str):
    def run(fns):
        _compare_agg(agg(fns, HAND_L, HAND_M, mode), reference_aggregate(HAND_L, HAND_M, mode))
        if mode == "dr_grpo":
            _compare_agg(agg(fns, HAND_L, HAND_M, mode, 10), reference_aggregate(HAND_L, HAND_M, mode, 10),
                         "with max_len 10")  # fmt: skip

    return run


def test_agg_random(mode: str):
    def run(fns):
        for seed, (B, T) in zip((11, 12, 13), ((8, 10), (3, 17), (16, 5))):
            per_token, mask = tokens(seed, B, T)
            max_len = T + 7 if mode == "dr_grpo" and seed == 12 else None
            for m in (mask, mask.float()):
                try:
                    _compare_agg(
                        agg(fns, per_token, m, mode, max_len), reference_aggregate(per_token, m, mode, max_len)
                    )
                except Fail as f:
                    case = (f"{B} sequences of unequal lengths in (B, T) = ({B}, {T}), mask as {str(m.dtype)[6:]}; "
                            "the padding holds values near 50, a stand-in that must never count")  # fmt: skip
                    case += f", max_len {max_len}" if max_len else ""
                    raise Fail(f.problem, case=case + f" (seed {seed_of(seed)})") from None

    return run


def test_agg_padding_ignored(fns):
    per_token, mask = tokens(14, 6, 8)
    for mode in AGGS:
        a = agg(fns, per_token, mask, mode)
        changed = torch.where(mask, per_token, torch.full_like(per_token, -1e4))
        expect_tensor(agg(fns, changed, mask, mode), a.detach(), f"{mode}: the loss with the padding set to -1e4",
                      rtol=1e-5, atol=1e-5)  # fmt: skip


def test_agg_empty(fns):
    per_token, mask = tokens(15, 5, 6, empty=2)
    _compare_agg(agg(fns, per_token, mask, "grpo"), reference_aggregate(per_token, mask, "grpo"),
                 "grpo with two empty sequences")  # fmt: skip
    nothing = torch.zeros_like(mask)
    for mode in AGGS:
        _compare_agg(agg(fns, per_token, nothing, mode), reference_aggregate(per_token, nothing, mode),
                     f"{mode} with every token masked")  # fmt: skip


def test_agg_gradient(fns):
    per_token, mask = tokens(16, 6, 9)
    for mode in AGGS:
        grads = []
        for fn in (fns["aggregate_loss"], reference_aggregate):
            x = per_token.clone().requires_grad_()
            out = call(fn, "aggregate_loss", x, mask.clone(), mode, None)
            if not isinstance(out, torch.Tensor) or out.shape != () or not out.requires_grad:
                raise Fail(f"{mode}: expected a scalar tensor with a gradient, got {out!r:.60}")
            out.backward()
            grads.append(x.grad if x.grad is not None else torch.zeros_like(x))
        expect_tensor(grads[0], grads[1], f"{mode}: d loss / d per_token (each token's weight)", **TOL_AGG)


def test_agg_inputs_unchanged(fns):
    per_token, mask = tokens(17, 4, 5)
    args = [per_token, mask.float(), "bnpo", None]
    before = clone(args)
    call(fns["aggregate_loss"], "aggregate_loss", *args)
    expect_inputs_unchanged(before, args, ["per_token", "mask"], "aggregate_loss")


# --- integration ---------------------------------------------------------------------------------------------------

FIRST = ("policy_loss", "approx_kl", "entropy", "grad_norm")
MEASURED = (
    "every seed 0-9 of ours reaches at least 47 at 12,000 steps; a random policy scores about 22, the first update "
    "about 21"
)


def scenario(loss_agg: str, scale_rewards: str) -> Scenario:
    cfg = Config(algo="grpo", env="CartPole-v1", prompts_per_update=4, group_size=8, total_steps=12_000, seed=0,
                 loss_agg=loss_agg, scale_rewards=scale_rewards, quiet=True)  # fmt: skip
    return Scenario(
        f"GRPO on CartPole-v1 (4 seeds x 8 episodes per update), loss_agg {loss_agg}, scale_rewards {scale_rewards}, "
        "12,000 steps",
        cfg,
        ("group_advantages", "aggregate_loss"),
        first_update=FIRST,
        meaning=learns(32, MEASURED),
    )


SCENARIOS = (scenario("grpo", "group"), scenario("bnpo", "batch"), scenario("dr_grpo", "none"))


def build() -> list[Test]:
    a, g, both = ("group_advantages",), ("aggregate_loss",), ("group_advantages", "aggregate_loss")
    hint_std = (
        "(R - mean of the group) / (std + 1e-4), with the *sample* standard deviation (n - 1, torch's default "
        "tensor.std(), as in TRL); population std (n) makes every advantage too large by sqrt(G / (G - 1))"
    )
    hint_agg = {
        "grpo": "mean over each sequence's own tokens (sum of per_token * mask over dim 1 / that sequence's count), "
        "then the mean over the sequences that have tokens",
        "bnpo": "sum over every unmasked token of the batch / the number of unmasked tokens (never over the padding)",
        "dr_grpo": "sum over every unmasked token / (B * max_len), max_len defaulting to T: a constant, whatever "
        "the lengths",
    }
    tests = [
        Test("group_advantages returns a float32 tensor shaped like rewards", a, test_adv_shape, 1,
             case="5 groups of G=4", hint="one advantage per completion: shape (n_groups, G)"),
        Test("group_advantages on a hand case, every scaling", a, test_adv_hand, 2, case=f"rewards {show(HAND_R)}",
             hint=hint_std),
        Test("the standard deviation is the sample one (n - 1)", a, test_adv_sample_std, 2,
             case=f"rewards {show(TWO)}: sample std 0.7071, population std 0.5", hint=hint_std),
    ]  # fmt: skip
    for mode, hint in (
        ("group", hint_std),
        ("batch", "centre within each group, divide by the sample std of *all* the batch's rewards (+ 1e-4)"),
        ("none", "Dr. GRPO: centre within each group, no division"),
    ):
        tests.append(Test(f"scale_rewards={mode!r} on random groups, against ours", a, test_adv_mode(mode), 2,
                          hint=hint))  # fmt: skip
    tests += [
        Test("eps is added to the std: a nearly-equal group", a, test_adv_near_equal, 1,
             case=f"rewards {show(NEAR_EQUAL)} (std 5e-5)",
             hint="(R - mean) / (std + 1e-4): eps outside the square root, added to the std"),
        Test("a group whose rewards are all equal gets advantage 0 (not NaN)", a, test_adv_equal_groups_zero, 1,
             kind="property", case="three groups of four equal rewards, every scaling",
             hint="its centred rewards are 0, and 0 / (0 + eps) = 0: the eps is what keeps it finite"),
        Test("each group's advantages sum to 0", a, test_adv_centred, 1, kind="property",
             case="8 groups of G=6, every scaling",
             hint="each group's mean reward is its own baseline: relative to it, a group's advantages sum to 0"),
        Test("adding a constant to a group's rewards changes nothing", a, test_adv_shift_invariant, 1,
             kind="property", case="6 groups of G=4, group g shifted by 3g; scalings group and none",
             hint="advantages are relative to the group: centre within the group, not over the batch"),
        Test("group_advantages leaves its input unchanged", a, test_adv_inputs_unchanged, 1, kind="property"),
        Test("aggregate_loss returns a 0-dim float32 scalar with a gradient", g, test_agg_scalar, 1,
             case="4 sequences, grpo", hint="reduce to a scalar tensor, staying in torch"),
    ]  # fmt: skip
    for mode in AGGS:
        tests.append(Test(f"aggregate_loss {mode} on a hand case of unequal lengths", g, test_agg_hand(mode), 2,
                          case=f"per_token {show(HAND_L)}, mask {show(HAND_M)}", hint=hint_agg[mode]))  # fmt: skip
    for mode in AGGS:
        tests.append(Test(f"aggregate_loss {mode} on random batches, bool and float masks, against ours", g,
                          test_agg_random(mode), 2, hint=hint_agg[mode]))  # fmt: skip
    tests += [
        Test("padded tokens never count", g, test_agg_padding_ignored, 1, kind="property",
             case="6 sequences of unequal lengths; padding values changed to -1e4; every mode",
             hint="padding belongs to no completion: only unmasked tokens may reach a sum or a count"),
        Test("empty sequences: left out of grpo's mean; an all-masked batch gives 0, not NaN", g, test_agg_empty, 1,
             kind="property", case="5 sequences, two of them without tokens; then every token masked",
             hint="an empty sequence has no mean to contribute, so grpo averages over the sequences that have "
             "tokens; a batch with no token at all has a loss of 0, not 0 / 0"),
        Test("each token's weight (the gradient), every mode, against ours", g, test_agg_gradient, 2,
             kind="property", case="6 sequences of unequal lengths",
             hint="grpo gives a token of sequence i the weight 1 / (n_i * B'), bnpo 1 / (tokens in the batch), "
             "dr_grpo 1 / (B * max_len): that weighting is the whole difference between the modes"),
        Test("aggregate_loss leaves its inputs unchanged", g, test_agg_inputs_unchanged, 1, kind="property"),
    ]  # fmt: skip
    specs = {"group_advantages": ADV, "aggregate_loss": AGG}
    for s in SCENARIOS:
        tests.append(integration_test(f"integration: {s.description}, against ours", both, s, specs, 2))
    return tests


ASSIGNMENT = Assignment(
    "hw4", "GRPO's group advantages and token aggregation (group_advantages, aggregate_loss)", "05",
    {"group_advantages": ADV, "aggregate_loss": AGG}, build,
)  # fmt: skip
