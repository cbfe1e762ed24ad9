"""Statistics of phase maps (NumPy or torch in, NumPy out): coverage functions and chord lengths."""

from napari_assb_twin.stats.coverage import CoverageResult, coverage, coverage_onehot, radial_bins

__all__ = ["CoverageResult", "coverage", "coverage_onehot", "radial_bins"]
