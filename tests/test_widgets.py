"""The dock widgets driven as a user would: set values, press buttons, wait for worker signals.

Headless (QT_QPA_PLATFORM=offscreen, set in conftest); the screenshot test is test_screenshot.py.
The calibration tests run the real engine for a handful of iterations of a small LP model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
napari = pytest.importorskip("napari")

from napari.utils.notifications import notification_manager  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402

from napari_assb_twin._napari._layers import phase_colormap, phase_layer_kwargs  # noqa: E402
from napari_assb_twin._napari._widgets import CalibrationWidget, CoverageWidget, GeneratorWidget  # noqa: E402
from napari_assb_twin._napari._widgets._common import GENERATED_TAG  # noqa: E402
from napari_assb_twin._napari._widgets.coverage_widget import SCOPE_STACK  # noqa: E402
from napari_assb_twin._napari._widgets.calibration_widget import SECTIONS_PER_PLANE  # noqa: E402
from napari_assb_twin.model import load_model, load_reference_model  # noqa: E402
from napari_assb_twin.stats.coverage import CoverageResult  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 180_000  # generous: the shared test machines run several suites at once


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A small 3D phase map from the reference model (0.25 um voxels)."""
    return load_reference_model("reference-assb-cathode").generate((24, 64, 64), seed=5, device="cpu")


@pytest.fixture(scope="module")
def section(volume) -> np.ndarray:
    """A 2D in-plane section large enough for calibration (r_max 16 needs a side >= 33)."""
    return load_reference_model("reference-assb-cathode").generate((2, 96, 96), seed=6, device="cpu")[0]


def add_phase_layer(viewer, data, name, spacing=0.25, unit="um"):
    return viewer.add_labels(data, **phase_layer_kwargs(name, data.ndim, spacing, unit))


@pytest.fixture
def notes():
    """Notifications shown from now on: ``notes()`` -> list of (severity, message)."""
    start = len(notification_manager.records)
    return lambda: [(str(n.severity), n.message) for n in notification_manager.records[start:]]


def errors(notes) -> list[str]:
    return [m for sev, m in notes() if sev == "error"]


def fractions(arr: np.ndarray) -> np.ndarray:
    return np.bincount(arr.ravel(), minlength=3)[:3] / arr.size


