"""``sandbox doctor``: is this machine ready for the course? The check a course hands out before the first class.

Each check prints one line: ``OK`` with what it found, or ``FAIL`` with what is wrong and what to do. The exit code is
0 when every check passed, 1 otherwise (2 for a bad flag, as every command). It takes 10 to 30 s on a laptop, most
of it a short PPO run and a Jupyter kernel's start, and downloads nothing.

What it checks, in order: the Python version; torch, gymnasium, stable-baselines3 and jupyter at the versions of
``requirements.lock`` (its pins for this machine: the lock's environment markers are judged here, as pip judges them),
then every other locked package; the CPU threads torch sees; that the cache directory of the language references
(``$SANDBOX_CACHE``) is writable; that a tiny language reference pretrains and survives a save and a load; a short
PPO run on CartPole that learns; a GIF written without a display; and that Jupyter's ``python3`` kernel, the one the
lessons run in, imports this ``sandbox``.

The trap it exists for: a laptop that installed *something* (another Python, a CUDA torch, a kernel that runs the
system Python) passes ``import sandbox`` and fails in the middle of lesson 3. Every check here runs the real code path
of a lesson (the trainer, the pretraining, the GIF writer, the kernel), so a pass means the lessons run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from .config import ConfigError

FIX_INSTALL = 'run `make setup` again, or the pip commands of the README\'s "Install" (no make: Windows)'
# The course's Python versions: the lock is resolved and checked (make lock-check) for these.
PYTHONS = ((3, 11), (3, 12), (3, 13))
# The packages a lesson imports by name, with the name pip knows them by.
NAMED = (("torch", "torch"), ("gymnasium", "gymnasium"), ("stable-baselines3", "stable_baselines3"), ("jupyter", None))
PPO_STEPS = 16_384
PPO_FLOOR = 40.0  # CartPole's mean return: a random policy scores about 22; PPO past 16k steps, over 100 on seed 0


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` and what was found, or what is wrong and what to do (``message``)."""

    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.name}: {self.message}"


def default_lock() -> Path:
    """requirements.lock of the checkout this ``sandbox`` runs from (make setup installs it editable there)."""
    return Path(__file__).resolve().parents[1] / "requirements.lock"


def read_lock(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The lock's pins that apply on this machine (or in ``env``): ``{canonical name: version}``.

    The lock pins some packages twice with exclusive markers (torch: its CPU build ``2.13.0+cpu`` on Linux, PyPI's
    ``2.13.0`` on macOS and Windows); reading it without judging the markers would compare against the wrong one."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    return pins


def installed_versions() -> dict[str, str]:
    from importlib import metadata

    from packaging.utils import canonicalize_name

    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def satisfies(installed: str, pinned: str) -> bool:
    """``installed`` meets the pin ``==pinned`` as pip judges it: a pin without a local label admits a build that has
    one (``==2.13.0`` admits ``2.13.0+cpu``, PEP 440), a pin with one (``==2.13.0+cpu``) admits only that build."""
    from packaging.specifiers import SpecifierSet

    return installed in SpecifierSet(f"=={pinned}")


# --- the checks ---------------------------------------------------------------------------------------------------


def check_python(version: tuple[int, int, int] | None = None, implementation: str | None = None) -> Check:
    v = tuple(version or sys.version_info[:3])
    impl = implementation or platform.python_implementation()
    text = f"{'.'.join(map(str, v))} ({impl}, {sys.executable})"
    course = ", ".join(f"{a}.{b}" for a, b in PYTHONS)
    if impl != "CPython" or tuple(v[:2]) not in PYTHONS:
        return Check("Python", False, f"{text}: the course needs CPython {course}; install one and set up again")
    return Check("Python", True, text)


def check_versions(
    lock: Path, installed: dict[str, str] | None = None, required: set[str] | None = None
) -> list[Check]:
    """The lesson packages one line each, then the rest in one line, against the lock's pins here. ``installed``
    ({name: version}) and ``required`` (what the project and its dev extra need) default to this environment's."""
    if not lock.is_file():
        return [Check("versions", False, f"no lock at {lock}: run sandbox doctor from the course's checkout")]
    pins = read_lock(lock)
    have = installed_versions() if installed is None else installed
    need = required_here() if required is None else required
    checks = []
    for name, _module in NAMED:
        if name not in pins:
            checks.append(Check(name, False, f"not in {lock.name}: the lock does not belong to this course"))
        elif name not in have:
            checks.append(Check(name, False, f"not installed (the lock has {pins[name]}): {FIX_INSTALL}"))
        elif not satisfies(have[name], pins[name]):
            checks.append(Check(name, False, f"{have[name]}, the lock has {pins[name]}: {FIX_INSTALL}"))
        else:
            checks.append(Check(name, True, f"{have[name]}, as the lock" + _torch_build(name)))
    named = {n for n, _ in NAMED}
    missing = sorted(n for n in need - named if n not in have)
    wrong = sorted(
        f"{n} {have[n]} (lock {v})"
        for n, v in pins.items()
        if n not in named and n in have and not satisfies(have[n], v)
    )
    said = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"other versions: {', '.join(wrong)}"] if wrong else []
    )
    if said:
        checks.append(Check("the rest of the lock", False, f"{'; '.join(said)}: {FIX_INSTALL}"))
    else:
        at = sum(1 for n in pins if n in have and n not in named)
        checks.append(Check("the rest of the lock", True, f"{at} more installed packages at the lock's versions"))
    return checks


