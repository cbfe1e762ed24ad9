"""The GPU path against the CPU, in one short run (issue 20 item 5): run through ``gpu_check.sh``.

    python benchmarks/gpu_check.py [--device cuda] [--cpu-only] [--quick]

Three checks, each computed on the CPU and on ``--device`` with the same seed and compared:

1. calibration with model selection (algorithm 1, analytic C_ij): the same structure is selected and
   every interpretable parameter agrees within ``CAL_RTOL``;
2. generation of a 512^3 twin: the volume fractions of the device's twin agree with the CPU's within
   ``VF_ATOL`` (torch's CPU and CUDA generators draw different streams, so the voxels differ; the
   same seed on the same device gives the same twin, checked too);
3. transport of one phase of a 256^3 twin (the CPU's, so both solve the same array): the torch
   Jacobi-CG solver on the device against the CPU default (AMG-CG): tau within ``TAU_RTOL`` (0.5 %).

``--cpu-only`` (or no CUDA device) runs the device half on the CPU as well, so every comparison
runs (CI exercises it with ``--quick``, smaller sizes, in well under a minute). Prints a table
and exits 1 if a check fails. Budget on a CUDA machine: under 8 minutes (``gpu_check.sh`` enforces it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

CAL_RTOL = 0.05  # relative, per interpretable parameter (float32 reductions differ between devices)
VF_ATOL = 0.01  # absolute, per volume fraction (two realisations of the same model)
TAU_RTOL = 0.005  # relative: tau within 0.5 %

SIZES = {
    False: {"section": 256, "select_iterations": 60, "iterations": 200, "twin": 512, "transport": 256},
    True: {"section": 96, "select_iterations": 6, "iterations": 10, "twin": 48, "transport": 40},
}


def _row(name, cpu, dev, diff, tol, ok, seconds):
    return {"check": name, "cpu": cpu, "device": dev, "difference": diff, "tolerance": tol, "ok": ok,
            "seconds": seconds}


def check_calibration(device: str, size: dict) -> dict:
    from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData
    from napari_assb_twin.jobs import calibrate, run_job
    from napari_assb_twin.model import load_reference_model

    ref = load_reference_model("reference-assb-cathode")
    section = ref.sample_sections((size["section"],) * 2, "inplane", seed=7)[0].numpy()
    data = CalibrationData.from_arrays([section], "inplane", pixel_size=ref.voxel_size, unit=ref.unit)
    out, t0 = {}, time.perf_counter()
    for dev in ("cpu", device):
        cfg = CalibrationConfig(variant="lp-iso", algorithm="coverage", iterations=size["iterations"], seed=0,
                                device=dev)
        run = run_job(calibrate(data, cfg, select=True, variant="lp-iso", select_iterations=size["select_iterations"]))
        out[dev] = (run.selection.rows[0]["label"], run.calibrator.best_model.interpretable())
    (s_cpu, p_cpu), (s_dev, p_dev) = out["cpu"], out[device]
    worst = max(abs(p_dev[k] - v) / max(abs(v), 1e-9) for k, v in p_cpu.items())
    ok = s_cpu == s_dev and worst <= CAL_RTOL
    return _row(f"calibration + selection ({size['section']}^2, {size['iterations']} steps)",
                f"{s_cpu}", f"{s_dev}" if s_dev != s_cpu else "same structure", f"max rel {worst:.2%}",
                f"same structure, {CAL_RTOL:.0%}", ok, time.perf_counter() - t0)


def check_generation(device: str, size: dict) -> tuple[dict, object]:
    import numpy as np

    from napari_assb_twin.model import load_reference_model

    ref = load_reference_model("reference-assb-cathode")
    n = size["twin"]
    t0 = time.perf_counter()
    vols = {dev: ref.generate((n, n, n), seed=3, device=dev) for dev in ("cpu", device)}
    again = ref.generate((n, n, n), seed=3, device=device)
    frac = {dev: np.bincount(v.ravel(), minlength=3)[:3] / v.size for dev, v in vols.items()}
    worst = float(np.abs(frac["cpu"] - frac[device]).max())
    same_seed_same_twin = bool(np.array_equal(vols[device], again))
    ok = worst <= VF_ATOL and same_seed_same_twin and vols[device].dtype == np.uint8
    fmt = lambda f: "/".join(f"{x:.3f}" for x in f)  # noqa: E731
    row = _row(f"generation {n}^3 (volume fractions pore/active/electrolyte)", fmt(frac["cpu"]), fmt(frac[device]),
               f"max abs {worst:.4f}" + ("" if same_seed_same_twin else "; same seed differs"),
               f"{VF_ATOL} abs, reproducible", ok, time.perf_counter() - t0)
    return row, vols["cpu"]


def check_transport(device: str, size: dict, twin) -> dict:
    from napari_assb_twin.stats.transport import tortuosity_factor

    n = size["transport"]
    phase = 2  # electrolyte: percolating in the reference model
    binary = twin[:n, :n, :n] == phase
    t0 = time.perf_counter()
    cpu = tortuosity_factor(binary, axis=0, device="cpu", solver="amg")
    dev = tortuosity_factor(binary, axis=0, device=device, solver="torch-cg")
    rel = abs(dev.tau - cpu.tau) / cpu.tau if math.isfinite(cpu.tau) else float("nan")
    ok = cpu.converged and dev.converged and rel <= TAU_RTOL
    return _row(f"transport electrolyte {n}^3, axis 0 (tau: amg on cpu / torch-cg on device)", f"{cpu.tau:.4f}",
                f"{dev.tau:.4f}", f"rel {rel:.3%}", f"{TAU_RTOL:.1%}, both converged", ok, time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="device compared with the CPU (default cuda)")
    ap.add_argument("--cpu-only", action="store_true", help="run the device half on the CPU too (no GPU needed)")
    ap.add_argument("--quick", action="store_true", help="small sizes (CI): seconds instead of minutes")
    args = ap.parse_args(argv)
    import torch

    device = args.device
    if args.cpu_only:
        device = "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        print(f"note: no CUDA device ({device}); running the CPU half only, as with --cpu-only", file=sys.stderr)
        device = "cpu"
    size = SIZES[args.quick]
    t0 = time.perf_counter()
    rows = []
    gen_row, twin = check_generation(device, size)
    if size["transport"] > size["twin"]:
        twin = None
    rows.append(check_calibration(device, size))
    rows.append(gen_row)
    if twin is None or twin.shape[0] < size["transport"]:
        from napari_assb_twin.model import load_reference_model

        n = size["transport"]
        twin = load_reference_model("reference-assb-cathode").generate((n, n, n), seed=5, device="cpu")
    rows.append(check_transport(device, size, twin))
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu (device half on the CPU)"
    print(f"gpu_check: cpu vs {device} [{name}], torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"{'quick' if args.quick else 'full'} sizes")
    cols = ("check", "cpu", "device", "difference", "tolerance", "ok", "seconds")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [r["check"], r["cpu"], r["device"], r["difference"], r["tolerance"], "PASS" if r["ok"] else "FAIL",
                 f"{r['seconds']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    failed = [r["check"] for r in rows if not r["ok"]]
    print(f"total {time.perf_counter() - t0:.0f} s; " + (f"FAILED: {'; '.join(failed)}" if failed else "all checks passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
