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


def test_stacked_adam_is_torch_adam_member_by_member():
    """Every member's row steps as torch.optim.Adam(fused=True) steps it alone, to the last bit; a member left out of
    a step (stopped by target_kl) keeps its weights and its Adam state."""
    import gymnasium as gym

    from sandbox.models.mlp import Agent, FlatParams
    from sandbox.models.stacked import StackedAdam

    torch.manual_seed(0)
    agents = [Agent(4, gym.spaces.Discrete(2)) for _ in range(3)]
    alone = [Agent(4, gym.spaces.Discrete(2)) for _ in range(3)]
    for a, b in zip(alone, agents):
        a.load_state_dict(b.state_dict())
    params = FlatParams(agents)
    stacked = StackedAdam(params, lr=1e-2, eps=1e-5)
    single = [FlatParams(a) for a in alone]
    optims = [torch.optim.Adam([p.flat], lr=1e-2, eps=1e-5, fused=True) for p in single]
    for step in range(4):
        members = [0, 1, 2] if step != 2 else [0, 2]
        grads = torch.randn(3, params.flat.shape[1])
        params.flat.grad.copy_(grads)
        stacked.step(members)
        for k in members:
            single[k].flat.grad.copy_(grads[k : k + 1])
            optims[k].step()
    for k in range(3):
        assert torch.equal(params.flat[k], single[k].flat[0])
        assert all(torch.equal(p, q) for p, q in zip(agents[k].parameters(), alone[k].parameters()))


def test_stacked_layers_are_autograd_s_to_the_last_bit():
    """The population's fused hidden layer and its linear layer compute tanh(linear) and linear exactly as autograd
    does, forward and backward (their speed devices change no number)."""
    from sandbox.models.mlp import _StackedLinear, _StackedTanhLayer, tanh

    def plain(h, w, b):
        return torch.baddbmm(b.unsqueeze(1), h.reshape(h.shape[0], -1, h.shape[-1]), w.transpose(1, 2))

    torch.manual_seed(0)
    for w_shape, h_shape in [((3, 64, 4), (3, 32, 4)), ((3, 64, 64), (3, 32, 64)), ((3, 2, 64), (3, 5, 7, 64))]:
        for fused, reference in ((_StackedTanhLayer.apply, lambda *a: tanh(plain(*a))), (_StackedLinear.apply, plain)):
            w0, b0, h0 = torch.randn(*w_shape) * 0.3, torch.randn(*w_shape[:-1]), torch.randn(*h_shape)
            got = []
            for f in (fused, reference):
                w, b, h = (t.clone().requires_grad_() for t in (w0, b0, h0))
                y = f(h, w, b).reshape(3, -1, w_shape[1])
                (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
                got.append((y.detach(), w.grad, b.grad, h.grad))
            assert all(torch.equal(x, y) for x, y in zip(*got))


def test_the_metrics_of_every_member_at_once_are_each_member_s_own():
    """members_update_metrics over padded minibatches of three members equals update_metrics of each member's own
    rows; a member that takes no part in a minibatch, or takes no step after it, is counted as alone."""
    from sandbox.algos.diagnostics import Seen, Taken, members_update_metrics, update_metrics

    torch.manual_seed(0)
    K, S, taken, own = 3, 10, [], {k: [] for k in range(3)}
    for j in range(4):
        counts = torch.tensor([S, 7, 4 if j < 3 else 0])
        valid = torch.arange(S)[None] < counts[:, None]
        seen = Seen(
            torch.randn(K, S) * 0.1, torch.randn(K, S), torch.rand(K), torch.randn(K), torch.rand(K),
            keep=torch.rand(K, S) > 0.2, valid=valid,
        )  # fmt: skip
        took, stepped, norms = counts > 0, torch.tensor([True, j != 1, j < 2]) & (counts > 0), torch.rand(K)
        taken.append(Taken(seen, took, stepped, norms))
        for k in range(K):
            if took[k]:
                n = int(counts[k])
                own[k].append(
                    Seen(seen.logratio[k, :n], seen.adv[k, :n], seen.entropy[k], seen.policy_loss[k],
                         seen.value_loss[k], keep=seen.keep[k, :n], grad_norm=norms[k] if stepped[k] else None)
                )  # fmt: skip
    together = members_update_metrics(taken, [4, 3, 2], clip_coef=0.2, clip_coef_high=0.3)
    for k in range(K):
        alone = update_metrics(own[k], clip_coef=0.2, epochs_done=[4, 3, 2][k], clip_coef_high=0.3)
        assert together[k].keys() == alone.keys()
        for name in alone:
            a, b = together[k][name], alone[name]
            assert (a != a and b != b) or abs(a - b) <= 1e-6 * max(1.0, abs(b)), (k, name, a, b)


def test_bench_population_counts_the_update_s_flops_and_prints_every_section():
    """The GFLOP/s of a 2-member population's update on the preset (a second), and the report's sections."""
    from sandbox.bench.population_speed import GFLOPS_CASES, format_population, update_gflops

    case = next(iter(GFLOPS_CASES))
    g = update_gflops(case, k=2)
    # actor 4 -> 64 -> 64 -> 2 and critic 4 -> 64 -> 64 -> 1, 256 rows a member: forward, and backward without the
    # observations' gradient
    layers = [(4, 64, True), (64, 64, False), (64, 2, False), (4, 64, True), (64, 64, False), (64, 1, False)]
    assert g["gflop_per_step"] == pytest.approx(sum(2 * 2 * 256 * i * o * (2 if f else 3) for i, o, f in layers) / 1e9)
    assert 0 < g["update_gflops"] and 0 < g["plain_baddbmm_gflops"] and 0 < g["matmul_gflops"]
    run = {"cpu_s": 2.0, "wall_s": 2.0, "final_returns": [1.0, 2.0], "solved": [True, False]}
    setting = {"population": run, "separate": run, "speedup_cpu": 1.0, "speedup_wall": 1.0, "p_value": 1.0}
    setting["iqm"] = {"population": 1.5, "separate": 1.5}
    result = {
        "k": 2, "machine": "m", "settings": {"preset cartpole, 30k steps": setting},
        "acrobot": {"k": 2, "ratio": 6.0, "target": 5.9, "ours": run | {"seeds": 2}, "sb3": run | {"seeds": 1}},
        "gflops": [g], "profile": {"update": 0.5},
    }  # fmt: skip
    text = format_population(result)
    assert "population / SB3: 6.00 (target >= 5.9): met" in text and case in text and "update: 50%" in text


def test_a_member_s_first_value_dev_is_its_single_run_s():
    """The critic's diagnostic comes from the one update path: a member of two reads its single run's value."""
    cfg = small(dropout=0.3, dropout_mode="naive", dropout_value=True, dropout_policy=False)
    single = sandbox.train(cfg).metrics.first_value_dev
    member = sandbox.train_population([cfg, cfg.replace(seed=1)])[0].metrics.first_value_dev
    assert (single > 1e-4).all() and _close(single, member), (single.tolist(), member.tolist())
