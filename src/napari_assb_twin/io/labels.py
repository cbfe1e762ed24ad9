"""Label images on disk -> canonical phase maps, and phase maps -> ImageJ TIFF.

Measured segmentations use arbitrary label values (0/128/255, 0/85/170, 1/2/3 ...). Everything in
this package works on canonical ``uint8`` phase maps (0 pore, 1 active, 2 electrolyte; see
:mod:`napari_assb_twin.phases`), so every entry point converts through :func:`to_phases` with an
explicit label-to-phase mapping or the automatic one (METHOD.md section 2).

This module is pure NumPy / tifffile / Pillow: it never imports torch, Qt or napari, so the napari
reader that uses it loads fast.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..labelmap import (  # re-exported: the mapping rule lives on the ground floor (no import circle)
    MappingLike,
    _unique_values,
    format_mapping,
    normalize_mapping,
    parse_mapping,
    phase_fractions,
    to_phases,
)
from ..phasemap import PhaseMap, check_phase_map, check_spacing, normalize_unit
from .atomic import atomic_path

__all__ = [
    "MAX_VOXELS",
    "SUPPORTED_SUFFIXES",
    "format_mapping",
    "missing_path_message",
    "normalize_mapping",
    "normalize_unit",
    "parse_mapping",
    "phase_fractions",
    "read_label_image",
    "to_phases",
    "write_label_tiff",
]

#: Largest label image we agree to read (voxels). Bigger arrays are refused before reading: a
#: uint8 copy alone would need > 2 GiB and every statistic downstream would be far slower.
MAX_VOXELS: int = 2**31
#: File suffixes :func:`read_label_image` understands (folders of TIFF slices too).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")
_TIFF_SUFFIXES = (".tif", ".tiff")

# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
@dataclass
class _Raw:
    """Raw label values and calibration, before the phase conversion."""

    values: np.ndarray
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    notes: list[str] = field(default_factory=list)


def _check_size(shape: Sequence[int], path: Path) -> None:
    n = math.prod(int(s) for s in shape)
    if n == 0:
        raise ValueError(f"{path}: the image is empty (shape {tuple(shape)}); check the file")
    if n > MAX_VOXELS:
        raise ValueError(
            f"{path}: {n} voxels (shape {tuple(shape)}) exceeds the limit of {MAX_VOXELS}; "
            "crop or downsample the label image first"
        )


def _spatial_squeeze(values: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Drop singleton axes; refuse channel / time axes with more than one entry."""
    for i, ax in enumerate(axes):
        if ax in "CTS" and values.shape[i] > 1:
            what = {"C": "channels", "T": "time points", "S": "samples"}[ax]
            raise ValueError(
                f"{path}: the image has {values.shape[i]} {what} (axes {axes}, shape {values.shape}); "
                "a label image needs one value per voxel: save a single-channel label stack"
            )
    out = np.squeeze(values)
    if out.ndim not in (2, 3):
        raise ValueError(_dims_message(path, values.shape))
    return out


def _dims_message(path: Path, shape: Sequence[int]) -> str:
    """Why an array of ``shape`` is no phase map: too few axes longer than one pixel, or too many."""
    long_axes = [int(n) for n in shape if int(n) > 1]
    if len(long_axes) < 2:
        return (f"{path}: the image is {' x '.join(str(int(n)) for n in shape)} pixels: a phase map needs at least "
                "2 pixels along 2 axes (a 2D section) or 3 axes (a 3D volume)")
    return f"{path}: label image must be 2D or 3D after dropping singleton axes, got shape {tuple(shape)}"


def missing_path_message(p: Path) -> str:
    """Why ``p`` cannot be opened although it was named: absent, a dangling link, or a link loop."""
    if p.is_symlink():
        try:
            p.resolve(strict=True)
        except RuntimeError:
            return f"{p}: symbolic link loop (the link leads back to itself); give the real file"
        except OSError:
            return f"{p}: symbolic link to {os.readlink(p)}, which does not exist"
    return f"{p}: no such file or folder"


def _collapse_colour(values: np.ndarray, path: Path, channel_axis: int = -1) -> np.ndarray:
    """Grey RGB(A) -> one channel; true colour or non-opaque alpha -> error."""
    values = np.moveaxis(values, channel_axis, -1)
    n = values.shape[-1]
    if n in (2, 4):  # grey+alpha or RGBA: the alpha must be constant to be ignorable
        alpha = values[..., -1]
        if alpha.size and alpha.min() != alpha.max():
            raise ValueError(
                f"{path}: the image has a varying alpha (transparency) channel; "
                "save the label image without transparency"
            )
        values = values[..., :-1]
    if values.shape[-1] > 1 and not all(
        np.array_equal(values[..., 0], values[..., c]) for c in range(1, values.shape[-1])
    ):
        raise ValueError(
            f"{path}: true-colour image (channels differ): a label image needs one value per pixel; "
            "convert it to grey levels or an indexed/label image (one value per phase) first"
        )
    return values[..., 0]


_RES_CM = 3


