import json
import os
import time
from pathlib import Path

import pytest

# Reference models pretrained by the tests go to a cache inside the checkout (ignored by git), never the user's.
os.environ.setdefault("SANDBOX_CACHE", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "sandbox-models"))

# --- the fast tier (make check): the tests that take less than LONG seconds ----------------------------------------
#
# durations.json holds each test's measured seconds (its setup, call and teardown), and each shared fixture's (module or
# session scope: "fixture NAME", its setup, which falls on whichever test needs it first), written by `make durations`
# (SANDBOX_DURATIONS=tests/durations.json: the hooks below record what runs; under 0.05 s left out). A test measured at
# LONG seconds or more, or needing a shared fixture that is, is marked `long`: make check runs `-m "not slow and not
# long"`, make test runs them all. A test not measured yet (a new one) is not long until the file is written again.
DURATIONS = Path(__file__).with_name("durations.json")
LONG = 1.0


@pytest.hookimpl(tryfirst=True)  # before -m reads the marks
def pytest_collection_modifyitems(config, items):
    measured = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    for item in items:
        shared = getattr(item, "fixturenames", ())  # a notebook (nbmake) has none
        seconds = [measured.get(item.nodeid, 0.0), *(measured.get(f"fixture {f}", 0.0) for f in shared)]
        if max(seconds) >= LONG:
            item.add_marker(pytest.mark.long)


_seconds: dict[str, float] = {}
_recording = bool(os.environ.get("SANDBOX_DURATIONS"))


def _worker(config) -> bool:
    return hasattr(config, "workerinput")  # a pytest-xdist worker: its tests' reports reach the controller


def pytest_runtest_logreport(report):  # on xdist's controller, every worker's reports (the workers' own stay there)
    if _recording:
        _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    start = time.perf_counter()
    yield
    if _recording and fixturedef.scope in ("module", "session"):
        _seconds[f"fixture {fixturedef.argname}"] = time.perf_counter() - start


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # pytest-xdist: a worker's shared fixtures, measured where they ran
    _seconds.update(getattr(node, "workeroutput", {}).get("sandbox_fixture_seconds", {}))


def pytest_sessionfinish(session):
    if not _recording:
        return
    if _worker(session.config):
        fixtures = {k: v for k, v in _seconds.items() if k.startswith("fixture ")}
        session.config.workeroutput["sandbox_fixture_seconds"] = fixtures
        return
    kept = {k: round(v, 2) for k, v in sorted(_seconds.items()) if v >= 0.05}
    text = "{\n" + ",\n".join(f"  {json.dumps(k)}: {v}" for k, v in kept.items()) + "\n}\n"
    Path(os.environ["SANDBOX_DURATIONS"]).write_text(text)


@pytest.fixture
def counted_dropout_seam():
    """``(calls, maths)``: a Maths whose dropout-layer functions are ours, counting their calls in ``calls``
    (``mask``, ``apply``, ``choose``), for tests that the trainers reach the dropout layer only through the seam."""
    from sandbox.dropout import apply_dropout, dropout_mask, layer_mask
    from sandbox.maths import Maths

    calls = {"mask": 0, "apply": 0, "choose": 0}

    def counted_mask(shape, p, generator=None):
        calls["mask"] += 1
        return dropout_mask(shape, p, generator)

    def counted_apply(x, mask):
        calls["apply"] += 1
        return apply_dropout(x, mask)

    def counted_choice(stored, fresh, shape, p, draw):
        calls["choose"] += 1
        return layer_mask(stored, fresh, shape, p, draw)

    return calls, Maths(dropout_mask=counted_mask, apply_dropout=counted_apply, layer_mask=counted_choice)
