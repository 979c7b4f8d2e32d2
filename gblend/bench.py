"""``gblend bench``: training throughput of our trainers against a typical PyTorch loop.

The reference is written the way public training code usually is: a ``DataLoader`` over a
``TensorDataset``, each mini-batch moved to the device as it comes, one model at a time. Ours
keeps the data on the device and indexes mini-batches there (:class:`Trainer`), and trains many
runs as one stacked model (:class:`BatchedTrainer`). All train the same model on the same data
with the same batch size and epochs, side by side in one process; only optimisation time is
counted (our trainers' per-epoch evaluation is excluded). The result is written to
``results/bench/`` with the device, versions and commit.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from gblend import data as gdata
from gblend.batched import BatchedTrainer, RunData
from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.results import provenance, resolve_results_dir, write_json_atomic
from gblend.train import TrainConfig, Trainer, make_optimizer, resolve_device


def reference_loop(model: torch.nn.Module, dataset: gdata.Dataset, config: TrainConfig) -> float:
    """Train naively the common way; return the seconds spent in the training loop."""
    device = resolve_device(config.device)
    train = torch.as_tensor(dataset.splits["train"])
    modalities = list(dataset.x)
    tensors = TensorDataset(*[dataset.x[m][train] for m in modalities], dataset.y[train])
    loader = DataLoader(
        tensors,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model = model.to(device)
    optimizer = make_optimizer(model.parameters(), config)
    started = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        for *xs, yb in loader:
            inputs = {m: t.to(device) for m, t in zip(modalities, xs, strict=True)}
            loss = F.cross_entropy(model(inputs)[JOINT], yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def train_flops_per_sample(
    model: torch.nn.Module, dataset: gdata.Dataset, batch: int = 64
) -> float:
    """Floating-point operations of one training step (forward and backward), per sample."""
    idx = torch.as_tensor(dataset.splits["train"][:batch])
    with FlopCounterMode(display=False) as counter:
        logits = model({m: t[idx] for m, t in dataset.x.items()})[JOINT]
        F.cross_entropy(logits, dataset.y[idx]).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(idx)


def matmul_gflops(device: str = "auto", size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a large dense matrix product: what this device can do at best in float32."""
    dev = resolve_device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    a @ b
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def throughput(
    dataset_name: str = "synthetic",
    runs: Sequence[int] = (1, 8, 32),
    epochs: int = 2,
    batch_size: int = 64,
    device: str = "auto",
    max_samples: int | None = None,
) -> pd.DataFrame:
    """Samples per second of the reference loop, our trainer and the batched trainer."""
    knobs = {"max_samples": max_samples} if max_samples else {}
    dataset = gdata.load(dataset_name, seed=0, **knobs)
    if dataset_name == "mfeat":
        dataset = dataset.select(gdata.MFEAT_DEFAULT_VIEWS)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, device=device)
    n_train = len(dataset.splits["train"])

    def model(seed: int) -> FusionNet:
        torch.manual_seed(seed)
        return FusionNet(dataset.specs, dataset.n_classes, ModelConfig())

    flops = train_flops_per_sample(model(0), dataset, batch_size)
    reference_loop(model(0), dataset, config)  # warm-up: first CUDA calls, allocator, caches
    rows = []

    def add(method: str, n_runs: int, seconds: float) -> None:
        rows.append(
            {
                "method": method,
                "runs": n_runs,
                "seconds": seconds,
                "samples_per_s": n_runs * n_train * epochs / seconds,
            }
        )

    add("reference loop (DataLoader, one model)", 1, reference_loop(model(0), dataset, config))
    trainer = Trainer(config).fit(
        model(0), dataset.x, dataset.y, dataset.splits, loss_weights={JOINT: 1.0}
    )
    add("gblend Trainer (data on device)", 1, trainer.train_seconds_)
    for n_runs in runs:
        batched = BatchedTrainer(config).fit(
            [model(s) for s in range(n_runs)],
            [RunData(dataset.x, dataset.y, dataset.splits)] * n_runs,
            list(range(n_runs)),
            {JOINT: 1.0},
        )
        add("gblend BatchedTrainer", n_runs, batched.train_seconds_)
    frame = pd.DataFrame(rows)
    reference = frame.samples_per_s.iloc[0]
    frame["ratio_to_reference"] = frame.samples_per_s / reference
    frame["gflops_per_s"] = frame.samples_per_s * flops / 1e9
    frame["dataset"] = dataset_name
    frame["n_train"] = n_train
    frame["epochs"] = epochs
    frame["batch_size"] = batch_size
    return frame


