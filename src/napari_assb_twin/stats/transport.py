"""Tortuosity factor and effective diffusivity with TauFactor (the only module importing taufactor).

Wraps ``taufactor.Solver`` (pinned ``taufactor==1.2.1``): steady-state diffusion through one phase
(conducting, label 1) with Dirichlet faces at both ends of the transport axis and no-flux side walls,
solved by over-relaxed Jacobi iterations on a torch device. TauFactor defines

    D_eff / D_0 = (mean flux * L) / (A * dC)      and      tau = vf / (D_eff / D_0),

so the relative effective diffusivity is ``vf / tau`` (``vf`` = volume fraction of the whole phase,
isolated clusters included) and a straight channel gives ``tau = 1``.

TauFactor always transports along its first array axis; other axes are moved there first. The
device is always passed explicitly (TauFactor itself defaults to CUDA). Its printing is captured
unless ``verbose=True`` and returned in :attr:`TransportResult.log`.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["TransportResult", "tortuosity_factor", "phase_transport", "TAUFACTOR_VERSION"]

#: The TauFactor release this wrapper was written and checked against (its API changed before).
TAUFACTOR_VERSION = "1.2.1"


@dataclass(frozen=True)
class TransportResult:
    """Result of one TauFactor run (one phase, one axis).

    Attributes
    ----------
    tau
        Tortuosity factor (``inf`` when the phase does not connect the two faces).
    d_eff
        Relative effective diffusivity ``D_eff / D_0 = volume_fraction / tau`` (0 when not percolating).
    volume_fraction
        Volume fraction of the phase in the whole image.
    percolating
        Whether the phase face-connects the inlet and outlet faces along ``axis``.
    converged
        TauFactor's convergence flag (``True`` for a non-percolating phase: the answer is exact).
    iterations, seconds
        Solver iterations and wall-clock time (seconds, including set-up).
    axis, device
        Transport axis of the input array and the torch device used.
    log
        TauFactor's captured console output.
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

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON / tables)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _resolve(device: Any):
    """A torch.device from a name / torch.device, with the package's clear error messages."""
    try:
        from ..devices import resolve_device
    except ImportError:  # pragma: no cover - devices.py is part of the package skeleton
        import torch

        return torch.device(device)
    return resolve_device(device)


def _percolates(binary: np.ndarray, axis: int) -> bool:
    """True if a face-connected cluster of ``binary`` touches both faces along ``axis``."""
    labels, n = ndi.label(binary, structure=ndi.generate_binary_structure(binary.ndim, 1))
    if n == 0:
        return False
    inlet = np.unique(np.take(labels, 0, axis=axis))
    outlet = np.unique(np.take(labels, -1, axis=axis))
    common = np.intersect1d(inlet, outlet)
    return bool(np.any(common > 0))


#: TauFactor's solver computes tau (and checks convergence) once per this many iterations
_TAU_EVERY = 100
#: TauFactor's default iteration cap, the default of every caller in the package
ITER_LIMIT = 10000


