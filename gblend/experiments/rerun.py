"""How closely does a rerun on this machine reproduce the committed results?

Floating-point sums run in another order on another CPU model, thread count or BLAS, so a
rerun is not bit-identical: small loss differences can move a best-val epoch and with it the
reported accuracy. :func:`rerun_check` retrains a sample of committed units from their configs
into a fresh folder and compares them with the committed records, so the book can state the
tolerance it measured instead of promising identity; :func:`compare_folders` compares whole
grids already recomputed elsewhere (e.g. by ``gblend bench --notebooks cpu --keep-results``).
"""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pandas as pd

from gblend.experiments.records import RunRecord
from gblend.experiments.registry import get
from gblend.experiments.runner import run_grid


def rerun_check(
    experiment: str = "table2",
    scale: str = "cpu",
    per_dataset: tuple[str, ...] = ("naive", "offline"),
    results_dir: str | None = None,
    jobs: int = 0,
    datasets: str | None = None,
) -> pd.DataFrame:
    """Retrain, per data set, the seed-0 study-combination unit of each method in
    ``per_dataset`` and compare it with the committed record: one row per unit."""
    grid = get(experiment).grid(scale, datasets)
    units = [
        u
        for u in grid
        if u.seed == grid.seeds[0]
        and u.method in per_dataset
        and len(u.modalities) == max(len(v.modalities) for v in grid if v.dataset == u.dataset)
    ]
    committed = run_grid(units, results_dir, progress=False, run_missing=False)
    if len(committed) != len(units):
        raise ValueError(f"{experiment} at {scale} is not committed in full; nothing to compare")
    with tempfile.TemporaryDirectory() as fresh:
        rerun = run_grid(units, fresh, progress=False, jobs=jobs)
    return pd.DataFrame([_compare(a, b) for a, b in zip(committed, rerun, strict=True)])


def compare_folders(
    rerun_dir: str,
    scale: str = "cpu",
    experiments: tuple[str, ...] = ("table1", "table2", "table4", "figure5"),
    results_dir: str | None = None,
    datasets: str | None = None,
) -> pd.DataFrame:
    """Every unit of the experiments' default grids at ``scale`` that is in both the committed
    results and ``rerun_dir``, compared as :func:`rerun_check` compares: one row per unit."""
    units = {}
    for name in experiments:  # the grids share units (Table 2 holds Table 1's naive runs)
        for u in get(name).grid(scale, datasets):
            units.setdefault(json.dumps(u.config(), sort_keys=True, default=str), u)
    committed = run_grid(list(units.values()), results_dir, progress=False, run_missing=False)
    rerun = {r.key: r for r in run_grid(list(units.values()), rerun_dir, progress=False,
                                        run_missing=False)}  # fmt: skip
    rows = [_compare(old, rerun[old.key]) for old in committed if old.key in rerun]
    if not rows:
        raise ValueError(f"no unit at {scale} scale is both committed and in {rerun_dir}")
    return pd.DataFrame(rows)


def _compare(old: RunRecord, new: RunRecord) -> dict:
    old_loss, new_loss = np.asarray(old.history["loss"]), np.asarray(new.history["loss"])
    old_acc, new_acc = np.asarray(old.history["acc"]), np.asarray(new.history["acc"])
    same_length = old_loss.shape == new_loss.shape
    return {
        "dataset": old.dataset,
        "combo": old.combo,
        "method": old.method,
        "seed": old.seed,
        "committed_on": _machine(old),
        "rerun_on": _machine(new),
        "best_epoch_committed": old.best_epoch,
        "best_epoch_rerun": new.best_epoch,
        "test_acc_committed": old.metrics["test_acc"],
        "test_acc_rerun": new.metrics["test_acc"],
        "test_acc_difference": new.metrics["test_acc"] - old.metrics["test_acc"],
        "history_max_loss_difference": float(np.abs(old_loss - new_loss).max())
        if same_length
        else float("nan"),
        "history_max_acc_difference": float(np.abs(old_acc - new_acc).max())
        if same_length
        else float("nan"),
        "history_loss_relative_median": float(
            np.median(np.abs(old_loss - new_loss) / np.maximum(np.abs(old_loss), 1e-12))
        )
        if same_length
        else float("nan"),
    }


def _machine(rec: RunRecord) -> str:
    p = rec.provenance
    name = p.get("cpu_model") or p.get("device_name", "")
    threads = p.get("threads")
    return f"{name}, {threads} threads" if threads else f"{name} (threads not recorded)"
