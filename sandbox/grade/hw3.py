"""Homework 3: the KL estimators ``kl_k1``, ``kl_k2``, ``kl_k3`` (Schulman 2020): values, signs, bias by Monte Carlo
(pairs with lesson 06)."""

from __future__ import annotations

import math

import torch

from ..config import preset
from ..maths import kl_k1, kl_k2, kl_k3
from .core import (
    Assignment,
    Fail,
    FunctionSpec,
    Test,
    call,
    expect_inputs_unchanged,
    expect_like,
    expect_tensor,
    generator,
    seed_of,
    show,
)
from .integration import Scenario, integration_test, learns

TOL = dict(rtol=1e-4, atol=2e-6)
REFERENCE = {"kl_k1": kl_k1, "kl_k2": kl_k2, "kl_k3": kl_k3}
FORMULA = {
    "kl_k1": "k1 = log_ratio (= log p(x) - log q(x))",
    "kl_k2": "k2 = 0.5 * log_ratio^2",
    "kl_k3": "k3 = (r - 1) - log r with r = q(x) / p(x) = exp(-log_ratio), i.e. exp(-log_ratio) - 1 + log_ratio",
}


def _compare(got, want, what: str = "") -> None:
    expect_tensor(got, want, what or "the per-sample estimate", **TOL)


SPECS = {
    name: FunctionSpec(name, f"{name}(log_ratio) -> per-sample estimate", fn, ("log_ratio",), _compare)
    for name, fn in REFERENCE.items()
}
HAND = torch.tensor([0.0, math.log(2), -math.log(2), 1.0, -1.0])

# p and q over six outcomes: KL(p || q) and the expectations of the estimators under p are exact sums
P = torch.tensor([0.30, 0.25, 0.20, 0.12, 0.08, 0.05], dtype=torch.float64)
Q = torch.tensor([0.10, 0.15, 0.20, 0.20, 0.15, 0.20], dtype=torch.float64)
MC_SAMPLES = 200_000


def est(fns, name: str, x: torch.Tensor):
    return call(fns[name], name, x.clone())


def test_shape(name):
    def run(fns):
        x = torch.randn(128, generator=generator(0))
        expect_like(est(fns, name, x), REFERENCE[name](x), "the estimate")
        x2 = torch.randn(4, 9, generator=generator(1))
        expect_like(est(fns, name, x2), REFERENCE[name](x2), "the estimate of a (4, 9) batch of tokens")

    return run


def test_values(name):
    def run(fns):
        _compare(est(fns, name, HAND), REFERENCE[name](HAND), "on the hand case")
        for seed in (2, 3):
            x = 1.5 * torch.randn(300, generator=generator(seed))
            try:
                _compare(est(fns, name, x), REFERENCE[name](x))
            except Fail as f:
                raise Fail(f.problem, case=f"300 random log-ratios, 1.5 * N(0, 1) (seed {seed_of(seed)})") from None

    return run


def test_signs(fns):
    """k1 keeps the sign of the log-ratio (an unbiased estimate can be negative); k2 and k3 are never negative."""
    x = torch.linspace(-20.0, 20.0, 401)
    k1 = est(fns, "kl_k1", x)
    expect_tensor(k1, kl_k1(x), "k1 on log-ratios from -20 to 20", **TOL)
    for name in ("kl_k2", "kl_k3"):
        got = est(fns, name, x)
        expect_like(got, REFERENCE[name](x), f"{name} on log-ratios from -20 to 20")
        negative = got.detach() < 0
        if bool(negative.any()):
            i = int(negative.nonzero()[0])
            raise Fail(f"{name}({x[i]:.4g}) = {got[i]:.4g} is negative ({int(negative.sum())} of 401 log-ratios)")


def test_zero_when_equal(name):
    def run(fns):
        expect_tensor(est(fns, name, torch.zeros(5)), torch.zeros(5), "the estimate at log_ratio = 0", atol=1e-7,
                      rtol=0.0)  # fmt: skip

    return run


def monte_carlo(fns, name: str) -> tuple[float, float, float]:
    """(mean, standard error, exact expectation) of the estimator under p, from MC_SAMPLES draws of p."""
    x = torch.multinomial(P.float(), MC_SAMPLES, replacement=True, generator=generator(4))
    log_ratio = (P.log() - Q.log()).float()[x]
    values = est(fns, name, log_ratio)
    expect_like(values, REFERENCE[name](log_ratio), "the estimates")
    values = values.detach().double()
    lr = P.log() - Q.log()
    exact = {"kl_k1": lr, "kl_k2": 0.5 * lr.square(), "kl_k3": torch.expm1(-lr) + lr}[name]
    return float(values.mean()), float(values.std() / math.sqrt(MC_SAMPLES)), float((P * exact).sum())


KL = float((P * (P.log() - Q.log())).sum())


def test_bias(name):
    def run(fns):
        mean, se, expected = monte_carlo(fns, name)
        if name == "kl_k2":
            target, what = expected, f"0.5 * E[log_ratio^2] = {expected:.4f} (k2 is biased: KL is {KL:.4f})"
        else:
            target, what = KL, f"KL(p || q) = {KL:.4f} ({name[3:]} is unbiased)"
        if not abs(mean - target) <= 4 * se + 1e-6:
            raise Fail(
                f"the mean of {MC_SAMPLES:,} estimates is {mean:.4f} +- {se:.4f}; expected {what}, within 4 standard "
                "errors"
            )

    return run


