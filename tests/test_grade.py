"""The homework grader, proven on answers: ours and a correct rewrite of every function pass every test (the
integration runs included); the stub, zeros and each classic mistake fail, each caught by the test that teaches it;
the reports, formats, hidden cases, notebooks and the command line behave as documented."""

import json
import re
from pathlib import Path

import nbformat
import pytest
from homework_answers import CORRECT, TEACHES, WRONG, gae_bootstrap_zero_at_truncation, gae_float64, ppo_column, stub

from sandbox.cli import main
from sandbox.config import ConfigError
from sandbox.grade import ASSIGNMENTS, check, grade_functions

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = ROOT / "notebooks" / "homework"
NOTEBOOKS = {"hw1": "hw1_gae", "hw2": "hw2_clipped_losses", "hw3": "hw3_kl_estimators", "hw4": "hw4_grpo_advantages",
             "hw5": "hw5_consistent_dropout", "hw6": "hw6_sample_dropout"}  # fmt: skip


def ours(key: str) -> dict:
    return {name: spec.reference for name, spec in ASSIGNMENTS[key].functions.items()}


# --- proven to pass what it must pass, and to fail what it must fail -----------------------------------------------


@pytest.mark.parametrize("key", ASSIGNMENTS)
def test_ours_and_a_correct_rewrite_pass_every_test(key):
    """Integration included: a rewrite in another order of operations differs from ours in the last bits, and the
    tolerances (every call on its inputs, the first update, then what the run means) let it through."""
    assert set(CORRECT[key]) == set(ASSIGNMENTS[key].functions)
    for functions in (ours(key), CORRECT[key]):
        report = grade_functions(key, functions)
        assert report.ok, report.text()
        assert any(r.kind == "integration" for r in report.results)


WRONG_ANSWERS = [(k, fname, label) for k, per in WRONG.items() for fname, answers in per.items() for label in answers]


@pytest.mark.parametrize("key, fname, label", WRONG_ANSWERS, ids=[f"{k}-{f}-{w}" for k, f, w in WRONG_ANSWERS])
def test_every_wrong_answer_fails(key, fname, label):
    report = grade_functions(key, {**ours(key), fname: WRONG[key][fname][label]}, only=(fname,))
    failed = [r for r in report.results if not r.passed]
    assert failed and not report.ok, report.text()
    assert all(r.output for r in failed)
    if label in TEACHES:  # the classic mistakes: caught by the test that teaches them
        assert any(TEACHES[label] in r.name for r in failed), [r.name for r in failed]


def test_every_function_has_a_stub_and_a_classic_mistake_in_the_self_check():
    for key, a in ASSIGNMENTS.items():
        for fname in a.functions:
            answers = WRONG[key][fname]
            assert stub in answers.values() and len(answers) >= 2, (key, fname)


def test_a_failure_names_the_case_what_was_expected_and_a_hint():
    report = grade_functions("hw1", {"gae": gae_bootstrap_zero_at_truncation}, only=("gae",))
    truncation = next(r for r in report.results if r.name.startswith("truncation at the last step"))
    assert not truncation.passed
    lines = truncation.output.splitlines()
    assert lines[0].startswith("case: rewards [[1.0], [1.0], [1.0]], values [[1.0], [2.0], [3.0]]")
    assert "advantages at index (0, 0): expected 1.25, got 0.75" in truncation.output
    assert "expected [[1.25], [0.5], [0.0]]" in truncation.output
    assert lines[-1].startswith("hint: a time limit is not the end of the world")
    assert report.text().splitlines()[-1] == f"{report.passed} passed, {report.failed} failed (score 12/25)"


