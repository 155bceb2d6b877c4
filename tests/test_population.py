"""Seed-batched populations: a population of one reproduces the single-seed trainer, members are independent,
every mode and variant runs, each member writes its own run directory, a failing member fails alone."""

import json

import pytest
import torch

import sandbox
from sandbox.algos.population import check_population
from sandbox.metrics import TIMING_COLUMNS


def small(**kw) -> sandbox.Config:
    """Three updates of preset cartpole (8 envs x 32 steps), 4 epochs: every mechanism, cheaply."""
    return sandbox.preset("cartpole", **{"total_steps": 768, "update_epochs": 4, "quiet": True, **kw})


def _numbers(result) -> "pandas.DataFrame":  # noqa: F821
    return result.metrics.drop(columns=list(TIMING_COLUMNS)).astype(float)


def _close(a, b, rel: float = 1e-4, abs_: float = 1e-5) -> bool:
    """Equal to float rounding, NaN where both are NaN (columns an algorithm does not compute)."""
    ok = ((a - b).abs() <= abs_ + rel * a.abs()) | (a.isna() & b.isna())
    return bool(ok.all().all()) if hasattr(ok, "columns") else bool(ok.all())


@pytest.mark.parametrize(
    "mode, extra",
    [("off", {}), ("naive", {"dropout_value": True}), ("consistent", {"dropout_value": True}), ("rollout-eval", {}),
     ("naive", {"dropout_value": True, "dropout_policy": False}),
     ("rollout-eval", {"dropout_value": True, "dropout_policy": False})],
)  # fmt: skip
def test_a_population_of_one_is_the_single_seed_trainer_and_a_member_reproduces_it(mode, extra):
    cfg = small(dropout=0.3, dropout_mode=mode, **extra)
    single, member = _numbers(sandbox.train(cfg)), _numbers(sandbox.train_population([cfg])[0])
    assert single.equals(member)  # one trainer: a single run is the population of one, to the last bit
    two = _numbers(sandbox.train_population([cfg, cfg.replace(seed=1)])[0])
    # with a second member: the same random streams and the same maths, but the batched products and the padded
    # minibatches round differently (as another CPU would)
    assert _close(single, two), (single - two).abs().max()
    assert single.episodes.tolist() == two.episodes.tolist()


def test_members_are_independent_of_each_other():
    a = sandbox.train_population([small(dropout=0.2, seed=s) for s in (0, 1, 2)])
    b = sandbox.train_population([small(dropout=0.2, seed=s) for s in (0, 7, 2)])
    for k in (0, 2):  # changing member 1's seed changes nothing in members 0 and 2, to the last bit
        assert _numbers(a[k]).equals(_numbers(b[k]))
        assert a[k].episodes.drop(columns="wall_s").equals(b[k].episodes.drop(columns="wall_s"))
    assert not _numbers(a[1]).equals(_numbers(b[1]))


