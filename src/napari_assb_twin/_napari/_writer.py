"""napari writer: a phase Labels layer -> ImageJ ``uint8`` TIFF with its voxel size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..io.labels import normalize_unit, write_label_tiff

__all__ = ["write_labels"]


def _spacing_and_unit(meta: Mapping[str, Any], ndim: int) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel size per axis and unit from a layer's ``scale`` / ``units``; None if uncalibrated."""
    scale = meta.get("scale")
    units = meta.get("units")
    unit_names = {normalize_unit(u) for u in units} if units is not None else {None}
    unit_names.discard(None)
    if scale is None or not unit_names:
        # pixels: scale 1 (or an unphysical scale) is not a calibration worth writing
        if scale is None or np.allclose(np.asarray(scale, dtype=float), 1.0):
            return None, None
        return tuple(float(s) for s in scale[-ndim:]), None
    if len(unit_names) > 1:
        raise ValueError(f"layer axes have different units {sorted(unit_names)}; TIFF stores one length unit")
    return tuple(float(s) for s in scale[-ndim:]), unit_names.pop()


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one phase Labels layer to ``path`` (.tif / .tiff), atomically.

    Parameters
    ----------
    path : str
        Target file.
    data : array_like
        The layer data: 2D or 3D integer array with values 0 (pore), 1 (active), 2 (electrolyte).
        For a multiscale layer the full-resolution level is written.
    meta : dict
        The layer's attributes; ``scale`` and ``units`` become the file's voxel size and unit.

    Returns
    -------
    list of str
        The path written.
    """
    if isinstance(data, (list, tuple)):  # multiscale: level 0 is full resolution
        data = data[0]
    arr = np.asarray(data)
    spacing, unit = _spacing_and_unit(meta, arr.ndim)
    written = write_label_tiff(path, arr, voxel_size=spacing, unit=unit)
    return [str(written)]
