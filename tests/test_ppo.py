"""PPO: dropout modes, determinism, every supported space, learning, run directories, the maths seam."""

import csv
import json

import gymnasium as gym
import pytest
import torch

import sandbox
from sandbox.algos.learner import NonFiniteLossError
from sandbox.maths import Maths, gae
from sandbox.metrics import EPISODE_COLUMNS, METRIC_COLUMNS, SUMMARY, TIMING_COLUMNS
from sandbox.models.mlp import Agent, FlatParams


def small(**kw) -> sandbox.Config:
    """Two updates of 8 envs x 32 steps: enough to see every mechanism, cheap enough for every test."""
    return sandbox.preset("cartpole", **{"total_steps": 512, "update_epochs": 4, "quiet": True, **kw})


@pytest.mark.parametrize("mode", ["off", "consistent"])
def test_first_minibatch_ratio_is_exactly_one(mode):
    m = sandbox.train(small(dropout=0.3, dropout_mode=mode, dropout_value=True)).metrics
    assert (m.first_ratio_dev < 1e-6).all(), m.first_ratio_dev.tolist()
    assert (m.first_clipfrac == 0).all()
    assert (m.first_approx_kl.abs() < 1e-6).all()


@pytest.mark.parametrize("mode", ["rollout-eval", "naive"])
def test_first_minibatch_ratio_is_not_one_with_dropout_noise(mode):
    """At initialisation the policy is near uniform (head gain 0.01), so the noise starts small and grows as the
    policy sharpens; 'clearly not 1' means 100x above the bound the exact modes meet."""
    m = sandbox.train(small(dropout=0.3, dropout_mode=mode)).metrics
    assert (m.first_ratio_dev > 1e-4).all(), m.first_ratio_dev.tolist()
    assert (m.first_approx_kl > 0).all()


def test_mode_off_sets_p_to_zero_and_other_modes_report_p():
    assert (sandbox.train(small(dropout=0.3, dropout_mode="off")).metrics.dropout_p == 0).all()
    assert (sandbox.train(small(dropout=0.3, dropout_mode="naive")).metrics.dropout_p == 0.3).all()


def test_rollout_eval_samples_without_dropout_and_updates_with_it(monkeypatch):
    """The mechanism behind the table: record the train/eval state of the actor at every forward."""
    from sandbox.models.stacked import StackedAgent

    seen = []
    original = StackedAgent.act

    def spy(self, obs, actor_mask, noise):
        seen.append(("act", self.template.actor.training, actor_mask is not None))
        return original(self, obs, actor_mask, noise)

    monkeypatch.setattr(StackedAgent, "act", spy)
    sandbox.train(small(dropout=0.3, dropout_mode="rollout-eval", total_steps=256))
    assert seen and all(s == ("act", False, False) for s in seen)
    seen.clear()
    sandbox.train(small(dropout=0.3, dropout_mode="consistent", total_steps=256))
    assert seen and all(s == ("act", True, True) for s in seen)  # train mode, explicit (stored) masks


def _rows(path, drop):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


@pytest.mark.parametrize("mode", ["naive", "consistent"])
def test_same_config_and_seed_same_metrics(tmp_path, mode):
    cfg = small(dropout=0.2, dropout_mode=mode, seed=3)
    sandbox.train(cfg.replace(out=str(tmp_path / "a")))
    sandbox.train(cfg.replace(out=str(tmp_path / "b")))
    a = _rows(tmp_path / "a" / "metrics.csv", TIMING_COLUMNS)
    assert a == _rows(tmp_path / "b" / "metrics.csv", TIMING_COLUMNS)
    assert len(a) == 2
    assert _rows(tmp_path / "a" / "episodes.csv", {"wall_s"}) == _rows(tmp_path / "b" / "episodes.csv", {"wall_s"})
    c = sandbox.train(cfg.replace(seed=4)).metrics
    assert c.policy_loss.tolist() != [float(r["policy_loss"]) for r in a]


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    result = sandbox.train(small(out=str(out), dropout=0.1, dropout_mode="consistent"))
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "episodes.csv",
        "metrics.csv",
        "policy.pt",
        "summary.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert sandbox.Config.from_dict(config) == result.config
    with open(out / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert tuple(header) == METRIC_COLUMNS
    with open(out / "episodes.csv") as f:
        assert tuple(next(csv.reader(f))) == EPISODE_COLUMNS
    summary = json.loads((out / "summary.json").read_text())
    assert set(SUMMARY) <= set(summary)
    assert summary["status"] == "ok" and summary["reward_threshold"] == 475.0
    assert summary["final_return"] == pytest.approx(result.episodes["return"].tail(20).mean())
    assert list(result.metrics.columns) == list(METRIC_COLUMNS)
    assert result.metrics.env_steps.tolist() == [256, 512]
    ppo_columns = list(METRIC_COLUMNS[: METRIC_COLUMNS.index("epochs_done") + 1])
    assert not result.metrics[ppo_columns].isna().any().any()
    assert result.metrics[["reward_mean", "reward_std", "zero_std_frac"]].isna().all().all()  # language / GRPO
    assert result.metrics.kl_ref.notna().all() and (result.metrics.beta == 0).all()  # KL to the initial policy


@pytest.mark.parametrize(
    "env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"]
)
def test_runs_on_discrete_and_box_action_spaces(env_id):
    cfg = sandbox.Config(
        env=env_id,
        num_envs=2,
        num_steps=64,
        total_steps=256,
        update_epochs=2,
        quiet=True,
        dropout=0.1,
        dropout_mode="consistent",
    )
    r = sandbox.train(cfg)
    assert len(r.metrics) == 2
    assert r.metrics.policy_loss.notna().all()
    assert (r.metrics.first_ratio_dev < 1e-6).all()


