"""Geodesic tortuosity and constrictivity blocks: this checkout against another source tree, same run.

Each (tree, block) runs in its own subprocess on the same volume (the shared NMC 256^3 image, or its
``--size`` crop; labels in increasing order = phases 0, 1, 2), alternating old and new so both see the
same machine load; prints wall and CPU seconds, peak RSS and the largest relative difference of the
9 values (3 phases x 3 axes; r_min / r_max too for constrictivity)::

    python benchmarks/bench_geometry_blocks.py --old /path/to/other/src [--size 128] [--repeat 1]
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

ROOT = Path(__file__).resolve().parents[1]
VOLUME = ROOT.parent / "shared" / "data" / "tldr_taufactor" / "electrode_nmc_3phase_256.tiff"
BLOCKS = ("geodesic_tortuosity", "constrictivity")


def _case(block: str, size: int) -> dict:
    import tifffile

    from napari_assb_twin.stats import descriptors

    raw = tifffile.imread(VOLUME)
    ph = np.ascontiguousarray(np.searchsorted(np.unique(raw), raw).astype(np.uint8)[:size, :size, :size])
    t0, c0 = time.perf_counter(), time.process_time()
    res = getattr(descriptors, block)(ph)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    flat = {}
    for (p, a), v in res.items():
        for k, x in (v.items() if isinstance(v, dict) else [("value", v)]):
            flat[f"{p},{a},{k}"] = float(x)
    return {"block": block, "wall_s": wall, "cpu_s": cpu, "values": flat, "src": descriptors.__file__,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "load": os.getloadavg()[0]}


def _rel(a: float, b: float) -> float:
    if a == b or (np.isnan(a) and np.isnan(b)):
        return 0.0
    return abs(a - b) / abs(b) if b else float("inf")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, required=True, help="the src/ folder of the tree to compare with")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=BLOCKS)
    p.add_argument("--case", nargs=2, metavar=("BLOCK", "SIZE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.case:
        print(json.dumps(_case(a.case[0], int(a.case[1]))))
        return 0
    trees = {"old": a.old.resolve(), "new": ROOT / "src"}
    rows = []
    for block in a.blocks:
        for _ in range(a.repeat):
            got = {}
            for name, src in trees.items():
                env = dict(os.environ, PYTHONPATH=str(src))
                out = subprocess.run([sys.executable, __file__, "--old", str(a.old), "--case", block, str(a.size)],
                                     capture_output=True, text=True, env=env, check=True)
                got[name] = json.loads(out.stdout.strip().splitlines()[-1])
            worst = max(_rel(got["new"]["values"][k], v) for k, v in got["old"]["values"].items())
            rows.append((block, got, worst))
            print(f"{block} {a.size}^3: old {got['old']['wall_s']:.1f} s wall / {got['old']['cpu_s']:.1f} CPU-s, "
                  f"new {got['new']['wall_s']:.1f} s wall / {got['new']['cpu_s']:.1f} CPU-s, "
                  f"largest rel. difference {worst:.2e} (load {got['new']['load']:.1f})", flush=True)
    print(f"\n| block ({a.size}^3, 3 phases x 3 axes) | old: wall s, CPU s, MiB | new: wall s, CPU s, MiB "
          "| CPU ratio | largest rel. difference | load |\n|---|---|---|---:|---:|---:|")
    for block, got, worst in rows:
        o, n = got["old"], got["new"]
        print(f"| {block} | {o['wall_s']:.1f}, {o['cpu_s']:.1f}, {o['peak_rss_mib']:.0f} "
              f"| {n['wall_s']:.1f}, {n['cpu_s']:.1f}, {n['peak_rss_mib']:.0f} | {o['cpu_s'] / n['cpu_s']:.1f}x "
              f"| {worst:.1e} | {n['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
