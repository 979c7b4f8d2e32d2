"""Seeded split rules: stratified by class, or by group (whole subjects) where samples overlap."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

TEST_FRAC = 0.2  # of the pool
VAL_FRAC = 0.1  # of the pool
HELDOUT_FRAC = 0.08  # of what remains for training, as in the paper (V carved from train)
TRAIN_FRAC = "train_frac"  # the knob of every data set that thins train (see thin_train)


def _sorted(idx: np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(idx, dtype=np.int64))


def stratified_subsample(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded class-stratified subsample of size `n` (all if n is None)."""
    idx = np.arange(len(y))
    if n is None or n >= len(y):
        return idx
    if n < 1:
        raise ValueError(f"max_samples must be >= 1, got {n}")
    keep, _ = train_test_split(idx, train_size=n, stratify=y, random_state=seed)
    return _sorted(keep)


def thin_train(
    splits: dict[str, np.ndarray], y: np.ndarray, frac: float, seed: int
) -> dict[str, np.ndarray]:
    """Keep a seeded class-stratified fraction ``frac`` of the train split (the others stay).

    The dropped samples belong to no split: a smaller training set with the same heldout V,
    val and test, so that results at several fractions are compared on the same evaluation.
    """
    if not 0 < frac <= 1:
        raise ValueError(f"train_frac must be in (0, 1], got {frac}")
    train = splits["train"]
    n = max(len(np.unique(y[train])), round(frac * len(train)))
    if frac == 1 or n >= len(train):
        return dict(splits)
    keep = stratified_subsample(y[train], n, seed + 3)  # own stream, apart from the split seeds
    return {**splits, "train": train[keep]}


def stratified_splits(
    y: np.ndarray,
    seed: int,
    heldout_frac: float = HELDOUT_FRAC,
    test_frac: float = TEST_FRAC,
    val_frac: float = VAL_FRAC,
) -> dict[str, np.ndarray]:
    """test and val from the pool first, then heldout V from the training pool; rest is train."""
    _check_fracs(heldout_frac, test_frac, val_frac)
    idx = np.arange(len(y))
    pool, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    # val_frac is a fraction of the whole pool, hence the rescaling
    pool, val = train_test_split(
        pool, test_size=val_frac / (1 - test_frac), stratify=y[pool], random_state=seed + 1
    )
    train, heldout = train_test_split(
        pool, test_size=heldout_frac, stratify=y[pool], random_state=seed + 2
    )
    return {
        "train": _sorted(train),
        "heldout": _sorted(heldout),
        "val": _sorted(val),
        "test": _sorted(test),
    }


def group_splits(
    groups: np.ndarray,
    seed: int,
    heldout_frac: float = HELDOUT_FRAC,
    test_frac: float = TEST_FRAC,
    val_frac: float = VAL_FRAC,
    min_heldout_groups: int = 1,
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Whole groups per split (seeded shuffle of the group ids, at least one group each, and
    at least ``min_heldout_groups`` in heldout V: V's losses drive the blend weights, and a V
    of one or two subjects measures those subjects more than generalisation).

    Returns sample indices per split and the group ids per split.
    """
    _check_fracs(heldout_frac, test_frac, val_frac)
    ids = np.unique(groups)
    if len(ids) < 4:
        raise ValueError(f"need at least 4 groups for 4 splits, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(ids)
    n_test = max(1, round(test_frac * len(ids)))
    n_val = max(1, round(val_frac * len(ids)))
    rest = len(ids) - n_test - n_val
    if not 1 <= min_heldout_groups < rest:
        raise ValueError(
            f"min_heldout_groups must be in [1, {rest - 1}] to leave a training group, "
            f"got {min_heldout_groups}"
        )
    n_heldout = min(max(min_heldout_groups, round(heldout_frac * rest)), rest - 1)
    cuts = np.cumsum([n_test, n_val, n_heldout])
    parts = dict(zip(("test", "val", "heldout", "train"), np.split(order, cuts), strict=True))
    splits = {s: _sorted(np.flatnonzero(np.isin(groups, g))) for s, g in parts.items()}
    return splits, {s: sorted(int(i) for i in g) for s, g in parts.items()}


def _check_fracs(heldout_frac: float, test_frac: float, val_frac: float) -> None:
    if not (0 < heldout_frac < 1 and 0 < test_frac and 0 < val_frac and test_frac + val_frac < 1):
        raise ValueError(
            f"fractions must be in (0, 1) with test+val < 1; got heldout={heldout_frac}, "
            f"test={test_frac}, val={val_frac}"
        )
