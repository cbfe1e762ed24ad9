"""Implementation of ``assb-twin calibrate`` and of the calibrate-and-compare ``assb-twin demo``.

Kept out of ``cli.py`` so the command line stays a thin parser; everything here is plain Python
that a batch job can call too (:func:`calibrate_files`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path


from .data import CalibrationData
from .engine import CalibrationConfig, Calibrator, Progress

__all__ = ["calibrate_files", "outputs_for", "run_demo", "write_outputs"]


def outputs_for(out: str | Path) -> dict[str, Path]:
    """The files written beside the model file: ``<stem>.log.csv`` and ``<stem>.coverage.png``."""
    out = Path(out)
    stem = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    return {
        "model": out,
        "log": out.with_name(f"{stem}.log.csv"),
        "figure": out.with_name(f"{stem}.coverage.png"),
        "checkpoint": out.with_name(f"{stem}.ckpt"),
    }


def write_outputs(cal: Calibrator, out: str | Path, extra_provenance: dict | None = None, figure: bool = True) -> dict[str, Path]:
    """Write the best model (with provenance), the training log and the coverage figure."""
    from ..model import save_model
    from .report import model_coverage_curves, plot_coverage_comparison, write_log_csv

    paths = outputs_for(out)
    model = cal.best_model
    prov = cal.provenance()
    prov.update(extra_provenance or {})
    save_model(model, paths["model"], provenance=prov)
    write_log_csv(cal.history, paths["log"])
    if figure:
        data_cov = {k: c for k, (c, _) in cal._targets_np.items()}
        model_cov = model_coverage_curves(model, cal.data.planes, cal.r_max, size=max(128, cal.section_size), batch=16)
        rmse = prov.get("best_coverage_rmse")
        plot_coverage_comparison(
            data_cov, model_cov, paths["figure"], cal.data.pixel_size, cal.data.unit,
            title=f"{cal.config.variant} / {cal.config.algorithm}: data vs calibrated model"
            + (f" (C_ij RMS deviation {rmse:.4f})" if rmse is not None else ""),
        )
    return paths


def calibrate_files(
    images: Sequence[str],
    out: str | Path,
    planes: Sequence[str] | None = None,
    labels: str | None = None,
    voxel_size: float | None = None,
    unit: str | None = None,
    model: str = "lp-iso",
    config: CalibrationConfig | None = None,
    select_iterations: int = 300,
    resume: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Calibrate on image files and write the outputs (what ``assb-twin calibrate`` does).

    ``model="auto"`` runs :func:`~napari_assb_twin.calibrate.selection.select_model` first and
    calibrates the winning structure (``lp-cyl`` when axial sections are given, else ``lp-iso``).
    A KeyboardInterrupt (Ctrl-C) writes the best model so far before it propagates.
    """
    planes = list(planes or ["inplane"])
    if len(planes) not in (1, len(images)):
        raise ValueError(f"give one --plane for all images or one per image ({len(images)}), got {len(planes)}")
    data = CalibrationData.from_files(images, planes=planes, mapping=labels, voxel_size=voxel_size, unit=unit)
    cfg = config or CalibrationConfig()
    extra: dict = {}
    if model == "auto":
        from .selection import select_model

        variant = "lp-cyl" if "axial" in data.planes else "lp-iso"
        echo(f"model selection ({variant}, coverage fits of {select_iterations} steps per candidate) ...")
        bar = _bar(None, "selection") if progress else None

        def cb(done: int, total: int, row: dict) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)
                bar.set_postfix_str(f"{row['score']:.3f} {row['label'][:40]}", refresh=False)

        sel = select_model(data, variant, iterations=select_iterations, seed=cfg.seed, device=cfg.device,
                           config=replace(cfg, variant=variant), callback=cb)
        if bar is not None:
            bar.close()
        echo(sel.table(top=10))
        cfg = sel.best_config(cfg, variant=variant)
        extra["model_selection"] = [
            {"rank": k + 1, "structure": r["label"], "score": r["score"], "chord_w1": r["chord_w1"],
             "boundary": r["boundary"], "coverage_rmse": r["coverage_rmse"]}
            for k, r in enumerate(sel.rows[:10])
        ]
    elif model not in ("lp-iso", "lp-cyl", "hp-iso", "hp-cyl"):
        raise ValueError(f"--model must be lp-iso, lp-cyl, hp-iso, hp-cyl or auto, got {model!r}")
    else:
        cfg = replace(cfg, variant=model)
    paths = outputs_for(out)
    if resume:
        cal = Calibrator.from_checkpoint(resume, data, device=cfg.device)
    else:
        cal = Calibrator(data, cfg)
    echo(
        f"calibrating {cal.config.variant} with {cal.config.algorithm} on {len(data)} section(s) "
        f"({', '.join(data.planes)}), r_max {cal.r_max} px, device {cal.device}, "
        f"volume fractions " + ", ".join(f"{k} {v:.4f}" for k, v in data.volume_fractions.items())
    )
    bar = _bar(cal.total, "calibrate") if progress else None
    interrupted = False
    try:
        for rec in cal.run():
            if bar is not None:
                bar.update(rec.iteration - bar.n)
                bar.set_postfix_str(_postfix(rec), refresh=False)  # tqdm redraws at most every 0.1 s
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if bar is not None:
            bar.close()
        if cal.history or interrupted:
            extra["interrupted"] = interrupted
            written = write_outputs(cal, paths["model"], extra, figure=not interrupted)
            if interrupted:
                cal.save_checkpoint(paths["checkpoint"])
                echo(f"interrupted: best model so far written to {written['model']} "
                     f"(resume with --resume {paths['checkpoint']})")
    best = cal.best_model
    echo("calibrated parameters: " + ", ".join(f"{k} {v:.4g}" for k, v in best.interpretable().items() if "fraction" not in k))
    return paths