def required_here(project: str = "dropout-rl-sandbox", extras: tuple[str, ...] = ("dev",)) -> set[str]:
    """What the installed project asks for directly, with the extras make setup installs (its own metadata)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        reqs = metadata.requires(project) or []
    except metadata.PackageNotFoundError:
        return {canonicalize_name(project)}  # reported missing: the sandbox runs without being installed
    need = set()
    for r in map(Requirement, reqs):
        if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("", *extras)):
            need.add(canonicalize_name(r.name))
    return need


def _torch_build(name: str) -> str:
    if name != "torch":
        return ""
    import torch

    return " (CPU build)" if torch.version.cuda is None else f" (a CUDA {torch.version.cuda} build: fine, not needed)"


def check_threads() -> Check:
    """What torch would use, then one thread for the checks that follow, as every run of the sandbox uses
    (``--torch-threads``, default 1): several threads on a busy laptop are slower than one."""
    import torch

    cores, threads = os.cpu_count(), torch.get_num_threads()
    torch.set_num_threads(1)
    return Check(
        "CPU threads",
        True,
        f"{cores} logical cores; torch would use {threads} threads, the sandbox's runs 1 each (--torch-threads), so "
        "parallel runs (sweeps, lessons 04, 06-08) share the cores",
    )


def check_cache(directory: Path | None = None) -> Check:
    """The language references are pretrained once and cached there; an unwritable cache fails lesson 05."""
    from .runs.pretrain import cache_dir

    where = Path(directory) if directory is not None else cache_dir()
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".doctor-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        return Check(
            "cache directory",
            False,
            f"{where} is not writable ({err.strerror or err}): set SANDBOX_CACHE to a writable directory",
        )
    return Check("cache directory", True, f"{where} is writable (SANDBOX_CACHE)")


def check_pretrain(steps: int = 30) -> Check:
    """A tiny language reference: pretrained for a few steps, saved and loaded back (as the cache does), in memory and
    a temporary folder, so the real cache is left alone."""
    import torch

    from .envs.lang_tasks import make_task
    from .models.gpt import ModelConfig, TinyGPT
    from .runs.pretrain import PretrainConfig, pretrain

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        model, stats = pretrain(make_task("reverse"), PretrainConfig(steps=steps))
    if not math.isfinite(stats["final_loss"]):
        return Check("language reference", False, f"loss {stats['final_loss']} after {steps} steps: {FIX_INSTALL}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ref.pt"
        torch.save({"model_config": dataclasses.asdict(model.cfg), "state_dict": model.state_dict()}, path)
        blob = torch.load(path, weights_only=True)
        TinyGPT(ModelConfig(**blob["model_config"])).load_state_dict(blob["state_dict"])
    return Check(
        "language reference",
        True,
        f"a tiny GPT pretrained {steps} steps on lang:reverse (loss {stats['final_loss']:.2f}), saved and loaded, "
        f"in {time.perf_counter() - t0:.1f} s",
    )


def check_ppo(steps: int = PPO_STEPS) -> Check:
    """PPO with the cartpole preset for ``steps`` steps, seed 0, nothing written: it runs and it learns something."""
    from .config import preset
    from .training import train

    t0 = time.perf_counter()
    result = train(preset("cartpole", total_steps=steps, seed=0, quiet=True))
    seconds = time.perf_counter() - t0
    summary = result.summary
    ret = summary.get("final_return")
    found = f"{steps:,} steps of CartPole-v1 in {seconds:.1f} s ({steps / seconds:,.0f} steps/s), final return {ret}"
    if summary.get("status") != "ok" or ret is None or not ret > PPO_FLOOR:
        return Check("PPO", False, f"{found}, expected above {PPO_FLOOR:g}: {FIX_INSTALL}; if it persists, report it")
    return Check("PPO", True, found)


def check_gif(frames: int = 10) -> Check:
    """CartPole drawn offscreen (pygame with SDL's dummy driver, as ``sandbox eval --gif`` sets it) into a GIF."""
    from .envs.gym_tasks import make_env
    from .runs.evaluate import write_gif

    env = make_env("CartPole-v1", render_mode="rgb_array")
    try:
        env.reset(seed=0)
        images = [env.render()]
        for _ in range(frames - 1):
            env.step(env.action_space.sample())
            images.append(env.render())
    finally:
        env.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doctor.gif"
        write_gif(images, path, fps=30)
        head = path.read_bytes()[:6]
    if head not in (b"GIF87a", b"GIF89a"):
        return Check("GIF", False, f"the file written is not a GIF ({head!r}): {FIX_INSTALL}")
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    where = "with a display set, drawn offscreen all the same" if display else "without a display"
    return Check("GIF", True, f"{frames} frames of CartPole-v1 written to a GIF {where}")


def check_kernel(kernel: str = "python3", timeout: float = 60) -> Check:
    """Jupyter's ``python3`` kernel (the lessons name no other) starts and imports this ``sandbox``. The trap: a kernel
    spec left by another install (``jupyter kernelspec list``) that runs another Python, without the sandbox."""
    import subprocess

    from jupyter_client.kernelspec import NoSuchKernel
    from jupyter_client.manager import start_new_kernel

    ours = str(Path(__file__).resolve().parent)
    code = "import sys\ntry:\n    import sandbox\n    print(sandbox.__path__[0])\n"
    code += "except ImportError as e:\n    print('!', e)\nprint(sys.executable)"
    try:
        km, kc = start_new_kernel(kernel_name=kernel, startup_timeout=timeout, stderr=subprocess.DEVNULL)
    except NoSuchKernel:
        return Check("Jupyter kernel", False, f"no kernel named {kernel!r}: {FIX_INSTALL} (it installs ipykernel)")
    out: list[str] = []
    try:
        kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: _collect(m, out))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    lines = "".join(out).splitlines()
    if len(lines) < 2:
        return Check("Jupyter kernel", False, f"{kernel} printed {lines!r}: {FIX_INSTALL}")
    found, exe = lines[0], lines[-1]
    if found.startswith("!") or Path(found).resolve() != Path(ours):
        what = (
            f"cannot import sandbox ({found[1:].strip()})" if found.startswith("!") else f"imports sandbox from {found}"
        )
        return Check(
            "Jupyter kernel",
            False,
            f"{kernel} runs {exe} and {what}: start Jupyter from this environment ({sys.executable} -m jupyter lab), "
            "or remove the kernel spec that shadows it (jupyter kernelspec list)",
        )
    return Check("Jupyter kernel", True, f"{kernel} runs {exe} and imports sandbox from {found}")


