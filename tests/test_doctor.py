"""sandbox doctor: each check says OK or what to do, and the exit code is non-zero when one fails.

The failure paths run against fakes (a lock and an environment that disagree, a cache path that cannot be a
directory, a kernel that does not exist); one test runs the whole doctor on this environment."""

import sys
from pathlib import Path

import pytest

from sandbox import doctor as d
from sandbox.cli import main

LOCK = """\
# a lock as uv writes it, torch twice with exclusive markers
gymnasium==1.4.0          # via dropout-rl-sandbox (pyproject.toml)
jupyter==1.1.1 ; sys_platform == 'darwin' or sys_platform == 'linux' or sys_platform == 'win32'
numpy==2.4.6              # via gymnasium
stable-baselines3==2.9.2
torch==2.13.0 ; sys_platform == 'darwin' or sys_platform == 'win32'
torch==2.13.0+cpu ; sys_platform == 'linux'
"""
GOOD = {"gymnasium": "1.4.0", "jupyter": "1.1.1", "numpy": "2.4.6", "stable-baselines3": "2.9.2", "torch": "2.13.0+cpu"}


@pytest.fixture
def lock(tmp_path) -> Path:
    path = tmp_path / "requirements.lock"
    path.write_text(LOCK)
    return path


def test_the_lock_is_read_with_its_markers_judged_for_the_machine(lock):
    assert d.read_lock(lock, {"sys_platform": "linux"})["torch"] == "2.13.0+cpu"
    assert d.read_lock(lock, {"sys_platform": "win32"})["torch"] == "2.13.0"
    assert d.satisfies("2.13.0+cpu", "2.13.0") and not d.satisfies("2.13.0", "2.13.0+cpu")  # as pip judges


@pytest.mark.skipif(sys.platform != "linux", reason="the fake lock's torch pin for this machine is the Linux one")
def test_versions_as_the_lock_are_ok(lock):
    found = d.check_versions(lock, installed=GOOD, required={"numpy"})
    assert [c.ok for c in found] == [True] * 5
    assert found[0].line() == "OK    torch: 2.13.0+cpu, as the lock (CPU build)"
    assert found[-1].line() == "OK    the rest of the lock: 1 more installed packages at the lock's versions"


def test_a_missing_package_and_another_version_say_what_to_do(lock):
    have = {**GOOD, "gymnasium": "1.3.0", "torch": "2.13.0+cpu" if sys.platform == "linux" else "2.13.0"}
    del have["stable-baselines3"], have["numpy"]
    found = {c.name: c for c in d.check_versions(lock, installed=have, required={"numpy", "tqdm"})}
    assert found["gymnasium"].line() == f"FAIL  gymnasium: 1.3.0, the lock has 1.4.0: {d.FIX_INSTALL}"
    assert (
        found["stable-baselines3"].line()
        == f"FAIL  stable-baselines3: not installed (the lock has 2.9.2): {d.FIX_INSTALL}"
    )
    assert found["the rest of the lock"].message == f"missing numpy, tqdm: {d.FIX_INSTALL}"
    assert found["torch"].ok and found["jupyter"].ok
    assert "make setup" in d.FIX_INSTALL and "Install" in d.FIX_INSTALL


def test_a_missing_lock_is_said(tmp_path):
    (found,) = d.check_versions(tmp_path / "nope.lock", installed={}, required=set())
    assert not found.ok and "no lock at" in found.message and "checkout" in found.message


def test_python_outside_the_course_versions_fails():
    assert d.check_python((3, 12, 1), "CPython").ok and d.check_python((3, 13, 0), "CPython").ok
    bad = d.check_python((3, 10, 14), "CPython")
    assert not bad.ok and bad.message.endswith(
        "the course needs CPython 3.11, 3.12, 3.13; install one and set up again"
    )
    assert not d.check_python((3, 11, 9), "PyPy").ok


def test_an_unwritable_cache_says_to_set_sandbox_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory cannot be made below a file, even by root
    monkeypatch.setenv("SANDBOX_CACHE", str(blocker / "cache"))
    found = d.check_cache()
    assert not found.ok and found.message.startswith(f"{blocker / 'cache'} is not writable (")
    assert found.message.endswith("): set SANDBOX_CACHE to a writable directory")
    assert d.check_cache(tmp_path / "fine").ok


def test_a_ppo_run_that_does_not_learn_fails(monkeypatch):
    class Flat:
        summary = {"status": "ok", "final_return": 21.0}

    monkeypatch.setattr(sys.modules["sandbox.training"], "train", lambda config: Flat())  # the module, not the function
    found = d.check_ppo(steps=1000)
    assert not found.ok and "final return 21.0, expected above 40" in found.message


def test_a_kernel_that_does_not_exist_fails():
    found = d.check_kernel("no-such-kernel-here")
    assert not found.ok and found.message.startswith("no kernel named 'no-such-kernel-here'")


def test_the_report_exits_1_on_any_failure_and_turns_a_crash_into_a_line():
    lines = []

    def check_broken():
        raise RuntimeError("torch is broken\nsecond line")

    code = d.run(
        [lambda: d.Check("a", True, "fine"), check_broken, lambda: [d.Check("b", False, "do this")]], lines.append
    )
    assert code == 1
    assert lines[1:4] == [
        "OK    a: fine",
        f"FAIL  broken: RuntimeError: torch is broken: {d.FIX_INSTALL}",
        "FAIL  b: do this",
    ]
    assert lines[-1].startswith("sandbox doctor: 2 problems (")
    assert d.run([lambda: d.Check("a", True, "fine")], lines.append) == 0 and lines[-1].startswith(
        "sandbox doctor: ready"
    )


def test_cli_doctor_bad_lock_is_one_line_exit_2(tmp_path, capsys):
    assert main(["doctor", "--lock", str(tmp_path / "nope.lock")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sandbox doctor: error: --lock: no such file: {str(tmp_path / 'nope.lock')!r}"]


def test_cli_doctor_exit_code_is_1_when_a_check_fails(lock, monkeypatch, capsys):
    monkeypatch.setattr(d, "checks", lambda path: [lambda: d.check_versions(path, installed={}, required=set())])
    assert main(["doctor", "--lock", str(lock)]) == 1
    assert "FAIL  torch: not installed" in capsys.readouterr().out


def test_the_whole_doctor_passes_here(capsys):
    """Every check for real, on the environment make setup built: what a student runs first (well under 30 s)."""
    assert main(["doctor"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "sandbox doctor: is this machine ready for the course?" and out[-1].startswith(
        "sandbox doctor: ready"
    )
    names = [line.split(":")[0] for line in out[1:-1]]
    assert names == [
        "OK    Python",
        "OK    torch",
        "OK    gymnasium",
        "OK    stable-baselines3",
        "OK    jupyter",
        "OK    the rest of the lock",
        "OK    CPU threads",
        "OK    cache directory",
        "OK    language reference",
        "OK    PPO",
        "OK    GIF",
        "OK    Jupyter kernel",
    ]
