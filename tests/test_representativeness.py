"""Representativeness of the input (issue 21 item 2): integral range, fraction covariance, C_ij SD.

The estimates are checked against what they claim to predict: the scatter of the phase fractions
(and of C_ij) between many independent sub-windows of one large simulated field. Tolerances follow
from the variance of a variance estimate: with n independent windows the empirical variance has a
relative standard error sqrt(2 / (n - 1)) (5.9 % for 576 windows, 18 % for 64); the pooled estimate
over the same windows adds little. The estimator's own bias, measured while designing it, is at most
10-20 % on windows of 10-20 correlation lengths (docs/benchmarks.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_assb_twin.model import load_reference_model
from napari_assb_twin.stats.coverage import coverage
from napari_assb_twin.stats.representativeness import (
    CONFIDENCE,
    FRACTION_TARGET,
    MIN_SIDE,
    coverage_split_sd,
    integral_matrix,
    window_stats,
)


def _windows(field: np.ndarray, w: int) -> list[np.ndarray]:
    """Non-overlapping w-sided sub-windows tiling ``field`` (2D or 3D)."""
    n = field.shape[0] // w
    if field.ndim == 2:
        return [field[i * w:(i + 1) * w, j * w:(j + 1) * w] for i in range(n) for j in range(n)]
    return [field[i * w:(i + 1) * w, j * w:(j + 1) * w, k * w:(k + 1) * w]
            for i in range(n) for j in range(n) for k in range(n)]


def _fractions(images: list[np.ndarray]) -> np.ndarray:
    return np.array([np.bincount(im.ravel(), minlength=3)[:3] / im.size for im in images])


@pytest.fixture(scope="module")
def field2d() -> np.ndarray:
    """A 1536^2 section of the reference model (three phases; its 1/e length is about 5 px)."""
    return load_reference_model("reference-assb-cathode").sample((1536, 1536), seed=3).numpy()


def test_fraction_covariance_matches_the_scatter_of_independent_2d_windows(field2d):
    wins = _windows(field2d, 64)  # 576 windows of about 13 correlation lengths
    emp = np.cov(_fractions(wins).T)
    est = integral_matrix(wins)
    pred = est.covariance * len(wins)  # pooled over n windows: cov / n; one window's covariance back
    # 576 windows: the empirical variance has a 5.9 % standard error; 25 % is 4 of them plus the
    # estimator's measured bias on 64 px windows
    np.testing.assert_allclose(np.diag(pred), np.diag(emp), rtol=0.25)
    # cross terms: negative on balance (each row's off-diagonal sum is minus its variance), of the
    # empirical sign pair by pair (not all negative: in this rule pore is cut from the electrolyte's
    # side of F1, and pore and electrolyte fractions rise together, at the active phase's expense)
    # and as large as the empirical ones (relative to the diagonal scale)
    off = ~np.eye(3, dtype=bool)
    assert ((pred * off).sum(axis=1) < 0).all() and ((emp * off).sum(axis=1) < 0).all()
    np.testing.assert_array_equal(np.sign(pred[off]), np.sign(emp[off]))
    scale = np.sqrt(np.outer(np.diag(emp), np.diag(emp)))
    assert np.abs(pred - emp)[off].max() <= 0.25 * scale[off].max()


def test_one_window_predicts_the_scatter_of_its_like(field2d):
    """A single 256^2 window (what a user has) predicts the variance of 256^2 windows of the same
    material: 36 windows give an empirical variance with a 24 % standard error, one window's own
    estimate scatters by about 13 %; within a factor 1.8 both ways (about 2.5 combined SDs)."""
    wins = _windows(field2d, 256)
    emp = np.diag(np.cov(_fractions(wins).T))
    for win in wins[:3]:
        pred = np.diag(integral_matrix([win]).covariance)
        assert ((pred / emp > 1 / 1.8) & (pred / emp < 1.8)).all(), pred / emp


def test_rows_sum_to_zero_and_the_matrix_is_a_covariance(field2d):
    est = integral_matrix([field2d[:512, :512]])
    for m in (est.integral, est.covariance):
        np.testing.assert_allclose(m.sum(axis=1), 0.0, atol=1e-12 * np.abs(m).max())
        np.testing.assert_allclose(m, m.T, atol=0)
        assert np.linalg.eigvalsh(m).min() >= -1e-12 * np.abs(m).max()
        assert (np.diag(m) > 0).all()
    # the large-window integral exceeds the finite window's (pairs that do not fit are lost)
    assert (np.diag(est.integral) / 512**2 > np.diag(est.covariance)).all()
    np.testing.assert_allclose(est.fractions, np.bincount(field2d[:512, :512].ravel(), minlength=3) / 512**2)


def test_fraction_covariance_matches_the_scatter_of_independent_3d_windows():
    """The same in 3D: 64 cubes of 48^3 from one 192^3 volume of a finer reference model (1/e length
    about 3 voxels). 64 windows: the empirical variance has an 18 % standard error; within 40 %."""
    model = load_reference_model("reference-assb-cathode").with_updates({"f1.length_scale": 1.2, "f2.length_scale": 0.7})
    vol = model.generate((192, 192, 192), seed=5)
    wins = _windows(vol, 48)
    emp = np.diag(np.cov(_fractions(wins).T))
    est = integral_matrix(wins)
    assert all(est.converged)
    np.testing.assert_allclose(np.diag(est.covariance) * len(wins), emp, rtol=0.4)
    ws = window_stats([vol])
    assert ws.ndim == 3 and np.all(ws.integral_range > 0) and "voxels" in " ".join(ws.lines())


def test_coverage_sd_from_split_halves_matches_the_scatter_between_windows(field2d):
    """Split-half SD of C_ij (one 128^2 window's two halves) against the SD of C_ij between 144
    independent 128^2 windows, RMS over lags 1..20 and both axes; averaged over 24 windows' own
    estimates, within 30 % per pair (measured 0.84-0.98: adjacent halves share a little)."""
    r_max = 20
    wins = _windows(field2d, 128)
    curves = np.array([coverage(w, r_max, radial=False).directional for w in wins])  # (n, 2, 3, 3, r+1)
    emp = np.sqrt(np.mean(curves[..., 1:].std(axis=0, ddof=1) ** 2, axis=(0, 3)))
    pred = np.mean([coverage_split_sd([w[:, :64]], [w[:, 64:]], r_max) for w in wins[:24]], axis=0)
    np.testing.assert_allclose(pred, emp, rtol=0.3)


def test_needed_data_scales_as_one_over_target_squared(field2d):
    ws = window_stats([field2d[:256, :256]])
    for t in (0.02, 0.005):
        assert ws.needed_pixels(t) == pytest.approx(ws.needed_pixels(FRACTION_TARGET) * (FRACTION_TARGET / t) ** 2)
        assert ws.needed_ratio(t) == pytest.approx(ws.needed_ratio(FRACTION_TARGET) * (FRACTION_TARGET / t) ** 2)
    # needed_ratio is (z SD / target)^2: the reported half-width meets the target exactly at ratio 1
    z = 1.959963984540054
    assert ws.needed_ratio(z * ws.sd.max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="target"):
        ws.needed_ratio(0.0)
    with pytest.raises(ValueError, match="confidence"):
        ws.needed_ratio(0.01, confidence=1.0)


def test_several_windows_count_by_their_total_area(field2d):
    """Four windows taken jointly: the pooled fraction's variance is about a quarter of one's."""
    wins = _windows(field2d, 256)[:4]
    one = np.mean([np.diag(integral_matrix([w]).covariance) for w in wins], axis=0)
    joint = np.diag(integral_matrix(wins).covariance)
    np.testing.assert_allclose(joint, one / 4, rtol=0.35)
    ws = window_stats(wins)
    assert ws.label == "4 sections 256x256" and ws.pixels == 4 * 256**2


def test_bad_input_gets_a_clear_message():
    one_phase = np.ones((64, 64), np.uint8)
    with pytest.raises(ValueError, match="only one phase present"):
        integral_matrix([one_phase])
    tiny = np.random.default_rng(0).integers(0, 3, (MIN_SIDE - 1, 40)).astype(np.uint8)
    with pytest.raises(ValueError, match=f"too small.*at least {MIN_SIDE} px"):
        integral_matrix([tiny])
    with pytest.raises(ValueError, match="must all be 2D sections or all 3D volumes"):
        integral_matrix([np.zeros((32, 32), np.uint8), np.zeros((32, 32, 32), np.uint8)])
    with pytest.raises(TypeError, match="integer phase maps"):
        integral_matrix([np.zeros((32, 32))])
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        integral_matrix([np.full((32, 32), 5, np.uint8)])
    with pytest.raises(ValueError, match="no image"):
        integral_matrix([])


def test_an_absent_phase_keeps_a_zero_row(field2d):
    two = (field2d[:256, :256] > 1).astype(np.uint8)  # phases 0 and 1 only
    ws = window_stats([two])
    assert ws.sd[2] == 0 and np.isnan(ws.integral_range[2]) and ws.sd[0] == pytest.approx(ws.sd[1])


def test_calibration_data_groups_lines_and_provenance(field2d):
    from napari_assb_twin.calibrate import CalibrationData
    from napari_assb_twin.phasemap import PhaseMap

    secs = [PhaseMap(field2d[i * 200:(i + 1) * 200, :200], spacing=(0.5, 0.5), unit="um", source=f"s{i}", plane="inplane")
            for i in range(3)]
    vol = load_reference_model("reference-assb-cathode").generate((48, 48, 48), seed=2)
    data = CalibrationData(secs, [PhaseMap(vol, spacing=(0.5,) * 3, unit="um", source="v")])
    rep = data.representativeness(12)
    assert rep is data.representativeness(12)  # cached per r_max
    labels = [g.label for g in rep.groups]
    assert labels == ["3 sections 200x200 (inplane)", "volume 48x48x48 (v)"]
    sections, volume = rep.groups
    assert sections.coverage_sd is not None and sections.coverage_sd.shape == (3, 3) and sections.r_max == 12
    assert sections.integral_range[1] == pytest.approx(
        np.diag(sections.estimate.integral)[1] / (sections.fractions[1] * (1 - sections.fractions[1])) * 0.25)
    pooled = rep.pooled_sd()
    # the calibration pools fractions pixel-weighted (CalibrationData.volume_fractions): independent
    # groups add their variances with the squared weights
    n1, n2 = sections.pixels, volume.pixels
    np.testing.assert_allclose(pooled, np.sqrt((n1**2 * sections.sd**2 + n2**2 * volume.sd**2) / (n1 + n2) ** 2))
    text = "\n".join(rep.lines())
    assert "um^2" in text and "um^3" in text and f"{CONFIDENCE:.0%}" in text and "section(s) of about 200^2 px" in text
    record = json.loads(json.dumps(rep.to_dict()))  # JSON-ready
    g0 = record["groups"][0]
    assert g0["fraction_sd"] == pytest.approx(list(sections.sd))
    assert set(g0["coverage_sd"]) == {"pore-pore", "pore-active", "pore-electrolyte", "active-active",
                                      "active-electrolyte", "electrolyte-electrolyte"}
    assert record["pooled_fraction_sd"] == pytest.approx(list(pooled))


def test_a_check_that_raises_abandons_the_estimate_and_caches_nothing(field2d):
    """What the dock does when napari closes mid-measurement: its check raises between steps."""
    from napari_assb_twin.calibrate import CalibrationData

    data = CalibrationData.from_arrays([field2d[:256, :256]])
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        data.representativeness(16, check=check)
    assert data._representativeness == {} and len(calls) == 2
    assert data.representativeness(16).groups  # the next request computes it afresh


def test_the_calibrate_job_reports_it_first_and_records_it(calibration_section, tmp_path):
    """The use case's first event carries the text (the CLI prints it, the dock shows it) and the
    model file's provenance records it."""
    from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData
    from napari_assb_twin.jobs import calibrate_to_files
    from napari_assb_twin.model import load_model

    path = calibration_section[0] if isinstance(calibration_section, tuple) else calibration_section
    data = CalibrationData.from_files([path])
    job = calibrate_to_files(data, tmp_path / "m.json", CalibrationConfig(iterations=2, r_max=8), model="lp-iso")
    events = []
    try:
        while True:
            events.append(next(job))
    except StopIteration as done:
        run = done.value
    assert events[0].stage == "representativeness"
    assert events[0].message.startswith("representativeness of the input") and events[0].data.groups
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["provenance"]["representativeness"]["groups"][0]["label"].startswith("1 section 48x48")
    assert run.provenance["representativeness"] == saved["provenance"]["representativeness"]
    load_model(tmp_path / "m.json")  # the file stays a valid model file


def test_the_calibrate_job_notes_data_too_small_to_estimate(tmp_path):
    from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData
    from napari_assb_twin.jobs.calibrate import calibrate

    rng = np.random.default_rng(1)
    data = CalibrationData.from_arrays([rng.integers(0, 3, (12, 12)).astype(np.uint8)])
    job = calibrate(data, CalibrationConfig(iterations=1, r_max=2), variant="lp-iso")
    first = next(job)
    job.close()
    assert first.stage == "note" and "not estimated" in first.message and f"at least {MIN_SIDE} px" in first.message
