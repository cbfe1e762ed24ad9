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
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._jobs import guard_close, stop_and_join
from ._common import fill_devices
from ._state import twin_state
from .generate_tab.model import SOURCE_CURRENT, GeneratorModel
from .generate_tab.sections import GeneratorSections
from .generate_tab.twin import PLACEMENTS, GeneratorTwin, model_at_resolution  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import napari

    from ...jobs.generate import SectionComparison


__all__ = ["GeneratorWidget", "model_at_resolution", "PLACEMENTS"]


class GeneratorWidget(GeneratorModel, GeneratorTwin, GeneratorSections, QWidget):
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

    def stop_jobs(self) -> None:
        """Stop running generation / comparison and wait for their threads (napari is closing)."""
        stop_and_join([self.worker, self.compare_worker])
