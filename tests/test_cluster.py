"""A study on a Ray cluster: two nodes started on this machine with ``ray start`` (token authentication on, one CPU
each), joined by address; the runs come back to the driver, which alone writes ``--out``; a node killed mid-sweep
loses nothing finished, and the next invocation redoes only what is missing.

Each node's Python finds a decoy ``sandbox`` package first on its path (PYTHONPATH), which raises on import: the runs
succeed only because the driver's own package reaches the workers through Ray's runtime environment. The cluster is
started once for the module and its processes (each node's process group) are killed at the end, pass or fail.

Slow (``pytest -m slow``; make test-slow): a Ray cluster takes 10-20 s to start and every Ray worker imports torch.
On a machine loaded far beyond its cores, Ray 2.60 can miss its own start-up deadline (a raylet waits 15 s for its
dashboard agent to report its port): each node gets three tries."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")
pytestmark = pytest.mark.slow

SPEC = """
[base]
preset = "cartpole"
num_envs = 4
num_steps = 64
total_steps = {steps}

[grid]
dropout_mode = ["off", "naive"]
seed = [0, 1]
"""
"""Four tiny CartPole runs (256 steps per update), one Ray task each with --population off."""
NODE_PORTS = 50
"""Ports per node: the node's services from its base port, its workers from base + 20."""


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class TwoNodes:
    """A head and one worker node on 127.0.0.1, ``--num-cpus 1`` each, their own temp dirs under ``root``, ports from
    27000-27999, ``RAY_AUTH_MODE=token`` with a fresh token (also in ``root/token``), health checks every second (a
    killed node is declared dead in a few seconds, not 30). Every process of a node is in the process group its
    ``ray start`` started: :meth:`kill` ends exactly those."""

    def __init__(self, root: Path):
        self.root = root
        self.token = secrets.token_hex(16)
        (root / "token").write_text(self.token + "\n")
        decoy = root / "decoy" / "sandbox"
        decoy.mkdir(parents=True)
        (decoy / "__init__.py").write_text(
            'raise ImportError("a decoy sandbox: this worker did not get the driver\'s")\n'
        )
        self.base = next(
            (
                b
                for b in range(27000, 28000 - 2 * NODE_PORTS, 2 * NODE_PORTS)
                if all(_free(p) for p in range(b, b + 2 * NODE_PORTS))
            ),  # fmt: skip
            None,
        )
        if self.base is None:
            pytest.skip("no free block of ports in 27000-27999 for the test cluster")
        self.address = f"127.0.0.1:{self.base}"
        self.groups: dict[str, int] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "HOME": str(root / "home"),
                     "PYTHONPATH": str(root / "decoy"), "RAY_health_check_period_ms": "1000",
                     "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
                     "RAY_health_check_initial_delay_ms": "1000", "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip

    def start(self, name: str, head: bool) -> None:
        """``ray start`` for one node; returns once the node is up (``ray start`` exits then, its node running)."""
        port = self.base + (0 if head else NODE_PORTS)
        ray = Path(sys.executable).with_name("ray")
        args = [str(ray), "start", "--num-cpus", "1", "--temp-dir", str(self.root / name), "--node-ip-address",
                "127.0.0.1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats",
                "--node-manager-port", str(port + 1), "--object-manager-port", str(port + 2),
                "--runtime-env-agent-port", str(port + 4), "--dashboard-agent-listen-port", str(port + 5),
                "--dashboard-agent-grpc-port", str(port + 6), "--metrics-export-port", str(port + 7),
                "--min-worker-port", str(port + 20), "--max-worker-port", str(port + NODE_PORTS - 1),
                "--include-log-monitor", "false"]  # fmt: skip
        if head:  # without the autoscaler's monitor: fewer processes importing Ray while the node starts
            args += ["--head", "--port", str(port), "--ray-client-server-port", str(port + 3), "--include-dashboard",
                     "false", "--dashboard-port", str(port + 8), "--no-monitor"]  # fmt: skip
        else:
            args += ["--address", self.address]
        env = {**self.env, "TMPDIR": str(self.tmp(name))}
        self.tmp(name).mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # on a loaded machine a node can miss Ray's 30 s start-up deadline: try again
            with open(self.root / f"{name}.log", "w") as log:
                proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.groups[name] = proc.pid
            if proc.wait(timeout=180) == 0:
                return
            self.kill(name)
            shutil.rmtree(self.root / name, ignore_errors=True)
        raise RuntimeError(f"ray start ({name}) failed 3 times:\n{(self.root / f'{name}.log').read_text()[-2000:]}")

    def tmp(self, name: str) -> Path:
        """The node's TMPDIR, where a Ray task trains its runs (``sandbox-runs-*``)."""
        return self.root / f"{name}-tmp"

    def revive(self, name: str) -> None:
        """Start the worker node ``name`` again if a test killed it."""
        if name not in self.groups:
            self.start(name, head=False)

    def kill(self, name: str) -> None:
        """SIGKILL every process of the node ``name``, as a pulled plug would: its process group (what ``ray start``
        started) and their descendants (the Ray workers, which the raylet starts in groups of their own)."""
        import psutil

        pgid = self.groups.pop(name, None)
        if pgid is None:
            return
        group = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == pgid:
                    group.append(proc)
            except (ProcessLookupError, psutil.Error):
                pass
        procs = {p.pid: p for p in group}
        for proc in group:
            try:
                procs |= {c.pid: c for c in proc.children(recursive=True)}
            except psutil.Error:
                pass
        for proc in procs.values():
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass

    def stop(self) -> None:
        for name in list(self.groups):
            self.kill(name)


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="sbx-ray-", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    nodes = TwoNodes(root)
    try:
        nodes.start("head", head=True)
        nodes.start("w1", head=False)
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)


