"""A real, shown napari window: measured and simulated layers side by side, calibration dock open.

Screenshots need OpenGL, so the window runs in a child process on an X display (Xvfb): the
display of pytest-xvfb or ``DISPLAY`` when there is one, else the child is started under
``xvfb-run -a``. The test process itself stays on Qt's offscreen platform (tests/conftest.py).
With ``ASSB_TWIN_WRITE_SCREENSHOT=1`` the window screenshot is saved to docs/screenshot.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_VOLUME = REPO.parent / "shared" / "data" / "tldr_inpainter" / "nmc_3phase_128.tif"


def _child_command(out: Path) -> list[str] | None:
    """How to start the window process on an X display, or None if there is none."""
    cmd = [sys.executable, str(Path(__file__).resolve()), str(out)]
    if shutil.which("xvfb-run"):  # our own screen: big enough for the window, 24-bit colour
        return ["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24"] + cmd
    if os.environ.get("DISPLAY"):
        return cmd
    return None


@pytest.mark.gui
@pytest.mark.slow
def test_screenshot_measured_and_twin_side_by_side(tmp_path):
    pytest.importorskip("napari")
    cmd = _child_command(tmp_path)
    if cmd is None:
        pytest.skip("no X display and no xvfb-run: screenshots need OpenGL (apt-get install xvfb libgl1-mesa-dri)")
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    result = tmp_path / "result.json"
    if proc.returncode != 0 or not result.is_file():
        text = proc.stdout[-3000:] + proc.stderr[-3000:]
        if any(s in text for s in ("could not connect to display", "Could not load the Qt platform plugin",
                                   "failed to create OpenGL", "No OpenGL", "GLXBadFBConfig")):
            pytest.skip(f"no usable display / OpenGL here: {text.strip().splitlines()[-1]}")
        pytest.fail(f"window process failed (rc {proc.returncode}):\n{text}")
    info = json.loads(result.read_text())
    # the canvas shows both layers: the three phase colours and the background, not a blank frame
    assert info["canvas_colours"] >= 4, info
    for phase in ("pore", "active", "electrolyte"):
        assert info["phase_pixels"][phase] > 0.02, info  # each phase colour covers part of the canvas
    assert info["layers"] == 2 and info["twin_translate_x"] > info["measured_width"]
    assert info["calibration_iterations"] > 0 and info["dock_visible"]
    window = tmp_path / "window.png"
    assert window.is_file()
    if os.environ.get("ASSB_TWIN_WRITE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(window, REPO / "docs" / "screenshot.png")
        shutil.copyfile(tmp_path / "window-compare.png", REPO / "docs" / "screenshot-compare.png")


# ------------------------------------------------------------------------------------------------
# the window process
# ------------------------------------------------------------------------------------------------
def _wait(app, cond, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("waiting for a worker took too long")


def _dock(viewer, display_name: str, cls, tabify: bool = False):
    """Open a dock the way the Plugins menu does; direct construction if the plugin is not installed."""
    try:
        return viewer.window.add_plugin_dock_widget("napari-assb-twin", display_name, tabify=tabify)
    except Exception:  # noqa: BLE001 - running from a source tree without `pip install -e .`
        widget = cls(viewer)
        return viewer.window.add_dock_widget(widget, name=display_name, area="right", tabify=tabify), widget


def _colour_share(img: np.ndarray, rgba, opacity: float) -> float:
    """Share of canvas pixels showing a phase colour (translucent Labels over the black canvas)."""
    target = np.round(np.asarray(rgba[:3]) * opacity * 255)
    return float(np.mean(np.all(np.abs(img[..., :3].astype(float) - target) <= 12, axis=-1)))


def _raise_dock(viewer, text: str) -> bool:
    """Bring the dock whose title contains ``text`` to the front (docks may be tabbed)."""
    for name, inner in viewer.window.dock_widgets.items():
        if text in name:
            dock = inner.parent()
            dock.show()
            dock.raise_()
            return dock.isVisible()
    return False


def _settle(app, seconds: float = 0.6) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.02)


def main(out: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_assb_twin._napari._widgets import CalibrationWidget, GeneratorWidget
    from napari_assb_twin.phases import PHASE_COLORS, PHASE_NAMES

    viewer = napari.Viewer(show=True, title="napari-assb-twin: measured vs digital twin")
    app = QApplication.instance()
    viewer.window.resize(1800, 1100)
    if REAL_VOLUME.is_file():
        layers = viewer.open(str(REAL_VOLUME), plugin="napari-assb-twin")
        measured = layers[0]
        measured.name = "measured: NMC cathode (128\u00b3)"
    else:  # a fresh clone: the synthetic sample stands in for a measurement
        from napari_assb_twin._napari._sample_data import assb_cathode_3d

        data, kwargs, _ = assb_cathode_3d()[0]
        measured = viewer.add_labels(data, **kwargs)
    _, cal = _dock(viewer, "Calibrate digital twin", CalibrationWidget)
    _, gen = _dock(viewer, "Generate twin and compare", GeneratorWidget, tabify=True)
    # calibrate on in-plane sections of the measured volume, a short run
    cal.data_table.set_checked({measured: "3D: in-plane sections"})
    cal.variant.setCurrentText("lp-iso")
    cal.iterations.setValue(30)
    cal.start()
    _wait(app, lambda: cal.worker is None)
    # the twin from the calibrated model, beside the measured layer
    gen.reference.set_layer(measured)
    gen.placement.setCurrentText("beside the reference (x offset)")
    gen.generate()
    _wait(app, lambda: gen.worker is None)
    gen.compare()
    _wait(app, lambda: gen.compare_worker is None)
    z = measured.data.shape[0] // 2
    viewer.dims.set_current_step(0, z)
    viewer.reset_view()
    viewer.layers.selection.active = measured
    viewer.text_overlay.text = f"left: measured section z = {z}    right: calibrated digital twin, same z"
    viewer.text_overlay.position = "top_center"
    viewer.text_overlay.font_size = 12
    viewer.text_overlay.visible = True
    viewer.scale_bar.visible = True
    viewer.scale_bar.position = "bottom_left"
    from PIL import Image

    # the generator tab: both sections and their coverage curves
    _raise_dock(viewer, "Generate twin")
    _settle(app)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "window-compare.png")
    # the calibration tab in front: loss curves and calibrated parameters
    dock_visible = _raise_dock(viewer, "Calibrate digital twin")
    _settle(app)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    window = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(window).save(out / "window.png")
    Image.fromarray(canvas).save(out / "canvas.png")
    twin = gen.layer
    colours = np.unique(canvas[..., :3].reshape(-1, 3), axis=0)
    info = {
        "canvas_colours": int(len(colours)),
        "phase_pixels": {PHASE_NAMES[p]: _colour_share(canvas, PHASE_COLORS[p], measured.opacity) for p in range(3)},
        "layers": len(viewer.layers),
        "twin_translate_x": float(twin.translate[-1]) if twin is not None else -1.0,
        "measured_width": float(measured.extent.world[1][-1]),
        "calibration_iterations": int(cal.run.iteration),
        "dock_visible": bool(dock_visible),
        "status": cal.status.text(),
    }
    (out / "result.json").write_text(json.dumps(info, indent=2))
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
