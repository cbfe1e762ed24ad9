"""Calibration from 3D volumes (issue 18): a volume's directional C_ij as targets, clear refusals of
mismatched inputs, the 3D connectivity / transport score of model selection, the CLI on a 3D file."""

from __future__ import annotations

import json
from dataclasses import replace
import math

import numpy as np
import pytest

from napari_assb_twin.calibrate import CalibrationData
from napari_assb_twin.calibrate.selection import Candidate, select_model
from napari_assb_twin.calibrate.volume_score import (
    TAU_CAP,
    VolumeTargets,
    crop_corners,
    iter_volume_score,
    volume_statistics,
)
from napari_assb_twin.jobs import run_job
from napari_assb_twin.model import build_model
from napari_assb_twin.phasemap import PhaseMap
from napari_assb_twin.stats.coverage import coverage

VF = {"pore": 0.35, "active": 0.45, "electrolyte": 0.20}
#: two structures whose C_ij are near-identical at the same fractions (issue 12) but whose active
#: phase connects very differently in 3D: chi2(1) upper level sets (blobs around zeros of one
#: Gaussian, poorly connected) and chi2(3) lower ones (a connected network)
CHI1_UPPER = Candidate(order=("active", "pore", "electrolyte"), f1="chi2", f1_dof=1, level1="upper")
CHI3_LOWER = Candidate(order=("active", "pore", "electrolyte"), f1="chi2", f1_dof=3, level1="lower")


def _model(cand: Candidate, lengths=(5.0, 3.0), variant: str = "lp-iso"):
    return build_model(structure=cand.structure(variant), length_scales_px=lengths, volume_fractions=VF)


@pytest.fixture(scope="module")
def chi1_volume() -> np.ndarray:
    return _model(CHI1_UPPER).generate((96, 96, 96), seed=5)


def test_volume_targets_are_its_directional_cij_and_sections_feed_the_2d_statistics(chi1_volume):
    """Oracle: the coverage targets of a volume are its minus-sampling C_ij along axis 0 (axial) and
    the mean along axes 1, 2 (in-plane); the 2D statistics see sections cut in both planes; the
    volume fractions count every voxel."""
    data = CalibrationData([], [PhaseMap.from_labels(chi1_volume, source="twin")])
    t = data.coverage_targets(12)
    ref = coverage(chi1_volume, 12, periodic=False, radial=False).directional
    assert set(t) == {("axial", "axial"), ("inplane", "inplane")}
    np.testing.assert_allclose(t[("axial", "axial")][0], ref[0], atol=1e-6)
    np.testing.assert_allclose(t[("inplane", "inplane")][0], 0.5 * (ref[1] + ref[2]), atol=1e-6)
    assert data.planes == ("inplane", "axial") and len(data.sections) == 16
    fr = np.bincount(chi1_volume.ravel(), minlength=3) / chi1_volume.size
    assert [data.volume_fractions[k] for k in ("pore", "active", "electrolyte")] == pytest.approx(fr.tolist())
    assert "1 volume(s) 96x96x96" in data.describe()


@pytest.fixture(scope="module")
def axis1_volume() -> np.ndarray:
    """A twin cylindrical about axis 1: the active phase's field 2x longer along it than across."""
    m = build_model("lp-cyl", f1="chi2", f1_dof=1, levels=("upper", "lower"), axis=1,
                    length_scales_px=((8.0, 4.0), (3.0, 3.0)), volume_fractions=VF)
    return m.generate((64, 64, 64), seed=3)


