"""Homework 3: the KL estimators ``kl_k1``, ``kl_k2``, ``kl_k3`` (Schulman 2020): values, signs, bias by Monte Carlo
(pairs with lesson 06)."""

from __future__ import annotations

import math

import torch

from ..config import preset
from ..maths import kl_k1, kl_k2, kl_k3
from .cases import case_tests
from .core import Assignment, Fail, FunctionSpec, Test, call, generator, seed_of, show
from .integration import Scenario, integration_test, learns

REFERENCE = {"kl_k1": kl_k1, "kl_k2": kl_k2, "kl_k3": kl_k3}
FORMULA = {
    "kl_k1": "k1 = log_ratio (= log p(x) - log q(x))",
    "kl_k2": "k2 = 0.5 * log_ratio^2",
    "kl_k3": "k3 = (r - 1) - log r with r = q(x) / p(x) = exp(-log_ratio), i.e. exp(-log_ratio) - 1 + log_ratio",
}
HINTS = {
    "kl_k1": "k1 is the log-ratio itself: unbiased, and negative whenever q(x) > p(x)",
    "kl_k2": "k2 = 0.5 * log_ratio ** 2: never negative, biased, low variance",
    "kl_k3": "k3 = exp(-log_ratio) - 1 + log_ratio (torch.expm1 keeps it accurate near 0): r - 1 - log r with "
    "r = q/p, never negative and unbiased. With r = p/q instead it estimates something else",
}
SPECS = {name: FunctionSpec(name, f"{name}(log_ratio) -> per-sample estimate", fn, ("log_ratio",), rtol=1e-4,
                            atol=2e-6, what="the estimate") for name, fn in REFERENCE.items()}  # fmt: skip
HAND = torch.tensor([0.0, math.log(2), -math.log(2), 1.0, -1.0])

# p and q over six outcomes: KL(p || q) and the expectations of the estimators under p are exact sums
P = torch.tensor([0.30, 0.25, 0.20, 0.12, 0.08, 0.05], dtype=torch.float64)
Q = torch.tensor([0.10, 0.15, 0.20, 0.20, 0.15, 0.20], dtype=torch.float64)
MC_SAMPLES = 200_000
KL = float((P * (P.log() - Q.log())).sum())


def draw(seed: int, *shape: int, scale: float = 1.0) -> dict:
    """The arguments of an estimator: ``scale`` * N(0, 1) log-ratios of ``shape``."""
    return {"log_ratio": scale * torch.randn(*shape, generator=generator(seed))}


def estimates(fns, name: str, x: torch.Tensor) -> torch.Tensor:
    """The learner's estimates of ``x``, after their type, shape, dtype and finiteness (not values)."""
    return SPECS[name].shaped(fns, x, what=f"{name} on {len(x):,} log-ratios").detach()


def test_signs(fns):
    """k1 keeps the sign of the log-ratio (an unbiased estimate can be negative); k2 and k3 are never negative."""
    x = torch.linspace(-20.0, 20.0, 401)
    SPECS["kl_k1"].compare(call(fns["kl_k1"], "kl_k1", x.clone()), kl_k1(x), "k1 on log-ratios from -20 to 20")
    for name in ("kl_k2", "kl_k3"):
        got = estimates(fns, name, x)
        if bool((got < 0).any()):
            i = int((got < 0).nonzero()[0])
            raise Fail(f"{name}({x[i]:.4g}) = {got[i]:.4g} is negative ({int((got < 0).sum())} of 401 log-ratios)")


def test_bias(name):
    def run(fns):
        """The mean of the estimates over MC_SAMPLES draws of p, against the exact expectation (KL for k1, k3)."""
        x = torch.multinomial(P.float(), MC_SAMPLES, replacement=True, generator=generator(4))
        values = estimates(fns, name, (P.log() - Q.log()).float()[x]).double()
        mean, se = float(values.mean()), float(values.std() / math.sqrt(MC_SAMPLES))
        lr = P.log() - Q.log()
        if name == "kl_k2":
            target = float((P * 0.5 * lr.square()).sum())
            what = f"0.5 * E[log_ratio^2] = {target:.4f} (k2 is biased: KL is {KL:.4f})"
        else:
            target, what = KL, f"KL(p || q) = {KL:.4f} ({name[3:]} is unbiased)"
        if not abs(mean - target) <= 4 * se + 1e-6:
            raise Fail(f"the mean of {MC_SAMPLES:,} estimates is {mean:.4f} +- {se:.4f}; expected {what}, within 4 "
                       "standard errors")  # fmt: skip

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
    cases = []
    for name in ("kl_k1", "kl_k2", "kl_k3"):
        f, fn, short = (name,), {"function": name}, name[3:]
        cases += [
            {**fn, "name": f"{name} returns one float32 estimate per sample, any shape", "check": "like",
             "calls": [{"args": draw(0, 128)}, {"args": draw(1, 4, 9), "case": "a (4, 9) batch"}],
             "case": "128 log-ratios, then a (4, 9) batch",
             "hint": "elementwise: return a tensor shaped like log_ratio"},
            {**fn, "name": f"{name} values: a hand case and random log-ratios, against ours", "points": 2,
             "calls": [{"args": {"log_ratio": HAND}}, *({"args": draw(seed, 300, scale=1.5), "case": "300 random "
                       f"log-ratios, 1.5 * N(0, 1) (seed {seed_of(seed)})"} for seed in (2, 3))],
             "case": f"log_ratio {show(HAND)}, then 300 random ones", "hint": f"{FORMULA[name]}. {HINTS[name]}"},
            {**fn, "name": f"{name} is 0 when p = q (log_ratio 0)", "kind": "property",
             "args": {"log_ratio": torch.zeros(5)}},
            Test(f"{name} bias by Monte Carlo: the mean over x ~ p", f, test_bias(name), 2, kind="property",
                 case=f"p = {show(P)}, q = {show(Q)} over six outcomes, {MC_SAMPLES:,} draws of p, "
                 f"log_ratio = log p(x) - log q(x)", hint=HINTS[name]),
            {**fn, "name": f"{name} gradient with respect to log_ratio, against ours", "kind": "property",
             "check": "gradient", "wrt": "log_ratio", "args": draw(5, 200, scale=1.5),
             "weights": torch.rand(200, generator=generator(6)) + 0.5, "case": "200 random log-ratios",
             "hint": f"as a loss its gradient matters: d{short}/dx is " + {"kl_k1": "1", "kl_k2": "x",
                                                                           "kl_k3": "1 - exp(-x)"}[name]},
            {**fn, "name": f"{name} leaves its input unchanged", "kind": "property", "check": "unchanged",
             "args": draw(7, 20)},
        ]  # fmt: skip
    cases.append(Test("signs: k1 keeps the log-ratio's sign, k2 and k3 are never negative", ("kl_k1", "kl_k2", "kl_k3"),
                      test_signs, 1, kind="property", case="401 log-ratios from -20 to 20", hint="k1 is a log-ratio, "
                      "negative where q > p; k2 is a square; k3 = e^-x - 1 + x >= 0 since e^y >= 1 + y"))  # fmt: skip
    for s, field in ((K3_LOSS, "kl_k3"), (K2_LOSS, "kl_k2"), (K1_REWARD, "kl_k1")):
        cases.append(integration_test(f"integration: {s.description}, against ours", (field,), s, SPECS, 3))
    return case_tests("hw3", SPECS, cases, "hw3")


ASSIGNMENT = Assignment("hw3", "the KL estimators k1, k2, k3 (kl_k1, kl_k2, kl_k3)", "06", SPECS, build)
