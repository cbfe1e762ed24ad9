"""Use case: calibrate a model on 2D sections, optionally selecting its structure first.

:func:`calibrate` is what both front ends run (the napari dock on layers, the CLI on files):
select a structure (optional), build the :class:`~napari_assb_twin.calibrate.Calibrator`, train.
:func:`calibrate_to_files` adds what a batch run needs: the outputs beside the model file, periodic
checkpoints, and on Ctrl-C / SIGTERM the best model so far plus a checkpoint to resume from.

Events (``JobProgress.stage``), the one event type from the engine to every front end:
``"selection"`` per optimisation step of each candidate fit (``data``: its
:class:`~napari_assb_twin.calibrate.Progress` record) and after each fit (``data``: its ranking row),
from :func:`~napari_assb_twin.calibrate.selection.iter_select_model`, which the job drives with
``yield from``; ``"selected"`` (``data``: the :class:`~napari_assb_twin.calibrate.selection.SelectionResult`,
``message``: its table), ``"representativeness"`` first (``message``: how well the data determine their
phase fractions and C_ij, ``data``: the
:class:`~napari_assb_twin.stats.representativeness.InputRepresentativeness`; also in the provenance),
``"started"`` (``data``: the calibrator, whose best model a stopped front end keeps), ``"noise"`` (``data``: the data's split-half sampling noise of C_ij as an RMSE, or None when
the data are too small to split), ``"calibrate"`` per step (``data``: the
:class:`~napari_assb_twin.calibrate.Progress` record), after a selection ``"plausible"`` per twin of
the plausible structures and ``"uncertainty"`` (``data``: the
:class:`~napari_assb_twin.calibrate.plausible.Plausibility`, ``message``: it in words);
:func:`calibrate_to_files` adds
``"interrupted"`` and ``"done"`` (``message``: what was written).

A stop is one mechanism: the front end closes the job generator (a Stop button, napari's cancel) or
throws an exception into it at the event it is showing (Ctrl-C, SIGTERM, see
:func:`~napari_assb_twin.events.run_job`); the step in progress has finished, the calibrator
(from ``"started"``) holds the best model so far, and :func:`calibrate_to_files` writes it.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..options import AUTO, CALIBRATION_MODEL, COARSE_OPERATORS, VARIANTS
from .events import JobProgress
from .inputs import check_output_file

__all__ = [
    "CHECKPOINT_EVERY",
    "SELECT_ITERATIONS",
    "STOPPED_IN_SELECTION",
    "CalibrationRun",
    "calibrate",
    "calibrate_to_files",
    "check_checkpoint_file",
    "load_calibration_data",
    "selection_variant",
]

#: Longest candidate fit during model selection (steps); shorter when the calibration itself is.
SELECT_ITERATIONS: int = 300
#: Steps between automatic checkpoints of :func:`calibrate_to_files` (a killed run loses at most these).
CHECKPOINT_EVERY: int = 100


@dataclass
class CalibrationRun:
    """Outcome of a finished :func:`calibrate`: the calibrator and the selection, if any (a stopped
    job returns nothing: its front end keeps the calibrator of the ``"started"`` event)."""

    calibrator: Any
    selection: Any = None
    provenance: dict = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    #: after a selection: the plausible structures and the tau intervals over them
    plausible: Any = None


def selection_variant(variant: str | None, planes: Sequence[str]) -> str:
    """The low-parametric variant a structure is selected for (the one rule of both front ends).

    The user's variant when given (HP variants select on their LP counterpart and are fitted on
    the winner); without one, ``lp-cyl`` when axial sections are present, else ``lp-iso``.
    """
    if variant in (None, AUTO):
        return "lp-cyl" if "axial" in planes else "lp-iso"
    if variant not in VARIANTS:
        raise ValueError(f"model must be one of {', '.join(VARIANTS)} or {AUTO}, got {variant!r}")
    return variant


def load_calibration_data(
    images: Sequence[str | os.PathLike],
    planes: Sequence[str] | None = None,
    labels: str | None = None,
    voxel_size: float | None = None,
    unit: str | None = None,
    *,
    coarse: str | os.PathLike | None = None,
    coarse_labels: str | None = None,
    coarse_voxel_size: float | None = None,
    coarse_operator: str = COARSE_OPERATORS[0],
    axis: int | None = None,
):
    """Calibration data from files: 2D sections (one plane for all images or one each) and 3D
    volumes (a 3D file; its plane entry is not used), optionally a coarser volume of the same
    material with its own group mapping and voxel size (:mod:`~napari_assb_twin.calibrate.coarse`).
    ``axis``: the volumes' symmetry axis (None: :attr:`CalibrationData.axis`'s rule)."""
    from ..calibrate import CalibrationData

    planes = list(planes or ["inplane"])
    if len(planes) not in (1, len(images)):
        raise ValueError(f"give one --plane for all images or one per image ({len(images)}), got {len(planes)}")
    if coarse is None and (coarse_labels is not None or coarse_voxel_size is not None):
        raise ValueError("--coarse-labels / --coarse-voxel-size describe a coarse volume: give it with --coarse")
    if coarse is not None and not coarse_labels:
        raise ValueError(f"--coarse {coarse}: give its label mapping with --coarse-labels, e.g. "
                         "'0:pore+electrolyte,1:active' (labels may merge phases)")
    data = CalibrationData.from_files(list(images), planes=planes, mapping=labels, voxel_size=voxel_size, unit=unit,
                                      axis=axis)
    if axis is not None and not data.volumes:
        raise ValueError(f"--symmetry-axis {axis} is the axis of 3D volumes, and no image is 3D; for 2D sections "
                         "say which contain the symmetry axis with --plane axial")
    if coarse is None:
        return data
    from ..calibrate.coarse import CoarseVolume

    fine = (data.given_sections + data.volumes)[0]
    cv = CoarseVolume.from_file(coarse, coarse_labels, coarse_voxel_size, fine, coarse_operator,
                                unit=fine.unit_label if coarse_voxel_size is not None else None)
    return CalibrationData(data.given_sections, data.volumes, coarse=cv, axis=axis)


def check_checkpoint_file(path: str | os.PathLike) -> Path:
    """Refuse what cannot be a calibration checkpoint before torch tries to unpickle it."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"--resume {p}: is a folder; give the .ckpt file of an interrupted run")
    if not p.is_file():
        raise ValueError(f"--resume {p}: no such checkpoint file")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive
        raise ValueError(f"--resume {p}: not a calibration checkpoint (it is not a file written by assb-twin "
                         "calibrate); give the .ckpt file written beside the model of an interrupted run")
    return p


