"""Choosing a method's knob (a dropout rate, a learning rate) on val, as the paper records the
best of each baseline, without touching a reported seed or test.

An experiment that selects (``Experiment.select``) has a search: its own grid on calibration
seeds, which no page reports. Within each group of the search's units that differ only in
the selected settings (one data set, combination, method and every other setting), the
setting with the highest mean val accuracy over the calibration seeds at the last epoch (the
fixed schedule) is chosen; a tie goes to the setting listed first (the axis' first value,
the method's default). The experiment's grid on the reported seeds then holds the chosen
setting of each group only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from gblend.experiments.grid import Unit
from gblend.experiments.records import RunRecord, metric_column

# what a unit's identity is in a selection: data set, combination, method, swept settings
Choice = tuple[str, tuple[str, ...], str, tuple[tuple[str, Any], ...]]
SCORE = metric_column("val", selection="last")


def choice(unit: Unit) -> Choice:
    return (unit.dataset, unit.modalities, unit.method, tuple(unit.variant))


def search_table(
    units: Sequence[Unit], records: Sequence[RunRecord], select: Sequence[str]
) -> pd.DataFrame:
    """Per group and candidate setting of the search: mean val accuracy (%) over its seeds,
    the seeds, and whether it was chosen. ``records``: the results of ``units``, in order
    (a complete search)."""
    if len(units) != len(records):
        raise ValueError(f"the search is not complete: {len(records)} of {len(units)} runs")
    rows = []
    for order, (unit, rec) in enumerate(zip(units, records, strict=True)):
        chosen = tuple((n, v) for n, v in unit.variant if n in select)
        rest = tuple((n, v) for n, v in unit.variant if n not in select)
        rows.append(
            {
                "dataset": unit.dataset,
                "combo": unit.combo,
                "method": unit.method,
                "setting": ", ".join(f"{n}={v}" for n, v in rest),
                "candidate": ", ".join(f"{n}={v}" for n, v in chosen),
                "variant": tuple(unit.variant),
                "order": order,
                "seed": unit.seed,
                "val_acc": rec.last_metrics[SCORE] * 100,
            }
        )
    frame = pd.DataFrame(rows)
    keys = ["dataset", "combo", "method", "setting", "candidate"]
    table = (
        frame.groupby(keys, sort=False)
        .agg(
            variant=("variant", "first"),
            order=("order", "min"),
            val_acc=("val_acc", "mean"),
            seeds=("seed", "nunique"),
        )
        .reset_index()
    )
    best = table.sort_values(["val_acc", "order"], ascending=[False, True]).groupby(
        keys[:4], sort=False
    )
    table["chosen"] = table.index.isin([g.index[0] for _, g in best])
    return table.sort_values("order").drop(columns="order").reset_index(drop=True)


def chosen(table: pd.DataFrame) -> frozenset[Choice]:
    """The units' identities the reported grid keeps, from :func:`search_table`."""
    rows = table[table.chosen]
    return frozenset(
        (r.dataset, tuple(r.combo.split("+")), r.method, tuple(r.variant))
        for r in rows.itertuples()
    )
