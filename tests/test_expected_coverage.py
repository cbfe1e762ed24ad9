"""Exact two-point statistics: joint level-set probabilities against independent oracles (SciPy's
bivariate normal CDF, adaptive quadrature, Monte Carlo) and the model's expected C_ij against the
coverage of simulated sections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from napari_assb_twin.fields.bivariate import LevelPairProbability, joint_probability_table
from napari_assb_twin.model import build_model
from napari_assb_twin.stats.coverage import coverage_onehot

VF = {"pore": 0.15, "active": 0.55, "electrolyte": 0.30}


def _at(table: np.ndarray, rho: float) -> float:
    u = np.linspace(-0.5 * math.pi, 0.5 * math.pi, len(table))
    return float(np.interp(math.asin(rho), u, table))


@pytest.mark.parametrize("t", [-1.3, 0.0, 0.4, 2.0])
@pytest.mark.parametrize("rho", [-0.9, -0.3, 0.0, 0.5, 0.95, 0.999])
def test_gaussian_table_equals_bivariate_normal_cdf(t, rho):
    cov = [[1.0, rho], [rho, 1.0]]
    lower = stats.multivariate_normal([0, 0], cov).cdf([t, t])
    upper = stats.multivariate_normal([0, 0], cov).cdf([-t, -t])  # P(Z1 >= t, Z2 >= t)
    assert _at(joint_probability_table("gaussian", 1, t, "lower"), rho) == pytest.approx(lower, abs=2e-6)
    assert _at(joint_probability_table("gaussian", 1, t, "upper"), rho) == pytest.approx(upper, abs=2e-6)


@pytest.mark.parametrize("k, a", [(1, 0.5), (3, 2.0), (4, 6.0)])
@pytest.mark.parametrize("rho", [0.2, 0.7, 0.97])
def test_chi2_table_equals_adaptive_quadrature(k, a, rho):
    c = 1.0 - rho * rho
    oracle = integrate.quad(lambda x: stats.chi2.pdf(x, k) * stats.ncx2.cdf(a / c, k, rho * rho * x / c), 0.0, a,
                            limit=400, epsabs=1e-12, points=[a * 0.999])[0]
    fa = stats.chi2.cdf(a, k)
    assert _at(joint_probability_table("chi2", k, a, "lower"), rho) == pytest.approx(oracle, abs=2e-5)
    assert _at(joint_probability_table("chi2", k, a, "upper"), rho) == pytest.approx(1 - 2 * fa + oracle, abs=2e-5)
    # even in rho: the chi-square values depend on rho^2 only
    assert _at(joint_probability_table("chi2", k, a, "lower"), -rho) == pytest.approx(oracle, abs=2e-5)


def test_chi2_table_matches_monte_carlo():
    rng = np.random.default_rng(0)
    rho, k, a, n = 0.8, 3, 2.5, 1_000_000
    z = rng.standard_normal((n, k))
    w = rho * z + math.sqrt(1 - rho**2) * rng.standard_normal((n, k))
    x, y = (z**2).sum(1), (w**2).sum(1)
    for level, mc in (("lower", np.mean((x <= a) & (y <= a))), ("upper", np.mean((x >= a) & (y >= a)))):
        sd = math.sqrt(mc * (1 - mc) / n)
        assert abs(_at(joint_probability_table("chi2", k, a, level), rho) - mc) < 5 * sd


@pytest.mark.parametrize("kind, dof, t, level", [("gaussian", 1, 0.7, "upper"), ("chi2", 2, 1.0, "lower")])
def test_limits_and_gradient(kind, dof, t, level):
    prob = LevelPairProbability(kind, dof, t, level)
    marginal = (stats.norm.cdf(t) if kind == "gaussian" else stats.chi2.cdf(t, dof))
    p = marginal if level == "lower" else 1 - marginal
    rho = torch.tensor([0.0, 1.0], requires_grad=True)
    val = prob(rho)
    assert float(val[0].detach()) == pytest.approx(p * p, abs=1e-6)  # independent points
    assert float(val[1].detach()) == pytest.approx(p, abs=1e-4)  # the same point
    assert prob.marginal == pytest.approx(p, abs=1e-9)
    val.sum().backward()
    assert torch.isfinite(rho.grad).all()
    if kind == "gaussian":  # Plackett: d/drho P = bivariate normal density at (t, t)
        r = torch.tensor(0.4, requires_grad=True)
        prob(r).backward()
        dens = math.exp(-t * t / 1.4) / (2 * math.pi * math.sqrt(1 - 0.16))
        assert float(r.grad) == pytest.approx(dens, rel=2e-3)


def test_bad_table_requests_are_refused():
    with pytest.raises(ValueError, match="field type"):
        joint_probability_table("poisson", 1, 0.0, "lower")
    with pytest.raises(ValueError, match="level"):
        joint_probability_table("gaussian", 1, 0.0, "middle")


MODELS = [
    ("lp-iso", dict(f1="chi2", f1_dof=3, levels=("lower", "upper"), length_scales_px=(6.0, 3.0))),
    ("lp-iso", dict(f1="gaussian", levels=("upper", "lower"), order=("pore", "electrolyte", "active"),
                    family="damped_wave", length_scales_px=(4.0, 3.0))),
    ("lp-cyl", dict(f1="chi2", f1_dof=1, levels=("upper", "lower"), family="exponential",
                    length_scales_px=((9.0, 5.0), (3.0, 4.0)))),
]


@pytest.mark.parametrize("variant, kw", MODELS)
def test_expected_coverage_is_a_coverage_function(variant, kw):
    model = build_model(variant, volume_fractions=VF, **kw)
    vf = torch.tensor([model.volume_fractions[p] for p in ("pore", "active", "electrolyte")])
    for direction in ("inplane", "axial"):
        c = model.expected_coverage(20, direction).detach()
        assert c.shape == (3, 3, 21)
        assert torch.allclose(c, c.transpose(0, 1))
        assert torch.allclose(torch.diagonal(c[:, :, 0]), vf, atol=1e-5)  # C_ii(0) = v_i
        assert torch.allclose(c.sum(1), vf[:, None].expand(3, 21), atol=1e-5)  # sum_j C_ij = v_i
        assert (c >= -1e-7).all()


@pytest.mark.parametrize("variant, kw", MODELS)
def test_expected_coverage_equals_simulated_sections(variant, kw):
    """Oracle: the batch mean coverage of 48 directly simulated 192^2 sections (periodic estimator).
    Tolerance 0.004: about 4 standard errors of that mean for these length scales."""
    model = build_model(variant, volume_fractions=VF, **kw)
    g = torch.Generator().manual_seed(0)
    for plane in ("inplane", "axial") if variant.endswith("cyl") else ("inplane",):
        with torch.no_grad():
            x, _ = model.section_maps((192, 192), plane, 48, g, "hard")
            d = coverage_onehot(x, 20, periodic=True, radial=False)[0].mean(0)
        if plane == "inplane":
            pairs = [("inplane", 0.5 * (d[0] + d[1]))]
        else:
            pairs = [("axial", d[0]), ("inplane", d[1])]
        for direction, sim in pairs:
            exact = model.expected_coverage(20, direction).detach()
            assert float((exact - sim).abs().max()) < 4e-3, (plane, direction)


def test_expected_coverage_is_differentiable_in_the_lengths():
    model = build_model("lp-cyl", volume_fractions=VF, length_scales_px=((6.0, 3.0), (2.0, 4.0)))
    c = model.expected_coverage(10, "axial")
    c[1, 1, 1:].sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(grads[0].abs().sum()) > 0  # the active (first) phase's field moves C_active,active
