"""Compare dock widget: every descriptor of a measured and a twin Labels layer side by side.

The comparison (:func:`napari_assb_twin.validate.compare`) runs in a napari thread worker; the
table appears in the dock and "Save report…" writes the CSV / PNG / HTML report
(:func:`napari_assb_twin.validate.write_report`) into a chosen folder. Importing this module does
not import torch: the computation imports it inside the worker.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._jobs import guard_close, start_worker, stop_and_join
from ._common import LayerCombo, info, layer_phase_data, notify_error

if TYPE_CHECKING:
    import napari

    from ...validate.compare import Comparison

__all__ = ["CompareWidget", "run_comparison", "TABLE_HEADERS"]

TABLE_HEADERS: tuple[str, ...] = ("descriptor", "phase", "axis", "real", "twin", "rel. diff.")

# background of the relative-difference cell: within 5 %, within 20 %, beyond (same as the HTML report)
_REL_COLOURS = ((0.05, "#2e7d32"), (0.20, "#b38600"), (math.inf, "#b71c1c"))


def run_comparison(real: Any, twin: Any, transport: bool, geometry: bool, names: tuple[str, str]) -> "Comparison":
    """Worker body: compare two :class:`~._common.PhaseData` (same voxel size assumed, the real one's)."""
    from ...validate import compare

    iso = all(abs(s - real.spacing[0]) <= 1e-9 * abs(real.spacing[0]) for s in real.spacing)
    voxel = float(real.spacing[-1]) if iso else 1.0
    unit = real.unit_label if iso else "px"
    cmp = compare(real.data, twin.data, voxel_size=voxel, unit=unit, transport=transport, geometry=geometry,
                  device="cpu", names=names)
    if not iso:
        cmp.notes.append(f"anisotropic layer scale {real.spacing}: descriptors in voxels")
    if tuple(twin.spacing) != tuple(real.spacing):
        cmp.notes.append(f"twin layer scale {twin.spacing} differs from the real one {real.spacing}; "
                         f"both measured with {voxel:g} {unit}")
    return cmp


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    return f"{v:.4g}"


class CompareWidget(QWidget):
    """Dock widget: choose a real and a twin Labels layer, compare, read the table, save a report.

    Public attributes (for scripting and tests): ``real_combo``, ``twin_combo``, ``transport``,
    ``geometry`` (check boxes), ``compare_button``, ``save_button``, ``table`` (QTableWidget),
    ``status``; after a comparison ``comparison`` holds the result and ``compared`` is emitted.
    ``report_path``: when set, "Save report" writes there instead of asking with a folder dialog.
    """

    compared = Signal(object)

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.comparison: Comparison | None = None
        self.worker: Any = None
        self.report_path: str | None = None

        self.real_combo = LayerCombo(napari_viewer)
        self.twin_combo = LayerCombo(napari_viewer)
        self.real_combo.setToolTip("The measured (segmented) phase map")
        self.twin_combo.setToolTip("The digital twin to validate (2D or 3D; a 3D twin against a 2D section uses its middle section)")
        self.transport = QCheckBox("transport (TauFactor, 3D; slow on a CPU)")
        self.transport.setChecked(False)
        self.geometry = QCheckBox("geodesic tortuosity and constrictivity")
        self.geometry.setChecked(True)
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.compare)
        self.save_button = QPushButton("Save report…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save_report())
        self.status = QLabel("Choose the measured and the twin layer and press Compare")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(TABLE_HEADERS))
        self.table.setHorizontalHeaderLabels(list(TABLE_HEADERS))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(240)

        form = QFormLayout()
        form.addRow("Measured", self.real_combo)
        form.addRow("Twin", self.twin_combo)
        form.addRow("", self.geometry)
        form.addRow("", self.transport)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.table, stretch=1)

    # -- actions ----------------------------------------------------------------------------------
    def compare(self) -> Any:
        """Start the comparison in a worker thread; returns the worker (None when inputs are bad)."""
        real_layer, twin_layer = self.real_combo.layer(), self.twin_combo.layer()
        try:
            real = layer_phase_data(real_layer)
            twin = layer_phase_data(twin_layer)
        except (TypeError, ValueError) as exc:
            notify_error(f"Compare: {exc}")
            return None
        if real.data.ndim == 3 and twin.data.ndim == 2:
            notify_error(f"Compare: the measured layer {real.name!r} is 3D but the twin {twin.name!r} is 2D; "
                         "choose a 3D twin, or a 2D measured section")
            return None
        if real_layer is twin_layer:
            info("Compare: the same layer is chosen twice; every difference will be 0")
        self.compare_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.status.setText(f"Comparing {real.name!r} {real.data.shape} with {twin.name!r} {twin.data.shape}…")
        self.worker = start_worker(
            run_comparison, real, twin, self.transport.isChecked(), self.geometry.isChecked(), (real.name, twin.name),
            desc="descriptors", on_returned=self._on_result, on_errored=self._on_error, on_finished=self._done,
        )
        return self.worker

    def _done(self) -> None:
        self.worker = None
        self.compare_button.setEnabled(True)
        self.save_button.setEnabled(self.comparison is not None)

    def _on_error(self, exc: Exception) -> None:
        self.status.setText(f"Failed: {exc}")
        notify_error(f"Compare: {exc}")

    def _on_result(self, cmp: "Comparison") -> None:
        self.comparison = cmp
        self.fill_table(cmp)
        vf = cmp.descriptors[cmp.descriptors["descriptor"] == "volume_fraction"]
        self.status.setText(
            f"{len(cmp.descriptors)} values in {cmp.seconds:.1f} s. Volume fractions real / twin: "
            + ", ".join(f"{r.phase} {r.real:.3f} / {r.twin:.3f}" for r in vf.itertuples())
        )
        self.compared.emit(cmp)

    def fill_table(self, cmp: "Comparison") -> None:
        """Show the descriptor table; the relative difference is coloured like the HTML report."""
        from ...validate.compare import DESCRIPTOR_LABELS

        df = cmp.descriptors
        self.table.setRowCount(len(df))
        self.table.setHorizontalHeaderLabels(
            ["descriptor", "phase", "axis", cmp.names["real"][:24], cmp.names["twin"][:24], "rel. diff."]
        )
        for row, r in enumerate(df.itertuples()):
            unit = "" if r.unit in ("1", "") else f" [{r.unit}]"
            axis = "" if r.axis is None or str(r.axis) == "<NA>" else "zyx"[-cmp.ndim:][int(r.axis)]
            rel = float(r.relative_difference)
            cells = [DESCRIPTOR_LABELS.get(r.descriptor, r.descriptor) + unit, str(r.phase).replace("|", " / "), axis,
                     _fmt(float(r.real)), _fmt(float(r.twin)), "n/a" if not math.isfinite(rel) else f"{rel * 100:+.1f} %"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col >= 3:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(row, col, item)
            if math.isfinite(rel):
                colour = next(c for lim, c in _REL_COLOURS if abs(rel) <= lim)
                self.table.item(row, 5).setForeground(QBrush(QColor(colour)))

    def table_values(self) -> list[list[str]]:
        """The table's text, row by row (for scripting and tests)."""
        return [[self.table.item(r, c).text() for c in range(self.table.columnCount())] for r in range(self.table.rowCount())]

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
