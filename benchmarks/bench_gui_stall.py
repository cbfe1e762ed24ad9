"""GUI responsiveness of the calibrate tab (issue 19): the longest pause of napari's event loop
during a 2D calibration, and which GUI-thread slot made it.

Usage::

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py [--runs 3] [--iterations 60]

The case of ``tests/test_gui_stalls.py`` (a 253^2 section of the reference model, 60 coverage steps,
no model selection): a 20 ms timer ticks while the dock calibrates; the table gives, per run, the
longest gap between ticks, the slowest dock slot (timed by wrapping the dock's handlers), the run's
wall time and the load average (a shared CPU makes every figure here noisy: report the load beside it).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SLOTS = ("_on_yielded", "_on_returned", "_on_finished", "plot_losses", "show_params", "_finish")


def one_run(iterations: int) -> dict:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_assb_twin._napari._layers import phase_layer_kwargs
    from napari_assb_twin._napari._widgets.calibration_widget import CalibrationWidget
    from napari_assb_twin.model import load_reference_model

    section = load_reference_model("reference-assb-cathode").generate((2, 253, 253), seed=3, device="cpu")[0]
    viewer = napari.Viewer(show=False)
    layer = viewer.add_labels(section, **phase_layer_kwargs("section", 2, 0.39, "um"))
    w = CalibrationWidget(viewer)
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

    for name in SLOTS:
        setattr(w, name, timed(name, getattr(w, name)))
    w.data_table.set_checked({layer: "in-plane"})
    w.select_structure.setChecked(False)
    w.iterations.setValue(iterations)
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
    w.start()
    while w.worker is not None:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    slowest = max(slots) if slots else (0.0, "-")
    viewer.close()
    return {"stall_s": max(gaps[1:]), "slot_s": slowest[0], "slot": slowest[1], "run_s": time.monotonic() - t0,
            "iterations": w.run.iteration, "load": (load0 + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=60)
    args = parser.parse_args()
    print(f"{'run':>3} {'longest stall s':>15} {'slowest slot s':>14}  {'slot':<26} {'run s':>6} {'load':>5}")
    for k in range(args.runs):
        r = one_run(args.iterations)
        print(f"{k + 1:>3} {r['stall_s']:>15.3f} {r['slot_s']:>14.3f}  {r['slot']:<26} {r['run_s']:>6.1f} {r['load']:>5.1f}")


if __name__ == "__main__":
    main()
