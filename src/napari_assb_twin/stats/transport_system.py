"""The finite-volume system of steady diffusion through a voxel image (TauFactor's discretisation).

One unknown per voxel of the *percolating* set (the face-connected clusters of conducting voxels that
touch both faces normal to the transport axis); a 7-point (5-point in 2D) stencil with the harmonic mean
of the two voxels' conductivities on every shared face; a Dirichlet potential 0 on the inlet face and 1
on the outlet face, both half a voxel outside the centres of the first and last layer (face conductance
``2 sigma``); no flux through the side faces and into non-conducting voxels. This is TauFactor 1.2.1's
``Solver`` discretisation (its padded layer holds twice the boundary potential with neighbour weight 2,
which is the same half-voxel Dirichlet condition).

The effective conductivity follows from the current ``I`` through the box (``L`` voxels long, cross
section ``A`` voxels, unit potential drop): ``sigma_eff = I L / A``. The current is computed from the
dissipated power ``x^T A x - 2 b^T x + c``, which equals ``I`` at the exact solution and errs only to
second order in the solution's error (the layer fluxes TauFactor averages err to first order), so the
linear solve may stop early for a given accuracy on tau.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .arrays import cluster_labels, face, percolating_mask

__all__ = [
    "TransportSystem",
    "transport_system",
    "effective_diffusivity_from_flux",
]


@dataclass(frozen=True)
class TransportSystem:
    """The SPD linear system ``matrix @ x = rhs`` of one transport problem and what reads its answer.

    Attributes
    ----------
    matrix
        CSR matrix (int32 indices) on the percolating voxels, in C order of the image.
    rhs
        Right-hand side (outlet boundary conductance times the outlet potential 1).
    guess
        Linear potential profile along the axis (the exact answer for straight channels).
    boundary_energy
        ``c`` in the power ``x^T A x - 2 b^T x + c``: the sum of the outlet boundary conductances.
    length, area
        Box length along the axis and cross-section (voxels).
    n_unknowns, percolating_fraction
        Number of unknowns and their share of the conducting voxels.
    neumann_diagonal
        The matrix's diagonal without the Dirichlet faces' conductances (the sum of each voxel's
        conductances to its neighbours): the same numbers for every axis whose percolating set is
        the same, so one multigrid hierarchy of that "no-flux" operator serves them all
        (:mod:`.transport`); the faces' terms are ``matrix.diagonal() - neumann_diagonal``.
    """

    matrix: sp.csr_matrix
    rhs: np.ndarray
    guess: np.ndarray
    boundary_energy: float
    length: int
    area: int
    n_unknowns: int
    percolating_fraction: float
    neumann_diagonal: np.ndarray


def _pairs(a: np.ndarray, axis: int, lo: bool) -> np.ndarray:
    sl = [slice(None)] * a.ndim
    sl[axis] = slice(None, -1) if lo else slice(1, None)
    return a[tuple(sl)]


def transport_system(
    conductivity: np.ndarray,
    axis: int,
    labels: np.ndarray | None = None,
    dtype: type = np.float64,
) -> TransportSystem | None:
    """Assemble the system of one transport problem, or ``None`` when nothing percolates.

    Parameters
    ----------
    conductivity
        2D/3D array of voxel conductivities (``0`` = not conducting); a boolean image means 1 / 0.
    axis
        Transport axis.
    labels
        Cluster labels of ``conductivity > 0`` from :func:`cluster_labels` (computed when omitted;
        pass them to reuse one labelling across the axes of one phase).
    dtype
        Floating type of the matrix (float32 halves memory traffic; the answer is read in float64).
    """
    sigma = np.asarray(conductivity)
    conducting = sigma if sigma.dtype == bool else sigma > 0
    if labels is None:
        labels = cluster_labels(conducting)
    mask = percolating_mask(labels, axis)
    n = int(mask.sum())
    n_conducting = int(np.count_nonzero(conducting))
    if n == 0:
        return None
    binary = sigma.dtype == bool or bool(np.all(sigma[conducting] == 1))
    index = np.full(mask.shape, -1, np.int32)
    index[mask] = np.arange(n, dtype=np.int32)
    s = None if binary else np.where(mask, sigma, 0).astype(np.float64)
    rows, cols, vals = [], [], []
    for d in range(mask.ndim):
        both = _pairs(mask, d, True) & _pairs(mask, d, False)
        i = _pairs(index, d, True)[both]
        j = _pairs(index, d, False)[both]
        if binary:
            g = np.ones(i.size, np.float64)
        else:
            si, sj = _pairs(s, d, True)[both], _pairs(s, d, False)[both]
            g = 2 * si * sj / (si + sj)  # harmonic mean: the two half-voxel resistances in series
        rows += [i, j]
        cols += [j, i]
        vals += [-g, -g]
        del both
    # the diagonal: the sum of each voxel's face conductances (bincount is much faster than add.at)
    diag = -np.bincount(np.concatenate(rows), weights=np.concatenate(vals), minlength=n)
    neumann = diag.astype(dtype)  # a copy, before the faces' terms
    # Dirichlet faces half a voxel outside: conductance 2 sigma to the boundary potential
    inlet = index[face(mask.ndim, axis, 0)]
    outlet = index[face(mask.ndim, axis, -1)]
    inlet, outlet = inlet[inlet >= 0], outlet[outlet >= 0]
    s_unknowns = None if binary else s[mask]
    g_in = 2.0 * (np.ones(inlet.size) if binary else s_unknowns[inlet])
    g_out = 2.0 * (np.ones(outlet.size) if binary else s_unknowns[outlet])
    diag[inlet] += g_in  # one face per voxel: no repeated indices
    diag[outlet] += g_out
    rows.append(np.arange(n, dtype=np.int32))
    cols.append(np.arange(n, dtype=np.int32))
    vals.append(diag)
    matrix = sp.coo_matrix(
        (np.concatenate(vals).astype(dtype), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    matrix.indptr = matrix.indptr.astype(np.int32, copy=False)
    rhs = np.zeros(n, dtype)
    rhs[outlet] = g_out
    length = mask.shape[axis]
    pos = np.nonzero(mask)[axis]
    guess = ((pos + 0.5) / length).astype(dtype)
    return TransportSystem(
        matrix=matrix,
        rhs=rhs,
        guess=guess,
        boundary_energy=float(g_out.sum()),
        length=length,
        area=int(mask.size // length),
        n_unknowns=n,
        percolating_fraction=n / n_conducting,
        neumann_diagonal=neumann,
    )


def effective_diffusivity_from_flux(system: TransportSystem, x: np.ndarray) -> float:
    """Relative effective conductivity ``I L / A`` of a (near-)solution ``x``, from the dissipated power."""
    x64 = np.asarray(x, np.float64)
    ax = system.matrix @ x
    power = float(np.dot(x64, np.asarray(ax, np.float64))) - 2.0 * float(np.dot(x64, system.rhs)) + system.boundary_energy
    return power * system.length / system.area
