"""Tortuosity factor and effective diffusivity: steady diffusion through the phases of a voxel image.

Boundary conditions (the same as TauFactor 1.2.1's ``Solver``, so figures compare): a fixed potential
on the two faces normal to the transport axis, half a voxel outside the centres of the first and
last layer of voxels (the image's outer faces); no flux through the four side faces and into voxels
that do not conduct. Each voxel is a finite volume; two face-neighbours exchange flux with the
harmonic mean of their conductivities (1 inside one phase). Clusters of the phase that do not
face-connect both Dirichlet faces carry no current; they are dropped from the system and reported
through :attr:`TransportResult.percolating_fraction`. With the current ``I`` through the box (length
``L``, cross section ``A`` voxels, unit potential drop) TauFactor's definitions are kept:

    D_eff / D_0 = I L / A        and        tau = vf / (D_eff / D_0),

``vf`` the volume fraction of the *whole* phase (isolated clusters included), so a straight channel
gives ``tau = 1`` and a phase that does not connect the faces ``tau = inf``. With several conducting
phases of conductivities ``sigma_i`` (:func:`effective_conductivity`), ``tau = sum_i vf_i sigma_i /
sigma_eff`` (TauFactor's multi-phase definition; note that TauFactor's ``MultiPhaseSolver`` puts its
Dirichlet layers one voxel out, we keep the half-voxel faces of the binary solver).

Solvers (``solver=``, choices in :data:`napari_assb_twin.options.TRANSPORT_SOLVERS`):

``"amg"``
    Conjugate gradients preconditioned with a smoothed-aggregation V-cycle (PyAMG's coarsening,
    damped-Jacobi smoothing in NumPy so that solves on threads overlap; CPU, the default there).
    Stops at a relative residual ``||b - A x|| / ||b||`` of ``rtol`` (:data:`DEFAULT_RTOL`, enough for 1e-4 on tau: the current is read from the dissipated power, whose error is second
    order in the solution's); CG in float64, the multigrid V-cycle in float32, int32 indices, a
    linear initial guess (exact for straight channels).
    :func:`phase_transport` reuses one phase's cluster labelling across its axes.
``"torch-cg"``
    Jacobi-preconditioned conjugate gradients on the same system with torch sparse tensors, on any
    torch device (the GPU path when TauFactor is not installed).
``"taufactor"``
    TauFactor's over-relaxed Jacobi iterations (optional: ``pip install napari-assb-twin[taufactor]``);
    ``iter_limit`` / ``conv_crit`` are its own.
``"auto"``
    ``"amg"`` on a CPU; TauFactor on a GPU when installed, else ``"torch-cg"``.

The result does not depend on the number of threads beyond rounding (measured: 1e-13 relative on
tau, the same iterations): CG's reductions are single-threaded (NumPy's ``einsum`` rather than
multi-threaded BLAS dot products), SciPy / PyAMG kernels are sequential; only LAPACK in the AMG
set-up (the coarsest level's pseudo-inverse) follows the BLAS thread count.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from ..events import JobProgress, run_job
from ..options import TRANSPORT_ITER_LIMIT, TRANSPORT_SOLVERS
from .arrays import as_phase_map, check_axes, cluster_labels, percolating_mask
from .parallel import ordered_results, solver_threads
from .transport_system import TransportSystem, effective_diffusivity_from_flux, transport_system

__all__ = [
    "DEFAULT_RTOL",
    "ITER_LIMIT",
    "TAUFACTOR_VERSION",
    "TransportResult",
    "check_solver",
    "effective_conductivity",
    "iter_phase_transport",
    "phase_transport",
    "tortuosity_factor",
]

#: The TauFactor release the optional TauFactor path was written and checked against.
TAUFACTOR_VERSION = "1.2.1"
#: Iteration cap of every solver (the rule lives in :mod:`napari_assb_twin.options`).
ITER_LIMIT = TRANSPORT_ITER_LIMIT
#: CG's relative residual: measured on the NMC volumes, tau is within 1e-4 of the converged value
#: from about 1e-4 (see docs/benchmarks.md); TauFactor's own default stops about 1e-3 from it.
DEFAULT_RTOL = 1e-4
#: TauFactor computes tau (and checks convergence) once per this many iterations.
_TAU_EVERY = 100


@dataclass(frozen=True)
class TransportResult:
    """Result of one transport run (one phase or set of conductivities, one axis).

    Attributes
    ----------
    tau
        Tortuosity factor (``inf`` when nothing connects the two faces).
    d_eff
        Relative effective diffusivity ``D_eff / D_0 = volume_fraction / tau`` (0 when not
        percolating); the relative effective conductivity for :func:`effective_conductivity`.
    volume_fraction
        Volume fraction of the conducting phase(s) in the whole image.
    percolating
        Whether the phase face-connects the inlet and outlet faces along ``axis``.
    converged
        Whether the solver met its criterion (``True`` for a non-percolating phase: exact).
    iterations, seconds
        Solver iterations and wall-clock time (seconds, set-up included).
    axis, device
        Transport axis of the input array and the device used.
    log
        TauFactor's captured console output ("" for the other solvers).
    solver
        The solver that ran (``"amg"``, ``"torch-cg"``, ``"taufactor"``).
    residual
        Achieved relative residual ``||b - A x|| / ||b||`` (nan for TauFactor, 0 when not percolating).
    percolating_fraction
        Share of the conducting voxels in clusters that touch both faces (the system's unknowns).
    note
        Why the answer is trivial or doubtful ("" otherwise), e.g. "does not connect the faces".
    """

    tau: float
    d_eff: float
    volume_fraction: float
    percolating: bool
    converged: bool
    iterations: int
    seconds: float
    axis: int
    device: str
    log: str = ""
    solver: str = "amg"
    residual: float = float("nan")
    percolating_fraction: float = float("nan")
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON / tables)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ------------------------------------------------------------------------------------------------
# input checks (before any work)
def _as_array(image: Any) -> np.ndarray:
    if hasattr(image, "detach") and hasattr(image, "cpu"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"the image must be a 2D or 3D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"the image is empty (shape {arr.shape})")
    return arr


def _check_binary(binary: Any) -> np.ndarray:
    arr = _as_array(binary)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"binary must be a boolean or 0/1 numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("binary holds NaN or infinite values; pass a boolean mask such as phases == 2")
    vals = np.unique(arr)
    if not np.all(np.isin(vals, (0, 1))):
        raise ValueError(
            f"binary must hold only 0 and 1 (or booleans), got values {vals[:8]}; pass e.g. phases == 2 for one phase"
        )
    return arr.astype(bool)


def _check_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= int(axis) < ndim:
        raise ValueError(f"axis {axis} does not exist for a {ndim}D array (use 0..{ndim - 1})")
    return int(axis)


def _check_solver_options(solver: str, rtol: float, iter_limit: Any, conv_crit: float) -> None:
    if solver not in TRANSPORT_SOLVERS:
        raise ValueError(f"unknown transport solver {solver!r}: use one of {', '.join(TRANSPORT_SOLVERS)}")
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    floor = _TAU_EVERY if solver == "taufactor" else 1
    if isinstance(iter_limit, bool) or not isinstance(iter_limit, (int, np.integer)) or iter_limit < floor:
        why = f" (TauFactor estimates tau every {_TAU_EVERY} iterations)" if solver == "taufactor" else ""
        raise ValueError(f"iter_limit must be an integer >= {floor}{why}, got {iter_limit!r}")
    if not (isinstance(conv_crit, (int, float)) and math.isfinite(conv_crit) and conv_crit > 0):
        raise ValueError(f"conv_crit must be a positive number, got {conv_crit!r}")


def _have_taufactor() -> bool:
    import importlib.util

    return importlib.util.find_spec("taufactor") is not None


def _choose(solver: str, device: Any) -> tuple[str, Any]:
    """The solver and torch device (``None`` for the CPU-only AMG path) that will run."""
    from ..devices import resolve_device

    dev = resolve_device(device)
    if solver == "auto":
        solver = "amg" if dev.type == "cpu" else ("taufactor" if _have_taufactor() else "torch-cg")
    if solver == "amg" and dev.type != "cpu":
        raise ValueError(f"solver 'amg' runs on the CPU only (asked for {dev}); use solver='auto' or 'torch-cg'")
    if solver == "taufactor" and not _have_taufactor():
        raise ValueError(
            "solver 'taufactor' asked for but TauFactor is not installed: "
            f"pip install 'napari-assb-twin[taufactor]' (taufactor=={TAUFACTOR_VERSION}), or use solver='auto'"
        )
    return solver, dev


def check_solver(solver: str, device: Any = "auto") -> tuple[str, str]:
    """``(solver, device)`` names that :func:`tortuosity_factor` will use; ``ValueError`` if it cannot.

    For front ends that check their input before minutes of work (an absent GPU, TauFactor asked for
    but not installed, AMG on a GPU).
    """
    name, dev = _choose(solver, device)
    return name, str(dev)


# ------------------------------------------------------------------------------------------------
# the AMG-preconditioned CG solver
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum's own loop: single-threaded and deterministic (BLAS dot depends on its thread count)
    return float(np.einsum("i,i->", a, b))


@dataclass
class _Level:
    """One level of a V-cycle: its operator, the prolongation to it from the next coarser level and
    the restriction (``None`` on the coarsest), and its smoother."""

    A: Any
    P: Any = None
    R: Any = None
    presmoother: Callable[..., None] | None = None
    postsmoother: Callable[..., None] | None = None


def _amg_base(matrix) -> list[_Level]:
    """Smoothed-aggregation levels (operators, prolongations, restrictions) of an FV Laplacian.

    Built from the "no-flux" operator of a percolating set (:func:`_neumann_operator`), the levels
    serve every axis whose set it is (:func:`_axis_hierarchy` adds that axis's faces); PyAMG's
    coarsening with cheap set-up options (measured). The hierarchy is built one coarsening at a
    time from CSR operators: PyAMG hands its coarse operators on as 1x1-block BSR, on which its Jacobi prolongation smoother (``abs(A)``) runs
    SciPy >= 1.17's pure-Python BSR ``sum_duplicates``: 8 of 12 s of a 64^3 crop's nine solves,
    and a loop over about a million rows at 256^3.
    """
    import pyamg

    levels: list[_Level] = []
    a = matrix
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyAMG's SparseEfficiencyWarning on tiny coarse levels
            ml = pyamg.smoothed_aggregation_solver(
                a,
                symmetry="symmetric",
                strength=("symmetric", {"theta": 0.0}),
                # a Gershgorin weight instead of a power-iteration estimate of the spectral radius
                smooth=("jacobi", {"weighting": "local"}),
                improve_candidates=None,
                max_levels=2,
                max_coarse=AMG_MAX_COARSE,
                coarse_solver=None,  # each axis factorises its own coarsest level (_axis_hierarchy)
                presmoother=None,  # our Jacobi, attached per axis
                postsmoother=None,
                keep=False,
            )
        first = ml.levels[0]
        if len(ml.levels) == 1:
            levels.append(_Level(a))
            return levels
        levels.append(_Level(a, first.P.tocsr(), first.R.tocsr()))
        a = ml.levels[1].A.tocsr()
        if a.shape[0] <= AMG_MAX_COARSE or a.shape[0] >= levels[-1].A.shape[0]:  # coarse enough, or stalled
            levels.append(_Level(a))
            return levels


def _neumann_operator(system: TransportSystem):
    """The system's matrix in float32 with the Dirichlet faces' terms taken off its diagonal: the
    same operator for every axis with the same percolating set (shares the index arrays)."""
    import scipy.sparse as sp

    a = system.matrix
    data = a.data.astype(np.float32)
    rows = np.repeat(np.arange(a.shape[0], dtype=np.int32), np.diff(a.indptr))
    data[a.indices == rows] = system.neumann_diagonal
    return sp.csr_matrix((data, a.indices, a.indptr), shape=a.shape, copy=False)


def _axis_hierarchy(base: list[_Level], system: TransportSystem, a32) -> tuple[list[_Level], Callable]:
    """The V-cycle of one axis from the shared levels: the fine level is the system's own matrix,
    each coarser one the base's plus the Galerkin image ``R D P`` of the faces' diagonal ``D``
    (supported near the two faces: cheap); Jacobi smoothers and a sparse LU of the coarsest level.

    The base's prolongations were smoothed with the no-flux operator: measured on NMC crops, one
    to three more CG steps than a hierarchy of the axis's own matrix, for a third of the set-up.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    faces = (system.matrix.diagonal() - system.neumann_diagonal).astype(np.float32)
    delta = sp.diags(faces, format="csr")
    levels = [_Level(a32, base[0].P, base[0].R)]
    for k in range(1, len(base)):
        up = base[k - 1]
        delta = (up.R @ delta @ up.P).tocsr()
        levels.append(_Level((base[k].A + delta).tocsr(), base[k].P, base[k].R))
    for level in levels[:-1]:
        level.presmoother = level.postsmoother = _jacobi_smoother(level.A)
    # a sparse LU of the coarsest level: PyAMG's default dense pseudo-inverse of that ~500^2 level
    # cost 0.5-4 s per solve, more than the whole CG on a 64^3 crop (measured: 4.2 s -> 0.07 s)
    lu = splu(sp.csc_matrix(levels[-1].A, dtype=np.float64))

    def coarse_solver(_a, b: np.ndarray) -> np.ndarray:
        return lu.solve(np.asarray(b, dtype=np.float64))

    return levels, coarse_solver


#: Size of the coarsest AMG level (solved by a sparse LU).
AMG_MAX_COARSE: int = 500
#: Jacobi sweeps before and after each coarse-grid correction.
JACOBI_SWEEPS: int = 2


def _jacobi_smoother(matrix) -> Callable[..., None]:
    """Damped Jacobi, ``x += w D^-1 (b - A x)``, in place: NumPy and SciPy kernels only.

    Replaces PyAMG's Gauss-Seidel, whose C++ sweep holds the GIL: with it two solves on two
    threads gained 1.15-1.5x, with Jacobi 1.6-1.8x (96^3-256^3 NMC, docs/benchmarks.md), and one
    solve alone is as fast (two Jacobi sweeps smooth about as well as one symmetric Gauss-Seidel
    sweep; 10-25 % more CG steps, each cheaper). The weight ``(4/3) / max_i sum_j |a_ij| / a_ii``
    (Gershgorin) keeps ``w rho(D^-1 A) <= 4/3 < 2`` on every level, so the V-cycle stays an SPD
    preconditioner for CG also on the non-M-matrix coarse operators; on the FV Laplacian it is >= 2/3.
    """
    diag = matrix.diagonal()
    # every row holds its diagonal, so no row is empty and reduceat's segments are the rows
    row_sums = np.add.reduceat(np.abs(matrix.data), matrix.indptr[:-1])
    weight = (4.0 / 3.0) / float(np.max(row_sums / diag))
    scale = (weight / diag).astype(matrix.dtype)

    def smooth(a, x: np.ndarray, b: np.ndarray, from_zero: bool = False) -> None:
        sweeps = JACOBI_SWEEPS
        if from_zero:  # the first sweep from x = 0 needs no product with A
            np.multiply(scale, b, out=x)
            sweeps -= 1
        for _ in range(sweeps):
            x += scale * (b - a @ x)

    smooth.weight = weight  # type: ignore[attr-defined]
    return smooth



def _pcg(matrix, rhs: np.ndarray, x: np.ndarray, precondition: Callable, rtol: float, maxiter: int):
    """Preconditioned conjugate gradients; returns (x, iterations, relative residual)."""
    norm_b = math.sqrt(_dot(rhs, rhs))
    r = rhs - matrix @ x
    res = math.sqrt(_dot(r, r)) / norm_b
    it = 0
    if res < rtol:
        return x, it, res
    z = precondition(r)
    p = z.copy()
    rz = _dot(r, z)
    while it < maxiter:
        q = matrix @ p
        alpha = rz / _dot(p, q)
        x += alpha * p
        r -= alpha * q
        it += 1
        res = math.sqrt(_dot(r, r)) / norm_b
        if res < rtol:
            break
        z = precondition(r)
        rz_new = _dot(r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, it, res


def _v_cycle(levels, coarse_solver) -> Callable[[np.ndarray], np.ndarray]:
    """One symmetric V-cycle from a zero guess, as a function of the residual (an SPD preconditioner).

    Written out rather than PyAMG's ``aspreconditioner``, whose every call also computes two
    residual norms on the finest level (two extra matrix products per CG step).
    """

    def cycle(b: np.ndarray, lvl: int = 0) -> np.ndarray:
        level = levels[lvl]
        if lvl == len(levels) - 1:
            return np.asarray(coarse_solver(level.A, b), dtype=b.dtype).reshape(b.shape)
        x = np.empty_like(b)
        level.presmoother(level.A, x, b, from_zero=True)
        coarse = cycle(level.R @ (b - level.A @ x), lvl + 1)
        x += level.P @ coarse
        level.postsmoother(level.A, x, b)
        return x

    return cycle


def _solve_amg(system: TransportSystem, rtol: float, maxiter: int, base: list[_Level] | None = None):
    """Mixed precision: CG in float64 (a straight channel stays exact), the V-cycle in float32.

    ``base``: the levels of the system's percolating set (:func:`_amg_base`), shared by the axes
    of one phase that have the same set; built here when not given."""
    import scipy.sparse as sp

    a = system.matrix
    a32 = sp.csr_matrix((a.data.astype(np.float32), a.indices, a.indptr), shape=a.shape, copy=False)
    if base is None:
        base = _amg_base(_neumann_operator(system))
    levels, coarse_solver = _axis_hierarchy(base, system, a32)  # a32 shares the float64 matrix's indices
    cycle = _v_cycle(levels, coarse_solver)

    def precondition(r: np.ndarray) -> np.ndarray:
        return cycle(r.astype(np.float32)).astype(np.float64)

    return _pcg(a, system.rhs, system.guess.copy(), precondition, rtol, maxiter)


# ------------------------------------------------------------------------------------------------
# the torch Jacobi-CG solver (any torch device)
def _solve_torch(system: TransportSystem, rtol: float, maxiter: int, device):
    import torch

    dtype = torch.float32 if device.type == "mps" else torch.float64
    A = system.matrix.tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "sparse CSR is beta" / invariant-check notices
        mat = torch.sparse_csr_tensor(
            torch.from_numpy(A.indptr.astype(np.int64)), torch.from_numpy(A.indices.astype(np.int64)),
            torch.from_numpy(A.data.astype(np.float64)), size=A.shape, dtype=dtype, device=device,
        )
    inv_diag = torch.from_numpy(1.0 / A.diagonal()).to(device=device, dtype=dtype)
    b = torch.from_numpy(system.rhs.astype(np.float64)).to(device=device, dtype=dtype)
    x = torch.from_numpy(system.guess.astype(np.float64)).to(device=device, dtype=dtype)

    def mv(v):
        return (mat @ v.unsqueeze(1)).squeeze(1)

    norm_b = float(torch.linalg.vector_norm(b))
    r = b - mv(x)
    res = float(torch.linalg.vector_norm(r)) / norm_b
    it = 0
    if res >= rtol:
        z = inv_diag * r
        p = z.clone()
        rz = torch.dot(r, z)
        while it < maxiter:
            q = mv(p)
            alpha = rz / torch.dot(p, q)
            x += alpha * p
            r -= alpha * q
            it += 1
            if it % 10 == 0 or it == maxiter:  # a host sync per norm check: check every 10 steps
                res = float(torch.linalg.vector_norm(r)) / norm_b
                if res < rtol:
                    break
            z = inv_diag * r
            rz_new = torch.dot(r, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        res = float(torch.linalg.vector_norm(b - mv(x))) / norm_b
    return x.double().cpu().numpy(), it, res


# ------------------------------------------------------------------------------------------------
# TauFactor (optional)
def _solve_taufactor(binary: np.ndarray, axis: int, device, iter_limit: int, conv_crit: float, verbose: bool):
    import taufactor  # the only import of taufactor in the package (optional extra)

    # TauFactor transports along its first axis; a 2D image becomes (X, Y, 1) inside TauFactor
    img = np.ascontiguousarray(np.moveaxis(binary, axis, 0), dtype=np.uint8)
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
        solver = taufactor.Solver(img, device=device)
        tau = solver.solve(iter_limit=iter_limit, verbose=verbose, conv_crit=conv_crit)
    tau = float(np.asarray(tau).ravel()[0])
    d_rel = float(np.asarray(solver.D_rel).ravel()[0]) if solver.D_rel is not None else float("nan")
    if not math.isfinite(tau) or tau <= 0 or d_rel <= 0:
        tau = math.inf  # face-connected but no flux found (a degenerate image): report as blocked
    return tau, bool(solver.converged), int(solver.iter), out.getvalue()


# ------------------------------------------------------------------------------------------------
def _blocked(vf: float, axis: int, dev: str, solver: str, t0: float, what: str) -> TransportResult:
    note = f"{what} is empty" if vf == 0 else f"{what} does not connect the two faces normal to axis {axis}"
    return TransportResult(math.inf, 0.0, vf, False, True, 0, time.perf_counter() - t0, axis, dev,
                           solver=solver, residual=0.0, percolating_fraction=0.0, note=note)


def _solve_system(conductivity: np.ndarray, axis: int, labels, solver: str, dev, rtol: float, iter_limit: int,
                  base_for: Callable[[TransportSystem], list[_Level]] | None = None):
    """Assemble and solve one FV problem: (D_eff, iterations, residual, percolating fraction).
    ``base_for``: the AMG levels to use for a system (shared between axes), else built for it."""
    system = transport_system(conductivity, axis, labels=labels)
    if system is None:
        return None
    if solver == "amg":
        x, it, res = _solve_amg(system, rtol, iter_limit, None if base_for is None else base_for(system))
    else:
        x, it, res = _solve_torch(system, rtol, iter_limit, dev)
    return effective_diffusivity_from_flux(system, x), it, res, system.percolating_fraction


def tortuosity_factor(
    binary: Any,
    axis: int = 0,
    device: Any = "cpu",
    solver: str = "auto",
    rtol: float = DEFAULT_RTOL,
    iter_limit: int = ITER_LIMIT,
    conv_crit: float = 1e-2,
    verbose: bool = False,
    labels: np.ndarray | None = None,
) -> TransportResult:
    """Tortuosity factor and relative effective diffusivity of a binary phase along one axis.

    Parameters
    ----------
    binary
        2D or 3D boolean / 0-1 array (NumPy or torch), ``True`` = the conducting phase.
    axis
        Transport axis of ``binary`` (napari order).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"`` or a ``torch.device``.
    solver
        ``"auto"`` (AMG-CG on a CPU, TauFactor or torch CG on a GPU), ``"amg"``, ``"torch-cg"``,
        ``"taufactor"`` (see the module docstring).
    rtol
        Relative residual at which CG stops (AMG and torch paths).
    iter_limit, conv_crit
        Iteration cap (every solver); TauFactor's flux-uniformity criterion (TauFactor only).
    verbose
        Let TauFactor print its progress instead of capturing it.
    labels
        Face-connected cluster labels of ``binary`` (:func:`~napari_assb_twin.stats.arrays.cluster_labels`),
        to share one labelling across axes; computed when omitted.

    Returns
    -------
    TransportResult

    Raises
    ------
    ValueError
        Arrays that are not 2D/3D, not binary, hold NaN; an axis that does not exist; an unknown
        solver or device; TauFactor asked for but not installed; bad ``rtol`` / ``iter_limit``.
    """
    arr = _check_binary(binary)
    axis = _check_axis(axis, arr.ndim)
    _check_solver_options(solver, rtol, iter_limit, conv_crit)
    name, dev = _choose(solver, device)
    t0 = time.perf_counter()
    vf = float(arr.mean())
    labels = cluster_labels(arr) if labels is None else labels
    if not percolating_mask(labels, axis).any():
        return _blocked(vf, axis, str(dev), name, t0, "the phase")
    if name == "taufactor":
        tau, conv, it, log = _solve_taufactor(arr, axis, dev, iter_limit, conv_crit, verbose)
        return TransportResult(tau, vf / tau if math.isfinite(tau) else 0.0, vf, True, conv, it,
                               time.perf_counter() - t0, axis, str(dev), log=log, solver=name,
                               percolating_fraction=float(percolating_mask(labels, axis).sum() / arr.sum()))
    d_eff, it, res, frac = _solve_system(arr, axis, labels, name, dev, rtol, iter_limit)
    return _result(d_eff, vf, vf, it, res, frac, rtol, t0, axis, str(dev), name)


def _result(d_eff, vf, d_mean, it, res, frac, rtol, t0, axis, dev, name) -> TransportResult:
    converged = res < rtol
    return TransportResult(
        tau=d_mean / d_eff, d_eff=d_eff, volume_fraction=vf, percolating=True, converged=converged,
        iterations=it, seconds=time.perf_counter() - t0, axis=axis, device=dev, solver=name,
        residual=res, percolating_fraction=frac,
        note="" if converged else f"stopped at the iteration limit {it} with relative residual {res:.1e}",
    )


def effective_conductivity(
    phases: Any,
    conductivities: Mapping[int, float],
    axis: int = 0,
    device: Any = "cpu",
    solver: str = "auto",
    rtol: float = DEFAULT_RTOL,
    iter_limit: int = ITER_LIMIT,
) -> TransportResult:
    """Steady conduction through several phases with given conductivities (e.g. ionic transport).

    Parameters
    ----------
    phases
        2D/3D integer phase map.
    conductivities
        ``{phase label: conductivity}``; unnamed phases do not conduct. Positive finite values.
    axis, device, solver, rtol, iter_limit
        As for :func:`tortuosity_factor` (TauFactor is not offered here: its multi-phase solver
        places the Dirichlet layers differently).

    Returns
    -------
    TransportResult
        ``d_eff`` = relative effective conductivity ``sigma_eff`` (in the units of the given
        conductivities), ``tau = sum_i vf_i sigma_i / sigma_eff``, ``volume_fraction`` = share of
        conducting voxels.
    """
    ph = _as_array(phases)
    if not np.issubdtype(ph.dtype, np.integer):
        raise ValueError(f"phases must be an integer phase map, got dtype {ph.dtype}")
    axis = _check_axis(axis, ph.ndim)
    if not conductivities:
        raise ValueError("conductivities is empty: give {phase label: conductivity} for the conducting phases")
    present = set(np.unique(ph).tolist())
    for p, c in conductivities.items():
        if p not in present:
            raise ValueError(f"phase label {p} of conductivities is absent from the image (labels {sorted(present)})")
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"conductivity of phase {p} must be a positive finite number, got {c!r}")
    if solver == "taufactor":
        raise ValueError("solver 'taufactor' is not offered for several phases; use 'auto', 'amg' or 'torch-cg'")
    _check_solver_options(solver, rtol, iter_limit, 1e-2)
    name, dev = _choose(solver, device)
    t0 = time.perf_counter()
    sigma = np.zeros(ph.shape, np.float64)
    for p, c in conductivities.items():
        sigma[ph == p] = c
    vf = float(np.mean(sigma > 0))
    d_mean = float(sigma.mean())  # sum_i vf_i sigma_i
    labels = cluster_labels(sigma > 0)
    out = _solve_system(sigma, axis, labels, name, dev, rtol, iter_limit)
    if out is None:
        return _blocked(vf, axis, str(dev), name, t0, "the conducting phases")
    d_eff, it, res, frac = out
    return _result(d_eff, vf, d_mean, it, res, frac, rtol, t0, axis, str(dev), name)


def iter_phase_transport(
    phases: Any,
    phase_list: Iterable[int] | None = None,
    axes: Iterable[int] | None = None,
    device: Any = "cpu",
    solver: str = "auto",
    rtol: float = DEFAULT_RTOL,
    iter_limit: int = ITER_LIMIT,
    conv_crit: float = 1e-2,
    stage_prefix: str = "transport",
    threads: int | None = None,
) -> Generator[JobProgress, None, dict[tuple[int, int], TransportResult]]:
    """Use case: every phase and axis of a phase map; yields a progress event before each run.

    Events: stage ``"{stage_prefix} {phase name} axis {a}"`` with ``done`` / ``total`` counted in runs;
    a final event ``"{stage_prefix} done"``. Returns ``{(phase, axis): TransportResult}``. One cluster
    labelling per phase serves its axes, and so do the AMG levels of the phase's no-flux operator
    where the axes' percolating sets are the same (each axis adds its own Dirichlet faces: reusing
    one axis's whole hierarchy, faces included, for the next had cost 194-843 CG steps instead of
    6-12 on a 96^3 NMC crop). On the CPU the runs overlap on
    :func:`~napari_assb_twin.stats.parallel.solver_threads` threads, or ``threads`` (1 where the
    caller overlaps whole images; the same results).
    """
    from ..phases import N_PHASES, PHASE_NAMES

    ph = as_phase_map(phases)
    plist = tuple(range(N_PHASES)) if phase_list is None else tuple(int(p) for p in phase_list)
    for p in plist:
        if not 0 <= p < N_PHASES:
            raise ValueError(f"phase {p} does not exist: phases are 0..{N_PHASES - 1} ({', '.join(PHASE_NAMES)})")
    ax = check_axes(axes, ph.ndim)
    _check_solver_options(solver, rtol, iter_limit, conv_crit)
    name, dev = _choose(solver, device)
    runs = [(p, a) for p in plist for a in ax]
    # the CPU solver's runs overlap on threads (a GPU runs one at a time)
    if name != "amg":
        threads = 1
    elif threads is None:
        threads = solver_threads(ph.size)
    prepared: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}

    def phase(p: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The phase's mask, cluster labels and volume fraction, made once for its axes."""
        if p not in prepared:
            if threads == 1:
                prepared.clear()  # one phase's labels at a time: a large image's are hundreds of MB
            binary = ph == p
            prepared[p] = (binary, cluster_labels(binary), float(binary.mean()))
        return prepared[p]

    if threads > 1:  # every phase before the threads start, which then only read them
        for p in plist:
            phase(p)
    # One AMG hierarchy per phase and percolating set serves its axes (the set-up is about half of
    # a solve); each axis adds its own faces. Dropped when the phase's last axis is solved.
    bases: dict[int, list[tuple[np.ndarray, list[_Level]]]] = {p: [] for p in plist}
    left = {p: len(ax) for p in plist}
    locks = {p: threading.Lock() for p in plist}

    def shared_base(p: int, mask: np.ndarray, system: TransportSystem) -> list[_Level]:
        with locks[p]:  # another axis of the phase waits for the levels rather than building its own
            for seen, base in bases[p]:
                if np.array_equal(seen, mask):
                    return base
            base = _amg_base(_neumann_operator(system))
            bases[p].append((mask, base))
            return base

    def run(p: int, a: int) -> TransportResult:
        binary, labels, vf = phase(p)
        try:
            if name == "taufactor":
                return tortuosity_factor(binary, a, dev, name, rtol, iter_limit, conv_crit, labels=labels)
            t0 = time.perf_counter()
            mask = percolating_mask(labels, a)
            if not mask.any():
                return _blocked(vf, a, str(dev), name, t0, f"phase {PHASE_NAMES[p]}")
            d_eff, it, res, frac = _solve_system(binary, a, labels, name, dev, rtol, iter_limit,
                                                 partial(shared_base, p, mask))
            return _result(d_eff, vf, vf, it, res, frac, rtol, t0, a, str(dev), name)
        finally:
            with locks[p]:
                left[p] -= 1
                if not left[p]:
                    bases[p].clear()

    # on threads, axis by axis (each phase's levels are built once, by the first of its runs, while
    # the other threads solve other phases); one at a time, phase by phase (one phase's data held)
    order = sorted(runs, key=lambda r: (ax.index(r[1]), plist.index(r[0]))) if threads > 1 else runs
    results = ordered_results([partial(run, p, a) for p, a in order], threads)
    total = len(runs)
    out: dict[tuple[int, int], TransportResult] = {}
    try:
        for p, a in order:
            yield JobProgress(f"{stage_prefix} {PHASE_NAMES[p]} axis {a}", len(out), total,
                              f"{name} on {dev}: phase {PHASE_NAMES[p]} ({phase(p)[2]:.1%}) along axis {a}")
            out[(p, a)] = next(results)
    finally:  # a stopped job: the solves not yet started are dropped, the running ones end first
        results.close()
    yield JobProgress(f"{stage_prefix} done", total, total)
    return {key: out[key] for key in runs}


def phase_transport(
    phases: Any,
    phase_list: Iterable[int] | None = None,
    axes: Iterable[int] | None = None,
    device: Any = "cpu",
    progress: Callable[[JobProgress], None] | None = None,
    **kwargs: Any,
) -> dict[tuple[int, int], TransportResult]:
    """Tortuosity of every phase (default 0, 1, 2) and axis (default all) of a phase map.

    Returns ``{(phase, axis): TransportResult}``; ``progress`` receives the events of
    :func:`iter_phase_transport`; extra keyword arguments (``solver``, ``rtol``, ``iter_limit``,
    ``conv_crit``) go there too.
    """
    return run_job(iter_phase_transport(phases, phase_list, axes, device, **kwargs), progress)
