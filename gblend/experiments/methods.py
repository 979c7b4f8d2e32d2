"""The method registry: every way the study trains a model, one entry each.

An entry holds the method's parameter dataclass, its training function, where its results
are stored, whether its runs can be batched (and with which loss weights), its relative cost
and its label. Every other list of methods (grids, tables, the process pool's ordering)
derives from :data:`METHODS`. Adding a method (a baseline, a student's remedy) is one
:func:`register` call and its training function.

``version`` is the method's semantics version: it is part of every cache key, so when what a
method does changes, bump it and its old results are never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import torch

from gblend import blend, cross_terms, loop
from gblend import data as gdata
from gblend.models import JOINT, FusionNet, ModelConfig, UncertaintyWeights
from gblend.train import TrainConfig, Trainer

if TYPE_CHECKING:
    from gblend.experiments.runner import Unit

# The paper's online schedule: a warm-up super-epoch of 10 epochs, then 5, of about 45.
PAPER_EPOCHS, PAPER_WARMUP, PAPER_SUPER_EPOCH = 45, 10, 5

Outcome = tuple[Trainer, dict[str, Any]]  # the trained model's trainer, method-specific extras


@dataclass(frozen=True)
class NoParams:
    """A method without parameters."""

    def resolve(self, epochs: int) -> NoParams:
        return self


_PAPER = blend.EstimatorOptions()
_POLICY = blend.DegeneratePolicy()


@dataclass(frozen=True)
class EstimatorParams:
    """What offline and online G-Blend share: ``metric`` (loss or acc); ``min_weight``,
    ``noise_floor``, ``joint_min_weight``, the degenerate-case policy's floors
    (:class:`~gblend.blend.DegeneratePolicy`); the other fields are the estimator's
    :class:`~gblend.blend.EstimatorOptions`. Defaults: the paper's algorithm."""

    metric: str = "loss"
    min_weight: float = 0.01
    noise_floor: float = _POLICY.noise_floor
    joint_min_weight: float = _POLICY.joint_min_weight
    measure_at: str = _PAPER.measure_at
    heldout_frac: float = _PAPER.heldout_frac
    formula: str = _PAPER.formula
    copy_draw: int = _PAPER.copy_draw
    bootstrap: int = _PAPER.bootstrap

    def __post_init__(self) -> None:
        self.options()  # unknown option values raise here, before any compute
        self.policy()

    def policy(self) -> blend.DegeneratePolicy:
        return blend.DegeneratePolicy(
            min_weight=self.min_weight,
            noise_floor=self.noise_floor,
            joint_min_weight=self.joint_min_weight,
        )

    def options(self) -> blend.EstimatorOptions:
        names = {f.name for f in fields(blend.EstimatorOptions)}
        return blend.EstimatorOptions(**{k: v for k, v in asdict(self).items() if k in names})


@dataclass(frozen=True)
class OfflineParams(EstimatorParams):
    """Offline G-Blend (Algorithm 2). The window n: ``estimate_epochs`` epochs, or (0) the
    fraction ``window`` of the run's N (the paper: n = N); ``copy_schedule``: the copies at
    a constant learning rate or on the main run's schedule; the rest as
    :class:`EstimatorParams`."""

    estimate_epochs: int = 0
    window: float = 1.0
    copy_schedule: str = _PAPER.copy_schedule

    def __post_init__(self) -> None:
        if not 0 < self.window <= 1:
            raise ValueError(f"window must be in (0, 1], got {self.window}")
        super().__post_init__()

    def resolve(self, epochs: int) -> OfflineParams:
        """n in epochs; the window is spent (a run with n = N/2 has one key however asked)."""
        n = self.estimate_epochs or max(1, round(self.window * epochs))
        return _replace(self, estimate_epochs=n, window=1.0)


# Parameters added after the first offline results were keyed, at their defaults: left out of
# every key (see gblend.experiments.grid), so those results stand.
LATER_PARAMS = {
    "window": 1.0,
    "noise_floor": _POLICY.noise_floor,
    "joint_min_weight": _POLICY.joint_min_weight,
    **asdict(_PAPER),
}