VARIANTS = {
    "sample dropout": dict(sample_dropout="dppo"),
    "sdpo by sign": dict(sample_dropout="sdpo"),
    "schedule": dict(dropout_schedule="early", dropout_cutoff=2),
    "multi-sample, loss": dict(dropout_samples=2),
    "multi-sample, logits": dict(dropout_samples=2, multi_sample_average="logits"),
    "KL in the loss, adaptive": dict(beta=0.05, kl_target=0.01),
    "KL in the reward": dict(beta=0.05, kl_in="reward"),
    "minibatches, target_kl": dict(num_minibatches=4, target_kl=0.002),
    "asymmetric clip": dict(clip_coef_high=0.3, anneal_clip=True),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_runs_in_a_population_and_matches_single_runs(name):
    cfgs = [small(dropout=0.2, dropout_mode="consistent", seed=s, **VARIANTS[name]) for s in (0, 1)]
    members = sandbox.train_population(cfgs)
    for cfg, member in zip(cfgs, members):
        single = _numbers(sandbox.train(cfg))
        assert _close(single.iloc[0], _numbers(member).iloc[0]), name  # the first update, tightly
        assert member.summary["status"] == "ok" and len(member.metrics) == len(single)


@pytest.mark.parametrize("mode", ["off", "rollout-eval", "naive", "consistent"])
def test_box_actions_in_every_mode(mode):
    cfg = sandbox.Config(env="Pendulum-v1", total_steps=1024, num_envs=4, num_steps=128, dropout=0.1, quiet=True)
    members = sandbox.train_population([cfg.replace(dropout_mode=mode, seed=s) for s in (0, 1)])
    single = _numbers(sandbox.train(cfg.replace(dropout_mode=mode, seed=1)))
    assert _close(single.iloc[0], _numbers(members[1]).iloc[0], abs_=1e-4)


def test_each_member_writes_its_own_run_directory(tmp_path):
    cfgs = [small(dropout=0.1, seed=s, out=str(tmp_path / f"s{s}")) for s in (3, 4)]
    sandbox.train_population(cfgs)
    for s in (3, 4):
        d = tmp_path / f"s{s}"
        assert {p.name for p in d.iterdir()} == {
            "config.json",
            "metrics.csv",
            "episodes.csv",
            "summary.json",
            "policy.pt",
        }
        assert json.loads((d / "config.json").read_text())["seed"] == s
        assert json.loads((d / "summary.json").read_text())["status"] == "ok"
    policy = sandbox.runs.policy_file.load(tmp_path / "s4" / "policy.pt")
    single = sandbox.train(small(dropout=0.1, seed=4, out=str(tmp_path / "single")))
    saved = sandbox.runs.policy_file.load(tmp_path / "single" / "policy.pt")
    for k, v in saved["state_dict"].items():  # the member's trained weights were written back before saving
        assert torch.allclose(policy["state_dict"][k], v, atol=1e-4), k
    assert single.summary["updates"] == policy["update"]


def test_a_member_whose_loss_is_not_finite_fails_alone(tmp_path):
    def broken_for_member_one(ratio, adv, clip_coef, clip_coef_high=None):
        out = sandbox.maths.ppo_loss(ratio, adv, clip_coef, clip_coef_high)
        if out.dim() >= 2 and out.shape[-2] == 2:  # the population's (members, rows): member 1 turns NaN
            out = out.clone()
            out[..., 1, :] = float("nan")
        return out

    cfgs = [small(seed=s, out=str(tmp_path / f"s{s}")) for s in (0, 1)]
    a, b = sandbox.train_population(cfgs, maths=sandbox.Maths(ppo_loss=broken_for_member_one))
    assert a.summary["status"] == "ok" and len(a.metrics) == 3
    assert b.summary["status"] == "non-finite-loss" and "update 1" in b.summary["message"] and len(b.metrics) == 0


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(save_every=1), "save_every"),
        (dict(stop_at_threshold=True), "stop_at_threshold"),
        (dict(grad_diag_every=1), "grad_diag_every"),
        (dict(flatness_every=1), "flatness_every"),  # sandbox.analysis.studies' train_many then runs one seed at a time
        (dict(algo="grpo"), "algo"),
    ],
)
def test_what_a_population_cannot_take_is_refused_in_one_line(change, field):
    with pytest.raises(sandbox.ConfigError, match=f"--{field.replace('_', '-')}"):
        check_population([small(**change), small(seed=1, **change)])
    with pytest.raises(sandbox.ConfigError, match="share every setting"):
        check_population([small(), small(seed=1, dropout=0.5)])


def test_cartpole_members_stepped_together_answer_as_if_alone():
    import numpy as np

    from sandbox.envs.gym_tasks import StepTogether, make_vec_env

    alone = [make_vec_env("CartPole-v1", 4, seed)[0] for seed in (0, 1, 2)]
    members = [make_vec_env("CartPole-v1", 4, seed)[0] for seed in (0, 1, 2)]
    together = StepTogether(members, "CartPole-v1", {})
    assert together.together
    rng = np.random.default_rng(0)
    for _ in range(300):  # long enough for many episodes to end and reset
        actions = [rng.integers(0, 2, 4) for _ in alone]
        got = together.step(actions)
        for env, a, answer in zip(alone, actions, got):
            want = env.step(a)[:4]
            assert all(np.array_equal(x, y) for x, y in zip(want, answer))