def test_pendulum_runs_and_reports_no_threshold():
    r = sandbox.train(sandbox.Config(env="Pendulum-v1", num_envs=4, num_steps=200, total_steps=1600, quiet=True))
    assert r.summary["final_return"] is not None and r.summary["final_return"] < 0  # Pendulum rewards are costs
    assert r.summary["solved_at_steps"] is None and r.summary["reward_threshold"] is None


def test_box_actions_are_clipped_for_the_env_but_stored_unclipped():
    from sandbox.envs.gym_tasks import action_clipper as _action_clipper

    clip = _action_clipper(gym.spaces.Box(-2.0, 2.0, (1,)))
    assert clip(torch.tensor([[5.0], [-0.5]]).numpy()).tolist() == [[2.0], [-0.5]]


@pytest.mark.slow
def test_cartpole_preset_solves_within_60k_steps():
    r = sandbox.train(sandbox.preset("cartpole", seed=1, stop_at_threshold=True, quiet=True))
    assert r.summary["solved_at_steps"] is not None and r.summary["solved_at_steps"] <= 60_000, r.summary
    assert r.summary["final_return"] >= 475
    assert r.summary["message"].startswith("reached the reward threshold")


def test_truncated_episodes_bootstrap(monkeypatch):
    """CartPole truncates at 500 steps; with max_episode_steps made tiny, every episode ends by truncation, so
    every done must come with terminated = 0 into GAE."""
    calls = []

    def spy(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
        calls.append((terminated.clone(), dones.clone()))
        return gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda)

    import gymnasium

    original = gymnasium.make_vec

    def short(env_id, num_envs, vectorization_mode):
        return original(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, max_episode_steps=5)

    monkeypatch.setattr(gymnasium, "make_vec", short)
    sandbox.train(small(total_steps=256), maths=Maths(gae=spy))
    terminated, dones = calls[0]
    assert dones.sum() > 0 and terminated.sum() < dones.sum()


def test_student_functions_plug_in_through_the_seam():
    used = {"gae": 0, "ppo_loss": 0, "mask": 0}

    def my_gae(*args):
        used["gae"] += 1
        return gae(*args)

    def my_loss(ratio, adv, clip_coef, clip_coef_high=None):
        used["ppo_loss"] += 1
        return -torch.minimum(ratio * adv, ratio.clamp(1 - clip_coef, 1 + clip_coef) * adv)

    def my_mask(shape, p, generator=None):
        used["mask"] += 1
        return torch.empty(shape).bernoulli_(1 - p) / (1 - p)

    reference = sandbox.train(small(dropout=0.2, dropout_mode="consistent")).metrics
    mine = sandbox.train(
        small(dropout=0.2, dropout_mode="consistent"), maths=Maths(gae=my_gae, ppo_loss=my_loss, dropout_mask=my_mask)
    ).metrics
    assert used["gae"] == 2 and used["ppo_loss"] == 8 and used["mask"] > 0
    assert mine.policy_loss.tolist() == pytest.approx(reference.policy_loss.tolist(), rel=1e-4)


