"""The book pipeline end to end: `gblend reproduce` → `jupyter-book build -W` → Chromium.

Plus the CLI's own rules (scale resolution, --only, failing notebooks) on tiny notebooks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import SmokeReproduction, find_notebooks

from gblend import cli

TABLE1_PAGE = Path("_build/html/book/generated/table1_unimodal_vs_joint.html")
COURSEWORK_HTML = Path("_build/html/book/generated/coursework")
# Words that only A1's solution holds: a name in its code, a word of one of its answers
A1_SOLUTION_WORDS = ("o_before", "swamps")


@dataclass
class BuiltBook:
    root: Path
    reproduce: subprocess.CompletedProcess[str]
    build: subprocess.CompletedProcess[str]


def _run(args: list[str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _jupyter_book() -> str:
    # The script next to this interpreter, so the test uses the venv's jupyter-book.
    local = Path(sys.executable).with_name("jupyter-book")
    return str(local) if local.exists() else shutil.which("jupyter-book") or "jupyter-book"


@pytest.fixture(scope="module")
def built_book(smoke_reproduction: SmokeReproduction) -> BuiltBook:
    """Build the book once, at smoke scale, from the executed copy of its sources."""
    root = smoke_reproduction.root
    reproduce = smoke_reproduction.process
    build = _run(
        [_jupyter_book(), "build", str(root), "-W", "-n", "--keep-going", "--all"], cwd=root
    )
    return BuiltBook(root, reproduce, build)


def test_reproduce_runs_every_notebook(built_book: BuiltBook) -> None:
    assert built_book.reproduce.returncode == 0, (
        built_book.reproduce.stdout + built_book.reproduce.stderr
    )
    log = json.loads((built_book.root / "book/generated/reproduce_log.json").read_text())
    ran = {run["notebook"]: run for run in log["runs"]}
    assert set(ran) == {nb.name for nb in find_notebooks()}
    assert all(run["ok"] and run["scale"] == "smoke" for run in ran.values())


def test_book_builds_without_warnings(built_book: BuiltBook) -> None:
    output = built_book.build.stdout + built_book.build.stderr
    assert built_book.build.returncode == 0, output
    assert "WARNING" not in output, output
    assert (built_book.root / TABLE1_PAGE).is_file()


def _a1_page(root: Path) -> str:
    return (root / COURSEWORK_HTML / "a1_estimator.html").read_text(encoding="utf-8")


def test_coursework_part_shows_the_solutions(built_book: BuiltBook) -> None:
    from gblend.coursework import ASSIGNMENTS

    assert built_book.build.returncode == 0
    for assignment in ASSIGNMENTS.values():
        page = built_book.root / COURSEWORK_HTML / Path(assignment.notebook).with_suffix(".html")
        assert page.is_file(), page
    assert (built_book.root / "_build/html/book/coursework/instructor.html").is_file()
    page = _a1_page(built_book.root)
    assert all(word in page for word in A1_SOLUTION_WORDS)
    assert "dropdown" in page  # the answers are folded away


def test_coursework_switch_builds_the_book_without_solutions(
    built_book: BuiltBook, tmp_path: Path
) -> None:
    """The same book with --coursework student: the built pages hold no solution. Built
    incrementally from a copy of the first build (only the coursework pages changed)."""
    root = tmp_path / "course"
    shutil.copytree(built_book.root, root, ignore=shutil.ignore_patterns("results"))
    assert cli.main(["coursework", "pages", "--mode", "student", "--root", str(root)]) == 0
    build = _run([_jupyter_book(), "build", str(root), "-W", "-n", "--keep-going"], cwd=root)
    assert build.returncode == 0, build.stdout + build.stderr
    page = _a1_page(root)
    assert not any(word in page for word in A1_SOLUTION_WORDS)
    assert "your code here" in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _chromium_args(browser: str, profile: Path) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
    ]


def test_table1_page_renders_in_chromium(built_book: BuiltBook, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "headless Chromium not found: `apt-get install chromium` (make test does "
            "this when run as root)"
        )
    page = built_book.root / TABLE1_PAGE
    assert page.is_file(), "the book build did not produce the Table 1 page"

    dom = _run(
        [*_chromium_args(browser, tmp_path / "profile1"), "--dump-dom", page.as_uri()],
        cwd=tmp_path,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr
    assert "<table" in dom.stdout
    assert "<img" in dom.stdout

    # A screenshot for a human to look at when this fails (kept in pytest's tmp dir).
    shot = tmp_path / "table1.png"
    _run(
        [
            *_chromium_args(browser, tmp_path / "profile2"),
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page.as_uri(),
        ],
        cwd=tmp_path,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 0


# ---- CLI rules, on throwaway notebooks ----------------------------------------------------


def _write_notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell('scale = "cpu"\ndevice = "auto"\nresults_dir = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


def test_published_scale_is_full_only_where_every_full_result_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gblend.experiments import registry

    nb = tmp_path / "table1_unimodal_vs_joint.ipynb"
    assert cli.experiment_name(nb) == "table1"
    assert cli.resolve_scale("published", nb, tmp_path) == "cpu"
    (tmp_path / "table1" / "full").mkdir(parents=True)
    (tmp_path / "table1" / "full" / "unit.json").write_text("{}")
    assert cli.resolve_scale("published", nb, tmp_path) == "cpu"  # one file is not enough
    monkeypatch.setattr(registry, "missing", lambda units, results_dir=None: [])
    assert cli.resolve_scale("published", nb, tmp_path) == "full"
    assert cli.resolve_scale("published", tmp_path / "fig9_other.ipynb", tmp_path) == "cpu"
    assert cli.resolve_scale("smoke", nb, tmp_path) == "smoke"


def test_only_filters_and_failures_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks / "fig4_curves.ipynb", "assert scale == 'smoke'")
    _write_notebook(notebooks / "table9_broken.ipynb", "raise RuntimeError('boom')")
    out = tmp_path / "generated"
    common = [
        "reproduce",
        "--scale",
        "smoke",
        "--notebooks-dir",
        str(notebooks),
        "--output-dir",
        str(out),
        "--results-dir",
        str(tmp_path / "results"),
    ]

    assert cli.main([*common, "--only", "nope"]) == 2
    assert "unknown --only" in capsys.readouterr().err

    assert cli.main([*common, "--only", "fig4"]) == 0
    assert (out / "fig4_curves.ipynb").is_file()
    assert not (out / "table9_broken.ipynb").exists()
    # the page shows no raw parameter cells: ours and papermill's injected one are removed
    cells = nbformat.read(out / "fig4_curves.ipynb", as_version=4).cells
    tagged = [c.metadata.get("tags", []) for c in cells]
    assert sum("injected-parameters" in t for t in tagged) == 1
    assert all("remove-cell" in t for t in tagged if set(t) & {"parameters", "injected-parameters"})
    assert not any("remove-cell" in t for t in tagged if not t)

    # The broken notebook fails the run, by name, and the other one still runs.
    (out / "fig4_curves.ipynb").unlink()
    assert cli.main(common) == 1
    assert "table9_broken.ipynb" in capsys.readouterr().err
    assert (out / "fig4_curves.ipynb").is_file()
    runs = {r["notebook"]: r for r in json.loads((out / cli.LOG_NAME).read_text())["runs"]}
    assert runs["fig4_curves.ipynb"]["ok"] and not runs["table9_broken.ipynb"]["ok"]


def test_repo_root_is_found_from_a_subdirectory(repo_root: Path, tmp_path: Path) -> None:
    assert cli.find_repo_root(repo_root / "book") == repo_root
    with pytest.raises(cli.CliError, match="_toc.yml"):
        cli.find_repo_root(tmp_path)
