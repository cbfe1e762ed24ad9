"""The calibrate tab's loss plot is never drawn whole in the GUI thread: a render thread draws the
same plot without its lines, that picture becomes the background the lines are blitted over. It
must be the very picture a GUI-thread draw would give (same layout, same ranges), and the lines must
land where a full draw puts them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("napari")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from napari_assb_twin._napari._widgets import CalibrationWidget  # noqa: E402
from napari_assb_twin.calibrate import Progress  # noqa: E402

pytestmark = pytest.mark.gui


def _feed(w, first: int, last: int, total: int = 60, adversarial: bool = False) -> None:
    for it in range(first, last):
        losses = {"coverage": 10.0 / it, "lr": 0.01}
        if it % 5 == 0:
            losses["coverage_eval"] = 8.0 / it
        if adversarial:
            losses.update(critic=-1.0 - 0.01 * it, generator=0.5, wasserstein=0.2)
        w.run.update(Progress(it, total, losses, {"pore_fraction": 0.1}, 0.1 * it, 8.0 / it, "stage", ""))
    w.run.total = total


def _pixels(w) -> np.ndarray:
    return np.asarray(w.canvas.canvas.get_renderer().buffer_rgba()).copy()


@pytest.mark.parametrize("adversarial", [False, True])
def test_loss_plot_background_comes_from_a_render_thread_and_matches_a_full_draw(make_napari_viewer, qtbot,
                                                                                 monkeypatch, adversarial):
    viewer = make_napari_viewer()
    w = CalibrationWidget(viewer)
    qtbot.addWidget(w)
    w.noise_rmse = 0.004
    _feed(w, 1, 20, adversarial=adversarial)
    full_draws: list[str] = []
    agg_draw = FigureCanvasAgg.draw

    def counted(canvas):  # every full draw, with the thread that made it
        full_draws.append("gui" if threading.current_thread() is threading.main_thread() else "render")
        return agg_draw(canvas)

    monkeypatch.setattr(FigureCanvasAgg, "draw", counted)  # the Qt canvas's draw calls it too
    w.plot_losses()
    assert w.loss_plot_pending
    qtbot.waitUntil(lambda: not w.loss_plot_pending, timeout=20_000)
    _feed(w, 20, 40, adversarial=adversarial)
    w.plot_losses()  # new data inside the ranges: blitted
    assert not w.loss_plot_pending
    assert full_draws == ["render"], full_draws  # one draw, in the render thread; none in the GUI thread
    monkeypatch.setattr(FigureCanvasAgg, "draw", agg_draw)

    shown = _pixels(w)
    fc = w.canvas.canvas
    fc.restore_region(w._loss_background)
    background = _pixels(w)
    lines = list(w._loss_lines.values())
    for line in lines:
        line.set_visible(False)
    fc.draw()  # the same figure drawn whole in the GUI thread, without its lines
    assert np.array_equal(background, _pixels(w))  # the render thread's picture is that draw, pixel for pixel
    for line in lines:
        line.set_visible(True)
    fc.draw()
    full = _pixels(w)
    drawn = np.any(shown != background, axis=-1)  # where the blitted lines are
    assert drawn.mean() > 0.002  # the lines are there
    # and where a full draw puts them: only the overlap with the legend is drawn in another order
    assert np.any(shown != full, axis=-1).mean() < 0.1 * drawn.mean()
