"""Homework 6: sample dropout, ``dppo_scores`` and ``sample_dropout_mask``: the D-PPO rule (this sandbox's
reconstruction), SDPO, the outlier rule, by sign; the variance identity (pairs with lesson 07)."""

from __future__ import annotations

import math

import torch

from ..config import preset
from ..maths import dppo_scores as reference_scores
from ..maths import sample_dropout_mask as reference_keep
from .cases import case_tests
from .core import Assignment, Fail, FunctionSpec, Test, call, describe, generator, seed_of
from .integration import Recorder, Scenario, integration_test, learns

KEEP_ARGS = ("surrogate", "ratio", "advantages", "mode", "rate", "delta", "by_sign")
SCORES = FunctionSpec("dppo_scores", "dppo_scores(surrogate) -> score per sample", reference_scores, ("surrogate",),
                      rtol=1e-4, atol=1e-4, what="the scores")  # fmt: skip
KEEP = FunctionSpec("sample_dropout_mask", "sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, "
                    "by_sign) -> bool keep-mask", reference_keep, KEEP_ARGS, exact=True, what="the keep-mask",
                    check=lambda got, args, what: expect_keep(got, args, what))  # fmt: skip
SPECS = {"dppo_scores": SCORES, "sample_dropout_mask": KEEP}


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


def expect_keep(got, args: list, what: str = "") -> None:
    """``got`` against our keep-mask on ``args``, allowing the two to differ only between samples that tie (up to
    float rounding) at the rule's boundary: another order of operations may break a tie the other way."""
    surrogate, ratio, adv, mode, rate, delta, by_sign = args
    want, what = reference_keep(*args), what or "the keep-mask"
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


def keep_args(seed: int, n: int, spread: float = 0.3, **given) -> dict:
    """The arguments of ``sample_dropout_mask`` on ``n`` random samples (dppo, rate 0.1 unless ``given``)."""
    defaults = {"mode": "dppo", "rate": 0.1, "delta": 0.25, "by_sign": False}
    return dict(zip(KEEP_ARGS, samples(seed, n, spread))) | defaults | given


