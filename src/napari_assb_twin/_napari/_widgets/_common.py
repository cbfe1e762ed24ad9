"""Helpers shared by the dock widgets: layer pickers, phase data from layers, notifications.

No torch here: the coverage widget imports this module and must load without torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QListWidget, QListWidgetItem, QWidget

from ...fields.sections import cut_section, plane_of_normal
from ...io.labels import to_phases
from ...phasemap import PhaseMap, normalize_unit

if TYPE_CHECKING:
    import napari

__all__ = [
    "GENERATED_TAG",
    "TWIN_MODEL_KEY",
    "LayerCheckList",
    "LayerCombo",
    "PLANE_LABELS",
    "align_form_labels",
    "ask_load_model",
    "ask_open_path",
    "ask_save_path",
    "export_canvas_png",
    "combo_device",
    "current_section",
    "device_choices",
    "fill_devices",
    "follow_layer_list",
    "info",
    "is_label_layer",
    "layer_phase_data",
    "layer_spacing",
    "notify_error",
    "refuse_overwrite",
    "typed_form",
    "warn",
]

#: What a 2D layer is, as the docks show it -> the package's plane names (options.PLANES).
PLANE_LABELS = {"in-plane": "inplane", "axial": "axial"}

#: ``layer.metadata`` key marking a layer made by the generator widget (value: the widget's id).
GENERATED_TAG = "assb_twin_generated_by"
#: ``layer.metadata`` key of a generated twin's model (its model-file dict): the Validate tab
#: simulates further realisations of it.
TWIN_MODEL_KEY = "assb_twin_model"


def notify_error(message: str) -> None:
    """Show an error notification (never raises: widgets report, they do not crash)."""
    show_error(message)


def typed_form(widgets: Sequence[Any]) -> Any:
    """A magicgui form (``Container`` with a label column, no outer margins) of typed widgets.

    The one form style of the docks (napari's own): the calibration settings and the generator's
    interpretable parameters. The magicgui widgets are reachable by name (``form["seed"]``); their
    ``.native`` Qt widgets are what the docks keep as attributes for scripts and tests. The label
    column is re-measured in the font the labels are shown in (see :func:`align_form_labels`).
    """
    from magicgui.widgets import Container

    form = Container(labels=True, widgets=list(widgets))
    form.margins = (0, 0, 0, 0)
    form.native.installEventFilter(_LabelAligner(form))
    return form


def align_form_labels(form: Any) -> None:
    """Give every label of a :func:`typed_form` the width of the widest one *in its own font*.

    magicgui measures the labels in the application's default font when the widgets are added;
    napari's style sheet draws them larger, so a long label ("electrolyte fraction") pushed its
    field out of line. Call it after adding widgets to a shown form (the form does it when shown).
    """
    rows = [w._labeled_widget() for w in form if getattr(w, "_labeled_widget", None) is not None]
    labels = [r for r in rows if r is not None]
    if not labels:
        return
    for r in labels:
        r._label_widget.native.ensurePolished()  # the style sheet's font, not the default one
    qlabels = [r._label_widget.native for r in labels]
    widest = max(q.sizeHint().width() for q in qlabels)  # the text in its font, plus the style's padding
    for r in labels:
        r.label_width = widest


class _LabelAligner(QObject):
    """Re-measures a form's label column when it is shown or restyled (theme / font change)."""

    def __init__(self, form: Any):
        super().__init__(form.native)
        self._form = form

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange):
            align_form_labels(self._form)
        return False


# --------------------------------------------------------------------------------------------
# phase data from a layer
# --------------------------------------------------------------------------------------------
def layer_spacing(layer: Layer) -> tuple[tuple[float, ...], str | None]:
    """Per-axis scale of a layer and its length unit (None when in pixels or mixed)."""
    scale = tuple(abs(float(s)) for s in layer.scale)  # a negative scale flips the view, not the size
    units = {normalize_unit(u) for u in getattr(layer, "units", ())} or {None}
    unit = units.pop() if len(units) == 1 else None
    return scale, unit


def _layer_array(layer: Layer) -> np.ndarray:
    data = layer.data
    if getattr(layer, "multiscale", False):  # level 0 is full resolution
        data = data[0]
    return np.asarray(data)


