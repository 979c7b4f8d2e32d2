"""Where naive fusion falls below the best single modality, swept over settings.

The dose-response (the synthetic testbed): the gap joint - best uni-modal and each model's
overfitting over the weak modality's memorisability (its sample-specific noise dimensions, 0
the control) and the size of the train split. The regime map (the real data): best uni-modal,
naive, equal-weight and offline G-Blend over the train split's size (and encoder width at
full). Both read the fixed schedule (the last epoch) unless told otherwise; every interval is a
paired 95% t-interval over seeds, within one setting.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sstats

from gblend.experiments.blending import compare_methods, offline_weight_health
from gblend.experiments.records import metric_column, overfitting
from gblend.experiments.registry import (
    Cell,
    committed_at,
    committed_cells,
    committed_datasets,
    get,
)
from gblend.experiments.stats import HIGHER, LOWER, paired_difference
from gblend.experiments.table1 import seed_values, summarize
from gblend.models import ModelConfig


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def setting(variant: str) -> dict[str, Any]:
    """A variant label as ``{short name: value}``: ``"data.train_frac=0.5"`` ->
    ``{"train_frac": 0.5}`` (``""``, the default setting, -> ``{}``)."""
    out = {}
    for part in filter(None, variant.split(", ")):
        name, _, value = part.partition("=")
        out[name.rsplit(".", 1)[-1]] = _value(value)
    return out


def _overfitting(runs: pd.DataFrame, combo: str) -> dict[str, float]:
    """heldout minus T' loss at the last epoch: mean and 95% interval over seeds."""
    rows = runs[runs.combo == combo].sort_values("seed")
    diff = paired_difference(overfitting(rows), [0.0] * len(rows))
    return {"mean": diff.mean, "low": diff.low, "high": diff.high}


def _excess_overfitting(runs: pd.DataFrame, combo: str, best: str):
    """The joint model's overfitting (heldout - T' loss) minus its best modality's, paired
    over seeds."""

    def per_seed(c: str) -> pd.Series:
        return overfitting(runs[runs.combo == c].set_index("seed").sort_index())

    joint, uni = per_seed(combo), per_seed(best)
    seeds = joint.index.intersection(uni.index)
    return paired_difference(joint[seeds], uni[seeds])


def dose_response(
    runs: pd.DataFrame, combo: str = "audio+rgb", selection: str = "last"
) -> pd.DataFrame:
    """One row per setting: the train split's size, the gap (test accuracy, points) of
    ``combo`` to its best constituent modality with its interval and verdict, and the
    overfitting (heldout - T' loss) of every model of ``combo``."""
    gaps = summarize(runs, selections=(selection,))
    gaps = gaps[gaps.multi_modal == combo].set_index("variant")
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        gap = gaps.loc[variant]
        row = setting(variant) | {
            "n_train": int(group.n_train.iloc[0]),
            "best_uni": gap.best_uni,
            "gap": gap.delta,
            "gap_low": gap.delta_low,
            "gap_high": gap.delta_high,
            "verdict": gap.verdict,
            "seeds": int(gap.seeds),
        }
        excess = _excess_overfitting(group, combo, gap.best_uni)
        row |= {
            "overfit_excess": excess.mean,
            "overfit_excess_low": excess.low,
            "overfit_excess_high": excess.high,
            "overfit_excess_verdict": excess.direction,
        }
        for model in [*combo.split("+"), combo]:
            over = _overfitting(group, model)
            name = "joint" if model == combo else model
            row |= {f"overfit_{name}": over["mean"], f"overfit_{name}_low": over["low"]}
            row[f"overfit_{name}_high"] = over["high"]
        rows.append(row)
    return pd.DataFrame(rows)


