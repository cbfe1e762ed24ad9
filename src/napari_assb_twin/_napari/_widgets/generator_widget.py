"""Generator dock widget: vary a digital-twin model by hand, generate 3D volumes, compare sections.

The model comes from the calibration dock (through the viewer's :class:`~._state.TwinState`), a
model JSON file or a built-in reference model. Every interpretable parameter (volume fractions,
length scales, anisotropy ratio, chi-square degrees of freedom k, ...) has a field; an edit makes a
new model with :meth:`ThreePhaseModel.with_updates`. Generate runs in a worker and adds a
``uint8`` Labels layer in the phase colours with the scale and units of a chosen measured
(reference) layer, placed beside it or shown in grid mode. The layer is tagged in its metadata,
so regenerating replaces that layer (whatever its name) and never a user's layer.

"Compare sections" draws a measured 2D section and a simulated one of the same size side by side
with their coverage functions overlaid.
"""

from __future__ import annotations

import copy
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Layer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...phases import PHASE_COLORS, PHASE_NAMES
from .._layers import phase_layer_kwargs
from ._jobs import guard_close, start_worker, stop_and_join
from ._common import (
    GENERATED_TAG,
    LayerCombo,
    ask_load_model,
    combo_device,
    current_section,
    fill_devices,
    layer_phase_data,
    layer_spacing,
    notify_error,
    warn,
)
from ._plot import ThemedCanvas, display_unit, pair_color, pair_label
from ._state import twin_state

if TYPE_CHECKING:
    import napari

__all__ = ["GeneratorWidget", "model_at_resolution", "PLACEMENTS"]

PLACEMENTS = ("beside the reference (x offset)", "grid view", "on top of the reference")
SOURCE_CURRENT = "current"
GAP_FRACTION = 0.06  # gap between measured and simulated layers, as a fraction of the measured width


def model_at_resolution(model: Any, voxel_size: float, unit: str | None) -> Any:
    """The same model expressed on a grid of ``voxel_size`` (same physical lengths).

    Uses the model file's physical representation, so it works for every variant. Returns the
    model unchanged when the resolution already matches or either side is in pixels.
    """
    from ...model import model_from_dict, model_to_dict

    if unit is None or model.unit in ("px", None) or np.isclose(model.voxel_size, voxel_size, rtol=1e-6):
        return model
    d = model_to_dict(model)
    d["voxel_size"] = float(voxel_size)
    new = model_from_dict(d)
    new.set_volume_fractions(model.volume_fractions)  # exact, not the rounded file values
    return new


