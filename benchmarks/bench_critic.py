"""The critic as a selection statistic (issue 21, item 5): does it pick structures that transfer better in 3D?

For each case (one section of a shared measured volume), model selection runs once with the critic off,
on short settings in which every shortlisted candidate gets the same fit (``iterations ==
short_iterations``: no refine stage). For the best :data:`TOP` candidates by the 2D score, both critics
(``bce``: 2 AUC - 1; ``wgan-gp``: held-out Wasserstein estimate) and the 3D transport term (one 64^3 twin
against 64^3 crops of the measured volume) are recorded. With every candidate fitted alike and the same
seed, ``iter_select_model(critic_weight=W)`` ranks by ``score + W * critic``: the choice with the critic is
that ranking of the recorded rows (the critic only decides among near-tied candidates: its spread is
far below the 2D score's gaps to the 7th). The choices are then compared in 3D::

    python benchmarks/bench_critic.py select   [--cases ...]   # selection, critics, 3D term per candidate
    python benchmarks/bench_critic.py floor    [--cases ...]   # critic: input section vs the volume's own sections
    python benchmarks/bench_critic.py tau      [--cases ...]   # 128^3 twins of the choices: tau per phase
    python benchmarks/bench_critic.py table

Results are appended to ``benchmarks/results/critic_*.jsonl`` (re-runs skip what is there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model, memory_gib
from bench_fidelity import CASES as FIDELITY_CASES, _append, _jsonl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WEIGHT = 1.0  # the critic's weight in the "with" ranking (2 AUC - 1 is 0..1; the 2D score ~0.5-1.5)
SELECT = dict(iterations=80, short_iterations=80, n_fit=8, n_refine=2, families=True, seed=0, device="cpu",
              n_sections=16)
BCE_WEIGHTS = (1.0, 3.0)  # weights of the bce critic tried offline on the recorded rows
TOP = 6  # candidates (best by the 2D score) that get the critics and the 3D term
CROPS = 4  # 64^3 crops of the measured volume for the 3D term
TWIN = 128
TAU_RANKINGS = ("2D only", "+ 1 x bce", "+ 3 x bce", "+ 1 x wgan-gp")  # the choices whose 128^3 twins get tau
TWIN_SEED = 101
#: measured tau (mean over the 3 axes) of the whole volumes: TauFactor / AMG-CG, from the fidelity benchmark
MEASURED = {
    "nmc256": RESULTS / "nmc256_transport_measured.jsonl",
    "inpainter": RESULTS / "fidelity_reference_transport.jsonl",
}
PHASES = ("pore", "active", "electrolyte")
# case -> (volume, section index along its normal, normal axis)
CASES = {
    "nmc-z40": ("nmc256", 40, 0), "nmc-z128": ("nmc256", 128, 0), "nmc-z200": ("nmc256", 200, 0),
    "nmc-x100": ("nmc256", 100, 2),
    "inp-z32": ("inpainter", 32, 0), "inp-z96": ("inpainter", 96, 0), "inp-x64": ("inpainter", 64, 2),
}
VOXEL = {"nmc256": (0.39, "um"), "inpainter": (1.0, "px")}


def machine() -> str:
    import torch

    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB, torch {torch.__version__}, "
            f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


_VOLS: dict[str, np.ndarray] = {}


def volume(name: str) -> np.ndarray:
    if name not in _VOLS:  # read as bench_fidelity reads it
        _VOLS[name] = FIDELITY_CASES["nmc256-a" if name == "nmc256" else "inpainter"].full_volume()
    return _VOLS[name]


def section(case: str) -> tuple[np.ndarray, str]:
    """The input section and its plane (a z-section is in-plane; an x-section has axis 0 as rows: axial)."""
    vol_name, idx, normal = CASES[case]
    vol = volume(vol_name)
    img = np.ascontiguousarray(np.take(vol, idx, axis=normal))
    return img, ("inplane" if normal == 0 else "axial")


def data_of(case: str):
    from napari_assb_twin.calibrate.data import CalibrationData

    img, plane = section(case)
    voxel, unit = VOXEL[CASES[case][0]]
    return CalibrationData.from_arrays([img], planes=plane, pixel_size=voxel, unit=unit, sources=[case])


class MeasuredSections:
    """Sections of a measured volume offered like a model's (``sample_sections``): random slices normal to
    ``normal`` at least ``gap`` voxels from the input section, randomly cropped to the size asked for."""

    def __init__(self, vol: np.ndarray, normal: int, exclude: int, gap: int = 16) -> None:
        import torch

        self.vol, self.normal = vol, normal
        self.allowed = [i for i in range(vol.shape[normal]) if abs(i - exclude) >= gap]
        self.device = torch.device("cpu")

    def sample_sections(self, size, plane="inplane", *, batch=1, generator=None):
        import torch

        out = []
        for _ in range(batch):
            u = torch.randint(0, 2**31 - 1, (3,), generator=generator).tolist()
            sl = np.take(self.vol, self.allowed[u[0] % len(self.allowed)], axis=self.normal)
            y = u[1] % (sl.shape[0] - size[0] + 1)
            x = u[2] % (sl.shape[1] - size[1] + 1)
            out.append(torch.from_numpy(np.ascontiguousarray(sl[y:y + size[0], x:x + size[1]])))
        return torch.stack(out)


# ------------------------------------------------------------------------------------------------
_TARGETS: dict = {}


def volume_targets(vol_name: str):
    """3D statistics of 64^3 crops of the measured volume (what selection compares twins with)."""
    from napari_assb_twin.calibrate.volume_score import VolumeTargets
    from napari_assb_twin.events import run_job

    if vol_name not in _TARGETS:
        _TARGETS[vol_name] = run_job(VolumeTargets.iter_from_volumes([volume(vol_name)], max_crops=CROPS))
    return _TARGETS[vol_name]


def run_select(case: str) -> None:
    """Selection with the critic off; then, for the best ``TOP`` by the 2D score, both critics and the 3D
    transport term of one 64^3 twin against the measured volume's 64^3 crops."""
    from napari_assb_twin.calibrate.critic_score import data_critic_distance
    from napari_assb_twin.calibrate.selection import iter_select_model
    from napari_assb_twin.calibrate.volume_score import iter_volume_score
    from napari_assb_twin.events import run_job
    from napari_assb_twin.model import save_model

    log = RESULTS / "critic_selection.jsonl"
    if any(r["case"] == case for r in _jsonl(log)):
        return
    data = data_of(case)
    t0 = time.perf_counter()
    res = run_job(iter_select_model(data, "lp-iso", critic_weight=0.0, **SELECT))
    t_sel = time.perf_counter() - t0
    targets = volume_targets(CASES[case][0])
    rows = []
    mdir = RESULTS / "critic_models"
    mdir.mkdir(parents=True, exist_ok=True)
    for k, r in enumerate(res.rows[:TOP]):
        model = res.models[r["label"]]
        row = {key: r[key] for key in ("label", "score", "topology", "chord_w1", "lineal", "boundary", "coverage_rmse")}
        t1 = time.perf_counter()
        row["critic_bce"] = data_critic_distance(data, model, seed=SELECT["seed"])
        row["critic_s"] = time.perf_counter() - t1
        row["critic_wgan"] = data_critic_distance(data, model, seed=SELECT["seed"], kind="wgan-gp")
        t1 = time.perf_counter()
        v3 = run_job(iter_volume_score(targets, model, n_twins=1))
        row["transport3d"] = v3["transport"]
        row["log_tau64"] = np.asarray(v3["log_tau"]).mean(1).tolist()
        row["volume_s"] = time.perf_counter() - t1
        f = mdir / f"{case}__{k}.json"
        save_model(model, f)
        row["file"] = str(f.relative_to(ROOT))
        rows.append(row)
        print(f"{case} {k}: score {row['score']:.3f} bce {row['critic_bce']:.3f} wgan {row['critic_wgan']:.3f} "
              f"3D {row['transport3d']:.3f} ({row['critic_s']:.0f} s critic) {row['label']}", flush=True)
    rec = {"case": case, "settings": SELECT, "rows": rows, "selection_s": t_sel,
           "target_log_tau64": targets.log_tau.mean(1).tolist(), "machine": machine()}
    _append(log, rec)


