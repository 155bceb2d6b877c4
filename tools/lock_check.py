"""`make lock-check`: does requirements.lock install on every student platform and Python? It asks the indexes.

For each platform and CPython version of TARGETS x PYTHONS, uv is asked whether every pin of the lock that applies
there has a wheel there: `uv pip compile --no-deps --only-binary :all: --python-platform P --python-version V`,
which judges each pin's environment marker for the target (pip's `--platform` does not: it judges markers such as
`sys_platform` for the machine running it, so a Windows-only pin is skipped and a Linux-only one checked). Every pin
of the lock is checked, extras included, so a pass means that `make setup` (the dev extra) and every extra install
there from wheels alone, nothing compiled on a student's laptop.

Each pin is checked against the index it installs from: PyTorch's CPU builds (a `+cpu` version) against the CPU index
(--torch-index), everything else against PyPI. An index that cannot be reached is said, with the platform, the
package and the index, and its pins count as not verified, never as passed.

A failure names the platform, the Python, the package, uv's reason and who needs it (`make setup`, or only an extra).
Exit code 0 when every pin that could be checked has its wheel (platforms in UNSUPPORTED are expected to fail and are
reported as such), 1 otherwise. It needs the network, so `make test` does not run it; tests/test_packaging.py runs it
against a fake uv.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Target:
    name: str
    uv_platform: str  # uv's --python-platform
    markers: dict[str, str]  # the marker variables that differ between the targets (PEP 508)
    env: dict[str, str]  # environment uv reads for the target


# Linux: glibc 2.28 or newer (torch's manylinux_2_28 wheels); macOS: 14 (Sonoma) or newer (torch's macosx_14_0_arm64).
_LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
_MACOS = {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"}
TARGETS = (
    Target("Linux x86_64", "x86_64-manylinux_2_28", {**_LINUX, "platform_machine": "x86_64"}, {}),
    Target("Linux aarch64", "aarch64-manylinux_2_28", {**_LINUX, "platform_machine": "aarch64"}, {}),
    Target(
        "macOS arm64",
        "aarch64-apple-darwin",
        {**_MACOS, "platform_machine": "arm64"},
        {"MACOSX_DEPLOYMENT_TARGET": "14.0"},
    ),
    Target(
        "macOS x86_64",
        "x86_64-apple-darwin",
        {**_MACOS, "platform_machine": "x86_64"},
        {"MACOSX_DEPLOYMENT_TARGET": "14.0"},
    ),
    Target(
        "Windows x86_64",
        "x86_64-pc-windows-msvc",
        {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
        {},
    ),
)
PYTHONS = ("3.11", "3.12", "3.13")
# Platforms the lock cannot serve, with the reason the README gives; the check still runs there and says what fails
# (and says so if the platform starts to pass, so that this entry can go).
UNSUPPORTED = {
    "macOS x86_64": "PyTorch publishes no macOS x86_64 (Intel Mac) wheel of torch after 2.2.2",
}
PYPI = "https://pypi.org/simple"


def marker_environment(target: Target, python: str) -> dict[str, str]:
    """The PEP 508 variables of CPython `python` (x.y, taken as x.y.0) on `target`, for packaging's Marker.evaluate."""
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "implementation_version": f"{python}.0",
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_release": "",
        "platform_version": "",
        **target.markers,
    }


@dataclass(frozen=True)
class Pin:
    line: str  # the requirement as the lock writes it, without its annotation
    name: str  # canonical
    version: str
    marker: Marker | None
    via: tuple[str, ...]  # the annotation: who needs it ("dropout-rl-sandbox (pyproject.toml)" for a direct dependency)

    def applies(self, env: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(env)

    @property
    def from_torch_index(self) -> bool:
        """PyTorch's CPU builds carry the local label +cpu, and only its CPU index serves them."""
        return self.version.endswith("+cpu")


def read_lock(path: Path) -> list[Pin]:
    """Every pin of a lock written by `uv pip compile --annotation-style line`; refuses anything that is not `==`."""
    pins = []
    for raw in path.read_text().splitlines():
        line, _, note = raw.partition("#")
        line = line.strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise SystemExit(f"lock-check: error: {path}: not an exact pin: {line!r}")
        via = tuple(x.strip() for x in note.strip().removeprefix("via").split(",") if x.strip())
        pins.append(Pin(line, canonicalize_name(req.name), spec[0].version, req.marker, via))
    return pins


def needed_by(pins: list[Pin], roots: set[str]) -> set[str]:
    """The packages the lock installs for these direct requirements: the roots and, by the lock's `via` notes, below."""
    needed, changed = set(roots), True
    while changed:
        changed = False
        for pin in pins:
            if pin.name not in needed and any(canonicalize_name(v) in needed for v in pin.via):
                needed.add(pin.name)
                changed = True
    return needed


def setup_roots(pyproject: Path) -> dict[str, set[str]]:
    """{'make setup': base + dev dependencies, extra: its dependencies}, as canonical names."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in reqs}

    extras = project["optional-dependencies"]
    roots = {"make setup": names(project["dependencies"]) | names(extras["dev"])}
    roots.update({f"extra {k}": names(v) for k, v in extras.items() if k != "dev"})
    return roots


_NO_WHEEL = re.compile(r"Because (?P<name>[A-Za-z0-9._-]+)(?:\{[^}]*\})?==(?P<version>\S+) (?P<why>has no .*?) and you")


def uv_check(uv: str, lines: list[str], target: Target, python: str, index: str) -> tuple[int, str]:
    """Run uv once on these requirement lines for the target; (exit code, stderr). uv: 1 = unsatisfiable, 2 = error."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        cmd = [uv, "pip", "compile", "--no-config", "--quiet", "--no-deps", "--only-binary", ":all:", "--no-header"]
        cmd += ["--python-platform", target.uv_platform, "--python-version", python, "--index-url", index]
        cmd += ["-o", os.devnull, f.name]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **target.env})
        return done.returncode, done.stderr
    finally:
        os.unlink(f.name)


