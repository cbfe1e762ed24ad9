"""Mean structural similarity (MSSIM) between real and simulated 2D sections.

Wraps :func:`skimage.metrics.structural_similarity` (Wang et al. 2004: Gaussian window, sigma 1.5,
``K1 = 0.01``, ``K2 = 0.03``). Two representations of a phase map:

* ``"onehot"`` (default): SSIM of each phase indicator (``data_range = 1``), averaged over the phases
  present in either image. Independent of the arbitrary label order.
* ``"labels"``: SSIM of the label image itself (``data_range = 2``); treats labels as grey values,
  so it depends on the label order (0 pore, 1 active, 2 electrolyte).

Interpretation: a twin section and a measured section are different realisations, not aligned
images, so SSIM's structure term (local correlation) is near 0 for them and the score mostly compares
local means and contrasts. Read MSSIM relative to a baseline, e.g. between two measured sections
(:func:`mssim_stack` with sections of the same sample), never as an absolute match score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..phases import N_PHASES, PHASE_NAMES
from .arrays import as_phase_map

__all__ = ["mssim", "mssim_stack"]


def _section(x: Any, name: str) -> np.ndarray:
    arr = as_phase_map(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2D section, got shape {arr.shape}; use mssim_stack for stacks")
    return arr


def mssim(
    real: Any,
    simulated: Any,
    representation: str = "onehot",
    per_phase: bool = False,
    gaussian_weights: bool = True,
    sigma: float = 1.5,
    **kwargs: Any,
) -> float | dict[str, float]:
    """Mean structural similarity of two 2D phase-map sections of the same shape.

    Parameters
    ----------
    real, simulated
        2D ``uint8`` phase maps (NumPy or torch), same shape.
    representation
        ``"onehot"`` (per-phase indicators, averaged) or ``"labels"``; see the module docstring.
    per_phase
        With ``"onehot"``, return ``{"mssim": mean, "pore": ..., "active": ..., "electrolyte": ...}``
        (``nan`` for a phase absent from both images) instead of the mean.
    gaussian_weights, sigma, **kwargs
        Passed to :func:`skimage.metrics.structural_similarity` (defaults follow Wang et al. 2004).

    Returns
    -------
    float or dict
        MSSIM in [-1, 1]; 1 for identical sections.
    """
    from skimage.metrics import structural_similarity

    a = _section(real, "real")
    b = _section(simulated, "simulated")
    if a.shape != b.shape:
        raise ValueError(
            f"sections must have the same shape, got {a.shape} and {b.shape}; crop both to a common size"
        )
    opts = {"gaussian_weights": gaussian_weights, "sigma": sigma, "use_sample_covariance": False, **kwargs}
    if representation == "labels":
        if per_phase:
            raise ValueError("per_phase=True needs representation='onehot'")
        return float(structural_similarity(a.astype(np.float64), b.astype(np.float64),
                                           data_range=float(N_PHASES - 1), **opts))
    if representation != "onehot":
        raise ValueError(f"unknown representation {representation!r}: use 'onehot' or 'labels'")
    scores: dict[str, float] = {}
    for p in range(N_PHASES):
        ia, ib = a == p, b == p
        if not (ia.any() or ib.any()):
            scores[PHASE_NAMES[p]] = float("nan")  # absent from both: would score a meaningless 1
            continue
        scores[PHASE_NAMES[p]] = float(
            structural_similarity(ia.astype(np.float64), ib.astype(np.float64), data_range=1.0, **opts)
        )
    mean = float(np.nanmean(list(scores.values())))
    return {"mssim": mean, **scores} if per_phase else mean


def mssim_stack(real_sections: Any, simulated_sections: Any, **kwargs: Any) -> float:
    """Mean MSSIM over all pairs (real i, simulated j) of two stacks of 2D sections.

    ``real_sections`` and ``simulated_sections`` are ``(N, H, W)`` and ``(M, H, W)`` (or single 2D
    sections). Pairs with ``i == j`` are skipped when both arguments are the same object, which gives
    the real-vs-real baseline. Keyword arguments go to :func:`mssim` (``per_phase`` is not allowed).
    """
    if kwargs.get("per_phase"):
        raise ValueError("mssim_stack returns one number; call mssim(per_phase=True) per pair instead")
    same = real_sections is simulated_sections
    ra = np.asarray(real_sections.detach().cpu() if hasattr(real_sections, "detach") else real_sections)
    sa = np.asarray(simulated_sections.detach().cpu() if hasattr(simulated_sections, "detach") else simulated_sections)
    ra = ra[None] if ra.ndim == 2 else ra
    sa = sa[None] if sa.ndim == 2 else sa
    if ra.ndim != 3 or sa.ndim != 3:
        raise ValueError(f"expected stacks (N, H, W), got shapes {ra.shape} and {sa.shape}")
    vals = [mssim(r, s, **kwargs) for i, r in enumerate(ra) for j, s in enumerate(sa) if not (same and i == j)]
    if not vals:
        raise ValueError("need at least two sections to compare a stack with itself")
    return float(np.mean(vals))