def _bar(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, leave=True)


def _postfix(rec: Progress) -> str:
    parts = []
    for key in ("coverage", "generator", "wasserstein"):
        if key in rec.losses:
            parts.append(f"{key[:4]} {rec.losses[key]:.3g}")
    if math.isfinite(rec.best_loss):
        parts.append(f"best {rec.best_loss:.3g}")
    parts.append(rec.phase)
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------------
def run_demo(out: str | Path, size: int = 128, seed: int = 0, iterations: int = 150, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Calibrate on a synthetic 2D section of the reference model, generate a 3D twin, compare.

    Writes ``section.tif`` (the "measured" input), ``model.json`` (calibrated, with provenance),
    ``model.log.csv``, ``model.coverage.png``, ``twin.tif`` (3D twin, ``size``^3) and
    ``comparison.png`` (input section, twin sections, parameters true vs calibrated).
    """
    import torch

    from ..io import write_label_tiff
    from ..model import DEFAULT_MODEL, load_reference_model
    from .report import plot_sections

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = load_reference_model(DEFAULT_MODEL)
    g = torch.Generator().manual_seed(seed + 1000)
    section = truth.sample_sections((256, 256), "inplane", generator=g)[0].cpu().numpy()
    write_label_tiff(out / "section.tif", section, voxel_size=truth.voxel_size, unit=truth.unit)
    echo(f"1/3 synthetic 'measured' section 256x256 from the reference model {DEFAULT_MODEL!r} -> {out / 'section.tif'}")
    data = CalibrationData.from_arrays([section], planes="inplane", pixel_size=truth.voxel_size, unit=truth.unit, sources=["section.tif"])
    cfg = CalibrationConfig(variant="lp-iso", algorithm="coverage", iterations=iterations, seed=seed, device="cpu")
    cal = Calibrator(data, cfg)
    for _ in cal.run():
        pass
    paths = write_outputs(cal, out / "model.json", {"note": "assb-twin demo: calibrated on a synthetic section"})
    model = cal.best_model
    echo(f"2/3 calibrated lp-iso in {cal.history[-1].elapsed_s:.0f} s -> {paths['model']}")
    vol = model.generate((size,) * 3, seed=seed)
    write_label_tiff(out / "twin.tif", vol, voxel_size=model.voxel_size, unit=model.unit)
    tp, cp = truth.interpretable(), model.interpretable()
    rows = [f"{k}: true {tp[k]:.3g}, calibrated {cp[k]:.3g}" for k in ("f1.length_scale", "f2.length_scale") if k in tp and k in cp]
    plot_sections(
        [("input section (reference model)", section[:size, :size]), ("twin: in-plane z=0", vol[0]),
         ("twin: axial y=0", vol[:, 0, :]), ("reference 3D (same size)", truth.generate((size,) * 3, seed=seed + 7)[0])],
        out / "comparison.png", title="; ".join(rows),
    )
    echo(f"3/3 3D twin {size}^3 -> {out / 'twin.tif'}; figures {paths['figure']}, {out / 'comparison.png'}")
    for r in rows:
        echo("    " + r)
    echo(f"demo finished in {time.perf_counter() - t0:.0f} s")
    paths.update({"twin": out / "twin.tif", "section": out / "section.tif", "comparison": out / "comparison.png"})
    return paths
