"""Dock widgets of napari-assb-twin: two-point coverage, calibration, generator.

Every module here imports torch only inside functions, so opening a dock is quick and the
coverage widget works before torch is loaded. The widgets of one viewer share a
:class:`~._state.TwinState`: the calibration dock publishes its model there, the generator
dock offers it.
"""

from .calibration_widget import CalibrationWidget
from .coverage_widget import CoverageWidget
from .generator_widget import GeneratorWidget

__all__ = ["CalibrationWidget", "CoverageWidget", "GeneratorWidget"]
