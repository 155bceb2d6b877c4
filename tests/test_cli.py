"""The command line: every bad input gives one line naming the flag, exit code 2, no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.cli import main

FAST = ["--total-steps", "512", "--quiet"]


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, flag, allowed",
    [
        (["--dropout", "1.5"], "--dropout", "[0, 1)"),
        (["--dropout", "-0.1"], "--dropout", "[0, 1)"),
        (["--dropout", "abc"], "--dropout", "float"),
        (["--env", "CartPole-v9"], "--env", "CartPole-v1"),
        (["--env", "NoSuchEnv-v0"], "--env", "unknown environment id"),
        (["--env", "FrozenLake-v1"], "--env", "supported: a 1-D Box"),
        (["--env", "Blackjack-v1"], "--env", "supported: a 1-D Box"),
        (["--total-steps", "0"], "--total-steps", "positive integer"),
        (["--total-steps", "-100"], "--total-steps", "positive integer"),
        (["--num-envs", "0"], "--num-envs", "positive integer"),
        (["--num-steps", "0"], "--num-steps", "positive integer"),
        (["--update-epochs", "0"], "--update-epochs", "positive integer"),
        (["--dropout-mode", "sometimes"], "--dropout-mode", "off, rollout-eval, naive, consistent"),
        (["--algo", "a2c"], "--algo", "ppo"),
        (["--preset", "atari"], "--preset", "cartpole"),
        (["--learning-rate", "0"], "--learning-rate", "(0, 1]"),
        (["--gamma", "1.5"], "--gamma", "[0, 1]"),
        (["--no-such-flag", "1"], "unrecognized arguments", "--no-such-flag"),
        (["--seed", "-1"], "--seed", "[0, 2**32)"),
        (["--env", "LunarLander-v3"], "--env", "cannot be built here"),
        (["--total-steps", "100"], "--total-steps", "at least one batch"),
        (["--target-kl", "none"], "--target-kl", "none"),
        (["--out", "/proc/no/such/dir"], "--out", "cannot create"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(capsys, tmp_path, args, flag, allowed):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *FAST, "--out", str(out_dir), *args)  # the bad value comes last
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert flag in lines[0] and allowed in lines[0], lines[0]
    assert not out_dir.exists()  # a refused config writes nothing


def test_existing_out_is_refused_unless_overwrite(capsys, tmp_path):
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "train", "--preset", "cartpole", "--out", str(out_dir), *FAST)[0] == 0
    before = (out_dir / "metrics.csv").read_text()
    code, _, err = run_cli(capsys, "train", "--preset", "cartpole", "--out", str(out_dir), *FAST)
    assert code == 2 and "--out" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out_dir / "metrics.csv").read_text() == before
    code, out, _ = run_cli(
        capsys, "train", "--preset", "cartpole", "--out", str(out_dir), "--seed", "1", "--overwrite", *FAST
    )
    assert code == 0 and json.loads((out_dir / "config.json").read_text())["seed"] == 1


def test_overwrite_never_deletes_what_a_run_did_not_write(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    (tmp_path / "old-run").mkdir()
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path), "--overwrite", *FAST)
    assert code == 2 and "not a run directory" in err
    assert (tmp_path / "notes.txt").read_text() == "precious" and (tmp_path / "old-run").is_dir()


def test_bench_checks_the_json_path_before_running(capsys):
    code, _, err = run_cli(capsys, "bench", "cartpole", "--json", "/no/such/dir/out.json")
    assert code == 2 and "--json" in err


def test_bench_refuses_options_its_target_would_ignore(capsys):
    code, _, err = run_cli(capsys, "bench", "cartpole", "--out", "somewhere")
    assert code == 2 and "--out" in err and "grpo-lambda" in err
    code, _, err = run_cli(capsys, "bench", "population", "--max-steps", "1000")
    assert code == 2 and "--max-steps" in err and "cartpole" in err


def test_preset_sets_defaults_and_flags_override_it(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(
        capsys,
        "train",
        "--preset",
        "cartpole",
        "--update-epochs",
        "3",
        "--dropout",
        "0.1",
        "--dropout-mode",
        "consistent",
        "--out",
        str(out_dir),
        *FAST,
    )
    assert code == 0 and str(out_dir) in out
    cfg = json.loads((out_dir / "config.json").read_text())
    assert (cfg["num_envs"], cfg["num_steps"], cfg["gae_lambda"], cfg["update_epochs"]) == (8, 32, 0.8, 3)
    assert (cfg["dropout"], cfg["dropout_mode"], cfg["total_steps"]) == (0.1, "consistent", 512)


def test_stop_at_threshold_flag(capsys, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "train",
        "--preset",
        "cartpole",
        "--seed",
        "1",
        "--stop-at-threshold",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert code == 0 and summary["solved_at_steps"] == summary["env_steps"] and "solved at" in out


def test_help_shows_field_docstrings(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--dropout-mode" in text and "stored and reused" in text and "--stop-at-threshold" in text


def test_no_command_prints_usage(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("launcher", [["sandbox"], [sys.executable, "-m", "sandbox"]])
def test_real_process_exit_codes_and_no_traceback(tmp_path, launcher):
    if launcher == ["sandbox"]:
        launcher = [str(Path(sys.executable).with_name("sandbox"))]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    bad = subprocess.run([*launcher, "train", "--dropout", "2"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    ok = subprocess.run(
        [*launcher, "train", "--out", str(tmp_path / "r"), *FAST], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r" / "summary.json").exists()


def test_non_finite_loss_exit_code_and_message(capsys, tmp_path, monkeypatch):
    import sandbox.maths

    def nan_loss(ratio, adv, clip_coef, clip_coef_high=None):
        return ratio * float("nan")

    monkeypatch.setattr(sandbox.maths.Maths, "__init__", _maths_init_with(ppo_loss=nan_loss))
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), *FAST)
    assert code == 1 and "non-finite loss" in err and len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "non-finite-loss"


def _maths_init_with(**overrides):
    import dataclasses

    import sandbox.maths

    fields = {f.name: f.default for f in dataclasses.fields(sandbox.maths.Maths)}

    def init(self, **kw):
        for k, v in {**fields, **overrides, **kw}.items():
            object.__setattr__(self, k, v)

    return init


@pytest.mark.parametrize(
    "args, flag, allowed",
    [
        (["--algo", "grpo", "--env", "lang:poetry"], "--env", "lang:reverse"),
        (["--algo", "grpo", "--env", "lang:digit", "--sparse"], "--sparse", "lang:reverse and lang:sort"),
        (["--algo", "grpo", "--env", "lang:reverse", "--partial-credit"], "--partial-credit", "lang:add"),
        (["--algo", "grpo", "--env", "lang:reverse", "--group-size", "1"], "--group-size", ">= 2"),
        (["--algo", "grpo", "--env", "lang:reverse", "--scale-rewards", "median"], "--scale-rewards", "group"),
        (["--algo", "grpo", "--env", "lang:reverse", "--loss-agg", "sum"], "--loss-agg", "dr_grpo"),
        (["--algo", "grpo", "--env", "lang:reverse", "--kl-estimator", "k4"], "--kl-estimator", "k3"),
        (["--algo", "grpo", "--env", "lang:reverse", "--kl-in", "value"], "--kl-in", "reward"),
        (["--algo", "grpo", "--env", "lang:reverse", "--beta", "-1"], "--beta", "[0, inf)"),
        (["--algo", "grpo", "--env", "lang:reverse", "--kl-target", "1"], "--kl-target", "--beta > 0"),
        (["--algo", "grpo", "--env", "lang:reverse", "--temperature", "0"], "--temperature", "(0, 100]"),
        (["--algo", "grpo", "--env", "lang:reverse", "--update-epochs", "0"], "--update-epochs", "positive integer"),
        (["--algo", "grpo", "--env", "lang:reverse", "--mu", "2"], "--mu", "renamed --update-epochs"),
        (["--algo", "grpo", "--gamma", "0.9"], "--gamma", "not for GRPO on Gym tasks, which ignores it"),
        (["--env", "lang:reverse", "--num-envs", "8"], "--num-envs", "not for PPO on language tasks"),
        (["--group-size", "4"], "--group-size", "not for PPO on Gym tasks"),
        (["--no-dropout-policy"], "--dropout-policy", "needs --dropout-value"),
        (["--algo", "grpo", "--no-dropout-policy"], "--dropout-policy", "only for PPO on Gym tasks"),
        (["--algo", "grpo", "--env", "lang:reverse", "--dropout-value"], "--dropout-value", "only for PPO on Gym"),
    ],
)
def test_language_and_grpo_bad_input(capsys, tmp_path, args, flag, allowed):
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--quiet", "--out", str(out_dir), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert flag in err and allowed in err, err
    assert not out_dir.exists()


def test_pretrain_command(capsys):
    code, out, _ = run_cli(capsys, "pretrain", "--env", "lang:digit", "--quiet", "--sft-steps", "50")
    assert code == 0 and "reference mean reward" in out and "digit:" in out
    code, _, err = run_cli(capsys, "pretrain", "--env", "lang:nope")
    assert code == 2 and "unknown language task" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dropout"], "--dropout: missing or unexpected value"),
        (["train", "--dropout", "--seed", "1"], "--dropout: missing or unexpected value"),
        (["train", "--algo", "a2c"], "--algo: invalid choice 'a2c'; one of: ppo, grpo, sb3-ppo"),
        (["train", "--seed", "x"], "--seed: cannot read 'x' as int"),
        (["train", "--dropout=abc"], "--dropout: cannot read 'abc' as float or None"),
        (["train", "--num-minibatches", "x"], "--num-minibatches: cannot read 'x' as int or None"),
        (["train", "--hidden-sizes", "a", "b"], "--hidden-sizes: cannot read 'a', 'b' as [int [int ...]]"),
        (["train", "--env-params", "masscart"], "--env-params: cannot read 'masscart' as [str float [str float ...]]"),
        (["train", "--dropout", "abc", "--seed", "x"], "--seed: cannot read 'x' as int"),
        (["train", "--quiet=yes"], "unrecognized arguments: yes (see --help)"),
        (["train", "--bogus", "--dropout", "abc"], "unrecognized arguments: --bogus (see --help)"),
        (["eval"], "missing required arguments: run-dir"),
        (["eval", "--bogus"], "run-dir: missing or unexpected value"),
        (["eval", "d", "--env-params", "m", "x"],
         "--env-params: cannot read 'm', 'x' as [str float [str float ...]] or None"),
        (["bench", "--seeds", "1", "2"],
         "target: invalid choice '2'; one of: cartpole, lang, sweep, report, population, grpo-lambda, flatness, "
         "grading, breadth, mechanisms, minatar"),
        (["bench", "cartpole", "--seeds", "0", "x"], "--seeds: cannot read '0', 'x' as [int [int ...]] or None"),
        (["sweep"], "missing required arguments: spec, --out"),
        (["pretrain", "--sft-steps", "x", "--bogus"], "missing required arguments: --env"),
        (["grade", "hw9", "x.py"], "HW (an assignment folder): hw9 is neither hw1 ... hw6 nor a folder holding "
         "assignment.json"),
        (["grade", "hw1", "x", "--timeout", "x"], "--timeout: cannot read 'x' as float"),
        (["report", "d", "--", "e"], "unrecognized arguments: e (see --help)"),
    ],
)  # fmt: skip
def test_every_kind_of_parse_error_is_one_exact_line(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.strip().splitlines() == [f"sandbox {args[0]}: error: {message}"], err


def test_a_value_of_any_type_tyro_reads_is_refused_in_one_line():
    """The one line does not depend on the field's type: the value comes back unread from tyro and is named with
    its field."""
    import dataclasses

    from sandbox.cli.parsing import UsageError, parse

    @dataclasses.dataclass
    class Unusual:
        values: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    assert parse(Unusual, ["--values", "1", "a", "2", "b"], "prog").values == [(1, "a"), (2, "b")]
    with pytest.raises(UsageError, match=r"^--values: cannot read 'x', 'y' as list\[tuple\[int, str\]\]$"):
        parse(Unusual, ["--values", "x", "y"], "prog")


def test_the_package_uses_no_private_part_of_tyro():
    """tyro's public API only (tyro.cli, tyro.conf): its underscore modules may change in any release."""
    import ast

    private = []
    for path in (Path(__file__).resolve().parents[1] / "sandbox").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tyro":
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tyro":
                names = [f"tyro.{node.attr}"]
            private += [f"{path.name}: {n}" for n in names if n.startswith("tyro.") and "._" in n]
    assert private == []
