"""Calibration data: segmented 2D sections with their plane orientation and pixel size.

A :class:`CalibrationData` is a list of canonical ``uint8`` phase images (0 pore, 1 active,
2 electrolyte), each tagged ``"inplane"`` (perpendicular to the model's symmetry axis) or ``"axial"``
(containing it as its rows, see :func:`~napari_assb_twin.fields.sections.plane_axes`). 3D volumes
only serve as a source of such sections (METHOD.md section 7: 3D data only validate).

Volume fractions are estimated pixel-weighted over all images and fix the model thresholds. The
two-point coverage functions of the data use the non-periodic (minus-sampling) estimator and are
pooled per (plane, direction): an in-plane image informs the in-plane direction along both axes, an
axial image the axial direction (rows) and the in-plane direction (columns).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..fields.sections import PLANES, cut_section
from ..phases import N_PHASES, PHASE_NAMES

__all__ = ["CalibrationData", "Section", "DIRECTIONS"]

#: Directions of the 2D statistics that a plane informs, per image axis (rows, columns).
DIRECTIONS: dict[str, tuple[str, str]] = {"inplane": ("inplane", "inplane"), "axial": ("axial", "inplane")}


@dataclass(frozen=True)
class Section:
    """One segmented 2D section.

    Attributes
    ----------
    image : numpy.ndarray
        ``uint8`` phase map ``(H, W)`` with values 0, 1, 2.
    plane : str
        ``"inplane"`` or ``"axial"`` (rows = symmetry axis).
    pixel_size : float
        Physical size of one pixel in ``unit``.
    unit : str
        Length unit (``"px"`` when uncalibrated).
    source : str
        Where it came from (file name, ``array[3]``, ``volume z=10`` ...).
    """

    image: np.ndarray
    plane: str = "inplane"
    pixel_size: float = 1.0
    unit: str = "px"
    source: str = "array"
    sha256: str = field(default="", compare=False)


def _check_plane(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    return plane


def _check_pixel_size(size: object) -> float:
    try:
        val = float(size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"pixel size must be a positive number, got {size!r}") from None
    if not (math.isfinite(val) and val > 0):
        raise ValueError(f"pixel size must be positive and finite, got {size!r}")
    return val


def _as_phase_image(array: object, source: str, mapping) -> np.ndarray:
    """Canonical uint8 phase map from any label array (via :func:`io.to_phases` for raw labels)."""
    from ..io import to_phases

    arr = np.asarray(array)
    if arr.dtype == object:
        raise TypeError(f"{source}: expected a numeric label image, got an object array")
    if arr.size == 0:
        raise ValueError(f"{source}: the image is empty (shape {arr.shape})")
    if arr.ndim != 2:
        raise ValueError(
            f"{source}: calibration sections must be 2D (H, W), got shape {arr.shape}; "
            "use CalibrationData.from_volume to cut sections from a 3D volume"
        )
    try:
        phases, _, _ = to_phases(arr, mapping)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{source}: {exc}") from None
    return phases


def _check_three_phases(image: np.ndarray, source: str) -> None:
    present = np.bincount(image.ravel(), minlength=N_PHASES)[:N_PHASES] > 0
    if not present.all():
        missing = [PHASE_NAMES[i] for i in range(N_PHASES) if not present[i]]
        have = [PHASE_NAMES[i] for i in range(N_PHASES) if present[i]]
        raise ValueError(
            f"{source}: only {len(have)} phase(s) present ({', '.join(have)}); {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Calibrating a three-phase model needs all "
            "three phases in every section: check the label mapping, or crop a larger region"
        )


def _sha256(image: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{image.shape}".encode())
    h.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return h.hexdigest()


class CalibrationData:
    """Segmented 2D sections used to calibrate a model.

    Parameters
    ----------
    sections
        One or more :class:`Section` (all with the same pixel size and unit).

    Raises
    ------
    ValueError
        No sections, a section lacking a phase, non-2D images, unknown planes or pixel sizes that
        differ between sections.
    """

    def __init__(self, sections: Sequence[Section]) -> None:
        sections = list(sections)
        if not sections:
            raise ValueError("calibration data need at least one 2D section")
        checked = []
        for s in sections:
            if not isinstance(s, Section):
                raise TypeError(f"expected Section objects, got {type(s).__name__}")
            img = np.asarray(s.image)
            if img.ndim != 2 or img.dtype != np.uint8:
                raise ValueError(f"{s.source}: a Section image must be a 2D uint8 phase map, got {img.dtype} {img.shape}")
            if img.size == 0:
                raise ValueError(f"{s.source}: the image is empty")
            if int(img.max()) >= N_PHASES:
                raise ValueError(f"{s.source}: phase values must be 0, 1, 2, found {int(img.max())}")
            if min(img.shape) < 8:
                raise ValueError(f"{s.source}: image {img.shape} is too small to calibrate from (need >= 8 px per side)")
            _check_plane(s.plane)
            _check_three_phases(img, s.source)
            checked.append(
                Section(np.ascontiguousarray(img), s.plane, _check_pixel_size(s.pixel_size), s.unit or "px", s.source, _sha256(img))
            )
        ps = [s.pixel_size for s in checked]
        if max(ps) > min(ps) * (1 + 1e-6):
            listing = ", ".join(f"{s.source}: {s.pixel_size:g} {s.unit}" for s in checked)
            raise ValueError(
                f"sections have different pixel sizes ({listing}); resample them to one pixel size first"
            )
        units = {s.unit for s in checked}
        if len(units) > 1:
            raise ValueError(f"sections have different length units {sorted(units)}; give them all in one unit")
        self.sections: list[Section] = checked

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        arrays: np.ndarray | Sequence[np.ndarray],
        planes: str | Sequence[str] = "inplane",
        pixel_size: float = 1.0,
        unit: str = "px",
        mapping=None,
        sources: Sequence[str] | None = None,
    ) -> "CalibrationData":
        """Sections from 2D label arrays (raw labels are mapped with ``mapping`` or automatically).

        ``arrays`` is one 2D array, a list of them, or a 3D stack ``(N, H, W)`` of sections (not a
        volume: use :meth:`from_volume` for that).
        """
        if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
            arrays = [arrays]
        arrays = list(arrays)
        if not arrays:
            raise ValueError("calibration data need at least one 2D section")
        planes = [planes] * len(arrays) if isinstance(planes, str) else list(planes)
        if len(planes) != len(arrays):
            raise ValueError(f"got {len(planes)} plane(s) for {len(arrays)} image(s); give one per image or one for all")
        sources = list(sources) if sources is not None else [f"array[{i}]" for i in range(len(arrays))]
        pixel_size = _check_pixel_size(pixel_size)
        out = []
        for arr, plane, src in zip(arrays, planes, sources):
            out.append(Section(_as_phase_image(arr, src, mapping), _check_plane(plane), pixel_size, unit, src))
        return cls(out)

    @classmethod
    def from_files(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        planes: str | Sequence[str] = "inplane",
        mapping=None,
        voxel_size: float | None = None,
        unit: str | None = None,
    ) -> "CalibrationData":
        """Sections read with :func:`napari_assb_twin.io.read_label_image`.

        ``voxel_size`` overrides the files' calibration (default: the file metadata, else 1 px).
        A 3D file is refused: cut sections from it with :meth:`from_volume`.
        """
        from ..io import read_label_image

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        if not paths:
            raise ValueError("no image files given")
        planes = [planes] * len(paths) if isinstance(planes, str) else list(planes)
        if len(planes) == 1 and len(paths) > 1:
            planes = planes * len(paths)
        if len(planes) != len(paths):
            raise ValueError(f"got {len(planes)} plane(s) for {len(paths)} image(s); give one per image or one for all")
        out = []
        for path, plane in zip(paths, planes):
            p = os.fspath(path)
            if os.path.isfile(p) and os.path.getsize(p) == 0:
                raise ValueError(f"{p}: the file is empty (0 bytes)")
            img = read_label_image(p, mapping)
            if img.data.ndim != 2:
                raise ValueError(
                    f"{p}: a {img.data.ndim}D image {img.data.shape}; calibration uses 2D sections. "
                    "Use CalibrationData.from_volume to cut sections from a volume"
                )
            if voxel_size is not None:
                ps, u = voxel_size, unit or img.unit or "um"
            elif img.voxel_size:
                ps, u = img.voxel_size, unit or img.unit or "um"
            else:
                ps, u = 1.0, unit or "px"
            out.append(Section(img.data, _check_plane(plane), _check_pixel_size(ps), u, os.path.basename(p)))
        return cls(out)

    @classmethod
    def from_volume(
        cls,
        volume: np.ndarray,
        n_sections: int = 8,
        planes: Sequence[str] = ("inplane", "axial"),
        axis: int = 0,
        pixel_size: float = 1.0,
        unit: str = "px",
        mapping=None,
        source: str = "volume",
    ) -> "CalibrationData":
        """Cut ``n_sections`` evenly spaced sections per plane from a 3D label volume.

        ``axial`` sections are cut alternately with both normals perpendicular to ``axis`` (e.g.
        ``volume[:, y, :]`` and ``volume[:, :, x]``), always with the symmetry axis as rows.
        """
        from ..io import to_phases

        vol = np.asarray(volume)
        if vol.ndim != 3:
            raise ValueError(f"{source}: from_volume needs a 3D array, got shape {vol.shape}")
        if vol.size == 0:
            raise ValueError(f"{source}: the volume is empty (shape {vol.shape})")
        try:
            vol, _, _ = to_phases(vol, mapping)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{source}: {exc}") from None
        if n_sections < 1:
            raise ValueError(f"n_sections must be >= 1, got {n_sections}")
        out = []
        for plane in planes:
            _check_plane(plane)
            for k in range(n_sections):
                if plane == "inplane":
                    n = vol.shape[axis]
                    idx = int((k + 0.5) * n / n_sections)
                    img = cut_section(vol, "inplane", idx, axis)
                    where = f"{source} axis{axis}={idx}"
                else:
                    others = [a for a in (0, 1, 2) if a != axis]
                    normal = others[k % 2]
                    n = vol.shape[normal]
                    idx = int((k // 2 + 0.5) * n / max(1, (n_sections + 1 - k % 2) // 2))
                    idx = min(idx, n - 1)
                    sl = [slice(None)] * 3
                    sl[normal] = idx
                    img = vol[tuple(sl)]
                    # remaining axes in increasing order: make the symmetry axis the rows
                    rest = [a for a in (0, 1, 2) if a != normal]
                    if rest[0] != axis:
                        img = img.T
                    where = f"{source} axis{normal}={idx}"
                out.append(Section(np.ascontiguousarray(img), plane, _check_pixel_size(pixel_size), unit, where))
        return cls(out)

    # -- properties --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sections)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{s.plane} {s.image.shape[0]}x{s.image.shape[1]}" for s in self.sections)
        return f"CalibrationData({shapes}; pixel {self.pixel_size:g} {self.unit})"

    @property
    def pixel_size(self) -> float:
        return self.sections[0].pixel_size

    @property
    def unit(self) -> str:
        return self.sections[0].unit

    @property
    def planes(self) -> tuple[str, ...]:
        """Planes present, in the canonical order (``inplane`` first)."""
        have = {s.plane for s in self.sections}
        return tuple(p for p in PLANES if p in have)

    @property
    def min_side(self) -> int:
        return min(min(s.image.shape) for s in self.sections)

    def images(self, plane: str) -> list[np.ndarray]:
        return [s.image for s in self.sections if s.plane == plane]

    @property
    def volume_fractions(self) -> dict[str, float]:
        """Pixel-weighted phase fractions over all sections (area fraction = volume fraction)."""
        counts = np.zeros(N_PHASES, dtype=np.int64)
        for s in self.sections:
            counts += np.bincount(s.image.ravel(), minlength=N_PHASES)[:N_PHASES]
        fr = counts / counts.sum()
        return {PHASE_NAMES[i]: float(fr[i]) for i in range(N_PHASES)}

    @property
    def sha256(self) -> list[str]:
        """sha256 of each section's phase map (shape + bytes), for provenance."""
        return [s.sha256 for s in self.sections]

    @property
    def digest(self) -> str:
        """One sha256 over all sections, planes and the pixel size (identifies the data set)."""
        h = hashlib.sha256()
        for s in self.sections:
            h.update(f"{s.sha256}|{s.plane}|{s.pixel_size!r}|".encode())
        return h.hexdigest()

    # -- validation --------------------------------------------------------------------------------
    def validate(self, r_max: int | None = None, patch: int | None = None) -> None:
        """Check the sections are large enough for ``r_max`` (coverage) and ``patch`` (discriminator).

        Raises
        ------
        ValueError
            Naming the smallest section and the largest allowed value.
        """
        small = min(self.sections, key=lambda s: min(s.image.shape))
        side = min(small.image.shape)
        if r_max is not None:
            if not isinstance(r_max, (int, np.integer)) or isinstance(r_max, bool) or r_max < 1:
                raise ValueError(f"r_max must be a positive integer number of pixels, got {r_max!r}")
            if 2 * r_max + 1 > side:
                raise ValueError(
                    f"{small.source}: section {small.image.shape} is too small for r_max={r_max} px; the "
                    f"minus-sampling estimate needs a side >= 2 r_max + 1; use r_max <= {(side - 1) // 2} "
                    "or larger images"
                )
        if patch is not None:
            if patch > side:
                raise ValueError(
                    f"{small.source}: section {small.image.shape} is smaller than the discriminator patch "
                    f"size {patch} px; use a patch size <= {side} (a multiple of 16) or larger images"
                )

    # -- statistics ----------------------------------------------------------------------------------
    def coverage_targets(self, r_max: int) -> dict[tuple[str, str], tuple[np.ndarray, float]]:
        """Data C_ij per (plane, direction), pooled over sections weighted by their pixel counts.

        Returns
        -------
        dict
            ``(plane, direction) -> (C, weight)`` with ``C`` of shape ``(3, 3, r_max + 1)``
            (non-periodic estimator) and ``weight`` the number of pixels behind it.
        """
        from ..stats.coverage import coverage

        self.validate(r_max=r_max)
        acc: dict[tuple[str, str], list] = {}
        for s in self.sections:
            res = coverage(s.image, r_max, periodic=False, radial=False)
            w = float(s.image.size)
            for d, direction in enumerate(DIRECTIONS[s.plane]):
                key = (s.plane, direction)
                c, tot = acc.get(key, (0.0, 0.0))
                acc[key] = [c + w * res.directional[d], tot + w]
        return {k: (c / tot, tot) for k, (c, tot) in acc.items()}

    def correlation_lengths(self, r_max: int | None = None) -> dict[tuple[str, str], np.ndarray]:
        """1/e length (px) of each phase indicator's autocorrelation per (plane, direction).

        Used for the automatic ``r_max`` and the initial length scales.
        """
        r_max = r_max or max(2, min(64, (self.min_side - 1) // 2))
        out = {}
        for key, (c, _) in self.coverage_targets(r_max).items():
            lengths = np.zeros(N_PHASES)
            for p in range(N_PHASES):
                v = c[p, p, 0]
                rho = (c[p, p] - v * v) / max(v - v * v, 1e-12)
                below = np.nonzero(rho < math.exp(-1))[0]
                if below.size == 0:
                    lengths[p] = float(r_max)
                else:
                    i = int(below[0])
                    r0, p0, p1 = i - 1, rho[i - 1], rho[i]
                    lengths[p] = r0 + (p0 - math.exp(-1)) / max(p0 - p1, 1e-12)
            out[key] = lengths
        return out

    def auto_r_max(self) -> int:
        """A distance range covering the correlated part of the data: about 5 x the largest 1/e
        length, clipped to [16, 64] px and to what the smallest section supports."""
        longest = max(float(v.max()) for v in self.correlation_lengths().values())
        r = int(math.ceil(5.0 * longest))
        r = min(max(r, 16), 64)
        return max(1, min(r, (self.min_side - 1) // 2))
