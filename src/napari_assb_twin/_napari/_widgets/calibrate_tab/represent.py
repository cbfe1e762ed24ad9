"""The calibrate tab's measure of how representative the ticked layers are (issue 21): debounced, in a
worker thread, shown in the status line with the full text as its tooltip."""

from __future__ import annotations

import threading
from typing import Any

from qtpy.QtCore import QTimer

from .._jobs import start_worker


class _Abandoned(Exception):
    """The dock asked a representativeness measurement to end (napari is closing)."""


def _measure_representativeness(data: Any, stop: threading.Event) -> Any:
    """Worker body: the data's :meth:`~napari_assb_twin.calibrate.CalibrationData.representativeness`,
    the reason it cannot be estimated (a str), or None when ``stop`` was set (checked between its steps)."""

    def check() -> None:
        if stop.is_set():
            raise _Abandoned

    try:
        return data.representativeness(check=check)
    except ValueError as exc:
        return str(exc)
    except _Abandoned:
        return None


class RepresentativenessView:
    """Measure how representative the ticked layers are whenever the choice changes: debounced
    (ticking several boxes starts one computation), in a worker thread (a 256^3 volume takes
    seconds), shown in the status line with the full text as its tooltip. ``representativeness``
    holds the last result (None: none ticked or not estimable)."""

    def _init_representativeness(self) -> None:
        self.representativeness: Any = None
        self._rep_worker: Any = None
        self._rep_again = False
        self._rep_in_status = False  # the status line shows the measurement (no run since it was asked for)
        self._rep_stop = threading.Event()  # set when napari closes: the measurement ends at its next step
        self._rep_timer = QTimer(self)
        self._rep_timer.setSingleShot(True)
        self._rep_timer.setInterval(400)
        self._rep_timer.timeout.connect(self.update_representativeness)
        self.data_table.changed.connect(self._rep_timer.start)
        self._rep_timer.start()  # the table ticks the top layer when the dock opens

    def _rep_choice(self) -> tuple:
        """What a measurement depends on: the ticked layers with their planes and the coarse settings."""
        return (tuple((lay.name, plane) for lay, plane in self.data_table.checked()),
                self.settings.coarse_labels.value, self.settings.coarse_operator.value)

    def _hold_representativeness(self) -> None:
        """A run starts: its own first event brings the representativeness of this choice (so it is not
        measured again afterwards), and a measurement still running must not overwrite the run's status."""
        self._rep_timer.stop()
        self._rep_in_status = False
        self._rep_key = self._rep_choice()

    def update_representativeness(self) -> Any:
        """Start measuring the ticked layers' representativeness; returns the worker (None: nothing to measure)."""
        if self.worker is not None:  # a calibration runs: its own first event brings it
            return None
        if self._rep_worker is not None:  # measure again when the running one ends
            self._rep_again = True
            return None
        # the same choice is not measured again: the table also signals a change when layers are added
        # (a generated twin), and the run's result in the status line must stay
        key = self._rep_choice()
        if key == getattr(self, "_rep_key", None):
            return None
        self._rep_key = key
        try:
            data = self.build_data()
        except (ValueError, TypeError):  # nothing usable ticked: the Start button says why
            self.representativeness = None
            self.status.setToolTip("")
            return None
        self.status.setText("Measuring how representative the ticked data are…")
        self._rep_in_status = True
        self._rep_worker = start_worker(
            _measure_representativeness, data, self._rep_stop, desc="Representativeness of the data",
            on_returned=self._show_representativeness, on_errored=lambda exc: self._show_representativeness(str(exc)),
            on_finished=self._rep_finished,
        )
        return self._rep_worker

    def _rep_finished(self) -> None:
        self._rep_worker = None
        if self._rep_again:
            self._rep_again = False
            self.update_representativeness()

    def _show_representativeness(self, rep: Any, status: bool = True) -> None:
        """Show a result (or the reason there is none, a str) in the status line and its tooltip."""
        if rep is None:  # abandoned (napari is closing)
            return
        if isinstance(rep, str):
            self.representativeness = None
            text, tip = f"Representativeness not estimated: {rep}", rep
        else:
            self.representativeness = rep
            text, tip = rep.summary() + " (hover for details)", "\n".join(rep.lines())
        self.status.setToolTip(tip)
        if status and self._rep_in_status and self.worker is None:
            self.status.setText(text)
