"""Our pure functions on hand-computed cases. A learner's replacement is checked by the grader instead
(``sandbox grade hwN FILE``, ``sandbox/grade/``), which compares it with these functions."""

import math

import pytest
import torch

from sandbox.maths import (
    Maths,
    adaptive_beta,
    aggregate_loss,
    apply_dropout,
    dropout_mask,
    explained_variance,
    gae,
    group_advantages,
    kl_k1,
    kl_k2,
    kl_k3,
    layer_mask,
    ppo_loss,
    sample_dropout_mask,
    value_loss,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def test_gae_termination_and_truncation_by_hand():
    """One env, four steps; the episode terminates at t=1 and is truncated at t=3. gamma = lambda = 0.5.

    deltas: t0: 1 + .5*20 - 10 = 1        t1: 2 + 0 (terminated: no bootstrap) - 20 = -18
            t2: 3 + .5*40 - 30 = -7       t3: 4 + .5*50 (truncated: bootstrap from V(s_4) = 50) - 40 = -11
    A3 = -11; A2 = -7 + .25*A3 = -9.75; A1 = -18 (episode ended: no look ahead); A0 = 1 + .25*A1 = -3.5
    """
    rewards = t(1, 2, 3, 4)[:, None]
    values = t(10, 20, 30, 40)[:, None]
    next_values = t(20, 99, 40, 50)[:, None]  # 99 sits behind a termination and must be ignored
    terminated = t(0, 1, 0, 0)[:, None]
    dones = t(0, 1, 0, 1)[:, None]
    adv, ret = gae(rewards, values, next_values, terminated, dones, gamma=0.5, gae_lambda=0.5)
    assert adv[:, 0].tolist() == pytest.approx([-3.5, -18.0, -9.75, -11.0])
    assert ret[:, 0].tolist() == pytest.approx([6.5, 2.0, 20.25, 29.0])


def test_gae_parallel_envs_are_independent_and_lambda_one_is_monte_carlo():
    rewards = torch.ones(3, 2)
    values = torch.zeros(3, 2)
    next_values = torch.zeros(3, 2)
    terminated = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    adv, _ = gae(rewards, values, next_values, terminated, terminated.clone(), gamma=0.9, gae_lambda=1.0)
    assert adv[:, 0].tolist() == pytest.approx([1 + 0.9 + 0.81, 1 + 0.9, 1])
    assert adv[:, 1].tolist() == pytest.approx([1.9, 1.0, 1.0])


def test_ppo_loss_by_hand():
    ratio = t(0.5, 1.0, 1.5, 1.5, 0.5)
    adv = t(1, 1, 1, -1, -1)
    # min(rA, clip(r, .8, 1.2)A): .5 | 1 | 1.2 (clipped gain) | -1.5 (unclipped loss kept) | -.8 (clipped)
    assert ppo_loss(ratio, adv, 0.2).tolist() == pytest.approx([-0.5, -1.0, -1.2, 1.5, 0.8])
    # DAPO-style asymmetric clipping: the upper bound moves to 1.28
    assert ppo_loss(ratio, adv, 0.2, 0.28).tolist() == pytest.approx([-0.5, -1.0, -1.28, 1.5, 0.8])


def test_ppo_loss_gradient_is_zero_where_clipped():
    ratio = t(1.5, 0.5).requires_grad_()
    ppo_loss(ratio, t(1, -1), 0.2).sum().backward()
    assert ratio.grad.tolist() == [0.0, 0.0]


def test_value_loss_by_hand():
    v, v_old, ret = t(3.0, 0.0), t(1.0, 0.0), t(0.0, 1.0)
    assert value_loss(v, v_old, ret, None).tolist() == pytest.approx([4.5, 0.5])
    # clipped: V_old + clip(3 - 1, -.5, .5) = 1.5 -> (1.5 - 0)^2 = 2.25 < 9, so max keeps 9
    assert value_loss(v, v_old, ret, 0.5).tolist() == pytest.approx([4.5, 0.5])
    v = t(0.0)
    # unclipped (0 - 2)^2 = 4; clipped V_old=1 + clip(-1, -.5, .5) = .5 -> (.5 - 2)^2 = 2.25; max = 4
    assert value_loss(v, t(1.0), t(2.0), 0.5).tolist() == pytest.approx([2.0])
    assert value_loss(t(2.0), t(1.0), t(0.0), 0.5).tolist() == pytest.approx([2.0])  # max(4, 2.25)
    assert value_loss(t(1.0), t(3.0), t(0.0), 0.5).tolist() == pytest.approx([0.5 * 2.5**2])  # max(1, 6.25)


def test_kl_k3_by_hand_and_nonnegative():
    assert kl_k3(t(0.0)).item() == 0.0
    assert kl_k3(t(math.log(2))).item() == pytest.approx(0.5 - 1 + math.log(2))
    x = torch.randn(10_000) * 3
    assert (kl_k3(x) >= 0).all()


def test_kl_k3_is_unbiased_for_gaussians():
    """KL(N(0,1) || N(1,1)) = 0.5, estimated from samples of the first."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400_000, generator=g)
    log_p = -0.5 * x**2
    log_q = -0.5 * (x - 1) ** 2
    assert kl_k3(log_p - log_q).mean().item() == pytest.approx(0.5, abs=0.01)


def test_dropout_mask_values_and_mean():
    torch.manual_seed(0)
    assert torch.equal(dropout_mask((3, 4), 0.0), torch.ones(3, 4))
    m = dropout_mask((200, 500), 0.3)
    assert sorted(torch.unique(m).tolist()) == pytest.approx([0.0, 1 / 0.7])
    assert (m == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert m.mean().item() == pytest.approx(1.0, abs=0.02)


def test_explained_variance():
    y = t(1, 2, 3, 4)
    assert explained_variance(y, y) == 1.0
    assert explained_variance(torch.full((4,), 2.5), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(4)))


def test_maths_seam_defaults_are_the_reference_functions():
    m = Maths()
    assert (m.gae, m.ppo_loss, m.value_loss, m.kl_k3, m.dropout_mask) == (
        gae,
        ppo_loss,
        value_loss,
        kl_k3,
        dropout_mask,
    )
    assert (m.kl_k1, m.kl_k2, m.group_advantages, m.aggregate_loss, m.adaptive_beta) == (
        kl_k1,
        kl_k2,
        group_advantages,
        aggregate_loss,
        adaptive_beta,
    )
    assert (m.apply_dropout, m.layer_mask, m.sample_dropout_mask) == (apply_dropout, layer_mask, sample_dropout_mask)


def test_layer_mask_replays_draws_or_leaves_out():
    drawn = []

    def draw(shape, p):
        drawn.append((shape, p))
        return torch.full(shape, 2.0)

    stored = torch.zeros(2, 3)
    assert layer_mask(stored, True, (2, 3), 0.5, draw) is stored and drawn == []  # replay: nothing drawn
    assert torch.equal(layer_mask(None, True, (2, 3), 0.5, draw), torch.full((2, 3), 2.0))
    assert drawn == [((2, 3), 0.5)]
    assert layer_mask(None, False, (2, 3), 0.5, draw) is None and len(drawn) == 1  # eval mode: no dropout


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    # group: mean 2, sample std 1 -> (-1, 0, 1) / 1.0001; an all-equal group gets 0
    assert group_advantages(rewards, "group").tolist() == [pytest.approx([-1 / 1.0001, 0, 1 / 1.0001]), [0.0, 0.0, 0.0]]
    # batch: same centring, divided by the sample std of all six rewards, sqrt(8 / 5)
    s = math.sqrt(8 / 5) + 1e-4
    assert group_advantages(rewards, "batch").tolist() == [pytest.approx([-1 / s, 0, 1 / s]), [0.0, 0.0, 0.0]]
    # none (Dr. GRPO): centring only
    assert group_advantages(rewards, "none").tolist() == [[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ValueError):
        group_advantages(rewards, "median")


def test_loss_aggregations_by_hand_with_unequal_lengths():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert aggregate_loss(per_token, mask, "grpo").item() == pytest.approx((2.5 + 15.0) / 2)  # per sequence
    assert aggregate_loss(per_token, mask, "bnpo").item() == pytest.approx(40.0 / 6)  # per token
    assert aggregate_loss(per_token, mask, "dr_grpo").item() == pytest.approx(40.0 / (2 * 4))  # constant
    assert aggregate_loss(per_token, mask, "dr_grpo", max_len=10).item() == pytest.approx(2.0)
    empty = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])
    assert aggregate_loss(per_token, empty, "grpo").item() == pytest.approx(2.5)


def test_kl_estimators_by_hand():
    x = torch.tensor([0.0, math.log(2), -math.log(2)])
    assert kl_k1(x).tolist() == pytest.approx([0.0, math.log(2), -math.log(2)])
    assert kl_k2(x).tolist() == pytest.approx([0.0, 0.5 * math.log(2) ** 2, 0.5 * math.log(2) ** 2])
    assert kl_k3(x).tolist() == pytest.approx([0.0, 0.5 - 1 + math.log(2), 2 - 1 - math.log(2)])
    assert (kl_k2(torch.randn(1000) * 5) >= 0).all()


def test_adaptive_beta_by_hand():
    # KL twice the target: the error is clipped to +0.2, beta grows by 0.2 * 256 / 10000
    assert adaptive_beta(0.1, kl=12.0, kl_target=6.0, horizon=10_000, n_steps=256) == pytest.approx(
        0.1 * (1 + 0.2 * 0.0256)
    )
    # KL a little under the target: error -0.05, beta shrinks a little
    assert adaptive_beta(0.1, kl=5.7, kl_target=6.0, horizon=10_000, n_steps=256) == pytest.approx(
        0.1 * (1 - 0.05 * 0.0256)
    )
    assert adaptive_beta(0.1, kl=0.0, kl_target=6.0, horizon=100, n_steps=100) == pytest.approx(0.08)
