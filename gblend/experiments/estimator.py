"""Does the estimator's configuration matter? Offline G-Blend with each option of Algorithm 1
varied alone from the paper's algorithm (the ``estimator`` experiment), how noisy one estimate
is, and the controls that separate a G-Blend difference from its side effects.

Weights are compared per seed by their total-variation distance to the reference estimate of
the same seed (half the summed absolute differences: 0 is the same weights, 1 disjoint), and
that distance is judged against the estimator's own noise: the distance between estimates
from the same checkpoint whose copies were drawn with other seeds (``copy_draw``). Accuracy
is read at the last epoch of the fixed schedule unless told otherwise; every interval is a
paired 95% t-interval over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from gblend.blend import FORMULA_TEXT
from gblend.experiments.blending import COLLAPSE, weight_health, with_weight_health
from gblend.experiments.records import metric_column
from gblend.experiments.regimes import setting
from gblend.experiments.stats import (
    HIGHER,
    LOWER,
    NO_DIFFERENCE,
    equivalence,
    paired_difference,
    resolution,
)
from gblend.models import JOINT

REFERENCE = "paper"  # the reference configuration: Algorithm 1 as printed
OPTION_TEXT = {
    REFERENCE: "the paper's algorithm (n = N, constant lr, last epoch, loss, all of V)",
    "window": "window n as a fraction of N",
    "copy_schedule": "the copies' learning rate",
    "measure_at": "where the copies are read",
    "metric": "metric (claim 16)",
    "heldout_frac": "share of V (claim 17)",
    "formula": "formula",
    "noise_floor": "|ΔO| raised to this many standard errors (policy)",
    "joint_min_weight": "the fused head's weight floor (policy)",
    "copy_draw": "the copies redrawn (same checkpoint)",
}
VALUE_TEXT = {
    "main": "the main run's schedule",
    "best": "best V epoch",
    **{name: text.split(":")[0] for name, text in FORMULA_TEXT.items()},
}
CONTROLS = ("uniform", "aux_floor", "joint_lr_matched", "offline")
# The margins of the two "does not matter" claims: accuracy points (claim 16), and the extra
# total-variation distance of the weights beyond a copy redraw's (claim 17)
ACCURACY_MARGIN, SHIFT_MARGIN = 1.0, 0.1
SMALLEST_V = 0.1  # claim 17 is judged on the smallest share of V the grid measures


def configuration(variant: str, axes: Sequence[tuple[str, Sequence[Any]]]) -> tuple[str, Any]:
    """``(option, value)`` of a one-at-a-time variant: the axis away from its first value,
    or ``(REFERENCE, "")`` for the reference setting (and for a unit without the axes)."""
    values = setting(variant)
    for name, axis in axes:
        short = name.rsplit(".", 1)[-1]
        if short in values and values[short] != axis[0]:
            return short, values[short]
    return REFERENCE, ""


def _label(option: str, value: Any) -> str:
    return OPTION_TEXT[option] if option == REFERENCE else f"{option} = {value}"


def _with_configuration(frame: pd.DataFrame, axes) -> pd.DataFrame:
    out = frame.copy()
    pairs = [configuration(v, axes) for v in out.variant]
    out["option"] = [p[0] for p in pairs]
    # as text: pandas would merge a copy draw of 2 with a noise floor of 2.0 into one key type
    out["value"] = [str(p[1]) for p in pairs]
    return out


def _offline_weights(weights: pd.DataFrame, axes) -> pd.DataFrame:
    w = weights[(weights.method == "offline") & (weights.super_epoch == 0)]
    return _with_configuration(w, axes)


def _vectors(w: pd.DataFrame) -> pd.DataFrame:
    """Weights as one row per (dataset, option, value, seed), a column per head."""
    return w.pivot_table(
        index=["dataset", "option", "value", "seed"], columns="head", values="weight"
    )


def _distance(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    """Total-variation distance between weight vectors of the same seeds (rows)."""
    return 0.5 * (a - b).abs().sum(axis=1)


def _redraw_distances(vectors: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """Each copy redraw's distance from the reference estimate of its seed (one value per
    seed and draw): the estimator's own noise. ``vectors``: weight rows indexed by (option,
    value, seed); ``reference``: the paper's estimate per seed."""
    redraws = vectors[vectors.index.get_level_values("option") == "copy_draw"]
    if redraws.empty:
        return pd.Series(dtype=float)
    seeds = redraws.droplevel(["option", "value"])
    return _distance(seeds, reference.loc[seeds.index])


