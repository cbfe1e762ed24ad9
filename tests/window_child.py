"""A real, shown napari window in a child process (run by test_window.py and test_screenshot.py).

Usage: ``python window_child.py MODE OUT_DIR WIDTH HEIGHT [STACK]``; the parent starts it under
``xvfb-run`` with a screen of WIDTH x HEIGHT (Xvfb has no window manager, so the window is sized
here with ``_qt_window.resize``). It writes ``OUT_DIR/result.json`` (and PNGs) and exits 0.

Modes
-----
layout
    Open the 3D stack STACK (a path, or ``synthetic`` for the sample data), add the workflow dock
    from the Plugins menu, and measure: window, canvas, dock and every plot of every tab.
screenshot
    As layout, then a short workflow (calibrate, generate beside, compare sections) and window
    screenshots with the Generate and Calibrate tabs in front.
close-<job>
    Start ``job`` (validation, calibration, selection, generation) from its dock's button and
    close napari while it runs; the exit code and stderr tell whether that was clean.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _settle(app: Any, seconds: float = 0.5) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.02)


def _wait(app: Any, cond: Any, timeout: float = 600.0) -> None:
    t0 = time.monotonic()
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("waiting for a worker took too long")


def _open_stack(viewer: Any, stack: str) -> Any:
    if stack == "synthetic":
        from napari_assb_twin._napari._sample_data import assb_cathode_3d

        data, kwargs, _ = assb_cathode_3d()[0]
        return viewer.add_labels(data, **kwargs)
    layer = viewer.open(stack, plugin="napari-assb-twin")[0]
    return layer


def _window(width: int, height: int, title: str = "napari-assb-twin") -> tuple[Any, Any, Any, Any]:
    """A shown viewer of ``width`` x ``height`` with the workflow dock added from the Plugins menu."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title=title)
    app = QApplication.instance()
    viewer.window._qt_window.resize(width, height)
    dock, workflow = viewer.window.add_plugin_dock_widget("napari-assb-twin", "Digital twin workflow")
    viewer.window._qt_window.resize(width, height)  # the dock may have asked for more
    _settle(app)
    return viewer, app, dock, workflow


def _measure(viewer: Any, app: Any, dock: Any, workflow: Any) -> dict[str, Any]:
    from napari_assb_twin._napari._widgets._plot import ThemedCanvas

    win = viewer.window._qt_window
    canvas = viewer.window._qt_viewer.canvas.native
    screen = win.screen().geometry()
    from qtpy.QtWidgets import QScrollArea

    plots, pages = [], []
    for i, step in enumerate(workflow.steps):
        workflow.tabs.setCurrentIndex(i)
        _settle(app, 0.3)
        for tc in step.findChildren(ThemedCanvas):
            # the part of the plot inside the tab's viewport (a plot below the fold needs scrolling)
            area = workflow.tabs.widget(i)
            top = tc.canvas.mapTo(area, tc.canvas.rect().topLeft()).y()
            visible = max(0, min(tc.canvas.height(), area.height() - max(top, 0)))
            plots.append({"tab": workflow.tabs.tabText(i), "width": tc.canvas.width(), "height": tc.canvas.height(),
                          "visible_height": visible})
        area = workflow.tabs.widget(i)
        if isinstance(area, QScrollArea):
            pages.append({"tab": workflow.tabs.tabText(i), "vscroll": area.verticalScrollBar().isVisible(),
                          "page": step.height(), "viewport": area.viewport().height()})
    tables = []
    workflow.tabs.setCurrentIndex(3)
    _settle(app, 0.3)
    table = workflow.validation.table
    tables.append({"viewport": table.viewport().width(), "columns": sum(table.columnWidth(c) for c in range(table.columnCount())),
                   "hscroll": table.horizontalScrollBar().isVisible()})
    return {
        "screen": [screen.width(), screen.height()],
        "window": [win.frameGeometry().width(), win.frameGeometry().height()],
        "canvas": [canvas.width(), canvas.height()],
        "dock": [dock.width(), dock.height()],
        "plots": plots,
        "pages": pages,
        "tables": tables,
    }


def layout(out: Path, width: int, height: int, stack: str) -> None:
    viewer, app, dock, workflow = _window(width, height)
    measured = _open_stack(viewer, stack)
    _settle(app)
    info = _measure(viewer, app, dock, workflow)
    info["layer"] = [measured.name, list(measured.data.shape)]
    (out / "result.json").write_text(json.dumps(info, indent=2))
    viewer.close()


