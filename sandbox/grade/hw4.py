"""Homework 4: GRPO's group advantages and token aggregation, ``group_advantages`` and ``aggregate_loss``: every
scaling and mode, sequences of unequal lengths (pairs with lesson 05)."""

from __future__ import annotations

import torch

from ..config import Config
from ..maths import aggregate_loss as reference_aggregate
from ..maths import group_advantages as reference_advantages
from .cases import case_tests
from .core import Assignment, Fail, FunctionSpec, Test, call, expect_tensor, generator, seed_of, show
from .integration import Scenario, integration_test, learns

ADV = FunctionSpec("group_advantages", "group_advantages(rewards (n_groups, G), scale_rewards) -> advantages "
                   "(n_groups, G)", reference_advantages, ("rewards", "scale_rewards"), rtol=1e-5, atol=1e-5,
                   what="the advantages")  # fmt: skip
AGG = FunctionSpec("aggregate_loss", "aggregate_loss(per_token (B, T), mask (B, T), mode, max_len=None) -> scalar",
                   reference_aggregate, ("per_token", "mask", "mode", "max_len"),
                   what="the aggregated loss")  # fmt: skip
SPECS = {"group_advantages": ADV, "aggregate_loss": AGG}
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


def advantages(fns, r: torch.Tensor, mode: str) -> torch.Tensor:
    """The learner's advantages, after their type, shape, dtype and finiteness (not values)."""
    return ADV.shaped(fns, r, mode, what=f"scale_rewards={mode!r}: the advantages").detach()


def test_adv_centred(fns):
    r = rewards(4, 8, 6)
    for mode in MODES:
        expect_tensor(advantages(fns, r, mode).sum(dim=1), torch.zeros(8),
                      f"scale_rewards={mode!r}: each group's sum", rtol=0.0, atol=1e-5)  # fmt: skip


def test_adv_shift_invariant(fns):
    r = rewards(5, 6, 4)
    shift = torch.arange(6.0)[:, None] * 3.0  # a different constant per group
    for mode in ("group", "none"):
        expect_tensor(advantages(fns, r + shift, mode), advantages(fns, r, mode),
                      f"scale_rewards={mode!r}: advantages of shifted rewards", rtol=1e-4, atol=1e-4)  # fmt: skip


def test_agg_scalar(fns):
    per_token, mask = tokens(10, 4, 6)
    got = call(fns["aggregate_loss"], "aggregate_loss", per_token.clone().requires_grad_(), mask.clone(), "grpo", None)
    AGG.compare(got, reference_aggregate(per_token, mask, "grpo"), "the loss", like=True)
    if not got.requires_grad:
        raise Fail("the loss carries no gradient back to per_token: the trainer differentiates it",
                   hint="stay in torch: no .item(), .numpy() or Python loops that build floats")  # fmt: skip


def test_agg_padding_ignored(fns):
    per_token, mask = tokens(14, 6, 8)
    changed = torch.where(mask, per_token, torch.full_like(per_token, -1e4))
    for mode in AGGS:
        got = [AGG.shaped(fns, x, mask, mode, None, what=f"{mode}: the loss") for x in (per_token, changed)]
        expect_tensor(got[1], got[0].detach(), f"{mode}: the loss with the padding set to -1e4", rtol=1e-5, atol=1e-5)


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
        "12,000 steps", cfg, ("group_advantages", "aggregate_loss"), first_update=FIRST, meaning=learns(32, MEASURED),
    )  # fmt: skip


