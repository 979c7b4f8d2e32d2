"""The experiment registry: name -> grid, notebook and paper artefact.

The notebooks, ``gblend compute``, ``gblend full-run`` and "is this scale complete?" all read
:data:`EXPERIMENTS`; nothing else keeps a list of experiments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from gblend.data.avdigits import AV_MNIST
from gblend.experiments import selection
from gblend.experiments.grid import Grid, GridError, Unit
from gblend.experiments.records import Results
from gblend.experiments.runner import missing, run, run_grid
from gblend.models import ModelConfig

# Seeds no page reports (pages report 0..n-1): calibration and searches use them
CALIBRATION_SEEDS = "1000-1001"


@dataclass(frozen=True)
class Experiment:
    """One paper table or figure: its grid's shape, its notebook and what it reproduces."""

    name: str
    notebook: str  # stem of notebooks/<notebook>.ipynb
    artefact: str  # the paper's table or figure
    methods: tuple[str, ...]
    combos: str
    datasets: str = "all"  # the default data sets
    # the default seeds (0: the scale's); a count applies at cpu and full, not at smoke, whose
    # one seed only tests the pipeline
    seeds: int | str = 0
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # the default swept settings
    # swept at full only, beside ``axes``: the wider sweeps a CPU cannot afford
    full_axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    full_datasets: str = ""  # the default data sets at full ("": ``datasets``)
    sweep: str = "product"  # how the axes combine (grid.SWEEPS)
    fixed: tuple[tuple[str, Any], ...] = ()  # settings of every unit
    # swept settings chosen on val by a search on calibration seeds (gblend.experiments
    # .selection): the reported grid holds the chosen value of each only
    select: tuple[str, ...] = ()
    search_seeds: str = CALIBRATION_SEEDS
    # record fields the page reads that older results lack (e.g. per-class accuracy): a grid
    # whose results lack one is not done
    requires: tuple[str, ...] = ()
    # the scales it runs at: a constructed variant may run at full only (smoke, which tests
    # the pipeline, always)
    scales: tuple[str, ...] = ("smoke", "cpu", "full")

    def search_grid(self, scale: str = "cpu", **params: Any) -> Grid:
        """The search of an experiment that selects: its grid on the calibration seeds, for
        the methods a selected setting varies (all, for a ``train.``/``model.`` setting)."""
        if not self.select:
            raise GridError(f"experiment {self.name!r} selects nothing: it has no search")
        # at smoke (a test of the pipeline) one calibration seed
        seeds = self.search_seeds.split("-")[0] if scale == "smoke" else self.search_seeds
        grid = self.grid(scale, **{**params, "seeds": seeds}, selected=False)
        groups = {name.partition(".")[0] for name in self.select}
        methods = tuple(m for m in grid.methods if groups & {m, "train", "model", "data"})
        return replace(grid, methods=methods)

    def grid(
        self,
        scale: str = "cpu",
        datasets: str | Sequence[str] | None = None,
        seeds: int | str | Sequence[int] = 0,
        epochs: int = 0,
        device: str = "auto",
        fixed: Mapping[str, Any] | None = None,
        axes: Mapping[str, Sequence[Any]] | None = None,
        combos: str = "",
        results_dir: str | None = None,
        selected: bool = True,
    ) -> Grid:
        """The experiment's grid from a notebook's parameters (``"all"``/0/``""``: the
        defaults). An experiment that selects keeps the settings its search chose (read from
        the search's results in ``results_dir``; a search not yet complete raises: run
        :meth:`search_grid` first); ``selected=False`` gives every setting."""
        if scale not in self.scales:
            raise GridError(f"{self.name} runs at {', '.join(self.scales)} scale only, not {scale}")
        default = self.full_datasets if scale == "full" and self.full_datasets else self.datasets
        chosen = default if datasets in (None, "", "all") else datasets
        grid = Grid.resolve(
            scale=scale,
            datasets=chosen,
            methods=self.methods,
            seeds=seeds or (0 if scale == "smoke" and isinstance(self.seeds, int) else self.seeds),
            epochs=epochs,
            combos=combos or self.combos,
            device=device,
            fixed={**dict(self.fixed), **dict(fixed or {})},
            sweep=self.sweep,
            axes={
                **{name: list(values) for name, values in self.axes},
                **{name: list(values) for name, values in self.full_axes if scale == "full"},
                **dict(axes or {}),
            },
        )
        if not (self.select and selected):
            return grid
        table = self.search(scale, results_dir, datasets=datasets, epochs=epochs, device=device,
                            fixed=fixed, axes=axes, combos=combos)  # fmt: skip
        return replace(grid, only=selection.chosen(table))

    def search(
        self, scale: str = "cpu", results_dir: str | None = None, **params: Any
    ) -> pd.DataFrame:
        """The search's table (:func:`selection.search_table`) from its results on disk."""
        search = self.search_grid(scale, **params)
        units = search.units()
        records = run_grid(units, results_dir, progress=False, run_missing=False)
        if len(records) < len(units):
            raise GridError(
                f"{self.name} chooses {', '.join(self.select)} on val with a search on seeds "
                f"{self.search_seeds}: {len(units) - len(records)} of its {len(units)} runs "
                f"are not done; run the search first (gblend compute {self.name})"
            )
        return selection.search_table(units, records, self.select)


