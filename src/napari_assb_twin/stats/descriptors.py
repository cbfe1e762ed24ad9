"""Geometric and topological descriptors of 2D / 3D phase maps for validating a digital twin.

Every function takes a ``uint8`` phase map (values 0 = pore, 1 = active, 2 = electrolyte; napari axis
order, 2D or 3D; NumPy array or torch tensor) and returns plain Python / NumPy numbers. Lengths are
converted with ``voxel_size`` (a scalar, or one value per array axis for anisotropic voxels).

Conventions (METHOD.md section 8)
---------------------------------
* The box boundary is **not** an interface: surfaces are only counted between two phases inside the
  image. Phases absent from the image give ``0`` areas and ``nan`` for ratios that need the phase.
* Connectivity is face connectivity (6 neighbours in 3D, 4 in 2D), the same notion of "connected"
  as a finite-volume transport solver such as TauFactor.
* "Along axis ``a``" means from the face ``index 0`` (inlet) to the face ``index n - 1`` (outlet) of
  that array axis.

Typical cost on a 2-core CPU is listed in :func:`describe`; nothing is downsampled.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..phasemap import is_isotropic
from ..phases import N_PHASES, PHASE_NAMES
from .arrays import as_phase_map, check_axes, cluster_labels, face, percolating_mask, select_labels, voxel_spacing
from ..events import JobProgress, relay, run_job
from .transport import ITER_LIMIT, iter_phase_transport

__all__ = [
    "as_phase_map",
    "volume_fractions",
    "surface_area_densities",
    "specific_surface_area",
    "interface_area_density",
    "connected_fraction",
    "geodesic_tortuosity",
    "constrictivity",
    "describe",
    "iter_describe",
    "DESCRIBE_STAGES",
    "records_to_frame",
    "DEFAULT_AREA_SIGMA",
]

#: Gaussian anti-aliasing (in voxels) applied to each phase indicator before marching cubes.
#: Plain marching cubes on a binary indicator over-estimates curved surfaces by about 9 % (the
#: staircase: sphere R = 20 px -> +9.2 %). With sigma = 0.5 px the error for spheres is
#: +4.4 % (R = 20 px), +2.4 % (R = 5 px), -2.8 % (R = 3 px), -14 % (R = 2 px), and planes along the grid
#: stay exact. Pass ``sigma=0`` for plain marching cubes.
DEFAULT_AREA_SIGMA: float = 0.5


# ----------------------------------------------------------------------------------------------
# volume fractions
# ----------------------------------------------------------------------------------------------
def volume_fractions(phases: Any) -> dict[int, float]:
    """Volume (area in 2D) fraction of each phase ``{0: f_pore, 1: f_active, 2: f_electrolyte}``."""
    ph = as_phase_map(phases)
    counts = np.bincount(ph.ravel(), minlength=N_PHASES)
    return {p: float(counts[p] / ph.size) for p in range(N_PHASES)}


# ----------------------------------------------------------------------------------------------
# surface and interface areas
# ----------------------------------------------------------------------------------------------
#: Planes per slab of the surface computations (marching cubes of 4 planes of 256^2: about 0.04 s idle,
#: 0.2 s on the loaded shared 2-core machine).
_SLAB = 4


def _smoothed(f: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian anti-aliasing, 'nearest' at the box faces (edge replication, consistent with the
    padding of :func:`_clipped_area`: no boundary surface). In 3D slab by slab along axis 0 with a
    halo of the filter's radius (scipy.ndimage holds the GIL for a whole call): the same values."""
    if sigma <= 0:
        return f
    if f.ndim != 3:
        return ndi.gaussian_filter(f, sigma=sigma, mode="nearest", truncate=4.0)
    halo = int(4.0 * float(sigma) + 0.5) + 1
    out = np.empty_like(f)
    for z0 in range(0, f.shape[0], _SLAB):
        z1 = min(z0 + _SLAB, f.shape[0])
        lo, hi = max(z0 - halo, 0), min(z1 + halo, f.shape[0])
        out[z0:z1] = ndi.gaussian_filter(f[lo:hi], sigma=sigma, mode="nearest", truncate=4.0)[z0 - lo:z0 - lo + z1 - z0]
    return out


