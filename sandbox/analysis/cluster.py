"""Where a sweep's jobs run: a job in a worker (:func:`run_job`, a local process or a Ray task), and Ray itself, a
local instance or a cluster joined by address, with this machine alone writing ``--out``.

A Ray task trains its run (or its population) into a temporary directory of the node that runs it and returns
every file of each run directory as bytes (:func:`train_and_return`); the driver (the machine that ran ``sandbox
sweep``) writes them under ``--out`` (:func:`land`). Nothing on the cluster needs to see the driver's disk, and no
worker node ever writes there.

The sandbox's code reaches the workers through Ray's runtime environment (``py_modules``: the driver's own
``sandbox`` package, uploaded once per version by content hash), so a node whose Python has another ``sandbox``, or
none, runs the driver's code. What a node must have: Python with the sandbox's dependencies at the lock's versions
(torch, gymnasium, numpy, ...) and the same Ray.

Joining (:func:`session`, :func:`check_cluster`): the address is checked before Ray is asked (a TCP connection within
:data:`CONNECT_TIMEOUT_S`, then Ray's GCS client within :data:`PROBE_TIMEOUT_S`), so a wrong address, a missing or
wrong token, or a driver outside the cluster is one line naming the option, never a minute of retries. The locked
Ray (2.60) authenticates with a static token when the cluster was started with ``RAY_AUTH_MODE=token``: every
process sends it, read from ``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH`` names, else
``~/.ray/auth_token``. A driver joining by explicit address does not turn token mode on by itself (only
``address="auto"`` does); :func:`check_cluster` does when the cluster refuses it without one, with
``--ray-token-file`` or Ray's own sources. Guide: docs/guide/cluster.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Literal

from ..config import Config, ConfigError

CONNECT_TIMEOUT_S = 5.0
"""How long a TCP connection to the head's address may take before the address is called wrong."""
PROBE_TIMEOUT_S = 10.0
"""How long Ray's GCS client may take to answer on an address that accepts connections."""
RETRIES = 3
"""A task whose worker or node dies is run again on another node up to this many times (Ray's ``max_retries``, the
default made explicit); a run that still fails counts as failed, and the same command later redoes it."""


@dataclasses.dataclass
class Backend:
    """Where the runs train: local processes, or Ray (a local instance, or a cluster joined by --address)."""

    backend: Literal["local", "ray"] = "local"
    """local processes, or Ray tasks (the optional ray extra): a Ray instance started here, or the cluster of
    --address; either way the runs come back to this machine, which alone writes the output directory."""
    address: str | None = None
    """With --backend ray: the cluster to join, HOST:PORT as `ray start --head` printed it (or auto: the cluster this
    machine joined with `ray start`). Run the command on a node of the cluster (the head, say). None: a Ray instance
    started here."""
    ray_token_file: str | None = None
    """With --address: a file holding the cluster's token (Ray's token authentication, RAY_AUTH_MODE=token on the
    cluster). None: Ray's own places, the RAY_AUTH_TOKEN variable, the file RAY_AUTH_TOKEN_PATH names, or
    ~/.ray/auth_token."""

    def check(self) -> None:
        """One-line refusals for options that do not go together."""
        if self.backend not in ("local", "ray"):
            raise ConfigError("backend", f"must be local or ray, got {self.backend!r}")
        if self.address is not None and self.backend != "ray":
            raise ConfigError("address", "joins a Ray cluster: add --backend ray")
        if self.ray_token_file is not None and self.address is None:
            raise ConfigError("ray_token_file", "is the token of the cluster --address joins; add --address HOST:PORT")


# --- on a worker: train, return the run directories ----------------------------------------------------------------


def run_job(configs: list[dict]) -> list[dict]:
    """One job of a sweep in a worker (a local process, or a Ray task through :func:`train_and_return`): one run, or
    several seeds of one config as a population; one torch thread, quiet, each run directory written at its ``out``
    as by ``sandbox train``. Returns ``[{"out", "status"}, ...]`` in the order of ``configs``."""
    import torch

    torch.set_num_threads(1)
    from ..algos.learner import NonFiniteLossError
    from ..training import train, train_population

    cfgs = [Config.from_dict(c) for c in configs]
    if len(cfgs) > 1:
        return [{"out": r.config.out, "status": r.summary["status"]} for r in train_population(cfgs)]
    try:
        summary = train(cfgs[0]).summary
    except NonFiniteLossError:  # a finished outcome: summary.json says so
        summary = json.loads((Path(cfgs[0].out) / "summary.json").read_text())
    return [{"out": cfgs[0].out, "status": summary["status"]}]