def run_floor(case: str, seeds: int = 1) -> None:
    """Critic distance between the input section and other sections of the same measured volume."""
    from napari_assb_twin.calibrate.critic_score import critic_distance

    log = RESULTS / "critic_floor.jsonl"
    if any(r["case"] == case for r in _jsonl(log)):
        return
    vol_name, idx, normal = CASES[case]
    img, plane = section(case)
    t0 = time.perf_counter()
    sampler = MeasuredSections(volume(vol_name), normal, idx)
    d = critic_distance([img], sampler, plane, seed=SELECT["seed"])
    w = critic_distance([img], sampler, plane, seed=SELECT["seed"], kind="wgan-gp")
    rec = {"case": case, "floor_bce": d, "floor_wgan": w, "seconds": time.perf_counter() - t0, "machine": machine()}
    sel = next((r for r in _jsonl(RESULTS / "critic_selection.jsonl") if r["case"] == case), None)
    if sel is not None and seeds > 1:  # the critic's own noise: the 2D favourite scored with other seeds
        from napari_assb_twin.calibrate.critic_score import data_critic_distance
        from napari_assb_twin.model import load_model

        model, data = load_model(ROOT / sel["rows"][0]["file"]), data_of(case)
        rec["seed_bce"] = [sel["rows"][0]["critic_bce"]] + [data_critic_distance(data, model, seed=k)
                                                            for k in range(1, seeds)]
        rec["seed_wgan"] = [sel["rows"][0]["critic_wgan"]] + [data_critic_distance(data, model, seed=k, kind="wgan-gp")
                                                              for k in range(1, seeds)]
    _append(log, rec)
    print(f"{case}: critic floor {d:.3f} (bce), {w:.3f} (wgan-gp); seeds {rec.get('seed_bce')} {rec.get('seed_wgan')}",
          flush=True)