# The estimator chapter's sweep: each option of Algorithm 1, the paper's value first
ESTIMATOR_AXES = (
    ("offline.window", (1.0, 0.5, 0.25, 0.125)),
    ("offline.copy_schedule", ("constant", "main")),
    ("offline.measure_at", ("last", "best")),
    ("offline.metric", ("loss", "acc")),
    ("offline.heldout_frac", (1.0, 0.5, 0.25, 0.1)),
    ("offline.formula", ("paper", "levels", "abs_gain", "softmax")),
    ("offline.noise_floor", (0.0, 2.0)),
    ("offline.joint_min_weight", (0.0, 0.25)),
    ("offline.copy_draw", (0, 1, 2, 3)),
)
ESTIMATOR_METHODS = ("naive", "uniform", "aux_floor", "joint_lr_matched", "offline")
ESTIMATOR_ARTEFACT = "none (Algorithm 1's open choices; claims 16 and 17)"

# The knobs of the paper's Figure 1 remedies, searched on val (the default first: a tie keeps it)
REMEDY_KNOBS = (
    ("dropout.rate", (0.5, 0.2, 0.8)),
    ("early_stop.patience", (5, 2, 10)),
    ("pretrain.freeze", (False, True)),
)
# Table 5 has pre-training and dropout, not early stopping
TABLE5_KNOBS = tuple(knob for knob in REMEDY_KNOBS if not knob[0].startswith("early_stop."))
FIGURE1_METHODS = ("naive", "pretrain", "early_stop", "dropout", "mid_concat", "se_gate", "nl_gate")
# A CPU affords the baselines on the testbed and mfeat (the MLP data sets); the CNN data sets'
# units cost 20-70 times more (results/bench)
CPU_BASELINE_DATASETS = "synthetic,mfeat"

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("table1", "table1_unimodal_vs_joint", "Table 1, Figure 4", ("naive",), "all"),
        # Figure 3 is drawn from the Table 1 runs: the same grid
        Experiment("figure3", "figure3_ogr", "Figure 3", ("naive",), "all"),
        Experiment(
            "table2",
            "table2_gblend",
            "Table 2",
            ("naive", "offline", "online", "uniform"),
            "unimodal+study",
        ),
        Experiment("table4", "table4_weights", "Table 4", ("naive", "offline"), "all"),
        # the CNN data sets' probed runs cost 20-70 times more than the MLP ones on a CPU
        # (avdigits' were three quarters of this page's cpu time, beside the baselines'
        # grids the cpu book's 60 minutes do not hold them); hapt's, ten times avdigits'
        Experiment(
            "figure5",
            "figure5_online",
            "Figure 5",
            ("online_probed",),
            "study",
            datasets="synthetic,mfeat",
            full_datasets="synthetic,avdigits,mfeat",
        ),
        # The paper's Figure 6: G-Blend's gain over the best uni-modal model class by class, on
        # the real pairs (seeds 0-2 are Table 1's and Table 2's runs: the same units)
        Experiment(
            "figure6",
            "figure6_per_class",
            "Figure 6",
            ("naive", "offline"),
            "unimodal+study",
            datasets="avdigits,hapt",
            seeds=5,
            requires=("class_acc",),
        ),
        # The testbed's calibration: settings of the synthetic generator judged on val only, with
        # seeds that no chapter reports (the chapters use 0..n-1).
        Experiment(
            "calibration",
            "testbed_calibration",
            "none (the synthetic testbed)",
            ("naive",),
            "all",
            datasets="synthetic",
            seeds=CALIBRATION_SEEDS,
            axes=(
                ("data.audio_noise_dims", (384, 1536)),
                ("data.flow_noise_dims", (128, 512)),
                ("data.shared_noise", (0.9, 0.97)),
            ),
        ),
        # The testbed's schedule, chosen as a practitioner would: on val, calibration seeds
        Experiment(
            "schedule",
            "testbed_calibration",
            "none (the synthetic testbed)",
            ("naive",),
            "all",
            datasets="synthetic",
            seeds=CALIBRATION_SEEDS,
            axes=(("train.epochs", (15, 30, 60)),),
        ),
        # The mechanism's dose-response on the testbed: the weak modality's memorisability
        # (0 noise dims: the control) x the size of the train split (V, val, test unchanged).
        Experiment(
            "dose_response",
            "testbed_dose_response",
            "none (the paper's explanation of claim 1, Section 3)",
            ("naive",),
            "audio,rgb,audio+rgb",
            datasets="synthetic",
            seeds=5,
            axes=(
                ("data.audio_noise_dims", (0, 96, 384, 1536)),
                ("data.train_frac", (1.0, 0.5, 0.25, 0.125)),
            ),
        ),
        # Where naive fusion fails on the real data: train-split size
        Experiment(
            "regime",
            "regime_map",
            "none (claim 1 and Table 2 across data regimes)",
            ("naive", "offline", "uniform"),
            "unimodal+study",
            seeds=5,
            # a CPU affords the ends of the size axis on mfeat only: the CNN data sets' units
            # cost 20-70 times more, and every thinned unit costs a whole one (the cpu book's
            # 60-minute budget; measured in results/bench)
            datasets="mfeat",
            full_datasets="avdigits,hapt,mfeat",
            axes=(("data.train_frac", (1.0, 0.1)),),
            full_axes=(("data.train_frac", (1.0, 0.5, 0.2, 0.1)),),
        ),
        # The regime map with x4-width encoders, at full only: a grid of its own, so that the
        # size axis is committed (and shown) without waiting for its convolutional units (a
        # wide hapt offline run took 15-29 min on one core of the 2-core Xeon, 9-16 times a
        # default one; a wide avdigits cell about 3 core-hours on the 2-core AMD EPYC)
        Experiment(
            "regime_width",
            "regime_map",
            "none (claim 1 and Table 2 with x4-width encoders)",
            ("naive", "offline", "uniform"),
            "unimodal+study",
            datasets="avdigits,hapt,mfeat",
            seeds=5,
            fixed=(("model.hidden", 4 * ModelConfig.hidden),),
            axes=(("data.train_frac", (1.0, 0.5, 0.2, 0.1)),),
            scales=("smoke", "full"),
        ),
        # The regime map's constructed variant: avdigits degraded as in the AV-MNIST protocol
        # (gblend.data.avdigits.AV_MNIST), at full only: its CNN units do not fit the cpu book
        Experiment(
            "degraded",
            "regime_map",
            "none (claim 1 and Table 2 on a constructed AV-MNIST-style variant)",
            ("naive", "offline", "uniform"),
            "unimodal+study",
            datasets="avdigits",
            seeds=5,
            fixed=tuple((f"data.{knob}", value) for knob, value in AV_MNIST.items()),
            axes=(("data.train_frac", (1.0, 0.1)),),
            scales=("smoke", "full"),
        ),
        # Does the estimator's configuration matter? Each of its options varied alone from the
        # paper's algorithm (the first value of each axis), beside the controls of a G-Blend
        # difference; every offline estimate carries a bootstrap interval over V. On the real
        # data with the regime map's 5 seeds; on the testbed (where a unit costs four times
        # an mfeat one) with the scale's seeds.
        Experiment(
            "estimator",
            "estimator_configuration",
            ESTIMATOR_ARTEFACT,
            ESTIMATOR_METHODS,
            "study",
            datasets="mfeat",
            full_datasets="avdigits,hapt,mfeat",
            seeds=5,
            sweep="one_at_a_time",
            fixed=(("offline.bootstrap", 200),),
            axes=ESTIMATOR_AXES,
        ),
        Experiment(
            "estimator_testbed",
            "estimator_configuration",
            ESTIMATOR_ARTEFACT,
            ESTIMATOR_METHODS,
            "study",
            datasets="synthetic",
            sweep="one_at_a_time",
            fixed=(("offline.bootstrap", 200),),
            axes=ESTIMATOR_AXES,
        ),
        # The paper's Figure 1: overfitting remedies and fusion architectures against late
        # concatenation and the best uni-modal model, each remedy's knob chosen on val
        Experiment(
            "figure1",
            "figure1_baselines",
            "Figure 1",
            FIGURE1_METHODS,
            "unimodal+study",
            datasets=CPU_BASELINE_DATASETS,
            full_datasets="all",
            seeds=5,
            axes=REMEDY_KNOBS,
            select=tuple(name for name, _ in REMEDY_KNOBS),
        ),
        # Claim 15: G-Blend on mid fusion, beside the mid-fusion run of Figure 1
        Experiment(
            "mid_fusion",
            "figure1_baselines",
            "the paper's text (G-Blend on mid fusion)",
            ("mid_concat", "offline"),
            "study",
            datasets=CPU_BASELINE_DATASETS,
            full_datasets="all",
            seeds=5,
            fixed=(("model.fusion", "mid"),),
        ),
        # Claim 15's other half: G-Blend on low-rank multimodal fusion beside naive LMF. The
        # fusion is a swept setting of one value, so that the page tells these G-Blend runs
        # from those on mid fusion (same method, another network)
        Experiment(
            "lmf_fusion",
            "figure1_baselines",
            "the paper's text (G-Blend on LMF)",
            ("lmf", "offline"),
            "study",
            datasets=CPU_BASELINE_DATASETS,
            full_datasets="all",
            seeds=5,
            axes=(("model.fusion", ("lmf",)),),
        ),
        # Claim 18: Proposition 1's assumption (uncorrelated overfitting across the heads),
        # measured at checkpoints of equal-weight multi-head runs (on the CNN data sets a unit
        # costs about an equal-weights one, 30 s on one CPU thread: all four fit the cpu book)
        Experiment(
            "cross_terms",
            "overfitting_cross_terms",
            "Section 3.4 (Proposition 1's assumption)",
            ("cross_terms",),
            "study",
            seeds=5,
        ),
        # The paper's Table 5: every baseline on every data set, with G-Blend's weights
        Experiment(
            "table5",
            "table5_baselines",
            "Table 5",
            ("naive", "pretrain", "dropout", "uniform", "uncertainty", "offline"),
            "unimodal+study",
            datasets=CPU_BASELINE_DATASETS,
            full_datasets="all",
            seeds=5,
            axes=TABLE5_KNOBS,
            select=tuple(name for name, _ in TABLE5_KNOBS),
        ),
        # The paper's Table 3: three optimizers, each method's learning rate chosen on val, on
        # a pair of modalities as the paper's RGB + audio. A CPU affords the testbed, where
        # naive fusion fails, only
        Experiment(
            "table3",
            "table3_optimizers",
            "Table 3",
            ("naive", "offline"),
            "unimodal+pair",
            datasets="synthetic",
            full_datasets="all",
            seeds=5,
            axes=(
                ("train.optimizer", ("sgd", "adagrad", "adam")),
                ("train.lr", (0.01, 0.001, 0.003, 0.03)),
            ),
            select=("train.lr",),
        ),
    )
}


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise GridError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def for_notebook(stem: str) -> tuple[Experiment, ...]:
    """The experiments a notebook shows (none for a notebook without a grid)."""
    return tuple(e for e in EXPERIMENTS.values() if e.notebook == stem)


