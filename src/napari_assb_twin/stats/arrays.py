"""Checks and index helpers shared by the statistics modules (descriptors, transport, similarity).

One home for: the phase-map check, per-axis voxel spacing, the list of axes, the face of an axis, and
face-connected clusters that span the box along an axis (the notion of "connected" of every
descriptor and of the transport solver).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..phasemap import check_phase_map, check_spacing

__all__ = [
    "as_phase_map",
    "check_axes",
    "cluster_labels",
    "face",
    "percolating_mask",
    "select_labels",
    "voxel_spacing",
]


def as_phase_map(phases: Any, name: str = "phases") -> np.ndarray:
    """Return ``phases`` as a C-contiguous ``uint8`` NumPy array (2D or 3D) with values < 3.

    :func:`napari_assb_twin.phasemap.check_phase_map` with the statistics' one extra demand: at
    least 2 voxels along every axis (a neighbour to measure against). Accepts NumPy arrays and
    torch tensors (moved to the CPU).

    Raises
    ------
    TypeError
        If ``phases`` is not array-like or not integer/boolean typed.
    ValueError
        If it is not 2D/3D, is empty, or holds labels other than 0, 1, 2.
    """
    return check_phase_map(phases, name, ndim=(2, 3), min_side=2)


def voxel_spacing(voxel_size: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """Per-axis voxel size as a tuple of positive floats (:func:`~napari_assb_twin.phasemap.check_spacing`)."""
    if voxel_size is None:
        raise TypeError("voxel_size must be a number or a sequence of numbers, got None")
    return check_spacing(voxel_size, ndim)  # type: ignore[return-value]


def check_axes(axes: int | Iterable[int] | None, ndim: int) -> tuple[int, ...]:
    """Validated tuple of axes (``None`` = all axes of the phase map)."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = tuple(int(a) for a in axes)
    for a in out:
        if not 0 <= a < ndim:
            raise ValueError(f"axis {a} does not exist for a {ndim}D phase map (use 0..{ndim - 1})")
    return out


def face(ndim: int, axis: int, index: int) -> tuple[slice | int, ...]:
    """Index tuple selecting the face ``index`` (0 or -1) perpendicular to ``axis``."""
    sl: list[slice | int] = [slice(None)] * ndim
    sl[axis] = index
    return tuple(sl)


def cluster_labels(indicator: np.ndarray) -> np.ndarray:
    """Face-connected cluster labels (int32, 0 = background) of a boolean image."""
    labels, _ = ndi.label(indicator, structure=ndi.generate_binary_structure(indicator.ndim, 1), output=np.int32)
    return labels


def select_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Boolean mask of the voxels whose label is in ``keep`` (lookup table: faster than np.isin)."""
    table = np.zeros(int(labels.max()) + 1, dtype=bool)
    table[keep] = True
    return table[labels]


def percolating_mask(labels: np.ndarray, axis: int) -> np.ndarray:
    """Voxels of the clusters (from :func:`cluster_labels`) that touch both faces normal to ``axis``."""
    inlet = np.unique(labels[face(labels.ndim, axis, 0)])
    outlet = np.unique(labels[face(labels.ndim, axis, -1)])
    through = np.intersect1d(inlet, outlet)
    through = through[through > 0]
    if through.size == 0:
        return np.zeros(labels.shape, dtype=bool)
    return select_labels(labels, through)