def first_cause(stderr: str) -> str:
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    causes = [x.removeprefix("cause:").strip() for x in lines if x.startswith("cause:")]
    return causes[-1] if causes else lines[0] if lines else "no message"


@dataclass
class Result:
    target: Target
    python: str
    checked: int = 0
    failures: list[tuple[Pin, str]] | None = None
    unverified: list[tuple[Pin, str]] | None = None
    error: str | None = None


def check_target(uv: str, pins: list[Pin], target: Target, python: str, torch_index: str, torch_reach: dict) -> Result:
    """Every pin that applies to (target, python), each against its own index; a missing wheel is taken out and the
    check repeated, so that every failing package is named, not only the first."""
    env = marker_environment(target, python)
    here = [p for p in pins if p.applies(env)]
    result = Result(target, python, failures=[], unverified=[])
    for index, group in (
        (PYPI, [p for p in here if not p.from_torch_index]),
        (torch_index, [p for p in here if p.from_torch_index]),
    ):
        if index == torch_index and group and torch_reach.get("error"):
            result.unverified += [(p, torch_reach["error"]) for p in group]
            continue
        left = list(group)
        while left:
            code, err = uv_check(uv, [p.line for p in left], target, python, index)
            if code == 0:
                result.checked += len(left)
                break
            m = _NO_WHEEL.search(err)
            failed = m and next((p for p in left if p.name == canonicalize_name(m["name"])), None)
            if not failed:
                if index == torch_index and "Failed to fetch" in err:
                    torch_reach["error"] = f"{index} unreachable ({first_cause(err)})"
                    result.unverified += [(p, torch_reach["error"]) for p in left]
                else:
                    result.error = f"uv failed against {index}: {first_cause(err)}"
                break
            result.failures.append((failed, f"{m['why']} on {index}"))
            left.remove(failed)
    return result


def who_needs(pin: Pin, needs: dict[str, set[str]]) -> str:
    users = [k for k, names in needs.items() if pin.name in names]
    return ", ".join(users) if users else "nothing (not reached from pyproject.toml)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lock-check", description=__doc__.splitlines()[0])
    ap.add_argument("lock", type=Path, nargs="?", default=Path("requirements.lock"))
    ap.add_argument("--uv", default="uv", help="the uv executable (make passes the venv's)")
    ap.add_argument("--torch-index", default="https://download.pytorch.org/whl/cpu", help="PyTorch's CPU index")
    ap.add_argument("--pyproject", type=Path, default=None, help="default: pyproject.toml beside the lock")
    args = ap.parse_args(argv)
    if not args.lock.is_file():
        print(f"lock-check: error: lock: no such file: {args.lock}", file=sys.stderr)
        return 2
    pins = read_lock(args.lock)
    roots = setup_roots(args.pyproject or args.lock.parent / "pyproject.toml")
    needs = {who: needed_by(pins, names) for who, names in roots.items()}
    torch_reach: dict = {}
    bad = 0
    unverified_total = []
    print(f"lock-check: {args.lock}: {len(pins)} pins; PyPI ({PYPI}) for all but the +cpu builds: {args.torch_index}")
    for target in TARGETS:
        for python in PYTHONS:
            r = check_target(args.uv, pins, target, python, args.torch_index, torch_reach)
            head = f"{target.name:<15} CPython {python}:"
            expected = UNSUPPORTED.get(target.name)
            if r.error:
                print(f"{head} ERROR: {r.error}")
                bad += 1
                continue
            status = "FAIL" if r.failures else "ok"
            if expected:
                status = "not supported (expected)" if r.failures else "passes now: take it out of UNSUPPORTED"
                bad += 0 if r.failures else 1
            else:
                bad += bool(r.failures)
            note = f"; {len(r.unverified)} not verified" if r.unverified else ""
            print(f"{head} {status}: {r.checked} pins have a wheel there{note}")
            for pin, why in r.failures:
                who = who_needs(pin, needs)
                print(f"    {target.name} CPython {python}: {pin.name}=={pin.version} {why}; needed by {who}")
            if expected and r.failures:
                print(f"    ({expected})")
            for pin, why in r.unverified:
                print(f"    NOT VERIFIED {target.name} CPython {python}: {pin.name}=={pin.version}: {why}")
                unverified_total.append(f"{target.name} CPython {python} {pin.name}=={pin.version}")
    if unverified_total:
        print(
            f"lock-check: not verified ({len(unverified_total)}; their index could not be reached): "
            + "; ".join(unverified_total)
        )
    print(
        "lock-check: "
        + ("FAILED" if bad else "passed")
        + (" (with pins not verified, above)" if unverified_total else "")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
