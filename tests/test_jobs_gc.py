"""While a dock job runs, the objects that existed at its start are out of the cyclic GC's reach
(``gc.freeze``): a full collection of a napari process held the GIL for 0.4-0.65 s on a loaded
machine, napari's longest pauses during a calibration. The hold must end with the job, however it
ends, and nest when jobs overlap."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("napari")

from napari_assb_twin._napari._widgets._jobs import hold_gc, start_worker, stop_and_join  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _no_hold_before():
    from qtpy.QtCore import QThreadPool

    from napari_assb_twin._napari._widgets import _jobs

    assert gc.get_freeze_count() == 0, "another test left objects frozen"
    # two jobs overlap here: room for them beside any worker an earlier test left in napari's pool
    # (on a 2-core machine the pool has 2 threads; a full pool left the second job unstarted)
    pool = QThreadPool.globalInstance()
    size = pool.maxThreadCount()
    pool.setMaxThreadCount(max(size, pool.activeThreadCount() + 3))
    yield
    pool.setMaxThreadCount(size)
    _jobs._gc_holds = 0  # never leak a hold into later tests, whatever failed here
    gc.unfreeze()


def _run(qtbot, func, *args, on_finished=lambda: None):
    """Start ``func`` as a dock job; ``ended`` gets an entry when its ``finished`` arrives.

    The wait goes through a handler connected before the thread starts: a ``qtbot.waitSignal``
    connected after ``start_worker`` misses a job that ends first (a queued signal reaches only the
    slots connected when it was emitted), which is how this test failed in full-suite runs."""
    results: list = []
    ended: list = []

    def finished():
        on_finished()
        ended.append(True)

    worker = start_worker(func, *args, desc="test", on_returned=results.append, on_errored=results.append,
                          on_finished=finished)
    worker.ended = ended
    return worker, results


def _collected(obj: object) -> bool:
    """``obj`` is in a generation the collector scans (frozen objects are in none)."""
    return any(o is obj for o in gc.get_objects())


def test_a_job_freezes_the_objects_before_it_and_unfreezes_at_its_end(qtbot):
    before = [object()]  # a tracked container made before the job
    seen: list[int] = []
    scanned: list[tuple[bool, bool]] = []

    def job():
        during = [object()]
        seen.append(gc.get_freeze_count())
        scanned.append((_collected(before), _collected(during)))
        yield 0
        return "done"

    in_handler: list[int] = []
    worker, results = _run(qtbot, job, on_finished=lambda: in_handler.append(gc.get_freeze_count()))
    qtbot.waitUntil(lambda: bool(worker.ended), timeout=10_000)
    assert results == ["done"]
    assert seen[0] > 1000  # a Qt + napari process has far more objects than that
    assert scanned == [(False, True)]  # the old object out of the collector's reach, the job's own in it
    # released after the dock's own `finished` handler (the owed collection comes after the result)
    assert in_handler and in_handler[0] > 0
    assert gc.get_freeze_count() == 0 and _collected(before)


def test_a_failing_and_a_stopped_job_release_the_hold_and_holds_nest(qtbot):
    def failing():
        yield 0
        raise ValueError("bad step")

    def endless(seen):
        while True:
            seen.append(gc.get_freeze_count())
            yield 0

    seen: list[int] = []
    long_worker, _ = _run(qtbot, endless, seen)
    try:
        bad_worker, bad = _run(qtbot, failing)
        qtbot.waitUntil(lambda: bool(bad_worker.ended), timeout=10_000)
        assert isinstance(bad[0], ValueError)
        qtbot.waitUntil(lambda: len(seen) > 5, timeout=10_000)
        assert gc.get_freeze_count() > 0  # the endless job still holds it after the other one ended
        assert stop_and_join([long_worker], timeout=10.0)
        assert gc.get_freeze_count() == 0  # joined: released at once (a closing window delivers no `finished`)
        for _ in range(100):  # its `finished`, if Qt still delivers one (up to 10 s), comes through the event loop
            if long_worker.ended:
                break
            qtbot.wait(100)
        assert gc.get_freeze_count() == 0  # and its `finished` later releases nothing twice
    finally:  # an endless job left running would spin beside every later test
        stop_and_join([long_worker], timeout=10.0)


def test_a_release_counts_once():
    first, second = hold_gc(), hold_gc()
    first()
    first()  # a second call of the same release must not end the other hold
    assert gc.get_freeze_count() > 0
    second()
    assert gc.get_freeze_count() == 0
