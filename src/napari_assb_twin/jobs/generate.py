"""Use case: generate a 3D twin from a model into a TIFF (in memory) or a Zarr store (blockwise).

Every size is checked before any work: the TIFF path estimates its peak memory and refuses, with
the figure and the blockwise alternative, what the machine cannot hold; the Zarr path checks the
disk and clamps the chunk side.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .events import JobProgress
from .inputs import check_output_file, check_seed, check_writable_folder, free_disk_bytes

__all__ = [
    "CHUNK_MIN",
    "SHORTEST_LENGTH_PX",
    "GenerateResult",
    "SectionComparison",
    "available_memory_bytes",
    "clamp_chunk",
    "compare_section",
    "generate",
    "generate_array",
    "length_scale_warning",
    "peak_memory_bytes",
]

#: Smallest Zarr chunk / compute tile side: below it the kernel halo (up to 64 voxels each side)
#: dwarfs the tile and generation crawls (``--chunk 1`` never finished).
CHUNK_MIN: int = 32
#: Correlation length (voxels) below which a twin is per-voxel noise (:func:`length_scale_warning`).
SHORTEST_LENGTH_PX: float = 0.5
#: Zarr blocks read back for the fractions summary.
_SUMMARY_SIDE = 128


@dataclass
class GenerateResult:
    """What :func:`generate` wrote."""

    path: Path
    shape: tuple[int, ...]
    seconds: float
    device: str
    fractions: dict[str, float]
    chunks: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)


def peak_memory_bytes(model: Any, shape: Sequence[int]) -> int:
    """Estimated peak memory of ``model.generate(shape)`` (FFT fields + the uint8 result).

    ``32 + 16 g`` bytes per voxel for ``g`` Gaussian fields (a chi-square field of ``k`` degrees of
    freedom needs ``k``, a bridged one 2): the measured peak RSS of the reference lp-iso models (g = 2) at 224^3
    was 64 B/voxel (``python -c`` with ``resource.getrusage``, torch 2.13 CPU).
    """
    gaussians = sum(f.n_components for f in model.fields.values())
    return int((32 + 16 * gaussians) * math.prod(int(n) for n in shape))


def available_memory_bytes(device: Any) -> int | None:
    """Free memory for a generation on ``device`` (:func:`napari_assb_twin.devices.available_memory_bytes`)."""
    from ..devices import available_memory_bytes as free

    return free(device)


def clamp_chunk(chunk: int, shape: Sequence[int]) -> int:
    """The chunk side actually used: at least :data:`CHUNK_MIN`, at most the volume's longest side."""
    return max(1, min(max(int(chunk), CHUNK_MIN), max(int(n) for n in shape)))


def length_scale_warning(model: Any, shape: Sequence[int]) -> str:
    """A warning when a correlation length is comparable to the volume (fractions then scatter) or far
    below one voxel (the twin is then per-voxel noise: usually a length given in the wrong unit)."""
    side = min(int(n) for n in shape)
    lengths = [v / model.voxel_size for k, v in model.interpretable().items() if ".correlation_length" in k]
    longest = max(lengths, default=0.0)
    shortest = min(lengths, default=math.inf)
    notes = []
    if longest * 2 > side:
        notes.append(f"the model's correlation length ({longest:.1f} voxels) is more than half the volume's smallest side "
                f"({side}): the twin holds less than two correlation lengths and its volume fractions will be far "
                "from the model's; generate a larger volume")
    if shortest < SHORTEST_LENGTH_PX:
        notes.append(f"the model's shortest correlation length is {shortest:.3g} voxels ({shortest * model.voxel_size:.3g} "
                f"{model.unit} at voxel {model.voxel_size:g} {model.unit}), below {SHORTEST_LENGTH_PX} voxel: the twin "
                "is noise from voxel to voxel, not a microstructure; check the model's length_scale and voxel_size "
                "(same unit)")
    return "; ".join(notes)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    from ..checks import check_shape

    return check_shape(shape, (3,), "shape (Z Y X)")  # type: ignore[return-value]


