"""The SB3 arm (sandbox.algos.sb3): faithful to plain SB3 PPO without dropout, the four modes' first-minibatch ratio,
the run directory and policy.pt, the hyperparameter mapping, and one-line refusals."""

import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import sandbox
from sandbox.algos.sb3 import DropoutPPO, Linear, as_sandbox_state_dict, make_model, sb3_hyperparameters
from sandbox.cli import main
from sandbox.config import SB3_UNSUPPORTED, ConfigError
from sandbox.metrics import EPISODE_COLUMNS, METRIC_COLUMNS
from sandbox.models.spec import build_agent
from sandbox.runs.policy_file import load


def sb3(**kw) -> sandbox.Config:
    """Two updates of SB3's PPO with the cartpole preset (8 envs x 32 steps), 4 epochs."""
    return sandbox.preset(
        "cartpole", **{"algo": "sb3-ppo", "total_steps": 512, "update_epochs": 4, "quiet": True, **kw}
    )


class Episodes(BaseCallback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def _on_step(self) -> bool:
        self.seen += [
            (float(i["episode"]["r"]), int(i["episode"]["l"])) for i in self.locals["infos"] if "episode" in i
        ]
        return True


@pytest.mark.parametrize("mode, p", [("off", 0.3), ("rollout-eval", 0.0)])
def test_without_dropout_the_sb3_arm_is_plain_sb3_ppo(mode, p):
    """Same seed and hyperparameters as a plain SB3 script (rl-zoo's CartPole values, as in sandbox bench cartpole):
    the same episodes, step for step, and the same final weights. SB3's random stream allows it: the dropout layers
    draw nothing at p = 0 and add no parameters, and the sandbox's bookkeeping draws no random numbers."""
    steps, seed = 8 * 32 * 6, 5
    ours = sandbox.train(
        sandbox.preset(
            "cartpole", algo="sb3-ppo", dropout=p, dropout_mode=mode, total_steps=steps, seed=seed, quiet=True
        )
    )
    model = PPO(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=8, seed=seed),
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda progress: progress * 1e-3,
        clip_range=lambda progress: progress * 0.2,
        seed=seed,
        device="cpu",
    )
    episodes = Episodes()
    model.learn(steps, callback=episodes)
    assert list(zip(ours.episodes["return"], ours.episodes["length"])) == episodes.seen
    assert len(episodes.seen) > 20


def test_the_written_policy_is_the_sb3_policy_in_the_sandbox_layout(tmp_path):
    cfg = sb3(dropout=0.2, dropout_mode="consistent", dropout_value=True, out=str(tmp_path / "run"))
    sandbox.train(cfg)
    blob = load(tmp_path / "run" / "policy.pt")
    agent = build_agent(blob)
    model = make_model(sandbox.config.validate(cfg))  # the same seed: the same initial weights
    obs = torch.randn(16, 4)
    agent.load_state_dict(as_sandbox_state_dict(model.policy))
    model.policy.set_training_mode(False)
    with torch.no_grad():
        logits = model.policy.get_distribution(obs).distribution.logits
        values = model.policy.predict_values(obs).squeeze(1)
        assert torch.allclose(torch.log_softmax(agent.actor(obs), -1), logits, atol=1e-6)
        assert torch.allclose(agent.value(obs), values, atol=1e-6)
    assert blob["network"]["type"] == "mlp" and blob["dropout_p"] == 0.2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["algo"] == "sb3-ppo"


@pytest.mark.parametrize("mode", ["off", "consistent"])
def test_first_minibatch_ratio_is_exactly_one_on_the_sb3_arm(mode):
    """Exactly 1 up to float rounding (the README's allowance: the rollout's and the update's matrix products have
    other shapes; an Intel Xeon with AVX-512 rounds them apart by about 1e-9 here). The last update's clip range is
    annealed to exactly 0, where any rounding counts as clipped, so the clip fraction is checked where it is > 0."""
    m = sandbox.train(sb3(dropout=0.3, dropout_mode=mode, dropout_value=True)).metrics
    assert len(m) == 2
    assert (m.first_ratio_dev < 1e-6).all(), m.first_ratio_dev.tolist()
    assert (m.clip_coef > 0).any() and (m.first_clipfrac[m.clip_coef > 0] == 0).all()
    assert (m.first_approx_kl.abs() < 1e-6).all()
    assert (m.first_value_dev < 1e-6).all(), m.first_value_dev.tolist()  # the critic, with dropout too, likewise


