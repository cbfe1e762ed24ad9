"""Evented state shared by the dock widgets of one viewer, kept apart from the widgets.

The calibration dock publishes the model it calibrated (or loaded) here; the generator dock
listens and offers it. One :class:`TwinState` per viewer, so two viewers never mix their models.
Pure Python + psygnal (no Qt, no torch).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal

__all__ = ["CalibrationRun", "TwinState", "twin_state"]


class TwinState:
    """The current digital-twin model of a viewer and where it came from.

    Signals
    -------
    model_changed(model, source)
        A new model (``ThreePhaseModel``) was published; ``source`` says by whom (e.g.
        ``"calibrated from nmc (lp-iso, coverage, 300 it)"`` or ``"loaded from twin.json"``).
    """

    model_changed = Signal(object, str)

    def __init__(self) -> None:
        self.model: Any = None
        self.source: str = ""
        self.measured_layer: str | None = None  # name of the layer the model was calibrated on

    def publish(self, model: Any, source: str, measured_layer: str | None = None) -> None:
        """Set the current model and tell every listener."""
        self.model = model
        self.source = source
        if measured_layer is not None:
            self.measured_layer = measured_layer
        self.model_changed.emit(model, source)


_STATES: "weakref.WeakKeyDictionary[Any, TwinState]" = weakref.WeakKeyDictionary()
_FALLBACK = TwinState()


def twin_state(viewer: Any) -> TwinState:
    """The :class:`TwinState` of ``viewer`` (created on first use; shared by all its docks)."""
    if viewer is None:
        return _FALLBACK
    # napari hands plugin widgets a PublicOnlyProxy (a wrapt proxy), a new one per dock: key the
    # state by the real viewer so every dock of a viewer shares it
    viewer = getattr(viewer, "__wrapped__", viewer)
    try:
        return _STATES.setdefault(viewer, TwinState())
    except TypeError:  # not weak-referenceable: keep one on the object itself
        state = getattr(viewer, "_assb_twin_state", None)
        if state is None:
            state = TwinState()
            viewer._assb_twin_state = state
        return state


@dataclass
class CalibrationRun:
    """Everything one calibration run has reported so far (filled from ``Progress`` records).

    Lives in the calibration widget but holds no Qt object, so it can be inspected in tests and
    survives the worker: after Stop (``worker.quit()`` never emits ``returned``) the best-so-far
    parameters are still here.
    """

    total: int = 0
    iteration: int = 0
    phase: str = ""
    message: str = ""
    elapsed_s: float = 0.0
    prepare_s: float = 0.0  # wall time from Start to the first training step (data, targets, noise)
    best_loss: float = float("inf")
    best_iteration: int = -1
    params: dict[str, float] = field(default_factory=dict)
    best_params: dict[str, float] = field(default_factory=dict)
    iterations: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    running: bool = False
    stopped: bool = False
    device: str = ""

    def update(self, rec: Any) -> None:
        """Record one ``Progress`` (iteration, total, losses, params, elapsed_s, best_loss, phase, message)."""
        self.iteration = int(rec.iteration)
        self.total = int(rec.total)
        self.phase = str(getattr(rec, "phase", ""))
        self.message = str(getattr(rec, "message", ""))
        self.elapsed_s = float(getattr(rec, "elapsed_s", 0.0))
        self.params = dict(rec.params or {})
        losses = dict(rec.losses or {})
        if losses:
            n_before = len(self.iterations)
            self.iterations.append(self.iteration)
            for key, value in losses.items():
                # a loss that appears later (e.g. adversarial after a warm-up) is padded with NaN
                series = self.losses.setdefault(key, [float("nan")] * n_before)
                series.append(float(value))
            for key, series in self.losses.items():
                if len(series) < len(self.iterations):
                    series.append(float("nan"))
        best = getattr(rec, "best_loss", None)
        if best is not None and best == best and float(best) < self.best_loss:
            self.best_loss = float(best)
            self.best_iteration = self.iteration
            self.best_params = dict(self.params)
