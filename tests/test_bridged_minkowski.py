"""Exact 2D / 3D Minkowski densities of the bridged chi-square field F = Y_1^2 + lam Y_2^2
(fields/bridged_gkf.py): limits, an independent tube-measure oracle, the stats modules' dispatch,
and simulated 2D sections and 3D volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from napari_assb_twin.fields.bivariate import marginal_quantile
from napari_assb_twin.fields.bridged import bridged_cdf, bridged_quantile
from napari_assb_twin.fields.bridged_gkf import bridged_level_densities, gaussian_minkowski_ellipse
from napari_assb_twin.fields.covariance import ParametricCovariance
from napari_assb_twin.fields.simulate import gaussian_fields, make_generator
from napari_assb_twin.stats.minkowski import _quantile, field_level_densities, minkowski_torch, rule_minkowski
from napari_assb_twin.stats.minkowski3d import field_level_densities3d, minkowski3d_densities, rule_minkowski3d

T_LEVELS = (0.2, 0.7, 1.0, 2.0, 3.5, 6.0, 10.0)


def _chi2_2(t: float) -> tuple[float, float, float]:
    """chi-square(2) closed forms (l, rho_2, rho_3) of the stats modules' docstrings (k = 2)."""
    g = math.exp(-t / 2)
    return math.sqrt(t) * g, g * (t - 1) / (2 * math.pi), math.sqrt(t) * g * (t - 3) / (2 * math.pi) ** 1.5


def test_disc_and_the_chi2_2_limit():
    """lam = 1 is the disc's outside: the chi-square(2) formulas to rounding (1e-12). dof = 1.999
    (lam = 0.999) through the public entry points: within 5e-4 (1 + t) x the largest of |l|, |rho_2|,
    |rho_3| at that level (the densities move by about (1 - lam) t / 4 relative: measured 2e-4 at
    t = 0.2, 2.2e-3 at t = 10)."""
    for t in T_LEVELS:
        m1, m2, m3 = gaussian_minkowski_ellipse(t, 1.0)
        np.testing.assert_allclose([m1, m2 / (2 * math.pi), m3 / (2 * math.pi) ** 1.5], _chi2_2(t), rtol=0, atol=1e-12)
        ref = np.array(_chi2_2(t))
        got = np.array(bridged_level_densities(1.999, t))
        assert np.abs(got - ref).max() <= 5e-4 * (1 + t) * np.abs(ref).max(), (t, got, ref)
        # the stats modules dispatch the fraction to the bridged field, integer dofs keep chi-square(k)
        np.testing.assert_allclose(field_level_densities("chi2", 1.999, t), got[:2], rtol=0, atol=0)
        assert field_level_densities3d("chi2", 1.999, t) == got[2]
        np.testing.assert_allclose(field_level_densities("chi2", 2, t), ref[:2], rtol=1e-12, atol=1e-15)
        assert field_level_densities3d("chi2", 2, t) == pytest.approx(ref[2], rel=1e-12, abs=1e-15)


def test_gaussian_half_plane_limit():
    """lam -> 0: D_t tends to the two half-planes |y_1| >= s = sqrt t, each with the Gaussian
    functionals phi(s), s phi(s), (s^2 - 1) phi(s) (GKF: rho_2 = t e^{-t^2/2} / (2 pi)^{3/2}, rho_3 =
    (t^2 - 1) e^{-t^2/2} / (2 pi)^2 at level s). At lam = 1e-6 within 1e-5 (absolute; O(lam) terms)."""
    for t in T_LEVELS:
        s = math.sqrt(t)
        p = stats.norm.pdf(s)
        np.testing.assert_allclose(gaussian_minkowski_ellipse(t, 1e-6), [2 * p, 2 * s * p, 2 * (s * s - 1) * p], rtol=0, atol=1e-5)
    # and the chi-square(1) formulas of the stats modules are that limit (dof 1.0001 -> 1)
    for t in (0.5, 2.0, 5.0):
        l1, e1 = field_level_densities("chi2", 1, t)
        lb, eb = field_level_densities("chi2", 1.0001, t)
        assert lb == pytest.approx(l1, abs=1e-3) and eb == pytest.approx(e1, abs=1e-3)
        assert field_level_densities3d("chi2", 1.0001, t) == pytest.approx(field_level_densities3d("chi2", 1, t), abs=1e-3)


