"""Background jobs of the docks: start a napari thread worker, stop it, and join it on close.

Every dock runs its long work (coverage, calibration, selection, generation, validation) through
:func:`start_worker`. The worker's body is wrapped so that a :class:`threading.Event` is set when
it has really ended (returned, raised or been closed), which lets :func:`stop_and_join` wait for
the thread itself rather than for Qt signals that may never come after the window is gone.

:func:`guard_close` installs one event filter on the napari main window: when the window closes,
every registered dock is asked to stop its jobs (``dock.stop_jobs()``: set its stop flags and
``worker.quit()``) and the worker threads are joined before Qt deletes the signal objects they
emit through (otherwise: ``RuntimeError: wrapped C/C++ object of type WorkerBaseSignals has been
deleted`` and an abort).

While any dock job runs, the objects that existed when it started are frozen out of Python's cyclic
garbage collector (:func:`gc.freeze`; :func:`hold_gc`). A napari process with torch tracks ~660 000
objects; a full collection, triggered by allocations in any thread, held the GIL for 0.15 s on an
idle core and 0.4-0.65 s at load 3-4, which was most of napari's remaining pauses during a
calibration (benchmarks/bench_gui_stall.py). Frozen, a collection scans only what the job made.
Objects freed by reference counting go as before; cycles among the frozen ones wait until the last
job has ended (then everything is unfrozen and collected as usual).
"""

from __future__ import annotations

import gc
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtCore import QEvent, QObject

__all__ = ["JOIN_TIMEOUT_S", "guard_close", "hold_gc", "join_worker", "start_worker", "stop_and_join"]

#: How long closing napari waits for one worker thread to end after it was asked to stop.
JOIN_TIMEOUT_S = 120.0


_gc_holds = 0
_gc_lock = threading.Lock()


def hold_gc() -> Callable[[], None]:
    """Freeze the objects that exist now out of the cyclic garbage collector until the returned
    ``release()`` is called (once counts; later calls do nothing). Holds nest: the objects are
    unfrozen when the last one is released, from any thread."""
    global _gc_holds
    with _gc_lock:
        if _gc_holds == 0:
            gc.freeze()
        _gc_holds += 1
    released = [False]

    def release() -> None:
        global _gc_holds
        with _gc_lock:
            if released[0]:
                return
            released[0] = True
            _gc_holds -= 1
            if _gc_holds == 0:
                gc.unfreeze()

    return release


