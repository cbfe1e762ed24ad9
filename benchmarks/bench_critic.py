"""The critic as a selection statistic (issue 21, item 5): does it pick structures that transfer better in 3D?

For each case (one section of a shared measured volume), model selection runs once with the critic term
(``iter_select_model(critic_weight=W)``) on short settings in which every shortlisted candidate gets the
same fit (``iterations == short_iterations``: no refine stage), so the ranking *without* the critic is
that run's ranking by ``score - W * critic``, exactly what a run with the term off returns (same seed,
same fits). The chosen structures with and without the critic are then compared in 3D::

    python benchmarks/bench_critic.py select   [--cases ...]   # selection with the critic recorded
    python benchmarks/bench_critic.py floor    [--cases ...]   # critic: input section vs the volume's own sections
    python benchmarks/bench_critic.py tau      [--cases ...]   # 128^3 twins of the two choices: tau per phase
    python benchmarks/bench_critic.py volume3d [--cases ...]   # every candidate's 3D transport term (64^3)
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

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASSB_TWIN_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
WEIGHT = 1.0  # the critic's weight in the "with" ranking (2 AUC - 1 is 0..1; the 2D score ~0.5-1.5)
SELECT = dict(iterations=80, short_iterations=80, n_fit=8, n_refine=2, families=True, seed=0, device="cpu",
              n_sections=16)
TWIN = 128
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


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _append(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


_VOLS: dict[str, np.ndarray] = {}


def volume(name: str) -> np.ndarray:
    from napari_assb_twin.io import read_label_image

    if name not in _VOLS:
        if name == "nmc256":
            _VOLS[name] = read_label_image(DATA / "tldr_taufactor" / "electrode_nmc_3phase_256.tiff",
                                           mapping={0: 0, 85: 1, 170: 2}).data
        else:
            _VOLS[name] = read_label_image(DATA / "tldr_inpainter" / "nmc_3phase_128.tif",
                                           mapping={0: 0, 1: 1, 2: 2}).data
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
def run_select(case: str) -> None:
    from napari_assb_twin.calibrate.selection import iter_select_model
    from napari_assb_twin.events import run_job

    log = RESULTS / "critic_selection.jsonl"
    if any(r["case"] == case for r in _jsonl(log)):
        return
    data = data_of(case)
    t0 = time.perf_counter()
    res = run_job(iter_select_model(data, "lp-iso", critic_weight=WEIGHT, **SELECT))
    wall = time.perf_counter() - t0
    rows = [{k: r[k] for k in ("label", "score", "critic", "topology", "chord_w1", "lineal", "boundary",
                               "coverage_rmse", "seconds")} for r in res.rows]
    for r in rows:
        r["score_without"] = r["score"] - WEIGHT * r["critic"]
    with_ = min(rows, key=lambda r: r["score"])["label"]
    without = min(rows, key=lambda r: r["score_without"])["label"]
    from napari_assb_twin.model import save_model

    mdir = RESULTS / "critic_models"
    mdir.mkdir(parents=True, exist_ok=True)
    files = {}
    for lab in {with_, without}:
        p = mdir / f"{case}__{'with' if lab == with_ else 'without'}.json"
        if lab == with_ and lab == without:
            p = mdir / f"{case}__both.json"
        save_model(res.models[lab], p)
        files[lab] = str(p.relative_to(ROOT))
    rec = {"case": case, "weight": WEIGHT, "settings": SELECT, "rows": rows, "with": with_, "without": without,
           "files": files, "wall_s": wall, "machine": machine()}
    _append(log, rec)
    print(f"{case}: {wall:.0f} s; without: {without}\n  with critic: {with_}", flush=True)


def run_floor(case: str) -> None:
    """Critic distance between the input section and other sections of the same measured volume."""
    from napari_assb_twin.calibrate.critic_score import critic_distance

    log = RESULTS / "critic_floor.jsonl"
    if any(r["case"] == case for r in _jsonl(log)):
        return
    vol_name, idx, normal = CASES[case]
    img, plane = section(case)
    t0 = time.perf_counter()
    d = critic_distance([img], MeasuredSections(volume(vol_name), normal, idx), plane, seed=SELECT["seed"])
    _append(log, {"case": case, "floor": d, "seconds": time.perf_counter() - t0, "machine": machine()})
    print(f"{case}: critic floor {d:.3f}", flush=True)


def run_tau(case: str) -> None:
    """Tau per phase along axis 0 of one 128^3 twin of each chosen model (AMG-CG)."""
    from napari_assb_twin.model import load_model
    from napari_assb_twin.stats.transport import tortuosity_factor

    log = RESULTS / "critic_tau.jsonl"
    sel = next((r for r in _jsonl(log.with_name("critic_selection.jsonl")) if r["case"] == case), None)
    if sel is None:
        return
    have = {(r["case"], r["file"], r["phase"]) for r in _jsonl(log)}
    for lab, f in sel["files"].items():
        if all((case, f, ph) in have for ph in PHASES):
            continue
        model = load_model(ROOT / f)
        twin = np.asarray(model.generate((TWIN,) * 3, seed=TWIN_SEED, device="cpu"))
        for p, ph in enumerate(PHASES):
            if (case, f, ph) in have:
                continue
            t0 = time.perf_counter()
            res = tortuosity_factor(twin == p, 0, "cpu", "amg", rtol=1e-4)
            _append(log, {"case": case, "file": f, "label": lab, "phase": ph, "tau": res.tau,
                          "seconds": time.perf_counter() - t0, "machine": machine()})
            print(f"{case} {Path(f).stem} {ph}: tau {res.tau:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)


def run_volume3d(case: str, max_rows: int) -> None:
    """The 3D transport term (64^3, one twin) of every candidate of the case's selection, against crops of
    the measured volume (what selection adds when a volume is given): critic vs 3D, 2D score vs 3D."""
    from napari_assb_twin.calibrate.volume_score import VolumeTargets, iter_volume_score
    from napari_assb_twin.events import run_job

    log = RESULTS / "critic_volume3d.jsonl"
    sel = next((r for r in _jsonl(RESULTS / "critic_selection.jsonl") if r["case"] == case), None)
    if sel is None:
        return
    vol_name = CASES[case][0]
    targets = run_job(VolumeTargets.iter_from_volumes([volume(vol_name)], max_crops=4))
    have = {(r["case"], r["label"]) for r in _jsonl(log)}
    # refit each candidate as selection did (explicit list, same settings): its model is not stored
    from napari_assb_twin.calibrate.selection import iter_select_model, default_candidates

    labels = [r["label"] for r in sel["rows"]][:max_rows]
    pool = {c.label: c for s in ("all",) for c in default_candidates(s)}
    from dataclasses import replace

    from napari_assb_twin.calibrate.selection import FAMILY_CHOICES
    cands = []
    for lab in labels:
        c = pool.get(lab)
        if c is None:
            for base in pool.values():
                for f in FAMILY_CHOICES:
                    if replace(base, family=f).label == lab:
                        c = replace(base, family=f)
                        break
                if c is not None:
                    break
        if c is not None and (case, lab) not in have:
            cands.append(c)
    if not cands:
        return
    data = data_of(case)
    kw = {k: v for k, v in SELECT.items() if k not in ("short_iterations", "n_fit", "n_refine", "families")}
    res = run_job(iter_select_model(data, "lp-iso", candidates=cands, critic_weight=0.0, **kw))
    for r in res.rows:
        t0 = time.perf_counter()
        v3 = run_job(iter_volume_score(targets, res.models[r["label"]], n_twins=1))
        _append(log, {"case": case, "label": r["label"], "transport": v3["transport"],
                      "log_tau": np.asarray(v3["log_tau"]).mean(1).tolist(),
                      "target_log_tau": targets.log_tau.mean(1).tolist(), "seconds": time.perf_counter() - t0,
                      "machine": machine()})
        print(f"{case} {r['label']}: 3D transport term {v3['transport']:.3f}", flush=True)


def measured_tau(vol_name: str) -> dict[str, float]:
    recs = _jsonl(MEASURED[vol_name])
    if vol_name == "inpainter":
        recs = [r for r in recs if r.get("case") == "inpainter"]
    return {ph: float(np.mean([r["tau"] for r in recs if r["phase"] == ph])) for ph in PHASES}


def table() -> None:
    sel = _jsonl(RESULTS / "critic_selection.jsonl")
    floor = {r["case"]: r["floor"] for r in _jsonl(RESULTS / "critic_floor.jsonl")}
    taus = _jsonl(RESULTS / "critic_tau.jsonl")
    v3 = {(r["case"], r["label"]): r["transport"] for r in _jsonl(RESULTS / "critic_volume3d.jsonl")}
    print("| case | critic floor (input vs volume's own sections) | critic of candidates (min..max) | chosen without critic "
          "| chosen with critic | tau pore / NMC / CBD without | with | measured |")
    print("|---|---:|---|---|---|---|---|---|")
    for r in sel:
        case = r["case"]
        meas = measured_tau(CASES[case][0])
        crit = [x["critic"] for x in r["rows"]]

        def tau_of(lab):
            f = r["files"][lab]
            t = {x["phase"]: x["tau"] for x in taus if x["case"] == case and x["file"] == f}
            if len(t) < 3:
                return "not run"
            return " / ".join(f"{t[ph]:.2f} ({100 * (t[ph] / meas[ph] - 1):+.0f} %)" for ph in PHASES)

        same = r["with"] == r["without"]
        print(f"| {case} | {floor.get(case, math.nan):.3f} | {min(crit):.3f}..{max(crit):.3f} | {r['without']} | "
              f"{'same' if same else r['with']} | {tau_of(r['without'])} | {'same' if same else tau_of(r['with'])} | "
              f"{' / '.join(f'{meas[ph]:.2f}' for ph in PHASES)} |")
    print()
    print("| case | candidate | 2D score (no critic) | critic | 3D transport term (64^3) |")
    print("|---|---|---:|---:|---:|")
    for r in sel:
        for x in sorted(r["rows"], key=lambda x: x["score_without"]):
            print(f"| {r['case']} | {x['label']} | {x['score_without']:.3f} | {x['critic']:.3f} | "
                  f"{v3.get((r['case'], x['label']), math.nan):.3f} |")
    # rank agreement with the 3D term, per case
    from scipy.stats import spearmanr

    print()
    print("| case | n | Spearman(2D score, 3D term) | Spearman(critic, 3D term) | Spearman(2D + critic, 3D term) |")
    print("|---|---:|---:|---:|---:|")
    for r in sel:
        rows = [x for x in r["rows"] if (r["case"], x["label"]) in v3]
        if len(rows) < 3:
            continue
        t3 = [v3[(r["case"], x["label"])] for x in rows]
        s = [spearmanr([x[k] for x in rows], t3)[0] for k in ("score_without", "critic", "score")]
        print(f"| {r['case']} | {len(rows)} | {s[0]:+.2f} | {s[1]:+.2f} | {s[2]:+.2f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("select", "floor", "tau", "volume3d", "table"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--max-rows", type=int, default=20)
    args = ap.parse_args(argv)
    if args.part == "table":
        return table()
    for case in args.cases:
        {"select": run_select, "floor": run_floor, "tau": run_tau,
         "volume3d": lambda c: run_volume3d(c, args.max_rows)}[args.part](case)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
