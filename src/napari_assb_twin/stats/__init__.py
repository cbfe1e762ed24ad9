"""Statistics of phase maps (NumPy or torch in, NumPy out): coverage functions, chord lengths and 2D
Minkowski functionals (with the model's exact expectations, torch)."""

from napari_assb_twin.stats.chords import (
    ChordResult,
    chord_histogram,
    chord_length_distributions,
    chord_lengths,
    mean_chord_length,
)
from napari_assb_twin.stats.coverage import CoverageResult, coverage, coverage_onehot, radial_bins
from napari_assb_twin.stats.minkowski import (
    FUNCTIONALS,
    MinkowskiResult,
    MinkowskiTarget,
    chi_over_p2,
    data_minkowski,
    expected_minkowski,
    field_level_densities,
    minkowski_correction,
    minkowski_densities,
    minkowski_loss,
    minkowski_torch,
    model_rule,
    rule_minkowski,
    simulated_minkowski,
    spectral_moments,
)

__all__ = [
    "FUNCTIONALS",
    "ChordResult",
    "CoverageResult",
    "MinkowskiResult",
    "MinkowskiTarget",
    "chi_over_p2",
    "chord_histogram",
    "chord_length_distributions",
    "chord_lengths",
    "coverage",
    "coverage_onehot",
    "data_minkowski",
    "expected_minkowski",
    "field_level_densities",
    "mean_chord_length",
    "minkowski_correction",
    "minkowski_densities",
    "minkowski_loss",
    "minkowski_torch",
    "model_rule",
    "radial_bins",
    "rule_minkowski",
    "simulated_minkowski",
    "spectral_moments",
]
