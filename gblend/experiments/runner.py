"""Run a grid of (config, seed) units once each, caching every finished unit on disk.

A unit is one training run. Its result file is written atomically when it finishes, so a
rerun skips finished units and an interrupted grid (Ctrl-C, a killed process) resumes where it
stopped, losing at most the unit in flight. ``shard=(i, k)`` runs every k-th unit, so k
processes can share one grid (e.g. on one GPU) without stepping on each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from gblend import blend
from gblend import data as gdata
from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.results import UnitStore, history_to_json, provenance, unit_key
from gblend.train import EVAL_SPLITS, TrainConfig, Trainer

# Settings that change where or how visibly a run happens, not its result.
_NOT_HASHED = ("device", "progress")


@dataclass
class Unit:
    """One training run of the grid."""

    experiment: str
    scale: str
    dataset: str
    modalities: tuple[str, ...]
    seed: int
    train: TrainConfig
    model: ModelConfig
    method: str = "naive"  # one of METHODS
    data_knobs: dict[str, Any] = field(default_factory=dict)
    method_params: dict[str, Any] = field(default_factory=dict)  # e.g. G-Blend's windows

    @property
    def combo(self) -> str:
        return "+".join(self.modalities)

    def config(self) -> dict[str, Any]:
        """Everything that determines the result (hashed into the cache key)."""
        train = {k: v for k, v in asdict(self.train).items() if k not in _NOT_HASHED}
        config = {
            "experiment": self.experiment,
            "dataset": self.dataset,
            "modalities": list(self.modalities),
            "method": self.method,
            "seed": self.seed,
            "data": dict(sorted(self.data_knobs.items())),
            "train": train,
            "model": asdict(self.model),
        }
        if self.method_params:  # absent for naive runs, whose keys predate the field
            config["method_params"] = dict(sorted(self.method_params.items()))
        return config


@lru_cache(maxsize=4)
def _load(dataset: str, seed: int, knobs: tuple[tuple[str, Any], ...]) -> gdata.Dataset:
    return gdata.load(dataset, seed=seed, **dict(knobs))


def load_unit_data(unit: Unit) -> gdata.Dataset:
    """The unit's data set; the data seed is the unit's seed, so seeds pair across methods."""
    full = _load(unit.dataset, unit.seed, tuple(sorted(unit.data_knobs.items())))
    return full.select(unit.modalities)


METHODS = ("naive", "uniform", "offline", "online", "online_probed")


def train_unit(unit: Unit, dataset: gdata.Dataset) -> tuple[Trainer, dict[str, Any]]:
    """Train one unit by its method; return the trainer and method-specific results.

    naive: the fused head's loss alone (paper Fig. 2b; a single modality is Fig. 2a);
    uniform: every head of the multi-head model with equal weight (the paper's "auxiliary
    loss"); offline / online: G-Blend, Algorithms 2 and 3 (``gblend.blend``); online_probed:
    online G-Blend with the paper's Figure 5b comparison at every super-epoch.
    """
    if unit.method not in METHODS:
        raise ValueError(f"unknown method {unit.method!r}; valid: {', '.join(METHODS)}")
    torch.manual_seed(unit.seed)
    model = FusionNet(dataset.specs, dataset.n_classes, unit.model)
    data = (model, dataset.x, dataset.y, dataset.splits)
    params = dict(unit.method_params)
    if unit.method == "naive":
        return Trainer(unit.train).fit(*data, loss_weights={JOINT: 1.0}), {}
    if unit.method == "uniform":
        weights = blend.uniform_weights(model.heads)
        return Trainer(unit.train).fit(*data, loss_weights=weights), {"weights": [weights]}
    policy = blend.DegeneratePolicy(min_weight=params.pop("min_weight", 0.01))
    if unit.method == "offline":
        run = blend.train_offline(*data, unit.train, policy=policy, **params)
    else:
        probe = unit.method == "online_probed"
        run = blend.train_online(*data, unit.train, policy=policy, probe=probe, **params)
    extras = {
        "weights": run.weights_json(),
        "estimation_epochs": run.estimation_epochs,
        "estimation_seconds": run.estimation_seconds,
    }
    if unit.method == "online_probed":
        extras["probes"] = run.probes
    return run.trainer, extras


def run_unit(unit: Unit) -> dict[str, Any]:
    """Train one unit and return its result record (metrics, history, provenance)."""
    started = time.perf_counter()
    dataset = load_unit_data(unit)
    trainer, extras = train_unit(unit, dataset)
    history = trainer.history_
    at_best = history[history.epoch == trainer.best_epoch_]
    metrics = {
        f"{row.split}_{name}": float(getattr(row, name))
        for row in at_best[at_best["head"] == JOINT].itertuples()
        for name in ("acc", "loss")
    }
    record = {
        "key": unit_key(unit.config(), dataset.fingerprint),
        "experiment": unit.experiment,
        "scale": unit.scale,
        "dataset": unit.dataset,
        "combo": unit.combo,
        "modalities": list(unit.modalities),
        "method": unit.method,
        "seed": unit.seed,
        "config": unit.config(),
        "data_fingerprint": dataset.fingerprint,
        "split_sizes": {s: int(len(idx)) for s, idx in dataset.splits.items()},
        "best_epoch": trainer.best_epoch_,
        "epochs_run": trainer.epochs_run_,
        "metrics": metrics,
        "history": history_to_json(history),
        "wall_seconds": time.perf_counter() - started,
        "train_seconds": trainer.train_seconds_,
        "provenance": provenance(trainer.device_),
    }
    if unit.method != "naive":
        # every head of the multi-head model at the selected epoch (the fused head is the one
        # reported; the others show what each modality's own classifier learned)
        record["head_metrics"] = {
            head: {row.split: float(row.acc) for row in rows.itertuples()}
            for head, rows in at_best.groupby("head")
        }
    return record | extras


def run_grid(
    units: Sequence[Unit],
    results_dir: str | None = None,
    *,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    run_missing: bool = True,
) -> list[dict[str, Any]]:
    """Run every unit not yet on disk; return the records of all units (cached or new).

    With ``shard=(i, k)`` only units ``i, i+k, ...`` are run and returned. With
    ``run_missing=False`` nothing is trained: only the units already on disk are returned.
    """
    if shard is not None:
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard must be (i, k) with 0 <= i < k, got {shard}")
        units = units[index::count]
    records = []
    bar = tqdm(units, disable=not progress, desc="runs", unit="run")
    for unit in bar:
        store = UnitStore(results_dir, unit.experiment, unit.scale)
        dataset = load_unit_data(unit)
        key = unit_key(unit.config(), dataset.fingerprint)
        bar.set_postfix_str(f"{unit.dataset} {unit.combo} seed {unit.seed}")
        if store.has(unit.dataset, key):
            records.append(store.load(unit.dataset, key))
            continue
        if not run_missing:
            continue
        record = run_unit(unit)
        store.save(unit.dataset, key, record)
        records.append(record)
    return records


def missing(units: Sequence[Unit], results_dir: str | None = None) -> list[Unit]:
    """The units of a grid that have no result file yet."""
    out = []
    for unit in units:
        key = unit_key(unit.config(), load_unit_data(unit).fingerprint)
        if not UnitStore(results_dir, unit.experiment, unit.scale).has(unit.dataset, key):
            out.append(unit)
    return out


def runs_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per unit: identity, metrics at the selected epoch, timing and provenance."""
    rows = []
    for rec in records:
        row = {
            k: rec[k]
            for k in (
                "dataset",
                "combo",
                "method",
                "seed",
                "best_epoch",
                "epochs_run",
                "wall_seconds",
                "train_seconds",
                "data_fingerprint",
                "key",
            )
        }
        row["n_modalities"] = len(rec["modalities"])
        row["estimation_epochs"] = rec.get("estimation_epochs", 0.0)
        row["estimation_seconds"] = rec.get("estimation_seconds", 0.0)
        row.update(rec["metrics"])
        row["device"] = rec["provenance"]["device"]
        row["device_name"] = rec["provenance"].get("device_name", "")
        rows.append(row)
    return pd.DataFrame(rows)


def history_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Every unit's per-epoch history, with the unit's identity columns."""
    frames = []
    for rec in records:
        hist = pd.DataFrame(rec["history"])
        for k in ("dataset", "combo", "method", "seed"):
            hist[k] = rec[k]
        frames.append(hist)
    columns = ["dataset", "combo", "method", "seed", "epoch", "head", "split", "loss", "acc"]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


__all__ = ["EVAL_SPLITS", "Unit", "history_frame", "run_grid", "run_unit", "runs_frame"]
