"""McNemar's exact test: do two classifiers scored on the same images differ in accuracy?

Only the images exactly one of them gets right carry information (Dietterich, 1998, recommends
this test for comparing two classifiers on one test set). If both err equally often, each such
image falls either way with probability 1/2, so the count one way is binomial(n, 1/2).
"""

from __future__ import annotations

import math


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided p-value from the discordant counts: `only_first` images the first classifier
    alone gets right, `only_second` the second alone. p = 2 P(X <= min), X ~ binomial(n, 1/2),
    at most 1; with no discordant images there is no evidence of a difference (p = 1)."""
    if only_first < 0 or only_second < 0:
        raise ValueError("counts must not be negative")
    n = only_first + only_second
    tail = sum(math.comb(n, k) for k in range(min(only_first, only_second) + 1))
    # Integers throughout: exact for any n (2 ** n overflows a float past n = 1023).
    return min(1.0, 2 * tail / 2 ** n)
