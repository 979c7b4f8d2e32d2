"""Run a grid of (config, seed) units once each, caching every finished unit on disk.

A unit is one training run. Its result file is written atomically when it finishes, so a
rerun skips finished units and an interrupted grid (Ctrl-C, a killed process) resumes where it
stopped, losing at most the units in flight. :func:`run_grid_parallel` shares a grid among
processes (e.g. on one GPU), each taking the next pending unit; ``shard=(i, k)`` splits it
statically, e.g. across machines.
"""

from __future__ import annotations

import json
import multiprocessing
import os
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
from gblend.batched import BatchedTrainer, RunData
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


def _record(
    unit: Unit,
    dataset: gdata.Dataset,
    history: pd.DataFrame,
    best_epoch: int,
    epochs_run: int,
    train_seconds: float,
    wall_seconds: float,
    device: str,
) -> dict[str, Any]:
    """A unit's result record: identity, config, metrics at the selected epoch, history."""
    at_best = history[history.epoch == best_epoch]
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
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "metrics": metrics,
        "history": history_to_json(history),
        "wall_seconds": wall_seconds,
        "train_seconds": train_seconds,
        "provenance": provenance(device),
    }
    if unit.method != "naive":
        # every head of the multi-head model at the selected epoch (the fused head is the one
        # reported; the others show what each modality's own classifier learned)
        record["head_metrics"] = {
            head: {row.split: float(row.acc) for row in rows.itertuples()}
            for head, rows in at_best.groupby("head")
        }
    return record


def run_unit(unit: Unit) -> dict[str, Any]:
    """Train one unit and return its result record (metrics, history, provenance)."""
    started = time.perf_counter()
    dataset = load_unit_data(unit)
    trainer, extras = train_unit(unit, dataset)
    record = _record(
        unit,
        dataset,
        trainer.history_,
        trainer.best_epoch_,
        trainer.epochs_run_,
        trainer.train_seconds_,
        time.perf_counter() - started,
        trainer.device_,
    )
    return record | extras


BATCHABLE = ("naive", "uniform")  # methods whose runs are one plain training each


def batch_key(unit: Unit) -> str:
    """Units with equal keys differ only in seed and learning rate (same architecture, method
    and everything else) and can be trained as one batch."""
    config = unit.config()
    config.pop("seed")
    config["train"].pop("seed")
    config["train"].pop("lr")
    return json.dumps(config, sort_keys=True, default=str)


def run_batch(units: Sequence[Unit]) -> list[dict[str, Any]]:
    """Train units that differ only in seed and learning rate together
    (:class:`BatchedTrainer`); one record each, in the format of :func:`run_unit`, with
    ``batched`` = the batch size."""
    if len({batch_key(u) for u in units}) != 1 or units[0].method not in BATCHABLE:
        raise ValueError(
            "a batch needs units of one batchable method differing only in seed and learning rate"
        )
    started = time.perf_counter()
    datasets = [load_unit_data(u) for u in units]
    models = []
    for unit, dataset in zip(units, datasets, strict=True):
        torch.manual_seed(unit.seed)  # the same initial weights as run_unit draws
        models.append(FusionNet(dataset.specs, dataset.n_classes, unit.model))
    weights = {JOINT: 1.0} if units[0].method == "naive" else blend.uniform_weights(models[0].heads)
    trainer = BatchedTrainer(units[0].train).fit(
        models,
        [RunData(d.x, d.y, d.splits) for d in datasets],
        [u.seed for u in units],
        weights,
        lrs=[u.train.lr for u in units],
    )
    wall = (time.perf_counter() - started) / len(units)
    records = []
    for r, (unit, dataset) in enumerate(zip(units, datasets, strict=True)):
        record = _record(
            unit,
            dataset,
            trainer.histories_[r],
            trainer.best_epochs_[r],
            trainer.epochs_run_[r],
            trainer.train_seconds_ / len(units),
            wall,
            trainer.device_,
        )
        if unit.method == "uniform":
            record["weights"] = [weights]
        records.append(record | {"batched": len(units)})
    return records


def _location(unit: Unit, results_dir: str | None) -> tuple[UnitStore, str]:
    """Where a unit's result file lives: its experiment's store and its cache key."""
    store = UnitStore(results_dir, unit.experiment, unit.scale)
    return store, unit_key(unit.config(), load_unit_data(unit).fingerprint)


_Pending = tuple[int, Unit, UnitStore, str]  # position in the grid, unit, store, cache key