def layer_phase_data(layer: Any, *, section: tuple[int, int] | None = None) -> PhaseMap:
    """The canonical :class:`~napari_assb_twin.phasemap.PhaseMap` of a Labels layer, or a clear
    ``ValueError`` / ``TypeError``.

    Its ``source`` is the layer name; its ``spacing`` the layer scale; a section has the ``plane``
    that :func:`~napari_assb_twin.fields.sections.plane_of_normal` gives its normal (axis 0 is the
    symmetry axis, as everywhere in the package).

    Parameters
    ----------
    layer : napari layer
        Must be a Labels layer (or an integer Image layer holding at most three values) with
        2 or 3 axes and at least two phases present.
    section : (axis, index), optional
        Take the 2D section ``index`` along ``axis`` of a 3D layer (remaining axes in order, so
        an axial section keeps the symmetry axis 0 as its rows).

    Raises
    ------
    TypeError
        Not a layer, a float (grey-value) layer, or a non-image layer type.
    ValueError
        Empty data, wrong number of axes, more than three labels, or a single phase (empty layer).
    """
    if not isinstance(layer, Layer):
        raise TypeError("no layer chosen: open a segmented image (File > Open) or load sample data first")
    if not isinstance(layer, (Labels, Image)):
        raise TypeError(f"layer {layer.name!r} is a {type(layer).__name__} layer; choose a Labels layer (a phase map)")
    arr = _layer_array(layer)
    if arr.dtype.kind == "f":
        raise TypeError(
            f"layer {layer.name!r} holds floating-point grey values ({arr.dtype}), not a segmentation; "
            "segment it into pore / active / electrolyte first, or open the segmented file with the "
            "napari-assb-twin reader"
        )
    if arr.dtype.kind not in "biu":
        raise TypeError(f"layer {layer.name!r} has dtype {arr.dtype}; a phase map needs integer labels")
    if arr.size == 0:
        raise ValueError(f"layer {layer.name!r} is empty (shape {arr.shape})")
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"layer {layer.name!r} has {arr.ndim} axes {arr.shape}; phase maps are 2D (y, x) or 3D (z, y, x)"
        )
    spacing, unit = layer_spacing(layer)
    axis_labels = tuple(str(a) for a in (getattr(layer, "axis_labels", ()) or ()))
    if len(axis_labels) != arr.ndim or any(a.lstrip("-").isdigit() for a in axis_labels):
        # napari's defaults ("-2", "-1") say nothing: name axes by position, as phase maps are (z, y, x)
        axis_labels = ("z", "y", "x")[-arr.ndim :]
    plane = None
    if section is not None:
        axis, index = section
        if arr.ndim != 3:
            raise ValueError(f"layer {layer.name!r} is 2D: it has no sections to take")
        index = int(np.clip(index, 0, arr.shape[axis] - 1))
        # cut the raw labels (cheap) and convert only the section, as the dock shows it
        plane = plane_of_normal(int(axis), 0)
        arr = cut_section(arr, plane, index, 0, normal=int(axis))
        keep = [d for d in range(3) if d != axis]
        spacing = tuple(spacing[d] for d in keep)
        axis_labels = tuple(axis_labels[d] for d in keep)
    phases, mapping, message = to_phases(arr)
    present = np.flatnonzero(np.bincount(phases.ravel(), minlength=3))
    if present.size < 2:
        raise ValueError(
            f"layer {layer.name!r} holds a single phase ({', '.join(str(p) for p in present)}): an empty or "
            "unpainted layer has no microstructure; choose a segmented layer"
        )
    if isinstance(layer, Image):
        message = f"Image layer used as labels ({message})"
    return PhaseMap(phases, spacing, unit, layer.name, message, mapping, plane, axis_labels)


