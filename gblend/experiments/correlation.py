"""Claim 18: is the heads' overfitting nearly uncorrelated, as Proposition 1 assumes?

The paper's weights (Eq. 6) are optimal only if the cross terms C_jk of the heads'
overfitting vanish; it says that in informal experiments they are small beside the diagonal
terms. The ``cross_terms`` runs measure C at checkpoints of equal-weight multi-head training
(:mod:`gblend.cross_terms`). The claim has two parts, one per kind of pair (:data:`KINDS`):
two modality heads (the paper's "across modalities"; their gradients reach disjoint
encoders) and a modality head with the fused head (Proposition 1's estimates include the
fused head's, whose gradient reaches every encoder). Per seed and kind, the size of the cross
terms is the mean of |C_jk| / √(C_jj C_kk) over the checkpoints, the pairs of that kind and
the modality combinations; each part is judged one-sided at :data:`MARGIN`
(:func:`gblend.experiments.stats.equivalence`): it holds when the paired 95% interval over
seeds lies below the margin and is contradicted when it lies above. The claim is
*reproduced* when both parts hold, *partly* when one does, *contradicted* when neither does
and one is contradicted, else *not detectable*. Whether the assumption matters for the
weights is told beside it by the efficiency of Eq. 6's blend (the lowest OGR² any blend
reaches, over the OGR² of Eq. 6's: 1 when ignoring the cross terms costs nothing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gblend.experiments.stats import (
    CONTRADICTED,
    HIGHER,
    NOT_DETECTABLE,
    PARTLY,
    REPRODUCED,
    equivalence,
    paired_difference,
)
from gblend.models import JOINT

MARGIN = 0.3  # a cross term under 30% of its diagonal terms' geometric mean counts as small
UNIT = "of |C_jk| / √(C_jj C_kk)"
STATEMENT = (
    "the heads' overfitting is nearly uncorrelated: the cross terms of Proposition 1 are small "
    "beside the diagonal terms, between modality heads and between a modality head and the "
    "fused head (Section 3.4)"
)


MODALITIES, WITH_FUSED = "two modality heads", "a modality head and the fused head"
KINDS = (MODALITIES, WITH_FUSED)


def pair_label(j: str, k: str) -> str:
    return f"{j}–{k}"


def pair_kind(j: str, k: str) -> str:
    return WITH_FUSED if JOINT in (j, k) else MODALITIES


def size_per_seed(terms: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, kind of pair, seed): the mean |relative cross term| over combinations,
    checkpoints and the pairs of that kind, and the largest one."""
    kind = [pair_kind(j, k) for j, k in zip(terms.head_j, terms.head_k, strict=True)]
    size = terms.assign(size=terms.relative.abs(), kind=kind)
    return (
        size.groupby(["dataset", "kind", "seed"], sort=False)["size"]
        .agg(mean="mean", largest="max")
        .reset_index()
    )


