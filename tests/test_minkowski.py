"""2D Minkowski functionals: image estimator (oracles, known shapes, complements) and the exact
expectations of excursion sets and truncation rules (against simulated sections)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from napari_assb_twin.fields.covariance import ParametricCovariance, SpectralCovariance
from napari_assb_twin.fields.simulate import chi2_fields, gaussian_fields, make_generator
from napari_assb_twin.model.excursion import build_model
from napari_assb_twin.stats.minkowski import (
    chi_over_p2,
    data_minkowski,
    expected_minkowski,
    minkowski_correction,
    minkowski_densities,
    minkowski_loss,
    minkowski_score,
    minkowski_torch,
    model_rule,
    rule_minkowski,
    simulated_minkowski,
    spectral_moments,
)


# -- image estimator ---------------------------------------------------------------------------------
def _euler_oracle(x: np.ndarray, connectivity: int) -> int:
    """Components minus holes of a binary image padded with background (scipy labelling)."""
    pad = np.pad(x.astype(bool), 1)
    full, cross = np.ones((3, 3), bool), ndimage.generate_binary_structure(2, 1)
    fg, bg = (full, cross) if connectivity == 8 else (cross, full)
    n_fg = ndimage.label(pad, structure=fg)[1]
    n_bg = ndimage.label(~pad, structure=bg)[1]
    return n_fg - (n_bg - 1)  # every background component but the outer one is a hole


def _perimeter_oracle(x: np.ndarray) -> float:
    """Discrete Crofton perimeter by explicit loops over all pixel pairs (4 directions)."""
    h, w = x.shape
    per_dir = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        trans = pairs = 0
        for i in range(h):
            for j in range(w):
                i2, j2 = i + dr, j + dc
                if 0 <= i2 < h and 0 <= j2 < w:
                    pairs += 1
                    trans += int(x[i, j] != x[i2, j2])
        per_dir.append(trans / pairs / math.hypot(dr, dc))
    return 0.5 * math.pi * float(np.mean(per_dir))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_euler_matches_component_count_on_tiny_images(connectivity):
    rng = np.random.default_rng(0)
    for _ in range(60):
        img = rng.integers(0, 3, size=(int(rng.integers(3, 8)), int(rng.integers(3, 8)))).astype(np.uint8)
        pad = np.pad(img, 1, constant_values=255)  # 255: a 4th "phase" outside the window
        vals = minkowski_torch(pad, n_phases=3, connectivity=connectivity).numpy()
        n_quads = (pad.shape[0] - 1) * (pad.shape[1] - 1)
        for p in range(3):
            assert round(vals[p, 2] * n_quads, 9) == _euler_oracle(img == p, connectivity)


def test_perimeter_and_area_match_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(20):
        img = rng.integers(0, 3, size=(6, 9)).astype(np.uint8)
        vals = minkowski_torch(img).numpy()
        for p in range(3):
            assert vals[p, 0] == pytest.approx((img == p).mean(), abs=1e-12)
            assert vals[p, 1] == pytest.approx(_perimeter_oracle(img == p), rel=1e-12)


def test_periodic_estimator_matches_torus_loops():
    """Periodic mode: every pair and 2 x 2 quad of the torus once (explicit modulo loops)."""
    rng = np.random.default_rng(4)
    for _ in range(5):
        img = rng.integers(0, 3, size=(5, 7)).astype(np.uint8)
        h, w = img.shape
        v = minkowski_torch(img, periodic=True).numpy()
        for p in range(3):
            x = img == p
            per_dir = [np.mean([x[i, j] != x[(i + dr) % h, (j + dc) % w] for i in range(h) for j in range(w)]) / math.hypot(dr, dc)
                       for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1))]
            assert v[p, 1] == pytest.approx(0.5 * math.pi * np.mean(per_dir), rel=1e-12)
            n1 = n3 = nd = 0
            for i in range(h):
                for j in range(w):
                    a, b, c, d = x[i, j], x[(i + 1) % h, j], x[i, (j + 1) % w], x[(i + 1) % h, (j + 1) % w]
                    k = int(a) + int(b) + int(c) + int(d)
                    n1 += k == 1
                    n3 += k == 3
                    nd += k == 2 and a == d
            assert v[p, 2] == pytest.approx((n1 - n3 - 2 * nd) / 4 / (h * w), abs=1e-14)


def _disc(n: int, r: float, r_in: float = 0.0) -> np.ndarray:
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    d = np.hypot(y, x)
    return ((d <= r) & (d >= r_in)).astype(np.uint8)


def test_known_shapes():
    n = 160
    # disc: EC 1 in both adjacencies, length 2 pi R within 2 % (4-direction Crofton), area pi R^2
    disc = _disc(n, 50.0)
    for conn in (4, 8):
        v = minkowski_torch(disc, n_phases=2, connectivity=conn).numpy()[1]
        assert v[2] * (n - 1) ** 2 == pytest.approx(1.0, abs=1e-9)
    v = minkowski_torch(disc, n_phases=2).numpy()[1]
    assert v[0] * n * n == pytest.approx(math.pi * 50**2, rel=0.01)
    assert v[1] * (n - 1) * n == pytest.approx(2 * math.pi * 50, rel=0.02)
    # ring: EC 0; its two circles' length
    ring = _disc(n, 60.0, 30.0)
    v = minkowski_torch(ring, n_phases=2).numpy()[1]
    assert abs(v[2]) < 1e-12
    assert v[1] * (n - 1) * n == pytest.approx(2 * math.pi * 90, rel=0.03)
    # two discs: EC 2; disc with two holes: EC -1
    two = np.maximum(np.roll(_disc(n, 20.0), -30, axis=1), np.roll(_disc(n, 20.0), 30, axis=1))
    assert minkowski_torch(two, n_phases=2).numpy()[1, 2] * (n - 1) ** 2 == pytest.approx(2.0)
    holes = _disc(n, 70.0) - np.roll(_disc(n, 10.0), 30, 1) - np.roll(_disc(n, 10.0), -30, 1)
    assert minkowski_torch(holes.astype(np.uint8), n_phases=2).numpy()[1, 2] * (n - 1) ** 2 == pytest.approx(-1.0)
    # axis-aligned square of side a: the 4-direction Crofton value (pi / 8)(4 a + 8 a / sqrt 2) = 3.79 a
    a = 60
    sq = np.zeros((n, n), np.uint8)
    sq[50:50 + a, 40:40 + a] = 1
    v = minkowski_torch(sq, n_phases=2).numpy()[1]
    # every direction: 2 transitions per lattice line crossing the square, densities per pair
    expect = 0.5 * math.pi * np.mean([2 * a / (n * (n - 1)), 2 * a / (n * (n - 1)),
                                      2 * (2 * a - 1) / ((n - 1) ** 2 * math.sqrt(2)),
                                      2 * (2 * a - 1) / ((n - 1) ** 2 * math.sqrt(2))])
    assert v[1] == pytest.approx(expect, rel=1e-12)
    assert v[1] * n * n / a == pytest.approx(math.pi * (1 + math.sqrt(2)) / 2, rel=0.03)


def test_complement_relations_periodic():
    rng = np.random.default_rng(2)
    img = (ndimage.uniform_filter(rng.random((64, 80)), 5, mode="wrap") * 3).astype(np.uint8) % 3
    v8 = minkowski_torch(img, periodic=True, connectivity=8).numpy()
    for p in range(3):
        comp = (img != p).astype(np.uint8)
        c4 = minkowski_torch(comp, n_phases=2, periodic=True, connectivity=4).numpy()[1]
        assert v8[p, 2] == pytest.approx(-c4[2], abs=1e-15)  # chi_8(X) = -chi_4(X^c) on the torus
        assert v8[p, 1] == pytest.approx(c4[1], abs=1e-15)  # one boundary
        assert v8[p, 0] == pytest.approx(1 - c4[0], abs=1e-15)
    assert v8[:, 0].sum() == pytest.approx(1.0)


def test_batch_numpy_and_physical_units():
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 3, (4, 20, 24)).astype(np.uint8)
    vb = minkowski_torch(torch.from_numpy(batch)).numpy()
    for b in range(4):
        np.testing.assert_allclose(vb[b], minkowski_densities(batch[b]).values)
    res = minkowski_densities(batch[0], voxel_size=0.5, unit="um")
    np.testing.assert_allclose(res.physical()[:, 1], res.perimeter / 0.5)
    np.testing.assert_allclose(res.physical()[:, 2], res.euler / 0.25)
    np.testing.assert_allclose(res.chi_p2, res.euler / res.perimeter**2)
    assert res.table()[0]["phase"] == "pore"


def test_bad_input_messages():
    with pytest.raises(ValueError, match="2D phase map"):
        minkowski_torch(np.zeros(5, np.uint8))
    with pytest.raises(TypeError, match="integer phase map"):
        minkowski_torch(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="connectivity"):
        minkowski_torch(np.zeros((5, 5), np.uint8), connectivity=6)
    with pytest.raises(ValueError, match="voxel_size"):
        minkowski_densities(np.zeros((5, 5), np.uint8), voxel_size=0)


# -- exact expectations against simulated sections ---------------------------------------------------
L_SIM, N_SIM, B_SIM = 10.0, 256, 16


@functools.lru_cache(maxsize=4)
def _default_field(kind: str, dof: int, seed: int) -> torch.Tensor:
    """Fields of the default covariance, shared by the upper / lower cases of one field type."""
    return _field(kind, dof, seed, ParametricCovariance("gaussian", L_SIM))


def _field(kind: str, dof: int, seed: int, cov=None, axes=(1, 2)) -> torch.Tensor:
    if cov is None:
        return _default_field(kind, dof, seed)
    g = make_generator(seed)
    with torch.no_grad():
        if kind == "gaussian":
            return gaussian_fields(cov, (N_SIM, N_SIM), 1, B_SIM, g, axes)[:, 0]
        return chi2_fields(cov, (N_SIM, N_SIM), dof, B_SIM, g, axes)


def _cdf(kind: str, dof: int, f: torch.Tensor) -> np.ndarray:
    x = f.numpy().astype(np.float64)
    return stats.norm.cdf(x) if kind == "gaussian" else stats.chi2.cdf(x, dof)


def _apply_rule(u1, u2, e1, e2, table) -> torch.Tensor:
    i = np.clip(np.searchsorted(e1, u1, side="left") - 1, 0, len(e1) - 2)
    j = np.clip(np.searchsorted(e2, u2, side="left") - 1, 0, len(e2) - 2)
    return torch.from_numpy(np.asarray(table, dtype=np.uint8)[i, j])


def _check(sim: torch.Tensor, exact: torch.Tensor, phases=(0, 1, 2)) -> None:
    """Tolerance: 4 standard errors of the batch mean (measured) + the lattice estimator's bias.

    The bias allowance was measured on sections at length scale 10 px: perimeter 4 % (the
    4-direction Crofton count misses ~1 px of length at every corner where two level curves cross),
    Euler 1.5 % of L_A^2 (chi / P^2 to within 0.015; saddles and thin wedges the lattice resolves
    differently from the continuum).
    """
    mean, se = sim.mean(0), sim.std(0) / math.sqrt(sim.shape[0])
    ex = exact.detach()
    for p in phases:
        assert abs(mean[p, 0] - ex[p, 0]) <= 4 * se[p, 0] + 1e-3, (p, "area", mean[p], ex[p])
        assert abs(mean[p, 1] - ex[p, 1]) <= 4 * se[p, 1] + 0.04 * ex[p, 1], (p, "perimeter", mean[p], ex[p])
        assert abs(mean[p, 2] - ex[p, 2]) <= 4 * se[p, 2] + 0.015 * ex[p, 1] ** 2, (p, "euler", mean[p], ex[p])


LAM = torch.tensor([2 / L_SIM**2, 2 / L_SIM**2], dtype=torch.float64)


@pytest.mark.parametrize(
    "kind,dof,level",
    [("gaussian", 1, "upper"), ("gaussian", 1, "lower"), ("chi2", 1, "upper"), ("chi2", 1, "lower"),
     ("chi2", 2, "upper"), ("chi2", 2, "lower"), ("chi2", 3, "upper"), ("chi2", 3, "lower")],
)
def test_single_field_level_sets(kind, dof, level):
    f = _field(kind, dof, seed=11 + dof)
    u = _cdf(kind, dof, f)
    for vf in (0.25, 0.5):
        e1 = (0.0, vf, 1.0) if level == "lower" else (0.0, 1.0 - vf, 1.0)
        table = ((1,), (0,)) if level == "lower" else ((0,), (1,))
        lab = _apply_rule(u, np.zeros_like(u), e1, (0.0, 1.0), table)
        exact = rule_minkowski(e1, (0.0, 1.0), table, [(kind, dof), ("gaussian", 1)], [LAM, LAM], n_phases=2)
        _check(minkowski_torch(lab, n_phases=2, periodic=True), exact, phases=(1,))


@pytest.mark.parametrize("kind,dof", [("gaussian", 1), ("chi2", 2)])
def test_interval_sets(kind, dof):
    f = _field(kind, dof, seed=21)
    u = _cdf(kind, dof, f)
    e1 = (0.0, 0.3, 0.7, 1.0)
    table = ((0,), (1,), (0,))  # shell {a < F <= b}
    lab = _apply_rule(u, np.zeros_like(u), e1, (0.0, 1.0), table)
    exact = rule_minkowski(e1, (0.0, 1.0), table, [(kind, dof), ("gaussian", 1)], [LAM, LAM], n_phases=2)
    assert float(exact[1, 2]) < 0  # a shell is full of holes
    _check(minkowski_torch(lab, n_phases=2, periodic=True), exact, phases=(0, 1))


def test_two_field_intersection_and_kinematic_formula():
    """Intersection of independent level sets of fields with different length scales: the
    kinematic formula chi_X A_Y + A_X chi_Y + L_X L_Y / (2 pi) and the crossing-corner rule."""
    cov2 = ParametricCovariance("gaussian", 7.0)
    lam2 = torch.tensor([2 / 49.0, 2 / 49.0], dtype=torch.float64)
    f1 = _field("gaussian", 1, seed=31)
    f2 = _field("chi2", 2, seed=32, cov=cov2)
    u1, u2 = _cdf("gaussian", 1, f1), _cdf("chi2", 2, f2)
    e1, e2 = (0.0, 0.45, 1.0), (0.0, 0.4, 1.0)
    table = ((0, 0), (2, 1))  # 1 = {F1 > t1} and {F2 > t2}; 2 = {F1 > t1} and {F2 <= t2}
    exact = rule_minkowski(e1, e2, table, [("gaussian", 1), ("chi2", 2)], [LAM, lam2])
    _check(minkowski_torch(_apply_rule(u1, u2, e1, e2, table), periodic=True), exact)
    # the closed form is the kinematic formula for isotropic fields
    x = rule_minkowski(e1, (0.0, 1.0), ((0,), (1,)), [("gaussian", 1), ("gaussian", 1)], [LAM, LAM], 2)[1]
    y = rule_minkowski(e2, (0.0, 1.0), ((0,), (1,)), [("chi2", 2), ("gaussian", 1)], [lam2, LAM], 2)[1]
    kin = x[2] * y[0] + x[0] * y[2] + x[1] * y[1] / (2 * math.pi)
    assert float(exact[1, 2]) == pytest.approx(float(kin), rel=1e-9)
    assert float(exact[1, 1]) == pytest.approx(float(x[1] * y[0] + x[0] * y[1]), rel=1e-9)


def test_intersection_of_perpendicular_anisotropic_fields():
    """Axial-type sections where F1 is long along rows and F2 along columns: the crossing density
    E|G1 x G2| differs from the isotropic (2 / pi) E|G1| E|G2| by 29 %, the simulation must see it."""
    cov1 = ParametricCovariance("gaussian", (18.0, 6.0), "cylindrical", axis=0)
    cov2 = ParametricCovariance("gaussian", (18.0, 6.0), "cylindrical", axis=2)
    lam1 = spectral_moments(cov1, "axial", axis=0).detach()
    lam2 = torch.stack(list(reversed(list(lam1))))
    np.testing.assert_allclose(lam1.numpy(), [2 / 324, 2 / 36])
    f1 = _field("gaussian", 1, seed=51, cov=cov1, axes=(0, 2))
    f2 = _field("gaussian", 1, seed=52, cov=cov2, axes=(0, 2))
    u1, u2 = _cdf("gaussian", 1, f1), _cdf("gaussian", 1, f2)
    e1, e2 = (0.0, 0.5, 1.0), (0.0, 0.5, 1.0)
    table = ((0, 0), (0, 1))
    exact = rule_minkowski(e1, e2, table, [("gaussian", 1)] * 2, [lam1, lam2], n_phases=2)
    sim = minkowski_torch(_apply_rule(u1, u2, e1, e2, table), n_phases=2, periodic=True)
    _check(sim, exact, phases=(1,))
    # at the median both single-field EC densities vanish: chi is the corner term alone, and the
    # isotropic formula would be 29 % off, many standard errors away
    lx = rule_minkowski(e1, (0.0, 1.0), ((0,), (1,)), [("gaussian", 1)] * 2, [lam1, lam1], 2)[1, 1]
    naive = lx * lx / (2 * math.pi)  # isotropic kinematic formula, L_X = L_Y by symmetry
    mean, se = sim.mean(0)[1, 2], sim.std(0)[1, 2] / math.sqrt(sim.shape[0])
    assert float(exact[1, 2]) / float(naive) == pytest.approx(1.29, abs=0.01)
    assert abs(float(mean) - float(naive)) > 4 * float(se)


def test_union_of_cells_with_reflex_corner():
    """A phase of three cells around a grid vertex (a reflex corner, -N/4) and a checkerboard-free
    3 x 2 rule; each phase against simulation."""
    f1, f2 = _field("gaussian", 1, seed=41), _field("gaussian", 1, seed=42)
    u1, u2 = _cdf("gaussian", 1, f1), _cdf("gaussian", 1, f2)
    e1, e2 = (0.0, 0.3, 0.6, 1.0), (0.0, 0.5, 1.0)
    table = ((1, 1), (0, 2), (0, 0))
    exact = rule_minkowski(e1, e2, table, [("gaussian", 1)] * 2, [LAM, LAM])
    _check(minkowski_torch(_apply_rule(u1, u2, e1, e2, table), periodic=True), exact)


def test_todays_construction_three_phases():
    model = build_model("lp-iso", f1="chi2", f1_dof=3, f2="gaussian", length_scales_px=(10.0, 7.0),
                        volume_fractions={"pore": 0.3, "active": 0.45, "electrolyte": 0.25})
    e1, e2, table = model_rule(model)
    assert np.asarray(table).shape == (len(e1) - 1, len(e2) - 1)
    exact = expected_minkowski(model)
    np.testing.assert_allclose(exact[:, 0].detach().numpy(), [0.3, 0.45, 0.25], atol=1e-12)
    with torch.no_grad():
        secs = model.sample_sections((N_SIM, N_SIM), "inplane", batch=B_SIM, seed=5)
    _check(minkowski_torch(secs, periodic=True), exact)


@pytest.mark.parametrize("rule,params", [("coating", {"coverage": 0.6}), ("interval", {"offset": 0.5}),
                                         ("adhering", {"coverage": 0.7, "adhesion": 0.5})])
def test_rule_families_of_the_model(rule, params):
    """The model's own rules (model.truncation): coating (a reflex corner for the rest phase), an
    interval band and the adhering rule (reflex corners for the coat and the rest), every phase against
    its simulated sections."""
    model = build_model("lp-iso", f1="gaussian", f2="gaussian", rule=rule, rule_params=params,
                        length_scales_px=(10.0, 8.0), order=("active", "electrolyte", "pore"),
                        volume_fractions={"pore": 0.35, "active": 0.45, "electrolyte": 0.2})
    exact = expected_minkowski(model)
    np.testing.assert_allclose(exact[:, 0].detach().numpy(), [0.35, 0.45, 0.2], atol=1e-9)
    with torch.no_grad():
        secs = model.sample_sections((N_SIM, N_SIM), "inplane", batch=B_SIM, seed=8)
    _check(minkowski_torch(secs, periodic=True), exact)


def test_axial_section_of_cylindrical_model():
    """Anisotropic section: EC scales with sqrt(det Lambda), length with the elliptic mean."""
    model = build_model("lp-cyl", f1="gaussian", f2="chi2", f2_dof=2, length_scales_px=((16.0, 8.0), (10.0, 6.0)),
                        volume_fractions={"pore": 0.3, "active": 0.4, "electrolyte": 0.3})
    lam = spectral_moments(model.fields["f1"].covariance, "axial")
    np.testing.assert_allclose(lam.detach().numpy(), [2 / 256, 2 / 64], rtol=1e-6)
    exact = expected_minkowski(model, "axial")
    with torch.no_grad():
        secs = model.sample_sections((N_SIM, N_SIM), "axial", batch=B_SIM, seed=6)
    _check(minkowski_torch(secs, periodic=True), exact)
    # in-plane sections of the same model are isotropic with the in-plane lengths
    inpl = spectral_moments(model.fields["f1"].covariance, "inplane")
    np.testing.assert_allclose(inpl.detach().numpy(), [2 / 64, 2 / 64], rtol=1e-6)


# -- spectral moments, gradients, corrections ---------------------------------------------------------
def test_spectral_moments_analytic_grid_and_spectral():
    cov = ParametricCovariance("gaussian", 8.0)
    ana = spectral_moments(cov, method="analytic")
    grid = spectral_moments(cov, method="grid")
    np.testing.assert_allclose(grid.detach().numpy(), ana.detach().numpy(), rtol=1e-3)
    mat = ParametricCovariance("matern", 8.0, nu=2.5)
    # matern: -rho''(0) = nu / (nu - 1) / l^2; the grid sum resolves it within a few %
    assert float(spectral_moments(mat)[0].detach()) == pytest.approx(2.5 / 1.5 / 64)
    assert float(spectral_moments(mat, method="grid")[0].detach()) == pytest.approx(2.5 / 1.5 / 64, rel=0.05)
    with pytest.raises(ValueError, match="no finite second spectral moment"):
        spectral_moments(ParametricCovariance("exponential", 8.0), method="analytic")
    assert math.isfinite(float(spectral_moments(ParametricCovariance("exponential", 8.0))[0].detach()))  # auto -> grid
    hp = SpectralCovariance.from_covariance(cov)
    with pytest.raises(ValueError, match="spectral"):
        spectral_moments(hp, method="analytic")
    np.testing.assert_allclose(spectral_moments(hp).detach().numpy(), ana.detach().numpy(), rtol=0.05)


def test_gradient_matches_finite_differences():
    model = build_model("lp-iso", length_scales_px=(8.0, 5.0))
    cov = model.fields["f2"].covariance
    out = expected_minkowski(model)
    target = (out[:, 1] ** 2).sum() + 1e3 * out[:, 2].sum()
    (g,) = torch.autograd.grad(target, cov.log_length)
    h = 1e-3
    vals = []
    for s in (h, -h):
        with torch.no_grad():
            cov.log_length += s
            o = expected_minkowski(model)
            vals.append(float((o[:, 1] ** 2).sum() + 1e3 * o[:, 2].sum()))
            cov.log_length -= s
    assert float(g[0]) == pytest.approx((vals[0] - vals[1]) / (2 * h), rel=1e-3)
    assert float(g[0]) != 0.0


def test_correction_keeps_gradient_and_hits_simulation():
    model = build_model("lp-iso", family="exponential", length_scales_px=(8.0, 5.0))
    corr = minkowski_correction(model, size=128, batch=4, seed=3)
    corrected = expected_minkowski(model, correction=corr)
    sim, _ = simulated_minkowski(model, size=128, batch=4, seed=3)
    np.testing.assert_allclose(corrected.detach().numpy(), sim.numpy(), rtol=1e-9, atol=1e-12)
    plain = expected_minkowski(model)
    (g1,) = torch.autograd.grad(corrected[:, 1].sum(), model.fields["f1"].covariance.log_length)
    (g2,) = torch.autograd.grad(plain[:, 1].sum(), model.fields["f1"].covariance.log_length)
    assert float(g1[0]) == pytest.approx(float(g2[0])) and float(g1[0]) != 0


# -- data side and loss -------------------------------------------------------------------------------
def test_data_statistics_and_loss():
    from napari_assb_twin.calibrate.data import CalibrationData

    model = build_model("lp-iso", f1="gaussian", length_scales_px=(8.0, 5.0),
                        volume_fractions={"pore": 0.3, "active": 0.4, "electrolyte": 0.3})
    with torch.no_grad():
        secs = model.sample_sections((256, 256), "inplane", batch=2, seed=9).numpy()
    data = CalibrationData.from_arrays(list(secs))
    stats_ = data_minkowski(data, windows=4)
    t = stats_["inplane"]
    assert t.n_windows == 32 and t.weight == 2 * 256 * 256
    np.testing.assert_allclose(t.values[:, 0], [data.volume_fractions[n] for n in ("pore", "active", "electrolyte")], atol=1e-12)
    # the windows' standard error is of the size of the spread between the two sections
    assert np.all(t.se[:, 1:] > 0)
    right = minkowski_loss({"inplane": expected_minkowski(model)}, stats_)
    wrong_model = model.with_updates({"f1.length_scale": 16.0})
    wrong = minkowski_loss({"inplane": expected_minkowski(wrong_model)}, stats_)
    assert float(right.detach()) < 10.0 < float(wrong.detach())
    # differentiable and plane-keyed
    e = expected_minkowski(wrong_model)
    loss = minkowski_loss({"inplane": e, "axial": e}, stats_)
    (g,) = torch.autograd.grad(loss, wrong_model.fields["f1"].covariance.log_length)
    assert float(g[0]) > 0  # a shorter length scale lowers the loss
    # held-out score for selection (simulation-corrected, no gradient): the true model wins
    assert minkowski_score(data, model, size=128, batch=4) < minkowski_score(data, wrong_model, size=128, batch=4)
    with pytest.raises(ValueError, match="no plane"):
        minkowski_loss({"axial": e}, stats_)
    with pytest.raises(ValueError, match="unknown functional"):
        minkowski_loss({"inplane": e}, stats_, {"volume": 1.0})


def test_chi_over_p2_of_the_gaussian_level_set():
    """chi / P^2 of a Gaussian upper level set is 4 u exp(u^2 / 2) / (2 pi)^(3/2), free of lambda."""
    u = 0.7
    for lam in (0.01, 0.1):
        lt = torch.tensor([lam, lam], dtype=torch.float64)
        v = rule_minkowski((0.0, float(stats.norm.cdf(u)), 1.0), (0.0, 1.0), ((0,), (1,)),
                           [("gaussian", 1)] * 2, [lt, lt], 2)[1]
        assert float(chi_over_p2(v)) == pytest.approx(4 * u * math.exp(u * u / 2) / (2 * math.pi) ** 1.5)
