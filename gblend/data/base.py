"""Core containers of the data layer: `ModalitySpec`, `Dataset`, fingerprinting, scaling."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .splits import TRAIN_FRAC, thin_train

SPLIT_NAMES: tuple[str, ...] = ("train", "heldout", "val", "test")
KINDS: tuple[str, ...] = ("vector", "image", "sequence")


@dataclass(frozen=True)
class ModalitySpec:
    """What one modality looks like per sample.

    `shape` is the per-sample shape: vector ``(d,)``, image ``(C, H, W)``, sequence ``(T, C)``.
    """

    name: str
    kind: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class Dataset:
    """Aligned per-modality tensors, labels, fixed splits and provenance.

    ``x[m][i]`` and ``y[i]`` describe the same sample for every modality ``m``; ``splits`` maps
    ``train``/``heldout``/``val``/``test`` to disjoint sorted int64 indices into them. Features
    are standardised with statistics of the ``train`` split only.
    """

    name: str
    x: dict[str, torch.Tensor]
    y: torch.Tensor
    classes: tuple[str, ...]
    specs: dict[str, ModalitySpec]
    splits: dict[str, np.ndarray]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.x)

    def select(self, modalities: Sequence[str]) -> Dataset:
        """Keep a subset of modalities, in the order given.

        The fingerprint is kept: it identifies the loaded data and splits, and the samples,
        labels and splits of the subset are the same (callers key results by the modality set
        separately).
        """
        check_names("modality", modalities, tuple(self.x))
        if len(modalities) == 0:
            raise ValueError(f"select at least one modality of {tuple(self.x)}")
        info = {**self.info, "modalities": list(modalities)}
        return replace(
            self,
            x={m: self.x[m] for m in modalities},
            specs={m: self.specs[m] for m in modalities},
            info=info,
        )


def check_names(what: str, names: Sequence[str], valid: Sequence[str]) -> None:
    """Raise a ValueError listing the valid names if any of `names` is unknown."""
    if isinstance(names, str):
        raise TypeError(f"{what}s must be a sequence of names, not the string {names!r}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; valid: {list(valid)}")


def standardise(
    arr: np.ndarray, train_idx: np.ndarray, kind: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scale with train-split statistics only, so nothing about val/test leaks into features.

    vector: per feature; sequence: per channel (pooled over time); image: one scalar for all
    pixels (per-pixel scaling would distort the image and blow up near-constant border pixels).
    Zero spread is replaced by 1 so constant features stay finite.
    """
    train = arr[train_idx].astype(np.float64)
    axes = {"vector": (0,), "sequence": (0, 1), "image": None}[kind]
    mean = train.mean(axis=axes, keepdims=axes is not None)
    std = train.std(axis=axes, keepdims=axes is not None)
    std = np.where(std > 1e-8, std, 1.0)
    out = ((arr - mean) / std).astype(np.float32)
    return out, {"mean_abs_max": float(np.max(np.abs(mean))), "std_min": float(np.min(std))}


ROUND_DECIMALS = 4


def fingerprint(
    name: str,
    knobs: Mapping[str, Any],
    x: Mapping[str, np.ndarray],
    y: np.ndarray,
    splits: Mapping[str, np.ndarray],
) -> str:
    """sha256 over the dataset name, knobs, arrays (in modality-name order) and split indices.

    Float arrays are hashed at 4 decimals (1e-4 of a standardised feature): the same data made
    on another machine (another BLAS, another CPU) may differ in the last bits, and must get
    the same fingerprint so that results computed there are recognised here.
    """
    h = hashlib.sha256()
    h.update(name.encode())
    h.update(json.dumps(dict(knobs), sort_keys=True, default=str).encode())
    for m in sorted(x):
        arr = np.ascontiguousarray(x[m])
        h.update(f"{m}:{arr.dtype}:{arr.shape}".encode())
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.round(arr.astype(np.float64), ROUND_DECIMALS) + 0.0  # + 0.0: no -0.0
        h.update(arr.tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    for s in SPLIT_NAMES:
        h.update(s.encode())
        h.update(np.ascontiguousarray(splits[s], dtype=np.int64).tobytes())
    return h.hexdigest()


def assemble(
    name: str,
    raw: Mapping[str, np.ndarray],
    y: np.ndarray,
    classes: Sequence[str],
    specs: Mapping[str, ModalitySpec],
    splits: Mapping[str, np.ndarray],
    knobs: Mapping[str, Any],
    info: Mapping[str, Any],
) -> Dataset:
    """Thin the train split to ``knobs["train_frac"]`` (if given; the data seed is
    ``knobs["seed"]``), standardise with train statistics, fingerprint and wrap up a
    `Dataset`."""
    if knobs.get(TRAIN_FRAC) is not None:
        splits = thin_train(
            dict(splits), np.asarray(y), float(knobs[TRAIN_FRAC]), int(knobs["seed"])
        )
    check_splits(splits, len(y))
    x = {m: standardise(raw[m], splits["train"], specs[m].kind)[0] for m in specs}
    for m, arr in x.items():
        if arr.shape[1:] != specs[m].shape:
            raise AssertionError(f"{name}/{m}: shape {arr.shape[1:]} != spec {specs[m].shape}")
    y = np.asarray(y, dtype=np.int64)
    fp = fingerprint(name, knobs, x, y, splits)
    full_info = {
        **info,
        "knobs": dict(knobs),
        "modalities": list(specs),
        "n_samples": int(len(y)),
        "split_sizes": {s: int(len(splits[s])) for s in SPLIT_NAMES},
        "standardisation": "train split only; vector per feature, sequence per channel, "
        "image one scalar",
    }
    return Dataset(
        name=name,
        x={m: torch.from_numpy(a) for m, a in x.items()},
        y=torch.from_numpy(y),
        classes=tuple(classes),
        specs=dict(specs),
        splits={s: np.asarray(splits[s], dtype=np.int64) for s in SPLIT_NAMES},
        fingerprint=fp,
        info=json.loads(json.dumps(full_info)),
    )


def check_splits(splits: Mapping[str, np.ndarray], n: int) -> None:
    """Splits must be exactly the four names, sorted, disjoint, non-empty and within range."""
    if set(splits) != set(SPLIT_NAMES):
        raise AssertionError(f"splits {sorted(splits)} != {SPLIT_NAMES}")
    seen = np.concatenate([splits[s] for s in SPLIT_NAMES])
    if len(np.unique(seen)) != len(seen):
        raise AssertionError("splits overlap")
    for s in SPLIT_NAMES:
        idx = splits[s]
        if len(idx) == 0 or np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= n:
            raise AssertionError(f"split {s!r} is empty, unsorted or out of range")
