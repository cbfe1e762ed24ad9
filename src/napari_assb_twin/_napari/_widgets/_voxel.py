"""A row for setting a layer's voxel size and length unit (its napari scale and units).

A TIFF without calibration opens at 1 px per voxel; the docks measure everything in the layer's
scale and units (coverage distances, calibrated length scales, the twin's voxel size, report
lengths), so this row is where a user says "0.39 um" once for the whole workflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

from ...phasemap import resolve_geometry
from .._layers import PIXEL_UNIT
from ._common import LayerCombo, info, layer_spacing, notify_error

if TYPE_CHECKING:
    import napari

__all__ = ["UNIT_CHOICES", "VoxelSizeBox"]

#: Units offered for a voxel size ("px": uncalibrated, scale 1).
UNIT_CHOICES: tuple[str, ...] = ("um", "nm", "mm", "px")


class VoxelSizeBox(QWidget):
    """Layer combo, voxel size, unit and *Set*: writes the layer's ``scale`` and ``units``.

    Public sub-widgets: ``layer_combo``, ``size``, ``unit``, ``apply_button``. The fields show the
    chosen layer's current calibration.
    """

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.layer_combo = LayerCombo(napari_viewer, predicate=lambda lay: isinstance(lay, (Labels, Image)))
        self.layer_combo.setToolTip("The layer whose voxel size (scale) and unit to set")
        self.layer_combo.currentIndexChanged.connect(self._show_layer)
        self.size = QDoubleSpinBox()
        self.size.setDecimals(4)
        self.size.setRange(1e-4, 1e6)
        self.size.setValue(1.0)
        self.size.setMinimumWidth(70)
        self.size.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)  # typed, not stepped
        self.size.setToolTip("Voxel edge length (cubic voxels), in the unit on the right")
        self.unit = QComboBox()
        self.unit.addItems(list(UNIT_CHOICES))
        self.unit.setToolTip("Length unit; px: uncalibrated (voxel size 1)")
        self.unit.currentTextChanged.connect(lambda t: self.size.setEnabled(t != "px"))
        self.apply_button = QPushButton("Set")
        self.apply_button.setToolTip("Give the layer this voxel size and unit (its napari scale and units)")
        self.apply_button.clicked.connect(self.apply)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Voxel"))
        row.addWidget(self.layer_combo, stretch=1)
        row.addWidget(self.size)
        row.addWidget(self.unit)
        row.addWidget(self.apply_button)
        self._show_layer()

    def _show_layer(self, *args: Any) -> None:
        layer = self.layer_combo.layer()
        if layer is None:
            return
        spacing, unit = layer_spacing(layer)
        self.unit.setCurrentText(unit if unit in UNIT_CHOICES else "px")
        self.size.setValue(float(spacing[-1]) if unit else 1.0)

    def apply(self) -> bool:
        """Set the chosen layer's scale and units; False (with a notification) when impossible."""
        layer = self.layer_combo.layer()
        if layer is None:
            notify_error("Voxel size: no layer to set; open a segmented image first")
            return False
        # the package's one voxel size / unit rule (phasemap.resolve_geometry): None is pixels (scale 1)
        unit = resolve_geometry(False, None, float(self.size.value()), self.unit.currentText())
        size = float(self.size.value()) if unit else 1.0
        if not size > 0:
            notify_error("Voxel size: must be positive")
            return False
        self._rescale(layer, size, unit or PIXEL_UNIT)
        info(f"{layer.name}: voxel size {size:g} {unit}" if unit else f"{layer.name}: in pixels")
        return True

    def _rescale(self, layer: Any, size: float, unit: str) -> None:
        """Give ``layer`` the voxel size, keeping the slice on view and the image in the canvas.

        A new scale changes the world range: napari keeps the slider's world position, which is now
        past the layer's end (clamped to the last slice, the canvas blank). The data index on view
        is read before and put back after, and the camera is reset to the new extent.
        """
        dims = self.viewer.dims
        axes = list(range(dims.ndim - layer.ndim, dims.ndim))  # the layer's axes among the viewer's
        index = layer.world_to_data([dims.point[a] for a in axes])
        layer.scale = (size,) * layer.ndim
        layer.units = (unit,) * layer.ndim
        world = layer.data_to_world(index)
        for axis, value in zip(axes, world):
            if axis not in dims.displayed:
                dims.set_point(axis, float(value))
        self.viewer.reset_view()