def test_symmetry_axis_is_found_and_a_transposed_volume_gives_the_same_targets(axis1_volume, chi1_volume):
    """The distinct axis of a cylindrical twin is found (axes 0 and 2 agree: mismatch below half of
    axes 1 and 2's); an isotropic twin keeps axis 0. Oracle: the same volume transposed so that the
    symmetry axis is 0 gives identical targets, and the model calibrated on it gets that axis."""
    from napari_assb_twin.calibrate import CalibrationConfig, Calibrator
    from napari_assb_twin.calibrate.data import SYMMETRY_MARGIN, symmetry_axis

    axis, mismatch = symmetry_axis([axis1_volume])
    assert axis == 1 and mismatch[1] <= SYMMETRY_MARGIN * mismatch[0]
    assert symmetry_axis([chi1_volume])[0] == 0
    data = CalibrationData([], [PhaseMap.from_labels(axis1_volume, source="twin")])
    moved = CalibrationData([], [PhaseMap.from_labels(np.ascontiguousarray(np.moveaxis(axis1_volume, 1, 0)),
                                                      source="moved")])
    assert (data.axis, moved.axis) == (1, 0) and "symmetry axis 1" in data.describe()
    t, t0 = data.coverage_targets(10), moved.coverage_targets(10)
    for key in t0:
        np.testing.assert_allclose(t[key][0], t0[key][0], atol=1e-6)
    cal = Calibrator(data, CalibrationConfig(variant="lp-cyl", iterations=2, device="cpu"))
    assert cal.config.axis == 1 and cal.best_model.axis == 1
    # given sections are tagged relative to a stack's z: beside them a volume keeps axis 0
    sec = PhaseMap.from_labels(axis1_volume[:, 32, :], source="y32", plane="axial")
    assert CalibrationData([sec], [PhaseMap.from_labels(axis1_volume, source="twin")]).axis == 0
    with pytest.raises(ValueError, match="symmetry axis must be 0, 1 or 2"):
        CalibrationData([], [PhaseMap.from_labels(axis1_volume, source="twin")], axis=3)


def test_symmetry_axis_can_be_given_for_volumes_and_is_refused_for_sections(tmp_path, axis1_volume, capsys):
    from napari_assb_twin.cli import main
    from napari_assb_twin.io import write_label_tiff
    from napari_assb_twin.jobs import load_calibration_data

    vol, sec = tmp_path / "vol.tif", tmp_path / "sec.tif"
    write_label_tiff(vol, axis1_volume, voxel_size=1.0, unit="px")
    write_label_tiff(sec, axis1_volume[:, 32, :], voxel_size=1.0, unit="px")
    assert load_calibration_data([str(vol)]).axis == 1  # found
    assert load_calibration_data([str(vol)], axis=2).axis == 2  # given: the user knows the pressing direction
    with pytest.raises(ValueError, match="--symmetry-axis 2 is the axis of 3D volumes"):
        load_calibration_data([str(sec)], axis=2)
    assert main(["calibrate", str(sec), "--symmetry-axis", "1", "--out", str(tmp_path / "m.json")]) != 0
    assert "--plane axial" in capsys.readouterr().err


def test_sections_and_volume_together_pool_by_voxel_count(chi1_volume):
    sec = PhaseMap.from_labels(chi1_volume[:, 40, :], source="y40", plane="axial")
    vol = PhaseMap.from_labels(chi1_volume, source="twin")
    data = CalibrationData([sec], [vol])
    t = data.coverage_targets(10)
    c_sec = coverage(sec.data, 10, periodic=False, radial=False).directional
    c_vol = coverage(vol.data, 10, periodic=False, radial=False).directional
    w_s, w_v = sec.data.size, vol.data.size
    expect = (w_s * c_sec[0] + w_v * c_vol[0]) / (w_s + w_v)
    np.testing.assert_allclose(t[("axial", "axial")][0], expect, atol=1e-6)
    assert t[("axial", "axial")][1] == w_s + w_v
    assert data.given_sections == (data.sections[0],) and len(data.volumes) == 1


@pytest.mark.parametrize("case, match", [
    ("pixel", "different pixel sizes"),
    ("anisotropic", "not isotropic"),
    ("thin", "too thin"),
    ("two-phase", "electrolyte is missing"),
])
def test_mismatched_volumes_are_refused_with_a_clear_message(chi1_volume, case, match):
    vol = PhaseMap.from_labels(chi1_volume, voxel_size=0.5, unit="um", source="vol.tif")
    sec = PhaseMap.from_labels(chi1_volume[10], voxel_size=0.5, unit="um", source="sec.tif")
    if case == "pixel":
        sec = PhaseMap.from_labels(chi1_volume[10], voxel_size=0.25, unit="um", source="sec.tif")
    elif case == "anisotropic":
        vol = PhaseMap(chi1_volume, spacing=(1.0, 0.5, 0.5), unit="um", source="vol.tif")
    elif case == "thin":
        vol = PhaseMap.from_labels(chi1_volume[:8], voxel_size=0.5, unit="um", source="vol.tif")
    else:
        vol = PhaseMap.from_labels(np.minimum(chi1_volume, 1), voxel_size=0.5, unit="um", source="vol.tif")
    with pytest.raises(ValueError, match=match) as err:
        CalibrationData([sec], [vol])
    assert "vol.tif" in str(err.value) or case == "pixel"