def _tiff_calibration(tif, page, ndim: int) -> tuple[tuple[float, ...] | None, str | None, list[str]]:
    """Pixel size from ImageJ, OME or TIFF resolution tags (z, y, x order, physical unit)."""
    notes: list[str] = []

    def size_from(tag_name: str) -> float | None:
        tag = page.tags.get(tag_name)
        if tag is None:
            return None
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        return float(den) / float(num) if num else None

    x, y = size_from("XResolution"), size_from("YResolution")
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
            pix = next(el for el in root.iter() if el.tag.endswith("Pixels"))
            px = pix.get("PhysicalSizeX")
            if px is not None:
                unit = normalize_unit(pix.get("PhysicalSizeXUnit", "µm"))
                sx = float(px)
                sy = float(pix.get("PhysicalSizeY", px))
                sz = float(pix.get("PhysicalSizeZ", px))
                return ((sz, sy, sx) if ndim == 3 else (sy, sx)), unit, notes
        except (ET.ParseError, StopIteration, ValueError):
            notes.append("OME metadata unreadable; pixel size ignored")
    ij = tif.imagej_metadata if tif.is_imagej else None
    if ij is not None:
        unit = normalize_unit(ij.get("unit"))
        if unit is None or x is None:
            return None, None, notes
        y = y or x
        if ndim == 3:
            z = ij.get("spacing")
            if z is None:
                notes.append("no z spacing in the file: assumed equal to the pixel size")
                z = x
            return (float(z), y, x), unit, notes
        return (y, x), unit, notes
    unit_tag = page.tags.get("ResolutionUnit")
    if x is not None and unit_tag is not None and int(unit_tag.value) == _RES_CM:
        # centimetre resolution is a deliberate physical calibration; inch (the TIFF default,
        # usually 72/96/300 dpi screen or print resolution) is not, so it is ignored.
        x, y = x * 1e4, (y or x) * 1e4
        if ndim == 3:
            notes.append("no z spacing in the file: assumed equal to the pixel size")
            return (x, y, x), "um", notes
        return (y, x), "um", notes
    return None, None, notes


def _read_tiff_raw(path: Path) -> _Raw:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image data")
            series = tif.series[0]
            _check_size(series.shape, path)
            values = series.asarray()
            axes = series.axes
            if "S" in axes and values.shape[axes.index("S")] > 1:
                values = _collapse_colour(values, path, axes.index("S"))
                axes = axes.replace("S", "")
            values = _spatial_squeeze(values, axes, path)
            spacing, unit, notes = _tiff_calibration(tif, series.pages[0] if series.pages else tif.pages[0], values.ndim)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable label TIFF ({exc})") from exc
    except Exception as exc:  # tifffile raises many kinds on corrupt files
        raise ValueError(f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    return _Raw(values, spacing, unit, notes)


def _read_png_raw(path: Path) -> _Raw:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # our own MAX_VOXELS check is the size guard; Pillow's bomb warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_size((im.size[1], im.size[0]), path)
                mode = im.mode
                if mode == "P":
                    values = _indexed_png(im)
                elif mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
                    values = np.asarray(im)
                elif mode in ("LA", "RGB", "RGBA", "La", "RGBa"):
                    values = _collapse_colour(np.asarray(im), path)
                else:
                    raise ValueError(f"{path}: unsupported PNG mode {mode!r}; save it as 8/16-bit grey")
    except ValueError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable PNG file ({type(exc).__name__}: {exc})") from exc
    return _Raw(values)


def _indexed_png(im) -> np.ndarray:
    """Palette PNG: the grey levels the user sees if the palette is grey, else the indices."""
    idx = np.asarray(im)
    palette = im.getpalette() or []
    if not palette:
        return idx
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    used = _unique_values(idx)
    if used.max() < len(pal) and np.all((pal[used, 0] == pal[used, 1]) & (pal[used, 1] == pal[used, 2])):
        return pal[:, 0][idx]
    return idx


def _read_npy_raw(path: Path) -> _Raw:
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)  # header only: size check before loading any data
        _check_size(shape, path)
        if dtype.hasobject:
            raise ValueError(f"{path}: object (pickled) arrays are not label images; save a numeric array")
        values = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})") from exc
    # singleton axes are dropped as for TIFF, so (1, y, x) is a 2D image
    values = np.squeeze(values)
    if values.ndim not in (2, 3):
        raise ValueError(_dims_message(path, shape))
    return _Raw(values)


