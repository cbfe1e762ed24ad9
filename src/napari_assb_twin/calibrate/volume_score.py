"""3D connectivity and transport of a candidate structure against measured volumes (issue 18).

2D statistics do not determine 3D connectivity across structure families: at the same 2D topology a
chi2(1) upper level set and a chi2(3) lower one differ several-fold in tortuosity (docs/benchmarks.md).
Where the user gives a 3D volume, selection measures what decides it directly: for each phase and
axis, the tortuosity factor tau (AMG-CG, :mod:`~napari_assb_twin.stats.transport`) and the
percolating fraction (share of the phase in clusters touching both faces), on cubic crops of side
:data:`VOLUME_CROP` of the measured volumes and on simulated twins of the candidate of the same
size, so that finite-size effects (strong near the percolation threshold) are alike on both sides.

Terms (lower is better, mean over phases and axes):

* ``transport``: per phase, |mean log tau (model) - mean log tau (data)|, each mean over the three axes
  and over the twins / crops, tau capped at :data:`TAU_CAP` (a phase that does not percolate counts as
  tau = cap). Pooled, not axis by axis: near the percolation threshold log tau of one 64^3 crop scatters
  by 0.4-1.0 (SD, the NMC 256^3 volume's crops), and a per-axis |difference| of single realisations
  then scores the right structure (mean tau right, wide scatter) like a wrong one (tau 2x off, narrow
  scatter): on that volume 0.27-0.41 vs 0.35-0.43. The axes' differences are the C_ij's to fit;
* ``percolation``: |percolating fraction (model) - (data)|;
* ``topology3d``: |chi_V / S_V^3 (model) - (data)| per phase (:func:`~napari_assb_twin.stats.minkowski3d.chi3d_over_s3`),
  the same lattice estimator on the twins and on the crops. Not the exact expectation
  (``expected_minkowski3d``): on the 1-2 voxel carbon-binder coat the lattice estimate differs from it
  several-fold (inpainter model: exact -0.024, simulated -0.14), so only like is compared with like.
  For the same reason the 3D topology is not part of the (simulation-free) pre-ranking; computing its
  exact value for the ~2000 structures also took 8 ms each (+40 s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..events import JobProgress, run_job
from ..options import MAX_COARSE_RATIO
from ..phases import PHASE_NAMES
from ..stats.parallel import ordered_results, solver_threads
from .coarse import MIN_COARSE_CROP, coarse_grain

__all__ = ["TAU_CAP", "VOLUME_CROP", "VOLUME_WEIGHTS", "VolumeTargets", "crop_corners", "iter_statistics",
           "iter_volume_score", "volume_statistics",
           "volume_terms"]

#: Side (voxels) of the measured crops and the simulated twins the 3D terms compare.
VOLUME_CROP: int = 64
#: Measured crops per volume at most (spread over the volume; fewer when it is small).
MAX_CROPS: int = 8
#: Largest tortuosity factor told apart; a phase that does not percolate counts as this.
TAU_CAP: float = 50.0
#: Largest side (fine voxels) of a twin simulated to be coarse-grained for a coarse volume's terms.
#: The coarse tau the twin must meet is the whole coarse volume's, and near a phase's percolation
#: threshold tau depends on the box: on the NMC section + 64^3 coarse volume (ratio 4) the knob's twins
#: coarse-grained from 192^3 (48^3 crops) put w at 0.035 and left the coarse NMC tau +63..+186 % off,
#: while at the whole 64^3 (twins of 256^3) their tau crosses the measured one near w = 0.15; fitted
#: there and scored at 48^3, the 3D terms then ranked that variant below w = 0. One size for both.
COARSE_TWIN_SIDE: int = MIN_COARSE_CROP * MAX_COARSE_RATIO  # 256: ~4 s to simulate here (192^3: ~2 s)
#: Weights of the 3D terms (this module), used when the data hold
#: a volume. ``transport`` is the mean over phases of |log tau ratio| (log tau pooled over the axes):
#: 2 makes a 10 % tau error on every phase cost 0.19, as much as a 2D topology miss of 0.04 (the whole spread between the 2D
#: favourites of issue 18's table), because a measured volume decides connectivity where 2D sections
#: only hint at it. ``percolation`` (share of each phase in spanning clusters) separates what tau
#: cannot (a capped, non-percolating phase); ``topology3d`` (chi_V / S_V^3 per phase) is the 3D
#: counterpart of the 2D topology term, whose differences between structures are of the same size.
VOLUME_WEIGHTS: dict[str, float] = {"transport": 2.0, "percolation": 2.0, "topology3d": 2.0}
#: Relative residual of the transport solves (1e-3 moves tau by far less than the crops scatter).
SCORE_RTOL: float = 1e-3


def crop_corners(shape: Sequence[int], side: int, n: int) -> list[tuple[int, int, int]]:
    """Up to ``n`` corners of cubic crops of ``side`` spread over a volume of ``shape`` (a lattice
    of non-overlapping crops where it fits, taken in a fixed interleaved order)."""
    per_axis = [max(1, s // side) for s in shape]
    grid = [tuple(int(round(k * (s - side) / max(1, m - 1))) if m > 1 else (s - side) // 2 for k in range(m))
            for s, m in zip(shape, per_axis)]
    corners = [(a, b, c) for a in grid[0] for b in grid[1] for c in grid[2]]
    if len(corners) <= n:
        return corners
    idx = np.linspace(0, len(corners) - 1, n).round().astype(int)
    return [corners[i] for i in idx]


def volume_statistics(volume: np.ndarray, names: Sequence[str] = PHASE_NAMES, only: Sequence[int] | None = None,
                      threads: int | None = None) -> Generator[JobProgress, None, dict[str, np.ndarray]]:
    """Tau (capped) and percolating fraction of every phase along every axis of one 3D phase map.

    A generator (one event per solve, so a stop acts between solves); returns
    ``{"log_tau": (P, 3), "percolating": (P, 3)}`` indexed ``[phase, axis]`` and ``"chi_s3"`` (P,), for the
    ``P = len(names)`` labels (the phases, or a coarse volume's groups). ``only``: solve for these labels
    alone (the others' rows are NaN). ``threads``: solves at once (default
    :func:`~napari_assb_twin.stats.parallel.solver_threads`; 1 where the caller overlaps whole volumes).
    """
    from ..stats.minkowski3d import chi3d_over_s3, minkowski3d_densities
    from ..stats.transport import iter_phase_transport

    n = len(names)
    log_tau = np.full((n, 3), np.nan) if only is not None else np.zeros((n, 3))
    perc = np.full((n, 3), np.nan) if only is not None else np.zeros((n, 3))
    phases = list(range(n) if only is None else only)
    # the phases' nine solves (on threads, one AMG hierarchy per phase); each of the job's events is
    # a point to stop at, without a line (~40 volumes per selection)
    job = iter_phase_transport(volume, phase_list=phases, solver="amg", rtol=SCORE_RTOL, threads=threads)
    try:
        while True:
            next(job)
            yield JobProgress("selection", 0, 0, "")
    except StopIteration as done:
        results = done.value
    finally:  # a stopped job: the solves not yet started are dropped
        job.close()
    for (p, a), res in results.items():
        perc[p, a] = res.percolating_fraction
        log_tau[p, a] = math.log(min(TAU_CAP, res.tau) if math.isfinite(res.tau) else TAU_CAP)
    chi_s3 = np.asarray(chi3d_over_s3(minkowski3d_densities(volume, n_phases=n)), dtype=float)
    return {"log_tau": log_tau, "percolating": perc, "chi_s3": np.nan_to_num(chi_s3, nan=0.0)}


def _crop(volume: np.ndarray, corner: tuple[int, int, int], side: int) -> np.ndarray:
    z, y, x = corner
    return np.ascontiguousarray(volume[z:z + side, y:y + side, x:x + side])


def iter_statistics(makers: Sequence[Callable[[], np.ndarray]], names: Sequence[str] = PHASE_NAMES,
                    only: Sequence[int] | None = None, event: Callable[[int], JobProgress] | None = None
                    ) -> Generator[JobProgress, None, list[dict[str, np.ndarray]]]:
    """:func:`volume_statistics` of several volumes, each made by its callable (a twin is simulated in
    the thread that measures it), overlapping on threads; returns them in the order given.

    One event before each volume's result (``event(k)``, or a silent point to stop at); a stop drops
    the volumes not yet started. Whole volumes overlap rather than the solves of one: the twin's
    simulation overlaps too, and three solves (the knob's one phase) do not split evenly on two
    threads.
    """
    def measure(make: Callable[[], np.ndarray]) -> dict[str, np.ndarray]:
        return run_job(volume_statistics(np.asarray(make()), names, only, threads=1), None)

    # the volumes are crops and twins of at most 96^3 (a coarse volume's fine twins: COARSE_TWIN_SIDE)
    results = ordered_results([partial(measure, make) for make in makers], solver_threads())
    out: list[dict[str, np.ndarray]] = []
    try:
        for k in range(len(makers)):
            yield event(k) if event is not None else JobProgress("selection", 0, 0, "")
            out.append(next(results))
    finally:
        results.close()
    return out


@dataclass
class VolumeTargets:
    """The measured volumes' 3D statistics on crops of side ``crop``: mean and SD over crops."""

    crop: int
    log_tau: np.ndarray
    log_tau_sd: np.ndarray
    percolating: np.ndarray
    chi_s3: np.ndarray
    n_crops: int
    #: for a coarse volume: (groups, ratio, operator) that turn a fine twin into its labels
    coarse: tuple | None = None
    #: what the labels of the crops are: the phases, or a coarse volume's groups
    names: tuple[str, ...] = tuple(PHASE_NAMES)
    #: every crop's :func:`volume_statistics` (the score's bootstrap resamples them)
    crops: list = field(default_factory=list)

    def twin(self, model, seed: int) -> np.ndarray:
        """One simulated twin comparable with the crops: side ``crop`` (a coarse volume's: simulated
        ``ratio`` times finer and coarse-grained the way the volume was made)."""
        if self.coarse is None:
            return np.asarray(model.generate((self.crop,) * 3, seed=seed))
        groups, ratio, operator = self.coarse
        return np.asarray(coarse_grain(model.generate((self.crop * ratio,) * 3, seed=seed), groups, ratio, operator))

    @classmethod
    def _iter_crops(cls, volumes: Sequence[np.ndarray], side: int, max_crops: int, names: Sequence[str],
                    coarse: tuple | None = None) -> Generator[JobProgress, None, "VolumeTargets"]:
        """:func:`volume_statistics` of up to ``max_crops`` cubic crops of ``side`` of every volume,
        summarised (mean, and SD of log tau, over the crops)."""
        crops = [partial(_crop, v, corner, side) for v in volumes for corner in crop_corners(v.shape, side, max_crops)]
        stats = yield from iter_statistics(crops, names)
        lt = np.stack([s["log_tau"] for s in stats])
        return cls(side, lt.mean(0), lt.std(0, ddof=1) if len(stats) > 1 else np.zeros_like(lt[0]),
                   np.mean([s["percolating"] for s in stats], 0), np.mean([s["chi_s3"] for s in stats], 0),
                   len(stats), coarse, tuple(names), stats)

    @classmethod
    def iter_from_volumes(cls, volumes: Sequence[np.ndarray], crop: int = VOLUME_CROP,
                          max_crops: int = MAX_CROPS) -> Generator[JobProgress, None, "VolumeTargets"]:
        """Crops of every volume (``max_crops`` each), measured; the crop side is at most the
        smallest volume side."""
        side = int(min(crop, *(min(v.shape) for v in volumes)))
        return (yield from cls._iter_crops(volumes, side, max_crops, PHASE_NAMES))

    @classmethod
    def iter_from_coarse(cls, coarse, max_crops: int = MAX_CROPS) -> Generator[JobProgress, None, "VolumeTargets"]:
        """The same statistics of a coarse volume's group labels, on crops whose fine twins have at most
        :data:`COARSE_TWIN_SIDE` voxels a side (at least :data:`~.coarse.MIN_COARSE_CROP` coarse voxels,
        which the largest ratio, :data:`~napari_assb_twin.options.MAX_COARSE_RATIO`, keeps within that side)."""
        side = int(min(VOLUME_CROP, max(MIN_COARSE_CROP, COARSE_TWIN_SIDE // coarse.ratio), min(coarse.labels.shape)))
        return (yield from cls._iter_crops([coarse.labels], side, max_crops, coarse.group_names(),
                                           (coarse.groups, coarse.ratio, coarse.operator)))


def iter_volume_score(targets: VolumeTargets, model, n_twins: int = 1,
                      seed: int = 24680) -> Generator[JobProgress, None, dict[str, float]]:
    """The 3D terms of ``model`` against ``targets`` (module docstring), over ``n_twins`` simulated
    twins of side ``targets.crop`` (coarse-grained first for a coarse volume); returns ``transport``,
    ``percolation``, ``topology3d`` and the model's mean ``log_tau`` / ``percolating`` / ``chi_s3`` arrays."""
    stats = yield from iter_statistics([partial(targets.twin, model, seed + k) for k in range(n_twins)],
                                       targets.names)
    out = volume_terms(targets.crops, stats)
    out["twins"] = stats
    return out


def volume_terms(crops: Sequence[dict], twins: Sequence[dict]) -> dict[str, float | np.ndarray]:
    """The 3D terms (module docstring) between measured crops' and simulated twins'
    :func:`volume_statistics`, and the twins' mean ``log_tau`` / ``percolating`` / ``chi_s3``."""
    def mean(stats: Sequence[dict], key: str) -> np.ndarray:
        return np.mean([s[key] for s in stats], axis=0)

    lt, pf, chi = mean(twins, "log_tau"), mean(twins, "percolating"), mean(twins, "chi_s3")
    return {
        "topology3d": float(np.abs(chi - mean(crops, "chi_s3")).mean()),
        "transport": float(np.abs(lt.mean(1) - mean(crops, "log_tau").mean(1)).mean()),
        "percolation": float(np.abs(pf - mean(crops, "percolating")).mean()),
        "log_tau": lt,
        "percolating": pf,
        "chi_s3": chi,
    }
