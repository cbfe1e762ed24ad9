"""The files of a calibration run: the model JSON and, beside it, the log CSV and coverage PNG.

The run itself is the use case :func:`napari_assb_twin.jobs.calibrate.calibrate_to_files`.
"""

from __future__ import annotations

from pathlib import Path

from .engine import Calibrator

__all__ = ["outputs_for", "write_outputs"]


def outputs_for(out: str | Path) -> dict[str, Path]:
    """The files written beside the model file: ``<stem>.log.csv``, ``<stem>.coverage.png``, ``<stem>.ckpt``."""
    out = Path(out)
    stem = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    return {
        "model": out,
        "log": out.with_name(f"{stem}.log.csv"),
        "figure": out.with_name(f"{stem}.coverage.png"),
        "checkpoint": out.with_name(f"{stem}.ckpt"),
    }


def _representativeness_lines(cal: Calibrator) -> list[str]:
    """The input's representativeness as text for the figure (cached on the data by the job that
    recorded it in the provenance, so no second computation)."""
    try:
        return cal.data.representativeness(cal.r_max).lines()
    except (AttributeError, ValueError):
        return []


def write_outputs(cal: Calibrator, out: str | Path, extra_provenance: dict | None = None, figure: bool = True,
                  overwrite: bool = True) -> dict[str, Path]:
    """Write the best model (with provenance), the training log and the coverage figure; returns the
    paths written (``model``, ``log``, ``figure``).

    A ``representativeness`` record in the provenance (the job's first event) is also printed below
    the figure's panels, and so are the tau intervals and undecided phases of a ``plausible`` record.

    ``overwrite=False`` claims the model file first: if another run wrote it meanwhile, nothing
    is written (:class:`~napari_assb_twin.io.atomic.OutputClaimedError`).
    """
    from ..model import save_model
    from .report import model_coverage_curves, plot_coverage_comparison, write_log_csv

    paths = outputs_for(out)
    model = cal.best_model
    prov = cal.provenance()
    prov.update(extra_provenance or {})
    save_model(model, paths["model"], provenance=prov, overwrite=overwrite)
    write_log_csv(cal.history, paths["log"])
    if figure:
        data_cov = {k: c for k, (c, _) in cal.data.coverage_targets(cal.r_max).items()}
        model_cov = model_coverage_curves(model, cal.data.planes, cal.r_max, size=max(128, cal.section_size), batch=16)
        rmse = prov.get("best_coverage_rmse")
        plot_coverage_comparison(
            data_cov, model_cov, paths["figure"], cal.data.pixel_size, cal.data.unit,
            title=f"{cal.config.variant} / {cal.config.algorithm}: data vs calibrated model"
            + (f" (C_ij RMS deviation {rmse:.4f})" if rmse is not None else ""),
            note=(_representativeness_lines(cal) if "representativeness" in prov else [])
            + list((prov.get("plausible") or {}).get("summary", [])[1:]),
        )
    # what was written (the CLI lists it): the checkpoint is the caller's, the figure only when drawn
    return {k: v for k, v in paths.items() if k in ("model", "log") or (k == "figure" and figure)}
