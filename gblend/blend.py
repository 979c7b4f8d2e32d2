"""Gradient-Blending exactly as the paper defines it (Wang, Tran & Feiszli, CVPR 2020).

Measurements (paper §3.2, Eq. 3, Fig. 3), per head, between checkpoints N and N+n:

* L^T: mean loss on a fixed train subset T'; L^V: mean loss on heldout V, carved from the
  training split and never trained on; both in eval mode;
* overfitting O_N = L^V_N - L^T_N, its change dO = O_{N+n} - O_N;
* generalization gain dG = L^V_N - L^V_{N+n} (positive when the heldout loss falls; the
  paper's Fig. 3 prints the opposite sign, its Eq. 3 this one);
* OGR = |dO / dG|.

Weights (Proposition 1, Algorithm 1): w_i proportional to dG_i / dO_i^2, normalised to sum to
1. The paper's printed Z = sum_k <grad L*, v_k> / (2 sigma_k^2) would make them sum to 2; every
weight vector in its Tables 4 and 5 sums to 1, so we normalise to 1.

The paper does not say what to do when a measurement is degenerate; :class:`DegeneratePolicy`
is our named policy, and every time it acts it leaves a :class:`Fallback` in the estimate.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from gblend.models import JOINT, FusionNet
from gblend.train import TRAIN_SUBSET, TrainConfig, Trainer, resolve_device

METRICS = ("loss", "acc")


@dataclass(frozen=True)
class Measurement:
    """Per-head value of the metric on T' (``train``) and on heldout V at one checkpoint."""

    train: Mapping[str, float]
    heldout: Mapping[str, float]
    metric: str = "loss"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; valid: {', '.join(METRICS)}")
        if set(self.train) != set(self.heldout):
            raise ValueError("train and heldout must measure the same heads")


def overfitting(m: Measurement) -> dict[str, float]:
    """O per head: L^V - L^T for losses; for accuracy, train minus heldout accuracy."""
    if m.metric == "loss":
        return {h: m.heldout[h] - m.train[h] for h in m.train}
    return {h: m.train[h] - m.heldout[h] for h in m.train}


def generalization_gain(before: Measurement, after: Measurement) -> dict[str, float]:
    """dG per head: the fall of heldout loss (or the rise of heldout accuracy)."""
    _check_pair(before, after)
    if before.metric == "loss":
        return {h: before.heldout[h] - after.heldout[h] for h in before.heldout}
    return {h: after.heldout[h] - before.heldout[h] for h in before.heldout}


def overfitting_change(before: Measurement, after: Measurement) -> dict[str, float]:
    """dO per head: O_{N+n} - O_N."""
    _check_pair(before, after)
    o_before, o_after = overfitting(before), overfitting(after)
    return {h: o_after[h] - o_before[h] for h in o_before}


def ogr(before: Measurement, after: Measurement) -> dict[str, float]:
    """Overfitting-to-Generalization Ratio |dO / dG| per head (inf where dG = 0)."""
    d_g, d_o = generalization_gain(before, after), overfitting_change(before, after)
    return {h: abs(d_o[h] / d_g[h]) if d_g[h] != 0 else math.inf for h in d_g}


def _check_pair(before: Measurement, after: Measurement) -> None:
    if before.metric != after.metric:
        raise ValueError("before and after must use the same metric")
    if set(before.train) != set(after.train):
        raise ValueError("before and after must measure the same heads")


