"""``sandbox bench grading``: a class of made-up hw1 submissions, graded as a course would.

The class (:func:`make_class`): correct answers written in several ways (one with a thread pool), the usual mistakes,
untouched stubs, broken files, and the three ways of not doing the homework (importing the reference, rewriting the
grader, compiling the reference's source), which reach nothing in the submission's process: each is graded as the
stub it is. Each submission comes with the outcome a grader must give it (:class:`Expected`), so a run checks every
verdict, not only its time. Notebooks are built like the student copy (an import cell, the function's cell, a check
cell).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import machine

HEAD = "import torch\nimport sandbox\nfrom sandbox.grade import check\n"
CHECK = 'report = check("hw1", gae=gae)\n'

CORRECT = {
    "insert": """def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    out, carry = [], torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        carry = delta + gamma * gae_lambda * (1.0 - dones[t]) * carry
        out.insert(0, carry)
    adv = torch.stack(out)
    return adv, adv + values
""",
    "preallocated": """def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        nonterminal = 1 - terminated[t]
        delta = rewards[t] + gamma * nonterminal * next_values[t] - values[t]
        last = delta + gamma * gae_lambda * (1 - dones[t]) * last
        advantages[t] = last
    return advantages, advantages + values
""",
    "float64": """def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    r, v, nv = rewards.double(), values.double(), next_values.double()
    term, done = terminated.double(), dones.double()
    deltas = r + gamma * (1 - term) * nv - v
    adv = torch.zeros_like(r)
    running = torch.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * gae_lambda * (1 - done[t]) * running
        adv[t] = running
    return adv.float(), (adv + v).float()
""",
    "threads": """from concurrent.futures import ThreadPoolExecutor


def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    def column(n):
        out, carry = [], torch.zeros(())
        for t in range(rewards.shape[0] - 1, -1, -1):
            delta = rewards[t, n] + gamma * (1 - terminated[t, n]) * next_values[t, n] - values[t, n]
            carry = delta + gamma * gae_lambda * (1 - dones[t, n]) * carry
            out.insert(0, carry)
        return torch.stack(out)

    with ThreadPoolExecutor(max_workers=2) as pool:
        adv = torch.stack(list(pool.map(column, range(rewards.shape[1]))), dim=1)
    return adv, adv + values
""",
    "helper": """def td_error(r, v, nv, term, gamma):
    return r + gamma * (1 - term) * nv - v


def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    deltas = td_error(rewards, values, next_values, terminated, gamma)
    steps = []
    acc = torch.zeros(rewards.shape[1])
    for t in reversed(range(rewards.shape[0])):
        acc = deltas[t] + gamma * gae_lambda * (1 - dones[t]) * acc
        steps.append(acc)
    adv = torch.stack(steps[::-1])
    return adv, adv + values
""",
}

WRONG = {  # a usual mistake: (text of the correct answer, what it becomes)
    "bootstraps 0 at a truncation": ("(1.0 - terminated[t])", "(1.0 - dones[t])"),
    "cuts the recursion on terminated": ("(1.0 - dones[t]) * carry", "(1.0 - terminated[t]) * carry"),
    "never cuts the recursion": ("gae_lambda * (1.0 - dones[t]) * carry", "gae_lambda * carry"),
    "forgets lambda": ("gamma * gae_lambda * (1.0 - dones[t])", "gamma * (1.0 - dones[t])"),
    "returns the advantages as returns": ("return adv, adv + values", "return adv, adv"),
    "float64 results": ("adv = torch.stack(out)", "adv = torch.stack(out).double()"),
    "(N, T) results": ("return adv, adv + values", "return adv.T, (adv + values).T"),
}

BROKEN = {
    "syntax error": ("py", "def gae(rewards values):\n    return rewards\n"),
    "empty notebook": ("empty", ""),
    "not a notebook": ("raw", "{ not json"),
    "NameError after the function": ("ipynb", CORRECT["insert"] + "\nprint(undefined_name)\n"),
    "infinite loop in one case": ("py", "import torch\n\n" + CORRECT["insert"].replace(
        "    out, carry = [], torch.zeros_like(rewards[0])\n",
        "    out, carry = [], torch.zeros_like(rewards[0])\n    while rewards.shape[0] == 5:\n        pass\n")),
    "infinite loop in a cell": ("ipynb", "while True:\n    pass\n"),
    "giant output": ("py", "import torch\nfor _ in range(20_000):\n    print('x' * 100)\n\n" + CORRECT["preallocated"]),
    "crash": ("py", "import os\n\n\ndef gae(*args):\n    os._exit(3)\n"),
}  # fmt: skip

REFERENCE = {
    "imports the reference": "from sandbox.maths import gae\n",
    "rewrites the grader": "import sandbox.grade.core as core\n\ncore.expect_tensor = lambda *a, **k: None\n\n\n"
    "def gae(*args):\n    raise NotImplementedError\n",
    "compiles the reference's source": "import inspect\nimport sandbox.maths\n\n"
    "ns = {'torch': torch, 'Tensor': torch.Tensor}\n"
    "exec(compile(inspect.getsource(sandbox.maths.gae), 'mine.py', 'exec'), ns)\n"
    "gae = ns['gae']\n",
}

STUB = "def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):\n    raise NotImplementedError\n"


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a grader must say of one submission: ``full`` marks, ``less`` than full, or ``zero``."""

    kind: str
    label: str
    outcome: str


