"""MinAtar in the engine: the games through gymnasium's vector API, the MinAtar paper's convolutional actor-critic in
the four dropout modes (consistent dropout replays the convolution's masks too), populations, the variants, KL to a
reference, checkpoints and resume, GIFs, and the one-line refusals."""

import functools
import re

import numpy as np
import pandas as pd
import pytest
import torch

import sandbox
from sandbox.cli import main
from sandbox.maths import Maths, gae
from sandbox.metrics import TIMING_COLUMNS
from sandbox.models.cnn import CNNAgent, DropoutCNN
from sandbox.runs import policy_file


def small(**kw) -> sandbox.Config:
    """Two updates of 8 envs x 64 steps of Breakout, 2 epochs of 2 minibatches: every mechanism, in about a second."""
    base = dict(env="minatar:breakout", total_steps=1024, num_envs=8, num_steps=64, update_epochs=2, num_minibatches=2)
    return sandbox.Config(**{**base, "quiet": True, **kw})


def _numbers(result) -> pd.DataFrame:
    return result.metrics.drop(columns=list(TIMING_COLUMNS)).astype(float)


# --- the games ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("game, channels, actions", [("breakout", 4, 3), ("space_invaders", 6, 4), ("asterix", 4, 5)])
def test_observations_are_the_game_s_state_channels_first_as_float32(game, channels, actions):
    from sandbox.envs.gym_tasks import make_vec_env

    envs, obs = make_vec_env(f"minatar:{game}", 3, seed=0)
    assert obs.shape == (3, channels, 10, 10) and obs.dtype == np.float32
    assert envs.single_observation_space.shape == (channels, 10, 10) and envs.single_action_space.n == actions
    obs, *_ = envs.step(np.zeros(3, dtype=np.int64))
    states = [e.unwrapped.game.state() for e in envs.unwrapped.envs]  # (10, 10, C) booleans, one per env
    assert np.array_equal(obs, np.stack(states).transpose(0, 3, 1, 2).astype(np.float32))
    envs.close()


