"""Every notebook template executes at smoke scale (the scale CI can afford)."""

from __future__ import annotations

import shutil
from pathlib import Path

import papermill
import pytest
from conftest import find_notebooks

NOTEBOOKS = find_notebooks()


# An empty parametrisation would make pytest skip silently; a missing notebooks/ is an error.
@pytest.mark.parametrize(
    "notebook",
    NOTEBOOKS or [pytest.param(None, id="no-notebooks")],
    ids=lambda nb: nb.stem if isinstance(nb, Path) else str(nb),
)
def test_notebook_runs_at_smoke_scale(notebook: Path | None, tmp_path: Path) -> None:
    if notebook is None:
        pytest.fail("no notebooks/*.ipynb found")
    # Run a copy from a temp dir so nothing a notebook writes next to itself lands in the repo.
    source = tmp_path / notebook.name
    shutil.copy(notebook, source)
    papermill.execute_notebook(
        str(source),
        str(tmp_path / f"executed_{notebook.name}"),
        parameters={"scale": "smoke", "device": "cpu", "results_dir": str(tmp_path / "results")},
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
        execution_timeout=600,
    )
