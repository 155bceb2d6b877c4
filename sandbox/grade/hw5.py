"""Homework 5: consistent dropout, through the dropout-layer seam: drawing a mask (``dropout_mask``), applying it
(``apply_dropout``), and replaying a stored one (``layer_mask``), so that a consistent run has an exact first-minibatch
ratio and a naive one does not (pairs with lesson 03)."""

from __future__ import annotations

import math

import torch

from ..algos.lang_rollout import sequence_logp
from ..config import preset
from ..dropout import apply_dropout as reference_apply
from ..dropout import dropout_mask as reference_mask
from ..dropout import layer_mask as reference_layer_mask
from ..maths import Maths
from ..models.gpt import ModelConfig, TinyGPT, sample
from ..models.mlp import DropoutMLP
from .cases import case_tests
from .core import Assignment, Fail, FunctionSpec, Test, call, expect_tensor, generator, manual_seed
from .integration import Recorder, Scenario, integration_test

FIELDS = ("dropout_mask", "apply_dropout", "layer_mask")
MASK = FunctionSpec("dropout_mask", "dropout_mask(shape, p) -> mask of 0 and 1/(1-p)", reference_mask, ("shape", "p"),
                    deterministic=False)  # fmt: skip
APPLY = FunctionSpec("apply_dropout", "apply_dropout(x, mask) -> x * mask", reference_apply, ("x", "mask"), rtol=1e-6,
                     atol=1e-7, what="the dropped-out activations")  # fmt: skip
CHOICE = FunctionSpec("layer_mask", "layer_mask(stored, fresh, shape, p, draw) -> the mask one dropout layer uses, or "
                      "None", reference_layer_mask, ("stored", "fresh", "shape", "p", "draw"), exact=True,
                      what="the mask chosen")  # fmt: skip
SPECS = {"dropout_mask": MASK, "apply_dropout": APPLY, "layer_mask": CHOICE}


def draw_mask(fns, shape, p):
    return call(fns["dropout_mask"], "dropout_mask", shape, p)


def check_mask(m, shape: tuple[int, ...], p: float, what: str = "the mask") -> None:
    """A float32 tensor of ``shape`` whose entries are 0 or 1 / (1 - p)."""
    MASK.compare(m, torch.ones(shape), what, like=True)
    kept = 1.0 / (1.0 - p)
    values = torch.unique(m.detach())
    wrong = values[(values != 0) & ~torch.isclose(values, torch.tensor(kept), rtol=1e-6, atol=0.0)]
    if len(wrong):
        found = ", ".join(f"{v:.4g}" for v in values[:6].tolist())
        raise Fail(f"{what} (p = {p}) holds the values {found}; only 0 and 1 / (1 - p) = {kept:.4g} belong in it")


# --- dropout_mask --------------------------------------------------------------------------------------------------


def test_mask_shape(fns):
    manual_seed(0)
    for shape in ((3, 5), (2, 4, 6), (7,)):
        check_mask(draw_mask(fns, shape, 0.1), shape, 0.1, f"the mask of shape {shape}")


def test_mask_p_zero(fns):
    m = draw_mask(fns, (4, 6), 0.0)
    expect_tensor(m, torch.ones(4, 6), "the mask at p = 0", exact=True)


def test_mask_values(fns):
    manual_seed(1)
    for p in (0.1, 0.25, 0.5):
        check_mask(draw_mask(fns, (50, 40), p), (50, 40), p)


