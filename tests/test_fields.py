"""Random fields: marginal moments, correlation functions, spectral normalisation, HP knots."""

import math

import numpy as np
import pytest
import torch

from napari_assb_twin.fields import FAMILIES, ParametricCovariance, SpectralCovariance, gaussian_field, spectral_sqrt
from napari_assb_twin.fields.simulate import chi2_fields, make_generator

FAMILY_CASES = [("gaussian", {}), ("exponential", {}), ("matern", {"nu": 1.5}), ("matern", {"nu": 0.8}),
                ("damped_wave", {"period_ratio": 4.0})]


def test_registry_has_the_required_families():
    assert {"gaussian", "exponential", "matern", "damped_wave"} <= set(FAMILIES)


@pytest.mark.parametrize("family,extras", FAMILY_CASES)
def test_discrete_spectrum_gives_unit_variance_exactly(family, extras):
    cov = ParametricCovariance(family, 5.0, **extras)
    with torch.no_grad():
        s = spectral_sqrt(cov, (48, 40, 36))
    # variance of the discrete field = mean of the spectral density (clipping at 1e-12 adds < 1e-11)
    assert float((s.double() ** 2).mean()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family,extras", FAMILY_CASES)
def test_field_moments_and_correlation_match_family_at_128(family, extras):
    """One 128^3 field: mean 0 +- 0.05, variance 1 +- 0.05, empirical correlation within 0.03 of rho."""
    length = 4.0
    cov = ParametricCovariance(family, length, **extras)
    with torch.no_grad():
        x = gaussian_field(cov, (128, 128, 128), generator=make_generator(11))[0].double()
    assert abs(float(x.mean())) < 0.05
    assert float(x.var()) == pytest.approx(1.0, abs=0.05)
    x = x - x.mean()
    for lag in (1, 2, 4, 8, 12):
        emp = np.mean([float((x * torch.roll(x, lag, a)).mean()) for a in range(3)]) / float(x.var())
        with torch.no_grad():
            theory = float(cov.correlation({0: torch.tensor(float(lag))}))
        assert emp == pytest.approx(theory, abs=0.03), (family, lag, emp, theory)


def test_chi2_marginal_mean_and_variance():
    """chi2(k) field: mean k and variance 2k (within 5 %)."""
    cov = ParametricCovariance("gaussian", 3.0)
    for k in (1, 2, 3, 5):
        with torch.no_grad():
            x = chi2_fields(cov, (96, 96, 96), k, generator=make_generator(k))[0].double()
        assert float(x.mean()) == pytest.approx(k, rel=0.05)
        assert float(x.var()) == pytest.approx(2 * k, rel=0.08)


def test_cylindrical_correlation_follows_each_length_scale():
    cov = ParametricCovariance("gaussian", {"axial": 8.0, "inplane": 3.0}, "cylindrical", axis=0)
    with torch.no_grad():
        x = gaussian_field(cov, (128, 96, 96), generator=make_generator(3))[0].double()
    x = (x - x.mean()) / x.std()
    for axis, length in ((0, 8.0), (1, 3.0), (2, 3.0)):
        emp = float((x * torch.roll(x, int(length), axis)).mean())
        assert emp == pytest.approx(math.exp(-1), abs=0.04), (axis, emp)


def test_matern_general_nu_gradient_is_exact():
    from napari_assb_twin.fields.correlation import _ScaledBesselK

    x = torch.linspace(0.2, 4.0, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _ScaledBesselK.apply(t, 0.8), (x,))


def test_matern_half_integer_closed_forms_agree_with_bessel():
    r = torch.linspace(0.0, 5.0, 51, dtype=torch.float64)
    rho = FAMILIES["matern"].rho
    for nu in (0.5, 1.5, 2.5):
        close = rho(r, nu=nu)
        general = rho(r, nu=nu + 1e-9)
        assert torch.allclose(close, general, atol=1e-6)


def test_hp_spectral_knots_reproduce_parametric_correlation():
    for aniso, ls in (("isotropic", 4.0), ("cylindrical", (6.0, 3.0))):
        cov = ParametricCovariance("gaussian", ls, aniso)
        hp = SpectralCovariance.from_covariance(cov)
        with torch.no_grad():
            for lags in ({0: torch.tensor(3.0)}, {1: torch.tensor(3.0)}, {0: torch.tensor(2.0), 2: torch.tensor(2.0)}):
                assert float(hp.correlation(lags)) == pytest.approx(float(cov.correlation(lags)), abs=0.02)


def test_hp_correlation_is_positive_definite_and_unit_at_zero():
    hp = SpectralCovariance(np.geomspace(1 / 128, 0.5, 16), np.random.default_rng(0).uniform(0.1, 10, 16))
    with torch.no_grad():
        assert float(hp.correlation({0: torch.tensor(0.0)})) == pytest.approx(1.0, abs=1e-5)
        s = spectral_sqrt(hp, (64, 64))
    assert torch.isfinite(s).all()


def test_gradients_flow_to_every_trainable_parameter():
    for cov in (ParametricCovariance("damped_wave", 4.0), ParametricCovariance("matern", (4.0, 2.0), "cylindrical", nu=1.2),
                SpectralCovariance.from_covariance(ParametricCovariance("exponential", 3.0))):
        x = gaussian_field(cov, (32, 32), generator=make_generator(0))
        (x[0, :8, :8] ** 2).sum().backward()
        for name, p in cov.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("bad", [dict(family="nope", length_scale=1.0), dict(family="gaussian", length_scale=-1.0),
                                 dict(family="gaussian", length_scale=1.0, anisotropy="weird"),
                                 dict(family="matern", length_scale=1.0, nu=-2.0),
                                 dict(family="gaussian", length_scale=1.0, period_ratio=3.0),
                                 dict(family="gaussian", length_scale=(1.0, 2.0, 3.0), anisotropy="cylindrical")])
def test_bad_covariances_are_rejected(bad):
    with pytest.raises(ValueError):
        ParametricCovariance(**bad)


def test_same_seed_same_field_different_seed_different():
    cov = ParametricCovariance("gaussian", 3.0)
    with torch.no_grad():
        a = gaussian_field(cov, (32, 32, 32), generator=make_generator(5))
        b = gaussian_field(cov, (32, 32, 32), generator=make_generator(5))
        c = gaussian_field(cov, (32, 32, 32), generator=make_generator(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