@dataclass(frozen=True)
class OnlineParams(EstimatorParams):
    """Online G-Blend (Algorithm 3). ``warmup``/``length`` 0: the paper's 10 and 5 of 45
    epochs, scaled to the run (at least 1); ``probe``: the Figure 5b comparison at every
    super-epoch, its classifier fine-tuned ``finetune_epochs`` (0: the super-epoch's length).
    The rest as :class:`EstimatorParams`, applied to every super-epoch's estimate; there is
    no ``copy_schedule``: the copies start mid-run at the run's current learning rate."""

    warmup: int = 0
    length: int = 0
    finetune_epochs: int = 0

    def resolve(self, epochs: int) -> OnlineParams:
        return _replace(
            self,
            warmup=self.warmup or max(1, round(epochs * PAPER_WARMUP / PAPER_EPOCHS)),
            length=self.length or max(1, round(epochs * PAPER_SUPER_EPOCH / PAPER_EPOCHS)),
        )


@dataclass(frozen=True)
class PretrainParams:
    """Pre-training (the paper's Figure 1): each modality's uni-modal network is trained on
    the run's schedule, its encoder is loaded into the fused model, which is then trained on
    the same schedule; ``freeze``: the loaded encoders stay fixed (only the fused head
    trains)."""

    freeze: bool = False

    def resolve(self, epochs: int) -> PretrainParams:
        return self


@dataclass(frozen=True)
class DropoutParams:
    """Dropout at the concatenation layer (the paper's Figure 1 and Table 5): ``rate``."""

    rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {self.rate}")

    def resolve(self, epochs: int) -> DropoutParams:
        return self


@dataclass(frozen=True)
class EarlyStopParams:
    """Early stopping (the paper's Figure 1): stop after ``patience`` epochs without a better
    val accuracy, and end with the best val epoch's weights (val only, never test)."""

    patience: int = 5

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")

    def resolve(self, epochs: int) -> EarlyStopParams:
        return self


@dataclass(frozen=True)
class CrossTermParams:
    """Proposition 1's cross terms (claim 18), measured at ``checkpoints`` evenly spaced
    epochs of the run, each over ``batches`` mini-batches (:func:`gblend.cross_terms.measure`)."""

    batches: int = 32
    checkpoints: int = 4

    def __post_init__(self) -> None:
        if self.batches < 2 or self.checkpoints < 1:
            raise ValueError(
                f"need at least 2 batches and 1 checkpoint, got {self.batches}, {self.checkpoints}"
            )

    def resolve(self, epochs: int) -> CrossTermParams:
        return self

    def epochs(self, total: int) -> list[int]:
        """The checkpoints: ``checkpoints`` epochs spread evenly over 1..total, the last one
        included."""
        return sorted(
            {max(1, round(total * i / self.checkpoints)) for i in range(1, self.checkpoints + 1)}
        )


def _replace(params, **changes):
    return type(params)(**{**asdict(params), **changes})


@dataclass(frozen=True)
class Method:
    """One way to train: see the module docstring.

    ``store``: the results folder of its runs; ``multi_head``: trains the multi-head model
    (paper Fig. 2c); ``fusion_only``: needs two or more modalities; ``batch_weights``: for a
    method that is one plain training run, its loss weights given the model's heads (its runs
    can then be batched); ``configure``: for a method that is another run's training with
    some of its settings changed (dropout, a fusion, early stopping), the unit's training and
    model settings given its parameters, applied when a grid makes the unit (so the changed
    settings are in its cache key); ``cost``: rough wall time relative to naive training
    (measured on avdigits, one CPU thread: offline 2.6x, online 3x, probed 4.4x).
    """

    name: str
    label: str
    train: Callable[[Unit, gdata.Dataset], Outcome]
    params: type = NoParams
    store: str = "gblend"
    multi_head: bool = True
    fusion_only: bool = True
    batch_weights: Callable[[tuple[str, ...]], dict[str, float]] | None = None
    configure: Callable[[Any, TrainConfig, ModelConfig], tuple[TrainConfig, ModelConfig]] | None = (
        None
    )
    cost: float = 1.0
    version: int = 1

    def make_params(self, overrides: Mapping[str, Any] | None = None):
        """The parameter dataclass from overrides; unknown names raise before any compute."""
        overrides = dict(overrides or {})
        valid = [f.name for f in fields(self.params)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} of method {self.name!r}; valid: {valid}"
            )
        return self.params(**overrides)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def _model(unit: Unit, dataset: gdata.Dataset) -> FusionNet:
    torch.manual_seed(unit.seed)  # the same initial weights whichever way the run is trained
    return FusionNet(dataset.specs, dataset.n_classes, unit.model)


