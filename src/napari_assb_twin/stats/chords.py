"""Chord-length distributions of phase maps along the array axes.

A chord of phase ``p`` along axis ``d`` is a maximal run of consecutive pixels of phase ``p`` on a
line parallel to ``d``. Its length (in pixels) is the number of pixels of the run. In a measured
window, a chord touching the window border is cut by it and its true length is unknown, so such
chords are dropped by default (``keep_border=True`` keeps them, e.g. for periodic simulations).

The run-length encoding is vectorised over all lines at once (NumPy), so a 256^3 volume takes
well under a second per axis. Used for model selection (a score not used in the fit) and for
validation reports (METHOD.md sections 7 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from napari_assb_twin.phases import PHASE_NAMES

__all__ = [
    "ChordResult",
    "chord_histogram",
    "chord_lengths",
    "chord_length_distributions",
    "check_lag_arguments",
    "mean_chord_length",
    "runs_along_axis",
]


def _as_label_array(labels: Any, n_phases: int | None = None) -> np.ndarray:
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):  # torch tensor, without importing torch
        labels = labels.detach().cpu().numpy()
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array or torch tensor of phase labels, got {type(labels).__name__}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must be an integer (or bool) phase map, got dtype {labels.dtype}; "
            "map the segmentation to phases 0, 1, 2 first"
        )
    if labels.size == 0:
        raise ValueError(f"labels is empty (shape {labels.shape})")
    if n_phases is not None:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_phases:
            raise ValueError(f"labels must lie in 0..{n_phases - 1}, found values in {lo}..{hi}")
    return labels


def _check_axis(axis: int, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} does not exist for a {ndim}D image (use 0..{ndim - 1})")
    return int(axis) % ndim


def check_lag_arguments(labels: Any, r_max: int, axis: int, n_phases: int, batch: bool) -> tuple[np.ndarray, int, int]:
    """Checked inputs of a statistic over lags 0..``r_max`` along one axis of a 2D / 3D phase map
    (or a batch of them): ``(labels as ndarray, array axis, its length)``."""
    labels = _as_label_array(labels, n_phases)
    n_spatial = labels.ndim - 1 if batch else labels.ndim
    if n_spatial not in (2, 3):
        raise ValueError(f"labels must be 2D or 3D{' after the batch axis' if batch else ''}, got shape {labels.shape}")
    axis = _check_axis(axis, n_spatial) + (1 if batch else 0)
    n = labels.shape[axis]
    if isinstance(r_max, bool) or not isinstance(r_max, (int, np.integer)) or not 0 <= r_max < n:
        raise ValueError(f"r_max must be an integer in 0..{n - 1} (the image is {n} px along axis {axis}), got {r_max!r}")
    return labels, axis, n


def runs_along_axis(labels: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding of every line of ``labels`` parallel to ``axis``.

    Parameters
    ----------
    labels : ndarray of int
        Any-dimensional integer image.
    axis : int
        Axis along which the lines run.

    Returns
    -------
    values : ndarray
        Label of each run.
    lengths : ndarray of int64
        Length of each run in pixels.
    touches_border : ndarray of bool
        Whether the run starts at the first or ends at the last pixel of its line.
    """
    labels = _as_label_array(labels)
    axis = _check_axis(axis, labels.ndim)
    n = labels.shape[axis]
    lines = np.moveaxis(labels, axis, -1).reshape(-1, n)
    # a run starts at the first pixel of each line and wherever the label changes; since every line
    # begins a run, runs never continue across line ends in the flattened view
    starts = np.ones(lines.shape, dtype=bool)
    np.not_equal(lines[:, 1:], lines[:, :-1], out=starts[:, 1:])
    idx = np.flatnonzero(starts)
    lengths = np.diff(np.append(idx, lines.size)).astype(np.int64)
    pos = idx % n
    touches = (pos == 0) | (pos + lengths == n)
    return lines.reshape(-1)[idx], lengths, touches


def chord_lengths(
    labels: Any, phase: int, axis: int, *, keep_border: bool = False, batch: bool = False
) -> np.ndarray:
    """Lengths (px) of all chords of one phase along one axis.

    Parameters
    ----------
    labels : ndarray or Tensor of int / bool
        2D or 3D phase map (or ``(B, *spatial)`` with ``batch=True``; chords of all images pooled).
    phase : int
        Phase index.
    axis : int
        Spatial axis (0 = first array axis, ``-1`` = last).
    keep_border : bool
        Keep chords cut by the image border (default: drop them, they are censored).
    batch : bool
        The first array axis indexes images.

    Returns
    -------
    ndarray of int64
        Chord lengths in pixels, in line order.
    """
    labels = _as_label_array(labels)
    n_spatial = labels.ndim - 1 if batch else labels.ndim
    if n_spatial not in (2, 3):
        raise ValueError(
            f"labels must be 2D or 3D{' after the batch axis' if batch else ''}, got shape {labels.shape}"
        )
    axis = _check_axis(axis, n_spatial) + (1 if batch else 0)
    values, lengths, touches = runs_along_axis(labels, axis)
    keep = values == phase
    if not keep_border:
        keep &= ~touches
    return lengths[keep]


