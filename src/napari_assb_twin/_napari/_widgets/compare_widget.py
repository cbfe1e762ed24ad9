"""Validation dock widget: every descriptor of a measured and a twin Labels layer side by side.

The comparison runs in a napari thread worker as a generator of
:class:`~napari_assb_twin.jobs.events.JobProgress` events, one per descriptor block (descriptors
of the measured image, of the twin, chord lengths, coverage functions ...): the dock's progress
bar names the block, napari's activity panel shows the same task, and Stop (or napari's cancel,
or closing napari) ends the job between blocks. The table appears in the dock and "Save report…"
writes the CSV / PNG / HTML report (:func:`napari_assb_twin.validate.write_report`) into a chosen
folder. Importing this module does not import torch: the computation imports it inside the worker.

Intervals: a twin made by the Generate tab carries its model (layer metadata), and the dock measures
``Realisations`` of it (the twin layer is the first when it is no larger than
:data:`~napari_assb_twin.options.REALISATION_SIDE` a side; larger twins are represented by
realisations of that size) and the measured layer's sub-volumes: the table shows every value with its
95 % interval and colours a difference only where the intervals do not overlap
(:mod:`napari_assb_twin.validate.intervals`). Defaults (5 realisations, no transport, no geodesic
descriptors) finish on a measured 256^3 volume well within the 5 min budget on two CPU cores; the
timings with transport are in docs/benchmarks.md ("Validation with intervals").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Labels, Layer
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...jobs.events import JobProgress
from ._common import GENERATED_TAG, TWIN_MODEL_KEY, LayerCombo, info, layer_phase_data, notify_error
from ._layerdata import check_layer
from ._jobs import guard_close, start_worker, stop_and_join

if TYPE_CHECKING:
    import napari

    from ...validate.compare import Comparison

__all__ = ["CompareWidget", "TABLE_HEADERS", "comparison_events", "layer_model", "run_comparison"]

#: Short headers (the dock is narrow at 1366 x 768: the phase column must keep its room); the header
#: tooltips say what the +- means.
TABLE_HEADERS: tuple[str, ...] = ("phase", "measured", "twin", "1 twin sd", "rel. diff.")
_HEADER_TIPS: tuple[str, ...] = (
    "phase (or pair of phases), and the axis (z, y, x) of a directional descriptor", "measured value \u00b1 the half-width of its 95 % interval (from its sub-volumes)",
    "twins' mean \u00b1 the half-width of the 95 % interval of the model's mean (over the realisations)",
    "standard deviation of one twin's value (over the realisations, or a twin's sections)",
    "(twin \u2212 measured) / |measured|; coloured only where the two 95 % intervals do not overlap")
#: Column of one twin's spread (over its realisations or sections; hidden for one image).
_SPREAD_COLUMN = 3

# background of the relative-difference cell: within 5 %, within 20 %, beyond (same as the HTML report)
_REL_COLOURS = ((0.05, "#2e7d32"), (0.20, "#b38600"), (math.inf, "#b71c1c"))


#: Result of a comparison that was stopped before it ended.
STOPPED = "stopped"


def _block_count(ndim: int) -> int:
    # the bar's range until the comparison's first event gives its own total
    return 4 if ndim == 3 else 5


def layer_model(layer: Any) -> tuple[Any, int]:
    """``(model, seed)`` of a twin layer: the model the Generate tab stored in its metadata (or the
    built-in model a sample layer names), else ``(None, 0)``."""
    meta = getattr(layer, "metadata", {}) or {}
    seed = int(meta.get("seed", 0) or 0)
    try:
        if isinstance(meta.get(TWIN_MODEL_KEY), dict):
            from ...model import model_from_dict

            return model_from_dict(meta[TWIN_MODEL_KEY]), seed
        if isinstance(meta.get("model"), str):
            from ...model import list_reference_models, load_reference_model

            if meta["model"] in list_reference_models():
                return load_reference_model(meta["model"]), seed
    except (ValueError, TypeError, KeyError):
        pass
    return None, seed


def comparison_events(
    real: Any, twin: Any, transport: bool, geometry: bool, names: tuple[str, str], stop: threading.Event,
    model: Any = None, realisations: int = 1, seed: int = 0,
) -> Generator[JobProgress, None, Any]:
    """The validation use case (:func:`napari_assb_twin.jobs.compare.compare`: the geometry rule,
    the default r_max, the solver check, the notes, the realisations of ``model``) as the dock's job:
    its events ("note", "generate", then one per descriptor block); returns the
    :class:`~napari_assb_twin.validate.compare.Comparison`, or :data:`STOPPED` when ``stop`` was set
    (checked after every event)."""
    from dataclasses import replace

    from ...jobs.compare import compare

    # "labels are canonical (identity mapping)" says nothing about a layer: not a note of the report
    real, twin = ((replace(pm, message="") if "canonical" in (pm.message or "") else pm) for pm in (real, twin))
    job = compare(real, twin, transport=transport, geometry=geometry, device="cpu", names=names,
                  model=model if realisations > 1 else None, realisations=realisations, seed=seed)
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as end:
                return end.value.comparison
            yield event
            if stop.is_set():
                return STOPPED
    finally:
        job.close()  # an early close (worker.quit) ends the comparison where it stands


@dataclass(frozen=True)
class Refused:
    """What a validation worker returns when a layer cannot be read as a phase map (its message)."""

    message: str


def layer_comparison_events(real_layer: Any, twin_layer: Any, *args: Any) -> Generator[JobProgress, None, Any]:
    """:func:`comparison_events` of two layers read into phase maps in the worker: the conversion passes
    over every voxel (two 256^3 layers held the GUI thread 0.35-0.65 s), so the dock checks only
    what is cheap (:func:`check_layer`) before starting it. A layer the conversion refuses (more than
    three labels, a single phase) ends the job with :class:`Refused`, whose message the dock shows."""
    try:
        real, twin = layer_phase_data(real_layer), layer_phase_data(twin_layer)
    except (TypeError, ValueError) as exc:
        return Refused(f"Compare: {exc}")
    return (yield from comparison_events(real, twin, *args))


def run_comparison(real: Any, twin: Any, transport: bool, geometry: bool, names: tuple[str, str],
                   model: Any = None, realisations: int = 1, seed: int = 0) -> "Comparison":
    """The whole comparison of two :class:`~napari_assb_twin.phasemap.PhaseMap` at once (scripts and tests)."""
    from ...jobs import run_job

    return run_job(comparison_events(real, twin, transport, geometry, names, threading.Event(), model,
                                     realisations, seed))


def _fmt(v: float) -> str:
    """A value in at most 8 characters (the table's number columns never cut one off)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    if v != 0 and not 1e-3 <= abs(v) < 1e5:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _pm(value: float, lo: float, hi: float) -> str:
    """``value ±half-width`` of a (symmetric) 95 % interval; the value alone without one."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _fmt(value)
    # 3 significant digits and a 1-digit half-width: the two value columns fit the dock at 1366 x 768
    # beside the phase column (the tooltip has [lo, hi] in full)
    head = f"{value:.3g}" if value != 0 and 1e-3 <= abs(value) < 1e5 else _fmt(value)
    return f"{head}\u00b1{float(f'{(hi - lo) / 2:.1g}'):g}"


def _is_generated(layer: Layer) -> bool:
    return GENERATED_TAG in getattr(layer, "metadata", {})


def _thin_axes(layer: Any) -> list[int]:
    """Axes along which a layer is a single voxel thick (a simulated section shown in 3D)."""
    return [a for a, n in enumerate(getattr(layer.data, "shape", ())) if n < 2]


def _can_validate(layer: Layer) -> bool:
    """A Labels layer of 2 or 3 axes, at least 2 voxels along each: one a validation can measure."""
    return isinstance(layer, Labels) and layer.ndim in (2, 3) and not _thin_axes(layer)


class CompareWidget(QWidget):
    """Dock widget: choose a measured and a twin Labels layer, validate, read the table, save a report.

    Public attributes (for scripting and tests): ``real_combo``, ``twin_combo``, ``transport``,
    ``geometry`` (check boxes), ``compare_button``, ``stop_button``, ``save_button``,
    ``progress_bar``, ``table`` (QTableWidget), ``status``; after a comparison ``comparison`` holds
    the result and ``compared`` is emitted. ``events`` lists the :class:`JobProgress` of the last
    run. ``report_path``: when set, "Save report" writes there instead of asking with a folder dialog.

    Preselection: the measured combo offers a layer that no generator made (an opened file or
    sample), the twin combo the generated twin; they never start on the same layer.
    """

    compared = Signal(object)

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.comparison: Comparison | None = None
        self.worker: Any = None
        self.report_path: str | None = None
        self.events: list[JobProgress] = []
        self._stop = threading.Event()

        layout = QVBoxLayout(self)
        layout.addLayout(self._build_inputs())
        layout.addLayout(self._build_buttons())
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(self._build_table(), stretch=1)
        layout.addWidget(self.notes)
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        self.preselect()
        guard_close(napari_viewer, self)

    def _build_inputs(self) -> QFormLayout:
        # Image layers are offered too, so that choosing a grey-value image explains why it cannot be used
        self.real_combo = LayerCombo(self.viewer)
        self.twin_combo = LayerCombo(self.viewer)
        self.real_combo.setToolTip("The measured (segmented) phase map")
        self.twin_combo.setToolTip("The digital twin to validate (2D or 3D; against a 2D measured section a 3D twin "
                                   "is measured on many of its sections: their mean and spread)")
        self.geometry = QCheckBox("geodesic tortuosity, constrictivity (slow)")
        self.geometry.setChecked(False)
        self.geometry.setToolTip("Minutes per 256^3 image on a CPU (about 8 min on two cores)")
        self.transport = QCheckBox("transport: tau of every phase and axis (slow)")
        self.transport.setChecked(False)
        self.transport.setToolTip("Minutes per phase and axis on a 256^3 image on a CPU; fast on a GPU")
        from ...options import VALIDATION_REALISATIONS

        self.realisations = QSpinBox()
        self.realisations.setRange(1, 50)
        self.realisations.setValue(VALIDATION_REALISATIONS)
        self.realisations.setToolTip(
            "Realisations of the twin layer's model to measure (a twin made by the Generate tab): every twin value "
            "is their mean with the 95 % interval of the model's mean; 1: the twin layer alone, no interval. "
            "The measured layer's 8 sub-volumes give its own interval. A difference is coloured only where the "
            "two intervals do not overlap")
        form = QFormLayout()
        form.addRow("Measured", self.real_combo)
        form.addRow("Twin", self.twin_combo)
        form.addRow("Realisations", self.realisations)
        form.addRow("", self.geometry)
        form.addRow("", self.transport)
        return form

    def _build_buttons(self) -> QHBoxLayout:
        self.compare_button = QPushButton("Validate")
        self.compare_button.clicked.connect(self.compare)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("End after the descriptor block being computed")
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton("Save report…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save_report())
        buttons = QHBoxLayout()
        for b in (self.compare_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("idle")
        self.status = QLabel("Choose the measured and the twin layer and press Validate")
        self.status.setWordWrap(True)
        self.notes = QLabel("")  # the comparison's notes (what was assumed, skipped, how to read a row)
        self.notes.setWordWrap(True)
        self.notes.setTextFormat(Qt.TextFormat.PlainText)
        self.notes.setVisible(False)
        return buttons

    def _build_table(self) -> QTableWidget:
        self.table = QTableWidget(0, len(TABLE_HEADERS))
        self.table.setHorizontalHeaderLabels(list(TABLE_HEADERS))
        for col, tip in enumerate(_HEADER_TIPS):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        header = self.table.horizontalHeader()
        # a descriptor is a full-width group row (its name and unit never cut off); the value
        # columns fit their contents (at most 8 characters each) and the phase column takes the rest
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(TABLE_HEADERS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setColumnHidden(_SPREAD_COLUMN, True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setMinimumHeight(160)
        return self.table

    # -- layer choice -----------------------------------------------------------------------------
    def preselect(self) -> None:
        """Measured = the top layer no generator made, twin = the top generated one (never the same)."""
        # the generator's one-slice "simulated section" layer is a picture, not a twin: never offered first
        layers = [lay for lay in reversed(self.viewer.layers) if _can_validate(lay)]
        measured = [lay for lay in layers if not _is_generated(lay)]
        twins = [lay for lay in layers if _is_generated(lay)]
        real = measured[0] if measured else (layers[0] if layers else None)
        others = [lay for lay in twins + measured + layers if lay is not real]
        if real is not None:
            self.real_combo.set_layer(real)
        if others:
            self.twin_combo.set_layer(others[0])

    def _on_inserted(self, event: Any) -> None:
        try:
            layer = event.value
            if _is_generated(layer) and _can_validate(layer):
                self.twin_combo.set_layer(layer)  # a new twin is what one validates next
            elif self.real_combo.layer() is self.twin_combo.layer():
                self.preselect()
        except RuntimeError:  # this dock was closed (Qt object deleted): stop listening
            self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        except ValueError:  # not offered (not a Labels layer)
            pass

    # -- actions ----------------------------------------------------------------------------------
    def compare(self) -> Any:
        """Start the validation in a worker thread; returns the worker (None when inputs are bad)."""
        if self.worker is not None:
            notify_error("Validate: a validation is already running; press Stop first")
            return None
        self._clear_result()  # a refused or new run never leaves an old table looking current
        real_layer, twin_layer = self.real_combo.layer(), self.twin_combo.layer()
        for role, layer in (("measured", real_layer), ("twin", twin_layer)):
            if isinstance(layer, Layer) and _thin_axes(layer):
                notify_error(f"Validate: the {role} layer {layer.name!r} {tuple(layer.data.shape)} is one voxel thick "
                             f"along axis {_thin_axes(layer)[0]} (a simulated section?); choose a 2D or 3D phase map "
                             "of at least 2 voxels along every axis")
                return None
        try:
            real, twin = check_layer(real_layer), check_layer(twin_layer)  # cheap: the conversion runs in the worker
        except (TypeError, ValueError) as exc:
            notify_error(f"Compare: {exc}")
            return None
        if real.ndim == 3 and twin.ndim == 2:
            notify_error(f"Compare: the measured layer {real_layer.name!r} is 3D but the twin {twin_layer.name!r} is "
                         "2D; choose a 3D twin, or a 2D measured section")
            return None
        if real_layer is twin_layer:
            info("Compare: the same layer is chosen twice; every difference will be 0")
        self._stop = threading.Event()
        self.events = []
        self._set_running(True)
        total = _block_count(real.ndim)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("starting…")
        model, seed = layer_model(twin_layer)
        n = int(self.realisations.value())
        said = ""
        if n > 1 and model is None:
            said = (f"\n{twin_layer.name!r} carries no model (not made by the Generate tab): one realisation, so no "
                    "interval of the twin's values")
            n = 1
        self._run_note = said  # kept under the result's summary
        self.status.setText(f"Validating {real_layer.name!r} {real.shape} against {twin_layer.name!r} {twin.shape}"
                            + (f" ({n} realisations of its model)" if n > 1 else "") + f"…{said}")
        self.worker = start_worker(
            layer_comparison_events, real_layer, twin_layer, self.transport.isChecked(), self.geometry.isChecked(),
            (real_layer.name, twin_layer.name), self._stop, model, n, seed, desc="Validating twin",
            on_yielded=self._on_event, on_returned=self._on_result, on_errored=self._on_error, on_finished=self._done,
        )
        pbar = getattr(self.worker, "pbar", None)
        if pbar is not None:  # napari's activity panel: the same blocks as the dock's bar
            pbar.total = total
        return self.worker

    def stop(self) -> None:
        """End the validation after the descriptor block being computed."""
        self._stop.set()
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping after the current descriptor block…")

    def stop_jobs(self) -> None:
        """Stop a running validation and wait for its threads (napari is closing)."""
        stop_and_join([self.worker], self._stop.set)

    def _set_running(self, running: bool) -> None:
        self.compare_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(not running and self.comparison is not None)

    def _on_event(self, ev: JobProgress) -> None:
        if ev.total <= 0:  # a note of the use case (e.g. differing voxel sizes): the status shows it
            self.status.setText(f"{self.status.text()}\n{ev.message}" if ev.message else self.status.text())
            return
        self.events.append(ev)
        self.progress_bar.setMaximum(max(ev.total, 1))
        self.progress_bar.setValue(ev.done)
        label = f"{ev.stage}: {ev.message}" if ev.message else ev.stage
        self.progress_bar.setFormat(f"{label} (%v / %m)")
        pbar = getattr(self.worker, "pbar", None)
        if pbar is not None:
            pbar.set_description(f"Validating: {ev.stage}")

    def _done(self) -> None:
        self.worker = None
        self._set_running(False)

    def _clear_result(self) -> None:
        self.comparison = None
        self.table.setRowCount(0)
        self.notes.setText("")
        self.notes.setVisible(False)
        self.save_button.setEnabled(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("idle")

    def _on_error(self, exc: Exception) -> None:
        # napari's worker shows the error (with its traceback) once; the dock says it failed
        self.status.setText(f"Failed: {exc}")
        self.progress_bar.setFormat("failed")

    def _on_result(self, cmp: "Comparison") -> None:
        if isinstance(cmp, Refused):
            notify_error(cmp.message)
            self.status.setText(f"Refused: {cmp.message}")
            self.progress_bar.setFormat("refused")
            return
        if isinstance(cmp, str) and cmp == STOPPED:
            done = self.events[-1].done if self.events else 0
            self.status.setText(f"Stopped after {done} of {self.progress_bar.maximum()} descriptor blocks; no table "
                                "(the previous result, if any, is kept)")
            self.progress_bar.setFormat("stopped")
            return
        self.comparison = cmp
        self.fill_table(cmp)
        self.progress_bar.setValue(self.progress_bar.maximum())
        self.progress_bar.setFormat("done (%m / %m)")
        if cmp.notes:
            self.notes.setText("Notes:\n" + "\n".join(f"\u2022 {n}" for n in dict.fromkeys(cmp.notes)))
            self.notes.setVisible(True)
        vf = cmp.descriptors[cmp.descriptors["descriptor"] == "volume_fraction"]
        twins = f"{cmp.realisations} realisations" if cmp.realisations > 1 else "one twin"
        self.status.setText(
            f"{len(cmp.descriptors)} values in {cmp.seconds:.1f} s ({twins}); {cmp.differing_rows()} differ beyond "
            "both 95 % intervals (coloured). Volume fractions measured / twin: "
            + ", ".join(f"{r.phase} {r.real:.3f} / {r.twin:.3f}" for r in vf.itertuples())
            + getattr(self, "_run_note", "")
        )
        self.compared.emit(cmp)

    def fill_table(self, cmp: "Comparison") -> None:
        """Show the descriptor table: a group row per descriptor (name and unit), one row per phase /
        axis with the measured value and the twin's mean, each ± the half-width of its 95 % interval
        ([lo, hi] in the tooltip); the relative difference coloured like the HTML report only where the
        intervals do not overlap, else neutral; n/a in grey (never 0 %)."""
        from ...validate.compare import DESCRIPTOR_LABELS

        df = cmp.descriptors
        self.table.clearSpans()
        self.table.setRowCount(0)
        for col, name in ((1, cmp.names["real"]), (2, cmp.names["twin"])):
            self.table.horizontalHeaderItem(col).setToolTip(f"{name}: {_HEADER_TIPS[col]}")
        spread = bool(cmp.twin_sections) or cmp.realisations > 1
        self.table.setColumnHidden(_SPREAD_COLUMN, not spread)
        over = f"{cmp.realisations} realisations" if cmp.realisations > 1 else f"{cmp.twin_sections} sections"
        self.table.horizontalHeaderItem(_SPREAD_COLUMN).setToolTip(
            f"standard deviation of one twin's value over its {over}" if spread else "")
        grey = QBrush(QColor("#8a8a8a"))
        for desc in dict.fromkeys(df["descriptor"]):
            sub = df[df["descriptor"] == desc]
            unit = str(sub["unit"].iloc[0])
            title = DESCRIPTOR_LABELS.get(desc, desc) + ("" if unit in ("1", "") else f" [{unit}]")
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(title)
            item.setToolTip(title)
            font = item.font()
            font.setBold(True)
            item.setFont(font)
            self.table.setItem(row, 0, item)
            self.table.setSpan(row, 0, 1, len(TABLE_HEADERS))
            for r in sub.itertuples():
                axis = "" if r.axis is None or str(r.axis) == "<NA>" else "zyx"[-cmp.ndim:][int(r.axis)]
                rel = float(r.relative_difference)
                sd = float(getattr(r, "twin_spread", float("nan")))
                ivals = [(float(r.real), float(r.real_lo), float(r.real_hi)),
                         (float(r.twin), float(r.twin_lo), float(r.twin_hi))]
                cells = [f"{str(r.phase).replace('|', '/')} {axis}".strip(), _pm(*ivals[0]), _pm(*ivals[1]),
                         _fmt(sd) if math.isfinite(sd) else "", "n/a" if not math.isfinite(rel) else f"{rel * 100:+.1f} %"]
                row = self.table.rowCount()
                self.table.insertRow(row)
                for col, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    tip = text
                    if col in (1, 2) and all(math.isfinite(v) for v in ivals[col - 1][1:]):
                        tip += f"  (95 % interval [{_fmt(ivals[col - 1][1])}, {_fmt(ivals[col - 1][2])}])"
                    item.setToolTip(f"{title}, {cells[0]}: {tip}")
                    if col >= 1:
                        item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                    self.table.setItem(row, col, item)
                last = self.table.item(row, len(TABLE_HEADERS) - 1)
                if math.isfinite(rel) and bool(r.differs):
                    last.setForeground(QBrush(QColor(next(c for lim, c in _REL_COLOURS if abs(rel) <= lim))))
                    font = last.font()
                    font.setBold(True)
                    last.setFont(font)
                    last.setToolTip(f"{title}, {cells[0]}: {cells[-1]}: the measured and the twin's 95 % intervals do "
                                    "not overlap")
                elif math.isfinite(rel):
                    last.setToolTip(f"{title}, {cells[0]}: {cells[-1]}: within the intervals (they overlap): "
                                    "not coloured")
                else:
                    last.setForeground(grey)
                    last.setToolTip("n/a: no relative difference (a zero or infinite measured value, an absent phase, "
                                    "or MSSIM, whose measured value is 1 by definition); see the notes")

    def table_values(self) -> list[list[str]]:
        """The table's value rows as ``[descriptor (with unit), phase / axis, measured ±, twin ±, 1 twin sd,
        rel. diff.]`` (group rows folded in; for scripting and tests)."""
        rows, title = [], ""
        for r in range(self.table.rowCount()):
            if self.table.columnSpan(r, 0) > 1:
                title = self.table.item(r, 0).text()
                continue
            rows.append([title] + [self.table.item(r, c).text() for c in range(self.table.columnCount())])
        return rows

    def save_report(self, folder: str | None = None, force: bool = False) -> dict[str, Path]:
        """Write the report into ``folder`` (else :attr:`report_path`, else ask with a folder dialog).

        Never replaces an existing report silently: files already there raise a notification
        unless ``force``. Returns the files written.
        """
        from ...validate import write_report

        if self.comparison is None:
            notify_error("Compare: nothing to save yet; press Compare first")
            return {}
        folder = folder or self.report_path
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Folder for the validation report")
            if not folder:
                return {}
        try:
            files = write_report(self.comparison, folder, force=force)
        except (FileExistsError, NotADirectoryError, OSError) as exc:
            notify_error(f"Compare: {exc}")
            return {}
        info(f"Validation report written to {folder} (open report.html)")
        return files
