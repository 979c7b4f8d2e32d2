"""The experiment registry: name -> grid, notebook and paper artefact.

The notebooks, ``gblend compute``, ``gblend full-run`` and "is this scale complete?" all read
:data:`EXPERIMENTS`; nothing else keeps a list of experiments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gblend.experiments.grid import Grid, GridError
from gblend.experiments.records import Results
from gblend.experiments.runner import missing, run


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
    ) -> Grid:
        """The experiment's grid from a notebook's parameters (``"all"``/0/``""``: the
        defaults)."""
        default = self.full_datasets if scale == "full" and self.full_datasets else self.datasets
        chosen = default if datasets in (None, "", "all") else datasets
        return Grid.resolve(
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
        # hapt's probed runs cost ten times more than the others on a CPU
        Experiment(
            "figure5",
            "figure5_online",
            "Figure 5",
            ("online_probed",),
            "study",
            datasets="synthetic,avdigits,mfeat",
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
            seeds="1000-1001",
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
            seeds="1000-1001",
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
        # Where naive fusion fails on the real data: train-split size (x encoder width at full)
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
            full_axes=(("data.train_frac", (1.0, 0.5, 0.2, 0.1)), ("model.hidden", (128, 512))),
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
    )
}


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise GridError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def for_notebook(stem: str) -> tuple[Experiment, ...]:
    """The experiments a notebook shows (none for a notebook without a grid)."""
    return tuple(e for e in EXPERIMENTS.values() if e.notebook == stem)


def is_complete(name: str, scale: str, results_dir: str | None = None) -> bool:
    """Whether every unit of an experiment's default grid at a scale has its result file."""
    return not missing(get(name).grid(scale), results_dir)


def committed_at(name: str, scale: str, results_dir: str | None = None) -> Results | None:
    """The results of an experiment's grid at ``scale`` for the data sets whose grid there is
    complete, read without training (``None`` when no data set's is): a page at one scale
    can show what another scale has committed."""
    entry = get(name)
    done = [
        d
        for d in entry.grid(scale).datasets
        if not missing(entry.grid(scale, datasets=d), results_dir)
    ]
    if not done:
        return None
    return run(entry.grid(scale, datasets=",".join(done)), results_dir, progress=False,
               run_missing=False)  # fmt: skip