@dataclass
class ChordResult:
    """Chord lengths per phase and axis of one image (or a batch), in pixels.

    ``lengths[(phase, axis)]`` is an int64 array; ``voxel_size``/``unit`` convert to physical lengths.
    """

    lengths: dict[tuple[int, int], np.ndarray]
    ndim: int
    n_phases: int
    keep_border: bool
    voxel_size: float = 1.0
    unit: str = "px"
    phase_names: tuple[str, ...] = PHASE_NAMES

    def mean(self, phase: int, axis: int) -> float:
        """Mean chord length in pixels (NaN when there is no chord)."""
        return mean_chord_length(self.lengths[(phase, axis)])

    def histogram(self, phase: int, axis: int, bins: Sequence[float] | np.ndarray, density: bool = False) -> np.ndarray:
        """Normalised histogram, see :func:`chord_histogram`."""
        return chord_histogram(self.lengths[(phase, axis)], bins, density=density)

    def rows(self) -> list[dict[str, Any]]:
        """Summary records: phase, axis, number of chords, mean length in px and physical units."""
        out = []
        for (p, d), lens in sorted(self.lengths.items()):
            m = mean_chord_length(lens)
            out.append(
                {
                    "phase": self.phase_names[p],
                    "axis": d,
                    "n_chords": int(lens.size),
                    "mean_px": m,
                    "mean_length": m * self.voxel_size,
                    "unit": self.unit,
                }
            )
        return out


def chord_length_distributions(
    labels: Any,
    *,
    n_phases: int = 3,
    axes: Sequence[int] | None = None,
    keep_border: bool = False,
    batch: bool = False,
    voxel_size: float = 1.0,
    unit: str = "px",
    phase_names: Sequence[str] | None = None,
) -> ChordResult:
    """Chord lengths of every phase along every (or the given) axis, one encoding pass per axis.

    Raises
    ------
    TypeError, ValueError
        Non-integer labels, labels outside ``0..n_phases-1``, wrong dimensionality or axis.
    """
    labels = _as_label_array(labels, n_phases)
    n_spatial = labels.ndim - 1 if batch else labels.ndim
    if n_spatial not in (2, 3):
        raise ValueError(
            f"labels must be 2D or 3D{' after the batch axis' if batch else ''}, got shape {labels.shape}"
        )
    if not (np.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size!r}")
    if phase_names is None:
        phase_names = PHASE_NAMES if n_phases == len(PHASE_NAMES) else tuple(f"phase{p}" for p in range(n_phases))
    if len(phase_names) != n_phases:
        raise ValueError(f"phase_names must hold {n_phases} names, got {tuple(phase_names)}")
    axes = list(range(n_spatial)) if axes is None else [_check_axis(a, n_spatial) for a in axes]
    out: dict[tuple[int, int], np.ndarray] = {}
    for d in axes:
        values, lengths, touches = runs_along_axis(labels, d + (1 if batch else 0))
        ok = np.ones_like(touches) if keep_border else ~touches
        for p in range(n_phases):
            out[(p, d)] = lengths[ok & (values == p)]
    return ChordResult(out, n_spatial, n_phases, keep_border, float(voxel_size), unit, tuple(phase_names))


def chord_histogram(lengths: np.ndarray, bins: Sequence[float] | np.ndarray, density: bool = False) -> np.ndarray:
    """Histogram of chord lengths normalised by the total number of chords.

    Parameters
    ----------
    lengths : ndarray
        Chord lengths (px or physical, matching ``bins``).
    bins : sequence of float
        Increasing bin edges (``len(bins) - 1`` bins, the last one closed as in NumPy).
    density : bool
        Divide by the bin widths (a probability density); otherwise fractions per bin.

    Returns
    -------
    ndarray of float64
        Fraction of all chords in each bin; chords outside the bins count in the total, so the
        values sum to less than 1 when bins do not cover all lengths. All zeros if there is no chord.
    """
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bins must be at least two strictly increasing bin edges")
    lengths = np.asarray(lengths)
    counts, _ = np.histogram(lengths, bins=edges)
    if lengths.size == 0:
        return np.zeros(edges.size - 1)
    frac = counts / lengths.size
    return frac / np.diff(edges) if density else frac


def mean_chord_length(lengths: np.ndarray) -> float:
    """Mean chord length (NaN for no chords, so missing phases are visible, not zero)."""
    lengths = np.asarray(lengths)
    return float(lengths.mean()) if lengths.size else float("nan")
