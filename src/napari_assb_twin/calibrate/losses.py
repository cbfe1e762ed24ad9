"""Differentiable losses of calibration: model -> coverage functions -> distance to data.

The model's expected C_ij is either computed exactly from its covariances (:func:`expected_coverage`,
the default of algorithm 1: noise-free and cheap) or estimated from a batch of directly simulated
periodic 2D sections (:func:`model_coverage`, the path of the adversarial algorithms and of
``estimator="sampled"``); the data's from the measured images (minus-sampling estimator, see
:meth:`CalibrationData.coverage_targets`). The loss is a weighted mean of squared differences over
the 6 unordered phase pairs and r = 1..r_max, divided by ``COVERAGE_SCALE**2`` so that a loss of 1
means an RMS deviation of 0.01 in probability (easy to read next to the 0.02 acceptance bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from ..model import ThreePhaseModel
from ..phases import N_PHASES
from ..stats.coverage import coverage_onehot

__all__ = [
    "COVERAGE_SCALE",
    "coverage_loss",
    "expected_coverage",
    "loss_to_rmse",
    "model_coverage",
    "model_coverage_halves",
    "simulate_sections",
    "targets_to_tensors",
]

#: Probability scale of the coverage loss (loss = mean squared deviation / scale^2).
COVERAGE_SCALE = 0.01

_IU = np.triu_indices(N_PHASES)


def simulate_sections(
    model: ThreePhaseModel,
    size: int | tuple[int, int],
    plane: str,
    batch: int,
    generator: torch.Generator,
    mode: str = "st",
    temperature: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sections for training plus their hard one-hot version from the *same* fields.

    Returns
    -------
    x : Tensor ``(batch, 3, H, W)``
        ``"st"``: hard values with sigmoid gradients; ``"soft"``: sigmoid probabilities;
        ``"hard"``: one-hot, no gradient.
    hard : Tensor ``(batch, 3, H, W)``
        One-hot of the hard labels (no gradient), used for the loss that tracks the best model.
    """
    size = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
    x, hard = model.section_maps(size, plane, batch, generator, "soft" if mode == "st" else mode, temperature)
    if mode == "st":
        return _StraightThrough.apply(x, hard), hard
    return x, hard


