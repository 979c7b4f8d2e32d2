"""Coursework: student versions made from the solutions, per-student setups, the grader.

The grader tests execute notebooks at smoke scale (a few seconds of training each), several
at a time: the solutions score full marks, the student versions zero, a notebook with ΔG's
sign flipped loses exactly the checks that use ΔG, and a notebook that loops forever is
stopped.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from gblend import cli
from gblend.coursework import ASSIGNMENTS, grading, setup, student
from gblend.coursework.assignments import STUDENT_SEED_BASE

# The checks of A1 whose behaviour depends on ΔG's sign (OGR, |ΔO / ΔG|, does not)
DELTA_G_CHECKS = {"delta_g", "blend_weights", "degenerate_heads", "weights_on_own_run"}
FLIPPED_DELTA_G = (
    'return {h: before["heldout"][h] - after["heldout"][h] for h in before["heldout"]}',
    'return {h: after["heldout"][h] - before["heldout"][h] for h in before["heldout"]}',
)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _solution(repo_root: Path, name: str) -> nbformat.NotebookNode:
    return _read(repo_root / ASSIGNMENTS[name].solution)


# --- student versions ---------------------------------------------------------------------


def test_student_versions_regenerate_identically(repo_root: Path) -> None:
    assert student.generate(repo_root, check=True) == [], "run: gblend coursework generate"


def test_check_mode_reports_a_stale_student_version(repo_root: Path, tmp_path: Path) -> None:
    for name in ("book/coursework",):
        (tmp_path / name).mkdir(parents=True)
    for assignment in ASSIGNMENTS.values():
        (tmp_path / assignment.solution).write_bytes((repo_root / assignment.solution).read_bytes())
    assert len(student.generate(tmp_path, check=True)) == len(ASSIGNMENTS)  # none written yet
    assert len(student.generate(tmp_path)) == len(ASSIGNMENTS)
    a1 = tmp_path / ASSIGNMENTS["a1"].student
    a1.write_text(a1.read_text().replace("your code here", "my code"))
    assert student.generate(tmp_path, check=True) == [a1]


def test_stub_keeps_the_code_around_a_region_and_its_indent() -> None:
    source = "def f(x):\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION\n\ny = 2"
    assert student.stub_solutions(source) == (
        'def f(x):\n    # your code here\n    raise NotImplementedError("your code here")\n\ny = 2'
    )


@pytest.mark.parametrize(
    "source",
    ["# BEGIN SOLUTION\nx = 1", "x = 1\n# END SOLUTION", "# BEGIN SOLUTION\n# BEGIN SOLUTION"],
)
def test_unpaired_markers_are_an_error(source: str) -> None:
    with pytest.raises(student.MarkerError):
        student.stub_solutions(source)


@pytest.mark.parametrize("name", list(ASSIGNMENTS))
def test_student_version_holds_no_solution(repo_root: Path, name: str) -> None:
    solution, blank = _solution(repo_root, name), _read(repo_root / ASSIGNMENTS[name].student)
    assert len(blank.cells) == len(solution.cells)
    for theirs, ours in zip(blank.cells, solution.cells, strict=True):
        if ours.cell_type == "code":
            assert not theirs.outputs and theirs.execution_count is None
            hidden = student.stub_solutions(ours.source) != ours.source
            assert ("NotImplementedError" in theirs.source) == hidden
            assert "BEGIN SOLUTION" not in theirs.source
        elif student.ANSWER_TAG in ours.metadata.get("tags", []):
            assert theirs.source == student.PROMPT
        else:
            assert theirs.source == ours.source
    answers = [c for c in solution.cells if student.ANSWER_TAG in c.metadata.get("tags", [])]
    assert answers, "every assignment has questions that need writing"


# --- per-student setups ---------------------------------------------------------------------


def test_each_student_gets_own_seeds_and_a2_testbed() -> None:
    ids = [f"student{i}" for i in range(12)]
    seeds = {setup("a1", i, "cpu").seeds for i in ids}
    assert len(seeds) == len(ids)
    assert setup("a1", "alice", "cpu") == setup("a1", "alice", "cpu")
    assert min(min(s) for s in seeds) >= STUDENT_SEED_BASE
    assert setup("a1", "alice").seeds != setup("a2", "alice").seeds
    knobs = {tuple(sorted(setup("a2", i).knobs.items())) for i in ids}
    assert len(knobs) > 1
    assert setup("a1", "alice").knobs == {}
    with pytest.raises(ValueError, match="unknown assignment"):
        setup("a9", "alice")


# --- the grader -----------------------------------------------------------------------------


def _flip_delta_g(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    old, new = FLIPPED_DELTA_G
    cells = [c for c in nb.cells if old in c.source]
    assert len(cells) == 1
    cells[0].source = cells[0].source.replace(old, new)
    return nb


def _failed(grade: grading.Grade) -> set[str]:
    return {c.name for c in grade.checks if c.earned < c.marks}


def test_grading_a_folder_writes_the_expected_csv(repo_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(_solution(repo_root, "a1"), folder / "solved.ipynb")
    nbformat.write(_read(repo_root / ASSIGNMENTS["a1"].student), folder / "blank.ipynb")
    nbformat.write(_flip_delta_g(_solution(repo_root, "a1")), folder / "flipped.ipynb")
    out = tmp_path / "a1.csv"
    code = cli.main(["grade", "a1", str(folder), "--csv", str(out), "--jobs", "2"])
    assert code == 0
    rows = {r["notebook"]: r for r in csv.DictReader(out.open())}
    checks = grading.checks_of("a1")
    total = sum(c.marks for c in checks)
    assert set(rows) == {"solved.ipynb", "blank.ipynb", "flipped.ipynb"}
    assert {r["student_id"] for r in rows.values()} == {"solved", "blank", "flipped"}
    assert (rows["solved.ipynb"]["score"], rows["solved.ipynb"]["total"]) == (str(total),) * 2
    assert rows["solved.ipynb"]["errors"] == ""
    assert rows["blank.ipynb"]["score"] == "0"
    assert "NotImplementedError" in rows["blank.ipynb"]["errors"]
    lost = {c.name for c in checks if rows["flipped.ipynb"][c.name] == "0"}
    assert lost == DELTA_G_CHECKS
    flipped_score = total - sum(c.marks for c in checks if c.name in DELTA_G_CHECKS)
    assert rows["flipped.ipynb"]["score"] == str(flipped_score)


@pytest.mark.parametrize("name", ["a2", "a3", "a4"])
def test_solution_full_marks_and_student_version_zero(
    repo_root: Path, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / name
    folder.mkdir()
    nbformat.write(_solution(repo_root, name), folder / "solved.ipynb")
    nbformat.write(_read(repo_root / ASSIGNMENTS[name].student), folder / "blank.ipynb")
    (blank, solved), _ = grading.grade_folder(name, folder, jobs=2)
    assert solved.score == solved.total > 0, "\n".join(solved.lines())
    assert not solved.errors, solved.errors
    assert blank.score == 0, "\n".join(blank.lines())
    assert all(c.feedback != "ok" for c in blank.checks)
    assert blank.errors  # the stubs raised, and the grader said where


def test_a_notebook_that_loops_forever_is_stopped(repo_root: Path, tmp_path: Path) -> None:
    nb = _solution(repo_root, "a1")
    hang = nbformat.v4.new_code_cell("while True:\n    pass")
    nb.cells.insert(4, hang)
    path = tmp_path / "hangs.ipynb"
    nbformat.write(nb, path)
    graded = grading.grade("a1", path, student_id="alice", timeout=20)
    assert any("cell 5" in e and "ran past the time limit" in e for e in graded.errors)
    assert graded.score == graded.total  # the cells after it ran; every check passed


def test_a_check_that_hangs_is_stopped_and_the_others_still_run(
    repo_root: Path, tmp_path: Path
) -> None:
    nb = _solution(repo_root, "a1")
    extra = nbformat.v4.new_code_cell("def ogr(before, after):\n    while True:\n        pass")
    nb.cells.append(extra)  # defined after the notebook's own checks of ogr ran
    path = tmp_path / "slow_ogr.ipynb"
    nbformat.write(nb, path)
    graded = grading.grade("a1", path, student_id="alice", timeout=10)
    assert _failed(graded) == {"ogr"}
    assert "ran past 10 s" in next(c.feedback for c in graded.checks if c.name == "ogr")


def test_grade_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grade", "a9", str(tmp_path)]) == 2
    assert "unknown assignment" in capsys.readouterr().err
    assert cli.main(["grade", "a1", str(tmp_path)]) == 2
    assert "no notebooks" in capsys.readouterr().err
    assert cli.main(["grade", "a1", str(tmp_path / "missing.ipynb")]) == 2
    assert "no notebook or folder" in capsys.readouterr().err
