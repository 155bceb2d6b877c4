"""Sweeps (resumable, parallel, Ray), the report's statistics, and the demo's plumbing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sandbox.analysis.report import collapsed, iqm, iqm_ci, write_report
from sandbox.analysis.sweep import SpecError, adopt, expand, load_spec, run_sweep

TINY = """
[base]
preset = "cartpole"
total_steps = 512
quiet = false

[grid]
dropout_mode = ["off", "naive"]
dropout = [0.2]
seed = [0, 1]
""".replace("quiet = false\n", "")


def write_spec(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- spec errors: one line, before anything runs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("[base]\nseed = 1\n", "[grid] is empty"),
        ("[grid]\nseeds = [0, 1]\n", "[grid] seeds: unknown config field"),
        ("[base]\nlearning_rat = 0.1\n[grid]\nseed = [0]\n", "[base] learning_rat: unknown config field"),
        ("[grid]\ndropout = [0.1, 1.5]\n", "dropout=1.5: --dropout: must be in [0, 1)"),
        ('[grid]\nenv = ["CartPole-v1", "NoSuchEnv-v0"]\n', "env=NoSuchEnv-v0: --env: unknown environment id"),
        ("[grid]\nseed = []\n", "[grid] seed: must be a non-empty list"),
        ("[grid]\nseed = 3\n", "[grid] seed: must be a non-empty list"),
        ("[sweep]\nx = 1\n[grid]\nseed = [0]\n", "unknown table [sweep]"),
        ("[grid\nseed = [0]\n", "not valid TOML"),
        ('[base]\nout = "x"\n[grid]\nseed = [0]\n', "set by the sweep itself"),
        ('[base]\npreset = "atari"\n[grid]\nseed = [0]\n', "unknown preset"),
    ],
)
def test_bad_specs_fail_before_any_run(capsys, tmp_path, text, message):
    from sandbox.cli import main

    spec = write_spec(tmp_path, text)
    code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_runs_are_the_grid_product_named_by_their_values(tmp_path):
    runs = expand(*load_spec(write_spec(tmp_path, TINY)), tmp_path / "out")
    assert [r.name for r in runs] == [
        "dropout_mode=off__dropout=0.2__seed=0",
        "dropout_mode=off__dropout=0.2__seed=1",
        "dropout_mode=naive__dropout=0.2__seed=0",
        "dropout_mode=naive__dropout=0.2__seed=1",
    ]
    assert runs[0].config.num_envs == 8 and runs[0].config.total_steps == 512  # preset, then base


# --- resuming --------------------------------------------------------------------------------------------------------


def _finished(out: Path) -> dict[str, tuple[int, str]]:
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_text()) for p in out.glob("*/summary.json")}


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


RESUME = """
[base]
preset = "cartpole"

