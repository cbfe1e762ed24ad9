"""Calibration data: segmented 2D sections with their plane orientation and pixel size, and 3D volumes.

A :class:`CalibrationData` is a list of canonical ``uint8`` phase images (0 pore, 1 active,
2 electrolyte), each tagged ``"inplane"`` (perpendicular to the model's symmetry axis) or ``"axial"``
(containing it as its rows, see :func:`~napari_assb_twin.fields.sections.plane_axes`), and optionally
3D volumes of the same material and voxel size. A volume enters the coverage targets with its
directional 3D C_ij (axis 0 = the symmetry axis -> ``("axial", "axial")``, axes 1 and 2 ->
``("inplane", "inplane")``; the same estimator as pooling every section, at once), the 2D statistics
(Minkowski, held-out chords ...) through :data:`VOLUME_SECTIONS` sections per plane cut from it, and
model selection through its 3D connectivity and transport (:mod:`~napari_assb_twin.calibrate.volume_score`).

Volume fractions are estimated pixel-weighted over all images and fix the model thresholds. The
two-point coverage functions of the data use the non-periodic (minus-sampling) estimator and are
pooled per (plane, direction): an in-plane image informs the in-plane direction along both axes, an
axial image the axial direction (rows) and the in-plane direction (columns).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..options import PLANES
from ..phasemap import R_MAX_CAP, PhaseMap, default_r_max, largest_r_max, one_over_e_lengths, same_size
from ..phases import N_PHASES, PHASE_NAMES

__all__ = ["DIRECTIONS", "MIN_SECTION_SIDE", "MIN_VOLUME_SIDE", "SYMMETRY_MARGIN", "VOLUME_SECTIONS", "CalibrationData",
           "symmetry_axis"]

#: Directions of the 2D statistics that a plane informs, per image axis (rows, columns).
DIRECTIONS: dict[str, tuple[str, str]] = {"inplane": ("inplane", "inplane"), "axial": ("axial", "inplane")}

#: Smallest side of a calibration section (px).
MIN_SECTION_SIDE: int = 8
#: Smallest side of a calibration volume (voxels): selection's 3D transport needs crops of this size.
MIN_VOLUME_SIDE: int = 32
#: Sections per plane cut from each volume for the 2D statistics (topology, chords, Minkowski terms).
VOLUME_SECTIONS: int = 8
#: A volume's symmetry axis is the one whose two other axes' correlation functions agree best, when
#: they agree at least 1 / SYMMETRY_MARGIN times better than axes 1 and 2 do (else axis 0, a stack's
#: z). Both shared volumes have it along axis 2 (:func:`symmetry_axis`: mismatch 0.006 against 0.022
#: and 0.056 for axes 1 and 2; their tau is highest along axis 2 for every phase): a model cylindrical
#: about axis 0 pooled the distinct axis with another and missed its tau by 26-40 % (inpainter half).
SYMMETRY_MARGIN: float = 0.5
#: Largest lag (voxels) of the correlation functions compared by :func:`symmetry_axis`.
SYMMETRY_R: int = 16


def symmetry_axis(volumes: Sequence[np.ndarray]) -> tuple[int, np.ndarray]:
    """The symmetry axis of a cylindrical model of ``volumes`` (canonical phase maps), and per axis
    ``a`` the mismatch of the other two axes' normalised autocorrelations (mean over phases and lags
    1..:data:`SYMMETRY_R` of |rho_b(r) - rho_c(r)|, rho = (C_ii - phi^2) / (phi - phi^2), volumes
    weighted by size). The axis with the smallest mismatch when it is at most :data:`SYMMETRY_MARGIN`
    times axis 0's, else 0."""
    from ..stats.coverage import coverage

    mismatch, total = np.zeros(3), 0.0
    for v in volumes:
        v = np.asarray(v)
        r = int(max(1, min(SYMMETRY_R, min(v.shape) // 4)))
        d = np.asarray(coverage(v, r, periodic=False, radial=False, n_phases=N_PHASES).directional)
        rho = []
        for p in range(N_PHASES):
            phi = float((v == p).mean())
            rho.append((d[:, p, p, 1:] - phi ** 2) / max(phi - phi ** 2, 1e-12))
        rho = np.stack(rho, 1)  # (axis, phase, lag)
        for a in range(3):
            b, c = (x for x in range(3) if x != a)
            mismatch[a] += v.size * float(np.abs(rho[b] - rho[c]).mean())
        total += v.size
    mismatch /= max(total, 1.0)
    best = int(np.argmin(mismatch))
    return (best if best != 0 and mismatch[best] <= SYMMETRY_MARGIN * mismatch[0] else 0), mismatch


def _check_plane(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    return plane


def _pixel_size(size: object) -> float:
    """A positive finite pixel size, or a clear error."""
    try:
        val = float(size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"pixel size must be a positive number, got {size!r}") from None
    if not (np.isfinite(val) and val > 0):
        raise ValueError(f"pixel size must be positive and finite, got {size!r}")
    return val


def _check_three_phases(section: PhaseMap) -> None:
    present = set(section.phases_present())
    if len(present) < N_PHASES:
        missing = [PHASE_NAMES[i] for i in range(N_PHASES) if i not in present]
        have = [PHASE_NAMES[i] for i in range(N_PHASES) if i in present]
        raise ValueError(
            f"{section.source}: only {len(have)} phase(s) present ({', '.join(have)}); {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Calibrating a three-phase model needs all "
            "three phases in every section: check the label mapping, or crop a larger region"
        )


def _checked_section(s: PhaseMap) -> PhaseMap:
    if not isinstance(s, PhaseMap):
        raise TypeError(f"expected PhaseMap sections, got {type(s).__name__}")
    if s.ndim != 2:
        raise ValueError(
            f"{s.source}: calibration sections must be 2D (H, W), got shape {s.shape}; "
            "use CalibrationData.from_volume to cut sections from a 3D volume"
        )
    if min(s.shape) < MIN_SECTION_SIDE:
        raise ValueError(
            f"{s.source}: image {s.shape} is too small to calibrate from (need >= {MIN_SECTION_SIDE} px per side)"
        )
    _check_three_phases(s)
    # calibration works in square pixels of one size (the last axis's; anisotropy is noted by the
    # caller through PhaseMap.anisotropy_note); uncalibrated sections are 1 px
    return replace(s, plane=_check_plane(s.plane or "inplane"), spacing=(s.pixel_size,) * 2)


def _checked_volume(v: PhaseMap) -> PhaseMap:
    if not isinstance(v, PhaseMap):
        raise TypeError(f"expected PhaseMap volumes, got {type(v).__name__}")
    if v.ndim != 3:
        raise ValueError(f"{v.source}: a calibration volume must be 3D (Z, Y, X), got shape {v.shape}")
    if min(v.shape) < MIN_VOLUME_SIDE:
        raise ValueError(
            f"{v.source}: volume {v.shape} is too thin to calibrate from as a volume (need >= {MIN_VOLUME_SIDE} "
            "voxels along every axis); give its slices as 2D sections instead"
        )
    if not v.is_isotropic:
        raise ValueError(
            f"{v.source}: voxel size {v.spacing} is not isotropic; a volume calibrates an (isotropic or "
            "cylindrical) model on a cubic grid: resample it to cubic voxels first"
        )
    _check_three_phases(v)
    return replace(v, spacing=(v.pixel_size,) * 3)


class CalibrationData:
    """Segmented 2D sections and 3D volumes used to calibrate a model.

    Parameters
    ----------
    sections
        2D :class:`~napari_assb_twin.phasemap.PhaseMap` with their ``plane`` (default in-plane).
    volumes
        3D :class:`~napari_assb_twin.phasemap.PhaseMap` (cubic voxels),
        e.g. a FIB-SEM or CT stack or a crop of one. Sections and volumes together: at least one,
        all with the same pixel size and unit.
    coarse
        A coarser volume of the same material (:class:`~napari_assb_twin.calibrate.coarse.CoarseVolume`).
    axis
        The volumes' symmetry axis (their axial statistics and cut sections follow it; the model's
        axis). None: :func:`symmetry_axis` for volumes alone, else 0.

    Raises
    ------
    ValueError
        No sections, a section lacking a phase, non-2D images, unknown planes or pixel sizes that
        differ between sections.

    Notes
    -----
    The data's statistics (:meth:`coverage_targets`, :meth:`auto_r_max`, :meth:`minkowski_targets`) are
    computed once (per ``r_max``) and cached on the instance: every :class:`~napari_assb_twin.calibrate.Calibrator` built
    on the same object (model selection builds one per candidate) reuses them. The sections are
    immutable; build a new ``CalibrationData`` for other data.
    """

    def __init__(self, sections: Sequence[PhaseMap] = (), volumes: Sequence[PhaseMap] = (), coarse=None,
                 axis: int | None = None) -> None:
        sections, volumes = list(sections), list(volumes)
        if not sections and not volumes:
            raise ValueError("calibration data need at least one 2D section or 3D volume"
                             + (" at the fine resolution beside the coarse volume" if coarse is not None else ""))
        given = [_checked_section(s) for s in sections]
        vols = [_checked_volume(v) for v in volumes]
        every = given + vols
        first = every[0]
        if not all(same_size(s.pixel_size, first.pixel_size) for s in every):
            listing = ", ".join(f"{s.source}: {s.pixel_size:g} {s.unit_label}" for s in every)
            raise ValueError(
                f"sections / volumes have different pixel sizes ({listing}); resample them to one pixel size "
                "first (a coarser volume of the same material is a different input: see the coarse volume option)"
            )
        units = {s.unit_label for s in every}
        if len(units) > 1:
            raise ValueError(f"sections / volumes have different length units {sorted(units)}; give them all in one unit")
        #: The 2D sections given (their C_ij enter the coverage targets).
        self.given_sections: tuple[PhaseMap, ...] = tuple(given)
        #: The 3D volumes given (directional 3D C_ij in the targets, 3D scores in model selection).
        self.volumes: tuple[PhaseMap, ...] = tuple(vols)
        if axis is None:  # given sections' planes are relative to a stack's z, a coarse volume's axes too
            axis = symmetry_axis([v.data for v in vols])[0] if vols and not given and coarse is None else 0
        if isinstance(axis, bool) or axis not in (0, 1, 2):
            raise ValueError(f"the symmetry axis must be 0, 1 or 2 (or None: from the volumes), got {axis!r}")
        #: The symmetry axis of the volumes' array axes (:func:`symmetry_axis`; 0 for sections): the
        #: model's axis, along which the volumes' "axial" statistics are taken and their sections cut.
        self.axis: int = int(axis)
        cut = [c for v in vols for c in v.sections(VOLUME_SECTIONS, PLANES, self.axis)]
        #: Every 2D section: the given ones, then those cut from the volumes (the 2D statistics use all).
        self.sections: tuple[PhaseMap, ...] = tuple(given) + tuple(_checked_section(c) for c in cut)
        #: A coarser volume of the same material (:class:`~napari_assb_twin.calibrate.coarse.CoarseVolume`), or None.
        self.coarse = coarse
        if coarse is not None:
            coarse.check_fine(self.min_side)
        self._targets: dict[int, dict[tuple[str, str], tuple[np.ndarray, float]]] = {}
        self._auto_r_max: int | None = None
        self._minkowski: dict | None = None
        self._coarse_targets: tuple[int, np.ndarray] | None = None
        self._representativeness: dict[int, object] = {}

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
        planes = _planes_for(planes, len(arrays))
        sources = list(sources) if sources is not None else [f"array[{i}]" for i in range(len(arrays))]
        size = _pixel_size(pixel_size)
        out = []
        for arr, plane, src in zip(arrays, planes, sources):
            if np.ndim(arr) != 2:
                raise ValueError(
                    f"{src}: calibration sections must be 2D (H, W), got shape {np.shape(arr)}; "
                    "use CalibrationData.from_volume to cut sections from a 3D volume"
                )
            out.append(PhaseMap.from_labels(arr, mapping, voxel_size=size, unit=unit, source=src, plane=_check_plane(plane)))
        return cls(out)

    @classmethod
    def from_files(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        planes: str | Sequence[str] = "inplane",
        mapping=None,
        voxel_size: float | None = None,
        unit: str | None = None,
        axis: int | None = None,
    ) -> "CalibrationData":
        """Sections and volumes read with :func:`napari_assb_twin.io.read_label_image` (``axis``: the
        volumes' symmetry axis, None for the rule of :func:`symmetry_axis`).

        ``voxel_size`` / ``unit`` override the files' calibration (the rule of
        :meth:`PhaseMap.with_geometry`; uncalibrated files are in pixels). A 2D file is a section
        with its plane; a 3D file (a stack, or a crop of one) is a volume whose axis 0 is the
        symmetry axis (its plane entry is not used).
        """
        from ..io import read_label_image

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        if not paths:
            raise ValueError("no image files given")
        planes = _planes_for(planes, len(paths))
        out, vols = [], []
        for path, plane in zip(paths, planes):
            p = os.fspath(path)
            if os.path.isfile(p) and os.path.getsize(p) == 0:
                raise ValueError(f"{p}: the file is empty (0 bytes)")
            img = read_label_image(p, mapping).with_geometry(voxel_size, unit)
            if img.ndim == 3:
                vols.append(replace(img, source=os.path.basename(p)))
            else:
                out.append(replace(img, plane=_check_plane(plane), source=os.path.basename(p)))
        return cls(out, vols, axis=axis)

    @classmethod
    def from_volume(
        cls,
        volume: np.ndarray | PhaseMap,
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
        ``volume[:, y, :]`` and ``volume[:, :, x]``), always with the symmetry axis as rows (see
        :meth:`PhaseMap.sections`). A :class:`PhaseMap` brings its own geometry.
        """
        if isinstance(volume, PhaseMap):
            vol = volume
        else:
            if np.ndim(volume) != 3:
                raise ValueError(f"{source}: from_volume needs a 3D array, got shape {np.shape(volume)}")
            vol = PhaseMap.from_labels(volume, mapping, voxel_size=_pixel_size(pixel_size), unit=unit, source=source)
        if n_sections < 1:
            raise ValueError(f"n_sections must be >= 1, got {n_sections}")
        for plane in planes:
            _check_plane(plane)
        return cls(vol.sections(n_sections, planes, axis))

    # -- properties --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sections)

    def __repr__(self) -> str:
        shapes = [f"{s.plane} {s.shape[0]}x{s.shape[1]}" for s in self.given_sections]
        shapes += ["volume " + "x".join(map(str, v.shape)) for v in self.volumes]
        return f"CalibrationData({', '.join(shapes)}; pixel {self.pixel_size:g} {self.unit})"

    @property
    def pixel_size(self) -> float:
        return self.sections[0].pixel_size

    @property
    def unit(self) -> str:
        return self.sections[0].unit_label

    @property
    def notes(self) -> list[str]:
        """What the front end should tell the user (anisotropic pixels, a coarse volume whose
        fractions differ from the fine data's ...)."""
        notes = [n for n in (s.anisotropy_note() for s in self.sections) if n]
        if self.coarse is not None:
            from .coarse import fraction_note

            notes.append(fraction_note(self.coarse, self.volume_fractions))
        return [n for n in notes if n]

    def describe(self) -> str:
        """The inputs in words, e.g. ``1 volume 128x128x128 (+16 sections cut from it), 2 sections``."""
        parts = []
        if self.volumes:
            shapes = ", ".join("x".join(map(str, v.shape)) for v in self.volumes)
            n_cut = len(self.sections) - len(self.given_sections)
            parts.append(f"{len(self.volumes)} volume(s) {shapes} (+{n_cut} sections cut from them for the 2D statistics; "
                         f"symmetry axis {self.axis})")
        if self.given_sections:
            planes = sorted({s.plane for s in self.given_sections})
            parts.append(f"{len(self.given_sections)} section(s) ({', '.join(planes)})")
        if self.coarse is not None:
            from .coarse import resolution_note

            parts.append(resolution_note(self.coarse))
        return ", ".join(parts)

    @property
    def planes(self) -> tuple[str, ...]:
        """Planes present, in the canonical order (``inplane`` first)."""
        have = {s.plane for s in self.sections}
        return tuple(p for p in PLANES if p in have)

    @property
    def min_side(self) -> int:
        return min(min(s.shape) for s in self.sections)

    def images(self, plane: str) -> list[np.ndarray]:
        return [s.data for s in self.sections if s.plane == plane]

    @property
    def volume_fractions(self) -> dict[str, float]:
        """Pixel-weighted phase fractions over the given sections and volumes (area fraction = volume
        fraction; a volume counts with all its voxels)."""
        counts = np.zeros(N_PHASES, dtype=np.int64)
        for s in self.given_sections + self.volumes:
            counts += np.bincount(s.data.ravel(), minlength=N_PHASES)[:N_PHASES]
        fr = counts / counts.sum()
        return {PHASE_NAMES[i]: float(fr[i]) for i in range(N_PHASES)}

    @property
    def sha256(self) -> list[str]:
        """sha256 of each section's phase map (shape + bytes), for provenance."""
        return [s.sha256 for s in self.sections]

    @property
    def digest(self) -> str:
        """One sha256 over all sections, planes, volumes and the pixel size (identifies the data set)."""
        h = hashlib.sha256()
        for s in self.given_sections:
            h.update(f"{s.sha256}|{s.plane}|{s.pixel_size!r}|".encode())
        for v in self.volumes:
            h.update(f"{v.sha256}|volume|{v.pixel_size!r}|{self.axis}|".encode())
        if self.coarse is not None:
            c = self.coarse
            h.update(hashlib.sha256(c.labels.tobytes()).hexdigest().encode())
            h.update(f"|{c.labels.shape}|{c.groups}|{c.ratio}|{c.operator}|".encode())
        return h.hexdigest()

    # -- validation --------------------------------------------------------------------------------
    def validate(self, r_max: int | None = None, patch: int | None = None) -> None:
        """Check the sections are large enough for ``r_max`` (coverage) and ``patch`` (discriminator).

        Raises
        ------
        ValueError
            Naming the smallest section and the largest allowed value.
        """
        small = min(self.sections, key=lambda s: min(s.shape))
        side = min(small.shape)
        if r_max is not None:
            if not isinstance(r_max, (int, np.integer)) or isinstance(r_max, bool) or r_max < 1:
                raise ValueError(f"r_max must be a positive integer number of pixels, got {r_max!r}")
            if 2 * r_max + 1 > side:
                raise ValueError(
                    f"{small.source}: section {small.shape} is too small for r_max={r_max} px; the "
                    f"minus-sampling estimate needs a side >= 2 r_max + 1; use r_max <= {largest_r_max(small.shape)} "
                    "or larger images"
                )
        if patch is not None:
            if patch > side:
                raise ValueError(
                    f"{small.source}: section {small.shape} is smaller than the discriminator patch "
                    f"size {patch} px; use a patch size <= {side} (a multiple of 16) or larger images"
                )

    # -- statistics ----------------------------------------------------------------------------------
    def coverage_targets(self, r_max: int) -> dict[tuple[str, str], tuple[np.ndarray, float]]:
        """Data C_ij per (plane, direction), pooled over sections weighted by their pixel counts.

        Computed once per ``r_max`` and cached; each call returns fresh copies (cheap: 3 x 3 x
        (r_max + 1) values per key), so callers may change them.

        Returns
        -------
        dict
            ``(plane, direction) -> (C, weight)`` with ``C`` of shape ``(3, 3, r_max + 1)``
            (non-periodic estimator) and ``weight`` the number of pixels behind it.
        """
        self.validate(r_max=r_max)
        r_max = int(r_max)
        if r_max not in self._targets:
            self._targets[r_max] = self._pooled_coverage(r_max)
        return {k: (c.copy(), w) for k, (c, w) in self._targets[r_max].items()}

    def coarse_targets(self) -> tuple[int, np.ndarray] | None:
        """``(r_max, C_gh)`` of the coarse volume (:meth:`CoarseVolume.coverage_targets` at its own
        ``r_max``), computed once and cached like :meth:`coverage_targets`; None without one."""
        if self.coarse is None:
            return None
        if self._coarse_targets is None:
            r = self.coarse.r_max()
            self._coarse_targets = (r, self.coarse.coverage_targets(r))
        return self._coarse_targets

    def minkowski_targets(self) -> dict:
        """:func:`~napari_assb_twin.stats.minkowski.data_minkowski` of these data (per plane: densities and
        their standard errors), computed once and cached like :meth:`coverage_targets`."""
        if self._minkowski is None:
            from ..stats.minkowski import data_minkowski

            self._minkowski = data_minkowski(self)
        return self._minkowski

    def representativeness(self, r_max: int | None = None, check=None):
        """How well these data determine their phase fractions and C_ij
        (:class:`~napari_assb_twin.stats.representativeness.InputRepresentativeness`), computed once per ``r_max``.

        Groups: the given 2D sections jointly (independent windows: their total area counts), each 3D
        volume, and the coarse volume (its groups' fractions). The C_ij sampling SD per pair uses the
        split halves of :func:`~napari_assb_twin.calibrate.noise.split_halves` (the calibration's
        split-half noise) up to ``r_max`` (default :meth:`auto_r_max`). The sections cut from a
        volume are not a group of their own: the volume itself is measured. ``check`` is called
        between the expensive steps and may raise to abandon the estimate (nothing is cached then).

        Raises
        ------
        ValueError
            A section or volume too small to estimate it (below
            :data:`~napari_assb_twin.stats.representativeness.MIN_SIDE` px per side).
        """
        from ..stats.representativeness import InputRepresentativeness, window_stats
        from .noise import split_halves

        r = int(r_max) if r_max is not None else self.auto_r_max()
        if r in self._representativeness:
            return self._representativeness[r]

        def halves(maps: Sequence[PhaseMap]):
            split = split_halves(list(maps), r)
            return None if split is None else ([m.data for m in split[0]], [m.data for m in split[1]])

        groups = []
        size, unit = self.pixel_size, self.unit
        if self.given_sections:
            shapes = sorted({"x".join(map(str, s.shape)) for s in self.given_sections})
            planes = sorted({s.plane for s in self.given_sections})
            n = len(self.given_sections)
            label = f"{n} section{'s' if n > 1 else ''} {', '.join(shapes)} ({', '.join(planes)})"
            groups.append(window_stats([s.data for s in self.given_sections], label, pixel_size=size, unit=unit,
                                       halves=halves(self.given_sections), r_max=r, check=check))
        for v in self.volumes:
            label = f"volume {'x'.join(map(str, v.shape))} ({v.source})"
            groups.append(window_stats([v.data], label, pixel_size=size, unit=unit, halves=halves([v]), r_max=r,
                                       check=check))
        pooled = list(range(len(groups)))
        if self.coarse is not None:
            c = self.coarse
            try:
                groups.append(window_stats([c.labels], f"coarse volume {'x'.join(map(str, c.labels.shape))} ({c.source})",
                                           pixel_size=c.voxel_size, unit=c.unit, n_phases=c.n_groups,
                                           phase_names=c.group_names(), check=check))
            except ValueError:  # too small for an estimate of its own; the fine data's still stand
                pass
        rep = InputRepresentativeness(groups, pooled=pooled)
        self._representativeness[r] = rep
        return rep

    def _pooled_coverage(self, r_max: int) -> dict[tuple[str, str], tuple[np.ndarray, float]]:
        from ..stats.coverage import coverage

        acc: dict[tuple[str, str], list] = {}

        def add(key: tuple[str, str], c_r: np.ndarray, w: float) -> None:
            c, tot = acc.get(key, (0.0, 0.0))
            acc[key] = [c + w * c_r, tot + w]

        for s in self.given_sections:
            res = coverage(s.data, r_max, periodic=False, radial=False)
            for d, direction in enumerate(DIRECTIONS[s.plane]):
                add((s.plane, direction), res.directional[d], float(s.data.size))
        for v in self.volumes:  # self.axis is the symmetry axis; the other two lie in the plane
            res = coverage(v.data, r_max, periodic=False, radial=False)
            w = float(v.data.size)
            others = [a for a in range(3) if a != self.axis]
            add(("axial", "axial"), res.directional[self.axis], w)
            add(("inplane", "inplane"), 0.5 * (res.directional[others[0]] + res.directional[others[1]]), 2 * w)
        return {k: (np.asarray(c / tot), tot) for k, (c, tot) in acc.items()}

    def correlation_lengths(self, r_max: int | None = None) -> dict[tuple[str, str], np.ndarray]:
        """1/e length (px) of each phase indicator's autocorrelation per (plane, direction).

        Used for the automatic ``r_max`` and the initial length scales.
        """
        r_max = r_max or max(2, min(R_MAX_CAP, largest_r_max((self.min_side,))))
        return {key: one_over_e_lengths(c, r_max) for key, (c, _) in self.coverage_targets(r_max).items()}

    def auto_r_max(self) -> int:
        """The package's default ``r_max`` (:func:`~napari_assb_twin.phasemap.default_r_max`) for
        the longest pooled 1/e length of these sections; computed once."""
        if self._auto_r_max is None:
            longest = max(float(v.max()) for v in self.correlation_lengths().values())
            self._auto_r_max = default_r_max((self.min_side,), longest)
        return self._auto_r_max


def _planes_for(planes: str | Sequence[str], n: int) -> list[str]:
    """One plane per image from one for all or one each."""
    planes = [planes] * n if isinstance(planes, str) else list(planes)
    if len(planes) == 1 and n > 1:
        planes = planes * n
    if len(planes) != n:
        raise ValueError(f"got {len(planes)} plane(s) for {n} image(s); give one per image or one for all")
    return [_check_plane(p) for p in planes]
