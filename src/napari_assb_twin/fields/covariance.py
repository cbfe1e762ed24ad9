"""Covariance models of a unit-variance Gaussian field: parametric (LP) and spectral-knot (HP).

A covariance maps lag vectors, given per 3D array axis in pixels, to correlations. Isotropic
models depend on |h|; cylindrically isotropic ones on
sqrt((h_inplane / l_inplane)^2 + (h_axial / l_axial)^2) around the symmetry ``axis``. Trainable
quantities are stored unconstrained (logarithms) as ``torch.nn.Parameter`` so calibration can use
plain Adam.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .correlation import get_family

from ..options import ANISOTROPIES


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) gradient at 0: lag 0 must not poison the length-scale gradient."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def _split_lags(lags: Mapping[int, torch.Tensor], axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared axial and squared in-plane lag from per-axis lags (absent axes have lag 0)."""
    zero = torch.zeros((), dtype=torch.float32)
    ax2 = zero
    ip2 = zero
    for a, h in lags.items():
        if a == axis:
            ax2 = ax2 + h * h
        else:
            ip2 = ip2 + h * h
    return ax2, ip2


def _check_anisotropy(anisotropy: str, axis: int) -> None:
    if anisotropy not in ANISOTROPIES:
        raise ValueError(f"anisotropy must be one of {ANISOTROPIES}, got {anisotropy!r}")
    if axis not in (0, 1, 2):
        raise ValueError(f"symmetry axis must be 0, 1 or 2 (napari order z, y, x), got {axis!r}")


