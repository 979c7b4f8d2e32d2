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


REPRODUCED, PARTLY, CONTRADICTED = "reproduced", "partly", "contradicted"
NOT_DETECTABLE = "not detectable"
ONE_SEED = "undetermined (one seed)"


def resolution(diff: PairedDifference) -> float:
    """The smallest mean difference these seeds could detect, given their spread: the
    half-width of the interval (infinite with one seed)."""
    return (diff.high - diff.low) / 2


def label(parts: Sequence[tuple[PairedDifference, str, str]]) -> str:
    """The verdict on a claim made of paired differences, each ``(difference, the direction
    the claim expects: higher or lower, its unit)``: *reproduced* when every part holds (its
    interval excludes zero that way), *partly* when some do, *contradicted* when none does
    and one excludes zero the other way, else *not detectable*, with the smallest effect the
    seeds could detect (the widest half-width of the parts' intervals, per unit)."""
    if not parts:
        raise ValueError("a claim needs at least one paired difference")
    if min(d.n for d, _, _ in parts) < 2:
        return ONE_SEED
    holds = sum(d.direction == want for d, want, _ in parts)
    against = sum(d.direction not in (want, NO_DIFFERENCE) for d, want, _ in parts)
    if holds == len(parts):
        return REPRODUCED
    if holds:
        return PARTLY
    if against:
        return CONTRADICTED
    floors: dict[str, float] = {}
    for d, _, unit in parts:
        floors[unit] = max(floors.get(unit, 0.0), resolution(d))
    said = ", ".join(f"±{floor:.2g} {unit}" for unit, floor in floors.items())
    return f"{NOT_DETECTABLE} (these seeds detect about {said})"


def equivalence(diff: PairedDifference, margin: float, worse: str, unit: str) -> str:
    """The verdict on a claim that something *does not matter* (two settings are "equally
    effective"), one-sided at a stated ``margin``: *reproduced* when the interval shows the
    difference is no worse than the margin, *contradicted* when it shows it is worse by more
    than the margin, else *not detectable* with the seeds' resolution. ``worse``: the
    direction of a worse difference, ``lower`` (e.g. less accuracy) or ``higher`` (e.g. a
    larger shift of the weights)."""
    if worse not in (LOWER, HIGHER):
        raise ValueError(f"worse must be {LOWER!r} or {HIGHER!r}, got {worse!r}")
    if diff.n < 2:
        return ONE_SEED
    bad_side = -1.0 if worse == LOWER else 1.0
    near, far = sorted((diff.low * bad_side, diff.high * bad_side))
    if far <= margin:
        return REPRODUCED
    if near > margin:
        return CONTRADICTED
    return f"{NOT_DETECTABLE} (these seeds detect about ±{resolution(diff):.2g} {unit})"
