"""Two-point coverage probability functions C_ij of multi-phase images (METHOD.md section 5).

``C_ij(h) = P(x in phase i and x + h in phase j)``. Properties used by the tests and by calibration:
``C_ii(0) = v_i``, ``C_ij(h) -> v_i v_j`` for large ``|h|``, ``sum_j C_ij(h) = v_i`` (exact for the
periodic estimator) and ``C_ij(h) = C_ji(-h)``.

Two estimators, both FFT based, batched, 2D or 3D, on any torch device and differentiable with
respect to the (soft) indicator images, so :func:`coverage_onehot` can serve as a calibration loss:

* periodic (simulated volumes on a periodic grid): circular cross-correlation / number of voxels;
* non-periodic (measured images): zero-padded cross-correlation divided by the number of voxel
  pairs of the window with its shifted copy, ``prod_d (n_d - |h_d|)`` (minus-sampling: only pairs
  whose both points lie inside the window are used, so there is no edge bias).

Outputs are directional profiles along every array axis (``r e_d`` and ``-r e_d`` averaged, which
makes them symmetric in ``i, j``) and a radial average over all lattice shifts ``h`` with
``round(|h|) == r`` and ``|h_d| <= r_max``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from napari_assb_twin.phases import PHASE_NAMES

__all__ = ["CoverageResult", "coverage", "coverage_onehot", "radial_bins"]

CSV_COLUMNS = ("direction", "r_px", "distance", "phase_i", "phase_j", "value")
#: Per-file metadata repeated on every row after :data:`CSV_COLUMNS`.
CSV_META_COLUMNS = ("unit", "voxel_size", "estimator")


# --------------------------------------------------------------------------------------------
# core estimator
# --------------------------------------------------------------------------------------------
def _fast_len(n: int) -> int:
    """Smallest 2-3-5-smooth integer >= n (FFT sizes that every backend handles fast)."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _check_r_max(spatial: Sequence[int], r_max: int, periodic: bool) -> int:
    if isinstance(r_max, bool) or not isinstance(r_max, (int, np.integer)):
        raise TypeError(f"r_max must be an integer number of pixels, got {type(r_max).__name__}")
    r_max = int(r_max)
    if r_max < 0:
        raise ValueError(f"r_max must be >= 0, got {r_max}")
    for d, n in enumerate(spatial):
        if periodic and r_max > n // 2:
            raise ValueError(
                f"r_max={r_max} is too large for a periodic image with {n} px along axis {d}: "
                f"periodic shifts beyond n//2 = {n // 2} repeat; use r_max <= {min(s // 2 for s in spatial)}"
            )
        if not periodic and r_max >= n:
            raise ValueError(
                f"r_max={r_max} is too large for an image with {n} px along axis {d}: no pair of pixels "
                f"that far apart fits; use r_max <= {min(spatial) - 1}"
            )
    return r_max