def _collect(msg: dict, out: list[str]) -> None:
    if msg["msg_type"] == "stream":
        out.append(msg["content"]["text"])
    elif msg["msg_type"] == "error":
        out.append(f"! {msg['content']['ename']}: {msg['content']['evalue']}\n")


# --- the report ---------------------------------------------------------------------------------------------------


def checks(lock: Path) -> list[Callable[[], Check | list[Check]]]:
    """The checks in the order they run (cheap first, so a broken install says so before the slow ones)."""
    return [
        check_python,
        lambda: check_versions(lock),
        check_threads,
        check_cache,
        check_pretrain,
        check_ppo,
        check_gif,
        check_kernel,
    ]


def run(todo: Iterable[Callable[[], Check | list[Check]]], write: Callable[[str], None] = print) -> int:
    """Run each check, print its lines as they come, and return the exit code: 0 if all passed, 1 otherwise. A check
    that raises is a FAIL line with the error (a doctor that crashes on a broken install would help nobody)."""
    t0 = time.perf_counter()
    write("sandbox doctor: is this machine ready for the course?")
    failed = 0
    for check in todo:
        try:
            found = check()
        except Exception as err:  # noqa: BLE001 - every failure becomes a line of the report
            name = getattr(check, "__name__", "check").removeprefix("check_").replace("_", " ")
            first = (str(err).strip().splitlines() or [""])[0]
            found = Check(name, False, f"{type(err).__name__}: {first}: {FIX_INSTALL}")
        for c in found if isinstance(found, list) else [found]:
            failed += not c.ok
            write(c.line())
    seconds = time.perf_counter() - t0
    if failed:
        problems = f"{failed} problem{'s' * (failed > 1)}"
        write(f"sandbox doctor: {problems} ({seconds:.0f} s): fix the FAIL lines, then run it again")
        return 1
    write(f"sandbox doctor: ready ({seconds:.0f} s)")
    return 0


def doctor(lock: str | os.PathLike | None = None) -> int:
    """``sandbox doctor``: every check against ``lock`` (default: the checkout's requirements.lock); the exit code."""
    path = Path(lock) if lock is not None else default_lock()
    if lock is not None and not path.is_file():
        raise ConfigError("lock", f"no such file: {str(path)!r}")
    import torch

    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):  # called from Python (a notebook, a test): leave its state as it was
            return run(checks(path))
    finally:
        torch.set_num_threads(threads)


@dataclasses.dataclass
class DoctorArgs:
    """Is this machine ready for the course? One line per check, OK or what to do; exit code 1 if any failed."""

    lock: str | None = None
    """The lock to compare the versions with (default: requirements.lock of the checkout sandbox runs from)."""


COMMANDS = {"doctor": (DoctorArgs, lambda a: doctor(a.lock))}
"""command -> (the dataclass of its arguments, what it does with them: the exit code)."""
