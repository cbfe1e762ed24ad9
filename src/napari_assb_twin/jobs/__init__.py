"""Use cases: one function per job (calibrate, generate, compare, sweep, demo).

Each job is a generator of :class:`~napari_assb_twin.jobs.events.JobProgress` events and returns
its result (``StopIteration.value``; :func:`~napari_assb_twin.jobs.events.run_job` drives one to the
end). The CLI and the napari docks are thin adapters over these functions; the jobs never print.
Importing this package imports neither torch nor Qt (each job imports what it needs when run).
"""

from .calibrate import CalibrationRun, calibrate, calibrate_to_files, load_calibration_data
from .compare import CompareResult, compare
from .demo import demo
from .events import JobProgress, run_job
from .generate import GenerateResult, generate
from .inputs import check_output_file, check_seed, load_model_spec, read_phase_input
from .sweep import sweep

__all__ = [
    "CalibrationRun",
    "CompareResult",
    "GenerateResult",
    "JobProgress",
    "calibrate",
    "calibrate_to_files",
    "check_output_file",
    "check_seed",
    "compare",
    "demo",
    "generate",
    "load_calibration_data",
    "load_model_spec",
    "read_phase_input",
    "run_job",
    "sweep",
]
