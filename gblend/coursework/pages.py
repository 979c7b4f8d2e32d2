"""The book's coursework part, made from the notebooks: each assignment's page (the solution
with its code in collapsed cells and its answers in dropdowns, or, with the switch off, the
student version), an index with the measured time of each, and the timing run itself.

``gblend coursework time`` executes every solution at its default scale (``cpu``) and keeps
the executed notebook and its wall time, with provenance, under ``results/coursework/``; a
page shows those outputs only while the solution is unchanged since (its hash matches).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

from gblend.coursework.assignments import ASSIGNMENTS, PAGE_MODES, Assignment
from gblend.coursework.student import ANSWER_TAG, has_solution, render
from gblend.results import provenance

TIMINGS = "timings.json"
RESULTS_SUBDIR = "coursework"
HIDE_INPUT = "hide-input"


def solution_hash(root: Path, assignment: Assignment) -> str:
    return hashlib.sha256((root / assignment.solution).read_bytes()).hexdigest()[:16]


def time_solutions(root: Path, results: Path, names: list[str], scale: str = "cpu") -> dict:
    """Execute each named solution at ``scale`` in a scratch copy of its folder; keep the
    executed notebook and its wall time under ``results/coursework/``."""
    import os
    import tempfile

    import papermill

    out = results / RESULTS_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    timings = load_timings(results)
    for name in names:
        assignment = ASSIGNMENTS[name]
        with tempfile.TemporaryDirectory(prefix=f"gblend-{name}-") as work:
            t0 = time.perf_counter()
            papermill.execute_notebook(
                str(root / assignment.solution),
                str(out / assignment.notebook),
                parameters={"scale": scale, "results_dir": str(Path(work) / "results")},
                kernel_name="python3",
                cwd=work,
                progress_bar=False,
            )
            seconds = time.perf_counter() - t0
        timings[name] = {
            "notebook": assignment.notebook,
            "scale": scale,
            "seconds": round(seconds, 1),
            "solution_sha256": solution_hash(root, assignment),
            "cores": os.cpu_count(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **provenance("cpu"),
        }
        (out / TIMINGS).write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")
        print(f"{name}: {seconds:.0f} s at scale {scale}", flush=True)
    return timings


def load_timings(results: Path) -> dict[str, Any]:
    path = results / RESULTS_SUBDIR / TIMINGS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _timing_line(record: dict[str, Any] | None, current: bool) -> str:
    if record is None:
        return "*Not yet timed: run `gblend coursework time` to measure it.*"
    minutes = record["seconds"] / 60
    line = (
        f"*Measured: the solution ran top to bottom in {minutes:.1f} min at scale "
        f"`{record['scale']}` on {record['cpu_model']} ({record['cores']} cores), "
        f"gblend {record['gblend_version']} at commit {record['git_commit'][:12]}, torch "
        f"{record['torch_version']}, {record['finished'][:10]}.*"
    )
    if not current:
        line += " *The solution has changed since, so its outputs are not shown here.*"
    return line


def _solution_page(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Solution code collapsed, answers in dropdowns: a reader opens what they want to see."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and has_solution(cell):
            tags = cell.metadata.setdefault("tags", [])
            if HIDE_INPUT not in tags:
                tags.append(HIDE_INPUT)
        elif cell.cell_type == "markdown" and ANSWER_TAG in cell.metadata.get("tags", []):
            cell.source = f":::{{dropdown}} An answer\n{cell.source}\n:::"
    return nb


def _strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def write_pages(root: Path, results: Path, out: Path, mode: str = "solutions") -> list[Path]:
    """Write the coursework pages (and their index) into ``out``."""
    if mode not in PAGE_MODES:
        raise ValueError(f"unknown coursework mode {mode!r}; valid: {', '.join(PAGE_MODES)}")
    out.mkdir(parents=True, exist_ok=True)
    timings = load_timings(results)
    rows, written = [], []
    for name, assignment in ASSIGNMENTS.items():
        record = timings.get(name)
        current = record is not None and record["solution_sha256"] == solution_hash(
            root, assignment
        )
        executed = results / RESULTS_SUBDIR / assignment.notebook
        if mode == "student":
            nb = nbformat.read(root / assignment.student, as_version=4)
        else:
            source = executed if current and executed.exists() else root / assignment.solution
            nb = _solution_page(nbformat.read(source, as_version=4))
            if not current:
                nb = _strip_outputs(nb)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(_timing_line(record, current)))
        nb.cells[1].id = f"{name}-timing"
        target = out / assignment.notebook
        target.write_text(render(nb), encoding="utf-8")
        written.append(target)
        minutes = f"{record['seconds'] / 60:.1f} min" if record else "not yet timed"
        rows.append(
            f"| {{doc}}`{assignment.title} <{Path(assignment.notebook).stem}>` | {minutes} |"
        )
    shown = (
        "Each page shows the solution: its code in collapsed cells (*Show code cell source*) "
        "and its answers in dropdowns."
        if mode == "solutions"
        else "This build shows the student versions: no solutions."
    )
    index = "\n".join(
        [
            "# Coursework",
            "",
            "Four assignments on the study's harness, for students on a laptop CPU, without "
            "a GPU. Each is a notebook; students get a version without the solutions, "
            "generated from the solution notebook, and an autograder checks what they hand "
            "in (see the {doc}`instructor page </book/coursework/instructor>`).",
            "",
            shown,
            "",
            "| assignment | solution's CPU time at its default scale |",
            "|---|---|",
            *rows,
            "",
        ]
    )
    (out / "index.md").write_text(index, encoding="utf-8")
    return [out / "index.md", *written]
