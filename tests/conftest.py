"""Shared test fixtures.

Real data live beside the project at ``../shared/data`` (never inside the repository); tests that
need them skip with a clear reason on a fresh clone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Choose the Qt platform before any test imports Qt.

    Runs after pytest-xvfb's own hook: with an X display (pytest-xvfb, ``xvfb-run`` or a desktop)
    Qt uses it and OpenGL (screenshots) works through Mesa; with no display at all, Qt's
    ``offscreen`` platform still runs every widget test headless. An explicit
    ``QT_QPA_PLATFORM`` always wins.
    """
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real segmented data sets; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} absent (only present beside the development checkout)")
    return SHARED_DATA


@pytest.fixture
def shared_file(shared_data: Path):
    """Return a function giving the path of one shared data file, skipping when it is missing."""

    def get(relative: str) -> Path:
        path = shared_data / relative
        if not path.is_file():
            pytest.skip(f"real data file {path} absent")
        return path

    return get


@pytest.fixture(scope="module")
def calibration_section(tmp_path_factory):
    """A 48 x 48 three-phase section saved as a 0/128/255 PNG, and its phases (for CLI calibration tests)."""
    import numpy as np
    from PIL import Image

    from napari_assb_twin.model import build_model

    m = build_model("lp-iso", length_scales_px=(4.0, 2.5), volume_fractions={"pore": 0.2, "active": 0.5, "electrolyte": 0.3})
    img = m.sample_sections((48, 48), "inplane", seed=3)[0].numpy()
    path = tmp_path_factory.mktemp("cal") / "section.png"
    Image.fromarray(np.array([0, 128, 255], np.uint8)[img]).save(path)
    return path, img
