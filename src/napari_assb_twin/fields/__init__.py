"""Stationary Gaussian and chi-square random fields on periodic grids (pure torch)."""

from .correlation import FAMILIES, CorrelationFamily, get_family, register_family
from .covariance import Covariance, ParametricCovariance, SpectralCovariance
from .simulate import gaussian_field, gaussian_fields, spectral_sqrt

__all__ = [
    "FAMILIES",
    "CorrelationFamily",
    "Covariance",
    "ParametricCovariance",
    "SpectralCovariance",
    "gaussian_field",
    "gaussian_fields",
    "get_family",
    "register_family",
    "spectral_sqrt",
]
