"""The connectivity knob fitted to a measured volume's transport (issue 18, item 3).

The bridged field ``Y1^2 + w Y2^2`` (:mod:`~napari_assb_twin.fields.bridged`, ``dof = 1 + w``) moves a
phase continuously from chi2(1)'s two families of blobs (w = 0) to chi2(2)'s tubes (w = 1). Where 3D
data are given, w of the phase that F1 carries alone (the first role of the sequential and coating
rules) is a parameter fitted to the data, like the lengths are fitted to C_ij: twins of the
candidate at every w of :data:`KNOB_GRID`, with the *same seeds* for every w (common random numbers:
Y1, and F2, are the same fields at every w, so the trend in w is not buried in realisation noise),
give that phase's mean log tau (over axes and twins, the volume score's cap); a quadratic
least-squares fit in w is solved for the measured mean log tau (:func:`fit_weight`).

Why transport and not the 3D topology: on the NMC 256^3 volume's half z < 128 the active phase's
chi_V / S_V^3 (-0.032) asks for w = 0.17 (exact expectation and 96^3 twins agree), whose 128 x 256 x 256
twins have an active tau 11-39 % below the held-out half's (7.4 / 10.9 / 13.4); the tau of w = 0.1 is
within +4 / +19 / -4 %. The topology is the more precise statistic, but tau is the prediction the
twin is for, and it is what the knob changes most (2.5x over its range against 0.04 in chi_V / S_V^3).

At what size. Near its percolation threshold a phase's tau depends on the box, and not alike for the
model and the material (NMC 256^3 volume: chi2(1) twins grow from 9 at 64^3 to 13 at 128 x 256 x 256,
the data from 8.7 to 10.4). The knob is fitted on the 3D terms' own twins and crops, so that it and
the selection score judge connectivity at one size: a coarse volume's whole extent (its solves run on
the coarse grid; fine twins up to :data:`~.volume_score.COARSE_TWIN_SIDE`), a fine volume's 64^3
crops. Twins of a 128 x 256 x 256 input's own shape cost 15-27 s each here (the 256^3 calibration's
3-minute budget holds about two), and with 2-3 seeds they put w at 0.01-0.02 on the NMC half volume,
the same as its 64^3 crops within their seed scatter (one such twin's tau scatters by +-20 %).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..events import JobProgress
from ..phases import phase_index
from .volume_score import VolumeTargets, iter_statistics

__all__ = ["KNOB_COARSE_TWINS", "KNOB_GRID", "KNOB_TWINS", "KnobFit", "fit_weight", "iter_fit_knob", "knob_phase"]

#: Bridge weights w the fit simulates (the tau change is steepest below 0.5).
KNOB_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
#: Twins per w (the same seeds for every w): three of a fine volume's 64^3 crops (two scattered the
#: NMC half volume's curve so much that its fit moved from 0.0 to 0.45).
KNOB_TWINS: int = 3
#: Twins per w for a coarse volume: its twins span the whole coarse volume (256^3 fine voxels, 64x
#: a 64^3 twin; the curves of 2 and 3 twins agreed within 0.006 in w), and ~6 s each here, where
#: three per w put the section + 64^3 coarse volume's calibration over its 300 s target.
KNOB_COARSE_TWINS: int = 2
#: Rules whose first role is F1's level set alone.
_F1_ALONE = ("sequential", "coating", "adhering")


@dataclass
class KnobFit:
    """The fitted bridge weight and what it was fitted on."""

    weight: float
    phase: str
    grid: tuple[float, ...]
    log_tau: np.ndarray  # the twins' mean log tau of the phase per grid weight
    target: float  # the measured crops' mean log tau
    scale: str  # the twins it was fitted on ("64^3 twins", "256^3 twins coarse-grained to 64^3")

    @property
    def dof(self) -> float:
        """The field's dof: 1 + weight (1 and 2 as integers)."""
        d = round(1.0 + self.weight, 2)
        return int(d) if d in (1.0, 2.0) else d

    def line(self) -> str:
        taus = ", ".join(f"{w:g}: {np.exp(t):.3g}" for w, t in zip(self.grid, self.log_tau))
        return (f"connectivity knob of the {self.phase} phase: bridge weight {self.weight:.2f} (tau of {self.scale} "
                f"per weight {taus}; measured {np.exp(self.target):.3g})")


