"""Paper Tables 2 and 4: G-Blend against naive late fusion and the best uni-modal model.

The naive and uni-modal runs are the Table 1 grid's own (same units, same cache), so every
method of a data set is compared on the same seeds and splits. The G-Blend runs (offline,
Algorithm 2; online, Algorithm 3) and the equal-weight "auxiliary loss" runs train the
multi-head model and are cached under the store ``gblend`` (see ``methods.METHODS``).
Tables read every run at both epochs of :data:`~gblend.experiments.records.SELECTIONS`; the
claims are judged on the fixed schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import pandas as pd
from scipy import stats as sstats

from gblend.experiments import methods as gmethods
from gblend.experiments.records import SELECTIONS, metric_column
from gblend.experiments.stats import (
    HIGHER,
    LOWER,
    NOT_DETECTABLE,
    ONE_SEED,
    REPRODUCED,
    PairedDifference,
    label,
    paired_difference,
)
from gblend.experiments.table1 import PAPER_NAMES, best_unimodal, by_setting
from gblend.models import JOINT


def overhead(runs: pd.DataFrame) -> pd.DataFrame:
    """Compute of each method relative to naive training of the same combination and seed:
    extra (estimation) epochs per trained epoch, and the ratio of wall times."""
    naive = runs[runs.method == "naive"].set_index(["dataset", "combo", "seed"]).wall_seconds
    multi = runs[(runs.method != "naive")].copy()
    keys = list(zip(multi.dataset, multi.combo, multi.seed, strict=True))
    multi["wall_ratio"] = multi.wall_seconds.to_numpy() / naive.reindex(keys).to_numpy()
    multi["extra_epochs_per_epoch"] = multi.estimation_epochs / multi.epochs_run
    return (
        multi.groupby(["dataset", "method"], sort=False)
        .agg(
            wall_seconds=("wall_seconds", "mean"),
            wall_ratio=("wall_ratio", "mean"),
            extra_epochs_per_epoch=("extra_epochs_per_epoch", "mean"),
            estimation_seconds=("estimation_seconds", "mean"),
            runs=("seed", "size"),
        )
        .reset_index()
    )


METHOD_ORDER = ["best uni", "naive", "uniform", "offline", "online"]
METHOD_LABELS = {"best uni": "best uni-modal"} | {
    name: gmethods.get(name).label for name in METHOD_ORDER[1:]
}


def _method_runs(sub: pd.DataFrame, combo: str, selection: str = "last") -> dict[str, pd.Series]:
    """Test accuracy (%) per seed of each method on one combination of one data set and
    setting, at the epoch ``selection`` picks (best uni chosen by val, the same way)."""
    test = metric_column("test", selection=selection)
    best = best_unimodal(sub, among=combo.split("+"), selection=selection)
    out = {"best uni": sub[(sub.combo == best)].set_index("seed")[test]}
    for method in ("naive", "uniform", "offline", "online"):
        rows = sub[(sub.combo == combo) & (sub.method == method)]
        if len(rows):
            out[method] = rows.set_index("seed")[test]
    return {m: s.sort_index() * 100 for m, s in out.items()}


def compare_methods(
    runs: pd.DataFrame, combos: str = "full", selections: Sequence[str] = tuple(SELECTIONS)
) -> pd.DataFrame:
    """Per data set, combination and selection: each method's test accuracy, and its paired
    difference from naive fusion and from the best uni-modal model (mean, 95% t-interval,
    verdict)."""
    rows = []
    for (dataset, variant), sub in by_setting(runs):
        multi = [
            c
            for c in sub[sub.n_modalities > 1].combo.unique()
            if combos == "all" or c.count("+") == max(sub.combo.str.count(r"\+"))
        ]
        for combo, selection in product(multi, selections):
            per_method = _method_runs(sub, combo, selection)
            best = best_unimodal(sub, among=combo.split("+"), selection=selection)
            for method in [m for m in METHOD_ORDER if m in per_method]:
                acc = per_method[method]
                row = {
                    "dataset": dataset,
                    "variant": variant,
                    "combo": combo,
                    "selection": selection,
                    "method": method,
                    "best_uni": best,
                    "acc": acc.mean(),
                    "acc_std": acc.std(ddof=1) if len(acc) > 1 else float("nan"),
                    "seeds": len(acc),
                }
                for ref in ("naive", "best uni"):
                    if method in (ref, "best uni") or ref not in per_method:
                        continue
                    seeds = acc.index.intersection(per_method[ref].index)
                    diff = paired_difference(acc[seeds], per_method[ref][seeds])
                    tag = "vs_naive" if ref == "naive" else "vs_uni"
                    row |= {
                        f"{tag}": diff.mean,
                        f"{tag}_low": diff.low,
                        f"{tag}_high": diff.high,
                        f"{tag}_verdict": diff.direction,
                    }
                rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f} ± {std:.1f}"


def _ci(row, tag: str) -> str:
    """A paired difference as a table cell: mean [interval] direction, and the seeds that
    collapsed when the row counts them (``<tag>_collapsed``)."""
    if pd.isna(row.get(tag)):
        return "—"
    text = (
        f"{row[tag]:+.1f} [{row[tag + '_low']:+.1f}, {row[tag + '_high']:+.1f}] "
        f"{row[tag + '_verdict']}"
    )
    collapsed = row.get(tag + "_collapsed")
    return text + (f"; {int(collapsed)} collapsed" if collapsed else "")


def strongest_methods(
    comparison: pd.DataFrame, weights: pd.DataFrame, selection: str = "last"
) -> list[str]:
    """Per data set (and setting), the method with the highest mean test accuracy on the
    full combination at the epoch ``selection`` picks, with its paired difference from
    naive fusion: which method a reader should take away, whether or not it is G-Blend
    (offline G-Blend on weights that are mostly policy fallbacks is said to be that)."""
    part = comparison[(comparison.selection == selection) & (comparison.method != "best uni")]
    out = []
    for (dataset, variant), rows in part.groupby(["dataset", "variant"], sort=False):
        rows = rows[rows.combo == rows.combo.iloc[0]]
        where = f"{dataset}" + (f" ({variant})" if variant else "")
        tied = rows[rows.acc >= rows.acc.max() - 1e-9]
        if len(tied) > 1:  # a tie is said as one, never broken by list order
            names = " and ".join(METHOD_LABELS[m] for m in tied.method)
            out.append(f"{where}: {names} tie, {tied.acc.iloc[0]:.1f}%.")
            continue
        top = tied.iloc[0]
        text = f"{where}: {METHOD_LABELS[top.method]} is the strongest, {top.acc:.1f}%"
        if top.method == "naive":
            out.append(text + ", naive fusion itself.")
            continue
        text += (
            f", {top.vs_naive:+.1f} pts over naive [{top.vs_naive_low:+.1f}, "
            f"{top.vs_naive_high:+.1f}] ({top.vs_naive_verdict})"
        )
        setting = weights[(weights.dataset == dataset) & (weights.variant == variant)]
        if top.method == "offline" and offline_weight_health(setting, top.combo)[0]:
            text += f"; its weights are mostly policy fallbacks ({DEGENERATE})"
        out.append(text + ".")
    return out


def table2_display(comparison: pd.DataFrame) -> pd.DataFrame:
    """Our Table 2: test accuracy %, mean ± std; paired differences with 95% CI and verdict."""
    rows = []
    for _, row in comparison.iterrows():
        label = METHOD_LABELS[row.method]
        if row.method == "best uni":
            label += f" ({row.best_uni})"
        rows.append(
            {
                "dataset": row.dataset,
                "combo": row.combo,
                "read at": SELECTIONS[row.selection],
                "method": label,
                "ours: acc": _pm(row.acc, row.acc_std),
                "ours: vs naive": _ci(row, "vs_naive"),
                "ours: vs best uni": _ci(row, "vs_uni"),
                "seeds": row.seeds,
            }
        )
    return pd.DataFrame(rows)


def mean_weights(weights: pd.DataFrame, method: str = "offline") -> pd.DataFrame:
    """Mean ± std over seeds of each head's weight per data set and combination."""
    w = weights[(weights.method == method) & (weights.super_epoch == 0)]
    summary = w.groupby(["dataset", "variant", "combo", "head"], sort=False).agg(
        weight=("weight", "mean"),
        weight_std=("weight", "std"),
        seeds=("seed", "nunique"),
        n_epochs=("n_epochs", "first"),
        optimizer=("optimizer", "first"),
        fallbacks=("fallbacks", lambda s: sum(bool(v) for v in s)),
    )
    return summary.reset_index()


