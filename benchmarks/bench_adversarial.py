"""Adversarial term (issue 12 item 4): why algorithm 3 ended where algorithm 1 did, and what fixes it.

Usage::

    python benchmarks/bench_adversarial.py --part gradients|compare|table|all [--quick]
        [--out benchmarks/results/adversarial.json]

``gradients``: during algorithm 3 on two NMC sections, the norms of the coverage term's and of the
critic's (generator) gradient w.r.t. the model parameters, the exact coverage estimator, per block of
combined steps, and at which step the returned model was taken.

``compare``: on the z = 128 section of the shared NMC 256^3 volume (0.39 um), algorithm 1 against
algorithm 3 variants, 3 fresh seeds each; held-out 2D statistics against sections of the measured
volume that were not used (chord-length W1 per phase, boundary length per area), and TauFactor of every
phase along axis 0 of 128^3 twins against the measured volume's central 128^3 crop and its 256^3 values
(benchmarks/results/nmc256_transport_measured.jsonl).

``table``: the tables of docs/benchmarks.md ("Adversarial term") from the JSON file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator
from napari_assb_twin.calibrate.selection import chord_score
from napari_assb_twin.io import read_label_image
from napari_assb_twin.phases import PHASE_NAMES
from napari_assb_twin.stats.chords import chord_length_distributions

from _machine import cpu_model, memory_gib  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASSB_TWIN_DATA", ROOT.parent / "shared" / "data"))
NMC253 = DATA / "tldr_inpainter" / "nmc_3phase_2d_253.png"
NMC256 = DATA / "tldr_taufactor" / "electrode_nmc_3phase_256.tiff"
MEASURED = ROOT / "benchmarks" / "results" / "nmc256_transport_measured.jsonl"
MAP253 = {0: "pore", 128: "active", 255: "electrolyte"}
MAP256 = {0: "pore", 85: "active", 170: "electrolyte"}
VOXEL256 = 0.39
#: discriminator of the benchmark runs (docs/benchmarks.md "Real data"): width 16 on 64^2 crops
ADV = dict(disc_width=16, patch=64, n_critic=5, disc_batch=8)


def machine_line() -> str:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib():.1f} GiB; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load}")


def _volume256() -> np.ndarray:
    return read_label_image(NMC256, MAP256).data


def data_sets() -> dict[str, CalibrationData]:
    out = {}
    if NMC253.is_file():
        out["nmc253"] = CalibrationData.from_files([NMC253], planes="inplane", mapping=MAP253)
    if NMC256.is_file():
        vol = _volume256()
        out["nmc256-z128"] = CalibrationData.from_arrays(vol[128], "inplane", VOXEL256, "um", sources=["z=128"])
        # one in-plane + one axial section (rows = axis 0) for the cylindrical variants
        out["nmc256-z128+y128"] = CalibrationData.from_arrays([vol[128], vol[:, 128, :]], ["inplane", "axial"], VOXEL256, "um",
                                                              sources=["z=128", "y=128"])
    return out


def calibrate(data: CalibrationData, **kw) -> tuple[Calibrator, float]:
    cal = Calibrator(data, CalibrationConfig(device="cpu", **kw))
    t0 = time.perf_counter()
    for _ in cal.run():
        pass
    return cal, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------
# part 1: gradient norms
# ------------------------------------------------------------------------------------------------
BLOCKS = ((0, 10), (10, 30), (30, None))


def _block_stats(recs: list, key: str) -> list[float]:
    out = []
    for a, b in BLOCKS:
        v = [r.losses[key] for r in recs[a:b] if key in r.losses]
        out.append(float(np.median(v)) if v else float("nan"))
    return out


def part_gradients(args) -> dict:
    sets = data_sets()
    cases = [("nmc253", "lp-iso"), ("nmc256-z128", "lp-iso"), ("nmc253", "hp-iso"), ("nmc256-z128+y128", "hp-cyl")]
    if args.quick:
        cases = cases[:1]
    out = {}
    for name, variant in cases:
        if name not in sets:
            continue
        for balance in ("none", "gradient"):
            cal, wall = calibrate(sets[name], variant=variant, algorithm="combined", iterations=args.adv_iterations,
                                  pre_iterations=args.iterations, balance=balance, adv_pick="coverage", seed=0, **ADV)
            recs = [r for r in cal.history if r.phase == "combined"]
            pre = [r for r in cal.history if r.phase != "combined"][-1]
            # which combined step the coverage-best rule returns: the last evaluation with that loss
            ev = [(i, r.losses["coverage_eval"]) for i, r in enumerate(recs) if "coverage_eval" in r.losses]
            best_i = min(ev, key=lambda t: t[1])[0] + 1
            lengths = {k: v for k, v in recs[-1].params.items() if k.endswith("length_scale") or "length_scale_" in k}
            start = {k: pre.params[k] for k in lengths if k in pre.params}
            row = {
                "data": name, "variant": variant, "balance": balance, "steps": len(recs),
                "grad_coverage": _block_stats(recs, "grad_coverage"), "grad_generator": _block_stats(recs, "grad_generator"),
                "contribution_ratio": _block_stats(recs, "grad_ratio"),
                "coverage_best_step": best_i, "coverage_start": pre.losses.get("coverage", float("nan")),
                "coverage_end": recs[-1].losses["coverage"], "lengths_start": start, "lengths_end": lengths,
                "wall_s": wall,
            }
            out[f"{name}/{variant}/{balance}"] = row
            print(json.dumps(row), flush=True)
    return out


# ------------------------------------------------------------------------------------------------
# part 3: held-out 2D statistics and 3D transport
# ------------------------------------------------------------------------------------------------
def _mean_chords(images, axes=(0, 1)) -> np.ndarray:
    """Mean chord length per phase (px), pooled over images and both image axes."""
    lens = [[] for _ in PHASE_NAMES]
    for im in images:
        res = chord_length_distributions(np.asarray(im), n_phases=len(PHASE_NAMES))
        for p in range(len(PHASE_NAMES)):
            for a in axes:
                lens[p].append(res.lengths[(p, a)])
    return np.array([np.concatenate(v).mean() if sum(x.size for x in v) else np.nan for v in lens])


def _boundary(images) -> np.ndarray:
    from napari_assb_twin.calibrate.selection import boundary_densities

    return np.mean([0.5 * (boundary_densities(im, 0) + boundary_densities(im, 1)) for im in images], axis=0)


def _held_out(vol: np.ndarray) -> CalibrationData:
    # sections of the measured volume the calibration did not see (z = 128 was the input); the model
    # is isotropic, so axial cuts are in-plane sections of it as well
    ims = [vol[32], vol[224], vol[:, 64, :], vol[:, :, 192]]
    return CalibrationData.from_arrays(ims, "inplane", VOXEL256, "um", sources=["z=32", "z=224", "y=64", "x=192"])


def _tau(phases: np.ndarray, axis: int = 0) -> list[float]:
    from napari_assb_twin.stats.transport import tortuosity_factor

    return [float(tortuosity_factor(phases == p, axis=axis, iter_limit=40000).tau) for p in range(len(PHASE_NAMES))]


CONFIGS = {
    "1 coverage": dict(algorithm="coverage"),
    "3 combined (old: raw sum, coverage-best pick)": dict(algorithm="combined", balance="none", adv_pick="coverage"),
    "3 combined, raw sum, average pick": dict(algorithm="combined", balance="none", adv_pick="average"),
    "3 combined, gradient balance alpha=1, average pick": dict(algorithm="combined", balance="gradient", alpha=1.0, adv_pick="average"),
    "3 combined, gradient balance alpha=3, average pick": dict(algorithm="combined", balance="gradient", alpha=3.0, adv_pick="average"),
}


def part_compare(args) -> dict:
    if not NMC256.is_file():
        print(f"skip compare: {NMC256} absent")
        return {"skipped": f"{NMC256} absent"}
    vol = _volume256()
    data = CalibrationData.from_arrays(vol[128], "inplane", VOXEL256, "um", sources=["z=128"])
    held = _held_out(vol)
    res = json.loads(Path(args.out).read_text()).get("compare", {}) if Path(args.out).is_file() else {}
    side = args.size
    c0 = (256 - side) // 2
    crop = vol[c0:c0 + side, c0:c0 + side, c0:c0 + side]
    ref = res.get("reference") or {
        "held_out_mean_chord_px": _mean_chords(held.images("inplane")).tolist(),
        "held_out_boundary": _boundary(held.images("inplane")).tolist(),
        "input_mean_chord_px": _mean_chords(data.images("inplane")).tolist(),
        "input_boundary": _boundary(data.images("inplane")).tolist(),
        "tau_crop_axis0": _tau(crop) if not args.no_transport else None, "crop": side,
    }
    res["reference"] = ref
    meas = [json.loads(line) for line in MEASURED.read_text().splitlines() if line.strip()] if MEASURED.is_file() else []
    ref["tau_256_mean_axes"] = [float(np.mean([m["tau"] for m in meas if m["phase"] == p])) for p in PHASE_NAMES] if meas else None
    print("reference", json.dumps(ref), flush=True)
    configs = {k: v for k, v in CONFIGS.items() if not args.configs or k[:1] in args.configs or any(c in k for c in args.configs)}
    seeds = args.seeds
    for name, cfg in configs.items():
        for seed in seeds:
            key = f"{name}/seed{seed}"
            if key in res.get("runs", {}) and not args.redo:
                continue
            kw = dict(cfg, seed=seed, iterations=args.iterations)
            if cfg["algorithm"] != "coverage":
                kw.update(ADV, iterations=args.adv_iterations, pre_iterations=args.iterations)
            cal, wall = calibrate(data, **kw)
            model = cal.best_model
            sc = chord_score(held, model, n_sections=8, seed=1000 + seed)
            g = torch.Generator().manual_seed(2000 + seed)
            sims = list(model.sample_sections((256, 256), "inplane", batch=8, generator=g).numpy())
            row = {
                "config": name, "seed": seed, "wall_s": wall, "coverage_rmse": cal.provenance()["best_coverage_rmse"],
                "params": {k: float(v) for k, v in model.interpretable().items()},
                "held_out_chord_w1": sc["chord_w1"], "held_out_boundary_err": sc["boundary"],
                "mean_chord_px": _mean_chords(sims).tolist(), "boundary": _boundary(sims).tolist(),
            }
            if not args.no_transport:
                t0 = time.perf_counter()
                twin = model.generate((side,) * 3, seed=seed, device="cpu")
                row["twin_vf"] = (np.bincount(twin.ravel(), minlength=3) / twin.size).tolist()
                row["tau_axis0"] = _tau(twin)
                row["tau_s"] = time.perf_counter() - t0
            res.setdefault("runs", {})[key] = row
            print(json.dumps(row), flush=True)
            _save(args, "compare", res)  # resumable: every finished run is kept
    return res


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def _pct(x: float, ref: float) -> str:
    return f"{100 * (x - ref) / abs(ref):+.0f} %"


def tables(res: dict) -> str:
    lines = []
    g = res.get("gradients", {})
    if g:
        lines += ["| data | variant | balance | grad norm coverage, steps 1-10 / 11-30 / 31-end | grad norm critic (generator) | "
                  "contribution ratio coverage / critic | step the coverage-best pick returns | lengths: end of alg. 1 -> end of stage (px or um) |",
                  "|---|---|---|---|---|---|---:|---|"]
        for row in g.values():
            f = lambda v: " / ".join(f"{x:.2g}" for x in v)  # noqa: E731
            ls = ", ".join(f"{k.split('.')[0]} {row['lengths_start'].get(k, float('nan')):.2f} -> {v:.2f}"
                           for k, v in row["lengths_end"].items() if k.endswith("length_scale"))
            lines.append(f"| {row['data']} | {row['variant']} | {row['balance']} | {f(row['grad_coverage'])} | {f(row['grad_generator'])} | "
                         f"{f(row['contribution_ratio'])} | {row['coverage_best_step']} of {row['steps']} | {ls or '(spectral)'} |")
        lines.append("")
    c = res.get("compare", {})
    if c.get("runs"):
        ref = c["reference"]
        names = list(dict.fromkeys(r["config"] for r in c["runs"].values()))
        hc, hb = np.array(ref["held_out_mean_chord_px"]), np.array(ref["held_out_boundary"])
        lines += ["| configuration | seeds | coverage RMSE (input) | held-out chord W1 / mean chord | held-out boundary rel. error | "
                  "mean chord pore / active / CBD vs held-out | tau pore | tau NMC | tau CBD | wall s |",
                  "|---|---:|---:|---:|---:|---|---|---|---|---:|"]
        tc = ref.get("tau_crop_axis0")
        t256 = ref.get("tau_256_mean_axes")
        if tc:
            lines.append(f"| measured volume, central {ref['crop']}^3 crop (axis 0); 256^3 mean of 3 axes | | | "
                         f"| | {' / '.join(f'{x:.2f}' for x in hc)} px (held-out sections) | {tc[0]:.2f}; {t256[0]:.2f} | "
                         f"{tc[1]:.2f}; {t256[1]:.2f} | {tc[2]:.2f}; {t256[2]:.2f} | |")
        for n in names:
            rows = [r for r in c["runs"].values() if r["config"] == n]
            ms = lambda k: (np.mean([r[k] for r in rows]), np.std([r[k] for r in rows]))  # noqa: E731
            cw, bw = ms("held_out_chord_w1"), ms("held_out_boundary_err")
            ch = np.mean([r["mean_chord_px"] for r in rows], axis=0)
            taus = np.array([r["tau_axis0"] for r in rows if "tau_axis0" in r])
            tcells = []
            for p in range(3):
                if taus.size and tc:
                    tcells.append(f"{taus[:, p].mean():.2f} +- {taus[:, p].std():.2f} ({_pct(taus[:, p].mean(), tc[p])})")
                else:
                    tcells.append("")
            lines.append(f"| {n} | {len(rows)} | {np.mean([r['coverage_rmse'] for r in rows]):.4f} | {cw[0]:.3f} +- {cw[1]:.3f} | "
                         f"{bw[0]:.3f} +- {bw[1]:.3f} | {' / '.join(_pct(ch[p], hc[p]) for p in range(3))} | "
                         + " | ".join(tcells) + f" | {np.mean([r['wall_s'] for r in rows]):.0f} |")
    return "\n".join(lines)


def _save(args, part: str, value: dict) -> None:
    path = Path(args.out)
    res = json.loads(path.read_text()) if path.is_file() else {}
    res[part] = value
    res.setdefault("machine", {})[part] = machine_line()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("gradients", "compare", "table", "all"), default="all")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adversarial.json"))
    ap.add_argument("--iterations", type=int, default=300, help="coverage steps (algorithm 1 and before algorithm 3)")
    ap.add_argument("--adv-iterations", type=int, default=100, help="combined steps of algorithm 3")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=128, help="side of the twins and of the measured crop for TauFactor")
    ap.add_argument("--configs", nargs="*", default=None, help="subset of configurations (prefix or substring)")
    ap.add_argument("--no-transport", action="store_true")
    ap.add_argument("--redo", action="store_true", help="recompute runs already in the JSON file")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the benchmark shares a 2-core machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line(), flush=True)
    if args.part in ("gradients", "all"):
        _save(args, "gradients", part_gradients(args))
    if args.part in ("compare", "all"):
        part_compare(args)
    res = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    print(tables(res))
    for part, line in res.get("machine", {}).items():
        print(f"machine ({part}): {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
