"""The docks' typed forms (magicgui, napari's own form style) and device choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QComboBox


def typed_form(widgets: Sequence[Any]) -> Any:
    """A magicgui form (``Container`` with a label column, no outer margins) of typed widgets.

    The one form style of the docks (napari's own): the calibration settings and the generator's
    interpretable parameters. The magicgui widgets are reachable by name (``form["seed"]``); their
    ``.native`` Qt widgets are what the docks keep as attributes for scripts and tests. The label
    column is re-measured in the font the labels are shown in (see :func:`align_form_labels`).
    """
    from magicgui.widgets import Container

    form = Container(labels=True, widgets=list(widgets))
    form.margins = (0, 0, 0, 0)
    form.native.installEventFilter(_LabelAligner(form))
    return form


def align_form_labels(form: Any) -> None:
    """Give every label of a :func:`typed_form` the width of the widest one *in its own font*.

    magicgui measures the labels in the application's default font when the widgets are added;
    napari's style sheet draws them larger, so a long label ("electrolyte fraction") pushed its
    field out of line. Call it after adding widgets to a shown form (the form does it when shown).
    """
    rows = [w._labeled_widget() for w in form if getattr(w, "_labeled_widget", None) is not None]
    labels = [r for r in rows if r is not None]
    if not labels:
        return
    for r in labels:
        r._label_widget.native.ensurePolished()  # the style sheet's font, not the default one
    qlabels = [r._label_widget.native for r in labels]
    widest = max(q.sizeHint().width() for q in qlabels)  # the text in its font, plus the style's padding
    for r in labels:
        r.label_width = widest


class _LabelAligner(QObject):
    """Re-measures a form's label column when it is shown or restyled (theme / font change)."""

    def __init__(self, form: Any):
        super().__init__(form.native)
        self._form = form

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange):
            align_form_labels(self._form)
        return False


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------
def device_choices() -> list[tuple[str, str]]:
    """``(label, device name)`` of ``auto`` (showing what it resolves to: CUDA, MPS or CPU) and of
    every device found. Imports torch (through :mod:`napari_assb_twin.devices`) when called."""
    from ...devices import available_devices, describe_device, resolve_device

    return [(f"auto: {describe_device(resolve_device('auto'))}", "auto")] + [(n, n) for n in available_devices()]


def fill_devices(combo: QComboBox) -> None:
    """Fill a Qt combo with :func:`device_choices` (item data: the device name to pass on)."""
    for label, name in device_choices():
        combo.addItem(label, name)


def combo_device(combo: QComboBox) -> str:
    """The device name chosen or typed in an editable device combo (e.g. ``auto``, ``cuda:1``)."""
    text = combo.currentText().strip()
    idx = combo.findText(text)
    if idx >= 0 and combo.itemData(idx):
        return str(combo.itemData(idx))
    return text.split(" ")[0].rstrip(":") if text else "auto"