def make_class(folder: str | Path, n: int = 150, seed: int = 0) -> dict[str, Expected]:
    """Write ``n`` submissions into ``folder`` (about 40% correct, 25% with a usual mistake, 10% untouched stubs,
    15% broken, 10% reaching the reference); returns what each one must get, by file name."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shares = [("correct", 0.40), ("wrong", 0.25), ("stub", 0.10), ("broken", 0.15), ("reference", 0.10)]
    kinds = [k for k, share in shares for _ in range(round(share * n))]
    kinds = (kinds + ["correct"] * n)[:n]
    rng.shuffle(kinds)
    expected = {}
    for i, kind in enumerate(kinds):
        name = f"student{i:03d}"
        if kind == "correct":
            label = rng.choice(sorted(CORRECT))
            source, how, outcome = CORRECT[label], rng.choice(["ipynb", "ipynb", "py"]), "full"
        elif kind == "wrong":
            label = rng.choice(sorted(WRONG))
            old, new = WRONG[label]
            source, how, outcome = CORRECT["insert"].replace(old, new), "ipynb", "less"
        elif kind == "stub":
            label, source, how, outcome = "untouched stub", STUB, "ipynb", "zero"
        elif kind == "broken":
            label = rng.choice(sorted(BROKEN))
            how, source = BROKEN[label]
            outcome = {"NameError after the function": "full", "infinite loop in one case": "less",
                       "giant output": "full"}.get(label, "zero")  # fmt: skip
        else:
            label = rng.choice(sorted(REFERENCE))
            source, how, outcome = REFERENCE[label], "ipynb", "zero"
        filename = _write(folder, name, how, source)
        expected[filename] = Expected(kind, label, outcome)
    return expected


def _write(folder: Path, name: str, how: str, source: str) -> str:
    import nbformat

    if how == "py":
        (folder / f"{name}.py").write_text("import torch\n\n" + source if "import torch" not in source else source)
        return f"{name}.py"
    if how in ("empty", "raw"):
        (folder / f"{name}.ipynb").write_text(source)
        return f"{name}.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Homework 1"), nbformat.v4.new_code_cell(HEAD),
                nbformat.v4.new_code_cell(source), nbformat.v4.new_code_cell(CHECK)]  # fmt: skip
    nbformat.write(nb, folder / f"{name}.ipynb")
    return f"{name}.ipynb"


def verdict(report, expected: Expected) -> bool:
    """Whether ``report`` says what ``expected`` says it must."""
    if expected.outcome == "full":
        return report.score == report.max_score
    if expected.outcome == "zero":
        return report.score == 0
    return report.score < report.max_score


def bench_grading(n: int = 150, workers: int = 2, quiet: bool = False) -> dict:
    """Grade ``n`` made-up hw1 submissions (:func:`make_class`: correct, the usual mistakes, stubs,
    broken and hostile files, the reference sought three ways) with ``workers`` grading processes, as
    ``sandbox grade hw1 FOLDER --workers N`` does (training runs included, default limits); the wall time, and
    whether every verdict is the one that submission must get."""
    from ..grade.submission import Options, grade_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "submissions", Path(tmp) / "grades"
        expected = make_class(folder, n)
        options = Options("hw1", seed=0)
        done = [0]

        def progress(name, report, i, total):
            done[0] = i
            if not quiet:
                print(f"  {i}/{total} {name}: {report.summary_line()}", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        graded = grade_folder(folder, options, out, "gradescope", workers, progress)
        wall = time.perf_counter() - t0
        isolation = graded[0].isolation if graded else "none"
    wrong = [g.report.submission for g in graded if not verdict(g.report, expected[g.report.submission])]
    by_kind: dict[str, list[float]] = {}
    for g in graded:
        by_kind.setdefault(expected[g.report.submission].kind, []).append(g.report.seconds)
    result = {
        "machine": machine(),
        "submissions": n,
        "workers": workers,
        "isolation": isolation,
        "wall_s": wall,
        "per_kind_median_s": {k: statistics.median(v) for k, v in sorted(by_kind.items())},
        "per_kind_count": {k: len(v) for k, v in sorted(by_kind.items())},
        "verdicts_as_expected": n - len(wrong),
        "unexpected": wrong,
    }
    rows = "\n".join(
        f"| {k} | {result['per_kind_count'][k]} | {m:.1f} |" for k, m in result["per_kind_median_s"].items()
    )
    print(
        f"grading {n} made-up hw1 submissions with {workers} grading processes ({isolation} isolation)\n"
        f"machine: {result['machine']}\n\n| kind | submissions | median s each |\n|---|---|---|\n{rows}\n\n"
        f"wall: {wall:.0f} s ({wall / 60:.1f} min), {wall / n:.1f} s per submission\n"
        f"verdicts as expected: {n - len(wrong)} of {n}" + (f" (not: {', '.join(wrong)})" if wrong else "")
    )
    return result