def test_crop_corners_are_spread_and_inside():
    cs = crop_corners((256, 256, 128), 64, 8)
    assert len(cs) == 8 and len(set(cs)) == 8
    assert all(0 <= c[k] <= (256, 256, 128)[k] - 64 for c in cs for k in range(3))
    assert crop_corners((70, 70, 70), 64, 8) == [(3, 3, 3)]


def test_volume_statistics_oracle_on_a_straight_channel():
    """A straight channel along axis 0 has tau 1 along it and does not percolate across it."""
    vol = np.zeros((32, 32, 32), np.uint8)
    vol[:, 8:16, 8:16] = 1
    vol[:, 20:, :] = 2
    st = run_job(volume_statistics(vol))
    assert math.exp(st["log_tau"][1, 0]) == pytest.approx(1.0, abs=1e-3)
    assert math.exp(st["log_tau"][1, 1]) == pytest.approx(TAU_CAP) and st["percolating"][1, 1] == 0.0
    assert st["percolating"][1, 0] == pytest.approx(1.0)


def test_the_3d_score_tells_apart_structures_that_2d_coverage_cannot(chi1_volume):
    """The data's crop against twins of the true structure and of the chi2(3)-lower one: the truth's
    transport term (mean |log tau ratio|) is below 0.45 and at least 2x below the other's. One 64^3
    data crop and two 64^3 twins: log tau of these near-threshold phases scatters by 0.15-0.3 (SD)
    between realisations, while the wrong structure's active tau is 4-8x off (|log| 1.4-2)."""
    targets = run_job(VolumeTargets.iter_from_volumes([chi1_volume], crop=64))
    truth = run_job(iter_volume_score(targets, _model(CHI1_UPPER), n_twins=2))
    other = run_job(iter_volume_score(targets, _model(CHI3_LOWER), n_twins=2))
    assert truth["transport"] < 0.45, truth
    assert other["transport"] > 2 * truth["transport"], (truth["transport"], other["transport"])


@pytest.mark.slow
def test_selection_from_a_volume_recovers_the_connectivity_and_is_deterministic(chi1_volume):
    """From the 96^3 volume of the chi2(1)-upper structure, selection between it and the chi2(3)-lower
    structure (near-identical C_ij) picks the truth, and the 3D terms are in its table; twice the same."""
    data = CalibrationData([], [PhaseMap.from_labels(chi1_volume, source="twin")])
    kw = dict(candidates=[CHI3_LOWER, CHI1_UPPER], iterations=60, device="cpu", n_sections=4, seed=0)
    res = select_model(data, "lp-iso", **kw)
    assert res.best_candidate == CHI1_UPPER, res.table()
    assert "3D tau" in res.table() and all("transport" in r for r in res.rows)
    again = select_model(data, "lp-iso", **kw)
    assert [r["score"] for r in again.rows] == [r["score"] for r in res.rows]


def test_cli_calibrates_from_a_3d_file(tmp_path, chi1_volume):
    """`assb-twin calibrate volume.tif` (refused before issue 18) calibrates and records the volume."""
    from napari_assb_twin.cli import main
    from napari_assb_twin.io import write_label_tiff

    p = tmp_path / "vol.tif"
    write_label_tiff(p, chi1_volume, voxel_size=0.5, unit="um")
    out = tmp_path / "m.json"
    rc = main(["calibrate", str(p), "--model", "lp-cyl", "--iterations", "30", "--quiet", "--out", str(out)])
    assert rc == 0
    prov = json.loads(out.read_text())["provenance"]
    assert prov["data_planes"] == ["volume"] and prov["data_sources"] == ["vol.tif"]


# ------------------------------------------------------------------------------------------------
# fine 2D sections + a coarse 3D volume (issue 18, input (c))
# ------------------------------------------------------------------------------------------------
from napari_assb_twin.calibrate.coarse import (  # noqa: E402
    CoarseVolume,
    coarse_grain,
    model_coarse_coverage,
    parse_group_mapping,
)

ACTIVE_VS_REST = ((1,), (0, 2))


