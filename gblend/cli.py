"""Command line.

``gblend reproduce`` runs the notebooks through papermill into the book; ``gblend compute``
runs an experiment's grid without notebooks (e.g. on a GPU machine that has no papermill),
split over several processes, so that the notebooks later find every result cached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from gblend import __version__
from gblend.coursework.assignments import GRADING_TIMEOUT, PAGE_MODES
from gblend.fullrun import PHASES

SCALES = ("smoke", "cpu", "full")
LOG_NAME = "reproduce_log.json"


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


@dataclass
class RunRecord:
    notebook: str
    scale: str
    device: str
    seconds: float
    gblend_version: str
    started: str
    ok: bool
    error: str = ""


def find_repo_root(start: Path | None = None) -> Path:
    """Nearest directory at or above ``start`` (default: cwd) that holds ``_toc.yml``."""
    start = (start or Path.cwd()).resolve()
    for path in (start, *start.parents):
        if (path / "_toc.yml").is_file():
            return path
    raise CliError(
        f"no _toc.yml in {start} or any parent: run gblend inside the repository, "
        "or pass --notebooks-dir, --output-dir and --results-dir"
    )


def experiment_name(notebook: Path) -> str:
    """``table1_unimodal_vs_joint.ipynb`` -> ``table1`` (the stem's prefix)."""
    return notebook.stem.split("_", 1)[0]


def select_notebooks(notebooks_dir: Path, only: Sequence[str] | None) -> list[Path]:
    found = sorted(notebooks_dir.glob("*.ipynb"))
    if not found:
        raise CliError(f"no notebooks in {notebooks_dir}")
    if not only:
        return found
    known = {nb.stem for nb in found} | {experiment_name(nb) for nb in found}
    unknown = sorted(set(only) - known)
    if unknown:
        raise CliError(f"unknown --only {unknown}; known: {sorted(known)}")
    return [nb for nb in found if nb.stem in only or experiment_name(nb) in only]


def resolve_scale(scale: str, notebook: Path, results_dir: Path) -> str:
    """``published`` is ``full`` where every full-scale result of the notebook's experiments
    is in ``results_dir`` (so the book never trains at full scale on a CPU), ``cpu`` where no
    data set's is, and stays ``published`` in between: the page then shows each data set at
    the scale :func:`gblend.experiments.published_plan` gives it."""
    if scale != "published":
        return scale
    from gblend import experiments  # torch is heavy: import only when needed

    shown = experiments.for_notebook(notebook.stem)
    if not shown:  # a page without a grid of its own (the benchmark)
        return "cpu"
    names = [e.name for e in shown]
    plan = experiments.published_plan(names, str(results_dir))
    on_full = {d for name in names for d in experiments.scale_datasets(name, "full")}
    if all(plan.get(d) == "full" for d in on_full):
        return "full"
    return "published" if "full" in plan.values() else "cpu"


def run_notebook(
    notebook: Path, output: Path, scale: str, device: str, results_dir: str
) -> RunRecord:
    # Imported here so that `gblend --help` works without the [book] extra.
    import papermill

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters={"scale": scale, "device": device, "results_dir": results_dir},
            # The venv's own kernel: no kernel registration needed (design §6).
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
        )
        hide_parameter_cells(output)
    except Exception as exc:  # any failure: record it and go on with the other notebooks
        error = _describe(exc)
    return RunRecord(
        notebook=notebook.name,
        scale=scale,
        device=device,
        seconds=round(time.perf_counter() - t0, 2),
        gblend_version=__version__,
        started=started,
        ok=not error,
        error=error,
    )


PARAMETER_TAGS = ("parameters", "injected-parameters")


def hide_parameter_cells(path: Path) -> None:
    """Tag the parameters cell and papermill's injected one ``remove-cell``: a page states its
    scale, seeds, devices and commit in one glued line instead of raw parameter cells."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if any(t in PARAMETER_TAGS for t in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def _describe(exc: Exception) -> str:
    """One line: papermill's own message starts with a blank line and a full traceback."""
    if hasattr(exc, "ename") and hasattr(exc, "evalue"):  # PapermillExecutionError
        return f"{exc.ename}: {exc.evalue} (cell In[{getattr(exc, 'exec_count', '?')}])"
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