def _tube_measure_derivatives(t: float, lam: float, n: int = 2048, m: int = 64) -> np.ndarray:
    """Oracle for the tube formula, independent of its curvature / normal terms: the Gaussian measure
    f(eps) = gamma_2(Tube(D_t, eps)) = 1 - gamma_2(inner parallel set of the ellipse at distance eps),
    whose boundary is c(th) - eps N(th) (N the ellipse's outward normal, c' scaled by 1 - eps k).
    The enclosed Gaussian measure is (1 / 2 pi) int (1 - e^{-r^2/2}) / r^2 (x y' - y x') dth (Green,
    star-shaped about 0): an entire function of eps, so f^(j)(0) = M_j (j = 0..3, M_0 = P(F >= t))
    comes from Cauchy's integral on a circle of radius 0.3 x the smallest curvature radius."""
    a, b = math.sqrt(t), math.sqrt(t / lam)
    rad = 0.3 * min(a * a / b, b * b / a)
    th = 2 * math.pi * np.arange(n) / n
    cx, cy, dx, dy = a * np.cos(th), b * np.sin(th), -a * np.sin(th), b * np.cos(th)
    sp = np.hypot(dx, dy)
    nx, ny, k = b * np.cos(th) / sp, a * np.sin(th) / sp, a * b / sp**3
    phi = 2 * math.pi * np.arange(m) / m
    eps = rad * np.exp(1j * phi)[:, None]
    x, y = cx - eps * nx, cy - eps * ny
    xp, yp = (1 - eps * k) * dx, (1 - eps * k) * dy
    u = x * x + y * y
    f = 1.0 - (-np.expm1(-0.5 * u) / u * (x * yp - y * xp)).mean(1)
    return np.array([math.factorial(j) / rad**j * (f * np.exp(-1j * j * phi)).mean() for j in range(4)])


@pytest.mark.parametrize("lam", [0.1, 0.25, 0.5, 0.8])
def test_tube_formula_against_parallel_sets(lam):
    """M_1..M_3 of the quadrature against the parallel-set oracle: 1e-10 (measured 1e-12); M_0
    against the marginal CDF of fields/bridged.py (an independent route to the same law)."""
    for t in T_LEVELS:
        d = _tube_measure_derivatives(t, lam)
        assert np.abs(d.imag).max() < 1e-10
        assert d[0].real == pytest.approx(1.0 - bridged_cdf(1.0 + lam, t), abs=1e-10)
        np.testing.assert_allclose(gaussian_minkowski_ellipse(t, lam), d[1:].real, rtol=0, atol=1e-10)


def _gradient_mass(t: float, lam: float, nr: int = 64, nth: int = 256) -> float:
    """E[|grad_y F| 1{F <= t}] by 2D quadrature over the ellipse (y = r (A cos th, B sin th),
    Gauss-Legendre in r, trapezoid in th; Jacobian r A B), |grad_y F| = 2 sqrt(y_1^2 + lam^2 y_2^2)."""
    a, b = math.sqrt(t), math.sqrt(t / lam)
    x, w = np.polynomial.legendre.leggauss(nr)
    r, wr = 0.5 * (x + 1), 0.5 * w
    th = 2 * math.pi * np.arange(nth) / nth
    y1, y2 = r[:, None] * a * np.cos(th), r[:, None] * b * np.sin(th)
    g = 2 * np.sqrt(y1**2 + lam**2 * y2**2) * np.exp(-0.5 * (y1**2 + y2**2)) / (2 * math.pi)
    return float(((g * r[:, None] * a * b).mean(1) * 2 * math.pi) @ wr)


@pytest.mark.parametrize("lam", [0.25, 0.5])
def test_level_length_is_the_conditional_gradient_norm(lam):
    """l(t) = p(t) E[|grad_y F| | F = t] = d/dt E[|grad_y F| 1{F <= t}] (coarea), the 2D module's
    meaning of l (L_A = l E|G|), by a central difference of an independent area quadrature: 1e-7
    (measured 1e-8, the difference's error)."""
    for t in (0.2, 1.0, 3.0, 8.0):
        h = 1e-4 * max(t, 1.0)
        d = (_gradient_mass(t + h, lam) - _gradient_mass(t - h, lam)) / (2 * h)
        assert bridged_level_densities(1.0 + lam, t)[0] == pytest.approx(d, abs=1e-7)


def test_dispatch_keeps_fractions_and_corners_factorise():
    """The rule caches key a fractional dof as itself (not int(1.25) = 1); the cut quantile is the
    fields' marginal quantile; the corner term of two independent fields needs only l: for isotropic
    fields the intersection obeys the principal kinematic formula chi(X n Y) = chi_X A_Y + A_X chi_Y
    + L_X L_Y / (2 pi)."""
    assert _quantile("chi2", 1.25, 0.3) == marginal_quantile("chi2", 1.25, 0.3) == bridged_quantile(1.25, 0.3)
    assert _quantile("chi2", 1.25, 0.0) == 0.0 and _quantile("chi2", 1.25, 1.0) == math.inf
    lam = torch.tensor([0.05, 0.05], dtype=torch.float64)
    up = ((0,), (1,))

    def single(kind, dof, cut):
        return rule_minkowski((0, cut, 1), (0, 1), up, [(kind, dof), ("gaussian", 1)], [lam, lam], n_phases=2)[1].detach()

    r1, r125, r15 = single("chi2", 1, 0.6), single("chi2", 1.25, 0.6), single("chi2", 1.5, 0.6)
    assert abs(float(r125[2] - r1[2])) > 0.1 * abs(float(r1[2])) and abs(float(r15[2] - r125[2])) > 0.1 * abs(float(r15[2]))
    x, y = r125, single("gaussian", 1, 0.3)
    both = rule_minkowski((0, 0.6, 1), (0, 0.3, 1), ((0, 0), (0, 1)), [("chi2", 1.25), ("gaussian", 1)], [lam, lam], n_phases=2)[1].detach()
    kin = x[2] * y[0] + x[0] * y[2] + x[1] * y[1] / (2 * math.pi)
    assert float(both[2]) == pytest.approx(float(kin), rel=1e-9)
    assert float(both[1]) == pytest.approx(float(x[1] * y[0] + x[0] * y[1]), rel=1e-9)