def radial_bins(ndim: int, r_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Radial bin of every lattice shift of the window ``[-r_max, r_max]^ndim``.

    Returns
    -------
    bins : ndarray of int64, shape ``(2 r_max + 1,) * ndim``
        ``round(|h|)`` for each shift, or ``-1`` where it exceeds ``r_max``.
    counts : ndarray of int64, shape ``(r_max + 1,)``
        Number of shifts per bin (never zero: the axis shifts are always there).
    """
    h = np.arange(-r_max, r_max + 1)
    grids = np.meshgrid(*([h] * ndim), indexing="ij")
    dist = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))
    # |h| is the square root of an integer, never exactly k + 1/2, so floor(x + 0.5) has no ties
    bins = np.floor(dist + 0.5).astype(np.int64)
    bins[bins > r_max] = -1
    counts = np.bincount(bins[bins >= 0].ravel(), minlength=r_max + 1)
    return bins, counts


def _pair_index(n_phases: int) -> tuple[list[int], list[int]]:
    ii, jj = np.triu_indices(n_phases)
    return ii.tolist(), jj.tolist()


def _take_shifts(t: torch.Tensor, dim: int, r_max: int) -> torch.Tensor:
    """Shifts ``-r_max..r_max`` of a circular correlation along ``dim``, in that order.

    Two contiguous slices instead of ``index_select``, which is slow on CPU for a large tensor
    along a non-last dimension (measured 40 % of the radial estimator's time).
    """
    length = t.shape[dim]
    if r_max == 0:
        return t.narrow(dim, 0, 1)
    return torch.cat([t.narrow(dim, length - r_max, r_max), t.narrow(dim, 0, r_max + 1)], dim=dim)


def _overlap_counts(spatial: Sequence[int], r_max: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``prod_d (n_d - |h_d|)`` on the window ``[-r_max, r_max]^ndim`` (minus-sampling denominator)."""
    h = torch.arange(-r_max, r_max + 1, device=device, dtype=dtype).abs()
    out = torch.ones((), dtype=dtype, device=device)
    for d, n in enumerate(spatial):
        shape = [1] * len(spatial)
        shape[d] = -1
        out = out * (n - h).reshape(shape)
    return out


def _window_correlation(x: torch.Tensor, r_max: int, periodic: bool) -> torch.Tensor:
    """Cross-correlations of all unordered channel pairs on the shift window, as probabilities.

    Returns ``(B, n_pairs, 2r+1, ..., 2r+1)`` with ``[b, k, h] = C_{i_k j_k}(h)`` for the pairs of
    :func:`_pair_index`; shift ``h`` sits at index ``h + r_max`` along each axis.
    """
    spatial = tuple(x.shape[2:])
    nd = len(spatial)
    dims = tuple(range(2, 2 + nd))
    # zero padding by r_max is enough: the circular correlation of length >= n + r_max does not
    # alias the linear one for |h| <= r_max; rounding up to a smooth length only speeds the FFT.
    lengths = spatial if periodic else tuple(_fast_len(n + r_max) for n in spatial)
    spec = torch.fft.rfftn(x, s=lengths, dim=dims)  # one forward transform per channel, reused
    ii, jj = _pair_index(x.shape[1])
    # conj(F_i) F_j  ->  sum_x x_i(x) x_j(x + h); per pair, without advanced-indexing copies
    corr = torch.stack([spec[:, i].conj() * spec[:, j] for i, j in zip(ii, jj)], dim=1)
    del spec
    # inverse transform axis by axis, keeping only the 2r+1 needed shifts after each axis: cheaper
    # than a full irfftn followed by cropping (c2c axes first, the c2r half-spectrum axis last)
    for d in range(nd - 1):
        corr = _take_shifts(torch.fft.ifft(corr, dim=2 + d), 2 + d, r_max)
    corr = _take_shifts(torch.fft.irfft(corr, n=lengths[-1], dim=1 + nd), 1 + nd, r_max)
    if periodic:
        return corr / float(math.prod(spatial))
    return corr / _overlap_counts(spatial, r_max, corr.dtype, x.device)


def _window_first_point(x: torch.Tensor, r_max: int, periodic: bool) -> torch.Tensor:
    """``t_i(h)``: fraction of the valid pairs ``(x, x + h)`` whose first point is in phase i.

    Periodic: the volume fraction. Non-periodic: the mean of ``x_i`` over the box of points ``x``
    with ``x + h`` inside the window. Along each axis the box is the full range minus the first
    ``-h_d`` (h_d < 0) or the last ``h_d`` (h_d > 0) slices, so only ``2 r_max`` slices per axis
    need cumulative sums (float64: exact counts beyond 2^24 voxels). Returns ``(B, Q, 2r+1, ...)``.
    """
    spatial = tuple(x.shape[2:])
    nd = len(spatial)
    if periodic:
        t = x.mean(dim=tuple(range(2, 2 + nd)))
        return t.reshape(*t.shape, *([1] * nd)).expand(*t.shape, *([2 * r_max + 1] * nd))
    # first axis in the input precision (sums of at most n_0 values: exact for one-hot input), then
    # float64 on the already reduced array (later sums reach the voxel count, beyond 2^24)
    s = _window_box_sums(x, 2, r_max).double()
    for d in range(1, nd):
        s = _window_box_sums(s, 2 + d, r_max)
    return (s / _overlap_counts(spatial, r_max, torch.float64, x.device)).to(x.dtype)


def _window_box_sums(s: torch.Tensor, dim: int, r_max: int) -> torch.Tensor:
    """Sums along ``dim`` over the index range ``[max(0, -h), n - max(0, h))`` for ``h = -r..r``."""
    total = s.sum(dim, keepdim=True)
    if r_max == 0:
        return total
    n = s.shape[dim]
    head = torch.cumsum(s.narrow(dim, 0, r_max), dim)  # sums of the first 1..r slices
    tail = torch.cumsum(s.narrow(dim, n - r_max, r_max).flip(dim), dim)  # of the last 1..r slices
    return torch.cat([total - head.flip(dim), total, total - tail], dim=dim)


def _complete_window(pairs: torch.Tensor, P: int, t: torch.Tensor | None) -> torch.Tensor:
    """Full ``(B, P, P, *window)`` matrix from unordered-pair windows.

    ``C_ji(h) = C_ij(-h)`` (window flip). With ``t`` (partition of unity, only the first ``P - 1``
    channels correlated) the last phase follows from ``sum_j x_j = 1``:
    ``C_iL(h) = t_i(h) - sum_{j<L} C_ij(h)`` and ``C_LL(h) = 1 - sum_i t_i(h) - sum_{j<L} C_jL(-h)``.
    """
    nd = pairs.ndim - 2
    wdims = tuple(range(-nd, 0))
    Q = P - 1 if t is not None else P
    ii, jj = _pair_index(Q)
    C: list[list[torch.Tensor | None]] = [[None] * P for _ in range(P)]
    for k, (i, j) in enumerate(zip(ii, jj)):
        C[i][j] = pairs[:, k]
        if i != j:
            C[j][i] = torch.flip(pairs[:, k], wdims)
    if t is not None:
        L = P - 1
        for i in range(L):
            C[i][L] = t[:, i] - sum(C[i][j] for j in range(L))  # type: ignore[misc]
            C[L][i] = torch.flip(C[i][L], wdims)  # type: ignore[arg-type]
        C[L][L] = 1.0 - t.sum(1) - sum(C[L][j] for j in range(L))  # type: ignore[misc]
    return torch.stack([torch.stack(row, 1) for row in C], 1)  # type: ignore[arg-type]


def _directional_1d(xs: torch.Tensor, P: int, r_max: int, periodic: bool, partition: bool) -> torch.Tensor:
    """Directional profiles from 1D FFTs along each axis (no nD transform needed).

    ``xs`` holds the correlated channels (``P - 1`` with ``partition``, else ``P``).
    Returns ``(B, ndim, P, P, r_max + 1)``.
    """
    B, Q = xs.shape[:2]
    spatial = tuple(xs.shape[2:])
    nd = len(spatial)
    n_total = math.prod(spatial)
    dev = xs.device
    r = torch.arange(r_max + 1, device=dev)
    ii, jj = _pair_index(Q)
    out = []
    for d, n in enumerate(spatial):
        length = n if periodic else _fast_len(n + r_max)
        # transform along the native axis: measured faster on CPU than transposing to the last
        # axis or forming a complex batched matmul (both copy the large spectrum)
        spec = torch.fft.rfft(xs, n=length, dim=2 + d)
        others = tuple(k for k in range(1, 1 + nd) if k != 1 + d)  # spatial dims of spec[:, i]
        grams = []
        for i, j in zip(ii, jj):
            a = spec[:, i]
            if i == j:
                # |F|^2 on the contiguous (re, im) view: one real pass (complex vector_norm and
                # .real/.imag strided views were measured 2-6x slower on CPU)
                grams.append(torch.view_as_real(a).square().sum(others + (-1,)).to(spec.dtype))
            else:
                grams.append((a.conj() * spec[:, j]).sum(others))
        del spec
        corr = torch.fft.irfft(torch.stack(grams, 1), n=length, dim=2)  # (B, npairs, length)
        if periodic:
            denom = torch.full((r_max + 1,), float(n_total), dtype=corr.dtype, device=dev)
        else:
            denom = (n - r).to(corr.dtype) * (n_total // n)
        denom = torch.cat([denom.flip(0), denom[1:]])  # shifts -r..r
        # window of shifts -r..r along this axis, normalised like the nD path
        win = _take_shifts(corr, 2, r_max) / denom
        t = None
        if partition:
            if periodic:
                t = xs.mean(dim=tuple(range(2, 2 + nd)))[:, :, None].expand(B, Q, 2 * r_max + 1)
            else:
                # slab sums in the input precision (exact for one-hot slabs below 2^24 pixels;
                # sum(dtype=float64) would first copy the whole volume), running sums in float64
                slab = xs.sum(dim=tuple(k for k in range(2, 2 + nd) if k != 2 + d)).double()
                t = (_window_box_sums(slab, 2, r_max) / denom.double()).to(xs.dtype)
        full = _complete_window(win, P, t)  # (B, P, P, 2r+1)
        prof = 0.5 * (full.index_select(3, r_max + r) + full.index_select(3, r_max - r))
        out.append(0.5 * (prof + prof.transpose(1, 2)))  # exact symmetry despite rounding
    return torch.stack(out, dim=1)


def coverage_onehot(
    x: torch.Tensor, r_max: int, periodic: bool, radial: bool = True, partition: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two-point coverage functions of one-hot (or soft) indicator images, differentiable.

    Parameters
    ----------
    x : Tensor, shape ``(B, P, *spatial)``
        Indicator of each phase (one-hot, or soft probabilities for calibration); 2 or 3 spatial
        axes; floating dtype (float32 usually, float64 for tests). Any device.
    r_max : int
        Largest shift in pixels. Non-periodic: ``r_max < n_d``; periodic: ``r_max <= n_d // 2``.
    periodic : bool
        Circular correlation (periodic simulated grids) or minus-sampling (measured windows).
    radial : bool
        Also compute the radial average (needs the nD correlation on the shift window; without
        it only 1D transforms along each axis are done, several times cheaper).
    partition : bool
        Promise that ``x`` sums to 1 over phases at every pixel (one-hot or probabilities): then
        only ``P - 1`` channels are transformed and the last phase's functions follow exactly
        from ``sum_j C_ij(h) = t_i(h)`` (about 1.5-2x faster). Wrong results if the promise fails.

    Returns
    -------
    directional : Tensor ``(B, ndim, P, P, r_max + 1)``
        ``0.5 (C_ij(r e_d) + C_ij(-r e_d))`` (symmetric in ``i, j``).
    radial : Tensor ``(B, P, P, r_max + 1)`` or None
        Mean of ``C_ij(h)`` over lattice shifts with ``round(|h|) == r`` and ``|h_d| <= r_max``.

    Raises
    ------
    TypeError, ValueError
        For a non-tensor / non-floating input, a wrong number of axes or a too large ``r_max``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, P, *spatial), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating indicator tensor (one-hot or probabilities), got {x.dtype}; "
            "for integer label images use coverage()"
        )
    if x.ndim not in (4, 5):
        raise ValueError(
            f"x must have shape (B, P, *spatial) with 2 or 3 spatial axes, got shape {tuple(x.shape)}"
        )
    if min(x.shape) == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)})")
    r_max = _check_r_max(tuple(x.shape[2:]), r_max, periodic)
    P = x.shape[1]
    partition = bool(partition) and P > 1
    return _coverage_core(x[:, : P - 1] if partition else x, P, r_max, periodic, radial, partition)


