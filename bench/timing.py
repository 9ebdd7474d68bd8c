"""Wall-clock timings of a call, after a warm-up, for the latency benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def timings(call: Callable[[], object], repeats: int) -> list[float]:
    """Seconds per call over `repeats` calls, after a tenth as many (at least 3) warm-up calls."""
    for _ in range(max(3, repeats // 10)):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times
