"""A result is a typed record: identity and variant columns, metrics, history, provenance.

:func:`make_record` is the one place a unit's result is written; every frame function reads
:class:`RunRecord` objects, and every frame carries the identity columns
(:data:`IDENTITY`), so tables group by variant and never pool two settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pandas as pd

from gblend import data as gdata
from gblend.cross_terms import CrossTerms
from gblend.experiments.grid import Unit
from gblend.models import JOINT
from gblend.results import history_to_json, provenance, unit_key

# The columns that identify a run; two runs with equal identity are the same run.
IDENTITY = ("dataset", "combo", "method", "variant", "seed")

# Two accuracies of every run. The paper trains a fixed schedule and lists early stopping as a
# separate remedy (its claim 4), so its claims are judged on the last epoch; picking each run's
# best val epoch is what early stopping gives, shown beside it.
SELECTIONS = {
    "last": "fixed schedule (last epoch)",
    "best_val": "best val epoch (early stopping)",
}


def overfitting(runs: pd.DataFrame, split: str = "heldout") -> pd.Series:
    """Each run's overfitting at the last epoch: the fused head's loss on ``split`` minus its
    loss on T' (the paper's O, with V = heldout; the calibration reads it on val)."""
    return runs[f"{split}_loss_last"] - runs.train_subset_loss_last


def metric_column(split: str, metric: str = "acc", selection: str = "last") -> str:
    """The runs-frame column of a split's metric (``acc`` or ``loss``) of the fused head at
    the epoch a selection picks: ``test_acc_last``, ``val_acc`` (best val epoch), ..."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")
    return f"{split}_{metric}" + ("_last" if selection == "last" else "")


class DuplicateRunError(ValueError):
    """Two records with one identity: a table would pool them or silently take the first."""


@dataclass
class RunRecord:
    """One finished unit. ``variant`` is the swept settings (``[[name, value], ...]``)."""

    key: str
    experiment: str  # the store (results folder) of the unit's method
    scale: str
    dataset: str
    combo: str
    modalities: list[str]
    method: str
    seed: int
    config: dict[str, Any]
    data_fingerprint: str
    split_sizes: dict[str, int]
    best_epoch: int
    epochs_run: int
    metrics: dict[str, float]  # the fused head at the best-val epoch: <split>_acc, <split>_loss
    history: dict[str, list]
    wall_seconds: float
    train_seconds: float
    provenance: dict[str, Any]
    variant: list[list[Any]] = field(default_factory=list)
    head_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    weights: list[dict[str, Any]] = field(default_factory=list)
    estimation_epochs: float = 0.0
    estimation_seconds: float = 0.0
    probes: list[dict[str, Any]] = field(default_factory=list)
    # learned loss weights per epoch (epoch, head -> weight), for methods that learn them
    learned_weights: list[dict[str, Any]] = field(default_factory=list)
    # Proposition 1's cross terms at checkpoints (gblend.cross_terms.CrossTerms.to_json)
    cross_terms: list[dict[str, Any]] = field(default_factory=list)
    batched: int = 1
    # the data set's class names, and each head's accuracy per class on val and test at the
    # last and the best val epoch (selection -> split -> head -> one value per class)
    classes: list[str] = field(default_factory=list)
    class_acc: dict[str, dict[str, dict[str, list[float | None]]]] = field(default_factory=dict)

    @property
    def last_metrics(self) -> dict[str, float]:
        """The fused head at the last epoch trained (the fixed schedule's result), named as
        ``metrics`` with the suffix ``_last``; read from the history, which every record has.
        An early-stopped run (one with patience) ends with its best val epoch's weights: that
        model is its result, so it is read at that epoch under either name."""
        if self.config["train"].get("patience") is not None:
            return {f"{name}_last": value for name, value in self.metrics.items()}
        h = self.history
        rows = zip(h["epoch"], h["head"], h["split"], h["acc"], h["loss"], strict=True)
        return {
            f"{split}_{name}_last": float(value)
            for epoch, head, split, acc, loss in rows
            if epoch == self.epochs_run and head == JOINT
            for name, value in (("acc", acc), ("loss", loss))
        }

    def class_accuracy(self, selection: str = "last") -> dict[str, dict[str, list]]:
        """Split -> head -> accuracy of each class at the epoch ``selection`` picks (an
        early-stopped run's result is its best val epoch under either name, as in
        :attr:`last_metrics`). Records written before per-class accuracy was measured have
        none: an error says so."""
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")
        if self.config["train"].get("patience") is not None:
            selection = "best_val"
        if selection not in self.class_acc:
            raise KeyError(
                f"the result {self.key} ({self.dataset} {self.combo} {self.method}, seed "
                f"{self.seed}) has no per-class accuracy at selection {selection!r}; delete "
                "its result file and run its grid again"
            )
        return self.class_acc[selection]

    @property
    def variant_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.variant)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_record(
    unit: Unit,
    dataset: gdata.Dataset,
    history: pd.DataFrame,
    best_epoch: int,
    epochs_run: int,
    train_seconds: float,
    wall_seconds: float,
    device: str,
    extras: Mapping[str, Any],
    class_acc: Mapping[str, Any] | None = None,
) -> RunRecord:
    """A unit's result: identity, config, the fused head at the selected epoch, history,
    and (``class_acc``, from the trainer's ``class_accuracy``) each head's per-class
    accuracy."""
    at_best = history[history.epoch == best_epoch]
    metrics = {
        f"{row.split}_{name}": float(getattr(row, name))
        for row in at_best[at_best["head"] == JOINT].itertuples()
        for name in ("acc", "loss")
    }
    # every head of a multi-head model at the selected epoch (the fused head is the one
    # reported; the others show what each modality's own classifier learned)
    heads = {
        head: {row.split: float(row.acc) for row in rows.itertuples()}
        for head, rows in at_best.groupby("head")
    }
    config = unit.config()
    return RunRecord(
        key=unit_key(config, dataset.fingerprint),
        experiment=unit.store,
        scale=unit.scale,
        dataset=unit.dataset,
        combo=unit.combo,
        modalities=list(unit.modalities),
        method=unit.method,
        seed=unit.seed,
        config=config,
        data_fingerprint=dataset.fingerprint,
        split_sizes={s: int(len(idx)) for s, idx in dataset.splits.items()},
        best_epoch=int(best_epoch),
        epochs_run=int(epochs_run),
        metrics=metrics,
        history=history_to_json(history),
        wall_seconds=wall_seconds,
        train_seconds=train_seconds,
        provenance=provenance(device),
        variant=[[k, v] for k, v in unit.variant],
        head_metrics=heads if len(heads) > 1 else {},
        classes=list(dataset.classes),
        class_acc=dict(class_acc or {}),
        **dict(extras),
    )