[grid]
total_steps = [512, LONG]
seed = [0]
"""


def _ctrl_c_heard() -> None:
    """In the sweep's process before it starts: Ctrl-C neither ignored nor blocked, whatever the test process
    inherited (a process started with SIGINT ignored, as a shell's background job is, never hears it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.parametrize("how", ["kill a worker", "ctrl-c"])
def test_interrupted_sweep_resumes_without_touching_finished_runs(tmp_path, how):
    for long in (12000, 48000):  # a longer run if the first one finished before the interrupt reached the sweep
        spec, out = write_spec(tmp_path, RESUME.replace("LONG", str(long)), f"resume{long}.toml"), tmp_path / f"o{long}"
        cmd = [sys.executable, "-m", "sandbox", "sweep", str(spec), "--out", str(out), "--workers", "2", "--quiet"]
        proc = subprocess.Popen(
            cmd + ["--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_heard
        )
        long_name = f"total_steps={long}__seed=0"
        deadline = time.time() + 60
        while time.time() < deadline and not (_finished(out) and (out / long_name / "metrics.csv").exists()):
            time.sleep(0.05)
        assert _finished(out) and long_name not in _finished(out), "the long run should still be running"
        if how == "kill a worker":
            workers = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            assert workers
            os.kill(workers[0], signal.SIGKILL)  # one worker dies; the sweep must stop cleanly and say so
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if not (proc.returncode == 0 and long_name in _finished(out)):  # else: it ended before the interrupt landed
            break
    assert proc.returncode in (2, 130) and "Traceback" not in err, err
    assert ("worker process died" in err) if how == "kill a worker" else ("interrupted" in err)
    before = _finished(out)
    assert long_name not in before

    counts = run_sweep(spec, out, workers=2, quiet=True)
    assert counts["skipped"] == len(before) and counts["ran"] == 2 - len(before)
    after = _finished(out)
    assert set(after) == {"total_steps=512__seed=0", long_name}
    assert all(after[name] == before[name] for name in before)  # finished runs untouched, byte for byte


def test_a_changed_sweep_is_refused_not_mixed(tmp_path):
    out = tmp_path / "out"
    run_sweep(write_spec(tmp_path, TINY), out, workers=2, quiet=True)
    changed = write_spec(tmp_path, TINY.replace("total_steps = 512", "total_steps = 768"), "changed.toml")
    with pytest.raises(SpecError, match="different config"):
        run_sweep(changed, out, workers=2, quiet=True)
    assert run_sweep(write_spec(tmp_path, TINY), out, workers=2, quiet=True)["skipped"] == 4


def test_finished_runs_of_the_same_config_are_copied_in_rather_than_trained(tmp_path):
    """adopt: another sweep's finished runs of the same config (their output fields aside) are copied into place,
    config.json rewritten for the new place, and the sweep then skips them; a run of another config is trained."""
    first = tmp_path / "first"
    run_sweep(write_spec(tmp_path, TINY), first, workers=2, quiet=True)
    wider = write_spec(tmp_path, TINY.replace("seed = [0, 1]", "seed = [0, 1, 2]"), "wider.toml")
    second = tmp_path / "second"
    runs = expand(*load_spec(wider), second)
    assert adopt(runs, first) == 4  # seeds 0 and 1 of both groups; seed 2 is nowhere
    (second / "dropout_mode=off__dropout=0.2__seed=1" / "summary.json").unlink()  # a copy cut short: partial
    for name in ("dropout_mode=naive__dropout=0.2__seed=0", "dropout_mode=off__dropout=0.2__seed=0"):
        written = json.loads((second / name / "config.json").read_text())
        assert written["out"] == str(second / name) and written["seed"] == 0
        for f in ("metrics.csv", "summary.json", "episodes.csv"):
            assert (second / name / f).read_bytes() == (first / name / f).read_bytes(), (name, f)
    counts = run_sweep(wider, second, workers=2, quiet=True)
    assert counts["skipped"] == 3 and counts["ran"] == 3  # seed 2 twice, and the copy cut short, trained here
    again = json.loads((second / "dropout_mode=off__dropout=0.2__seed=1" / "summary.json").read_text())
    assert again["final_return"] == json.loads((first / "dropout_mode=off__dropout=0.2__seed=1" /
                                                "summary.json").read_text())["final_return"]  # fmt: skip


# --- the report --------------------------------------------------------------------------------------------------


def test_statistics_on_known_answers():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0, -50.0, 2.5, 3.5])
    assert iqm(x) == pytest.approx(np.mean([2.0, 2.5, 3.0, 3.5]))  # the middle half, outliers ignored
    rng = np.random.default_rng(0)
    sample = rng.normal(10.0, 1.0, 200)
    low, high = iqm_ci(sample)
    assert low < 10.0 < high and high - low < 0.5
    small = iqm_ci(sample[:5])
    assert small[1] - small[0] > high - low  # fewer seeds, wider interval
    assert np.isnan(iqm_ci([1.0])[0])


def test_collapse_rule_on_hand_made_curves():
    assert collapsed([10, 300, 450, 480, 200], 475) is True  # reached 427.5, then fell under 237.5
    assert collapsed([10, 300, 450, 300, 250], 475) is False  # dipped, but not under half
    assert collapsed([10, 300, 200, 100], 475) is False  # never got there
    assert collapsed([0.5, 0.95, 0.3], 0.9) is True
    assert collapsed([1, 2], None) is None and collapsed([-200, -100], -100) is None


