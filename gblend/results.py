"""Result files: one gzipped JSON record per finished (config, seed) unit, written atomically,
with provenance.

Layout: ``<results_dir>/<experiment>/<scale>/<dataset>/<key>.json.gz`` (gzip: a record is
mostly per-epoch history, which compresses about 5 to 1, and the committed results travel with
every checkout, to a GPU machine too, whose copy of the working tree is capped). The key
hashes the unit's whole configuration, the data fingerprint and the package version, so a
changed setting never reuses an old result and a rerun skips every unit whose file exists. A
unit's file appears only once it is complete (write to a temporary file, then rename), so an
interrupted run loses at most the unit in flight.

This module also carries the paper's reference numbers as data, quoted with their table.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from gblend import __version__

RESULTS_ENV = "GBLEND_RESULTS_DIR"


def repo_root() -> Path | None:
    """The checkout holding this package (``_toc.yml`` beside ``gblend/``), if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "_toc.yml").exists() or (root / "pyproject.toml").exists() else None


def default_results_dir() -> Path:
    """``$GBLEND_RESULTS_DIR``, else ``results/`` of the checkout, else ``./results``."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    root = repo_root()
    return (root / "results") if root else Path.cwd() / "results"


def resolve_results_dir(results_dir: str | os.PathLike | None) -> Path:
    """Empty or ``None`` means :func:`default_results_dir` (notebook parameters are strings)."""
    return Path(results_dir) if results_dir else default_results_dir()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def unit_key(config: Mapping[str, Any], fingerprint: str) -> str:
    """Hash of (config, data fingerprint, package version): the cache key of a unit."""
    payload = canonical_json({"config": config, "data": fingerprint, "version": __version__})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files outside ``results/`` have
    changes (a grid that replaces committed result files runs the committed code); ``unknown``
    outside git.

    ``$GBLEND_GIT_COMMIT`` wins when set: a copy of the tree sent to another machine may carry
    a stale ``.git`` (scripts/gpu_carry.sh records the real commit).
    """
    if os.environ.get("GBLEND_GIT_COMMIT"):
        return os.environ["GBLEND_GIT_COMMIT"]
    root = repo_root() or Path.cwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str) -> dict[str, Any]:
    """Where and with what a result was produced: versions, commit, device, CPU and threads."""
    info: dict[str, Any] = {
        "gblend_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "device": device,
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        info["device_name"] = cpu_model()
    return info


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` either does not exist or holds the complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON so that ``path`` either does not exist or holds the whole file."""
    _write_atomic(path, json.dumps(obj, indent=1, default=str).encode())


RECORD_SUFFIX = ".json.gz"


def write_record_atomic(path: Path, record: Mapping[str, Any]) -> None:
    """Write a unit's record as gzipped JSON, atomically; the same record always gives the
    same bytes (no time stamp or file name in the gzip header)."""
    data = json.dumps(dict(record), indent=1, default=str).encode()
    _write_atomic(path, gzip.compress(data, mtime=0))


def read_record(path: Path) -> Any:
    """A unit's record from its file (gzipped JSON)."""
    return json.loads(gzip.decompress(path.read_bytes()))


class UnitStore:
    """The result files of one experiment at one scale."""

    def __init__(self, results_dir: str | os.PathLike | None, experiment: str, scale: str):
        self.root = resolve_results_dir(results_dir) / experiment / scale

    def path(self, dataset: str, key: str) -> Path:
        return self.root / dataset / f"{key}{RECORD_SUFFIX}"

    def has(self, dataset: str, key: str) -> bool:
        """Whether the unit has a readable result file (a damaged one is moved aside)."""
        return self.load(dataset, key) is not None

    def save(self, dataset: str, key: str, record: Mapping[str, Any]) -> Path:
        path = self.path(dataset, key)
        write_record_atomic(path, record)
        return path

    def load(self, dataset: str, key: str) -> dict[str, Any] | None:
        """The unit's record; ``None`` if there is none. A file that is not a complete record
        (truncated, not JSON, another key) is named in a warning and moved aside to
        ``<name>.damaged-<time>``, so that its unit is computed again and nothing is lost."""
        path = self.path(dataset, key)
        if not path.exists():
            return None
        try:
            record = read_record(path)
            if not isinstance(record, dict) or record.get("key") != key:
                raise ValueError(f"holds no record with key {key}")
        except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:  # OSError: not gzip
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            warnings.warn(
                f"damaged result file {path} ({exc}); moved to {aside.name}, its unit will be "
                "computed again",
                stacklevel=2,
            )
            return None
        return record


def history_to_json(history: pd.DataFrame) -> dict[str, list]:
    """A compact column-wise form of a training history for the unit file."""
    return {col: history[col].tolist() for col in history.columns}


def history_from_json(columns: Mapping[str, list]) -> pd.DataFrame:
    return pd.DataFrame(dict(columns))


# --- The paper's numbers, quoted as data (its Tables 1-5; Kinetics, video top-1 V@1, %) -------


def paper_table1() -> pd.DataFrame:
    """Paper Table 1: best uni-modal vs naive late fusion on Kinetics (V@1, %)."""
    rows = [
        ("A + RGB", 71.4, "RGB", 72.6, -1.2),
        ("RGB + OF", 71.3, "RGB", 72.6, -1.3),
        ("A + OF", 58.3, "OF", 62.1, -3.8),
        ("A + RGB + OF", 70.0, "RGB", 72.6, -2.6),
    ]
    frame = pd.DataFrame(
        rows, columns=["multi_modal", "multi_v1", "best_uni", "best_uni_v1", "drop"]
    )
    frame["source"] = "Wang et al. 2020, Table 1 (Kinetics, V@1 %)"
    return frame


def paper_figure4_endpoints() -> pd.DataFrame:
    """Paper Fig. 4, end-of-training error rates read off the plot (approximate, ±0.02)."""
    rows = [
        ("Kinetics", "A", 0.86, 0.40),
        ("Kinetics", "V", 0.38, 0.26),
        ("Kinetics", "AV", 0.385, 0.19),
        ("mini-Sports", "A", 0.86, 0.665),
        ("mini-Sports", "V", 0.51, 0.40),
        ("mini-Sports", "AV", 0.515, 0.36),
    ]
    frame = pd.DataFrame(rows, columns=["dataset", "model", "val_error", "train_error"])
    frame["source"] = "Wang et al. 2020, Fig. 4 (values read off the plot)"
    return frame


def paper_table2() -> pd.DataFrame:
    """Paper Table 2: Kinetics, RGB + audio, SGD (Clip, V@1, V@5 in %).

    The paper prints naive A+RGB V@1 as 71.7 here and in Table 5 but as 71.4 in Tables 1 and
    4 and Fig. 1 (the paper's own inconsistency); we quote each table as printed.
    """
    rows = [
        ("naive", "Naive Training", 61.8, 71.7, 89.6),
        ("best uni", "RGB Only", 63.5, 72.6, 90.1),
        ("offline", "Offline G-Blend", 65.9, 74.7, 91.5),
        ("online", "Online G-Blend", 66.9, 75.8, 91.9),
    ]
    frame = pd.DataFrame(rows, columns=["method", "paper_label", "clip", "v1", "v5"])
    frame["source"] = "Wang et al. 2020, Table 2 (Kinetics, RGB + A)"
    return frame


def paper_table4() -> pd.DataFrame:
    """Paper Table 4: offline G-Blend on every Kinetics modality combination (V@1, %)."""
    rows = [
        ("RGB + A", "[RGB, A, Join] = [0.630, 0.014, 0.356]", 72.6, 71.4, 74.7),
        ("RGB + OF", "[RGB, OF, Join] = [0.309, 0.495, 0.196]", 72.6, 71.3, 73.1),
        ("OF + A", "[OF, A, Join] = [0.827, 0.011, 0.162]", 62.1, 58.3, 66.3),
        ("RGB + OF + A", "[RGB, OF, A, Join] = [0.33, 0.53, 0.01, 0.13]", 72.6, 70.0, 74.9),
    ]
    frame = pd.DataFrame(rows, columns=["modal", "weights", "uni_v1", "naive_v1", "gblend_v1"])
    frame["source"] = "Wang et al. 2020, Table 4 (Kinetics, offline G-Blend, mean of 3 runs)"
    return frame


def paper_figure1() -> pd.DataFrame:
    """Paper Fig. 1: the best uni-modal model, late concatenation and each remedy and fusion
    on Kinetics, RGB + audio (V@1, %, as printed on the bars); the method names are ours."""
    rows = [
        ("best uni", "RGB", 72.6),
        ("naive", "late-concat", 71.4),
        ("pretrain", "pre-train", 71.7),
        ("early_stop", "early-stop", 71.3),
        ("dropout", "dropout", 72.9),
        ("mid_concat", "mid-concat", 72.8),
        ("se_gate", "SE-gate", 71.4),
        ("nl_gate", "NL-gate", 72.0),
    ]
    frame = pd.DataFrame(rows, columns=["method", "paper_label", "v1"])
    frame["source"] = "Wang et al. 2020, Fig. 1 (Kinetics, RGB + A, V@1 %)"
    return frame


def paper_table3() -> pd.DataFrame:
    """Paper Table 3 (AdaGrad, Adam) with its SGD rows from Tables 2 and 5 (V@1, %)."""
    rows = [
        ("sgd", "best uni", 72.6),
        ("sgd", "naive", 71.7),
        ("sgd", "offline", 74.7),
        ("adagrad", "best uni", 68.9),
        ("adagrad", "naive", 65.2),
        ("adagrad", "offline", 71.3),
        ("adam", "best uni", 69.3),
        ("adam", "naive", 66.4),
        ("adam", "offline", 72.1),
    ]
    frame = pd.DataFrame(rows, columns=["optimizer", "method", "v1"])
    frame["source"] = "Wang et al. 2020, Table 3; SGD: Tables 2 and 5 (Kinetics, RGB + A)"
    return frame


def paper_table5() -> pd.DataFrame:
    """Paper Table 5: the baselines on Kinetics and mini-Sports (V@1, %) and mini-AudioSet
    (mAP, %), RGB + audio, with G-Blend's weights per data set."""
    rows = [
        ("audio only", 19.7, 22.1, 29.1),
        ("RGB only", 72.6, 62.7, 22.1),
        ("pretrain", 71.7, 61.3, 37.4),
        ("naive", 71.7, 60.2, 36.5),
        ("dropout", 72.9, 61.4, 36.7),
        ("uniform", 70.8, 62.1, 37.7),
        ("offline", 74.7, 62.8, 37.8),
    ]
    frame = pd.DataFrame(
        rows, columns=["method", "kinetics_v1", "mini_sports_v1", "mini_audioset_map"]
    )
    frame.attrs["weights"] = {
        "Kinetics": "[RGB, A, Join] = [0.63, 0.01, 0.36]",
        "mini-Sports": "[RGB, A, Join] = [0.65, 0.06, 0.29]",
        "mini-AudioSet": "[RGB, A, Join] = [0.38, 0.24, 0.38]",
    }
    frame["source"] = "Wang et al. 2020, Table 5 (RGB + A)"
    return frame


def paper_figure6() -> pd.DataFrame:
    """Paper Fig. 6: Kinetics' ten classes G-Blend improves most over the RGB model and the ten
    it improves least (dropped), as the caption and text name them (the bars' values are
    printed for none but texting: audio about 0.04, RGB about 0.45, G-Blend about 0.61, read
    off the figure)."""
    top = (
        "dancing gangnam style", "finger snapping", "whistling", "laughing", "salsa dancing",
        "playing keyboard", "clapping", "cleaning floor", "blowing nose", "texting",
    )  # fmt: skip
    bottom = (
        "building shed", "cooking on campfire", "cooking egg", "surfing water", "picking fruit",
        "bookbinding", "riding unicycle", "unloading truck", "skateboarding", "cooking chicken",
    )  # fmt: skip
    frame = pd.DataFrame(
        {"rank": range(1, 11), "most improved (top 10)": top, "dropped (bottom 10)": bottom}
    )
    frame["source"] = "Wang et al. 2020, Fig. 6 (Kinetics, G-Blend vs RGB)"
    return frame
