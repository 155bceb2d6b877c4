"""One declaration per option (sandbox/config.py): a field says where it is declared which kinds of run it applies to,
its default per kind, what SB3 and populations refuse; ``--help``, the refusals, the tables and the reference page
follow from that alone. Each section validates its own fields."""

import ast
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox import config

ROOT = Path(__file__).resolve().parents[1]

TOY = '''
    toy_option: float | None = option(None, per_kind=on_gym_and_lang(0.5, 0.25), sb3="no toys in SB3", population=False)
    """A toy option: one declaration, seen everywhere."""
'''

PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import sandbox
    from sandbox import config
    from sandbox.algos.population import check_population
    from sandbox.cli import main

    assert sandbox.__file__.startswith(sys.argv[1]), sandbox.__file__
    seen = {}

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit_:
                code = exit_.code
        return code, out.getvalue(), err.getvalue()

    for kind, flags in {"ppo": [], "grpo": ["--algo", "grpo"], "sb3-ppo": ["--algo", "sb3-ppo"]}.items():
        text = run("train", *flags, "--help")[1]  # one column at 80 characters: the box's borders out, lines joined
        seen["help-" + kind] = " ".join(line.strip("│ ") for line in text.splitlines())
    seen["refused"] = run("train", "--algo", "grpo", "--toy-option", "3", "--quiet")[2]
    for name, cfg in {"sb3": config.Config(algo="sb3-ppo", toy_option=3.0)}.items():
        try:
            config.validate(cfg)
        except config.ConfigError as err:
            seen[name] = str(err)
    try:
        check_population([config.Config(toy_option=1.0), config.Config(seed=1, toy_option=1.0)])
    except config.ConfigError as err:
        seen["population"] = str(err)
    seen["resolved"] = [config.validate(config.Config(**kw)).toy_option for kw in ({}, {"toy_option": 0.1})]
    seen["kind_defaults"] = {k: v.get("toy_option") for k, v in config.KIND_DEFAULTS.items()}
    try:
        sys.path.insert(0, sys.argv[1] + "/docs/_ext")
        import sandbox_site
    except ImportError:  # the docs extra is not installed
        pass
    else:
        seen["page"] = sandbox_site.field_notes("toy_option")
        seen["page_help"] = sandbox_site.field_help(config.SECTIONS["rollout"], "toy_option")
    print(json.dumps(seen))
    """
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    """A copy of the package with one field added to RolloutConfig, in one place, and what the copy shows of it."""
    copy = tmp_path_factory.mktemp("toy")
    shutil.copytree(ROOT / "sandbox", copy / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs" / "_ext", copy / "docs" / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "sandbox" / "config.py"
    source = path.read_text()
    anchor = '    """Steps per environment per rollout; a batch is num_envs * num_steps transitions."""\n'
    assert source.count(anchor) == 1
    path.write_text(source.replace(anchor, anchor + TOY.lstrip("\n")))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(copy)],
        cwd=copy,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_toy_option_declared_once_shows_in_help_for_the_kinds_it_applies_to(toy):
    assert "--toy-option" in toy["help-ppo"] and "one declaration, seen everywhere" in toy["help-ppo"]
    assert "(default: 0.5)" in toy["help-ppo"]  # its default for PPO on Gym, from its per_kind
    assert "--toy-option" not in toy["help-grpo"]  # its section does not apply to GRPO
    assert "--toy-option" not in toy["help-sb3-ppo"]  # SB3 refuses it


def test_a_toy_option_declared_once_is_refused_and_resolved(toy):
    assert toy["refused"].strip().splitlines() == [
        "sandbox train: error: --toy-option: not for GRPO on Gym tasks, which ignores it (only for PPO on Gym tasks, "
        "SB3's PPO on Gym tasks); leave it out"
    ]
    assert toy["sb3"] == "--toy-option: not with --algo sb3-ppo: no toys in SB3"
    assert toy["population"].startswith("--toy-option: is not supported in a population")
    assert toy["resolved"] == [0.5, 0.1]
    assert toy["kind_defaults"] == {"ppo": 0.5, "ppo-lang": 0.25, "grpo": 0.5, "grpo-lang": 0.25, "sb3-ppo": 0.5}


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="the docs extra is not installed (make docs)")
def test_a_toy_option_declared_once_is_on_the_reference_page(toy):
    """What the page's directive writes under the field (docs/_ext/sandbox_site.py; tests/test_docs.py builds the site
    and finds every field of Config on it)."""
    assert toy["page_help"] == "A toy option: one declaration, seen everywhere."
    assert "PPO on Gym tasks 0.5" in toy["page"][0] and "PPO on language tasks 0.25" in toy["page"][0]
    assert toy["page"][1:] == [
        "Not with --algo sb3-ppo: no toys in SB3.",
        "Not in a population of several seeds (only None).",
    ]


def test_each_section_validates_its_own_fields():
    """A section's ``_validate_<section>`` reads only its own fields (and the checks they share); what reads several
    sections is in ``_validate_across_sections``."""
    tree = ast.parse((ROOT / "sandbox" / "config.py").read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for name, cls in config.SECTIONS.items():
        own = {f.name for f in dataclasses.fields(cls)}
        method = next(n for n in classes[cls.__name__].body if getattr(n, "name", "") == f"_validate_{name}")
        read = {n.attr for n in ast.walk(method) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "self"}
        strings = {n.value for n in ast.walk(method) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        named = {s for s in strings if s in config.FIELDS}  # _positive_int(self, "num_envs"): a field by name
        assert (read | named) - own == set(), f"{cls.__name__}._validate_{name} reads other sections' fields"


KIND_PROBES = {  # a config of each kind of run
    "ppo": config.Config(),
    "ppo-lang": config.Config(env="lang:reverse"),
    "grpo": config.Config(algo="grpo"),
    "grpo-lang": config.Config(algo="grpo", env="lang:reverse"),
    "sb3-ppo": config.Config(algo="sb3-ppo"),
}


def test_the_tables_are_derived_from_the_declarations():
    """Config's fields in the sections' order; each kind's defaults filled in by resolve; and what SB3 and populations
    refuse, the same fields the tables written by hand held before they were derived."""
    assert [f.name for f in dataclasses.fields(config.Config)] == [
        f.name for cls in config.SECTIONS.values() for f in dataclasses.fields(cls)
    ]
    assert set(KIND_PROBES) == set(config.KINDS) == set(config.KIND_DEFAULTS)
    for kind, probe in KIND_PROBES.items():
        assert probe.kind == kind
        resolved = config.resolve(probe)
        assert {k: getattr(resolved, k) for k in config.KIND_DEFAULTS[kind]} == config.KIND_DEFAULTS[kind]
    assert sorted(config.SB3_UNSUPPORTED) == sorted(["clip_coef_high", "beta", "kl_target", "ref", "init_from_ref",
        "dropout_samples", "sample_dropout", "grad_diag_every", "flatness_every", "save_every"])  # fmt: skip
    assert config.POPULATION_UNSUPPORTED == {"stop_at_threshold": False, "save_every": 0, "grad_diag_every": 0,
                                             "flatness_every": 0}  # fmt: skip
