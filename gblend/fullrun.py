"""``gblend full-run``: the full-scale results, a GPU benchmark and the notebooks in one call.

A GPU is lent for minutes at a time, so one command does everything within a time budget and
writes everything worth committing under one folder (``--out``): the result files
(``results/``, a copy of the committed ones plus the new ones), the executed notebooks and
a log of each phase (``results/bench/<device>-full-run-<time>.json``: command, seconds, exit
status, and how many units of each grid were missing before and after). Phases, in order:

1. ``bench``: ``gblend bench`` on the GPU (1, 8, 32, 128 runs per batch), per data set;
2. ``compute``: every experiment's grid at ``full`` scale (the tables, the baselines, the
   sweeps, then Figure 5), longest units first, in parallel processes;
3. ``notebooks``: ``gblend reproduce --scale published`` on the results (full where complete).

A phase that would overrun the budget is stopped; finished units are already on disk
(each is written atomically), so the next call resumes where this one stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DATASETS = ("synthetic", "avdigits")
PHASES = ("bench", "compute", "notebooks")
# Every registered experiment, the tables first; the sweeps (testbed, regime map, estimator)
# before Figure 5, whose probed runs cost the most.
COMPUTE_GROUPS = (
    ("table1", "figure3", "table2", "table4", "figure6"),
    ("figure1", "mid_fusion", "lmf_fusion", "cross_terms", "table5", "table3"),
    ("calibration", "schedule", "dose_response", "regime", "degraded", "regime_width"),
    ("estimator", "estimator_testbed"),
    ("figure5",),
)
EXPERIMENTS = tuple(e for group in COMPUTE_GROUPS for e in group)


@dataclass
class Phase:
    name: str
    command: list[str]
    seconds: float
    returncode: int | None  # None: stopped at its time limit, or skipped (seconds 0)
    limit_s: float


def run_phase(name: str, command: list[str], limit_s: float) -> Phase:
    """Run a command in its own process group; stop the whole group at ``limit_s``."""
    if limit_s < 5:
        print(f"[full-run] {name}: skipped, no time left", flush=True)
        return Phase(name, command, 0.0, None, round(limit_s, 1))
    print(f"[full-run] {name}: {' '.join(command)} (limit {limit_s:.0f} s)", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(command, start_new_session=True)
    try:
        code: int | None = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        code = None
    seconds = time.perf_counter() - started
    print(f"[full-run] {name}: {seconds:.1f} s, exit {code}", flush=True)
    return Phase(name, command, round(seconds, 2), code, round(limit_s, 1))


def missing_counts(results_dir: Path) -> dict[str, int]:
    """Units to train per experiment at full; for one that selects on val, its search's and,
    before the search is done, every setting's (the most its grid can hold)."""
    from gblend import experiments

    counts = {}
    for name in EXPERIMENTS:
        entry = experiments.EXPERIMENTS[name]
        grids = [entry.search_grid("full")] if entry.select else []
        try:
            grids.append(entry.grid("full", results_dir=str(results_dir)))
        except experiments.GridError:
            grids.append(entry.grid("full", selected=False))
        counts[name] = sum(len(experiments.missing(g, str(results_dir))) for g in grids)
    return counts


def full_run(
    out: Path,
    budget_s: float = 540.0,
    jobs: int = 14,
    device: str = "cuda",
    bench_limit_s: float = 60.0,
    notebook_reserve_s: float = 90.0,
    repo: Path | None = None,
    phases_to_run: tuple[str, ...] = PHASES,
) -> Path:
    """Run the phases within ``budget_s`` seconds; return the path of the phase log."""
    from gblend.bench import bench_path  # torch: not for `gblend --help`
    from gblend.results import provenance, write_json_atomic

    unknown = set(phases_to_run) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; valid: {', '.join(PHASES)}")
    started = time.perf_counter()
    repo = repo or Path.cwd()
    results = out / "results"
    if not results.exists():
        shutil.copytree(repo / "results", results)
    gblend = [sys.executable, "-m", "gblend"]
    # counting loads every data set (for its fingerprint): only worth it when computing
    counting = "compute" in phases_to_run
    before = missing_counts(results) if counting else {}
    phases = []

    def left() -> float:
        return budget_s - (time.perf_counter() - started)

    if "notebooks" not in phases_to_run:
        notebook_reserve_s = 0.0
    for dataset in BENCH_DATASETS if "bench" in phases_to_run else ():  # one file each
        phases.append(
            run_phase(
                f"bench {dataset}",
                [
                    *gblend,
                    "bench",
                    "--device",
                    device,
                    "--datasets",
                    dataset,
                    "--runs",
                    "1",
                    "8",
                    "32",
                    "128",
                    "--results-dir",
                    str(results),
                ],
                min(bench_limit_s, left() - notebook_reserve_s),
            )
        )
    # The tables first: Figure 5's probed runs cost the most, so with little time they would
    # hold every process while no table completes.
    for group in COMPUTE_GROUPS if "compute" in phases_to_run else ():
        phases.append(
            run_phase(
                f"compute {' '.join(group)}",
                [
                    *gblend,
                    "compute",
                    *group,
                    "--scale",
                    "full",
                    "--device",
                    device,
                    "--jobs",
                    str(jobs),
                    "--batch-runs",
                    "5",
                    "--results-dir",
                    str(results),
                    "--quiet",
                ],
                left() - notebook_reserve_s,
            )
        )
    if "notebooks" in phases_to_run:
        phases.append(
            run_phase(
                "notebooks",
                [
                    *gblend,
                    "reproduce",
                    "--scale",
                    "published",
                    "--device",
                    device,
                    "--results-dir",
                    str(results),
                    "--output-dir",
                    str(out / "notebooks"),
                ],
                left(),
            )
        )
    info = provenance(device)
    log = out / "notebooks" / "reproduce_log.json"
    payload = {
        "provenance": info | {"jobs": jobs, "budget_s": budget_s},
        "full_run": [asdict(p) for p in phases],
        "missing_before": before,
        "missing_after": missing_counts(results) if counting else {},
        "notebooks_from_results": json.loads(log.read_text())["runs"] if log.is_file() else [],
    }
    path = bench_path(str(results), info.get("device_name") or device, "full-run")
    write_json_atomic(path, payload)
    print(f"[full-run] {time.perf_counter() - started:.1f} s in all; log {path}", flush=True)
    return path
