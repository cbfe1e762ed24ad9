"""The generate tab in parts: :mod:`.model` (model source and parameter form), :mod:`.twin`
(generation and the twin layer's placement) and :mod:`.sections` (measured vs simulated section).
``generator_widget`` assembles them into :class:`~..generator_widget.GeneratorWidget`.
"""
