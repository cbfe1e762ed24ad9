"""napari reader: segmented electrode label images -> a canonical ``uint8`` phase Labels layer.

Claims *.tif, *.tiff, *.png, *.npy, folders of TIFF slices and ``.zarr`` twins written by
``assb-twin generate --out NAME.zarr``. napari's builtin reader claims the same suffixes for images,
so napari asks which reader to use; scripts pass ``viewer.open(path, plugin="napari-assb-twin")``.

A Zarr twin opens lazily: the layer holds a dask array over the store's chunks, so only the
chunks under the slice shown are read (a 1024^3 twin scrolls without loading its 1 GiB); an
incomplete store (interrupted ``generate``) is refused with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from napari.utils.notifications import show_error, show_info

from ..io.labels import SUPPORTED_SUFFIXES, read_label_image
from ._layers import phase_labels_layer_data

__all__ = ["napari_get_reader", "read_labels", "read_zarr_twin"]

_TIFF = (".tif", ".tiff")


def _single_path(path: Any) -> Path | None:
    """The one path napari asks about, or None (lists of several files are not a label image)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        return None
    return Path(path)


def _is_slice_folder(p: Path) -> bool:
    return any(c.is_file() and c.suffix.lower() in _TIFF and not c.name.startswith(".") for c in p.iterdir())


def napari_get_reader(path: Any) -> Callable[[Any], list] | None:
    """Return :func:`read_labels` if ``path`` looks like a label image we read, else None.

    Never raises: napari calls this for every file it opens, and an exception here would hide
    other readers.
    """
    try:
        p = _single_path(path)
        if p is None:
            return None
        if p.suffix.lower() == ".zarr" and p.is_dir():
            return read_zarr_twin
        if p.is_dir():
            return read_labels if _is_slice_folder(p) else None
        if p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file():
            return read_labels
    except Exception:  # noqa: BLE001 - unreadable folders, odd path objects: simply not ours
        return None
    return None


def read_labels(path: Any) -> list[tuple]:
    """Read a label image as a phase Labels layer.

    The label-to-phase mapping used (automatic: sorted values -> pore, active, electrolyte) is
    reported with ``show_info`` and stored in ``layer.metadata["phase_mapping"]``. A file that is
    not a segmentation shows the reason with ``show_error`` and adds no layer (napari's
    "nothing to add" sentinel ``[(None,)]``, so napari does not raise a second, vaguer error).
    """
    p = _single_path(path)
    if p is None:
        show_error("napari-assb-twin opens one label image (file or folder of slices) at a time")
        return [(None,)]
    try:
        image = read_label_image(p)
    except (ValueError, TypeError) as exc:
        show_error(f"Cannot open as a phase map: {exc}")
        return [(None,)]
    show_info(f"{p.name}: {image.message}")
    name = p.name if p.is_dir() else p.stem
    metadata = {
        "phase_mapping": dict(image.mapping),
        "source": image.source,
        "message": image.message,
    }
    return [phase_labels_layer_data(image.data, name, image.spacing, image.unit, metadata)]


def read_zarr_twin(path: Any) -> list[tuple]:
    """A Zarr twin as a lazy, dask-backed phase Labels layer with its voxel size and unit.

    Nothing is loaded here: napari reads the chunks under the slice it draws. A store whose writing
    was interrupted, or a folder that is not a Zarr array, shows the reason and adds no layer.
    """
    import dask.array as da

    from ..io.zarrtwin import open_zarr_phases

    p = _single_path(path)
    if p is None:
        show_error("napari-assb-twin opens one Zarr twin at a time")
        return [(None,)]
    try:
        twin = open_zarr_phases(p)
        if twin.array.ndim not in (2, 3) or str(twin.array.dtype) != "uint8":
            raise ValueError(f"{p.name}: a phase-map twin is a 2D or 3D uint8 array, this one is "
                             f"{twin.array.ndim}D {twin.array.dtype}")
    except ValueError as exc:
        show_error(f"Cannot open as a phase map: {exc}")
        return [(None,)]
    data = da.from_zarr(twin.array)  # lazy: one task per chunk, read when a slice needs it
    show_info(twin.message)
    metadata = {"source": twin.source, "message": twin.message, "lazy": True}
    data_, kwargs, kind = phase_labels_layer_data(data, p.stem, twin.voxel_size, twin.unit, metadata)
    # no opportunistic dask cache: napari's global one (a quarter of the RAM) would keep every chunk
    # paged through, so scrolling a 1024^3 twin would end up holding it all; a slice re-reads its chunks
    kwargs["cache"] = False
    return [(data_, kwargs, kind)]