def test_report_of_a_tiny_sweep_of_three_seeds_per_group_states_no_verdict(tmp_path):
    """The report's files, and no verdict from three seeds against three: the exact test cannot go below p = 0.1 and a
    bootstrap over 3 values covers far less than 95%, so nothing may be called better or worse, whatever the numbers.
    (Smallest runs that still draw curves: 2 updates each.)"""
    out = tmp_path / "out"
    run_sweep(write_spec(tmp_path, TINY.replace("seed = [0, 1]", "seed = [0, 1, 2]")), out, workers=2, quiet=True)
    table = write_report(out, quiet=True)
    for name in (
        "report.md",
        "report.csv",
        "learning_curves.png",
        "surrogate_variance.png",
        "first_ratio_dev.png",
        "final_per_seed.png",
        "performance_profile.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert list(table.group) == ["dropout_mode=naive", "dropout_mode=off"]
    naive = table.set_index("group").loc["dropout_mode=naive"]
    assert naive.baseline == "dropout_mode=off" and 0 <= naive.p_improvement <= 1 and naive.first_ratio_dev > 0
    assert naive.poi_ci_low <= naive.p_improvement <= naive.poi_ci_high and naive.test.startswith("permutation")
    assert naive.p_value >= 0.1 and naive.verdict == "too few seeds for a verdict (n < 5)"
    assert table.set_index("group").loc["dropout_mode=off", "baseline"] == "(baseline)"
    text = (out / "report.md").read_text()
    assert "IQM" in text and "P(improvement)" in text and "![" in text
    assert "Tukey-McLaughlin" in text and "Student t" in text and "Holm" in text and "permutation test" in text
    assert "Runs that did not end finite**: none" in text
    assert "too few seeds for a verdict (n < 5)" in text
    assert "| better |" not in text and "| worse |" not in text and "**better**" not in text and "**worse**" not in text


def _fake_run(root: Path, name: str, env: str, mode: str, p: float, seed: int, final: float, **extra) -> None:
    """A finished run directory with a known final return (two metric rows), without training anything; ``extra``:
    more config fields."""
    import pandas as pd

    d = root / name / f"seed={seed}"
    d.mkdir(parents=True)
    cfg = {"algo": "ppo", "env": env, "dropout": p, "dropout_mode": mode, "seed": seed, **extra}
    (d / "config.json").write_text(json.dumps(cfg))
    summary = {"status": "ok", "final_return": final, "solved_at_steps": None, "reward_threshold": 475.0}
    (d / "summary.json").write_text(json.dumps(summary))
    row = {"first_ratio_dev": 0.0, "first_clipfrac": 0.0, "surrogate_var": 1.0, "kl_ref": 0.0}
    pd.DataFrame(
        [{"env_steps": 100, "ep_return_mean": final / 2, **row}, {"env_steps": 200, "ep_return_mean": final, **row}]
    ).to_csv(d / "metrics.csv", index=False)


def test_holm_is_applied_across_every_comparison_of_the_report(tmp_path):
    """Three comparisons over two tasks, six seeds each. Raw p: 0.0022 (shift 100), 0.035 (shift 3), 0.70; Holm
    multiplies the second smallest by 2, so the shift of 3 is significant alone (p < 0.05) but not in this report."""
    from sandbox import stats

    base = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for seed, b in enumerate(base):
        _fake_run(tmp_path, "cp-off", "CartPole-v1", "off", 0.1, seed, b)
        _fake_run(tmp_path, "cp-big", "CartPole-v1", "naive", 0.1, seed, b + 100)
        _fake_run(tmp_path, "cp-small", "CartPole-v1", "naive", 0.5, seed, b + 3)
        _fake_run(tmp_path, "ac-off", "Acrobot-v1", "off", 0.1, seed, b)
        _fake_run(tmp_path, "ac-none", "Acrobot-v1", "naive", 0.1, seed, b + 0.5)
    table = write_report(tmp_path, quiet=True).set_index("group")
    compared = table[table.test != ""]
    assert len(compared) == 3
    assert compared.p_holm.tolist() == pytest.approx(stats.holm(compared.p_value.tolist()))
    big = table.loc["PPO CartPole-v1: dropout=0.1, dropout_mode=naive"]
    small = table.loc["PPO CartPole-v1: dropout=0.5, dropout_mode=naive"]
    assert big.verdict == "better" and big.p_holm == pytest.approx(3 * big.p_value)
    assert small.p_value < 0.05 < small.p_holm and small.verdict == "not significant"
    assert table.loc["PPO Acrobot-v1: dropout_mode=naive", "verdict"] == "not significant"
    text = (tmp_path / "report.md").read_text()
    assert "Holm's correction over the 3 comparisons" in text and "no significant difference" not in text
    for row in compared.itertuples():  # the interval beside each verdict excludes 0 exactly on better / worse rows
        outside = not row.diff_level_low <= 0 <= row.diff_level_high
        assert outside == (row.verdict in ("better", "worse")) and row.exact and row.level <= 0.05
        assert row.level == pytest.approx(0.05 * row.p_value / row.p_holm)
    assert small.diff_level_low < 0 < small.diff_level_high and "detectable |g|" in text
    # finals.csv: every run, and every verdict recomputed from it alone
    import pandas as pd

    from sandbox.analysis.report import compare_finals

    finals = pd.read_csv(tmp_path / "finals.csv")
    assert len(finals) == 30 and set(finals.baseline) == {"(baseline)", "PPO CartPole-v1: dropout_mode=off",
                                                          "PPO Acrobot-v1: dropout_mode=off"}  # fmt: skip
    again = compare_finals(finals).set_index("group")
    assert again.verdict.to_dict() == compared.verdict.to_dict()
    assert again.p_holm.to_dict() == pytest.approx(compared.p_holm.to_dict())


def test_a_run_that_did_not_end_finite_is_counted_and_named(tmp_path):
    for seed in range(6):
        _fake_run(tmp_path, "off", "CartPole-v1", "off", 0.1, seed, float(seed))
        _fake_run(tmp_path, "naive", "CartPole-v1", "naive", 0.1, seed, float("nan") if seed == 4 else seed + 1.0)
    row = write_report(tmp_path, quiet=True, figures=False).set_index("group").loc["dropout_mode=naive"]
    assert row.nonfinite == 1 and row.nonfinite_seeds == "4" and row.runs == 6
    text = (tmp_path / "report.md").read_text()
    assert "Runs that did not end finite**, left out of every statistic: dropout_mode=naive: 1 (seeds 4)" in text


def test_the_reports_probability_of_improvement_and_rank_test_are_the_statistics_modules(tmp_path):
    """p_improvement (ties one half) and mw_pvalue in report.csv are sandbox.stats' on the finite finals."""
    from scipy import stats as sps

    from sandbox import stats

    base, better = [0.0, 1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0, 6.0]  # three ties among the 25 pairs
    for seed, (b, x) in enumerate(zip(base, better)):
        _fake_run(tmp_path, "off", "CartPole-v1", "off", 0.1, seed, b)
        _fake_run(tmp_path, "naive", "CartPole-v1", "naive", 0.1, seed, x)
    row = write_report(tmp_path, quiet=True, figures=False).set_index("group").loc["dropout_mode=naive"]
    assert row.p_improvement == stats.probability_of_improvement(better, base) == pytest.approx((19 + 3 / 2) / 25)
    assert row.mw_pvalue == stats.mann_whitney_pvalue(better, base) == sps.mannwhitneyu(better, base).pvalue


def test_report_errors(capsys, tmp_path):
    from sandbox.cli import main

    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_a_baseline_no_group_has_is_refused_in_one_line(capsys, tmp_path):
    """A typo in --baseline used to give a report without a single comparison; now it names the values there are.
    Python's spelling of a boolean (as the group labels print it) is read as the boolean."""
    from sandbox.analysis.report import _parse_baseline
    from sandbox.cli import main

    for seed in range(2):
        _fake_run(tmp_path, "off", "CartPole-v1", "off", 0.1, seed, 10.0)
        _fake_run(tmp_path, "naive", "CartPole-v1", "naive", 0.1, seed, 5.0)
    assert _parse_baseline("init_from_ref=False") == ("init_from_ref", False)
    assert _parse_baseline("init_from_ref=false") == ("init_from_ref", False)
    assert _parse_baseline("beta=0.0") == ("beta", 0.0) and _parse_baseline("dropout_mode=off") == (
        "dropout_mode",
        "off",
    )
    assert main(["report", str(tmp_path), "--quiet", "--baseline", "dropout_mode=of"]) == 2
    err = capsys.readouterr().err
    assert "baseline" in err and '"naive", "off"' in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(tmp_path), "--quiet", "--baseline", "beta=0.0"]) == 2
    assert "no field 'beta'" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--quiet", "--baseline", "dropout_mode"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--quiet", "--baseline", "dropout_mode=naive"]) == 0