def _clipped_area(indicator: np.ndarray, spacing: tuple[float, ...], sigma: float) -> float:
    """Area (3D) or length (2D) of the 0.5 iso-surface of ``indicator`` inside the voxel box.

    The indicator is padded by one voxel with edge replication, so the iso-surface never closes on
    the box faces (the box boundary is not an interface). In a padding cell that is padding along
    ``k`` axes the field does not vary along those axes, so the surface there is an extrusion and
    exactly ``0.5**k`` of it lies inside the true box ``[-1/2, n - 1/2]``: weighting each triangle
    (segment) by that factor clips the surface to the box exactly (slabs give ``n_y * n_z``).
    """
    from skimage import measure

    f = _smoothed(indicator.astype(np.float32), sigma)
    if f.min() >= 0.5 or f.max() <= 0.5:
        return 0.0
    f = np.pad(f, 1, mode="edge")
    shape = np.asarray(f.shape)
    sp = np.asarray(spacing)
    if f.ndim == 3:
        # slab by slab along axis 0: scikit-image holds the GIL for a whole call (seconds at 256^3,
        # napari's window froze meanwhile); slabs sharing one plane hold each cell exactly once,
        # and a cell's triangles depend on its own corners only, so the sum is the same surface
        total = 0.0
        for z0 in range(0, shape[0] - 1, _SLAB):
            block = f[z0:min(z0 + _SLAB + 1, shape[0])]
            if block.shape[0] < 2 or block.min() >= 0.5 or block.max() <= 0.5:
                continue
            verts, faces, _, _ = measure.marching_cubes(block, level=0.5, method="lewiner")
            verts[:, 0] += z0  # padded index coordinates
            total += _weighted_triangle_area(verts, faces, sp, shape)
        return total
    contours = measure.find_contours(f, level=0.5)
    if not contours:
        return 0.0
    seg_a = np.concatenate([c[:-1] for c in contours])
    seg_b = np.concatenate([c[1:] for c in contours])
    area = np.linalg.norm((seg_b - seg_a) * sp, axis=1)
    centre = 0.5 * (seg_a + seg_b)
    return float(np.sum(area * _padding_weight(centre, shape)))


def _padding_weight(centre: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """``0.5 ** k`` for an element whose centre (padded index coordinates) lies in a cell that is
    padding along ``k`` axes: a cell ``[i, i + 1]`` is padding when ``i == 0`` or ``i == shape - 2``."""
    in_pad = (centre < 1.0) | (centre > shape - 2.0)
    return 0.5 ** in_pad.sum(axis=1)


def _weighted_triangle_area(verts: np.ndarray, faces: np.ndarray, spacing: np.ndarray, shape: np.ndarray) -> float:
    """Sum of the triangles' physical areas, each weighted by :func:`_padding_weight` of its centroid
    (vertices in padded index coordinates). Written per coordinate: ``np.cross`` and a (T, 3, 3)
    gather took most of the time beside marching cubes itself."""
    a, b, c = (verts[faces[:, k]] for k in range(3))
    u, v = (b - a) * spacing, (c - a) * spacing
    area = 0.5 * np.sqrt((u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]) ** 2 + (u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]) ** 2
                         + (u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]) ** 2)
    return float(np.sum(area * _padding_weight((a + b + c) / 3.0, shape)))


def surface_area_densities(
    phases: Any, voxel_size: float | Sequence[float] = 1.0, sigma: float = DEFAULT_AREA_SIGMA
) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    """Specific surface area of each phase and interface area density of each phase pair.

    Both are areas per unit **total** volume (3D: 1/length) or, in 2D, boundary lengths per unit
    total area. Surfaces are marching-cubes (3D) / marching-squares (2D) iso-surfaces at level 0.5 of
    each phase indicator (scikit-image), after a Gaussian anti-aliasing of ``sigma`` voxels (see
    :data:`DEFAULT_AREA_SIGMA`), clipped exactly to the voxel box: the box boundary is **not** counted.

    The pair areas use ``S_ij = (S_i + S_j - S_{i u j}) / 2``, exact for any number of phases because
    the boundary of ``i u j`` is the boundary of ``i`` and of ``j`` minus their common interface; the
    area of a union equals the area of its complement, so for three phases ``S_{i u j} = S_k``.

    Parameters
    ----------
    phases
        2D or 3D ``uint8`` phase map.
    voxel_size
        Voxel edge length (scalar or one per axis).
    sigma
        Gaussian anti-aliasing in voxels (0 = plain marching cubes, which over-estimates curved
        surfaces by ~9 %).

    Returns
    -------
    (per_phase, per_pair)
        ``{phase: S_V}`` and ``{(i, j): S_ij}`` for ``i < j``.
    """
    ph = as_phase_map(phases)
    sp = voxel_spacing(voxel_size, ph.ndim)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be >= 0 voxels, got {sigma!r}")
    total = float(ph.size * np.prod(sp))
    labels = frozenset(range(N_PHASES))
    cache: dict[frozenset[int], float] = {}

    def set_area(s: frozenset[int]) -> float:
        # the surface of a set is the surface of its complement: compute each once
        key = min(s, labels - s, key=lambda k: (len(k), sorted(k)))
        if key not in cache:
            cache[key] = _clipped_area(np.isin(ph, list(key)), sp, sigma) if key else 0.0
        return cache[key]

    per_phase = {p: set_area(frozenset({p})) / total for p in range(N_PHASES)}
    per_pair: dict[tuple[int, int], float] = {}
    for i in range(N_PHASES):
        for j in range(i + 1, N_PHASES):
            s_ij = 0.5 * (set_area(frozenset({i})) + set_area(frozenset({j})) - set_area(frozenset({i, j})))
            per_pair[(i, j)] = max(s_ij, 0.0) / total
    return per_phase, per_pair