def is_label_layer(layer: Any) -> bool:
    """A Labels layer, or an Image layer of integer values (a segmentation that napari's own reader
    opened as an image): what :func:`layer_phase_data` reads as a phase map."""
    if isinstance(layer, Labels):
        return True
    if not isinstance(layer, Image) or getattr(layer, "rgb", False):
        return False
    dtype = getattr(layer.data[0] if getattr(layer, "multiscale", False) else layer.data, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind in "biu"


def current_section(viewer: "napari.Viewer", layer: Layer) -> tuple[int, int]:
    """``(axis, index)`` of the 2D section of a 3D layer currently shown in the viewer.

    The axis is the layer's first axis not displayed (the slider axis); in 3D display it is axis 0.
    """
    ndim = layer.ndim
    offset = viewer.dims.ndim - ndim  # layer axis a is world axis a + offset
    not_displayed = [d - offset for d in viewer.dims.not_displayed if d - offset >= 0]
    axis = not_displayed[0] if not_displayed else 0
    data_point = layer.world_to_data(viewer.dims.point[-ndim:] if offset >= 0 else viewer.dims.point)
    index = int(round(float(data_point[axis])))
    return axis, index


# --------------------------------------------------------------------------------------------
# layer pickers that follow the layer list
# --------------------------------------------------------------------------------------------
def _is_candidate(layer: Layer) -> bool:
    # Image layers are listed too so that choosing a grey-value image explains itself instead of
    # silently not being there
    return isinstance(layer, (Labels, Image))


class LayerCombo(QComboBox):
    """Combo box of the viewer's Labels (and Image) layers, kept in sync with the layer list.

    The current layer object is :meth:`layer`; :meth:`set_layer` selects one. Empty entry
    ``none_text`` first when given (optional reference layers).
    """

    def __init__(
        self,
        viewer: "napari.Viewer",
        none_text: str | None = None,
        predicate: Callable[[Layer], bool] = _is_candidate,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        # long layer names must not widen the dock: the combo shows about 14 characters, elided
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        self._viewer = viewer
        self._none_text = none_text
        self._predicate = predicate
        self._layers: list[Layer | None] = []
        self._auto_picked = False  # optional combos pick the first layer once, then obey the user
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _watch_name(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)

    def refresh(self, event: Any = None) -> None:
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        self._layers = [None] if self._none_text is not None else []
        if self._none_text is not None:
            self.addItem(self._none_text)
        for layer in reversed(self._viewer.layers):  # top of the layer list first, like napari
            if self._predicate(layer):
                self._layers.append(layer)
                self.addItem(layer.name)
        self.blockSignals(False)
        real = [lay for lay in self._layers if lay is not None]
        if current is None and real and not self._auto_picked:
            self._auto_picked = True
            self.setCurrentIndex(self._layers.index(real[0]))
            self.currentIndexChanged.emit(self.currentIndex())
        elif current is not None and current in self._layers:
            self.setCurrentIndex(self._layers.index(current))
        elif self._layers:
            self.setCurrentIndex(0)
            self.currentIndexChanged.emit(0)

    def layer(self) -> Layer | None:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer: Layer | None) -> None:
        if layer not in self._layers:
            raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not offered here")
        self.setCurrentIndex(self._layers.index(layer))


def follow_layer_list(viewer: "napari.Viewer", refresh: Callable[..., None], watch_name: Callable[[Any], None]) -> None:
    """Call ``refresh`` when layers are inserted, removed, reordered or renamed.

    ``watch_name`` (a bound method of the widget, which napari holds weakly) must connect the
    inserted layer's name event to ``refresh``.
    """
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        ev.connect(refresh)
    viewer.layers.events.inserted.connect(watch_name)
    for layer in viewer.layers:
        layer.events.name.connect(refresh)


class LayerCheckList(QListWidget):
    """Check list of the viewer's Labels (and Image) layers; :meth:`checked` gives the ticked ones."""

    changed = Signal()

    def __init__(self, viewer: "napari.Viewer", parent: QWidget | None = None, max_rows: int = 4):
        super().__init__(parent)
        self._viewer = viewer
        self._layers: list[Layer] = []
        self._ticked: set[int] = set()  # ids of ticked layers survive refreshes
        self.setMaximumHeight(22 * max_rows + 6)
        follow_layer_list(viewer, self.refresh, self._watch_name)
        self.itemChanged.connect(self._on_item)
        self.refresh()

    def _watch_name(self, event: Any) -> None:
        # a bound method (napari holds it weakly and drops it when the widget is deleted)
        event.value.events.name.connect(self.refresh)

    def refresh(self, event: Any = None) -> None:
        self.blockSignals(True)
        self.clear()
        self._layers = [lay for lay in reversed(self._viewer.layers) if _is_candidate(lay)]
        first_labels = next((lay for lay in self._layers if isinstance(lay, Labels)), None)
        if not self._ticked & {id(lay) for lay in self._layers} and first_labels is not None:
            self._ticked = {id(first_labels)}  # nothing ticked yet: tick the top Labels layer
        for layer in self._layers:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if id(layer) in self._ticked else Qt.CheckState.Unchecked)
            self.addItem(item)
        self.blockSignals(False)
        self.changed.emit()

    def _on_item(self, item: QListWidgetItem) -> None:
        layer = self._layers[self.row(item)]
        if item.checkState() == Qt.CheckState.Checked:
            self._ticked.add(id(layer))
        else:
            self._ticked.discard(id(layer))
        self.changed.emit()

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def checked(self) -> list[Layer]:
        return [lay for lay in self._layers if id(lay) in self._ticked]

    def set_checked(self, layers: Sequence[Layer]) -> None:
        """Tick exactly ``layers`` (programmatic use and tests)."""
        unknown = [lay.name for lay in layers if lay not in self._layers]
        if unknown:
            raise ValueError(f"layers {unknown} are not offered here")
        self._ticked = {id(lay) for lay in layers}
        self.refresh()


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------
def device_choices() -> list[tuple[str, str]]:
    """``(label, device name)`` of ``auto`` (showing what it resolves to: CUDA, MPS or CPU) and of
    every device found. Imports torch (through :mod:`napari_assb_twin.devices`) when called."""
    from ...devices import available_devices, describe_device, resolve_device

    return [(f"auto: {describe_device(resolve_device('auto'))}", "auto")] + [(n, n) for n in available_devices()]


