"""Paper Table 1 and Figure 4: every single modality and every combination, trained naively.

For each data set, every non-empty subset of its study modalities is trained as a late-fusion
network with the fused head's loss alone (a single modality is the same network with one
encoder). The best uni-modal model is chosen by mean *val* accuracy, never by test.

Every comparison is made at both epochs a run can be read at (:data:`SELECTIONS`): the last
epoch of the fixed schedule, on which the paper's claims are judged, and the best val epoch,
which is what early stopping gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from gblend.experiments.records import SELECTIONS, metric_column, overfitting
from gblend.experiments.stats import HIGHER, LOWER, PairedDifference, label, paired_difference

# The paper's modality names for our synthetic set, which is named after them.
PAPER_NAMES = {"audio": "A", "rgb": "RGB", "flow": "OF"}


def by_setting(runs: pd.DataFrame):
    """(data set, variant) groups: runs of different settings are never pooled."""
    return runs.groupby(["dataset", "variant"], sort=False)


def seed_values(runs: pd.DataFrame, combo: str, column: str) -> pd.Series:
    """``column`` of the runs of ``combo``, indexed by seed (ascending)."""
    return runs[runs.combo == combo].set_index("seed")[column].sort_index()


def best_unimodal(
    runs: pd.DataFrame, among: Sequence[str] | None = None, selection: str = "last"
) -> str:
    """The single modality with the highest mean val accuracy at the epoch ``selection``
    picks (``among``: allowed names)."""
    uni = runs[runs.n_modalities == 1]
    if among is not None:
        uni = uni[uni.combo.isin(among)]
    return str(uni.groupby("combo")[metric_column("val", selection=selection)].mean().idxmax())


def summarize(runs: pd.DataFrame, selections: Sequence[str] = tuple(SELECTIONS)) -> pd.DataFrame:
    """Per data set, multi-modal combination and selection: our Table 1 row (test accuracy,
    %) at the epoch the selection picks.

    ``delta`` is the paired per-seed difference joint - best constituent uni-modal model
    (chosen by val under the same selection), with its mean, std and 95% t-interval.
    """
    rows = []
    for (dataset, variant), group in by_setting(runs):
        for combo, selection in product(group[group.n_modalities > 1].combo.unique(), selections):
            parts = combo.split("+")
            best = best_unimodal(group, among=parts, selection=selection)
            test = metric_column("test", selection=selection)
            joint = seed_values(group, combo, test)
            uni = seed_values(group, best, test)
            seeds = joint.index.intersection(uni.index)
            diff = paired_difference(joint[seeds] * 100, uni[seeds] * 100)
            rows.append(
                {
                    "dataset": dataset,
                    "variant": variant,
                    "multi_modal": combo,
                    "selection": selection,
                    "multi_acc": joint.mean() * 100,
                    "multi_std": joint.std(ddof=1) * 100 if len(joint) > 1 else np.nan,
                    "best_uni": best,
                    "best_uni_acc": uni.mean() * 100,
                    "best_uni_std": uni.std(ddof=1) * 100 if len(uni) > 1 else np.nan,
                    "delta": diff.mean,
                    "delta_std": diff.std,
                    "delta_low": diff.low,
                    "delta_high": diff.high,
                    "seeds": diff.n,
                    "verdict": diff.direction,
                }
            )
    return pd.DataFrame(rows)


def claims(runs: pd.DataFrame) -> pd.DataFrame:
    """Verdicts on claims 1-3 (the paper's Table 1 and Figure 4), per data set, with the
    evidence in numbers; judged on the fixed schedule (the runs' last-epoch columns) by
    :func:`stats.label`."""
    runs = runs.assign(overfit_last=overfitting(runs, "val"))
    rows = []
    for (dataset, variant), group in by_setting(runs):
        summary = summarize(group)
        for row in (
            _claim1(dataset, summary),
            _claim2(dataset, group),
            _claim3(dataset, group),
        ):
            rows.append({"dataset": dataset, "variant": variant, **row})
    return pd.DataFrame(rows)


def _claim1(dataset: str, summary: pd.DataFrame) -> dict[str, Any]:
    """Every combination below its best uni-modal model, on the fixed schedule; the
    best-val-epoch counts are given beside."""

    def counts(selection: str) -> tuple[int, int, int]:
        part = summary[summary.selection == selection]
        return int((part.verdict == LOWER).sum()), int((part.verdict == HIGHER).sum()), len(part)

    last = summary[summary.selection == "last"]
    parts = [
        (PairedDifference(r.delta, r.delta_std, r.seeds, r.delta_low, r.delta_high, 0.95),
         LOWER, "pts")
        for r in last.itertuples()
    ]  # fmt: skip
    lower, higher, total = counts("last")
    detail = (
        f"fixed schedule: {lower} of {total} combinations below their best uni-modal model, "
        f"{higher} above, {total - lower - higher} with no detectable difference "
        "(paired seeds, 95% t-interval of test accuracy at the last epoch)"
    )
    if "best_val" in set(summary.selection):
        es_lower, es_higher, _ = counts("best_val")
        detail += f"; at the best val epoch (early stopping): {es_lower} below, {es_higher} above"
    return {
        "dataset": dataset,
        "claim": 1,
        "statement": "naive fusion is less accurate than the best uni-modal model",
        "verdict": label(parts),
        "evidence": detail,
    }


def _interval(diff: PairedDifference, unit: str = "pts") -> str:
    return f"{diff.mean:+.2f} {unit} [{diff.low:+.2f}, {diff.high:+.2f}] ({diff.direction})"


def _claim2(dataset: str, runs: pd.DataFrame) -> dict[str, Any]:
    """Read on the train loss (on T'), which does not saturate as train accuracy does."""
    full = max(runs.combo.unique(), key=lambda c: c.count("+"))
    best = best_unimodal(runs)
    train, val = (
        paired_difference(seed_values(runs, full, c), seed_values(runs, best, c))
        for c in ("train_subset_loss_last", "val_acc_last")
    )
    val = PairedDifference(val.mean * 100, val.std * 100, val.n, val.low * 100, val.high * 100,
                           val.confidence)  # fmt: skip
    detail = (
        f"{full} vs {best} at the last epoch: train loss on T' {_interval(train, unit='nats')}, "
        f"val accuracy {_interval(val)}"
    )
    return {
        "dataset": dataset,
        "claim": 2,
        "statement": "naive fusion fits train better (lower train loss) but "
        "generalises worse than the best uni-modal model",
        "verdict": label([(train, LOWER, "nats"), (val, LOWER, "pts")]),
        "evidence": detail,
    }


def _claim3(dataset: str, runs: pd.DataFrame) -> dict[str, Any]:
    """Overfitting as val loss minus train loss on T' at the last epoch."""
    uni = runs[runs.n_modalities == 1].groupby("combo").val_acc_last.mean()
    best, weakest = str(uni.idxmax()), str(uni.idxmin())
    full = max(runs.combo.unique(), key=lambda c: c.count("+"))
    gap = {c: seed_values(runs, c, "overfit_last") for c in (best, weakest, full)}
    weak_vs_best = paired_difference(gap[weakest], gap[best])
    joint_vs_best = paired_difference(gap[full], gap[best])
    detail = (
        f"val - T' loss at the last epoch: weakest {weakest} {gap[weakest].mean():.3f} nats, "
        f"best {best} {gap[best].mean():.3f}, joint {full} {gap[full].mean():.3f}; weakest "
        f"minus best {_interval(weak_vs_best, unit='nats')}, joint minus best "
        f"{_interval(joint_vs_best, unit='nats')}"
    )
    return {
        "dataset": dataset,
        "claim": 3,
        "statement": "the weakest modality overfits most, "
        "the best least, and the joint model more than the best alone",
        "verdict": label([(weak_vs_best, HIGHER, "nats"), (joint_vs_best, HIGHER, "nats")]),
        "evidence": detail,
    }


def figure4_curves(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Error curves (1 - accuracy) of the weakest and best uni-modal and the full joint model
    (ranked by val accuracy at the last epoch).

    Train is T', val is our val split; mean over seeds per epoch (paper Fig. 4 layout).
    """
    frames = []
    for (dataset, variant), group in by_setting(runs):
        uni = group[group.n_modalities == 1].groupby("combo").val_acc_last.mean()
        full = max(group.combo.unique(), key=lambda c: c.count("+"))
        roles = {
            str(uni.idxmin()): "weakest uni",
            str(uni.idxmax()): "best uni",
            full: "naive joint",
        }
        hist = history[
            (history.dataset == dataset)
            & (history.variant == variant)
            & history.combo.isin(roles)
            & history.split.isin(["train_subset", "val"])
            & (history["head"] == "joint")
        ].copy()
        hist["role"] = hist.combo.map(roles)
        hist["error"] = 1 - hist.acc
        frames.append(hist)
    curves = pd.concat(frames, ignore_index=True)
    curves["split"] = curves.split.map({"train_subset": "train", "val": "val"})
    return curves


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f} ± {std:.1f}"


def side_by_side(summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our Table 1 rows (mean ± std, delta with its interval), at each selection, beside the
    paper's Table 1.

    The paper's row is matched only on ``synthetic``, whose modalities are named after the
    paper's (A = audio, RGB = rgb, OF = flow); real data sets have no paper counterpart.
    """
    paper = paper.set_index("multi_modal")
    rows = []
    for row in summary.itertuples():
        parts = row.multi_modal.split("+")
        name = (
            " + ".join(PAPER_NAMES[m] for m in parts)
            if row.dataset == "synthetic" and set(parts) <= set(PAPER_NAMES)
            else None
        )
        rows.append(
            {
                "dataset": row.dataset,
                "multi-modal": row.multi_modal,
                "read at": SELECTIONS[row.selection],
                "ours: multi-modal acc": _pm(row.multi_acc, row.multi_std),
                "ours: best uni-modal acc": f"{row.best_uni}: "
                + _pm(row.best_uni_acc, row.best_uni_std),
                "ours: delta [95% CI]": f"{row.delta:+.1f} "
                f"[{row.delta_low:+.1f}, {row.delta_high:+.1f}]",
                "verdict": row.verdict,
                "seeds": row.seeds,
                "paper: multi-modal V@1": paper.multi_v1.get(name) if name else None,
                "paper: best uni V@1": paper.best_uni_v1.get(name) if name else None,
                "paper: drop": paper["drop"].get(name) if name else None,
            }
        )
    return pd.DataFrame(rows)


def compare_scales(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The delta (joint - best uni, with its interval and verdict) of each scale, side by side,
    at each selection."""
    frames = []
    for scale, summary in summaries.items():
        if summary.empty:
            continue
        part = summary.assign(read_at=summary.selection.map(SELECTIONS)).set_index(
            ["dataset", "multi_modal", "read_at"]
        )
        frames.append(
            pd.DataFrame(
                {
                    f"{scale}: delta [95% CI]": [
                        f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                        for d, lo, hi in zip(
                            part.delta, part.delta_low, part.delta_high, strict=True
                        )
                    ],
                    f"{scale}: verdict": part.verdict,
                    f"{scale}: seeds": part.seeds,
                },
                index=part.index,
            )
        )
    return pd.concat(frames, axis=1).reset_index() if frames else pd.DataFrame()