def grid_strategies(
    dataset_name: str = "synthetic", units: int = 4, epochs: int = 10, device: str = "auto"
) -> pd.DataFrame:
    """Wall time of a small grid (``units`` naive runs of the study modalities at cpu scale,
    differing in seed) trained each way the grid runner can spend the machine: one process
    with every thread, one single-thread process per core, and (one process) as one batch.
    Whole runs, evaluation included, in fresh result folders: what a grid costs."""
    from gblend import experiments as ex  # the bench of the trainers alone needs no grids

    grid = ex.EXPERIMENTS["table2"].grid(
        "cpu", dataset_name, seeds=units, epochs=epochs, device=device
    )
    study = max(len(u.modalities) for u in grid)
    todo = [u for u in grid if u.method == "naive" and len(u.modalities) == study]
    cores = os.cpu_count() or 1
    ways = [
        ("one process, every thread", 1, 1),
        (f"{cores} single-thread processes", cores, 1),
        (f"one process, batches of {units}", 1, units),
    ]
    rows = []
    for label, jobs, batch_runs in ways:
        with tempfile.TemporaryDirectory() as fresh:
            started = time.perf_counter()
            ex.run_grid(todo, fresh, progress=False, jobs=jobs, batch_runs=batch_runs)
            seconds = time.perf_counter() - started
        rows.append({"dataset": dataset_name, "way": label, "jobs": jobs,
                     "batch_runs": batch_runs, "units": len(todo), "epochs": epochs,
                     "seconds": seconds})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["speed_vs_one_process"] = frame.seconds.iloc[0] / frame.seconds
    return frame


