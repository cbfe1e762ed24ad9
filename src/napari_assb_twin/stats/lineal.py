"""Lineal-path functions of phase maps along the array axes.

The lineal-path function of phase ``p`` along axis ``d``, L_p(r), is the probability that a segment
of r + 1 consecutive pixels along ``d`` (length r px) lies entirely in phase ``p``; L_p(0) is the
phase's area fraction and L_p decreases to 0. Unlike C_pp(r) it needs the whole segment in the
phase, so it carries connectivity along lines (Torquato, Random Heterogeneous Materials, 2002).

Estimated without periodic wrap ("minus sampling"): of the n - r segment positions on a line of n
pixels, those inside a run of phase ``p`` of length m are max(0, m - r). Every run counts, also those
cut by the border (their visible part holds exactly those segments), so the estimate is unbiased
for a stationary phase map. Computed from the run-length encoding of
:func:`~napari_assb_twin.stats.chords.runs_along_axis` (vectorised over all lines).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .chords import check_lag_arguments, runs_along_axis

__all__ = ["lineal_path"]


def lineal_path(labels: Any, r_max: int, axis: int, n_phases: int = 3, batch: bool = False) -> np.ndarray:
    """Lineal-path functions of every phase along one axis.

    Parameters
    ----------
    labels : ndarray or Tensor of int
        2D or 3D phase map (or ``(B, *spatial)`` with ``batch=True``: estimates pooled over images).
    r_max : int
        Largest segment length in px (``0 <= r_max < `` the image's side along ``axis``).
    axis : int
        Spatial axis of the segments.
    n_phases : int
        Number of phases (labels must lie in ``0..n_phases - 1``).

    Returns
    -------
    ndarray ``(n_phases, r_max + 1)``
        ``L[p, r]`` for r = 0..r_max px.
    """
    labels, axis, n = check_lag_arguments(labels, r_max, axis, n_phases, batch)
    values, lengths, _ = runs_along_axis(labels, axis)
    n_lines = labels.size // n
    r = np.arange(r_max + 1)
    out = np.zeros((n_phases, r_max + 1))
    for p in range(n_phases):
        m = lengths[values == p]
        if m.size == 0:
            continue
        # sum over runs of max(0, m - r) for every r at once, from the histogram of run lengths
        counts = np.bincount(m, minlength=n + 1).astype(float)
        ks = np.arange(counts.size, dtype=float)
        tail_n = np.cumsum(counts[::-1])[::-1]  # runs with length >= k
        tail_len = np.cumsum((counts * ks)[::-1])[::-1]  # total length of runs with length >= k
        out[p] = tail_len[r] - r * tail_n[r]
        # runs shorter than r + 1 hold no segment; r = 0 counts every pixel
    return out / (n_lines * (n - r))[None, :]
