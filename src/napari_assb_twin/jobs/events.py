"""The progress events every job yields (torch-free), so every front end shows them alike."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["JobProgress", "JobStopped", "bridge", "run_job"]

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


class JobStopped(Exception):
    """Raised inside a bridged callback once the job's consumer has gone (see :func:`bridge`)."""


def bridge(
    work: Callable[[Callable[..., None]], R], to_event: Callable[..., JobProgress]
) -> Generator[JobProgress, None, R]:
    """Turn a blocking function that reports through a callback into a job generator.

    ``work(report)`` runs in a helper thread; each ``report(*args)`` becomes the event
    ``to_event(*args)``, yielded in the caller's thread as it happens. If the generator is closed
    early (or an exception is thrown into it), the next ``report`` raises :class:`JobStopped` in the
    helper thread and the generator waits for it to finish, so no work outlives the job. Used where
    a core function has a callback but no generator version yet.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def report(*args: Any) -> None:
        if stop.is_set():
            raise JobStopped
        q.put(("event", args))

    def target() -> None:
        try:
            q.put(("done", work(report)))
        except BaseException as exc:  # noqa: BLE001 - handed to the generator's thread
            q.put(("error", exc))

    thread = threading.Thread(target=target, name="assb-twin-job", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "event":
                yield to_event(*value)
            elif kind == "error":
                raise value
            else:
                return value
    finally:
        stop.set()
        thread.join()
