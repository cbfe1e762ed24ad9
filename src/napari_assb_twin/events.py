"""The progress events every job yields (torch-free), so every front end shows them alike.

A ground-floor module: core computations (``stats``, ``validate``, ``calibrate``) and the use cases
(``jobs``, which re-exports it as ``jobs.events``) import it; it imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["JobProgress", "relay", "run_job"]

R = TypeVar("R")


@dataclass(frozen=True)
class JobProgress:
    """One progress report of a running job.

    Attributes
    ----------
    stage
        Short name of what is being done now ("preparing data", "transport pore axis 0", ...).
    done, total
        Units of work finished and planned in the whole job (``total = 0``: unknown).
    message
        A line for a log or a status bar ("" when the stage says it all).
    data
        Stage-specific payload for front ends that show more (a calibration record, a table ...).
    """

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""
    data: Any = field(default=None, compare=False)

    def __str__(self) -> str:
        """One readable line for logs: ``"[done/total] stage: message"``."""
        count = f"[{self.done}/{self.total}] " if self.total > 0 else ""
        return f"{count}{self.stage}" + (f": {self.message}" if self.message else "")

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or ``None`` when the total is unknown."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else None


def run_job(job: Generator[JobProgress, None, R], on_progress: Callable[[JobProgress], None] | None = None) -> R:
    """Drive a job generator to its end, passing each event to ``on_progress``; return its result.

    An exception raised by ``on_progress`` (Ctrl-C or SIGTERM arriving while a front end draws a
    progress bar, a Stop button's exception) is thrown into the job at the event it was showing, so
    the job's own clean-up (keeping the best model, removing partial files) runs before the
    exception propagates.
    """
    pending: BaseException | None = None
    while True:
        try:
            event = job.throw(pending) if pending is not None else next(job)
        except StopIteration as stop:
            return stop.value
        pending = None
        if on_progress is not None:
            try:
                on_progress(event)
            except BaseException as exc:  # noqa: BLE001 - handed to the job, which re-raises it
                pending = exc


def relay(
    job: Generator[JobProgress, None, R], offset: int = 0, total: int | None = None, message: str = "",
    check: Callable[[], None] | None = None,
) -> Generator[JobProgress, None, R]:
    """Re-yield a sub-job's events inside a larger job and return its result.

    ``done`` is shifted by ``offset``, ``total`` replaced when given, and ``message`` (e.g. the
    image's name) put in front of the event's message. As ``yield from`` would: an exception thrown
    in at an event (Ctrl-C, a front end's stop) is thrown into the sub-job at that event, and
    closing the relay closes the sub-job. ``check`` is called at each of the sub-job's events before
    it is passed on: what it raises ends the relay and closes the sub-job (work beside it that failed).
    """
    from dataclasses import replace

    pending: BaseException | None = None
    try:
        while True:
            try:
                event = job.throw(pending) if pending is not None else next(job)
            except StopIteration as stop:
                return stop.value
            pending = None
            if check is not None:
                check()
            text = f"{message}: {event.message}" if message and event.message else (message or event.message)
            try:
                yield replace(event, done=event.done + offset, total=event.total if total is None else total,
                              message=text)
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the sub-job, which re-raises it
                pending = exc
    finally:
        job.close()
