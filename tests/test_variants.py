"""The dropout variants: sample dropout, schedules, multi-sample dropout, gradient-noise metrics."""

import csv

import pytest
import torch

import sandbox
from sandbox.algos.diagnostics import gradient_noise
from sandbox.algos.objective import keep_aggregate_average
from sandbox.config import validate
from sandbox.maths import dppo_scores, dropout_schedule, ppo_loss, sample_dropout_mask
from sandbox.metrics import TIMING_COLUMNS

GRAD = ("grad_gdv", "grad_gde", "grad_snr")


def cartpole(**kw):
    return sandbox.preset(
        "cartpole",
        **{"total_steps": 768, "update_epochs": 4, "quiet": True, "dropout": 0.2, "dropout_mode": "naive", **kw},
    )


def reverse(**kw):
    return sandbox.Config(
        **{
            "algo": "grpo",
            "env": "lang:reverse",
            "prompts_per_update": 8,
            "group_size": 4,
            "total_steps": 600,
            "quiet": True,
            "dropout_mode": "naive",
            **kw,
        }
    )


class _Metrics:
    """metrics.csv without the timing columns, compared with NaN == NaN (pandas' DataFrame.equals)."""

    def __init__(self, result, drop=()):
        self.frame = result.metrics.drop(columns=list(TIMING_COLUMNS) + list(drop))

    def __eq__(self, other):
        return self.frame.equals(other.frame)


_metrics = _Metrics


# --- sample dropout ----------------------------------------------------------------------------------------------


