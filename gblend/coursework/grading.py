"""The autograder: execute a submission (papermill, at smoke scale where it trains), then run
its assignment's checks in the same kernel, on the names the notebook defined.

A cell that raises does not stop the notebook (later cells and the checks still run, so a
submission keeps the marks of what works); a cell that runs past the time limit is
interrupted. Each check's result is written as soon as it is known, so a check that hangs
or a kernel that dies loses only the checks not yet run.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from gblend.coursework.assignments import GRADING_TIMEOUT, StudentSetup, get, setup

GRADING_TAG = "grading"
GRADING_SCALE = "smoke"
# cells papermill adds to an executed notebook (parameters, error markers)
PAPERMILL_TAGS = ("injected-parameters", "papermill-error-cell-tag")


@dataclass(frozen=True)
class Check:
    """One graded behaviour. ``run`` gets the notebook's names and the student's setup and
    returns ``None`` when the behaviour is right, else one line of feedback (or raises)."""

    name: str
    marks: int
    what: str
    run: Callable[[Mapping[str, Any], StudentSetup], str | None]


CHECKS: dict[str, list[Check]] = {}


def check(assignment: str, marks: int, what: str):
    """Register a check of ``assignment`` (used by :mod:`gblend.coursework.checks`)."""

    def register(fn: Callable[[Mapping[str, Any], StudentSetup], str | None]):
        CHECKS.setdefault(assignment, []).append(Check(fn.__name__, marks, what, fn))
        return fn

    return register


def checks_of(assignment: str) -> list[Check]:
    import gblend.coursework.checks  # noqa: F401  (registers the checks)

    get(assignment)
    return CHECKS[assignment]


@dataclass
class CheckResult:
    name: str
    marks: int
    earned: int
    feedback: str


def _feedback(error: BaseException) -> str:
    if isinstance(error, NotImplementedError):
        return "not implemented yet"
    if isinstance(error, KeyboardInterrupt):
        return "stopped: it ran past the time limit"
    if isinstance(error, MissingName):
        return f"the notebook defines no {error.args[0]!r}"
    return f"raised {type(error).__name__}: {error}"


class MissingName(Exception):
    """A name a check needs that the notebook never defined (told apart from a KeyError
    raised inside the student's own code)."""


class _Names(Mapping):
    """The notebook's names, as the checks read them."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace

    def __getitem__(self, name: str) -> Any:
        if name not in self._namespace:
            raise MissingName(name)
        return self._namespace[name]

    def __contains__(self, name: object) -> bool:
        return name in self._namespace

    def __iter__(self):
        return iter(self._namespace)

    def __len__(self) -> int:
        return len(self._namespace)


class CheckTimeout(Exception):
    """A check (in fact the student's code it called) ran past its time limit."""


def _stop(signum: int, frame: Any) -> None:
    raise CheckTimeout


def report(assignment: str, namespace: Mapping[str, Any], path: str, seconds: int) -> None:
    """Run the checks in the submission's kernel, each for at most ``seconds`` (where the
    platform has alarms); write the results to ``path`` after each."""
    student = setup(assignment, str(namespace.get("student_id", "")), GRADING_SCALE)
    names = _Names(namespace)
    alarms = hasattr(signal, "SIGALRM")
    if alarms:
        signal.signal(signal.SIGALRM, _stop)
    results: list[dict[str, Any]] = []
    for item in checks_of(assignment):
        try:
            if alarms:
                signal.alarm(seconds)
            problem = item.run(names, student)
        except CheckTimeout:
            problem = f"stopped: it ran past {seconds} s"
        except BaseException as error:  # a student's code may raise anything
            problem = _feedback(error)
        finally:
            if alarms:
                signal.alarm(0)
        earned = item.marks if problem is None else 0
        results.append(asdict(CheckResult(item.name, item.marks, earned, problem or "ok")))
        Path(path).write_text(json.dumps(results), encoding="utf-8")
    print(f"{sum(r['earned'] for r in results)} / {sum(r['marks'] for r in results)}")


@dataclass
class Grade:
    """The grade of one submission: its checks, the errors its cells raised, its run time."""

    assignment: str
    notebook: str
    student_id: str
    checks: list[CheckResult]
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> int:
        return sum(c.earned for c in self.checks)

    @property
    def total(self) -> int:
        return sum(c.marks for c in self.checks)

    def lines(self) -> list[str]:
        who = f" (student {self.student_id})" if self.student_id else ""
        out = [f"{self.notebook}{who}: {self.score} / {self.total}"]
        out += [f"  [{c.earned}/{c.marks}] {c.name}: {c.feedback}" for c in self.checks]
        out += [f"  error: {e}" for e in self.errors]
        return out


def _grading_cell(assignment: str, path: Path, seconds: int) -> nbformat.NotebookNode:
    source = (
        "from gblend.coursework import grading as _grading\n"
        f"_grading.report({assignment!r}, globals(), {str(path)!r}, {seconds})"
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [GRADING_TAG]
    return cell


def notebook_student_id(notebook: Path) -> str:
    """The ``student_id`` a notebook's parameters cell sets ("" if none)."""
    import papermill

    found = papermill.inspect_notebook(str(notebook)).get("student_id")
    if not found:
        return ""
    return str(found.get("default", "")).strip().strip("'\"")


def _cell_errors(nb: nbformat.NotebookNode, timeout: int) -> list[str]:
    """One line per cell that raised: its number (from 1) and first line, and the error."""
    errors, number = [], 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if {GRADING_TAG, *PAPERMILL_TAGS} & set(tags):
            continue  # numbered as the student's notebook is, without the added cells
        number += 1
        first = next((line for line in cell.source.splitlines() if line.strip()), "")[:50]
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if out.get("ename") in ("KeyboardInterrupt", "TimeoutError"):
                what = f"stopped: it ran past the time limit of a cell ({timeout} s)"
            else:
                what = f"{out.get('ename')}: {out.get('evalue')}"
            errors.append(f"cell {number} ({first}): {what}")
    return errors


def grade(
    assignment: str,
    notebook: Path,
    student_id: str | None = None,
    timeout: int = GRADING_TIMEOUT,
    keep: Path | None = None,
) -> Grade:
    """Execute ``notebook`` as ``student_id`` (default: the id its parameters cell sets) at
    smoke scale in a scratch folder, then grade it. ``keep``: write the executed notebook there.
    """
    import papermill

    checks = checks_of(assignment)
    notebook = Path(notebook)
    sid = notebook_student_id(notebook) if student_id is None else student_id
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gblend-grade-") as scratch:
        work = Path(scratch)
        results = work / "checks.json"
        nb = nbformat.read(notebook, as_version=4)
        nb.cells.append(_grading_cell(assignment, results, timeout))
        source = work / "submission.ipynb"
        nbformat.write(nb, source)
        executed = keep or work / "executed.ipynb"
        problem = ""
        try:
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters={
                    "scale": GRADING_SCALE,
                    "student_id": sid,
                    "results_dir": str(work / "results"),
                },
                kernel_name="python3",
                cwd=str(work),
                progress_bar=False,
                execution_timeout=timeout,
                # the grading cell runs every check, each for up to `timeout`
                timeout_func=lambda cell: (
                    timeout * (len(checks) + 1)
                    if GRADING_TAG in cell.metadata.get("tags", [])
                    else timeout
                ),
                allow_errors=True,
                interrupt_on_timeout=True,
                error_on_timeout={
                    "ename": "TimeoutError",
                    "evalue": f"the cell ran past {timeout} s and was stopped",
                    "traceback": [],
                },
            )
        except papermill.PapermillExecutionError:
            pass  # the cells' errors are read from the executed notebook below
        except Exception as error:  # no kernel, unreadable notebook, ...
            problem = f"the notebook could not be executed: {type(error).__name__}: {error}"
        errors = [problem] if problem else []
        if executed.exists():
            errors += _cell_errors(nbformat.read(executed, as_version=4), timeout)
        found = json.loads(results.read_text()) if results.exists() else []
    done = {r["name"]: CheckResult(**r) for r in found}
    never = "the checks did not get to run (see the errors)"
    graded = [done.get(c.name) or CheckResult(c.name, c.marks, 0, never) for c in checks]
    return Grade(assignment, notebook.name, sid, graded, errors, time.perf_counter() - started)


def grade_folder(
    assignment: str, folder: Path, timeout: int = GRADING_TIMEOUT, jobs: int = 1
) -> tuple[list[Grade], list[dict[str, Any]]]:
    """Grade every ``*.ipynb`` of ``folder``, each as the student its file stem names, ``jobs``
    at a time (each in its own process and kernel); return the grades, in file order, and one
    CSV row per notebook (a column per check)."""
    notebooks = sorted(Path(folder).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {folder}")
    args = [(assignment, nb, nb.stem, timeout) for nb in notebooks]
    if jobs > 1 and len(notebooks) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(notebooks)), mp_context=context) as pool:
            grades = list(pool.map(grade, *zip(*args, strict=True)))
    else:
        grades = [grade(*a) for a in args]
    return grades, [row(g) for g in grades]


def row(g: Grade) -> dict[str, Any]:
    return {
        "notebook": g.notebook,
        "student_id": g.student_id,
        "score": g.score,
        "total": g.total,
        **{c.name: c.earned for c in g.checks},
        "errors": " | ".join(g.errors),
    }


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import pandas as pd

    pd.DataFrame(list(rows)).to_csv(path, index=False)
