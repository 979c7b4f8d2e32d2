"""One function per paper table or figure; each returns tidy DataFrames."""

from gblend.experiments.blending import (
    BlendResults,
    blend_claims,
    compare_methods,
    figure5,
    figure5_claims,
    figure5_units,
    mean_weights,
    overhead,
    probe_differences,
    table2,
    table2_display,
    table2_units,
    table4,
    table4_display,
    table4_units,
)
from gblend.experiments.figures import figure3, ogr_over_training
from gblend.experiments.runner import (
    Unit,
    history_frame,
    missing,
    run_grid,
    run_grid_parallel,
    run_unit,
    runs_frame,
)
from gblend.experiments.scales import SCALES, Scale, get_scale
from gblend.experiments.table1 import (
    PAPER_NAMES,
    claims,
    compare_scales,
    figure4_curves,
    side_by_side,
    summarize,
    table1,
    table1_units,
)

# Experiments runnable by ``gblend compute``: name -> the units of its grid.
UNITS = {
    "table1": table1_units,
    "figure3": table1_units,  # drawn from the Table 1 runs
    "table2": table2_units,
    "table4": table4_units,
    "figure5": figure5_units,
}


def is_complete(experiment: str, scale: str, results_dir: str | None = None) -> bool:
    """Whether every unit of an experiment's grid at a scale has its result file."""
    if experiment not in UNITS:
        return False
    return not missing(UNITS[experiment](scale), results_dir)


__all__ = [
    "figure5",
    "figure5_claims",
    "figure5_units",
    "probe_differences",
    "figure3",
    "ogr_over_training",
    "UNITS",
    "is_complete",
    "missing",
    "BlendResults",
    "blend_claims",
    "compare_methods",
    "mean_weights",
    "overhead",
    "table2",
    "table2_display",
    "table4",
    "table4_display",
    "PAPER_NAMES",
    "SCALES",
    "Scale",
    "Unit",
    "claims",
    "compare_scales",
    "figure4_curves",
    "get_scale",
    "history_frame",
    "run_grid",
    "run_grid_parallel",
    "run_unit",
    "runs_frame",
    "side_by_side",
    "summarize",
    "table1",
]