def weight_shifts(weights: pd.DataFrame, axes) -> pd.DataFrame:
    """Per data set and configuration: each seed's distance from its reference estimate,
    median and range over seeds, beside the noise floor (the median distance of the copy
    redraws from the reference)."""
    w = _offline_weights(weights, axes)
    if w.empty:
        return pd.DataFrame()
    vectors = _vectors(w)
    rows = []
    for dataset, per_dataset in vectors.groupby(level="dataset", sort=False):
        reference = per_dataset.xs((REFERENCE, ""), level=("option", "value")).loc[dataset]
        noise = _redraw_distances(per_dataset.droplevel("dataset"), reference)
        floor = float(noise.median()) if len(noise) else float("nan")
        for (option, value), group in per_dataset.groupby(level=["option", "value"], sort=False):
            if option == REFERENCE:
                continue
            seeds = group.droplevel(["dataset", "option", "value"])
            dist = _distance(seeds, reference.loc[seeds.index])
            rows.append(
                {
                    "dataset": dataset,
                    "option": option,
                    "value": value,
                    "configuration": _label(option, value),
                    "median_shift": float(dist.median()),
                    "min_shift": float(dist.min()),
                    "max_shift": float(dist.max()),
                    "noise_floor": floor,
                    "beyond_noise": bool(dist.median() > floor) if option != "copy_draw" else None,
                    "seeds": len(dist),
                }
            )
    return pd.DataFrame(rows)


def weights_table(weights: pd.DataFrame, axes) -> pd.DataFrame:
    """Per data set, configuration and head: the median weight over seeds, its range, the
    median width of the bootstrap interval over V, and how often the policy set it."""
    w = _offline_weights(weights, axes)
    rows = []
    for (dataset, option, value, head), g in w.groupby(
        ["dataset", "option", "value", "head"], sort=False
    ):
        width = (g.boot_high - g.boot_low).dropna()
        rows.append(
            {
                "dataset": dataset,
                "configuration": _label(option, value),
                "option": option,
                "value": value,
                "head": head,
                "median": float(g.weight.median()),
                "min": float(g.weight.min()),
                "max": float(g.weight.max()),
                "bootstrap_width": float(width.median()) if len(width) else float("nan"),
                "policy_set": int(g.fallbacks.astype(bool).sum()),
                "seeds": g.seed.nunique(),
            }
        )
    return pd.DataFrame(rows)


