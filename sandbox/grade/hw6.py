"""Homework 6: sample dropout, ``dppo_scores`` and ``sample_dropout_mask``: the D-PPO rule (this sandbox's
reconstruction), SDPO, the outlier rule, by sign; the variance identity (pairs with lesson 07)."""

from __future__ import annotations

import math

import torch

from ..config import preset
from ..maths import dppo_scores as reference_scores
from ..maths import sample_dropout_mask as reference_keep
from .core import (
    Assignment,
    Fail,
    FunctionSpec,
    Test,
    call,
    clone,
    describe,
    expect_inputs_unchanged,
    expect_like,
    expect_tensor,
    generator,
    seed_of,
    show,
)
from .integration import Recorder, Scenario, integration_test, learns

RULES = ("dppo", "sdpo", "outlier")


def _compare_scores(got, want, what: str = "") -> None:
    expect_tensor(got, want, what or "the scores", rtol=1e-4, atol=1e-4)


def _compare_keep_exact(got, want, what: str = "") -> None:
    expect_tensor(got, want, what or "the keep-mask", exact=True)


SCORES = FunctionSpec("dppo_scores", "dppo_scores(surrogate) -> score per sample", reference_scores, ("surrogate",),
                      _compare_scores)  # fmt: skip
KEEP = FunctionSpec(
    "sample_dropout_mask",
    "sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, by_sign) -> bool keep-mask",
    reference_keep,
    ("surrogate", "ratio", "advantages", "mode", "rate", "delta", "by_sign"),
    _compare_keep_exact,
    check=lambda got, args, what="the keep-mask": expect_keep(got, args, what),
)


def samples(seed: int, n: int, spread: float = 0.3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(surrogate x = r * A, ratio r, advantages A) for n samples: r around 1, A of both signs."""
    g = generator(seed)
    ratio = (spread * torch.randn(n, generator=g)).exp()
    adv = torch.randn(n, generator=g)
    return ratio * adv, ratio, adv


def badness(x: torch.Tensor, mode: str) -> torch.Tensor:
    """What each rule drops first, in float64: the lowest D-PPO score, or the farthest from the mean."""
    x = x.detach().double()
    return -x * (x.sum() - x) if mode == "dppo" else (x - x.mean()).abs()


def expect_keep(got, args: list, what: str = "the keep-mask") -> None:
    """``got`` against our keep-mask on ``args``, allowing the two to differ only between samples that tie (up to
    float rounding) at the rule's boundary: another order of operations may break a tie the other way."""
    surrogate, ratio, adv, mode, rate, delta, by_sign = args
    want = reference_keep(*args)
    n = surrogate.numel()
    if not isinstance(got, torch.Tensor):
        raise Fail(f"{what} should be {describe(want)} (True = keep), got {describe(got)}")
    if got.dtype != torch.bool:
        raise Fail(f"{what} has dtype {str(got.dtype)[6:]}, expected bool (True = keep; the trainer indexes with it)")
    if got.shape != want.shape:
        raise Fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}: one entry per sample")
    if torch.equal(got, want):
        return
    differ = (got != want).nonzero().flatten()
    if mode == "sdpo":
        margin = ((ratio.detach().double() - 1).abs() - delta).abs()
        if bool((margin[differ] < 1e-6).all()):
            return
    elif mode in ("dppo", "outlier") and bool(want.any()) and not bool(want.all()):
        bad = badness(surrogate, mode)
        a = adv.detach()
        groups = [a > 0, a <= 0] if by_sign else [torch.ones(n, dtype=torch.bool)]
        ties = True
        for grp in groups:
            gk, wk = got[grp], want[grp]
            if int((~gk).sum()) != int((~wk).sum()):
                ties = False
                break
            if bool((~gk).any()) and bool(gk.any()):
                scale = float(bad[grp].abs().max()) + 1e-12
                ties &= float(bad[grp][gk].max()) <= float(bad[grp][~gk].min()) + 1e-6 * scale
        if ties:
            return
    i = int(differ[0])
    dropped, expected = int((~got).sum()), int((~want).sum())
    detail = f"x = {float(surrogate[i]):.4g}, r = {float(ratio[i]):.4g}, A = {float(adv[i]):.4g}"
    if mode == "dppo":
        detail += f", score = {float(-badness(surrogate, mode)[i]):.4g}"
    elif mode == "outlier":
        detail += f", |x - mean| = {float(badness(surrogate, mode)[i]):.4g}"
    raise Fail(
        f"{what}, sample {i} ({detail}): expected keep={bool(want[i])}, got {bool(got[i])}; you dropped {dropped} of "
        f"{n} samples, the rule drops {expected} ({int(len(differ))} samples differ)"
    )