def test_a_baseline_of_several_fields_needs_them_all(tmp_path, capsys):
    """``dropout_mode=off,sample_dropout=none``: sample dropout (with dropout off) is compared with plain PPO, not taken
    for a baseline of its own; a JSON list keeps its commas."""
    from sandbox.analysis.report import baselines, group_runs, load_runs
    from sandbox.analysis.report.tables import _parse_baselines
    from sandbox.cli import main

    assert _parse_baselines("dropout_mode=off,sample_dropout=none") == [
        ("dropout_mode", "off"),
        ("sample_dropout", "none"),
    ]
    assert _parse_baselines("hidden_sizes=[64, 64], beta=0.0") == [("hidden_sizes", [64, 64]), ("beta", 0.0)]
    for seed in range(2):
        _fake_run(tmp_path, "off", "CartPole-v1", "off", 0.1, seed, 10.0, sample_dropout="none")
        _fake_run(tmp_path, "naive", "CartPole-v1", "naive", 0.1, seed, 5.0, sample_dropout="none")
        _fake_run(tmp_path, "dppo", "CartPole-v1", "off", 0.1, seed, 7.0, sample_dropout="dppo")
    groups = group_runs(load_runs(tmp_path))
    by_dir = {g.runs[0].path.parent.name: g for g in groups}  # the group's directory: off, naive, dppo
    bases = baselines(groups, "dropout_mode=off,sample_dropout=none")
    assert bases[by_dir["dppo"].key] is by_dir["off"] and bases[by_dir["naive"].key] is by_dir["off"]
    assert bases[by_dir["off"].key] is by_dir["off"]
    assert baselines(groups)[by_dir["dppo"].key] is by_dir["dppo"]  # dropout_mode=off alone: a baseline of its own
    assert main(["report", str(tmp_path), "--quiet", "--baseline", "dropout_mode=off,sample_dropout=sdpo"]) == 2
    assert "sample_dropout" in capsys.readouterr().err