def train_and_return(configs: list[dict]) -> list[dict]:
    """A Ray task: train ``configs`` (one run, or the seeds of a population) into a temporary directory of the node
    that runs it and return each run directory whole: ``[{"out": the driver's path, "status", "files": {relative
    path: bytes}}, ...]`` in the order of ``configs``. The temporary directory is gone when the task ends, finished
    or not; the files say ``out`` is the driver's path (:func:`pack`), as a run trained there would."""
    with tempfile.TemporaryDirectory(prefix="sandbox-runs-") as tmp:
        here = [{**c, "out": str(Path(tmp) / str(i))} for i, c in enumerate(configs)]
        statuses = run_job(here)
        return [
            {"out": c["out"], "status": s["status"], "files": pack(Path(h["out"]), c["out"]), "versions": versions()}
            for c, h, s in zip(configs, here, statuses)
        ]


VERSIONED = ("torch", "numpy", "gymnasium")
"""The packages whose versions decide a run's numbers, besides Python's and the sandbox's own code."""


def versions() -> dict[str, str]:
    """This process's Python and :data:`VERSIONED` packages, with the machine's name: what a node trained with."""
    import importlib.metadata
    import platform

    found = {"python": platform.python_version()} | {p: importlib.metadata.version(p) for p in VERSIONED}
    return {**found, "node": platform.node()}


def version_drift(here: dict[str, str], there: dict[str, str]) -> str | None:
    """One line naming what differs between the driver's :func:`versions` and a node's, or None: a node with
    another torch gives other numbers for the same config and seed."""
    differ = [f"{k} {there.get(k)} (here {v})" for k, v in here.items() if k != "node" and there.get(k) != v]
    return f"node {there.get('node')} trains with {', '.join(differ)}: its runs' numbers may differ" if differ else None


def pack(run_dir: Path, out: str) -> dict[str, bytes]:
    """Every file of ``run_dir`` (checkpoints included; temporary files left out) as ``{relative path: bytes}``, with
    the run's ``out`` set to ``out`` where a file records it (``config.json``, and the config inside ``policy.pt`` and
    each checkpoint): the run directory is the one a run trained at ``out`` writes."""
    import torch

    files = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        name = path.relative_to(run_dir).as_posix()
        if name == "config.json":
            config = {**json.loads(path.read_text()), "out": out}
            files[name] = (json.dumps(config, indent=2, allow_nan=False) + "\n").encode()  # as write_json_atomic
        elif path.suffix == ".pt":
            blob = torch.load(path, map_location="cpu", weights_only=True)
            blob["config"] = {**blob["config"], "out": out}
            buffer = io.BytesIO()
            torch.save(blob, buffer)
            files[name] = buffer.getvalue()
        else:
            files[name] = path.read_bytes()
    return files


# --- on the driver: write what came back ---------------------------------------------------------------------------


def staging_dir(run_dir: Path) -> Path:
    """Where :func:`land` assembles ``run_dir`` before it takes its name: a hidden sibling."""
    return run_dir.with_name(f".{run_dir.name}.landing")