@pytest.mark.parametrize("mode", ["rollout-eval", "naive"])
def test_first_minibatch_ratio_is_not_one_with_dropout_noise_on_the_sb3_arm(mode):
    m = sandbox.train(sb3(dropout=0.3, dropout_mode=mode)).metrics
    assert (m.first_ratio_dev > 1e-4).all(), m.first_ratio_dev.tolist()
    assert (m.first_approx_kl > 0).all()


def test_sb3_run_directory_has_the_sandbox_schema(tmp_path):
    out = tmp_path / "run"
    r = sandbox.train(sb3(dropout=0.1, dropout_mode="naive", out=str(out)))
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(METRIC_COLUMNS)
    assert (out / "episodes.csv").read_text().splitlines()[0].split(",") == list(EPISODE_COLUMNS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["updates"] == 2 and summary["env_steps"] == 512
    m = r.metrics
    filled = [
        "first_ratio_dev",
        "first_clipfrac",
        "clipfrac",
        "approx_kl",
        "entropy",
        "policy_loss",
        "value_loss",
        "explained_var",
        "grad_norm",
        "surrogate_var",
        "lr",
        "clip_coef",
        "dropout_p",
        "epochs_done",
        "kl_ref",
    ]
    assert not m[filled].isna().any().any()
    assert (m.epochs_done == 4).all() and (m.dropout_p == 0.1).all()
    assert (m.grad_norm > 0).all()
    # SB3's schedules: evaluated after each rollout (progress remaining 1 - 256/512, then 0)
    assert m.lr.tolist() == pytest.approx([5e-4, 0.0]) and m.clip_coef.tolist() == pytest.approx([0.1, 0.0])


def test_target_kl_stops_like_the_sandbox():
    """The sandbox's target_kl is where the update stops; SB3 stops at 1.5 x its own, so it gets target_kl / 1.5."""
    m = sandbox.train(sb3(dropout=0.5, dropout_mode="naive", target_kl=1e-6, anneal_clip=False)).metrics
    assert (m.epochs_done == 0).all()  # naive dropout's noisy ratio exceeds the target before the first step
    assert m.grad_norm.isna().all()  # no minibatch stepped


def test_hyperparameters_map_to_sb3_names():
    hp = sb3_hyperparameters(sandbox.config.validate(sandbox.preset("cartpole", algo="sb3-ppo")))
    assert (hp["n_steps"], hp["batch_size"], hp["n_epochs"], hp["gamma"], hp["gae_lambda"]) == (32, 256, 20, 0.98, 0.8)
    assert (hp["ent_coef"], hp["vf_coef"], hp["max_grad_norm"], hp["clip_range_vf"]) == (0.0, 0.5, 0.5, None)
    assert isinstance(hp["learning_rate"], Linear) and hp["learning_rate"](0.5) == pytest.approx(5e-4)
    assert isinstance(hp["clip_range"], Linear) and hp["clip_range"](1.0) == pytest.approx(0.2)
    defaults = sb3_hyperparameters(sandbox.config.validate(sandbox.Config(algo="sb3-ppo")))
    assert (defaults["batch_size"], defaults["clip_range_vf"], defaults["ent_coef"]) == (128, 0.2, 0.01)


def test_dropout_ppo_in_a_plain_sb3_script():
    model = DropoutPPO(
        "MlpPolicy",
        "CartPole-v1",
        dropout_mode="consistent",
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        policy_kwargs=dict(dropout=0.2),
        seed=0,
        device="cpu",
    )
    model.learn(128)
    assert model.last_update["first_ratio_dev"] < 1e-6 and model.last_update["epochs_done"] == 2
    assert (
        sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "MaskedDropout" for m in model.policy.modules()) == 2
    )


def test_other_spaces_sb3_mlp_policy_handles(tmp_path):
    """Box actions become the sandbox's Gaussian agent; a Discrete observation (one-hot in SB3) has no sandbox agent:
    its policy.pt says so in one line."""
    sandbox.train(sb3(env="Pendulum-v1", dropout=0.1, dropout_mode="consistent", out=str(tmp_path / "pendulum")))
    assert "log_std" in load(tmp_path / "pendulum" / "policy.pt")["state_dict"]
    r = sandbox.train(sb3(env="FrozenLake-v1", dropout=0.1, dropout_mode="consistent", out=str(tmp_path / "lake")))
    assert (r.metrics.first_ratio_dev < 1e-6).all()
    with pytest.raises(ConfigError, match="Stable-Baselines3 policy for FrozenLake-v1"):
        load(tmp_path / "lake" / "policy.pt")


