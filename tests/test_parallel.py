"""Independent solves on threads (``stats.parallel``): results in the order given whatever order the
threads finish in, a stop drops the calls not started and waits for the running ones, and the
transport use cases give the same taus on one thread and on several."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_assb_twin.events import JobProgress, run_job
from napari_assb_twin.stats import parallel
from napari_assb_twin.stats.parallel import ordered_results, solver_threads
from napari_assb_twin.stats.transport import iter_phase_transport


def test_results_come_in_the_order_given_though_later_calls_end_first():
    ended: list[int] = []

    def call(k: int, delay: float):
        def run():
            time.sleep(delay)
            ended.append(k)
            return k * k
        return run

    calls = [call(0, 0.3), call(1, 0.0), call(2, 0.1), call(3, 0.0)]
    assert list(ordered_results(calls, 2)) == [0, 1, 4, 9]
    assert ended != [0, 1, 2, 3]  # they did overlap: call 1 ended before call 0


def test_a_stopped_iteration_drops_the_calls_not_started_and_waits_for_the_running_ones():
    started: list[int] = []
    running = threading.Event()

    def call(k: int):
        def run():
            started.append(k)
            running.set()
            time.sleep(0.2)
            return k
        return run

    before = threading.active_count()
    results = ordered_results([call(k) for k in range(20)], 2)
    assert next(results) == 0
    results.close()  # what a stopped job's generator does
    assert len(started) <= 4  # 20 calls: the ones queued behind the two threads never ran
    assert threading.active_count() == before  # no solver thread outlives the stop


def test_one_thread_runs_in_the_calling_thread():
    where: list[str] = []
    assert list(ordered_results([lambda: where.append(threading.current_thread().name)] * 2, 1)) == [None, None]
    assert where == [threading.current_thread().name] * 2
    assert 1 <= solver_threads(64**3) <= parallel.MAX_SOLVER_THREADS


def test_big_images_get_as_many_threads_as_the_available_memory_holds(monkeypatch):
    monkeypatch.setattr(parallel, "MAX_SOLVER_THREADS", 4)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    n = 256**3
    one_more = parallel.SOLVE_BYTES_PER_VOXEL * n / parallel.SOLVE_MEMORY_SHARE  # memory for a 2nd solve
    for available, threads in ((0.5 * one_more, 1), (1.2 * one_more, 2), (2.5 * one_more, 3), (100 * one_more, 4)):
        monkeypatch.setattr(parallel, "_available_memory", lambda a=available: int(a))
        assert solver_threads(n) == threads, available
    assert solver_threads(0) == 4  # small images: memory is not asked
    monkeypatch.setattr(parallel, "_available_memory", lambda: None)  # no reading: big images one at a time
    assert solver_threads(parallel.PARALLEL_MAX_VOXELS + 1) == 1
    assert solver_threads(parallel.PARALLEL_MAX_VOXELS) == 4


def test_phase_transport_gives_the_same_taus_on_one_thread_and_on_several(monkeypatch):
    f = ndi.gaussian_filter(np.random.default_rng(4).standard_normal((30, 32, 34)), 2.0)
    phases = np.digitize(f, np.quantile(f, [0.35, 0.75])).astype(np.uint8)
    monkeypatch.setattr(parallel, "MAX_SOLVER_THREADS", 1)
    one = run_job(iter_phase_transport(phases), None)
    monkeypatch.setattr(parallel, "MAX_SOLVER_THREADS", 3)
    if solver_threads(phases.size) < 2:
        pytest.skip("this process may use one CPU only: nothing runs on several threads")
    several = run_job(iter_phase_transport(phases), None)
    assert set(one) == set(several) == {(p, a) for p in range(3) for a in range(3)}
    for key in one:  # each solve is sequential on its own: the same numbers, not merely close ones
        assert (one[key].tau, one[key].iterations) == (several[key].tau, several[key].iterations), key
    assert any(np.isfinite(r.tau) and r.tau > 1 for r in one.values())


def test_volume_statistics_of_several_volumes_overlap_and_keep_their_order(monkeypatch):
    from napari_assb_twin.calibrate.volume_score import iter_statistics, volume_statistics

    vols = []
    for seed in range(4):
        f = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal((24, 24, 24)), 1.5)
        vols.append(np.digitize(f, np.quantile(f, [0.4, 0.7])).astype(np.uint8))
    alone = [run_job(volume_statistics(v, threads=1), None) for v in vols]
    monkeypatch.setattr(parallel, "MAX_SOLVER_THREADS", 2)
    events = []
    together = run_job(iter_statistics([lambda v=v: v for v in vols], event=lambda k: JobProgress("t", k, 4, "")),
                       events.append)
    assert [e.done for e in events] == [0, 1, 2, 3]
    for a, b in zip(alone, together):
        for key in ("log_tau", "percolating", "chi_s3"):
            assert np.array_equal(a[key], b[key]), key
    assert len({float(s["log_tau"][1].sum()) for s in alone}) == 4  # four different volumes, not one
