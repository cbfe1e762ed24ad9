"""The ``assb-twin`` command line.

Every sub-command is a thin layer over the pure modules: it parses arguments, calls the library and
prints a short summary. Errors print one line on stderr and exit non-zero; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


class CLIError(Exception):
    """An error the user can fix; printed without traceback."""


def command(name: str):
    """Register a sub-command implementation."""

    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# -- shared helpers -----------------------------------------------------------------------------
def _load_any_model(spec: str):
    """A model from a JSON path or a built-in reference name."""
    from .model import list_reference_models, load_model, load_reference_model

    if spec in list_reference_models():
        return load_reference_model(spec)
    path = Path(spec)
    if not path.exists():
        raise CLIError(
            f"model {spec!r} is neither a file nor a built-in model ({', '.join(list_reference_models())})"
        )
    return load_model(path)


def _check_out(path: Path, force: bool) -> Path:
    """Refuse to overwrite a user's file unless --force; create the parent folder."""
    if path.exists() and not force:
        raise CLIError(f"{path} exists; choose another --out or pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _fractions_line(phases) -> str:
    import numpy as np

    from .phases import PHASE_NAMES

    counts = np.bincount(np.asarray(phases).ravel(), minlength=len(PHASE_NAMES)) / np.asarray(phases).size
    return ", ".join(f"{n} {c:.4f}" for n, c in zip(PHASE_NAMES, counts))


# -- commands -------------------------------------------------------------------------------------
@command("models")
def _cmd_models(args: argparse.Namespace) -> int:
    from .model import list_reference_models, load_reference_model, model_to_dict

    if args.name:
        print(json.dumps(model_to_dict(_load_any_model(args.name)), indent=2))
        return 0
    for name in list_reference_models():
        m = load_reference_model(name)
        note = m.provenance.get("note", "")
        print(f"{name:32s} {m.variant:7s} {note}")
    return 0


@command("generate")
def _cmd_generate(args: argparse.Namespace) -> int:
    import time

    from .devices import resolve_device
    from .io import write_label_tiff

    model = _load_any_model(args.model)
    device = resolve_device(args.device)
    out = _check_out(Path(args.out), args.force)
    if out.suffix.lower() == ".zarr":
        return _generate_zarr(model, args, out)
    t0 = time.perf_counter()
    vol = model.generate(tuple(args.shape), seed=args.seed, device=str(device))
    dt = time.perf_counter() - t0
    write_label_tiff(out, vol, voxel_size=model.voxel_size, unit=model.unit)
    print(f"wrote {out} shape {vol.shape} voxel {model.voxel_size} {model.unit} in {dt:.2f} s on {device}")
    print(f"target volume fractions: {', '.join(f'{k} {v:.4f}' for k, v in model.volume_fractions.items())}")
    print(f"realised volume fractions: {_fractions_line(vol)}")
    return 0


def _generate_zarr(model, args: argparse.Namespace, out: Path) -> int:
    """Blockwise generation into a chunked Zarr array with bounded memory."""
    import time

    import numpy as np
    from dask.diagnostics import ProgressBar

    from .model.blockwise import BlockwiseTwin

    twin = BlockwiseTwin(model, seed=args.seed, tile=args.chunk)
    t0 = time.perf_counter()
    with ProgressBar(out=sys.stderr):
        z = twin.to_zarr(out, tuple(args.shape), chunks=args.chunk, overwrite=args.force)
    dt = time.perf_counter() - t0
    print(f"wrote {out} shape {z.shape} chunks {z.chunks} voxel {model.voxel_size} {model.unit} in {dt:.1f} s (blockwise)")
    sub = tuple(slice(0, min(128, n)) for n in z.shape)
    print(f"realised volume fractions (first 128^3 block): {_fractions_line(np.asarray(z[sub]))}")
    return 0


@command("coverage")
def _cmd_coverage(args: argparse.Namespace) -> int:
    from .io import read_label_image
    from .stats.coverage import coverage

    img = read_label_image(args.image, mapping=args.labels)
    print(img.message, file=sys.stderr)
    voxel = args.voxel_size or img.voxel_size or 1.0
    unit = args.unit or (img.unit if args.voxel_size is None and img.voxel_size else None) or (
        "px" if voxel == 1.0 and not args.voxel_size else "um"
    )
    r_max = args.rmax if args.rmax is not None else max(1, min(64, min(img.data.shape) // 4))
    res = coverage(img.data, r_max, periodic=args.periodic, voxel_size=voxel, unit=unit)
    out = _check_out(Path(args.out), args.force)
    res.to_csv(out)
    print(f"wrote {out}: {img.data.ndim}D image {img.data.shape}, r_max {r_max} px, voxel {voxel} {unit}")
    print(f"volume fractions: {_fractions_line(img.data)}")
    return 0


@command("calibrate")
def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import CalibrationConfig
    from .calibrate.command import calibrate_files, outputs_for

    out = Path(args.out)
    if not out.name.endswith(".json"):
        raise CLIError(f"--out must name a .json model file, got {out}")
    if not args.resume:
        for p in outputs_for(out).values():
            if p.suffix != ".ckpt":
                _check_out(p, args.force)
    cfg = CalibrationConfig(
        algorithm=args.algorithm, iterations=args.iterations, seed=args.seed, device=args.device,
        r_max=args.rmax, disc_width=args.disc_width, patch=args.patch, adv_loss=args.adv_loss,
        estimator=args.estimator, weighting=args.weighting,
        **({"batch": args.batch} if args.batch else {}),
        **({"pre_iterations": args.pre_iterations} if args.pre_iterations is not None else {}),
    )
    calibrate_files(
        args.images, out, planes=args.plane, labels=args.labels, voxel_size=args.voxel_size, unit=args.unit,
        model=args.model, config=cfg, select_iterations=args.select_iterations, resume=args.resume,
        progress=not args.quiet,
    )
    return 0


@command("demo")
def _cmd_demo(args: argparse.Namespace) -> int:
    from .calibrate.command import run_demo

    run_demo(args.out, size=args.size, seed=args.seed, iterations=args.iterations)
    return 0


@command("compare")
def _cmd_compare(args: argparse.Namespace) -> int:
    """Validation report: every descriptor of a measured image and a twin side by side."""
    from .validate import compare, write_report
    from .validate.report import report_files

    out = Path(args.out)
    existing = [p.name for p in report_files(out) if p.exists()]
    if existing and not args.force:  # check before minutes of computation, not after
        raise CLIError(f"{out} already holds {', '.join(existing)}; choose another --out or pass --force")
    real = _read_phase_input(args.real, args.labels, "REAL")
    twin = _read_phase_input(args.twin, args.twin_labels, "TWIN")
    voxel = args.voxel_size or real["voxel_size"] or twin["voxel_size"] or 1.0
    unit = args.unit or (real["unit"] if real["voxel_size"] and not args.voxel_size else None) or (
        twin["unit"] if twin["voxel_size"] and not args.voxel_size else None) or ("um" if args.voxel_size else "px")
    notes = []
    if real["voxel_size"] and twin["voxel_size"] and abs(real["voxel_size"] - twin["voxel_size"]) > 1e-6 * voxel:
        notes.append(f"voxel sizes differ (real {real['voxel_size']:g}, twin {twin['voxel_size']:g}); "
                     f"both compared with {voxel:g} {unit}")
    if args.device != "cpu" and not args.no_transport:
        from .devices import resolve_device

        resolve_device(args.device)  # fail fast on an absent GPU
    cmp = compare(real["data"], twin["data"], voxel_size=voxel, unit=unit, axes=args.axes,
                  transport=not args.no_transport, device=args.device, geometry=not args.no_geometry,
                  r_max=args.rmax, names=(Path(args.real).name, Path(args.twin).name),
                  progress=lambda msg: print(f"  {msg}", file=sys.stderr),
                  transport_iter_limit=args.transport_iter_limit)
    cmp.notes[:0] = notes + [f"{k}: {d['message']}" for k, d in (("measured", real), ("twin", twin)) if d["message"]]
    files = write_report(cmp, out, force=args.force)
    print(f"compared {cmp.names['real']} {cmp.real_shape} with {cmp.names['twin']} {cmp.twin_shape} "
          f"(voxel {voxel:g} {unit}) in {cmp.seconds:.1f} s")
    vf = cmp.descriptors[cmp.descriptors["descriptor"] == "volume_fraction"]
    print("volume fractions real / twin: " + ", ".join(f"{r.phase} {r.real:.3f}/{r.twin:.3f}" for r in vf.itertuples()))
    print(f"largest |relative difference|: {cmp.max_abs_relative_difference() * 100:.1f} %")
    print(f"wrote {len(files)} files to {out}: open {files['report.html']}")
    return 0


def _read_phase_input(spec: str, labels: str | None, what: str) -> dict:
    """A phase map from a label file / folder, or a lazy Zarr array (twin written by generate)."""
    path = Path(spec)
    if not path.exists():
        raise CLIError(f"{what} {spec}: no such file or folder")
    if path.suffix.lower() == ".zarr" or (path.is_dir() and ((path / "zarr.json").exists() or (path / ".zarray").exists())):
        import zarr

        try:
            z = zarr.open_array(str(path), mode="r")
        except Exception as exc:  # noqa: BLE001 - re-raised as one clear line
            raise CLIError(f"{what} {spec}: not a readable Zarr array ({exc})") from None
        vs = z.attrs.get("voxel_size")
        return {"data": z, "voxel_size": float(vs) if vs else None, "unit": z.attrs.get("unit"),
                "message": f"{path.name}: Zarr array {tuple(z.shape)} read lazily"}
    from .io import read_label_image

    img = read_label_image(path, mapping=labels)
    return {"data": img.data, "voxel_size": img.voxel_size, "unit": img.unit, "message": img.message}


@command("sweep")
def _cmd_sweep(args: argparse.Namespace) -> int:
    """Parameter sweep: grid x realisations of twins, descriptors and transport, resumable."""
    from .validate.sweep import parse_vary, run_sweep

    if not args.vary:
        raise CLIError("give at least one --vary KEY=START:STOP:N (keys: see `assb-twin models NAME`)")
    try:
        vary = [parse_vary(v) for v in args.vary]
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    model = _load_any_model(args.model)
    res = run_sweep(model, vary, realisations=args.realisations, shape=tuple(args.shape), out=args.out,
                    seed=args.seed, transport=not args.no_transport, geometry=not args.no_geometry,
                    device=args.device, scheduler=args.scheduler, n_workers=args.workers, progress=not args.quiet)
    print(f"{res.n_cases} cases ({res.n_computed} computed, {res.n_reused} reused from {res.out / 'cases'}) "
          f"on {res.scheduler}")
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0


# -- parser ---------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
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
    s.add_argument("--shape", nargs=3, type=_positive_int, metavar=("Z", "Y", "X"), default=(128, 128, 128))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    s.add_argument("--out", required=True, help="output uint8 label TIFF, or a .zarr folder for blockwise generation")
    s.add_argument("--chunk", type=_positive_int, default=128, help="Zarr chunk / compute tile side (with .zarr)")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    s = sub.add_parser("coverage", help="two-point coverage functions of a segmented image, as long-format CSV")
    s.add_argument("image", help="segmented TIFF / PNG / NPY image or a folder of TIFF slices")
    s.add_argument("--labels", default=None, help='label mapping, e.g. "0:pore,128:active,255:electrolyte"')
    s.add_argument("--rmax", type=_positive_int, default=None, help="largest distance in px (default min(64, n/4))")
    s.add_argument("--voxel-size", type=_positive_float, default=None, help="pixel size (default: file metadata)")
    s.add_argument("--unit", default=None, help="unit of --voxel-size (default um, or the file's)")
    s.add_argument("--periodic", action="store_true", help="periodic estimator (for simulated periodic volumes)")
    s.add_argument("--out", required=True, help="output CSV")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    s = sub.add_parser(
        "calibrate", help="calibrate a model on segmented 2D sections; writes model JSON, log CSV and coverage PNG"
    )
    s.add_argument("images", nargs="+", metavar="IMAGE", help="segmented 2D TIFF / PNG / NPY sections")
    s.add_argument("--plane", nargs="+", choices=("inplane", "axial"), default=["inplane"],
                   help="orientation of each image w.r.t. the symmetry axis (one for all, or one per image)")
    s.add_argument("--labels", default=None, help='label mapping, e.g. "0:pore,128:active,255:electrolyte"')
    s.add_argument("--voxel-size", type=_positive_float, default=None, help="pixel size (default: file metadata)")
    s.add_argument("--unit", default=None, help="unit of --voxel-size (default um, or the file's)")
    s.add_argument("--model", default="lp-iso", choices=("lp-iso", "lp-cyl", "hp-iso", "hp-cyl", "auto"),
                   help="model variant; auto = model selection first (default lp-iso)")
    s.add_argument("--algorithm", default="coverage", choices=("coverage", "adversarial", "combined"),
                   help="1 coverage matching, 2 adversarial, 3 combined (default coverage)")
    s.add_argument("--iterations", type=_positive_int, default=300, help="model updates of the main stage")
    s.add_argument("--pre-iterations", type=int, default=None,
                   help="coverage steps before combined / of the LP fit before HP (default 200)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    s.add_argument("--rmax", type=_positive_int, default=None, help="largest distance of the coverage loss in px")
    s.add_argument("--estimator", default="analytic", choices=("analytic", "sampled"),
                   help="model C_ij of the coverage loss: exact expectation (default) or simulated sections")
    s.add_argument("--weighting", default="variance", choices=("variance", "uniform"),
                   help="weights of C_ij(r) in the coverage loss: inverse of the value (default) or uniform")
    s.add_argument("--batch", type=_positive_int, default=None, help="simulated sections per plane and step")
    s.add_argument("--patch", type=_positive_int, default=64, help="discriminator crop size (multiple of 16)")
    s.add_argument("--disc-width", type=_positive_int, default=64,
                   help="discriminator feature maps of the first layer (64 -> 64/128/256/512)")
    s.add_argument("--adv-loss", default="wgan-gp", choices=("wgan-gp", "bce"))
    s.add_argument("--select-iterations", type=_positive_int, default=300, help="steps per candidate with --model auto")
    s.add_argument("--resume", default=None, help="checkpoint (.ckpt) of an interrupted run to continue")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True, help="output model JSON (log CSV and PNG are written beside it)")
    s.add_argument("--force", action="store_true", help="overwrite existing outputs")

    s = sub.add_parser("demo", help="calibrate on a synthetic section, generate a 3D twin, write the comparison")
    s.add_argument("--out", default="assb-twin-demo", help="output folder (default assb-twin-demo)")
    s.add_argument("--size", type=_positive_int, default=128, help="side of the 3D twin in voxels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--iterations", type=_positive_int, default=150, help="calibration steps (default 150)")

    s = sub.add_parser("compare", help="validation report: descriptors of a measured image and a twin side by side")
    s.add_argument("real", help="measured segmented image (TIFF / PNG / NPY / folder of TIFF slices), 2D or 3D")
    s.add_argument("twin", help="twin phase map (same formats, or a .zarr from `generate`: a sub-volume is read)")
    s.add_argument("--labels", default=None, help='label mapping of REAL, e.g. "0:pore,85:active,170:electrolyte"')
    s.add_argument("--twin-labels", default=None, help="label mapping of TWIN (default automatic)")
    s.add_argument("--voxel-size", type=_positive_float, default=None, help="voxel size (default: file metadata, else 1 px)")
    s.add_argument("--unit", default=None, help="unit of --voxel-size (default um, or the file's)")
    s.add_argument("--axes", type=int, nargs="+", default=None, help="axes for directional descriptors (default all)")
    s.add_argument("--rmax", type=_positive_int, default=None, help="largest coverage distance in px (default min(64, n/4))")
    s.add_argument("--no-transport", action="store_true", help="skip TauFactor (minutes per phase and axis at 256^3 on a CPU)")
    s.add_argument("--no-geometry", action="store_true", help="skip geodesic tortuosity and constrictivity")
    s.add_argument("--device", default="cpu", help="torch device for TauFactor: cpu | cuda | cuda:N | mps | auto")
    s.add_argument("--transport-iter-limit", type=_positive_int, default=10000,
                   help="TauFactor iterations per phase and axis before it gives up (unconverged runs are named "
                        "in the report)")
    s.add_argument("--out", required=True, help="output folder for CSV, PNG and report.html")
    s.add_argument("--force", action="store_true", help="overwrite report files already in --out")

    s = sub.add_parser("sweep", help="parameter sweep: twins over a grid of model parameters, descriptors and transport")
    s.add_argument("model", help="model JSON file or built-in model name")
    s.add_argument("--vary", action="append", default=[], metavar="KEY=START:STOP:N",
                   help="parameter to vary (repeatable); keys as in the model's interpretable parameters, lengths physical")
    s.add_argument("--realisations", type=_positive_int, default=1, help="twins per grid point")
    s.add_argument("--shape", nargs=3, type=_positive_int, metavar=("Z", "Y", "X"), default=(64, 64, 64))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-transport", action="store_true", help="skip TauFactor")
    s.add_argument("--no-geometry", action="store_true", help="skip geodesic tortuosity and constrictivity")
    s.add_argument("--device", default="cpu", help="torch device for generation and TauFactor on the workers")
    s.add_argument("--scheduler", default=None,
                   help="dask.distributed address tcp://host:port; default a local cluster (threads without distributed)")
    s.add_argument("--workers", type=_positive_int, default=None, help="workers of the local cluster")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True, help="output folder; re-running with the same folder resumes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``assb-twin``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("assb-twin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line unless --debug
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"assb-twin {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