def screenshot(out: Path, width: int, height: int, stack: str) -> None:
    from PIL import Image

    viewer, app, dock, workflow = _window(width, height, "napari-assb-twin: measured vs digital twin")
    measured = _open_stack(viewer, stack)
    if stack != "synthetic":
        measured.name = f"measured: NMC cathode ({measured.data.shape[0]}\u00b3)"
    cal, gen = workflow.calibration, workflow.generator
    # the real NMC files carry no voxel size: give it as a user would, in the voxel row (0.39 um)
    workflow.voxel.layer_combo.set_layer(measured)
    if stack != "synthetic":
        workflow.voxel.unit.setCurrentText("um")
        workflow.voxel.size.setValue(0.39)
        workflow.voxel.apply_button.click()
    workflow.show_step(cal)
    cal.data_table.set_checked({measured: "3D: in-plane sections"})
    cal.variant.setCurrentText("lp-iso")
    cal.select_structure.setChecked(False)  # a short fit for the picture, not model selection
    cal.iterations.setValue(40)
    cal.start_button.click()
    _wait(app, lambda: cal.worker is None)
    workflow.show_step(gen)
    gen.reference.set_layer(measured)
    for s, n in zip(gen.shape_spins, measured.data.shape):
        s.setValue(min(int(n), 128))
    gen.generate_button.click()
    _wait(app, lambda: gen.worker is None)
    z = measured.data.shape[0] // 2
    viewer.dims.set_current_step(0, z)
    gen.compare_button.click()
    _wait(app, lambda: gen.compare_worker is None)
    viewer.reset_view()
    viewer.layers.selection.active = measured
    viewer.scale_bar.visible = True
    viewer.scale_bar.position = "bottom_left"
    _settle(app, 1.0)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "window-generate.png")
    workflow.show_step(cal)
    _settle(app, 1.0)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "window-calibrate.png")
    # coverage of the shown slice of both layers, then validation of the twin
    cov = workflow.coverage
    cov.layers.set_checked([measured, gen.layer])
    workflow.show_step(cov)
    cov.compute_button.click()
    _wait(app, lambda: cov.worker is None)
    _settle(app, 1.0)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "window-coverage.png")
    val = workflow.validation
    val.real_combo.set_layer(measured)
    val.twin_combo.set_layer(gen.layer)
    workflow.show_step(val)
    val.compare_button.click()
    _wait(app, lambda: val.worker is None)
    _settle(app, 1.0)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "window-validate.png")
    info = _measure(viewer, app, dock, workflow)
    twin = gen.layer
    info.update({
        "layers": [lay.name for lay in viewer.layers],
        "twin_translate": list(map(float, twin.translate)) if twin is not None else None,
        "measured_extent": [list(map(float, r)) for r in measured.extent.world],
        "section_translate": list(map(float, gen.section_layer.translate)) if gen.section_layer is not None else None,
        "calibration_status": cal.status.text(),
        "calibration_iterations": int(cal.run.iteration),
        "scale": list(map(float, measured.scale)),
    })
    (out / "result.json").write_text(json.dumps(info, indent=2))
    viewer.close()


def close_during(out: Path, width: int, height: int, job: str) -> None:
    """Start ``job`` and close napari while it runs; napari's own exit path (viewer.close, app quit)."""
    import numpy as np

    from napari_assb_twin._napari._layers import phase_layer_kwargs
    from napari_assb_twin.model import load_reference_model

    viewer, app, dock, workflow = _window(width, height)
    model = load_reference_model("reference-assb-cathode")
    vol = model.generate((64, 64, 64), seed=1, device="cpu")
    twin = model.generate((64, 64, 64), seed=2, device="cpu")
    measured = viewer.add_labels(vol, **phase_layer_kwargs("measured", 3, 0.25, "um"))
    viewer.add_labels(twin, **phase_layer_kwargs("twin", 3, 0.25, "um"))
    if job == "validation":
        w = workflow.validation
        w.real_combo.set_layer(measured)
        w.twin_combo.set_layer(viewer.layers["twin"])
        w.geometry.setChecked(True)  # slow blocks: the close lands inside one
        w.compare_button.click()
        _wait(app, lambda: len(w.events) >= 1)
    elif job in ("calibration", "selection"):
        w = workflow.calibration
        w.data_table.set_checked({measured: "3D: in-plane sections"})
        w.iterations.setValue(5000)
        w.select_structure.setChecked(job == "selection")
        w.start_button.click()
        _wait(app, lambda: w.run.iteration >= 2 or (job == "selection" and "selection" in w.status.text()))
    elif job == "generation":
        w = workflow.generator
        for s in w.shape_spins:
            s.setValue(160)
        w.generate_button.click()
        _settle(app, 0.3)
    else:
        raise SystemExit(f"unknown job {job}")
    from napari_assb_twin._napari._widgets._jobs import _CloseGuard

    guard = viewer.window._qt_window.findChild(_CloseGuard)
    running = w.worker is not None
    t0 = time.monotonic()
    viewer.close()
    app.processEvents()
    close_s = time.monotonic() - t0
    (out / "result.json").write_text(json.dumps({"job": job, "running_at_close": running, "close_s": close_s,
                                                 "jobs_stop_s": guard.stop_s}))
    print(f"close-{job}: window closed in {close_s:.2f} s, of which {guard.stop_s:.2f} s stopping the jobs")
    app.quit()


def main(argv: list[str]) -> None:
    mode, out, width, height = argv[1], Path(argv[2]), int(argv[3]), int(argv[4])
    extra = argv[5] if len(argv) > 5 else "synthetic"
    if mode == "layout":
        layout(out, width, height, extra)
    elif mode == "screenshot":
        screenshot(out, width, height, extra)
    elif mode.startswith("close-"):
        close_during(out, width, height, mode.removeprefix("close-"))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv)
