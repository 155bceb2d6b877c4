"""--tensorboard DIR: every trainer's metrics rows in TensorBoard, equal to metrics.csv; a one-line error without the
package."""

import importlib.util
import math

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sandbox
from sandbox.cli import main

CONFIGS = {
    "ppo-gym": dict(algo="ppo", env="CartPole-v1", num_envs=4, num_steps=64, total_steps=512),
    "sb3-ppo": dict(algo="sb3-ppo", env="CartPole-v1", num_envs=4, num_steps=64, total_steps=512),
    "grpo-gym": dict(algo="grpo", env="CartPole-v1", prompts_per_update=2, group_size=4, total_steps=1200),
}


@pytest.mark.parametrize("trainer", CONFIGS)
def test_tensorboard_holds_the_metrics_rows_of_every_trainer(tmp_path, trainer):
    out = tmp_path / "runs" / "one"
    cfg = sandbox.Config(**CONFIGS[trainer], dropout=0.1, out=str(out), tensorboard=str(tmp_path / "tb"), quiet=True)
    sandbox.train(cfg)
    events = EventAccumulator(str(tmp_path / "tb" / "one"))  # one subdirectory per run, named after its directory
    events.Reload()
    csv = pd.read_csv(out / "metrics.csv")
    assert len(csv) >= 2
    for column in ("ep_return_mean", "first_ratio_dev", "policy_loss", "dropout_p", "update"):
        if csv[column].isna().all():
            continue
        logged = events.Scalars(f"metrics/{column}")
        rows = csv.dropna(subset=[column])
        assert [e.step for e in logged] == rows.env_steps.tolist()
        assert all(math.isclose(e.value, v, rel_tol=1e-6, abs_tol=1e-9) for e, v in zip(logged, rows[column]))
    assert "metrics/env_steps" not in events.Tags()["scalars"]  # the x-axis


def test_tensorboard_missing_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    code = main(["train", "--total-steps", "512", "--out", str(out), "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("sandbox train: error: --tensorboard: needs the tensorboard package")
    assert not out.exists() and not (tmp_path / "tb").exists()


def test_a_run_finished_before_the_tensorboard_field_existed_is_still_done(tmp_path):
    """Adding a config field must not turn finished sweeps into 'different' ones: config.json is compared with the
    new field's default filled in."""
    import json

    from sandbox.analysis.sweep import expand, load_spec, run_status

    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\npreset = "cartpole"\ntotal_steps = 512\n[grid]\nseed = [0]\n')
    (run,) = expand(*load_spec(spec), tmp_path / "out")
    run.dir.mkdir(parents=True)
    old = {k: v for k, v in run.config.to_dict().items() if k != "tensorboard"}
    (run.dir / "config.json").write_text(json.dumps(old))
    (run.dir / "summary.json").write_text("{}")
    assert run_status(run) == "done"
    (run.dir / "config.json").write_text(json.dumps({**old, "tensorboard": "elsewhere"}))
    assert run_status(run) == "different"


def test_a_resumed_run_shows_each_row_once_in_tensorboard(tmp_path):
    """Resuming drops the rows after the checkpoint and writes them again; TensorBoard's purge_step hides the first
    copies, so each update appears once."""
    out, tb = tmp_path / "run", tmp_path / "tb"
    cfg = sandbox.Config(**{**CONFIGS["ppo-gym"], "total_steps": 1024}, save_every=2, out=str(out), tensorboard=str(tb))
    sandbox.train(cfg.replace(quiet=True))
    (out / "summary.json").unlink()  # as if killed after update 4's row, before the end: resume from update 2
    (out / "checkpoints" / "update-000004.pt").unlink()
    sandbox.resume(out, quiet=True)
    events = EventAccumulator(str(tb / "run"))
    events.Reload()
    steps = [e.step for e in events.Scalars("metrics/update")]
    assert steps == pd.read_csv(out / "metrics.csv").env_steps.tolist() == [256, 512, 768, 1024]
