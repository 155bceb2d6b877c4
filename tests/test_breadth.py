"""The breadth study (``sandbox bench breadth``) and its mechanism arms: every group is a valid config on its task,
the learned check and Holm's correction on known answers, and a FAST-mode run end to end through the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from sandbox.analysis import breadth
from sandbox.cli import main


@pytest.mark.parametrize("task", list(breadth.TASKS))
def test_every_group_of_both_studies_is_a_valid_config_on_its_task(task):
    t = breadth.TASKS[task]
    groups = breadth.arms() | (breadth.mechanisms(t) if task in breadth.MECHANISM_TASKS else {})
    for label, fields in groups.items():
        cfg = breadth.config_of(t, **fields)
        assert cfg.dropout_mode == fields["dropout_mode"], label
    arms = breadth.arms()
    assert list(arms)[0] == "off" and len(arms) == 1 + 3 * len(breadth.RATES)
    assert all(f["dropout_value"] for label, f in arms.items() if label != "off")  # policy and value, as stated


def test_mechanism_arms_change_one_thing_each():
    t = breadth.TASKS["Acrobot-v1"]
    m = breadth.mechanisms(t)
    assert m["off, half the learning rate"]["learning_rate"] == pytest.approx(2.5e-4 / 2)
    assert m["off, half the clip range"]["clip_coef"] == pytest.approx(0.1)
    narrow = next(f for label, f in m.items() if "hidden layers" in label)
    assert narrow["hidden_sizes"] == [45, 45]  # 64 x (1 - 0.3), rounded
    critic = next(f for label, f in m.items() if "critic only" in label)
    assert critic["dropout_policy"] is False and critic["dropout_value"] is True


def _frame(task, off, others):
    rows = [{"task": task, "group": "group00", "label": "off", "mode": "off", "p": 0.0, "seed": i, "first": -500.0,
             "final": v} for i, v in enumerate(off)]  # fmt: skip
    for g, (label, mode, values) in enumerate(others, start=1):
        rows += [{"task": task, "group": f"group{g:02d}", "label": label, "mode": mode, "p": 0.3, "seed": i,
                  "first": -500.0, "final": v} for i, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_learned_check_and_holm_over_every_comparison_on_known_answers():
    rng = np.random.default_rng(0)
    off = -150 + rng.normal(0, 5, 16)
    frame = _frame(
        "Acrobot-v1", off, [("better", "naive", off + 60), ("same", "consistent", off + rng.normal(0, 5, 16))]
    )
    learn = breadth.learned(frame)
    assert bool(learn.loc["Acrobot-v1", "learned"]) and learn.loc["Acrobot-v1", "rise"] == pytest.approx(
        350 + off.mean() + 150
    )
    table = breadth.comparisons(frame).set_index("label")
    assert table.loc["better", "verdict"] == "better" and table.loc["better", "g"] > 2
    assert table.loc["same", "verdict"] != "better" and table.loc["same", "verdict"] != "worse"
    assert (table["holm p"] >= table["p_value"]).all()  # Holm only ever raises a p-value
    flat = _frame("MountainCarContinuous-v0", np.full(16, -500.0), [])  # never rose: not learned
    assert not bool(breadth.learned(flat).loc["MountainCarContinuous-v0", "learned"])


def test_fast_breadth_and_mechanisms_through_the_cli(capsys, tmp_path):
    out = tmp_path / "breadth"
    args = ["bench", "breadth", "--fast", "--tasks", "CartPole-v1", "--seeds", "0", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    finals = pd.read_csv(out / "finals.csv")
    assert len(finals) == 7 * 2 and set(finals["task"]) == {"CartPole-v1"}
    table = pd.read_csv(out / "comparisons.csv")
    assert len(table) == 6 and table["verdict"].str.startswith("too few seeds").all()  # 2 seeds: no verdicts
    report = (out / "report.md").read_text()
    assert "FAST mode" in report and "| CartPole-v1 |" in report and (out / "forest.png").stat().st_size > 10_000
    assert json.loads((out / "groups.json").read_text())["CartPole-v1"]["group00"] == "off"
    assert breadth.folder_of("minatar:breakout") == "minatar-breakout"  # no ':' in a Windows path
    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")}
    assert main(args) == 0  # the same --out again: every run kept, nothing re-run
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")} == before
    mech = tmp_path / "mech"
    assert main(["bench", "mechanisms", "--fast", "--tasks", "CartPole-v1", "--out", str(mech), "--quiet"]) == 0
    assert len(pd.read_csv(mech / "comparisons.csv")) == 5


@pytest.mark.parametrize(
    "args, field",
    [
        (["bench", "breadth", "--tasks", "Hopper-v5"], "--tasks"),
        (["bench", "mechanisms", "--tasks", "Pendulum-v1"], "--tasks"),
        (["bench", "cartpole", "--fast"], "--fast"),
        (["bench", "breadth", "--workers", "0"], "--workers"),
    ],
)
def test_bad_study_arguments_are_one_line(capsys, args, field):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err, err
