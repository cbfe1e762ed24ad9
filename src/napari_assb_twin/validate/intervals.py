"""The intervals of a validation: the twin's over its realisations, the measurement's from its sub-volumes.

One place for the three rules every table of a validation follows (the comparison's records, the CLI
table, the HTML report, the Validate dock and the sweep's summary read them from here):

**Twin: 95 % confidence interval of the model's mean** (:func:`mean_interval`). ``N`` realisations
of the model give values ``x_1..x_N``; the interval is ``mean +- t_{N-1, 0.975} s / sqrt(N)`` (Student
t with ``N - 1`` degrees of freedom, ``s`` the sample standard deviation). It holds the model's
expected value (its value on an infinitely large twin, up to the finite-size bias of the realisation
size) with probability 95 % for normally distributed values, and close to it otherwise (the coverage
on simulated twins of known models is tested: tests/test_intervals.py). It is *not* the range of one
realisation: that is the standard deviation ``s`` shown beside it ("one twin +-"), e.g. the NMC tau of
a single 128^3 twin scatters by -39..+25 % around the mean. Chosen over a prediction interval for one
realisation because the measurement carries its own sampling interval (below): comparing the model's
expected value with the material's expected value, each with its own uncertainty, counts the
measured volume's finite size once; a prediction interval for one twin would count it twice and
stretch with the realisation size, not with what is known about the model.

**Measured: 95 % interval of the material's value from sub-volumes** (:func:`sampling_interval`).
The measured volume is cut into its ``2^d`` blocks (8 octants in 3D, 4 quadrants in 2D); every
descriptor is computed on each block too, and the whole volume's standard error is estimated by batch
means, ``SE = sd(blocks) / sqrt(2^d)`` (the variance of an average of independent blocks; for a
descriptor whose variance falls as ``1/volume`` - volume fractions, surface densities, any
integral-range-limited mean - this is exact when the blocks are larger than the integral range). The
interval is ``value +- t_{2^d - 1, 0.975} SE``. Sub-volumes rather than the integral range because they
give every descriptor (tau, connectivity, chords), not only volume fractions, the same way; the price is
that blocks of a volume only a few correlation lengths wide are correlated (the interval is then too
narrow) and that a descriptor of a block is biased where it depends on size (tau near percolation).

**Colouring** (:func:`disjoint`): a difference is marked only when the two intervals do not overlap;
overlapping intervals, or a missing one (one realisation, no blocks), are neutral.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LEVEL", "MIN_BLOCK_SIDE", "band", "disjoint", "mean_interval", "sampling_interval", "sub_blocks",
           "t_quantile"]

#: Nominal coverage of every interval of a validation.
LEVEL: float = 0.95
#: Smallest side (voxels) of a measured sub-volume: below it the blocks say little about the whole.
MIN_BLOCK_SIDE: int = 8


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, dof))


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, sd)`` of values from independent realisations: the t confidence interval of
    their expected value (see the module docstring).

    ``lo``, ``hi`` and ``sd`` are NaN for fewer than two values, or when one is not finite (a phase
    that percolates in some realisations only has an infinite tau in the others: the mean is then
    infinite or NaN and no interval is claimed)."""
    x = np.asarray(list(values), dtype=float)
    nan = float("nan")
    if x.size == 0:
        return nan, nan, nan, nan
    if not np.isfinite(x).all():
        with np.errstate(invalid="ignore"):
            m = float(np.mean(x))
        if np.isnan(x).all() or (np.isinf(x).all() and len(set(x.tolist())) == 1):
            m = float(x[0])  # every realisation nan, or every one the same infinity
        return m, nan, nan, nan
    m = float(x.mean())
    if x.size < 2:
        return m, nan, nan, nan
    sd = float(x.std(ddof=1))
    half = t_quantile(x.size - 1, level) * sd / math.sqrt(x.size)
    return m, m - half, m + half, sd


def sampling_interval(value: float, parts: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """``(lo, hi)``: the whole volume's ``value`` +- the batch-means half-width of its ``parts`` (the
    same descriptor on its sub-volumes; see the module docstring). NaN without two finite parts or a
    finite value."""
    x = np.asarray(list(parts), dtype=float)
    value = float(value)
    if x.size < 2 or not np.isfinite(x).all() or not math.isfinite(value):
        return float("nan"), float("nan")
    half = t_quantile(x.size - 1, level) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return value - half, value + half


def disjoint(a_lo: float, a_hi: float, b_lo: float, b_hi: float) -> bool:
    """Whether the intervals ``[a_lo, a_hi]`` and ``[b_lo, b_hi]`` do not overlap (False when either is
    missing: no colour is claimed without both intervals)."""
    vals = (float(a_lo), float(a_hi), float(b_lo), float(b_hi))
    if not all(math.isfinite(v) for v in vals):
        return False
    return vals[1] < vals[2] or vals[3] < vals[0]


def sub_blocks(ph: np.ndarray, min_side: int = MIN_BLOCK_SIDE) -> list[np.ndarray]:
    """The ``2^d`` blocks of an image (each axis halved; an odd last voxel is dropped), or ``[]`` when a
    block would be thinner than ``min_side`` along some axis."""
    half = [n // 2 for n in ph.shape]
    if min(half) < min_side:
        return []
    blocks = []
    for corner in np.ndindex(*(2,) * ph.ndim):
        sl = tuple(slice(c * h, (c + 1) * h) for c, h in zip(corner, half))
        blocks.append(np.ascontiguousarray(ph[sl]))
    return blocks


def band(curves: Any, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise ``(mean, lo, hi)`` over the first axis of a stack of curves (one per realisation),
    with :func:`mean_interval`'s rule; lo/hi are the mean where there are fewer than two curves."""
    c = np.asarray(curves, dtype=float)
    m = c.mean(axis=0)
    if c.shape[0] < 2:
        return m, m.copy(), m.copy()
    half = t_quantile(c.shape[0] - 1, level) * c.std(axis=0, ddof=1) / math.sqrt(c.shape[0])
    return m, m - half, m + half