def test_mask_rate(fns):
    manual_seed(2)
    n = 200_000
    for p in (0.1, 0.3):
        m = draw_mask(fns, (n // 100, 100), p)
        check_mask(m, (n // 100, 100), p)
        zeros = float((m == 0).float().mean())
        se = math.sqrt(p * (1 - p) / n)
        if abs(zeros - p) > 5 * se:
            raise Fail(f"at p = {p} a fraction {zeros:.4f} of {n:,} entries is 0; expected {p} (within {5 * se:.4f})")
        mean = float(m.mean())
        se_mean = math.sqrt(p / (1 - p) / n)
        if abs(mean - 1.0) > 5 * se_mean:
            raise Fail(f"at p = {p} the mask's mean is {mean:.4f}; expected 1 (within {5 * se_mean:.4f})")


def test_mask_independent(fns):
    manual_seed(3)
    m = draw_mask(fns, (1000, 64), 0.5)
    check_mask(m, (1000, 64), 0.5)
    rows, cols = len(torch.unique(m, dim=0)), len(torch.unique(m, dim=1))
    if rows < 990 or cols < 60:
        raise Fail(
            f"of 1000 rows (samples) only {rows} differ, of 64 columns (units) {cols}: the entries are not drawn "
            "independently",
            hint="draw one random number per entry of the full shape, not one row to broadcast",
        )


def test_mask_seeded(fns):
    manual_seed(4)
    a = draw_mask(fns, (20, 30), 0.3)
    manual_seed(4)
    b = draw_mask(fns, (20, 30), 0.3)
    c = draw_mask(fns, (20, 30), 0.3)
    check_mask(a, (20, 30), 0.3)
    if not torch.equal(a, b):
        raise Fail("two masks drawn after torch.manual_seed(4) differ: the mask does not come from torch's generator")
    if torch.equal(b, c):
        raise Fail("two successive masks are identical: the generator is reseeded, or the mask is not random")


# --- apply_dropout -------------------------------------------------------------------------------------------------


def dropped(g: torch.Generator, x_shape: tuple, mask_shape: tuple, p: float, x=torch.randn) -> dict:
    """The arguments of ``apply_dropout``: activations of ``x_shape`` and an inverted-dropout mask of ``mask_shape``."""
    x = x(x_shape, generator=g)
    return {"x": x, "mask": (torch.rand(mask_shape, generator=g) > p).float() / (1 - p)}


def test_apply_no_randomness(fns):
    args = dropped(generator(7), (5, 9), (5, 9), 0.4)
    state = torch.get_rng_state()
    got = call(fns["apply_dropout"], "apply_dropout", *[a.clone() for a in args.values()])
    if not torch.equal(state, torch.get_rng_state()):
        raise Fail("apply_dropout drew random numbers: it must use the mask it is given, and only that",
                   hint="a mask drawn here would be a new one at every forward pass: consistent dropout replays "
                   "the stored mask through this function")  # fmt: skip
    APPLY.compare(got, reference_apply(*args.values()))


# --- layer_mask ----------------------------------------------------------------------------------------------------


STAND_IN = 7.0
"""What the grader's ``draw`` fills its masks with: a value no real mask holds (a real one holds 0 and 1 / (1 - p)),
so a mask that came from ``draw`` is recognisable in a result."""
ABOUT_STAND_IN = (
    f"(the grader's draw returns a mask filled with {STAND_IN:g}, a stand-in no real mask holds, so that a mask taken "
    "from draw can be recognised)"
)


class CountingDraw:
    """A ``draw(shape, p)`` that records its calls and returns a recognisable mask (filled with :data:`STAND_IN`)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, shape, p):
        self.calls.append((tuple(shape), p))
        return torch.full(tuple(shape), STAND_IN)


def choose(fns, stored, fresh, shape, p, draw):
    return call(fns["layer_mask"], "layer_mask", stored, fresh, shape, p, draw)


def _from_draw(got) -> bool:
    return isinstance(got, torch.Tensor) and got.numel() > 0 and bool((got == STAND_IN).all())


def test_choice_replays(fns):
    stored = (torch.rand(4, 6, generator=generator(10)) > 0.3).float() / 0.7
    for fresh in (True, False):
        draw = CountingDraw()
        got = choose(fns, stored.clone(), fresh, (4, 6), 0.3, draw)
        if _from_draw(got):
            raise Fail(
                f"with a stored mask and fresh={fresh}, the mask used is the one draw returned {ABOUT_STAND_IN}: "
                "the stored mask was not replayed"
            )
        CHOICE.compare(got, stored, f"with a stored mask and fresh={fresh}: the mask used")
        if draw.calls:
            raise Fail(
                f"with a stored mask (fresh={fresh}), draw was called {len(draw.calls)} time(s): the stored mask is "
                "replayed and nothing new is drawn (every draw consumes the random stream)"
            )


def test_choice_fresh(fns):
    draw = CountingDraw()
    got = choose(fns, None, True, (3, 5), 0.2, draw)
    CHOICE.compare(got, torch.full((3, 5), STAND_IN),
                    f"with no stored mask and fresh=True, the mask used should be draw's {ABOUT_STAND_IN}")  # fmt: skip
    if draw.calls != [((3, 5), 0.2)]:
        raise Fail(f"draw should be called once, as draw((3, 5), 0.2); it was called {draw.calls}")


def test_choice_eval(fns):
    draw = CountingDraw()
    got = choose(fns, None, False, (3, 5), 0.2, draw)
    CHOICE.compare(got, None, "with no stored mask and fresh=False (eval mode, or p = 0)")
    if draw.calls:
        raise Fail("in eval mode (fresh=False) nothing is drawn; draw was called")


# --- the seam, end to end: the real networks with the learner's three functions ------------------------------------


def maths_of(fns) -> Maths:
    return Maths(**{name: fns[name] for name in FIELDS})


def test_mlp_replay(fns):
    manual_seed(11)
    ours = DropoutMLP(4, 3, (16, 16), p=0.3)
    yours = DropoutMLP(4, 3, (16, 16), p=0.3, maths=maths_of(fns))
    yours.load_state_dict(ours.state_dict())
    x = torch.randn(8, 4, generator=generator(12))
    masks = call(yours.sample_mask, "dropout_mask (through DropoutMLP.sample_mask)", 8)
    check_mask(masks, (8, yours.mask_width), 0.3, "the MLP's masks")
    with torch.no_grad():
        rollout = call(yours, "the MLP's forward with stored masks", x, masks)
        update = call(yours, "the MLP's forward with stored masks", x, masks)
        expect_tensor(update, rollout, "the second forward with the same stored masks (the ratio must be 1)",
                      exact=True)  # fmt: skip
        expect_tensor(rollout, ours(x, masks), "the forward with stored masks, against our functions", rtol=1e-5,
                      atol=1e-6)  # fmt: skip
        fresh = call(yours, "the MLP's forward in train mode", x)
        if torch.equal(fresh, rollout):
            raise Fail("a train-mode forward without stored masks gave the stored masks' output: fresh masks must be "
                       "drawn when none is given")  # fmt: skip
        yours.eval(), ours.eval()
        expect_tensor(call(yours, "the MLP's forward in eval mode", x), ours(x), "the eval-mode forward (no dropout)",
                      rtol=1e-5, atol=1e-6)  # fmt: skip


def test_gpt_replay(fns):
    manual_seed(13)
    cfg = ModelConfig(vocab_size=12, max_len=10, d_model=16, n_heads=2, n_layers=2, dropout=0.2)
    model = TinyGPT(cfg, maths=maths_of(fns))
    model.train()
    prompts = torch.randint(4, 12, (6, 3), generator=generator(14))
    masks = call(model.sample_masks, "dropout_mask (through TinyGPT.sample_masks)", 6, 10)
    check_mask(masks.emb, (6, 10, 16), 0.2, "the embedding dropout masks")
    completions, logp_sampler = call(sample, "sampling with stored masks (KV cache)", model, prompts, 7, 1.0, masks)
    tokens = torch.cat([prompts, completions], dim=1)
    with torch.no_grad():
        logp_update = call(sequence_logp, "the whole-sequence forward with stored masks", model, tokens, 3, 1.0,
                           masks)[0]  # fmt: skip
    valid = logp_sampler != 0
    gap = float((logp_update - logp_sampler)[valid].abs().max())
    if not gap < 1e-5:
        raise Fail(
            f"the sampler (one position at a time) and the update (all positions at once) with the same stored "
            f"masks give log-probs up to {gap:.3g} apart: the first ratio of a consistent run would not be 1",
            hint="the stored masks must be used as given, in every dropout place (embedding, attention, residual)",
        )
    with torch.no_grad():
        naive = sequence_logp(model, tokens, 3, 1.0, None)[0]
    if torch.equal(naive[valid], logp_sampler[valid]):
        raise Fail("without stored masks, the train-mode forward gave the sampler's exact log-probs: fresh masks "
                   "must be drawn when none is given")  # fmt: skip


# --- integration ---------------------------------------------------------------------------------------------------


def check_calls(recorders: dict[str, Recorder]) -> None:
    """Every mask drawn in the run is a mask; every stored mask was replayed; every application is x * mask."""
    for i, ((shape, p), out) in enumerate(recorders["dropout_mask"].calls, start=1):
        check_mask(out, tuple(shape), p, f"call {i} of `dropout_mask` in the run: the mask")
    for i, ((stored, fresh, shape, p, _), out) in enumerate(recorders["layer_mask"].calls, start=1):
        if stored is not None:
            CHOICE.compare(out, stored, f"call {i} of `layer_mask` in the run, with a stored mask: the mask used")
        elif not fresh:
            CHOICE.compare(out, None, f"call {i} of `layer_mask` in the run, in eval mode")
    for i, ((x, mask), out) in enumerate(recorders["apply_dropout"].calls, start=1):
        APPLY.compare(out, reference_apply(x, mask), f"call {i} of `apply_dropout` in the run")


def exact_ratio(yours, ours) -> None:
    worst = float(yours.first_ratio_dev.max())
    if not worst <= 1e-6:
        at = int(yours.first_ratio_dev.to_numpy().argmax()) + 1
        raise Fail(
            f"first_ratio_dev reaches {worst:.3g} (update {at}); consistent dropout's first-minibatch ratio is exactly "
            f"1 (ours: at most {float(ours.first_ratio_dev.max()):.1g})",
            hint="the update must replay the masks stored at rollout: layer_mask returns the stored mask whenever "
            "there is one, whatever the mode",
        )


def noisy_ratio(yours, ours) -> None:
    mean, reference = float(yours.first_ratio_dev.mean()), float(ours.first_ratio_dev.mean())
    if not float(yours.first_ratio_dev.min()) > 0:
        raise Fail("first_ratio_dev is 0 at some update of a naive run: the update reused the rollout's masks")
    if not 0.5 * reference <= mean <= 2 * reference:
        raise Fail(
            f"the mean first_ratio_dev of the naive run is {mean:.4f}, ours {reference:.4f} (seeds 0-7 of ours: "
            "0.020 to 0.029 at 2,048 steps); the grader allows half to twice ours: the masks' rate or scale is off"
        )


def dropout_scenario(mode: str, meaning) -> Scenario:
    return Scenario(
        f"PPO on CartPole, {mode} dropout p 0.2 in the policy and the value network, 2,048 steps",
        preset("cartpole", total_steps=2048, dropout=0.2, dropout_mode=mode, dropout_value=True, seed=0, quiet=True),
        FIELDS,
        meaning=meaning,
        check_calls=check_calls,
    )


CONSISTENT = dropout_scenario("consistent", exact_ratio)
NAIVE = dropout_scenario("naive", noisy_ratio)


RUN_LIMIT = 120
"""Seconds of a training run: a dropout layer calls the submission's functions at every forward pass, each call a
round trip to its process (about 10,000 in a run of 2,048 steps, 8 updates: enough for the first ratio, which is
what the runs check), where the other assignments' runs make a few hundred."""


def build() -> list[Test]:
    m, c, ap = ("dropout_mask",), ("layer_mask",), {"function": "apply_dropout"}
    hint_mask = (
        "inverted dropout: each entry is kept with probability 1 - p, and the kept ones are scaled by 1 / (1 - p) so "
        "that the layer's output keeps its mean"
    )
    g = generator(6)
    return case_tests("hw5", SPECS, [
        Test("dropout_mask returns a float32 tensor of the shape asked", m, test_mask_shape, 1,
             case="shapes (3, 5), (2, 4, 6), (7,), p 0.1",
             hint="the mask has exactly the shape asked for: one entry per activation (shape is a tuple)"),
        Test("dropout_mask at p = 0 is all ones", m, test_mask_p_zero, 1, case="shape (4, 6), p 0",
             hint="nothing is dropped and the scale 1 / (1 - 0) is 1"),
        Test("dropout_mask entries are 0 or 1 / (1 - p)", m, test_mask_values, 2,
             case="shape (50, 40), p 0.1, 0.25, 0.5", hint=hint_mask),
        Test("dropout_mask drops a fraction p, and keeps the mean at 1", m, test_mask_rate, 2, kind="property",
             case="200,000 entries, p 0.1 and 0.3", hint=hint_mask),
        Test("dropout_mask draws every entry independently", m, test_mask_independent, 1, kind="property",
             case="shape (1000, 64), p 0.5", hint="one random number per entry of the full shape"),
        Test("dropout_mask draws from torch's generator (same seed, same mask)", m, test_mask_seeded, 1,
             kind="property", case="torch.manual_seed(4), then two masks",
             hint="every random number must come from torch's seeded generator (numpy's and Python's are not "
             "reset by torch.manual_seed): the sandbox's runs are reproducible because of it"),
        {**ap, "name": "apply_dropout returns x * mask", "args": dropped(generator(5), (6, 10), (6, 10), 0.3),
         "case": "x (6, 10), mask (6, 10)",
         "hint": "the mask already carries the 1 / (1 - p) scale: applying it is all that is left"},
        {**ap, "name": "apply_dropout broadcasts as the networks need", "calls": [
            {"args": dropped(g, (4, 1, 8), (4, 3, 8), 0.5),
             "case": "multi-sample dropout: x (B, 1, W), masks (B, K, W)"},
            {"args": dropped(g, (2, 2, 5, 5), (2, 2, 5, 5), 0.2, torch.rand),
             "case": "attention: probabilities (B, H, T, T), mask (B, H, T, T)"},
            {"args": dropped(g, (5, 7), (1, 7), 0.5), "case": "one mask row for the batch: x (B, W), mask (1, W)"}],
         "hint": "the mask may be one row for the batch or K copies: broadcasting lines them up, reshaping "
         "breaks them"},
        Test("apply_dropout uses the given mask and draws nothing", ("apply_dropout",), test_apply_no_randomness, 2,
             kind="property", case="x (5, 9), mask (5, 9); torch's random state compared before and after"),
        {**ap, "name": "apply_dropout's gradient with respect to x is the mask", "kind": "property",
         "check": "gradient", "wrt": "x", "args": dropped(generator(8), (4, 6), (4, 6), 0.5)},
        {**ap, "name": "apply_dropout leaves its inputs unchanged", "kind": "property", "check": "unchanged",
         "args": dropped(generator(9), (3, 4), (3, 4), 0.5)},
        Test("layer_mask replays a stored mask, in train mode too, without drawing", c, test_choice_replays, 3,
             case="a stored (4, 6) mask, fresh True and False, p 0.3",
             hint="a stored mask is the network the agent acted with: replaying it, in train mode too, is what "
             "lets the update see that same network (a first ratio of exactly 1); a mask drawn here instead is naive "
             "dropout"),
        Test("layer_mask draws a fresh mask when none is stored in train mode", c, test_choice_fresh, 1,
             case="stored None, fresh True, shape (3, 5), p 0.2",
             hint="with nothing stored and dropout on, the layer needs a new mask, and draw is how it gets one "
             "(every mask then comes from the seam's dropout_mask)"),
        Test("layer_mask uses no mask in eval mode", c, test_choice_eval, 1, case="stored None, fresh False",
             hint="in eval mode there is no dropout at all: no mask, so the layer leaves the activations as they are"),
        Test("the MLP with your three functions: stored masks replay exactly", FIELDS, test_mlp_replay, 2,
             kind="property", case="DropoutMLP(4 -> 16 -> 16 -> 3, p 0.3), 8 inputs, masks from its sample_mask",
             hint="same stored masks, same output, to the last bit; fresh masks in train mode; none in eval mode"),
        Test("the tiny GPT with your three functions: sampler and update agree (exact ratio)", FIELDS,
             test_gpt_replay, 2, kind="property",
             case="TinyGPT (2 layers, d_model 16, p 0.2), 6 prompts, 7 sampled tokens with stored SeqMasks",
             hint="the KV-cached sampler and the whole-sequence update index the same stored masks"),
        integration_test(f"integration: {CONSISTENT.description}: the first ratio is exact", FIELDS, CONSISTENT,
                         SPECS, 4, RUN_LIMIT),
        integration_test(f"integration: {NAIVE.description}: the first ratio is noisy, as ours", FIELDS, NAIVE,
                         SPECS, 2, RUN_LIMIT),
    ], "hw5")  # fmt: skip


ASSIGNMENT = Assignment("hw5", "consistent dropout (dropout_mask, apply_dropout, layer_mask)", "03", SPECS, build)
