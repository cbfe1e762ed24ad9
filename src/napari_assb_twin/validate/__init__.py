"""Validation of digital twins and virtual materials testing (METHOD.md section 8).

* :func:`compare` - every descriptor of a measured phase map and a twin side by side
  (:mod:`.compare`), written as CSV / PNG / one self-contained HTML page by :func:`write_report`.
* :mod:`.intervals` - the one rule of a validation's 95 % intervals (the twins' over their
  realisations, the measured value's from its sub-volumes) and of which differences are marked.
* :func:`run_sweep` - parameter sweeps (grid x realisations) on dask with resumable per-case
  results (:mod:`.sweep`).

Pure computation: no Qt / napari imports.
"""

from .compare import (
    DESCRIPTOR_COLUMNS,
    DESCRIPTOR_LABELS,
    Comparison,
    compare,
    iter_compare,
    match_twin,
    relative_difference,
)
from .report import REPORT_FILES, render_html, write_report
from .sweep import SweepResult, VaryAxis, build_grid, iter_sweep, parse_vary, run_sweep

__all__ = [
    "DESCRIPTOR_COLUMNS",
    "DESCRIPTOR_LABELS",
    "REPORT_FILES",
    "Comparison",
    "SweepResult",
    "VaryAxis",
    "build_grid",
    "compare",
    "iter_compare",
    "iter_sweep",
    "match_twin",
    "parse_vary",
    "relative_difference",
    "render_html",
    "run_sweep",
    "write_report",
]