def dose_findings(table: pd.DataFrame, dose: str = "audio_noise_dims") -> list[str]:
    """Sentences that hold the dose-response against the paper's explanation: no gap without
    memorisable dimensions (the control), a gap that grows with them and shrinks with data.
    Each sentence says what the numbers show, whether it matches or not."""
    control = table[table[dose] == 0]
    below_control = int((control.verdict == LOWER).sum())
    out = [
        f"Control (0 noise dimensions): the joint model is detectably below its best "
        f"uni-modal model at {below_control} of {len(control)} training-set sizes "
        + ("(expected: none)." if below_control else "(as expected: none).")
    ]
    rho = sstats.spearmanr(table[dose], table.gap).statistic
    grows = [
        int(size)
        for size, part in table.groupby("n_train")
        if part.sort_values(dose).gap.iloc[-1] < part.sort_values(dose).gap.iloc[0]
    ]
    sizes = table.n_train.nunique()
    out.append(
        f"Memorisability: at {len(grows)} of {sizes} sizes the gap at the most noise "
        f"dimensions is below the gap at 0; rank correlation of gap with noise dimensions "
        f"{rho:+.2f} over all {len(table)} cells "
        + ("(expected: negative)." if rho >= 0 else "(negative, as expected).")
    )
    noisy = table[table[dose] > 0]
    shrinks = [
        d
        for d, part in noisy.groupby(dose)
        if part.sort_values("n_train").gap.iloc[-1] > part.sort_values("n_train").gap.iloc[0]
    ]
    out.append(
        f"Data: with memorisable dimensions, the gap at the largest train split is above the "
        f"gap at the smallest for {len(shrinks)} of {noisy[dose].nunique()} noise levels "
        "(expected: all)."
    )
    more = table.overfit_excess_verdict == HIGHER
    out.append(
        f"Overfitting: the joint model overfits more than its best modality (heldout - T' "
        f"loss, paired) in {int(more.sum())} of {len(table)} cells, and in "
        f"{int((more & (table.verdict == LOWER)).sum())} of the "
        f"{int((table.verdict == LOWER).sum())} cells where naive fusion is detectably below it."
    )
    lower = table[table.verdict == LOWER]
    out.append(
        f"Detectable: naive fusion is detectably below its best uni-modal model in "
        f"{len(lower)} of {len(table)} cells"
        + (
            ": "
            + "; ".join(f"{int(r[dose])} dims, {int(r.n_train)} train" for _, r in lower.iterrows())
            if len(lower)
            else ""
        )
        + f"; detectably above in {int((table.verdict == HIGHER).sum())}. "
        + _resolution(table, "gap")
    )
    return out


def _resolution(table: pd.DataFrame, column: str) -> str:
    """What the seeds could detect: the median half-width of the cells' intervals."""
    half = ((table[f"{column}_high"] - table[f"{column}_low"]) / 2).replace(np.inf, np.nan)
    if half.isna().all():
        return "With one seed per cell nothing is detectable."
    return (
        f"With {int(table.seeds.min())} seeds a cell detects a difference of about "
        f"{half.median():.1f} points (median half-width of the intervals; "
        f"{half.min():.1f} to {half.max():.1f})."
    )


def _weight_note(weights: pd.DataFrame, dataset: str, variant: str, combo: str) -> str:
    if weights.empty:
        return ""
    part = weights[(weights.dataset == dataset) & (weights.variant == variant)]
    return offline_weight_health(part, combo)[1].removeprefix("offline weights: ")


def _val_choice_turns(
    runs: pd.DataFrame, combo: str, best: str, verdict: str, selection: str
) -> str:
    """Where val's choice of the best uni-modal model decides naive's verdict: each other
    modality of ``combo`` that is higher than ``best`` on test and against which naive's
    verdict is not ``verdict``, with naive's paired difference from it (``""`` where none)."""
    naive = runs[runs.method == "naive"]

    def per_seed(c: str, split: str = "test") -> pd.Series:
        return seed_values(naive, c, metric_column(split, selection=selection)) * 100

    joint, chosen = per_seed(combo), per_seed(best)
    turns = []
    for other in (m for m in combo.split("+") if m != best):
        uni = per_seed(other)
        seeds = joint.index.intersection(uni.index)
        diff = paired_difference(joint[seeds], uni[seeds])
        if uni.mean() > chosen.mean() and diff.direction != verdict:
            behind = per_seed(best, "val").mean() - per_seed(other, "val").mean()
            turns.append(
                f"{other}, {behind:.2f} points below on val, is higher on test "
                f"({uni.mean():.1f}% against {chosen.mean():.1f}%), and naive - {other} is "
                f"{diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}], {diff.direction}"
            )
    return "; ".join(turns)


