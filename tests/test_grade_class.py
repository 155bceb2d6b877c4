"""The grader as a determined class meets it: about forty attacks in two dozen hostile submissions
(tests/hostile_submissions.py: the reference sought by every route, the grader's results forged, its last step
broken, the limits pushed) each score 0, the honest ones that use threads, a subprocess or their own files score
full, hidden inputs never reach what a student sees; loops, giant output and broken files are graded to the end; and
the Gradescope bundle passes a harness laid out as Gradescope does, with the student's code run as an unprivileged
user."""

import csv
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from homework_answers import advantages_rewritten, aggregate_rewritten
from hostile_submissions import FULL, GAE, SEEKER_ROUTES, STUB, ZERO

from sandbox.cli import main
from sandbox.grade import grade_functions
from sandbox.grade.isolation import bwrap_problem
from sandbox.grade.submission import Options, _in_pools, grade_folder, output_names

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = ROOT / "notebooks" / "homework"
needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason=f"no namespaces here: {bwrap_problem()}")
MARKER = 123.456
"""A value of the hidden cases' inputs that appears nowhere else: found in what a student sees, it leaked."""

LEAKS_HIDDEN = """import torch
SEEN = []


def gae(*args):
    SEEN.append(repr(args)[:2000])
    raise ValueError("every input so far, the last first: " + " | ".join(reversed(SEEN)))
"""


def notebook(path: Path, source: str) -> Path:
    nb = nbformat.read(HOMEWORK / "hw1_gae.ipynb", as_version=4)
    next(c for c in nb.cells if c.cell_type == "code" and "raise NotImplementedError" in c.source).source = source
    nbformat.write(nb, path)
    return path


def hidden_cases(folder: Path) -> Path:
    folder.mkdir()
    cases = json.loads((HOMEWORK / "hidden_example" / "hw1.json").read_text())
    cases["cases"][1]["args"]["rewards"][0][0] = MARKER
    (folder / "hw1.json").write_text(json.dumps(cases))
    return folder


CUT_ON_TERMINATED = GAE.replace("(1.0 - dones[t])", "(1.0 - terminated[t])") + "\nprint(undefined_name)\n"