def _fractions(phases: np.ndarray) -> dict[str, float]:
    from ..phases import N_PHASES, PHASE_NAMES

    counts = np.bincount(np.asarray(phases).ravel(), minlength=N_PHASES)[:N_PHASES] / max(np.asarray(phases).size, 1)
    return {n: float(c) for n, c in zip(PHASE_NAMES, counts)}


def _fits_in_memory(model: Any, shape: tuple[int, ...], device: Any) -> None:
    need = peak_memory_bytes(model, shape)
    have = available_memory_bytes(device)
    if have is not None and need > have:
        raise MemoryError(
            f"a {' x '.join(map(str, shape))} twin needs about {need / 2**30:.1f} GiB at its peak on {device}, "
            f"{have / 2**30:.1f} GiB are free; write it blockwise with bounded memory instead "
            "(--out NAME.zarr), or generate a smaller shape"
        )


def _fits_on_disk(shape: tuple[int, ...], out: Path) -> None:
    need = math.prod(shape)  # uint8; compression usually saves more, but cannot be counted on
    free = free_disk_bytes(out)
    if need > free:
        raise OSError(
            f"{out}: a {' x '.join(map(str, shape))} twin is {need / 2**30:.1f} GiB uncompressed and {out.parent} has "
            f"{free / 2**30:.1f} GiB free; choose a smaller --shape or another folder"
        )


def generate(
    model: Any,
    shape: Sequence[int],
    out: str | os.PathLike,
    *,
    seed: int = 0,
    device: str = "auto",
    chunk: int = 128,
    force: bool = False,
) -> Generator[JobProgress, None, GenerateResult]:
    """Generate a twin of ``shape`` into ``out`` (``.tif``/``.tiff``: in memory; ``.zarr``: blockwise).

    Yields ``JobProgress`` (stage ``"warning"`` for things the user should read, ``"generate"``
    while working); returns a :class:`GenerateResult`.

    Raises
    ------
    ValueError, FileExistsError, MemoryError, OSError
        Bad shape / seed / output name, an existing output without ``force`` (or a folder that is not
        our Zarr store, even with it), too little memory or disk: all before any work.
    """
    from ..devices import resolve_device

    shape_t = _check_shape(shape)
    seed = check_seed(seed)
    dev = resolve_device(device)  # fail fast on an absent GPU
    out = Path(out)
    zarr_out = out.suffix.lower() == ".zarr"
    if not zarr_out:
        check_output_file(out, force, (".tif", ".tiff"))
    notes = []
    warning = length_scale_warning(model, shape_t)
    if warning:
        notes.append(warning)
        yield JobProgress("warning", message=warning)
    if zarr_out:
        if dev.type != "cpu":  # checked, then silently run on the CPU: say it
            note = f"blockwise (Zarr) generation runs on the CPU; --device {device} is not used"
            notes.append(note)
            yield JobProgress("warning", message=note)
        return (yield from _generate_zarr(model, shape_t, out, seed, chunk, force, notes))
    from ..io import write_label_tiff

    _fits_in_memory(model, shape_t, dev)
    _fits_on_disk(shape_t, out)  # a full disk is found now, not after the volume is computed
    yield JobProgress("generate", 0, 1, f"generating {' x '.join(map(str, shape_t))} on {dev}")
    t0 = time.perf_counter()
    vol = model.generate(shape_t, seed=seed, device=str(dev))
    seconds = time.perf_counter() - t0
    write_label_tiff(out, vol, voxel_size=model.voxel_size, unit=model.unit, overwrite=force)  # claimed: one writer wins
    yield JobProgress("generate", 1, 1, f"wrote {out}")
    return GenerateResult(out, tuple(vol.shape), seconds, str(dev), _fractions(vol), notes=notes)


def generate_array(
    model: Any, shape: Sequence[int], *, seed: int = 0, device: str = "auto"
) -> Generator[JobProgress, None, np.ndarray]:
    """A twin of ``shape`` in memory (the generator dock's use case): the checks of :func:`generate`
    (shape, seed, device, memory, length-scale warning) before any work, then one event per
    simulated field, so a stop (napari closing) acts within one field. Returns the ``uint8`` volume;
    the caller's model is never moved (a copy goes to another device)."""
    from ..devices import resolve_device

    shape_t = _check_shape(shape)
    seed = check_seed(seed)
    dev = resolve_device(device)
    warning = length_scale_warning(model, shape_t)
    if warning:
        yield JobProgress("warning", message=warning)
    _fits_in_memory(model, shape_t, dev)
    text = f"generating {' x '.join(map(str, shape_t))} on {dev}"
    yield JobProgress("generate", 0, 2, text)
    job = model.iter_generate(shape_t, seed, dev)
    done = 0
    while True:
        try:
            field_name = next(job)
        except StopIteration as end:
            return end.value
        done += 1
        yield JobProgress("generate", done, 2, f"{text}: field {field_name} simulated")


