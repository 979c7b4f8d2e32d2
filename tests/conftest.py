"""Fixtures shared by the test modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def two_modality_toy(name: str):
    """A registered three-class data set with a strong ("left") and a weak ("right") vector
    modality, loaded at seed 0, unregistered afterwards (for a fixture to yield from)."""
    import numpy as np

    from gblend import data as gdata

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    left = rng.normal(size=(180, 5)) + 1.5 * np.eye(3)[y] @ rng.normal(size=(3, 5))
    right = rng.normal(size=(180, 6)) + 0.5 * np.eye(3)[y] @ rng.normal(size=(3, 6))
    gdata.register_arrays(name, {"left": left, "right": right}, y, classes="abc")
    yield gdata.load(name, seed=0)
    gdata.unregister(name)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def find_notebooks() -> list[Path]:
    """The papermill templates, one per paper table or figure."""
    return sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@dataclass
class SmokeReproduction:
    """A copy of the book's sources in which every notebook was executed at smoke scale."""

    root: Path
    process: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def smoke_reproduction(tmp_path_factory: pytest.TempPathFactory) -> SmokeReproduction:
    """``gblend reproduce --scale smoke`` once, from a copy of the sources, for the tests of
    the notebooks and of the book build (executing the notebooks is most of CI's time)."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks")
    shutil.copytree(
        REPO_ROOT / "book",
        root / "book",
        ignore=lambda d, names: ["generated"] if Path(d) == REPO_ROOT / "book" else [],
    )
    command = [sys.executable, "-m", "gblend", "reproduce", "--scale", "smoke", "--device",
               "cpu", "--results-dir", str(root / "results")]  # fmt: skip
    process = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=1800, check=False
    )
    return SmokeReproduction(root, process)
