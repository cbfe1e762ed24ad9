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


def test_a_relay_check_that_raises_ends_it_and_closes_its_sub_job():
    """``check`` runs at each sub-job event before it is passed on: what it raises (work beside the
    sub-job that failed) ends the relay there, and the sub-job is closed, not run to its end."""
    seen: list[str] = []
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("beside: failed")

    events: list[JobProgress] = []
    with pytest.raises(RuntimeError, match="beside: failed"):
        run_job(relay(_sub(seen), check=check), events.append)
    assert len(events) == 1 and seen == ["GeneratorExit"]


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


def test_section_comparison_is_a_use_case_the_generator_dock_calls():
    """jobs.generate.compare_section (was the dock's own _compare): an isotropic model's section is
    in-plane whatever plane was asked, same shape, same seed -> same section, both C_ij by the same
    estimator up to the measured section's default r_max; the caller's model is not moved."""
    import numpy as np

    from napari_assb_twin.jobs.generate import compare_section
    from napari_assb_twin.model import load_reference_model
    from napari_assb_twin.phasemap import PhaseMap

    model = load_reference_model("reference-assb-cathode")
    measured = model.generate((2, 48, 40), seed=1, device="cpu")[0]
    events: list[JobProgress] = []
    a = run_job(compare_section(model, measured, "axial", 3, "cpu", 0.39, "um", "m"), events.append)
    b = run_job(compare_section(model, measured, "axial", 3, "cpu", 0.39, "um", "m"))
    assert [e.stage for e in events] == ["section", "section"] and events[-1].done == 1
    assert a.plane == "inplane" and a.simulated.shape == measured.shape and a.simulated.dtype == np.uint8
    np.testing.assert_array_equal(a.simulated, b.simulated)
    assert a.cov_measured.directional.shape == a.cov_simulated.directional.shape
    assert a.cov_measured.r_px[-1] == PhaseMap(measured).default_r_max() and not a.cov_measured.periodic
    assert str(next(model.parameters()).device) == "cpu"
