"""Calibration benchmark (issue 3): parameter recovery, model selection, real data, speed.

Usage::

    python benchmarks/bench_calibration.py --part recovery|selection|real|speed|figure|tables|all [--quick]
        [--out benchmarks/results/calibration.json] [--device cpu]

Full size by default (256^2 sections, 4 per case; the real data at their own size). Results go to a
JSON file (one key per part, merged with what is already there) and the real-data figure to
docs/calibration_nmc.png. Timings are wall-clock on whatever machine runs it; the load average at
the start and end of each part is recorded because a shared CPU makes them noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator
from napari_assb_twin.calibrate.report import model_coverage_curves, plot_coverage_comparison, plot_sections
from napari_assb_twin.calibrate.selection import select_model
from napari_assb_twin.io import read_label_image
from napari_assb_twin.model import build_model, load_model, save_model
from napari_assb_twin.stats.coverage import coverage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

VF = {"pore": 0.15, "active": 0.55, "electrolyte": 0.30}
CASES = {
    # name: (variant, build kwargs, planes)
    "iso-chi2k3": ("lp-iso", dict(f1="chi2", f1_dof=3, levels=("lower", "upper"), length_scales_px=(6.0, 3.0)), ("inplane",)),
    "iso-gauss": ("lp-iso", dict(f1="gaussian", f1_dof=1, levels=("lower", "upper"), length_scales_px=(5.0, 3.5)), ("inplane",)),
    "cyl-chi2k3": ("lp-cyl", dict(f1="chi2", f1_dof=3, levels=("lower", "upper"), length_scales_px=((9.0, 5.0), (3.0, 4.0))), ("inplane", "axial")),
    "cyl-chi2k1-upper": ("lp-cyl", dict(f1="chi2", f1_dof=1, levels=("upper", "upper"), length_scales_px=((4.0, 7.0), (5.0, 3.0))), ("inplane", "axial")),
}


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def sections_of(model, planes, n: int, size: int, seed: int) -> CalibrationData:
    g = torch.Generator().manual_seed(seed)
    imgs, pl = [], []
    per = max(1, n // len(planes))
    for plane in planes:
        imgs += list(model.sample_sections((size, size), plane, batch=per, generator=g).numpy())
        pl += [plane] * per
    return CalibrationData.from_arrays(imgs, planes=pl)


def run_cal(data, **cfg) -> tuple[Calibrator, float, float]:
    cal = Calibrator(data, CalibrationConfig(**cfg))
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in cal.run():
        pass
    return cal, time.perf_counter() - w0, time.process_time() - c0


def length_keys(params: dict) -> list[str]:
    return [k for k in params if ".length_scale" in k or k.endswith("anisotropy_ratio")]


# ------------------------------------------------------------------------------------------------
def part_recovery(args) -> dict:
    """Recover known LP models from their own sections: every case x number of sections x data seed.

    The spread over data seeds is the sampling noise of a few sections (the fit itself is exact with
    the analytic estimator), so the table reports the worst and the RMS error over seeds.
    """
    out = {"load_start": load(), "cases": {}}
    size = 128 if args.quick else 256
    counts = [int(v) for v in args.sections.split(",")]
    for name, (variant, kw, planes) in CASES.items():
        if args.cases and name not in args.cases.split(","):
            continue
        truth = build_model(variant, volume_fractions=VF, **kw)
        want = truth.interpretable()
        keys = length_keys(want)
        structure = dict(f1=kw["f1"], f1_dof=kw["f1_dof"], levels=kw["levels"])
        for n in counts:
            errs, walls, cpus = {k: [] for k in keys}, [], []
            for seed in range(args.seeds):
                data = sections_of(truth, planes, n, size, seed=2024 + seed)
                cal, wall, cpu = run_cal(data, variant=variant, iterations=args.iterations, seed=0, device=args.device,
                                         threshold=args.threshold, estimator=args.estimator, weighting=args.weighting,
                                         **structure)
                got = cal.best_model.interpretable()
                for k in keys:
                    errs[k].append(got[k] / want[k] - 1)
                walls.append(wall)
                cpus.append(cpu)
            rec = {
                "variant": variant, "sections": f"{n} x {size}^2 ({', '.join(planes)})", "seeds": args.seeds,
                "true": {k: want[k] for k in keys},
                "rel_errors": errs,
                "max_abs_rel_error": {k: max(abs(v) for v in e) for k, e in errs.items()},
                "rms_rel_error": {k: float(np.sqrt(np.mean(np.square(e)))) for k, e in errs.items()},
                "wall_s_mean": float(np.mean(walls)), "cpu_s_mean": float(np.mean(cpus)), "iterations": args.iterations,
            }
            out["cases"][f"{name}/{n}"] = rec
            print(f"{name} n={n}: worst " + ", ".join(f"{k} {v:.1%}" for k, v in rec["max_abs_rel_error"].items())
                  + f" | {np.mean(walls):.1f} s/fit", flush=True)
    out["load_end"] = load()
    return out


def part_selection(args) -> dict:
    """Identify k and the level directions: staged search over the F1 field (13 candidates) with
    the ordering and family fixed to the truth."""
    out = {"load_start": load(), "cases": {}}
    size = 128 if args.quick else 256
    for name in args.select_cases.split(","):
        variant, kw, planes = CASES[name]
        truth = build_model(variant, volume_fractions=VF, **kw)
        data = sections_of(truth, planes, args.select_n, size, seed=77)
        t0 = time.perf_counter()
        res = select_model(data, variant, stages=("field",), iterations=args.select_iterations, seed=0,
                           device=args.device, n_sections=args.score_sections,
                           config=CalibrationConfig(threshold=args.threshold, estimator=args.estimator, weighting=args.weighting))
        best = res.best_candidate
        want_label = f"k={kw['f1_dof']}" if kw["f1"] == "chi2" else "gauss"
        out["cases"][name] = {
            "truth": {"f1": kw["f1"], "dof": kw["f1_dof"], "level1": kw["levels"][0]},
            "selected": {"f1": best.f1, "dof": best.f1_dof, "level1": best.level1},
            "identified": best.f1 == kw["f1"] and (best.f1 != "chi2" or (best.f1_dof == kw["f1_dof"] and best.level1 == kw["levels"][0])),
            "table": res.table(),
            "wall_s": time.perf_counter() - t0,
        }
        print(name, want_label, "->", best.label, flush=True)
        print(res.table(top=6), flush=True)
    out["load_end"] = load()
    return out


def _compare_3d(model, ref: np.ndarray, r: int = 30, seed: int = 0) -> dict:
    twin = model.generate(ref.shape, seed=seed, device="cpu")
    vf_ref = np.bincount(ref.ravel(), minlength=3) / ref.size
    vf_twin = np.bincount(twin.ravel(), minlength=3) / twin.size
    c_ref = coverage(ref, r, periodic=False, radial=False).directional
    c_twin = coverage(twin, r, periodic=True, radial=False).directional
    diff = np.abs(c_ref - c_twin)
    # the model's exact expected C_ij (no realisation noise; isotropic: the same along every axis)
    with torch.no_grad():
        exact = model.expected_coverage(r, "inplane").cpu().numpy()
    vf_model = np.array([model.volume_fractions[p] for p in ("pore", "active", "electrolyte")])
    # realisation noise of one twin of this size: volume fractions of 8 more seeds
    vfs = np.array([np.bincount(model.generate(ref.shape, seed=seed + 1 + k, device="cpu").ravel(), minlength=3)
                    for k in range(8)]) / ref.size
    return {
        "vf_twins_std": vfs.std(0, ddof=1).tolist(),
        "vf_twins_max_abs_diff": float(np.abs(vfs - vf_ref).max()),
        "vf_model": vf_model.tolist(), "vf_model_max_abs_diff": float(np.abs(vf_model - vf_ref).max()),
        "cij_exact_max_abs_diff_per_axis": [float(np.abs(c_ref[d] - exact).max()) for d in range(3)],
        "vf_ref": vf_ref.tolist(), "vf_twin": vf_twin.tolist(), "vf_max_abs_diff": float(np.abs(vf_ref - vf_twin).max()),
        "cij_max_abs_diff_per_axis": [float(diff[d].max()) for d in range(3)],
        "cij_max_abs_diff": float(diff.max()), "twin": twin,
    }


def _compare_2d(model, image: np.ndarray, r: int = 30, seed: int = 3) -> list[float]:
    """Max |C_ij(model sections) - C_ij(image)| for r <= ``r`` px along each image axis (16 simulated
    256^2 in-plane sections, periodic estimator; the image with minus-sampling)."""
    c_data = coverage(image, r, periodic=False, radial=False).directional
    g = torch.Generator().manual_seed(seed)
    sims = model.sample_sections((256, 256), "inplane", batch=16, generator=g).numpy()
    c_sim = coverage(sims, r, periodic=True, radial=False, batch=True).directional
    return [float(np.abs(c_data[d] - c_sim[d]).max()) for d in range(2)]


def part_real(args) -> dict:
    out = {"load_start": load()}
    nmc2d = DATA / "tldr_inpainter" / "nmc_3phase_2d_253.png"
    nmc3d = DATA / "tldr_inpainter" / "nmc_3phase_128.tif"
    sem = DATA / "superres" / "SEM_hr_input.tif"
    if not nmc2d.is_file():
        print(f"skip real data: {nmc2d} absent")
        return {"skipped": f"{nmc2d} absent"}
    data = CalibrationData.from_files([nmc2d], planes="inplane")
    ref = read_label_image(nmc3d).data
    results, panels, models = {}, [("real 2D section (nmc_3phase_2d_253.png)", data.sections[0].image)], {}
    # the floor: how far the 2D input itself is from the 3D reference (no model can do better from it)
    img = data.sections[0].image
    c2 = coverage(img, 30, periodic=False, radial=False).directional.mean(0)
    c3 = coverage(ref, 30, periodic=False, radial=False).directional
    vf2 = np.bincount(img.ravel(), minlength=3) / img.size
    vf3 = np.bincount(ref.ravel(), minlength=3) / ref.size
    out["floor"] = {"vf_max_abs_diff": float(np.abs(vf2 - vf3).max()),
                    "cij_max_abs_diff_per_axis": [float(np.abs(c3[d] - c2).max()) for d in range(3)]}
    print("floor (input section vs 3D reference):", out["floor"], flush=True)
    adv = dict(disc_width=args.disc_width, patch=64, n_critic=args.n_critic, disc_batch=8)
    runs = {
        "1 coverage": dict(algorithm="coverage", iterations=args.iterations),
        "2 adversarial": dict(algorithm="adversarial", iterations=args.adv_iterations, **adv),
        "3 combined": dict(algorithm="combined", iterations=args.adv_iterations, pre_iterations=args.iterations, **adv),
    }
    if args.algorithms:
        runs = {k: v for k, v in runs.items() if k[0] in args.algorithms}
    structure: dict = {}
    if args.select:
        # model selection on the 2D section only (staged: ordering, F1 type / k / level, family)
        t0 = time.perf_counter()
        sel = select_model(data, "lp-iso", iterations=args.select_iterations, seed=0, device=args.device,
                           n_sections=args.score_sections, config=CalibrationConfig(estimator=args.estimator, weighting=args.weighting))
        structure = sel.best_candidate.config_updates()
        out["selection"] = {"table": sel.table(), "best": sel.best["label"], "wall_s": time.perf_counter() - t0}
        print(sel.table(top=8), flush=True)
    for name, cfg in runs.items():
        cal, wall, cpu = run_cal(data, variant=args.variant, seed=0, device=args.device, threshold=args.threshold,
                                 estimator=args.estimator, weighting=args.weighting, **structure, **cfg)
        model = cal.best_model
        cmp3 = _compare_3d(model, ref)
        cmp3.pop("twin")
        results[name] = {**cmp3, "params": model.interpretable(), "coverage_rmse_2d": cal.provenance()["best_coverage_rmse"],
                         "cij_max_abs_diff_2d_per_axis": _compare_2d(model, data.sections[0].image),
                         "wall_s": wall, "cpu_s": cpu, "iterations": cal.total,
                         "settings": {k: v for k, v in cfg.items()}}
        g = torch.Generator().manual_seed(1)
        sim = model.sample_sections((253, 253), "inplane", generator=g)[0].numpy()
        panels.append((f"algorithm {name}: simulated section", sim))
        models[name] = model
        tag = ("_selected" if args.select else "") + ("" if args.variant == "lp-iso" else f"_{args.variant}")
        save_model(model, Path(args.out).with_name(f"nmc_model_alg{name[0]}{tag}.json"), provenance=cal.provenance())
        print(name, f"vf diff {cmp3['vf_max_abs_diff']:.4f} (sd over twins "
              + ", ".join(f"{v:.4f}" for v in cmp3["vf_twins_std"]) + ")", "2D fit: C_ij max diff per image axis "
              + ", ".join(f"{v:.4f}" for v in results[name]["cij_max_abs_diff_2d_per_axis"]),
              "| exact model vs 3D ref: C_ij " + ", ".join(f"{v:.4f}" for v in cmp3["cij_exact_max_abs_diff_per_axis"]),
              "| one 128^3 twin: C_ij max diff (r<=30) per axis "
              + ", ".join(f"{v:.4f}" for v in cmp3["cij_max_abs_diff_per_axis"]), f"{wall:.0f} s", flush=True)
        if name.startswith("1"):
            data_cov = {k: c for k, (c, _) in cal._targets_np.items()}
            plot_coverage_comparison(data_cov, model_coverage_curves(model, ["inplane"], cal.r_max), ROOT / "docs" / "calibration_nmc_coverage.png",
                                     title="nmc_3phase_2d_253.png vs algorithm-1 twin (in-plane sections)")
    if not args.algorithms:
        panels.append(("3D reference nmc_3phase_128.tif, z=64", ref[64]))
        plot_sections(panels, ROOT / "docs" / "calibration_nmc.png", ncols=min(len(panels), 5),
                      title="NMC: real 2D section vs sections of the calibrated twins (lp-iso) and the 3D reference")
    out["nmc"] = results
    if sem.is_file():
        # the SEM section: 2D only (no 3D reference), the same three algorithms and structure choice
        sd = CalibrationData.from_files([sem], planes="inplane")
        out["sem"] = {"vf_data": list(sd.volume_fractions.values())}
        for name, cfg in runs.items():
            cal, wall, cpu = run_cal(sd, variant="lp-iso", seed=0, device=args.device, threshold=args.threshold,
                                     estimator=args.estimator, weighting=args.weighting, **structure, **cfg)
            m = cal.best_model
            out["sem"][name] = {
                "params": m.interpretable(), "cij_max_abs_diff_2d_per_axis": _compare_2d(m, sd.sections[0].image),
                "coverage_rmse_2d": cal.provenance()["best_coverage_rmse"], "wall_s": wall, "cpu_s": cpu,
                "r_max_fit": min(30, cal.r_max),
            }
            print("SEM", name, out["sem"][name]["cij_max_abs_diff_2d_per_axis"], f"{wall:.0f} s", flush=True)
    out["load_end"] = load()
    return out


def part_figure(args) -> dict:
    """The real-vs-simulated figure from models saved by (possibly separate) ``--part real`` runs."""
    data = CalibrationData.from_files([DATA / "tldr_inpainter" / "nmc_3phase_2d_253.png"], planes="inplane")
    ref = read_label_image(DATA / "tldr_inpainter" / "nmc_3phase_128.tif").data
    # every panel 128 x 128 px so they are shown at the same scale as the 128^3 reference
    panels = [("real 2D section (nmc_3phase_2d_253.png), 128^2 crop", data.sections[0].image[:128, :128])]
    names = {"1": "1 coverage", "2": "2 adversarial", "3": "3 combined", "1_selected": "1 coverage, selected structure"}
    for k, name in names.items():
        path = Path(args.out).with_name(f"nmc_model_alg{k}.json")
        if path.is_file():
            g = torch.Generator().manual_seed(1)
            sim = load_model(path).sample_sections((256, 256), "inplane", generator=g)[0].numpy()[:128, :128]
            panels.append((f"algorithm {name}: model section", sim))
    panels.append(("3D reference nmc_3phase_128.tif, z=64", ref[64]))
    plot_sections(panels, ROOT / "docs" / "calibration_nmc.png", ncols=len(panels),
                  title="NMC: real 2D section, sections of the calibrated lp-iso twins, and a slice of the 3D reference")
    return {"panels": [p[0] for p in panels]}


def part_speed(args) -> dict:
    """Algorithm 1 (default settings, both estimators) and algorithm 3 (default settings: 200 coverage
    steps, then 300 combined steps x 5 critic steps, discriminator 64-128-256-512) on one 256^2 image."""
    out = {"load_start": load(), "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    truth = build_model("lp-iso", volume_fractions=VF, length_scales_px=(6.0, 3.0))
    data = sections_of(truth, ("inplane",), 1, 256, seed=5)
    runs = {
        "algorithm1_one_256": dict(algorithm="coverage", iterations=args.iterations),
        "algorithm1_sampled_one_256": dict(algorithm="coverage", iterations=args.iterations, estimator="sampled"),
        "algorithm3_one_256": dict(algorithm="combined"),
    }
    for key, cfg in runs.items():
        if args.speed_runs and key not in args.speed_runs.split(","):
            continue
        cal, wall, cpu = run_cal(data, variant="lp-iso", seed=0, device=args.device, **cfg)
        out[key] = {"iterations": cal.total, "stages": [f"{s.name}:{s.iterations}" for s in cal.stages],
                    "wall_s": wall, "cpu_s": cpu, "s_per_it": wall / cal.total, "settings": cfg}
        print(key, f"{wall:.1f} s wall, {cpu:.1f} s CPU, {cal.total} model updates ({', '.join(out[key]['stages'])})", flush=True)
    out["load_end"] = load()
    return out


def part_tables(args) -> dict:
    """Print the Markdown tables of docs/benchmarks.md from the results file (no computation)."""
    res = json.loads(Path(args.out).read_text())
    rec = res.get("recovery", {}).get("cases", {})
    if rec:
        print("| case | sections (256^2) | parameter | true (px) | worst error over seeds | RMS error | s per fit |")
        print("|---|---|---|---:|---:|---:|---:|")
        for key, r in rec.items():
            name, n = key.split("/")
            for k, worst in r["max_abs_rel_error"].items():
                flag = " **(> 5 %)**" if worst > 0.05 else ""
                print(f"| {name} | {n} | {k} | {r['true'][k]:.3f} | {worst:.1%}{flag} | {r['rms_rel_error'][k]:.1%} | {r['wall_s_mean']:.1f} |")
    sel = res.get("selection", {}).get("cases", {})
    for name, r in sel.items():
        t, s_ = r["truth"], r["selected"]
        print(f"\n**{name}**: truth {t}, selected {s_} -> {'identified' if r['identified'] else 'not identified'} "
              f"({r['wall_s']:.0f} s)\n```\n" + "\n".join(r["table"].splitlines()[:8]) + "\n```")
    real = res.get("real", {}).get("nmc", {})
    if real:
        print("\n| algorithm | vf max abs diff, one twin (sd over 8 twins) | 2D fit: C_ij max diff rows / cols | exact model vs 3D: C_ij axis 0 / 1 / 2 | one 128^3 twin vs 3D: C_ij axis 0 / 1 / 2 | f1 / f2 length (px) | wall s | CPU s |")
        print("|---|---|---|---|---|---|---:|---:|")
        for name, r in real.items():
            sd = max(r.get("vf_twins_std", [float("nan")]))
            print(f"| {name} | {r['vf_max_abs_diff']:.4f} ({sd:.4f}) | " + " / ".join(f"{v:.4f}" for v in r["cij_max_abs_diff_2d_per_axis"])
                  + " | " + " / ".join(f"{v:.4f}" for v in r["cij_exact_max_abs_diff_per_axis"])
                  + " | " + " / ".join(f"{v:.4f}" for v in r["cij_max_abs_diff_per_axis"])
                  + f" | {r['params'].get('f1.length_scale', float('nan')):.2f} / {r['params'].get('f2.length_scale', float('nan')):.2f}"
                  + f" | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    sem = res.get("real", {}).get("sem", {})
    for name, r in sem.items():
        if isinstance(r, dict):
            print(f"| SEM {name} | " + " / ".join(f"{v:.4f}" for v in r["cij_max_abs_diff_2d_per_axis"])
                  + f" | {r['params'].get('f1.length_scale', float('nan')):.2f} / {r['params'].get('f2.length_scale', float('nan')):.2f}"
                  + f" | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    sp = res.get("speed", {})
    for key in ("algorithm1_one_256", "algorithm1_sampled_one_256", "algorithm3_one_256"):
        if key in sp:
            r = sp[key]
            print(f"| {key} | {', '.join(r['stages'])} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    return {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=("recovery", "selection", "real", "speed", "figure", "tables", "all"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--adv-iterations", type=int, default=200)
    ap.add_argument("--select-iterations", type=int, default=300)
    ap.add_argument("--select-n", type=int, default=8, help="data sections per selection case")
    ap.add_argument("--score-sections", type=int, default=16, help="simulated sections per held-out score")
    ap.add_argument("--disc-width", type=int, default=16)
    ap.add_argument("--n-critic", type=int, default=5)
    ap.add_argument("--threshold", default="st", choices=("st", "soft"))
    ap.add_argument("--estimator", default="analytic", choices=("analytic", "sampled"),
                    help="model C_ij of algorithm 1: exact expectation (default) or simulated sections")
    ap.add_argument("--algorithms", default="", help="subset of 123 for --part real")
    ap.add_argument("--speed-runs", default="", help="subset of the speed runs (comma separated keys)")
    ap.add_argument("--variant", default="lp-iso", choices=("lp-iso", "hp-iso"), help="--part real: model variant")
    ap.add_argument("--select", action="store_true", help="--part real: select the structure first (model selection)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--select-cases", default="iso-chi2k3,cyl-chi2k1-upper")
    ap.add_argument("--cases", default="", help="subset of the recovery cases (comma separated)")
    ap.add_argument("--sections", default="4,8,16", help="numbers of 256^2 sections per recovery case")
    ap.add_argument("--seeds", type=int, default=5, help="data seeds per recovery case and section count")
    ap.add_argument("--weighting", default="variance", choices=("variance", "uniform"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calibration.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.is_file() else {}
    parts = ["speed", "recovery", "selection", "real"] if args.part == "all" else [args.part]
    if parts == ["tables"]:
        part_tables(args)
        return 0
    for part in parts:
        t0 = time.perf_counter()
        res = globals()[f"part_{part}"](args)
        res["part_wall_s"] = time.perf_counter() - t0
        res["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
        res["torch"] = torch.__version__
        results[part] = res
        out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
