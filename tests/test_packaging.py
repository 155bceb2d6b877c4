"""Install files agree with each other, and the venv has the CPU build of torch."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _conda_pip_section() -> list[str]:
    lines, inside = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped == "- pip:":
            inside = True
            continue
        if inside and stripped.startswith("- "):
            lines.append(stripped[2:])
    return lines


def _lock() -> dict[str, str]:
    """requirements.lock as {canonical name: version}; every entry must be an exact pin."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(\s*;.*)?", line)
        assert m, f"requirements.lock: not an exact pin: {line!r}"
        pins[_canonical(m.group(1))] = m.group(2)
    return pins


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return {_canonical(n) for n in names}


def test_the_lock_pins_every_dependency_of_pyproject_and_its_extras_exactly():
    lock = _lock()
    assert _declared() - set(lock) == set(), "dependencies of pyproject.toml missing from requirements.lock"
    assert {"numpy", "scipy", "pandas", "matplotlib", "jupyter", "pip", "setuptools"} <= set(lock)  # the whole tree


def test_the_lock_agrees_with_the_constraints_and_has_the_cpu_torch():
    lock = _lock()
    constraints = [x for x in (ROOT / "constraints.txt").read_text().splitlines() if x and not x.startswith("#")]
    for line in constraints:
        name, version = line.split("==")
        assert lock[_canonical(name)].split("+")[0] == version, f"{name}: constraints.txt and the lock differ"
    assert lock["torch"] == "2.13.0+cpu"
    assert not [n for n in lock if n.startswith("nvidia") or n == "triton"], "CUDA packages in the lock"


def test_every_install_uses_the_lock():
    """environment.yml installs what `make setup` installs (the dev extra), under the same lock; the Makefile's every
    pip install reads the lock; the lock is made by pip-tools from pyproject.toml (make lock)."""
    assert _conda_pip_section() == [
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        "-c requirements.lock",
        "-e .[dev]",
    ]
    makefile = (ROOT / "Makefile").read_text()
    installs = [x for x in makefile.splitlines() if "pip install" in x]
    assert installs and all("-c $(LOCK)" in x for x in installs)
    assert 'install --quiet --no-build-isolation -c $(LOCK) $(TORCH_INDEX_ARGS) -e ".[dev]"' in makefile
    assert "LOCK   := requirements.lock" in makefile and "pip-compile" in makefile
    assert "pip-compile" in (ROOT / "requirements.lock").read_text().splitlines()[1]  # pip-tools' own header


def test_the_venv_has_the_locked_versions():
    """What make setup installed is what the lock says (run `make setup` after a lock change)."""
    lock = _lock()
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (v, lock[n]) for n, v in installed.items() if n in lock and v != lock[n]}
    assert wrong == {}, f"installed version != locked version: {wrong}"


def test_environment_yml_asks_for_python_311():
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_torch_is_the_cpu_build_without_cuda_packages():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert not torch.cuda.is_available() and torch.version.cuda is None
    cuda = [d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia")]
    assert cuda == []


def test_ci_runs_make_test_and_nothing_else():
    lines = [x for x in (ROOT / ".ci" / "run").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[-1].strip() == "make test"
    assert not any(re.search(r"\b(pytest|pip)\b", x) for x in lines)


def test_readme_documents_every_metric_and_has_no_placeholders():
    from sandbox.metrics import METRICS

    readme = (ROOT / "README.md").read_text()
    assert [name for name, doc in METRICS.items() if f"| `{name}` | {doc} |" not in readme] == []  # the same words
    assert not re.search(r"\b[A-Z]+_TABLE\b", readme)
