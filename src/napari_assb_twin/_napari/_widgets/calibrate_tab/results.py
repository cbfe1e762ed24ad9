"""The calibrate tab's results: the live loss plot (one full draw, then blitted lines), the parameter
table, and saving / loading a model file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem

from .._common import ask_load_model, ask_save_path, info, notify_error, refuse_overwrite, warn
from ....fields.bridged import dof_label, is_bridged
from .._plot import InchMargins, ThemedCanvas, display_unit


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


class CalibrationResults:
    """The calibration dock's live view (loss plot, parameter table) and model files."""

    def _build_live_view(self) -> None:
        self.canvas = ThemedCanvas(self.viewer, height=2.6)
        self.canvas.message("Coverage RMSE curves appear here during calibration")
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

    def _update_losses(self) -> bool:
        """Move the live loss plot's lines to the new data (no rebuild: a rebuild of the figure every
        0.3 s stalled napari for 0.7-2 s on a loaded 2-core machine); False when it must be rebuilt."""
        lines = getattr(self, "_loss_lines", None)
        r = self.run
        if not lines or not r.iterations or set(lines) - {"best"} != set(self._loss_curves()) \
                or lines["best"].axes not in self.canvas.figure.axes or self._loss_total != r.total:
            return False
        if self.noise_rmse is not None and not getattr(self, "_loss_noise_drawn", False):
            return False  # the noise line arrived: draw it once, with a rebuild
        fc = self.canvas.canvas
        bg = getattr(self, "_loss_background", None)
        if bg is None or self._loss_background_key != (fc.get_width_height(), id(self.canvas.colors)):
            return False  # resized or re-themed since the background was taken
        curves = self._loss_curves()
        for key, (x, y) in curves.items():
            y_lo, y_hi = lines[key].axes.get_ylim()
            inside = y[np.isfinite(y)]
            if inside.size and (inside.min() < y_lo or inside.max() > y_hi):
                return False  # the curve left the drawn range: a full draw with new limits
        for key, (x, y) in curves.items():
            lines[key].set_data(x, y)
        lines["best"].set_xdata([max(r.best_iteration, 0)] * 2)
        lines["best"].set_alpha(0.7 if r.best_iteration >= 0 else 0.0)
        # blit: the saved axes background and the lines only (a full draw of the figure took
        # 0.2-0.5 s on the loaded 2-core machine, each one a stall of napari's window)
        fc.restore_region(bg)
        for line in lines.values():
            line.axes.draw_artist(line)
        fc.blit(self.canvas.figure.bbox)
        return True

    def _keep_loss_background(self) -> None:
        """Draw the loss plot once without its lines and keep that picture for :meth:`_update_losses`."""
        lines = list(getattr(self, "_loss_lines", {}).values())
        fc = self.canvas.canvas
        for line in lines:
            line.set_visible(False)
        fc.draw()
        self._loss_background = fc.copy_from_bbox(self.canvas.figure.bbox)
        self._loss_background_key = (fc.get_width_height(), id(self.canvas.colors))
        for line in lines:
            line.set_visible(True)
            line.axes.draw_artist(line)
        fc.blit(self.canvas.figure.bbox)

    def plot_losses(self) -> None:
        """Draw the loss history as coverage RMSE (C_ij units, log scale) beside the data's own
        sampling noise, and the adversarial losses if any."""
        from ....calibrate.losses import loss_to_rmse

        r = self.run
        if self._update_losses():  # live, and the final state too: the lines move, nothing is laid out again
            return
        self._loss_lines = {}
        self._loss_background = None
        self._loss_total = r.total
        canvas = self.canvas
        canvas.clear()
        if not r.iterations:
            canvas.message("No loss recorded yet")
            return
        # margins in inches, not the constrained layout: its tick-label measurements were most of
        # this one full draw (0.36 of 0.64 s in the GUI thread on the loaded machine)
        canvas.figure.set_layout_engine(InchMargins())
        its = np.asarray(r.iterations)
        adv = [k for k in _ADV_LOSSES if k in r.losses]
        axes = canvas.figure.subplots(2 if adv else 1, 1, sharex=True, squeeze=False)[:, 0]
        ax = canvas.style_axes(axes[0])
        colors = {"coverage": canvas.colors["accent"], "coverage_eval": "#e69f00"}
        for key in _COVERAGE_LOSSES:
            if key in r.losses:
                y = np.asarray([loss_to_rmse(v) if np.isfinite(v) else np.nan for v in r.losses[key]], dtype=float)
                ok = np.isfinite(y) & (y > 0)
                style = "-" if key == "coverage" else "o-"
                label = "coverage (train)" if key == "coverage" else "coverage (eval)"
                (self._loss_lines[key],) = ax.plot(its[ok], y[ok], style, ms=2.5, lw=1.2, color=colors[key], label=label)
        if any(k in r.losses for k in _COVERAGE_LOSSES):
            from matplotlib.ticker import FuncFormatter, NullLocator

            ax.set_yscale("log")
            # plain tick labels ("0.01"): the default 10^{-2} labels are mathtext, whose first use
            # loads its fonts in the GUI thread (a 3 s stall of napari on the shared machine)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks cost 0.1 s per full draw
        if self.noise_rmse is not None and self.noise_rmse > 0:
            ax.axhline(self.noise_rmse, color=canvas.colors["text"], lw=1.0, ls="--", alpha=0.8,
                       label="data sampling noise")
            low, high = ax.get_ylim()
            ax.set_ylim(min(low, 0.7 * self.noise_rmse), high)  # the reference line stays in view
        self._loss_noise_drawn = self.noise_rmse is not None
        self._loss_lines["best"] = ax.axvline(max(r.best_iteration, 0), color=canvas.colors["text"], lw=0.8, ls=":",
                                              alpha=0.7 if r.best_iteration >= 0 else 0.0)
        ax.set_ylabel("C_ij RMSE", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            canvas.style_legend(ax.legend(fontsize=7, loc="upper right"))
        if adv:
            ax2 = canvas.style_axes(axes[1])
            for key, color in zip(adv, ("#56b4e9", "#cc79a7", "#009e73")):
                y = np.asarray(r.losses[key], dtype=float)
                (self._loss_lines[key],) = ax2.plot(its, y, lw=1.0, color=color, label=key)
            ax2.set_ylabel("adversarial", fontsize=8)
            canvas.style_legend(ax2.legend(fontsize=7, loc="upper right"))
        axes[-1].set_xlabel("iteration")
        axes[-1].set_xlim(0, max(r.total, int(its[-1])))
        for a in axes:  # room for the curves to move without a new layout (blitted updates)
            low, high = a.get_ylim()
            if a.get_yscale() == "log":
                a.set_ylim(low / 3, high * 1.5)
            else:
                span = high - low or 1.0
                a.set_ylim(low - 0.5 * span, high + 0.5 * span)
        self._keep_loss_background()

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