def table4_display(
    comparison: pd.DataFrame, weights: pd.DataFrame, paper: pd.DataFrame
) -> pd.DataFrame:
    """Our Table 4 per combination: weights, naive, best uni, G-Blend; the paper's beside."""
    mw = mean_weights(weights)
    paper_rows = paper.set_index("modal")
    rows = []
    keys = ["dataset", "variant", "combo", "selection"]
    for (dataset, variant, combo, selection), group in comparison.groupby(keys, sort=False):
        by = group.set_index("method")
        w = mw[(mw.dataset == dataset) & (mw.variant == variant) & (mw.combo == combo)]
        weights_text = ", ".join(
            f"{h}: {_pm(m * 100, s * 100)}"
            for h, m, s in zip(w["head"], w.weight, w.weight_std, strict=True)
        )
        parts = combo.split("+")
        paper_row = None
        if dataset == "synthetic" and set(parts) <= set(PAPER_NAMES):
            names = frozenset(PAPER_NAMES[m] for m in parts)
            match = [m for m in paper_rows.index if frozenset(m.split(" + ")) == names]
            paper_row = paper_rows.loc[match[0]] if match else None
        rows.append(
            {
                "dataset": dataset,
                "combo": combo,
                "read at": SELECTIONS[selection],
                "ours: weights % (mean ± std)": weights_text,
                "ours: best uni": f"{by.loc['best uni', 'best_uni']}: "
                + _pm(by.loc["best uni", "acc"], by.loc["best uni", "acc_std"]),
                "ours: naive": _pm(by.loc["naive", "acc"], by.loc["naive", "acc_std"]),
                "ours: G-Blend": _pm(by.loc["offline", "acc"], by.loc["offline", "acc_std"])
                if "offline" in by.index
                else "—",
                "ours: G-Blend vs naive": _ci(by.loc["offline"], "vs_naive")
                if "offline" in by.index
                else "—",
                "ours: G-Blend vs best uni": _ci(by.loc["offline"], "vs_uni")
                if "offline" in by.index
                else "—",
                "paper: weights": paper_row.weights if paper_row is not None else None,
                "paper: uni / naive / G-Blend V@1": (
                    f"{paper_row.uni_v1} / {paper_row.naive_v1} / {paper_row.gblend_v1}"
                    if paper_row is not None
                    else None
                ),
            }
        )
    return pd.DataFrame(rows)