def test_variance_identity_of_dppo_scores():
    """V = (N - 1) L^2 - C / N, with C the sum of D-PPO's scores (README, "Dropout variants")."""
    for seed in range(5):
        x = torch.randn(50, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3 + 0.5
        n, mean = len(x), x.mean()
        variance = (x**2).mean() - mean**2
        c = dppo_scores(x).sum()
        assert torch.isclose(c, x.sum() ** 2 - (x**2).sum())
        assert torch.isclose(variance, (n - 1) * mean**2 - c / n)


@pytest.mark.parametrize(
    "mode, kw", [("dppo", dict(rate=0.0)), ("outlier", dict(rate=0.0)), ("sdpo", dict(delta=1e9)), ("none", {})]
)
def test_all_kept_gives_the_plain_loss_to_the_last_bit(mode, kw):
    torch.manual_seed(0)
    ratio, adv = torch.exp(torch.randn(300) * 0.1), torch.randn(300)
    assert sample_dropout_mask(ratio * adv, ratio, adv, mode, **kw).all()
    cfg = validate(
        sandbox.Config(
            sample_dropout=mode, sample_drop_rate=kw.get("rate", 0.1), sample_drop_delta=kw.get("delta", 0.25)
        )
    )
    loss, keep = keep_aggregate_average(sandbox.Maths(), cfg, ppo_loss(ratio, adv, 0.2), ratio, adv)
    assert keep.all() and torch.equal(loss, ppo_loss(ratio, adv, 0.2).mean())
    mask = torch.ones(30, 10, dtype=torch.bool)
    mask[:, 7:] = False
    r, a = ratio.view(30, 10), adv.view(30, 10)
    seq_loss, _ = keep_aggregate_average(sandbox.Maths(), cfg, ppo_loss(r, a, 0.2), r, a, mask, 10)
    plain = sandbox.Maths().aggregate_loss(ppo_loss(ratio.view(30, 10), adv.view(30, 10), 0.2), mask, "grpo", 10)
    assert torch.equal(seq_loss, plain)


@pytest.mark.parametrize("mode", ["dppo", "sdpo", "outlier"])
def test_all_kept_runs_equal_plain_runs(mode):
    keep_all = dict(sample_drop_rate=0.0) if mode != "sdpo" else dict(sample_drop_delta=1e9)
    plain = sandbox.train(cartpole())
    kept = sandbox.train(cartpole(sample_dropout=mode, **keep_all))
    assert _metrics(plain) == _metrics(kept)


def test_sdpo_drops_nothing_in_the_first_minibatch():
    calls = []

    def spy(x, ratio, adv, mode, rate, delta, by_sign):
        keep = sample_dropout_mask(x, ratio, adv, mode, rate, delta, by_sign)
        calls.append(keep)
        return keep

    m = sandbox.train(
        cartpole(dropout_mode="consistent", sample_dropout="sdpo", sample_drop_delta=0.01, update_epochs=6),
        maths=sandbox.Maths(sample_dropout_mask=spy),
    ).metrics
    per_update = len(calls) // len(m)
    assert all(calls[i * per_update].all() for i in range(len(m)))  # the first minibatch of every update
    assert m.dropped_frac.max() > 0  # later minibatches do drop


def test_outlier_lowers_the_surrogate_variance_on_synthetic_data():
    torch.manual_seed(1)
    ratio = torch.exp(torch.randn(1000) * 0.3)
    adv = torch.randn(1000) + torch.distributions.StudentT(2.0).sample((1000,))  # heavy tails
    x = ratio * adv
    keep = sample_dropout_mask(x, ratio, adv, "outlier", rate=0.1)
    assert keep.sum() == 900
    assert x[keep].var(unbiased=False) < 0.5 * x.var(unbiased=False)


def test_sdpo_keeps_small_ratio_deviations_and_falls_back_to_all():
    ratio = torch.tensor([1.0, 1.1, 1.3, 0.6])
    adv = torch.ones(4)
    assert sample_dropout_mask(ratio * adv, ratio, adv, "sdpo", delta=0.25).tolist() == [True, True, False, False]
    far = torch.tensor([2.0, 3.0])
    assert sample_dropout_mask(far, far, torch.ones(2), "sdpo", delta=0.25).all()  # none would be kept: keep all


def test_by_sign_drops_the_rate_within_each_sign():
    torch.manual_seed(2)
    adv = torch.cat([torch.ones(40), -torch.ones(60)]) * torch.rand(100)
    ratio = torch.exp(torch.randn(100) * 0.2)
    keep = sample_dropout_mask(ratio * adv, ratio, adv, "dppo", rate=0.1, by_sign=True)
    assert (~keep[:40]).sum() == 4 and (~keep[40:]).sum() == 6


def test_sample_dropout_columns():
    m = sandbox.train(cartpole(sample_dropout="outlier", sample_drop_rate=0.2)).metrics
    assert m.dropped_frac.between(0.15, 0.25).all()
    assert (m.surrogate_var_kept <= m.surrogate_var).all()
    assert m.dropped_frac_pos.notna().all() and m.dropped_frac_neg.notna().all()
    plain = sandbox.train(cartpole()).metrics
    assert (plain.dropped_frac == 0).all() and (plain.surrogate_var_kept == plain.surrogate_var).all()


# --- schedules ---------------------------------------------------------------------------------------------------


def test_schedule_values_by_hand():
    p = 0.3
    assert [dropout_schedule(p, u, "constant", 0) for u in (1, 5, 100)] == [0.3, 0.3, 0.3]
    assert [dropout_schedule(p, u, "early", 3) for u in (1, 3, 4, 10)] == [0.3, 0.3, 0.0, 0.0]
    assert [dropout_schedule(p, u, "early-linear", 4) for u in (1, 2, 3, 4, 5, 6)] == pytest.approx(
        [0.3, 0.225, 0.15, 0.075, 0.0, 0.0]
    )
    assert [dropout_schedule(p, u, "late", 2) for u in (1, 2, 3, 9)] == [0.0, 0.0, 0.3, 0.3]


@pytest.mark.parametrize("make", [cartpole, reverse])
def test_dropout_p_follows_the_schedule(make):
    m = sandbox.train(
        make(dropout=0.2, dropout_schedule="early-linear", dropout_cutoff=2, total_steps=make().total_steps * 2)
    ).metrics
    assert m.dropout_p.tolist()[:4] == pytest.approx([0.2, 0.1, 0.0, 0.0])


def test_consistent_dropout_stays_exact_through_a_schedule():
    m = sandbox.train(cartpole(dropout_mode="consistent", dropout_schedule="late", dropout_cutoff=1)).metrics
    assert m.dropout_p.tolist()[:2] == [0.0, 0.2] and (m.first_ratio_dev < 1e-6).all()


# --- multi-sample dropout ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [cartpole, reverse])
@pytest.mark.parametrize("average", ["loss", "logits"])
def test_one_sample_is_ordinary_dropout(make, average):
    assert _metrics(sandbox.train(make())) == _metrics(
        sandbox.train(make(dropout_samples=1, multi_sample_average=average))
    )


@pytest.mark.parametrize("make", [cartpole, reverse])
def test_multi_sample_dropout(make):
    """Loss averaging: every copy gets its own ratio against the same logp_old, so even consistent dropout is no
    longer exact; logits averaging is one policy, exact in consistent mode."""
    loss = sandbox.train(make(dropout_mode="consistent", dropout_samples=4)).metrics
    logits = sandbox.train(make(dropout_mode="consistent", dropout_samples=4, multi_sample_average="logits")).metrics
    assert loss.first_ratio_dev.iloc[-1] > 1e-4 and (logits.first_ratio_dev < 1e-6).all()


# --- gradient noise ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [cartpole, reverse])
def test_gradient_metrics_do_not_change_training(tmp_path, make):
    sandbox.train(make(out=str(tmp_path / "off")))
    sandbox.train(make(out=str(tmp_path / "on"), grad_diag_every=1))

    def rows(name):
        with open(tmp_path / name / "metrics.csv") as f:
            return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS + GRAD} for r in csv.DictReader(f)]

    assert rows("off") == rows("on")
    with open(tmp_path / "on" / "metrics.csv") as f:
        assert all(r["grad_gdv"] != "" for r in csv.DictReader(f))