SCENARIOS = (scenario("grpo", "group"), scenario("bnpo", "batch"), scenario("dr_grpo", "none"))
HAND_R = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
TWO = [[0.0, 1.0], [0.0, 1.0]]
NEAR_EQUAL = [[0.5, 0.5001, 0.5, 0.5]]
HAND_L = [[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 99.0, 99.0]]
HAND_M = [[True, True, True, True], [True, True, False, False]]
HINT_STD = (
    "(R - mean of the group) / (std + 1e-4), with the *sample* standard deviation (n - 1, torch's default "
    "tensor.std(), as in TRL); population std (n) makes every advantage too large by sqrt(G / (G - 1))"
)
HINT_AGG = {
    "grpo": "mean over each sequence's own tokens (sum of per_token * mask over dim 1 / that sequence's count), "
    "then the mean over the sequences that have tokens",
    "bnpo": "sum over every unmasked token of the batch / the number of unmasked tokens (never over the padding)",
    "dr_grpo": "sum over every unmasked token / (B * max_len), max_len defaulting to T: a constant, whatever the "
    "lengths",
}
HINT_MODE = {
    "group": HINT_STD,
    "batch": "centre within each group, divide by the sample std of *all* the batch's rewards (+ 1e-4)",
    "none": "Dr. GRPO: centre within each group, no division",
}


def agg_call(seed: int, B: int, T: int, mode: str, float_mask: bool) -> dict:
    per_token, mask = tokens(seed, B, T)
    max_len = T + 7 if mode == "dr_grpo" and seed == 12 else None
    case = (f"{B} sequences of unequal lengths in (B, T) = ({B}, {T}), mask as {'float32' if float_mask else 'bool'}; "
            "the padding holds values near 50, a stand-in that must never count")  # fmt: skip
    return {"args": {"per_token": per_token, "mask": mask.float() if float_mask else mask, "mode": mode,
                     "max_len": max_len}, "case": case + (f", max_len {max_len}" if max_len else "") +
            f" (seed {seed_of(seed)})"}  # fmt: skip


