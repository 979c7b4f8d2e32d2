"""Gzip the result files of a results folder written before records were compressed.

A unit's record was ``<key>.json``; it is now ``<key>.json.gz`` (``gblend.results``). This
rewrites each ``<store>/<scale>/<dataset>/<key>.json`` of the unit stores as ``<key>.json.gz``,
checks that the new file reads back to the same record, and removes the old one. It refuses to
overwrite a different file.

    python scripts/compress_results.py results            # dry run: counts only
    python scripts/compress_results.py results --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gblend.experiments.methods import METHODS
from gblend.results import RECORD_SUFFIX, read_record, write_record_atomic


def compress(results: Path, write: bool) -> tuple[int, int, int]:
    """(files compressed, bytes before, bytes after) over every unit store in ``results``."""
    count = before = after = 0
    for store in sorted({method.store for method in METHODS.values()}):
        for path in sorted((results / store).glob("*/*/*.json")):
            record = json.loads(path.read_text())
            target = path.with_name(path.stem + RECORD_SUFFIX)
            if target.exists() and read_record(target) != record:
                raise FileExistsError(f"{target} exists and differs from {path}")
            count += 1
            before += path.stat().st_size
            if write:
                write_record_atomic(target, record)
                if read_record(target) != record:
                    raise RuntimeError(f"{target} does not read back as {path}")
                after += target.stat().st_size
                path.unlink()
    return count, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite (default: dry run)")
    args = parser.parse_args()
    count, before, after = compress(args.results, args.write)
    done = f", {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB" if args.write else " (dry run)"
    print(f"{count} result files compressed{done}")


if __name__ == "__main__":
    main()
