import os
from pathlib import Path

import pytest

# Reference models pretrained by the tests go to a cache inside the checkout (ignored by git), never the user's.
os.environ.setdefault("SANDBOX_CACHE", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "sandbox-models"))


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