def test_a_hint_is_shown_only_with_the_first_failure_of_its_function():
    """Cutting the recursion on terminated fails "every episode end stops the recursion" first, with the hint that
    explains it; the random rollouts fail too, for the same mistake, and their hint (about something else) is left
    out. Never cutting the recursion is caught by the termination case (its next episode's advantage is not 0)."""
    from homework_answers import gae_cut_on_terminated, gae_never_cut

    report = grade_functions("hw1", {"gae": gae_cut_on_terminated}, integration=False)
    failed = [r for r in report.results if not r.passed]
    assert failed[0].name.startswith("every episode end stops the recursion") and "hint: after a truncation" in (
        failed[0].output)  # fmt: skip
    assert all("hint:" not in r.output and "(no hint here: `gae` failed" in r.output for r in failed[1:]), failed
    report = grade_functions("hw1", {"gae": gae_never_cut}, integration=False)
    first = next(r for r in report.results if not r.passed)
    assert first.name.startswith("termination: no bootstrap") and "must not add gamma * lambda" in first.output


def test_shape_and_dtype_come_before_values():
    """A result that would broadcast against ours is refused by its shape; a float64 one by its dtype."""
    report = grade_functions("hw2", {**ours("hw2"), "ppo_loss": ppo_column}, only=("ppo_loss",))
    first = report.results[0]
    assert "has shape (256, 1), expected (256,)" in first.output and "broadcast" in first.output
    report = grade_functions("hw1", {"gae": gae_float64}, only=("gae",))
    assert "has dtype float64, expected float32" in report.results[0].output


def test_integration_is_not_run_when_a_case_failed():
    report = grade_functions("hw1", {"gae": stub})
    integration = [r for r in report.results if r.kind == "integration"]
    assert integration and all(r.output.startswith("not run:") and r.seconds < 1 for r in integration)


# --- check() in a notebook -----------------------------------------------------------------------------------------


def test_check_prints_the_report_and_never_raises(capsys):
    report = check("hw1", gae=stub)
    out = capsys.readouterr().out
    assert report.failed == len(report.results) == 15 and not report.ok
    assert out.splitlines()[-1] == "0 passed, 15 failed (score 0/25)" and "FAIL  one step" in out
    assert "not implemented yet" in out


def test_check_leaves_out_the_functions_not_given(capsys):
    report = check("hw2", value_loss=ours("hw2")["value_loss"])
    assert report.results and all(r.functions == ("value_loss",) for r in report.results) and report.ok
    assert "need functions not passed to check() (ppo_loss)" in report.notes[0]
    with pytest.raises(ValueError, match="hw2 asks for ppo_loss, value_loss; there is no gae"):
        check("hw2", gae=stub)


def test_what_a_graded_notebook_can_import_of_the_package(tmp_path):
    """In the submission's process the package is a shim: check prints one line, plots is the real one, every other
    name is a stand-in that raises (graded as a stub), and no module holds a reference implementation."""
    import subprocess
    import sys

    from sandbox.grade.isolation import build_view

    view = build_view(tmp_path / "view")
    code = """import sys
import sandbox
from sandbox.grade import check
from sandbox.plots import OTHER_COLORS
from sandbox.maths import gae
from sandbox.models.mlp import DropoutMLP
assert not check("hw1", gae=gae).ok and OTHER_COLORS
for stand_in in (gae, DropoutMLP, sandbox.train):
    try:
        stand_in()
    except NotImplementedError as err:
        assert "not offered while grading" in str(err)
    else:
        raise AssertionError(stand_in)
assert not any(hasattr(m, "__file__") and "maths" in str(m.__file__) for m in sys.modules.values())
print("ok")
"""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = [{str(view)!r}]\n{code}"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout.splitlines() == [
        "check('hw1'): skipped while `sandbox grade` grades this notebook (it runs the checks itself)",
        "ok",
    ], done.stderr
    assert sorted(p.relative_to(view).as_posix() for p in view.rglob("*.py")) == [
        "sandbox/__init__.py", "sandbox/grade/__init__.py", "sandbox/grade/wire.py", "sandbox/grade/worker.py",
        "sandbox/plots.py"]  # fmt: skip


# --- hidden cases --------------------------------------------------------------------------------------------------

