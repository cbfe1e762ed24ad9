"""The ``assb-twin`` command line.

A thin front end: each sub-command parses its arguments, runs one use case of
:mod:`napari_assb_twin.jobs` and prints its progress (tqdm bars live here only) and a short summary.
Errors print one line on stderr and exit non-zero; ``--debug`` shows the traceback. Ctrl-C and
SIGTERM (what batch schedulers send) both interrupt a job the same way, so a calibration keeps its
best model either way.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from .options import (ADV_LOSSES, ALGORITHMS, AUTO, CALIBRATION_MODEL, COARSE_OPERATORS, ESTIMATORS, MAX_COARSE_RATIO,
                      MINKOWSKI_WEIGHT, MODEL_CHOICES, PLANES, REALISATION_SIDE, TRANSPORT_ITER_LIMIT, TRANSPORT_SOLVERS,
                      VALIDATION_REALISATIONS, WEIGHTINGS)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


class CLIError(Exception):
    """An error the user can fix; printed without traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (a job's clean-up runs) but reported with its own exit status."""


def command(name: str):
    """Register a sub-command implementation."""

    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# -- progress -------------------------------------------------------------------------------------
class Progress:
    """Shows a job's events: a tqdm bar per counting stage, other messages as lines.

    ``bars`` names the stages drawn as bars (``quiet`` hides them); ``"note"`` / ``"warning"``
    events go to stderr, every other message to stdout.
    """

    def __init__(self, bars: Sequence[str] = (), quiet: bool = False,
                 postfix: Callable[[object], str] | None = None) -> None:
        self.bar_stages = set(bars)
        self.quiet = quiet
        self.postfix = postfix
        self._bar = None
        self._stage = None
        self.printed_by_command: tuple[str, ...] = ()  # line starts the command prints itself (with units)

    def __call__(self, event) -> None:
        if self.printed_by_command and event.message:
            kept = [ln for ln in event.message.splitlines() if not ln.startswith(self.printed_by_command)]
            event = replace(event, message="\n".join(kept))
        if event.stage in self.bar_stages and (event.total or self.quiet):
            if self.quiet:  # a bar stage's lines are progress too (model selection's pre-ranking)
                return
            self._update_bar(event)
            return
        self.close()
        if not event.message:
            return
        if event.stage in ("note", "warning"):
            print(f"{event.stage}: {event.message}", file=sys.stderr)
        elif event.stage == "compare":
            print(f"  {event.message}", file=sys.stderr)
        else:
            print(event.message)

    def _update_bar(self, event) -> None:
        from tqdm import tqdm

        if self._bar is None or self._stage != event.stage:
            self.close()
            self._bar = tqdm(total=event.total, desc=event.stage, unit="it", dynamic_ncols=True, leave=True,
                             file=sys.stderr)
            self._stage = event.stage
        self._bar.total = event.total
        self._bar.update(event.done - self._bar.n)
        if self.postfix is not None and event.data is not None:
            self._bar.set_postfix_str(self.postfix(event.data), refresh=False)  # tqdm redraws at most every 0.1 s

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None


def _run(job, progress: Progress):
    """Drive a job, showing its events; always closes the bar."""
    from .jobs import run_job

    try:
        return run_job(job, progress)
    finally:
        progress.close()


def _calibration_postfix(data) -> str:
    losses = getattr(data, "losses", None)
    if losses is None:  # a selection row
        return f"{data['score']:.3f} {data['label'][:40]}" if isinstance(data, dict) else ""
    parts = [f"{key[:4]} {losses[key]:.3g}" for key in ("coverage", "generator", "wasserstein") if key in losses]
    if math.isfinite(data.best_loss):
        parts.append(f"best {data.best_loss:.3g}")
    parts.append(data.phase)
    return " ".join(parts)


def _fractions_line(fractions: dict[str, float]) -> str:
    return ", ".join(f"{n} {c:.4f}" for n, c in fractions.items())


# -- commands -------------------------------------------------------------------------------------
@command("models")
def _cmd_models(args: argparse.Namespace) -> int:
    from .jobs import load_model_spec
    from .model import list_reference_models, load_reference_model, model_to_dict

    if args.name:
        print(json.dumps(model_to_dict(load_model_spec(args.name)), indent=2))
        return 0
    for name in list_reference_models():
        m = load_reference_model(name)
        note = m.provenance.get("note", "")
        print(f"{name:32s} {m.variant:7s} {note}")
    return 0


@command("generate")
def _cmd_generate(args: argparse.Namespace) -> int:
    from .jobs import generate, load_model_spec

    model = load_model_spec(args.model)
    res = _run(generate(model, args.shape, args.out, seed=args.seed, device=args.device, chunk=args.chunk,
                        force=args.force), Progress(bars=("generate",)))
    if res.chunks is not None:
        print(f"wrote {res.path} shape {res.shape} chunks {res.chunks} voxel {model.voxel_size} {model.unit} "
              f"in {res.seconds:.1f} s (blockwise)")
        print(f"realised volume fractions (first 128^3 block): {_fractions_line(res.fractions)}")
        return 0
    print(f"wrote {res.path} shape {res.shape} voxel {model.voxel_size} {model.unit} in {res.seconds:.2f} s on {res.device}")
    print(f"target volume fractions: {_fractions_line(model.volume_fractions)}")
    print(f"realised volume fractions: {_fractions_line(res.fractions)}")
    return 0


@command("coverage")
def _cmd_coverage(args: argparse.Namespace) -> int:
    from .io import read_label_image
    from .jobs import check_output_file
    from .stats.coverage import coverage

    out = check_output_file(args.out, args.force, (".csv",))
    img = read_label_image(args.image, mapping=args.labels).with_geometry(args.voxel_size, args.unit)
    print(img.message, file=sys.stderr)
    if img.anisotropy_note():
        print(f"note: {img.anisotropy_note()}", file=sys.stderr)
    r_max = args.rmax if args.rmax is not None else img.default_r_max()
    res = coverage(img.data, r_max, periodic=args.periodic, voxel_size=img.pixel_size, unit=img.unit_label)
    res.to_csv(out)
    print(f"wrote {out}: {img.ndim}D image {img.shape}, r_max {r_max} px, voxel {img.pixel_size} {img.unit_label}")
    print(f"volume fractions: {_fractions_line(img.fractions)}")
    return 0


@command("calibrate")
def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import CalibrationConfig
    from .jobs import calibrate_to_files, load_calibration_data

    if args.resume is not None:  # the checkpoint's run continues with its own settings
        given = [flag for flag, value in (("--iterations", args.iterations), ("--pre-iterations", args.pre_iterations),
                                          ("--batch", args.batch)) if value is not None]
        if given:
            raise CLIError(f"--resume continues the checkpoint's run with its own settings; {', '.join(given)} cannot "
                           f"change them: drop {', '.join(given)}, or start a new run without --resume")
    if args.batch is not None and args.estimator == "analytic":
        print(f"warning: --batch {args.batch} is not used: it sets the simulated sections per step of --estimator "
              "sampled, and the analytic estimator (the default) simulates none (the adversarial critic's own batch "
              "is fixed at 8); add --estimator sampled to use it", file=sys.stderr)
    cfg = CalibrationConfig(
        algorithm=args.algorithm, iterations=args.iterations if args.iterations is not None else 300,
        seed=args.seed, device=args.device,
        r_max=args.rmax, disc_width=args.disc_width, patch=args.patch, adv_loss=args.adv_loss,
        estimator=args.estimator, weighting=args.weighting, minkowski=args.minkowski,
        **({"batch": args.batch} if args.batch else {}),
        **({"pre_iterations": args.pre_iterations} if args.pre_iterations is not None else {}),
    )
    data = load_calibration_data(args.images, args.plane, args.labels, args.voxel_size, args.unit,
                                 coarse=args.coarse, coarse_labels=args.coarse_labels,
                                 coarse_voxel_size=args.coarse_voxel_size, coarse_operator=args.coarse_operator,
                                 axis=args.symmetry_axis)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.measured_tau and args.model != AUTO:
        raise CLIError("--measured-tau is a term of the model selection: add --model auto (the default)")
    job = calibrate_to_files(data, args.out, cfg, model=args.model, select_iterations=args.select_iterations,
                             resume=args.resume, force=args.force, checkpoint_every=args.checkpoint_every,
                             measured_tau=args.measured_tau)
    progress = Progress(bars=("selection", "calibrate", "plausible"), quiet=args.quiet, postfix=_calibration_postfix)
    progress.printed_by_command = ("calibrated parameters",)  # the job's line has no units: printed below
    run = _run(job, progress)
    model = run.calibrator.best_model
    unit = model.unit if model.unit not in (None, "", "px") else "px"
    print("calibrated parameters: " + ", ".join(
        f"{k} {v:.4g}{'' if 'length' not in k else ' ' + unit}" for k, v in model.interpretable().items()
        if "fraction" not in k))
    for kind, path in run.paths.items():
        print(f"wrote {kind}: {path}")
    return 0


@command("demo")
def _cmd_demo(args: argparse.Namespace) -> int:
    from .jobs import demo

    _run(demo(args.out, size=args.size, seed=args.seed, iterations=args.iterations, force=args.force),
         Progress(bars=("calibrate",), postfix=_calibration_postfix))
    return 0


def pd_isna(v: object) -> bool:
    """Whether a table cell is missing (None, NaN or pandas' NA)."""
    import pandas as pd

    return bool(pd.isna(v))


@command("compare")
def _cmd_compare(args: argparse.Namespace) -> int:
    """Validation report: every descriptor of a measured image and a twin side by side."""
    from .jobs import compare, load_model_spec, read_phase_input
    from .model import list_reference_models

    real = read_phase_input(args.real, args.labels, "REAL")
    is_model = str(args.twin).lower().endswith(".json") or args.twin in list_reference_models()
    model = load_model_spec(args.twin) if is_model else None
    twin = None if is_model else read_phase_input(args.twin, args.twin_labels, "TWIN")
    n = args.realisations if args.realisations is not None else (VALIDATION_REALISATIONS if is_model else 1)
    if n > 1 and not is_model:
        raise CLIError(f"--realisations {n} needs the twin's model: give a model JSON or built-in name as TWIN "
                       f"({args.twin} is an image, one realisation)")
    job = compare(real, twin, args.out, voxel_size=args.voxel_size, unit=args.unit, axes=args.axes,
                  transport=not args.no_transport, geometry=not args.no_geometry, device=args.device, r_max=args.rmax,
                  transport_iter_limit=args.transport_iter_limit, force=args.force,
                  names=(Path(args.real).name, Path(args.twin).name), solver=args.solver, model=model,
                  realisations=n, realisation_side=args.realisation_size, seed=args.seed,
                  sampling=not args.no_sampling)
    res = _run(job, Progress(bars=("generate",)))
    cmp, files = res.comparison, res.files
    _print_intervals(cmp)
    twins = f"{cmp.realisations} realisations {cmp.twin_shape}" if cmp.realisations > 1 else f"{cmp.twin_shape}"
    print(f"compared {cmp.names['real']} {cmp.real_shape} with {cmp.names['twin']} {twins} "
          f"(voxel {cmp.voxel_size:g} {cmp.unit}) in {cmp.seconds:.1f} s")
    vf = cmp.descriptors[cmp.descriptors["descriptor"] == "volume_fraction"]
    print("volume fractions real / twin: " + ", ".join(f"{r.phase} {r.real:.3f}/{r.twin:.3f}" for r in vf.itertuples()))
    worst = cmp.largest_difference()
    if worst is not None:
        where = str(worst["phase"]).replace("|", "/") + ("" if pd_isna(worst["axis"]) else f" axis {int(worst['axis'])}")
        print(f"largest |relative difference|: {abs(worst['relative_difference']) * 100:.1f} % "
              f"({worst['descriptor']}, {where})")
    print(f"{cmp.differing_rows()} of {len(cmp.descriptors)} values differ beyond both 95 % intervals (marked *)")
    if cmp.undefined_rows():
        print(f"{cmp.undefined_rows()} of {len(cmp.descriptors)} values have no relative difference (n/a: a zero or "
              "infinite measured value, an absent phase, MSSIM); see the report")
    for note in dict.fromkeys(cmp.notes):
        print(f"note: {note}")
    print(f"wrote {len(files)} files to {args.out}: open {files['report.html']}")
    return 0


def _interval_text(value: float, lo: float, hi: float) -> str:
    """``value [lo, hi]`` (the value alone without an interval)."""
    def f(v: float) -> str:
        return f"{v:.4g}"

    return f(value) + (f" [{f(lo)}, {f(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else "")


def _print_intervals(cmp) -> None:
    """Every descriptor: measured [95 % sampling interval], twin mean [95 % interval of the model's
    mean], relative difference, * where the intervals do not overlap (the report's colour rule)."""
    rows = [("descriptor", "phase", "axis", "measured [95 %]", f"twin{' mean' if cmp.realisations > 1 else ''} [95 %]",
             "rel. diff.", "")]
    for r in cmp.descriptors.itertuples():
        rel = float(r.relative_difference)
        rows.append((r.descriptor, str(r.phase).replace("|", "/"), "" if pd_isna(r.axis) else str(int(r.axis)),
                     _interval_text(float(r.real), float(r.real_lo), float(r.real_hi)),
                     _interval_text(float(r.twin), float(r.twin_lo), float(r.twin_hi)),
                     f"{rel * 100:+.1f} %" if math.isfinite(rel) else "n/a", "*" if r.differs else ""))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if c < 3 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _print_sweep_summary(res, keys: list[str]) -> None:
    """Per grid point: the volume fractions and tau along axis 0 as mean [95 % interval of the model's
    mean over the point's realisations] (all properties: summary.csv)."""
    summary = res.summary
    if summary is None or not len(summary):
        return
    shown = [c[:-5] for c in summary.columns if c.endswith(".mean")
             and (c.startswith("volume_fraction.") or (c.startswith("tau_factor.") and ".axis0" in c))]
    n = int(summary["realisations"].min())
    print(f"per grid point, mean [95 % interval of the mean over {n} realisation(s)]"
          + ("" if n > 1 else " (one realisation: no interval; --realisations N)") + "; every property in summary.csv:")
    for row in summary.to_dict("records"):
        where = ", ".join(f"{k}={row[k]:g}" for k in keys if k in row)
        vals = "; ".join(f"{m} {_interval_text(row[m + '.mean'], row[m + '.lo'], row[m + '.hi'])}" for m in shown)
        print(f"  {where}: {vals}")


@command("sweep")
def _cmd_sweep(args: argparse.Namespace) -> int:
    """Parameter sweep: grid x realisations of twins, descriptors and transport, resumable."""
    from .jobs import load_model_spec, sweep

    if not args.vary:
        raise CLIError("give at least one --vary KEY=START:STOP:N (keys: see `assb-twin models NAME`)")
    model = load_model_spec(args.model)
    job = sweep(model, args.vary, realisations=args.realisations, shape=tuple(args.shape), out=args.out,
                seed=args.seed, transport=not args.no_transport, geometry=not args.no_geometry, device=args.device,
                scheduler=args.scheduler, n_workers=args.workers, force=args.force)
    res = _run(job, Progress(bars=("sweep",), quiet=args.quiet))
    print(f"{res.n_cases} cases ({res.n_computed} computed, {res.n_reused} reused from {res.out / 'cases'}) "
          f"on {res.scheduler}")
    _print_sweep_summary(res, [v.split("=")[0].strip() for v in args.vary])
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0


# -- parser ---------------------------------------------------------------------------------------
def _number_type(cast: type, zero_ok: bool) -> Callable[[str], float]:
    """An argparse ``type``: ``cast(text)``, finite and > 0 (>= 0 with ``zero_ok``), else one clear message."""
    noun = "integer" if cast is int else "number"

    def name(finite: bool) -> str:
        what = f"finite {noun}" if finite else noun
        if zero_ok:
            return f"an {what} >= 0" if what == "integer" else f"a {what} >= 0"
        return f"a positive {what}"

    def parse(text: str) -> float:
        from .checks import parse_int_text

        try:
            v = parse_int_text(text, "value") if cast is int else cast(text)
        except ValueError as exc:
            if "digits" in str(exc):  # never echo a 5000-digit number back
                raise argparse.ArgumentTypeError(f"expected {name(False)} of at most 30 digits, got one of "
                                                 f"{len(text.strip())} characters") from None
            raise argparse.ArgumentTypeError(f"expected {name(False)}, got {text!r}") from None
        if not (v >= 0 if zero_ok else v > 0) or v == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {name(cast is float)}, got {v if cast is int else text}")
        return v

    return parse


_positive_int = _number_type(int, zero_ok=False)
_non_negative_int = _number_type(int, zero_ok=True)
_positive_float = _number_type(float, zero_ok=False)
_non_negative_float = _number_type(float, zero_ok=True)


def _seed(text: str) -> int:
    from .checks import parse_seed

    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _measured_tau(text: str):
    from .calibrate.measured import parse_measured_tau  # torch-free

    try:
        return parse_measured_tau(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from .jobs.calibrate import CHECKPOINT_EVERY, SELECT_ITERATIONS

    p = argparse.ArgumentParser(
        prog="assb-twin",
        description="Calibrated 3D digital twins of three-phase battery electrodes from 2D segmented images.",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("models", help="list the built-in reference models, or print one as JSON")
    s.add_argument("name", nargs="?", help="model name (or a model JSON path) to print")

    s = sub.add_parser("generate", help="generate a 3D label volume from a model file")
    s.add_argument("model", help="model JSON file or built-in model name (see `assb-twin models`)")
    s.add_argument("--shape", nargs=3, type=_positive_int, metavar=("Z", "Y", "X"), default=(128, 128, 128),
                   help="twin size in voxels (default 128 128 128)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed: same seed, same twin (default %(default)s)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    s.add_argument("--out", required=True, help="output uint8 label TIFF, or a .zarr folder for blockwise generation")
    s.add_argument("--chunk", type=_positive_int, default=128,
                   help="Zarr chunk / compute tile side (with .zarr; clamped to 32 .. the volume's longest side)")
    s.add_argument("--force", action="store_true",
                   help="overwrite --out if it exists (a .zarr folder only when this program wrote it)")

    s = sub.add_parser("coverage", help="two-point coverage functions of a segmented image, as long-format CSV")
    s.add_argument("image", help="segmented TIFF / PNG / NPY image or a folder of TIFF slices")
    s.add_argument("--labels", default=None, help='label mapping, e.g. "0:pore,128:active,255:electrolyte"')
    s.add_argument("--rmax", type=_positive_int, default=None, help="largest distance in px (default 5 correlation lengths of the image, 16..64)")
    s.add_argument("--voxel-size", type=_positive_float, default=None, help="pixel size (default: file metadata)")
    s.add_argument("--unit", default=None, help="unit of --voxel-size (default um, or the file's)")
    s.add_argument("--periodic", action="store_true", help="periodic estimator (for simulated periodic volumes)")
    s.add_argument("--out", required=True, help="output CSV")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    s = sub.add_parser(
        "calibrate", help="calibrate a model on segmented 2D sections and/or 3D volumes; writes model JSON, log CSV "
                          "and coverage PNG",
        description="Calibrate a model on segmented 2D sections, 3D volumes (a FIB-SEM or CT stack, or a crop of "
                    "one), or both. A volume adds its directional 3D C_ij to the coverage loss and, with model "
                    "selection, the 3D connectivity and tortuosity of every phase along every axis (simulated "
                    "twins of each candidate against crops of the volume) to the selection score.",
    )
    s.add_argument("images", nargs="+", metavar="IMAGE",
                   help="segmented 2D sections (TIFF / PNG / NPY) and/or 3D volumes (TIFF stack, NPY, folder of "
                        "TIFF slices; axis 0 = the symmetry axis, cubic voxels), all at one voxel size")
    s.add_argument("--plane", nargs="+", choices=PLANES, default=["inplane"],
                   help="orientation of each 2D image w.r.t. the symmetry axis (one for all, or one per image; "
                        "not used for 3D volumes)")
    s.add_argument("--labels", default=None, help='label mapping, e.g. "0:pore,128:active,255:electrolyte"')
    s.add_argument("--voxel-size", type=_positive_float, default=None, help="pixel size (default: file metadata)")
    s.add_argument("--unit", default=None, help="unit of --voxel-size (default um, or the file's)")
    s.add_argument("--coarse", default=None, metavar="VOLUME",
                   help="a coarser 3D volume of the same material (e.g. lab CT beside SEM sections), with its own "
                        "--coarse-labels and --coarse-voxel-size; the resolution ratio is its voxel size over the "
                        f"sections' pixel size (an integer, at most {MAX_COARSE_RATIO})")
    s.add_argument("--coarse-labels", default=None, metavar="MAPPING",
                   help='label mapping of --coarse; labels may merge phases, e.g. "0:pore+electrolyte,1:active"')
    s.add_argument("--coarse-voxel-size", type=_positive_float, default=None,
                   help="voxel size of --coarse, in the sections' unit (default: its file metadata)")
    s.add_argument("--coarse-operator", default=COARSE_OPERATORS[0], choices=COARSE_OPERATORS,
                   help="how --coarse relates to the fine structure: block = each coarse voxel is the segmented "
                        "average of its r^3 block (the group filling most of it), subsample = one fine voxel of "
                        f"each block (default {COARSE_OPERATORS[0]})")
    s.add_argument("--symmetry-axis", default=None, type=int, choices=(0, 1, 2), metavar="{0,1,2}",
                   help="the 3D volumes' symmetry axis (e.g. the pressing direction; 0 = z of a stack): the model's "
                        "axis. Default: the axis whose two others' correlation functions agree, found from the "
                        "volumes alone (0 beside 2D sections or a coarse volume)")
    s.add_argument("--model", default=CALIBRATION_MODEL, choices=MODEL_CHOICES,
                   help=f"model variant; auto = model selection first (default {CALIBRATION_MODEL})")
    s.add_argument("--algorithm", default="coverage", choices=ALGORITHMS,
                   help="1 coverage matching, 2 adversarial, 3 combined (default coverage)")
    s.add_argument("--iterations", type=_positive_int, default=None, help="model updates of the main stage (default 300)")
    s.add_argument("--pre-iterations", type=int, default=None,
                   help="coverage steps before combined / of the LP fit before HP (default 200)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed (default %(default)s)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    s.add_argument("--rmax", type=_positive_int, default=None, help="largest distance of the coverage loss in px")
    s.add_argument("--estimator", default="analytic", choices=ESTIMATORS,
                   help="model C_ij of the coverage loss: exact expectation (default) or simulated sections")
    s.add_argument("--weighting", default="variance", choices=WEIGHTINGS,
                   help="weights of C_ij(r) in the coverage loss: inverse of the value (default) or uniform")
    s.add_argument("--minkowski", type=_non_negative_float, default=MINKOWSKI_WEIGHT, metavar="W",
                   help="weight of the 2D Minkowski term (perimeter and Euler densities per phase) added to "
                        f"the coverage loss; 0 = C_ij only (default {MINKOWSKI_WEIGHT:g})")
    s.add_argument("--batch", type=_positive_int, default=None, help="simulated sections per plane and step")
    s.add_argument("--patch", type=_positive_int, default=64, help="discriminator crop size (multiple of 16)")
    s.add_argument("--disc-width", type=_positive_int, default=64,
                   help="discriminator feature maps of the first layer (64 -> 64/128/256/512)")
    s.add_argument("--adv-loss", default="wgan-gp", choices=ADV_LOSSES)
    s.add_argument("--select-iterations", type=_positive_int, default=SELECT_ITERATIONS, help="steps per candidate with --model auto (default %(default)s)")
    s.add_argument("--measured-tau", action="append", type=_measured_tau, default=[], metavar="PHASE:AXIS=VALUE",
                   help="a tortuosity factor measured on the material (e.g. by impedance; an effective-conductivity "
                        "ratio as phi / (D_eff/D)), e.g. active:0=3.2 (axis 0 = z, the stacking axis); a term of "
                        "the model selection (--model auto), reported against the twin; repeatable")
    s.add_argument("--resume", default=None, help="checkpoint (.ckpt) of an interrupted run to continue")
    s.add_argument("--checkpoint-every", type=_non_negative_int, default=CHECKPOINT_EVERY, metavar="N",
                   help=f"save a checkpoint beside --out every N steps (default {CHECKPOINT_EVERY}; 0: only when "
                        "interrupted); it is removed when the run finishes")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True, help="output model JSON (log CSV and PNG are written beside it)")
    s.add_argument("--force", action="store_true", help="overwrite existing outputs")

    s = sub.add_parser("demo", help="calibrate on a synthetic section, generate a 3D twin, write the comparison")
    s.add_argument("--out", default="assb-twin-demo", help="output folder (default assb-twin-demo)")
    s.add_argument("--size", type=_positive_int, default=128, help="side of the 3D twin in voxels")
    s.add_argument("--seed", type=_seed, default=0, help="random seed (default %(default)s)")
    s.add_argument("--iterations", type=_positive_int, default=150, help="calibration steps (default %(default)s)")
    s.add_argument("--force", action="store_true", help="overwrite the demo's files if --out already holds them")

    s = sub.add_parser("compare", help="validation report: descriptors of a measured image and a twin side by side")
    s.add_argument("real", help="measured segmented image (TIFF / PNG / NPY / folder of TIFF slices), 2D or 3D")
    s.add_argument("twin", help="twin phase map (same formats, or a .zarr from `generate`: a sub-volume is read), or "
                                "the twin's model (JSON file or built-in name): --realisations of it are measured")
    s.add_argument("--labels", default=None, help='label mapping of REAL, e.g. "0:pore,85:active,170:electrolyte"')
    s.add_argument("--twin-labels", default=None, help="label mapping of TWIN (default automatic)")
    s.add_argument("--voxel-size", type=_positive_float, default=None, help="voxel size (default: file metadata, else 1 px)")
    s.add_argument("--unit", default=None, help="unit of --voxel-size (default um, or the file's)")
    s.add_argument("--axes", type=int, nargs="+", default=None, help="axes for directional descriptors (default all)")
    s.add_argument("--rmax", type=_positive_int, default=None, help="largest coverage distance in px (default 5 correlation lengths of REAL, 16..64)")
    s.add_argument("--no-transport", action="store_true",
                   help="skip the transport solves (tau factor and D_eff per phase and axis; about 5 min for one 256^3 "
                        "volume on a 2-core CPU)")
    s.add_argument("--no-geometry", action="store_true", help="skip geodesic tortuosity and constrictivity")
    s.add_argument("--solver", default="auto", choices=TRANSPORT_SOLVERS,
                   help="transport solver: auto (AMG-CG on a CPU, TauFactor or torch CG on a GPU), amg, torch-cg, "
                        "taufactor (needs the [taufactor] extra); default auto")
    s.add_argument("--device", default="auto", help="torch device for the transport: auto | cpu | cuda | cuda:N | mps (default auto)")
    s.add_argument("--transport-iter-limit", type=_positive_int, default=TRANSPORT_ITER_LIMIT,
                   help=f"iterations per phase and axis before the transport solver gives up (default {TRANSPORT_ITER_LIMIT}; "
                        "unconverged runs are named in the report)")
    s.add_argument("--realisations", type=_positive_int, default=None,
                   help="realisations of TWIN's model to measure: each value is their mean with the 95 %% interval of "
                        f"the model's mean (default {VALIDATION_REALISATIONS} for a model, 1 for an image)")
    s.add_argument("--realisation-size", type=_positive_int, default=REALISATION_SIDE,
                   help="longest side of a realisation in voxels (default %(default)s; capped at the measured size)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the first realisation, then +1 each (default %(default)s)")
    s.add_argument("--no-sampling", action="store_true",
                   help="skip the measured image's sub-volumes (its 95 %% sampling interval); halves the measured "
                        "image's time")
    s.add_argument("--out", required=True, help="output folder for CSV, PNG and report.html")
    s.add_argument("--force", action="store_true", help="overwrite report files already in --out")

    s = sub.add_parser("sweep", help="parameter sweep: twins over a grid of model parameters, descriptors and transport")
    s.add_argument("model", help="model JSON file or built-in model name")
    s.add_argument("--vary", action="append", default=[], metavar="KEY=START:STOP:N",
                   help="parameter to vary (repeatable); keys as in the model's interpretable parameters, lengths physical")
    s.add_argument("--realisations", type=_positive_int, default=1,
                   help="twins per grid point; with 2 or more every property is reported as their mean with the 95 %% "
                        "interval of the model's mean (summary.csv, the plots' whiskers)")
    s.add_argument("--shape", nargs=3, type=_positive_int, metavar=("Z", "Y", "X"), default=(64, 64, 64),
                   help="twin size in voxels (default 64 64 64)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed (default %(default)s)")
    s.add_argument("--no-transport", action="store_true", help="skip TauFactor")
    s.add_argument("--no-geometry", action="store_true", help="skip geodesic tortuosity and constrictivity")
    s.add_argument("--device", default="cpu", help="torch device for generation and TauFactor on the workers")
    s.add_argument("--scheduler", default=None,
                   help="dask.distributed address tcp://host:port; default a local cluster (threads without distributed)")
    s.add_argument("--workers", type=_positive_int, default=None, help="workers of the local cluster")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True, help="output folder; re-running the same sweep with the same folder resumes")
    s.add_argument("--force", action="store_true",
                   help="replace the results of another sweep (another grid, shape, seed or model) in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``assb-twin``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_attach_values(sys.argv[1:] if argv is None else list(argv)))
    if not args.command:
        parser.print_help()
        return 2
    previous = _catch_sigterm()
    try:
        return COMMANDS[args.command](args)
    except Terminated:
        print("assb-twin: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("assb-twin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line unless --debug
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"assb-twin {args.command}: error: {msg}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: Options whose value may start with "-" (a mapping of negative labels, "-1:pore,0:active,1:electrolyte").
_DASH_VALUES = ("--labels", "--twin-labels")


def _attach_values(argv: list[str]) -> list[str]:
    """``--labels -1:pore,...`` -> ``--labels=-1:pore,...``: argparse would take the value for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _DASH_VALUES and i + 1 < len(argv) and argv[i + 1].startswith("-") and ":" in argv[i + 1]:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _catch_sigterm():
    """Make SIGTERM interrupt like Ctrl-C (main thread only); returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