@needs_bwrap
def test_a_class_graded_as_one_folder(tmp_path):
    """One folder graded as a course would, with 2 workers and without the training runs (67-74 s at load 8 on 2 cores;
    the four tests it replaces, 76-96 s): two dozen hostile submissions each score 0 and the honest ones full (Done-
    when of issue 31), forged results are never reported, hidden inputs never reach what a student sees, distinct
    submissions get distinct output names, the limits hold in the submission's process, giant output is capped, a
    notebook that raises after its function is graded on what it defined, and summary.csv ranks the class for
    review. The seeker's routes share one process and report one by one, so each is checked on its own."""
    folder, out, hidden = tmp_path / "subs", tmp_path / "out", hidden_cases(tmp_path / "hidden")
    folder.mkdir()
    fill = {"{OUT}": str(out), "{HIDDEN}": str(hidden), "{FOLDER}": str(folder), "{REPO}": str(ROOT)}
    for kind, source in {**ZERO, **FULL, "leaks_hidden": LEAKS_HIDDEN}.items():
        for key, value in fill.items():
            source = source.replace(key, value)
        (folder / f"{kind}.py").write_text(source if "import torch" in source else "import torch\n" + source)
    notebook(folder / "seeker_notebook.ipynb", (folder / "seeker.py").read_text())
    shutil.copy(HOMEWORK / "hw1_gae.ipynb", folder / "stub.ipynb")  # the student copy, untouched
    carol = notebook(folder / "carol.ipynb", CUT_ON_TERMINATED)
    (folder / ".ipynb_checkpoints").mkdir()
    shutil.copy(carol, folder / ".ipynb_checkpoints" / "carol-checkpoint.ipynb")  # skipped
    (folder / "alice").mkdir()
    (folder / "alice" / "hw1.py").write_text("import torch\n" + STUB)
    (folder / "alice__hw1.py").write_text("import torch\n" + GAE)
    options = Options("hw1", str(hidden), seed=5, timeout=60, cell_timeout=20, integration=False, test_timeout=4,
                      memory_mb=1024)  # fmt: skip
    graded = {g.report.submission: g for g in grade_folder(folder, options, out, "gradescope", workers=2)}
    scores = {name: (g.report.score, g.report.max_score) for name, g in graded.items()}
    assert not any(".ipynb_checkpoints" in name for name in graded)
    # every hostile submission scores 0, every honest one full
    for name in [f"{kind}.py" for kind in (*ZERO, "leaks_hidden")] + ["seeker_notebook.ipynb", "stub.ipynb"]:
        assert scores[name][0] == 0, (name, graded[name].report.text())
    for name in [f"{kind}.py" for kind in FULL] + ["alice__hw1.py"]:
        assert scores[name][0] == scores[name][1] == 19 + 4, graded[name].report.text()
    # every route of the seeker ran, and none found anything it could call; the ones that look on the disk, in /proc
    # and on the network found nothing at all
    routes: dict[str, list[str]] = {}
    for line in graded["seeker.py"].output.splitlines():
        if line.startswith("ROUTE "):
            name, found = line[6:].split(": ", 1)
            routes.setdefault(name, []).append(found)
    assert set(SEEKER_ROUTES) <= set(routes), set(SEEKER_ROUTES) - set(routes)
    assert not [(n, f) for n, found in routes.items() for f in found if f.startswith("a candidate")], routes
    for name in ("read_source_from_disk", "linecache_codeop", "read_pyc_from_disk", "homework_answers",
                 "lessons_and_notebooks", "read_other_folders", "proc_and_parent", "network"):  # fmt: skip
        assert routes[name] == ["[]"], (name, routes[name])
    assert "not offered while grading" in routes["import"][0] and routes["sandbox_train"][0].startswith("refused")
    # nothing forged reaches the grading's output, which only the grader writes
    assert not (out / "forge").exists()
    for name in ("seeker", "breaks_the_closing", "forge_reply_frames", "escaped_daemon"):
        results = json.loads((out / name / "results.json").read_text())
        assert results["score"] == 0 and len(results["tests"]) == 17, name
    for name in ("forge_reply_frames", "malformed_frames", "huge_frame_header", "flood_frames"):  # ended for good
        assert graded[f"{name}.py"].report.results[-1].output.startswith("not run: its process"), name
    # the hidden inputs reach only the hidden cases' own outputs
    for g in graded.values():
        shown = g.report.to_gradescope()
        visible = [t["output"] for t in shown["tests"] if t["visibility"] == "visible"] + [shown["output"]]
        assert str(MARKER) not in "\n".join(visible), g.report.submission
    leaked = [r.output for r in graded["leaks_hidden.py"].report.results if str(MARKER) in r.output]
    assert leaked and all(str(MARKER) in o for o in leaked)
    # alice/hw1.py and alice__hw1.py: two reports
    names = output_names(folder, [folder / "alice" / "hw1.py", folder / "alice__hw1.py"])
    assert len(set(names.values())) == 2
    assert {json.loads((out / n / "results.json").read_text())["score"] for n in names.values()} == {0, 23}
    # the limits, in the submission's process: memory, processes, CPU time, file size; never root
    text = routes["limits"][0]
    assert f"'RLIMIT_DATA': {1024 << 20}" in text and "'RLIMIT_FSIZE': 67108864" in text, text
    assert "'RLIMIT_CPU': 120" in text and 64 <= int(re.search(r"'RLIMIT_NPROC': (\d+)", text)[1]) < 200, text
    assert os.geteuid() != 0 or "uid 0 " not in text
    # giant output (2 MB, then 100 kB at every call): what it printed is capped, and its grade is whole
    output = (out / "honest_everything.output.txt").read_text()
    assert len(output) < 70_000 and "more bytes of output not kept" in output
    # a notebook that raises after defining gae is graded on the gae it defined, and says where it stopped
    text = (out / "carol.txt").read_text()
    assert "FAIL  every episode end stops the recursion" in text and "PASS  truncation at the last step" in text
    assert "note: the submission stopped in cell 5 (code cell 2, `def gae(rewards, values, next_values," in text
    assert "NameError: name 'undefined_name' is not defined" in text
    assert "10 passed, 6 failed (score 13/23)" in text and "0 passed, 16 failed" in (out / "stub.txt").read_text()
    # summary.csv: one row per submission, ranked for review; the reference retyped with other names stands out,
    # no answer written independently comes near it
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(graded) and [int(r["review rank"]) for r in rows] == list(range(1, len(rows) + 1))
    ranked = [max(float(r["similarity to the reference"]), float(r["similarity to the closest submission"]))
              for r in rows]  # fmt: skip
    assert ranked == sorted(ranked, reverse=True)
    carol = next(r for r in rows if r["submission"] == "carol.ipynb")
    assert carol["truncation at the last step bootstraps from V(s_{t+1})"] == "2"
    by_reference = sorted(rows, key=lambda r: -float(r["similarity to the reference"]))
    assert by_reference[0]["submission"] == "retyped_reference.py", by_reference[:3]
    assert float(by_reference[0]["similarity to the reference"]) > 0.6 > 0.4 > float(
        by_reference[1]["similarity to the reference"])  # fmt: skip
    order = [r["submission"] for r in rows]
    assert order.index("retyped_reference.py") < order.index("threads.py")


