"""Install files agree with each other, and the venv has the CPU build of torch."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def _conda_pip_section() -> list[str]:
    lines, inside = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped == "- pip:":
            inside = True
            continue
        if inside and stripped.startswith("- ") and not stripped.startswith("- --"):
            lines.append(stripped[2:])
    return lines


def _pins(lines) -> dict[str, str]:
    return {_name(x): x.split("==", 1)[1].strip() for x in lines if "==" in x}


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]} | {_name(r) for r in project["optional-dependencies"]["dev"]}
    assert {_name(r) for r in _conda_pip_section()} == declared


def test_environment_yml_uses_the_constraints_pins():
    constraints = [x for x in (ROOT / "constraints.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert _pins(_conda_pip_section()) == _pins(constraints)
    assert _pins(constraints)["torch"] == "2.13.0"


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