class _StraightThrough(torch.autograd.Function):
    """Forward: exactly the hard one-hot maps (not ``hard + p - p``, whose rounding leaves values
    like 1 - 6e-8 a discriminator could learn); backward: the gradient of the sigmoid maps."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def expected_coverage(model: ThreePhaseModel, planes, r_max: int) -> dict[tuple[str, str], torch.Tensor]:
    """The model's exact expected C_ij per (plane, direction) of the data's planes (no simulation).

    Same keys as :func:`model_coverage`: in-plane sections inform the in-plane direction, axial
    sections the axial direction (rows) and the in-plane direction (columns).
    """
    c: dict[str, torch.Tensor] = {}

    def along(direction: str) -> torch.Tensor:  # each direction once, though two planes may need it
        if direction not in c:
            c[direction] = model.expected_coverage(r_max, direction)
        return c[direction]

    out: dict[tuple[str, str], torch.Tensor] = {}
    for plane in planes:
        if plane == "inplane":
            out[("inplane", "inplane")] = along("inplane")
        else:
            out[("axial", "axial")] = along("axial")
            out[("axial", "inplane")] = along("inplane")
    return out


def model_coverage(x: torch.Tensor, plane: str, r_max: int) -> dict[tuple[str, str], torch.Tensor]:
    """Batch-mean periodic C_ij per (plane, direction) of simulated sections ``x``.

    In-plane sections inform the in-plane direction along both axes (averaged); axial sections the
    axial direction (rows) and the in-plane direction (columns). Values: ``(3, 3, r_max + 1)``.
    """
    directional, _ = coverage_onehot(x, r_max, periodic=True, radial=False)
    return _by_direction(directional.mean(0), plane)


def model_coverage_halves(
    x: torch.Tensor, plane: str, r_max: int
) -> tuple[dict[tuple[str, str], torch.Tensor], dict[tuple[str, str], torch.Tensor], dict[tuple[str, str], torch.Tensor]]:
    """Like :func:`model_coverage` for the whole batch and for its two halves (one FFT pass)."""
    directional, _ = coverage_onehot(x, r_max, periodic=True, radial=False)
    half = x.shape[0] // 2
    return (
        _by_direction(directional.mean(0), plane),
        _by_direction(directional[:half].mean(0), plane),
        _by_direction(directional[half:].mean(0), plane),
    )


def _by_direction(d: torch.Tensor, plane: str) -> dict[tuple[str, str], torch.Tensor]:
    if plane == "inplane":
        return {("inplane", "inplane"): 0.5 * (d[0] + d[1])}
    return {("axial", "axial"): d[0], ("axial", "inplane"): d[1]}


from ..options import WEIGHTINGS

#: Smallest C_ij the variance weighting divides by (rare phases must not dominate the loss).
WEIGHT_FLOOR = 2e-3


def targets_to_tensors(
    targets: Mapping[tuple[str, str], tuple[np.ndarray, float]], device: torch.device, weighting: str = "variance"
) -> dict[tuple[str, str], tuple[torch.Tensor, float, torch.Tensor]]:
    """Data coverage targets as float32 tensors on ``device``, with per-(pair, r) weights.

    ``weighting="variance"`` weighs each C_ij(r) by the inverse of its value (floored at
    :data:`WEIGHT_FLOOR`): the sampling variance of an estimated coverage probability grows about in
    proportion to it, so small probabilities (a minor phase) are measured more precisely than their
    absolute size suggests and deserve more weight. On sections of a known model this halves the
    recovery error of the least-determined length scales. Weights are normalised to mean 1, so a loss
    of 1 still means an RMS deviation of about 0.01. ``"uniform"``: every pair and distance alike.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"coverage weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    out = {}
    for k, (c, w) in targets.items():
        cd = torch.as_tensor(c, dtype=torch.float32, device=device)
        vals = cd[torch.as_tensor(_IU[0]), torch.as_tensor(_IU[1]), 1:]
        if weighting == "variance":
            wr = 1.0 / vals.clamp_min(WEIGHT_FLOOR)
            wr = wr / wr.mean()
        else:
            wr = torch.ones_like(vals)
        out[k] = (cd, float(w), wr)
    return out


def coverage_loss(
    model_cov: Mapping[tuple[str, str], torch.Tensor],
    targets: Mapping[tuple[str, str], tuple],
    model_cov2: Mapping[tuple[str, str], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Weighted squared distance between model and data C_ij (unordered pairs, r >= 1).

    Keys present in both dicts are compared, weighted by the data's pixel counts and by the
    per-(pair, r) weights of :func:`targets_to_tensors` (when the target carries them); the result
    is the weighted mean squared deviation divided by :data:`COVERAGE_SCALE` squared.

    With ``model_cov2`` (the same statistics from an independent batch) the product
    ``(C_1 - C_data)(C_2 - C_data)`` replaces the square: its expectation is exactly the squared
    distance of the *expected* model C_ij to the data, and its gradient is free of the
    correlation between a batch's residual and its own derivative, which otherwise biases the
    minimiser by O(1 / batch size).
    """
    total = None
    wsum = 0.0
    iu0 = torch.as_tensor(_IU[0])
    iu1 = torch.as_tensor(_IU[1])
    for key, cm in model_cov.items():
        if key not in targets:
            continue
        cd, w = targets[key][:2]
        wr = targets[key][2] if len(targets[key]) > 2 else 1.0
        diff = (cm - cd)[iu0, iu1, 1:]
        other = diff if model_cov2 is None else (model_cov2[key] - cd)[iu0, iu1, 1:]
        term = w * (wr * diff * other).mean()
        total = term if total is None else total + term
        wsum += w
    if total is None:
        raise ValueError("no (plane, direction) of the model sections matches the data")
    return total / wsum / COVERAGE_SCALE**2


def loss_to_rmse(loss: float) -> float:
    """RMS deviation of C_ij (probability units) from a coverage loss value."""
    return COVERAGE_SCALE * math.sqrt(max(loss, 0.0))
