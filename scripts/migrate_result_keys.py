"""Re-key committed result files after a change of how a unit's config is written.

Every result file is named by its cache key, a hash of the unit's config. When the config
format changes without changing what a unit computes (a new field whose default is the old
behaviour, a method's parameters written in full), this script rebuilds each stored config
through ``Unit.from_config`` (missing fields take their defaults), recomputes the key, and
rewrites the file under its new name. It refuses to overwrite a different file.

    python scripts/migrate_result_keys.py results            # dry run: counts only
    python scripts/migrate_result_keys.py results --write
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gblend.experiments.grid import Unit
from gblend.experiments.records import RunRecord
from gblend.results import RECORD_SUFFIX, read_record, unit_key, write_record_atomic


def migrate(results: Path, write: bool) -> tuple[int, int]:
    changed = same = 0
    for store in ("table1", "gblend"):
        for path in sorted((results / store).glob(f"*/*/*{RECORD_SUFFIX}")):
            old = read_record(path)
            stem = path.name.removesuffix(RECORD_SUFFIX)
            scale = path.parent.parent.name
            unit = Unit.from_config(old["config"], scale)
            config = unit.config()
            key = unit_key(config, old["data_fingerprint"])
            if key == stem:
                same += 1
                continue
            target = path.with_name(f"{key}{RECORD_SUFFIX}")
            if target.exists():
                raise FileExistsError(f"{target} exists; {path} would overwrite it")
            record = RunRecord.from_json({**old, "key": key, "config": config}).to_json()
            changed += 1
            if write:
                write_record_atomic(target, record)
                path.unlink()
    return changed, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite (default: dry run)")
    args = parser.parse_args()
    changed, same = migrate(args.results, args.write)
    print(f"{changed} files re-keyed{'' if args.write else ' (dry run)'}, {same} unchanged")


if __name__ == "__main__":
    main()