def build() -> list[Test]:
    a, g, both = ("group_advantages",), ("aggregate_loss",), ("group_advantages", "aggregate_loss")
    adv, agg = {"function": "group_advantages"}, {"function": "aggregate_loss"}
    empty, mask = tokens(15, 5, 6, empty=2)
    grad_tokens, grad_mask = tokens(16, 6, 9)
    unchanged = tokens(17, 4, 5)
    return case_tests("hw4", SPECS, [
        {**adv, "name": "group_advantages returns a float32 tensor shaped like rewards", "check": "like",
         "args": {"rewards": rewards(0, 5, 4), "scale_rewards": "group"}, "case": "5 groups of G=4",
         "hint": "one advantage per completion: shape (n_groups, G)"},
        {**adv, "name": "group_advantages on a hand case, every scaling", "points": 2, "hint": HINT_STD,
         "calls": [{"args": {"rewards": HAND_R, "scale_rewards": m}, "case": f"rewards {HAND_R}, scale_rewards={m!r}"}
                   for m in MODES]},
        {**adv, "name": "the standard deviation is the sample one (n - 1)", "points": 2, "hint": HINT_STD,
         "calls": [{"args": {"rewards": TWO, "scale_rewards": m}} for m in ("group", "batch")],
         "case": f"rewards {TWO}: sample std 0.7071, population std 0.5"},
        *({**adv, "name": f"scale_rewards={mode!r} on random groups, against ours", "points": 2,
           "hint": HINT_MODE[mode], "calls": [
               {"args": {"rewards": rewards(seed, n, G, equal_groups=1, binary=seed == 2), "scale_rewards": mode},
                "case": f"{n} groups of G={G}, {'0/1' if seed == 2 else 'N(0, 1)'} rewards, the first group all equal "
                f"(seed {seed_of(seed)})"} for seed, (n, G) in zip((1, 2, 3), ((6, 4), (3, 8), (10, 2)))]}
          for mode in MODES),
        {**adv, "name": "eps is added to the std: a nearly-equal group",
         "args": {"rewards": NEAR_EQUAL, "scale_rewards": "group"}, "case": f"rewards {NEAR_EQUAL} (std 5e-5)",
         "hint": "(R - mean) / (std + 1e-4): eps outside the square root, added to the std"},
        {**adv, "name": "a group whose rewards are all equal gets advantage 0 (not NaN)", "kind": "property",
         "calls": [{"args": {"rewards": [[1.0] * 4, [0.0] * 4, [0.3] * 4], "scale_rewards": m}} for m in MODES],
         "case": "three groups of four equal rewards, every scaling",
         "hint": "its centred rewards are 0, and 0 / (0 + eps) = 0: the eps is what keeps it finite"},
        Test("each group's advantages sum to 0", a, test_adv_centred, 1, kind="property",
             case="8 groups of G=6, every scaling",
             hint="each group's mean reward is its own baseline: relative to it, a group's advantages sum to 0"),
        Test("adding a constant to a group's rewards changes nothing", a, test_adv_shift_invariant, 1,
             kind="property", case="6 groups of G=4, group g shifted by 3g; scalings group and none",
             hint="advantages are relative to the group: centre within the group, not over the batch"),
        {**adv, "name": "group_advantages leaves its input unchanged", "kind": "property", "check": "unchanged",
         "args": {"rewards": rewards(6, 4, 4), "scale_rewards": "group"}},
        Test("aggregate_loss returns a 0-dim float32 scalar with a gradient", g, test_agg_scalar, 1,
             case="4 sequences, grpo", hint="reduce to a scalar tensor, staying in torch"),
        *({**agg, "name": f"aggregate_loss {mode} on a hand case of unequal lengths", "points": 2,
           "hint": HINT_AGG[mode], "case": f"per_token {HAND_L}, mask {show(torch.tensor(HAND_M))}",
           "calls": [{"args": {"per_token": HAND_L, "mask": HAND_M, "mode": mode, "max_len": n}}
                     for n in ((None, 10) if mode == "dr_grpo" else (None,))]} for mode in AGGS),
        *({**agg, "name": f"aggregate_loss {mode} on random batches, bool and float masks, against ours", "points": 2,
           "hint": HINT_AGG[mode], "calls": [agg_call(seed, B, T, mode, f)
                                             for seed, (B, T) in zip((11, 12, 13), ((8, 10), (3, 17), (16, 5)))
                                             for f in (False, True)]} for mode in AGGS),
        Test("padded tokens never count", g, test_agg_padding_ignored, 1, kind="property",
             case="6 sequences of unequal lengths; padding values changed to -1e4; every mode",
             hint="padding belongs to no completion: only unmasked tokens may reach a sum or a count"),
        {**agg, "name": "empty sequences: left out of grpo's mean; an all-masked batch gives 0, not NaN",
         "kind": "property", "calls": [{"args": {"per_token": empty, "mask": mask, "mode": "grpo"},
                                        "case": "grpo with two empty sequences"}] + [
             {"args": {"per_token": empty, "mask": torch.zeros_like(mask), "mode": m}, "case": f"{m} with every "
              "token masked"} for m in AGGS],
         "case": "5 sequences, two of them without tokens; then every token masked",
         "hint": "an empty sequence has no mean to contribute, so grpo averages over the sequences that have "
         "tokens; a batch with no token at all has a loss of 0, not 0 / 0"},
        {**agg, "name": "each token's weight (the gradient), every mode, against ours", "points": 2,
         "kind": "property", "check": "gradient", "wrt": "per_token", "weights": torch.ones(()),
         "calls": [{"args": {"per_token": grad_tokens, "mask": grad_mask, "mode": m}, "case": f"{m}: 6 sequences "
                    "of unequal lengths"} for m in AGGS], "case": "6 sequences of unequal lengths",
         "hint": "grpo gives a token of sequence i the weight 1 / (n_i * B'), bnpo 1 / (tokens in the batch), "
         "dr_grpo 1 / (B * max_len): that weighting is the whole difference between the modes"},
        {**agg, "name": "aggregate_loss leaves its inputs unchanged", "kind": "property", "check": "unchanged",
         "args": {"per_token": unchanged[0], "mask": unchanged[1].float(), "mode": "bnpo"}},
        *(integration_test(f"integration: {s.description}, against ours", both, s, SPECS, 2) for s in SCENARIOS),
    ], "hw4")  # fmt: skip


ASSIGNMENT = Assignment(
    "hw4", "GRPO's group advantages and token aggregation (group_advantages, aggregate_loss)", "05", SPECS, build
)