def choices(rec: dict) -> dict[str, dict]:
    """The row each ranking picks: the 2D score alone, and with each critic at weight ``WEIGHT``."""
    rows = rec["rows"]
    out = {"2D only": min(rows, key=lambda r: r["score"])}
    for w in BCE_WEIGHTS:
        out[f"+ {w:g} x bce"] = min(rows, key=lambda r: r["score"] + w * r["critic_bce"])
    out[f"+ {WEIGHT:g} x wgan-gp"] = min(rows, key=lambda r: r["score"] + WEIGHT * r["critic_wgan"])
    return out


def run_tau(case: str) -> None:
    """Tau per phase along axis 0 of one 128^3 twin of each chosen model (AMG-CG)."""
    from napari_assb_twin.model import load_model
    from napari_assb_twin.stats.transport import tortuosity_factor

    log = RESULTS / "critic_tau.jsonl"
    sel = next((r for r in _jsonl(RESULTS / "critic_selection.jsonl") if r["case"] == case), None)
    if sel is None:
        return
    have = {(r["file"], r["phase"]) for r in _jsonl(log)}
    picks = [r for name, r in choices(sel).items() if name in TAU_RANKINGS]
    for row in {r["file"]: r for r in picks}.values():
        f = row["file"]
        if all((f, ph) in have for ph in PHASES):
            continue
        twin = np.asarray(load_model(ROOT / f).generate((TWIN,) * 3, seed=TWIN_SEED, device="cpu"))
        for p, ph in enumerate(PHASES):
            if (f, ph) in have:
                continue
            t0 = time.perf_counter()
            res = tortuosity_factor(twin == p, 0, "cpu", "amg", rtol=1e-4)
            _append(log, {"case": case, "file": f, "label": row["label"], "phase": ph, "tau": res.tau,
                          "seconds": time.perf_counter() - t0, "machine": machine()})
            print(f"{case} {Path(f).stem} {ph}: tau {res.tau:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)


def measured_tau(vol_name: str) -> dict[str, float]:
    recs = _jsonl(MEASURED[vol_name])
    if vol_name == "inpainter":
        recs = [r for r in recs if r.get("case") == "inpainter"]
    return {ph: float(np.mean([r["tau"] for r in recs if r["phase"] == ph])) for ph in PHASES}


def _short(label: str) -> str:
    """A structure's label without the parts every candidate shares."""
    return label.replace("(F1)", "").replace("(F2)", "").replace("; pore=rest", "").replace("chi2(k=", "chi2(")


def table() -> None:
    from scipy.stats import spearmanr

    sel = _jsonl(RESULTS / "critic_selection.jsonl")
    floor = {r["case"]: r for r in _jsonl(RESULTS / "critic_floor.jsonl")}
    taus = _jsonl(RESULTS / "critic_tau.jsonl")
    print("Per case: the structure each ranking picks, its 3D transport term (64^3 twin vs 64^3 crops of the "
          "measured volume; mean over phases of |log tau ratio|) and the 128^3 twin's tau (axis 0) per phase.\n")
    print("| case | ranking | structure | critic bce / wgan-gp | 3D term | tau 64^3 pore / NMC / CBD | "
          "tau 128^3 pore / NMC / CBD (vs measured) |")
    print("|---|---|---|---|---:|---|---|")
    for rec in sel:
        case = rec["case"]
        meas = measured_tau(CASES[case][0])
        for name, r in choices(rec).items():
            t = {x["phase"]: x["tau"] for x in taus if x["file"] == r["file"]}
            t128 = " / ".join(f"{t[ph]:.2f} ({100 * (t[ph] / meas[ph] - 1):+.0f} %)" for ph in PHASES) \
                if len(t) == 3 else "not run"
            t64 = " / ".join(f"{math.exp(v):.2f}" for v in r["log_tau64"])
            print(f"| {case} | {name} | {_short(r['label'])} | {r['critic_bce']:.3f} / {r['critic_wgan']:.3f} | "
                  f"{r['transport3d']:.3f} | {t64} | {t128} |")
        tgt = " / ".join(f"{math.exp(v):.2f}" for v in rec["target_log_tau64"])
        fl = floor.get(case, {})
        print(f"| {case} | measured | (64^3 crops; whole volume, mean of 3 axes) | floor {fl.get('floor_bce', math.nan):.3f}"
              f" / {fl.get('floor_wgan', math.nan):.3f} | 0 | {tgt} | {' / '.join(f'{meas[ph]:.2f}' for ph in PHASES)} |")
        if "seed_bce" in fl:
            sb, sw = fl["seed_bce"], fl["seed_wgan"]
            print(f"| {case} | critic seeds 0..{len(sb) - 1}, 2D favourite | | "
                  f"{' '.join(f'{x:.2f}' for x in sb)} / {' '.join(f'{x:.2f}' for x in sw)} "
                  f"(SD {np.std(sb, ddof=1):.2f} / {np.std(sw, ddof=1):.2f}) | | | |")
    print("\nRank agreement over the candidates (best 6 by the 2D score) with the 3D transport term (Spearman):\n")
    print(f"| case | 2D score | critic bce | critic wgan-gp | 2D + {BCE_WEIGHTS[-1]:g} x bce | 2D + wgan-gp | "
          "critic bce min..max | wgan-gp min..max |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for rec in sel:
        rows = rec["rows"]
        t3 = [r["transport3d"] for r in rows]
        cols = [[r["score"] for r in rows], [r["critic_bce"] for r in rows], [r["critic_wgan"] for r in rows],
                [r["score"] + BCE_WEIGHTS[-1] * r["critic_bce"] for r in rows],
                [r["score"] + WEIGHT * r["critic_wgan"] for r in rows]]
        rho = [spearmanr(c, t3)[0] for c in cols]
        cb, cw = cols[1], cols[2]
        print(f"| {rec['case']} | " + " | ".join(f"{x:+.2f}" for x in rho)
              + f" | {min(cb):.3f}..{max(cb):.3f} | {min(cw):.3f}..{max(cw):.3f} |")
    print("\nEvery candidate:\n")
    print("| case | structure | 2D score | critic bce | critic wgan-gp | 3D term |")
    print("|---|---|---:|---:|---:|---:|")
    for rec in sel:
        for r in rec["rows"]:
            print(f"| {rec['case']} | {_short(r['label'])} | {r['score']:.3f} | {r['critic_bce']:.3f} | "
                  f"{r['critic_wgan']:.3f} | {r['transport3d']:.3f} |")
    print("\n" + "; ".join(sorted({r["machine"] for r in sel})))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("select", "floor", "tau", "table"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seeds", type=int, default=1, help="floor: also score the 2D favourite with this many critic seeds")
    args = ap.parse_args(argv)
    if args.part == "table":
        return table()
    for case in args.cases:
        {"select": run_select, "floor": lambda c: run_floor(c, args.seeds), "tau": run_tau}[args.part](case)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