def sandbox(cluster: TwoNodes, cwd: Path, *args: str, wait=True, address=None, token: str | None = "token"):
    """``sandbox ARGS --backend ray --address <the cluster> --ray-token-file <its token>`` in a fresh process, with
    no Ray variable and an empty home (no ~/.ray/auth_token): the token reaches the driver only through the option.
    ``address``, ``token``: another address, another token file (None: no --ray-token-file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(cwd / "home")}
    auth = ["--ray-token-file", str(cluster.root / token)] if token else []
    cmd = [sys.executable, "-m", "sandbox", *args, "--backend", "ray", "--address", address or cluster.address, *auth]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_a_wrong_address_or_token_is_one_line_and_writes_nothing(cluster, tmp_path, capsys, monkeypatch):
    """In this process where the check leaves no state behind (a wrong address, no token: before Ray's token mode is
    turned on), in a fresh one for a wrong token."""
    from sandbox.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(steps=512))
    closed = next(p for p in range(cluster.base + 2 * NODE_PORTS - 1, cluster.base, -1) if _free(p))
    for name in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token
    cases = [  # (address, token file, the line)
        (f"127.0.0.1:{closed}", ["--ray-token-file", str(cluster.root / "token")],
         f"--address: nothing answers at 127.0.0.1:{closed} (Connection refused)"),
        ("somewhere", [], "--address: must be HOST:PORT"),
        (cluster.address, [], f"--ray-token-file: the cluster at {cluster.address} requires a token"),
    ]  # fmt: skip
    for address, token, expected in cases:
        t0 = time.perf_counter()
        code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--backend", "ray", "--address", address,
                     *token])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"sandbox sweep: error: {expected}"), err
        assert time.perf_counter() - t0 < 20, f"{address}: took {time.perf_counter() - t0:.0f} s"
        assert not (tmp_path / "out").exists()
    (cluster.root / "wrong").write_text("not-the-token\n")
    code, _, err = sandbox(cluster, tmp_path, "sweep", str(spec), "--out", "out", token="wrong")
    expected = f"--ray-token-file: the cluster at {cluster.address} refused the token from {cluster.root / 'wrong'}"
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"sandbox sweep: error: {expected}"), err
    assert not (tmp_path / "out").exists()


def _landed(out: Path) -> dict[str, int]:
    """The finished run directories under ``out``: name -> summary.json's mtime (ns)."""
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}