def _plan(
    units: Sequence[Unit], results_dir: str | None, batch_runs: int, run_missing: bool
) -> tuple[dict[int, dict[str, Any]], list[list[_Pending]]]:
    """The records already on disk and the pending units, grouped into chunks to train."""
    if batch_runs < 1:
        raise ValueError("batch_runs must be at least 1")
    records: dict[int, dict[str, Any]] = {}
    pending: dict[str, list[_Pending]] = {}
    for i, unit in enumerate(units):
        store, key = _location(unit, results_dir)
        if store.has(unit.dataset, key):
            records[i] = store.load(unit.dataset, key)
        elif run_missing:
            group = batch_key(unit) if batch_runs > 1 and unit.method in BATCHABLE else str(i)
            pending.setdefault(group, []).append((i, unit, store, key))
    chunks = [
        group[start : start + batch_runs]
        for group in pending.values()
        for start in range(0, len(group), batch_runs)
    ]
    return records, chunks


def _run_chunk(chunk: Sequence[_Pending]) -> list[tuple[int, dict[str, Any]]]:
    """Train one chunk (one unit, or a batch of them) and save each result on its own."""
    units = [unit for _, unit, _, _ in chunk]
    new = [run_unit(units[0])] if len(units) == 1 else run_batch(units)
    for (_, unit, store, key), record in zip(chunk, new, strict=True):
        store.save(unit.dataset, key, record)
    return [(i, record) for (i, *_), record in zip(chunk, new, strict=True)]


def _describe(chunk: Sequence[_Pending]) -> str:
    first = chunk[0][1]
    return f"{first.dataset} {first.combo} {first.method} x{len(chunk)}"


def run_grid(
    units: Sequence[Unit],
    results_dir: str | None = None,
    *,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    run_missing: bool = True,
    batch_runs: int = 1,
) -> list[dict[str, Any]]:
    """Run every unit not yet on disk; return the records of all units (cached or new).

    With ``shard=(i, k)`` only units ``i, i+k, ...`` are run and returned. With
    ``run_missing=False`` nothing is trained: only the units already on disk are returned.
    With ``batch_runs > 1``, pending units of a batchable method that differ only in seed are
    trained together, up to ``batch_runs`` at a time; each is still cached on its own.
    """
    if shard is not None:
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard must be (i, k) with 0 <= i < k, got {shard}")
        units = units[index::count]
    records, chunks = _plan(units, results_dir, batch_runs, run_missing)
    bar = tqdm(
        total=len(units), initial=len(records), disable=not progress, desc="runs", unit="run"
    )
    for chunk in chunks:
        bar.set_postfix_str(_describe(chunk))
        for i, record in _run_chunk(chunk):
            records[i] = record
            bar.update()
    bar.close()
    return [records[i] for i in sorted(records)]


# Rough relative cost of a unit, to start the longest first when processes share a grid:
# G-Blend trains k+1 estimation copies per super-epoch, the Fig. 5b probe a classifier per
# super-epoch on top; data sets by their measured time per naive run at full scale.
_METHOD_COST = {"naive": 1.0, "uniform": 1.5, "offline": 4.0, "online": 4.5, "online_probed": 8.0}
_DATASET_COST = {"synthetic": 2.0, "hapt": 1.5, "avdigits": 1.0, "mfeat": 0.6}


def _cost(chunk: Sequence[_Pending]) -> float:
    unit = chunk[0][1]
    return _METHOD_COST[unit.method] * _DATASET_COST.get(unit.dataset, 1.0) * len(chunk) ** 0.5


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_grid_parallel(
    units: Sequence[Unit],
    results_dir: str | None = None,
    *,
    jobs: int = 2,
    batch_runs: int = 1,
    progress: bool = True,
) -> int:
    """Train the pending units of a grid in ``jobs`` processes; return how many were trained.

    Processes take the next chunk when they finish one, the costliest first, so the grid ends
    when its longest unit does, not when the unluckiest static share does. Each result file
    is written by the process that trained it, so an interrupted grid resumes like
    :func:`run_grid`. Each process gets an equal share of this machine's CPU threads.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    _, chunks = _plan(units, results_dir, batch_runs, run_missing=True)
    chunks.sort(key=_cost, reverse=True)
    total = sum(len(c) for c in chunks)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    done = 0
    with (
        tqdm(total=total, disable=not progress, desc="runs", unit="run") as bar,
        context.Pool(min(jobs, max(1, len(chunks))), _init_worker, (threads,)) as pool,
    ):
        for finished in pool.imap_unordered(_run_chunk, chunks):
            done += len(finished)
            bar.update(len(finished))
    return done


def missing(units: Sequence[Unit], results_dir: str | None = None) -> list[Unit]:
    """The units of a grid that have no result file yet."""
    out = []
    for unit in units:
        store, key = _location(unit, results_dir)
        if not store.has(unit.dataset, key):
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