def test_a_baseline_spelled_as_an_integer_finds_its_float_group(tmp_path):
    """``--baseline dropout=0`` passes the check (0 == 0.0), so it must also find the runs' dropout=0.0 group: groups
    are keyed by their JSON, where 0 is not 0.0, and the report had no comparison at all."""
    from sandbox.analysis.report import baselines, check_baseline, group_runs, load_runs

    for seed in range(2):
        _fake_run(tmp_path, "p0", "CartPole-v1", "naive", 0.0, seed, 10.0)
        _fake_run(tmp_path, "p1", "CartPole-v1", "naive", 0.1, seed, 5.0)
    groups = group_runs(load_runs(tmp_path))
    for spec in ("dropout=0", "dropout=0.0"):
        check_baseline(groups, spec)
        assert [b.config["dropout"] for b in baselines(groups, spec).values()] == [0.0, 0.0], spec


def test_key_table_shortens_the_dropout_fields_only():
    from types import SimpleNamespace

    from sandbox.analysis.report import _short_group

    row = SimpleNamespace(task="PPO CartPole-v1", group="PPO CartPole-v1: dropout=0.2, sample_dropout=dppo")
    assert _short_group(row) == "p=0.2, sample_dropout=dppo"
    row = SimpleNamespace(task="PPO CartPole-v1", group="PPO CartPole-v1: dropout=0.1, dropout_mode=naive")
    assert _short_group(row) == "p=0.1, naive"


# --- Ray -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a Ray instance started here: 40-75 s, run by make test-slow (and CI) with the two-node cluster
def test_ray_backend_on_a_local_instance(tmp_path):
    """Each Ray task returns its run directories and this process writes them (sandbox/analysis/cluster.py): whole,
    with the driver's path in config.json and in policy.pt's config, nothing half-written left behind."""
    pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")
    import torch

    out = tmp_path / "out"
    counts = run_sweep(write_spec(tmp_path, TINY), out, workers=2, backend="ray", quiet=True)
    assert counts == {"total": 4, "skipped": 0, "ran": 4, "failed": 0}
    for summary in out.glob("*/summary.json"):
        assert json.loads(summary.read_text())["status"] == "ok"
        run = summary.parent
        assert sorted(p.name for p in run.iterdir()) == [
            "config.json", "episodes.csv", "metrics.csv", "policy.pt", "summary.json"]  # fmt: skip
        assert json.loads((run / "config.json").read_text())["out"] == str(run)
        assert torch.load(run / "policy.pt", weights_only=True)["config"]["out"] == str(run)
    assert not list(out.glob(".*"))
    import sandbox

    for run in expand(*load_spec(write_spec(tmp_path, TINY)), out):  # same numbers as a run in this process
        here = sandbox.train(run.config.replace(out=None))
        assert json.loads((run.dir / "summary.json").read_text())["final_return"] == here.summary["final_return"]


