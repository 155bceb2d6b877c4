"""sandbox.analysis.course: the seed sets, say() and claim() that keep a lesson's sentences true of the student's
run. No training here: the whole file takes well under a second."""

import json

import pytest

from sandbox.analysis import course


@pytest.fixture
def set2(monkeypatch):
    monkeypatch.setattr(course, "SEED_SET", 2)


def test_seed_set_reads_the_variable_and_refuses_nonsense_in_one_line(monkeypatch):
    monkeypatch.delenv("SANDBOX_SEED_SET", raising=False)
    assert course.seed_set() == 1
    monkeypatch.setenv("SANDBOX_SEED_SET", "2")
    assert course.seed_set() == 2
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("SANDBOX_SEED_SET", bad)
        with pytest.raises(course.CourseError, match=r"^SANDBOX_SEED_SET: .* allowed: a whole number >= 1"):
            course.seed_set()


def test_seed_sets_are_disjoint_and_set_one_is_the_plain_seeds(monkeypatch):
    monkeypatch.setattr(course, "SEED_SET", 1)
    first = course.seeds(16)
    assert first == list(range(16)) and course.seed(3) == 3
    monkeypatch.setattr(course, "SEED_SET", 2)
    second = course.seeds(16)
    assert second == list(range(1000, 1016)) and course.seeds(2, start=5) == [1005, 1006]
    assert not set(first) & set(second)
    with pytest.raises(course.CourseError, match="^seed: 1000 is outside a seed set"):
        course.seed(1000)


def test_span_names_one_value_once():
    assert course.span([29, 142, 63]) == "29 to 142"
    assert course.span([500.0, 500.0]) == "500"
    assert course.span([0.1234, 0.5], "{:.2f}") == "0.12 to 0.50"


def test_seed_names():
    assert course.seed_names([0, 1, 2, 3, 4]) == "seeds 0-4"
    assert course.seed_names([1003]) == "seed 1003"
    assert course.seed_names([1002, 1000]) == "seeds 1000, 1002"


def test_claim_prints_what_held_and_raises_naming_the_sentence(monkeypatch, capsys, set2):
    monkeypatch.setattr(course, "FAST", False)
    monkeypatch.delenv("SANDBOX_CLAIMS", raising=False)
    assert course.claim("off reads 0 exactly", True, "0.0", outcome=False)
    assert "✓ holds in this run: off reads 0 exactly (this run: 0.0)" in capsys.readouterr().out
    with pytest.raises(course.ClaimError) as err:
        course.claim("naive is noisier than rollout-eval", False, "0.03 against 0.04")
    assert "'naive is noisier than rollout-eval'" in str(err.value) and "0.03 against 0.04" in str(err.value)
    assert "seed set 2" in str(err.value)
    assert course.CLAIMS[-1].status == "contradicted" and course.CLAIMS[-1].seed_set == 2


def test_fast_mode_skips_outcomes_visibly_but_checks_structure(monkeypatch, capsys):
    monkeypatch.setattr(course, "FAST", True)
    monkeypatch.delenv("SANDBOX_CLAIMS", raising=False)
    assert course.claim("lambda 0 learned more slowly", False)  # an outcome: tiny runs say nothing about it
    assert "not checked in FAST mode (tiny runs): lambda 0 learned more slowly" in capsys.readouterr().out
    assert course.CLAIMS[-1].status == "skipped"
    with pytest.raises(course.ClaimError):
        course.claim("consistent's ratio is exactly 1", False, outcome=False)


def test_report_mode_carries_on_and_the_log_has_one_line_per_claim(monkeypatch, tmp_path, capsys):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setattr(course, "FAST", False)
    monkeypatch.setenv("SANDBOX_CLAIMS", "report")
    monkeypatch.setenv("SANDBOX_CLAIMS_LOG", str(log))
    assert course.claim("a", True) is True
    assert course.claim("b", False, "x") is False
    assert "✘ CONTRADICTED" in capsys.readouterr().out
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(d["sentence"], d["status"], d["measured"]) for d in lines] == [
        ("a", "held", ""),
        ("b", "contradicted", "x"),
    ]


def test_say_prints_outside_a_notebook_and_marks_fast_mode(monkeypatch, capsys):
    monkeypatch.setattr(course, "FAST", False)
    course.say("""
        In this run, **3** of 5 seeds solved.
    """)
    assert capsys.readouterr().out == "In this run, **3** of 5 seeds solved.\n"
    monkeypatch.setattr(course, "FAST", True)
    course.say("x")
    assert capsys.readouterr().out.startswith("*(FAST mode: tiny runs, so the numbers below mean nothing.)*")


def test_a_lesson_that_trains_nothing_checks_every_claim_in_fast_mode(monkeypatch, capsys):
    monkeypatch.setattr(course, "FAST", True)  # restored after the test: trains_nothing() sets the module's FAST
    monkeypatch.delenv("SANDBOX_CLAIMS", raising=False)
    course.trains_nothing()
    course.say("The committed study: 16 seeds per group.")
    assert capsys.readouterr().out == "The committed study: 16 seeds per group.\n"
    with pytest.raises(course.ClaimError, match="naive p 0.3 is worse on CartPole"):
        course.claim("naive p 0.3 is worse on CartPole", False, "not significant")
    assert course.CLAIMS[-1].status == "contradicted" and not course.CLAIMS[-1].fast


