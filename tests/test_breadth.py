"""The breadth study (``sandbox bench breadth``) and its mechanism arms: every group is a valid config on its task,
the learned check and Holm's correction on known answers, and a FAST-mode run end to end through the CLI."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sandbox import stats
from sandbox.analysis import breadth
from sandbox.cli import main


@pytest.mark.parametrize("task", list(breadth.TASKS))
def test_every_group_of_both_studies_is_a_valid_config_on_its_task(task):
    t = breadth.TASKS[task]
    groups = breadth.arms() | breadth.mechanisms(t)
    for label, fields in groups.items():
        cfg = breadth.config_of(t, **fields)
        assert cfg.dropout_mode == fields["dropout_mode"], label
    arms = breadth.arms()
    assert list(arms)[0] == "off" and len(arms) == 1 + 3 * len(breadth.RATES)
    assert all(f["dropout_value"] for label, f in arms.items() if label != "off")  # policy and value, as stated
    assert breadth.CRITIC in breadth.mechanisms(t) and breadth.NAIVE in breadth.mechanisms(t)  # on every task
    for kind in ("breadth", "mechanisms"):  # every planned contrast compares two arms the study runs on that task
        runs = arms if kind == "breadth" else breadth.mechanisms(t)
        assert all(c.arm in runs and c.against in runs and c.question for c in breadth.contrasts(kind, task))


def test_planned_contrasts_and_the_seeds_they_need():
    assert breadth.planned_comparisons("breadth") == 30 and breadth.planned_comparisons("mechanisms") == 3 * 5 + 10 * 2
    assert breadth.planned_comparisons("mechanisms", ["Pendulum-v1"]) == 3
    for kind in ("breadth", "mechanisms"):
        n, m = breadth.seeds_per_group(kind), breadth.planned_comparisons(kind)
        assert stats.detectable_effect(n, n, 0.05 / m) <= 0.8 < stats.detectable_effect(n - 1, n - 1, 0.05 / m)
    assert breadth.seeds_per_group("breadth") == 53 and breadth.seeds_per_group("mechanisms") == 54
    assert breadth.replication_seeds((0, 1, 2)) == (3, 4, 5) and breadth.replication_seeds((5, 9)) == (10, 11)
    text = breadth.plan("mechanisms", ["Acrobot-v1"], 16)
    assert "13 planned contrasts" in text and "| Acrobot-v1 | naive p 0.3, critic only | naive p 0.3 |" in text


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
    rises = off + 500  # every seed from -500: the Hodges-Lehmann rise is the median of the pairwise mean rises
    walsh = (rises[:, None] + rises[None, :]) / 2
    assert bool(learn.loc["Acrobot-v1", "learned"]) and learn.loc["Acrobot-v1", "verdict"] == "rose"
    assert learn.loc["Acrobot-v1", "rise"] == pytest.approx(np.median(walsh[np.triu_indices(16)]))
    table = breadth.comparisons(frame).set_index("label")
    assert table.loc["better", "verdict"] == "better" and table.loc["better", "g"] > 2
    assert table.loc["same", "verdict"] != "better" and table.loc["same", "verdict"] != "worse"
    assert (table["holm p"] >= table["p_value"]).all()  # Holm only ever raises a p-value
    for _, r in table.iterrows():  # the interval beside each verdict excludes 0 exactly on better / worse rows
        assert (not r["diff low"] <= 0 <= r["diff high"]) == (r["verdict"] in ("better", "worse"))
        assert (not r["g level low"] <= 0 <= r["g level high"]) == (r["verdict"] in ("better", "worse"))
    flat = _frame("MountainCarContinuous-v0", np.full(16, -500.0), [])  # never rose: not learned
    assert not bool(breadth.learned(flat).loc["MountainCarContinuous-v0", "learned"])


def test_learned_is_a_paired_rank_test_one_lucky_first_episode_does_not_hide_fifteen_rises():
    """MountainCarContinuous in the committed study: 15 seeds rose by 15-19, one seed's first update was a lucky 56.
    An unpaired test of means said "did not learn"; the seeds' own pairs, ranked, say it rose (p 0.0052)."""
    first = np.array([-51.6, -51.3, -49.5, -52.0, -51.0, -51.9, -51.1, -50.9, -51.8, -52.3, -51.8, -52.4, -50.8,
                      -52.4, 56.3, -50.6])  # fmt: skip
    final = first + np.array([16.6, 15.25, 19.2, 16.45, 16.5, 16.4, 15.15, 16.1, 16.55, 17.2, 16.35, 17.0, 16.05,
                              17.8, -91.6, 15.3])  # fmt: skip
    frame = _frame("MountainCarContinuous-v0", final, []).assign(first=first)
    learn = breadth.learned(frame).loc["MountainCarContinuous-v0"]
    assert learn["learned"] and learn["p"] == pytest.approx(sps.wilcoxon(final, first).pvalue)
    assert learn["p"] == pytest.approx(0.00516, abs=1e-4) and learn["seeds that rose"] == 15 / 16