def specific_surface_area(
    phases: Any, voxel_size: float | Sequence[float] = 1.0, sigma: float = DEFAULT_AREA_SIGMA
) -> dict[int, float]:
    """Surface area of each phase per unit total volume (1/length); see :func:`surface_area_densities`."""
    return surface_area_densities(phases, voxel_size, sigma)[0]


def interface_area_density(
    phases: Any, voxel_size: float | Sequence[float] = 1.0, sigma: float = DEFAULT_AREA_SIGMA
) -> dict[tuple[int, int], float]:
    """Interface area of each phase pair per unit total volume; see :func:`surface_area_densities`."""
    return surface_area_densities(phases, voxel_size, sigma)[1]


# ----------------------------------------------------------------------------------------------
# connectivity
# ----------------------------------------------------------------------------------------------
def connected_fraction(phases: Any, axes: int | Iterable[int] | None = None) -> dict[tuple[int, int], float]:
    """Fraction of each phase's volume that is face-connected to both faces along each axis.

    Returns ``{(phase, axis): fraction}``; ``nan`` for a phase absent from the image. Isolated blobs
    give 0, a slab spanning the box gives 1.
    """
    ph = as_phase_map(phases)
    ax = check_axes(axes, ph.ndim)
    out: dict[tuple[int, int], float] = {}
    for p in range(N_PHASES):
        ind = ph == p
        n = int(ind.sum())
        if n == 0:
            out.update({(p, a): float("nan") for a in ax})
            continue
        labels = cluster_labels(ind)
        for a in ax:
            out[(p, a)] = float(percolating_mask(labels, a).sum() / n)
    return out


# ----------------------------------------------------------------------------------------------
# geodesic tortuosity
# ----------------------------------------------------------------------------------------------
def _have_skfmm() -> bool:
    """Whether scikit-fmm is installed (an optional dependency: PyPI has only its source release)."""
    import importlib.util

    return importlib.util.find_spec("skfmm") is not None


def _geodesic_lengths_fmm(mask: np.ndarray, axis: int, spacing: tuple[float, ...]) -> np.ndarray:
    """Fast-marching distance inside ``mask`` from every voxel to the outlet face (index n-1)."""
    import skfmm

    # one extra layer past the outlet holds phi = -1 under the phase, so the zero level set lies
    # half a voxel beyond the outlet voxel centres; the other cells are masked (walls)
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (0, 1)
    m = np.pad(mask, pad)
    m[face(m.ndim, axis, -1)] = mask[face(mask.ndim, axis, -1)]
    phi = np.ones(m.shape, dtype=np.float64)
    phi[face(m.ndim, axis, -1)] = -1.0
    dist = skfmm.distance(np.ma.MaskedArray(phi, mask=~m), dx=list(spacing))
    keep = [slice(None)] * m.ndim
    keep[axis] = slice(0, -1)
    d = np.ma.filled(dist[tuple(keep)].astype(np.float64), np.inf)
    return d - 0.5 * spacing[axis]  # distance to the outlet voxel centres


def geodesic_tortuosity(
    phases: Any,
    axes: int | Iterable[int] | None = None,
    voxel_size: float | Sequence[float] = 1.0,
    method: str = "dijkstra",
) -> dict[tuple[int, int], float]:
    """Mean geodesic tortuosity of each phase along each axis.

    For every voxel of the phase on the inlet face (index 0) that is face-connected within the phase
    to the outlet face (index n-1), the shortest path inside the phase to the outlet face is divided by
    the straight thickness ``(n - 1) * voxel_size[axis]`` (centre to centre); the result is the mean of
    those ratios, so a straight channel gives exactly 1.

    Parameters
    ----------
    method
        ``"fmm"``: fast marching (scikit-fmm, second order, near-isotropic, 6-neighbour propagation
        consistent with face connectivity); ``"dijkstra"``: shortest paths on the 26- (8-) neighbour
        voxel graph (:func:`.shortest_paths.outlet_distances`, the graph of scikit-image's
        ``MCP_Geometric``; over-estimates oblique paths by up to ~8 %, and diagonal steps may cut voxel
        corners), the default; ``"auto"``: the default (Dijkstra). Fast marching is used only when
        asked for: it is an optional, untested dependency and differs from Dijkstra by up to 8 %, so
        a result must not depend on whether it happens to be installed.

    Returns
    -------
    dict
        ``{(phase, axis): tau_geo}``; ``inf`` where the phase does not connect the two faces, ``nan``
        where the phase is absent.

    Notes
    -----
    One shortest-path run per percolating phase and axis, on its percolating part only. Dijkstra
    (compiled, bucket queue; Numba compiles it once per installation, a few seconds, then caches
    it): about 12 CPU-seconds for 3 phases x 3 axes at 256^3 (docs/benchmarks.md).
    """
    ph = as_phase_map(phases)
    ax = check_axes(axes, ph.ndim)
    sp = voxel_spacing(voxel_size, ph.ndim)
    if method == "auto":
        method = "dijkstra"
    if method == "fmm":
        if not _have_skfmm():
            raise ValueError("method='fmm' needs scikit-fmm (pip install scikit-fmm); or use method='dijkstra'")
        lengths = _geodesic_lengths_fmm
    elif method == "dijkstra":
        from .shortest_paths import outlet_distances  # Numba: imported (and compiled or loaded) on first use

        lengths = outlet_distances
    else:
        raise ValueError(f"unknown method {method!r}: use 'auto', 'fmm' or 'dijkstra'")
    out: dict[tuple[int, int], float] = {}
    for p in range(N_PHASES):
        ind = ph == p
        if not ind.any():
            out.update({(p, a): float("nan") for a in ax})
            continue
        labels = cluster_labels(ind)
        for a in ax:
            through = percolating_mask(labels, a)
            inlet = through[face(ph.ndim, a, 0)]
            if not inlet.any():
                out[(p, a)] = float("inf")
                continue
            d = lengths(through, a, sp)[face(ph.ndim, a, 0)][inlet]
            out[(p, a)] = float(np.mean(d) / ((ph.shape[a] - 1) * sp[a]))
    return out


