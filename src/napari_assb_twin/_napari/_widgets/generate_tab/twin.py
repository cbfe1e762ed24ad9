"""The generate tab's twin: generation in a worker (the jobs.generate.generate_array use case) and the
twin layer's placement beside, over or in a grid with the measured layer.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from napari.layers import Labels, Layer
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QSpinBox

from ....phasemap import is_isotropic, same_size
from ....phases import PHASE_NAMES
from ..._layers import phase_layer_kwargs
from .._jobs import start_worker
from .._common import GENERATED_TAG, TWIN_MODEL_KEY, LayerCombo, combo_device, layer_spacing, notify_error, warn


PLACEMENTS = ("beside the measured layer", "grid view", "on top of the measured layer")


GAP_FRACTION = 0.06  # gap between measured and simulated layers, as a fraction of the measured width


def model_at_resolution(model: Any, voxel_size: float, unit: str | None) -> Any:
    """The same model expressed on a grid of ``voxel_size`` (same physical lengths).

    Uses the model file's physical representation, so it works for every variant. Returns the
    model unchanged when the resolution already matches or either side is in pixels.
    """
    from ....model import model_from_dict, model_to_dict

    if unit is None or model.unit in ("px", None) or same_size(model.voxel_size, voxel_size):
        return model
    d = model_to_dict(model)
    d["voxel_size"] = float(voxel_size)
    new = model_from_dict(d)
    new.set_volume_fractions(model.volume_fractions)  # exact, not the rounded file values
    return new


def _generate(model: Any, shape: tuple[int, ...], seed: int, device: str):
    """The generation use case (:func:`napari_assb_twin.jobs.generate.generate_array`: memory check,
    length-scale warning, one event per field, the caller's model never moved) in the worker."""
    from ....jobs.generate import generate_array

    return (yield from generate_array(model, shape, seed=seed, device=device))


def _unwrap(layer: Any) -> Any:
    """The layer itself, not napari's per-plugin proxy of it (a proxy is a new object each time,
    so weak references and ids must be taken of the layer)."""
    return getattr(layer, "__wrapped__", layer)


class GeneratorTwin:
    """The generator dock's generation and layer placement."""

    def _build_generate_box(self) -> QGroupBox:
        self.shape_spins = []
        shape_row = QHBoxLayout()
        for axis in "zyx":
            s = QSpinBox()
            s.setRange(2, 1024)
            s.setValue(96)
            s.setToolTip(f"size along {axis} (voxels)")
            # room for the largest size in the dock's font, whatever the style draws beside it
            digits = s.fontMetrics().horizontalAdvance(str(s.maximum()))
            s.setMinimumWidth(digits + 2 * s.fontMetrics().height() + 24)
            self.shape_spins.append(s)
            shape_row.addWidget(s)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.device = QComboBox()
        self.device.setEditable(True)
        self.reference = LayerCombo(self.viewer, none_text="(none)",
                                    predicate=lambda lay: isinstance(lay, Labels) and not self._is_mine(lay))
        self.reference.setToolTip("The measured layer: the twin gets its scale and units and is placed beside it")
        self.reference.currentIndexChanged.connect(self._on_reference)
        self.placement = QComboBox()
        self.placement.addItems(PLACEMENTS)
        self.placement.setToolTip("Beside: same slice, shifted along x. Grid view: napari's grid, one cell per "
                                  "layer; switching grid off puts the twin back beside the measured layer")
        self.generate_button = QPushButton("Generate 3D twin")
        self.generate_button.clicked.connect(self.generate)
        gen_box = QGroupBox("Generate")
        gf = QFormLayout(gen_box)
        gf.addRow("Shape z, y, x", shape_row)
        gf.addRow("Seed", self.seed)
        gf.addRow("Device", self.device)
        gf.addRow("Measured layer", self.reference)
        gf.addRow("Placement", self.placement)
        gf.addRow(self.generate_button)
        return gen_box

    # -- reference layer and placement ----------------------------------------------------------
    def _in_viewer(self, layer: Layer) -> bool:
        return any(_unwrap(lay) is layer for lay in self.viewer.layers)

    def _is_mine(self, layer: Layer) -> bool:
        return layer.metadata.get(GENERATED_TAG) == getattr(self, "tag", None)

    def _on_reference(self, *args: Any) -> None:
        ref = self.reference.layer()
        if ref is not None and ref.ndim == 3:
            for s, n in zip(self.shape_spins, ref.data.shape):
                s.setValue(int(min(n, 256)))

    @property
    def layer(self) -> Labels | None:
        """The layer this widget generated, if it is still in the viewer."""
        layer = self._layer_ref() if self._layer_ref is not None else None
        if layer is not None and self._in_viewer(layer) and self._is_mine(layer):
            return layer
        for lay in map(_unwrap, self.viewer.layers):  # e.g. after the widget was re-created: find it by its tag
            if isinstance(lay, Labels) and self._is_mine(lay):
                return lay
        return None

    def _model_for_generation(self) -> tuple[Any, tuple[float, ...], str | None]:
        """The model on the reference layer's grid, and the scale / unit the new layer gets."""
        ref = self.reference.layer()
        model = self.model
        if ref is None:
            unit = None if model.unit == "px" else model.unit
            return model, (float(model.voxel_size),) * 3, unit
        spacing, unit = layer_spacing(ref)
        sp = np.asarray(spacing, dtype=float)
        if not is_isotropic(spacing):
            warn(f"{ref.name} has anisotropic voxels {tuple(sp)}; the twin uses cubic voxels of {sp[-1]:g}")
        if unit is not None and model.unit not in ("px", None) and unit != model.unit:
            warn(f"{ref.name} is in {unit} but the model in {model.unit}; the twin keeps the model's voxel size")
            return model, (float(model.voxel_size),) * 3, model.unit
        if model.unit in ("px", None) or unit is None:
            # one side is in pixels: the model's pixels are the layer's pixels
            return model, (float(sp[-1]),) * 3, unit
        return model_at_resolution(model, float(sp[-1]), unit), (float(sp[-1]),) * 3, unit

    def _ref_corners(self, ndim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """World min / max corner of the measured layer over the last ``ndim`` axes (None: no layer)."""
        ref = self.reference.layer()
        if ref is None:
            return None
        ext = np.asarray(ref.extent.world)  # (2, ref.ndim), world units
        lo, hi = np.zeros(ndim), np.zeros(ndim)
        n = min(ndim, ext.shape[1])
        lo[-n:], hi[-n:] = ext[0][-n:], ext[1][-n:]
        return lo, hi

    def _placement(self, ndim: int, shift_axis: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(beside, overlap)`` translations for a new layer of ``ndim`` axes.

        ``overlap`` puts the layer's origin on the measured layer's (same world coordinates on
        every axis: what napari's grid view, whose cells share one camera, needs); ``beside`` also
        shifts it past the measured layer along ``shift_axis`` by a small gap, so the same slice
        along the other axes is shown in both.
        """
        corners = self._ref_corners(ndim)
        if corners is None:
            zero = (0.0,) * ndim
            return zero, zero
        lo, hi = corners
        beside = lo.copy()
        if self.placement.currentText() != PLACEMENTS[2]:
            width = hi[shift_axis] - lo[shift_axis]
            beside[shift_axis] = hi[shift_axis] + GAP_FRACTION * width
        return tuple(float(v) for v in beside), tuple(float(v) for v in lo)

    def _place(self, layer: Labels, beside: tuple[float, ...], overlap: tuple[float, ...]) -> None:
        """Put ``layer`` beside the measured one, or on it while napari's grid view is on."""
        self._beside[id(layer)] = beside
        self._overlap = getattr(self, "_overlap", {})
        self._overlap[id(layer)] = overlap
        layer.translate = overlap if self.viewer.canvas.grid.enabled else beside

    def _on_grid(self, event: Any = None) -> None:
        """Grid view on: the linked grid cells need the layers on one origin; off: back beside."""
        grid_on = self.viewer.canvas.grid.enabled
        for ref in (self._layer_ref, self._section_ref):
            layer = ref() if ref is not None else None
            if layer is None or not self._in_viewer(layer) or id(layer) not in self._beside:
                continue
            layer.translate = self._overlap[id(layer)] if grid_on else self._beside[id(layer)]

    # -- actions ----------------------------------------------------------------------------------
    def generate(self) -> Any:
        """Generate a volume in a worker; the layer is added / replaced when it returns."""
        if self.model is None:
            notify_error("No model: calibrate, load a JSON or choose a built-in model first")
            return None
        if self.worker is not None:
            notify_error("Generation is already running")
            return None
        from ....devices import resolve_device

        try:
            device = str(resolve_device(combo_device(self.device)))  # resolved once: the job gets the device
            model, scale, unit = self._model_for_generation()
        except ValueError as exc:
            notify_error(f"Generator: {exc}")
            return None
        shape = tuple(int(s.value()) for s in self.shape_spins)
        seed = int(self.seed.value())
        self.generate_button.setEnabled(False)
        self.status.setText(f"Generating {shape[0]}\u00d7{shape[1]}\u00d7{shape[2]} on {device}…")
        # `finished` comes after `returned`: release the widget first, so a Generate pressed as soon
        # as the layer appears is not refused as "already running"
        self.worker = start_worker(
            _generate, model, shape, seed, device, desc="Generating twin", on_yielded=self._on_generate_event,
            on_returned=lambda arr: (self._generation_done(), self._add_layer(arr, scale, unit, seed, model)),
            on_errored=lambda exc: self.status.setText(f"Generation failed: {exc}"), on_finished=self._generation_done,
        )
        return self.worker

    def _on_generate_event(self, ev: Any) -> None:
        if ev.stage == "warning":
            warn(f"Generator: {ev.message}")
        else:
            self.status.setText(ev.message[:1].upper() + ev.message[1:] + "…")

    def _generation_done(self) -> None:
        self.worker = None
        self.generate_button.setEnabled(True)

    def _add_layer(self, data: np.ndarray, scale: tuple[float, ...], unit: str | None, seed: int, model: Any) -> None:
        from ....model import model_to_dict

        ref = self.reference.layer()
        name = f"twin {model.variant} seed {seed}"
        meta = {
            GENERATED_TAG: self.tag,
            "source": "napari-assb-twin generator: " + self.source.currentText().lstrip("\u2605 "),
            "seed": seed,
            "model_parameters": model.interpretable(),
            "reference_layer": ref.name if ref is not None else None,
            TWIN_MODEL_KEY: model_to_dict(model),  # the Validate tab simulates more realisations of it
        }
        kwargs = phase_layer_kwargs(name, data.ndim, scale, unit, meta)
        beside, overlap = self._placement(data.ndim, shift_axis=data.ndim - 1)  # along x
        layer = self.layer
        if layer is None:
            layer = _unwrap(self.viewer.add_labels(data, **kwargs))
            self._given_name = layer.name
        else:  # replace the layer this widget made, keeping the user's display settings
            layer.data = data
            layer.scale = kwargs["scale"]
            layer.units = kwargs["units"]
            layer.metadata = kwargs["metadata"]
            if layer.name == self._given_name:
                layer.name = name
                self._given_name = layer.name
        self._layer_ref = weakref.ref(layer)
        self.viewer.canvas.grid.enabled = self.placement.currentText() == PLACEMENTS[1]
        self._place(layer, beside, overlap)
        if ref is not None:
            self.viewer.reset_view()
        fr = np.bincount(data.ravel(), minlength=3)[:3] / data.size
        self.status.setText(
            f"{layer.name}: " + ", ".join(f"{PHASE_NAMES[p]} {fr[p]:.3f}" for p in range(3))
        )
        self.generated.emit(layer)