def test_fast_breadth_through_the_cli(tmp_path):
    out = tmp_path / "breadth"
    args = ["bench", "breadth", "--fast", "--tasks", "CartPole-v1", "--seeds", "0", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    finals = pd.read_csv(out / "finals.csv")
    assert len(finals) == 7 * 2 and set(finals["task"]) == {"CartPole-v1"}
    table = pd.read_csv(out / "comparisons.csv")
    assert len(table) == 6 and table["verdict"].str.startswith("too few seeds").all()  # 2 seeds: no verdicts
    report = (out / "report.md").read_text()
    assert "FAST mode" in report and "| CartPole-v1 |" in report and (out / "forest.png").stat().st_size > 10_000
    assert "## Plan (breadth study), written before the runs" in report and (out / "plan.md").exists()
    assert "=" not in report.split("## Plan")[0].replace("==", "")  # no "=" verdict anywhere in the tables
    assert json.loads((out / "groups.json").read_text())["CartPole-v1"]["group00"] == "off"
    assert breadth.folder_of("minatar:breakout") == "minatar-breakout"  # no ':' in a Windows path
    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")}
    assert main(args) == 0  # the same --out again: every run kept, nothing re-run
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")} == before
    again = tmp_path / "again"  # another study of the same configs, --reuse: every run copied, none trained
    assert main([*args[:-3], "--out", str(again), "--reuse", str(out), "--quiet"]) == 0
    assert pd.read_csv(again / "finals.csv").equals(finals)
    [timed] = json.loads((again / "timings.json").read_text())
    # timings.json keeps the path given; the report names it as seen from the study's folder, which stays true
    # wherever the two studies are copied side by side
    assert timed["runs"] == 0 and timed["copied"] == 14 and timed["from"] == str(out)
    assert "14 runs of the same configs copied from ../breadth, where" in (again / "report.md").read_text()


def test_the_time_line_names_each_part_and_says_how_a_time_read_afterwards_was_read(tmp_path):
    part = {"date": "2026-12-07 20:20", "tasks": ["CartPole-v1"], "runs": 3, "minutes": 7.6, "workers": 1,
            "machine": "M", "copied": 2, "from": str(tmp_path / "breadth")}  # fmt: skip
    parts = [part, {**part, "runs": 0, "copied": 0}, {**part, "minutes": 2.0, "note": "read from the files' times"}]
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "timings.json").write_text(json.dumps(parts))
    line = breadth._time_line(tmp_path / "study")
    assert line.startswith("Time: 9.6 minutes in all (2026-12-07 20:20: 3 runs of CartPole-v1 in 7.6 min with 1 "
                           "worker on M, and 2 runs of the same configs copied from ../breadth, where they had "
                           "finished; ")  # the part that neither ran nor copied a run is left out  # fmt: skip
    assert line.endswith("where they had finished (read from the files' times)).")
    assert breadth._time_line(tmp_path) == "Time: 0.0 minutes in all (no runs were needed)."


