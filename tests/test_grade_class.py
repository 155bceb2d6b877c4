"""The grader as a class meets it: submissions that import the shipped answers, rewrite the grader, or compile its
source under another name; submissions that try to change another's score or read the hidden cases; and a folder
with an infinite loop, a stubborn loop, a giant output, a syntax error, an empty notebook and a crash, graded to the
end with two workers. Each submission runs in its own process (in Linux namespaces through bwrap where they work)."""

import json
import site
from pathlib import Path

import nbformat
import pytest

from sandbox.cli import main
from sandbox.grade import grade_functions
from sandbox.grade.isolation import bwrap_problem
from sandbox.grade.submission import Options, grade_file, grade_folder, write_json

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = ROOT / "notebooks" / "homework"
needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason=f"no namespaces here: {bwrap_problem()}")

CORRECT = """import torch


def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    T = rewards.shape[0]
    out, carry = [], torch.zeros_like(rewards[0])
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        carry = delta + gamma * gae_lambda * (1.0 - dones[t]) * carry
        out.insert(0, carry)
    adv = torch.stack(out)
    return adv, adv + values
"""
STUB = """def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    raise NotImplementedError
"""
# the three ways of not doing hw1 that scored 25/25 before
IMPORTS_THE_REFERENCE = "from sandbox.maths import gae\n"
REWRITES_THE_GRADER = (
    """import sandbox.grade.core as core
import sandbox.grade.integration as integration

core.expect_tensor = lambda *args, **kwargs: None
core.expect_like = lambda *args, **kwargs: None
integration.run_scenario = lambda *args, **kwargs: None
"""
    + STUB
)
COMPILES_THE_SOURCE = """import inspect

import torch

import sandbox.maths

source = inspect.getsource(sandbox.maths.gae)
namespace = {"torch": torch, "Tensor": torch.Tensor}
exec(compile(source, "my_own_work.py", "exec"), namespace)
gae = namespace["gae"]
"""


