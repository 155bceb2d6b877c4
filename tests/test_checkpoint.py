"""Saved policies, checkpoints and resume, evaluation with GIFs, KL to a reference policy, env variants."""

import functools
import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import sandbox
from sandbox.cli import main
from sandbox.maths import Maths, gae, group_advantages
from sandbox.metrics import TIMING_COLUMNS
from sandbox.models import spec as network_spec
from sandbox.models.mlp import Agent
from sandbox.runs import policy_file
from sandbox.runs.rundir import save_torch_atomic


def small(**kw) -> sandbox.Config:
    return sandbox.preset("cartpole", **{"total_steps": 512, "update_epochs": 4, "quiet": True, **kw})


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A short CartPole run whose policy the tests below load, evaluate and start from."""
    out = tmp_path_factory.mktemp("ref") / "run"
    sandbox.train(small(total_steps=2048, out=str(out), save_every=4))
    return out


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- saving and loading ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-2.0, 2.0, (2,), np.float32)])
def test_policy_round_trip_gives_identical_action_probabilities(tmp_path, space):
    cfg = sandbox.config.validate(small(env="CartPole-v1", dropout=0.2, dropout_samples=2, hidden_sizes=(16, 8)))
    agent = Agent(5, space, cfg.hidden_sizes, 0.2, dropout_samples=2)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # not the initial weights
    save_torch_atomic(
        tmp_path / "policy.pt",
        policy_file.blob("policy", cfg, network_spec.gym_network(cfg, 5, space, True), agent, 7, 99),
    )
    b = policy_file.load(tmp_path / "policy.pt")
    loaded = network_spec.build_agent(b)
    obs = torch.randn(64, 5)
    actions = agent.best_action(obs)
    assert torch.equal(agent.eval().log_prob(obs, actions), loaded.log_prob(obs, actions))
    assert torch.equal(agent.value(obs), loaded.value(obs))
    assert b["update"] == 7 and b["env_steps"] == 99 and b["obs_norm"] is None and b["dropout_p"] == 0.2


def test_language_policy_round_trip(tmp_path):
    from sandbox.models.gpt import ModelConfig, TinyGPT

    cfg = sandbox.config.validate(sandbox.Config(algo="ppo", env="lang:digit"))
    model = TinyGPT(ModelConfig(vocab_size=52, max_len=12), with_value_head=True)  # as PPO on a language task
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_torch_atomic(
        tmp_path / "policy.pt", policy_file.blob("policy", cfg, network_spec.gpt_network(cfg, model), model, 3, 40)
    )
    b = policy_file.load(tmp_path / "policy.pt")
    assert b["network"]["type"] == "gpt" and b["network"]["value_head"] and "value_head.weight" in b["state_dict"]
    loaded = network_spec.build_gpt(b)
    tokens = torch.randint(0, 52, (4, 12))
    assert torch.equal(model.eval()(tokens)[0], loaded(tokens)[0])


def test_every_run_saves_its_policy_and_checkpoints_every_n_updates(cartpole_run):
    assert (cartpole_run / "policy.pt").is_file()
    assert sorted(p.name for p in (cartpole_run / "checkpoints").iterdir()) == ["update-000004.pt", "update-000008.pt"]
    last = policy_file.load(cartpole_run / "checkpoints" / "update-000008.pt")
    final = policy_file.load(cartpole_run / "policy.pt")
    assert last["kind"] == "checkpoint" and final["kind"] == "policy" and "resume" not in final
    assert all(torch.equal(last["state_dict"][k], v) for k, v in final["state_dict"].items())
    assert final["config"] == json.loads((cartpole_run / "config.json").read_text())


class NotATensor:  # a Python object: weights-only loading refuses to build it
    pass


def test_bad_files_and_mismatched_policies_get_one_line_errors(capsys, tmp_path, cartpole_run):
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save({"format": "dropout-rl-sandbox", "obj": NotATensor()}, tmp_path / "pickle.pt")
    cases = [
        (["eval", str(tmp_path / "text.pt")], "is not a sandbox policy or checkpoint"),
        (["eval", str(tmp_path / "foreign.pt")], "without the 'dropout-rl-sandbox' header"),
        (["eval", str(tmp_path / "pickle.pt")], "weights_only=True refused it"),
        (["eval", str(tmp_path / "nothing")], "no such run directory or policy file"),
        (["train", "--env", "Pendulum-v1", "--ref", str(cartpole_run)], "was made for CartPole-v1"),
        (["train", "--ref", str(cartpole_run), "--init-from-ref", "--hidden-sizes", "32"], "--hidden-sizes 64 64"),
        (["train", "--env", "lang:digit", "--ref", str(cartpole_run)], "is a policy for the Gym env CartPole-v1"),
        (["train", "--init-from-ref"], "needs --ref"),
        (["train", "--ref", str(tmp_path / "text.pt")], "is not a sandbox policy"),
        (["eval", str(tmp_path / "damaged.pt")], "is a damaged sandbox file"),
    ]
    torch.save({"format": "dropout-rl-sandbox", "version": 1, "network": {"type": "mlp"}}, tmp_path / "damaged.pt")
    for args, message in cases:
        out = tmp_path / "out"
        extra = ["--out", str(out), "--quiet"] if args[0] == "train" else []
        code, _, err = run_cli(capsys, *args, *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
        assert not out.exists()  # refused before anything was written
    code, _, err = run_cli(capsys, "train", "--ref", str(cartpole_run), "--out", str(cartpole_run), "--overwrite")
    assert code == 2 and "inside this run's --out" in err and (cartpole_run / "policy.pt").exists()


# --- resume ----------------------------------------------------------------------------------------------------------


def _interrupt(fn, at_call: int):
    """A maths function that behaves like ``fn`` but raises KeyboardInterrupt at its ``at_call``-th call: a Ctrl-C
    in the middle of an update."""
    calls = {"n": 0}

    @functools.wraps(fn)  # a Ctrl-C, not another function: the run's record (config.json's maths) names fn
    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize(
    "kw, seam",
    [
        (
            dict(
                env="CartPole-v1",
                num_envs=4,
                num_steps=32,
                dropout=0.2,
                dropout_mode="consistent",
                dropout_value=True,
                beta=0.05,
                kl_target=0.01,
            ),
            "gae",
        ),
        (
            dict(
                env="Pendulum-v1", num_envs=2, num_steps=64, dropout=0.1, dropout_mode="naive", env_params={"g": 12.0}
            ),
            "gae",
        ),
        (
            dict(
                algo="grpo",
                env="lang:reverse",
                prompts_per_update=4,
                group_size=4,
                dropout_mode="consistent",
                beta=0.04,
                kl_target=0.5,
            ),
            "group_advantages",
        ),
        (dict(algo="ppo", env="lang:digit", prompts_per_update=4, group_size=4, dropout_mode="naive"), "gae"),
    ],
)
def test_resume_equals_a_run_that_was_never_interrupted(tmp_path, kw, seam):
    base = dict(total_steps=1024 if "lang" not in kw["env"] else 900, quiet=True, save_every=2, seed=5, **kw)
    full = sandbox.train(sandbox.Config(**base, out=str(tmp_path / "full")))
    original = {"gae": gae, "group_advantages": group_advantages}[seam]
    with pytest.raises(KeyboardInterrupt):  # stopped during update 5: checkpoints 2 and 4 exist, rows up to 4 or 5
        sandbox.train(sandbox.Config(**base, out=str(tmp_path / "cut")), maths=Maths(**{seam: _interrupt(original, 5)}))
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = sandbox.resume(tmp_path / "cut")
    timing = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(full.metrics.drop(columns=timing), resumed.metrics.drop(columns=timing))
    for name in ("metrics.csv", "episodes.csv"):  # the files too: no row missing, none twice
        a, b = (
            pd.read_csv(tmp_path / d / name).drop(columns=timing if name == "metrics.csv" else ["wall_s"])
            for d in ("full", "cut")
        )
        pd.testing.assert_frame_equal(a, b)
    a, b = (policy_file.load(tmp_path / d / "policy.pt")["state_dict"] for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in full.summary.items() if k not in ("total_s", "solved_at_s")} == {
        k: v for k, v in resumed.summary.items() if k not in ("total_s", "solved_at_s")
    }


def test_resume_keeps_the_moment_the_threshold_was_reached(tmp_path, monkeypatch):
    """The threshold reached at an update that is also checkpointed: the checkpoint must already know it."""
    import sandbox.algos.groups

    monkeypatch.setattr(sandbox.algos.groups, "reward_threshold", lambda env_id: 12.0)  # reached within a few updates
    base = dict(
        algo="grpo",
        env="CartPole-v1",
        prompts_per_update=2,
        group_size=2,
        total_steps=1500,
        quiet=True,
        save_every=1,
        seed=2,
    )
    full = sandbox.train(sandbox.Config(**base, out=str(tmp_path / "full"))).summary
    assert full["solved_at_steps"] is not None
    with pytest.raises(KeyboardInterrupt):
        sandbox.train(
            sandbox.Config(**base, out=str(tmp_path / "cut")),
            maths=Maths(group_advantages=_interrupt(group_advantages, 6)),
        )  # after update 5, the solving one
    assert sandbox.resume(tmp_path / "cut").summary["solved_at_steps"] == full["solved_at_steps"]


def test_resume_refuses_a_reference_that_changed(tmp_path, cartpole_run):
    import shutil

    ref = tmp_path / "ref"
    shutil.copytree(cartpole_run, ref)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        sandbox.train(
            small(total_steps=1536, save_every=2, ref=str(ref), beta=0.1, out=str(cut)),
            maths=Maths(gae=_interrupt(gae, 4)),
        )
    shutil.copy(ref / "checkpoints" / "update-000004.pt", ref / "policy.pt")  # the reference run was redone
    with pytest.raises(sandbox.ConfigError, match="not the one this run started with"):
        sandbox.resume(cut)


def test_resume_from_the_command_line_and_its_refusals(capsys, tmp_path, cartpole_run, monkeypatch):
    import dataclasses

    cut = tmp_path / "cut"
    fields = {**{f.name: f.default for f in dataclasses.fields(Maths)}, "gae": _interrupt(gae, 4)}

    def maths_that_stop_in_update_4(self):
        for name, fn in fields.items():
            object.__setattr__(self, name, fn)

    with monkeypatch.context() as m:  # Ctrl-C in update 4 of a CLI run: it says how to go on
        m.setattr(Maths, "__init__", maths_that_stop_in_update_4)
        code, _, err = run_cli(
            capsys,
            "train",
            "--preset",
            "cartpole",
            "--total-steps",
            "1536",
            "--save-every",
            "2",
            "--update-epochs",
            "4",
            "--out",
            str(cut),
            "--quiet",
        )
    assert code == 130 and f"sandbox train --resume {cut}" in err
    code, out, _ = run_cli(capsys, "train", "--resume", str(cut), "--quiet")
    assert code == 0 and str(cut) in out
    assert len(pd.read_csv(cut / "metrics.csv")) == 6
    for args, message in [
        ((str(cut),), "has finished"),
        ((str(cut), "--seed", "3"), "drop --seed 3"),
        ((str(tmp_path / "none"),), "not a run directory"),
    ]:
        code, _, err = run_cli(capsys, "train", "--resume", *args)
        assert code == 2 and message in err, err
    nock = tmp_path / "nock"
    with pytest.raises(KeyboardInterrupt):
        sandbox.train(small(out=str(nock)), maths=Maths(gae=_interrupt(gae, 2)))
    code, _, err = run_cli(capsys, "train", "--resume", str(nock))
    assert code == 2 and "--save-every" in err


# --- KL to a reference on Gym tasks -------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_kl_to_a_reference_is_exactly_zero_at_the_start(cartpole_run, algo):
    """Dropout off and the policy started from the reference: the two are the same network, so k1 is 0 exactly."""
    kl = dict(dropout_mode="off", ref=str(cartpole_run), init_from_ref=True, beta=0.1)
    if algo == "grpo":  # GRPO's own batch (the cartpole preset's settings are PPO's rollout and critic)
        cfg = sandbox.Config(algo="grpo", prompts_per_update=2, group_size=2, total_steps=600, quiet=True, **kl)
    else:
        cfg = small(**kl)
    m = sandbox.train(cfg).metrics
    assert m.kl_ref.iloc[0] == 0.0
    assert m.first_ratio_dev.iloc[0] < 1e-6
    assert sandbox.train(cfg.replace(init_from_ref=False)).metrics.kl_ref.iloc[0] != 0.0  # a fresh policy


def test_kl_to_the_pretrained_reference_is_exactly_zero_at_the_start_on_a_language_task(tmp_path):
    m = sandbox.train(
        sandbox.Config(algo="grpo", env="lang:digit", dropout_mode="off", total_steps=200, quiet=True)
    ).metrics
    assert m.kl_ref.iloc[0] == 0.0
    out = tmp_path / "run"
    sandbox.train(sandbox.Config(algo="grpo", env="lang:digit", total_steps=600, quiet=True, out=str(out)))
    m = sandbox.train(
        sandbox.Config(
            algo="grpo",
            env="lang:digit",
            dropout_mode="off",
            total_steps=200,
            quiet=True,
            ref=str(out),
            init_from_ref=True,
        )
    ).metrics
    assert m.kl_ref.iloc[0] == 0.0


@pytest.mark.parametrize("kl_in", ["loss", "reward"])
def test_kl_in_the_loss_or_in_the_reward_on_ppo(cartpole_run, kl_in):
    base = small(dropout_mode="off", ref=str(cartpole_run), init_from_ref=True, env_params={"length": 0.25})
    free = sandbox.train(base).metrics
    held = sandbox.train(base.replace(beta=1.0, kl_in=kl_in, kl_estimator="k2")).metrics
    assert (held.beta == 1.0).all() and (free.beta == 0.0).all()
    assert not np.allclose(free.policy_loss, held.policy_loss)  # the KL term changed the update
    adaptive = sandbox.train(base.replace(beta=1.0, kl_in=kl_in, kl_target=1e6)).metrics
    assert adaptive.beta.iloc[0] == 1.0 and adaptive.beta.iloc[-1] < 1.0  # KL far below its target: beta shrinks


# --- env variants ------------------------------------------------------------------------------------------------


def test_env_params_change_the_physics_and_are_recorded(tmp_path):
    out = tmp_path / "run"
    sandbox.train(small(out=str(out), env_params={"length": 0.25, "masspole": 0.3}))
    assert json.loads((out / "config.json").read_text())["env_params"] == {"length": 0.25, "masspole": 0.3}
    envs, _ = sandbox.envs.gym_tasks.make_vec_env("CartPole-v1", 2, 0, {"length": 0.25, "masspole": 0.3})
    inner = envs.unwrapped
    assert inner.length == 0.25 and inner.total_mass == pytest.approx(1.3)
    assert inner.polemass_length == pytest.approx(0.075)
    pendulum = sandbox.envs.gym_tasks.make_env("Pendulum-v1", {"g": 15.0})
    assert pendulum.unwrapped.g == 15.0
    a = sandbox.train(small(seed=1, dropout_mode="off")).episodes["length"].mean()
    b = sandbox.train(small(seed=1, dropout_mode="off", env_params={"length": 0.05})).episodes["length"].mean()
    assert a != b  # a very short pole falls sooner under the same random start


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env-params", "lenght", "1.0"], "no parameter 'lenght'; one of: gravity"),
        (["--env-params", "length", "0"], "length must be > 0"),
        (["--env", "lang:digit", "--env-params", "length", "1"], "only for Gym envs"),
        (["--save-every", "-1"], "--save-every: must be an integer >= 0"),
    ],
)
def test_bad_env_params_and_save_every(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "train", *args, "--out", str(tmp_path / "out"), "--quiet")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# --- evaluation ------------------------------------------------------------------------------------------------


def test_eval_prints_the_return_and_writes_a_readable_gif(capsys, tmp_path, cartpole_run):
    from PIL import Image

    gif = tmp_path / "episode.gif"
    code, out, err = run_cli(
        capsys, "eval", str(cartpole_run), "--episodes", "3", "--gif", str(gif), "--gif-max-frames", "40"
    )
    assert code == 0 and "3 episodes" in out and "return" in out and "gif:" in out, out + err
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 5 and im.width <= 360
    code, out, _ = run_cli(
        capsys,
        "eval",
        str(cartpole_run / "checkpoints" / "update-000004.pt"),
        "--episodes",
        "2",
        "--deterministic",
        "--dropout",
        "as-run",
    )
    assert code == 0 and "most likely actions" in out
    code, _, err = run_cli(capsys, "eval", str(cartpole_run), "--gif", str(tmp_path / "x.png"))
    assert code == 2 and "must name a .gif file" in err


def test_eval_is_deterministic_and_follows_the_run_s_env_params(tmp_path, cartpole_run):
    from sandbox.runs.evaluate import evaluate

    a = evaluate(cartpole_run, episodes=4, seed=3, quiet=True)
    assert a == evaluate(cartpole_run, episodes=4, seed=3, quiet=True)
    out = tmp_path / "short-pole"
    sandbox.train(small(total_steps=256, out=str(out), env_params={"length": 0.05}))
    b = policy_file.load(out / "policy.pt")
    assert b["network"]["env_params"] == {"length": 0.05}
    assert evaluate(out, episodes=2, quiet=True)["env_params"] == {"length": 0.05}  # the run's own variant
    other = evaluate(out, episodes=2, quiet=True, env_params={"masscart": 10.0})  # or another one
    assert other["env_params"] == {"masscart": 10.0}
    with pytest.raises(sandbox.ConfigError, match="no parameter 'mass'"):
        evaluate(out, episodes=2, quiet=True, env_params={"mass": 10.0})


def test_eval_of_a_language_policy_prints_completions(capsys, tmp_path):
    out = tmp_path / "run"
    sandbox.train(sandbox.Config(algo="grpo", env="lang:digit", total_steps=300, quiet=True, out=str(out)))
    code, text, _ = run_cli(capsys, "eval", str(out), "--episodes", "8", "--show", "3")
    assert code == 0 and "8 prompts" in text and text.count(" -> ") == 3 and "reward" in text
    code, _, err = run_cli(capsys, "eval", str(out), "--gif", str(tmp_path / "x.gif"))
    assert code == 2 and "no pictures" in err
