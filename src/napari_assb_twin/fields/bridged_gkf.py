"""Exact level-set densities of the bridged chi-square field (:mod:`.bridged`) by the Gaussian
kinematic formula: what the 2D and 3D Minkowski expectations need of a field type.

``F = Y_1^2 + lam Y_2^2`` is ``g(Y)`` of the Gaussian vector field ``Y = (Y_1, Y_2)``, so its upper
excursion set is ``Y^{-1}(D_t)`` with ``D_t = {y in R^2 : y_1^2 + lam y_2^2 >= t}``, the outside of an
ellipse with semi-axes ``A = sqrt t`` (along y_1) and ``B = sqrt(t / lam)``. The Gaussian kinematic
formula (Taylor 2006, *Ann. Probab.* 34; Adler & Taylor 2007, *Random Fields and Geometry*, ch. 15)
gives the EC density of the upper set in dimension j, per sqrt(det Lambda), as
``rho_j(t) = (2 pi)^(-j/2) M_j(D_t)``, where M_j are the Gaussian Minkowski functionals of D_t: the
coefficients of the Gaussian measure of its tube, ``gamma_2(Tube(D, eps)) = gamma_2(D) + sum_j eps^j /
j! M_j(D)``.

Tube formula for a smooth boundary in R^2. A point ``y + s n`` (``n`` the outward unit normal of D,
``0 <= s <= eps``) has Gaussian density ``phi_2(y) exp(-s a - s^2 / 2)`` with ``a = <y, n>`` and area
element ``(1 + s kappa) ds dH`` (``kappa`` the signed curvature: moving along n, into the ellipse,
shrinks the curve, so ``kappa = -k_ellipse < 0``). Expanding in s and integrating over [0, eps]::

    M_1 = int phi_2 dH,   M_2 = int phi_2 (kappa - a) dH,   M_3 = int phi_2 (a^2 - 1 - 2 a kappa) dH.

A half-plane {y_1 >= t} (a = -t, kappa = 0) gives the Gaussian ``rho_2 = t exp(-t^2/2) / (2 pi)^(3/2)``
and ``rho_3 = (t^2 - 1) exp(-t^2/2) / (2 pi)^2``; the disc complement (lam = 1) the chi-square(2)
formulas of Worsley (1994). On the ellipse ``y = (A cos th, B sin th)``, with
``S(th) = sqrt(A^2 sin^2 th + B^2 cos^2 th)`` (so ``dH = S dth``)::

    a = -A B / S,   kappa = -A B / S^3,   phi_2(y) = exp(-(t cos^2 th + (t / lam) sin^2 th) / 2) / (2 pi).

The level-curve length density per E|G| of the 2D module, ``l(t) = p(t) E[|grad F| | F = t] / E|G|``
(given F = t, ``grad F = 2 (Y_1 grad Y_1 + lam Y_2 grad Y_2) ~ N(0, 4 (Y_1^2 + lam^2 Y_2^2) Lambda)``),
is ``M_1``: the coarea formula turns ``p(t) E[2 sqrt(Y_1^2 + lam^2 Y_2^2) | F = t]`` into the
integral of ``phi_2`` over the level ellipse, since ``|grad_y F| = 2 sqrt(y_1^2 + lam^2 y_2^2)``. The
same ``l`` times the 3D E|G| is the surface density.

The integrands are smooth and periodic in th (even about 0 and pi/2): the midpoint rule on a quarter
period converges exponentially. The Gaussian factor ``exp(-(t / lam) sin^2 th / 2)`` has width
``sqrt(lam / t)`` about th = 0 and S varies on the scale A / B = sqrt(lam), so the node count grows
with ``sqrt(max(t, 1) / lam)``.
"""

from __future__ import annotations

import math

import numpy as np

from .bridged import bridge_weight

__all__ = ["bridged_level_densities", "gaussian_minkowski_ellipse"]


def _nodes(t: float, lam: float) -> int:
    # the integrands vary on a scale sqrt(lam / max(t, 1)) in th about th = 0 (the Gaussian factor's
    # width, and the axis ratio A / B in S): ~24 nodes per such width across the quarter period, at
    # least 128; the midpoint rule then agrees with 4x the nodes to 1e-11 relative (lam >= 1e-6)
    return int(max(128, math.ceil(24.0 * math.sqrt(max(t, 1.0) / lam))))


def gaussian_minkowski_ellipse(t: float, lam: float) -> tuple[float, float, float]:
    """Gaussian Minkowski functionals ``(M_1, M_2, M_3)`` of the ellipse's outside
    ``D_t = {y_1^2 + lam y_2^2 >= t}`` (module docstring), ``t > 0``, ``0 < lam <= 1``."""
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"the level t must be positive and finite, got {t!r}")
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"the weight lam must lie in (0, 1], got {lam!r}")
    n = _nodes(t, lam)
    th = (np.arange(n) + 0.5) * (0.5 * math.pi / n)
    c2 = np.cos(th) ** 2
    s2 = 1.0 - c2
    big_a2, big_b2 = t, t / lam
    ab = math.sqrt(big_a2 * big_b2)
    s = np.sqrt(big_a2 * s2 + big_b2 * c2)
    phi2 = np.exp(-0.5 * (big_a2 * c2 + big_b2 * s2)) / (2.0 * math.pi)
    a = -ab / s
    kappa = -ab / s**3
    # mean over the quarter period x 2 pi = the integral over the full period (4-fold symmetry)
    m1 = 2.0 * math.pi * float(np.mean(phi2 * s))
    m2 = 2.0 * math.pi * float(np.mean(phi2 * (kappa - a) * s))
    m3 = 2.0 * math.pi * float(np.mean(phi2 * (a * a - 1.0 - 2.0 * a * kappa) * s))
    return m1, m2, m3


def bridged_level_densities(dof: float, t: float) -> tuple[float, float, float]:
    """Level-set densities of the bridged chi-square field of ``dof = 1 + lam`` at the level ``t``,
    Lambda = I: ``(l, rho_2, rho_3)``, where ``l`` is the level-set density per E|G| (``L_A = l E|G|``
    in 2D, ``S_V = l E|G|`` in 3D) and ``rho_2``, ``rho_3`` the 2D and 3D EC densities of the upper
    excursion set {F >= t} per sqrt(det Lambda). All 0 for ``t <= 0`` (the whole space is in the set)
    and at ``t = inf``."""
    lam = bridge_weight(dof)
    t = float(t)
    if t <= 0.0 or not math.isfinite(t):
        return 0.0, 0.0, 0.0
    m1, m2, m3 = gaussian_minkowski_ellipse(t, lam)
    return m1, m2 / (2.0 * math.pi), m3 / (2.0 * math.pi) ** 1.5
