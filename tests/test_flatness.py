"""The variance-flatness measurement (Feng & Tu 2021) on a loss with a known answer, and inside a run."""

import csv
import math

import pytest
import torch

import sandbox
from sandbox.algos.flatness import FENG_TU_FACTOR, loglog_slope, loss_width, trajectory_pca, variance_flatness
from sandbox.metrics import FLATNESS_COLUMNS, TIMING_COLUMNS


def quadratic_case(P=12, k=5, T=24, L0=0.3, seed=0):
    """A quadratic loss L(w) = L0 + 1/2 sum_i h_i ((w - w*) . u_i)^2 with known curvatures h_i along orthonormal u_i,
    and a trajectory around w* whose variance along u_i is sigma_i^2 = h_i^2 exactly: an inverse variance-flatness
    relation with a known slope. The trajectory is Q diag(sqrt(T) sigma) U^T with Q's columns orthonormal and centred,
    so that its PCA is exact (singular values sqrt(T) sigma_i, directions u_i)."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))[0][:, :k]  # (P, k), orthonormal
    h = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5], dtype=torch.float64)[:k]
    sigma = h  # sigma^2 = h^2 ~ F^-4 since F ~ h^(-1/2)
    Z = torch.randn(T, k, generator=g, dtype=torch.float64)
    Q = torch.linalg.qr(Z - Z.mean(dim=0))[0]  # (T, k): orthonormal columns, each orthogonal to the ones vector
    w_star = torch.randn(P, generator=g, dtype=torch.float64)
    trajectory = w_star + Q @ torch.diag(math.sqrt(T) * sigma) @ U.T
    w = torch.zeros(P, dtype=torch.float64, requires_grad=True)

    def loss():
        x = (w - w_star) @ U
        return L0 + 0.5 * (h * x.square()).sum()

    return trajectory, loss, w, U, h, sigma, L0


def test_known_answer_on_a_quadratic_loss():
    trajectory, loss, w, U, h, sigma, L0 = quadratic_case()
    before = torch.randn(w.shape, dtype=torch.float64)
    with torch.no_grad():
        w.copy_(before)
    rise = (FENG_TU_FACTOR - 1) * L0  # Feng & Tu: the loss reaches e * L0
    d = variance_flatness(trajectory, loss, [w], k=5, rise=rise, max_dist=100.0)
    assert d["variance"] == pytest.approx(sigma.square().tolist(), rel=1e-9)
    expected_width = (2 * torch.sqrt(2 * rise / h)).tolist()  # L0 + h d^2 / 2 = e L0 at d = +-sqrt(2 rise / h)
    assert d["flatness"] == pytest.approx(expected_width, rel=1e-5)
    assert d["left"] == pytest.approx(d["right"], rel=1e-5) and not any(d["censored"])
    assert d["curvature"] == pytest.approx(h.tolist(), rel=1e-9)  # p^T H p by double backpropagation
    slope, low, high = loglog_slope(d["flatness"], d["variance"])
    assert slope == pytest.approx(-4.0, abs=1e-6) and low - 1e-6 <= -4.0 <= high + 1e-6 and high - low < 1e-4
    assert loglog_slope(d["curvature"], d["variance"])[0] == pytest.approx(2.0, abs=1e-6)  # sigma^2 = h^2
    assert torch.equal(w.detach(), before)  # the parameters are put back exactly


def test_pca_finds_the_directions():
    trajectory, _, _, U, _, sigma, _ = quadratic_case()
    centre, directions, variances = trajectory_pca(trajectory, 3)
    assert torch.allclose((directions @ U[:, :3]).abs(), torch.eye(3, dtype=torch.float64), atol=1e-9)
    with pytest.raises(ValueError, match="T - 1"):
        trajectory_pca(trajectory, trajectory.shape[0])


def test_width_of_a_tilted_profile_and_a_flat_one():
    """L = g d + h d^2 / 2: the crossings of the rise c are the roots of h d^2 / 2 + g d - c on each side."""
    g, h, c = 0.5, 2.0, 0.3
    left, right, censored = loss_width(lambda d: g * d + 0.5 * h * d * d, c, 0.01, 50.0)
    root = lambda s: (-s * g + math.sqrt(g * g + 2 * h * c)) / h  # noqa: E731
    assert right == pytest.approx(root(1), rel=1e-6) and left == pytest.approx(root(-1), rel=1e-6) and not censored
    assert loss_width(lambda d: 1e-3 * d * d, 1.0, 0.1, 5.0) == (5.0, 5.0, True)


def cartpole(**kw):
    return sandbox.preset("cartpole", **{"total_steps": 2048, "quiet": True, "dropout": 0.2, **kw})


def reverse(**kw):
    small = dict(prompts_per_update=4, group_size=4, total_steps=800)
    return sandbox.Config(algo="grpo", env="lang:reverse", quiet=True, **{**small, **kw})


FLAT = ("flat_slope", "curv_slope")
ON = dict(flatness_every=3, flatness_window=4, flatness_directions=3)


def _rows(path):
    with open(path / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS + FLAT} for r in csv.DictReader(f)]


@pytest.mark.parametrize("make, mode", [(cartpole, "naive"), (cartpole, "consistent"), (reverse, "naive")])
def test_the_diagnostic_does_not_change_training(tmp_path, make, mode):
    """Every 3 updates over a window of 4: measured from update 6 on, once the window is full (PPO on CartPole, and
    GRPO on the tiny transformer: its Hessian-vector products go through attention)."""
    off = sandbox.train(make(dropout_mode=mode, out=str(tmp_path / "off")))
    on = sandbox.train(make(dropout_mode=mode, out=str(tmp_path / "on"), **ON))
    assert _rows(tmp_path / "off") == _rows(tmp_path / "on")
    measured = [u % 3 == 0 and u >= 6 for u in on.metrics["update"]]
    assert on.metrics.flat_slope.notna().tolist() == measured and off.flatness is None
    flat = on.flatness
    assert list(flat.columns) == list(FLATNESS_COLUMNS) and len(flat) == 3 * sum(measured)
    assert flat["direction"].tolist() == [1, 2, 3] * sum(measured) and (flat["update"] >= 6).all()
    assert (flat["variance"] > 0).all() and (flat["flatness"] > 0).all()
    with open(tmp_path / "on" / "flatness.csv") as f:
        assert len(list(csv.DictReader(f))) == len(flat)


def test_ppo_with_several_minibatches_measures_normalised_advantages(monkeypatch):
    """The held batch's loss sees the advantages as a step would: normalised (over the whole batch), not as GAE gave
    them; with one minibatch the trainer normalised the batch once already."""
    from sandbox.algos.diagnostics import FlatnessProbe

    seen = []
    measure = FlatnessProbe.measure

    def spy(self, held_loss):
        seen.append(held_loss().seen.adv.detach().clone())
        return measure(self, held_loss)

    monkeypatch.setattr(FlatnessProbe, "measure", spy)
    for minibatches in (1, 4):
        seen.clear()
        sandbox.train(cartpole(num_minibatches=minibatches, norm_adv=True, **ON))
        assert seen
        for adv in seen:
            assert abs(float(adv.mean())) < 1e-5 and float(adv.std()) == pytest.approx(1.0, abs=1e-3)


def test_a_resumed_run_keeps_its_window(tmp_path):
    """The window's weights are in the checkpoint: a run stopped after update 4 and resumed measures as one that
    was never stopped."""
    whole = sandbox.train(cartpole(out=str(tmp_path / "whole"), save_every=2, **ON))
    cut = tmp_path / "cut"
    sandbox.train(cartpole(out=str(cut), save_every=2, **ON))
    for f in ("summary.json", "policy.pt"):
        (cut / f).unlink()
    for f in (cut / "checkpoints").glob("*.pt"):
        if int(f.stem.split("-")[1]) > 4:
            f.unlink()
    resumed = sandbox.resume(cut)
    assert _rows(cut) == _rows(tmp_path / "whole")
    assert len(whole.flatness) == 3 and resumed.flatness.equals(whole.flatness)


def test_bad_values_one_line(capsys, tmp_path):
    from sandbox.cli import main

    for args, flag, allowed in [
        (["--flatness-every", "-1"], "--flatness-every", ">= 0"),
        (["--flatness-window", "3"], "--flatness-window", ">= 4"),
        (["--flatness-directions", "2"], "--flatness-directions", "a slope needs 3 points"),
        (["--flatness-window", "5", "--flatness-directions", "5"], "--flatness-directions", "at most"),
        (["--flatness-rise", "0"], "--flatness-rise", "(0, 100]"),
    ]:
        code = main(["train", "--quiet", "--out", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err and allowed in err, err


def test_the_study_figure_leaves_out_a_width_of_zero():
    """A held batch whose advantages are all 0 makes a loss that is 0 everywhere and a rise of 0: every width is 0.
    The figure draws what ``loglog_slope`` fits (positive widths) instead of failing on log(0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from sandbox.analysis import studies

    assert loss_width(lambda d: 0.0, 0.0, 0.1, 5.0) == (0.0, 0.0, False)
    row = dict(curvature=1.0, left=0.5, right=0.5, censored=False, env="lang:reverse", mode="off", seed=0)
    cells = [(u, i) for u in (10, 20) for i in range(1, 5)]  # update 20: every width 0
    directions = pd.DataFrame(
        [{"update": u, "direction": i, "variance": i**-4.0, "flatness": float(i) * (u == 10), **row} for u, i in cells]
    )
    fig = studies.plot_flatness(directions)
    (line,) = fig.axes[0].lines
    x, y = line.get_data()
    drawn = (math.log(y[-1]) - math.log(y[0])) / (math.log(x[-1]) - math.log(x[0]))
    assert drawn == pytest.approx(-4.0) == loglog_slope(directions["flatness"], directions["variance"])[0]
    plt.close(fig)


def test_the_study_table_when_every_direction_but_the_first_is_censored():
    """The column without direction 1 has nothing to fit then: "n/a", as the other columns say it, not a crash."""
    import pandas as pd

    from sandbox.analysis import studies

    tag = dict(env="CartPole-v1", mode="naive", seed=0)
    rest = dict(update=10, curvature=1.0, left=0.5, right=0.5, **tag)
    directions = pd.DataFrame(
        [{"direction": i, "variance": 1 / i, "flatness": float(i), "censored": i > 1, **rest} for i in range(1, 5)]
    )
    measurements = pd.DataFrame(
        [{"update": 10, "ep_return_mean": 9.0, "flat_slope": math.nan, "curv_slope": -1.0, **tag}]
    )
    row = studies.flatness_table(directions, measurements).loc[("CartPole-v1", "naive")]
    assert row["without direction 1"] == "n/a" and row["censored"] == "3/4" and row["seeds"] == 1