HIDDEN_CASE = {
    "name": "a truncation at the very first step",
    "function": "gae",
    "points": 3,
    "args": {"rewards": [[1.0], [0.5]], "values": [[0.2], [0.1]], "next_values": [[0.3], [0.0]],
             "terminated": [[0.0], [0.0]], "dones": [[1.0], [0.0]], "gamma": 0.9, "gae_lambda": 0.95},
}  # fmt: skip


def write_hidden(directory: Path, key: str, cases: list) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / f"{key}.json").write_text(json.dumps({"cases": cases}))
    return directory


def test_hidden_cases_are_graded_after_the_built_in_tests(tmp_path):
    hidden = write_hidden(tmp_path / "hidden", "hw1", [HIDDEN_CASE])
    good = grade_functions("hw1", ours("hw1"), hidden=str(hidden), integration=False)
    last = good.results[-1]
    assert good.ok and last.name == "hidden: a truncation at the very first step" and last.max_score == 3
    hidden_case = next(t for t in good.to_gradescope()["tests"] if t["name"] == last.name)
    assert hidden_case["visibility"] == "after_due_date"
    wrong = grade_functions("hw1", {"gae": gae_bootstrap_zero_at_truncation}, hidden=str(hidden), integration=False)
    assert not wrong.results[-1].passed and "advantages at index (0, 0)" in wrong.results[-1].output


def test_a_hidden_case_may_give_its_expected_values(tmp_path):
    case = dict(HIDDEN_CASE, expected=[[[9.0], [9.0]], [[9.0], [9.0]]])  # deliberately not what gae gives
    hidden = write_hidden(tmp_path / "hidden", "hw1", [case])
    report = grade_functions("hw1", ours("hw1"), hidden=str(hidden), integration=False)
    assert not report.results[-1].passed and "expected 9" in report.results[-1].output