def _done(entry: Experiment, scale: str, datasets: str | None, results_dir: str | None) -> bool:
    """Whether a grid (and, for an experiment that selects, its search) is on disk."""
    if entry.select and missing(entry.search_grid(scale, datasets=datasets), results_dir):
        return False
    grid = entry.grid(scale, datasets=datasets, results_dir=results_dir)
    if missing(grid, results_dir):
        return False
    if not entry.requires:
        return True
    records = run_grid(grid.units(), results_dir, progress=False, run_missing=False)
    return all(getattr(r, name) for r in records for name in entry.requires)


def is_complete(name: str, scale: str, results_dir: str | None = None) -> bool:
    """Whether every unit of an experiment's default grid at a scale has its result file."""
    return _done(get(name), scale, None, results_dir)


def scale_datasets(name: str, scale: str) -> tuple[str, ...]:
    """The data sets an experiment's default grid runs at ``scale`` (none at a scale it does
    not run at)."""
    entry = get(name)
    return entry.grid(scale, selected=False).datasets if scale in entry.scales else ()


def published_plan(names: Sequence[str], results_dir: str | None = None) -> dict[str, str]:
    """The scale at which a page of the experiments ``names`` shows each data set under
    ``published``: ``full`` where every one of them that runs the data set runs it at full
    and has its full grid (and search) complete for it, else ``cpu`` where one runs it at
    cpu; a data set run at full only, not yet complete, is left out. One scale per data set,
    so a claim that pairs the runs of two experiments never pairs two scales."""
    plan = {}
    at = {(n, s): scale_datasets(n, s) for n in names for s in ("cpu", "full")}
    for dataset in dict.fromkeys(d for datasets in at.values() for d in datasets):
        on_cpu = [n for n in names if dataset in at[n, "cpu"]]
        on_full = [n for n in names if dataset in at[n, "full"]]
        if set(on_cpu) <= set(on_full) and all(
            _done(get(n), "full", dataset, results_dir) for n in on_full
        ):
            plan[dataset] = "full"
        elif on_cpu:
            plan[dataset] = "cpu"
    return plan


