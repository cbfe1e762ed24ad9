"""Calibration dock widget: fit a digital-twin model to Labels layers in a napari thread worker.

The worker runs the calibrate use case (:func:`napari_assb_twin.jobs.calibrate.calibrate`, model
selection first when asked) through :func:`calibration_job`; every event is a ``JobProgress``
(stages ``selection``, ``selected``, ``started``, ``noise``, ``calibrate``) that reaches the main
thread through ``yielded``, where the progress bar, the live loss curves and the parameter table are
updated (throttled, so a fast loop cannot flood the GUI). Stop, napari's cancel and closing the
window all end the job one way: ``worker.quit()``, which closes the job generator at its next
event; the best-so-far model is then taken from the calibrator of the ``started`` event (``returned``
is never emitted). The calibrated model is published to the viewer's :class:`~._state.TwinState`,
where the generator dock picks it up.

torch and the engine are imported when the widget is built or used, never at module import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Layer
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._jobs import guard_close, start_worker, stop_and_join
from ._common import (
    GENERATED_TAG,
    is_label_layer,
    PLANE_LABELS,
    ask_load_model,
    ask_save_path,
    combo_device,
    current_section,
    device_choices,
    follow_layer_list,
    info,
    layer_phase_data,
    notify_error,
    refuse_overwrite,
    typed_form,
    warn,
)
from ._plot import InchMargins, ThemedCanvas, display_unit
from ._state import CalibrationRun, twin_state

if TYPE_CHECKING:
    import napari

__all__ = ["CalibrationWidget", "DataTable", "format_param", "PLANE_CHOICES_2D", "PLANE_CHOICES_3D"]

from ... import options
from ...jobs.events import JobProgress
from ...options import ALGORITHMS, AUTO, COARSE_OPERATORS, MODEL_CHOICES
from ...phasemap import PhaseMap

#: Plane choices of a 2D layer: which kind of section of the 3D material it is.
PLANE_CHOICES_2D = tuple(PLANE_LABELS)
#: How sections are cut from a 3D layer (the symmetry axis is the layer's axis 0).
#: The first is the default for a 3D layer: the whole layer as a volume (its 3D C_ij in the loss, its
#: 3D connectivity and tau in model selection); the others cut 2D sections from it.
#: The last marks a coarser volume of the same material (its own voxel size, labels that may merge
#: phases: the tab's "Coarse labels"), used beside fine sections or volumes.
PLANE_CHOICES_3D = ("3D: volume", "3D: in-plane + axial sections", "3D: in-plane sections", "3D: shown slice",
                    "3D: coarse volume")
SECTIONS_PER_PLANE = 16  # the exact estimator makes data sections nearly free: more of them, less sampling noise
# losses drawn in the live plot (the others, lr and temperature, are schedules, not losses)
_COVERAGE_LOSSES = ("coverage", "coverage_eval")
_ADV_LOSSES = ("critic", "generator", "wasserstein")
_REDRAW_S = 0.3


def format_param(key: str, value: float, unit: str) -> tuple[str, str]:
    """Readable name and value of an interpretable parameter (lengths with their unit)."""
    name = key.replace("_fraction", " fraction").replace("f1.", "field 1 ").replace("f2.", "field 2 ")
    name = name.replace("_", " ")
    if key.endswith("_fraction"):
        return name, f"{value:.3f}"
    if key.endswith(".dof"):
        return name + " (k)", f"{int(round(value))}"
    if "length" in key:
        return name, f"{value:.3g} {display_unit(unit if unit != 'px' else None)}"
    return name, f"{value:.3g}"


@dataclass
class _Failed:
    """A job that could not start (a bad setting found by the use case's entry checks)."""

    message: str


@dataclass
class _Selected:
    """The last model selection: the winning structure and the ranking table."""

    label: str
    table: str


def calibration_job(data: Any, config: Any, factory: Callable[..., Any], select: bool = False):
    """Generator run in the worker thread: the calibrate use case (:func:`napari_assb_twin.jobs.calibrate`,
    model selection first when ``select``), its ``JobProgress`` events passed on unchanged.

    Returns the use case's :class:`~napari_assb_twin.jobs.calibrate.CalibrationRun`, or
    :class:`_Failed` when its entry checks (settings, data, the device) refuse to start with a
    ``ValueError`` before the first event; anything later, or of another type, is a failure and
    reaches napari's error notification with its traceback. Closing this generator closes the job.
    """
    from ...jobs.calibrate import calibrate

    job = calibrate(data, config, select=select, variant=config.variant, factory=factory)
    try:
        try:
            first = next(job)
        except ValueError as exc:
            return _Failed(str(exc))
        yield first
        return (yield from job)
    finally:
        job.close()


class DataTable(QTableWidget):
    """Table of the viewer's Labels layers: tick the ones to calibrate on and say what they are.

    Column 0: layer name with a check box; column 1: plane (2D layers: in-plane / axial section;
    3D layers: which sections to cut from the volume).
    """

    changed = Signal()

    def __init__(self, viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self._viewer = viewer
        self._layers: list[Layer] = []
        self._ticked: set[int] = set()
        self._planes: dict[int, str] = {}
        self.setHorizontalHeaderLabels(["Labels layer", "Section / plane"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setVisible(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setMinimumHeight(60)
        self.setMaximumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)  # 60-120 px as room allows
        follow_layer_list(viewer, self.refresh, self._watch_name)
        self.itemChanged.connect(self._on_item)
        self.refresh()

    def _watch_name(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)

    def refresh(self, event: Any = None) -> None:
        self.blockSignals(True)
        self.clearContents()  # drops the previous rows' plane combos too
        # the generator's own layers (twins, simulated sections) are results, not measurements; an
        # integer Image layer (a segmentation opened with napari's own reader) is a phase map too
        self._layers = [lay for lay in reversed(self._viewer.layers)
                        if is_label_layer(lay) and GENERATED_TAG not in lay.metadata]
        if not self._ticked & {id(lay) for lay in self._layers} and self._layers:
            self._ticked = {id(self._layers[0])}
        self.setRowCount(len(self._layers))
        for row, layer in enumerate(self._layers):
            item = QTableWidgetItem(layer.name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if id(layer) in self._ticked else Qt.CheckState.Unchecked)
            item.setToolTip(f"{layer.name}: {layer.ndim}D, shape {tuple(layer.data.shape)}")
            self.setItem(row, 0, item)
            combo = QComboBox()
            choices = PLANE_CHOICES_3D if layer.ndim == 3 else PLANE_CHOICES_2D
            combo.addItems(choices)
            plane = self._planes.get(id(layer), choices[0])
            combo.setCurrentText(plane if plane in choices else choices[0])
            combo.currentTextChanged.connect(lambda text, lay=layer: self._set_plane(lay, text))
            combo.setToolTip(
                "in-plane: section perpendicular to the pressing (symmetry) axis; axial: section "
                "containing it, with the axis along the image rows. 3D layers: axis 0 is the symmetry axis; "
                "'3D: volume' calibrates on the whole volume (3D C_ij, and 3D connectivity and tortuosity "
                "in model selection), the others on sections cut from it"
            )
            self.setCellWidget(row, 1, combo)
        self.blockSignals(False)
        self.changed.emit()

    def _set_plane(self, layer: Layer, text: str) -> None:
        self._planes[id(layer)] = text
        self.changed.emit()

    def _on_item(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        layer = self._layers[item.row()]
        if item.checkState() == Qt.CheckState.Checked:
            self._ticked.add(id(layer))
        else:
            self._ticked.discard(id(layer))
        self.changed.emit()

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def plane_of(self, layer: Layer) -> str:
        row = self._layers.index(layer)
        return self.cellWidget(row, 1).currentText()

    def checked(self) -> list[tuple[Layer, str]]:
        """``[(layer, plane choice), ...]`` of the ticked layers."""
        return [(lay, self.plane_of(lay)) for lay in self._layers if id(lay) in self._ticked]

    def set_checked(self, choices: dict[Layer, str] | list[Layer]) -> None:
        """Tick exactly these layers (optionally with their plane choice); for scripts and tests."""
        if not isinstance(choices, dict):
            choices = {lay: "" for lay in choices}
        unknown = [lay.name for lay in choices if lay not in self._layers]
        if unknown:
            raise ValueError(f"layers {unknown} are not Labels layers of this viewer")
        self._ticked = {id(lay) for lay in choices}
        for lay, plane in choices.items():
            if plane:
                valid = PLANE_CHOICES_3D if lay.ndim == 3 else PLANE_CHOICES_2D
                if plane not in valid:
                    raise ValueError(f"plane {plane!r} does not apply to {lay.name!r}; use one of {valid}")
                self._planes[id(lay)] = plane
        self.refresh()


class CalibrationWidget(QWidget):
    """Dock widget: calibrate a digital twin on Labels layers, live, and save / load it.

    Public sub-widgets: ``data_table``, ``variant``, ``select_structure`` (model selection before
    calibrating), ``algorithm``, ``iterations``, ``device`` (editable: ``auto`` or a device name),
    ``seed``, ``start_button``, ``stop_button``, ``save_button``, ``load_button``, ``progress_bar``,
    ``status``, ``param_table``, ``canvas``. State: ``run`` (:class:`CalibrationRun`), ``model``
    (best / loaded model), ``worker``, ``calibrator``, ``selection`` (label and ranking of the last
    model selection). ``calibrator_factory`` builds the engine (replaceable in tests).
    ``calibration_finished`` is emitted with the best model when a run ends (None if it could not start).
    """

    calibration_finished = Signal(object)

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = twin_state(napari_viewer)
        self.run = CalibrationRun()
        self.model: Any = None
        self.model_source = ""
        self.worker: Any = None
        self.calibrator: Any = None
        self.calibrator_factory: Callable[..., Any] | None = None
        self.selection: _Selected | None = None  # the last model selection (label, ranking table)
        self.noise_rmse: float | None = None  # the data's own sampling noise of C_ij (split-half)
        self._last_draw = 0.0
        self._t_start = 0.0
        self._data_layers: list[str] = []
        self._unit = "px"

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_data_box())
        layout.addWidget(self._build_settings())
        layout.addLayout(self._build_run_controls())
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        self._build_live_view()
        layout.addWidget(self.canvas, stretch=2)
        layout.addWidget(self.param_table, stretch=1)
        # closing the dock mid-run: let the training thread end instead of running on unseen
        self.destroyed.connect(self._abandon)
        guard_close(napari_viewer, self)

    def _build_data_box(self) -> QGroupBox:
        self.data_table = DataTable(self.viewer)
        data_box = QGroupBox("Measured data")
        data_layout = QVBoxLayout(data_box)
        data_layout.setContentsMargins(6, 6, 6, 6)
        data_layout.addWidget(self.data_table)
        return data_box

    def _build_settings(self) -> QWidget:
        """The typed settings as a magicgui form (napari's own form style); the Qt widgets behind
        it stay attributes (``variant``, ``select_structure``, ``algorithm``, ``iterations``,
        ``device``, ``seed``) for scripts and tests."""
        from magicgui.widgets import CheckBox, ComboBox, LineEdit, SpinBox

        # the dock starts where `assb-twin calibrate` does without --model (options.CALIBRATION_MODEL,
        # read now so the one setting rules both): "auto" = model selection first, for the variant that
        # jobs.selection_variant derives from the sections' planes (lp-cyl with an axial section, else lp-iso)
        initial = options.CALIBRATION_MODEL
        self.settings = typed_form([
            ComboBox(name="variant", label="Model variant", choices=list(MODEL_CHOICES),
                     value=initial if initial in MODEL_CHOICES else AUTO,
                     tooltip="auto: lp-cyl when an axial section is in the table, else lp-iso (as the CLI). "
                             "lp: few parameters (length scales); hp: spectral knots. iso / cyl: isotropic or "
                             "cylindrically symmetric about the pressing axis (needs axial sections)"),
            CheckBox(name="select_structure", text="choose the structure by model selection",
                     value=initial == AUTO,
                     tooltip="Before calibrating, rank about 1,300 candidate structures (truncation rule, phase "
                             "ordering, field type and level) by their exact 2D topology, fit the best ~15 briefly "
                             "by coverage matching and keep the one whose sections match the data's topology, chord "
                             "lengths, lineal paths and boundary lengths best (statistics the fit did not use)"),
            ComboBox(name="algorithm", label="Algorithm", choices=list(ALGORITHMS),
                     tooltip="coverage: match two-point coverage functions (fast); adversarial: a discriminator "
                             "compares sections; combined: both"),
            SpinBox(name="iterations", label="Iterations", min=1, max=100_000, value=300),
            ComboBox(name="device", label="Device", choices=device_choices(),
                     tooltip="auto picks CUDA, then Apple MPS, then CPU; or type a device such as cuda:1"),
            SpinBox(name="seed", label="Seed", min=0, max=2**31 - 1, value=0),
            LineEdit(name="coarse_labels", label="Coarse labels", value="0:pore+electrolyte,1:active",
                     tooltip="for a layer ticked as '3D: coarse volume': which phases each of its labels holds "
                             "(labels may merge phases, e.g. a CT that does not resolve the binder); its voxel "
                             "size (layer scale) over the fine data's must be an integer"),
            ComboBox(name="coarse_operator", label="Coarse voxels", choices=list(COARSE_OPERATORS),
                     tooltip="block: each coarse voxel is the segmented average of its block (the group filling "
                             "most of it); subsample: one point of the fine structure per block"),
        ])
        self.variant = self.settings.variant.native
        self.select_structure = self.settings.select_structure.native
        self.algorithm = self.settings.algorithm.native
        self.iterations = self.settings.iterations.native
        self.device = self.settings.device.native
        self.seed = self.settings.seed.native
        self.device.setEditable(True)  # a device name may be typed (cuda:1)
        self.data_table.changed.connect(self._show_coarse_settings)
        self._show_coarse_settings()
        return self.settings.native

    def _show_coarse_settings(self) -> None:
        """The coarse volume's two fields only while a layer is ticked as one: shown always, they made
        the tab scroll at 1366 x 768 (30 px over)."""
        on = any(plane == PLANE_CHOICES_3D[-1] for _, plane in self.data_table.checked())
        self.settings.coarse_labels.visible = on
        self.settings.coarse_operator.visible = on

    def _build_run_controls(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("End after the current step, keeping the best parameters so far")
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton("Save model…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.load_button = QPushButton("Load model…")
        self.load_button.clicked.connect(lambda: self.load_model())
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.save_button, self.load_button):
            buttons.addWidget(b)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v / %m")
        self.status = QLabel("Tick the measured Labels layers, then Start")
        self.status.setWordWrap(True)
        return buttons

    def _build_live_view(self) -> None:
        self.canvas = ThemedCanvas(self.viewer, height=2.6)
        self.canvas.message("Coverage RMSE curves appear here during calibration")
        self.param_table = QTableWidget(0, 2)
        self.param_table.setHorizontalHeaderLabels(["Parameter", "Value"])
        self.param_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.param_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.param_table.verticalHeader().setVisible(False)
        self.param_table.verticalHeader().setDefaultSectionSize(20)
        self.param_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.param_table.setMinimumHeight(80)
        # no preferred height of its own: the tab fits a 1366 x 768 screen, the plot above keeps its room
        self.param_table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)

    def stop_jobs(self) -> None:
        """Stop a running calibration or selection and wait for its thread (napari is closing)."""
        stop_and_join([self.worker], self._abandon)

    def _abandon(self, *args: Any) -> None:
        if self.worker is not None:
            self.worker.quit()  # closes the job at its next event (the one stop mechanism)

    # -- devices ----------------------------------------------------------------------------------
    def device_name(self) -> str:
        """The device setting: ``auto`` or what was picked / typed (e.g. ``cuda:1``)."""
        return combo_device(self.device)

    # -- data -------------------------------------------------------------------------------------
    def build_data(self) -> Any:
        """:class:`CalibrationData` from the ticked layers; ValueError / TypeError with a clear message."""
        from ...calibrate import CalibrationData

        chosen = self.data_table.checked()
        if not chosen:
            raise ValueError("no layer ticked as data: tick a segmented layer above (a Labels layer, or an Image "
                             "layer of integer labels such as a segmentation opened with napari's own reader); "
                             "none listed: open one (File > Open) or load sample data")
        sections, volumes = [], []
        units = set()
        coarse_layers = [lay for lay, plane in chosen if plane == PLANE_CHOICES_3D[-1]]
        chosen = [(lay, plane) for lay, plane in chosen if plane != PLANE_CHOICES_3D[-1]]
        if len(coarse_layers) > 1:
            raise ValueError("tick one layer as '3D: coarse volume'")
        if coarse_layers and not chosen:
            raise ValueError("a coarse volume needs fine data beside it: tick a 2D section or a 3D volume too")
        for layer, plane in chosen:
            if plane == PLANE_CHOICES_3D[0]:
                pd = layer_phase_data(layer)
                if pd.data.ndim != 3:
                    raise ValueError(f"layer {layer.name!r} is 2D: '{plane}' needs a 3D layer; use in-plane or axial")
                volumes.append(replace(pd, source=layer.name))
            elif plane == "3D: shown slice":
                axis, index = current_section(self.viewer, layer)
                pd = layer_phase_data(layer, section=(axis, index))
                # layer_phase_data keeps axis 0 (the symmetry axis) as the rows of an axial section
                sections += self._sections_2d(pd, pd.plane, f"{layer.name} [{'zyx'[axis]}={index}]")
            else:
                pd = layer_phase_data(layer)
                if pd.data.ndim == 3:
                    if plane not in PLANE_CHOICES_3D:
                        raise ValueError(f"layer {layer.name!r} is 3D; choose one of {PLANE_CHOICES_3D}")
                    planes = ("inplane", "axial") if plane.startswith("3D: in-plane + axial") else ("inplane",)
                    ps = self._pixel_size(pd)
                    sections += CalibrationData.from_volume(
                        pd.data, n_sections=SECTIONS_PER_PLANE, planes=planes, axis=0, pixel_size=ps,
                        unit=pd.unit or "px", source=layer.name,
                    ).sections
                else:
                    if plane not in PLANE_LABELS:
                        raise ValueError(f"layer {layer.name!r} is 2D: '{plane}' needs a 3D layer; use in-plane or axial")
                    sections += self._sections_2d(pd, PLANE_LABELS[plane], layer.name)
            units.add(pd.unit or "px")
            if pd.message and "canonical" not in pd.message:
                info(f"{layer.name}: {pd.message}")
        if len(units) > 1:
            raise ValueError(f"the data layers have different units {sorted(units)}; give them one unit (layer scale)")
        self._unit = units.pop()
        self._data_layers = [lay.name for lay, _ in chosen] + [lay.name for lay in coarse_layers]
        coarse = self._coarse_volume(coarse_layers[0], (sections + volumes)[0]) if coarse_layers else None
        data = CalibrationData(sections, volumes, coarse=coarse)
        for note in data.notes:
            if coarse is not None and note.startswith(coarse.source):
                warn(note)
        return data

    def _coarse_volume(self, layer: Layer, fine: PhaseMap) -> Any:
        """The layer marked '3D: coarse volume' with the tab's coarse label mapping and operator; its
        voxel size is the layer scale (the resolution ratio: over the fine data's pixel size)."""
        from ...calibrate.coarse import CoarseVolume, parse_group_mapping

        label_to_group, groups = parse_group_mapping(self.settings.coarse_labels.value)
        raw = np.asarray(layer.data)
        if raw.ndim != 3 or raw.dtype.kind not in "biu":
            raise ValueError(f"layer {layer.name!r}: a coarse volume is a 3D integer label layer")
        values = np.unique(raw)
        unknown = [int(v) for v in values if int(v) not in label_to_group]
        if unknown:
            raise ValueError(f"layer {layer.name!r} holds labels {unknown} that the coarse labels "
                             f"{self.settings.coarse_labels.value!r} do not map; add them")
        lut = np.zeros(int(values.max()) + 1, np.uint8)
        for label, g in label_to_group.items():
            if 0 <= label < lut.size:
                lut[label] = g
        unit = layer_phase_data(layer).unit
        img = PhaseMap(lut[raw], spacing=tuple(float(x) for x in layer.scale), unit=unit, source=layer.name)
        return CoarseVolume.from_phase_map(img, groups, fine, self.settings.coarse_operator.value)

    def _pixel_size(self, pd: PhaseMap) -> float:
        note = pd.anisotropy_note()
        if note:
            warn(note)
        return pd.pixel_size

    def _sections_2d(self, pd: PhaseMap, plane: str, source: str) -> list:
        from ...calibrate import CalibrationData

        return CalibrationData.from_arrays(
            [pd.data], planes=[plane], pixel_size=self._pixel_size(pd), unit=pd.unit or "px", sources=[source]
        ).sections

    def build_config(self, planes: Sequence[str]) -> Any:
        """The settings as a validated config; ``auto`` resolves for the sections' ``planes``."""
        from ...calibrate import CalibrationConfig
        from ...devices import resolve_device
        from ...jobs.calibrate import selection_variant

        # unknown / absent device: ValueError naming the available ones, before any worker starts;
        # the job gets the resolved name
        device = str(resolve_device(self.device_name()))
        return CalibrationConfig(
            variant=selection_variant(self.variant.currentText(), planes),
            algorithm=self.algorithm.currentText(),
            iterations=int(self.iterations.value()),
            seed=int(self.seed.value()),
            device=device,
        ).validate()

    # -- run --------------------------------------------------------------------------------------
    def start(self) -> Any:
        """Start calibrating in a worker thread; returns the worker, or None (with a notification)."""
        if self.worker is not None:
            notify_error("Calibration is already running; press Stop first")
            return None
        try:
            data = self.build_data()
            config = self.build_config(data.planes)
        except (ValueError, TypeError) as exc:
            notify_error(f"Calibration: {exc}")
            return None
        if self.calibrator_factory is None:
            from ...calibrate import Calibrator

            factory: Callable[..., Any] = Calibrator
        else:
            factory = self.calibrator_factory
        self.run = CalibrationRun(total=config.iterations, running=True)
        self.calibrator = None
        self._returned = False
        self._config = config
        self.noise_rmse = None
        self._t_start = time.monotonic()
        self.progress_bar.setRange(0, 0)  # busy: preparing has no count of its own
        self.progress_bar.setFormat("preparing…")
        self.status.setText(f"Preparing {config.variant} / {config.algorithm} on {len(data)} section(s)…")
        self.canvas.message("Model selection: fitting candidate structures (phase ordering, k, level, family)…"
                            if self.select_structure.isChecked() else "Preparing: measuring the data's coverage functions…")
        self._set_running(True)
        self.selection = None
        self.worker = start_worker(
            calibration_job, data, config, factory, self.select_structure.isChecked(),
            desc="Calibrating digital twin",
            on_yielded=self._on_yielded, on_returned=self._on_returned, on_errored=self._on_errored,
            on_finished=self._on_finished,
        )
        return self.worker

    def stop(self) -> None:
        """End the run after the current step; the best parameters so far are kept."""
        if self.worker is not None:
            self.worker.quit()  # closes the job at its next event; `finished` then keeps the best model
        self.run.stopped = True
        self.status.setText("Stopping after the current step…")
        self.stop_button.setEnabled(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.load_button.setEnabled(not running)
        self.save_button.setEnabled(not running and self.model is not None)
        for w in (self.variant, self.select_structure, self.algorithm, self.iterations, self.seed, self.device,
                  self.data_table):
            w.setEnabled(not running)

    def _on_yielded(self, event: JobProgress) -> None:
        """Show one event of the calibrate use case (the one event type), by its stage."""
        stage = event.stage
        if stage == "selection":  # a model-selection step or finished candidate fit
            count = f" [{event.done}/{event.total} steps]" if event.total else ""
            self.status.setText(f"Model selection{count}: {event.message} ({self._elapsed():.0f} s)")
            return
        if stage == "selected":
            self.selection = _Selected(event.data.best["label"], event.message)
            info(f"Model selection chose: {self.selection.label}")
            self.status.setText(f"Selected {self.selection.label}; calibrating…")
            return
        if stage == "started":
            self.calibrator = event.data
            self.run.device = str(getattr(event.data, "device", ""))
            self.run.total = int(event.total or self.run.total)
            self.status.setText(f"Measuring the data's sampling noise… ({self._elapsed():.1f} s)")
            return
        if stage == "noise":
            self.noise_rmse = event.data
            self.run.prepare_s = self._elapsed()
            self.status.setText(f"Calibrating on {self.run.device}… (prepared in {self.run.prepare_s:.1f} s)")
            return
        if stage != "calibrate":
            return
        rec = event.data
        self.run.update(rec)
        if self.progress_bar.maximum() == 0:  # first training step: leave the busy state
            self.progress_bar.setFormat("%v / %m")
        self.progress_bar.setMaximum(max(self.run.total, 1))
        self.progress_bar.setValue(min(self.run.iteration, self.run.total))
        now = time.monotonic()
        if now - self._last_draw >= _REDRAW_S or self.run.iteration >= self.run.total:
            self._last_draw = now
            self._show_status()
            self._paused_while(self.plot_losses)
            self.show_params(self.run.params)

    def _paused_while(self, draw: Callable[[], None]) -> None:
        """Run ``draw`` with the worker paused (at its next event) when it is a full draw: the worker
        shares the GIL, which made the one full draw of the loss plot take twice as long in the GUI
        thread; blitted updates (a few ms) never pause it."""
        if self._update_losses() or self.worker is None:
            return
        self.worker.pause()
        try:
            draw()
        finally:
            self.worker.resume()

    def _elapsed(self) -> float:
        """Wall time since Start, preparation included."""
        return time.monotonic() - self._t_start if self._t_start else 0.0

    def rmse_text(self, loss: float) -> str:
        """``coverage RMSE 0.0123 (data noise 0.0041)``: the loss in C_ij units with its reference."""
        from ...calibrate.noise import rmse_line

        line = rmse_line(loss, self.noise_rmse)
        if math.isfinite(loss) and self.noise_rmse is None and self.run.prepare_s:
            line += " (data noise n/a: too little data to split in halves)"
        return line

    def _show_status(self) -> None:
        r = self.run
        self.status.setText(
            f"{r.phase} · iteration {r.iteration}/{r.total} · best {self.rmse_text(r.best_loss)} · "
            f"{self._elapsed():.1f} s elapsed (preparation {r.prepare_s:.1f} s) on {r.device}"
        )

    def _on_returned(self, result: Any) -> None:
        self._returned = True
        if isinstance(result, _Failed):
            notify_error(f"Calibration: {result.message}")
            self.status.setText(f"Not started: {result.message}")
            self.canvas.message("Calibration could not start (see the notification)")
            self.calibration_finished.emit(None)
            return
        self._finish(result.calibrator)

    def _on_errored(self, exc: BaseException) -> None:
        # napari's worker already shows the traceback as a notification; keep the widget usable
        self._returned = True
        self.status.setText(f"Calibration failed: {exc}")
        self.calibration_finished.emit(None)

    def _on_finished(self) -> None:
        if not self._returned and self.calibrator is not None:
            self._finish(self.calibrator)  # Stop / quit(): no `returned`, keep the best
        elif not self._returned:  # stopped in model selection or preparation: nothing calibrated
            from ...jobs.calibrate import STOPPED_IN_SELECTION

            selecting = self.select_structure.isChecked()
            self.status.setText(f"Stopped: {STOPPED_IN_SELECTION}" if selecting
                                else "Stopped before a model was calibrated; press Start to calibrate")
            self.canvas.message("Stopped before a model was calibrated")
            self.calibration_finished.emit(None)
        self.worker = None
        self.run.running = False
        self._set_running(False)
        if self.progress_bar.maximum() == 0:  # ended while preparing
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setFormat("%v / %m")

    def _finish(self, cal: Any) -> None:
        """Take the best model of a finished or stopped run, show it and publish it.

        A run stopped before its first evaluated step has no calibrated model: nothing is
        published and the status says so.
        """
        self.run.running = False
        done, total = self.run.iteration, self.run.total
        best_loss = float(getattr(cal, "best_loss", math.inf))
        elapsed = f"{self._elapsed():.1f} s"
        if done == 0 or not math.isfinite(best_loss):
            self.status.setText(f"Stopped after {done}/{total} iterations ({elapsed}) before any model was "
                                "evaluated; no model was kept. Press Start to calibrate")
            self.canvas.message("Stopped before a model was calibrated")
            self.calibration_finished.emit(None)
            return
        model = cal.best_model
        self.model = model
        how = "finished" if done >= total and not self.run.stopped else "stopped"
        layers = ", ".join(self._data_layers)
        cfg = self._config
        self.model_source = f"calibrated on {layers} ({cfg.variant}, {cfg.algorithm}, {done} it, {how})"
        self.plot_losses()
        self.show_params(model.interpretable())
        rmse = self.rmse_text(best_loss)
        if how == "finished":
            text = f"Calibration finished: {done} iterations in {elapsed}; best {rmse}."
        else:
            text = (f"Calibration stopped at iteration {done} of {total} ({elapsed}); the kept model is the best "
                    f"evaluated so far ({rmse}) and may be only partly calibrated.")
        self.status.setText(text + " It is offered in the Generate tab")
        self.state.publish(model, self.model_source, measured_layer=self._data_layers[0] if self._data_layers else None)
        info(f"Calibration {how} after {done}/{total} iterations: kept the best model ({rmse})")
        self.calibration_finished.emit(model)

    # -- views ------------------------------------------------------------------------------------
    def _loss_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The loss plot's curves: ``{key: (iterations, values)}`` (coverage losses as RMSE, finite > 0)."""
        from ...calibrate.losses import loss_to_rmse

        r = self.run
        its = np.asarray(r.iterations)
        out = {}
        for key in _COVERAGE_LOSSES:
            if key in r.losses:
                y = np.asarray([loss_to_rmse(v) if np.isfinite(v) else np.nan for v in r.losses[key]], dtype=float)
                ok = np.isfinite(y) & (y > 0)
                out[key] = (its[ok], y[ok])
        for key in _ADV_LOSSES:
            if key in r.losses:
                out[key] = (its, np.asarray(r.losses[key], dtype=float))
        return out

    def _update_losses(self) -> bool:
        """Move the live loss plot's lines to the new data (no rebuild: a rebuild of the figure every
        0.3 s stalled napari for 0.7-2 s on a loaded 2-core machine); False when it must be rebuilt."""
        lines = getattr(self, "_loss_lines", None)
        r = self.run
        if not lines or not r.iterations or set(lines) - {"best"} != set(self._loss_curves()) \
                or lines["best"].axes not in self.canvas.figure.axes or self._loss_total != r.total:
            return False
        if self.noise_rmse is not None and not getattr(self, "_loss_noise_drawn", False):
            return False  # the noise line arrived: draw it once, with a rebuild
        fc = self.canvas.canvas
        bg = getattr(self, "_loss_background", None)
        if bg is None or self._loss_background_key != (fc.get_width_height(), id(self.canvas.colors)):
            return False  # resized or re-themed since the background was taken
        curves = self._loss_curves()
        for key, (x, y) in curves.items():
            y_lo, y_hi = lines[key].axes.get_ylim()
            inside = y[np.isfinite(y)]
            if inside.size and (inside.min() < y_lo or inside.max() > y_hi):
                return False  # the curve left the drawn range: a full draw with new limits
        for key, (x, y) in curves.items():
            lines[key].set_data(x, y)
        lines["best"].set_xdata([max(r.best_iteration, 0)] * 2)
        lines["best"].set_alpha(0.7 if r.best_iteration >= 0 else 0.0)
        # blit: the saved axes background and the lines only (a full draw of the figure took
        # 0.2-0.5 s on the loaded 2-core machine, each one a stall of napari's window)
        fc.restore_region(bg)
        for line in lines.values():
            line.axes.draw_artist(line)
        fc.blit(self.canvas.figure.bbox)
        return True

    def _keep_loss_background(self) -> None:
        """Draw the loss plot once without its lines and keep that picture for :meth:`_update_losses`."""
        lines = list(getattr(self, "_loss_lines", {}).values())
        fc = self.canvas.canvas
        for line in lines:
            line.set_visible(False)
        fc.draw()
        self._loss_background = fc.copy_from_bbox(self.canvas.figure.bbox)
        self._loss_background_key = (fc.get_width_height(), id(self.canvas.colors))
        for line in lines:
            line.set_visible(True)
            line.axes.draw_artist(line)
        fc.blit(self.canvas.figure.bbox)

    def plot_losses(self) -> None:
        """Draw the loss history as coverage RMSE (C_ij units, log scale) beside the data's own
        sampling noise, and the adversarial losses if any."""
        from ...calibrate.losses import loss_to_rmse

        r = self.run
        if self._update_losses():  # live, and the final state too: the lines move, nothing is laid out again
            return
        self._loss_lines = {}
        self._loss_background = None
        self._loss_total = r.total
        canvas = self.canvas
        canvas.clear()
        if not r.iterations:
            canvas.message("No loss recorded yet")
            return
        # margins in inches, not the constrained layout: its tick-label measurements were most of
        # this one full draw (0.36 of 0.64 s in the GUI thread on the loaded machine)
        canvas.figure.set_layout_engine(InchMargins())
        its = np.asarray(r.iterations)
        adv = [k for k in _ADV_LOSSES if k in r.losses]
        axes = canvas.figure.subplots(2 if adv else 1, 1, sharex=True, squeeze=False)[:, 0]
        ax = canvas.style_axes(axes[0])
        colors = {"coverage": canvas.colors["accent"], "coverage_eval": "#e69f00"}
        for key in _COVERAGE_LOSSES:
            if key in r.losses:
                y = np.asarray([loss_to_rmse(v) if np.isfinite(v) else np.nan for v in r.losses[key]], dtype=float)
                ok = np.isfinite(y) & (y > 0)
                style = "-" if key == "coverage" else "o-"
                label = "coverage (train)" if key == "coverage" else "coverage (eval)"
                (self._loss_lines[key],) = ax.plot(its[ok], y[ok], style, ms=2.5, lw=1.2, color=colors[key], label=label)
        if any(k in r.losses for k in _COVERAGE_LOSSES):
            from matplotlib.ticker import FuncFormatter, NullLocator

            ax.set_yscale("log")
            # plain tick labels ("0.01"): the default 10^{-2} labels are mathtext, whose first use
            # loads its fonts in the GUI thread (a 3 s stall of napari on the shared machine)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks cost 0.1 s per full draw
        if self.noise_rmse is not None and self.noise_rmse > 0:
            ax.axhline(self.noise_rmse, color=canvas.colors["text"], lw=1.0, ls="--", alpha=0.8,
                       label="data sampling noise")
            low, high = ax.get_ylim()
            ax.set_ylim(min(low, 0.7 * self.noise_rmse), high)  # the reference line stays in view
        self._loss_noise_drawn = self.noise_rmse is not None
        self._loss_lines["best"] = ax.axvline(max(r.best_iteration, 0), color=canvas.colors["text"], lw=0.8, ls=":",
                                              alpha=0.7 if r.best_iteration >= 0 else 0.0)
        ax.set_ylabel("C_ij RMSE", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            canvas.style_legend(ax.legend(fontsize=7, loc="upper right"))
        if adv:
            ax2 = canvas.style_axes(axes[1])
            for key, color in zip(adv, ("#56b4e9", "#cc79a7", "#009e73")):
                y = np.asarray(r.losses[key], dtype=float)
                (self._loss_lines[key],) = ax2.plot(its, y, lw=1.0, color=color, label=key)
            ax2.set_ylabel("adversarial", fontsize=8)
            canvas.style_legend(ax2.legend(fontsize=7, loc="upper right"))
        axes[-1].set_xlabel("iteration")
        axes[-1].set_xlim(0, max(r.total, int(its[-1])))
        for a in axes:  # room for the curves to move without a new layout (blitted updates)
            low, high = a.get_ylim()
            if a.get_yscale() == "log":
                a.set_ylim(low / 3, high * 1.5)
            else:
                span = high - low or 1.0
                a.set_ylim(low - 0.5 * span, high + 0.5 * span)
        self._keep_loss_background()

    def show_params(self, params: dict[str, float]) -> None:
        """Fill the parameter table (lengths in the data's unit)."""
        unit = getattr(self.model, "unit", None) if not self.run.running and self.model is not None else self._unit
        rows = [format_param(k, v, unit or "px") for k, v in params.items()]
        self.param_table.setHorizontalHeaderLabels(["Parameter", "current" if self.run.running else "Value"])
        self.param_table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            self.param_table.setItem(i, 0, QTableWidgetItem(name))
            item = QTableWidgetItem(value)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.param_table.setItem(i, 1, item)

    # -- files ------------------------------------------------------------------------------------
    def save_model(self, path: str | None = None, overwrite: bool = False) -> Path | None:
        """Write the current model as JSON.

        Without ``path`` a save dialog asks (it confirms replacing a file). With a ``path`` an
        existing file is only replaced when ``overwrite`` is True.
        """
        if self.model is None:
            notify_error("No model to save yet: calibrate or load one first")
            return None
        if path is None:
            path = ask_save_path(self, "Save digital-twin model", "twin-model.json", "Model JSON (*.json)")
            if path is None:
                return None
            overwrite = True  # the dialog has asked
        if refuse_overwrite(path, overwrite):
            return None
        from ...model import save_model

        provenance: dict[str, Any] = {"napari_layers": list(self._data_layers), "description": self.model_source}
        if self.calibrator is not None and hasattr(self.calibrator, "provenance"):
            try:
                provenance.update(self.calibrator.provenance())
            except Exception as exc:  # noqa: BLE001 - provenance is a courtesy, the model is what matters
                warn(f"provenance incomplete: {exc}")
        try:
            out = save_model(self.model, path, provenance=provenance)
        except (OSError, ValueError) as exc:
            notify_error(f"Cannot save the model: {exc}")
            return None
        info(f"Model saved to {out}")
        return out

    def load_model(self, path: str | None = None) -> Any:
        """Read a model JSON (dialog when ``path`` is None), show and publish it."""
        loaded = ask_load_model(self, path)
        if loaded is None:
            return None
        model, path = loaded
        self.model = model
        self.calibrator = None
        self.model_source = f"loaded from {Path(path).name}"
        self.show_params(model.interpretable())
        self.save_button.setEnabled(True)
        self.status.setText(f"Model {self.model_source} ({model.variant}); it is offered in the Generate tab")
        self.state.publish(model, self.model_source)
        return model