def pair_table(terms: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, combination, pair): the relative cross term and the centered
    correlation, each a mean over seeds (of each seed's mean over checkpoints) with its 95%
    interval, and the seeds' range."""
    per_seed = (
        terms.groupby(["dataset", "combo", "head_j", "head_k", "seed"], sort=False)[
            ["relative", "correlation"]
        ]
        .mean()
        .reset_index()
    )
    rows = []
    for (dataset, combo, j, k), g in per_seed.groupby(
        ["dataset", "combo", "head_j", "head_k"], sort=False
    ):
        rel = paired_difference(g.relative.values, np.zeros(len(g)))
        cor = paired_difference(g.correlation.values, np.zeros(len(g)))
        rows.append(
            {
                "dataset": dataset,
                "combo": combo,
                "pair": pair_label(j, k),
                "relative": rel.mean,
                "relative_low": rel.low,
                "relative_high": rel.high,
                "seed_min": g.relative.min(),
                "seed_max": g.relative.max(),
                "correlation": cor.mean,
                "seeds": len(g),
            }
        )
    return pd.DataFrame(rows)


def efficiency_table(blends: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, combination, checkpoint epoch): the efficiency of Eq. 6's blend over
    seeds (median and smallest), and how far its weights are from the optimal blend's (the
    largest per-head difference, mean over seeds)."""
    one = blends.assign(shift=(blends.paper_weight - blends.optimal_weight).abs())
    per_run = (
        one.groupby(["dataset", "combo", "epoch", "seed"], sort=False)
        .agg(efficiency=("efficiency", "first"), shift=("shift", "max"))
        .reset_index()
    )
    return (
        per_run.groupby(["dataset", "combo", "epoch"], sort=False)
        .agg(
            efficiency_median=("efficiency", "median"),
            efficiency_min=("efficiency", "min"),
            weight_shift=("shift", "mean"),
            seeds=("seed", "nunique"),
        )
        .reset_index()
    )


def _combined(parts: list[str]) -> str:
    held = sum(p == REPRODUCED for p in parts)
    if held == len(parts):
        return REPRODUCED
    if held:
        return PARTLY
    if CONTRADICTED in parts:
        return CONTRADICTED
    floors = [p for p in parts if p.startswith(NOT_DETECTABLE)]
    return floors[0] if len(floors) == len(parts) else NOT_DETECTABLE


def claims(terms: pd.DataFrame, blends: pd.DataFrame) -> pd.DataFrame:
    """Claim 18 per data set (see the module's text), with the evidence: per kind of pair the
    mean size with its interval and its part's verdict, the largest pair, the efficiency of
    Eq. 6's blend."""
    rows = []
    sizes = size_per_seed(terms)
    pairs = pair_table(terms)
    for dataset, g in sizes.groupby("dataset", sort=False):
        parts, said = [], []
        for kind in KINDS:
            k = g[g.kind == kind]
            if k.empty:
                continue
            diff = paired_difference(k["mean"].values, np.zeros(len(k)))
            parts.append(part := equivalence(diff, MARGIN, HIGHER, UNIT))
            said.append(
                f"{kind}: mean |C_jk| / √(C_jj C_kk) {diff.mean:.2f} [{diff.low:.2f}, "
                f"{diff.high:.2f}], largest per seed {k['largest'].min():.2f}–"
                f"{k['largest'].max():.2f} ({part})"
            )
        mine = pairs[pairs.dataset == dataset]
        top = mine.loc[mine.relative.abs().idxmax()]
        eff = blends[blends.dataset == dataset].drop_duplicates(["combo", "seed", "epoch"])
        evidence = (
            f"{'; '.join(said)}; over {g.seed.nunique()} seeds, small meaning below "
            f"{MARGIN:g}; largest pair on average {top.pair} ({top.combo}) {top.relative:+.2f} "
            f"[{top.relative_low:+.2f}, {top.relative_high:+.2f}]; efficiency of Eq. 6's blend: "
            f"median {eff.efficiency.median():.2f}, smallest {eff.efficiency.min():.2f} over "
            f"{len(eff)} checkpoints"
        )
        rows.append({"dataset": dataset, "variant": "", "claim": 18, "statement": STATEMENT,
                     "verdict": _combined(parts), "evidence": evidence})  # fmt: skip
    return pd.DataFrame(rows)


def findings(terms: pd.DataFrame, blends: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, str]:
    """One computed sentence per data set: how large the cross terms are per kind of pair,
    which pair is the largest, what ignoring them costs Eq. 6's blend, and the verdict."""
    out = {}
    pairs = pair_table(terms)
    for dataset, g in size_per_seed(terms).groupby("dataset", sort=False):
        mine = pairs[pairs.dataset == dataset]
        top = mine.loc[mine.relative.abs().idxmax()]
        above = int((mine.relative.abs() > MARGIN).sum())
        eff = blends[blends.dataset == dataset].drop_duplicates(["combo", "seed", "epoch"])
        verdict = verdicts[verdicts.dataset == dataset].verdict.iat[0]
        by_kind = g.groupby("kind", sort=False)["mean"].mean()
        sizes = " and ".join(f"{by_kind[k]:.2f} between {k}" for k in KINDS if k in by_kind)
        out[dataset] = (
            f"**{dataset}**: the cross terms are on average {sizes}, as a share of their "
            f"diagonal terms; {above} of {len(mine)} pairs of heads are above {MARGIN:g} in size "
            f"(mean over seeds), the largest {top.pair} in {top.combo} ({top.relative:+.2f}); "
            f"the lowest OGR² any blend reaches is {eff.efficiency.median():.0%} of Eq. 6's "
            f"blend's at the median checkpoint (at the worst, {eff.efficiency.min():.0%}); "
            f"claim 18: {verdict}."
        )
    return out


def display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`pair_table` for a page: intervals in one column each, two decimals."""
    out = pd.DataFrame(
        {
            "data set": table.dataset,
            "modalities": table.combo,
            "pair of heads": table.pair,
            "C_jk / √(C_jj C_kk)": [
                f"{r.relative:+.2f} [{r.relative_low:+.2f}, {r.relative_high:+.2f}]"
                for r in table.itertuples()
            ],
            "seeds' range": [f"{r.seed_min:+.2f} to {r.seed_max:+.2f}" for r in table.itertuples()],
            "correlation (centered)": [f"{c:+.2f}" for c in table.correlation],
            "seeds": table.seeds,
        }
    )
    return out


def efficiency_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`efficiency_table` for a page, in percent."""
    return pd.DataFrame(
        {
            "data set": table.dataset,
            "modalities": table.combo,
            "epoch": table.epoch,
            "efficiency of Eq. 6, median": [f"{e:.0%}" for e in table.efficiency_median],
            "smallest": [f"{e:.0%}" for e in table.efficiency_min],
            "largest weight shift, mean": [f"{s:.2f}" for s in table.weight_shift],
            "seeds": table.seeds,
        }
    )
