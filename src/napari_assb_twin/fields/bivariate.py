"""Joint probabilities of a field at two points: the model's exact two-point statistics.

For a unit-variance Gaussian field Z, or a chi-square field X = Z_1^2 + ... + Z_k^2 of k independent
copies, the bivariate CDF G(a, b; rho) = P(F(x) <= a, F(x + h) <= b) depends on h only through the
correlation rho(h) of the underlying Gaussian field. Thresholds are fixed by the volume fractions
during calibration, so this function of rho is tabulated once per threshold pair (SciPy, float64)
and interpolated in torch. Interval probabilities P(F(x) in I_i, F(x + h) in I_k) for the cells
I_i = (t_i, t_{i+1}] of a truncation rule follow by inclusion-exclusion
(:class:`IntervalPairProbability`), and the model's expected C_ij(h) exactly and differentiably from
its covariance, with no simulation noise
(:meth:`~napari_assb_twin.model.ThreePhaseModel.expected_coverage`).

Formulas
--------
Gaussian (Plackett's identity, d/drho Phi_2(a, b; rho) = phi_2(a, b; rho), substituted rho = sin u)::

    G(rho) = Phi(a) Phi(b) + 1/(2 pi) int_0^{asin rho} exp(-(a - b)^2 / (4 (1 - sin u)) - (a + b)^2 / (4 (1 + sin u))) du

Chi-square(k): given X = x, the second value is (1 - rho^2) times a noncentral chi-square(k) variable
with non-centrality rho^2 x / (1 - rho^2), so, with a <= b::

    G(rho) = int_0^a f_k(x) F_ncx2(b / (1 - rho^2); k, rho^2 x / (1 - rho^2)) dx

Level sets: P(both in {F <= t}) = G(t, t); P(both in {F >= t}) = 1 - 2 F(t) + G(t, t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy import integrate, stats

from .bridged import bridged_bivariate_cdf, bridged_cdf, bridged_pdf, bridged_quantile, checked_dof, is_bridged

__all__ = [
    "TABLE_SIZE",
    "IntervalPairProbability",
    "LevelPairProbability",
    "bivariate_cdf_table",
    "joint_probability_table",
    "marginal_cdf",
    "marginal_density",
    "marginal_quantile",
]

#: Points of the table on u = asin(rho) in [-pi/2, pi/2] (linear interpolation error ~1e-7).
TABLE_SIZE = 2049

FIELD_KINDS = ("gaussian", "chi2")


# -- marginals -------------------------------------------------------------------------------------
def _check_kind(kind: str) -> None:
    if kind not in FIELD_KINDS:
        raise ValueError(f"field type must be 'gaussian' or 'chi2', got {kind!r}")


def marginal_quantile(kind: str, dof: int, p: float) -> float:
    """Marginal quantile of a standard normal (``kind="gaussian"``) or chi-square(``dof``) field
    (``p`` clipped to [1e-12, 1 - 1e-12] so cuts at 0 or 1 stay finite)."""
    _check_kind(kind)
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    if kind == "chi2" and is_bridged(dof):
        return bridged_quantile(dof, p)
    return float(stats.norm.ppf(p) if kind == "gaussian" else stats.chi2.ppf(p, dof))


def marginal_cdf(kind: str, dof: int, t: float) -> float:
    """Marginal CDF at ``t``."""
    _check_kind(kind)
    if kind == "chi2" and is_bridged(dof):
        return float(bridged_cdf(dof, t))
    return float(stats.norm.cdf(t) if kind == "gaussian" else stats.chi2.cdf(t, dof))


def marginal_density(kind: str, dof: int, t: float) -> float:
    """Marginal probability density at ``t``."""
    _check_kind(kind)
    if kind == "chi2" and is_bridged(dof):
        return float(bridged_pdf(dof, t))
    return float(stats.norm.pdf(t) if kind == "gaussian" else stats.chi2.pdf(t, dof))


# -- tables ----------------------------------------------------------------------------------------
def _grid(n: int) -> np.ndarray:
    return np.linspace(-0.5 * math.pi, 0.5 * math.pi, n)


def _gaussian_cdf(a: float, b: float, n: int) -> np.ndarray:
    refine = 16
    u = _grid(refine * (n - 1) + 1)
    s = np.sin(u)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        # the exponent -(a-b)^2/(4(1-s)) - (a+b)^2/(4(1+s)), with its limits at s = +-1
        t1 = np.where(1.0 - s > 0, (a - b) ** 2 / (4.0 * np.maximum(1.0 - s, 1e-300)), 0.0 if a == b else np.inf)
        t2 = np.where(1.0 + s > 0, (a + b) ** 2 / (4.0 * np.maximum(1.0 + s, 1e-300)), 0.0 if a == -b else np.inf)
        g = np.exp(-(t1 + t2)) / (2.0 * math.pi)
    cum = integrate.cumulative_trapezoid(g, u, initial=0.0)  # step pi/32768: error ~1e-9
    cum = cum - cum[(len(u) - 1) // 2]  # integral from 0 (rho = 0)
    return (stats.norm.cdf(a) * stats.norm.cdf(b) + cum)[::refine]


def _chi2_cdf_values(a: float, b: float, k: int, rho2: np.ndarray, nodes: int = 800) -> np.ndarray:
    """G(a, b; rho) for squared correlations ``rho2`` in [0, 1), a <= b."""
    # x = v^2 on [0, sqrt(a)] removes the x^(k/2 - 1) endpoint singularity of f_k for k = 1
    z, w = np.polynomial.legendre.leggauss(nodes)
    s = math.sqrt(a)
    v = 0.5 * s * (z + 1.0)
    wv = 0.5 * s * w
    x = v * v
    fx = stats.chi2.pdf(x, k) * 2.0 * v
    # one vectorised SciPy call over (rho, node) is about twice as fast as a loop over rho
    r2 = np.asarray(rho2, dtype=float)[:, None]
    c = 1.0 - r2
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = stats.ncx2.cdf(b / c, k, r2 * x / c)
    out = (wv * fx * cond).sum(1)
    # rho = 0: independent points (ncx2 with zero non-centrality is the central law anyway)
    return np.where(r2[:, 0] <= 0.0, stats.chi2.cdf(a, k) * stats.chi2.cdf(b, k), out)


def _chi2_cdf(a: float, b: float, k: int, n: int) -> np.ndarray:
    u = _grid(n)
    rho2 = np.sin(u) ** 2
    half = u >= 0
    out = np.empty(n)
    vals = np.empty(half.sum())
    r2 = rho2[half]
    inner = r2 < 1.0 - 1e-12
    vals[inner] = _chi2_cdf_values(a, b, k, r2[inner])
    vals[~inner] = stats.chi2.cdf(a, k)  # rho = 1: both points carry the same value, a <= b
    out[half] = vals
    out[~half] = vals[1:][::-1]  # even in rho (n is odd: u = 0 is the middle point)
    return out


@lru_cache(maxsize=256)
def _cached(kind: str, dof: float, a: float, b: float, n: int) -> np.ndarray:
    if kind == "gaussian":
        return _gaussian_cdf(a, b, n)
    if is_bridged(dof):
        return bridged_bivariate_cdf(dof, a, b, n)
    return _chi2_cdf(a, b, int(dof), n)


def _check_n(n: int) -> None:
    if n < 3 or n % 2 == 0:
        raise ValueError(f"the table needs an odd number of points >= 3 (rho = 0 on the grid), got {n}")


def bivariate_cdf_table(kind: str, dof: int, a: float, b: float, n: int = TABLE_SIZE) -> np.ndarray:
    """G(a, b; rho) = P(F(x) <= a, F(x + h) <= b) on ``n`` points u = asin(rho) from -pi/2 to pi/2.

    ``kind`` is ``"gaussian"`` or ``"chi2"`` (then ``dof`` = k independent Gaussian components, or a
    fraction in (1, 2): the bridged field of :mod:`.bridged`);
    ``a``, ``b`` are finite thresholds in field units. Symmetric in (a, b).
    """
    _check_kind(kind)
    _check_n(n)
    lo, hi = sorted((float(a), float(b)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"thresholds must be finite, got {a}, {b}")
    # rounding the key keeps float noise in the thresholds from defeating the cache
    return _cached(kind, checked_dof(kind, dof), round(lo, 12), round(hi, 12), int(n)).copy()


def joint_probability_table(kind: str, dof: int, threshold: float, level: str, n: int = TABLE_SIZE) -> np.ndarray:
    """P(F(x) in S, F(x + h) in S) on ``n`` points u = asin(rho) for the level set S = {F <= t}
    (``"lower"``) or {F >= t} (``"upper"``)."""
    _check_kind(kind)
    if level not in ("lower", "upper"):
        raise ValueError(f"level must be 'lower' or 'upper', got {level!r}")
    lower = bivariate_cdf_table(kind, dof, threshold, threshold, n)
    if level == "lower":
        return lower
    return 1.0 - 2.0 * marginal_cdf(kind, dof, threshold) + lower


def _interpolate(tables: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Linear interpolation in u = asin(rho) of tables ``(..., L)`` at ``rho``: ``(..., *rho.shape)``.

    asin' is infinite at rho = +-1 (lag 0), and 0 * inf would poison the gradients of other lags:
    there the value is taken without gradient, elsewhere asin of the (safe) input.
    """
    size = tables.shape[-1]
    inner = rho.abs() < 1.0 - 1e-6
    safe = torch.where(inner, rho, torch.zeros_like(rho))
    u = torch.where(inner, torch.asin(safe), torch.asin(rho.detach().clamp(-1.0, 1.0))) + 0.5 * math.pi
    pos = u / (math.pi / (size - 1))
    i0 = pos.detach().floor().clamp(0, size - 2).long()
    w = pos - i0.to(pos.dtype)
    return tables[..., i0] * (1.0 - w) + tables[..., i0 + 1] * w