def _plain(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    model = _model(unit, dataset)
    weights = get(unit.method).batch_weights(model.heads)
    trainer = Trainer(unit.train).fit(model, dataset.x, dataset.y, dataset.splits, weights)
    return trainer, ({} if unit.method == "naive" else {"weights": [weights]})


def _fused_only(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    """Naive training, one run at a time: dropout's masks come from the process's random
    stream, so a run in a batch would not give the run alone (its cache key's result)."""
    trainer = Trainer(unit.train).fit(_model(unit, dataset), dataset.x, dataset.y, dataset.splits)
    return trainer, {}


def _fused_head_weight(heads: tuple[str, ...]) -> dict[str, float]:
    return {JOINT: 1.0}


def _blend_extras(run: blend.BlendRun) -> dict[str, Any]:
    return {
        "weights": run.weights_json(),
        "estimation_epochs": run.estimation_epochs,
        "estimation_seconds": run.estimation_seconds,
    }


def _offline(unit: Unit, dataset: gdata.Dataset, joint_only: bool = False) -> Outcome:
    p: OfflineParams = unit.params
    run = blend.train_offline(
        _model(unit, dataset),
        dataset.x,
        dataset.y,
        dataset.splits,
        unit.train,
        estimate_epochs=p.estimate_epochs,
        metric=p.metric,
        policy=p.policy(),
        options=p.options(),
        joint_only=joint_only,
    )
    return run.trainer, _blend_extras(run)


def pretrained_encoders(unit: Unit, dataset: gdata.Dataset) -> dict[str, dict]:
    """Each modality's encoder weights after its uni-modal network's schedule: the naive
    uni-modal run of the same seed and settings (the last epoch, as the fixed schedule reads
    it, not its best val epoch)."""
    states = {}
    for modality in unit.modalities:
        torch.manual_seed(unit.seed)
        net = FusionNet({modality: dataset.specs[modality]}, dataset.n_classes, unit.model)
        config = replace(unit.train, restore_best=False)
        Trainer(config).fit(net, {modality: dataset.x[modality]}, dataset.y, dataset.splits)
        states[modality] = {k: v.detach().cpu().clone() for k, v in
                            net.encoders[modality].state_dict().items()}  # fmt: skip
    return states


def _pretrain(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    p: PretrainParams = unit.params
    model = _model(unit, dataset)
    encoders = pretrained_encoders(unit, dataset)
    for modality, state in encoders.items():
        model.encoders[modality].load_state_dict(state)
        model.encoders[modality].requires_grad_(not p.freeze)
    trainer = Trainer(unit.train).fit(model, dataset.x, dataset.y, dataset.splits)
    return trainer, {}


def _uncertainty(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    """The multi-head model with learned uncertainty weights, trained one epoch at a time so
    that the weights' path over training is kept (claim 11: where do they drift?)."""
    model = _model(unit, dataset)
    model.loss_weighting = UncertaintyWeights(model.heads)
    trainer = Trainer(unit.train).start(model, dataset.x, dataset.y, dataset.splits)
    path = [{"epoch": 0, **model.loss_weighting.weights()}]
    for epoch in range(1, unit.train.epochs + 1):
        trainer.train_epochs(1)
        path.append({"epoch": epoch, **trainer.model_.loss_weighting.weights()})
        if trainer.stopped_:
            break
    return trainer.finish(), {"learned_weights": path}


def _cross_terms(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    """Equal-weight multi-head training (the ``uniform`` run of the same seed: measuring
    does not change it), stopped at each checkpoint to measure Proposition 1's cross terms
    (claim 18); every head's gradient is that of a trained head, as in a blended run."""
    p: CrossTermParams = unit.params
    model = _model(unit, dataset)
    weights = blend.uniform_weights(model.heads)
    trainer = Trainer(unit.train).start(model, dataset.x, dataset.y, dataset.splits)
    device = trainer.device_
    x = {m: t.to(device) for m, t in dataset.x.items()}
    y = dataset.y.to(device)
    train, evals = loop.split_indices(dataset.splits, unit.train)
    measured, done = [], 0
    for epoch in p.epochs(unit.train.epochs):
        trainer.train_epochs(epoch - done, weights)
        done = epoch
        terms = cross_terms.measure(
            trainer.model_, x, y, train.to(device), evals[loop.TRAIN_SUBSET].to(device),
            evals["heldout"].to(device), epoch, unit.train.batch_size, p.batches, unit.seed,
        )  # fmt: skip
        measured.append(terms.to_json())
        if trainer.stopped_:
            break
    return trainer.finish(), {"weights": [weights], "cross_terms": measured}


def _joint_lr_matched(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    return _offline(unit, dataset, joint_only=True)


def floor_weights(heads: tuple[str, ...]) -> dict[str, float]:
    """Naive training plus the policy's floor on every modality head (1% each), the rest on
    the fused head: what offline G-Blend trains where every modality head is floored."""
    floor = blend.DegeneratePolicy().min_weight
    modality = [h for h in heads if h != JOINT]
    return {**dict.fromkeys(modality, floor), JOINT: 1.0 - floor * len(modality)}


def _online(unit: Unit, dataset: gdata.Dataset, probe: bool = False) -> Outcome:
    p: OnlineParams = unit.params
    run = blend.train_online(
        _model(unit, dataset),
        dataset.x,
        dataset.y,
        dataset.splits,
        unit.train,
        warmup=p.warmup,
        length=p.length,
        metric=p.metric,
        policy=p.policy(),
        options=p.options(),
        probe=probe,
        finetune_epochs=p.finetune_epochs or None,
    )
    extras = _blend_extras(run)
    if probe:
        extras["probes"] = run.probes
    return run.trainer, extras


def _online_probed(unit: Unit, dataset: gdata.Dataset) -> Outcome:
    return _online(unit, dataset, probe=True)


register(
    Method(
        "naive",
        "naive late fusion",  # a single modality is the same network with one encoder
        _plain,
        store="table1",
        multi_head=False,
        fusion_only=False,
        batch_weights=_fused_head_weight,
    )
)
register(
    Method(
        "uniform",
        "equal weights (auxiliary loss)",
        _plain,
        batch_weights=blend.uniform_weights,
        cost=1.5,
    )
)
register(Method("offline", "offline G-Blend", _offline, OfflineParams, cost=2.6))
# Controls of a G-Blend difference: auxiliary supervision at the floor alone, and the fused
# head's lower effective learning rate alone (the same estimate, modality heads unweighted).
register(
    Method(
        "aux_floor",
        "naive + 1% auxiliary losses (the weight floor)",
        _plain,
        batch_weights=floor_weights,
        cost=1.5,
    )
)
register(
    Method(
        "uncertainty",
        "learned uncertainty weights (Kendall et al.)",
        _uncertainty,
        cost=1.6,
    )
)
register(
    Method(
        "pretrain",
        "pre-training (uni-modal encoders, then fine-tuned)",
        _pretrain,
        PretrainParams,
        multi_head=False,
        cost=3.0,
    )
)
register(
    Method(
        "joint_lr_matched",
        "naive at G-Blend's fused-head rate (lr × w_joint)",
        _joint_lr_matched,
        OfflineParams,
        cost=2.6,
    )
)
register(
    Method(
        "cross_terms",
        "equal weights, Proposition 1's cross terms measured (claim 18)",
        _cross_terms,
        CrossTermParams,
        cost=2.0,
    )
)
register(Method("online", "online G-Blend", _online, OnlineParams, cost=3.0))
register(
    Method(
        "online_probed",
        "online G-Blend, probed per super-epoch (Fig. 5b)",
        _online_probed,
        OnlineParams,
        cost=4.5,
    )
)
# The paper's Figure 1 baselines that are naive training with one setting changed: an
# overfitting remedy (dropout at the concatenation, early stopping) or another fusion
register(
    Method(
        "dropout",
        "dropout at the concatenation",
        _fused_only,
        DropoutParams,
        store="baselines",
        multi_head=False,
        configure=lambda p, train, model: (train, replace(model, dropout=p.rate)),
    )
)
register(
    Method(
        "early_stop",
        "early stopping (patience on val)",
        _plain,
        EarlyStopParams,
        store="baselines",
        multi_head=False,
        batch_weights=_fused_head_weight,
        configure=lambda p, train, model: (
            replace(train, patience=p.patience, restore_best=True),
            model,
        ),
        cost=0.7,
    )
)
for _name, _fusion, _label in (
    ("mid_concat", "mid", "mid-level concatenation"),
    ("se_gate", "se_gate", "SE-gate fusion"),
    ("nl_gate", "nl_gate", "NL-gate (attention) fusion"),
    ("lmf", "lmf", "low-rank multimodal fusion (LMF)"),
):
    register(
        Method(
            _name,
            _label,
            _plain,
            store="baselines",
            multi_head=False,
            batch_weights=_fused_head_weight,
            configure=lambda p, train, model, fusion=_fusion: (
                train,
                replace(model, fusion=fusion),
            ),
        )
    )

# gblend's own methods, known to every worker process; one registered later (e.g. in a
# notebook) exists only where it was registered, so the runner trains it in that process
BUILTIN: frozenset[str] = frozenset(METHODS)
