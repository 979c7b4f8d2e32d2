"""The dataset registry: every data set the study can run on, built-in or the user's own.

A data set is registered once, by name, with its modalities, its knobs and a ``build``
function; everything else (the experiments, the grid runner, the cost estimate of the process
pool) reads this registry. :func:`register_arrays` turns a user's aligned per-modality arrays
and labels into a data set whose splits, standardisation and fingerprint are made here, exactly
as for the built-in ones::

    from gblend import data
    data.register_arrays("mine", x={"left": xl, "right": xr}, y=labels)
    data.load("mine", seed=0)      # seeded stratified train / heldout / val / test
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import KINDS, Dataset, ModalitySpec, assemble
from .splits import stratified_splits, stratified_subsample

Build = Callable[[int, "int | None", Mapping[str, float], Mapping[str, Any]], Dataset]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered data set.

    ``modalities``: every modality it offers, in a fixed order; ``study``: the ones the
    experiments use (default: all); ``knobs``: keyword knobs of ``build`` with their defaults;
    ``cost``: rough time of one run relative to a naive run on ``avdigits``, one number or one
    per kind of device (``{"cpu": ..., "cuda": ...}``; it orders the process pool, nothing
    else); ``builtin``: shipped with gblend; ``later_knobs``: knobs added after results were
    first fingerprinted, which enter a fingerprint only when set away from their default (so
    that every earlier result keeps its fingerprint).
    """

    name: str
    modalities: tuple[str, ...]
    build: Build
    knobs: Mapping[str, Any]
    study: tuple[str, ...] = ()
    cost: float | Mapping[str, float] = 1.0
    builtin: bool = False
    later_knobs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError(f"data set {self.name!r} needs at least one modality")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"data set {self.name!r} repeats a modality: {self.modalities}")
        unknown = [m for m in self.study if m not in self.modalities]
        if unknown:
            raise ValueError(f"study modalities {unknown} are not modalities of {self.name!r}")
        if not set(self.later_knobs) <= set(self.knobs):
            raise ValueError(f"later knobs of {self.name!r} must be among its knobs")

    @property
    def study_modalities(self) -> tuple[str, ...]:
        return self.study or self.modalities

    def cost_on(self, device_type: str) -> float:
        """The relative cost of a run on a kind of device (``cpu``, ``cuda``, ...)."""
        if isinstance(self.cost, Mapping):
            return float(self.cost.get(device_type, max(self.cost.values())))
        return float(self.cost)


_REGISTRY: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry, *, replace: bool = False) -> DatasetEntry:
    """Add a data set; an existing name is an error unless ``replace`` (never a built-in)."""
    old = _REGISTRY.get(entry.name)
    if old is not None and (old.builtin or not replace):
        raise ValueError(f"a data set named {entry.name!r} is already registered")
    if "joint" in entry.modalities:
        raise ValueError("'joint' is the name of the fused head; rename that modality")
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a user's data set (built-ins stay)."""
    entry = get(name)
    if entry.builtin:
        raise ValueError(f"{name!r} is a built-in data set")
    del _REGISTRY[name]


def get(name: str) -> DatasetEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset(s) [{name!r}]; valid: {list(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Every registered data set, built-ins first, in registration order."""
    return tuple(_REGISTRY)


def _kind(array: np.ndarray) -> str:
    return {2: "vector", 3: "sequence", 4: "image"}.get(array.ndim, "")


def register_arrays(
    name: str,
    x: Mapping[str, np.ndarray],
    y: Sequence[int] | np.ndarray,
    *,
    kinds: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    study: Sequence[str] = (),
    cost: float = 1.0,
    replace: bool = False,
) -> DatasetEntry:
    """Register aligned per-modality arrays ``x[m][i]`` and labels ``y[i]`` as a data set.

    Kinds default from the array rank: (N, d) vector, (N, T, C) sequence, (N, C, H, W) image.
    Splits are seeded and stratified by class (``load(..., seed=s)``); features are
    standardised with train statistics; the fingerprint covers the arrays and the splits, so
    results computed on other arrays under the same name are never reused.
    """
    arrays = {m: np.asarray(a, dtype=np.float32) for m, a in x.items()}
    labels = np.asarray(y)
    if not arrays:
        raise ValueError("x needs at least one modality")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("y must be a 1-d array of integer class labels")
    for m, a in arrays.items():
        if len(a) != len(labels):
            raise ValueError(f"modality {m!r} has {len(a)} samples, y has {len(labels)}")
        if not np.isfinite(a).all():
            raise ValueError(f"modality {m!r} holds non-finite values")
    kinds = {m: (kinds or {}).get(m) or _kind(a) for m, a in arrays.items()}
    for m, k in kinds.items():
        if k not in KINDS:
            raise ValueError(f"cannot tell the kind of modality {m!r}; pass kinds={{...}}")
    values, codes = np.unique(labels, return_inverse=True)
    if len(values) < 2 or np.bincount(codes).min() < 5:
        raise ValueError("need at least two classes with at least 5 samples each")
    class_names = tuple(classes) if classes is not None else tuple(str(v) for v in values)
    if len(class_names) != len(values):
        raise ValueError(f"{len(class_names)} class names for {len(values)} classes")
    specs = {m: ModalitySpec(m, kinds[m], tuple(a.shape[1:])) for m, a in arrays.items()}
    build = _ArraysBuild(name, arrays, codes, class_names, specs)
    entry = DatasetEntry(name, tuple(arrays), build, {}, tuple(study), cost)
    return register(entry, replace=replace)


@dataclass(frozen=True)
class _ArraysBuild:
    """The ``build`` of a registered array data set; picklable, so that the grid runner's
    worker processes can register the same data set (see :func:`user_entries`)."""

    name: str
    arrays: Mapping[str, np.ndarray]
    codes: np.ndarray
    classes: tuple[str, ...]
    specs: Mapping[str, ModalitySpec]

    def __call__(self, seed, max_samples, fracs, knobs) -> Dataset:
        keep = stratified_subsample(self.codes, max_samples, seed)
        splits = stratified_splits(self.codes[keep], seed, **fracs)
        info = {"source": "registered arrays (gblend.data.register_arrays)"}
        raw = {m: a[keep] for m, a in self.arrays.items()}
        return assemble(
            self.name, raw, self.codes[keep], self.classes, self.specs, splits, knobs, info
        )


def user_entries() -> tuple[DatasetEntry, ...]:
    """The data sets registered in this process that are not built in (to hand to workers)."""
    return tuple(e for e in _REGISTRY.values() if not e.builtin)
