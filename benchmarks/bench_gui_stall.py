"""GUI responsiveness of the docks (issue 19): the longest pause of napari's event loop during a 2D
calibration or a 256^3 validation, and which GUI-thread slot took longest.

Usage::

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py [--case calibration] [--runs 3] [--iterations 60]
    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py --case validation --runs 1

The cases of ``tests/test_gui_stalls.py``: calibration, a 253^2 section of the reference model, 60
coverage steps, no model selection; validation, two 256^3 realisations of the reference model
compared by the Validate dock. A 20 ms timer ticks while the dock works (until its worker has ended
and, for the calibration, the loss plot's last picture is shown); the table gives, per run, the
longest gap between ticks, the slowest dock slot (timed by wrapping the dock's handlers), the run's
wall time and the load average (a shared CPU makes every figure here noisy: report the load beside
it). A stall much longer than the slowest slot is the worker holding the GIL, not the dock.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: the dock methods timed (those a dock lacks, e.g. in an older checkout, are skipped)
SLOTS = {
    "calibration": ("start", "_on_yielded", "_on_returned", "_on_finished", "plot_losses", "_show_loss_background",
                    "show_params", "_finish"),
    "validation": ("compare", "_on_event", "_on_result", "fill_table", "_done"),
}


def _calibration_dock(viewer, iterations: int):
    from napari_assb_twin._napari._layers import phase_layer_kwargs
    from napari_assb_twin._napari._widgets.calibration_widget import CalibrationWidget
    from napari_assb_twin.model import load_reference_model

    section = load_reference_model("reference-assb-cathode").generate((2, 253, 253), seed=3, device="cpu")[0]
    layer = viewer.add_labels(section, **phase_layer_kwargs("section", 2, 0.39, "um"))
    w = CalibrationWidget(viewer)
    w.data_table.set_checked({layer: "in-plane"})
    w.select_structure.setChecked(False)
    w.iterations.setValue(iterations)
    # done: the worker has ended and the last picture of the loss plot is shown
    return w, w.start, lambda: w.worker is None and not getattr(w, "loss_plot_pending", False)


def _validation_dock(viewer, iterations: int):
    from napari_assb_twin._napari._layers import phase_layer_kwargs
    from napari_assb_twin._napari._widgets.compare_widget import CompareWidget
    from napari_assb_twin.model import load_reference_model

    model = load_reference_model("reference-assb-cathode")
    real = viewer.add_labels(model.generate((256,) * 3, seed=1, device="cpu"), **phase_layer_kwargs("measured", 3, 0.39, "um"))
    twin = viewer.add_labels(model.generate((256,) * 3, seed=2, device="cpu"), **phase_layer_kwargs("twin", 3, 0.39, "um"))
    w = CompareWidget(viewer)
    w.real_combo.set_layer(real)
    w.twin_combo.set_layer(twin)
    return w, w.compare, lambda: w.worker is None


def one_run(case: str, iterations: int) -> dict:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    w, start, done = (_calibration_dock if case == "calibration" else _validation_dock)(viewer, iterations)
    slots: list[tuple[float, str]] = []

    def timed(name, fn):
        def inner(*args, **kwargs):
            t = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                stage = f":{args[0].stage}" if args and hasattr(args[0], "stage") else ""
                slots.append((time.monotonic() - t, name + stage))
        return inner

    for name in SLOTS[case]:
        if hasattr(w, name):
            setattr(w, name, timed(name, getattr(w, name)))
    press = start.__name__
    start = getattr(w, press)  # the timed one
    app = QApplication.instance()
    gaps: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    load0 = os.getloadavg()[0]
    t0 = last[0] = time.monotonic()
    start()
    while not done():
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    slowest = max(slots) if slots else (0.0, "-")
    # the press itself runs before the probe's first tick (its first gap is not counted)
    later = max((s for s in slots if s[1] != press), default=(0.0, "-"))
    viewer.close()
    return {"stall_s": max(gaps[1:]), "slot_s": slowest[0], "slot": slowest[1], "later_s": later[0], "later": later[1],
            "run_s": time.monotonic() - t0, "load": (load0 + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=tuple(SLOTS), default="calibration")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=60, help="calibration steps (calibration case)")
    args = parser.parse_args()
    print(f"{'run':>3} {'longest stall s':>15} {'slowest slot s':>14}  {'slot':<22} {'after the press s':>17}  "
          f"{'slot':<22} {'run s':>6} {'load':>5}")
    for k in range(args.runs):
        r = one_run(args.case, args.iterations)
        print(f"{k + 1:>3} {r['stall_s']:>15.3f} {r['slot_s']:>14.3f}  {r['slot']:<22} {r['later_s']:>17.3f}  "
              f"{r['later']:<22} {r['run_s']:>6.1f} {r['load']:>5.1f}")


if __name__ == "__main__":
    main()
