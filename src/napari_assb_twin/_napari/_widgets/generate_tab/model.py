"""The generate tab's model: where it comes from (the calibrated one, a built-in, a JSON file) and the
form of its interpretable parameters (ranges: ThreePhaseModel.parameter_ranges; the fraction rule:
model.excursion.edit_volume_fractions).
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from ....phases import PHASE_NAMES
from .._common import align_form_labels, ask_load_model, notify_error, typed_form
from .._plot import display_unit


#: What happens to the other fractions when one is edited (shown in the dock).
FRACTION_RULE = ("Editing a volume fraction keeps it and the other edited one; the phase chosen here takes the "
                 "remainder (its field is read-only). Edits that leave it below 0 are refused.")


#: Spin-box steps of the parameter kinds (ParameterRange.kind); the ranges are the model's own.
_STEPS = {"fraction": 0.01, "length": 0.1, "number": 0.05}


_TOOLTIPS = {"fraction": FRACTION_RULE, "dof": "chi-square degrees of freedom k: 1 sheets, 2 tubes, 3 blobs, "
             "large: Gaussian-like. Between 1 and 2 (steps of 0.25, or type a value): the bridged field "
             "Y1^2 + (k - 1) Y2^2, whose particle phase connects more in 3D as k grows while its sections "
             "stay blob-like; above 2 whole numbers"}


SOURCE_CURRENT = "current"


def _short_key(key: str) -> str:
    return (key.replace("_fraction", " fraction").replace("f1.", "F1 ").replace("f2.", "F2 ")
            .replace("length_scale", "length").replace("anisotropy_ratio", "axial/in-plane").replace("_", " "))


class GeneratorModel:
    """The generator dock's model source and parameter form."""

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

    # -- model source -----------------------------------------------------------------------------
    def _fill_sources(self, select: str | None = None) -> None:
        from ....model import list_reference_models

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
            from ....model import load_reference_model

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
        if rng.kind == "dof":
            w = FloatSpinBox(name=key, label=label, min=rng.low, max=rng.high, step=0.25, tooltip=_TOOLTIPS["dof"])
            w.native.setDecimals(2)
            w.native.setValue(value)
            # quarter steps up to 2 (the bridged field, 1 < k < 2), whole ones above (see set_param)
            w.native.valueChanged.connect(lambda v, s=w.native: s.setSingleStep(0.25 if v <= 2.0 else 1.0))
            w.native.setSingleStep(0.25 if value <= 2.0 else 1.0)
            return w
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
            spin.setValue(values[key])
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

    def set_param(self, key: str, value: float) -> bool:
        """Change one interpretable parameter (physical units); False with a notification if refused.

        Volume fractions follow the model's one rule of hand edits
        (:func:`~napari_assb_twin.model.excursion.edit_volume_fractions`): the phase chosen in
        "Remainder to" takes ``1 -`` the other two, nothing is rescaled silently.
        """
        if self.model is None:
            notify_error("No model: calibrate, load a JSON or choose a built-in model first")
            return False
        if key.endswith(".dof") and value > 2.0 and not float(value).is_integer():
            # above 2 a k counts fields: a quarter step up from 2 (or a typed 2.4) means the next whole
            # number in the direction of the change, not a rounding back to where it was
            now = self.model.interpretable()[key]
            value = math.ceil(value) if value > now else math.floor(value)
        try:
            self.model = self.model.with_updates({key: float(value)}, remainder=self.balance.currentText())
        except ValueError as exc:
            notify_error(f"Generator: {exc}")
            self._refresh_form()
            return False
        self._refresh_form()
        return True
