"""Representativeness of a segmented input: how well its phase fractions and C_ij are determined.

For a stationary, ergodic random set observed in a window ``W`` of ``|W|`` pixels (voxels), the
phase-fraction estimates ``phi_hat_i`` (pixel counts / |W|) have, for ``|W|`` large against the
correlation length,

    cov(phi_hat_i, phi_hat_j) ~ S_ij / |W|,    S_ij = sum_h (C_ij(h) - phi_i phi_j),

the sum running over all lattice shifts ``h``. ``S_ii = phi_i (1 - phi_i) A_i`` defines the
*integral range* ``A_i`` (an area in 2D, a volume in 3D; Matheron, Lantuejoul): the window holds
about ``|W| / A_i`` independent "draws" of phase ``i``. Since the phases fill every pixel,
``sum_j S_ij = 0``: the off-diagonal terms are negative on balance and every row sums to zero.
ImageRep (Dahari et al., TauFactor group) does the diagonal of this for two phases; here it is the
full 3x3 matrix, in 2D and 3D, for the sections and volumes a calibration uses.

Estimator (stated because each choice matters and is tested in tests/test_representativeness.py):

* ``C_ij(h)`` is the package's minus-sampling estimate (:func:`~napari_assb_twin.stats.coverage.coverage`,
  radial average); ``radial[r] x (number of lattice shifts in bin r)`` is the sum over the ring.
* The means subtracted at lag ``h`` are the local ones, ``t_i(h) s_j(h)``: the fractions of the
  phases among the first and the second points of the pairs used at that lag (then every row sums to
  zero at every lag). They fluctuate like the mean of a sub-window, which biases every lag by about
  ``-V |W| / |W_h|`` (``V`` the covariance of the fraction estimates themselves); the sums are
  corrected for it in expectation (:func:`integral_matrix`, Notes), the finite-size correction.
  Subtracting the window's global fractions instead left each sub-window's own fluctuation in every
  lag, and a 3D ball of 10^5 lags summed it into nonsense.
* The variance of the given windows weights each lag by the fraction of the window its pairs fit in,
  ``prod_d (1 - |h_d| / n_d)`` (exact for a finite window; ``S / |W|`` is its large-window limit,
  which is what the size needed for a target uses).
* Truncation: the ball's radius is :data:`TRUNCATION_LENGTHS` times the longest 1/e length of the
  phases' autocovariances, at most :data:`RADIUS_CAP` and a quarter (2D) or a third (3D) of the
  smallest side. Not the first zero crossing: the estimate's noise is smooth across lags (the window's own large-scale
  fluctuation), so the first crossing is where that noise turns negative, and summing to it
  overestimates (measured 1.4-2.4x). When the wanted radius does not fit, the result says so
  (``converged`` False): the image is not much larger than its structure and the SD is then a
  lower bound.
* The matrices are projected onto zero row sums (``P S P``, ``P = I - 11^T / n`` over the phases
  present) and negative eigenvalues clipped (rounding can leave tiny violations).

Several windows (sections, or volumes) count as independent: the pooled fraction's covariance is
about ``S / (total pixels)``: the total area counts, not the number of sections. Sections cut a few
correlation lengths apart from one volume are close to independent; sections cut closer are not,
and the SD is then optimistic.

The C_ij uncertainty per phase pair is measured, not modelled: the data are split into two
disjoint halves (:func:`napari_assb_twin.calibrate.noise.split_halves`, the calibration's own
split-half noise), and ``SD = RMS_r (C_A(r) - C_B(r)) / 2`` over directions and lags ``1..r_max``
(each half has sqrt(2) times the whole's noise, their difference sqrt(2) times that again). It is
reported absolute and relative to the pair's range ``|C_ij(0) - phi_i phi_j|``.

Pure NumPy / torch (through :mod:`~napari_assb_twin.stats.coverage`); no Qt, no napari.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from ..phases import PHASE_NAMES

__all__ = [
    "CONFIDENCE",
    "FRACTION_TARGET",
    "MIN_SIDE",
    "RADIUS_CAP",
    "TRUNCATION_LENGTHS",
    "InputRepresentativeness",
    "WindowStats",
    "coverage_split_sd",
    "IntegralEstimate",
    "integral_matrix",
    "window_stats",
]

#: Target half-width of the confidence interval of every phase fraction (absolute, fraction units).
FRACTION_TARGET: float = 0.01
#: Confidence of the reported intervals and of the target.
CONFIDENCE: float = 0.95
#: Largest radius (px) of the ball the autocovariance is summed over.
RADIUS_CAP: int = 64
#: Smallest side (px) of an image whose integral range is estimated: the autocovariance is followed
#: to a quarter of the side, and fewer than 4 lags cannot show whether it has decayed.
MIN_SIDE: int = 16
#: The summation radius is at most the smallest side over this: the ball then holds <= 20 % of the
#: window (pi/16 in 2D, 4 pi/81 in 3D), so the finite-size correction stays a correction.
_SIDE_DIVISOR: dict[int, int] = {2: 4, 3: 3}
#: The autocovariance is summed to this many times the longest 1/e length of the phases
#: (an exponential covariance keeps 4 % of its integral beyond in 2D, 12 % in 3D; a Gaussian-like one nothing).
TRUNCATION_LENGTHS: int = 5


#: A callable run between expensive steps; it raises to abandon the computation.
Check = Callable[[], None] | None


def _tick(check: Check) -> None:
    if check is not None:
        check()


def _z(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + 0.5 * float(confidence))


def _check_images(images: Sequence[np.ndarray], n_phases: int) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        images = [images]
    imgs = [np.asarray(im) for im in images]
    if not imgs:
        raise ValueError("no image given: representativeness needs at least one 2D section or 3D volume")
    ndims = {im.ndim for im in imgs}
    if len(ndims) > 1 or ndims - {2, 3}:
        raise ValueError(f"images must all be 2D sections or all 3D volumes, got shapes {[im.shape for im in imgs]}")
    for im in imgs:
        if im.dtype.kind not in "biu":
            raise TypeError(f"images must be integer phase maps (0..{n_phases - 1}), got {im.dtype}")
        if min(im.shape) < MIN_SIDE:
            raise ValueError(
                f"image {'x'.join(map(str, im.shape))} is too small to estimate how representative it is: need at least "
                f"{MIN_SIDE} px along every axis (its autocovariance is followed to a quarter of the smallest side)"
            )
    return imgs


@dataclass(frozen=True)
class IntegralEstimate:
    """What :func:`integral_matrix` measures (all in pixels / voxels).

    Attributes
    ----------
    integral : ndarray ``(P, P)``
        ``S_ij = sum_h (C_ij(h) - phi_i phi_j)`` (the large-window limit: ``cov = S / |W|``).
    covariance : ndarray ``(P, P)``
        Covariance of the pooled fraction estimates of exactly these windows:
        ``sum_k |W_k| sum_h K(h) prod_d (1 - |h_d| / n_kd) / (sum_k |W_k|)^2`` (pairs that fit in a
        window; smaller than ``S / |W|`` by a few % to 20 % for windows of 10-20 correlation lengths).
    fractions : ndarray ``(P,)``
        Pooled phase fractions.
    radius : int
        Truncation radius (px).
    converged : list of bool
        Per phase: its autocovariance reached zero within ``radius``.
    """

    integral: np.ndarray
    covariance: np.ndarray
    fractions: np.ndarray
    radius: int
    converged: list[bool]


def _ring_weights(shape: Sequence[int], radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per radial bin ``r <= radius`` of a window of ``shape``: the number of lattice shifts ``h``,
    the sum of the overlap fractions ``g(h) = prod_d (1 - |h_d| / n_d)`` (the weight of lag ``h`` in
    the variance of the window's mean) and the sum of ``1 / g(h)``."""
    from .coverage import radial_bins

    bins, n_ring = radial_bins(len(shape), radius)
    h = np.abs(np.arange(-radius, radius + 1, dtype=np.float64))
    overlap = np.ones(())
    for d, n in enumerate(shape):
        sh = [1] * len(shape)
        sh[d] = -1
        overlap = overlap * (1.0 - h / float(n)).reshape(sh)
    keep = bins >= 0
    over = np.broadcast_to(overlap, bins.shape)[keep]
    g = np.bincount(bins[keep], weights=over, minlength=radius + 1)
    inv = np.bincount(bins[keep], weights=1.0 / over, minlength=radius + 1)
    return n_ring.astype(np.float64), g, inv


