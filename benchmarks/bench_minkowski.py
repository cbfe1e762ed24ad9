"""2D topology chi / P^2 of excursion-set phases: exact expectation vs the image estimator on sections.

Prints (1) the table of issue 12 for a phase at VF 0.40 (Gaussian correlation, length 6 px): the
closed form of :func:`~napari_assb_twin.stats.minkowski.expected_minkowski` next to the estimate on
simulated 2D sections (mean +- standard error over the sections) and the cost of one differentiable
expectation; (2) the measured phases' chi / P^2 of the shared real data (256^3 NMC volume's in-plane
and axial sections, the inpainter 2D NMC section, the SEM section, the SOFC section).

    PYTHONPATH=src python benchmarks/bench_minkowski.py [--size 256] [--batch 16]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_assb_twin.model.excursion import build_model
from napari_assb_twin.stats.minkowski import chi_over_p2, expected_minkowski, minkowski_torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASSB_TWIN_DATA", ROOT.parent / "shared" / "data"))

#: (label, f1 type, dof, level, rule, rule parameters); the studied phase is "active" at VF 0.40.
CASES = [
    ("chi2(3) lower level set", "chi2", 3, "lower", "sequential", {}),
    ("Gaussian level set", "gaussian", 1, "lower", "sequential", {}),
    ("chi2(2) upper level set", "chi2", 2, "upper", "sequential", {}),
    ("chi2(1) upper level set", "chi2", 1, "upper", "sequential", {}),
    ("shell {a < F <= b} (Gaussian, centred band)", "gaussian", 1, "lower", "interval", {"offset": 0.5}),
]
ISSUE = {"chi2(3) lower level set": 0.046, "Gaussian level set": 0.096, "chi2(2) upper level set": 0.130,
         "chi2(1) upper level set": 0.181, "shell {a < F <= b} (Gaussian, centred band)": -0.052}


def model_table(size: int, batch: int, length: float) -> None:
    print(f"\n## Phase at VF 0.40, Gaussian correlation, length {length:g} px; {batch} sections {size}^2 px\n")
    print("| phase at VF 0.40 | chi/P^2 exact | chi/P^2 on sections (+- s.e.) | same, 4-adjacency | "
          "L_A exact / sections (px^-1) | issue's value | expectation fwd+bwd (ms) |")
    print("|---|---|---|---|---|---|---|")
    for label, kind, dof, level, rule, params in CASES:
        model = build_model("lp-iso", f1=kind, f1_dof=dof, levels=(level, "upper"), rule=rule, rule_params=params,
                            length_scales_px=(length, length),
                            volume_fractions={"active": 0.40, "pore": 0.35, "electrolyte": 0.25})
        exact = expected_minkowski(model)
        t0 = time.perf_counter()
        for _ in range(20):
            out = expected_minkowski(model)
            out[:, 1:].sum().backward()
        ms = (time.perf_counter() - t0) / 20 * 1e3
        with torch.no_grad():
            secs = model.sample_sections((size, size), "inplane", batch=batch, seed=1)
        vals = minkowski_torch(secs, periodic=True)[:, 1]  # the active phase
        cp = chi_over_p2(vals)
        cp4 = chi_over_p2(minkowski_torch(secs, periodic=True, connectivity=4)[:, 1])
        ex = exact[1].detach()
        print(f"| {label} | {float(chi_over_p2(ex)):+.3f} | {float(cp.mean()):+.3f} +- {float(cp.std() / math.sqrt(batch)):.3f} | "
              f"{float(cp4.mean()):+.3f} | "
              f"{float(ex[1]):.4f} / {float(vals[:, 1].mean()):.4f} | {ISSUE[label]:+.3f} | {ms:.1f} |")


def _sections_of(name: str):
    from napari_assb_twin.calibrate.data import CalibrationData
    from napari_assb_twin.io import read_label_image

    if name == "nmc256":
        vol = read_label_image(DATA / "tldr_taufactor" / "electrode_nmc_3phase_256.tiff", mapping={0: 0, 85: 1, 170: 2}).data
        data = CalibrationData.from_volume(vol, n_sections=16)
        return {p: data.images(p) for p in data.planes}
    files = {"inpainter2d": ("tldr_inpainter/nmc_3phase_2d_253.png", {0: 0, 128: 1, 255: 2}),
             "sem": ("superres/SEM_hr_input.tif", {0: 0, 1: 1, 2: 2}),
             "sofc": ("tldr_inpainter/sofc_3phase_2d_2286x1326.png", {0: 0, 128: 1, 255: 2})}
    path, mapping = files[name]
    return {"2D": [read_label_image(DATA / path, mapping=mapping).data]}


def data_table() -> None:
    print("\n## Measured phases (8-adjacency Euler, 4-direction Crofton length, minus-sampling)\n")
    if not DATA.is_dir():
        print(f"(real data folder {DATA} absent: skipped)")
        return
    names = {"nmc256": ("shared NMC 256^3 (GAN, 0.39 um)", ("pore", "NMC", "CBD")),
             "inpainter2d": ("inpainter NMC 2D section 253^2", ("pore", "NMC", "CBD")),
             "sem": ("SEM NMC section 427^2", ("label 0", "label 1", "label 2")),
             "sofc": ("SOFC anode 2286x1326", ("pore", "Ni", "YSZ"))}
    print("| data | sections | phase | VF | L_A (px^-1) | chi/P^2 (+- s.e. over sections) | same, 4-adjacency |")
    print("|---|---|---|---|---|---|---|")
    for key, (title, phases) in names.items():
        for plane, imgs in _sections_of(key).items():
            vals = np.stack([minkowski_torch(im).numpy() for im in imgs])
            e4 = np.stack([minkowski_torch(im, connectivity=4).numpy()[:, 2] for im in imgs])
            w = np.array([im.size for im in imgs], float)
            mean = (vals * w[:, None, None]).sum(0) / w.sum()
            cp_each = vals[..., 2] / vals[..., 1] ** 2
            for p in range(3):
                se = f" +- {cp_each[:, p].std(ddof=1) / math.sqrt(len(imgs)):.3f}" if len(imgs) > 1 else ""
                print(f"| {title} | {plane} x{len(imgs)} | {phases[p]} | {mean[p, 0]:.3f} | {mean[p, 1]:.4f} | "
                      f"{mean[p, 2] / mean[p, 1] ** 2:+.3f}{se} | {(e4[:, p] * w).sum() / w.sum() / mean[p, 1] ** 2:+.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=float, default=6.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"machine load (uptime): {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    model_table(args.size, args.batch, args.length)
    data_table()


if __name__ == "__main__":
    main()
