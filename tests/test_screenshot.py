"""Screenshots of a real, shown napari window at a laptop's and a desktop's screen size.

The window runs in a child process under Xvfb (``tests/window_child.py screenshot``): the real
NMC stack when ``../shared/data`` is there (its voxel size, 0.39 um, set in the dock's voxel row as
a user would), else the synthetic sample; a short calibration, a twin generated beside the
measured layer and a simulated section on the compared slice. With
``ASSB_TWIN_WRITE_SCREENSHOT=1`` the PNGs are copied to docs/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from test_window import REPO, run_window

from napari_assb_twin.phases import PHASE_COLORS

SIZES = {"1366x768": (1366, 768), "1920x1080": (1920, 1080)}
REAL = REPO.parent / "shared" / "data" / "tldr_inpainter" / "nmc_3phase_128.tif"

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _phase_share(img: np.ndarray, phase: int, opacity: float = 0.7, tol: int = 14) -> float:
    """Share of pixels showing a phase colour (translucent Labels over napari's black canvas)."""
    target = np.round(np.asarray(PHASE_COLORS[phase][:3]) * opacity * 255)
    return float(np.mean(np.all(np.abs(img[..., :3].astype(float) - target) <= tol, axis=-1)))


@pytest.mark.parametrize("size", list(SIZES))
def test_screenshot_measured_twin_and_section(tmp_path, size):
    from PIL import Image

    stack = str(REAL) if REAL.is_file() else "synthetic"
    proc, info = run_window(tmp_path, "screenshot", SIZES[size], stack)
    assert proc.returncode == 0 and info, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert info["window"][0] <= SIZES[size][0] and info["window"][1] <= SIZES[size][1], info
    # the twin lies beside the measured layer (same z origin), the section below it on the shown slice
    lo, hi = info["measured_extent"]
    assert info["twin_translate"][-1] > hi[-1] and info["twin_translate"][0] == pytest.approx(lo[0])
    assert info["section_translate"][1] > hi[1]
    assert info["calibration_iterations"] > 0 and "coverage RMSE" in info["calibration_status"]
    if stack != "synthetic":
        assert info["scale"] == pytest.approx([0.39] * 3)  # set from the dock's voxel row
    for name in ("window-generate.png", "window-calibrate.png"):
        img = np.asarray(Image.open(tmp_path / name))
        assert img.shape[:2] == (SIZES[size][1], SIZES[size][0])  # the whole window, at the screen's size
        for phase in range(3):  # every phase colour is visible in the canvas
            assert _phase_share(img, phase) > 0.005, (name, phase)
    if os.environ.get("ASSB_TWIN_WRITE_SCREENSHOT") == "1":
        for name in ("window-generate.png", "window-calibrate.png", "window-coverage.png", "window-validate.png"):
            shutil.copyfile(tmp_path / name, REPO / "docs" / f"screenshot-{size}-{name.removeprefix('window-')}")
