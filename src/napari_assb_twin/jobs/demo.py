"""Use case: the self-contained demo -- calibrate on a synthetic section, generate a twin, compare.

Writes ``section.tif`` (the "measured" input), ``model.json`` (calibrated, with provenance),
``model.log.csv``, ``model.coverage.png``, ``twin.tif`` (3D twin, ``size``^3) and
``comparison.png``. Like every command it refuses to replace existing outputs without ``force``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path

from .events import JobProgress
from .inputs import check_output_file, check_seed

__all__ = ["DEMO_FILES", "demo"]

#: Files the demo writes into its folder.
DEMO_FILES: tuple[str, ...] = (
    "section.tif", "model.json", "model.log.csv", "model.coverage.png", "twin.tif", "comparison.png",
)
#: Side of the synthetic "measured" section.
_SECTION = 256


def demo(
    out: str | os.PathLike, size: int = 128, seed: int = 0, iterations: int = 150, force: bool = False
) -> Generator[JobProgress, None, dict[str, Path]]:
    """Run the demo into folder ``out``; yields progress, returns the written paths."""
    import torch

    from ..calibrate import CalibrationConfig, CalibrationData
    from ..calibrate.command import write_outputs
    from ..calibrate.report import plot_sections
    from ..io import write_label_tiff
    from ..model import DEFAULT_MODEL, load_reference_model
    from .calibrate import calibrate

    seed = check_seed(seed)
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; the demo writes into a folder: choose another --out")
    for name in DEMO_FILES:  # the overwrite rule of every other command, before any work
        check_output_file(out / name, force)
    truth = load_reference_model(DEFAULT_MODEL)
    g = torch.Generator().manual_seed(seed + 1000)
    section = truth.sample_sections((_SECTION, _SECTION), "inplane", generator=g)[0].cpu().numpy()
    write_label_tiff(out / "section.tif", section, voxel_size=truth.voxel_size, unit=truth.unit)
    yield JobProgress("section", 1, 3, f"1/3 synthetic 'measured' section {_SECTION}x{_SECTION} from the reference "
                                       f"model {DEFAULT_MODEL!r} -> {out / 'section.tif'}")
    data = CalibrationData.from_arrays([section], planes="inplane", pixel_size=truth.voxel_size, unit=truth.unit,
                                       sources=["section.tif"])
    cfg = CalibrationConfig(variant="lp-iso", algorithm="coverage", iterations=iterations, seed=seed, device="cpu")
    run = yield from calibrate(data, cfg)
    cal = run.calibrator
    paths = write_outputs(cal, out / "model.json", {"note": "assb-twin demo: calibrated on a synthetic section"})
    model = cal.best_model
    yield JobProgress("calibrated", 2, 3, f"2/3 calibrated lp-iso in {cal.history[-1].elapsed_s:.0f} s -> {paths['model']}")
    vol = model.generate((size,) * 3, seed=seed)
    write_label_tiff(out / "twin.tif", vol, voxel_size=model.voxel_size, unit=model.unit)
    tp, cp = truth.interpretable(), model.interpretable()
    rows = [f"{k}: true {tp[k]:.3g}, calibrated {cp[k]:.3g}" for k in ("f1.length_scale", "f2.length_scale")
            if k in tp and k in cp]
    plot_sections(
        [("input section (reference model)", section[:size, :size]), ("twin: in-plane z=0", vol[0]),
         ("twin: axial y=0", vol[:, 0, :]), ("reference 3D (same size)", truth.generate((size,) * 3, seed=seed + 7)[0])],
        out / "comparison.png", title="; ".join(rows),
    )
    lines = [f"3/3 3D twin {size}^3 -> {out / 'twin.tif'}; figures {paths['figure']}, {out / 'comparison.png'}"]
    lines += ["    " + r for r in rows] + [f"demo finished in {time.perf_counter() - t0:.0f} s"]
    yield JobProgress("done", 3, 3, "\n".join(lines))
    paths.update({"twin": out / "twin.tif", "section": out / "section.tif", "comparison": out / "comparison.png"})
    return paths
