"""One function per paper table or figure; each returns tidy DataFrames."""

from gblend.experiments.blending import (
    BlendResults,
    blend_claims,
    compare_methods,
    mean_weights,
    overhead,
    table2,
    table2_display,
    table4,
    table4_display,
)
from gblend.experiments.runner import Unit, history_frame, run_grid, run_unit, runs_frame
from gblend.experiments.scales import SCALES, Scale, get_scale
from gblend.experiments.table1 import (
    PAPER_NAMES,
    claims,
    compare_scales,
    figure4_curves,
    side_by_side,
    summarize,
    table1,
)

# Experiments runnable by ``gblend compute``: name -> grid function.
GRIDS = {"table1": table1, "table2": table2, "table4": table4}

__all__ = [
    "BlendResults",
    "blend_claims",
    "compare_methods",
    "mean_weights",
    "overhead",
    "table2",
    "table2_display",
    "table4",
    "table4_display",
    "GRIDS",
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
    "run_unit",
    "runs_frame",
    "side_by_side",
    "summarize",
    "table1",
]
