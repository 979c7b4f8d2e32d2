"""The synthetic testbed's calibration: which settings of the generator show the paper's
Kinetics profile, judged on val only (never test) with seeds no chapter reports.

The profile (paper Table 1 on Kinetics): RGB best alone, flow next, audio weakest; naive late
fusion of every combination a little below its best constituent modality; the joint model
overfitting more than RGB alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from gblend.data import synthetic
from gblend.experiments.records import metric_column, overfitting
from gblend.experiments.regimes import setting
from gblend.experiments.registry import committed_at
from gblend.experiments.stats import HIGHER, paired_difference
from gblend.experiments.table1 import best_unimodal

RANKING = ("rgb", "flow", "audio")  # best to weakest alone
TARGET_GAP = (-4.0, -1.0)  # points: combination minus its best constituent modality, on val
FULL = "audio+rgb+flow"


def _overfitting(group: pd.DataFrame, combo: str) -> float:
    """Mean over seeds of val loss minus T' loss at the last epoch."""
    return float(overfitting(group[group.combo == combo], "val").mean())


def calibration_profile(runs: pd.DataFrame, selection: str = "last") -> pd.DataFrame:
    """One row per setting (variant): val accuracy (%) of each modality and combination at the
    epoch ``selection`` picks, each combination's gap to its best constituent modality, the
    joint model's overfitting beyond rgb's, and whether the setting meets the profile.

    Reads the val and T' columns only: a calibration must not see test.
    """
    val = metric_column("val", selection=selection)
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        acc = group.groupby("combo")[val].mean() * 100
        row: dict = {"variant": variant, "seeds": group.seed.nunique()}
        row |= {f"{m} alone": acc[m] for m in RANKING}
        gaps = {}
        for combo in [c for c in acc.index if "+" in c]:
            best = best_unimodal(group, among=combo.split("+"), selection=selection)
            gaps[combo] = acc[combo] - acc[best]
            row[f"gap {combo}"] = gaps[combo]
        ranked = tuple(acc[list(RANKING)].sort_values(ascending=False).index)
        row["ranking ok"] = ranked == RANKING
        row["gaps ok"] = all(TARGET_GAP[0] <= g <= TARGET_GAP[1] for g in gaps.values())
        row["overfit_joint_minus_rgb"] = _overfitting(group, FULL) - _overfitting(group, "rgb")
        row["meets profile"] = (
            row["ranking ok"] and row["gaps ok"] and row["overfit_joint_minus_rgb"] > 0
        )
        rows.append(row)
    return pd.DataFrame(rows)


def profile_display(profile: pd.DataFrame):
    """The profile table, formatted."""
    numbers = [c for c in profile.columns if c.endswith("alone") or c.startswith("gap")]
    return (
        profile.style.hide(axis="index")
        .format(precision=1, subset=numbers)
        .format(precision=3, subset=["overfit_joint_minus_rgb"])
    )


def preset_label(axes: Sequence[tuple[str, Any]]) -> str:
    """The variant label the current synthetic preset has in a grid over ``axes``
    (``data.<knob>`` names)."""
    params = synthetic.resolve(synthetic.KNOBS)
    flat = {p: params[p] for p in synthetic.GLOBAL_PARAMS} | {
        f"{m}_{p}": params[m][p] for m in synthetic.MODALITIES for p in synthetic.PARAMS
    }
    return ", ".join(f"{name}={flat[name.removeprefix('data.')]}" for name, _ in axes)


