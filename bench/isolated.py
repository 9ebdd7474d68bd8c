"""Run a benchmark case in a fresh process of its own.

Each case gets its own peak memory, and its own OpenMP thread pool: switching torch's thread count
back and forth inside one process left later cases here up to 3x slower than the same case run
alone, which would make every ratio after the first switch wrong.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def in_own_process(function, *args):
    """function(*args) in a new interpreter (spawned, not forked); its result comes back pickled."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
