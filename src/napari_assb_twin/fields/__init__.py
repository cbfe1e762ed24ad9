"""Stationary Gaussian and chi-square random fields on periodic grids (pure torch).

The names below are loaded on first use (PEP 562), so that the torch-free helpers of this package
(:mod:`.sections`, used by :mod:`napari_assb_twin.phasemap`) import without torch.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "FAMILIES": "correlation",
    "CorrelationFamily": "correlation",
    "get_family": "correlation",
    "register_family": "correlation",
    "Covariance": "covariance",
    "ParametricCovariance": "covariance",
    "SpectralCovariance": "covariance",
    "gaussian_field": "simulate",
    "gaussian_fields": "simulate",
    "spectral_sqrt": "simulate",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
