"""The Calibrate tab shows how representative the ticked layers are, measured in a worker thread."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("napari")

from qtpy.QtCore import QTimer  # noqa: E402

from napari_assb_twin._napari._layers import phase_layer_kwargs  # noqa: E402
from napari_assb_twin._napari._widgets import CalibrationWidget  # noqa: E402
from napari_assb_twin.model import load_reference_model  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 180_000


def test_ticking_layers_shows_their_representativeness_without_blocking(make_napari_viewer, qtbot):
    model = load_reference_model("reference-assb-cathode")
    vol = model.generate((96, 96, 96), seed=4)
    sec = model.generate((2, 128, 128), seed=5)[0]
    viewer = make_napari_viewer()
    lay3 = viewer.add_labels(vol, **phase_layer_kwargs("volume", 3, 0.25, "um"))
    lay2 = viewer.add_labels(sec, **phase_layer_kwargs("section", 2, 0.25, "um"))
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    # the dock opens with the top layer ticked, and measures it
    qtbot.waitUntil(lambda: w.representativeness is not None and w._rep_worker is None, timeout=WAIT_MS)
    assert [g.label for g in w.representativeness.groups] == ["1 section 128x128 (inplane)"]

    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    w.data_table.set_checked({lay3: "3D: volume", lay2: "in-plane"})
    qtbot.waitUntil(lambda: len(w.representativeness.groups) == 2 and w._rep_worker is None, timeout=WAIT_MS)
    timer.stop()
    rep = w.representativeness
    assert [g.label for g in rep.groups] == ["1 section 128x128 (inplane)", "volume 96x96x96 (volume)"]
    assert w.status.text().startswith("Input: ") and "representativeness of the input" in w.status.toolTip()
    assert "um^3" in w.status.toolTip()
    # the GUI thread kept running while the worker measured: no gap between timer ticks above 0.5 s
    assert len(ticks) > 5 and np.diff(ticks).max() < 0.5, np.diff(ticks).max()

    # another choice measures again: only the section now
    w.data_table.set_checked({lay2: "in-plane"})
    qtbot.waitUntil(lambda: len(w.representativeness.groups) == 1 and w._rep_worker is None, timeout=WAIT_MS)
    assert w.representativeness.groups[0].label == "1 section 128x128 (inplane)"