LOOPS_ON_ONE_CASE = "import torch\n" + GAE.replace(
    "    out, carry = [], torch.zeros_like(rewards[0])\n",
    "    out, carry = [], torch.zeros_like(rewards[0])\n    while rewards.shape[0] == 5:\n        pass\n",
)
STUBBORN = """import time


def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    while True:  # it sleeps rather than spins: the grader sees the same, and the test's machine keeps its CPU
        try:
            while True:
                time.sleep(1)
        except BaseException:
            pass
"""


def test_a_folder_with_loops_and_broken_files_grades_to_the_end(tmp_path, capsys, monkeypatch):
    files = {
        "loop.py": LOOPS_ON_ONE_CASE,
        "stubborn.py": STUBBORN,
        "crashes.py": "import os\n\n\ndef gae(*args):\n    os._exit(3)\n",
        "syntax.py": "def gae(rewards values):\n    return 1\n",
        "not_json.ipynb": "{ this is not a notebook",
        "empty.ipynb": "",
    }
    (tmp_path / "subs").mkdir()
    for name, text in files.items():
        (tmp_path / "subs" / name).write_text(text)
    notebook(tmp_path / "subs" / "hangs.ipynb", "while True:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    code = main(["grade", "hw1", "subs", "--format", "gradescope", "--workers", "2", "--test-timeout", "2",
                 "--cell-timeout", "3", "--timeout", "12", "--seed", "7"])  # fmt: skip
    out = tmp_path / "grade-results"
    assert code == 1
    names = ["crashes", "empty", "hangs", "loop", "not_json", "stubborn", "syntax"]
    for name in names:
        results = json.loads((out / name / "results.json").read_text())
        assert len(results["tests"]) == 16 and results["tests"][-1]["visibility"] == "hidden", name
    text = {name: (out / f"{name}.txt").read_text() for name in names}
    assert "took longer than 2 s" in text["loop"] and "12 passed, 3 failed" in text["loop"]
    assert "not run: the submission" in text["stubborn"]
    assert "could not be read: an empty file" in text["empty"]
    assert "could not be read: not a notebook" in text["not_json"]
    assert "SyntaxError" in text["syntax"]
    assert "did not stop at its time limit" in text["hangs"] or "ran longer than 3 s" in text["hangs"]
    assert "its process exited with code 3" in text["crashes"]
    printed = capsys.readouterr().out
    assert "grading seed 7" in printed and "7 submissions graded, 0 with every test passed" in printed


def test_a_grading_process_that_dies_loses_no_submission(tmp_path):
    """A grading process of the pool dies on dies.py: the submissions it was grading are graded again, each alone,
    once; dies.py, dying again, is reported as an error, and every other submission keeps its outcome. About 2 s
    (the pool's function imports nothing of the sandbox)."""
    from grading_process_that_dies import dies_on_its_name

    files = [tmp_path / f"{name}.py" for name in ("a", "b", "c", "dies", "d")]
    options, outcomes = SimpleNamespace(key="hw1", hidden=None, seed=0), {}  # Options would import the sandbox there
    _in_pools(files, options, 2, dies_on_its_name, lambda path, graded: outcomes.setdefault(path.name, graded))
    assert sorted(outcomes) == ["a.py", "b.py", "c.py", "d.py", "dies.py"]
    dies = outcomes.pop("dies.py").report
    assert dies.score == 0 and "died twice while grading it" in dies.results[0].output
    assert all(o.report.score == 1 for o in outcomes.values())
    again = [n for n, o in outcomes.items() if o.report.review]  # graded beside dies.py when it died, if any
    assert "graded a second time, alone" in " ".join(dies.review) and len(again) <= 1, again


def test_a_process_ended_while_loading_reads_as_one_ended_between_tests(tmp_path):
    """A flood of frames ends the process for good whether it comes while the submission loads (nothing graded) or
    between tests: each test's output then reads "not run: its process ..." either way."""
    from sandbox.grade.submission import failed

    options = Options("hw1", None, seed=5)
    ended = failed(options, tmp_path / "a.py", ["not run: its process sent something that is not a message"], 0.0)
    assert all(r.output == "not run: its process sent something that is not a message" for r in ended.results)
    slow = failed(options, tmp_path / "a.py", ["its process did not start within 30 s"], 0.0)
    assert all(r.output == "not graded: its process did not start within 30 s" for r in slow.results)
    assert ended.results and ended.score == slow.score == 0


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


# --- Gradescope, tried -------------------------------------------------------------------------------------------

