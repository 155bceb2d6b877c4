"""One rule each, the same in every trainer: asymmetric clipping, its annealing, Dr. GRPO's constant normaliser; and
a golden file of the first updates, so that a refactoring cannot change the numbers unnoticed."""

import csv
import math
import os
from pathlib import Path

import gymnasium as gym
import pytest

import sandbox
from sandbox.maths import Maths, aggregate_loss, ppo_loss

GOLDEN = Path(__file__).with_name("golden_first_updates.csv")

TRAINERS = {  # (algo, env): a small config
    "ppo-gym": dict(algo="ppo", env="CartPole-v1", num_envs=4, num_steps=64, total_steps=768),
    "grpo-gym": dict(algo="grpo", env="CartPole-v1", prompts_per_update=2, group_size=4, total_steps=1200),
    "grpo-lang": dict(algo="grpo", env="lang:reverse", prompts_per_update=8, group_size=4, total_steps=400),
    "ppo-lang": dict(algo="ppo", env="lang:reverse", prompts_per_update=8, group_size=4, total_steps=400),
}


def _spy_clip():
    calls = []

    def spy(ratio, adv, clip_coef, clip_coef_high=None):
        calls.append((clip_coef, clip_coef_high))
        return ppo_loss(ratio, adv, clip_coef, clip_coef_high)

    return calls, Maths(ppo_loss=spy)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_clip_coef_high_reaches_the_loss_in_every_trainer(trainer):
    calls, maths = _spy_clip()
    sandbox.train(sandbox.Config(**TRAINERS[trainer], clip_coef_high=0.3, quiet=True), maths=maths)
    assert calls and all(high == 0.3 and low == 0.2 for low, high in calls)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_annealing_treats_both_clip_ranges_alike_in_every_trainer(trainer):
    calls, maths = _spy_clip()
    r = sandbox.train(
        sandbox.Config(**TRAINERS[trainer], clip_coef_high=0.3, anneal_clip=True, quiet=True), maths=maths
    )
    lows = sorted({low for low, _ in calls}, reverse=True)
    assert len(lows) == len(r.metrics) >= 2 and lows[0] == 0.2  # annealed: one value per update, from 0.2 down
    assert all(math.isclose(high, 1.5 * low) for low, high in calls)  # eps_high / eps_low stays 0.3 / 0.2
    assert r.metrics.clip_coef.tolist() == lows


def test_clip_coef_high_changes_the_clip_fraction_of_ppo_on_gym():
    """Naive dropout's ratio noise at the first minibatch (about 2e-3 at p = 0.5) against a tiny clip range: the
    same minibatch, but only the ratios below 1 - clip_coef count as clipped when the upper range is wide."""
    cfg = sandbox.Config(**TRAINERS["ppo-gym"], dropout=0.5, dropout_mode="naive", clip_coef=0.001, quiet=True)
    cfg = cfg.replace(total_steps=256)
    symmetric = sandbox.train(cfg).metrics.iloc[0]
    wider = sandbox.train(cfg.replace(clip_coef_high=5.0)).metrics.iloc[0]
    assert wider.first_ratio_dev == symmetric.first_ratio_dev
    assert 0 < wider.first_clipfrac < symmetric.first_clipfrac


def test_dr_grpo_on_gym_divides_by_the_episode_limit():
    seen = []

    def spy(per_token, mask, mode="grpo", max_len=None):
        seen.append(max_len)
        return aggregate_loss(per_token, mask, mode, max_len)

    cfg = sandbox.Config(**TRAINERS["grpo-gym"], loss_agg="dr_grpo", quiet=True)
    sandbox.train(cfg, maths=Maths(aggregate_loss=spy))
    assert seen and set(seen) == {500}  # CartPole-v1's time limit, whatever the batch's longest episode