def test_group_mapping_merges_phases_and_refuses_gaps():
    labels, groups = parse_group_mapping("0:pore+electrolyte,1:active")
    assert labels == {0: 0, 1: 1} and groups == ((0, 2), (1,))
    with pytest.raises(ValueError, match="missing: electrolyte"):
        parse_group_mapping("0:pore,1:active")
    with pytest.raises(ValueError, match="in two labels: pore"):
        parse_group_mapping("0:pore+electrolyte,1:active+pore")
    with pytest.raises(ValueError, match="one label only"):
        parse_group_mapping("0:pore+electrolyte+active")


def test_coarse_grain_block_and_subsample_against_a_loop():
    """Brute force: each coarse voxel of the block operator is the group filling most of its block
    (ties to the lower group); subsampling keeps the first voxel of each block."""
    rng = np.random.default_rng(3)
    fine = rng.integers(0, 3, (12, 9, 6)).astype(np.uint8)
    got = coarse_grain(fine, ACTIVE_VS_REST, 3, "block")
    sub = coarse_grain(fine, ACTIVE_VS_REST, 3, "subsample")
    lut = {1: 0, 0: 1, 2: 1}
    for z in range(4):
        for y in range(3):
            for x in range(2):
                block = fine[3 * z:3 * z + 3, 3 * y:3 * y + 3, 3 * x:3 * x + 3]
                n = [sum(lut[int(v)] == g for v in block.ravel()) for g in (0, 1)]
                assert got[z, y, x] == (0 if n[0] >= n[1] else 1)
                assert sub[z, y, x] == lut[int(fine[3 * z, 3 * y, 3 * x])]


def test_model_coarse_coverage_is_exact_for_subsampled_twins():
    """The model's C_gh at coarse lags (sums of fine C_ij at k r) against the mean coarse C_gh of
    simulated twins subsampled at r = 2: within 0.006 at every lag (4 twins of 128^3; the SD of one
    coarse C estimate is about 0.004 at these lengths)."""
    model = _model(CHI1_UPPER, lengths=(6.0, 3.0))
    exact = model_coarse_coverage(model, ACTIVE_VS_REST, 2, 8)
    sims = []
    for seed in range(4):
        coarse = coarse_grain(model.generate((128, 128, 128), seed=seed), ACTIVE_VS_REST, 2, "subsample")
        sims.append(coverage(coarse, 8, periodic=False, radial=False, n_phases=2).directional)
    mean = np.mean(sims, axis=0)
    np.testing.assert_allclose(mean[0], exact["axial"].detach().numpy(), atol=0.006)
    np.testing.assert_allclose(0.5 * (mean[1] + mean[2]), exact["inplane"].detach().numpy(), atol=0.006)


def _coarse_phasemap(fine_vol: np.ndarray, ratio: int) -> PhaseMap:
    return PhaseMap(coarse_grain(fine_vol, ACTIVE_VS_REST, ratio, "block"), spacing=(float(ratio),) * 3, unit="px",
                    source="ct.tif")


def test_coarse_volume_refusals_name_the_problem(chi1_volume):
    fine = PhaseMap.from_labels(chi1_volume[0], voxel_size=1.0, unit="px", source="sem.tif")
    img = _coarse_phasemap(chi1_volume, 2)
    with pytest.raises(ValueError, match="not an integer resolution ratio"):
        CoarseVolume.from_phase_map(PhaseMap(img.data, spacing=(2.5,) * 3, unit="px", source="ct.tif"),
                                    ACTIVE_VS_REST, fine)
    with pytest.raises(ValueError, match="unit um differs"):
        CoarseVolume.from_phase_map(PhaseMap(img.data, spacing=(2.0,) * 3, unit="um", source="ct.tif"),
                                    ACTIVE_VS_REST, fine)
    with pytest.raises(ValueError, match="coarse operator must be one of block, subsample"):
        CoarseVolume.from_phase_map(img, ACTIVE_VS_REST, fine, operator="average")
    cv = CoarseVolume.from_phase_map(img, ACTIVE_VS_REST, fine)
    assert cv.ratio == 2 and cv.group_names() == ["active", "pore+electrolyte"]
    # an absurd ratio is refused before any twin is simulated (512^3 twins at 32), with what to do
    with pytest.raises(ValueError, match=r"32x the sections' pixels; at most 16x .* 512\^3 .* "
                                         r"Downsample the fine sections by 2"):
        CoarseVolume.from_phase_map(PhaseMap(img.data, spacing=(32.0,) * 3, unit="px", source="ct.tif"),
                                    ACTIVE_VS_REST, fine)
    assert CoarseVolume.from_phase_map(PhaseMap(img.data, spacing=(16.0,) * 3, unit="px", source="ct.tif"),
                                       ACTIVE_VS_REST, fine).ratio == 16


