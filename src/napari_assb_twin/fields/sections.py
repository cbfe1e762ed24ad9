"""Axis-aligned sections of a 3D model or volume: which axes a plane spans, and cutting one.

The restriction of a stationary Gaussian field to an axis-aligned plane is a 2D Gaussian field with
the restricted correlation, so sections are simulated directly in 2D (O(n^2 log n)) instead of
cutting them from 3D volumes. This module names the planes; it is torch-free.

Convention (METHOD.md): the symmetry (pressing) axis is ``axis`` (0 by default). A section whose
normal is the symmetry axis is *in-plane*; any other axis-aligned section contains the symmetry
axis and is *axial*, with the symmetry axis as its rows.
"""

from __future__ import annotations

from ..options import PLANES

__all__ = ["cut_section", "plane_axes", "plane_of_normal"]


def _check_axis(axis: int) -> None:
    if axis not in (0, 1, 2):
        raise ValueError(f"symmetry axis must be 0, 1 or 2, got {axis!r}")


def plane_axes(plane: str, axis: int = 0) -> tuple[int, int]:
    """3D axes spanned by a section's (row, column) dimensions.

    ``inplane``: perpendicular to the symmetry ``axis`` (e.g. ``volume[z]`` spans axes (1, 2) for
    axis 0). ``axial``: contains the symmetry axis as its rows (``volume[:, y, :]`` spans (0, 2)).
    """
    _check_axis(axis)
    others = [a for a in (0, 1, 2) if a != axis]
    if plane == "inplane":
        return others[0], others[1]
    if plane == "axial":
        return axis, others[1]
    raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def plane_of_normal(normal: int, axis: int = 0) -> str:
    """``"inplane"`` for a section perpendicular to the symmetry ``axis``, else ``"axial"``."""
    _check_axis(axis)
    _check_axis(normal)
    return "inplane" if normal == axis else "axial"


def cut_section(volume, plane: str, index: int, axis: int = 0, normal: int | None = None):
    """Cut a section of a 3D array, rows and columns as :func:`plane_axes` describes.

    ``normal`` chooses the normal of an axial section among the two axes perpendicular to
    ``axis`` (default: the one :func:`plane_axes` leaves out); the symmetry axis stays the rows.
    """
    rows, cols = plane_axes(plane, axis)
    if normal is not None and plane == "axial":
        if normal == axis:
            raise ValueError(f"an axial section contains the symmetry axis {axis}: its normal cannot be {normal}")
        cols = ({0, 1, 2} - {axis, normal}).pop()
    elif normal is not None and normal != ({0, 1, 2} - {rows, cols}).pop():
        raise ValueError(f"an in-plane section's normal is the symmetry axis {axis}, got {normal}")
    normal = ({0, 1, 2} - {rows, cols}).pop()
    sl = [slice(None)] * 3
    sl[normal] = index
    sec = volume[tuple(sl)]
    # remaining dims are in increasing axis order; transpose if rows > cols
    return sec if rows < cols else sec.T
