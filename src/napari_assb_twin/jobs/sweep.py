"""Use case: a parameter sweep (grid x realisations of twins, their descriptors and transport).

Everything that can be checked is checked before a cluster starts: the ``--vary`` syntax and keys,
every grid point's values against the model, the device. The work itself is
:func:`napari_assb_twin.validate.sweep.iter_sweep` (resumable per case).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from typing import Any

from .events import JobProgress
from .inputs import check_seed

__all__ = ["sweep"]


def sweep(
    model: Any,
    vary: Sequence[Any],
    *,
    realisations: int = 1,
    shape: Sequence[int] = (64, 64, 64),
    out: str | os.PathLike = "sweep",
    seed: int = 0,
    transport: bool = True,
    geometry: bool = True,
    device: str = "cpu",
    scheduler: str | None = None,
    n_workers: int | None = None,
    plots: bool = True,
) -> Generator[JobProgress, None, Any]:
    """Run or resume a sweep into ``out``; yields progress, returns the :class:`~napari_assb_twin.validate.SweepResult`."""
    from ..validate.sweep import iter_sweep, parse_vary

    if not vary:
        raise ValueError("give at least one --vary KEY=START:STOP:N (keys: see `assb-twin models NAME`)")
    axes = [parse_vary(v) if isinstance(v, str) else v for v in vary]
    seed = check_seed(seed)
    return (yield from iter_sweep(model, axes, realisations, shape, out, seed, transport, geometry, device,
                                  scheduler, n_workers, plots))