def test_a_run_directory_that_comes_back_never_replaces_one_that_is_there(tmp_path):
    from sandbox.analysis.cluster import land

    files = {
        "config.json": b"{}\n",
        "metrics.csv": b"update\n",
        "checkpoints/update-000001.pt": b"x",
        "summary.json": b"{}",
    }
    land(tmp_path / "a", files)
    assert (tmp_path / "a" / "checkpoints" / "update-000001.pt").read_bytes() == b"x"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoints", "config.json", "metrics.csv",
                                                                   "summary.json"]  # fmt: skip
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "summary.json").write_text("finished")
    with pytest.raises(OSError, match="appeared while its run trained"):
        land(tmp_path / "b", files)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (tmp_path / "b" / "summary.json").read_text() == "finished"


def test_a_node_with_other_versions_is_named_in_one_line():
    from sandbox.analysis.cluster import version_drift, versions

    here = versions()
    assert version_drift(here, {**here, "node": "n2"}) is None
    line = version_drift(here, {**here, "torch": "2.0.0", "node": "n2"})
    assert line == f"node n2 trains with torch 2.0.0 (here {here['torch']}): its runs' numbers may differ"


def test_the_cluster_options_are_checked_in_one_line_by_sweep_and_the_studies(tmp_path, capsys):
    """Without a cluster: what the options allow, and an address where nothing answers, for sweep, bench breadth and
    bench minatar alike (the cluster itself: tests/test_cluster.py)."""
    pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")
    import socket

    from sandbox.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    spec = str(write_spec(tmp_path, TINY))
    out = ["--out", str(tmp_path / "out")]
    study = ["--fast", "--quiet", *out]
    cases = [
        (["sweep", spec, *out, "--address", closed], "--address: joins a Ray cluster: add --backend ray"),
        (["sweep", spec, *out, "--backend", "ray", "--ray-token-file", "t"], "--ray-token-file: is the token of the"),
        (["sweep", spec, *out, "--backend", "ray", "--address", "ray://h:10001"], "--address: ray://h:10001 is a Ray"),
        (["sweep", spec, *out, "--backend", "ray", "--address", closed, "--ray-token-file", spec + ".no"],
         f"--ray-token-file: {spec}.no: no such file"),
        (["bench", "cartpole", "--backend", "ray"], "--backend: only for bench breadth, mechanisms and minatar"),
        (["sweep", spec, *out, "--backend", "ray", "--address", closed], f"--address: nothing answers at {closed}"),
        (["bench", "breadth", "--tasks", "CartPole-v1", *study, "--backend", "ray", "--address", closed],
         f"--address: nothing answers at {closed}"),
        (["bench", "minatar", "--games", "breakout", *study, "--backend", "ray", "--address", closed],
         f"--address: nothing answers at {closed}"),
    ]  # fmt: skip
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"sandbox {argv[0]}: error: {expected}"), err


# --- the demo's plumbing ---------------------------------------------------------------------------------------------


def test_demo_fast_runs_every_spec_and_writes_the_report(tmp_path):
    from sandbox.analysis.demo import run_demo

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("precious")
    table = run_demo(workers=2, out=str(tmp_path / "demo"), quiet=True, fast=True)
    assert (tmp_path / "demo" / "notes.txt").read_text() == "precious"
    assert len(table) == 8  # 4 PPO groups + 4 GRPO groups
    assert (tmp_path / "demo" / "report.md").exists() and (tmp_path / "demo" / "reward_kl.png").exists()
    for name in ("ppo-cartpole", "grpo-reverse"):
        assert load_spec(tmp_path / "demo" / name / "spec.toml")  # the specs are kept, reusable
    again = run_demo(workers=2, out=str(tmp_path / "demo"), quiet=True, fast=True)  # resumes: nothing to run
    assert again.equals(table)