@dataclass(frozen=True)
class DegeneratePolicy:
    """What we do where the paper's formula breaks down (the paper does not say).

    1. A head whose dG or dO is not finite, or whose dG <= 0 (it did not generalise at all
       over the window), gets raw weight 0 (rules ``non_finite`` and ``no_generalization``).
    2. |dO| below ``relative_overfit_floor`` times the largest |dO| of the usable heads is
       raised to that floor, so a head that barely overfits gets a large but finite weight
       (rule ``overfit_floor``); the floor is relative, so the weights stay invariant to a
       common scale of the losses. If every usable head has dO = 0, dO is treated as equal
       for all of them (rule ``no_overfitting``).
    3. If no head is usable, the weights are uniform (rule ``all_degenerate``).
    4. Finally every weight is raised to at least ``min_weight`` and the rest renormalised
       (rule ``min_weight``), so that no head, in particular the fused head that we evaluate,
       is ever switched off: a head with weight 0 is never trained and predicts at chance.
    """

    min_weight: float = 0.01
    relative_overfit_floor: float = 1e-3

    def __post_init__(self) -> None:
        if not 0 <= self.min_weight < 1:
            raise ValueError("min_weight must be in [0, 1)")
        if not 0 < self.relative_overfit_floor < 1:
            raise ValueError("relative_overfit_floor must be in (0, 1)")


@dataclass(frozen=True)
class Fallback:
    """One action of the degenerate-case policy, kept with the results."""

    head: str
    rule: str
    detail: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class WeightEstimate:
    """The weights of one estimation, with everything needed to check them."""

    weights: dict[str, float]
    delta_g: dict[str, float]
    delta_o: dict[str, float]
    ogr: dict[str, float]
    metric: str
    fallbacks: list[Fallback] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def clean(d: Mapping[str, float]) -> dict[str, float | None]:
            return {k: (float(v) if math.isfinite(v) else None) for k, v in d.items()}

        return {
            "weights": dict(self.weights),
            "delta_g": clean(self.delta_g),
            "delta_o": clean(self.delta_o),
            "ogr": clean(self.ogr),
            "metric": self.metric,
            "fallbacks": [asdict(f) for f in self.fallbacks],
            "context": dict(self.context),
        }


def estimate_weights(
    before: Measurement,
    after: Measurement,
    policy: DegeneratePolicy | None = None,
    context: Mapping[str, Any] | None = None,
) -> WeightEstimate:
    """Algorithm 1's last line: w_i = (1/Z) dG_i / dO_i^2 with sum(w) = 1, plus the policy."""
    policy = policy or DegeneratePolicy()
    context = dict(context or {})
    heads = list(before.train)
    if policy.min_weight * len(heads) >= 1:
        raise ValueError(f"min_weight {policy.min_weight} leaves nothing for {len(heads)} heads")
    d_g = generalization_gain(before, after)
    d_o = overfitting_change(before, after)
    fallbacks: list[Fallback] = []

    def log(head: str, rule: str, detail: str) -> None:
        fallbacks.append(Fallback(head, rule, detail, context))

    usable = []
    for h in heads:
        if not (math.isfinite(d_g[h]) and math.isfinite(d_o[h])):
            log(h, "non_finite", f"dG={d_g[h]}, dO={d_o[h]}: raw weight 0")
        elif d_g[h] <= 0:
            log(h, "no_generalization", f"dG={d_g[h]:.3g} <= 0: raw weight 0")
        else:
            usable.append(h)

    raw = dict.fromkeys(heads, 0.0)
    if usable:
        largest = max(abs(d_o[h]) for h in usable)
        if largest == 0:
            for h in usable:
                log(h, "no_overfitting", "dO = 0 for every usable head: weights follow dG")
                raw[h] = d_g[h]
        else:
            floor = policy.relative_overfit_floor * largest
            for h in usable:
                o = abs(d_o[h])
                if o < floor:
                    log(h, "overfit_floor", f"|dO|={o:.3g} raised to {floor:.3g}")
                    o = floor
                raw[h] = d_g[h] / o**2
    total = sum(raw.values())
    if total > 0:
        weights = {h: raw[h] / total for h in heads}
    else:
        log("*", "all_degenerate", "no head generalised: uniform weights")
        weights = dict.fromkeys(heads, 1.0 / len(heads))
    weights = _apply_min_weight(weights, policy.min_weight, log)
    return WeightEstimate(
        weights=weights,
        delta_g=d_g,
        delta_o=d_o,
        ogr=ogr(before, after),
        metric=before.metric,
        fallbacks=fallbacks,
        context=context,
    )


