"""Phase data from napari layers: a layer's voxel size and unit, its canonical PhaseMap (or a
section of it), which layers hold labels, and the slice on view.

No torch here: the coverage widget imports this module and must load without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer

from ...fields.sections import cut_section, plane_of_normal
from ...io.labels import to_phases
from ...phasemap import PhaseMap, normalize_unit

if TYPE_CHECKING:
    import napari


#: What a 2D layer is, as the docks show it -> the package's plane names (options.PLANES).
PLANE_LABELS = {"in-plane": "inplane", "axial": "axial"}


#: ``layer.metadata`` key marking a layer made by the generator widget (value: the widget's id).
GENERATED_TAG = "assb_twin_generated_by"
#: ``layer.metadata`` key of a generated twin's model (its model-file dict): the Validate tab
#: simulates further realisations of it.
TWIN_MODEL_KEY = "assb_twin_model"


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


def check_layer(layer: Any) -> np.ndarray:
    """The cheap checks of :func:`layer_phase_data` (layer type, dtype, size, axes; no pass over the
    voxels): its array, or a clear ``TypeError`` / ``ValueError``. A dock runs them on the GUI thread
    and leaves the conversion, a pass over every voxel, to its worker."""
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
    return arr


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
    arr = check_layer(layer)
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
