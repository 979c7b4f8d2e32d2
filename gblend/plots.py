"""Figure functions, one per paper figure; they take tidy DataFrames and return a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
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


def _grid(n: int, width: float = 6.0, height: float = 3.6):
    ncols = min(2, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def online_weights(weights: pd.DataFrame, method: str = "online") -> plt.Figure:
    """Online G-Blend weights per super-epoch, stacked, one panel per data set (paper Fig. 5a).

    ``weights`` comes from ``gblend.experiments.table2``; means over seeds.
    """
    style()
    online = weights[weights.method == method]
    datasets = list(dict.fromkeys(online.dataset))
    fig, axes = _grid(max(len(datasets), 1))
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = online[online.dataset == dataset]
        table = sub.pivot_table(index="start_epoch", columns="head", values="weight", sort=False)
        heads = [h for h in dict.fromkeys(sub["head"]) if h in table.columns]
        table = table[heads]
        ends = table.index.to_list()[1:] + [table.index[-1] + sub.n_epochs.iloc[-1]]
        edges = table.index.to_list() + [ends[-1]]
        bottom = pd.Series(0.0, index=table.index)
        for head in heads:
            ax.stairs(
                bottom.to_numpy() + table[head].to_numpy(),
                edges,
                baseline=bottom.to_numpy(),
                fill=True,
                label=head,
                alpha=0.85,
            )
            bottom = bottom + table[head]
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0, 1)
        ax.set_title(f"{dataset}: {sub.combo.iloc[0]}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("weight (mean over seeds)")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def weight_bars(mean_weights: pd.DataFrame) -> plt.Figure:
    """Offline G-Blend weights of every combination as stacked horizontal bars (Table 4)."""
    style()
    rows = list(dict.fromkeys(zip(mean_weights.dataset, mean_weights.combo, strict=True)))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    palette = dict(
        zip(dict.fromkeys(mean_weights["head"]), sns.color_palette("tab10"), strict=False)
    )
    for y, (dataset, combo) in enumerate(rows):
        left = 0.0
        sub = mean_weights[(mean_weights.dataset == dataset) & (mean_weights.combo == combo)]
        for head, weight in zip(sub["head"], sub.weight, strict=True):
            ax.barh(y, weight, left=left, color=palette[head])
            if weight > 0.08:
                ax.text(left + weight / 2, y, head, ha="center", va="center", fontsize=7)
            left += weight
    ax.set_yticks(range(len(rows)), [f"{d}: {c}" for d, c in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("offline G-Blend weight (mean over seeds)")
    fig.tight_layout()
    return fig


def figure3_annotated(run: pd.DataFrame, start: int, end: int) -> plt.Figure:
    """One run's L^T (T') and L^V (heldout) with O_N, O_{N+n}, dG marked (paper Fig. 3).

    ``run``: the history rows of one run's fused head (columns epoch, split, loss).
    """
    style()
    loss = run.pivot_table(index="epoch", columns="split", values="loss")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(loss.index, loss["train_subset"], color="tab:blue", label="$L^T$ (train subset T')")
    ax.plot(loss.index, loss["heldout"], color="tab:red", ls=":", label="$L^V$ (heldout V)")
    for epoch, name in ((start, "N"), (end, "N+n")):
        t, v = loss.loc[epoch, "train_subset"], loss.loc[epoch, "heldout"]
        ax.vlines(epoch, t, v, color="black", lw=1.5)
        ax.annotate(
            f"$O_{{{name}}}$ = {v - t:.2f}",
            (epoch, (t + v) / 2),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    v0, v1 = loss.loc[start, "heldout"], loss.loc[end, "heldout"]
    ax.annotate(
        "", xy=(end, v1), xytext=(start, v0), arrowprops={"arrowstyle": "->", "color": "tab:green"}
    )
    ax.annotate(
        f"$\\Delta G$ = {v0 - v1:.2f}",
        ((start + end) / 2, (v0 + v1) / 2),
        xytext=(10, 10),
        textcoords="offset points",
        color="tab:green",
        fontsize=9,
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (cross-entropy)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ogr_over_training(ogr: pd.DataFrame) -> plt.Figure:
    """Median OGR per window over training, uni-modal vs joint models, one panel per data set."""
    style()
    datasets = list(dict.fromkeys(ogr.dataset))
    fig, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = ogr[ogr.dataset == dataset].copy()
        sub["model"] = sub.combo.where(sub.combo.str.contains(r"\+"), sub.combo + " (uni)")
        sns.lineplot(
            data=sub,
            x="end",
            y="ogr",
            hue="model",
            estimator="median",
            errorbar=None,
            marker="o",
            ax=ax,
        )
        ax.set_yscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("epoch N + n")
        ax.set_ylabel("OGR = |dO / dG| (median over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def probe_accuracy(probes: pd.DataFrame, split: str = "test") -> plt.Figure:
    """Accuracy after fine-tuning a fresh classifier on the trunk trained for one super-epoch
    with G-Blend or naively, from the same snapshot (paper Fig. 5b); mean and 95% CI."""
    style()
    datasets = list(dict.fromkeys(probes.dataset))
    fig, axes = _grid(len(datasets), height=3.4)
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = probes[probes.dataset == dataset].assign(acc=lambda d: d[f"{split}_acc"])
        sns.pointplot(
            data=sub,
            x="end_epoch",
            y="acc",
            hue="branch",
            hue_order=["naive", "gblend"],
            dodge=0.3,
            errorbar=("ci", 95),
            linestyles="none",
            ax=ax,
        )
        ax.set_title(f"{dataset}: {sub.combo.iloc[0]}")
        ax.set_xlabel("epoch at the end of the super-epoch")
        ax.set_ylabel(f"{split} accuracy after fine-tuning")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _bars(table: pd.DataFrame, column: str) -> list[pd.Series]:
    """Error bars from ``<column>_low``/``_high``; none where an interval is unbounded (one
    seed)."""
    low = (table[column] - table[f"{column}_low"]).where(lambda d: d.abs() < float("inf"), 0)
    high = (table[f"{column}_high"] - table[column]).where(lambda d: d.abs() < float("inf"), 0)
    return [low, high]


def _interval_lines(ax, table: pd.DataFrame, x: str, y: str, by: str, label: str) -> None:
    """Means with 95% interval bars of ``y`` over ``x``, one line per value of ``by``."""
    for value, part in table.sort_values(x).groupby(by, sort=True):
        ax.errorbar(
            part[x].astype(str),
            part[y],
            yerr=_bars(part, y),
            marker="o",
            capsize=3,
            label=f"{label} {value}",
        )


def dose_response(table: pd.DataFrame, dose: str = "audio_noise_dims") -> plt.Figure:
    """The gap joint - best uni-modal (points) and each model's overfitting (heldout - T'
    loss) over the weak modality's noise dimensions, one line per train-split size; bars are
    95% intervals over seeds. ``table``: :func:`gblend.experiments.regimes.dose_response`."""
    style()
    # one panel per model: audio, rgb, joint (the paired excess is in the table)
    models = [
        c.removeprefix("overfit_").removesuffix("_low")
        for c in table.columns
        if c.startswith("overfit_") and c.endswith("_low") and "excess" not in c
    ]
    fig, axes = _grid(1 + len(models), width=5.2, height=3.4)
    ax = next(axes)
    _interval_lines(ax, table, dose, "gap", "n_train", "train")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(title="joint - best uni-modal", xlabel=dose, ylabel="test accuracy (points)")
    ax.legend(fontsize=7)
    for ax, model in zip(axes, models, strict=False):
        _interval_lines(ax, table, dose, f"overfit_{model}", "n_train", "train")
        ax.set(title=f"overfitting: {model}", xlabel=dose, ylabel="heldout - T' loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def regime_map(table: pd.DataFrame) -> plt.Figure:
    """Per data set: naive - best uni-modal and offline G-Blend - naive (test accuracy points)
    over the fraction of the train split kept, one line style per encoder width where the
    map sweeps it; bars are 95% intervals over seeds. ``table`` comes from
    :func:`gblend.experiments.regimes.regime_map`."""
    style()
    datasets = list(dict.fromkeys(table.dataset))
    fig, axes = _grid(len(datasets), width=5.2, height=3.4)
    widths = sorted(table.hidden.unique()) if "hidden" in table else [None]
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = table[table.dataset == dataset]
        # the second width dodged to the right and drawn with open squares: where a data set
        # has one fraction, the line styles alone would not tell the widths apart
        for width, style_, marker, face, dodge in zip(
            widths, ("-", "--"), ("o", "s"), (None, "white"), (1.0, 1.05), strict=False
        ):
            part = sub if width is None else sub[sub.hidden == width]
            part = part.sort_values("train_frac")
            suffix = "" if width is None else f", width {width}"
            for column, colour, label in (
                ("naive_vs_uni", "tab:green", "naive - best uni"),
                ("offline_vs_naive", "tab:red", "offline - naive"),
            ):
                ax.errorbar(
                    part.train_frac * dodge,
                    part[column],
                    yerr=_bars(part, column),
                    marker=marker,
                    markerfacecolor=face,
                    capsize=3,
                    color=colour,
                    linestyle=style_,
                    label=label + suffix,
                )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        fractions = sorted(sub.train_frac.unique())
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set_xlim(fractions[0] / 1.4, fractions[-1] * 1.4)  # room for one fraction alone
        ax.set(title=dataset, xlabel="fraction of the train split", ylabel="test accuracy (points)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def estimator_configurations(shifts: pd.DataFrame, accuracy: pd.DataFrame) -> plt.Figure:
    """Per data set, one row of two panels: how far each configuration moves the weights from
    the paper's estimate of the same seed (total-variation distance, median with the range over
    seeds; the dotted line is the copy redraws' median, the estimator's own noise), and its
    test accuracy minus the paper configuration's (points, 95% intervals over seeds).
    ``shifts`` and ``accuracy`` come from :mod:`gblend.experiments.estimator`."""
    style()
    datasets = list(dict.fromkeys(accuracy.dataset))
    fig, axes = plt.subplots(
        len(datasets), 2, figsize=(11, 0.32 * 16 * len(datasets) + 0.8), squeeze=False
    )
    for (ax_w, ax_a), dataset in zip(axes, datasets, strict=True):
        acc = accuracy[(accuracy.dataset == dataset) & (accuracy.option != "paper")].iloc[::-1]
        # one row order for both panels: the sweep's, top to bottom
        sh = shifts[shifts.dataset == dataset].set_index("configuration").loc[acc.configuration]
        sh = sh.reset_index()
        ax_w.errorbar(
            sh.median_shift,
            sh.configuration,
            xerr=[sh.median_shift - sh.min_shift, sh.max_shift - sh.median_shift],
            fmt="o",
            capsize=3,
        )
        ax_w.axvline(sh.noise_floor.iloc[0], color="grey", linestyle=":", label="copy redraws")
        ax_w.set(title=f"{dataset}: weights moved", xlabel="distance to the paper's estimate",
                 xlim=(0, 1))  # fmt: skip
        ax_w.legend(fontsize=7)
        ax_a.errorbar(
            acc.vs_paper,
            acc.configuration,
            xerr=_bars(acc, "vs_paper"),
            fmt="o",
            capsize=3,
            color="tab:red",
        )
        ax_a.axvline(0, color="black", lw=0.8)
        ax_a.set(title=f"{dataset}: test accuracy", xlabel="minus the paper configuration (points)")
    fig.tight_layout()
    return fig


def _box(ax, x: float, y: float, text: str, color: str) -> None:
    ax.text(x, y, text, ha="center", va="center", fontsize=8,
            bbox={"boxstyle": "round,pad=0.35", "facecolor": color, "edgecolor": "0.3",
                  "linewidth": 0.8})  # fmt: skip


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "0.4"})


def architectures(specs, n_classes: int, config=None) -> plt.Figure:
    """Our three set-ups of the paper's Figure 2, drawn from the models themselves: (a) a
    uni-modal network, (b) naive late fusion, (c) the multi-head model G-Blend trains, each
    box labelled with its layer and parameter count. ``specs``: modality -> input spec (a
    data set's ``specs``); ``config``: the :class:`~gblend.models.ModelConfig` (default)."""
    from dataclasses import replace

    from gblend.models import FusionNet, ModelConfig

    config = config or ModelConfig()
    modalities = list(specs)
    plain = replace(config, modality_heads=False)
    naive = FusionNet(specs, n_classes, plain)
    multi = FusionNet(specs, n_classes, replace(config, modality_heads=True))

    def count(module) -> str:
        return f"{sum(p.numel() for p in module.parameters()):,} params"

    def encoder(m: str) -> str:
        spec = specs[m]
        return (f"{m}: {spec.kind} {'×'.join(map(str, spec.shape))}\n"
                f"{type(naive.encoders[m]).__name__} → {config.feature_dim}\n"
                f"{count(naive.encoders[m])}")  # fmt: skip

    def head(model) -> str:
        return (f"fused head\n2 FC × {config.fusion_hidden}\n+ linear → {n_classes}\n"
                f"{count(model.fused_head)}")  # fmt: skip

    fig, axes = plt.subplots(1, 3, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 4, 4]})
    ys = [4.0 - 2.0 * i for i in range(len(modalities))]
    mid = sum(ys) / len(ys)
    titles = ("(a) uni-modal", "(b) naive late fusion", "(c) multi-head (G-Blend)")
    for ax, title, width in zip(axes, titles, (9, 12, 12), strict=True):
        ax.set_xlim(0, width)
        ax.set_ylim(-1.3, 5.2)
        ax.axis("off")
        ax.set_title(title, fontsize=11)
    # (a) one modality: its encoder and the same fused head over its features alone
    first = modalities[0]
    uni = FusionNet({first: specs[first]}, n_classes, plain)
    _box(axes[0], 1.6, mid, encoder(first), "#dbe9f6")
    _box(axes[0], 5.0, mid, head(uni), "#fde0c5")
    _box(axes[0], 7.9, mid, "loss L", "#e5e5e5")
    _arrow(axes[0], (3.0, mid), (4.0, mid))
    _arrow(axes[0], (6.0, mid), (7.2, mid))
    axes[0].text(4.5, -1.0, f"one such network per modality; {first}'s: {count(uni)}",
                 ha="center", fontsize=8.5)  # fmt: skip
    # (b) and (c): the encoders' features concatenated into the fused head
    for ax, model in ((axes[1], naive), (axes[2], multi)):
        for m, y in zip(modalities, ys, strict=True):
            _box(ax, 1.6, y, encoder(m), "#dbe9f6")
            _arrow(ax, (3.0, y), (4.2, mid))
        _box(ax, 4.9, mid, f"concat\n{config.feature_dim * len(modalities)}", "#eeeeee")
        _box(ax, 7.3, mid, head(model), "#fde0c5")
        _arrow(ax, (5.6, mid), (6.3, mid))
        _arrow(ax, (8.3, mid), (9.4, mid))
        ax.text(6, -1.0, f"total {count(model)}", ha="center", fontsize=8.5)
    _box(axes[1], 10.4, mid, "loss L_joint", "#e5e5e5")
    _box(axes[2], 10.5, mid, "w_joint · L_joint", "#e5e5e5")
    for m, y in zip(modalities, ys, strict=True):
        linear = multi.modality_heads[m]
        y_head = y + (0.8 if y >= mid else -0.8)
        _box(axes[2], 10.5, y_head, f"linear → {n_classes}\n{count(linear)}\nw_{m} · L_{m}",
             "#e2f0d9")  # fmt: skip
        _arrow(axes[2], (3.0, y + 0.2), (9.6, y_head))
    fig.tight_layout()
    return fig


