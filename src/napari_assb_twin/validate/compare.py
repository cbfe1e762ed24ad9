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
DESCRIPTOR_COLUMNS: tuple[str, ...] = (
    "descriptor", "phase", "axis", "unit", "real", "twin", "difference", "relative_difference", "twin_spread",
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
            f"(z = {index[0]} .. {index[-1]}), each {stack.shape[1]} x {stack.shape[2]}; the twin column is their "
            "mean and 'twin spread' their standard deviation (a difference within the spread is "
            "section-to-section scatter, not a model error)")
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
) -> Generator[JobProgress, None, Comparison]:
    """Compare a measured phase map with a twin on every descriptor of METHOD.md section 8, as a job:
    yields progress events, returns the :class:`Comparison`.

    Events: for each image in turn (its name in ``message``) the stages of
    :func:`~napari_assb_twin.stats.descriptors.iter_describe` ("volume fractions", "surface area",
    "connected fraction", "chords", "geodesic tortuosity", "constrictivity", "transport <phase> axis
    <a>", "transport done"), then "MSSIM" (2D), "chord lengths", "coverage functions"; ``done`` /
    ``total`` count them over the whole job. Every input is checked before the first event.

    Parameters
    ----------
    real
        Measured ``uint8`` phase map (0 pore, 1 active, 2 electrolyte), 2D or 3D.
    twin
        Twin phase map, same dimensionality; or a 3D twin for a 2D real section (``twin_sections``
        evenly spaced sections of it are measured: the twin's value is their mean, ``twin_spread``
        their standard deviation); or a lazy array (Zarr / dask) of which the real image's size is read.
        Shapes may differ otherwise: the descriptors are intensive (per volume / per length).
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

    Returns
    -------
    Comparison (as the generator's return value)

    Raises
    ------
    ValueError, TypeError
        Images that are not phase maps, or dimensionalities that cannot be compared.
    """
    from ..stats.arrays import check_axes
    from ..stats.descriptors import iter_describe
    from ..stats.transport import ITER_LIMIT

    limit = ITER_LIMIT if transport_iter_limit is None else transport_iter_limit
    t_start = time.perf_counter()
    real_ph, twin_ph, voxel_size, transport, notes = _checked_inputs(real, twin, voxel_size, transport, geometry,
                                                                     twin_sections)
    stacked = twin_ph.ndim == real_ph.ndim + 1  # sections of a 3D twin for a 2D real section
    twin_maps = list(twin_ph) if stacked else [twin_ph]
    r_max = _checked_r_max(r_max, real_ph, twin_maps[0])
    ax = check_axes(axes, real_ph.ndim)
    per_image = 4 + (2 if geometry else 0) + (N_PHASES * len(ax) + 1 if transport else 0)
    total = (1 + len(twin_maps)) * per_image + 2 + (real_ph.ndim == 2)
    timings: dict[str, dict[str, float]] = {"real": {}, "twin": {}}
    images = [("real", real_ph, names[0])] + [
        ("twin", ph, names[1] if not stacked else f"{names[1]} section {k + 1}/{len(twin_maps)}")
        for k, ph in enumerate(twin_maps)]
    recs: dict[str, list[list[dict[str, Any]]]] = {"real": [], "twin": []}
    for i, (key, ph, name) in enumerate(images):
        job = iter_describe(ph, voxel_size=voxel_size, unit=unit, axes=ax, transport=transport, device=device,
                            geometry=geometry, timings=timings[key], transport_iter_limit=limit, solver=solver)
        recs[key].append((yield from relay(job, offset=i * per_image, total=total, message=name)))
        for note in _unconverged_notes(recs[key][-1], name, limit):
            notes.append(note)
            yield JobProgress("warning", message=note)  # said now, on stderr, not only in the report
    done = len(images) * per_image
    rows = _descriptor_rows(_records_map(recs["real"][0]), *_pooled(recs["twin"]))
    if real_ph.ndim == 2:
        yield JobProgress("MSSIM", done, total, "mean structural similarity of the two sections")
        done += 1
        rows += _mssim_rows(real_ph, twin_maps, notes)
    yield JobProgress("chord lengths", done, total, "chord length distributions of both images")
    chords = {"real": _chords(real_ph, voxel_size, unit), "twin": _chords(twin_ph, voxel_size, unit, batch=stacked)}
    yield JobProgress("coverage functions", done + 1, total, f"two-point coverage functions up to {r_max} px")
    cov = {"real": _coverage(real_ph, r_max, voxel_size, unit),
           "twin": _coverage(twin_ph, r_max, voxel_size, unit, batch=stacked)}
    return Comparison(
        descriptors=_descriptor_frame(rows),
        coverage=cov,
        chords=chords,
        sections={"real": _middle_sections(real_ph), "twin": _middle_sections(twin_maps[len(twin_maps) // 2])},
        real_shape=tuple(real_ph.shape),
        twin_shape=tuple(twin_maps[0].shape),
        voxel_size=voxel_size,
        unit=unit,
        names={"real": names[0], "twin": names[1]},
        notes=notes,
        coverage_error=_coverage_errors(cov, real_ph.ndim),
        seconds=time.perf_counter() - t_start,
        timings=timings,
        twin_sections=len(twin_maps) if stacked else 0,
    )


def _pooled(records: list[list[dict[str, Any]]]) -> tuple[dict, dict]:
    """The twin's values (mean over its sections) and their spread (standard deviation; NaN for one
    image, or when a value is not finite in some section, e.g. a phase that percolates in only some)."""
    maps = [_records_map(r) for r in records]
    keys = list(dict.fromkeys(k for m in maps for k in m))
    mean, spread = {}, {}
    for k in keys:
        vals = np.array([m[k][0] for m in maps if k in m], dtype=float)
        u = next(m[k][1] for m in maps if k in m)
        with np.errstate(invalid="ignore"):
            mean[k] = (float(np.mean(vals)) if len(vals) else float("nan"), u)
        spread[k] = float(np.std(vals)) if len(vals) > 1 and np.isfinite(vals).all() else float("nan")
    return mean, spread


def _checked_inputs(real: Any, twin: Any, voxel_size: Any, transport: bool, geometry: bool, sections: int):
    """Both phase maps (the twin matched to the real image: a stack of sections for a 2D real
    image and a 3D twin), the voxel size, transport, notes."""
    from ..stats.arrays import as_phase_map

    real_ph = as_phase_map(real, "real")
    twin_arr, notes = match_twin(real_ph, twin, sections)
    twin_ph = np.stack([as_phase_map(s, "twin section") for s in twin_arr]) if twin_arr.ndim > real_ph.ndim \
        else as_phase_map(twin_arr, "twin")
    if not (isinstance(voxel_size, (int, float, np.floating, np.integer)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size!r}")
    if transport and real_ph.ndim == 2:
        transport = False
        notes.append("2D sections: no transport (it needs a volume); MSSIM added instead")
    elif not transport:
        notes.append("transport not computed")
    if not geometry:
        notes.append("geodesic tortuosity and constrictivity not computed")
    return real_ph, twin_ph, float(voxel_size), transport, notes


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
         spread: float = float("nan")) -> dict[str, Any]:
    diff = tv - rv if math.isfinite(tv) and math.isfinite(rv) else float("nan")
    return {"descriptor": descriptor, "phase": phase, "axis": axis, "unit": unit, "real": rv, "twin": tv,
            "difference": diff, "relative_difference": relative_difference(rv, tv), "twin_spread": spread}


def _descriptor_rows(a: dict, b: dict, spread: dict | None = None) -> list[dict[str, Any]]:
    """One row per descriptor key: the real image's order, twin-only rows last."""
    rows = []
    for k in list(a) + [k for k in b if k not in a]:
        rv, u = a.get(k, (float("nan"), b.get(k, (0.0, ""))[1]))
        tv = b.get(k, (float("nan"), u))[0]
        rows.append(_row(k[0], k[1], k[2], u, rv, tv, (spread or {}).get(k, float("nan"))))
    return rows


def _mssim_rows(real_ph: np.ndarray, twins: list[np.ndarray], notes: list[str]) -> list[dict[str, Any]]:
    from ..stats.similarity import mssim

    common = tuple(min(n, m) for n, m in zip(real_ph.shape, twins[0].shape))
    crop = tuple(slice(0, n) for n in common)
    if common != real_ph.shape or common != twins[0].shape:
        notes.append(f"MSSIM on the common {common[0]} x {common[1]} crop")
    per = [mssim(real_ph[crop], t[crop], per_phase=True) for t in twins]
    self_scores = mssim(real_ph[crop], real_ph[crop], per_phase=True)
    notes.append("MSSIM: the 'real' column is the measured section compared with itself (1 by definition), so "
                 "it has no relative difference (n/a); twin and measurement are different realisations, and a "
                 "low MSSIM is expected of any two: read it against a real-vs-real baseline of two measured sections")
    rows = []
    for k in per[0]:
        vals = np.array([p[k] for p in per], dtype=float)
        row = _row("mssim", "all" if k == "mssim" else k, None, "1", float(self_scores[k]), float(vals.mean()),
                   float(vals.std()) if len(vals) > 1 else float("nan"))
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
