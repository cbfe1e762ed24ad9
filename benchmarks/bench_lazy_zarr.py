"""Resident memory while paging through a Zarr twin opened in napari (issue 20 item 3).

    python benchmarks/bench_lazy_zarr.py TWIN.zarr [--slices 64] [--eager]

Opens ``TWIN.zarr`` (written by ``assb-twin generate --out TWIN.zarr``) with the plugin's reader in a
headless napari viewer (``QT_QPA_PLATFORM=offscreen``), then moves the z slider through ``--slices``
evenly spaced slices, drawing each, and prints the process's resident set size (RSS, from
/proc/self/status) before opening, after opening, and the largest seen while paging, next to the
twin's size in memory. ``--eager`` loads the whole volume into a NumPy array first, for comparison.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, memory_gib  # noqa: E402


def rss_mib() -> float:
    """Current resident set size of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("twin")
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--eager", action="store_true", help="load the volume as NumPy first (the old way)")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import napari
    import numpy as np
    import zarr

    z = zarr.open_array(args.twin, mode="r")
    nbytes = math.prod(z.shape)
    viewer = napari.Viewer(show=False)
    base = rss_mib()
    t0 = time.perf_counter()
    if args.eager:
        from napari_assb_twin._napari._layers import phase_labels_layer_data

        data, kwargs, _ = phase_labels_layer_data(np.asarray(z[...]), "eager", z.attrs.get("voxel_size"), z.attrs.get("unit"))
        (layer,) = [viewer.add_labels(data, **kwargs)]
    else:
        (layer,) = viewer.open(args.twin, plugin="napari-assb-twin")
    opened = rss_mib()
    t_open = time.perf_counter() - t0
    peak = opened
    step = layer.scale[0]
    t1 = time.perf_counter()
    for k in np.linspace(0, z.shape[0] - 1, args.slices).astype(int):
        viewer.dims.set_point(0, float(k) * step)
        np.asarray(layer._slice.image.raw)  # the slice napari draws
        peak = max(peak, rss_mib())
    per_slice = (time.perf_counter() - t1) / args.slices
    print(f"twin {args.twin}: shape {tuple(z.shape)}, chunks {tuple(z.chunks)}, {nbytes / 2**20:.0f} MiB as uint8; "
          f"layer data {type(layer.data).__module__.split('.')[0]}")
    print(f"RSS MiB: viewer {base:.0f}, after open {opened:.0f} (+{opened - base:.0f}, {t_open:.2f} s), "
          f"peak while paging {args.slices} z slices {peak:.0f} (+{peak - base:.0f}); {per_slice * 1000:.0f} ms per slice")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.1f} GiB; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()[0]:.1f}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
