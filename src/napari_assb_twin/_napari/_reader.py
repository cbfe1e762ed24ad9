"""napari reader: segmented electrode label images -> a canonical ``uint8`` phase Labels layer.

Claims *.tif, *.tiff, *.png, *.npy and folders of TIFF slices. napari's builtin reader claims the
same suffixes for images, so napari asks which reader to use; scripts pass
``viewer.open(path, plugin="napari-assb-twin")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from napari.utils.notifications import show_error, show_info

from ..io.labels import SUPPORTED_SUFFIXES, read_label_image
from ._layers import phase_labels_layer_data

__all__ = ["napari_get_reader", "read_labels"]

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
