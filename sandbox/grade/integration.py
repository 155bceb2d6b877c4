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
import torch

from ..algos.learner import NonFiniteLossError
from ..config import Config
from ..maths import Maths
from ..training import train
from .core import Fail, FunctionSpec, Test, clone, raised
from .wire import tensors_in

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


@dataclasses.dataclass
class Call:
    """One call of our function in our run, kept to replay it: the inputs (and which required a gradient), the grad
    mode, torch's random state before and after, the output, and each gradient that reached the output."""

    name: str
    args: tuple
    requires: tuple[bool, ...]
    grad_mode: bool
    rng: tuple[torch.Tensor, torch.Tensor]
    out: Any
    upstream: list = dataclasses.field(default_factory=list)


class Tape:
    """Our function in our run, every call kept as a :class:`Call` in ``calls`` (set to None when a call cannot be
    replayed: it takes a function, or a tuple of outputs carries a gradient)."""

    def __init__(self, fn: Callable, name: str, tape: dict):
        self.fn, self.name, self.tape = fn, name, tape

    def __deepcopy__(self, memo):
        return self

    def __call__(self, *args):
        before, grad_mode = torch.get_rng_state(), torch.is_grad_enabled()
        out = self.fn(*args)
        calls, outs = self.tape.get("calls"), [t for t in tensors_in(out) if t.requires_grad]
        if calls is None or any(callable(a) for a in args) or (outs and not isinstance(out, torch.Tensor)):
            self.tape["calls"] = None
            return out
        requires = tuple(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
        call = Call(self.name, clone(args), requires, grad_mode, (before, torch.get_rng_state()), flagged(out))
        if outs:
            out.register_hook(lambda g: call.upstream.append(g.detach().clone()))
        calls.append(call)
        return out


_REFERENCE: dict[str, tuple[pd.DataFrame, list[Call] | None]] = {}


def reference_run(scenario: Scenario) -> tuple[pd.DataFrame, list[Call] | None]:
    """Our run of the scenario (computed once per process): its metrics, and every call of our functions in it
    (None when they cannot be replayed)."""
    if scenario.key not in _REFERENCE:
        tape: dict = {"calls": []}
        maths = Maths(**{name: Tape(getattr(Maths, name), name, tape) for name in scenario.fields})
        _REFERENCE[scenario.key] = train(scenario.config, maths=maths).metrics, tape["calls"]
    return _REFERENCE[scenario.key]


def integration_test(name: str, functions: tuple[str, ...], scenario: Scenario, specs: dict[str, FunctionSpec],
                     points: float, timeout: float = 60.0) -> Test:  # fmt: skip
    """The test that trains ``scenario`` with the learner's functions; our run of it is trained before the test's
    clock starts (``timeout`` is the learner's run alone)."""
    return Test(name, functions, lambda fns: run_scenario(scenario, fns, specs), points, kind="integration",
                timeout=timeout, prepare=lambda: reference_run(scenario))  # fmt: skip


def run_scenario(scenario: Scenario, functions: dict[str, Callable], specs: dict[str, FunctionSpec]) -> None:
    """Train the scenario with the learner's ``functions`` in ``scenario.fields``; raise :class:`Fail` on the first
    comparison that does not hold. The run happens here, in the grader's process: when the functions live in the
    submission's process, each call of one crosses to it (:mod:`sandbox.grade.remote`). When the learner's functions
    give our bits on every call of our run (:func:`replay`), their run is ours, step for step, and is not trained
    again."""
    ours, calls = reference_run(scenario)
    if calls and replay(calls, functions):  # their run is ours, step for step: what holds of ours holds of theirs
        yours = ours
    else:
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
                    spec.compare(out, spec.reference(*args), f"call {i} of {rec.count} of `{name}` in the run")
        if scenario.first_update:
            compare_first_update(yours, ours, scenario.first_update)
        if len(yours) != len(ours):
            raise Fail(f"the run logged {len(yours)} updates, ours {len(ours)}")
    if scenario.meaning is not None:
        scenario.meaning(yours, ours)


def replay(calls: list[Call], functions: dict[str, Callable]) -> bool:
    """The learner's functions on every call of our run, in its order, with its random state and grad mode. True when
    each gives our output to the last bit, leaves the random state and its inputs as ours did, and passes back our
    input gradients for the gradients that reached our output: a training run with them is then ours, step for step
    (the run depends on nothing else of theirs); otherwise False (and the run is trained)."""
    for c in calls:
        torch.set_rng_state(c.rng[0])
        args = [a.clone().requires_grad_() if r else clone(a) for a, r in zip(c.args, c.requires)]
        try:
            with torch.set_grad_enabled(c.grad_mode):
                out = functions[c.name](*args)
                ok = same(out, c.out) and same(torch.get_rng_state(), c.rng[1]) and same(clone(tuple(args)), c.args)
                if ok and c.upstream:
                    mine = [a.clone().requires_grad_() if r else a for a, r in zip(c.args, c.requires)]
                    ours = getattr(Maths, c.name)(*mine)
                    for g in c.upstream:
                        got, want = (torch.autograd.grad(o, [a for a in x if isinstance(a, torch.Tensor) and
                                                             a.requires_grad], g, retain_graph=True, allow_unused=True)
                                     for o, x in ((out, args), (ours, mine)))  # fmt: skip
                        ok = ok and same(tuple(got), tuple(want))
        except Exception:  # noqa: BLE001 - whatever it raised, the training run will raise it again, and say so
            return False
        if not ok:
            return False
    return True


def flagged(x: Any) -> Any:
    """A copy of ``x`` (tensors in tuples and lists) cut from its graph, that still says which tensors required a
    gradient."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_(x.requires_grad)
    return type(x)(map(flagged, x)) if isinstance(x, (tuple, list)) else x


def same(a: Any, b: Any) -> bool:
    """``a`` is ``b`` to the last bit: the same types, dtypes, shapes, strides and gradient flags, the same bytes."""
    if isinstance(b, torch.Tensor):
        return (type(a) is torch.Tensor and a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
                and a.requires_grad == b.requires_grad and bytes(a.detach().contiguous().numpy().data)
                == bytes(b.detach().contiguous().numpy().data))  # fmt: skip
    if isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


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