def test_fast_mechanisms_with_replication_through_the_cli(tmp_path):
    mech = tmp_path / "mech"
    args = ["bench", "mechanisms", "--fast", "--tasks", "MountainCarContinuous-v0", "--out", str(mech), "--quiet"]
    args += ["--replicate"]
    assert main(args) == 0  # the critic-only arm and naive in both networks on a task beyond Acrobot and CartPole
    assert len(pd.read_csv(mech / "comparisons.csv")) == 3 and set(pd.read_csv(mech / "finals.csv")["seed"]) == {0, 1}
    assert set(pd.read_csv(mech / "replication" / "finals.csv")["seed"]) == {2, 3}  # disjoint seeds
    replication = pd.read_csv(mech / "replication.csv")
    assert len(replication) == 3 and set(replication["replicated"]) == {"no claim"}  # 2 seeds: nothing claimed
    text = (mech / "report.md").read_text()
    assert "## Replication on a second set of seeds" in text
    assert re.search(r"were contradicted\. Time: [\d.]+ minutes in all \([\d-]+ [\d:]+: 6 runs of "
                     r"MountainCarContinuous-v0 in [\d.]+ min with 2 workers", text), text  # fmt: skip
    before = (mech / "report.md").read_text()
    assert main(["bench", "mechanisms", "--report-only", "--out", str(mech), "--quiet"]) == 0  # from finals.csv
    assert (mech / "report.md").read_text() == before
    comparisons = pd.read_csv(mech / "comparisons.csv")
    args = ["bench", "mechanisms", "--report-only", "--out", str(mech), "--quiet", "--resampling-seed", "1"]
    assert main(args) == 0  # a reviewer's re-read: the same verdicts, and the report says the seed
    assert pd.read_csv(mech / "comparisons.csv")["verdict"].equals(comparisons["verdict"])
    assert "Resampling seed 1 (the default is 0)." in (mech / "report.md").read_text()


@pytest.mark.parametrize(
    "args, field",
    [
        (["bench", "breadth", "--tasks", "Hopper-v5"], "--tasks"),
        (["bench", "mechanisms", "--tasks", "Hopper-v5"], "--tasks"),
        (["bench", "cartpole", "--replicate"], "--replicate"),
        (["bench", "breadth", "--report-only"], "--report-only"),
        (["bench", "breadth", "--report-only", "--out", "nowhere"], "--report-only"),
        (["bench", "breadth", "--resampling-seed", "1"], "--resampling-seed"),
        (["bench", "cartpole", "--fast"], "--fast"),
        (["bench", "breadth", "--workers", "0"], "--workers"),
        (["bench", "cartpole", "--reuse", "x"], "--reuse"),
        (["bench", "mechanisms", "--reuse", "nowhere"], "--reuse"),
    ],
)
def test_bad_study_arguments_are_one_line(capsys, args, field):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err, err


def test_the_study_figures_keep_their_legends_off_the_data():
    """The forest plot and lesson 09's scatter, drawn from the committed breadth study: each legend lies below the
    axes (the scatter's used to sit inside and hid two of the points the lesson reads), and the scatter has one point
    per group. About 1 s (no training, the committed comparisons)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = Path(__file__).resolve().parents[1] / "docs" / "studies" / "breadth"
    frame, table = pd.read_csv(study / "finals.csv"), pd.read_csv(study / "comparisons.csv")  # as breadth wrote them
    mechanism = frame[frame["mode"] != "off"].groupby(["task", "label"], sort=False)[["first_clipfrac"]].mean()
    mechanism = mechanism.join(table.set_index(["task", "label"])[["g", "verdict"]])
    for fig in (breadth.forest(table, "forest"), breadth.clipping_scatter(mechanism)):
        fig.canvas.draw()
        (ax,) = fig.axes
        (legend,) = fig.legends
        inside, box = ax.get_window_extent(), legend.get_window_extent()
        assert box.y1 <= inside.y0 and not box.overlaps(inside), (box, inside)  # wholly below the axes
        plt.close(fig)
    assert len(fig.axes[0].collections) == len(mechanism) == len(table)