# The paper's Figure 1 colours: uni-modal blue, late concatenation green, overfitting
# remedies orange, fusion architectures red; the loss weightings of Table 5 purple
METHOD_COLORS = {
    "best uni": "tab:blue",
    "naive": "tab:green",
    "pretrain": "tab:orange",
    "early_stop": "tab:orange",
    "dropout": "tab:orange",
    "mid_concat": "tab:red",
    "se_gate": "tab:red",
    "nl_gate": "tab:red",
    "uniform": "tab:purple",
    "uncertainty": "tab:purple",
    "offline": "tab:purple",
}


def method_bars(comparison: pd.DataFrame, labels: dict[str, str], selection: str = "last"):
    """Horizontal bars of each method's mean test accuracy with its paired 95% interval
    against the best uni-modal model (drawn around the bar's end), one panel per data set
    and setting (the paper's Figure 1). ``comparison``: :func:`gblend.experiments.baselines
    .compare`; ``labels``: method -> bar label."""
    style()
    part = comparison[comparison.selection == selection]
    groups = list(dict.fromkeys(zip(part.dataset, part.setting, strict=True)))
    height = 0.38 * part.groupby(["dataset", "setting"]).size().max() + 1.4
    fig, axes = _grid(max(len(groups), 1), width=6.0, height=height)
    for ax, (dataset, setting) in zip(axes, groups, strict=False):
        sub = part[(part.dataset == dataset) & (part.setting == setting)]
        y = range(len(sub))
        uni = sub[sub.method == "best uni"].acc.iloc[0]
        ax.barh(y, sub.acc, color=[METHOD_COLORS.get(m, "tab:gray") for m in sub.method])
        # no interval for the best uni-modal model itself, nor with one seed (unbounded)
        low, high = sub.acc.copy(), sub.acc.copy()
        if "vs_uni_low" in sub:
            bounded = np.isfinite(sub.vs_uni_low) & np.isfinite(sub.vs_uni_high)
            low[bounded] = uni + sub.vs_uni_low[bounded]
            high[bounded] = uni + sub.vs_uni_high[bounded]
        ax.hlines(
            list(y),
            low,
            high,
            color="black",
            linewidth=1.5,
            label="best uni + 95% CI of the paired difference",
        )
        ax.axvline(uni, color="tab:blue", linestyle=":", linewidth=1)
        # a knob as "rate=0.8", without its method's (or train.) prefix
        knobs = [
            ", ".join(p.split(".", 1)[-1] for p in k.split(", ")) if k else "" for k in sub.knob
        ]
        names = [
            labels.get(m, m) + (f" ({k})" if k else "")
            for m, k in zip(sub.method, knobs, strict=True)
        ]
        ax.set_yticks(list(y), names, fontsize=8)
        ax.invert_yaxis()
        lo = min(sub.acc.min(), low.min())
        hi = max(sub.acc.max(), high.max())
        ax.set_xlim(lo - 0.15 * (hi - lo + 1), hi + 0.15 * (hi - lo + 1))
        ax.set_xlabel("test accuracy % (mean over seeds)")
        ax.set_title(f"{dataset}: {sub.combo.iloc[0]}" + (f" ({setting})" if setting else ""))
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def learned_weights(learned: pd.DataFrame) -> plt.Figure:
    """The learned uncertainty weights of every head over training, mean over seeds with a
    95% band, one panel per data set (claim 11)."""
    style()
    datasets = list(dict.fromkeys(learned.dataset))
    fig, axes = _grid(max(len(datasets), 1))
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = learned[learned.dataset == dataset]
        sns.lineplot(data=sub, x="epoch", y="weight", hue="head", errorbar=("ci", 95), ax=ax)
        ax.set_title(f"{dataset}: {sub.combo.iloc[0]}")
        ax.set_ylabel("learned weight (normalised)")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def per_class_gains(table: pd.DataFrame) -> plt.Figure:
    """The paper's Figure 6 on our data: per class (most improved at the top), G-Blend's and
    the best uni-modal model's test accuracy as bars and the second modality alone as a
    marker; beside it each class's gain (with its 95% interval over seeds) against the second
    modality's val accuracy. ``table``: :func:`gblend.experiments.per_class.class_table`."""
    style()
    datasets = list(dict.fromkeys(table.dataset))
    rows = max(1, len(datasets))
    height = 0.32 * table.groupby("dataset").size().max() + 1.6
    fig, axes = plt.subplots(rows, 2, figsize=(12, height * rows), squeeze=False)
    for (bars, scatter), dataset in zip(axes, datasets, strict=False):
        sub = table[table.dataset == dataset].reset_index(drop=True)
        y = np.arange(len(sub))
        bars.barh(y - 0.2, sub.gblend, height=0.4, color="tab:red", label="G-Blend")
        bars.barh(y + 0.2, sub.best, height=0.4, color="tab:blue", label="best uni-modal")
        bars.scatter(sub.second, y, marker="x", color="black", zorder=3, label="second alone")
        bars.set_yticks(y, sub.class_name, fontsize=8)
        bars.invert_yaxis()
        bars.set_xlabel("test accuracy % (mean over seeds)")
        bars.set_title(f"{dataset}: classes by G-Blend's gain")
        bars.legend(fontsize=7, loc="lower left")
        finite = np.isfinite(sub.gain_low) & np.isfinite(sub.gain_high)
        err = np.vstack([sub.gain - sub.gain_low, sub.gain_high - sub.gain]) * finite.values
        scatter.errorbar(sub.second_val, sub.gain, yerr=err, fmt="o", color="tab:red", capsize=2)
        for r in sub.itertuples():
            scatter.annotate(r.class_name, (r.second_val, r.gain), fontsize=7, xytext=(3, 3),
                             textcoords="offset points")  # fmt: skip
        scatter.axhline(0, color="gray", linewidth=1)
        scatter.set_xlabel("second modality alone: val accuracy % of the class")
        scatter.set_ylabel("gain: G-Blend − best uni (pts)")
        scatter.set_title(f"{dataset}: gain against the second modality")
    fig.tight_layout()
    return fig


