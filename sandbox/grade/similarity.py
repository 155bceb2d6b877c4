"""How much of a submission's code is found elsewhere: in the reference implementations, and in each other
submission of the same folder. A review list for the instructor (``summary.csv``, ranked), never a score.

The comparison is MOSS's: ``copydetect`` (Lingenfelter's implementation of Schleimer, Wilkerson and Aiken's
winnowing, as in Stanford's MOSS) tokenizes the code with Pygments, writes every name as ``V`` (so renaming changes
nothing), drops comments, docstrings' text and whitespace (so does the layout), and compares the fingerprints of
every run of ``NOISE`` tokens. The student copy of the assignment's notebook is the boilerplate: what every
submission starts from counts for none. A short function (a one-line formula) leaves too few tokens to judge: it
scores 0, read it yourself.
"""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import numpy as np

NOISE = 25
"""Tokens below which a match is noise (copydetect's default); every match of ``GUARANTEE`` tokens is found."""
GUARANTEE = 30
HOMEWORK = Path(__file__).resolve().parents[2] / "notebooks" / "homework"


def _fingerprint(code: str, boilerplate=None):
    from copydetect import CodeFingerprint

    return CodeFingerprint("submission.py", NOISE, GUARANTEE - NOISE + 1, boilerplate=boilerplate, language="python",
                           fp=io.StringIO(code))  # fmt: skip


def template(key: str) -> str:
    """The student copy's code for assignment ``key`` (``notebooks/homework/<key>_*.py`` in a checkout), or ''."""
    found = sorted(HOMEWORK.glob(f"{key}_*.py"))
    return found[0].read_text() if found else ""


def reference_code(functions: dict) -> str:
    """The source of the reference implementations of an assignment's functions (``FunctionSpec``s by name)."""
    parts = []
    for spec in functions.values():
        try:
            parts.append(inspect.getsource(spec.reference))
        except (OSError, TypeError):
            continue
    return "\n\n".join(parts)


def compare(codes: dict[str, str], reference: str, boilerplate: str = "") -> dict[str, dict]:
    """For each submission (label -> its code): ``reference``, the share of the reference's tokens found in it;
    ``peer``, the other submission sharing the most with it, and ``peer_share``, the larger of the two shares
    (each submission's tokens found in the other's)."""
    from copydetect import compare_files

    base = np.array(sorted(_fingerprint(boilerplate).hashes)) if boilerplate else None
    prints = {label: _fingerprint(code, base) for label, code in codes.items()}
    ours = _fingerprint(reference, base) if reference else None
    out = {label: {"reference": 0.0, "peer": None, "peer_share": 0.0} for label in codes}
    labels = list(prints)
    for i, a in enumerate(labels):
        if ours is not None:
            out[a]["reference"] = round(float(compare_files(prints[a], ours)[1][1]), 3)
        for b in labels[i + 1 :]:
            share = round(float(max(compare_files(prints[a], prints[b])[1])), 3)
            for x, y in ((a, b), (b, a)):
                if share > out[x]["peer_share"]:
                    out[x]["peer"], out[x]["peer_share"] = y, share
    return out
