"""The bridged chi-square field: a connectivity knob between chi-square(1) and chi-square(2).

``F = Y_1^2 + lam * Y_2^2`` with ``Y_1, Y_2`` independent unit-variance Gaussian fields of the same
covariance and a bridge weight ``0 < lam < 1``. It is written as a chi-square field with fractional
degrees of freedom ``dof = 1 + lam`` (so ``dof = 1`` is chi-square(1), ``dof = 2`` chi-square(2));
its marginal law is *not* the chi-square law of that many degrees of freedom but the weighted sum.

Why: the upper level set {Y_1^2 >= t} of chi-square(1) is two families of blobs ({Y_1 >= sqrt t},
{Y_1 <= -sqrt t}) that never touch, so a particle phase built on it is close to its percolation
threshold; chi-square(2) joins them everywhere. The second, weighted component builds bridges
across the zero level of Y_1 where Y_2 is large: as ``lam`` grows from 0 to 1 the 3D connectivity
rises continuously (NMC-like phase at VF 0.40: tau 10.5 -> 6 -> 4.5 at lam 0 / 0.25 / 0.5) while
the 2D sections stay blob-like (chi/P^2 0.152 -> 0.137 -> 0.122). Every Gaussian pair of the two
components has the same correlation rho(h), so the two-point law of F, and with it C_ij, is exact:

* marginal CDF (``x_1 = sqrt(t) sin theta``, which removes the endpoint singularities)::

      F(t) = int_{-pi/2}^{pi/2} phi(sqrt t sin th) (2 Phi(sqrt(t / lam) cos th) - 1) sqrt t cos th dth

* bivariate CDF ``G(a, b; rho) = P(F(0) <= a, F(h) <= b)``: given the components ``x`` at 0, those at
  h are ``rho x + s z`` (``s = sqrt(1 - rho^2)``, z standard normal), so::

      G = int_{x in E_a} phi_2(x) E_z2[Phi((sqrt B - rho x_1) / s) - Phi((-sqrt B - rho x_1) / s)] dx,
      B = b - lam (rho x_2 + s z_2)^2  (the term is 0 where B < 0),

  over the ellipse ``E_a = {x_1^2 + lam x_2^2 <= a}`` (Gauss-Legendre in elliptic polar coordinates,
  one quadrant by symmetry) and z_2 over the interval where B >= 0. As rho -> 1 the conditional law
  becomes a point mass; below ``s = S_MIN`` the table is continued linearly in s to its exact limit
  ``F(min(a, b))`` at rho = 1 (G is linear in s there: the boundary term of C_ij).
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np
from scipy import optimize, special

__all__ = [
    "MAX_DOF",
    "bridge_weight",
    "checked_dof",
    "dof_label",
    "bridged_cdf",
    "bridged_pdf",
    "bridged_quantile",
    "bridged_bivariate_cdf",
    "is_bridged",
]

#: Largest integer chi-square degrees of freedom a field may have.
MAX_DOF = 6

#: Below this s = sqrt(1 - rho^2) the bivariate CDF is continued linearly to rho = 1.
S_MIN = 0.06

_THETA_NODES = 256


def is_bridged(dof: float) -> bool:
    """True for a fractional dof in (1, 2), the bridged chi-square field."""
    return 1.0 < float(dof) < 2.0


def bridge_weight(dof: float) -> float:
    """The bridge weight lam = dof - 1 of a fractional dof in (1, 2)."""
    d = float(dof)
    if not 1.0 < d < 2.0:
        raise ValueError(f"a bridged chi-square field has 1 < dof < 2 (dof = 1 + bridge weight), got {dof!r}")
    return d - 1.0


def checked_dof(kind: str, dof) -> int | float:
    """The one rule of a field's degrees of freedom: a Gaussian has 1; a chi-square field an integer
    1..MAX_DOF, or a fraction in (1, 2) for the bridged field (integer-valued floats become ints).

    Raises ValueError with what is allowed.
    """
    bad = isinstance(dof, bool) or not isinstance(dof, numbers.Real) or not math.isfinite(float(dof))
    if not bad and float(dof).is_integer() and 1 <= float(dof) <= MAX_DOF:
        return 1 if kind == "gaussian" else int(dof)
    if not bad and is_bridged(dof):
        return 1 if kind == "gaussian" else float(dof)
    raise ValueError(f"chi-square degrees of freedom must be an integer 1..{MAX_DOF}, or a number between 1 "
                     f"and 2 for the bridged field Y1^2 + (dof - 1) Y2^2; got {dof!r}")


def dof_label(dof: int | float) -> str:
    """``"3"`` for chi-square(3), ``"1+0.25"`` for the bridged field Y1^2 + 0.25 Y2^2."""
    return f"1+{bridge_weight(dof):.3g}" if is_bridged(dof) else str(int(dof))


@lru_cache(maxsize=4)
def _gl(n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return lo + 0.5 * (hi - lo) * (x + 1.0), 0.5 * (hi - lo) * w


def _phi(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def bridged_cdf(dof: float, t) -> np.ndarray | float:
    """Marginal CDF P(Y_1^2 + lam Y_2^2 <= t) (vectorised in ``t``)."""
    lam = bridge_weight(dof)
    th, w = _gl(_THETA_NODES, -0.5 * math.pi, 0.5 * math.pi)
    tt = np.atleast_1d(np.asarray(t, dtype=float))
    r = np.sqrt(np.clip(tt, 0.0, None))[:, None]
    vals = (_phi(r * np.sin(th)) * (2.0 * special.ndtr(r * np.cos(th) / math.sqrt(lam)) - 1.0) * r * np.cos(th)) @ w
    vals = np.where(tt <= 0, 0.0, np.where(np.isinf(tt), 1.0, np.clip(vals, 0.0, 1.0)))
    return vals if np.ndim(t) else float(vals[0])


def bridged_pdf(dof: float, t) -> np.ndarray | float:
    """Marginal density of Y_1^2 + lam Y_2^2 at ``t`` (vectorised)."""
    lam = bridge_weight(dof)
    th, w = _gl(_THETA_NODES, -0.5 * math.pi, 0.5 * math.pi)
    tt = np.atleast_1d(np.asarray(t, dtype=float))
    r = np.sqrt(np.clip(tt, 0.0, None))[:, None]
    # d/dt of the CDF above: phi(x_1) phi(x_2) / (2 sqrt(lam)) integrated over the level ellipse
    vals = (_phi(r * np.sin(th)) * _phi(r * np.cos(th) / math.sqrt(lam))) @ w / math.sqrt(lam)
    vals = np.where((tt <= 0) | ~np.isfinite(tt), 0.0, vals)
    return vals if np.ndim(t) else float(vals[0])


def bridged_quantile(dof: float, p: float) -> float:
    """Marginal quantile (``p`` clipped to [1e-12, 1 - 1e-12])."""
    lam = bridge_weight(dof)
    p = min(max(float(p), 1e-12), 1.0 - 1e-12)
    hi = 1.0
    while bridged_cdf(dof, hi) < p:
        hi *= 2.0
    # F(t) >= P(Y_1^2 <= t) P(lam Y_2^2 <= t) > 0 for t > 0: the root is bracketed by (0, hi]
    return float(optimize.brentq(lambda x: bridged_cdf(1.0 + lam, x) - p, 0.0, hi, xtol=1e-13, rtol=1e-13))


# -- bivariate -------------------------------------------------------------------------------------
_R_NODES, _TH_NODES, _Z_NODES = 48, 48, 32


def _conditional(lam: float, b: float, rho: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """P(F(h) <= b | components x at 0) for correlations ``rho (R, 1)``, points ``x (1, P)``: ``(R, P)``."""
    s = np.sqrt(1.0 - rho * rho)
    c1, c2 = rho * x1, rho * x2  # conditional means of the components at h
    half = math.sqrt(b / lam)
    # z_2 where B >= 0, clipped to +-8.5 SD; the substitution z = mid + hw sin(psi) clusters the nodes
    # at both ends, where B -> 0 gives the integrand a square-root edge
    lo = np.maximum((-half - c2) / s, -8.5)
    hi = np.minimum((half - c2) / s, 8.5)
    empty = hi <= lo
    mid, hw = 0.5 * (lo + hi), 0.5 * np.maximum(hi - lo, 0.0)
    psi, wpsi = _gl(_Z_NODES, -0.5 * math.pi, 0.5 * math.pi)
    z = mid[..., None] + hw[..., None] * np.sin(psi)
    w = c2[..., None] + s[..., None] * z
    sb = np.sqrt(np.clip(b - lam * w * w, 0.0, None))
    m1, sk = c1[..., None], s[..., None]
    inner = special.ndtr((sb - m1) / sk) - special.ndtr((-sb - m1) / sk)
    val = (inner * _phi(z) * (hw[..., None] * np.cos(psi))) @ wpsi
    return np.where(empty, 0.0, val)


def _bivariate_values(lam: float, a: float, b: float, rho: np.ndarray) -> np.ndarray:
    """G(a, b; rho) for 0 <= rho < 1 by the quadrature of the module docstring."""
    r, wr = _gl(_R_NODES, 0.0, 1.0)
    th, wt = _gl(_TH_NODES, 0.0, 0.5 * math.pi)
    rr, tt = np.meshgrid(r, th, indexing="ij")
    x1 = (math.sqrt(a) * rr * np.cos(tt)).ravel()[None, :]
    x2 = (math.sqrt(a / lam) * rr * np.sin(tt)).ravel()[None, :]
    # 4 quadrants (the conditional law is even in x_1 and in x_2), Jacobian a r / sqrt(lam)
    weight = (4.0 * np.outer(wr, wt) * rr * a / math.sqrt(lam)).ravel() * _phi(x1[0]) * _phi(x2[0])
    out = np.empty(len(rho))
    for i in range(0, len(rho), 16):  # chunks keep the (rho, point, node) array near 10 MB
        rc = np.asarray(rho[i : i + 16], dtype=float)[:, None]
        out[i : i + 16] = _conditional(lam, b, rc, x1, x2) @ weight
    return out


@lru_cache(maxsize=256)
def _bivariate_half(lam: float, a: float, b: float, n_half: int) -> np.ndarray:
    u = np.linspace(0.0, 0.5 * math.pi, n_half)
    rho = np.sin(u)
    s = np.cos(u)
    out = np.empty(n_half)
    direct = s >= S_MIN
    out[direct] = _bivariate_values(lam, a, b, rho[direct])
    # below S_MIN: linear in s to the exact rho = 1 value P(F <= min(a, b))
    g1 = bridged_cdf(1.0 + lam, min(a, b))
    k = np.flatnonzero(direct)[-1]
    near = ~direct
    out[near] = g1 + (out[k] - g1) * s[near] / s[k]
    out[0] = bridged_cdf(1.0 + lam, a) * bridged_cdf(1.0 + lam, b)  # rho = 0: independent
    return out


def bridged_bivariate_cdf(dof: float, a: float, b: float, n: int) -> np.ndarray:
    """G(a, b; rho) on ``n`` (odd) points u = asin(rho) from -pi/2 to pi/2, like
    :func:`~napari_assb_twin.fields.bivariate.bivariate_cdf_table` (even in rho).

    The quadrature runs on 129 points of u in [0, pi/2] and is interpolated (cubic) onto the
    table: G is smooth in u, and a direct evaluation at every one of the 1025 points would take 8x
    as long for no visible gain (interpolation error ~1e-7 against the quadrature's ~1e-5).
    """
    from scipy.interpolate import CubicSpline

    lam = bridge_weight(dof)
    lo, hi = sorted((float(a), float(b)))
    if lo <= 0.0:
        return np.zeros(n)  # P(F <= 0) = 0
    half = _bivariate_half(round(lam, 12), round(lo, 12), round(hi, 12), 129)
    u_coarse = np.linspace(0.0, 0.5 * math.pi, len(half))
    u = np.linspace(-0.5 * math.pi, 0.5 * math.pi, n)
    # zero slope at rho = 0: G is even in u
    return CubicSpline(u_coarse, half, bc_type=((1, 0.0), "not-a-knot"))(np.abs(u))
