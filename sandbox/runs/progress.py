"""Progress bars and the run clock. Imports nothing from the package, so every layer may use it."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def progress_bar(total: int, quiet: bool, desc: str, unit: str = "step") -> tqdm:
    """A tqdm bar on stderr, off with ``quiet`` or when stderr is not a terminal."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False, mininterval=0.25)


class Clock:
    """Seconds since the start of learning (plus ``offset``: the seconds a resumed run had already done)."""

    def __init__(self, offset: float = 0.0):
        self.t0 = time.perf_counter() - offset

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