def _local_covariance(stack: np.ndarray, n_phases: int, radius: int, check: Check = None) -> np.ndarray:
    """Ring means of ``C_ij(h) - t_i(h) s_j(h)`` for a stack of equal windows, averaged over them.

    ``t_i(h)`` / ``s_j(h)``: the fractions of phases i / j among the first / second points of the
    pairs the minus-sampling estimate uses at lag ``h`` (the package's
    :func:`~napari_assb_twin.stats.coverage.coverage` and its first-point fractions). Subtracting
    these local means instead of the window's fractions makes every row sum to zero at every lag
    (``sum_j C_ij(h) = t_i(h)``) and removes the sub-window's own fluctuation, which the window mean
    leaves in: summed over a 3D ball of 10^5 lags that fluctuation swamped the integral (measured on
    the 128^3 inpainter volume). Returns ``(P, P, radius + 1)``.
    """
    import torch

    from .coverage import _window_first_point, coverage, radial_bins

    # float64 where cheap; large volumes in float32 (half the memory and time)
    dtype = torch.float64 if stack[0].size <= 1 << 22 else torch.float32
    _tick(check)
    res = coverage(stack, radius, periodic=False, radial=True, n_phases=n_phases, dtype=dtype, batch=True,
                   phase_names=[f"p{i}" for i in range(n_phases)])
    nd = stack.ndim - 1
    lab = torch.from_numpy(np.ascontiguousarray(stack))
    x = torch.stack([lab == p for p in range(n_phases)], dim=1).to(dtype)
    _tick(check)
    t = _window_first_point(x, radius, periodic=False)  # (B, P, *window), lag h at index h + radius
    del x
    wdims = tuple(range(2, 2 + nd))
    second = torch.flip(t, wdims)  # s_j(h) = t_j(-h): the second points' box is the first points' box at -h
    bins, counts = radial_bins(nd, radius)
    bin_of = torch.as_tensor(np.where(bins < 0, radius + 1, bins).ravel())
    prod = torch.zeros(n_phases, n_phases, radius + 2, dtype=torch.float64)
    for i in range(n_phases):
        _tick(check)
        # (P, window) mean over the batch of t_i(h) s_j(h), one phase i at a time (memory)
        pij = (t[:, i : i + 1] * second).double().mean(0).reshape(n_phases, -1)
        prod[i] = torch.zeros(n_phases, radius + 2, dtype=torch.float64).index_add(1, bin_of, pij)
    local = prod[..., : radius + 1].numpy() / counts
    return res.radial - 0.5 * (local + local.transpose(1, 0, 2))