# ----------------------------------------------------------------------------------------------
# constrictivity
# ----------------------------------------------------------------------------------------------
def _upper_median(values: np.ndarray) -> float:
    """Largest r with P(value >= r) >= 1/2 over the given (volume-weighted) values."""
    if values.size == 0:
        return float("nan")
    k = values.size // 2
    return float(np.partition(values, k)[k])


def _edt2(mask: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance (voxels, ``int32``) of every True voxel to the nearest False voxel (box edge open).

    Uses the ``edt`` package (a PoreSpy dependency) when present, else SciPy; squared distances between
    voxel centres are integers, so the float results are rounded.
    """
    try:
        from edt import edtsq
    except ImportError:
        return np.rint(np.square(ndi.distance_transform_edt(mask))).astype(np.int32)
    return np.rint(edtsq(np.ascontiguousarray(mask).view(np.uint8), black_border=False)).astype(np.int32)


#: How fast the opened / intruded fraction falls per unit of log(m) near its 1/2 quantile (measured on
#: the NMC volumes: 0.15-0.25); only steers where the search looks first, never what it finds.
_FRACTION_SLOPE = 0.2
#: The same for the intruded fraction, which drops faster (intrusion stops percolating near its quantile).
_INTRUSION_SLOPE = 0.5


def _largest_passing(lo: int, hi: int, coverage: Callable[[int, int], tuple[np.ndarray, bool]], need: float,
                     guess: int | None = None, slope: float = _FRACTION_SLOPE) -> int:
    """Largest integer m in [lo, hi] whose coverage reaches ``need`` (monotone: passes, then fails).

    ``lo`` is known to pass (0 = "nothing passes"). ``coverage(m, top)`` returns ``(cum, exact)``, where
    ``cum[j]`` (``j <= top``; ``top`` is below the lowest level known to fail) is the number of phase voxels
    closer than ``sqrt(j)`` (squared distance < j) to the ball centres of level ``m``; ``cum[m]`` decides
    level ``m`` (``exact`` False: ``cum[m]`` is only a lower bound that already passes). Each exact
    ``coverage`` costs a bounded distance transform (:mod:`~napari_assb_twin.stats.ball_cover`), so:

    * the next level is interpolated (the fraction falls about linearly in log m) between the
      measured levels around the quantile, with a log-bisection when that does not shrink the bracket;
      ``guess`` (e.g. the answer along another axis) is tried first, then its neighbour;
    * centres shrink as m grows (level-m centres are a subset of level-k centres for m > k), so one
      distance transform bounds the neighbouring levels too: after a pass at k, ``cum[m] < need``
      proves a failure at m > k; after a failure at k, ``cum[m] >= need`` proves a pass at m < k.

    The result is the same as a plain bisection's; only the number of distance transforms changes.
    """
    fail = hi + 1
    f_lo = 2 * need if lo == 0 else None  # measured coverage at lo / fail (all of the phase at m -> 0)
    f_fail = None
    side = 0  # +1 / -1 for consecutive passes / failures: regula falsi may creep from one side
    tries = [guess] if guess is not None else []
    while fail - lo > 1:
        if tries and lo < tries[0] < fail:
            k = tries.pop(0)
        else:
            tries = []
            x_lo, x_fail = math.log(max(lo, 0.5)), math.log(fail)
            if abs(side) >= 2 or (f_lo is None and f_fail is None):
                x = 0.5 * (x_lo + x_fail)
            elif f_lo is not None and f_fail is not None:
                x = x_lo + (f_lo - need) / (f_lo - f_fail) * (x_fail - x_lo)
            elif f_lo is not None:
                x = x_lo + (f_lo - need) / (need * 2 * slope)
            else:
                x = x_fail + (f_fail - need) / (need * 2 * slope)
            k = min(max(int(round(math.exp(x))), lo + 1), fail - 1)
        # bounds from far above k hardly ever help, and the distance transform's cost grows with its range
        cum, exact = coverage(k, min(fail - 1, 4 * k))
        f = float(cum[min(k, cum.size - 1)])
        if f >= need:
            lo, f_lo, side = k, (f if exact else None), max(side, 0) + 1
            tries = [k + 1] if tries == [] and guess is not None and k == guess else tries
            above = np.flatnonzero(cum[k + 1:fail] < need)  # fewer centres and still too few: fail
            if above.size:
                fail, f_fail = k + 1 + int(above[0]), None
        else:
            fail, f_fail, side = k, f, min(side, 0) - 1
            tries = [k - 1] if tries == [] and guess is not None and k == guess else tries
            below = np.flatnonzero(cum[lo + 1:k] >= need)  # more centres and already enough: pass
            if below.size:
                lo, f_lo = lo + 1 + int(below[-1]), None
    return lo


def _half_quantile_radii(ind: np.ndarray, axes: tuple[int, ...]) -> tuple[float, dict[int, float]]:
    """Sub-voxel 50 % quantiles of the continuous PSD (r_max) and of intrusion along each axis (r_min).

    Digital balls of squared radius ``m`` (an integer: squared distances between voxel centres are
    integers) are placed at centres with ``dt^2 >= m`` and cover ``d^2 < m``, PoreSpy's convention at
    integer radii. Opened / intruded fractions are monotone in ``m``, so the largest ``m`` with a
    fraction >= 1/2 is found by a bisection (see :func:`_largest_passing`) instead of the whole
    distribution; radii are ``sqrt(m)``. Shortcuts that give the same ``m``: the centres alone already
    cover themselves (a level whose centres are half the phase passes without a distance transform),
    and a level whose centres all intrude from the inlet covers what the opening covers (cached).
    """
    from .ball_cover import closer_than_counts  # Numba: imported (and compiled or loaded) on first use

    n = int(ind.sum())
    need = 0.5 * n
    dt2 = _edt2(ind)
    m_max = int(dt2.max())
    centres_at = np.cumsum(np.bincount(dt2[ind], minlength=m_max + 2)[::-1])[::-1]  # #(dt2 >= m)
    cache: dict[Any, np.ndarray] = {}

    def cum_of(key: Any, seeds: Callable[[], np.ndarray], top: int) -> np.ndarray:
        # distances are only needed up to the levels still in question; a longer cached count serves too
        if key not in cache or cache[key].size <= top:
            cache[key] = closer_than_counts(seeds(), ind, max(top, 1))
        return cache[key]

    def opened(m: int, top: int) -> tuple[np.ndarray, bool]:
        return cum_of(("open", m), lambda: dt2 >= m, top), True

    # the axes' searches try the same levels (each starts from the previous answer): label a level once,
    # keeping the last few label images (about 256 MB of them)
    labelled: dict[int, np.ndarray] = {}
    keep = max(1, 2**28 // (4 * ind.size))

    def centre_clusters(m: int) -> np.ndarray:
        if m not in labelled:
            if len(labelled) >= keep:
                labelled.pop(next(iter(labelled)))
            labelled[m] = cluster_labels(dt2 >= m)  # centres reachable by sliding the ball
        return labelled[m]

    m_lo = int(np.flatnonzero(centres_at >= need)[-1]) if centres_at[0] >= need else 0
    m_open = _largest_passing(max(m_lo, 0), m_max, opened, need)
    r_min: dict[int, float] = {}
    m_prev = None
    for a in axes:

        def intruded(m: int, top: int, a: int = a) -> tuple[np.ndarray, bool]:
            labels = centre_clusters(m)
            inlet = np.unique(labels[face(ind.ndim, a, 0)])
            inlet = inlet[inlet > 0]
            if inlet.size == int(labels.max()):  # every cluster of centres touches the inlet
                return opened(m, top)
            key = (m, inlet.tobytes())
            if key not in cache:
                seeds = select_labels(labels, inlet) if inlet.size else np.zeros_like(ind)
                n_seeds = int(np.count_nonzero(seeds))
                if n_seeds >= need:  # the centres cover themselves: passes, bounds from nothing else
                    return np.full(m + 1, n_seeds), False
                return cum_of(key, lambda: seeds, top), True
            return cum_of(key, lambda: select_labels(labels, inlet), top), True

        # intrusion at m is a subset of the opening at m, so r_min <= r_max: search [1, m_open] only;
        # the axes of one phase tend to agree, so the previous axis' answer is tried first
        m_prev = _largest_passing(0, m_open, intruded, need, guess=m_prev, slope=_INTRUSION_SLOPE)
        r_min[a] = math.sqrt(m_prev)
    return math.sqrt(m_open), r_min


def constrictivity(
    phases: Any,
    axes: int | Iterable[int] | None = None,
    voxel_size: float | Sequence[float] = 1.0,
    method: str = "bisect",
) -> dict[tuple[int, int], dict[str, float]]:
    """Constrictivity ``beta = (r_min / r_max)^2`` of each phase along each axis (Neumann et al. 2020).

    * ``r_max``: 50 % quantile of the continuous phase size distribution: the largest radius r such
      that at least half of the phase volume is covered by balls of radius r that fit in the phase
      (the morphological opening; its volume-weighted distribution is PoreSpy's local thickness).
    * ``r_min``: 50 % quantile of simulated mercury intrusion porosimetry from the inlet face (index 0)
      of the axis: the largest r such that at least half of the phase volume is reached by balls of
      radius r whose centres slide in, face-connected, from the inlet.

    ``beta`` is 1 for a channel of constant width and ``(r_neck / r_channel)^2`` behind a bottleneck.

    Parameters
    ----------
    method
        ``"bisect"`` (default): radii ``sqrt(m)`` for integer ``m`` (every distinct digital ball),
        found by bisection on the two monotone curves, ~log2(max dt^2) steps each;
        ``"porespy"``: PoreSpy's ``local_thickness`` and ``porosimetry`` over integer radii (whole
        distributions, 1-voxel resolution, which makes beta coarse for radii of a few voxels).
        Both agree at integer radii.

    Returns
    -------
    dict
        ``{(phase, axis): {"beta": ..., "r_min": ..., "r_max": ...}}`` with radii in units of
        ``voxel_size``; ``nan`` for an absent phase; ``beta = 0`` (and ``r_min = 0``) when the phase
        does not face-connect the two faces or less than half of it can be intruded.

    Raises
    ------
    ValueError
        For anisotropic voxels (balls need isotropic voxels) or an unknown method.

    Notes
    -----
    Cost: one exact distance transform per phase (about 0.8 CPU-s at 256^3), then per search step one
    bounded one (:func:`~napari_assb_twin.stats.ball_cover.closer_than_counts`, 0.1-0.4 CPU-s at 256^3)
    and, for intrusion, one labelling (0.15 CPU-s); 2-8 steps per curve (see :func:`_largest_passing`).
    1.7 CPU-s for three phases and axes at 128^3, 11.5 at 256^3 (the NMC volume; 5.1 and 42.7 with a
    full distance transform per step, same values).
    """
    ph = as_phase_map(phases)
    ax = check_axes(axes, ph.ndim)
    sp = voxel_spacing(voxel_size, ph.ndim)
    if not is_isotropic(sp):
        raise ValueError(f"constrictivity needs isotropic voxels (balls), got voxel_size {sp}")
    sp = (sp[-1],) * ph.ndim  # one size within the package's tolerance (a float32 size is the same voxel)
    if method not in ("bisect", "porespy"):
        raise ValueError(f"unknown method {method!r}: use 'bisect' or 'porespy'")
    h = sp[0]
    out: dict[tuple[int, int], dict[str, float]] = {}
    for p in range(N_PHASES):
        ind = ph == p
        if not ind.any():
            nan = float("nan")
            out.update({(p, a): {"beta": nan, "r_min": nan, "r_max": nan} for a in ax})
            continue
        labels = cluster_labels(ind)
        perc = tuple(a for a in ax if percolating_mask(labels, a).any())
        if method == "bisect":
            r_max, r_mins = _half_quantile_radii(ind, perc)
        else:
            r_max, r_mins = _half_quantile_radii_porespy(ind, perc)
        for a in ax:
            # no path between the faces: nothing passes, whatever intrudes from the inlet
            r_min = r_mins.get(a, 0.0)
            beta = (r_min / r_max) ** 2 if r_max > 0 else float("nan")
            out[(p, a)] = {"beta": float(beta), "r_min": r_min * h, "r_max": r_max * h}
    return out


def _half_quantile_radii_porespy(ind: np.ndarray, axes: tuple[int, ...]) -> tuple[float, dict[int, float]]:
    """Same quantiles from PoreSpy's integer-radius local thickness and porosimetry."""
    import porespy as ps

    dt = np.sqrt(_edt2(ind), dtype=np.float32)
    lt = ps.filters.local_thickness(ind, dt=dt, method="dt")
    r_max = _upper_median(lt[ind])
    sizes = np.arange(max(int(np.floor(dt.max())), 1), 0, -1)
    r_min: dict[int, float] = {}
    for a in axes:
        inlets = np.zeros_like(ind)
        inlets[face(ind.ndim, a, 0)] = True
        mip = ps.filters.porosimetry(ind, dt=dt, inlets=inlets, sizes=sizes, method="dt")
        mip = np.where(np.isfinite(mip), mip, 0.0)  # never intruded -> radius 0
        r_min[a] = _upper_median(mip[ind])
    return r_max, r_min


# ----------------------------------------------------------------------------------------------
# everything at once
# ----------------------------------------------------------------------------------------------
def _chord_means(ph: np.ndarray, ax: tuple[int, ...], h: tuple[float, ...]) -> dict[tuple[int, int], float]:
    """Mean chord length (physical units) per phase/axis via :mod:`napari_assb_twin.stats.chords`.

    Chords cut by the box border are dropped (they are censored); ``nan`` where a phase has none.
    """
    from .chords import chord_length_distributions

    res = chord_length_distributions(ph, n_phases=N_PHASES, axes=list(ax))
    return {(p, a): res.mean(p, a) * h[a] for p in range(N_PHASES) for a in ax}


DESCRIBE_STAGES = (
    "volume fractions", "surface area", "connected fraction", "chords", "geodesic tortuosity", "constrictivity",
)


def iter_describe(
    phases: Any,
    voxel_size: float | Sequence[float] = 1.0,
    unit: str = "px",
    axes: int | Iterable[int] | None = None,
    transport: bool = True,
    device: Any = "cpu",
    geometry: bool = True,
    sigma: float = DEFAULT_AREA_SIGMA,
    timings: dict[str, float] | None = None,
    transport_iter_limit: int = ITER_LIMIT,
    solver: str = "auto",
) -> Generator[JobProgress, None, list[dict[str, Any]]]:
    """Every descriptor of a phase map as flat records, as a job: yields progress, returns the records.

    Each record is ``{"descriptor", "phase", "axis", "value", "unit"}`` with ``phase`` a phase name
    (or ``"pore|active"`` for an interface) and ``axis`` an int or ``None`` for isotropic quantities.
    Descriptors: ``volume_fraction``, ``specific_surface_area``, ``interface_area_density``,
    ``connected_fraction``, ``mean_chord_length`` (border-cut chords dropped,
    :mod:`~napari_assb_twin.stats.chords`), ``geodesic_tortuosity``, ``constrictivity``, ``r_min``,
    ``r_max``, and with
    ``transport=True`` ``tau_factor``, ``effective_diffusivity`` (relative, ``D_eff / D_0 = vf / tau``)
    and ``transport_converged`` (:func:`~napari_assb_twin.stats.transport.phase_transport`).

    Events, in order: "volume fractions", "surface area", "connected fraction", "chords",
    "geodesic tortuosity", "constrictivity" (with ``geometry``), then "transport <phase> axis <a>"
    per run and "transport done" (with ``transport``); ``done`` / ``total`` count blocks and runs.

    Parameters
    ----------
    phases
        2D or 3D phase map (napari axis order).
    voxel_size, unit
        Physical voxel size (scalar or per axis) and its unit name, used for the ``unit`` column.
    axes
        Axes for the directional descriptors (``None`` = all).
    transport
        Solve diffusion for each phase and axis (:mod:`~napari_assb_twin.stats.transport`).
    device, solver
        Device and transport solver (``"auto"``: AMG-CG on a CPU, TauFactor / torch CG on a GPU).
    geometry
        Compute geodesic tortuosity and constrictivity (skip for a quick table).
    sigma
        Anti-aliasing for surface areas, see :func:`surface_area_densities`.
    timings
        If a dict is given, the seconds spent in each block are stored in it.
    transport_iter_limit
        The transport solver's iteration limit per phase and axis (``transport_converged`` is 0 for
        a run that stopped at it).

    Notes
    -----
    Cost on the 2-core development CPU, in CPU-seconds (wall time on an idle machine is about the
    same or less), for a twin of ``reference-assb-cathode`` (vf .08 / .60 / .32), all phases and axes:

    ======================  =======  =======
    block                   128^3    256^3
    ======================  =======  =======
    surface areas           1.5      20
    connected fraction      0.1      1
    mean chord lengths      < 0.1    0.3
    geodesic tortuosity     1.5      12
    constrictivity          1.7      11.5
    all but transport       5        ~45
    ======================  =======  =======

    (geodesic tortuosity and constrictivity measured on the NMC image and its 128^3 crop with
    ``benchmarks/bench_geometry_blocks.py``; the total is their sum with the other rows.)

    Transport with the AMG-CG solver: see docs/benchmarks.md (seconds per phase and axis at 256^3).
    With ``transport=True`` the other blocks run on a helper thread beside the solves (they hold
    the GIL, the solves mostly do not), and transport's progress events come before theirs.
    """
    ph = as_phase_map(phases)
    ax = check_axes(axes, ph.ndim)
    sp = voxel_spacing(voxel_size, ph.ndim)
    t = timings if timings is not None else {}
    inv = f"1/{unit}"
    recs: list[dict[str, Any]] = []
    blocks = 4 + (2 if geometry else 0)
    total = blocks + (N_PHASES * len(ax) if transport else 0)

    def add(desc: str, phase: str, axis: int | None, value: float, u: str) -> None:
        recs.append({"descriptor": desc, "phase": phase, "axis": axis, "value": float(value), "unit": u})

    def volume_fraction() -> None:
        for p, v in volume_fractions(ph).items():
            add("volume_fraction", PHASE_NAMES[p], None, v, "1")

    def surface_area() -> None:
        s_phase, s_pair = surface_area_densities(ph, sp, sigma)
        for p, v in s_phase.items():
            add("specific_surface_area", PHASE_NAMES[p], None, v, inv)
        for (i, j), v in s_pair.items():
            add("interface_area_density", f"{PHASE_NAMES[i]}|{PHASE_NAMES[j]}", None, v, inv)

    def connected() -> None:
        for (p, a), v in connected_fraction(ph, ax).items():
            add("connected_fraction", PHASE_NAMES[p], a, v, "1")

    def chords() -> None:
        for (p, a), v in _chord_means(ph, ax, sp).items():
            add("mean_chord_length", PHASE_NAMES[p], a, v, unit)

    def geodesic() -> None:
        for (p, a), v in geodesic_tortuosity(ph, ax, sp).items():
            add("geodesic_tortuosity", PHASE_NAMES[p], a, v, "1")

    isotropic = is_isotropic(sp)  # the package's tolerance: float32 and float64 sizes of one voxel agree

    def constriction() -> None:
        if isotropic:
            for (p, a), res in constrictivity(ph, ax, sp).items():
                add("constrictivity", PHASE_NAMES[p], a, res["beta"], "1")
                add("r_min", PHASE_NAMES[p], a, res["r_min"], unit)
                add("r_max", PHASE_NAMES[p], a, res["r_max"], unit)

    steps: list[tuple[int, str, Callable[[], None]]] = [
        (0, "volume_fraction", volume_fraction), (1, "surface_area", surface_area),
        (2, "connected_fraction", connected), (3, "chords", chords)]
    if geometry:
        steps += [(4, "geodesic_tortuosity", geodesic), (5, "constrictivity", constriction)]

    def event(i: int, key: str, done: int) -> JobProgress:
        message = f"{DESCRIBE_STAGES[i]} of a {ph.shape} phase map"
        if key == "constrictivity" and not isotropic:
            message = f"constrictivity skipped: anisotropic voxels {sp} (it needs cubic voxels)"
        return JobProgress(DESCRIBE_STAGES[i], done, total, message, key)

    def run_step(key: str, compute: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        compute()
        t[key] = time.perf_counter() - t0

    if not transport:
        for i, key, compute in steps:
            yield event(i, key, i)
            run_step(key, compute)
        return recs
    # The geometric blocks (scikit-image, SciPy ndimage: they hold the GIL) run on a helper thread
    # while the transport solves (NumPy / SciPy sparse kernels, which release it) run on theirs: the
    # cores stay busy between and beside the solves (a 256^3 validation's measured volume: the
    # surfaces' 20 s beside 140 s of solves). Transport's events come first, the blocks' after it.
    stop = threading.Event()

    def geometric() -> None:
        for _, key, compute in steps:
            if stop.is_set():  # a stopped job: end after the running block
                return
            run_step(key, compute)

    helper = ThreadPoolExecutor(1, thread_name_prefix="assb-describe")
    pending = helper.submit(geometric)
    try:
        t0 = time.perf_counter()
        def blocks_failed() -> None:
            # a block that failed (out of memory in the surfaces of a large twin ...) ends the job at
            # the next solve's event: waiting for the solves to end first kept its message back for minutes
            if pending.done() and pending.exception() is not None:
                raise pending.exception()

        runs = iter_phase_transport(ph, axes=ax, device=device, solver=solver, iter_limit=transport_iter_limit)
        results = yield from relay(runs, offset=0, total=total, check=blocks_failed)
        t["transport"] = time.perf_counter() - t0
        n_runs = total - blocks
        for k, (i, key, _) in enumerate(steps):
            yield event(i, key, n_runs + k)
        pending.result()  # the blocks' records, or their exception
    finally:
        stop.set()
        helper.shutdown(wait=True)
    # records in the order of the blocks, transport last (as without the helper)
    for (p, a), res in results.items():
        add("tau_factor", PHASE_NAMES[p], a, res.tau, "1")
        add("effective_diffusivity", PHASE_NAMES[p], a, res.d_eff, "1")
        add("transport_converged", PHASE_NAMES[p], a, float(res.converged), "1")
    return recs


def describe(
    phases: Any, *args: Any, progress: Callable[[JobProgress], None] | None = None, **options: Any
) -> list[dict[str, Any]]:
    """Every descriptor of a phase map as flat records for tables, CSV and pandas: :func:`iter_describe`
    (same arguments) run to its end, passing each of its events to ``progress``."""
    return run_job(iter_describe(phases, *args, **options), progress)


def records_to_frame(records: list[dict[str, Any]]):  # -> pandas.DataFrame
    """The records of :func:`describe` as a pandas DataFrame (pandas imported on demand)."""
    import pandas as pd

    return pd.DataFrame.from_records(records, columns=["descriptor", "phase", "axis", "value", "unit"])
