"""A grid is data: every axis a study varies, resolved from a scale once; iterating it yields
the units (training runs) to do, as ``sklearn.model_selection.ParameterGrid`` yields settings.

Axes: data sets, modality combinations (a rule), methods with their typed parameters, seeds,
and any number of swept settings named ``train.<field>`` (optimizer, lr, ...), ``model.<field>``
(dropout, widths, ...), ``data.<knob>`` (a knob of the data sets that have it) or
``<method>.<parameter>`` (applied to that method's units only), combined as a product or one
at a time (:data:`SWEEPS`). ``data.train_frac`` (every
data set) thins the train split to a fraction f and sets ``passes_per_epoch`` to 1/f, so
that smaller training sets get the same SGD steps and schedule, not fewer. The
notebook conventions ("0 means the scale's default", ``"all"``, comma-separated lists) are
parsed here and nowhere else; impossible values raise a :class:`GridError` before any compute.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from gblend import data as gdata
from gblend.experiments import methods as gmethods
from gblend.experiments.scales import Scale, get_scale, train_config
from gblend.models import ModelConfig
from gblend.train import OPTIMIZERS, TrainConfig

# Settings that change where, how fast or how visibly a run happens, not its result (beyond
# floating-point rounding, as running on another device does).
_NOT_HASHED = ("device", "progress", "eval_batch_size")
# Settings added after results were first keyed: left out of a key at their default, so that
# every earlier key stands (and a sweep's default cell is the other chapters' unit).
_HASHED_UNLESS_DEFAULT = {
    "train": {"passes_per_epoch": 1},
    "data": {gdata.TRAIN_FRAC: 1},
    "method_params": gmethods.LATER_PARAMS,
    "model": {"fusion": "late"},
}


def _keyed(group: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    unless = _HASHED_UNLESS_DEFAULT[group]
    return {k: v for k, v in settings.items() if k not in unless or unless[k] != v}


COMBO_RULES = ("all", "unimodal+study", "unimodal+pair", "study")
# How swept settings combine: every combination, or each axis varied alone from the others'
# first value (a sensitivity analysis around one reference setting)
SWEEPS = ("product", "one_at_a_time")
_COMMON = ("train", "model", "data")  # setting groups that apply to every method


class GridError(ValueError):
    """A grid that cannot be run: an unknown axis or name, or an impossible value."""


@dataclass(frozen=True)
class Unit:
    """One training run of a grid: everything that determines its result, and its identity.

    ``store`` is the results folder (the method's); ``variant`` names the swept settings that
    set this unit apart from the grid's defaults (empty for the default setting).
    """

    store: str
    scale: str
    dataset: str
    modalities: tuple[str, ...]
    seed: int
    method: str
    train: TrainConfig
    model: ModelConfig
    params: Any = field(default_factory=gmethods.NoParams)
    data_knobs: Mapping[str, Any] = field(default_factory=dict)
    variant: tuple[tuple[str, Any], ...] = ()

    @property
    def combo(self) -> str:
        return "+".join(self.modalities)

    @property
    def variant_label(self) -> str:
        """``""`` for the default setting, else e.g. ``"train.lr=0.1, model.dropout=0.2"``."""
        return ", ".join(f"{k}={v}" for k, v in self.variant)

    def config(self) -> dict[str, Any]:
        """Everything that determines the result (hashed into the cache key)."""
        train = _keyed(
            "train", {k: v for k, v in asdict(self.train).items() if k not in _NOT_HASHED}
        )
        return {
            "experiment": self.store,
            "dataset": self.dataset,
            "modalities": list(self.modalities),
            "method": self.method,
            "semantics": gmethods.get(self.method).version,
            "seed": self.seed,
            "data": _keyed("data", dict(sorted(self.data_knobs.items()))),
            "train": train,
            "model": _keyed("model", asdict(self.model)),
            "method_params": _keyed("method_params", asdict(self.params)),
        }

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        scale: str,
        device: str = "auto",
        variant: Sequence[Sequence[Any]] = (),
    ) -> Unit:
        """The unit a stored config describes (to rerun or re-key a result file)."""
        method = gmethods.get(config["method"])
        train = dict(config["train"])
        train["lr_milestones"] = tuple(train.get("lr_milestones", ()))
        return cls(
            store=config["experiment"],
            scale=scale,
            dataset=config["dataset"],
            modalities=tuple(config["modalities"]),
            seed=int(config["seed"]),
            method=method.name,
            train=TrainConfig(**train, device=device),
            model=ModelConfig(**config["model"]),
            params=method.make_params(config.get("method_params")),
            data_knobs=dict(config.get("data", {})),
            variant=tuple((str(k), v) for k, v in variant),
        )


def parse_names(value: str | Sequence[str] | None, valid: Sequence[str], what: str) -> list[str]:
    """``None``, ``""`` and ``"all"`` mean every valid name; else a comma-separated list."""
    if value is None or value in ("", "all"):
        return list(valid)
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [v for v in items if v not in valid]
    if unknown or not items:
        raise GridError(f"unknown {what} {unknown}; valid: {', '.join(valid)}")
    return items


def parse_seeds(value: int | str | Sequence[int], default: int) -> tuple[int, ...]:
    """A count (0: the scale's default; seeds 0..n-1), or explicit seeds: ``"1000,1001"``,
    ``"1000-1004"`` or a sequence of ints. Seeds are non-negative and distinct."""
    if isinstance(value, bool):
        raise GridError(f"seeds must be a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise GridError(
                f"seeds must be a positive count (0: the scale's {default}), got {value}"
            )
        return tuple(range(value or default))
    if isinstance(value, str):
        seeds: list[int] = []
        try:
            for part in (p.strip() for p in value.split(",") if p.strip()):
                low, _, high = part.partition("-")
                seeds += range(int(low), int(high or low) + 1)
        except ValueError:
            raise GridError(
                f"seeds must look like 5, '1000,1001' or '1000-1004': {value!r}"
            ) from None
    else:
        seeds = [int(s) for s in value]
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise GridError(f"seeds must be distinct, non-negative and at least one: {value!r}")
    return tuple(seeds)


def data_knobs(dataset: str, scale: Scale) -> dict[str, Any]:
    """The data set's size knobs at a scale (the synthetic pool; a cap on the real ones)."""
    if dataset == "synthetic":
        n = scale.synthetic_samples
        return {"n_samples": n if scale.max_samples is None else min(n, scale.max_samples)}
    return {} if scale.max_samples is None else {"max_samples": scale.max_samples}


def combos(modalities: Sequence[str], rule: str) -> list[tuple[str, ...]]:
    """Modality subsets by rule: every subset, the singles and the whole set, the first two
    modalities and their pair (on the synthetic set the paper's audio + RGB), the whole set,
    or the subsets a comma-separated list names (``"audio,rgb,audio+rgb"``)."""
    every = [
        c for r in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, r)
    ]
    if rule == "all":
        return every
    if rule == "unimodal+study":
        return [c for c in every if len(c) in (1, len(modalities))]
    if rule == "unimodal+pair":
        return [
            c for c in every if c in ((modalities[0],), (modalities[1],), tuple(modalities[:2]))
        ]
    if rule == "study":
        return [tuple(modalities)]
    named = [tuple(c.strip().split("+")) for c in rule.split(",") if c.strip()]
    unknown = [c for c in named if c not in every]
    if not named or unknown:
        raise GridError(
            f"unknown combination rule {rule!r}: one of {', '.join(COMBO_RULES)}, or "
            f"subsets of {'+'.join(modalities)} in their order, comma-separated "
            f"({', '.join('+'.join(c) for c in unknown) or 'none given'} not among them)"
        )
    return named


@dataclass(frozen=True)
class Grid:
    """Every unit of a study. Build one with :meth:`Grid.resolve`; iterate it for units.

    Units are ordered data set, seed, combination, method, swept settings: a method's runs of
    one seed and split are next to each other.
    """

    scale: Scale
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    combos: str = "all"
    device: str = "auto"
    fixed: tuple[tuple[str, Any], ...] = ()  # settings applied to every unit
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # swept settings: name, values
    sweep: str = "product"  # or "one_at_a_time" (see SWEEPS)
    # the settings a search chose (gblend.experiments.selection): a method listed here keeps
    # only the units whose (data set, modalities, method, swept settings) are listed
    only: frozenset[tuple[str, tuple[str, ...], str, tuple[tuple[str, Any], ...]]] = frozenset()

    @classmethod
    def resolve(
        cls,
        scale: str = "cpu",
        datasets: str | Sequence[str] | None = "all",
        methods: Sequence[str] = ("naive",),
        seeds: int | str | Sequence[int] = 0,
        epochs: int = 0,
        combos: str = "all",
        device: str = "auto",
        fixed: Mapping[str, Any] | None = None,
        axes: Mapping[str, Sequence[Any]] | None = None,
        sweep: str = "product",
    ) -> Grid:
        """A grid from notebook-style parameters (0 and ``"all"`` mean the defaults)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise GridError(f"epochs must be a positive number (0: the scale's), got {epochs!r}")
        base = get_scale(scale)
        resolved = replace(base, epochs=epochs or base.epochs)
        unknown = [m for m in methods if m not in gmethods.METHODS]
        if unknown or not methods:
            raise GridError(f"unknown methods {unknown}; valid: {', '.join(gmethods.METHODS)}")
        grid = cls(
            scale=resolved,
            datasets=tuple(parse_names(datasets, gdata.names(), "datasets")),
            methods=tuple(methods),
            seeds=parse_seeds(seeds, base.seeds),
            combos=combos,
            device=device,
            fixed=tuple(sorted((fixed or {}).items())),
            axes=tuple((name, tuple(values)) for name, values in (axes or {}).items()),
            sweep=sweep,
        )
        grid.check()
        return grid

    def check(self) -> None:
        """Every setting names a known field with a possible value (no compute needed)."""
        if self.sweep not in SWEEPS:
            raise GridError(f"unknown sweep {self.sweep!r}; valid: {', '.join(SWEEPS)}")
        for name, values in self.axes:
            if not values:
                raise GridError(f"axis {name!r} has no values")
        for name, value in [*self.fixed, *((n, v) for n, vs in self.axes for v in vs)]:
            self._check_setting(name, value)
        for dataset in self.datasets:
            combos(gdata.study_modalities(dataset), self.combos)  # raises for unknown subsets
        if not self.seeds:
            raise GridError("a grid needs at least one seed")
        if self.scale.epochs < 1:
            raise GridError("epochs must be at least 1")

    def _check_setting(self, name: str, value: Any) -> None:
        group, _, key = name.partition(".")
        if group == "train":
            valid = [f.name for f in fields(TrainConfig) if f.name not in ("seed", "device")]
            if key == "optimizer" and value not in OPTIMIZERS:
                raise GridError(f"unknown optimizer {value!r}; valid: {', '.join(OPTIMIZERS)}")
            if key in ("lr", "epochs", "batch_size", "passes_per_epoch") and not value > 0:
                raise GridError(f"{name} must be positive, got {value!r}")
        elif group == "model":
            valid = [f.name for f in fields(ModelConfig)]
            if key == "dropout" and not 0 <= value < 1:
                raise GridError(f"model.dropout must be in [0, 1), got {value!r}")
        elif group == "data":
            valid = sorted({k for d in self.datasets for k in gdata.knob_names(d)})
            if key == gdata.TRAIN_FRAC and not 0 < value <= 1:
                raise GridError(f"data.train_frac must be in (0, 1], got {value!r}")
        elif group in gmethods.METHODS:
            valid = [f.name for f in fields(gmethods.get(group).params)]
            if key in valid:
                try:
                    gmethods.get(group).make_params({key: value})
                except (TypeError, ValueError) as error:
                    raise GridError(f"{name}={value!r}: {error}") from None
        else:
            raise GridError(
                f"unknown setting {name!r}: name it train.<field>, model.<field>, data.<knob> "
                f"or <method>.<parameter> (methods: {', '.join(gmethods.METHODS)})"
            )
        if key not in valid:
            raise GridError(f"unknown setting {name!r}; valid after {group}.: {', '.join(valid)}")

    def __iter__(self) -> Iterator[Unit]:
        searched = {method for _, _, method, _ in self.only}
        for dataset in self.datasets:
            knobs = data_knobs(dataset, self.scale)
            modalities = gdata.study_modalities(dataset)
            for seed in self.seeds:
                for combo in combos(modalities, self.combos):
                    for method in self.methods:
                        if gmethods.get(method).fusion_only and len(combo) < 2:
                            continue
                        for variant in self._variants(method):
                            if (
                                method in searched
                                and (dataset, combo, method, variant) not in self.only
                            ):
                                continue
                            yield self._unit(dataset, knobs, combo, seed, method, variant)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def units(self) -> list[Unit]:
        return list(self)

    def _variants(self, method: str) -> Iterator[tuple[tuple[str, Any], ...]]:
        """The swept settings of a method's units: a ``<method>.<parameter>`` axis only
        varies that method's units (another method's would be the same run repeated)."""
        axes = [(n, vs) for n, vs in self.axes if n.partition(".")[0] in (*_COMMON, method)]
        if self.sweep == "product":
            for values in itertools.product(*(vs for _, vs in axes)):
                yield tuple((n, v) for (n, _), v in zip(axes, values, strict=True))
            return
        yield tuple((n, vs[0]) for n, vs in axes)
        for i, (_, values) in enumerate(axes):
            for value in values[1:]:
                yield tuple((n, value if j == i else vs[0]) for j, (n, vs) in enumerate(axes))

    def _unit(self, dataset, knobs, combo, seed, method, variant) -> Unit:
        entry = gmethods.get(method)
        settings = dict(self.fixed) | dict(variant)
        pick = {
            group: {n.split(".", 1)[1]: v for n, v in settings.items() if n.startswith(group + ".")}
            for group in ("train", "model", "data", method)
        }
        overrides = dict(pick["train"])
        # a swept train.epochs is a schedule of that length: the lr step moves with it
        scale = replace(self.scale, epochs=overrides.pop("epochs", self.scale.epochs))
        train = train_config(scale, seed, device=self.device, **overrides)
        frac = pick["data"].get(gdata.TRAIN_FRAC, 1)
        if frac < 1 and "passes_per_epoch" not in pick["train"]:
            # a thinned train split keeps the schedule's SGD steps (see TrainConfig)
            train = replace(train, passes_per_epoch=max(1, round(1 / frac)))
        model = replace(ModelConfig(modality_heads=entry.multi_head), **pick["model"])
        params = entry.make_params(pick[method]).resolve(train.epochs)
        if entry.configure is not None:
            train, model = entry.configure(params, train, model)
        return Unit(
            store=entry.store,
            scale=self.scale.name,
            dataset=dataset,
            modalities=combo,
            seed=seed,
            method=method,
            train=train,
            model=model,
            params=params,
            data_knobs={
                **knobs,
                **{k: v for k, v in pick["data"].items() if k in gdata.knob_names(dataset)},
            },
            variant=tuple((n, v) for n, v in variant),
        )
