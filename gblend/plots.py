"""Figure functions, one per paper figure; they take tidy DataFrames and return a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

ROLE_ORDER = ["weakest uni", "best uni", "naive joint"]
ROLE_COLORS = {"weakest uni": "tab:blue", "best uni": "tab:orange", "naive joint": "tab:green"}


def style() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def figure4(curves: pd.DataFrame) -> plt.Figure:
    """Train (dashed) and val (solid) error per epoch, one panel per data set (paper Fig. 4).

    ``curves`` comes from :func:`gblend.experiments.figure4_curves`: columns dataset, combo,
    role, split, epoch, error, seed. Lines are means over seeds, bands a 95% interval.
    """
    style()
    datasets = list(dict.fromkeys(curves.dataset))
    ncols = min(2, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        sub = curves[curves.dataset == dataset]
        labels = {r: f"{r}: {c}" for r, c in sub[["role", "combo"]].drop_duplicates().values}
        sns.lineplot(
            data=sub.assign(model=sub.role.map(labels)),
            x="epoch",
            y="error",
            hue="model",
            hue_order=[labels[r] for r in ROLE_ORDER if r in labels],
            palette=[ROLE_COLORS[r] for r in ROLE_ORDER if r in labels],
            style="split",
            style_order=["val", "train"],
            errorbar=("ci", 95),
            ax=ax,
        )
        ax.set_title(dataset)
        ax.set_ylabel("error (1 - accuracy)")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
