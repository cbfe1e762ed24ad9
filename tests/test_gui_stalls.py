"""napari stays responsive while the docks work: an event-loop probe (a 20 ms timer) during a
256^3 validation and a 2D calibration must never wait more than MAX_STALL_S between ticks.

A stall comes from the GUI thread drawing too much (the loss plot rebuilt every 0.3 s, mathtext
fonts loaded on the first log-scale draw, its one full draw), from a worker call that holds the GIL
for long (scikit-image's marching cubes, scipy.ndimage's label and filters on a whole 256^3 volume)
or from a full collection of the cyclic GC, which holds the GIL 0.4-0.65 s in a loaded napari
process (the dock jobs freeze the older objects out of it: ``_jobs.hold_gc``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("napari")

from qtpy.QtCore import QTimer  # noqa: E402

from napari_assb_twin._napari._layers import phase_layer_kwargs  # noqa: E402
from napari_assb_twin.model import load_reference_model  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]
MAX_STALL_S = 0.2
#: The calibration dock's stall was 2.1 s (the figure rebuilt every 0.3 s), then 0.25-0.83 s
#: (constrained layout, minor log ticks, the worker sharing the GIL), then 0.51-0.68 s at load 3-4
#: on main fae338f (the loss plot's one full draw in the GUI thread, and full collections of the
#: cyclic GC inside the run). With the plot's picture drawn in a render thread and the GC hold of
#: the dock jobs it is 0.04-0.10 s at load 2.6-3.8 (13 runs, benchmarks/bench_gui_stall.py). The
#: bound keeps room for a shared CI machine's own pauses and still fails on either old cause.
MAX_STALL_CALIBRATION_S = 0.3
WAIT_MS = 900_000


def _longest_stall(qtbot, start, running) -> float:
    gaps, last = [], [time.monotonic()]

    def tick():
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    last[0] = time.monotonic()
    assert start() is not None
    qtbot.waitUntil(lambda: not running(), timeout=WAIT_MS)
    timer.stop()
    return max(gaps[1:])


def test_no_gui_stall_during_a_256_cubed_validation(make_napari_viewer, qtbot):
    from napari_assb_twin._napari._widgets.compare_widget import CompareWidget

    model = load_reference_model("reference-assb-cathode")
    viewer = make_napari_viewer()
    real = viewer.add_labels(model.generate((256,) * 3, seed=1, device="cpu"), **phase_layer_kwargs("measured", 3, 0.39, "um"))
    twin = viewer.add_labels(model.generate((256,) * 3, seed=2, device="cpu"), **phase_layer_kwargs("twin", 3, 0.39, "um"))
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    stall = _longest_stall(qtbot, w.compare, lambda: w.worker is not None)
    print(f"longest GUI stall during a 256^3 validation: {stall:.3f} s")  # pytest -s shows it
    assert w.comparison is not None
    assert stall < MAX_STALL_S, f"napari's event loop stalled {stall:.2f} s"


def test_no_gui_stall_during_a_2d_calibration(make_napari_viewer, qtbot):
    from napari_assb_twin._napari._widgets.calibration_widget import CalibrationWidget

    section = load_reference_model("reference-assb-cathode").generate((2, 253, 253), seed=3, device="cpu")[0]
    viewer = make_napari_viewer()
    layer = viewer.add_labels(section, **phase_layer_kwargs("section", 2, 0.39, "um"))
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.data_table.set_checked({layer: "in-plane"})
    w.select_structure.setChecked(False)
    w.iterations.setValue(60)
    stall = _longest_stall(qtbot, w.start, lambda: w.worker is not None)
    print(f"longest GUI stall during a 2D calibration: {stall:.3f} s")
    assert w.run.iteration > 0
    assert stall < MAX_STALL_CALIBRATION_S, f"napari's event loop stalled {stall:.2f} s"