def test_the_example_hidden_cases_in_the_instructor_notes_are_valid():
    example = str(HOMEWORK / "hidden_example")
    report = grade_functions("hw1", ours("hw1"), hidden=example, integration=False)
    hidden = [r for r in report.results if r.kind == "hidden"]
    assert len(hidden) == 3 and all(r.passed for r in hidden), report.text()
    wrong = grade_functions("hw1", {"gae": gae_bootstrap_zero_at_truncation}, hidden=example, integration=False)
    assert any(not r.passed for r in wrong.results if r.kind == "hidden")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "is not valid JSON"),
        ('{"cases": []}', "at least one case"),
        ('{"cases": [{"name": "x", "function": "gaee", "args": {}}]}', "unknown function 'gaee'; hw1 has gae"),
        ('{"cases": [{"name": "x", "function": "gae", "args": {"rewards": [[1.0]]}}]}', "argument 'values' is missing"),
        ('{"cases": [{"name": "x", "function": "gae", "args": {"reward": [[1.0]]}}]}', "gae has no argument 'reward'"),
        ('{"cases": [{"name": "x", "function": "gae", "args": {}, "points": -1}]}', "points must be a positive"),
        ('{"cases": [{"name": "x", "function": "gae", "args": {}, "colour": 1}]}', "unknown field 'colour'"),
    ],
)
def test_a_bad_hidden_file_is_one_line_naming_the_case(tmp_path, content, message):
    (tmp_path / "hw1.json").write_text(content)
    with pytest.raises(ConfigError, match="--hidden: ") as err:
        grade_functions("hw1", ours("hw1"), hidden=str(tmp_path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_random_functions_cannot_have_hidden_cases(tmp_path):
    write_hidden(tmp_path, "hw5", [{"name": "x", "function": "dropout_mask", "args": {"shape": [2, 3], "p": 0.1}}])
    with pytest.raises(ConfigError, match="dropout_mask draws random numbers"):
        grade_functions("hw5", ours("hw5"), hidden=str(tmp_path))


# --- the formats ---------------------------------------------------------------------------------------------------


def test_gradescope_and_plain_json_formats():
    report = grade_functions("hw1", {"gae": gae_bootstrap_zero_at_truncation}, only=("gae",))
    gs = report.to_gradescope()
    assert gs["score"] == sum(t["score"] for t in gs["tests"]) == report.score
    for t in gs["tests"]:
        assert set(t) >= {"name", "score", "max_score", "output", "status"} and t["status"] in ("passed", "failed")
        assert isinstance(t["score"], (int, float)) and isinstance(t["output"], str) and t["output"]
    plain = report.to_json()
    assert (plain["passed"], plain["failed"], plain["max_score"]) == (report.passed, report.failed, 25)
    assert json.loads(json.dumps(plain)) == plain


# --- the command line: files, notebooks, folders ------------------------------------------------------------------


def fill_in(notebook: Path, out: Path, source: str) -> Path:
    nb = nbformat.read(notebook, as_version=4)
    stub_cell = next(c for c in nb.cells if c.cell_type == "code" and "raise NotImplementedError" in c.source)
    stub_cell.source = source
    nbformat.write(nb, out)
    return out


def test_an_honest_threaded_notebook_scores_full_with_gradescope_results(tmp_path, capsys):
    """A correct gae computed by a thread pool, training runs included: nothing in its process decides a score."""
    from hostile_submissions import FULL

    nb = fill_in(HOMEWORK / "hw1_gae.ipynb", tmp_path / "alice.ipynb", FULL["threads"])
    out = tmp_path / "results.json"
    code = main(["grade", "hw1", str(nb), "--format", "gradescope", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "15 passed, 0 failed (score 25/25)" in text
    results = json.loads(out.read_text())
    graded = [t for t in results["tests"] if t["visibility"] != "hidden"]
    assert results["score"] == 25 and len(graded) == 15
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] for t in graded)
    instructor = results["tests"][-1]  # what Gradescope shows the instructor only
    assert instructor["visibility"] == "hidden" and instructor["max_score"] == 0
    assert "grading seed" in instructor["output"] and "similarity, for review and never a score" in instructor["output"]
    assert "to the reference 0." in instructor["output"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["hw9", "x.py"], "HW (an assignment folder): hw9 is neither hw1 ... hw6 nor a folder holding assignment"),
        (["hw1", "no/such/file.py"], "SUBMISSION: no/such/file.py does not exist (the file or folder to grade"),
        (["hw1", "README.md"], "SUBMISSION: must be a .py file, a .ipynb notebook or a folder"),
        (["hw1", "README.md", "--upload"], "SUBMISSION: must be a .py file"),
        (["bundle", "hw9"], "HW (an assignment folder): hw9 is neither"),
        (["hw1", "tests", "--hidden", "no/such/dir"], "--hidden: no/such/dir is not a directory"),
        (["hw1", "tests", "--timeout", "0"], "--timeout: must be a positive number of seconds"),
        (["hw1", "tests", "--cell-timeout", "-1"], "--cell-timeout: must be a positive number of seconds"),
        (["hw1", "tests", "--test-timeout", "0"], "--test-timeout: must be a positive number of seconds"),
        (["hw1", "tests", "--workers", "0"], "--workers: must be at least 1"),
        (["hw1", "tests", "--seed", "-3"], "--seed: must be 0 or more"),
        (["hw1", "tests", "--isolation", "docker"], "--isolation: invalid choice 'docker'; one of: auto, bwrap"),
        (["hw1", "tests", "--format", "csv"], "--format: invalid choice 'csv'; one of: text, json, gradescope"),
    ],
)
def test_bad_grade_input_is_one_line(capsys, monkeypatch, args, message):
    monkeypatch.chdir(ROOT)
    code = main(["grade", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


TOY = {
    "title": "a numerically stable softmax",
    "functions": {"softmax": {"signature": "softmax(x) -> probabilities along the last dim", "args": ["x"]}},
    "cases": [
        {"name": "two logits", "function": "softmax", "args": {"x": [[0.0, 1.0]]}},
        {"name": "large logits do not overflow", "function": "softmax", "args": {"x": [[1000.0, 0.0], [3.0, 3.0]]},
         "points": 2, "hint": "subtract each row's maximum before exp"},
    ],
}  # fmt: skip


def test_an_instructors_own_assignment_is_graded_without_editing_the_package(tmp_path, capsys):
    """The guide's example (notebooks/homework/README.md): a folder with assignment.json (cases as data) and
    reference.py, which only the grader imports."""
    toy = tmp_path / "softmax"
    toy.mkdir()
    (toy / "assignment.json").write_text(json.dumps(TOY))
    (toy / "reference.py").write_text("import torch\n\n\ndef softmax(x):\n    return torch.softmax(x, dim=-1)\n")
    naive = "import torch\n\n\ndef softmax(x):\n    e = x.exp()\n    return e / e.sum(-1, keepdim=True)\n"
    stable = "import torch\n\n\ndef softmax(x):\n    e = (x - x.max(-1, keepdim=True).values).exp()\n" \
        "    return e / e.sum(-1, keepdim=True)\n"  # fmt: skip
    outputs = {}
    for name, source, code in (("naive", naive, 1), ("stable", stable, 0)):
        (tmp_path / f"{name}.py").write_text(source)
        assert main(["grade", str(toy), str(tmp_path / f"{name}.py"), "--seed", "0"]) == code
        outputs[name] = capsys.readouterr().out
    assert "1 passed, 1 failed (score 1/3)" in outputs["naive"] and "hint: subtract each row's maximum" in (
        outputs["naive"])  # fmt: skip
    assert "2 passed, 0 failed (score 3/3)" in outputs["stable"]
    (toy / "assignment.json").write_text(json.dumps({**TOY, "cases": [{**TOY["cases"][0], "function": "sofmax"}]}))
    assert main(["grade", str(toy), str(tmp_path / "stable.py")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HW: " in err[0] and "unknown function 'sofmax'; softmax has softmax" in err[0], err


def test_an_upload_without_a_notebook_still_gets_the_graders_results(tmp_path, capsys):
    """Gradescope's /autograder/submission with nothing to grade: a results.json of 0 that says why, written by the
    grader over whatever was at --out (never read)."""
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload" / "notes.txt").write_text("I forgot the notebook")
    out = tmp_path / "results.json"
    out.write_text('{"score": 25}')
    code = main(["grade", "hw1", str(tmp_path / "upload"), "--upload", "--format", "gradescope", "--out", str(out),
                 "--overwrite"])  # fmt: skip
    results = json.loads(out.read_text())
    assert code == 1 and results["score"] == 0 and len(results["tests"]) == 16
    assert "no .ipynb or .py file in the upload" in results["tests"][0]["output"]


def test_every_assignment_has_a_student_notebook_pair():
    for key, stem in NOTEBOOKS.items():
        nb = nbformat.read(HOMEWORK / f"{stem}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert (HOMEWORK / f"{stem}.py").is_file()
        assert f'check("{key}"' in code and "raise NotImplementedError" in code
        for fname in ASSIGNMENTS[key].functions:
            assert f"def {fname}(" in code, (key, fname)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{stem}: has outputs"


def test_the_instructor_notes_list_every_test_with_its_points():
    text = (HOMEWORK / "README.md").read_text()
    for key, a in ASSIGNMENTS.items():
        section = text[text.index(f"<b>{key}</b>") :]
        section = section[: section.index("</details>")]
        rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")][1:]
        tests = a.build()
        assert [(name.replace("\\|", "|"), kind, points) for name, kind, points in rows] == [
            (t.name, t.kind, f"{t.points:g}") for t in tests
        ], key
        total = f"{sum(t.points for t in tests):g}"
        assert f"<b>{key}</b>: {len(tests)} tests, {total} points" in section
        assert re.search(rf"^\| {key} \| `{NOTEBOOKS[key]}` \|.*\| {total} \|$", text, re.M), key
