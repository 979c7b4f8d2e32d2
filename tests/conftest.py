"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def find_notebooks() -> list[Path]:
    """The papermill templates, one per paper table or figure."""
    return sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