def test_dr_grpo_is_refused_on_an_env_without_a_time_limit():
    if "NoLimitCartPole-v0" not in gym.envs.registry:
        gym.register("NoLimitCartPole-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv")
    cfg = sandbox.Config(algo="grpo", env="NoLimitCartPole-v0", loss_agg="dr_grpo", quiet=True)
    with pytest.raises(sandbox.ConfigError, match="--loss-agg: dr_grpo .* no time limit"):
        sandbox.train(cfg)


# --- the golden file -------------------------------------------------------------------------------------------

GOLDEN_RUNS = {
    "ppo-gym-consistent": dict(preset="cartpole", total_steps=512, dropout=0.2, dropout_mode="consistent"),
    "ppo-gym-naive": dict(preset="cartpole", total_steps=512, dropout=0.2, dropout_mode="naive", dropout_value=True),
    "grpo-gym": dict(TRAINERS["grpo-gym"], dropout=0.1, dropout_mode="naive", beta=0.04),
    "grpo-lang": dict(TRAINERS["grpo-lang"], dropout_mode="naive", beta=0.04, sft_steps=20),
    "ppo-lang": dict(TRAINERS["ppo-lang"], dropout_mode="consistent", kl_in="reward", beta=0.05, sft_steps=20),
}
COLUMNS = ("first_ratio_dev", "first_clipfrac", "clipfrac", "approx_kl", "entropy", "policy_loss", "value_loss",
           "grad_norm", "kl_ref", "ep_return_mean", "reward_mean", "env_steps", "episodes")  # fmt: skip


def _first_updates(name: str, updates: int = 2) -> list[dict[str, float]]:
    fields = dict(GOLDEN_RUNS[name])
    preset = fields.pop("preset", None)
    cfg = sandbox.preset(preset, **fields) if preset else sandbox.Config(**fields)
    m = sandbox.train(cfg.replace(quiet=True)).metrics.head(updates)
    return [{c: float(row[c]) for c in COLUMNS} for _, row in m.iterrows()]


def _regenerate() -> None:  # SANDBOX_REGEN_GOLDEN=1 pytest tests/test_rules.py -k golden: after a deliberate change
    with open(GOLDEN, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "update", *COLUMNS])
        for name in GOLDEN_RUNS:
            for i, row in enumerate(_first_updates(name), start=1):
                w.writerow([name, i, *(repr(row[c]) for c in COLUMNS)])


@pytest.mark.parametrize("name", GOLDEN_RUNS)
def test_first_updates_match_the_golden_file(name):
    """The first two updates of a run of each trainer, as committed. CPU models round matrix products differently, so
    the comparison has a tolerance; on one machine the numbers are equal to the last bit."""
    if os.environ.get("SANDBOX_REGEN_GOLDEN") and name == next(iter(GOLDEN_RUNS)):
        _regenerate()
    with open(GOLDEN, newline="") as f:
        want = [r for r in csv.DictReader(f) if r["run"] == name]
    got = _first_updates(name)
    assert len(want) == len(got) == 2
    for w, g in zip(want, got):
        for c in COLUMNS:
            expected = float(w[c])
            assert (math.isnan(expected) and math.isnan(g[c])) or math.isclose(
                g[c], expected, rel_tol=1e-3, abs_tol=1e-5
            ), f"{name}, update {w['update']}, {c}: {g[c]} != {expected}"


@pytest.mark.parametrize("trainer", ["ppo-gym", "grpo-lang"])
def test_the_dropout_layer_draws_and_applies_through_the_seam(trainer, counted_dropout_seam):
    calls, maths = counted_dropout_seam
    cfg = sandbox.Config(**TRAINERS[trainer], dropout=0.2, dropout_mode="consistent", quiet=True)
    plain = sandbox.train(cfg).metrics
    seamed = sandbox.train(cfg, maths=maths).metrics
    assert calls["mask"] > 0 and calls["apply"] > calls["mask"]  # masks drawn once per step, applied per layer
    assert calls["choose"] > 0  # every forward pass (MLP) or dropout place (transformer) asks which mask to use
    assert seamed.drop(columns=["wall_s", "sps"]).equals(plain.drop(columns=["wall_s", "sps"]))
