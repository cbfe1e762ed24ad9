"""Use case: compare a measured phase map with a twin on every descriptor, and write the report.

The job settles the geometry once (the voxel size and unit both images are measured in, with a
note when their own calibrations differ), the default ``r_max`` (the package's one rule,
:meth:`~napari_assb_twin.phasemap.PhaseMap.default_r_max` of the measured image) and the output
folder (refused before minutes of computation), then runs the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..phasemap import PhaseMap, largest_r_max, resolve_geometry, same_size
from .events import JobProgress

__all__ = ["CompareResult", "compare", "compare_geometry"]


@dataclass
class CompareResult:
    """The :class:`~napari_assb_twin.validate.Comparison` and the report files written (if any)."""

    comparison: Any
    files: dict[str, Path] = field(default_factory=dict)


def _geometry_of(image: Any) -> tuple[float | None, str | None]:
    if isinstance(image, PhaseMap):
        return image.voxel_size, image.unit
    return getattr(image, "voxel_size", None), getattr(image, "unit", None)


def compare_geometry(
    real: Any, twin: Any, voxel_size: float | None = None, unit: str | None = None
) -> tuple[float, str, list[str]]:
    """``(voxel_size, unit, notes)`` both images are compared in.

    An explicit ``voxel_size`` wins; else the measured image's calibration, else the twin's, else
    1 px; the unit follows :func:`~napari_assb_twin.phasemap.resolve_geometry`. The notes say when the two images' own calibrations differ (with units).
    """
    (rv, ru), (tv, tu) = _geometry_of(real), _geometry_of(twin)
    size, source_unit = (rv, ru) if rv else (tv, tu)
    voxel = float(voxel_size or size or 1.0)
    unit = resolve_geometry(bool(size), source_unit, voxel_size, unit) or "px"
    notes = []
    if rv and tv and (not same_size(rv, tv) or (ru or "px") != (tu or "px")):
        notes.append(f"voxel sizes differ (measured {rv:g} {ru or 'px'}, twin {tv:g} {tu or 'px'}); "
                     f"both compared with {voxel:g} {unit}")
    if isinstance(real, PhaseMap) and real.anisotropy_note():
        notes.append(real.anisotropy_note())
    return voxel, unit, notes


def _array(image: Any) -> Any:
    if isinstance(image, PhaseMap):
        return image.data
    return getattr(image, "array", image)


def _phases_present(image: Any) -> list[str] | None:
    """Names of the phases an in-memory image holds (None for a lazy Zarr twin: not read here)."""
    from ..phases import N_PHASES, PHASE_NAMES

    if isinstance(image, PhaseMap):
        data = image.data
    elif isinstance(image, np.ndarray):
        data = image
    else:
        return None
    counts = np.bincount(np.asarray(data, dtype=np.uint8).ravel(), minlength=N_PHASES)[:N_PHASES]
    return [n for n, c in zip(PHASE_NAMES, counts) if c]


def phase_warnings(real: Any, twin: Any, names: Sequence[str]) -> list[str]:
    """Warnings for an image holding one phase only, or a twin lacking a phase the measurement has
    (usually a label mapping that merged phases): its comparison is meaningless and was silent."""
    out = []
    have = {"REAL": _phases_present(real), "TWIN": _phases_present(twin)}
    flags = {"REAL": "--labels", "TWIN": "--twin-labels"}
    for (label, present), name in zip(have.items(), names):
        if present is not None and len(present) < 2:
            out.append(f"{label} {name} holds one phase only ({present[0] if present else 'none'}): its descriptors "
                       f"say nothing about a three-phase electrode; check its label mapping ({flags[label]})")
    if have["REAL"] and have["TWIN"] and len(have["TWIN"]) >= 2:
        missing = [p for p in have["REAL"] if p not in have["TWIN"]]
        if missing:
            out.append(f"TWIN {names[1]} has no {', '.join(missing)} although REAL {names[0]} has: check the twin's "
                       "label mapping (--twin-labels)")
    return out


def _name(image: Any, default: str) -> str:
    src = getattr(image, "source", None)
    return Path(src).name if src else default


def compare(
    real: Any,
    twin: Any,
    out: str | os.PathLike | None = None,
    *,
    voxel_size: float | None = None,
    unit: str | None = None,
    axes: int | Sequence[int] | None = None,
    transport: bool = True,
    geometry: bool = True,
    device: str = "cpu",
    r_max: int | None = None,
    transport_iter_limit: int | None = None,
    force: bool = False,
    names: tuple[str, str] | None = None,
    solver: str = "auto",
) -> Generator[JobProgress, None, CompareResult]:
    """Compare ``real`` with ``twin`` and (when ``out`` is given) write the report folder.

    ``real`` is a :class:`PhaseMap` (or a phase array); ``twin`` a :class:`PhaseMap`, a lazy
    :class:`~napari_assb_twin.io.zarrtwin.ZarrPhases` or an array. Events: ``"note"`` for each
    thing the user should know before the numbers (differing voxel sizes ...), then the
    comparison's own steps, then ``"report"``. ``solver`` (one of
    :data:`~napari_assb_twin.options.TRANSPORT_SOLVERS`) and ``device`` choose the transport solver as in
    :func:`~napari_assb_twin.stats.transport.tortuosity_factor`; both are checked before any work.
    """
    from ..validate.compare import iter_compare
    from ..validate.report import check_report_folder, write_report

    if out is not None:
        from .inputs import check_writable_folder

        check_report_folder(out, force)
        check_writable_folder(Path(out), what=f"--out {out}", create=False)
    if transport:
        from ..options import TRANSPORT_SOLVERS
        from ..stats.transport import check_solver

        if solver not in TRANSPORT_SOLVERS:
            raise ValueError(f"unknown transport solver {solver!r}: use one of {', '.join(TRANSPORT_SOLVERS)}")
        check_solver(solver, device)  # fail fast on an absent GPU or a missing TauFactor
    voxel, unit, notes = compare_geometry(real, twin, voxel_size, unit)
    for note in notes:
        yield JobProgress("note", message=note)
    names = names or (_name(real, "real"), _name(twin, "twin"))
    for warning in phase_warnings(real, twin, names):
        yield JobProgress("warning", message=warning)
    if r_max is None:
        real_map = real if isinstance(real, PhaseMap) else PhaseMap(np.asarray(real), source=names[0])
        twin_shape = tuple(int(n) for n in getattr(_array(twin), "shape", real_map.shape))
        shape = real_map.shape if len(twin_shape) != real_map.ndim else tuple(map(min, real_map.shape, twin_shape))
        r_max = min(real_map.default_r_max(), largest_r_max(shape))
        yield JobProgress("note", message=f"r_max {r_max} px (5 correlation lengths of {names[0]}, at most 64)")
    kwargs = dict(voxel_size=voxel, unit=unit, axes=axes, transport=transport, device=device, geometry=geometry,
                  r_max=r_max, names=names, transport_iter_limit=transport_iter_limit, solver=solver)
    cmp = yield from iter_compare(_array(real), _array(twin), **kwargs)
    for k, image in (("measured", real), ("twin", twin)):
        message = getattr(image, "message", "")
        if message:
            notes.append(f"{k}: {message}")
    cmp.notes[:0] = notes
    result = CompareResult(cmp)
    if out is not None:
        result.files = write_report(cmp, out, force=force)
        yield JobProgress("report", message=f"wrote {len(result.files)} files to {out}")
    return result
