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

What the paper leaves open about *running* Algorithm 1 (the copies' learning rate, where
they are read, how much of V, and the formula variants public implementations use) are the
named options of :class:`EstimatorOptions`; its defaults are the paper's algorithm as printed.
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
# Algorithm 1's last line and the variants seen in public implementations (FORMULA_TEXT)
FORMULAS = ("paper", "levels", "abs_gain", "softmax")
FORMULA_TEXT = {
    "paper": "w ∝ ΔG / ΔO², normalised to sum 1 (Algorithm 1 as printed)",
    "levels": (
        "w ∝ |L^V / O²| at the window's end, O clamped to 1e-4 when negative: levels instead "
        "of changes (MultiBench's gradient_blend.py by default)"
    ),
    "abs_gain": (
        "w ∝ |ΔG| / ΔO²: a heldout loss that rose counts as a gain (MultiBench with "
        "delta=True, whose ΔG has Figure 3's flipped sign under abs())"
    ),
    "softmax": "w = softmax of ΔG / ΔO² instead of dividing by the sum",
}
LEVELS_OVERFIT_FLOOR = 1e-4  # MultiBench's clamp of a negative overfitting level
COPY_SCHEDULES = ("constant", "main")  # the copies' lr: constant, or the main run's schedule
MEASURE_AT = ("last", "best")  # the copies' after-measurement: last epoch, or best V epoch
# the copies of draw k > 0 are seeded with the run's seed + COPY_DRAW_STRIDE * k
COPY_DRAW_STRIDE = 10_000


@dataclass(frozen=True)
class EstimatorOptions:
    """How Algorithm 1 is run and read. The defaults are the paper's algorithm as printed.

    ``copy_schedule``: the copies train at the run's constant learning rate (``"constant"``)
    or on the main run's schedule over the window (``"main"``). ``measure_at``: the after
    point is the window's last epoch, or per head the epoch with the best V value of the
    metric (``"best"``). ``heldout_frac``: the share of V measured (a seeded subset).
    ``formula``: one of :data:`FORMULAS`. ``copy_draw``: 0 is the run's own estimate; k > 0
    re-estimates from the same checkpoint with the copies' mini-batch order, dropout and T'
    drawn from another seed. ``bootstrap``: resample V this many times (last-epoch reading
    only) for a percentile interval of every head's weight.
    """

    copy_schedule: str = "constant"
    measure_at: str = "last"
    heldout_frac: float = 1.0
    formula: str = "paper"
    copy_draw: int = 0
    bootstrap: int = 0

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("copy_schedule", self.copy_schedule, COPY_SCHEDULES),
            ("measure_at", self.measure_at, MEASURE_AT),
            ("formula", self.formula, FORMULAS),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if not 0 < self.heldout_frac <= 1:
            raise ValueError(f"heldout_frac must be in (0, 1], got {self.heldout_frac}")
        if self.copy_draw < 0 or self.bootstrap < 0:
            raise ValueError("copy_draw and bootstrap must be >= 0")


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

    Two further floors, off by default (the printed formula stays the reference), answer the
    fused-head collapse, where a head whose |dO| is tiny takes nearly all the weight:
    ``noise_floor`` raises |dO| to at least that many standard errors of dO over the samples
    of V (rule ``noise_floor``: a change in overfitting smaller than its own sampling noise is
    not evidence of not overfitting), and ``joint_min_weight`` keeps the fused head's weight
    at least that (rule ``joint_min_weight``). That floor is applied last, after
    ``min_weight``: raising the fused head shrinks the other weights proportionally, so a
    modality head held at ``min_weight`` may end slightly below it.
    """

    min_weight: float = 0.01
    relative_overfit_floor: float = 1e-3
    noise_floor: float = 0.0
    joint_min_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_weight < 1:
            raise ValueError("min_weight must be in [0, 1)")
        if not 0 < self.relative_overfit_floor < 1:
            raise ValueError("relative_overfit_floor must be in (0, 1)")
        if self.noise_floor < 0:
            raise ValueError("noise_floor must be >= 0")
        if not 0 <= self.joint_min_weight < 1:
            raise ValueError("joint_min_weight must be in [0, 1)")


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
    formula: str = "paper"
    fallbacks: list[Fallback] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    # percentile interval of each head's weight over bootstrap resamples of V (when asked for)
    bootstrap: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def clean(d: Mapping[str, float]) -> dict[str, float | None]:
            return {k: (float(v) if math.isfinite(v) else None) for k, v in d.items()}

        return {
            "weights": dict(self.weights),
            "delta_g": clean(self.delta_g),
            "delta_o": clean(self.delta_o),
            "ogr": clean(self.ogr),
            "metric": self.metric,
            "formula": self.formula,
            "fallbacks": [asdict(f) for f in self.fallbacks],
            "context": dict(self.context),
            "bootstrap": dict(self.bootstrap),
        }


def estimate_weights(
    before: Measurement,
    after: Measurement,
    policy: DegeneratePolicy | None = None,
    context: Mapping[str, Any] | None = None,
    formula: str = "paper",
    delta_o_se: Mapping[str, float] | None = None,
) -> WeightEstimate:
    """Algorithm 1's last line: w_i = (1/Z) dG_i / dO_i^2 with sum(w) = 1, plus the policy.

    ``formula`` other than ``"paper"`` computes one of the variants of :data:`FORMULAS`; the
    estimate's ``delta_g`` and ``delta_o`` are then the terms that variant used.
    ``delta_o_se``: each head's standard error of dO over V, which the policy's
    ``noise_floor`` needs.
    """
    if formula not in FORMULAS:
        raise ValueError(f"unknown formula {formula!r}; valid: {', '.join(FORMULAS)}")
    policy = policy or DegeneratePolicy()
    context = dict(context or {})
    heads = list(before.train)
    if policy.min_weight * len(heads) >= 1:
        raise ValueError(f"min_weight {policy.min_weight} leaves nothing for {len(heads)} heads")
    if policy.noise_floor > 0 and delta_o_se is None:
        raise ValueError("the policy's noise_floor needs the standard errors of dO (delta_o_se)")
    d_g = generalization_gain(before, after)
    d_o = overfitting_change(before, after)
    if formula == "levels":
        d_g = dict(after.heldout)
        d_o = {h: max(o, LEVELS_OVERFIT_FLOOR) for h, o in overfitting(after).items()}
    elif formula == "abs_gain":
        d_g = {h: abs(v) for h, v in d_g.items()}
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
                if policy.noise_floor > 0 and o < (noise := policy.noise_floor * delta_o_se[h]):
                    log(h, "noise_floor", f"|dO|={o:.3g} raised to {noise:.3g} (its noise)")
                    o = noise
                raw[h] = d_g[h] / o**2
    total = sum(raw.values())
    if total > 0 and formula == "softmax":
        top = max(raw[h] for h in usable)  # shifted for overflow; unusable heads stay at 0
        exp = {h: math.exp(raw[h] - top) if h in usable else 0.0 for h in heads}
        weights = {h: exp[h] / sum(exp.values()) for h in heads}
    elif total > 0:
        weights = {h: raw[h] / total for h in heads}
    else:
        log("*", "all_degenerate", "no head generalised: uniform weights")
        weights = dict.fromkeys(heads, 1.0 / len(heads))
    weights = _apply_min_weight(weights, policy.min_weight, log)
    if JOINT in weights and weights[JOINT] < policy.joint_min_weight:
        rest = 1.0 - weights[JOINT]
        share = (1.0 - policy.joint_min_weight) / rest if rest > 0 else 0.0
        weights = {h: policy.joint_min_weight if h == JOINT else w * share
                   for h, w in weights.items()}  # fmt: skip
        log(JOINT, "joint_min_weight", f"raised to {policy.joint_min_weight}")
    return WeightEstimate(
        weights=weights,
        delta_g=d_g,
        delta_o=d_o,
        ogr=ogr(before, after),
        metric=before.metric,
        formula=formula,
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


def _best_epoch(trainer: Trainer, head: str, metric: str) -> int:
    """The epoch after 0 at which ``head``'s V value of the metric is best (earliest of ties)."""
    hist = trainer.history_
    rows = hist[(hist.epoch > 0) & (hist["head"] == head) & (hist.split == "heldout")]
    values = rows.set_index("epoch")[metric]
    return int(values.idxmin() if metric == "loss" else values.idxmax())


