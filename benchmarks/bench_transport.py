"""Transport benchmark: our multigrid solver vs plain PyAMG vs TauFactor (CPU), side by side.

Every (solver, size, phase, axis) case runs in its own subprocess, so its peak RSS is its own, and its
result is appended to a JSONL log as it finishes: an interrupted run resumes where it stopped, and the
slow TauFactor part can run in the background while the rest is measured::

    python benchmarks/bench_transport.py run [--sizes 128 256] [--solvers ours plain taufactor] [--log F]
    python benchmarks/bench_transport.py table [--log F]

Solvers: ``ours`` = :func:`napari_assb_twin.stats.transport.tortuosity_factor` (CPU default);
``plain`` = PyAMG smoothed aggregation with its default settings as the preconditioner of conjugate
gradients, relative residual 1e-6, on the same finite-volume system (the issue's baseline);
``taufactor`` = ``taufactor.Solver(img, device="cpu").solve()`` with TauFactor's defaults.
Volumes: 128^3 = shared/data/tldr_inpainter/nmc_3phase_128.tif, 256^3 =
shared/data/tldr_taufactor/electrode_nmc_3phase_256.tiff (labels in increasing order = pore,
active material, carbon-binder). Figures are wall-clock seconds on whatever machine runs this; the CPU
may be shared, so the script prints the machine line and the load with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model, memory_gib  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VOLUMES = {
    128: DATA / "tldr_inpainter" / "nmc_3phase_128.tif",
    256: DATA / "tldr_taufactor" / "electrode_nmc_3phase_256.tiff",
}
PHASES = ("pore", "active", "carbon-binder")
SOLVERS = ("ours", "plain", "taufactor")
DEFAULT_LOG = ROOT / "benchmarks" / "results" / "transport_bench.jsonl"


def load_volume(size: int) -> np.ndarray:
    """The benchmark volume of one size as phases 0, 1, 2 (its labels in increasing order)."""
    import tifffile

    raw = tifffile.imread(VOLUMES[size])
    labels = np.unique(raw)
    if labels.size != 3:
        raise ValueError(f"{VOLUMES[size]}: expected 3 labels, found {labels}")
    return np.searchsorted(labels, raw).astype(np.uint8)


def _plain_pyamg(binary: np.ndarray, axis: int) -> dict:
    """The baseline: PyAMG SA (defaults) + CG to a relative residual of 1e-6 on our FV system."""
    import pyamg

    from napari_assb_twin.stats.transport import effective_diffusivity_from_flux, transport_system

    t0 = time.perf_counter()
    system = transport_system(binary, axis, dtype=np.float64)
    if system is None:
        return {"tau": float("inf"), "iterations": 0, "seconds": time.perf_counter() - t0}
    ml = pyamg.smoothed_aggregation_solver(system.matrix)
    residuals: list[float] = []
    x = ml.solve(system.rhs, tol=1e-6, accel="cg", residuals=residuals, maxiter=2000)
    d_eff = effective_diffusivity_from_flux(system, x)
    return {"tau": float(binary.mean()) / d_eff, "iterations": len(residuals) - 1,
            "seconds": time.perf_counter() - t0}


def _taufactor(binary: np.ndarray, axis: int) -> dict:
    """TauFactor 1.2.1 on the CPU with its own defaults (iter_limit 10000, conv_crit 1e-2)."""
    import contextlib
    import io

    import taufactor

    t0 = time.perf_counter()
    img = np.ascontiguousarray(np.moveaxis(binary, axis, 0), dtype=np.uint8)
    with contextlib.redirect_stdout(io.StringIO()):
        solver = taufactor.Solver(img, device="cpu")
        tau = solver.solve(verbose=False)
    tau = float(np.asarray(tau).ravel()[0])
    return {"tau": tau if tau > 0 else float("inf"), "iterations": int(solver.iter),
            "converged": bool(solver.converged), "seconds": time.perf_counter() - t0}


def _ours(binary: np.ndarray, axis: int) -> dict:
    from napari_assb_twin.stats.transport import tortuosity_factor

    r = tortuosity_factor(binary, axis=axis, device="cpu")
    return {"tau": r.tau, "iterations": r.iterations, "residual": r.residual, "converged": r.converged,
            "percolating_fraction": r.percolating_fraction, "seconds": r.seconds}


def run_case(solver: str, size: int, phase: int, axis: int) -> dict:
    """One solve in this process; returns its record (peak RSS of this process included)."""
    vol = load_volume(size)
    binary = vol == phase
    del vol
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec = {"ours": _ours, "plain": _plain_pyamg, "taufactor": _taufactor}[solver](binary, axis)
    use = resource.getrusage(resource.RUSAGE_SELF)
    rec.update(solver=solver, size=size, phase=PHASES[phase], axis=axis, cpu_s=use.ru_utime + use.ru_stime,
               peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               rss_before_mib=base, load=os.getloadavg()[0])
    return rec


def _records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def run(sizes: list[int], solvers: list[str], log: Path) -> None:
    """Every missing case of ``sizes`` x ``solvers`` x 3 phases x 3 axes, one subprocess each."""
    done = {(r["solver"], r["size"], r["phase"], r["axis"]) for r in _records(log)}
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # solvers innermost: the solvers of one case run back to back, at about the same machine load
    for size in sizes:
        for axis in range(3):
            for phase in range(3):
                for solver in solvers:
                    if (solver, size, PHASES[phase], axis) in done:
                        continue
                    out = subprocess.run(
                        [sys.executable, __file__, "case", solver, str(size), str(phase), str(axis)],
                        capture_output=True, text=True, env=env, check=False)
                    if out.returncode != 0:
                        print(f"{solver} {size} {PHASES[phase]} axis {axis} failed:\n{out.stderr[-2000:]}", flush=True)
                        continue
                    rec = json.loads(out.stdout.strip().splitlines()[-1])
                    with open(log, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    print(f"{solver:9s} {size} {PHASES[phase]:13s} axis {axis}: tau {rec['tau']:.4f} "
                          f"{rec['seconds']:.1f} s {rec['peak_rss_mib']:.0f} MiB (load {rec['load']:.1f})", flush=True)


def _rel(a: float, b: float) -> str:
    return f"{(a - b) / b * 100:+.2f} %" if np.isfinite(a) and np.isfinite(b) and b else "-"


def table(log: Path) -> None:
    """Markdown tables per size: seconds, tau, rel. difference to TauFactor, peak RSS; sums and ratios."""
    recs = {(r["solver"], r["size"], r["phase"], r["axis"]): r for r in _records(log)}
    load = os.getloadavg()
    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB RAM; "
          f"load now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for size in sorted({k[1] for k in recs}):
        print(f"\n#### NMC {size}^3, every phase along every axis (CPU)\n")
        print("| phase | axis | ours: tau, wall s (CPU s), MiB | plain PyAMG: same | TauFactor: same "
              "| ours vs TauFactor | plain vs TauFactor |\n|---|---|---|---|---|---:|---:|")
        sums = {s: [0.0, 0, 0.0] for s in SOLVERS}  # seconds, count, max RSS
        for axis in range(3):
            for ph in PHASES:
                cells, taus = [], {}
                for s in SOLVERS:
                    r = recs.get((s, size, ph, axis))
                    if r is None:
                        cells.append("not run")
                        continue
                    taus[s] = r["tau"]
                    sums[s][0] += r["seconds"]
                    sums[s][1] += 1
                    sums[s][2] = max(sums[s][2], r["peak_rss_mib"])
                    cpu = f" ({r['cpu_s']:.1f} CPU)" if "cpu_s" in r else ""
                    cells.append(f"{r['tau']:.4f}, {r['seconds']:.1f}{cpu}, {r['peak_rss_mib']:.0f}")
                tf = taus.get("taufactor", float("nan"))
                print(f"| {ph} | {axis} | " + " | ".join(cells) +
                      f" | {_rel(taus.get('ours', np.nan), tf)} | {_rel(taus.get('plain', np.nan), tf)} |")
        cells = [f"**{v[0]:.0f} s** ({v[1]} runs, max {v[2]:.0f} MiB)" for v in sums.values()]
        print("| **sum** | | " + " | ".join(cells) + " | | |")
        ours = sums["ours"][0]
        if ours and sums["ours"][1] == 9:
            for s in ("plain", "taufactor"):
                if sums[s][1] == 9:
                    print(f"\n{size}^3: {s} / ours = {sums[s][0] / ours:.1f}x over the 9 runs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    s = sub.add_parser("run")
    s.add_argument("--sizes", type=int, nargs="+", default=[128, 256], choices=sorted(VOLUMES))
    s.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    s.add_argument("--log", type=Path, default=DEFAULT_LOG)
    s = sub.add_parser("table")
    s.add_argument("--log", type=Path, default=DEFAULT_LOG)
    s = sub.add_parser("case")
    s.add_argument("solver", choices=SOLVERS)
    s.add_argument("size", type=int)
    s.add_argument("phase", type=int)
    s.add_argument("axis", type=int)
    a = p.parse_args(argv)
    if a.part == "case":
        print(json.dumps(run_case(a.solver, a.size, a.phase, a.axis)))
    elif a.part == "run":
        for size in a.sizes:
            if not VOLUMES[size].is_file():
                raise SystemExit(f"{VOLUMES[size]} not found (the shared data folder sits beside the repository)")
        run(a.sizes, a.solvers, a.log)
        table(a.log)
    else:
        table(a.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
