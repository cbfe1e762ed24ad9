"""The generate tab's section comparison: a simulated section beside the measured one (the
jobs.generate.compare_section use case in a worker), as a layer and a plot with both C_ij.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton

from ....phases import PHASE_COLORS, PHASE_NAMES
from ..._layers import phase_layer_kwargs
from .._jobs import start_worker
from .._common import (
    GENERATED_TAG,
    PLANE_LABELS,
    combo_device,
    current_section,
    export_canvas_png,
    layer_phase_data,
    layer_spacing,
    notify_error,
)
from .._plot import EXPORT_DPI, EXPORT_SIZE_IN, ThemedCanvas, display_unit, pair_color, pair_label

from .twin import _unwrap

if TYPE_CHECKING:
    from ....jobs.generate import SectionComparison


def compare_section(*args: Any):
    """The section-comparison use case (:func:`napari_assb_twin.jobs.generate.compare_section`) in the worker."""
    from ....jobs.generate import compare_section as job

    return (yield from job(*args))


class GeneratorSections:
    """The generator dock's measured vs simulated section comparison."""

    def _build_compare_row(self) -> QHBoxLayout:
        self.compare_plane = QComboBox()
        self.compare_plane.addItems(list(PLANE_LABELS))
        self.compare_plane.setToolTip("What a 2D measured layer is (3D layers: the shown slice decides)")
        self.compare_button = QPushButton("Compare sections")
        self.compare_button.setToolTip("Simulate a section of the shown slice's size: it appears as a layer below "
                                       "the measured one, and both coverage functions are drawn here")
        self.compare_button.clicked.connect(self.compare)
        self.export_button = QPushButton("PNG…")
        self.export_button.setToolTip(f"Sections and coverage as a {EXPORT_SIZE_IN[0]:g} x {EXPORT_SIZE_IN[1]:g} in, "
                                      f"{EXPORT_DPI} dpi figure (whatever the screen)")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.export_png())
        self.compare_plane.setToolTip("What a 2D measured layer is: an in-plane or an axial section "
                                      "(3D layers: the shown slice decides)")
        cmp_row = QHBoxLayout()
        cmp_row.addWidget(self.compare_plane)
        cmp_row.addWidget(self.compare_button, stretch=1)
        cmp_row.addWidget(self.export_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.canvas = ThemedCanvas(self.viewer, height=3.0)
        self.canvas.message("Compare sections: measured vs simulated coverage functions")
        return cmp_row

    def compare(self) -> Any:
        """Measured vs simulated 2D section of the same size, with coverage curves (in a worker)."""
        if self.compare_worker is not None:
            notify_error("Compare sections: a comparison is already running")
            return None
        if self.model is None:
            notify_error("No model: calibrate, load a JSON or choose a built-in model first")
            return None
        ref = self.reference.layer()
        try:
            if ref is None:
                raise ValueError("choose the measured layer to compare with (Measured layer)")
            section: tuple[int, int] | None = None
            if ref.ndim == 3:
                axis, index = current_section(self.viewer, ref)
                section = (axis, int(np.clip(index, 0, ref.data.shape[axis] - 1)))
                pd = layer_phase_data(ref, section=section)
                plane = pd.plane
                name = f"{ref.name} [{'zyx'[axis]}={index}]"
            else:
                pd = layer_phase_data(ref)
                plane = PLANE_LABELS[self.compare_plane.currentText()]
                name = ref.name
            model, scale, unit = self._model_for_generation()
            from ....devices import resolve_device

            device = str(resolve_device(combo_device(self.device)))  # resolved once: the job gets the device
        except (TypeError, ValueError) as exc:
            notify_error(f"Compare sections: {exc}")
            return None
        self._pending = (ref, section, scale, unit)
        self.compare_button.setEnabled(False)
        self.status.setText("Simulating a section of the same size and measuring coverage…")
        self.compare_worker = start_worker(
            compare_section, model, pd.data, plane, int(self.seed.value()), device, float(scale[-1]), unit, name,
            desc="Comparing sections",
            on_yielded=lambda ev: self.status.setText(ev.message[:1].upper() + ev.message[1:] + "…"),
            on_returned=self._show_comparison,
            on_errored=lambda exc: self.status.setText(f"Comparison failed: {exc}"), on_finished=self._compare_done,
        )
        return self.compare_worker

    def _compare_done(self) -> None:
        self.compare_worker = None
        self.compare_button.setEnabled(True)

    def _show_comparison(self, cmp: SectionComparison) -> None:
        self.comparison = cmp
        self._add_section_layer(cmp)
        self._draw_comparison(export=False)
        self.export_button.setEnabled(True)
        vm, vs = cmp.cov_measured.volume_fractions, cmp.cov_simulated.volume_fractions
        self.status.setText(
            f"{cmp.measured_name} vs simulated section ({cmp.plane}, layer below the measured one): "
            + ", ".join(f"{PHASE_NAMES[p]} {vm[p]:.2f}/{vs[p]:.2f}" for p in range(3))
        )
        self.compared.emit(cmp)

    @property
    def section_layer(self) -> Labels | None:
        """The simulated-section layer this widget made, if it is still in the viewer."""
        layer = self._section_ref() if self._section_ref is not None else None
        return layer if layer is not None and self._in_viewer(layer) else None

    def _add_section_layer(self, cmp: SectionComparison) -> None:
        """The simulated section as a layer below the measured one: same scale, units and slice.

        For a 3D measured layer it is a one-voxel-thick 3D layer at the compared slice, so napari
        shows it exactly when that slice is shown (the same slice in both).
        """
        ref, section, scale, unit = self._pending
        data = cmp.simulated
        spacing = tuple(scale[-2:])
        if section is not None:
            axis, index = section
            data = np.expand_dims(data, axis)
            spacing = tuple(float(s) for s in layer_spacing(ref)[0])
        meta = {GENERATED_TAG: self.tag, "source": f"napari-assb-twin: simulated section for {cmp.measured_name}",
                "seed": int(self.seed.value())}
        kwargs = phase_layer_kwargs(f"simulated section ({cmp.measured_name})", data.ndim, spacing, unit, meta)
        rows = 0 if section is None else [d for d in range(3) if d != section[0]][0]
        beside, overlap = self._placement(data.ndim, shift_axis=rows)  # below the measured layer
        if section is not None:
            # on the compared slice: the world coordinate of index along the slicing axis
            lo = np.asarray(ref.extent.world)[0]
            at = float(lo[section[0]] + section[1] * ref.scale[section[0]])  # extent.world is pixel centres
            beside = tuple(at if d == section[0] else v for d, v in enumerate(beside))
            overlap = tuple(at if d == section[0] else v for d, v in enumerate(overlap))
        layer = self.section_layer
        if layer is None or layer.ndim != data.ndim:
            if layer is not None:
                self.viewer.layers.remove(layer)
            layer = _unwrap(self.viewer.add_labels(data, **kwargs))
        else:
            layer.data = data
            layer.scale = kwargs["scale"]
            layer.units = kwargs["units"]
            layer.metadata = kwargs["metadata"]
            layer.name = kwargs["name"]
        self._section_ref = weakref.ref(layer)
        self._place(layer, beside, overlap)

    def _draw_comparison(self, export: bool) -> None:
        """Coverage functions of both sections; with ``export`` also the two section images."""
        from matplotlib.colors import ListedColormap
        from matplotlib.lines import Line2D

        cmp = self.comparison
        if cmp is None:
            return
        c = self.canvas
        c.clear()
        fig = c.figure
        unit = display_unit(cmp.unit)
        if export:
            gs = fig.add_gridspec(2, 2, height_ratios=[1.2, 1.0])
            cmap = ListedColormap([PHASE_COLORS[p][:3] for p in range(3)])
            h, w = cmp.measured.shape
            ext = (0, w * cmp.spacing, h * cmp.spacing, 0)
            for k, (img, title) in enumerate(((cmp.measured, f"measured: {cmp.measured_name}"), (cmp.simulated, "simulated"))):
                ax = c.style_axes(fig.add_subplot(gs[0, k]), grid=False)
                ax.imshow(img, cmap=cmap, vmin=0, vmax=2, interpolation="nearest", extent=ext)
                ax.set_title(title)
                ax.set_xlabel(unit)
            ax = c.style_axes(fig.add_subplot(gs[1, :]))
        else:
            ax = c.style_axes(fig.add_subplot(1, 1, 1))
        bg = c.colors["background"]
        for res, ls in ((cmp.cov_measured, "-"), (cmp.cov_simulated, "--")):
            mean_dir = res.directional.mean(axis=0)  # both in-plane directions of the section
            dist = res.r_px * cmp.spacing
            for p in range(3):
                ax.plot(dist, mean_dir[p, p], ls, color=pair_color(p, p, bg), lw=1.4)
        ax.set_xlabel(f"r ({unit})")
        ax.set_ylabel("C_ii(r)")
        c.set_title(ax, f"{cmp.measured_name} ({cmp.plane})")
        handles = [Line2D([], [], color=pair_color(p, p, bg), lw=2, label=pair_label(p, p)) for p in range(3)]
        handles += [Line2D([], [], color=c.colors["text"], ls="-", label="measured"),
                    Line2D([], [], color=c.colors["text"], ls="--", label="simulated")]
        c.style_legend(ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right"))
        c.draw()

    def export_png(self, path: str | None = None) -> Path | None:
        """Save sections and coverage as a fixed-size PNG (dialog when ``path`` is None)."""
        if self.comparison is None:
            notify_error("Compare sections first: nothing to export yet")
            return None
        return export_canvas_png(self, self.canvas, path, caption="Export section comparison", start="sections.png",
                                 what="Section comparison", error_prefix="Export", redraw=self._draw_comparison)