def test_cli_refuses_coarse_flags_without_a_volume_and_a_volume_without_labels(tmp_path, chi1_volume, capsys):
    from napari_assb_twin.cli import main
    from napari_assb_twin.io import write_label_tiff

    sec = tmp_path / "sec.tif"
    write_label_tiff(sec, chi1_volume[0], voxel_size=1.0, unit="px")
    ct = tmp_path / "ct.tif"
    write_label_tiff(ct, coarse_grain(chi1_volume, ACTIVE_VS_REST, 2), voxel_size=2.0, unit="px")
    out = str(tmp_path / "m.json")
    assert main(["calibrate", str(sec), "--coarse", str(ct), "--out", out]) != 0
    assert "--coarse-labels" in capsys.readouterr().err
    assert main(["calibrate", str(sec), "--coarse-labels", "0:active,1:pore+electrolyte", "--out", out]) != 0
    assert "give it with --coarse" in capsys.readouterr().err
    assert main(["calibrate", str(sec), "--coarse", str(ct), "--coarse-labels", "0:active,1:pore+electrolyte",
                 "--coarse-voxel-size", "2.5", "--out", out]) != 0
    assert "not an integer resolution ratio" in capsys.readouterr().err


@pytest.mark.slow
def test_selection_from_fine_sections_and_a_coarse_volume_recovers_the_connectivity():
    """Fine in-plane sections of the chi2(1)-upper twin plus its block-coarse-grained (r = 2) two-group
    volume (active vs the rest): selection between it and the chi2(3)-lower structure picks the truth."""
    model = _model(CHI1_UPPER)
    fine_vol = model.generate((128, 128, 128), seed=21)
    sections = [PhaseMap.from_labels(fine_vol[z], voxel_size=1.0, unit="px", source=f"z{z}", plane="inplane")
                for z in (16, 64, 112)]
    fine = sections[0]
    cv = CoarseVolume.from_phase_map(_coarse_phasemap(model.generate((128, 128, 128), seed=22), 2),
                                     ACTIVE_VS_REST, fine)
    data = CalibrationData(sections, coarse=cv)
    res = select_model(data, "lp-iso", candidates=[CHI3_LOWER, CHI1_UPPER], iterations=60, device="cpu",
                       n_sections=4, seed=0)
    assert res.best_candidate == CHI1_UPPER, res.table()
    assert res.volume_targets.coarse is not None and res.volume_targets.log_tau.shape == (2, 3)


def test_the_3d_score_decides_the_connectivity_knob(chi1_volume):
    """A volume of the bridged field Y1^2 + 0.5 Y2^2 (active phase tau ~4-5 at VF 0.45) against twins
    of its own structure and of chi2(1) (the knob at 0: tau ~2x higher, the two families of blobs
    unbridged): the 3D transport term is below 0.45 for the truth and at least 2x lower than chi2(1)'s,
    as for the discrete structures above (same crops, same twins)."""
    bridged = replace(CHI1_UPPER, f1_dof=1.5)
    vol = _model(bridged).generate((96, 96, 96), seed=6)
    targets = run_job(VolumeTargets.iter_from_volumes([vol], crop=64))
    truth = run_job(iter_volume_score(targets, _model(bridged), n_twins=2))
    unbridged = run_job(iter_volume_score(targets, _model(CHI1_UPPER), n_twins=2))
    assert truth["transport"] < 0.45, truth
    assert unbridged["transport"] > 2 * truth["transport"], (truth["transport"], unbridged["transport"])


def test_knob_fit_recovers_the_bridge_weight_of_a_simulated_volume():
    """From a 96^3 volume of the bridged field at w = 0.3 the transport fit of the knob (the same
    structure, the volume's crops) lands within 0.15 of it: the twins' tau moves 2.5x over the
    grid, and the common random numbers keep their trend smooth (8 crops of 64^3 scatter the
    measured mean log tau by about 0.1, i.e. 0.05-0.1 in w)."""
    from napari_assb_twin.calibrate.knob import iter_fit_knob, knob_phase

    truth = _model(replace(CHI1_UPPER, f1_dof=1.3))
    targets = run_job(VolumeTargets.iter_from_volumes([truth.generate((96, 96, 96), seed=6)], crop=64))
    fit = run_job(iter_fit_knob(targets, _model(CHI1_UPPER), "active", twins=2))
    assert abs(fit.weight - 0.3) < 0.15, fit.line()
    assert np.all(np.diff(fit.log_tau[[0, 2, 4]]) < 0), fit.log_tau  # more bridges, better connected
    assert knob_phase("sequential", CHI1_UPPER.order, "chi2", 3) is None
    assert knob_phase("interval", CHI1_UPPER.order, "chi2", 1) is None
    assert knob_phase("coating", ("pore", "electrolyte", "active"), "chi2", 2) == "pore"


