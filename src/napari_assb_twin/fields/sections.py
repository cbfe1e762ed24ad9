"""Exact 2D sections of a 3D model.

The restriction of a stationary Gaussian field to an axis-aligned plane is a 2D Gaussian field with
the restricted correlation, so sections are simulated directly in 2D (O(n^2 log n)) instead of
cutting them from 3D volumes. This module names the planes.
"""

from __future__ import annotations

from ..options import PLANES


def plane_axes(plane: str, axis: int = 0) -> tuple[int, int]:
    """3D axes spanned by a section's (row, column) dimensions.

    ``inplane``: perpendicular to the symmetry ``axis`` (e.g. ``volume[z]`` spans axes (1, 2) for
    axis 0). ``axial``: contains the symmetry axis as its rows (``volume[:, y, :]`` spans (0, 2)).
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"symmetry axis must be 0, 1 or 2, got {axis!r}")
    others = [a for a in (0, 1, 2) if a != axis]
    if plane == "inplane":
        return others[0], others[1]
    if plane == "axial":
        return axis, others[1]
    raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def cut_section(volume, plane: str, index: int, axis: int = 0):
    """Cut the section of a 3D array that :func:`plane_axes` describes (rows, columns order kept)."""
    rows, cols = plane_axes(plane, axis)
    normal = ({0, 1, 2} - {rows, cols}).pop()
    sl = [slice(None)] * 3
    sl[normal] = index
    sec = volume[tuple(sl)]
    # remaining dims are in increasing axis order; transpose if rows > cols
    return sec if rows < cols else sec.T
