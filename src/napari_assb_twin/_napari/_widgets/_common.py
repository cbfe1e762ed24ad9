"""Helpers shared by the dock widgets, one import for the docks: phase data from layers
(:mod:`._layerdata`), layer pickers (:mod:`._pickers`), typed forms and device choices
(:mod:`._forms`), notifications and file dialogs (:mod:`._dialogs`).

No torch here: the coverage widget imports this module and must load without torch.
"""

from __future__ import annotations

from ._dialogs import (
    ask_load_model,
    ask_open_path,
    ask_save_path,
    export_canvas_png,
    info,
    notify_error,
    refuse_overwrite,
    warn,
)
from ._forms import align_form_labels, combo_device, device_choices, fill_devices, typed_form
from ._layerdata import (GENERATED_TAG, PLANE_LABELS, TWIN_MODEL_KEY, current_section, is_label_layer, layer_phase_data,
                         layer_spacing)
from ._pickers import LayerCheckList, LayerCombo, follow_layer_list

__all__ = [
    "GENERATED_TAG",
    "TWIN_MODEL_KEY",
    "LayerCheckList",
    "LayerCombo",
    "PLANE_LABELS",
    "align_form_labels",
    "ask_load_model",
    "ask_open_path",
    "ask_save_path",
    "export_canvas_png",
    "combo_device",
    "current_section",
    "device_choices",
    "fill_devices",
    "follow_layer_list",
    "info",
    "is_label_layer",
    "layer_phase_data",
    "layer_spacing",
    "notify_error",
    "refuse_overwrite",
    "typed_form",
    "warn",
]
