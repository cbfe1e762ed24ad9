"""Joint level-set probabilities of a field at two points: the model's exact two-point statistics.

For a unit-variance Gaussian field Z, or a chi-square field X = Z_1^2 + ... + Z_k^2 of k independent
copies, the probability that both x and x + h lie in a level set {F <= t} or {F >= t} depends on h
only through the correlation rho(h) of the underlying Gaussian field. Thresholds are fixed by the
volume fractions during calibration, so this function of rho is tabulated once (SciPy, float64) and
interpolated in torch: the model's expected C_ij(h) then follows exactly and differentiably from its
covariance, with no simulation noise (:meth:`~napari_assb_twin.model.ThreePhaseModel.expected_coverage`).

Formulas
--------
Gaussian (Plackett's identity, d/drho Phi_2(t, t; rho) = phi_2(t, t; rho), substituted rho = sin u)::

    P(rho) = P(Z in S)^2 + 1/(2 pi) * int_0^{asin rho} exp(-t^2 / (1 + sin u)) du

Chi-square(k): given X = x, the second value is (1 - rho^2) times a noncentral chi-square(k) variable
with non-centrality rho^2 x / (1 - rho^2), so::

    P(X <= a, Y <= a) = int_0^a f_k(x) F_ncx2(a / (1 - rho^2); k, rho^2 x / (1 - rho^2)) dx
    P(X >= a, Y >= a) = 1 - 2 F_k(a) + P(X <= a, Y <= a)
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy import integrate, stats

__all__ = ["TABLE_SIZE", "joint_probability_table", "LevelPairProbability"]

#: Points of the table on u = asin(rho) in [-pi/2, pi/2] (linear interpolation error ~1e-7).
TABLE_SIZE = 2049


def _grid(n: int) -> np.ndarray:
    return np.linspace(-0.5 * math.pi, 0.5 * math.pi, n)


def _gaussian_table(t: float, level: str, n: int) -> np.ndarray:
    p = stats.norm.cdf(t) if level == "lower" else stats.norm.sf(t)
    refine = 16
    u = _grid(refine * (n - 1) + 1)
    den = 1.0 + np.sin(u)
    with np.errstate(under="ignore"):
        # at u = -pi/2 (den = 0) the limit is 0 for t != 0 and 1 / (2 pi) for t = 0
        g = np.where(den > 0, np.exp(-(t * t) / np.maximum(den, 1e-300)), 1.0 if t == 0 else 0.0) / (2.0 * math.pi)
    cum = integrate.cumulative_trapezoid(g, u, initial=0.0)  # step pi/32768: error ~1e-9
    cum = cum - cum[(len(u) - 1) // 2]  # integral from 0 (rho = 0)
    return (p * p + cum)[::refine]


def _chi2_lower(a: float, k: int, rho2: np.ndarray, nodes: int = 800) -> np.ndarray:
    """P(X <= a, Y <= a) for squared correlations ``rho2`` in [0, 1)."""
    # x = v^2 on [0, sqrt(a)] removes the x^(k/2 - 1) endpoint singularity of f_k for k = 1
    z, w = np.polynomial.legendre.leggauss(nodes)
    s = math.sqrt(a)
    v = 0.5 * s * (z + 1.0)
    wv = 0.5 * s * w
    x = v * v
    fx = stats.chi2.pdf(x, k) * 2.0 * v
    out = np.empty_like(rho2)
    for i, r2 in enumerate(rho2):
        if r2 <= 0.0:
            out[i] = stats.chi2.cdf(a, k) ** 2
            continue
        c = 1.0 - r2
        cond = stats.ncx2.cdf(a / c, k, r2 * x / c)
        out[i] = float(np.sum(wv * fx * cond))
    return out


def _chi2_table(t: float, k: int, level: str, n: int) -> np.ndarray:
    u = _grid(n)
    rho2 = np.sin(u) ** 2
    fa = stats.chi2.cdf(t, k)
    half = u >= 0
    lower = np.empty(n)
    vals = np.empty(half.sum())
    r2 = rho2[half]
    inner = r2 < 1.0 - 1e-12
    vals[inner] = _chi2_lower(t, k, r2[inner])
    vals[~inner] = fa  # rho = 1: both points carry the same value
    lower[half] = vals
    lower[~half] = vals[1:][::-1]  # even in rho (n is odd: u = 0 is the middle point)
    if level == "lower":
        return lower
    return 1.0 - 2.0 * fa + lower


@lru_cache(maxsize=64)
def _cached(kind: str, dof: int, t: float, level: str, n: int) -> np.ndarray:
    if kind == "gaussian":
        return _gaussian_table(t, level, n)
    return _chi2_table(t, dof, level, n)


def joint_probability_table(kind: str, dof: int, threshold: float, level: str, n: int = TABLE_SIZE) -> np.ndarray:
    """P(F(x) in S, F(x + h) in S) on ``n`` points u = asin(rho) from -pi/2 to pi/2.

    Parameters
    ----------
    kind
        ``"gaussian"`` or ``"chi2"`` (then ``dof`` = k independent Gaussian components).
    threshold, level
        The level set S = {F <= t} (``"lower"``) or {F >= t} (``"upper"``).
    """
    if kind not in ("gaussian", "chi2"):
        raise ValueError(f"field type must be 'gaussian' or 'chi2', got {kind!r}")
    if level not in ("lower", "upper"):
        raise ValueError(f"level must be 'lower' or 'upper', got {level!r}")
    if n < 3 or n % 2 == 0:
        raise ValueError(f"the table needs an odd number of points >= 3 (rho = 0 on the grid), got {n}")
    # rounding the key keeps float noise in the thresholds from defeating the cache
    return _cached(kind, int(dof) if kind == "chi2" else 1, round(float(threshold), 12), level, int(n)).copy()


class LevelPairProbability:
    """Differentiable rho -> P(both points in the level set), from :func:`joint_probability_table`.

    Linear interpolation in u = asin(rho), where the function is smooth up to rho = +-1 (in rho it
    has a square-root cusp at rho = 1).
    """

    def __init__(self, kind: str, dof: int, threshold: float, level: str, device: torch.device | str = "cpu") -> None:
        table = joint_probability_table(kind, dof, threshold, level)
        self.table = torch.as_tensor(table, dtype=torch.float32, device=device)
        self.step = math.pi / (len(table) - 1)
        self.marginal = float(table[-1])  # rho = 1: P(F in S)

    def __call__(self, rho: torch.Tensor) -> torch.Tensor:
        # asin' is infinite at rho = +-1 (lag 0), and 0 * inf would poison the gradients of other
        # lags: there the value is taken without gradient, elsewhere asin of the (safe) input
        inner = rho.abs() < 1.0 - 1e-6
        safe = torch.where(inner, rho, torch.zeros_like(rho))
        u = torch.where(inner, torch.asin(safe), torch.asin(rho.detach().clamp(-1.0, 1.0))) + 0.5 * math.pi
        pos = u / self.step
        i0 = pos.detach().floor().clamp(0, len(self.table) - 2).long()
        w = pos - i0.to(pos.dtype)
        return self.table[i0] * (1.0 - w) + self.table[i0 + 1] * w
