"""Use case: a parameter sweep (grid x realisations of twins, their descriptors and transport).

Everything that can be checked is checked before a cluster starts: the ``--vary`` syntax and keys,
every grid point's values against the model, the device. The work itself is
:func:`napari_assb_twin.validate.sweep.iter_sweep` (resumable per case).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from .events import JobProgress
from .inputs import check_seed, check_writable_folder

__all__ = ["sweep"]


def sweep(model: Any, vary: Sequence[Any], *, seed: int = 0, **settings: Any) -> Generator[JobProgress, None, Any]:
    """Run or resume a sweep; yields progress, returns the :class:`~napari_assb_twin.validate.SweepResult`.

    ``settings`` are those of :func:`napari_assb_twin.validate.sweep.iter_sweep` (``realisations``,
    ``shape``, ``out``, ``transport``, ``geometry``, ``device``, ``scheduler``, ``n_workers``, ``plots``,
    ``force``).
    """
    from ..validate.sweep import iter_sweep, parse_vary

    if not vary:
        raise ValueError("give at least one --vary KEY=START:STOP:N (keys: see `assb-twin models NAME`)")
    axes = [parse_vary(v) if isinstance(v, str) else v for v in vary]
    out = settings.get("out")
    if out is not None and not Path(out).is_file():  # a file is refused by the sweep with its own words
        check_writable_folder(Path(out), what=f"--out {out}", create=False)
    return (yield from iter_sweep(model, axes, seed=check_seed(seed), **settings))