def test_non_finite_loss_stops_and_keeps_rows(tmp_path):
    calls = {"n": 0}

    def breaks_on_update_3(ratio, adv, clip_coef, clip_coef_high=None):
        calls["n"] += 1
        out = -torch.minimum(ratio * adv, ratio.clamp(1 - clip_coef, 1 + clip_coef) * adv)
        return out * float("nan") if calls["n"] > 8 else out  # 4 epochs x 1 minibatch per update

    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="update 3"):
        sandbox.train(small(total_steps=1024, out=str(out)), maths=Maths(ppo_loss=breaks_on_update_3))
    with open(out / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "non-finite-loss" and "update 3" in summary["message"]


def test_target_kl_stops_epochs_early():
    m = sandbox.train(small(dropout=0.5, dropout_mode="naive", target_kl=1e-6)).metrics
    assert (m.epochs_done == 0).all()  # dropout noise alone exceeds the target before the first step
    assert m.first_approx_kl.notna().all() and m.grad_norm.isna().all()
    m = sandbox.train(small(target_kl=None)).metrics
    assert (m.epochs_done == 4).all()


def test_flat_params_match_plain_adam_and_clipping():
    torch.manual_seed(0)
    a = Agent(4, gym.spaces.Discrete(2))
    b = Agent(4, gym.spaces.Discrete(2))
    b.load_state_dict(a.state_dict())
    flat = FlatParams(b)
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, eps=1e-5)
    opt_b = torch.optim.Adam([flat.flat], lr=1e-2, eps=1e-5, fused=True)
    obs, actions = torch.randn(32, 4), torch.randint(0, 2, (32,))
    for _ in range(5):
        for agent, opt in ((a, opt_a), (b, opt_b)):
            logp, _, v = agent.evaluate(obs, actions)
            loss = -(logp * 3).mean() + v.square().mean()
            if agent is a:
                opt.zero_grad()
                loss.backward()
                norm_a = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.1)
            else:
                flat.zero_grad()
                loss.backward()
                norm_b = flat.clip_grad_norm_(0.1)
            opt.step()
        assert norm_a.item() == pytest.approx(norm_b.item(), rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_torch_threads_default_to_one():
    sandbox.train(small(total_steps=256))
    assert torch.get_num_threads() == 1


def test_sample_categorical_matches_the_softmax():
    from scipy import stats

    from sandbox.models.mlp import sample_categorical

    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).expand(200_000, 4)
    counts = torch.bincount(sample_categorical(logits), minlength=4).numpy()
    expected = torch.softmax(logits[0], -1).numpy() * 200_000
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_more_minibatches_than_valid_samples_still_trains():
    """Autoreset steps are dropped, so a tiny batch can hold fewer samples than minibatches (or none)."""
    r = sandbox.train(sandbox.Config(num_envs=1, num_steps=16, num_minibatches=16, total_steps=400, quiet=True))
    assert r.summary["status"] == "ok" and r.metrics.policy_loss.notna().any()


def test_consistent_bootstrap_uses_the_masks_of_the_next_rollouts_first_step():
    """With dropout in the critic, V(s_T) that closes rollout k must be the value rollout k+1 gives s_T at step 0."""
    seen = []

    def spy(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
        seen.append((values[0].clone(), next_values[-1].clone()))
        return gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda)

    cfg = small(dropout=0.3, dropout_mode="consistent", dropout_value=True, learning_rate=1e-12, total_steps=768)
    sandbox.train(cfg, maths=Maths(gae=spy))
    for (_, bootstrap), (first_values, _) in zip(seen, seen[1:]):
        assert torch.allclose(bootstrap, first_values, atol=1e-5)


def test_value_clip_is_not_annealed(monkeypatch):
    clips = []
    from sandbox.maths import value_loss

    def spy(values, old_values, returns, clip):
        clips.append(clip)
        return value_loss(values, old_values, returns, clip)

    sandbox.train(small(anneal_clip=True, clip_vloss=True), maths=Maths(value_loss=spy))
    assert set(clips) == {0.2}


@pytest.mark.parametrize("mode", ["rollout-eval", "naive", "consistent"])
def test_dropout_in_the_critic_only_leaves_the_ratio_exact_and_changes_the_value_loss(mode):
    """--no-dropout-policy --dropout-value: the policy has no dropout, so its first-minibatch ratio is 1 (up to
    rounding) in every mode, while the critic's dropout changes its values (the mechanism arm "noise in the critic")."""
    cfg = sandbox.preset("cartpole", total_steps=1024, dropout=0.3, dropout_mode=mode, dropout_value=True,
                         dropout_policy=False, quiet=True)  # fmt: skip
    critic_only = sandbox.train(cfg).metrics
    off = sandbox.train(cfg.replace(dropout_mode="off", dropout_value=False, dropout_policy=True)).metrics
    assert (critic_only.first_ratio_dev < 1e-6).all() and (critic_only.first_clipfrac == 0).all()
    assert critic_only.value_loss.iloc[0] != off.value_loss.iloc[0]


@pytest.mark.parametrize("mode", ["off", "consistent", "naive"])
def test_first_value_dev_is_the_critic_s_noise_before_any_step(mode):
    """Dropout in the critic only: V_theta(s) of the first minibatch, before any step, is the rollout's V_old(s) up to
    rounding when the update sees the critic that valued the states (off, consistent), and not with fresh masks."""
    m = sandbox.train(small(dropout=0.3, dropout_mode=mode, dropout_value=True, dropout_policy=False)).metrics
    assert (m.first_ratio_dev < 1e-6).all()  # no dropout in the policy: first_ratio_dev cannot see the critic's
    if mode == "naive":
        assert (m.first_value_dev > 1e-4).all(), m.first_value_dev.tolist()
    else:
        assert (m.first_value_dev < 1e-6).all(), m.first_value_dev.tolist()
