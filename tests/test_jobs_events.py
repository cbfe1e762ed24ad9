"""The progress events' helpers: run_job and relay pass exceptions into the job, as documented."""

from __future__ import annotations

import pytest

from napari_assb_twin.jobs.events import JobProgress, relay, run_job


def _sub(seen: list[str]):
    try:
        for i in range(5):
            yield JobProgress("sub", i, 5, f"step {i}")
        return "sub done"
    except BaseException as exc:
        seen.append(type(exc).__name__)
        raise


def _outer(seen: list[str]):
    result = yield from relay(_sub(seen), offset=10, total=20, message="image a")
    return result


def test_relay_shifts_and_returns():
    events: list[JobProgress] = []
    assert run_job(_outer([]), events.append) == "sub done"
    assert [e.done for e in events] == [10, 11, 12, 13, 14] and {e.total for e in events} == {20}
    assert events[0].message == "image a: step 0"


def test_relay_throws_into_the_sub_job_what_the_front_end_raised():
    """Ctrl-C arriving while a front end shows a relayed event must reach the sub-job as itself
    (its clean-up may keep a result), not as a GeneratorExit at garbage collection."""
    seen: list[str] = []

    def interrupt(event: JobProgress) -> None:
        if event.done == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(_outer(seen), interrupt)
    assert seen == ["KeyboardInterrupt"]


def test_closing_a_relay_closes_its_sub_job():
    seen: list[str] = []
    job = _outer(seen)
    next(job)
    job.close()
    assert seen == ["GeneratorExit"]


def test_core_modules_do_not_import_the_use_case_layer():
    """stats / validate yield the ground-floor events (napari_assb_twin.events): importing them must
    not run jobs/__init__ (calibrate.selection is left to its rewrite)."""
    import subprocess
    import sys

    code = ("import sys, napari_assb_twin.stats.transport, napari_assb_twin.stats.descriptors, "
            "napari_assb_twin.validate.compare, napari_assb_twin.validate.sweep; "
            "print(sorted(m for m in sys.modules if m.startswith('napari_assb_twin.jobs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_jobs_events_is_the_ground_floor_module_re_exported():
    from napari_assb_twin import events
    from napari_assb_twin.jobs import events as job_events

    assert job_events.JobProgress is events.JobProgress and job_events.relay is events.relay
