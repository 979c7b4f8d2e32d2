"""Paper Figure 3 (OGR) on our own runs, computed from the Table 1 grid's histories.

Every Table 1 run records, each epoch, the fused head's loss on the fixed train subset T' and
on heldout V, which is all the paper's OGR needs; no extra training is done here.
"""

from __future__ import annotations

import pandas as pd

from gblend.blend import Measurement, generalization_gain, ogr, overfitting_change
from gblend.train import TRAIN_SUBSET


def _losses(history: pd.DataFrame) -> pd.DataFrame:
    joint = history[(history["head"] == "joint") & history.split.isin([TRAIN_SUBSET, "heldout"])]
    return joint.pivot_table(
        index=["dataset", "variant", "combo", "seed", "epoch"], columns="split", values="loss"
    ).reset_index()


def _measurement(run: pd.DataFrame, epoch: int) -> Measurement:
    row = run.loc[epoch]
    return Measurement({"joint": row[TRAIN_SUBSET]}, {"joint": row["heldout"]})


def ogr_over_training(history: pd.DataFrame, window: int = 0) -> pd.DataFrame:
    """dG, dO and OGR of every run between checkpoints N and N + window, N = 0, window, ...
    (``window`` 0: a sixth of the longest run).

    Measured with :mod:`gblend.blend`'s functions, i.e. exactly as G-Blend measures them.
    """
    if window < 0:
        raise ValueError("window must be a positive number of epochs (0: a sixth of the run)")
    window = window or max(1, int(history.epoch.max()) // 6)
    rows = []
    keys = ["dataset", "variant", "combo", "seed"]
    for (dataset, variant, combo, seed), run in _losses(history).groupby(keys):
        run = run.set_index("epoch")
        for start in range(0, int(run.index.max()) - window + 1, window):
            end = start + window
            before, after = _measurement(run, start), _measurement(run, end)
            rows.append(
                {
                    "dataset": dataset,
                    "variant": variant,
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