def integral_matrix(
    images: Sequence[np.ndarray], n_phases: int = 3, radius_cap: int = RADIUS_CAP, check: Check = None
) -> IntegralEstimate:
    """Integral matrix ``S`` and fraction covariance of images treated as independent windows.

    Parameters
    ----------
    images
        2D sections or 3D volumes (all the same dimension), integer labels ``0..n_phases-1``;
        sizes may differ.
    n_phases
        Number of phases.
    radius_cap
        Largest radius of the summation ball (also to a quarter of the smallest side in 2D, a third in 3D).
    check
        Called between the expensive steps (a few seconds apart at most on a 256^3 volume); it may
        raise to abandon the estimate (a dock's worker when napari closes).

    Returns
    -------
    IntegralEstimate
        Both matrices symmetric, rows summing to zero over the phases present, positive semi-definite.

    Raises
    ------
    ValueError
        No image, mixed dimensions, a side below :data:`MIN_SIDE`, labels out of range, or fewer
        than two phases present.

    Notes
    -----
    Per window of ``W`` pixels, ``K_hat(h) = C_hat_ij(h) - t_i(h) s_j(h)`` (local means, see
    :func:`_local_covariance`) has ``E[K_hat(h)] = K(h) - V W / W_h``: ``V`` the covariance of the
    window's fractions and ``W_h = g(h) W`` the number of pairs at lag ``h`` (a sub-window's mean
    varies as ``1 / W_h``). Summed over the ball of radius ``R`` (``N_R`` lags)::

        V = sum_h g(h) K_hat(h) / (W - N_R),        S = sum_h K_hat(h) + V sum_h 1 / g(h).

    Windows of one shape are averaged first; several shapes combine as independent windows
    (``V_pooled = sum_k W_k^2 V_k / (sum_k W_k)^2``, ``S`` size-weighted).
    """
    imgs = _check_images(images, n_phases)
    if any(int(im.max()) >= n_phases or int(im.min()) < 0 for im in imgs):
        raise ValueError(f"labels must lie in 0..{n_phases - 1} (one value per phase); map the segmentation first")
    counts = sum(np.bincount(im.ravel().astype(np.int64), minlength=n_phases)[:n_phases] for im in imgs)
    total = float(sum(im.size for im in imgs))
    phi = np.asarray(counts, dtype=np.float64) / total
    names = PHASE_NAMES if n_phases == len(PHASE_NAMES) else tuple(f"phase{i}" for i in range(n_phases))
    present = [names[i] for i in range(n_phases) if phi[i] > 0]
    if len(present) < 2:
        raise ValueError(
            f"only one phase present ({', '.join(present)}): a one-phase image has no fraction fluctuation to "
            "measure; check the label mapping, or choose an image that holds the phases"
        )
    radius = int(min(radius_cap, min(min(im.shape) for im in imgs) // _SIDE_DIVISOR[imgs[0].ndim]))
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for im in imgs:
        by_shape.setdefault(tuple(im.shape), []).append(im)
    groups = []  # per shape: (number of windows, window size, K (P, P, R+1), ring weights)
    for shape, group in by_shape.items():
        size = math.prod(shape)
        step = max(1, (1 << 22) // size)  # windows per batch: about 4 M pixels at a time
        k = np.zeros((n_phases, n_phases, radius + 1))
        for b in range(0, len(group), step):
            chunk = group[b : b + step]
            k += _local_covariance(np.stack(chunk), n_phases, radius, check) * len(chunk)
        groups.append((len(group), float(size), k / len(group), _ring_weights(shape, radius)))
    k_all = sum(n * size * k for n, size, k, _ in groups) / total  # size-weighted, for the 1/e lengths

    live = [i for i in range(n_phases) if 0 < phi[i] < 1]
    # truncation at a fixed multiple of the longest 1/e length, not at a zero crossing of the
    # estimate: its noise is smooth across lags (the window's own large-scale fluctuation), so the
    # first crossing is where that noise turns negative and summing to it overestimates (measured
    # 1.4-2.4x on 256 px windows of simulated fields; TRUNCATION_LENGTHS x 1/e: within 0.8-1.2x)
    lengths = []
    for i in live:
        below = np.flatnonzero(k_all[i, i] < k_all[i, i, 0] / math.e)
        lengths.append(int(below[0]) if below.size else radius + 1)
    r = int(min(radius, TRUNCATION_LENGTHS * max(lengths)))
    converged = [bool(TRUNCATION_LENGTHS * lengths[live.index(i)] <= radius) if i in live else True
                 for i in range(n_phases)]
    v_pooled = np.zeros((n_phases, n_phases))
    s_pooled = np.zeros((n_phases, n_phases))
    for n, size, k, (n_ring, g, inv) in groups:
        v = (k[..., : r + 1] * g[: r + 1]).sum(-1) / (size - n_ring[: r + 1].sum())
        s_k = (k[..., : r + 1] * n_ring[: r + 1]).sum(-1) + v * inv[: r + 1].sum()
        v_pooled += n * size**2 * v / total**2
        s_pooled += n * size * s_k / total
    return IntegralEstimate(_projected(s_pooled, live), _projected(v_pooled, live), phi, r, converged)


def _projected(m: np.ndarray, live: list[int]) -> np.ndarray:
    """Symmetric, zero row sums over the phases present (an absent phase keeps a zero row and
    column), negative eigenvalues clipped: rounding and the common truncation can leave tiny violations."""
    n = m.shape[0]
    proj = np.zeros((n, n))
    proj[np.ix_(live, live)] = np.eye(len(live)) - 1.0 / len(live)
    m = proj @ (0.5 * (m + m.T)) @ proj
    w, vec = np.linalg.eigh(m)
    return (vec * np.clip(w, 0.0, None)) @ vec.T


def coverage_split_sd(
    half_a: Sequence[np.ndarray], half_b: Sequence[np.ndarray], r_max: int, n_phases: int = 3, check: Check = None
) -> np.ndarray:
    """Sampling SD of the pooled directional C_ij per phase pair, from two disjoint halves of the data.

    ``SD_ij = RMS over directions and lags 1..r_max of (C_A - C_B) / 2`` (see the module notes).
    Each half's C_ij is pooled over its images, weighted by their pixel counts.

    Returns
    -------
    ndarray ``(n_phases, n_phases)``, symmetric.
    """
    from .coverage import coverage

    def pooled(images: Sequence[np.ndarray]) -> np.ndarray:
        acc, tot = 0.0, 0.0
        for im in images:
            _tick(check)
            res = coverage(np.asarray(im), int(r_max), periodic=False, radial=False, n_phases=n_phases,
                           phase_names=[f"p{i}" for i in range(n_phases)])
            acc = acc + res.directional * im.size
            tot += im.size
        return acc / tot

    diff = pooled(half_a) - pooled(half_b)  # (ndim, P, P, R+1)
    return np.sqrt(np.mean(diff[..., 1:] ** 2, axis=(0, 3))) / 2.0


@dataclass
class WindowStats:
    """Representativeness of one group of windows: sections taken jointly, or one volume.

    Attributes
    ----------
    label : str
        What the group is, in words (``4 sections 253x253``, ``1 volume 128x128x128``).
    ndim : int
        2 (areas) or 3 (volumes).
    shapes : list of tuple
        Each window's shape (px).
    estimate : IntegralEstimate
        Integral matrix, fraction covariance, fractions, truncation radius (:func:`integral_matrix`).
    pixel_size, unit : float, str
        Pixel size and unit for physical areas / volumes.
    phase_names : tuple of str
        Names of the phases (or of a coarse volume's groups).
    coverage_sd : ndarray ``(P, P)`` or None
        Split-half SD of the directional C_ij per pair (None: not estimated, e.g. too little data to split).
    r_max : int or None
        Largest lag of ``coverage_sd``.
    """

    label: str
    ndim: int
    shapes: list[tuple[int, ...]]
    estimate: IntegralEstimate
    pixel_size: float = 1.0
    unit: str = "px"
    phase_names: tuple[str, ...] = PHASE_NAMES
    coverage_sd: np.ndarray | None = None
    r_max: int | None = None

    # -- derived ---------------------------------------------------------------------------------
    @property
    def pixels(self) -> float:
        """Total pixels (voxels) of the group."""
        return float(sum(math.prod(s) for s in self.shapes))

    @property
    def fractions(self) -> np.ndarray:
        return self.estimate.fractions

    @property
    def covariance(self) -> np.ndarray:
        """Covariance matrix of the pooled fraction estimates (rows sum to zero)."""
        return self.estimate.covariance

    @property
    def sd(self) -> np.ndarray:
        """Standard deviation of each phase fraction."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    @property
    def integral_range(self) -> np.ndarray:
        """Integral range ``A_i = S_ii / (phi_i (1 - phi_i))`` per phase, in ``unit^ndim`` (nan for an absent phase)."""
        phi = self.fractions
        var1 = phi * (1.0 - phi)
        a = np.full(phi.shape, np.nan)
        ok = var1 > 0
        a[ok] = np.diag(self.estimate.integral)[ok] / var1[ok]
        return a * self.pixel_size**self.ndim

    def needed_ratio(self, target: float = FRACTION_TARGET, confidence: float = CONFIDENCE) -> float:
        """How many times the given data (more windows like these) ``+-target`` on every fraction needs:
        ``(z SD / target)^2`` of the widest phase (below 1: already enough)."""
        if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
            raise ValueError(f"target must be a positive fraction, got {target!r}")
        return float((_z(confidence) * np.max(self.sd) / target) ** 2)

    def needed_pixels(self, target: float = FRACTION_TARGET, confidence: float = CONFIDENCE) -> float:
        """Pixels (voxels) of one large window for ``+-target`` at ``confidence``: ``z^2 max S_ii / target^2``
        (the large-window limit, which scales as ``1 / target^2``)."""
        self.needed_ratio(target, confidence)  # checks the target
        return float(_z(confidence) ** 2 * np.max(np.diag(self.estimate.integral)) / target**2)

    @property
    def coverage_range(self) -> np.ndarray:
        """``|C_ij(0) - phi_i phi_j|`` per pair: the size of each C_ij curve's variation."""
        phi = self.fractions
        return np.abs(np.diag(phi) - np.outer(phi, phi))

    # -- text ------------------------------------------------------------------------------------
    def _area_unit(self) -> str:
        if self.unit != "px":
            return f"{self.unit}^{self.ndim}"
        return "px^2" if self.ndim == 2 else "voxels"

    def need_text(self, target: float = FRACTION_TARGET, confidence: float = CONFIDENCE) -> str:
        """How much data ``+-target`` needs, in this group's terms (sections of its size, or a cube side)."""
        ratio = self.needed_ratio(target, confidence)
        head = f"+-{target:g} needs {ratio:.2g}x the data given ({'enough' if ratio <= 1 else 'not enough'}"
        if self.ndim == 2:
            n = max(1, math.ceil(ratio * len(self.shapes)))
            mean_side = math.sqrt(self.pixels / len(self.shapes))
            area = n * self.pixels / len(self.shapes) * self.pixel_size**2
            return head + f": {n} section(s) of about {mean_side:.0f}^2 px, {_g(area)} {self._area_unit()})"
        side = self.needed_pixels(target, confidence) ** (1 / 3)
        phys = f", {_g(side * self.pixel_size)} {self.unit}" if self.unit != "px" else ""
        return head + f": one cube of {side:.0f} voxels side{phys})"

    def lines(self, target: float = FRACTION_TARGET, confidence: float = CONFIDENCE) -> list[str]:
        """A few lines of human text (fractions with their intervals, integral ranges, what is needed, C_ij SD)."""
        z = _z(confidence)
        names = self.phase_names
        fr = ", ".join(f"{n} {p:.3f} +-{z * s:.3f}" for n, p, s in zip(names, self.fractions, self.sd))
        ir = " / ".join(_g(a) for a in self.integral_range)
        out = [f"{self.label}: {fr}",
               f"    integral range {ir} {self._area_unit()} (summed to r = {self.estimate.radius} px); "
               + self.need_text(target, confidence)]
        late = [n for n, c in zip(names, self.estimate.converged) if not c]
        if late:
            out.append(f"    note: {', '.join(late)}: the image is too small to sum the autocovariance to "
                       f"{TRUNCATION_LENGTHS}x its 1/e length (only to {self.estimate.radius} px): these SDs are lower bounds")
        if self.coverage_sd is not None:
            rng = self.coverage_range
            rel = np.where(rng > 0, self.coverage_sd / np.where(rng > 0, rng, 1.0), np.nan)
            iu = np.triu_indices(len(names))
            worst = int(np.nanargmax(rel[iu]))
            i, j = iu[0][worst], iu[1][worst]
            rms = float(np.sqrt(np.mean(self.coverage_sd[iu] ** 2)))
            out.append(f"    C_ij sampling SD (split halves, r 1..{self.r_max} px): {rms:.4f} RMS over pairs; "
                       f"largest relative {names[i]}-{names[j]} {self.coverage_sd[i, j]:.4f} "
                       f"({rel[i, j]:.1%} of its range)")
        return out

    def to_dict(self, target: float = FRACTION_TARGET, confidence: float = CONFIDENCE) -> dict[str, Any]:
        """JSON-ready record (model-file provenance)."""
        z = _z(confidence)
        d: dict[str, Any] = {
            "label": self.label,
            "ndim": self.ndim,
            "shapes": [list(s) for s in self.shapes],
            "pixels": self.pixels,
            "phases": list(self.phase_names),
            "fractions": _floats(self.fractions),
            "fraction_sd": _floats(self.sd),
            "fraction_half_width": _floats(z * self.sd),
            "fraction_covariance": [_floats(row) for row in self.covariance],
            "integral_range": _floats(self.integral_range),
            "integral_range_unit": self._area_unit(),
            "radius_px": int(self.estimate.radius),
            "converged": [bool(c) for c in self.estimate.converged],
            "needed_ratio": self.needed_ratio(target, confidence),
            "needed_pixels_one_window": self.needed_pixels(target, confidence),
        }
        if self.coverage_sd is not None:
            iu = np.triu_indices(len(self.phase_names))
            rng = self.coverage_range
            d["coverage_r_max"] = int(self.r_max) if self.r_max is not None else None
            d["coverage_sd"] = {f"{self.phase_names[i]}-{self.phase_names[j]}": float(self.coverage_sd[i, j])
                                for i, j in zip(*iu)}
            d["coverage_sd_relative"] = {
                f"{self.phase_names[i]}-{self.phase_names[j]}": (
                    float(self.coverage_sd[i, j] / rng[i, j]) if rng[i, j] > 0 else None)
                for i, j in zip(*iu)}
        return d


def window_stats(
    images: Sequence[np.ndarray],
    label: str | None = None,
    *,
    pixel_size: float = 1.0,
    unit: str = "px",
    n_phases: int = 3,
    phase_names: Sequence[str] | None = None,
    halves: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    r_max: int | None = None,
    radius_cap: int = RADIUS_CAP,
    check: Check = None,
) -> WindowStats:
    """:class:`WindowStats` of images taken as independent windows of one material.

    ``halves`` (two disjoint halves of the same data) and ``r_max`` give the C_ij sampling SD
    (:func:`coverage_split_sd`); without them it is left out. ``check``: see :func:`integral_matrix`.
    """
    imgs = _check_images(images, n_phases)
    est = integral_matrix(imgs, n_phases, radius_cap, check)
    names = tuple(phase_names) if phase_names is not None else (
        PHASE_NAMES if n_phases == len(PHASE_NAMES) else tuple(f"phase{i}" for i in range(n_phases)))
    csd = None
    if halves is not None and r_max is not None:
        csd = coverage_split_sd(halves[0], halves[1], int(r_max), n_phases, check)
    return WindowStats(label=label or _describe(imgs), ndim=imgs[0].ndim, shapes=[tuple(im.shape) for im in imgs],
                       estimate=est, pixel_size=float(pixel_size), unit=str(unit or "px"), phase_names=names,
                       coverage_sd=csd, r_max=None if csd is None else int(r_max))


def _describe(imgs: Sequence[np.ndarray]) -> str:
    shapes = sorted({"x".join(map(str, im.shape)) for im in imgs})
    kind = "section" if imgs[0].ndim == 2 else "volume"
    return f"{len(imgs)} {kind}{'s' if len(imgs) > 1 else ''} {', '.join(shapes)}"


@dataclass
class InputRepresentativeness:
    """Representativeness of everything a calibration was given: one :class:`WindowStats` per group
    (the 2D sections jointly, each 3D volume, a coarse volume) and the pooled fractions of the fine data.

    ``lines()`` is the short text the CLI prints and the dock shows; ``to_dict()`` goes into the
    model file's provenance (``representativeness``).
    """

    groups: list[WindowStats]
    target: float = FRACTION_TARGET
    confidence: float = CONFIDENCE
    #: Indices of the groups pooled into the calibration's volume fractions (the fine data).
    pooled: list[int] = field(default_factory=list)

    def pooled_sd(self) -> np.ndarray | None:
        """SD of the pixel-weighted fractions over the pooled groups (independent groups:
        ``var = sum_k n_k^2 V_k / N^2``), or None with fewer than two pooled groups."""
        if len(self.pooled) < 2:
            return None
        gs = [self.groups[k] for k in self.pooled]
        n = sum(g.pixels for g in gs)
        var = sum(np.diag(g.covariance) * g.pixels**2 for g in gs) / n**2
        return np.sqrt(np.clip(var, 0.0, None))

    def lines(self) -> list[str]:
        """Short human text: a heading, then each group's lines."""
        out = [f"representativeness of the input ({self.confidence:.0%} intervals of the phase fractions; "
               f"target +-{self.target:g}):"]
        for g in self.groups:
            out += ["  " + ln for ln in g.lines(self.target, self.confidence)]
        sd = self.pooled_sd()
        if sd is not None:
            g0 = self.groups[self.pooled[0]]
            n = sum(self.groups[k].pixels for k in self.pooled)
            phi = sum(self.groups[k].fractions * self.groups[k].pixels for k in self.pooled) / n
            z = _z(self.confidence)
            out.append("  all fine data pooled: " + ", ".join(
                f"{nm} {p:.3f} +-{z * s:.3f}" for nm, p, s in zip(g0.phase_names, phi, sd)))
        return out

    def summary(self) -> str:
        """One line for a status bar: the widest interval and whether the target is met."""
        worst = max(self.groups, key=lambda g: float(np.max(g.sd)))
        z = _z(self.confidence)
        i = int(np.argmax(worst.sd))
        ratio = max(g.needed_ratio(self.target, self.confidence) for g in self.groups)
        verdict = (f"meets +-{self.target:g}" if ratio <= 1
                   else f"+-{self.target:g} needs {ratio:.2g}x more data")
        return (f"Input: {worst.phase_names[i]} fraction {worst.fractions[i]:.3f} +-{z * worst.sd[i]:.3f} "
                f"({self.confidence:.0%}, {worst.label}); {verdict}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the model file's provenance."""
        d: dict[str, Any] = {"target": self.target, "confidence": self.confidence,
                             "groups": [g.to_dict(self.target, self.confidence) for g in self.groups]}
        sd = self.pooled_sd()
        if sd is not None:
            d["pooled_fraction_sd"] = _floats(sd)
        return d


def _floats(a: Any) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in np.asarray(a, dtype=np.float64).ravel()]


def _g(x: float) -> str:
    """A compact number: 3 significant digits, no exponent for everyday sizes."""
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1e5 or (abs(x) < 1e-2 and x != 0):
        return f"{x:.3g}"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