def _coverage_core(
    xs: torch.Tensor, P: int, r_max: int, periodic: bool, radial: bool, partition: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`coverage_onehot` on validated input; ``xs`` holds only the correlated channels."""
    if not radial:
        return _directional_1d(xs, P, r_max, periodic, partition), None
    B = xs.shape[0]
    nd = xs.ndim - 2
    pairs = _window_correlation(xs, r_max, periodic)  # (B, npairs, *window)
    t = _window_first_point(xs, r_max, periodic) if partition else None
    full = _complete_window(pairs, P, t)  # (B, P, P, *window)
    del pairs, t

    # directional lines through the window centre, +r and -r averaged
    c = r_max
    r = torch.arange(r_max + 1, device=xs.device)
    lines = []
    for d in range(nd):
        idx: list[Any] = [slice(None)] * 3 + [c] * nd
        idx[3 + d] = slice(None)
        line = full[tuple(idx)]  # (B, P, P, 2r+1)
        lines.append(0.5 * (line.index_select(3, c + r) + line.index_select(3, c - r)))
    directional = torch.stack(lines, dim=1)
    # symmetric in exact arithmetic; symmetrise so that rounding (different summation orders of
    # C_ij and its flipped C_ji) cannot make the two triangles differ in the last bit
    directional = 0.5 * (directional + directional.transpose(2, 3))

    bins, counts = radial_bins(nd, r_max)
    # shifts beyond r_max go to an overflow bin that is dropped (cheaper than selecting them out)
    bin_of = torch.as_tensor(np.where(bins < 0, r_max + 1, bins).ravel(), device=xs.device)
    sums = torch.zeros(B, P, P, r_max + 2, dtype=full.dtype, device=xs.device)
    sums = sums.index_add(3, bin_of, full.reshape(B, P, P, -1))[..., : r_max + 1]
    # the bin set is symmetric under h -> -h, so the radial matrix is symmetric like the directional
    rad = sums / torch.as_tensor(counts, dtype=full.dtype, device=xs.device)
    rad = 0.5 * (rad + rad.transpose(1, 2))
    return directional, rad


# --------------------------------------------------------------------------------------------
# user-facing API
# --------------------------------------------------------------------------------------------
@dataclass
class CoverageResult:
    """Two-point coverage functions of a label image (or the mean over a batch of them).

    Attributes
    ----------
    directional : ndarray float64, shape ``(ndim, P, P, R + 1)``
        ``C_ij(r e_d)`` along each array axis ``d`` (both signs averaged).
    radial : ndarray float64, shape ``(P, P, R + 1)``, or None
        Radial average (``round(|h|) == r``).
    r_px : ndarray int64, shape ``(R + 1,)``
        Distances ``0..r_max`` in pixels.
    voxel_size : float
        Physical size of one pixel, so that ``distance = r_px * voxel_size``.
    unit : str
        Unit of :attr:`distance` (``"px"`` when uncalibrated).
    volume_fractions : ndarray float64, shape ``(P,)``
        Phase fractions of the image(s) (equal to ``C_ii(0)``).
    phase_names : tuple of str
        Name of each phase, used in tables and CSV files.
    periodic : bool
        Which estimator produced the values.
    """

    directional: np.ndarray
    radial: np.ndarray | None
    r_px: np.ndarray
    voxel_size: float = 1.0
    unit: str = "px"
    volume_fractions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phase_names: tuple[str, ...] = PHASE_NAMES
    periodic: bool = False

    @property
    def ndim(self) -> int:
        """Number of spatial axes of the image(s) the functions were measured on."""
        return int(self.directional.shape[0])

    @property
    def n_phases(self) -> int:
        return int(self.directional.shape[1])

    @property
    def r_max(self) -> int:
        return int(self.r_px[-1])

    @property
    def distance(self) -> np.ndarray:
        """Distances in physical units (``r_px * voxel_size``)."""
        return self.r_px * float(self.voxel_size)

    def pairs(self) -> list[tuple[int, int]]:
        """Unordered phase pairs ``(i, j)`` with ``i <= j`` (6 for three phases)."""
        ii, jj = _pair_index(self.n_phases)
        return list(zip(ii, jj))

    def rows(self) -> list[dict[str, Any]]:
        """Long-format records with keys :data:`CSV_COLUMNS` (one per direction, r, pair)."""
        out: list[dict[str, Any]] = []
        blocks: list[tuple[int | str, np.ndarray]] = [(d, self.directional[d]) for d in range(self.ndim)]
        if self.radial is not None:
            blocks.append(("radial", self.radial))
        dist = self.distance
        for direction, mat in blocks:
            for i, j in self.pairs():
                for k, r in enumerate(self.r_px):
                    out.append(
                        {
                            "direction": direction,
                            "r_px": int(r),
                            "distance": float(dist[k]),
                            "phase_i": self.phase_names[i],
                            "phase_j": self.phase_names[j],
                            "value": float(mat[i, j, k]),
                        }
                    )
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` as a plain CSV (any spreadsheet or ``pandas.read_csv`` reads it).

        Columns: :data:`CSV_COLUMNS`, then the same ``unit``, ``voxel_size`` and ``estimator``
        (``minus-sampling`` or ``periodic``) on every row, so the file describes itself. Read it
        back with :meth:`read_csv`. Written atomically (:mod:`napari_assb_twin.io.atomic`).
        """
        from ..io.atomic import atomic_open

        path = Path(path)
        extra = {"unit": self.unit, "voxel_size": repr(float(self.voxel_size)),
                 "estimator": "periodic" if self.periodic else "minus-sampling"}
        with atomic_open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS) + list(CSV_META_COLUMNS))
            writer.writeheader()
            for row in self.rows():
                writer.writerow(dict(row, distance=repr(row["distance"]), value=repr(row["value"]), **extra))
        return path

    @classmethod
    def read_csv(cls, path: str | Path) -> "CoverageResult":
        """Read a file written by :meth:`to_csv` (also the older layout with a ``#`` metadata line,
        and tables of other tools that have at least :data:`CSV_COLUMNS`).

        Raises
        ------
        ValueError
            If the file lacks the expected columns or does not hold a complete table.
        """
        path = Path(path)
        meta: dict[str, str] = {}
        with path.open(newline="") as fh:
            lines = fh.read().splitlines()
        body = []
        for line in lines:
            if line.startswith("#"):
                for part in line.lstrip("#").split(";"):
                    if "=" in part:
                        key, val = part.split("=", 1)
                        meta[key.strip()] = val.strip()
            elif line.strip():
                body.append(line)
        reader = csv.DictReader(body)
        if reader.fieldnames is None or set(CSV_COLUMNS) - set(reader.fieldnames):
            raise ValueError(
                f"{path} is not a coverage table: expected columns {', '.join(CSV_COLUMNS)}, "
                f"found {reader.fieldnames}"
            )
        recs = list(reader)
        if not recs:
            raise ValueError(f"{path} holds no coverage values")
        # metadata columns (files of the first release carry a "#" line instead, read above)
        for key in CSV_META_COLUMNS:
            if recs[0].get(key):
                meta.setdefault(key, recs[0][key])
        if "estimator" in meta:
            meta.setdefault("periodic", "true" if meta["estimator"] == "periodic" else "false")
        names: list[str] = meta["phases"].split(",") if "phases" in meta else []
        for rec in recs:  # files written by other tools: phase order of first appearance
            for key in ("phase_i", "phase_j"):
                if rec[key] not in names:
                    names.append(rec[key])
        axes = sorted({int(rec["direction"]) for rec in recs if rec["direction"] != "radial"})
        has_radial = any(rec["direction"] == "radial" for rec in recs)
        r_px = np.array(sorted({int(rec["r_px"]) for rec in recs}), dtype=np.int64)
        P, R = len(names), len(r_px)
        if list(r_px) != list(range(R)) or axes != list(range(len(axes))) or not axes:
            raise ValueError(f"{path}: distances must be 0..r_max and directions 0..ndim-1 (and radial)")
        directional = np.full((len(axes), P, P, R), np.nan)
        radial = np.full((P, P, R), np.nan) if has_radial else None
        voxel_size = float(meta["voxel_size"]) if "voxel_size" in meta else 1.0
        for rec in recs:
            i, j, k = names.index(rec["phase_i"]), names.index(rec["phase_j"]), int(rec["r_px"])
            mat = radial if rec["direction"] == "radial" else directional[int(rec["direction"])]
            assert mat is not None
            mat[i, j, k] = mat[j, i, k] = float(rec["value"])
            if "voxel_size" not in meta and k > 0:
                voxel_size = float(rec["distance"]) / k
        if np.isnan(directional).any() or (radial is not None and np.isnan(radial).any()):
            raise ValueError(f"{path}: the coverage table is incomplete (some direction/pair/r missing)")
        return cls(
            directional=directional,
            radial=radial,
            r_px=r_px,
            voxel_size=voxel_size,
            unit=meta.get("unit", "px"),
            volume_fractions=np.array([directional[0, i, i, 0] for i in range(P)]),
            phase_names=tuple(names),
            periodic=meta.get("periodic", "false") == "true",
        )