def tortuosity_factor(
    binary: Any,
    axis: int = 0,
    device: Any = "cpu",
    iter_limit: int = ITER_LIMIT,
    conv_crit: float = 1e-2,
    verbose: bool = False,
) -> TransportResult:
    """Tortuosity factor and relative effective diffusivity of a binary phase along one axis.

    Parameters
    ----------
    binary
        2D or 3D boolean / 0-1 array (NumPy or torch), ``True`` = the conducting phase.
    axis
        Transport axis of ``binary`` (napari order).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"`` or a ``torch.device``; always passed
        to TauFactor explicitly.
    iter_limit, conv_crit
        TauFactor's iteration cap and flux-uniformity criterion (defaults = TauFactor's). TauFactor
        estimates tau every 100 iterations, so the cap is at least 100.
    verbose
        Let TauFactor print its progress instead of capturing it.

    Returns
    -------
    TransportResult

    Raises
    ------
    ValueError
        For arrays that are not 2D/3D, not binary, an axis that does not exist, an iteration cap
        below 100 or a criterion that is not positive.

    Notes
    -----
    Cost is (iterations) x (voxels); iterations grow with the box length and the tortuosity
    (200-1500 on the test structures). On a 2-core CPU: a few CPU-seconds per phase and axis at
    128^3, minutes at 256^3 (159 s for the NMC pore phase); use ``device="cuda"`` where available.
    """
    if hasattr(binary, "detach") and hasattr(binary, "cpu"):
        binary = binary.detach().cpu().numpy()
    arr = np.asarray(binary)
    if arr.ndim not in (2, 3):
        raise ValueError(f"binary must be a 2D or 3D array, got shape {arr.shape}")
    if arr.dtype != bool:
        vals = np.unique(arr)
        if not np.all(np.isin(vals, (0, 1))):
            raise ValueError(
                f"binary must hold only 0 and 1 (or booleans), got values {vals[:8]}; "
                "pass e.g. phases == 2 for one phase"
            )
    arr = arr.astype(bool)
    if not 0 <= int(axis) < arr.ndim:
        raise ValueError(f"axis {axis} does not exist for a {arr.ndim}D array (use 0..{arr.ndim - 1})")
    axis = int(axis)
    if isinstance(iter_limit, bool) or not isinstance(iter_limit, (int, np.integer)) or iter_limit < _TAU_EVERY:
        raise ValueError(f"iter_limit must be an integer >= {_TAU_EVERY} (TauFactor estimates tau every "
                         f"{_TAU_EVERY} iterations), got {iter_limit!r}")
    if not (isinstance(conv_crit, (int, float)) and math.isfinite(conv_crit) and conv_crit > 0):
        raise ValueError(f"conv_crit must be a positive number, got {conv_crit!r}")
    dev = _resolve(device)
    vf = float(arr.mean())
    t0 = time.perf_counter()
    if not _percolates(arr, axis):
        return TransportResult(math.inf, 0.0, vf, False, True, 0, time.perf_counter() - t0, axis, str(dev))

    import taufactor  # the only import of taufactor in the package

    # TauFactor transports along its first axis; a 2D image becomes (X, Y, 1) inside TauFactor
    img = np.ascontiguousarray(np.moveaxis(arr, axis, 0), dtype=np.uint8)
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
        solver = taufactor.Solver(img, device=dev)
        tau = solver.solve(iter_limit=iter_limit, verbose=verbose, conv_crit=conv_crit)
    tau = float(np.asarray(tau).ravel()[0])
    d_rel = float(np.asarray(solver.D_rel).ravel()[0]) if solver.D_rel is not None else float("nan")
    if not math.isfinite(tau) or tau <= 0 or d_rel <= 0:
        # face-connected but no flux found (e.g. NaN from a degenerate image): report as blocked
        tau, d_rel = math.inf, 0.0
    return TransportResult(
        tau=tau,
        d_eff=vf / tau if math.isfinite(tau) else 0.0,
        volume_fraction=vf,
        percolating=True,
        converged=bool(solver.converged),
        iterations=int(solver.iter),
        seconds=time.perf_counter() - t0,
        axis=axis,
        device=str(dev),
        log=out.getvalue(),
    )


def phase_transport(
    phases: Any,
    phase_list: tuple[int, ...] | None = None,
    axes: tuple[int, ...] | None = None,
    device: Any = "cpu",
    **kwargs: Any,
) -> dict[tuple[int, int], TransportResult]:
    """TauFactor for every phase (default 0, 1, 2) and axis (default all) of a phase map.

    Returns ``{(phase, axis): TransportResult}``; extra keyword arguments go to
    :func:`tortuosity_factor`.
    """
    from .descriptors import _axes, as_phase_map
    from ..phases import N_PHASES

    ph = as_phase_map(phases)
    plist = tuple(range(N_PHASES)) if phase_list is None else tuple(int(p) for p in phase_list)
    return {
        (p, a): tortuosity_factor(ph == p, axis=a, device=device, **kwargs)
        for p in plist
        for a in _axes(axes, ph.ndim)
    }