def land(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run directory that came back from a worker: every file but ``summary.json`` into a hidden sibling
    (:func:`staging_dir`), renamed to ``run_dir`` in one step, then ``summary.json`` last and atomically, as a run
    writes it. A crash at any point leaves a directory without ``summary.json`` (unfinished: the next sweep redoes
    it) or a hidden one (removed by the next sweep). An existing ``run_dir`` is never replaced: the rename fails."""
    staging = staging_dir(run_dir)
    if staging.exists():
        shutil.rmtree(staging)
    for name, data in files.items():
        if name != "summary.json":
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    try:
        staging.rename(run_dir)  # an existing non-empty run_dir refuses the rename (an empty one is replaced)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(
            f"{run_dir} appeared while its run trained (another sweep into the same --out?); kept as it is"
        ) from None
    if "summary.json" in files:
        tmp = run_dir / ".summary.json.tmp"
        with open(tmp, "wb") as f:
            f.write(files["summary.json"])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, run_dir / "summary.json")


# --- joining a cluster ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stderr():
    """Ray's C++ client writes its warnings straight to file descriptor 2: hide them while a probe runs (its outcome
    is reported in one line instead)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _probe(address: str) -> tuple[str, object]:
    """Ask the cluster's GCS at ``address`` for its nodes, within :data:`PROBE_TIMEOUT_S`: ``("ok", nodes)``,
    ``("auth", error)``, ``("timeout", None)`` or ``("error", error)``. The GCS client retries for 40 s on its own,
    so it runs in a thread (it releases the GIL) that is left behind when it takes too long."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    result: dict[str, tuple[str, object]] = {}

    def ask() -> None:
        try:
            result["r"] = ("ok", list(GcsClient(address=address).get_all_node_info(timeout=5).values()))
        except AuthenticationError as err:
            result["r"] = ("auth", err)
        except Exception as err:  # noqa: BLE001 - reported in one line below
            result["r"] = ("error", err)

    with _quiet_stderr():
        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        thread.join(PROBE_TIMEOUT_S)
    return result.get("r", ("timeout", None))


def _token_source(token_file: str | None) -> str | None:
    """Where this process's token comes from, as Ray looks for it (``RAY_AUTH_TOKEN``, then the file of
    ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``), or None when there is none."""
    if token_file is not None:
        return token_file
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() and default.read_text().strip() else None


def _use_token_mode() -> None:
    """Turn Ray's token mode on in this process (and reread the token), as ``ray.init(address="auto")`` does."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    from ray._raylet import AuthenticationTokenLoader

    _enable_token_auth()
    AuthenticationTokenLoader.instance().reset_cache()


def resolve(address: str) -> str:
    """``auto`` as Ray resolves it (the cluster this machine joined last with ``ray start``), or ``HOST:PORT``
    checked for form; one-line :class:`ConfigError` otherwise."""
    if address.startswith("ray://"):
        raise ConfigError(
            "address",
            f"{address} is a Ray Client address; run the command on a node of the cluster (the head, say) with the "
            "address `ray start --head` printed (HOST:PORT, port 6379 by default)",
        )
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address("auto")
        if found is None:
            raise ConfigError(
                "address", "auto: no Ray cluster was started on this machine (`ray start`); give HOST:PORT"
            )
        return found
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("address", f"must be HOST:PORT as `ray start --head` printed it, or auto; got {address!r}")
    return address


