"""Use cases: one function per job (calibrate, generate, compare, sweep, demo).

Each job is a generator of :class:`~napari_assb_twin.jobs.events.JobProgress` events and returns
its result (``StopIteration.value``; :func:`~napari_assb_twin.jobs.events.run_job` drives one to the
end). The CLI and the napari docks are thin adapters over these functions.
"""

from .events import JobProgress, run_job

__all__ = ["JobProgress", "run_job"]
