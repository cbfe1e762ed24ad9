"""A phase map with its geometry: the one value every front end and use case passes around.

:class:`PhaseMap` holds a canonical ``uint8`` phase map (0 pore, 1 active, 2 electrolyte; see
:mod:`napari_assb_twin.phases`) with its voxel size per axis, length unit, source, the message of
the label-to-phase conversion and, for 2D sections, the plane relative to the symmetry axis. It
owns the rules that used to be decided again in each front end:

* :func:`check_phase_map` -- the one check of a canonical phase map (dtype, axes, labels, NaN,
  emptiness, more than three phases);
* the isotropic-voxel test and the "same voxel size" test, with one tolerance
  (:data:`VOXEL_RTOL`);
* resolving the voxel size / unit from a file's calibration and the user's overrides
  (:meth:`PhaseMap.with_geometry`);
* cutting in-plane / axial sections (on :mod:`napari_assb_twin.fields.sections`);
* the default distance range ``r_max`` of the two-point statistics (:func:`default_r_max`).

Torch-free: importing this module imports NumPy only (the correlation lengths behind the default
``r_max`` import the coverage estimator when they are asked for).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from .checks import check_unit
from .fields.sections import cut_section, plane_of_normal
from .labelmap import to_phases
from .options import PLANES
from .phases import N_PHASES, PHASE_NAMES

__all__ = [
    "R_MAX_CAP",
    "R_MAX_FLOOR",
    "R_MAX_LENGTHS",
    "VOXEL_RTOL",
    "PhaseMap",
    "check_phase_map",
    "check_spacing",
    "default_r_max",
    "is_isotropic",
    "largest_r_max",
    "normalize_unit",
    "one_over_e_lengths",
    "resolve_geometry",
    "same_size",
]

#: Relative tolerance of every "same voxel size" test (isotropy, real vs twin, section vs section).
#: TIFF stores pixel sizes as rationals and some writers as float32 (relative error < 1e-7), far
#: below it; a 0.1 % anisotropy moves a length by less than one voxel over 1000 voxels.
VOXEL_RTOL: float = 1e-3

#: Default ``r_max``: :data:`R_MAX_LENGTHS` x the longest 1/e correlation length of the phase
#: indicators, clipped to [:data:`R_MAX_FLOOR`, :data:`R_MAX_CAP`] px and to what the image supports.
R_MAX_LENGTHS: float = 5.0
R_MAX_FLOOR: int = 16
R_MAX_CAP: int = 64


# --------------------------------------------------------------------------------------------
# the one phase-map check
# --------------------------------------------------------------------------------------------
def check_phase_map(
    array: Any, name: str = "phase map", ndim: Sequence[int] = (2, 3), min_side: int = 1
) -> np.ndarray:
    """Return ``array`` as a C-contiguous ``uint8`` canonical phase map, or raise a clear error.

    Parameters
    ----------
    array
        NumPy array, torch tensor (moved to the CPU) or array-like holding the phases 0, 1, 2.
    name
        What to call it in messages (a file or layer name).
    ndim
        Accepted numbers of axes.
    min_side
        Smallest accepted size along every axis.

    Raises
    ------
    TypeError
        Not numeric, floating point (grey values or NaN) or object data.
    ValueError
        Wrong number of axes, empty, too small, or labels other than 0, 1, 2 (raw labels or more
        than three phases: convert them with :func:`napari_assb_twin.io.to_phases`).
    """
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # torch tensor, without importing torch
        array = array.detach().cpu().numpy()
    try:
        arr = np.asarray(array)
    except Exception as exc:  # noqa: BLE001 - exotic objects: one clear line
        raise TypeError(f"{name} must be a NumPy array or torch tensor, got {type(array).__name__}") from exc
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr)):
        raise TypeError(f"{name} contains NaN or infinite values: a phase map holds the integer phases 0, 1, 2")
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer phase labels 0, 1, 2 (got dtype {arr.dtype}); "
            "convert a label image with napari_assb_twin.io.to_phases first"
        )
    allowed = tuple(ndim)
    if arr.ndim not in allowed:
        dims = " or ".join(f"{d}D" for d in allowed)
        raise ValueError(f"{name} must be a {dims} phase map, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if min(arr.shape) < min_side:
        raise ValueError(f"{name} needs at least {min_side} voxels along every axis, got shape {arr.shape}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= N_PHASES:
        raise ValueError(
            f"{name} holds labels {lo}..{hi}, but phase map values must be 0 (pore), 1 (active), 2 (electrolyte); "
            "map raw labels (or merge extra phases) with napari_assb_twin.io.to_phases first"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# geometry: units, spacing, tolerances
# --------------------------------------------------------------------------------------------
_UNIT_ALIASES = {
    "um": "um", "µm": "um", "μm": "um", "\\u00b5m": "um", "micron": "um", "microns": "um",
    "micrometer": "um", "micrometre": "um", "micrometers": "um", "micrometres": "um",
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "millimeters": "mm",
    "cm": "cm", "centimeter": "cm", "centimetre": "cm",
    "m": "m", "meter": "m", "metre": "m",
    "a": "angstrom", "å": "angstrom", "angstrom": "angstrom",
}
_NO_UNIT = {"", "pixel", "pixels", "px", "css_pixel", "none", "dimensionless", "unit", "units"}


def normalize_unit(unit: object) -> str | None:
    """Return a short length unit (``"um"``, ``"nm"`` ...) or None for pixels / no unit.

    Accepts ImageJ spellings (``micron``, ``\\u00B5m``), pint unit names (``micrometer``) and pint
    ``Unit`` objects (anything whose ``str`` is such a name). Unknown units are returned stripped.
    """
    if unit is None:
        return None
    text = str(unit).strip()
    key = text.lower()
    if key in _NO_UNIT:
        return None
    return _UNIT_ALIASES.get(key, text)


def check_spacing(voxel_size: object, ndim: int) -> tuple[float, ...] | None:
    """Validate a scalar or per-axis voxel size and return it per axis (z, y, x order)."""
    if voxel_size is None:
        return None
    sizes = (voxel_size,) * ndim if np.ndim(voxel_size) == 0 else tuple(voxel_size)  # type: ignore[arg-type]
    if len(sizes) != ndim:
        raise ValueError(f"voxel_size has {len(sizes)} values but the image is {ndim}D; give one value or {ndim}")
    try:
        out = tuple(float(s) for s in sizes)
    except (TypeError, ValueError):
        raise TypeError(f"voxel_size must be a number or a sequence of numbers, got {voxel_size!r}") from None
    if not all(math.isfinite(s) and s > 0 for s in out):
        raise ValueError(f"voxel_size must be positive and finite, got {voxel_size!r}")
    return out


def resolve_geometry(
    calibrated: bool, file_unit: str | None, voxel_size: float | None = None, unit: str | None = None
) -> str | None:
    """The unit a map is measured in after the user's overrides (the one voxel size / unit rule).

    An explicit ``voxel_size`` replaces the file's calibration; the unit is ``unit``, else the
    file's, else ``"um"`` when a size is known (given or from the file) and pixels (None) otherwise.
    """
    if unit:
        return normalize_unit(check_unit(unit, "--unit"))
    if voxel_size is not None or calibrated:
        return normalize_unit(file_unit) or "um"
    return None


def same_size(a: float, b: float) -> bool:
    """Whether two voxel sizes are equal within :data:`VOXEL_RTOL` (the one tolerance)."""
    return abs(float(a) - float(b)) <= VOXEL_RTOL * max(abs(float(a)), abs(float(b)))


def is_isotropic(spacing: Sequence[float] | None) -> bool:
    """Whether every axis has the last axis's voxel size within :data:`VOXEL_RTOL` (None: True).

    For a layer scale or a file's spacing when no :class:`PhaseMap` is at hand.
    """
    return spacing is None or all(same_size(s, spacing[-1]) for s in spacing)


# --------------------------------------------------------------------------------------------
# the default distance range of two-point statistics
# --------------------------------------------------------------------------------------------
def largest_r_max(shape: Sequence[int]) -> int:
    """Largest ``r_max`` an image supports: the minus-sampling estimate needs a side >= 2 r_max + 1."""
    return max(1, (min(int(n) for n in shape) - 1) // 2)


def default_r_max(shape: Sequence[int], correlation_length: float) -> int:
    """The default ``r_max`` (px) of every two-point statistic in the package.

    ``ceil(R_MAX_LENGTHS x correlation_length)`` clipped to [R_MAX_FLOOR, R_MAX_CAP] and to
    :func:`largest_r_max` of ``shape``: the range covers the correlated part of the structure (the
    indicator autocorrelation has decayed to e^-5 < 1 %) without paying for flat tails. This is the
    rule calibration always used; the other four formulas (``min(64, n // 4)`` ...) ignored the
    structure and are gone.
    """
    r = int(math.ceil(R_MAX_LENGTHS * float(correlation_length))) if math.isfinite(correlation_length) else R_MAX_CAP
    r = min(max(r, R_MAX_FLOOR), R_MAX_CAP)
    return max(1, min(r, largest_r_max(shape)))


def one_over_e_lengths(c: np.ndarray, r_max: int | None = None) -> np.ndarray:
    """1/e length (px) of each phase indicator's autocorrelation from ``C`` of shape ``(P, P, R + 1)``.

    Linear interpolation between the lags around ``exp(-1)``; ``r_max`` (default ``R``) when the
    correlation never drops below it.
    """
    c = np.asarray(c, dtype=float)
    r_max = c.shape[-1] - 1 if r_max is None else int(r_max)
    lengths = np.zeros(c.shape[0])
    level = math.exp(-1)
    for p in range(c.shape[0]):
        v = c[p, p, 0]
        rho = (c[p, p] - v * v) / max(v - v * v, 1e-12)
        below = np.nonzero(rho < level)[0]
        if below.size == 0:
            lengths[p] = float(r_max)
        else:
            i = int(below[0])
            p0, p1 = rho[i - 1], rho[i]
            lengths[p] = (i - 1) + (p0 - level) / max(p0 - p1, 1e-12)
    return lengths


# --------------------------------------------------------------------------------------------
# the value type
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PhaseMap:
    """A canonical phase map with its geometry and where it came from.

    Attributes
    ----------
    data : numpy.ndarray
        ``uint8`` phases 0 pore, 1 active, 2 electrolyte; 2D (y, x) or 3D (z, y, x). Checked by
        :func:`check_phase_map` on construction.
    spacing : tuple of float or None
        Physical size per axis in ``unit``; None when uncalibrated (pixels).
    unit : str or None
        Length unit (``"um"`` ...); None for pixels.
    source : str
        File, layer or array it came from (``"a.tif"``, ``"volume axis0=12"`` ...).
    message : str
        What the label-to-phase conversion did (shown to the user).
    mapping : dict of int to int
        Label -> phase used for the conversion.
    plane : str or None
        For 2D sections: ``"inplane"`` or ``"axial"`` relative to the symmetry axis.
    axis_labels : tuple of str
        Name of each axis (default ``("z", "y", "x")[-ndim:]``).
    """

    data: np.ndarray
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    source: str = "array"
    message: str = ""
    mapping: Mapping[int, int] = field(default_factory=dict)
    plane: str | None = None
    axis_labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        data = check_phase_map(self.data, self.source)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "spacing", check_spacing(self.spacing, data.ndim))
        object.__setattr__(self, "unit", normalize_unit(check_unit(self.unit, f"{self.source}: unit")))
        if self.plane is not None:
            if self.plane not in PLANES:
                raise ValueError(f"{self.source}: plane must be one of {', '.join(PLANES)}, got {self.plane!r}")
            if data.ndim != 2:
                raise ValueError(f"{self.source}: only a 2D section has a plane, got shape {data.shape}")
        labels = tuple(str(a) for a in (self.axis_labels or ()))
        if len(labels) != data.ndim:
            labels = ("z", "y", "x")[-data.ndim :]
        object.__setattr__(self, "axis_labels", labels)

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_labels(
        cls,
        array: Any,
        mapping: Any = None,
        *,
        voxel_size: float | Sequence[float] | None = None,
        unit: str | None = None,
        source: str = "array",
        plane: str | None = None,
    ) -> "PhaseMap":
        """A phase map from raw labels (mapped with ``mapping`` or automatically, see ``io.to_phases``).

        Errors name ``source``.
        """
        arr = np.asarray(array)
        if arr.dtype == object:
            raise TypeError(f"{source}: expected a numeric label image, got an object array")
        try:
            phases, used, message = to_phases(arr, mapping)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{source}: {exc}") from None
        return cls(phases, voxel_size, unit, source, message, used, plane)

    # -- geometry ------------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def image(self) -> np.ndarray:
        """The phase map (the name calibration sections used; same as :attr:`data`)."""
        return self.data

    @property
    def voxel_size(self) -> float | None:
        """In-plane voxel size (last axis) in :attr:`unit`; None when uncalibrated."""
        return None if self.spacing is None else self.spacing[-1]

    @property
    def pixel_size(self) -> float:
        """:attr:`voxel_size`, 1 (pixel) when uncalibrated."""
        return 1.0 if self.spacing is None else self.spacing[-1]

    @property
    def unit_label(self) -> str:
        """:attr:`unit` or ``"px"``."""
        return self.unit or "px"

    @property
    def is_isotropic(self) -> bool:
        """Same voxel size along every axis within :data:`VOXEL_RTOL` (uncalibrated: True)."""
        return is_isotropic(self.spacing)

    def anisotropy_note(self) -> str:
        """"" for isotropic voxels, else one line saying that the last axis's size is used."""
        if self.is_isotropic:
            return ""
        sizes = " x ".join(f"{s:g}" for s in self.spacing or ())
        return (f"{self.source}: anisotropic voxels ({sizes} {self.unit_label}); statistics use cubic voxels of "
                f"the last axis's size {self.pixel_size:g} {self.unit_label}")

    def same_voxel_size(self, other: "PhaseMap") -> bool:
        """Whether both have the same (in-plane) voxel size and unit; uncalibrated maps match anything."""
        if self.spacing is None or other.spacing is None:
            return True
        return self.unit == other.unit and same_size(self.pixel_size, other.pixel_size)

    def with_geometry(self, voxel_size: float | None = None, unit: str | None = None) -> "PhaseMap":
        """The same map with the user's overrides applied (the one voxel size / unit rule).

        An explicit ``voxel_size`` replaces the file's calibration (cubic voxels); the unit is
        ``unit``, else the file's, else ``"um"`` for a calibrated map and pixels otherwise.
        """
        spacing = (float(voxel_size),) * self.ndim if voxel_size is not None else self.spacing
        return replace(self, spacing=spacing, unit=resolve_geometry(self.spacing is not None, self.unit, voxel_size, unit))

    # -- content ---------------------------------------------------------------------------------------
    @property
    def fractions(self) -> dict[str, float]:
        """Volume (area) fraction of each phase."""
        counts = np.bincount(self.data.ravel(), minlength=N_PHASES)[:N_PHASES]
        return {name: float(counts[i]) / self.data.size for i, name in enumerate(PHASE_NAMES)}

    def phases_present(self) -> tuple[int, ...]:
        """The phases that occur at least once."""
        return tuple(int(p) for p in np.flatnonzero(np.bincount(self.data.ravel(), minlength=N_PHASES)))

    @cached_property
    def sha256(self) -> str:
        """sha256 of the shape and bytes (provenance)."""
        h = hashlib.sha256()
        h.update(f"{self.data.shape}".encode())
        h.update(self.data.tobytes())
        return h.hexdigest()

    # -- sections --------------------------------------------------------------------------------------
    def cut(self, normal: int, index: int, axis: int = 0) -> "PhaseMap":
        """The 2D section ``index`` with normal ``normal`` of a 3D map (rows = symmetry axis if axial).

        The plane follows from the normal: perpendicular to the symmetry ``axis`` is in-plane,
        anything else axial (:func:`~napari_assb_twin.fields.sections.plane_of_normal`).
        """
        if self.ndim != 3:
            raise ValueError(f"{self.source} is 2D: it has no sections to cut")
        if normal not in (0, 1, 2):
            raise ValueError(f"section normal must be axis 0, 1 or 2, got {normal!r}")
        n = self.shape[normal]
        if not 0 <= int(index) < n:
            raise ValueError(f"{self.source}: section {index} along axis {normal} is outside 0..{n - 1}")
        plane = plane_of_normal(normal, axis)
        img = cut_section(self.data, plane, int(index), axis, normal=normal)
        keep = [a for a in (0, 1, 2) if a != normal]
        if plane == "axial" and keep[0] != axis:
            keep = keep[::-1]
        spacing = None if self.spacing is None else tuple(self.spacing[a] for a in keep)
        return PhaseMap(np.ascontiguousarray(img), spacing, self.unit, f"{self.source} axis{normal}={int(index)}",
                        self.message, self.mapping, plane, tuple(self.axis_labels[a] for a in keep))  # type: ignore[index]

    def sections(self, n: int = 8, planes: Sequence[str] = PLANES, axis: int = 0) -> list["PhaseMap"]:
        """``n`` evenly spaced sections per plane of a 3D map.

        Axial sections alternate between the two normals perpendicular to ``axis`` (e.g.
        ``volume[:, y, :]`` and ``volume[:, :, x]``), always with the symmetry axis as rows.
        """
        if self.ndim != 3:
            raise ValueError(f"{self.source}: sections are cut from a 3D map, got shape {self.shape}")
        if int(n) < 1:
            raise ValueError(f"the number of sections must be >= 1, got {n}")
        out = []
        for plane in planes:
            if plane not in PLANES:
                raise ValueError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
            for k in range(int(n)):
                if plane == "inplane":
                    idx = int((k + 0.5) * self.shape[axis] / n)
                    out.append(self.cut(axis, idx, axis))
                else:
                    normal = [a for a in (0, 1, 2) if a != axis][k % 2]
                    size = self.shape[normal]
                    idx = min(int((k // 2 + 0.5) * size / max(1, (n + 1 - k % 2) // 2)), size - 1)
                    out.append(self.cut(normal, idx, axis))
        return out

    # -- two-point statistics -------------------------------------------------------------------------
    def correlation_length(self) -> float:
        """Longest 1/e length (px) of the phase indicators' autocorrelations over all axes."""
        from .stats.coverage import coverage

        r = max(2, min(R_MAX_CAP, largest_r_max(self.shape)))
        res = coverage(self.data, r, periodic=False, radial=False)
        return max(float(one_over_e_lengths(c, r).max()) for c in np.asarray(res.directional))

    def default_r_max(self) -> int:
        """:func:`default_r_max` of this map (from its own correlation length).

        Raises ``ValueError`` for a map thinner than 5 px along an axis (no room for r_max 2): the
        user then chooses an ``r_max`` of 1 explicitly, or a thicker image.
        """
        if largest_r_max(self.shape) < 2:
            thin = min(range(self.ndim), key=lambda a: self.shape[a])
            raise ValueError(f"{self.source}: the image is {' x '.join(map(str, self.shape))} px, only "
                             f"{self.shape[thin]} px along axis {thin}: too thin to estimate its correlation length "
                             "(two-point statistics up to r need 2 r + 1 px); use a thicker image, or give --rmax 1")
        return default_r_max(self.shape, self.correlation_length())

    def __repr__(self) -> str:
        geo = "uncalibrated" if self.spacing is None else f"voxel {' x '.join(f'{s:g}' for s in self.spacing)} {self.unit_label}"
        plane = f", {self.plane}" if self.plane else ""
        return f"PhaseMap({self.source!r}, {' x '.join(map(str, self.shape))}, {geo}{plane})"
