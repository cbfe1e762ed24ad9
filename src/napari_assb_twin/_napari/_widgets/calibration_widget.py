"""Calibration dock widget: fit a digital-twin model to Labels layers in a napari thread worker.

The worker runs the calibrate use case (:func:`napari_assb_twin.jobs.calibrate.calibrate`, model
selection first when asked) through :func:`calibration_job`; every event is a ``JobProgress``
(stages ``selection``, ``selected``, ``started``, ``noise``, ``calibrate``) that reaches the main
thread through ``yielded``, where the progress bar, the live loss curves and the parameter table are
updated (throttled, so a fast loop cannot flood the GUI). Stop, napari's cancel and closing the
window all end the job one way: ``worker.quit()``, which closes the job generator at its next
event; the best-so-far model is then taken from the calibrator of the ``started`` event (``returned``
is never emitted). The calibrated model is published to the viewer's :class:`~._state.TwinState`,
where the generator dock picks it up.

torch and the engine are imported when the widget is built or used, never at module import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._jobs import guard_close
from ._state import CalibrationRun, twin_state
from .calibrate_tab.inputs import (  # re-exported: the tab's names as before the split
    PLANE_CHOICES_2D,
    PLANE_CHOICES_3D,
    SECTIONS_PER_PLANE,
    CalibrationInputs,
    DataTable,
)
from .calibrate_tab.represent import RepresentativenessView
from .calibrate_tab.results import CalibrationResults, format_param
from .calibrate_tab.run import CalibrationRunner, _Failed, _Selected, calibration_job  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import napari


__all__ = ["CalibrationWidget", "DataTable", "format_param", "PLANE_CHOICES_2D", "PLANE_CHOICES_3D",
           "SECTIONS_PER_PLANE", "calibration_job"]


class CalibrationWidget(CalibrationInputs, CalibrationRunner, CalibrationResults, RepresentativenessView, QWidget):
    """Dock widget: calibrate a digital twin on Labels layers, live, and save / load it.

    Public sub-widgets: ``data_table``, ``variant``, ``select_structure`` (model selection before
    calibrating), ``algorithm``, ``iterations``, ``device`` (editable: ``auto`` or a device name),
    ``seed``, ``start_button``, ``stop_button``, ``save_button``, ``load_button``, ``progress_bar``,
    ``status``, ``param_table``, ``canvas``. State: ``run`` (:class:`CalibrationRun`), ``model``
    (best / loaded model), ``worker``, ``calibrator``, ``selection`` (label and ranking of the last
    model selection), ``plausibility`` (the plausible structures and tau intervals of the last run with
    selection), ``representativeness`` (of the ticked layers). ``calibrator_factory`` builds the engine
    (replaceable in tests).
    ``calibration_finished`` is emitted with the best model when a run ends (None if it could not start).
    """

    calibration_finished = Signal(object)

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = twin_state(napari_viewer)
        self.run = CalibrationRun()
        self.model: Any = None
        self.model_source = ""
        self.worker: Any = None
        self.calibrator: Any = None
        self.calibrator_factory: Callable[..., Any] | None = None
        self.selection: _Selected | None = None  # the last model selection (label, ranking table)
        self.plausibility: Any = None  # the last run's plausible structures and tau intervals
        self.noise_rmse: float | None = None  # the data's own sampling noise of C_ij (split-half)
        self._last_draw = 0.0
        self._t_start = 0.0
        self._data_layers: list[str] = []
        self._unit = "px"

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_data_box())
        layout.addWidget(self._build_settings())
        layout.addLayout(self._build_run_controls())
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        self._build_live_view()
        layout.addWidget(self.canvas, stretch=2)
        layout.addWidget(self.param_table, stretch=1)
        # closing the dock mid-run: let the training thread end instead of running on unseen
        self.destroyed.connect(self._abandon)
        guard_close(napari_viewer, self)
        self._init_representativeness()