def test_knob_weight_inverts_the_twins_curve():
    """fit_weight solves a quadratic curve exactly, stays in the grid's range for targets beyond it, and
    follows a noisy curve's trend (one smooth fit: a lower measured tau never asks for fewer bridges)."""
    from napari_assb_twin.calibrate.knob import KNOB_GRID, fit_weight

    grid = np.asarray(KNOB_GRID)
    curve = 2.6 - 2.0 * grid + 0.9 * grid ** 2  # decreasing on [0, 1]
    for w in (0.0, 0.12, 0.37, 0.8):
        assert fit_weight(grid, curve, 2.6 - 2.0 * w + 0.9 * w ** 2) == pytest.approx(w, abs=1e-3)
    assert fit_weight(grid, curve, 3.5) == 0.0 and fit_weight(grid, curve, 1.0) == 1.0
    noisy = curve + np.array([0.08, -0.1, 0.12, -0.05, 0.1, -0.08])
    w = [fit_weight(grid, noisy, t) for t in np.linspace(curve[0], curve[-1], 40)]
    assert np.all(np.diff(w) >= 0), w


def test_a_coarse_volume_is_scored_and_knob_fitted_on_its_whole_extent():
    """The 3D terms (and the knob fitted on them) compare twins coarse-grained from 256^3 with the whole
    64^3 coarse volume at ratio 4: tau near the percolation threshold depends on the box, and the
    coarse tau the twin must meet is the whole volume's (48^3 crops put the NMC knob at 0.035 where
    the whole volume asks for 0.15)."""
    from napari_assb_twin.calibrate.coarse import CoarseVolume

    rng = np.random.default_rng(3)
    fine = PhaseMap.from_labels(_model(CHI1_UPPER).generate((2, 16, 16), seed=1)[0], voxel_size=1.0, unit="px",
                                source="sem.tif")
    coarse_labels = (rng.random((64, 64, 64)) < 0.5).astype(np.uint8)
    cv = CoarseVolume.from_phase_map(PhaseMap(coarse_labels, spacing=(4.0,) * 3, unit="px", source="ct.tif"),
                                     ACTIVE_VS_REST, fine)
    terms = run_job(VolumeTargets.iter_from_coarse(cv))
    assert terms.crop == 64 and terms.n_crops == 1
    assert terms.twin(_model(CHI1_UPPER), seed=0).shape == (64, 64, 64)


@pytest.mark.slow
def test_selection_tries_the_knob_only_where_3d_data_are_given(chi1_volume):
    """With a volume the best brief fit's F1 knob is fitted to the measured transport and its
    variant refined; from the volume's 2D sections alone no knob is fitted."""
    kw = dict(stages=("field",), iterations=20, short_iterations=10, n_fit=1, n_refine=1, families=False,
              noise=False, device="cpu", n_sections=4, seed=0)
    events = []
    res = select_model(CalibrationData([], [PhaseMap.from_labels(chi1_volume, source="twin")]), "lp-iso",
                       progress=events.append, **kw)
    assert any("connectivity knob" in e.message for e in events)
    assert res.knob is not None and 0.0 <= res.knob.weight <= 1.0
    assert any(r["candidate"].f1_dof == res.knob.dof and r["iterations"] == 20 for r in res.rows) \
        or knob_phase_of(res.rows[0]) is None, res.table()
    sections = [PhaseMap.from_labels(chi1_volume[z], source="twin") for z in (20, 60)]
    flat = select_model(CalibrationData(sections, []), "lp-iso", **kw)
    assert flat.knob is None and not any("k=1+" in r["label"] for r in flat.rows), flat.table()


def knob_phase_of(row):
    from napari_assb_twin.calibrate.knob import knob_phase

    c = row["candidate"]
    return knob_phase(c.rule, c.order, c.f1, c.f1_dof)
