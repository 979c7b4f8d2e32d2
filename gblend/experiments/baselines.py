"""Paper Figure 1, Tables 3 and 5: the baselines the paper says do not fix naive fusion, and
the optimizer comparison.

Every method is compared on the same seeds and splits with naive late fusion and with the best
uni-modal model (chosen by val), at both epochs of :data:`~gblend.experiments.records
.SELECTIONS`; the claims are judged on the fixed schedule. A method's knob (a dropout rate, a
patience, a learning rate) is the one its search chose on val with calibration seeds
(:mod:`gblend.experiments.selection`): the rows say which. A *setting* is what a table
compares within (an optimizer of Table 3); a *knob* is what was chosen for a method in it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from gblend.experiments import methods as gmethods
from gblend.experiments.blending import (
    COLLAPSE,
    DEGENERATE,
    _ci,
    _pm,
    claim_row,
    mean_weights,
    offline_weight_health,
    with_weight_health,
)
from gblend.experiments.grid import Grid
from gblend.experiments.records import SELECTIONS, metric_column
from gblend.experiments.registry import EXPERIMENTS
from gblend.experiments.stats import (
    CONTRADICTED,
    HIGHER,
    LOWER,
    NO_DIFFERENCE,
    NOT_DETECTABLE,
    ONE_SEED,
    PARTLY,
    REPRODUCED,
    PairedDifference,
    paired_difference,
)
from gblend.experiments.table1 import best_unimodal
from gblend.models import FUSIONS, JOINT, FusionNet, ModelConfig

BEST_UNI = "best uni"
# The rows of each page: the experiment's methods (the registry's), the best uni-modal first
FIGURE1_ROWS = (BEST_UNI, *EXPERIMENTS["figure1"].methods)
TABLE5_ROWS = EXPERIMENTS["table5"].methods
TABLE3_ROWS = (BEST_UNI, *EXPERIMENTS["table3"].methods)
# Claim 4's remedies that the paper says stay below the best uni-modal model, and the two it
# says gain over late concatenation
STAY_BELOW = ("pretrain", "early_stop", "se_gate", "nl_gate")
GAIN_OVER_NAIVE = ("dropout", "mid_concat")
# Claim 12 is about data sets where naive fusion already beats the best single modality
NOT_APPLICABLE = "does not apply (naive fusion does not beat the best uni-modal model here)"
# Claim 11: learned weights "end up about naive", judged as an equivalence at this margin
NAIVE_MARGIN = 1.0  # points


def label_of(method: str) -> str:
    return "best uni-modal" if method == BEST_UNI else gmethods.get(method).label


# Bar labels of the figures (the tables use the methods' labels)
SHORT_LABELS = {
    BEST_UNI: "best uni-modal",
    "naive": "late concat (naive)",
    "pretrain": "pre-training",
    "early_stop": "early stopping",
    "dropout": "dropout",
    "mid_concat": "mid concat",
    "se_gate": "SE gate",
    "nl_gate": "NL gate",
    "uniform": "equal weights",
    "uncertainty": "learned weights",
    "offline": "G-Blend (offline)",
}


def _parse(variant: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in variant.split(", ") if part]  # type: ignore[misc]


def with_setting(runs: pd.DataFrame, select: Sequence[str] = ()) -> pd.DataFrame:
    """``runs`` with ``setting`` (the swept settings but the selected ones: what a table
    compares within) and ``knob`` (the selected ones: what a search chose)."""
    out = runs.copy()
    parsed = out.variant.map(_parse)
    out["setting"] = parsed.map(lambda p: ", ".join(f"{k}={v}" for k, v in p if k not in select))
    out["knob"] = parsed.map(lambda p: ", ".join(f"{k}={v}" for k, v in p if k in select))
    return out


def _accuracy(sub: pd.DataFrame, combo: str, method: str, selection: str) -> pd.Series:
    """Test accuracy (%) per seed of a method on ``combo`` (the best uni-modal model: chosen
    by val among the combination's modalities, at the same epoch)."""
    test = metric_column("test", selection=selection)
    if method == BEST_UNI:
        rows = sub[sub.combo == best_unimodal(sub, combo.split("+"), selection)]
        rows = rows[rows.method == "naive"]
    else:
        rows = sub[(sub.combo == combo) & (sub.method == method)]
    return rows.set_index("seed")[test].sort_index() * 100


def _full_combo(sub: pd.DataFrame) -> str:
    return max(sub[sub.n_modalities > 1].combo.unique(), key=lambda c: c.count("+"))


def _difference(a: pd.Series, b: pd.Series) -> tuple[PairedDifference, pd.Series] | None:
    seeds = a.index.intersection(b.index)
    if a.empty or b.empty or seeds.empty:
        return None
    return paired_difference(a[seeds], b[seeds]), a[seeds] - b[seeds]


def compare(
    runs: pd.DataFrame,
    methods: Sequence[str],
    select: Sequence[str] = (),
    selections: Sequence[str] = tuple(SELECTIONS),
) -> pd.DataFrame:
    """Per data set, setting and selection, on the full combination: each method's test
    accuracy (mean, std, median over seeds), its knob, and its paired difference from naive
    fusion and from the best uni-modal model (mean, 95% t-interval, direction, and the seeds
    in which it fell more than :data:`COLLAPSE` points below)."""
    frame = with_setting(runs, select)
    rows = []
    for (dataset, setting), sub in frame.groupby(["dataset", "setting"], sort=False):
        combo = _full_combo(sub)
        for selection in selections:
            acc = {m: _accuracy(sub, combo, m, selection) for m in methods}
            for method in [m for m in methods if not acc[m].empty]:
                best = best_unimodal(sub, combo.split("+"), selection)
                a = acc[method]
                # the best uni-modal model's knob is its naive single-modality run's
                own = ("naive", best) if method == BEST_UNI else (method, combo)
                knob = sub[(sub.method == own[0]) & (sub.combo == own[1])].knob
                row = {
                    "dataset": dataset,
                    "setting": setting,
                    "combo": combo,
                    "selection": selection,
                    "method": method,
                    "knob": knob.iloc[0] if len(knob) else "",
                    "best_uni": best,
                    "acc": a.mean(),
                    "acc_std": a.std(ddof=1) if len(a) > 1 else float("nan"),
                    "median": a.median(),
                    "seeds": len(a),
                }
                for ref, tag in (("naive", "vs_naive"), (BEST_UNI, "vs_uni")):
                    if ref not in acc or method in (ref, BEST_UNI):
                        continue
                    pair = _difference(a, acc[ref])
                    if pair is None:
                        continue
                    diff, per_seed = pair
                    row |= {
                        tag: diff.mean,
                        f"{tag}_low": diff.low,
                        f"{tag}_high": diff.high,
                        f"{tag}_verdict": diff.direction,
                        f"{tag}_collapsed": int((per_seed < -COLLAPSE).sum()),
                    }
                rows.append(row)
    return pd.DataFrame(rows)


def display(comparison: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """A comparison as a page table: accuracy mean ± std and median; paired differences with
    their intervals and collapses; the chosen knob; the paper's number beside (``paper``:
    ``method`` -> ``v1``, per ``optimizer`` when the table has one)."""
    rows = []
    for _, row in comparison.iterrows():
        name = label_of(row.method) + (f" ({row.best_uni})" if row.method == BEST_UNI else "")
        out = {
            "dataset": row.dataset,
            **({"setting": row.setting} if comparison.setting.any() else {}),
            "read at": SELECTIONS[row.selection],
            "method": name,
            "chosen on val": row.knob or "—",
            "ours: acc": _pm(row.acc, row.acc_std),
            "ours: median": f"{row['median']:.1f}",
            "ours: vs naive": _ci(row, "vs_naive"),
            "ours: vs best uni": _ci(row, "vs_uni"),
            "seeds": row.seeds,
        }
        if paper is not None:
            match = paper[paper.method == row.method]
            if "optimizer" in paper and row.setting:
                match = match[match.optimizer == dict(_parse(row.setting)).get("train.optimizer")]
            out["paper: V@1"] = f"{match.v1.iloc[0]:.1f}" if len(match) else "—"
        rows.append(out)
    return pd.DataFrame(rows)


def _claim(dataset: str, number: int, statement: str, parts, evidence: str = "") -> dict:
    """:func:`~gblend.experiments.blending.claim_row` for a page without swept settings."""
    return {"variant": "", **claim_row(dataset, number, statement, parts, evidence)}


def _gap_note(sub: pd.DataFrame, combo: str) -> str:
    """Whether naive fusion is below the best uni-modal model here: claim 4 presupposes it."""
    naive, uni = (_accuracy(sub, combo, m, "last") for m in ("naive", BEST_UNI))
    pair = _difference(naive, uni)
    if pair is None:
        return ""
    diff, _ = pair
    where = {LOWER: "below", HIGHER: "above", NO_DIFFERENCE: "not detectably apart from"}
    return (
        f"here naive fusion is {where[diff.direction]} the best uni-modal model "
        f"({diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}])"
        + ("" if diff.direction == LOWER else ": there is no gap for a remedy to close")
    )


def figure1_claims(runs: pd.DataFrame, select: Sequence[str] = ()) -> pd.DataFrame:
    """Claim 4, per data set on its full combination and the fixed schedule: pre-training,
    early stopping, the SE gate and the NL gate stay below the best uni-modal model
    (each difference expected lower), while dropout and mid-level concatenation gain over
    late concatenation (expected higher); :func:`stats.label` over the six parts. The
    evidence says whether naive fusion is below the best uni-modal model there at all."""
    frame = with_setting(runs, select)
    rows = []
    for dataset, sub in frame.groupby("dataset", sort=False):
        combo = _full_combo(sub)
        acc = {m: _accuracy(sub, combo, m, "last") for m in FIGURE1_ROWS}
        parts = [(f"{m} − best uni", _difference(acc[m], acc[BEST_UNI]), LOWER) for m in STAY_BELOW]
        parts += [
            (f"{m} − naive", _difference(acc[m], acc["naive"]), HIGHER) for m in GAIN_OVER_NAIVE
        ]
        rows.append(
            _claim(
                dataset,
                4,
                "standard remedies and fusions do not close the gap: pre-training, early "
                "stopping, SE and NL gates stay below the best uni-modal model; dropout and "
                "mid-level concatenation gain over late concatenation",
                parts,
                _gap_note(sub, combo),
            )
        )
    return pd.DataFrame(rows)


class BlendedFusion(NamedTuple):
    """A network of claim 15: the variant of the figure page's offline G-Blend runs on it
    (mid fusion's experiment fixes its fusion, LMF's names it), the paper's words for it, and
    the suffix of its verdict's glue name (mid fusion's came first and has none)."""

    variant: str
    words: str
    glue_suffix: str


# Claim 15's networks, by the naive method of each
GBLEND_FUSIONS = {
    "mid_concat": BlendedFusion("", "mid fusion", ""),
    "lmf": BlendedFusion("model.fusion=lmf", "LMF", "lmf"),
}


def on_fusion(frame: pd.DataFrame, naive: str) -> pd.DataFrame:
    """The rows of ``frame`` (runs or weights) of naive training and offline G-Blend on the
    network of ``naive`` (a key of :data:`GBLEND_FUSIONS`), with the fusion dropped from the
    variant, so that they compare with the uni-modal runs."""
    variant = GBLEND_FUSIONS[naive].variant
    mine = frame.method.isin([naive, "offline"]) & (frame.variant == variant)
    return frame[mine].assign(variant="")


def fusion_claims(runs: pd.DataFrame, weights: pd.DataFrame, naive: str) -> pd.DataFrame:
    """Claim 15 on the network of ``naive`` (mid fusion or LMF), per data set: offline G-Blend
    on it beats naive training of it (expected higher), with the share of policy fallbacks
    among its weights (mostly fallbacks: a degenerate estimate)."""
    fusion = GBLEND_FUSIONS[naive].words
    runs, weights = on_fusion(runs, naive), on_fusion(weights, naive)
    rows = []
    for dataset, sub in runs.groupby("dataset", sort=False):
        combo = _full_combo(sub)
        pair = _difference(
            _accuracy(sub, combo, "offline", "last"), _accuracy(sub, combo, naive, "last")
        )
        row = _claim(
            dataset,
            15,
            f"G-Blend improves {fusion}",
            [(f"G-Blend on {fusion} − naive {fusion}", pair, HIGHER)],
        )
        row["variant"] = GBLEND_FUSIONS[naive].glue_suffix
        mine = weights[(weights.dataset == dataset) & (weights.method == "offline")]
        joint = mine[(mine["head"] == JOINT) & (mine.super_epoch == 0)].weight
        if len(joint):  # a starved fused head is the collapse's mechanism (estimator page)
            row["evidence"] += (
                f"; fused-head weight {joint.min():.2f}–{joint.max():.2f} (mean {joint.mean():.2f})"
            )
        rows.append(with_weight_health(row, *offline_weight_health(mine, combo)))
    return pd.DataFrame(rows)


def equivalent(diff: PairedDifference, margin: float) -> str:
    """Two-sided equivalence at ``margin``: *reproduced* when the interval lies within
    ±margin, *contradicted* when it lies wholly outside it, else *not detectable*."""
    if diff.n < 2:
        return ONE_SEED
    if -margin <= diff.low and diff.high <= margin:
        return REPRODUCED
    if diff.low > margin or diff.high < -margin:
        return CONTRADICTED
    return f"{NOT_DETECTABLE} (these seeds detect about ±{(diff.high - diff.low) / 2:.2g} pts)"


# A fused-head learned weight below this at the last epoch, after a higher peak: it fell back
def fine_tuning_start(history: pd.DataFrame) -> pd.DataFrame:
    """Where pre-training goes wrong (claim 4), per data set's full combination: the fused
    head's accuracy (%) on T' and on val after the first epoch and at the last, for the
    pre-trained network (its epochs are the fine-tuning's, from the uni-modal encoders)
    beside naive fusion from scratch; medians over seeds."""
    h = history[(history["head"] == JOINT) & history.method.isin(("pretrain", "naive"))]
    size = h.combo.str.count(r"\+")
    h = h[size == size.groupby(h.dataset).transform("max")]
    rows = []
    for (dataset, method), g in h.groupby(["dataset", "method"], sort=False):
        acc = g.pivot_table(index=["seed", "epoch"], columns="split", values="acc") * 100
        epoch = acc.index.get_level_values("epoch")
        first = acc[epoch == 1].median()  # epoch 0 is the evaluation before any step
        last = acc[epoch == epoch.max()].median()
        rows.append(
            {
                "dataset": dataset,
                "method": label_of(method),
                "T′ after epoch 1": first["train_subset"],
                "val after epoch 1": first["val"],
                "T′ at the last epoch": last["train_subset"],
                "val at the last epoch": last["val"],
                "seeds": int(acc.index.get_level_values("seed").nunique()),
            }
        )
    return pd.DataFrame(rows)


def fine_tuning_findings(start: pd.DataFrame) -> dict[str, str]:
    """One sentence per data set from :func:`fine_tuning_start`."""
    out = {}
    pre, naive = label_of("pretrain"), label_of("naive")
    for dataset, d in start.groupby("dataset", sort=False):
        by = d.set_index("method")
        if not {pre, naive} <= set(by.index):
            continue
        p, n = by.loc[pre], by.loc[naive]
        out[dataset] = (
            f"{dataset}: after one epoch of fine-tuning the pre-trained fused head fits "
            f"{p['T′ after epoch 1']:.0f}% of T′ (naive from scratch: "
            f"{n['T′ after epoch 1']:.0f}%) and reads {p['val after epoch 1']:.0f}% on val; it "
            f"ends at {p['T′ at the last epoch']:.0f}% of T′ and {p['val at the last epoch']:.0f}%"
            f" on val, naive at {n['T′ at the last epoch']:.0f}% and "
            f"{n['val at the last epoch']:.0f}% (medians over {int(p.seeds)} seeds)."
        )
    return out


RUNAWAY_WEIGHT = 0.05


def learned_weight_drift(learned: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Claim 11's second half, per run of the learned-weights baseline: the head its learned
    weight favours at the last epoch, and the head with the lowest loss on the train subset
    T' then (the paper: the weights drift to it, the fused head); the fused head's peak
    weight over training, its epoch, and the fused head's test accuracy (%) at the last epoch
    (the learned log-variances have no bound: see :func:`learned_weight_findings`)."""
    rows = []
    for (dataset, seed), w in learned.groupby(["dataset", "seed"], sort=False):
        last = w[w.epoch == w.epoch.max()].set_index("head").weight
        joint = w[w["head"] == JOINT].set_index("epoch").weight
        mine = (history.dataset == dataset) & (history.seed == seed)
        runs = history[mine & (history.method == "uncertainty")]
        h = runs[runs.split == "train_subset"]
        h = h[h.epoch == h.epoch.max()].set_index("head").loss
        test = runs[(runs.split == "test") & (runs["head"] == JOINT)]
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "favoured": last.idxmax(),
                "favoured_weight": last.max(),
                "lowest_train_loss": h.idxmin() if len(h) else "",
                "joint_weight": last.get(JOINT, np.nan),
                "peak_joint_weight": joint.max() if len(joint) else np.nan,
                "peak_epoch": int(joint.idxmax()) if len(joint) else -1,
                "last_test_acc": 100 * test[test.epoch == test.epoch.max()].acc.mean(),
            }
        )
    return pd.DataFrame(rows)


def learned_weight_findings(drift: pd.DataFrame) -> dict[str, str]:
    """Per data set, what the learned weights did: the fused head's weight grows while its
    training loss goes to zero (its log-variance falls without bound, so its effective
    learning rate grows), and a step can then blow the network up; the seeds whose fused-head
    weight has fallen back below :data:`RUNAWAY_WEIGHT` by the last epoch are named, with the
    test accuracy their runs end at."""
    out = {}
    for dataset, d in drift.groupby("dataset", sort=False):
        text = (
            f"{dataset}: the fused head's learned weight peaks at "
            f"{d.peak_joint_weight.median():.2f} (median over {len(d)} seeds, at epoch "
            f"{int(d.peak_epoch.median())})"
        )
        fell = d[(d.joint_weight < RUNAWAY_WEIGHT) & (d.peak_joint_weight > d.joint_weight)]
        if len(fell):
            text += (
                f"; in {len(fell)} of {len(d)} seeds ({', '.join(map(str, fell.seed))}) it has "
                f"fallen below {RUNAWAY_WEIGHT} by the last epoch, and those runs end at "
                f"{fell.last_test_acc.mean():.1f}% test accuracy"
            )
            others = d.drop(fell.index)
            if len(others):
                text += f" (the others at {others.last_test_acc.mean():.1f}%)"
        else:
            text += f"; in no seed has it fallen below {RUNAWAY_WEIGHT} by the last epoch"
        out[dataset] = text + "."
    return out


def table5_claims(
    runs: pd.DataFrame, weights: pd.DataFrame, drift: pd.DataFrame, select: Sequence[str] = ()
) -> pd.DataFrame:
    """Claims 11 and 12 per data set, on the full combination and the fixed schedule.

    11: learned uncertainty weights end up about naive (the paired difference within
    ±:data:`NAIVE_MARGIN` points, :func:`equivalent`) and favour the head with the lowest
    train loss (in every seed whose run did not collapse: after a blow-up the one head still
    trained has both, which says nothing of a drift; with every run collapsed that half is
    not judged); *reproduced* when both hold, *partly* when one does.
    12: where naive fusion already beats the best uni-modal model (detectably), G-Blend
    still improves on naive (expected higher); elsewhere the claim does not apply.
    """
    frame = with_setting(runs, select)
    rows = []
    for dataset, sub in frame.groupby("dataset", sort=False):
        combo = _full_combo(sub)
        acc = {
            m: _accuracy(sub, combo, m, "last")
            for m in ("naive", "uncertainty", "offline", BEST_UNI)
        }
        pair = _difference(acc["uncertainty"], acc["naive"])
        d = drift[drift.dataset == dataset]
        statement = (
            "learned (uncertainty) weights end up about naive and favour the head with the "
            "lowest train loss"
        )
        if pair is None or d.empty:
            rows.append(
                {
                    "dataset": dataset,
                    "variant": "",
                    "claim": 11,
                    "statement": statement,
                    "verdict": "undetermined (not run)",
                    "evidence": "",
                }
            )
        else:
            diff, per_seed = pair
            near = equivalent(diff, NAIVE_MARGIN)
            collapsed = per_seed[per_seed < -COLLAPSE].index
            kept = d[~d.seed.isin(collapsed)]
            drifts = int((kept.favoured == kept.lowest_train_loss).sum())
            holds = [near == REPRODUCED] + ([drifts == len(kept)] if len(kept) else [])
            if near == ONE_SEED:
                verdict = ONE_SEED
            elif all(holds):
                verdict = REPRODUCED
            elif any(holds):
                verdict = PARTLY
            else:  # neither holds: contradicted, or the equivalence is not detectable
                verdict = near
            favoured = ", ".join(f"{h} in {n}" for h, n in d.favoured.value_counts().items())
            judged = (
                f"the lowest train loss's head in {drifts} of the {len(kept)} that did not "
                f"collapse (more than {COLLAPSE:g} pts below naive in {len(collapsed)})"
                if len(collapsed)
                else f"the lowest train loss's head in {drifts}"
            )
            rows.append(
                {
                    "dataset": dataset,
                    "variant": "",
                    "claim": 11,
                    "statement": statement,
                    "verdict": verdict,
                    "evidence": (
                        f"learned − naive {diff.mean:+.1f} pts [{diff.low:+.1f}, {diff.high:+.1f}] "
                        f"(median {per_seed.median():+.1f}; within ±{NAIVE_MARGIN:g}: {near}); "
                        f"the largest learned weight at the last epoch is on {favoured} of "
                        f"{len(d)} seeds, {judged}; mean fused-head weight "
                        f"{d.joint_weight.mean():.2f}"
                    ),
                }
            )
        gap = _difference(acc["naive"], acc[BEST_UNI])
        statement = "G-Blend helps even where naive fusion already beats the best uni-modal model"
        if gap is not None and gap[0].direction == HIGHER:
            row = _claim(
                dataset,
                12,
                statement,
                [("G-Blend − naive", _difference(acc["offline"], acc["naive"]), HIGHER)],
                f"naive − best uni {gap[0].mean:+.1f} [{gap[0].low:+.1f}, {gap[0].high:+.1f}]",
            )
            health = offline_weight_health(weights[weights.dataset == dataset], combo)
            rows.append(with_weight_health(row, *health))
        else:
            said = (
                ""
                if gap is None
                else f" {gap[0].mean:+.1f} [{gap[0].low:+.1f}, {gap[0].high:+.1f}]"
            )
            one_seed = gap is not None and gap[0].n < 2
            rows.append(
                {
                    "dataset": dataset,
                    "variant": "",
                    "claim": 12,
                    "statement": statement,
                    "verdict": ONE_SEED if one_seed else NOT_APPLICABLE,
                    "evidence": f"naive − best uni{said}",
                }
            )
    return pd.DataFrame(rows)


def table5_weights(weights: pd.DataFrame) -> pd.DataFrame:
    """G-Blend's offline weights per data set on its full combination (mean ± std over
    seeds), with the count of policy fallbacks, as the paper's Table 5 prints its weights."""
    mw = mean_weights(weights)
    full = mw.groupby("dataset").combo.transform(lambda c: max(c, key=lambda x: x.count("+")))
    mw = mw[mw.combo == full]
    return pd.DataFrame(
        {
            "dataset": mw.dataset,
            "combo": mw.combo,
            "head": mw["head"],
            "weight %": [
                _pm(m * 100, s * 100) for m, s in zip(mw.weight, mw.weight_std, strict=True)
            ],
            "fallbacks": mw.fallbacks.astype(int),
            "seeds": mw.seeds,
        }
    ).reset_index(drop=True)


OPTIMIZER = "train.optimizer"


def table3_claims(runs: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """Claim 14 per data set, on the full combination and the fixed schedule, each method at
    the learning rate its search chose: under AdaGrad and under Adam, G-Blend beats the best
    uni-modal model and naive fusion (expected higher); SGD's G-Blend beats theirs (higher);
    naive fusion's gap to the best uni-modal model is larger under each than under SGD
    (the paired difference of the gaps, expected lower). :func:`stats.label` over the parts."""
    frame = with_setting(runs, ("train.lr",))
    rows = []
    for dataset, sub in frame.groupby("dataset", sort=False):
        combo = _full_combo(sub)
        by_opt = {dict(_parse(s)).get(OPTIMIZER, "sgd"): g for s, g in sub.groupby("setting")}
        acc = {
            (o, m): _accuracy(g, combo, m, "last") for o, g in by_opt.items() for m in TABLE3_ROWS
        }
        parts = []
        sgd_gap = acc["sgd", "naive"] - acc["sgd", BEST_UNI]
        for opt in ("adagrad", "adam"):
            if (opt, "offline") not in acc:
                continue
            gblend, naive, uni = acc[opt, "offline"], acc[opt, "naive"], acc[opt, BEST_UNI]
            parts += [
                (f"{opt}: G-Blend − best uni", _difference(gblend, uni), HIGHER),
                (f"{opt}: G-Blend − naive", _difference(gblend, naive), HIGHER),
                (f"SGD's G-Blend − {opt}'s", _difference(acc["sgd", "offline"], gblend), HIGHER),
                (f"{opt}'s naive gap − SGD's", _difference(naive - uni, sgd_gap), LOWER),
            ]
        row = _claim(
            dataset,
            14,
            "G-Blend beats the best uni-modal model and naive fusion under AdaGrad and Adam; "
            "SGD gives the best G-Blend; naive fusion's gap is larger under the adaptive "
            "optimizers",
            parts,
        )
        w = weights[(weights.dataset == dataset) & (weights.method == "offline")]
        w = w[(w.combo == combo) & (w["head"] != JOINT)]
        fell = w.fallbacks.astype(bool)
        if len(fell) and fell.mean() > 0.5:
            row = {**row, "verdict": DEGENERATE}
        if len(fell):
            per = fell.groupby(w.optimizer, sort=False).agg(["sum", "size"])
            row["evidence"] += (
                f"; offline weights: {int(fell.sum())} of {len(fell)} modality-head estimates "
                "are fallbacks ("
                + ", ".join(f"{o} {int(r['sum'])} of {int(r['size'])}" for o, r in per.iterrows())
                + ")"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def optimizer_weights(weights: pd.DataFrame) -> pd.DataFrame:
    """Offline G-Blend's weights per data set and optimizer (mean ± std over seeds): the
    weights derived for SGD, estimated under each optimizer."""
    w = weights[(weights.method == "offline") & (weights.super_epoch == 0)]
    w = w.assign(optimizer=w.optimizer.fillna("sgd"))
    full = w.groupby("dataset").combo.transform(lambda c: max(c, key=lambda x: x.count("+")))
    w = w[w.combo == full]
    out = w.groupby(["dataset", "optimizer", "head"], sort=False).weight.agg(["mean", "std"])
    out["weight"] = [_pm(m * 100, s * 100) for m, s in zip(out["mean"], out["std"], strict=True)]
    wide = out.weight.unstack("head").reset_index()
    wide.columns.name = None
    return wide


def findings(comparison: pd.DataFrame, methods: Sequence[str]) -> dict[str, str]:
    """One sentence per data set and setting on the fixed schedule: naive fusion against the
    best uni-modal model, then each method against both, and which methods are detectably
    above naive fusion without being detectably below the best uni-modal model (they close
    the gap, where there is one)."""
    out = {}
    part = comparison[comparison.selection == "last"]
    for (dataset, setting), rows in part.groupby(["dataset", "setting"], sort=False):
        by = rows.set_index("method")
        where = dataset + (f" ({setting})" if setting else "")
        naive = by.loc["naive"]
        said = [
            f"**{where}**: naive fusion {naive.acc:.1f}%, {naive.vs_uni:+.1f} "
            f"[{naive.vs_uni_low:+.1f}, {naive.vs_uni_high:+.1f}] against the best uni-modal "
            f"model ({naive.best_uni}, {by.loc[BEST_UNI].acc:.1f}%)"
        ]
        closing = []
        for method in [m for m in methods if m in by.index and m not in ("naive", BEST_UNI)]:
            r = by.loc[method]
            said.append(
                f"{label_of(method)} {r.vs_naive:+.1f} [{r.vs_naive_low:+.1f}, "
                f"{r.vs_naive_high:+.1f}] over naive, {r.vs_uni:+.1f} [{r.vs_uni_low:+.1f}, "
                f"{r.vs_uni_high:+.1f}] over best uni"
                + (f" ({int(r.vs_naive_collapsed)} collapsed)" if r.vs_naive_collapsed else "")
            )
            if r.vs_naive_verdict == HIGHER and r.vs_uni_verdict != LOWER:
                closing.append(label_of(method))
        said.append(
            "detectably above naive fusion and not detectably below the best uni-modal model: "
            + (", ".join(closing) if closing else "none")
        )
        values = "_".join(v for _, v in _parse(setting))  # a glue name: letters, digits, _
        out[re.sub(r"\W", "_", f"{dataset}_{values}".rstrip("_"))] = "; ".join(said) + "."
    return out


def fusion_parameters(grids: Sequence[Grid]) -> pd.DataFrame:
    """Parameters of the naive network of each fusion on each data set's full combination in
    ``grids``, and their change from late concatenation (the paper: mid-concat has 37% fewer)."""
    from gblend.experiments.runner import load_unit_data

    rows = []
    units = [u for grid in grids for u in grid]
    for dataset in dict.fromkeys(u.dataset for u in units):
        unit = max((u for u in units if u.dataset == dataset), key=lambda u: len(u.modalities))
        data = load_unit_data(unit)
        counts = {}
        for fusion in FUSIONS:
            net = FusionNet(data.specs, data.n_classes, ModelConfig(fusion=fusion))
            counts[fusion] = sum(p.numel() for p in net.parameters())
        for fusion, count in counts.items():
            rows.append(
                {
                    "dataset": dataset,
                    "combo": unit.combo,
                    "fusion": fusion,
                    "parameters": count,
                    "vs late concat": f"{count / counts['late'] - 1:+.0%}",
                }
            )
    return pd.DataFrame(rows)
