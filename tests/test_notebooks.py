"""Every notebook template executes at smoke scale (the scale CI can afford), as
`gblend reproduce --scale smoke` runs them for the book: one test per notebook, reading the
run's log, so that a failure names its notebook and error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SmokeReproduction, find_notebooks

NOTEBOOKS = find_notebooks()


# An empty parametrisation would make pytest skip silently; a missing notebooks/ is an error.
@pytest.mark.parametrize(
    "notebook",
    NOTEBOOKS or [pytest.param(None, id="no-notebooks")],
    ids=lambda nb: nb.stem if isinstance(nb, Path) else str(nb),
)
def test_notebook_runs_at_smoke_scale(
    notebook: Path | None, smoke_reproduction: SmokeReproduction
) -> None:
    if notebook is None:
        pytest.fail("no notebooks/*.ipynb found")
    generated = smoke_reproduction.root / "book/generated"
    log = json.loads((generated / "reproduce_log.json").read_text())
    runs = {run["notebook"]: run for run in log["runs"]}
    assert notebook.name in runs, smoke_reproduction.process.stderr[-3000:]
    run = runs[notebook.name]
    assert run["ok"] and run["scale"] == "smoke", run["error"]
    assert (generated / notebook.name).is_file()