def _mid_run(tmp: Path) -> bool:
    """A run is training in ``tmp`` (a node's TMPDIR): its metrics.csv has a row past the header."""
    return any(len(p.read_text().splitlines()) > 1 for p in tmp.glob("sandbox-runs-*/*/metrics.csv"))


def test_a_sweep_on_two_nodes_survives_a_killed_node_and_resumes(cluster, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(steps=2560))  # 10 updates per run
    out = tmp_path / "out"
    proc = sandbox(cluster, tmp_path, "sweep", str(spec), "--out", "out", "--population", "off", "--no-report",
                   wait=False)  # fmt: skip
    before: dict[str, int] = {}
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:  # kill the worker node once a run has come back to
        if (landed := _landed(out)) and _mid_run(cluster.tmp("w1")):  # the driver and the node is training another
            cluster.kill("w1")
            before = landed
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert before, f"the worker node never trained a second run (sweep ended {proc.returncode}):\n{stdout}{stderr}"
    assert proc.returncode == 0, stderr
    assert "4 runs finished" in stdout, stdout  # the killed node's run was trained again on the head
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(runs) == 4 and not list(out.glob(".*")), runs  # no staging directory left behind
    landed = _landed(out)
    assert all(landed[name] == mtime for name, mtime in before.items())  # what came back before the kill: untouched
    for name in runs:
        config = json.loads((out / name / "config.json").read_text())
        assert (
            config["out"] == f"out/{name}" and json.loads((out / name / "summary.json").read_text())["status"] == "ok"
        )
        assert sorted(p.name for p in (out / name).iterdir()) == [
            "config.json", "episodes.csv", "metrics.csv", "policy.pt", "summary.json"]  # fmt: skip
    assert not list(cluster.tmp("head").glob("sandbox-runs-*"))  # a node keeps nothing once its task has ended,
    assert list(cluster.tmp("w1").glob("sandbox-runs-*"))  # but the killed node was mid-run: its run was trained again

    # the next invocation: a run whose summary.json never arrived (a driver killed while writing it) is redone, the
    # others are skipped and left as they are
    (out / runs[0] / "summary.json").unlink()
    (out / f".{runs[0]}.landing").mkdir()  # and the hidden folder of a landing cut short
    code, stdout, stderr = sandbox(cluster, tmp_path, "sweep", str(spec), "--out", "out", "--population", "off",
                                   "--no-report")  # fmt: skip
    assert code == 0, stderr
    assert "4 runs, 3 already finished, 1 to run" in stdout and "1 runs finished" in stdout, stdout
    assert {k: v for k, v in _landed(out).items() if k != runs[0]} == {k: v for k, v in landed.items() if k != runs[0]}
    assert runs[0] in _landed(out) and not list(out.glob(".*"))

    # the same numbers as a run trained here (timing columns aside)
    import pandas as pd

    import sandbox as sbx
    from sandbox.config import Config

    config = Config.from_dict(json.loads((out / runs[2] / "config.json").read_text()))
    here = sbx.train(config.replace(out=None, quiet=True)).metrics
    there = pd.read_csv(out / runs[2] / "metrics.csv")
    for column in ("ep_return_mean", "policy_loss", "value_loss", "approx_kl"):
        assert there[column].tolist() == pytest.approx(here[column].astype(float).tolist(), nan_ok=True), column


def test_bench_minatar_fast_on_two_nodes(cluster, tmp_path):
    cluster.revive("w1")  # when the sweep's test has killed it
    code, stdout, stderr = sandbox(cluster, tmp_path, "bench", "minatar", "--fast", "--games", "breakout",
                                   "--workers", "2", "--out", "bench", "--quiet")  # fmt: skip
    assert code == 0, stderr
    result = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert result["runs"] == 10 and result["failed"] == 0
    assert result["machine"].startswith("a Ray cluster of 2 nodes (driver: ") and result["workers"] == 2
    assert (tmp_path / "bench" / "report.md").exists() and (tmp_path / "bench" / "mechanism.png").exists()
    assert len(list((tmp_path / "bench" / "breakout").glob("*/*/summary.json"))) == 10
