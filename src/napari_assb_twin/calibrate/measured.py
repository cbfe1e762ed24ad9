"""Measured tortuosity factors as constraints of model selection (issue 21, item 6).

A tau (an effective-conductivity ratio is given as its tau, ``phi / (D_eff / D)`` with the phase's
volume fraction phi) measured on the material, for example by impedance spectroscopy through
the electrode (axis 0, the stacking axis), becomes a selection term: per constraint,
``|log tau (twins of the candidate) - log tau (measured)|``, averaged over the constraints, weighted by
:data:`MEASURED_WEIGHT` (as the 3D transport term of a measured volume: a 10 % miss costs 0.19).
Tau of a phase that does not percolate in a twin counts as the cap of :mod:`.volume_score`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..phases import PHASE_NAMES

__all__ = ["MEASURED_WEIGHT", "MeasuredTau", "alike_axes", "measured_term", "parse_measured_tau"]

#: Weight of the measured-tau term in the selection score (module docstring).
MEASURED_WEIGHT: float = 2.0
#: Axis names accepted beside 0, 1, 2 (axis 0 is the stacking axis, z, of a label stack).
AXIS_NAMES: dict[str, int] = {"0": 0, "1": 1, "2": 2, "z": 0, "y": 1, "x": 2}


@dataclass(frozen=True)
class MeasuredTau:
    """One measured tortuosity factor: ``phase`` index, ``axis`` (0, 1, 2) and ``value`` (>= 1)."""

    phase: int
    axis: int
    value: float

    @property
    def text(self) -> str:
        return f"{PHASE_NAMES[self.phase]}:{self.axis}={self.value:g}"

    def to_dict(self) -> dict:
        return {"phase": PHASE_NAMES[self.phase], "axis": self.axis, "value": self.value}


def parse_measured_tau(text: str) -> MeasuredTau:
    """Parse ``PHASE:AXIS=VALUE`` (phase by name or index; axis 0/1/2 or z/y/x), e.g. ``active:0=3.2``.

    An effective-conductivity ratio is given as its tau, ``phi / (D_eff / D)`` (module docstring).
    """
    usage = ("expected PHASE:AXIS=VALUE with PHASE one of " + ", ".join(PHASE_NAMES)
             + " (or 0, 1, 2), AXIS 0, 1, 2 (or z, y, x) and VALUE the measured tortuosity factor >= 1, "
             "e.g. active:0=3.2")
    try:
        left, value = str(text).split("=", 1)
        phase, axis = left.split(":", 1)
    except ValueError:
        raise ValueError(f"measured tau {text!r}: {usage}") from None
    phase, axis = phase.strip().lower(), axis.strip().lower()
    if phase.isdigit() and int(phase) < len(PHASE_NAMES):
        p = int(phase)
    elif phase in PHASE_NAMES:
        p = PHASE_NAMES.index(phase)
    else:
        raise ValueError(f"measured tau {text!r}: unknown phase {phase!r}; {usage}")
    if axis not in AXIS_NAMES:
        raise ValueError(f"measured tau {text!r}: unknown axis {axis!r}; {usage}")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"measured tau {text!r}: {value!r} is not a number; {usage}") from None
    if not math.isfinite(v) or v < 1.0:
        raise ValueError(f"measured tau {text!r}: a tortuosity factor is a finite number >= 1 "
                         f"(tau = phi / (D_eff / D)), got {value}")
    return MeasuredTau(p, AXIS_NAMES[axis], v)


def alike_axes(model: Any) -> list[list[int]]:
    """Groups of axes the model treats alike: all three for an isotropic model, the symmetry axis and
    the two others for a cylindrical one (a twin's tau along them are realisations of one value)."""
    if not model.is_anisotropic:
        return [[0, 1, 2]]
    a = model.axis
    return [[a], [b for b in range(3) if b != a]]


def measured_term(constraints: Sequence[MeasuredTau], twins: Sequence[dict],
                  groups: Sequence[Sequence[int]] = ((0,), (1,), (2,))) -> float:
    """Mean over ``constraints`` of |log tau of the twins - log measured|.

    The twins' tau is ``1 / mean(1 / tau)`` over the twins (:func:`~.volume_score.volume_statistics`,
    ``log_tau[phase, axis]``) and the axes pooled with the measured one (``groups``, :func:`alike_axes`):
    an average of conductances, as a measurement through a sample averages its paths. Near the percolation
    threshold one 64^3 twin's tau scatters by tens of percent per axis and a twin that does not percolate
    sits at the cap; averaging 1 / tau bounds that twin's weight (it adds a conductance 0) where averaging
    log tau let it move the mean by its arbitrary cap.
    """
    if not constraints:
        return 0.0
    diffs = []
    for c in constraints:
        axes = next((list(g) for g in groups if c.axis in g), [c.axis])
        conductance = float(np.mean([np.exp(-np.asarray(t["log_tau"])[c.phase, axes]) for t in twins]))
        diffs.append(abs(-math.log(max(conductance, 1e-12)) - math.log(c.value)))
    return float(np.mean(diffs))