@dataclass
class SectionComparison:
    """A measured 2D section beside a simulated one of the same shape and plane, with both C_ij
    (:class:`~napari_assb_twin.stats.coverage.CoverageResult`, same minus-sampling estimator)."""

    measured: np.ndarray
    simulated: np.ndarray
    plane: str
    spacing: float
    unit: str | None
    measured_name: str
    cov_measured: Any
    cov_simulated: Any


def compare_section(
    model: Any, measured: np.ndarray, plane: str, seed: int = 0, device: str = "auto", spacing: float = 1.0,
    unit: str | None = None, name: str = "measured",
) -> Generator[JobProgress, None, SectionComparison]:
    """Use case: simulate a section of ``measured``'s shape in ``plane`` (every plane of an isotropic
    model is in-plane) and measure both C_ij the same way, up to the measured section's default r_max.

    The device is resolved once; the caller's model is never moved (a copy goes to another device).
    """
    import torch

    from ..devices import resolve_device
    from ..phasemap import PhaseMap
    from ..stats.coverage import coverage

    seed = check_seed(seed)
    dev = resolve_device(device)
    if model.variant.endswith("iso"):
        plane = "inplane"  # isotropic: every plane is alike
    yield JobProgress("section", 0, 2, f"simulating a {plane} section of {' x '.join(map(str, measured.shape))} on {dev}")
    m = model.on_device(dev)
    g = torch.Generator(device=dev).manual_seed(int(seed))
    with torch.no_grad():
        sim = m.sample_sections(tuple(measured.shape), plane=plane, batch=1, generator=g, mode="hard")
    sim = sim[0].cpu().numpy().astype(np.uint8)
    yield JobProgress("section", 1, 2, "measuring the coverage functions of both sections")
    r_max = PhaseMap(measured).default_r_max()  # the package's one r_max rule
    # the same (minus-sampling) estimator for both, so differences are the material's, not the estimator's
    cm = coverage(measured, r_max, periodic=False, radial=False)
    cs = coverage(sim, r_max, periodic=False, radial=False)
    return SectionComparison(measured, sim, plane, float(spacing), unit, name, cm, cs)


def _generate_zarr(model, shape, out: Path, seed: int, chunk: int, force: bool, notes: list[str]):
    """Blockwise generation into a Zarr twin store (bounded memory, completeness marked last)."""
    from ..model.blockwise import BlockwiseTwin
    from ..io.zarrtwin import prepare_store, write_zarr_twin

    side = clamp_chunk(chunk, shape)
    if side != int(chunk):
        note = f"--chunk {chunk} clamped to {side} (between {CHUNK_MIN} and the volume's longest side)"
        notes.append(note)
        yield JobProgress("warning", message=note)
    check_writable_folder(out.parent, what=str(out))
    _fits_on_disk(shape, out)
    prepare_store(out, force)
    twin = BlockwiseTwin(model, seed=seed, tile=side)
    arr = twin.to_dask(shape, side)
    attrs = {"voxel_size": model.voxel_size, "unit": model.unit, "seed": seed,
             "phases": {"0": "pore", "1": "active", "2": "electrolyte"}}
    t0 = time.perf_counter()
    for done, total in write_zarr_twin(arr, out, attrs):
        yield JobProgress("generate", done, total, f"slab {done}/{total}")
    seconds = time.perf_counter() - t0
    import zarr

    z = zarr.open_array(str(out), mode="r")
    sub = tuple(slice(0, min(_SUMMARY_SIDE, n)) for n in z.shape)
    return GenerateResult(out, tuple(z.shape), seconds, "cpu", _fractions(np.asarray(z[sub])), tuple(z.chunks), notes)
