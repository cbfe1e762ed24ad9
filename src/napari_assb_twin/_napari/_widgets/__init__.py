"""Dock widgets of napari-assb-twin: the workflow dock and its four steps (coverage, calibration,
generator, validation), each usable alone.

Every module here imports torch only inside functions, so opening a dock is quick and the
coverage widget works before torch is loaded. The widgets of one viewer share a
:class:`~._state.TwinState`: the calibration dock publishes its model there, the generator
dock offers it.
"""

from .calibration_widget import CalibrationWidget
from .coverage_widget import CoverageWidget
from .compare_widget import CompareWidget
from .generator_widget import GeneratorWidget
from .workflow_widget import WorkflowWidget

__all__ = ["CalibrationWidget", "CompareWidget", "CoverageWidget", "GeneratorWidget", "WorkflowWidget"]
