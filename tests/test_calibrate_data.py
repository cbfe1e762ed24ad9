"""Calibration data: construction, volume fractions, coverage targets, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator
from napari_assb_twin.phasemap import PhaseMap
from napari_assb_twin.stats.coverage import coverage


def _three_phase(shape=(48, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, size=shape).astype(np.uint8)


def test_raw_labels_are_mapped_and_fractions_are_pixel_weighted():
    a = _three_phase((40, 40), 1)
    b = _three_phase((64, 32), 2)
    raw_a = np.array([0, 128, 255], dtype=np.uint8)[a]
    data = CalibrationData.from_arrays([raw_a, b], planes=["inplane", "axial"], pixel_size=0.5, unit="um")
    assert data.sections[0].image.dtype == np.uint8
    np.testing.assert_array_equal(data.sections[0].image, a)
    counts = np.bincount(a.ravel(), minlength=3) + np.bincount(b.ravel(), minlength=3)
    expected = counts / counts.sum()
    got = np.array(list(data.volume_fractions.values()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert data.planes == ("inplane", "axial")
    assert data.pixel_size == 0.5 and data.unit == "um"
    assert len(data.sha256) == 2 and data.digest != CalibrationData.from_arrays([a, b]).digest


def test_coverage_targets_pool_directions_per_plane():
    a = _three_phase((40, 36), 3)
    b = _three_phase((30, 50), 4)
    r = 5
    data = CalibrationData.from_arrays([a, b], planes=["inplane", "axial"])
    t = data.coverage_targets(r)
    ca = coverage(a, r, periodic=False, radial=False).directional
    cb = coverage(b, r, periodic=False, radial=False).directional
    # an in-plane section informs the in-plane direction along both axes (averaged)
    np.testing.assert_allclose(t[("inplane", "inplane")][0], 0.5 * (ca[0] + ca[1]), atol=1e-6)
    # an axial section: rows = axial direction, columns = in-plane direction
    np.testing.assert_allclose(t[("axial", "axial")][0], cb[0], atol=1e-6)
    np.testing.assert_allclose(t[("axial", "inplane")][0], cb[1], atol=1e-6)
    # two in-plane images are pooled weighted by pixel count
    c = _three_phase((20, 20), 5)
    t2 = CalibrationData.from_arrays([a, c]).coverage_targets(r)
    cc = coverage(c, r, periodic=False, radial=False).directional
    w_a, w_c = a.size, c.size
    want = (w_a * 0.5 * (ca[0] + ca[1]) + w_c * 0.5 * (cc[0] + cc[1])) / (w_a + w_c)
    np.testing.assert_allclose(t2[("inplane", "inplane")][0], want, atol=1e-6)


def test_from_volume_cuts_both_planes_with_symmetry_axis_as_rows():
    z, y, x = np.meshgrid(np.arange(12), np.arange(10), np.arange(14), indexing="ij")
    vol = ((z // 2 + x // 3 + y // 5) % 3).astype(np.uint8)
    data = CalibrationData.from_volume(vol, n_sections=2, planes=("inplane", "axial"), axis=0)
    planes = [s.plane for s in data.sections]
    assert planes == ["inplane", "inplane", "axial", "axial"]
    for s in data.sections:
        if s.plane == "inplane":
            assert s.image.shape == (10, 14)
        else:
            assert s.image.shape[0] == 12  # rows run along the symmetry axis (z)
    # the first axial section is volume[:, y, :]; the second volume[:, :, x] (rows still z)
    ax0, ax1 = data.sections[2], data.sections[3]
    assert ax0.image.shape == (12, 14) and ax1.image.shape == (12, 10)
    yy = int(ax0.source.split("=")[-1])
    np.testing.assert_array_equal(ax0.image, vol[:, yy, :])
    xx = int(ax1.source.split("=")[-1])
    np.testing.assert_array_equal(ax1.image, vol[:, :, xx])


@pytest.mark.parametrize(
    "values, missing",
    [((0,), "active, electrolyte are missing"), ((0, 2), "active is missing"), ((1, 2), "pore is missing")],
)
def test_images_lacking_a_phase_are_refused_naming_it(values, missing):
    img = np.array(values, dtype=np.uint8)[np.random.default_rng(0).integers(0, len(values), (32, 32))]
    with pytest.raises(ValueError, match=missing):
        CalibrationData.from_arrays([img])


def test_two_raw_labels_without_mapping_are_refused():
    img = np.where(np.random.default_rng(1).random((32, 32)) < 0.5, 10, 200).astype(np.uint8)
    with pytest.raises(ValueError, match="electrolyte is missing"):
        CalibrationData.from_arrays([img])


def test_more_than_three_labels_without_mapping_and_with_mapping():
    img = (np.arange(32 * 32).reshape(32, 32) % 4).astype(np.uint8)
    with pytest.raises(ValueError, match="4 distinct values"):
        CalibrationData.from_arrays([img])
    data = CalibrationData.from_arrays([img], mapping="0:pore,1:active,2:electrolyte,3:electrolyte")
    assert data.volume_fractions["electrolyte"] == pytest.approx(0.5)


def test_nan_and_float_images_are_refused():
    img = _three_phase((32, 32)).astype(np.float32)
    bad = img.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="(?i)nan"):
        CalibrationData.from_arrays([bad])
    grey = img + 0.37
    with pytest.raises(ValueError):
        CalibrationData.from_arrays([grey])


def test_empty_and_3d_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        CalibrationData.from_arrays([np.zeros((0, 5), np.uint8)])
    with pytest.raises(ValueError, match="2D"):
        CalibrationData.from_arrays([np.zeros((4, 8, 8), np.uint8)])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        CalibrationData.from_files([empty])
    with pytest.raises(ValueError, match="no such file"):
        CalibrationData.from_files([tmp_path / "missing.tif"])


def test_inconsistent_pixel_sizes_and_units_are_refused():
    a = _three_phase((32, 32), 1)
    s1 = PhaseMap(a, (0.5, 0.5), "um", "a", plane="inplane")
    s2 = PhaseMap(a, (0.25, 0.25), "um", "b", plane="inplane")
    with pytest.raises(ValueError, match="different pixel sizes"):
        CalibrationData([s1, s2])
    with pytest.raises(ValueError, match="different length units"):
        CalibrationData([s1, PhaseMap(a, (0.5, 0.5), "nm", "c", plane="inplane")])
    with pytest.raises(ValueError, match="plane"):
        CalibrationData.from_arrays([a], planes="diagonal")


def test_too_small_for_r_max_or_patch():
    data = CalibrationData.from_arrays([_three_phase((24, 40))])
    data.validate(r_max=11)
    with pytest.raises(ValueError, match="too small for r_max=12"):
        data.validate(r_max=12)
    with pytest.raises(ValueError, match="patch size 32"):
        data.validate(patch=32)
    with pytest.raises(ValueError, match="too small for r_max"):
        Calibrator(data, CalibrationConfig(r_max=20, device="cpu"))
    with pytest.raises(ValueError, match="patch"):
        Calibrator(data, CalibrationConfig(algorithm="adversarial", r_max=8, patch=32, device="cpu"))


def test_bad_settings_and_unknown_device_give_clear_errors():
    data = CalibrationData.from_arrays([_three_phase((32, 32))])
    with pytest.raises(ValueError, match="device"):
        Calibrator(data, CalibrationConfig(device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            CalibrationConfig(device="cuda").validate()
    with pytest.raises(ValueError, match="variant"):
        CalibrationConfig(variant="lp-aniso").validate()
    with pytest.raises(ValueError, match="algorithm"):
        CalibrationConfig(algorithm="gan").validate()
    with pytest.raises(ValueError, match="patch"):
        CalibrationConfig(patch=40).validate()
    with pytest.raises(ValueError, match="axial section"):
        Calibrator(data, CalibrationConfig(variant="lp-cyl", device="cpu"))
    with pytest.raises(TypeError, match="CalibrationData"):
        Calibrator(np.zeros((8, 8)), CalibrationConfig(device="cpu"))  # type: ignore[arg-type]