def test_gradient_noise_on_known_gradients():
    w = torch.zeros(3, requires_grad=True)
    same = gradient_noise(lambda idx: (w * torch.tensor([1.0, 2.0, 3.0])).sum(), 8, 4, [w])
    assert same["grad_gdv"] == pytest.approx(0.0, abs=1e-6) and same["grad_gde"] == pytest.approx(0.0, abs=1e-6)
    assert same["grad_snr"] == float("inf")
    directions = torch.eye(3)
    opposite = gradient_noise(lambda idx: (w * directions[idx[0] % 3]).sum() * (1 if idx[0] % 2 else -1), 4, 4, [w])
    assert opposite["grad_gdv"] > 0.5


def test_grad_diag_every_n_updates():
    m = sandbox.train(cartpole(grad_diag_every=2, total_steps=1024)).metrics
    assert m.grad_gdv.notna().tolist() == [False, True, False, True]
    assert (m.grad_gdv.dropna() >= 0).all() and (m.grad_snr.dropna() > 0).all()


# --- bad values ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, flag, allowed",
    [
        (["--sample-dropout", "random"], "--sample-dropout", "dppo"),
        (["--sample-drop-rate", "1.0"], "--sample-drop-rate", "[0, 1)"),
        (["--sample-drop-rate", "-0.1"], "--sample-drop-rate", "[0, 1)"),
        (["--sample-drop-delta", "0"], "--sample-drop-delta", "(0, inf)"),
        (["--dropout-samples", "0"], "--dropout-samples", ">= 1"),
        (["--multi-sample-average", "median"], "--multi-sample-average", "logits"),
        (["--dropout-schedule", "middle"], "--dropout-schedule", "early-linear"),
        (["--dropout-schedule", "early"], "--dropout-cutoff", "cutoff > 0"),
        (["--dropout-cutoff", "-1"], "--dropout-cutoff", ">= 0"),
        (["--grad-diag-every", "-2"], "--grad-diag-every", ">= 0"),
    ],
)
def test_bad_values_one_line(capsys, tmp_path, args, flag, allowed):
    from sandbox.cli import main

    code = main(["train", "--quiet", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err and allowed in err, err


FLAGS = [
    (["--sample-dropout", "dppo", "--sample-drop-rate", "0.2"], "dropped_frac"),
    (["--sample-dropout", "sdpo", "--sample-drop-delta", "0.1"], "dropped_frac"),
    (["--sample-dropout", "outlier", "--sample-drop-by-sign"], "dropped_frac_neg"),
    (["--dropout-schedule", "early", "--dropout-cutoff", "1"], "dropout_p"),
    (["--dropout-schedule", "late", "--dropout-cutoff", "1"], "dropout_p"),
    (["--dropout-samples", "3", "--multi-sample-average", "logits"], "first_ratio_dev"),
    (["--dropout-samples", "3"], "first_ratio_dev"),
    (["--grad-diag-every", "1"], "grad_snr"),
]
TARGETS = {
    "ppo-cartpole": [
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
        "--preset",
        "cartpole",
        "--total-steps",
        "512",
        "--dropout",
        "0.2",
    ],
    "grpo-reverse": [
        "--algo",
        "grpo",
        "--env",
        "lang:reverse",
        "--prompts-per-update",
        "8",
        "--group-size",
        "4",
        "--total-steps",
        "400",
    ],
}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("flags, column", FLAGS)
def test_every_flag_on_both_algorithms_from_the_command_line(capsys, tmp_path, target, flags, column):
    from sandbox.cli import main

    assert main(["train", *TARGETS[target], *flags, "--quiet", "--out", str(tmp_path / "r")]) == 0
    with open(tmp_path / "r" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r[column] != "" for r in rows)
