"""The calibrate tab's results: the live loss plot (its background drawn in a thread, the lines
blitted), the parameter table, and saving / loading a model file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem

from .._common import ask_load_model, ask_save_path, info, notify_error, refuse_overwrite, warn
from ....fields.bridged import dof_label, is_bridged
from .._plot import InchMargins, ThemedCanvas, display_unit
from .._plot import style_axes, style_legend  # plain functions: the render thread styles its figure


def format_param(key: str, value: float, unit: str) -> tuple[str, str]:
    """Readable name and value of an interpretable parameter (lengths with their unit)."""
    name = key.replace("_fraction", " fraction").replace("f1.", "field 1 ").replace("f2.", "field 2 ")
    name = name.replace("_", " ")
    if key.endswith("_fraction"):
        return name, f"{value:.3f}"
    if key.endswith(".dof"):
        return name + " (k)", dof_label(value if is_bridged(value) else int(round(value)))
    if "length" in key:
        return name, f"{value:.3g} {display_unit(unit if unit != 'px' else None)}"
    return name, f"{value:.3g}"


# losses drawn in the live plot (the others, lr and temperature, are schedules, not losses)
_COVERAGE_LOSSES = ("coverage", "coverage_eval")


_ADV_LOSSES = ("critic", "generator", "wasserstein")


@dataclass(frozen=True)
class _LossPlot:
    """What the loss plot shows, taken in the GUI thread (the render thread reads nothing else)."""

    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    adversarial: tuple[str, ...]
    noise: float | None
    best: int
    xmax: float
    colors: dict[str, str]
    #: per axes ``(xlim, ylim)``; None: from the data, with room for the curves to move
    limits: tuple[tuple[tuple[float, float], tuple[float, float]], ...] | None = None


def build_loss_plot(fig: Figure, plot: _LossPlot) -> dict[str, Any]:
    """Make the loss plot's artists in ``fig`` (nothing is drawn); returns the moving lines by key
    (the curves and ``"best"``, the best-iteration marker). Touches only ``fig`` and holds no Qt
    object, so the render thread may build its copy while the GUI thread goes on."""
    c = plot.colors
    # margins in inches, not the constrained layout: its tick-label measurements were most of
    # a full draw (0.36 of 0.64 s in the GUI thread on the loaded machine)
    fig.set_layout_engine(InchMargins())
    axes = fig.subplots(2 if plot.adversarial else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = style_axes(axes[0], c)
    lines: dict[str, Any] = {}
    colors = {"coverage": c["accent"], "coverage_eval": "#e69f00"}
    for key in _COVERAGE_LOSSES:
        if key in plot.curves:
            x, y = plot.curves[key]
            style = "-" if key == "coverage" else "o-"
            label = "coverage (train)" if key == "coverage" else "coverage (eval)"
            (lines[key],) = ax.plot(x, y, style, ms=2.5, lw=1.2, color=colors[key], label=label)
    if any(k in plot.curves for k in _COVERAGE_LOSSES):
        from matplotlib.ticker import FuncFormatter, NullLocator

        ax.set_yscale("log")
        # plain tick labels ("0.01"): the default 10^{-2} labels are mathtext, whose first use
        # loads its fonts (a 3 s stall of napari on the shared machine when drawn in the GUI thread)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks cost 0.1 s per full draw
    if plot.noise is not None and plot.noise > 0:
        ax.axhline(plot.noise, color=c["text"], lw=1.0, ls="--", alpha=0.8, label="data sampling noise")
        if plot.limits is None:
            low, high = ax.get_ylim()
            ax.set_ylim(min(low, 0.7 * plot.noise), high)  # the reference line stays in view
    lines["best"] = ax.axvline(max(plot.best, 0), color=c["text"], lw=0.8, ls=":", alpha=0.7 if plot.best >= 0 else 0.0)
    ax.set_ylabel("C_ij RMSE", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        style_legend(ax.legend(fontsize=7, loc="upper right"), c)
    if plot.adversarial:
        ax2 = style_axes(axes[1], c)
        for key, color in zip(plot.adversarial, ("#56b4e9", "#cc79a7", "#009e73")):
            x, y = plot.curves[key]
            (lines[key],) = ax2.plot(x, y, lw=1.0, color=color, label=key)
        ax2.set_ylabel("adversarial", fontsize=8)
        style_legend(ax2.legend(fontsize=7, loc="upper right"), c)
    axes[-1].set_xlabel("iteration")
    if plot.limits is not None:  # the GUI figure's ranges, so the two pictures line up pixel for pixel
        for a, (xlim, ylim) in zip(axes, plot.limits):
            a.set_xlim(xlim)
            a.set_ylim(ylim)
        return lines
    axes[-1].set_xlim(0, plot.xmax)
    for a in axes:  # room for the curves to move without a new layout (blitted updates)
        low, high = a.get_ylim()
        if a.get_yscale() == "log":
            a.set_ylim(low / 3, high * 1.5)
        else:
            span = high - low or 1.0
            a.set_ylim(low - 0.5 * span, high + 0.5 * span)
    return lines


def _hide_lines(lines: dict[str, Any]) -> None:
    """The background picture: everything but the moving lines."""
    for line in lines.values():
        line.set_visible(False)


class CalibrationResults:
    """The calibration dock's live view (loss plot, parameter table) and model files."""

    def _build_live_view(self) -> None:
        self.canvas = ThemedCanvas(self.viewer, height=2.6)
        self.canvas.message("Coverage RMSE curves appear here during calibration")
        self._loss_lines: dict[str, Any] = {}
        self._loss_background: Any = None  # the plot without its lines, as pixels of the Qt canvas
        self._loss_background_key: tuple | None = None
        self._loss_pending: dict[str, Any] | None = None  # the lines whose background is being drawn
        self._loss_noise_drawn = False
        self._loss_total = 0
        self.param_table = QTableWidget(0, 2)
        self.param_table.setHorizontalHeaderLabels(["Parameter", "Value"])
        self.param_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.param_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.param_table.verticalHeader().setVisible(False)
        self.param_table.verticalHeader().setDefaultSectionSize(20)
        self.param_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.param_table.setMinimumHeight(80)
        # no preferred height of its own: the tab fits a 1366 x 768 screen, the plot above keeps its room
        self.param_table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)

    # -- views ------------------------------------------------------------------------------------
    def _loss_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The loss plot's curves: ``{key: (iterations, values)}`` (coverage losses as RMSE, finite > 0)."""
        from ....calibrate.losses import loss_to_rmse

        r = self.run
        its = np.asarray(r.iterations)
        out = {}
        for key in _COVERAGE_LOSSES:
            if key in r.losses:
                y = np.asarray([loss_to_rmse(v) if np.isfinite(v) else np.nan for v in r.losses[key]], dtype=float)
                ok = np.isfinite(y) & (y > 0)
                out[key] = (its[ok], y[ok])
        for key in _ADV_LOSSES:
            if key in r.losses:
                out[key] = (its, np.asarray(r.losses[key], dtype=float))
        return out

    @property
    def loss_plot_pending(self) -> bool:
        """True while the loss plot's background is being drawn in its thread (lines not shown yet)."""
        return self._loss_pending is not None

    def _loss_axes_current(self) -> bool:
        """The built loss plot is still the canvas's figure (no message or other plot replaced it)."""
        lines = self._loss_lines
        return bool(lines) and lines["best"].axes in self.canvas.figure.axes

    def _loss_plot_fits(self, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
        """The built plot shows ``curves`` by moving its lines: same curves, total and noise line,
        every curve inside the drawn ranges."""
        lines = self._loss_lines
        if not self.run.iterations or not self._loss_axes_current() or set(lines) - {"best"} != set(curves) \
                or self._loss_total != self.run.total:
            return False
        if self.noise_rmse is not None and not self._loss_noise_drawn:
            return False  # the noise line arrived: build again with it
        for key, (x, y) in curves.items():
            y_lo, y_hi = lines[key].axes.get_ylim()
            inside = y[np.isfinite(y)]
            if inside.size and (inside.min() < y_lo or inside.max() > y_hi):
                return False  # the curve left the drawn range: new limits
        return True

    def _update_losses(self) -> bool:
        """Move the live loss plot's lines to the new data and blit them over the kept background
        (no draw of the figure: a full draw every 0.3 s stalled napari for 0.7-2 s on a loaded 2-core
        machine); False when the plot must be built again or its background is not there yet."""
        bg = self._loss_background
        if bg is None or self._loss_background_key != self.canvas.pixel_key():
            return False  # not drawn yet, or resized or re-themed since
        curves = self._loss_curves()
        if not self._loss_plot_fits(curves):
            return False
        lines, r = self._loss_lines, self.run
        for key, (x, y) in curves.items():
            lines[key].set_data(x, y)
        lines["best"].set_xdata([max(r.best_iteration, 0)] * 2)
        lines["best"].set_alpha(0.7 if r.best_iteration >= 0 else 0.0)
        fc = self.canvas.canvas
        fc.restore_region(bg)
        for line in lines.values():
            line.axes.draw_artist(line)
        fc.blit(self.canvas.figure.bbox)
        return True

    def _show_loss_background(self, lines: dict[str, Any], key: tuple, pixels: np.ndarray) -> None:
        """The background drawn in the render thread for the plot of ``lines`` arrived (GUI thread):
        keep it and blit the run's current lines over it."""
        if self._loss_pending is lines:
            self._loss_pending = None
        if lines is not self._loss_lines or not self._loss_axes_current():
            return  # a message or a newer plot replaced that figure: nothing to show
        if key != self.canvas.pixel_key():
            self.plot_losses()  # resized or re-themed while drawing: again, at the new size
            return
        fc = self.canvas.canvas
        if self.canvas.show_pixels(pixels):
            self._loss_background = fc.copy_from_bbox(self.canvas.figure.bbox)
            self._loss_background_key = key
        else:  # never seen (same key, same size); drawn here rather than not at all
            self._keep_loss_background()
        if not self._update_losses():
            self.plot_losses()  # the curves moved out of the ranges while it was drawn

    def _keep_loss_background(self) -> None:
        """Draw the loss plot without its lines in the GUI thread and keep that picture (the fallback
        of the render thread's picture)."""
        lines = list(self._loss_lines.values())
        fc = self.canvas.canvas
        for line in lines:
            line.set_visible(False)
        fc.draw()
        self._loss_background = fc.copy_from_bbox(self.canvas.figure.bbox)
        self._loss_background_key = self.canvas.pixel_key()
        for line in lines:
            line.set_visible(True)

    def plot_losses(self) -> None:
        """Show the loss history as coverage RMSE (C_ij units, log scale) beside the data's own
        sampling noise, and the adversarial losses if any.

        Live and at the end the lines move over a kept background (blitted). When the plot must be
        laid out again (first data, the noise line, a curve leaving the ranges, a resize), the GUI
        thread builds the figure's artists without drawing them and a render thread draws the same
        plot without its lines; when that picture arrives it becomes the background. The GUI thread
        never draws the whole figure while a job runs (that draw paused napari for 0.1-0.25 s at load
        6-8; benchmarks/bench_gui_stall.py).
        """
        if self._update_losses():
            return
        if self._loss_pending is not None and self._loss_pending is self._loss_lines and self._loss_axes_current():
            return  # its background is being drawn: when it arrives it shows the newest lines
        r = self.run
        canvas = self.canvas
        self._loss_lines = {}
        self._loss_background = None
        self._loss_total = r.total
        canvas.clear()
        if not r.iterations:
            canvas.message("No loss recorded yet")
            return
        curves = self._loss_curves()
        plot = _LossPlot(curves=curves, adversarial=tuple(k for k in _ADV_LOSSES if k in curves),
                         noise=self.noise_rmse, best=r.best_iteration, xmax=max(r.total, int(r.iterations[-1])),
                         colors=canvas.colors)
        lines = build_loss_plot(canvas.figure, plot)
        # the axes where a draw would put them (the margins engine runs at draw time): the lines are
        # blitted into them before this figure is ever drawn
        canvas.figure.get_layout_engine().execute(canvas.figure)
        self._loss_lines = lines
        self._loss_noise_drawn = self.noise_rmse is not None
        self._loss_pending = lines
        fixed = replace(plot, limits=tuple((a.get_xlim(), a.get_ylim()) for a in canvas.figure.axes))
        key = canvas.pixel_key()
        canvas.render_in_thread(lambda fig: _hide_lines(build_loss_plot(fig, fixed)),
                                lambda pixels: self._show_loss_background(lines, key, pixels))

    def show_params(self, params: dict[str, float]) -> None:
        """Fill the parameter table (lengths in the data's unit)."""
        unit = getattr(self.model, "unit", None) if not self.run.running and self.model is not None else self._unit
        rows = [format_param(k, v, unit or "px") for k, v in params.items()]
        self.param_table.setHorizontalHeaderLabels(["Parameter", "current" if self.run.running else "Value"])
        self.param_table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            self.param_table.setItem(i, 0, QTableWidgetItem(name))
            item = QTableWidgetItem(value)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.param_table.setItem(i, 1, item)

    # -- files ------------------------------------------------------------------------------------
    def save_model(self, path: str | None = None, overwrite: bool = False) -> Path | None:
        """Write the current model as JSON.

        Without ``path`` a save dialog asks (it confirms replacing a file). With a ``path`` an
        existing file is only replaced when ``overwrite`` is True.
        """
        if self.model is None:
            notify_error("No model to save yet: calibrate or load one first")
            return None
        if path is None:
            path = ask_save_path(self, "Save digital-twin model", "twin-model.json", "Model JSON (*.json)")
            if path is None:
                return None
            overwrite = True  # the dialog has asked
        if refuse_overwrite(path, overwrite):
            return None
        from ....model import save_model

        provenance: dict[str, Any] = {"napari_layers": list(self._data_layers), "description": self.model_source}
        if self.calibrator is not None and hasattr(self.calibrator, "provenance"):
            try:
                provenance.update(self.calibrator.provenance())
            except Exception as exc:  # noqa: BLE001 - provenance is a courtesy, the model is what matters
                warn(f"provenance incomplete: {exc}")
        try:
            out = save_model(self.model, path, provenance=provenance)
        except (OSError, ValueError) as exc:
            notify_error(f"Cannot save the model: {exc}")
            return None
        info(f"Model saved to {out}")
        return out

    def load_model(self, path: str | None = None) -> Any:
        """Read a model JSON (dialog when ``path`` is None), show and publish it."""
        loaded = ask_load_model(self, path)
        if loaded is None:
            return None
        model, path = loaded
        self.model = model
        self.calibrator = None
        self.model_source = f"loaded from {Path(path).name}"
        self.show_params(model.interpretable())
        self.save_button.setEnabled(True)
        self.status.setText(f"Model {self.model_source} ({model.variant}); it is offered in the Generate tab")
        self.state.publish(model, self.model_source)
        return model
