"""Generator dock widget: vary a digital-twin model by hand, generate 3D volumes, compare sections.

The model comes from the calibration dock (through the viewer's :class:`~._state.TwinState`), a
model JSON file or a built-in reference model. Every interpretable parameter (volume fractions,
length scales, anisotropy ratio, chi-square degrees of freedom k, ...) has a typed field of a
magicgui form, with the range the model itself accepts; an edit makes a new model with
:meth:`ThreePhaseModel.with_updates`. Generate runs in a worker and adds a ``uint8`` Labels layer in the phase colours with the scale and units of a chosen measured
(reference) layer, placed beside it or shown in grid mode. The layer is tagged in its metadata,
so regenerating replaces that layer (whatever its name) and never a user's layer.

"Compare sections" draws a measured 2D section and a simulated one of the same size side by side
with their coverage functions overlaid.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Layer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...phasemap import PhaseMap, is_isotropic, same_size
from ...phases import PHASE_COLORS, PHASE_NAMES
from .._layers import phase_layer_kwargs
from ._jobs import guard_close, start_worker, stop_and_join
from ._common import (
    GENERATED_TAG,
    PLANE_LABELS,
    LayerCombo,
    align_form_labels,
    ask_load_model,
    combo_device,
    current_section,
    export_canvas_png,
    fill_devices,
    layer_phase_data,
    layer_spacing,
    notify_error,
    typed_form,
    warn,
)
from ._common import TWIN_MODEL_KEY
from ._plot import EXPORT_DPI, EXPORT_SIZE_IN, ThemedCanvas, display_unit, pair_color, pair_label
from ._state import twin_state

if TYPE_CHECKING:
    import napari

__all__ = ["GeneratorWidget", "model_at_resolution", "PLACEMENTS"]

PLACEMENTS = ("beside the measured layer", "grid view", "on top of the measured layer")
#: What happens to the other fractions when one is edited (shown in the dock).
FRACTION_RULE = ("Editing a volume fraction keeps it and the other edited one; the phase chosen here takes the "
                 "remainder (its field is read-only). Edits that leave it below 0 are refused.")

#: Spin-box steps of the parameter kinds (ParameterRange.kind); the ranges are the model's own.
_STEPS = {"fraction": 0.01, "length": 0.1, "number": 0.05}
_TOOLTIPS = {"fraction": FRACTION_RULE, "count": "chi-square degrees of freedom k: 1 sheets, 2 tubes, 3 blobs, "
             "large: Gaussian-like"}

SOURCE_CURRENT = "current"
GAP_FRACTION = 0.06  # gap between measured and simulated layers, as a fraction of the measured width


def model_at_resolution(model: Any, voxel_size: float, unit: str | None) -> Any:
    """The same model expressed on a grid of ``voxel_size`` (same physical lengths).

    Uses the model file's physical representation, so it works for every variant. Returns the
    model unchanged when the resolution already matches or either side is in pixels.
    """
    from ...model import model_from_dict, model_to_dict

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
    from ...jobs.generate import generate_array

    return (yield from generate_array(model, shape, seed=seed, device=device))


@dataclass
class SectionComparison:
    measured: np.ndarray
    simulated: np.ndarray
    plane: str
    spacing: float
    unit: str | None
    measured_name: str
    cov_measured: Any
    cov_simulated: Any


def _compare(model: Any, measured: np.ndarray, plane: str, seed: int, device: str, spacing: float,
             unit: str | None, name: str) -> SectionComparison:
    import torch

    from ...devices import resolve_device
    from ...stats.coverage import coverage

    dev = resolve_device(device)
    m = model.on_device(dev)  # a copy on another device: the dock's model is never moved
    g = torch.Generator(device=dev).manual_seed(int(seed))
    with torch.no_grad():
        sim = m.sample_sections(tuple(measured.shape), plane=plane, batch=1, generator=g, mode="hard")
    sim = sim[0].cpu().numpy().astype(np.uint8)
    r_max = PhaseMap(measured).default_r_max()  # the package's one r_max rule
    # the same (minus-sampling) estimator for both, so differences are the material's, not the estimator's
    cm = coverage(measured, r_max, periodic=False, radial=False)
    cs = coverage(sim, r_max, periodic=False, radial=False)
    return SectionComparison(measured, sim, plane, spacing, unit, name, cm, cs)


def _unwrap(layer: Any) -> Any:
    """The layer itself, not napari's per-plugin proxy of it (a proxy is a new object each time,
    so weak references and ids must be taken of the layer)."""
    return getattr(layer, "__wrapped__", layer)


def _short_key(key: str) -> str:
    return (key.replace("_fraction", " fraction").replace("f1.", "F1 ").replace("f2.", "F2 ")
            .replace("length_scale", "length").replace("anisotropy_ratio", "axial/in-plane").replace("_", " "))


class GeneratorWidget(QWidget):
    """Dock widget: edit a model's parameters, generate a 3D twin beside the measured layer.

    Public sub-widgets: ``source`` (model choice), ``load_button``, ``reset_button``, ``balance``
    (the phase taking the remainder), ``params`` (magicgui form of the interpretable parameters,
    ``params[key]``; ranges from the model's ``parameter_ranges()``), ``param_spins`` ({key: the
    Qt spin box behind ``params[key]``}), ``shape_spins`` (z, y, x), ``seed``, ``device``,
    ``reference`` (layer combo), ``placement``, ``generate_button``, ``compare_plane``,
    ``compare_button``, ``canvas``, ``status``. State: ``model`` (the edited model),
    ``base_model`` (as chosen), ``layer`` (the layer this widget made), ``worker``.
    Signals: ``generated(layer)`` after a layer is added or replaced, ``compared(comparison)``.
    """

    generated = Signal(object)
    compared = Signal(object)

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = twin_state(napari_viewer)
        self.tag = uuid.uuid4().hex
        self.model: Any = None
        self.base_model: Any = None
        self.worker: Any = None
        self.compare_worker: Any = None
        self.comparison: SectionComparison | None = None
        self._layer_ref: weakref.ref | None = None
        self._section_ref: weakref.ref | None = None
        self._beside: dict[int, tuple[float, ...]] = {}  # id(layer) -> translate beside the measured layer
        self._given_name: str | None = None
        self._loaded: dict[str, Any] = {}
        self.param_spins: dict[str, Any] = {}  # key -> the Qt spin box behind its magicgui widget

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_model_box())
        layout.addWidget(self._build_generate_box())
        layout.addLayout(self._build_compare_row())
        layout.addWidget(self.status)
        layout.addWidget(self.canvas, stretch=1)

        fill_devices(self.device)
        self.state.model_changed.connect(self._on_published)
        napari_viewer.canvas.grid.events.enabled.connect(self._on_grid)
        from ...model import DEFAULT_MODEL

        self._fill_sources(select=SOURCE_CURRENT if self.state.model is not None else f"ref:{DEFAULT_MODEL}")
        self._on_reference()
        guard_close(napari_viewer, self)

    def _build_model_box(self) -> QGroupBox:
        self.source = QComboBox()
        # long model names must not widen the dock (full name in the list and the tooltip)
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(12)
        self.source.currentIndexChanged.connect(self._on_source)
        self.load_button = QPushButton("Load JSON…")
        self.load_button.clicked.connect(lambda: self.load_model())
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Undo the hand edits: back to the chosen model")
        self.reset_button.clicked.connect(self.reset)
        src_row = QHBoxLayout()
        src_row.addWidget(self.source, stretch=1)
        src_row.addWidget(self.load_button)
        src_row.addWidget(self.reset_button)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.balance = QComboBox()
        self.balance.addItems(list(PHASE_NAMES))
        self.balance.setCurrentText(PHASE_NAMES[0])
        self.balance.setToolTip(FRACTION_RULE)
        self.balance.currentTextChanged.connect(lambda _t: self._build_form())
        self.fraction_rule = QLabel("")
        self.fraction_rule.setWordWrap(True)
        self.params = typed_form([])
        model_box = QGroupBox("Model")
        mb = QVBoxLayout(model_box)
        mb.setContentsMargins(6, 6, 6, 6)
        mb.addLayout(src_row)
        mb.addWidget(self.model_label)
        balance_row = QHBoxLayout()
        balance_row.addWidget(QLabel("Remainder to"))
        balance_row.addWidget(self.balance, stretch=1)
        mb.addLayout(balance_row)
        mb.addWidget(self.fraction_rule)
        mb.addWidget(self.params.native)
        return model_box

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

    def stop_jobs(self) -> None:
        """Stop running generation / comparison and wait for their threads (napari is closing)."""
        stop_and_join([self.worker, self.compare_worker])

    # -- model source -----------------------------------------------------------------------------
    def _fill_sources(self, select: str | None = None) -> None:
        from ...model import list_reference_models

        self.source.blockSignals(True)
        self.source.clear()
        if self.state.model is not None:
            self.source.addItem(f"\u2605 {self.state.source}", SOURCE_CURRENT)
        for path in self._loaded:
            self.source.addItem(f"file: {Path(path).name}", f"file:{path}")
        for name in list_reference_models():
            self.source.addItem(f"built-in: {name}", f"ref:{name}")
        self.source.blockSignals(False)
        idx = self.source.findData(select) if select else 0
        self.source.setCurrentIndex(max(idx, 0))
        self._on_source()

    def _on_source(self, *args: Any) -> None:
        key = self.source.currentData()
        if key is None:
            return
        if key == SOURCE_CURRENT:
            model = self.state.model
        elif key.startswith("file:"):
            model = self._loaded[key[5:]]
        else:
            from ...model import load_reference_model

            model = load_reference_model(key[4:])
        self.set_model(model)

    def _on_published(self, model: Any, source: str) -> None:
        try:
            self._fill_sources(select=SOURCE_CURRENT)
            self.status.setText(f"New model: {source}")
        except RuntimeError:  # this dock was closed (Qt object deleted): stop listening
            self.state.model_changed.disconnect(self._on_published)

    def load_model(self, path: str | None = None) -> Any:
        """Read a model JSON (dialog when ``path`` is None) and select it."""
        loaded = ask_load_model(self, path)
        if loaded is None:
            return None
        model, path = loaded
        self._loaded[path] = model
        self._fill_sources(select=f"file:{path}")
        return model

    def set_model(self, model: Any) -> None:
        """Use ``model`` as the base (and current) model and rebuild the parameter form."""
        self.base_model = model
        self.model = model
        self._build_form()

    def reset(self) -> None:
        if self.base_model is not None:
            self.model = self.base_model
            self._refresh_form()

    # -- parameter form ---------------------------------------------------------------------------
    def _param_widget(self, key: str, value: float, rng: Any, unit: str) -> Any:
        """The magicgui widget of one interpretable parameter: its range is the model's own
        (:meth:`ThreePhaseModel.parameter_ranges`); ``rng`` None: shown, not settable."""
        from magicgui.widgets import FloatSpinBox, SpinBox

        label = _short_key(key)
        if rng is None:  # a Gaussian field's k: nothing to vary, shown for what it is
            return SpinBox(name=key, label=label, min=1, max=max(1, int(round(value))), value=int(round(value)),
                           enabled=False, tooltip="a Gaussian field: no degrees of freedom to vary")
        if rng.kind == "count":
            return SpinBox(name=key, label=label, min=int(rng.low), max=int(rng.high), step=1,
                           value=int(round(value)), tooltip=_TOOLTIPS["count"])
        w = FloatSpinBox(name=key, label=label, min=rng.low, max=rng.high, step=_STEPS[rng.kind],
                         tooltip=_TOOLTIPS.get(rng.kind, ""))
        w.native.setDecimals(3)
        w.native.setValue(value)  # the Qt box shows what 3 decimals show; the model keeps its exact value
        if rng.kind == "length":
            w.native.setSuffix(f" {unit}")
        if key == f"{self.balance.currentText()}_fraction":
            w.native.setReadOnly(True)
            w.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            w.tooltip = "Takes the remainder (1 minus the other two); choose another phase above"
        return w

    def _build_form(self) -> None:
        """Rebuild the magicgui form ``params`` from the model's settable interpretable parameters."""
        self.params.clear()
        self.param_spins = {}
        if self.model is None:
            return
        unit = display_unit(self.model.unit if self.model.unit != "px" else None)
        ranges = self.model.parameter_ranges()
        for key, value in self.model.interpretable().items():
            if "correlation_length" in key:
                continue  # derived, shown in the summary line
            w = self._param_widget(key, value, ranges.get(key), unit)
            w.native.setKeyboardTracking(False)  # one model update per finished edit, not per keystroke
            w.changed.connect(lambda v, k=key: self.set_param(k, v))
            self.params.append(w)
            self.param_spins[key] = w.native
        align_form_labels(self.params)
        self._refresh_summary()

    def _refresh_form(self) -> None:
        values = self.model.interpretable()
        for key, spin in self.param_spins.items():
            spin.blockSignals(True)  # the form follows the model: no edit
            spin.setValue(int(round(values[key])) if key.endswith(".dof") else values[key])
            spin.blockSignals(False)
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        m = self.model
        vals = m.interpretable()
        unit = display_unit(m.unit if m.unit != "px" else None)
        corr = ", ".join(f"{_short_key(k).replace(' correlation length', '').replace('inplane', 'in-plane')} {v:.3g} {unit}"
                         for k, v in vals.items() if "correlation_length" in k)
        self.model_label.setText(f"{m.variant}, voxel {m.voxel_size:g} {unit}; 1/e lengths: {corr}")
        vf = m.volume_fractions
        self.fraction_rule.setText(
            f"Fractions sum to {sum(vf.values()):.3f}; {self.balance.currentText()} takes the remainder when "
            "another is edited")

    def fractions_after(self, key: str, value: float) -> dict[str, float]:
        """Volume fractions after setting ``key`` (``<phase>_fraction``) to ``value`` by the dock's rule.

        The edited fraction and the third one are kept; the remainder phase (``balance``) takes
        ``1 - both``. Raises ValueError (saying what to change) when that is infeasible.
        """
        phase = key[: -len("_fraction")]
        balance = self.balance.currentText()
        vf = dict(self.model.volume_fractions)
        if phase == balance:
            raise ValueError(f"the {balance} fraction takes the remainder; edit another fraction, or choose "
                             "another 'Remainder to' phase")
        vf[phase] = float(value)
        kept = [n for n in vf if n not in (phase, balance)]
        rest = 1.0 - vf[phase] - sum(vf[n] for n in kept)
        if rest < 0:
            others = " + ".join(f"{n} {vf[n]:.3f}" for n in (phase, *kept))
            raise ValueError(f"{others} exceeds 1, leaving nothing for {balance}; lower one of them first")
        vf[balance] = rest
        return vf

    def set_param(self, key: str, value: float) -> bool:
        """Change one interpretable parameter (physical units); False with a notification if refused.

        Volume fractions follow :meth:`fractions_after` (no silent rescaling of the other two).
        """
        if self.model is None:
            notify_error("No model: calibrate, load a JSON or choose a built-in model first")
            return False
        try:
            if key.endswith("_fraction") and key[: -len("_fraction")] in PHASE_NAMES:
                new = self.model.with_updates({})  # a copy
                new.set_volume_fractions(self.fractions_after(key, value))
                self.model = new
            else:
                self.model = self.model.with_updates({key: float(value)})
        except ValueError as exc:
            notify_error(f"Generator: {exc}")
            self._refresh_form()
            return False
        self._refresh_form()
        return True

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
        from ...devices import resolve_device

        device = combo_device(self.device)
        try:
            resolve_device(device)
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
        from ...model import model_to_dict

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
            if self.model.variant.endswith("iso"):
                plane = "inplane"  # isotropic: every plane is alike
            model, scale, unit = self._model_for_generation()
            from ...devices import resolve_device

            resolve_device(combo_device(self.device))
        except (TypeError, ValueError) as exc:
            notify_error(f"Compare sections: {exc}")
            return None
        device = combo_device(self.device)
        self._pending = (ref, section, scale, unit)
        self.compare_button.setEnabled(False)
        self.status.setText("Simulating a section of the same size and measuring coverage…")
        self.compare_worker = start_worker(
            _compare, model, pd.data, plane, int(self.seed.value()), device, float(scale[-1]), unit, name,
            desc="Comparing sections", on_returned=self._show_comparison,
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
