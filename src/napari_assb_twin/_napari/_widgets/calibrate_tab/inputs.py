"""The calibrate tab's inputs: the table of measured layers and what each is (DataTable), the typed
settings form, and reading them into the core's values (CalibrationData, CalibrationConfig).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Layer
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._common import (
    GENERATED_TAG,
    is_label_layer,
    PLANE_LABELS,
    combo_device,
    current_section,
    device_choices,
    follow_layer_list,
    info,
    layer_phase_data,
    typed_form,
    warn,
)

if TYPE_CHECKING:
    import napari

from .... import options
from ....options import ALGORITHMS, AUTO, COARSE_OPERATORS, MODEL_CHOICES
from ....phasemap import PhaseMap


#: Plane choices of a 2D layer: which kind of section of the 3D material it is.
PLANE_CHOICES_2D = tuple(PLANE_LABELS)


#: How sections are cut from a 3D layer (the symmetry axis is the layer's axis 0).
#: The first is the default for a 3D layer: the whole layer as a volume (its 3D C_ij in the loss, its
#: 3D connectivity and tau in model selection); the others cut 2D sections from it.
#: The last marks a coarser volume of the same material (its own voxel size, labels that may merge
#: phases: the tab's "Coarse labels"), used beside fine sections or volumes.
#: How a 3D layer is a volume: its symmetry axis found from it ("3D: volume", CalibrationData's rule) or given
#: (e.g. the pressing direction), as ``assb-twin calibrate --symmetry-axis``.
VOLUME_AXES: dict[str, int | None] = {"3D: volume": None, "3D: volume about z": 0, "3D: volume about y": 1,
                                      "3D: volume about x": 2}
PLANE_CHOICES_3D = (*VOLUME_AXES, "3D: in-plane + axial sections", "3D: in-plane sections", "3D: shown slice",
                    "3D: coarse volume")


SECTIONS_PER_PLANE = 16  # the exact estimator makes data sections nearly free: more of them, less sampling noise


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
                "containing it, with the axis along the image rows. 3D layers: '3D: volume' calibrates on the "
                "whole volume (3D C_ij, and 3D connectivity and tortuosity in model selection) about the "
                "symmetry axis found from it ('about z/y/x': the one you give); the others on sections cut "
                "from it, axis 0 (z) being the symmetry axis"
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


class CalibrationInputs:
    """The calibration dock's inputs: data table, settings form, and the data and config they give."""

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
            LineEdit(name="measured_tau", label="Measured tau", value="",
                     tooltip="optional, for model selection: tortuosity factors measured on the material (e.g. "
                             "by impedance), as PHASE:AXIS=VALUE separated by commas, e.g. 'active:0=8.7' (axis 0 "
                             "= z, the stacking axis); a selection term, and the twin's tau is reported beside it"),
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
        # a measured tau is a term of the model selection: its field shows only with selection ticked
        # (one row less on a 1366 x 768 screen when it could not be used)
        self.select_structure.toggled.connect(self._show_measured_tau)
        self._show_measured_tau()
        return self.settings.native

    def _show_measured_tau(self, *args: Any) -> None:
        self.settings.measured_tau.visible = self.select_structure.isChecked()

    def _show_coarse_settings(self) -> None:
        """The coarse volume's two fields only while a layer is ticked as one: shown always, they made
        the tab scroll at 1366 x 768 (30 px over)."""
        on = any(plane == PLANE_CHOICES_3D[-1] for _, plane in self.data_table.checked())
        self.settings.coarse_labels.visible = on
        self.settings.coarse_operator.visible = on

    # -- devices ----------------------------------------------------------------------------------
    def measured_tau(self) -> list:
        """The *Measured tau* field as constraints (ValueError naming the bad entry); only with model selection."""
        from ....calibrate.measured import parse_measured_tau

        text = self.settings.measured_tau.value.strip()
        if not text:
            return []
        if not self.select_structure.isChecked():
            raise ValueError("a measured tau is a term of the model selection: tick 'choose the structure by "
                             "model selection', or clear the Measured tau field")
        return [parse_measured_tau(t) for t in text.replace(";", ",").split(",") if t.strip()]

    def device_name(self) -> str:
        """The device setting: ``auto`` or what was picked / typed (e.g. ``cuda:1``)."""
        return combo_device(self.device)

    # -- data -------------------------------------------------------------------------------------
    def build_data(self) -> Any:
        """:class:`CalibrationData` from the ticked layers; ValueError / TypeError with a clear message."""
        from ....calibrate import CalibrationData

        chosen = self.data_table.checked()
        if not chosen:
            raise ValueError("no layer ticked as data: tick a segmented layer above (a Labels layer, or an Image "
                             "layer of integer labels such as a segmentation opened with napari's own reader); "
                             "none listed: open one (File > Open) or load sample data")
        sections, volumes = [], []
        given_axes: set[int] = set()
        units = set()
        coarse_layers = [lay for lay, plane in chosen if plane == PLANE_CHOICES_3D[-1]]
        chosen = [(lay, plane) for lay, plane in chosen if plane != PLANE_CHOICES_3D[-1]]
        if len(coarse_layers) > 1:
            raise ValueError("tick one layer as '3D: coarse volume'")
        if coarse_layers and not chosen:
            raise ValueError("a coarse volume needs fine data beside it: tick a 2D section or a 3D volume too")
        for layer, plane in chosen:
            if plane in VOLUME_AXES:
                if VOLUME_AXES[plane] is not None:
                    given_axes.add(VOLUME_AXES[plane])
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
        if len(given_axes) > 1:
            raise ValueError("the volumes are ticked about different symmetry axes; one model has one axis: "
                             "tick them about the same one, or as '3D: volume' to find it")
        data = CalibrationData(sections, volumes, coarse=coarse, axis=given_axes.pop() if given_axes else None)
        for note in data.notes:
            if coarse is not None and note.startswith(coarse.source):
                warn(note)
        return data

    def _coarse_volume(self, layer: Layer, fine: PhaseMap) -> Any:
        """The layer marked '3D: coarse volume' with the tab's coarse label mapping and operator; its
        voxel size is the layer scale (the resolution ratio: over the fine data's pixel size)."""
        from ....calibrate.coarse import CoarseVolume, parse_group_mapping

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
        from ....calibrate import CalibrationData

        return CalibrationData.from_arrays(
            [pd.data], planes=[plane], pixel_size=self._pixel_size(pd), unit=pd.unit or "px", sources=[source]
        ).sections

    def build_config(self, planes: Sequence[str]) -> Any:
        """The settings as a validated config; ``auto`` resolves for the sections' ``planes``."""
        from ....calibrate import CalibrationConfig
        from ....devices import resolve_device
        from ....jobs.calibrate import selection_variant

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
