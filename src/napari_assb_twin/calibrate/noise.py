"""The data's own sampling noise of C_ij, in the units of the calibration's coverage RMSE.

A calibrated model cannot fit the measured coverage functions better than the measurement itself
determines them: with finite images the estimated C_ij(r) scatter about the material's true
C_ij(r). The split-half estimate here measures that scatter directly: the data are split into two
halves (the left and right halves of every section, or alternate sections when they are too small to halve), the
coverage loss of one half against the other is computed with the calibration's own weighting, and

    noise = RMSE(half A vs half B) / 2

is the standard error of the pooled data (each half has sqrt(2) times the noise of the whole, and
their difference sqrt(2) times that again). A model RMSE near this figure is as good as the data
allow; several times it means a real mismatch.

Pure computation (numpy / torch, imported lazily): the calibration dock shows it beside the
coverage RMSE, the CLI prints it in the calibration summary.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["coverage_noise_rmse", "rmse_line", "split_halves"]


def split_halves(sections: list[Any], r_max: int) -> tuple[list[Any], list[Any]] | None:
    """Two disjoint halves of calibration ``sections`` (2D :class:`~napari_assb_twin.phasemap.PhaseMap`), or None.

    Every section is cut into its left and right halves when each keeps a side of
    ``2 r_max + 1`` (what the minus-sampling estimator needs); otherwise planes with two or more
    sections give alternate sections to each half.
    """
    from dataclasses import replace

    a: list[Any] = []
    b: list[Any] = []
    if all(min(s.image.shape[0], s.image.shape[1] // 2) >= 2 * r_max + 1 for s in sections):
        # spatially disjoint blocks: sections cut from one volume are correlated with their
        # neighbours, so alternate sections would share their large-scale fluctuations
        for s in sections:
            half = s.image.shape[1] // 2
            a.append(replace(s, data=s.data[:, :half].copy(), source=f"{s.source} (left half)"))
            b.append(replace(s, data=s.data[:, half : 2 * half].copy(), source=f"{s.source} (right half)"))
        return a, b
    by_plane: dict[str, list[Any]] = defaultdict(list)
    for s in sections:
        by_plane[s.plane].append(s)
    for plane_sections in by_plane.values():
        if len(plane_sections) < 2:
            return None
        a += plane_sections[0::2]
        b += plane_sections[1::2]
    return (a, b) if a and b else None


def coverage_noise_rmse(data: Any, r_max: int, weighting: str = "variance") -> float | None:
    """Split-half sampling noise of the data's C_ij as an RMSE (probability units), or None.

    Parameters
    ----------
    data : CalibrationData
        The calibration data (its ``sections``).
    r_max : int
        The calibration's largest distance in pixels.
    weighting : str
        The calibration's coverage weighting (``variance`` or ``uniform``), so the figure is
        comparable with the calibration's coverage RMSE.

    Returns
    -------
    float or None
        None when the data cannot be split (a single section too small to halve, or a half that
        lacks a phase).
    """
    import torch

    from .losses import coverage_loss, loss_to_rmse, targets_to_tensors

    halves = split_halves(list(data.sections), int(r_max))
    if halves is None:
        return None
    try:
        ta = type(data)(halves[0]).coverage_targets(int(r_max))
        tb = type(data)(halves[1]).coverage_targets(int(r_max))
    except ValueError:  # a half without one of the phases: no estimate
        return None
    keys = [k for k in ta if k in tb]
    if not keys:
        return None
    cpu = torch.device("cpu")
    reference = targets_to_tensors({k: tb[k] for k in keys}, cpu, weighting)
    other = {k: torch.as_tensor(ta[k][0], dtype=torch.float32) for k in keys}
    loss = float(coverage_loss(other, reference))
    return loss_to_rmse(loss) / 2.0


def rmse_line(loss: float, noise: float | None) -> str:
    """``coverage RMSE 0.0123 (data noise 0.0041)``: a coverage loss in C_ij units with its floor.

    ``noise`` is :func:`coverage_noise_rmse` (None: not estimated, left out of the line).
    """
    import math

    from .losses import loss_to_rmse

    if not math.isfinite(loss):
        return "coverage RMSE not evaluated yet"
    return f"coverage RMSE {loss_to_rmse(loss):.4f}" + (f" (data noise {noise:.4f})" if noise is not None else "")
