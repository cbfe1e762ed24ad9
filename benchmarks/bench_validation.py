"""Benchmarks for virtual materials testing (full size; prints Markdown tables).

Run one part at a time (each is independent, so the slow ones can run in the background)::

    python benchmarks/bench_validation.py descriptors [--size 256] [--transport]
    python benchmarks/bench_validation.py blockwise --size 512      # one size per process (peak RSS)
    python benchmarks/bench_validation.py sweep [--cases 20] [--shape 48 48 48]
    python benchmarks/bench_validation.py realdata [--size 256] [--transport] [--out DIR]

Figures are wall-clock seconds on whatever machine runs this; the CPU may be shared with other jobs,
so treat them as indicative (the script prints the machine line to record with them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def machine() -> str:
    """One line describing the machine (CPU model, cores, memory)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    import torch

    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, torch {torch.__version__}, {torch.get_num_threads()} torch threads"


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

    from napari_assb_twin.fields.blockwise import BlockwiseTwin
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
    s = sub.add_parser("realdata")
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--transport", action="store_true")
    s.add_argument("--out", default=None)
    s.add_argument("--steps", type=int, default=None)
    a = p.parse_args(argv)
    if a.part == "descriptors":
        bench_descriptors(a.size, a.transport)
    elif a.part == "blockwise":
        bench_blockwise(a.size, a.chunk, workdir=a.workdir)
    elif a.part == "sweep":
        bench_sweep(a.cases, tuple(a.shape), a.workers, a.transport)
    else:
        bench_realdata(a.size, a.transport, a.out, a.steps)
    sys.stdout.flush()
    return 0


def bench_realdata(size: int, transport: bool, out: str | None, steps: int | None) -> None:  # filled below
    raise NotImplementedError


if __name__ == "__main__":
    sys.exit(main())