STUDENT = "sandbox-test-student"
SYSTEM_PYTHON = Path("/usr/bin/python3.11")


@pytest.fixture(scope="module")
def test_user():
    """An unprivileged user for the harness, made here (root only) and removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("the Gradescope harness makes an unprivileged user: it needs root and useradd")
    made = subprocess.run(["id", "-u", STUDENT], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", STUDENT], check=True)
    yield STUDENT
    if made:
        subprocess.run(["userdel", STUDENT], check=False)


def harness_env(where: Path) -> Path:
    """A Python environment every user can read, outside root's home: a venv of the system's Python 3.11 whose
    packages are this checkout's (a .pth file), as Gradescope's /opt/sandbox-env would be after setup.sh."""
    if not SYSTEM_PYTHON.is_file() or sys.version_info[:2] != (3, 11):
        pytest.skip(f"the harness needs {SYSTEM_PYTHON} for the same Python as this one (3.11)")
    env = where / "env"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(env)], check=True)
    site = next(env.glob("lib/python3.11/site-packages"))
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (site / "ours.pth").write_text("\n".join(ours) + "\n")
    return env


def test_the_gradescope_bundle_passes_its_harness(tmp_path, test_user, capsys):
    """setup.sh then run_autograder, laid out as Gradescope does under a temporary root, with the student's code run
    as an unprivileged user in plain processes (Gradescope's containers have no namespaces): an honest upload scores
    full (training runs and a hidden case included), a hostile one 0, and the results are the grader's. hw4: its
    training runs are the shortest."""
    hidden = tmp_path / "hid"
    hidden.mkdir()
    case = {"name": "one group", "function": "group_advantages", "args": {"rewards": [[1.0, 2.0, 4.0]],
            "scale_rewards": "group"}}  # fmt: skip
    (hidden / "hw4.json").write_text(json.dumps({"cases": [case]}))
    zipped = tmp_path / "hw4.zip"
    assert main(["grade", "bundle", "hw4", "--out", str(zipped), "--hidden", str(hidden), "--user", test_user]) == 0
    env = harness_env(tmp_path)
    tmp_path.chmod(0o755)
    results = {}
    for name, source in (("honest", HONEST_HW4), ("hostile", HOSTILE_UPLOAD)):
        root = tmp_path / name / "autograder"
        with zipfile.ZipFile(zipped) as z:
            z.extractall(root / "source")
        (root / "submission").mkdir(parents=True)
        (root / "submission" / "hw4_solution.py").write_text(source.replace("{ROOT}", str(root)))
        (root.parent).chmod(0o755)
        run = {**os.environ, "AUTOGRADER": str(root), "SANDBOX_ENV": str(env), "SANDBOX_ISOLATION": "process"}
        subprocess.run(["bash", str(root / "source" / "setup.sh")], check=True, env=run)
        done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=run, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode in (0, 1), done.stderr[-2000:]
        results[name] = json.loads((root / "results" / "results.json").read_text())
    assert results["honest"]["score"] == 40 + 1, results["honest"]
    hostile = results["hostile"]
    assert hostile["score"] == 0 and "forged" not in json.dumps(hostile)
    found = next(t["output"] for t in hostile["tests"] if t["name"].startswith("group_advantages on a hand case"))
    assert "found: []" in found and "uid 0," not in found, found
    assert f"limits [{3072 << 20}, " in found and ", 360, 67108864]" in found, found  # as plain processes too


HONEST_HW4 = (
    "import torch\n\n\n"
    + inspect.getsource(advantages_rewritten).replace("advantages_rewritten", "group_advantages")
    + "\n\n"
    + inspect.getsource(aggregate_rewritten).replace("aggregate_rewritten", "aggregate_loss")
)
HOSTILE_UPLOAD = """import glob, json, os
import torch
FOUND = []
for pattern in ("{ROOT}/source/*", "{ROOT}/source/repo/sandbox/maths.py", "{ROOT}/source/hidden/*"):
    for path in glob.glob(pattern):
        try:
            open(path).read(10)
            FOUND.append(path)
        except OSError:
            pass
for path in ("{ROOT}/results/results.json",):
    try:
        with open(path, "w") as f:
            json.dump({"score": 41, "output": "forged"}, f)
        FOUND.append(path)
    except OSError:
        pass
import resource

LIMITS = [resource.getrlimit(getattr(resource, f"RLIMIT_{n}"))[0] for n in ("DATA", "NPROC", "CPU", "FSIZE")]


def group_advantages(*args):
    raise NotImplementedError(f"found: {FOUND!r}, uid {os.getuid()}, limits {LIMITS}")


aggregate_loss = group_advantages
"""
