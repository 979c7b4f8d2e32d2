"""environment.yml (conda) lists the same dependencies as pyproject.toml, at allowed versions."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# conda-forge package name -> PyPI distribution name, where they differ.
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def _pyproject(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


def _declared(repo_root: Path) -> dict[str, SpecifierSet]:
    """pyproject dependencies plus the [book] and [dev] extras: name -> specifier."""
    project = _pyproject(repo_root)["project"]
    reqs = [*project["dependencies"]]
    for extra in ("book", "dev"):
        reqs += project["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r.specifier for r in map(Requirement, reqs)}


def _carriers(repo_root: Path) -> dict[str, Version]:
    """The data carriers pinned on the Makefile's CARRIERS line: name -> version."""
    match = re.search(r"^CARRIERS\s*:?=\s*(.+)$", (repo_root / "Makefile").read_text(), re.M)
    assert match, "Makefile has no CARRIERS line"
    pins = {}
    for token in match.group(1).split():
        name, version = token.split("==")
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _conda_env(repo_root: Path) -> tuple[str | None, dict[str, Version]]:
    """environment.yml: (python version, name -> pinned version) over conda and pip entries."""
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    python = None
    pins: dict[str, Version] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for line in entry["pip"]:
                if line.startswith("-e "):  # the project itself
                    continue
                req = Requirement(line)
                specs = list(req.specifier)
                assert len(specs) == 1 and specs[0].operator == "==", f"not pinned: {line}"
                pins[canonicalize_name(req.name)] = Version(specs[0].version)
            continue
        name, _, version = entry.partition("=")
        if name == "pip":
            continue
        assert version, f"not pinned: {entry}"
        version = version.lstrip("=").split("=")[0]  # "x=1.2" or "x==1.2"; drop a build string
        if name == "python":
            python = version
        else:
            pins[canonicalize_name(CONDA_TO_PYPI.get(name, name))] = Version(version)
    return python, pins


def test_same_dependency_names(repo_root: Path) -> None:
    _, pinned = _conda_env(repo_root)
    expected = set(_declared(repo_root)) | set(_carriers(repo_root))
    assert set(pinned) - expected == set(), "in environment.yml but not in pyproject/Makefile"
    assert expected - set(pinned) == set(), "in pyproject/Makefile but not in environment.yml"


def test_pins_satisfy_pyproject(repo_root: Path) -> None:
    _, pinned = _conda_env(repo_root)
    for name, spec in _declared(repo_root).items():
        assert name in pinned, f"{name} is not in environment.yml"
        assert spec.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} vs {spec}"


def test_carrier_pins_match_makefile(repo_root: Path) -> None:
    _, pinned = _conda_env(repo_root)
    for name, version in _carriers(repo_root).items():
        assert pinned[name] == version, name


def test_python_version_allowed(repo_root: Path) -> None:
    python, _ = _conda_env(repo_root)
    assert python is not None, "environment.yml pins no python"
    requires = SpecifierSet(_pyproject(repo_root)["project"]["requires-python"])
    assert requires.contains(python), f"python={python} vs requires-python {requires}"


def test_cpu_constraints_agree(repo_root: Path) -> None:
    """The CI constraints pin torch to the version that environment.yml pins."""
    _, pinned = _conda_env(repo_root)
    lines = (repo_root / ".ci/constraints-cpu.txt").read_text().splitlines()
    reqs = [Requirement(x) for x in lines if x.strip() and not x.lstrip().startswith("#")]
    pins = {canonicalize_name(r.name): r for r in reqs}
    assert pins["torch"].specifier.contains(pinned["torch"]), pins["torch"]
    assert _declared(repo_root)["torch"].contains(pinned["torch"])
