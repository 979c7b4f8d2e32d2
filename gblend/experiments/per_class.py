"""Paper Figure 6 and claim 19: on which classes does G-Blend gain over the best single
modality?

The paper ranks Kinetics' classes by G-Blend's gain over the RGB model and finds audio-related
classes among the most improved and audio-unrelated ones among those that drop. Here, per data
set on its pair of modalities: the best uni-modal model (the modality with the higher mean val
accuracy at the same epoch), the other modality's own model (the *second* modality, the
paper's audio) and offline G-Blend on the pair, on paired seeds and splits, on the fixed
schedule. A class's *gain* is G-Blend's test accuracy on it minus the best uni-modal model's.
How *informative* the second modality is about a class is its own model's accuracy on the
class on **val**: measured on other samples than the gains, so that a class whose test samples
happen to be easy or hard cannot look both improved and informative.

Claim 19 in spirit, per seed: the mean gain on the classes where the second modality's model
is most accurate on val (above that seed's median class) minus the mean gain on those where
it is least accurate (below it; a class at the median is in neither half, so no tie is broken
by the order of the classes); *reproduced* when its paired 95% interval is above zero. The
Spearman correlation across classes of the same two quantities is shown beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sstats

from gblend.experiments.blending import (
    COLLAPSE,
    COLLAPSED,
    offline_weight_health,
    with_weight_health,
)
from gblend.experiments.stats import (
    CONTRADICTED,
    HIGHER,
    ONE_SEED,
    REPRODUCED,
    label,
    paired_difference,
)
from gblend.experiments.table1 import best_unimodal
from gblend.models import JOINT

# A class the best uni-modal model gets this right (mean test accuracy) leaves G-Blend no room
SATURATED = 0.99
NOT_EVIDENCE = "not evidence (saturated)"
UNDETERMINED = "undetermined (the second modality is as accurate on every class)"
STATEMENT = (
    "G-Blend's gains over the best uni-modal model are on the classes where the second "
    "modality is informative (in spirit: the paper's audio-related classes)"
)
# the columns of per_class_frame that hold an accuracy, and what each is
MODELS = {
    "best": "best uni-modal (test)",
    "gblend": "G-Blend (test)",
    "naive": "naive fusion (test)",
    "second": "second modality alone (test)",
    "second_val": "second modality alone (val)",
}


def pair_roles(runs: pd.DataFrame, dataset: str, selection: str = "last") -> tuple[str, str, str]:
    """A data set's pair, its best uni-modal modality (by mean val accuracy) and the other."""
    sub = runs[runs.dataset == dataset]
    pairs = sub[sub.n_modalities == 2].combo.unique()
    if len(pairs) != 1:
        raise ValueError(f"{dataset}: per-class gains need one pair of modalities, got {pairs}")
    combo = str(pairs[0])
    best = best_unimodal(sub, combo.split("+"), selection)
    (second,) = (m for m in combo.split("+") if m != best)
    return combo, best, second


def per_class_frame(
    runs: pd.DataFrame, classes: pd.DataFrame, selection: str = "last"
) -> pd.DataFrame:
    """One row per (data set, seed, class): the fused head's accuracy of each model of
    :data:`MODELS` on the class at the epoch ``selection`` picks, the roles and ``gain`` =
    G-Blend - best uni-modal (test)."""
    acc = classes[(classes["head"] == JOINT) & (classes.selection == selection)]
    frames = []
    for dataset in runs.dataset.unique():
        combo, best, second = pair_roles(runs, dataset, selection)
        mine = acc[acc.dataset == dataset]

        def pick(combo_: str, method: str, split: str, mine=mine) -> pd.Series:
            rows = mine[(mine.combo == combo_) & (mine.method == method) & (mine.split == split)]
            return rows.set_index(["seed", "class", "class_name"]).acc

        parts = {
            "best": pick(best, "naive", "test"),
            "gblend": pick(combo, "offline", "test"),
            "naive": pick(combo, "naive", "test"),
            "second": pick(second, "naive", "test"),
            "second_val": pick(second, "naive", "val"),
        }
        frame = pd.concat(parts, axis=1).dropna(subset=["best", "gblend", "second_val"])
        frame = frame.reset_index().astype({name: float for name in parts})
        frame.insert(0, "dataset", dataset)
        frames.append(frame.assign(combo=combo, best_uni=best, second_modality=second))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out.assign(gain=out.gblend - out.best) if len(out) else out