def regime_map(
    runs: pd.DataFrame, weights: pd.DataFrame | None = None, selection: str = "last"
) -> pd.DataFrame:
    """One row per data set and setting: test accuracy (%) of best uni-modal, naive,
    equal-weight and offline G-Blend on the study combination, naive - best uni and
    offline - naive with their intervals and verdicts, where val's choice of the best
    uni-modal model decides naive's verdict, and how many offline weights were policy
    fallbacks."""
    compared = compare_methods(runs, selections=(selection,))
    rows = []
    for (dataset, variant), part in compared.groupby(["dataset", "variant"], sort=False):
        by = part.set_index("method")
        naive, offline = by.loc["naive"], by.loc["offline"]
        combo = str(naive.combo)
        row = {"dataset": dataset, **setting(variant), "combo": combo}
        cell = runs[(runs.dataset == dataset) & (runs.variant == variant)]
        row["n_train"] = int(cell.n_train.max())
        row |= {f"{m} acc": by.loc[m, "acc"] for m in ("best uni", "naive", "uniform", "offline")}
        row |= {
            "best_uni": naive.best_uni,
            "naive_vs_uni": naive.vs_uni,
            "naive_vs_uni_low": naive.vs_uni_low,
            "naive_vs_uni_high": naive.vs_uni_high,
            "naive_vs_uni_verdict": naive.vs_uni_verdict,
            "offline_vs_naive": offline.vs_naive,
            "offline_vs_naive_low": offline.vs_naive_low,
            "offline_vs_naive_high": offline.vs_naive_high,
            "offline_vs_naive_verdict": offline.vs_naive_verdict,
            "val_choice_turns": _val_choice_turns(
                cell, combo, naive.best_uni, naive.vs_uni_verdict, selection
            ),
            "offline_weights": _weight_note(
                weights if weights is not None else pd.DataFrame(), dataset, variant, combo
            ),
            "seeds": int(naive.seeds),
        }
        rows.append(row)
    return pd.DataFrame(rows)


MIN_CELLS_FOR_RANKS = 4  # a rank correlation over fewer cells is one of a handful of values


def _rank_correlation(table: pd.DataFrame) -> float:
    """Spearman's correlation between naive's gap to the best uni-modal model and offline
    G-Blend's gain over naive, over a table's cells."""
    return sstats.spearmanr(table.naive_vs_uni, table.offline_vs_naive).statistic


def regime_findings(table: pd.DataFrame) -> list[str]:
    """Where naive fusion is detectably below / above the best uni-modal model, whether
    offline G-Blend's gain over naive tracks naive's gap (rank correlation over the cells),
    and the cells whose verdict turns on val's choice of the best uni-modal model."""

    def cells(mask: pd.Series) -> str:
        return "; ".join(_cell_name(r) for r in table[mask].itertuples()) or "none"

    below = table.naive_vs_uni_verdict == LOWER
    above = table.naive_vs_uni_verdict == HIGHER
    gains = int((table.offline_vs_naive_verdict == HIGHER).sum())
    tracking = "too few cells for a rank correlation with naive's gap"
    if len(table) >= MIN_CELLS_FOR_RANKS:
        tracking = (
            f"rank correlation between naive's gap and offline's gain over naive "
            f"{_rank_correlation(table):+.2f} ({len(table)} cells; the paper's account expects "
            "a negative one: the larger naive's deficit, the larger G-Blend's gain)"
        )
        # pooled over data sets, the correlation can come from their differences alone
        within = {
            dataset: _rank_correlation(part)
            for dataset, part in table.groupby("dataset", sort=False)
            if len(part) >= MIN_CELLS_FOR_RANKS
        }
        if within and table.dataset.nunique() > 1:
            tracking += "; within one data set " + ", ".join(
                f"{dataset} {rho:+.2f}" for dataset, rho in within.items()
            )
    return [
        f"Naive fusion detectably below the best uni-modal model in {int(below.sum())} of "
        f"{len(table)} cells: {cells(below)}.",
        f"Detectably above in {int(above.sum())}: {cells(above)}. "
        + _resolution(table, "naive_vs_uni"),
        f"Offline G-Blend detectably above naive in {gains} of {len(table)} cells; {tracking}.",
        _val_choice_finding(table),
    ]


def _cell_name(row: Any) -> str:
    """A regime map's cell (a row of :func:`regime_map`, its width where it has one)."""
    width = f", width {row.hidden}" if hasattr(row, "hidden") else ""
    return f"{row.dataset} at {row.train_frac:g} of train{width}"


def _val_choice_finding(table: pd.DataFrame) -> str:
    turns = table[table.val_choice_turns != ""]
    if turns.empty:
        return (
            "In no cell does a modality that val ranks below the best one do better on test "
            "and turn naive's verdict."
        )
    said = "; ".join(
        f"{_cell_name(r)} (val chose {r.best_uni}; {r.val_choice_turns})"
        for r in turns.itertuples()
    )
    return (
        f"In {len(turns)} of {len(table)} cells val's choice of the best uni-modal model "
        f"decides naive's verdict: {said}. The verdicts above keep val's choice, since a best "
        "model picked on test would be selected on the numbers it is judged by."
    )