# --- tools/course_check.py: what make course-check records -----------------------------------------------------------


def _course_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "course_check.py"
    spec = importlib.util.spec_from_file_location("course_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LESSON = """# %% [markdown]
# # Lesson 00: a lesson
#
# **Learning goals.** none.
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): not yet.

# %%
print("hello")
"""


@pytest.fixture
def course_dir(tmp_path, monkeypatch):
    """A course of one lesson (``00_x``) in ``tmp_path``, and course_check pointed at it; its ``execute`` replaced by
    ``results`` (pass name -> what the run gave), so no kernel starts: the whole test takes about a second."""
    import jupytext

    check = _course_check()
    (tmp_path / "00_x.py").write_text(LESSON)
    jupytext.write(jupytext.read(tmp_path / "00_x.py"), tmp_path / "00_x.ipynb")
    (tmp_path / "README.md").write_text(
        "| lesson | what | full mode | homework |\n|---|---|---|---|\n| [00 X](00_x.ipynb) | x | old | - |\n\n"
        f"{check.BEGIN}\nNot yet measured.\n{check.END}\n"
    )
    for name, value in (
        ("NOTEBOOKS", tmp_path),
        ("TIMINGS", tmp_path / "timings.json"),
        ("README", tmp_path / "README.md"),
    ):
        monkeypatch.setattr(check, name, value)
    results = {}

    def execute(path, env, timeout):
        import nbformat

        key = "FAST" if env["SANDBOX_FAST"] == "1" else f"set {env['SANDBOX_SEED_SET']}"
        nb = nbformat.read(path, as_version=4)
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", text=f"ran {key}\n")]
        contradicted = results.get(key) == "contradicted"
        claims = [{"sentence": "s", "status": "contradicted" if contradicted else "held", "measured": "m"}]
        return nb, {"wall_s": 60.0, "cpu_s": 100.0, "claims": claims, "error": None}

    monkeypatch.setattr(check, "execute", execute)
    return check, tmp_path, results


def test_course_check_keeps_no_figure_of_a_failed_pass_and_no_course_statement_until_every_pass_held(course_dir):
    import json

    import jupytext

    check, where, results = course_dir
    results["set 2"] = "contradicted"
    assert check.main([]) == 1
    entry = json.loads((where / "timings.json").read_text())["lessons"]["00_x"]
    assert {"full_s", "fast_s", "load", "machine", "date"} <= entry.keys() and "seed_set_2_s" not in entry
    assert "ran set 1" in (where / "00_x.ipynb").read_text()  # seed set 1's outputs are the committed ones
    first = jupytext.read(where / "00_x.py").cells[0].source
    assert check.running_time(entry) in first and "not yet" not in first
    assert "Not yet measured." in (where / "README.md").read_text()  # one pass missing: no course statement
    results.clear()
    assert check.main(["00"]) == 0
    timings = json.loads((where / "timings.json").read_text())
    course, readme = timings["course"], (where / "README.md").read_text()
    words = " ".join(readme.split())  # the statement is wrapped: a line break is a space in Markdown
    assert course["total_s"] == 180.0 and course["machine"] in words and course["date"] in words
    assert "| [00 X](00_x.ipynb) | x | 60 s |" in readme and "Not yet measured." not in readme


def test_course_check_names_an_unknown_lesson_in_one_line(course_dir):
    check, _, _ = course_dir
    with pytest.raises(SystemExit, match=r"^course-check: no lesson 42; lessons: 00_x$"):
        check.main(["42"])


def test_two_checks_of_different_lessons_merge_their_times_and_shares_balance(course_dir):
    """Two checks sharing a machine (``--jobs 2``, or two commands): each writes only the lessons it ran into
    timings.json as it stands when it ends, so the second to end keeps the first's; the shares split the lessons
    longest first by their measured full-mode times."""
    import json

    check, where, _ = course_dir
    lesson = (where / "00_x.py").read_text().replace("Lesson 00", "Lesson 01")
    (where / "01_y.py").write_text(lesson)
    import jupytext

    jupytext.write(jupytext.read(where / "01_y.py"), where / "01_y.ipynb")
    other = {"full_s": 1.0, "fast_s": 1.0, "machine": "elsewhere", "date": "1999-01-01"}
    (where / "timings.json").write_text(json.dumps({"lessons": {"01_y": other}}))
    assert check.main(["00"]) == 0  # began before the other ended: its entry is kept, not overwritten
    lessons = json.loads((where / "timings.json").read_text())["lessons"]
    assert lessons["01_y"] == other and lessons["00_x"]["full_s"] == 60.0
    assert "course" not in json.loads((where / "timings.json").read_text())  # two machines: no course statement
    paths = check.lessons([])
    assert check.shares(paths, 2) == [[paths[0]], [paths[1]]]  # 00 (60 s) and 01 (1 s): one each
    assert check.shares(paths, 1) == [paths] and check.shares(paths[:1], 4) == [paths[:1]]
