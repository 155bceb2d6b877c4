"""GRPO-lambda (Dai et al. 2025): the length-penalised rewards, the switch between them and the 0/1 reward, the
trainer's columns, and one-line errors for bad values."""

import math

import pytest
import torch

import sandbox
from sandbox.maths import Maths, group_advantages, grpo_lambda_switch, length_penalty_rewards


def test_efficiency_reward_on_a_hand_case():
    """Correct lengths 3 and 5 (mean 4, population std 1: z = -1, +1), a wrong one: 1 - a*sigmoid(z), and 0."""
    correct = torch.tensor([[True, True, False], [True, False, False]])
    lengths = torch.tensor([[3, 5, 4], [6, 2, 2]])
    r = length_penalty_rewards(correct, lengths, 0.6, "efficiency")
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert r[0].tolist() == pytest.approx([1 - 0.6 * sig(-1), 1 - 0.6 * sig(1), 0.0])
    assert r[1].tolist() == pytest.approx([0.7, 0.0, 0.0])  # a lone correct completion: z = 0, 1 - alpha / 2
    assert r.dtype == torch.float32 and r.shape == correct.shape


def test_kimi_reward_on_a_hand_case():
    """lam = 0.5 - (L - min) / (max - min) over the whole group; wrong answers keep only min(0, lam)."""
    correct = torch.tensor([[True, False, False], [True, False, True]])
    lengths = torch.tensor([[2, 4, 6], [3, 3, 3]])
    r = length_penalty_rewards(correct, lengths, 1.0, "kimi")
    assert r[0].tolist() == pytest.approx([1.5, 0.0, -0.5])
    assert r[1].tolist() == pytest.approx([1.0, 0.0, 1.0])  # one length for all: no length term
    # alpha > 2: a short wrong answer outscores a long right one (the collapse the README measures)
    short_wrong = length_penalty_rewards(torch.tensor([[False, True]]), torch.tensor([[1, 6]]), 2.5, "kimi")
    assert short_wrong[0, 0] > short_wrong[0, 1]


def test_efficiency_penalty_cannot_act_when_every_right_answer_has_one_length():
    """The trap in its docstring: the toy tasks have one right answer per prompt, so every correct completion of a
    group has the same length, z = 0, and the group's std normalisation undoes the rescaling."""
    g = torch.Generator().manual_seed(0)
    correct = torch.rand(16, 8, generator=g) < 0.5
    lengths = torch.where(correct, torch.full((16, 8), 5), torch.randint(1, 8, (16, 8), generator=g))
    shaped = length_penalty_rewards(correct, lengths, 0.6, "efficiency")
    plain = group_advantages(correct.float())
    assert torch.allclose(group_advantages(shaped), plain, atol=1e-3)


def test_switch_top_lambda_and_threshold():
    correct = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # 1/4, 1, 1/2, 1
    assert grpo_lambda_switch(correct, 0.5, "top").tolist() == [False, True, False, True]
    assert grpo_lambda_switch(correct, 0.6, "top").tolist() == [False, True, True, True]  # ceil(2.4) = 3
    assert grpo_lambda_switch(correct, 0.0, "top").tolist() == [False] * 4
    assert grpo_lambda_switch(correct, 1.0, "top").tolist() == [True] * 4
    assert int(grpo_lambda_switch(torch.zeros(16, 8, dtype=torch.bool), 0.2, "top").sum()) == 4  # ceil(3.2)
    assert grpo_lambda_switch(correct, 0.5, "threshold").tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="top or threshold"):
        grpo_lambda_switch(correct, 0.5, "bottom")


def reverse(**kw):
    return sandbox.Config(
        **{
            "algo": "grpo",
            "env": "lang:reverse",
            "sparse": True,
            "total_steps": 600,
            "prompts_per_update": 8,
            "group_size": 4,
            "dropout_mode": "off",
            "quiet": True,
            **kw,
        }
    )


def test_the_trainer_switches_per_group_through_the_seam():
    """--grpo-lambda 0.25 of 8 groups: 2 penalised, every update; the switch and the reward come through ``Maths``."""
    calls = []

    def switch(correct, lam, rule):
        calls.append((tuple(correct.shape), lam, rule))
        return grpo_lambda_switch(correct, lam, rule)

    cfg = reverse(length_penalty=2.5, length_penalty_form="kimi", grpo_lambda=0.25)
    m = sandbox.train(cfg, maths=Maths(grpo_lambda_switch=switch)).metrics
    assert calls and all(c == ((8, 4), 0.25, "top") for c in calls) and len(calls) == len(m)
    assert (m.length_penalty_frac == 0.25).all() and (m.plain_reward_frac == 0.75).all()
    assert (m.correct_ratio == m.reward_mean).all()  # the accuracy, whatever the advantages were computed from
    plain = sandbox.train(reverse()).metrics
    assert (plain.length_penalty_frac == 0).all() and plain.correct_ratio.notna().all()
    assert sandbox.train(reverse(sparse=False)).metrics.correct_ratio.isna().all()  # a dense reward: no correctness


def test_no_signal_is_judged_on_the_length_penalised_rewards():
    """A group of wrong answers of different lengths has equal 0/1 rewards but not equal Kimi rewards (a wrong answer
    keeps min(0, lam)): it has a signal, so ``zero_std_frac`` does not count it and --drop-equal-groups keeps it. The
    first update samples the same batch in both runs (same seed, same policy). A reference of 100 supervised steps
    (its own cache entry, 4 s against 15 s for the default 600) gets almost no sum right: every group is all wrong."""
    add = dict(env="lang:add", sparse=False, drop_equal_groups=True, sft_steps=100)
    plain = sandbox.train(reverse(**add)).metrics.zero_std_frac.iloc[0]
    kimi = reverse(length_penalty=2.5, length_penalty_form="kimi", **add)
    shaped = sandbox.train(kimi).metrics.zero_std_frac.iloc[0]
    assert plain > 0 and shaped < plain


@pytest.mark.parametrize(
    "args, flag, allowed",
    [
        (["--length-penalty", "0.5"], "--length-penalty", "0/1 correctness"),  # lang:reverse without --sparse
        (["--sparse", "--length-penalty", "-1"], "--length-penalty", "[0, inf)"),
        (["--sparse", "--length-penalty", "1", "--length-penalty-form", "l2"], "--length-penalty-form", "kimi"),
        (["--sparse", "--grpo-lambda", "0.2"], "--grpo-lambda", "--length-penalty > 0"),
        (["--sparse", "--length-penalty", "1", "--grpo-lambda", "1.5"], "--grpo-lambda", "[0, 1]"),
        (["--sparse", "--length-penalty", "1", "--grpo-lambda-rule", "bottom"], "--grpo-lambda-rule", "threshold"),
        (["--algo", "ppo", "--sparse", "--length-penalty", "1"], "--length-penalty", "only for GRPO on language tasks"),
    ],
)
def test_bad_values_one_line(capsys, tmp_path, args, flag, allowed):
    from sandbox.cli import main

    code = main(["train", "--algo", "grpo", "--env", "lang:reverse", "--quiet", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err and allowed in err, err