def _natural_key(name: str) -> list:
    """Sort key so that slice_2 comes before slice_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _tiff_slices(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:  # unreadable folder (permissions, a broken mount): say why
        raise ValueError(f"{folder}: cannot list the folder ({exc.strerror or type(exc).__name__})") from exc
    return sorted(
        (p for p in entries if p.is_file() and p.suffix.lower() in _TIFF_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    )


def _read_folder_raw(folder: Path) -> _Raw:
    import tifffile

    files = _tiff_slices(folder)
    if not files:
        raise ValueError(f"{folder}: folder has no .tif/.tiff slices; a folder must hold one TIFF per z slice")
    # headers first: refuse mismatched or huge stacks before reading any pixel data
    shapes = []
    for f in files:
        try:
            with tifffile.TiffFile(f) as tif:
                shapes.append(tuple(s for s in tif.series[0].shape if s != 1))
        except Exception as exc:
            raise ValueError(f"{f}: not a readable TIFF slice ({type(exc).__name__}: {exc})") from exc
    first = shapes[0]
    for f, s in zip(files, shapes):
        if s != first:
            raise ValueError(
                f"{folder}: slices differ in shape: {files[0].name} is {first}, {f.name} is {s}; "
                "all slices of a stack must have the same size"
            )
    if len(first) != 2:
        raise ValueError(f"{folder}: slices must be 2D, {files[0].name} has shape {first}")
    _check_size((len(files), *first), folder)
    slices = [_read_tiff_raw(f) for f in files]
    values = np.stack([s.values for s in slices])
    spacing, unit, notes = None, slices[0].unit, []
    if slices[0].spacing is not None:
        y, x = slices[0].spacing
        spacing = (x, y, x)
        notes.append("z spacing of the slice folder assumed equal to the pixel size")
    return _Raw(values, spacing, unit, notes)


def read_label_image(path: str | os.PathLike, mapping: MappingLike | None = None) -> PhaseMap:
    """Read a segmented label image and convert it to canonical phases.

    Parameters
    ----------
    path : str or path-like
        A TIFF (single- or multi-page, ImageJ/OME calibration read), PNG (grey, palette, or RGB
        with equal channels), NPY file, or a folder of per-slice TIFFs (natural name order).
    mapping : str or dict, optional
        Label -> phase; automatic when omitted (see :func:`to_phases`).

    Returns
    -------
    PhaseMap
        With the file's calibration (``spacing`` None when it has none) and ``source`` the path.

    Raises
    ------
    ValueError
        Missing, unsupported, corrupt, empty, too large or non-label files, with the reason.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(missing_path_message(p))
    if p.is_dir():
        raw = _read_folder_raw(p)
    else:
        suffix = p.suffix.lower()
        if suffix in _TIFF_SUFFIXES:
            raw = _read_tiff_raw(p)
        elif suffix == ".png":
            raw = _read_png_raw(p)
        elif suffix == ".npy":
            raw = _read_npy_raw(p)
        else:
            raise ValueError(
                f"{p}: unsupported file type {p.suffix!r}; use {', '.join(SUPPORTED_SUFFIXES)} or a folder of TIFF slices"
            )
    try:
        phases, used, message = to_phases(raw.values, mapping)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{p}: {exc}") from exc
    if raw.notes:
        message += "; " + "; ".join(raw.notes)
    return PhaseMap(
        data=phases,
        spacing=raw.spacing,
        unit=raw.unit if raw.spacing is not None else None,
        source=str(p),
        message=message,
        mapping=used,
    )


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def write_label_tiff(
    path: str | os.PathLike,
    phases: np.ndarray,
    voxel_size: float | Sequence[float] | None = None,
    unit: str | None = "um",
    overwrite: bool = True,
) -> Path:
    """Write a canonical phase map as an ImageJ-compatible ``uint8`` TIFF, atomically.

    Parameters
    ----------
    path : str or path-like
        Target ``.tif`` / ``.tiff`` file (its folder must exist). Overwritten only once the new
        file is completely written (:func:`napari_assb_twin.io.atomic.atomic_path`).
    phases : numpy.ndarray
        2D (y, x) or 3D (z, y, x) integer array with values in {0, 1, 2}; 3D is written as a z-stack.
    voxel_size : float or sequence of float, optional
        Pixel size, or one size per axis (z, y, x). None writes no calibration.
    unit : str, optional
        Length unit of ``voxel_size`` (``"um"`` default).
    overwrite : bool
        False: publish only if ``path`` still does not exist (another writer that finished first
        wins; :class:`~napari_assb_twin.io.atomic.OutputClaimedError`).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    import tifffile

    target = Path(path)
    if target.suffix.lower() not in _TIFF_SUFFIXES:
        raise ValueError(f"{target}: the file name must end in .tif or .tiff")
    if not target.parent.is_dir():
        raise ValueError(f"{target}: folder {target.parent} does not exist; create it first")
    data = check_phase_map(phases, str(target))
    sizes = check_spacing(voxel_size, data.ndim)
    metadata: dict[str, object] = {
        "axes": "ZYX" if data.ndim == 3 else "YX",
        "Info": "napari-assb-twin phase map: 0=pore, 1=active, 2=electrolyte",
    }
    resolution = None
    if sizes is not None:
        resolution = (1.0 / sizes[-1], 1.0 / sizes[-2])
        metadata["unit"] = normalize_unit(unit) or "pixel"
        if data.ndim == 3:
            metadata["spacing"] = sizes[0]
    with atomic_path(target, overwrite) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, resolution=resolution, metadata=metadata)
    return target
