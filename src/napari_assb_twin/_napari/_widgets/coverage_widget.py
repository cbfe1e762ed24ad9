"""Two-point coverage dock widget: C_ij(r) of one or several Labels layers, overlaid, exportable.

Importing this module does not import torch (napari imports dock widgets when the Plugins menu
opens them); the computation imports :mod:`napari_assb_twin.stats.coverage` inside the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...phasemap import R_MAX_FLOOR, R_MAX_LENGTHS
from ...phases import PHASE_NAMES
from ._jobs import guard_close, start_worker, stop_and_join
from ._common import (LayerCheckList, ask_save_path, current_section, export_canvas_png, info, layer_phase_data,
                      notify_error, warn)
from ._plot import LAYER_STYLES, ThemedCanvas, display_unit, pair_color, pair_label

if TYPE_CHECKING:
    import napari

    from ...stats.coverage import CoverageResult

__all__ = ["CoverageCurves", "CoverageWidget", "compute_coverages", "default_r_max_of", "plot_coverages"]

SCOPE_SLICE = "current slice"
SCOPE_STACK = "whole stack (3D)"
ALL_PAIRS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


@dataclass
class CoverageCurves:
    """Coverage functions of one layer (or section) with what is needed to plot them."""

    name: str
    result: "CoverageResult"
    spacing: tuple[float, ...]  # physical size per axis of the analysed array
    unit: str | None
    axis_labels: tuple[str, ...]


def default_r_max_of(items: list[tuple[str, Any]]) -> int | None:
    """The package's default ``r_max`` (:meth:`PhaseMap.default_r_max`) of ``[(name, PhaseMap), ...]``:
    the largest of theirs, so every overlaid curve covers its correlated range (None: no items).

    Measures each map's correlation length (a coverage computation): run it in a worker.
    """
    return max((pd.default_r_max() for _, pd in items), default=None)


def compute_coverages(items: list[tuple[str, Any]], r_max: int | None, radial: bool = False) -> list[CoverageCurves]:
    """Coverage functions (minus-sampling estimator) of ``[(name, PhaseMap), ...]``.

    ``r_max`` (None: :func:`default_r_max_of` the items) is clipped to what each image allows
    (``< n_d``). Runs in a worker thread; imports torch lazily.
    """
    from ...stats.coverage import coverage

    if r_max is None:
        r_max = default_r_max_of(items)
    out = []
    for name, pd in items:
        r = int(min(r_max, min(pd.data.shape) - 1))
        iso = pd.is_isotropic
        res = coverage(
            pd.data, r, periodic=False, voxel_size=pd.pixel_size if iso else 1.0,
            unit=pd.unit_label if iso else "px", radial=radial and iso,
        )
        out.append(CoverageCurves(name, res, tuple(pd.spacing), pd.unit, tuple(pd.axis_labels)))
    return out


def plot_coverages(
    canvas: ThemedCanvas,
    curves: list[CoverageCurves],
    pairs: tuple[tuple[int, int], ...] = ALL_PAIRS[:3],
    radial: bool = False,
) -> list[str]:
    """Draw C_ij(r), one panel per direction (plus a radial panel), layers as line styles.

    Returns the panel titles (directions) drawn.
    """
    canvas.clear()
    if not curves:
        canvas.message("No coverage computed yet")
        return []
    units = {c.unit for c in curves}
    physical = len(units) == 1 and None not in units
    unit = units.pop() if physical else "px"
    directions: list[str] = []
    for c in curves:
        for label in c.axis_labels:
            if label not in directions:
                directions.append(label)
    order = {"z": 0, "y": 1, "x": 2}
    directions.sort(key=lambda d: order.get(d, 3))
    panels = [f"along {d}" for d in directions]
    if radial and any(c.result.radial is not None for c in curves):
        panels.append("radial mean")
    n = len(panels)
    ncols = 2 if n > 1 else 1
    nrows = -(-n // ncols)
    axes = canvas.figure.subplots(nrows, ncols, squeeze=False, sharey=True)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax, title in zip(flat, panels):
        canvas.style_axes(ax)
        canvas.set_title(ax, title)
        ax.set_xlabel(f"r ({display_unit(unit)})")
        for k, c in enumerate(curves):
            style = LAYER_STYLES[k % len(LAYER_STYLES)]
            if title == "radial mean":
                values = c.result.radial
                dist = c.result.r_px * (c.spacing[-1] if physical else 1.0)
            else:
                label = title.removeprefix("along ")
                if label not in c.axis_labels:
                    continue
                d = c.axis_labels.index(label)
                values = c.result.directional[d]
                dist = c.result.r_px * (c.spacing[d] if physical else 1.0)
            if values is None:
                continue
            for i, j in pairs:
                ax.plot(dist, values[i, j], style, color=pair_color(i, j, canvas.colors["background"]), lw=1.4)
    for row in axes:
        row[0].set_ylabel("C_ij(r)")
    # colours = phase pairs (legend on top), line styles = layers (legend below)
    from matplotlib.lines import Line2D

    bg, text = canvas.colors["background"], canvas.colors["text"]
    pair_handles = [Line2D([], [], color=pair_color(i, j, bg), lw=2, label=pair_label(i, j)) for i, j in pairs]
    layer_handles = [
        Line2D([], [], color=text, ls=LAYER_STYLES[k % len(LAYER_STYLES)], lw=1.4, label=_short(c.name, 40))
        for k, c in enumerate(curves)
    ]
    if pair_handles:
        canvas.style_legend(canvas.figure.legend(
            handles=pair_handles, loc="outside upper center", ncol=min(len(pair_handles), 6), fontsize=7,
            handlelength=1.5, columnspacing=1.0,
        ))
    canvas.style_legend(canvas.figure.legend(handles=layer_handles, loc="outside lower center", ncol=1, fontsize=7))
    canvas.draw()
    return panels


def _short(name: str, n: int = 28) -> str:
    return name if len(name) <= n else name[: n - 1] + "\u2026"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "layer"


class CoverageWidget(QWidget):
    """Dock widget: two-point coverage functions of Labels layers, overlaid on one plot.

    Sub-widgets (public attributes, for scripting and tests): ``layers`` (check list),
    ``scope`` (current slice / whole stack), ``r_max`` (starts at the package's default for the
    ticked layers and follows it when they or the scope change; a value the user types wins until
    then), ``pair_boxes`` ({(i, j): QCheckBox}),
    ``radial``, ``compute_button``, ``csv_button``, ``png_button``, ``canvas``.
    After a computation ``curves`` holds the :class:`CoverageCurves` plotted and ``computed`` is
    emitted with them; ``r_max_defaulted`` is emitted with the default once it is measured.
    """

    computed = Signal(list)
    r_max_defaulted = Signal(int)

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.curves: list[CoverageCurves] = []
        self.worker: Any = None
        self.default_worker: Any = None  # measuring the default r max of the ticked layers
        self._r_max_edited = False  # the user typed an r max: it wins until the layers change
        self._r_max_key: tuple | None = None  # (ticked layers, scope) the r max default is for
        self._default_pending = False
        self._default_r_max: int | None = None  # measured for the current (ticked layers, scope)

        self.layers = LayerCheckList(napari_viewer)
        self.scope = QComboBox()
        self.scope.addItems([SCOPE_SLICE, SCOPE_STACK])
        self.scope.setToolTip("3D layers: the slice shown in the viewer, or the whole volume")
        self.r_max = QSpinBox()
        self.r_max.setRange(1, 4096)
        self.r_max.setValue(R_MAX_FLOOR)  # until the ticked layers' default is measured
        self.r_max.setSuffix(" px")
        self.r_max.setToolTip(f"Largest distance; clipped to the image size minus one. Default: {R_MAX_LENGTHS:g} x "
                              "the longest 1/e correlation length of the ticked layers (as the command line)")
        self.r_max.valueChanged.connect(self._on_r_max_edited)
        self.radial = QCheckBox("radial mean")
        self.pair_boxes: dict[tuple[int, int], QCheckBox] = {}
        pair_grid = QGridLayout()
        pair_grid.setContentsMargins(0, 0, 0, 0)
        for k, (i, j) in enumerate(ALL_PAIRS):
            box = QCheckBox(pair_label(i, j))
            box.setToolTip(f"C({PHASE_NAMES[i]}, {PHASE_NAMES[j]})")
            box.setChecked(i == j)
            box.toggled.connect(self._replot)
            self.pair_boxes[(i, j)] = box
            pair_grid.addWidget(box, k // 3, k % 3)
        self.radial.toggled.connect(self._replot)

        self.compute_button = QPushButton("Compute")
        self.compute_button.clicked.connect(self.compute)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.png_button = QPushButton("Export PNG…")
        self.png_button.clicked.connect(lambda: self.export_png())
        self.status = QLabel("Tick layers (measured and simulated) and press Compute")
        self.status.setWordWrap(True)
        self.canvas = ThemedCanvas(napari_viewer, height=4.0)
        self.canvas.message("C_ij(r) = P(x in phase i, x + r in phase j)")

        form = QFormLayout()
        form.addRow("Layers", self.layers)
        form.addRow("Scope", self.scope)
        form.addRow("r max", self.r_max)
        form.addRow("Pairs", pair_grid)
        form.addRow("", self.radial)
        buttons = QHBoxLayout()
        for b in (self.compute_button, self.csv_button, self.png_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas, stretch=1)
        self.layers.changed.connect(self._follow_default_r_max)
        self.scope.currentTextChanged.connect(self._follow_default_r_max)
        self._follow_default_r_max()
        guard_close(napari_viewer, self)

    def stop_jobs(self) -> None:
        """Wait for a running computation to end (napari is closing)."""
        stop_and_join([self.worker, self.default_worker])

    # -- r max: the package's default until the user types one ----------------------------------
    def _on_r_max_edited(self, value: int) -> None:
        self._r_max_edited = True

    def _show_r_max(self, value: int) -> None:
        """Show ``value`` without counting it as the user's edit."""
        self.r_max.blockSignals(True)
        self.r_max.setValue(int(value))
        self.r_max.blockSignals(False)

    def _follow_default_r_max(self, *args: Any) -> None:
        """New ticked layers or scope: forget the user's r max and measure the default (in a worker)."""
        key = (tuple(id(lay) for lay in self.layers.checked()), self.scope.currentText())
        if key == self._r_max_key:
            return  # e.g. a layer renamed: same choice, the r max stays
        self._r_max_key = key
        self._r_max_edited = False
        self._default_r_max = None
        self._measure_default_r_max()

    def _measure_default_r_max(self) -> None:
        if self.default_worker is not None:
            self._default_pending = True  # measure again for the new choice when this one ends
            return
        items = self._inputs(report=False)
        if not items:
            return
        self.default_worker = start_worker(
            default_r_max_of, items, desc="default r max",
            on_returned=lambda r, k=self._r_max_key: self._on_default_r_max(r, k), on_errored=lambda exc: None,
            on_finished=self._default_done,
        )

    def _on_default_r_max(self, r_max: int | None, key: tuple) -> None:
        if r_max is None or key != self._r_max_key:
            return  # measured for an older choice
        self._default_r_max = int(r_max)
        if not self._r_max_edited:  # the user's typed value wins
            self._show_r_max(r_max)
            self.r_max_defaulted.emit(int(r_max))

    def _default_done(self) -> None:
        self.default_worker = None
        if self._default_pending:
            self._default_pending = False
            self._measure_default_r_max()

    # -- inputs -------------------------------------------------------------------------------
    def selected_pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple(p for p, box in self.pair_boxes.items() if box.isChecked())

    def _inputs(self, report: bool = True) -> list[tuple[str, Any]]:
        """Phase data of every ticked layer; bad layers are skipped (with a notification when ``report``)."""
        chosen = self.layers.checked()
        if not chosen:
            if report:
                notify_error("Coverage: no Labels layer ticked; open a segmentation or sample data and tick it")
            return []
        items = []
        for layer in chosen:
            try:
                if self.scope.currentText() == SCOPE_STACK:
                    if layer.ndim != 3:
                        raise ValueError(
                            f"layer {layer.name!r} is 2D but scope is '{SCOPE_STACK}'; choose '{SCOPE_SLICE}'"
                        )
                    pd = layer_phase_data(layer)
                    name = layer.name
                elif layer.ndim == 3:
                    axis, index = current_section(self.viewer, layer)
                    pd = layer_phase_data(layer, section=(axis, index))
                    name = f"{layer.name} [{'zyx'[axis]}={index}]"
                else:
                    pd = layer_phase_data(layer)
                    name = layer.name
            except (TypeError, ValueError) as exc:
                if report:
                    notify_error(f"Coverage: {exc}")
                continue
            if not report:
                items.append((name, pd))
                continue
            if pd.message and "canonical" not in pd.message:
                info(f"{layer.name}: {pd.message}")
            if self._r_max_edited and self.r_max.value() >= min(pd.data.shape):
                warn(f"{layer.name}: r max clipped to {min(pd.data.shape) - 1} px (image is {pd.data.shape})")
            items.append((name, pd))
        return items

    # -- actions ------------------------------------------------------------------------------
    def compute(self) -> Any:
        """Start the computation in a worker thread; returns the worker (None if nothing to do)."""
        items = self._inputs()
        if not items:
            return None
        self.compute_button.setEnabled(False)
        self.status.setText(f"Computing coverage of {len(items)} layer(s)…")
        # the user's value, else the default (None: not measured yet, the worker measures it)
        r_max = int(self.r_max.value()) if self._r_max_edited else self._default_r_max
        self.worker = start_worker(
            compute_coverages, items, r_max, self.radial.isChecked(), desc="two-point coverage",
            # `finished` comes after `returned`: release the button first, so Compute pressed as soon as the
            # curves appear is not lost on a disabled button
            on_returned=lambda curves: (self._done(), self._on_result(curves)),
            on_errored=lambda exc: self.status.setText(f"Failed: {exc}"), on_finished=self._done,
        )
        return self.worker

    def _done(self) -> None:
        self.worker = None
        self.compute_button.setEnabled(True)

    def _on_result(self, curves: list[CoverageCurves]) -> None:
        self.curves = curves
        self._replot()
        vf = "; ".join(
            f"{_short(c.name, 20)}: " + " ".join(f"{PHASE_NAMES[p][0].upper()} {v:.2f}" for p, v in enumerate(c.result.volume_fractions))
            for c in curves
        )
        self.status.setText(f"Volume fractions — {vf}")
        self.computed.emit(curves)

    def _replot(self, *args: Any) -> None:
        if self.curves:
            plot_coverages(self.canvas, self.curves, self.selected_pairs(), self.radial.isChecked())

    def export_csv(self, path: str | None = None) -> list[Path]:
        """Write the coverage table(s): one CSV for one layer, ``<stem>-<layer>.csv`` for several.

        Without ``path`` a save dialog asks (and confirms replacing a file). Returns the files.
        """
        if not self.curves:
            notify_error("Coverage: nothing to export yet; press Compute first")
            return []
        if path is None:
            path = ask_save_path(self, "Export coverage table", "coverage.csv", "CSV (*.csv)")
            if path is None:
                return []
        target = Path(path)
        if len(self.curves) == 1:
            paths = [target]
        else:
            paths = [target.with_name(f"{target.stem}-{_safe(c.name)}{target.suffix or '.csv'}") for c in self.curves]
        written = []
        try:
            for c, p in zip(self.curves, paths):
                written.append(c.result.to_csv(p))
        except OSError as exc:
            notify_error(f"Coverage: cannot write {exc.filename}: {exc.strerror}")
            return written
        info(f"Coverage table written: {', '.join(str(p) for p in written)}")
        return written

    def export_png(self, path: str | None = None) -> Path | None:
        """Save the plot as PNG (dialog when ``path`` is None)."""
        if not self.curves:
            notify_error("Coverage: nothing to export yet; press Compute first")
            return None
        return export_canvas_png(self, self.canvas, path, caption="Export coverage plot", start="coverage.png",
                                 what="Coverage plot", error_prefix="Coverage", redraw=lambda export: self._replot())