def fill_devices(combo: QComboBox) -> None:
    """Fill a Qt combo with :func:`device_choices` (item data: the device name to pass on)."""
    for label, name in device_choices():
        combo.addItem(label, name)


def combo_device(combo: QComboBox) -> str:
    """The device name chosen or typed in an editable device combo (e.g. ``auto``, ``cuda:1``)."""
    text = combo.currentText().strip()
    idx = combo.findText(text)
    if idx >= 0 and combo.itemData(idx):
        return str(combo.itemData(idx))
    return text.split(" ")[0].rstrip(":") if text else "auto"


# --------------------------------------------------------------------------------------------
# file dialogs
# --------------------------------------------------------------------------------------------
def ask_save_path(parent: QWidget, caption: str, start: str, file_filter: str) -> str | None:
    """Ask for a file to write; Qt's dialog asks before replacing an existing file."""
    path, _ = QFileDialog.getSaveFileName(parent, caption, start, file_filter)
    return path or None


def export_canvas_png(parent: QWidget, canvas: Any, path: str | None, *, caption: str, start: str, what: str,
                      error_prefix: str, redraw: Callable[[bool], None] | None = None) -> Any:
    """Save ``canvas`` (a :class:`ThemedCanvas`) as its fixed-size PNG: a save dialog when ``path`` is
    None, an error notification (``error_prefix: reason``) on failure, ``"<what> written: <path>"`` on
    success. Returns the written path, or None."""
    if path is None:
        path = ask_save_path(parent, caption, start, "PNG (*.png)")
        if path is None:
            return None
    try:
        out = canvas.save_png(path, redraw=redraw)
    except (OSError, ValueError) as exc:
        notify_error(f"{error_prefix}: {exc}")
        return None
    info(f"{what} written: {out}")
    return out


def ask_open_path(parent: QWidget, caption: str, start: str, file_filter: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, caption, start, file_filter)
    return path or None


def ask_load_model(parent: QWidget, path: str | None = None) -> tuple[Any, str] | None:
    """Read a model JSON (a file dialog when ``path`` is None).

    Returns ``(model, path)`` -- the path really read, also when the dialog chose it -- or None if
    cancelled or invalid (an invalid file becomes an error notification naming what is wrong).
    """
    if path is None:
        path = ask_open_path(parent, "Load digital-twin model", "", "Model JSON (*.json)")
        if path is None:
            return None
    from ...model import ModelFileError, load_model

    try:
        return load_model(path), str(path)
    except (ModelFileError, OSError, ValueError) as exc:
        notify_error(f"Cannot load the model: {exc}")
        return None


def refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> bool:
    """True (and an error notification) if ``path`` exists and replacing it was not confirmed."""
    if os.path.exists(path) and not overwrite:
        show_error(f"{path} exists; choose another name (the Save dialog asks before replacing a file)")
        return True
    return False


def info(message: str) -> None:
    show_info(message)


def warn(message: str) -> None:
    show_warning(message)
