"""Checks and index helpers shared by the statistics modules (descriptors, transport, similarity).

One home for: the phase-map check, per-axis voxel spacing, the list of axes, the face of an axis, and
face-connected clusters that span the box along an axis (the notion of "connected" of every
descriptor and of the transport solver).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..phases import N_PHASES

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

    Accepts NumPy arrays and torch tensors (moved to the CPU).

    Raises
    ------
    TypeError
        If ``phases`` is not array-like or not integer/boolean typed.
    ValueError
        If it is not 2D/3D, is empty, or holds labels other than 0, 1, 2.
    """
    if hasattr(phases, "detach") and hasattr(phases, "cpu"):  # torch tensor, without importing torch
        phases = phases.detach().cpu().numpy()
    try:
        arr = np.asarray(phases)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be a NumPy array or torch tensor, got {type(phases).__name__}") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"{name} must hold integer phase labels 0, 1, 2 (got dtype {arr.dtype}); "
            "convert a label image with napari_assb_twin.io first"
        )
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D phase map, got shape {arr.shape}")
    if arr.size == 0 or min(arr.shape) < 2:
        raise ValueError(f"{name} needs at least 2 voxels along every axis, got shape {arr.shape}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= N_PHASES:
        raise ValueError(
            f"{name} holds labels {lo}..{hi}, but phase maps use 0 (pore), 1 (active), 2 (electrolyte); "
            "map raw labels with napari_assb_twin.io first"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


def voxel_spacing(voxel_size: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """Per-axis voxel size as a tuple of positive floats."""
    if np.isscalar(voxel_size):
        sp = (float(voxel_size),) * ndim  # type: ignore[arg-type]
    else:
        sp = tuple(float(v) for v in voxel_size)  # type: ignore[union-attr]
        if len(sp) != ndim:
            raise ValueError(f"voxel_size has {len(sp)} values but the phase map has {ndim} axes")
    if not all(math.isfinite(v) and v > 0 for v in sp):
        raise ValueError(f"voxel_size must be positive and finite, got {voxel_size!r}")
    return sp


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
