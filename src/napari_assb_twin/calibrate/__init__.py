"""Calibration of three-phase excursion-set models from segmented 2D sections (METHOD.md 6-7).

>>> from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator
>>> data = CalibrationData.from_files(["section.png"], planes="inplane")
>>> cal = Calibrator(data, CalibrationConfig(variant="lp-iso", algorithm="coverage", iterations=300))
>>> for rec in cal.run():
...     pass
>>> model = cal.best_model
"""

from .data import CalibrationData
from .engine import ALGORITHMS, VARIANTS, CalibrationConfig, Calibrator, Progress

__all__ = ["ALGORITHMS", "VARIANTS", "CalibrationConfig", "CalibrationData", "Calibrator", "Progress"]