def test_dropout_off_groups_are_labelled_without_their_inert_rate():
    import pandas as pd

    from sandbox.analysis.report import RunData, group_runs

    def run(mode, p, seed=0):
        cfg = {"algo": "ppo", "env": "CartPole-v1", "dropout": p, "dropout_mode": mode, "seed": seed}  # Config order
        return RunData(Path("."), cfg, {}, pd.DataFrame())

    labels = [g.label for g in group_runs([run("naive", 0.1), run("naive", 0.5), run("off", 0.1)])]
    assert labels == ["dropout=0.1, dropout_mode=naive", "dropout=0.5, dropout_mode=naive", "dropout_mode=off"]
    # two dropout-off groups that differ only in the (inert) rate keep the rate, so that no two labels collide
    labels = [g.label for g in group_runs([run("off", 0.1), run("off", 0.5)])]
    assert labels == ["dropout=0.1", "dropout=0.5"]


def test_figures_put_p_on_the_x_axis_and_dropout_off_in_every_panel_it_is_the_baseline_of():
    """The demo's layout: PPO groups at p = 0.1 and 0.5 with one dropout-off group (its p inert), GRPO groups at one p
    with beta varying. One row per task; p (else beta) is the x field; dropout off is drawn in both p panels."""
    import pandas as pd

    from sandbox.analysis.report import RunData, _facets, _tasks, baselines, group_runs

    def run(algo, env, mode, p, beta=0.0):
        cfg = {"algo": algo, "env": env, "dropout": p, "dropout_mode": mode, "beta": beta, "seed": 0}
        return RunData(Path("."), cfg, {}, pd.DataFrame())

    runs = [run("ppo", "CartPole-v1", m, p) for m in ("naive", "consistent") for p in (0.1, 0.5)]
    runs += [run("ppo", "CartPole-v1", "off", 0.1)]
    runs += [run("grpo", "lang:reverse", m, 0.1, beta) for m in ("off", "naive") for beta in (0.0, 0.04)]
    groups = group_runs(runs)
    tasks = _tasks(groups)
    assert [(t.name, t.x_field, t.style_fields) for t in tasks] == [
        ("GRPO lang:reverse", "beta", []),
        ("PPO CartPole-v1", "dropout", []),
    ]
    ppo = tasks[1]
    assert [g.mode for g in ppo.groups] == ["off", "naive", "naive", "consistent", "consistent"]  # MODE_COLORS order
    panels = _facets(ppo, baselines(groups))
    assert [title for title, _ in panels] == ["p = 0.1", "p = 0.5"]
    for _, members in panels:
        assert [g.mode for g in members] == ["off", "naive", "consistent"]


# --- populations ---------------------------------------------------------------------------------------------------


def test_a_sweep_trains_the_seeds_of_each_config_as_populations(tmp_path):
    spec = write_spec(tmp_path, TINY.replace("seed = [0, 1]", "seed = [0, 1, 2]"))
    counts = run_sweep(spec, tmp_path / "out", workers=1, quiet=True, population=2)
    assert counts == {"total": 6, "skipped": 0, "ran": 6, "failed": 0}
    sizes = sorted(
        json.loads((d / "summary.json").read_text())["population"] for d in (tmp_path / "out").iterdir() if d.is_dir()
    )
    assert sizes == [1, 1, 2, 2, 2, 2]  # per config: seeds 0 and 1 together, seed 2 on its own
    again = run_sweep(spec, tmp_path / "out", workers=1, quiet=True, population=2)
    assert again["skipped"] == 6 and again["ran"] == 0


def test_configs_a_population_cannot_take_run_one_seed_at_a_time(tmp_path):
    from sandbox.analysis.sweep import jobs

    ppo = expand({"preset": "cartpole", "total_steps": 512}, {"seed": [0, 1, 2]}, tmp_path / "a")
    stop = expand({"preset": "cartpole", "stop_at_threshold": True}, {"seed": [0, 1]}, tmp_path / "b")
    grpo = expand({"algo": "grpo", "env": "lang:reverse"}, {"seed": [0, 1]}, tmp_path / "c")
    assert sorted(len(j) for j in jobs(ppo + stop + grpo, 16)) == [1, 1, 1, 1, 3]
    assert sorted(len(j) for j in jobs(ppo, 0)) == [1, 1, 1]


