"""Benchmarks for virtual materials testing (full size; prints Markdown tables).

Run one part at a time (each is independent, so the slow ones can run in the background)::

    python benchmarks/bench_validation.py descriptors [--size 256] [--transport]
    python benchmarks/bench_validation.py blockwise --size 512      # one size per process (peak RSS)
    python benchmarks/bench_validation.py sweep [--cases 20] [--shape 48 48 48]
    python benchmarks/bench_validation.py realdata [--size 256] [--transport] [--out DIR] [--crop N] [--solver S]
    python benchmarks/bench_validation.py transport measured|twin|table|report --out DIR [--crop N] [--solver S]
    python benchmarks/bench_validation.py twins A/descriptors.csv B/descriptors.csv --names A B
    python benchmarks/bench_validation.py compare --model M.json [--size 256] --out DIR   # one timed compare
    python benchmarks/bench_validation.py intervals --model M.json [--realisations 5] [--side 128] [--transport]
                                                    [--geometry] [--no-sampling] [--out DIR]
                                                    # the Validate tab's job on the NMC 256^3 volume, timed

Figures are wall-clock seconds on whatever machine runs this; the CPU may be shared with other jobs,
so treat them as indicative (the script prints the machine line to record with them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model, memory_gib  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
NMC = DATA / "tldr_taufactor" / "electrode_nmc_3phase_256.tiff"


def machine() -> str:
    """One line describing the machine (CPU model, cores, memory)."""
    import torch

    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB RAM, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Current resident set size in MiB (from /proc; nan elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------------------------------------
def bench_descriptors(size: int, transport: bool, seed: int = 0) -> None:
    """Seconds per descriptor block of :func:`describe` on a ``size^3`` reference twin."""
    from napari_assb_twin.model import load_reference_model
    from napari_assb_twin.stats.descriptors import describe

    model = load_reference_model("reference-assb-cathode")
    t0 = time.perf_counter()
    vol = model.generate((size,) * 3, seed=seed, device="cpu")
    t_gen = time.perf_counter() - t0
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    recs = describe(vol, voxel_size=model.voxel_size, unit=model.unit, transport=transport, device="cpu", timings=timings)
    total = time.perf_counter() - t0
    print(f"\nmachine: {machine()}")
    print(f"\n### Descriptors of a {size}^3 reference twin (CPU; generation {t_gen:.1f} s)\n")
    print("| descriptor block | seconds |\n|---|---:|")
    for k, v in timings.items():
        print(f"| {k} | {v:.1f} |")
    print(f"| **total** | **{total:.1f}** |")
    print(f"\n{len(recs)} records; peak RSS {peak_rss_mib():.0f} MiB")


# ------------------------------------------------------------------------------------------------
def bench_blockwise(size: int, chunk: int, seed: int = 0, workdir: str | None = None) -> None:
    """Throughput and peak memory of blockwise Zarr generation of a ``size^3`` twin."""
    import dask
    import zarr

    from napari_assb_twin.model.blockwise import BlockwiseTwin
    from napari_assb_twin.model import load_reference_model

    model = load_reference_model("reference-assb-cathode")
    twin = BlockwiseTwin(model, seed=seed, tile=chunk)
    rss0 = current_rss_mib()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "twin.zarr"
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads"):
            twin.to_zarr(path, (size,) * 3, chunks=chunk)
        dt = time.perf_counter() - t0
        z = zarr.open_array(str(path), mode="r")
        # volume fractions of one sub-volume (the whole array would need size^3 bytes in memory)
        n = min(size, 256)
        sub = np.asarray(z[:n, :n, :n])
        fr = np.bincount(sub.ravel(), minlength=3) / sub.size
        disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    vox = size**3
    print(f"\nmachine: {machine()}")
    print(
        f"\n| {size}^3 | chunk {chunk} | {dt:.0f} s | {vox / dt / 1e6:.2f} Mvoxel/s | peak RSS {peak_rss_mib():.0f} MiB "
        f"(after imports {rss0:.0f} MiB) | array {vox / 2**20:.0f} MiB | zarr on disk {disk / 2**20:.0f} MiB | "
        f"fractions of first {n}^3: {', '.join(f'{x:.3f}' for x in fr)} |"
    )


# ------------------------------------------------------------------------------------------------
def bench_sweep(cases: int, shape: tuple[int, int, int], workers: int, transport: bool) -> None:
    """A sweep of ``cases`` cases on a local dask cluster (distributed if installed)."""
    from napari_assb_twin.model import load_reference_model
    from napari_assb_twin.validate.sweep import parse_vary, run_sweep

    model = load_reference_model("reference-assb-cathode")
    ls_key = next(k for k in model.interpretable() if k.startswith("f1.length_scale"))
    ls = float(model.interpretable()[ls_key])
    n_ls = max(cases // 5, 1)
    vary = [
        parse_vary("electrolyte_fraction=0.2:0.4:5"),
        parse_vary(f"{ls_key}={0.8 * ls:.4g}:{1.2 * ls:.4g}:{n_ls}"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_sweep(
            model, vary, realisations=1, shape=shape, out=Path(tmp) / "sweep", seed=0,
            transport=transport, n_workers=workers, progress=False,
        )
        dt = time.perf_counter() - t0
    print(f"\nmachine: {machine()}")
    print(
        f"\n| sweep | {res.n_cases} cases x 1 realisation, shape {shape} | scheduler {res.scheduler} | "
        f"{dt:.1f} s total | {dt / max(res.n_cases, 1):.2f} s/case | transport {transport} |"
    )


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    s = sub.add_parser("descriptors")
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--transport", action="store_true")
    s = sub.add_parser("blockwise")
    s.add_argument("--size", type=int, default=512)
    s.add_argument("--chunk", type=int, default=128)
    s.add_argument("--workdir", default=None, help="where the temporary Zarr goes (needs size^3 bytes / ~3)")
    s = sub.add_parser("sweep")
    s.add_argument("--cases", type=int, default=20)
    s.add_argument("--shape", type=int, nargs=3, default=(48, 48, 48))
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--transport", action="store_true")
    s = sub.add_parser("transport", help="transport runs of one image of a realdata run (parallel / resumable)")
    s.add_argument("image", choices=("measured", "twin", "table", "report"))
    s.add_argument("--out", required=True)
    s.add_argument("--only", default=None,
                   help="run just these, in this order: phase:axis[,phase:axis...] (e.g. pore:2,active:1)")
    s.add_argument("--iter-limit", type=int, default=None, help="solver iteration limit per run (default: the package's)")
    _solver_and_crop(s)
    s = sub.add_parser("twins", help="measured vs two twins, from two descriptors.csv of compare runs")
    s.add_argument("csv", nargs=2, help="descriptors.csv of the first and the second twin (same measured image)")
    s.add_argument("--names", nargs=2, default=("twin A", "twin B"))
    s = sub.add_parser("compare", help="one timed compare (everything on) of the NMC volume with a model's twin")
    s.add_argument("--model", required=True)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--out", required=True)
    s.add_argument("--solver", default="auto")
    s = sub.add_parser("intervals", help="the Validate tab's job with intervals on the NMC 256^3 volume, timed")
    s.add_argument("--model", required=True)
    s.add_argument("--realisations", type=int, default=5)
    s.add_argument("--side", type=int, default=128)
    s.add_argument("--transport", action="store_true")
    s.add_argument("--geometry", action="store_true")
    s.add_argument("--no-sampling", action="store_true")
    s.add_argument("--out", default=None)
    s = sub.add_parser("realdata")
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--transport", action="store_true")
    s.add_argument("--out", default=None)
    s.add_argument("--steps", type=int, default=None)
    _solver_and_crop(s)
    a = p.parse_args(argv)
    if a.part == "descriptors":
        bench_descriptors(a.size, a.transport)
    elif a.part == "blockwise":
        bench_blockwise(a.size, a.chunk, workdir=a.workdir)
    elif a.part == "sweep":
        bench_sweep(a.cases, tuple(a.shape), a.workers, a.transport)
    elif a.part == "transport":
        if a.image == "table":
            print_transport(Path(a.out))
        elif a.image == "report":
            render_realdata(Path(a.out), a.crop)
        else:
            only = [(p.split(":")[0], int(p.split(":")[1])) for p in a.only.split(",")] if a.only else None
            transport_runs(Path(a.out), a.image, only=only, iter_limit=a.iter_limit, solver=a.solver, crop=a.crop)
    elif a.part == "compare":
        bench_compare(a.model, a.size, a.out, a.solver)
    elif a.part == "intervals":
        bench_intervals(a.model, a.realisations, a.side, a.transport, a.geometry, not a.no_sampling, a.out)
    elif a.part == "twins":
        print_two_twins(Path(a.csv[0]), Path(a.csv[1]), tuple(a.names))
    else:
        bench_realdata(a.size, a.transport, a.out, a.steps, a.solver, a.crop)
    sys.stdout.flush()
    return 0


def _solver_and_crop(s: argparse.ArgumentParser) -> None:
    from napari_assb_twin.options import TRANSPORT_SOLVERS

    s.add_argument("--solver", choices=TRANSPORT_SOLVERS, default="auto",
                   help="transport solver (default auto: AMG-CG on the CPU)")
    s.add_argument("--crop", type=int, default=None,
                   help="use the measured volume's [:N, :N, :N] corner (a quick check; default: the whole 256^3, "
                        "or the crop the realdata run in --out recorded)")


def _run_info(outdir: Path) -> dict:
    """What a realdata run recorded in ``outdir/run.json`` (crop, calibration steps, solver); {} before one."""
    f = Path(outdir) / "run.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def measured_volume(crop: int | None = None) -> np.ndarray:
    """The shared NMC 256^3 phases (pore 0, NMC 85 -> active, CBD 170 -> third phase), optionally its ``crop^3`` corner."""
    from napari_assb_twin.io import read_label_image

    vol = read_label_image(NMC, mapping={0: 0, 85: 1, 170: 2}).data
    if crop is not None:
        if not 2 <= crop <= min(vol.shape):
            raise SystemExit(f"--crop must be in [2, {min(vol.shape)}], got {crop}")
        vol = np.ascontiguousarray(vol[:crop, :crop, :crop])
    return vol


def bench_realdata(size: int, transport: bool, out: str | None, steps: int | None, solver: str = "auto",
                   crop: int | None = None) -> None:
    """Calibrate on one 2D section of the NMC volume, generate ``size^3``, compare every descriptor.

    Order chosen so that something useful exists early: calibration, generation, the report without
    transport (written at once), then the transport solver (``solver``, default AMG-CG on the CPU) per
    axis / phase / image, each result appended to ``transport_<image>.jsonl`` as it finishes (an
    interrupted run keeps what finished). ``crop``: the measured volume's ``crop^3`` corner only (a quick
    check of the script), recorded with the steps and the solver in ``run.json``.
    """
    from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator
    from napari_assb_twin.model import save_model
    from napari_assb_twin.validate import compare, write_report

    src = NMC
    if not src.is_file():
        print(f"skipped: {src} is absent (it lives beside the development checkout only)")
        return
    outdir = Path(out or ROOT.parent / "validation_nmc")
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    # labels {pore:0, NMC:85, CBD:170}; the carbon-binder domain takes the third phase's slot
    # ("electrolyte"): no public ASSB cathode exists, so the NMC/CBD cathode is the stand-in
    real = measured_volume(crop)
    (outdir / "run.json").write_text(json.dumps({"crop": crop, "steps": steps or 300, "solver": solver}))
    voxel, unit = 0.39, "um"  # 100 um box / 256 voxels (TauFactor notebook); the TIFF has no calibration
    section = real[real.shape[0] // 2]
    data = CalibrationData.from_arrays(section, planes="inplane", pixel_size=voxel, unit=unit,
                                       sources=[f"{src.name}[z={real.shape[0] // 2}]"])
    cfg = CalibrationConfig(variant="lp-iso", algorithm="coverage", iterations=steps or 300, device="cpu", seed=0)
    t0 = time.perf_counter()
    cal = Calibrator(data, cfg)
    model = cal.run_all()
    t_cal = time.perf_counter() - t0
    save_model(model, outdir / "model.json", provenance={"calibrated_on": f"{src.name} section z=128",
                                                        "algorithm": "coverage", "variant": "lp-iso"})
    print(f"calibrated lp-iso / coverage on one 256^2 section in {t_cal:.0f} s ({cfg.iterations} steps): "
          f"{json.dumps({k: round(v, 4) for k, v in model.interpretable().items()})}", flush=True)
    t0 = time.perf_counter()
    twin = model.generate((size,) * 3, seed=0, device="cpu")
    print(f"generated {size}^3 in {time.perf_counter() - t0:.1f} s", flush=True)
    np.save(outdir / "twin.npy", twin)

    t0 = time.perf_counter()
    cmp = compare(real, twin, voxel_size=voxel, unit=unit, transport=False, device="cpu",
                  names=(f"measured NMC ({real.shape[0]}^3)", f"twin {size}^3"))
    cmp.notes.insert(0, "labels {pore:0, NMC:85, CBD:170}: NMC -> active, carbon-binder (CBD) -> the third phase "
                        "'electrolyte' (no public ASSB cathode exists; the NMC/CBD cathode is the stand-in)")
    cmp.notes.insert(1, "twin: lp-iso model calibrated (coverage loss) on the single section z = 128 only")
    print(f"geometric descriptors of both volumes in {time.perf_counter() - t0:.0f} s", flush=True)
    for key, tim in getattr(cmp, "timings", {}).items():
        print(f"  {key}: " + ", ".join(f"{k} {v:.1f} s" for k, v in tim.items()), flush=True)
    write_report(cmp, outdir / "report", force=True, title="NMC cathode: measured volume vs calibrated twin")
    _print_table(cmp.descriptors)
    if not transport:
        return
    for key in ("measured", "twin"):
        transport_runs(outdir, key, real if key == "measured" else twin, solver=solver)
    print_transport(outdir)


def bench_compare(model_path: str, size: int, out: str, solver: str = "auto", seed: int = 0) -> None:
    """``assb-twin compare`` of the measured NMC 256^3 volume with a ``size^3`` twin of ``model_path``,
    everything on (geometry and transport of every phase along every axis), in one timed call: wall and
    CPU seconds per stage of its progress events, peak RSS, the report written to ``out``."""
    from napari_assb_twin.jobs import run_job
    from napari_assb_twin.model import load_model
    from napari_assb_twin.validate import iter_compare, write_report

    if not NMC.is_file():
        print(f"skipped: {NMC} is absent (it lives beside the development checkout only)")
        return
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.1f}", flush=True)
    real = measured_volume()
    model = load_model(model_path)
    t0 = time.perf_counter()
    twin = model.generate((size,) * 3, seed=seed, device="cpu")
    print(f"generated the {size}^3 twin of {model_path} in {time.perf_counter() - t0:.1f} s", flush=True)
    stages: list[tuple[str, float, float]] = []
    last = [time.perf_counter(), time.process_time()]

    def on_event(e) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        stages.append((f"{e.stage}: {e.message}"[:70], now - last[0], cpu - last[1]))
        last[:] = [now, cpu]

    w0, c0 = time.perf_counter(), time.process_time()
    cmp = run_job(iter_compare(real, twin, voxel_size=0.39, unit="um", transport=True, geometry=True, solver=solver,
                               names=("measured NMC (256^3)", f"twin {size}^3")), on_event)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    write_report(cmp, outdir / "report", force=True, title="NMC cathode: measured volume vs calibrated twin")
    cmp.descriptors.to_csv(outdir / "descriptors.csv", index=False)
    rec = {"model": str(model_path), "size": size, "solver": solver, "wall_s": wall, "cpu_s": cpu,
           "peak_rss_mib": peak_rss_mib(), "load_after": os.getloadavg()[0], "machine": machine(),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "stages": stages}
    (outdir / "compare_timing.json").write_text(json.dumps(rec, indent=1))
    print(f"compare with everything: {wall:.0f} s wall, {cpu:.0f} CPU-s, peak RSS {peak_rss_mib():.0f} MiB, "
          f"load after {os.getloadavg()[0]:.1f}")
    print("| step (the event that ended it) | wall s | CPU s |\n|---|---:|---:|")
    for name, w, c in stages:
        if w >= 1.0:
            print(f"| {name} | {w:.1f} | {c:.1f} |")
    _print_table(cmp.descriptors)


def bench_intervals(model_path: str, realisations: int, side: int, transport: bool, geometry: bool, sampling: bool,
                    out: str | None, seed: int = 0) -> None:
    """The Validate tab's job (``jobs.compare.compare`` with the dock's arguments: its model, N
    realisations of ``side^3``, the measured volume's octants) on the shared NMC 256^3 volume against a
    256^3 twin of ``model_path``: wall and CPU seconds of generation, the measured volume, its octants,
    the realisations and the rest; the count of rows whose intervals are disjoint."""
    from napari_assb_twin.jobs import run_job
    from napari_assb_twin.jobs.compare import compare
    from napari_assb_twin.model import load_model
    from napari_assb_twin.phasemap import PhaseMap

    if not NMC.is_file():
        print(f"skipped: {NMC} is absent (it lives beside the development checkout only)")
        return
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.1f} at the start", flush=True)
    real = PhaseMap(measured_volume(), spacing=(0.39,) * 3, unit="um", source="NMC 256^3")
    model = load_model(model_path)
    t0 = time.perf_counter()
    twin = PhaseMap(model.generate((256,) * 3, seed=seed, device="cpu"), spacing=(0.39,) * 3, unit="um",
                    source="twin 256^3")  # the twin layer the dock would validate
    print(f"the 256^3 twin layer generated in {time.perf_counter() - t0:.1f} s (not part of the validation)", flush=True)
    spent: dict[str, list[float]] = {}
    last = [time.perf_counter(), time.process_time()]
    loads: list[float] = []

    def on_event(e) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        msg = e.message or ""
        part = ("generation" if e.stage == "generate" else "sub-volumes (8 octants)" if "sub-volume" in msg
                else "realisations" if "realisation" in msg else "measured 256^3" if msg.startswith("NMC")
                else "chords, coverage, notes")
        cell = spent.setdefault(part, [0.0, 0.0])
        cell[0] += now - last[0]
        cell[1] += cpu - last[1]
        last[:] = [now, cpu]
        loads.append(os.getloadavg()[0])

    w0, c0 = time.perf_counter(), time.process_time()
    res = run_job(compare(real, twin, None if out is None else Path(out), transport=transport, geometry=geometry,
                          device="cpu", names=("NMC 256^3", "twin"), model=model, realisations=realisations,
                          realisation_side=side, seed=seed, sampling=sampling, force=True), on_event)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    cmp = res.comparison
    print(f"\nN = {realisations} realisations of {side}^3, transport {transport}, geometry {geometry}, sampling "
          f"{sampling}: **{wall:.0f} s wall, {cpu:.0f} CPU-s**, peak RSS {peak_rss_mib():.0f} MiB, load "
          f"{min(loads):.1f}-{max(loads):.1f} (1-min average during the run); {cmp.differing_rows()} of "
          f"{len(cmp.descriptors)} rows with disjoint intervals")
    print("| part | wall s | CPU s |\n|---|---:|---:|")
    for part, (w, c) in spent.items():
        print(f"| {part} | {w:.1f} | {c:.1f} |")
    if out is not None:
        rec = {"model": str(model_path), "realisations": realisations, "side": side, "transport": transport,
               "geometry": geometry, "sampling": sampling, "wall_s": wall, "cpu_s": cpu, "parts": spent,
               "load": [min(loads), max(loads)], "peak_rss_mib": peak_rss_mib(), "machine": machine(),
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        (Path(out) / "intervals_timing.json").write_text(json.dumps(rec, indent=1))
    cols = ["descriptor", "phase", "axis", "real", "real_lo", "real_hi", "twin", "twin_lo", "twin_hi", "differs"]
    print(cmp.descriptors[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def transport_runs(outdir: Path, key: str, vol: np.ndarray | None = None, only: list[tuple[str, int]] | None = None,
                   iter_limit: int | None = None, solver: str = "auto", crop: int | None = None) -> None:
    """Transport per axis (outer) and phase of one image; each result appended to ``transport_<key>.jsonl``.

    ``solver`` as in :func:`~napari_assb_twin.stats.transport.tortuosity_factor` (``"auto"``: AMG-CG on
    the CPU). Skips what the log already holds for the same solver and image shape, so separate
    processes (one per image) and re-runs share work, and older logs of another solver (TauFactor) are
    re-made rather than mixed in. ``only``: just these (phase name, axis) runs, in this order. A run that
    stopped unconverged counts as done only up to its iteration limit, so a re-run with a larger
    ``iter_limit`` repeats it (the newest line of the log wins). ``crop``: the measured volume's corner
    (default: the crop ``run.json`` records, else the whole volume); the twin is ``outdir/twin.npy``.
    """
    from napari_assb_twin.phases import PHASE_NAMES
    from napari_assb_twin.stats.transport import ITER_LIMIT, check_solver, tortuosity_factor

    iter_limit = ITER_LIMIT if iter_limit is None else iter_limit
    name_used, _ = check_solver(solver, "cpu")  # before any work: TauFactor asked for but absent, ...
    if vol is None:
        vol = (measured_volume(crop if crop is not None else _run_info(outdir).get("crop")) if key == "measured"
               else np.load(outdir / "twin.npy"))
    log = outdir / f"transport_{key}.jsonl"
    done = set()
    if log.exists():
        done = {(r["phase"], r["axis"]) for r in map(json.loads, log.read_text().splitlines())
                if (r["converged"] or r["iterations"] >= iter_limit) and r.get("solver", "taufactor") == name_used
                and r.get("shape", list(vol.shape)) == list(vol.shape)}
    plan = only if only is not None else [(PHASE_NAMES[p], axis) for axis in range(vol.ndim) for p in range(3)]
    for name, axis in plan:
        p = PHASE_NAMES.index(name)
        if (name, axis) in done:
            continue
        c0 = time.process_time()
        res = tortuosity_factor(vol == p, axis=axis, device="cpu", solver=solver, iter_limit=iter_limit)
        rec = {"image": key, "phase": name, "axis": axis, "shape": list(vol.shape), "cpu_s": time.process_time() - c0,
               "peak_rss_mib": peak_rss_mib(), "load": os.getloadavg()[0],
               **{k: v for k, v in res.as_dict().items() if k != "log"}}
        with open(log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"tau {key} {name} axis {axis}: {res.tau:.4f} (D_eff {res.d_eff:.4f}, {res.solver}, "
              f"converged {res.converged}, {res.iterations} iterations, residual {res.residual:.1e}, "
              f"{res.seconds:.1f} s wall / {rec['cpu_s']:.1f} CPU-s, load {rec['load']:.1f})", flush=True)


def print_transport(outdir: Path) -> None:
    """Markdown table of the transport results recorded so far in ``outdir/transport_*.jsonl``."""
    from napari_assb_twin.validate.compare import relative_difference

    recs = [json.loads(line) for f in sorted(Path(outdir).glob("transport*.jsonl")) for line in f.read_text().splitlines()]
    by = {(r["image"], r["phase"], r["axis"]): r for r in recs}
    print("\n| quantity | phase | axis | measured | twin | rel. diff | solver | s wall (measured / twin) |"
          "\n|---|---|---|---:|---:|---:|---|---:|")
    keys = sorted({(r["phase"], r["axis"]) for r in recs}, key=lambda t: (t[1], t[0]))
    for q, lab in (("tau", "tau"), ("d_eff", "D_eff/D_0")):
        for ph, ax in keys:
            m, t = by.get(("measured", ph, ax)), by.get(("twin", ph, ax))
            fm = f"{m[q]:.4f}" if m else "not run"
            ft = f"{t[q]:.4f}" if t else "not run"
            rd = f"{relative_difference(m[q], t[q]) * 100:+.1f} %" if m and t else ""
            secs = " / ".join(f"{r['seconds']:.1f}" if r else "-" for r in (m, t))
            solvers = " / ".join(sorted({r.get("solver", "taufactor") for r in (m, t) if r}))
            print(f"| {lab} | {ph} | {ax} | {fm} | {ft} | {rd} | {solvers} | {secs} |")


def render_realdata(outdir: Path, crop: int | None = None) -> None:
    """Final report of a realdata run: the geometric table + every transport result logged so far.

    Recomputes only the cheap parts (coverage, chords, sections) and writes ``outdir/report_final``.
    """
    import pandas as pd

    from napari_assb_twin.phases import PHASE_NAMES
    from napari_assb_twin.stats.chords import chord_length_distributions
    from napari_assb_twin.stats.coverage import coverage
    from napari_assb_twin.validate import write_report
    from napari_assb_twin.validate.compare import Comparison, _middle_sections, relative_difference

    outdir = Path(outdir)
    info = _run_info(outdir)
    real = measured_volume(crop if crop is not None else info.get("crop"))
    twin = np.load(outdir / "twin.npy")
    voxel, unit = 0.39, "um"
    df = pd.read_csv(outdir / "report" / "descriptors.csv")
    df["axis"] = df["axis"].astype("Int64")
    recs = [json.loads(line) for f in sorted(outdir.glob("transport_*.jsonl")) for line in f.read_text().splitlines()]
    by = {(r["image"], r["phase"], r["axis"]): r for r in recs}
    solvers = sorted({r.get("solver", "taufactor") for r in by.values()})
    rows, missing = [], []
    unconverged = [f"{r['image']} {r['phase']} axis {r['axis']} ({r['iterations']} iterations)"
                   for r in by.values() if not r["converged"]]
    for q, name in (("tau", "tau_factor"), ("d_eff", "effective_diffusivity")):
        for axis in range(3):
            for ph in PHASE_NAMES:
                m, t = by.get(("measured", ph, axis)), by.get(("twin", ph, axis))
                if not (m and t):
                    if q == "tau":
                        missing.append(f"{ph} axis {axis}")
                    continue
                rows.append({"descriptor": name, "phase": ph, "axis": axis, "unit": "1", "real": m[q], "twin": t[q],
                             "difference": t[q] - m[q], "relative_difference": relative_difference(m[q], t[q])})
    if rows:
        df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
        df["axis"] = df["axis"].astype("Int64")
    r_max = min(64, min(real.shape + twin.shape) - 1)  # a crop is smaller than the 64 px the full volumes use
    cov = {k: coverage(v, r_max, periodic=False, voxel_size=voxel, unit=unit, device="cpu")
           for k, v in (("real", real), ("twin", twin))}
    err = []
    for d in range(3):
        for i, j in cov["real"].pairs():
            diff = np.abs(cov["twin"].directional[d, i, j] - cov["real"].directional[d, i, j])
            err.append({"direction": d, "phase_i": PHASE_NAMES[i], "phase_j": PHASE_NAMES[j],
                        "max_abs_difference": float(diff.max()), "mean_abs_difference": float(diff.mean())})
    chords = {k: chord_length_distributions(v, voxel_size=voxel, unit=unit) for k, v in (("real", real), ("twin", twin))}
    notes = [
        "labels {pore:0, NMC:85, CBD:170}: NMC -> active, carbon-binder (CBD) -> the third phase 'electrolyte' "
        "(no public ASSB cathode exists; the NMC/CBD cathode is the stand-in)",
        f"twin: lp-iso model calibrated (coverage loss, {info.get('steps', 120)} steps) on the single measured section "
        f"z = {real.shape[0] // 2} only; nothing else of the volume was used",
        f"transport ({', '.join(solvers) or 'not run'}, CPU) for " + (
            f"every phase and axis except {', '.join(missing)} (not finished)" if missing else "every phase and axis"),
    ]
    if unconverged:
        notes.append("the transport solver stopped at its iteration limit before converging: " + ", ".join(unconverged))
    print("transport runs: " + ", ".join(f"{r['image']} {r['phase']} axis {r['axis']} ({r.get('solver', 'taufactor')}): "
                                         f"{r['seconds']:,.1f} s / {r['iterations']:,} iterations"
                                         + ("" if r["converged"] else " (not converged)") for r in by.values()))
    cmp = Comparison(descriptors=df, coverage=cov, chords=chords,
                     sections={"real": _middle_sections(real), "twin": _middle_sections(twin)},
                     real_shape=real.shape, twin_shape=twin.shape, voxel_size=voxel, unit=unit,
                     names={"real": "measured NMC", "twin": "calibrated twin"}, notes=notes,
                     coverage_error=pd.DataFrame(err), seconds=float("nan"))
    write_report(cmp, outdir / "report_final", force=True,
                 title=f"NMC cathode ({real.shape[0]}^3): measured volume vs calibrated twin")
    _print_compact(df)


def _pct(rel: float) -> str:
    """A relative difference of a comparison table as a whole percentage (``n/a`` where undefined)."""
    return "n/a" if not np.isfinite(rel) else f"{rel * 100:+.0f} %"


def _print_compact(df) -> None:
    """Markdown: one row per descriptor and phase, cells ``measured / twin (rel. diff.)`` per axis."""
    def cell(r) -> str:
        return f"{r.real:.4g} / {r.twin:.4g} ({_pct(r.relative_difference)})"

    print("\n| descriptor | unit | phase | isotropic or axis 0 (z) | axis 1 (y) | axis 2 (x) |\n|---|---|---|---|---|---|")
    for (desc, phase), sub in df.groupby(["descriptor", "phase"], sort=False):
        cells = ["", "", ""]
        for r in sub.itertuples():
            ax = 0 if r.axis is None or str(r.axis) == "<NA>" else int(r.axis)
            cells[ax] = cell(r)
        print(f"| {desc} | {sub['unit'].iloc[0]} | {phase.replace('|', ' / ')} | " + " | ".join(cells) + " |")


def print_two_twins(csv_a: Path, csv_b: Path, names: tuple[str, str]) -> None:
    """Markdown: measured, twin A and twin B per descriptor, phase and axis (geometric rows both files hold)."""
    import pandas as pd

    key = ["descriptor", "phase", "axis"]
    a, b = (pd.read_csv(f).astype({"axis": "Int64"}) for f in (csv_a, csv_b))
    both = a.merge(b, on=key, suffixes=("_a", "_b"))
    if not np.allclose(both["real_a"], both["real_b"], rtol=1e-6, equal_nan=True):
        raise SystemExit("the two files describe different measured images")
    print(f"\n| descriptor | unit | phase | axis | measured | {names[0]} | {names[1]} |\n|---|---|---|---|---:|---:|---:|")
    for r in both.itertuples():
        ax = "" if str(r.axis) == "<NA>" else str(r.axis)
        print(f"| {r.descriptor} | {r.unit_a} | {r.phase.replace('|', ' / ')} | {ax} | {r.real_a:.4g} | "
              f"{r.twin_a:.4g} ({_pct(r.relative_difference_a)}) | {r.twin_b:.4g} ({_pct(r.relative_difference_b)}) |")


def _print_table(df) -> None:
    """Markdown version of a comparison table."""
    print("\n| descriptor | phase | axis | unit | measured | twin | rel. diff |\n|---|---|---|---|---:|---:|---:|")
    for r in df.itertuples():
        ax = "" if r.axis is None or str(r.axis) == "<NA>" else str(r.axis)
        rd = "n/a" if not np.isfinite(r.relative_difference) else f"{r.relative_difference * 100:+.1f} %"
        print(f"| {r.descriptor} | {r.phase} | {ax} | {r.unit} | {r.real:.4g} | {r.twin:.4g} | {rd} |")


if __name__ == "__main__":
    sys.exit(main())