def identity_sides(x: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    x, s = x.double(), s.detach().double()
    N, L = len(x), float(x.mean())
    V = float((x**2).mean()) - L**2
    return V, (N - 1) * L**2 - float(s.sum()) / N


def scores(fns, x: torch.Tensor) -> torch.Tensor:
    """The learner's scores of ``x``, after their type, shape, dtype and finiteness (not values)."""
    return SCORES.shaped(fns, x).detach()


def test_variance_identity(fns):
    for seed, n in ((3, 100), (4, 9)):
        x = samples(seed, n, spread=0.5)[0]
        V, rhs = identity_sides(x, scores(fns, x))
        if not math.isclose(V, rhs, rel_tol=1e-4, abs_tol=1e-5):
            raise Fail(f"with your scores, (N - 1) L^2 - C / N = {rhs:.6g} but the variance V is {V:.6g} "
                       f"({n} samples, seed {seed_of(seed)})")  # fmt: skip


def test_scores_sum(fns):
    x = samples(5, 50)[0]
    s = scores(fns, x).double()
    want = float(x.double().sum() ** 2 - (x.double() ** 2).sum())
    if not math.isclose(float(s.sum()), want, rel_tol=1e-4, abs_tol=1e-4):
        raise Fail(f"the scores sum to {float(s.sum()):.6g}; sum_i x_i (S - x_i) = S^2 - sum x^2 = {want:.6g}")


def rule_calls(mode: str, by_sign: bool = False) -> list[dict]:
    rule, sign = {"mode": mode, "by_sign": by_sign}, ", by_sign" if by_sign else ""
    calls = [{"args": keep_args(seed, n, 0.4, rate=rate, **rule), "case": f"{n} samples (seed {seed_of(seed)}), rate "
              f"{rate}{sign}"} for seed, n, rate in ((12, 10, 0.2), (13, 256, 0.1), (14, 7, 0.25), (15, 9, 0.1),
                                                     (16, 100, 0.3))]  # fmt: skip
    args = keep_args(24, 60, 0.4, rate=0.2, **rule)
    args["advantages"] = args["advantages"] + 1.5  # mostly positive advantages: the surrogate's mean is far from 0
    args["surrogate"] = args["ratio"] * args["advantages"]
    return calls + [{"args": args, "case": f"60 samples (seed 24) with advantages around +1.5, rate 0.2{sign}"}]


def test_detached(fns):
    x, r, a = samples(22, 30)
    rg, ag = r.clone().requires_grad_(), a.clone().requires_grad_()
    got = call(fns["sample_dropout_mask"], "sample_dropout_mask", rg * ag, rg, ag, "dppo", 0.1, 0.25, True)
    if isinstance(got, torch.Tensor) and got.requires_grad:
        raise Fail("the keep-mask carries a gradient: it is a decision, computed from detached values")
    expect_keep(got, [x, r, a, "dppo", 0.1, 0.25, True])


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
    sc, kp = {"function": "dppo_scores"}, {"function": "sample_dropout_mask"}
    hint_dppo = (
        "score_i = x_i * (S - x_i) with S = sum(x): sample i's share of the cross terms; drop the floor(rate * n) "
        "samples with the LOWEST score, keep the rest"
    )
    hint_outlier = "drop the floor(rate * n) samples with the LARGEST |x_i - mean(x)|"
    hint_sign = (
        "by_sign: apply the rate within A > 0 and within A <= 0 separately: floor(rate * n_pos) among the positive, "
        "floor(rate * n_rest) among the others, each group ranked on its own"
    )
    sdpo_r, sdpo_a = [1.0, 1.1, 1.25, 0.75, 0.8, 1.3, 0.5, 1.24], [1.0, -1.0, 2.0, -0.5, 0.3, 1.0, -2.0, 0.1]
    nothing_r, nothing_a = torch.tensor([1.5, 0.5, 2.0, 0.6]), torch.tensor([1.0, -1.0, 0.5, 2.0])
    zero_a = keep_args(21, 12, mode="outlier", rate=0.25, by_sign=True)
    zero_a["advantages"][:4] = 0.0  # A = 0 counts with the non-positive samples
    zero_a["surrogate"] = zero_a["ratio"] * zero_a["advantages"]
    first = torch.randn(50, generator=generator(19))
    return case_tests("hw6", SPECS, [
        {**sc, "name": "dppo_scores returns one float32 score per sample", "check": "like",
         "args": {"surrogate": samples(0, 64)[0]}, "case": "64 samples", "hint": "a tensor shaped like surrogate"},
        {**sc, "name": "dppo_scores values: a hand case and random surrogates, against ours", "points": 2,
         "calls": [{"args": {"surrogate": [1.0, 2.0, -1.0, 0.5]}}, *({"args": {"surrogate": samples(seed, n)[0]},
                    "case": f"{n} random surrogates x = r * A (seed {seed_of(seed)})"}
                   for seed, n in ((1, 256), (2, 7)))],
         "case": "x = [1.0, 2.0, -1.0, 0.5], then 256 and 7 random ones",
         "hint": "score_i = x_i * (S - x_i), S = sum(x)"},
        Test("the variance identity V = (N - 1) L^2 - C / N holds with your scores", s, test_variance_identity, 2,
             kind="property", case="L = mean(x), V = mean(x^2) - L^2, C = sum of your scores; 100 and 9 samples",
             hint="C = sum_i x_i (S - x_i) = S^2 - sum x^2 = N^2 L^2 - N (V + L^2); solve for V"),
        Test("the scores sum to S^2 - sum x^2 (every cross term counted)", s, test_scores_sum, 1, kind="property",
             case="50 samples", hint="sum over i != j of x_i x_j"),
        {**kp, "name": "sample_dropout_mask returns a bool mask, one entry per sample",
         "args": keep_args(10, 32, rate=0.25), "case": "32 samples, dppo, rate 0.25", "hint": "True = keep; the "
         "trainer indexes with it (a float 0/1 tensor or a list of indices will not do)"},
        {**kp, "name": "mode none keeps every sample", "args": keep_args(11, 20, mode="none"),
         "case": "20 samples, mode none"},
        {**kp, "name": "dppo: drops the floor(rate * n) lowest scores", "points": 3, "hint": hint_dppo,
         "calls": rule_calls("dppo")},
        {**kp, "name": "dppo by sign: the rate within A > 0 and A <= 0", "points": 2,
         "hint": hint_sign + ". " + hint_dppo, "calls": rule_calls("dppo", True)},
        {**kp, "name": "outlier: drops the floor(rate * n) farthest from the mean", "points": 2, "hint": hint_outlier,
         "calls": rule_calls("outlier")},
        {**kp, "name": "outlier by sign", "hint": hint_sign, "calls": rule_calls("outlier", True)},
        {**kp, "name": "sdpo: keeps |r - 1| < delta, strictly", "points": 2,
         "case": f"ratio {sdpo_r}, delta 0.25 (1.25 and 0.75 sit exactly on the boundary); then random",
         "hint": "SDPO (Lin et al. 2023) keeps a sample iff |r - 1| < delta; it ignores rate",
         "calls": [{"args": {"surrogate": [r * a for r, a in zip(sdpo_r, sdpo_a)], "ratio": sdpo_r,
                             "advantages": sdpo_a, "mode": "sdpo", "rate": 0.1, "delta": 0.25, "by_sign": False},
                    "expected": [True, True, False, False, True, False, False, True]},
                   *({"args": keep_args(seed, 200, mode="sdpo", delta=delta), "case": "200 random samples (seed "
                      f"{seed_of(seed)}), delta {delta}"} for seed, delta in ((17, 0.25), (18, 0.1)))]},
        {**kp, "name": "sdpo drops nothing at r = 1 (the first minibatch of an update)", "kind": "property",
         "args": {**keep_args(0, 0, mode="sdpo"), "surrogate": first, "ratio": torch.ones(50), "advantages": first},
         "case": "50 samples, r = 1"},
        {**kp, "name": "a rule that would keep nothing keeps everything", "kind": "property",
         "args": {**keep_args(0, 0, mode="sdpo"), "surrogate": nothing_r * nothing_a, "ratio": nothing_r,
                  "advantages": nothing_a}, "case": "sdpo, every |r - 1| >= 0.25",
         "hint": "an empty mean is NaN: if nothing is kept, keep everything"},
        {**kp, "name": "rate 0 keeps every sample (dppo, outlier)", "kind": "property",
         "calls": [{"args": keep_args(20, 40, mode=m, rate=0.0), "case": f"{m} at rate 0"}
                   for m in ("dppo", "outlier")],
         "case": "40 samples, rate 0", "hint": "floor(0 * n) = 0 samples dropped"},
        {**kp, "name": "by sign, A = 0 counts with the non-positive samples", "kind": "property",
         "calls": [{"args": {**zero_a, "mode": m}} for m in ("dppo", "outlier")],
         "case": "12 samples, four with A = 0, rate 0.25, by_sign", "hint": "the groups are A > 0 and A <= 0"},
        Test("the mask is detached, and works on tensors that require grad", k, test_detached, 1, kind="property",
             case="30 samples whose ratio and advantages require grad",
             hint="the keep-mask is a decision, not part of the loss: it is computed from detached values"),
        {**kp, "name": "sample_dropout_mask leaves its inputs unchanged", "kind": "property", "check": "unchanged",
         "args": keep_args(23, 30, mode="outlier", rate=0.2, by_sign=True)},
        *(integration_test(f"integration: {s.description}, against ours", k, s, SPECS, 2)
          for s in (DPPO, OUTLIER, SDPO)),
    ], "hw6")  # fmt: skip


ASSIGNMENT = Assignment(
    "hw6", "sample dropout (dppo_scores, sample_dropout_mask)", "07",
    {"dppo_scores": SCORES, "sample_dropout_mask": KEEP}, build,
)  # fmt: skip