def write_log(path: Path, records: list[RunRecord]) -> None:
    """Merge into an existing log so a partial rerun (``--only``) keeps the other entries."""
    entries: dict[str, dict] = {}
    if path.is_file():
        try:
            entries = {e["notebook"]: e for e in json.loads(path.read_text())["runs"]}
        except (ValueError, KeyError, TypeError):
            entries = {}  # an unreadable old log is replaced, not fatal
    entries.update({r.notebook: asdict(r) for r in records})
    payload = {"runs": [entries[k] for k in sorted(entries)]}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def cmd_reproduce(args: argparse.Namespace) -> int:
    def default(given: str | None, relative: str) -> Path:
        return Path(given) if given else find_repo_root() / relative

    notebooks_dir = default(args.notebooks_dir, "notebooks")
    output_dir = default(args.output_dir, "book/generated")
    results_dir = default(args.results_dir, "results")
    # "" lets each notebook fall back to the package's default results location.
    results_param = str(results_dir.resolve()) if args.results_dir else ""

    notebooks = select_notebooks(notebooks_dir, args.only)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for nb in notebooks:
        scale = resolve_scale(args.scale, nb, results_dir)
        print(f"{nb.name}: scale={scale} device={args.device} ...", flush=True)
        record = run_notebook(nb, output_dir / nb.name, scale, args.device, results_param)
        status = "ok" if record.ok else f"FAILED ({record.error})"
        print(f"{nb.name}: scale={scale} {record.seconds:.1f} s {status}", flush=True)
        records.append(record)
        write_log(output_dir / LOG_NAME, [record])  # after each: a stopped run keeps its times

    from gblend.coursework import pages as coursework_pages

    pages = coursework_pages.write_pages(
        find_repo_root(), results_dir, output_dir / "coursework", args.coursework
    )
    print(f"coursework: {len(pages)} pages ({args.coursework})", flush=True)
    failed = [r.notebook for r in records if not r.ok]
    if failed:
        print(f"error: notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from gblend.coursework import grading
    from gblend.coursework.assignments import ASSIGNMENTS

    if args.assignment not in ASSIGNMENTS:
        raise CliError(f"unknown assignment {args.assignment!r}; valid: {', '.join(ASSIGNMENTS)}")
    path = Path(args.notebook)
    if path.is_dir():
        if args.student_id is not None:
            raise CliError("--student-id grades one notebook; a folder's ids are its file names")
        try:
            grades, rows = grading.grade_folder(
                args.assignment, path, timeout=args.timeout, jobs=args.jobs
            )
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from None
    elif path.is_file():
        grades = [grading.grade(args.assignment, path, args.student_id, timeout=args.timeout)]
        rows = [grading.row(grades[0])]
    else:
        raise CliError(f"no notebook or folder at {path}")
    for g in grades:
        print("\n".join(g.lines()), flush=True)
    if args.csv:
        grading.write_csv(rows, Path(args.csv))
        print(f"wrote {args.csv}")
    return 0


def cmd_coursework(args: argparse.Namespace) -> int:
    from gblend.coursework import pages, student
    from gblend.coursework.assignments import ASSIGNMENTS

    root = Path(args.root) if args.root else find_repo_root()
    if args.action == "generate":
        differing = student.generate(root, check=args.check)
        for path in differing:
            print(f"{'differs' if args.check else 'wrote'}: {path.relative_to(root)}")
        if args.check and differing:
            print("error: student versions are stale; run: gblend coursework generate",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    if args.action == "time":
        names = args.only or list(ASSIGNMENTS)
        unknown = [n for n in names if n not in ASSIGNMENTS]
        if unknown:
            raise CliError(f"unknown assignments {unknown}; valid: {', '.join(ASSIGNMENTS)}")
        pages.time_solutions(root, root / "results", names)
        return 0
    written = pages.write_pages(root, root / "results", root / "book/generated/coursework",
                                args.mode)  # fmt: skip
    print(f"wrote {len(written)} pages ({args.mode})")
    return 0


def cmd_compute(args: argparse.Namespace) -> int:
    from gblend import experiments  # torch is heavy: import only for this command

    started = time.perf_counter()
    unknown = [n for n in args.experiments if n not in experiments.EXPERIMENTS]
    if unknown:
        raise CliError(
            f"unknown experiment {unknown[0]!r}; valid: {', '.join(experiments.EXPERIMENTS)}"
        )
    entries = [experiments.EXPERIMENTS[name] for name in args.experiments]
    plan = experiments.execution_plan(args.device, args.jobs, args.batch_runs)
    settings = {"datasets": args.datasets or None, "device": args.device}
    results_dir = args.results_dir or None

    def searches():
        return [e.search_grid(args.scale, **settings) for e in entries if e.select]

    def grids():  # after the searches: an experiment that selects builds its grid from them
        return [e.grid(args.scale, results_dir=results_dir, **settings) for e in entries]

    for what, make_grids in (("searches", searches), ("runs", grids)):
        # the union of the experiments' grids; units they share (e.g. naive runs) run once
        by_config: dict[str, experiments.Unit] = {}
        try:
            for grid in make_grids():
                for unit in grid:
                    key = json.dumps(unit.config(), sort_keys=True, default=str)
                    by_config.setdefault(key, unit)
        except experiments.GridError as exc:
            raise CliError(str(exc)) from None
        if not by_config:
            continue
        units = list(by_config.values())
        todo = len(experiments.missing(units, results_dir))
        print(
            f"{' '.join(args.experiments)} {args.scale} {what}: {len(units)} runs, {todo} to "
            f"train; {plan.jobs} processes x {plan.threads} threads, batches of "
            f"{plan.batch_runs} ({plan.reason})",
            flush=True,
        )
        experiments.run_grid(
            units,
            results_dir,
            progress=not args.quiet,
            jobs=plan.jobs,
            batch_runs=plan.batch_runs,
        )
    print(f"done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from gblend import bench  # torch is heavy: import only for this command

    timings = []
    if args.notebooks:
        notebooks = select_notebooks(find_repo_root() / "notebooks", None)
        for scale in args.notebooks:
            # a fresh results folder, so that every notebook computes its runs
            with tempfile.TemporaryDirectory() as tmp:
                if args.keep_results:
                    tmp = str(Path(args.keep_results) / scale)
                    if Path(tmp).exists() and any(Path(tmp).iterdir()):
                        raise CliError(f"--keep-results: {tmp} is not empty")
                    Path(tmp).mkdir(parents=True, exist_ok=True)
                for nb in notebooks:
                    record = run_notebook(nb, Path(tmp) / nb.name, scale, args.device, tmp)
                    print(
                        f"{nb.name}: scale={scale} {record.seconds:.1f} s "
                        f"{'ok' if record.ok else record.error}",
                        flush=True,
                    )
                    timings.append(asdict(record))
    frame, path = bench.run_bench(
        datasets=[d for d in args.datasets.split(",") if d],
        runs=args.runs,
        epochs=args.epochs,
        device=args.device,
        results_dir=args.results_dir or None,
        notebooks=timings,
        strategies=args.strategies,
    )
    columns = ["dataset", "method", "runs", "seconds", "samples_per_s", "ratio_to_reference"]
    print(frame[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"written to {path}")
    return 0


def cmd_rerun_check(args: argparse.Namespace) -> int:
    from gblend.bench import bench_path  # torch is heavy: import only for this command
    from gblend.experiments.rerun import compare_folders, rerun_check
    from gblend.results import provenance, write_json_atomic

    started = time.perf_counter()
    results_dir = args.results_dir or None
    try:
        if args.against:
            frame = compare_folders(args.against, args.scale, results_dir=results_dir)
        else:
            frame = rerun_check(args.experiment, args.scale, results_dir=results_dir)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    columns = ["dataset", "method", "best_epoch_committed", "best_epoch_rerun",
               "test_acc_difference", "history_max_loss_difference"]  # fmt: skip
    print(frame[columns].to_string(index=False, float_format=lambda v: f"{v:.2g}"))
    info = provenance("cpu") | {"seconds": round(time.perf_counter() - started, 1)}
    path = bench_path(args.results_dir or None, info["cpu_model"], "rerun")
    write_json_atomic(path, {"provenance": info, "rerun": frame.to_dict("records")})
    print(f"written to {path}")
    return 0


def cmd_full_run(args: argparse.Namespace) -> int:
    from gblend.fullrun import full_run

    if args.budget <= 0 or args.jobs < 1:
        raise CliError("--budget must be positive and --jobs at least 1")
    full_run(
        Path(args.out),
        args.budget,
        args.jobs,
        args.device,
        repo=find_repo_root(),
        phases_to_run=tuple(args.phases),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gblend", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gblend {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser(
        "reproduce",
        help="execute notebooks/*.ipynb with papermill into book/generated/",
        description="Execute notebooks/*.ipynb with papermill into book/generated/.",
    )
    rep.add_argument(
        "--scale",
        choices=(*SCALES, "published"),
        default="published",
        help="smoke: seconds (tests); cpu: minutes per notebook; full: one GPU; "
        "published: each data set at full where results/ holds its full-scale results, "
        "else at cpu (default)",
    )
    rep.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="notebook stems or experiment names (the stem's prefix, e.g. table1)",
    )
    rep.add_argument(
        "--device", default="auto", help="torch device for the notebooks (default: auto)"
    )
    rep.add_argument("--results-dir", help="results root (default: <repo>/results)")
    rep.add_argument("--output-dir", help="executed notebooks (default: <repo>/book/generated)")
    rep.add_argument("--notebooks-dir", help="notebook templates (default: <repo>/notebooks)")
    rep.add_argument(
        "--coursework",
        choices=PAGE_MODES,
        default="solutions",
        help="the coursework pages show the solutions (default) or, for a course, only the "
        "student versions",
    )
    rep.set_defaults(func=cmd_reproduce)

    grd = sub.add_parser(
        "grade",
        help="autograde a coursework notebook, or a folder of them into a CSV",
        description="Execute a submission at smoke scale (papermill) and run its assignment's "
        "checks; print the score and one line of feedback per check. Given a folder, grade "
        "every *.ipynb in it, each as the student its file name names.",
    )
    grd.add_argument("assignment", help="a1, a2, a3 or a4")
    grd.add_argument("notebook", help="a notebook, or a folder of notebooks")
    grd.add_argument(
        "--student-id",
        default=None,
        help="grade as this student (default: the notebook's own student_id; for a folder, "
        "each file's name)",
    )
    grd.add_argument("--csv", default="", help="write one row per notebook to this CSV file")
    grd.add_argument(
        "--timeout",
        type=int,
        default=GRADING_TIMEOUT,
        help=f"seconds a cell may run (default: {GRADING_TIMEOUT})",
    )
    grd.add_argument(
        "--jobs", type=int, default=1, help="a folder: grade this many notebooks at a time"
    )
    grd.set_defaults(func=cmd_grade)

    cw = sub.add_parser(
        "coursework",
        help="student versions, timings and pages of the coursework",
        description="generate: write the student versions from the solutions (--check: only "
        "compare, exit 1 if any differs); time: execute the solutions at cpu scale and keep "
        "them under results/coursework/; pages: write the book's coursework pages.",
    )
    cw.add_argument("action", choices=("generate", "time", "pages"))
    cw.add_argument("--check", action="store_true", help="generate: compare, write nothing")
    cw.add_argument("--only", nargs="+", metavar="NAME", help="time: these assignments")
    cw.add_argument("--mode", choices=PAGE_MODES, default=PAGE_MODES[0], help="pages: what to show")
    cw.add_argument("--root", default="", help="the repository (default: the one around here)")
    cw.set_defaults(func=cmd_coursework)

    comp = sub.add_parser(
        "compute",
        help="run an experiment's grid (no notebooks), optionally in parallel processes",
        description="Run an experiment's grid into the results folder; finished units are "
        "skipped, so this can be resumed and the notebooks then only read results.",
    )
    comp.add_argument("experiments", nargs="+", help="experiment names, e.g. table1 table2")
    comp.add_argument("--scale", choices=SCALES, default="cpu")
    comp.add_argument("--datasets", default="", help="comma-separated data sets (default: all)")
    comp.add_argument("--device", default="auto", help="torch device (default: auto)")
    comp.add_argument("--results-dir", default="", help="results root (default: <repo>/results)")
    comp.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="parallel processes (default 0: one single-thread process per core on a CPU, "
        "one on a GPU)",
    )
    comp.add_argument(
        "--batch-runs",
        type=int,
        default=0,
        help="train up to this many runs that differ only in seed as one stacked model "
        "(naive and equal-weight runs; default 0: 1 on a CPU, 8 on a GPU)",
    )
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=cmd_compute)

    ben = sub.add_parser(
        "bench",
        help="training throughput: a typical DataLoader loop vs our trainers (batched too)",
        description="Measure training throughput (samples/s) of a typical PyTorch loop, "
        "gblend's Trainer and its BatchedTrainer side by side; write results/bench/.",
    )
    ben.add_argument("--datasets", default="synthetic,avdigits", help="comma-separated")
    ben.add_argument(
        "--runs",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="batch sizes in runs for the batched trainer (default: 1 8 32)",
    )
    ben.add_argument("--epochs", type=int, default=2)
    ben.add_argument("--device", default="auto", help="torch device (default: auto)")
    ben.add_argument("--results-dir", default="", help="results root (default: <repo>/results)")
    ben.add_argument(
        "--notebooks",
        nargs="*",
        choices=SCALES,
        default=[],
        help="also time every notebook from scratch at these scales (e.g. smoke)",
    )
    ben.add_argument(
        "--strategies",
        action="store_true",
        help="also time a small grid run each way the runner can spend the machine "
        "(processes, threads, batches)",
    )
    ben.add_argument(
        "--keep-results",
        default="",
        help="with --notebooks: compute into DIR/<scale> and keep it (default: a temporary "
        "folder), e.g. to read the compute overhead of the runs",
    )
    ben.set_defaults(func=cmd_bench)

    rer = sub.add_parser(
        "rerun-check",
        help="retrain a sample of committed units here and compare them with the committed ones",
        description="Retrain, per data set, the seed-0 naive and offline G-Blend runs of an "
        "experiment's committed grid in a temporary folder and compare them with the committed "
        "records (best epoch, test accuracy, largest history difference); the comparison goes "
        "to results/bench/<cpu>-rerun-<time>.json and the benchmark page.",
    )
    rer.add_argument("--experiment", default="table2")
    rer.add_argument("--scale", choices=SCALES, default="cpu")
    rer.add_argument(
        "--against",
        default="",
        help="retrain nothing: compare every committed unit of the scale with the results in "
        "DIR (e.g. from gblend bench --notebooks cpu --keep-results DIR, at DIR/cpu)",
    )
    rer.add_argument("--results-dir", default="", help="results root (default: <repo>/results)")
    rer.set_defaults(func=cmd_rerun_check)

    full = sub.add_parser(
        "full-run",
        help="on a GPU: benchmark, full-scale grids and notebooks within a time budget",
        description="Benchmark, compute every full-scale grid (resuming) and execute the "
        "notebooks within --budget seconds; everything to commit goes under --out "
        "(see scripts/gpu_full_scale.sh).",
    )
    full.add_argument("--out", required=True, help="folder for results/ and notebooks/")
    full.add_argument("--budget", type=float, default=540.0, help="seconds in all (540)")
    full.add_argument("--jobs", type=int, default=14, help="parallel processes (default: 14)")
    full.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    full.add_argument(
        "--phases", nargs="+", choices=PHASES, default=list(PHASES), help="(default: all)"
    )
    full.set_defaults(func=cmd_full_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"gblend: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