def cross_terms(pairs: pd.DataFrame, over_training: pd.DataFrame, margin: float) -> plt.Figure:
    """Claim 18, one row of panels per data set: each pair of heads' cross term relative to
    its diagonal terms (mean over seeds with a 95% interval; the band is what counts as small)
    and, beside it, the mean over seeds at each checkpoint. ``pairs``:
    :func:`gblend.experiments.correlation.pair_table`; ``over_training``: the cross-term frame
    (:attr:`gblend.experiments.records.Results.cross_terms`)."""
    style()
    datasets = list(dict.fromkeys(pairs.dataset))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 3.4 * len(datasets)), squeeze=False)
    for (bars, lines), dataset in zip(axes, datasets, strict=False):
        sub = pairs[pairs.dataset == dataset].reset_index(drop=True)
        y = np.arange(len(sub))
        finite = np.isfinite(sub.relative_low) & np.isfinite(sub.relative_high)
        err = np.vstack([sub.relative - sub.relative_low, sub.relative_high - sub.relative])
        bars.axvspan(
            -margin, margin, color="tab:green", alpha=0.12, label=f"small (|·| < {margin:g})"
        )
        bars.errorbar(sub.relative, y, xerr=err * finite.values, fmt="o", color="tab:purple",
                      capsize=3, label="mean over seeds, 95% interval")  # fmt: skip
        bars.set_yticks(y, [f"{p} ({c})" for p, c in zip(sub.pair, sub.combo, strict=True)],
                        fontsize=8)  # fmt: skip
        bars.invert_yaxis()
        bars.axvline(0, color="gray", linewidth=1)
        bars.set_xlim(-1.05, 1.05)
        bars.set_xlabel("C_jk / √(C_jj C_kk)")
        bars.set_title(f"{dataset}: cross terms beside the diagonal terms")
        bars.legend(fontsize=7, loc="lower left")
        mine = over_training[over_training.dataset == dataset]
        mine = mine.assign(pair=mine.head_j + "–" + mine.head_k)
        sns.lineplot(data=mine, x="epoch", y="relative", hue="pair", marker="o", ax=lines,
                     errorbar=("ci", 95))  # fmt: skip
        lines.axhspan(-margin, margin, color="tab:green", alpha=0.12)
        lines.set_ylim(-1.05, 1.05)
        lines.set_xlabel("epoch (checkpoint)")
        lines.set_ylabel("C_jk / √(C_jj C_kk)")
        lines.set_title(f"{dataset}: over training (mean over seeds)")
        lines.legend(fontsize=7, title="pair of heads", title_fontsize=7)
    fig.tight_layout()
    return fig