COLLAPSE = 10.0  # points below the other method in one seed: a collapse, not noise
COLLAPSED = "collapses"


def _paired(sub: pd.DataFrame, combo: str, a: str, b: str):
    """Paired difference a - b on the fixed schedule, on which claims are judged, and the
    per-seed differences (points)."""
    per_method = _method_runs(sub, combo, "last")
    if a not in per_method or b not in per_method:
        return None
    seeds = per_method[a].index.intersection(per_method[b].index)
    per_seed = per_method[a][seeds] - per_method[b][seeds]
    return paired_difference(per_method[a][seeds], per_method[b][seeds]), per_seed


def _describe(name: str, paired, want: str) -> str:
    diff, per_seed = paired
    text = (
        f"{name} {diff.mean:+.1f} pts [{diff.low:+.1f}, {diff.high:+.1f}] ({diff.direction}, "
        f"expected {want}; median {per_seed.median():+.1f}"
    )
    collapsed = int((per_seed < -COLLAPSE).sum())
    if collapsed:
        text += f"; more than {COLLAPSE:g} pts below in {collapsed} of {len(per_seed)} seeds"
    return text + ")"


def claim_row(dataset: str, number: int, statement: str, parts, evidence: str = "") -> dict:
    """A claim's row from ``parts`` ``(name, (paired difference, per seed) or None, the
    direction the claim expects)``: :func:`stats.label` over the parts that were run; one that
    neither holds nor is contradicted (not detectable) while the method collapsed in some seed
    of a part that expects it higher is labelled a collapse (its interval is wide because of
    that seed, not for want of seeds; far below is what a part that expects lower claims).
    The evidence names each difference with its median and collapses, then ``evidence``."""
    present = [(n, x, want) for n, x, want in parts if x is not None]
    if not present:
        verdict = "undetermined (not run)"
    else:
        verdict = label([(diff, want, "pts") for _, (diff, _), want in present])
        expected_higher = [per_seed for _, (_, per_seed), want in present if want == HIGHER]
        collapsed = max((int((p < -COLLAPSE).sum()) for p in expected_higher), default=0)
        seeds = max(len(per_seed) for _, (_, per_seed), _ in present)
        if collapsed and verdict.startswith(NOT_DETECTABLE):
            verdict = f"{COLLAPSED} in {collapsed} of {seeds} seeds"
    described = [_describe(n, x, want) for n, x, want in present]
    return {
        "dataset": dataset,
        "claim": number,
        "statement": statement,
        "verdict": verdict,
        "evidence": "; ".join([*described, *([evidence] if evidence else [])]),
    }


