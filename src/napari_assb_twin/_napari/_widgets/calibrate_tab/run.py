"""The calibrate tab's run: the worker's job (the calibrate use case, its JobProgress events passed on),
Start / Stop, the events shown as they come, and the end of a run (the best model kept and published).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton

from .._jobs import start_worker, stop_and_join
from .._common import info, notify_error
from .._state import CalibrationRun

from ....jobs.events import JobProgress


_REDRAW_S = 0.3
#: Longest wait of the worker at a closed gate (the dock opens it again after its draw, in a finally).
GATE_WAIT_S = 2.0


@dataclass
class _Failed:
    """A job that could not start (a bad setting found by the use case's entry checks)."""

    message: str


@dataclass
class _Selected:
    """The last model selection: the winning structure and the ranking table."""

    label: str
    table: str


def calibration_job(data: Any, config: Any, factory: Callable[..., Any], select: bool = False,
                    gate: threading.Event | None = None, measured_tau: Sequence[Any] = ()):
    """Generator run in the worker thread: the calibrate use case (:func:`napari_assb_twin.jobs.calibrate`,
    model selection first when ``select``), its ``JobProgress`` events passed on unchanged.

    ``gate``: before each next event the job waits (at most :data:`GATE_WAIT_S`) until it is set;
    the dock clears it while it builds the loss plot's artists, so the worker does not share the GIL
    with that work (superqt's ``pause()`` loses a ``resume()`` that comes before the pause took
    effect, which would leave the worker paused for good).

    Returns the use case's :class:`~napari_assb_twin.jobs.calibrate.CalibrationRun`, or
    :class:`_Failed` when its entry checks (settings, data, the device) refuse to start with a
    ``ValueError`` before the first event; anything later, or of another type, is a failure and
    reaches napari's error notification with its traceback. Closing this generator closes the job.
    ``measured_tau``: the tab's measured tortuosity factors (a selection term).
    """
    from ....jobs.calibrate import calibrate

    job = calibrate(data, config, select=select, variant=config.variant, factory=factory, measured_tau=measured_tau)
    started = False  # the input's representativeness comes before the entry checks: still "could not start"
    first = True
    try:
        while True:
            if not first and gate is not None:
                gate.wait(GATE_WAIT_S)
            first = False
            try:
                event = next(job)
            except StopIteration as done:
                return done.value
            except ValueError as exc:
                if started:
                    raise
                return _Failed(str(exc))
            started = started or event.stage not in ("representativeness", "note")
            yield event
    finally:
        job.close()


class CalibrationRunner:
    """The calibration dock's run controls and the worker's events."""

    def _build_run_controls(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("End after the current step, keeping the best parameters so far")
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton("Save model…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.load_button = QPushButton("Load model…")
        self.load_button.clicked.connect(lambda: self.load_model())
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.save_button, self.load_button):
            buttons.addWidget(b)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v / %m")
        self.status = QLabel("Tick the measured Labels layers, then Start")
        self.status.setWordWrap(True)
        return buttons

    def stop_jobs(self) -> None:
        """Stop a running calibration or selection and wait for its thread (napari is closing)."""
        stop_and_join([self.worker, self._rep_worker], self._abandon)

    def _abandon(self, *args: Any) -> None:
        self._rep_stop.set()
        if self.worker is not None:
            self.worker.quit()  # closes the job at its next event (the one stop mechanism)

    # -- run --------------------------------------------------------------------------------------
    def start(self) -> Any:
        """Start calibrating in a worker thread; returns the worker, or None (with a notification)."""
        if self.worker is not None:
            notify_error("Calibration is already running; press Stop first")
            return None
        try:
            data = self.build_data()
            config = self.build_config(data.planes)
            measured = self.measured_tau()
        except (ValueError, TypeError) as exc:
            notify_error(f"Calibration: {exc}")
            return None
        if self.calibrator_factory is None:
            from ....calibrate import Calibrator

            factory: Callable[..., Any] = Calibrator
        else:
            factory = self.calibrator_factory
        self._hold_representativeness()
        self.run = CalibrationRun(total=config.iterations, running=True)
        self.calibrator = None
        self.plausibility = None
        self._returned = False
        self._gate = threading.Event()  # open: the worker runs on; closed while the loss plot is built
        self._gate.set()
        self._config = config
        self.noise_rmse = None
        self._t_start = time.monotonic()
        self.progress_bar.setRange(0, 0)  # busy: preparing has no count of its own
        self.progress_bar.setFormat("preparing…")
        self.status.setText(f"Preparing {config.variant} / {config.algorithm} on {len(data)} section(s)…")
        self.canvas.message("Model selection: fitting candidate structures (phase ordering, k, level, family)…"
                            if self.select_structure.isChecked() else "Preparing: measuring the data's coverage functions…")
        self._set_running(True)
        self.selection = None
        self.worker = start_worker(
            calibration_job, data, config, factory, self.select_structure.isChecked(), self._gate, measured,
            desc="Calibrating digital twin",
            on_yielded=self._on_yielded, on_returned=self._on_returned, on_errored=self._on_errored,
            on_finished=self._on_finished,
        )
        return self.worker

    def stop(self) -> None:
        """End the run after the current step; the best parameters so far are kept."""
        if self.worker is not None:
            self.worker.quit()  # closes the job at its next event; `finished` then keeps the best model
        self.run.stopped = True
        self.status.setText("Stopping after the current step…")
        self.stop_button.setEnabled(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.load_button.setEnabled(not running)
        self.save_button.setEnabled(not running and self.model is not None)
        for w in (self.variant, self.select_structure, self.algorithm, self.iterations, self.seed, self.device,
                  self.data_table):
            w.setEnabled(not running)

    def _on_yielded(self, event: JobProgress) -> None:
        """Show one event of the calibrate use case (the one event type), by its stage."""
        stage = event.stage
        if stage == "representativeness":
            self._show_representativeness(event.data, status=False)
            return
        if stage == "plausible":  # twins of the plausible structures, after the calibration
            self.progress_bar.setMaximum(max(event.total, 1))
            self.progress_bar.setValue(event.done)
            self.status.setText(f"What the input decides: {event.message} ({self._elapsed():.0f} s)")
            return
        if stage == "uncertainty":
            self.plausibility = event.data
            return
        if stage == "selection":  # a model-selection step or finished candidate fit
            count = f" [{event.done}/{event.total} steps]" if event.total else ""
            self.status.setText(f"Model selection{count}: {event.message} ({self._elapsed():.0f} s)")
            return
        if stage == "selected":
            self.selection = _Selected(event.data.best["label"], event.message)
            info(f"Model selection chose: {self.selection.label}")
            self.status.setText(f"Selected {self.selection.label}; calibrating…")
            return
        if stage == "started":
            self.calibrator = event.data
            self.run.device = str(getattr(event.data, "device", ""))
            self.run.total = int(event.total or self.run.total)
            self.status.setText(f"Measuring the data's sampling noise… ({self._elapsed():.1f} s)")
            return
        if stage == "noise":
            self.noise_rmse = event.data
            self.run.prepare_s = self._elapsed()
            self.status.setText(f"Calibrating on {self.run.device}… (prepared in {self.run.prepare_s:.1f} s)")
            return
        if stage != "calibrate":
            return
        rec = event.data
        self.run.update(rec)
        if self.progress_bar.maximum() == 0:  # first training step: leave the busy state
            self.progress_bar.setFormat("%v / %m")
        self.progress_bar.setMaximum(max(self.run.total, 1))
        self.progress_bar.setValue(min(self.run.iteration, self.run.total))
        now = time.monotonic()
        if now - self._last_draw >= _REDRAW_S or self.run.iteration >= self.run.total:
            self._last_draw = now
            self._show_status()
            self._paused_while(self.plot_losses)
            self.show_params(self.run.params)

    def _paused_while(self, draw: Callable[[], None]) -> None:
        """Run ``draw`` with the worker held at its next event (the job's gate closed) when the loss
        plot is built again (its artists in the GUI thread, its picture in a render thread): the
        worker shares the GIL, which made that GUI-thread work take twice as long; blitted updates
        (a few ms) never hold it."""
        if self._update_losses():
            return
        self._gate.clear()  # the worker waits at its next event
        try:
            draw()
        finally:
            self._gate.set()

    def _elapsed(self) -> float:
        """Wall time since Start, preparation included."""
        return time.monotonic() - self._t_start if self._t_start else 0.0

    def rmse_text(self, loss: float) -> str:
        """``coverage RMSE 0.0123 (data noise 0.0041)``: the loss in C_ij units with its reference."""
        from ....calibrate.noise import rmse_line

        line = rmse_line(loss, self.noise_rmse)
        if math.isfinite(loss) and self.noise_rmse is None and self.run.prepare_s:
            line += " (data noise n/a: too little data to split in halves)"
        return line

    def _show_status(self) -> None:
        r = self.run
        self.status.setText(
            f"{r.phase} · iteration {r.iteration}/{r.total} · best {self.rmse_text(r.best_loss)} · "
            f"{self._elapsed():.1f} s elapsed (preparation {r.prepare_s:.1f} s) on {r.device}"
        )

    def _on_returned(self, result: Any) -> None:
        self._returned = True
        if isinstance(result, _Failed):
            notify_error(f"Calibration: {result.message}")
            self.status.setText(f"Not started: {result.message}")
            self.canvas.message("Calibration could not start (see the notification)")
            self.calibration_finished.emit(None)
            return
        self._finish(result.calibrator)

    def _uncertainty_text(self) -> str:
        """The plausible set and undecided phases of the run, for the status line (full text as its
        tooltip and in a notification, where it cannot be missed)."""
        p = self.plausibility
        if p is None:
            return ""
        lines = p.lines()
        self.status.setToolTip("\n".join(lines))
        undecided = [ln for ln in lines if ln.startswith("the input does not determine")]
        for ln in undecided:
            info(ln[0].upper() + ln[1:])
        head = f" {len(p.plausible)} structure(s) fit equally well"
        return head + (": " + "; ".join(undecided) + " (hover for the tau intervals)" if undecided
                       else "; tau decided within 1.5x (hover for the intervals)")

    def _on_errored(self, exc: BaseException) -> None:
        # napari's worker already shows the traceback as a notification; keep the widget usable
        self._returned = True
        self.status.setText(f"Calibration failed: {exc}")
        self.calibration_finished.emit(None)

    def _on_finished(self) -> None:
        if not self._returned and self.calibrator is not None:
            self._finish(self.calibrator)  # Stop / quit(): no `returned`, keep the best
        elif not self._returned:  # stopped in model selection or preparation: nothing calibrated
            from ....jobs.calibrate import STOPPED_IN_SELECTION

            selecting = self.select_structure.isChecked()
            self.status.setText(f"Stopped: {STOPPED_IN_SELECTION}" if selecting
                                else "Stopped before a model was calibrated; press Start to calibrate")
            self.canvas.message("Stopped before a model was calibrated")
            self.calibration_finished.emit(None)
        self.worker = None
        self.run.running = False
        self._set_running(False)
        if self.progress_bar.maximum() == 0:  # ended while preparing
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setFormat("%v / %m")

    def _finish(self, cal: Any) -> None:
        """Take the best model of a finished or stopped run, show it and publish it.

        A run stopped before its first evaluated step has no calibrated model: nothing is
        published and the status says so.
        """
        self.run.running = False
        done, total = self.run.iteration, self.run.total
        best_loss = float(getattr(cal, "best_loss", math.inf))
        elapsed = f"{self._elapsed():.1f} s"
        if done == 0 or not math.isfinite(best_loss):
            self.status.setText(f"Stopped after {done}/{total} iterations ({elapsed}) before any model was "
                                "evaluated; no model was kept. Press Start to calibrate")
            self.canvas.message("Stopped before a model was calibrated")
            self.calibration_finished.emit(None)
            return
        model = cal.best_model
        self.model = model
        how = "finished" if done >= total and not self.run.stopped else "stopped"
        layers = ", ".join(self._data_layers)
        cfg = self._config
        self.model_source = f"calibrated on {layers} ({cfg.variant}, {cfg.algorithm}, {done} it, {how})"
        self.plot_losses()
        self.show_params(model.interpretable())
        rmse = self.rmse_text(best_loss)
        if how == "finished":
            text = f"Calibration finished: {done} iterations in {elapsed}; best {rmse}."
        else:
            text = (f"Calibration stopped at iteration {done} of {total} ({elapsed}); the kept model is the best "
                    f"evaluated so far ({rmse}) and may be only partly calibrated.")
        self.status.setText(text + " It is offered in the Generate tab" + self._uncertainty_text())
        self.state.publish(model, self.model_source, measured_layer=self._data_layers[0] if self._data_layers else None)
        info(f"Calibration {how} after {done}/{total} iterations: kept the best model ({rmse})")
        self.calibration_finished.emit(model)