def _generate(model: Any, shape: tuple[int, ...], seed: int, device: str) -> np.ndarray:
    return np.asarray(model.generate(shape, seed=seed, device=device), dtype=np.uint8)


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
    m = model.to(dev)
    g = torch.Generator(device=dev).manual_seed(int(seed))
    with torch.no_grad():
        sim = m.sample_sections(tuple(measured.shape), plane=plane, batch=1, generator=g, mode="hard")
    sim = sim[0].cpu().numpy().astype(np.uint8)
    r_max = int(max(4, min(64, (min(measured.shape) - 1) // 2)))
    # the same (minus-sampling) estimator for both, so differences are the material's, not the estimator's
    cm = coverage(measured, r_max, periodic=False, radial=False)
    cs = coverage(sim, r_max, periodic=False, radial=False)
    return SectionComparison(measured, sim, plane, spacing, unit, name, cm, cs)


def _short_key(key: str) -> str:
    return (key.replace("_fraction", " fraction").replace("f1.", "F1 ").replace("f2.", "F2 ")
            .replace("length_scale", "length").replace("anisotropy_ratio", "axial/in-plane").replace("_", " "))


class GeneratorWidget(QWidget):
    """Dock widget: edit a model's parameters, generate a 3D twin beside the measured layer.

    Public sub-widgets: ``source`` (model choice), ``load_button``, ``reset_button``,
    ``param_spins`` ({key: spin box}), ``shape_spins`` (z, y, x), ``seed``, ``device``,
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
        self._given_name: str | None = None
        self._loaded: dict[str, Any] = {}
        self.param_spins: dict[str, QSpinBox | QDoubleSpinBox] = {}

        # -- model source
        self.source = QComboBox()
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
        self.param_form = QFormLayout()
        model_box = QGroupBox("Model")
        mb = QVBoxLayout(model_box)
        mb.setContentsMargins(6, 6, 6, 6)
        mb.addLayout(src_row)
        mb.addWidget(self.model_label)
        mb.addLayout(self.param_form)

        # -- generation
        self.shape_spins = []
        shape_row = QHBoxLayout()
        for axis in "zyx":
            s = QSpinBox()
            s.setRange(2, 1024)
            s.setValue(96)
            s.setPrefix(f"{axis} ")
            s.setToolTip(f"size along {axis} (voxels)")
            self.shape_spins.append(s)
            shape_row.addWidget(s)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.device = QComboBox()
        self.device.setEditable(True)
        self.reference = LayerCombo(napari_viewer, none_text="(none)", predicate=lambda lay: isinstance(lay, Labels) and not self._is_mine(lay))
        self.reference.setToolTip("The measured layer: the twin gets its scale and units and is placed beside it")
        self.reference.currentIndexChanged.connect(self._on_reference)
        self.placement = QComboBox()
        self.placement.addItems(PLACEMENTS)
        self.generate_button = QPushButton("Generate 3D twin")
        self.generate_button.clicked.connect(self.generate)
        gen_box = QGroupBox("Generate")
        gf = QFormLayout(gen_box)
        gf.addRow("Shape", shape_row)
        gf.addRow("Seed", self.seed)
        gf.addRow("Device", self.device)
        gf.addRow("Measured layer", self.reference)
        gf.addRow("Placement", self.placement)
        gf.addRow(self.generate_button)

        # -- compare
        self.compare_plane = QComboBox()
        self.compare_plane.addItems(["in-plane", "axial"])
        self.compare_plane.setToolTip("What a 2D measured layer is (3D layers: the shown slice decides)")
        self.compare_button = QPushButton("Compare sections")
        self.compare_button.clicked.connect(self.compare)
        cmp_row = QHBoxLayout()
        cmp_row.addWidget(QLabel("2D plane"))
        cmp_row.addWidget(self.compare_plane)
        cmp_row.addWidget(self.compare_button, stretch=1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.canvas = ThemedCanvas(napari_viewer, height=3.6)
        self.canvas.message("Compare sections: measured vs simulated, with their coverage functions")

        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(gen_box)
        layout.addLayout(cmp_row)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas, stretch=1)

        fill_devices(self.device)
        self.state.model_changed.connect(self._on_published)
        from ...model import DEFAULT_MODEL

        self._fill_sources(select=SOURCE_CURRENT if self.state.model is not None else f"ref:{DEFAULT_MODEL}")
        self._on_reference()

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
        model = ask_load_model(self, path)
        if model is None:
            return None
        self._loaded[str(path)] = model
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
    def _build_form(self) -> None:
        while self.param_form.rowCount():
            self.param_form.removeRow(0)
        self.param_spins = {}
        if self.model is None:
            return
        unit = display_unit(self.model.unit if self.model.unit != "px" else None)
        for key, value in self.model.interpretable().items():
            if "correlation_length" in key:
                continue  # derived, shown in the summary line
            if key.endswith(".dof"):
                spin: QSpinBox | QDoubleSpinBox = QSpinBox()
                spin.setRange(1, 6)
                spin.setToolTip("chi-square degrees of freedom k: 1 sheets, 2 tubes, 3 blobs, large: Gaussian-like")
                try:  # Gaussian fields have no k to vary
                    self.model.with_updates({key: value})
                except ValueError:
                    spin.setEnabled(False)
                    spin.setToolTip("a Gaussian field: no degrees of freedom to vary")
            else:
                spin = QDoubleSpinBox()
                spin.setDecimals(3)
                if key.endswith("_fraction"):
                    spin.setRange(0.0, 0.99)
                    spin.setSingleStep(0.01)
                    spin.setToolTip("Changing one fraction rescales the other two so they sum to 1")
                elif "length" in key:
                    spin.setRange(1e-3, 1e4)
                    spin.setSingleStep(0.1)
                    spin.setSuffix(f" {unit}")
                else:
                    spin.setRange(1e-3, 1e3)
                    spin.setSingleStep(0.05)
            spin.setValue(int(round(value)) if isinstance(spin, QSpinBox) else value)
            spin.setKeyboardTracking(False)  # one model update per finished edit, not per keystroke
            spin.valueChanged.connect(lambda v, k=key: self.set_param(k, v))
            self.param_spins[key] = spin
            self.param_form.addRow(_short_key(key), spin)
        self._refresh_summary()

    def _refresh_form(self) -> None:
        values = self.model.interpretable()
        for key, spin in self.param_spins.items():
            spin.blockSignals(True)
            spin.setValue(int(round(values[key])) if isinstance(spin, QSpinBox) else values[key])
            spin.blockSignals(False)
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        m = self.model
        vals = m.interpretable()
        unit = display_unit(m.unit if m.unit != "px" else None)
        corr = ", ".join(f"{_short_key(k).replace('correlation length', 'corr.')} {v:.3g}" for k, v in vals.items() if "correlation_length" in k)
        self.model_label.setText(f"{m.variant}, voxel {m.voxel_size:g} {unit}; 1/e lengths: {corr} {unit}")

    def set_param(self, key: str, value: float) -> bool:
        """Change one interpretable parameter (physical units); False with a notification if refused."""
        if self.model is None:
            notify_error("No model: calibrate, load a JSON or choose a built-in model first")
            return False
        try:
            self.model = self.model.with_updates({key: float(value)})
        except ValueError as exc:
            notify_error(f"Generator: {exc}")
            self._refresh_form()
            return False
        self._refresh_form()
        return True

    # -- reference layer and placement ----------------------------------------------------------
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
        if layer is not None and layer in self.viewer.layers and self._is_mine(layer):
            return layer
        for lay in self.viewer.layers:  # e.g. after the widget was re-created: find it by its tag
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
        if not np.allclose(sp, sp[-1], rtol=1e-3):
            warn(f"{ref.name} has anisotropic voxels {tuple(sp)}; the twin uses cubic voxels of {sp[-1]:g}")
        if unit is not None and model.unit not in ("px", None) and unit != model.unit:
            warn(f"{ref.name} is in {unit} but the model in {model.unit}; the twin keeps the model's voxel size")
            return model, (float(model.voxel_size),) * 3, model.unit
        if model.unit in ("px", None) or unit is None:
            # one side is in pixels: the model's pixels are the layer's pixels
            return model, (float(sp[-1]),) * 3, unit
        return model_at_resolution(model, float(sp[-1]), unit), (float(sp[-1]),) * 3, unit

    def _placement_translate(self, shape: tuple[int, ...], scale: tuple[float, ...]) -> tuple[float, ...]:
        ref = self.reference.layer()
        if ref is None:
            return (0.0,) * len(shape)
        ext = np.asarray(ref.extent.world)  # (2, ref.ndim): min and max corner, world units
        lo = np.zeros(len(shape))
        hi = np.zeros(len(shape))
        lo[-ext.shape[1]:], hi[-ext.shape[1]:] = ext[0], ext[1]
        # pixel centres: the data extent includes half a pixel on each side
        t = lo.copy()
        if self.placement.currentText() == PLACEMENTS[0]:
            width = hi[-1] - lo[-1]
            t[-1] = hi[-1] + GAP_FRACTION * width
        return tuple(float(v) for v in t)

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
        # a private copy: nn.Module.to() moves in place, and the worker must not touch the shared model
        # `finished` comes after `returned`: release the widget first, so a Generate pressed as soon
        # as the layer appears is not refused as "already running"
        self.worker = start_worker(
            _generate, copy.deepcopy(model), shape, seed, device, desc="Generating twin",
            on_returned=lambda arr: (self._generation_done(), self._add_layer(arr, scale, unit, seed, model)),
            on_errored=lambda exc: self.status.setText(f"Generation failed: {exc}"), on_finished=self._generation_done,
        )
        return self.worker

    def _generation_done(self) -> None:
        self.worker = None
        self.generate_button.setEnabled(True)

    def _add_layer(self, data: np.ndarray, scale: tuple[float, ...], unit: str | None, seed: int, model: Any) -> None:
        ref = self.reference.layer()
        name = f"twin {model.variant} seed {seed}"
        meta = {
            GENERATED_TAG: self.tag,
            "source": "napari-assb-twin generator: " + self.source.currentText().lstrip("\u2605 "),
            "seed": seed,
            "model_parameters": model.interpretable(),
            "reference_layer": ref.name if ref is not None else None,
        }
        kwargs = phase_layer_kwargs(name, data.ndim, scale, unit, meta)
        translate = self._placement_translate(data.shape, kwargs["scale"])
        layer = self.layer
        if layer is None:
            layer = self.viewer.add_labels(data, translate=translate, **kwargs)
            self._given_name = layer.name
        else:  # replace the layer this widget made, keeping the user's display settings
            layer.data = data
            layer.scale = kwargs["scale"]
            layer.units = kwargs["units"]
            layer.translate = translate
            layer.metadata = kwargs["metadata"]
            if layer.name == self._given_name:
                layer.name = name
                self._given_name = layer.name
        self._layer_ref = weakref.ref(layer)
        grid = self.viewer.canvas.grid
        grid.enabled = self.placement.currentText() == PLACEMENTS[1]
        if ref is not None and self.placement.currentText() == PLACEMENTS[0]:
            self.viewer.reset_view()
        fr = np.bincount(data.ravel(), minlength=3)[:3] / data.size
        self.status.setText(
            f"{layer.name}: " + ", ".join(f"{PHASE_NAMES[p]} {fr[p]:.3f}" for p in range(3))
        )
        self.generated.emit(layer)

    def compare(self) -> Any:
        """Measured vs simulated 2D section of the same size, with coverage curves (in a worker)."""
        if self.model is None:
            notify_error("No model: calibrate, load a JSON or choose a built-in model first")
            return None
        ref = self.reference.layer()
        try:
            if ref is None:
                raise ValueError("choose the measured layer to compare with (Measured layer)")
            if ref.ndim == 3:
                axis, index = current_section(self.viewer, ref)
                pd = layer_phase_data(ref, section=(axis, index))
                plane = "inplane" if axis == 0 else "axial"
                name = f"{ref.name} [{'zyx'[axis]}={index}]"
            else:
                pd = layer_phase_data(ref)
                plane = "inplane" if self.compare_plane.currentText() == "in-plane" else "axial"
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
        self.compare_button.setEnabled(False)
        self.status.setText("Simulating a section of the same size and measuring coverage…")
        self.compare_worker = start_worker(
            _compare, copy.deepcopy(model), pd.data, plane, int(self.seed.value()), device, float(scale[-1]), unit, name,
            desc="Comparing sections", on_returned=self._show_comparison,
            on_errored=lambda exc: self.status.setText(f"Comparison failed: {exc}"), on_finished=self._compare_done,
        )
        return self.compare_worker

    def _compare_done(self) -> None:
        self.compare_worker = None
        self.compare_button.setEnabled(True)

    def _show_comparison(self, cmp: SectionComparison) -> None:
        from matplotlib.colors import ListedColormap
        from matplotlib.lines import Line2D

        self.comparison = cmp
        c = self.canvas
        c.clear()
        fig = c.figure
        gs = fig.add_gridspec(2, 2, height_ratios=[1.25, 1.0])
        cmap = ListedColormap([PHASE_COLORS[p][:3] for p in range(3)])
        h, w = cmp.measured.shape
        ext = (0, w * cmp.spacing, h * cmp.spacing, 0)
        unit = display_unit(cmp.unit)
        for k, (img, title) in enumerate(((cmp.measured, "measured"), (cmp.simulated, "simulated"))):
            ax = c.style_axes(fig.add_subplot(gs[0, k]), grid=False)
            ax.imshow(img, cmap=cmap, vmin=0, vmax=2, interpolation="nearest", extent=ext)
            ax.set_title(title)
            ax.set_xlabel(unit)
            if k:
                ax.set_yticklabels([])
        ax = c.style_axes(fig.add_subplot(gs[1, :]))
        bg = c.colors["background"]
        for res, ls in ((cmp.cov_measured, "-"), (cmp.cov_simulated, "--")):
            mean_dir = res.directional.mean(axis=0)  # both in-plane directions of the section
            dist = res.r_px * cmp.spacing
            for p in range(3):
                ax.plot(dist, mean_dir[p, p], ls, color=pair_color(p, p, bg), lw=1.4)
        ax.set_xlabel(f"r ({unit})")
        ax.set_ylabel("C_ii(r)")
        handles = [Line2D([], [], color=pair_color(p, p, bg), lw=2, label=pair_label(p, p)) for p in range(3)]
        handles += [Line2D([], [], color=c.colors["text"], ls="-", label="measured"),
                    Line2D([], [], color=c.colors["text"], ls="--", label="simulated")]
        c.style_legend(ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right"))
        c.draw()
        vm, vs = cmp.cov_measured.volume_fractions, cmp.cov_simulated.volume_fractions
        self.status.setText(
            f"{cmp.measured_name} vs twin ({cmp.plane}): "
            + ", ".join(f"{PHASE_NAMES[p]} {vm[p]:.2f}/{vs[p]:.2f}" for p in range(3))
        )
        self.compared.emit(cmp)