def _to_label_tensor(labels: Any, device: str | torch.device | None) -> torch.Tensor:
    from napari_assb_twin.devices import resolve_device

    if isinstance(labels, torch.Tensor):
        t = labels.detach()
        dev = t.device if device is None else resolve_device(device)
    elif isinstance(labels, np.ndarray) or hasattr(labels, "__array__"):
        arr = np.asarray(labels)
        if arr.dtype == object:
            raise TypeError("labels must be a numeric label array, got an object array")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        dev = torch.device("cpu") if device is None else resolve_device(device)
    else:
        raise TypeError(f"labels must be a numpy array or torch tensor of phase labels, got {type(labels).__name__}")
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"labels must be an integer (or bool) phase map with values 0..n_phases-1, got {t.dtype}; "
            "convert a segmentation with its label mapping first (e.g. napari_assb_twin.io)"
        )
    return t.to(dev)


def coverage(
    labels: Any,
    r_max: int,
    *,
    periodic: bool = False,
    n_phases: int = 3,
    voxel_size: float = 1.0,
    unit: str = "px",
    device: str | torch.device | None = None,
    radial: bool = True,
    batch: bool = False,
    dtype: torch.dtype = torch.float32,
    phase_names: Sequence[str] | None = None,
) -> CoverageResult:
    """Two-point coverage functions ``C_ij`` of a phase map.

    Parameters
    ----------
    labels : ndarray or Tensor of int / bool
        Phase map, 2D or 3D, values ``0..n_phases-1``; with ``batch=True`` a stack ``(B, *spatial)``
        of equally sized images whose mean functions are returned.
    r_max : int
        Largest distance in pixels (``< n_d``, or ``<= n_d // 2`` when periodic).
    periodic : bool
        Use the circular estimator (simulated periodic volumes); default minus-sampling (measured).
    n_phases : int
        Number of phases ``P``.
    voxel_size, unit
        Pixel size and its unit, for :attr:`CoverageResult.distance`.
    device : str or torch.device, optional
        ``"auto" | "cpu" | "cuda" ...``; default: the tensor's device, CPU for numpy input.
    radial : bool
        Also compute the radial average.
    batch : bool
        Treat the first axis as a batch of images.
    dtype : torch.dtype
        Computation precision (float32, or float64 for reference values).
    phase_names : sequence of str, optional
        Names for tables; default the canonical names for three phases, ``phase0``... otherwise.

    Returns
    -------
    CoverageResult

    Raises
    ------
    TypeError
        Non-integer labels or a wrong argument type.
    ValueError
        Empty image, wrong number of axes, labels outside ``0..n_phases-1``, a too large ``r_max``
        or inconsistent ``phase_names``.
    """
    if isinstance(n_phases, bool) or not isinstance(n_phases, (int, np.integer)) or n_phases < 1:
        raise ValueError(f"n_phases must be a positive integer, got {n_phases!r}")
    n_phases = int(n_phases)
    if phase_names is None:
        phase_names = PHASE_NAMES if n_phases == len(PHASE_NAMES) else tuple(f"phase{p}" for p in range(n_phases))
    phase_names = tuple(str(n) for n in phase_names)
    if len(phase_names) != n_phases or len(set(phase_names)) != n_phases:
        raise ValueError(f"phase_names must hold {n_phases} distinct names, got {phase_names}")
    if any(c in name for name in phase_names for c in ",;\n"):
        raise ValueError(f"phase names must not contain ',', ';' or newlines: {phase_names}")
    if not (isinstance(voxel_size, (int, float, np.floating, np.integer)) and np.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")

    lab = _to_label_tensor(labels, device)
    expected = "(B, *spatial) with 2 or 3 spatial axes" if batch else "2D (y, x) or 3D (z, y, x)"
    n_spatial = lab.ndim - 1 if batch else lab.ndim
    if n_spatial not in (2, 3):
        raise ValueError(f"labels must be {expected}, got shape {tuple(lab.shape)}")
    if lab.numel() == 0:
        raise ValueError(f"labels is empty (shape {tuple(lab.shape)})")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi >= n_phases:
        raise ValueError(
            f"labels must lie in 0..{n_phases - 1} (one value per phase), found values in {lo}..{hi}; "
            "map raw segmentation labels to phases first or pass n_phases"
        )
    if not batch:
        lab = lab.unsqueeze(0)
    r_max = _check_r_max(tuple(lab.shape[1:]), r_max, periodic)
    counts = torch.bincount(lab.reshape(-1).long(), minlength=n_phases)
    with torch.no_grad():  # labels carry no gradient; skip the autograd graph (memory)
        # one-hot labels are a partition of unity: the indicators of P - 1 phases suffice, the
        # last phase follows exactly (built by comparison, no int64 one-hot copy of the volume)
        xs = torch.stack([lab == p for p in range(max(n_phases - 1, 1))], dim=1).to(dtype)
        directional, rad = _coverage_core(xs, n_phases, r_max, periodic, radial, partition=n_phases > 1)
    r_px = np.arange(int(r_max) + 1, dtype=np.int64)
    return CoverageResult(
        directional=directional.mean(0).detach().cpu().double().numpy(),
        radial=None if rad is None else rad.mean(0).detach().cpu().double().numpy(),
        r_px=r_px,
        voxel_size=float(voxel_size),
        unit=str(unit),
        volume_fractions=(counts.double() / lab.numel()).cpu().numpy(),
        phase_names=phase_names,
        periodic=bool(periodic),
    )
