"""The bridged chi-square field Y1^2 + lam Y2^2 (dof = 1 + lam): exact marginals and two-point law
against their chi-square limits and brute-force Monte Carlo, exact C_ij against simulated volumes,
the model file's version 3 and the one dof rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from napari_assb_twin.fields import bridged
from napari_assb_twin.fields.bivariate import bivariate_cdf_table, marginal_quantile
from napari_assb_twin.model import build_model
from napari_assb_twin.model.modelfile import load_model, model_to_dict, save_model

T = np.array([0.05, 0.5, 1.0, 2.0, 5.0, 10.0])


def test_marginal_tends_to_chi2_2_and_chi2_1():
    # lam = 1 - 1e-4 differs from chi2(2) by O(1e-4) itself; the quadrature is far more accurate
    assert np.abs(bridged.bridged_cdf(1.9999, T) - stats.chi2.cdf(T, 2)).max() < 5e-5
    assert np.abs(bridged.bridged_pdf(1.9999, T) - stats.chi2.pdf(T, 2)).max() < 5e-5
    assert np.abs(bridged.bridged_cdf(1.0001, T) - stats.chi2.cdf(T, 1)).max() < 5e-4


def test_marginal_against_monte_carlo_and_its_own_derivative():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(400_000) ** 2 + 0.3 * rng.standard_normal(400_000) ** 2
    emp = (y[:, None] <= T).mean(0)
    # binomial SE <= 0.0008 at n = 4e5: 5 SE
    assert np.abs(bridged.bridged_cdf(1.3, T) - emp).max() < 0.004
    h = 1e-5
    num = (bridged.bridged_cdf(1.3, T + h) - bridged.bridged_cdf(1.3, T - h)) / (2 * h)
    assert np.allclose(num, bridged.bridged_pdf(1.3, T), rtol=1e-6, atol=1e-8)
    for p in (0.05, 0.4, 0.6, 0.95):
        assert bridged.bridged_cdf(1.3, marginal_quantile("chi2", 1.3, p)) == pytest.approx(p, abs=1e-10)


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (0.3, 2.5), (4.0, 4.0), (0.05, 0.05)])
def test_bivariate_tends_to_chi2_2(a, b):
    g = bivariate_cdf_table("chi2", 1.9999, a, b, 1025)
    ref = bivariate_cdf_table("chi2", 2, a, b, 1025)
    assert np.abs(g - ref).max() < 5e-5


@pytest.mark.parametrize("rho", [0.3, 0.8, 0.97])
def test_bivariate_against_brute_force_monte_carlo(rho):
    lam, n = 0.35, 400_000
    rng = np.random.default_rng(int(rho * 100))
    x = rng.standard_normal((2, n))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((2, n))
    f0, fh = x[0] ** 2 + lam * x[1] ** 2, y[0] ** 2 + lam * y[1] ** 2
    a, b = marginal_quantile("chi2", 1 + lam, 0.6), marginal_quantile("chi2", 1 + lam, 0.85)
    table = bivariate_cdf_table("chi2", 1 + lam, a, b, 2049)
    u = np.linspace(-np.pi / 2, np.pi / 2, 2049)
    exact = np.interp(np.arcsin(rho), u, table)
    emp = np.mean((f0 <= a) & (fh <= b))
    assert exact == pytest.approx(emp, abs=0.004)  # binomial SE 0.0008


def test_exact_coverage_matches_simulated_volumes():
    m = build_model("lp-iso", f1="chi2", f1_dof=1.25, f2="chi2", f2_dof=3, levels=("upper", "lower"),
                    order=("active", "electrolyte", "pore"), length_scales_px=(5.0, 2.0),
                    volume_fractions={"pore": 0.45, "active": 0.4, "electrolyte": 0.15})
    exact = m.expected_coverage(12).detach().numpy()
    vols = [m.generate((96, 96, 96), seed=s) for s in (1, 2, 3)]
    for i, j in ((1, 1), (0, 1), (2, 2), (0, 2)):
        emp = []
        for r in range(0, 13, 3):
            vals = []
            for v in vols:
                a, b = v == i, v == j
                for ax in range(3):
                    sl = [slice(None)] * 3
                    s0, s1 = list(sl), list(sl)
                    s0[ax], s1[ax] = slice(0, 96 - r), slice(r, 96)
                    vals.append(0.5 * ((a[tuple(s0)] & b[tuple(s1)]).mean() + (b[tuple(s0)] & a[tuple(s1)]).mean()))
            emp.append(np.mean(vals))
        # 9 axis-volumes of 96^3 at length 5 px: sampling SD of C ~0.004
        assert np.abs(np.array(emp) - exact[i, j, ::3]).max() < 0.015, (i, j)


def test_model_file_round_trip_writes_version_3_only_when_needed(tmp_path):
    m = build_model("lp-cyl", f1="chi2", f1_dof=1.5, f2="gaussian", levels=("upper", "upper"),
                    volume_fractions={"pore": 0.3, "active": 0.5, "electrolyte": 0.2})
    p = tmp_path / "m.json"
    save_model(m, p)
    d = json.loads(p.read_text())
    assert d["version"] == 3 and d["fields"]["f1"]["dof"] == 1.5
    back = load_model(p)
    assert back.fields["f1"].dof == 1.5 and back.fields["f1"].n_components == 2
    assert np.array_equal(back.generate((24,) * 3, seed=4), m.generate((24,) * 3, seed=4))
    # a version-2 reader's file: integer dofs stay version 2
    assert model_to_dict(build_model("lp-iso"))["version"] == 2
    d["version"] = 2
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="version 3"):
        load_model(p)


@pytest.mark.parametrize("dof", [0.5, 2.5, 7, True, float("nan"), "2"])
def test_one_dof_rule_refuses_what_it_cannot_build(dof):
    with pytest.raises(ValueError, match="integer 1..6, or a number between 1 and 2"):
        bridged.checked_dof("chi2", dof)
    assert bridged.checked_dof("chi2", 2.0) == 2 and isinstance(bridged.checked_dof("chi2", 2.0), int)


def test_what_if_sets_the_bridge_weight():
    m = build_model("lp-iso", f1="chi2", f1_dof=1, levels=("upper", "upper"), f2="gaussian")
    m2 = m.with_updates({"f1.dof": 1.4})
    assert m2.fields["f1"].dof == pytest.approx(1.4) and m.fields["f1"].dof == 1
    assert "chi2(1+0.4)" in m2.structure.label
    assert m2.with_updates({"f1.dof": 3.0}).fields["f1"].dof == 3