def class_table(frame: pd.DataFrame, best_val: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per data set and class (most improved first): each model's mean accuracy (%) over
    seeds and the gain's paired 95% t-interval over them, on the fixed schedule; with
    ``best_val`` (:func:`per_class_frame` at the best val epoch) the mean gain there too."""
    rows = []
    for (dataset, k, name), g in frame.groupby(["dataset", "class", "class_name"], sort=False):
        diff = paired_difference(g.gblend * 100, g.best * 100)
        rows.append(
            {"dataset": dataset, "class": k, "class_name": name}
            | {model: g[model].mean() * 100 for model in MODELS}
            | {"gain": diff.mean, "gain_low": diff.low, "gain_high": diff.high}
            | {"direction": diff.direction, "seeds": diff.n}
        )
    table = pd.DataFrame(rows)
    if best_val is not None:
        at_best = best_val.groupby(["dataset", "class"]).gain.mean().mul(100)
        table = table.join(at_best.rename("gain_best_val"), on=["dataset", "class"])
    return table.sort_values(["dataset", "gain"], ascending=[True, False], ignore_index=True)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`class_table` as the page shows it."""
    out = pd.DataFrame(
        {
            "data set": table.dataset,
            "class": table.class_name,
            **{MODELS[m]: table[m].round(1) for m in MODELS},
            "gain (pts)": [
                f"{r.gain:+.1f} [{r.gain_low:+.1f}, {r.gain_high:+.1f}] {r.direction}"
                for r in table.itertuples()
            ],
        }
    )
    if "gain_best_val" in table:
        out["gain at the best val epoch (pts)"] = table.gain_best_val.map("{:+.1f}".format)
    return out


def half_difference(frame: pd.DataFrame) -> pd.Series:
    """Per seed: the mean gain (points) on the classes above the seed's median val accuracy of
    the second modality minus that on the classes below it (none at the median)."""
    out = {}
    for seed, g in frame.groupby("seed"):
        median = g.second_val.median()
        high, low = g[g.second_val > median].gain, g[g.second_val < median].gain
        if len(high) and len(low):
            out[seed] = 100 * (high.mean() - low.mean())
    return pd.Series(out, dtype=float).sort_index()


def spearman(frame: pd.DataFrame) -> pd.Series:
    """Per seed: Spearman's correlation across classes of the gain and the second
    modality's val accuracy (NaN in a seed where either is constant)."""
    out = {}
    for seed, g in frame.groupby("seed"):
        constant = g.gain.nunique() < 2 or g.second_val.nunique() < 2
        out[seed] = np.nan if constant else float(sstats.spearmanr(g.gain, g.second_val)[0])
    return pd.Series(out, dtype=float).sort_index()


def _row(dataset: str, verdict: str, evidence: str) -> dict[str, object]:
    return {"dataset": dataset, "variant": "", "claim": 19, "statement": STATEMENT,
            "verdict": verdict, "evidence": evidence}  # fmt: skip


def claims(frame: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """Claim 19 per data set (see the module's text): :func:`stats.label` on the half
    difference; *collapses in k of n seeds* when that neither holds nor is contradicted while
    G-Blend fell more than :data:`~gblend.experiments.blending.COLLAPSE` points below the best
    uni-modal model in some seed (class-balanced accuracy), as on every page; *not evidence
    (saturated)* where the best uni-modal model is at least :data:`SATURATED` right on more
    than half the classes; *degenerate estimate* where G-Blend's weights were mostly policy
    fallbacks. The evidence gives the roles, the correlation, the spread of the second
    modality over classes and G-Blend's overall gain."""
    rows = []
    for dataset, g in frame.groupby("dataset", sort=False):
        halves = half_difference(g)
        if halves.empty:  # the second modality is equally accurate on every class
            no_halves = "no class above or below the second modality's median in any seed"
            rows.append(_row(dataset, UNDETERMINED, no_halves))
            continue
        diff = paired_difference(halves.values, np.zeros(len(halves)))
        verdict = label([(diff, HIGHER, "pts")])
        overall = g.groupby("seed")[["gblend", "best"]].mean() * 100  # class-balanced
        per_seed = overall.gblend - overall.best
        collapsed, n = int((per_seed < -COLLAPSE).sum()), len(per_seed)
        if collapsed and verdict not in (REPRODUCED, CONTRADICTED, ONE_SEED):
            verdict = f"{COLLAPSED} in {collapsed} of {n} seeds"
        per_class = g.groupby("class")[["best", "second_val"]].mean()
        saturated = int((per_class.best >= SATURATED).sum())
        if saturated > len(per_class) / 2:
            verdict = NOT_EVIDENCE
        gain = paired_difference(overall.gblend, overall.best)
        evidence = (
            f"best uni-modal: {g.best_uni.iat[0]}, second modality: {g.second_modality.iat[0]} "
            f"(val accuracy {100 * per_class.second_val.min():.0f}–"
            f"{100 * per_class.second_val.max():.0f}% over the classes); gain on the classes "
            f"where the second modality is most accurate − on those where it is least: "
            f"{diff.mean:+.1f} pts [{diff.low:+.1f}, {diff.high:+.1f}] ({diff.direction}, "
            f"expected higher; median {halves.median():+.1f}, {len(halves)} seeds)"
        )
        rho = spearman(g).dropna()
        if len(rho) > 1:
            r = paired_difference(rho.values, np.zeros(len(rho)))
            evidence += (
                f"; Spearman ρ(gain, second modality's val accuracy) {r.mean:+.2f} "
                f"[{r.low:+.2f}, {r.high:+.2f}] over {len(rho)} seeds"
            )
        evidence += (
            f"; G-Blend − best uni-modal, class-balanced: {gain.mean:+.1f} pts "
            f"[{gain.low:+.1f}, {gain.high:+.1f}]"
        )
        if collapsed:
            evidence += f", more than {COLLAPSE:g} pts below in {collapsed} of {n} seeds"
        evidence += (
            f"; {saturated} of {len(per_class)} classes at ≥ {SATURATED:.0%} for the best "
            "uni-modal model"
        )
        row = _row(dataset, verdict, evidence)
        if weights.empty:  # no estimate recorded: nothing to say about the weights
            rows.append(row)
            continue
        mine = weights[(weights.dataset == dataset) & (weights.method == "offline")]
        rows.append(with_weight_health(row, *offline_weight_health(mine, g.combo.iat[0])))
    return pd.DataFrame(rows)


def findings(table: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, str]:
    """One computed sentence per data set: the most improved and most dropped classes, the
    second modality's accuracy on them, and the verdict."""
    out = {}
    for dataset, t in table.groupby("dataset", sort=False):
        top, bottom = t.head(2), t.tail(2).iloc[::-1]

        def said(rows: pd.DataFrame) -> str:
            return ", ".join(
                f"{r.class_name} ({r.gain:+.1f} pts; second modality alone {r.second:.0f}%)"
                for r in rows.itertuples()
            )

        verdict = verdicts[verdicts.dataset == dataset].verdict.iat[0]
        out[dataset] = (
            f"**{dataset}**: G-Blend gains most on {said(top)} and least on {said(bottom)}; "
            f"claim 19: {verdict}."
        )
    return out
