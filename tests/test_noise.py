"""Split-half sampling noise of the data's C_ij (calibrate.noise), against its defining properties."""

import numpy as np
import pytest
from scipy import ndimage

from napari_assb_twin.calibrate import CalibrationData
from napari_assb_twin.calibrate.noise import coverage_noise_rmse, rmse_line, split_halves


def _sections(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` independent three-phase sections (smoothed white noise cut at its terciles)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = ndimage.gaussian_filter(rng.standard_normal((size, size)), 2.0)
        out.append(np.digitize(f, np.quantile(f, [0.33, 0.66])).astype(np.uint8))
    return out


def test_identical_halves_have_no_noise():
    # two identical sections too small to halve: alternate sections are the halves, their C_ij equal
    img = _sections(1, 12, 0)[0]
    data = CalibrationData.from_arrays([img, img.copy()])
    halves = split_halves(list(data.sections), 4)
    assert halves is not None and len(halves[0]) == len(halves[1]) == 1
    assert coverage_noise_rmse(data, 4) == pytest.approx(0.0, abs=1e-7)


def test_noise_shrinks_with_more_data():
    # standard error ~ 1 / sqrt(area): 16x the sections -> about 1/4 of the noise. One split-half
    # figure is itself noisy (a few data sets), so average four seeds and accept < 0.6 x
    def mean_noise(n: int) -> float:
        values = [coverage_noise_rmse(CalibrationData.from_arrays(_sections(n, 64, 10 * n + s)), 6) for s in range(4)]
        assert all(v is not None and v > 0 for v in values)
        return float(np.mean(values))

    assert mean_noise(32) < 0.6 * mean_noise(2)


def test_unsplittable_data_gives_none_and_line():
    data = CalibrationData.from_arrays([_sections(1, 12, 3)[0]])  # one section, too small to halve
    assert coverage_noise_rmse(data, 4) is None
    assert rmse_line(1.0, None) == "coverage RMSE 0.0100"
    assert rmse_line(1.0, 0.002) == "coverage RMSE 0.0100 (data noise 0.0020)"
    assert rmse_line(float("inf"), 0.002) == "coverage RMSE not evaluated yet"