def choice_text(profile: pd.DataFrame, current: str | None = None) -> str:
    """A sentence naming the settings that meet the profile (and whether the current preset,
    labelled ``current``, is one), or saying that none does and which came closest (the most
    gaps in range, then the smallest distance to the range)."""
    meets = profile[profile["meets profile"]]
    if len(meets):
        text = (
            f"{len(meets)} of {len(profile)} settings meet the profile on val: "
            + "; ".join(f"`{v}`" for v in meets.variant)
            + "."
        )
        if current is not None:
            text += (
                " The current preset's setting is among them."
                if current in set(meets.variant)
                else f" The current preset's setting (`{current}`) is not."
            )
        return text
    gaps = profile[[c for c in profile.columns if c.startswith("gap ")]]
    low, high = TARGET_GAP
    in_range = ((gaps >= low) & (gaps <= high)).sum(axis=1)
    distance = (low - gaps).clip(lower=0).sum(axis=1) + (gaps - high).clip(lower=0).sum(axis=1)
    closest = profile.assign(in_range=in_range, distance=distance).sort_values(
        ["in_range", "distance"], ascending=[False, True]
    )
    best = closest.iloc[0]
    return (
        f"None of the {len(profile)} settings meets the profile on val. Closest: "
        f"`{best.variant}`, with {int(best.in_range)} of {gaps.shape[1]} combinations in the "
        f"target range and ranking {'as targeted' if best['ranking ok'] else 'off target'}. "
        "The preset is not changed on this evidence; a wider search is the next step."
    )


def glue_choice(profile: pd.DataFrame, current: str | None = None) -> None:
    from myst_nb import glue

    glue("calibration_choice", choice_text(profile, current), display=False)
    glue("target_gap", f"{TARGET_GAP[0]:+.0f} to {TARGET_GAP[1]:+.0f} points", display=False)


def schedule_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Val accuracy (%) at the last epoch, mean over seeds, of every model (columns) for each
    schedule length (rows), with the mean over the models."""
    runs = runs.assign(epochs=[setting(v)["epochs"] for v in runs.variant])
    table = runs.pivot_table(index="epochs", columns="combo", values="val_acc_last") * 100
    return table.assign(**{"mean over models": table.mean(axis=1)}).reset_index()


def schedule_choice(runs: pd.DataFrame, current: int) -> str:
    """The schedule val picks (highest mean val accuracy over every model and seed), compared
    with the runner-up on paired (model, seed) differences: a pick inside the noise is said to
    be one, and then the project's ``current`` schedule stands."""
    runs = runs.assign(epochs=[setting(v)["epochs"] for v in runs.variant])
    per = runs.pivot_table(index=["combo", "seed"], columns="epochs", values="val_acc_last") * 100
    ranked = per.mean().sort_values(ascending=False)
    best, second = ranked.index[0], ranked.index[1]
    diff = paired_difference(per[best], per[second])
    text = (
        f"On val, {best} epochs gives the highest accuracy, mean over every model and seed "
        f"{ranked[best]:.1f}%, {diff.mean:+.1f} points [{diff.low:+.1f}, {diff.high:+.1f}] "
        f"over {second} epochs ({diff.n} paired model-seed pairs). "
    )
    if diff.direction != HIGHER:
        return text + (
            f"That is within the noise, so val does not pick one; the scale's {current}-epoch "
            "schedule stands."
        )
    if best == current:
        return text + f"The scale's schedule, {current} epochs, is the one val picks."
    return text + (
        f"The scale's schedule is {current} epochs: val picks another, and the chapters "
        "have not been rerun with it."
    )


def profile_at(
    scale: str, results_dir: str | None = None, selection: str = "last"
) -> pd.DataFrame | None:
    """The calibration profile of another scale's committed grid, read without training
    (``None`` while that grid is incomplete): a page at one scale can show the other."""
    results = committed_at("calibration", scale, results_dir)
    return None if results is None else calibration_profile(results.runs, selection)


OTHER_SCALE = {"cpu": "full", "full": "cpu"}  # smoke pages test the pipeline: none


def other_scale_text(scale: str | None, profile: pd.DataFrame | None, current: str | None) -> str:
    """What the calibration at another scale says, or that it is not computed."""
    if scale is None:
        return "A `smoke` page shows no other scale's calibration."
    if profile is None:
        return f"The calibration grid at `{scale}` scale is not computed."
    return f"At `{scale}` scale: " + choice_text(profile, current)