def run_bench(
    datasets: Sequence[str] = ("synthetic", "avdigits"),
    runs: Sequence[int] = (1, 8, 32),
    epochs: int = 2,
    device: str = "auto",
    results_dir: str | None = None,
    notebooks: Sequence[Mapping[str, Any]] = (),
    strategies: bool = False,
) -> tuple[pd.DataFrame, Path]:
    """Measure every data set and write ``results/bench/<device>-<time>.json``.

    ``notebooks``: wall times of notebooks executed from scratch (``gblend bench
    --notebooks``), stored alongside; ``strategies``: also time :func:`grid_strategies`.
    """
    started = time.perf_counter()
    frame = pd.concat(
        [throughput(d, runs, epochs, device=device) for d in datasets], ignore_index=True
    )
    ways = (
        pd.concat([grid_strategies(d, device=device) for d in datasets], ignore_index=True)
        if strategies
        else pd.DataFrame()
    )
    resolved = str(resolve_device(device))
    info: dict[str, Any] = provenance(resolved)
    info |= {
        "matmul_gflops": matmul_gflops(device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - started,
    }
    path = bench_path(results_dir, info["device_name"])
    payload = {
        "provenance": info,
        "throughput": frame.to_dict("records"),
        "notebooks": [dict(n) for n in notebooks],
        "strategies": ways.to_dict("records"),
    }
    write_json_atomic(path, payload)
    return frame, path


def bench_path(results_dir: str | None, device_name: str, kind: str = "") -> Path:
    """``results/bench/<device>[-<kind>]-<UTC time>.json``, the device name made file-safe."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", device_name).strip("_") or "cpu"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    name = "-".join(part for part in (tag, kind, stamp) if part)
    return resolve_results_dir(results_dir) / "bench" / f"{name}.json"


def load_bench(results_dir: str | None = None, part: str = "throughput") -> pd.DataFrame:
    """Every committed bench result, one row per measurement, with its device.

    ``part``: ``throughput``, ``notebooks`` (wall times of notebooks run from scratch) or
    ``full_run`` (the phases of ``gblend full-run``).
    """
    frames = []
    for path in sorted((resolve_results_dir(results_dir) / "bench").glob("*.json")):
        payload = json.loads(path.read_text())
        frame = pd.DataFrame(payload.get(part, []))
        if frame.empty:
            continue
        frame["device"] = payload["provenance"]["device_name"]
        frame["device_type"] = payload["provenance"]["device"]
        frame["torch"] = payload["provenance"]["torch_version"]
        frame["matmul_gflops"] = payload["provenance"].get("matmul_gflops")
        frame["commit"] = payload["provenance"]["git_commit"][:12]
        frame["file"] = path.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def rerun_summary(reruns: pd.DataFrame) -> pd.DataFrame:
    """Per rerun comparison and data set: how many units, how many kept their best-val epoch,
    and how far the reported test accuracy (points) and the history's losses moved."""
    moved = reruns.assign(
        test_acc_points=reruns.test_acc_difference.abs() * 100,
        same_best_epoch=reruns.best_epoch_committed == reruns.best_epoch_rerun,
    )
    keys = ["file", "committed_on", "rerun_on", "dataset"]
    return (
        moved.groupby(keys, sort=False)
        .agg(
            units=("method", "size"),
            same_best_epoch=("same_best_epoch", "sum"),
            test_acc_points_median=("test_acc_points", "median"),
            test_acc_points_max=("test_acc_points", "max"),
            history_max_loss_difference=("history_max_loss_difference", "max"),
        )
        .reset_index()
    )


BATCHED = "gblend BatchedTrainer"
# The project's targets for batched training at 32 runs or more per batch: on a CPU at least
# 5 times the reference loop or 40% of the device's matmul ceiling, whichever is lower (the
# reference loop of a convolutional model may already run near the ceiling); on one GPU at
# least 20 times the reference loop.
THROUGHPUT_TARGETS = {"cpu": 5.0, "cuda": 20.0}
CPU_CEILING_SHARE = 0.4
# ... and for every notebook run from scratch, in seconds on 2 CPU cores.
NOTEBOOK_TARGETS_S = {"smoke": 600.0, "cpu": 600.0}


def throughput_targets(measured: pd.DataFrame) -> pd.DataFrame:
    """Every batched measurement at 32+ runs against the target for its kind of device."""
    batched = measured[(measured.method == BATCHED) & (measured.runs >= 32)]
    columns = ["device", "device_type", "commit", "dataset", "runs", "ratio_to_reference"]
    out = batched[columns].copy()
    out["share_of_matmul"] = batched.gflops_per_s / batched.matmul_gflops
    out["target"] = out.device_type.map(THROUGHPUT_TARGETS)
    on_cpu = out.device_type == "cpu"
    out["met"] = (out.ratio_to_reference >= out.target) | (
        on_cpu & (out.share_of_matmul >= CPU_CEILING_SHARE)
    )
    return out.reset_index(drop=True)


def notebook_totals(timings: pd.DataFrame) -> pd.DataFrame:
    """Wall time of all notebooks run from scratch, per device, commit and scale, against the
    target for that scale."""
    total = timings.groupby(["device", "commit", "scale"]).seconds.sum().rename("seconds")
    total = total.reset_index()
    total["target_s"] = total.scale.map(NOTEBOOK_TARGETS_S)
    total["met"] = total.seconds <= total.target_s
    return total


def full_run_phases(results_dir: str | None = None) -> pd.DataFrame:
    """The phases of every committed ``gblend full-run``, with a readable status."""
    phases = load_bench(results_dir, part="full_run")
    if phases.empty:
        return phases

    def status(row: pd.Series) -> str:
        if pd.isna(row.returncode):
            return "skipped" if row.seconds == 0 else "stopped at its limit"
        return "ok" if row.returncode == 0 else f"failed (exit {int(row.returncode)})"

    phases["status"] = phases.apply(status, axis=1)
    return phases[["device", "file", "name", "seconds", "limit_s", "status", "commit"]]