Cell = tuple[str, Any]  # a data set and one value of a swept setting


def committed_cells(
    name: str, scale: str, axis: str, results_dir: str | None = None
) -> tuple[Results | None, list[Cell], list[Cell]]:
    """An experiment's grid at ``scale`` read without training, cell by cell: a cell is a data
    set and one value of the swept setting ``axis``, complete when every run of it (each
    method and seed) is on disk. The results of the complete cells (``None`` when none is),
    the complete cells and the others, in grid order: a page can show a grid that a long run
    is still filling, one whole cell at a time."""
    entry = get(name)
    if entry.requires:  # complete means more than on disk there: read it with committed_at
        raise GridError(f"{name}'s records must carry {', '.join(entry.requires)}")
    cells: dict[Cell, list[Unit]] = {}
    for unit in entry.grid(scale, results_dir=results_dir):
        cells.setdefault((unit.dataset, dict(unit.variant)[axis]), []).append(unit)
    done = [cell for cell, units in cells.items() if not missing(units, results_dir)]
    left = [cell for cell in cells if cell not in done]
    units = [unit for cell in done for unit in cells[cell]]
    records = run_grid(units, results_dir, progress=False, run_missing=False)
    return (Results(records) if records else None), done, left


def committed_datasets(
    name: str, scale: str, results_dir: str | None = None, among: Sequence[str] | None = None
) -> list[str]:
    """The data sets (of those ``among``, where given) whose grid of an experiment at
    ``scale`` is complete on disk."""
    entry = get(name)
    return [d for d in entry.grid(scale, selected=False).datasets
            if (among is None or d in among) and _done(entry, scale, d, results_dir)]  # fmt: skip


def committed_at(
    name: str, scale: str, results_dir: str | None = None, datasets: Sequence[str] | None = None
) -> Results | None:
    """The results of an experiment's grid at ``scale`` for the data sets whose grid there is
    complete (those of them in ``datasets``, where given), read without training (``None``
    when no such data set's is): a page at one scale can show what another scale has
    committed."""
    done = committed_datasets(name, scale, results_dir, among=datasets)
    if not done:
        return None
    grid = get(name).grid(scale, datasets=",".join(done), results_dir=results_dir)
    return run(grid, results_dir, progress=False, run_missing=False)
