"""Use case: compare a measured phase map with a twin on every descriptor, and write the report.

The job settles the geometry once (the voxel size and unit both images are measured in, with a
note when their own calibrations differ), the default ``r_max`` (the package's one rule,
:meth:`~napari_assb_twin.phasemap.PhaseMap.default_r_max` of the measured image) and the output
folder (refused before minutes of computation), then runs the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from types import SimpleNamespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..options import REALISATION_SIDE
from ..options import VALIDATION_REALISATIONS as DEFAULT_REALISATIONS
from ..phasemap import PhaseMap, largest_r_max, resolve_geometry, same_size
from .events import JobProgress

__all__ = ["CompareResult", "DEFAULT_REALISATIONS", "REALISATION_SIDE", "compare", "compare_geometry",
           "realisation_shape"]



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


def realisation_shape(reference: Sequence[int], side: int = REALISATION_SIDE) -> tuple[int, ...]:
    """The shape of the realisations measured for a twin or measured image of shape ``reference``:
    each side capped at ``side``; a 2D reference (a measured section) gets 3D realisations ``side``
    deep, whose sections are compared with it."""
    ref = tuple(int(n) for n in reference)
    if len(ref) not in (2, 3) or min(ref) < 2 or int(side) < 2:
        raise ValueError(f"a realisation needs a 2D or 3D reference shape and a side >= 2, got {ref}, {side}")
    capped = tuple(min(n, int(side)) for n in ref)
    return capped if len(ref) == 3 else (int(side), *capped)


def iter_realisations(model: Any, count: int, shape: Sequence[int], seed: int, first: Any = None
                      ) -> Generator[JobProgress, None, list[np.ndarray]]:
    """``count`` realisations of ``model`` of ``shape`` (seeds ``seed, seed + 1, ...``; ``first``, an
    array of that shape, stands for the first one: the twin being validated), one event each."""
    from .inputs import check_seed

    check_seed(seed)
    shape = tuple(int(n) for n in shape)
    out = []
    if first is not None:
        out.append(np.ascontiguousarray(np.asarray(first, dtype=np.uint8)))
    for k in range(len(out), int(count)):
        yield JobProgress("generate", k, int(count), f"realisation {k + 1}/{count} of {' x '.join(map(str, shape))} "
                                                    f"(seed {seed + k})")
        out.append(np.asarray(model.generate(shape, seed=int(seed) + k, device="cpu"), dtype=np.uint8))
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
    model: Any = None,
    realisations: int = 1,
    realisation_side: int = REALISATION_SIDE,
    seed: int = 0,
    sampling: bool = True,
) -> Generator[JobProgress, None, CompareResult]:
    """Compare ``real`` with ``twin`` and (when ``out`` is given) write the report folder.

    ``real`` is a :class:`PhaseMap` (or a phase array); ``twin`` a :class:`PhaseMap`, a lazy
    :class:`~napari_assb_twin.io.zarrtwin.ZarrPhases` or an array. Events: ``"note"`` for each
    thing the user should know before the numbers (differing voxel sizes ...), then the
    comparison's own steps, then ``"report"``. ``solver`` (one of
    :data:`~napari_assb_twin.options.TRANSPORT_SOLVERS`) and ``device`` choose the transport solver as in
    :func:`~napari_assb_twin.stats.transport.tortuosity_factor`; both are checked before any work.

    ``model`` (the twin's :class:`~napari_assb_twin.model.ThreePhaseModel`) with ``realisations`` N:
    N realisations of :func:`realisation_shape` (the twin's shape, else the measured one, capped at
    ``realisation_side``; seeds ``seed``, ``seed + 1`` ...) are measured and every twin value is their
    mean with its interval; ``twin`` (may be None) stands for the first when it has that shape. Without
    a model ``twin`` is the one twin (``realisations`` must be 1). ``sampling``: the measured image's
    sub-volume interval (:mod:`napari_assb_twin.validate.intervals`).
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
    if isinstance(realisations, bool) or int(realisations) != realisations or realisations < 1:
        raise ValueError(f"realisations must be a positive integer, got {realisations!r}")
    if model is None and realisations > 1:
        raise ValueError(f"{realisations} realisations need the twin's model (a model file or built-in name as "
                         "the twin); an image is one realisation")
    if model is None and twin is None:
        raise ValueError("nothing to compare with: give a twin image or the twin's model")
    rshape = None
    if model is not None:
        from .inputs import check_seed

        check_seed(seed)
        ref = tuple(int(n) for n in getattr(_array(twin), "shape", ())) if twin is not None else ()
        rshape = realisation_shape(ref if len(ref) == 3 else _array(real).shape, realisation_side)
        from .generate import available_memory_bytes, peak_memory_bytes

        need, free = peak_memory_bytes(model, rshape), available_memory_bytes("cpu")
        if free is not None and need > free:
            raise MemoryError(f"a realisation of {rshape} needs about {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB "
                              "free: lower the realisation size")
    # a model alone is calibrated like its realisations: its own voxel size
    calibrated = twin if twin is not None else SimpleNamespace(voxel_size=getattr(model, "voxel_size", None),
                                                              unit=getattr(model, "unit", None))
    voxel, unit, notes = compare_geometry(real, calibrated, voxel_size, unit)
    for note in notes:
        yield JobProgress("note", message=note)
    names = names or (_name(real, "real"), _name(twin, "twin") if twin is not None else "twin model")
    first = None
    if model is not None and twin is not None and tuple(getattr(_array(twin), "shape", ())) == rshape:
        first = _array(twin)
    for warning in phase_warnings(real, first if model is not None else twin, names):
        yield JobProgress("warning", message=warning)
    if r_max is None:
        real_map = real if isinstance(real, PhaseMap) else PhaseMap(np.asarray(real), source=names[0])
        twin_shape = rshape or tuple(int(n) for n in getattr(_array(twin), "shape", real_map.shape))
        shape = real_map.shape if len(twin_shape) != real_map.ndim else tuple(map(min, real_map.shape, twin_shape))
        r_max = min(real_map.default_r_max(), largest_r_max(shape))
        yield JobProgress("note", message=f"r_max {r_max} px (5 correlation lengths of {names[0]}, at most 64)")
    kwargs = dict(voxel_size=voxel, unit=unit, axes=axes, transport=transport, device=device, geometry=geometry,
                  r_max=r_max, names=names, transport_iter_limit=transport_iter_limit, solver=solver,
                  sampling=sampling)
    if model is not None:
        twins = yield from iter_realisations(model, realisations, rshape, seed, first)
        twin_arrays = twins
    else:
        twin_arrays = _array(twin)
    cmp = yield from iter_compare(_array(real), twin_arrays, **kwargs)
    for k, image in (("measured", real), ("twin", twin if model is None else None)):
        message = getattr(image, "message", "")
        if message:
            notes.append(f"{k}: {message}")
    cmp.notes[:0] = notes + _calibration_notes(model)
    result = CompareResult(cmp)
    if out is not None:
        result.files = write_report(cmp, out, force=force)
        yield JobProgress("report", message=f"wrote {len(result.files)} files to {out}")
    return result


def _calibration_notes(model: Any) -> list[str]:
    """What the twin's calibration input decided (its model file's ``provenance.plausible``: the plausible
    structures, their tau intervals, undecided phases and measured taus), as notes of the report."""
    summary = ((getattr(model, "provenance", None) or {}).get("plausible") or {}).get("summary") or []
    return [f"calibration: {line}" for line in summary]
