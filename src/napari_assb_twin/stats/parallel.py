"""Independent solves on a few threads, results in order (the transport solves of one phase map).

The AMG-CG solver spends its time in SciPy / NumPy kernels that release the GIL (its smoother
is a NumPy Jacobi for that reason), so the nine (phase, axis) solves of a phase map overlap on
threads without processes: measured 1.6-1.8x on 2 cores for 96^3-256^3 images
(docs/benchmarks.md, "Transport solves on threads"), the same taus to the last bit (each solve
is sequential and deterministic on its own). Threads rather than processes: nothing to spawn
from a napari window, no pickling of 256^3 arrays, and a stop only waits for the solves already
running.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = [
    "MAX_SOLVER_THREADS",
    "PARALLEL_MAX_VOXELS",
    "SOLVE_BYTES_PER_VOXEL",
    "SOLVE_MEMORY_SHARE",
    "ordered_results",
    "solver_threads",
]

R = TypeVar("R")

#: At most this many solves at once (a laptop's performance cores; more threads share one GIL).
MAX_SOLVER_THREADS: int = 4
#: Memory one more solve at once holds, per voxel of the image: the NMC 256^3 image's nine solves
#: on two threads peaked at 8.7 GB against 6.1 GB one after the other (that one measured with the
#: earlier Gauss-Seidel solver; the CSR matrices in float64 and float32, the AMG levels of up to
#: three phases, the CG vectors): 2.6 GB = 155 B per voxel.
SOLVE_BYTES_PER_VOXEL: int = 155
#: The solves beyond the first may take this share of the memory available when they start.
SOLVE_MEMORY_SHARE: float = 0.5
#: Without a reading of the available memory, images above this many voxels get one thread.
PARALLEL_MAX_VOXELS: int = 128**3


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (psutil, installed with napari), or ``None``."""
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def solver_threads(n_voxels: int = 0) -> int:
    """How many solves of an image of ``n_voxels`` (default: a small one) run at once.

    The CPUs this process may use, at most :data:`MAX_SOLVER_THREADS`, and no more than the
    available memory holds (:data:`SOLVE_BYTES_PER_VOXEL`, :data:`SOLVE_MEMORY_SHARE`): a 256^3
    image on a laptop with 16 GB gets two, one with 4 GB free gets one. The results do not depend
    on the number (each solve is sequential on its own thread).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    threads = max(1, min(MAX_SOLVER_THREADS, cpus))
    if n_voxels <= 0 or threads == 1:
        return threads
    available = _available_memory()
    if available is None:
        return 1 if n_voxels > PARALLEL_MAX_VOXELS else threads
    extra = int(SOLVE_MEMORY_SHARE * available // (SOLVE_BYTES_PER_VOXEL * n_voxels))
    return max(1, min(threads, 1 + extra))


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
