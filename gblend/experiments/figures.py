"""Paper Figure 3 (OGR) on our own runs, computed from the Table 1 grid's histories.

Every Table 1 run records, each epoch, the fused head's loss on the fixed train subset T' and
on heldout V, which is all the paper's OGR needs; no extra training is done here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from gblend.blend import Measurement, generalization_gain, ogr, overfitting_change
from gblend.experiments.table1 import table1
from gblend.train import TRAIN_SUBSET


def _losses(history: pd.DataFrame) -> pd.DataFrame:
    joint = history[(history["head"] == "joint") & history.split.isin([TRAIN_SUBSET, "heldout"])]
    return joint.pivot_table(
        index=["dataset", "combo", "seed", "epoch"], columns="split", values="loss"
    ).reset_index()


def _measurement(run: pd.DataFrame, epoch: int) -> Measurement:
    row = run.loc[epoch]
    return Measurement({"joint": row[TRAIN_SUBSET]}, {"joint": row["heldout"]})


def ogr_over_training(history: pd.DataFrame, window: int) -> pd.DataFrame:
    """dG, dO and OGR of every run between checkpoints N and N + window, N = 0, window, ...

    Measured with :mod:`gblend.blend`'s functions, i.e. exactly as G-Blend measures them.
    """
    if window < 1:
        raise ValueError("window must be a positive number of epochs")
    rows = []
    for (dataset, combo, seed), run in _losses(history).groupby(["dataset", "combo", "seed"]):
        run = run.set_index("epoch")
        for start in range(0, int(run.index.max()) - window + 1, window):
            end = start + window
            before, after = _measurement(run, start), _measurement(run, end)
            rows.append(
                {
                    "dataset": dataset,
                    "combo": combo,
                    "seed": seed,
                    "start": start,
                    "end": end,
                    "delta_g": generalization_gain(before, after)["joint"],
                    "delta_o": overfitting_change(before, after)["joint"],
                    "ogr": ogr(before, after)["joint"],
                }
            )
    return pd.DataFrame(rows)


def figure3(
    scale: str = "cpu",
    datasets: str | Sequence[str] | None = None,
    seeds: int = 0,
    device: str = "auto",
    results_dir: str | None = None,
    epochs: int = 0,
    window: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, history, OGR per window) of the Table 1 grid; ``window`` 0 = a sixth of the run."""
    runs, history = table1(scale, datasets, seeds, device, results_dir, epochs, progress)
    n = window or max(1, int(history.epoch.max()) // 6)
    return runs, history, ogr_over_training(history, n)