# -- simulated fields ----------------------------------------------------------------------------------
L_SIM = 8.0
COV = ParametricCovariance("gaussian", L_SIM)
LAMBDA = torch.tensor([2 / L_SIM**2] * 2, dtype=torch.float64)  # -rho''(0) of exp(-h^2 / L^2)


def _bridged(shape, lam: float, batch: int, seed: int) -> torch.Tensor:
    with torch.no_grad():
        y = gaussian_fields(COV, shape, 2, batch, make_generator(seed), (1, 2) if len(shape) == 2 else None).double()
    return y[:, 0] ** 2 + lam * y[:, 1] ** 2


@pytest.mark.parametrize("lam", [0.25, 0.5])
def test_sections_against_simulation(lam):
    """Upper sets at volume fractions 0.2 / 0.4 / 0.6 on 8 periodic 256^2 sections (length 8 px).
    Tolerance as tests/test_minkowski.py: 4 standard errors + the lattice allowance (perimeter 4 %,
    Euler 0.015 L_A^2). Measured: perimeter -0.3 .. -1.5 %, Euler -0.013 .. -0.002 L_A^2 (s.e.
    0.004 .. 0.006 L_A^2)."""
    f = _bridged((256, 256), lam, 8, seed=31 + int(100 * lam))
    for vf in (0.2, 0.4, 0.6):
        t = bridged_quantile(1.0 + lam, 1.0 - vf)
        sim = minkowski_torch((f >= t).to(torch.uint8), n_phases=2, periodic=True)[:, 1]
        fields = [("chi2", 1 + lam), ("gaussian", 1)]
        ex = rule_minkowski((0, 1 - vf, 1), (0, 1), ((0,), (1,)), fields, [LAMBDA, LAMBDA], n_phases=2)[1].detach()
        mean, se = sim.mean(0), sim.std(0) / math.sqrt(sim.shape[0])
        assert abs(mean[0] - vf) <= 4 * se[0] + 1e-3, (vf, "area", mean, ex)
        assert abs(mean[1] - ex[1]) <= 4 * se[1] + 0.04 * ex[1], (vf, "perimeter", mean, ex)
        assert abs(mean[2] - ex[2]) <= 4 * se[2] + 0.015 * ex[1] ** 2, (vf, "euler", mean, ex)


def test_volumes_against_simulation():
    """chi_V (and V_V, S_V, M_V) of upper sets at volume fractions 0.3 / 0.5, lam = 0.25 and 0.5, on 4
    periodic 96^3 volumes (length 8 px). Tolerance as tests/test_minkowski3d.py: 4 standard errors +
    volume 0.005, surface 7 %, mean curvature 0.08 S_V^2, Euler 0.02 S_V^3. Measured (2 volumes,
    length 8 px): S_V -0.8 .. -1.2 %, M_V within 0.01 S_V^2, chi_V -0.008 .. +0.001 S_V^3; chi2(1) and
    chi2(2) read -0.0003 .. +0.004 S_V^3 on the same volumes."""
    for lam in (0.25, 0.5):
        f = _bridged((96, 96, 96), lam, 4, seed=41 + int(100 * lam)).numpy()
        for vf in (0.3, 0.5):
            t = bridged_quantile(1.0 + lam, 1.0 - vf)
            vals = np.stack([minkowski3d_densities((v >= t).astype(np.uint8), periodic=True, n_phases=2)[1] for v in f])
            ex = rule_minkowski3d((0, 1 - vf, 1), (0, 1), ((0,), (1,)), [("chi2", 1 + lam), ("gaussian", 1)],
                                  [LAMBDA, LAMBDA], n_phases=2)[1].detach().numpy()
            mean, se = vals.mean(0), vals.std(0, ddof=1) / math.sqrt(len(vals))
            s = ex[1]
            tol = 4 * se + np.array([0.005, 0.07 * s, 0.08 * s**2, 0.02 * s**3])
            assert np.all(np.abs(mean - ex) <= tol), (lam, vf, mean, ex, se)