def _tracked(func: Callable[..., Any], done: threading.Event, made: list[Any] | None = None) -> Callable[..., Any]:
    """``func`` wrapped so that ``done`` is set when its thread leaves it (same kind: generator or not).

    For a generator function the generator object made is appended to ``made`` (the worker's
    ``aborted`` handler closes it, see :func:`start_worker`).
    """
    if inspect.isgeneratorfunction(func):

        def gen_inner(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            try:
                return (yield from func(*args, **kwargs))
            finally:
                done.set()

        def gen_body(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            gen = gen_inner(*args, **kwargs)
            if made is not None:
                made.append(gen)
            return (yield from gen)

        return gen_body

    def body(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            done.set()

    return body


def start_worker(
    func: Callable[..., Any],
    *args: Any,
    desc: str,
    on_returned: Callable[[Any], None],
    on_errored: Callable[[Exception], None],
    on_finished: Callable[[], None],
    on_yielded: Callable[[Any], None] | None = None,
) -> Any:
    """Run ``func(*args)`` in a napari thread worker with a progress indicator and start it.

    ``returned`` is connected first: napari emits it before ``finished``, so a dock that releases
    its worker there can take the next request as soon as the result is shown. Handlers run in
    the GUI thread (queued signals), so the caller may store the returned worker after this call.
    The worker carries ``done`` (a :class:`threading.Event` set when its thread has left ``func``).
    """
    from napari.qt.threading import create_worker

    from napari.qt.threading import GeneratorWorker
    from qtpy.QtCore import Qt

    done = threading.Event()
    made: list[Any] = []
    # handlers given through _connect, `returned` first (napari emits it before `finished`, so a
    # dock that releases its worker there can take the next request as soon as the result is
    # shown); an `errored` handler given there also stops superqt from re-raising the error in the
    # GUI thread: napari's own notification (with the traceback) is then the one pop-up, and a
    # script without an event loop is not aborted by an exception in a slot
    connect = {"returned": on_returned, "errored": on_errored, "finished": on_finished}
    if on_yielded is not None:
        connect = {"yielded": on_yielded, **connect}
    release = hold_gc()  # a full collection of napari's objects paused its window for 0.4-0.65 s
    try:
        worker = create_worker(_tracked(func, done, made), *args, _progress={"desc": desc},
                               _connect=connect, _start_thread=False)
        worker.done = done
        worker.release_gc = release
        # released in the GUI thread after the dock's own `finished` handler: the collection owed
        # to the frozen objects (0.15 s idle, 0.3-0.5 s loaded) comes after the result is shown;
        # (`finished` follows `aborted` and `errored` too); a closing window releases it in stop_and_join
        worker.finished.connect(release)
        if isinstance(worker, GeneratorWorker):
            # ``quit()`` makes the worker leave its loop with the generator suspended at a yield: close
            # it there, in the worker's thread (direct connection), so the job's clean-up runs and
            # ``done`` is set; otherwise the close guard waited its whole JOIN_TIMEOUT_S (120 s)
            worker.aborted.connect(lambda: _close(made, done), Qt.ConnectionType.DirectConnection)
        worker.start()
    except BaseException:
        release()
        raise
    return worker


def _close(made: list[Generator[Any, Any, Any]], done: threading.Event) -> None:
    """Close an aborted worker's job (its ``finally`` blocks run) and mark its thread done.

    ``made`` holds the job's generator once the worker has started it (empty when it was aborted
    before its first step: nothing ran, nothing to clean up).
    """
    try:
        for gen in made:
            gen.close()
    except Exception:  # noqa: BLE001 - no caller left to raise to (the window is closing): log it whole
        logging.getLogger(__name__).exception("a stopped job failed while it cleaned up")
    finally:
        done.set()  # a generator closed before it started runs no finally of its own


def join_worker(worker: Any, timeout: float = JOIN_TIMEOUT_S) -> bool:
    """Wait until ``worker``'s thread has ended; True if it has (or there was none)."""
    done = getattr(worker, "done", None)
    if worker is None or done is None:
        return True
    return done.wait(timeout)


def stop_and_join(workers: list[Any], stop: Callable[[], None] | None = None, timeout: float = JOIN_TIMEOUT_S) -> bool:
    """Ask jobs to end (``stop()``, then ``worker.quit()``) and wait for their threads.

    Returns True when every thread ended within ``timeout`` seconds each.
    """
    if stop is not None:
        stop()
    live = [w for w in workers if w is not None]
    for w in live:
        w.quit()
    joined = [join_worker(w, timeout) for w in live]
    for w, ended in zip(live, joined):
        if ended:  # its `finished` may never be delivered now (the window is closing)
            getattr(w, "release_gc", lambda: None)()
    return all(joined)


class _CloseGuard(QObject):
    """Event filter on napari's main window: stop and join the docks' jobs when it closes."""

    def __init__(self, window: QObject):
        super().__init__(window)
        self._docks: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.stop_s = 0.0
        window.installEventFilter(self)

    def add(self, dock: Any) -> None:
        self._docks.add(dock)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        # acts before napari's own closeEvent and never consumes the event; a close the user then
        # cancels in napari's confirmation dialog has still stopped the jobs (their best results are
        # kept), which is the price of never leaving a thread running into Qt's teardown
        if event.type() == QEvent.Type.Close:
            self.stop_all()
        return False

    def stop_all(self) -> None:
        t0 = time.monotonic()
        try:
            self._stop_docks()
        finally:
            self.stop_s = time.monotonic() - t0  # how long the close waited for the jobs (tests read it)

    def _stop_docks(self) -> None:
        for dock in list(self._docks):
            try:
                dock.stop_jobs()
            except RuntimeError:  # the dock's Qt object is already gone: nothing of it runs any more
                pass


def guard_close(viewer: Any, dock: Any) -> None:
    """Have ``dock.stop_jobs()`` called (and its workers joined) when ``viewer``'s window closes."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari hands plugins a public-only proxy
    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    if window is None:  # a viewer without a Qt window (headless scripts): nothing to guard
        return
    guard = window.findChild(_CloseGuard)
    if guard is None:
        guard = _CloseGuard(window)
    guard.add(dock)
