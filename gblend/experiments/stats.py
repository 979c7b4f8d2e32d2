"""Paired comparisons over seeds: mean, std and a t-interval of the per-seed differences.

Seeds are paired: the same seed gives every method the same data split and initial draw of
the data generator, so a method's advantage is judged on per-seed differences. Our test sets
are small; where the interval contains zero the verdict is "no detectable difference".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LOWER, HIGHER, NO_DIFFERENCE = "lower", "higher", "no detectable difference"


@dataclass(frozen=True)
class PairedDifference:
    """Summary of ``a - b`` over paired seeds, with a two-sided t-interval."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float

    @property
    def direction(self) -> str:
        """``lower`` / ``higher`` when the interval excludes zero, else no detectable difference."""
        if self.n >= 2 and self.high < 0:
            return LOWER
        if self.n >= 2 and self.low > 0:
            return HIGHER
        return NO_DIFFERENCE


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """``a - b`` per seed; with one seed the interval is unbounded (nothing can be concluded)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.ndim != 1 or len(diff) == 0:
        raise ValueError("need two equally long, non-empty sequences of paired values")
    n = len(diff)
    mean = float(diff.mean())
    if n < 2:
        return PairedDifference(mean, float("nan"), n, -np.inf, np.inf, confidence)
    std = float(diff.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / np.sqrt(n)
    return PairedDifference(mean, std, n, mean - half, mean + half, confidence)
