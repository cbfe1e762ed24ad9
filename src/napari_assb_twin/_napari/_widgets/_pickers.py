"""Layer pickers that follow the viewer's layer list (a combo box, a check list).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels, Layer
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QListWidget, QListWidgetItem, QWidget

if TYPE_CHECKING:
    import napari


# --------------------------------------------------------------------------------------------
# layer pickers that follow the layer list
# --------------------------------------------------------------------------------------------
def _is_candidate(layer: Layer) -> bool:
    # Image layers are listed too so that choosing a grey-value image explains itself instead of
    # silently not being there
    return isinstance(layer, (Labels, Image))


class LayerCombo(QComboBox):
    """Combo box of the viewer's Labels (and Image) layers, kept in sync with the layer list.

    The current layer object is :meth:`layer`; :meth:`set_layer` selects one. Empty entry
    ``none_text`` first when given (optional reference layers).
    """

    def __init__(
        self,
        viewer: "napari.Viewer",
        none_text: str | None = None,
        predicate: Callable[[Layer], bool] = _is_candidate,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        # long layer names must not widen the dock: the combo shows about 14 characters, elided
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        self._viewer = viewer
        self._none_text = none_text
        self._predicate = predicate
        self._layers: list[Layer | None] = []
        self._auto_picked = False  # optional combos pick the first layer once, then obey the user
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _watch_name(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)

    def refresh(self, event: Any = None) -> None:
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        self._layers = [None] if self._none_text is not None else []
        if self._none_text is not None:
            self.addItem(self._none_text)
        for layer in reversed(self._viewer.layers):  # top of the layer list first, like napari
            if self._predicate(layer):
                self._layers.append(layer)
                self.addItem(layer.name)
        self.blockSignals(False)
        real = [lay for lay in self._layers if lay is not None]
        if current is None and real and not self._auto_picked:
            self._auto_picked = True
            self.setCurrentIndex(self._layers.index(real[0]))
            self.currentIndexChanged.emit(self.currentIndex())
        elif current is not None and current in self._layers:
            self.setCurrentIndex(self._layers.index(current))
        elif self._layers:
            self.setCurrentIndex(0)
            self.currentIndexChanged.emit(0)

    def layer(self) -> Layer | None:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer: Layer | None) -> None:
        if layer not in self._layers:
            raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not offered here")
        self.setCurrentIndex(self._layers.index(layer))


def follow_layer_list(viewer: "napari.Viewer", refresh: Callable[..., None], watch_name: Callable[[Any], None]) -> None:
    """Call ``refresh`` when layers are inserted, removed, reordered or renamed.

    ``watch_name`` (a bound method of the widget, which napari holds weakly) must connect the
    inserted layer's name event to ``refresh``.
    """
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        ev.connect(refresh)
    viewer.layers.events.inserted.connect(watch_name)
    for layer in viewer.layers:
        layer.events.name.connect(refresh)


class LayerCheckList(QListWidget):
    """Check list of the viewer's Labels (and Image) layers; :meth:`checked` gives the ticked ones."""

    changed = Signal()

    def __init__(self, viewer: "napari.Viewer", parent: QWidget | None = None, max_rows: int = 4):
        super().__init__(parent)
        self._viewer = viewer
        self._layers: list[Layer] = []
        self._ticked: set[int] = set()  # ids of ticked layers survive refreshes
        self.setMaximumHeight(22 * max_rows + 6)
        follow_layer_list(viewer, self.refresh, self._watch_name)
        self.itemChanged.connect(self._on_item)
        self.refresh()

    def _watch_name(self, event: Any) -> None:
        # a bound method (napari holds it weakly and drops it when the widget is deleted)
        event.value.events.name.connect(self.refresh)

    def refresh(self, event: Any = None) -> None:
        self.blockSignals(True)
        self.clear()
        self._layers = [lay for lay in reversed(self._viewer.layers) if _is_candidate(lay)]
        first_labels = next((lay for lay in self._layers if isinstance(lay, Labels)), None)
        if not self._ticked & {id(lay) for lay in self._layers} and first_labels is not None:
            self._ticked = {id(first_labels)}  # nothing ticked yet: tick the top Labels layer
        for layer in self._layers:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if id(layer) in self._ticked else Qt.CheckState.Unchecked)
            self.addItem(item)
        self.blockSignals(False)
        self.changed.emit()

    def _on_item(self, item: QListWidgetItem) -> None:
        layer = self._layers[self.row(item)]
        if item.checkState() == Qt.CheckState.Checked:
            self._ticked.add(id(layer))
        else:
            self._ticked.discard(id(layer))
        self.changed.emit()

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def checked(self) -> list[Layer]:
        return [lay for lay in self._layers if id(lay) in self._ticked]

    def set_checked(self, layers: Sequence[Layer]) -> None:
        """Tick exactly ``layers`` (programmatic use and tests)."""
        unknown = [lay.name for lay in layers if lay not in self._layers]
        if unknown:
            raise ValueError(f"layers {unknown} are not offered here")
        self._ticked = {id(lay) for lay in layers}
        self.refresh()
