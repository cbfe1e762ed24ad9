"""Independent solves on a few threads, results in order (the transport solves of one phase map).

The AMG-CG solver spends most of its time in SciPy / NumPy kernels that release the GIL, so the
nine (phase, axis) solves of a phase map overlap on threads without processes: measured 1.3-1.4x
on 2 cores for 64^3 crops (docs/benchmarks.md, "Transport solves on threads"), the same taus to
the last bit (each solve is sequential and deterministic on its own). Threads rather than
processes: nothing to spawn from a napari window, no pickling of 256^3 arrays, and a stop only
waits for the solves already running.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["MAX_SOLVER_THREADS", "PARALLEL_MAX_VOXELS", "ordered_results", "solver_threads"]

R = TypeVar("R")

#: At most this many solves at once (a laptop's performance cores; more threads share one GIL).
MAX_SOLVER_THREADS: int = 4
#: Images above this many voxels are solved one at a time. Two 256^3 solves at once gained nothing
#: (the NMC volume's nine: 173 s wall for 271 CPU-s, against ~175 s one after the other: PyAMG's
#: Gauss-Seidel holds the GIL and the longer CG of a large image is mostly that) and held 2 GB more
#: (peak 8.3 GB); 128^3 images gained 1.15x and 64^3 ones 1.3x.
PARALLEL_MAX_VOXELS: int = 128**3


def solver_threads(n_voxels: int = 0) -> int:
    """How many solves of an image of ``n_voxels`` (default: a small one) run at once: the CPUs this
    process may use (at most :data:`MAX_SOLVER_THREADS`), or 1 above :data:`PARALLEL_MAX_VOXELS`."""
    if n_voxels > PARALLEL_MAX_VOXELS:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_SOLVER_THREADS, cpus))


def ordered_results(calls: Sequence[Callable[[], R]], threads: int) -> Generator[R, None, None]:
    """Run ``calls`` on ``threads`` threads and yield their results in the order given.

    A caller that stops iterating (a closed generator, an exception) cancels the calls that have
    not started and waits for the running ones, so no solve outlives its job. ``threads <= 1``
    runs them one after another in the calling thread.
    """
    if threads <= 1 or len(calls) <= 1:
        for call in calls:
            yield call()
        return
    pool = ThreadPoolExecutor(min(threads, len(calls)), thread_name_prefix="assb-solve")
    try:
        futures = [pool.submit(call) for call in calls]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