#: What a front end says after stopping the job during model selection (no structure chosen, nothing calibrated).
STOPPED_IN_SELECTION = "stopped during model selection; no model was calibrated"


def calibrate(
    data: Any,
    config: Any = None,
    *,
    select: bool = False,
    variant: str | None = None,
    select_iterations: int | None = None,
    resume: str | os.PathLike | None = None,
    factory: Callable[..., Any] | None = None,
    measured_tau: Sequence[Any] = (),
    intervals: bool = True,
) -> Generator[JobProgress, None, CalibrationRun]:
    """Select (optionally) and calibrate; yields progress, returns a :class:`CalibrationRun`.

    Stop it by closing the generator (or throwing into it) at any event: it acts within one
    optimisation step, in model selection too; the calibrator of the ``"started"`` event keeps the
    best model so far.

    Parameters
    ----------
    data
        :class:`~napari_assb_twin.calibrate.CalibrationData`; its C_ij are computed once per
        ``r_max`` and shared by every candidate of the selection and the final fit.
    config
        :class:`~napari_assb_twin.calibrate.CalibrationConfig` (default settings when None).
    select, variant
        Select the structure first, for :func:`selection_variant` ``(variant, data.planes)``;
        without selection ``variant`` (when given) replaces the config's.
    select_iterations
        Steps per candidate (default ``min(config.iterations, SELECT_ITERATIONS)``).
    resume
        A checkpoint to continue from (its structure and settings; no selection).
    factory
        Builds the calibrator from ``(data, config)`` (default :class:`Calibrator`).
    measured_tau
        :class:`~napari_assb_twin.calibrate.measured.MeasuredTau` constraints: a selection term, and
        how the twin meets them in the report (with a selection only).
    intervals
        After a selection, simulate twins of the plausible structures and report tau intervals
        (:mod:`~napari_assb_twin.calibrate.plausible`; the selected one with its final parameters).
    """
    from ..calibrate import CalibrationConfig, Calibrator
    from ..devices import resolve_device

    cfg = config or CalibrationConfig()
    # the device is resolved once per job ("auto" -> what this machine has); every candidate fit of
    # the selection and the final calibrator get that name
    cfg = replace(cfg, device=str(resolve_device(cfg.device)))
    sel = None
    prov: dict = {}
    rep = yield from _representativeness(data, cfg)
    if rep is not None:
        prov["representativeness"] = rep.to_dict()
    if resume is not None:
        path = check_checkpoint_file(resume)
        cal = Calibrator.from_checkpoint(path, data, device=cfg.device)
    else:
        if select:
            from ..calibrate.selection import iter_select_model

            chosen = selection_variant(variant, data.planes)
            steps = int(select_iterations or min(cfg.iterations, SELECT_ITERATIONS))
            search = iter_select_model(data, chosen, iterations=steps, seed=cfg.seed, device=cfg.device,
                                       config=replace(cfg, variant=chosen), measured_tau=measured_tau)
            sel = yield from search
            cfg = sel.best_config(cfg, variant=chosen)
            prov["model_selection"] = [
                {"rank": k + 1, "structure": r["label"], "score": r["score"], "topology": r["topology"],
                 "chord_w1": r["chord_w1"], "lineal": r["lineal"], "boundary": r["boundary"],
                 "coverage_rmse": r["coverage_rmse"], "iterations": r["iterations"]}
                for k, r in enumerate(sel.rows[:10])
            ]
            if sel.knob is not None:
                k = sel.knob
                prov["connectivity_knob"] = {"phase": k.phase, "bridge_weight": k.weight, "grid": list(k.grid),
                                             "twin_tau": [round(math.exp(v), 4) for v in k.log_tau],
                                             "measured_tau": round(math.exp(k.target), 4), "twins": k.scale}
            yield JobProgress("selected", message=sel.table(top=10) + ("\n" + sel.knob.line() if sel.knob else ""),
                              data=sel)
        elif variant not in (None, AUTO):
            cfg = replace(cfg, variant=selection_variant(variant, data.planes))
        cal = (factory or Calibrator)(data, cfg)
    yield JobProgress("started", 0, cal.total, _start_line(cal, data), cal)
    noise = _noise(cal)
    yield JobProgress("noise", 0, cal.total, "", noise)  # the floor of the RMSE: shown beside it, not alone
    for rec in cal.run():
        yield JobProgress("calibrate", rec.iteration, rec.total, rec.message, rec)
    run = CalibrationRun(cal, sel, prov)
    if sel is not None and sel.plausible and intervals:
        run.plausible = yield from _plausibility(data, sel, cal.best_model, measured_tau, rep)
        prov["plausible"] = run.plausible.to_dict()
        yield JobProgress("uncertainty", message="\n".join(run.plausible.lines()), data=run.plausible)
    return run