def _apply_min_weight(weights: dict[str, float], minimum: float, log) -> dict[str, float]:
    """Raise weights below ``minimum`` to it, shrinking the others proportionally (sum 1)."""
    if minimum <= 0:
        return weights
    floored: set[str] = set()
    while True:
        low = {h for h, w in weights.items() if w < minimum and h not in floored}
        if not low:
            break
        floored |= low
        rest = sum(w for h, w in weights.items() if h not in floored)
        budget = 1.0 - minimum * len(floored)
        weights = {h: minimum if h in floored else w * budget / rest for h, w in weights.items()}
    for h in sorted(floored):
        log(h, "min_weight", f"weight raised to the minimum {minimum}")
    return weights


def uniform_weights(heads: tuple[str, ...]) -> dict[str, float]:
    """Equal weights: the paper's "auxiliary loss" baseline (Table 5)."""
    return dict.fromkeys(heads, 1.0 / len(heads))


# --- Algorithm 1: estimation from a checkpoint ------------------------------------------------


def _measure(trainer: Trainer, head: str, epoch: int, metric: str) -> tuple[float, float]:
    hist = trainer.history_
    rows = hist[(hist.epoch == epoch) & (hist["head"] == head)].set_index("split")[metric]
    return float(rows[TRAIN_SUBSET]), float(rows["heldout"])


class EstimationCopies(nn.Module):
    """Algorithm 1's k+1 copies of a multi-head checkpoint as one module, trained by one
    :class:`Trainer` with weight 1 on every head.

    Head h's logits are copy h's head h: a modality's copy sees only its own input (only its
    encoder and head run), the joint copy every input. The copies share no parameter, so the
    summed loss gives each copy exactly the gradient of its own head's loss, and parameters
    outside that head's path get no gradient and are not stepped: each copy ends as it ends
    trained alone (same mini-batch order, same dropout draws, since only the joint copy draws
    any). One training loop instead of k+1 saves the per-step overhead that dominates these
    small models. ``tests/test_blend.py`` checks the equality against copies trained one at
    a time.
    """

    def __init__(self, model: FusionNet) -> None:
        super().__init__()
        self.copies = nn.ModuleDict({head: copy.deepcopy(model) for head in model.heads})

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.copies)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {h: net(x if h == JOINT else {h: x[h]})[h] for h, net in self.copies.items()}


def gb_estimate(
    model: FusionNet,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    splits: Mapping[str, np.ndarray],
    config: TrainConfig,
    n_epochs: int,
    *,
    lr: float | None = None,
    metric: str = "loss",
    policy: DegeneratePolicy | None = None,
    context: Mapping[str, Any] | None = None,
) -> tuple[WeightEstimate, dict[str, float]]:
    """Algorithm 1 (GB_Estimate) from the multi-head checkpoint ``model``.

    For each head a copy of the checkpoint is trained for ``n_epochs`` on train with that
    head's loss alone: for a modality head only its encoder and its linear head receive
    gradients (the uni-modal copy); for the fused head all encoders and the fused head do (the
    naive joint copy). Each copy is measured on T' and V before and after, then discarded;
    ``model`` is not changed. The copies use ``config``'s optimizer with fresh state at
    learning rate ``lr`` (default ``config.lr``) and no schedule. They train together, as one
    :class:`EstimationCopies` module, and end as they would one at a time.

    Returns the estimate and the cost: extra epochs and seconds.
    """
    heads = tuple(model.heads)
    copy_config = replace(
        config,
        epochs=n_epochs,
        lr=config.lr if lr is None else lr,
        lr_milestones=(),
        patience=None,
        restore_best=False,
        select_head=JOINT,
        progress=False,
    )
    started = time.perf_counter()
    copies = EstimationCopies(model)
    trainer = Trainer(copy_config).start(copies, x, y, splits)
    trainer.train_epochs(n_epochs, dict.fromkeys(heads, 1.0), record_every_epoch=False).finish()
    train_before, train_after, held_before, held_after = {}, {}, {}, {}
    for head in heads:
        train_before[head], held_before[head] = _measure(trainer, head, 0, metric)
        train_after[head], held_after[head] = _measure(trainer, head, n_epochs, metric)
    estimate = estimate_weights(
        Measurement(train_before, held_before, metric),
        Measurement(train_after, held_after, metric),
        policy,
        context={**dict(context or {}), "n_epochs": n_epochs},
    )
    cost = {"extra_epochs": float(n_epochs * len(heads)), "seconds": time.perf_counter() - started}
    return estimate, cost


