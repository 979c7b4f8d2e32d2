"""The study: grids, the method and experiment registries, running, and one analysis module
per paper table or figure (each returns tidy DataFrames).

A notebook maps its parameters onto one grid and runs it::

    grid = ex.EXPERIMENTS["table2"].grid(scale="cpu", datasets="all")
    res = ex.run(grid)                       # Results: .runs, .history, .weights, ...
    ex.compare_methods(res.runs)
"""

from gblend.experiments.blending import (
    blend_claims,
    compare_methods,
    figure5_claims,
    mean_weights,
    overhead,
    probe_differences,
    strongest_methods,
    table2_display,
    table4_display,
)
from gblend.experiments.figures import ogr_over_training
from gblend.experiments.grid import Grid, GridError, Unit
from gblend.experiments.methods import METHODS, Method
from gblend.experiments.records import SELECTIONS, Results, RunRecord, metric_column
from gblend.experiments.registry import (
    EXPERIMENTS,
    Experiment,
    for_notebook,
    is_complete,
    published_plan,
    scale_datasets,
)
from gblend.experiments.runner import execution_plan, missing, run, run_grid, run_unit
from gblend.experiments.scales import SCALES, Scale, get_scale
from gblend.experiments.table1 import (
    PAPER_NAMES,
    claims,
    compare_scales,
    figure4_curves,
    side_by_side,
    summarize,
)

__all__ = [
    "EXPERIMENTS",
    "METHODS",
    "PAPER_NAMES",
    "SCALES",
    "SELECTIONS",
    "Experiment",
    "Grid",
    "GridError",
    "Method",
    "Results",
    "RunRecord",
    "Scale",
    "Unit",
    "blend_claims",
    "claims",
    "compare_methods",
    "strongest_methods",
    "compare_scales",
    "execution_plan",
    "figure4_curves",
    "figure5_claims",
    "for_notebook",
    "get_scale",
    "is_complete",
    "published_plan",
    "scale_datasets",
    "mean_weights",
    "metric_column",
    "missing",
    "ogr_over_training",
    "overhead",
    "probe_differences",
    "run",
    "run_grid",
    "run_unit",
    "side_by_side",
    "summarize",
    "table2_display",
    "table4_display",
]