def test_unknown_games_and_what_minatar_does_not_take_are_refused_in_one_line(capsys, tmp_path):
    for args, field, words in [
        (["--env", "minatar:pong"], "--env", "minatar:breakout, minatar:freeway"),
        (["--env", "MinAtar/Breakout-v1"], "--env", "minatar:NAME"),
        (["--env", "minatar:breakout", "--hidden-sizes", "32"], "--hidden-sizes", "MinAtar paper"),
        (["--env", "minatar:breakout", "--algo", "grpo"], "--algo", "--algo ppo"),
        (["--env", "minatar:breakout", "--env-params", "g", "2"], "--env-params", "MinAtar games have none"),
    ]:
        code = main(["train", *args, "--total-steps", "512", "--out", str(tmp_path / "x"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and field in err and words in err, (args, err)


# --- the network and the dropout modes ---------------------------------------------------------------------------


def test_the_network_is_the_minatar_paper_s_with_dropout_after_the_convolution_and_the_hidden_layer():
    net = DropoutCNN((4, 10, 10), 3, p=0.5)
    assert net.conv.out_channels == 16 and net.conv.kernel_size == (3, 3) and net.conv.stride == (1, 1)
    assert net.hidden[0].in_features == 16 * 8 * 8 and net.hidden[0].out_features == 128
    assert net.mask_width == 16 * 8 * 8 + 128
    x = (torch.rand(5, 4, 10, 10) < 0.2).float()
    mask = net.sample_mask(5)
    out = net(x, mask)
    with torch.no_grad():  # by hand: conv, ReLU, the first 1024 columns; linear, ReLU, the other 128; head
        h = torch.relu(torch.nn.functional.conv2d(x, net.conv.weight, net.conv.bias)).flatten(1) * mask[:, :1024]
        h = torch.relu(net.hidden[0](h)) * mask[:, 1024:]
        assert torch.allclose(out, net.head(h), atol=1e-6)
    changed = mask.clone()
    changed[:, :1024] = 1.0  # the convolution's masks matter: the same hidden masks give another output
    assert not torch.allclose(net(x, changed), out)
    net.eval()
    assert torch.equal(net(x), net(x)) and not torch.allclose(net.train()(x), net(x))  # eval: none; train: fresh


@pytest.mark.parametrize("mode", ["off", "consistent"])
def test_first_minibatch_ratio_is_exactly_one(mode):
    """Consistent dropout replays the rollout's masks, the convolution's included. "Exactly" allows for float
    rounding, as for the MLP (README): the rollout evaluates 8 states at a time and the update 256, and the fully
    connected layer's matrix products round differently at the two shapes (measured here: up to 1e-8)."""
    m = sandbox.train(small(dropout=0.1, dropout_mode=mode, dropout_value=True)).metrics
    assert (m.first_ratio_dev < 1e-6).all(), m.first_ratio_dev.tolist()
    assert (m.first_clipfrac == 0).all() and (m.first_approx_kl.abs() < 1e-6).all()


@pytest.mark.parametrize("mode", ["rollout-eval", "naive"])
def test_first_minibatch_ratio_is_not_one_with_dropout_noise(mode):
    m = sandbox.train(small(dropout=0.1, dropout_mode=mode, dropout_value=True)).metrics
    assert (m.first_ratio_dev > 1e-4).all(), m.first_ratio_dev.tolist()
    assert (m.first_approx_kl > 0).all()


def test_consistent_dropout_stores_the_convolution_s_masks_with_each_transition():
    from sandbox.algos.population import Members, Population
    from sandbox.algos.run import Run
    from sandbox.runs.rundir import RunLog

    cfg = sandbox.config.validate(small(dropout=0.2, dropout_mode="consistent", dropout_value=True))
    seeds = Population([cfg], Maths())  # a single run's rollout
    rollout = seeds.rollouts[0]
    assert isinstance(rollout.policy, CNNAgent)
    with Members([Run(cfg, RunLog(cfg), Maths(), rollout, budget=cfg.batch_size)]) as members:
        assert not seeds.collect(members)
        assert members[0].env_steps == cfg.num_steps * cfg.num_envs
    width = 2 * (1024 + 128)  # actor and critic, each the convolution's units and the hidden layer's
    assert rollout.masks.shape == (cfg.num_steps, cfg.num_envs, width)
    assert set(rollout.masks.unique().tolist()) == {0.0, 1 / 0.8}


def test_same_config_and_seed_same_metrics():
    cfg = small(dropout=0.1, dropout_mode="naive", seed=3)
    assert _numbers(sandbox.train(cfg)).equals(_numbers(sandbox.train(cfg)))


# --- populations -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "rollout-eval", "naive", "consistent"])
def test_a_population_member_equals_the_single_run_with_the_same_seed(mode):
    """As for the MLP (tests/test_population.py): the same random streams and the same maths; the members' batched
    products (one grouped convolution at rollout, batched matrix products) round differently from the single run's,
    as another CPU would, so the numbers agree to float rounding, not to the last bit."""
    cfgs = [small(dropout=0.1, dropout_mode=mode, dropout_value=True, seed=s) for s in (0, 1, 2)]
    members = sandbox.train_population(cfgs)
    for k in (0, 2):
        single = sandbox.train(cfgs[k])
        a, b = _numbers(single), _numbers(members[k])
        assert a.shape == b.shape
        assert (((a - b).abs() <= 1e-5 + 1e-4 * a.abs()) | (a.isna() & b.isna())).all().all(), (a - b).abs().max()
        assert single.episodes.drop(columns="wall_s").equals(members[k].episodes.drop(columns="wall_s"))


# --- the variants, KL, checkpoints, GIFs -------------------------------------------------------------------------


VARIANTS = {
    "D-PPO sample dropout": dict(dropout_mode="off", sample_dropout="dppo"),
    "SDPO": dict(sample_dropout="sdpo", dropout=0.1),
    "outlier": dict(sample_dropout="outlier", dropout=0.1, dropout_mode="consistent"),
    "early schedule": dict(dropout=0.1, dropout_schedule="early", dropout_cutoff=1, dropout_mode="consistent"),
    "multi-sample dropout": dict(dropout=0.1, dropout_samples=2, dropout_mode="consistent"),
    "KL to the initial policy": dict(dropout=0.1, beta=0.05, kl_target=0.01, dropout_mode="consistent"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_runs_alone_and_in_a_population(name):
    cfg = small(**VARIANTS[name])
    single = sandbox.train(cfg)
    assert single.summary["status"] == "ok" and len(single.metrics) == 2
    member = sandbox.train_population([cfg, cfg.replace(seed=1)])[0]
    a, b = _numbers(single).iloc[0], _numbers(member).iloc[0]
    assert (((a - b).abs() <= 1e-5 + 1e-4 * a.abs()) | (a.isna() & b.isna())).all(), name
    if "schedule" in name:
        assert single.metrics.dropout_p.tolist() == [0.1, 0.0]
    if "D-PPO" in name:
        assert (single.metrics.dropped_frac > 0).all()


def test_kl_to_a_reference_is_exactly_zero_at_the_start(tmp_path):
    ref = tmp_path / "ref"
    sandbox.train(small(out=str(ref)))
    m = sandbox.train(small(dropout_mode="off", ref=str(ref), init_from_ref=True, beta=0.1)).metrics
    assert m.kl_ref.iloc[0] == 0.0 and m.first_ratio_dev.iloc[0] < 1e-6
    with pytest.raises(sandbox.ConfigError, match="--ref"):  # a CartPole policy cannot act in Breakout
        cartpole = tmp_path / "cartpole"
        sandbox.train(sandbox.preset("cartpole", total_steps=256, quiet=True, out=str(cartpole)))
        sandbox.train(small(ref=str(cartpole)))


def _interrupt(fn, at_call: int):
    calls = {"n": 0}

    @functools.wraps(fn)  # a Ctrl-C, not another function: the run's record (config.json's maths) names fn
    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    return wrapped


def test_resume_equals_a_run_that_was_never_interrupted(tmp_path):
    """The games' state (positions, timers, sticky actions, their random stream) is in the checkpoint."""
    base = small(total_steps=1536, num_envs=4, num_steps=64, save_every=2, seed=5, dropout=0.1)
    base = base.replace(dropout_mode="consistent", dropout_value=True)
    full = sandbox.train(base.replace(out=str(tmp_path / "full")))
    with pytest.raises(KeyboardInterrupt):  # stopped during update 5: checkpoints 2 and 4
        sandbox.train(base.replace(out=str(tmp_path / "cut")), maths=Maths(gae=_interrupt(gae, 5)))
    resumed = sandbox.resume(tmp_path / "cut")
    timing = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(full.metrics.drop(columns=timing), resumed.metrics.drop(columns=timing))
    a, b = (pd.read_csv(tmp_path / d / "episodes.csv").drop(columns=["wall_s"]) for d in ("full", "cut"))
    pd.testing.assert_frame_equal(a, b)
    a, b = (policy_file.load(tmp_path / d / "policy.pt")["state_dict"] for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_writes_a_gif_of_the_game_without_a_display(capsys, tmp_path):
    from PIL import Image

    from sandbox.envs.minatar import frame

    run = tmp_path / "run"
    sandbox.train(small(out=str(run), dropout=0.1))
    gif = tmp_path / "breakout.gif"
    code = main(["eval", str(run), "--episodes", "2", "--gif", str(gif), "--gif-max-frames", "30"])
    out = capsys.readouterr().out
    assert code == 0 and "2 episodes" in out and "gif:" in out, out
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 3 and im.width == im.height
    state = np.zeros((10, 10, 4), bool)
    state[9, 4, 0] = state[3, 0, 1] = True  # the paddle and the ball
    image = frame(state, cell=10)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    assert image[95, 45].any() and image[35, 5].any() and not image[55, 55].any()  # objects coloured, empty black


# --- sandbox bench minatar ---------------------------------------------------------------------------------------


def test_bench_minatar_fast_writes_the_report_and_the_mechanism(tmp_path, capsys):
    """The bench's smoke test (``--fast``: two seeds, two short updates per run): five arms, the usual report with the
    comparisons against dropout off without sample dropout, the per-seed finals, the mechanism figure, and the same
    arms on two more seeds with the replication table."""
    from sandbox.bench import bench_minatar

    out = tmp_path / "bench"
    result = bench_minatar(games=("breakout",), workers=1, out=str(out), quiet=True, fast=True, replicate=True)
    assert result["fast"] and result["runs"] == 20 and result["failed"] == 0 and result["steps"] == 512
    assert {"report.md", "report.csv", "finals.csv", "learning_curves.png", "mechanism.png", "bench.json"} <= {
        p.name for p in out.iterdir()
    }
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert "mechanism.png" in linked and set(linked) == {p.name for p in out.glob("*.png")}  # each it wrote, once
    assert set(pd.read_csv(out / "finals.csv").seed) == {0, 1}  # the replication's runs are not in the report
    assert set(pd.read_csv(tmp_path / "bench-replication" / "finals.csv").seed) == {2, 3}
    replication = pd.read_csv(out / "replication.csv")
    assert len(replication) == 4 and set(replication.replicated) == {"no claim"} and len(result["replication"]) == 4
    table = pd.read_csv(out / "report.csv")
    table["arm"] = [("D-PPO" if "sample_dropout=dppo" in g else m) for g, m in zip(table.group, table.dropout_mode)]
    table = table.set_index("arm")
    assert sorted(table.index) == ["D-PPO", "consistent", "naive", "off", "rollout-eval"] and (table.runs == 2).all()
    assert table.loc["off", "baseline"] == "(baseline)"
    for arm, row in table.drop(index="off").iterrows():  # each arm against plain PPO, too few seeds for a verdict
        assert row.baseline == table.loc["off", "group"] and row.verdict.startswith("too few seeds"), arm
    assert (table.loc[["off", "consistent", "D-PPO"], "first_ratio_dev"] < 1e-6).all()
    assert (table.loc[["naive", "rollout-eval"], "first_ratio_dev"] > 1e-4).all()
    code = main(["bench", "minatar", "--games", "pong", "--fast"])
    assert code == 2 and "--games" in capsys.readouterr().err
    code = main(["bench", "sweep", "--games", "breakout"])
    assert code == 2 and "only for bench minatar" in capsys.readouterr().err