# --- Algorithms 2 and 3: offline and online G-Blend ---------------------------------------------


@dataclass
class BlendRun:
    """A trained multi-head model and the weights it was trained with."""

    trainer: Trainer
    estimates: list[WeightEstimate]
    estimation_epochs: float
    estimation_seconds: float
    probes: list[dict[str, Any]] = field(default_factory=list)  # Fig. 5b, when asked for

    def weights_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.estimates]


def train_offline(
    model: FusionNet,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    splits: Mapping[str, np.ndarray],
    config: TrainConfig,
    estimate_epochs: int | None = None,
    metric: str = "loss",
    policy: DegeneratePolicy | None = None,
) -> BlendRun:
    """Algorithm 2: estimate once from initialisation, then train with those fixed weights.

    The paper estimates with n = N, the whole run (``estimate_epochs=None``).
    """
    n = config.epochs if estimate_epochs is None else estimate_epochs
    estimate, cost = gb_estimate(
        model,
        x,
        y,
        splits,
        config,
        n,
        metric=metric,
        policy=policy,
        context={"super_epoch": 0, "start_epoch": 0},
    )
    trainer = Trainer(config).fit(model, x, y, splits, loss_weights=estimate.weights)
    return BlendRun(trainer, [estimate], cost["extra_epochs"], cost["seconds"])


def super_epochs(total: int, warmup: int, length: int) -> list[tuple[int, int]]:
    """(start epoch, number of epochs) of each super-epoch: a warm-up, then fixed lengths.

    The last super-epoch is shorter when ``total - warmup`` is not a multiple of ``length``.
    """
    if warmup < 1 or length < 1 or total < 1:
        raise ValueError("total, warmup and length must be positive")
    blocks, start = [(0, min(warmup, total))], min(warmup, total)
    while start < total:
        blocks.append((start, min(length, total - start)))
        start += length
    return blocks


# --- Figure 5b: G-Blend vs naive from the same snapshot, per super-epoch -------------------------


FEATURES = "trunk_features"  # the input name of the probe's classifier


class _ClassifierOnFeatures(nn.Module):
    """A fused head fed with precomputed trunk features, as a model the Trainer can train."""

    def __init__(self, fused_head: nn.Module) -> None:
        super().__init__()
        self.fused_head = fused_head

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {JOINT: self.fused_head(x[FEATURES])}


@torch.no_grad()
def trunk_features(model: FusionNet, x: Mapping[str, torch.Tensor], config: TrainConfig):
    """The concatenated encoder features of every sample, on ``config``'s device: the fused
    head's input. The encoders have no dropout or batch norm, so the features do not depend
    on train or eval mode."""
    device = resolve_device(config.device)
    model = model.to(device).eval()
    n, size = len(next(iter(x.values()))), config.eval_batch_size
    chunks = []
    for start in range(0, n, size):
        batch = {m: x[m][start : start + size].to(device) for m in model.modalities}
        chunks.append(torch.cat([model.encoders[m](batch[m]) for m in model.modalities], dim=1))
    return torch.cat(chunks)


def train_classifier_on_trunk(
    model: FusionNet,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    splits: Mapping[str, np.ndarray],
    config: TrainConfig,
    epochs: int,
) -> Trainer:
    """Freeze the encoders, re-initialise the fused head and train it alone (paper Fig. 5b);
    the trainer of that head, whose history is the classifier's.

    Frozen encoders give every sample the same features at every step, so they are computed
    once (:func:`trunk_features`) and the classifier trains on them: the same run as through
    the frozen encoders, up to the rounding of computing features in larger batches
    (``tests/test_blend.py``), at the cost of the head alone. ``model`` is not changed.
    """
    head = copy.deepcopy(model.fused_head)
    for layer in head:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    features = trunk_features(copy.deepcopy(model), x, config)
    return Trainer(
        replace(
            config,
            epochs=epochs,
            lr_milestones=(),
            patience=None,
            restore_best=True,
            select_head=JOINT,
            progress=False,
        )
    ).fit(_ClassifierOnFeatures(head), {FEATURES: features}, y, splits, loss_weights={JOINT: 1.0})


