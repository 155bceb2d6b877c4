"""Results read back and reports a researcher can keep: sandbox.load (a run, a sweep; a row per run or per update),
the report's figures from the frame, reports against two baselines side by side, the fixed settings stated, spreads
that differ several-fold remarked on, tables as markdown and LaTeX.

Cost: about 15 s on 2 busy cores (six CartPole runs of 512 steps, three reports with their figures).
"""

import json
import math

import pandas as pd
import pytest

import sandbox
from sandbox.analysis.report import to_latex, to_markdown, write_report
from sandbox.cli import main
from sandbox.metrics import METRIC_COLUMNS


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three groups of two seeds, critic-only dropout at p 0.2 (what the labels leave unsaid) in two of them."""
    root = tmp_path_factory.mktemp("sweep")
    for mode in ("off", "naive", "consistent"):
        for seed in (0, 1):
            sandbox.train(
                sandbox.preset("cartpole", total_steps=512, seed=seed, dropout_mode=mode, dropout=0.2,
                               dropout_value=True, dropout_policy=False, quiet=True,
                               out=str(root / f"{mode}-s{seed}"))
            )  # fmt: skip
    write_report(root, quiet=True)
    return root


def test_load_a_sweep_as_one_frame_the_report_uses(sweep):
    runs = sandbox.load(sweep)
    assert len(runs) == 6 and list(runs.columns[:4]) == ["path", "group", "task", "final"]
    assert {"dropout_mode", "seed", "clip_coef", "status", "final_return", "env_steps"} <= set(runs.columns)
    assert set(runs.group) == {"dropout_mode=off", "dropout_mode=naive", "dropout_mode=consistent"}
    finals = pd.read_csv(sweep / "finals.csv")  # the report's per-seed finals: a slice of the same frame
    pd.testing.assert_frame_equal(
        runs[["group", "seed", "final"]].reset_index(drop=True), finals[["group", "seed", "final"]], check_dtype=False
    )
    assert (runs.final == runs.final_return).all()
    long = sandbox.load(sweep, metrics=True)
    assert len(long) == runs.env_steps.sum() // 256 and set(METRIC_COLUMNS) <= set(long.columns)  # 2 updates a run
    assert long.groupby("path").update.max().eq(2).all() and "dropout_mode" in long.columns
    one = sandbox.load(runs.path.iloc[0])  # a single run directory
    assert len(one) == 1 and one.group.iloc[0] == "all runs"


def test_load_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(sandbox.ConfigError, match="holds no finished run"):
        sandbox.load(tmp_path)
    with pytest.raises(sandbox.ConfigError, match="no such run, sweep or study"):
        sandbox.load(tmp_path / "nope")


def test_the_report_figures_from_a_frame(sweep):
    runs = sandbox.load(sweep)
    fig = sandbox.figure(runs[runs.dropout_mode != "consistent"], "final_per_seed")
    title = fig._suptitle.get_text()
    assert "dropout=0.2" in title and "dropout_policy=False" in title and "dropout_value=True" in title
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["off", "naive"]  # only the runs of the filtered frame
    assert sandbox.figure(sandbox.load(sweep, metrics=True), "learning_curves") is not None  # the long frame too
    with pytest.raises(sandbox.ConfigError, match="unknown figure 'curves'; one of: learning_curves"):
        sandbox.figure(runs, "curves")
    with pytest.raises(sandbox.ConfigError, match="for language tasks"):
        sandbox.figure(runs, "reward_kl")


def test_the_report_states_its_fixed_settings(sweep):
    text = (sweep / "report.md").read_text()
    assert (
        "**Fixed settings**" in text and "with dropout: dropout=0.2, dropout_value=True, dropout_policy=False" in text
    )
    assert "detectable \\|g\\|" in text  # a pipe inside a cell is escaped: the table keeps its columns
    tex = (sweep / "report.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"dropout\_mode=naive" in tex


def test_two_baselines_two_reports(capsys, sweep):
    code = main(["report", str(sweep), "--baseline", "dropout_mode=naive", "--quiet"])
    out = capsys.readouterr().out
    theirs = sweep / "report-dropout_mode_naive"
    assert code == 0 and out.strip() == f"report: {theirs / 'report.md'}"
    assert json.loads((theirs / "report.json").read_text())["baseline"] == "dropout_mode=naive"
    assert json.loads((sweep / "report.json").read_text())["baseline"] == "dropout_mode=off"  # the first one kept
    assert "against dropout_mode=naive" in (theirs / "report.md").read_text().splitlines()[0]
    for args, message in [
        (["--baseline", "dropout_mode=naive", "--out", str(sweep)], "holds the report of"),
        (["--out", str(theirs)], "against dropout_mode=naive; choose another --out for the report against"),
        (["--out", str(sweep / "off-s0")], "is not empty and holds no report"),
    ]:
        code = main(["report", str(sweep), "--quiet", *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
    code = main(["report", str(sweep), "--quiet", "--out", str(sweep / "mine")])  # a new folder: fine
    assert code == 0 and (sweep / "mine" / "report.md").is_file()


def test_spreads_that_differ_several_fold_are_remarked_on():
    from sandbox.analysis.report.markdown import _spreads

    table = pd.DataFrame(
        {
            "group": ["off", "naive", "consistent"],
            "baseline": ["(baseline)", "off", "off"],
            "final_std": [96.2, 12.4, 80.0],
            "verdict": ["", "better", "not significant"],
        }
    )
    note = _spreads(table)
    assert "naive: 12.4 against 96.2 for off (7.8x narrower)" in note and "consistent" not in note
    assert _spreads(table.assign(final_std=[10.0, 12.0, 9.0])) == ""


def test_tables_as_markdown_and_latex():
    frame = pd.DataFrame(
        {"group": ["p=0.1 & naive_x", "off"], "final": [123.456, math.nan], "verdict": ["**worse**", "|g|"]}
    )
    md = to_markdown(frame)
    assert md.splitlines()[2] == "| p=0.1 & naive_x | 123 | **worse** |" and "\\|g\\|" in md
    tex = to_latex(frame, caption="Finals, 95%", label="tab:f")
    assert r"p=0.1 \& naive\_x & 123 & \textbf{worse} \\" in tex and r"\caption{Finals, 95\%}" in tex
    assert r"off & - & |g| \\" in tex and r"\begin{tabular}{lrr}" in tex
