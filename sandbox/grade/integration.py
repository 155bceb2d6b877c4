"""The integration check: a short training run through the ``Maths`` seam with the learner's functions, compared
with the same run with ours, on the same machine.

Three comparisons, from the tightest to the loosest, because a correct function written in another order of
operations differs from ours in the last bits and training amplifies that (on CartPole the two runs part visibly
after about ten updates):

1. *every call*: the learner's function is wrapped, each call's inputs and output are kept, and after the run the
   output is compared with our function's on the same inputs (the tolerance of the cases);
2. *the first update*: its metrics (losses, KL, entropy, gradient norm, explained variance) against ours, within
   0.2% plus 0.02% of the column's largest value over our run (a difference there means the function did
   something besides computing its result: drew random numbers, changed its inputs);
3. *what the run means*: it learns (the return passes a floor every seed of ours clears with room to spare), or,
   for dropout, the first-minibatch ratio is exact in consistent mode and noisy in naive mode.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable

import pandas as pd

from ..algos.learner import NonFiniteLossError
from ..config import Config
from ..maths import Maths
from ..training import train
from .core import Fail, FunctionSpec, Test, clone, raised

FIRST_UPDATE_RTOL = 2e-3
FIRST_UPDATE_ATOL = 2e-4  # times the largest |value| of the column over our run


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One short training run: the config, the ``Maths`` fields the learner's functions replace, the first-update
    columns compared with ours, and the check of what the run means."""

    description: str
    config: Config
    fields: tuple[str, ...]
    first_update: tuple[str, ...] = ()
    meaning: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None
    """``meaning(yours, ours)`` (metrics, one row per update) raises :class:`Fail`."""
    check_calls: Callable[[dict[str, "Recorder"]], None] | None = None
    """A custom check of the recorded calls (functions that draw random numbers); default: compare every call of a
    deterministic function with the reference on its inputs."""

    @property
    def key(self) -> str:
        return json.dumps(self.config.to_dict(), sort_keys=True)


KEEP = 400
"""Calls of each function recorded in a run (their inputs and output), every one compared with ours."""


class Recorder:
    """Calls the learner's function and keeps a copy of the inputs and output of its first ``keep`` calls."""

    def __init__(self, fn: Callable, name: str, keep: int = KEEP):
        self.fn, self.name, self.keep = fn, name, keep
        self.calls: list[tuple[tuple, Any]] = []
        self.count = 0

    def __deepcopy__(self, memo):
        return self  # a copied network keeps calling the same function (and recording its calls)

    def __call__(self, *args):
        out = self.fn(*args)
        self.count += 1
        if len(self.calls) < self.keep:
            self.calls.append((clone(args), clone(out)))
        return out


_REFERENCE: dict[str, pd.DataFrame] = {}


def reference_metrics(scenario: Scenario) -> pd.DataFrame:
    """Our run of the scenario (computed once per process)."""
    key = scenario.key
    if key not in _REFERENCE:
        _REFERENCE[key] = train(scenario.config).metrics
    return _REFERENCE[key]


def integration_test(name: str, functions: tuple[str, ...], scenario: Scenario, specs: dict[str, FunctionSpec],
                     points: float, timeout: float = 60.0) -> Test:  # fmt: skip
    """The test that trains ``scenario`` with the learner's functions; our run of it is trained before the test's
    clock starts (``timeout`` is the learner's run alone)."""
    return Test(name, functions, lambda fns: run_scenario(scenario, fns, specs), points, kind="integration",
                timeout=timeout, prepare=lambda: reference_metrics(scenario))  # fmt: skip


def run_scenario(scenario: Scenario, functions: dict[str, Callable], specs: dict[str, FunctionSpec]) -> None:
    """Train the scenario with the learner's ``functions`` in ``scenario.fields``; raise :class:`Fail` on the first
    comparison that does not hold. The run happens here, in the grader's process: when the functions live in the
    submission's process, each call of one crosses to it (:mod:`sandbox.grade.remote`)."""
    ours = reference_metrics(scenario)
    yours, recorders = _train_here(scenario, functions)
    for name, rec in recorders.items():
        if rec.count == 0:
            raise Fail(f"the trainer never called `{name}`: was it passed in?")
    if scenario.check_calls is not None:
        scenario.check_calls(recorders)
    else:
        for name, rec in recorders.items():
            spec = specs[name]
            for i, (args, out) in enumerate(rec.calls, start=1):
                want = spec.reference(*args)
                spec.compare(out, want, f"call {i} of {rec.count} of `{name}` in the run")
    if scenario.first_update:
        compare_first_update(yours, ours, scenario.first_update)
    if len(yours) != len(ours):
        raise Fail(f"the run logged {len(yours)} updates, ours {len(ours)}")
    if scenario.meaning is not None:
        scenario.meaning(yours, ours)


def _train_here(scenario: Scenario, functions: dict[str, Callable]) -> tuple[pd.DataFrame, dict[str, "Recorder"]]:
    recorders = {name: Recorder(functions[name], name) for name in scenario.fields}
    try:
        yours = train(scenario.config, maths=Maths(**recorders)).metrics
    except NonFiniteLossError as err:
        raise Fail(f"the training run stopped: {err}; with our functions it runs to the end") from None
    except Fail:
        raise
    except NotImplementedError:
        raise Fail("the training run called a function that raises NotImplementedError") from None
    except Exception as err:  # noqa: BLE001 - the learner's function, called by the trainer, may raise anything
        raise Fail(f"the training run raised {raised(err)}") from None
    return yours, recorders


def compare_first_update(yours: pd.DataFrame, ours: pd.DataFrame, columns: tuple[str, ...]) -> None:
    for c in columns:
        a, b = float(yours[c].iloc[0]), float(ours[c].iloc[0])
        if math.isnan(a) and math.isnan(b):
            continue
        scale = float(ours[c].abs().max())
        tol = FIRST_UPDATE_RTOL * abs(b) + FIRST_UPDATE_ATOL * (scale if math.isfinite(scale) else 1.0) + 1e-9
        if not abs(a - b) <= tol:
            raise Fail(
                f"first update, `{c}`: ours {b:.6g}, yours {a:.6g} (allowed difference {tol:.2g}). Every call of "
                "your function matched ours on its inputs, so the run changed in another way",
                hint="does the function draw random numbers (that shifts every later random draw of the run) or "
                "change a tensor it was given?",
            )


def learns(floor: float, measured: str, what: str = "the mean return of the last 20 episodes") -> Callable:
    """The meaning check "the run learns": the last update's ``ep_return_mean`` reaches ``floor``. ``measured``
    says how the floor was chosen (our runs over seeds)."""

    def check(yours: pd.DataFrame, ours: pd.DataFrame) -> None:
        final, reference = float(yours.ep_return_mean.iloc[-1]), float(ours.ep_return_mean.iloc[-1])
        if not final >= floor:
            raise Fail(
                f"the run did not learn: at the end {what} is {final:.1f}, below the floor of {floor:g}; with our "
                f"functions it is {reference:.1f} on this seed ({measured})"
            )

    return check
