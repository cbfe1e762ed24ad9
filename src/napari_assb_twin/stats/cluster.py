"""Two-point cluster functions of phase maps along the array axes.

The two-point cluster function of phase ``p`` along axis ``d``, C2_p(r), is the probability that a
pixel x and the pixel r px further along ``d`` both lie in phase ``p`` *and in the same connected
cluster* of it (Torquato, Random Heterogeneous Materials, 2002, ch. 2). C2_p(0) is the area
fraction; for large r it decays to 0 when the phase falls apart into finite clusters and to the
squared fraction of the spanning cluster when it percolates. It is the 2D statistic that tells
apart structures whose C_ij and lineal paths agree but whose pieces are joined differently, e.g.
a chi2(1) upper level set {|X| > s} (two families of blobs that never touch) and a chi2(2) one.

Clusters are face-connected (4 neighbours in 2D, 6 in 3D), the notion of ``stats.descriptors``
and of the transport solver, and are cut at the window (a cluster joined only outside it counts as
two), which is why data and model must be measured on windows of the same size. Estimated
without periodic wrap: over the n - r pairs of each line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .chords import check_lag_arguments

__all__ = ["two_point_cluster"]


def two_point_cluster(labels: Any, r_max: int, axis: int, n_phases: int = 3, batch: bool = False) -> np.ndarray:
    """Two-point cluster functions of every phase along one axis.

    Parameters
    ----------
    labels : ndarray or Tensor of int
        2D or 3D phase map (or ``(B, *spatial)`` with ``batch=True``: estimates pooled over images;
        clusters never join across images).
    r_max : int
        Largest lag in px (``0 <= r_max <`` the image's side along ``axis``).
    axis : int
        Spatial axis of the lag.
    n_phases : int
        Number of phases (labels must lie in ``0..n_phases - 1``).

    Returns
    -------
    ndarray ``(n_phases, r_max + 1)``
        ``C2[p, r]`` for r = 0..r_max px.
    """
    labels, axis, n = check_lag_arguments(labels, r_max, axis, n_phases, batch)
    n_spatial = labels.ndim - 1 if batch else labels.ndim
    # face connectivity within each image; with a batch axis, no neighbours along it
    structure = ndimage.generate_binary_structure(n_spatial, 1)
    if batch:
        structure = np.stack([np.zeros_like(structure), structure, np.zeros_like(structure)])
    out = np.zeros((n_phases, r_max + 1))
    lines = labels.size // n
    for p in range(n_phases):
        clusters, count = ndimage.label(labels == p, structure=structure)
        if count == 0:
            continue
        clusters = np.moveaxis(clusters, axis, -1)
        out[p, 0] = np.count_nonzero(clusters) / clusters.size
        for r in range(1, r_max + 1):
            a, b = clusters[..., :-r], clusters[..., r:]
            out[p, r] = np.count_nonzero((a == b) & (a > 0)) / (lines * (n - r))
    return out
