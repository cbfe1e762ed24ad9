"""Shortest paths inside a voxel mask: Dijkstra on the 3^d - 1 neighbour graph, compiled with Numba.

The graph is scikit-image's ``MCP_Geometric(np.where(mask, 1, inf), fully_connected=True, sampling=...)``:
every voxel of the mask is a node, every pair of voxels of the mask that share a face, an edge or a corner
is joined by an edge as long as the step between their centres (physical units). The same graph and
the same edge lengths give the same distances as that reference (to float rounding); written here as
a bucket-queue Dijkstra over the flat, one-voxel-padded volume, it needs no heap and no Python objects
per start voxel.
"""

from __future__ import annotations

import itertools
import math

import numba
import numpy as np

from .arrays import face


@numba.njit(cache=True, nogil=True)
def _dijkstra(free: np.ndarray, dist: np.ndarray, starts: np.ndarray, offsets: np.ndarray,
              lengths: np.ndarray) -> None:  # pragma: no cover - compiled
    """Fill ``dist`` (inf outside the starts) with shortest path lengths from ``starts`` over ``free``.

    Dijkstra with a bucket queue (Dial / Dinitz): bucket b holds the nodes with a tentative length in
    [b w, (b + 1) w), w the shortest step. A node of bucket b can only move others to buckets > b, so
    every node of the lowest non-empty bucket is final, in any order: no heap, and only
    ``floor(longest step / w) + 2`` buckets (a ring; 3 for cubic voxels) are ever in use. ``free`` is
    the flat padded mask (its border False, so ``i + offset`` never leaves the array).
    """
    n = free.size
    w = lengths.min()
    done = np.zeros(n, dtype=np.bool_)
    nr = int(lengths.max() / w) + 2
    ring = np.empty((nr, n), dtype=np.int32)  # each node enters a bucket at most once (see below)
    fill = np.zeros(nr, dtype=np.int64)
    for s in starts:
        dist[s] = 0.0
        ring[0, fill[0]] = s
        fill[0] += 1
    b = 0
    empty = 0
    while empty < nr:
        r = b % nr
        if fill[r] == 0:
            empty += 1
            b += 1
            continue
        empty = 0
        j = 0
        while j < fill[r]:  # this bucket does not grow while it is emptied: steps are >= w
            u = ring[r, j]
            j += 1
            if done[u]:
                continue
            done[u] = True
            du = dist[u]
            for k in range(offsets.size):
                v = u + offsets[k]
                if not free[v] or done[v]:
                    continue
                nd = du + lengths[k]
                if nd < dist[v]:
                    old = dist[v]
                    dist[v] = nd
                    nb = int(nd / w)
                    if old == np.inf or int(old / w) != nb:  # not yet in that bucket
                        q = nb % nr
                        ring[q, fill[q]] = v
                        fill[q] += 1
        fill[r] = 0
        b += 1


def outlet_distances(mask: np.ndarray, axis: int, spacing: tuple[float, ...]) -> np.ndarray:
    """Shortest path length inside ``mask`` from every voxel to the nearest voxel of its outlet face.

    Parameters
    ----------
    mask
        Boolean image (2D or 3D); paths step to any of the 3^d - 1 neighbours inside it.
    axis
        The outlet is the face ``index n - 1`` of this axis (path length 0 there).
    spacing
        Voxel size per axis; a step's length is the distance between the two voxel centres.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``mask``; ``inf`` outside the mask and where no path reaches the outlet.
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    strides = np.array([int(np.prod(padded.shape[i + 1:])) for i in range(mask.ndim)], dtype=np.int64)
    steps = [d for d in itertools.product((-1, 0, 1), repeat=mask.ndim) if any(d)]
    offsets = np.array([int(np.dot(d, strides)) for d in steps], dtype=np.int64)
    lengths = np.array([math.sqrt(sum((di * h) ** 2 for di, h in zip(d, spacing))) for d in steps])
    outlet = np.zeros_like(padded)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    outlet[inner][face(mask.ndim, axis, -1)] = mask[face(mask.ndim, axis, -1)]
    starts = np.flatnonzero(outlet).astype(np.int64)
    dist = np.full(padded.size, np.inf)
    _dijkstra(padded.ravel(), dist, starts, offsets, lengths)
    return dist.reshape(padded.shape)[inner]
