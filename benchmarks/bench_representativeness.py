"""Representativeness of the shared real inputs (issue 21 item 2), and a check of the estimate against the
scatter actually seen between independent slices / sub-volumes of the same data.

Prints two markdown tables:

1. per input (as `assb-twin calibrate` would get it): phase fractions with their 95 % half-widths,
   integral ranges, how many times the data +-0.01 needs, the C_ij split-half SD and the time taken;
2. predicted SD of one window's fractions (mean of the estimates made on each window alone) against
   the observed SD between independent windows of one data set (slices 16 px apart along each axis,
   sub-cubes, tiles of a large section). With n windows the observed SD has a relative standard error
   of about 1 / sqrt(2 (n - 1)).

    PYTHONPATH=src python benchmarks/bench_representativeness.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from napari_assb_twin.calibrate import CalibrationData
from napari_assb_twin.io import read_label_image
from napari_assb_twin.phasemap import PhaseMap
from napari_assb_twin.stats.representativeness import integral_matrix

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASSB_TWIN_DATA", ROOT.parent / "shared" / "data"))
NMC256 = "tldr_taufactor/electrode_nmc_3phase_256.tiff"
INP128 = "tldr_inpainter/nmc_3phase_128.tif"
INP253 = "tldr_inpainter/nmc_3phase_2d_253.png"
SEM = "superres/SEM_hr_input.tif"
SOFC = "tldr_inpainter/sofc_3phase_2d_2286x1326.png"


def load(rel: str) -> PhaseMap:
    return read_label_image(str(DATA / rel))


def section_map(arr: np.ndarray, src: str) -> PhaseMap:
    return PhaseMap(np.ascontiguousarray(arr), source=src, plane="inplane")


def inputs() -> list[tuple[str, CalibrationData]]:
    nmc, inp = load(NMC256), load(INP128)
    return [
        ("NMC 256^3 volume", CalibrationData([], [nmc])),
        ("NMC 256^3: one 256^2 slice (z=128)", CalibrationData([section_map(nmc.data[128], "z128")])),
        ("NMC 256^3: 8 in-plane slices (z = 16, 48, ...)", CalibrationData(
            [section_map(nmc.data[z], f"z{z}") for z in range(16, 256, 32)])),
        ("inpainter 128^3 volume", CalibrationData([], [inp])),
        ("inpainter 128^3: one 128^2 slice (z=64)", CalibrationData([section_map(inp.data[64], "z64")])),
        ("inpainter 253^2 section", CalibrationData([load(INP253)])),
        ("SEM 427^2 section", CalibrationData([load(SEM)])),
        ("SOFC 2286x1326 section", CalibrationData([load(SOFC)])),
    ]


def table_inputs() -> None:
    print("| input | pore | active | electrolyte (binder) | integral range (px^2 / voxels) | +-0.01 needs | "
          "C_ij SD RMS (largest rel.) | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, data in inputs():
        t = time.perf_counter()
        rep = data.representativeness()
        dt = time.perf_counter() - t
        g = rep.groups[0]
        z = 1.959963984540054
        fr = [f"{p:.3f} +-{z * s:.3f}" for p, s in zip(g.fractions, g.sd)]
        ir = " / ".join(f"{a:.0f}" for a in g.integral_range) + ("" if all(g.estimate.converged) else " (lower bound)")
        need = g.need_text().split("(", 1)[1].rstrip(")")
        need = f"{g.needed_ratio():.2g}x ({need})"
        if g.coverage_sd is not None:
            rng = g.coverage_range
            rel = np.where(rng > 0, g.coverage_sd / np.where(rng > 0, rng, 1), np.nan)
            iu = np.triu_indices(3)
            csd = f"{np.sqrt(np.mean(g.coverage_sd[iu] ** 2)):.4f} ({np.nanmax(rel[iu]):.1%})"
        else:
            csd = "n/a (too small to halve)"
        print(f"| {name} | {' | '.join(fr)} | {ir} | {need} | {csd} | {dt:.1f} |")


def _observed_vs_predicted(name: str, windows: list[np.ndarray]) -> str:
    fr = np.array([np.bincount(w.ravel(), minlength=3)[:3] / w.size for w in windows])
    obs = fr.std(axis=0, ddof=1)
    t = time.perf_counter()
    pred = np.sqrt(np.mean([np.diag(integral_matrix([w]).covariance) for w in windows], axis=0))
    dt = (time.perf_counter() - t) / len(windows)
    n = len(windows)
    se = 1 / np.sqrt(2 * (n - 1))
    cells = " | ".join(f"{p:.4f} / {o:.4f} ({p / o:.2f})" for p, o in zip(pred, obs))
    return f"| {name} | {n} | {cells} | +-{se:.0%} | {dt:.2f} |"


def table_validation() -> None:
    nmc, inp, sofc, sem = load(NMC256).data, load(INP128).data, load(SOFC).data, load(SEM).data
    rows = []
    sl = [inp[z] for z in range(8, 128, 16)] + [inp[:, y] for y in range(8, 128, 16)] + [inp[:, :, x] for x in range(8, 128, 16)]
    rows.append(_observed_vs_predicted("inpainter 128^3: 128^2 slices, 16 px apart, 3 axes", sl))
    rows.append(_observed_vs_predicted("inpainter 128^3: 64^3 octants",
                                       [inp[i:i + 64, j:j + 64, k:k + 64] for i in (0, 64) for j in (0, 64) for k in (0, 64)]))
    sl = [nmc[z] for z in range(8, 256, 16)] + [nmc[:, y] for y in range(8, 256, 16)] + [nmc[:, :, x] for x in range(8, 256, 16)]
    rows.append(_observed_vs_predicted("NMC 256^3: 256^2 slices, 16 px apart, 3 axes", sl))
    rows.append(_observed_vs_predicted("NMC 256^3: 64^3 sub-cubes", [
        nmc[i:i + 64, j:j + 64, k:k + 64] for i in range(0, 256, 64) for j in range(0, 256, 64) for k in range(0, 256, 64)]))
    rows.append(_observed_vs_predicted("NMC 256^3: 128^2 tiles of slices 32 px apart", [
        nmc[z, i:i + 128, j:j + 128] for z in range(16, 256, 32) for i in (0, 128) for j in (0, 128)]))
    rows.append(_observed_vs_predicted("SOFC 2286x1326: 254^2 tiles", [
        sofc[i:i + 254, j:j + 254] for i in range(0, 2286 - 253, 254) for j in range(0, 1326 - 253, 254)]))
    rows.append(_observed_vs_predicted("SEM 427^2: 106^2 tiles", [
        sem[i:i + 106, j:j + 106] for i in range(0, 424, 106) for j in range(0, 424, 106)]))
    print("| windows | n | pore: predicted / observed SD (ratio) | active | electrolyte (binder) | SE of observed SD | s per estimate |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


def main() -> None:
    if not DATA.is_dir():
        raise SystemExit(f"shared data folder {DATA} absent")
    print(f"load: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs\n")
    table_inputs()
    print()
    table_validation()


if __name__ == "__main__":
    main()
