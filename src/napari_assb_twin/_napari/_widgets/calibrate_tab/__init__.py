"""The calibrate tab, in the parts a reader takes one at a time: :mod:`.inputs` (layers and settings
-> the core's data and config), :mod:`.run` (the worker's job, Start / Stop, its events) and
:mod:`.results` (the live loss plot, the parameter table, model files). ``calibration_widget``
assembles them into :class:`~..calibration_widget.CalibrationWidget`.
"""
