"""The compare dock: two Labels layers -> threaded comparison -> table in the dock -> report."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("napari")

from napari.utils.notifications import notification_manager  # noqa: E402

from napari_assb_twin._napari._widgets.compare_widget import CompareWidget  # noqa: E402
from napari_assb_twin.validate import REPORT_FILES  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 90_000


def _blobs(shape, seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    f = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.5, mode="wrap")
    lo, hi = np.quantile(f, [0.2, 0.55])
    return np.where(f < lo, 0, np.where(f < hi, 1, 2)).astype(np.uint8)


def _errors(start: int) -> list[str]:
    return [n.message for n in notification_manager.records[start:] if str(n.severity) == "error"]


def test_compare_two_layers_table_and_report(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    real = viewer.add_labels(_blobs((16, 16, 16), 0), name="measured", scale=(0.5, 0.5, 0.5))
    twin_data = _blobs((16, 16, 16), 1)
    twin = viewer.add_labels(twin_data, name="twin", scale=(0.5, 0.5, 0.5))
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    w.geometry.setChecked(False)
    assert not w.transport.isChecked()  # off by default: minutes on a CPU at full size
    assert not w.save_button.isEnabled()
    with qtbot.waitSignal(w.compared, timeout=WAIT_MS) as blocker:
        w.compare()
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    cmp = blocker.args[0]
    assert cmp is w.comparison and cmp.voxel_size == 0.5
    rows = w.table_values()
    assert len(rows) == len(cmp.descriptors) and w.table.columnCount() == 5
    vf = next(r for r in rows if r[0] == "Volume fraction" and r[1] == "pore")
    expected = np.mean(twin_data == 0)
    assert float(vf[3]) == pytest.approx(expected, rel=1e-3)
    # one progress event per descriptor block, in order, ending complete
    dones = [e.done for e in w.events]
    assert len(w.events) >= 4 and dones == sorted(dones) and len({e.total for e in w.events}) == 1
    assert all(e.stage for e in w.events) and w.progress_bar.maximum() == w.events[-1].total
    assert w.save_button.isEnabled()
    # save into a settable path; never silently over an existing report
    w.report_path = str(tmp_path / "report")
    files = w.save_report()
    assert set(files) == set(REPORT_FILES) and all(p.is_file() for p in files.values())
    start = len(notification_manager.records)
    assert w.save_report() == {}
    assert any("--force" in m or "force" in m for m in _errors(start))


def test_identical_layers_show_zero_differences_and_bad_inputs_notify(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    sec = viewer.add_labels(_blobs((32, 32), 2), name="section")
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(sec)
    w.twin_combo.set_layer(sec)
    w.geometry.setChecked(False)
    with qtbot.waitSignal(w.compared, timeout=WAIT_MS):
        w.compare()
    rel = [r[5] for r in w.table_values() if not r[0].startswith("MSSIM")]
    assert rel and all(v in ("+0.0 %", "-0.0 %") for v in rel)
    # 2D: image similarity added, with no relative difference (its measured value is 1 by definition)
    assert {r[5] for r in w.table_values() if r[0].startswith("MSSIM")} == {"n/a"}
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    # a grey-value image and a 3D-vs-2D pair are refused with a notification, no worker started
    grey = viewer.add_image(np.random.default_rng(0).random((16, 16, 16)).astype(np.float32), name="grey")
    w.real_combo.set_layer(grey)
    start = len(notification_manager.records)
    assert w.compare() is None
    assert any("floating-point" in m for m in _errors(start))
    vol = viewer.add_labels(_blobs((8, 16, 16), 3), name="vol")
    w.real_combo.set_layer(vol)
    w.twin_combo.set_layer(sec)
    start = len(notification_manager.records)
    assert w.compare() is None
    assert any("is 3D but the twin" in m for m in _errors(start))
    # a refused run leaves no old table looking like its result
    assert w.table.rowCount() == 0 and w.comparison is None and not w.save_button.isEnabled()
    # what only a pass over the voxels finds (a single phase) is found in the worker, off the GUI thread:
    # the job ends with the same clear message, no traceback, no table
    empty = viewer.add_labels(np.zeros((8, 16, 16), np.uint8), name="empty")
    w.real_combo.set_layer(vol)
    w.twin_combo.set_layer(empty)
    start = len(notification_manager.records)
    worker = w.compare()
    assert worker is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    assert any("holds a single phase" in m for m in _errors(start)), _errors(start)
    assert w.status.text().startswith("Refused: Compare:") and w.table.rowCount() == 0 and w.comparison is None


def test_preselection_never_picks_one_layer_twice_and_prefers_the_generated_twin(make_napari_viewer, qtbot):
    from napari_assb_twin._napari._widgets._common import GENERATED_TAG

    viewer = make_napari_viewer()
    real = viewer.add_labels(_blobs((16, 16, 16), 0), name="measured")
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    assert w.real_combo.layer() is real
    other = viewer.add_labels(_blobs((16, 16, 16), 1), name="another file")
    assert w.real_combo.layer() is not w.twin_combo.layer()
    twin = viewer.add_labels(_blobs((16, 16, 16), 2), name="twin", metadata={GENERATED_TAG: "x"})
    assert w.twin_combo.layer() is twin and w.real_combo.layer() in (real, other)
    w2 = CompareWidget(viewer)  # opened afterwards: measured = top file layer, twin = the generated one
    qtbot.addWidget(w2)
    assert w2.real_combo.layer() is other and w2.twin_combo.layer() is twin


def test_stop_ends_validation_between_blocks(make_napari_viewer, qtbot, monkeypatch):
    import threading

    from napari_assb_twin.stats import descriptors

    # hold the worker inside its second block until Stop has been pressed: on 24^3 images the whole
    # job can otherwise finish before the click arrives, and the test would race the machine's speed
    pressed = threading.Event()
    surface = descriptors.surface_area_densities

    def held_surface(*args, **kwargs):
        pressed.wait(timeout=WAIT_MS / 1000)
        return surface(*args, **kwargs)

    monkeypatch.setattr(descriptors, "surface_area_densities", held_surface)
    viewer = make_napari_viewer()
    real = viewer.add_labels(_blobs((24, 24, 24), 0), name="measured")
    twin = viewer.add_labels(_blobs((24, 24, 24), 1), name="twin")
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    worker = w.compare()
    qtbot.waitUntil(lambda: len(w.events) >= 1, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        w.stop_button.click()
        pressed.set()
    assert w.comparison is None and w.status.text().startswith("Stopped after")
    assert len(w.events) < w.events[0].total + 1 and w.compare_button.isEnabled()


def test_a_one_slice_simulated_section_is_never_preselected_and_is_refused_before_a_worker(make_napari_viewer, qtbot):
    """Generate, then Compare sections: the generator adds a one-voxel-thick 'simulated section'
    layer (tagged as generated) last; Validate kept offering it as the twin and failed in the worker."""
    from napari_assb_twin._napari._widgets._common import GENERATED_TAG

    viewer = make_napari_viewer()
    real = viewer.add_labels(_blobs((16, 16, 16), 0), name="measured")
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    twin = viewer.add_labels(_blobs((16, 16, 16), 2), name="twin", metadata={GENERATED_TAG: "x"})
    section = viewer.add_labels(_blobs((16, 16, 16), 3)[8:9], name="simulated section", metadata={GENERATED_TAG: "x"})
    assert w.real_combo.layer() is real and w.twin_combo.layer() is twin
    w2 = CompareWidget(viewer)  # opened after the section was added
    qtbot.addWidget(w2)
    assert w2.real_combo.layer() is real and w2.twin_combo.layer() is twin
    start = len(notification_manager.records)
    w.twin_combo.set_layer(section)  # chosen by hand: a clear refusal, no worker, no traceback
    assert w.compare() is None and w.worker is None
    assert any("one voxel thick" in m for m in _errors(start)), _errors(start)


def test_2d_section_against_a_3d_twin_shows_spread_notes_and_a_finished_bar(make_napari_viewer, qtbot):
    """Validate a 2D measured section against a 3D twin: the twin is measured on many of its
    sections (mean, and their spread in its own column), the report's notes are in the dock, the
    bar ends full, and n/a rows read n/a (never 0 %)."""
    viewer = make_napari_viewer()
    sec = viewer.add_labels(_blobs((32, 32), 2), name="section")
    vol = viewer.add_labels(_blobs((12, 32, 32), 5), name="twin volume")
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(sec)
    w.twin_combo.set_layer(vol)
    w.geometry.setChecked(False)
    with qtbot.waitSignal(w.compared, timeout=WAIT_MS) as blocker:
        w.compare()
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    cmp = blocker.args[0]
    assert cmp.twin_sections == 12
    assert not w.table.isColumnHidden(3)  # the spread column
    vf = next(r for r in w.table_values() if r[0] == "Volume fraction" and r[1] == "pore")
    assert float(vf[4]) > 0  # sections of a twin differ
    assert w.notes.isVisible() or not w.notes.isHidden()
    assert "sections" in w.notes.text() and "MSSIM" in w.notes.text()
    assert w.progress_bar.value() == w.progress_bar.maximum() and "done" in w.progress_bar.format()
    assert all(r[5] != "+0.0 %" for r in w.table_values() if r[0].startswith("MSSIM"))


def test_a_worker_error_pops_up_once(make_napari_viewer, qtbot, monkeypatch):
    """napari's worker shows a job's error (with its traceback) once. The dock added its own
    notification, and superqt re-raised the error in the GUI thread (a third pop-up from napari's
    excepthook; in a script without an event loop: SIGABRT). pytest-qt fails a test on an exception
    raised in a Qt slot, so this test fails on a re-raise too."""
    from napari_assb_twin._napari._widgets import compare_widget as cw

    def broken(*args, **kwargs):
        yield from ()
        raise ValueError("descriptor block exploded")

    monkeypatch.setattr(cw, "comparison_events", broken)
    viewer = make_napari_viewer()
    real = viewer.add_labels(_blobs((16, 16, 16), 0), name="measured")
    twin = viewer.add_labels(_blobs((16, 16, 16), 1), name="twin")
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    start = len(notification_manager.records)
    assert w.compare() is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    qtbot.wait(100)
    assert not [n for n in notification_manager.records[start:] if "exploded" in str(n.message)]  # none of the dock's
    assert w.status.text() == "Failed: descriptor block exploded"


def test_the_dock_runs_the_validation_use_case(make_napari_viewer, qtbot, monkeypatch):
    """The dock adapts jobs.compare (its geometry rule, default r_max, solver check and notes)
    instead of calling iter_compare with rules of its own."""
    import importlib

    use_case = importlib.import_module("napari_assb_twin.jobs.compare")

    calls = []
    real_compare = use_case.compare
    monkeypatch.setattr(use_case, "compare", lambda *a, **k: calls.append(k) or real_compare(*a, **k))
    viewer = make_napari_viewer()
    real = viewer.add_labels(_blobs((16, 16, 16), 0), name="measured", scale=(0.5, 0.5, 0.5))
    twin = viewer.add_labels(_blobs((16, 16, 16), 1), name="twin", scale=(0.25, 0.25, 0.25))
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    with qtbot.waitSignal(w.compared, timeout=WAIT_MS) as blocker:
        w.compare()
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    cmp = blocker.args[0]
    assert len(calls) == 1 and cmp.voxel_size == 0.5
    assert any("voxel sizes differ" in n for n in cmp.notes)


def test_realisations_of_a_generated_twin_by_the_docks_own_buttons(make_napari_viewer, qtbot):
    """A twin carrying its model (as the Generate tab makes it): Validate with 3 realisations, pressed as
    a user does; the twin layer is the first realisation, the table shows both values with their 95 %
    half-widths ([lo, hi] in the tooltip) and the spread of one twin."""
    from qtpy.QtCore import Qt

    from napari_assb_twin._napari._widgets._common import GENERATED_TAG, TWIN_MODEL_KEY
    from napari_assb_twin.model import load_reference_model, model_to_dict

    model = load_reference_model("reference-assb-cathode")
    viewer = make_napari_viewer()
    real = viewer.add_labels(model.generate((24, 24, 24), seed=40), name="measured", scale=(0.25,) * 3)
    first = model.generate((16, 16, 16), seed=7)
    twin = viewer.add_labels(first, name="twin", scale=(0.25,) * 3,
                             metadata={GENERATED_TAG: "test", TWIN_MODEL_KEY: model_to_dict(model), "seed": 7})
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    w.geometry.setChecked(False)
    w.realisations.setValue(3)
    with qtbot.waitSignal(w.compared, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(w.compare_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    cmp = blocker.args[0]
    assert cmp.realisations == 3 and cmp.sampling_blocks == 8 and cmp.twin_shape == (16, 16, 16)
    assert [e.message for e in w.events if e.stage == "generate"] == [
        "realisation 2/3 of 16 x 16 x 16 (seed 8)", "realisation 3/3 of 16 x 16 x 16 (seed 9)"]  # the layer is the 1st
    vf = cmp.descriptors.set_index(["descriptor", "phase"]).loc[("volume_fraction", "pore")]
    mean_of = (np.mean(first == 0) + np.mean(model.generate((16,) * 3, seed=8) == 0)
               + np.mean(model.generate((16,) * 3, seed=9) == 0)) / 3
    assert vf.twin == pytest.approx(mean_of)
    row = next(r for r in w.table_values() if r[0] == "Volume fraction" and r[1] == "pore")
    # value to 3 significant digits, half-width to 1 (the two value columns fit the dock at 1366 x 768)
    assert row[2] == f"{vf.real:.3g}\u00b1{float(f'{(vf.real_hi - vf.real_lo) / 2:.1g}'):g}"
    assert row[3].startswith(f"{vf.twin:.3g}\u00b1") and float(row[4]) == pytest.approx(vf.twin_spread, rel=1e-3)
    assert not w.table.isColumnHidden(3)
    item = next(w.table.item(r, 2) for r in range(w.table.rowCount()) if w.table.item(r, 0).text() == "pore"
                and w.table.columnSpan(r, 0) == 1)
    assert "95 % interval [" in item.toolTip()
    assert "3 realisations" in w.status.text()
    # without a model the box cannot be honoured: one realisation, said in the status
    plain = viewer.add_labels(first.copy(), name="plain twin", scale=(0.25,) * 3)
    w.twin_combo.set_layer(plain)
    with qtbot.waitSignal(w.compared, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(w.compare_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    assert blocker.args[0].realisations == 1 and "carries no model" in w.status.text()


def test_dock_colours_a_difference_only_where_the_intervals_are_disjoint(make_napari_viewer, qtbot):
    """+50 % with overlapping intervals: neutral; +10 % with disjoint ones: coloured (bold, the
    report's colour of its size)."""
    from test_intervals import _two_row_comparison

    viewer = make_napari_viewer()
    w = CompareWidget(viewer)
    qtbot.addWidget(w)
    default = w.table.palette().text().color().name()
    w.fill_table(_two_row_comparison())
    cells = {w.table.item(r, 0).text(): w.table.item(r, 4) for r in range(w.table.rowCount())
             if w.table.columnSpan(r, 0) == 1}
    assert cells["pore"].text() == "+50.0 %" and cells["active"].text() == "+10.0 %"
    assert cells["pore"].foreground().style() == 0 or cells["pore"].foreground().color().name() == default
    assert not cells["pore"].font().bold() and "overlap" in cells["pore"].toolTip()
    assert cells["active"].foreground().color().name() == "#b38600" and cells["active"].font().bold()
    assert "do not overlap" in cells["active"].toolTip()