class LevelPairProbability:
    """Differentiable rho -> P(both points in the level set), from :func:`joint_probability_table`.

    Linear interpolation in u = asin(rho), where the function is smooth up to rho = +-1 (in rho it
    has a square-root cusp at rho = 1).
    """

    def __init__(self, kind: str, dof: int, threshold: float, level: str, device: torch.device | str = "cpu") -> None:
        table = joint_probability_table(kind, dof, threshold, level)
        self.table = torch.as_tensor(table, dtype=torch.float32, device=device)
        self.marginal = float(table[-1])  # rho = 1: P(F in S)

    def __call__(self, rho: torch.Tensor) -> torch.Tensor:
        return _interpolate(self.table, rho)


class IntervalPairProbability:
    """Differentiable rho -> P(F(x) in I_i, F(x + h) in I_k) for the cells of one field's cuts.

    Parameters
    ----------
    kind, dof
        The field: ``"gaussian"`` or ``"chi2"`` with ``dof`` components.
    edges
        Cuts as probabilities, ``0 = e_0 < ... < e_m = 1``; cell i is (Q(e_i), Q(e_{i+1})] in field
        units (Q the marginal quantile). The bivariate CDF is tabulated for every pair of interior
        cuts; cells follow by inclusion-exclusion.
    """

    def __init__(self, kind: str, dof: int, edges: Sequence[float], device: torch.device | str = "cpu") -> None:
        _check_kind(kind)
        self.edges = tuple(float(e) for e in edges)
        if len(self.edges) < 2 or self.edges[0] != 0.0 or self.edges[-1] != 1.0:
            raise ValueError(f"edges must run from 0 to 1, got {list(self.edges)}")
        self.thresholds = tuple(marginal_quantile(kind, dof, e) for e in self.edges[1:-1])
        n_int = len(self.thresholds)
        tables = np.zeros((n_int, n_int, TABLE_SIZE))
        for i in range(n_int):
            for j in range(i, n_int):
                tables[i, j] = tables[j, i] = bivariate_cdf_table(kind, dof, self.thresholds[i], self.thresholds[j])
        self.tables = torch.as_tensor(tables, dtype=torch.float32, device=device)
        self._edges_t = torch.as_tensor(self.edges, dtype=torch.float32, device=device)

    @property
    def n_cells(self) -> int:
        return len(self.edges) - 1

    def __call__(self, rho: torch.Tensor) -> torch.Tensor:
        """Tensor ``(m, m, *rho.shape)``; rows sum to the cells' probabilities, symmetric."""
        m = self.n_cells
        shape = rho.shape
        g = rho.new_zeros((m + 1, m + 1, *shape))
        if m > 1:
            g[1:m, 1:m] = _interpolate(self.tables, rho)
        # G(t, +inf) = F(t) = e; G(-inf, .) = 0
        edge = self._edges_t.to(rho.dtype).view(-1, *([1] * len(shape)))
        g[m, :] = edge.expand(m + 1, *shape)
        g[:, m] = edge.expand(m + 1, *shape)
        return g[1:, 1:] - g[:-1, 1:] - g[1:, :-1] + g[:-1, :-1]