def blend_claims(runs: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """Verdicts on claims 5, 6, 8, 10 and 13 (the paper's Tables 2, 4 and 5), per data set
    (all modalities), judged on the fixed schedule (test accuracy at the last epoch)."""
    rows = []
    for (dataset, variant), sub in by_setting(runs):
        combo = max(sub.combo.unique(), key=lambda c: c.count("+"))
        d = {
            pair: _paired(sub, combo, *pair)
            for pair in (
                ("offline", "naive"),
                ("offline", "best uni"),
                ("online", "offline"),
                ("offline", "uniform"),
            )
        }
        setting = weights[(weights.dataset == dataset) & (weights.variant == variant)]
        health = offline_weight_health(setting, combo)

        def claim(number, statement, parts, dataset=dataset, variant=variant, health=health):
            parts = [(name, pair, HIGHER) for name, pair in parts]
            row = with_weight_health(claim_row(dataset, number, statement, parts), *health)
            rows.append({"dataset": dataset, "variant": variant, **row})

        claim(
            5,
            "offline G-Blend beats naive fusion and the best uni-modal model",
            [("vs naive", d["offline", "naive"]), ("vs best uni", d["offline", "best uni"])],
        )
        claim(
            6,
            "online G-Blend beats offline G-Blend",
            [("online vs offline", d["online", "offline"])],
        )
        claim(
            10,
            "G-Blend's weights beat equal weights (auxiliary loss)",
            [("offline vs equal", d["offline", "uniform"])],
        )
        if len(combo.split("+")) > 2:
            claim(
                13,
                "G-Blend works with more than two modalities",
                [("vs naive", d["offline", "naive"]), ("vs best uni", d["offline", "best uni"])],
            )
        row = with_weight_health(_weight_claim(dataset, combo, sub, setting), *health)
        rows.append({"variant": variant, **row})
    return pd.DataFrame(rows)


DEGENERATE = "degenerate estimate"


def offline_weight_health(weights: pd.DataFrame, combo: str) -> tuple[bool, str]:
    """Whether offline G-Blend's weights on ``combo`` are mostly not estimates: (more than
    half of the modality-head weights over the seeds were set by the degenerate-case policy,
    a note counting the fallbacks and naming the seeds whose fused head sits at the policy's
    floor, barely trained)."""
    w = weights[(weights.combo == combo) & (weights.method == "offline")]
    return weight_health(w[w.super_epoch == 0], "offline")


def online_weight_health(weights: pd.DataFrame) -> tuple[bool, str]:
    """:func:`offline_weight_health` for online G-Blend, over every super-epoch's estimate."""
    return weight_health(weights[weights.method.str.startswith("online")], "online")


def weight_health(w: pd.DataFrame, which: str) -> tuple[bool, str]:
    """Whether the estimates in ``w`` (weight rows of one setting) are mostly policy
    fallbacks, and a note counting them (``which`` names the method in the note)."""
    if w.empty:
        return False, ""
    modal = w[w["head"] != JOINT]
    fell = modal.fallbacks.astype(bool)
    note = (
        f"{which} weights: {int(fell.sum())} of {len(modal)} modality-head estimates are fallbacks"
    )
    starved = w[(w["head"] == JOINT) & w.fallbacks.astype(bool)]
    if not starved.empty:
        seeds = ", ".join(map(str, sorted(set(starved.seed))))
        note += f"; fused head at the policy's floor in seed {seeds}"
    return bool(fell.mean() > 0.5), note


def with_weight_health(row: dict, mostly_fallbacks: bool, note: str) -> dict:
    """A claim on offline G-Blend is no evidence for or against it when its weights are mostly
    policy fallbacks: the runs test the policy."""
    if not note:
        return row
    verdict = DEGENERATE if mostly_fallbacks else row["verdict"]
    evidence = "; ".join(e for e in (row["evidence"], note) if e)
    return {**row, "verdict": verdict, "evidence": evidence}


def _weight_claim(dataset: str, combo: str, runs: pd.DataFrame, weights: pd.DataFrame):
    """Claim 8: the weakest modality gets the smallest weight, the strongest the largest.
    Judged over paired seeds (:func:`stats.label`): the weakest modality's weight minus each
    other modality head's, expected lower, and the strongest's minus each other's, expected
    higher (the weakest and strongest alone by mean val accuracy of the uni-modal runs); a
    tie is a difference of zero, never broken by list order."""
    uni = runs[runs.n_modalities == 1].groupby("combo").val_acc_last.mean()
    parts = combo.split("+")
    uni = uni[uni.index.isin(parts)]
    w = weights[
        (weights.dataset == dataset) & (weights.combo == combo) & (weights.method == "offline")
    ]
    w = w[(w.super_epoch == 0) & (w["head"] != JOINT)]
    per_seed = w.pivot_table(index="seed", columns="head", values="weight")
    row = {
        "dataset": dataset,
        "claim": 8,
        "statement": "the weakest modality gets the smallest weight and the strongest the largest",
    }
    if per_seed.empty or len(uni) < 2:
        return row | {"verdict": "undetermined (no estimates)", "evidence": ""}
    weak, strong = uni.idxmin(), uni.idxmax()
    diffs = [
        (f"{weak} - {h}", paired_difference(per_seed[weak], per_seed[h]), LOWER)
        for h in per_seed.columns
        if h != weak
    ] + [
        (f"{strong} - {h}", paired_difference(per_seed[strong], per_seed[h]), HIGHER)
        for h in per_seed.columns
        if h not in (strong, weak)
    ]
    verdict = label([(d, want, "weight") for _, d, want in diffs])
    means = per_seed.mean()
    evidence = (
        f"mean offline weights {', '.join(f'{h} {v:.2f}' for h, v in means.items())}; "
        f"weakest alone {weak}, strongest alone {strong}; "
        + "; ".join(f"{n} {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" for n, d, _ in diffs)
    )
    return row | {"verdict": verdict, "evidence": evidence}


def probe_differences(probes: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per data set and super-epoch: G-Blend minus naive accuracy (%), paired over seeds."""
    rows = []
    for (dataset, variant, end), group in probes.groupby(
        ["dataset", "variant", "end_epoch"], sort=False
    ):
        wide = group.pivot_table(index="seed", columns="branch", values=f"{split}_acc") * 100
        diff = paired_difference(wide["gblend"], wide["naive"])
        rows.append(
            {
                "dataset": dataset,
                "variant": variant,
                "end_epoch": end,
                "gblend": wide["gblend"].mean(),
                "naive": wide["naive"].mean(),
                "difference": diff.mean,
                "low": diff.low,
                "high": diff.high,
                "verdict": diff.direction,
                "seeds": diff.n,
            }
        )
    return pd.DataFrame(rows)


def _as_difference(row) -> PairedDifference:
    """A row of :func:`probe_differences` as the paired difference it summarises."""
    return PairedDifference(row.difference, float("nan"), row.seeds, row.low, row.high, 0.95)


def figure5_claims(weights: pd.DataFrame, differences: pd.DataFrame) -> pd.DataFrame:
    """Claims 7 (G-Blend >= naive at every super-epoch) and 9 (online weights change)."""
    rows = []
    for (dataset, variant), diffs in differences.groupby(["dataset", "variant"], sort=False):
        seeds = int(diffs.seeds.min())
        higher = int((diffs.verdict == "higher").sum())
        lower = int((diffs.verdict == "lower").sum())
        rows.append(
            {
                "dataset": dataset,
                "variant": variant,
                "claim": 7,
                "statement": "from the same snapshot, a super-epoch of G-Blend gives a better "
                "trunk than a naive one, at every super-epoch",
                "verdict": label([(_as_difference(r), HIGHER, "pts") for r in diffs.itertuples()]),
                "evidence": f"G-Blend higher at {higher} of {len(diffs)} super-epochs, lower at "
                f"{lower}, no detectable difference at {len(diffs) - higher - lower} "
                "(paired seeds, 95% t-interval of test accuracy after fine-tuning)",
            }
        )
        w = weights[(weights.dataset == dataset) & (weights.variant == variant)]
        claim9 = {"dataset": dataset, "variant": variant, "claim": 9}
        rows.append(with_weight_health(claim9 | _weight_change_claim(w, seeds),
                                       *online_weight_health(w)))  # fmt: skip
    return pd.DataFrame(rows)


def _weight_change_claim(w: pd.DataFrame, seeds: int) -> dict[str, str]:
    """Claim 9, the change across super-epochs against the spread across seeds within one:
    a head's weight moves when its mean at two super-epochs differs by more than their 95%
    intervals over seeds together (the intervals do not overlap)."""
    statement = (
        "online weights change over training (a head's mean weight at two super-epochs "
        "differs by more than the seeds' spread within them)"
    )
    if seeds < 2:
        return {"statement": statement, "verdict": ONE_SEED, "evidence": ""}
    stats_ = w.groupby(["head", "super_epoch"]).weight.agg(["mean", "std", "count"])
    t = sstats.t.ppf(0.975, df=stats_["count"].clip(lower=2) - 1)
    stats_["half"] = t * stats_["std"].fillna(0) / np.sqrt(stats_["count"])
    moved, parts = [], []
    for head, g in stats_.groupby(level="head", sort=False):
        g = g.droplevel("head")
        top, low = g["mean"].idxmax(), g["mean"].idxmin()
        change = g.loc[top, "mean"] - g.loc[low, "mean"]
        noise = g.loc[top, "half"] + g.loc[low, "half"]
        parts.append((head, change, noise))
        if change > noise:
            moved.append(head)
    resolution = float(np.median([n for _, _, n in parts]))
    verdict = (
        REPRODUCED
        if moved
        else f"{NOT_DETECTABLE} (these seeds detect a change of about {resolution:.2g})"
    )
    evidence = "largest change of the mean weight across super-epochs against the seeds' " + (
        "spread: " + ", ".join(f"{h} {c:.2f} vs {n:.2f}" for h, c, n in parts)
    )
    return {"statement": statement, "verdict": verdict, "evidence": evidence}