def knob_phase(rule: str, order: Sequence[str], f1: str, f1_dof: float) -> str | None:
    """The phase whose connectivity the knob of F1 sets, or None where there is no knob: F1 must be a
    chi-square field between 1 and 2 components and carry its phase alone."""
    if rule not in _F1_ALONE or f1 != "chi2" or not 1 <= float(f1_dof) <= 2:
        return None
    return order[0]


def _group_of(targets: VolumeTargets, phase: str) -> int:
    """The targets' label holding ``phase`` (the phase itself, or a coarse volume's group)."""
    p = phase_index(phase)
    if targets.coarse is None:
        return p
    return next(g for g, members in enumerate(targets.coarse[0]) if p in members)


def fit_weight(grid: Sequence[float], log_tau: Sequence[float], target: float) -> float:
    """The bridge weight in the grid's range where a quadratic least-squares fit of the twins' mean
    log tau per grid weight comes nearest to ``target``.

    One smooth curve through all six points rather than pieces between neighbours (isotonic
    regression, then linear interpolation, was tried): on the smooth curves of a coarse volume's
    256^3 twins both give w = 0.151-0.157, but where a grid point's mean over a few 64^3 twins
    scatters by 10-20 % the pieces jump across a pooled flat stretch (NMC half volume, 2 twins per
    weight: 0.51, the quadratic 0.45; with the default 3 twins the quadratic gives 0.0).
    """
    x = np.asarray(grid, dtype=float)
    coef = np.polyfit(x, np.asarray(log_tau, dtype=float), 2)
    fine = np.linspace(x.min(), x.max(), 1001)
    return float(fine[np.argmin(np.abs(np.polyval(coef, fine) - target))])


def iter_fit_knob(targets: VolumeTargets, model, phase: str, seed: int = 97531,
                  grid: Sequence[float] = KNOB_GRID, twins: int | None = None) -> Generator[JobProgress, None, KnobFit]:
    """Fit the bridge weight of ``model``'s F1 to the measured transport of ``phase`` (module docstring).

    ``targets``: the 3D terms' measured statistics (their crops set the twins' size). A job: one
    event per twin; returns :class:`KnobFit`. The weight stays in the grid's [0, 1]: a measured tau
    above every twin's gives 0 (chi2(1)), below every one 1 (chi2(2)).
    """
    if twins is None:
        twins = KNOB_TWINS if targets.coarse is None else KNOB_COARSE_TWINS
    g = _group_of(targets, phase)
    target = float(np.nanmean(targets.log_tau[g]))
    runs = [(w, t) for w in grid for t in range(twins)]
    variants = {w: model.with_updates({"f1.dof": 1.0 + float(w)}) for w in grid}
    n = len(runs)
    stats = yield from iter_statistics(
        [partial(targets.twin, variants[w], seed + t) for w, t in runs], targets.names, only=[g],
        event=lambda k: JobProgress("selection", k, n, f"connectivity knob: twin {k + 1}/{n} at bridge weight "
                                                      f"{runs[k][0]:g}"))
    per_twin = np.array([float(np.mean(st["log_tau"][g])) for st in stats]).reshape(len(grid), twins)
    y = per_twin.mean(1)
    c = targets.crop
    scale = (f"{c}^3 twins" if targets.coarse is None
             else f"{c * targets.coarse[1]}^3 twins coarse-grained to {c}^3")
    return KnobFit(fit_weight(grid, y, target), phase, tuple(float(v) for v in grid), y, target, scale)