def _plausibility(data: Any, sel: Any, best: Any, measured_tau: Sequence[Any],
                  rep: Any = None) -> Generator[JobProgress, None, Any]:
    """Tau intervals over the plausible structures (the selected one with its final parameters; ``rep``,
    the input's representativeness of the job's first event, adds its fraction intervals' ends)."""
    from ..calibrate.plausible import (Plausibility, advice_for, fraction_sd, fraction_variants, iter_tau_intervals,
                                       pick_structures)

    by_label = {r["label"]: r["candidate"] for r in sel.rows}
    chosen = sel.best_candidate
    picked = pick_structures(chosen, [by_label[m] for m in sel.plausible_labels if m in by_label])
    models = {c.label: best if c == chosen else sel.models[c.label] for c in picked}
    # the selected structure at the ends of the input's fraction intervals: what the input's size leaves open
    variants = fraction_variants(best, fraction_sd(rep))
    iv = yield from iter_tau_intervals(models, variants=variants)
    measured = [{**c.to_dict(), "twin": float(iv.selected[c.phase, c.axis]), "lo": float(iv.lo[c.phase, c.axis]),
                 "hi": float(iv.hi[c.phase, c.axis])} for c in measured_tau]
    return Plausibility(sel.plausible, iv, advice_for(data, measured=bool(measured_tau)), measured)