def keep(fns, *args):
    return call(fns["sample_dropout_mask"], "sample_dropout_mask", *clone(list(args)))


def scores(fns, x):
    return call(fns["dppo_scores"], "dppo_scores", x.clone())


# --- dppo_scores ---------------------------------------------------------------------------------------------------

HAND_X = torch.tensor([1.0, 2.0, -1.0, 0.5])


def test_scores_shape(fns):
    x = samples(0, 64)[0]
    expect_like(scores(fns, x), reference_scores(x), "the scores")


def test_scores_values(fns):
    _compare_scores(scores(fns, HAND_X), reference_scores(HAND_X), "on the hand case")
    for seed, n in ((1, 256), (2, 7)):
        x = samples(seed, n)[0]
        try:
            _compare_scores(scores(fns, x), reference_scores(x))
        except Fail as f:
            raise Fail(f.problem, case=f"{n} random surrogates x = r * A (seed {seed_of(seed)})") from None


def identity_sides(x: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    x, s = x.double(), s.detach().double()
    N, L = len(x), float(x.mean())
    V = float((x**2).mean()) - L**2
    return V, (N - 1) * L**2 - float(s.sum()) / N


def test_variance_identity(fns):
    for seed, n in ((3, 100), (4, 9)):
        x = samples(seed, n, spread=0.5)[0]
        s = scores(fns, x)
        expect_like(s, reference_scores(x), "the scores")
        V, rhs = identity_sides(x, s)
        if not math.isclose(V, rhs, rel_tol=1e-4, abs_tol=1e-5):
            raise Fail(f"with your scores, (N - 1) L^2 - C / N = {rhs:.6g} but the variance V is {V:.6g} "
                       f"({n} samples, seed {seed_of(seed)})")  # fmt: skip


def test_scores_sum(fns):
    x = samples(5, 50)[0]
    s = scores(fns, x)
    expect_like(s, reference_scores(x), "the scores")
    want = float(x.double().sum() ** 2 - (x.double() ** 2).sum())
    if not math.isclose(float(s.double().sum()), want, rel_tol=1e-4, abs_tol=1e-4):
        raise Fail(f"the scores sum to {float(s.sum()):.6g}; sum_i x_i (S - x_i) = S^2 - sum x^2 = {want:.6g}")


# --- sample_dropout_mask -------------------------------------------------------------------------------------------


def test_keep_type(fns):
    x, r, a = samples(10, 32)
    got = keep(fns, x, r, a, "dppo", 0.25, 0.25, False)
    expect_keep(got, [x, r, a, "dppo", 0.25, 0.25, False])


def test_keep_none(fns):
    x, r, a = samples(11, 20)
    expect_keep(keep(fns, x, r, a, "none", 0.1, 0.25, False), [x, r, a, "none", 0.1, 0.25, False])


def rule_cases(mode: str, by_sign: bool = False) -> list[tuple[str, list]]:
    cases = []
    for seed, n, rate in ((12, 10, 0.2), (13, 256, 0.1), (14, 7, 0.25), (15, 9, 0.1), (16, 100, 0.3)):
        x, r, a = samples(seed, n, spread=0.4)
        cases.append((f"{n} samples (seed {seed_of(seed)}), rate {rate}", [x, r, a, mode, rate, 0.25, by_sign]))
    x, r, a = samples(24, 60, spread=0.4)
    a = a + 1.5  # mostly positive advantages: the surrogate's mean is far from 0
    cases.append(
        ("60 samples (seed 24) with advantages around +1.5, rate 0.2", [r * a, r, a, mode, 0.2, 0.25, by_sign])
    )
    return cases


def test_rule(mode: str, by_sign: bool = False):
    def run(fns):
        for case, args in rule_cases(mode, by_sign):
            try:
                expect_keep(keep(fns, *args), args)
            except Fail as f:
                raise Fail(f.problem, case=case + (", by_sign" if by_sign else "")) from None

    return run


SDPO_R = torch.tensor([1.0, 1.1, 1.25, 0.75, 0.8, 1.3, 0.5, 1.24])
SDPO_A = torch.tensor([1.0, -1.0, 2.0, -0.5, 0.3, 1.0, -2.0, 0.1])


def test_sdpo(fns):
    args = [SDPO_R * SDPO_A, SDPO_R, SDPO_A, "sdpo", 0.1, 0.25, False]
    got = keep(fns, *args)
    expect_keep(got, args, "the keep-mask on the hand case")  # type and shape first
    _compare_keep_exact(got, reference_keep(*args), "the keep-mask on the hand case (the boundary is excluded)")
    for seed, delta in ((17, 0.25), (18, 0.1)):
        x, r, a = samples(seed, 200, spread=0.3)
        args = [x, r, a, "sdpo", 0.1, delta, False]
        try:
            expect_keep(keep(fns, *args), args)
        except Fail as f:
            raise Fail(f.problem, case=f"200 random samples (seed {seed_of(seed)}), delta {delta}") from None


def test_sdpo_first_minibatch(fns):
    a = torch.randn(50, generator=generator(19))
    args = [a.clone(), torch.ones(50), a, "sdpo", 0.1, 0.25, False]
    expect_keep(keep(fns, *args), args, "the keep-mask at r = 1")


def test_keep_nothing(fns):
    r = torch.tensor([1.5, 0.5, 2.0, 0.6])
    a = torch.tensor([1.0, -1.0, 0.5, 2.0])
    args = [r * a, r, a, "sdpo", 0.1, 0.25, False]
    expect_keep(keep(fns, *args), args, "the keep-mask when the rule keeps nothing")


def test_rate_zero(fns):
    x, r, a = samples(20, 40)
    for mode in ("dppo", "outlier"):
        args = [x, r, a, mode, 0.0, 0.25, False]
        expect_keep(keep(fns, *args), args, f"{mode} at rate 0")


def test_zero_advantage_sign(fns):
    x, r, a = samples(21, 12)
    a = a.clone()
    a[:4] = 0.0  # A = 0 counts with the non-positive samples
    x = r * a
    for mode in ("dppo", "outlier"):
        args = [x, r, a, mode, 0.25, 0.25, True]
        expect_keep(keep(fns, *args), args, f"{mode} by sign with four A = 0 samples")


def test_detached(fns):
    x, r, a = samples(22, 30)
    rg, ag = r.clone().requires_grad_(), a.clone().requires_grad_()
    xg = rg * ag
    got = call(fns["sample_dropout_mask"], "sample_dropout_mask", xg, rg, ag, "dppo", 0.1, 0.25, True)
    if isinstance(got, torch.Tensor) and got.requires_grad:
        raise Fail("the keep-mask carries a gradient: it is a decision, computed from detached values")
    expect_keep(got, [x, r, a, "dppo", 0.1, 0.25, True])


def test_keep_inputs_unchanged(fns):
    x, r, a = samples(23, 30)
    args = [x, r, a, "outlier", 0.2, 0.25, True]
    before = clone(args)
    call(fns["sample_dropout_mask"], "sample_dropout_mask", *args)
    expect_inputs_unchanged(before, args, ["surrogate", "ratio", "advantages"], "sample_dropout_mask")


# --- integration ---------------------------------------------------------------------------------------------------


def check_calls(recorders: dict[str, Recorder]) -> None:
    rec = recorders["sample_dropout_mask"]
    for i, (args, out) in enumerate(rec.calls, start=1):
        expect_keep(out, list(args), f"call {i} of {rec.count} of `sample_dropout_mask` in the run: the keep-mask")


def scenario(description: str, floor: float, measured: str, **variant) -> Scenario:
    return Scenario(
        f"PPO, preset cartpole, {description}, 12,288 steps",
        preset("cartpole", total_steps=12_288, seed=0, quiet=True, **variant),
        ("sample_dropout_mask",),
        first_update=("policy_loss", "value_loss", "approx_kl", "entropy", "grad_norm"),
        meaning=learns(floor, measured + " at 12,288 steps; a random policy scores about 22"),
        check_calls=check_calls,
    )


DPPO = scenario("D-PPO by sign, rate 0.1", 50, "every seed 0-9 of ours reaches at least 114",
                sample_dropout="dppo", sample_drop_by_sign=True)  # fmt: skip
OUTLIER = scenario("outlier by sign, rate 0.1", 50, "every seed 0-9 of ours reaches at least 133",
                   sample_dropout="outlier", sample_drop_by_sign=True)  # fmt: skip
SDPO = scenario("SDPO, delta 0.25", 45, "every seed 0-9 of ours reaches at least 87", sample_dropout="sdpo")


def build() -> list[Test]:
    s, k = ("dppo_scores",), ("sample_dropout_mask",)
    hint_dppo = (
        "score_i = x_i * (S - x_i) with S = sum(x): sample i's share of the cross terms; drop the floor(rate * n) "
        "samples with the LOWEST score, keep the rest"
    )
    hint_outlier = "drop the floor(rate * n) samples with the LARGEST |x_i - mean(x)|"
    hint_sign = (
        "by_sign: apply the rate within A > 0 and within A <= 0 separately: floor(rate * n_pos) among the positive, "
        "floor(rate * n_rest) among the others, each group ranked on its own"
    )
    specs = {"sample_dropout_mask": KEEP}
    return [
        Test("dppo_scores returns one float32 score per sample", s, test_scores_shape, 1, case="64 samples",
             hint="a tensor shaped like surrogate"),
        Test("dppo_scores values: a hand case and random surrogates, against ours", s, test_scores_values, 2,
             case=f"x = {show(HAND_X)}, then 256 and 7 random ones", hint="score_i = x_i * (S - x_i), S = sum(x)"),
        Test("the variance identity V = (N - 1) L^2 - C / N holds with your scores", s, test_variance_identity, 2,
             kind="property", case="L = mean(x), V = mean(x^2) - L^2, C = sum of your scores; 100 and 9 samples",
             hint="C = sum_i x_i (S - x_i) = S^2 - sum x^2 = N^2 L^2 - N (V + L^2); solve for V"),
        Test("the scores sum to S^2 - sum x^2 (every cross term counted)", s, test_scores_sum, 1, kind="property",
             case="50 samples", hint="sum over i != j of x_i x_j"),
        Test("sample_dropout_mask returns a bool mask, one entry per sample", k, test_keep_type, 1,
             case="32 samples, dppo, rate 0.25", hint="True = keep; the trainer indexes with it (a float 0/1 "
             "tensor or a list of indices will not do)"),
        Test("mode none keeps every sample", k, test_keep_none, 1, case="20 samples, mode none"),
        Test("dppo: drops the floor(rate * n) lowest scores", k, test_rule("dppo"), 3, hint=hint_dppo),
        Test("dppo by sign: the rate within A > 0 and A <= 0", k, test_rule("dppo", True), 2,
             hint=hint_sign + ". " + hint_dppo),
        Test("outlier: drops the floor(rate * n) farthest from the mean", k, test_rule("outlier"), 2,
             hint=hint_outlier),
        Test("outlier by sign", k, test_rule("outlier", True), 1, hint=hint_sign),
        Test("sdpo: keeps |r - 1| < delta, strictly", k, test_sdpo, 2,
             case=f"ratio {show(SDPO_R)}, delta 0.25 (1.25 and 0.75 sit exactly on the boundary); then random",
             hint="SDPO (Lin et al. 2023) keeps a sample iff |r - 1| < delta; it ignores rate"),
        Test("sdpo drops nothing at r = 1 (the first minibatch of an update)", k, test_sdpo_first_minibatch, 1,
             kind="property", case="50 samples, r = 1"),
        Test("a rule that would keep nothing keeps everything", k, test_keep_nothing, 1, kind="property",
             case="sdpo, every |r - 1| >= 0.25", hint="an empty mean is NaN: if nothing is kept, keep everything"),
        Test("rate 0 keeps every sample (dppo, outlier)", k, test_rate_zero, 1, kind="property",
             case="40 samples, rate 0", hint="floor(0 * n) = 0 samples dropped"),
        Test("by sign, A = 0 counts with the non-positive samples", k, test_zero_advantage_sign, 1, kind="property",
             case="12 samples, four with A = 0, rate 0.25, by_sign", hint="the groups are A > 0 and A <= 0"),
        Test("the mask is detached, and works on tensors that require grad", k, test_detached, 1, kind="property",
             case="30 samples whose ratio and advantages require grad",
             hint="the keep-mask is a decision, not part of the loss: it is computed from detached values"),
        Test("sample_dropout_mask leaves its inputs unchanged", k, test_keep_inputs_unchanged, 1, kind="property"),
        *(integration_test(f"integration: {s.description}, against ours", k, s, specs, 2)
          for s in (DPPO, OUTLIER, SDPO)),
    ]  # fmt: skip


ASSIGNMENT = Assignment(
    "hw6", "sample dropout (dppo_scores, sample_dropout_mask)", "07",
    {"dppo_scores": SCORES, "sample_dropout_mask": KEEP}, build,
)  # fmt: skip
