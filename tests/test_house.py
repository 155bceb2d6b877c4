"""The shape of the house: layers without import circles, one dropout-mode table, docs that match the code (the README,
the site's pages in docs/, the course and homework notes)."""

import ast
import re
import shlex
from pathlib import Path

import grimp
import pytest

from sandbox.cli import parse_command
from sandbox.dropout_modes import MODE_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sandbox"


def test_no_import_circle_counting_imports_inside_functions():
    graph = grimp.build_graph("sandbox", include_external_packages=False)
    modules = sorted(m for m in graph.modules if m != "sandbox")  # the package's face only hands names on
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i != "sandbox"} for m in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            assert state.get(n) != 1, "import circle: " + " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in modules:
        if m not in state:
            visit(m, [])


def _mentions_a_mode(node: ast.AST) -> bool:
    """A name or attribute about a mode: ``dropout_mode``, ``cfg.dropout_mode``, ``mode``, ``g.config["..."]``."""
    for x in ast.walk(node):
        name = x.id if isinstance(x, ast.Name) else x.attr if isinstance(x, ast.Attribute) else None
        if name is not None and "mode" in name:
            return True
        if isinstance(x, ast.Constant) and x.value == "dropout_mode":
            return True
    return False


def test_no_code_outside_the_mode_table_compares_mode_names():
    """``dropout_modes.py`` defines the four modes once; elsewhere code reads the table, never ``mode == "naive"``."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "dropout_modes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                constants = [x for o in operands for x in ([o, *getattr(o, "elts", [])])]
                if any(isinstance(x, ast.Constant) and x.value in MODE_NAMES for x in constants) and any(
                    _mentions_a_mode(o) for o in operands
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def _code_blocks(markdown: str, languages=("bash", "sh", "console", "")) -> list[str]:
    blocks, current, lang = [], None, None
    for line in markdown.splitlines():
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and current is None:
            current, lang = [], fence.group(1)
        elif fence:
            if lang in languages:
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _sandbox_command_lines(markdown: str) -> list[list[str]]:
    commands = []
    for block in _code_blocks(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line.startswith("sandbox "):
                continue
            words = shlex.split(re.sub(r"\[([^\]]*)\]", r"\1", line), comments=True)  # [--opt X]: parsed too
            command: list[str] = []
            for word in [*words, "&&"]:  # a line may chain commands: sandbox train ... && sandbox eval ...
                if word in ("&&", ";", "|"):
                    if command[:1] == ["sandbox"]:
                        commands.append(command[1:])
                    command = []
                else:
                    command.append(word)
    return commands


DOCS = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "/_" not in p.relative_to(ROOT).as_posix()),
    *sorted((ROOT / "notebooks").rglob("README.md")),
]
HOUSE = ROOT / "docs" / "guide" / "house.md"  # the engine's house: the Layout block


def test_the_docs_show_the_command_line():
    assert sum(len(_sandbox_command_lines(doc.read_text())) for doc in DOCS) >= 15


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_sandbox_command_in_the_docs_parses_with_the_real_cli(doc):
    """The docs and the CLI cannot drift apart: each ``sandbox ...`` line of a code block is parsed as the command
    would parse it (without running it)."""
    commands = _sandbox_command_lines(doc.read_text())
    for argv in commands:
        if "--help" in argv:
            with pytest.raises(SystemExit) as exit_:
                parse_command(argv)
            assert exit_.value.code == 0
        else:
            parse_command(argv)  # raises a one-line UsageError or ConfigError on drift


def test_the_layout_names_every_module_and_only_existing_ones():
    house = HOUSE.read_text()
    layout = house[house.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 5)] if "\n## " in layout[5:] else layout
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    named = {
        n.removeprefix("sandbox/") for n in re.findall(r"\b([a-z_][a-z0-9_]*(?:/[a-z_][a-z0-9_]*)?\.py)\b", layout)
    }
    top_level = {m for m in modules if "/" not in m}
    inner = {m.rsplit("/", 1)[1] for m in modules if "/" in m}  # the folders' modules: algos/, grade/, report/...
    assert top_level - named == set(), "modules missing from the Layout (docs/guide/house.md)"
    assert inner - named == set(), "folder modules missing from the Layout (docs/guide/house.md)"
    stale = {n for n in named if n not in top_level and n not in inner and n not in modules}
    assert stale == set(), "files the Layout (docs/guide/house.md) names that do not exist"


def test_the_package_shows_its_layers_as_folders():
    """At most 12 modules directly in sandbox/ (what students and scripts import by name); the rest in the folders
    the import contracts name."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    contract = (ROOT / "pyproject.toml").read_text()
    for folder in ("envs", "models", "runs", "algos", "analysis", "grade", "bench"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
        assert re.search(rf'"(?:[a-z_]+ \| )*{folder}\b', contract), f"{folder}: not a layer of the import contract"