def display(table: pd.DataFrame, columns: Sequence[str], precision: int = 1):
    """A formatted view of a dose-response or regime table (numbers at ``precision``)."""
    numbers = [c for c in columns if pd.api.types.is_float_dtype(table[c])]
    return table[list(columns)].style.hide(axis="index").format(precision=precision, subset=numbers)


def map_at(
    scale: str | None, results_dir: str | None = None, shown: Sequence[str] = ()
) -> tuple[str, pd.DataFrame | None]:
    """A sentence on the regime map at another ``scale`` and its table (``None`` where no
    data set's grid there is complete, or at smoke, whose pages show no other scale), without
    the data sets ``shown`` at that scale in the page's own map (named, not repeated)."""
    if scale is None:
        return "A `smoke` page shows no other scale's map.", None
    names = committed_datasets("regime", scale, results_dir)
    if not names:
        return f"No data set's map at `{scale}` scale is committed.", None
    above = [d for d in names if d in shown]
    text = f"At `{scale}` scale the map is committed for {', '.join(names)}"
    if above:
        text += "; it is the map above" if above == names else f"; {', '.join(above)} above"
    rest = [d for d in names if d not in above]
    results = committed_at("regime", scale, results_dir, datasets=rest) if rest else None
    table = None if results is None else regime_map(results.runs, results.weights)
    return text + ".", table


WIDE = "regime_width"  # the regime map's grid with wider encoders


def _cells_text(cells: Sequence[Cell], fractions: Sequence[float]) -> str:
    """Cells (data set, train fraction) in words: a data set alone where all its fractions are
    there."""
    by: dict[str, list[float]] = {}
    for dataset, frac in cells:
        by.setdefault(dataset, []).append(frac)
    return ", ".join(
        dataset if len(fracs) == len(fractions) else
        f"{dataset} at {', '.join(f'{f:g}' for f in fracs)} of train"
        for dataset, fracs in by.items()
    )  # fmt: skip


def width_at(
    scale: str | None, results_dir: str | None = None, default: pd.DataFrame | None = None
) -> tuple[str, pd.DataFrame | None]:
    """A sentence on the regime map with wider encoders (the ``regime_width`` experiment, run
    at full only) and its table, read without training: each cell (data set, train fraction)
    whose wide runs are all committed, at both widths (the default width's where committed),
    with a ``hidden`` column (``None`` where no wide cell is complete, or at smoke).
    ``default`` is the default width's map at ``scale`` where the caller has read it already
    (read here otherwise)."""
    if scale is None:
        return "A `smoke` page shows no wider encoders.", None
    entry = get(WIDE)
    hidden = dict(entry.fixed)["model.hidden"]
    results, done, left = committed_cells(WIDE, scale, "data.train_frac", results_dir)
    if results is None:
        return f"With {hidden} hidden units nothing is committed at `{scale}` scale yet.", None
    table = regime_map(results.runs, results.weights).assign(hidden=hidden)
    if default is None:
        committed = committed_at("regime", scale, results_dir)
        default = None if committed is None else regime_map(committed.runs, committed.weights)
    if default is not None:
        cells = pd.MultiIndex.from_tuples(done)
        narrow = default[default.set_index(["dataset", "train_frac"]).index.isin(cells)]
        table = pd.concat([narrow.assign(hidden=ModelConfig.hidden), table], ignore_index=True)
    table = table.sort_values(["dataset", "hidden"], kind="stable", ignore_index=True)
    fractions = dict(entry.axes)["data.train_frac"]
    text = f"At `{scale}` scale, {int(table.seeds.min())} seeds per cell, committed for "
    text += _cells_text(done, fractions)
    if left:
        text += f"; not yet for {_cells_text(left, fractions)}"
    return text + ".", table


CONSTRUCTED_LABEL = "avdigits, AV-MNIST-style (constructed)"


def constructed_at(
    scale: str | None, results_dir: str | None = None
) -> tuple[str, pd.DataFrame | None]:
    """A sentence on the constructed AV-MNIST-style variant's map (the ``degraded``
    experiment, run at full only) and its table, read without training (``None`` where it is
    not committed, or at smoke)."""
    if scale is None:
        return "A `smoke` page shows no constructed variant.", None
    results = committed_at("degraded", scale, results_dir)
    if results is None:
        return f"The constructed variant is not yet committed at `{scale}` scale.", None
    table = regime_map(results.runs, results.weights).assign(dataset=CONSTRUCTED_LABEL)
    return f"At `{scale}` scale, {int(table.seeds.min())} seeds per cell:", table