# --------------------------------------------------------------------------------------------
# coverage widget
# --------------------------------------------------------------------------------------------
def test_coverage_overlay_plot_and_exports(make_napari_viewer, qtbot, tmp_path, volume, section):
    viewer = make_napari_viewer()
    l2 = add_phase_layer(viewer, section, "measured 2D")
    l3 = add_phase_layer(viewer, volume, "simulated 3D")
    viewer.dims.set_current_step(0, 7)
    w = CoverageWidget(viewer)
    qtbot.addWidget(w)
    w.layers.set_checked([l2, l3])
    w.r_max.setValue(20)
    w.radial.setChecked(True)
    with qtbot.waitSignal(w.computed, timeout=WAIT_MS):
        w.compute_button.click()
    assert [c.name for c in w.curves] == ["simulated 3D [z=7]", "measured 2D"]  # layer-list order, top first
    # oracle: C_ii(0) is the phase fraction of exactly the image analysed (current slice of the 3D layer)
    np.testing.assert_allclose(np.diag(w.curves[0].result.directional[0][:, :, 0]), fractions(volume[7]), atol=1e-6)
    np.testing.assert_allclose(np.diag(w.curves[1].result.directional[1][:, :, 0]), fractions(section), atol=1e-6)
    assert w.curves[0].axis_labels == ("y", "x") and w.curves[0].unit == "um"
    axes = [ax for ax in w.canvas.figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["along y", "along x", "radial mean"]
    assert len(axes[0].lines) == 2 * 3  # 2 layers x 3 auto-coverage pairs
    np.testing.assert_allclose(axes[0].lines[0].get_xdata()[-1], 20 * 0.25)  # physical distances
    w.pair_boxes[(1, 2)].setChecked(True)  # a cross pair: replotted without recomputing
    assert len([ax for ax in w.canvas.figure.axes if ax.get_visible()][0].lines) == 2 * 4

    written = w.export_csv(str(tmp_path / "cov.csv"))
    assert len(written) == 2 and all(p.is_file() for p in written)
    back = CoverageResult.read_csv(written[1])
    np.testing.assert_allclose(back.directional, w.curves[1].result.directional, rtol=1e-12)
    assert back.unit == "um" and back.voxel_size == pytest.approx(0.25)
    png = w.export_png(str(tmp_path / "cov.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    pixels = img.reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 20  # curves, text and axes, not a blank figure
    # a light publication figure at a fixed size, whatever napari's theme (the dock stays dark)
    assert img.shape[:2] == (1500, 2100)
    assert (img[:5, :5] > 250).all() and (img[-5:, -5:] > 250).all()  # white background
    assert (pixels.sum(axis=1) < 100).sum() > 500  # dark text and axes
    assert w.canvas.colors["background"] != "#ffffff" and w.canvas.figure.get_facecolor()[0] < 0.5


def test_coverage_whole_stack_3d_and_r_max_clipping(make_napari_viewer, qtbot, notes, volume):
    viewer = make_napari_viewer()
    add_phase_layer(viewer, volume, "vol")
    w = CoverageWidget(viewer)
    qtbot.addWidget(w)
    w.scope.setCurrentText(SCOPE_STACK)
    w.r_max.setValue(40)  # > 24 voxels along z: clipped to 23 with a warning
    with qtbot.waitSignal(w.computed, timeout=WAIT_MS):
        w.compute_button.click()
    res = w.curves[0].result
    assert res.directional.shape == (3, 3, 3, 24) and w.curves[0].axis_labels == ("z", "y", "x")
    np.testing.assert_allclose(res.volume_fractions, fractions(volume), atol=1e-6)
    assert any(sev == "warning" and "clipped to 23" in m for sev, m in notes())
    assert [ax.get_title() for ax in w.canvas.figure.axes if ax.get_visible()] == ["along z", "along y", "along x"]


def test_coverage_r_max_follows_the_default_until_the_user_edits(make_napari_viewer, qtbot, volume, section):
    """r max starts at PhaseMap.default_r_max of the ticked layer (the command line's rule), a typed
    value wins, and ticking another layer brings back that layer's default."""
    from napari_assb_twin.phasemap import PhaseMap

    viewer = make_napari_viewer()
    l3 = add_phase_layer(viewer, volume, "vol")
    l2 = add_phase_layer(viewer, section, "sec")
    w = CoverageWidget(viewer)
    qtbot.addWidget(w)
    w.layers.set_checked([l2])
    expected_2d = PhaseMap(section).default_r_max()
    expected_3d = PhaseMap(volume).default_r_max()
    assert expected_2d != expected_3d  # 24 voxels along z cap the stack's default
    qtbot.waitUntil(lambda: w.r_max.value() == expected_2d, timeout=WAIT_MS)
    with qtbot.waitSignal(w.computed, timeout=WAIT_MS):
        w.compute_button.click()
    assert w.curves[0].result.r_px[-1] == expected_2d
    w.r_max.setValue(expected_2d + 5)  # the user's value wins...
    with qtbot.waitSignal(w.computed, timeout=WAIT_MS):
        w.compute_button.click()
    assert w.curves[0].result.r_px[-1] == expected_2d + 5 and w.r_max.value() == expected_2d + 5
    l2.name = "renamed"  # ...also over a layer-list refresh that does not change the choice
    assert w.r_max.value() == expected_2d + 5
    w.scope.setCurrentText(SCOPE_STACK)  # ...until the layer (here: and the scope) changes
    with qtbot.waitSignal(w.r_max_defaulted, timeout=WAIT_MS):
        w.layers.set_checked([l3])
    assert w.r_max.value() == expected_3d
    with qtbot.waitSignal(w.computed, timeout=WAIT_MS):
        w.compute_button.click()
    assert w.curves[0].result.r_px[-1] == expected_3d


def test_coverage_bad_inputs_notify(make_napari_viewer, qtbot, notes, section):
    viewer = make_napari_viewer()
    w = CoverageWidget(viewer)
    qtbot.addWidget(w)
    assert w.compute() is None
    assert "no Labels layer" in errors(notes)[-1]
    grey = viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="grey")
    empty = viewer.add_labels(np.zeros((32, 32), np.uint8), name="empty")
    flat2d = add_phase_layer(viewer, section, "flat")
    for layer, expected in ((grey, "floating-point grey values"), (empty, "single phase")):
        w.layers.set_checked([layer])
        assert w.compute() is None
        assert expected in errors(notes)[-1]
    w.layers.set_checked([flat2d])
    w.scope.setCurrentText(SCOPE_STACK)
    assert w.compute() is None
    assert "is 2D" in errors(notes)[-1]
    assert w.export_csv("x.csv") == [] and "nothing to export" in errors(notes)[-1]


def test_widget_modules_import_without_torch():
    code = (
        "import sys; import napari_assb_twin._napari._widgets as w; "
        "import napari_assb_twin._napari._widgets.coverage_widget; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


# --------------------------------------------------------------------------------------------
# calibration widget
# --------------------------------------------------------------------------------------------
def test_calibration_runs_live_and_publishes(make_napari_viewer, qtbot, section):
    viewer = make_napari_viewer()
    add_phase_layer(viewer, section, "measured")
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    assert w.device.currentText().startswith("auto: cpu")  # auto shows what it found
    w.select_structure.setChecked(False)  # the fit itself, not model selection first
    w.iterations.setValue(6)
    w.seed.setValue(1)
    # adversarial steps take real time (critic updates); exact coverage steps take ~1 ms each and
    # would all arrive between two timer ticks, proving nothing about responsiveness
    w.algorithm.setCurrentText("adversarial")
    ticks, yielded_before_end = [], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    worker = w.start()
    assert worker is not None and not w.start_button.isEnabled() and w.stop_button.isEnabled()
    worker.yielded.connect(lambda rec: yielded_before_end.append(len(ticks)))
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    timer.stop()
    # the GUI kept processing events while the worker trained: the timer fired between yields
    assert len(ticks) >= 10 and len(set(yielded_before_end)) >= 3
    assert w.run.iteration == w.run.total == 6 and w.progress_bar.value() == 6
    model = w.model
    assert model is not None and w.state.model is model
    assert w.param_table.rowCount() == len(model.interpretable())
    vf = fractions(section)
    assert model.volume_fractions["active"] == pytest.approx(vf[1], abs=1e-6)  # fractions come from the data
    assert w.canvas.figure.axes and w.canvas.figure.axes[0].lines  # loss curves drawn
    assert w.start_button.isEnabled() and w.save_button.isEnabled() and w.worker is None
    # the generator dock of the same viewer offers the calibrated model
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    assert g.model is model and g.source.currentText().startswith("\u2605 calibrated on measured")
    assert g.param_spins["f1.length_scale"].value() == pytest.approx(model.interpretable()["f1.length_scale"], abs=1e-3)


def test_calibration_stop_keeps_best_model(make_napari_viewer, qtbot, section):
    viewer = make_napari_viewer()
    add_phase_layer(viewer, section, "measured")
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.select_structure.setChecked(False)
    w.iterations.setValue(20_000)  # never ends by itself first, even on a loaded machine
    worker = w.start()
    qtbot.waitUntil(lambda: w.run.iteration >= 2, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        w.stop_button.click()
    assert 2 <= w.run.iteration < 20_000
    model = w.model
    assert model is not None and w.state.model is model and "stopped" in w.status.text()
    vol = model.generate((8, 16, 16), seed=0, device="cpu")  # a valid model: it samples
    assert vol.dtype == np.uint8 and set(np.unique(vol)) <= {0, 1, 2}
    assert sum(model.volume_fractions.values()) == pytest.approx(1.0)
    assert w.start_button.isEnabled()


def test_calibration_quit_from_status_bar_keeps_best(make_napari_viewer, qtbot, section):
    """napari's status-bar cancel calls worker.quit(): no `returned`, the best model is still kept."""
    viewer = make_napari_viewer()
    add_phase_layer(viewer, section, "measured")
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.select_structure.setChecked(False)
    w.iterations.setValue(20_000)  # never ends by itself first, even on a loaded machine
    worker = w.start()
    qtbot.waitUntil(lambda: w.run.iteration >= 1, timeout=WAIT_MS)
    returned = []
    worker.returned.connect(returned.append)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        worker.quit()
    assert returned == [] and w.model is not None and w.state.model is w.model


def test_calibration_save_load_never_overwrites_silently(make_napari_viewer, qtbot, notes, tmp_path):
    viewer = make_napari_viewer()
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    assert w.save_model(str(tmp_path / "m.json")) is None and "No model" in errors(notes)[-1]
    ref = load_reference_model("pressed-assb-cathode")
    src = tmp_path / "ref.json"
    from napari_assb_twin.model import save_model

    save_model(ref, src)
    model = w.load_model(str(src))
    assert model is not None and w.state.model is model and w.state.source == "loaded from ref.json"
    target = tmp_path / "twin.json"
    target.write_text("user's file")
    assert w.save_model(str(target)) is None
    assert "exists" in errors(notes)[-1] and target.read_text() == "user's file"
    assert w.save_model(str(target), overwrite=True) == target
    again = load_model(target)
    assert again.interpretable() == pytest.approx(model.interpretable(), rel=1e-5)
    assert json.loads(target.read_text())["provenance"]["description"] == "loaded from ref.json"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert w.load_model(str(bad)) is None and "not valid JSON" in errors(notes)[-1]


def test_calibration_bad_inputs_notify(make_napari_viewer, qtbot, notes, section):
    viewer = make_napari_viewer()
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    assert w.start() is None and "no layer ticked" in errors(notes)[-1]
    viewer.add_image(np.random.default_rng(0).random((40, 40)).astype(np.float32), name="grey")
    assert w.data_table.layers() == []  # grey-value images are not offered as data
    empty = viewer.add_labels(np.zeros((40, 40), np.uint8), name="empty")
    w.data_table.set_checked([empty])
    assert w.start() is None and "single phase" in errors(notes)[-1]
    layer = add_phase_layer(viewer, section, "measured")
    w.data_table.set_checked({layer: "in-plane"})
    with pytest.raises(ValueError, match="does not apply"):
        w.data_table.set_checked({layer: "3D: shown slice"})
    w.device.setEditText("tpu:0")
    assert w.start() is None and "unknown device 'tpu:0'" in errors(notes)[-1]
    w.device.setEditText("auto")
    # a cylindrical model needs an axial section: the engine refuses, the widget notifies
    w.variant.setCurrentText("lp-cyl")
    w.select_structure.setChecked(False)
    w.iterations.setValue(2)
    with qtbot.waitSignal(w.calibration_finished, timeout=WAIT_MS) as blocker:
        w.start_button.click()  # the engine fails at once: wait on the widget's signal, not the worker's
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    assert blocker.args == [None] and "axial section" in errors(notes)[-1]
    assert w.model is None and w.start_button.isEnabled()


def test_a_3d_layer_is_a_volume_by_default_and_a_2d_layer_cannot_be_one(make_napari_viewer, qtbot):
    """Issue 18: a 3D Labels layer is offered as a volume first (3D C_ij and 3D selection terms);
    build_data hands it over whole, with the layer's voxel size; a 2D layer cannot be a volume."""
    vol = load_reference_model("pressed-assb-cathode").generate((40, 40, 40), seed=2, device="cpu")
    viewer = make_napari_viewer()
    layer = add_phase_layer(viewer, vol, "stack")
    flat = add_phase_layer(viewer, vol[5], "section")
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.data_table.set_checked([layer])
    assert dict(w.data_table.checked())[layer] == "3D: volume"
    data = w.build_data()
    (v,) = data.volumes
    np.testing.assert_array_equal(v.data, vol)
    assert v.source == "stack" and data.pixel_size == pytest.approx(0.25) and not data.given_sections
    assert data.planes == ("inplane", "axial")  # sections cut from it feed the 2D statistics
    # its symmetry axis: found from it, or given with the plane choice (as --symmetry-axis)
    from napari_assb_twin.calibrate.data import symmetry_axis

    assert data.axis == symmetry_axis([vol])[0]
    w.data_table.set_checked({layer: "3D: volume about y"})
    assert w.build_data().axis == 1
    other = add_phase_layer(viewer, vol[:, ::-1].copy(), "stack 2")
    w.data_table.set_checked({layer: "3D: volume about y", other: "3D: volume about x"})
    with pytest.raises(ValueError, match="different symmetry axes"):
        w.build_data()
    with pytest.raises(ValueError, match="does not apply"):
        w.data_table.set_checked({flat: "3D: volume"})


def test_a_coarse_volume_layer_with_merged_labels(make_napari_viewer, qtbot):
    """Issue 18 (c) in the dock: fine sections of a twin plus a layer ticked '3D: coarse volume' whose
    two labels merge phases; the ratio comes from the layer scales; unmapped labels are refused."""
    from napari_assb_twin.calibrate.coarse import coarse_grain

    vol = load_reference_model("pressed-assb-cathode").generate((48, 48, 48), seed=2, device="cpu")
    viewer = make_napari_viewer()
    fine = add_phase_layer(viewer, vol[10], "sem")  # 0.25 um pixels (add_phase_layer's scale)
    ct = add_phase_layer(viewer, coarse_grain(vol, ((1,), (0, 2)), 2), "ct", spacing=0.5)
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.data_table.set_checked({fine: "in-plane"})
    assert w.settings.coarse_labels.native.isHidden()  # the coarse fields only with a coarse layer ticked
    w.data_table.set_checked({fine: "in-plane", ct: "3D: coarse volume"})
    assert not w.settings.coarse_labels.native.isHidden() and not w.settings.coarse_operator.native.isHidden()
    w.settings.coarse_labels.value = "0:active,1:pore+electrolyte"
    data = w.build_data()
    assert data.coarse is not None and data.coarse.ratio == 2 and data.coarse.groups == ((1,), (0, 2))
    assert len(data.given_sections) == 1 and not data.volumes
    w.settings.coarse_labels.value = "1:active,2:pore+electrolyte"
    with pytest.raises(ValueError, match=r"labels \[0\] that the coarse labels"):
        w.build_data()
    w.data_table.set_checked({ct: "3D: coarse volume"})
    with pytest.raises(ValueError, match="needs fine data beside it"):
        w.build_data()


def test_calibration_on_3d_layer_uses_inplane_and_axial_sections(make_napari_viewer, qtbot):
    vol = load_reference_model("pressed-assb-cathode").generate((40, 40, 40), seed=2, device="cpu")
    viewer = make_napari_viewer()
    layer = add_phase_layer(viewer, vol, "volume")
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.data_table.set_checked({layer: "3D: in-plane + axial sections"})
    data = w.build_data()
    assert sorted(set(data.planes)) == ["axial", "inplane"] and len(data) == 2 * SECTIONS_PER_PLANE
    assert data.unit == "um" and data.pixel_size == pytest.approx(0.25)
    # the slice shown in the viewer: an in-plane section when slicing along z (the symmetry axis)...
    viewer.dims.set_current_step(0, 12)
    w.data_table.set_checked({layer: "3D: shown slice"})
    (sec,) = w.build_data().sections
    assert sec.plane == "inplane"
    np.testing.assert_array_equal(sec.image, vol[12])
    # ...and an axial one (symmetry axis along the rows) when the viewer slices along x
    viewer.dims.order = (2, 0, 1)
    viewer.dims.set_current_step(2, 5)
    (sec,) = w.build_data().sections
    assert sec.plane == "axial"
    np.testing.assert_array_equal(sec.image, vol[:, :, 5])


def test_plots_follow_the_viewer_theme(make_napari_viewer, qtbot):
    from matplotlib.colors import to_hex

    from napari_assb_twin._napari._widgets._plot import theme_colors

    viewer = make_napari_viewer()
    w = CoverageWidget(viewer)
    qtbot.addWidget(w)
    viewer.theme = "dark"
    dark = to_hex(w.canvas.figure.get_facecolor())
    viewer.theme = "light"
    light = to_hex(w.canvas.figure.get_facecolor())
    assert dark == theme_colors("dark")["background"] and light == theme_colors("light")["background"]
    assert dark != light


# --------------------------------------------------------------------------------------------
# generator widget
# --------------------------------------------------------------------------------------------
def test_generator_adds_and_replaces_only_its_layer(make_napari_viewer, qtbot, volume):
    viewer = make_napari_viewer()
    measured = add_phase_layer(viewer, volume, "measured")
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    assert g.reference.layer() is measured and g.model is not None
    for s, n in zip(g.shape_spins, (16, 32, 32)):
        s.setValue(n)
    with qtbot.waitSignal(g.generated, timeout=WAIT_MS):
        g.generate_button.click()
    twin = g.layer
    assert twin is not None and twin is viewer.layers[-1] and twin.data.dtype == np.uint8
    assert twin.data.shape == (16, 32, 32) and twin.metadata[GENERATED_TAG] == g.tag
    np.testing.assert_allclose(twin.scale, measured.scale)
    assert twin.units == measured.units
    assert twin.colormap.color_dict[1] is not None
    np.testing.assert_allclose(twin.colormap.map(np.array([0, 1, 2])), phase_colormap().map(np.array([0, 1, 2])))
    # beside the measured layer: starts right of its extent, same y/z origin
    assert twin.translate[-1] > measured.extent.world[1][-1] and twin.translate[0] == measured.translate[0]
    # the user renames it and makes a layer with the generator's old name: regenerate replaces the tagged one
    twin.name = "my twin"
    decoy = viewer.add_labels(np.ones((4, 4), np.uint8), name=g._given_name or "twin lp-iso seed 0")
    decoy_before = decoy.data.copy()
    first = twin.data.copy()
    n_layers = len(viewer.layers)
    g.seed.setValue(11)
    with qtbot.waitSignal(g.generated, timeout=WAIT_MS):
        g.generate_button.click()
    assert g.layer is twin and len(viewer.layers) == n_layers and twin.name == "my twin"
    assert not np.array_equal(twin.data, first) and twin.metadata["seed"] == 11
    np.testing.assert_array_equal(decoy.data, decoy_before)
    # grid view: napari's grid cells share one camera, so the twin sits on the measured origin while
    # the grid is on, and goes back beside the measured layer (not onto it) when it is switched off
    beside = tuple(twin.translate)
    g.placement.setCurrentText("grid view")
    with qtbot.waitSignal(g.generated, timeout=WAIT_MS):
        g.generate_button.click()
    assert viewer.canvas.grid.enabled
    np.testing.assert_allclose(twin.translate, measured.translate)
    viewer.canvas.grid.enabled = False
    np.testing.assert_allclose(twin.translate, beside)
    viewer.canvas.grid.enabled = True
    np.testing.assert_allclose(twin.translate, measured.translate)


def test_generator_varies_where_the_binder_sits(make_napari_viewer, qtbot, tmp_path):
    """An adhering model (docs/model-format.md): its coverage and adhesion are fields of the form within
    their feasible ranges, an edit changes the rule (adhesion 0 is the sequential rule) and the twin."""
    from napari_assb_twin.model import build_model, save_model

    model = build_model("lp-iso", rule="adhering", rule_params={"coverage": 0.6, "adhesion": 0.5}, f1="chi2", f1_dof=1,
                        levels=("upper", "lower"), f2="chi2", f2_dof=3, order=("active", "electrolyte", "pore"),
                        length_scales_px=(5.0, 1.8), volume_fractions={"pore": 0.45, "active": 0.4, "electrolyte": 0.15})
    path = save_model(model, tmp_path / "adhering.json")
    viewer = make_napari_viewer()
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    g.load_model(str(path))
    spins = g.param_spins
    assert spins["rule.adhesion"].minimum() == 0.0 and spins["rule.adhesion"].maximum() == 1.0
    # a coverage too small for the binder to fit the room: refused with a message, the model unchanged
    start = len(notification_manager.records)
    spins["rule.coverage"].setValue(0.1)
    assert dict(g.model.rule.params)["coverage"] == pytest.approx(0.6)
    assert any("infeasible" in n.message for n in notification_manager.records[start:])
    spins["rule.adhesion"].setValue(0.0)
    assert dict(g.model.rule.params)["adhesion"] == 0.0
    seq = build_model("lp-iso", f1="chi2", f1_dof=1, levels=("upper", "lower"), f2="chi2", f2_dof=3,
                      order=("active", "electrolyte", "pore"), length_scales_px=(5.0, 1.8),
                      volume_fractions={"pore": 0.45, "active": 0.4, "electrolyte": 0.15})
    assert g.model.truncation == seq.truncation
    spins["rule.adhesion"].setValue(1.0)
    assert dict(g.model.rule.params)["adhesion"] == 1.0
    # all of the binder on the particles: it touches them far more than the sequential rule's does
    def contact(m):
        v = m.generate((48,) * 3, seed=1)
        a, b = v[:-1], v[1:]
        return np.count_nonzero(((a == 1) & (b == 2)) | ((a == 2) & (b == 1))) / np.count_nonzero((a == 1) != (b == 1))

    assert contact(g.model) > contact(seq) + 0.2


def test_generator_parameter_form_changes_the_model(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    g.source.setCurrentIndex(g.source.findData("ref:pressed-assb-cathode"))
    keys = set(g.param_spins)
    assert {"pore_fraction", "active_fraction", "electrolyte_fraction", "f1.dof", "f1.length_scale_inplane",
            "f1.anisotropy_ratio"} <= keys
    assert not any("correlation_length" in k for k in keys)  # derived values are not editable
    # the rule: the edited fraction and the third one are kept, the "Remainder to" phase (pore) takes the rest
    assert g.balance.currentText() == "pore" and g.param_spins["pore_fraction"].isReadOnly()
    before = dict(g.model.volume_fractions)
    g.param_spins["electrolyte_fraction"].setValue(0.4)
    vf = g.model.volume_fractions
    assert vf["electrolyte"] == pytest.approx(0.4) and vf["active"] == pytest.approx(before["active"])
    assert vf["pore"] == pytest.approx(1 - 0.4 - before["active"]) and sum(vf.values()) == pytest.approx(1.0)
    assert g.param_spins["pore_fraction"].value() == pytest.approx(vf["pore"], abs=1e-3)  # form follows
    # infeasible: refused with a message, the model and the field unchanged (no silent rescaling)
    start = len(notification_manager.records)
    g.param_spins["electrolyte_fraction"].setValue(0.99)
    assert g.model.volume_fractions == pytest.approx(vf) and g.param_spins["electrolyte_fraction"].value() == pytest.approx(0.4)
    assert any("exceeds 1" in n.message for n in notification_manager.records[start:])
    # another remainder phase: now active takes the rest
    g.balance.setCurrentText("active")
    g.param_spins["pore_fraction"].setValue(0.1)
    vf = g.model.volume_fractions
    assert vf["pore"] == pytest.approx(0.1) and vf["electrolyte"] == pytest.approx(0.4) and vf["active"] == pytest.approx(0.5)
    g.balance.setCurrentText("pore")
    g.param_spins["f1.anisotropy_ratio"].setValue(0.5)
    p = g.model.interpretable()
    assert p["f1.length_scale_axial"] == pytest.approx(0.5 * p["f1.length_scale_inplane"], rel=1e-4)
    assert g.param_spins["f1.length_scale_axial"].value() == pytest.approx(p["f1.length_scale_axial"], abs=1e-3)
    g.param_spins["f1.dof"].setValue(2)
    assert g.model.fields["f1"].dof == 2
    # the connectivity knob: quarter steps below 2 make the bridged field, whole steps above
    g.param_spins["f1.dof"].stepBy(-3)
    assert g.model.fields["f1"].dof == pytest.approx(1.25) and "chi2(1+0.25)" in g.model.structure.label
    g.param_spins["f1.dof"].stepBy(3)
    assert g.model.fields["f1"].dof == 2
    g.param_spins["f1.dof"].stepBy(1)  # 2.25 is no field: the next whole k
    assert g.model.fields["f1"].dof == 3 and g.param_spins["f1.dof"].value() == 3
    g.param_spins["f1.dof"].stepBy(-1)
    assert g.model.fields["f1"].dof == 2
    assert not g.param_spins["f2.dof"].isEnabled()  # the Gaussian field has no k
    base = g.base_model.interpretable()
    g.reset_button.click()
    assert g.model.interpretable() == base
    # the edited fraction shows up in a generated volume (48^3: fraction within 0.03)
    g.param_spins["electrolyte_fraction"].setValue(0.4)
    for s in g.shape_spins:
        s.setValue(48)
    with qtbot.waitSignal(g.generated, timeout=WAIT_MS):
        g.generate_button.click()
    assert fractions(g.layer.data)[2] == pytest.approx(0.4, abs=0.03)


def test_generator_compare_sections(make_napari_viewer, qtbot, volume, tmp_path):
    viewer = make_napari_viewer()
    add_phase_layer(viewer, volume, "measured")
    viewer.dims.set_current_step(0, 3)
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    with qtbot.waitSignal(g.compared, timeout=WAIT_MS):
        g.compare_button.click()
    cmp = g.comparison
    np.testing.assert_array_equal(cmp.measured, volume[3])
    assert cmp.simulated.shape == volume[3].shape and cmp.plane == "inplane" and cmp.unit == "um"
    np.testing.assert_allclose(cmp.cov_measured.volume_fractions, fractions(volume[3]), atol=1e-6)
    np.testing.assert_allclose(cmp.cov_simulated.volume_fractions, fractions(cmp.simulated), atol=1e-6)
    axes = g.canvas.figure.axes
    assert len(axes) == 1 and len(axes[0].lines) == 6  # coverage only: 3 phases x (measured, simulated)
    # the simulated section is a layer on the compared slice (z = 3), below the measured one, same scale
    sec = g.section_layer
    measured = viewer.layers["measured"]
    assert sec is not None and sec.data.shape == (1, 64, 64)
    np.testing.assert_array_equal(sec.data[0], cmp.simulated)
    np.testing.assert_allclose(sec.scale, measured.scale)
    assert sec.translate[0] == pytest.approx(measured.translate[0] + 3 * measured.scale[0])
    assert sec.translate[1] > measured.extent.world[1][1] and sec.translate[2] == measured.translate[2]
    # a long title is wrapped inside a narrow dock's figure, not clipped at its edge
    fig = g.canvas.figure
    fig.set_size_inches(1.8, 3.0)  # 180 px wide: "measured [z=3] (inplane)" does not fit on one line
    g._draw_comparison(export=False)
    box = fig.axes[0].title.get_window_extent(fig.canvas.get_renderer())
    assert "\n" in fig.axes[0].title.get_text() and 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
    # export at a fixed publication size whatever the dock's size: 7 x 5 in at 300 dpi, images included
    from PIL import Image as PILImage

    g.canvas.resize(300, 200)
    out = g.export_png(str(tmp_path / "sections.png"))
    assert out is not None and PILImage.open(out).size == (2100, 1500)
    assert len(g.canvas.figure.axes) == 1  # the dock's figure is back to coverage only


def test_generator_magicgui_form_drives_the_generated_twin(make_napari_viewer, qtbot, volume):
    """The parameter form is a magicgui form whose ranges are the model's own; a volume fraction set
    on its widget and Generate pressed gives a twin with that fraction (48^3: within 0.03)."""
    from magicgui.widgets import Container, FloatSpinBox, SpinBox

    viewer = make_napari_viewer()
    add_phase_layer(viewer, volume, "measured")
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    assert isinstance(g.params, Container) and g.model.variant == "lp-iso"
    ranges = g.model.parameter_ranges()
    for key, rng in ranges.items():  # typed widgets with the model's limits, not the dock's
        w = g.params[key]
        assert isinstance(w, SpinBox if rng.kind == "count" else FloatSpinBox), key
        assert w.min == pytest.approx(rng.low, abs=1e-3) and w.max == pytest.approx(rng.high), key
        assert g.param_spins[key] is w.native
    assert g.params["f1.length_scale"].native.suffix() == " \u00b5m"
    for s in g.shape_spins:
        s.setValue(48)
    with qtbot.waitSignal(g.generated, timeout=WAIT_MS):
        g.generate_button.click()
    before = fractions(g.layer.data)
    vf0 = dict(g.model.volume_fractions)
    assert before[1] == pytest.approx(vf0["active"], abs=0.03)
    g.params["active_fraction"].value = 0.45  # the remainder rule: electrolyte kept, pore takes the rest
    vf = g.model.volume_fractions
    assert vf["active"] == pytest.approx(0.45) and vf["electrolyte"] == pytest.approx(vf0["electrolyte"])
    assert g.params["pore_fraction"].value == pytest.approx(1 - 0.45 - vf0["electrolyte"], abs=1e-3)
    with qtbot.waitSignal(g.generated, timeout=WAIT_MS):
        g.generate_button.click()
    after = fractions(g.layer.data)
    assert after[1] == pytest.approx(0.45, abs=0.03) and after[2] == pytest.approx(vf0["electrolyte"], abs=0.03)
    assert g.layer.metadata["model_parameters"]["active_fraction"] == pytest.approx(0.45)
    # an infeasible edit on the widget is refused with the rule's message, and the widget goes back
    start = len(notification_manager.records)
    g.params["electrolyte_fraction"].value = 0.7
    assert g.model.volume_fractions["electrolyte"] == pytest.approx(vf0["electrolyte"])
    assert g.params["electrolyte_fraction"].value == pytest.approx(vf0["electrolyte"], abs=1e-3)
    assert any("exceeds 1" in n.message for n in notification_manager.records[start:])
    # the summary line gives every 1/e length with its unit
    assert re.search(r"F1 in-plane [\d.]+ \u00b5m, F2 in-plane [\d.]+ \u00b5m", g.model_label.text()), g.model_label.text()


def test_generator_bad_inputs_notify(make_napari_viewer, qtbot, notes, tmp_path):
    viewer = make_napari_viewer()
    g = GeneratorWidget(viewer)
    qtbot.addWidget(g)
    assert g.compare() is None and "choose the measured layer" in errors(notes)[-1]
    g.device.setEditText("cuda:7")
    assert g.generate() is None and "cuda:7" in errors(notes)[-1]
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    assert g.load_model(str(bad)) is None and "Cannot load the model" in errors(notes)[-1]
    assert not g.set_param("active_fraction", 1.5)
    assert "exceeds 1" in errors(notes)[-1]
    assert not g.set_param("pore_fraction", 0.2)  # the remainder phase is not typed in
    assert "takes the remainder" in errors(notes)[-1]


# --------------------------------------------------------------------------------------------
# the docks as napari offers them (Plugins menu, through the installed manifest)
# --------------------------------------------------------------------------------------------
def test_plugin_menu_opens_one_workflow_dock(make_napari_viewer, npe2pm):
    """What the Plugins menu does, with our manifest registered in napari's test plugin manager:
    one entry, one dock, the four steps as tabs sharing the viewer."""
    import napari_assb_twin
    from napari_assb_twin._napari._widgets import CompareWidget, WorkflowWidget
    from napari_assb_twin._napari._widgets.workflow_widget import STEP_TITLES

    manifest = Path(napari_assb_twin.__file__).parent / "napari.yaml"
    with npe2pm.tmp_plugin(manifest=str(manifest)):
        viewer = make_napari_viewer()
        widgets = [w.display_name for w in npe2pm.get_manifest("napari-assb-twin").contributions.widgets]
        assert widgets == ["Digital twin workflow"]
        dock, widget = viewer.window.add_plugin_dock_widget("napari-assb-twin", widgets[0])
        assert isinstance(widget, WorkflowWidget) and getattr(widget.viewer, "__wrapped__", widget.viewer) is viewer
        assert widgets[0] in dock.name
        assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == list(STEP_TITLES)
        kinds = (CoverageWidget, CalibrationWidget, GeneratorWidget, CompareWidget)
        assert all(isinstance(step, kind) for step, kind in zip(widget.steps, kinds))


@pytest.mark.parametrize("dock", ["calibration", "generator"])
def test_load_model_through_the_file_dialog(make_napari_viewer, qtbot, monkeypatch, tmp_path, dock):
    """Load model... with no path opens QFileDialog; the path it returns is the one read and named."""
    from qtpy.QtWidgets import QFileDialog

    from napari_assb_twin.model import save_model

    viewer = make_napari_viewer()
    w = (CalibrationWidget if dock == "calibration" else GeneratorWidget)(viewer)
    qtbot.addWidget(w)
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    save_model(load_reference_model("pressed-assb-cathode"), paths[0])
    save_model(load_reference_model("hole-effect-assb-cathode-hp"), paths[1])
    chosen = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(chosen[-1]), "")))
    for path in paths:
        chosen.append(path)
        w.load_button.click()
    if dock == "calibration":
        assert w.model_source == "loaded from second.json" and w.state.source == "loaded from second.json"
    else:  # both files stay offered, each under its own name (no "None" key overwritten)
        assert set(w._loaded) == {str(p) for p in paths}
        assert w.source.currentText() == "file: second.json" and "f1.stretch" in w.param_spins
        w.source.setCurrentIndex(w.source.findData(f"file:{paths[0]}"))
        assert "f1.anisotropy_ratio" in w.param_spins
    # a cancelled dialog changes nothing
    before = w.model
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    w.load_button.click()
    assert w.model is before


def test_docks_of_one_viewer_share_the_model(make_napari_viewer, qtbot, tmp_path):
    """Loading a model in the calibration dock updates an already open generator dock."""
    from napari.utils._proxies import PublicOnlyProxy

    viewer = make_napari_viewer()
    g = GeneratorWidget(PublicOnlyProxy(viewer))  # napari gives each plugin dock its own proxy
    c = CalibrationWidget(PublicOnlyProxy(viewer))
    other = GeneratorWidget(make_napari_viewer())  # a second viewer keeps its own model
    for w in (g, c, other):
        qtbot.addWidget(w)
    from napari_assb_twin.model import save_model

    path = tmp_path / "hp.json"
    save_model(load_reference_model("hole-effect-assb-cathode-hp"), path)
    model = c.load_model(str(path))
    assert g.model is model and g.source.currentText() == "\u2605 loaded from hp.json"
    assert "f1.stretch" in g.param_spins and other.model is not model


def test_coverage_overlays_layers_without_axis_names(make_napari_viewer, qtbot, volume, section):
    """A layer added by hand (napari's default axis labels "-2", "-1") shares the panels of a read one."""
    viewer = make_napari_viewer()
    add_phase_layer(viewer, section[:64, :64], "read")
    viewer.add_labels(volume[0], name="by hand")
    w = CoverageWidget(viewer)
    qtbot.addWidget(w)
    w.layers.set_checked(list(viewer.layers))
    with qtbot.waitSignal(w.computed, timeout=WAIT_MS):
        w.compute_button.click()
    assert [c.axis_labels for c in w.curves] == [("y", "x"), ("y", "x")]
    assert [ax.get_title() for ax in w.canvas.figure.axes if ax.get_visible()] == ["along y", "along x"]
    assert all(c.unit is None for c in w.curves[:1])  # the hand-made layer is in pixels: the plot too
    assert w.canvas.figure.axes[0].get_xlabel() == "r (px)"


def test_loss_plot_adds_adversarial_panel_when_those_losses_appear(make_napari_viewer, qtbot):
    """Records as the engine yields them: coverage first, adversarial losses from a later stage."""
    from napari_assb_twin.calibrate import Progress

    viewer = make_napari_viewer()
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    for it in range(1, 7):
        losses = {"coverage": 10.0 / it, "lr": 0.01}
        if it % 2:
            losses["coverage_eval"] = 8.0 / it
        if it > 3:
            losses.update(critic=-1.0 * it, generator=0.5 * it, wasserstein=0.2 * it)
        w.run.update(Progress(it, 6, losses, {"pore_fraction": 0.1}, 0.1 * it, 8.0 / max(1, it - it % 2), "stage", ""))
    assert w.run.losses["critic"][:3] == [pytest.approx(np.nan, nan_ok=True)] * 3  # padded before it appeared
    assert all(len(v) == 6 for v in w.run.losses.values())
    w.plot_losses()
    top, bottom = w.canvas.figure.axes
    assert top.get_yscale() == "log" and len(top.lines) == 2 + 1  # train, eval, best-iteration marker
    assert [line.get_label() for line in bottom.lines] == ["critic", "generator", "wasserstein"]
    assert "lr" not in w.run.losses or all(line.get_label() != "lr" for line in top.lines)


def test_calibration_dock_starts_like_the_command_line(make_napari_viewer, qtbot, monkeypatch):
    """The "model selection" box and the variant start from options.CALIBRATION_MODEL, the default
    of `assb-twin calibrate --model` (one setting for both front ends)."""
    from napari_assb_twin import options
    from napari_assb_twin.cli import build_parser

    parsed = build_parser().parse_args(["calibrate", "x.png", "--out", "out.json"])
    assert parsed.model == options.CALIBRATION_MODEL
    viewer = make_napari_viewer()
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    assert w.select_structure.isChecked() == (options.CALIBRATION_MODEL == options.AUTO)
    for setting, checked, variant in (("lp-cyl", False, "lp-cyl"), (options.AUTO, True, options.AUTO)):
        monkeypatch.setattr(options, "CALIBRATION_MODEL", setting)
        w = CalibrationWidget(viewer)
        qtbot.addWidget(w)
        assert w.select_structure.isChecked() is checked and w.variant.currentText() == variant, setting


def test_auto_variant_follows_the_planes_as_the_command_line(make_napari_viewer, qtbot, section):
    """"auto" resolves by jobs.selection_variant, the CLI's rule: lp-cyl once an axial section is
    in the table, lp-iso for in-plane sections only; a chosen variant is kept."""
    from napari_assb_twin import options
    from napari_assb_twin.jobs.calibrate import selection_variant

    viewer = make_napari_viewer()
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.variant.setCurrentText(options.AUTO)
    layer = add_phase_layer(viewer, section, "measured")
    other = add_phase_layer(viewer, section.T.copy(), "measured axial")
    w.data_table.set_checked({layer: "in-plane"})
    data = w.build_data()
    assert w.build_config(data.planes).variant == selection_variant(options.AUTO, data.planes) == "lp-iso"
    w.data_table.set_checked({layer: "in-plane", other: "axial"})
    data = w.build_data()
    assert w.build_config(data.planes).variant == selection_variant(None, data.planes) == "lp-cyl"
    w.variant.setCurrentText("hp-iso")
    assert w.build_config(data.planes).variant == "hp-iso"


def _start_with_selection(make_napari_viewer, qtbot, section):
    """A calibration dock on one measured layer, started with model selection and 5 steps."""
    viewer = make_napari_viewer()
    add_phase_layer(viewer, section, "measured")
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.iterations.setValue(5)
    w.select_structure.setChecked(True)
    return w, w.start()


def test_calibration_with_model_selection_uses_the_winning_structure(make_napari_viewer, qtbot, section):
    """The dock's "choose the structure by model selection": about 20 candidate fits run in the
    worker, the winner's structure is the calibrated model's, and the ranking is kept."""
    w, worker = _start_with_selection(make_napari_viewer, qtbot, section)
    assert worker is not None and not w.select_structure.isEnabled()
    with qtbot.waitSignal(worker.finished, timeout=4 * WAIT_MS):
        pass
    assert w.selection is not None and w.selection.label and "rank" in w.selection.table
    model = w.model
    assert model is not None and w.select_structure.isEnabled()
    # the calibrated model has the selected structure: its construction is named in the winning label
    order = model.construction.order
    from napari_assb_twin.phases import PHASE_NAMES

    a, b, c = (PHASE_NAMES[i] for i in order)
    f2 = model.fields["f2"]
    f2_label = "gauss" if f2.kind == "gaussian" else f"chi2(k={f2.dof}) {model.rule.levels[1]}"
    assert w.selection.label.startswith(f"{a}=") and f"{b}={f2_label}(F2); {c}=rest" in w.selection.label
    assert w.selection.label.endswith(model.fields["f1"].covariance.family.name)


def test_stop_during_model_selection_leaves_no_model_and_no_error(make_napari_viewer, qtbot, section):
    w, worker = _start_with_selection(make_napari_viewer, qtbot, section)
    qtbot.waitUntil(lambda: "Model selection" in w.status.text(), timeout=WAIT_MS)
    w.stop()
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    assert w.model is None and w.selection is None
    assert w.status.text().startswith("Stopped") and w.start_button.isEnabled()


# --------------------------------------------------------------------------------------------
# the whole workflow in the one dock, driven by its own buttons
# --------------------------------------------------------------------------------------------
def test_voxel_size_keeps_the_slice_on_view_and_the_image_in_the_canvas(make_napari_viewer, qtbot):
    """Set 0.39 um on a 256-slice stack shown at z=128: the slider stayed at the same world value,
    past the new extent, so it jumped to the last slice (z=255) and the canvas showed nothing."""
    from napari_assb_twin._napari._widgets._voxel import VoxelSizeBox

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((256, 32, 48), np.uint8), name="stack")
    viewer.dims.set_current_step(0, 128)
    box = VoxelSizeBox(viewer)
    qtbot.addWidget(box)
    box.layer_combo.set_layer(layer)
    box.unit.setCurrentText("um")
    box.size.setValue(0.39)
    assert box.apply()
    np.testing.assert_allclose(layer.scale, (0.39,) * 3)
    assert viewer.dims.current_step[0] == 128  # the same slice, not the last one
    assert int(round(layer.world_to_data(viewer.dims.point)[0])) == 128
    # the camera looks at the rescaled image: its centre inside the layer's (new) world extent
    lo, hi = np.asarray(layer.extent.world)
    centre = np.asarray(viewer.scene.camera.center)[-2:]
    assert np.all(centre >= lo[-2:] - 1e-6) and np.all(centre <= hi[-2:] + 1e-6), (centre, lo, hi)


def test_full_workflow_by_the_docks_buttons(make_napari_viewer, qtbot, tmp_path):
    """Voxel size -> coverage -> calibrate -> generate -> compare sections -> validate, by button."""
    from napari_assb_twin._napari._widgets import WorkflowWidget

    viewer = make_napari_viewer()
    stack = load_reference_model("reference-assb-cathode").generate((40, 40, 40), seed=3, device="cpu")
    measured = viewer.add_labels(stack, name="measured")  # opened without a voxel size: pixels
    w = WorkflowWidget(viewer)
    qtbot.addWidget(w)
    # 0. the voxel row gives the layer its calibration (scale and units)
    w.voxel.layer_combo.set_layer(measured)
    w.voxel.unit.setCurrentText("um")
    w.voxel.size.setValue(0.25)
    w.voxel.apply_button.click()
    np.testing.assert_allclose(measured.scale, (0.25,) * 3)
    assert all(str(u) == "micrometer" for u in measured.units)
    # 1. coverage of the whole stack, distances in um
    cov = w.coverage
    cov.layers.set_checked([measured])
    cov.scope.setCurrentText(SCOPE_STACK)
    cov.r_max.setValue(10)
    with qtbot.waitSignal(cov.computed, timeout=WAIT_MS):
        cov.compute_button.click()
    assert cov.curves[0].result.unit == "um" and cov.curves[0].result.voxel_size == pytest.approx(0.25)
    # 2. calibrate (a short coverage run) -> the model is in um with the layer's voxel size
    cal = w.calibration
    cal.data_table.set_checked({measured: "3D: in-plane sections"})
    cal.select_structure.setChecked(False)
    cal.iterations.setValue(8)
    with qtbot.waitSignal(cal.calibration_finished, timeout=WAIT_MS) as done:
        cal.start_button.click()
    model = done.args[0]
    assert model is not None and model.unit == "um" and model.voxel_size == pytest.approx(0.25)
    # a number, not "data noise n/a": the split-half estimate works on the dock's sections
    assert re.search(r"coverage RMSE \d\.\d{4} \(data noise \d\.\d{4}\)", cal.status.text()), cal.status.text()
    qtbot.waitUntil(lambda: cal.worker is None, timeout=WAIT_MS)
    # 3. generate beside the measured layer, with its scale
    gen = w.generator
    assert gen.model is model and gen.reference.layer() is measured
    for s in gen.shape_spins:
        s.setValue(32)
    with qtbot.waitSignal(gen.generated, timeout=WAIT_MS):
        gen.generate_button.click()
    twin = gen.layer
    np.testing.assert_allclose(twin.scale, measured.scale)
    # 4. compare sections of the shown slice
    viewer.dims.set_current_step(0, 20)
    with qtbot.waitSignal(gen.compared, timeout=WAIT_MS):
        gen.compare_button.click()
    np.testing.assert_array_equal(gen.comparison.measured, stack[20])
    # 5. validate: measured = the opened layer, twin = the generated one (preselected), in um
    val = w.validation
    assert val.real_combo.layer() is measured and val.twin_combo.layer() is not measured
    val.twin_combo.set_layer(twin)
    with qtbot.waitSignal(val.compared, timeout=WAIT_MS):
        val.compare_button.click()
    qtbot.waitUntil(lambda: val.worker is None, timeout=WAIT_MS)
    cmp = val.comparison
    assert cmp.voxel_size == pytest.approx(0.25) and cmp.unit == "um" and len(val.table_values()) == len(cmp.descriptors)
    assert val.events and val.events[-1].total > 0
    # the filled table is readable in the dock's width (1366 px screen): no column beyond the view
    from napari_assb_twin._napari._widgets.workflow_widget import DOCK_MIN_WIDTH

    w.resize(DOCK_MIN_WIDTH + 20, 700)
    w.show()
    w.show_step(val)
    qtbot.waitExposed(w)
    qtbot.wait(200)
    table = val.table
    widths = [table.columnWidth(c) for c in range(table.columnCount()) if not table.isColumnHidden(c)]
    assert sum(widths) <= table.viewport().width() + 1 and min(widths[1:]) > 20, (widths, table.viewport().width())
    # every value is shown whole (the number columns fit their contents), the phase column keeps room
    metrics = table.fontMetrics()
    for r in range(table.rowCount()):
        for c in range(1, table.columnCount()):
            item = table.item(r, c)
            if item is not None and table.columnSpan(r, 0) == 1 and not table.isColumnHidden(c):
                assert metrics.horizontalAdvance(item.text()) <= table.columnWidth(c), (item.text(), table.columnWidth(c))
    assert table.columnWidth(0) >= 60


# --------------------------------------------------------------------------------------------
# the calibration job's adapters hide no errors (issue 19)
# --------------------------------------------------------------------------------------------
def _run_calibration_job(section, factory):
    from napari_assb_twin._napari._widgets.calibration_widget import calibration_job
    from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData
    from napari_assb_twin.jobs import run_job

    data = CalibrationData.from_arrays([section], planes=["inplane"])
    cfg = CalibrationConfig(variant="lp-iso", iterations=2, r_max=8, device="cpu")
    return run_job(calibration_job(data, cfg, factory))


def test_calibration_job_reports_a_bad_setting_but_raises_a_bug(section):
    from napari_assb_twin._napari._widgets.calibration_widget import _Failed

    def bad_setting(data, cfg):
        raise ValueError("r_max 99 is larger than the sections allow")

    def bug(data, cfg):
        raise TypeError("unsupported operand type(s)")  # a programming error: it must not read "Not started"

    assert _run_calibration_job(section, bad_setting) == _Failed("r_max 99 is larger than the sections allow")
    with pytest.raises(TypeError, match="unsupported operand"):
        _run_calibration_job(section, bug)


def test_calibration_job_waits_at_a_closed_gate_and_goes_on_when_it_opens(section):
    """The dock closes the job's gate for the loss plot's one full draw: the worker then waits before
    its next event, and goes on as soon as the gate opens (superqt's pause could miss the resume)."""
    import threading
    import time

    from napari_assb_twin._napari._widgets.calibration_widget import calibration_job
    from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator

    data = CalibrationData.from_arrays([section], planes=["inplane"])
    cfg = CalibrationConfig(variant="lp-iso", iterations=3, r_max=8, device="cpu")
    gate = threading.Event()
    gate.set()
    job = calibration_job(data, cfg, Calibrator, False, gate)
    assert next(job).stage == "representativeness"  # the input's, before the entry checks
    stages = [next(job).stage]  # "started"
    gate.clear()
    threading.Timer(0.5, gate.set).start()
    t0 = time.monotonic()
    stages.append(next(job).stage)  # held until the timer opens the gate
    assert time.monotonic() - t0 >= 0.45
    stages += [e.stage for e in job]
    assert stages == ["started", "noise", "calibrate", "calibrate", "calibrate"]


def test_data_noise_does_not_swallow_errors(monkeypatch, section):
    """The data's noise is measured once, by the calibrate use case (its "noise" event), for both front ends."""
    from napari_assb_twin.calibrate import noise
    import napari_assb_twin.jobs.calibrate  # noqa: F401 - the module, not the function jobs re-exports

    job = sys.modules["napari_assb_twin.jobs.calibrate"]

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'coverage'")

    monkeypatch.setattr(noise, "coverage_noise_rmse", broken)
    cal = type("Cal", (), {"data": object(), "r_max": 8, "config": type("Cfg", (), {"weighting": "variance"})()})()
    with pytest.raises(AttributeError, match="no attribute 'coverage'"):
        job._noise(cal)


def test_generator_compare_refuses_a_second_run_while_one_runs(make_napari_viewer, qtbot, notes, volume):
    viewer = make_napari_viewer()
    measured = add_phase_layer(viewer, volume, "measured")
    w = GeneratorWidget(viewer)
    qtbot.addWidget(w)
    w.reference.set_layer(measured)
    viewer.dims.set_current_step(0, 10)
    first = w.compare()
    assert first is not None
    assert w.compare() is None  # refused, not a second worker over the first's layer and plot
    assert any("already running" in m for m in errors(notes))
    qtbot.waitUntil(lambda: w.compare_worker is None, timeout=WAIT_MS)


def test_calibrate_lists_a_segmentation_opened_as_a_uint8_image(make_napari_viewer, qtbot, notes, section):
    """napari's own reader opens a segmented TIFF as a uint8 Image layer: Coverage and Validate took
    it, Calibrate showed an empty table and 'open a segmentation'."""
    viewer = make_napari_viewer()
    image = viewer.add_image(section.astype(np.uint8), name="segmented.tif")
    grey = viewer.add_image(section.astype(np.float32), name="grey values")  # never offered: not labels
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    rows = [w.data_table.item(r, 0).text() for r in range(w.data_table.rowCount())]
    assert rows == ["segmented.tif"], rows
    w.data_table.set_checked({image: "in-plane"})
    data = w.build_data()
    assert len(data) >= 1
    assert grey.name not in rows
    viewer.layers.remove(image)  # only grey values left: the message says what to open or tick
    with pytest.raises(ValueError, match="integer labels"):
        w.build_data()


def _simulate_cvd(rgb: np.ndarray, kind: str) -> np.ndarray:
    """Colours as seen with protanopia / deuteranopia (Vienot, Brettel & Mollon 1999, linear RGB)."""
    m = {"protan": [[0.11238, 0.88762, 0.0], [0.11238, 0.88762, 0.0], [0.00401, -0.00401, 1.0]],
         "deutan": [[0.29275, 0.70725, 0.0], [0.29275, 0.70725, 0.0], [-0.02234, 0.02234, 1.0]]}[kind]
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return np.clip(lin @ np.asarray(m).T, 0, 1) ** (1 / 2.2)


@pytest.mark.parametrize("background", ["#262930", "#ffffff"])
def test_coverage_pair_colours_are_distinct_for_colour_blind_readers(background):
    """C_AA and C_PA were both orange (a blend of the phase colours); the six C_ij now differ, also
    as protanopes and deuteranopes see them."""
    from matplotlib.colors import to_rgb

    from napari_assb_twin._napari._widgets._plot import pair_color

    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    rgb = np.array([to_rgb(pair_color(i, j, background)) for i, j in pairs])
    for view in (rgb, _simulate_cvd(rgb, "protan"), _simulate_cvd(rgb, "deutan")):
        d = np.linalg.norm(view[:, None] - view[None], axis=-1)
        d[np.diag_indices(len(pairs))] = np.inf
        assert d.min() > 0.12, (view, d.min())
