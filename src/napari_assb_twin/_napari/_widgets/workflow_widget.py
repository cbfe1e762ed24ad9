"""The workflow dock: the four steps (coverage -> calibrate -> generate -> validate) as tabs.

One dock instead of four: napari stacks plugin docks vertically, and four of them (each with a
plot) could not fit a laptop screen (1366 x 768). Each tab page sits in a scroll area, so a long
form scrolls instead of forcing the window taller; the plots take the room that is left. A
voxel-size row above the tabs sets the calibration of any layer for all four steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._voxel import VoxelSizeBox
from .calibration_widget import CalibrationWidget
from .compare_widget import CompareWidget
from .coverage_widget import CoverageWidget
from .generator_widget import GeneratorWidget

if TYPE_CHECKING:
    import napari

__all__ = ["STEP_TITLES", "WorkflowWidget"]

#: Tab titles, in the order of the workflow.
STEP_TITLES: tuple[str, ...] = ("1 Coverage", "2 Calibrate", "3 Generate", "4 Validate")
#: Width the dock asks for: the canvas keeps about 700 px on a 1366 px screen beside the layer list.
DOCK_MIN_WIDTH = 360


def _scrolled(page: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(page)
    area.setWidgetResizable(True)  # the page fills the tab when there is room, scrolls when not
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


class WorkflowWidget(QWidget):
    """Dock widget: voxel-size row and the four workflow steps as tabs.

    Public attributes: ``voxel`` (:class:`~._voxel.VoxelSizeBox`), ``tabs`` (QTabWidget),
    ``coverage``, ``calibration``, ``generator``, ``validation`` (the step widgets, each usable on
    its own), ``steps`` (the four in tab order).
    """

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.voxel = VoxelSizeBox(napari_viewer)
        self.coverage = CoverageWidget(napari_viewer)
        self.calibration = CalibrationWidget(napari_viewer)
        self.generator = GeneratorWidget(napari_viewer)
        self.validation = CompareWidget(napari_viewer)
        self.steps = (self.coverage, self.calibration, self.generator, self.validation)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for title, step in zip(STEP_TITLES, self.steps):
            self.tabs.addTab(_scrolled(step), title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.voxel)
        layout.addWidget(self.tabs, stretch=1)
        self.setMinimumWidth(DOCK_MIN_WIDTH)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        # napari sizes a new dock from its hint: ask for a narrow dock so the canvas keeps the room
        return QSize(DOCK_MIN_WIDTH + 20, super().sizeHint().height())

    def show_step(self, step: QWidget) -> None:
        """Bring the tab of ``step`` (one of :attr:`steps`) to the front."""
        self.tabs.setCurrentIndex(self.steps.index(step))