def folder_of(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for filename, source in files.items():
        (folder / filename).write_text(source)
    return folder


def grade(folder: Path, out: Path, **options) -> dict[str, dict]:
    """Grade ``folder`` for hw1 without the training runs (they are tested elsewhere): each submission's
    Gradescope results, by file name."""
    opts = Options("hw1", integration=False, hidden_paths=(str(folder), str(out)), **options)
    graded = grade_folder(folder, opts, out, lambda r, p: write_json(r, p, "gradescope"), "gradescope", workers=1)
    return {g.report.submission: g.report for g in graded}


def test_the_three_ways_of_not_doing_hw1_score_0_and_say_why(tmp_path):
    files = {"a_imports.py": IMPORTS_THE_REFERENCE, "b_rewrites.py": REWRITES_THE_GRADER,
             "c_compiles.py": COMPILES_THE_SOURCE, "d_own_work.py": CORRECT}  # fmt: skip
    reports = grade(folder_of(tmp_path, "subs", files), tmp_path / "out", seed=3)
    own = reports["d_own_work.py"]
    assert own.ok and own.score == own.max_score and not own.flags, own.text()
    assert reports["a_imports.py"].flags["gae"][0] == "is bound to sandbox.maths.gae"
    assert any("changes the sandbox package (sandbox.grade.core.expect_tensor" in w for w in
               reports["b_rewrites.py"].flags["*"])  # fmt: skip
    assert any("runs a copy of sandbox/maths.py:gae, compiled from the package's source" in w
               for w in reports["c_compiles.py"].flags["gae"])  # fmt: skip
    for name in ("a_imports.py", "b_rewrites.py", "c_compiles.py"):
        report = reports[name]
        assert report.score == 0, report.text()
        results = json.loads((tmp_path / "out" / name.removesuffix(".py") / "results.json").read_text())
        assert (
            "uses the reference implementation" in results["output"]
            or "changes the sandbox package" in (results["output"])
        )
    assert "0 points: `gae` is bound to sandbox.maths.gae" in reports["a_imports.py"].results[1].output
    assert "read sandbox/maths.py" not in "; ".join(reports["a_imports.py"].review)
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "similarity: gae" in summary.splitlines()[0] and "is bound to sandbox.maths.gae" in summary


def test_allow_reference_scores_the_reference_and_still_tells_the_instructor(tmp_path):
    path = tmp_path / "bob.py"
    path.write_text(IMPORTS_THE_REFERENCE)
    report = grade_file(path, Options("hw1", integration=False, allow_reference=True, seed=1)).report
    assert report.ok and not report.flags
    assert any(r.startswith("(allowed) gae is bound to sandbox.maths.gae") for r in report.review)


ATTACKER = (
    """import os, site, sys

for name in ("sitecustomize.py", "usercustomize.py", "torch.py", "core.py"):
    for where in (".", "..", os.environ.get("HOME", "."), os.path.dirname(os.path.abspath(__file__))):
        try:
            with open(os.path.join(where, name), "w") as f:
                f.write("import sandbox.grade.core as c\\nc.expect_tensor = lambda *a, **k: None\\n")
        except OSError:
            pass
for where in site.getsitepackages() + [os.path.dirname(os.path.abspath(__file__))]:
    try:
        with open(os.path.join(where, "zz_attack.pth"), "w") as f:
            f.write("import sitecustomize\\n")
    except OSError:
        pass
"""
    + STUB
)


@needs_bwrap
def test_no_submission_changes_another_score_in_either_order(tmp_path):
    before = {p.name for d in site.getsitepackages() for p in Path(d).iterdir()}
    first = grade(folder_of(tmp_path, "attacker_first", {"a.py": ATTACKER, "b.py": STUB}), tmp_path / "o1", seed=2)
    second = grade(folder_of(tmp_path, "stub_first", {"a.py": STUB, "b.py": ATTACKER}), tmp_path / "o2", seed=2)
    stub_alone = grade(folder_of(tmp_path, "alone", {"s.py": STUB}), tmp_path / "o3", seed=2)["s.py"]
    expected = [(r.name, r.score, r.output) for r in stub_alone.results]
    for stub in (first["b.py"], second["a.py"]):
        assert [(r.name, r.score, r.output) for r in stub.results] == expected
    assert first["a.py"].score == second["b.py"].score == 0
    for folder in ("attacker_first", "stub_first"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["a.py", "b.py"]  # nothing written there
    assert {p.name for d in site.getsitepackages() for p in Path(d).iterdir()} == before


SNOOPER = """import glob
import os

found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            cmd = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if "--hidden" in cmd or "hidden_cases" in cmd:
            found.append("cmdline")
for path in glob.glob("HIDDEN/*") + glob.glob("FOLDER/*"):
    found.append(path)
import socket

try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    found.append("network")
except OSError:
    pass


def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    raise ValueError("found: " + repr(found))
"""


@needs_bwrap
def test_a_submission_sees_neither_the_grader_nor_the_hidden_cases_nor_the_other_submissions(tmp_path, capsys):
    hidden = tmp_path / "hidden_cases"
    hidden.mkdir()
    (hidden / "hw1.json").write_text((HOMEWORK / "hidden_example" / "hw1.json").read_text())
    folder = tmp_path / "subs"
    source = SNOOPER.replace("HIDDEN", str(hidden)).replace("FOLDER", str(folder))
    folder_of(tmp_path, "subs", {"snoop.py": source, "other.py": STUB})
    code = main(["grade", "hw1", str(folder), "--hidden", str(hidden), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    report = (tmp_path / "out" / "snoop.txt").read_text()
    assert "raised ValueError: found: []" in report


def notebook(tmp_path: Path, name: str, source: str) -> Path:
    nb = nbformat.read(HOMEWORK / "hw1_gae.ipynb", as_version=4)
    next(c for c in nb.cells if c.cell_type == "code" and "raise NotImplementedError" in c.source).source = source
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


LOOPS_ON_ONE_CASE = CORRECT.replace("    T = rewards.shape[0]\n", "    T = rewards.shape[0]\n    while T == 5:\n"
                                    "        pass\n")  # fmt: skip
STUBBORN = """def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass
"""
PRINTS = """for _ in range(50_000):
    print("x" * 100)


def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    print("y" * 100_000)
    raise ValueError("z" * 100_000)
"""
CRASHES = """import os


def gae(*args):
    os._exit(3)
"""


def test_a_folder_with_loops_giant_output_and_broken_files_grades_to_the_end(tmp_path, capsys, monkeypatch):
    files = {
        "loop.py": LOOPS_ON_ONE_CASE,
        "stubborn.py": STUBBORN,
        "prints.py": PRINTS,
        "crashes.py": CRASHES,
        "syntax.py": "def gae(rewards values):\n    return 1\n",
        "not_json.ipynb": "{ this is not a notebook",
    }
    folder = folder_of(tmp_path, "subs", files)
    (folder / "empty.ipynb").write_text("")
    notebook(folder, "hangs.ipynb", "while True:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    code = main(["grade", "hw1", "subs", "--format", "gradescope", "--workers", "2", "--test-timeout", "2",
                 "--cell-timeout", "3", "--timeout", "12", "--seed", "7"])  # fmt: skip
    out = tmp_path / "grade-results"
    assert code == 1
    names = ["crashes", "empty", "hangs", "loop", "not_json", "prints", "stubborn", "syntax"]
    for name in names:
        results = json.loads((out / name / "results.json").read_text())
        assert len(results["tests"]) == 16 and results["tests"][-1]["visibility"] == "hidden", name
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + len(names)
    text = {name: (out / f"{name}.txt").read_text() for name in names}
    # an infinite loop fails its own test; the others still run and pass
    assert "took longer than 2 s" in text["loop"] and "12 passed, 3 failed" in text["loop"]
    assert "not run: the submission" in text["stubborn"]
    assert "could not be read: an empty file" in text["empty"]
    assert "could not be read: not a notebook" in text["not_json"]
    assert "SyntaxError" in text["syntax"]
    assert "did not stop at its time limit" in text["hangs"] or "ran longer than 3 s" in text["hangs"]
    assert "its process exited with code 3" in text["crashes"]
    printed = (out / "prints.output.txt").read_text()
    assert len(printed) < 70_000 and "more bytes of output not kept" in printed
    assert "more characters]" in text["prints"] and len(text["prints"]) < 100_000
    assert "grading seed 7" in capsys.readouterr().out


def test_hidden_cases_keep_their_visibility_and_a_relative_hidden_folder_works(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hidden").mkdir()
    cases = json.loads((HOMEWORK / "hidden_example" / "hw1.json").read_text())
    cases["cases"][0]["visibility"] = "hidden"
    (tmp_path / "hidden" / "hw1.json").write_text(json.dumps(cases))
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "alice.py").write_text(STUB)
    code = main(["grade", "hw1", "subs", "--format", "gradescope", "--hidden", "hidden", "--quiet"])
    assert code == 1
    tests = json.loads((tmp_path / "grade-results" / "alice" / "results.json").read_text())["tests"]
    hidden = [t for t in tests if t["name"].startswith("hidden: ")]
    assert [t["visibility"] for t in hidden] == ["hidden"] + [c.get("visibility", "after_due_date")
                                                             for c in cases["cases"][1:]]  # fmt: skip
    assert all(t["score"] == 0 and "not implemented" in t["output"] for t in hidden)


def test_the_same_seed_draws_the_same_cases_and_another_seed_other_ones():
    from homework_answers import gae_cut_on_terminated

    def outputs(seed):
        report = grade_functions("hw1", {"gae": gae_cut_on_terminated}, integration=False, seed=seed)
        return [r.output for r in report.results]

    assert outputs(11) == outputs(11)
    assert outputs(11) != outputs(12)


def test_an_existing_output_is_not_overwritten_without_overwrite(tmp_path, capsys):
    (tmp_path / "a.py").write_text(STUB)
    out = tmp_path / "results.json"
    out.write_text("{}")
    code = main(["grade", "hw1", str(tmp_path / "a.py"), "--format", "gradescope", "--out", str(out)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err and out.read_text() == "{}"
