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

from ..jobs.events import JobProgress, relay, run_job
from ..phases import N_PHASES, PHASE_NAMES

__all__ = [
    "Comparison",
    "compare",
    "iter_compare",
    "relative_difference",
    "match_twin",
    "DESCRIPTOR_LABELS",
    "DESCRIPTOR_COLUMNS",
]

#: Columns of :attr:`Comparison.descriptors` (and of ``descriptors.csv``).
DESCRIPTOR_COLUMNS: tuple[str, ...] = (
    "descriptor", "phase", "axis", "unit", "real", "twin", "difference", "relative_difference",
)

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


def match_twin(real: np.ndarray, twin: Any) -> tuple[np.ndarray, list[str]]:
    """Bring a twin to the real image's dimensionality (and, for lazy arrays, its size).

    * A 3D twin for a 2D real section: the twin's middle section perpendicular to axis 0 (an
      in-plane section when axis 0 is the pressing direction), cropped to the real section's size
      when it is larger.
    * A lazy / Zarr twin (anything that is not a NumPy array): the sub-volume of the real image's
      size at the origin is read, so a 1024^3 Zarr twin is never loaded whole.

    Returns the twin as a NumPy array and notes saying what was done.
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
        z = shape[0] // 2
        crop = tuple(slice(0, min(n, m)) for n, m in zip(shape[1:], real.shape))
        twin = np.asarray(twin[(z, *crop)])
        notes.append(f"twin is 3D {shape}: compared its middle section z = {z} (perpendicular to axis 0), "
                     f"{twin.shape[0]} x {twin.shape[1]}")
        return np.ascontiguousarray(twin), notes
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
        Twin phase map, same dimensionality; or a 3D twin for a 2D real section (its middle
        section is used); or a lazy array (Zarr / dask) of which the real image's size is read.
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
    real_ph, twin_ph, voxel_size, transport, notes = _checked_inputs(real, twin, voxel_size, transport, geometry)
    r_max = _checked_r_max(r_max, real_ph, twin_ph)
    ax = check_axes(axes, real_ph.ndim)
    per_image = 4 + (2 if geometry else 0) + (N_PHASES * len(ax) + 1 if transport else 0)
    total = 2 * per_image + 2 + (real_ph.ndim == 2)
    recs: dict[str, list[dict[str, Any]]] = {}
    timings: dict[str, dict[str, float]] = {}
    for i, (key, ph, name) in enumerate((("real", real_ph, names[0]), ("twin", twin_ph, names[1]))):
        timings[key] = {}
        job = iter_describe(ph, voxel_size=voxel_size, unit=unit, axes=ax, transport=transport, device=device,
                            geometry=geometry, timings=timings[key], transport_iter_limit=limit, solver=solver)
        recs[key] = yield from relay(job, offset=i * per_image, total=total, message=name)
        for note in _unconverged_notes(recs[key], name, limit):
            notes.append(note)
            yield JobProgress("warning", message=note)  # said now, on stderr, not only in the report
    done = 2 * per_image
    rows = _descriptor_rows(_records_map(recs["real"]), _records_map(recs["twin"]))
    if real_ph.ndim == 2:
        yield JobProgress("MSSIM", done, total, "mean structural similarity of the two sections")
        done += 1
        rows += _mssim_rows(real_ph, twin_ph, notes)
    yield JobProgress("chord lengths", done, total, "chord length distributions of both images")
    chords = {k: _chords(ph, voxel_size, unit) for k, ph in (("real", real_ph), ("twin", twin_ph))}
    yield JobProgress("coverage functions", done + 1, total, f"two-point coverage functions up to {r_max} px")
    cov = {k: _coverage(ph, r_max, voxel_size, unit) for k, ph in (("real", real_ph), ("twin", twin_ph))}
    return Comparison(
        descriptors=_descriptor_frame(rows),
        coverage=cov,
        chords=chords,
        sections={"real": _middle_sections(real_ph), "twin": _middle_sections(twin_ph)},
        real_shape=tuple(real_ph.shape),
        twin_shape=tuple(twin_ph.shape),
        voxel_size=voxel_size,
        unit=unit,
        names={"real": names[0], "twin": names[1]},
        notes=notes,
        coverage_error=_coverage_errors(cov, real_ph.ndim),
        seconds=time.perf_counter() - t_start,
        timings=timings,
    )


def _checked_inputs(real: Any, twin: Any, voxel_size: Any, transport: bool, geometry: bool):
    """Both phase maps (the twin matched to the real image), the voxel size, transport, notes."""
    from ..stats.arrays import as_phase_map

    real_ph = as_phase_map(real, "real")
    twin_arr, notes = match_twin(real_ph, twin)
    twin_ph = as_phase_map(twin_arr, "twin")
    if twin_ph.ndim != real_ph.ndim:  # pragma: no cover - match_twin guarantees this
        raise ValueError(f"cannot compare a {real_ph.ndim}D image with a {twin_ph.ndim}D twin")
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


def _row(descriptor: str, phase: str, axis: Any, unit: str, rv: float, tv: float) -> dict[str, Any]:
    diff = tv - rv if math.isfinite(tv) and math.isfinite(rv) else float("nan")
    return {"descriptor": descriptor, "phase": phase, "axis": axis, "unit": unit, "real": rv, "twin": tv,
            "difference": diff, "relative_difference": relative_difference(rv, tv)}


def _descriptor_rows(a: dict, b: dict) -> list[dict[str, Any]]:
    """One row per descriptor key: the real image's order, twin-only rows last."""
    rows = []
    for k in list(a) + [k for k in b if k not in a]:
        rv, u = a.get(k, (float("nan"), b.get(k, (0.0, ""))[1]))
        tv = b.get(k, (float("nan"), u))[0]
        rows.append(_row(k[0], k[1], k[2], u, rv, tv))
    return rows


def _mssim_rows(real_ph: np.ndarray, twin_ph: np.ndarray, notes: list[str]) -> list[dict[str, Any]]:
    from ..stats.similarity import mssim

    common = tuple(min(n, m) for n, m in zip(real_ph.shape, twin_ph.shape))
    crop = tuple(slice(0, n) for n in common)
    if common != real_ph.shape or common != twin_ph.shape:
        notes.append(f"MSSIM on the common {common[0]} x {common[1]} crop")
    scores = mssim(real_ph[crop], twin_ph[crop], per_phase=True)
    self_scores = mssim(real_ph[crop], real_ph[crop], per_phase=True)
    notes.append("MSSIM: the 'real' column is the measured section compared with itself (1 by definition); "
                 "twin and measurement are different realisations, so read MSSIM relative to a "
                 "real-vs-real baseline, not as an absolute match")
    return [_row("mssim", "all" if k == "mssim" else k, None, "1", float(self_scores[k]), float(v))
            for k, v in scores.items()]


def _chords(ph: np.ndarray, voxel_size: float, unit: str):
    from ..stats.chords import chord_length_distributions

    return chord_length_distributions(ph, voxel_size=voxel_size, unit=unit)


def _coverage(ph: np.ndarray, r_max: int, voxel_size: float, unit: str):
    from ..stats.coverage import coverage

    return coverage(ph, r_max, periodic=False, voxel_size=voxel_size, unit=unit, device="cpu")


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