def heldout_subset(heldout: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """A seeded, sorted subset of V of ``frac`` of its samples (at least one); V at 1."""
    if frac >= 1:
        return np.asarray(heldout)
    size = max(1, round(frac * len(heldout)))
    rng = np.random.default_rng([seed, 17])  # its own stream: not T's or the batch order's
    return np.sort(rng.choice(np.asarray(heldout), size=size, replace=False))


def delta_o_standard_errors(
    heldout_before: Mapping[str, np.ndarray], heldout_after: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Each head's standard error of dO over the samples of V: with T' fixed, dO's sampling
    noise is that of the mean per-sample change on V, sd(after - before) / sqrt(n)."""
    out = {}
    for head, before in heldout_before.items():
        change = np.asarray(heldout_after[head]) - np.asarray(before)
        out[head] = float(change.std(ddof=1) / np.sqrt(len(change))) if len(change) > 1 else 0.0
    return out


def bootstrap_weights(
    before: Measurement,
    after: Measurement,
    heldout_before: Mapping[str, np.ndarray],
    heldout_after: Mapping[str, np.ndarray],
    resamples: int,
    seed: int,
    policy: DegeneratePolicy | None = None,
    formula: str = "paper",
    delta_o_se: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A 95% percentile interval of each head's weight over ``resamples`` bootstrap resamples
    of V: the per-sample V values (loss or correctness) before and after are resampled
    together, T' is kept. Returns low, high, median per head, and the share of resamples in
    which the policy acted."""
    heads = list(before.train)
    n = len(next(iter(heldout_before.values())))
    rng = np.random.default_rng([seed, 29])
    draws = {h: np.empty(resamples) for h in heads}
    acted = 0
    for b in range(resamples):
        pick = rng.integers(0, n, size=n)
        est = estimate_weights(
            Measurement(before.train, {h: float(heldout_before[h][pick].mean()) for h in heads},
                        before.metric),
            Measurement(after.train, {h: float(heldout_after[h][pick].mean()) for h in heads},
                        after.metric),
            policy,
            formula=formula,
            delta_o_se=delta_o_se,
        )  # fmt: skip
        acted += bool(est.fallbacks)
        for h in heads:
            draws[h][b] = est.weights[h]
    return {
        "resamples": resamples,
        "low": {h: float(np.percentile(draws[h], 2.5)) for h in heads},
        "median": {h: float(np.median(draws[h])) for h in heads},
        "high": {h: float(np.percentile(draws[h], 97.5)) for h in heads},
        "policy_share": acted / resamples,
    }


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
    options: EstimatorOptions | None = None,
) -> tuple[WeightEstimate, dict[str, float]]:
    """Algorithm 1 (GB_Estimate) from the multi-head checkpoint ``model``.

    For each head a copy of the checkpoint is trained for ``n_epochs`` on train with that
    head's loss alone: for a modality head only its encoder and its linear head receive
    gradients (the uni-modal copy); for the fused head all encoders and the fused head do (the
    naive joint copy). Each copy is measured on T' and V before and after, then discarded;
    ``model`` is not changed. The copies use ``config``'s optimizer with fresh state at
    learning rate ``lr`` (default ``config.lr``) and, by default, no schedule. They train
    together, as one :class:`EstimationCopies` module, and end as they would one at a time.
    ``options`` (default: the paper's algorithm) names how the copies are run and read.

    Returns the estimate and the cost: extra epochs and seconds.
    """
    options = options or EstimatorOptions()
    policy = policy or DegeneratePolicy()
    if policy.noise_floor > 0 and options.measure_at != "last":
        raise ValueError("the noise floor reads V per sample at the window's end (measure_at)")
    heads = tuple(model.heads)
    seed = config.seed + COPY_DRAW_STRIDE * options.copy_draw
    copy_config = replace(
        config,
        epochs=n_epochs,
        lr=config.lr if lr is None else lr,
        lr_milestones=config.lr_milestones if options.copy_schedule == "main" else (),
        patience=None,
        restore_best=False,
        select_head=JOINT,
        progress=False,
        seed=seed,
    )
    heldout = heldout_subset(splits["heldout"], options.heldout_frac, seed)
    started = time.perf_counter()
    copies = EstimationCopies(model)
    trainer = Trainer(copy_config).start(copies, x, y, {**splits, "heldout": heldout})
    bootstrap = options.bootstrap > 0 and options.measure_at == "last"
    per_sample = bootstrap or policy.noise_floor > 0
    held_samples_before = trainer.measure_per_sample("heldout", metric) if per_sample else {}
    trainer.train_epochs(
        n_epochs, dict.fromkeys(heads, 1.0), record_every_epoch=options.measure_at == "best"
    ).finish()
    train_before, train_after, held_before, held_after = {}, {}, {}, {}
    after_epochs = {}
    for head in heads:
        after_epochs[head] = (
            n_epochs if options.measure_at == "last" else _best_epoch(trainer, head, metric)
        )
        train_before[head], held_before[head] = _measure(trainer, head, 0, metric)
        train_after[head], held_after[head] = _measure(trainer, head, after_epochs[head], metric)
    before = Measurement(train_before, held_before, metric)
    after = Measurement(train_after, held_after, metric)
    held_samples_after = trainer.measure_per_sample("heldout", metric) if per_sample else {}
    delta_o_se = (
        delta_o_standard_errors(held_samples_before, held_samples_after) if per_sample else None
    )
    estimate = estimate_weights(
        before,
        after,
        policy,
        context={
            **dict(context or {}),
            "n_epochs": n_epochs,
            **({} if options == EstimatorOptions() else {"options": asdict(options)}),
            **({"after_epochs": after_epochs} if options.measure_at == "best" else {}),
        },
        formula=options.formula,
        delta_o_se=delta_o_se,
    )
    if bootstrap:
        estimate.bootstrap = bootstrap_weights(
            before, after, held_samples_before, held_samples_after, options.bootstrap, seed,
            policy, options.formula, delta_o_se,
        )  # fmt: skip
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
    options: EstimatorOptions | None = None,
    joint_only: bool = False,
) -> BlendRun:
    """Algorithm 2: estimate once from initialisation, then train with those fixed weights.

    The paper estimates with n = N, the whole run (``estimate_epochs=None``). ``joint_only``
    is a control, not G-Blend: train the fused head's loss alone with its estimated weight
    w_joint (the modality heads get none), which is naive training at the fused head's
    effective learning rate under G-Blend, lr x w_joint.
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
        options=options,
    )
    weights = {JOINT: estimate.weights[JOINT]} if joint_only else estimate.weights
    trainer = Trainer(config).fit(model, x, y, splits, loss_weights=weights)
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
    options: EstimatorOptions | None = None,
) -> BlendRun:
    """Algorithm 3: re-estimate the weights from the current checkpoint every super-epoch
    (each estimate run as ``options`` say; default: the paper's algorithm).

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
            options=options,
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