def check_unique(records: Iterable[RunRecord]) -> None:
    """Raise :class:`DuplicateRunError` if two records share an identity."""
    seen: dict[tuple, str] = {}
    for rec in records:
        ident = (rec.dataset, rec.combo, rec.method, rec.variant_label, rec.seed)
        if ident in seen and seen[ident] != rec.key:
            raise DuplicateRunError(
                f"two results for {dict(zip(IDENTITY, ident, strict=True))}: keys "
                f"{seen[ident]} and {rec.key}; give the settings that differ as a grid axis"
            )
        seen[ident] = rec.key


def _identity(rec: RunRecord) -> dict[str, Any]:
    return {
        "dataset": rec.dataset,
        "combo": rec.combo,
        "method": rec.method,
        "variant": rec.variant_label,
        "seed": rec.seed,
    }


def runs_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per unit: identity, the fused head's metrics at the best val epoch
    (``test_acc``, ...) and at the last epoch (``test_acc_last``, ...; see
    :data:`SELECTIONS`), timing and provenance."""
    records = list(records)
    check_unique(records)
    rows = []
    for rec in records:
        row = _identity(rec) | {
            "best_epoch": rec.best_epoch,
            "epochs_run": rec.epochs_run,
            "wall_seconds": rec.wall_seconds,
            "train_seconds": rec.train_seconds,
            "data_fingerprint": rec.data_fingerprint,
            "key": rec.key,
            "n_modalities": len(rec.modalities),
            "n_train": rec.split_sizes.get("train"),
            "estimation_epochs": rec.estimation_epochs,
            "estimation_seconds": rec.estimation_seconds,
            **rec.metrics,
            **rec.last_metrics,
            "device": rec.provenance["device"],
            "device_name": rec.provenance.get("device_name", ""),
            "cpu_model": rec.provenance.get("cpu_model", ""),
            "threads": rec.provenance.get("threads"),
            "git_commit": rec.provenance.get("git_commit", ""),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def history_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Every unit's per-epoch history, with the unit's identity columns."""
    frames = []
    for rec in records:
        hist = pd.DataFrame(rec.history)
        for k, v in _identity(rec).items():
            hist[k] = v
        frames.append(hist)
    columns = [*IDENTITY, "epoch", "head", "split", "loss", "acc"]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


def heads_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Accuracy of every head of each multi-head run at its selected epoch."""
    rows = [
        _identity(rec) | {"head": head, "split": split, "acc": acc}
        for rec in records
        for head, accs in rec.head_metrics.items()
        for split, acc in accs.items()
    ]
    return pd.DataFrame(rows, columns=[*IDENTITY, "head", "split", "acc"])


def weights_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per estimated weight: run, super-epoch, head, weight, dG, dO, fallback rules
    and, where the estimate was bootstrapped over V, the 95% interval of the weight."""
    rows = []
    for rec in records:
        for i, est in enumerate(rec.weights):
            if "weights" not in est:  # equal weights: nothing was estimated
                continue
            boot = est.get("bootstrap") or {}
            rules: dict[str, list[str]] = {}
            for f in est["fallbacks"]:
                rules.setdefault(f["head"], []).append(f["rule"])
            for head, weight in est["weights"].items():
                rows.append(
                    _identity(rec)
                    | {
                        "super_epoch": i,
                        "start_epoch": est["context"].get("start_epoch", 0),
                        "n_epochs": est["context"].get("n_epochs"),
                        "head": head,
                        "weight": weight,
                        "delta_g": est["delta_g"][head],
                        "delta_o": est["delta_o"][head],
                        "ogr": est["ogr"][head],
                        "fallbacks": ",".join(rules.get(head, []) + rules.get("*", [])),
                        "optimizer": rec.config["train"]["optimizer"],
                        "boot_low": boot.get("low", {}).get(head, float("nan")),
                        "boot_high": boot.get("high", {}).get(head, float("nan")),
                    }
                )
    return pd.DataFrame(rows)


