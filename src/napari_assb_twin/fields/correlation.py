"""Low-parametric correlation families rho(u) of a dimensionless distance u = r / length_scale.

Each family is one small class in a registry; adding one is writing a subclass with
``@register_family``. Families are evaluated in torch so gradients flow to the length scale (and to
continuous extras marked trainable). All families here are positive definite in R^3, hence also in
every 2D section.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

FAMILIES: dict[str, type["CorrelationFamily"]] = {}


def register_family(cls: type["CorrelationFamily"]) -> type["CorrelationFamily"]:
    """Class decorator adding a family to :data:`FAMILIES` under ``cls.name``."""
    FAMILIES[cls.name] = cls
    return cls


def get_family(name: str) -> type["CorrelationFamily"]:
    """Look up a family class by name, with an error listing the known families."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown correlation family {name!r}; choose one of {', '.join(sorted(FAMILIES))}"
        ) from None


class CorrelationFamily:
    """A correlation function of dimensionless distance with optional extra parameters.

    Attributes
    ----------
    name
        Registry key used in model files.
    extras
        Extra parameter names -> (default, lower bound, upper bound, trainable).
    """

    name: ClassVar[str] = ""
    extras: ClassVar[dict[str, tuple[float, float, float, bool]]] = {}

    @classmethod
    def validate_extras(cls, values: dict[str, float]) -> dict[str, float]:
        """Fill defaults and check bounds; unknown names are errors."""
        unknown = set(values) - set(cls.extras)
        if unknown:
            allowed = ", ".join(cls.extras) or "none"
            raise ValueError(
                f"family {cls.name!r} has no parameter(s) {', '.join(sorted(unknown))}; allowed: {allowed}"
            )
        out = {}
        for key, (default, lo, hi, _) in cls.extras.items():
            val = float(values.get(key, default))
            if not (lo <= val <= hi) or not math.isfinite(val):
                raise ValueError(f"{cls.name}.{key} = {val} is outside its valid range [{lo}, {hi}]")
            out[key] = val
        return out

    @staticmethod
    def rho(u: torch.Tensor, **extras: torch.Tensor | float) -> torch.Tensor:
        """Correlation at dimensionless distance ``u >= 0`` (``rho(0) = 1``)."""
        raise NotImplementedError

    @classmethod
    def curvature(cls, **extras: float) -> float:
        """-rho''(0) in units of 1 / length_scale^2: the second spectral moment of the field along one
        axis (``inf`` where rho has a cusp at 0 and level sets have infinite boundary length)."""
        return math.inf


@register_family
class Gaussian(CorrelationFamily):
    """rho(u) = exp(-u^2): very smooth interfaces."""

    name = "gaussian"

    @staticmethod
    def rho(u, **extras):
        return torch.exp(-u * u)

    @classmethod
    def curvature(cls, **extras):
        return 2.0


@register_family
class Exponential(CorrelationFamily):
    """rho(u) = exp(-u): rough interfaces (Matern nu = 1/2)."""

    name = "exponential"

    @staticmethod
    def rho(u, **extras):
        return torch.exp(-u)


class _ScaledBesselK(torch.autograd.Function):
    """f(x) = x^nu K_nu(x) for x > 0, evaluated with SciPy; f'(x) = -x^nu K_{nu-1}(x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, nu: float) -> torch.Tensor:
        from scipy.special import kv

        xn = x.detach().cpu().double().numpy()
        val = np.asarray(np.power(xn, nu) * kv(nu, xn))
        ctx.save_for_backward(x)
        ctx.nu = nu
        return torch.from_numpy(val).to(dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        from scipy.special import kv

        (x,) = ctx.saved_tensors
        xn = x.detach().cpu().double().numpy()
        d = np.asarray(-np.power(xn, ctx.nu) * kv(ctx.nu - 1.0, xn))
        return grad * torch.from_numpy(d).to(dtype=x.dtype, device=x.device), None


@register_family
class Matern(CorrelationFamily):
    """Matern: rho(u) = 2^(1-nu)/Gamma(nu) (sqrt(2 nu) u)^nu K_nu(sqrt(2 nu) u).

    ``nu`` sets the interface smoothness (1/2: exponential, infinity: gaussian). Half-integer nu
    use closed forms; other values go through SciPy's Bessel K with an exact custom gradient.
    """

    name = "matern"
    extras = {"nu": (1.5, 0.05, 20.0, False)}

    @staticmethod
    def rho(u, nu=1.5, **extras):
        nu = float(nu)
        s = math.sqrt(2.0 * nu) * u
        if nu == 0.5:
            return torch.exp(-s)
        if nu == 1.5:
            return (1.0 + s) * torch.exp(-s)
        if nu == 2.5:
            return (1.0 + s + s * s / 3.0) * torch.exp(-s)
        pos = s > 0
        s_safe = torch.where(pos, s, torch.ones_like(s))
        val = _ScaledBesselK.apply(s_safe, nu) * (2.0 ** (1.0 - nu) / math.gamma(nu))
        return torch.where(pos, val, torch.ones_like(s))

    @classmethod
    def curvature(cls, nu=1.5, **extras):
        # M(s) = 1 - s^2 / (4 (nu - 1)) + ... for nu > 1, with s = sqrt(2 nu) u
        nu = float(nu)
        return nu / (nu - 1.0) if nu > 1.0 else math.inf


@register_family
class DampedWave(CorrelationFamily):
    """Hole-effect family: rho(u) = exp(-u) * sin(w)/w with w = 2 pi u / period_ratio.

    The product of the exponential and the wave (cardinal sine) correlations, both valid in R^3,
    so positive definite by construction. It has the negative lobe that particle packings show in
    their two-point functions; ``period_ratio`` is the wave period in units of the length scale.
    """

    name = "damped_wave"
    extras = {"period_ratio": (4.0, 0.5, 100.0, True)}

    @staticmethod
    def rho(u, period_ratio=4.0, **extras):
        w = (2.0 * math.pi) * u / period_ratio
        return torch.exp(-u) * torch.sinc(w / math.pi)