def test_population_flag_from_the_command_line(capsys, tmp_path):
    from sandbox.cli import main

    spec = write_spec(tmp_path, TINY)
    assert (
        main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--population", "off", "--quiet", "--no-report"]) == 0
    )
    assert json.loads(next((tmp_path / "o").glob("*/summary.json")).read_text())["population"] == 1
    assert main(["sweep", str(spec), "--out", str(tmp_path / "p"), "--population", "two", "--quiet"]) == 2
    assert "--population: must be a positive integer or off" in capsys.readouterr().err


def test_train_many_returns_what_train_returns_in_order():
    import sandbox
    from sandbox.metrics import TIMING_COLUMNS

    cfgs = [sandbox.preset("cartpole", total_steps=512, quiet=True, seed=s) for s in (0, 1)]
    cfgs.append(
        sandbox.Config(algo="grpo", env="CartPole-v1", prompts_per_update=2, group_size=2, total_steps=300, quiet=True)
    )
    many = sandbox.train_many(cfgs, workers=2)
    assert [r.config.seed for r in many] == [0, 1, 0] and many[2].config.algo == "grpo"
    alone = sandbox.train(cfgs[2]).metrics.drop(columns=list(TIMING_COLUMNS))
    assert many[2].metrics.drop(columns=list(TIMING_COLUMNS)).equals(alone)  # a run on its own: the same numbers
    assert all(r.summary["population"] == 2 for r in many[:2])  # the two seeds of one config: one population


def test_the_mechanism_table_has_the_critic_s_first_value_dev_next_to_first_ratio_dev(tmp_path):
    """first_value_dev, the mean of the runs' column, stands next to first_ratio_dev; a run written before the column
    existed reads "-" (NaN), and a report of only such runs has no such column."""
    import pandas as pd

    new, old = tmp_path / "new", tmp_path / "old"
    for root in (new, old):
        for seed in range(2):
            _fake_run(root, "off", "CartPole-v1", "off", 0.1, seed, 10.0 + seed)
            _fake_run(root, "naive", "CartPole-v1", "naive", 0.1, seed, 20.0 + seed)
    for seed, dev in ((0, 0.25), (1, 0.35)):  # the new sweep's naive runs have the column: 0.3 over the group
        path = new / "naive" / f"seed={seed}" / "metrics.csv"
        pd.read_csv(path).assign(first_value_dev=dev).to_csv(path, index=False)
    table = write_report(new, quiet=True, figures=False).set_index("group")
    assert table.loc["dropout_mode=naive", "first_value_dev"] == pytest.approx(0.3)
    assert np.isnan(table.loc["dropout_mode=off", "first_value_dev"])
    text = (new / "report.md").read_text()
    assert "| group | first_ratio_dev | first_value_dev | first_clipfrac |" in text
    assert "first_value_dev = mean |V - V_old|" in text
    write_report(old, quiet=True, figures=False)
    assert "first_value_dev" not in (old / "report.md").read_text()


def test_a_report_re_read_with_another_resampling_seed_keeps_every_verdict(tmp_path, capsys):
    """``sandbox report DIR --resampling-seed 1``: 16 seeds against 16 are too many splits to enumerate, so the p is
    drawn; another seed moves a p within its bounds, no verdict, and the title and report.json say the seed. A
    negative seed is refused in one line."""
    import pandas as pd

    from sandbox.cli import main

    for seed in range(16):
        _fake_run(tmp_path, "off", "CartPole-v1", "off", 0.1, seed, float(seed % 7))
        _fake_run(tmp_path, "naive", "CartPole-v1", "naive", 0.1, seed, float(seed % 7) - 2.5 + 0.1 * seed)
    assert main(["report", str(tmp_path), "--quiet"]) == 0
    first = pd.read_csv(tmp_path / "report.csv").set_index("group")
    assert main(["report", str(tmp_path), "--quiet", "--resampling-seed", "1", "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "report.csv").set_index("group")
    row, other = first.loc["dropout_mode=naive"], again.loc["dropout_mode=naive"]
    assert not row.exact and row.p_value != other.p_value  # drawn, and drawn otherwise
    assert row.p_low <= other.p_value <= row.p_high and row.verdict == other.verdict
    assert (tmp_path / "again" / "report.md").read_text().startswith("# Sweep report: ")
    assert ", resampling seed 1" in (tmp_path / "again" / "report.md").read_text().splitlines()[0]
    assert json.loads((tmp_path / "again" / "report.json").read_text())["resampling_seed"] == 1
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--resampling-seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--resampling-seed" in err and "non-negative" in err, err
