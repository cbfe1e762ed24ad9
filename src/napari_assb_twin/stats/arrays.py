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


#: Planes per slab of :func:`cluster_labels` on a volume (scipy.ndimage.label holds the GIL for a
#: whole call: 0.4 s at 256^3 on a loaded 2-core machine, a stall of napari's window).
LABEL_SLAB = 32


def cluster_labels(indicator: np.ndarray) -> np.ndarray:
    """Face-connected cluster labels (int32, 0 = background) of a boolean image.

    The same labels as ``scipy.ndimage.label`` (numbered in raster order of each cluster's first
    voxel); a volume is labelled slab by slab along axis 0 and the slabs' clusters that touch across
    a slab boundary are merged, so no single call holds the GIL for long.
    """
    ind = np.asarray(indicator, dtype=bool)
    structure = ndi.generate_binary_structure(ind.ndim, 1)
    if ind.ndim != 3 or ind.shape[0] <= LABEL_SLAB:
        labels, _ = ndi.label(ind, structure=structure, output=np.int32)
        return labels
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out = np.zeros(ind.shape, dtype=np.int32)
    count = 0
    for z0 in range(0, ind.shape[0], LABEL_SLAB):
        block = out[z0:z0 + LABEL_SLAB]
        n = ndi.label(ind[z0:z0 + LABEL_SLAB], structure=structure, output=block)
        block[block > 0] += count
        count += int(n)
    # clusters of neighbouring slabs that touch across the boundary plane are one cluster
    pairs = []
    for z in range(LABEL_SLAB, ind.shape[0], LABEL_SLAB):
        both = ind[z - 1] & ind[z]
        pairs.append(np.stack([out[z - 1][both], out[z][both]]))
    a, b = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), dtype=np.int32)
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(count + 1, count + 1))
    _, comp = connected_components(graph, directed=False)
    # number the merged clusters by their first slab label (= raster order of their first voxel)
    first = np.full(int(comp.max()) + 1, count + 1, dtype=np.int64)
    np.minimum.at(first, comp[1:], np.arange(1, count + 1))
    used = np.flatnonzero(first <= count)
    rank = np.zeros_like(first)
    rank[used[np.argsort(first[used])]] = np.arange(1, used.size + 1)
    table = rank[comp].astype(np.int32)
    table[0] = 0
    return table[out]


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