def _representativeness(data: Any, cfg: Any) -> Generator[JobProgress, None, Any]:
    """Yield how representative the data are (``"representativeness"``: message = its lines, data = the
    :class:`~napari_assb_twin.stats.representativeness.InputRepresentativeness`), or a ``"note"`` saying why
    it could not be estimated; return that estimate (None when not estimated)."""
    if not hasattr(data, "representativeness"):  # a data double without images (tests of the job's flow)
        return None
    try:
        rep = data.representativeness(cfg.r_max)
    except ValueError as exc:  # e.g. a section below the estimate's smallest side: say so, calibrate anyway
        yield JobProgress("note", message=f"representativeness of the input not estimated: {exc}")
        return None
    yield JobProgress("representativeness", message="\n".join(rep.lines()), data=rep)
    return rep


def _start_line(cal, data) -> str:
    return (f"calibrating {cal.config.variant} with {cal.config.algorithm} on {data.describe()}, "
            f"r_max {cal.r_max} px, device {cal.device}, "
            "volume fractions " + ", ".join(f"{k} {v:.4f}" for k, v in data.volume_fractions.items()))


def calibrate_to_files(
    data: Any,
    out: str | os.PathLike,
    config: Any = None,
    *,
    model: str = CALIBRATION_MODEL,
    select_iterations: int | None = None,
    resume: str | os.PathLike | None = None,
    force: bool = False,
    checkpoint_every: int = CHECKPOINT_EVERY,
    measured_tau: Sequence[Any] = (),
) -> Generator[JobProgress, None, CalibrationRun]:
    """Calibrate and write ``out`` (model JSON), its log CSV and coverage PNG (what ``assb-twin calibrate`` does).

    ``model="auto"`` selects the structure first. A checkpoint is saved every ``checkpoint_every``
    steps (0: never) and removed after a finished run; Ctrl-C or SIGTERM (``KeyboardInterrupt``)
    writes the best model so far and a checkpoint to ``--resume`` from, then re-raises.
    """
    from ..calibrate.command import outputs_for, write_outputs
    from ..calibrate.noise import rmse_line

    out = Path(out)
    if not out.name.endswith(".json"):
        raise ValueError(f"--out must name a .json model file, got {out}")
    paths = outputs_for(out)
    overwrite = force or resume is not None  # else the model file is claimed: of two runs, one wins
    if resume is None:
        for key, p in paths.items():
            if key != "checkpoint":
                check_output_file(p, force)
    else:
        check_checkpoint_file(resume)
    if measured_tau and model != AUTO:
        raise ValueError("--measured-tau is a term of the model selection: use it with --model auto")
    job = calibrate(data, config, select=model == AUTO, variant=model, select_iterations=select_iterations,
                    resume=resume, measured_tau=measured_tau)
    cal = None
    noise = None
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as done:
                run = done.value
                break
            if event.stage == "started":
                cal = event.data
            elif event.stage == "noise":
                noise = event.data
            elif event.stage == "calibrate" and checkpoint_every and event.done % checkpoint_every == 0:
                cal.save_checkpoint(paths["checkpoint"])
            yield event
    except (KeyboardInterrupt, GeneratorExit) as exc:
        job.close()
        if cal is not None and cal.history:
            written = write_outputs(cal, paths["model"], {"interrupted": True}, figure=False, overwrite=overwrite)
            cal.save_checkpoint(paths["checkpoint"])
            if isinstance(exc, KeyboardInterrupt):
                yield JobProgress("interrupted", message=f"interrupted: best model so far written to {written['model']} "
                                                         f"(resume with --resume {paths['checkpoint']})")
        elif isinstance(exc, KeyboardInterrupt):  # e.g. during model selection: no structure chosen yet
            yield JobProgress("interrupted", message=f"interrupted before a model was calibrated: nothing written "
                                                     f"to {paths['model']}")
        raise
    run.provenance["interrupted"] = False
    run.paths = write_outputs(cal, paths["model"], run.provenance, overwrite=overwrite)
    if paths["checkpoint"].exists() and cal.finished:
        paths["checkpoint"].unlink()  # a finished run has nothing to resume
    best = cal.best_model
    yield JobProgress("done", message="calibrated parameters: " + ", ".join(
        f"{k} {v:.4g}" for k, v in best.interpretable().items() if "fraction" not in k)
        + f"\n{rmse_line(float(cal.best_loss), noise)}")
    return run


def _noise(cal: Any) -> float | None:
    """The data's split-half noise at the calibration's r_max (costs about one target preparation;
    None when the data are too small to split in halves)."""
    from ..calibrate.noise import coverage_noise_rmse

    return coverage_noise_rmse(cal.data, int(cal.r_max), cal.config.weighting)
