"""Statistics of phase maps (NumPy or torch in, NumPy out): coverage functions and chord lengths."""

from napari_assb_twin.stats.chords import (
    ChordResult,
    chord_histogram,
    chord_length_distributions,
    chord_lengths,
    mean_chord_length,
)
from napari_assb_twin.stats.coverage import CoverageResult, coverage, coverage_onehot, radial_bins

__all__ = [
    "ChordResult",
    "CoverageResult",
    "chord_histogram",
    "chord_length_distributions",
    "chord_lengths",
    "coverage",
    "coverage_onehot",
    "mean_chord_length",
    "radial_bins",
]
