"""Stationary Gaussian and chi-square random fields on periodic grids (pure torch).

The names below are loaded on first use (PEP 562), so that the torch-free helpers of this package
(:mod:`.sections`, used by :mod:`napari_assb_twin.phasemap`) import without torch.
"""

from importlib import import_module

_EXPORTS = {
    "FAMILIES": ".correlation",
    "CorrelationFamily": ".correlation",
    "get_family": ".correlation",
    "register_family": ".correlation",
    "Covariance": ".covariance",
    "ParametricCovariance": ".covariance",
    "SpectralCovariance": ".covariance",
    "gaussian_field": ".simulate",
    "gaussian_fields": ".simulate",
    "spectral_sqrt": ".simulate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
