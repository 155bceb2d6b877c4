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