def test_gradient(name):
    def run(fns):
        x = 1.5 * torch.randn(200, generator=generator(5))
        w = torch.rand(200, generator=generator(6)) + 0.5
        grads = []
        for fn in (fns[name], REFERENCE[name]):
            xg = x.clone().requires_grad_()
            out = call(fn, name, xg)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                raise Fail(
                    "the estimate carries no gradient back to log_ratio: with --kl-in loss the trainer "
                    "differentiates it",
                    hint="stay in torch: no .item(), .numpy() or .detach()",
                )
            expect_like(out, REFERENCE[name](x), "the estimate")
            (out * w).sum().backward()
            grads.append(xg.grad)
        expect_tensor(grads[0], grads[1], f"d {name[3:]} / d log_ratio", **TOL)

    return run


def test_inputs_unchanged(name):
    def run(fns):
        x = torch.randn(20, generator=generator(7))
        before = [x.clone()]
        call(fns[name], name, x)
        expect_inputs_unchanged(before, [x], ["log_ratio"], name)

    return run


# --- integration ---------------------------------------------------------------------------------------------------

FIRST = ("policy_loss", "value_loss", "approx_kl", "entropy", "grad_norm")
MEASURED = "every seed 0-9 of ours reaches at least 90 at 12,288 steps; a random policy scores about 22"


def scenario(description: str, field: str, **kl) -> Scenario:
    cfg = preset("cartpole", total_steps=12_288, seed=0, quiet=True, **kl)
    return Scenario(description, cfg, (field,), first_update=FIRST, meaning=learns(50, MEASURED))


K3_LOSS = scenario("PPO on CartPole, beta 0.1, k3 in the loss, 12,288 steps", "kl_k3", beta=0.1, kl_estimator="k3")
K2_LOSS = scenario("PPO on CartPole, beta 0.1, k2 in the loss, 12,288 steps", "kl_k2", beta=0.1, kl_estimator="k2")
K1_REWARD = scenario("PPO on CartPole, beta 0.05, k1 in the reward, 12,288 steps", "kl_k1", beta=0.05, kl_in="reward")


def build() -> list[Test]:
    tests = []
    hints = {
        "kl_k1": "k1 is the log-ratio itself: unbiased, and negative whenever q(x) > p(x)",
        "kl_k2": "k2 = 0.5 * log_ratio ** 2: never negative, biased, low variance",
        "kl_k3": "k3 = exp(-log_ratio) - 1 + log_ratio (torch.expm1 keeps it accurate near 0): r - 1 - log r with "
        "r = q/p, never negative and unbiased. With r = p/q instead it estimates something else",
    }
    for name in ("kl_k1", "kl_k2", "kl_k3"):
        f, short = (name,), name[3:]
        tests += [
            Test(f"{name} returns one float32 estimate per sample, any shape", f, test_shape(name), 1,
                 case="128 log-ratios, then a (4, 9) batch", hint="elementwise: return a tensor shaped like log_ratio"),
            Test(f"{name} values: a hand case and random log-ratios, against ours", f, test_values(name), 2,
                 case=f"log_ratio {show(HAND)}, then 300 random ones", hint=f"{FORMULA[name]}. {hints[name]}"),
            Test(f"{name} is 0 when p = q (log_ratio 0)", f, test_zero_when_equal(name), 1, kind="property"),
            Test(f"{name} bias by Monte Carlo: the mean over x ~ p", f, test_bias(name), 2, kind="property",
                 case=f"p = {show(P)}, q = {show(Q)} over six outcomes, {MC_SAMPLES:,} draws of p, "
                 f"log_ratio = log p(x) - log q(x)", hint=hints[name]),
            Test(f"{name} gradient with respect to log_ratio, against ours", f, test_gradient(name), 1,
                 kind="property", case="200 random log-ratios",
                 hint=f"as a loss its gradient matters: d{short}/dx is "
                 + {"kl_k1": "1", "kl_k2": "x", "kl_k3": "1 - exp(-x)"}[name]),
            Test(f"{name} leaves its input unchanged", f, test_inputs_unchanged(name), 1, kind="property"),
        ]  # fmt: skip
    tests += [
        Test("signs: k1 keeps the log-ratio's sign, k2 and k3 are never negative", ("kl_k1", "kl_k2", "kl_k3"),
             test_signs, 1, kind="property", case="401 log-ratios from -20 to 20",
             hint="k1 is a log-ratio, negative where q > p; k2 is a square; k3 = e^-x - 1 + x >= 0 since e^y >= 1 + y"),
    ]  # fmt: skip
    for s, field in ((K3_LOSS, "kl_k3"), (K2_LOSS, "kl_k2"), (K1_REWARD, "kl_k1")):
        tests.append(integration_test(f"integration: {s.description}, against ours", (field,), s,
                                      {field: SPECS[field]}, 3))  # fmt: skip
    return tests


ASSIGNMENT = Assignment("hw3", "the KL estimators k1, k2, k3 (kl_k1, kl_k2, kl_k3)", "06", SPECS, build)