class Covariance(nn.Module):
    """Base class: a stationary correlation function of lag vectors in pixels."""

    anisotropy: str
    axis: int

    def correlation(self, lags: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Correlation at the lags ``{axis: lag_px}`` (broadcastable tensors, absent axes = 0)."""
        raise NotImplementedError

    def correlation_length(self, direction: str = "inplane", level: float = math.exp(-1)) -> float:
        """Distance in px at which the correlation first drops below ``level`` (1/e by default).

        ``direction`` is ``"inplane"`` or ``"axial"`` (identical for isotropic models).
        """
        # Short ranges first: spectral covariances tabulate up to the largest lag asked for.
        axis_key = self.axis if direction == "axial" else (self.axis + 1) % 3
        for r_top in (32.0, 128.0, 512.0):
            r = torch.linspace(0.0, r_top, int(r_top * 16) + 1, device=next(self.parameters()).device)
            with torch.no_grad():
                rho = self.correlation({axis_key: r}).detach().cpu().double().numpy()
            below = np.nonzero(rho < level)[0]
            if below.size:
                i = int(below[0])
                r0, r1, p0, p1 = float(r[i - 1]), float(r[i]), rho[i - 1], rho[i]
                return r0 + (p0 - level) * (r1 - r0) / (p0 - p1)
        return float("inf")


class ParametricCovariance(Covariance):
    """A registered correlation family with one (isotropic) or two (cylindrical) length scales.

    Parameters
    ----------
    family
        Name in :data:`~napari_assb_twin.fields.correlation.FAMILIES`.
    length_scale
        Pixels: a number (isotropic) or ``(axial, inplane)`` / ``{"axial": a, "inplane": b}``
        (cylindrical).
    anisotropy
        ``"isotropic"`` or ``"cylindrical"``.
    axis
        Symmetry axis of a cylindrical model (0, 1 or 2).
    **extras
        Family extras (``nu`` for matern, ``period_ratio`` for damped_wave).
    """

    def __init__(
        self,
        family: str,
        length_scale: float | Sequence[float] | Mapping[str, float],
        anisotropy: str = "isotropic",
        axis: int = 0,
        **extras: float,
    ) -> None:
        super().__init__()
        _check_anisotropy(anisotropy, axis)
        self.family = get_family(family)
        self.anisotropy = anisotropy
        self.axis = axis
        if isinstance(length_scale, Mapping):
            length_scale = (length_scale["axial"], length_scale["inplane"])
        ls = np.atleast_1d(np.asarray(length_scale, dtype=float))
        expected = 1 if anisotropy == "isotropic" else 2
        if ls.size == 1 and expected == 2:
            ls = np.repeat(ls, 2)
        if ls.size != expected:
            raise ValueError(
                f"a {anisotropy} covariance needs {expected} length scale(s), got {ls.tolist()}"
            )
        if not np.all(np.isfinite(ls)) or np.any(ls <= 0):
            raise ValueError(f"length scales must be positive and finite, got {ls.tolist()}")
        self.log_length = nn.Parameter(torch.tensor(np.log(ls), dtype=torch.float32))
        checked = self.family.validate_extras(extras)
        self.fixed_extras: dict[str, float] = {}
        self.log_extras = nn.ParameterDict()
        for key, value in checked.items():
            if self.family.extras[key][3]:
                self.log_extras[key] = nn.Parameter(torch.tensor(math.log(value), dtype=torch.float32))
            else:
                self.fixed_extras[key] = value

    @property
    def length_scale(self) -> tuple[float, ...]:
        """Length scale(s) in px: ``(l,)`` or ``(axial, inplane)``."""
        return tuple(float(v) for v in torch.exp(self.log_length.detach()).cpu())

    @property
    def extras(self) -> dict[str, float]:
        """All family extras as plain numbers."""
        out = dict(self.fixed_extras)
        out.update({k: float(torch.exp(v.detach())) for k, v in self.log_extras.items()})
        return out

    def _extras_tensors(self) -> dict[str, torch.Tensor | float]:
        out: dict[str, torch.Tensor | float] = dict(self.fixed_extras)
        out.update({k: torch.exp(v) for k, v in self.log_extras.items()})
        return out

    def correlation(self, lags: Mapping[int, torch.Tensor]) -> torch.Tensor:
        ax2, ip2 = _split_lags(lags, self.axis)
        length = torch.exp(self.log_length)
        ax2 = torch.as_tensor(ax2, device=length.device)
        ip2 = torch.as_tensor(ip2, device=length.device)
        if self.anisotropy == "isotropic":
            u = _safe_sqrt(ax2 + ip2) / length[0]
        else:
            u = _safe_sqrt(ax2 / length[0] ** 2 + ip2 / length[1] ** 2)
        return self.family.rho(u, **self._extras_tensors())


def default_knots(n_knots: int = 24, k_min: float = 1.0 / 256.0, k_max: float = 0.5) -> np.ndarray:
    """Log-spaced radial frequencies in cycles per px for a spectral-knot model."""
    return np.geomspace(k_min, k_max, n_knots)


def _knot_coords(k: torch.Tensor, knots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear-interpolation coordinates of frequencies ``k`` among log-spaced ``knots``.

    Returns the upper knot index, the weight of the upper knot, and how far (in log frequency)
    ``k`` lies beyond the last knot. Below the first knot the density is held constant.
    """
    lk = torch.log(knots)
    x = torch.log(k.clamp_min(float(knots[0])))
    idx = torch.searchsorted(lk, x.contiguous()).clamp(1, lk.numel() - 1)
    w = ((x - lk[idx - 1]) / (lk[idx] - lk[idx - 1])).clamp(0.0, 1.0)
    return idx, w, (x - lk[-1]).clamp_min(0.0)


def _log_density_1d(k: torch.Tensor, knots: torch.Tensor, logv: torch.Tensor, tail: float) -> torch.Tensor:
    """Piecewise-linear log-density in log-frequency with a power-law tail of slope ``tail``."""
    i, w, beyond = _knot_coords(k, knots)
    return logv[i - 1] * (1 - w) + logv[i] * w + tail * beyond


def _log_density_2d(
    k_ip: torch.Tensor, k_ax: torch.Tensor, knots_ip: torch.Tensor, knots_ax: torch.Tensor, logv: torch.Tensor, tail: float
) -> torch.Tensor:
    """Bilinear log-density on a (in-plane, axial) knot grid, evaluated on the outer grid of the inputs."""
    i, wi, bi = _knot_coords(k_ip, knots_ip)
    j, wj, bj = _knot_coords(k_ax, knots_ax)
    wi, wj = wi[:, None], wj[None, :]
    val = (
        logv[i - 1][:, j - 1] * (1 - wi) * (1 - wj)
        + logv[i][:, j - 1] * wi * (1 - wj)
        + logv[i - 1][:, j] * (1 - wi) * wj
        + logv[i][:, j] * wi * wj
    )
    return val + tail * (bi[:, None] + bj[None, :])


class SpectralCovariance(Covariance):
    """High-parametric covariance: a non-parametric spectral density on log-spaced knots.

    Isotropic: density values at ``M`` radial frequencies; cylindrical: a knot grid over
    (in-plane, axial) frequency. The correlation is the Fourier transform of the (positive)
    density, so it is a valid covariance by construction; it is tabulated on a fine radial grid by
    quadrature and interpolated linearly, which keeps it differentiable in the knot values.

    Parameters
    ----------
    knots
        Radial knot frequencies in cycles / px (isotropic), or ``(knots_inplane, knots_axial)``.
    density
        Positive density values, shape ``(M,)`` or ``(M_inplane, M_axial)``; the overall scale is
        irrelevant (the field is normalised to unit variance).
    stretch
        Fixed length multiplier(s) ``s`` (``rho_s(h) = rho(h / s)``), for "what if" variation:
        a number, or ``(axial, inplane)`` for cylindrical.
    """

    tail_slope = -4.0

    def __init__(
        self,
        knots: np.ndarray | tuple[np.ndarray, np.ndarray],
        density: np.ndarray,
        anisotropy: str = "isotropic",
        axis: int = 0,
        stretch: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        _check_anisotropy(anisotropy, axis)
        self.family = None
        self.anisotropy = anisotropy
        self.axis = axis
        density = np.asarray(density, dtype=float)
        if anisotropy == "isotropic":
            k = np.asarray(knots, dtype=float).ravel()
            if density.shape != k.shape:
                raise ValueError(f"density has shape {density.shape}, expected {k.shape} (one per knot)")
            self.register_buffer("knots", torch.tensor(k, dtype=torch.float32))
        else:
            k_ip, k_ax = (np.asarray(v, dtype=float).ravel() for v in knots)
            if density.shape != (k_ip.size, k_ax.size):
                raise ValueError(
                    f"density has shape {density.shape}, expected {(k_ip.size, k_ax.size)} "
                    "(in-plane knots x axial knots)"
                )
            self.register_buffer("knots_inplane", torch.tensor(k_ip, dtype=torch.float32))
            self.register_buffer("knots_axial", torch.tensor(k_ax, dtype=torch.float32))
            k = np.concatenate([k_ip, k_ax])
        for kk in ([k] if anisotropy == "isotropic" else [k_ip, k_ax]):
            if np.any(np.diff(kk) <= 0) or np.any(kk <= 0) or not np.all(np.isfinite(kk)):
                raise ValueError("knot frequencies must be positive, finite and strictly increasing")
        if not np.all(np.isfinite(density)) or np.any(density <= 0):
            raise ValueError("spectral density values must be positive and finite")
        self.log_density = nn.Parameter(torch.tensor(np.log(density), dtype=torch.float32))
        st = np.atleast_1d(np.asarray(stretch, dtype=float))
        if anisotropy == "cylindrical" and st.size == 1:
            st = np.repeat(st, 2)
        if st.size != (1 if anisotropy == "isotropic" else 2) or np.any(st <= 0):
            raise ValueError(f"stretch must be positive: one value (isotropic) or (axial, inplane), got {st}")
        self.register_buffer("stretch", torch.tensor(st, dtype=torch.float32))

    # -- construction from a parametric model -------------------------------------------------
    @classmethod
    def from_covariance(
        cls, cov: ParametricCovariance, n_knots: int = 24, k_min: float = 1.0 / 256.0, k_max: float = 0.5
    ) -> "SpectralCovariance":
        """Knot densities sampled from the spectral density of a parametric covariance.

        The 3D spectral density of the (scaled) parametric correlation is computed by a numerical
        Hankel transform; it is the natural start for high-parametric calibration.
        """
        knots = default_knots(n_knots, k_min, k_max)
        r = np.linspace(0.0, 400.0, 16001)
        dr = r[1] - r[0]
        with torch.no_grad():
            if cov.anisotropy == "isotropic":
                rho = cov.correlation({(cov.axis + 1) % 3: torch.tensor(r, dtype=torch.float32)}).double().numpy()
                dens = np.array([np.sum(4 * np.pi * r**2 * rho * np.sinc(2 * kk * r)) * dr for kk in knots])
                dens = np.maximum(dens, 1e-12 * np.abs(dens).max())
                return cls(knots, dens, "isotropic", cov.axis)
            la, li = cov.length_scale
            base = ParametricCovariance(cov.family.name, 1.0, "isotropic", cov.axis, **cov.extras)
            rho = base.correlation({0: torch.tensor(r, dtype=torch.float32)}).double().numpy()
            # geometric anisotropy: S(k_ip, k_ax) = la li^2 S_unit(sqrt((k_ip li)^2 + (k_ax la)^2))
            qs = np.geomspace(k_min * min(la, li) / 4, k_max * max(la, li) * 4, 400)
            s_unit = np.array([np.sum(4 * np.pi * r**2 * rho * np.sinc(2 * q * r)) * dr for q in qs])
            s_unit = np.maximum(s_unit, 1e-12 * np.abs(s_unit).max())
            kk_ip, kk_ax = np.meshgrid(knots, knots, indexing="ij")
            q = np.sqrt((kk_ip * li) ** 2 + (kk_ax * la) ** 2)
            dens = np.exp(np.interp(np.log(q), np.log(qs), np.log(s_unit)))
            return cls((knots, knots), dens, "cylindrical", cov.axis)

    # -- evaluation ---------------------------------------------------------------------------
    def _quadrature(self, r_max: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Frequency nodes and trapezoid weights resolving oscillations up to lag ``r_max``."""
        dk = 1.0 / (8.0 * max(r_max, 8.0))
        k_hi = 1.0
        n = int(math.ceil(k_hi / dk)) + 1
        k = torch.linspace(0.0, k_hi, n, device=self.log_density.device)
        w = torch.full_like(k, k_hi / (n - 1))
        w[0] = w[-1] = 0.5 * k_hi / (n - 1)
        return k, w

    def _table_iso(self, r_max: float, step: float) -> torch.Tensor:
        k, w = self._quadrature(r_max)
        r = torch.arange(0.0, r_max + 2 * step, step, device=k.device)
        dens = torch.exp(_log_density_1d(k, self.knots, self.log_density, self.tail_slope))
        weight = w * 4 * math.pi * k * k * dens
        rho = (torch.sinc(2 * r[:, None] * k[None, :]) * weight[None, :]).sum(1)
        return rho / weight.sum()

    def _table_cyl(self, r_ip: float, r_ax: float, step: float) -> torch.Tensor:
        k, w = self._quadrature(max(r_ip, r_ax))
        dens = torch.exp(
            _log_density_2d(k, k, self.knots_inplane, self.knots_axial, self.log_density, self.tail_slope)
        )
        # dens[ip, ax]; measure 2 pi k_ip dk_ip * 2 dk_ax (k_ax >= 0 half-line, even in k_ax)
        w_ip = w * 2 * math.pi * k
        w_ax = w * 2.0
        h_ip = torch.arange(0.0, r_ip + 2 * step, step, device=k.device)
        h_ax = torch.arange(0.0, r_ax + 2 * step, step, device=k.device)
        a = torch.special.bessel_j0(2 * math.pi * h_ip[:, None] * k[None, :]) * w_ip[None, :]
        b = torch.cos(2 * math.pi * k[:, None] * h_ax[None, :]) * w_ax[:, None]
        table = a @ dens @ b
        return table / (w_ip @ dens @ w_ax)

    @staticmethod
    def _lerp(table: torch.Tensor, x: torch.Tensor, step: float) -> torch.Tensor:
        pos = x / step
        i0 = pos.floor().long().clamp(0, table.shape[0] - 2)
        f = (pos - i0).clamp(0.0, 1.0)
        return table[i0] * (1 - f) + table[i0 + 1] * f

    def correlation(self, lags: Mapping[int, torch.Tensor]) -> torch.Tensor:
        step = 0.25
        ax2, ip2 = _split_lags(lags, self.axis)
        dev = self.log_density.device
        ax = torch.sqrt(torch.as_tensor(ax2, device=dev))
        ip = torch.sqrt(torch.as_tensor(ip2, device=dev))
        if self.anisotropy == "isotropic":
            r = torch.sqrt(ax * ax + ip * ip) / self.stretch[0]
            table = self._table_iso(float(r.max()), step)
            return self._lerp(table, r, step)
        ax = ax / self.stretch[0]
        ip = ip / self.stretch[1]
        table = self._table_cyl(float(ip.max()), float(ax.max()), step)
        # bilinear interpolation in (ip, ax)
        pi, pa = ip / step, ax / step
        i0 = pi.floor().long().clamp(0, table.shape[0] - 2)
        j0 = pa.floor().long().clamp(0, table.shape[1] - 2)
        fi = (pi - i0).clamp(0, 1)
        fj = (pa - j0).clamp(0, 1)
        return (
            table[i0, j0] * (1 - fi) * (1 - fj)
            + table[i0 + 1, j0] * fi * (1 - fj)
            + table[i0, j0 + 1] * (1 - fi) * fj
            + table[i0 + 1, j0 + 1] * fi * fj
        )
