"""The pure functions on hand-computed cases (these are also the checks a student's version must pass)."""

import math

import pytest
import torch

from sandbox.maths import Maths, dropout_mask, explained_variance, gae, kl_k3, ppo_loss, value_loss


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
    assert value_loss(t(1.0), t(3.0), t(0.0), 0.5).tolist() == pytest.approx([0.5 * 2.5 ** 2])  # max(1, 6.25)


def test_kl_k3_by_hand_and_nonnegative():
    assert kl_k3(t(0.0)).item() == 0.0
    assert kl_k3(t(math.log(2))).item() == pytest.approx(0.5 - 1 + math.log(2))
    x = torch.randn(10_000) * 3
    assert (kl_k3(x) >= 0).all()


def test_kl_k3_is_unbiased_for_gaussians():
    """KL(N(0,1) || N(1,1)) = 0.5, estimated from samples of the first."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400_000, generator=g)
    log_p = -0.5 * x ** 2
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
    assert (m.gae, m.ppo_loss, m.value_loss, m.kl_k3, m.dropout_mask) == (gae, ppo_loss, value_loss, kl_k3,
                                                                          dropout_mask)
