"""Provenance that cannot lie: a run's seam named and hashed in config.json, the rule for replacements, what the
seam's functions get (the dropout schedule's update count and total), train_many and sweeps with a seam.

Cost: about 30 s on 2 busy cores (the call table's runs, a dozen runs of 256 to 1,536 steps, a 2-run sweep in a
worker process).
"""

import dataclasses
import json
import textwrap

import pytest

import sandbox
from sandbox.cli import main
from sandbox.config import validate
from sandbox.maths import Maths, dropout_schedule, gae
from sandbox.runs.rundir import RunLog
from sandbox.runs.seam import CALLED
from sandbox.training import _run, check

SEAM = '''
import math

from sandbox.maths import gae as _gae


def my_gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    return _gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda)


def cosine(p, update, schedule, cutoff, total_updates=None, progress=0.0):
    """p down to 0 over the run, half a cosine: needs the total."""
    return p * 0.5 * (1 + math.cos(math.pi * (update - 1) / total_updates))
'''


@pytest.fixture
def seam(tmp_path, monkeypatch):
    """A module of the user's, ``userseam``, importable (and by spawned workers, which get the parent's sys.path)."""
    (tmp_path / "userseam.py").write_text(SEAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import userseam

    return importlib.reload(userseam)


def small(**kw) -> sandbox.Config:
    return sandbox.preset("cartpole", **{"total_steps": 512, "quiet": True, **kw})


def test_a_replaced_function_is_named_and_hashed_in_config_json(tmp_path, seam):
    r = sandbox.train(small(out=str(tmp_path / "run")), maths=Maths(gae=seam.my_gae))
    name = json.loads((tmp_path / "run" / "config.json").read_text())["maths"]["gae"]
    module, _, digest = name.partition("#")
    assert module == "userseam:my_gae" and len(digest) == 12 and r.config.maths == {"gae": name}
    # the same function named in the config (as --maths or a sweep spec would): the same record, the same numbers
    again = sandbox.train(small(maths={"gae": "userseam:my_gae"}))
    assert again.config.maths == {"gae": name} and again.metrics.ep_return_mean.equals(r.metrics.ep_return_mean)
    assert sandbox.train(small()).config.maths == {}  # ours: nothing to record


def test_a_changed_source_is_refused(tmp_path, seam):
    sandbox.train(small(out=str(tmp_path / "run"), save_every=2, total_steps=1024), maths=Maths(gae=seam.my_gae))
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["maths"]["gae"]
    (tmp_path / "userseam.py").write_text(SEAM.replace("gae_lambda)\n", "gae_lambda * 0.5)\n", 1))
    import importlib
    import sys

    importlib.reload(sys.modules["userseam"])
    with pytest.raises(sandbox.ConfigError, match="has changed since"):
        sandbox.train(small(maths={"gae": recorded}))


def test_a_wrapper_is_what_it_wraps_and_a_config_and_a_maths_must_agree(seam):
    import functools

    @functools.wraps(gae)
    def spy(*args):
        return gae(*args)

    assert sandbox.train(small(), maths=Maths(gae=spy)).config.maths == {}  # watching ours is not replacing it
    with pytest.raises(sandbox.ConfigError, match="the config names userseam:my_gae but the Maths passed holds ours"):
        sandbox.train(small(maths={"gae": "userseam:my_gae"}), maths=Maths())


@pytest.mark.parametrize(
    "fields, maths, message",
    [
        (dict(maths={"kl_k2": "userseam:my_gae"}), None, "kl_k2 is replaced (userseam:my_gae) but this run never"),
        (dict(algo="grpo", maths={"gae": "userseam:my_gae"}), None, "GRPO on Gym tasks does not use it"),
        (dict(maths={"gae": "userseam:nope"}), None, "module userseam has no nope"),
        (dict(maths={"gea": "userseam:my_gae"}), None, "unknown seam field 'gea'"),
        (dict(maths={"gae": "my_gae"}), None, "expected module:function"),
        (dict(dropout=0.2), "cosine", "--dropout-schedule: is 'constant' but the seam replaces the schedule"),
        (dict(dropout=0.2, dropout_schedule="custom"), None, "custom needs your schedule"),
        (dict(dropout_mode="off", dropout_schedule="custom"), "cosine", "mode off has no dropout to schedule"),
    ],
)
def test_the_rule_for_replacements_in_one_line(seam, fields, maths, message):
    seam_maths = None if maths is None else Maths(dropout_schedule=getattr(seam, maths))
    with pytest.raises(sandbox.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        cfg = C(**fields, total_steps=600, quiet=True) if "algo" in fields else small(**fields)
        sandbox.train(cfg, maths=seam_maths)
    assert "\n" not in str(err.value)


def test_a_maths_may_hold_more_than_the_run_calls(seam):
    """The homework passes all three KL estimators where one is used: config.json names only the one that ran."""
    cfg = small(beta=0.1, kl_estimator="k3")
    k = {f"kl_k{i}": (lambda x, i=i: getattr(__import__("sandbox").maths, f"kl_k{i}")(x)) for i in (1, 2, 3)}
    assert list(sandbox.train(cfg, maths=Maths(**k)).config.maths) == ["kl_k3"]


def _counting() -> tuple[dict[str, int], Maths]:
    calls: dict[str, int] = {}
    ours = Maths()

    def counted(name):
        fn = getattr(ours, name)

        def call(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        return call

    return calls, Maths(**{f.name: counted(f.name) for f in dataclasses.fields(Maths)})


C = sandbox.Config
CALL_CASES = {
    "ppo, dropout off": C(total_steps=256, num_steps=64, dropout_mode="off"),
    "ppo, naive in both networks": C(total_steps=256, num_steps=64, dropout=0.1, dropout_value=True),
    "ppo, KL in the loss, adaptive, sample dropout": C(
        total_steps=256, num_steps=64, beta=0.1, kl_estimator="k2", kl_target=0.01, sample_dropout="dppo", dropout=0.1
    ),
    "ppo, KL in the reward": C(total_steps=256, num_steps=64, beta=0.1, kl_in="reward", dropout=0.1),
    "grpo on Gym": C(algo="grpo", total_steps=600, group_size=2, prompts_per_update=2, dropout=0.1),
    "sb3-ppo": C(algo="sb3-ppo", total_steps=256, num_steps=64, dropout=0.1),
    "grpo, length penalty and its switch": C(
        algo="grpo",
        env="lang:reverse",
        total_steps=200,
        group_size=2,
        prompts_per_update=2,
        sparse=True,
        length_penalty=0.1,
        grpo_lambda=0.5,
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(CALL_CASES))
def test_the_call_table_says_which_functions_a_run_calls(case):
    """sandbox.runs.seam.CALLED decides what config.json names and what a config may name: it must be true of real
    runs (every seam function counted)."""
    cfg = validate(CALL_CASES[case])
    check(cfg)
    calls, maths = _counting()
    _run(cfg, maths, RunLog(cfg), None)
    said = {field for field, called in CALLED.items() if called(cfg) is None}
    assert set(calls) == said, (
        f"called but not in the table: {set(calls) - said}; in it, not called: {said - set(calls)}"
    )


# --- what the seam's functions get -----------------------------------------------------------------------------


def _recording_schedule(seen: list):
    def schedule(p, update, schedule, cutoff, total_updates=None, progress=0.0):
        seen.append((update, total_updates, progress))
        return dropout_schedule(p, update, "constant", cutoff)

    return schedule


@pytest.mark.parametrize("kind", ["run", "population", "sb3-ppo", "grpo"])
def test_the_schedule_counts_updates_from_1_with_the_total(kind):
    seen: list = []
    maths = Maths(dropout_schedule=_recording_schedule(seen))
    cfg = small(dropout=0.1, dropout_schedule="custom", total_steps=1024)  # 4 updates of 8 x 32 steps
    if kind == "population":
        sandbox.train_population([cfg.replace(seed=s) for s in (0, 1)], maths=maths)
        assert seen == [(u, 4, (u - 1) / 4) for u in (1, 2, 3, 4) for _ in (0, 1)]
        return
    if kind == "grpo":  # batches of episodes: no total planned, the progress known
        sandbox.train(C(algo="grpo", total_steps=600, group_size=2, prompts_per_update=2, dropout=0.1,
                        dropout_schedule="custom", quiet=True), maths=maths)  # fmt: skip
        assert [u for u, _, _ in seen] == list(range(1, len(seen) + 1)) and all(t is None for _, t, _ in seen)
        assert seen[0][2] == 0 and all(0 < p < 1 for _, _, p in seen[1:])
        return
    sandbox.train(cfg.replace(algo="sb3-ppo", anneal_clip=False) if kind == "sb3-ppo" else cfg, maths=maths)
    assert seen == [(u, 4, (u - 1) / 4) for u in (1, 2, 3, 4)]


def test_the_schedule_goes_on_counting_after_a_resume(tmp_path, seam):
    cfg = small(dropout=0.1, dropout_schedule="custom", total_steps=1536, save_every=2, out=str(tmp_path / "cut"))
    full = sandbox.train(cfg.replace(out=str(tmp_path / "full")), maths=Maths(dropout_schedule=seam.cosine))
    calls = {"n": 0}

    def stops_in_update_5(p, update, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return seam.cosine(p, update, *args, **kwargs)

    stops_in_update_5.__wrapped__ = seam.cosine  # a Ctrl-C, not another schedule
    with pytest.raises(KeyboardInterrupt):
        sandbox.train(cfg, maths=Maths(dropout_schedule=stops_in_update_5))
    resumed = sandbox.resume(tmp_path / "cut")  # config.json names userseam:cosine: imported again
    assert resumed.metrics.dropout_p.tolist() == full.metrics.dropout_p.tolist()
    assert full.metrics.dropout_p.iloc[-1] < full.metrics.dropout_p.iloc[0] == 0.1


# --- train_many, sweeps and the command line --------------------------------------------------------------------


def test_train_many_takes_a_seam(seam):
    """(Worker processes import the seam by its name: the sweep below runs in one.)"""
    cfgs = [small(seed=s) for s in (0, 1)]
    alone = sandbox.train_many(cfgs, workers=1, population=0, maths=Maths(gae=seam.my_gae))
    together = sandbox.train_many(cfgs, workers=1, maths=Maths(gae=seam.my_gae))  # one population of 2
    assert [r.config.maths for r in together] == [r.config.maths for r in alone] != [{}, {}]
    assert together[0].summary["population"] == 2

    def mine(*args):
        return gae(*args)

    with pytest.raises(sandbox.ConfigError, match=r"cannot be imported by name.*workers=1"):
        sandbox.train_many(cfgs, workers=2, maths=Maths(gae=mine))


def test_a_sweep_spec_names_a_seam(tmp_path, seam):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        textwrap.dedent("""
        [base]
        preset = "cartpole"
        total_steps = 512
        dropout = 0.2
        dropout_schedule = "custom"
        maths = {dropout_schedule = "userseam:cosine"}

        [grid]
        seed = [0, 1]
        """)
    )
    from sandbox.analysis.sweep import run_sweep

    counts = run_sweep(spec, tmp_path / "out", workers=1, quiet=True)
    assert counts["ran"] == 2
    names = {
        json.loads((d / "config.json").read_text())["maths"]["dropout_schedule"]
        for d in (tmp_path / "out").glob("seed=*")
    }
    assert len(names) == 1 and names.pop().startswith("userseam:cosine#")
    from sandbox.analysis.report import write_report

    write_report(tmp_path / "out", quiet=True, figures=False)  # the report names the seam its runs share
    assert "maths.dropout_schedule=userseam:cosine#" in (tmp_path / "out" / "report.md").read_text()


def test_the_maths_flag(capsys, tmp_path, seam, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--preset", "cartpole", "--total-steps", "512", "--maths", "gae", "userseam:my_gae",
                 "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    assert code == 0 and "userseam:my_gae#" in (tmp_path / "run" / "config.json").read_text()
    for args, message in [
        (["--maths", "gae"], "--maths: cannot read 'gae' as [str str [str str ...]]"),
        (["--maths", "gae", "nosuchmodule:f"], "--maths: cannot import nosuchmodule"),
        (["--maths", "ppo_loss", "userseam:my_gae", "--algo", "sb3-ppo"], "SB3's PPO computes its own"),
    ]:
        code = main(["train", "--total-steps", "512", "--quiet", *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err


# --- no option silently ignored ---------------------------------------------------------------------------------

# Config's own bookkeeping reads every field without using it: validation, serialisation, copying
_NOT_A_USE = {"validate", "resolve", "to_dict", "from_dict", "replace", "sections", "fields_with_role", "without",
              "_validate_applies", "_positive_int", "_int_at_least", "_in_range", "_choice"}  # fmt: skip
EVERY_VARIANT = C(
    total_steps=256, num_steps=64, dropout=0.1, dropout_value=True, beta=0.1, kl_target=0.01, sample_dropout="sdpo",
    dropout_samples=2, grad_diag_every=1, flatness_every=1, flatness_window=4, flatness_directions=3, target_kl=0.5,
    dropout_schedule="early", dropout_cutoff=1, clip_coef_high=0.3, stop_at_threshold=True, save_every=1,
    overwrite=True,
)  # fmt: skip
"""With the call table's cases (:data:`CALL_CASES`), what reads every config field: the options read only when
another is set."""


def test_every_config_field_is_read_by_the_code_that_runs(tmp_path, monkeypatch):
    """A new option gets a flag, --help and a config.json entry by being declared; this test fails until some code
    that runs reads it (config.py's validation and copying do not count), so it cannot be silently ignored. Each field
    read under a condition (kl_horizon only with kl_target) needs a case that meets it (EVERY_VARIANT, CALL_CASES):
    add one for a new field."""
    import sys

    import sandbox.config

    fields = {f.name for f in dataclasses.fields(sandbox.Config)}
    read: set[str] = set()
    own = sandbox.config.__file__
    plain = object.__getattribute__

    def watched(self, name):
        if name in fields and name not in read:
            code = sys._getframe(1).f_code
            ours = code.co_filename == own and (code.co_name in _NOT_A_USE or code.co_name.startswith("_validate"))
            if not ours and "dataclasses" not in code.co_filename:
                read.add(name)
        return plain(self, name)

    monkeypatch.setattr(sandbox.Config, "__getattribute__", watched)
    for i, cfg in enumerate([EVERY_VARIANT, *CALL_CASES.values()]):
        sandbox.train(cfg.replace(out=str(tmp_path / str(i)), quiet=True))
    sandbox.train(sandbox.Config(env_module="gymnasium.envs.classic_control", total_steps=128, num_steps=32))
    unread = sorted(fields - read)
    assert not unread, f"config fields no code reads (or no case here reaches): {unread}"