def weights_display(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One data set's weights: a row per configuration, a column per head holding
    ``median [min, max]`` over seeds, ± half the median bootstrap width, and the count of
    seeds in which the policy set the weight."""
    table = table[table.dataset == dataset]
    cells = table.assign(
        cell=[
            f"{r.median:.2f} [{r.min:.2f}, {r.max:.2f}]"
            + (f" ±{r.bootstrap_width / 2:.2f}" if np.isfinite(r.bootstrap_width) else "")
            + (f" ({r.policy_set}/{r.seeds} set by policy)" if r.policy_set else "")
            for r in table.itertuples()
        ]
    )
    wide = cells.pivot_table(
        index="configuration", columns="head", values="cell", aggfunc="first", sort=False
    )
    heads = [h for h in dict.fromkeys(table["head"]) if h != JOINT] + [JOINT]
    return wide[[h for h in heads if h in wide.columns]].reset_index()


def _paired(a: pd.Series, b: pd.Series, name: str) -> dict[str, Any]:
    """``a - b`` over their common seeds as columns ``name`` (the mean), ``name_low``,
    ``name_high``, ``name_direction``, ``name_median``, ``name_collapses`` (seeds more than
    :data:`COLLAPSE` points below), ``name_resolution`` and ``seeds``."""
    seeds = a.index.intersection(b.index)
    d = paired_difference(a[seeds], b[seeds])
    per_seed = a[seeds] - b[seeds]
    return {
        name: d.mean,
        f"{name}_low": d.low,
        f"{name}_high": d.high,
        f"{name}_direction": d.direction,
        f"{name}_median": float(per_seed.median()) if len(per_seed) else float("nan"),
        f"{name}_collapses": int((per_seed < -COLLAPSE).sum()),
        f"{name}_resolution": resolution(d),
        "seeds": len(seeds),
    }


def accuracy_table(runs: pd.DataFrame, axes, selection: str = "last") -> pd.DataFrame:
    """Per data set and configuration: offline G-Blend's test accuracy, paired against naive
    fusion (``vs_naive*``) and against the paper's configuration (``vs_paper*``)."""
    col = metric_column("test", "acc", selection)
    rows = []
    for dataset, sub in runs.groupby("dataset", sort=False):
        naive = sub[sub.method == "naive"].set_index("seed")[col] * 100
        offline = _with_configuration(sub[sub.method == "offline"], axes)
        ref = offline[offline.option == REFERENCE].set_index("seed")[col] * 100
        for (option, value), g in offline.groupby(["option", "value"], sort=False):
            acc = g.set_index("seed")[col] * 100
            rows.append(
                {
                    "dataset": dataset,
                    "configuration": _label(option, value),
                    "option": option,
                    "value": value,
                    "acc": float(acc.mean()),
                }
                | _paired(acc, naive, "vs_naive")
                | _paired(acc, ref, "vs_paper")
            )
    return pd.DataFrame(rows)


def controls_table(runs: pd.DataFrame, axes, selection: str = "last") -> pd.DataFrame:
    """Per data set: each control and offline G-Blend (the paper's configuration) against
    naive fusion, paired: is a G-Blend difference its weighting, auxiliary supervision at
    the floor (``aux_floor``) or the fused head's lower effective rate
    (``joint_lr_matched``)?"""
    col = metric_column("test", "acc", selection)
    runs = _with_configuration(runs, axes)
    runs = runs[(runs.method != "offline") | (runs.option == REFERENCE)]
    rows = []
    for dataset, sub in runs.groupby("dataset", sort=False):
        naive = sub[sub.method == "naive"].set_index("seed")[col] * 100
        for method in CONTROLS:
            acc = sub[sub.method == method].set_index("seed")[col] * 100
            if len(acc):
                rows.append(
                    {"dataset": dataset, "method": method, "acc": float(acc.mean())}
                    | _paired(acc, naive, "vs_naive")
                )
    return pd.DataFrame(rows)


def redraw_table(runs: pd.DataFrame, weights: pd.DataFrame, axes, dataset: str) -> pd.DataFrame:
    """Per seed and copy draw of one data set (draw 0 is the paper's estimate): the estimated
    weights and each head's ΔO, offline G-Blend's test accuracy at the last epoch and naive
    fusion's, and whether the run collapsed (more than :data:`COLLAPSE` points below naive):
    how far the accuracy of one checkpoint's G-Blend depends on the draw of its copies."""
    col = metric_column("test", "acc", "last")
    sub = _with_configuration(runs[runs.dataset == dataset], axes)
    naive = sub[sub.method == "naive"].set_index("seed")[col] * 100
    offline = sub[(sub.method == "offline") & sub.option.isin([REFERENCE, "copy_draw"])]
    w = _offline_weights(weights[weights.dataset == dataset], axes)
    w = w[w.option.isin([REFERENCE, "copy_draw"])].assign(
        draw=lambda f: f.value.replace("", 0).astype(int)
    )
    wide = w.pivot_table(index=["seed", "draw"], columns="head", values=["weight", "delta_o"])
    heads = [h for h in dict.fromkeys(w["head"]) if h != JOINT] + [JOINT]
    rows = []
    for r in offline.itertuples():
        draw = 0 if r.option == REFERENCE else int(r.value)
        acc = getattr(r, col) * 100
        rows.append(
            {"seed": r.seed, "draw": draw}
            | {f"w_{h}": float(wide.loc[(r.seed, draw), ("weight", h)]) for h in heads}
            | {f"dO_{h}": float(wide.loc[(r.seed, draw), ("delta_o", h)]) for h in heads}
            | {
                "offline_acc": acc,
                "naive_acc": float(naive.get(r.seed, np.nan)),
                "collapsed": bool(acc < naive.get(r.seed, np.nan) - COLLAPSE),
            }
        )
    return pd.DataFrame(rows).sort_values(["seed", "draw"]).reset_index(drop=True)


def noise_table(weights: pd.DataFrame, axes) -> pd.DataFrame:
    """How noisy is one estimate? Per data set and head, for the paper's configuration: the
    spread of the weight over seeds (new data split and initialisation), over copy redraws
    from the same checkpoint (mean over seeds of the standard deviation across draws), and
    the median width of the bootstrap interval over V."""
    w = _offline_weights(weights, axes)
    same_checkpoint = w[w.option.isin([REFERENCE, "copy_draw"])]
    ref = w[w.option == REFERENCE]
    rows = []
    for (dataset, head), g in ref.groupby(["dataset", "head"], sort=False):
        draws = same_checkpoint[
            (same_checkpoint.dataset == dataset) & (same_checkpoint["head"] == head)
        ]
        within = draws.groupby("seed").weight.std(ddof=1)
        rows.append(
            {
                "dataset": dataset,
                "head": head,
                "median_weight": float(g.weight.median()),
                "sd_over_seeds": float(g.weight.std(ddof=1)),
                "sd_over_copy_draws": float(within.mean()),
                "copy_draws": int(draws.groupby("seed").size().min()),
                "bootstrap_width": float((g.boot_high - g.boot_low).median()),
                "seeds": g.seed.nunique(),
            }
        )
    return pd.DataFrame(rows)


def findings(
    shifts: pd.DataFrame, accuracy: pd.DataFrame, controls: pd.DataFrame, noise: pd.DataFrame
) -> dict[str, str]:
    """The chapter's answers, one sentence each, from the tables above, keyed
    ``<dataset>_<what>`` (configurations, noise, redraws, controls, policies) so that other
    pages can quote one whichever data sets a scale has."""
    out: dict[str, str] = {}
    for dataset in dict.fromkeys(accuracy.dataset):
        sh = shifts[(shifts.dataset == dataset) & shifts.beyond_noise.fillna(False).astype(bool)]
        acc = accuracy[
            (accuracy.dataset == dataset) & ~accuracy.option.isin([REFERENCE, "copy_draw"])
        ]
        moved = acc[acc.vs_paper_direction != NO_DIFFERENCE]
        own = shifts[shifts.dataset == dataset]
        floor = own.noise_floor
        n_options = int((own.option != "copy_draw").sum())
        out[f"{dataset}_configurations"] = (
            f"**{dataset}**: {len(sh)} of {n_options} configurations move the weights further "
            f"from the paper's estimate than redrawing its copies does (median distance "
            f"{floor.iloc[0]:.2f})"
            + (f": {', '.join(sh.configuration)}" if len(sh) else "")
            + f"; {len(moved)} change offline G-Blend's test accuracy detectably"
            + (
                ": " + ", ".join(
                    f"{r.configuration} {r.vs_paper:+.1f} [{r.vs_paper_low:+.1f}, "
                    f"{r.vs_paper_high:+.1f}]" for r in moved.itertuples()
                )
                if len(moved) else
                f" (these seeds detect about ±{acc.vs_paper_resolution.median():.1f} points)"
            )
            + "."
        )  # fmt: skip
        nz = noise[noise.dataset == dataset]
        if len(nz):
            worst = nz.loc[nz.sd_over_copy_draws.idxmax()]
            out[f"{dataset}_noise"] = (
                f"**{dataset}**, one estimate's noise: the {worst['head']} weight has a "
                f"standard deviation of {worst.sd_over_copy_draws:.2f} over copy redraws from "
                f"the same checkpoint against {worst.sd_over_seeds:.2f} over seeds; its "
                f"bootstrap interval over V is {worst.bootstrap_width:.2f} wide (median)."
            )
        acc_draws = accuracy[
            (accuracy.dataset == dataset) & accuracy.option.isin([REFERENCE, "copy_draw"])
        ]
        if len(acc_draws) > 1:
            ref = acc_draws[acc_draws.option == REFERENCE].iloc[0]
            out[f"{dataset}_redraws"] = (
                f"**{dataset}**, one checkpoint re-estimated: with the copies redrawn, offline "
                f"G-Blend's mean test accuracy ranges {acc_draws.acc.min():.1f} to "
                f"{acc_draws.acc.max():.1f} (the paper's draw {ref.acc:.1f}); it collapses "
                f"(more than {COLLAPSE:g} points below naive) in "
                f"{', '.join(str(int(c)) for c in acc_draws.vs_naive_collapses)} of "
                f"{int(ref.seeds)} seeds over the {len(acc_draws)} draws."
            )
        ctl = controls[controls.dataset == dataset].set_index("method")
        if {"offline", "aux_floor", "joint_lr_matched"} <= set(ctl.index):
            parts = [
                f"{m} {ctl.loc[m, 'vs_naive']:+.1f} [{ctl.loc[m, 'vs_naive_low']:+.1f}, "
                f"{ctl.loc[m, 'vs_naive_high']:+.1f}]"
                + (
                    f", collapses in {ctl.loc[m, 'vs_naive_collapses']} seeds"
                    if ctl.loc[m, "vs_naive_collapses"]
                    else ""
                )
                for m in ("offline", "aux_floor", "joint_lr_matched", "uniform")
                if m in ctl.index
            ]
            out[f"{dataset}_controls"] = (
                f"**{dataset}**, against naive fusion (points): " + "; ".join(parts) + "."
            )
    # the named policies last: the page lists them after every data set's other findings
    for dataset in dict.fromkeys(accuracy.dataset):
        acc = accuracy[accuracy.dataset == dataset].set_index("option")
        policies = [o for o in ("noise_floor", "joint_min_weight") if o in acc.index]
        if REFERENCE in acc.index and policies:
            parts = [
                f"{acc.loc[o, 'configuration']} {acc.loc[o, 'vs_naive']:+.1f} "
                f"[{acc.loc[o, 'vs_naive_low']:+.1f}, {acc.loc[o, 'vs_naive_high']:+.1f}], "
                f"collapses in {int(acc.loc[o, 'vs_naive_collapses'])}"
                for o in [REFERENCE, *policies]
            ]
            out[f"{dataset}_policies"] = (
                f"**{dataset}**, the named policies against naive fusion (points; the first is "
                "the paper's algorithm): "
                + "; ".join(parts)
                + f" of {int(acc.seeds.iloc[0])} seeds."
            )
    return out


def claims(runs: pd.DataFrame, weights: pd.DataFrame, axes) -> pd.DataFrame:
    """Claims 16 and 17 per data set, each an equivalence at a stated margin
    (:func:`gblend.experiments.stats.equivalence`).

    16, accuracy is "equally effective" for estimating: offline G-Blend's test accuracy with
    accuracy-based weights minus with loss-based ones is no worse than ``ACCURACY_MARGIN``.
    17, a small estimation set barely changes the weights: with ``SMALLEST_V`` of V, each
    seed's distance from its full-V estimate exceeds the mean distance of its copy redraws
    (the estimator's own noise) by no more than ``SHIFT_MARGIN``.
    Either claim compares two configurations' estimates; where either's modality-head
    weights are mostly policy fallbacks, the claim is a *degenerate estimate* (the policy's
    weights are compared, not two estimates), and its evidence counts the fallbacks of both.
    """
    col = metric_column("test", "acc", "last")
    offline = _with_configuration(runs[runs.method == "offline"], axes)
    w = _offline_weights(weights, axes)
    rows = []
    for dataset, sub in offline.groupby("dataset", sort=False):
        by_loss = sub[sub.option == REFERENCE].set_index("seed")[col] * 100
        by_acc = sub[sub.option == "metric"].set_index("seed")[col] * 100
        mine = w[w.dataset == dataset]
        if len(by_acc):
            seeds = by_acc.index.intersection(by_loss.index)
            diff = paired_difference(by_acc[seeds], by_loss[seeds])
            health = _both_estimates(mine, ("metric", "acc"), "accuracy-based")
            row = {
                "dataset": dataset,
                "claim": 16,
                "statement": "accuracy is as effective as loss for estimating the weights",
                "verdict": equivalence(diff, ACCURACY_MARGIN, LOWER, "points"),
                "evidence": (
                    f"offline G-Blend's test accuracy with accuracy-based minus loss-based "
                    f"weights {diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}] points, "
                    f"median {(by_acc[seeds] - by_loss[seeds]).median():+.1f}, {diff.n} "
                    f"seeds; margin {ACCURACY_MARGIN:g} point"
                ),
            }
            rows.append(with_weight_health(row, *health))
        vectors = _vectors(mine).droplevel("dataset")
        options = vectors.index.get_level_values("option")
        values = vectors.index.get_level_values("value")
        if not ((options == "heldout_frac") & (values == str(SMALLEST_V))).any():
            continue
        reference = vectors.xs((REFERENCE, ""), level=("option", "value"))
        small = vectors.xs(("heldout_frac", str(SMALLEST_V)), level=("option", "value"))
        noise = _redraw_distances(vectors, reference).groupby(level="seed").mean()
        shift = _distance(small, reference.loc[small.index])
        seeds = shift.index.intersection(noise.index)
        diff = paired_difference(shift[seeds], noise[seeds])
        health = _both_estimates(mine, ("heldout_frac", str(SMALLEST_V)), f"{SMALLEST_V:.0%} of V")
        row = {
            "dataset": dataset,
            "claim": 17,
            "statement": "a small estimation set barely changes the weights",
            "verdict": equivalence(diff, SHIFT_MARGIN, HIGHER, "of distance"),
            "evidence": (
                f"with {SMALLEST_V:g} of V the weights move {shift[seeds].median():.2f} "
                f"(median distance from the full-V estimate) against "
                f"{noise[seeds].median():.2f} for a copy redraw; difference "
                f"{diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}], {diff.n} seeds; "
                f"margin {SHIFT_MARGIN:g}"
            ),
        }
        rows.append(with_weight_health(row, *health))
    return pd.DataFrame(rows)


def _both_estimates(w: pd.DataFrame, other: tuple[str, str], name: str) -> tuple[bool, str]:
    """(whether the paper's estimate or the ``other`` configuration's is mostly policy
    fallbacks, a note counting the fallbacks of each) for one data set's offline weights."""
    health = [
        weight_health(w[(w.option == option) & (w.value == value)], which)
        for (option, value), which in (((REFERENCE, ""), "the paper's"), (other, name))
    ]
    return any(mostly for mostly, _ in health), "; ".join(note for _, note in health if note)


def display(table: pd.DataFrame, columns: Sequence[str], precision: int = 2):
    """A formatted view of one of the tables (numbers at ``precision``)."""
    numbers = [c for c in columns if pd.api.types.is_float_dtype(table[c])]
    return table[list(columns)].style.hide(axis="index").format(precision=precision, subset=numbers)