@pytest.mark.parametrize("field", sorted(SB3_UNSUPPORTED))
def test_sb3_refuses_what_it_cannot_mean_naming_the_field(field):
    value = {
        "clip_coef_high": 0.28,
        "beta": 0.1,
        "kl_target": 0.1,
        "ref": "runs/x",
        "init_from_ref": True,
        "dropout_samples": 2,
        "sample_dropout": "sdpo",
        "grad_diag_every": 1,
        "flatness_every": 5,
        "save_every": 5,
    }[field]
    with pytest.raises(ConfigError) as err:
        sandbox.config.validate(sb3(**{field: value}))
    assert err.value.field == field and "sb3-ppo" in str(err.value) and "\n" not in str(err.value)


def test_sb3_cli_refusals_are_one_line(capsys):
    assert main(["train", "--algo", "sb3-ppo", "--env", "lang:reverse"]) == 2
    assert main(["train", "--algo", "sb3-ppo", "--num-minibatches", "3"]) == 2
    assert main(["train", "--algo", "sb3-ppo", "--env", "Blackjack-v1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("sandbox train: error: --env: sb3-ppo trains on Gymnasium ids")
    assert lines[1].startswith("sandbox train: error: --num-minibatches: with --algo sb3-ppo it must divide")
    assert lines[2].startswith("sandbox train: error: --env: Blackjack-v1 has observation space Tuple")


def test_dropout_schedule_on_the_sb3_arm():
    m = sandbox.train(sb3(dropout=0.2, dropout_mode="consistent", dropout_schedule="late", dropout_cutoff=1)).metrics
    assert m.dropout_p.tolist() == [0.0, 0.2]
    assert (m.first_ratio_dev < 1e-6).all()
    assert np.isfinite(m.kl_ref).all()


def test_a_sweep_mixing_sb3_and_sandbox_arms_gives_one_report(tmp_path):
    """The spec's runs, expanded and checked by the sweep, each run as a sweep worker runs it (``sandbox.train`` of
    its config; here in this process, to spare the tests two worker start-ups), then one report."""
    from sandbox.analysis.report import write_report
    from sandbox.analysis.sweep import expand, load_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[base]\npreset = "cartpole"\ntotal_steps = 512\ndropout = 0.2\n'
        '[grid]\nalgo = ["ppo", "sb3-ppo"]\ndropout_mode = ["off", "naive"]\nseed = [0]\n'
    )
    runs = expand(*load_spec(spec), tmp_path / "out")
    assert [r.name for r in runs][-1] == "algo=sb3-ppo__dropout_mode=naive__seed=0"
    for run in runs:
        sandbox.train(run.config)
    table = write_report(tmp_path / "out", quiet=True, figures=False).set_index("group")
    assert set(table.task) == {"PPO CartPole-v1", "SB3-PPO CartPole-v1"}
    sb3_naive = table.loc["SB3-PPO CartPole-v1: dropout_mode=naive"]
    assert sb3_naive.baseline == "SB3-PPO CartPole-v1: dropout_mode=off"  # each arm against its own algorithm's off
    assert (
        sb3_naive.first_ratio_dev > 1e-3 and table.loc["SB3-PPO CartPole-v1: dropout_mode=off"].first_ratio_dev < 1e-6
    )
    assert (tmp_path / "out" / "report.md").read_text().count("SB3-PPO CartPole-v1") > 0


def test_the_sb3_dropout_layer_draws_and_applies_through_the_seam(counted_dropout_seam):
    calls, maths = counted_dropout_seam
    cfg = sb3(dropout=0.2, dropout_mode="consistent", total_steps=256)
    plain = sandbox.train(cfg).metrics
    seamed = sandbox.train(cfg, maths=maths).metrics
    assert calls["mask"] > 0 and calls["apply"] > calls["mask"]
    assert seamed.drop(columns=["wall_s", "sps"]).equals(plain.drop(columns=["wall_s", "sps"]))


def test_env_params_and_stop_at_threshold_on_the_sb3_arm(monkeypatch):
    model = make_model(sandbox.config.validate(sb3(env_params={"masscart": 10.0})))
    assert all(e.unwrapped.masscart == 10.0 and e.unwrapped.total_mass == 10.1 for e in model.env.envs)
    monkeypatch.setattr("sandbox.algos.sb3.reward_threshold", lambda env_id: 10.0)  # random CartPole episodes reach it
    r = sandbox.train(sb3(total_steps=8 * 32 * 20, stop_at_threshold=True))
    assert r.summary["message"] == "reached the reward threshold (--stop-at-threshold)"
    assert r.summary["solved_at_steps"] == r.summary["env_steps"] < 8 * 32 * 20
    assert len(r.metrics) == r.summary["updates"] < 20  # the stopped update has no row, as in the sandbox's PPO
