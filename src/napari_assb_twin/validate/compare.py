"""Side-by-side comparison of a measured phase map and a digital twin (METHOD.md section 8).

:func:`compare` computes the same descriptors for both images (volume fractions, surface and
interface areas, connectivity, chord lengths, geodesic tortuosity, constrictivity and, in 3D,
TauFactor transport), the two-point coverage functions and chord-length distributions, and for 2D
sections the MSSIM image similarity. The result is a :class:`Comparison`, written to CSV / PNG / HTML
by :mod:`napari_assb_twin.validate.report`.

Relative differences are ``(twin - real) / |real|``: ``+0.10`` means the twin's value is 10 %
larger than the measured one. They are ``0`` when both values are equal (also when both are ``nan``
or the same infinity, e.g. a phase that percolates in neither image) and ``nan`` when the measured
value is 0 or non-finite and the twin's differs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..events import JobProgress, relay, run_job
from ..phases import N_PHASES, PHASE_NAMES

__all__ = [
    "Comparison",
    "compare",
    "iter_compare",
    "relative_difference",
    "match_twin",
    "twin_sections",
    "TWIN_SECTIONS",
    "DESCRIPTOR_LABELS",
    "DESCRIPTOR_COLUMNS",
]

#: Columns of :attr:`Comparison.descriptors` (and of ``descriptors.csv``).
#: ``real_lo`` / ``real_hi``: the measured value's 95 % sampling interval (from its sub-volumes);
#: ``twin`` / ``twin_lo`` / ``twin_hi``: the mean over the realisations and the 95 % confidence interval
#: of the model's mean; ``twin_spread``: the standard deviation of one twin (realisation, or section of
#: a twin against a 2D section); ``realisations``: how many; ``differs``: the two intervals do not
#: overlap (the only rows a table colours). See :mod:`.intervals`.
DESCRIPTOR_COLUMNS: tuple[str, ...] = (
    "descriptor", "phase", "axis", "unit", "real", "real_lo", "real_hi", "twin", "twin_lo", "twin_hi",
    "twin_spread", "realisations", "difference", "relative_difference", "differs",
)

#: How many sections of a 3D twin a 2D measured section is compared with (evenly spaced planes
#: perpendicular to axis 0; all of them when the twin has fewer).
TWIN_SECTIONS: int = 16

#: Readable names of the descriptors of :func:`napari_assb_twin.stats.descriptors.describe`.
DESCRIPTOR_LABELS: dict[str, str] = {
    "volume_fraction": "Volume fraction",
    "specific_surface_area": "Specific surface area S_V",
    "interface_area_density": "Interface area density S_ij",
    "connected_fraction": "Fraction connected to both faces",
    "mean_chord_length": "Mean chord length",
    "geodesic_tortuosity": "Mean geodesic tortuosity",
    "constrictivity": "Constrictivity \u03b2",
    "r_min": "Bottleneck radius r_min",
    "r_max": "Typical radius r_max",
    "tau_factor": "Tortuosity factor \u03c4 (TauFactor)",
    "effective_diffusivity": "Relative effective diffusivity D_eff/D_0",
    "transport_converged": "TauFactor converged (1 = yes)",
    "mssim": "MSSIM (real vs twin section)",
}


def relative_difference(real: float, twin: float) -> float:
    """``(twin - real) / |real|`` with the conventions of the module docstring."""
    real, twin = float(real), float(twin)
    if real == twin or (math.isnan(real) and math.isnan(twin)):
        return 0.0
    if not math.isfinite(real) or real == 0.0 or not math.isfinite(twin):
        return float("nan")
    return (twin - real) / abs(real)


def twin_sections(real: np.ndarray, twin: Any, count: int = TWIN_SECTIONS) -> tuple[np.ndarray, list[str]]:
    """``count`` evenly spaced sections of a 3D twin perpendicular to axis 0 (in-plane sections when
    axis 0 is the pressing direction), each cropped to the 2D real section's size: a stack
    ``(n, h, w)`` and a note saying which. One section says little: a twin's 2D statistics vary
    from section to section as much as between realisations (pore fraction 0.22-0.43 between
    middle sections of a 256^3 NMC twin whose 3D fraction is 0.32)."""
    shape = tuple(int(n) for n in twin.shape)
    if int(count) < 1:
        raise ValueError(f"the number of twin sections must be at least 1, got {count}")
    index = np.unique(np.linspace(0, shape[0] - 1, min(int(count), shape[0])).round().astype(int))
    crop = tuple(slice(0, min(n, m)) for n, m in zip(shape[1:], real.shape))
    stack = np.stack([np.asarray(twin[(int(z), *crop)]) for z in index])
    which = "every section" if len(index) == shape[0] else f"{len(index)} evenly spaced sections"
    note = (f"twin is 3D {shape}: the 2D section is compared with {which} of it perpendicular to axis 0 "
            f"(z = {index[0]} .. {index[-1]}), each {stack.shape[1]} x {stack.shape[2]}; a twin's value is their "
            "mean, and the 'one twin' sd their standard deviation (a difference within it is section-to-section "
            "scatter, not a model error)")
    return np.ascontiguousarray(stack), [note]


def match_twin(real: np.ndarray, twin: Any, sections: int = TWIN_SECTIONS) -> tuple[np.ndarray, list[str]]:
    """Bring a twin to the real image's dimensionality (and, for lazy arrays, its size).

    * A 3D twin for a 2D real section: a stack of ``sections`` of its sections perpendicular to
      axis 0 (:func:`twin_sections`), never one middle section.
    * A lazy / Zarr twin (anything that is not a NumPy array): the sub-volume of the real image's
      size at the origin is read, so a 1024^3 Zarr twin is never loaded whole.

    Returns the twin as a NumPy array (a stack ``(n, h, w)`` of sections for a 2D real image and a
    3D twin) and notes saying what was done.
    """
    notes: list[str] = []
    lazy = not isinstance(twin, np.ndarray) and not hasattr(twin, "detach")
    if hasattr(twin, "detach"):
        twin = twin.detach().cpu().numpy()
    shape = tuple(int(n) for n in twin.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"the twin must be a 2D or 3D phase map, got shape {shape}")
    if real.ndim == 3 and len(shape) == 2:
        raise ValueError(
            f"the measured image is 3D {real.shape} but the twin is a 2D section {shape}; "
            "compare a 3D twin with a 3D measurement, or a 2D measured section with a 2D or 3D twin"
        )
    if real.ndim == 2 and len(shape) == 3:
        return twin_sections(real, twin, sections)
    if lazy:
        crop = tuple(slice(0, min(n, m)) for n, m in zip(shape, real.shape))
        twin = np.asarray(twin[crop])
        if twin.shape != shape:
            notes.append(f"twin is a {' x '.join(map(str, shape))} array: compared its sub-volume "
                         f"{' x '.join(map(str, twin.shape))} at the origin (the real image's size)")
    return np.ascontiguousarray(np.asarray(twin)), notes


@dataclass
class Comparison:
    """Everything computed for one real-vs-twin comparison.

    Attributes
    ----------
    descriptors : pandas.DataFrame
        One row per descriptor / phase / axis with :data:`DESCRIPTOR_COLUMNS`.
    coverage : dict
        ``{"real": CoverageResult, "twin": CoverageResult}`` (minus-sampling estimator, same ``r_max``).
    chords : dict
        ``{"real": ChordResult, "twin": ChordResult}`` (border-censored chords, in pixels).
    sections : dict
        ``{"real": [(title, 2D array)...], "twin": [...]}`` middle sections for display.
    real_shape, twin_shape : tuple of int
        Shapes of the two phase maps actually compared.
    voxel_size, unit
        Physical voxel size and unit used for both images.
    names : dict
        ``{"real": label, "twin": label}`` (file or layer names) for titles.
    notes : list of str
        What was assumed or skipped (cropping, transport off, mismatched voxel sizes ...).
    coverage_error : pandas.DataFrame
        Largest absolute difference ``max_r |C_ij^twin - C_ij^real|`` per pair and direction.
    seconds : float
        Wall-clock time of the comparison.
    timings : dict
        ``{"real": {block: seconds}, "twin": {...}}`` from :func:`~napari_assb_twin.stats.descriptors.describe`.
    twin_sections : int
        How many sections of a 3D twin a 2D real section was compared with (0: image with image);
        then ``twin`` is their mean and ``twin_spread`` their standard deviation.
    realisations : int
        How many realisations of the twin's model were measured (1: one twin image, no interval).
    sampling_blocks : int
        How many sub-volumes of the measured image gave its sampling interval (0: none).
    """

    descriptors: Any
    coverage: dict[str, Any]
    chords: dict[str, Any]
    sections: dict[str, list[tuple[str, np.ndarray]]]
    real_shape: tuple[int, ...]
    twin_shape: tuple[int, ...]
    voxel_size: float
    unit: str
    names: dict[str, str] = field(default_factory=lambda: {"real": "real", "twin": "twin"})
    notes: list[str] = field(default_factory=list)
    coverage_error: Any = None
    seconds: float = 0.0
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    twin_sections: int = 0
    realisations: int = 1
    sampling_blocks: int = 0

    @property
    def ndim(self) -> int:
        return len(self.real_shape)

    def max_abs_relative_difference(self, descriptors: Iterable[str] | None = None) -> float:
        """Largest finite ``|relative_difference|`` (optionally over some descriptors only)."""
        df = self.descriptors
        if descriptors is not None:
            df = df[df["descriptor"].isin(list(descriptors))]
        vals = np.abs(df["relative_difference"].to_numpy(dtype=float))
        vals = vals[np.isfinite(vals)]
        return float(vals.max()) if vals.size else float("nan")

    def largest_difference(self) -> dict[str, Any] | None:
        """The row of the largest finite ``|relative_difference|`` (None when there is none)."""
        df = self.descriptors
        rel = np.abs(df["relative_difference"].to_numpy(dtype=float))
        if not np.isfinite(rel).any():
            return None
        return df.iloc[int(np.nanargmax(np.where(np.isfinite(rel), rel, np.nan)))].to_dict()

    def differing_rows(self) -> int:
        """How many rows differ beyond both intervals (the measured and the twin's do not overlap)."""
        return int(self.descriptors["differs"].astype(bool).sum())

    def undefined_rows(self) -> int:
        """How many rows have no relative difference (n/a: a zero or infinite measured value, an
        absent phase): counted, never read as 0 %."""
        return int((~np.isfinite(self.descriptors["relative_difference"].to_numpy(dtype=float))).sum())


def _records_map(records: list[dict[str, Any]]) -> dict[tuple[str, str, Any], tuple[float, str]]:
    return {(r["descriptor"], r["phase"], r["axis"]): (float(r["value"]), r["unit"]) for r in records}


def _middle_sections(ph: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Middle sections for display: the image itself in 2D; z and y sections in 3D."""
    if ph.ndim == 2:
        return [("section", ph)]
    z, y = ph.shape[0] // 2, ph.shape[1] // 2
    return [(f"z = {z} (axis 0 normal)", ph[z]), (f"y = {y} (contains axis 0)", ph[:, y, :])]


def compare(
    real: Any, twin: Any, *args: Any, progress: Callable[[JobProgress], None] | None = None, **options: Any
) -> Comparison:
    """Compare a measured phase map with a twin on every descriptor: :func:`iter_compare` (same
    arguments) run to its end, passing each of its events to ``progress`` (``str(event)`` is a
    readable log line); returns the :class:`Comparison`."""
    return run_job(iter_compare(real, twin, *args, **options), progress)


def iter_compare(
    real: Any,
    twin: Any,
    voxel_size: float = 1.0,
    unit: str = "px",
    axes: int | Sequence[int] | None = None,
    transport: bool = True,
    device: Any = "cpu",
    geometry: bool = True,
    r_max: int | None = None,
    names: tuple[str, str] = ("real", "twin"),
    transport_iter_limit: int | None = None,
    solver: str = "auto",
    twin_sections: int = TWIN_SECTIONS,
    sampling: bool = True,
) -> Generator[JobProgress, None, Comparison]:
    """Compare a measured phase map with a twin on every descriptor of METHOD.md section 8, as a job:
    yields progress events, returns the :class:`Comparison`.

    Events: for each image in turn (its name in ``message``: the measured image, its sub-volumes, each
    realisation) the stages of :func:`~napari_assb_twin.stats.descriptors.iter_describe` ("volume
    fractions", "surface area", "connected fraction", "chords", "geodesic tortuosity", "constrictivity",
    "transport <phase> axis <a>", "transport done"), then "MSSIM" (2D), "chord lengths", "coverage
    functions"; ``done`` / ``total`` count them over the whole job. Every input is checked before the
    first event.

    Parameters
    ----------
    real
        Measured ``uint8`` phase map (0 pore, 1 active, 2 electrolyte), 2D or 3D.
    twin
        Twin phase map, same dimensionality; or a 3D twin for a 2D real section (``twin_sections``
        evenly spaced sections of it are measured: the twin's value is their mean); or a lazy array
        (Zarr / dask) of which the real image's size is read; or a list of such twins, the
        realisations of one model (all of one shape): each descriptor is then their mean with the 95 %
        confidence interval of the model's mean (:mod:`.intervals`). Shapes may differ from the real
        image's: the descriptors are intensive (per volume / per length).
    voxel_size, unit
        Physical voxel edge and unit for both images (descriptors with lengths use them).
    axes
        Axes of the directional descriptors (default all).
    transport
        Solve diffusion per phase and axis (3D only; 2D sections get MSSIM instead).
    device, solver
        Device and transport solver (:data:`napari_assb_twin.options.TRANSPORT_SOLVERS`; ``"auto"``:
        AMG-CG on a CPU, TauFactor or torch CG on a GPU).
    geometry
        Geodesic tortuosity and constrictivity (the slower geometric descriptors).
    r_max
        Largest coverage distance in pixels (default ``min(64, n_min // 4)``).
    names
        Labels of the two images for tables and plot titles.
    transport_iter_limit
        The transport solver's iteration limit per phase and axis (``None``: the package default,
        ``stats.transport.ITER_LIMIT``); runs that stop at it are named in the notes.
    sampling
        Measure every descriptor on the ``2^d`` sub-volumes of the measured image too, for its sampling
        interval (:func:`.intervals.sampling_interval`; about as long again as the measured image).

    Returns
    -------
    Comparison (as the generator's return value)

    Raises
    ------
    ValueError, TypeError
        Images that are not phase maps, realisations of different shapes, or dimensionalities that
        cannot be compared.
    """
    from ..stats.arrays import check_axes
    from ..stats.descriptors import iter_describe
    from ..stats.transport import ITER_LIMIT
    from .intervals import sub_blocks

    limit = ITER_LIMIT if transport_iter_limit is None else transport_iter_limit
    t_start = time.perf_counter()
    twins = list(twin) if isinstance(twin, (list, tuple)) else [twin]
    if not twins:
        raise ValueError("no twin to compare with: give a twin image or a list of realisations")
    real_ph, twin_phs, voxel_size, transport, notes = _checked_inputs(real, twins, voxel_size, transport, geometry,
                                                                      twin_sections)
    stacked = twin_phs[0].ndim == real_ph.ndim + 1  # sections of a 3D twin for a 2D real section
    r_max = _checked_r_max(r_max, real_ph, twin_phs[0][0] if stacked else twin_phs[0])
    ax = check_axes(axes, real_ph.ndim)
    blocks = sub_blocks(real_ph) if sampling else []
    if sampling and not blocks:
        notes.append(f"the measured image {real_ph.shape} is too small for sub-volumes (blocks under "
                     "8 voxels a side): no sampling interval of the measured values")
    n_real = len(twins)
    per_image = 4 + (2 if geometry else 0) + (N_PHASES * len(ax) + 1 if transport else 0)
    images: list[tuple[str, int, np.ndarray, str]] = [("real", 0, real_ph, names[0])]
    images += [("block", k, b, f"{names[0]} sub-volume {k + 1}/{len(blocks)}") for k, b in enumerate(blocks)]
    for r, ph in enumerate(twin_phs):
        what = names[1] if n_real == 1 else f"{names[1]} realisation {r + 1}/{n_real}"
        images += ([("twin", r, s, f"{what} section {k + 1}/{len(ph)}") for k, s in enumerate(ph)] if stacked
                   else [("twin", r, ph, what)])
    total = len(images) * per_image + 2 + (real_ph.ndim == 2)
    timings: dict[str, dict[str, float]] = {"real": {}, "blocks": {}, "twin": {}}
    recs: dict[str, list[list[dict[str, Any]]]] = {"real": [], "block": [[] for _ in blocks],
                                                    "twin": [[] for _ in twin_phs]}
    stuck_blocks = 0
    for i, (key, index, ph, name) in enumerate(images):
        spent: dict[str, float] = {}
        job = iter_describe(ph, voxel_size=voxel_size, unit=unit, axes=ax, transport=transport, device=device,
                            geometry=geometry, timings=spent, transport_iter_limit=limit, solver=solver)
        found = yield from relay(job, offset=i * per_image, total=total, message=name)
        (recs["real"] if key == "real" else recs[key][index]).append(found)
        tkey = {"real": "real", "block": "blocks", "twin": "twin"}[key]
        for block, sec in spent.items():
            timings[tkey][block] = timings[tkey].get(block, 0.0) + sec
        if key == "block":  # one note for all sub-volumes, after the last
            stuck_blocks += bool(_unconverged_notes(found, name, limit))
            if index < len(blocks) - 1 or not stuck_blocks:
                continue
            said = [f"the transport solver stopped at its iteration limit ({limit}) in {stuck_blocks} of the "
                    f"{len(blocks)} sub-volumes of {names[0]}: the measured interval of their tau is not final"]
        else:
            said = _unconverged_notes(found, name, limit)
        for note in said:
            notes.append(note)
            yield JobProgress("warning", message=note)  # said now, on stderr, not only in the report
    done = len(images) * per_image
    rows = _descriptor_rows(_records_map(recs["real"][0]), [_records_map(b[0]) for b in recs["block"]],
                            [[_records_map(r) for r in per] for per in recs["twin"]])
    if real_ph.ndim == 2:
        yield JobProgress("MSSIM", done, total, "mean structural similarity of the two sections")
        done += 1
        rows += _mssim_rows(real_ph, twin_phs if stacked else [ph[None] for ph in twin_phs], notes)
    if n_real > 1:
        notes.append(f"twin: {n_real} realisations of {' x '.join(map(str, _image_shape(twin_phs[0], stacked)))} "
                     "voxels; each twin value is their mean with the 95 % confidence interval of the model's mean "
                     "(Student t, N - 1 dof); the 'one twin' sd is the standard deviation of one realisation")
    else:
        notes.append("one twin: no interval of the twin's value, so no difference is marked (compare several "
                     "realisations of the twin's model: --realisations N, the dock's Realisations box)")
    if blocks:
        notes.append(f"measured: 95 % interval from its {len(blocks)} sub-volumes of "
                     f"{' x '.join(map(str, blocks[0].shape))} voxels (batch means: value \u00b1 t sd / sqrt"
                     f"({len(blocks)})); a difference is marked only where it and the twin's interval do not overlap")
    yield JobProgress("chord lengths", done, total, "chord length distributions of both images")
    every = np.concatenate([ph if stacked else ph[None] for ph in twin_phs])
    chords = {"real": _chords(real_ph, voxel_size, unit), "twin": _chords(every, voxel_size, unit, batch=True)}
    if n_real > 1:
        chords["twin_each"] = [_chords(ph, voxel_size, unit, batch=stacked) for ph in twin_phs]
    yield JobProgress("coverage functions", done + 1, total, f"two-point coverage functions up to {r_max} px")
    cov = {"real": _coverage(real_ph, r_max, voxel_size, unit)}
    cov.update(_twin_coverage(twin_phs, r_max, voxel_size, unit, stacked))
    first = twin_phs[0]
    return Comparison(
        descriptors=_descriptor_frame(rows),
        coverage=cov,
        chords=chords,
        sections={"real": _middle_sections(real_ph), "twin": _middle_sections(first[len(first) // 2] if stacked else first)},
        real_shape=tuple(real_ph.shape),
        twin_shape=_image_shape(first, stacked),
        voxel_size=voxel_size,
        unit=unit,
        names={"real": names[0], "twin": names[1]},
        notes=notes,
        coverage_error=_coverage_errors(cov, real_ph.ndim),
        seconds=time.perf_counter() - t_start,
        timings=timings,
        twin_sections=len(first) if stacked else 0,
        realisations=n_real,
        sampling_blocks=len(blocks),
    )


def _image_shape(ph: np.ndarray, stacked: bool) -> tuple[int, ...]:
    return tuple(int(n) for n in (ph.shape[1:] if stacked else ph.shape))


def _twin_coverage(twin_phs: list[np.ndarray], r_max: int, voxel_size: float, unit: str, stacked: bool) -> dict:
    """``{"twin": mean coverage over the realisations, "twin_band": (lo, hi) of the directional
    functions (95 % confidence band of the model's mean; None for one realisation)}``."""
    from dataclasses import replace

    from .intervals import band

    each = [_coverage(ph, r_max, voxel_size, unit, batch=stacked) for ph in twin_phs]
    if len(each) == 1:
        return {"twin": each[0], "twin_band": None}
    mean, lo, hi = band([c.directional for c in each])
    radial = None if each[0].radial is None else np.mean([c.radial for c in each], axis=0)
    pooled = replace(each[0], directional=mean, radial=radial,
                     volume_fractions=np.mean([c.volume_fractions for c in each], axis=0))
    return {"twin": pooled, "twin_band": (lo, hi)}


def _pooled(maps: list[dict]) -> dict:
    """One image's values from several (the sections of one twin): the mean per key (NaN where a
    value is missing in some; inf where every one is the same infinity)."""
    keys = list(dict.fromkeys(k for m in maps for k in m))
    out = {}
    for k in keys:
        vals = np.array([m[k][0] for m in maps if k in m], dtype=float)
        u = next(m[k][1] for m in maps if k in m)
        with np.errstate(invalid="ignore"):
            out[k] = (float(np.mean(vals)) if len(vals) == len(maps) else float("nan"), u)
    return out


def _checked_inputs(real: Any, twins: list[Any], voxel_size: Any, transport: bool, geometry: bool, sections: int):
    """The real phase map, the twins (each matched to the real image: a stack of sections for a 2D
    real image and a 3D twin; all of one shape), the voxel size, transport, notes."""
    from ..stats.arrays import as_phase_map

    real_ph = as_phase_map(real, "real")
    twin_phs, notes = [], []
    for k, twin in enumerate(twins):
        twin_arr, said = match_twin(real_ph, twin, sections)
        if k == 0:
            notes += said
        twin_phs.append(np.stack([as_phase_map(s, "twin section") for s in twin_arr]) if twin_arr.ndim > real_ph.ndim
                        else as_phase_map(twin_arr, "twin"))
    shapes = sorted({ph.shape for ph in twin_phs})
    if len(shapes) > 1:
        raise ValueError(f"the realisations of a twin must share one shape, got {', '.join(map(str, shapes))}")
    if not (isinstance(voxel_size, (int, float, np.floating, np.integer)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size!r}")
    if transport and real_ph.ndim == 2:
        transport = False
        notes.append("2D sections: no transport (it needs a volume); MSSIM added instead")
    elif not transport:
        notes.append("transport not computed")
    if not geometry:
        notes.append("geodesic tortuosity and constrictivity not computed")
    return real_ph, twin_phs, float(voxel_size), transport, notes


def _checked_r_max(r_max: int | None, real_ph: np.ndarray, twin_ph: np.ndarray) -> int:
    """The coverage functions' largest distance (default ``min(64, n_min // 4)``), checked up front."""
    n_min = min(min(real_ph.shape), min(twin_ph.shape))
    if r_max is None:
        r_max = max(1, min(64, n_min // 4))
    if not 1 <= int(r_max) < n_min:
        raise ValueError(f"r_max must lie in 1..{n_min - 1} px for these images, got {r_max}")
    return int(r_max)


def _unconverged_notes(records: list[dict[str, Any]], name: str, limit: int) -> list[str]:
    stuck = [f"{r['phase']} axis {r['axis']}" for r in records
             if r["descriptor"] == "transport_converged" and r["value"] < 1]
    if not stuck:
        return []
    return [f"the transport solver stopped at its iteration limit ({limit}) before converging for {name}: "
            f"{', '.join(stuck)}; their tau is not final (raise the limit: transport_iter_limit / --transport-iter-limit)"]


def _row(descriptor: str, phase: str, axis: Any, unit: str, rv: float, tv: float,
         spread: float = float("nan"), *, real_lo: float = float("nan"), real_hi: float = float("nan"),
         twin_lo: float = float("nan"), twin_hi: float = float("nan"), realisations: int = 1) -> dict[str, Any]:
    from .intervals import disjoint

    diff = tv - rv if math.isfinite(tv) and math.isfinite(rv) else float("nan")
    return {"descriptor": descriptor, "phase": phase, "axis": axis, "unit": unit, "real": rv, "real_lo": real_lo,
            "real_hi": real_hi, "twin": tv, "twin_lo": twin_lo, "twin_hi": twin_hi, "twin_spread": spread,
            "realisations": int(realisations), "difference": diff, "relative_difference": relative_difference(rv, tv),
            "differs": disjoint(real_lo, real_hi, twin_lo, twin_hi)}


def _spread(values: Sequence[float]) -> float:
    """Standard deviation of one image's value (sample SD); NaN for one value or a non-finite one."""
    x = np.asarray(list(values), dtype=float)
    return float(x.std(ddof=1)) if x.size > 1 and np.isfinite(x).all() else float("nan")


def _descriptor_rows(real: dict, blocks: list[dict], twins: list[list[dict]]) -> list[dict[str, Any]]:
    """One row per descriptor key (the real image's order, twin-only rows last): the measured value
    with its sub-volume interval, the twins' mean with the interval of the model's mean.

    ``twins`` holds, per realisation, the record maps of its images (one volume, or its sections
    against a 2D real section: the realisation's value is their mean)."""
    from .intervals import mean_interval, sampling_interval

    per_real = [_pooled(images) for images in twins]
    keys = list(real) + [k for m in per_real for k in m if k not in real]
    rows = []
    for k in dict.fromkeys(keys):
        unit = real[k][1] if k in real else next(m[k][1] for m in per_real if k in m)
        rv = real[k][0] if k in real else float("nan")
        parts = [b[k][0] for b in blocks if k in b]
        lo, hi = sampling_interval(rv, parts) if blocks and len(parts) == len(blocks) else (float("nan"),) * 2
        vals = [m[k][0] if k in m else float("nan") for m in per_real]
        tv, tlo, thi, _ = mean_interval(vals)
        every = [im[k][0] if k in im else float("nan") for images in twins for im in images]
        rows.append(_row(k[0], k[1], k[2], unit, rv, tv, _spread(every), real_lo=lo, real_hi=hi, twin_lo=tlo,
                         twin_hi=thi, realisations=len(twins)))
    return rows


def _mssim_rows(real_ph: np.ndarray, twins: list[np.ndarray], notes: list[str]) -> list[dict[str, Any]]:
    """MSSIM of the real section against every section of every realisation (``twins``: one stack of
    sections per realisation): mean, interval over the realisations, spread over the sections."""
    from ..stats.similarity import mssim
    from .intervals import mean_interval

    common = tuple(min(n, m) for n, m in zip(real_ph.shape, twins[0].shape[1:]))
    crop = tuple(slice(0, n) for n in common)
    if common != real_ph.shape or common != twins[0].shape[1:]:
        notes.append(f"MSSIM on the common {common[0]} x {common[1]} crop")
    per = [[mssim(real_ph[crop], t[crop], per_phase=True) for t in stack] for stack in twins]
    self_scores = mssim(real_ph[crop], real_ph[crop], per_phase=True)
    notes.append("MSSIM: the 'real' column is the measured section compared with itself (1 by definition), so "
                 "it has no relative difference (n/a); twin and measurement are different realisations, and a "
                 "low MSSIM is expected of any two: read it against a real-vs-real baseline of two measured sections")
    rows = []
    for k in per[0][0]:
        means = [float(np.mean([p[k] for p in stack])) for stack in per]
        tv, tlo, thi, _ = mean_interval(means)
        row = _row("mssim", "all" if k == "mssim" else k, None, "1", float(self_scores[k]), tv,
                   _spread([p[k] for stack in per for p in stack]), twin_lo=tlo, twin_hi=thi, realisations=len(twins))
        row["difference"] = row["relative_difference"] = float("nan")  # not one quantity measured twice
        rows.append(row)
    return rows


def _chords(ph: np.ndarray, voxel_size: float, unit: str, batch: bool = False):
    from ..stats.chords import chord_length_distributions

    return chord_length_distributions(ph, voxel_size=voxel_size, unit=unit, batch=batch)


def _coverage(ph: np.ndarray, r_max: int, voxel_size: float, unit: str, batch: bool = False):
    from ..stats.coverage import coverage

    return coverage(ph, r_max, periodic=False, voxel_size=voxel_size, unit=unit, device="cpu", batch=batch)


def _descriptor_frame(rows: list[dict[str, Any]]):
    import pandas as pd

    table = pd.DataFrame.from_records(rows, columns=list(DESCRIPTOR_COLUMNS))
    table["axis"] = table["axis"].astype("Int64")
    table["differs"] = table["differs"].astype(bool)
    return table


def _coverage_errors(cov: dict, ndim: int):
    """Largest and mean absolute difference of the twin's directional C_ij from the real image's."""
    import pandas as pd

    rows = []
    for d in range(ndim):
        for i, j in cov["real"].pairs():
            diff = np.abs(cov["twin"].directional[d, i, j] - cov["real"].directional[d, i, j])
            rows.append({"direction": d, "phase_i": PHASE_NAMES[i], "phase_j": PHASE_NAMES[j],
                         "max_abs_difference": float(diff.max()), "mean_abs_difference": float(diff.mean())})
    return pd.DataFrame(rows)