def check_cluster(address: str, token_file: str | None) -> list:
    """Make sure Ray can join the cluster at ``address`` (HOST:PORT) from here, within seconds; return its alive
    nodes (GCS node records). Turns token mode on when the cluster asks for a token. One-line :class:`ConfigError`
    naming ``--address`` or ``--ray-token-file`` and what to do otherwise."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        raise ConfigError(
            "address",
            f"nothing answers at {address} ({reason}); give the address `ray start --head` printed on the head "
            "(HOST:PORT, port 6379 by default), and check the head is running (`ray status`)",
        ) from None
    status, got = _probe(address)
    if status == "auth" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        source = _token_source(token_file)
        if source is None:
            raise ConfigError(
                "ray_token_file",
                f"the cluster at {address} requires a token (RAY_AUTH_MODE=token) and none was found: copy the "
                "output of `ray get-auth-token` on the head into a file and pass --ray-token-file FILE (or set "
                "RAY_AUTH_TOKEN)",
            )
        _use_token_mode()
        status, got = _probe(address)
    if status == "auth":
        raise ConfigError(
            "ray_token_file",
            f"the cluster at {address} refused the token from {_token_source(token_file) or 'RAY_AUTH_TOKEN'}: "
            "give the one `ray get-auth-token` prints on the head",
        )
    if status == "timeout":
        raise ConfigError(
            "address",
            f"{address} accepts connections but no Ray cluster answered within {PROBE_TIMEOUT_S:.0f} s: give the "
            "port `ray start --head` printed (6379 by default)",
        )
    if status == "error":
        first = (str(got).strip().splitlines() or [type(got).__name__])[0]
        raise ConfigError("address", f"cannot join the Ray cluster at {address}: {first}")
    alive = [n for n in got if n.state == 0]  # GcsNodeInfo.ALIVE
    from ray._private.services import find_node_ids

    here = set(find_node_ids())  # the node ids of the raylets running on this machine, as ray.init looks for them
    if not any(n.node_id.hex() in here for n in alive):
        raise ConfigError(
            "address",
            f"this machine is not a node of the cluster at {address} (Ray's driver needs one): run the command on a "
            "node of the cluster (the head, say), where the output directory is written",
        )
    return alive


@contextlib.contextmanager
def session(address: str | None, token_file: str | None, workers: int, quiet: bool = False):
    """``(ray, cluster)``, Ray ready for :func:`run_jobs`: a Ray instance of ``workers`` CPUs started here
    (``address`` None; ``cluster`` None), or the cluster at ``address`` joined with the driver's ``sandbox`` package
    as the workers' (``py_modules``; ``cluster``: ``{"address", "nodes", "cpus"}``). Checks everything before Ray is
    asked (:func:`check_cluster`); shuts Ray down on the way out. An already initialised Ray (a notebook's) is used
    as it is."""
    try:
        import ray
    except ImportError:
        raise ConfigError("backend", "ray is not installed: pip install -c requirements.lock -e '.[ray]'") from None
    if token_file is not None and not (Path(token_file).is_file() and Path(token_file).read_text().strip()):
        raise ConfigError("ray_token_file", f"{token_file}: no such file, or it is empty")
    if ray.is_initialized():
        yield ray, None
        return
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    cluster = None
    try:
        if address is None:  # "local": a new instance here, even when RAY_ADDRESS names a cluster
            ray.init(address="local", num_cpus=workers, **kwargs)
        else:
            if token_file is not None:  # the option wins over the environment (Ray reads RAY_AUTH_TOKEN first)
                os.environ.pop("RAY_AUTH_TOKEN", None)
                os.environ["RAY_AUTH_TOKEN_PATH"] = str(Path(token_file).resolve())
            address = resolve(address)
            nodes = check_cluster(address, token_file)
            import sandbox

            package = str(Path(sandbox.__file__).resolve().parent)
            env = {"py_modules": [package], "excludes": ["__pycache__"]}
            try:
                ray.init(address=address, runtime_env=env, **kwargs)
            except (ConnectionError, RuntimeError) as err:
                raise ConfigError("address", f"cannot join the Ray cluster at {address}: {err}") from None
            cpus = int(sum(n.resources_total.get("CPU", 0) for n in nodes))
            cluster = {"address": address, "nodes": len(nodes), "cpus": cpus}
            if not quiet:
                print(f"joined the Ray cluster at {address}: {len(nodes)} nodes, {cpus} CPUs", flush=True)
        yield ray, cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_jobs(ray, work: list[list], done) -> None:
    """Each job of ``work`` (a list of sweep runs: one run, or a population) as a Ray task of one CPU
    (:func:`train_and_return`); as each comes back, its run directories are written (:func:`land`) and ``done(job,
    error)`` is called: error None, or one line saying why the job failed (its runs are then left for the next
    sweep)."""
    import sys

    remote = ray.remote(num_cpus=1, max_retries=RETRIES)(train_and_return)
    pending = {remote.remote([r.config.to_dict() for r in job]): job for job in work}
    here, warned = versions(), set()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            for run, result in zip(job, ray.get(ready[0])):
                land(run.dir, result["files"])
                drift = version_drift(here, result["versions"])
                if drift is not None and drift not in warned:
                    warned.add(drift)
                    print(f"warning: {drift}", file=sys.stderr, flush=True)
            done(job, None)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as err:
            done(job, f"its worker or node died ({RETRIES} retries spent): {str(err).strip().splitlines()[0]}")
        except Exception as err:  # noqa: BLE001 - one job's failure must not stop the others
            cause = getattr(err, "cause", None) or err  # a RayTaskError holds the run's own exception
            done(job, f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}")
