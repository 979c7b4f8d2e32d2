"""Run a grid of units once each, caching every finished unit on disk.

A unit is one training run. Its result file is written atomically when it finishes, so a
rerun skips finished units and an interrupted grid (Ctrl-C, a killed process) resumes where it
stopped, losing at most the units in flight; a damaged result file is named in a warning,
moved aside and its unit recomputed. :func:`run_grid` decides how to spend the machine
(:func:`execution_plan`): on a CPU, one single-thread process per core; on a GPU, one process
unless told otherwise.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import Any

import torch
from tqdm import tqdm

from gblend import data as gdata
from gblend.batched import BatchedTrainer, RunData
from gblend.experiments import methods as gmethods
from gblend.experiments.grid import Unit
from gblend.experiments.records import Results, RunRecord, make_record
from gblend.models import FusionNet
from gblend.results import UnitStore, unit_key
from gblend.train import resolve_device


# A grid iterates variants innermost: a sweep over data knobs needs one entry per setting and
# seed in the cache (the 16 of the calibration grid), or every unit rebuilds its data.
@lru_cache(maxsize=32)
def _load(dataset: str, seed: int, knobs: tuple[tuple[str, Any], ...]) -> gdata.Dataset:
    return gdata.load(dataset, seed=seed, **dict(knobs))


# A grid's keys are read more often than its data fit the cache above (a page checks a grid
# whole, then reads it): the fingerprints are kept, the data are not.
@cache
def _fingerprint(dataset: str, seed: int, knobs: tuple[tuple[str, Any], ...]) -> str:
    return _load(dataset, seed, knobs).fingerprint


def _data_args(unit: Unit) -> tuple[str, int, tuple[tuple[str, Any], ...]]:
    return unit.dataset, unit.seed, tuple(sorted(unit.data_knobs.items()))


def load_unit_data(unit: Unit) -> gdata.Dataset:
    """The unit's data set; the data seed is the unit's seed, so seeds pair across methods."""
    return _load(*_data_args(unit)).select(unit.modalities)


def run_unit(unit: Unit) -> RunRecord:
    """Train one unit by its method and return its result record."""
    started = time.perf_counter()
    dataset = load_unit_data(unit)
    trainer, extras = gmethods.get(unit.method).train(unit, dataset)
    return make_record(
        unit,
        dataset,
        trainer.history_,
        trainer.best_epoch_,
        trainer.epochs_run_,
        trainer.train_seconds_,
        time.perf_counter() - started,
        trainer.device_,
        extras,
        trainer.class_accuracy(),
    )


def batch_key(unit: Unit) -> str:
    """Units with equal keys differ only in seed and learning rate (same architecture, method
    and everything else) and can be trained as one batch."""
    config = unit.config()
    config.pop("seed")
    config["train"].pop("seed")
    config["train"].pop("lr")
    return json.dumps(config, sort_keys=True, default=str)


def run_batch(units: Sequence[Unit]) -> list[RunRecord]:
    """Train units that differ only in seed and learning rate together
    (:class:`BatchedTrainer`); one record each, as :func:`run_unit` gives, with ``batched`` =
    the batch size."""
    method = gmethods.get(units[0].method)
    if len({batch_key(u) for u in units}) != 1 or method.batch_weights is None:
        raise ValueError(
            "a batch needs units of one batchable method differing only in seed and learning rate"
        )
    started = time.perf_counter()
    datasets = [load_unit_data(u) for u in units]
    models = []
    for unit, dataset in zip(units, datasets, strict=True):
        torch.manual_seed(unit.seed)  # the same initial weights as run_unit draws
        models.append(FusionNet(dataset.specs, dataset.n_classes, unit.model))
    weights = method.batch_weights(models[0].heads)
    trainer = BatchedTrainer(units[0].train).fit(
        models,
        [RunData(d.x, d.y, d.splits) for d in datasets],
        [u.seed for u in units],
        weights,
        lrs=[u.train.lr for u in units],
    )
    wall = (time.perf_counter() - started) / len(units)
    extras: dict[str, Any] = {"batched": len(units)}
    if units[0].method != "naive":
        extras["weights"] = [weights]
    return [
        make_record(
            unit,
            dataset,
            trainer.histories_[r],
            trainer.best_epochs_[r],
            trainer.epochs_run_[r],
            trainer.train_seconds_ / len(units),
            wall,
            trainer.device_,
            extras,
            trainer.class_accuracy(r),
        )
        for r, (unit, dataset) in enumerate(zip(units, datasets, strict=True))
    ]


def _location(unit: Unit, results_dir: str | None) -> tuple[UnitStore, str]:
    """Where a unit's result file lives: its method's store and its cache key."""
    store = UnitStore(results_dir, unit.store, unit.scale)
    return store, unit_key(unit.config(), _fingerprint(*_data_args(unit)))


@dataclass(frozen=True)
class ExecutionPlan:
    """How a grid spends the machine: processes, threads per process, runs per batch."""

    jobs: int
    threads: int
    batch_runs: int
    reason: str


def execution_plan(device: str = "auto", jobs: int = 0, batch_runs: int = 0) -> ExecutionPlan:
    """The fastest measured way to train this study's small models (0 = choose).

    CPU: one single-thread process per core, costliest units first. Measured on the 2-core
    machine, cpu scale (Intel Xeon, 2 cores, no SMT; commit 0c6c7b3): a naive avdigits run
    (CNN) takes 35 s alone with 2 threads and 45 s with 1 thread while a second process runs
    (1.55x the throughput); synthetic (MLPs) 3.6 s and 3.4 s (2.1x). Where few long units
    remain, one core idles: Figure 5's three long avdigits runs bound its notebook. Batching
    (``BatchedTrainer``) stays off on a CPU: it loses on convolutions at every batch size
    (0.44-0.58x the reference loop) and gains 1.4-1.8x on MLPs only at 8-32 runs of one
    setting, more than a cpu-scale grid has. GPU: one process, runs batched 8 at a time
    unless told otherwise (``gblend full-run`` passes its own counts).
    """
    if jobs < 0 or batch_runs < 0:
        raise ValueError("jobs and batch_runs must be >= 0 (0: choose)")
    cores = os.cpu_count() or 1
    if resolve_device(device).type == "cpu":
        jobs = jobs or cores
        return ExecutionPlan(
            jobs, max(1, cores // jobs), batch_runs or 1, "cpu: one single-thread process per core"
        )
    return ExecutionPlan(jobs or 1, max(1, cores // (jobs or 1)), batch_runs or 8, "gpu")


_Pending = tuple[int, Unit, UnitStore, str]  # position in the grid, unit, store, cache key


def _plan(
    units: Sequence[Unit], results_dir: str | None, batch_runs: int, run_missing: bool
) -> tuple[dict[int, RunRecord], list[list[_Pending]]]:
    """The records already on disk and the pending units, grouped into chunks to train."""
    if batch_runs < 1:
        raise ValueError("batch_runs must be at least 1")
    records: dict[int, RunRecord] = {}
    pending: dict[str, list[_Pending]] = {}
    for i, unit in enumerate(units):
        store, key = _location(unit, results_dir)
        found = store.load(unit.dataset, key)
        if found is not None:
            # the grid names the variant: a sweep's default setting may be another grid's unit
            variant = [[k, v] for k, v in unit.variant]
            records[i] = replace(RunRecord.from_json(found), variant=variant)
        elif run_missing:
            batchable = gmethods.get(unit.method).batch_weights is not None
            group = batch_key(unit) if batch_runs > 1 and batchable else str(i)
            pending.setdefault(group, []).append((i, unit, store, key))
    chunks = [
        group[start : start + batch_runs]
        for group in pending.values()
        for start in range(0, len(group), batch_runs)
    ]
    return records, chunks


def _run_chunk(chunk: Sequence[_Pending]) -> list[tuple[int, RunRecord]]:
    """Train one chunk (one unit, or a batch of them) and save each result on its own."""
    units = [unit for _, unit, _, _ in chunk]
    new = [run_unit(units[0])] if len(units) == 1 else run_batch(units)
    for (_, unit, store, key), record in zip(chunk, new, strict=True):
        store.save(unit.dataset, key, record.to_json())
    return [(i, record) for (i, *_), record in zip(chunk, new, strict=True)]


def _describe(chunk: Sequence[_Pending]) -> str:
    first = chunk[0][1]
    return f"{first.dataset} {first.combo} {first.method} x{len(chunk)}"


def _cost(chunk: Sequence[_Pending]) -> float:
    """Rough relative cost, to start the longest chunks first when processes share a grid."""
    unit = chunk[0][1]
    method, dataset = gmethods.get(unit.method), gdata.get(unit.dataset)
    device = resolve_device(unit.train.device).type
    return method.cost * dataset.cost_on(device) * len(chunk) ** 0.5


_worker_error: BaseException | None = None


def _init_worker(threads: int, datasets: bytes) -> None:
    """Set up a pool process. A failure is kept and raised by the first chunk, with its cause
    (a pool whose initializer raises says only that it broke); hence also the data sets arrive
    pickled and are unpickled here, where a failure to rebuild one is caught."""
    global _worker_error
    try:
        torch.set_num_threads(threads)
        for entry in pickle.loads(datasets):  # a user's data sets exist in the parent only
            gdata.register(entry, replace=True)
    except Exception as exc:
        _worker_error = exc


def _run_chunk_in_worker(chunk: Sequence[_Pending]) -> list[tuple[int, RunRecord]]:
    if _worker_error is not None:
        raise RuntimeError(f"a worker process failed to start: {_worker_error!r}")
    return _run_chunk(chunk)


def run_grid(
    units: Iterable[Unit],
    results_dir: str | None = None,
    *,
    progress: bool = True,
    run_missing: bool = True,
    jobs: int = 0,
    batch_runs: int = 0,
) -> list[RunRecord]:
    """Run every unit not yet on disk; return the records of all units (cached or new), in
    the grid's order.

    ``jobs`` processes (0: :func:`execution_plan` chooses) take the pending chunks, costliest
    first, so the grid ends when its longest unit does; each writes the result files of what it
    trained, so an interrupted grid resumes. With ``batch_runs > 1``, pending units of a
    batchable method that differ only in seed are trained together, each still cached on its
    own. With ``run_missing=False`` nothing is trained: only the units on disk are returned.
    """
    units = list(units)
    device = units[0].train.device if units else "cpu"
    plan = execution_plan(device, jobs, batch_runs)
    records, chunks = _plan(units, results_dir, plan.batch_runs, run_missing)
    bar = tqdm(
        total=len(units), initial=len(records), disable=not progress, desc="runs", unit="run"
    )
    # a method registered in this session (a student's remedy, say) exists in this process
    # only: spawned workers would not know it, so such a grid trains here
    local = sorted({u.method for c in chunks for _, u, _, _ in c} - gmethods.BUILTIN)
    if local and plan.jobs > 1 and len(chunks) > 1:
        warnings.warn(
            f"methods {local} are not gblend's own: training in this process, not in "
            f"{plan.jobs} workers (they know gblend's own methods only)",
            stacklevel=2,
        )
    if plan.jobs == 1 or len(chunks) < 2 or local:
        for chunk in chunks:
            bar.set_postfix_str(_describe(chunk))
            for i, record in _run_chunk(chunk):
                records[i] = record
                bar.update()
    else:
        chunks.sort(key=_cost, reverse=True)
        # concurrent.futures, not multiprocessing.Pool, whose terminate() on an error can
        # deadlock with its task thread (CPython issue 96995; a test here hung under load)
        pool = ProcessPoolExecutor(
            max_workers=min(plan.jobs, len(chunks)),
            mp_context=multiprocessing.get_context("spawn"),  # CUDA cannot be used in a fork
            initializer=_init_worker,
            initargs=(plan.threads, pickle.dumps(gdata.user_entries())),
        )
        try:
            for future in as_completed([pool.submit(_run_chunk_in_worker, c) for c in chunks]):
                finished = future.result()
                for i, record in finished:
                    records[i] = record
                bar.update(len(finished))
        except BaseException:
            # on an error or Ctrl-C stop at once: a worker would otherwise go on to the chunk
            # queued next; what finished is saved (Python 3.14: pool.terminate_workers())
            for process in list(pool._processes.values()):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    return [records[i] for i in sorted(records)]


def missing(units: Iterable[Unit], results_dir: str | None = None) -> list[Unit]:
    """The units of a grid that have no (readable) result file yet."""
    out = []
    for unit in units:
        store, key = _location(unit, results_dir)
        if not store.has(unit.dataset, key):
            out.append(unit)
    return out


def run(
    grid: Iterable[Unit],
    results_dir: str | None = None,
    *,
    progress: bool = True,
    run_missing: bool = True,
    jobs: int = 0,
) -> Results:
    """Run (or load) a grid and return its :class:`~gblend.experiments.records.Results`."""
    records = run_grid(grid, results_dir, progress=progress, run_missing=run_missing, jobs=jobs)
    return Results(records)
