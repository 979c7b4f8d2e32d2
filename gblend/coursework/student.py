"""Student versions, generated from the solution notebooks and never edited by hand.

In a solution's code cells, the lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION``
become a stub that raises :class:`NotImplementedError` (indented like the marker). A markdown
cell tagged ``answer`` (a prose answer) becomes a prompt. Outputs and execution counts are
dropped, so a student version is the same file wherever it is generated.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from gblend.coursework.assignments import ASSIGNMENTS

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
ANSWER_TAG = "answer"
STUB = "# your code here", 'raise NotImplementedError("your code here")'
PROMPT = "**Your answer:** _write it here, in a few sentences._"


class MarkerError(ValueError):
    """Solution markers that do not pair up."""


def stub_solutions(source: str) -> str:
    """The cell's code with every solution region replaced by a stub."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise MarkerError(f"line {number}: {BEGIN} inside a solution region")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB]
        elif marker == END:
            if not inside:
                raise MarkerError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{BEGIN} is never closed")
    return "\n".join(out)


def has_solution(cell: nbformat.NotebookNode) -> bool:
    if cell.cell_type == "code":
        return any(line.strip() == BEGIN for line in cell.source.splitlines())
    return ANSWER_TAG in cell.metadata.get("tags", [])


def student_version(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student's notebook made from a solution notebook."""
    nb = copy.deepcopy(solution)
    if not any(has_solution(cell) for cell in nb.cells):
        raise MarkerError("the solution has no solution region and no answer cell")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = stub_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
            cell.metadata.pop("papermill", None)
        elif ANSWER_TAG in cell.metadata.get("tags", []):
            cell.source = PROMPT
    nb.metadata.pop("papermill", None)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as the exact text written to disk (so that files compare byte for byte)."""
    return nbformat.writes(nb) + "\n"


def generate(root: Path, check: bool = False) -> list[Path]:
    """Write (or, with ``check``, only compare) every assignment's student version under
    ``root``; return the student files that were missing or differed."""
    differing = []
    for assignment in ASSIGNMENTS.values():
        solution = nbformat.read(root / assignment.solution, as_version=4)
        text = render(student_version(solution))
        target = root / assignment.student
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            differing.append(target)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return differing
