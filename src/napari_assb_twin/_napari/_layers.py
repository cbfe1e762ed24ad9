"""Shared helpers for phase-map Labels layers: one colormap, one way to build layer metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from ..phases import PHASE_COLORS, PHASE_NAMES

__all__ = ["PIXEL_UNIT", "phase_colormap", "phase_labels_layer_data", "phase_layer_kwargs"]

#: napari's unit of an uncalibrated layer (scale 1); phasemap.normalize_unit reads it as pixels (None).
PIXEL_UNIT = "pixel"

_AXIS_LABELS = {2: ("y", "x"), 3: ("z", "y", "x")}


def phase_colormap() -> DirectLabelColormap:
    """Colormap giving each canonical phase its colour from :data:`~napari_assb_twin.phases.PHASE_COLORS`.

    Pore (0) is napari's background label but is drawn in its own colour (not transparent) so the
    three phases look the same in every layer, plot and report; any other value is transparent.
    """
    colors: dict[int | None, tuple[float, ...]] = {int(k): tuple(v) for k, v in PHASE_COLORS.items()}
    colors[None] = (0.0, 0.0, 0.0, 0.0)
    return DirectLabelColormap(color_dict=colors, name="assb phases")


def phase_layer_kwargs(
    name: str,
    ndim: int,
    spacing: Sequence[float] | float | None = None,
    unit: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Layer keyword arguments for a canonical phase map (name, scale, units, axis labels, colours).

    Parameters
    ----------
    name : str
        Layer name.
    ndim : int
        2 or 3.
    spacing : float or sequence of float, optional
        Physical size per axis (or one isotropic value); pixels (scale 1) when None.
    unit : str, optional
        Length unit of ``spacing``; ignored (pixels) when ``spacing`` is None.
    metadata : mapping, optional
        Stored in ``layer.metadata`` (e.g. ``phase_mapping``, ``source``).
    """
    if ndim not in _AXIS_LABELS:
        raise ValueError(f"phase maps are 2D or 3D, got {ndim}D")
    if spacing is None:
        scale: tuple[float, ...] = (1.0,) * ndim
        units: tuple[str, ...] = (PIXEL_UNIT,) * ndim
    else:
        scale = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (ndim,)))
        units = (unit or PIXEL_UNIT,) * ndim
    meta = {"phase_names": dict(enumerate(PHASE_NAMES))}
    meta.update(metadata or {})
    return {
        "name": name,
        "scale": scale,
        "units": units,
        "axis_labels": _AXIS_LABELS[ndim],
        "colormap": phase_colormap(),
        "metadata": meta,
    }


def phase_labels_layer_data(
    data: np.ndarray,
    name: str,
    spacing: Sequence[float] | float | None = None,
    unit: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """A ``(data, kwargs, "labels")`` layer data tuple for a canonical ``uint8`` phase map.

    A dask array (a Zarr twin) stays lazy; anything else becomes a NumPy ``uint8`` array.
    """
    if type(data).__module__.startswith("dask") and data.dtype == np.uint8:
        arr = data
    else:
        arr = np.asarray(data, dtype=np.uint8)
    return arr, phase_layer_kwargs(name, arr.ndim, spacing, unit, metadata), "labels"