def finetune_classifier(
    model: FusionNet,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    splits: Mapping[str, np.ndarray],
    config: TrainConfig,
    epochs: int,
) -> dict[str, float]:
    """The fused head's accuracies, per split, at its best val epoch when retrained alone on
    the frozen trunk (:func:`train_classifier_on_trunk`).

    This judges the trunk, not the head: the paper fixes "the main trunk" and fine-tunes "the
    classifier" for both branches.
    """
    trainer = train_classifier_on_trunk(model, x, y, splits, config, epochs)
    hist = trainer.history_
    best = hist[(hist.epoch == trainer.best_epoch_) & (hist["head"] == JOINT)]
    return {f"{split}_acc": float(acc) for split, acc in zip(best.split, best.acc, strict=True)}


def train_online(
    model: FusionNet,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    splits: Mapping[str, np.ndarray],
    config: TrainConfig,
    warmup: int,
    length: int,
    metric: str = "loss",
    policy: DegeneratePolicy | None = None,
    probe: bool = False,
    finetune_epochs: int | None = None,
) -> BlendRun:
    """Algorithm 3: re-estimate the weights from the current checkpoint every super-epoch.

    The paper used a warm-up super-epoch of 10 epochs, then 5, of about 45; each estimation
    trains its copies for as many epochs as the coming super-epoch lasts.

    With ``probe``, every super-epoch is also judged as in the paper's Figure 5b: from the
    snapshot at its start, two copies train it (fresh optimizer state at the main run's
    learning rate), one with the G-Blend weights just estimated and one naively (fused head
    only); each copy's trunk is frozen and a fresh fused classifier trained on it for
    ``finetune_epochs`` (default: the super-epoch's length). The main run goes on with G-Blend.
    """
    trainer = Trainer(config).start(model, x, y, splits)
    run = BlendRun(trainer, [], 0.0, 0.0)
    for i, (start, n) in enumerate(super_epochs(config.epochs, warmup, length)):
        estimate, cost = gb_estimate(
            trainer.model_,
            x,
            y,
            splits,
            config,
            n,
            lr=trainer.lr_,
            metric=metric,
            policy=policy,
            context={"super_epoch": i, "start_epoch": start},
        )
        run.estimates.append(estimate)
        run.estimation_epochs += cost["extra_epochs"]
        run.estimation_seconds += cost["seconds"]
        if probe:
            run.probes += _probe_super_epoch(
                trainer, x, y, splits, config, estimate, i, start, n, finetune_epochs or n
            )
        trainer.train_epochs(n, estimate.weights)
    trainer.finish()
    return run


def _probe_super_epoch(trainer, x, y, splits, config, estimate, index, start, n, finetune):
    """Figure 5b at one super-epoch: G-Blend and naive branches from the same snapshot."""
    branch_config = replace(
        config,
        epochs=n,
        lr=trainer.lr_,
        lr_milestones=(),
        patience=None,
        restore_best=False,
        progress=False,
    )
    rows = []
    for branch, weights in (("gblend", estimate.weights), ("naive", {JOINT: 1.0})):
        branch_trainer = Trainer(branch_config).start(copy.deepcopy(trainer.model_), x, y, splits)
        branch_trainer.train_epochs(n, weights, record_every_epoch=False).finish()
        accuracy = finetune_classifier(branch_trainer.model_, x, y, splits, config, finetune)
        rows.append(
            {
                "super_epoch": index,
                "start_epoch": start,
                "end_epoch": start + n,
                "branch": branch,
                **accuracy,
            }
        )
    return rows