def learned_weights_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (run, epoch, head) of the runs that learn their loss weights."""
    rows = [
        _identity(rec) | {"epoch": step["epoch"], "head": head, "weight": weight}
        for rec in records
        for step in rec.learned_weights
        for head, weight in step.items()
        if head != "epoch"
    ]
    return pd.DataFrame(rows, columns=[*IDENTITY, "epoch", "head", "weight"])


CROSS_TERM_COLUMNS = (*IDENTITY, "epoch", "head_j", "head_k", "relative", "correlation")


def cross_terms_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (run, checkpoint, pair of heads) of the runs that measured Proposition 1's
    cross terms: the cross term relative to its diagonal terms and the centered correlation
    (:class:`gblend.cross_terms.CrossTerms`)."""
    rows = [
        _identity(rec)
        | {"epoch": terms.epoch, "head_j": j, "head_k": k, "relative": rel, "correlation": cor}
        for rec in records
        for terms in map(CrossTerms.from_json, rec.cross_terms)
        for j, k, rel, cor in terms.pairs()
    ]
    return pd.DataFrame(rows, columns=list(CROSS_TERM_COLUMNS))


BLEND_COLUMNS = (*IDENTITY, "epoch", "head", "paper_weight", "optimal_weight", "efficiency")


def cross_term_blends_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (run, checkpoint, head): Eq. 6's weight, the weight without the
    uncorrelated assumption, and the efficiency of Eq. 6's blend at that checkpoint."""
    rows = []
    for rec in records:
        for terms in map(CrossTerms.from_json, rec.cross_terms):
            paper, optimal, efficiency = (
                terms.paper_weights(),
                terms.optimal_weights(),
                terms.efficiency(),
            )
            rows += [
                _identity(rec) | {"epoch": terms.epoch, "head": head, "paper_weight": float(a),
                                  "optimal_weight": float(b), "efficiency": efficiency}
                for head, a, b in zip(terms.heads, paper, optimal, strict=True)
            ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(BLEND_COLUMNS))


CLASS_COLUMNS = (*IDENTITY, "selection", "split", "head", "class", "class_name", "acc")


def class_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (run, selection, split, head, class): each head's accuracy of the class at
    the epoch each selection picks (:meth:`RunRecord.class_accuracy`); an error names a
    record that has none."""
    rows = [
        _identity(rec)
        | {
            "selection": selection,
            "split": split,
            "head": head,
            "class": k,
            "class_name": rec.classes[k],
            "acc": acc,
        }
        for rec in records
        for selection in SELECTIONS
        for split, heads in rec.class_accuracy(selection).items()
        for head, per_class in heads.items()
        for k, acc in enumerate(per_class)
    ]
    return pd.DataFrame(rows, columns=list(CLASS_COLUMNS))


def probes_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Figure 5b: one row per (run, super-epoch, branch) of the probed online runs."""
    return pd.DataFrame([_identity(rec) | dict(probe) for rec in records for probe in rec.probes])


class Results:
    """The records of a grid and their tidy frames (computed once, when first asked for)."""

    def __init__(self, records: Iterable[RunRecord]) -> None:
        self.records = list(records)
        check_unique(self.records)
        self._frames: dict[str, pd.DataFrame] = {}

    def _frame(self, name: str, build) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = build(self.records)
        return self._frames[name]

    @property
    def runs(self) -> pd.DataFrame:
        return self._frame("runs", runs_frame)

    @property
    def history(self) -> pd.DataFrame:
        return self._frame("history", history_frame)

    @property
    def weights(self) -> pd.DataFrame:
        return self._frame("weights", weights_frame)

    @property
    def heads(self) -> pd.DataFrame:
        return self._frame("heads", heads_frame)

    @property
    def probes(self) -> pd.DataFrame:
        return self._frame("probes", probes_frame)

    @property
    def learned_weights(self) -> pd.DataFrame:
        return self._frame("learned_weights", learned_weights_frame)

    @property
    def cross_terms(self) -> pd.DataFrame:
        return self._frame("cross_terms", cross_terms_frame)

    @property
    def cross_term_blends(self) -> pd.DataFrame:
        return self._frame("cross_term_blends", cross_term_blends_frame)

    @property
    def classes(self) -> pd.DataFrame:
        return self._frame("classes", class_frame)
